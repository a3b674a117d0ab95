"""Where training progress goes: the events the loop reports and the loggers that take them.
The run's metrics.jsonl is one logger (the JSONL sink); the CLI adds its console bar; the API
can print plain lines. Imports checkpoint (to append to metrics.jsonl); never training.
"""

from __future__ import annotations

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
            f"step {e.step:6d} | val {e.bpc:.4f} bpc ({e.loss_nats:.4f} nats/char) | "
            f"best {e.best_bpc:.4f} | {e.elapsed_s:7.1f} s",
            file=self.stream,
            flush=True,
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
