"""Fine-tuning (`rnnlab train NEW_TEXT --init-from RUN [--extend-vocab]`): a new run that starts
from the base run's weights, where every known character keeps its id and its rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch

import rnnlab
from rnnlab import checkpoint, finetune
from rnnlab.cli import main
from rnnlab.vocab import Vocab

MODEL = "--hidden 16 --layers 1 --embedding 8".split()
TRAIN = "--batch-size 4 --seq-len 16 --autocast-dtype float32 --device cpu --quiet".split()
BASE_TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60
NEW_TEXT = "the lazy dog sleeps; the fox (quick!) runs: 42 times.\n" * 40  # ; ( ! ) : 4 2 are new


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    (tmp / "base.txt").write_text(BASE_TEXT)
    out = tmp / "base"
    args = ["train", str(tmp / "base.txt"), "--out", str(out), "--max-steps", "20"]
    assert main([*args, *MODEL, *TRAIN, "--lr", "1e-2"]) == 0
    return out


@pytest.fixture
def new_text(tmp_path):
    path = tmp_path / "new.txt"
    path.write_text(NEW_TEXT)
    return path


def test_new_characters_are_listed_unless_extend_vocab(base, new_text, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["train", str(new_text), "--init-from", str(base), "--out", str(out), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert "7 character(s) of the new text are not in" in err and "--extend-vocab" in err
    for c in "!();:42":
        assert repr(c) in err
    assert err.count("\n") == 1 and not out.exists()


def test_extend_vocab_keeps_every_known_id_and_row(base, new_text, tmp_path):
    """With a learning rate of ~0 the fine-tuned run's weights are the base's, row for row."""
    out = tmp_path / "ft"
    args = ["train", str(new_text), "--init-from", str(base), "--extend-vocab", "--out", str(out)]
    assert main([*args, "--max-steps", "2", "--lr", "1e-30", "--warmup-steps", "0", *TRAIN]) == 0
    base_vocab, vocab = checkpoint.load_vocab(base), checkpoint.load_vocab(out)
    V0 = len(base_vocab)
    assert vocab.symbols[:V0] == base_vocab.symbols  # known characters keep their ids
    assert vocab.symbols[V0:] == tuple(sorted(set(NEW_TEXT) - set(BASE_TEXT)))
    a = safetensors.torch.load_file(base / checkpoint.BEST)
    b = safetensors.torch.load_file(out / checkpoint.LAST)
    for name, tensor in a.items():
        rows = b[name][:V0] if name in ("embedding.weight", "head.weight", "head.bias") else b[name]
        torch.testing.assert_close(rows, tensor, atol=1e-6, rtol=0)
    assert b["head.weight"][V0:].abs().max() < 1e-6
    new_bias = b["head.bias"][V0:] - a["head.bias"].min()
    assert new_bias.abs().max() < 1e-6  # new characters start unlikely
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["vocab_size"] == len(vocab) and config["model"]["hidden_size"] == 16
    # the known-character predictions are the base model's: same softmax over the known ids
    text = "the lazy dog"
    with torch.no_grad():
        p_base = rnnlab.load(base).model(torch.tensor([base_vocab.encode(text)]))[0]
        p_ft = rnnlab.load(out, weights="last").model(torch.tensor([vocab.encode(text)]))[0]
    torch.testing.assert_close(p_ft[..., :V0], p_base, atol=1e-5, rtol=0)


def test_fine_tuned_run_trains_resumes_and_evaluates(base, new_text, tmp_path, capsys):
    out = tmp_path / "ft"
    args = ["train", str(new_text), "--init-from", str(base), "--extend-vocab", "--out", str(out)]
    assert main([*args, "--max-steps", "20", "--lr", "1e-2", *TRAIN]) == 0
    metrics = checkpoint.read_metrics(out)
    assert any(r.get("split") == "val" for r in metrics)
    # its own optimizer and schedule: a fresh warmup from step 0 (the base ran 20 steps)
    assert min(r["step"] for r in metrics if "lr" in r) <= 20
    assert main(["train", "--resume", str(out), "--max-steps", "30", "--quiet"]) == 0
    assert max(r["step"] for r in checkpoint.read_metrics(out)) == 30
    # an evaluation file through the (no longer sorted) vocabulary
    capsys.readouterr()
    assert main(["eval", str(out), str(new_text), "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    lm = rnnlab.load(out)
    assert abs(report["bpc"] - lm.bits_per_char(NEW_TEXT)) < 1e-3
    assert set(lm.generate("the (", length=200, temperature=1.0, seed=0)) <= set(lm.vocab.symbols)


def test_the_python_api(base, new_text, tmp_path):
    result = rnnlab.train(
        new_text,
        out=tmp_path / "api",
        init_from=base,
        extend_vocab=True,
        max_steps=5,
        batch_size=4,
        seq_len=16,
        autocast_dtype="float32",
    )
    assert result.step == 5
    with pytest.raises(TypeError, match="fixes the architecture"):
        rnnlab.train(new_text, out=tmp_path / "x", init_from=base, hidden_size=32, max_steps=1)


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--hidden", "32"], "--hidden cannot be given with --init-from"),
        (["--resume", "{base}"], "--init-from starts a new run; --resume continues one"),
    ],
)
def test_flag_errors(base, new_text, tmp_path, capsys, extra, words):
    extra = [e.format(base=base) for e in extra]
    argv = ["train", str(new_text), "--init-from", str(base), "--extend-vocab", *extra, *TRAIN]
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert main(["train", str(new_text), "--extend-vocab", *TRAIN]) == 2
    assert "--extend-vocab goes with --init-from" in capsys.readouterr().err
    assert main(["train", str(new_text), "--init-from", str(tmp_path / "nope"), *TRAIN]) == 2


def test_merge_and_remap_units():
    base = Vocab.from_chars("abc")
    text = Vocab.from_chars("abd")
    merged = finetune.merge_vocab(base, text, extend=True)
    assert merged.symbols == ("a", "b", "c", "d")
    table = finetune.id_table(text, merged)
    assert table.tolist() == [0, 1, 3]
    ids = np.array(text.encode("dab"), dtype=np.uint8)
    assert merged.decode(finetune.Tuned(merged, table).remap(ids).tolist()) == "dab"
    with pytest.raises(rnnlab.UsageError, match="'d'"):
        finetune.merge_vocab(base, text, extend=False)
    with pytest.raises(rnnlab.UsageError, match="--bytes"):
        finetune.merge_vocab(Vocab.bytes(), text, extend=True)
    state = {
        "embedding.weight": torch.randn(3, 2),
        "head.weight": torch.randn(3, 4),
        "head.bias": torch.randn(3),
    }
    grown = finetune.extend_weights(state, 2)
    assert grown["embedding.weight"].shape == (5, 2) and grown["head.bias"].shape == (5,)
    assert torch.equal(grown["head.weight"][:3], state["head.weight"])
