"""The scaling study behind the training plan (issue 21): corpus sizes x budgets x recipes, each
cell the best validation of one `rnnlab train --minutes M` run, measured on the whole
validation split (`rnnlab eval RUN --quick --json`, the best weights).

    python benchmarks/scaling.py [--corpora A,B,...] [--budgets 2,5,10,20,40]
        [--recipes plan,fixed] [--recipe NAME="--flag value ..."] [--json PATH] [--plot PNG]

Recipes: ``plan`` is `rnnlab train` with no flags but --minutes (the plan chooses); ``fixed``
is the defaults before the plan, every choice given as a flag (minGRU 2x384, FF x4, dropout 0,
lr 4e-3, batch 64x64, AdamW, no token shift, one member), so the plan has nothing to choose.
--recipe adds any other row (an ablation: its flags are added to the plan's run, e.g. --recipe
seq128="--seq-len 128").

Corpora: a path, a named corpus, or PATH:BYTES for the first BYTES of a file (written to a
temporary file), e.g. ../shared/data/tinyshakespeare.txt:300000. Cells already in the JSON are
kept (the study resumes where it stopped); --redo drops them. Runs must be alone on the
machine: a second process on 2 cores cuts training speed several-fold.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from rnnlab import checkpoint, cli

LN2 = 0.6931471805599453
# every planned choice given (plan.PLANNED): the optimizer, the token shift, the members and
# the embedding dropout too, which the plan gained after this recipe was first written
FIXED = (
    "--cell mingru --layers 2 --hidden 384 --ff-mult 4 --embedding 64 --dropout 0 --lr 4e-3 "
    "--batch-size 64 --seq-len 64 --optimizer adamw --no-token-shift --members 1 "
    "--embedding-dropout 0"
)
RECIPES = {"plan": "", "fixed": FIXED}
# validation during training: the whole split when it is small, else its first 150,000
# characters (the ten-minute table's rule); the final figure is always the whole split
EVAL_CHARS = 150_000


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def materialize(corpus: str, tmp: Path) -> str:
    """PATH:BYTES -> a file holding the first BYTES of PATH (cut at a character boundary)."""
    path, _, size = corpus.rpartition(":")
    if not path or not size.isdigit():
        return corpus
    data = Path(path).expanduser().read_bytes()[: int(size)]
    out = tmp / f"{Path(path).stem}-{int(size) // 1000}k.txt"
    out.write_text(data.decode("utf-8", errors="ignore"))
    return str(out)


def whole_split_nats(run: Path) -> float:
    """The best weights on the whole validation split, exact, in a separate process (its own
    memory, nothing left behind)."""
    cmd = [sys.executable, "-m", "rnnlab", "eval", str(run), "--quick", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["loss_nats"]


def measure(corpus: str, minutes: float, flags: list[str], out: Path) -> dict:
    if out.exists():
        shutil.rmtree(out)
    args = ["train", corpus, "--minutes", str(minutes), "--out", str(out), "--quiet", "--json"]
    args += ["--final-sample", "0", "--sample-chars", "0", *flags]
    t0 = time.perf_counter()
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = cli.main(args)
    if code != 0:
        raise SystemExit(f"rnnlab {shlex.join(args)} exited {code}")
    wall_s = time.perf_counter() - t0
    metrics = checkpoint.read_metrics(out)
    vals = [e for e in metrics if e["split"] == "val"]
    train = [e for e in metrics if e["split"] == "train"]
    best = min(vals, key=lambda e: e["bpc"])
    config = json.loads((out / "config.json").read_text())
    m = config["model"]
    return {
        "minutes": minutes,
        "flags": flags,
        "model": f"{m['cell']} {m['num_layers']}x{m['hidden_size']} ff{m['ff_mult']}"
        + (f" x{m['members']}" if m.get("members", 1) > 1 else ""),
        "dropout": m["dropout"],
        "learning_rate": config["train"]["learning_rate"],
        "plan": config.get("plan"),
        "steps": vals[-1]["step"],
        "chars_per_s": sum(e["chars_per_s"] for e in train[1:]) / max(1, len(train) - 1),
        "best_step": best["step"],
        "best_elapsed_s": best["elapsed_s"],
        "last_train_bpc": best.get("train_bpc"),
        "best_val_nats_during": best["loss_nats"],
        "best_val_nats": whole_split_nats(out),
        "wall_s": wall_s,
        "curve": [
            {"step": e["step"], "elapsed_s": e["elapsed_s"], "val_nats": e["loss_nats"]}
            | ({"train_nats": e["train_bpc"] * LN2} if "train_bpc" in e else {})
            for e in vals
        ],
    }


def print_table(results: dict) -> None:
    budgets = sorted({c["minutes"] for c in results["cells"]})
    head = " ".join(f"{f'{b:g} min':>16}" for b in budgets)
    print(f"\n{'corpus':28} {'recipe':10} {head}")
    keys = sorted({(c["corpus"], c["recipe"]) for c in results["cells"]})
    for corpus, recipe in keys:
        cells = {
            c["minutes"]: c
            for c in results["cells"]
            if (c["corpus"], c["recipe"]) == (corpus, recipe)
        }
        row = " ".join(
            f"{cells[b]['best_val_nats']:7.4f} {cells[b]['model'].split()[1]:>8}"
            if b in cells
            else f"{'-':>16}"
            for b in budgets
        )
        print(f"{Path(corpus).name[:28]:28} {recipe:10} {row}")
    print("(best whole-split validation nats/char, and the model each run trained)")


def plot(results: dict, png: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    # the study's two rows per corpus, one colour per corpus (however its path was written); the
    # ablations and the earlier rules' cells are in the JSON and the tables
    cells = [c for c in results["cells"] if c["recipe"] in RECIPES]
    names = sorted({Path(c["corpus"]).name for c in cells})
    for name in names:
        for recipe in RECIPES:
            row = sorted(
                (c for c in cells if (Path(c["corpus"]).name, c["recipe"]) == (name, recipe)),
                key=lambda c: c["minutes"],
            )
            if not row:
                continue
            ax.plot(
                [c["minutes"] for c in row],
                [c["best_val_nats"] for c in row],
                marker="o" if recipe == "plan" else "s",
                color=f"C{names.index(name)}",
                ls="-" if recipe == "plan" else "--",
                label=f"{name}: {recipe}",
            )
    ax.set_xscale("log")
    ax.set_xticks(sorted({c["minutes"] for c in results["cells"]}))
    ax.get_xaxis().set_major_formatter("{x:g}")
    ax.get_xaxis().set_minor_formatter("")
    ax.set_xlabel("training budget (minutes, --minutes)")
    ax.set_ylabel("best validation nats/char (whole split)")
    machines = " and ".join(sorted({c.get("cpu", results["machine"]) for c in cells}))
    ax.set_title(f"rnnlab: the plan against the fixed defaults ({machines})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    shakespeare = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare.txt"
    p.add_argument(
        "--corpora", default=f"{shakespeare}:300000,{shakespeare},python", help="comma-separated"
    )
    p.add_argument("--budgets", default="2,5,10,20,40", help="minutes, comma-separated")
    p.add_argument("--recipes", default="plan,fixed", help="comma-separated names")
    p.add_argument("--recipe", action="append", default=[], help='NAME="FLAGS": another row')
    p.add_argument("--json", default="benchmarks/results/scaling.json")
    p.add_argument("--plot", default="docs/scaling.png")
    p.add_argument("--out", default="runs/scaling", help="where the runs go (replaced)")
    p.add_argument("--redo", action="store_true", help="measure cells already in the JSON")
    p.add_argument(
        "--eval-every-s",
        default="120",
        help="seconds of training between validations (not counted in the budget, but wall time)",
    )
    a = p.parse_args()
    recipes = dict(RECIPES)
    for item in a.recipe:
        name, _, flags = item.partition("=")
        recipes[name] = flags
    path = Path(a.json)
    results = json.loads(path.read_text()) if path.exists() and not a.redo else {"cells": []}
    # the machine of the first cells; each cell names its own CPU (machines change between sessions)
    results.setdefault("machine", cpu_name())
    results["command"] = shlex.join(sys.argv)
    done = {(c["corpus"], c["recipe"], c["minutes"]) for c in results["cells"]}
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in a.corpora.split(","):
            text = materialize(corpus, Path(tmp))
            for minutes in (float(b) for b in a.budgets.split(",")):
                for name in a.recipes.split(","):
                    if (corpus, name, minutes) in done:
                        continue
                    flags = shlex.split(recipes[name]) + ["--eval-chars", str(EVAL_CHARS)]
                    flags += ["--eval-every-s", a.eval_every_s]
                    print(f"== {corpus} {minutes:g} min {name}: {shlex.join(flags)}", flush=True)
                    run = Path(a.out) / f"{Path(text).stem}-{minutes:g}-{name}"
                    cell = measure(text, minutes, flags, run)
                    results["cells"].append(
                        {"corpus": corpus, "recipe": name, "cpu": cpu_name()} | cell
                    )
                    print(
                        f"   {cell['model']} dropout {cell['dropout']:g}: best "
                        f"{cell['best_val_nats']:.4f} nats/char at step {cell['best_step']} of "
                        f"{cell['steps']}, {cell['chars_per_s']:,.0f} chars/s",
                        flush=True,
                    )
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(results, indent=2))
    print_table(results)
    if a.plot:
        plot(results, Path(a.plot))


if __name__ == "__main__":
    main()
