"""Validation quality against wall-clock time: train with rnnlab's defaults for N minutes on a
corpus and report validation nats/char (exact, the whole split) at each validation.

    python benchmarks/quality.py [CORPUS] --minutes 10 [--out runs/quality] [--json out.json]

CORPUS defaults to ../shared/data/tinyshakespeare.txt when it exists, else "shakespeare"; any
corpus rnnlab trains on works, e.g. the named source-code corpus "python" (same 90/10 split).
Any other rnnlab train flag is passed on, e.g. --dropout 0.1 --lr 3e-3, or the scan cells:
--cell mingru --layers 4, --cell minlstm --layers 3 (about the default LSTM's 3.3M parameters).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rnnlab import checkpoint, cli

LN2 = 0.6931471805599453


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
    p.add_argument("corpus", nargs="?", default=str(default) if default.exists() else "shakespeare")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--json", default="benchmarks/results/quality.json")
    a, extra = p.parse_known_args()
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    code = cli.main(
        [
            "train",
            a.corpus,
            "--minutes",
            str(a.minutes),
            "--out",
            str(out),
            "--eval-chars",
            "0",
            *extra,
        ]
    )
    wall_s = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(code)
    evals = [e for e in checkpoint.read_metrics(out) if e["split"] == "val"]
    train = [e for e in checkpoint.read_metrics(out) if e["split"] == "train"]
    best = min(e["loss_nats"] for e in evals)
    result = {
        "corpus": a.corpus,
        "minutes": a.minutes,
        "extra_flags": extra,
        "wall_s": wall_s,
        "final_val_nats": evals[-1]["loss_nats"],
        "best_val_nats": best,
        "best_val_bpc": best / LN2,
        "steps": evals[-1]["step"],
        "mean_chars_per_s": sum(e["chars_per_s"] for e in train) / max(1, len(train)),
        "curve": [
            {"step": e["step"], "elapsed_s": e["elapsed_s"], "val_nats": e["loss_nats"]}
            for e in evals
        ],
        "config": json.loads((out / "config.json").read_text()),
    }
    print(f"\n{'step':>6} {'train s':>8} {'val nats/char':>14} {'val bpc':>8}")
    for e in evals:
        print(f"{e['step']:6d} {e['elapsed_s']:8.0f} {e['loss_nats']:14.4f} {e['bpc']:8.4f}")
    print(
        f"best validation: {best:.4f} nats/char ({best / LN2:.4f} bpc) in {a.minutes:g} "
        f"minutes of training, {wall_s:.0f} s wall"
    )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
