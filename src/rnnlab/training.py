"""The one training loop: truncated BPTT over contiguous streams, AdamW with warmup and cosine
decay, gradient clipping, budgets in steps or minutes, exact validation, checkpoints committed
as one unit, Ctrl-C and SIGTERM that save. Reads top-down: the entry point (the run started or
resumed by startup.py, under its lock), then the loop. Progress goes to a TrainLogger; the
run's metrics.jsonl is one. Imports everything below it; never viz, lab or cli.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from . import finetune
from .bpc import LN2
from .config import CorpusConfig, ModelConfig, TrainConfig
from .distributed import Ranks, distributed
from .interrupts import stop_on_signals
from .keeping import Mean, RunRecord
from .model import (
    Ensemble,
    build_model,
    clip_gradients,
    detach,
    resolve_device,
    resolve_dtype,
)
from .optimizers import learning_rate, make_optimizer
from .progress import Callbacks, EvalEvent, Fanout, MetricsLog, PrintLog, StepEvent, TrainLogger
from .startup import Start, start_run, writer

LOG_EVERY_STEPS = 10
MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up
EXIT_CODES = {"budget": 0, "diverged": 3, "SIGINT": 130, "SIGTERM": 143}


# --- what the loop returns ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    elapsed_s: float
    best_val_bpc: float
    last_val_bpc: float
    stopped: str  # "budget", "interrupted" (Ctrl-C or SIGTERM, saved) or "diverged"
    sample: str
    rank: int = 0  # under torchrun, this process's rank (only rank 0 wrote the run)
    signal: str | None = None  # "SIGINT" or "SIGTERM" when interrupted
    checkpoint_step: int | None = None  # the step of the last committed checkpoint, if any
    message: str = ""  # why it diverged

    @property
    def exit_code(self) -> int:
        """0 finished, 3 diverged, 130 after Ctrl-C, 143 after SIGTERM (both saved)."""
        return (
            EXIT_CODES[self.signal or "SIGINT"]
            if self.stopped == "interrupted"
            else EXIT_CODES[self.stopped]
        )


# --- the entry point ----------------------------------------------------------------------------


def train(
    corpus: CorpusConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    logger: TrainLogger | None = None,
    progress: bool = False,
    on_eval: Callable[[EvalEvent], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    init_from: finetune.InitFrom | None = None,
    user: Collection[str] | None = None,
) -> TrainResult:
    """Train a CharLM into the run directory ``out``, or continue the run there.

    Args:
        corpus: the text (ignored on resume: the run's own corpus is used and checked).
        model_config: architecture (ignored on resume: the run's own is used).
        train_config: on a new run, everything; on resume only the budget (``max_steps``,
            ``minutes``) is taken from it, and only if one of them is set; the rest comes from
            the run.
        out: the run directory; must not hold a run unless ``resume`` (a run stopped before
            its first checkpoint may be reused).
        resume: continue the run in ``out`` exactly where its last checkpoint left it.
        logger: receives progress (start line, training steps, validations).
        progress: also print progress lines to stderr (PrintLog).
        on_eval: called after each validation with an EvalEvent.
        on_start: called once the inputs are checked, with a one-line description of the run.
        init_from: fine-tune: a new run that starts from this run's weights (finetune.py).
        user: plan the new run (plan.py): the names of the ModelConfig and TrainConfig fields
            the user set, which the plan keeps; it chooses the others. None: no plan, the
            configs are used as given (and on resume and fine-tuning the plan never runs).

    Returns:
        A TrainResult; ``stopped`` says why the loop ended and ``exit_code`` what the CLI
        returns for it.

    Raises:
        UsageError: a bad input, a run being written by another process, or a checkpoint that
            could not be saved (disk full, file-size limit); the previous checkpoint is intact.
    """
    out = Path(out)
    ranks = distributed()
    loggers: list[TrainLogger] = [MetricsLog(out)] if ranks.main else []
    loggers.append(Callbacks(on_eval, on_start))
    if progress:
        loggers.append(PrintLog())
    if logger is not None:
        loggers.append(logger)
    log = Fanout(loggers)
    if resume:  # under the lock, so no other writer moves the checkpoint after it is read
        with writer(out, ranks, resume=True):
            start = start_run(corpus, model_config, train_config, out, True, ranks)
            return Trainer(start, out, ranks, log).run()
    start = start_run(corpus, model_config, train_config, out, False, ranks, init_from, user)
    with writer(out, ranks, resume=False):
        return Trainer(start, out, ranks, log).run()


# --- the loop -----------------------------------------------------------------------------------


class Trainer(RunRecord):
    """One run in progress: the model, its optimizer and batches, and the counters that a
    checkpoint saves. ``run()`` is the loop; ``commit()`` the checkpoint."""

    def __init__(self, start: Start, out: Path, ranks: Ranks, log: Fanout) -> None:
        self.out, self.ranks, self.log = out, ranks, log
        self.config = start.config
        cfg = self.cfg = start.config.train
        self.rows = ranks.rows(cfg.batch_size)
        device = resolve_device(cfg.device)
        if device.type == "cuda" and ranks.world > 1:
            device = torch.device("cuda", ranks.local_rank)
        self.device = device
        self.amp_dtype = resolve_dtype(cfg.autocast_dtype, device)
        self.vocab = start.vocab
        self.batches, self.val_ids = start.batches, start.val_ids

        torch.manual_seed(cfg.seed)
        self.model = build_model(start.config.model).to(device)
        if start.init_weights is not None:  # fine-tuning starts from the base run's weights
            self.model.load_state_dict(start.init_weights)
        self.net = self.model  # what the step calls: under torchrun, DDP averages gradients
        if ranks.world > 1:
            ids = [device] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(self.model, cfg)
        self.step, self.elapsed_s, self.last_eval_s = 0, 0.0, 0.0
        self.best_bpc = self.last_bpc = math.inf
        self.train_nats = Mean()  # training loss since the last validation
        self.state: tuple[torch.Tensor, ...] | None = None
        self.checkpoint_step: int | None = None
        self.averaged = (
            {n: p.detach().clone() for n, p in self.model.named_parameters()} if cfg.ema else {}
        )
        if start.plan is not None:  # the plan's calibration counts in the budget
            self.elapsed_s = self.last_eval_s = start.plan.calibration_s
        if start.state is not None:
            self._restore(start.weights, start.state)
        self._write_start(start)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def run(self) -> TrainResult:
        """Train until the budget is spent, a signal asks to stop, or the loss diverges."""
        cfg, ranks = self.cfg, self.ranks
        self.model.train()
        stopped, message, bad_steps, sample = "budget", "", 0, ""
        window_chars, window_t = 0, 0.0
        stop_agreed = False  # under torchrun: some rank was asked to stop
        with stop_on_signals() as stop:
            while True:
                fraction = cfg.budget_fraction(self.step, self.elapsed_s)
                if fraction >= 1.0:
                    break
                if stop_agreed or (ranks.world == 1 and stop.is_set()):
                    stopped = "interrupted"
                    break
                t0 = time.perf_counter()
                lr = learning_rate(cfg, self.step, fraction)
                loss_value, bad, new_state = self.train_step(lr)
                if not bad:
                    self.train_nats.add(loss_value)
                if ranks.world > 1:  # every rank skips, stops and keeps time together
                    flags = [float(bad), float(stop.is_set()), time.perf_counter() - t0]
                    bad_any, stop_any, dt = ranks.agree(flags, self.device)
                    bad, stop_agreed = bad_any > 0, stop_any > 0
                else:
                    dt = time.perf_counter() - t0
                if bad:  # the update was skipped; the weights are untouched, the state restarts
                    bad_steps += 1
                    self.state = None
                    if bad_steps >= MAX_BAD_STEPS:
                        stopped = "diverged"
                        message = f"the loss was NaN or Inf {MAX_BAD_STEPS} steps in a row"
                        break
                else:
                    bad_steps = 0
                    self.state = detach(new_state)
                self.step += 1
                self.elapsed_s += dt
                window_chars += cfg.batch_size * cfg.seq_len
                window_t += dt
                if self.step % LOG_EVERY_STEPS == 0:  # the loss over all ranks' streams
                    loss_value = ranks.mean(loss_value, self.device)
                    if ranks.main:
                        self._log_step(loss_value, lr, window_chars / window_t)
                    window_chars, window_t = 0, 0.0
                if self.elapsed_s - self.last_eval_s >= cfg.eval_every_s:
                    event, message = self.validate()
                    if message:
                        stopped = "diverged"
                        break
                    sample = event.sample
                    self.commit()
            if stopped != "diverged":
                unvalidated = self.last_eval_s != self.elapsed_s or not math.isfinite(self.last_bpc)
                if stopped == "interrupted" and math.isfinite(self.best_bpc):
                    unvalidated = False  # a signal asks to stop now: save; the best weights stand
                if unvalidated:
                    event, message = self.validate()
                    stopped = "diverged" if message else stopped
                    sample = event.sample
                if stopped != "diverged":
                    self.commit()
        return TrainResult(
            self.out,
            self.step,
            self.elapsed_s,
            self.best_bpc,
            self.last_bpc,
            stopped,
            sample,
            ranks.rank,
            stop.signal if stopped == "interrupted" else None,
            self.checkpoint_step,
            message,
        )

    def train_step(self, lr: float) -> tuple[float, bool, tuple[torch.Tensor, ...]]:
        """One step of truncated BPTT on this rank's streams: (loss, non-finite?, new state)."""
        cfg, batches = self.cfg, self.batches
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.state is None or batches.starts_epoch(self.step):
            self.state = self.model.init_state(cfg.batch_size // self.ranks.world, self.device)
        elif cfg.state_reset > 0:
            keep = ~batches.resets(self.step, cfg.state_reset)[self.rows].to(self.device)  # (B,)
            self.state = tuple(s * keep[None, :, None] for s in self.state)
        x, y = (t.to(self.device, non_blocking=True) for t in batches.batch(self.step, self.rows))
        # an Ensemble's members each learn from their own loss, as if alone; a CharLM is one
        ensemble = isinstance(self.model, Ensemble)
        members = self.model.members if ensemble else [self.model]
        with self.autocast():
            logits, new_state = (
                self.net(x, self.state, separate=True) if ensemble else self.net(x, self.state)
            )
        logits = logits if ensemble else logits[None]  # (K, B, T, V)
        losses = torch.stack(
            [F.cross_entropy(m.float().flatten(0, 1), y.flatten()) for m in logits]
        )
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        grad_norm = max(
            clip_gradients(m.parameters(), cfg.clip_mode, cfg.grad_clip) for m in members
        )
        loss_value = losses.mean().item()  # of an Ensemble: its members' mean
        bad = not (math.isfinite(loss_value) and math.isfinite(grad_norm))
        if not bad:
            self.optimizer.step()
            self.average_weights()
        return loss_value, bad, new_state

    def _log_step(self, loss_value: float, lr: float, chars_per_s: float) -> None:
        fraction = self.cfg.budget_fraction(self.step, self.elapsed_s)
        event = StepEvent(
            self.step,
            loss_value / LN2,
            loss_value,
            lr,
            chars_per_s,
            self.elapsed_s,
            fraction,
            self.last_bpc,
        )
        self._saving(lambda: self.log.step(event))
