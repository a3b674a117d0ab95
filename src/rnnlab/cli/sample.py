"""rnnlab sample: text from a trained run, written as it is generated (memory bounded for any
--length; Ctrl-C or a closed pipe stops it cleanly)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

from .. import checkpoint, sampling
from ..errors import UsageError
from ..model import resolve_device, resolve_sample_dtype
from ..options import MAX_HELD_CHARS, SampleOptions
from .flags import add_flags, options

SUMMARY = "generate text from a trained run"
EXAMPLE = (
    "example: rnnlab sample runs/mine --prompt 'ROMEO:' --length 2000 --seed 7; "
    "rnnlab sample runs/mine --prompt 'x = ' --regex '[0-9]+\\.[0-9]{2}' --beam 4"
)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` as the characters they name (a shell cannot type a
    newline into a flag easily); any other backslash stays as it is."""
    return re.sub(r"\\(.)", lambda m: ESCAPES.get(m[1], m[0]), text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run directory")
    add_flags(parser, SampleOptions)


def run(args: argparse.Namespace) -> int:
    opts = options(args, SampleOptions)
    if opts.logprobs and not args.json:
        raise UsageError("--logprobs is part of the --json output; add --json")
    opts = dataclasses.replace(
        opts,
        stop=tuple(unescape(s) for s in opts.stop),
        allowed_chars=None if opts.allowed_chars is None else unescape(opts.allowed_chars),
    )
    if args.json and opts.num_samples * opts.length > MAX_HELD_CHARS:
        raise UsageError(
            f"--json holds the whole text: --length x --num-samples must be at most "
            f"{MAX_HELD_CHARS:,}; drop --json to stream a longer sample"
        )
    device = resolve_device(opts.device)
    model, vocab, _ = checkpoint.load_model(
        Path(args.run), checkpoint.WEIGHTS[opts.weights], device, ensemble=True
    )
    prompt = opts.prompt
    if opts.unknown == "skip":
        prompt = vocab.decode(vocab.encode(prompt, unknown="skip"))
    # what complete and iter_generate share
    common = dict(
        length=opts.length,
        temperature=opts.temperature,
        top_k=opts.top_k,
        top_p=opts.top_p,
        seed=opts.seed,
        num_samples=opts.num_samples,
        unknown=opts.unknown,
        weights_dtype=resolve_sample_dtype(opts.weights_dtype, device, opts.num_samples),
        stop=opts.stop,
        allowed_chars=opts.allowed_chars,
        regex=opts.regex,
    )
    if args.json or opts.num_samples > 1 or opts.beam:  # held whole (bounded by SampleOptions)
        t0 = time.perf_counter()
        found = sampling.complete(
            model, vocab, prompt, beam=opts.beam, logprobs=opts.logprobs, **common
        )
        seconds = time.perf_counter() - t0
        texts = [c.text for c in found]
        if args.json:
            chars_per_s = sum(len(t) for t in texts) / max(seconds, 1e-9)
            result = {
                "prompt": prompt,
                "samples": texts,
                "finish_reasons": [c.finish_reason for c in found],
                "scores": [c.score for c in found] if opts.beam else None,
                # per sample, per character: {"text", "logprob", "top": [[char, logprob], ...]}
                "logprobs": [_logprobs(c) for c in found] if opts.logprobs else None,
                "chars_per_s": chars_per_s,
            }
            print(json.dumps(result))
            return 0
        if len(texts) == 1:
            print(prompt + texts[0])
            return 0
        for i, text in enumerate(texts):
            print(f"--- sample {i} ---")
            print(prompt + text)
        return 0
    every = 1 if opts.stream else sampling.BLOCK
    pieces = sampling.iter_generate(model, vocab, prompt, every=every, **common)
    out = sys.stdout
    out.write(prompt)
    out.flush()
    try:
        for (piece,) in pieces:
            out.write(piece)
            out.flush()
    except UsageError:  # a constraint that cannot go on: the text so far ends its line
        out.write("\n")
        out.flush()
        raise
    out.write("\n")
    out.flush()
    return 0


def _logprobs(c: sampling.Completion) -> list[dict]:
    return [{"text": x.text, "logprob": x.logprob, "top": x.top} for x in c.logprobs or []]
