"""Gradient-flow probes against oracles: a linear RNN (exact powers), the fused modules' own
backprop (float64), and the Pascanu et al. 2013 bound."""

import math

import pytest
import torch
import torch.nn as nn

from rnnlab import checkpoint
from rnnlab.cells import ReferenceRNN
from rnnlab.config import CorpusConfig, ModelConfig, TrainConfig
from rnnlab.lab.gradflow import (
    ProbeConfig,
    configurations,
    fit_rate,
    flow,
    probe,
    probe_run,
    reference_step,
    weight_spectrum,
)
from rnnlab.model import CharLM
from rnnlab.vocab import Vocab


def test_linear_rnn_with_scaled_identity_gives_exact_powers():
    # h_t = a h_{t-1} + W x_t: dh_T/dh_t = a^(T-t) I, so dL/dh_t = a^(T-t) u exactly
    a, T, B, S = 0.9, 40, 3, 5
    W = torch.randn(S, S, dtype=torch.float64)
    u = torch.randn(S, dtype=torch.float64)
    xs = torch.randn(B, T, S, dtype=torch.float64)
    result = flow(
        [lambda s, x: a * s + x @ W.T] * T, torch.zeros(B, S).double(), xs, lambda s: s @ u
    )
    for k in range(T + 1):
        assert result.loss_grad[k] == pytest.approx(a**k * float(u.norm()), rel=1e-12)
        assert result.jacobian[k] == pytest.approx(a**k, rel=1e-12)
    assert fit_rate(result.loss_grad) == pytest.approx(a, rel=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "lstm", "gru"])
def test_loss_gradient_equals_the_fused_modules_backprop(cell):
    # the gradient at lag T is the gradient with respect to the initial state: compare it with
    # autograd through torch.nn.LSTM/GRU/RNN itself
    torch.manual_seed(0)
    B, T, H = 3, 7, 6
    kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(cell, nn.RNN)
    extra = {"nonlinearity": "relu" if cell == "rnn-relu" else "tanh"} if kind is nn.RNN else {}
    fused = kind(H, H, batch_first=True, **extra).double()
    step, S = reference_step(ReferenceRNN.from_module(fused))
    xs = torch.randn(B, T, H, dtype=torch.float64)
    s0 = torch.randn(B, S, dtype=torch.float64) * 0.5
    u = torch.randn(H, dtype=torch.float64)
    result = flow([step] * T, s0, xs, lambda s: s[:, :H] @ u)

    init = s0.view(B, -1, 1, H).permute(1, 2, 0, 3).clone().requires_grad_(True)  # (n, 1, B, H)
    out, _ = fused(xs, (init[0], init[1]) if cell == "lstm" else init[0])
    (out[:, -1] @ u).sum().backward()
    expected = init.grad.permute(2, 0, 1, 3).reshape(B, -1).norm(dim=1).mean()
    assert result.loss_grad[T] == pytest.approx(float(expected), rel=1e-10)
    assert result.loss_grad[0] == pytest.approx(float(u.norm()), rel=1e-12)


def test_tanh_with_small_weights_stays_under_the_pascanu_bound():
    r = probe(ProbeConfig("rnn", "orthogonal", gain=0.5, length=30, hidden_size=16, batch_size=4))
    bound = r["pascanu"]["bound_rate"]
    assert bound == pytest.approx(0.5, rel=1e-5)  # orthogonal W_hh * 0.5: every singular value
    assert r["pascanu"]["vanishing_certain"]
    assert r["rate"]["jacobian"] < bound
    for k, norm in enumerate(r["jacobian"]):  # ||dh_T/dh_t|| <= (gamma sigma_max)^(T-t)
        assert norm <= bound**k * (1 + 1e-9)


def test_weight_spectrum_of_scaled_orthogonal_matrix():
    rnn = nn.RNN(4, 8, batch_first=True)
    nn.init.orthogonal_(rnn.weight_hh_l0)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(1.7)
    spectrum = weight_spectrum(rnn)
    assert spectrum["weight_hh_l0.sigma_max"] == pytest.approx(1.7, rel=1e-5)
    assert spectrum["weight_hh_l0.spectral_radius"] == pytest.approx(1.7, rel=1e-5)
    gated = weight_spectrum(nn.LSTM(4, 8, batch_first=True))
    assert len(gated) == 8  # i, f, g, o blocks, two numbers each


def test_gain_decides_between_vanishing_and_exploding():
    small, big = (
        probe(ProbeConfig("rnn", "orthogonal", gain=g, length=60, hidden_size=16, batch_size=4))
        for g in (0.5, 3.0)
    )
    assert small["rate"]["loss_grad"] < 0.6 and small["loss_grad"][60] < 1e-15
    assert big["rate"]["loss_grad"] > 1.05 and big["loss_grad"][60] > 1e2


def test_lstm_keeps_gradient_orders_of_magnitude_larger_than_tanh():
    common = dict(length=100, hidden_size=16, batch_size=4)
    tanh, lstm = (probe(ProbeConfig(cell, **common)) for cell in ("rnn", "lstm"))
    assert tanh["loss_grad"][100] < 1e-20  # exponential decay at default init
    assert lstm["loss_grad"][100] > 1e6 * tanh["loss_grad"][100]
    assert tanh["pascanu"]["bound_rate"] is not None and lstm["pascanu"]["bound_rate"] is None


def test_mlp_has_untied_layers_and_a_few_layers_barely_decay():
    common = dict(cell="rnn", length=20, hidden_size=16, batch_size=4)
    rnn, mlp = probe(ProbeConfig(**common)), probe(ProbeConfig(net="mlp", **common))
    assert rnn["loss_grad"] != mlp["loss_grad"]  # different (untied) weights per layer
    assert mlp["rate"]["loss_grad"] < 1  # same exponential decay with depth
    assert mlp["loss_grad"][3] > 1e4 * mlp["loss_grad"][20]
    assert not math.isnan(mlp["rate"]["jacobian"])


def test_probe_of_a_saved_run(tmp_path):
    vocab = Vocab.from_chars("abcdefgh")
    config = ModelConfig(cell="gru", num_layers=2, hidden_size=8, vocab_size=len(vocab))
    checkpoint.save_config(tmp_path, checkpoint.RunConfig(config, TrainConfig(), CorpusConfig()))
    checkpoint.save_vocab(tmp_path, vocab)
    checkpoint.save_weights(tmp_path / checkpoint.BEST, CharLM(config), step=0)
    r = probe_run(tmp_path, length=12, batch_size=3)
    assert len(r["loss_grad"]) == 13 and all(0 < n < math.inf for n in r["loss_grad"])
    assert r["jacobian"][0] == 1.0 and len(r["w_hh"]) == 12  # 2 layers x 3 gates x 2
    assert r["pascanu"]["bound_rate"] is None  # no such bound for a gated cell


def test_configurations_skip_what_the_presets_reject():
    configs = configurations(
        ["rnn", "lstm"], ["identity", "chrono"], [1.0], ["rnn", "mlp"], [0.0, 1.0], 50, 5
    )
    labels = [(c.net, c.cell, c.init, c.forget_bias, c.length) for c in configs]
    assert labels == [
        ("rnn", "rnn", "identity", 0.0, 50),
        ("rnn", "rnn", "chrono", 1.0, 50),
        ("rnn", "lstm", "chrono", 1.0, 50),
        ("mlp", "rnn", "identity", 0.0, 5),
        ("mlp", "rnn", "chrono", 1.0, 5),
        ("mlp", "lstm", "chrono", 1.0, 5),
    ]
