"""The real CLI, in-process: cli.main([...]) returns the exit code; we read what it wrote."""

import json
import re

import numpy as np
import pytest
import safetensors.torch
from conftest import words_text

from rnnlab.cli import main

TINY = (
    "--hidden 16 --layers 1 --embedding 8 --batch-size 4 --seq-len 16 --lr 1e-2 "
    "--autocast-dtype float32 --device cpu --quiet"
).split()


@pytest.fixture
def corpus_file(tmp_path):
    f = tmp_path / "words.txt"
    f.write_text(words_text())
    return f


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_train_sample_eval_end_to_end(trained, capsys, tmp_path, corpus_file):
    capsys.readouterr()
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["format"] == 1 and cfg["model"]["hidden_size"] == 16
    assert cfg["train"]["max_steps"] == 30

    assert main(["sample", str(trained), "--prompt", "the ", "--length", "50", "--seed", "7"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.rstrip("\n")) >= 50
    assert main(["sample", str(trained), "--prompt", "the ", "--length", "50", "--seed", "7"]) == 0
    assert capsys.readouterr().out == first

    assert (
        main(
            [
                "sample",
                str(trained),
                "--length",
                "20",
                "--num-samples",
                "3",
                "--json",
                "--seed",
                "1",
                "--top-k",
                "3",
                "--top-p",
                "0.9",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert len(data["samples"]) == 3 and all(len(s) == 20 for s in data["samples"])

    # streamed (a character at a time) or not (a block at a time): the same text
    argv = ["sample", str(trained), "--prompt", "the ", "--length", "300", "--seed", "2"]
    assert main([*argv, "--stream"]) == 0
    streamed = capsys.readouterr().out
    assert main(argv) == 0
    assert capsys.readouterr().out == streamed and len(streamed) == len("the ") + 300 + 1

    assert main(["eval", str(trained), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bpc"] < report["baselines"]["uniform"]
    assert report["loss_nats"] == pytest.approx(report["bpc"] * 0.6931471805599453)

    held_out = tmp_path / "held.txt"
    held_out.write_text(words_text(lines=20, seed=5))
    assert main(["eval", str(trained), str(held_out)]) == 0
    table = capsys.readouterr().out
    assert "uniform" in table and "unigram" in table and "model" in table


def test_resume_continues_and_refuses_architecture_flags(trained, capsys):
    assert main(["train", "--resume", str(trained), "--max-steps", "40", "--quiet"]) == 0
    meta = safetensors.safe_open(str(trained / "last.safetensors"), "pt").metadata()
    assert meta["step"] == "40"
    capsys.readouterr()
    assert main(["train", "--resume", str(trained), "--hidden", "32"]) == 2
    one_line_error(capsys, "--hidden", "cannot change on --resume")


def test_unknown_prompt_characters_are_listed(trained, capsys):
    capsys.readouterr()
    assert main(["sample", str(trained), "--prompt", "Zebra€"]) == 2
    one_line_error(capsys, "'Z'", "'€'", "--unknown skip")
    assert (
        main(["sample", str(trained), "--prompt", "Zebra", "--unknown", "skip", "--length", "5"])
        == 0
    )


@pytest.mark.parametrize(
    "make, args, needles",
    [
        (None, ["train", "{tmp}/missing.txt"], ["no such file", "named corpus"]),
        ("empty", ["train", "{f}"], ["empty"]),
        (
            "short",
            ["train", "{f}", "--batch-size", "64", "--seq-len", "128"],
            ["too short", "--batch-size"],
        ),
        ("binary", ["train", "{f}"], ["binary"]),
        ("latin1", ["train", "{f}"], ["UTF-8", "--bytes"]),
        ("words", ["train", "{f}", "--cell", "transformer"], ["--cell", "invalid choice"]),
        ("words", ["train", "{f}", "--no-such-flag"], ["--no-such-flag"]),
        ("words", ["train", "{f}", "--dropout", "1.5"], ["--dropout"]),
        (None, ["sample", "{tmp}/nowhere"], ["no such run directory"]),
        (None, ["eval", "{tmp}/nowhere"], ["no such run directory"]),
    ],
)
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, make, args, needles):
    f = tmp_path / "input.txt"
    content = {
        "empty": b"",
        "short": b"hello world\n" * 20,
        "binary": b"\x7fELF\x00\x01\x02" * 9,
        "latin1": "caf\xe9\n".encode("latin-1") * 500,
        "words": words_text().encode(),
    }
    if make:
        f.write_bytes(content[make])
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path, f=f) for a in args]
    if argv[0] == "train":
        argv += ["--out", str(out)]
    assert main(argv) == 2
    one_line_error(capsys, *needles)
    assert not out.exists()


def test_corrupt_and_truncated_checkpoints(trained, capsys):
    capsys.readouterr()
    best = trained / "model.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    assert main(["sample", str(trained)]) == 2
    one_line_error(capsys, "corrupt or truncated")
    last = trained / "last.safetensors"
    last.write_bytes(last.read_bytes()[:-10])
    before = last.read_bytes()
    assert main(["train", "--resume", str(trained), "--max-steps", "50", "--quiet"]) == 2
    one_line_error(capsys, "last.safetensors", "truncated")
    assert last.read_bytes() == before


def test_train_refuses_an_existing_run(trained, capsys, corpus_file):
    capsys.readouterr()
    assert main(["train", str(corpus_file), "--out", str(trained), *TINY]) == 2
    one_line_error(capsys, "already holds a run", "--resume")


def test_corpora_lists_the_named_corpora(capsys):
    assert main(["corpora", "--json"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)]
    assert names == ["python", "shakespeare"]


def test_help_has_defaults_and_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    text = " ".join(text.split())
    assert "--hidden" in text and "(default: planned from the budget; with --cell: 512" in text
    assert "example:" in text


def test_plot_writes_a_png_of_the_expected_size(trained, tmp_path, capsys):
    from PIL import Image

    assert (trained / "curves.png").is_file()  # written at the end of training
    out = tmp_path / "both.png"
    assert main(["plot", str(trained), str(trained), "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1400, 560)
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not a blank canvas
    assert main(["plot", str(tmp_path / "nothing")]) == 2


def test_help_says_each_default_once(capsys):
    """Issue 23 item 6: no "(default: ...) (default: None)" pairs, no "(default: None)"."""
    from rnnlab.cli import COMMANDS

    for name in COMMANDS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: None)" not in text, name
        assert not re.search(r"\(default:[^)]*\)\s*\(default:", text), name
