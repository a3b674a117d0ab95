"""``visualize``: a run's model recorded over a text, as the self-contained HTML page and the
statistics it shows (the strongest cell for each text feature). Imports training and below."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint
from ..config import _check, _check_range, _check_types, _opt
from ..errors import UsageError
from ..model import CharLM
from ..options import UNKNOWN, WEIGHTS
from ..tokens import corpus_splits, encode_text
from ..vocab import Vocab
from .page import MAX_SHOWN, PageRun, render_page, report
from .record import Analysis, analyze

MAX_FEATURE_CHARS = 10_000_000  # the features of every character are held at once


@dataclass(frozen=True)
class VizOptions:
    """What `rnnlab viz` shows (see ``visualize``)."""

    chars: int = _opt(
        1500,
        "--chars",
        f"characters shown on the page (at most {MAX_SHOWN:,}; about 1.8 MB each 1,000 for a "
        "2x512 LSTM)",
    )
    feature_chars: int = _opt(
        10_000,
        "--feature-chars",
        "characters the feature correlations and gate saturation cover (at least --chars)",
    )
    unknown: str = _opt(
        "error",
        "--unknown",
        "characters outside the vocabulary: stop with a list, or drop them",
        UNKNOWN,
    )
    weights: str = _opt(
        "best", "--weights", "best-validation weights or those of the last step", WEIGHTS
    )

    def __post_init__(self) -> None:
        _check_types(self)
        _check(
            isinstance(self.chars, int) and 1 <= self.chars <= MAX_SHOWN,
            f"--chars must be between 1 and {MAX_SHOWN:,} (every shown character carries every "
            f"cell's activations), got {self.chars}",
        )
        _check_range(self.feature_chars, 0, MAX_FEATURE_CHARS, "--feature-chars")
        _check(self.unknown in UNKNOWN, f"--unknown must be one of {', '.join(UNKNOWN)}")
        _check(self.weights in WEIGHTS, f"--weights must be one of {', '.join(WEIGHTS)}")


@dataclass(frozen=True)
class Visualization:
    """The page and what it found."""

    html: str  # the self-contained page (no network needed to open it)
    summary: dict[str, Any]  # page.report: strongest cells per feature, saturation, "text"
    analysis: Analysis


def visualize(
    run: str | Path,
    text_or_path: str | Path | None = None,
    *,
    chars: int = 1500,
    feature_chars: int = 10_000,
    unknown: str = "error",
    weights: str = "best",
    on_progress: Callable[[int, int], None] | None = None,
    compare_with: str | Path | None = None,
) -> Visualization:
    """Record a run's model over a text and render the page of what its cells track.

    Args:
        run: the run directory.
        text_or_path: None (the run's validation split), a ``Path`` (a text file) or a ``str``
            (the text itself).
        chars: characters shown on the page (at most ``MAX_SHOWN``).
        feature_chars: characters the correlations and saturation cover (at least ``chars``).
        unknown: characters outside the vocabulary: "error" or "skip".
        weights: "best" or "last".
        on_progress: called as ``on_progress(done, total)`` characters while recording.
        compare_with: a second run directory, shown beside the first on the same text (every
            character of which it must know), with the characters where their predictions
            differ most.

    Returns:
        A Visualization; write ``.html`` to a file and open it in a browser.
    """
    opts = VizOptions(chars, feature_chars, unknown, weights)
    run = Path(run)
    model, vocab, config = checkpoint.load_model(run, checkpoint.WEIGHTS[opts.weights])
    wanted = max(opts.chars, opts.feature_chars)
    with tempfile.TemporaryDirectory(prefix="rnnlab-viz-") as scratch:
        if text_or_path is None:
            hint = f"pass a text file: rnnlab viz {run} FILE"
            _, val_ids = corpus_splits(config.corpus, config.train.val_fraction, hint)
            source = f"the validation split of {config.corpus.source}"
        else:
            val_ids, source = encode_text(vocab, text_or_path, Path(scratch), unknown, wanted)
        ids = np.asarray(val_ids[:wanted], dtype=np.int64)
    if len(ids) < 2:
        raise UsageError(f"{source} has fewer than 2 characters to visualize")
    symbols = display_symbols(vocab)
    second = None
    if compare_with is not None:  # checked before the long recording of the first run
        second = _load_second(Path(compare_with), opts.weights, vocab, [symbols[i] for i in ids])
    total = len(ids) * (2 if second else 1)
    progress = None if on_progress is None else (lambda done: on_progress(done, total))
    analysis = analyze(model, ids, [symbols[i] for i in ids], opts.chars, on_progress=progress)
    summary = report(analysis) | {"text": source}
    page_run = None
    if second is not None:
        model_b, vocab_b, ids_b, name_b = second
        progress_b = None if on_progress is None else (lambda d: on_progress(len(ids) + d, total))
        symbols_b = display_symbols(vocab_b)
        text_b = [symbols_b[i] for i in ids_b]
        analysis_b = analyze(model_b, ids_b, text_b, opts.chars, on_progress=progress_b)
        page_run = PageRun(analysis_b, name_b, symbols_b)
        summary["compare"] = report(analysis_b) | {"run": name_b}
    html = render_page(analysis, run.resolve().name, source, symbols, page_run)
    return Visualization(html, summary, analysis)


def page_for_ids(model: CharLM, vocab: Vocab, title: str, ids: list[int]) -> str:
    """The page of ``model`` on a text already in its ids (all of it shown, up to MAX_SHOWN
    characters): what `rnnlab serve`'s viz tab renders for a pasted text.

    Args:
        model, vocab: a loaded run's model and vocabulary.
        title: the run's name; ids: (N,) the text, N >= 2.

    Returns:
        The page's HTML.
    """
    ids_np = np.asarray(ids[:MAX_SHOWN], dtype=np.int64)
    symbols = display_symbols(vocab)
    analysis = analyze(model, ids_np, [symbols[i] for i in ids_np], len(ids_np))
    return render_page(analysis, title, "the given text", symbols)


def display_symbols(vocab: Vocab) -> list[str]:
    """One display character per id: the vocabulary's, or bytes as latin-1."""
    return [chr(b) for b in range(256)] if vocab.mode == "byte" else list(vocab.symbols)


def _load_second(
    run_b: Path, weights: str, vocab: Vocab, text: list[str]
) -> tuple[CharLM, Vocab, np.ndarray, str]:
    """The second run's model and the same text in its ids: every character of the text must
    be one it knows, or the two would not read the same text."""
    model_b, vocab_b, _ = checkpoint.load_model(run_b, checkpoint.WEIGHTS[weights])
    if vocab_b.mode != vocab.mode:
        raise UsageError(
            f"{run_b} reads {vocab_b.mode}s and the first run {vocab.mode}s; compare two runs "
            "of the same mode (--bytes or not)"
        )
    if vocab.mode == "byte":
        ids_b = np.array([ord(c) for c in text], dtype=np.int64)  # latin-1 display == the byte
    else:
        missing = vocab_b.unknown("".join(text))
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise UsageError(
                f"{run_b} does not know {len(missing)} character(s) of the text ({shown}); both "
                "runs must share the text's characters: pick a text both were trained on"
            )
        ids_b = np.array(vocab_b.encode("".join(text)), dtype=np.int64)
    name = run_b.resolve().name
    return model_b, vocab_b, ids_b, name
