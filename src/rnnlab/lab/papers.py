"""Paper presets for `rnnlab longrange --paper NAME`: each reruns one paper's long-range
experiment, scaled where a 2-core CPU forces it (each preset says how), and writes a "paper vs
measured" table (markdown and JSON) and the learning curves (PNG); `point4` is the lab's own
success-against-length sweep. `--quick` forms run in seconds, in the test suite. Imports config,
files and lab.longrange / lab.plots / lab.published.

The presets and the papers' numbers, with their sources, are data in lab/published.py.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ..files import write_json, write_text
from .longrange import RunResult, train_run
from .plots import plot_paper, plot_success
from .published import PAPERS, Paper
from .tasks import TASKS

# --- running a preset ---------------------------------------------------------------------------


def _job(args: tuple) -> RunResult:
    task_name, arm, length, config, seed, recipe, device, time_limit_s = args
    torch.set_num_threads(1)  # one run per core
    return train_run(
        TASKS[task_name],
        arm.cell,
        length,
        config,
        seed,
        True,
        None,
        recipe,
        arm.label,
        device,
        time_limit_s,
    )


def _jobs(
    paper: Paper,
    quick: bool,
    device: str,
    time_limit_s: float | None,
    seeds: int | None,
    steps: int | None,
) -> list[tuple]:
    jobs = []
    for ex in paper.experiments:
        lengths = ex.quick_lengths if quick else ex.lengths
        base = ex.quick_config if quick else ex.config
        if steps is not None:
            base = dataclasses.replace(base, steps=steps)
        for length in lengths:
            for arm in ex.arms:
                config = dataclasses.replace(
                    base,
                    init=arm.init,
                    forget_bias=arm.forget_bias,
                    learning_rate=arm.lr if arm.lr is not None else base.learning_rate,
                    clip_mode=arm.clip or base.clip_mode,
                )
                recipe = arm.recipe
                if ex.chrono_per_length and arm.init == "chrono":
                    t_max = max(3, length + length // 10)
                    recipe = dataclasses.replace(recipe, chrono_t_max=t_max)
                for seed in range(seeds or (paper.quick_seeds if quick else paper.seeds)):
                    jobs.append((ex.task, arm, length, config, seed, recipe, device, time_limit_s))
    return jobs


def _row(runs: list[RunResult]) -> dict[str, Any]:
    r0 = runs[0]
    solved = [r for r in runs if r.solved]
    seqs = sorted(r.steps_to_solve * r.batch_size for r in solved if r.steps_to_solve is not None)
    finals = [r.final.get("loss", math.nan) for r in runs]
    return {
        "task": r0.task,
        "label": r0.label,
        "cell": r0.cell,
        "length": r0.length,
        "seeds": len(runs),
        "success_rate": len(solved) / len(runs),
        "sequences_to_solve": seqs,
        "sequences_to_solve_median": seqs[len(seqs) // 2] if seqs else None,
        "final_loss_mean": sum(finals) / len(finals),
        "baseline": r0.baseline,
        "diverged_rate": sum(r.diverged for r in runs) / len(runs),
        "time_capped": sum(r.time_capped for r in runs),
        "budget_sequences": max(r.budget_steps * r.batch_size for r in runs),
        "steps_per_s": sum(r.steps for r in runs) / max(sum(r.wall_s for r in runs), 1e-9),
        "wall_s": sum(r.wall_s for r in runs),
    }


def run_paper(
    name: str,
    quick: bool = False,
    jobs: int = 1,
    on_run: Callable[[RunResult], None] | None = None,
    device: str = "cpu",
    time_limit_s: float | None = None,
    seeds: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Run a preset: every (experiment, length, arm, seed), each stopped at its first solved
    evaluation.

    Args:
        name: a key of PAPERS.
        quick: the seconds-long form (short lengths, tiny budget) the test suite runs.
        jobs: runs at a time, one process and one thread each (1: in this process).
        on_run: called with each finished run.
        device: where each network trains ("cpu", "cuda").
        time_limit_s: stop any run that has taken this long (recorded as time_capped).
        seeds: seeds per (network, length) instead of the preset's.
        steps: the step budget of every run instead of the preset's.

    Returns:
        A JSON-ready dict: the paper, what was scaled, the rows (one per task, arm, length), the
        paper-vs-measured pairs, the runs with their curves, and the wall time.
    """
    paper = PAPERS[name]
    todo = _jobs(paper, quick, device, time_limit_s, seeds, steps)
    t0 = time.perf_counter()
    runs: list[RunResult] = []
    if jobs <= 1:
        for job in todo:
            runs.append(_job(job))
            if on_run is not None:
                on_run(runs[-1])
    else:
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            for run in pool.map(_job, todo):
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    groups: dict[tuple, list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.task, r.label, r.length), []).append(r)
    rows = [_row(g) for g in groups.values()]
    pairs = pair_up(paper, rows)
    return {
        "paper": paper.name,
        "citation": paper.citation,
        "claim": paper.claim,
        "quick": quick,
        "scaled": list(paper.scaled),
        "seeds": seeds or (paper.quick_seeds if quick else paper.seeds),
        "steps_override": steps,
        "threads_per_run": 1,
        "jobs": jobs,
        "device": device,
        "time_limit_s": time_limit_s,
        "experiments": [
            {
                "task": ex.task,
                "lengths": list(ex.quick_lengths if quick else ex.lengths),
                "config": dataclasses.asdict(
                    dataclasses.replace(
                        ex.quick_config if quick else ex.config,
                        **({} if steps is None else {"steps": steps}),
                    )
                ),
                "arms": [dataclasses.asdict(a) for a in ex.arms],
                "criterion": TASKS[ex.task].criterion,
            }
            for ex in paper.experiments
        ],
        "rows": rows,
        "pairs": pairs,
        "runs": [dataclasses.asdict(r) | {"diverged": r.diverged} for r in runs],
        "wall_s": time.perf_counter() - t0,
    }


def pair_up(paper: Paper, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each published number beside the measured row (task, network, T) it faces."""
    by_key = {(r["task"], r["label"], r["length"]): r for r in rows}
    return [
        {**dataclasses.asdict(pub), "measured": by_key.get((pub.task, pub.label, pub.length))}
        for pub in paper.published
    ]


def _measured_text(row: dict[str, Any] | None, quantity: str) -> str:
    if row is None:
        return "not run"
    ok = f"{row['success_rate'] * row['seeds']:.0f}/{row['seeds']} solved"
    if row.get("time_capped"):
        ok += f" ({row['time_capped']} stopped early by the time limit)"
    if quantity == "sequences to solve":
        seqs = row["sequences_to_solve"]
        med = f"median {seqs[len(seqs) // 2]:,}, mean {sum(seqs) / len(seqs):,.0f}" if seqs else "-"
        return f"{ok} within {row['budget_sequences']:,} sequences; {med}"
    base = f"final loss {row['final_loss_mean']:.4g} (baseline {row['baseline']:.4g})"
    base += f"; {row['diverged_rate'] * row['seeds']:.0f}/{row['seeds']} diverged"
    return f"{ok}; {base}"


def paper_markdown(result: dict[str, Any]) -> str:
    """The "paper vs measured" table and the full measured table, as markdown."""
    lines = [
        f"# {result['paper']}{' (quick)' if result['quick'] else ''}: paper vs measured",
        "",
        f"{result['citation']}. Claim: {result['claim']}.",
        "",
        "| task | network | T | quantity | paper | source (confidence) | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["pairs"]:
        lines.append(
            f"| {p['task']} | {p['label']} | {p['length']} | {p['quantity']} | {p['value']} |"
            f" {p['source']} ({p['confidence']}) | {_measured_text(p['measured'], p['quantity'])} |"
        )
    lines += [
        "",
        "All measured runs (each stopped at its first solved evaluation):",
        "",
        "| task | network | T | seeds | solved | sequences to solve (budget) | final loss |"
        " baseline | diverged | steps/s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        seqs = ", ".join(f"{s:,}" for s in r["sequences_to_solve"]) or "-"
        seqs += f" ({r['budget_sequences']:,})"
        lines.append(
            f"| {r['task']} | {r['label']} | {r['length']} | {r['seeds']} |"
            f" {r['success_rate']:.2f} | {seqs} | {r['final_loss_mean']:.4g} |"
            f" {r['baseline']:.4g} | {r['diverged_rate']:.2f} | {r['steps_per_s']:.1f} |"
            f" {r['wall_s']:.0f} |"
        )
    if result.get("steps_override"):
        lines += ["", f"Run with `--steps {result['steps_override']}`: every budget above is that."]
    lines += ["", "Scaled down or changed from the paper:", ""]
    lines += [f"- {s}" for s in result["scaled"]]
    capped = sum(r["time_capped"] for r in result["rows"])
    if capped:
        lines += [
            "",
            f"{capped} run(s) stopped by the time limit of {result['time_limit_s']:.0f} s "
            "before their step budget: unsolved there means unsolved in that time, no more.",
        ]
    lines += [
        "",
        f"Wall time {result['wall_s']:.0f} s, {result['jobs']} run(s) at a time, one thread "
        f"each, on {result['device']}. The machine is named beside this table's command in "
        "docs/lab.md.",
        "",
    ]
    return "\n".join(lines)


def write_paper(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write paper.json, paper.md and paper.png (and success.png, success rate against T, when
    an experiment has three lengths or more) into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "paper.json", "md": out / "paper.md", "png": out / "paper.png"}
    write_json(paths["json"], result)
    write_text(paths["md"], paper_markdown(result))
    plot_paper(result, paths["png"])
    if any(len(ex["lengths"]) >= 3 for ex in result["experiments"]):
        paths["success_png"] = plot_success(result, out / "success.png")
    return paths
