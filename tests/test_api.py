import json
import math

import pytest
from conftest import periodic_text

import rnnlab


def test_train_load_generate_and_score(tmp_path):
    f = tmp_path / "abc.txt"
    f.write_text(periodic_text("abcabd\n", 500))
    events = []
    result = rnnlab.train(
        f,
        out=tmp_path / "run",
        hidden_size=24,
        num_layers=1,
        embedding_size=8,
        dropout=0.0,
        batch_size=4,
        seq_len=16,
        max_steps=120,
        learning_rate=1e-2,
        autocast_dtype="float32",
        eval_every_s=0.5,
        on_eval=events.append,
    )
    assert isinstance(result, rnnlab.TrainResult) and result.step == 120
    assert events and events[-1].step == 120
    lm = rnnlab.load(tmp_path / "run")
    text = lm.generate("abc", length=40, temperature=0.5, seed=0, weights_dtype="float32")
    assert isinstance(text, str) and len(text) == 40
    assert lm.generate("abc", length=40, temperature=0.5, seed=0, weights_dtype="float32") == text
    assert len(lm.generate_many("a", num_samples=3, length=5, seed=1)) == 3
    # 'd' after "ab" is the only uncertain choice: about 1/7 of the characters carry a coin flip
    bpc = lm.bits_per_char(periodic_text("abcabd\n", 50))
    assert bpc < 0.5 and bpc < math.log2(5)


def test_unknown_options_and_resume_rules(tmp_path):
    with pytest.raises(TypeError, match="hiden_size"):
        rnnlab.train("x.txt", out=tmp_path / "r", hiden_size=3)
    with pytest.raises(TypeError, match="only max_steps and minutes"):
        rnnlab.train(out=tmp_path / "r", resume=True, cell="gru")


def test_evaluate_and_visualize_mirror_the_cli(shared_run, tmp_path, capsys):
    """rnnlab.evaluate / rnnlab.visualize return what `rnnlab eval --json` / `viz --json` print."""
    from rnnlab.cli import main

    held_out = tmp_path / "held.txt"
    held_out.write_text("the quick brown fox jumps over a lazy dog\n" * 30)
    report = rnnlab.evaluate(shared_run, held_out)
    capsys.readouterr()
    assert main(["eval", str(shared_run), str(held_out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed | {"seconds": 0} == report.to_json() | {"seconds": 0}
    assert report.text == str(held_out) and report.num_chars == len(held_out.read_text()) - 1
    assert rnnlab.evaluate(shared_run, held_out.read_text()).bpc == pytest.approx(report.bpc)
    assert report.bpc == pytest.approx(
        rnnlab.load(shared_run).bits_per_char(held_out.read_text()), rel=1e-6
    )

    page = rnnlab.visualize(shared_run, held_out, chars=200, feature_chars=600)
    out = tmp_path / "v.html"
    assert (
        main(
            [
                "viz",
                str(shared_run),
                str(held_out),
                "-o",
                str(out),
                "--chars",
                "200",
                "--feature-chars",
                "600",
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert out.read_text() == page.html
    assert {k: v for k, v in printed.items() if k not in ("html", "html_bytes")} == page.summary
