"""The hashed contexts the context tables count under (ctxtables.py): each stream's last symbols,
words and lines rolled on one symbol at a time, the symbols' classes, and a text read as streams
side by side. Imports nothing from rnnlab.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

MAX_WORDS = 3
LINE_PREFIX = 24  # the line contexts' prefix: the first characters of a line
LINE_COLUMNS = 160  # the columns of a line kept for the characters above (past them: none)
# the symbol classes (``symbol_classes``) the line contexts and the mixers read
LETTER, SPACE, NEWLINE, OTHER = range(4)
_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing; uint64 arithmetic wraps
_WORD_MUL = np.uint64(0x100000001B3)
_PREV_MUL = np.uint64(0xC2B2AE3D27D4EB4F)
_ONE = np.uint64(1)
_SALT = [np.uint64(s) for s in (0x165667B19E3779F9, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63)]


class Settings(Protocol):
    """What ``Contexts`` reads of the tables' settings (ctxtables.MixConfig)."""

    @property
    def orders(self) -> tuple[int, ...]: ...  # the orders of the last-symbols contexts
    @property
    def words(self) -> int: ...  # word contexts: 0 to MAX_WORDS
    @property
    def lines(self) -> int: ...  # line contexts: 0, 1 (the line's prefix), 2 (and the ones above)


class Contexts:
    """The hashed contexts of S streams, rolled on one symbol at a time: ``hashes[m, s]`` is
    stream s's context for the next symbol in table m (a table of 2**b rows reads its top b
    bits, ``ContextTables.slots``)."""

    def __init__(
        self, config: Settings, word_symbols: np.ndarray, classes: np.ndarray, streams: int
    ) -> None:
        """``config``: the tables' MixConfig; ``word_symbols`` (V,) int64: a symbol's
        case-folded id + 1 if it belongs to a word, else 0; ``classes`` (V,) int64: each
        symbol's class (``symbol_classes``)."""
        self.config, self.word, self.classes = config, word_symbols, classes
        self.depth = max(config.orders)
        self.recent = np.zeros((streams, self.depth), dtype=np.uint64)  # id + 1; 0: none
        self.words = np.zeros(
            (streams, MAX_WORDS), dtype=np.uint64
        )  # current, previous, one before
        # the lines: each stream's column, indentation (spaces at the line's start), whether it
        # is still in it, the hash of the line's prefix, and this line's and the previous one's
        # characters by column (id + 1; 0: none); for the mixers also the classes of the last two
        # symbols and the letters since the last non-letter
        self.column = np.zeros(streams, dtype=np.int64)
        self.kinds = np.zeros((streams, 2), dtype=np.int64)
        self.wordlen = np.zeros(streams, dtype=np.int64)
        self.indent = np.zeros(streams, dtype=np.int64)
        self.indenting = np.ones(streams, dtype=bool)
        self.prefix = np.zeros(streams, dtype=np.uint64)
        self.line = np.zeros((streams, LINE_COLUMNS + 2), dtype=np.uint64)
        self.above = np.zeros((streams, LINE_COLUMNS + 2), dtype=np.uint64)
        self.hashes = self._hashes()

    def _hashes(self) -> np.ndarray:
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
            if self.config.lines >= 1:
                at = np.minimum(self.column, LINE_PREFIX).astype(np.uint64)
                line = (self.prefix * _MUL + at) * _MUL + self.indent.astype(np.uint64)
                keys.append(line ^ _SALT[1])
            if self.config.lines >= 2:
                at = np.minimum(self.column, LINE_COLUMNS)
                s = np.arange(len(at))
                above = self.above[s, at] * _PREV_MUL + self.above[s, at + 1]
                keys.append((above * _MUL + self.recent[:, 0]) ^ _SALT[2])
            return np.stack([k * _MUL for k in keys])

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
        self._push_lines(y, active)  # the mixers read this state too, with or without line tables
        self.hashes = self._hashes()

    def _push_lines(self, y: np.ndarray, active: int) -> None:
        kind = self.classes[y]
        self.kinds[:active, 1] = self.kinds[:active, 0]
        self.kinds[:active, 0] = kind
        self.wordlen[:active] = np.where(kind == LETTER, self.wordlen[:active] + 1, 0)
        ends, space = kind == NEWLINE, kind == SPACE
        streams, column = np.arange(active), self.column[:active]
        code = np.where(ends, np.uint64(0), y.astype(np.uint64) + _ONE)
        kept = column < LINE_COLUMNS  # past them a line has no characters above it
        self.line[streams[kept], column[kept]] = code[kept]
        if ends.any():  # a new line: this one is the one above
            done = streams[ends]
            self.above[done] = self.line[done]
            self.line[done] = 0
        with np.errstate(over="ignore"):
            longer = self.prefix[:active] * _MUL + code
        prefix = np.where(column < LINE_PREFIX, longer, self.prefix[:active])
        self.prefix[:active] = np.where(ends, np.uint64(0), prefix)
        indenting = self.indenting[:active] & space
        self.indent[:active] = np.where(ends, 0, self.indent[:active] + indenting)
        self.indenting[:active] = ends | indenting
        self.column[:active] = np.where(ends, 0, column + 1)


def side_by_side(ids: np.ndarray, streams: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``ids`` read as ``streams`` contiguous pieces side by side, as the coder reads a text:
    for each position t, (t, how many pieces reach it (a prefix), the (streams,) int64 column
    of their symbols at t; the array is reused, and past ``active`` it holds stale values)."""
    n = len(ids)
    L = -(-n // streams) if n else 0
    column = np.zeros(streams, dtype=np.int64)
    for t in range(L):
        active = min(streams, -(-(n - t) // L))
        column[:active] = ids[np.arange(active) * L + t]
        yield t, active, column


def symbol_classes(symbols: tuple[Any, ...]) -> np.ndarray:
    """(V,) each symbol's class: LETTER (letters and digits), SPACE (space, tab), NEWLINE, or
    OTHER; in byte mode the bytes of those ASCII characters."""
    chars = [chr(s) if isinstance(s, int) else s for s in symbols]
    return np.array(
        [
            LETTER if c.isalnum() else SPACE if c in " \t" else NEWLINE if c == "\n" else OTHER
            for c in chars
        ],
        dtype=np.int64,
    )


def word_symbols(symbols: tuple[Any, ...]) -> np.ndarray:
    """(V,) a symbol's case-folded id + 1 where it is a letter or digit (words), else 0."""
    chars = [chr(s) if isinstance(s, int) else s for s in symbols]
    index = {c: i for i, c in enumerate(chars)}
    return np.array(
        [index.get(c.lower(), i) + 1 if c.isalnum() else 0 for i, c in enumerate(chars)],
        dtype=np.int64,
    )
