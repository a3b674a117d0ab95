"""The training plan (plan.py): monotone in the budget, the user's flags win, recorded in
config.json, followed on resume, and printed by --plan-only."""

import dataclasses
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
LSTM = dict(cell="lstm", num_layers=2, hidden_size=512, ff_mult=0)


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
    assert plan.dropout_for("mingru", 50.0) == 0.0  # measured to hurt the scan cells
    values = [plan.dropout_for("lstm", e) for e in (0.5, 2, 5, 10, 20, 40, 1e6)]
    assert values == sorted(values)
    assert values[0] == plan.MIN_DROPOUT and values[-1] == plan.MAX_DROPOUT
    assert plan.dropout_for("lstm", plan.LSTM_DROPOUT_EPOCHS) == plan.LSTM_DROPOUT


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.5, 200.0),
    st.floats(1.5, 4.0),
    st.floats(1e10, 1e13),
    st.integers(50_000, 50_000_000),
)
def test_more_budget_never_plans_less(minutes, factor, flops, chars):
    """Issue 21's property, for the rule: a longer budget (or a faster device) never goes back
    from the LSTM to minGRU, never plans a smaller minGRU, never less dropout for the same
    model, and always reads more characters with the model it plans."""
    a_model, _, a = planned(minutes, train_chars=chars, speed=flops_speed(flops))
    b_model, _, b = planned(minutes * factor, train_chars=chars, speed=flops_speed(flops))
    assert not (a_model.cell == "lstm" and b_model.cell != "lstm")
    if a_model.cell == b_model.cell == "mingru":
        assert b.parameters >= a.parameters
        assert b.planned_chars * b.parameters >= a.planned_chars * a.parameters * 0.999
    if a_model == dataclasses.replace(b_model, dropout=a_model.dropout):
        assert b_model.dropout >= a_model.dropout and b.planned_chars >= a.planned_chars
    if a_model.cell == b_model.cell == "lstm":  # more members, and more text read by them all
        assert b_model.members >= a_model.members
        assert b.planned_chars * b_model.members >= a.planned_chars * a_model.members * 0.999


def test_a_large_text_gets_the_largest_mingru_the_budget_reads_enough_for():
    m, t, p = planned(10, train_chars=50_000_000, speed=flops_speed(2e11))
    assert m.cell == "mingru" and m.ff_mult == 4 and m.dropout == 0
    assert t.optimizer == "muon" and p.train["optimizer"] == "muon"
    assert p.planned_chars >= plan.MIN_CHARS_PER_PARAMETER * p.parameters
    larger = [
        (L, H)
        for L, H in plan.LADDER
        if plan.parameters_of(ModelConfig(vocab_size=65, num_layers=L, hidden_size=H))
        > p.parameters
    ]
    assert larger, "the test wants a larger rung that was not chosen"
    L, H = larger[0]
    bigger = ModelConfig(vocab_size=65, num_layers=L, hidden_size=H)
    # at a fixed FLOP rate the next rung reads P / P_next as many characters: too few for it
    reads_next = p.planned_chars * p.parameters / plan.parameters_of(bigger)
    assert reads_next < plan.MIN_CHARS_PER_PARAMETER * plan.parameters_of(bigger)
    assert t.learning_rate == plan.lr_for("mingru", m.hidden_size)


def test_a_text_read_many_times_gets_the_lstm_with_dropout():
    m, t, p = planned(10, train_chars=SHAKESPEARE_CHARS, speed=flops_speed(2e11))
    assert (m.cell, m.num_layers, m.hidden_size, m.ff_mult) == ("lstm", 2, 512, 0)
    assert p.epochs >= plan.LSTM_EPOCHS and m.dropout == plan.dropout_for("lstm", p.epochs)
    assert m.embedding_dropout == round(m.dropout / 3, 2) > 0 and "(embedding " in p.line()
    m, _, _ = planned(10, train_chars=50_000_000, speed=flops_speed(2e11))  # minGRU: none
    assert m.cell == "mingru" and m.embedding_dropout == 0
    m, _, p = planned(10, embedding_dropout=0.05)
    assert m.embedding_dropout == 0.05 and "--embedding-dropout" in p.line()
    assert t.learning_rate == plan.BASE_LR


def test_a_budget_past_the_lstms_epochs_ends_there():
    m, t, p = planned(100, train_chars=SHAKESPEARE_CHARS, speed=flops_speed(2e11))
    assert (m.cell, m.num_layers, m.hidden_size) == ("lstm", 2, 512)
    assert abs(p.epochs - plan.LSTM_MAX_EPOCHS) < 0.01 and t.max_steps is not None
    assert t.max_steps * t.batch_size * t.seq_len == p.planned_chars
    assert m.dropout == plan.dropout_for("lstm", plan.LSTM_MAX_EPOCHS)


def test_a_smaller_text_is_read_more_times_in_fewer_steps():
    """The cap is LSTM_MAX_EPOCHS on tiny Shakespeare and larger texts; a smaller text is read
    more times (it takes that many steps to learn from it) but in fewer steps than a larger."""
    sizes = [5_000, 50_000, 270_000, SHAKESPEARE_CHARS, 12_000_000]
    caps = [plan.max_epochs(n) for n in sizes]
    assert caps == sorted(caps, reverse=True) and caps[-2] == caps[-1] == plan.LSTM_MAX_EPOCHS
    steps = [c * n for c, n in zip(caps, sizes, strict=True)]
    assert steps == sorted(steps)
    m, t, p = planned(1000, train_chars=270_000, members=1)
    assert abs(p.epochs - plan.max_epochs(270_000)) < 0.02 and p.epochs > 17
    assert t.max_steps * t.batch_size * t.seq_len == p.planned_chars
    assert m.dropout == plan.dropout_for("lstm", p.epochs) > plan.LSTM_DROPOUT


def test_a_budget_of_many_epochs_trains_several_members_side_by_side():
    """From MEMBER_EPOCHS per member, the LSTM's minutes are shared by members trained side by
    side (each reads every step, each step costs them all), dropout from each one's epochs, up
    to FULL_MEMBERS; past them one more for each cap's worth of epochs, at most
    MAX_PLANNED_MEMBERS; each still ends at the cap."""
    speed = flops_speed(2e11)  # the LSTM 2x512 at about 10k chars/s
    lstm_speed = 2e11 / (6 * plan.parameters_of(ModelConfig(vocab_size=65, **LSTM)))
    one_epoch_min = SHAKESPEARE_CHARS / lstm_speed / 60
    m, _, p = planned(0.95 * plan.LSTM_MAX_EPOCHS * one_epoch_min, speed=speed)
    assert m.members == 1 and "members" not in p.line()
    m, t, p = planned(1.2 * plan.LSTM_MAX_EPOCHS * one_epoch_min, speed=speed)  # past the cap
    assert m.members == 1 and abs(p.epochs - plan.LSTM_MAX_EPOCHS) < 0.01 and t.max_steps
    m, t, p = planned(2.1 * plan.MEMBER_EPOCHS * one_epoch_min, speed=speed)
    assert m.members == 2 and t.max_steps is None and p.epochs > plan.MEMBER_EPOCHS
    few = plan.max_epochs(270_000) * plan.MEMBER_EPOCHS / plan.LSTM_MAX_EPOCHS  # 11.6 epochs
    m, _, p = planned(
        1.9 * few * one_epoch_min * 270_000 / SHAKESPEARE_CHARS, train_chars=270_000, speed=speed
    )
    assert m.members == 1, "a smaller text's members each read more, as its cap is longer"
    m, t, p = planned(2.5 * plan.MEMBER_EPOCHS * one_epoch_min, speed=speed)
    assert m.members == 2 and (m.cell, m.hidden_size) == ("lstm", 512)
    assert abs(p.epochs - 1.25 * plan.MEMBER_EPOCHS) < 0.05 and t.max_steps is None
    assert m.dropout == plan.dropout_for("lstm", p.epochs)
    assert p.parameters == 2 * plan.parameters_of(ModelConfig(vocab_size=65, **LSTM))
    assert "x 2 members" in p.line() and "chars each" in p.line()
    cap = plan.LSTM_MAX_EPOCHS
    m, t, p = planned(4.5 * cap * one_epoch_min, speed=speed)  # four, each to the cap
    assert m.members == plan.FULL_MEMBERS and abs(p.epochs - cap) < 0.01 and t.max_steps
    m, t, p = planned(5.5 * cap * one_epoch_min, speed=speed)  # past that, one per cap
    assert m.members == plan.FULL_MEMBERS + 1 and abs(p.epochs - cap) < 0.01 and t.max_steps
    m, t, p = planned(1000 * one_epoch_min, speed=speed)
    assert m.members == plan.MAX_PLANNED_MEMBERS and abs(p.epochs - plan.LSTM_MAX_EPOCHS) < 0.01
    assert t.max_steps * t.batch_size * t.seq_len == p.planned_chars
    m, _, p = planned(1000 * one_epoch_min, speed=speed, members=1)  # the user's choice wins
    assert m.members == 1 and "--members" in p.user
    m, _, _ = planned(max_steps=100_000, speed=speed)  # steps, not minutes: no members
    assert m.members == 1
    m, _, _ = planned(10, train_chars=50_000_000, speed=speed)  # minGRU: none
    assert m.cell == "mingru" and m.members == 1


def test_a_small_corpus_and_a_short_budget_get_the_smallest_mingru():
    _, _, p = planned(0.5, train_chars=20_000_000, speed=flops_speed(1e10))
    assert p.model["cell"] == "mingru" and p.model["hidden_size"] == plan.LADDER[0][1]


def test_a_step_budget_needs_no_timing():
    def no_speed(m, t):
        raise AssertionError("a step budget must not time the candidates")

    m, _, p = planned(max_steps=1000, speed=no_speed)
    assert p.planned_chars == 1000 * 64 * 64 and p.chars_per_s == {} and p.calibration_s == 0
    assert m.cell == "lstm" and p.epochs > plan.LSTM_EPOCHS  # 4M chars of a 1M text


def test_the_users_flags_win_and_are_named():
    m, t, p = planned(10, hidden_size=200, learning_rate=1e-3)
    assert m.hidden_size == 200 and m.num_layers == 2 and t.learning_rate == 1e-3
    assert p.user == ("--hidden", "--lr")
    assert "yours: --hidden, --lr" in p.line()
    _, t, p = planned(10, train_chars=50_000_000, user={"optimizer"})
    assert t.optimizer == "adamw" and p.user == ("--optimizer",)
    m, _, p = planned(10, dropout=0.05, cell="lstm")
    assert (m.cell, m.hidden_size, m.dropout) == ("lstm", 512, 0.05)
    m, _, _ = planned(10, cell="mingru")
    assert (m.cell, m.hidden_size, m.dropout) == ("mingru", 384, 0.0)


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


def test_a_longer_budget_calibrates_longer_within_its_share(monkeypatch):
    """The calibration times steps for CALIBRATION_SHARE of a budget in minutes, from
    CALIBRATION_S to CALIBRATION_MAX_S, read on a clock that moves 0.05 s a read."""
    import torch

    clock = {"now": 0.0, "ticks": 0}

    def perf_counter() -> float:
        clock["ticks"] += 1
        clock["now"] += 0.05
        return clock["now"]

    monkeypatch.setattr(plan.time, "perf_counter", perf_counter)
    m = ModelConfig(vocab_size=20, hidden_size=16, num_layers=1, embedding_size=8)
    ticks = []
    for minutes in (None, 1.0, 20.0, 1000.0):
        clock["ticks"] = 0
        t = TrainConfig(batch_size=4, seq_len=8, autocast_dtype="float32", minutes=minutes)
        plan.measure_speed(m, t, torch.device("cpu"))
        ticks.append(clock["ticks"])
    seconds = [n * 0.05 for n in ticks]  # the clock's time the calibration ran
    assert abs(seconds[0] - plan.CALIBRATION_S) < 0.2  # steps alone: the floor
    assert abs(seconds[1] - plan.CALIBRATION_S) < 0.2  # 1 min x share is under it
    assert abs(seconds[2] - 20 * 60 * plan.CALIBRATION_SHARE) < 0.2
    assert abs(seconds[3] - plan.CALIBRATION_MAX_S) < 0.2  # the cap


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
    assert saved.model.dropout == plan.dropout_for("mingru", saved.plan["epochs"])
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
    assert line.startswith("plan: lstm 2x512") and "50 steps reads 0.2M chars" in line
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


def test_the_scan_cells_are_planned_with_a_token_shift_the_lstm_without():
    m, _, p = planned(2)  # a large minGRU's text: the ladder
    assert m.cell == "mingru" and m.token_shift and "token-shift" in p.line()
    m, _, p = planned(100)  # tiny Shakespeare for long: the LSTM, which has none
    assert m.cell == "lstm" and not m.token_shift and "token-shift" not in p.line()
    m, _, p = planned(10, cell="minlstm")  # the user's scan cell gets it too
    assert m.token_shift and p.user == ("--cell",)


def test_the_users_token_shift_wins_either_way():
    m, _, p = planned(2, token_shift=False)
    assert m.cell == "mingru" and not m.token_shift and "token-shift" not in p.line().split(";")[0]
    assert p.user == ("--no-token-shift",)
    m, _, p = planned(100, token_shift=True)  # asked for: a scan cell, not the LSTM
    assert m.cell == "mingru" and m.token_shift and p.user == ("--token-shift",)
    m, _, p = planned(100, token_shift=False)  # off: the LSTM as without the flag
    assert m.cell == "lstm" and not m.token_shift


def test_no_token_shift_is_a_flag(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_text(words_text(lines=30))
    main(["train", str(corpus), "--no-token-shift", "--max-steps", "5", "--plan-only"])
    line = capsys.readouterr().out
    assert "token-shift" not in line.split(";")[0] and line.rstrip().endswith("--no-token-shift")
