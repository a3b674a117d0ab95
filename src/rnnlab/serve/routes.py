"""The server's own routes: the playground page and its assets, GET /health, GET /v1/models,
POST /v1/score, and POST /v1/generate (JSON, or Server-Sent Events with "stream": true). Each
reads the served models and the limits from ``request.app.state``. Imports model from rnnlab.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from importlib import resources
from typing import Any, Literal

import torch
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..model import CharLM
from .batcher import LN2, Job
from .served import Refused

ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
router = APIRouter()


# --- request bodies (their fields become the OpenAPI schema) --------------------------------


class GenerateRequest(BaseModel):
    # strict: true is not 1, "yes" is not true; and no NaN or Infinity
    model_config = ConfigDict(
        extra="forbid", protected_namespaces=(), strict=True, allow_inf_nan=False
    )

    model: str | None = Field(None, description="served name (GET /v1/models); default: the first")
    prompt: str = Field("", description="text to continue; empty starts after a newline")
    length: int = Field(200, ge=0, description="characters to generate per sample")
    temperature: float = Field(0.8, ge=0, description="0 is greedy")
    top_k: int = Field(0, ge=0, description="keep the k most likely characters (0: all)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus threshold (1: off)")
    seed: int | None = Field(None, ge=0, lt=2**63, description="same seed, same text")
    num_samples: int = Field(1, ge=1, description="samples drawn from the same prompt")
    stream: bool = Field(False, description="Server-Sent Events, one per character")
    details: bool = Field(False, description="each character's surprise and the top-5 guesses")
    unknown: Literal["error", "skip"] = Field(
        "error", description="prompt characters the model never saw: refuse, or drop them"
    )


class ScoreRequest(BaseModel):
    # strict: true is not 1, "yes" is not true; and no NaN or Infinity
    model_config = ConfigDict(
        extra="forbid", protected_namespaces=(), strict=True, allow_inf_nan=False
    )

    model: str | None = Field(None, description="served name; default: the first")
    text: str = Field(..., min_length=2, description="the text to score (at least 2 characters)")
    unknown: Literal["error", "skip"] = "error"


# --- the routes -------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground() -> HTMLResponse:
    return HTMLResponse(_asset("page.html"))


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise Refused(404, f"no asset {name!r}")
    return Response(_asset(name), media_type=ASSETS[name])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness, and how busy each model's batch is."""
    return {
        "status": "ok",
        "models": {
            n: {"streams_in_flight": s.batcher.rows_in_flight, "steps": s.batcher.steps}
            for n, s in request.app.state.models.served.items()
        },
    }


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The served models: name, configuration, vocabulary, validation bpc (and the list
    in OpenAI's shape, ``object``/``data``, for its clients)."""
    served = request.app.state.models.served
    return {
        "models": [s.info for s in served.values()],
        "limits": asdict(request.app.state.limits),
        "viz": request.app.state.viz,
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "rnnlab"} for name in served
        ],
    }


@router.post("/v1/score")
async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
    """Bits per character of ``text[1:]`` given what precedes it, and each one's surprise."""
    limits = request.app.state.limits
    s, ids = request.app.state.models.text_ids(
        body.model, body.text, body.unknown, limits.max_score_chars
    )
    surprise = await asyncio.to_thread(_surprise_bits, s.model, ids)
    return {
        "model": s.name,
        "num_chars": len(ids) - 1,
        "bpc": sum(surprise) / len(surprise),
        "surprise_bits": [None, *surprise],  # the first character is not predicted
    }


@router.post("/v1/generate", response_model=None)
async def generate(body: GenerateRequest, request: Request) -> JSONResponse | StreamingResponse:
    """Continue a prompt: JSON, or with ``"stream": true`` Server-Sent Events (``data:`` one
    JSON object per character, then ``event: done``)."""
    served, limits = request.app.state.models, request.app.state.limits
    s = served.pick(body.model)
    if len(body.prompt) > limits.max_prompt_chars:
        raise Refused(413, f"prompt is over the limit of {limits.max_prompt_chars:,} characters")
    if body.length > limits.max_length:
        raise Refused(422, f"length is over the limit of {limits.max_length:,} characters")
    if body.num_samples > limits.max_samples:
        raise Refused(422, f"num_samples is over the limit of {limits.max_samples}")
    ids = served.encode(s, body.prompt, body.unknown)
    if not ids:
        start = s.vocab.id_of("\n")
        ids = [start if start is not None else 0]
    if not s.batcher.reserve(body.num_samples):
        raise Refused(
            429,
            f"the server is busy ({s.batcher.rows_in_flight} of {limits.max_streams} "
            "streams in flight); retry shortly",
            headers={"Retry-After": "1"},
        )
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    job = Job(
        ids=ids,
        num_samples=body.num_samples,
        length=body.length,
        temperature=body.temperature,
        top_k=body.top_k,
        top_p=body.top_p,
        seed=seed,
        details=body.details,
        deadline=time.monotonic() + limits.max_request_s,
        emit=events.put_nowait,  # runs in this loop (the batcher posts to it)
    )
    t0 = time.perf_counter()
    s.batcher.submit(job)
    head = {"model": s.name, "seed": seed, "prompt": s.vocab.decode(ids) if body.prompt else ""}
    if body.stream:
        return StreamingResponse(
            _sse(job, events, head),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    texts = [[] for _ in range(body.num_samples)]
    details = [[] for _ in range(body.num_samples)] if body.details else None
    try:
        while True:
            e = await events.get()
            if e["type"] == "token":
                texts[e["sample"]].append(e["text"])
                if details is not None:
                    details[e["sample"]].append(
                        {k: e[k] for k in ("text", "surprise_bits", "top5")}
                    )
            elif e["type"] == "error":
                return JSONResponse({"error": e["error"]}, status_code=500)
            else:
                break
    finally:
        job.cancel()  # a client gone mid-request frees its rows
    if e["finish_reason"] == "time_limit":
        raise Refused(
            408, f"the request ran past the {limits.max_request_s:g} s limit; ask for less"
        )
    elapsed = time.perf_counter() - t0
    out = head | {
        "samples": ["".join(t) for t in texts],
        "finish_reason": e["finish_reason"],
        "elapsed_s": elapsed,
        "chars_per_s": body.length * body.num_samples / max(elapsed, 1e-9),
    }
    if details is not None:
        out["details"] = details
    return JSONResponse(out)


async def _sse(
    job: Job, events: asyncio.Queue[dict[str, Any]], head: dict[str, Any]
) -> AsyncIterator[str]:
    """Server-Sent Events: ``event: start``, one ``data:`` per character, ``event: done``.
    Starlette cancels this generator when the client disconnects; ``finally`` frees the rows."""
    try:
        yield f"event: start\ndata: {json.dumps(head)}\n\n"
        while True:
            # whatever has arrived goes out in one write: fewer sends when the batch is busy
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            chunk = []
            for e in batch:
                kind = e.pop("type")
                if kind == "token":
                    chunk.append(f"data: {json.dumps(e)}\n\n")
                else:
                    chunk.append(f"event: {kind}\ndata: {json.dumps(e)}\n\n")
                    yield "".join(chunk)
                    return
            yield "".join(chunk)
    finally:
        job.cancel()


def _surprise_bits(model: CharLM, ids: list[int]) -> list[float]:
    """-log2 p(ids[t] | ids[:t]) for t >= 1, in one forward pass (state carried)."""
    with torch.inference_mode():
        x = torch.tensor([ids], device=model.head.weight.device)  # (1, N)
        logits, _ = model(x[:, :-1])  # (1, N-1, V)
        logp = logits[0].float().log_softmax(-1)  # (N-1, V)
        nats = -logp.gather(1, x[0, 1:, None])[:, 0]  # (N-1,)
    return [round(v / LN2, 5) if math.isfinite(v) else None for v in nats.tolist()]


def _asset(name: str) -> str:
    return resources.files("rnnlab.serve").joinpath("assets", name).read_text(encoding="utf-8")
