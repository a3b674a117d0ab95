"""rnnlab train: train a model, or --resume one; the flags come from ModelConfig and
TrainConfig."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from .. import checkpoint, corpus, distributed, finetune, progress, sampling, startup, training
from ..bpc import LN2
from ..config import CorpusConfig, ModelConfig, TrainConfig, flag_fields
from ..errors import UsageError
from ..viz import plot_curves
from . import contexts
from .flags import add_flags, check_output_dir, err, given

SUMMARY = "train a model (or --resume one)"
EXAMPLE = "example: rnnlab train my_text.txt --cell gru --minutes 20 --out runs/mine"
MAX_FINAL_SAMPLE = 100_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", nargs="?", help="file, folder or named corpus (default: python)")
    parser.add_argument("--glob", help="for a folder: only files matching this pattern")
    parser.add_argument(
        "--bytes", action="store_true", help="model raw bytes (any file) not characters"
    )
    parser.add_argument("--out", help="run directory (default: runs/CORPUS-TIME)")
    parser.add_argument("--resume", metavar="RUN", help="continue RUN exactly where it stopped")
    parser.add_argument(
        "--init-from",
        metavar="RUN",
        help="fine-tune: a new run starting from RUN's weights (own optimizer and schedule)",
    )
    parser.add_argument(
        "--extend-vocab",
        action="store_true",
        help="with --init-from: add the new text's unseen characters (known ones keep their ids)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or previews")
    parser.add_argument(
        "--plan-only",
        action="store_true",
        help="print the training plan (model, dropout, lr, from the corpus, budget and measured "
        "speed) and exit",
    )
    parser.add_argument(
        "--final-sample",
        type=int,
        default=600,
        metavar="N",
        help=f"characters sampled from the best weights at the end (at most {MAX_FINAL_SAMPLE:,})",
    )
    add_flags(parser, ModelConfig, "model (fixed for the life of a run)")
    add_flags(parser, TrainConfig, "training")


def _fixed_on_resume(args: argparse.Namespace, model_opts: dict, train_opts: dict) -> list[str]:
    """The flags given with --resume that the run's config.json fixes."""
    return sorted(
        [f.metadata["flag"] for f in flag_fields(ModelConfig) if f.name in model_opts]
        + [
            f.metadata["flag"]
            for f in flag_fields(TrainConfig)
            if f.name in train_opts and f.name not in ("max_steps", "minutes")
        ]
        + (["CORPUS"] if args.corpus else [])
        + (["--bytes"] if args.bytes else [])
        + (["--glob"] if args.glob else [])
        + (["--out"] if args.out else [])
    )


class ConsoleLog:
    """The console sink of training progress (progress.TrainLogger): a tqdm bar on stderr
    (budget spent, step, train and validation bpc, pace) and a line per validation with the
    start of its sample."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, description: str) -> None:
        err(description)
        self.bar = tqdm(
            total=1000,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
        )

    def step(self, e: progress.StepEvent) -> None:
        if self.bar is None:
            return
        self.bar.n = int(1000 * e.budget_fraction)
        val = f"{e.last_val_bpc:.3f}" if math.isfinite(e.last_val_bpc) else "-"
        self.bar.set_postfix_str(
            f"step {e.step} train {e.bpc:.3f} val {val} bpc {e.chars_per_s:,.0f} chars/s",
            refresh=False,
        )
        self.bar.update(0)

    def eval(self, e: progress.EvalEvent) -> None:
        tqdm.write(
            f"step {e.step:6d} | {progress.train_val(e)} | best {e.best_bpc:.4f} | "
            f"{e.elapsed_s:7.1f} s",
            file=sys.stderr,
        )
        if e.sample:
            tqdm.write("    " + e.sample[:160].replace("\n", "\n    "), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _init_from(args: argparse.Namespace, model_opts: dict) -> finetune.InitFrom | None:
    """--init-from RUN [--extend-vocab]: fine-tune a new run from RUN's weights."""
    if args.init_from is None:
        if args.extend_vocab:
            raise UsageError("--extend-vocab goes with --init-from RUN; add it or drop this")
        return None
    if args.resume:
        raise UsageError("--init-from starts a new run; --resume continues one: pick one")
    if model_opts:
        flags = sorted(f.metadata["flag"] for f in flag_fields(ModelConfig) if f.name in model_opts)
        raise UsageError(
            f"{', '.join(flags)} cannot be given with --init-from (the base run's config.json "
            "fixes the architecture)"
        )
    checkpoint.load_config(Path(args.init_from))  # a missing or broken run fails here
    return finetune.InitFrom(Path(args.init_from), args.extend_vocab)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.final_sample <= MAX_FINAL_SAMPLE:
        raise UsageError(
            f"--final-sample must be between 0 and {MAX_FINAL_SAMPLE:,}, got {args.final_sample}"
        )
    model_opts, train_opts = given(args, ModelConfig), given(args, TrainConfig)
    init_from = _init_from(args, model_opts)
    model_config = ModelConfig(**model_opts)  # bad values fail here, before any download
    train_config = TrainConfig(**train_opts)
    corpus_config = CorpusConfig(
        source=args.corpus or "python", glob=args.glob, byte_mode=args.bytes
    )
    user = set(model_opts) | set(train_opts)  # the plan keeps these and chooses the rest
    if args.plan_only:
        return _print_plan(args, corpus_config, model_config, train_config, user)
    out = _run_dir(args, model_opts, train_opts)
    console = None if args.quiet else ConsoleLog()
    try:
        result = training.train(
            corpus_config,
            model_config,
            train_config,
            out,
            resume=bool(args.resume),
            logger=console,
            init_from=init_from,
            user=user,
        )
    finally:
        if console is not None:
            console.close()
    if result.rank != 0:  # under torchrun rank 0 reports; the others are done
        distributed.exit_now(result.exit_code)
    plot_curves([out], out / "curves.png")
    report(result, out, args)
    if result.exit_code == 0:  # a finished run: count its training text for the compressor
        _contexts(out, args)
    return result.exit_code


def _contexts(out: Path, args: argparse.Namespace) -> None:
    """The run's context tables (cli.contexts); a limit too small for any is said, not fatal."""
    try:
        line = contexts.describe(contexts.build(out))
    except UsageError as e:
        line = f"no context tables ({e})"
    if not (args.quiet or args.json):
        print(line)


def _print_plan(
    args: argparse.Namespace,
    corpus_config: CorpusConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    user: set[str],
) -> int:
    """--plan-only: the plan a new run would make, then exit 0."""
    if args.resume or args.init_from:
        raise UsageError("--plan-only is for a new run; a resumed or fine-tuned run has its plan")
    corpus.resolve(args.corpus, args.glob)  # a bad path fails here, in one line
    plan = startup.plan_only(corpus_config, model_config, train_config, user)
    print(json.dumps(plan.to_dict()) if args.json else plan.line())
    return 0


def _run_dir(args: argparse.Namespace, model_opts: dict, train_opts: dict) -> Path:
    """The run directory, checked before any work: the run to resume, or a new one."""
    if args.resume:
        fixed = _fixed_on_resume(args, model_opts, train_opts)
        if fixed:
            raise UsageError(
                f"{', '.join(fixed)} cannot change on --resume (the run's config.json fixes them); "
                "only --max-steps and --minutes may be given"
            )
        out = Path(args.resume)
        checkpoint.load_config(out)  # a missing or broken run fails here, before any work
        return out
    source = corpus.resolve(args.corpus, args.glob)
    unreadable = [f for f in source.files if not os.access(f, os.R_OK)]
    if unreadable:
        raise UsageError(f"{unreadable[0]} is not readable; check its permissions")
    # under torchrun every process must pick the same directory: rank 0's clock decides
    stamp = training.distributed().object_from_main(time.strftime("%Y%m%d-%H%M%S"))
    out = Path(args.out) if args.out else Path("runs") / f"{source.name}-{stamp}"
    return check_output_dir(out, "--out")


def report(result: training.TrainResult, out: Path, args: argparse.Namespace) -> None:
    """A sample from the best weights and the summary line (or JSON); notes on stderr."""
    sample = ""
    if result.stopped == "budget" and (out / checkpoint.BEST).is_file():  # not after a signal
        model, vocab, _ = checkpoint.load_model(out, ensemble=True)
        sample = sampling.generate(
            model, vocab, "", length=args.final_sample, temperature=0.8, seed=0
        )[0]
    summary = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()
    }
    summary |= {"sample": sample, "best_val_nats": result.best_val_bpc * LN2}
    summary |= {"exit_code": result.exit_code}
    if args.json:
        print(json.dumps(summary))
    else:
        if sample:
            print(f"--- a sample from the best weights (temperature 0.8) ---\n{sample}\n---")
        print(
            f"{result.stopped}: step {result.step}, {result.elapsed_s:.0f} s of training, "
            f"best validation {result.best_val_bpc:.4f} bpc "
            f"({summary['best_val_nats']:.4f} nats/char); run: {out}"
        )
    if result.stopped != "diverged" and (out / checkpoint.METRICS).is_file():
        err(progress.when_validation_stopped(checkpoint.read_metrics(out)))
    if result.stopped == "interrupted":
        err(f"interrupted ({result.signal}) and saved; continue with: rnnlab train --resume {out}")
    if result.stopped == "diverged":
        kept = (
            f"the checkpoint of step {result.checkpoint_step} in {out} is the last finite one"
            if result.checkpoint_step is not None
            else f"no checkpoint was saved in {out}"
        )
        err(f"training diverged: {result.message}; {kept}; try a lower --lr or --grad-clip")
