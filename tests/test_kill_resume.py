"""End to end, in real processes: a run killed (SIGKILL) between two checkpoints and resumed
ends with the same weights as the run never interrupted."""

import os
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
from conftest import words_text

from rnnlab import checkpoint

ARGS = (
    "--hidden 24 --layers 2 --embedding 8 --batch-size 4 --seq-len 16 --dropout 0.1 "
    "--autocast-dtype float32 --device cpu --quiet --max-steps 400 --eval-every-s 0.2 "
    "--sample-chars 0 --final-sample 0"
).split()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text(lines=600))
    cmd = [sys.executable, "-m", "rnnlab", "train", str(corpus), *ARGS]
    # one thread: bit-for-bit equality needs the same reduction order in both processes
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--out", str(tmp_path / "straight")], check=True, timeout=300, env=env)

    cut = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, "--out", str(cut)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once a checkpoint exists and training has moved on
        done = [e["step"] for e in checkpoint.read_metrics(cut) if e["split"] == "train"]
        if (cut / "last.safetensors").exists() and done and done[-1] >= 100:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    saved = checkpoint.load_weights(cut / "last.safetensors")[1]
    assert 0 < saved < 400
    resume = [sys.executable, "-m", "rnnlab", "train", "--resume", str(cut), "--quiet"]
    subprocess.run(resume, check=True, timeout=300, env=env)

    a = safetensors.torch.load_file(tmp_path / "straight" / "last.safetensors")
    b = safetensors.torch.load_file(cut / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [e["step"] for e in checkpoint.read_metrics(cut) if e["split"] == "train"]
    assert steps == sorted(set(steps))  # events after the checkpoint were not written twice
