"""POST /v1/viz: the viz page (what `rnnlab viz` writes) for any text, rendered live for the
playground's viz tab. The server layer may not import viz (they share a layer), so the app is
handed the renderer by its caller (cli.serve passes ``viz.page_for_ids``). Imports nothing from
rnnlab.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field

# (model, vocab, served name, ids) -> the page's HTML
Renderer = Callable[[Any, Any, str, list[int]], str]


class VizRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str | None = Field(None, description="served name; default: the first")
    text: str = Field(..., min_length=2, description="the text to show (at least 2 characters)")
    unknown: Literal["error", "skip"] = "error"


def add_routes(
    app: FastAPI,
    text_ids: Callable[[str | None, str, str, int], tuple[Any, list[int]]],
    refused: Callable[[int, str], Exception],
    render: Renderer | None,
) -> None:
    """Register POST /v1/viz on ``app``; ``text_ids`` (the served model and a text's ids, the
    text's length and characters checked) and ``refused`` are the app's, ``render`` makes the
    page (None: the route says the server was started without it)."""
    limits = app.state.limits

    @app.post("/v1/viz", response_class=HTMLResponse)
    async def viz(body: VizRequest) -> HTMLResponse:
        """The self-contained viz page of the model on ``text``: its cells' activations, the
        span and pattern searches, the model's guesses at every character."""
        if render is None:
            raise refused(404, "this server has no viz page: start it with rnnlab serve")
        s, ids = text_ids(body.model, body.text, body.unknown, limits.max_viz_chars)
        # the recording reads the weights only, beside the batcher's thread
        return HTMLResponse(await asyncio.to_thread(render, s.model, s.vocab, s.name, ids))
