"""The run directory (format 1): config, vocabulary, weights, training state and metrics.

Every write goes to a temporary file that is renamed into place; loading never unpickles code
(safetensors for weights, ``torch.load(weights_only=True)`` for the training state).
Imports config, vocab and model from rnnlab.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .config import FORMAT, CorpusConfig, ModelConfig, TrainConfig, __version__, from_dict, to_dict
from .errors import UsageError
from .files import atomic_write, write_json
from .model import CharLM
from .vocab import Vocab

CONFIG = "config.json"
VOCAB = "vocab.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
TRAIN_STATE = "train_state.pt"
METRICS = "metrics.jsonl"
BASELINES = "baselines.json"  # the ladder of the validation split, written by `rnnlab eval`
WEIGHTS = {"best": BEST, "last": LAST}  # the names --weights takes


class CheckpointError(UsageError):
    """A run directory is missing, incomplete or corrupt; the message says what to do."""


@dataclass(frozen=True)
class RunConfig:
    """Everything config.json holds."""

    model: ModelConfig
    train: TrainConfig
    corpus: CorpusConfig


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is this an rnnlab run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt ({e}); the run cannot be read") from None


def save_config(run_dir: Path, config: RunConfig) -> None:
    write_json(
        Path(run_dir) / CONFIG,
        {
            "format": FORMAT,
            "rnnlab": __version__,
            "torch": torch.__version__,
            "model": to_dict(config.model),
            "train": to_dict(config.train),
            "corpus": to_dict(config.corpus),
        },
    )


def load_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory; train one with: rnnlab train")
    raw = read_json(run_dir / CONFIG)
    if raw.get("format") != FORMAT:
        raise CheckpointError(
            f"{run_dir / CONFIG} has format {raw.get('format')!r}; this rnnlab reads format "
            f"{FORMAT}; upgrade rnnlab"
        )
    try:
        return RunConfig(
            from_dict(ModelConfig, raw["model"]),
            from_dict(TrainConfig, raw["train"]),
            from_dict(CorpusConfig, raw["corpus"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / CONFIG} is invalid ({e})") from None


def save_vocab(run_dir: Path, vocab: Vocab) -> None:
    write_json(Path(run_dir) / VOCAB, vocab.to_json())


def load_vocab(run_dir: Path) -> Vocab:
    try:
        return Vocab.from_json(read_json(Path(run_dir) / VOCAB))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{Path(run_dir) / VOCAB} is invalid ({e})") from None


def save_weights(path: Path, model: torch.nn.Module, step: int) -> None:
    """Weights as safetensors (CPU copies, so a GPU run loads anywhere), tagged with the step."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(path, safetensors.torch.save(tensors, metadata={"step": str(step)}))


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The tensors of a weights file (on CPU) and the step they were saved at."""
    path = Path(path)
    try:
        data = path.read_bytes()
        tensors = safetensors.torch.load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        step = int(header.get("__metadata__", {}).get("step", -1))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run has no saved weights yet") from None
    except Exception as e:  # safetensors raises its own error types for any damage
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(e).__name__}); resume from a copy, or retrain"
        ) from None
    return tensors, step


def check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or Inf: they would sample only newlines and score "nan bpc".

    Raises:
        CheckpointError: naming the first tensor that is not finite.
    """
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds NaN or Inf; use --weights best/last from "
                "another step, or retrain"
            )


def load_model(
    run_dir: Path, weights: str = BEST, device: str | torch.device = "cpu"
) -> tuple[CharLM, Vocab, RunConfig]:
    """Rebuild a run's model from its config and weights (``model.safetensors`` by default)."""
    config = load_config(run_dir)
    vocab = load_vocab(run_dir)
    if config.model.vocab_size != len(vocab):
        raise CheckpointError(f"{run_dir}: vocab.json does not match config.json")
    model = CharLM(config.model)
    tensors, _ = load_weights(Path(run_dir) / weights)
    check_finite(tensors, Path(run_dir) / weights)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise CheckpointError(f"{Path(run_dir) / weights} does not fit config.json ({e})") from None
    return model.to(device).eval(), vocab, config


def save_train_state(path: Path, state: dict[str, Any]) -> None:
    """Optimizer, step, RNG and carried-state tensors; plain containers and tensors only."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_train_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run cannot be resumed") from None
    except Exception as e:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(e).__name__}); the run cannot be resumed"
        ) from None


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    with open(Path(run_dir) / METRICS, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
    return records


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop events after ``last_step`` (written after the checkpoint a resume starts from)."""
    kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= last_step]
    atomic_write(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in kept).encode())
