"""The paper presets of `rnnlab longrange --paper NAME` as data: the arms, experiments and
published numbers of each paper, and how each is scaled for a 2-core CPU (papers.py runs them).
Imports config and lab.longrange (Recipe).

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

from dataclasses import dataclass, field
from typing import Any

from ..config import LongRangeConfig
from .longrange import Recipe


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
