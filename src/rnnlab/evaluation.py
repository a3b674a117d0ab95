"""Exact bits per character, and the first rungs of the baseline ladder (uniform, unigram).

Exact means one pass over the whole text at batch 1 with the state carried from chunk to chunk,
so the number does not depend on the chunk length. Imports config, vocab and model from rnnlab.
"""

from __future__ import annotations

import bz2
import lzma
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .model import CharLM

LN2 = math.log(2.0)


@torch.no_grad()
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


def unigram_bpc(train_ids: np.ndarray, eval_ids: np.ndarray, vocab_size: int) -> float:
    """Character frequencies of the training text (add-one smoothed) scored on ``eval_ids[1:]``."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(train_ids), 1 << 24):  # bounded memory on a memory map
        counts += np.bincount(
            np.asarray(train_ids[start : start + (1 << 24)]), minlength=vocab_size
        )
    logp = np.log2((counts + 1) / (counts.sum() + vocab_size))
    scored = np.zeros(vocab_size, dtype=np.int64)
    for start in range(1, len(eval_ids), 1 << 24):
        scored += np.bincount(np.asarray(eval_ids[start : start + (1 << 24)]), minlength=vocab_size)
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
        if vocab_size**order > 2**64:
            raise ValueError(f"vocabulary {vocab_size} too large for {order}-grams")
        self.order, self.V = order, vocab_size
        ids = np.asarray(train_ids)
        self.levels = []  # per order k = 1..N: (keys, counts, ctx_keys, ctx_total, ctx_types, D)
        for k in range(1, order + 1):
            grams, raw = np.unique(_keys(ids, k, self.V), return_counts=True)
            if k < order:  # continuation counts: distinct characters seen before the k-gram
                longer = np.unique(_keys(ids, k + 1, self.V))
                suffix = longer % np.uint64(self.V**k)
                grams, counts = np.unique(suffix, return_counts=True)
            else:
                counts = raw
            n1, n2 = np.sum(counts == 1), np.sum(counts == 2)
            D = n1 / (n1 + 2 * n2) if n1 + 2 * n2 > 0 else 0.5
            ctx = grams // np.uint64(self.V)  # the k-1 characters before the last one
            ctx_keys, first = np.unique(ctx, return_index=True)
            ctx_total = np.add.reduceat(counts, first)
            ctx_types = np.diff(np.append(first, len(ctx)))
            self.levels.append((grams, counts, ctx_keys, ctx_total, ctx_types, D))

    @staticmethod
    def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(keys, query).clip(max=len(keys) - 1)
        return np.where(keys[pos] == query, values[pos], 0)

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
            c = self._lookup(grams, counts, key)
            total = self._lookup(ctx_keys, ctx_total, ctx)
            types = self._lookup(ctx_keys, ctx_types, ctx)
            safe = np.maximum(total, 1)
            pk = (np.maximum(c - D, 0) + D * types * p) / safe
            p = np.where((total > 0) & (known >= k - 1), pk, p)
        return p

    def iter_char_bits(self, eval_ids: np.ndarray, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Bits of each character of ``eval_ids[1:]``, each given up to N-1 characters before
        it, a chunk at a time."""
        ids = np.asarray(eval_ids, dtype=np.int64)
        pad = self.order - 1
        padded = np.concatenate([np.zeros(pad, dtype=np.int64), ids])
        for start in range(1, len(ids), chunk):
            idx = np.arange(start, min(start + chunk, len(ids)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, pad + 1)[idx]  # (m, N)
            yield -np.log2(self.prob(windows[:, :-1], windows[:, -1], np.minimum(idx, pad)))

    def bits_per_char(self, eval_ids: np.ndarray) -> float:
        """Mean bits per character of ``eval_ids[1:]``."""
        total = sum(float(b.sum()) for b in self.iter_char_bits(eval_ids))
        return total / max(1, len(eval_ids) - 1)


# --- the baseline ladder: general-purpose compressors -----------------------------------------

COMPRESSORS = {
    "gzip": lambda b: zlib.compress(b, 9),
    "bzip2": lambda b: bz2.compress(b, 9),
    "xz": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
}
CONTEXT_BYTES = 16 << 20  # the conditional rung primes with at most this much training text


def compressor_bpc(train: bytes, text: bytes, num_chars: int) -> dict[str, float]:
    """Bits per evaluation character of each compressor: on the text alone, and conditional on
    the training text (size of train+text compressed minus train compressed), the fairer rung
    since the model saw the training text too."""
    train = train[-CONTEXT_BYTES:]
    out = {}
    for name, compress in COMPRESSORS.items():
        out[name] = 8 * len(compress(text)) / num_chars
        out[f"{name} | train"] = (
            8 * (len(compress(train + text)) - len(compress(train))) / num_chars
        )
    return out


@dataclass(frozen=True)
class Ladder:
    """The rungs (bits per character of the evaluation text) and, for the per-character
    comparison, the bits the best n-gram spent on each character (``eval_ids[1:]``)."""

    rungs: dict[str, float]
    best_ngram: str | None = None
    best_ngram_bits: np.ndarray | None = None


def baseline_ladder(
    train_ids: np.ndarray,
    eval_ids: np.ndarray,
    vocab_size: int,
    decode: Callable[[np.ndarray], bytes],
    orders: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8),
) -> Ladder:
    """Every rung: uniform, unigram, Kneser-Ney n-grams (fit on ``train_ids``), and the
    compressors. ``decode`` turns ids into the bytes a compressor sees (UTF-8 text, or raw
    bytes). Each n-gram is fit and scored once."""
    rungs = {
        "uniform": uniform_bpc(vocab_size),
        "unigram": unigram_bpc(train_ids, eval_ids, vocab_size),
    }
    best, best_bits = None, None
    for n in orders:
        if vocab_size**n > 2**64:
            break
        name = f"{n}-gram KN"
        bits = np.concatenate(list(KneserNey(train_ids, n, vocab_size).iter_char_bits(eval_ids)))
        rungs[name] = float(bits.mean())
        if best is None or rungs[name] < rungs[best]:
            best, best_bits = name, bits
    rungs |= compressor_bpc(decode(train_ids), decode(eval_ids), len(eval_ids))
    return Ladder(rungs, best, best_bits)


# --- where the model wins: character classes, and closing brackets by distance ---------------

CLASSES = ("letter", "whitespace", "newline", "digit", "bracket/quote", "punctuation", "other")
OPENERS = {")": "(", "]": "[", "}": "{"}
DISTANCE_BINS = (1, 3, 6, 11, 21, 51, 101, 201, 501)  # lower edges; the last bin is open


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


def closing_distances(text: str) -> list[tuple[int, int]]:
    """(index, distance back to its opener) for each closing bracket and closing double quote
    of ``text`` (Karpathy, Johnson & Fei-Fei 2015, section 4.4)."""
    stack: list[tuple[str, int]] = []
    quote_open: int | None = None
    out = []
    for i, ch in enumerate(text):
        if ch == '"':
            if quote_open is None:
                quote_open = i
            else:
                out.append((i, i - quote_open))
                quote_open = None
        elif ch in "([{":
            stack.append((ch, i))
        elif ch in OPENERS:
            while stack and stack[-1][0] != OPENERS[ch]:
                stack.pop()  # unbalanced openers: skip them
            if stack:
                out.append((i, i - stack.pop()[1]))
    return out


def where_the_model_wins(text: str, model_bits: np.ndarray, ngram_bits: np.ndarray) -> dict:
    """Model against an n-gram on the same text, per character class and for closing
    brackets/quotes binned by the distance back to the opener.

    Args:
        text: the evaluation text; ``model_bits[i]`` and ``ngram_bits[i]`` are the bits spent on
            ``text[i + 1]``.

    Returns:
        {"by_class": {class: {count, model_bpc, ngram_bpc}},
         "closing_by_distance": [{from, to, count, model_bpc, ngram_bpc, advantage_bpc}]}
    """
    classes = np.array([CLASSES.index(char_class(c)) for c in text[1:]])
    by_class = {}
    for k, name in enumerate(CLASSES):
        mask = classes == k
        if mask.any():
            by_class[name] = {
                "count": int(mask.sum()),
                "model_bpc": float(model_bits[mask].mean()),
                "ngram_bpc": float(ngram_bits[mask].mean()),
            }
    closing = closing_distances(text)
    idx = np.array([i - 1 for i, _ in closing if i >= 1], dtype=np.int64)
    dist = np.array([d for i, d in closing if i >= 1], dtype=np.int64)
    bins = []
    edges = (*DISTANCE_BINS, None)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (dist >= lo) & (dist < hi if hi else True)
        if mask.any():
            m, g = float(model_bits[idx[mask]].mean()), float(ngram_bits[idx[mask]].mean())
            bins.append(
                {
                    "from": lo,
                    "to": hi,
                    "count": int(mask.sum()),
                    "model_bpc": m,
                    "ngram_bpc": g,
                    "advantage_bpc": g - m,
                }
            )
    return {"by_class": by_class, "closing_by_distance": bins}
