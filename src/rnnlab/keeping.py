"""What a run keeps, and how it checks itself: the checkpoint read back on resume, the first
writes into the run directory, validation (the best weights kept as model.safetensors, a
diverged run caught), and the checkpoint committed as one unit, with a full disk said in one
line. The Trainer (training.py) is a RunRecord; this is the part of it that reads and writes
the run directory, the loop is the other. Imports the layers below; never training.
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from . import checkpoint as ckpt
from .bpc import LN2, loss_nats
from .checkpoint import RunConfig, TrainingState
from .config import TrainConfig
from .distributed import Ranks
from .errors import UsageError
from .model import CharLM, Ensemble, count_parameters
from .progress import EvalEvent, Fanout
from .sampling import generate
from .startup import Start
from .vocab import Vocab


class Mean:
    """A running mean; nan while empty."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else math.nan


class RunRecord:
    """The run directory's side of a Trainer: restore, first writes, validate, commit. The
    attributes below are set by the Trainer before it calls any of these."""

    out: Path
    ranks: Ranks
    log: Fanout
    config: RunConfig
    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    vocab: Vocab
    val_ids: torch.Tensor
    model: CharLM | Ensemble
    optimizer: torch.optim.Optimizer
    rows: slice
    step: int
    elapsed_s: float
    last_eval_s: float
    best_bpc: float
    last_bpc: float
    train_nats: Mean
    state: tuple[torch.Tensor, ...] | None
    checkpoint_step: int | None
    averaged: dict[str, torch.Tensor]  # --ema: the moving average of each weight, else empty

    def _restore(self, weights: dict[str, torch.Tensor], ts: TrainingState) -> None:
        try:
            self.model.load_state_dict(weights)
            self.optimizer.load_state_dict(ts.optimizer)
            torch.set_rng_state(ts.rng_cpu)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise ckpt.CheckpointError(
                f"{self.out / ckpt.LAST}: the training state does not fit the model "
                f"({type(e).__name__}); the run cannot be resumed"
            ) from None
        self.step, self.elapsed_s, self.last_eval_s = ts.step, ts.elapsed_s, ts.last_eval_s
        self.best_bpc, self.last_bpc = ts.best_val_bpc, ts.last_val_bpc
        if ts.rng_cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(ts.rng_cuda)
        # saved for all B streams, whatever the number of processes that wrote it
        self.state = tuple(s[:, self.rows].to(self.device) for s in ts.carried_state) or None
        self.checkpoint_step = ts.step
        if self.averaged:
            if ts.averaged.keys() != self.averaged.keys():
                raise ckpt.CheckpointError(
                    f"{self.out / ckpt.LAST}: the moving average of the weights (--ema) is "
                    "missing or does not fit the model; the run cannot be resumed"
                )
            self.averaged = {n: w.to(self.device) for n, w in ts.averaged.items()}

    def average_weights(self) -> None:
        """--ema: move the average of each weight toward its value after this step (the decay
        ramps up as (1 + step) / (10 + step) over the first steps, so the start is forgotten)."""
        if not self.averaged:
            return
        decay = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                self.averaged[name].lerp_(p.detach(), 1.0 - decay)

    @contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """With --ema: the model holds the averaged weights inside the block, its own after."""
        if not self.averaged:
            yield
            return
        params = dict(self.model.named_parameters())
        own = {n: p.detach().clone() for n, p in params.items()}
        try:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(self.averaged[n])
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(own[n])

    def _write_start(self, start: Start) -> None:
        """The first writes of a run (rank 0): leftovers of a killed write removed, metrics
        cut back to the checkpoint, config and vocabulary."""
        if not self.ranks.main:
            return
        ckpt.remove_leftovers(self.out)
        if start.resume or (self.out / ckpt.METRICS).exists():
            ckpt.rewind_metrics(self.out, start.state)
        if not start.resume:
            ckpt.save_vocab(self.out, self.vocab)
        ckpt.save_config(self.out, self.config)
        c, corpus = self.config.model, self.config.corpus
        resumed = "resuming" if start.state is not None else "training"
        self.log.start(
            (f"{start.plan.line()}\n" if start.plan is not None else "")
            + f"{resumed} {c.cell} {c.num_layers}x{c.hidden_size} "
            f"({count_parameters(self.model) / 1e6:.2f}M parameters) on {corpus.source} "
            f"({corpus.num_chars:,} {'bytes' if corpus.byte_mode else 'chars'}, vocabulary "
            f"{len(self.vocab)}), {self.amp_dtype or torch.float32} on {self.device}, "
            f"into {self.out}"
        )

    def validate(self) -> tuple[EvalEvent, str]:
        """Rank 0 validates (exact, the whole split); the others wait for its numbers. Returns
        the event and, if training diverged, why (non-finite weights or loss, or a loss far
        worse than a uniform guess)."""
        self.last_eval_s = self.elapsed_s
        if not self.ranks.main:
            nats, self.last_bpc, self.best_bpc = self.ranks.from_main([0.0] * 3, self.device)
            event = EvalEvent(self.step, self.last_bpc, nats, self.best_bpc, self.elapsed_s, "")
            return event, self._divergence(self.last_bpc)
        with self.averaged_weights():  # --ema: the average is validated, kept and sampled
            finite = all(bool(torch.isfinite(p).all()) for p in self.model.parameters())
            nats = (
                loss_nats(self.model, self.val_ids, autocast_dtype=self.amp_dtype)
                if finite
                else math.nan
            )
            self.last_bpc = nats / LN2
            message = self._divergence(self.last_bpc)
            if not message and self.last_bpc < self.best_bpc:
                self.best_bpc = self.last_bpc
                meta = {"val_bpc": repr(self.last_bpc)}
                self._saving(
                    lambda: ckpt.save_weights(self.out / ckpt.BEST, self.model, self.step, meta)
                )
            self.ranks.from_main([nats, self.last_bpc, self.best_bpc], self.device)
            train_bpc, self.train_nats = self.train_nats.value / LN2, Mean()
            text = ""
            if self.cfg.sample_chars and not message:
                text = generate(
                    self.model,
                    self.vocab,
                    length=self.cfg.sample_chars,
                    temperature=0.8,
                    seed=self.step,
                    weights_dtype=self.amp_dtype,  # the preview runs in the autocast type: fast
                )[0]
        self.model.train()
        event = EvalEvent(
            self.step, self.last_bpc, nats, self.best_bpc, self.elapsed_s, text, train_bpc
        )
        self._saving(lambda: self.log.eval(event))
        return event, message

    def _divergence(self, bpc: float) -> str:
        uniform = math.log2(len(self.vocab))
        if not math.isfinite(bpc):
            return "the weights or the validation loss became NaN or Inf"
        if bpc > max(2 * uniform, uniform + 2):
            return f"validation {bpc:,.1f} bpc is far worse than a uniform guess ({uniform:.2f})"
        return ""

    def commit(self) -> None:
        """Save the checkpoint of this step as one unit (rank 0 writes; every rank takes part
        in gathering the carried state of all streams)."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            return  # never let non-finite weights overwrite a good checkpoint
        carried = ()
        if self.state is not None:
            carried = tuple(s.detach().cpu() for s in self.ranks.gather_rows(self.state))
        if not self.ranks.main:
            return

        def write() -> None:
            state = TrainingState(
                step=self.step,
                elapsed_s=self.elapsed_s,
                best_val_bpc=self.best_bpc,
                last_val_bpc=self.last_bpc,
                last_eval_s=self.last_eval_s,
                metrics_bytes=ckpt.sync_metrics(self.out),
                optimizer=self.optimizer.state_dict(),
                rng_cpu=torch.get_rng_state(),
                rng_cuda=torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
                carried_state=carried,
                averaged=self.averaged,
            )
            ckpt.commit_checkpoint(self.out, self.model, state)

        self._saving(write)
        self.checkpoint_step = self.step

    def _saving(self, write: Callable[[], None]) -> None:
        """Run a write into the run directory; a full disk or a file-size limit becomes one
        line that says the previous checkpoint is intact."""
        try:
            write()
        except OSError as e:
            kept = (
                f"the checkpoint of step {self.checkpoint_step} is intact"
                if self.checkpoint_step is not None
                else "no checkpoint had been saved yet"
            )
            why = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file-size limit was hit"}
            raise UsageError(
                f"could not write to {self.out} at step {self.step} "
                f"({why.get(e.errno, e.strerror)}); {kept}: fix it, then rnnlab train --resume "
                f"{self.out}"
            ) from None
