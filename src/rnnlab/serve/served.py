"""The models a server serves: each run's best weights under its folder name with the batcher
its clients share, the limits on what a request may ask, and the refusal every route raises.
Imports checkpoint, config, errors, model and vocab from rnnlab.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import checkpoint
from ..config import to_dict
from ..errors import UsageError
from ..model import CharLM, count_parameters
from ..vocab import Vocab
from .batcher import Batcher

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


class Refused(Exception):
    """A request the server will not run; becomes ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class ServedModels:
    """The served models by name, and the checks every route makes of a request's model and
    text; the app keeps it as ``app.state.models``."""

    def __init__(self, served: dict[str, Served], limits: Limits) -> None:
        self.served, self.limits = served, limits
        self.default = next(iter(served))

    def pick(self, name: str | None) -> Served:
        """The model named ``name`` (None: the first)."""
        if name is None:
            return self.served[self.default]
        if name not in self.served:
            raise Refused(404, f"no model named {name!r}; served: {', '.join(self.served)}")
        return self.served[name]

    def encode(self, s: Served, text: str, unknown: str) -> list[int]:
        try:
            return s.vocab.encode(text, unknown=unknown)
        except UsageError as e:
            message = str(e).replace("--unknown skip", '"unknown": "skip"')
            raise Refused(422, message) from None

    def text_ids(
        self, name: str | None, text: str, unknown: str, max_chars: int
    ) -> tuple[Served, list[int]]:
        """The model and ``text``'s ids for a route that reads a text (score, viz): at most
        ``max_chars`` characters, at least 2 that the model knows."""
        s = self.pick(name)
        if len(text) > max_chars:
            raise Refused(413, f"text is over the limit of {max_chars:,} characters")
        ids = self.encode(s, text, unknown)
        if len(ids) < 2:
            raise Refused(422, "text needs at least 2 characters the model knows")
        return s, ids
