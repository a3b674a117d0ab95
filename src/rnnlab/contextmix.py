"""Context mixing: the network's distribution mixed with statistics of the training text, as
paq8 and cmix do, so that what a network cannot keep in its weights (which exact contexts were
followed by what, how often) still counts.

Three parts, every one of them learned from the text already read, so each character is still
predicted before it is seen:

* **Context tables** (``ContextTables``). For every order k in ``orders`` the last k symbols,
  and for prose the word so far (case folded), the word so far with the previous word, and with
  the two previous words, are hashed to a row of a table of symbol counts (uint8; a row whose
  count would pass 255 is halved, so recent text weighs more). Built from the training split once
  (``build``, at the end of ``rnnlab train`` or by ``rnnlab contexts RUN``), saved beside the
  weights as safetensors with a SHA-256 of every table (no pickle; its size is bounded and
  checked), and updated while reading.
* **A binary mixer** (``Mixer``). Each character is a path of yes/no decisions down a balanced
  tree over the V symbols (V - 1 decisions in all). Every decision gets one input from the
  network (the stretched share of its probability down the right branch), and one from every
  table: a learned probability for the pair of count buckets its counts fall in (paq's
  adaptive state map; the counts' smoothed share as a second input measured worse). A logistic
  mixer, one weight set per decision, combines them and learns online along the path of the
  character that came
  (Mahoney 2005, "Adaptive weighing of context models for lossless data compression").
* **An APM** (adaptive probability map, paq's SSE): each decision's mixed probability refined by
  a learned, interpolated map per (previous symbol, decision), averaged 1:3 with the mixer's.

The distribution over all V symbols is the product of the decisions along each symbol's path,
so the coder still codes whole symbols. Everything is float64 and integer NumPy over S streams
side by side, in a fixed order, so the compressor and the decompressor that feed it the same
network probabilities compute the same bits (the decoder checks the original's SHA-256 anyway).
Imports errors and files from rnnlab.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError

CONTEXTS_FILE = "contexts.safetensors"
FORMAT_VERSION = 1
MAX_ORDER = 12
MAX_WORDS = 3
_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing; uint64 arithmetic wraps
_WORD_MUL = np.uint64(0x100000001B3)
_PREV_MUL = np.uint64(0xC2B2AE3D27D4EB4F)
_ONE = np.uint64(1)
_SALT = [np.uint64(s) for s in (0x165667B19E3779F9, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63)]
COUNT_LIMIT = 255  # uint8 counts; 30, 60 and 127 measured no better on held-out Shakespeare
COUNT_BUCKETS = 16  # of log2(count + 1), two per doubling
APM_BUCKETS = 33  # stretch domain -8..8 in steps of 1/2
_BUCKET = np.minimum(np.floor(np.log2(np.arange(256) + 1.0) * 2).astype(np.int32), 15)
_STATE = (_BUCKET[:, None] * 16 + _BUCKET[None, :]).reshape(-1)  # (n0, n1) -> its cell
_EPS = 1e-6


def _flag(default: Any, flag: str, help: str) -> Any:
    return field(default=default, metadata={"flag": flag, "help": help})


@dataclass(frozen=True)
class MixConfig:
    """What the tables hold and how the mixer learns; recorded in the tables' file and in every
    .rz file coded with them."""

    orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    words: int = 3  # word contexts: the word so far; with the previous word; with two
    table_bits: int = 17  # rows of every table: 2**table_bits
    mixer_lr: float = _flag(0.002, "--mix-lr", "learning rate of the context mixer (0: frozen)")
    apm_rate: float = _flag(0.02, "--mix-apm-rate", "learning rate of the APM stage (0: off)")

    def __post_init__(self) -> None:
        orders = tuple(int(k) for k in self.orders)
        object.__setattr__(self, "orders", orders)
        if (
            not orders
            or any(not 1 <= k <= MAX_ORDER for k in orders)
            or sorted(set(orders)) != list(orders)
        ):
            raise UsageError(f"context orders must be increasing, from 1 to {MAX_ORDER}")
        if not 0 <= self.words <= MAX_WORDS:
            raise UsageError(f"word contexts must be 0 to {MAX_WORDS}, got {self.words}")
        if not 8 <= self.table_bits <= 24:
            raise UsageError(f"table bits must be 8 to 24, got {self.table_bits}")
        for name in ("mixer_lr", "apm_rate"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v <= 1):
                raise UsageError(f"{name.replace('_', '-')} must be in [0, 1], got {v}")

    @property
    def tables(self) -> int:
        return len(self.orders) + self.words

    @classmethod
    def from_dict(cls, raw: dict) -> MixConfig:
        try:
            return cls(**{**raw, "orders": tuple(raw["orders"])})
        except (KeyError, TypeError, ValueError) as e:
            raise UsageError(f"invalid context-mixing settings: {e}") from None


def table_bits_for(budget: int, tables: int, vocab_size: int) -> int:
    """The most rows per table (a power of two) whose tables fit in ``budget`` bytes."""
    rows = max(1, budget // max(1, tables * vocab_size))
    if rows < 256:
        raise UsageError(
            f"a context-table limit of {budget:,} bytes is too small for {tables} tables "
            f"of {vocab_size} symbols; raise --context-mb"
        )
    return min(24, int(math.log2(rows)))


class Contexts:
    """The hashed contexts of S streams, rolled on one symbol at a time: row ``rows[m, s]`` of
    table m is stream s's context for the next symbol."""

    def __init__(self, config: MixConfig, word_symbols: np.ndarray, streams: int) -> None:
        """``word_symbols`` (V,) int64: a symbol's case-folded id + 1 if it belongs to a word,
        else 0."""
        self.config, self.word = config, word_symbols
        self.depth = max(config.orders)
        self.recent = np.zeros((streams, self.depth), dtype=np.uint64)  # id + 1; 0: none
        self.words = np.zeros(
            (streams, MAX_WORDS), dtype=np.uint64
        )  # current, previous, one before
        self.shift = np.uint64(64 - config.table_bits)
        self.rows = self._rows()

    def _rows(self) -> np.ndarray:
        h = np.zeros(len(self.recent), dtype=np.uint64)
        keys = []
        with np.errstate(over="ignore"):
            for j in range(self.depth):
                h = h * _MUL + self.recent[:, j]
                if j + 1 in self.config.orders:
                    keys.append(h)
            w = self.words[:, 0] + _SALT[0]
            for i in range(self.config.words):
                if i:
                    w = w * _PREV_MUL + self.words[:, i] + _SALT[i]
                keys.append(w)
            return np.stack([(k * _MUL) >> self.shift for k in keys]).astype(np.int64)

    def push(self, symbols: np.ndarray, active: int) -> None:
        """The next symbol (S,) of the first ``active`` streams."""
        y = np.asarray(symbols[:active], dtype=np.int64)
        r = self.recent[:active]
        r[:, 1:] = r[:, :-1].copy()
        r[:, 0] = y.astype(np.uint64) + _ONE
        w = self.words[:active]
        letter = self.word[y]
        with np.errstate(over="ignore"):
            grown = w[:, 0] * _WORD_MUL + letter.astype(np.uint64)
        ends = (letter == 0) & (w[:, 0] != 0)
        w[ends, 2], w[ends, 1] = w[ends, 1], w[ends, 0]
        w[:, 0] = np.where(letter > 0, grown, np.where(ends, np.uint64(0), w[:, 0]))
        self.rows = self._rows()


def word_symbols(symbols: tuple[Any, ...]) -> np.ndarray:
    """(V,) a symbol's case-folded id + 1 where it is a letter or digit (words), else 0."""
    chars = [chr(s) if isinstance(s, int) else s for s in symbols]
    index = {c: i for i, c in enumerate(chars)}
    return np.array(
        [index.get(c.lower(), i) + 1 if c.isalnum() else 0 for i, c in enumerate(chars)],
        dtype=np.int64,
    )


class ContextTables:
    """The symbol counts of every context table: (tables, 2**table_bits, V) uint8."""

    def __init__(self, config: MixConfig, counts: np.ndarray, word: np.ndarray) -> None:
        self.config, self.counts, self.word = config, counts, word
        self._digest: str | None = None

    @classmethod
    def empty(cls, config: MixConfig, symbols: tuple[Any, ...]) -> ContextTables:
        V = len(symbols)
        counts = np.zeros((config.tables, 1 << config.table_bits, V), dtype=np.uint8)
        return cls(config, counts, word_symbols(symbols))

    @classmethod
    def build(
        cls, ids: np.ndarray, symbols: tuple[Any, ...], config: MixConfig, streams: int = 1024
    ) -> ContextTables:
        """The tables of a training text (N,) ids: counted as ``streams`` contiguous pieces
        read side by side, with the very update the coder makes."""
        tables = cls.empty(config, symbols)
        n = len(ids)
        S = max(1, min(streams, n // 64))
        L = -(-n // S) if n else 0
        contexts = Contexts(config, tables.word, S)
        column = np.zeros(S, dtype=np.int64)
        for t in range(L):
            active = min(S, max(0, -(-(n - t) // L)))
            column[:active] = ids[np.arange(active) * L + t]
            tables.update(contexts.rows, column, active)
            contexts.push(column, active)
        return tables

    def update(self, rows: np.ndarray, symbols: np.ndarray, active: int) -> None:
        """Count ``symbols`` (S,) after the contexts ``rows`` (tables, S) of the first
        ``active`` streams; a count that would pass 255 halves its row first."""
        if not active:
            return
        self._digest = None
        M, R, V = self.counts.shape
        flat = self.counts.reshape(-1)
        cells = (np.arange(M)[:, None] * R + rows[:, :active]) * V + symbols[None, :active]
        cells, times = np.unique(cells.reshape(-1), return_counts=True)
        new = flat[cells].astype(np.int64) + times
        full = new > COUNT_LIMIT
        if full.any():
            whole = np.unique(cells[full] // V)  # the rows to halve
            self.counts.reshape(M * R, V)[whole] >>= 1
            new = np.minimum(COUNT_LIMIT, flat[cells].astype(np.int64) + times)
        flat[cells] = new.astype(np.uint8)

    def copy(self) -> ContextTables:
        """A copy to read with (reading updates the counts)."""
        return ContextTables(self.config, self.counts.copy(), self.word.copy())

    def sha256(self) -> str:
        """Of the settings and every count (kept until the counts change)."""
        if self._digest is None:
            h = hashlib.sha256()
            h.update(json.dumps(asdict(self.config), sort_keys=True).encode())
            h.update(np.ascontiguousarray(self.counts).tobytes())
            h.update(self.word.astype("<i8").tobytes())
            self._digest = h.hexdigest()
        return self._digest

    @property
    def nbytes(self) -> int:
        return self.counts.nbytes + self.word.nbytes

    def save(self, path: Path) -> None:
        """Atomically, as safetensors with the settings and a SHA-256 in its metadata."""
        from safetensors.numpy import save

        from .files import atomic_write

        meta = {
            "format_version": str(FORMAT_VERSION),
            "config": json.dumps(asdict(self.config)),
            "sha256": self.sha256(),
        }
        blob = save({"counts": self.counts, "word": self.word}, metadata=meta)
        atomic_write(path, blob)

    @classmethod
    def load(cls, path: Path, vocab_size: int, max_bytes: int) -> ContextTables:
        """The tables saved at ``path``, refused (UsageError) if larger than ``max_bytes``,
        of another vocabulary, or not what their checksum says."""
        from safetensors import SafetensorError, safe_open

        size = path.stat().st_size
        if size > max_bytes:
            raise UsageError(
                f"{path} is {size / 1e6:,.1f} MB, over the {max_bytes / 1e6:,.1f} MB limit; "
                "raise --context-mb or rebuild it with `rnnlab contexts RUN`"
            )
        bad = (
            f"{path} is damaged or not a context-table file; rebuild it with `rnnlab contexts RUN`"
        )
        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                counts, word = f.get_tensor("counts"), f.get_tensor("word")
            config = MixConfig.from_dict(json.loads(meta["config"]))
            if meta.get("format_version") != str(FORMAT_VERSION):
                raise UsageError(
                    f"{path} has an unknown format; rebuild it with `rnnlab contexts RUN`"
                )
        except (SafetensorError, OSError, KeyError, ValueError):
            raise UsageError(bad) from None
        shape = (config.tables, 1 << config.table_bits, vocab_size)
        if counts.dtype != np.uint8 or counts.shape != shape or word.shape != (vocab_size,):
            raise UsageError(bad)
        tables = cls(config, counts.copy(), word.astype(np.int64))
        if tables.sha256() != meta.get("sha256"):
            raise UsageError(bad)
        return tables


def _stretch(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _squash(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def symbol_tree(V: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A balanced binary tree over symbols 0..V-1: (N, 3) [lo, mid, hi) of its N = V - 1
    decisions (right branch: mid..hi-1), and each symbol's path as (V, D) decision indices and
    (V, D) branches, padded with decision N, whose right branch is certain."""
    splits: list[tuple[int, int, int]] = []
    paths: list[list[tuple[int, int]]] = [[] for _ in range(V)]
    todo = [(0, V)]
    while todo:  # breadth first: decision i's parent comes before it
        lo, hi = todo.pop(0)
        if hi - lo < 2:
            continue
        mid = (lo + hi + 1) // 2
        for v in range(lo, hi):
            paths[v].append((len(splits), int(v >= mid)))
        splits.append((lo, mid, hi))
        todo += [(lo, mid), (mid, hi)]
    depth = max((len(p) for p in paths), default=0)
    nodes = np.full((V, depth), len(splits), dtype=np.int64)
    branches = np.ones((V, depth), dtype=np.int64)
    for v, path in enumerate(paths):
        for d, (node, bit) in enumerate(path):
            nodes[v, d], branches[v, d] = node, bit
    return np.array(splits, dtype=np.int64).reshape(-1, 3), nodes, branches


class Mixer:
    """The mixed distribution of S streams: ``predict`` with the network's (S, V)
    probabilities of the next position, then ``observe`` the symbols that came (the first
    position of each stream is observed without a prediction)."""

    def __init__(self, tables: ContextTables, streams: int) -> None:
        self.tables, self.config = tables, tables.config
        M, _, V = tables.counts.shape
        self.V, self.M = V, M
        splits, self.path_nodes, self.path_bits = symbol_tree(V)
        self.lo, self.mid, self.hi = splits[:, 0], splits[:, 1], splits[:, 2]
        N = self.N = len(splits)
        self.edges = np.concatenate([self.hi, self.mid, self.lo])  # into cumulative sums
        # each symbol's factors, as indices into [q, 1 - q] of the N + 1 decisions (the last
        # one the padding decision, q = 1)
        self.factors = np.where(self.path_bits == 1, self.path_nodes, self.path_nodes + N + 1)
        inputs = 2 + M  # the network, one per table, a bias
        self.weights = np.zeros((inputs, N), dtype=np.float32)
        self.weights[0] = 1.0  # the network alone, to begin with
        q1, q0 = np.meshgrid(np.arange(COUNT_BUCKETS), np.arange(COUNT_BUCKETS))
        typical = np.exp2(np.arange(COUNT_BUCKETS) / 2.0) - 1.0  # a count in each bucket
        start = (typical[q1] + 0.4) / (typical[q0] + typical[q1] + 0.8)
        self.state_map = np.tile(np.clip(start, 0.02, 0.98).reshape(-1), (M, 1))
        self.apm = np.tile(_squash((np.arange(APM_BUCKETS) - 16) / 2.0), (V + 1, N, 1))
        self.previous = np.full(streams, V, dtype=np.int64)
        self.contexts = Contexts(self.config, tables.word, streams)
        self.pending: tuple | None = None

    def predict(self, p: np.ndarray) -> np.ndarray:
        """(S, V) network probabilities -> (S, V) mixed float64 probabilities."""
        S, M, N = len(p), self.M, self.N
        x = np.empty((2 + M, S, N), dtype=np.float32)  # inputs, streams, decisions
        c = np.zeros((S, self.V + 1))
        np.cumsum(p, axis=1, out=c[:, 1:])  # a fixed order of sums: the same bits everywhere
        right, whole = c[:, self.hi] - c[:, self.mid], c[:, self.hi] - c[:, self.lo]
        x[0] = _stretch(np.clip(right / np.maximum(whole, 1e-300), _EPS, 1 - _EPS))
        x[-1] = 0.3
        counts = self.tables.counts[np.arange(M)[:, None], self.contexts.rows]  # (M, S, V)
        # cumulative counts, exact in uint16 (at most 255 x 256), without BLAS (whose threads
        # would fight the network's)
        sums = np.zeros((M * S, self.V + 1), dtype=np.uint16)
        np.cumsum(counts.reshape(M * S, -1), axis=1, out=sums[:, 1:])
        at = sums[:, self.edges].astype(np.int32)
        n1 = np.minimum(at[:, :N] - at[:, N : 2 * N], 255)
        n0 = np.minimum(at[:, N : 2 * N] - at[:, 2 * N :], 255)  # the left branch: lo..mid-1
        state = _STATE[n0 * 256 + n1].reshape(M, S, N)
        state += (np.arange(M, dtype=np.int32) * COUNT_BUCKETS**2)[:, None, None]
        stretched = _stretch(np.clip(self.state_map, 1e-4, 1 - 1e-4)).astype(np.float32)
        x[1 : 1 + M] = stretched.reshape(-1)[state]
        z = x[0] * self.weights[0]
        for i in range(1, 2 + M):
            z += x[i] * self.weights[i]
        q = _squash(np.clip(z.astype(np.float64), -40, 40))
        at = np.clip(_stretch(np.clip(q, _EPS, 1 - _EPS)) * 2 + 16, 0, APM_BUCKETS - 1.001)
        low = at.astype(np.int64)
        frac = at - low
        cell = (self.previous[:, None] * N + np.arange(N)[None, :]) * APM_BUCKETS + low
        apm = self.apm.reshape(-1)
        refined = apm[cell] * (1 - frac) + apm[cell + 1] * frac
        final = np.ones((S, 2 * N + 2))  # [q, 1 - q] of every decision and of the padding one
        final[:, :N] = np.clip((q + 3 * refined) / 4 if self.config.apm_rate else q, _EPS, 1 - _EPS)
        final[:, N + 1 : 2 * N + 1] = 1.0 - final[:, :N]
        final[:, 2 * N + 1] = 0.0
        mixed = final[:, self.factors].prod(axis=2)  # (S, V)
        self.pending = (x, q, cell, frac, state)
        return mixed / mixed.sum(axis=1, keepdims=True)

    def observe(self, symbols: np.ndarray, active: int) -> None:
        """The symbols (S,) at the next position; only the first ``active`` streams have one."""
        y = np.asarray(symbols, dtype=np.int64)
        if self.pending is not None and active:
            self._learn(y[:active], active)
        self.pending = None
        self.tables.update(self.contexts.rows, y, active)
        self.contexts.push(y, active)
        self.previous[:active] = y[:active]

    def _learn(self, y: np.ndarray, active: int) -> None:
        x, q, cell, frac, state = self.pending
        nodes, bits = self.path_nodes[y], self.path_bits[y]  # (a, D)
        real = nodes < self.N
        nodes = np.where(real, nodes, 0)
        s = np.arange(active)[:, None]
        err = (bits - q[s, nodes]) * real
        if self.config.mixer_lr:
            grad = (self.config.mixer_lr * err)[None] * x[:, s, nodes]  # (inputs, a, D)
            for i in range(len(grad)):
                np.add.at(self.weights[i], nodes, grad[i].astype(np.float32))
        if self.config.apm_rate:
            apm, at, share = self.apm.reshape(-1), cell[s, nodes], frac[s, nodes]
            for edge, weight in ((at, 1 - share), (at + 1, share)):
                g = (bits - apm[edge]) * weight * real
                np.add.at(apm, edge, self.config.apm_rate * g)
        flat, seen = self.state_map.reshape(-1), state[:, s, nodes]  # (M, a, D)
        live = np.broadcast_to(real, seen.shape)
        idx = seen[live]
        g = np.broadcast_to(bits, seen.shape)[live] - flat[idx]
        flat += np.bincount(idx, g, flat.size) / (np.bincount(idx, None, flat.size) + 60.0)


LIMIT_TIMES_WEIGHTS = 10  # the tables' default bound: ten times the float32 weights


def default_limit(weight_count: int) -> int:
    """Bytes the context tables may take by default, for a model of ``weight_count`` weights."""
    return LIMIT_TIMES_WEIGHTS * 4 * weight_count


def limit_bytes(context_mb: float | None, weight_count: int) -> int:
    """``--context-mb`` in bytes, or the default for the model."""
    if context_mb is None:
        return default_limit(weight_count)
    if not (math.isfinite(context_mb) and context_mb > 0):
        raise UsageError(f"--context-mb must be a positive number, got {context_mb}")
    return int(context_mb * 1e6)


def run_tables(run_dir: Path, vocab_size: int, max_bytes: int) -> ContextTables | None:
    """The run's context tables (``CONTEXTS_FILE``), or None if it has none."""
    path = Path(run_dir) / CONTEXTS_FILE
    if not path.exists():
        return None
    return ContextTables.load(path, vocab_size, max_bytes)


def build_run_tables(
    run_dir: Path, train_ids: np.ndarray, symbols: tuple[Any, ...], max_bytes: int
) -> ContextTables:
    """Count the run's training split into tables that fit ``max_bytes`` and save them (the
    file is replaced atomically)."""
    base = MixConfig()
    bits = table_bits_for(max_bytes - 4096, base.tables, len(symbols))  # 4 kB: the file's header
    tables = ContextTables.build(np.asarray(train_ids), symbols, replace(base, table_bits=bits))
    tables.save(Path(run_dir) / CONTEXTS_FILE)
    return tables
