"""How long `rnnlab eval` and `rnnlab viz` take, and how far the default (batched) score is from
the exact single pass, for trained runs; each command timed end to end as a user runs it.

    python benchmarks/eval_time.py RUN [RUN ...] [--exact-chars 300000] [--json out.json]

For each RUN (its validation split):
- `rnnlab eval RUN --quick`: the model's score alone (the default: 64 warmed-up segments side by
  side for LSTM/GRU/RNN; the exact parallel pass for minGRU/minLSTM);
- for a fused cell, the same text's first --exact-chars characters scored both ways
  (`--quick` and `--quick --exact`), and their difference in bpc;
- `rnnlab eval RUN`: with the ladder (n-grams, compressors), so the ladder's own cost shows;
- `rnnlab viz RUN -o page.html`: the default page.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnlab import checkpoint, tokens
from rnnlab.data import split


def rnnlab(*args: str) -> tuple[dict | None, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"rnnlab {' '.join(args)} failed: {out.stderr.strip()}")
    return (json.loads(out.stdout) if "--json" in args else None), seconds


def measure(run: str, exact_chars: int, work: Path) -> dict:
    model, vocab, config = checkpoint.load_model(Path(run))
    r: dict = {"run": run, "cell": config.model.cell}
    quick, wall = rnnlab("eval", run, "--quick", "--json")
    r["eval_quick"] = {k: quick[k] for k in ("bpc", "num_chars", "seconds", "exact")} | {
        "wall_s": wall
    }
    if not model.parallel_in_time:  # the fused cells: batched against exact on a prefix
        ids = tokens.load_tokens(config.corpus, config.corpus.sha256)
        _, val = split(ids.open(), config.train.val_fraction)
        prefix = work / f"{Path(run).name}-prefix.txt"
        prefix.write_text(vocab.decode(np.asarray(val[:exact_chars]).astype(np.int64).tolist()))
        batched, tb = rnnlab("eval", run, str(prefix), "--quick", "--json")
        exact, te = rnnlab("eval", run, str(prefix), "--quick", "--exact", "--json")
        r["prefix"] = {
            "chars": exact["num_chars"],
            "batched_bpc": batched["bpc"],
            "batched_wall_s": tb,
            "exact_bpc": exact["bpc"],
            "exact_wall_s": te,
            "batched_minus_exact_bpc": batched["bpc"] - exact["bpc"],
        }
    full, wall = rnnlab("eval", run, "--json")
    r["eval_with_ladder"] = {"wall_s": wall, "model_s": full["seconds"]}
    _, wall = rnnlab("viz", run, "-o", str(work / "viz.html"), "--quiet")
    r["viz_wall_s"] = wall
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+")
    p.add_argument("--exact-chars", type=int, default=300_000)
    p.add_argument("--json", default="benchmarks/results/eval_time.json")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rows = [measure(run, a.exact_chars, Path(d)) for run in a.runs]
    print(
        f"{'run':40} {'cell':7} {'chars':>10} {'eval s':>7} {'+ladder s':>9} {'viz s':>6} "
        f"{'batched - exact (bpc, chars)':>30}"
    )
    for r in rows:
        q = r["eval_quick"]
        diff = (
            f"{r['prefix']['batched_minus_exact_bpc']:+.1e} on {r['prefix']['chars']:,}"
            if "prefix" in r
            else "exact (parallel)"
        )
        print(
            f"{Path(r['run']).name:40} {r['cell']:7} {q['num_chars']:10,} {q['wall_s']:7.1f} "
            f"{r['eval_with_ladder']['wall_s']:9.1f} {r['viz_wall_s']:6.1f} {diff:>30}"
        )
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
