"""Where the model wins: the model's bits and an n-gram's bits on the same text, tallied per
character class and, for closing brackets and quotes, by the distance back to the opener
(Karpathy, Johnson & Fei-Fei 2015, section 4.4). Numpy and stdlib only; the scores come in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

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
