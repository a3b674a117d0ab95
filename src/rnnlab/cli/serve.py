"""rnnlab serve: an HTTP server (FastAPI on uvicorn) and playground page for one or more runs;
the optional extra `serve`."""

from __future__ import annotations

import argparse
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
        import uvicorn

        from ..serve import Limits, create_app
    except ImportError as e:
        raise UsageError(
            f"rnnlab serve needs the serve extra ({e.name} is missing): pip install 'rnnlab[serve]'"
        ) from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be between 1 and 65,535, got {args.port}")
    limits = Limits(**{k: getattr(args, k) for k in LIMITS})
    device = str(resolve_device(args.device))
    app = create_app([Path(r) for r in args.runs], limits, device, viz=page_for_ids)
    names = ", ".join(app.state.served)
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    reach = (
        "loopback only: other machines cannot reach it; --host 0.0.0.0 opens it"
        if loopback
        else "reachable from other machines, with no authentication"
    )
    err(f"serving {names} on http://{args.host}:{args.port} ({reach}); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
