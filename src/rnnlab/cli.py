"""Command line: one function per subcommand, flags generated from the config dataclasses.

The only module that prints results or exits. Results go to stdout, progress to stderr.
Exit codes: 0 ok, 1 runtime failure, 2 usage error (one line; --debug shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import checkpoint, compression, corpus, dynamic, evaluation, files, lab, sampling, training
from .config import (
    CELLS,
    INITS,
    LAB_TASKS,
    ConfigError,
    CorpusConfig,
    LongRangeConfig,
    ModelConfig,
    TrainConfig,
    __version__,
    flag_fields,
)
from .data import DataError, encode_with, split
from .errors import UsageError
from .model import resolve_device, resolve_sample_dtype
from .viz import BASELINES, MAX_SHOWN, analyze, plot_curves, plot_wins, report, write_page
from .vocab import UnknownCharacterError

USER_ERRORS = (
    ConfigError,
    corpus.CorpusError,
    DataError,
    checkpoint.CheckpointError,
    UnknownCharacterError,
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints usage and exits
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _type_of(f: dataclasses.Field) -> Callable[[str], object]:
    name = str(f.type).replace(" | None", "")
    return {"int": int, "float": float, "str": str}[name]


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in flag_fields(cls):
        group.add_argument(
            f.metadata["flag"],
            dest=f.name,
            type=_type_of(f),
            choices=f.metadata.get("choices"),
            default=argparse.SUPPRESS,  # so we know which flags the user gave
            help=f"{f.metadata['help']} (default: {f.default})",
        )


def _given(args: argparse.Namespace, cls: type) -> dict:
    return {f.name: getattr(args, f.name) for f in flag_fields(cls) if hasattr(args, f.name)}


def _err(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one process speaks for all
        print(message, file=sys.stderr, flush=True)


# --- train ---------------------------------------------------------------------------------------


class ConsoleLog:
    """The console sink of training progress: a tqdm bar on stderr (budget spent, step, train
    and validation bpc, pace), a line per validation with a short sample."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def start(self, description: str) -> None:
        _err(description)
        self.bar = tqdm(
            total=1000,
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
        )

    def step(self, e: training.StepEvent) -> None:
        if self.bar is None:
            return
        self.bar.n = int(1000 * e.budget_fraction)
        val = f"{e.last_val_bpc:.3f}" if math.isfinite(e.last_val_bpc) else "-"
        self.bar.set_postfix_str(
            f"step {e.step} train {e.bpc:.3f} val {val} bpc {e.chars_per_s:,.0f} chars/s",
            refresh=False,
        )
        self.bar.update(0)

    def eval(self, e: training.EvalEvent) -> None:
        tqdm.write(
            f"step {e.step:6d} | val {e.bpc:.4f} bpc ({e.loss_nats:.4f} nats/char)"
            f" | best {e.best_bpc:.4f} | {e.elapsed_s:7.1f} s",
            file=sys.stderr,
        )
        if e.sample:
            tqdm.write("    " + e.sample[:160].replace("\n", "\n    "), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    model_opts = _given(args, ModelConfig)
    train_opts = _given(args, TrainConfig)
    if args.resume:
        fixed = sorted(
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
        if fixed:
            raise UsageError(
                f"{', '.join(fixed)} cannot change on --resume (the run's config.json fixes them); "
                "only --max-steps and --minutes may be given"
            )
        out = Path(args.resume)
        checkpoint.load_config(out)  # a missing or broken run fails here, before any work
    else:
        name = corpus.resolve(args.corpus, args.glob).name
        # under torchrun every process must pick the same directory: rank 0's clock decides
        stamp = training.distributed().object_from_main(time.strftime("%Y%m%d-%H%M%S"))
        out = Path(args.out) if args.out else Path("runs") / f"{name}-{stamp}"
    model_config = ModelConfig(**model_opts)
    train_config = TrainConfig(**train_opts)
    corpus_config = CorpusConfig(
        source=args.corpus or "python", glob=args.glob, byte_mode=args.bytes
    )

    console = None if args.quiet else ConsoleLog()
    result = training.train(
        corpus_config,
        model_config,
        train_config,
        out,
        resume=bool(args.resume),
        logger=console,
    )
    if console is not None:
        console.close()
    if result.rank != 0:  # under torchrun rank 0 reports
        return result.exit_code
    plot_curves([out], out / "curves.png")
    sample = ""
    if result.stopped != "diverged" and (out / checkpoint.BEST).is_file():
        model, vocab, _ = checkpoint.load_model(out)
        sample = sampling.generate(model, vocab, "", args.final_sample, 0.8, seed=0)[0]
    summary = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(result).items()
    }
    summary |= {"sample": sample, "best_val_nats": result.best_val_bpc * evaluation.LN2}
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
    if result.stopped == "interrupted":
        _err(f"interrupted and saved; continue with: rnnlab train --resume {out}")
    if result.stopped == "diverged":
        kept = (
            f"the checkpoint of step {result.checkpoint_step} in {out} is the last finite one"
            if result.checkpoint_step is not None
            else f"no checkpoint was saved in {out}"
        )
        _err(f"training diverged: {result.message}; {kept}; try a lower --lr or --grad-clip")
    return result.exit_code


# --- sample --------------------------------------------------------------------------------------


def cmd_sample(args: argparse.Namespace) -> int:
    if args.stream and args.num_samples != 1:
        raise UsageError("--stream writes one sample as it comes; drop --num-samples or --stream")
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.top_k < 0 or args.length < 0:
        raise UsageError("--top-k and --length must be >= 0")
    device = resolve_device(args.device)
    weights = {"best": checkpoint.BEST, "last": checkpoint.LAST}[args.weights]
    model, vocab, _ = checkpoint.load_model(Path(args.run), weights, device)
    prompt = args.prompt
    if args.unknown == "skip":
        prompt = vocab.decode(vocab.encode(prompt, unknown="skip"))

    def stream(row: int, piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    if args.stream and not args.json:
        sys.stdout.write(prompt)
    t0 = time.perf_counter()
    texts = sampling.generate(
        model,
        vocab,
        prompt,
        args.length,
        args.temperature,
        args.top_k,
        args.top_p,
        args.seed,
        args.num_samples,
        args.unknown,
        on_text=stream if args.stream and not args.json else None,
        dtype=resolve_sample_dtype(args.dtype, device, args.num_samples),
    )
    seconds = time.perf_counter() - t0
    if args.json:
        print(
            json.dumps(
                {
                    "prompt": prompt,
                    "samples": texts,
                    "chars_per_s": args.length * args.num_samples / max(seconds, 1e-9),
                }
            )
        )
    elif args.stream:
        print()
    else:
        for i, text in enumerate(texts):
            if args.num_samples > 1:
                print(f"--- sample {i} ---")
            print(prompt + text)
    return 0


# --- eval ----------------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    run = Path(args.run)
    device = resolve_device(args.device)
    weights = {"best": checkpoint.BEST, "last": checkpoint.LAST}[args.weights]
    model, vocab, config = checkpoint.load_model(run, weights, device)
    train_ids = None
    try:
        tokens = training.load_tokens(config.corpus, config.corpus.sha256)
        train_ids, val_ids = split(tokens.open(), config.train.val_fraction)
    except corpus.CorpusError as e:
        if not args.file:
            raise corpus.CorpusError(
                f"the run's corpus is not available here ({e}); "
                f"pass a text file: rnnlab eval {run} FILE"
            ) from None
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise UsageError(f"{path}: no such file; give a text file to evaluate")
        source = corpus.resolve(str(path))
        pieces = corpus.iter_bytes(source) if vocab.mode == "byte" else corpus.iter_text(source)
        scratch = tempfile.TemporaryDirectory(prefix="rnnlab-eval-")
        try:
            eval_ids = encode_with(vocab, pieces, Path(scratch.name) / "ids.bin", args.unknown)
        except corpus.CorpusError as e:  # not UTF-8, or binary
            raise UsageError(f"{str(e).split(';')[0]}; give a UTF-8 text file") from None
        name = str(path)
    else:
        eval_ids, name = val_ids, "validation split"
    if len(eval_ids) < 2:
        raise UsageError(f"{name} has fewer than 2 characters to evaluate")
    if args.dynamic or args.dynamic_tune:
        return _eval_dynamic(args, model, train_ids, eval_ids, name)
    V = len(vocab)
    symbols = [chr(i) for i in range(256)] if vocab.mode == "byte" else vocab.symbols

    if train_ids is not None and not args.quick:

        def decode(ids: np.ndarray) -> bytes:  # what a compressor sees
            if vocab.mode == "byte":
                return np.asarray(ids, dtype=np.uint8).tobytes()
            return "".join([symbols[i] for i in np.asarray(ids).tolist()]).encode("utf-8")

        ladder = evaluation.baseline_ladder(train_ids, eval_ids, V, decode)
    else:
        rungs = {"uniform": evaluation.uniform_bpc(V)}
        if train_ids is not None:
            rungs["unigram"] = evaluation.unigram_bpc(train_ids, eval_ids, V)
        ladder = evaluation.Ladder(rungs)
    scored = evaluation.compare(model, eval_ids, symbols, ladder.best_ngram_model, args.chunk_len)
    nats, seconds = scored.loss_nats, scored.seconds
    baselines = ladder.rungs
    bpc = nats / evaluation.LN2
    if not args.file:  # remembered for `rnnlab plot`
        checkpoint.write_json(run / BASELINES, baselines)
    best = min(baselines, key=baselines.get)
    margin = baselines[best] - bpc
    wins = None
    if scored.wins is not None:  # where the model beats the best n-gram
        wins = scored.wins | {"ngram": ladder.best_ngram}
        if args.plot:
            plot_wins(wins, Path(args.plot))
    if args.json:
        report = {
            "text": name,
            "num_chars": len(eval_ids) - 1,
            "seconds": seconds,
            "bpc": bpc,
            "loss_nats": nats,
            "baselines": baselines,
            "best_baseline": best,
            "below_best_baseline_bpc": margin,
            "where_the_model_wins": wins,
        }
        print(json.dumps(report))
        return 0
    print(f"{name}: {len(eval_ids) - 1:,} characters, model scored in {seconds:.1f} s")
    print(f"{'':24s} {'bpc':>8s} {'nats/char':>10s}")
    for label, value in [*baselines.items(), (f"model ({run.name})", bpc)]:
        print(f"{label:24s} {value:8.4f} {value * evaluation.LN2:10.4f}")
    where = "below" if margin >= 0 else "above"
    print(f"the model is {abs(margin):.4f} bpc {where} the best baseline ({best})")
    if wins:
        print(f"\n{'class':16s} {'count':>9s} {'model bpc':>10s} {wins['ngram'] + ' bpc':>16s}")
        for name, row in wins["by_class"].items():
            print(
                f"{name:16s} {row['count']:9,d} {row['model_bpc']:10.3f} {row['ngram_bpc']:16.3f}"
            )
        print(
            f"\n{'closing bracket/quote, distance':32s} {'count':>7s} {'model':>7s} {'n-gram':>7s}"
        )
        for b in wins["closing_by_distance"]:
            span = f"{b['from']}-{b['to'] - 1}" if b["to"] else f"{b['from']}+"
            print(f"{span:32s} {b['count']:7,d} {b['model_bpc']:7.3f} {b['ngram_bpc']:7.3f}")
    return 0


# --- dynamic evaluation, compress, decompress (issue 15) ----------------------------------------


def _dynamic_config(args: argparse.Namespace) -> dynamic.DynamicConfig:
    return dynamic.DynamicConfig(**_given(args, dynamic.DynamicConfig))


def _training_split(config: checkpoint.RunConfig, why: str) -> np.ndarray:
    try:
        tokens = training.load_tokens(config.corpus, config.corpus.sha256)
    except corpus.CorpusError as e:
        raise corpus.CorpusError(
            f"{why} needs the run's training text, not available here ({e})"
        ) from None
    return split(tokens.open(), config.train.val_fraction)[0]


def _dynamic_stats(
    model, config: checkpoint.RunConfig, settings: dynamic.DynamicConfig
) -> tuple[dict | None, str | None]:
    """The rms rule's statistics of the training split (pinned to one thread, so the compressor
    and the decompressor compute the same bits), or (None, None) for sgd."""
    if settings.rule != "rms":
        return None, None
    train_ids = _training_split(config, "the rms rule (--dynamic-rule rms)")
    with compression.pinned_threads(1):
        stats = dynamic.gradient_stats(model, train_ids, settings.segment_len)
    return stats, dynamic.stats_digest(stats)


def _eval_dynamic(args, model, train_ids, eval_ids, name: str) -> int:
    if train_ids is None and (args.dynamic_tune or _dynamic_config(args).rule == "rms"):
        raise corpus.CorpusError("--dynamic needs the run's training text, not available here")
    settings = _dynamic_config(args)
    stats = (
        dynamic.gradient_stats(model, train_ids, settings.segment_len)
        if train_ids is not None
        else None
    )
    trials = None
    if args.dynamic_tune:  # on the training split just before the statistics' slice
        piece = train_ids[-(20_000 + args.dynamic_tune) : -20_000]
        settings, trials = dynamic.tune(
            model, piece, stats, settings.rule, segment_lens=(settings.segment_len,)
        )
    started = time.perf_counter()
    static_bpc = evaluation.bits_per_char(model, eval_ids, args.chunk_len)
    static_s = time.perf_counter() - started
    result = dynamic.dynamic_bits_per_char(model, eval_ids, settings, stats)
    report = {
        "text": name,
        "num_chars": len(eval_ids) - 1,
        "static_bpc": static_bpc,
        "static_seconds": static_s,
        "dynamic_bpc": result.bpc,
        "dynamic_seconds": result.seconds,
        "dynamic": result.config,
        "tuning": trials,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    for t in trials or []:
        print(
            f"tune (training split): lr {t['learning_rate']:g} decay {t['decay']:g} "
            f"-> {t['bpc']:.4f} bpc"
        )
    print(f"{name}: {len(eval_ids) - 1:,} characters")
    print(f"static   {static_bpc:.4f} bpc  {static_s:7.1f} s")
    c = result.config
    print(
        f"dynamic  {result.bpc:.4f} bpc  {result.seconds:7.1f} s  ({c['rule']}, lr "
        f"{c['learning_rate']:g}, decay {c['decay']:g}, segment {c['segment_len']})"
    )
    return 0


def _read_input(path: Path) -> bytes:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    return path.read_bytes()


def cmd_compress(args: argparse.Namespace) -> int:
    run, src = Path(args.run), Path(args.file)
    out = files.check_writable(Path(args.output or f"{src}.rz"))
    if out.resolve() == src.resolve():
        raise UsageError(f"-o {out} is the input file; give another name")
    weights = {"best": checkpoint.BEST, "last": checkpoint.LAST}[args.weights]
    model, vocab, config = checkpoint.load_model(run, weights, "cpu")
    data = _read_input(src)
    settings = _dynamic_config(args) if args.dynamic else None
    stats, digest = _dynamic_stats(model, config, settings) if settings else (None, None)
    started = time.perf_counter()
    blob = compression.compress(data, model, vocab, args.segments, settings, stats, digest)
    seconds = time.perf_counter() - started
    files.atomic_write(out, blob)
    header, _ = compression.read_header(blob)
    result = {
        "input": str(src),
        "output": str(out),
        "original_bytes": len(data),
        "compressed_bytes": len(blob),
        "symbols": header.length,
        "bits_per_symbol": 8 * len(blob) / max(1, header.length),
        "segments": header.segments,
        "dynamic": header.dynamic,
        "seconds": seconds,
        "kB_per_s": len(data) / 1000 / max(seconds, 1e-9),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{src} -> {out}: {len(data):,} -> {len(blob):,} bytes, "
            f"{result['bits_per_symbol']:.4f} bits per {header.mode}, "
            f"{header.segments} segments, {result['kB_per_s']:.1f} kB/s"
        )
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    run, src = Path(args.run), Path(args.file)
    if args.output is None and src.suffix != ".rz":
        raise UsageError(f"{src} does not end in .rz; name the output with -o FILE")
    out = files.check_writable(Path(args.output or src.with_suffix("")))
    if out.resolve() == src.resolve():
        raise UsageError(f"-o {out} is the input file; give another name")
    blob = _read_input(src)
    header, _ = compression.read_header(blob)
    weights = {"best": checkpoint.BEST, "last": checkpoint.LAST}[args.weights]
    model, vocab, config = checkpoint.load_model(run, weights, "cpu")
    compression.check_model(header, model, vocab)  # before any long computation
    stats, digest = None, None
    if header.dynamic is not None:
        settings = dynamic.DynamicConfig.from_dict(header.dynamic)
        stats, digest = _dynamic_stats(model, config, settings)
    started = time.perf_counter()
    data = compression.decompress(blob, model, vocab, stats, digest)
    seconds = time.perf_counter() - started
    files.atomic_write(out, data)
    kb_s = len(data) / 1000 / max(seconds, 1e-9)
    if args.json:
        print(
            json.dumps(
                {
                    "input": str(src),
                    "output": str(out),
                    "bytes": len(data),
                    "seconds": seconds,
                    "kB_per_s": kb_s,
                }
            )
        )
    else:
        print(f"{src} -> {out}: {len(data):,} bytes, checksum verified, {kb_s:.1f} kB/s")
    return 0


# --- plot ----------------------------------------------------------------------------------------


def cmd_plot(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not (r / checkpoint.METRICS).is_file():
            raise UsageError(f"{r} has no {checkpoint.METRICS}; give run directories")
    out = plot_curves(runs, Path(args.output))
    print(json.dumps({"png": str(out)}) if args.json else str(out))
    return 0


# --- viz -----------------------------------------------------------------------------------------


def cmd_viz(args: argparse.Namespace) -> int:
    if not 1 <= args.chars <= MAX_SHOWN:
        raise UsageError(
            f"--chars must be between 1 and {MAX_SHOWN:,} (every shown character carries every "
            f"cell's activations), got {args.chars}"
        )
    if args.feature_chars < 0:
        raise UsageError(f"--feature-chars must be >= 0, got {args.feature_chars}")
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent}: no such folder for -o")
    run = Path(args.run)
    weights = {"best": checkpoint.BEST, "last": checkpoint.LAST}[args.weights]
    model, vocab, config = checkpoint.load_model(run, weights)
    wanted = max(args.chars, args.feature_chars)
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise UsageError(f"{path}: no such file; give a text file to visualize")
        if vocab.mode == "byte":
            ids = np.frombuffer(path.read_bytes(), dtype=np.uint8)[:wanted].astype(np.int64)
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{path} is not valid UTF-8 text") from None
            ids = np.asarray(vocab.encode(text, unknown=args.unknown)[:wanted], dtype=np.int64)
        source = str(path)
    else:
        try:
            tokens = training.load_tokens(config.corpus, config.corpus.sha256)
        except corpus.CorpusError as e:
            raise corpus.CorpusError(
                f"the run's corpus is not available here ({e}); "
                f"pass a text file: rnnlab viz {run} FILE"
            ) from None
        _, val_ids = split(tokens.open(), config.train.val_fraction)
        ids = np.asarray(val_ids[:wanted], dtype=np.int64)
        source = f"the validation split of {config.corpus.source}"
    if len(ids) < 2:
        raise UsageError(f"{source} has fewer than 2 characters to visualize")
    # one display character per id: bytes as latin-1
    symbols = [chr(b) for b in range(256)] if vocab.mode == "byte" else list(vocab.symbols)
    with tqdm(
        total=len(ids), unit="char", desc="recording", disable=args.quiet, file=sys.stderr
    ) as bar:
        analysis = analyze(
            model,
            ids,
            [symbols[i] for i in ids],
            args.chars,
            on_progress=lambda done: bar.update(done - bar.n),
        )
    write_page(analysis, out, run.resolve().name, source, symbols)
    summary = report(analysis) | {"html": str(out), "html_bytes": out.stat().st_size}
    summary["text"] = source
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{out}: {summary['html_bytes'] / 1e6:.1f} MB, {analysis.num_analyzed:,} characters")
    print(f"{'feature':18s} {'strongest cell':>18s} {'r':>7s}")
    for name, feature in summary["features"].items():
        if not feature["cells"]:
            print(f"{name:18s} {'(constant here)':>18s}")
            continue
        c = feature["cells"][0]
        cell = f"L{c['layer']} {c['quantity']}[{c['cell']}]"
        print(f"{name:18s} {cell:>18s} {c['r']:+7.3f}")
    return 0


# --- corpora -------------------------------------------------------------------------------------


def cmd_corpora(args: argparse.Namespace) -> int:
    rows = corpus.describe()
    if args.json:
        print(json.dumps([{"name": n, "description": d, "where": w} for n, d, w in rows]))
        return 0
    for name, description, where in rows:
        print(f"{name:12s} {description}\n{'':12s} {where}")
    print(f"\ncache: {corpus.cache_dir()} (set XDG_CACHE_HOME to move it)")
    return 0


# --- lab ----------------------------------------------------------------------------------------


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UsageError(f"{flag} takes positive integers, got {text!r}")
    return values


def _name_list(text: str, flag: str, choices: Sequence[str]) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    wrong = [v for v in values if v not in choices]
    if not values or wrong:
        raise UsageError(
            f"{flag} takes a comma-separated list of {', '.join(choices)}; got {text!r}"
        )
    return values


def cmd_gradflow(args: argparse.Namespace) -> int:
    def many(name: str, default: str) -> list[str]:
        given = getattr(args, name, [default])
        return [v.strip() for text in given for v in text.split(",") if v.strip()]

    cells = _name_list(",".join(many("cell", "rnn")), "--cell", CELLS)
    inits = _name_list(",".join(many("init", "default")), "--init", INITS)
    nets = _name_list(",".join(many("net", "rnn")), "--net", ("rnn", "mlp"))
    try:
        gains = [float(g) for g in many("gain", "1")]
        biases = [float(b) for b in many("forget_bias", "1")]
    except ValueError:
        raise UsageError("--gain and --forget-bias take numbers") from None
    depth = args.depth or args.length
    for flag, value in (("--length", args.length), ("--depth", depth), ("--hidden", args.hidden)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if min(gains) <= 0:
        raise UsageError(f"--gain must be positive, got {min(gains)}")
    configs = lab.configurations(
        cells,
        inits,
        gains,
        nets,
        biases,
        args.length,
        depth,
        hidden_size=args.hidden,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    if not configs:
        raise UsageError("--init identity (IRNN) is for --cell rnn or rnn-relu; pick another")
    results = []
    for run in getattr(args, "run", []):
        results.append(lab.probe_run(Path(run), args.length, args.batch_size, args.seed))
    for config in configs:
        if not args.quiet:
            _err(f"probing {config.label} over {config.length} steps")
        results.append(lab.probe(config))
    png = lab.plot_gradflow(results, Path(args.output))
    if args.json:
        print(json.dumps({"png": str(png), "probes": results}))
        return 0
    lag = min(100, args.length)
    print(
        f"{'configuration':36s} {'rate dL':>8s} {'rate J':>8s} {f'|dL| @{lag}':>10s}"
        f" {f'|J| @{lag}':>10s} {'sig_max':>8s} {'radius':>7s} {'Pascanu':>8s}"
    )
    for r in results:
        k = min(lag, len(r["lags"]) - 1)
        sigma = r["w_hh"].get("weight_hh_l0.sigma_max", math.nan)
        radius = r["w_hh"].get("weight_hh_l0.spectral_radius", math.nan)
        bound = r["pascanu"]["bound_rate"]
        print(
            f"{r['label'][:36]:36s} {r['rate']['loss_grad']:8.4f} {r['rate']['jacobian']:8.4f}"
            f" {r['loss_grad'][k]:10.3e} {r['jacobian'][k]:10.3e} {sigma:8.3f} {radius:7.3f}"
            f" {'-' if bound is None else f'{bound:.3f}':>8s}"
        )
    print(
        "rate: fitted factor per step (or layer) of |dL_T/dh_t| and |dh_T/dh_t|; Pascanu: "
        "gamma * sigma_max(W_hh), the bound on the rate (vanishing certain below 1); gated "
        "cells: per-gate spectra in --json"
    )
    print(f"plot: {png}")
    return 0


def cmd_longrange(args: argparse.Namespace) -> int:
    cells = _name_list(args.cells, "--cells", CELLS)
    lengths = _int_list(args.lengths, "--lengths")
    if args.seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {args.seeds}")
    config = LongRangeConfig(**_given(args, LongRangeConfig))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(getattr(args, "out", f"runs/longrange-{args.task}-{stamp}"))
    out.mkdir(parents=True, exist_ok=True)
    metric = lab.TASKS[args.task].metric

    def on_eval(run: lab.RunResult, m: dict[str, float]) -> None:
        if not args.quiet:
            extra = f" accuracy {m['accuracy']:.3f}" if "accuracy" in m else ""
            _err(
                f"{run.task} {run.cell:8s} T={run.length:<4d} seed {run.seed} step {run.steps:5d}"
                f" | test loss {m['loss']:.4f} (baseline {run.baseline:.4f}){extra}"
                f" | {run.wall_s:6.1f} s"
            )

    done: list[dict] = []

    def on_run(run: lab.RunResult) -> None:  # what is finished survives a kill
        done.append(dataclasses.asdict(run))
        checkpoint.write_json(out / "longrange.json", {"partial": True, "runs": done})

    result = lab.sweep(
        args.task,
        cells,
        lengths,
        config,
        args.seeds,
        args.until_solved,
        on_eval=on_eval,
        on_run=on_run,
        first_seed=args.first_seed,
    )
    checkpoint.write_json(out / "longrange.json", result)
    png = lab.plot_longrange(result, Path(getattr(args, "plot", out / "longrange.png")))
    if args.json:
        print(json.dumps(result | {"png": str(png)}))
        return 0
    print(f"{args.task}: solved = {result['criterion']}; {result['threads']} thread(s)")
    print(
        f"{'cell':8s} {'T':>5s} {'seed':>4s} {'steps':>6s} {'test loss':>10s} {'baseline':>9s}"
        f" {metric:>9s} {'solved':>6s} {'at step':>7s} {'wall s':>7s}"
    )
    for r in result["runs"]:
        print(
            f"{r['cell']:8s} {r['length']:5d} {r['seed']:4d} {r['steps']:6d}"
            f" {r['final']['loss']:10.4f} {r['baseline']:9.4f} {r['final'][metric]:9.4f}"
            f" {'yes' if r['solved'] else 'no':>6s} {r['steps_to_solve'] or '-':>7}"
            f" {r['wall_s']:7.1f}"
        )
    print("\nfraction solved (rows: cell, columns: T)")
    print(f"{'':8s}" + "".join(f"{t:>7d}" for t in lengths))
    for cell in cells:
        rates = {
            row["length"]: row["success_rate"] for row in result["table"] if row["cell"] == cell
        }
        print(f"{cell:8s}" + "".join(f"{rates[t]:7.2f}" for t in lengths))
    print(f"\nwall time {result['wall_s']:.0f} s; {out / 'longrange.json'}; {png}")
    return 0


# --- parser --------------------------------------------------------------------------------------


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str, str]] = {
    "train": (
        cmd_train,
        "train a model (or --resume one)",
        "example: rnnlab train my_text.txt --cell gru --minutes 20 --out runs/mine",
    ),
    "sample": (
        cmd_sample,
        "generate text from a trained run",
        "example: rnnlab sample runs/mine --prompt 'ROMEO:' --length 2000 --seed 7",
    ),
    "eval": (
        cmd_eval,
        "bits per character on the validation split or a file",
        "example: rnnlab eval runs/mine held_out.txt",
    ),
    "compress": (
        cmd_compress,
        "compress a file with a trained model (range coding of its predictions)",
        "example: rnnlab compress runs/mine notes.txt -o notes.txt.rz",
    ),
    "decompress": (
        cmd_decompress,
        "restore a file compressed by `rnnlab compress`, with the same run",
        "example: rnnlab decompress runs/mine notes.txt.rz -o notes.txt",
    ),
    "plot": (
        cmd_plot,
        "training curves of one or more runs as a PNG",
        "example: rnnlab plot runs/a runs/b -o curves.png",
    ),
    "viz": (
        cmd_viz,
        "a self-contained HTML page of what the cells track",
        "example: rnnlab viz runs/mine -o viz.html (then open viz.html in a browser)",
    ),
    "gradflow": (
        cmd_gradflow,
        "gradient norm against lag: vanishing and exploding gradients, measured",
        "example: rnnlab gradflow --cell rnn,lstm,gru --length 100 -o gradflow.png",
    ),
    "longrange": (
        cmd_longrange,
        "train cells on a synthetic long-range task; success against sequence length",
        "example: rnnlab longrange adding --cells rnn,lstm,gru --lengths 50,100,200 --steps 1500",
    ),
    "corpora": (
        cmd_corpora,
        "list the named corpora and where they are cached",
        "example: rnnlab corpora",
    ),
}


def build_parser() -> Parser:
    parser = Parser(prog="rnnlab", description="Character-level RNN language models.")
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    defaults = argparse.ArgumentDefaultsHelpFormatter
    p = {}
    for name, (fn, summary, example) in COMMANDS.items():
        p[name] = subs.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary,
            epilog=example,
            formatter_class=defaults,
        )
        p[name].set_defaults(func=fn)

    t = p["train"]
    t.add_argument("corpus", nargs="?", help="file, folder or named corpus (default: python)")
    t.add_argument("--glob", help="for a folder: only files matching this pattern")
    t.add_argument("--bytes", action="store_true", help="model raw bytes (any file) not characters")
    t.add_argument("--out", help="run directory (default: runs/CORPUS-TIME)")
    t.add_argument("--resume", metavar="RUN", help="continue RUN exactly where it stopped")
    t.add_argument("--quiet", action="store_true", help="no progress bar or previews")
    t.add_argument(
        "--final-sample",
        type=int,
        default=600,
        metavar="N",
        help="characters sampled from the best weights at the end",
    )
    _add_config_flags(t, ModelConfig, "model (fixed for the life of a run)")
    _add_config_flags(t, TrainConfig, "training")

    s = p["sample"]
    s.add_argument("run", help="run directory")
    s.add_argument("--prompt", default="", help="text to start from")
    s.add_argument("--length", type=int, default=1000, help="characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="0 is greedy")
    s.add_argument("--top-k", type=int, default=0, help="keep the k most likely (0: all)")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus threshold (1: off)")
    s.add_argument("--seed", type=int, default=None, help="same seed, same text")
    s.add_argument("--num-samples", type=int, default=1, help="samples drawn in parallel")
    s.add_argument("--stream", action="store_true", help="write characters as they come")
    s.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "int8"),
        default="auto",
        help="how the recurrent weights are stored while sampling: float32 is exact; int8 "
        "(weight-only, one scale per row) reads a quarter of the bytes, about 2x faster at "
        "batch 1, logits within about 1e-3; auto: on a CPU int8 for up to 8 samples, "
        "bfloat16 for more (where the CPU has it), float32 elsewhere",
    )

    pl = p["plot"]
    pl.add_argument("runs", nargs="+", help="run directories")
    pl.add_argument("-o", "--output", default="curves.png", help="PNG to write")

    e = p["eval"]
    e.add_argument("run", help="run directory")
    e.add_argument("file", nargs="?", help="text file to score (default: the validation split)")
    e.add_argument("--chunk-len", type=int, default=8192, help="characters per forward call")
    e.add_argument("--plot", metavar="PNG", help="also draw where the model beats the n-gram")
    e.add_argument(
        "--quick",
        action="store_true",
        help="only the uniform and unigram rungs (no n-grams, no compressors)",
    )

    e.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic evaluation: a gradient step after each segment (Krause et al. 2018); "
        "prints static and dynamic bpc",
    )
    e.add_argument(
        "--dynamic-tune",
        type=int,
        default=0,
        metavar="N",
        help="choose --dynamic-lr and --dynamic-decay on N characters of the training split "
        "(never the evaluated text) before evaluating; 0: use the flags",
    )
    _add_config_flags(e, dynamic.DynamicConfig, "dynamic evaluation")

    for name in ("compress", "decompress"):
        c = p[name]
        c.add_argument("run", help="run directory (the same one for both directions)")
        c.add_argument("file", help="file to compress" if name == "compress" else ".rz file")
        c.add_argument(
            "-o",
            "--output",
            help="file to write (default: FILE.rz; for decompress FILE without .rz)",
        )
        c.add_argument(
            "--weights",
            choices=("best", "last"),
            default="best",
            help="best-validation weights or those of the last step",
        )
    c = p["compress"]
    c.add_argument(
        "--segments",
        type=int,
        default=compression.DEFAULT_SEGMENTS,
        help="pieces coded side by side as one batch (speed; each costs about log2 V bits)",
    )
    c.add_argument(
        "--dynamic", action="store_true", help="adapt the weights while coding (both directions)"
    )
    _add_config_flags(c, dynamic.DynamicConfig, "dynamic evaluation (with --dynamic)")

    v = p["viz"]
    v.add_argument("run", help="run directory")
    v.add_argument("file", nargs="?", help="text file (default: the validation split)")
    v.add_argument("-o", "--output", default="viz.html", help="HTML page to write")
    v.add_argument(
        "--chars",
        type=int,
        default=1500,
        help=f"characters shown on the page (at most {MAX_SHOWN:,}; about 1.8 MB each 1,000 "
        "for a 2x512 LSTM)",
    )
    v.add_argument(
        "--feature-chars",
        type=int,
        default=10_000,
        help="characters the feature correlations and gate saturation cover (at least --chars)",
    )
    v.add_argument("--quiet", action="store_true", help="no progress bar")

    gf = p["gradflow"]
    each = "; repeat the flag or give a comma-separated list to overlay several"
    gf.add_argument(
        "--cell", action="append", default=argparse.SUPPRESS, help=f"cell(s) (default: rnn){each}"
    )
    gf.add_argument(
        "--init",
        action="append",
        default=argparse.SUPPRESS,
        help=f"init preset(s) (default: default){each}",
    )
    gf.add_argument(
        "--gain",
        action="append",
        default=argparse.SUPPRESS,
        help=f"factor on W_hh after init (default: 1){each}",
    )
    gf.add_argument(
        "--net",
        action="append",
        default=argparse.SUPPRESS,
        help="rnn (T steps, tied weights) and/or mlp (--depth layers of the same cell, untied "
        f"weights) (default: rnn){each}",
    )
    gf.add_argument("--length", type=int, default=100, help="T: steps to backpropagate through")
    gf.add_argument("--depth", type=int, default=0, help="layers of --net mlp (0: --length)")
    gf.add_argument("--hidden", type=int, default=64, help="units per layer")
    gf.add_argument("--batch-size", type=int, default=16, help="sequences averaged over")
    gf.add_argument(
        "--forget-bias",
        action="append",
        default=argparse.SUPPRESS,
        help=f"LSTM forget-gate bias(es) (default: 1){each}",
    )
    gf.add_argument("--seed", type=int, default=0, help="weights, inputs and readout")
    gf.add_argument(
        "--run",
        action="append",
        default=argparse.SUPPRESS,
        metavar="RUN",
        help="also probe a trained run (repeatable)",
    )
    gf.add_argument("-o", "--output", default="gradflow.png", help="PNG to write")
    gf.add_argument("--quiet", action="store_true", help="no progress lines")

    lr = p["longrange"]
    lr.add_argument("task", choices=LAB_TASKS, help="the synthetic task")
    lr.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated cells to compare")
    lr.add_argument("--lengths", default="50,100,200", help="comma-separated sequence lengths T")
    lr.add_argument("--seeds", type=int, default=1, help="runs per (cell, length)")
    lr.add_argument("--first-seed", type=int, default=0, help="seeds run: S, S+1, ..., S+k-1")
    lr.add_argument(
        "--until-solved", action="store_true", help="stop a run at the first solved evaluation"
    )
    lr.add_argument(
        "--out",
        default=argparse.SUPPRESS,
        help="folder for longrange.json (default: runs/longrange-TASK-TIME)",
    )
    lr.add_argument(
        "--plot",
        metavar="PNG",
        default=argparse.SUPPRESS,
        help="where to draw the plot (default: longrange.png in --out)",
    )
    lr.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_flags(lr, LongRangeConfig, "training and presets")

    for q in (s, e, v):
        q.add_argument(
            "--unknown",
            choices=("error", "skip"),
            default="error",
            help="characters outside the vocabulary: stop with a list, or drop them",
        )
        q.add_argument(
            "--weights",
            choices=("best", "last"),
            default="best",
            help="best-validation weights or those of the last step",
        )
    for q in (s, e):
        q.add_argument(
            "--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu", help="where to run"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (``python -m rnnlab`` passes it to sys.exit)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return args.func(args)
    except (UsageError, *USER_ERRORS) as e:
        if debug:
            raise
        _err(f"rnnlab: error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("rnnlab: interrupted")
        return 130
    except Exception as e:
        if debug:
            raise
        _err(f"rnnlab: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        return 1
