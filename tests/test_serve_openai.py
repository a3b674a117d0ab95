"""POST /v1/completions against the real ``openai`` client on loopback: the response and chunk
shapes of OpenAI's completions API, held to the library's own sampling as an oracle."""

from __future__ import annotations

import httpx
import pytest
from serve_helpers import Server, make_run

from rnnlab import checkpoint, sampling
from rnnlab.serve import Limits, create_app

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("openai") / "tiny")


@pytest.fixture(scope="module")
def server(run):
    s = Server(create_app([run], Limits(max_length=500, max_samples=4)))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_models_list_in_openais_shape(client):
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_a_completion_is_the_librarys_greedy_text(client, run):
    model, vocab, _ = checkpoint.load_model(run)
    expected = sampling.generate(model, vocab, "def ", length=40, temperature=0.0)[0]
    got = client.completions.create(model="tiny", prompt="def ", max_tokens=40, temperature=0)
    assert got.object == "text_completion" and got.model == "tiny" and got.id.startswith("cmpl-")
    assert got.created > 0 and len(got.choices) == 1
    choice = got.choices[0]
    assert choice.text == expected and choice.index == 0 and choice.finish_reason == "length"
    assert choice.logprobs is None
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (4, 40)
    assert got.usage.total_tokens == 44


def test_stop_n_seed_and_logprobs(client, run):
    model, vocab, _ = checkpoint.load_model(run)
    free = client.completions.create(
        model="tiny", prompt="if ", max_tokens=120, seed=5, n=3, top_p=0.9
    )
    again = client.completions.create(
        model="tiny", prompt="if ", max_tokens=120, seed=5, n=3, top_p=0.9
    )
    assert [c.text for c in free.choices] == [c.text for c in again.choices]
    assert [c.index for c in free.choices] == [0, 1, 2]
    stop = ["e", "\n"]
    cut = client.completions.create(
        model="tiny", prompt="if ", max_tokens=120, seed=5, n=3, top_p=0.9, stop=stop, logprobs=3
    )
    for whole, c in zip(free.choices, cut.choices, strict=True):
        expected, _, stopped = sampling.split_at_stop(whole.text, stop)
        assert c.text == expected and c.finish_reason == ("stop" if stopped else "length")
        lp = c.logprobs
        assert "".join(lp.tokens) == c.text and len(lp.token_logprobs) == len(c.text)
        assert all(len(top) == 3 for top in lp.top_logprobs)
        assert lp.text_offset == list(range(3, 3 + len(c.text)))
    # the log-probabilities are the model's own: the library's complete() says the same
    ours = sampling.complete(
        model, vocab, "if ", length=10, temperature=0, logprobs=2
    )[0].logprobs  # fmt: skip
    theirs = (
        client.completions.create(
            model="tiny", prompt="if ", max_tokens=10, temperature=0, logprobs=2
        )
        .choices[0]
        .logprobs
    )
    assert theirs.tokens == [x.text for x in ours]
    assert theirs.token_logprobs == pytest.approx([x.logprob for x in ours], abs=1e-5)
    assert [list(t) for t in theirs.top_logprobs] == [[c for c, _ in x.top] for x in ours]


def test_streaming_chunks_add_up_to_the_completion(client):
    args = dict(model="tiny", prompt="def ", max_tokens=60, seed=11, n=2, stop=["))"])
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True, logprobs=1))
    assert all(c.object == "text_completion" and c.model == "tiny" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    for choice in whole.choices:
        mine = [c.choices[0] for c in chunks if c.choices[0].index == choice.index]
        assert "".join(m.text for m in mine) == choice.text
        assert [m.finish_reason for m in mine][-1] == choice.finish_reason
        assert all(m.finish_reason is None for m in mine[:-1])
        assert sum(len(m.logprobs.tokens) for m in mine) == len(choice.text)


def test_the_raw_stream_ends_with_done(server):
    body = {"prompt": "x", "max_tokens": 5, "stream": True, "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(x.startswith("data: ") for x in lines)


@pytest.mark.parametrize(
    "args, needle",
    [
        (dict(max_tokens=10_000), "max_tokens"),
        (dict(n=9), "n x prompts"),
        (dict(echo=True), "echo"),
        (dict(logprobs=6), "logprobs"),
        (dict(stop=["a", "b", "c", "d", "e"]), "stop"),
        (dict(model="nope"), "no model named"),
        (dict(prompt="Zebra \u20ac"), "not in the model's vocabulary"),
    ],
)
def test_refusals_are_one_line_errors(client, args, needle):
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(**({"model": "tiny", "prompt": "def "} | args))
    assert 400 <= e.value.status_code < 500
    assert needle in str(e.value)
