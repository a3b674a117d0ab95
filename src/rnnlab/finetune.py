"""Fine-tuning: a new run that starts from another run's weights (``rnnlab train NEW_TEXT
--init-from RUN``), with its own optimizer and schedule.

The new run keeps the base run's vocabulary, so every known character keeps its id and its
embedding and output rows; characters the base never saw are an error that lists them, or with
``extend_vocab`` are appended after the known ones (new embedding rows: the mean of the known
rows; new output rows: zero weights and the smallest known bias, so they start unlikely).
The corpus is encoded with its own sorted vocabulary (data.py); ``Tuned.remap`` moves those ids
into the run's. Imports checkpoint and below; training calls ``prepare``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .config import ModelConfig
from .errors import UsageError
from .vocab import Vocab


@dataclass(frozen=True)
class InitFrom:
    """Where a fine-tuning run starts: a run directory, and whether new characters may join."""

    run: Path
    extend_vocab: bool = False


@dataclass(frozen=True)
class Tuned:
    """What training needs to start (or resume) a run whose vocabulary is not its text's own.

    ``weights`` and ``model_config`` are set when starting from a base run, None on resume.
    """

    vocab: Vocab
    table: np.ndarray  # (V_text,) id in the text's sorted vocabulary -> id in ``vocab``
    model_config: ModelConfig | None = None
    weights: dict[str, torch.Tensor] | None = None

    def remap(self, ids: np.ndarray) -> np.ndarray:
        """Token ids of the text's vocabulary -> the run's (a copy in memory)."""
        return self.table[np.asarray(ids)].astype(np.asarray(ids).dtype, copy=False)


def merge_vocab(base: Vocab, text: Vocab, extend: bool, base_name: str = "the base run") -> Vocab:
    """The base vocabulary, with the text's unseen characters appended in sorted order if
    ``extend``; without it, any unseen character is a UsageError listing them."""
    if base.mode != text.mode:
        flag = "--bytes" if base.mode == "byte" else "no --bytes"
        raise UsageError(f"{base_name} models {base.mode}s, the new text {text.mode}s; use {flag}")
    new = sorted(set(text.symbols) - set(base.symbols))
    if not new:
        return base
    if not extend:
        shown = " ".join(repr(c) for c in new[:20]) + (
            f" and {len(new) - 20} more" * (len(new) > 20)
        )
        raise UsageError(
            f"{len(new)} character(s) of the new text are not in {base_name}'s vocabulary: "
            f"{shown}; pass --extend-vocab to add them (new rows, known characters keep theirs)"
        )
    return Vocab(base.mode, base.symbols + tuple(new))


def extend_weights(state: dict[str, torch.Tensor], new_rows: int) -> dict[str, torch.Tensor]:
    """A CharLM state dict with ``new_rows`` more symbols: rows appended to the embedding and
    the output layer, every existing row unchanged."""
    if new_rows == 0:
        return dict(state)
    out = dict(state)
    emb = state["embedding.weight"]  # (V, E)
    out["embedding.weight"] = torch.cat([emb, emb.mean(0, keepdim=True).expand(new_rows, -1)])
    w, b = state["head.weight"], state["head.bias"]  # (V, H), (V,)
    out["head.weight"] = torch.cat([w, w.new_zeros(new_rows, w.size(1))])
    out["head.bias"] = torch.cat([b, b.min().expand(new_rows)])
    return out


def init_from(
    run_dir: Path, text_vocab: Vocab, extend_vocab: bool = False
) -> tuple[dict[str, torch.Tensor], Vocab, ModelConfig]:
    """A base run's best weights moved into the vocabulary a new text needs.

    Args:
        run_dir: the base run.
        text_vocab: the new text's own (sorted) vocabulary.
        extend_vocab: allow characters the base never saw (else a UsageError lists them).

    Returns:
        (state dict for a CharLM of the merged vocabulary, the merged vocabulary, its config)
    """
    run_dir = Path(run_dir)
    config = checkpoint.load_config(run_dir)
    base_vocab = checkpoint.load_vocab(run_dir)
    if config.model.vocab_size != len(base_vocab):
        raise checkpoint.CheckpointError(f"{run_dir}: vocab.json does not match config.json")
    merged = merge_vocab(base_vocab, text_vocab, extend_vocab, str(run_dir))
    # names, shapes and dtypes checked against its config before anything is read
    weights, _ = checkpoint.load_weights(run_dir / checkpoint.BEST, config.model)
    weights = extend_weights(weights, len(merged) - len(base_vocab))
    return weights, merged, dataclasses.replace(config.model, vocab_size=len(merged))


def id_table(source: Vocab, target: Vocab) -> np.ndarray:
    """(len(source),) the id in ``target`` of each of ``source``'s symbols (all must be there)."""
    ids = [target.id_of(s) if source.mode == "char" else s for s in source.symbols]
    missing = [s for s, i in zip(source.symbols, ids, strict=True) if i is None]
    if missing:
        raise checkpoint.CheckpointError(
            f"the text holds characters the run's vocabulary lacks: {missing[:20]}"
        )
    return np.asarray(ids, dtype=np.int64)


def prepare(init: InitFrom | None, resumed_run: Path | None, text_vocab: Vocab) -> Tuned | None:
    """What a fine-tuning run needs, or None for a plain run.

    Args:
        init: start from this run's weights (a new run), or None.
        resumed_run: the run directory being resumed (its vocab.json may extend the text's).
        text_vocab: the corpus's own vocabulary (the ids of its token file).
    """
    if init is not None:
        weights, vocab, config = init_from(init.run, text_vocab, init.extend_vocab)
        return Tuned(vocab, id_table(text_vocab, vocab), config, weights)
    if resumed_run is not None:
        vocab = checkpoint.load_vocab(resumed_run)
        if vocab != text_vocab:  # a fine-tuned run: its own vocabulary, not the text's
            return Tuned(vocab, id_table(text_vocab, vocab))
    return None
