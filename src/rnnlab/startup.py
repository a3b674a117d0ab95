"""Start or resume a run: every input checked, the checkpoint to continue from read and the
training plan made (plan.py), before anything is written; then the run directory's lock for
the one writer. training.py runs the loop on what this returns. Imports the layers below it;
never training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from . import finetune
from . import plan as planning
from .checkpoint import RunConfig, TrainingState
from .config import ConfigError, CorpusConfig, ModelConfig, TrainConfig
from .corpus import CorpusError
from .data import StreamBatches, TokenFile, split
from .distributed import Ranks, distributed
from .files import check_writable_dir
from .model import resolve_device
from .tokens import load_tokens
from .vocab import Vocab

DEFAULT_MINUTES = 3.0  # budget when neither --max-steps nor --minutes is given


def with_budget(train_config: TrainConfig) -> TrainConfig:
    """``train_config``, with DEFAULT_MINUTES when it has neither a step nor a time budget."""
    if train_config.max_steps is None and train_config.minutes is None:
        return dataclasses.replace(train_config, minutes=DEFAULT_MINUTES)
    return train_config


@dataclass(frozen=True)
class Start:
    """A run ready to train: its config, its tokens, and the checkpoint it continues from."""

    config: RunConfig
    tokens: TokenFile
    vocab: Vocab  # the corpus's own, or a fine-tuned run's (its base's, extended)
    batches: StreamBatches  # the training split as B streams
    val_ids: np.ndarray  # the validation split (its first eval_chars + 1 ids when asked)
    weights: dict[str, torch.Tensor] | None  # None: a fresh start (also a run killed before
    state: TrainingState | None  #            its first checkpoint, which starts over)
    resume: bool
    init_weights: dict[str, torch.Tensor] | None = None  # fine-tuning: the base run's weights
    plan: planning.Plan | None = None  # what the plan chose (a new run whose flags were planned)


def _check_new_out(out: Path) -> None:
    """``out`` may take a new run: absent, empty, or a run killed before its first checkpoint."""
    check_writable_dir(out, "--out")
    if out.is_dir():
        entries = {p.name for p in out.iterdir()} - {ckpt.LOCK}
        restartable = {ckpt.CONFIG, ckpt.VOCAB, ckpt.METRICS, ckpt.BEST, "curves.png"}
        leftovers = {n for n in entries if n.startswith(".") and n.endswith(".part")}
        # what rnnlab writes before a run's first checkpoint: a run stopped that early restarts
        if not entries - leftovers <= restartable:
            what = "a run" if ckpt.CONFIG in entries else "other files"
            raise ConfigError(
                f"{out} already holds {what}; resume it with --resume {out}, or pick another --out"
            )


def start_run(
    corpus: CorpusConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    resume: bool,
    ranks: Ranks,
    init_from: finetune.InitFrom | None = None,
    user: Collection[str] | None = None,
) -> Start:
    """Check every input and read the checkpoint to continue from; write nothing.

    On resume the run's own config is used, with a new budget if one is given (a new budget
    replaces the old one whole; none given: finish the run's own budget). A new run whose
    ``user`` fields are named is planned (plan.py): the fields the user did not set are chosen
    from the corpus, the budget and the measured speed of this device.
    """
    weights = state = None
    recorded_plan = None  # on resume, the plan in the run's config.json, kept as it was
    if resume:
        saved = ckpt.load_config(out)
        recorded_plan = saved.plan
        corpus, model_config = saved.corpus, saved.model
        given = {"max_steps": train_config.max_steps, "minutes": train_config.minutes}
        budget = given if any(v is not None for v in given.values()) else {}
        train_config = dataclasses.replace(saved.train, **budget)
        vocab = ckpt.load_vocab(out)
        if len(vocab) != model_config.vocab_size:
            raise ckpt.CheckpointError(f"{out}: vocab.json does not match config.json")
        found = ckpt.load_checkpoint(out, model_config)
        if found is not None:
            weights, state = found
    else:
        _check_new_out(out)
    train_config = with_budget(train_config)
    if train_config.batch_size % ranks.world:
        raise ConfigError(
            f"--batch-size {train_config.batch_size} does not divide among {ranks.world} "
            f"processes; use a multiple of {ranks.world}"
        )
    tokens = load_tokens(corpus, corpus.sha256 if resume else None, ranks)
    # fine-tuning: the base run's vocabulary (known characters keep their ids) and architecture
    tuned = finetune.prepare(init_from, out if resume else None, tokens.vocab)
    vocab = tuned.vocab if tuned is not None else tokens.vocab
    if tuned is not None and tuned.model_config is not None:
        model_config = tuned.model_config
    model_config = dataclasses.replace(model_config, vocab_size=len(vocab))
    source = Path(corpus.source).expanduser()
    if not resume and source.exists():  # so the run resumes from any working directory
        corpus = dataclasses.replace(corpus, source=str(source.resolve()))
    corpus = dataclasses.replace(corpus, sha256=tokens.sha256, num_chars=tokens.num_tokens)
    if state is not None and state.carried_state:
        batch = state.carried_state[0].shape[1]
        if batch != train_config.batch_size:
            raise ckpt.CheckpointError(
                f"{out}: the saved state is for {batch} streams, not {train_config.batch_size}"
            )
    cfg = train_config
    train_ids, val_ids = split(tokens.open(), cfg.val_fraction)
    if tuned is not None:  # the token file holds the text's own ids: move them into the run's
        train_ids, val_ids = tuned.remap(train_ids), tuned.remap(val_ids)
    if len(val_ids) < 2:
        raise CorpusError(
            "the validation split is under 2 characters; give more text or raise --val-fraction"
        )
    val_ids = val_ids[: cfg.eval_chars + 1] if cfg.eval_chars else val_ids
    plan = None
    if user is not None and not resume and tuned is None:
        model_config, cfg, plan = _plan(model_config, cfg, user, len(train_ids), ranks)
    batches = StreamBatches(train_ids, cfg.batch_size, cfg.seq_len, cfg.seed)
    config = RunConfig(model_config, cfg, corpus, plan.to_dict() if plan else recorded_plan)
    init_weights = tuned.weights if tuned is not None else None
    return Start(
        config, tokens, vocab, batches, val_ids, weights, state, resume, init_weights, plan
    )


def _plan(
    model_config: ModelConfig,
    train_config: TrainConfig,
    user: Collection[str],
    train_chars: int,
    ranks: Ranks,
) -> tuple[ModelConfig, TrainConfig, planning.Plan]:
    """plan.make_plan on this device; under torchrun rank 0 measures and the others take its
    plan, so every process builds the same model."""
    planned = None
    if ranks.main:
        device = resolve_device(train_config.device)

        def speed(m: ModelConfig, t: TrainConfig) -> float:
            return planning.measure_speed(m, t, device)

        planned = planning.make_plan(
            model_config, train_config, user, train_chars, speed, ranks.world
        )
    return ranks.object_from_main(planned)  # type: ignore[return-value]


def plan_only(
    corpus: CorpusConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    user: Collection[str],
) -> planning.Plan:
    """The plan a new run would make (``rnnlab train --plan-only``): the corpus is read and the
    candidates are timed, nothing is written into a run directory."""
    ranks = distributed()
    train_config = with_budget(train_config)
    tokens = load_tokens(corpus, None, ranks)
    model_config = dataclasses.replace(model_config, vocab_size=len(tokens.vocab))
    train_ids, _ = split(tokens.open(), train_config.val_fraction)
    return _plan(model_config, train_config, user, len(train_ids), ranks)[2]


@contextmanager
def writer(out: Path, ranks: Ranks, resume: bool) -> Iterator[None]:
    """Hold the run directory's lock (rank 0, the only writer) while training."""
    if not ranks.main:
        yield
        return
    if resume:
        ckpt.load_config(out)  # a missing or broken run fails here, before the lock is made
    else:  # start_run has checked the folder; the lock makes the second look final
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create --out {out} ({e.strerror}); pick another --out"
            ) from None
    with ckpt.RunLock(out):
        if not resume:
            _check_new_out(out)  # another process may have taken it since the first look
        yield
