"""rnnlab longrange: train cells on a synthetic long-range task; success against length."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

from .. import lab
from ..config import LongRangeConfig
from ..errors import UsageError
from ..files import write_json
from ..model import resolve_device
from ..options import SweepOptions
from .flags import add_flags, check_output_dir, check_output_file, err, options

SUMMARY = "train cells on a synthetic long-range task; success against sequence length"
EXAMPLE = "example: rnnlab longrange adding --cells rnn,lstm,gru --lengths 50,100,200 --steps 1500"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", choices=tuple(lab.TASKS), help="the synthetic task")
    parser.add_argument(
        "--paper",
        choices=tuple(lab.PAPERS),
        default=None,
        help="rerun a paper's experiment (its own tasks, cells and budget) and write a table "
        "paper vs measured (paper.md, paper.json) and curves (paper.png) into --out",
    )
    parser.add_argument("--quick", action="store_true", help="with --paper: the short form")
    parser.add_argument(
        "--jobs", type=int, default=1, help="with --paper: runs at a time, one core each"
    )
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where the nets train"
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="with --paper: stop any run after S seconds (the table says which were stopped)",
    )
    add_flags(parser, SweepOptions)
    parser.add_argument(
        "--out", help="folder for longrange.json (default: runs/longrange-TASK-TIME)"
    )
    parser.add_argument(
        "--plot", metavar="PNG", help="where to draw the plot (default: longrange.png in --out)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    add_flags(parser, LongRangeConfig, "training and presets")


def run(args: argparse.Namespace) -> int:
    if args.paper:
        return run_paper(args)
    if args.task is None:
        raise UsageError("name a task (adding, copy, ...) or a preset with --paper NAME")
    sweep = options(args, SweepOptions)
    config = options(args, LongRangeConfig)
    cells, lengths = sweep.cell_list(), sweep.length_list()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = check_output_dir(Path(args.out or f"runs/longrange-{args.task}-{stamp}"), "--out")
    plot = check_output_file(args.plot, "--plot") if args.plot else None
    out.mkdir(parents=True, exist_ok=True)

    def on_eval(run: lab.RunResult, m: dict[str, float]) -> None:
        if not args.quiet:
            extra = f" accuracy {m['accuracy']:.3f}" if "accuracy" in m else ""
            err(
                f"{run.task} {run.cell:8s} T={run.length:<4d} seed {run.seed} step {run.steps:5d}"
                f" | test loss {m['loss']:.4f} (baseline {run.baseline:.4f}){extra}"
                f" | {run.wall_s:6.1f} s"
            )

    done: list[dict] = []

    def on_run(run: lab.RunResult) -> None:  # what is finished survives a kill
        done.append(dataclasses.asdict(run))
        write_json(out / "longrange.json", {"partial": True, "runs": done})

    result = lab.sweep(
        args.task,
        cells,
        lengths,
        config,
        sweep.seeds,
        sweep.until_solved,
        on_eval=on_eval,
        on_run=on_run,
        first_seed=sweep.first_seed,
        device=str(resolve_device(args.device)),
    )
    write_json(out / "longrange.json", result)
    png = lab.plot_longrange(result, plot or out / "longrange.png")
    if args.json:
        print(json.dumps(result | {"png": str(png)}))
        return 0
    print_tables(result, args.task, cells, lengths, lab.TASKS[args.task].metric)
    print(f"\nwall time {result['wall_s']:.0f} s; {out / 'longrange.json'}; {png}")
    return 0


def run_paper(args: argparse.Namespace) -> int:
    """`rnnlab longrange --paper NAME [--quick] [--jobs N] [--out DIR]`: lab/papers.py."""
    if args.task is not None:
        raise UsageError("--paper runs its own tasks: drop the task name, or drop --paper")
    if not 1 <= args.jobs <= 256:
        raise UsageError(f"--jobs must be between 1 and 256, got {args.jobs}")
    if args.time_limit is not None and not 0 < args.time_limit < 1e9:
        raise UsageError(
            f"--time-limit must be more than 0 and less than 1e9 seconds, got {args.time_limit}"
        )
    form = "-quick" if args.quick else ""
    out = check_output_dir(Path(args.out or f"runs/paper-{args.paper}{form}"), "--out")

    def on_run(r: lab.RunResult) -> None:
        if not args.quiet:
            at = f"solved at step {r.steps_to_solve}" if r.solved else f"not solved in {r.steps}"
            err(
                f"{args.paper} {r.task} {r.label} T={r.length} seed {r.seed}: {at},"
                f" test loss {r.final.get('loss', math.nan):.4g} | {r.wall_s:.0f} s"
            )

    device = str(resolve_device(args.device))
    seeds = getattr(args, "seeds", None)  # not given: the preset's own count
    steps = getattr(args, "steps", None)
    result = lab.run_paper(
        args.paper, args.quick, args.jobs, on_run, device, args.time_limit, seeds, steps
    )
    paths = lab.write_paper(result, out)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "runs"} | {"out": str(out)}))
        return 0
    print(lab.paper_markdown(result))
    print(f"{paths['md']}; {paths['json']}; {paths['png']}")
    return 0


def print_tables(result: dict, task: str, cells: list, lengths: list, metric: str) -> None:
    print(f"{task}: solved = {result['criterion']}; {result['threads']} thread(s)")
    print(
        f"{'cell':8s} {'T':>5s} {'seed':>4s} {'steps':>6s} {'test loss':>10s} {'baseline':>9s}"
        f" {metric:>9s} {'solved':>6s} {'at step':>7s} {'wall s':>7s}"
    )
    for r in result["runs"]:
        print(
            f"{r['cell']:8s} {r['length']:5d} {r['seed']:4d} {r['steps']:6d}"
            f" {r['final']['loss']:10.4f} {r['baseline']:9.4f} {r['final'][metric]:9.4f}"
            f" {'yes' if r['solved'] else 'no':>6s} {r['steps_to_solve'] or '-':>7}"
            f" {r['wall_s']:7.1f}"
        )
    print("\nfraction solved (rows: cell, columns: T)")
    print(f"{'':8s}" + "".join(f"{t:>7d}" for t in lengths))
    for cell in cells:
        rates = {
            row["length"]: row["success_rate"] for row in result["table"] if row["cell"] == cell
        }
        print(f"{cell:8s}" + "".join(f"{rates[t]:7.2f}" for t in lengths))
