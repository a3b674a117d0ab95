"""The synthetic tasks are the papers' definitions, and their baselines are what a memoryless
predictor scores."""

import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.lab.tasks import TASKS


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_adding_one_marker_per_half_and_target_is_their_sum():
    task = TASKS["adding"]
    T = 40
    b = task.generate(500, T, gen())
    values, markers = b.inputs[..., 0], b.inputs[..., 1]
    assert b.inputs.shape == (500, T, 2) and values.min() >= 0 and values.max() <= 1
    assert (markers[:, : T // 2].sum(1) == 1).all() and (markers[:, T // 2 :].sum(1) == 1).all()
    assert torch.allclose(b.targets, (values * markers).sum(1))


def test_adding_baseline_is_predicting_the_mean():
    task = TASKS["adding"]
    b = task.generate(20000, 10, gen(1))
    mse = float(task.loss(torch.ones(20000, 1), b.targets))
    assert mse == pytest.approx(task.baseline(10), abs=0.005)
    assert task.baseline(10) == pytest.approx(1 / 6)
    assert task.solved({"loss": 0.009}) and not task.solved({"loss": 0.011})


def test_copy_layout_and_memoryless_baseline_is_exact():
    task = TASKS["copy"]
    T, B = 30, 64
    b = task.generate(B, T, gen(2))
    ids = b.inputs.argmax(-1)  # (B, T + 20)
    assert b.inputs.shape == (B, T + 20, 10)
    assert ((ids[:, :10] >= 1) & (ids[:, :10] <= 8)).all()
    assert (ids[:, 10 : T + 9] == 0).all() and (ids[:, T + 9] == 9).all()
    assert (ids[:, T + 10 :] == 0).all()
    assert (b.targets[:, : T + 10] == 0).all() and (b.targets[:, T + 10 :] == ids[:, :10]).all()
    # blanks with certainty, then uniform over the 8 data symbols
    logits = torch.full((B, T + 20, 10), -1e9)
    logits[:, : T + 10, 0] = 0
    logits[:, T + 10 :, 1:9] = 0
    assert float(task.loss(logits, b.targets)) == pytest.approx(task.baseline(T), rel=1e-6)
    assert task.baseline(100) == pytest.approx(10 * math.log(8) / 120)
    perfect = F.one_hot(b.targets, 10).float() * 50
    assert task.measure(perfect, b.targets)["accuracy"] == 1.0
    assert task.solved(task.measure(perfect, b.targets))


def test_temporal_order_is_hochreiter_schmidhuber_6a_at_t100():
    task = TASKS["temporal-order"]
    b = task.generate(256, 100, gen(3))
    ids = b.inputs.argmax(-1)  # (B, L)
    L = ids.size(1)
    assert 100 <= L <= 110
    assert (ids[:, 0] == task.start).all() and (ids[:, -1] == task.end).all()
    relevant = (ids == task.x) | (ids == task.y)
    assert (relevant.sum(1) == 2).all()
    pos = relevant.nonzero()[:, 1].view(256, 2)
    assert (pos[:, 0] >= 10).all() and (pos[:, 0] <= 20).all()
    assert (pos[:, 1] >= 50).all() and (pos[:, 1] <= 60).all()
    first = ids.gather(1, pos[:, :1])[:, 0] - task.x
    second = ids.gather(1, pos[:, 1:])[:, 0] - task.x
    assert torch.equal(b.targets, 2 * first + second)
    assert float(task.loss(torch.zeros(256, 4), b.targets)) == pytest.approx(math.log(4))
    assert task.baseline(100) == pytest.approx(math.log(4))


def test_same_generator_seed_same_batch():
    for task in TASKS.values():
        a, b = task.generate(4, 30, gen(7)), task.generate(4, 30, gen(7))
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)


def test_temporal_order_3_is_experiment_6b():
    task = TASKS["temporal-order-3"]
    b = task.generate(256, 100, gen(4))
    ids = b.inputs.argmax(-1)  # (B, L)
    relevant = (ids == task.x) | (ids == task.y)
    assert (relevant.sum(1) == 3).all()
    pos = relevant.nonzero()[:, 1].view(256, 3)
    for j, (lo, hi) in enumerate([(10, 20), (33, 43), (66, 76)]):
        assert (pos[:, j] >= lo).all() and (pos[:, j] <= hi).all()
    bits = [ids.gather(1, pos[:, j : j + 1])[:, 0] - task.x for j in range(3)]
    assert torch.equal(b.targets, 4 * bits[0] + 2 * bits[1] + bits[2])
    assert set(b.targets.tolist()) == set(range(8))
    assert task.baseline(100) == pytest.approx(math.log(8))


def test_adding_1997_is_experiment_4():
    task = TASKS["adding-1997"]
    T, B = 100, 4000
    b = task.generate(B, T, gen(5))
    values, markers = b.inputs[..., 0], b.inputs[..., 1]  # (B, L)
    L = values.size(1)
    assert T <= L <= T + T // 10 and values.min() >= -1 and values.max() <= 1
    marked = markers == 1
    assert (marked.sum(1) == 2).all()
    pos = marked.nonzero()[:, 1].view(B, 2)
    assert (pos[:, 0] < 10).all() and (pos[:, 1] < T // 2 - 1).all()
    # -1 on the first pair (unless marked) and the last; nothing else
    assert (markers[:, -1] == -1).all() and (markers[pos[:, 0] > 0, 0] == -1).all()
    assert ((markers == -1).sum(1) == 2 - (pos[:, 0] == 0).long()).all()
    x1 = values.gather(1, pos[:, :1])[:, 0]
    x2 = values.gather(1, pos[:, 1:])[:, 0]
    assert (x1[pos[:, 0] == 0] == 0).all()  # the rare case: a marked first pair counts 0
    assert torch.allclose(b.targets, 0.5 + (x1 + x2) / 4)
    mse = float(task.loss(torch.full((B, 1), 0.5), b.targets))
    assert mse == pytest.approx(task.baseline(T), rel=0.05)
    close = b.targets.unsqueeze(-1) + 0.03
    assert task.solved(task.measure(close, b.targets))
    assert not task.solved(task.measure(close + 0.02, b.targets))
