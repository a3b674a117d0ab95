"""One process against several on this machine: training chars/s of `rnnlab train` alone and
under `torchrun --nproc_per_node N` (DistributedDataParallel, gloo on CPUs), the same flags
and the same global batch, measured in the same run.

On a CPU the processes share the machine's cores: one process with T threads against N
processes with T/N threads each shows what DDP costs or gains here, not a speedup from more
hardware. On GPUs each process gets its own device.

    python benchmarks/distributed.py [CORPUS] [--nproc 2] [--steps 60] [rnnlab train flags]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def run(corpus: str, nproc: int, threads: int, steps: int, out: Path, extra: list[str]) -> dict:
    args = [corpus, "--max-steps", str(steps), "--quiet", "--final-sample", "0", "--out", str(out)]
    args += ["--sample-chars", "0", "--eval-chars", "20000", *extra]
    if nproc == 1:
        cmd = [sys.executable, "-m", "rnnlab", "train", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd += [f"--nproc_per_node={nproc}", "-m", "rnnlab", "train", *args]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    wall = time.perf_counter() - t0
    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [e["chars_per_s"] for e in events if e["split"] == "train"][1:]  # skip warm-up
    return {
        "processes": nproc,
        "threads_each": threads,
        "chars_per_s": sum(rates) / len(rates),
        "wall_s": wall,
        "val_bpc": [e["bpc"] for e in events if e["split"] == "val"][-1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="in all")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--json", default="benchmarks/results/distributed.json")
    a, extra = p.parse_known_args()  # other flags go to `rnnlab train`
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, a.nproc):
            out = Path(tmp) / f"p{n}"
            rows.append(run(a.corpus, n, max(1, a.threads // n), a.steps, out, extra))
            r = rows[-1]
            print(
                f"{r['processes']} process(es) x {r['threads_each']} thread(s): "
                f"{r['chars_per_s']:9,.0f} chars/s  wall {r['wall_s']:6.1f} s  "
                f"val {r['val_bpc']:.4f} bpc",
                flush=True,
            )
    ratio = rows[1]["chars_per_s"] / rows[0]["chars_per_s"]
    print(f"\n{a.nproc} processes / 1 process: {ratio:.2f}x the training throughput")
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps({"corpus": a.corpus, "rows": rows, "ratio": ratio}))


if __name__ == "__main__":
    main()
