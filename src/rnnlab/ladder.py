"""The baseline ladder: what a text costs without a neural model. Uniform and unigram,
character n-grams with interpolated Kneser-Ney (Chen & Goodman 1999), and the stdlib compressors
(gzip, bzip2, xz) alone and conditional on the training text. Numpy and stdlib only.
"""

from __future__ import annotations

import bz2
import itertools
import lzma
import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np


def uniform_bpc(vocab_size: int) -> float:
    """A model that knows only the alphabet: log2 V."""
    return math.log2(vocab_size)


def unigram_bpc(
    train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int, chunk: int = 1 << 24
) -> float:
    """Character frequencies of the training text (add-one smoothed) scored on ``eval_ids[1:]``,
    both read a chunk at a time (bounded memory on a memory map)."""

    def counts(ids: np.ndarray, first: int) -> np.ndarray:
        total = np.zeros(vocab_size, dtype=np.int64)
        for start in range(first, len(ids), chunk):
            total += np.bincount(np.asarray(ids[start : start + chunk]), minlength=vocab_size)
        return total

    trained = counts(train_ids, 0)
    logp = np.log2((trained + 1) / (trained.sum() + vocab_size))
    scored = counts(eval_ids, 1)
    return float(-(scored * logp).sum() / max(1, scored.sum()))


# --- the baseline ladder: character n-grams with interpolated Kneser-Ney ----------------------


def _keys(ids: np.ndarray, k: int, V: int) -> np.ndarray:
    """One integer per k-gram of ``ids`` (the k-gram ending at each position >= k-1), ordered
    like the k-grams themselves: sum_j ids[i-k+1+j] * V^(k-1-j), in uint64 (exact while
    V^k <= 2^64, e.g. any byte vocabulary up to 8-grams)."""
    ids = np.asarray(ids, dtype=np.uint64)
    n = len(ids) - k + 1
    key = np.zeros(max(n, 0), dtype=np.uint64)
    for j in range(k):
        key = key * np.uint64(V) + ids[j : j + n]
    return key


CACHE_SIZED_TABLE = 1 << 18  # n-gram tables larger than this are searched in sorted order


def _level(grams: np.ndarray, counts: np.ndarray, V: int) -> tuple:
    """One order of the model from its sorted distinct k-gram keys and their (raw or
    continuation) counts: (keys, counts, context keys, context totals, context types, D)."""
    counts = counts.astype(np.int64)
    n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
    D = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
    ctx = grams // np.uint64(V)  # the k-1 characters before the last one
    ctx_keys, first = np.unique(ctx, return_index=True)
    ctx_total = np.add.reduceat(counts, first) if len(counts) else counts
    ctx_types = np.diff(np.append(first, len(ctx)))
    return grams, counts, ctx_keys, ctx_total, ctx_types, D


class KneserNey:
    """Interpolated Kneser-Ney character n-gram model (Chen & Goodman 1999, eqs. 17-18), with
    one absolute discount per order, D = n1 / (n1 + 2 n2), and the unigram level interpolated
    with the uniform distribution so no character has probability 0.

    Example:
        >>> kn = KneserNey(np.array([0, 1, 2, 0, 1, 2, 0, 1]), order=3, vocab_size=3)
        >>> float(kn.prob(np.array([[0, 1]]), np.array([2]))[0]) > 0.5
        True
    """

    def __init__(self, train_ids: np.ndarray, order: int, vocab_size: int) -> None:
        *_, (_, model) = KneserNey.fit_orders(train_ids, (order,), vocab_size)
        self.order, self.V, self.levels = model.order, model.V, model.levels

    @classmethod
    def _of(cls, levels: list[tuple], vocab_size: int) -> KneserNey:
        model = cls.__new__(cls)
        model.order, model.V, model.levels = len(levels), vocab_size, levels
        return model

    @classmethod
    def fit_orders(
        cls, train_ids: np.ndarray, orders: tuple[int, ...], vocab_size: int
    ) -> Iterator[tuple[int, KneserNey]]:
        """The models of several orders from one pass per order over the training ids, yielded
        in increasing order as soon as each is ready.

        The model of order n uses continuation counts for its levels 1..n-1 and raw counts at
        level n, so the lower levels are shared by every order: counting the k-grams once for
        all orders costs one sort per k (plus one for the continuation counts), not one per k
        and per order. Only the shared levels and the newest raw level stay in memory.
        """
        V, top = vocab_size, max(orders)
        if V**top > 2**64:
            raise ValueError(f"vocabulary {V} too large for {top}-grams")
        ids = np.asarray(train_ids)
        continuation: list[tuple] = []  # levels 1..k-1
        previous = None  # distinct (k-1)-gram keys
        for k in range(1, top + 1):
            grams, counts = np.unique(_keys(ids, k, V), return_counts=True)
            if previous is not None:  # distinct characters seen before each (k-1)-gram
                suffix, cont = np.unique(grams % np.uint64(V ** (k - 1)), return_counts=True)
                continuation.append(_level(suffix, cont, V))
            previous = grams
            if k in orders:
                yield k, cls._of([*continuation, _level(grams, counts, V)], V)

    @staticmethod
    def _lookup(keys: np.ndarray, values, query: np.ndarray, order: np.ndarray | None):
        """``values`` at the positions of ``query`` in the sorted ``keys``, 0 where absent; a
        tuple of value arrays gives a tuple, from one search. ``order`` (an argsort of the
        queries, or None) makes the search walk the table front to back: on a table larger than
        the caches that is several times faster than random probes, even counting the sort."""
        many = isinstance(values, tuple)
        if len(keys) == 0:
            zero = np.zeros(len(query), dtype=np.int64)
            return tuple(zero for _ in values) if many else zero
        if order is None:
            pos = np.searchsorted(keys, query)
        else:
            pos = np.empty(len(query), dtype=np.intp)
            pos[order] = np.searchsorted(keys, query[order])
        pos = pos.clip(max=len(keys) - 1)
        found = keys[pos] == query
        out = tuple(np.where(found, v[pos], 0) for v in (values if many else (values,)))
        return out if many else out[0]

    def prob(self, contexts: np.ndarray, nxt: np.ndarray, known: np.ndarray | None = None):
        """P(next | context) for M queries.

        Args:
            contexts: (M, N-1) ids, the most recent last.
            nxt: (M,) ids.
            known: (M,) how many context characters are real (the rest is padding at the
                start of a text); default all N-1.

        Returns:
            (M,) probabilities.
        """
        M = len(nxt)
        known = np.full(M, self.order - 1) if known is None else known
        seq = np.concatenate([contexts, nxt[:, None]], 1).astype(np.uint64)  # (M, N)
        p = np.full(M, 1.0 / self.V)
        for k, (grams, counts, ctx_keys, ctx_total, ctx_types, D) in enumerate(self.levels, 1):
            key = np.zeros(M, dtype=np.uint64)
            for j in range(self.order - k, self.order):
                key = key * np.uint64(self.V) + seq[:, j]
            ctx = key // np.uint64(self.V)
            # the contexts sort in the same order as the keys: one sort serves both searches
            order = np.argsort(key) if len(grams) > CACHE_SIZED_TABLE else None
            c = self._lookup(grams, counts, key, order)
            total, types = self._lookup(ctx_keys, (ctx_total, ctx_types), ctx, order)
            safe = np.maximum(total, 1)
            pk = (np.maximum(c - D, 0) + D * types * p) / safe
            p = np.where((total > 0) & (known >= k - 1), pk, p)
        return p

    def char_bits(self, eval_ids: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Bits of ``eval_ids[start:stop]`` (start >= 1), each character given up to N-1
        characters before it; reads only that slice and its context."""
        pad = self.order - 1
        lo = max(0, start - pad)
        window = np.asarray(eval_ids[lo:stop], dtype=np.int64)
        window = np.concatenate([np.zeros(pad - (start - lo), dtype=np.int64), window])
        grams = np.lib.stride_tricks.sliding_window_view(window, pad + 1)  # (stop-start, N)
        known = np.minimum(np.arange(start, stop), pad)
        return -np.log2(self.prob(grams[:, :-1], grams[:, -1], known))

    def iter_char_bits(self, eval_ids: np.ndarray, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Bits of each character of ``eval_ids[1:]``, a chunk at a time (bounded memory)."""
        for start in range(1, len(eval_ids), chunk):
            yield self.char_bits(eval_ids, start, min(start + chunk, len(eval_ids)))

    def bits_per_char(self, eval_ids: np.ndarray, chunk: int = 1 << 20) -> float:
        """Mean bits per character of ``eval_ids[1:]``."""
        total = sum(float(b.sum()) for b in self.iter_char_bits(eval_ids, chunk))
        return total / max(1, len(eval_ids) - 1)


# --- the baseline ladder: general-purpose compressors -----------------------------------------

COMPRESSORS: dict[str, Callable[[], object]] = {  # streaming compressors, strongest settings
    "gzip": lambda: zlib.compressobj(9),
    "bzip2": lambda: bz2.BZ2Compressor(9),
    "xz": lambda: lzma.LZMACompressor(preset=9 | lzma.PRESET_EXTREME),
}
CONTEXT_BYTES = 16 << 20  # the conditional rung primes with at most this much training text


def _compressed_size(name: str, pieces: Iterable[bytes]) -> int:
    compressor = COMPRESSORS[name]()
    size = sum(len(compressor.compress(piece)) for piece in pieces)
    return size + len(compressor.flush())


def compressor_bpc(
    train: bytes, text: bytes | Callable[[], Iterable[bytes]], num_chars: int
) -> dict[str, float]:
    """Bits per evaluation character of each compressor: on the text alone, and conditional on
    the training text (size of train+text compressed minus train compressed), the fairer rung
    since the model saw the training text too.

    Args:
        train: the training text as bytes; only its last CONTEXT_BYTES are used.
        text: the evaluation text as bytes, or a function returning a fresh iterator over its
            pieces (a large file is compressed as a stream, never held whole).
        num_chars: characters in the evaluation text (the denominator).
    """
    train = train[-CONTEXT_BYTES:]
    pieces = (lambda: [text]) if isinstance(text, bytes) else text
    out = {}
    for name in COMPRESSORS:
        alone = _compressed_size(name, pieces())
        both = _compressed_size(name, itertools.chain([train], pieces()))
        out[name] = 8 * alone / num_chars
        out[f"{name} | train"] = 8 * (both - _compressed_size(name, [train])) / num_chars
    return out


@dataclass(frozen=True)
class Ladder:
    """The rungs (bits per character of the evaluation text) and the best n-gram model, which
    ``compare`` runs beside the model character by character."""

    rungs: dict[str, float]
    best_ngram: str | None = None
    best_ngram_model: KneserNey | None = None


def baseline_ladder(
    train_ids: np.ndarray,
    eval_ids: np.ndarray,
    vocab_size: int,
    decode: Callable[[np.ndarray], bytes],
    orders: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8),
    chunk: int = 1 << 20,
) -> Ladder:
    """Every rung: uniform, unigram, Kneser-Ney n-grams (fit on ``train_ids``), and the
    compressors. ``decode`` turns ids into the bytes a compressor sees (UTF-8 text, or raw
    bytes). The evaluation ids are read a chunk at a time, so a memory-mapped file of any
    length evaluates in bounded memory."""
    rungs = {
        "uniform": uniform_bpc(vocab_size),
        "unigram": unigram_bpc(train_ids, eval_ids, vocab_size, chunk),
    }
    orders = tuple(n for n in orders if vocab_size**n <= 2**64)
    best, best_model = None, None
    for n, model in KneserNey.fit_orders(train_ids, orders, vocab_size) if orders else ():
        name = f"{n}-gram KN"
        rungs[name] = model.bits_per_char(eval_ids, chunk)
        if best is None or rungs[name] < rungs[best]:
            best, best_model = name, model

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(eval_ids), chunk):
            yield decode(eval_ids[start : start + chunk])

    rungs |= compressor_bpc(decode(train_ids[-CONTEXT_BYTES:]), pieces, len(eval_ids))
    return Ladder(rungs, best, best_model)
