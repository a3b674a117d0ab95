"""ONNX export agreement: the largest |logit difference| between onnxruntime and PyTorch over
N single steps (T = 1, state carried) of a text, for a run (or a random-weight model per cell).

    python benchmarks/onnx_agreement.py TEXT [RUN ...] [--steps 1000] [--json out.json]

Without RUN: a random-weight 2x256 model of each cell (lstm, gru, rnn, rnn-relu) with the text's
vocabulary. Needs the export extra (onnx, onnxruntime).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from rnnlab import checkpoint
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.export import export_onnx
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab


def random_run(folder: Path, cell: str, vocab: Vocab, hidden: int) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, hidden_size=hidden, num_layers=2, vocab_size=len(vocab))
    run = folder / f"{cell}-2x{hidden}-random"
    run.mkdir()
    checkpoint.save_config(run, checkpoint.RunConfig(config, TrainConfig(), CorpusConfig()))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, CharLM(config), step=0)
    return run


def agreement(run: Path, text: str, steps: int, folder: Path) -> dict:
    out = folder / f"{run.name}.onnx"
    export_onnx(run, out)
    model, vocab, config = checkpoint.load_model(run)
    ids = vocab.encode(text, unknown="skip")[:steps]
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0][0].numpy()  # (N, V) one pass, state carried
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = session.get_modelmeta().custom_metadata_map["rnnlab.state"].split(",")
    shape = (config.model.num_layers, 1, config.model.hidden_size)
    state = {n: np.zeros(shape, np.float32) for n in names}
    worst = 0.0
    for t, i in enumerate(ids):
        logits, *new = session.run(None, {"ids": np.array([[i]], dtype=np.int64), **state})
        state = dict(zip(names, new, strict=True))
        worst = max(worst, float(np.abs(logits[0, 0] - expected[t]).max()))
    return {
        "run": run.name,
        "cell": config.model.cell,
        "size": f"{config.model.num_layers}x{config.model.hidden_size}",
        "steps": len(ids),
        "max_abs_logit_diff": worst,
        "logit_scale": float(np.abs(expected).max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("text", help="a UTF-8 text file to step through")
    p.add_argument("runs", nargs="*")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--json", default="benchmarks/results/onnx_agreement.json")
    a = p.parse_args()
    text = Path(a.text).read_text(encoding="utf-8")
    scratch = tempfile.TemporaryDirectory()
    folder = Path(scratch.name)
    runs = [Path(r) for r in a.runs]
    if not runs:
        vocab = Vocab.from_chars(text)
        runs = [random_run(folder, c, vocab, a.hidden) for c in ("lstm", "gru", "rnn", "rnn-relu")]
    rows = [agreement(r, text, a.steps + 1, folder) for r in runs]
    Path(a.json).write_text(json.dumps(rows, indent=1))
    print(
        f"{'run':28s} {'cell':9s} {'size':7s} {'steps':>6s} "
        f"{'max |diff|':>11s} {'max |logit|':>11s}"
    )
    for r in rows:
        print(
            f"{r['run']:28s} {r['cell']:9s} {r['size']:7s} {r['steps']:6d} "
            f"{r['max_abs_logit_diff']:11.2e} {r['logit_scale']:11.2f}"
        )


if __name__ == "__main__":
    main()
