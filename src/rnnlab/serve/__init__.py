"""`rnnlab serve`: an HTTP server (FastAPI on uvicorn) that generates and scores text with
trained runs, many clients sharing one batched step, and a playground page. Needs the `serve`
extra. Imports checkpoint and below; never training, viz, lab or cli."""

from .app import LOOPBACK_NAMES, GenerateRequest, Limits, ScoreRequest, create_app, load_runs
from .batcher import Batcher, Job
from .completions import CompletionRequest

__all__ = [
    "LOOPBACK_NAMES",
    "Batcher",
    "CompletionRequest",
    "GenerateRequest",
    "Job",
    "Limits",
    "ScoreRequest",
    "create_app",
    "load_runs",
]
