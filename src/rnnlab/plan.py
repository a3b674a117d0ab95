"""The training plan: the model, its regularization and its learning rate, chosen once before the
first step from the size of the corpus, the measured speed of this device and the budget.

The rule is a formula fitted to measurements (the tables beside the constants below, and
``benchmarks/scaling.py``), not a search at run time. Two quantities drive it, both known before
training starts:

- characters per parameter, C/P: how many characters the budget reads (the calibrated chars/s
  times the seconds, or steps x batch x seq_len) for each parameter of a candidate model. The
  minGRU ladder's largest model that still reads ``MIN_CHARS_PER_PARAMETER`` characters per
  parameter is chosen: a larger one is still early in its learning when the budget ends, a
  smaller one wastes compute that could have been capacity.
- epochs, C/N: how many times the budget reads the training text. minGRU learns fastest per
  second from text it has not seen (the ten-minute table: ahead on code, 1.17 against the
  LSTM's 1.22 nats at under one epoch) but memorizes a text it reads again and again, and
  dropout does not stop it (below). Once the budget reads the text ``LSTM_EPOCHS`` times or
  more, the plan trains the LSTM, which generalizes better from a small text, with dropout that
  grows with the epochs.

A flag the user gives always wins; the plan fills only what was left unset, and says which
choices were the user's. Imports config and model; never training.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .config import SCAN_MATRICES, ModelConfig, TrainConfig, flag_fields
from .model import (
    CharLM,
    build_model,
    clip_gradients,
    count_parameters,
    member_config,
    resolve_dtype,
)
from .optimizers import make_optimizer

# The ladder of candidate models, smallest first: minGRU blocks with a 4x feed-forward (the
# block that won the ten-minute table, docs/training.md "Why these defaults"), growing in
# width, then depth; each is about twice the compute per character of the one before.
LADDER: tuple[tuple[int, int], ...] = ((2, 256), (2, 384), (2, 512), (3, 512), (3, 768))
LADDER_CELL, LADDER_FF_MULT = "mingru", 4
# The model for a text read many times: the LSTM 2x512 whose defaults were measured at ten
# epochs of tiny Shakespeare (1.449 nats/char, docs/training.md "The LSTM's defaults"). Wider
# was worse for the same steps, at 2.2 times the compute per step: 2x768 with dropout 0.45 was
# at 1.5046 nats/char after 1,187 of 2,200 steps, where 2x512 with dropout 0.3 was at 1.4404
# after 1,238 of 2,000 (docs/training.md, the ablation table).
SMALL_TEXT_MODEL = {"cell": "lstm", "num_layers": 2, "hidden_size": 512, "ff_mult": 0}
ARCHITECTURE = ("cell", "num_layers", "hidden_size", "ff_mult", "embedding_size")
PLANNED_MODEL = (*ARCHITECTURE, "token_shift", "members", "dropout", "embedding_dropout")
PLANNED = (*PLANNED_MODEL, "learning_rate", "optimizer", "batch_size", "seq_len")

# Characters the budget must read per parameter for a model to be chosen. The 2-minute sweep
# and the ten-minute table put 2x384 (3.3M parameters) ahead of 2x512 and 3x512 when the budget
# read 1.2M-7M characters, 0.4-2 per parameter of 2x384 and under 1 of the larger.
MIN_CHARS_PER_PARAMETER = 2.0
# A model no larger than this many parameters per training character: nanoGPT's
# shakespeare_char (10.7M parameters, 1M characters, dropout 0.2) is the largest ratio a
# published character model regularizes well.
MAX_PARAMETERS_PER_CHAR = 10.0
# From this many epochs (of the LSTM, at its measured speed) the LSTM is trained. Measured
# (tiny Shakespeare, 1M training characters; a 2 MB code corpus): minGRU 2x384 and the LSTM
# 2x512 tie at 1-2 epochs (1.761 / 1.753 nats at 2 minutes), the LSTM leads from about 3
# (1.545 against 1.580 at 5 minutes; 1.4145 against 1.4781 at 4.5 epochs of code); minGRU
# 2x384 reached 1.4767 at 6.8 epochs and only 1.4995 at 13 with no dropout, and 1.505 with
# dropout 0.2 (its train loss 1.22: dropout on the blocks does not stop the memorizing).
LSTM_EPOCHS = 3.0
# The LSTM's dropout (between the layers and before the head) against the epochs it reads:
# LSTM_DROPOUT at LSTM_DROPOUT_EPOCHS, LSTM_DROPOUT_PER_DOUBLING less for each halving, within
# [MIN_DROPOUT, MAX_DROPOUT]. Fitted to the scaling study on tiny Shakespeare with Muon
# (benchmarks/results/scaling.json): at about 9 epochs 0.32 beat 0.16 (1.4402 against 1.4460
# nats/char, ten minutes); at about 4, 0.15 beat 0.25 (1.4465 against 1.4641, five minutes).
# With AdamW 0.2 at ten epochs was the measured default (docs/training.md, "The LSTM's
# defaults"). Weight drop (--weight-drop) is not planned: 0.3 with dropout 0.25 did worse at 8
# epochs than dropout 0.3 alone (1.4574 against 1.4393 nats/char, 2,000 steps).
LSTM_DROPOUT, LSTM_DROPOUT_EPOCHS, LSTM_DROPOUT_PER_DOUBLING = 0.3, 9.0, 0.15
MIN_DROPOUT, MAX_DROPOUT = 0.1, 0.45
# Dropout on the character embedding (the first layer's input), as a share of the planned
# dropout: 0.1 beside dropout 0.3 at 8 epochs improved the LSTM from 1.4393 to 1.4266
# nats/char (2,000 steps, tiny Shakespeare), and it still improved at the end where dropout
# alone had stopped at 5.9 epochs. Not measured for the scan cells, which get none.
EMBEDDING_DROPOUT_SHARE = 1 / 3
# The LSTM 2x512 trains for at most this many epochs; a longer budget ends early rather than
# memorize. Measured with Muon on tiny Shakespeare: the ten-minute run (9.3 epochs, dropout
# 0.32) was best at 7.3 epochs, 1.4402 nats/char; the twenty-minute one (dropout 0.37) was best
# at 5.7 epochs, 1.4499, and rose to 1.476 by 14 epochs as its training loss kept falling; 2,000
# steps with dropout 0.3 (8.2 epochs) were best at 5.9, 1.4393. With the embedding dropout the
# capped plan (9 epochs) reached 1.4220 and 1.4286 in two runs, the ten-minute one (8.4) 1.4241.
# That is the cap on a text of REFERENCE_CHARS (tiny Shakespeare's training split); a smaller
# text is read more times before the LSTM memorizes it, because nine epochs of it are too few
# steps to learn from: the cap grows as sqrt(REFERENCE_CHARS / N). Measured on the first 300 kB
# of tiny Shakespeare (270,000 training characters, its own 30,000 for validation), step
# budgets, dropout from the epochs: 594 steps (9 epochs, dropout 0.3) 1.4084 nats/char; 1,350
# steps (20 epochs, dropout 0.45) best at 1,130 (17), 1.3636; 2,000 steps best at 966 (15),
# 1.3642, and rising (1.3711 at 1,145) while its rate was still high. sqrt gives 17.4 there. A
# larger text keeps nine (not measured past it).
LSTM_MAX_EPOCHS, REFERENCE_CHARS = 9.0, 1_003_854
# A budget that reads the text MEMBER_EPOCHS times per member, or more, trains the LSTM as
# several members side by side (model.Ensemble: independent networks whose predictions are
# averaged), at most MAX_PLANNED_MEMBERS: past the cap above, one LSTM cannot turn more
# compute into a better model, and several can. Measured by averaging the study's own capped
# runs on tiny Shakespeare's validation split (each alone 1.4220-1.4286 nats/char at 8.4-9
# epochs): two 1.3979-1.4106 (the pair of one seed that differs only by bf16 rounding: 1.4064),
# three 1.3934-1.4013, four 1.3922 (benchmarks/ensemble.py). Six epochs, not nine: the LSTM is
# close to its best from about five when its schedule anneals there (the first rule's cells:
# 1.4465 at about 4 epochs, 1.4460 at about 8), and two members gain about 0.025, so two at
# six are planned to beat one at nine from 12 epochs of budget. Between 9 and 12 one LSTM
# trains to the cap and the run ends early: two members there would each read too few steps on
# a smaller text (on the first 300 kB the cap of 17.4 epochs is 1,150 steps, and one LSTM at
# 594 steps measured 1.4084 nats/char against 1.3636 at the cap).
MEMBER_EPOCHS = 6.0  # on a text of REFERENCE_CHARS; scaled as the cap is on others
# Past FULL_MEMBERS, members come only from compute the others cannot spend: one more for each
# cap's worth of epochs, when FULL_MEMBERS would each reach the cap and end the run early. The
# first members gain most (four: 0.03 below one) and each further one little (three to four:
# 0.001-0.009), so they are not traded for epochs; but without them a budget that reaches the
# cap buys nothing more. Four at the cap on the first 300 kB of tiny Shakespeare spent 997 s of
# a twenty-minute budget, and forty minutes planned the very same run (1.3273 nats/char). With
# this rule (benchmarks/results/scaling.json): there five at twenty minutes 1.3251 and eight at
# forty 1.3202; on tiny Shakespeare six at forty minutes 1.3740, where four at the cap 1.3806.
FULL_MEMBERS, MAX_PLANNED_MEMBERS = 4, 8
# The optimizer by cell. Muon on the hidden matrices learns far faster per step, for about
# 10-15% fewer steps a second: after 440 steps on tiny Shakespeare (two minutes of minGRU 2x384
# on this machine), minGRU 2x384 1.516 against AdamW's 1.618 nats/char, the LSTM 2x512 1.565
# against 1.705. GRU and the plain RNNs were not measured and keep AdamW.
OPTIMIZER = {"mingru": "muon", "minlstm": "muon", "lstm": "muon"}
# minGRU and minLSTM read a token shift (scan.py): the plan's minGRU 2x256 on tiny Shakespeare,
# step for step, 1.8767 against 1.9597 nats/char after 150 steps and 1.6109 against 1.6695
# after 300 (benchmarks/results/ablation_token_shift*.json), for about 5% more time a step.
TOKEN_SHIFT = True
# lr 4e-3 measured best for minGRU 2x384 and for the LSTM 2x512; wider minGRUs take it scaled
# by sqrt(384 / H)
BASE_LR, BASE_WIDTH = 4e-3, 384
# calibration: seconds of timed steps per candidate, after WARMUP_STEPS untimed ones (with one,
# the LSTM with Muon measured 9.5k chars/s where it then trained at 13.3k): CALIBRATION_SHARE
# of a budget in minutes, from CALIBRATION_S to CALIBRATION_MAX_S. On a shared 2-core machine
# one LSTM step takes anywhere from 9.5k to 16k chars/s (100 steps in a row, measured), so a
# median of two or three steps read the twenty-minute cells 12-23% slow; a longer budget
# affords more steps for the same share.
CALIBRATION_S, CALIBRATION_MAX_S, CALIBRATION_SHARE = 0.8, 4.0, 0.0025
MIN_CALIBRATION_STEPS = 2
WARMUP_STEPS = 3

Speed = Callable[[ModelConfig, TrainConfig], float]


@dataclass(frozen=True)
class Plan:
    """What the plan chose, from what, and which choices were the user's (stored in
    config.json under "plan")."""

    model: dict[str, Any]  # the planned ModelConfig fields
    train: dict[str, Any]  # the planned TrainConfig fields
    user: tuple[str, ...]  # the flags the user set, which the plan kept
    train_chars: int
    budget: str  # "10 min" or "5,000 steps"
    chars_per_s: dict[str, float]  # measured, by candidate ("mingru 2x384"); {} for steps
    planned_chars: float  # characters the budget reads with the chosen model
    parameters: int
    calibration_s: float  # counted in the budget

    @property
    def epochs(self) -> float:
        return self.planned_chars / max(1, self.train_chars)

    def line(self) -> str:
        """The one line the run prints before its first step."""
        m, t = self.model, self.train
        ff = f" ff{m['ff_mult']}" if m.get("ff_mult") else ""
        ff += " token-shift" if m.get("token_shift") else ""
        wd = f", weight drop {m['weight_drop']:g}" if m.get("weight_drop") else ""
        ed = f" (embedding {m['embedding_dropout']:g})" if m.get("embedding_dropout") else ""
        members = m.get("members", 1)
        speed = self.chars_per_s.get(_name(m["cell"], m["num_layers"], m["hidden_size"]))
        pace = f" at {speed / members:,.0f} chars/s" if speed else ""
        mine = f"; yours: {', '.join(self.user)}" if self.user else ""
        many = f" x {members} members" if members > 1 else ""
        each = " each" if members > 1 else ""
        return (
            f"plan: {m['cell']} {m['num_layers']}x{m['hidden_size']}{ff}{many} "
            f"({self.parameters / 1e6:.2f}M parameters), dropout {m['dropout']:g}{ed}{wd}, "
            f"{t['optimizer']} lr {t['learning_rate']:.2g}, "
            f"batch {t['batch_size']}x{t['seq_len']}; "
            f"{self.budget} reads {self.planned_chars / 1e6:,.1f}M chars{each}{pace} = "
            f"{self.epochs:,.1f} epochs of {self.train_chars:,}{mine}"
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"epochs": self.epochs}


def _name(cell: str, layers: int, hidden: int) -> str:
    return f"{cell} {layers}x{hidden}"


def _with_epochs(value: float, per_doubling: float, epochs: float, lo: float, hi: float) -> float:
    """``value`` at LSTM_DROPOUT_EPOCHS, ``per_doubling`` more for each doubling of ``epochs``
    (less for each halving), within [lo, hi], to two decimals."""
    doublings = math.log2(max(epochs, 1e-9) / LSTM_DROPOUT_EPOCHS)
    return round(min(hi, max(lo, value + per_doubling * doublings)), 2)


def dropout_for(cell: str, epochs: float) -> float:
    """The planned dropout of a ``cell`` trained for ``epochs`` passes over its text: none for
    the scan cells (measured to hurt, see LSTM_EPOCHS), for the others growing with the log of
    the epochs."""
    if cell in SCAN_MATRICES:
        return 0.0
    return _with_epochs(LSTM_DROPOUT, LSTM_DROPOUT_PER_DOUBLING, epochs, MIN_DROPOUT, MAX_DROPOUT)


def embedding_dropout_for(cell: str, dropout: float) -> float:
    """The planned dropout on the embedding of a ``cell`` whose planned dropout is ``dropout``:
    EMBEDDING_DROPOUT_SHARE of it for the fused cells, none for the scan cells."""
    if cell in SCAN_MATRICES:
        return 0.0
    return round(EMBEDDING_DROPOUT_SHARE * dropout, 2)


def max_epochs(train_chars: int) -> float:
    """The epochs the LSTM 2x512 trains for at most on a text of ``train_chars`` characters:
    LSTM_MAX_EPOCHS on REFERENCE_CHARS or more, growing as sqrt(REFERENCE_CHARS / N) below."""
    return LSTM_MAX_EPOCHS * math.sqrt(max(1.0, REFERENCE_CHARS / max(1, train_chars)))


def lr_for(cell: str, hidden_size: int) -> float:
    if cell not in SCAN_MATRICES or hidden_size <= BASE_WIDTH:
        return BASE_LR
    return BASE_LR * math.sqrt(BASE_WIDTH / hidden_size)


@functools.lru_cache(maxsize=256)
def parameters_of(config: ModelConfig) -> int:
    """Parameters of the model ``config`` describes, without allocating its weights."""
    with torch.device("meta"):
        return count_parameters(build_model(config))


def measure_speed(
    model_config: ModelConfig, train_config: TrainConfig, device: torch.device
) -> float:
    """Training characters per second of a model on this device: full steps (forward under the
    run's autocast, loss, backward, clipping, the run's optimizer) on random ids, the median of
    those timed after WARMUP_STEPS untimed ones, for CALIBRATION_SHARE of a budget in minutes
    (CALIBRATION_S to CALIBRATION_MAX_S)."""
    torch.manual_seed(0)
    model = CharLM(model_config).to(device)
    optimizer = make_optimizer(model, dataclasses.replace(train_config, learning_rate=1e-4))
    B, T, V = train_config.batch_size, train_config.seq_len, model_config.vocab_size
    ids = torch.randint(0, V, (B, T + 1), device=device)
    dtype = resolve_dtype(train_config.autocast_dtype, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits, _ = model(ids[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(model.parameters(), "norm", 1.0)
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        step()
    times: list[float] = []  # the median step: one stalled step (another process) does not count
    start = time.perf_counter()
    share = 60 * (train_config.minutes or 0.0) * CALIBRATION_SHARE
    seconds = min(CALIBRATION_MAX_S, max(CALIBRATION_S, share))
    while len(times) < MIN_CALIBRATION_STEPS or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return B * T / statistics.median(times)


def make_plan(
    model_config: ModelConfig,
    train_config: TrainConfig,
    user: Collection[str],
    train_chars: int,
    speed: Speed,
    world: int = 1,
) -> tuple[ModelConfig, TrainConfig, Plan]:
    """Fill the fields the user did not set.

    Args:
        model_config, train_config: the run's configs (the user's values, defaults elsewhere);
            ``train_config`` has a budget (``minutes`` and/or ``max_steps``).
        user: names of the ModelConfig and TrainConfig fields the user set; they are kept.
        train_chars: characters in the training split.
        speed: chars/s of one process training a model (``measure_speed`` on the device).
        world: processes training together (each reads its own share of the streams).

    Returns:
        The planned configs and the Plan that records why.
    """
    user = set(user)
    t0 = time.perf_counter()
    cfg = train_config
    chars_per_step = cfg.batch_size * cfg.seq_len
    measured: dict[str, float] = {}

    def trained_with(config: ModelConfig) -> TrainConfig:
        """The training config a model gets: the planned optimizer unless the user chose."""
        if "optimizer" in user:
            return cfg
        return dataclasses.replace(cfg, optimizer=OPTIMIZER.get(config.cell, "adamw"))

    def reads(config: ModelConfig) -> float:
        """Characters the budget reads with this model, each member of it (calibration time
        taken off): members train side by side on the same batches, each step costing them
        all."""
        budgets = []
        if cfg.max_steps is not None:
            budgets.append(cfg.max_steps * chars_per_step)
        if cfg.minutes is not None:
            name = _name(config.cell, config.num_layers, config.hidden_size)
            if name not in measured:
                measured[name] = world * speed(_timed_as(config, user), trained_with(config))
            left_s = max(0.0, 60 * cfg.minutes - (time.perf_counter() - t0))
            budgets.append(measured[name] / config.members * left_s)
        return min(budgets)

    asked = model_config.token_shift if "token_shift" in user else None  # the user's switch
    shift = TOKEN_SHIFT if asked is None else asked  # for a scan cell; the others read none
    if user & set(ARCHITECTURE):  # the user's architecture, with its cell's defaults for the rest
        chosen = dataclasses.replace(
            model_config, token_shift=shift and model_config.cell in SCAN_MATRICES
        )
        planned = reads(chosen)
    else:
        lstm = dataclasses.replace(model_config, **SMALL_TEXT_MODEL, token_shift=False)
        planned = 0.0 if asked else reads(lstm)  # a shift asked for: a scan cell
        if planned >= LSTM_EPOCHS * train_chars:  # a small text for this budget
            chosen = lstm
        else:
            scan = dataclasses.replace(model_config, token_shift=shift)
            chosen, planned = _choose_model(scan, train_chars, reads)
    most = max_epochs(train_chars)  # the LSTM's cap on this text
    if chosen.cell == "lstm" and "members" not in user and cfg.minutes is not None:
        alone = reads(member_config(chosen)) / max(1, train_chars)  # epochs of one member
        chosen = dataclasses.replace(chosen, members=_members(alone, most))
        planned = reads(chosen)
    epochs = min(planned / max(1, train_chars), most)
    if "dropout" not in user:
        chosen = dataclasses.replace(chosen, dropout=dropout_for(chosen.cell, epochs))
    if "embedding_dropout" not in user:
        planned_share = embedding_dropout_for(chosen.cell, chosen.dropout)
        chosen = dataclasses.replace(chosen, embedding_dropout=planned_share)
    cfg = trained_with(chosen)
    cap = math.ceil(most * train_chars / chars_per_step)
    if chosen.cell == "lstm" and "max_steps" not in user and planned > cap * chars_per_step:
        cfg = dataclasses.replace(cfg, max_steps=cap)  # the schedule ends there, and the run
        planned = cap * chars_per_step  # (whichever of steps and minutes comes first)
    if "learning_rate" not in user:
        cfg = dataclasses.replace(cfg, learning_rate=lr_for(chosen.cell, chosen.hidden_size))
    flags = {f.name: f.metadata["flag"] for c in (ModelConfig, TrainConfig) for f in flag_fields(c)}
    plan = Plan(
        model={k: getattr(chosen, k) for k in (*PLANNED_MODEL, "weight_drop")},
        train={k: getattr(cfg, k) for k in ("optimizer", "learning_rate", "batch_size", "seq_len")},
        user=tuple(sorted(_flag(flags[n], getattr(chosen, n, None)) for n in user if n in PLANNED)),
        train_chars=train_chars,
        budget=_budget(cfg),
        chars_per_s=measured,
        planned_chars=planned,
        parameters=parameters_of(chosen),
        calibration_s=time.perf_counter() - t0 if measured else 0.0,
    )
    return chosen, cfg, plan


def _timed_as(config: ModelConfig, user: Collection[str]) -> ModelConfig:
    """The model as it will train, one member of it: a fused cell timed with dropout, which the
    plan will give it (any value > 0 costs about the same), else its speed is optimistic."""
    config = member_config(config)
    if config.cell in SCAN_MATRICES or "dropout" in user:
        return config
    return dataclasses.replace(config, dropout=LSTM_DROPOUT)


def _flag(flag: str, value: Any) -> str:
    """The flag as the user gave it: a switch turned off is --no-FLAG."""
    return f"--no-{flag[2:]}" if value is False else flag


def _budget(cfg: TrainConfig) -> str:
    """ "10 min", "5,000 steps" or both, as the plan line says it."""
    minutes = [f"{cfg.minutes:g} min"] if cfg.minutes is not None else []
    steps = [f"{cfg.max_steps:,} steps"] if cfg.max_steps is not None else []
    return " or ".join(minutes + steps)


def _members(epochs_alone: float, cap: float) -> int:
    """Members of an LSTM whose budget would read the text ``epochs_alone`` times with one, on a
    text where it stops at ``cap`` epochs: one per MEMBER_EPOCHS (scaled as the cap is) up to
    FULL_MEMBERS, then one per ``cap`` up to MAX_PLANNED_MEMBERS."""
    each = MEMBER_EPOCHS * cap / LSTM_MAX_EPOCHS
    members = min(FULL_MEMBERS, max(1, math.floor(epochs_alone / each)))
    if members < FULL_MEMBERS:
        return members
    return max(FULL_MEMBERS, min(MAX_PLANNED_MEMBERS, math.floor(epochs_alone / cap)))


def _choose_model(
    base: ModelConfig, train_chars: int, reads: Callable[[ModelConfig], float]
) -> tuple[ModelConfig, float]:
    """The ladder's largest model that reads MIN_CHARS_PER_PARAMETER characters per parameter
    in the budget and has at most MAX_PARAMETERS_PER_CHAR parameters per training character;
    the smallest when none does. Walks up from the smallest and stops at the first that fails,
    so only the models near the choice are timed."""
    chosen = planned = None
    for layers, hidden in LADDER:
        config = dataclasses.replace(
            base,
            cell=LADDER_CELL,
            num_layers=layers,
            hidden_size=hidden,
            ff_mult=LADDER_FF_MULT,
            dropout=0.0,
        )
        parameters = parameters_of(config)
        if chosen is not None and parameters > MAX_PARAMETERS_PER_CHAR * train_chars:
            break
        chars = reads(config)
        if chosen is not None and chars < MIN_CHARS_PER_PARAMETER * parameters:
            break
        chosen, planned = config, chars
    assert chosen is not None and planned is not None  # the ladder is not empty
    return chosen, planned
