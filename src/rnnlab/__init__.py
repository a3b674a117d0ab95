"""rnnlab: character-level recurrent language models on PyTorch.

Example:
    >>> import rnnlab
    >>> run = rnnlab.train("my_text.txt", cell="lstm", hidden_size=256, minutes=5, out="runs/a")
    >>> lm = rnnlab.load("runs/a")
    >>> print(lm.generate("ROMEO:", length=300, temperature=0.8, seed=0))
    >>> report = rnnlab.evaluate("runs/a")  # bits per character beside the baseline ladder

The names below live in ``rnnlab.api`` and load on first use, so ``import rnnlab`` (and the
start of the ``rnnlab`` command) stays fast and free of torch until it is needed.
"""

from __future__ import annotations

from typing import Any

from .config import __version__

# the public names, listed here once: rnnlab.api imports this list as its own __all__
__all__ = [
    "CharLM",
    "Ensemble",
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


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
