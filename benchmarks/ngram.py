"""Kneser-Ney n-gram rungs on a large corpus: time and peak memory to fit orders 2..8 on the
first 90% and score them on the last 10%, as `rnnlab eval` does.

Ours counts every k-gram once for all orders (``KneserNey.fit_orders``); the baseline, measured
in the same run on the same text, fits each order on its own (``KneserNey(train, n, V)`` for
n = 2..8, the textbook way). The baseline is run on the first --baseline-mb only (it is slow),
and ours on both sizes, so the ratio compares like with like.

    python benchmarks/ngram.py CORPUS [--mb 100] [--baseline-mb 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from rnnlab.ladder import KneserNey

ORDERS = (2, 3, 4, 5, 6, 7, 8)


def load(path: str, mb: float) -> tuple[np.ndarray, int]:
    """The first ``mb`` MB of a UTF-8 file as ids of its sorted code points, keeping only the
    255 most frequent characters (8-gram keys of a vocabulary of V hold V^8 values, which must
    fit in 64 bits; a large corpus of code has a long tail of rare characters)."""
    with open(path, "rb") as f:
        raw = f.read(int(mb * 1e6)).decode("utf-8", errors="ignore")
    cps = np.frombuffer(raw.encode("utf-32-le"), dtype="<u4")
    symbols, ids, counts = np.unique(cps, return_inverse=True, return_counts=True)
    keep = np.zeros(len(symbols), dtype=bool)
    keep[np.argsort(-counts)[:255]] = True
    ids = ids[keep[ids]]
    remap = np.cumsum(keep) - 1
    return remap[ids].astype(np.uint8), int(keep.sum())


def ours(train: np.ndarray, held: np.ndarray, V: int) -> tuple[float, float, dict]:
    t0 = time.perf_counter()
    fit = score = 0.0
    rungs = {}
    for n, model in KneserNey.fit_orders(train, ORDERS, V):
        t1 = time.perf_counter()
        fit += t1 - t0
        rungs[n] = model.bits_per_char(held)
        t0 = time.perf_counter()
        score += t0 - t1
    return fit, score, rungs


def baseline(train: np.ndarray, held: np.ndarray, V: int) -> tuple[float, float, dict]:
    fit = score = 0.0
    rungs = {}
    for n in ORDERS:
        t0 = time.perf_counter()
        model = KneserNey(train, n, V)
        t1 = time.perf_counter()
        rungs[n] = model.bits_per_char(held)
        fit, score = fit + t1 - t0, score + time.perf_counter() - t1
    return fit, score, rungs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("corpus")
    p.add_argument("--mb", type=float, default=100.0)
    p.add_argument("--baseline-mb", type=float, default=10.0)
    p.add_argument("--json", default="benchmarks/results/ngram.json")
    a = p.parse_args()
    rows = []
    for mb, methods in ((a.baseline_mb, ("baseline", "ours")), (a.mb, ("ours",))):
        ids, V = load(a.corpus, mb)
        cut = int(len(ids) * 0.9)
        train, held = ids[:cut], ids[cut:]
        for name in methods:
            fit, score, rungs = (ours if name == "ours" else baseline)(train, held, V)
            rows.append(
                {
                    "mb": mb,
                    "chars": len(ids),
                    "vocab": V,
                    "method": name,
                    "fit_s": fit,
                    "score_s": score,
                    "score_chars_per_s": len(ORDERS) * len(held) / score,
                    "bpc": {f"{n}-gram": b for n, b in rungs.items()},
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                }
            )
            r = rows[-1]
            print(
                f"{mb:6.0f} MB {name:8s} fit {r['fit_s']:7.1f} s  score {r['score_s']:6.1f} s  "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB  best bpc {min(rungs.values()):.3f}",
                flush=True,
            )
    base = next(r for r in rows if r["method"] == "baseline")
    same = next(r for r in rows if r["method"] == "ours" and r["mb"] == base["mb"])
    for n in ORDERS:  # one model, two ways of counting: the same numbers
        assert abs(base["bpc"][f"{n}-gram"] - same["bpc"][f"{n}-gram"]) < 1e-9
    speedup = (base["fit_s"] + base["score_s"]) / (same["fit_s"] + same["score_s"])
    print(f"\nours vs fitting each order on its own, {base['mb']:.0f} MB: {speedup:.2f}x faster")
    out = {"corpus": a.corpus, "rows": rows, "speedup_vs_baseline": speedup}
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
