"""minGRU and minLSTM (Feng, Tung, Ahmed, Hajimirsadeghi & Bengio 2024, "Were RNNs All We
Needed?", arXiv:2410.01201): recurrences whose gates read only the input, so h_t = a_t h_{t-1} + b_t
is linear in h and a whole chunk is computed at once. Imports nothing from rnnlab.

Cells (section 3 of the paper; the log-space forms of its appendix, with g(x) = x + 0.5 for
x >= 0 and sigmoid(x) otherwise, so the candidate is positive):
  minGRU   z = sigmoid(k_z),  h~ = g(k_h),   h_t = (1 - z) h_{t-1} + z h~
  minLSTM  f = sigmoid(k_f), i = sigmoid(k_i), f' = f / (f + i), i' = i / (f + i),
           h_t = f' h_{t-1} + i' h~      (computed as f' = sigmoid(log f - log i), stable)
where [k_z, k_h] or [k_f, k_i, k_h] = W x + b: one large (B*T)-row product per layer and chunk.

Two scans of the same recurrence:
- ``linear_scan``: the element-wise recurrence walked over T in a tight loop, forward and backward
  written by hand (one fused multiply-add per step on a (B, H) slab). On a CPU it beats the
  log-space scan ~20x (measured on the 2-core EPYC: 32x256x512 float32, 34 ms forward and
  backward against 580 ms for torch.logcumsumexp), and all matrix work stays outside it.
- ``log_space_scan``: Heinsen 2023 ("Efficient Parallelization of a Ubiquitous Sequential
  Computation", eq. 2): log h_t = a*_t + log(h_0 + sum_{s<=t} exp(log b_s - a*_s)),
  a*_t = sum_{s<=t} log a_s, with torch.logcumsumexp: one parallel kernel, used on CUDA.

The block around each cell, as in the reference implementation (lucidrains/minGRU-pytorch
``minGRULM``): pre-norm residual, x + W_o cell(RMSNorm(x)), then an optional feed-forward
x + FF(RMSNorm(x)); a final RMSNorm on the top. The state is the cell's h per layer, (L, B, H).

Token shift (optional; RWKV, Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era",
arXiv:2305.13048, section 4.1 "time-mixing", eq. 11-13): the gates read a learned per-channel mix
of this step's normed input and the previous step's, u_t = n_t + mu (n_{t-1} - n_t), so a block
sees a bigram of its input before its recurrence. n_{t-1} at the first step of a chunk is carried
from the previous chunk (zeros at the start of a text), so the state becomes (h, prev), each
(L, B, H), as an LSTM's (h, c).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

SCAN_CELLS = ("mingru", "minlstm")
SCAN_GATES = {"mingru": ("z",), "minlstm": ("f", "i")}


def g(x: torch.Tensor) -> torch.Tensor:
    """Feng et al.'s positive candidate: x + 0.5 for x >= 0, sigmoid(x) below (continuous)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def coefficients(
    cell: str, k: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The recurrence h_t = a_t h_{t-1} + b_t of a cell from its projected input.

    Args:
        cell: "mingru" or "minlstm".
        k: (..., G*H) the layer's input projection, [k_z, k_h] or [k_f, k_i, k_h].

    Returns:
        a, b (..., H) and the gates by name ({"z"} or {"f", "i"}), each (..., H).
    """
    if cell == "mingru":
        k_z, k_h = k.chunk(2, dim=-1)
        z = torch.sigmoid(k_z)
        return 1 - z, z * g(k_h), {"z": z}
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    a = torch.sigmoid(F.logsigmoid(k_f) - F.logsigmoid(k_i))  # f / (f + i)
    return a, (1 - a) * g(k_h), {"f": torch.sigmoid(k_f), "i": torch.sigmoid(k_i)}


def log_coefficients(cell: str, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log a and log b of ``coefficients``, computed without leaving log space."""
    if cell == "mingru":
        k_z, k_h = k.chunk(2, dim=-1)
        return -F.softplus(k_z), -F.softplus(-k_z) + log_g(k_h)
    k_f, k_i, k_h = k.chunk(3, dim=-1)
    d = F.logsigmoid(k_f) - F.logsigmoid(k_i)
    return -F.softplus(-d), -F.softplus(d) + log_g(k_h)


class _LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t over time-major (T, B, H) tensors; h0 (B, H)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(b)
        h = h0
        for t in range(a.size(0)):
            h = torch.addcmul(b[t], a[t], h, out=out[t])
        ctx.save_for_backward(a, out, h0)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, out, h0 = ctx.saved_tensors
        T = a.size(0)
        # dL/dh_t summed over every later step: d_t = grad_t + a_{t+1} d_{t+1}; db_t = d_t
        db = torch.empty_like(grad)
        acc = torch.add(grad[T - 1], 0, out=db[T - 1])
        for t in range(T - 2, -1, -1):
            acc = torch.addcmul(grad[t], a[t + 1], acc, out=db[t])
        da = torch.empty_like(a)  # da_t = d_t h_{t-1}
        torch.mul(db[1:], out[:-1], out=da[1:])
        torch.mul(db[0], h0, out=da[0])
        return da, db, a[0] * db[0]


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Every h_t of h_t = a_t h_{t-1} + b_t, walked over time (see the module docstring).

    Args:
        a, b: (T, B, H) time-major coefficients; h0: (B, H) the state before the first step.

    Returns:
        (T, B, H) the states after each step.
    """
    dtype = torch.promote_types(a.dtype, h0.dtype)
    a, b, h0 = (t.to(dtype).contiguous() for t in (a, b, h0))
    return _LinearScan.apply(a, b, h0)


def _loop_scan(a: torch.Tensor, b: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The recurrence as a TorchScript loop: what ONNX export records (an ONNX Loop over any T),
    where tracing ``linear_scan`` would unroll it for the example's length only."""
    outs: list[torch.Tensor] = []
    for t in range(a.size(0)):
        h = a[t] * h + b[t]
        outs.append(h)
    return torch.stack(outs)


_scripted_loop_scan = None


def export_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """``linear_scan`` for ONNX export (scripted on first use)."""
    global _scripted_loop_scan
    if _scripted_loop_scan is None:
        _scripted_loop_scan = torch.jit.script(_loop_scan)
    return _scripted_loop_scan(a, b, h0)


def log_space_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The same h_t from log a and log b (b > 0, h0 >= 0), in parallel over T (Heinsen 2023).

    Args:
        log_a, log_b: (T, B, H) time-major; h0: (B, H), non-negative.

    Returns:
        (T, B, H) the states after each step.
    """
    a_star = torch.cumsum(log_a, 0)  # (T, B, H)
    log_h0 = torch.log(h0.to(log_a.dtype)).unsqueeze(0)  # (1, B, H); log 0 = -inf is fine
    terms = torch.cat([log_h0, log_b - a_star], 0)  # (T + 1, B, H)
    return torch.exp(a_star + torch.logcumsumexp(terms, 0)[1:])


class MinRNNLayer(nn.Module):
    """One residual block: x + W_o cell(RMSNorm(x)) [+ FF(RMSNorm(.))], time-major (T, B, H).
    With ``token_shift``, the cell's gates read RMSNorm(x) shifted by one step (module docstring);
    ``depth`` = layer index / number of layers sets its initial mix."""

    def __init__(
        self,
        cell: str,
        size: int,
        dropout: float = 0.0,
        ff_mult: int = 0,
        token_shift: bool = False,
        depth: float = 0.0,
    ) -> None:
        super().__init__()
        self.cell = cell
        self.norm = nn.RMSNorm(size, eps=1e-6)
        self.gates = nn.Linear(size, (2 if cell == "mingru" else 3) * size)
        self.out = nn.Linear(size, size)
        self.ff = (
            nn.Sequential(
                nn.RMSNorm(size, eps=1e-6),
                nn.Linear(size, ff_mult * size),
                nn.GELU(),
                nn.Linear(ff_mult * size, size),
            )
            if ff_mult
            else None
        )
        self.drop = nn.Dropout(dropout)
        # RWKV-4's per-channel ramp (its time_mix_k = (i/H)^(1 - depth), here as the weight of
        # the previous step, 1 - that): in the first layer channel 0 reads only the previous
        # character and the last almost only the current one, the mean at 0.5; deeper layers
        # start closer to no shift. A ramp rather than one constant 0.5 gives every channel a
        # different bigram mix from the start, as RWKV found worth doing.
        self.mix = (
            nn.Parameter(1 - (torch.arange(size) / size) ** (1.0 - depth))  # (H,)
            if token_shift
            else None
        )

    def forward(
        self,
        x: torch.Tensor,
        h0: torch.Tensor,
        prev: torch.Tensor | None = None,
        record: bool = False,
        parallel: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Args:
            x: (T, B, H) float32 residual stream; h0: (B, H) the cell's state.
            prev: (B, H) the normed input of the step before x[0], read with token shift (None:
                zeros, the start of a text); ignored without it.
            record: also return the gates and h at every step.
            parallel: True: the log-space scan; False: the sequential one; None: log space on
                CUDA (one kernel), sequential on a CPU (measured faster there).

        Returns:
            the new stream (T, B, H), the state after the last step (B, H), the normed input of
            the last step (B, H, h0's dtype: the next chunk's ``prev``; None without token
            shift), and the record.
        """
        n = self.norm(x)  # (T, B, H)
        if self.mix is not None:
            before = torch.zeros_like(n[:1]) if prev is None else prev.to(n.dtype)[None]
            shifted = torch.cat([before, n[:-1]])  # (T, B, H): n_{t-1}
            n_in = n + self.mix.to(n.dtype) * (shifted - n)
        else:
            n_in = n
        k = self.gates(n_in).to(h0.dtype)  # (T, B, G*H); the scan runs in h0's dtype
        if parallel if parallel is not None else k.is_cuda:
            log_a, log_b = log_coefficients(self.cell, k)
            h = log_space_scan(log_a, log_b, h0)
            gates = coefficients(self.cell, k)[2] if record else {}
        else:
            a, b, gates = coefficients(self.cell, k)
            # one step (sampling, the lab's probes, which differentiate it with torch.func):
            # plain autograd; ONNX export: a loop over any T; else the hand-written scan
            if torch.jit.is_tracing():
                h = export_scan(a, b, h0)
            else:
                h = torch.addcmul(b, a, h0) if k.size(0) == 1 else linear_scan(a, b, h0)
        y = x + self.drop(self.out(h)).to(x.dtype)
        if self.ff is not None:
            y = y + self.drop(self.ff(y)).to(x.dtype)
        recorded = ({g: v.detach() for g, v in gates.items()} | {"h": h.detach()}) if record else {}
        last = n[-1].to(h0.dtype) if self.mix is not None else None  # the next chunk's prev
        return y, h[-1], last, recorded


ScanState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # h, or (h, prev) with token shift


class MinRNNStack(nn.Module):
    """A stack of minGRU or minLSTM blocks, called like a batch-first nn.RNN (with
    ``token_shift``, like an nn.LSTM: the state is a pair (h, prev), as (h, c)).

    Example:
        >>> stack = MinRNNStack("mingru", 8, 16, 2)
        >>> out, h = stack(torch.randn(3, 5, 8))
        >>> out.shape, h.shape
        (torch.Size([3, 5, 16]), torch.Size([2, 3, 16]))
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        ff_mult: int = 0,
        token_shift: bool = False,
    ) -> None:
        super().__init__()
        if cell not in SCAN_CELLS:
            raise ValueError(f"cell must be one of {', '.join(SCAN_CELLS)}, got {cell!r}")
        self.cell, self.input_size = cell, input_size
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.token_shift = token_shift
        self.project = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(
            MinRNNLayer(cell, hidden_size, dropout, ff_mult, token_shift, i / num_layers)
            for i in range(num_layers)
        )
        self.norm = nn.RMSNorm(hidden_size, eps=1e-6)

    def forward(
        self, x: torch.Tensor, h: ScanState | None = None
    ) -> tuple[torch.Tensor, ScanState]:
        """Args:
            x: (B, T, E) inputs; h: (L, B, H) the state, or None for zeros; with token shift
                the pair (h, prev), each (L, B, H).

        Returns:
            out (B, T, H) and the state after the last step, of the same form.
        """
        out, h_n, _ = self.run(x, h)
        return out, h_n

    def run(
        self,
        x: torch.Tensor,
        h: ScanState | None = None,
        record: bool = False,
        parallel: bool | None = None,
    ) -> tuple[torch.Tensor, ScanState, dict[str, torch.Tensor]]:
        """``forward``, and with ``record`` every gate and h as (L, B, T, H) tensors."""
        B = x.size(0)
        # the stream and the scan run in float32 (float64 for a float64 model), even under
        # autocast, where only the matrix products drop to bf16
        state_dtype = torch.promote_types(self.project.weight.dtype, torch.float32)
        if h is None:
            zeros = x.new_zeros(self.num_layers, B, self.hidden_size, dtype=state_dtype)
            h = (zeros, zeros) if self.token_shift else zeros
        h, prev = h if self.token_shift else (h, None)
        prevs = prev.to(state_dtype).unbind(0) if prev is not None else [None] * self.num_layers
        y = self.project(x.transpose(0, 1)).to(state_dtype)  # (T, B, H) time-major stream
        finals, lasts, traces = [], [], []
        for layer, h0, p0 in zip(self.layers, h.to(state_dtype).unbind(0), prevs, strict=True):
            y, h_last, n_last, trace = layer(y, h0, p0, record, parallel)
            finals.append(h_last)
            lasts.append(n_last)
            traces.append(trace)
        out = self.norm(y).transpose(0, 1)  # (B, T, H)
        recorded = (
            {n: torch.stack([t[n].transpose(0, 1) for t in traces]) for n in traces[0]}
            if record
            else {}
        )
        h_n = torch.stack(finals).to(h.dtype)  # (L, B, H)
        new: ScanState = (h_n, torch.stack(lasts).to(h.dtype)) if self.token_shift else h_n
        return out, new, recorded

    @torch.no_grad()
    def step(self, x: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """One character, O(1): x (B, E) -> out (B, H); ``layers`` = [hs] or, with token shift,
        [hs, prevs], each a list of L (B, H) tensors, updated in place. The same arithmetic as
        ``run`` at T = 1, without the time loop's bookkeeping."""
        hs = layers[0]
        y = self.project(x).to(hs[0].dtype)  # (B, H)
        for i, layer in enumerate(self.layers):
            n = layer.norm(y)
            if layer.mix is not None:
                n, layers[1][i] = n + layer.mix * (layers[1][i] - n), n
            a, b, _ = coefficients(self.cell, layer.gates(n).to(hs[i].dtype))
            hs[i] = torch.addcmul(b, a, hs[i])
            y = y + layer.out(hs[i])
            if layer.ff is not None:
                y = y + layer.ff(y)
        return self.norm(y)


def scan_flops_per_char(cell: str, input_size: int, hidden_size: int, num_layers: int) -> float:
    """Forward multiply-adds x2 per character of a stack's matrix products (no FF)."""
    G = 2 if cell == "mingru" else 3
    per_layer = G * hidden_size * hidden_size + hidden_size * hidden_size
    return 2.0 * (input_size * hidden_size + num_layers * per_layer)


class ScanReference(nn.Module):
    """cells.ReferenceRNN's interface over a MinRNNStack (sharing its weights): for the viz and
    the lab, ``forward(x, (h,), record) -> (out, (h,), trace)`` with trace {gates..., "h"};
    with token shift the state is (h, prev), as a CharLM's."""

    def __init__(self, stack: MinRNNStack) -> None:
        super().__init__()
        self.stack = stack
        self.cell, self.input_size = stack.cell, stack.input_size
        self.hidden_size, self.num_layers = stack.hidden_size, stack.num_layers

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...] | None = None,
        record: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        if state is not None:
            state = tuple(state) if self.stack.token_shift else state[0]
        out, new, recorded = self.stack.run(x, state, record)
        return out, new if isinstance(new, tuple) else (new,), recorded
