"""Training throughput: characters per second of the real training loop (rnnlab.train on a
synthetic corpus) for several cells and sizes, fp32 and bf16, and the fraction of this
machine's matmul peak, measured in the same run; beside it, the matmul rate at each model's own
shapes (the per-step recurrent product of a fused LSTM/GRU/RNN, the (B*T)-row products of
minGRU/minLSTM) and, for the scan cells, the time of the element-wise scan itself, so every
fraction is honest.

    python benchmarks/throughput.py [--steps 30] [--quick] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import rnnlab
from rnnlab import checkpoint
from rnnlab.config import ModelConfig, TrainConfig
from rnnlab.model import flops_per_char
from rnnlab.scan import SCAN_CELLS, linear_scan, log_space_scan


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_rate(
    dtype: torch.dtype, m: int, k: int, n: int, device: str = "cpu", seconds: float = 1.0
) -> float:
    """Best GFLOP/s of torch.mm of (m, k) by (k, n)."""
    a = torch.randn(m, k, dtype=dtype, device=device)
    b = torch.randn(k, n, dtype=dtype, device=device)
    c = torch.empty(m, n, dtype=dtype, device=device)
    for _ in range(3):
        torch.mm(a, b, out=c)
    best = 0.0
    reps = 5 if device == "cpu" else 50
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        sync(device)
        best = max(best, reps * 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def matmul_peak(dtype: torch.dtype, n: int, device: str = "cpu", seconds: float = 2.0) -> float:
    """Best GFLOP/s of torch.mm on n x n matrices."""
    return matmul_rate(dtype, n, n, n, device, seconds)


def own_shape_rate(cfg: dict, dtype: torch.dtype, B: int, T: int, device: str) -> dict:
    """GFLOP/s of the products a model is made of, at its own shapes: for a fused cell the
    per-step recurrent product (B, H) x (H, G*H), which must wait for the previous step; for a
    scan cell the (B*T, H) x (H, G*H) gate product of a whole chunk."""
    H = cfg["hidden_size"]
    if cfg["cell"] in SCAN_CELLS:
        G = 2 if cfg["cell"] == "mingru" else 3
        return {
            "shape": f"{B * T}x{H}x{G * H}",
            "gflop_per_s": matmul_rate(dtype, B * T, H, G * H, device),
        }
    G = {"lstm": 4, "gru": 3}.get(cfg["cell"], 1)
    return {"shape": f"{B}x{H}x{G * H}", "gflop_per_s": matmul_rate(dtype, B, H, G * H, device)}


def scan_ms(cell: str, B: int, T: int, H: int, device: str, reps: int = 5) -> float:
    """Forward + backward of one layer's element-wise scan (float32), in ms: the hand-written
    sequential scan on a CPU, the log-space (Heinsen) scan on CUDA, as the model runs them."""
    a = torch.rand(T, B, H, device=device).mul_(0.5).add_(0.5).requires_grad_()
    b = torch.rand(T, B, H, device=device).add_(0.1).requires_grad_()
    h0 = torch.rand(B, H, device=device)

    def once() -> None:
        cuda = device == "cuda"
        out = log_space_scan(a.log(), b.log(), h0) if cuda else linear_scan(a, b, h0)
        out.sum().backward()

    once()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    sync(device)
    return (time.perf_counter() - t0) / reps * 1e3


def train_chars_per_s(corpus: Path, steps: int, dtype: str, device: str = "cpu", **model) -> float:
    """Median chars/s over the 10-step windows of a real run, the first window excluded."""
    with tempfile.TemporaryDirectory() as d:
        rnnlab.train(
            corpus,
            out=Path(d) / "run",
            max_steps=steps,
            autocast_dtype=dtype,
            device=device,
            eval_every_s=1e9,
            eval_chars=1000,
            sample_chars=0,
            **model,
        )
        windows = [
            e["chars_per_s"]
            for e in checkpoint.read_metrics(Path(d) / "run")
            if e["split"] == "train"
        ]
    return statistics.median(windows[1:] or windows)


CONFIGS = [
    dict(cell="lstm", hidden_size=512, embedding_size=64),  # rnnlab's default
    dict(cell="lstm", hidden_size=512, embedding_size=512),  # the peers' reference shape
    dict(cell="gru", hidden_size=512, embedding_size=64),
    dict(cell="rnn", hidden_size=512, embedding_size=64),
    dict(cell="lstm", hidden_size=256, embedding_size=64),
    dict(cell="lstm", hidden_size=1024, embedding_size=64),
    dict(cell="mingru", hidden_size=512, embedding_size=64),
    dict(cell="minlstm", hidden_size=512, embedding_size=64),
    dict(cell="mingru", hidden_size=512, embedding_size=64, num_layers=4),
    dict(cell="minlstm", hidden_size=512, embedding_size=64, num_layers=3),
]
SHORT = [0, 6, 7, 8, 9]  # --quick: the default LSTM and the scan cells


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps per configuration")
    p.add_argument("--quick", action="store_true", help="the default LSTM and the scan cells")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--seq-len", type=int, default=TrainConfig().seq_len)
    p.add_argument("--json", default="benchmarks/results/throughput.json")
    a = p.parse_args()
    dev = a.device
    n_peak = (512, 2048) if dev == "cpu" else (4096, 8192)
    dtypes = a.dtypes.split(",")
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    peaks = {d: max(matmul_peak(torch_dtype[d], n, dev) for n in n_peak) for d in dtypes}
    B, T = a.batch_size, a.seq_len
    rows = []
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "random.txt"
        rng = np.random.default_rng(0)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n-"))
        corpus.write_text("".join(rng.choice(letters, 2_000_000)))
        for cfg in [CONFIGS[i] for i in SHORT] if a.quick else CONFIGS:
            cfg = {"num_layers": 2} | cfg
            for dtype in dtypes:
                cps = train_chars_per_s(corpus, a.steps, dtype, dev, batch_size=B, seq_len=T, **cfg)
                flops = flops_per_char(ModelConfig(vocab_size=64, **cfg))
                gflops = cps * flops / 1e9
                own = own_shape_rate(cfg, torch_dtype[dtype], B, T, dev)
                row = {
                    **cfg,
                    "dtype": dtype,
                    "chars_per_s": cps,
                    "mflop_per_char": flops / 1e6,
                    "gflop_per_s": gflops,
                    "fraction_of_dtype_peak": gflops / peaks[dtype],
                    "own_shape": own["shape"],
                    "own_shape_gflop_per_s": own["gflop_per_s"],
                    "own_shape_fraction_of_peak": own["gflop_per_s"] / peaks[dtype],
                }
                if cfg["cell"] in SCAN_CELLS:
                    step_ms = B * T / cps * 1e3
                    scan = cfg["num_layers"] * scan_ms(cfg["cell"], B, T, cfg["hidden_size"], dev)
                    row |= {"step_ms": step_ms, "scan_ms": scan, "scan_fraction": scan / step_ms}
                rows.append(row)
                print(row, flush=True)
    result = {
        "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflop_per_s": peaks,
        "batch_size": B,
        "seq_len": T,
        "rows": rows,
    }
    print(
        f"matmul peak on {result['device']}: "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
        + " GFLOP/s"
    )
    print(
        f"{'cell':8} {'LxH':>7} {'dtype':9} {'chars/s':>9} {'GFLOP/s':>8} {'of peak':>8} "
        f"{'own shape':>15} {'its GFLOP/s':>11} {'of peak':>8} {'scan/step':>9}"
    )
    for r in rows:
        frac = f"{r['scan_fraction']:9.0%}" if "scan_fraction" in r else f"{'-':>9}"
        print(
            f"{r['cell']:8} {r['num_layers']}x{r['hidden_size']:<5d} {r['dtype']:9} "
            f"{r['chars_per_s']:9,.0f} {r['gflop_per_s']:8.1f} {r['fraction_of_dtype_peak']:8.0%} "
            f"{r['own_shape']:>15} {r['own_shape_gflop_per_s']:11.0f} "
            f"{r['own_shape_fraction_of_peak']:8.0%} {frac}"
        )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
