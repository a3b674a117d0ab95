"""A match model of the training text, for the mixer (contextmix.py): each stream's last ``n``
symbols are looked up among the training text's places that followed the same ``n`` symbols,
and while the text being read goes on as the training text went on after the most recent such
place, the symbol that came next there is expected (Mahoney's lpaq1 MatchModel, for symbols,
over a text read before rather than the one being read). Imports nothing from rnnlab.
"""

from __future__ import annotations

import numpy as np

_MUL = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing; uint64 arithmetic wraps
_ONE = np.uint64(1)
LENGTHS = 16  # match lengths in buckets: 0 (none) and 1..15+ (symbols since the match was found)
MAP_LIMIT = 30.0  # the match map's rate: a step of 1 / (the bucket's steps now + MAP_LIMIT)
MIN_BITS, MAX_BITS = 10, 22  # the index's slots: about one per place of the text, in this range


def index_bits(text_length: int) -> int:
    """log2 of the index's slots for a text of ``text_length`` symbols."""
    return min(MAX_BITS, max(MIN_BITS, int(text_length).bit_length()))


def index_bytes(text_length: int) -> int:
    """The index's size in memory (int32 slots)."""
    return 4 << index_bits(text_length)


class TextMatch:
    """The expected next symbol of S streams from the training text ``text`` (T,) ids, as an
    input of the mixer's binary decisions.

    The index has a slot per hash of ``n`` symbols, holding the last place of the text that
    followed them (a hash shared by several contexts keeps the last place of any of them); a
    place found is confirmed against the stream's own last ``n`` symbols before it is used.
    The input at each decision on the expected symbol's path is stretch(p) toward its branch
    (0 off the path), p learned per match-length bucket (``map``): how often the expected
    symbol's branch was taken.
    """

    def __init__(
        self,
        text: np.ndarray,
        n: int,
        streams: int,
        paths: tuple[np.ndarray, np.ndarray, int],
    ) -> None:
        """``paths``: the mixer's symbol tree, each symbol's (V, D) decisions (padded with N),
        (V, D) branches and the number of decisions N (ctxtree.tree_paths)."""
        self.text, self.n = np.asarray(text), n
        nodes, branches, N = paths
        V = len(nodes)
        self.sign = np.zeros((V + 1, N), np.float32)  # +1 / -1: a symbol's branch (row V: none)
        for v in range(V):
            on = nodes[v] < N
            self.sign[v, nodes[v][on]] = np.where(branches[v][on] == 1, 1.0, -1.0)
        self.map = np.full(LENGTHS, 0.75)
        self.expected = np.full(streams, -1, dtype=np.int64)
        self.lengths = np.zeros(streams, dtype=np.int64)
        self.bits = index_bits(len(self.text))
        self.powers = np.ones(n, dtype=np.uint64)  # the k-th newest symbol's multiplier
        with np.errstate(over="ignore"):
            for k in range(1, n):
                self.powers[k] = self.powers[k - 1] * _MUL
        T = len(self.text)
        at = np.arange(n, T)  # the places that follow n symbols
        keys = np.zeros(len(at), dtype=np.uint64)
        for k in range(n if len(at) else 0):  # the (k+1)-th newest symbol before each place
            newest = self.text[n - 1 - k : T - 1 - k].astype(np.uint64) + _ONE
            with np.errstate(over="ignore"):
                keys += newest * self.powers[k]
        self.slots = np.full(1 << self.bits, -1, dtype=np.int32)
        np.maximum.at(self.slots, self._slot(keys), at.astype(np.int32))  # the last place wins
        self.recent = np.zeros((streams, n), dtype=np.int64)  # newest first; -1: none yet
        self.recent[:] = -1
        self.pointer = np.full(streams, -1, dtype=np.int64)  # the expected symbol's place, or -1
        self.length = np.zeros(streams, dtype=np.int64)  # symbols matched since found

    def _slot(self, keys: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((keys * _MUL) >> np.uint64(64 - self.bits)).astype(np.int64)

    def inputs(self) -> np.ndarray:
        """(S, N) float32: the input of every stream's every decision for the next symbol; sets
        ``expected`` (S,) (-1: none) and ``lengths`` (S,), the length buckets (0: no match)."""
        matched = self.pointer >= 0
        self.expected = np.full(len(matched), -1, dtype=np.int64)
        self.expected[matched] = self.text[self.pointer[matched]]
        self.lengths = np.where(matched, np.minimum(self.length, LENGTHS - 1), 0)
        trust = np.log(self.map / (1.0 - self.map)).astype(np.float32)
        path = self.sign[np.where(matched, self.expected, len(self.sign) - 1)]
        return path * trust[self.lengths][:, None]

    def learn(self, symbols: np.ndarray, active: int) -> None:
        """The map learns from the symbols (S,) that came after ``inputs``: at each decision
        the expected symbol's path shares with theirs, whether its branch was taken."""
        expected, lengths = self.expected[:active], self.lengths[:active]
        matched = expected >= 0
        if not matched.any():
            return
        ours, theirs = self.sign[expected[matched]], self.sign[symbols[:active][matched]]
        shared = (ours != 0) & (theirs != 0)
        hits = (shared & (ours == theirs)).sum(axis=1)
        misses = (shared & (ours != theirs)).sum(axis=1)
        at, p = lengths[matched], self.map
        step = np.bincount(at, hits * (1 - p[at]) - misses * p[at], LENGTHS)
        p += step / (np.bincount(at, hits + misses, LENGTHS) + MAP_LIMIT)
        np.clip(p, 1e-4, 1 - 1e-4, out=p)

    def push(self, symbols: np.ndarray, active: int) -> None:
        """The next symbol (S,) of the first ``active`` streams (the rest have ended)."""
        y = np.asarray(symbols[:active], dtype=np.int64)
        pointer = self.pointer[:active]
        hit = pointer >= 0
        hit[hit] = self.text[pointer[hit]] == y[hit]
        going = hit & (pointer + 1 < len(self.text))
        self.pointer[:active] = np.where(going, pointer + 1, -1)
        self.length[:active] = np.where(going, self.length[:active] + 1, 0)
        r = self.recent[:active]
        r[:, 1:] = r[:, :-1].copy()
        r[:, 0] = y
        free = np.flatnonzero((self.pointer[:active] < 0) & (r[:, -1] >= 0))
        if len(free):
            with np.errstate(over="ignore"):
                keys = ((r[free].astype(np.uint64) + _ONE) * self.powers).sum(
                    axis=1, dtype=np.uint64
                )
            place = self.slots[self._slot(keys)].astype(np.int64)
            free, place = free[place >= 0], place[place >= 0]
            before = place[:, None] - 1 - np.arange(self.n)  # the n symbols before each place
            found = (self.text[before] == r[free]).all(axis=1)
            self.pointer[free[found]] = place[found]
            self.length[free[found]] = 1
        self.pointer[active:] = -1
        self.length[active:] = 0
