"""DESIGN section 1's exit codes, from main(): 2 user error, 3 diverged, 130 Ctrl-C (start-up
included), 1 a bug (said so, --debug shows it), 0 when the reader of stdout goes away; and
`rnnlab sample` writes a long text in pieces as it goes."""

from __future__ import annotations

import math
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import words_text

from rnnlab import cli, compression, sampling
from rnnlab.errors import DivergedError


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_ctrl_c_while_loading_a_command_is_130_and_one_line(monkeypatch, capsys):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "command", interrupted)
    assert cli.main(["sample", "runs/x"]) == 130
    assert one_line(capsys) == "rnnlab: interrupted"


@pytest.mark.parametrize(
    "error, code, needles",
    [
        (RuntimeError("boom"), 1, ["bug", "RuntimeError: boom", "--debug"]),
        (DivergedError("loss NaN 20 steps in a row"), 3, ["diverged", "loss NaN"]),
        (PermissionError(13, "Permission denied", "/x/y"), 2, ["permission denied", "/x/y"]),
        (KeyboardInterrupt(), 130, ["interrupted"]),
    ],
)
def test_every_outcome_has_its_exit_code(monkeypatch, capsys, error, code, needles):
    from rnnlab.cli import corpora

    def run(args):
        raise error

    monkeypatch.setattr(corpora, "run", run)
    assert cli.main(["corpora"]) == code
    err = one_line(capsys)
    for needle in needles:
        assert needle in err, err
    if code in (1, 3):
        with pytest.raises(type(error)):
            cli.main(["corpora", "--debug"])


def test_a_closed_stdout_ends_sample_quietly(shared_run):
    # `rnnlab sample RUN --length 200000 | head -c 10`: the pipe closes after 10 bytes
    command = [sys.executable, "-m", "rnnlab", "sample", str(shared_run), "--length", "200000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(10)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert len(first) == 10
    assert proc.returncode == 0 and err == b"", err.decode()


def test_sample_writes_as_it_generates(shared_run, capsys, monkeypatch):
    """A long sample reaches stdout a block at a time (never held whole) and equals the text
    generate() returns at the same seed."""
    writes = []
    real = sampling.iter_generate

    def counting(*args, **kwargs):
        for pieces in real(*args, **kwargs):
            writes.append(len(pieces[0]))
            yield pieces

    monkeypatch.setattr(sampling, "iter_generate", counting)
    assert cli.main(["sample", str(shared_run), "--length", "1000", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert writes == [256, 256, 256, 232]
    import rnnlab

    lm = rnnlab.load(shared_run)
    expected = lm.generate(length=1000, seed=3, temperature=0.8, weights_dtype="auto")
    assert out == expected + "\n"


def test_ctrl_c_during_a_long_sample_keeps_what_was_written(shared_run, capsys, monkeypatch):
    real = sampling.iter_generate

    def interrupted_after_one_block(*args, **kwargs):
        pieces = real(*args, **kwargs)
        yield next(pieces)
        raise KeyboardInterrupt

    monkeypatch.setattr(sampling, "iter_generate", interrupted_after_one_block)
    assert cli.main(["sample", str(shared_run), "--length", str(10**12), "--seed", "1"]) == 130
    captured = capsys.readouterr()
    assert len(captured.out) == 256 and captured.err.strip() == "rnnlab: interrupted"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["eval", "{run}", "{text}", "--dynamic", "--dynamic-rule", "sgd", "--dynamic-lr", "1e38"],
         "--dynamic-lr"),
        (["eval", "{run}", "{text}", "--adapt", "--adapt-head-lr", "100"], "--adapt-head-lr"),
    ],
)  # fmt: skip
def test_a_non_finite_result_is_exit_3_never_a_printed_number(
    shared_run, tmp_path, capsys, argv, needle
):
    text = tmp_path / "t.txt"
    text.write_text(words_text(50))
    argv = [a.format(run=shared_run, text=text, tmp=tmp_path) for a in argv]
    assert cli.main(argv) == 3
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("rnnlab: diverged:") and needle in err, err


def test_the_coder_refuses_non_finite_probabilities():
    # compress --adapt-head-lr 100 can reach NaN (depending on the model and the text): no file
    # is coded from it, on either side
    with pytest.raises(DivergedError, match="--adapt-head-lr"):
        compression.quantize_probs(np.array([[0.5, math.nan, 0.5], [0.2, 0.3, 0.5]]))


def test_an_error_after_a_signal_is_the_signal_not_a_bug(monkeypatch, capsys):
    # Ctrl-C in the middle of an import leaves a module half loaded; the next import of it
    # fails ("cannot load module more than once per process"): still 130, with or without --debug
    from rnnlab.cli import corpora

    def run(args):
        cli.SIGNALS.append(signal.SIGINT)  # what _on_signal records before it raises
        raise ImportError("cannot load module more than once per process")

    monkeypatch.setattr(corpora, "run", run)
    for argv in (["corpora"], ["corpora", "--debug"]):
        assert cli.main(argv) == 130
        assert one_line(capsys) == "rnnlab: interrupted"
