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

# __all__: the public names, listed once in rnnlab/__init__.py (which must not import torch);
# `from .m import X as X` marks a name imported only to be re-exported here
from . import __all__ as __all__
from . import bpc as _bpc
from . import checkpoint as _checkpoint
from . import finetune as _finetune
from . import sampling as _sampling
from . import training as _training
from . import viz as _viz
from .config import CorpusConfig, ModelConfig, TrainConfig
from .config import __version__ as __version__
from .errors import DivergedError as DivergedError
from .errors import RnnlabError as RnnlabError
from .errors import UsageError
from .evaluation import EvalReport as EvalReport
from .evaluation import evaluate as evaluate
from .model import LM, model_device, resolve_sample_dtype
from .model import CharLM as CharLM
from .model import Ensemble as Ensemble
from .options import EvalOptions as EvalOptions
from .options import SampleOptions as SampleOptions
from .sampling import CharLogprob as CharLogprob
from .sampling import Completion
from .sampling import generate as generate
from .training import EvalEvent as EvalEvent
from .training import TrainResult
from .viz import Visualization as Visualization
from .viz import VizOptions as VizOptions
from .viz import visualize as visualize
from .vocab import Vocab


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

    def __init__(self, model: LM, vocab: Vocab, run_dir: Path | None = None) -> None:
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
        return self.generate_many(num_samples=1, **_arguments(locals()))[0]

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
        return self._sample(_sampling.generate, _arguments(locals()))

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
        return self._sample(_sampling.complete, _arguments(locals()))

    def _sample(self, fn, arguments: dict):
        """``fn`` (sampling.generate or complete) on this model with a method's arguments, the
        ``weights_dtype`` name resolved for the model's device and batch."""
        device = model_device(self.model)
        dtype = resolve_sample_dtype(arguments["weights_dtype"], device, arguments["num_samples"])
        return fn(self.model, self.vocab, **(arguments | {"weights_dtype": dtype}))

    def bits_per_char(self, text: str, unknown: str = "error") -> float:
        """Exact bits per character of ``text[1:]`` given what precedes it (state carried)."""
        ids = np.asarray(self.vocab.encode(text, unknown=unknown), dtype=np.int64)
        return _bpc.bits_per_char(self.model, ids)


def _arguments(method_locals: dict) -> dict:
    """A method's arguments (its ``locals()`` on entry) less ``self``: the sampling methods hand
    them on by keyword, so each option is spelled once, in the signature."""
    return {k: v for k, v in method_locals.items() if k != "self"}


def load(
    run: str | Path, device: str | torch.device = "cpu", weights: str = "best"
) -> LanguageModel:
    """Load a run directory's model: ``weights="best"`` (best validation) or ``"last"``."""
    if weights not in _checkpoint.WEIGHTS:
        raise UsageError(f"weights must be 'best' or 'last', got {weights!r}")
    model, vocab, _ = _checkpoint.load_model(
        Path(run), _checkpoint.WEIGHTS[weights], device, ensemble=True
    )
    return LanguageModel(model, vocab, Path(run))
