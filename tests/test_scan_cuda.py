"""minGRU / minLSTM on CUDA (run by benchmarks/gpu_check.sh on a GPU machine; skipped without
one): the log-space scan (the CUDA default) equals the sequential scan on the GPU and the CPU's
float64 result, outputs, carried state and gradients; the O(1) step agrees; bf16 autocast runs."""

import pytest
import torch

from rnnlab.cells import StepDecoder
from rnnlab.config import ModelConfig
from rnnlab.model import CharLM

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def run(model, ids, h0, parallel):
    out, h, _ = model.rnn.run(model.embedding(ids), h0, parallel=parallel)
    logits = model.head(out)
    params = list(model.parameters())
    grads = torch.autograd.grad(logits.square().mean() + h.mean(), params)
    return [logits, h, *grads]


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_cuda_parallel_equals_sequential_and_cpu(cell):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, vocab_size=13, hidden_size=32, num_layers=3, dropout=0.0)
    cpu = CharLM(config).double()
    gpu = CharLM(config).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    ids = torch.randint(0, 13, (4, 300))
    h0 = torch.rand(3, 4, 32, dtype=torch.float64)
    want = run(cpu, ids, h0, parallel=False)
    for parallel in (True, False, None):
        got = run(gpu, ids.cuda(), h0.cuda(), parallel)
        for x, y in zip(want, got, strict=True):
            torch.testing.assert_close(y.cpu(), x, rtol=1e-8, atol=1e-10)
    gpu.eval()
    decoder = StepDecoder.from_model(gpu)
    layers = [list(h0.cuda().unbind(0))]
    steps = torch.stack([decoder.advance(ids[:, t].cuda(), layers) for t in range(300)], 1)
    torch.testing.assert_close(steps.cpu(), want[0], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cell", ["mingru", "minlstm"])
def test_cuda_bf16_autocast_is_close_to_float32(cell):
    torch.manual_seed(1)
    config = ModelConfig(cell=cell, vocab_size=13, hidden_size=64, num_layers=2, dropout=0.0)
    model = CharLM(config).cuda()
    ids = torch.randint(0, 13, (8, 512), device="cuda")
    ref, (h_ref,) = model(ids)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, (h,) = model(ids)
    assert h.dtype == torch.float32 and torch.isfinite(logits).all()
    assert (logits.float() - ref).abs().max() < 0.1
    logits.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
