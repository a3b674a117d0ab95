"""Generation under control: beam search, stop strings, allowed characters, a regular expression
the output must match. Oracles: greedy decoding, an exhaustive search over every short text, the
unconstrained sample cut by hand; constraints checked over many seeds (Hypothesis)."""

from __future__ import annotations

import itertools

import pytest
import regex
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import make_run

from rnnlab import cli
from rnnlab.config import ModelConfig
from rnnlab.errors import UsageError
from rnnlab.model import CharLM
from rnnlab.sampling import complete, generate, split_at_stop
from rnnlab.vocab import Vocab

VOCAB = Vocab.from_chars("abcdefgh \n,.")
MANY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tiny(cell="lstm", seed=0, vocab=VOCAB) -> CharLM:
    torch.manual_seed(seed)
    config = ModelConfig(
        cell=cell, num_layers=2, hidden_size=16, embedding_size=8, vocab_size=len(vocab)
    )
    return CharLM(config).eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_beam_of_width_1_is_greedy(cell):
    m = tiny(cell)
    for prompt in ("", "abc", "h,."):
        greedy = generate(m, VOCAB, prompt, length=50, temperature=0)
        assert generate(m, VOCAB, prompt, length=50, beam=1) == greedy


def test_a_wide_beam_finds_the_most_likely_text():
    """Width V^(L-1) keeps every prefix: beam search is then exact, so it must return the
    argmax over all V^L texts, scored independently by one full forward pass each."""
    vocab = Vocab.from_chars("abcd")
    m = tiny("gru", seed=3, vocab=vocab).double()
    prompt, L = "ab", 3
    texts = ["".join(t) for t in itertools.product("abcd", repeat=L)]
    ids = torch.tensor([vocab.encode(prompt + t) for t in texts])  # (N, P + L)
    with torch.no_grad():
        logp = m(ids[:, :-1])[0].log_softmax(-1)  # (N, P + L - 1, V)
    scores = logp.gather(2, ids[:, 1:, None])[:, len(prompt) - 1 :, 0].sum(1)  # (N,)
    best = scores.argsort(descending=True)[:3].tolist()
    found = complete(m, vocab, prompt, length=L, beam=16, num_samples=3)
    assert [c.text for c in found] == [texts[i] for i in best]
    for c, i in zip(found, best, strict=True):
        assert c.score == pytest.approx(scores[i].item() / L, rel=1e-9)  # mean per character


def test_beam_ranks_by_mean_log_probability_per_character():
    m = tiny()
    found = complete(m, VOCAB, "abc", length=40, beam=6, num_samples=6, stop=["d"])
    scores = [c.score for c in found]
    assert scores == sorted(scores, reverse=True)
    assert {c.finish_reason for c in found} <= {"stop", "length"}
    assert all("d" not in c.text for c in found)


@pytest.mark.parametrize(
    "text, stops, expected",
    [
        ("hello world", ["o w"], ("hell", "", True)),
        ("hello world", ["xyz", "lo"], ("hel", "", True)),  # the first occurrence wins
        ("hello wor", ["world"], ("hello ", "wor", False)),  # held: it may begin the stop
        ("hello", ["\n\n"], ("hello", "", False)),
        ("a\n", ["\n\n"], ("a", "\n", False)),
        ("", ["x"], ("", "", False)),
    ],
)
def test_split_at_stop(text, stops, expected):
    assert split_at_stop(text, stops) == expected


def test_stop_strings_cut_the_same_sample_before_the_stop():
    """A stop string changes only where the text ends: the same seed draws the same
    characters, and the output is the free sample up to the first stop string."""
    m = tiny()
    for seed in range(8):
        free = generate(m, VOCAB, "ab", length=300, temperature=1.0, seed=seed)[0]
        for stop in ("a", "  ", "\n", ".,", "hhhhhhhhhhh"):
            cut = complete(m, VOCAB, "ab", length=300, temperature=1.0, seed=seed, stop=[stop])
            assert cut[0].text == free.split(stop)[0]
            assert cut[0].finish_reason == ("stop" if stop in free else "length")
            streamed: list[str] = []
            generate(
                m,
                VOCAB,
                "ab",
                length=300,
                seed=seed,
                stop=[stop],
                on_text=lambda r, s, out=streamed: out.append(s),
            )
            assert "".join(streamed) == cut[0].text


PATTERNS = [
    r"(ab|cd)+ (e|f)+\.",
    r"[a-h]{3,9}(, [a-h]{2,4})*\.",
    r"(?:a|b)*c?(?:d|e)+",
    r"h(e|a)+",
    r"[^a]*",
]


@MANY
@given(
    pattern=st.sampled_from(PATTERNS),
    seed=st.integers(0, 2**31),
    temperature=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    top_k=st.sampled_from([0, 1, 3]),
    prompt=st.sampled_from(["", "ab", "hhh. "]),
)
def test_the_output_never_leaves_the_regex(pattern, seed, temperature, top_k, prompt):
    m = tiny()
    found = complete(
        m, VOCAB, prompt, length=60, temperature=temperature, top_k=top_k, seed=seed,
        num_samples=3, regex=pattern,
    )  # fmt: skip
    compiled = regex.compile(pattern)
    for c in found:
        assert compiled.fullmatch(c.text, partial=True), (pattern, c.text)
        if c.finish_reason == "stop":  # it ended early: the match is complete
            assert compiled.fullmatch(c.text)
        else:
            assert len(c.text) == 60


@MANY
@given(
    allowed=st.text(alphabet="abcdefgh \n,.", min_size=1, max_size=5),
    seed=st.integers(0, 2**31),
    beam=st.sampled_from([0, 0, 3]),
)
def test_the_output_uses_only_the_allowed_characters(allowed, seed, beam):
    m = tiny("gru")
    found = complete(m, VOCAB, "a", length=40, seed=seed, beam=beam, allowed_chars=allowed)
    assert set(found[0].text) <= set(allowed) and len(found[0].text) == 40


@MANY
@given(seed=st.integers(0, 2**31), beam=st.sampled_from([1, 4]))
def test_beam_search_keeps_to_the_regex(seed, beam):
    m = tiny(seed=seed % 5)
    pattern = PATTERNS[seed % len(PATTERNS)]
    for c in complete(m, VOCAB, "ab", length=30, beam=beam, regex=pattern, num_samples=beam):
        assert regex.fullmatch(pattern, c.text, partial=True)


def test_byte_mode_keeps_whole_characters():
    vocab = Vocab.bytes()
    m = tiny("gru", vocab=vocab)
    text = generate(m, vocab, "a", length=60, seed=0, allowed_chars="é€a")[0]
    assert set(text) <= set("é€a") and "\ufffd" not in text
    out = complete(m, vocab, "a", length=30, seed=1, regex="(é|x)+y")[0].text
    assert regex.fullmatch("(é|x)+y", out, partial=True)


def test_a_constraint_that_cannot_go_on_says_so():
    m = tiny()
    with pytest.raises(UsageError, match="no character of the vocabulary can continue"):
        generate(m, VOCAB, "a", length=10, seed=0, regex="abz")  # 'z' is not in the vocabulary
    with pytest.raises(UsageError, match="--regex"):
        generate(m, VOCAB, "a", length=10, regex="(unclosed")
    with pytest.raises(UsageError, match="--allowed-chars"):
        generate(m, VOCAB, "a", length=10, allowed_chars="xyz")
    # a complete match that nothing extends is an end, not an error
    assert (
        complete(m, VOCAB, "a", length=10, regex="abc")[0]
        == complete(m, VOCAB, "a", length=10, regex="abc", temperature=0)[0]
    )
    assert generate(m, VOCAB, "a", length=10, regex="abc") == ["abc"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("control") / "tiny")


def test_cli_controls(run_dir, capsys):
    assert cli.main(["sample", str(run_dir), "--length", "80", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    args = ["sample", str(run_dir), "--length", "80", "--beam", "1"]
    assert cli.main(args) == 0
    assert capsys.readouterr().out == greedy
    args = ["sample", str(run_dir), "--prompt", "def", "--length", "200", "--seed", "1"]
    assert cli.main([*args, "--stop", "\\n", "--stop", "zzz", "--regex", r"[a-z (),:\n]+"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("def") and "\n" not in out[:-1]  # the stop string was read as a newline
    assert cli.main([*args, "--allowed-chars", "ab\\n", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert set(data["samples"][0]) <= set("ab\n") and data["finish_reasons"] == ["length"]
    assert cli.main([*args, "--beam", "3", "--num-samples", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["samples"]) == 2 and data["scores"][0] >= data["scores"][1]


@pytest.mark.parametrize(
    "flags, needles",
    [
        (["--regex", "xyz"], ["no character of the vocabulary can continue", "--regex"]),
        (["--regex", "(a"], ["--regex", "not a valid pattern"]),
        (["--allowed-chars", "XYZ"], ["--allowed-chars", "none of"]),
        (["--beam", "2", "--stream"], ["--beam", "--stream"]),
        (["--beam", "2", "--top-k", "3"], ["--beam", "--top-k"]),
        (["--beam", "2", "--num-samples", "3"], ["--num-samples", "--beam"]),
        (["--beam", "-1"], ["--beam"]),
        (["--stop", ""], ["--stop"]),
    ],
)
def test_cli_errors_are_one_line_exit_2(run_dir, capsys, flags, needles):
    capsys.readouterr()
    assert cli.main(["sample", str(run_dir), "--length", "20", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rnnlab: error:"), err
    assert all(n in err for n in needles), err


# --- per-character log-probabilities (--logprobs K) --------------------------------------------


def forward_logprobs(m: CharLM, prompt: str, text: str) -> torch.Tensor:
    """The oracle: log-softmax of one full forward pass over prompt + text, at each generated
    position (V columns)."""
    ids = torch.tensor([VOCAB.encode(prompt + text)])
    with torch.no_grad():
        logp = m(ids[:, :-1])[0][0].double().log_softmax(-1)  # (P + N - 1, V)
    return logp[len(prompt) - 1 :]  # (N, V)


@pytest.mark.parametrize("beam", [0, 3])
def test_logprobs_are_the_models_own_distribution(beam):
    m = tiny("gru")
    found = complete(
        m, VOCAB, "abc", length=40, temperature=0.7, top_k=0 if beam else 4, seed=5,
        logprobs=3, stop=[".,"], beam=beam,
    )  # fmt: skip
    c = found[0]
    assert len(c.logprobs) == len(c.text)  # one per character handed over, none for the stop
    oracle = forward_logprobs(m, "abc", c.text)
    for t, (char, x) in enumerate(zip(c.text, c.logprobs, strict=True)):
        assert x.text == char
        assert x.logprob == pytest.approx(oracle[t, VOCAB.encode(char)[0]].item(), abs=1e-5)
        best = oracle[t].topk(3)
        assert "".join(s for s, _ in x.top) == VOCAB.decode(best.indices.tolist())
        assert [v for _, v in x.top] == pytest.approx(best.values.tolist(), abs=1e-5)


def test_logprobs_through_the_api_and_the_cli(run_dir, capsys):
    import json

    import rnnlab

    lm = rnnlab.load(run_dir)
    c = lm.complete("def", length=30, seed=2, logprobs=2, weights_dtype="float32")[0]
    assert isinstance(c, rnnlab.Completion) and len(c.logprobs) == 30
    assert c.text == lm.generate("def", length=30, seed=2, weights_dtype="float32")
    args = [
        "sample",
        str(run_dir),
        "--prompt",
        "def",
        "--length",
        "30",
        "--seed",
        "2",
        "--temperature",
        "1",
    ]
    assert cli.main([*args, "--weights-dtype", "float32", "--json", "--logprobs", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["samples"] == [c.text]
    first = data["logprobs"][0][0]
    assert first["text"] == c.text[0] and len(first["top"]) == 2
    assert first["logprob"] == pytest.approx(c.logprobs[0].logprob)
    assert cli.main([*args, "--logprobs", "2"]) == 2
    assert "--json" in capsys.readouterr().err
    assert cli.main([*args, "--json", "--logprobs", "101"]) == 2
    assert "--logprobs" in capsys.readouterr().err
