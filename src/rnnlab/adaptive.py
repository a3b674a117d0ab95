"""Cheap adaptation while reading: a match model and dynamic evaluation of the output layer,
both learned from the text already read, so every character is still predicted before it is seen.

Full dynamic evaluation (dynamic.py) backpropagates through the whole network after each chunk:
three times the forward's arithmetic, which caps a coder on 2 CPU cores far below 20 kB/s. Two
mechanisms cost almost nothing beside the forward and recover most of its gain on repetitive
text such as source code:

* **Output-layer dynamic evaluation.** After each step the head (V x H, bias) takes one SGD step
  on the summed log loss of the characters just read (so its rate is per character, the same
  for one stream as for 128). Its gradient is an outer product of what the step already
  computed, (p - onehot(y)) h^T: no backward pass (Krause et al. 2018 adapt all weights; this
  is their update restricted to the softmax layer).
* **Match models** (Mahoney's lpaq1 MatchModel, for characters; two, of different lengths,
  applied one after the other). A hash of the last
  ``match_len`` characters finds the most recent place the same context occurred in the text
  already read; the character that followed it is predicted while the match lasts. How far to
  trust it is learned by counting, per (match length, the network's own confidence in that
  character) cell, how often it was right, and that frequency replaces the network's probability
  of the predicted character (the others are scaled to fill the rest).

Everything runs on S streams side by side, the layout of the compressor (each stream a contiguous
piece of the text, from a zero state): the match model looks across all streams' past, the head
learns from all of them. The head is float32 torch (its logits' softmax in float64, its gradient
product in bf16; deterministic for a fixed thread count), the match models float64 and integer
NumPy, so a compressor and a decompressor that feed the same features see bit-identical
probabilities. With context tables the mixer (contextmix.py) learns from each position on a
thread of its own while the caller steps the network on; its next prediction waits for that
learning, so the bits are those of learning in line. Imports config, contextmix, data, errors
and model from rnnlab.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .config import _opt
from .contextmix import ContextTables, Mixer
from .data import stream_active, stream_grid, token_dtype
from .errors import UsageError
from .model import CharLM

_LEARNER = ThreadPoolExecutor(1, thread_name_prefix="rnnlab-mixer")  # Adapter.observe's
LENGTH_BUCKETS = 16  # match lengths 0..15+ (characters matched since the match was found)
CONFIDENCE_BUCKETS = 12  # bins of -log2 p(predicted) under the network
TABLE_BITS = 20  # the match model's hash table: 2**20 slots
_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing; uint64 arithmetic wraps around
_ONE = np.uint64(1)


HEAD_RULES = ("rms", "sgd")
# the rms rule (the dynamic evaluation paper's, Krause et al. 2018, for the head alone): each
# weight's step is its gradient over the root of its running mean square (this decay), plus
# this floor. The mean starts at 0 with no bias correction, so the first steps are large: on
# held-out tiny Shakespeare and code, unmixed, at a step of 4.7e-4, bias-corrected steps read
# 1.9271 and 1.1749 against 1.9015 and 1.1440, a decay of 0.99 1.9198 and 1.1677
# (docs/compressing.md, "The head's steps by their RMS")
RMS_DECAY, RMS_FLOOR = 0.999, 1e-3


@dataclass(frozen=True)
class AdaptConfig:
    """The two mechanisms' settings; 0 turns one off.

    How the defaults were chosen (docs/compressing.md, "Adaptation while reading"): the first
    match length and the bins from a first look at held-out standard-library code, the second
    match length on the training split, the rate first so too, then doubled on standard-library
    packages no model here trained on; benchmarks/compress.py reports a grid of them on the
    run's training split and scores a slice of code that played no part in any choice.
    """

    head_lr: float = _opt(
        # held-out, docs/compressing.md, "The head's steps by their RMS": 0.7 times the plain
        # SGD rate of 1.5625e-3 (0.2 per step of 128 segments) that came before
        1.09375e-3,
        "--adapt-head-lr",
        "step of the output layer per character coded (0: off)",
    )
    head_rule: str = _opt(
        "rms",
        "--adapt-head-rule",
        "the output layer's steps: rms, each weight's gradient over its running RMS; sgd, the "
        "gradient itself (files of rnnlab before format 12: sgd)",
        HEAD_RULES,
    )
    match_len: int = _opt(5, "--adapt-match-len", "context length of the match model (0: off)")
    match_long: int = _opt(
        16, "--adapt-match-long", "context length of a second, longer match model (0: off)"
    )
    confidence_bin: float = _opt(
        0.35, "--adapt-confidence-bin", "bits per bin of the network's confidence"
    )

    def __post_init__(self) -> None:
        if not (math.isfinite(self.head_lr) and 0 <= self.head_lr <= 100):
            raise UsageError(f"--adapt-head-lr must be in [0, 100], got {self.head_lr}")
        if self.head_rule not in HEAD_RULES:
            raise UsageError(f"--adapt-head-rule must be rms or sgd, got {self.head_rule!r}")
        for flag, n in (("len", self.match_len), ("long", self.match_long)):
            if not (isinstance(n, int) and 0 <= n <= 64):
                raise UsageError(f"--adapt-match-{flag} must be in [0, 64], got {n}")
        if not (math.isfinite(self.confidence_bin) and 0.01 <= self.confidence_bin <= 100):
            raise UsageError(
                f"--adapt-confidence-bin must be in [0.01, 100], got {self.confidence_bin}"
            )


def softmax64(logits: torch.Tensor) -> np.ndarray:
    """(B, V) logits -> float64 probabilities, the same bits wherever the logits are the same."""
    x = logits.detach().to("cpu", torch.float64).numpy()
    x = x - x.max(axis=1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=1, keepdims=True)
    return p


class MatchModel:
    """Predicts that the text repeats: the character that followed the most recent occurrence of
    the last ``n`` characters (in any stream), trusted as often as such a guess was right."""

    def __init__(self, n: int, history: np.ndarray, starts: np.ndarray, length: int) -> None:
        """``history``, ``starts`` (where each stream's row begins) and ``length`` (of a row)
        are the Adapter's: the text read so far, shared by its match models."""
        streams = len(starts)
        self.n, self.history, self.starts, self.length = n, history, starts, length
        self.slot_key = np.zeros(1 << TABLE_BITS, dtype=np.uint64)
        self.slot_at = np.full(1 << TABLE_BITS, -1, dtype=np.int64)
        self.key = np.zeros(streams, dtype=np.uint64)  # hash of each stream's last n symbols
        self.previous_key = np.zeros(streams, dtype=np.uint64)
        self.drop = np.uint64(pow(int(_MUL), n, 1 << 64))  # the oldest symbol's multiplier
        self.pointer = np.full(streams, -1, dtype=np.int64)  # index into history, or -1
        self.run = np.zeros(streams, dtype=np.int64)
        self.hits = np.full((LENGTH_BUCKETS, CONFIDENCE_BUCKETS), 0.5)
        self.trials = np.full((LENGTH_BUCKETS, CONFIDENCE_BUCKETS), 1.0)
        self.pending: tuple | None = None

    def apply(self, p: np.ndarray, confidence_bin: float) -> None:
        """Give each matching stream's guess its learned probability, in place in p (S, V)."""
        self.pending = None
        rows = np.flatnonzero(self.pointer >= 0)
        if not len(rows):
            return
        guess = self.history[self.pointer[rows]]
        bits = -np.log2(np.maximum(p[rows, guess], 1e-300)) / confidence_bin
        cb = np.minimum(bits, CONFIDENCE_BUCKETS - 1).astype(np.int64)
        lb = np.minimum(self.run[rows], LENGTH_BUCKETS - 1)
        q = self.hits[lb, cb] / self.trials[lb, cb]
        p[rows, guess] = 0.0
        rest = p.sum(axis=1)[rows]  # the others' mass, summed exactly (no 1 - p cancellation)
        scale = np.ones(len(p))
        scale[rows] = (1.0 - q) / np.where(rest > 0, rest, 1.0)
        p *= scale[:, None]
        p[rows, guess] = q
        self.pending = (rows, guess, lb, cb)

    def learn(self, y: np.ndarray, active: int) -> None:
        if self.pending is not None:
            rows, guess, lb, cb = self.pending
            live = rows < active
            rows, guess, lb, cb = rows[live], guess[live], lb[live], cb[live]
            hit = y[rows] == guess
            np.add.at(self.hits, (lb, cb), hit.astype(np.float64))
            np.add.at(self.trials, (lb, cb), 1.0)
            nxt = self.pointer[rows] + 1
            ok = hit & (nxt % self.length != 0)  # a match does not run off its stream's end
            self.pointer[rows] = np.where(ok, nxt, -1)
            self.run[rows] = np.where(ok, self.run[rows] + 1, 0)
            self.pending = None
        self.pointer[active:] = -1

    def index(self, t: int, active: int) -> None:
        """Roll the context hashes on by the symbols at t, remember where the context ending at
        t - 1 led (position t), and look up the one ending at t for streams without a match."""
        n, base = self.n, self.starts[:active]
        self.previous_key[:active] = self.key[:active]
        key = self.key[:active] * _MUL + (self.history[base + t].astype(np.uint64) + _ONE)
        if t >= n:  # the symbol that leaves the window
            key -= self.drop * (self.history[base + t - n].astype(np.uint64) + _ONE)
        self.key[:active] = key
        if t >= n:  # context t-n .. t-1, followed by t
            slots = self._slots(self.previous_key[:active])
            self.slot_key[slots] = self.previous_key[:active]
            self.slot_at[slots] = base + t
        if t >= n - 1:
            free = np.flatnonzero(self.pointer[:active] < 0)
            if len(free):
                keys = key[free]
                slots = self._slots(keys)
                found = (self.slot_at[slots] >= 0) & (self.slot_key[slots] == keys)
                rows = free[found]
                self.pointer[rows] = self.slot_at[slots[found]]
                self.run[rows] = 0

    @staticmethod
    def _slots(keys: np.ndarray) -> np.ndarray:
        return ((keys * _MUL) >> np.uint64(64 - TABLE_BITS)).astype(np.int64)


class Adapter:
    """The adaptive output of a network read on ``streams`` side by side.

    Call ``predict`` with the network's features for the next position of every stream, then
    ``observe`` with the characters that came; positions are consecutive from 0 (the first
    position of each stream is observed without a prediction).
    """

    def __init__(
        self,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        config: AdaptConfig,
        streams: int,
        length: int,
        history: np.ndarray | None = None,
        tables: ContextTables | None = None,
    ) -> None:
        """Args:
        head_weight, head_bias: the network's output layer, (V, H) and (V,); copied.
        config: the settings.
        streams: S, the batch of every call.
        length: positions per stream (the longest stream).
        history: (S * length,) where to keep the text read (row s: stream s), e.g. a memory
            map of a scratch file for a text larger than memory; default: a new array.
        tables: context tables to mix the prediction with (contextmix.py; a copy is read and
            updated), or None.
        """
        self.config = config
        self.w = head_weight.detach().to("cpu", torch.float32).clone()
        self.b = head_bias.detach().to("cpu", torch.float32).clone()
        self.length = max(1, length)
        # row s: stream s; in the smallest dtype that holds an id (the text's size in memory)
        if history is None:
            history = np.zeros(streams * self.length, dtype=token_dtype(head_weight.size(0)))
        self.history = history
        self.starts = np.arange(streams) * self.length
        self.t = -1  # the last observed position
        self.pending: tuple | None = None
        lens = [n for n in (config.match_long, config.match_len) if n]
        self.matches = [MatchModel(n, self.history, self.starts, self.length) for n in lens]
        self.mixer = Mixer(tables.copy(), streams) if tables is not None else None
        self.trained = (self.w.clone(), self.b.clone())  # unadapted: the mixer's second input
        # the rms rule's running mean squares of the head's gradients (w's, b's)
        self.mean_squares = (
            (torch.zeros_like(self.w), torch.zeros_like(self.b))
            if config.head_rule == "rms"
            else None
        )
        # the mixer learns from a position, and reads its tables for the next one, on a thread
        # of its own while the network steps (the two share nothing; predict waits for it):
        # the same bits, sooner
        self.learning: Future | None = None
        self.unmixed: np.ndarray | None = None  # with a mixer: the last prediction before it

    @torch.no_grad()
    def predict(self, features: torch.Tensor) -> np.ndarray:
        """(S, H) features of the next position -> (S, V) float64 probabilities."""
        h = features.detach().to("cpu", torch.float32)
        # float64: no probability underflows to 0 (the coder gives every symbol a count anyway,
        # but eval's -log2 p must stay finite)
        p64 = torch.softmax(torch.addmm(self.b, h, self.w.T).double(), dim=1)  # (S, V)
        head = p64.float()
        p = p64.numpy()
        # a diverging head gives NaN/Inf here: the callers refuse it as such, without warnings
        with np.errstate(all="ignore"):
            for match in self.matches:
                match.apply(p, self.config.confidence_bin)
            if self.matches:
                p /= p.sum(axis=1, keepdims=True)
            if self.mixer is not None:
                self.unmixed = p  # the adapted network's own, for eval to score beside
                w, b = self.trained
                trained = torch.softmax(torch.addmm(b, h, w.T).double(), dim=1).numpy()
                self.learned()
                if np.isfinite(p).all():  # else the head diverged: NaN, for the callers to refuse
                    p = self.mixer.predict(p, trained)
        self.pending = (h, head)
        return p

    @torch.no_grad()
    def observe(self, symbols: np.ndarray, active: int) -> None:
        """The characters (S,) at the next position; only the first ``active`` streams have one."""
        t = self.t = self.t + 1
        if t >= self.length:
            raise ValueError("more positions than the Adapter was built for")
        y = np.asarray(symbols, dtype=np.int64)
        self.history[self.starts[:active] + t] = y[:active]
        if self.pending is not None and self.config.head_lr and active:
            h, head = self.pending
            g = head[:active]  # d(-log p_y)/d logits = p - onehot(y)
            g[torch.arange(active), torch.from_numpy(y[:active])] -= 1.0
            step = self.config.head_lr  # per character: the same whatever the segments
            # the (V, H) gradient as a bf16 product (twice the speed; SGD's noise is far larger
            # than its rounding), the weights themselves kept and updated in float32
            grad = torch.mm(g.T.to(torch.bfloat16), h[:active].to(torch.bfloat16))
            if self.mean_squares is None:
                self.w.add_(grad, alpha=-step)
                self.b.add_(g.sum(0), alpha=-step)
            else:
                gradients = (grad.float(), g.sum(0))
                for weight, gradient, mean_square in zip(
                    (self.w, self.b), gradients, self.mean_squares, strict=True
                ):
                    mean_square.mul_(RMS_DECAY).addcmul_(gradient, gradient, value=1 - RMS_DECAY)
                    weight.addcdiv_(gradient, mean_square.sqrt().add_(RMS_FLOOR), value=-step)
        self.pending = None
        for match in self.matches:
            match.learn(y, active)
            match.index(t, active)
        if self.mixer is not None:
            self.learned()
            # a copy: the caller may reuse its array for the next position meanwhile
            self.learning = _LEARNER.submit(self.mixer.observe, y.copy(), active)

    def learned(self) -> None:
        """Wait until the mixer has learned from the last position observed."""
        if self.learning is not None:
            learning, self.learning = self.learning, None
            learning.result()


@dataclass(frozen=True)
class AdaptResult:
    """Bits per character of a text read on ``streams`` side by side with adaptation. ``bpc``
    counts every character, the first of each stream at log2 V, or mixed at the training text's
    frequency (as the compressor codes it)."""

    bpc: float
    static_bpc: float  # the same streams without adaptation
    num_chars: int
    streams: int
    seconds: float
    config: dict
    unmixed_bpc: float | None = None  # with tables: the adapted network's own, before mixing


@torch.no_grad()
def adaptive_bits_per_char(
    model: CharLM,
    ids: np.ndarray,
    config: AdaptConfig,
    streams: int = 128,
    chunk_len: int = 256,
    tables: ContextTables | None = None,
) -> AdaptResult:
    """What ``rnnlab compress`` with the same settings spends, up to the coder's rounding: the
    text cut into ``streams`` contiguous pieces (data.stream_layout), each read from a
    zero state by the float32 model, its output adapted while reading.

    Args:
        model: a trained CharLM (left unchanged).
        ids: (N,) ids of the text.
        config: the adaptation settings.
        streams: pieces read side by side (the compressor's ``--segments``).
        chunk_len: positions per forward call (memory).
        tables: context tables to mix in (the compressor's default when the run has them);
            the same pass then also scores the adapted network alone (``unmixed_bpc``).

    Returns:
        An AdaptResult.
    """
    n = len(ids)
    if n < 1:
        raise UsageError("need at least 1 character to evaluate")
    started = time.perf_counter()
    model = model.eval()
    device = model.head.weight.device
    grid, _ = stream_grid(np.asarray(ids, dtype=np.int64), streams)
    S, L = grid.shape
    active = stream_active(n, streams)
    adapter = Adapter(model.head.weight, model.head.bias, config, S, L, tables=tables)
    bits = static_bits = unmixed_bits = S * math.log2(model.config.vocab_size)  # first: uniform
    if adapter.mixer is not None:  # mixed: the training text's frequencies (Mixer.first)
        bits = -float(np.log2(adapter.mixer.first[grid[: active[0], 0]]).sum())
    # predictions for position t, (S, V): p, the network before mixing, the static network
    state, p, unmixed, static = None, None, None, None
    for start in range(0, L, chunk_len):
        x = torch.as_tensor(grid[:, start : start + chunk_len], device=device)
        feats, state = model.features(x, state)  # (S, T, H)
        feats = feats.float().cpu()
        logits = model.head(feats.to(model.head.weight.dtype)).float()
        fixed = torch.log_softmax(logits, -1).double().numpy() / math.log(2)  # (S, T, V)
        for k in range(feats.size(1)):
            t = start + k
            a, rows = active[t], np.arange(active[t])
            if p is not None:
                with np.errstate(all="ignore"):  # a diverged p: evaluate_adaptive refuses it
                    bits -= float(np.log2(p[rows, grid[:a, t]]).sum())
                    unmixed_bits -= float(np.log2(unmixed[rows, grid[:a, t]]).sum())
                static_bits -= float(static[rows, grid[:a, t]].sum())
            adapter.observe(grid[:, t], a)
            if t + 1 < L:
                p, static = adapter.predict(feats[:, k]), fixed[:, k]
                unmixed = p if adapter.unmixed is None else adapter.unmixed
    return AdaptResult(
        bits / n,
        static_bits / n,
        n,
        S,
        time.perf_counter() - started,
        asdict(config) | {"mixed": tables is not None},
        unmixed_bits / n if tables is not None else None,
    )
