"""rnnlab contexts: count a run's training text into the context tables that `rnnlab compress`
and `rnnlab eval --adapt` mix with the network (contextmix.py); `rnnlab train` does it at the
end of a finished run."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import checkpoint, contextmix, ctxrun
from ..errors import UsageError
from ..model import count_parameters
from ..tokens import corpus_splits

SUMMARY = "count a run's training text into context tables for compress and eval --adapt"
EXAMPLE = "example: rnnlab contexts runs/mine (--context-mb 200: allow larger tables)"


def add_context_limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context-mb",
        type=float,
        default=None,
        help="most megabytes the context tables may take, on disk and in memory (default: "
        f"{ctxrun.LIMIT_TIMES_WEIGHTS}x the model's float32 weights)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    add_context_limit(parser)


def build(run_dir: Path, context_mb: float | None = None) -> dict:
    """Build and save the run's tables; returns what was done, for the caller to print."""
    model, vocab, config = checkpoint.load_model(run_dir, checkpoint.BEST, "cpu")
    limit = ctxrun.limit_bytes(context_mb, count_parameters(model))
    hint = "keep the run's corpus on this machine to count its training text"
    train_ids, _ = corpus_splits(config.corpus, config.train.val_fraction, hint)
    started = time.perf_counter()
    tables = ctxrun.build_run_tables(run_dir, train_ids, vocab.symbols, limit)
    path = run_dir / contextmix.CONTEXTS_FILE
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "memory_bytes": tables.reading_bytes,
        "limit_bytes": limit,
        "tables": tables.config.tables,
        "rows": 1 << tables.config.table_bits,
        "characters": len(train_ids),
        "seconds": time.perf_counter() - started,
    }


def describe(done: dict) -> str:
    return (
        f"context tables: {done['tables']} x {done['rows']:,} rows of the "
        f"{done['characters']:,} training characters, {done['bytes'] / 1e6:,.1f} MB on disk, "
        f"{done['memory_bytes'] / 1e6:,.1f} MB in memory while reading (limit "
        f"{done['limit_bytes'] / 1e6:,.1f} MB), {done['seconds']:.1f} s -> {done['path']}"
    )


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    done = build(run_dir, args.context_mb)
    print(json.dumps(done) if args.json else describe(done))
    return 0
