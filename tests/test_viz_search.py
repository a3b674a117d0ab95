"""The page's searches in numpy (viz/search.py, the reference its JavaScript is held to) and the
comparison of two runs (viz/compare.py), against independent oracles written from the papers."""

from types import SimpleNamespace

import numpy as np
import pytest

from rnnlab.viz.compare import prediction_gap
from rnnlab.viz.search import correlations, fires, rank, regex_feature, span_scores


def lstmvis_passes(u_row: np.ndarray, start: int, end: int, flank: int, theta: float) -> bool:
    """Strobelt et al. 2018, section 4.1: on (>= theta) at every selected character, off
    (< theta) at the characters around it."""
    around = np.concatenate([u_row[max(start - flank, 0) : start], u_row[end : end + flank]])
    return bool((u_row[start:end] >= theta).all() and (around < theta).all())


def test_margin_is_the_width_of_thresholds_that_pass_lstmvis_rule():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 15, (40, 60)) / 14  # 40 cells, 60 characters, 15 levels as on the page
    u[7, 20:26], u[7, 17:20], u[7, 26:29] = 0.9, 0.1, 0.2  # a cell on over 20..25 only
    start, end, flank = 20, 26, 3
    scores = span_scores(u, start, end, flank)
    grid = np.linspace(0, 1, 14001)
    for k in range(len(u)):
        on = np.mean([lstmvis_passes(u[k], start, end, flank, th) for th in grid])
        off = np.mean([lstmvis_passes(1 - u[k], start, end, flank, th) for th in grid])
        # a positive score is the width of the passing thresholds (on, or off with sign -1)
        assert max(scores[k, 0], 0) == pytest.approx(max(on, off), abs=2e-3), k
        if scores[k, 0] > 2e-3:
            assert scores[k, 1] == (1 if on > off else -1)
    assert rank(scores[:, 0], 1) == [7]
    assert scores[7, 0] == pytest.approx(0.9 - 0.2, abs=2e-3) and scores[7, 1] == 1


def test_a_cell_off_over_the_selection_counts_with_its_sign():
    u = np.full((3, 30), 0.5)
    u[1, 10:14], u[1, 7:10], u[1, 14:17] = 0.0, 1.0, 1.0  # off inside, on around
    scores = span_scores(u, 10, 14)
    assert rank(scores[:, 0], 1) == [1] and scores[1, 1] == -1
    assert scores[1, 0] == pytest.approx(1.0, abs=2e-3)
    # a selection at the start of the text has one flank; the whole text has none (zeros)
    assert span_scores(u, 0, 3).shape == (3, 2) and np.isfinite(span_scores(u, 0, 30)).all()


def test_fires_marks_the_other_places_with_the_same_pattern():
    u = np.zeros((2, 50))
    for a in (5, 20, 40):
        u[0, a : a + 3] = 1.0  # cell 0 fires over three places
    u[1, 20:23] = 1.0  # cell 1 only over the second
    assert np.flatnonzero(fires(u, 5, 8, [0])).tolist() == [5, 6, 7, 20, 21, 22, 40, 41, 42]
    assert np.flatnonzero(fires(u, 20, 23, [0, 1])).tolist() == [20, 21, 22]  # both at once


def test_regex_feature_and_correlations():
    text = "def f(x):\n    return (x + 1)\n"
    f = regex_feature(text, r"\(.*?\)")
    assert "".join(c for c, on in zip(text, f, strict=True) if on) == "(x)(x + 1)"
    assert regex_feature(text, r"z").sum() == 0 and regex_feature(text, r"x*").sum() == 2
    rng = np.random.default_rng(1)
    u = rng.random((6, len(text)))
    u[2] = 0.3 + 0.5 * f  # a cell that is the feature, shifted and scaled
    u[4] = 0.7  # a dead cell
    r = correlations(u, f)
    for k in (0, 1, 3, 5):
        assert r[k] == pytest.approx(np.corrcoef(u[k], f)[0, 1], abs=1e-12)
    assert r[2] == pytest.approx(1.0) and r[4] == 0.0
    assert rank(np.abs(r), 1) == [2]
    assert not correlations(u, np.zeros(len(text))).any()  # a pattern that never matches


def test_prediction_gap_is_total_variation_over_the_union_of_vocabularies():
    text = list("ab")
    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])  # vocabulary a, b, c
    q = np.array([[0.5, 0.5], [0.0, 1.0]])  # vocabulary b, d
    a = SimpleNamespace(symbols=text, probs=p)
    b = SimpleNamespace(symbols=text, probs=q)
    gap = prediction_gap(a, ["a", "b", "c"], b, ["b", "d"])
    # t=0: {a: .5, b: .5} against {b: .5, d: .5} -> 0.5; t=1: disjoint -> 1
    assert gap.tolist() == pytest.approx([0.5, 1.0])
    assert prediction_gap(a, ["a", "b", "c"], a, ["a", "b", "c"]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="same text"):
        prediction_gap(a, ["a", "b", "c"], SimpleNamespace(symbols=["x", "y"], probs=q), ["b", "d"])
