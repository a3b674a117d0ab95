"""The one training loop: truncated BPTT over contiguous streams, AdamW with warmup and cosine
decay, gradient clipping, budgets in steps or minutes, exact validation, checkpoints that resume
exactly, Ctrl-C that saves. Imports everything below it; never viz, lab or cli.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from . import checkpoint as ckpt
from . import finetune
from .config import ConfigError, CorpusConfig, ModelConfig, TrainConfig
from .corpus import CorpusError, cache_dir, iter_bytes, iter_text, resolve
from .data import StreamBatches, TokenFile, encode, split
from .evaluation import LN2, loss_nats
from .model import CharLM, count_parameters, detach, resolve_device, resolve_dtype
from .sampling import generate

DEFAULT_MINUTES = 3.0  # budget when neither --max-steps nor --minutes is given
LOG_EVERY_STEPS = 10
MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up
DUPLICATE_SIGNAL_S = 1.0  # a second Ctrl-C sooner than this is the same one, passed on


@dataclass(frozen=True)
class EvalEvent:
    """What ``on_eval`` receives after each validation."""

    step: int
    bpc: float
    loss_nats: float
    best_bpc: float
    elapsed_s: float
    sample: str


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    elapsed_s: float
    best_val_bpc: float
    last_val_bpc: float
    stopped: str  # "budget", "interrupted" (Ctrl-C, saved) or "diverged" (non-finite loss)
    sample: str
    rank: int = 0  # under torchrun, this process's rank (only rank 0 wrote the run)


def learning_rate(cfg: TrainConfig, step: int, fraction: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from lr down to lr * min_lr_fraction as
    the budget (steps or time) is spent."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    floor = cfg.min_lr_fraction
    return (
        cfg.learning_rate * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))
    )


def make_optimizer(model: CharLM, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on the weight matrices only (not embedding rows, not biases)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("embedding") else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.99))


@contextmanager
def _sigint_flag():
    """While active, the first Ctrl-C (or SIGTERM, as a scheduler or torchrun sends when it
    stops a job) sets a flag: the loop stops and saves at the end of the step. A second one
    raises KeyboardInterrupt at once."""
    hit = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield hit
        return

    first: list[float] = []

    def handler(signum, frame):
        # torchrun passes a Ctrl-C on to its workers, who also get it from the terminal: the
        # same keypress arrives twice within moments, and only a later one means "abort now"
        if hit.is_set() and time.monotonic() - first[0] > DUPLICATE_SIGNAL_S:
            raise KeyboardInterrupt
        if not hit.is_set():
            first.append(time.monotonic())
        hit.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield hit
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# --- many processes: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE ----------------------------


@dataclass(frozen=True)
class Ranks:
    """Where this process stands among the processes of one training job (1 of 1 alone).

    Every rank runs the same loop on its own share of the B streams; rank 0 alone writes the run
    directory, validates and shows progress. The collectives below are no-ops for one process.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's streams of the global batch."""
        share = batch_size // self.world
        return slice(self.rank * share, (self.rank + 1) * share)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def agree(self, values: list[float], device: torch.device) -> list[float]:
        """The maximum of each value over all ranks, known to every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def from_main(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values, known to every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def object_from_main(self, obj: object) -> object:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of a value over all ranks."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.world

    def gather_rows(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The carried state of all ranks' streams, (L, B, H) each, in stream order."""
        if self.world == 1:
            return state
        out = []
        for s in state:
            parts = [torch.empty_like(s) for _ in range(self.world)]
            dist.all_gather(parts, s.contiguous())
            out.append(torch.cat(parts, 1))
        return tuple(out)


def distributed() -> Ranks:
    """Join the process group that torchrun describes in the environment (once; nccl when this
    process has a GPU, gloo otherwise), or report a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(ranks.local_rank)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return ranks


def load_tokens(
    corpus: CorpusConfig, expect_sha256: str | None = None, ranks: Ranks = Ranks()
) -> TokenFile:
    """Encode the corpus (or reuse its cached token file), checking it is the one expected.
    Under torchrun the first process of each machine encodes while the others wait, then all
    memory-map the same file."""
    files = resolve(corpus.source, corpus.glob)
    read = iter_bytes if corpus.byte_mode else iter_text

    def tokens_file() -> TokenFile:
        key = files.fingerprint()
        return encode(lambda: read(files), corpus.byte_mode, key, cache_dir() / "tokens")

    error = None
    if ranks.local_rank == 0:
        try:
            tokens = tokens_file()
        except Exception as e:  # the others meet the same error on their own below
            error = e
    ranks.barrier()
    if error is not None:
        raise error
    if ranks.local_rank != 0:
        tokens = tokens_file()  # a cache hit
    if expect_sha256 and tokens.sha256 != expect_sha256:
        raise CorpusError(
            f"the corpus {corpus.source!r} changed since this run started (sha256 differs); "
            "restore it, or start a new run"
        )
    return tokens


def train(
    corpus: CorpusConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    on_eval: Callable[[EvalEvent], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    init_from: finetune.InitFrom | None = None,
) -> TrainResult:
    """Train a CharLM into the run directory ``out``, or continue the run there.

    Args:
        corpus: the text (ignored on resume: the run's own corpus is used and checked).
        model_config: architecture (ignored on resume: the run's own is used).
        train_config: on a new run, everything; on resume only the budget (``max_steps``,
            ``minutes``) is taken from it, and only if one of them is set; the rest comes from
            the run.
        out: the run directory; must not hold a run unless ``resume``.
        resume: continue the run in ``out`` exactly where its last checkpoint left it.
        progress: show a tqdm bar on stderr.
        on_eval: called after each validation with an EvalEvent.
        on_start: called once the inputs are checked, with a one-line description of the run.
        init_from: fine-tune: start a new run from this run's weights (see finetune.py).

    Returns:
        A TrainResult; ``stopped`` says why the loop ended.
    """
    out = Path(out)
    ranks = distributed()
    if resume:
        saved = ckpt.load_config(out)
        corpus, model_config = saved.corpus, saved.model
        given = {"max_steps": train_config.max_steps, "minutes": train_config.minutes}
        # a new budget replaces the old one whole; none given: finish the run's own budget
        budget = given if any(v is not None for v in given.values()) else {}
        train_config = dataclasses.replace(saved.train, **budget)
    elif out.exists() and any(out.iterdir()):
        what = "a run" if (out / ckpt.CONFIG).exists() else "other files"
        raise ConfigError(
            f"{out} already holds {what}; resume it with --resume {out}, or pick another --out"
        )
    if train_config.max_steps is None and train_config.minutes is None:
        train_config = dataclasses.replace(train_config, minutes=DEFAULT_MINUTES)
    cfg = train_config
    if cfg.batch_size % ranks.world:
        raise ConfigError(
            f"--batch-size {cfg.batch_size} does not divide among {ranks.world} processes; "
            f"use a multiple of {ranks.world}"
        )
    rows = ranks.rows(cfg.batch_size)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and ranks.world > 1:
        device = torch.device("cuda", ranks.local_rank)
    amp_dtype = resolve_dtype(cfg.dtype, device)

    tokens = load_tokens(corpus, corpus.sha256 if resume else None, ranks)
    ids = tokens.open()
    train_ids, val_ids = split(ids, cfg.val_fraction)
    if len(val_ids) < 2:
        raise CorpusError(
            "the validation split is under 2 characters; give more text or raise --val-fraction"
        )
    if cfg.eval_chars:
        val_ids = val_ids[: cfg.eval_chars + 1]
    tuned = finetune.prepare(init_from, out if resume else None, tokens.vocab)
    if tuned is not None:  # fine-tuning: the base run's vocabulary and architecture; ids follow
        train_ids, val_ids = tuned.remap(train_ids), tuned.remap(val_ids)
        model_config = tuned.model_config or model_config
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_len, cfg.seed)
    vocab = tuned.vocab if tuned is not None else tokens.vocab
    model_config = dataclasses.replace(model_config, vocab_size=len(vocab))
    source = Path(corpus.source).expanduser()
    if not resume and source.exists():  # so the run resumes from any working directory
        corpus = dataclasses.replace(corpus, source=str(source.resolve()))
    corpus = dataclasses.replace(corpus, sha256=tokens.sha256, num_chars=tokens.num_tokens)

    torch.manual_seed(cfg.seed)
    model = CharLM(model_config).to(device)
    if tuned is not None and tuned.weights is not None:
        model.load_state_dict(tuned.weights)
    net = model  # what the step calls: under torchrun, DDP averages the gradients over ranks
    if ranks.world > 1:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = make_optimizer(model, cfg)
    step, elapsed_s, best_bpc, last_bpc, last_eval_s = 0, 0.0, math.inf, math.inf, 0.0
    state = None
    if resume:
        weights, weights_step = ckpt.load_weights(out / ckpt.LAST)
        ts = ckpt.load_train_state(out / ckpt.TRAIN_STATE)
        if weights_step != ts["step"]:
            raise ckpt.CheckpointError(
                f"{out}: {ckpt.LAST} (step {weights_step}) and {ckpt.TRAIN_STATE} "
                f"(step {ts['step']}) disagree; the last save was cut short"
            )
        model.load_state_dict(weights)
        optimizer.load_state_dict(ts["optimizer"])
        step, elapsed_s = ts["step"], ts["elapsed_s"]
        best_bpc, last_bpc, last_eval_s = ts["best_val_bpc"], ts["last_val_bpc"], ts["last_eval_s"]
        torch.set_rng_state(ts["rng_cpu"])
        if ts.get("rng_cuda") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(ts["rng_cuda"])
        # saved for all B streams, whatever the number of processes that wrote it
        state = tuple(s[:, rows].to(device) for s in ts["carried_state"]) or None
        if ranks.main:
            ckpt.truncate_metrics(out, step)
    elif ranks.main:
        out.mkdir(parents=True, exist_ok=True)
        ckpt.save_vocab(out, vocab)
    if ranks.main:
        ckpt.save_config(out, ckpt.RunConfig(model_config, cfg, corpus))

    if on_start is not None and ranks.main:
        c = model_config
        on_start(
            f"{'resuming' if resume else 'training'} {c.cell} {c.num_layers}x{c.hidden_size} "
            f"({count_parameters(model) / 1e6:.2f}M parameters) on {corpus.source} "
            f"({tokens.num_tokens:,} {'bytes' if corpus.byte_mode else 'chars'}, vocabulary "
            f"{len(vocab)}), {amp_dtype or torch.float32} on {device}, into {out}"
        )

    def autocast():
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=amp_dtype)

    def save() -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            return  # never let non-finite weights overwrite a good checkpoint
        carried = ()
        if state is not None:  # every rank takes part in gathering all streams' state
            carried = tuple(s.detach().cpu() for s in ranks.gather_rows(state))
        if not ranks.main:
            return
        ckpt.save_weights(out / ckpt.LAST, model, step)
        ckpt.save_train_state(
            out / ckpt.TRAIN_STATE,
            {
                "format": 1,
                "step": step,
                "elapsed_s": elapsed_s,
                "best_val_bpc": best_bpc,
                "last_val_bpc": last_bpc,
                "last_eval_s": last_eval_s,
                "optimizer": optimizer.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                "carried_state": carried,
            },
        )

    def validate() -> EvalEvent:
        """Rank 0 validates (exact, the whole split); the others wait for its numbers."""
        nonlocal best_bpc, last_bpc, last_eval_s
        last_eval_s = elapsed_s
        if not ranks.main:
            nats, last_bpc, best_bpc = ranks.from_main([0.0, 0.0, 0.0], device)
            return EvalEvent(step, last_bpc, nats, best_bpc, elapsed_s, "")
        nats = loss_nats(model, val_ids, autocast_dtype=amp_dtype)
        last_bpc = nats / LN2
        if last_bpc < best_bpc:
            best_bpc = last_bpc
            ckpt.save_weights(out / ckpt.BEST, model, step)
        ranks.from_main([nats, last_bpc, best_bpc], device)
        text = ""
        if cfg.sample_chars:
            text = generate(
                model, vocab, length=cfg.sample_chars, temperature=0.8, seed=step, dtype=amp_dtype
            )[0]
        model.train()
        ckpt.append_metrics(
            out,
            {
                "step": step,
                "split": "val",
                "bpc": last_bpc,
                "loss_nats": nats,
                "elapsed_s": elapsed_s,
            },
        )
        event = EvalEvent(step, last_bpc, nats, best_bpc, elapsed_s, text)
        if on_eval is not None:
            on_eval(event)
        return event

    bar = tqdm(
        total=1000,
        disable=not (progress and ranks.main),
        file=sys.stderr,
        dynamic_ncols=True,
        bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
    )
    model.train()
    stopped, bad_steps, sample = "budget", 0, ""
    window_chars, window_t, train_bpc = 0, 0.0, math.nan
    chars_per_step = cfg.batch_size * cfg.seq_len
    stop_agreed = False  # under torchrun: some rank was asked to stop
    with _sigint_flag() as interrupted:
        while True:
            fraction = cfg.budget_fraction(step, elapsed_s)
            if fraction >= 1.0:
                break
            if stop_agreed or (ranks.world == 1 and interrupted.is_set()):
                stopped = "interrupted"
                break
            t0 = time.perf_counter()
            lr = learning_rate(cfg, step, fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if state is None or batches.starts_epoch(step):
                state = model.init_state(cfg.batch_size // ranks.world, device)
            elif cfg.state_reset > 0:
                keep = ~batches.resets(step, cfg.state_reset)[rows].to(device)  # (B,)
                state = tuple(s * keep[None, :, None] for s in state)
            x, y = (t.to(device, non_blocking=True) for t in batches.batch(step, rows))
            with autocast():
                logits, new_state = net(x, state)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_mode == "norm":
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            else:
                grad_norm = torch.stack([p.grad.norm() for p in model.parameters()]).norm()
                if cfg.clip_mode == "element":
                    torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip)
            loss_value = loss.item()
            bad = not (math.isfinite(loss_value) and torch.isfinite(grad_norm))
            if ranks.world > 1:  # every rank skips, stops and keeps time together
                flags = [float(bad), float(interrupted.is_set()), time.perf_counter() - t0]
                bad_any, stop_any, dt_agreed = ranks.agree(flags, device)
                bad, stop_agreed = bad_any > 0, stop_any > 0
            if bad:
                # skip the update; the weights are untouched and the state starts over
                bad_steps += 1
                state = None
                if bad_steps >= MAX_BAD_STEPS:
                    stopped = "diverged"
                    break
            else:
                bad_steps = 0
                optimizer.step()
                state = detach(new_state)
            step += 1
            dt = time.perf_counter() - t0 if ranks.world == 1 else dt_agreed
            elapsed_s += dt
            window_chars += chars_per_step
            window_t += dt
            if step % LOG_EVERY_STEPS == 0:  # the loss over all ranks' streams
                loss_value = ranks.mean(loss_value, device)
            train_bpc = loss_value / LN2
            if step % LOG_EVERY_STEPS == 0 and ranks.main:
                ckpt.append_metrics(
                    out,
                    {
                        "step": step,
                        "split": "train",
                        "bpc": train_bpc,
                        "loss_nats": loss_value,
                        "lr": lr,
                        "chars_per_s": window_chars / window_t,
                        "elapsed_s": elapsed_s,
                    },
                )
            bar.n = int(1000 * cfg.budget_fraction(step, elapsed_s))
            val_text = f"{last_bpc:.3f}" if math.isfinite(last_bpc) else "-"
            bar.set_postfix_str(
                f"step {step} train {train_bpc:.3f} val {val_text} bpc "
                f"{window_chars / window_t:,.0f} chars/s",
                refresh=False,
            )
            bar.update(0)
            if step % LOG_EVERY_STEPS == 0:
                window_chars, window_t = 0, 0.0
            if elapsed_s - last_eval_s >= cfg.eval_every_s:
                sample = validate().sample
                save()
        if stopped != "diverged":
            if last_eval_s != elapsed_s or not math.isfinite(last_bpc):
                sample = validate().sample
            save()
    bar.close()
    return TrainResult(out, step, elapsed_s, best_bpc, last_bpc, stopped, sample, ranks.rank)
