"""The match model of the training text (ctxmatch.py) and its place in the mixer (issue 22)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import contextmix as cm
from rnnlab import ctxmatch, ctxrun
from rnnlab.ctxtree import balanced_tree, tree_paths
from tests.conftest import words_text
from tests.test_contextmix import SYMBOLS, ids_of, read, small_config


def tree(V: int) -> tuple[np.ndarray, np.ndarray, int]:
    order, splits = balanced_tree(V)
    nodes, bits = tree_paths(order, splits)
    return nodes, bits, len(splits)


def feed(match: ctxmatch.TextMatch, symbols) -> None:
    for y in symbols:
        match.inputs()
        match.learn(np.array([y]), 1)
        match.push(np.array([y]), 1)


def test_the_match_expects_what_followed_the_last_place_of_the_context():
    V = 5
    text = np.array([0, 1, 2, 3, 4, 0, 1, 2, 4, 3, 3])  # "012" is followed by 3, then by 4
    match = ctxmatch.TextMatch(text, 3, 1, tree(V))
    feed(match, [2, 2, 0, 1])
    match.inputs()
    assert match.expected[0] == -1  # "201" never came
    feed(match, [2])
    x = match.inputs()
    assert match.expected[0] == 4 and match.lengths[0] == 1  # the last place: "0124"
    feed(match, [4])
    match.inputs()
    assert match.expected[0] == 3 and match.lengths[0] == 2  # it goes on: "01243"
    feed(match, [0])  # not 3: the match ends, and "240" never came
    match.inputs()
    assert match.expected[0] == -1
    # the input leans toward 4's branch on 4's path, and is 0 off it
    nodes, bits, N = tree(V)
    on = nodes[4][nodes[4] < N]
    assert (np.sign(x[0, on]) == np.where(bits[4][nodes[4] < N] == 1, 1, -1)).all()
    assert (np.delete(x[0], on) == 0).all()


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=300),
    st.lists(st.integers(0, 3), min_size=1, max_size=300),
    st.integers(1, 6),
)
@settings(max_examples=60, deadline=None)
def test_a_match_is_always_a_real_one_even_where_hashes_collide(text, read_, n):
    """With an index of 4 slots nearly every context shares a slot: whatever is expected
    followed the stream's very last n symbols somewhere in the text."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ctxmatch, "MIN_BITS", 2)
        mp.setattr(ctxmatch, "MAX_BITS", 2)
        text = np.array(text)
        match = ctxmatch.TextMatch(text, n, 1, tree(4))
        seen: list[int] = []
        for y in read_:
            match.inputs()
            if match.expected[0] >= 0:
                p = int(match.pointer[0])
                assert p >= n and list(text[p - n : p]) == seen[-n:]
                assert text[p] == match.expected[0]
            match.push(np.array([y]), 1)
            seen.append(y)


def test_the_match_map_learns_how_far_to_trust_a_match():
    V = 6
    text = np.tile(np.arange(V), 50)  # 0 1 2 3 4 5 0 1 ...: always right
    match = ctxmatch.TextMatch(text, 2, 1, tree(V))
    start = match.map.copy()
    feed(match, list(np.tile(np.arange(V), 20)))
    assert match.map[match.lengths[0]] > start[match.lengths[0]]
    wrong = ctxmatch.TextMatch(text, 2, 1, tree(V))
    feed(wrong, [0, 1] * 60)  # always expects 2 after "01", and gets 0
    assert wrong.map[1] < start[1]


def test_the_mixer_finds_a_passage_of_the_training_text_far_beyond_its_orders(monkeypatch):
    """A held-out text that repeats a passage of the training text: with the match model the
    mixer codes it in far fewer bits than with the counts alone (orders up to 3 here). The
    training text ends with a repeat of its start, so the warm-up learns to trust a match."""
    start, middle = ids_of(words_text(150, seed=1)), ids_of(words_text(150, seed=2))
    monkeypatch.setattr(cm, "WARMUP_CHARS", len(start))
    train = np.concatenate([start, middle, start])
    passage = middle[1000:1600]
    kw = {"orders": (1, 2, 3), "words": 0, "lines": 0}
    with_match = cm.build_tables(train, SYMBOLS, small_config(match=6, **kw))
    without = cm.build_tables(train, SYMBOLS, small_config(match=0, **kw))
    assert with_match.text is not None and without.text is None

    def bits(tables):
        p = read(tables, passage, streams=2)
        return -np.log2(p[np.arange(len(passage)), passage]).mean()

    assert bits(with_match) < 0.6 * bits(without)


def test_the_text_is_saved_checked_and_counted_in_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "WARMUP_CHARS", 500)
    train = ids_of(words_text(60))
    tables = cm.build_tables(train, SYMBOLS, small_config(match=5))
    assert np.array_equal(tables.text, train) and tables.text.dtype == np.uint8
    assert set(tables.learned) == set(cm.LEARNED) | {"match_map"}
    path = tmp_path / cm.CONTEXTS_FILE
    tables.save(path)
    back = cm.ContextTables.load(path, len(SYMBOLS), 10**8)
    assert np.array_equal(back.text, train) and back.sha256() == tables.sha256()
    mixer = cm.Mixer(back, 2)
    assert np.array_equal(mixer.match.map, tables.learned["match_map"])
    assert tables.reading_bytes >= tables.counts.nbytes + train.size + ctxmatch.index_bytes(
        len(train)
    )
    # a run's tables fit their limit while reading, the text and its index included; under a
    # limit too small for the text beside the smallest tables, none is kept
    for limit in (3 * 10**5, 2 * 10**6):
        built = ctxrun.build_run_tables(tmp_path, train, SYMBOLS, limit)
        assert built.reading_bytes <= limit and built.config.match
        assert (tmp_path / cm.CONTEXTS_FILE).stat().st_size <= limit
    long_text = np.resize(train, 200_000)  # the text and its index: 200 kB + 1 MB
    built = ctxrun.build_run_tables(tmp_path, long_text, SYMBOLS, 3 * 10**5)
    assert built.config.match == 0 and built.text is None
    assert built.reading_bytes <= 3 * 10**5
    # kept where they take at most a quarter of the limit, not where they would take more
    assert not ctxrun.build_run_tables(tmp_path, long_text, SYMBOLS, 4 * 10**6).config.match
    assert ctxrun.build_run_tables(tmp_path, long_text, SYMBOLS, 6 * 10**6).config.match
