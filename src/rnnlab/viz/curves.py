"""Training curves: train and validation bpc against step and against training time, for one or
several runs, with the best baseline as a horizontal line. matplotlib without pyplot, so no
display and no global state."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .. import checkpoint
from ..files import save_png

BASELINES = checkpoint.BASELINES


def best_baseline(run_dir: Path) -> tuple[str, float] | None:
    """(name, bpc) of the best rung measured on the run's validation split, if known."""
    rungs = checkpoint.read_baselines(run_dir)
    if not rungs:
        return None
    name = min(rungs, key=rungs.get)
    return name, rungs[name]


def plot_curves(runs: list[Path], out: Path, width_px: int = 1400, height_px: int = 560) -> Path:
    """Write a PNG of the runs' learning curves.

    Args:
        runs: run directories (their metrics.jsonl).
        out: the PNG to write (atomically).
        width_px, height_px: image size at 100 dpi.

    Returns:
        ``out``.
    """
    fig = Figure(figsize=(width_px / 100, height_px / 100), dpi=100)
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2)
    for i, run in enumerate(runs):
        run = Path(run)
        events = checkpoint.read_metrics(run)
        color = f"C{i % 10}"
        for split, style in (("train", dict(alpha=0.35, lw=1)), ("val", dict(marker="o", lw=2))):
            rows = [e for e in events if e.get("split") == split]
            if not rows:
                continue
            label = f"{run.name} {split}"
            by_step.plot(
                [e["step"] for e in rows],
                [e["bpc"] for e in rows],
                color=color,
                label=label,
                **style,
            )
            by_time.plot(
                [e["elapsed_s"] / 60 for e in rows],
                [e["bpc"] for e in rows],
                color=color,
                label=label,
                **style,
            )
        vals = [e for e in events if e.get("split") == "val" and math.isfinite(e["bpc"])]
        if vals:  # where validation was best: the weights the run keeps
            b = min(vals, key=lambda e: e["bpc"])
            for ax, x in ((by_step, b["step"]), (by_time, b["elapsed_s"] / 60)):
                ax.plot(
                    [x],
                    [b["bpc"]],
                    marker="*",
                    ms=14,
                    color=color,
                    ls="none",
                    label=f"{run.name} best val {b['bpc']:.4f}" if ax is by_step else None,
                )
        baseline = best_baseline(run)
        if baseline:
            for ax in (by_step, by_time):
                ax.axhline(
                    baseline[1],
                    color=color,
                    ls="--",
                    lw=1,
                    label=f"{run.name}: best baseline ({baseline[0]})",
                )
    for ax, xlabel in ((by_step, "step"), (by_time, "training time (minutes)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("bits per character")
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=8)
    return save_png(fig, Path(out))


def plot_wins(wins: dict, out: Path) -> Path:
    """Two panels from ``evaluation.where_the_model_wins``: bits per character class, model
    against the n-gram; and the model's advantage on closing brackets/quotes by distance."""
    fig = Figure(figsize=(14, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    classes, distance = fig.subplots(1, 2)
    names = list(wins["by_class"])
    x = range(len(names))
    classes.bar(
        [i - 0.2 for i in x], [wins["by_class"][n]["model_bpc"] for n in names], 0.4, label="model"
    )
    classes.bar(
        [i + 0.2 for i in x],
        [wins["by_class"][n]["ngram_bpc"] for n in names],
        0.4,
        label=wins["ngram"],
    )
    classes.set_xticks(list(x), names, rotation=20)
    classes.set_ylabel("bits per character")
    classes.legend()
    bins = wins["closing_by_distance"]
    labels = [f"{b['from']}-{b['to'] - 1}" if b["to"] else f"{b['from']}+" for b in bins]
    distance.bar(labels, [b["advantage_bpc"] for b in bins])
    if not bins:
        distance.text(
            0.5,
            0.5,
            "no closing brackets or double quotes in this text",
            ha="center",
            va="center",
            transform=distance.transAxes,
        )
    distance.set_xlabel("distance back to the opening bracket or quote (characters)")
    distance.set_ylabel(f"{wins['ngram']} bits minus model bits")
    for ax in (classes, distance):
        ax.grid(alpha=0.3, axis="y")
    return save_png(fig, Path(out))
