"""Many processes: `torchrun ... -m rnnlab train` on CPUs (gloo), launched for real.

The global batch of B streams is shared among the ranks, so the trajectory does not depend on
the number of processes; a checkpoint written by N processes resumes under M and continues
exactly; a killed worker fails the job without harming the run directory.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import words_text

from rnnlab import checkpoint

# --min-lr-fraction 1: a flat rate after warmup, so a run stopped at step 10 and resumed with
# --max-steps 20 follows the very path of a run given 20 steps at once.
# AdamW, not the plan's Muon: one process equals two to 1e-5 with it, while Muon's
# Newton-Schulz iteration amplifies the last-bit differences of the averaged gradients (2.7e-4
# apart after 20 steps)
ARGS = (
    "--hidden 24 --layers 2 --embedding 8 --dropout 0 --batch-size 8 --seq-len 16 "
    "--min-lr-fraction 1 --autocast-dtype float32 --device cpu --quiet --sample-chars 0 "
    "--final-sample 0 --optimizer adamw"
).split()


def torchrun(nproc: int, *args: str, timeout: float = 600, check: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "rnnlab", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert not check or done.returncode == 0, done.stderr[-3000:]
    return done


def single(*args: str):
    cmd = [sys.executable, "-m", "rnnlab", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(run: Path) -> dict:
    return safetensors.torch.load_file(run / "last.safetensors")


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    f = tmp_path / "words.txt"
    f.write_text(words_text(lines=600))
    return str(f)


@pytest.mark.slow
def test_two_processes_follow_one_and_resume_across_world_sizes(tmp_path, corpus):
    straight, shared = tmp_path / "straight", tmp_path / "shared"
    single("train", corpus, *ARGS, "--max-steps", "20", "--out", str(straight))
    torchrun(2, "train", corpus, *ARGS, "--max-steps", "20", "--out", str(shared))
    assert max_difference(weights(straight), weights(shared)) < 1e-5
    events = checkpoint.read_metrics(shared)  # written once, by rank 0
    assert [e["step"] for e in events if e["split"] == "train"] == [10, 20]
    assert (shared / "curves.png").is_file()

    # 2 processes for 10 steps, 1 process to 15, 2 processes to 20: the same weights
    hopping = tmp_path / "hopping"
    torchrun(2, "train", corpus, *ARGS, "--max-steps", "10", "--out", str(hopping))
    single("train", "--resume", str(hopping), "--max-steps", "15", "--quiet")
    torchrun(2, "train", "--resume", str(hopping), "--max-steps", "20", "--quiet")
    assert max_difference(weights(straight), weights(hopping)) < 1e-5
    steps = [e["step"] for e in checkpoint.read_metrics(hopping) if e["split"] == "train"]
    assert steps == [10, 20]


@pytest.mark.slow
def test_batch_that_does_not_divide_among_processes_is_a_clear_error(tmp_path, corpus):
    out = tmp_path / "run"
    args = ("train", corpus, *ARGS, "--batch-size", "7", "--max-steps", "5", "--out", str(out))
    done = torchrun(2, *args, check=False)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "--batch-size 7" in line]
    assert lines == [
        "rnnlab: error: --batch-size 7 does not divide among 2 processes; use a multiple of 2"
    ]
    assert not out.exists()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def launch(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "rnnlab", "train", *args]
    # its own process group, as a terminal's foreground job is: Ctrl-C goes to all of it
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def wait_for_training(job: subprocess.Popen, out: Path, after_step: int = 0) -> list[int]:
    # no timing assumption: wait (bounded only by a generous limit) for a checkpoint newer than
    # ``after_step`` and both workers alive, however loaded the machine is
    deadline = time.time() + 600
    while time.time() < deadline:
        started = (out / "last.safetensors").exists() and len(children(job.pid)) == 2
        if started and saved_step(out) > after_step:
            return children(job.pid)
        time.sleep(0.05)
    raise AssertionError("the job did not start training in time")


def saved_step(out: Path) -> int:
    return checkpoint.load_weights(out / "last.safetensors")[1]


@pytest.mark.slow
def test_ctrl_c_saves_and_a_killed_worker_fails_the_job_leaving_the_run_intact(tmp_path, corpus):
    out = tmp_path / "run"
    args = [corpus, *ARGS, "--max-steps", "100000", "--eval-every-s", "0.2", "--out", str(out)]
    job = launch(*args)
    wait_for_training(job, out)
    os.killpg(job.pid, signal.SIGINT)  # Ctrl-C: every rank stops at the same step and saves
    _, stderr = job.communicate(timeout=600)
    assert "interrupted (SIGINT) and saved; continue with" in stderr, stderr[-2000:]
    stopped = saved_step(out)
    val = [e for e in checkpoint.read_metrics(out) if e["split"] == "val"]
    assert val and val[-1]["step"] <= stopped  # a signal saves at once, no validation after

    job = launch("--resume", str(out), "--max-steps", "100000", "--quiet")
    workers = wait_for_training(job, out, after_step=stopped)
    os.kill(workers[1], signal.SIGKILL)
    _, stderr = job.communicate(timeout=600)
    assert job.returncode != 0, stderr[-2000:]
    saved = saved_step(out)
    model, _, _ = checkpoint.load_model(out, checkpoint.LAST, torch.device("cpu"))
    assert saved > stopped and all(torch.isfinite(p).all() for p in model.parameters())
    single("train", "--resume", str(out), "--max-steps", str(saved + 5), "--quiet")
    assert saved_step(out) == saved + 5
