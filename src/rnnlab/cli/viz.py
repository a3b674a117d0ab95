"""rnnlab viz: a self-contained HTML page of what the cells track."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..errors import UsageError
from ..files import write_text
from ..viz import VizOptions, visualize
from .flags import add_flags, check_output_file, options

SUMMARY = "a self-contained HTML page of what the cells track"
EXAMPLE = (
    "example: rnnlab viz runs/mine -o viz.html (then open viz.html in a browser); "
    "rnnlab viz runs/a runs/b: two runs side by side"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    parser.add_argument(
        "more",
        nargs="*",
        metavar="[RUN] [FILE]",
        help="a second run directory to show beside the first (rnnlab viz runs/a runs/b), "
        "and/or a text file (default: the first run's validation split)",
    )
    parser.add_argument("-o", "--output", default="viz.html", help="HTML page to write")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(parser, VizOptions)


def _second_run_and_file(more: list[str]) -> tuple[Path | None, Path | None]:
    """``[RUN] [FILE]``: a folder holding config.json is a run, anything else the text file."""
    paths = [Path(m) for m in more]
    second = paths.pop(0) if paths and (paths[0] / "config.json").is_file() else None
    if len(paths) > 1:
        raise UsageError(f"give at most a second run and one text file, got {' '.join(more)}")
    return second, (paths[0] if paths else None)


def run(args: argparse.Namespace) -> int:
    opts = options(args, VizOptions)
    out = check_output_file(args.output, "-o", reading=[args.run])
    bars: list[tqdm] = []  # opened at the first progress, after the inputs are checked

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, unit="char", desc="recording", file=sys.stderr))
        bars[0].update(done - bars[0].n)

    second, file = _second_run_and_file(args.more)
    try:
        page = visualize(
            args.run,
            file,
            compare_with=second,
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
    _print_strongest(summary["features"], Path(args.run).resolve().name if second else "")
    if second:
        _print_strongest(summary["compare"]["features"], summary["compare"]["run"])
    return 0


def _print_strongest(features: dict, title: str) -> None:
    """One line per feature: its strongest cell and r (under the run's name, for two runs)."""
    if title:
        print(title)
    print(f"{'feature':18s} {'strongest cell':>18s} {'r':>7s}")
    for name, feature in features.items():
        if not feature["cells"]:
            print(f"{name:18s} {'(constant here)':>18s}")
            continue
        c = feature["cells"][0]
        cell = f"L{c['layer']} {c['quantity']}[{c['cell']}]"
        print(f"{name:18s} {cell:>18s} {c['r']:+7.3f}")
