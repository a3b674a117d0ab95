"""Step-by-step reference cells: the equations of torch.nn.LSTM / GRU / RNN written one time
step at a time, loading the fused modules' weights unchanged, exposing every gate and state.

For the viz and the lab (training uses the fused modules). Equations as in the PyTorch docs:
LSTM  i,f,o = sigmoid(W_i* x + b_i* + W_h* h + b_h*), g = tanh(...), c' = f c + i g,
      h' = o tanh(c')                       (Hochreiter & Schmidhuber 1997, with forget gate)
GRU   r,z = sigmoid(...), n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h
RNN   h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh)
Imports nothing from rnnlab. Dropout between layers is not applied (eval-mode equations).
"""

from __future__ import annotations

import torch
import torch.nn as nn

GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": (), "rnn-relu": ()}


class ReferenceRNN(nn.Module):
    """A stack of recurrent layers evaluated step by step.

    Parameter names and shapes match torch.nn.LSTM/GRU/RNN (``weight_ih_l0``, ...), so
    ``ref.load_state_dict(fused.state_dict())`` works both ways. Batch first.

    Example:
        >>> fused = nn.LSTM(8, 16, 2, batch_first=True)
        >>> ref = ReferenceRNN.from_module(fused)
        >>> out, state, trace = ref(torch.randn(3, 5, 8), record=True)
        >>> trace["f"].shape  # forget gate: (L, B, T, H)
        torch.Size([2, 3, 5, 16])
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        if cell not in GATES:
            raise ValueError(f"cell must be one of {', '.join(GATES)}, got {cell!r}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        blocks = {"lstm": 4, "gru": 3}.get(cell, 1)
        for k in range(num_layers):
            fan_in = input_size if k == 0 else hidden_size
            bound = hidden_size**-0.5
            for name, shape in (
                (f"weight_ih_l{k}", (blocks * hidden_size, fan_in)),
                (f"weight_hh_l{k}", (blocks * hidden_size, hidden_size)),
                (f"bias_ih_l{k}", (blocks * hidden_size,)),
                (f"bias_hh_l{k}", (blocks * hidden_size,)),
            ):
                self.register_parameter(
                    name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                )

    @classmethod
    def from_module(cls, module: nn.RNNBase) -> ReferenceRNN:
        """The reference twin of a fused module, with a copy of its weights."""
        if isinstance(module, nn.LSTM):
            cell = "lstm"
        elif isinstance(module, nn.GRU):
            cell = "gru"
        else:
            cell = "rnn-relu" if module.nonlinearity == "relu" else "rnn"
        if not module.batch_first or module.bidirectional or getattr(module, "proj_size", 0):
            raise ValueError("only batch-first, unidirectional modules without projections")
        ref = cls(cell, module.input_size, module.hidden_size, module.num_layers)
        p = next(module.parameters())
        ref = ref.to(device=p.device, dtype=p.dtype)
        ref.load_state_dict(module.state_dict())
        return ref

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...] | None = None,
        record: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
        """Args:
            x: (B, T, E) inputs.
            state: (h,) or (h, c), each (L, B, H); None for zeros.
            record: also return every gate and state at every step.

        Returns:
            out (B, T, H) of the last layer, the final state, and (if ``record``) a dict of
            (L, B, T, H) tensors: the gates ("i", "f", "g", "o" | "r", "z", "n"), "h" and, for
            LSTM, "c"; an empty dict otherwise.
        """
        B, T, _ = x.shape
        L, H = self.num_layers, self.hidden_size
        if state is None:
            zeros = x.new_zeros(L, B, H)
            state = (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)
        hs = list(state[0].unbind(0))
        cs = list(state[1].unbind(0)) if self.cell == "lstm" else []
        names = GATES[self.cell] + (("h", "c") if self.cell == "lstm" else ("h",))
        trace: dict[str, list[list[torch.Tensor]]] = {n: [[] for _ in range(L)] for n in names}
        layer_in = x
        for k in range(L):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            gi_all = layer_in @ w_ih.T + b_ih  # (B, T, G*H): inputs projected all at once
            outs = []
            for t in range(T):
                gi, gh = gi_all[:, t], hs[k] @ w_hh.T + b_hh  # (B, G*H)
                if self.cell == "lstm":
                    i, f, g, o = (gi + gh).chunk(4, dim=1)
                    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                    cs[k] = f * cs[k] + i * g
                    hs[k] = o * cs[k].tanh()
                    gates = {"i": i, "f": f, "g": g, "o": o, "c": cs[k]}
                elif self.cell == "gru":
                    ir, iz, in_ = gi.chunk(3, dim=1)
                    hr, hz, hn = gh.chunk(3, dim=1)
                    r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
                    n = (in_ + r * hn).tanh()
                    hs[k] = (1 - z) * n + z * hs[k]
                    gates = {"r": r, "z": z, "n": n}
                else:
                    pre = gi + gh
                    hs[k] = pre.tanh() if self.cell == "rnn" else pre.relu()
                    gates = {}
                outs.append(hs[k])
                if record:
                    for n, v in (gates | {"h": hs[k]}).items():
                        trace[n][k].append(v.detach())
            layer_in = torch.stack(outs, 1)  # (B, T, H)
        final = (torch.stack(hs), torch.stack(cs)) if self.cell == "lstm" else (torch.stack(hs),)
        recorded = (
            {
                n: torch.stack([torch.stack(steps, 1) for steps in per_layer])
                for n, per_layer in trace.items()
            }
            if record
            else {}
        )
        return layer_in, final, recorded
