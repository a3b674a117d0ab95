"""`rnnlab export`: a run's model as an ONNX file that runs without PyTorch (onnxruntime).

One graph, ``ids (B, T) int64, state -> logits (B, T, V), state``: with T = the prompt's length
it is the prompt pass, with T = 1 it is the per-character step (state carried by the caller).
The state is ``h`` (and ``c`` for an LSTM, ``prev`` for a minGRU/minLSTM with token shift: the
last normed input of each block), each (L, B, H); outputs ``h_out`` (``c_out``, ``prev_out``).
The vocabulary and the model config travel in the file's metadata (``rnnlab.vocab``,
``rnnlab.model``), so the file alone is enough to sample (see docs/onnx_sample.py).
Needs the `export` extra (onnx, onnxruntime). Imports checkpoint and below; never cli.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .config import to_dict
from .errors import UsageError
from .files import atomic_write
from .model import CharLM

OPSET = 17
FORMAT = "1"


class _Graph(torch.nn.Module):
    """CharLM with the state as separate tensors (ONNX has no tuples)."""

    def __init__(self, model: CharLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(ids, state)  # (B, T, V), each (L, B, H)
        return (logits, *new_state)


class _RMSNorm(torch.nn.Module):
    """nn.RMSNorm in basic operations: the TorchScript exporter has no ``rms_norm`` at opset 17
    (minGRU / minLSTM blocks use it)."""

    def __init__(self, norm: torch.nn.RMSNorm) -> None:
        super().__init__()
        self.weight, self.eps = norm.weight, norm.eps or torch.finfo(norm.weight.dtype).eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def _exportable(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every nn.RMSNorm replaced by ``_RMSNorm`` (same weights), in place."""
    for name, child in module.named_children():
        if isinstance(child, torch.nn.RMSNorm):
            setattr(module, name, _RMSNorm(child))
        else:
            _exportable(child)
    return module


def state_names(model: CharLM) -> list[str]:
    return ["h", "prev"] if model.config.token_shift else ["h", "c"][: model.num_states]


def export_onnx(
    run_dir: Path,
    output: Path,
    weights: str = checkpoint.BEST,
    opset: int = OPSET,
    overwrite: bool = True,
) -> dict[str, Any]:
    """Write ``run_dir``'s model to ``output`` as ONNX, vocabulary and config in its metadata.

    Args:
        run_dir: a run directory.
        output: the .onnx file to write (atomically).
        weights: checkpoint.BEST or checkpoint.LAST.
        opset: the ONNX opset.
        overwrite: replace an existing ``output`` (`rnnlab export` passes its --force).

    Returns:
        What was written: path, bytes, inputs, outputs.
    """
    try:
        import onnx
    except ImportError as e:
        raise UsageError(
            f"rnnlab export needs the export extra ({e.name} is missing): "
            "pip install 'rnnlab[export]'"
        ) from None
    output = checkpoint.check_output(output, "-o", reading=[Path(run_dir)], force=overwrite)
    model, vocab, config = checkpoint.load_model(Path(run_dir), weights, "cpu")
    # eval: dropout off (the wrapper too, or it traces on); minGRU/minLSTM: their time loop is
    # recorded as an ONNX Loop (scan.export_scan), their norms in basic operations
    graph = _Graph(_exportable(model.float())).eval()
    names = state_names(model)
    ids = torch.zeros(1, 2, dtype=torch.long)
    state = model.init_state(1)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the exporter warns that an LSTM exported at one batch size may not run at another
        # unless the initial state is an input; here it is, and the tests run B > 1
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (ids, *state),
            buffer,
            dynamo=False,  # the TorchScript exporter maps nn.LSTM/GRU/RNN to ONNX's own ops
            opset_version=opset,
            input_names=["ids", *names],
            output_names=["logits", *(f"{n}_out" for n in names)],
            dynamic_axes={
                "ids": {0: "batch", 1: "time"},
                "logits": {0: "batch", 1: "time"},
                **{n: {1: "batch"} for n in names},
                **{f"{n}_out": {1: "batch"} for n in names},
            },
        )
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {
        "rnnlab.format": FORMAT,
        "rnnlab.vocab": json.dumps(vocab.to_json()),
        "rnnlab.model": json.dumps(to_dict(config.model)),
        "rnnlab.state": ",".join(names),
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "rnnlab"
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(output, data)
    return {
        "path": str(output),
        "bytes": len(data),
        "inputs": ["ids", *names],
        "outputs": ["logits", *(f"{n}_out" for n in names)],
        "opset": opset,
    }
