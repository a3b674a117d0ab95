"""rnnlab decompress: restore a file made by `rnnlab compress`, with the same run; the header
is checked (model, version, probe of this machine's arithmetic) before any long computation and
the checksum after decoding."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import checkpoint, compression, dynamic
from ..errors import UsageError
from .compress import add_common, check_output, dynamic_stats, load_tables, read_input
from .contexts import add_context_limit
from .flags import progress_bar

SUMMARY = "restore a file compressed by `rnnlab compress`, with the same run"
EXAMPLE = "example: rnnlab decompress runs/mine notes.txt.rz -o notes.back.txt (-f: replace)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, ".rz file")
    add_context_limit(parser)


def run(args: argparse.Namespace) -> int:
    run_dir, src = Path(args.run), Path(args.file)
    if args.output is None and src.suffix != ".rz":
        raise UsageError(f"{src} does not end in .rz; name the output with -o FILE")
    out = check_output(args, src, src.with_suffix(""))
    blob = read_input(src)
    header, _ = compression.read_header(blob)
    model, vocab, config = checkpoint.load_model(run_dir, checkpoint.WEIGHTS[args.weights], "cpu")
    compression.check_model(header, model, vocab)  # before any long computation
    stats, digest = None, None
    if header.dynamic is not None:
        settings = dynamic.DynamicConfig.from_dict(header.dynamic)
        stats, digest = dynamic_stats(model, config, settings)
    tables = load_tables(run_dir, model, args.context_mb) if header.mix else None
    started = time.perf_counter()
    with progress_bar("decompressing") as report:
        # decoded into a scratch file, checked, then written and renamed onto the output
        size = compression.decompress_file(blob, out, model, vocab, stats, digest, report, tables)
    seconds = time.perf_counter() - started
    kb_s = size / 1000 / max(seconds, 1e-9)
    if args.json:
        report = {"input": str(src), "output": str(out), "bytes": size, "seconds": seconds}
        print(json.dumps(report | {"kB_per_s": kb_s}))
    else:
        print(f"{src} -> {out}: {size:,} bytes, checksum verified, {kb_s:.1f} kB/s")
    return 0
