"""Evaluating a run: its exact bits per character on the validation split or any text, beside
the baseline ladder, and where it beats the best n-gram (``evaluate`` -> ``EvalReport``).
The subjects live in their own modules: bpc (exact scoring), ladder (baselines), wins (the
tallies); this module puts them together for a run directory. Never imports training or above.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, ctxrun, files
from .adaptive import AdaptConfig, adaptive_bits_per_char
from .bpc import LN2, bits_per_char, iter_char_nats, iter_char_nats_batched, loss_nats
from .dynamic import DynamicConfig, dynamic_bits_per_char, gradient_stats, tune
from .errors import DivergedError, UsageError
from .ladder import (
    COMPRESSORS,
    CONTEXT_BYTES,
    KneserNey,
    Ladder,
    baseline_ladder,
    compressor_bpc,
    uniform_bpc,
    unigram_bpc,
)
from .model import LM, CharLM, Ensemble, count_parameters, resolve_device
from .options import EvalOptions
from .rzmodel import auto_segments
from .tokens import corpus_splits, encode_text
from .vocab import Vocab
from .wins import (
    CLASSES,
    DISTANCE_BINS,
    ClosingScanner,
    WinsTally,
    char_class,
    closing_distances,
    where_the_model_wins,
)

__all__ = [  # the scoring names are re-exported for callers of the older, single module
    "CLASSES",
    "COMPRESSORS",
    "CONTEXT_BYTES",
    "DISTANCE_BINS",
    "LN2",
    "ClosingScanner",
    "Comparison",
    "DynamicReport",
    "EvalReport",
    "KneserNey",
    "Ladder",
    "WinsTally",
    "baseline_ladder",
    "bits_per_char",
    "char_class",
    "closing_distances",
    "compare",
    "compressor_bpc",
    "evaluate",
    "evaluate_dynamic",
    "iter_char_nats",
    "loss_nats",
    "uniform_bpc",
    "unigram_bpc",
    "where_the_model_wins",
]


@dataclass(frozen=True)
class Comparison:
    """The model's exact score on a text, and where it beats the best n-gram (or None)."""

    loss_nats: float
    num_chars: int
    seconds: float
    wins: dict | None


def compare(
    model: LM,
    eval_ids: np.ndarray,
    symbols: Sequence[str],
    ngram: KneserNey | None = None,
    chunk_len: int = 8192,
    exact: bool = True,
) -> Comparison:
    """Score ``eval_ids[1:]`` with the model, exactly (state carried), or with ``exact=False``
    by warmed-up segments side by side (``bpc.iter_char_nats_batched``), and, when an n-gram
    is given, tally where the model wins beside it; one chunk in memory at a time."""
    t0 = time.perf_counter()
    total, start = 0.0, 1
    tally = WinsTally(symbols) if ngram is not None else None
    if tally:
        tally.add(eval_ids[:1], None, None)
    scores = (
        iter_char_nats(model, eval_ids, chunk_len)
        if exact
        else iter_char_nats_batched(model, eval_ids)
    )
    for nats in scores:
        total += float(nats.sum())
        stop = start + len(nats)
        if tally:
            ngram_bits = ngram.char_bits(eval_ids, start, stop)
            tally.add(eval_ids[start:stop], nats / LN2, ngram_bits)
        start = stop
    seconds = time.perf_counter() - t0
    n = len(eval_ids) - 1
    return Comparison(total / n, n, seconds, tally.result() if tally else None)


@dataclass(frozen=True)
class EvalReport:
    """What ``evaluate`` found; ``to_json()`` is what ``rnnlab eval --json`` prints."""

    text: str  # what was scored: "validation split" or the file's path
    num_chars: int  # characters scored (the first one has no context and is not)
    seconds: float  # the model's scoring time
    exact: bool  # one pass with the state carried; False: warmed-up segments side by side
    bpc: float
    loss_nats: float
    baselines: dict[str, float]  # rung name -> bits per character
    best_baseline: str
    below_best_baseline_bpc: float  # positive: the model is better than every baseline
    where_the_model_wins: dict | None  # by character class and closing distance; None: --quick
    # the model adapting and mixed with the run's context tables, as `rnnlab compress` codes
    # the text (128 segments, each one's first character at log2 V); None: --quick or no tables
    compressed_bpc: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ladder(vocab, train_ids, eval_ids, quick: bool) -> Ladder:
    V = len(vocab)
    if train_ids is not None and not quick:
        symbols = vocab.symbols

        def decode(ids: np.ndarray) -> bytes:  # what a compressor sees
            if vocab.mode == "byte":
                return np.asarray(ids, dtype=np.uint8).tobytes()
            return "".join([symbols[i] for i in np.asarray(ids).tolist()]).encode("utf-8")

        return baseline_ladder(train_ids, eval_ids, V, decode)
    rungs = {"uniform": uniform_bpc(V)}
    if train_ids is not None:
        rungs["unigram"] = unigram_bpc(train_ids, eval_ids, V)
    return Ladder(rungs)


def _finite(bpc: float, what: str, fix: str) -> float:
    """``bpc`` if it is a number; a NaN or Inf is never reported as a result.

    Raises:
        DivergedError: ``what`` diverged (the CLI exits 3); ``fix`` says what to change.
    """
    if not math.isfinite(bpc):
        raise DivergedError(f"{what} gave {bpc} bpc, not a result; {fix}")
    return bpc


@contextmanager
def _scored_text(
    vocab: Vocab,
    text_or_path: str | Path | None,
    validation: Callable[[], np.ndarray],
    unknown: str,
) -> Iterator[tuple[np.ndarray, str]]:
    """(ids, name) of the text to score: ``validation()`` when no text is given, else the text
    encoded into a temporary folder (memory-mapped) that lives as long as the context."""
    with tempfile.TemporaryDirectory(prefix="rnnlab-eval-") as scratch:
        if text_or_path is None:
            yield validation(), "validation split"
        else:
            yield encode_text(vocab, text_or_path, Path(scratch), unknown)


def evaluate(
    run: str | Path,
    text_or_path: str | Path | None = None,
    *,
    weights: str = "best",
    device: str = "cpu",
    chunk_len: int = 8192,
    quick: bool = False,
    unknown: str = "error",
    exact: bool = False,
) -> EvalReport:
    """Exact bits per character of a run's model, beside the baseline ladder.

    On the validation split (``text_or_path=None``) the ladder's numbers are also written to
    the run's ``baselines.json``, where ``rnnlab plot`` finds them.

    Args:
        run: the run directory.
        text_or_path: None (the run's validation split), a ``Path`` (a text file, read a piece
            at a time) or a ``str`` (the text itself).
        weights: "best" (best validation) or "last".
        device: "cpu", "cuda", "mps" or "auto".
        chunk_len: characters per forward call (memory only; the result does not change).
        quick: only the uniform and unigram rungs (no n-grams, no compressors, no wins).
        unknown: characters outside the vocabulary: "error" or "skip".
        exact: one pass at batch 1, the state carried over the whole text; the default reads
            64 segments side by side, each warmed up on the 512 characters before it (within
            0.002 bpc of exact, measured). Scan cells (minGRU, minLSTM) are always exact.

    Returns:
        An EvalReport. Raises UsageError (or a subclass) for anything the caller can fix.

    Example:
        >>> report = rnnlab.evaluate("runs/a", Path("held_out.txt"))  # doctest: +SKIP
        >>> report.bpc, report.best_baseline
    """
    opts = EvalOptions(
        weights=weights,
        device=device,
        chunk_len=chunk_len,
        quick=quick,
        unknown=unknown,
        exact=exact,
    )
    run = Path(run)
    model, vocab, config = checkpoint.load_model(
        run, checkpoint.WEIGHTS[opts.weights], resolve_device(opts.device), ensemble=True
    )
    hint = f"pass a text file: rnnlab eval {run} FILE"
    train_ids = val_ids = None
    try:
        train_ids, val_ids = corpus_splits(config.corpus, config.train.val_fraction, hint)
    except UsageError:
        if text_or_path is None:
            raise
    with _scored_text(vocab, text_or_path, lambda: val_ids, opts.unknown) as (eval_ids, name):
        if len(eval_ids) < 2:
            raise UsageError(f"{name} has fewer than 2 characters to evaluate")
        ladder = _ladder(vocab, train_ids, eval_ids, opts.quick)
        symbols = [chr(i) for i in range(256)] if vocab.mode == "byte" else vocab.symbols
        exact = opts.exact or model.parallel_in_time  # a scan cell's exact pass is parallel
        scored = compare(model, eval_ids, symbols, ladder.best_ngram_model, opts.chunk_len, exact)
        first = model.members[0] if isinstance(model, Ensemble) else model  # compress reads it
        compressed = None if opts.quick else _compressed_bpc(run, first, np.asarray(eval_ids))
    bpc = scored.loss_nats / LN2
    if not math.isfinite(bpc):  # finite weights whose predictions overflow: not a result
        raise checkpoint.CheckpointError(
            f"{run}: the model's predictions on {name} are not finite ({bpc} bpc); "
            "these weights are unusable, use another run or retrain"
        )
    baselines = ladder.rungs
    if text_or_path is None:  # remembered for `rnnlab plot`
        with suppress(OSError, UsageError):  # a cache: a read-only run is scored all the same
            files.write_json(run / checkpoint.BASELINES, baselines)
    best = min(baselines, key=baselines.get)
    wins = None if scored.wins is None else scored.wins | {"ngram": ladder.best_ngram}
    return EvalReport(
        text=name,
        num_chars=scored.num_chars,
        seconds=scored.seconds,
        exact=exact,
        bpc=bpc,
        loss_nats=scored.loss_nats,
        baselines=baselines,
        best_baseline=best,
        below_best_baseline_bpc=baselines[best] - bpc,
        where_the_model_wins=wins,
        compressed_bpc=compressed,
    )


def _compressed_bpc(run: Path, model: CharLM, ids: np.ndarray) -> float | None:
    """The ladder's top rung: what `rnnlab compress` spends (adaptive and mixed), if the run
    has context tables."""
    tables = ctxrun.run_tables(run, model.config.vocab_size, count_parameters(model))
    if tables is None:
        return None
    return adaptive_bits_per_char(
        model, ids, AdaptConfig(), auto_segments(len(ids)), tables=tables
    ).bpc


@dataclass(frozen=True)
class DynamicReport:
    """What ``evaluate_dynamic`` found: the static and the dynamic score of the same text."""

    text: str
    num_chars: int
    static_bpc: float
    static_seconds: float
    dynamic_bpc: float
    dynamic_seconds: float
    dynamic: dict[str, Any]  # the settings used (rule, learning rate, decay, segment length)
    tuning: list[dict[str, Any]] | None  # the grid tried on the training split, if tuned

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_dynamic(
    run: str | Path,
    text_or_path: str | Path | None = None,
    *,
    settings: DynamicConfig | None = None,
    tune_chars: int = 0,
    weights: str = "best",
    device: str = "cpu",
    chunk_len: int = 8192,
    unknown: str = "error",
    on_progress: Callable[[int, int], None] | None = None,
) -> DynamicReport:
    """Bits per character with dynamic evaluation (Krause et al. 2018): each segment is scored,
    then the weights take a gradient step on it, so every character is still predicted before
    the model has seen it.

    Args:
        run: the run directory; its training split gives the rms rule's statistics.
        text_or_path: None (the validation split), a ``Path`` or the text itself.
        settings: the update rule and its settings (DynamicConfig's defaults if None).
        tune_chars: choose learning rate and decay on this many characters of the training
            split (never the evaluated text) first; 0 keeps ``settings``.
        weights, device, chunk_len, unknown: as in ``evaluate``.
        on_progress: called as the dynamic pass goes, with (characters done, in all).

    Returns:
        A DynamicReport with the static score of the same text beside the dynamic one.
    """
    settings = settings or DynamicConfig()
    opts = EvalOptions(weights=weights, device=device, chunk_len=chunk_len, unknown=unknown)
    if not 0 <= tune_chars <= 10_000_000:
        raise UsageError(f"--dynamic-tune must be between 0 and 10,000,000, got {tune_chars}")
    run = Path(run)
    model, vocab, config = checkpoint.load_model(
        run, checkpoint.WEIGHTS[opts.weights], resolve_device(opts.device)
    )
    hint = "dynamic evaluation needs the run's training text on this machine"
    train_ids, val_ids = corpus_splits(config.corpus, config.train.val_fraction, hint)
    with _scored_text(vocab, text_or_path, lambda: val_ids, opts.unknown) as (eval_ids, name):
        if len(eval_ids) < 2:
            raise UsageError(f"{name} has fewer than 2 characters to evaluate")
        stats = gradient_stats(model, train_ids, settings.segment_len)
        trials = None
        if tune_chars:  # on the training split just before the statistics' slice
            piece = train_ids[-(20_000 + tune_chars) : -20_000]
            settings, trials = tune(
                model, piece, stats, settings.rule, segment_lens=(settings.segment_len,)
            )
        started = time.perf_counter()
        static_bpc = bits_per_char(model, eval_ids, opts.chunk_len)
        static_s = time.perf_counter() - started
        result = dynamic_bits_per_char(model, eval_ids, settings, stats, on_progress=on_progress)
    _finite(static_bpc, "the static pass", "these weights are unusable; use another run")
    _finite(result.bpc, "dynamic evaluation", "lower --dynamic-lr, or tune it: --dynamic-tune N")
    return DynamicReport(
        name, len(eval_ids) - 1, static_bpc, static_s, result.bpc, result.seconds,
        result.config, trials,
    )  # fmt: skip


@dataclass(frozen=True)
class AdaptReport:
    """What ``evaluate_adaptive`` found: the same streams read with and without adaptation;
    both count every character (each stream's first at log2 V), as ``rnnlab compress`` codes
    them, so ``adaptive_bpc`` (``mixed_bpc`` when the run has context tables) is what the
    compressed file costs before its header."""

    text: str
    num_chars: int
    streams: int
    static_bpc: float
    adaptive_bpc: float
    seconds: float
    adapt: dict[str, Any]
    mixed_bpc: float | None = None  # adapted and mixed with the run's context tables

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_adaptive(
    run: str | Path,
    text_or_path: str | Path | None = None,
    *,
    settings: AdaptConfig | None = None,
    streams: int | None = None,
    weights: str = "best",
    device: str = "cpu",
    unknown: str = "error",
    mix: bool = True,
    context_mb: float | None = None,
) -> AdaptReport:
    """Bits per character of the text read as ``rnnlab compress`` reads it: ``streams`` pieces
    side by side, the output layer adapting and the match model learning (adaptive.py).

    Args:
        run: the run directory.
        text_or_path: None (the validation split), a ``Path`` or the text itself.
        settings: the adaptation settings (AdaptConfig's defaults if None).
        streams: pieces read side by side (``rnnlab compress --segments``; None: as it does
            when not told, ``rzmodel.auto_segments`` of the text's length).
        weights, device, unknown: as in ``evaluate``.
        mix: also read it mixed with the run's context tables, if it has them.
        context_mb: their size limit in MB (default: ctxrun.limit_bytes's).
    """
    settings = settings or AdaptConfig()
    opts = EvalOptions(weights=weights, device=device, unknown=unknown)
    if streams is not None and not 1 <= streams <= 1 << 16:
        raise UsageError(f"--segments must be between 1 and 65,536, got {streams}")
    model, vocab, config = checkpoint.load_model(
        Path(run), checkpoint.WEIGHTS[opts.weights], resolve_device(opts.device)
    )
    hint = "give a FILE, or keep the run's corpus on this machine"

    def validation() -> np.ndarray:
        return corpus_splits(config.corpus, config.train.val_fraction, hint)[1]

    with _scored_text(vocab, text_or_path, validation, opts.unknown) as (ids, name):
        if len(ids) < 1:
            raise UsageError(f"{name} is empty")
        tables = None
        if mix:
            weights_n = count_parameters(model)
            tables = ctxrun.run_tables(Path(run), len(vocab), weights_n, context_mb)
        # one pass: with tables it scores the adapted network before and after mixing
        streams = auto_segments(len(ids)) if streams is None else streams
        result = adaptive_bits_per_char(model, np.asarray(ids), settings, streams, tables=tables)
    adaptive_bpc = result.bpc if tables is None else result.unmixed_bpc
    mixed_bpc = None if tables is None else result.bpc
    _finite(result.static_bpc, "the static pass", "these weights are unusable; use another run")
    _finite(adaptive_bpc, "the adaptation", "lower --adapt-head-lr")
    return AdaptReport(
        name, result.num_chars, result.streams, result.static_bpc, adaptive_bpc, result.seconds,
        result.config, mixed_bpc,
    )  # fmt: skip
