"""Paper presets for `rnnlab longrange --paper NAME`: each reruns one paper's long-range
experiment, scaled where a 2-core CPU forces it (each preset says how), and writes a "paper vs
measured" table (markdown and JSON) and the learning curves (PNG); `point4` is the lab's own
success-against-length sweep. `--quick` forms run in seconds, in the test suite. Imports config,
files and lab.longrange / lab.plots.

The published numbers live in PAPERS, one entry per paper, each with the section, table or
figure it comes from and how sure we are of it: "read" (checked against the paper's text here)
or "recalled" (from memory of the paper or from the issue that asked for the preset; re-read the
paper before quoting it). Sources:
- Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.4 (experiment 4, adding;
  table 7) and section 5.6 (experiments 6a and 6b, temporal order; table 10).
- Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of Rectified Linear
  Units", section 4.1 (adding at T = 150, 200, 300, 400; figure 2).
- Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", section 4.1
  (copying memory, T = 100, 200, 300, 500; figure 1).
- Tallec & Ollivier 2018, "Can Recurrent Neural Networks Warp Time?", section 4 (copy T = 500,
  adding T = 750; figures 3 and 4).
- Pascanu, Mikolov & Bengio 2013, "On the difficulty of training recurrent neural networks",
  section 3.2 (algorithm 1, norm clipping) and section 4.
Section, table and figure numbers are from memory unless the entry says "read".
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import LongRangeConfig
from ..files import write_json, write_text
from .longrange import Recipe, RunResult, train_run
from .plots import plot_paper, plot_success
from .tasks import TASKS


@dataclass(frozen=True)
class Arm:
    """One network a preset trains: a cell, its init, and what the paper set differently."""

    label: str  # its name in the tables, e.g. "LSTM (chrono)"
    cell: str
    init: str = "default"
    forget_bias: float = 0.0
    recipe: Recipe = Recipe()
    lr: float | None = None  # overrides the experiment's learning rate
    clip: str | None = None  # overrides the experiment's clipping


@dataclass(frozen=True)
class Experiment:
    """One task at several lengths for several arms, with the budget of the full and the quick
    form (the quick one runs in the test suite, in seconds)."""

    task: str
    lengths: tuple[int, ...]
    arms: tuple[Arm, ...]
    config: LongRangeConfig
    quick_lengths: tuple[int, ...]
    quick_config: LongRangeConfig
    chrono_per_length: bool = False  # chrono T_max = 1.1 T (the longest sequence of the task)


@dataclass(frozen=True)
class Published:
    """A number from the paper, and the measured row (task, arm label, length) it faces."""

    task: str
    label: str
    length: int
    quantity: str  # "sequences to solve", "final test MSE", ... what the value is
    value: str  # as the paper gives it
    source: str  # section / table / figure
    confidence: str  # "read" or "recalled"


@dataclass(frozen=True)
class Paper:
    """One paper's preset: what it claims, the experiments that rerun it, its published numbers,
    what we changed, and what its quick form must show."""

    name: str
    citation: str
    claim: str  # what the paper shows, in one sentence
    experiments: tuple[Experiment, ...]
    published: tuple[Published, ...]
    scaled: tuple[str, ...]  # what differs from the paper, and why
    seeds: int = 5
    quick_seeds: int = 1
    quick_expect: dict[str, bool] = field(default_factory=dict)  # arm label -> solved (quick)


def _cfg(**kw: Any) -> LongRangeConfig:
    return LongRangeConfig(**kw)


LSTM_CHRONO = Arm("LSTM (chrono)", "lstm", "chrono")
LSTM_DEFAULT = Arm("LSTM (forget bias 0)", "lstm")
LSTM_FB1 = Arm("LSTM (forget bias 1)", "lstm", forget_bias=1.0)
GRU = Arm("GRU", "gru")
TANH = Arm("tanh RNN (orthogonal)", "rnn", "orthogonal")
IRNN = Arm("IRNN", "rnn-relu", "identity", lr=3e-3)

PAPERS: dict[str, Paper] = {
    p.name: p
    for p in (
        Paper(
            name="hochreiter1997",
            citation="Hochreiter & Schmidhuber 1997, Long Short-Term Memory, "
            "Neural Computation 9(8)",
            claim="LSTM bridges lags of 100-1000 steps on the adding and temporal-order tasks",
            experiments=(
                Experiment(
                    "adding-1997",
                    (100, 500, 1000),
                    (LSTM_CHRONO,),
                    _cfg(hidden_size=16, steps=14000, eval_every_steps=50, test_size=512),
                    (),
                    _cfg(hidden_size=16, steps=300, eval_every_steps=25, test_size=256),
                    chrono_per_length=True,
                ),
                Experiment(
                    "temporal-order",
                    (100,),
                    (LSTM_CHRONO, LSTM_DEFAULT, TANH),
                    _cfg(hidden_size=16, steps=3000, eval_every_steps=50, test_size=512),
                    (30,),
                    _cfg(hidden_size=16, steps=200, eval_every_steps=25, test_size=256),
                    chrono_per_length=True,
                ),
                Experiment(
                    "temporal-order-3",
                    (100,),
                    (LSTM_CHRONO,),
                    _cfg(hidden_size=16, steps=10000, eval_every_steps=50, test_size=512),
                    (),
                    _cfg(hidden_size=16, steps=100, eval_every_steps=50, test_size=128),
                    chrono_per_length=True,
                ),
            ),
            published=(
                Published(
                    "adding-1997",
                    "LSTM (chrono)",
                    100,
                    "sequences to solve",
                    "74,000",
                    "section 5.4, table 7",
                    "recalled",
                ),
                Published(
                    "adding-1997",
                    "LSTM (chrono)",
                    500,
                    "sequences to solve",
                    "209,000",
                    "section 5.4, table 7",
                    "recalled",
                ),
                Published(
                    "adding-1997",
                    "LSTM (chrono)",
                    1000,
                    "sequences to solve",
                    "853,000",
                    "section 5.4, table 7",
                    "recalled",
                ),
                Published(
                    "temporal-order",
                    "LSTM (chrono)",
                    100,
                    "sequences to solve",
                    "31,390",
                    "section 5.6, table 10 (6a)",
                    "recalled",
                ),
                Published(
                    "temporal-order-3",
                    "LSTM (chrono)",
                    100,
                    "sequences to solve",
                    "571,100",
                    "section 5.6, table 10 (6b)",
                    "recalled",
                ),
            ),
            scaled=(
                "the 1997 LSTM has no forget gate and negative input-gate biases; a modern LSTM "
                "gets closest with chrono init (forget gate open, input gate closed, Tallec & "
                "Ollivier 2018 eq. 17) with T_max = 1.1 T; the same LSTM with PyTorch's init "
                "(forget bias 0) is the second temporal-order arm",
                "hidden 16 (the paper: 2-3 memory blocks of 2 cells), Adam lr 1e-2 on batches "
                "of 64 fresh sequences, norm clipping 1 (the paper: online SGD, lr 0.5 / 0.1); "
                "sequences counted = steps x 64",
                "solved = 99% of 512 test sequences right (the paper: mean training error "
                "below 0.01 and the last 2000 training sequences right); evaluated every 50 "
                "steps, so sequences to solve are rounded up to 3,200",
                "budgets: 14,000 steps (896,000 sequences) for adding, 3,000 (192,000) for 6a, "
                "10,000 (640,000) for 6b: each at least the paper's count to solution",
            ),
            quick_expect={"LSTM (chrono)": True, "tanh RNN (orthogonal)": False},
        ),
        Paper(
            name="le2015",
            citation="Le, Jaitly & Hinton 2015, A Simple Way to Initialize Recurrent Networks of "
            "Rectified Linear Units, arXiv:1504.00941",
            claim="a ReLU RNN with identity recurrent weights (IRNN) solves the adding problem "
            "at T = 150-400, where the tanh RNN stays at the baseline",
            experiments=(
                Experiment(
                    "adding",
                    (150, 200, 300, 400),
                    (TANH, IRNN, LSTM_FB1),
                    _cfg(hidden_size=64, steps=3000, eval_every_steps=100, test_size=512),
                    (20,),
                    _cfg(hidden_size=16, steps=600, eval_every_steps=25, test_size=256),
                ),
            ),
            published=tuple(
                Published(
                    "adding",
                    label,
                    T,
                    "outcome (figure 2)",
                    text,
                    "section 4.1, fig. 2",
                    "recalled",
                )
                for T in (150, 200, 300, 400)
                for label, text in (
                    ("IRNN", "near-zero test MSE"),
                    (
                        "LSTM (forget bias 1)",
                        {200: "converges", 300: "converges, slower", 400: "struggles"}.get(
                            T, "converges"
                        ),
                    ),
                    ("tanh RNN (orthogonal)", "stays at the 0.167 baseline"),
                )
            ),
            scaled=(
                "hidden 64 (the paper: 100), Adam on batches of 64 (the paper: SGD, batch 16, "
                "their lr and clipping per model from a grid); IRNN at lr 3e-3, others 1e-2; "
                "norm clipping 1 for all",
                "fresh sequences every step (the paper: a fixed 100,000 training set), a test "
                "set of 512 (theirs 10,000)",
                "3,000 steps (192,000 sequences), far fewer than the paper's: their curves are "
                "compared in kind, not in step count",
            ),
            seeds=1,
            quick_expect={"LSTM (forget bias 1)": True, "tanh RNN (orthogonal)": False},
        ),
        Paper(
            name="arjovsky2016",
            citation="Arjovsky, Shah & Bengio 2016, Unitary Evolution Recurrent Neural Networks, "
            "ICML",
            claim="on the copying task LSTM and tanh RNN do not beat the memoryless baseline "
            "10 ln 8 / (T + 20) within their budget",
            experiments=(
                Experiment(
                    "copy",
                    (100, 200, 500),
                    (TANH, LSTM_DEFAULT, GRU),
                    _cfg(hidden_size=40, steps=2000, eval_every_steps=100, test_size=256),
                    (50,),
                    _cfg(hidden_size=16, steps=100, eval_every_steps=50, test_size=128),
                ),
            ),
            published=tuple(
                Published(
                    "copy",
                    label,
                    T,
                    "cross-entropy vs baseline (figure 1)",
                    text,
                    "section 4.1, fig. 1",
                    "recalled",
                )
                for T in (100, 200, 500)
                for label, text in (
                    ("LSTM (forget bias 0)", "stays at the baseline"),
                    ("tanh RNN (orthogonal)", "stays at the baseline"),
                )
            ),
            scaled=(
                "hidden 40 for every cell (the paper sized each model to ~equal parameters: "
                "LSTM 40), Adam lr 1e-2, batch 64 (the paper: RMSProp lr 1e-3, batch 20)",
                "2,000 steps (128,000 sequences); the paper ran several thousand iterations",
                "no uRNN: rnnlab has no unitary cell, so the paper's positive result is not rerun",
            ),
            seeds=1,
            quick_expect={"LSTM (forget bias 0)": False, "tanh RNN (orthogonal)": False},
        ),
        Paper(
            name="tallec2018",
            citation="Tallec & Ollivier 2018, Can Recurrent Neural Networks Warp Time?, ICLR",
            claim="chrono initialization lets an LSTM learn long dependencies where the "
            "standard init plateaus or learns far slower",
            experiments=(
                Experiment(
                    "copy",
                    (500,),
                    (LSTM_CHRONO, LSTM_FB1),
                    _cfg(hidden_size=64, steps=2000, eval_every_steps=100, test_size=256),
                    (),
                    _cfg(hidden_size=16, steps=100, eval_every_steps=50, test_size=64),
                    chrono_per_length=True,
                ),
                Experiment(
                    "adding",
                    (750,),
                    (LSTM_CHRONO, LSTM_FB1),
                    _cfg(hidden_size=64, steps=2000, eval_every_steps=100, test_size=256),
                    (100,),
                    _cfg(hidden_size=16, steps=400, eval_every_steps=25, test_size=256),
                    chrono_per_length=True,
                ),
            ),
            published=(
                Published(
                    "adding",
                    "LSTM (chrono)",
                    750,
                    "convergence vs standard init",
                    "about 7x faster",
                    "section 4, figure 4",
                    "recalled",
                ),
                Published(
                    "copy",
                    "LSTM (chrono)",
                    500,
                    "outcome",
                    "solves it; standard init plateaus at the baseline",
                    "section 4, figure 3",
                    "recalled",
                ),
            ),
            scaled=(
                "hidden 64 (the paper: 128), Adam lr 1e-2, batch 64; 2,000 steps each, far "
                "below the paper's budget; chrono T_max = 1.1 T",
                "the standard arm is forget bias 1 (the paper's standard init)",
            ),
            seeds=1,
        ),
        Paper(
            name="pascanu2013",
            citation="Pascanu, Mikolov & Bengio 2013, On the difficulty of training recurrent "
            "neural networks, ICML",
            claim="exploding gradients make SGD diverge; rescaling the gradient when its norm "
            "exceeds a threshold (algorithm 1) prevents it",
            experiments=(
                Experiment(
                    "adding",
                    (100,),
                    (
                        Arm(
                            "IRNN, SGD, no clipping",
                            "rnn-relu",
                            "identity",
                            recipe=Recipe(optimizer="sgd"),
                            clip="none",
                        ),
                        Arm(
                            "IRNN, SGD, norm clipping 1",
                            "rnn-relu",
                            "identity",
                            recipe=Recipe(optimizer="sgd"),
                            clip="norm",
                        ),
                    ),
                    _cfg(
                        hidden_size=32,
                        learning_rate=1e-2,
                        steps=300,
                        eval_every_steps=50,
                        test_size=256,
                    ),
                    (100,),
                    _cfg(
                        hidden_size=16,
                        learning_rate=1e-2,
                        steps=60,
                        eval_every_steps=20,
                        test_size=64,
                    ),
                ),
            ),
            published=(
                Published(
                    "adding",
                    "IRNN, SGD, no clipping",
                    100,
                    "outcome",
                    "an exploding gradient throws SGD off a cliff of the loss",
                    "section 3",
                    "recalled",
                ),
                Published(
                    "adding",
                    "IRNN, SGD, norm clipping 1",
                    100,
                    "outcome",
                    "rescaling g to threshold * g / norm(g) keeps training stable",
                    "section 3.2, algorithm 1",
                    "read",
                ),
            ),
            scaled=(
                "the paper's exhibit is a tanh RNN on its pathological tasks trained with SGD; "
                "here an IRNN (ReLU, W_hh = I, unbounded, so an exploding gradient shows as a "
                "NaN) with plain SGD lr 1e-2 on adding at T = 100, 300 steps",
                "diverged = a NaN or Inf loss or gradient, or a final test loss 10x the baseline",
            ),
            seeds=5,
            quick_seeds=2,
        ),
        Paper(
            name="point4",
            citation="the lab's statement (iv): Bengio, Simard & Frasconi 1994; Hochreiter & "
            "Schmidhuber 1997",
            claim="within a fixed budget, the longest dependency a naive RNN learns is short, "
            "a gated cell's long: success rate against T, every cell at its best init",
            experiments=tuple(
                Experiment(
                    task,
                    lengths,
                    (TANH, IRNN, LSTM_DEFAULT, LSTM_CHRONO, GRU),
                    _cfg(hidden_size=32, steps=steps, eval_every_steps=25, test_size=256),
                    (10,),
                    _cfg(hidden_size=16, steps=100, eval_every_steps=50, test_size=128),
                    chrono_per_length=True,
                )
                for task, lengths, steps in (
                    ("adding", (10, 30, 100, 300, 1000), 500),
                    ("temporal-order", (10, 30, 100, 300, 1000), 500),
                )
            ),
            published=(),
            scaled=(
                "hidden 32, Adam lr 1e-2 (IRNN 3e-3), batch 64, norm clipping 1, a budget of "
                "500 steps (32,000 sequences) per run, evaluated every 25, stopped when solved; "
                "chrono T_max = 1.1 T",
            ),
            seeds=3,
        ),
    )
}


# --- running a preset ---------------------------------------------------------------------------


def _job(args: tuple) -> RunResult:
    task_name, arm, length, config, seed, recipe, device, time_limit_s = args
    torch.set_num_threads(1)  # one run per core
    return train_run(
        TASKS[task_name],
        arm.cell,
        length,
        config,
        seed,
        True,
        None,
        recipe,
        arm.label,
        device,
        time_limit_s,
    )


def _jobs(
    paper: Paper,
    quick: bool,
    device: str,
    time_limit_s: float | None,
    seeds: int | None,
    steps: int | None,
) -> list[tuple]:
    jobs = []
    for ex in paper.experiments:
        lengths = ex.quick_lengths if quick else ex.lengths
        base = ex.quick_config if quick else ex.config
        if steps is not None:
            base = dataclasses.replace(base, steps=steps)
        for length in lengths:
            for arm in ex.arms:
                config = dataclasses.replace(
                    base,
                    init=arm.init,
                    forget_bias=arm.forget_bias,
                    learning_rate=arm.lr if arm.lr is not None else base.learning_rate,
                    clip_mode=arm.clip or base.clip_mode,
                )
                recipe = arm.recipe
                if ex.chrono_per_length and arm.init == "chrono":
                    t_max = max(3, length + length // 10)
                    recipe = dataclasses.replace(recipe, chrono_t_max=t_max)
                for seed in range(seeds or (paper.quick_seeds if quick else paper.seeds)):
                    jobs.append((ex.task, arm, length, config, seed, recipe, device, time_limit_s))
    return jobs


def _row(runs: list[RunResult]) -> dict[str, Any]:
    r0 = runs[0]
    solved = [r for r in runs if r.solved]
    seqs = sorted(r.steps_to_solve * r.batch_size for r in solved if r.steps_to_solve is not None)
    finals = [r.final.get("loss", math.nan) for r in runs]
    return {
        "task": r0.task,
        "label": r0.label,
        "cell": r0.cell,
        "length": r0.length,
        "seeds": len(runs),
        "success_rate": len(solved) / len(runs),
        "sequences_to_solve": seqs,
        "sequences_to_solve_median": seqs[len(seqs) // 2] if seqs else None,
        "final_loss_mean": sum(finals) / len(finals),
        "baseline": r0.baseline,
        "diverged_rate": sum(r.diverged for r in runs) / len(runs),
        "time_capped": sum(r.time_capped for r in runs),
        "budget_sequences": max(r.budget_steps * r.batch_size for r in runs),
        "steps_per_s": sum(r.steps for r in runs) / max(sum(r.wall_s for r in runs), 1e-9),
        "wall_s": sum(r.wall_s for r in runs),
    }


def run_paper(
    name: str,
    quick: bool = False,
    jobs: int = 1,
    on_run: Callable[[RunResult], None] | None = None,
    device: str = "cpu",
    time_limit_s: float | None = None,
    seeds: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """Run a preset: every (experiment, length, arm, seed), each stopped at its first solved
    evaluation.

    Args:
        name: a key of PAPERS.
        quick: the seconds-long form (short lengths, tiny budget) the test suite runs.
        jobs: runs at a time, one process and one thread each (1: in this process).
        on_run: called with each finished run.
        device: where each network trains ("cpu", "cuda").
        time_limit_s: stop any run that has taken this long (recorded as time_capped).
        seeds: seeds per (network, length) instead of the preset's.
        steps: the step budget of every run instead of the preset's.

    Returns:
        A JSON-ready dict: the paper, what was scaled, the rows (one per task, arm, length), the
        paper-vs-measured pairs, the runs with their curves, and the wall time.
    """
    paper = PAPERS[name]
    todo = _jobs(paper, quick, device, time_limit_s, seeds, steps)
    t0 = time.perf_counter()
    runs: list[RunResult] = []
    if jobs <= 1:
        for job in todo:
            runs.append(_job(job))
            if on_run is not None:
                on_run(runs[-1])
    else:
        ctx = torch.multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            for run in pool.map(_job, todo):
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    groups: dict[tuple, list[RunResult]] = {}
    for r in runs:
        groups.setdefault((r.task, r.label, r.length), []).append(r)
    rows = [_row(g) for g in groups.values()]
    pairs = pair_up(paper, rows)
    return {
        "paper": paper.name,
        "citation": paper.citation,
        "claim": paper.claim,
        "quick": quick,
        "scaled": list(paper.scaled),
        "seeds": seeds or (paper.quick_seeds if quick else paper.seeds),
        "steps_override": steps,
        "threads_per_run": 1,
        "jobs": jobs,
        "device": device,
        "time_limit_s": time_limit_s,
        "experiments": [
            {
                "task": ex.task,
                "lengths": list(ex.quick_lengths if quick else ex.lengths),
                "config": dataclasses.asdict(
                    dataclasses.replace(
                        ex.quick_config if quick else ex.config,
                        **({} if steps is None else {"steps": steps}),
                    )
                ),
                "arms": [dataclasses.asdict(a) for a in ex.arms],
                "criterion": TASKS[ex.task].criterion,
            }
            for ex in paper.experiments
        ],
        "rows": rows,
        "pairs": pairs,
        "runs": [dataclasses.asdict(r) | {"diverged": r.diverged} for r in runs],
        "wall_s": time.perf_counter() - t0,
    }


def pair_up(paper: Paper, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each published number beside the measured row (task, network, T) it faces."""
    by_key = {(r["task"], r["label"], r["length"]): r for r in rows}
    return [
        {**dataclasses.asdict(pub), "measured": by_key.get((pub.task, pub.label, pub.length))}
        for pub in paper.published
    ]


def _measured_text(row: dict[str, Any] | None, quantity: str) -> str:
    if row is None:
        return "not run"
    ok = f"{row['success_rate'] * row['seeds']:.0f}/{row['seeds']} solved"
    if row.get("time_capped"):
        ok += f" ({row['time_capped']} stopped early by the time limit)"
    if quantity == "sequences to solve":
        seqs = row["sequences_to_solve"]
        med = f"median {seqs[len(seqs) // 2]:,}, mean {sum(seqs) / len(seqs):,.0f}" if seqs else "-"
        return f"{ok} within {row['budget_sequences']:,} sequences; {med}"
    base = f"final loss {row['final_loss_mean']:.4g} (baseline {row['baseline']:.4g})"
    base += f"; {row['diverged_rate'] * row['seeds']:.0f}/{row['seeds']} diverged"
    return f"{ok}; {base}"


def paper_markdown(result: dict[str, Any]) -> str:
    """The "paper vs measured" table and the full measured table, as markdown."""
    lines = [
        f"# {result['paper']}{' (quick)' if result['quick'] else ''}: paper vs measured",
        "",
        f"{result['citation']}. Claim: {result['claim']}.",
        "",
        "| task | network | T | quantity | paper | source (confidence) | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["pairs"]:
        lines.append(
            f"| {p['task']} | {p['label']} | {p['length']} | {p['quantity']} | {p['value']} |"
            f" {p['source']} ({p['confidence']}) | {_measured_text(p['measured'], p['quantity'])} |"
        )
    lines += [
        "",
        "All measured runs (each stopped at its first solved evaluation):",
        "",
        "| task | network | T | seeds | solved | sequences to solve (budget) | final loss |"
        " baseline | diverged | steps/s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        seqs = ", ".join(f"{s:,}" for s in r["sequences_to_solve"]) or "-"
        seqs += f" ({r['budget_sequences']:,})"
        lines.append(
            f"| {r['task']} | {r['label']} | {r['length']} | {r['seeds']} |"
            f" {r['success_rate']:.2f} | {seqs} | {r['final_loss_mean']:.4g} |"
            f" {r['baseline']:.4g} | {r['diverged_rate']:.2f} | {r['steps_per_s']:.1f} |"
            f" {r['wall_s']:.0f} |"
        )
    if result.get("steps_override"):
        lines += ["", f"Run with `--steps {result['steps_override']}`: every budget above is that."]
    lines += ["", "Scaled down or changed from the paper:", ""]
    lines += [f"- {s}" for s in result["scaled"]]
    capped = sum(r["time_capped"] for r in result["rows"])
    if capped:
        lines += [
            "",
            f"{capped} run(s) stopped by the time limit of {result['time_limit_s']:.0f} s "
            "before their step budget: unsolved there means unsolved in that time, no more.",
        ]
    lines += [
        "",
        f"Wall time {result['wall_s']:.0f} s, {result['jobs']} run(s) at a time, one thread "
        f"each, on {result['device']}. The machine is named beside this table's command in "
        "docs/lab.md.",
        "",
    ]
    return "\n".join(lines)


def write_paper(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write paper.json, paper.md and paper.png (and success.png, success rate against T, when
    an experiment has three lengths or more) into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "paper.json", "md": out / "paper.md", "png": out / "paper.png"}
    write_json(paths["json"], result)
    write_text(paths["md"], paper_markdown(result))
    plot_paper(result, paths["png"])
    if any(len(ex["lengths"]) >= 3 for ex in result["experiments"]):
        paths["success_png"] = plot_success(result, out / "success.png")
    return paths
