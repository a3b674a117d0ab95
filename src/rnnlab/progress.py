"""Where training progress goes: the events the loop reports and the loggers that take them.
The run's metrics.jsonl is one logger (the JSONL sink); the CLI adds its console bar; the API
can print plain lines. Imports checkpoint (to append to metrics.jsonl); never training.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from . import checkpoint as ckpt


@dataclass(frozen=True)
class EvalEvent:
    """What loggers (and ``on_eval``) receive after each validation."""

    step: int
    bpc: float
    loss_nats: float
    best_bpc: float
    elapsed_s: float
    sample: str
    train_bpc: float = math.nan  # mean training loss since the previous validation (rank 0)


@dataclass(frozen=True)
class StepEvent:
    """Every LOG_EVERY_STEPS steps: the training loss (mean over ranks) and the pace."""

    step: int
    bpc: float
    loss_nats: float
    lr: float
    chars_per_s: float
    elapsed_s: float
    budget_fraction: float
    last_val_bpc: float


class TrainLogger(Protocol):
    """Where progress goes. The run's metrics.jsonl is one; the CLI adds a console bar."""

    def start(self, description: str) -> None: ...

    def step(self, event: StepEvent) -> None: ...

    def eval(self, event: EvalEvent) -> None: ...


class MetricsLog:
    """The JSONL sink: one line per event in the run's metrics.jsonl (units in every name)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def start(self, description: str) -> None:
        pass

    def step(self, e: StepEvent) -> None:
        ckpt.append_metrics(
            self.run_dir,
            {
                "step": e.step,
                "split": "train",
                "bpc": e.bpc,
                "loss_nats": e.loss_nats,
                "lr": e.lr,
                "chars_per_s": e.chars_per_s,
                "elapsed_s": e.elapsed_s,
            },
        )

    def eval(self, e: EvalEvent) -> None:
        record = {"step": e.step, "split": "val", "bpc": e.bpc, "loss_nats": e.loss_nats}
        if math.isfinite(e.train_bpc):
            record["train_bpc"] = e.train_bpc
        ckpt.append_metrics(self.run_dir, record | {"elapsed_s": e.elapsed_s})


class PrintLog:
    """A console sink without a bar: fixed-width lines on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, every_steps: int = 100) -> None:
        self.stream = stream or sys.stderr
        self.every_steps = every_steps

    def start(self, description: str) -> None:
        print(description, file=self.stream, flush=True)

    def step(self, e: StepEvent) -> None:
        if e.step % self.every_steps == 0:
            print(
                f"step {e.step:6d} | train {e.bpc:.4f} bpc | lr {e.lr:.2e} | "
                f"{e.chars_per_s:8,.0f} chars/s | {e.elapsed_s:7.1f} s",
                file=self.stream,
                flush=True,
            )

    def eval(self, e: EvalEvent) -> None:
        print(
            f"step {e.step:6d} | {train_val(e)} | best {e.best_bpc:.4f} | {e.elapsed_s:7.1f} s",
            file=self.stream,
            flush=True,
        )


def train_val(e: EvalEvent) -> str:
    """Training and validation loss side by side, and the gap between them: a gap that keeps
    growing while validation stalls is the model memorizing its text."""
    val = f"val {e.bpc:.4f} bpc ({e.loss_nats:.4f} nats/char)"
    if not math.isfinite(e.train_bpc):
        return val
    return f"train {e.train_bpc:.4f} {val}, gap {e.bpc - e.train_bpc:+.3f}"


def when_validation_stopped(events: list[dict]) -> str:
    """One line on where validation was best, read from a run's metrics events: at the end, or
    at which step and minute it stopped improving, and by how much the later ones were worse
    while the training loss kept falling (memorizing the text)."""
    vals = [e for e in events if e.get("split") == "val" and math.isfinite(e.get("bpc", math.nan))]
    if not vals:
        return "no validation was recorded"
    best = min(range(len(vals)), key=lambda i: vals[i]["bpc"])
    b = vals[best]
    where = f"step {b['step']:,} ({b['elapsed_s'] / 60:.1f} min)"
    if best == len(vals) - 1:
        return f"validation improved to the end: best at the last validation, {where}"
    later = vals[best + 1 :]
    worse = max(e["bpc"] for e in later) - b["bpc"]
    gap = [e["bpc"] - e["train_bpc"] for e in (b, vals[-1]) if "train_bpc" in e]
    widened = f"; the train/val gap went {gap[0]:+.3f} -> {gap[1]:+.3f}" if len(gap) == 2 else ""
    return (
        f"validation stopped improving at {where}, {b['bpc']:.4f} bpc (kept as the model); "
        f"the {len(later)} validation(s) after it were up to {worse:.4f} bpc worse{widened}"
    )


class Callbacks:
    """The older ``on_eval`` / ``on_start`` callbacks as a logger."""

    def __init__(self, on_eval=None, on_start=None) -> None:
        self.on_eval, self.on_start = on_eval, on_start

    def start(self, description: str) -> None:
        if self.on_start is not None:
            self.on_start(description)

    def step(self, event: StepEvent) -> None:
        pass

    def eval(self, event: EvalEvent) -> None:
        if self.on_eval is not None:
            self.on_eval(event)


class Fanout:
    def __init__(self, loggers: list[TrainLogger]) -> None:
        self.loggers = loggers

    def start(self, description: str) -> None:
        for log in self.loggers:
            log.start(description)

    def step(self, event: StepEvent) -> None:
        for log in self.loggers:
            log.step(event)

    def eval(self, event: EvalEvent) -> None:
        for log in self.loggers:
            log.eval(event)
