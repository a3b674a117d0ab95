"""Train recurrent networks on the synthetic long-range tasks and measure success against the
sequence length: input projection -> fused recurrent layer -> linear readout (from the last step,
or every step for copy). Imports config, model and lab.tasks.

Sources: the tasks and their baselines are in lab/tasks.py. Gradient clipping: Pascanu, Mikolov
& Bengio 2013, section 3.2, algorithm 1 (rescale g to threshold * g / ||g|| when ||g|| exceeds
the threshold; "norm") against char-rnn's element-wise clamp ("element"). Inits: model.initialize
(IRNN of Le, Jaitly & Hinton 2015 section 3; chrono of Tallec & Ollivier 2018 eq. 17; forget
bias 1 of Jozefowicz, Zaremba & Sutskever 2015 section 2.2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..config import LongRangeConfig, ModelConfig
from ..model import clip_gradients, layer_config, recurrent_stack
from .tasks import TASKS, Batch, Task

TEST_BATCH = 256  # sequences per forward pass when testing
CHRONO_T_MAX = 128  # the horizon model.initialize's chrono preset draws its biases for


@dataclass(frozen=True)
class Recipe:
    """What a paper preset sets beyond LongRangeConfig (its defaults change nothing).

    optimizer: "adam" (ours) or "sgd" (plain, as Pascanu et al. 2013 and Le et al. 2015).
    chrono_t_max: redraw chrono biases for this horizon instead of 128 (Tallec & Ollivier 2018
        eq. 17 sets T_max to the longest dependency expected: T for the tasks here).
    gain: multiply every recurrent matrix by this after init (> 1 makes gradients explode).
    bf16: run the training forward under bf16 autocast (weights, gradients and the test stay
        float32). On this AMD EPYC (AVX-512 BF16) it speeds the LSTM up 1.3-2.2x and slows the
        GRU and tanh RNN down (docs/lab.md, "Speed"); off unless a preset checked it.
    """

    optimizer: str = "adam"
    chrono_t_max: int | None = None
    gain: float = 1.0
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")
        if self.chrono_t_max is not None and self.chrono_t_max < 3:
            raise ValueError(f"chrono_t_max must be at least 3, got {self.chrono_t_max}")


@torch.no_grad()
def stretch_chrono(rnn: nn.RNNBase, t_max: int) -> None:
    """Redraw chrono gate biases for a horizon of ``t_max`` steps. The chrono preset sets each
    gate bias it touches to +-log(u) / 2, u ~ U[1, 127], and every other bias to 0; mapping
    u -> 1 + (u - 1) (t_max - 2) / 126 keeps u uniform, now on [1, t_max - 1], without the
    lab needing to know which rows are which gate."""
    for name, p in rnn.named_parameters():
        if name.startswith("bias"):
            u = torch.exp(2 * p.abs())  # (G H,) 1 where the preset left the bias at 0
            u = 1 + (u - 1) * (t_max - 2) / (CHRONO_T_MAX - 2)
            p.copy_(torch.sign(p) * torch.log(u) / 2)


class LongRangeNet(nn.Module):
    """Linear input projection (F -> H), one fused recurrent layer, linear readout (H -> O)."""

    def __init__(self, task: Task, model_config: ModelConfig) -> None:
        super().__init__()
        self.every_step = task.every_step
        self.project = nn.Linear(task.input_size, model_config.embedding_size)
        self.rnn = recurrent_stack(model_config, model_config.embedding_size)
        self.readout = nn.Linear(model_config.hidden_size, task.output_size)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, L, F) -> outputs (B, L, O) if the task reads every step, else (B, O)."""
        out, _ = self.rnn(self.project(inputs))  # (B, L, H)
        return self.readout(out if self.every_step else out[:, -1])


def model_config(cell: str, config: LongRangeConfig) -> ModelConfig:
    """The recurrent layer of a long-range network."""
    return layer_config(cell, config.hidden_size, config.init, config.forget_bias)


@torch.no_grad()
def evaluate(model: LongRangeNet, task: Task, test: list[Any]) -> dict[str, float]:
    """Test metrics over fixed batches, weighted by batch size."""
    model.eval()
    total: dict[str, float] = {}
    count = 0
    for batch in test:
        n = batch.inputs.size(0)
        for k, v in task.measure(model(batch.inputs), batch.targets).items():
            total[k] = total.get(k, 0.0) + v * n
        count += n
    model.train()
    return {k: v / count for k, v in total.items()}


def test_set(task: Task, length: int, size: int, seed: int) -> list[Any]:
    """The held-out sequences: from their own generator, never seen in training."""
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + length)
    return [
        task.generate(min(TEST_BATCH, size - start), length, g)
        for start in range(0, size, TEST_BATCH)
    ]


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush denormal floats to zero while training. A vanishing gradient passes through
    1e-38..1e-45, where x86 arithmetic is slow: measured here, a tanh RNN step at T = 200 took
    1.1 s with denormals and 0.14 s without. Sets torch's process-wide flag; back off after."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@dataclass
class RunResult:
    """One (task, cell, length, seed) training run."""

    task: str
    cell: str
    length: int
    seed: int
    baseline: float
    steps: int  # steps trained
    final: dict[str, float]  # test metrics after the last step
    solved: bool
    steps_to_solve: int | None  # first evaluation at which the criterion held
    wall_s: float
    curve: list[dict[str, float]]  # {"step", "loss", ["accuracy"], "grad_norm"} per evaluation
    batch_size: int = 0  # sequences per step: steps_to_solve * batch_size sequences seen
    nonfinite_steps: int = 0  # steps whose loss or gradient was NaN or Inf (skipped)
    max_grad_norm: float = 0.0  # largest gradient norm before clipping
    label: str = ""  # the (cell, init) name a preset gives the run; the cell otherwise
    time_capped: bool = False  # stopped by time_limit_s before its step budget
    budget_steps: int = 0  # the step budget it was given (config.steps)
    device: str = "cpu"

    @property
    def diverged(self) -> bool:
        """A NaN or Inf step, or a final test loss 10 times the memoryless baseline."""
        loss = self.final.get("loss", math.nan)
        return self.nonfinite_steps > 0 or not math.isfinite(loss) or loss > 10 * self.baseline


def train_run(
    task: Task,
    cell: str,
    length: int,
    config: LongRangeConfig,
    seed: int = 0,
    until_solved: bool = False,
    on_eval: Callable[[RunResult, dict[str, float]], None] | None = None,
    recipe: Recipe = Recipe(),
    label: str = "",
    device: str = "cpu",
    time_limit_s: float | None = None,
) -> RunResult:
    """Train one network on fresh batches of ``task`` at ``length`` with Adam (or SGD).

    Args:
        task: one of ``tasks.TASKS``.
        cell: "rnn", "rnn-relu", "lstm" or "gru".
        length: T of the task (the delay for copy).
        config: the budget and the optimizer, clipping and init presets.
        seed: seeds the weights and the training batches (the test set has its own).
        until_solved: stop at the first evaluation that meets the task's criterion.
        on_eval: called after each evaluation with the run so far and the metrics.
        recipe: optimizer, chrono horizon and recurrent gain, when a paper preset sets them.
        label: the run's name in tables (default: the cell).
        device: where the network trains ("cpu", "cuda"); batches are drawn on the CPU.
        time_limit_s: stop (after one last evaluation) once the run has taken this long.

    Returns:
        The RunResult; ``final`` holds the test metrics at the last step trained.
    """
    model = build_net(task, cell, config, seed, recipe).to(device)
    make = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.SGD
    optimizer = make(model.parameters(), lr=config.learning_rate)
    g = torch.Generator().manual_seed(seed)
    test = [
        Batch(b.inputs.to(device), b.targets.to(device))
        for b in test_set(task, length, config.test_size, seed)
    ]
    result = RunResult(
        task.name,
        cell,
        length,
        seed,
        task.baseline(length),
        0,
        {},
        False,
        None,
        0.0,
        [],
        batch_size=config.batch_size,
        label=label or cell,
        device=device,
        budget_steps=config.steps,
    )
    t0 = time.perf_counter()
    grad_norm = float("nan")
    with flushed_denormals():
        for step in range(config.steps + 1):
            late = time_limit_s is not None and time.perf_counter() - t0 > time_limit_s
            if step % config.eval_every_steps == 0 or step == config.steps or late:
                metrics = evaluate(model, task, test)
                result.curve.append({"step": step, **metrics, "grad_norm": grad_norm})
                result.final, result.steps = metrics, step
                if result.steps_to_solve is None and task.solved(metrics):
                    result.steps_to_solve = step
                result.solved = task.solved(metrics)
                result.wall_s = time.perf_counter() - t0
                if on_eval is not None:
                    on_eval(result, metrics)
                if until_solved and result.solved:
                    break
                if late:
                    result.time_capped = True
                    break
            if step == config.steps:
                break
            batch = task.generate(config.batch_size, length, g)
            grad_norm = _train_step(model, optimizer, task, batch, config, recipe, result)
    result.wall_s = time.perf_counter() - t0
    return result


def build_net(
    task: Task, cell: str, config: LongRangeConfig, seed: int, recipe: Recipe
) -> LongRangeNet:
    """The network of one run, seeded, with the recipe's chrono horizon and recurrent gain."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LongRangeNet(task, model_config(cell, config))
        if recipe.chrono_t_max is not None and config.init == "chrono":
            stretch_chrono(model.rnn, recipe.chrono_t_max)
        if recipe.gain != 1.0:
            with torch.no_grad():
                for name, p in model.rnn.named_parameters():
                    if name.startswith("weight_hh"):
                        p.mul_(recipe.gain)
    return model


def _train_step(
    model: LongRangeNet,
    optimizer: torch.optim.Optimizer,
    task: Task,
    batch: Batch,
    config: LongRangeConfig,
    recipe: Recipe,
    result: RunResult,
) -> float:
    """One clipped step on a batch; a NaN or Inf step is skipped (and counted in ``result``),
    the weights stay as they were. Returns the gradient norm before clipping."""
    device = next(model.parameters()).device
    inputs, targets = batch.inputs.to(device), batch.targets.to(device)
    with torch.autocast(device.type, torch.bfloat16, enabled=recipe.bf16):
        outputs = model(inputs)
    loss = task.loss(outputs.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = clip_gradients(model.parameters(), config.clip_mode, config.grad_clip)
    if math.isfinite(loss.item()) and math.isfinite(grad_norm):
        optimizer.step()
        result.max_grad_norm = max(result.max_grad_norm, grad_norm)
    else:
        result.nonfinite_steps += 1
    return grad_norm


def sweep(
    task_name: str,
    cells: Sequence[str],
    lengths: Sequence[int],
    config: LongRangeConfig,
    seeds: int = 1,
    until_solved: bool = False,
    on_eval: Callable[[RunResult, dict[str, float]], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    first_seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Every cell at every length for seeds first_seed .. first_seed + seeds - 1, trained on
    ``device``.

    Returns:
        A JSON-ready dict: the task, its criterion, the config, the runs (RunResult as dicts),
        a table of success rate per (cell, length), and the total wall time.
    """
    task = TASKS[task_name]
    for cell in cells:
        model_config(cell, config)  # an impossible (cell, init) pair fails before any training
    t0 = time.perf_counter()
    runs = []
    for length in lengths:
        for cell in cells:
            for seed in range(first_seed, first_seed + seeds):
                run = train_run(
                    task, cell, length, config, seed, until_solved, on_eval, device=device
                )
                runs.append(run)
                if on_run is not None:
                    on_run(run)
    table = []
    for cell in cells:
        for length in lengths:
            mine = [r for r in runs if r.cell == cell and r.length == length]
            solved_at = [r.steps_to_solve for r in mine if r.solved]
            table.append(
                {
                    "cell": cell,
                    "length": length,
                    "success_rate": sum(r.solved for r in mine) / len(mine),
                    "final_loss_mean": sum(r.final["loss"] for r in mine) / len(mine),
                    "baseline": task.baseline(length),
                    "steps_to_solve_mean": sum(solved_at) / len(solved_at) if solved_at else None,
                }
            )
    return {
        "task": task_name,
        "criterion": task.criterion,
        "metric": task.metric,
        "config": dataclasses.asdict(config),
        "seeds": seeds,
        "first_seed": first_seed,
        "until_solved": until_solved,
        "threads": torch.get_num_threads(),
        "device": device,
        "runs": [dataclasses.asdict(r) for r in runs],
        "table": table,
        "wall_s": time.perf_counter() - t0,
    }
