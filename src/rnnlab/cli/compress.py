"""rnnlab compress / decompress: a file coded by a trained model's predictions (range coding,
compression.py), adaptive (the default), static, or with full dynamic evaluation; the optional
extra `compress`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from .. import adaptive, checkpoint, compression, contextmix, ctxrun, dynamic, files, rzmodel
from ..checkpoint import RunConfig
from ..errors import UsageError
from ..model import count_parameters
from ..tokens import corpus_splits
from .contexts import add_context_limit
from .flags import add_flags, add_force, check_output_file, options, progress_bar

SUMMARY = "compress a file with a trained model (range coding of its predictions)"
EXAMPLE = "example: rnnlab compress runs/mine notes.txt -o notes.txt.rz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "file to compress")
    parser.add_argument(
        "--segments",
        type=int,
        default=None,
        help="pieces coded side by side as one batch (speed; each starts cold, about 20 bits "
        f"more); default: one per {rzmodel.SEGMENT_CHARS:,} characters begun, at most "
        f"{compression.DEFAULT_SEGMENTS}",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads of the coder's step (recorded; decompression uses the same); "
        f"default: {compression.MIXED_THREADS} when mixing with context tables (the mixer "
        f"learns on a thread of its own), else {compression.THREADS}",
    )
    parser.add_argument(
        "--weights-dtype",
        choices=("auto", *compression.WEIGHTS_DTYPES),
        default="auto",
        help="the weights of the coder's step; auto: bfloat16 where the CPU has it (faster, "
        "measured), else float32",
    )
    parser.add_argument(
        "--static",
        action="store_true",
        help="no adaptation: the model's own probabilities; without it the output layer adapts "
        "and match models learn while coding, both directions (rnnlab eval --adapt scores that)",
    )
    add_flags(parser, adaptive.AdaptConfig, "adaptation (the default)")
    parser.add_argument(
        "--no-mix",
        action="store_true",
        help="adapt without mixing in the run's context tables (contexts.safetensors; "
        "`rnnlab contexts RUN` makes them, `rnnlab train` at the end of a run)",
    )
    add_context_limit(parser)
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="full dynamic evaluation instead: every weight adapts while coding (slow)",
    )
    add_flags(parser, dynamic.DynamicConfig, "dynamic evaluation (with --dynamic)")


def add_common(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("run", help="run directory (the same one for both directions)")
    parser.add_argument("file", help=what)
    parser.add_argument(
        "-o", "--output", help="file to write (default: FILE.rz; for decompress FILE without .rz)"
    )
    parser.add_argument(
        "--weights",
        choices=tuple(checkpoint.WEIGHTS),
        default="best",
        help="best-validation weights or those of the last step",
    )
    add_force(parser)


def dynamic_stats(
    model, config: RunConfig, settings: dynamic.DynamicConfig
) -> tuple[dict | None, str | None]:
    """The rms rule's statistics of the training split (pinned to one thread, so the compressor
    and the decompressor compute the same bits), or (None, None) for sgd."""
    if settings.rule != "rms":
        return None, None
    hint = "the rms rule (--dynamic-rule rms) needs the run's training text on this machine"
    train_ids, _ = corpus_splits(config.corpus, config.train.val_fraction, hint)
    with compression.pinned_threads(1):
        stats = dynamic.gradient_stats(model, train_ids, settings.segment_len)
    return stats, dynamic.stats_digest(stats)


def load_tables(run_dir: Path, model, context_mb: float | None) -> contextmix.ContextTables | None:
    """The run's context tables, or None if it has none; refused if over the limit."""
    return ctxrun.run_tables(run_dir, model.config.vocab_size, count_parameters(model), context_mb)


def check_input(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file")


def read_input(path: Path) -> bytes:
    """A .rz file's bytes (its size, not the size it claims, bounds the memory it takes)."""
    check_input(path)
    return files.read_regular(path, max_bytes=1 << 32)  # a FIFO or device: "not a regular file"


def check_output(args: argparse.Namespace, src: Path, default: Path) -> Path:
    """-o (or ``default``): not the input, not a run's file, an existing file only with -f."""
    out = Path(args.output) if args.output else default
    if out.exists() and out.resolve() == src.resolve():
        raise UsageError(f"-o {out} is the input file; give another name")
    return check_output_file(out, "-o", reading=[args.run], force=args.force)


def run(args: argparse.Namespace) -> int:
    run_dir, src = Path(args.run), Path(args.file)
    out = check_output(args, src, Path(f"{src}.rz"))
    if args.segments is not None and not 1 <= args.segments <= 65536:
        raise UsageError(f"--segments must be between 1 and 65,536, got {args.segments}")
    if args.threads is not None and not 1 <= args.threads <= compression.MAX_THREADS:
        raise UsageError(
            f"--threads must be between 1 and {compression.MAX_THREADS}, got {args.threads}"
        )
    if args.static and args.dynamic:
        raise UsageError("--static and --dynamic are alternatives; choose one")
    settings = options(args, dynamic.DynamicConfig) if args.dynamic else None
    adapt = None if args.static or args.dynamic else options(args, adaptive.AdaptConfig)
    model, vocab, config = checkpoint.load_model(run_dir, checkpoint.WEIGHTS[args.weights], "cpu")
    check_input(src)
    stats, digest = dynamic_stats(model, config, settings) if settings else (None, None)
    tables = None if adapt is None or args.no_mix else load_tables(run_dir, model, args.context_mb)
    how = compression.Settings(
        args.segments,
        settings,
        stats,
        digest,
        weights_dtype=compression.resolve_weights_dtype(args.weights_dtype),
        threads=args.threads,
        adapt=adapt,
        tables=tables,
    )
    started = time.perf_counter()
    with progress_bar("compressing") as report:
        # read, coded and written a piece at a time: memory does not grow with the file
        header, size = compression.compress_file(src, out, model, vocab, how, on_progress=report)
    seconds = time.perf_counter() - started
    result = {
        "input": str(src),
        "output": str(out),
        "original_bytes": header.original_bytes,
        "compressed_bytes": size,
        "symbols": header.length,
        "bits_per_symbol": 8 * size / header.length if header.length else None,
        "segments": header.segments,
        "threads": header.threads,
        "weights_dtype": header.weights_dtype,
        "dynamic": header.dynamic,
        "adapt": dataclasses.asdict(header.adapt) if header.adapt else None,
        "mixed": header.mix is not None,
        "seconds": seconds,
        "kB_per_s": header.original_bytes / 1000 / max(seconds, 1e-9),
    }
    if args.json:
        print(json.dumps(result))
    elif not header.length:
        print(f"{src} -> {out}: an empty file, {size:,} bytes of header")
    else:
        print(
            f"{src} -> {out}: {header.original_bytes:,} -> {size:,} bytes, "
            f"{result['bits_per_symbol']:.4f} bits per {header.mode}, "
            f"{header.segments} segments{', mixed with context tables' if header.mix else ''}, "
            f"{result['kB_per_s']:.1f} kB/s"
        )
    return 0
