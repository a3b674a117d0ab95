"""The HTTP server: FastAPI routes over one Batcher per served model, and the playground page.

Routes: POST /v1/generate (JSON, or Server-Sent Events with "stream": true), POST /v1/score,
POST /v1/completions (OpenAI's API: completions.py), POST /v1/viz (the viz tab: vizpage.py),
GET /v1/models, GET /health, GET / (the playground), /docs and /openapi.json (FastAPI's).
Every refusal is a 4xx whose JSON body is ``{"error": "one line saying what to do"}`` (on
/v1/completions in OpenAI's shape, ``{"error": {"message": ..., "type": ...}}``).
Imports checkpoint, config, errors, model and vocab from rnnlab; never training, viz or cli.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import checkpoint
from ..config import __version__, to_dict
from ..errors import UsageError
from ..model import CharLM, count_parameters
from ..vocab import Vocab
from . import completions, vizpage
from .batcher import LN2, TOP, Batcher, Job

ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
# the most each limit may be set to: what one machine can serve in one request
LIMIT_BOUNDS = {
    "max_prompt_chars": 1_000_000,
    "max_length": 1_000_000,
    "max_samples": 4096,
    "max_streams": 65_536,
    "max_request_s": 86_400,
    "max_score_chars": 10_000_000,
    "max_viz_chars": 100_000,  # a page records every cell of every character
    "max_body_bytes": 1 << 30,
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Limits:
    """What one request, and all of them together, may ask of the machine."""

    max_prompt_chars: int = 4000  # the prompt is primed in one forward pass
    max_length: int = 2000  # characters generated per sample
    max_samples: int = 8  # samples per request
    max_streams: int = 64  # rows of the shared batch: samples in flight, all requests together
    max_request_s: float = 60.0  # a request's rows stop after this long
    max_score_chars: int = 20_000  # text scored by /v1/score
    max_viz_chars: int = 5_000  # text shown by /v1/viz (recorded cell by cell, then sent whole)
    max_body_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            flag, most = f"--{name.replace('_', '-')}", LIMIT_BOUNDS[name]
            if not 0 < value <= most:  # NaN and inf too
                raise UsageError(f"{flag} must be > 0 and at most {most:,}, got {value:g}")


@dataclass
class Served:
    """A model under its served name, with its batcher."""

    name: str
    model: CharLM
    vocab: Vocab
    info: dict[str, Any]
    batcher: Batcher


def load_runs(runs: list[Path], device: str = "cpu") -> list[tuple[str, CharLM, Vocab, dict]]:
    """Each run directory's best weights under its folder name (which must be unique)."""
    loaded, names = [], set()
    for run in runs:
        run = Path(run)
        name = run.resolve().name
        if name in names:
            raise UsageError(
                f"two runs are named {name!r}; clients pick a model by folder name, rename one"
            )
        names.add(name)
        model, vocab, config = checkpoint.load_model(run, checkpoint.BEST, device)
        val = [
            r["bpc"]
            for r in checkpoint.read_metrics(run)
            if r.get("split") == "val" and isinstance(r.get("bpc"), (int, float))
        ]
        info = {
            "name": name,
            "model": to_dict(config.model),
            "vocab": {"mode": vocab.mode, "size": len(vocab)},
            "parameters": count_parameters(model),
            "best_val_bpc": min(val) if val else None,
            "trained_steps": max(
                (r.get("step", 0) for r in checkpoint.read_metrics(run)), default=0
            ),
        }
        loaded.append((name, model, vocab, info))
    return loaded


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


class Refused(Exception):
    """A request the server will not run; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def one_line(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line that names the field."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg', 'invalid')}" + (f" (and {more} more)" if more else "")


# --- the app ------------------------------------------------------------------------------------


def create_app(
    runs: list[Path],
    limits: Limits = Limits(),
    device: str = "cpu",
    viz: vizpage.Renderer | None = None,
    allowed_hosts: tuple[str, ...] | None = None,
) -> FastAPI:
    """The server for ``runs`` (run directories, served under their folder names); ``viz``
    renders the viz tab's page (``rnnlab.viz.page_for_ids``; None: no viz tab).

    The batchers' threads start with the app (its lifespan) and stop with it.

    Args:
        runs: run directories.
        limits: what a request may ask.
        device: where the models run.
        allowed_hosts: the only Host header names answered (``LOOPBACK_NAMES`` when bound to
            loopback, so a web page cannot reach the server by DNS rebinding); None: any.
    """
    served: dict[str, Served] = {}
    for name, model, vocab, info in load_runs(runs, device):
        batcher = Batcher(model, vocab, max_rows=limits.max_streams)
        served[name] = Served(name, model, vocab, info, batcher)
    default = next(iter(served))

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        post = asyncio.get_running_loop().call_soon_threadsafe
        for s in served.values():
            s.batcher.post = post  # one hand-over to this loop per step
            s.batcher.start()
        yield
        for s in served.values():
            s.batcher.close()

    app = FastAPI(
        title="rnnlab",
        version=__version__,
        description="Character-level RNN language models: generate and score text.",
        lifespan=lifespan,
    )
    app.state.served = served
    app.state.limits = limits

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(
            _error(request, exc.message), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        where = f"{request.method} {request.url.path}"
        message = {
            404: f"no route {where}; the routes are listed at /docs",
            405: f"{request.url.path} does not take {request.method}; see /docs",
        }.get(exc.status_code, f"{where}: {exc.detail}")
        return JSONResponse(
            _error(request, message), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status = 400 if exc.errors()[0].get("type") == "json_invalid" else 422
        return JSONResponse(_error(request, one_line(exc)), status_code=status)

    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)

    def pick(name: str | None) -> Served:
        if name is None:
            return served[default]
        if name not in served:
            raise Refused(404, f"no model named {name!r}; served: {', '.join(served)}")
        return served[name]

    def encode(s: Served, text: str, unknown: str) -> list[int]:
        try:
            return s.vocab.encode(text, unknown=unknown)
        except UsageError as e:
            message = str(e).replace("--unknown skip", '"unknown": "skip"')
            raise Refused(422, message) from None

    def text_ids(
        name: str | None, text: str, unknown: str, max_chars: int
    ) -> tuple[Served, list[int]]:
        """The model and ``text``'s ids for a route that reads a text (score, viz): at most
        ``max_chars`` characters, at least 2 that the model knows."""
        s = pick(name)
        if len(text) > max_chars:
            raise Refused(413, f"text is over the limit of {max_chars:,} characters")
        ids = encode(s, text, unknown)
        if len(ids) < 2:
            raise Refused(422, "text needs at least 2 characters the model knows")
        return s, ids

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(_asset("page.html"))

    @app.get("/assets/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in ASSETS:
            raise Refused(404, f"no asset {name!r}")
        return Response(_asset(name), media_type=ASSETS[name])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, and how busy each model's batch is."""
        return {
            "status": "ok",
            "models": {
                n: {"streams_in_flight": s.batcher.rows_in_flight, "steps": s.batcher.steps}
                for n, s in served.items()
            },
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        """The served models: name, configuration, vocabulary, validation bpc (and the list
        in OpenAI's shape, ``object``/``data``, for its clients)."""
        return {
            "models": [s.info for s in served.values()],
            "limits": asdict(limits),
            "viz": viz is not None,
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "rnnlab"}
                for name in served
            ],
        }

    @app.post("/v1/score")
    async def score(body: ScoreRequest) -> dict[str, Any]:
        """Bits per character of ``text[1:]`` given what precedes it, and each one's surprise."""
        s, ids = text_ids(body.model, body.text, body.unknown, limits.max_score_chars)
        surprise = await asyncio.to_thread(_surprise_bits, s.model, ids)
        return {
            "model": s.name,
            "num_chars": len(ids) - 1,
            "bpc": sum(surprise) / len(surprise),
            "surprise_bits": [None, *surprise],  # the first character is not predicted
        }

    @app.post("/v1/generate", response_model=None)
    async def generate(body: GenerateRequest, request: Request) -> JSONResponse | StreamingResponse:
        """Continue a prompt: JSON, or with ``"stream": true`` Server-Sent Events (``data:`` one
        JSON object per character, then ``event: done``)."""
        s = pick(body.model)
        if len(body.prompt) > limits.max_prompt_chars:
            raise Refused(
                413, f"prompt is over the limit of {limits.max_prompt_chars:,} characters"
            )
        if body.length > limits.max_length:
            raise Refused(422, f"length is over the limit of {limits.max_length:,} characters")
        if body.num_samples > limits.max_samples:
            raise Refused(422, f"num_samples is over the limit of {limits.max_samples}")
        ids = encode(s, body.prompt, body.unknown)
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

    completions.add_routes(app, pick, encode, Refused)
    vizpage.add_routes(app, text_ids, Refused, viz)
    app.state.viz = viz is not None
    return app


class Guard:
    """What a web page in the user's browser must not get to do with this unauthenticated
    server: reach it under another host name (DNS rebinding: the Host header is checked against
    ``allowed_hosts``), or post to it cross-site (a page can send a form or text/plain without
    asking; application/json needs a CORS preflight this server never grants, so POST bodies
    must be JSON). Plain ASGI, as BodyLimit."""

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...] | None) -> None:
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.allowed_hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host  # drop the port
            if name.strip("[]").lower() not in self.allowed_hosts:
                message = (
                    f"Host {host!r} is not a name of this loopback server; use "
                    f"http://127.0.0.1 or http://localhost"
                )
                return await JSONResponse({"error": message}, status_code=400)(scope, receive, send)
        if scope["method"] == "POST":
            kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
            if kind.lower() != "application/json":
                message = (
                    f"send Content-Type: application/json (got {kind or 'none'}; with curl: "
                    "-H 'Content-Type: application/json'); other types are refused so that a "
                    "web page cannot post to this server"
                )
                return await JSONResponse({"error": message}, status_code=415)(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses a body over ``max_bytes`` (413 from its Content-Length; a chunked body that grows
    past it reads as a disconnect). Plain ASGI, not Starlette's BaseHTTPMiddleware, which would
    put every streamed event through an extra memory channel."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.max_bytes):
            error = JSONResponse(
                {"error": f"the request body is over {self.max_bytes:,} bytes"}, status_code=413
            )
            return await error(scope, receive, send)
        seen = 0

        async def bounded() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            return {"type": "http.disconnect"} if seen > self.max_bytes else message

        await self.app(scope, bounded, send)


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


def _error(request: Request, message: str) -> dict[str, Any]:
    """The body of a refusal: ``{"error": message}``; on OpenAI's route, OpenAI's shape
    (``{"error": {"message", "type", ...}}``), which its clients read the message from."""
    if request.url.path == "/v1/completions":
        return {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return {"error": message}


def _asset(name: str) -> str:
    return resources.files("rnnlab.serve").joinpath("assets", name).read_text(encoding="utf-8")


__all__ = [
    "LOOPBACK_NAMES",
    "TOP",
    "GenerateRequest",
    "Limits",
    "ScoreRequest",
    "create_app",
    "load_runs",
]
