"""The binary tree the context mixer codes a symbol down (contextmix.py): every symbol is a path
of yes/no decisions from the root, and the mixer predicts each decision.

The tree's shape is not neutral. Exact probabilities would give the same product down any
tree, but the mixer learns each decision's weights and the tables' state maps are shared by
all of them, so decisions that mean something are learned sooner. ``class_tree`` first asks
letter or not, then space or punctuation, lower or upper case, and within each of those four
groups codes the frequent symbols in fewer decisions (a Huffman tree of the training text's
counts). Held-out, the ten-minute models, bits/char against the balanced tree over the symbols'
order (Shakespeare 1.8021, code 0.9960): the groups with Huffman trees inside 1.7979 and
0.9939; the groups with balanced trees 1.8002 and 0.9957; one Huffman tree over all symbols
1.8115 and 1.0095; a balanced tree over the symbols by frequency 1.8180 (Shakespeare).

A tree is ``(order, splits)``: ``order`` (V,) the symbol ids in leaf order, so that every
subtree is a range of positions, and ``splits`` (V - 1, 3) the decisions' [lo, mid, hi) over
positions (right branch: mid..hi-1), breadth first (a parent before its children).
Imports nothing from rnnlab.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import numpy as np

Tree = tuple[np.ndarray, np.ndarray]
Node = Any  # a symbol id, or a pair of nodes


def balanced_tree(V: int) -> Tree:
    """The symbols in their own order, each range halved (the larger half on the left)."""
    return _flatten(_balanced(list(range(V))), V)


def class_tree(symbols: Sequence[Any], counts: np.ndarray) -> Tree:
    """Letters or not at the root; then whitespace or the rest (punctuation, digits), lower or
    upper case (letters of neither, such as CJK, join the lower case); a Huffman tree of
    ``counts`` + 1 (V,) within each group; a group without symbols drops out."""
    groups: list[list[int]] = [[], [], [], []]  # whitespace, the rest, lower, upper case
    for v, s in enumerate(symbols):
        groups[_group(chr(s) if isinstance(s, int) else str(s)[:1])].append(v)
    weights = np.asarray(counts, dtype=np.int64) + 1
    space, other, lower, upper = (_huffman(g, weights) for g in groups)
    return _flatten(_pair(_pair(space, other), _pair(lower, upper)), len(symbols))


def _group(c: str) -> int:
    """0: whitespace; 1: the rest (punctuation, digits); 2: lower case; 3: upper case."""
    if c.isupper():
        return 3
    if c.isalpha():
        return 2
    return 0 if c.isspace() else 1


def tree_paths(order: np.ndarray, splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each symbol's path, (V, D) decision indices and (V, D) branches, padded with decision
    N = V - 1, whose right branch is certain. ValueError if (order, splits) is not a tree."""
    V = len(order)
    if sorted(np.asarray(order).tolist()) != list(range(V)) or np.shape(splits) != (V - 1, 3):
        raise ValueError("not a symbol tree")
    index = {(int(lo), int(hi)): j for j, (lo, _, hi) in enumerate(splits)}
    paths: list[list[tuple[int, int]]] = [[] for _ in range(V)]
    todo, seen = ([(0, V, -1)] if V > 1 else []), 0
    while todo:
        lo, hi, parent = todo.pop()
        j = index.get((lo, hi), -1)
        mid = int(splits[j][1]) if j > parent else -1
        if not lo < mid < hi:
            raise ValueError("not a symbol tree")
        seen += 1
        for at in range(lo, hi):
            paths[at].append((j, int(at >= mid)))
        todo += [(a, b, j) for a, b in ((lo, mid), (mid, hi)) if b - a > 1]
    if seen != V - 1:
        raise ValueError("not a symbol tree")
    depth = max((len(p) for p in paths), default=0)
    nodes = np.full((V, depth), V - 1, dtype=np.int64)
    branches = np.ones((V, depth), dtype=np.int64)
    for at, path in enumerate(paths):
        v = int(order[at])
        for d, (node, bit) in enumerate(path):
            nodes[v, d], branches[v, d] = node, bit
    return nodes, branches


def _balanced(items: list[int]) -> Node:
    if len(items) < 2:
        return items[0] if items else None
    mid = (len(items) + 1) // 2
    return (_balanced(items[:mid]), _balanced(items[mid:]))


def _huffman(items: list[int], weights: np.ndarray) -> Node:
    """Ties broken by order of creation: the same tree on every machine."""
    heap = [(int(weights[v]), n, v) for n, v in enumerate(items)]
    heapq.heapify(heap)
    made = len(heap)
    while len(heap) > 1:
        (a, _, left), (b, _, right) = heapq.heappop(heap), heapq.heappop(heap)
        heapq.heappush(heap, (a + b, made, (left, right)))
        made += 1
    return heap[0][2] if heap else None


def _pair(left: Node, right: Node) -> Node:
    return right if left is None else left if right is None else (left, right)


def _flatten(root: Node, V: int) -> Tree:
    order: list[int] = []
    stack = [root] if root is not None else []
    while stack:  # leaves left to right
        node = stack.pop()
        if isinstance(node, tuple):
            stack += [node[1], node[0]]
        else:
            order.append(node)
    splits: list[tuple[int, int, int]] = []
    level = [(root, 0)] if isinstance(root, tuple) else []
    while level:  # breadth first
        below = []
        for node, lo in level:
            mid = lo + _leaves(node[0])
            splits.append((lo, mid, lo + _leaves(node)))
            below += [
                (child, at)
                for child, at in ((node[0], lo), (node[1], mid))
                if isinstance(child, tuple)
            ]
        level = below
    assert len(order) == V
    return np.array(order, dtype=np.int64), np.array(splits, dtype=np.int64).reshape(-1, 3)


def _leaves(node: Node) -> int:
    count, stack = 0, [node]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple):
            stack += list(n)
        else:
            count += 1
    return count
