"""The mixer's symbol tree (ctxtree.py, issue 22): every symbol one path, the paths a
distribution, letters apart from the rest at the root, frequent symbols nearer the root."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import contextmix as cm
from rnnlab.ctxtree import balanced_tree, class_tree, tree_paths

ALPHABET = "\n\t !\"#'(),-.:;?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzéÉ中"


def check_tree(order: np.ndarray, splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tree's paths, checked: a distribution over the symbols, each path to its leaf."""
    V = len(order)
    nodes, bits = tree_paths(order, splits)
    assert len(splits) == V - 1  # a binary tree over V leaves has V - 1 decisions
    q = np.random.default_rng(V).uniform(0.01, 0.99, V - 1)
    steps = np.append(q, 1.0)[nodes]
    p = np.where(bits == 1, steps, 1 - steps).prod(axis=1)
    assert abs(p.sum() - 1.0) < 1e-9 and (p > 0).all()
    position = np.argsort(order)
    for v in range(V):  # the path's branches lead to v's leaf: right means position >= mid
        for node, bit in zip(nodes[v], bits[v], strict=True):
            if node < V - 1:
                lo, mid, hi = splits[node]
                assert lo <= position[v] < hi and bit == int(position[v] >= mid)
    return nodes, bits


@given(st.integers(2, 300))
@settings(max_examples=40, deadline=None)
def test_the_balanced_tree_keeps_the_symbols_order(V):
    order, splits = balanced_tree(V)
    assert (order == np.arange(V)).all()
    check_tree(order, splits)


@given(
    st.sets(st.sampled_from(ALPHABET), min_size=2, max_size=len(ALPHABET)),
    st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_the_class_tree_is_a_tree_with_letters_apart_and_frequent_symbols_higher(chars, seed):
    symbols = tuple(sorted(chars))
    counts = np.random.default_rng(seed).integers(0, 10**6, len(symbols))
    order, splits = class_tree(symbols, counts)
    nodes, _ = check_tree(order, splits)
    depth = (nodes < len(symbols) - 1).sum(axis=1)
    letter = np.array([c.isalpha() for c in symbols])
    if letter.any() and not letter.all():  # the root asks: letter or not
        lo, mid, hi = splits[0]
        assert set(letter[order[mid:hi]]) == {True} and set(letter[order[lo:mid]]) == {False}
    lower = [v for v, c in enumerate(symbols) if c.islower()]
    if len(lower) >= 2:  # within a group, a symbol counted more never lies deeper
        a, b = sorted(lower, key=lambda v: counts[v])[:: len(lower) - 1]
        assert counts[b] == counts[a] or depth[b] <= depth[a]
    again = class_tree(symbols, counts.copy())  # the same tree for the same counts
    assert all((x == y).all() for x, y in zip(again, (order, splits), strict=True))


def test_a_damaged_tree_is_refused_and_a_damaged_tree_file_too(tmp_path):
    order, splits = class_tree(tuple("\n abcAB.,"), np.arange(9))
    for bad_order, bad_splits in [
        (order[:-1], splits),  # a symbol missing
        (np.where(order == 0, 1, order), splits),  # a symbol twice
        (order, splits[::-1]),  # a child before its parent
        (order, np.where(splits == splits[0, 1], splits[0, 1] + 1, splits)),  # a broken range
    ]:
        with pytest.raises(ValueError, match="not a symbol tree"):
            tree_paths(bad_order, bad_splits)
    ids = np.random.default_rng(0).integers(0, 9, 4000)
    tables = cm.build_tables(ids, tuple("\n abcAB.,"), cm.MixConfig(table_bits=8, local_bits=8))
    assert (tables.tree[0] != np.arange(9)).any()  # the class tree, not the symbols' order
    path = tmp_path / "contexts.safetensors"
    tables.save(path)
    back = cm.ContextTables.load(path, 9, 10**8)
    assert all((x == y).all() for x, y in zip(back.tree, tables.tree, strict=True))
    tables.tree = (order, splits[::-1])
    tables._digest = None
    tables.save(path)
    with pytest.raises(cm.UsageError, match="damaged"):
        cm.ContextTables.load(path, 9, 10**8)


def test_a_byte_vocabulary_gets_a_class_tree_too():
    """Byte mode's symbols are ints: classed as the Latin-1 characters they name."""
    symbols = tuple(range(256))
    counts = np.bincount(np.frombuffer(b"Hello, World! hello\n" * 50, np.uint8), minlength=256)
    order, splits = class_tree(symbols, counts)
    nodes, _ = check_tree(order, splits)
    lo, mid, hi = splits[0]
    letters = {v for v in range(256) if chr(v).isalpha()}
    assert set(order[mid:hi].tolist()) == letters  # the root: letters on the right
    depth = (nodes < 255).sum(axis=1)
    assert depth[ord("l")] < depth[ord("q")]  # counted letters nearer the root than unseen ones
