import pytest
import torch

from rnnlab.cells import StepDecoder
from rnnlab.config import ConfigError, ModelConfig
from rnnlab.model import CharLM, flops_per_char

CELLS = ["lstm", "gru", "rnn", "rnn-relu"]


def tiny(cell: str, layers: int = 2, **kw) -> CharLM:
    torch.manual_seed(0)
    cfg = ModelConfig(
        cell=cell, num_layers=layers, hidden_size=16, embedding_size=8, vocab_size=11, **kw
    )
    return CharLM(cfg).double()


@pytest.mark.parametrize("cell", CELLS)
def test_chunked_forward_equals_full_forward(cell):
    m = tiny(cell).eval()
    ids = torch.randint(0, 11, (3, 40))
    full, full_state = m(ids)
    a, s = m(ids[:, :17])
    b, s = m(ids[:, 17:], s)
    assert full.shape == (3, 40, 11)
    torch.testing.assert_close(torch.cat([a, b], 1), full)
    for x, y in zip(s, full_state, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_decoder_step_equals_fused_forward(cell, layers, batch):
    """The hand-written sampling step is the fused module's math, float64 exact."""
    m = tiny(cell, layers).eval()
    ids = torch.randint(0, 11, (batch, 12))
    full, _ = m(ids)
    dec = StepDecoder.from_model(m)
    state = m.init_state(batch)
    for t in range(12):
        logits, state = dec.step(ids[:, t], state)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-10, atol=1e-10)


def test_lstm_forget_bias_is_one_by_default():
    m = tiny("lstm")
    H = 16
    total = m.rnn.bias_ih_l0[H : 2 * H] + m.rnn.bias_hh_l0[H : 2 * H]
    assert torch.all(total == 1.0)


@pytest.mark.parametrize(
    "init, check",
    [
        ("uniform", lambda w: w.abs().max() <= 0.08),
        (
            "orthogonal",
            lambda w: torch.allclose(w[:16] @ w[:16].T, torch.eye(16, dtype=w.dtype), atol=1e-6),
        ),
    ],
)
def test_init_presets(init, check):
    m = tiny("lstm", init=init)
    assert check(m.rnn.weight_hh_l0.detach())


def test_identity_init_is_irnn():
    m = tiny("rnn-relu", init="identity")
    assert torch.equal(m.rnn.weight_hh_l0.detach(), torch.eye(16, dtype=torch.float64))
    assert torch.all(m.rnn.bias_hh_l0 == 0)


def test_chrono_init_sets_forget_bias_in_range():
    m = tiny("lstm", init="chrono")
    H = 16
    f = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0)[H : 2 * H]
    i = (m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0)[:H]
    assert torch.all(f >= 0) and torch.all(f <= torch.log(torch.tensor(127.0)))
    torch.testing.assert_close(i, -f)


def test_flops_count_for_the_reference_shape():
    cfg = ModelConfig(cell="lstm", hidden_size=512, num_layers=2, embedding_size=512, vocab_size=65)
    # the peers' anchor file counts 25.37 MFLOP/char for this 2x512 LSTM
    assert abs(flops_per_char(cfg) / 1e6 - 25.37) < 0.01


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 2e-2), (torch.int8, 2e-2)])
def test_low_precision_decoder_stays_close(dtype, tol):
    torch.manual_seed(0)
    m = CharLM(ModelConfig(cell="lstm", hidden_size=64, num_layers=2, vocab_size=11)).eval()
    ids = torch.randint(0, 11, (1, 50))
    full, _ = m(ids)
    dec = StepDecoder.from_model(m, dtype)
    state = m.init_state(1)
    for t in range(50):
        logits, state = dec.step(ids[:, t], state)
        torch.testing.assert_close(logits, full[:, t], rtol=0, atol=tol)


@pytest.mark.parametrize("batch", [1, 2, 8, 9, 64])
@pytest.mark.parametrize("bf16", [True, False])
def test_auto_weights_dtype_is_int8_up_to_8_samples_then_bf16(monkeypatch, batch, bf16):
    """--weights-dtype auto: int8 for a few samples (reading the weights is the cost), bf16
    above 8 where the CPU has it (int8 is the slowest choice at batch 64), float32 elsewhere."""
    from rnnlab import model as model_module

    monkeypatch.setattr(model_module, "cpu_has_bf16", lambda: bf16)
    cpu = torch.device("cpu")
    got = model_module.resolve_sample_dtype("auto", cpu, batch)
    if batch <= 8:
        assert got == torch.int8
    else:
        assert got == (torch.bfloat16 if bf16 else None)
    assert model_module.resolve_sample_dtype("auto", torch.device("cuda"), batch) is None
    assert model_module.resolve_sample_dtype("float32", cpu, batch) is None
    assert model_module.resolve_sample_dtype("int8", cpu, batch) == torch.int8


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_parameter_bound_counts_exactly(cell, monkeypatch):
    """config.MAX_PARAMETERS is checked against the exact count, before anything is built."""
    from rnnlab import config

    c = ModelConfig(cell=cell, num_layers=3, hidden_size=12, embedding_size=5, vocab_size=30)
    exact = sum(p.numel() for p in CharLM(c).parameters())
    monkeypatch.setattr(config, "MAX_PARAMETERS", exact)
    ModelConfig(cell=cell, num_layers=3, hidden_size=12, embedding_size=5, vocab_size=30)
    monkeypatch.setattr(config, "MAX_PARAMETERS", exact - 1)
    with pytest.raises(config.ConfigError, match="parameters"):
        ModelConfig(cell=cell, num_layers=3, hidden_size=12, embedding_size=5, vocab_size=30)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_masks_the_recurrent_matrices_only_while_training(cell):
    """AWD-LSTM's DropConnect: in training, whole entries of weight_hh are zero for the step
    (no gradient reaches them) and the rest are scaled by 1/(1-p); in eval the model is the
    plain fused module with its own weights."""
    m = tiny(cell, weight_drop=0.5)
    ids = torch.randint(0, 11, (3, 20))
    m.eval()
    plain = CharLM(m.config).double()
    plain.load_state_dict(m.state_dict())
    torch.testing.assert_close(m(ids)[0], plain.eval()(ids)[0])
    m.train()
    torch.manual_seed(1)
    a, _ = m(ids)
    torch.manual_seed(2)
    b, _ = m(ids)
    assert not torch.allclose(a, b)  # a fresh mask each step
    m.zero_grad()
    a.sum().backward()
    dropped = m.rnn.weight_hh_l0.grad == 0
    assert 0.3 < dropped.float().mean() < 0.7  # about p of the entries got no gradient
    assert (m.rnn.weight_ih_l0.grad != 0).float().mean() > 0.9  # the input matrices are whole


def test_weight_drop_is_refused_for_the_scan_cells():
    with pytest.raises(
        ConfigError, match="--weight-drop is for lstm, gru and rnn, not mingru: add --cell lstm"
    ):
        ModelConfig(cell="mingru", weight_drop=0.2)
    with pytest.raises(ConfigError, match=r"--weight-drop must be in \[0, 1\)"):
        ModelConfig(cell="lstm", weight_drop=1.0)


def test_embedding_dropout_acts_only_while_training():
    m = tiny("lstm", embedding_dropout=0.5)
    ids = torch.randint(0, 11, (2, 9))
    m.eval()
    torch.testing.assert_close(m(ids)[0], m(ids)[0])
    plain = tiny("lstm").eval()  # same seed, same weights, no embedding dropout
    torch.testing.assert_close(m(ids)[0], plain(ids)[0])
    m.train()
    assert not torch.allclose(m(ids)[0], plain(ids)[0])
    with pytest.raises(ConfigError, match=r"--embedding-dropout must be in \[0, 1\)"):
        ModelConfig(embedding_dropout=1.0)
