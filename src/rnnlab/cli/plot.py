"""rnnlab plot: training curves of one or more runs as a PNG."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import checkpoint
from ..errors import UsageError
from ..viz import plot_curves
from .flags import check_output_file

SUMMARY = "training curves of one or more runs as a PNG"
EXAMPLE = "example: rnnlab plot runs/a runs/b -o curves.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("-o", "--output", default="curves.png", help="PNG to write")


def run(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.runs]
    out = check_output_file(args.output, "-o", reading=runs)
    for r in runs:
        if not checkpoint.regular_file(r / checkpoint.METRICS):
            raise UsageError(f"{r} has no {checkpoint.METRICS}; give run directories")
    out = plot_curves(runs, out)
    print(json.dumps({"png": str(out)}) if args.json else str(out))
    return 0
