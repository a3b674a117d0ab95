"""rnnlab corpora: the named corpora and where they are cached."""

from __future__ import annotations

import argparse
import json

from .. import corpus

SUMMARY = "list the named corpora and where they are cached"
EXAMPLE = "example: rnnlab corpora"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    rows = corpus.describe()
    if args.json:
        print(json.dumps([{"name": n, "description": d, "where": w} for n, d, w in rows]))
        return 0
    for name, description, where in rows:
        print(f"{name:12s} {description}\n{'':12s} {where}")
    print(f"\ncache: {corpus.cache_dir()} (set XDG_CACHE_HOME to move it)")
    return 0
