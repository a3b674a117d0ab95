"""Token shift in the minGRU / minLSTM block (scan.py; RWKV's time-mix, Peng et al. 2023, eq. 11)
against the independent float64 oracle (conftest.scan_oracle): the gates read
n_t + mu (n_{t-1} - n_t), n_{t-1} carried across chunks. Parallel == sequential == the O(1)
steps; chunked == one pass; the ONNX graph carries the extra state; an LSTM refuses the flag."""

import json

import numpy as np
import pytest
import torch
from conftest import scan_oracle

from rnnlab.cells import StepDecoder, reference_of
from rnnlab.cli import main
from rnnlab.config import ConfigError, ModelConfig, from_dict, to_dict
from rnnlab.model import CharLM, Ensemble

CELLS = ["mingru", "minlstm"]


def shifted_model(cell, seed, **kw):
    """A float64 CharLM with token shift, its mix moved off the init (any value must work)."""
    torch.manual_seed(seed)
    config = ModelConfig(cell=cell, token_shift=True, **({"vocab_size": 7} | kw))
    model = CharLM(config).double().eval()
    with torch.no_grad():
        for layer in model.rnn.layers:
            layer.mix.copy_(torch.rand_like(layer.mix) * 1.4 - 0.2)  # some outside [0, 1]
    return model


@pytest.mark.parametrize("ff_mult", [0, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_parallel_sequential_and_both_steps_equal_the_oracle(cell, ff_mult):
    model = shifted_model(cell, 1, hidden_size=6, num_layers=2, embedding_size=4, ff_mult=ff_mult)
    ids = torch.randint(0, 7, (3, 19))
    h0 = torch.rand(2, 3, 6, dtype=torch.float64)  # carried in: positive, as a real state is
    p0 = torch.randn(2, 3, 6, dtype=torch.float64)  # the previous chunk's last normed inputs
    want_logits, want_h, want_p = scan_oracle(model, ids, h0, p0)
    assert model.num_states == 2
    logits, (h, p) = model(ids, (h0, p0))  # the sequential scan (CPU)
    for got, want in ((logits, want_logits), (h, want_h), (p, want_p)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    out, (h, p), trace = model.rnn.run(model.embedding(ids), (h0, p0), record=True, parallel=True)
    torch.testing.assert_close(model.head(out), want_logits, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(h, want_h, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(p, want_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(trace["h"][:, :, -1], want_h)
    # the sampling decoder and MinRNNStack.step, one character at a time, state [hs, prevs]
    decoder = StepDecoder.from_model(model)
    layers = [list(h0.unbind(0)), list(p0.unbind(0))]
    steps = torch.stack([decoder.advance(ids[:, t], layers) for t in range(19)], 1)
    torch.testing.assert_close(steps, want_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.stack(layers[1]), want_p, rtol=1e-12, atol=1e-12)
    layers = [list(h0.unbind(0)), list(p0.unbind(0))]
    emb = model.embedding(ids)
    outs = torch.stack([model.rnn.step(emb[:, t], layers) for t in range(19)], 1)
    torch.testing.assert_close(model.head(outs), want_logits, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.stack(layers[0]), want_h, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_of_both_scans_equal_the_oracle(cell):
    model = shifted_model(cell, 2, hidden_size=4, num_layers=2, embedding_size=3, vocab_size=5)
    ids = torch.randint(0, 5, (2, 9))
    h0 = torch.rand(2, 2, 4, dtype=torch.float64)
    p0 = torch.randn(2, 2, 4, dtype=torch.float64)
    names, params = zip(*model.named_parameters(), strict=True)

    def grads(logits, h, p):
        return torch.autograd.grad(logits.square().sum() + h.sum() + p.sum(), params)

    want = grads(*scan_oracle(model, ids, h0, p0))
    logits, (h, p) = model(ids, (h0, p0))
    out, (hp, pp), _ = model.rnn.run(model.embedding(ids), (h0, p0), parallel=True)
    for got in (grads(logits, h, p), grads(model.head(out), hp, pp)):
        for x, y in zip(want, got, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11)
    mixes = [g for n, g in zip(names, want, strict=True) if n.endswith(".mix")]
    assert len(mixes) == 2 and all(g.abs().sum() > 0 for g in mixes)  # the mix learns


@pytest.mark.parametrize("cell", CELLS)
def test_chunked_pass_equals_one_long_pass_and_zeros_mean_start(cell):
    model = shifted_model(cell, 3, vocab_size=9, hidden_size=8, num_layers=3, ff_mult=2)
    ids = torch.randint(0, 9, (2, 40))
    whole, (h, p) = model(ids)
    state, parts = None, []
    for a, b in ((0, 7), (7, 8), (8, 29), (29, 40)):  # a chunk of one character too
        logits, state = model(ids[:, a:b], state)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state[0], h, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(state[1], p, rtol=1e-12, atol=1e-13)
    # no state is the zero state (the start of a text, or a reset in training)
    zero = scan_oracle(model, ids, *model.init_state(2))[0]
    torch.testing.assert_close(whole, zero, rtol=1e-10, atol=1e-12)
    # the previous character matters: the same chunk after another prefix reads differently
    after = model(ids[:, 8:29], model(ids[:, 1:8])[1])[0]
    assert not torch.allclose(after[:, 0], parts[2][:, 0])


def test_ensemble_and_reference_carry_the_pair():
    torch.manual_seed(4)
    config = ModelConfig(cell="minlstm", token_shift=True, vocab_size=6, hidden_size=8,
                         num_layers=2, members=2)  # fmt: skip
    ens = Ensemble(config).double().eval()
    ids = torch.randint(0, 6, (2, 20))
    whole, state = ens(ids)
    assert ens.num_states == 4 and len(state) == 4
    first, mid = ens(ids[:, :11])
    torch.testing.assert_close(torch.cat([first, ens(ids[:, 11:], mid)[0]], 1), whole)
    decoder = StepDecoder.from_model(ens)
    layers = [list(s.unbind(0)) for s in ens.init_state(2)]
    steps = torch.stack([decoder.advance(ids[:, t], layers) for t in range(20)], 1)
    torch.testing.assert_close(steps, whole, rtol=1e-10, atol=1e-12)
    # the viz / lab reference: (h, prev) in, (h, prev) out, as CharLM.features
    member = ens.members[0]
    ref = reference_of(member.rnn)
    emb = member.embedding(ids)
    out, new, trace = ref(emb[:, 11:], member(ids[:, :11])[1], record=True)
    want_out, want_state = member.features(ids[:, 11:], member(ids[:, :11])[1])
    torch.testing.assert_close(out, want_out)
    assert len(new) == 2 and all(torch.equal(a, b) for a, b in zip(new, want_state, strict=True))
    assert set(trace) == {"f", "i", "h"}


def test_flag_is_for_scan_cells_only_and_old_configs_load(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--token-shift is for --cell mingru or minlstm"):
        ModelConfig(cell="lstm", token_shift=True)
    (tmp_path / "t.txt").write_text("abc " * 200)
    argv = ["train", str(tmp_path / "t.txt"), "--cell", "lstm", "--token-shift"]
    assert main([*argv, "--max-steps", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--token-shift" in err, err
    assert not (tmp_path / "r").exists()
    # a config.json written before the field existed reads as token shift off
    saved = to_dict(ModelConfig(cell="mingru"))
    del saved["token_shift"]
    assert from_dict(ModelConfig, saved, strict=True).token_shift is False
    on = to_dict(ModelConfig(cell="minlstm", token_shift=True))
    assert json.loads(json.dumps(on))["token_shift"] is True
    assert from_dict(ModelConfig, on, strict=True) == ModelConfig(cell="minlstm", token_shift=True)


def test_onnx_export_carries_prev(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from rnnlab import checkpoint
    from rnnlab.config import CorpusConfig, TrainConfig
    from rnnlab.vocab import Vocab

    text = "the cat sat on the mat; the dog sat on the log.\n" * 8
    vocab = Vocab.from_chars(text)
    model = shifted_model("mingru", 5, vocab_size=len(vocab), hidden_size=16, num_layers=2,
                          embedding_size=8).float()  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    corpus = CorpusConfig(source=str(run / "text.txt"))
    checkpoint.save_config(run, checkpoint.RunConfig(model.config, TrainConfig(), corpus))
    checkpoint.save_vocab(run, vocab)
    checkpoint.save_weights(run / checkpoint.BEST, model, step=0)
    checkpoint.append_metrics(run, {"step": 10, "split": "val", "bpc": 4.25})
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out), "--json"]) == 0
    ids = vocab.encode(text)[:120]
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0][0].numpy()  # (N, V) one pass
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = session.get_modelmeta().custom_metadata_map["rnnlab.state"].split(",")
    assert names == ["h", "prev"]
    state = {n: np.zeros((2, 1, 16), np.float32) for n in names}
    logits, *new = session.run(None, {"ids": np.array([ids[:50]]), **state})  # prompt pass
    worst = float(np.abs(logits[0] - expected[:50]).max())
    state = dict(zip(names, new, strict=True))
    for t in range(50, 120):  # then single steps, state carried
        logits, *new = session.run(None, {"ids": np.array([[ids[t]]]), **state})
        state = dict(zip(names, new, strict=True))
        worst = max(worst, float(np.abs(logits[0, 0] - expected[t]).max()))
    assert worst < 1e-4, worst


def test_viz_and_gradflow_probes_read_the_shifted_block():
    from rnnlab.lab.gradflow import reference_step
    from rnnlab.viz.record import analyze
    from rnnlab.vocab import Vocab

    text = "def f(x):\n    return (x + 1) * 2\n" * 6
    vocab = Vocab.from_chars(text)
    ids = np.array(vocab.encode(text))
    model = shifted_model("mingru", 6, vocab_size=len(vocab), hidden_size=8, num_layers=2).float()
    a = analyze(model, ids, list(text), show_chars=len(ids), chunk_len=29)  # chunks carry prev
    with torch.no_grad():
        _, _, trace = model.rnn.run(model.embedding(torch.as_tensor(ids)[None]), record=True)
    for name in a.quantities:
        np.testing.assert_allclose(a.values[:, a.quantities.index(name)], trace[name][:, 0], 1e-5)
    # gradflow's flat state holds h then prev: one step of it is one character of the model
    step, S = reference_step(reference_of(model.rnn))
    assert S == 2 * 2 * 8
    x = model.embedding(torch.as_tensor(ids[:2]))[None]  # (1, 2, E)
    s = step(step(torch.zeros(1, S), x[:, 0]), x[:, 1])
    h, prev = model.rnn(x)[1]
    torch.testing.assert_close(s, torch.cat([h.permute(1, 0, 2), prev.permute(1, 0, 2)], 1)
                               .reshape(1, S))  # fmt: skip
