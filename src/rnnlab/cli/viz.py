"""rnnlab viz: a self-contained HTML page of what the cells track."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..files import write_text
from ..viz import VizOptions, visualize
from .flags import add_flags, check_output_file, options

SUMMARY = "a self-contained HTML page of what the cells track"
EXAMPLE = "example: rnnlab viz runs/mine -o viz.html (then open viz.html in a browser)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument("file", nargs="?", help="text file (default: the validation split)")
    parser.add_argument("-o", "--output", default="viz.html", help="HTML page to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(parser, VizOptions)


def run(args: argparse.Namespace) -> int:
    opts = options(args, VizOptions)
    out = check_output_file(args.output, "-o", reading=[args.run])
    bars: list[tqdm] = []  # opened at the first progress, after the inputs are checked

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="char", desc="recording", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    try:
        page = visualize(
            args.run,
            Path(args.file) if args.file else None,
            chars=opts.chars,
            feature_chars=opts.feature_chars,
            unknown=opts.unknown,
            weights=opts.weights,
            on_progress=None if args.quiet else progress,
        )
    finally:
        for bar in bars:
            bar.close()
    write_text(out, page.html)
    summary = page.summary | {"html": str(out), "html_bytes": out.stat().st_size}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{out}: {summary['html_bytes'] / 1e6:.1f} MB, {page.analysis.num_analyzed:,} characters")
    print(f"{'feature':18s} {'strongest cell':>18s} {'r':>7s}")
    for name, feature in summary["features"].items():
        if not feature["cells"]:
            print(f"{name:18s} {'(constant here)':>18s}")
            continue
        c = feature["cells"][0]
        cell = f"L{c['layer']} {c['quantity']}[{c['cell']}]"
        print(f"{name:18s} {cell:>18s} {c['r']:+7.3f}")
    return 0
