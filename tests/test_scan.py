"""minGRU / minLSTM (scan.py) against independent float64 oracles: a naive per-step loop written
here from Feng et al. 2024's equations, the log-space scan (Heinsen 2023), the O(1) sampling
step; chunked == whole; gradients; gradflow's exact product of forget coefficients; resume."""

import os
import signal

import numpy as np
import pytest
import safetensors.torch
import torch
from conftest import scan_oracle, words_text

from rnnlab import sampling, training
from rnnlab.cells import StepDecoder, reference_of
from rnnlab.config import ConfigError, CorpusConfig, ModelConfig, TrainConfig
from rnnlab.lab.gradflow import ProbeConfig, flow, probe, reference_step
from rnnlab.model import CharLM
from rnnlab.scan import MinRNNStack, linear_scan, log_space_scan
from rnnlab.viz.record import analyze
from rnnlab.vocab import Vocab

CELLS = ["mingru", "minlstm"]


def naive_scan(a, b, h0):
    h, out = h0, []
    for t in range(a.size(0)):
        h = a[t] * h + b[t]
        out.append(h)
    return torch.stack(out)


def test_both_scans_equal_the_loop_with_gradients():
    torch.manual_seed(0)
    T, B, H = 23, 3, 5
    a = torch.rand(T, B, H, dtype=torch.float64).requires_grad_()
    b = (torch.rand(T, B, H, dtype=torch.float64) + 0.1).requires_grad_()
    h0 = (torch.rand(B, H, dtype=torch.float64) + 0.1).requires_grad_()
    w = torch.randn(T, B, H, dtype=torch.float64)
    grads = []
    for scan in (naive_scan, linear_scan, lambda a, b, h: log_space_scan(a.log(), b.log(), h)):
        out = scan(a, b, h0)
        grads.append((out, *torch.autograd.grad((out * w).sum(), (a, b, h0))))
    for other in grads[1:]:
        for x, y in zip(grads[0], other, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(linear_scan, (a[:6], b[:6], h0))


@pytest.mark.parametrize("ff_mult", [0, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_parallel_sequential_step_and_oracle_agree(cell, ff_mult):
    torch.manual_seed(1)
    config = ModelConfig(
        cell=cell, vocab_size=7, hidden_size=6, num_layers=2, embedding_size=4, ff_mult=ff_mult
    )
    model = CharLM(config).double().eval()
    ids = torch.randint(0, 7, (3, 19))
    h0 = torch.rand(2, 3, 6, dtype=torch.float64)  # carried in: positive, as a real state is
    want_logits, want_h, _ = scan_oracle(model, ids, h0)
    logits, (h,) = model(ids, (h0,))
    torch.testing.assert_close(logits, want_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, want_h, rtol=1e-10, atol=1e-12)
    emb = model.embedding(ids)
    out_p, h_p, trace = model.rnn.run(emb, h0, record=True, parallel=True)  # log space
    torch.testing.assert_close(model.head(out_p), want_logits, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(h_p, want_h, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(trace["h"][:, :, -1], want_h)
    assert set(trace) == ({"z", "h"} if cell == "mingru" else {"f", "i", "h"})
    decoder = StepDecoder.from_model(model)  # the O(1) sampling step
    layers = [list(h0.unbind(0))]
    steps = torch.stack([decoder.advance(ids[:, t], layers) for t in range(19)], 1)
    torch.testing.assert_close(steps, want_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.stack(layers[0]), want_h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_of_both_scans_equal_the_oracles(cell):
    torch.manual_seed(2)
    config = ModelConfig(
        cell=cell, vocab_size=5, hidden_size=4, num_layers=2, embedding_size=3, dropout=0.0
    )
    model = CharLM(config).double()
    ids = torch.randint(0, 5, (2, 9))
    h0 = torch.rand(2, 2, 4, dtype=torch.float64)
    params = list(model.parameters())

    def grads(fn):
        logits, h = fn()
        return torch.autograd.grad(logits.square().sum() + h.sum(), params)

    def parallel():
        out, h, _ = model.rnn.run(model.embedding(ids), h0, parallel=True)
        return model.head(out), h

    want = grads(lambda: scan_oracle(model, ids, h0)[:2])
    for fn in (lambda: (lambda lg, s: (lg, s[0]))(*model(ids, (h0,))), parallel):
        for x, y in zip(want, grads(fn), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("ff_mult", [0, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_chunked_pass_equals_one_long_pass(cell, ff_mult):
    torch.manual_seed(3)
    config = ModelConfig(cell=cell, vocab_size=9, hidden_size=8, num_layers=3, ff_mult=ff_mult)
    model = CharLM(config).double()
    model.eval()
    ids = torch.randint(0, 9, (2, 40))
    whole, (h,) = model(ids)
    state, parts = None, []
    for a, b in ((0, 7), (7, 8), (8, 29), (29, 40)):
        logits, state = model(ids[:, a:b], state)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state[0], h, rtol=1e-12, atol=1e-13)


def test_stack_is_called_like_an_nn_rnn():
    stack = MinRNNStack("minlstm", 5, 7, 2)
    out, h = stack(torch.randn(3, 4, 5))
    assert out.shape == (3, 4, 7) and h.shape == (2, 3, 7)
    assert (h > 0).all()  # convex mixes of positive candidates from a zero state


def test_scan_cells_refuse_recurrent_init_presets():
    with pytest.raises(ConfigError, match="--init default"):
        ModelConfig(cell="mingru", init="orthogonal")


def test_each_family_gets_its_measured_block_unless_told_otherwise():
    """--cell mingru alone means the scan block the sweep chose (README), an LSTM keeps its own;
    a flag given wins; a run's config.json is concrete, and null there is refused."""
    from rnnlab.config import from_dict, to_dict

    for cell in CELLS:
        c = ModelConfig(cell=cell)
        assert (c.hidden_size, c.ff_mult, c.dropout) == (384, 4, 0.0)
    lstm = ModelConfig(cell="lstm")
    assert (lstm.hidden_size, lstm.ff_mult, lstm.dropout) == (512, 0, 0.2)
    c = ModelConfig(cell="mingru", hidden_size=64, ff_mult=0, dropout=0.1)
    assert (c.hidden_size, c.ff_mult, c.dropout) == (64, 0, 0.1)
    saved = to_dict(ModelConfig(cell="minlstm"))
    assert from_dict(ModelConfig, saved, strict=True) == ModelConfig(cell="minlstm")
    with pytest.raises(ConfigError, match="hidden_size must be a number"):
        from_dict(ModelConfig, saved | {"hidden_size": None}, strict=True)


def test_gradflow_is_the_product_of_the_forget_coefficients():
    # one minGRU layer: dh_T/dh_t = diag(a_{t+1} ... a_T), a = 1 - z from the inputs alone
    torch.manual_seed(4)
    B, T, H = 3, 12, 5
    stack = MinRNNStack("mingru", H, H, 1).double()
    step, S = reference_step(reference_of(stack))
    xs = torch.randn(B, T, H, dtype=torch.float64)
    u = torch.randn(H, dtype=torch.float64)
    result = flow([step] * T, torch.zeros(B, S).double(), xs, lambda s: s @ u)
    layer = stack.layers[0]
    with torch.no_grad():
        k = layer.gates(layer.norm(stack.project(xs)))  # (B, T, 2H)
        a = torch.sigmoid(-k[..., :H])  # 1 - z
    for lag in (0, 1, 5, T):
        prod = a[:, T - lag :].prod(1)  # (B, H)
        assert result.jacobian[lag] == pytest.approx(float(prod.max(1).values.mean()), 1e-10)
        want = (prod * u).norm(dim=1).mean()
        assert result.loss_grad[lag] == pytest.approx(float(want), rel=1e-10)
    rep = probe(ProbeConfig(cell="minlstm", length=20, hidden_size=8, batch_size=2))
    assert rep["pascanu"]["bound_rate"] is None and rep["w_hh"] == {}
    assert len(rep["loss_grad"]) == 21 and 0 < rep["rate"]["jacobian"] < 1


@pytest.mark.parametrize("cell", CELLS)
def test_viz_records_gates_and_h(cell):
    text = "def f(x):\n    return (x + 1) * 2\n" * 6
    vocab = Vocab.from_chars(text)
    ids = np.array(vocab.encode(text))
    torch.manual_seed(5)
    model = CharLM(ModelConfig(cell=cell, vocab_size=len(vocab), hidden_size=8, num_layers=2))
    model.eval()
    a = analyze(model, ids, list(text), show_chars=len(ids), chunk_len=29)
    with torch.no_grad():
        emb = model.embedding(torch.as_tensor(ids)[None])
        _, _, trace = model.rnn.run(emb, record=True)
    for name in a.quantities:
        np.testing.assert_allclose(a.values[:, a.quantities.index(name)], trace[name][:, 0], 1e-5)
    assert set(a.saturation.gates) == ({"z"} if cell == "mingru" else {"f", "i"})


FAST = dict(batch_size=4, seq_len=16, eval_every_s=1e-9, sample_chars=20, autocast_dtype="float32",
            device="cpu", warmup_steps=3)  # fmt: skip


@pytest.mark.parametrize("cell, token_shift", [("mingru", False), ("minlstm", False),
                                               ("mingru", True)])  # fmt: skip
def test_train_resume_equals_uninterrupted_and_samples(cell, token_shift, tmp_path):
    """With --token-shift the carried state is (h, prev): both go through the checkpoint."""
    (tmp_path / "c.txt").write_text(words_text())
    model = ModelConfig(cell=cell, hidden_size=16, num_layers=2, embedding_size=8, dropout=0.1,
                        token_shift=token_shift)  # fmt: skip

    def train(out, resume=False, on_eval=None):
        return training.train(
            CorpusConfig(source=str(tmp_path / "c.txt")), model,
            TrainConfig(**FAST, max_steps=12), tmp_path / out, resume=resume, progress=False,
            on_eval=on_eval,
        )  # fmt: skip

    def ctrl_c_at_5(event):
        if event.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    train("straight")
    assert train("cut", on_eval=ctrl_c_at_5).step == 5
    assert train("cut", resume=True).step == 12
    a = safetensors.torch.load_file(tmp_path / "straight/last.safetensors")
    b = safetensors.torch.load_file(tmp_path / "cut/last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from rnnlab.checkpoint import load_model

    lm, vocab, _ = load_model(tmp_path / "straight")
    texts = [sampling.generate(lm, vocab, "the ", length=30, seed=3)[0] for _ in range(2)]
    assert texts[0] == texts[1] and len(texts[0]) == 30
