"""The HTTP server: FastAPI routes over one Batcher per served model, and the playground page.

Routes: POST /v1/generate (JSON, or Server-Sent Events with "stream": true), POST /v1/score,
GET /v1/models, GET /health, GET / (the playground: routes.py), POST /v1/completions (OpenAI's
API: completions.py), POST /v1/viz (the viz tab: vizpage.py), /docs and /openapi.json
(FastAPI's). Every refusal is a 4xx whose JSON body is ``{"error": "one line saying what to
do"}`` (on /v1/completions in OpenAI's shape, ``{"error": {"message": ..., "type": ...}}``).
Imports config from rnnlab (served.py loads the runs); never training, viz or cli.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import __version__
from . import completions, vizpage
from .batcher import TOP, Batcher
from .middleware import LOOPBACK_NAMES, BodyLimit, Guard
from .routes import GenerateRequest, ScoreRequest, router
from .served import Limits, Refused, Served, ServedModels, load_runs

DEFAULT_LIMITS = Limits()


def create_app(
    runs: list[Path],
    limits: Limits = DEFAULT_LIMITS,
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
    models = ServedModels(served, limits)
    app.state.served = served
    app.state.models = models
    app.state.limits = limits
    app.state.viz = viz is not None
    app.add_exception_handler(Refused, _refused)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts)
    app.include_router(router)
    completions.add_routes(app, models.pick, models.encode, Refused)
    vizpage.add_routes(app, models.text_ids, Refused, viz)
    return app


# --- refusals: one line in a JSON body ----------------------------------------------------------


async def _refused(request: Request, exc: Refused) -> JSONResponse:
    return JSONResponse(_error(request, exc.message), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    where = f"{request.method} {request.url.path}"
    message = {
        404: f"no route {where}; the routes are listed at /docs",
        405: f"{request.url.path} does not take {request.method}; see /docs",
    }.get(exc.status_code, f"{where}: {exc.detail}")
    return JSONResponse(_error(request, message), status_code=exc.status_code, headers=exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    status = 400 if exc.errors()[0].get("type") == "json_invalid" else 422
    return JSONResponse(_error(request, one_line(exc)), status_code=status)


def one_line(exc: RequestValidationError) -> str:
    """FastAPI's list of validation errors as one line that names the field."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON"
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    more = len(exc.errors()) - 1
    return f"{where}: {first.get('msg', 'invalid')}" + (f" (and {more} more)" if more else "")


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


__all__ = [
    "LOOPBACK_NAMES",
    "TOP",
    "GenerateRequest",
    "Limits",
    "ScoreRequest",
    "create_app",
    "load_runs",
]
