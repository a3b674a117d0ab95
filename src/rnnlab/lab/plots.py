"""The lab's pictures: gradient norm against lag (gradflow) and success against length
(longrange), written as PNGs with matplotlib's Agg canvas (no pyplot, no display) and renamed
into place. Imports files (for save_png) only."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import save_png


def plot_longrange(result: dict[str, Any], out: Path) -> Path:
    """Three panels from ``longrange.sweep``: test loss against step for every run (baseline
    dashed), final loss / baseline against length, and success rate against length.

    Args:
        result: what ``sweep`` returned.
        out: the PNG to write.

    Returns:
        ``out``.
    """
    fig = Figure(figsize=(15, 4.6), dpi=90)
    FigureCanvasAgg(fig)
    curves, ratio, success = fig.subplots(1, 3)
    cells = list(dict.fromkeys(r["cell"] for r in result["runs"]))
    lengths = sorted({r["length"] for r in result["runs"]})
    color = {c: f"C{i % 10}" for i, c in enumerate(cells)}
    styles = ["-", "--", ":", "-."]
    first_seed = min(r["seed"] for r in result["runs"])
    for r in result["runs"]:
        ls = styles[lengths.index(r["length"]) % len(styles)]
        label = f"{r['cell']} T={r['length']}" if r["seed"] == first_seed else None
        curves.plot(
            [p["step"] for p in r["curve"]],
            [p["loss"] for p in r["curve"]],
            color=color[r["cell"]],
            ls=ls,
            lw=1.2,
            label=label,
        )
    for length in lengths:
        base = next(r["baseline"] for r in result["runs"] if r["length"] == length)
        curves.axhline(base, color="gray", lw=0.8, ls=styles[lengths.index(length) % 4])
    curves.set_yscale("log")
    curves.set_xlabel("training step")
    curves.set_ylabel("test loss (gray: memoryless baseline)")
    curves.set_title(f"{result['task']}: learning curves")
    curves.legend(fontsize=7)
    for cell in cells:
        rows = [row for row in result["table"] if row["cell"] == cell]
        ratio.plot(
            [row["length"] for row in rows],
            [row["final_loss_mean"] / row["baseline"] for row in rows],
            marker="o",
            color=color[cell],
            label=cell,
        )
        success.plot(
            [row["length"] for row in rows],
            [row["success_rate"] for row in rows],
            marker="o",
            color=color[cell],
            label=cell,
        )
    ratio.axhline(1.0, color="gray", ls="--", lw=1, label="baseline")
    ratio.set_yscale("log")
    ratio.set_ylabel("final test loss / baseline")
    success.set_ylim(-0.05, 1.05)
    success.set_ylabel(f"fraction solved ({result['seeds']} seed(s))")
    success.set_title(f"solved: {result['criterion']}", fontsize=9)
    for ax in (ratio, success):
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        ax.set_xlabel("sequence length T")
        ax.legend(fontsize=8)
    for ax in (curves, ratio, success):
        ax.grid(alpha=0.3)
    return save_png(fig, out)


def plot_gradflow(curves: list[dict[str, Any]], out: Path, quantity: str = "loss_grad") -> Path:
    """Gradient norm against lag (or depth) on a log scale, one line per configuration.

    Args:
        curves: ``gradflow.probe`` results; each has ``label``, ``lags`` and the two norms
            ``loss_grad`` (||dL_T/dh_t||) and ``jacobian`` (||dh_T/dh_t||).
        out: the PNG to write.
        quantity: which norm the left panel shows; the right panel shows the other.

    Returns:
        ``out``.
    """
    fig = Figure(figsize=(13, 5), dpi=90)
    FigureCanvasAgg(fig)
    panels = fig.subplots(1, 2)
    other = "jacobian" if quantity == "loss_grad" else "loss_grad"
    titles = {
        "loss_grad": "||dL_T / dh_t||, loss at the last step only",
        "jacobian": "||dh_T / dh_t|| (spectral norm, batch mean)",
    }
    for ax, key in zip(panels, (quantity, other), strict=True):
        for i, c in enumerate(curves):
            ys = c[key]
            xs = [x for x, y in zip(c["lags"], ys, strict=True) if y > 0 and math.isfinite(y)]
            ys = [y for y in ys if y > 0 and math.isfinite(y)]
            rate = c["rate"][key]
            label = f"{c['label']} (x{rate:.3g}/step)" if math.isfinite(rate) else c["label"]
            ax.plot(xs, ys, color=f"C{i % 10}", ls="--" if c["net"] == "mlp" else "-", label=label)
        if any(c["net"] == "mlp" for c in curves):
            ax.axvspan(3, 5, color="gray", alpha=0.15, label="3-5 layers")
        ax.set_yscale("log")
        ax.set_xlabel("lag T - t (RNN steps) or layers back from the output (MLP, dashed)")
        ax.set_title(titles[key], fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return save_png(fig, out)


def _machine_line(result: dict[str, Any]) -> str:
    where = result.get("device", "cpu")
    return (
        f"{result['seeds']} seed(s); {result.get('jobs', 1)} run(s) at a time, one CPU thread each,"
        f" networks on {where}; the machine is named beside the command in docs/lab.md"
    )


def plot_paper(result: dict[str, Any], out: Path) -> Path:
    """One panel per experiment of a paper preset: test loss against training sequences seen,
    one line per (network, T, seed), the memoryless baseline dashed.

    Args:
        result: what ``papers.run_paper`` returned.
        out: the PNG to write.

    Returns:
        ``out``.
    """
    tasks = list(dict.fromkeys(r["task"] for r in result["runs"]))
    fig = Figure(figsize=(6.2 * len(tasks), 4.8), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for ax, task in zip(axes, tasks, strict=True):
        runs = [r for r in result["runs"] if r["task"] == task]
        labels = list(dict.fromkeys(r["label"] for r in runs))
        lengths = sorted({r["length"] for r in runs})
        seen = set()
        for r in runs:
            key = (r["label"], r["length"])
            ls = styles[lengths.index(r["length"]) % len(styles)]
            color = f"C{labels.index(r['label']) % 10}"
            xs = [p["step"] * r["batch_size"] for p in r["curve"]]
            ys = [p["loss"] if math.isfinite(p["loss"]) else float("nan") for p in r["curve"]]
            label = f"{r['label']} T={r['length']}" if key not in seen else None
            seen.add(key)
            ax.plot(xs, ys, color=color, ls=ls, lw=1.1, alpha=0.85, label=label)
        for length in lengths:
            base = next(r["baseline"] for r in runs if r["length"] == length)
            ax.axhline(base, color="gray", lw=0.8, ls=styles[lengths.index(length) % 4])
        ax.set_yscale("log")
        ax.set_xlabel("training sequences seen")
        ax.set_ylabel("test loss (gray: memoryless baseline)")
        ax.set_title(f"{result['paper']}: {task}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(_machine_line(result), fontsize=8)
    return save_png(fig, out)


def plot_success(result: dict[str, Any], out: Path) -> Path:
    """Success rate against T on a log axis, one line per network, one panel per task: the
    longest dependency each learns within the preset's budget.

    Args:
        result: what ``papers.run_paper`` returned.
        out: the PNG to write.

    Returns:
        ``out``.
    """
    tasks = list(dict.fromkeys(r["task"] for r in result["rows"]))
    fig = Figure(figsize=(6.2 * len(tasks), 4.6), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), squeeze=False)[0]
    budget = {
        ex["task"]: ex["config"]["steps"] * ex["config"]["batch_size"]
        for ex in result["experiments"]
    }
    for ax, task in zip(axes, tasks, strict=True):
        rows = [r for r in result["rows"] if r["task"] == task]
        labels = list(dict.fromkeys(r["label"] for r in rows))
        lengths = sorted({r["length"] for r in rows})
        for i, label in enumerate(labels):
            mine = sorted((r["length"], r["success_rate"]) for r in rows if r["label"] == label)
            jitter = 1 + 0.025 * (i - len(labels) / 2)  # keep overlapping markers apart
            ax.plot(
                [t * jitter for t, _ in mine],
                [s for _, s in mine],
                marker="o",
                color=f"C{i % 10}",
                label=label,
            )
        ax.set_xscale("log")
        ax.set_xticks(lengths, [str(t) for t in lengths])
        ax.minorticks_off()
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("sequence length T (log)")
        ax.set_ylabel(f"fraction of {result['seeds']} seeds solved")
        ax.set_title(f"{task}: budget {budget[task]:,} sequences", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(_machine_line(result), fontsize=8)
    return save_png(fig, out)
