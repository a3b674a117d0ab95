"""rnnlab eval: exact bits per character on the validation split or a file, beside the ladder
of baselines, and where the model beats the best n-gram."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..adaptive import AdaptConfig
from ..bpc import LN2
from ..dynamic import DynamicConfig
from ..errors import UsageError
from ..evaluation import EvalReport, evaluate, evaluate_adaptive, evaluate_dynamic
from ..options import EvalOptions
from ..rzmodel import DEFAULT_SEGMENTS, SEGMENT_CHARS
from ..viz import plot_wins
from .contexts import add_context_limit
from .flags import add_flags, check_output_file, options, progress_bar

SUMMARY = "bits per character on the validation split or a file"
EXAMPLE = "example: rnnlab eval runs/mine held_out.txt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument(
        "file", nargs="?", help="text file to score (default: the validation split)"
    )
    parser.add_argument("--plot", metavar="PNG", help="also draw where the model beats the n-gram")
    add_flags(parser, EvalOptions)
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic evaluation: a gradient step after each segment (Krause et al. 2018); "
        "prints static and dynamic bpc",
    )
    parser.add_argument(
        "--dynamic-tune",
        type=int,
        default=0,
        metavar="N",
        help="choose --dynamic-lr and --dynamic-decay on N characters of the training split "
        "(never the evaluated text) before evaluating; 0: use the flags",
    )
    add_flags(parser, DynamicConfig, "dynamic evaluation")
    parser.add_argument(
        "--adapt",
        action="store_true",
        help="read the text as `rnnlab compress` does: --segments pieces side by side, the "
        "output layer adapting and a match model learning; prints static and adaptive bpc",
    )
    parser.add_argument(
        "--segments",
        type=int,
        help="with --adapt: pieces read side by side (as rnnlab compress --segments; default: "
        f"as compress, one per {SEGMENT_CHARS:,} characters begun, at most {DEFAULT_SEGMENTS})",
    )
    add_flags(parser, AdaptConfig, "adaptation (with --adapt)")
    parser.add_argument(
        "--no-mix",
        action="store_true",
        help="with --adapt: skip the reading mixed with the run's context tables",
    )
    add_context_limit(parser)


def run(args: argparse.Namespace) -> int:
    if args.adapt and (args.dynamic or args.dynamic_tune):
        raise UsageError("--adapt and --dynamic are alternatives; choose one")
    if args.adapt:
        return run_adaptive(args)
    if args.segments is not None:
        raise UsageError("--segments is for --adapt (the compressor's reading); add --adapt")
    if args.dynamic or args.dynamic_tune:
        return run_dynamic(args)
    opts = options(args, EvalOptions)
    plot = check_output_file(args.plot, "--plot", reading=[args.run]) if args.plot else None
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


def run_dynamic(args: argparse.Namespace) -> int:
    """`rnnlab eval RUN [FILE] --dynamic`: static and dynamic bpc of the same text."""
    opts = options(args, EvalOptions)
    with progress_bar("dynamic evaluation") as report_progress:
        report = evaluate_dynamic(
            args.run,
            Path(args.file) if args.file else None,
            settings=options(args, DynamicConfig),
            tune_chars=args.dynamic_tune,
            weights=opts.weights,
            device=opts.device,
            chunk_len=opts.chunk_len,
            unknown=opts.unknown,
            on_progress=report_progress,
        )
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    for t in report.tuning or []:
        print(
            f"tune (training split): lr {t['learning_rate']:g} decay {t['decay']:g} "
            f"-> {t['bpc']:.4f} bpc"
        )
    print(f"{report.text}: {report.num_chars:,} characters")
    print(f"static   {report.static_bpc:.4f} bpc  {report.static_seconds:7.1f} s")
    c = report.dynamic
    print(
        f"dynamic  {report.dynamic_bpc:.4f} bpc  {report.dynamic_seconds:7.1f} s  ({c['rule']}, "
        f"lr {c['learning_rate']:g}, decay {c['decay']:g}, segment {c['segment_len']})"
    )
    return 0


def run_adaptive(args: argparse.Namespace) -> int:
    """`rnnlab eval RUN [FILE] --adapt`: the compressor's reading, static and adaptive."""
    opts = options(args, EvalOptions)
    report = evaluate_adaptive(
        args.run,
        Path(args.file) if args.file else None,
        settings=options(args, AdaptConfig),
        streams=args.segments,
        weights=opts.weights,
        device=opts.device,
        unknown=opts.unknown,
        mix=not args.no_mix,
        context_mb=args.context_mb,
    )
    if args.json:
        print(json.dumps(report.to_json()))
        return 0
    c = report.adapt
    print(f"{report.text}: {report.num_chars:,} characters, {report.streams} segments")
    print(f"static    {report.static_bpc:.4f} bpc")
    print(
        f"adaptive  {report.adaptive_bpc:.4f} bpc  {report.seconds:7.1f} s  (head lr "
        f"{c['head_lr']:g}, match {c['match_len']} and {c['match_long']})"
    )
    if report.mixed_bpc is not None:
        print(
            f"mixed     {report.mixed_bpc:.4f} bpc  (the same pass, mixed with the run's "
            "context tables: what rnnlab compress spends)"
        )
    elif not args.no_mix:
        print("(no context tables in the run: `rnnlab contexts RUN` adds them)")
    return 0


def print_report(report: EvalReport, run_name: str) -> None:
    """The ladder, the model beside it, and (unless --quick) where the model wins."""
    how = "exact pass" if report.exact else "64 warmed-up segments side by side; --exact: one pass"
    print(
        f"{report.text}: {report.num_chars:,} characters, model scored in "
        f"{report.seconds:.1f} s ({how})"
    )
    print(f"{'':24s} {'bpc':>8s} {'nats/char':>10s}")
    rows = [*report.baselines.items(), (f"model ({run_name})", report.bpc)]
    if report.compressed_bpc is not None:  # the run's context tables: what compress spends
        rows.append(("model, adapting + mixed", report.compressed_bpc))
    for label, value in rows:
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
