"""Frozen, validated configuration dataclasses and their JSON form.

The CLI builds its flags from these fields (``flag`` and ``help`` in each field's metadata), so
defaults, types and help text have one source. Stdlib only: nothing in rnnlab is imported here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError

CELLS = ("lstm", "gru", "rnn", "rnn-relu", "mingru", "minlstm")
SCAN_INITS = ("default",)  # mingru/minlstm have no recurrent matrix for a preset to act on
INITS = ("default", "uniform", "orthogonal", "identity", "chrono")
CLIP_MODES = ("norm", "element", "none")
OPTIMIZERS = ("adamw", "muon")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16")
FORMAT = 1
__version__ = "0.1.0"


class ConfigError(UsageError):
    """A configuration value is invalid; the message names the flag and the fix."""


def _opt(
    default: Any,
    flag: str,
    help: str,
    choices: tuple[str, ...] | None = None,
    repeat: bool = False,
    shown: str | None = None,
    many: bool = False,
) -> Any:
    """A field exposed as a flag; ``repeat``: the flag may be given several times (the values
    are joined by commas); ``many``: the flag may be given several times (a tuple of the
    values, none joined); ``shown``: the default as the help should say it, when it depends
    on another field."""
    meta: dict[str, Any] = {"flag": flag, "help": help}
    if shown is not None:
        meta["shown_default"] = shown
    if choices is not None:
        meta["choices"] = choices
    if repeat:
        meta["repeat"] = True
    if many:
        meta["many"] = True
    return field(default=default, metadata=meta)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# upper bounds that keep a typo from asking for terabytes (the messages say the largest value)
MAX_HIDDEN = 16_384
MAX_LAYERS = 64
MAX_EMBEDDING = 16_384
MAX_VOCAB = 0x110000 + 1  # every Unicode code point
MAX_BATCH = 65_536
MAX_SEQ_LEN = 65_536
MAX_LR = 10.0
MAX_SEED = 2**63 - 1
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights, before gradients and optimizer state
GATES = {"lstm": 4, "gru": 3, "rnn": 1, "rnn-relu": 1}
SCAN_MATRICES = {"mingru": 3, "minlstm": 4}  # H x H matrices per layer: gates, then W_o
MAX_FF_MULT = 16
MAX_MEMBERS = 16
# The defaults measured for each family (README: "Why these defaults" for the fused cells,
# "minGRU and minLSTM" for the scan cells: their 2-minute sweep and the ten-minute table).
FUSED_DEFAULTS = {"hidden_size": 512, "dropout": 0.2, "ff_mult": 0}
SCAN_DEFAULTS = {"hidden_size": 384, "dropout": 0.0, "ff_mult": 4}
CELL_DEFAULTS = {c: SCAN_DEFAULTS if c in SCAN_MATRICES else FUSED_DEFAULTS for c in CELLS}


def cell_defaults(cell: str) -> dict[str, Any]:
    """The hidden size, dropout and feed-forward multiple a ``cell`` gets when not given."""
    return CELL_DEFAULTS.get(cell, FUSED_DEFAULTS) if isinstance(cell, str) else FUSED_DEFAULTS


def _check_range(value: Any, lo: float, hi: float, flag: str) -> None:
    """``lo <= value <= hi`` and finite, else a ConfigError naming the flag and the bounds."""
    finite = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    ok = finite and not isinstance(value, bool) and lo <= value <= hi
    _check(ok, f"{flag} must be between {_number(lo)} and {_number(hi)}, got {value}")


def _number(x: float) -> str:
    """1000000 -> '1,000,000'; 0.5 -> '0.5'."""
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e18 else f"{x:g}"


def _check_types(config: Any) -> None:
    """Each field holds its declared type (an int is a float; a bool is neither): config.json
    is untrusted, and a list or 32.5 where an int belongs must be one line, not a traceback."""
    for f in dataclasses.fields(config):
        value, kinds = getattr(config, f.name), str(f.type).replace(" ", "").split("|")
        if value is None and "None" in kinds:
            continue
        kinds = [k for k in kinds if k != "None"]  # None was handled: the value must be a kind
        allowed = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
        types = tuple(t for k in kinds for t in allowed.get(k, (object,)))
        ok = isinstance(value, types) and (isinstance(value, bool) == ("bool" in kinds))
        flag = f.metadata.get("flag", f.name)
        _check(ok, f"{flag} must be {' or '.join(kinds)}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a CharLM. Stored in config.json; fixed for the life of a run."""

    cell: str = _opt(
        "mingru",
        "--cell",
        "recurrent cell (README: the ten-minute table)",
        CELLS,
        shown="planned: mingru",
    )
    num_layers: int = _opt(
        2, "--layers", "number of stacked recurrent layers", shown="planned from the budget"
    )
    # None: the measured default of the cell's family (CELL_DEFAULTS), set in __post_init__
    hidden_size: int | None = _opt(
        None,
        "--hidden",
        "units per recurrent layer",
        shown="planned from the budget; with --cell: 512, 384 for mingru/minlstm",
    )
    embedding_size: int = _opt(64, "--embedding", "size of the character embedding")
    dropout: float | None = _opt(
        None,
        "--dropout",
        "dropout between layers and before the head",
        shown="planned from the epochs the budget reads",
    )
    embedding_dropout: float = _opt(
        0.0,
        "--embedding-dropout",
        "dropout on the character embedding (the first layer's input)",
        shown="planned: a third of the dropout for lstm/gru/rnn, 0 for mingru/minlstm",
    )
    weight_drop: float = _opt(
        0.0,
        "--weight-drop",
        "lstm/gru/rnn: DropConnect on the recurrent matrices while training (AWD-LSTM)",
    )
    init: str = _opt("default", "--init", "initialization preset for the recurrent weights", INITS)
    forget_bias: float = _opt(1.0, "--forget-bias", "LSTM forget-gate bias at init (1 as char-rnn)")
    ff_mult: int | None = _opt(
        None,
        "--ff-mult",
        "minGRU/minLSTM: a feed-forward block (width ff-mult x hidden) after each layer; 0: none",
        shown="planned: 4 for mingru/minlstm, else 0",
    )
    token_shift: bool = _opt(
        False,
        "--token-shift",
        "minGRU/minLSTM: the gates read a learned mix of this and the previous character (RWKV)",
        shown="planned: on for mingru/minlstm; --no-token-shift: off",
    )
    members: int = _opt(
        1,
        "--members",
        "independent models trained side by side; the model is their averaged prediction",
        shown="planned: 1, more when one would read the text over 9 times",
    )
    vocab_size: int = 0  # set from the corpus, never a flag

    def __post_init__(self) -> None:
        for name, value in cell_defaults(self.cell).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)  # frozen: set once, here
        _check_types(self)
        _check(self.cell in CELLS, f"--cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        _check(self.init in INITS, f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        _check_range(self.num_layers, 1, MAX_LAYERS, "--layers")
        _check_range(self.hidden_size, 1, MAX_HIDDEN, "--hidden")
        _check_range(self.embedding_size, 1, MAX_EMBEDDING, "--embedding")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        ed, wd = self.embedding_dropout, self.weight_drop
        _check(0.0 <= ed < 1.0, f"--embedding-dropout must be in [0, 1), got {ed}")
        _check(0.0 <= wd < 1.0, f"--weight-drop must be in [0, 1), got {wd}")
        _check(
            wd == 0 or self.cell not in SCAN_MATRICES,
            f"--weight-drop is for lstm, gru and rnn, not {self.cell}: add --cell lstm",
        )
        _check_range(self.forget_bias, -1e3, 1e3, "--forget-bias")
        _check_range(self.ff_mult, 0, MAX_FF_MULT, "--ff-mult")
        _check(
            self.ff_mult == 0 or self.cell in SCAN_MATRICES,
            f"--ff-mult is for --cell mingru or minlstm, not {self.cell}; leave it at 0",
        )
        _check(
            not self.token_shift or self.cell in SCAN_MATRICES,
            f"--token-shift is for --cell mingru or minlstm, not {self.cell}: add --cell mingru",
        )
        _check_range(self.members, 1, MAX_MEMBERS, "--members")
        _check_range(self.vocab_size, 0, MAX_VOCAB, "vocab_size")
        H, E, L = self.hidden_size, self.embedding_size, self.num_layers
        if self.cell in SCAN_MATRICES:  # input projection, then per layer gates + W_o + norm
            recurrent = (E + 1) * H + L * (SCAN_MATRICES[self.cell] * (H + 1) * H + H) + H
            F = self.ff_mult * H  # per layer: RMSNorm, H -> F, F -> H
            recurrent += L * (H + (H + 1) * F + (F + 1) * H) if F else 0
            recurrent += L * H if self.token_shift else 0  # the mix, one weight per channel
        else:
            recurrent = GATES[self.cell] * H * (E + H + (L - 1) * 2 * H + 2 * L)
        parameters = (recurrent + (E + H + 1) * self.vocab_size) * self.members
        members = f" x --members {self.members}" if self.members > 1 else ""
        _check(
            parameters <= MAX_PARAMETERS,
            f"--layers {L} x --hidden {H}{members} makes {parameters:,} parameters, more than "
            f"the {MAX_PARAMETERS:,} allowed; lower --hidden or --layers",
        )
        _check(
            self.init != "identity" or self.cell in ("rnn", "rnn-relu"),
            "--init identity (IRNN) is for --cell rnn or rnn-relu; pick another --init",
        )
        _check(
            self.cell not in ("mingru", "minlstm") or self.init in SCAN_INITS,
            f"--init {self.init} sets recurrent weights, which --cell {self.cell} does not have; "
            "use --init default",
        )


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. Budgets (max_steps, minutes) count the whole run, across resumes."""

    batch_size: int = _opt(64, "--batch-size", "number of contiguous streams trained in parallel")
    seq_len: int = _opt(64, "--seq-len", "truncated-BPTT length: characters per stream per step")
    state_reset: float = _opt(
        0.02, "--state-reset", "chance per step that a stream's carried state restarts from zeros"
    )
    learning_rate: float = _opt(
        4e-3, "--lr", "peak AdamW learning rate", shown="planned: 4e-3, less for wider models"
    )
    min_lr_fraction: float = _opt(0.0, "--min-lr-fraction", "final lr as a fraction of --lr")
    warmup_steps: int = _opt(50, "--warmup-steps", "linear warmup steps before cosine decay")
    weight_decay: float = _opt(0.0, "--weight-decay", "AdamW weight decay on weight matrices")
    ema: float = _opt(
        0.0,
        "--ema",
        "decay of a moving average of the weights that validation, the best weights and the "
        "samples use (e.g. 0.999); 0: off",
    )
    optimizer: str = _opt(
        "adamw",
        "--optimizer",
        "adamw; muon: Muon for the hidden matrices, AdamW for the rest (optimizers.py)",
        OPTIMIZERS,
    )
    grad_clip: float = _opt(1.0, "--grad-clip", "gradient clipping threshold")
    clip_mode: str = _opt(
        "norm", "--clip-mode", "norm: global L2 norm; element: clamp each entry", CLIP_MODES
    )
    max_steps: int | None = _opt(
        None, "--max-steps", "stop after this many steps in total", shown="no step limit"
    )
    minutes: float | None = _opt(
        None,
        "--minutes",
        "stop after this much training time in total (validation not counted)",
        shown="3 when --max-steps is not given",
    )
    eval_every_s: float = _opt(60.0, "--eval-every-s", "seconds of training between validations")
    eval_chars: int = _opt(
        120_000, "--eval-chars", "validate on the first N characters of the split (0: all)"
    )
    val_fraction: float = _opt(0.1, "--val-fraction", "fraction of the corpus held out (tail)")
    sample_chars: int = _opt(200, "--sample-chars", "characters sampled at each validation")
    seed: int = _opt(1337, "--seed", "random seed for init, data order and dropout")
    device: str = _opt("auto", "--device", "auto picks cuda, then mps, then cpu", DEVICES)
    autocast_dtype: str = _opt(
        "auto",
        "--autocast-dtype",
        "autocast dtype of training (the weights stay float32); auto: bfloat16 where the "
        "hardware has it",
        DTYPES,
    )

    def __post_init__(self) -> None:
        _check_types(self)
        _check_range(self.batch_size, 1, MAX_BATCH, "--batch-size")
        _check_range(self.seq_len, 1, MAX_SEQ_LEN, "--seq-len")
        _check_range(self.learning_rate, 0, MAX_LR, "--lr")
        _check_range(self.weight_decay, 0, 1e3, "--weight-decay")
        _check(0 <= self.ema < 1, f"--ema must be in [0, 1), got {self.ema}")
        _check_range(self.grad_clip, 0, 1e9, "--grad-clip")
        _check_range(self.warmup_steps, 0, 10**12, "--warmup-steps")
        _check(self.max_steps is None or self.max_steps <= 10**12, "--max-steps is at most 1e12")
        if self.minutes is not None:
            _check_range(self.minutes, 0, 1e9, "--minutes")
        _check_range(self.eval_every_s, 0, 1e9, "--eval-every-s")
        _check_range(self.eval_chars, 0, 10**15, "--eval-chars")
        _check_range(self.sample_chars, 0, 100_000, "--sample-chars")
        _check_range(self.seed, 0, MAX_SEED, "--seed")
        _check(
            0 <= self.state_reset <= 1, f"--state-reset must be in [0, 1], got {self.state_reset}"
        )
        _check(self.learning_rate > 0, f"--lr must be positive, got {self.learning_rate}")
        _check(0 <= self.min_lr_fraction <= 1, "--min-lr-fraction must be in [0, 1]")
        _check(self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}")
        _check(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        _check(self.grad_clip > 0, f"--grad-clip must be positive, got {self.grad_clip}")
        _check(
            self.optimizer in OPTIMIZERS,
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        _check(
            self.clip_mode in CLIP_MODES,
            f"--clip-mode must be one of {', '.join(CLIP_MODES)}, got {self.clip_mode!r}",
        )
        _check(
            self.max_steps is None or self.max_steps >= 1,
            f"--max-steps must be at least 1, got {self.max_steps}",
        )
        _check(
            self.minutes is None or self.minutes > 0,
            f"--minutes must be positive, got {self.minutes}",
        )
        _check(self.eval_every_s > 0, f"--eval-every-s must be positive, got {self.eval_every_s}")
        _check(self.eval_chars >= 0, f"--eval-chars must be >= 0, got {self.eval_chars}")
        _check(
            0 < self.val_fraction < 1, f"--val-fraction must be in (0, 1), got {self.val_fraction}"
        )
        _check(self.sample_chars >= 0, f"--sample-chars must be >= 0, got {self.sample_chars}")
        _check(
            self.device in DEVICES,
            f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}",
        )
        _check(
            self.autocast_dtype in DTYPES,
            f"--autocast-dtype must be one of {', '.join(DTYPES)}, got {self.autocast_dtype!r}",
        )

    def budget_fraction(self, step: int, elapsed_s: float) -> float:
        """Fraction of the budget spent, in [0, 1]: whichever of steps or time runs out first."""
        fractions = [0.0]
        if self.max_steps is not None:
            fractions.append(step / self.max_steps)
        if self.minutes is not None:
            fractions.append(elapsed_s / (60.0 * self.minutes))
        return min(1.0, max(fractions))


@dataclass(frozen=True)
class CorpusConfig:
    """Where the text came from; enough to find it again on resume and to check it is unchanged."""

    source: str = "python"  # a named corpus, a file or a folder
    glob: str | None = None
    byte_mode: bool = False
    sha256: str = ""  # of the concatenated text as encoded, filled in when encoded
    num_chars: int = 0

    def __post_init__(self) -> None:
        _check_types(self)  # config.json is untrusted


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of a config class that are exposed as command-line flags."""
    return [f for f in dataclasses.fields(cls) if "flag" in f.metadata]


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


# fields renamed since 0.1.0 (CHANGELOG.md): config.json written before reads the same
RENAMED_FIELDS = {"dtype": "autocast_dtype", "clip": "clip_mode", "clip_value": "grad_clip"}
# fields added since 0.1.0: a config.json written before has none, and gets the default
ADDED_FIELDS = {"ff_mult", "optimizer", "weight_drop", "embedding_dropout", "members", "ema"}
ADDED_FIELDS |= {"token_shift"}


def from_dict(cls: type, data: Any, strict: bool = False) -> Any:
    """Build a config from JSON, ignoring unknown keys written by a newer rnnlab.

    With ``strict`` (a file of a run directory, untrusted), every field must be present, so a
    damaged config.json is refused rather than half-read; types and ranges are checked by
    the class itself.

    Raises:
        ConfigError: ``data`` is not an object, a field is missing, or a value is invalid.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"the {cls.__name__} section must be a JSON object, got {type(data).__name__}"
        )
    data = {RENAMED_FIELDS.get(k, k): v for k, v in data.items()}
    fields = dataclasses.fields(cls)
    if strict:
        for name in set(FUSED_DEFAULTS) & set(data):  # null is not "the default" here
            if cls is ModelConfig and data[name] is None:
                raise ConfigError(f"ModelConfig.{name} must be a number, got null")
        for f in fields:
            if f.name not in data and f.name not in ADDED_FIELDS:
                raise ConfigError(f"{cls.__name__}.{f.name} is missing")
    names = {f.name for f in fields}
    return cls(**{k: v for k, v in data.items() if k in names})


LAB_TASKS = ("adding", "copy", "temporal-order")


@dataclass(frozen=True)
class LongRangeConfig:
    """How `rnnlab longrange` trains each (cell, length, seed) on a synthetic task. Defaults
    measured on a CPU: hidden 128, batch 64, Adam lr 1e-2, global-norm clipping at 1."""

    hidden_size: int = _opt(128, "--hidden", "units in the recurrent layer")
    batch_size: int = _opt(64, "--batch-size", "sequences per training step (fresh each step)")
    learning_rate: float = _opt(1e-2, "--lr", "Adam learning rate (constant)")
    steps: int = _opt(1500, "--steps", "training steps per run (the budget)")
    grad_clip: float = _opt(1.0, "--grad-clip", "gradient clipping threshold")
    clip_mode: str = _opt(
        "norm", "--clip-mode", "norm: global L2 norm; element: clamp each entry", CLIP_MODES
    )
    init: str = _opt("default", "--init", "initialization preset for the recurrent weights", INITS)
    forget_bias: float = _opt(
        0.0, "--forget-bias", "LSTM forget-gate bias at init (not chrono); 1 as char-rnn"
    )
    eval_every_steps: int = _opt(
        100, "--eval-every-steps", "steps between evaluations on the test set"
    )
    test_size: int = _opt(512, "--test-size", "held-out sequences in the test set")

    def __post_init__(self) -> None:
        _check_types(self)
        _check_range(self.hidden_size, 1, 4096, "--hidden")
        _check_range(self.batch_size, 1, MAX_BATCH, "--batch-size")
        _check(self.learning_rate > 0, f"--lr must be positive, got {self.learning_rate}")
        _check_range(self.learning_rate, 0, MAX_LR, "--lr")
        _check_range(self.steps, 1, 10**9, "--steps")
        _check(
            self.clip_mode in CLIP_MODES,
            f"--clip-mode must be one of {', '.join(CLIP_MODES)}, got {self.clip_mode!r}",
        )
        _check(self.grad_clip > 0, f"--grad-clip must be positive, got {self.grad_clip}")
        _check_range(self.grad_clip, 0, 1e9, "--grad-clip")
        _check(self.init in INITS, f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        _check_range(self.forget_bias, -1e3, 1e3, "--forget-bias")
        _check_range(self.eval_every_steps, 1, 10**9, "--eval-every-steps")
        _check_range(self.test_size, 1, 1_000_000, "--test-size")
