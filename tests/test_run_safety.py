"""Nothing a user made is lost: checkpoints committed as one unit whatever instant a write
fails, full disks and file-size limits, one writer per run, exit codes, and run-directory files
treated as untrusted input."""

import errno
import fcntl
import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import words_text

from rnnlab import checkpoint, files, rundir, training
from rnnlab.cli import main
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.errors import UsageError

SMALL = dict(cell="lstm", hidden_size=16, num_layers=2, embedding_size=8, dropout=0.1)
FAST = dict(
    batch_size=4, seq_len=16, sample_chars=0, autocast_dtype="float32", device="cpu", warmup_steps=3
)
EVERY_STEP = dict(max_steps=10, eval_every_s=1e-9)  # validate and commit after every step


class SimulatedCrash(BaseException):
    """Stands for a kill: not an Exception, so nothing in rnnlab catches it."""


class FaultyOS:
    """``os`` as files.py, checkpoint.py and rundir.py see it, counting every file operation and
    failing the ``fail_at``-th with ``error`` (a crash by default)."""

    OPS = {"fdopen", "fsync", "chmod", "replace", "unlink", "open", "truncate", "ftruncate"}

    def __init__(self, fail_at: int | None = None, error: BaseException | None = None):
        self.count, self.fail_at, self.error = 0, fail_at, error or SimulatedCrash()

    def __getattr__(self, name):
        real = getattr(os, name)
        if name not in self.OPS:
            return real

        def op(*args, **kwargs):
            self.count += 1
            if self.count == self.fail_at:
                raise self.error
            return real(*args, **kwargs)

        return op


def run(tmp_path, out="run", resume=False, on_eval=None, **train):
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(words_text(lines=200))
    return training.train(
        CorpusConfig(source=str(corpus)),
        ModelConfig(**SMALL),
        TrainConfig(**(FAST | train)),
        tmp_path / out,
        resume=resume,
        on_eval=on_eval,
    )


def tensors(path):
    return safetensors.torch.load_file(path)


def assert_same_run(a, b):
    """Same weights, optimizer state, RNG and carried state; best weights equal too."""
    for name in ("last.safetensors", "model.safetensors"):
        x, y = tensors(a / name), tensors(b / name)
        assert x.keys() == y.keys(), name
        assert all(torch.equal(x[k], y[k]) for k in x), name
    steps = [(e["split"], e["step"]) for e in checkpoint.read_metrics(b)]
    assert steps == [(e["split"], e["step"]) for e in checkpoint.read_metrics(a)]


def test_a_crash_at_any_file_operation_of_a_save_then_resume_equals_the_straight_run(
    tmp_path, monkeypatch
):
    run(tmp_path, "straight", **EVERY_STEP)
    counter = FaultyOS()
    marks = {}
    monkeypatch.setattr(files, "os", counter)
    monkeypatch.setattr(checkpoint, "os", counter)
    monkeypatch.setattr(rundir, "os", counter)
    run(
        tmp_path, "counted", on_eval=lambda e: marks.setdefault(e.step, counter.count), **EVERY_STEP
    )
    # every operation from the first step (before any checkpoint) to the saves of steps 5-6
    chosen = list(range(1, marks[2])) + list(range(marks[5], marks[6] + 1))
    for k in chosen:
        out = f"cut{k}"
        monkeypatch.setattr(files, "os", FaultyOS(fail_at=k))
        monkeypatch.setattr(checkpoint, "os", FaultyOS(fail_at=k))
        monkeypatch.setattr(rundir, "os", FaultyOS(fail_at=k))
        with pytest.raises(SimulatedCrash):
            run(tmp_path, out, **EVERY_STEP)
        monkeypatch.setattr(files, "os", os)
        monkeypatch.setattr(checkpoint, "os", os)
        monkeypatch.setattr(rundir, "os", os)
        if (tmp_path / out / "config.json").exists():
            result = run(tmp_path, out, resume=True)
        else:  # killed before its first write: the same folder takes a new run
            result = run(tmp_path, out, **EVERY_STEP)
        assert result.step == 10 and result.exit_code == 0, k
        assert_same_run(tmp_path / "straight", tmp_path / out)
        assert not list((tmp_path / out).glob(".*.part"))


def test_a_run_stopped_before_its_first_checkpoint_resumes_or_is_reused(tmp_path, monkeypatch):
    run(tmp_path, "straight", **EVERY_STEP)
    for how in ("resume", "reuse"):
        out = tmp_path / how
        crash_on_commit = lambda *a, **k: (_ for _ in ()).throw(SimulatedCrash())  # noqa: E731
        monkeypatch.setattr(checkpoint, "commit_checkpoint", crash_on_commit)
        with pytest.raises(SimulatedCrash):
            run(tmp_path, how, **EVERY_STEP)
        monkeypatch.undo()
        assert (out / "config.json").exists() and not (out / "last.safetensors").exists()
        (out / ".last.safetensors.x1y2.part").write_bytes(b"half a file")  # a killed write
        if how == "resume":
            run(tmp_path, how, resume=True)
        else:
            run(tmp_path, how, **EVERY_STEP)
        assert_same_run(tmp_path / "straight", out)
        assert not list(out.glob(".*.part"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, code):
    run(tmp_path, "straight", **EVERY_STEP)
    counter, marks = FaultyOS(), {}
    monkeypatch.setattr(files, "os", counter)
    run(tmp_path, "count", on_eval=lambda e: marks.setdefault(e.step, counter.count), **EVERY_STEP)
    monkeypatch.setattr(files, "os", FaultyOS(marks[4] + 2, OSError(code, os.strerror(code))))
    with pytest.raises(UsageError) as e:
        run(tmp_path, "cut", **EVERY_STEP)
    message = str(e.value)
    assert "\n" not in message and "--resume" in message
    assert ("disk is full" if code == errno.ENOSPC else "file-size limit") in message
    assert "checkpoint of step 3 is intact" in message or "step 4 is intact" in message
    monkeypatch.setattr(files, "os", os)
    assert not list((tmp_path / "cut").glob(".*.part"))
    run(tmp_path, "cut", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "cut")


# --min-lr-fraction 1: a flat rate after warmup, so a run extended from 10 to 30 steps follows
# the path of a run given 30 steps at once
CLI_RUN = (
    "--cell lstm --min-lr-fraction 1 --hidden 16 --layers 1 --embedding 8 --batch-size 4 "
    "--seq-len 16 --dropout 0 --autocast-dtype float32 --device cpu --quiet --sample-chars 0 "
    "--final-sample 0"
).split()


def cli(*args, limit_bytes=None, check=True):
    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rnnlab", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        preexec_fn=limit,
    )
    assert not check or done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_a_real_file_size_limit_is_exit_2_and_the_run_resumes(tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text(lines=300))
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    cli("train", str(corpus), *CLI_RUN, "--max-steps", "30", "--out", str(straight))
    cli("train", str(corpus), *CLI_RUN, "--max-steps", "10", "--out", str(cut))
    size = (cut / "last.safetensors").stat().st_size
    done = cli(
        "train",
        "--resume",
        str(cut),
        "--max-steps",
        "20",
        "--quiet",
        limit_bytes=size - 100,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "file-size limit" in err and "step 10 is intact" in err
    assert checkpoint.load_weights(cut / "last.safetensors")[1] == 10
    cli("train", "--resume", str(cut), "--max-steps", "30", "--quiet")
    a, b = tensors(straight / "last.safetensors"), tensors(cut / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_one_writer_per_run_directory(tmp_path):
    run(tmp_path, max_steps=3)
    d = tmp_path / "run"
    with checkpoint.RunLock(d):
        with pytest.raises(UsageError, match=f"another rnnlab process \\(pid {os.getpid()}\\)"):
            run(tmp_path, resume=True, max_steps=6)
        with pytest.raises(UsageError, match="being written|already holds"):
            run(tmp_path, max_steps=3)
    assert run(tmp_path, resume=True, max_steps=6).step == 6  # released with the holder


@pytest.mark.slow
def test_a_second_process_is_refused_and_a_killed_writer_leaves_no_stale_lock(tmp_path, capsys):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text(lines=300))
    d = tmp_path / "run"
    cmd = [sys.executable, "-m", "rnnlab", "train", str(corpus), *CLI_RUN, "--out", str(d)]
    writer = subprocess.Popen(
        [*cmd, "--max-steps", "1000000", "--eval-every-s", "0.2"],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.time() + 600
        while not (d / "last.safetensors").exists() and time.time() < deadline:
            time.sleep(0.05)
        capsys.readouterr()
        assert main(["train", "--resume", str(d), "--max-steps", "5", "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"pid {writer.pid}" in err, err
        assert main(["train", str(corpus), *CLI_RUN, "--out", str(d)]) == 2
    finally:
        writer.kill()
        writer.wait()
    step = checkpoint.load_weights(d / "last.safetensors")[1]
    assert main(["train", "--resume", str(d), "--max-steps", str(step + 3), "--quiet"]) == 0


def test_exit_codes_after_signals_and_divergence(tmp_path, monkeypatch):
    def signal_at(sig, step):
        return lambda e: os.kill(os.getpid(), sig) if e.step == step else None

    cut = run(tmp_path, "int", on_eval=signal_at(signal.SIGINT, 3), **EVERY_STEP)
    assert (cut.stopped, cut.signal, cut.exit_code) == ("interrupted", "SIGINT", 130)
    cut = run(tmp_path, "term", on_eval=signal_at(signal.SIGTERM, 3), **EVERY_STEP)
    assert (cut.stopped, cut.signal, cut.exit_code) == ("interrupted", "SIGTERM", 143)
    assert checkpoint.load_weights(tmp_path / "term/last.safetensors")[1] == 3  # saved

    # a learning rate that wrecks the model: far worse than uniform, stopped, nothing saved
    wild = run(
        tmp_path, "wild", learning_rate=10.0, clip_mode="none", max_steps=30, eval_every_s=1e-9
    )
    assert wild.stopped == "diverged" and wild.exit_code == 3 and "uniform" in wild.message

    # NaN from the start: no checkpoint, and the message says so
    real = training.F.cross_entropy
    monkeypatch.setattr(training.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    nan = run(tmp_path, "nan", max_steps=100)
    assert (nan.stopped, nan.checkpoint_step, nan.exit_code) == ("diverged", None, 3)
    assert not (tmp_path / "nan/last.safetensors").exists()


def test_the_cli_exits_3_and_names_the_last_finite_checkpoint(tmp_path, capsys, monkeypatch):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text())
    d = tmp_path / "run"
    assert main(["train", str(corpus), *CLI_RUN, "--max-steps", "5", "--out", str(d)]) == 0
    real = training.F.cross_entropy
    monkeypatch.setattr(training.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    capsys.readouterr()
    assert main(["train", "--resume", str(d), "--max-steps", "100", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "diverged" in err and "checkpoint of step 5" in err and "Traceback" not in err


# --- run-directory files are untrusted input -----------------------------------------------------


@pytest.fixture
def trained(tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text(words_text())
    d = tmp_path / "run"
    assert main(["train", str(corpus), *CLI_RUN, "--max-steps", "8", "--out", str(d)]) == 0
    return d


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def edit_config(d, section, key, value):
    raw = json.loads((d / "config.json").read_text())
    if key is None:
        raw[section] = value
    elif value is ...:
        del raw[section][key]
    else:
        raw[section][key] = value
    (d / "config.json").write_text(json.dumps(raw))


@pytest.mark.parametrize(
    "section, key, value, needle",
    [
        ("model", "hidden_size", 1_000_000, "--hidden must be between 1 and 16,384"),
        ("model", "hidden_size", 16_000, "shape"),  # 4 GB if the model were built before checking
        ("model", "num_layers", 10_000, "--layers must be between 1 and 64"),
        ("model", "num_layers", 3, "does not fit"),
        ("model", "hidden_size", 32.5, "--hidden must be int"),
        ("model", "hidden_size", [16], "--hidden must be int"),
        ("model", None, None, "ModelConfig section"),
        ("train", "seq_len", 16.0, "--seq-len must be int"),
        ("train", "max_steps", ..., "max_steps is missing"),
        ("train", "learning_rate", "fast", "--lr must be float"),
        ("corpus", "byte_mode", 1, "byte_mode must be bool"),
    ],
)
def test_a_damaged_config_is_one_line_and_changes_nothing(
    trained, capsys, section, key, value, needle
):
    edit_config(trained, section, key, value)
    before = digest(trained)
    t0 = time.perf_counter()
    for argv in (["sample", str(trained)], ["train", "--resume", str(trained), "--quiet"]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and len(err) < 400 and needle in err, err
    assert time.perf_counter() - t0 < 10
    assert digest(trained) == before


def test_a_config_written_before_ff_mult_existed_still_samples(trained, capsys):
    """Fields added since 0.1.0 (config.ADDED_FIELDS) take their default when absent."""
    edit_config(trained, "model", "ff_mult", ...)
    assert main(["sample", str(trained), "--length", "20"]) == 0
    edit_config(trained, "model", "ff_mult", 2)  # an LSTM has no feed-forward block
    assert main(["sample", str(trained)]) == 2
    assert "--ff-mult is for --cell mingru or minlstm" in capsys.readouterr().err


def test_weights_that_are_not_regular_files_are_refused_at_once(trained, capsys):
    best = trained / "model.safetensors"
    best.unlink()
    best.symlink_to("/dev/zero")
    assert main(["sample", str(trained)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    best.unlink()
    os.mkfifo(best)  # opening a FIFO for reading would wait for a writer forever
    t0 = time.perf_counter()
    assert main(["sample", str(trained)]) == 2
    assert "not a regular file" in capsys.readouterr().err and time.perf_counter() - t0 < 5


def test_non_finite_weights_are_refused_naming_the_tensor(trained, capsys):
    best = trained / "model.safetensors"
    weights = tensors(best)
    weights["head.bias"][3] = float("nan")
    safetensors.torch.save_file(weights, best, metadata={"step": "8"})
    for argv in (["sample", str(trained)], ["eval", str(trained)]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "head.bias" in err and "NaN" in err, err


def test_a_training_state_with_missing_keys_is_one_line(trained, capsys):
    last = trained / "last.safetensors"
    data = tensors(last)
    with open(last, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    meta = header["__metadata__"]
    state = json.loads(meta["train_state"])
    del state["optimizer_state"]
    safetensors.torch.save_file(data, last, metadata=meta | {"train_state": json.dumps(state)})
    assert main(["train", "--resume", str(trained), "--max-steps", "20", "--quiet"]) == 2
    assert "training state is incomplete or corrupt" in capsys.readouterr().err


def test_garbage_in_metrics_is_skipped_with_a_warning(trained, capsys, tmp_path):
    with open(trained / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "split": "tr\nnot json at all\n[1, 2]\n')
    (trained / "baselines.json").write_text("{broken")
    with pytest.warns(checkpoint.MetricsWarning):
        assert main(["plot", str(trained), "-o", str(tmp_path / "c.png")]) == 0
    with pytest.warns(checkpoint.MetricsWarning):
        records = checkpoint.read_metrics(trained)
    assert records and all(isinstance(r["step"], int) for r in records)
    assert main(["train", "--resume", str(trained), "--max-steps", "12", "--quiet"]) == 0
    steps = [e["step"] for e in checkpoint.read_metrics(trained) if e["split"] == "val"]
    assert steps[-1] == 12


# --- outputs: a device or a FIFO is written through, a symlink kept, never replaced -------------


def compress_to(run, text, out, *extra) -> int:
    argv = ["compress", str(run), str(text), "-o", str(out), "--static", "--segments", "4"]
    return main(argv + list(extra))


def test_an_output_device_or_fifo_is_written_through_and_a_symlink_kept(
    shared_run, tmp_path, capsys
):
    text = tmp_path / "t.txt"
    text.write_text(words_text(20))
    # a copy of /dev/null where we may make one (root); else the real one, which an ordinary
    # user cannot replace, so a regression never harms the machine
    device = Path("/dev/null")
    if os.geteuid() == 0:
        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    assert compress_to(shared_run, text, device) == 0
    assert stat.S_ISCHR(os.stat(device).st_mode)
    # a FIFO: its reader gets the bytes, and it stays a FIFO
    fifo, got = tmp_path / "pipe", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    assert compress_to(shared_run, text, fifo) == 0
    reader.join(30)
    assert got and len(got[0]) > 16
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    # a symlink: the file it points to is replaced (atomically), the link stays
    (tmp_path / "real.rz").write_bytes(b"old")
    (tmp_path / "link.rz").symlink_to("real.rz")
    assert compress_to(shared_run, text, tmp_path / "link.rz", "-f") == 0
    assert (tmp_path / "link.rz").is_symlink()
    assert (tmp_path / "real.rz").read_bytes() == got[0]  # the same bytes the FIFO carried
    (tmp_path / "dangling.rz").symlink_to("new.rz")  # nothing exists yet: no -f needed
    assert compress_to(shared_run, text, tmp_path / "dangling.rz") == 0
    assert (tmp_path / "dangling.rz").is_symlink() and (tmp_path / "new.rz").read_bytes() == got[0]
    assert not list(tmp_path.glob(".*.part"))
    if Path("/proc/version").is_file():  # a folder that takes no new file: one line, exit 2
        assert compress_to(shared_run, text, "/proc/version", "-f") == 2
        assert "cannot write /proc/version" in capsys.readouterr().err
    capsys.readouterr()
    if os.access("/dev/full", os.W_OK):  # a full device: one line, exit 2
        assert compress_to(shared_run, text, "/dev/full") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "No space left" in err, err
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize(
    "name, argv",
    [
        (checkpoint.METRICS, ["train", "--resume", "{run}", "--max-steps", "40"]),
        (checkpoint.LOCK, ["train", "--resume", "{run}", "--max-steps", "40"]),
        (checkpoint.METRICS, ["plot", "{run}", "-o", "{tmp}/c.png"]),
    ],
)
def test_a_fifo_in_a_run_directory_is_refused_without_waiting(trained, tmp_path, name, argv):
    (trained / name).unlink(missing_ok=True)
    os.mkfifo(trained / name)
    argv = [a.format(run=trained, tmp=tmp_path) for a in argv]
    # a process of its own: a regression hangs in open(), which only a timeout ends
    done = subprocess.run(
        [sys.executable, "-m", "rnnlab", *argv], capture_output=True, text=True, timeout=120
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert f"{name} is not a regular file" in err, err


def test_eval_of_a_run_it_cannot_write_skips_the_baselines_cache(trained, monkeypatch, capsys):
    def read_only(path, obj):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(files, "write_json", read_only)
    assert main(["eval", str(trained), "--quick", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bpc"] > 0


def test_the_lock_message_names_the_live_holder_not_a_stale_pid(trained):
    path = trained / checkpoint.LOCK
    path.write_text("999999\n")  # the pid of a writer killed long ago
    with open(path, "rb+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live holder that has not written yet
        with pytest.raises(UsageError) as e, checkpoint.RunLock(trained):
            pass
    expected = os.getpid() if os.path.exists("/proc/locks") else 999999
    assert f"(pid {expected})" in str(e.value), str(e.value)
