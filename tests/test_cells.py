"""The step-by-step cells against the fused torch modules, float64: outputs, states, gradients."""

import pytest
import torch
import torch.nn as nn

from rnnlab.cells import ReferenceRNN

FUSED = {
    "lstm": lambda L: nn.LSTM(5, 7, L, batch_first=True),
    "gru": lambda L: nn.GRU(5, 7, L, batch_first=True),
    "rnn": lambda L: nn.RNN(5, 7, L, batch_first=True),
    "rnn-relu": lambda L: nn.RNN(5, 7, L, nonlinearity="relu", batch_first=True),
}


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", list(FUSED))
def test_reference_equals_fused_in_float64(cell, layers):
    torch.manual_seed(0)
    fused = FUSED[cell](layers).double()
    ref = ReferenceRNN.from_module(fused)
    x = torch.randn(3, 6, 5, dtype=torch.float64)
    shape = (layers, 3, 7)
    state = tuple(
        torch.randn(shape, dtype=torch.float64) for _ in range(2 if cell == "lstm" else 1)
    )
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()

    out_f, st_f = fused(x1, state if cell == "lstm" else state[0])
    st_f = st_f if isinstance(st_f, tuple) else (st_f,)
    out_r, st_r, trace = ref(x2, state, record=True)
    torch.testing.assert_close(out_r, out_f, rtol=1e-12, atol=1e-12)
    for a, b in zip(st_r, st_f, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    # gradients of the same scalar through both, w.r.t. inputs and every weight
    w = torch.randn_like(out_f)
    ((out_f * w).sum() + sum(s.sum() for s in st_f)).backward()
    ((out_r * w).sum() + sum(s.sum() for s in st_r)).backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-10, atol=1e-12)
    for name, p in fused.named_parameters():
        torch.testing.assert_close(getattr(ref, name).grad, p.grad, rtol=1e-10, atol=1e-12)

    # the recorded trace is the state sequence, layer by layer
    assert trace["h"].shape == (layers, 3, 6, 7)
    torch.testing.assert_close(trace["h"][-1], out_f.detach())
    if cell == "lstm":
        assert set(trace) == {"i", "f", "g", "o", "h", "c"}
        assert torch.all((trace["f"] > 0) & (trace["f"] < 1))


def test_weights_load_back_into_the_fused_module():
    ref = ReferenceRNN("gru", 4, 6, 2)
    fused = nn.GRU(4, 6, 2, batch_first=True)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(fused(x)[0], ref(x)[0])
