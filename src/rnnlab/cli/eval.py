"""rnnlab eval: exact bits per character on the validation split or a file, beside the ladder
of baselines, and where the model beats the best n-gram."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bpc import LN2
from ..evaluation import EvalReport, evaluate
from ..options import EvalOptions
from ..viz import plot_wins
from .flags import add_flags, check_output_file, options

SUMMARY = "bits per character on the validation split or a file"
EXAMPLE = "example: rnnlab eval runs/mine held_out.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument(
        "file", nargs="?", help="text file to score (default: the validation split)"
    )
    parser.add_argument("--plot", metavar="PNG", help="also draw where the model beats the n-gram")
    add_flags(parser, EvalOptions)


def run(args: argparse.Namespace) -> int:
    opts = options(args, EvalOptions)
    plot = check_output_file(args.plot, "--plot") if args.plot else None
    report = evaluate(
        args.run,
        Path(args.file) if args.file else None,
        weights=opts.weights,
        device=opts.device,
        chunk_len=opts.chunk_len,
        quick=opts.quick,
        unknown=opts.unknown,
        exact=opts.exact,
    )
    if plot and report.where_the_model_wins:
        plot_wins(report.where_the_model_wins, plot)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print_report(report, Path(args.run).name)
    return 0


def print_report(report: EvalReport, run_name: str) -> None:
    """The ladder, the model beside it, and (unless --quick) where the model wins."""
    how = "exact pass" if report.exact else "64 warmed-up segments side by side; --exact: one pass"
    print(
        f"{report.text}: {report.num_chars:,} characters, model scored in "
        f"{report.seconds:.1f} s ({how})"
    )
    print(f"{'':24s} {'bpc':>8s} {'nats/char':>10s}")
    for label, value in [*report.baselines.items(), (f"model ({run_name})", report.bpc)]:
        print(f"{label:24s} {value:8.4f} {value * LN2:10.4f}")
    margin = report.below_best_baseline_bpc
    where = "below" if margin >= 0 else "above"
    print(f"the model is {abs(margin):.4f} bpc {where} the best baseline ({report.best_baseline})")
    wins = report.where_the_model_wins
    if not wins:
        return
    print(f"\n{'class':16s} {'count':>9s} {'model bpc':>10s} {wins['ngram'] + ' bpc':>16s}")
    for name, row in wins["by_class"].items():
        print(f"{name:16s} {row['count']:9,d} {row['model_bpc']:10.3f} {row['ngram_bpc']:16.3f}")
    print(f"\n{'closing bracket/quote, distance':32s} {'count':>7s} {'model':>7s} {'n-gram':>7s}")
    for b in wins["closing_by_distance"]:
        span = f"{b['from']}-{b['to'] - 1}" if b["to"] else f"{b['from']}+"
        print(f"{span:32s} {b['count']:7,d} {b['model_bpc']:7.3f} {b['ngram_bpc']:7.3f}")
