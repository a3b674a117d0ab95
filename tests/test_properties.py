"""Hypothesis properties (issue 10): encoding round-trips any text or bytes, prompts either
sample or fail with UsageError, config and vocabulary JSON of any shape parses or fails with
UsageError (never another exception), and bits per character do not depend on the chunk length.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnlab.bpc import bits_per_char
from rnnlab.config import (
    FUSED_DEFAULTS,
    CorpusConfig,
    LongRangeConfig,
    ModelConfig,
    TrainConfig,
    cell_defaults,
    from_dict,
)
from rnnlab.data import encode_with
from rnnlab.errors import UsageError
from rnnlab.model import CharLM
from rnnlab.sampling import generate
from rnnlab.vocab import UnknownCharacterError, Vocab

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def encode_file(vocab: Vocab, pieces) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        return np.array(encode_with(vocab, pieces, Path(d) / "ids.bin"))


@FAST
@given(st.text())
def test_any_unicode_text_round_trips_through_its_vocabulary(text):
    vocab = Vocab.from_chars(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert encode_file(vocab, [text[: len(text) // 2], text[len(text) // 2 :]]).tolist() == ids
    assert Vocab.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


@FAST
@given(st.binary())
def test_any_bytes_round_trip_in_byte_mode(data):
    vocab = Vocab.bytes()
    assert encode_file(vocab, [data]).tolist() == list(data)
    assert vocab.decode(list(data)) == data.decode("utf-8", errors="replace")


@FAST
@given(st.text(), st.text(min_size=1, max_size=12))
def test_text_outside_the_vocabulary_is_listed_or_skipped(alphabet, text):
    vocab = Vocab.from_chars(alphabet + "a")
    unknown = set(text) - set(vocab.symbols)
    if unknown:
        with pytest.raises(UnknownCharacterError):
            vocab.encode(text)
    kept = vocab.encode(text, unknown="skip")
    assert vocab.decode(kept) == "".join(c for c in text if c not in unknown)


torch.manual_seed(0)
VOCAB = Vocab.from_chars("abcdefgh \n")
MODEL = CharLM(ModelConfig(vocab_size=len(VOCAB), hidden_size=8, num_layers=2, embedding_size=4))
MODEL = MODEL.double().eval()


@settings(max_examples=30, deadline=None)
@given(st.text(max_size=20), st.integers(0, 40), st.integers(0, 2**31))
def test_any_prompt_samples_or_fails_with_a_usage_error(prompt, length, seed):
    unknown = set(prompt) - set(VOCAB.symbols)
    if unknown:
        with pytest.raises(UnknownCharacterError):
            generate(MODEL, VOCAB, prompt, length=length, seed=seed)
    (text,) = generate(MODEL, VOCAB, prompt, length=length, seed=seed, unknown="skip")
    assert len(text) == length and set(text) <= set(VOCAB.symbols)
    again = generate(MODEL, VOCAB, prompt, length=length, seed=seed, unknown="skip")
    assert again == [text]


@FAST
@given(st.sampled_from([ModelConfig, TrainConfig, CorpusConfig, LongRangeConfig]), json_values)
def test_config_json_of_any_shape_parses_or_is_a_usage_error(cls, data):
    try:
        config = from_dict(cls, data)
    except UsageError:
        return
    assert isinstance(config, cls)


def config_dicts(cls):
    names = [f for f in cls.__dataclass_fields__]
    return st.dictionaries(st.sampled_from(names), json_values, max_size=len(names))


@FAST
@given(
    st.sampled_from([ModelConfig, TrainConfig, CorpusConfig, LongRangeConfig]).flatmap(
        lambda cls: st.tuples(st.just(cls), config_dicts(cls))
    )
)
def test_config_fields_of_any_value_parse_or_are_a_usage_error(cls_and_data):
    cls, data = cls_and_data
    try:
        config = from_dict(cls, data)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    for name, value in data.items():  # whatever was accepted is what the field holds
        if value is None and name in FUSED_DEFAULTS and cls is ModelConfig:
            value = cell_defaults(config.cell)[name]  # null: the cell's measured default
        assert getattr(config, name) == value or value != value


@FAST
@given(json_values | st.fixed_dictionaries({"mode": json_values, "symbols": json_values}))
def test_vocabulary_json_of_any_shape_parses_or_is_a_usage_error(data):
    try:
        vocab = Vocab.from_json(data)
    except UsageError:
        return
    assert Vocab.from_json(vocab.to_json()) == vocab


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(VOCAB) - 1), min_size=2, max_size=120), st.integers(1, 130))
def test_bits_per_char_do_not_depend_on_the_chunk_length(ids, chunk_len):
    ids = np.array(ids)
    whole = bits_per_char(MODEL, ids, chunk_len=len(ids))
    assert bits_per_char(MODEL, ids, chunk_len=chunk_len) == pytest.approx(whole, rel=1e-12)
