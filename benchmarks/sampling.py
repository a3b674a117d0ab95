"""Sampling speed: characters per second at batch 1 and 64 for a 2x512 LSTM (random weights:
speed does not depend on them). rnnlab's generate() with float32, bfloat16 and int8
weight-only weights (`rnnlab sample` picks int8 up to 8 samples, bf16 beyond, on a CPU),
against the straightforward loop that calls torch's nn.LSTM one step at a time, measured in
the same run.

    python benchmarks/sampling.py [--length 2000] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnlab.config import ModelConfig
from rnnlab.model import CharLM
from rnnlab.sampling import generate
from rnnlab.vocab import Vocab


@torch.no_grad()
def naive_loop(model: CharLM, batch: int, length: int) -> None:
    """Embedding -> nn.LSTM on one step -> Linear -> softmax -> multinomial, state carried."""
    token = torch.zeros(batch, 1, dtype=torch.long)
    state = model.init_state(batch)
    for _ in range(length):
        logits, state = model(token, state)
        probs = torch.softmax(logits[:, -1] / 0.8, -1)
        token = torch.multinomial(probs, 1)


def chars_per_s(fn, batch: int, length: int, repeats: int) -> float:
    fn(batch, 50)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(batch, length)
        best = max(best, batch * length / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--json", default="benchmarks/results/sampling.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    vocab = Vocab.from_chars("".join(chr(32 + i) for i in range(65)))
    torch.manual_seed(0)
    model = CharLM(ModelConfig(hidden_size=a.hidden, num_layers=2, vocab_size=len(vocab))).eval()

    def ours(batch, length, dtype=None):
        generate(
            model,
            vocab,
            "",
            length=length,
            temperature=0.8,
            seed=0,
            num_samples=batch,
            weights_dtype=dtype,
        )

    def ours_bf16(batch, length):
        ours(batch, length, torch.bfloat16)

    def ours_int8(batch, length):
        ours(batch, length, torch.int8)

    def naive(batch, length):
        naive_loop(model, batch, length)

    rows = []
    for batch in (1, 64):
        baseline = chars_per_s(naive, batch, a.length, a.repeats)
        rnnlab = chars_per_s(ours, batch, a.length, a.repeats)
        bf16 = chars_per_s(ours_bf16, batch, a.length, a.repeats)
        int8 = chars_per_s(ours_int8, batch, a.length, a.repeats)
        rows.append(
            {
                "batch": batch,
                "nn_lstm_step_chars_per_s": baseline,
                "rnnlab_fp32_chars_per_s": rnnlab,
                "rnnlab_bf16_chars_per_s": bf16,
                "rnnlab_int8_chars_per_s": int8,
                "fp32_ratio": rnnlab / baseline,
                "bf16_ratio": bf16 / baseline,
                "int8_ratio": int8 / baseline,
            }
        )
    result = {
        "model": f"lstm 2x{a.hidden}",
        "threads": a.threads,
        "length": a.length,
        "torch": torch.__version__,
        "rows": rows,
    }
    print(f"sampling, LSTM 2x{a.hidden}, {a.threads} threads, {a.length} chars per sample")
    print(
        f"{'batch':>5} {'nn.LSTM step':>13} {'rnnlab fp32':>12} {'ratio':>6} "
        f"{'rnnlab bf16':>12} {'ratio':>6} {'rnnlab int8':>12} {'ratio':>6}   (chars/s)"
    )
    for r in rows:
        print(
            f"{r['batch']:5d} {r['nn_lstm_step_chars_per_s']:13,.0f} "
            f"{r['rnnlab_fp32_chars_per_s']:12,.0f} {r['fp32_ratio']:6.2f} "
            f"{r['rnnlab_bf16_chars_per_s']:12,.0f} {r['bf16_ratio']:6.2f} "
            f"{r['rnnlab_int8_chars_per_s']:12,.0f} {r['int8_ratio']:6.2f}"
        )
    if a.json:
        from pathlib import Path

        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
