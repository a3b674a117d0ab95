"""POST /v1/completions: OpenAI's (legacy) completions API over the shared batch, so the ``openai``
Python client and the tools built on it talk to a character model unchanged. A token is one
character (byte mode: one byte). The request, response and streaming chunk shapes follow
https://platform.openai.com/docs/api-reference/completions; parameters a character RNN has no
use for are accepted at their neutral values and refused otherwise, one line naming them.
Imports controls (the stop-string split) and vocab from rnnlab; the app hands in the rest.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..controls import split_at_stop
from ..vocab import Vocab
from .batcher import Job
from .served import Limits

MAX_STOPS = 4  # as OpenAI's API
MAX_LOGPROBS = 5  # as OpenAI's API


class CompletionRequest(BaseModel):
    """The body of POST /v1/completions (OpenAI's field names and defaults)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="served name (GET /v1/models); default: the first")
    prompt: str | list[str] = Field("", description="text to continue, or several texts")
    max_tokens: int = Field(16, ge=0, description="characters to generate per choice")
    temperature: float = Field(1.0, ge=0, le=2, description="0 is greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus threshold (1: off)")
    n: int = Field(1, ge=1, description="choices per prompt")
    stop: str | list[str] | None = Field(None, description="up to 4 strings; not included")
    stream: bool = Field(False, description="Server-Sent Events, then data: [DONE]")
    logprobs: int | None = Field(
        None, ge=0, le=MAX_LOGPROBS, description="each character's logprob and the top K"
    )
    seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same text")
    user: str | None = Field(None, description="accepted, unused")
    # accepted at their neutral values only (a character RNN has no use for the others)
    echo: bool = False
    best_of: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    suffix: str | None = None
    stream_options: dict[str, Any] | None = None


class _Choice:
    """One choice being generated: its stop strings' held-back text, the log-probabilities of
    the characters not yet handed over, and why it ended."""

    def __init__(self, stops: list[str], byte_mode: bool, offset: int) -> None:
        self.stops, self.byte_mode, self.offset = stops, byte_mode, offset
        self.held, self.pending = "", []
        self.finish: str | None = None
        self.produced = 0  # characters the model generated for it (the usage count)

    def push(self, piece: str, record: tuple | None) -> tuple[str, list[tuple]]:
        """A new token: the text (and its log-probabilities) that can be handed over now."""
        if self.finish is not None:
            return "", []
        self.produced += 1
        if record is not None:
            self.pending.append(record)
        out, self.held, stopped = split_at_stop(self.held + piece, self.stops)
        if stopped:
            self.finish = "stop"
        return out, self._records(out)

    def end(self, reason: str) -> tuple[str, list[tuple]]:
        """The job ended: what was held back goes out (it did not begin a stop string)."""
        if self.finish is not None:
            return "", []
        self.finish = reason
        out, self.held = self.held, ""
        return out, self._records(out)

    def _records(self, text: str) -> list[tuple]:
        """(token, logprob, top, offset in prompt + completion) of the symbols behind ``text``;
        the offset counts tokens (characters; bytes in byte mode)."""
        n = len(text.encode()) if self.byte_mode else len(text)
        out, self.pending = self.pending[:n], self.pending[n:]
        start, self.offset = self.offset, self.offset + len(out)
        return [(*r, start + k) for k, r in enumerate(out)]


def _logprobs(records: list[tuple]) -> dict[str, Any]:
    """OpenAI's legacy logprobs object for some characters."""
    return {
        "tokens": [r[0] for r in records],
        "token_logprobs": [r[1] for r in records],
        "top_logprobs": [dict(r[2]) for r in records],
        "text_offset": [r[3] for r in records],
    }


def add_routes(
    app: FastAPI,
    pick: Callable[[str | None], Any],
    encode: Callable[[Any, str, str], list[int]],
    refused: Callable[[int, str], Exception],
) -> None:
    """Register POST /v1/completions on ``app``; ``pick``, ``encode`` and ``refused`` are the
    app's (the served model by name, prompt encoding, a 4xx ``{"error": ...}``)."""
    limits = app.state.limits

    @app.post("/v1/completions", response_model=None)
    async def completions(body: CompletionRequest) -> JSONResponse | StreamingResponse:
        """OpenAI-compatible completions: JSON, or with ``"stream": true`` Server-Sent Events
        (one ``text_completion`` chunk per piece of text, then ``data: [DONE]``)."""
        s = pick(body.model)
        prompts, stops = _checked(body, limits, refused)
        encoded = [encode(s, p, "error") for p in prompts]
        rows = body.n * len(prompts)
        if not s.batcher.reserve(rows):
            raise refused(
                429,
                f"the server is busy ({s.batcher.rows_in_flight} of {limits.max_streams} streams "
                "in flight); retry shortly",
            )
        events: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        jobs = _jobs(body, encoded, s.vocab, limits.max_request_s, events)
        byte_mode = s.vocab.mode == "byte"
        choices = [_Choice(stops, byte_mode, len(p)) for p in prompts for _ in range(body.n)]
        head = {
            "id": f"cmpl-{secrets.token_hex(12)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": s.name,
        }
        for job in jobs:
            s.batcher.submit(job)
        with_logprobs = body.logprobs is not None
        updates = _updates(jobs, events, choices, body.n, with_logprobs)
        if body.stream:
            return StreamingResponse(
                _sse(updates, head, jobs, with_logprobs),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            out = await _collect(updates, choices, with_logprobs)
        except RuntimeError as e:
            return JSONResponse({"error": str(e)}, status_code=500)
        finally:
            for job in jobs:
                job.cancel()
        prompt_tokens = sum(len(ids) for ids in encoded)
        completion_tokens = sum(c.produced for c in choices)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return JSONResponse(head | {"choices": out, "usage": usage})


def _checked(
    body: CompletionRequest, limits: Limits, refused: Callable[[int, str], Exception]
) -> tuple[list[str], list[str]]:
    """The request's prompts and stop strings, once every parameter is one a character RNN
    can honour and within the server's limits; else ``refused``, one line naming it."""
    neutral = {
        "echo": False,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "suffix": None,
    }
    for name, value in neutral.items():
        if getattr(body, name) != value:
            raise refused(422, f"{name} is not supported by a character RNN; leave it out")
    if body.best_of not in (None, body.n):
        raise refused(422, "best_of is not supported; use n")
    if body.logit_bias:
        raise refused(422, "logit_bias is not supported; leave it out")
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts:
        raise refused(422, "prompt: give a string or a non-empty list of strings")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stops) > MAX_STOPS or not all(stops):
        raise refused(422, f"stop: up to {MAX_STOPS} non-empty strings")
    if any(len(p) > limits.max_prompt_chars for p in prompts):
        raise refused(413, f"prompt is over the limit of {limits.max_prompt_chars:,} characters")
    if body.max_tokens > limits.max_length:
        raise refused(422, f"max_tokens is over the limit of {limits.max_length:,}")
    if body.n * len(prompts) > limits.max_samples:
        raise refused(422, f"n x prompts is over the limit of {limits.max_samples}")
    return prompts, stops


def _jobs(
    body: CompletionRequest,
    encoded: list[list[int]],
    vocab: Vocab,
    max_request_s: float,
    events: asyncio.Queue[tuple[int, dict[str, Any]]],
) -> list[Job]:
    """One Job per prompt (its ``n`` choices are its samples), each emitting ``(prompt index,
    event)`` to ``events``."""
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    jobs = []
    for i, ids in enumerate(encoded):
        if not ids:
            start = vocab.id_of("\n")
            ids = [start if start is not None else 0]
        job = Job(
            ids=ids,
            num_samples=body.n,
            length=body.max_tokens,
            temperature=body.temperature,
            top_k=0,
            top_p=body.top_p,
            seed=seed + i,  # each prompt its own noise, reproducible
            details=False,
            deadline=time.monotonic() + max_request_s,
            emit=lambda e, i=i: events.put_nowait((i, e)),
            logprobs=body.logprobs or 0,
        )
        jobs.append(job)
    return jobs


async def _collect(
    updates: AsyncIterator[tuple[int, str, list[tuple], str | None]],
    choices: list[_Choice],
    with_logprobs: bool,
) -> list[dict[str, Any]]:
    """The ``choices`` of a JSON response, once every choice has ended."""
    texts = [[] for _ in choices]
    records: list[list[tuple]] = [[] for _ in choices]
    async for index, text, recs, _ in updates:
        texts[index].append(text)
        records[index].extend(recs)
    return [
        {
            "text": "".join(texts[i]),
            "index": i,
            "logprobs": _logprobs(records[i]) if with_logprobs else None,
            "finish_reason": c.finish,
        }
        for i, c in enumerate(choices)
    ]


async def _updates(
    jobs: list[Job],
    events: asyncio.Queue[tuple[int, dict[str, Any]]],
    choices: list[_Choice],
    n: int,
    with_logprobs: bool,
) -> AsyncIterator[tuple[int, str, list[tuple], str | None]]:
    """(choice index, new text, its log-probabilities, finish reason or None) as the batch
    steps; ends when every choice has ended (the jobs are then cancelled)."""
    running = len(jobs)
    while running:
        i, e = await events.get()
        kind = e["type"]
        if kind == "error":
            raise RuntimeError(e["error"])
        if kind == "token":
            index = i * n + e["sample"]
            record = (e["text"], e["logprob"], e["top_logprobs"]) if with_logprobs else None
            c = choices[index]
            was = c.finish
            text, recs = c.push(e["text"], record)
            if text or recs or c.finish != was:
                yield index, text, recs, c.finish
            if c.finish is not None and all(x.finish for x in choices[i * n : (i + 1) * n]):
                jobs[i].cancel()  # every choice of this prompt met a stop string
            continue
        running -= 1  # done: its length, its time limit, or cancelled above
        reason = "length" if e["finish_reason"] in ("length", "time_limit") else "stop"
        for index in range(i * n, (i + 1) * n):
            if choices[index].finish is None:
                text, recs = choices[index].end(reason)
                yield index, text, recs, reason


async def _sse(
    updates: AsyncIterator[tuple[int, str, list[tuple], str | None]],
    head: dict[str, Any],
    jobs: list[Job],
    with_logprobs: bool,
) -> AsyncIterator[str]:
    """OpenAI's stream: ``data: {chunk}`` per piece of text (the last of a choice carries its
    finish_reason), then ``data: [DONE]``. A client that goes away frees the rows."""
    try:
        async for index, text, recs, finish in updates:
            choice = {
                "text": text,
                "index": index,
                "logprobs": _logprobs(recs) if with_logprobs else None,
                "finish_reason": finish,
            }
            yield f"data: {json.dumps(head | {'choices': [choice]})}\n\n"
        yield "data: [DONE]\n\n"
    except RuntimeError as e:
        yield f"data: {json.dumps({'error': str(e)})}\n\n"
    finally:
        for job in jobs:
            job.cancel()
