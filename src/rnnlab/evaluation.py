"""Exact bits per character, and the first rungs of the baseline ladder (uniform, unigram).

Exact means one pass over the whole text at batch 1 with the state carried from chunk to chunk,
so the number does not depend on the chunk length. Imports config, vocab and model from rnnlab.
"""

from __future__ import annotations

import bz2
import itertools
import lzma
import math
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model import CharLM

LN2 = math.log(2.0)


@torch.no_grad()
def iter_char_nats(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[np.ndarray]:
    """Cross-entropy in nats of each character of ``ids[1:]`` given everything before it, one
    chunk at a time, the state carried from chunk to chunk (memory stays bounded).

    Args:
        model: the CharLM (switched to eval mode for the call).
        ids: (N,) ids of the text, N >= 2; a memory map is read one chunk at a time.
        chunk_len: characters per forward call; it only trades speed for memory.
        autocast_dtype: run under autocast in this dtype (e.g. torch.bfloat16), or None.

    Yields:
        (T,) float64 arrays that together cover positions 1..N-1.
    """
    n = len(ids)
    if n < 2:
        raise ValueError("need at least 2 characters to evaluate")
    was_training = model.training
    model.eval()
    device = model.head.weight.device
    state = None
    try:
        for start in range(0, n - 1, chunk_len):
            stop = min(start + chunk_len, n - 1)
            window = torch.as_tensor(np.asarray(ids[start : stop + 1]).astype(np.int64))
            window = window.to(device).unsqueeze(0)  # (1, T+1)
            with torch.autocast(
                device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                logits, state = model(window[:, :-1], state)  # (1, T, V)
            logits = logits[0] if logits.dtype == torch.float64 else logits[0].float()  # (T, V)
            nats = F.cross_entropy(logits, window[0, 1:], reduction="none")  # (T,)
            yield nats.double().cpu().numpy()
    finally:
        model.train(was_training)


@torch.no_grad()
def iter_char_nats_batched(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    batch_size: int = 64,
    warmup: int = 512,
    max_segment: int = 16384,
    chunk_len: int = 1024,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[np.ndarray]:
    """``iter_char_nats`` approximated by segments read side by side as a batch.

    The targets 1..N-1 are cut into equal segments of at most ``max_segment`` characters
    (never fewer than ``warmup``), ``batch_size`` of them per round. Each segment starts from
    a zero state warmed up on the ``warmup`` characters before it; the first segment of the
    text starts where the exact pass does. The extra work is warmup / segment length; the
    difference from the exact pass is what a state of ``warmup`` characters forgets::

        text   |--seg 0--|--seg 1--|--seg 2--| ...        one round: rows 0..R-1
        row 0  |=========|                                 exact start (zero state)
        row 1        |ww|=========|                        ww: warm-up, not scored
        row 2                  |ww|=========|

    Args:
        model: the CharLM (switched to eval mode for the call).
        ids: (N,) ids of the text, N >= 2; a memory map is read one chunk at a time.
        batch_size: segments per forward call (rows).
        warmup: characters read before each segment to set its state.
        max_segment: longest segment; bounds memory (one round's nats) for any N.
        chunk_len: time steps per forward call.
        autocast_dtype: as in ``iter_char_nats``.

    Yields:
        (T,) float64 arrays that together cover positions 1..N-1, in order.
    """
    n = len(ids)
    if n < 2:
        raise ValueError("need at least 2 characters to evaluate")
    if batch_size < 1 or warmup < 0 or max_segment < 1 or chunk_len < 1:
        raise ValueError("need batch_size >= 1, warmup >= 0, max_segment >= 1, chunk_len >= 1")
    targets = n - 1
    rounds = math.ceil(targets / (batch_size * max_segment))
    seg = max(math.ceil(targets / (rounds * batch_size)), warmup, 1)
    starts = list(range(1, n, seg))  # first target of each segment
    was_training = model.training
    model.eval()
    device = model.head.weight.device

    def rows(spans: list[tuple[int, int]], length: int) -> torch.Tensor:
        """(R, length) ids of each span, padded on the right with 0."""
        out = np.zeros((len(spans), length), np.int64)
        for r, (a, b) in enumerate(spans):
            out[r, : b - a] = np.asarray(ids[a:b])
        return torch.as_tensor(out, device=device)

    def forward(x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            return model(x, state)

    try:
        for first in range(0, len(starts), batch_size):
            round_starts = starts[first : first + batch_size]
            R = len(round_starts)
            state = None
            if warmup:
                spans = [(max(a - 1 - warmup, 0), a - 1) for a in round_starts]
                _, state = forward(rows(spans, warmup), None)
                if round_starts[0] == 1:  # the text's first segment: the exact zero state
                    state = tuple(
                        s.index_fill(1, torch.tensor([0], device=device), 0.0) for s in state
                    )
            nats = np.zeros((R, seg))
            stops = [min(a + seg, n) for a in round_starts]
            for t in range(0, seg, chunk_len):
                T = min(chunk_len, seg - t)
                spans = [
                    (min(a - 1 + t, b), min(a - 1 + t + T + 1, b))
                    for a, b in zip(round_starts, stops, strict=True)
                ]
                window = rows(spans, T + 1)  # (R, T+1): inputs and the targets one ahead
                logits, state = forward(window[:, :-1], state)  # (R, T, V)
                logits = logits if logits.dtype == torch.float64 else logits.float()
                ce = F.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none")
                nats[:, t : t + T] = ce.double().cpu().numpy()
            for r, (a, b) in enumerate(zip(round_starts, stops, strict=True)):
                yield nats[r, : b - a]
    finally:
        model.train(was_training)


def loss_nats(
    model: CharLM,
    ids: np.ndarray | torch.Tensor,
    chunk_len: int = 8192,
    autocast_dtype: torch.dtype | None = None,
) -> float:
    """Mean cross-entropy in nats per character of ``ids[1:]``, exact: the state is carried over
    the whole text, so the result does not depend on ``chunk_len`` (see ``iter_char_nats``)."""
    total = sum(float(c.sum()) for c in iter_char_nats(model, ids, chunk_len, autocast_dtype))
    return total / (len(ids) - 1)


def bits_per_char(model: CharLM, ids: np.ndarray | torch.Tensor, chunk_len: int = 8192) -> float:
    """Exact bits per character of ``ids[1:]`` (see ``loss_nats``)."""
    return loss_nats(model, ids, chunk_len) / LN2


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


# --- where the model wins: character classes, and closing brackets by distance ---------------

CLASSES = ("letter", "whitespace", "newline", "digit", "bracket/quote", "punctuation", "other")
OPENERS = {")": "(", "]": "[", "}": "{"}
DISTANCE_BINS = (1, 3, 6, 11, 21, 51, 101, 201, 501)  # lower edges; the last bin is open
MAX_OPEN = 10_000  # unclosed openers remembered (bounded memory on unbalanced text)


def char_class(ch: str) -> str:
    if ch == "\n":
        return "newline"
    if ch.isspace():
        return "whitespace"
    if ch.isdigit():
        return "digit"
    if ch.isalpha():
        return "letter"
    if ch in "()[]{}<>\"'`":
        return "bracket/quote"
    if ch.isprintable() and ch.isascii():
        return "punctuation"
    return "other"


class ClosingScanner:
    """Finds each closing bracket and closing double quote and the distance back to its opener
    (Karpathy, Johnson & Fei-Fei 2015, section 4.4), fed the text piece by piece."""

    def __init__(self) -> None:
        self.stack: list[tuple[str, int]] = []
        self.quote_open: int | None = None

    def feed(self, chars: Iterable[str], positions: Iterable[int]) -> list[tuple[int, int]]:
        """(position, distance) for the closers among ``chars`` (only brackets and quotes need
        be passed, with their positions in the whole text)."""
        out = []
        for ch, i in zip(chars, positions, strict=True):
            if ch == '"':
                if self.quote_open is None:
                    self.quote_open = i
                else:
                    out.append((i, i - self.quote_open))
                    self.quote_open = None
            elif ch in "([{":
                self.stack.append((ch, i))
                del self.stack[:-MAX_OPEN]
            elif ch in OPENERS:
                while self.stack and self.stack[-1][0] != OPENERS[ch]:
                    self.stack.pop()  # unbalanced openers: skip them
                if self.stack:
                    out.append((i, i - self.stack.pop()[1]))
        return out


def closing_distances(text: str) -> list[tuple[int, int]]:
    """(index, distance back to its opener) for each closing bracket and closing double quote
    of ``text``."""
    return ClosingScanner().feed(text, range(len(text)))


class WinsTally:
    """Model against an n-gram on the same text, per character class and for closing
    brackets/quotes binned by the distance back to the opener, accumulated piece by piece so
    the text can be any length.

    Args:
        symbols: the character of each id (bytes as one latin-1 character each).
    """

    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = list(symbols)
        self.class_of = np.array([CLASSES.index(char_class(c)) for c in self.symbols])
        self.marks = np.array([c in '"()[]{}' for c in self.symbols])
        self.by_class = np.zeros((len(CLASSES), 3))  # count, model bits, n-gram bits
        self.by_distance = np.zeros((len(DISTANCE_BINS), 3))
        self.scanner = ClosingScanner()
        self.position = 0

    def add(
        self, ids: np.ndarray, model_bits: np.ndarray | None, ngram_bits: np.ndarray | None
    ) -> None:
        """The next ids of the text and the bits each model spent on each (None: not scored,
        like the first character)."""
        ids = np.asarray(ids, dtype=np.int64)
        at = np.flatnonzero(self.marks[ids])
        closing = self.scanner.feed((self.symbols[i] for i in ids[at]), at + self.position)
        self.position += len(ids)
        if model_bits is None or ngram_bits is None:
            return
        both = np.stack([np.ones(len(ids)), model_bits, ngram_bits], 1)
        np.add.at(self.by_class, self.class_of[ids], both)
        if closing:
            local = np.array([i for i, _ in closing]) - (self.position - len(ids))
            bins = np.searchsorted(DISTANCE_BINS, [d for _, d in closing], side="right") - 1
            np.add.at(self.by_distance, bins, both[local])

    def result(self) -> dict:
        """{"by_class": {class: {count, model_bpc, ngram_bpc}},
        "closing_by_distance": [{from, to, count, model_bpc, ngram_bpc, advantage_bpc}]}"""
        by_class = {
            name: {"count": int(n), "model_bpc": m / n, "ngram_bpc": g / n}
            for name, (n, m, g) in zip(CLASSES, self.by_class, strict=True)
            if n
        }
        bins = []
        edges = (*DISTANCE_BINS, None)
        for lo, hi, (n, m, g) in zip(edges[:-1], edges[1:], self.by_distance, strict=True):
            if n:
                bins.append(
                    {
                        "from": lo,
                        "to": hi,
                        "count": int(n),
                        "model_bpc": m / n,
                        "ngram_bpc": g / n,
                        "advantage_bpc": (g - m) / n,
                    }
                )
        return {"by_class": by_class, "closing_by_distance": bins}


def where_the_model_wins(text: str, model_bits: np.ndarray, ngram_bits: np.ndarray) -> dict:
    """``WinsTally`` over a whole text held in memory: ``model_bits[i]`` and ``ngram_bits[i]``
    are the bits spent on ``text[i + 1]``."""
    symbols = sorted(set(text))
    index = {c: i for i, c in enumerate(symbols)}
    ids = np.array([index[c] for c in text])
    tally = WinsTally(symbols)
    tally.add(ids[:1], None, None)
    tally.add(ids[1:], np.asarray(model_bits), np.asarray(ngram_bits))
    return tally.result()


@dataclass(frozen=True)
class Comparison:
    """The model's exact score on a text, and where it beats the best n-gram (or None)."""

    loss_nats: float
    num_chars: int
    seconds: float
    wins: dict | None


def compare(
    model: CharLM,
    eval_ids: np.ndarray,
    symbols: Sequence[str],
    ngram: KneserNey | None = None,
    chunk_len: int = 8192,
    exact: bool = True,
) -> Comparison:
    """Score ``eval_ids[1:]`` with the model, exactly (state carried), or with ``exact=False``
    by warmed-up segments side by side (``iter_char_nats_batched``), and, when an n-gram is
    given, tally where the model wins beside it; one chunk in memory at a time."""
    t0 = time.perf_counter()
    total, start = 0.0, 1
    tally = WinsTally(symbols) if ngram is not None else None
    if tally:
        tally.add(eval_ids[:1], None, None)
    scores = (
        iter_char_nats(model, eval_ids, chunk_len)
        if exact
        else iter_char_nats_batched(model, eval_ids)
    )
    for nats in scores:
        total += float(nats.sum())
        stop = start + len(nats)
        if tally:
            ngram_bits = ngram.char_bits(eval_ids, start, stop)
            tally.add(eval_ids[start:stop], nats / LN2, ngram_bits)
        start = stop
    seconds = time.perf_counter() - t0
    n = len(eval_ids) - 1
    return Comparison(total / n, n, seconds, tally.result() if tally else None)
