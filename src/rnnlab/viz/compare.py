"""Two runs on one text: where their next-character predictions differ. numpy only; imports
nothing from rnnlab."""

from __future__ import annotations

import numpy as np

from .record import Analysis


def prediction_gap(
    a: Analysis, symbols_a: list[str], b: Analysis, symbols_b: list[str]
) -> np.ndarray:
    """Total variation distance between the two runs' distributions of the next character,
    after each shown character: 0 when they agree, 1 when they share no probability mass.

    The vocabularies may differ (each run's own training text): a symbol one run lacks has
    probability 0 under it, so the distance is taken over their union.

    Args:
        a, b: analyses of the same text (the same shown characters).
        symbols_a, symbols_b: each run's vocabulary as display characters (index == id).

    Returns:
        (N,) float64 in [0, 1].
    """
    if a.symbols != b.symbols:
        raise ValueError("the two analyses are not of the same text")
    union = sorted(set(symbols_a) | set(symbols_b))
    where = {s: i for i, s in enumerate(union)}
    N = len(a.symbols)
    p = np.zeros((N, len(union)))
    q = np.zeros((N, len(union)))
    p[:, [where[s] for s in symbols_a]] = a.probs[:, : len(symbols_a)]
    q[:, [where[s] for s in symbols_b]] = b.probs[:, : len(symbols_b)]
    return 0.5 * np.abs(p - q).sum(1)
