"""CharLM: embedding -> stack of fused recurrent layers (nn.LSTM / nn.GRU / nn.RNN) -> linear head.

Training runs the fused PyTorch modules (oneDNN on CPU, cuDNN on GPU). Also the pieces every
recurrent network here shares: layer construction, init presets, gradient clipping, and where
(device, dtype) a model runs. Imports only config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CLIP_MODES, ConfigError, ModelConfig
from .scan import SCAN_CELLS, MinRNNStack, scan_flops_per_char

State = tuple[torch.Tensor, ...]  # (h, c) for LSTM, (h, prev) with token shift, else (h,)


class CharLM(nn.Module):
    """A character-level language model.

    Example:
        >>> lm = CharLM(ModelConfig(vocab_size=65, hidden_size=16, num_layers=1))
        >>> logits, state = lm(torch.zeros(2, 5, dtype=torch.long))
        >>> logits.shape
        torch.Size([2, 5, 65])
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise ValueError("ModelConfig.vocab_size must be set before building a CharLM")
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = recurrent_stack(config, config.embedding_size)
        self.drop = nn.Dropout(config.dropout)
        self.drop_in = nn.Dropout(config.embedding_dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    @property
    def num_states(self) -> int:
        return 2 if self.config.cell == "lstm" or self.config.token_shift else 1

    @property
    def parallel_in_time(self) -> bool:
        """True when one call computes a long text at matrix speed even at batch 1 (minGRU,
        minLSTM); a fused LSTM/GRU/RNN then walks one small product per character."""
        return self.config.cell in SCAN_CELLS

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros: the state at the start of a text."""
        c = self.config
        shape = (c.num_layers, batch_size, c.hidden_size)
        device = device if device is not None else self.head.weight.device
        dtype = self.head.weight.dtype
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(self.num_states))

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Args:
            ids: (B, T) int64 character ids.
            state: the state returned by the previous call, or None for zeros.

        Returns:
            logits (B, T, V) and the state after the last step.
        """
        out, new_state = self.features(ids, state)
        logits = self.head(self.drop(out))  # (B, T, V)
        return logits, new_state

    def features(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``forward`` without the head: what it reads, (B, T, H), and the state after."""
        x = self.drop_in(self.embedding(ids))  # (B, T, E)
        if state is None:
            state = self.init_state(ids.size(0), ids.device)
        # under autocast the LSTM runs (and returns its state) in bf16; the carried state keeps
        # the model's dtype, which is exact both ways, so it is one type wherever it is saved
        carried = state if self.num_states == 2 else state[0]
        if self.training and self.config.weight_drop > 0:
            from torch.func import functional_call  # only where weight drop is used

            out, new_state = functional_call(self.rnn, self._dropped_weights(), (x, carried))
        else:
            out, new_state = self.rnn(x, carried)  # (B, T, H)
        new_state = new_state if isinstance(new_state, tuple) else (new_state,)
        return out, tuple(s.to(self.head.weight.dtype) for s in new_state)

    def _dropped_weights(self) -> dict[str, torch.Tensor]:
        """DropConnect on the recurrent matrices (AWD-LSTM's weight drop, Merity et al. 2017):
        one mask per step for every stream and time step, the rest of the weights as they are.
        The fused module runs with them in place of its own (torch.func.functional_call)."""
        p = self.config.weight_drop
        return {
            name: F.dropout(w, p, training=True) if name.startswith("weight_hh") else w
            for name, w in self.rnn.named_parameters()
        }


def mix_logits(logits: torch.Tensor) -> torch.Tensor:
    """(K, ..., V) members' logits -> (..., V) log of their averaged probabilities, float32."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return torch.logsumexp(logp, dim=0) - math.log(logits.size(0))


class Ensemble(nn.Module):
    """``config.members`` CharLMs of one architecture, each initialized apart and trained on its
    own loss; the model is their averaged prediction, p(x) = mean_k p_k(x), returned as its
    log (valid logits: softmax gives p back).

    Averaging independently trained networks is the classic way to turn more compute into a
    better model of a small text (the plan's MEMBER_EPOCHS: two LSTMs that read tiny
    Shakespeare nine times each predict its validation split at 1.398 nats/char where each alone
    is at 1.424). The state is the members' states one after the other, as one flat tuple, so
    everything that carries a CharLM's state carries this one.

    Example:
        >>> e = Ensemble(ModelConfig(vocab_size=65, hidden_size=16, num_layers=1, members=2))
        >>> logits, state = e(torch.zeros(2, 5, dtype=torch.long))
        >>> logits.shape, len(state)
        (torch.Size([2, 5, 65]), 2)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(CharLM(member_config(config)) for _ in range(config.members))

    @property
    def num_states(self) -> int:
        return self.members[0].num_states * len(self.members)

    @property
    def parallel_in_time(self) -> bool:
        return self.members[0].parallel_in_time

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        return tuple(s for m in self.members for s in m.init_state(batch_size, device))

    def split(self, state: State | None) -> list[State | None]:
        """The flat state as one state per member."""
        if state is None:
            return [None] * len(self.members)
        n = self.members[0].num_states
        return [tuple(state[k * n : (k + 1) * n]) for k in range(len(self.members))]

    def forward(
        self, ids: torch.Tensor, state: State | None = None, separate: bool = False
    ) -> tuple[torch.Tensor, State]:
        """As ``CharLM.forward``: the logits are the log of the members' averaged probabilities
        (float32). With ``separate``, each member's own logits, stacked: (K, B, T, V), what
        training needs (each member learns from its own loss, as if alone)."""
        outputs = [m(ids, s) for m, s in zip(self.members, self.split(state), strict=True)]
        new_state = tuple(s for _, st in outputs for s in st)
        logits = torch.stack([out for out, _ in outputs])  # (K, B, T, V)
        if separate:
            return logits, new_state
        return mix_logits(logits), new_state

    mix = staticmethod(mix_logits)  # for a step decoder of the members (cells.EnsembleDecoder)


LM = CharLM | Ensemble  # what reads and writes text: one network, or several averaged


def member_config(config: ModelConfig) -> ModelConfig:
    """The architecture of one member of ``config``'s model."""
    return dataclasses.replace(config, members=1)


def build_model(config: ModelConfig) -> CharLM | Ensemble:
    """The model ``config`` describes: a CharLM, or an Ensemble of ``config.members`` of them."""
    return Ensemble(config) if config.members > 1 else CharLM(config)


def model_device(model: nn.Module) -> torch.device:
    """Where a model's weights are."""
    return next(model.parameters()).device


def recurrent_stack(config: ModelConfig, input_size: int) -> nn.Module:
    """The fused, batch-first recurrent layers a config describes, with its init preset applied:
    nn.LSTM, nn.GRU or nn.RNN (tanh or relu) of ``config.num_layers`` layers over inputs of
    ``input_size`` features, or a scan.MinRNNStack (minGRU / minLSTM blocks), called the same
    way. CharLM puts an embedding in front; the lab a linear projection."""
    if config.cell in SCAN_CELLS:
        return MinRNNStack(
            config.cell,
            input_size,
            config.hidden_size,
            config.num_layers,
            config.dropout,
            config.ff_mult,
            config.token_shift,
        )
    kind = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "rnn-relu": nn.RNN}[config.cell]
    extra = {"nonlinearity": "relu" if config.cell == "rnn-relu" else "tanh"}
    rnn = kind(
        input_size,
        config.hidden_size,
        config.num_layers,
        batch_first=True,
        dropout=config.dropout if config.num_layers > 1 else 0.0,
        **(extra if kind is nn.RNN else {}),
    )
    initialize(rnn, config)
    return rnn


def layer_config(cell: str, hidden_size: int, init: str, forget_bias: float) -> ModelConfig:
    """One recurrent layer of the lab (no dropout, no feed-forward: the bare recurrence), as
    the ModelConfig the init presets read."""
    return ModelConfig(
        cell=cell,
        num_layers=1,
        hidden_size=hidden_size,
        embedding_size=hidden_size,
        dropout=0.0,
        init=init,
        forget_bias=forget_bias,
        ff_mult=0,
    )


def clip_gradients(parameters: Iterable[nn.Parameter], mode: str, value: float) -> float:
    """Clip the gradients in place and return their global L2 norm before clipping.

    Modes: ``norm`` rescales all gradients together when their global norm exceeds ``value``
    (Pascanu, Mikolov & Bengio 2013, algorithm 1; torch's clip_grad_norm_); ``element`` clamps
    each entry to [-value, value], as char-rnn did; ``none`` only measures. Training and the lab
    both clip here. A NaN or Inf norm is returned as is, for the caller to skip the step.
    """
    if mode not in CLIP_MODES:
        raise ConfigError(f"--clip-mode must be one of {', '.join(CLIP_MODES)}, got {mode!r}")
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    if mode == "norm":
        return float(torch.nn.utils.clip_grad_norm_(params, value))
    norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
    if mode == "element":
        torch.nn.utils.clip_grad_value_(params, value)
    return norm


def detach(state: State) -> State:
    """Cut the graph between BPTT chunks: gradients stop here, values carry on."""
    return tuple(s.detach() for s in state)


@torch.no_grad()
def initialize(rnn: nn.RNNBase, config: ModelConfig) -> None:
    """Apply an init preset to the recurrent weights (PyTorch's gate order: LSTM i,f,g,o; GRU
    r,z,n). Presets:

    - default: PyTorch's U(-1/sqrt(H), 1/sqrt(H)).
    - uniform: U(-0.08, 0.08) everywhere, as char-rnn.
    - orthogonal: orthogonal W_hh per gate block, Xavier-uniform W_ih, zero biases.
    - identity: IRNN (Le, Jaitly & Hinton 2015): W_hh = I, W_ih ~ N(0, 0.001), zero biases.
    - chrono: orthogonal weights, and LSTM forget bias log(U[1, T_max - 1]) with input bias its
      negative (Tallec & Ollivier 2018, eq. 17), T_max = 128; for GRU the update gate alike.
    The LSTM forget-gate bias is then set to ``forget_bias`` (except under chrono).
    """
    H = config.hidden_size
    blocks = rnn.weight_hh_l0.size(0) // H  # gates per layer: 4 LSTM, 3 GRU, 1 RNN
    for name, p in rnn.named_parameters():
        if config.init == "uniform":
            p.uniform_(-0.08, 0.08)
        elif config.init in ("orthogonal", "chrono"):
            if name.startswith("weight_hh"):
                for k in range(blocks):
                    nn.init.orthogonal_(p[k * H : (k + 1) * H])
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(p)
            else:
                p.zero_()
        elif config.init == "identity":
            if name.startswith("weight_hh"):
                p.copy_(torch.eye(H))
            elif name.startswith("weight_ih"):
                p.normal_(0.0, 0.001)
            else:
                p.zero_()
    for name, p in rnn.named_parameters():
        if not name.startswith("bias"):
            continue
        if config.init == "chrono" and config.cell in ("lstm", "gru"):
            t_max = 128
            u = torch.empty(H).uniform_(1, t_max - 1)
            gate = torch.log(u) / 2  # split between bias_ih and bias_hh
            if config.cell == "lstm":
                p[H : 2 * H] = gate  # forget
                p[0:H] = -gate  # input
            else:
                p[H : 2 * H] = gate  # GRU update z: h' = (1 - z) n + z h; z -> 1 keeps memory
        elif config.cell == "lstm":
            # the sum bias_ih + bias_hh is what acts: put all of it on bias_hh
            p[H : 2 * H] = config.forget_bias if name.startswith("bias_hh") else 0.0


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_char(config: ModelConfig) -> float:
    """Training FLOPs per character (forward + backward = 3x forward), matmuls only."""
    if config.cell in SCAN_CELLS:
        H, E, V = config.hidden_size, config.embedding_size, config.vocab_size
        L, F = config.num_layers, config.ff_mult * H
        return 3.0 * scan_flops_per_char(config.cell, E, H, L) + 6.0 * (L * 2 * H * F + H * V)
    gates = {"lstm": 4, "gru": 3, "rnn": 1, "rnn-relu": 1}[config.cell]
    H, E, V = config.hidden_size, config.embedding_size, config.vocab_size
    per_layer = [gates * H * ((E if i == 0 else H) + H) for i in range(config.num_layers)]
    return 6.0 * (sum(per_layer) + H * V)


# --- where the model runs ---------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda, but no CUDA GPU is visible; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps, but MPS is not available; use --device cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX-512 BF16 or AMX): autocast then pays."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain float32."""
    if name == "float32":
        return None
    if name == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_bf16():
        return torch.bfloat16
    return None


INT8_MAX_BATCH = 8  # above this many samples at once, int8 weight-only loses to bf16 (README)


def resolve_sample_dtype(name: str, device: torch.device, batch_size: int) -> torch.dtype | None:
    """Storage of the recurrent weights while sampling (see cells.StepDecoder); None keeps
    float32. "auto" on a CPU: int8 weight-only for up to 8 samples, where speed is the speed of
    reading the weights (measured 2x float32 at batch 1), bfloat16 for a larger batch on a CPU
    with native bf16 (2x float32 at batch 64; int8 is the slowest choice there); float32
    elsewhere."""
    if name == "float32":
        return None
    if name == "bfloat16":
        return torch.bfloat16
    if name == "int8":
        return torch.int8
    if name == "auto":
        if device.type != "cpu":
            return None
        if batch_size <= INT8_MAX_BATCH and hasattr(torch, "_weight_int8pack_mm"):
            return torch.int8
        return torch.bfloat16 if cpu_has_bf16() else None
    raise ConfigError(f"--weights-dtype must be auto, float32, bfloat16 or int8, got {name!r}")
