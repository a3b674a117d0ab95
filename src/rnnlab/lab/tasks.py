"""Synthetic long-range tasks, generated on the fly from a torch.Generator, each with the loss of
the best memoryless predictor (the baseline a network that remembers nothing reaches) and a
stated criterion for "solved". Imports torch only.

Sources, with the section whose definition is used:
- adding: Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of Rectified
  Linear Units", section 4.1: two input channels, values U[0, 1] and a marker channel with one 1
  in each half of the sequence; the target is the sum of the two marked values; MSE. Predicting
  the mean 1 always scores Var(X1 + X2) = 2/12 = 0.167 (the paper quotes 0.1767).
- copy: Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", section
  4.1 (after Hochreiter & Schmidhuber 1997): alphabet a0 blank, a1..a8 data, a9 delimiter; the
  input is 10 data symbols, T - 1 blanks, the delimiter, 10 blanks (length T + 20); the target
  is T + 10 blanks then the 10 data symbols; cross-entropy at every step. Memoryless baseline:
  blanks, then a uniform guess over 8 symbols, 10 ln 8 / (T + 20) nats per step.
- temporal-order: Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", section 5.6,
  experiment 6a: symbols {a, b, c, d, B, E, X, Y}; sequences of length 100-110 start with B,
  end with E, and hold X or Y at t1 in [10, 20] and t2 in [50, 60], distractors a-d elsewhere;
  the class (XX, XY, YX, YY) is read at the end. We scale the positions with T (t1 in
  [T/10, T/5], t2 in [T/2, 3T/5], length in [T, 1.1 T]), so T = 100 is the paper's task.
  Memoryless baseline: ln 4 nats (four equally likely classes). (The paper writes E first and
  B last, B being the trigger; which symbol opens and which closes changes nothing learnable.)
- temporal-order-3: the same section, experiment 6b: three relevant symbols at t1 in [10, 20],
  t2 in [33, 43], t3 in [66, 76], eight classes; baseline ln 8.
- adding-1997: Hochreiter & Schmidhuber 1997, section 5.4, experiment 4 (the adding problem as
  first posed): pairs (value U[-1, 1], marker); length drawn in [T, T + T/10]; X1 marked among
  the first 10 pairs, X2 among the first T/2 - 1 still unmarked ones; marker -1 on the first
  and last pair (and X1 set to 0 when the first pair is the marked one); target at the end
  0.5 + (X1 + X2) / 4; "correct" when the absolute error is below 0.04. Baseline: the variance
  of the target, about 2/3/16 = 0.042 (predicting 0.5). Paper's stopping criterion: mean
  training error below 0.01 and the 2000 most recent training sequences correct; ours reads
  the test set instead (99% of it correct), the same bar measured on unseen sequences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Batch:
    """One batch of a task: inputs (B, L, F) float32 and targets, whose shape depends on the
    task (see each task's ``generate``)."""

    inputs: torch.Tensor
    targets: torch.Tensor


class Task:
    """A synthetic task: what a batch looks like, the loss, the baseline and when it is solved."""

    name: str = ""
    input_size: int = 0  # features per step
    output_size: int = 0  # network outputs (1 for regression, classes otherwise)
    every_step: bool = False  # read out at every step (copy) or only the last (the others)
    metric: str = "loss"  # the metric the criterion reads
    criterion: str = ""  # "solved" in words

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss of outputs (B, O) or (B, L, O) against a batch's targets."""
        raise NotImplementedError

    def baseline(self, length: int) -> float:
        """The test loss of the best predictor that ignores the inputs."""
        raise NotImplementedError

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Test metrics: always ``loss``, plus ``accuracy`` for classification tasks."""
        return {"loss": float(self.loss(outputs, targets))}

    def solved(self, metrics: dict[str, float]) -> bool:
        raise NotImplementedError


class Adding(Task):
    """Le et al. 2015 adding problem. Targets (B,): the sum of the two marked values."""

    name, input_size, output_size, metric = "adding", 2, 1, "loss"
    criterion = "test MSE below 0.01 (6% of the 0.167 baseline)"

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 2:
            raise ValueError("the adding problem needs a length of at least 2")
        B, T = batch_size, length
        values = torch.rand(B, T, generator=generator)  # (B, T) U[0, 1]
        first = torch.randint(0, T // 2, (B,), generator=generator)  # one marker per half
        second = torch.randint(T // 2, T, (B,), generator=generator)
        rows = torch.arange(B)
        markers = torch.zeros(B, T)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]  # (B,)
        return Batch(torch.stack([values, markers], dim=-1), targets)  # inputs (B, T, 2)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), targets)

    def baseline(self, length: int) -> float:
        return 1.0 / 6.0  # always predict E[X1 + X2] = 1: the variance of the sum

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["loss"] < 0.01


class Copy(Task):
    """Arjovsky et al. 2016 copying memory. Targets (B, T + 20) int64 symbols."""

    name, input_size, output_size, every_step, metric = "copy", 10, 10, True, "accuracy"
    criterion = "at least 99% of the 10 recalled symbols right"
    symbols, data = 10, 8  # alphabet size; data symbols 1..8; 0 blank, 9 delimiter

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 1:
            raise ValueError("the copy task needs a length (delay) of at least 1")
        B, T = batch_size, length
        data = torch.randint(1, self.data + 1, (B, 10), generator=generator)  # (B, 10)
        ids = torch.zeros(B, T + 20, dtype=torch.long)
        ids[:, :10] = data
        ids[:, T + 9] = self.symbols - 1  # delimiter after T - 1 blanks
        targets = torch.zeros(B, T + 20, dtype=torch.long)
        targets[:, T + 10 :] = data
        return Batch(F.one_hot(ids, self.symbols).float(), targets)  # inputs (B, T + 20, 10)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())

    def baseline(self, length: int) -> float:
        return 10 * math.log(self.data) / (length + 20)

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        recalled = outputs[:, -10:].argmax(-1) == targets[:, -10:]  # (B, 10)
        return {
            "loss": float(self.loss(outputs, targets)),
            "accuracy": float(recalled.float().mean()),
        }

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy"] >= 0.99


class TemporalOrder(Task):
    """Hochreiter & Schmidhuber 1997 experiment 6a (two relevant symbols, classes XX, XY, YX,
    YY) or 6b (three, eight classes). Targets (B,) int64: the X/Y choices read as a binary
    number, X = 0, the first symbol the highest bit."""

    name, input_size, output_size, metric = "temporal-order", 8, 4, "accuracy"
    criterion = "at least 99% of the test sequences classified right"
    a, b, c, d, start, end, x, y = range(8)
    # where the relevant symbols go, as fractions of T: 6a t1 in [10, 20], t2 in [50, 60]
    windows: tuple[tuple[float, float], ...] = ((0.1, 0.2), (0.5, 0.6))

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 10:
            raise ValueError("the temporal-order task needs a length of at least 10")
        B, T = batch_size, length
        # one length per batch in [T, 1.1 T], as the paper's 100-110
        L = T + int(torch.randint(0, T // 10 + 1, (1,), generator=generator))
        ids = torch.randint(self.a, self.d + 1, (B, L), generator=generator)  # distractors
        ids[:, 0], ids[:, -1] = self.start, self.end
        where = [
            torch.randint(round(lo * T), round(hi * T) + 1, (B,), generator=generator)
            for lo, hi in self.windows
        ]
        k = len(self.windows)
        which = torch.randint(0, 2, (B, k), generator=generator)  # 0 -> X, 1 -> Y
        rows = torch.arange(B)
        for j, t in enumerate(where):
            ids[rows, t] = self.x + which[:, j]
        targets = (which * (2 ** torch.arange(k - 1, -1, -1))).sum(1)  # XX 0, XY 1, YX 2, YY 3
        return Batch(F.one_hot(ids, 8).float(), targets)  # inputs (B, L, 8)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def baseline(self, length: int) -> float:
        return math.log(self.output_size)

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        right = outputs.argmax(-1) == targets
        return {"loss": float(self.loss(outputs, targets)), "accuracy": float(right.float().mean())}

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy"] >= 0.99


class TemporalOrder3(TemporalOrder):
    """Experiment 6b: three relevant symbols, t1 in [10, 20], t2 in [33, 43], t3 in [66, 76]."""

    name, output_size = "temporal-order-3", 8
    windows = ((0.1, 0.2), (0.33, 0.43), (0.66, 0.76))


class Adding1997(Task):
    """Hochreiter & Schmidhuber 1997 experiment 4. Targets (B,): 0.5 + (X1 + X2) / 4."""

    name, input_size, output_size, metric = "adding-1997", 2, 1, "accuracy"
    criterion = "at least 99% of the test sequences within 0.04 of the target"

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 24:
            raise ValueError("the 1997 adding problem needs a length of at least 24")
        B, T = batch_size, length
        L = T + int(torch.randint(0, T // 10 + 1, (1,), generator=generator))  # one per batch
        values = torch.rand(B, L, generator=generator) * 2 - 1  # (B, L) U[-1, 1]
        first = torch.randint(0, 10, (B,), generator=generator)
        # X2: one of the first T/2 - 1 pairs other than X1's: draw among T/2 - 2, skip X1's
        second = torch.randint(0, T // 2 - 2, (B,), generator=generator)
        second = second + (second >= first).long()
        rows = torch.arange(B)
        markers = torch.zeros(B, L)
        markers[:, 0] = markers[:, -1] = -1.0
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        values[:, 0] *= markers[:, 0] != 1  # the rare case the paper names: first pair marked -> 0
        targets = 0.5 + (values[rows, first] + values[rows, second]) / 4  # (B,)
        return Batch(torch.stack([values, markers], dim=-1), targets)  # inputs (B, L, 2)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.squeeze(-1), targets)

    def baseline(self, length: int) -> float:
        # predict 0.5: the variance of the target, (Var X1 + Var X2) / 16, Var = 1/3 for a U[-1, 1]
        # value, less for the one on the first pair, set to 0 (marked with probability p0)
        p0 = 0.1 + 0.9 / (length // 2 - 2)
        return (2 - p0) / 3 / 16

    def measure(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        right = (outputs.squeeze(-1) - targets).abs() < 0.04
        return {"loss": float(self.loss(outputs, targets)), "accuracy": float(right.float().mean())}

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["accuracy"] >= 0.99


TASKS: dict[str, Task] = {
    t.name: t for t in (Adding(), Copy(), TemporalOrder(), TemporalOrder3(), Adding1997())
}
