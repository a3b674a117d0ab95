"""rnnlab gradflow: gradient norm against lag, vanishing and exploding gradients measured."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from .. import lab
from ..errors import UsageError
from ..options import GradflowOptions
from .flags import add_flags, check_output_file, err, options

SUMMARY = "gradient norm against lag: vanishing and exploding gradients, measured"
EXAMPLE = "example: rnnlab gradflow --cell rnn,lstm,gru --length 100 -o gradflow.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flags(parser, GradflowOptions)
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="RUN",
        help="also probe a trained run (repeatable)",
    )
    parser.add_argument("-o", "--output", default="gradflow.png", help="PNG to write")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    opts = options(args, GradflowOptions)
    png = check_output_file(args.output, "-o", reading=args.run)
    configs = lab.configurations(
        opts.cells(),
        opts.inits(),
        opts.gains(),
        opts.nets(),
        opts.forget_biases(),
        opts.length,
        opts.depth or opts.length,
        hidden_size=opts.hidden,
        batch_size=opts.batch_size,
        seed=opts.seed,
    )
    if not configs:
        raise UsageError("--init identity (IRNN) is for --cell rnn or rnn-relu; pick another")
    results = [lab.probe_run(Path(r), opts.length, opts.batch_size, opts.seed) for r in args.run]
    for config in configs:
        if not args.quiet:
            err(f"probing {config.label} over {config.length} steps")
        results.append(lab.probe(config))
    png = lab.plot_gradflow(results, png)
    if args.json:
        print(json.dumps({"png": str(png), "probes": results}))
    else:
        print_table(results, opts.length)
        print(f"plot: {png}")
    return 0


def print_table(results: list[dict], length: int) -> None:
    lag = min(100, length)
    print(
        f"{'configuration':36s} {'rate dL':>8s} {'rate J':>8s} {f'|dL| @{lag}':>10s}"
        f" {f'|J| @{lag}':>10s} {'sig_max':>8s} {'radius':>7s} {'Pascanu':>8s}"
    )
    for r in results:
        k = min(lag, len(r["lags"]) - 1)
        sigma = r["w_hh"].get("weight_hh_l0.sigma_max", math.nan)
        radius = r["w_hh"].get("weight_hh_l0.spectral_radius", math.nan)
        bound = r["pascanu"]["bound_rate"]
        print(
            f"{r['label'][:36]:36s} {r['rate']['loss_grad']:8.4f} {r['rate']['jacobian']:8.4f}"
            f" {r['loss_grad'][k]:10.3e} {r['jacobian'][k]:10.3e} {sigma:8.3f} {radius:7.3f}"
            f" {'-' if bound is None else f'{bound:.3f}':>8s}"
        )
    print(
        "rate: fitted factor per step (or layer) of |dL_T/dh_t| and |dh_T/dh_t|; Pascanu: "
        "gamma * sigma_max(W_hh), the bound on the rate (vanishing certain below 1); gated "
        "cells: per-gate spectra in --json"
    )
