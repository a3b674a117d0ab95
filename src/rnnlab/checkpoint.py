"""The weights and the committed checkpoint of a run directory.

A checkpoint is one file, ``last.safetensors``: the weights of a step together with the
training state of that step (optimizer, RNG, carried state, counters and how much of
metrics.jsonl it refers to), written to a temporary file and renamed into place. A process
killed at any instant, or a disk that fills, leaves the previous checkpoint or the new one,
never a mix. Weights are untrusted input: types and shapes are checked against the header
before anything is allocated, and must be finite. The run directory's other files (config,
vocabulary, metrics, the lock) are rundir.py's, re-exported here. Imports errors, files,
config, model and rundir from rnnlab.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from .config import ModelConfig
from .errors import UsageError
from .files import atomic_write, fsync_dir, read_regular
from .model import CharLM, Ensemble, build_model
from .rundir import (
    BASELINES,
    BEST,
    CONFIG,
    LAST,
    LEGACY_TRAIN_STATE,
    LOCK,
    METRICS,
    VOCAB,
    WEIGHTS,
    CheckpointError,
    MetricsWarning,
    RunConfig,
    RunLock,
    append_metrics,
    check_output,
    load_config,
    load_vocab,
    read_baselines,
    read_metrics,
    regular_file,
    remove_leftovers,
    save_config,
    save_vocab,
    sync_metrics,
)
from .vocab import Vocab

MAX_HEADER_BYTES = 100 << 20  # a safetensors header (the format's own limit)
STATE_PREFIX = "train_state."  # tensors of the training state inside last.safetensors

# The run directory's other files live in rundir.py; their names stay reachable here, where
# every caller has always found them.
__all__ = [
    "MAX_HEADER_BYTES",
    "STATE_PREFIX",
    "expected_tensors",
    "check_weights_header",
    "save_weights",
    "load_tensors",
    "check_finite",
    "load_weights",
    "load_model",
    "TrainingState",
    "commit_checkpoint",
    "load_checkpoint",
    "rewind_metrics",
    "has_checkpoint",
    "BASELINES",
    "BEST",
    "CONFIG",
    "LAST",
    "LOCK",
    "METRICS",
    "VOCAB",
    "WEIGHTS",
    "CheckpointError",
    "MetricsWarning",
    "RunConfig",
    "RunLock",
    "append_metrics",
    "check_output",
    "load_config",
    "load_vocab",
    "read_baselines",
    "read_metrics",
    "regular_file",
    "remove_leftovers",
    "save_config",
    "save_vocab",
    "sync_metrics",
]


# --- weights ------------------------------------------------------------------------------------


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the bytes of tensor data after it, read
    without the tensors; a FIFO or device is refused without waiting on it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run has no saved weights yet") from None
    except OSError as e:
        raise CheckpointError(f"{path} cannot be read ({e.strerror})") from None
    damaged = CheckpointError(f"{path} is corrupt or truncated; resume from a copy, or retrain")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"{path} is not a regular file; restore the run's own file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            n = int.from_bytes(f.read(8), "little")
            if info.st_size < 8 or n > min(MAX_HEADER_BYTES, info.st_size - 8):
                raise damaged
            header = json.loads(f.read(n))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise damaged from None
    finally:
        os.close(fd)
    if not isinstance(header, dict):
        raise damaged
    return header, info.st_size - 8 - n


# torch dtype -> its name in a safetensors header
_DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip


def expected_tensors(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """The shape and the safetensors dtype name of every weight of a CharLM (or an Ensemble),
    without allocating it."""
    with torch.device("meta"):
        model = build_model(config)
    return {k: (tuple(v.shape), _DTYPE_NAMES[v.dtype]) for k, v in model.state_dict().items()}


def check_weights_header(path: Path, config: ModelConfig) -> None:
    """Refuse weights whose names, shapes or dtypes differ from what ``config`` builds, before
    any tensor is read or any model is allocated."""
    header, data_bytes = _read_header(path)
    want = expected_tensors(config)
    have = {
        k: v for k, v in header.items() if k != "__metadata__" and not k.startswith(STATE_PREFIX)
    }
    if set(have) != set(want):
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        raise CheckpointError(
            f"{path} does not fit config.json (missing {missing[:3]}, unexpected {extra[:3]}); "
            "the weights belong to another model"
        )
    for name, (shape, dtype) in want.items():
        info = have[name]
        found = info.get("shape") if isinstance(info, dict) else None
        if not isinstance(found, list) or tuple(found) != shape:
            raise CheckpointError(
                f"{path}: tensor {name} has shape {found}, config.json says {list(shape)}; "
                "the weights belong to another model"
            )
        if info.get("dtype") != dtype:
            raise CheckpointError(
                f"{path}: tensor {name} has dtype {info.get('dtype')}, the model's is {dtype}; "
                "these are not the run's weights: use another run or retrain"
            )
    try:
        end = max(int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__")
    except (KeyError, TypeError, ValueError, IndexError):
        raise CheckpointError(f"{path} is corrupt; resume from a copy, or retrain") from None
    if end > data_bytes:
        raise CheckpointError(f"{path} is truncated; resume from a copy, or retrain")


def save_weights(
    path: Path, model: torch.nn.Module, step: int, extra: dict[str, str] | None = None
) -> None:
    """Weights as safetensors (CPU copies, so a GPU run loads anywhere), tagged with the step."""
    tensors = _cpu_weights(model)
    atomic_write(
        path, safetensors.torch.save(tensors, metadata={"step": str(step), **(extra or {})})
    )


def _cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor of a safetensors file (on CPU) and its metadata; bounded by the file's size,
    which the caller has checked against the header."""
    path = Path(path)
    try:
        data = read_regular(path, max_bytes=os.stat(path).st_size)
        tensors = safetensors.torch.load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__") or {}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run has no saved weights yet") from None
    except UsageError:
        raise
    except Exception as e:  # safetensors raises its own error types for any damage
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(e).__name__}); resume from a copy, or retrain"
        ) from None
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path} is corrupt (metadata); resume from a copy, or retrain")
    return tensors, metadata


def check_finite(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights holding NaN or Inf, naming the first such tensor."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: tensor {name} holds NaN or Inf; these weights are unusable "
                "(training diverged); use another run or retrain"
            )


def load_weights(
    path: Path, config: ModelConfig | None = None
) -> tuple[dict[str, torch.Tensor], int]:
    """The model tensors of a weights file (on CPU, finite) and the step they were saved at."""
    path = Path(path)
    if config is not None:
        check_weights_header(path, config)
    tensors, metadata = load_tensors(path)
    weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    check_finite(weights, path)
    try:
        step = int(metadata.get("step", -1))
    except ValueError:
        raise CheckpointError(f"{path} is corrupt (step); resume from a copy, or retrain") from None
    return weights, step


def load_model(
    run_dir: Path,
    weights: str = BEST,
    device: str | torch.device = "cpu",
    ensemble: bool = False,
) -> tuple[CharLM | Ensemble, Vocab, RunConfig]:
    """Rebuild a run's model from its config and weights (``model.safetensors`` by default).

    A run of several members (``--members``) gives its first member, a CharLM, unless
    ``ensemble``: then the whole Ensemble, for the readers that take one (they need only
    ``forward`` and ``init_state``, or ``cells.StepDecoder.from_model``)."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    vocab = load_vocab(run_dir)
    if config.model.vocab_size != len(vocab):
        raise CheckpointError(f"{run_dir}: vocab.json does not match config.json")
    tensors, _ = load_weights(run_dir / weights, config.model)
    model = build_model(config.model)
    model.load_state_dict(tensors)
    if isinstance(model, Ensemble) and not ensemble:
        model = model.members[0]
    return model.to(device).eval(), vocab, config


# --- the checkpoint: weights and training state of one step, one file ---------------------------


@dataclass(frozen=True)
class TrainingState:
    """Where a run stands after ``step`` steps: everything a resume needs besides the weights."""

    step: int
    elapsed_s: float
    best_val_bpc: float
    last_val_bpc: float
    last_eval_s: float
    metrics_bytes: int  # the length of metrics.jsonl that this checkpoint refers to
    optimizer: dict[str, Any]  # torch.optim state_dict
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None = None
    carried_state: tuple[torch.Tensor, ...] = ()  # (L, B, H) each, all B streams
    averaged: dict[str, torch.Tensor] = field(default_factory=dict)  # --ema: name -> weights


_SCALARS = ("step", "elapsed_s", "best_val_bpc", "last_val_bpc", "last_eval_s", "metrics_bytes")


def _flatten_state(state: TrainingState) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors (named under STATE_PREFIX) and a JSON-able description of everything else."""
    tensors: dict[str, torch.Tensor] = {STATE_PREFIX + "rng_cpu": state.rng_cpu}
    if state.rng_cuda is not None:
        tensors[STATE_PREFIX + "rng_cuda"] = state.rng_cuda
    for i, s in enumerate(state.carried_state):
        tensors[f"{STATE_PREFIX}carried.{i}"] = s
    for name, w in state.averaged.items():
        tensors[f"{STATE_PREFIX}ema.{name}"] = w
    opt_state: dict[str, dict[str, Any]] = {}
    for index, entries in state.optimizer["state"].items():
        opt_state[str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{STATE_PREFIX}optimizer.{index}.{key}"] = value
                opt_state[str(index)][key] = None  # a tensor, stored above
            else:
                opt_state[str(index)][key] = value
    meta = {k: getattr(state, k) for k in _SCALARS}
    meta |= {
        "carried": len(state.carried_state),
        "ema": sorted(state.averaged),
        "optimizer_state": opt_state,
        "param_groups": state.optimizer["param_groups"],
    }
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, meta


def _unflatten_state(tensors: dict[str, torch.Tensor], meta: Any, path: Path) -> TrainingState:
    bad = CheckpointError(
        f"{path}: the training state is incomplete or corrupt; the run cannot be resumed"
    )
    if not isinstance(meta, dict):
        raise bad
    try:
        opt_state = {}
        for index, entries in meta["optimizer_state"].items():
            opt_state[int(index)] = {
                key: tensors[f"{STATE_PREFIX}optimizer.{index}.{key}"] if value is None else value
                for key, value in entries.items()
            }
        carried = tuple(tensors[f"{STATE_PREFIX}carried.{i}"] for i in range(int(meta["carried"])))
        names = meta.get("ema", [])  # absent before --ema existed
        if not isinstance(names, list):
            raise bad
        averaged = {name: tensors[f"{STATE_PREFIX}ema.{name}"] for name in names}
        scalars = {k: meta[k] for k in _SCALARS}
        for k in ("step", "metrics_bytes"):
            if not isinstance(scalars[k], int) or isinstance(scalars[k], bool) or scalars[k] < 0:
                raise bad
        for k in ("elapsed_s", "best_val_bpc", "last_val_bpc", "last_eval_s"):
            if not isinstance(scalars[k], (int, float)):
                raise bad
        if not isinstance(meta["param_groups"], list):
            raise bad
        return TrainingState(
            **scalars,
            optimizer={"state": opt_state, "param_groups": meta["param_groups"]},
            rng_cpu=tensors[STATE_PREFIX + "rng_cpu"],
            rng_cuda=tensors.get(STATE_PREFIX + "rng_cuda"),
            carried_state=carried,
            averaged=averaged,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise bad from None


def commit_checkpoint(run_dir: Path, model: torch.nn.Module, state: TrainingState) -> None:
    """Write the weights and the training state of ``state.step`` as one unit: a single file
    renamed into place, after the metrics it refers to are on disk."""
    run_dir = Path(run_dir)
    tensors, meta = _flatten_state(state)
    weights = _cpu_weights(model)
    metadata = {"step": str(state.step), "train_state": json.dumps(meta)}
    atomic_write(run_dir / LAST, safetensors.torch.save(weights | tensors, metadata=metadata))
    legacy = run_dir / LEGACY_TRAIN_STATE
    if legacy.exists():  # a run started by an older rnnlab: its state now lives in LAST
        legacy.unlink()
        fsync_dir(run_dir)


def load_checkpoint(
    run_dir: Path, config: ModelConfig
) -> tuple[dict[str, torch.Tensor], TrainingState] | None:
    """The weights and training state of the last committed checkpoint, or None if the run
    was stopped before its first one."""
    run_dir = Path(run_dir)
    path = run_dir / LAST
    if not path.exists() and not path.is_symlink():
        return None
    check_weights_header(path, config)
    tensors, metadata = load_tensors(path)
    weights = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    check_finite(weights, path)
    if "train_state" in metadata:
        try:
            meta = json.loads(metadata["train_state"])
        except (json.JSONDecodeError, RecursionError):
            raise CheckpointError(
                f"{path}: the training state is corrupt; the run cannot be resumed"
            ) from None
        state = _unflatten_state(tensors, meta, path)
    else:
        state = _load_legacy_state(run_dir, metadata)
    return weights, state


def _load_legacy_state(run_dir: Path, metadata: dict[str, str]) -> TrainingState:
    """The training state of a run written before checkpoints were one file."""
    path = run_dir / LEGACY_TRAIN_STATE
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = TrainingState(
            step=int(raw["step"]),
            elapsed_s=float(raw["elapsed_s"]),
            best_val_bpc=float(raw["best_val_bpc"]),
            last_val_bpc=float(raw["last_val_bpc"]),
            last_eval_s=float(raw["last_eval_s"]),
            metrics_bytes=-1,
            optimizer=raw["optimizer"],
            rng_cpu=raw["rng_cpu"],
            rng_cuda=raw.get("rng_cuda"),
            carried_state=tuple(raw["carried_state"]),
        )
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; the run cannot be resumed") from None
    except Exception as e:
        raise CheckpointError(
            f"{path} is corrupt ({type(e).__name__}); the run cannot be resumed"
        ) from None
    if str(state.step) != metadata.get("step"):
        raise CheckpointError(
            f"{run_dir}: {LAST} (step {metadata.get('step')}) and {LEGACY_TRAIN_STATE} (step "
            f"{state.step}) disagree; the last save of this older run was cut short"
        )
    return state


def rewind_metrics(run_dir: Path, state: TrainingState | None) -> None:
    """Cut metrics.jsonl back to what the checkpoint refers to (events written after it are
    written again by the resumed run)."""
    path = Path(run_dir) / METRICS
    if not regular_file(path):
        return
    if state is None:
        os.truncate(path, 0)
    elif state.metrics_bytes >= 0:
        if os.path.getsize(path) > state.metrics_bytes:
            os.truncate(path, state.metrics_bytes)
    else:  # an older run: keep the events up to its step
        kept = [r for r in read_metrics(run_dir) if r["step"] <= state.step]
        atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / LAST).exists()
