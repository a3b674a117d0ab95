"""Step-by-step reference cells: the equations of torch.nn.LSTM / GRU / RNN written one time
step at a time, loading the fused modules' weights unchanged, exposing every gate and state.

ReferenceRNN is for the viz and the lab (training uses the fused modules); StepDecoder is the
fast one-character step that sampling uses. Equations as in the PyTorch docs:
LSTM  i,f,o = sigmoid(W_i* x + b_i* + W_h* h + b_h*), g = tanh(...), c' = f c + i g,
      h' = o tanh(c')                       (Hochreiter & Schmidhuber 1997, with forget gate)
GRU   r,z = sigmoid(...), n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h
RNN   h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh)
minGRU / minLSTM (scan.py) have no fused twin to mirror: ``reference_of`` and
``StepDecoder.from_model`` hand out scan.py's own reference and step for them.
Imports only scan from rnnlab. Dropout between layers is not applied (eval-mode equations).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .scan import SCAN_GATES, MinRNNStack, ScanReference, coefficients

FUSED_GATES = {"lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n"), "rnn": (), "rnn-relu": ()}
GATES = FUSED_GATES | SCAN_GATES


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
        if cell not in FUSED_GATES:
            raise ValueError(f"cell must be one of {', '.join(FUSED_GATES)}, got {cell!r}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.input_size = input_size
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


def reference_of(module: nn.Module) -> ReferenceRNN | ScanReference:
    """The step-by-step twin of a recurrent stack (weights copied for a fused module, shared
    for a MinRNNStack, whose own parallel pass already exposes every gate)."""
    if isinstance(module, MinRNNStack):
        return ScanReference(module)
    return ReferenceRNN.from_module(module)


class PackedWeight:
    """A matrix W (N, K) applied as y = W x, stored in float32/float64, bfloat16, or int8 with one
    scale per row (weight-only quantization: a quarter of the bytes, approximate)."""

    def __init__(self, w: torch.Tensor, dtype: torch.dtype | None = None) -> None:
        if dtype == torch.int8:
            scale = w.abs().amax(1).clamp_min(1e-12) / 127  # (N,)
            self.q = torch.round(w / scale[:, None]).to(torch.int8).contiguous()
            self.scale = scale.to(torch.bfloat16)
            self.w = None
        else:
            self.w = w.detach().to(dtype or w.dtype).contiguous()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(K,) -> (N,) or (B, K) -> (B, N); the result is in the storage dtype (bf16 for int8)."""
        if self.w is None:
            y = torch._weight_int8pack_mm(x.reshape(-1, x.size(-1)).bfloat16(), self.q, self.scale)
            return y.reshape(*x.shape[:-1], -1)
        x = x.to(self.w.dtype)
        if x.dim() == 1:
            return torch.mv(self.w, x)
        return torch.mv(self.w, x[0]).unsqueeze(0) if x.size(0) == 1 else torch.mm(x, self.w.T)


class StepDecoder:
    """One recurrent step at a time from a CharLM's weights, equal to ``CharLM.forward``.

    Per layer one matrix-vector product on [x, h] with [W_ih; W_hh]; layer 0's input projection
    of every symbol is precomputed as a (V, G*H) table, so the embedding costs a row lookup.
    LSTM gates are reordered to (i, f, o, g) so one sigmoid covers the three sigmoid gates.
    With ``dtype=torch.bfloat16`` the recurrent weights are kept in bf16 (half the bytes to read
    per character, which is what bounds batch-1 speed); state and gate math stay in float32.
    """

    def __init__(
        self,
        cell: str,
        rnn_params: dict[str, torch.Tensor],
        embedding: torch.Tensor,
        head_weight: torch.Tensor,
        head_bias: torch.Tensor,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Args:
        cell: "lstm", "gru", "rnn" or "rnn-relu".
        rnn_params: the fused module's named parameters (weight_ih_l0, ...).
        embedding: (V, E) input embedding; head_weight (V, H), head_bias (V,): the output.
        dtype: keep the recurrent weights in this dtype (e.g. torch.bfloat16), or None.
        """
        p = {n: t.detach() for n, t in rnn_params.items()}
        self.cell = cell
        self.H = H = p["weight_hh_l0"].size(1)
        self.L = sum(1 for n in p if n.startswith("weight_hh_l"))
        if self.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g)
            order = torch.cat(
                [torch.arange(2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
            ).to(p["bias_ih_l0"].device)
            p = {n: t.index_select(0, order) for n, t in p.items()}
        gru = self.cell == "gru"
        with torch.no_grad():
            emb = embedding.detach()
            self.table = emb @ p["weight_ih_l0"].T + p["bias_ih_l0"]  # (V, G*H)
            if not gru:
                self.table += p["bias_hh_l0"]
            # every weight (N, K): out = W @ x; only what this cell's step reads is kept
            layers = range(1, self.L)
            self.w_hh = [PackedWeight(p[f"weight_hh_l{i}"], dtype) for i in range(self.L)]
            if gru:  # separate input and hidden projections, as n needs r * (W_hn h + b_hn)
                self.w_ih = [None] + [PackedWeight(p[f"weight_ih_l{i}"], dtype) for i in layers]
                self.b_ih = [p[f"bias_ih_l{i}"] for i in range(self.L)]
                self.b_hh = [p[f"bias_hh_l{i}"] for i in range(self.L)]
            else:  # one product per layer on [x; h]
                del self.w_hh[1:]
                self.w_cat = [None] + [  # (G*H, 2H)
                    PackedWeight(torch.cat([p[f"weight_ih_l{i}"], p[f"weight_hh_l{i}"]], 1), dtype)
                    for i in layers
                ]
                self.b = [p[f"bias_ih_l{i}"] + p[f"bias_hh_l{i}"] for i in range(self.L)]
            self.head_w = head_weight.detach().contiguous()  # (V, H)
            self.head_b = head_bias.detach().clone()

    @classmethod
    def from_model(
        cls, model: nn.Module, dtype: torch.dtype | None = None
    ) -> StepDecoder | ScanDecoder | EnsembleDecoder:
        """From a CharLM (anything with .config.cell, .rnn, .embedding and .head); a minGRU /
        minLSTM model gets a ScanDecoder (the same step for those blocks), an Ensemble (with
        .members) an EnsembleDecoder."""
        members = getattr(model, "members", None)
        if members is not None:
            return EnsembleDecoder([cls.from_model(m, dtype) for m in members], model.mix)
        if isinstance(model.rnn, MinRNNStack):
            return ScanDecoder(model, dtype)
        return cls(
            model.config.cell,
            dict(model.rnn.named_parameters()),
            model.embedding.weight,
            model.head.weight,
            model.head.bias,
            dtype,
        )

    def step(
        self, token: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Args:
            token: (B,) int64 ids of the current characters.
            state: as CharLM's, each (L, B, H).

        Returns:
            logits (B, V) for the next character, and the new state.
        """
        layers = [list(s.unbind(0)) for s in state]
        logits = self.advance(token, layers)
        return logits, tuple(torch.stack(s) for s in layers)

    def advance(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """``step`` on per-layer lists ``[hs]`` or ``[hs, cs]``, updated in place: the hot loop
        of generation, written for few tensor operations per character."""
        if self.cell == "lstm" and token.size(0) == 1:
            return self._advance_lstm_1(int(token), layers)
        return torch.addmm(self.head_b, self.hidden(token, layers), self.head_w.T)  # (B, V)

    def hidden(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """``advance`` without the head: the (B, H) vector it reads (``CharLM.features``)."""
        H, hs = self.H, layers[0]
        x = None
        for i in range(self.L):
            h = hs[i]
            if self.cell == "gru":
                gi = (
                    torch.index_select(self.table, 0, token)
                    if i == 0
                    else self.b_ih[i] + self.w_ih[i](x)
                )  # (B, 3H)
                gh = self.b_hh[i] + self.w_hh[i](h)
                rz = torch.sigmoid(gi[:, : 2 * H] + gh[:, : 2 * H])
                n = torch.tanh(gi[:, 2 * H :] + rz[:, :H] * gh[:, 2 * H :])
                h = torch.addcmul(n, rz[:, H:], h - n)  # (1 - z) * n + z * h
            else:
                if i == 0:
                    g = torch.index_select(self.table, 0, token) + self.w_hh[0](h)
                else:
                    g = self.b[i] + self.w_cat[i](torch.cat([x, h], 1))  # (B, G*H)
                if self.cell == "lstm":
                    sig = torch.sigmoid(g[:, : 3 * H])  # i, f, o
                    c = torch.addcmul(
                        sig[:, H : 2 * H] * layers[1][i], sig[:, :H], torch.tanh(g[:, 3 * H :])
                    )
                    h = sig[:, 2 * H :] * torch.tanh(c)
                    layers[1][i] = c
                else:
                    h = torch.tanh(g) if self.cell == "rnn" else torch.relu(g)
            hs[i] = h
            x = h
        return x

    def _advance_lstm_1(self, token: int, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """LSTM at batch 1 on 1-D vectors: about a dozen tensor calls per layer, so the cost is
        mostly reading the weights once."""
        H, hs, cs = self.H, layers[0], layers[1]
        x = None
        for i in range(self.L):
            h = hs[i][0]  # (H,)
            if i == 0:
                g = self.table[token] + self.w_hh[0](h)
            else:
                g = self.b[i] + self.w_cat[i](torch.cat([x, h]))  # (4H,) as (i, f, o, g)
            sig = torch.sigmoid(g[: 3 * H])
            c = torch.addcmul(sig[H : 2 * H] * cs[i][0], sig[:H], torch.tanh(g[3 * H :]))
            x = sig[2 * H :] * torch.tanh(c)
            hs[i], cs[i] = x[None], c[None]
        return torch.addmv(self.head_b, self.head_w, x)[None]  # (1, V)


class ScanDecoder:
    """StepDecoder for a CharLM whose stack is a scan.MinRNNStack (minGRU / minLSTM blocks): one
    character in O(1), equal to ``CharLM.forward``, its matrices kept like StepDecoder's
    (``dtype`` None: as they are; bfloat16 or int8 for speed) while the state, the residual
    stream, the norms and the gate arithmetic stay in float32 (the feed-forward's hidden layer
    stays in the weights' dtype, GELU included). The input projection of every symbol is a
    (V, H) table. With token shift the state is [hs, prevs], as ``MinRNNStack.step``'s."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None) -> None:
        stack = model.rnn
        self.cell = stack.cell
        with torch.no_grad():
            emb = model.embedding.weight.detach()
            self.table = emb @ stack.project.weight.detach().T + stack.project.bias.detach()
            self.layers = []
            for layer in stack.layers:
                ff = None
                if layer.ff is not None:
                    norm, up, _, down = layer.ff
                    ff = (_norm(norm), _packed(up, dtype), _packed(down, dtype))
                mix = None if layer.mix is None else layer.mix.detach()  # (H,)
                pre = (*_norm(layer.norm), mix)
                self.layers.append(
                    (pre, _packed(layer.gates, dtype), _packed(layer.out, dtype), ff)
                )
            self.norm = _norm(stack.norm)
            self.head_w = model.head.weight.detach().contiguous()
            self.head_b = model.head.bias.detach().clone()

    @torch.no_grad()
    def advance(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """token (B,), layers [hs] (with token shift [hs, prevs]), each a list of L (B, H)
        states, updated in place -> logits (B, V)."""
        return torch.addmm(self.head_b, self.hidden(token, layers), self.head_w.T)  # (B, V)

    @torch.no_grad()
    def hidden(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """``advance`` without the head: the (B, H) vector it reads (``CharLM.features``)."""
        hs = layers[0]
        y = torch.index_select(self.table, 0, token).to(hs[0].dtype)  # (B, H) the stream
        for i, ((*norm, mix), gates, out, ff) in enumerate(self.layers):
            n = _rms(norm, y)
            if mix is not None:  # token shift: n_t + mu (n_{t-1} - n_t), n_t carried on
                n, layers[1][i] = n + mix.to(n.dtype) * (layers[1][i] - n), n
            a, b, _ = coefficients(self.cell, _linear(gates, n).to(hs[i].dtype))
            hs[i] = torch.addcmul(b, a, hs[i])
            y = y + _linear(out, hs[i])  # a bf16 product is promoted to the stream's float32
            if ff is not None:
                ff_norm, up, down = ff
                y = y + _linear(down, F.gelu(_linear(up, _rms(ff_norm, y))))
        return _rms(self.norm, y)

    step = StepDecoder.step  # the same wrapper around ``advance``


class EnsembleDecoder:
    """StepDecoder for a model.Ensemble: each member's step on its own share of the flat state,
    then the log of their averaged probabilities, as ``Ensemble.forward`` computes it."""

    def __init__(
        self,
        members: list[StepDecoder | ScanDecoder],
        mix: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """``mix``: (K, B, V) members' logits -> (B, V), the Ensemble's (model.mix_logits)."""
        self.members, self.mix = members, mix

    @torch.no_grad()
    def advance(self, token: torch.Tensor, layers: list[list[torch.Tensor]]) -> torch.Tensor:
        """token (B,), layers: the members' per-layer lists one after the other, updated in
        place -> logits (B, V)."""
        n = len(layers) // len(self.members)
        logits = torch.stack(
            [m.advance(token, layers[k * n : (k + 1) * n]) for k, m in enumerate(self.members)]
        )  # (K, B, V)
        return self.mix(logits)

    step = StepDecoder.step


def _packed(linear: nn.Linear, dtype: torch.dtype | None) -> tuple[PackedWeight, torch.Tensor]:
    """The weights as ``PackedWeight``, the bias in the dtype of their products."""
    w = PackedWeight(linear.weight.detach(), dtype)
    return w, linear.bias.detach().to(torch.bfloat16 if w.w is None else w.w.dtype)


def _norm(norm: nn.RMSNorm) -> tuple[torch.Tensor, float]:
    return norm.weight.detach(), norm.eps


def _rms(norm: tuple[torch.Tensor, float], x: torch.Tensor) -> torch.Tensor:
    """nn.RMSNorm's arithmetic without the module call (the decoder's hot loop)."""
    weight, eps = norm
    return torch.rms_norm(x, weight.shape, weight, eps)


def _linear(packed: tuple[PackedWeight, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """y = W x + b in the weights' dtype (bfloat16 for int8): one fused product and bias where
    the weights are float (the hot loop of the scan decoder)."""
    w, bias = packed
    if w.w is None:
        return w(x) + bias
    return torch.addmm(bias, x.to(w.w.dtype), w.w.T)
