"""The optimizer and the learning-rate schedule of a training run: AdamW (the default), or Muon
for the hidden weight matrices with AdamW for the rest, and linear warmup then cosine decay over
the budget. Imports config and model; never training.

Muon (Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks"; PyTorch's
``torch.optim.Muon``) orthogonalizes each matrix's momentum with Newton-Schulz iterations. It is
for the 2-D weights inside the network; the embedding, the output head, biases and norms stay
with AdamW, as its authors advise. ``adjust_lr_fn="match_rms_adamw"`` (Moonshot's scaling) makes
one learning rate fit both.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .config import TrainConfig
from .model import CharLM, Ensemble


def learning_rate(cfg: TrainConfig, step: int, fraction: float) -> float:
    """Linear warmup over ``warmup_steps``, then cosine from lr down to lr * min_lr_fraction as
    the budget (steps or time) is spent."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    floor = cfg.min_lr_fraction
    return (
        cfg.learning_rate * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * fraction)))
    )


def _adamw(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=(0.9, 0.99))


def make_optimizer(model: CharLM | Ensemble, cfg: TrainConfig) -> torch.optim.Optimizer | Combined:
    """AdamW, weight decay on the weight matrices only (not embedding rows, not biases); with
    ``cfg.optimizer == "muon"``, Muon takes the hidden matrices (neither the embedding nor the
    head)."""
    hidden, decay, no_decay = [], [], []
    lone_models = model.members if isinstance(model, Ensemble) else [model]  # each as if alone
    for name, p in (named for lm in lone_models for named in lm.named_parameters()):
        if p.dim() < 2 or name.startswith("embedding"):
            no_decay.append(p)
        elif cfg.optimizer == "muon" and not name.startswith("head"):
            hidden.append(p)
        else:
            decay.append(p)
    adamw = _adamw(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        cfg,
    )
    if not hidden:
        return adamw
    muon = torch.optim.Muon(
        hidden, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"
    )
    return Combined([adamw, muon])


class Combined:
    """Several optimizers over disjoint parameters, used as one: ``param_groups`` (where the
    schedule sets the lr), ``zero_grad``, ``step``, and one state dict in torch's own form
    (parameters numbered across all of them), so a checkpoint stores it as any other."""

    def __init__(self, optimizers: list[torch.optim.Optimizer]) -> None:
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [g for o in self.optimizers for g in o.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def state_dict(self) -> dict[str, Any]:
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            sd = o.state_dict()
            state |= {offset + int(i): s for i, s in sd["state"].items()}
            for g in sd["param_groups"]:
                groups.append(g | {"params": [offset + i for i in g["params"]]})
            offset += sum(len(g["params"]) for g in o.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups, offset, start = state_dict["param_groups"], 0, 0
        for o in self.optimizers:
            mine = groups[start : start + len(o.param_groups)]
            start += len(o.param_groups)
            count = sum(len(g["params"]) for g in o.param_groups)
            o.load_state_dict(
                {
                    "state": {
                        int(i) - offset: s
                        for i, s in state_dict["state"].items()
                        if offset <= int(i) < offset + count
                    },
                    "param_groups": [
                        g | {"params": [i - offset for i in g["params"]]} for g in mine
                    ],
                }
            )
            offset += count
        if start != len(groups):
            raise ValueError("the saved optimizer has more parameter groups than this one")
