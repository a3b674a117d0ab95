"""Paper presets (`rnnlab longrange --paper NAME --quick`): each quick form runs in seconds and
shows the paper's qualitative result; the published numbers carry their source."""

import json
import math

import pytest
import torch

from rnnlab import cli
from rnnlab.config import LongRangeConfig
from rnnlab.lab.longrange import LongRangeNet, model_config, stretch_chrono
from rnnlab.lab.papers import PAPERS, run_paper
from rnnlab.lab.tasks import TASKS


def rows_by_label(result):
    return {(r["task"], r["label"]): r for r in result["rows"]}


def test_every_published_number_has_a_source_and_a_measured_row():
    for paper in PAPERS.values():
        arms = {(ex.task, a.label) for ex in paper.experiments for a in ex.arms}
        for pub in paper.published:
            assert pub.source and pub.confidence in ("read", "recalled")
            assert (pub.task, pub.label) in arms, (paper.name, pub)
            assert any(pub.length in ex.lengths for ex in paper.experiments if ex.task == pub.task)
        assert paper.scaled, f"{paper.name} must say what it scales down"


def test_stretch_chrono_spreads_gate_biases_to_the_new_horizon():
    config = LongRangeConfig(hidden_size=64, init="chrono")
    torch.manual_seed(0)
    net = LongRangeNet(TASKS["adding"], model_config("lstm", config))
    H = 64
    before = (net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0)[H : 2 * H].clone()  # forget gate
    stretch_chrono(net.rnn, 1000)
    after = (net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0)[H : 2 * H]
    assert before.max() <= math.log(127) + 1e-5 < after.max() <= math.log(999) + 1e-5
    assert after.min() >= 0 and (after > before).all()
    inputs = (net.rnn.bias_ih_l0 + net.rnn.bias_hh_l0)[:H]
    assert (inputs <= 0).all()  # the input gate stays closed as chrono set it
    assert (net.rnn.bias_hh_l0[2 * H :] == 0).all()  # cell and output biases untouched


def test_hochreiter1997_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "h97"
    code = cli.main(["longrange", "--paper", "hochreiter1997", "--quick", "--out", str(out)])
    assert code == 0
    assert "paper vs measured" in capsys.readouterr().out
    result = json.loads((out / "paper.json").read_text())
    assert (out / "paper.md").read_text().startswith("# hochreiter1997 (quick)")
    assert (out / "paper.png").stat().st_size > 10_000
    rows = rows_by_label(result)
    # temporal order 6a at T = 30: the 1997-like LSTM solves it, PyTorch's init and tanh do not
    assert rows[("temporal-order", "LSTM (chrono)")]["success_rate"] == 1.0
    assert rows[("temporal-order", "LSTM (forget bias 0)")]["success_rate"] == 0.0
    assert rows[("temporal-order", "tanh RNN (orthogonal)")]["success_rate"] == 0.0
    sequences = rows[("temporal-order", "LSTM (chrono)")]["sequences_to_solve"]
    assert sequences and sequences[0] % 64 == 0  # counted as steps x batch
    assert rows[("temporal-order", "tanh RNN (orthogonal)")]["budget_sequences"] == 200 * 64
    assert all(r["device"] == "cpu" and r["budget_steps"] == 200 for r in result["runs"])


@pytest.mark.parametrize("name", ["le2015", "arjovsky2016"])
def test_quick_forms_show_the_papers_qualitative_result(name):
    result = run_paper(name, quick=True)
    by_label = {r["label"]: r for r in result["rows"]}
    for label, solved in PAPERS[name].quick_expect.items():
        assert (by_label[label]["success_rate"] == 1.0) is solved, (label, by_label[label])
    if name == "arjovsky2016":  # nothing beats the memoryless baseline by much at T = 50
        for r in result["rows"]:
            assert r["final_loss_mean"] > 0.9 * r["baseline"]


def test_tallec2018_quick_chrono_learns_faster_than_forget_bias_1():
    rows = {r["label"]: r for r in run_paper("tallec2018", quick=True)["rows"]}
    chrono, standard = rows["LSTM (chrono)"], rows["LSTM (forget bias 1)"]
    assert chrono["final_loss_mean"] < 0.5 * standard["final_loss_mean"]
    assert standard["final_loss_mean"] > 0.8 * standard["baseline"]  # still on the plateau


def test_pascanu2013_quick_clipping_prevents_divergence():
    rows = {r["label"]: r for r in run_paper("pascanu2013", quick=True)["rows"]}
    assert rows["IRNN, SGD, no clipping"]["diverged_rate"] == 1.0
    assert rows["IRNN, SGD, norm clipping 1"]["diverged_rate"] == 0.0


def test_point4_quick_writes_success_against_length(tmp_path):
    code = cli.main(
        ["longrange", "--paper", "point4", "--quick", "--quiet", "--json", "--out", str(tmp_path)]
    )
    assert code == 0
    result = json.loads((tmp_path / "paper.json").read_text())
    assert {r["task"] for r in result["rows"]} == {"adding", "temporal-order"}
    assert len(result["rows"]) == 2 * 5 and result["pairs"] == []


def test_paper_flag_errors(capsys):
    assert cli.main(["longrange", "adding", "--paper", "le2015"]) == 2
    assert "drop the task name" in capsys.readouterr().err
    assert cli.main(["longrange"]) == 2
    assert "--paper" in capsys.readouterr().err
