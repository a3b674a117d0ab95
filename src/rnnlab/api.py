"""The Python API that mirrors the CLI: train, load (LanguageModel: generate, bits_per_char),
evaluate, visualize. ``rnnlab/__init__.py`` re-exports these names lazily, so ``import rnnlab``
costs nothing until one is used.

Example:
    >>> import rnnlab
    >>> run = rnnlab.train("my_text.txt", cell="lstm", hidden_size=256, minutes=5, out="runs/a")
    >>> lm = rnnlab.load("runs/a")
    >>> print(lm.generate("ROMEO:", length=300, temperature=0.8, seed=0))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from . import bpc as _bpc
from . import checkpoint as _checkpoint
from . import finetune as _finetune
from . import sampling as _sampling
from . import training as _training
from . import viz as _viz
from .config import CorpusConfig, ModelConfig, TrainConfig, __version__
from .errors import DivergedError, RnnlabError, UsageError
from .evaluation import EvalReport, evaluate
from .model import CharLM, resolve_sample_dtype
from .options import EvalOptions, SampleOptions
from .sampling import CharLogprob, Completion, generate
from .training import EvalEvent, TrainResult
from .viz import Visualization, VizOptions, visualize
from .vocab import Vocab

__all__ = [
    "CharLM",
    "CharLogprob",
    "Completion",
    "CorpusConfig",
    "DivergedError",
    "EvalEvent",
    "EvalOptions",
    "EvalReport",
    "LanguageModel",
    "ModelConfig",
    "RnnlabError",
    "SampleOptions",
    "TrainConfig",
    "TrainResult",
    "UsageError",
    "Visualization",
    "VizOptions",
    "Vocab",
    "__version__",
    "evaluate",
    "generate",
    "load",
    "train",
    "visualize",
]


def train(
    corpus: str | Path | None = None,
    *,
    out: str | Path,
    glob: str | None = None,
    byte_mode: bool = False,
    resume: bool = False,
    init_from: str | Path | None = None,
    extend_vocab: bool = False,
    progress: bool = False,
    on_eval=None,
    **options,
) -> TrainResult:
    """Train (or, with ``resume=True``, continue) a character-level model.

    Args:
        corpus: a file, a folder, or a named corpus ("python", "shakespeare"); None: "python".
        out: the run directory.
        glob: for a folder, only the files matching this pattern.
        byte_mode: model raw bytes instead of Unicode characters.
        resume: continue the run in ``out``; only ``max_steps``/``minutes`` may be given.
        init_from: fine-tune: start a new run from this run's weights and vocabulary (its
            architecture; model options may not be given).
        extend_vocab: with ``init_from``, add characters the base run never saw.
        progress: show a progress bar on stderr.
        on_eval: called with an EvalEvent after each validation.
        **options: any ModelConfig or TrainConfig field, e.g. ``cell="gru"``,
            ``hidden_size=256``, ``minutes=5``, ``max_steps=1000``, ``learning_rate=3e-3``.

    Returns:
        A TrainResult (run directory, steps, best validation bpc, the last sample).
    """
    model_names = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size"}
    train_names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(options) - model_names - train_names
    if unknown:
        raise TypeError(
            f"unknown option(s) {sorted(unknown)}; valid: {sorted(model_names | train_names)}"
        )
    if resume and set(options) - {"max_steps", "minutes"}:
        raise TypeError("on resume only max_steps and minutes may be given: the run fixes the rest")
    if init_from is not None and set(options) & model_names:
        raise TypeError("with init_from the base run fixes the architecture; drop model options")
    model_config = ModelConfig(**{k: v for k, v in options.items() if k in model_names})
    train_config = TrainConfig(**{k: v for k, v in options.items() if k in train_names})
    corpus_config = CorpusConfig(source=str(corpus or "python"), glob=glob, byte_mode=byte_mode)
    result = _training.train(
        corpus_config,
        model_config,
        train_config,
        Path(out),
        resume=resume,
        progress=progress,
        on_eval=on_eval,
        init_from=_finetune.InitFrom(Path(init_from), extend_vocab) if init_from else None,
        user=set(options),  # the plan (plan.py) keeps what was given and chooses the rest
    )
    _viz.plot_curves([Path(out)], Path(out) / "curves.png")
    return result


class LanguageModel:
    """A trained model with its vocabulary: generate text and score it."""

    def __init__(self, model: CharLM, vocab: Vocab, run_dir: Path | None = None) -> None:
        self.model = model.eval()
        self.vocab = vocab
        self.run_dir = run_dir

    def generate(
        self,
        prompt: str = "",
        *,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        unknown: str = "error",
        weights_dtype: str = "auto",
        beam: int = 0,
        stop: tuple[str, ...] | list[str] = (),
        allowed_chars: str | None = None,
        regex: str | None = None,
    ) -> str:
        """One continuation of ``prompt`` (without the prompt). See ``generate_many``."""
        return self.generate_many(
            prompt,
            num_samples=1,
            length=length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            unknown=unknown,
            weights_dtype=weights_dtype,
            beam=beam,
            stop=stop,
            allowed_chars=allowed_chars,
            regex=regex,
        )[0]

    def generate_many(
        self,
        prompt: str = "",
        *,
        num_samples: int = 1,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        unknown: str = "error",
        weights_dtype: str = "auto",
        beam: int = 0,
        stop: tuple[str, ...] | list[str] = (),
        allowed_chars: str | None = None,
        regex: str | None = None,
    ) -> list[str]:
        """``num_samples`` continuations sampled in parallel (temperature 0: greedy).

        Under control (see sampling.generate): ``beam=N`` searches with N hypotheses (ranked by
        mean log-probability per character) and returns the ``num_samples`` best; the output
        ends before the first ``stop`` string (not included); ``allowed_chars`` limits the
        characters; ``regex`` is a pattern the output must match in full, enforced character
        by character (a UsageError says so when no character can continue it).

        ``weights_dtype``: how the recurrent weights are stored while sampling: "float32"
        (exact), "bfloat16", "int8" (weight-only, per-row scales: about 2x faster at batch 1 on
        a CPU, logits within about 1e-3), or "auto" (on a CPU int8 for up to 8 samples,
        bfloat16 for more where the CPU has it; float32 elsewhere).
        """
        device = self.model.head.weight.device
        return _sampling.generate(
            self.model,
            self.vocab,
            prompt,
            length=length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            num_samples=num_samples,
            unknown=unknown,
            weights_dtype=resolve_sample_dtype(weights_dtype, device, num_samples),
            beam=beam,
            stop=stop,
            allowed_chars=allowed_chars,
            regex=regex,
        )

    def complete(
        self,
        prompt: str = "",
        *,
        num_samples: int = 1,
        length: int = 500,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        unknown: str = "error",
        weights_dtype: str = "auto",
        beam: int = 0,
        stop: tuple[str, ...] | list[str] = (),
        allowed_chars: str | None = None,
        regex: str | None = None,
        logprobs: int = 0,
    ) -> list[Completion]:
        """As ``generate_many``, each text with why it ended (``finish_reason``: "length" or
        "stop"), the beam score, and with ``logprobs=K`` each generated character's
        log-probability (nats, the model's own distribution) and the K most likely characters.

        Example:
            >>> c = lm.complete("ROMEO:", length=20, seed=0, logprobs=3)[0]
            >>> c.text, c.logprobs[0].logprob, c.logprobs[0].top  # top: [(char, logprob), ...]
        """
        device = self.model.head.weight.device
        return _sampling.complete(
            self.model,
            self.vocab,
            prompt,
            length=length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            num_samples=num_samples,
            unknown=unknown,
            weights_dtype=resolve_sample_dtype(weights_dtype, device, num_samples),
            beam=beam,
            stop=stop,
            allowed_chars=allowed_chars,
            regex=regex,
            logprobs=logprobs,
        )

    def bits_per_char(self, text: str, unknown: str = "error") -> float:
        """Exact bits per character of ``text[1:]`` given what precedes it (state carried)."""
        ids = np.asarray(self.vocab.encode(text, unknown=unknown), dtype=np.int64)
        return _bpc.bits_per_char(self.model, ids)


def load(
    run: str | Path, device: str | torch.device = "cpu", weights: str = "best"
) -> LanguageModel:
    """Load a run directory's model: ``weights="best"`` (best validation) or ``"last"``."""
    if weights not in _checkpoint.WEIGHTS:
        raise UsageError(f"weights must be 'best' or 'last', got {weights!r}")
    model, vocab, _ = _checkpoint.load_model(Path(run), _checkpoint.WEIGHTS[weights], device)
    return LanguageModel(model, vocab, Path(run))
