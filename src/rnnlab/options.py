"""The validated options of the commands that read a trained run or probe a fresh one (sample,
eval, gradflow); train and longrange take config.py's dataclasses. The CLI generates each flag
from a field here (``flag``, ``help``, ``choices`` in its metadata), so defaults and help have
one source, and ``__post_init__`` names the flag of any bad value. Stdlib only.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .config import CELLS, DEVICES, INITS, _check, _check_range, _check_types, _opt

UNKNOWN = ("error", "skip")
WEIGHTS = ("best", "last")
WEIGHTS_DTYPES = ("auto", "float32", "bfloat16", "int8")
NETS = ("rnn", "mlp")
MAX_NUM_SAMPLES = 4096  # rows decoded at once; each holds its own state and logits
MAX_LENGTH = 10**15  # per sample; sampling.iter_generate holds one block of it at a time
MAX_TEMPERATURE = 1e6
MAX_HELD_CHARS = 100_000_000  # several samples (or --json) are held whole until the end
MAX_CHUNK_LEN = 1 << 18  # eval: the logits of one chunk are chunk_len x V floats
MAX_PROBE_LENGTH = 10_000  # gradflow keeps every step's state for the backward pass
MAX_PROBE_HIDDEN = 4096
MAX_PROBE_BATCH = 4096
MAX_GAIN = 1000.0
MAX_TASK_LENGTH = 10_000  # longrange: T of a synthetic sequence
MAX_SEEDS = 1000
MAX_BEAM = 256  # hypotheses kept by beam search: rows of one batch
MAX_STOPS = 16  # stop strings, as many as a client could want
MAX_STOP_CHARS = 1000
MAX_LOGPROBS = 100  # top-K log-probabilities reported per character

_UNKNOWN_HELP = "characters outside the vocabulary: stop with a list, or drop them"
_WEIGHTS_HELP = "best-validation weights or those of the last step"


def _unknown() -> str:
    return _opt("error", "--unknown", _UNKNOWN_HELP, UNKNOWN)


def _weights() -> str:
    return _opt("best", "--weights", _WEIGHTS_HELP, WEIGHTS)


def _device() -> str:
    return _opt("cpu", "--device", "where to run", DEVICES)


def _check_choice(value: str, choices: tuple[str, ...], flag: str) -> None:
    _check(value in choices, f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def _integer(x: object) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_sampling(
    length: int, temperature: float, top_k: int, top_p: float, num_samples: int
) -> None:
    """The checks of generation's arguments, shared by SampleOptions and sampling.generate, so
    the CLI and the API say the same. Raises ConfigError (a UsageError) naming the flag."""
    _check(
        _integer(length) and 0 <= length <= MAX_LENGTH,
        f"--length must be between 0 and {MAX_LENGTH:,}, got {length}",
    )
    finite = _integer(temperature) or (
        isinstance(temperature, numbers.Real) and math.isfinite(temperature)
    )
    _check(
        finite and 0 <= temperature <= MAX_TEMPERATURE,
        f"--temperature must be a number from 0 (greedy) to {MAX_TEMPERATURE:g}, got {temperature}",
    )
    _check(_integer(top_k) and top_k >= 0, f"--top-k must be >= 0 (0 keeps all), got {top_k}")
    _check(
        isinstance(top_p, numbers.Real) and not isinstance(top_p, bool) and 0 < top_p <= 1,
        f"--top-p must be in (0, 1] (1 is off), got {top_p}",
    )
    _check(
        _integer(num_samples) and 1 <= num_samples <= MAX_NUM_SAMPLES,
        f"--num-samples must be between 1 and {MAX_NUM_SAMPLES:,}, got {num_samples}",
    )


def check_control(
    beam: int,
    stop: tuple[str, ...],
    allowed_chars: str | None,
    regex: str | None,
    logprobs: int,
    num_samples: int,
    top_k: int = 0,
    top_p: float = 1.0,
) -> None:
    """The checks of the controls on generation (beam, stop strings, allowed characters, regex,
    logprobs), shared by SampleOptions and sampling.generate. The regex itself is compiled in
    sampling (it needs the ``regex`` package). Raises ConfigError naming the flag."""
    _check(
        _integer(beam) and 0 <= beam <= MAX_BEAM,
        f"--beam must be between 0 (off: sample) and {MAX_BEAM}, got {beam}",
    )
    _check(
        beam == 0 or num_samples <= beam,
        f"--num-samples with --beam returns the best hypotheses: at most --beam ({beam}), "
        f"got {num_samples}",
    )
    _check(
        beam == 0 or (top_k == 0 and top_p >= 1.0),
        "--beam searches, it does not sample: drop --top-k and --top-p",
    )
    _check(
        isinstance(stop, (tuple, list)) and all(isinstance(s, str) and s for s in stop),
        f"--stop takes non-empty strings, got {stop!r}",
    )
    _check(len(stop) <= MAX_STOPS, f"--stop may be given at most {MAX_STOPS} times")
    _check(
        all(len(s) <= MAX_STOP_CHARS for s in stop),
        f"--stop strings are at most {MAX_STOP_CHARS:,} characters",
    )
    _check(
        allowed_chars is None or (isinstance(allowed_chars, str) and allowed_chars != ""),
        f"--allowed-chars takes the characters the output may use, got {allowed_chars!r}",
    )
    _check(regex is None or isinstance(regex, str), f"--regex takes a pattern, got {regex!r}")
    _check(
        _integer(logprobs) and 0 <= logprobs <= MAX_LOGPROBS,
        f"--logprobs must be between 0 (off) and {MAX_LOGPROBS}, got {logprobs}",
    )


@dataclass(frozen=True)
class SampleOptions:
    """How `rnnlab sample` generates (see sampling.generate)."""

    prompt: str = _opt("", "--prompt", "text to start from")
    length: int = _opt(1000, "--length", "characters to generate (written as they come)")
    temperature: float = _opt(0.8, "--temperature", "0 is greedy")
    top_k: int = _opt(0, "--top-k", "keep the k most likely (0: all)")
    top_p: float = _opt(1.0, "--top-p", "nucleus threshold (1: off)")
    seed: int | None = _opt(None, "--seed", "same seed, same text")
    num_samples: int = _opt(1, "--num-samples", "samples drawn in parallel")
    stream: bool = _opt(False, "--stream", "write each character as it comes, not 256 at a time")
    beam: int = _opt(
        0,
        "--beam",
        "beam search with N hypotheses instead of sampling, ranked by mean log-probability per "
        "character (temperature and seed do not apply; 0: sample)",
    )
    stop: tuple[str, ...] = _opt(
        (),
        "--stop",
        "end the output before this string (not included); \\n, \\t and \\\\ are read as escapes",
        many=True,
        shown="none",
    )
    allowed_chars: str | None = _opt(
        None, "--allowed-chars", "the only characters the output may use (escapes as --stop)"
    )
    regex: str | None = _opt(
        None,
        "--regex",
        "a pattern the output (not the prompt) must match in full: characters that would leave "
        "it are masked; ends once nothing can extend a complete match",
    )
    logprobs: int = _opt(
        0,
        "--logprobs",
        "with --json: each generated character's log-probability (nats, the model's own "
        "distribution) and the K most likely characters (0: off)",
    )
    weights_dtype: str = _opt(
        "auto",
        "--weights-dtype",
        "how the recurrent weights are stored while sampling: float32 is exact; int8 "
        "(weight-only, one scale per row) reads a quarter of the bytes, about 2x faster at "
        "batch 1, logits within about 1e-3; auto: on a CPU int8 for up to 8 samples, "
        "bfloat16 for more (where the CPU has it), float32 elsewhere",
        WEIGHTS_DTYPES,
    )
    unknown: str = _unknown()
    weights: str = _weights()
    device: str = _device()

    def __post_init__(self) -> None:
        _check_types(self)
        check_sampling(self.length, self.temperature, self.top_k, self.top_p, self.num_samples)
        check_control(
            self.beam,
            self.stop,
            self.allowed_chars,
            self.regex,
            self.logprobs,
            self.num_samples,
            self.top_k,
            self.top_p,
        )
        _check(
            self.beam * self.length <= MAX_HELD_CHARS,
            f"--beam x --length must be at most {MAX_HELD_CHARS:,} characters (every hypothesis "
            "is held); search a shorter text",
        )
        _check(
            not (self.stream and self.beam),
            "--beam knows its best text only at the end; drop --stream or --beam",
        )
        _check(
            self.seed is None or 0 <= self.seed < 2**63,
            f"--seed must be between 0 and {2**63 - 1}, got {self.seed}",
        )
        _check(
            self.num_samples == 1 or self.num_samples * self.length <= MAX_HELD_CHARS,
            f"--num-samples x --length must be at most {MAX_HELD_CHARS:,} characters (the "
            "samples are held until all are done); sample fewer or shorter",
        )
        _check(
            not (self.stream and self.num_samples != 1),
            "--stream writes one sample as it comes; drop --num-samples or --stream",
        )
        _check_choice(self.weights_dtype, WEIGHTS_DTYPES, "--weights-dtype")
        _check_choice(self.unknown, UNKNOWN, "--unknown")
        _check_choice(self.weights, WEIGHTS, "--weights")
        _check_choice(self.device, DEVICES, "--device")


@dataclass(frozen=True)
class EvalOptions:
    """How `rnnlab eval` scores a run (see evaluation.evaluate)."""

    chunk_len: int = _opt(8192, "--chunk-len", "characters per forward call (memory only)")
    quick: bool = _opt(
        False, "--quick", "only the uniform and unigram rungs (no n-grams, no compressors)"
    )
    exact: bool = _opt(
        False,
        "--exact",
        "one pass at batch 1, the state carried over the whole text (slow for LSTM/GRU/RNN; "
        "the default reads 64 segments side by side, each warmed up on the 512 characters "
        "before it: within 0.002 bpc of exact, measured; minGRU/minLSTM are always exact)",
    )
    unknown: str = _unknown()
    weights: str = _weights()
    device: str = _device()

    def __post_init__(self) -> None:
        _check_types(self)
        _check_range(self.chunk_len, 1, MAX_CHUNK_LEN, "--chunk-len")
        _check_choice(self.unknown, UNKNOWN, "--unknown")
        _check_choice(self.weights, WEIGHTS, "--weights")
        _check_choice(self.device, DEVICES, "--device")


def split_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (repeated flags arrive joined by commas)."""
    return [v.strip() for v in text.split(",") if v.strip()]


def _names(text: str, flag: str, choices: tuple[str, ...]) -> list[str]:
    values = split_list(text)
    wrong = [v for v in values if v not in choices]
    _check(
        bool(values) and not wrong,
        f"{flag} takes a comma-separated list of {', '.join(choices)}; got {text!r}",
    )
    return values


def _numbers(text: str, flag: str, lo: float, hi: float) -> list[float]:
    try:
        values = [float(v) for v in split_list(text)]
    except ValueError:
        values = []
    _check(bool(values), f"{flag} takes comma-separated numbers, got {text!r}")
    for v in values:
        _check_range(v, lo, hi, flag)
    return values


@dataclass(frozen=True)
class GradflowOptions:
    """What `rnnlab gradflow` probes (see lab.gradflow). The list fields take comma-separated
    values (the flags may also be repeated): every combination is probed and overlaid."""

    cell: str = _opt("rnn", "--cell", "cell(s)", repeat=True)
    init: str = _opt("default", "--init", "init preset(s)", repeat=True)
    gain: str = _opt("1", "--gain", "factor(s) on W_hh after init", repeat=True)
    net: str = _opt(
        "rnn",
        "--net",
        "rnn (T steps, tied weights) and/or mlp (--depth layers of the same cell, untied)",
        repeat=True,
    )
    forget_bias: str = _opt("1", "--forget-bias", "LSTM forget-gate bias(es)", repeat=True)
    length: int = _opt(100, "--length", "T: steps to backpropagate through")
    depth: int = _opt(0, "--depth", "layers of --net mlp (0: --length)")
    hidden: int = _opt(64, "--hidden", "units per layer")
    batch_size: int = _opt(16, "--batch-size", "sequences averaged over")
    seed: int = _opt(0, "--seed", "weights, inputs and readout")

    def __post_init__(self) -> None:
        _check_types(self)
        self.cells(), self.inits(), self.nets(), self.gains(), self.forget_biases()
        _check_range(self.length, 1, MAX_PROBE_LENGTH, "--length")
        _check_range(self.depth, 0, MAX_PROBE_LENGTH, "--depth")
        _check_range(self.hidden, 1, MAX_PROBE_HIDDEN, "--hidden")
        _check_range(self.batch_size, 1, MAX_PROBE_BATCH, "--batch-size")
        _check_range(self.seed, 0, 2**63 - 1, "--seed")

    def cells(self) -> list[str]:
        return _names(self.cell, "--cell", CELLS)

    def inits(self) -> list[str]:
        return _names(self.init, "--init", INITS)

    def nets(self) -> list[str]:
        return _names(self.net, "--net", NETS)

    def gains(self) -> list[float]:
        values = _numbers(self.gain, "--gain", 0, MAX_GAIN)
        _check(min(values) > 0, f"--gain must be positive, got {min(values)}")
        return values

    def forget_biases(self) -> list[float]:
        return _numbers(self.forget_bias, "--forget-bias", -1e3, 1e3)


@dataclass(frozen=True)
class SweepOptions:
    """Which runs `rnnlab longrange` makes (how each trains: config.LongRangeConfig)."""

    cells: str = _opt("rnn,lstm,gru", "--cells", "comma-separated cells to compare")
    lengths: str = _opt("50,100,200", "--lengths", "comma-separated sequence lengths T")
    seeds: int = _opt(1, "--seeds", "runs per (cell, length)")
    first_seed: int = _opt(0, "--first-seed", "seeds run: S, S+1, ..., S+k-1")
    until_solved: bool = _opt(False, "--until-solved", "stop a run at the first solved evaluation")

    def __post_init__(self) -> None:
        _check_types(self)
        self.cell_list(), self.length_list()
        _check_range(self.seeds, 1, MAX_SEEDS, "--seeds")
        _check_range(self.first_seed, 0, 2**62, "--first-seed")

    def cell_list(self) -> list[str]:
        return _names(self.cells, "--cells", CELLS)

    def length_list(self) -> list[int]:
        try:
            values = [int(v) for v in split_list(self.lengths)]
        except ValueError:
            values = []
        _check(
            bool(values) and all(1 <= v <= MAX_TASK_LENGTH for v in values),
            f"--lengths takes comma-separated integers from 1 to {MAX_TASK_LENGTH:,}, "
            f"got {self.lengths!r}",
        )
        return values
