"""Long-range training: clipping modes, a run that solves a short task, reproducibility, and
the rnnlab gradflow / longrange commands end to end."""

import json

import pytest
import torch

from rnnlab import cli
from rnnlab.config import ConfigError, LongRangeConfig
from rnnlab.lab.longrange import sweep, train_run
from rnnlab.lab.tasks import TASKS
from rnnlab.model import clip_gradients


def params_with_grads(values):
    ps = [torch.nn.Parameter(torch.zeros(len(v))) for v in values]
    for p, v in zip(ps, values, strict=True):
        p.grad = torch.tensor(v)
    return ps


def test_clip_modes():
    ps = params_with_grads([[3.0, 0.0], [0.0, 4.0]])  # global norm 5
    assert clip_gradients(ps, "norm", 1.0) == pytest.approx(5.0)
    assert torch.allclose(torch.cat([p.grad for p in ps]), torch.tensor([0.6, 0, 0, 0.8]))
    ps = params_with_grads([[3.0, -0.5], [0.0, -4.0]])
    clip_gradients(ps, "element", 1.0)
    assert torch.equal(torch.cat([p.grad for p in ps]), torch.tensor([1.0, -0.5, 0, -1.0]))
    ps = params_with_grads([[3.0, 0.0], [0.0, 4.0]])
    clip_gradients(ps, "none", 1.0)
    assert torch.equal(torch.cat([p.grad for p in ps]), torch.tensor([3.0, 0, 0, 4.0]))


def test_lstm_solves_short_adding_and_stops_when_solved():
    config = LongRangeConfig(hidden_size=16, steps=600, eval_every_steps=50, test_size=256)
    run = train_run(TASKS["adding"], "lstm", 10, config, seed=0, until_solved=True)
    assert run.solved and run.final["loss"] < 0.01 < run.curve[0]["loss"]
    assert run.steps == run.steps_to_solve < 600  # stopped at the first solved evaluation
    again = train_run(TASKS["adding"], "lstm", 10, config, seed=0, until_solved=True)
    assert [(p["step"], p["loss"]) for p in again.curve] == [
        (p["step"], p["loss"]) for p in run.curve
    ]  # same seed, same run


def test_sweep_table_and_bad_cell_init_pair():
    config = LongRangeConfig(hidden_size=8, steps=20, eval_every_steps=10, test_size=32)
    result = sweep("temporal-order", ["rnn", "gru"], [10, 12], config, first_seed=3)
    assert [(r["cell"], r["length"]) for r in result["table"]] == [
        ("rnn", 10),
        ("rnn", 12),
        ("gru", 10),
        ("gru", 12),
    ]
    for row in result["table"]:  # the fraction of that (cell, length)'s runs that solved it
        runs = [
            r for r in result["runs"] if (r["cell"], r["length"]) == (row["cell"], row["length"])
        ]
        assert runs and row["success_rate"] == sum(r["solved"] for r in runs) / len(runs)
    assert len(result["runs"]) == 4 and result["runs"][0]["curve"][-1]["step"] == 20
    assert [r["seed"] for r in result["runs"]] == [3, 3, 3, 3]
    with pytest.raises(ConfigError, match="--init identity"):
        sweep("adding", ["lstm"], [10], LongRangeConfig(init="identity"))


@pytest.mark.parametrize(
    "argv",
    [
        ["longrange", "adding", "--cells", "rnn,transformer"],
        ["longrange", "adding", "--lengths", "0"],
        ["longrange", "copy", "--clip-mode", "sometimes"],
        ["longrange", "adding", "--steps", "0"],
        ["gradflow", "--cell", "lstm", "--init", "identity"],
        ["gradflow", "--gain", "-1"],
        ["gradflow", "--net", "cnn"],
    ],
)
def test_user_errors_are_one_line_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnlab: error:") and err.count("\n") == 1


def test_gradflow_command_writes_plot_and_json(tmp_path, capsys):
    png = tmp_path / "g.png"
    argv = ["gradflow", "--cell", "rnn,lstm", "--gain", "0.5", "--gain", "1", "--net", "rnn,mlp"]
    argv += ["--length", "12", "--depth", "4", "--hidden", "8", "--batch-size", "2"]
    assert cli.main(argv + ["-o", str(png), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [p["label"] for p in out["probes"]]
    assert len(labels) == 8 and sum("MLP" in x for x in labels) == 4
    assert all(len(p["loss_grad"]) == (5 if p["net"] == "mlp" else 13) for p in out["probes"])


@pytest.mark.slow
def test_longrange_command_end_to_end(tmp_path, capsys):
    # reduced size of the result: LSTM solves adding where the tanh RNN stays at the
    # baseline, within the same budget
    argv = ["longrange", "adding", "--cells", "rnn,lstm", "--lengths", "30", "--steps", "400"]
    argv += [
        "--hidden",
        "32",
        "--eval-every-steps",
        "50",
        "--test-size",
        "128",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv + ["--until-solved", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "fraction solved" in printed
    result = json.loads((tmp_path / "longrange.json").read_text())
    rnn, lstm = ({r["cell"]: r for r in result["runs"]}[c] for c in ("rnn", "lstm"))
    assert lstm["solved"] and lstm["final"]["loss"] < 0.01
    assert not rnn["solved"] and rnn["final"]["loss"] > 0.5 * rnn["baseline"]
    assert (tmp_path / "longrange.png").read_bytes()[:4] == b"\x89PNG"
    rates = {row["cell"]: row["success_rate"] for row in result["table"]}
    assert rates == {"rnn": 0.0, "lstm": 1.0}
