"""The page's two searches, written once here in numpy as the reference its JavaScript
(assets/search.js) is tested against: cells that are on over a selected span and off around it
(LSTMVis's hypothesis search, Strobelt et al. 2018, section 4.1), and cells that correlate with a
regular expression's matches. numpy only; imports nothing from rnnlab.

Both work on what the page holds: each cell's value in units of its quantity's range, u in
[0, 1] (``page.quantize`` levels / (LEVELS - 1)), one row per (layer, quantity, cell).
"""

from __future__ import annotations

import re

import numpy as np

FLANK = 3  # characters either side of a selection that the cells must be off over
FIRE_CELLS = 3  # the best cells whose joint firing marks the other places in the text


def span_scores(u: np.ndarray, start: int, end: int, flank: int = FLANK) -> np.ndarray:
    """How cleanly each cell is on over ``[start, end)`` and off around it.

    LSTMVis keeps a cell when it is above a threshold at every selected character and below it
    at the characters just around the selection, for one threshold the user sets. A cell passes
    that rule for *some* threshold exactly when min(selection) > max(flanks); the margin
    min(selection) - max(flanks) is the width of the range of thresholds that keep it. So we rank
    by that margin: no threshold to pick, and the first cells are the ones that pass for the
    widest range of them (the most robust). The same margin with the roles swapped (off over the
    selection, on around it) counts too, since a tanh cell may signal with either sign; a small
    term of the mean gap breaks the ties that 15 levels leave.

    Args:
        u: (K, N) values in [0, 1].
        start, end: the selection, 0 <= start < end <= N.
        flank: characters on each side (fewer at the text's ends; none: the flanks count as 0).

    Returns:
        (K, 2) float64: column 0 the score, column 1 the sign (+1: on over the selection).
    """
    sel = u[:, start:end].astype(np.float64)  # (K, S)
    around = np.concatenate(
        [u[:, max(start - flank, 0) : start], u[:, end : end + flank]], 1
    ).astype(np.float64)
    if around.shape[1] == 0:
        around = np.zeros((len(u), 1))
    on = sel.min(1) - around.max(1) + 1e-3 * (sel.mean(1) - around.mean(1))
    off = around.min(1) - sel.max(1) + 1e-3 * (around.mean(1) - sel.mean(1))
    return np.stack([np.maximum(on, off), np.where(on >= off, 1.0, -1.0)], 1)


def rank(scores: np.ndarray, top: int) -> list[int]:
    """The rows of the ``top`` largest scores, ties in row order (as the page's stable sort)."""
    return [int(k) for k in np.argsort(-scores, kind="stable")[:top]]


def fires(u: np.ndarray, start: int, end: int, rows: list[int], flank: int = FLANK) -> np.ndarray:
    """(N,) bool: where all of ``rows`` are on as over the selection: past the middle of the
    threshold range their margin found (on the side of its sign)."""
    out = np.ones(u.shape[1], bool)
    for k in rows:
        sel = u[k, start:end].astype(np.float64)
        around = np.concatenate([u[k, max(start - flank, 0) : start], u[k, end : end + flank]])
        around = around.astype(np.float64) if len(around) else np.zeros(1)
        if sel.min() - around.max() >= around.min() - sel.max():
            out &= u[k] > (sel.min() + around.max()) / 2
        else:
            out &= u[k] < (around.min() + sel.max()) / 2
    return out


def regex_feature(text: str, pattern: str) -> np.ndarray:
    """(N,) float64: 1 at every character inside a match of ``pattern``, else 0; ``^`` and
    ``$`` match at every line (the page's JavaScript flag m)."""
    f = np.zeros(len(text))
    for m in re.finditer(pattern, text, re.MULTILINE):
        f[m.start() : m.end()] = 1.0
    return f


def correlations(u: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """(K,) Pearson r of each row of ``u`` (K, N) with ``feature`` (N,); 0 where either is
    constant. The page computes the same from per-row means and norms made once, so a search
    only sums each row over the matched characters."""
    x = u.astype(np.float64) - u.mean(1, keepdims=True)
    f = feature - feature.mean()
    norm = np.sqrt((x * x).sum(1) * (f * f).sum())
    return np.where(norm > 1e-12, x @ f / np.where(norm > 1e-12, norm, 1.0), 0.0)
