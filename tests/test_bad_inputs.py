"""Issue 10's promise, one bad input at a time: every subcommand and the Python API answer a bad
flag, path or file with exit code 2 (or a UsageError) and one line naming what to fix, before any
work, and write or change nothing (the run directory, the test folder and the working directory
are hashed before and after).
"""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
from conftest import words_text

import rnnlab
from rnnlab import lab, sampling
from rnnlab.cli import main
from rnnlab.errors import UsageError

BIG = str(10**9)
TRAIN = ["train", "{text}", "--max-steps", "5"]  # --out {tmp}/out is added to every train case

CLI_CASES = [
    # --- train: model flags -------------------------------------------------------------------
    (TRAIN + ["--hidden", "1000000000"], ["--hidden", "16,384"]),
    (TRAIN + ["--hidden", "0"], ["--hidden"]),
    (TRAIN + ["--hidden", "-5"], ["--hidden"]),
    (TRAIN + ["--hidden", "16.5"], ["--hidden", "invalid int"]),
    (TRAIN + ["--layers", "0"], ["--layers"]),
    (TRAIN + ["--layers", "10000"], ["--layers", "64"]),
    (TRAIN + ["--layers", "64", "--hidden", "16384"], ["parameters", "2,000,000,000"]),
    (TRAIN + ["--embedding", "0"], ["--embedding"]),
    (TRAIN + ["--embedding", BIG], ["--embedding", "16,384"]),
    (TRAIN + ["--dropout", "1.5"], ["--dropout"]),
    (TRAIN + ["--dropout", "nan"], ["--dropout"]),
    (TRAIN + ["--dropout", "-0.1"], ["--dropout"]),
    (TRAIN + ["--forget-bias", "nan"], ["--forget-bias"]),
    (TRAIN + ["--forget-bias", "inf"], ["--forget-bias"]),
    (TRAIN + ["--cell", "transformer"], ["--cell", "invalid choice"]),
    (TRAIN + ["--init", "identity"], ["--init identity"]),
    (TRAIN + ["--init", "xavier"], ["--init"]),
    (TRAIN + ["--cell", "lstm", "--token-shift"], ["--token-shift", "mingru or minlstm"]),
    # --- train: training flags ----------------------------------------------------------------
    (TRAIN + ["--lr", "inf"], ["--lr"]),
    (TRAIN + ["--lr", "nan"], ["--lr"]),
    (TRAIN + ["--lr", "0"], ["--lr"]),
    (TRAIN + ["--lr", "-1"], ["--lr"]),
    (TRAIN + ["--lr", "1e38"], ["--lr", "10"]),
    (TRAIN + ["--grad-clip", "0"], ["--grad-clip"]),
    (TRAIN + ["--grad-clip", "nan"], ["--grad-clip"]),
    (TRAIN + ["--grad-clip", "inf"], ["--grad-clip"]),
    (TRAIN + ["--clip-mode", "sometimes"], ["--clip-mode"]),
    (TRAIN + ["--batch-size", "0"], ["--batch-size"]),
    (TRAIN + ["--batch-size", BIG], ["--batch-size", "65,536"]),
    (TRAIN + ["--seq-len", "0"], ["--seq-len"]),
    (TRAIN + ["--seq-len", BIG], ["--seq-len", "65,536"]),
    (TRAIN + ["--max-steps", "0"], ["--max-steps"]),
    (TRAIN + ["--max-steps", "-3"], ["--max-steps"]),
    (TRAIN + ["--minutes", "0"], ["--minutes"]),
    (TRAIN + ["--minutes", "inf"], ["--minutes"]),
    (TRAIN + ["--minutes", "nan"], ["--minutes"]),
    (TRAIN + ["--eval-every-s", "0"], ["--eval-every-s"]),
    (TRAIN + ["--eval-every-s", "nan"], ["--eval-every-s"]),
    (TRAIN + ["--eval-chars", "-1"], ["--eval-chars"]),
    (TRAIN + ["--val-fraction", "0"], ["--val-fraction"]),
    (TRAIN + ["--val-fraction", "1"], ["--val-fraction"]),
    (TRAIN + ["--val-fraction", "nan"], ["--val-fraction"]),
    (TRAIN + ["--sample-chars", "-1"], ["--sample-chars"]),
    (TRAIN + ["--sample-chars", BIG], ["--sample-chars", "100,000"]),
    (TRAIN + ["--seed", "-1"], ["--seed"]),
    (TRAIN + ["--seed", str(2**64)], ["--seed"]),
    (TRAIN + ["--warmup-steps", "-1"], ["--warmup-steps"]),
    (TRAIN + ["--weight-decay", "-1"], ["--weight-decay"]),
    (TRAIN + ["--weight-decay", "inf"], ["--weight-decay"]),
    (TRAIN + ["--state-reset", "2"], ["--state-reset"]),
    (TRAIN + ["--min-lr-fraction", "2"], ["--min-lr-fraction"]),
    (TRAIN + ["--autocast-dtype", "float16"], ["--autocast-dtype", "invalid choice"]),
    (TRAIN + ["--dtype", "float32"], ["--dtype", "unrecognized"]),  # renamed (CHANGELOG)
    (TRAIN + ["--preview-chars", "5"], ["--preview-chars", "unrecognized"]),  # renamed
    (TRAIN + ["--device", "tpu"], ["--device", "invalid choice"]),
    (TRAIN + ["--final-sample", "-1"], ["--final-sample"]),
    (TRAIN + ["--final-sample", BIG], ["--final-sample", "100,000"]),
    # --- train: paths -------------------------------------------------------------------------
    (["train", "{text}", "--out", "{text}"], ["--out", "is a file"]),
    (["train", "{text}", "--out", "{text}/run"], ["--out", "not a folder"]),
    (["train", "{tmp}/missing.txt", "--out", "{tmp}/out"], ["no such file", "named corpus"]),
    (["train", "{empty_dir}", "--out", "{tmp}/out"], ["no files match"]),
    (["train", "{text}", "--glob", "*.md", "--out", "{tmp}/out"], ["--glob"]),
    (["train", "--resume", "{tmp}/nowhere"], ["no such run directory"]),
    (["train", "--resume", "{run}", "--hidden", "32"], ["--hidden", "cannot change"]),
    (["train", "--resume", "{run}", "--lr", "1"], ["--lr", "cannot change"]),
    (["train", "--resume", "{run}", "--out", "{tmp}/x"], ["--out", "cannot change"]),
    (["train", "--resume", "{run}", "--max-steps", "0"], ["--max-steps"]),
    # --- sample -------------------------------------------------------------------------------
    (["sample", "{run}", "--temperature", "nan"], ["--temperature"]),
    (["sample", "{run}", "--temperature", "inf"], ["--temperature"]),
    (["sample", "{run}", "--temperature", "-1"], ["--temperature"]),
    (["sample", "{run}", "--num-samples", "0"], ["--num-samples"]),
    (["sample", "{run}", "--num-samples", "-2"], ["--num-samples"]),
    (["sample", "{run}", "--num-samples", BIG], ["--num-samples", "4,096"]),
    (["sample", "{run}", "--length", "-1"], ["--length"]),
    (["sample", "{run}", "--length", str(10**16)], ["--length"]),
    (["sample", "{run}", "--length", "abc"], ["--length", "invalid int"]),
    (["sample", "{run}", "--top-k", "-1"], ["--top-k"]),
    (["sample", "{run}", "--top-p", "0"], ["--top-p"]),
    (["sample", "{run}", "--top-p", "1.5"], ["--top-p"]),
    (["sample", "{run}", "--top-p", "nan"], ["--top-p"]),
    (["sample", "{run}", "--seed", "-1"], ["--seed"]),
    (["sample", "{run}", "--stream", "--num-samples", "2"], ["--stream"]),
    (["sample", "{run}", "--num-samples", "4096", "--length", BIG], ["--num-samples x --length"]),
    (["sample", "{run}", "--json", "--length", BIG], ["--json"]),
    (["sample", "{run}", "--weights-dtype", "float16"], ["--weights-dtype"]),
    (["sample", "{run}", "--dtype", "int8"], ["--dtype", "unrecognized"]),  # renamed
    (["sample", "{run}", "--weights", "middle"], ["--weights"]),
    (["sample", "{run}", "--unknown", "ignore"], ["--unknown"]),
    (["sample", "{run}", "--device", "tpu"], ["--device"]),
    (["sample", "{run}", "--prompt", "Zebra€"], ["'Z'", "'€'", "--unknown skip"]),
    (["sample", "{tmp}/nowhere"], ["no such run directory"]),
    (["sample", "{text}"], ["no such run directory"]),
    (["sample", "{nan_run}"], ["NaN", "embedding.weight"]),
    (["sample", "{int_run}"], ["head.weight", "dtype I64", "F32"]),
    (["train", "--resume", "{int_run}"], ["head.weight", "dtype I64"]),
    (["export", "{int_run}", "-o", "{tmp}/m.onnx"], ["head.weight", "dtype I64"]),
    (["train", "{text}", "--init-from", "{narrow_run}"], ["head.weight", "has shape"]),
    (["train", "{text}", "--init-from", "{int_run}"], ["head.weight", "dtype I64"]),
    (["train", "--resume", "{deep_state_run}"], ["training state", "corrupt"]),
    (["sample"], ["required", "run"]),
    # --- eval ---------------------------------------------------------------------------------
    (["eval", "{run}", "--chunk-len", "0"], ["--chunk-len"]),
    (["eval", "{run}", "--chunk-len", "-5"], ["--chunk-len"]),
    (["eval", "{run}", "--chunk-len", BIG], ["--chunk-len", "262,144"]),
    (["eval", "{run}", "{tmp}/missing.txt"], ["no such file"]),
    (["eval", "{run}", "{empty_dir}"], ["no such file"]),
    (["eval", "{run}", "{binary}"], ["binary"]),
    (["eval", "{run}", "{latin1}"], ["UTF-8"]),
    (["eval", "{run}", "{euro}"], ["'€'", "--unknown skip"]),
    (["eval", "{run}", "{one_char}"], ["fewer than 2"]),
    (["eval", "{run}", "--plot", "{tmp}/no/such/w.png"], ["--plot", "does not exist"]),
    (["eval", "{run}", "--plot", "{empty_dir}"], ["--plot", "is a folder"]),
    (["eval", "{nan_run}"], ["NaN", "embedding.weight"]),
    (["eval", "{tmp}/nowhere"], ["no such run directory"]),
    (["eval", "{run}", "--weights", "middle"], ["--weights"]),
    (["eval", "{run}", "--unknown", "x"], ["--unknown"]),
    # --- plot ---------------------------------------------------------------------------------
    (["plot", "{tmp}/nowhere", "-o", "{tmp}/c.png"], ["metrics.jsonl"]),
    (["plot", "{run}", "-o", "{empty_dir}"], ["-o", "is a folder"]),
    (["plot", "{run}", "-o", "{tmp}/no/dir/c.png"], ["-o", "does not exist"]),
    # --- viz ----------------------------------------------------------------------------------
    (["viz", "{run}", "--chars", "0", "-o", "{tmp}/v.html"], ["--chars"]),
    (["viz", "{run}", "--chars", BIG, "-o", "{tmp}/v.html"], ["--chars"]),
    (["viz", "{run}", "--feature-chars", "-1", "-o", "{tmp}/v.html"], ["--feature-chars"]),
    (["viz", "{run}", "--feature-chars", str(10**12), "-o", "{tmp}/v.html"], ["--feature-chars"]),
    (["viz", "{run}", "-o", "{empty_dir}"], ["-o", "is a folder"]),
    (["viz", "{run}", "-o", "{tmp}/no/v.html"], ["-o", "does not exist"]),
    (["viz", "{tmp}/nowhere", "-o", "{tmp}/v.html"], ["no such run directory"]),
    (["viz", "{run}", "{tmp}/missing.txt", "-o", "{tmp}/v.html"], ["no such file"]),
    (["viz", "{run}", "{euro}", "-o", "{tmp}/v.html"], ["'€'"]),
    (["viz", "{run}", "{run}", "{euro}", "{euro}", "-o", "{tmp}/v.html"], ["at most a second run"]),
    (["viz", "{nan_run}", "-o", "{tmp}/v.html"], ["NaN"]),
    (["viz", "{run}", "--weights", "x", "-o", "{tmp}/v.html"], ["--weights"]),
    # --- gradflow -----------------------------------------------------------------------------
    (["gradflow", "--gain", "nan", "-o", "{tmp}/g.png"], ["--gain"]),
    (["gradflow", "--gain", "inf", "-o", "{tmp}/g.png"], ["--gain"]),
    (["gradflow", "--gain", "-1", "-o", "{tmp}/g.png"], ["--gain"]),
    (["gradflow", "--gain", "0", "-o", "{tmp}/g.png"], ["--gain"]),
    (["gradflow", "--gain", "abc", "-o", "{tmp}/g.png"], ["--gain"]),
    (["gradflow", "--length", BIG, "-o", "{tmp}/g.png"], ["--length", "10,000"]),
    (["gradflow", "--length", "0", "-o", "{tmp}/g.png"], ["--length"]),
    (["gradflow", "--depth", "-1", "-o", "{tmp}/g.png"], ["--depth"]),
    (["gradflow", "--hidden", "0", "-o", "{tmp}/g.png"], ["--hidden"]),
    (["gradflow", "--hidden", BIG, "-o", "{tmp}/g.png"], ["--hidden", "4,096"]),
    (["gradflow", "--batch-size", "0", "-o", "{tmp}/g.png"], ["--batch-size"]),
    (["gradflow", "--forget-bias", "nan", "-o", "{tmp}/g.png"], ["--forget-bias"]),
    (["gradflow", "--cell", "transformer", "-o", "{tmp}/g.png"], ["--cell"]),
    (["gradflow", "--net", "cnn", "-o", "{tmp}/g.png"], ["--net"]),
    (["gradflow", "--cell", "lstm", "--init", "identity", "-o", "{tmp}/g.png"], ["identity"]),
    (["gradflow", "-o", "{empty_dir}"], ["-o", "is a folder"]),
    (["gradflow", "-o", "{tmp}/no/g.png"], ["-o", "does not exist"]),
    (["gradflow", "--run", "{tmp}/nowhere", "-o", "{tmp}/g.png"], ["no such run directory"]),
    # --- longrange ----------------------------------------------------------------------------
    (["longrange", "adding", "--cells", "rnn,transformer"], ["--cells"]),
    (["longrange", "adding", "--lengths", "0"], ["--lengths"]),
    (["longrange", "adding", "--lengths", BIG], ["--lengths", "10,000"]),
    (["longrange", "adding", "--lengths", "a,b"], ["--lengths"]),
    (["longrange", "adding", "--seeds", "0"], ["--seeds"]),
    (["longrange", "adding", "--seeds", BIG], ["--seeds"]),
    (["longrange", "adding", "--first-seed", "-1"], ["--first-seed"]),
    (["longrange", "adding", "--clip-mode", "sometimes"], ["--clip-mode"]),
    (["longrange", "adding", "--grad-clip", "0"], ["--grad-clip"]),
    (["longrange", "adding", "--grad-clip", "nan"], ["--grad-clip"]),
    (["longrange", "adding", "--clip-value", "1"], ["--clip-value", "unrecognized"]),  # renamed
    (["longrange", "adding", "--steps", "0"], ["--steps"]),
    (["longrange", "adding", "--hidden", BIG], ["--hidden", "4,096"]),
    (["longrange", "adding", "--lr", "nan"], ["--lr"]),
    (["longrange", "adding", "--eval-every-steps", "0"], ["--eval-every-steps"]),
    (["longrange", "adding", "--test-size", "0"], ["--test-size"]),
    (["longrange", "adding", "--batch-size", "0"], ["--batch-size"]),
    (["longrange", "adding", "--out", "{text}"], ["--out", "is a file"]),
    (["longrange", "adding", "--out", "{tmp}/lr", "--plot", "{empty_dir}"], ["--plot"]),
    (["longrange", "adding", "--out", "{tmp}/lr", "--plot", "{tmp}/no/p.png"], ["--plot"]),
    (["longrange", "sorting"], ["invalid choice"]),
    # --- outputs: never a run's own file, nothing inside a run being read, no silent overwrite
    (["export", "{run}", "-o", "{run}/model.safetensors"], ["-o", "only rnnlab train"]),
    (["export", "{run}", "-o", "{run}/m.onnx"], ["-o", "inside the run directory"]),
    (["export", "{run}", "-o", "{text}"], ["-o", "already exists", "--force"]),
    (["compress", "{run}", "{text}", "-o", "{run}/model.safetensors"], ["only rnnlab train"]),
    (["compress", "{run}", "{text}", "-o", "{run}/t.rz", "-f"], ["inside the run directory"]),
    (["compress", "{run}", "{text}", "-o", "{link}", "-f"], ["config.json", "only rnnlab train"]),
    (["compress", "{run}", "{text}", "-o", "{nan_run}/.lock", "-f"], [".lock", "only rnnlab"]),
    (["compress", "{run}", "{text}", "-o", "{euro}"], ["-o", "already exists", "--force"]),
    (["decompress", "{run}", "{tmp}/s.rz", "-o", "{run}/config.json"], ["only rnnlab train"]),
    (["decompress", "{run}", "{tmp}/s.rz", "-o", "{text}"], ["already exists", "--force"]),
    (["viz", "{run}", "-o", "{run}/config.json"], ["-o", "only rnnlab train"]),
    (["viz", "{run}", "-o", "{nan_run}/vocab.json"], ["-o", "vocab.json", "only rnnlab train"]),
    (["plot", "{run}", "-o", "{run}/last.safetensors"], ["-o", "only rnnlab train"]),
    (["plot", "{run}", "-o", "{run}/curves.png"], ["-o", "inside the run directory"]),
    (["eval", "{run}", "--plot", "{run}/metrics.jsonl"], ["--plot", "only rnnlab train"]),
    (["gradflow", "--run", "{run}", "-o", "{run}/g.png"], ["-o", "inside the run directory"]),
    (["longrange", "adding", "--plot", "{nan_run}/model.safetensors"], ["--plot", "only rnnlab"]),
    # --- messages that said the wrong thing (issue 25) ---
    (["compress", "{run}", "{euro}", "-o", "{tmp}/e.rz"], ["'€'", "--bytes"]),
    (["decompress", "{run}", "{empty_dir}", "-o", "{tmp}/o.txt"], ["is a folder"]),
    (["decompress", "{run}", "/dev/zero", "-o", "{tmp}/o.txt"], ["not a regular file"]),
    (["eval", "{run}", "--segments", "0"], ["--segments", "--adapt"]),
    (["longrange", "--paper", "{paper}", "--time-limit", "1e12"], ["--time-limit", "1e9"]),
    (["train", "--resume", "{lock_only}"], ["before its first save", "--out"]),
    # --- the command itself -------------------------------------------------------------------
    (["frobnicate"], ["invalid choice"]),
    (["corpora", "--no-such-flag"], ["--no-such-flag"]),
]


@pytest.fixture
def nan_run(shared_run, tmp_path):
    """A copy of the shared run whose weights hold a NaN."""
    run = shutil.copytree(shared_run, tmp_path / "nan_run")
    for name in ("model.safetensors", "last.safetensors"):
        tensors = safetensors.torch.load_file(run / name)
        tensors["embedding.weight"][0, 0] = math.nan
        safetensors.torch.save_file(tensors, run / name)
    return run


@pytest.fixture
def int_run(shared_run, tmp_path):
    """A copy of the shared run whose weights have the right shapes but dtype int64."""
    run = shutil.copytree(shared_run, tmp_path / "int_run")
    for name in ("model.safetensors", "last.safetensors"):
        tensors = safetensors.torch.load_file(run / name)
        tensors["head.weight"] = tensors["head.weight"].to(torch.int64)
        safetensors.torch.save_file(tensors, run / name)
    return run


@pytest.fixture
def narrow_run(shared_run, tmp_path):
    """A copy of the shared run whose head.weight has fewer columns than config.json says."""
    run = shutil.copytree(shared_run, tmp_path / "narrow_run")
    tensors = safetensors.torch.load_file(run / "model.safetensors")
    tensors["head.weight"] = tensors["head.weight"][:, :8].contiguous()
    safetensors.torch.save_file(tensors, run / "model.safetensors")
    return run


@pytest.fixture
def deep_state_run(shared_run, tmp_path):
    """A copy of the shared run whose training state is JSON nested 100,000 arrays deep."""
    run = shutil.copytree(shared_run, tmp_path / "deep_state_run")
    tensors = safetensors.torch.load_file(run / "last.safetensors")
    deep = "[" * 100_000 + "]" * 100_000
    safetensors.torch.save_file(
        tensors, run / "last.safetensors", metadata={"step": "30", "train_state": deep}
    )
    return run


def fill(args: list[str], shared_run: Path, tmp: Path, request) -> list[str]:
    """The case's argv with its placeholders filled in (files made on demand)."""
    made = {
        "text": lambda: write(tmp / "words.txt", words_text(lines=50).encode()),
        "binary": lambda: write(tmp / "prog.bin", b"\x7fELF\x00\x01\x02" * 9),
        "latin1": lambda: write(tmp / "latin1.txt", "caf\xe9\n".encode("latin-1") * 50),
        "euro": lambda: write(tmp / "euro.txt", "the € dog\n".encode() * 5),
        "one_char": lambda: write(tmp / "one.txt", b"t"),
        "empty_dir": lambda: (tmp / "empty_dir").mkdir(exist_ok=True) or tmp / "empty_dir",
        "nan_run": lambda: request.getfixturevalue("nan_run"),
        "int_run": lambda: request.getfixturevalue("int_run"),
        "narrow_run": lambda: request.getfixturevalue("narrow_run"),
        "deep_state_run": lambda: request.getfixturevalue("deep_state_run"),
        "link": lambda: link(tmp / "link.json", shared_run / "config.json"),
        "lock_only": lambda: (
            write((tmp / "lock_only").mkdir() or tmp / "lock_only/.lock", b"1\n").parent
        ),
        "paper": lambda: next(iter(lab.PAPERS)),
    }
    values = {"run": shared_run, "tmp": tmp}
    for key, make in made.items():
        if any("{" + key + "}" in a for a in args):
            values[key] = make()
    argv = [a.format(**values) for a in args]
    if argv[0] == "train" and "--resume" not in argv and "--out" not in argv:
        argv += ["--out", str(tmp / "out")]
    return argv


def lock_only(run: Path) -> Path:
    """What a fine-tune killed before its first save leaves: the folder and its lock."""
    run.mkdir()
    (run / ".lock").write_text("12345\n")
    return run


def link(path: Path, target: Path) -> Path:
    path.symlink_to(target)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def snapshot(*folders: Path) -> dict[str, str]:
    """Every file under the folders (and the working directory's entries), with a hash."""
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    for p in Path.cwd().iterdir():
        out[f"cwd/{p.name}"] = str(p.stat().st_mtime_ns)
    return out


def case_id(case) -> str:
    return " ".join(case[0])[:60]


@pytest.mark.parametrize("args, needles", CLI_CASES, ids=[case_id(c) for c in CLI_CASES])
def test_cli_bad_input_is_one_line_exit_2_and_changes_nothing(
    args, needles, shared_run, tmp_path, capsys, request
):
    argv = fill(args, shared_run, tmp_path, request)
    before = snapshot(shared_run, tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("rnnlab: error:"), err
    assert "Traceback" not in err and captured.out == ""
    for needle in needles:
        assert needle in err, err
    assert snapshot(shared_run, tmp_path) == before


def test_the_table_is_large():
    assert len(CLI_CASES) >= 100


# --- the Python API: the same checks, as typed exceptions ---------------------------------------


def api_cases(run: Path, tmp: Path, nan_run: Path) -> list[tuple]:
    lm = rnnlab.load(run)
    text = write(tmp / "words.txt", words_text(lines=50).encode())
    return [
        (lambda: rnnlab.evaluate(run, chunk_len=0), "--chunk-len"),
        (lambda: rnnlab.evaluate(run, chunk_len=10**9), "--chunk-len"),
        (lambda: rnnlab.evaluate(run, weights="middle"), "--weights"),
        (lambda: rnnlab.evaluate(run, unknown="ignore"), "--unknown"),
        (lambda: rnnlab.evaluate(run, device="tpu"), "--device"),
        (lambda: rnnlab.evaluate(run, tmp / "missing.txt"), "no such file"),
        (lambda: rnnlab.evaluate(run, "the € dog"), "'€'"),
        (lambda: rnnlab.evaluate(run, "t"), "fewer than 2"),
        (lambda: rnnlab.evaluate(tmp / "nowhere"), "no such run directory"),
        (lambda: rnnlab.evaluate(nan_run), "NaN"),
        (lambda: rnnlab.visualize(run, chars=0), "--chars"),
        (lambda: rnnlab.visualize(run, feature_chars=-1), "--feature-chars"),
        (lambda: rnnlab.visualize(run, weights="x"), "--weights"),
        (lambda: rnnlab.load(tmp / "nowhere"), "no such run directory"),
        (lambda: rnnlab.load(run, weights="middle"), "weights"),
        (lambda: lm.generate(temperature=math.nan), "--temperature"),
        (lambda: lm.generate(temperature=math.inf), "--temperature"),
        (lambda: lm.generate(length=-1), "--length"),
        (lambda: lm.generate(top_p=0.0), "--top-p"),
        (lambda: lm.generate(top_k=-1), "--top-k"),
        (lambda: lm.generate("Zebra"), "'Z'"),
        (lambda: lm.generate(unknown="ignore"), "--unknown"),
        (lambda: lm.generate(weights_dtype="float16"), "--weights-dtype"),
        (lambda: lm.generate_many(num_samples=0), "--num-samples"),
        (lambda: lm.generate_many(num_samples=10**9), "--num-samples"),
        (lambda: sampling.generate(lm.model, lm.vocab, length=-5), "--length"),
        (lambda: lm.bits_per_char("Zebra"), "'Z'"),
        (lambda: rnnlab.train(text, out=tmp / "o", hidden_size=10**9), "--hidden"),
        (lambda: rnnlab.train(text, out=tmp / "o", hidden_size=16.5), "--hidden"),
        (lambda: rnnlab.train(text, out=tmp / "o", learning_rate=math.inf), "--lr"),
        (lambda: rnnlab.train(text, out=tmp / "o", seq_len=True), "--seq-len"),
        (lambda: rnnlab.train(text, out=tmp / "o", clip_mode="x"), "--clip-mode"),
    ]


def test_api_bad_input_raises_usage_error_and_changes_nothing(shared_run, tmp_path, nan_run):
    cases = api_cases(shared_run, tmp_path, nan_run)
    for call, needle in cases:
        before = snapshot(shared_run, tmp_path)
        with pytest.raises(UsageError) as info:
            call()
        message = str(info.value)
        assert needle in message and "\n" not in message, message
        assert snapshot(shared_run, tmp_path) == before, message
    assert len(cases) >= 30
