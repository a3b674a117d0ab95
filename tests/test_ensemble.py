"""model.Ensemble (--members): independent networks whose averaged prediction is the model.
Each member learns from its own loss; the readers that take the whole ensemble (validation,
eval, sampling, resume) see the average, the others its first member."""

import dataclasses
import json
import os
import signal

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from conftest import words_text

from rnnlab import checkpoint, sampling, training
from rnnlab.bpc import loss_nats
from rnnlab.cells import StepDecoder
from rnnlab.cli import main
from rnnlab.config import ConfigError, CorpusConfig, ModelConfig, TrainConfig
from rnnlab.model import CharLM, Ensemble, build_model, count_parameters
from rnnlab.tokens import corpus_splits

SMALL = dict(hidden_size=24, num_layers=2, embedding_size=8, cell="lstm")
FAST = dict(
    batch_size=4,
    seq_len=16,
    sample_chars=20,
    autocast_dtype="float32",
    device="cpu",
    warmup_steps=5,
)


def run(tmp_path, out="run", resume=False, on_eval=None, model=None, **train):
    f = tmp_path / "corpus.txt"
    if not f.exists():
        f.write_text(words_text())
    return training.train(
        CorpusConfig(source=str(f)),
        ModelConfig(**(model or SMALL | {"members": 2})),
        TrainConfig(**(FAST | {"eval_every_s": 1e9} | train)),
        tmp_path / out,
        resume=resume,
        on_eval=on_eval,
    )


def test_the_prediction_is_the_average_of_the_members_and_the_state_carries():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, hidden_size=16, num_layers=2, members=3, cell="lstm")
    model = build_model(config).eval()
    assert isinstance(model, Ensemble) and len(model.members) == 3
    assert count_parameters(model) == 3 * count_parameters(model.members[0])
    ids = torch.randint(0, 11, (2, 9))
    logits, state = model(ids)
    average = torch.stack([F.softmax(m(ids)[0], -1) for m in model.members]).mean(0)
    assert torch.allclose(logits.exp(), average, atol=1e-6)
    assert len(state) == 6  # (h, c) of each member, one after the other
    first, carried = model(ids[:, :4])
    rest, _ = model(ids[:, 4:], carried)
    assert torch.allclose(torch.cat([first, rest], 1), logits, atol=1e-5)
    # members start apart: the same architecture, other weights
    a, b = (m.head.weight for m in model.members[:2])
    assert not torch.equal(a, b)
    assert isinstance(build_model(ModelConfig(vocab_size=11)), CharLM)


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
@pytest.mark.parametrize("batch", [1, 3])
def test_the_step_decoder_of_an_ensemble_equals_its_forward(cell, batch):
    torch.manual_seed(1)
    config = ModelConfig(vocab_size=13, hidden_size=16, num_layers=2, members=2, cell=cell)
    model = build_model(config).eval()
    ids = torch.randint(0, 13, (batch, 8))
    with torch.no_grad():
        expected, _ = model(ids)
    decoder = StepDecoder.from_model(model)
    layers = [list(s.unbind(0)) for s in model.init_state(batch)]
    steps = torch.stack([decoder.advance(ids[:, t], layers) for t in range(8)], 1)
    assert torch.allclose(steps, expected, atol=1e-5)


def test_members_are_a_flag_with_bounds():
    assert ModelConfig(members=4).members == 4
    with pytest.raises(ConfigError, match="--members"):
        ModelConfig(members=0)


def test_an_ensemble_run_trains_validates_on_the_average_and_resumes_exactly(tmp_path):
    """Ctrl-C at step 17 and a resume give the very weights of the run that was not stopped,
    dropout on (so the random state is restored too); the validation figure is the average's."""
    model = SMALL | {"members": 2, "dropout": 0.1}
    common = dict(max_steps=30, eval_every_s=1e-9, optimizer="muon")  # save every step
    straight = run(tmp_path, out="straight", model=model, **common)

    def ctrl_c_at_17(event):
        if event.step == 17:
            os.kill(os.getpid(), signal.SIGINT)

    first = run(tmp_path, out="cut", model=model, on_eval=ctrl_c_at_17, **common)
    assert first.stopped == "interrupted" and first.step == 17
    second = run(tmp_path, out="cut", resume=True, max_steps=30)
    assert second.step == 30
    a, b = (
        safetensors.torch.load_file(tmp_path / name / "last.safetensors")
        for name in ("straight", "cut")
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    best = safetensors.torch.load_file(tmp_path / "straight" / "model.safetensors")
    assert {k.split(".")[1] for k in best} == {"0", "1"}  # members.0.*, members.1.*
    assert all(k.startswith("members.") for k in best)

    d = tmp_path / "straight"
    ensemble, _, config = checkpoint.load_model(d, ensemble=True)
    assert isinstance(ensemble, Ensemble) and config.model.members == 2
    _, val = corpus_splits(config.corpus, config.train.val_fraction, "")
    nats = loss_nats(ensemble, val)
    assert nats == pytest.approx(straight.best_val_bpc * 0.6931471805599453, rel=1e-5)
    # averaging probabilities never loses to the members' mean loss (Jensen)
    alone = [loss_nats(m, val) for m in ensemble.members]
    assert nats <= sum(alone) / len(alone) + 1e-9
    # the readers of one network get the first member
    first_member, _, _ = checkpoint.load_model(d)
    assert isinstance(first_member, CharLM)
    assert torch.equal(first_member.head.weight, ensemble.members[0].head.weight)


def test_an_ensemble_run_samples_and_evaluates_from_the_command_line(tmp_path, capsys):
    run(tmp_path, max_steps=12)
    d = tmp_path / "run"
    model, vocab, _ = checkpoint.load_model(d, ensemble=True)
    text = sampling.generate(model, vocab, "the ", length=40, temperature=0.8, seed=0)[0]
    assert len(text) == 40 and set(text) <= set(vocab.symbols)
    assert main(["sample", str(d), "--length", "30", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out) >= 30  # the 30 characters (newlines among them)
    assert main(["eval", str(d), "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    _, val = corpus_splits(checkpoint.load_config(d).corpus, 0.1, "")
    assert report["loss_nats"] == pytest.approx(loss_nats(model, val), rel=1e-4)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_each_member_is_optimized_as_a_lone_model(optimizer):
    """An Ensemble's parameters are named "members.K.<name>"; each member's embedding and head
    still go to AdamW and only its hidden matrices to Muon, and one step moves member K exactly
    as it moves a lone CharLM with member K's weights."""
    from rnnlab.optimizers import make_optimizer

    cfg = TrainConfig(optimizer=optimizer, learning_rate=1e-2, weight_decay=0.1)
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, **SMALL, dropout=0.0)  # the same forward in both
    ensemble = Ensemble(dataclasses.replace(config, members=2))
    lone = CharLM(config)
    lone.load_state_dict(ensemble.members[1].state_dict())
    ids = torch.randint(0, 11, (3, 9))
    for model, logits_of in (
        (ensemble, lambda m: m(ids[:, :-1], separate=True)[0][1]),
        (lone, lambda m: m(ids[:, :-1])[0]),
    ):
        opt = make_optimizer(model, cfg)
        for _ in range(2):
            loss = F.cross_entropy(logits_of(model).flatten(0, 1), ids[:, 1:].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    for name, p in lone.named_parameters():
        torch.testing.assert_close(ensemble.members[1].get_parameter(name), p)
