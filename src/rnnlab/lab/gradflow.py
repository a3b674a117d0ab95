"""Gradient-flow probes: how the gradient of a loss at the last step shrinks or grows as it is
backpropagated through T recurrent steps (an RNN: a T-layer network with tied weights) or L
feed-forward layers (the same cell, untied weights). Float64, exact autograd on the reference
cells (cells.ReferenceRNN, weight-for-weight the fused modules). Imports config, model, cells,
checkpoint.

Sources, with the equation used:
- Bengio, Simard & Frasconi 1994, section III: the gradient of a long-term term is a product of
  one Jacobian per step, so it vanishes exponentially once the Jacobians' norms are below 1.
- Pascanu, Mikolov & Bengio 2013, section 2.1, eqs. 5-7 and 8: for h_t = W_rec s(h_{t-1}) + ...
  ||dh_T/dh_t|| <= (gamma * sigma_max(W_rec))^(T - t), gamma the bound on the derivative of the
  nonlinearity (1 for tanh and relu, 1/4 for sigmoid): vanishing is certain when
  sigma_max < 1 / gamma; sigma_max > 1 / gamma is necessary (not sufficient) for exploding.
- Hochreiter & Schmidhuber 1997, section 3 (constant error carousel) and Cho et al. 2014's GRU
  update gate: the additive state paths whose Jacobian is near the identity, no bound above.
- Feng et al. 2024 (minGRU / minLSTM, section 3): h_t = a_t h_{t-1} + b_t with a_t, b_t
  functions of the input alone, so dh_T/dh_t = diag(a_{t+1} ... a_T) exactly: the gradient
  decays only through the product of the forget coefficients, with no matrix in the path.
- Init presets are model.initialize: Le, Jaitly & Hinton 2015 (IRNN, section 3); Tallec &
  Ollivier 2018 (chrono, eq. 17); Jozefowicz, Zaremba & Sutskever 2015 (forget bias 1).

The state s_t of a step is h_t (all layers) and, for an LSTM, the cell c_t too: dh_T/dh_t is the
product of the recurrent Jacobians of that state map, and "||dL_T/dh_t||" the norm of the
loss's gradient with respect to that whole state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..cells import ReferenceRNN, ScanReference, reference_of
from ..checkpoint import load_model
from ..config import ConfigError, ModelConfig
from ..model import layer_config, recurrent_stack

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (s (B, S), x (B, F)) -> (B, S)
GAMMA = {"rnn": 1.0, "rnn-relu": 1.0}  # max |phi'|: tanh 1, relu 1; no such bound for gated cells


@dataclass(frozen=True)
class Flow:
    """Norms per lag k = T - t, k = 0..T: ``loss_grad[k]`` = batch mean of ||dL/ds_{T-k}||,
    ``jacobian[k]`` = batch mean of the spectral norm of ds_T/ds_{T-k} (1 at k = 0)."""

    loss_grad: list[float]
    jacobian: list[float]


def flow(steps: list[Step], s0: torch.Tensor, xs: torch.Tensor, readout: Callable) -> Flow:
    """Backpropagate a last-step loss through a chain of steps and measure it at every state.

    Args:
        steps: one step function per layer of the unrolled chain (the same one T times for an
            RNN; L different ones for a feed-forward stack); each maps (B, S), (B, F) -> (B, S).
        s0: (B, S) the state before the first step.
        xs: (B, T, F) the input of each step.
        readout: maps the last state (B, S) to per-sequence losses (B,).

    Returns:
        A Flow with T + 1 entries in each list.
    """
    B, T = xs.shape[0], len(steps)
    states = [s0.detach().requires_grad_(True)]
    for t, step in enumerate(steps):
        s = step(states[-1], xs[:, t])
        s.retain_grad()
        states.append(s)
    readout(states[-1]).sum().backward()  # sequences are independent: per-sequence gradients
    loss_grad = [float(s.grad.norm(dim=1).mean()) for s in reversed(states)]

    # the Jacobian product, accumulated from the end: P_k = ds_T / ds_{T-k}
    S = s0.size(1)
    P = torch.eye(S, dtype=s0.dtype).expand(B, S, S)
    jacobian = [1.0]
    with torch.no_grad():  # torch.func differentiates anyway; no graph on the weights
        for t in range(T - 1, -1, -1):

            def one(s: torch.Tensor, x: torch.Tensor, step: Step = steps[t]) -> torch.Tensor:
                return step(s[None], x[None])[0]

            J = torch.func.vmap(torch.func.jacrev(one))(states[t].detach(), xs[:, t])  # (B,S,S)
            P = P @ J
            jacobian.append(float(torch.linalg.matrix_norm(P, ord=2).mean()))
    return Flow(loss_grad, jacobian)


def fit_rate(norms: list[float], skip: int = 1) -> float:
    """exp of the least-squares slope of log(norm) against lag: the factor per step. Lags below
    ``skip`` are left out (the last step differs: only the readout acts on it)."""
    pts = [(k, math.log(n)) for k, n in enumerate(norms) if k >= skip and 0 < n < math.inf]
    if len(pts) < 2:
        return math.nan
    mx = sum(k for k, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((k - mx) ** 2 for k, _ in pts)
    sxy = sum((k - mx) * (y - my) for k, y in pts)
    return math.exp(sxy / sxx)


def reference_step(ref: ReferenceRNN | ScanReference) -> tuple[Step, int]:
    """One step of a reference stack on a flat state (B, S), S = n * L * H (n = 2 for an LSTM:
    h then c). Returns the step and S."""
    L, H = ref.num_layers, ref.hidden_size
    probe = torch.zeros(1, 1, ref.input_size, dtype=next(ref.parameters()).dtype)
    n = len(ref(probe)[1])  # state tensors: (h,) or (h, c)

    def step(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B = s.size(0)
        state = s.view(B, n, L, H).permute(1, 2, 0, 3)  # (n, L, B, H)
        _, new, _ = ref(x[:, None], tuple(state.unbind(0)))
        return torch.stack(new).permute(2, 0, 1, 3).reshape(B, n * L * H)

    return step, n * L * H


def weight_spectrum(rnn: nn.Module) -> dict[str, float]:
    """Largest singular value and spectral radius of each layer's W_hh; a gated cell's is
    reported per gate block (PyTorch order: LSTM i, f, g, o; GRU r, z, n)."""
    out = {}
    for name, w in rnn.named_parameters():
        if not name.startswith("weight_hh"):
            continue
        H = w.size(1)
        for b in range(w.size(0) // H):
            block = w[b * H : (b + 1) * H].detach().double()
            key = f"{name}[{b}]" if w.size(0) > H else name
            out[f"{key}.sigma_max"] = float(torch.linalg.matrix_norm(block, ord=2))
            out[f"{key}.spectral_radius"] = float(torch.linalg.eigvals(block).abs().max())
    return out


@dataclass(frozen=True)
class ProbeConfig:
    """One configuration to probe."""

    cell: str = "rnn"
    init: str = "default"
    gain: float = 1.0  # W_hh is multiplied by this after the init preset
    net: str = "rnn"  # "rnn": T steps of one cell; "mlp": `depth` cells with their own weights
    length: int = 100  # T for net rnn, the depth L for net mlp
    hidden_size: int = 64
    batch_size: int = 16
    forget_bias: float = 1.0
    seed: int = 0

    @property
    def label(self) -> str:
        what = f"{self.cell} {self.init}" + (f" gain {self.gain:g}" if self.gain != 1 else "")
        if self.cell == "lstm" and self.init != "chrono":
            what += f" fb {self.forget_bias:g}"
        return what + (" (MLP, untied)" if self.net == "mlp" else "")


def configurations(
    cells: list[str],
    inits: list[str],
    gains: list[float],
    nets: list[str],
    forget_biases: list[float],
    length: int,
    depth: int,
    **common: Any,
) -> list[ProbeConfig]:
    """Every combination to overlay on one plot, leaving out the (cell, init) pairs the init
    presets reject (identity is for plain RNNs) and forget biases that nothing reads (they act on
    an LSTM, and chrono sets its own). ``common``: hidden_size, batch_size, seed."""
    out = []
    for net in nets:
        for cell in cells:
            for init in inits:
                try:
                    ModelConfig(cell=cell, init=init)
                except ConfigError:
                    continue
                fb = [1.0] if init == "chrono" else forget_biases
                for gain in gains:
                    for bias in fb if cell == "lstm" else fb[:1]:
                        size = length if net == "rnn" else depth
                        out.append(
                            ProbeConfig(cell, init, gain, net, size, forget_bias=bias, **common)
                        )
    return out


def _fresh_layer(config: ProbeConfig) -> nn.RNNBase:
    mc = layer_config(config.cell, config.hidden_size, config.init, config.forget_bias)
    rnn = recurrent_stack(mc, config.hidden_size).double()
    if hasattr(rnn, "weight_hh_l0"):  # minGRU / minLSTM have no recurrent matrix to scale
        with torch.no_grad():
            rnn.weight_hh_l0.mul_(config.gain)
    return rnn


def probe(config: ProbeConfig) -> dict[str, Any]:
    """Measure gradient flow in a random network of ``config``.

    Inputs are N(0, 1) at every step (every layer for the MLP); the loss at the end is a fixed
    random unit readout of h_T, u . h_T per sequence, so dL/dh_T = u and what follows is only
    what the Jacobians do to it.

    Returns:
        A JSON-ready dict: the config, ``lags``, ``loss_grad``, ``jacobian`` (see Flow),
        ``rate`` (fitted factor per step of each), the W_hh spectrum (the tied one for the RNN,
        the first layer's for the MLP), and the Pascanu bound on the rate (None for gated cells).
    """
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        layers = [_fresh_layer(config) for _ in range(config.length if config.net == "mlp" else 1)]
        refs = [reference_of(r) for r in layers]
        pairs = [reference_step(r) for r in refs]
        S = pairs[0][1]
        xs = torch.randn(config.batch_size, config.length, config.hidden_size).double()
        u = F.normalize(torch.randn(config.hidden_size).double(), dim=0)
    H = config.hidden_size
    steps = [p[0] for p in pairs] if config.net == "mlp" else [pairs[0][0]] * config.length
    s0 = torch.zeros(config.batch_size, S, dtype=torch.float64)
    result = flow(steps, s0, xs, lambda s: s[:, :H] @ u)
    spectrum = weight_spectrum(layers[0])
    gamma = GAMMA.get(config.cell)
    sigma = spectrum.get("weight_hh_l0.sigma_max")
    bound = gamma * sigma if gamma is not None and sigma is not None else None
    return _report(config.label, config.net, vars(config), result, spectrum, bound, gamma)


def probe_run(
    run_dir: Path, length: int = 100, batch_size: int = 16, seed: int = 0
) -> dict[str, Any]:
    """The same measurement on a trained run's recurrent stack (all layers, float64): inputs
    are the embeddings of random symbols of its vocabulary, the loss the cross-entropy of its
    head at the last step against a random next symbol."""
    model, vocab, config = load_model(Path(run_dir))
    model = model.double()
    ref = reference_of(model.rnn)
    step, S = reference_step(ref)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(vocab), (batch_size, length + 1), generator=g)
    with torch.no_grad():
        xs = model.embedding(ids[:, :length])  # (B, T, E)
    H, L = ref.hidden_size, ref.num_layers
    top = slice((L - 1) * H, L * H)  # the last layer's h in the flat state

    def readout(s: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model.head(s[:, top]), ids[:, length], reduction="none")

    s0 = torch.zeros(batch_size, S, dtype=torch.float64)
    result = flow([step] * length, s0, xs, readout)
    m = config.model
    gamma = GAMMA.get(m.cell) if m.num_layers == 1 else None
    spectrum = weight_spectrum(model.rnn)
    sigma = spectrum.get("weight_hh_l0.sigma_max")
    bound = gamma * sigma if gamma is not None and sigma is not None else None
    label = f"{Path(run_dir).name} ({m.cell}, trained)"
    info = {"run": str(run_dir), "cell": m.cell, "length": length, "batch_size": batch_size}
    return _report(label, "rnn", info, result, spectrum, bound, gamma)


def _report(
    label: str,
    net: str,
    config: dict[str, Any],
    result: Flow,
    spectrum: dict[str, float],
    bound: float | None,
    gamma: float | None,
) -> dict[str, Any]:
    rates = {"loss_grad": fit_rate(result.loss_grad), "jacobian": fit_rate(result.jacobian)}
    return {
        "label": label,
        "net": net,
        "config": config,
        "lags": list(range(len(result.loss_grad))),
        "loss_grad": result.loss_grad,
        "jacobian": result.jacobian,
        "rate": rates,
        "w_hh": spectrum,
        "pascanu": {
            "gamma": gamma,
            "bound_rate": bound,  # ||dh_T/dh_t|| <= bound_rate ** (T - t)
            "vanishing_certain": bound is not None and bound < 1,
        },
    }
