"""Training throughput: characters per second of the real training loop (rnnlab.train on a
synthetic corpus) for several cells and sizes, fp32 and bf16, and the fraction of this
machine's matmul peak, measured in the same run.

    python benchmarks/throughput.py [--steps 30] [--quick] [--json out.json]
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


def matmul_peak(dtype: torch.dtype, n: int, seconds: float = 2.0) -> float:
    """Best GFLOP/s of torch.mm on n x n matrices."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c = torch.empty(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=c)
    best = 0.0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(a, b, out=c)
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def train_chars_per_s(corpus: Path, steps: int, dtype: str, **model) -> float:
    """Median chars/s over the 10-step windows of a real run, the first window excluded."""
    with tempfile.TemporaryDirectory() as d:
        rnnlab.train(
            corpus,
            out=Path(d) / "run",
            max_steps=steps,
            autocast_dtype=dtype,
            device="cpu",
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
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="training steps per configuration")
    p.add_argument("--quick", action="store_true", help="only the default 2x512 LSTM")
    p.add_argument("--batch-size", type=int, default=TrainConfig().batch_size)
    p.add_argument("--seq-len", type=int, default=TrainConfig().seq_len)
    p.add_argument("--json", default="benchmarks/results/throughput.json")
    a = p.parse_args()
    peaks = {
        "float32": max(matmul_peak(torch.float32, 512), matmul_peak(torch.float32, 2048)),
        "bfloat16": max(matmul_peak(torch.bfloat16, 512), matmul_peak(torch.bfloat16, 2048)),
    }
    rows = []
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d) / "random.txt"
        rng = np.random.default_rng(0)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?'\n-"))
        corpus.write_text("".join(rng.choice(letters, 2_000_000)))
        for cfg in CONFIGS[:1] if a.quick else CONFIGS:
            for dtype in ("float32", "bfloat16"):
                cps = train_chars_per_s(
                    corpus,
                    a.steps,
                    dtype,
                    num_layers=2,
                    batch_size=a.batch_size,
                    seq_len=a.seq_len,
                    **cfg,
                )
                flops = flops_per_char(ModelConfig(num_layers=2, vocab_size=64, **cfg))
                gflops = cps * flops / 1e9
                rows.append(
                    {
                        **cfg,
                        "dtype": dtype,
                        "chars_per_s": cps,
                        "mflop_per_char": flops / 1e6,
                        "gflop_per_s": gflops,
                        "fraction_of_fp32_peak": gflops / peaks["float32"],
                        "fraction_of_dtype_peak": gflops / peaks[dtype],
                    }
                )
    result = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_gflop_per_s": peaks,
        "batch_size": a.batch_size,
        "seq_len": a.seq_len,
        "rows": rows,
    }
    print(
        f"matmul peak ({torch.get_num_threads()} threads): fp32 {peaks['float32']:.0f}, "
        f"bf16 {peaks['bfloat16']:.0f} GFLOP/s"
    )
    print(
        f"{'cell':5} {'H':>5} {'E':>4} {'dtype':9} {'chars/s':>9} {'MFLOP/ch':>9} "
        f"{'GFLOP/s':>8} {'of fp32 peak':>12} {'of own peak':>11}"
    )
    for r in rows:
        print(
            f"{r['cell']:5} {r['hidden_size']:5d} {r['embedding_size']:4d} {r['dtype']:9} "
            f"{r['chars_per_s']:9,.0f} {r['mflop_per_char']:9.2f} {r['gflop_per_s']:8.1f} "
            f"{r['fraction_of_fp32_peak']:12.0%} {r['fraction_of_dtype_peak']:11.0%}"
        )
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
