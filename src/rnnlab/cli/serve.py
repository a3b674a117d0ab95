"""rnnlab serve: an HTTP server (FastAPI on uvicorn) and playground page for one or more runs;
the optional extra `serve`."""

from __future__ import annotations

import argparse
import errno
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from ..errors import UsageError
from ..model import resolve_device
from ..viz import page_for_ids
from .flags import err

SUMMARY = "an HTTP server and playground page for one or more runs"
EXAMPLE = "example: rnnlab serve runs/mine --port 8000 (then open http://127.0.0.1:8000)"
LIMITS = {
    "max_prompt_chars": "longest prompt, in characters",
    "max_length": "most characters generated per sample",
    "max_samples": "most samples per request",
    "max_streams": "most samples in flight, all requests together (rows of the shared batch)",
    "max_request_s": "seconds after which a request's rows stop",
    "max_viz_chars": "longest text the viz tab shows (POST /v1/viz)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = {}
    try:
        from ..serve import Limits

        defaults = {f.name: f.default for f in fields(Limits)}
    except ImportError:  # without the extra, `rnnlab serve` says how to install it
        pass
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, served by name")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    for name, text in LIMITS.items():
        kind = float if name.endswith("_s") else int
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=kind, default=defaults.get(name), help=text)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401 (the extra's check; serve() uses it)

        from ..serve import LOOPBACK_NAMES, Limits, create_app
    except ImportError as e:
        raise UsageError(
            f"rnnlab serve needs the serve extra ({e.name} is missing): pip install 'rnnlab[serve]'"
        ) from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65,535, got {args.port}")
    limits = Limits(**{k: getattr(args, k) for k in LIMITS})
    loopback = args.host in LOOPBACK_NAMES
    runs = [Path(r) for r in args.runs]
    hosts = LOOPBACK_NAMES if loopback else None  # loopback: no DNS rebinding from a web page
    device = str(resolve_device(args.device))
    app = create_app(runs, limits, device, viz=page_for_ids, allowed_hosts=hosts)
    names = ", ".join(app.state.served)
    reach = (
        "loopback only: other machines cannot reach it; --host 0.0.0.0 opens it"
        if loopback
        else "reachable from other machines, with no authentication"
    )
    sock = bind(args.host, args.port)  # before saying "serving": a port in use is exit 2
    err(f"serving {names} on http://{args.host}:{args.port} ({reach}); Ctrl-C stops")
    serve(app, sock)
    return 0  # main() turns a SIGINT / SIGTERM that stopped it into 130 / 143


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound now; a host or port that cannot be had is a UsageError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(
            f"--host {host} cannot be resolved ({getattr(e, 'strerror', e)}); give an address "
            "such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        why = {
            errno.EADDRINUSE: "is in use: another server listens there; pick another --port",
            errno.EADDRNOTAVAIL: "is not an address of this machine; check --host",
            errno.EACCES: "needs privileges (ports below 1024); pick another --port",
        }.get(e.errno, f"cannot be bound ({e.strerror})")
        raise UsageError(f"{host}:{port} {why}") from None
    return sock


def serve(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, recorded in ``cli.SIGNALS`` (main
    exits 130 / 143). The handlers are in place before uvicorn starts, so a signal during its
    start-up stops it too (uvicorn's own would come later, and re-raise what they caught)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextmanager
        def capture_signals(self) -> Iterator[None]:  # ours, installed below, stay in place
            yield

    from . import SIGNALS  # those that came while loading: an import may have swallowed one

    server = Server(uvicorn.Config(app, log_level="warning"))

    def stop(signum: int, frame: object) -> None:
        SIGNALS.append(signum)
        server.handle_exit(signum, None)  # the first stops gracefully, a second Ctrl-C forces

    previous = {
        s: signal.signal(s, stop)
        for s in (signal.SIGINT, signal.SIGTERM)
        if signal.getsignal(s) is not signal.SIG_IGN  # started ignoring it (nohup, &)
    }
    try:
        if not SIGNALS:
            server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sock.close()
