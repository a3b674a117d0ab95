"""The training plan (plan.py): monotone in the budget, the user's flags win, recorded in
config.json, followed on resume, and printed by --plan-only."""

import json
import math

from conftest import words_text
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnlab import checkpoint, plan, training
from rnnlab.cli import main
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.progress import when_validation_stopped

SHAKESPEARE_CHARS = 1_003_854


def flops_speed(cpu_flops: float):
    """A device that trains at a fixed FLOP rate: chars/s falls with the model's size."""

    def speed(m: ModelConfig, t: TrainConfig) -> float:
        return cpu_flops / (6 * plan.parameters_of(m))

    return speed


def planned(minutes=None, max_steps=None, train_chars=SHAKESPEARE_CHARS, user=(), speed=None, **kw):
    model = ModelConfig(vocab_size=65, **{k: v for k, v in kw.items() if k != "learning_rate"})
    train = TrainConfig(
        minutes=minutes,
        max_steps=max_steps,
        **{k: v for k, v in kw.items() if k == "learning_rate"},
    )
    return plan.make_plan(
        model, train, set(user) | set(kw), train_chars, speed or flops_speed(2e11)
    )


def test_dropout_grows_with_the_epochs_and_is_capped():
    assert plan.dropout_for(0.5) == plan.dropout_for(2.0) == 0.0
    values = [plan.dropout_for(e) for e in (2, 3, 4, 8, 16, 64, 1e6)]
    assert values == sorted(values) and values[-1] == plan.MAX_DROPOUT
    assert plan.dropout_for(4.0) == plan.DROPOUT_PER_DOUBLING


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.5, 200.0),
    st.floats(1.5, 4.0),
    st.floats(1e10, 1e13),
    st.integers(50_000, 50_000_000),
)
def test_more_budget_never_gives_a_smaller_model_or_less_dropout(minutes, factor, flops, chars):
    """The property of issue 21: more minutes (or a faster device) plan at least as large a
    model, at least as much regularization for the same model, and at least as much compute."""
    a_model, _, a = planned(minutes, train_chars=chars, speed=flops_speed(flops))
    b_model, _, b = planned(minutes * factor, train_chars=chars, speed=flops_speed(flops))
    assert b.parameters >= a.parameters
    assert b.planned_chars * b.parameters >= a.planned_chars * a.parameters * 0.999  # compute
    if b.parameters == a.parameters:
        assert b_model.dropout >= a_model.dropout


def test_the_largest_model_the_budget_reads_enough_characters_for():
    m, t, p = planned(10, speed=flops_speed(2e11))
    assert p.planned_chars >= plan.MIN_CHARS_PER_PARAMETER * p.parameters
    bigger = [
        (L, H)
        for L, H in plan.LADDER
        if plan.parameters_of(ModelConfig(vocab_size=65, num_layers=L, hidden_size=H))
        > p.parameters
    ]
    assert bigger, "the test wants a larger rung that was not chosen"
    assert m.cell == "mingru" and m.ff_mult == 4
    assert p.epochs == p.planned_chars / SHAKESPEARE_CHARS
    assert m.dropout == plan.dropout_for(p.epochs)


def test_a_small_corpus_caps_the_model():
    _, _, p = planned(600, train_chars=20_000, speed=flops_speed(1e13))
    assert p.parameters == plan.parameters_of(
        ModelConfig(vocab_size=65, num_layers=plan.LADDER[0][0], hidden_size=plan.LADDER[0][1])
    )
    assert p.epochs > 100 and p.model["dropout"] == plan.MAX_DROPOUT


def test_a_step_budget_needs_no_timing():
    def no_speed(m, t):
        raise AssertionError("a step budget must not time the candidates")

    _, _, p = planned(max_steps=1000, speed=no_speed)
    assert p.planned_chars == 1000 * 64 * 64 and p.chars_per_s == {} and p.calibration_s == 0


def test_the_users_flags_win_and_are_named():
    m, t, p = planned(10, hidden_size=200, learning_rate=1e-3)
    assert m.hidden_size == 200 and m.num_layers == 2 and t.learning_rate == 1e-3
    assert p.user == ("--hidden", "--lr")
    assert "yours: --hidden, --lr" in p.line()
    m, _, p = planned(10, dropout=0.05, cell="lstm")
    assert (m.cell, m.hidden_size, m.dropout) == ("lstm", 512, 0.05)


def test_the_line_says_what_was_chosen_and_from_what():
    _, _, p = planned(5)
    line = p.line()
    assert (
        line.startswith("plan: mingru ") and "5 min reads" in line and "epochs of 1,003,854" in line
    )
    assert json.loads(json.dumps(p.to_dict()))["epochs"] == p.epochs


def test_measured_speed_is_positive_and_finite():
    m = ModelConfig(vocab_size=20, hidden_size=16, num_layers=1, embedding_size=8)
    t = TrainConfig(batch_size=4, seq_len=8, autocast_dtype="float32")
    import torch

    speed = plan.measure_speed(m, t, torch.device("cpu"))
    assert math.isfinite(speed) and speed > 0


def test_the_plan_is_recorded_and_resume_follows_it(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(words_text(lines=30))  # about 1 kB: 40 steps of 64 chars are epochs
    out = tmp_path / "run"
    fast = dict(batch_size=4, seq_len=16, eval_every_s=1e9, sample_chars=0, device="cpu")
    small = dict(hidden_size=16, num_layers=1, embedding_size=8)
    training.train(
        CorpusConfig(source=str(corpus)),
        ModelConfig(**small),
        TrainConfig(max_steps=40, autocast_dtype="float32", **fast),
        out,
        user={"hidden_size", "num_layers", "embedding_size", "max_steps", *fast},
    )
    saved = checkpoint.load_config(out)
    assert saved.plan is not None and saved.plan["budget"] == "40 steps"
    assert saved.model.dropout == plan.dropout_for(saved.plan["epochs"]) > 0  # many epochs
    assert "--hidden" in saved.plan["user"]
    training.train(
        CorpusConfig(), ModelConfig(), TrainConfig(max_steps=45), out, resume=True, user=set()
    )
    again = checkpoint.load_config(out)
    assert again.model == saved.model and again.plan == saved.plan
    assert again.train.max_steps == 45


def test_plan_only_prints_the_plan_and_writes_no_run(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(words_text())
    code = main(
        ["train", str(corpus), "--plan-only", "--max-steps", "50", "--out", str(tmp_path / "r")]
    )
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("plan: mingru 2x") and "50 steps reads 0.2M chars" in line
    assert not (tmp_path / "r").exists()
    assert main(["train", str(corpus), "--plan-only", "--max-steps", "50", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["budget"] == "50 steps"
    assert main(["train", "--resume", str(tmp_path), "--plan-only"]) == 2


def test_when_validation_stopped_improving():
    def val(step, bpc, train):
        return {"split": "val", "step": step, "bpc": bpc, "train_bpc": train, "elapsed_s": step}

    rising = [val(60, 2.0, 2.1), val(120, 1.8, 1.7), val(180, 1.85, 1.5), val(240, 1.9, 1.4)]
    line = when_validation_stopped(rising)
    assert "stopped improving at step 120 (2.0 min), 1.8000 bpc" in line
    assert "2 validation(s) after it were up to 0.1000 bpc worse" in line
    assert "gap went +0.100 -> +0.500" in line
    assert "improved to the end" in when_validation_stopped(rising[:2])
    assert when_validation_stopped([]) == "no validation was recorded"
