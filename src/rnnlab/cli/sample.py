"""rnnlab sample: text from a trained run, written as it is generated (memory bounded for any
--length; Ctrl-C or a closed pipe stops it cleanly)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .. import checkpoint, sampling
from ..errors import UsageError
from ..model import resolve_device, resolve_sample_dtype
from ..options import MAX_HELD_CHARS, SampleOptions
from .flags import add_flags, options

SUMMARY = "generate text from a trained run"
EXAMPLE = "example: rnnlab sample runs/mine --prompt 'ROMEO:' --length 2000 --seed 7"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    add_flags(parser, SampleOptions)


def run(args: argparse.Namespace) -> int:
    opts = options(args, SampleOptions)
    if args.json and opts.num_samples * opts.length > MAX_HELD_CHARS:
        raise UsageError(
            f"--json holds the whole text: --length x --num-samples must be at most "
            f"{MAX_HELD_CHARS:,}; drop --json to stream a longer sample"
        )
    device = resolve_device(opts.device)
    model, vocab, _ = checkpoint.load_model(
        Path(args.run), checkpoint.WEIGHTS[opts.weights], device
    )
    prompt = opts.prompt
    if opts.unknown == "skip":
        prompt = vocab.decode(vocab.encode(prompt, unknown="skip"))
    pieces = sampling.iter_generate(
        model,
        vocab,
        prompt,
        length=opts.length,
        temperature=opts.temperature,
        top_k=opts.top_k,
        top_p=opts.top_p,
        seed=opts.seed,
        num_samples=opts.num_samples,
        unknown=opts.unknown,
        weights_dtype=resolve_sample_dtype(opts.weights_dtype, device, opts.num_samples),
        every=1 if opts.stream else sampling.BLOCK,
    )
    if args.json or opts.num_samples > 1:  # held whole (bounded by SampleOptions)
        t0 = time.perf_counter()
        rows = [list(row) for row in zip(*pieces, strict=True)] or [[]] * opts.num_samples
        texts = ["".join(row) for row in rows]
        seconds = time.perf_counter() - t0
        if args.json:
            chars_per_s = opts.length * opts.num_samples / max(seconds, 1e-9)
            print(json.dumps({"prompt": prompt, "samples": texts, "chars_per_s": chars_per_s}))
            return 0
        for i, text in enumerate(texts):
            print(f"--- sample {i} ---")
            print(prompt + text)
        return 0
    out = sys.stdout
    out.write(prompt)
    out.flush()
    for (piece,) in pieces:
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    return 0
