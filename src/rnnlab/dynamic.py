"""Dynamic evaluation: score a segment of text, then take a gradient step on it, so the model
adapts to the text it reads while every character is still predicted before it is seen.

Krause, Kahembwe, Murray & Renals 2018, "Dynamic Evaluation of Neural Sequence Models",
section 4 (eq. 8): the gradient is divided by RMS statistics collected on the training data,
and the weights decay back toward the trained ones at a rate scaled per weight by the same
statistics (normalized to mean 1, the decay capped at 1). Plain SGD with a uniform decay
(their section 3, eq. 5) is the baseline. Imports errors and model from rnnlab.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .data import stream_grid
from .errors import DivergedError, UsageError
from .model import CharLM

RULES = ("rms", "sgd")
EPS = 1e-8  # the paper's epsilon beside the root of the statistics' mean square


def _flag(default: Any, flag: str, help: str, choices: tuple[str, ...] | None = None) -> Any:
    """A field the CLI exposes as ``flag`` (see cli._add_config_flags)."""
    meta = {"flag": flag, "help": help} | ({"choices": choices} if choices else {})
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DynamicConfig:
    """How the weights adapt while reading.

    The defaults are a starting point, not a measurement for your model: ``tune`` (``rnnlab eval
    --dynamic-tune N``) chooses ``learning_rate`` and ``decay`` on the run's training split,
    never on the evaluated text; benchmarks/compress.py records what it chose.
    """

    rule: str = _flag(
        "rms", "--dynamic-rule", "update rule: rms (Krause et al. 2018 eq. 8) or sgd", RULES
    )
    learning_rate: float = _flag(2e-4, "--dynamic-lr", "learning rate of the updates")
    decay: float = _flag(1e-2, "--dynamic-decay", "pull back toward the trained weights per step")
    segment_len: int = _flag(
        50, "--dynamic-segment-len", "characters per stream between two updates"
    )

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise UsageError(f"--dynamic-rule must be one of {RULES}, got {self.rule!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise UsageError(f"--dynamic-lr must be >= 0, got {self.learning_rate}")
        if not (math.isfinite(self.decay) and 0 <= self.decay <= 1):
            raise UsageError(f"--dynamic-decay must be in [0, 1], got {self.decay}")
        if not (isinstance(self.segment_len, int) and 1 <= self.segment_len <= 1 << 20):
            raise UsageError(f"--dynamic-segment-len must be >= 1, got {self.segment_len}")

    @classmethod
    def from_dict(cls, raw: dict) -> DynamicConfig:
        """From a header or JSON (unknown keys ignored); errors are UsageErrors."""
        try:
            return cls(
                rule=str(raw["rule"]),
                learning_rate=float(raw["learning_rate"]),
                decay=float(raw["decay"]),
                segment_len=int(raw["segment_len"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"invalid dynamic-evaluation settings ({e})") from None


class DynamicUpdater:
    """Applies the update rule to ``model`` in place, remembering the trained weights."""

    def __init__(
        self,
        model: CharLM,
        config: DynamicConfig,
        stats: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.params = dict(model.named_parameters())
        self.initial = {k: p.detach().clone() for k, p in self.params.items()}
        for p in self.params.values():
            p.requires_grad_(True)
        if config.rule == "rms":
            if stats is None or set(stats) != set(self.params):
                raise UsageError("the rms rule needs gradient statistics for every weight")
            rms = {k: stats[k].sqrt() for k in self.params}
            mean_rms = sum(float(r.sum()) for r in rms.values()) / sum(
                r.numel() for r in rms.values()
            )
            self.scale = {k: 1.0 / (r + EPS) for k, r in rms.items()}
            # per-weight decay: decay * rms / mean(rms), at most 1 (a full return to theta0)
            self.decay = {k: (config.decay * r / mean_rms).clamp(max=1.0) for k, r in rms.items()}
        else:
            self.scale = None
            self.decay = None

    def loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        state: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], int]:
        """Summed nats of the masked targets, the state after the chunk, and the count."""
        with torch.enable_grad():
            logits, new_state = self.model(inputs, state)  # (B, K, V)
            nats = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none"
            )
            total = (nats * mask.reshape(-1)).sum()
        return total, tuple(s.detach() for s in new_state), int(mask.sum())

    def step(self, total_nats: torch.Tensor, count: int) -> None:
        """One update from the mean loss over the chunk's ``count`` scored characters."""
        if count == 0:
            return
        names = list(self.params)
        grads = torch.autograd.grad(total_nats / count, [self.params[k] for k in names])
        c = self.config
        with torch.no_grad():
            for k, g in zip(names, grads, strict=True):
                p, p0 = self.params[k], self.initial[k]
                if self.scale is not None:
                    p.add_(-c.learning_rate * g * self.scale[k] + self.decay[k] * (p0 - p))
                else:
                    p.add_(-c.learning_rate * g + c.decay * (p0 - p))

    def update(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        mask: torch.Tensor,
        state: tuple[torch.Tensor, ...],
    ) -> None:
        """A gradient step on a chunk already scored: (B, K) inputs, targets and mask, from
        the state the chunk started in."""
        total, _, count = self.loss(inputs, targets, mask, state)
        self.step(total, count)


def gradient_stats(
    model: CharLM, train_ids: np.ndarray, segment_len: int = 50, max_chars: int = 20_000
) -> dict[str, torch.Tensor]:
    """Mean squared gradient of each weight over chunks of the training text (the paper's MS_g),
    one stream, the state carried; the last ``max_chars`` characters of ``train_ids``.

    Args:
        model: the trained CharLM (left unchanged).
        train_ids: (N,) ids of the training split.
        segment_len: characters per chunk: the chunk the updates will use.
        max_chars: how much of the training text to read.

    Returns:
        name -> (same shape as the weight) float32 mean squared gradient.
    """
    ids = torch.as_tensor(np.asarray(train_ids[-(max_chars + 1) :]).astype(np.int64))
    if len(ids) < 2:
        raise UsageError("the training split is too short for dynamic-evaluation statistics")
    params = dict(model.named_parameters())
    was = {k: p.requires_grad for k, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    was_training = model.training
    model.eval()
    sums = {k: torch.zeros_like(p) for k, p in params.items()}
    chunks, state = 0, None
    try:
        for start in range(0, len(ids) - 1, segment_len):
            x = ids[start : start + segment_len + 1]
            with torch.enable_grad():
                logits, state = model(x[None, :-1], state)
                loss = F.cross_entropy(logits[0], x[1:])
                grads = torch.autograd.grad(loss, list(params.values()))
            state = tuple(s.detach() for s in state)
            for k, g in zip(params, grads, strict=True):
                sums[k] += g.detach() ** 2
            chunks += 1
    finally:
        model.train(was_training)
        for k, p in params.items():
            p.requires_grad_(was[k])
    return {k: (s / chunks).float() for k, s in sums.items()}


def stats_digest(stats: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(stats):
        t = stats[k].detach().float().contiguous()
        h.update(f"{k}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class DynamicResult:
    """Bits per character of ``ids`` scored while adapting; the count excludes the first
    character of each stream (it has no context)."""

    bpc: float
    num_chars: int
    seconds: float
    config: dict


def dynamic_bits_per_char(
    model: CharLM,
    ids: np.ndarray,
    config: DynamicConfig,
    stats: dict[str, torch.Tensor] | None = None,
    streams: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> DynamicResult:
    """Bits per character with dynamic evaluation: each chunk of ``config.segment_len``
    characters per stream is scored, then the weights take one step on it. ``model`` is left
    unchanged (a copy adapts). With ``learning_rate=0`` this equals the static score of the
    same streams.

    Args:
        model: the trained CharLM.
        ids: (N,) ids of the text, N >= 2.
        config: the update rule and its hyperparameters.
        stats: ``gradient_stats`` of the training split (the "rms" rule needs them).
        streams: contiguous pieces scored side by side (1: exact, one stream).
        on_progress: called after each segment with (positions done, positions in all).

    Returns:
        A DynamicResult.
    """
    import copy

    if len(ids) < 2:
        raise UsageError("need at least 2 characters to evaluate")
    started = time.perf_counter()
    m = copy.deepcopy(model).eval()
    device = m.head.weight.device
    updater = DynamicUpdater(m, config, stats)
    grid, mask = stream_grid(ids, streams)
    x = torch.as_tensor(grid, device=device)
    valid = torch.as_tensor(mask, device=device)
    state = m.init_state(x.size(0), device)
    K = config.segment_len
    total_nats, count = 0.0, 0
    for start in range(0, x.size(1) - 1, K):
        stop = min(start + K, x.size(1) - 1)
        chunk_mask = valid[:, start + 1 : stop + 1]
        nats, new_state, n = updater.loss(
            x[:, start:stop], x[:, start + 1 : stop + 1], chunk_mask, state
        )
        total_nats += float(nats.detach())
        count += n
        updater.step(nats, n)
        state = new_state
        if on_progress is not None:
            on_progress(stop, x.size(1) - 1)
    seconds = time.perf_counter() - started
    return DynamicResult(total_nats / count / math.log(2), count, seconds, asdict(config))


def tune(
    model: CharLM,
    ids: np.ndarray,
    stats: dict[str, torch.Tensor] | None,
    rule: str = "rms",
    learning_rates: Sequence[float] = (3e-5, 1e-4, 3e-4, 1e-3),
    decays: Sequence[float] = (0.0, 1e-3, 1e-2),
    segment_lens: Sequence[int] = (50,),
    streams: int = 1,
) -> tuple[DynamicConfig, list[dict]]:
    """Grid search of the hyperparameters on ``ids`` (a piece of the training split, never the
    text to be evaluated). Returns the best config and every trial's result."""
    trials = []
    for K in segment_lens:
        for lr in learning_rates:
            for d in decays:
                c = DynamicConfig(rule, lr, d, K)
                r = dynamic_bits_per_char(model, ids, c, stats, streams)
                trials.append({**asdict(c), "bpc": r.bpc, "seconds": r.seconds})
    finite = [t for t in trials if math.isfinite(t["bpc"])]  # a diverged trial is no candidate
    if not finite:
        raise DivergedError("dynamic evaluation diverged at every setting tried by --dynamic-tune")
    best = min(finite, key=lambda t: t["bpc"])
    return DynamicConfig.from_dict(best), trials
