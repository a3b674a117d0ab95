"""ASGI middleware of the server: what a web page in the user's browser must not get to do
with it (Guard), and the bound on a request body (BodyLimit). Plain ASGI; imports nothing
from rnnlab.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


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
