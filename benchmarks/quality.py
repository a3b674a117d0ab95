"""Validation quality against wall-clock time: train for N minutes on a corpus and report
validation nats/char (exact) at each validation, with chars/s and GFLOP/s of the training.

One configuration (rnnlab's defaults unless flags are passed on):

    python benchmarks/quality.py [CORPUS] --minutes 10 [--out runs/quality] [--json out.json]

The ten-minute table (issue 12): every configuration of --table on every corpus of --corpora,
one after the other, each row with chars/s, GFLOP/s and validation nats/char at 2, 5 and 10
minutes of training:

    python benchmarks/quality.py --table --corpora SHAKESPEARE.txt,python --minutes 10

CORPUS defaults to ../shared/data/tinyshakespeare.txt when it exists, else "shakespeare"; any
corpus rnnlab trains on works, e.g. the named source-code corpus "python" (same 90/10 split).
Any other rnnlab train flag is passed on, e.g. --dropout 0.1 --lr 3e-3. Training minutes exclude
the validations (rnnlab's budget counts training steps only), so every row trains equally long.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import time
from pathlib import Path

from rnnlab import checkpoint, cli
from rnnlab.config import ModelConfig
from rnnlab.model import flops_per_char

LN2 = 0.6931471805599453
# --table: the default LSTM and the scan cells at the sizes chosen by the 2-minute sweep
# (README, "Choosing the scan cells' sizes")
BLOCK = ["--hidden", "384", "--ff-mult", "4", "--dropout", "0"]
TABLE = {
    "lstm 2x512 (default)": [],
    "mingru 2x384 ff4": ["--cell", "mingru", *BLOCK],
    "minlstm 2x384 ff4": ["--cell", "minlstm", *BLOCK],
}
MARKS_MIN = (2, 5, 10)


def measure(corpus: str, minutes: float, out: Path, extra: list[str]) -> dict:
    """Train one configuration and read its curve back from metrics.jsonl."""
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    code = cli.main(
        ["train", corpus, "--minutes", str(minutes), "--out", str(out), "--quiet", *extra]
    )
    wall_s = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(code)
    metrics = checkpoint.read_metrics(out)
    evals = [e for e in metrics if e["split"] == "val"]
    train = [e for e in metrics if e["split"] == "train"]
    config = json.loads((out / "config.json").read_text())
    cps = sum(e["chars_per_s"] for e in train[1:] or train) / max(1, len(train[1:] or train))
    fpc = flops_per_char(ModelConfig(**config["model"]))
    best = min(e["loss_nats"] for e in evals)

    def at(minute: float) -> float | None:
        """Validation nats/char of the last validation at or before ``minute`` (+2 s)."""
        done = [e for e in evals if e["elapsed_s"] <= minute * 60 + 2]
        return done[-1]["loss_nats"] if done and minute <= minutes else None

    return {
        "corpus": corpus,
        "minutes": minutes,
        "extra_flags": extra,
        "wall_s": wall_s,
        "final_val_nats": evals[-1]["loss_nats"],
        "best_val_nats": best,
        "best_val_bpc": best / LN2,
        "steps": evals[-1]["step"],
        "mean_chars_per_s": cps,
        "mflop_per_char": fpc / 1e6,
        "gflop_per_s": cps * fpc / 1e9,
        "val_nats_at_min": {str(m): at(m) for m in MARKS_MIN},
        "curve": [
            {"step": e["step"], "elapsed_s": e["elapsed_s"], "val_nats": e["loss_nats"]}
            for e in evals
        ],
        "config": config,
    }


def print_curve(r: dict) -> None:
    print(f"\n{'step':>6} {'train s':>8} {'val nats/char':>14} {'val bpc':>8}")
    for e in r["curve"]:
        print(
            f"{e['step']:6d} {e['elapsed_s']:8.0f} {e['val_nats']:14.4f} {e['val_nats'] / LN2:8.4f}"
        )
    print(
        f"best validation: {r['best_val_nats']:.4f} nats/char ({r['best_val_bpc']:.4f} bpc) in "
        f"{r['minutes']:g} minutes of training, {r['wall_s']:.0f} s wall"
    )


def print_table(rows: list[dict]) -> None:
    marks = " ".join(f"{f'{m} min':>7}" for m in MARKS_MIN)
    print(f"\n{'corpus':24} {'model':22} {'params':>7} {'chars/s':>8} {'GFLOP/s':>8} {marks}")
    for r in rows:
        vals = " ".join(
            f"{v:7.3f}" if v is not None else f"{'-':>7}" for v in r["val_nats_at_min"].values()
        )
        print(
            f"{Path(r['corpus']).name[:24]:24} {r['name']:22} {r['parameters'] / 1e6:6.2f}M "
            f"{r['mean_chars_per_s']:8,.0f} {r['gflop_per_s']:8.1f} {vals}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
    default_corpus = str(default) if default.exists() else "shakespeare"
    p.add_argument("corpus", nargs="?", default=default_corpus)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--out", default="runs/quality")
    p.add_argument("--json", default="benchmarks/results/quality.json")
    p.add_argument("--table", action="store_true", help="every configuration of TABLE")
    p.add_argument("--corpora", default=f"{default_corpus},python", help="with --table")
    p.add_argument(
        "--eval-chars-per-corpus",
        default="",
        help="with --table: corpus=N validates on the first N characters of that corpus's "
        "validation split (e.g. python=300000), else the whole split",
    )
    p.add_argument("--only", default="", help="with --table: comma-separated TABLE names")
    a, extra = p.parse_known_args()
    out = Path(a.out)
    if not a.table:
        r = measure(a.corpus, a.minutes, out, ["--eval-chars", "0", *extra])
        print_curve(r)
        results = r
    else:
        limits = dict(kv.split("=") for kv in a.eval_chars_per_corpus.split(",") if kv)
        chosen = [n for n in TABLE if not a.only or n in a.only.split(",")]
        rows = []
        for corpus in a.corpora.split(","):
            for name in chosen:
                flags = ["--eval-chars", limits.get(corpus, "0"), *TABLE[name], *extra]
                print(f"== {corpus}: {name} ({shlex.join(flags)})", flush=True)
                r = measure(
                    corpus, a.minutes, out / f"{Path(corpus).stem}-{name.split()[0]}", flags
                )
                weights = checkpoint.load_model(out / f"{Path(corpus).stem}-{name.split()[0]}")[0]
                r |= {"name": name, "parameters": sum(t.numel() for t in weights.parameters())}
                print_curve(r)
                rows.append(r)
                print_table(rows)
        results = {
            "machine": f"{platform.processor() or platform.machine()}",
            "minutes": a.minutes,
            "rows": rows,
        }
        print_table(rows)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
