"""Ablations behind the training plan (issue 21, item 3): recipes of flags trained for the same
number of steps, one row each, each the best weights on the whole validation split.

    python benchmarks/ablation.py [CORPUS] --steps 2000 \\
        --recipe dropout-0.3="--cell lstm --dropout 0.3" \\
        --recipe embedding-0.1="--cell lstm --dropout 0.3 --embedding-dropout 0.1" \\
        [--out runs/ablation] [--json benchmarks/results/ablation.json]

Budgeted by steps, not minutes, so a row's quality does not depend on the machine's load (its
speed does: chars/s is reported, but it is not what the table compares). A run already finished
under OUT/NAME with the same flags and steps is kept, not trained again: the study resumes where
it stopped. Prints the table and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

LN2 = 0.6931471805599453
RECIPE_FILE = "ablation_recipe.json"  # the flags and steps a run was trained with
EVAL_FILE = "ablation_eval.json"  # `rnnlab eval RUN --quick --json` of its best weights


def rnnlab(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True, check=True
    )
    return done.stdout


def finished(run: Path, recipe: dict) -> bool:
    """The run holds a checkpoint of ``recipe`` at its last step."""
    try:
        if json.loads((run / RECIPE_FILE).read_text()) != recipe:
            return False
        last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return False
    return any(e.get("split") == "val" and e["step"] == recipe["steps"] for e in last)


def measure(corpus: str, steps: int, flags: str, run: Path) -> dict:
    corpus = str(Path(corpus).resolve())
    recipe = {"corpus": corpus, "steps": steps, "flags": flags}
    if not finished(run, recipe):
        args = ["train", corpus, "--max-steps", str(steps), "--out", str(run), "--quiet"]
        if run.exists():  # a run stopped before its last step continues exactly
            args = ["train", "--resume", str(run), "--max-steps", str(steps), "--quiet"]
        else:
            args += ["--eval-every-s", "120", "--final-sample", "0", *shlex.split(flags)]
        rnnlab(*args)
        (run / RECIPE_FILE).write_text(json.dumps(recipe))
        (run / EVAL_FILE).unlink(missing_ok=True)
    if not (run / EVAL_FILE).exists():
        (run / EVAL_FILE).write_text(rnnlab("eval", str(run), "--quick", "--json"))
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [e for e in metrics if e["split"] == "val"]
    train = [e for e in metrics if e["split"] == "train" and "chars_per_s" in e]
    best = min(vals, key=lambda e: e["bpc"])
    config = json.loads((run / "config.json").read_text())
    return {
        "flags": flags,
        "steps": steps,
        "model": config["model"],
        "optimizer": config["train"]["optimizer"],
        "learning_rate": config["train"]["learning_rate"],
        "best_step": best["step"],
        "best_val_nats": json.loads((run / EVAL_FILE).read_text())["loss_nats"],
        "last_val_nats": vals[-1]["loss_nats"],
        "last_train_nats": vals[-1]["train_bpc"] * LN2 if "train_bpc" in vals[-1] else None,
        "chars_per_s": sum(e["chars_per_s"] for e in train) / max(1, len(train)),
    }


def print_table(rows: dict) -> None:
    print(f"{'recipe':<22} {'best nats/char':>14} {'at step':>8} {'last val':>9} {'train':>7}")
    for name, r in rows.items():
        train = f"{r['last_train_nats']:.4f}" if r["last_train_nats"] is not None else "-"
        print(
            f"{name:<22} {r['best_val_nats']:>14.4f} {r['best_step']:>8,} "
            f"{r['last_val_nats']:>9.4f} {train:>7}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    shakespeare = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
    p.add_argument("corpus", nargs="?", default=str(shakespeare))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--recipe", action="append", required=True, help='NAME="FLAGS": one row')
    p.add_argument("--out", default="runs/ablation", help="one run directory per recipe")
    p.add_argument("--json", default="benchmarks/results/ablation.json")
    a = p.parse_args()
    rows = {}
    for item in a.recipe:
        name, _, flags = item.partition("=")
        print(f"== {name}: {flags} ({a.steps:,} steps)", flush=True)
        rows[name] = measure(a.corpus, a.steps, flags, Path(a.out) / name)
    path = Path(a.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"corpus": a.corpus, "rows": rows}, indent=2))
    print_table(rows)


if __name__ == "__main__":
    main()
