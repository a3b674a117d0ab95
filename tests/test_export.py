"""`rnnlab export --format onnx`: onnxruntime agrees with PyTorch step by step over 1,000
characters of real text for every cell, state carried; the docs example samples with no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from serve_helpers import TEXT, make_run

from rnnlab import checkpoint, sampling
from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
# 1,000+ characters of real text: prose and code, as a user's would be
REAL = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, "
    "it was the age of foolishness, it was the epoch of belief, it was the epoch of "
    "incredulity, it was the season of Light, it was the season of Darkness.\n" + TEXT
)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu", "mingru", "minlstm"])
def test_onnx_matches_pytorch_over_1000_steps(tmp_path, cell):
    run = make_run(tmp_path / cell, cell=cell, seed=3, text=REAL)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out), "--json"]) == 0
    model, vocab, _ = checkpoint.load_model(run)
    ids = vocab.encode(REAL)[:1001]
    assert len(ids) == 1001
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0][0].numpy()  # (N, V): one pass, state carried
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["rnnlab.vocab"])["symbols"] == list(vocab.symbols)
    names = meta["rnnlab.state"].split(",")
    assert names == (["h", "c"] if cell == "lstm" else ["h"])
    state = {n: np.zeros((2, 1, 16), np.float32) for n in names}
    worst = 0.0
    # 1,001 single steps (T = 1), the state carried from each call to the next
    for t in range(1001):
        x = np.array([[ids[t]]], dtype=np.int64)
        logits, *new = session.run(None, {"ids": x, **state})
        state = dict(zip(names, new, strict=True))
        worst = max(worst, float(np.abs(logits[0, 0] - expected[t]).max()))
    assert worst < 1e-4, worst
    # a prompt pass of 600 characters then steps land on the same logits, batch of 3 too
    state = {n: np.zeros((2, 3, 16), np.float32) for n in names}
    batch = np.array([ids[:600]] * 3, dtype=np.int64)
    logits, *new = session.run(None, {"ids": batch, **state})
    assert np.abs(logits[1] - expected[:600]).max() < 1e-4
    state = dict(zip(names, new, strict=True))
    logits, *_ = session.run(None, {"ids": np.array([[ids[600]]] * 3), **state})
    assert np.abs(logits[2, 0] - expected[600]).max() < 1e-4


def test_docs_example_samples_without_torch(tmp_path):
    run = make_run(tmp_path / "run", seed=4)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "-o", str(out)]) == 0
    # a Python in which `import torch` fails, running the example as a script
    shim = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "else:\n    raise SystemExit('torch is importable')\n"
        "import runpy; sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m, v in sys.modules.items()"
        " if v is not None), 'torch got imported'"
    )
    script = str(ROOT / "docs" / "onnx_sample.py")
    env = os.environ | {"PYTHONPATH": ""}
    args = [script, str(out), "--prompt", "def ", "--length", "120", "--temperature", "0"]
    done = subprocess.run(
        [sys.executable, "-c", shim, *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    # greedy through onnxruntime == greedy through rnnlab
    model, vocab, _ = checkpoint.load_model(run)
    expected = sampling.generate(model, vocab, "def ", length=120, temperature=0.0)[0]
    assert done.stdout == "def " + expected + "\n"
    seeded = [
        subprocess.run(
            [sys.executable, "-c", shim, script, str(out), "--length", "80", "--seed", "1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        ).stdout
        for _ in range(2)
    ]
    assert seeded[0] == seeded[1] and len(seeded[0]) == 81
    assert set(seeded[0]) <= set(vocab.symbols)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    run = make_run(tmp_path / "run")
    assert main(["export", str(run), "-o", str(tmp_path / "missing" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(run), "--format", "tflite"]) == 2
