import os
import signal

import pytest
import safetensors.torch
import torch
from conftest import periodic_text, words_text

from rnnlab import checkpoint, training
from rnnlab.config import ConfigError, CorpusConfig, ModelConfig, TrainConfig
from rnnlab.corpus import CorpusError

SMALL = dict(hidden_size=24, num_layers=2, embedding_size=8)
FAST = dict(
    batch_size=4,
    seq_len=16,
    eval_every_s=1e9,
    sample_chars=20,
    autocast_dtype="float32",
    device="cpu",
    warmup_steps=5,
)


def run(tmp_path, text, out="run", resume=False, on_eval=None, model=None, **train):
    f = tmp_path / "corpus.txt"
    if not f.exists():
        f.write_text(text)
    return training.train(
        CorpusConfig(source=str(f)),
        ModelConfig(**(model or SMALL)),
        TrainConfig(**(FAST | train)),
        tmp_path / out,
        resume=resume,
        progress=False,
        on_eval=on_eval,
    )


def weights(path):
    return safetensors.torch.load_file(path)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
def test_each_cell_learns_a_periodic_text(tmp_path, cell):
    result = run(
        tmp_path, periodic_text(), model=SMALL | {"cell": cell}, max_steps=150, learning_rate=1e-2
    )
    assert result.stopped == "budget" and result.step == 150
    assert result.best_val_bpc < 0.1, result.best_val_bpc  # uniform would be log2(9) = 3.17


def test_run_directory_holds_format_1(tmp_path):
    run(tmp_path, words_text(), max_steps=12)
    d = tmp_path / "run"
    cfg = checkpoint.load_config(d)
    assert cfg.model.vocab_size == len(checkpoint.load_vocab(d))
    assert cfg.corpus.sha256 and cfg.corpus.num_chars == len(words_text())
    for name in (
        "config.json",
        "vocab.json",
        "model.safetensors",
        "last.safetensors",
        "metrics.jsonl",
    ):
        assert (d / name).is_file(), name
    events = checkpoint.read_metrics(d)
    assert {"step", "split", "bpc", "loss_nats", "elapsed_s"} <= set(events[-1])
    assert any(e["split"] == "train" and "chars_per_s" in e and "lr" in e for e in events)
    assert not (d / "train_state.pt").exists()  # the training state lives in last.safetensors
    _, state = checkpoint.load_checkpoint(d, cfg.model)
    assert state.step == 12 and state.metrics_bytes == (d / "metrics.jsonl").stat().st_size


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_ctrl_c_saves_and_resume_equals_uninterrupted(tmp_path, optimizer):
    """Dropout and weight drop on, so the RNG state must be restored too; Muon's momentum is
    saved beside AdamW's moments (optimizers.Combined)."""
    model = SMALL | {"cell": "lstm", "dropout": 0.1, "weight_drop": 0.2}
    common = dict(max_steps=40, eval_every_s=1e-9, optimizer=optimizer)  # save every step
    run(tmp_path, words_text(), out="straight", model=model, **common)

    def ctrl_c_at_17(event):
        if event.step == 17:
            os.kill(os.getpid(), signal.SIGINT)

    first = run(tmp_path, words_text(), out="cut", model=model, on_eval=ctrl_c_at_17, **common)
    assert first.stopped == "interrupted" and first.step == 17  # stops before the next step
    second = run(tmp_path, words_text(), out="cut", resume=True, max_steps=40)
    assert (
        second.step == 40 and checkpoint.load_config(tmp_path / "cut").train.optimizer == optimizer
    )
    a, b = (
        weights(tmp_path / "straight/last.safetensors"),
        weights(tmp_path / "cut/last.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [e["step"] for e in checkpoint.read_metrics(tmp_path / "cut") if e["split"] == "val"]
    assert steps == sorted(set(steps))  # no event written twice


def test_resume_extends_a_finished_run(tmp_path):
    run(tmp_path, words_text(), max_steps=10)
    result = run(tmp_path, words_text(), resume=True, max_steps=25)
    assert result.step == 25
    assert checkpoint.load_weights(tmp_path / "run/last.safetensors")[1] == 25


def test_resume_refuses_a_changed_corpus(tmp_path):
    run(tmp_path, words_text(), max_steps=5)
    (tmp_path / "corpus.txt").write_text(words_text(seed=1))
    with pytest.raises(CorpusError, match="changed"):
        run(tmp_path, "", resume=True, max_steps=10)


def test_non_finite_loss_never_overwrites_a_good_checkpoint(tmp_path, monkeypatch):
    run(tmp_path, words_text(), max_steps=10)
    good = weights(tmp_path / "run/last.safetensors")
    real = training.F.cross_entropy
    monkeypatch.setattr(training.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    result = run(tmp_path, words_text(), resume=True, max_steps=100)
    assert result.stopped == "diverged"
    after = weights(tmp_path / "run/last.safetensors")
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_existing_run_is_never_overwritten(tmp_path):
    from rnnlab.config import ConfigError

    run(tmp_path, words_text(), max_steps=5)
    before = (tmp_path / "run/last.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        run(tmp_path, words_text(), max_steps=5)
    assert (tmp_path / "run/last.safetensors").read_bytes() == before


MAKE_OPTIMIZER = training.make_optimizer


def largest_gradient_entries(monkeypatch, tmp_path, out, **train):
    """max |g| over all parameters at each optimizer step of a short run."""
    seen = []
    real = MAKE_OPTIMIZER

    def spying(model, cfg):
        optimizer = real(model, cfg)
        step = optimizer.step

        def recorded_step(*args, **kwargs):
            seen.append(max(float(p.grad.abs().max()) for p in model.parameters()))
            return step(*args, **kwargs)

        optimizer.step = recorded_step
        return optimizer

    monkeypatch.setattr(training, "make_optimizer", spying)
    run(tmp_path, words_text(), out=out, max_steps=4, **train)
    return seen


def test_element_clipping_clamps_every_gradient_entry(tmp_path, monkeypatch):
    free = largest_gradient_entries(monkeypatch, tmp_path, "free", clip_mode="none")
    clipped = largest_gradient_entries(
        monkeypatch, tmp_path, "clipped", clip_mode="element", grad_clip=1e-3
    )
    assert len(free) == len(clipped) == 4
    assert max(free) > 1e-3  # unclipped, some entry is larger than the threshold...
    assert max(clipped) <= 1e-3 * (1 + 1e-6)  # ...and element-wise clipping clamps them all


def test_minutes_budget_stops_the_run_once_spent(tmp_path):
    result = run(tmp_path, words_text(), minutes=0.001)
    assert result.stopped == "budget" and result.elapsed_s >= 0.06
    assert (tmp_path / "run/last.safetensors").is_file()


def test_resume_without_a_budget_finishes_the_runs_own(tmp_path):
    def stop_at_7(event):
        if event.step == 7:
            os.kill(os.getpid(), signal.SIGINT)

    run(tmp_path, words_text(), max_steps=20, eval_every_s=1e-9, on_eval=stop_at_7)
    f = tmp_path / "corpus.txt"
    result = training.train(
        CorpusConfig(source=str(f)),
        ModelConfig(),
        TrainConfig(),
        tmp_path / "run",
        resume=True,
        progress=False,
    )
    assert result.step == 20 and result.stopped == "budget"


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    run(tmp_path, words_text(), max_steps=8)
    d = tmp_path / "run"
    model, vocab, cfg = checkpoint.load_model(d, checkpoint.LAST)
    ids = torch.tensor([vocab.encode(words_text(lines=3))])
    before, _ = model(ids)
    checkpoint.save_weights(tmp_path / "copy.safetensors", model, step=8)
    twin = type(model)(cfg.model).eval()
    tensors, step = checkpoint.load_weights(tmp_path / "copy.safetensors")
    twin.load_state_dict(tensors)
    after, _ = twin(ids)
    assert step == 8 and torch.equal(before, after)


def test_ema_validates_keeps_the_average_and_resumes_exactly(tmp_path):
    """--ema: validation, the best weights and the samples use the moving average; the
    checkpoint carries it, so a Ctrl-C and a resume give the very run that was not stopped."""
    model = SMALL | {"cell": "lstm", "dropout": 0.1}
    common = dict(max_steps=30, eval_every_s=1e-9, ema=0.9)  # validate and save every step
    run(tmp_path, words_text(), out="straight", model=model, **common)

    def ctrl_c_at_17(event):
        if event.step == 17:
            os.kill(os.getpid(), signal.SIGINT)

    first = run(tmp_path, words_text(), out="cut", model=model, on_eval=ctrl_c_at_17, **common)
    assert first.stopped == "interrupted" and first.step == 17
    assert run(tmp_path, words_text(), out="cut", resume=True, max_steps=30).step == 30
    a, b = (weights(tmp_path / f"{d}/last.safetensors") for d in ("straight", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    average = {k[len("train_state.ema.") :]: v for k, v in a.items() if "ema." in k}
    raw = {k: v for k, v in a.items() if not k.startswith("train_state.")}
    assert average.keys() == raw.keys() and not all(torch.equal(average[k], raw[k]) for k in raw)
    best, step = checkpoint.load_weights(tmp_path / "straight/model.safetensors")
    if step == 30:  # the best validation was the last one: its weights are the average
        assert all(torch.equal(best[k], average[k]) for k in best)
    with pytest.raises(ConfigError, match="--ema"):
        TrainConfig(ema=1.0)
