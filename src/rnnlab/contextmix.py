"""Context mixing: the network's distribution mixed with statistics of the training text, as
paq8 and cmix do, so that what a network cannot keep in its weights (which exact contexts were
followed by what, how often) still counts.

Five parts, every one of them learned from the text already read, so each character is still
predicted before it is seen:

* **Context tables** (ctxtables.py). For every order k in ``orders`` the last k symbols,
  and for prose the word so far (case folded), the word so far with the previous word, and with
  the two previous words, and for lines (code above all) the line's prefix with its indentation
  and the two symbols above, are hashed to a row of a table of symbol counts (uint8; a row whose
  count would pass 255 is halved, so recent text weighs more). Each row holds one context,
  named by a check byte (8 more bits of its hash), in either of two neighbouring rows; a context
  found in neither reads as unseen, and when counted takes the one with fewer counts (paq's hash
  confirmation and replacement), so a rare context no longer reads a frequent one's counts.
  Built from the training split once (``build_tables``, at the end of ``rnnlab train`` or by
  ``rnnlab contexts RUN``), saved beside the weights as safetensors with a SHA-256 (no pickle;
  its size is bounded and checked), and updated while reading. Counts are nonstationary, as
  paq's bit histories: counting a symbol halves the excess of the row's other counts over
  ``discount`` (4).
* **Local tables**: the same contexts counted from the text being read alone, in tables of
  half the rows that start empty, are never saved and count without the discount (all their
  counts are recent), so what this text has done so far is an input of its own rather than a
  few counts among the training text's hundreds.
* **A match model of the training text** (ctxmatch.py, ``match``): where a stream's last 7
  symbols occurred in the training text, the symbol that followed their last place there is
  expected, for as long as the text goes on as it went on there: a repeat far longer than the
  tables' orders (the tables' file keeps the training text for it).
* **A binary mixer** (``Mixer``). Each character is a path of yes/no decisions down a tree
  over the V symbols (V - 1 decisions in all; ctxtree.py: letter or not, then case or
  punctuation, then a Huffman tree of the training text's counts). Every decision gets two
  inputs from the network (the stretched share of its probability down the right branch, as
  adapted to the text read and as trained, so the mixer weighs the adaptation by context), two
  from every table, local ones too: a learned probability for the pair of count buckets its
  counts fall in (paq's adaptive state map; the counts' smoothed share as a second input
  measured worse), and the same again where the context is deterministic here (one branch
  counted, the other not; 0 elsewhere: paq8px's ContextMap2 input, so the mixer weighs a
  context that has only ever seen one side apart from one that has seen both), and one from
  the match model, toward the expected symbol's branches on its path.
  Four logistic mixers, each with its weight set chosen by a context (the decision, with the
  match's length; with the previous symbol; with the column and the last two symbols' classes;
  with the word's length and a class), combine them, a second layer mixes the four (paq8's
  final mixer), and every mixer learns online along the path of the character that came
  (Mahoney 2005, "Adaptive weighing of context models for lossless data compression").
* **An APM** (adaptive probability map, paq's SSE): each decision's mixed probability refined by
  a learned, interpolated map per (previous symbol, decision), averaged 1:3 with the mixer's
  (symbols past the first 128 share one map).

The distribution over all V symbols is the product of the decisions along each symbol's path,
so the coder still codes whole symbols. Everything is float32, float64 and integer NumPy over S
streams side by side, elementwise or summed in a fixed order (no BLAS, no threads), so the
compressor and the decompressor that feed it the same network probabilities compute the same
bits (the decoder checks the original's SHA-256 anyway).
Imports ctxmatch, ctxtables, ctxtree and errors from rnnlab.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from .ctxmatch import LENGTHS, TextMatch
from .ctxtables import (
    CONTEXTS_FILE,
    Contexts,
    ContextTables,
    MixConfig,
    side_by_side,
    text_dtype,
)
from .ctxtree import tree_paths
from .errors import UsageError

__all__ = ["CONTEXTS_FILE", "ContextTables", "MixConfig", "Mixer", "build_tables"]
COUNT_BUCKETS = 16  # of log2(count + 1), two per doubling
APM_BUCKETS = 33  # stretch domain -8..8 in steps of 1/2
# the APM's contexts: the previous symbol, the ones past the first APM_SYMBOLS sharing the last
# (a large vocabulary's rare characters), and "none" at a stream's start
APM_SYMBOLS = 128
_BUCKET = np.minimum(np.floor(np.log2(np.arange(256) + 1.0) * 2).astype(np.int32), 15)
_STATE = (_BUCKET[:, None] * COUNT_BUCKETS + _BUCKET[None, :]).reshape(-1)  # (n0, n1) -> cell
_STATE_CELLS = np.arange(COUNT_BUCKETS**2)
# 1 for the cells of one count 0 and the other not (bucket 0 holds the count 0 alone), else 0
_ONE_SIDED = ((_STATE_CELLS // COUNT_BUCKETS == 0) != (_STATE_CELLS % COUNT_BUCKETS == 0)).astype(
    np.float32
)
_EPS = 1e-6
_LIMIT = np.float32(math.log((1 - _EPS) / _EPS))  # stretch(1 - _EPS)
# build_tables' warm-up: the mixer reads the last WARMUP_CHARS of the training text (the tables
# counted from the rest) with a network that knows nothing, then starts coding with the
# network's weight at NETWORK_START and the tables' weights times TABLES_SHARE. Held-out tiny
# Shakespeare, the 10-minute model: 1.8797 bpc without, 1.8635 with (200k; the whole training
# text read this way: 1.8665, seven times slower).
WARMUP_CHARS = 200_000
NETWORK_START, TABLES_SHARE = 0.5, 0.5
# the network's inputs: its adapted distribution and the trained one, starting at half of
# NETWORK_START each, and learning at NETWORK_RATE times the mixers' rate (the warm-up cannot
# teach their weights). Held-out, the ten-minute models, bits/char: Shakespeare 1.8140 with the
# adapted one alone, 1.8040 with both, 1.8032 with both at three times the rate (2 and 5:
# 1.8031, 1.8042); code 1.0169, 1.0045, 1.0009 (2 and 5: 1.0018, 1.0006). The adapted head
# without the in-text match models as the second input instead: 1.8040 and 1.0015; all three:
# 1.8036 and 1.0009
NETWORK_INPUTS, NETWORK_RATE = 2, 3.0
# the second layer learns at this share of the mixers' rate (1 and 3 measured 0.001 and 0.004
# worse than 0.3 on held-out Shakespeare)
FINAL_RATE = 0.3
# the third and fourth mixers' contexts: the column in buckets (their lower edges) with the last
# two symbols' classes; the length of the word so far with the class of the symbol before the
# last. Held-out Shakespeare 1.8376 -> 1.8324 with the third, 1.8299 with both; code 1.0675 ->
# 1.0632 and 1.0611 (without the line contexts)
COLUMN_EDGES = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64])
COLUMN_SETS = (len(COLUMN_EDGES) + 1) * 16
WORD_LENGTHS = 12
WORD_SETS = WORD_LENGTHS * 4
# the state maps learn at 1 / (this + the cell's steps now): slowly, once the warm-up has set
# them. Held-out, 60 / 1,000 / 4,000 / 20,000: Shakespeare (ten-minute) 1.8156 / 1.8144 /
# 1.8140 / 1.8157, code 1.0194 / 1.0176 / 1.0169 / 1.0192; the forty-minute model 60 -> 4,000:
# 1.8805 -> 1.8782. A count per cell (paq's 1 / (n + 1.5) up to 1,023 or 4,095) measured
# between 60 and 4,000
MAP_STEPS = 4000.0
LEARNED = ("weights", "final", "state_map", "apm", "first")


def _stretch(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def _squash(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Mixer:
    """The mixed distribution of S streams: ``predict`` with the network's (S, V)
    probabilities of the next position, then ``observe`` the symbols that came (the first
    position of each stream is observed without a prediction)."""

    def __init__(self, tables: ContextTables, streams: int) -> None:
        self.tables, self.config = tables, tables.config
        M, _, V = tables.counts.shape
        # with ``local_bits``: tables of the text being read alone, empty at its start, beside
        # the training text's (their own inputs and state maps)
        self.local = None
        if self.config.local_bits:
            bits = self.config.local_table_bits
            shape = (M, 1 << bits, V)
            # counted without the discount: every count in them is recent (0.002-0.003 better on
            # held-out Shakespeare and code than discounted)
            local = replace(self.config, discount=0, match=0)
            checks = np.zeros(shape[:2], np.uint8) if local.checks else None
            self.local = ContextTables(
                local, np.zeros(shape, np.uint8), tables.word, tables.classes, None, checks
            )
            M *= 2
        self.V, self.M = V, M
        # the tables' tree (ctxtree.py): its leaves' symbols, its decisions over their positions
        self.order, splits = tables.tree
        self.path_nodes, self.path_bits = tree_paths(self.order, splits)
        self.lo, self.mid, self.hi = splits[:, 0], splits[:, 1], splits[:, 2]
        N = self.N = len(splits)
        # each decision's two branches: a leaf at position v (row v of the sums) or a decision j
        # (V + j)
        node = {(lo, hi): V + j for j, (lo, _, hi) in enumerate(splits.tolist())}
        self.left = np.array([lo if mid - lo == 1 else node[lo, mid] for lo, mid, _ in splits])
        self.right = np.array([mid if hi - mid == 1 else node[mid, hi] for _, mid, hi in splits])
        self.sum_dtype = np.uint16 if 255 * V < 1 << 16 else np.uint32  # the counts' sums
        # every decision's and symbol's parent, and the branch that leads there from it, as an
        # index into [q, 1 - q] of the N decisions (q: right)
        depth = np.zeros(N, dtype=np.int64)  # of each decision: its parent comes before it
        self.parent, self.via = np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64)
        self.leaf_parent, self.leaf_via = np.zeros(V, np.int64), np.zeros(V, np.int64)
        for j in range(N):
            for child, via in ((self.left[j], N + j), (self.right[j], j)):
                if child >= V:
                    depth[child - V] = depth[j] + 1
                    self.parent[child - V], self.via[child - V] = j, via
                else:
                    self.leaf_parent[self.order[child]], self.leaf_via[self.order[child]] = j, via
        # the decisions by depth, deepest first (the tree's counts are summed a level at a time)
        self.levels = [np.flatnonzero(depth == d) for d in range(depth.max(initial=0), -1, -1)]
        # the match model of the training text: an input, and mixer 0's weight set by its length
        self.match = None
        if self.config.match:
            paths = (self.path_nodes, self.path_bits, N)
            self.match = TextMatch(tables.text, self.config.match, streams, paths)
        # the network's, two per table, the match model's, a bias
        inputs = NETWORK_INPUTS + 2 * M + (self.match is not None) + 1
        self.apm_symbols = min(V, APM_SYMBOLS)
        # weight sets: one per decision (with the match model, per (decision, match length
        # bucket)); with two mixers also one per (decision, previous
        # symbol), from set 1 on (the symbols past the APM's first ones sharing the last); with
        # three, one per (decision, column bucket, classes of the last two symbols); with four,
        # one per (decision, length of the word so far, class of the symbol before the last)
        K = self.config.mixers
        first = LENGTHS if self.match is not None else 1
        sizes = [first, 1 + self.apm_symbols, COLUMN_SETS, WORD_SETS][:K]
        self.first_set = np.cumsum([0, *sizes])[:K]  # mixer k's sets begin here
        self.weights = np.zeros((inputs, sum(sizes), N), np.float32)
        self.weights[:NETWORK_INPUTS] = 1.0 / NETWORK_INPUTS  # the network alone, to begin with
        self.final = np.full((K, N), 1.0 / K, dtype=np.float32)  # the second layer's weights
        q1, q0 = np.meshgrid(np.arange(COUNT_BUCKETS), np.arange(COUNT_BUCKETS))
        typical = np.exp2(np.arange(COUNT_BUCKETS) / 2.0) - 1.0  # a count in each bucket
        start = (typical[q1] + 0.4) / (typical[q0] + typical[q1] + 0.8)
        self.state_map = np.tile(np.clip(start, 0.02, 0.98).reshape(-1), (M, 1))
        # the first cell of each table's map, (M, 1, 1)
        self.state_offsets = (np.arange(M, dtype=np.int32) * COUNT_BUCKETS**2)[:, None, None]
        start = _squash((np.arange(APM_BUCKETS) - 16) / 2.0)
        self.apm = np.tile(start, (self.apm_symbols + 1, N, 1))
        self.previous = np.full(streams, V, dtype=np.int64)
        # each stream's first symbol, read without a context: the training text's own frequencies
        # (build_tables; 6.02 -> 5.09 bits on tiny Shakespeare's 128 segments, 6.60 -> 4.38 on
        # code); uniform without a warm-up
        self.first = np.full(V, 1.0 / V)
        self.contexts = Contexts(self.config, tables.word, tables.classes, streams)
        self.pending: tuple | None = None
        self.ready: tuple | None = None  # _prepare's, for the next predict
        if tables.learned:  # what build_tables' warm-up learned
            state = {name: getattr(self, name) for name in LEARNED}
            if self.match is not None:
                state["match_map"] = self.match.map
            for name, mine in state.items():
                saved = tables.learned.get(name)
                if saved is None or saved.shape != mine.shape or not np.isfinite(saved).all():
                    raise UsageError(
                        "the context tables' learned state is damaged; rebuild them with "
                        "`rnnlab contexts RUN`"
                    )
                mine[...] = saved

    def learned(self) -> dict[str, np.ndarray]:
        """The state a later reading starts from: the tables' part of the mixer's weights
        (scaled by TABLES_SHARE, since the network joins it then), the network's at
        NETWORK_START in all, the state maps, the APM, the match model's map and the first
        symbol's distribution."""
        weights = self.weights * TABLES_SHARE
        weights[:NETWORK_INPUTS] = NETWORK_START / NETWORK_INPUTS
        return {
            "weights": weights,
            "final": self.final.copy(),
            "state_map": self.state_map.copy(),
            "apm": self.apm.copy(),
            "first": self.first.copy(),
        } | ({} if self.match is None else {"match_map": self.match.map.copy()})

    def predict(self, p: np.ndarray, trained: np.ndarray | None = None) -> np.ndarray:
        """(S, V) network probabilities, as adapted and as trained (default: the same) -> (S,
        V) mixed float64 probabilities."""
        if self.ready is None:
            self.ready = self._prepare()
        x, zs, w0, cell_at, state, sels = self.ready
        self.ready = None
        N = self.N
        self._branches(p, out=x[0])
        if trained is None:
            x[1] = x[0]
        else:
            self._branches(trained, out=x[1])
        z = [zk + x[0] * wk[0] + x[1] * wk[1] for zk, wk in zip(zs, w0, strict=True)]  # last
        qs = [_squash(np.clip(zk.astype(np.float64), -40, 40)) for zk in z]
        if len(qs) == 1:
            q, x2, zq = qs[0], None, z[0]
        else:  # the second layer: the first layer's stretched outputs, one weight set per decision
            x2 = np.clip(np.stack(z), -_LIMIT, _LIMIT)  # (K, S, N): stretch(squash(z)), clipped
            z2 = x2[0] * self.final[0]
            for k in range(1, len(qs)):
                z2 += x2[k] * self.final[k]
            q, zq = _squash(np.clip(z2.astype(np.float64), -40, 40)), z2
        # the APM's bucket of stretch(q), which is zq (clipped to the APM's range)
        at = np.clip(zq.astype(np.float64) * 2 + 16, 0, APM_BUCKETS - 1.001)
        low = at.astype(np.int64)
        frac = at - low
        cell = cell_at + low
        apm = self.apm.reshape(-1)
        refined = apm[cell] * (1 - frac) + apm[cell + 1] * frac
        final = np.empty((len(p), 2 * N))  # [q, 1 - q] of every decision
        final[:, :N] = np.clip((q + 3 * refined) / 4 if self.config.apm_rate else q, _EPS, 1 - _EPS)
        final[:, N:] = 1.0 - final[:, :N]
        # each symbol's probability: the product down its path, a level of the tree at a time
        reach = np.ones((len(p), N))  # of every decision (the root's: 1)
        for level in self.levels[-2::-1]:
            reach[:, level] = reach[:, self.parent[level]] * final[:, self.via[level]]
        mixed = reach[:, self.leaf_parent] * final[:, self.leaf_via]  # (S, V)
        self.pending = (x, q, cell, frac, state, sels, qs, x2)
        return mixed / mixed.sum(axis=1, keepdims=True)

    def _branches(self, p: np.ndarray, out: np.ndarray) -> None:
        """(S, V) probabilities -> ``out`` (S, N): each decision's stretched share of its
        probability down the right branch."""
        c = np.zeros((len(p), self.V + 1))
        # in the tree's order of leaves, summed in a fixed order: the same bits everywhere
        np.cumsum(p[:, self.order], axis=1, out=c[:, 1:])
        right, whole = c[:, self.hi] - c[:, self.mid], c[:, self.hi] - c[:, self.lo]
        out[...] = _stretch(np.clip(right / np.maximum(whole, 1e-300), _EPS, 1 - _EPS))

    def _prepare(self) -> tuple:
        """What the next prediction needs that the network's probabilities do not change: the
        tables' and the match model's inputs, each mixer's weight set and its dot product over
        them, ahead of the network's term (``observe`` computes it as soon as the symbols are
        in, so that on the learning thread it overlaps the network's step)."""
        S, M, N, net = len(self.previous), self.M, self.N, NETWORK_INPUTS
        inputs = len(self.weights)
        x = np.empty((inputs, S, N), dtype=np.float32)  # inputs, streams, decisions
        x[-1] = 0.3
        hashes = self.contexts.hashes  # the local tables read fewer of their bits
        counts = self.tables.lookup(hashes)  # (M, S, V)
        if self.local is not None:
            counts = np.concatenate([counts, self.local.lookup(hashes)])
        # every decision's two branch counts, summed up the tree from the leaves, exact in
        # uint16 (at most 255 x V; uint32 past 257 symbols), without BLAS (whose threads would
        # fight the network's); symbols first, so that every sum and gather reads whole rows
        sums = np.empty((self.V + N, M * S), dtype=self.sum_dtype)  # symbols', then nodes'
        sums[: self.V] = counts.reshape(M * S, -1).T[self.order]  # in the tree's order of leaves
        for level in self.levels:  # the deepest decisions first: a node's children are done
            sums[self.V + level] = sums[self.left[level]] + sums[self.right[level]]
        n0 = np.minimum(sums.take(self.left, axis=0), 255)  # the left branch: lo..mid-1
        n1 = np.minimum(sums.take(self.right, axis=0), 255)  # the right branch: mid..hi-1
        seen = ((n0 << 8) | n1).reshape(N, M, S).transpose(1, 2, 0)
        state = _STATE.take(np.ascontiguousarray(seen))  # (M, S, N)
        state += self.state_offsets
        stretched = _stretch(np.clip(self.state_map, 1e-4, 1 - 1e-4)).astype(np.float32)
        stretched.take(state, out=x[net : net + M])
        # every table's input again where its context is deterministic at the decision (one
        # branch counted, the other not: a cell of the map, _ONE_SIDED), 0 elsewhere, so that
        # the mixer weighs those apart (paq8px's ContextMap2 has such an input). Held-out, the
        # ten-minute models: Shakespeare 1.7979 -> 1.7901, code 0.9939 -> 0.9819; for the saved
        # tables only 1.7904 and 0.9859
        (stretched * _ONE_SIDED).take(state, out=x[net + M : net + 2 * M])
        if self.match is not None:
            x[net + 2 * M] = self.match.inputs()
        R = self.apm_symbols
        before = np.where(self.previous == self.V, R, np.minimum(self.previous, R - 1))
        K = self.config.mixers
        sels = [self.first_set[k] + self._mixer_context(k, before) for k in range(K)]
        # every mixer's dot product over all but the network's inputs at once (einsum: no BLAS,
        # no threads, a fixed order); the network's terms are added in predict
        rest = x[net:]
        if self.match is None:  # mixer 0: one set per decision
            zs = [np.einsum("isn,in->sn", rest, self.weights[net:, 0])]
            w0 = [self.weights[:net, 0]]
        else:
            w = self.weights.take(sels[0], axis=1)
            zs, w0 = [np.einsum("isn,isn->sn", rest, w[net:])], [w[:net]]
        if K > 1:
            w = self.weights.take(np.concatenate(sels[1:]), axis=1).reshape(inputs, K - 1, S, N)
            zs += list(np.einsum("isn,iksn->ksn", rest, w[net:]))
            w0 += [w[:net, k] for k in range(K - 1)]
        cell_at = (before[:, None] * N + np.arange(N)[None, :]) * APM_BUCKETS  # the APM's rows
        return x, zs, w0, cell_at, state, sels

    def observe(self, symbols: np.ndarray, active: int) -> None:
        """The symbols (S,) at the next position; only the first ``active`` streams have one."""
        y = np.asarray(symbols, dtype=np.int64)
        if self.pending is not None and active:
            self._learn(y[:active], active)
        self.pending = None
        self.tables.update(self.contexts.hashes, y, active)
        if self.local is not None:
            self.local.update(self.contexts.hashes, y, active)
        self.contexts.push(y, active)
        self.previous[:active] = y[:active]
        if self.match is not None:
            self.match.push(y, active)
        self.ready = self._prepare()

    def _mixer_context(self, k: int, before: np.ndarray) -> np.ndarray:
        """(S,) which of mixer k's weight sets each stream uses now."""
        if k == 0:
            if self.match is not None:
                return self.match.lengths
            return np.zeros(len(before), dtype=np.int64)
        if k == 1:
            return before
        c = self.contexts  # the streams' column, word length and last two symbols' classes
        if k == 2:  # the column in buckets
            column = np.searchsorted(COLUMN_EDGES, c.column, side="right")
            return column * 16 + c.kinds[:, 0] * 4 + c.kinds[:, 1]
        return np.minimum(c.wordlen, WORD_LENGTHS - 1) * 4 + c.kinds[:, 1]

    def _learn(self, y: np.ndarray, active: int) -> None:
        x, q, cell, frac, state, sels, qs, x2 = self.pending
        N = self.N
        # the decisions on each stream's path, flat (stream, then depth): paths differ in length
        s, d = np.nonzero(self.path_nodes[y] < N)
        nodes, bits = self.path_nodes[y[s], d], self.path_bits[y[s], d]  # (P,)
        err = bits - q[s, nodes]
        if self.config.mixer_lr:
            lr = self.config.mixer_lr
            rows = np.ascontiguousarray(x[:, s, nodes].T)  # (P, inputs)
            rows[:, :NETWORK_INPUTS] *= NETWORK_RATE
            # every mixer's steps in one sum (their weight sets are apart, so each weight still
            # adds its own steps in the same order)
            errs = [err] if x2 is None else [bits - qk[s, nodes] for qk in qs]
            scale = (lr * np.concatenate(errs)).astype(np.float32)
            _add_by_cell(
                self.weights, np.concatenate([sk[s] * N + nodes for sk in sels]), scale, rows
            )
            if x2 is not None:  # the second layer: one weight set per decision
                scale = (lr * FINAL_RATE * err).astype(np.float32)
                _add_by_cell(self.final[:, None], nodes, scale, x2[:, s, nodes].T)
        if self.config.apm_rate:
            apm, at, share = self.apm.reshape(-1), cell[s, nodes], frac[s, nodes]
            for edge, weight in ((at, 1 - share), (at + 1, share)):
                np.add.at(apm, edge, self.config.apm_rate * (bits - apm[edge]) * weight)
        if self.match is not None:
            self.match.learn(y, active)
        flat, idx = self.state_map.reshape(-1), state[:, s, nodes].reshape(-1)  # (M * P)
        g = np.tile(bits, len(state)) - flat[idx]
        step = np.bincount(idx, g, flat.size) / (np.bincount(idx, None, flat.size) + MAP_STEPS)
        flat += step


def build_tables(ids: np.ndarray, symbols: tuple[Any, ...], config: MixConfig) -> ContextTables:
    """Tables of a training text (N,) ids, with the mixer's state learned on its end: the
    first N - WARMUP_CHARS counted, the rest read by a Mixer (counting as it reads)."""
    ids = np.asarray(ids, dtype=np.int64)
    split = max(0, len(ids) - WARMUP_CHARS)
    tables = ContextTables.build(ids[:split], symbols, config)
    rest = ids[split:]
    if len(rest) < 2:
        return tables
    S = max(1, min(128, len(rest) // 64))
    mixer, uniform = Mixer(tables, S), np.full((S, len(symbols)), 1.0 / len(symbols))
    for t, active, column in side_by_side(rest, S):
        if t:
            mixer.predict(uniform)
        mixer.observe(column, active)
    counts = np.bincount(ids, minlength=len(symbols)) + 0.5
    tables.learned = mixer.learned() | {"first": counts / counts.sum()}
    if config.match:  # the whole training text to match against, from here on
        tables.text = ids.astype(text_dtype(len(symbols)))
    return tables


def _add_by_cell(
    weights: np.ndarray, cells: np.ndarray, scale: np.ndarray, rows: np.ndarray
) -> None:
    """``weights`` (inputs, sets, N) += ``scale[q] * rows[q % P]`` at the (set * N + decision)
    ``cells[q]`` (Q,), for ``rows`` (P, inputs), summed where they meet (in their order), in
    float32, touching only the cells read."""
    inputs, sets, N = weights.shape
    order = np.argsort(cells, kind="stable")  # each cell's steps together, in their order
    ordered = cells[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    steps = rows[order % len(rows)] * scale[order, None]  # (Q, inputs)
    flat = weights.reshape(inputs, sets * N)  # a view: weights are contiguous
    flat[:, ordered[starts]] += np.add.reduceat(steps, starts, axis=0).T
