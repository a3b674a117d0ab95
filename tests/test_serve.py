"""`rnnlab serve`: the HTTP API in-process (FastAPI's TestClient), the shared batch driven
directly, and a client that disconnects mid-stream against a real uvicorn on loopback."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from serve_helpers import TEXT, Server, free_port, make_run, sse_events

from rnnlab import checkpoint, sampling
from rnnlab.serve import LOOPBACK_NAMES, Batcher, Job, Limits, create_app


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    return [make_run(tmp / "tiny"), make_run(tmp / "tiny-gru", cell="gru", seed=1)]


@pytest.fixture(scope="module")
def client(runs):
    with TestClient(create_app(runs, Limits(max_length=500, max_samples=4))) as c:
        yield c


def generate(client, **body) -> dict:
    r = client.post("/v1/generate", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def stream(client, **body) -> list[tuple[str, dict]]:
    with client.stream("POST", "/v1/generate", json=body | {"stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        return sse_events(r.iter_lines())


def test_health_models_docs_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny", "tiny-gru"]
    assert models[0]["best_val_bpc"] == 4.25 and models[1]["model"]["cell"] == "gru"
    schema = client.get("/openapi.json").json()
    assert {"/v1/generate", "/v1/score", "/v1/models", "/health"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "rnnlab playground" in page.text
    assert client.get("/assets/page.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/assets/../app.py").status_code == 404


def test_greedy_matches_the_library(client, runs):
    """Temperature 0 through the server == sampling.generate's greedy text (an oracle)."""
    model, vocab, _ = checkpoint.load_model(runs[0])
    expected = sampling.generate(model, vocab, "def ", length=80, temperature=0.0)[0]
    assert generate(client, prompt="def ", length=80, temperature=0)["samples"] == [expected]
    # top_k=1 keeps exactly the most likely character: greedy too
    got = generate(client, prompt="def ", length=80, temperature=1.0, top_k=1, seed=3)
    assert got["samples"] == [expected]


def test_seed_reproduces_and_samples_differ(client):
    a = generate(client, prompt="if ", length=120, seed=7, num_samples=3, top_p=0.9)
    b = generate(client, prompt="if ", length=120, seed=7, num_samples=3, top_p=0.9)
    assert a["samples"] == b["samples"] and a["seed"] == 7
    assert len(set(a["samples"])) == 3  # rows draw different noise
    assert all(len(s) == 120 for s in a["samples"])
    assert set("".join(a["samples"])) <= set(TEXT)
    c = generate(client, prompt="if ", length=120, seed=8)
    assert c["samples"][0] != a["samples"][0]


def test_same_seed_same_text_alone_or_beside_others(runs):
    """A request's text does not depend on who else is in the batch, or when it joined."""
    model, vocab, _ = checkpoint.load_model(runs[0])
    batcher = Batcher(model, vocab, max_rows=16)
    batcher.start()

    def job(seed: int, length: int, **kw) -> tuple[Job, list[str], threading.Event]:
        texts, done = [], threading.Event()

        def emit(e):
            if e["type"] == "token":
                texts.append(e["text"])
            else:
                done.set()

        settings = {"temperature": 1.0, "top_k": 0, "top_p": 1.0} | kw
        j = Job(
            vocab.encode("def "),
            1,
            length,
            seed=seed,
            details=False,
            deadline=time.monotonic() + 60,
            emit=emit,
            **settings,
        )
        assert batcher.reserve(1)
        return j, texts, done

    try:
        alone, text_alone, done = job(11, 300, top_p=0.95)
        batcher.submit(alone)
        assert done.wait(20)
        others = [job(s, 400, top_k=5) for s in range(5)]
        for o, _, _ in others[:3]:
            batcher.submit(o)
        while batcher.steps < 50 + 300:  # let the others run first, then join mid-way
            time.sleep(0.001)
        again, text_again, done = job(11, 300, top_p=0.95)
        batcher.submit(again)
        for o, _, _ in others[3:]:
            batcher.submit(o)
        assert done.wait(20)
        assert "".join(text_again) == "".join(text_alone)
        assert len(text_alone) == 300
        for _, _, d in others:
            assert d.wait(20)
        assert batcher.rows_in_flight == 0
    finally:
        batcher.close()


def test_streaming_events(client):
    events = stream(client, model="tiny-gru", prompt="x", length=40, seed=1, details=True)
    assert events[0][0] == "start" and events[0][1]["model"] == "tiny-gru"
    chars = [d for kind, d in events if kind == "message"]
    assert len(chars) == 40
    assert events[-1] == ("done", {"finish_reason": "length", "produced": 40})
    for d in chars:
        assert d["surprise_bits"] > 0 and len(d["top5"]) == 5
        probs = [p for _, p in d["top5"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-3
    text = "".join(d["text"] for d in chars)
    plain = generate(client, model="tiny-gru", prompt="x", length=40, seed=1)
    assert plain["samples"] == [text]  # the same request, streamed or not


def test_score_matches_the_model(client, runs):
    text = TEXT[:300]
    got = client.post("/v1/score", json={"text": text, "model": "tiny"}).json()
    model, vocab, _ = checkpoint.load_model(runs[0])
    ids = torch.tensor([vocab.encode(text)])
    with torch.no_grad():
        logp = model(ids[:, :-1])[0][0].double().log_softmax(-1)  # (N-1, V)
    bits = -logp.gather(1, ids[0, 1:, None])[:, 0] / torch.log(torch.tensor(2.0)).double()
    assert got["num_chars"] == 299 and got["surprise_bits"][0] is None
    assert abs(got["bpc"] - bits.mean().item()) < 1e-4
    assert (
        max(abs(a - b) for a, b in zip(got["surprise_bits"][1:], bits.tolist(), strict=True)) < 1e-4
    )


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"length": 501}, 422, "length is over the limit of 500"),
        ({"num_samples": 5}, 422, "num_samples is over the limit of 4"),
        ({"prompt": "d" * 4001}, 413, "prompt is over the limit"),
        ({"model": "../tiny"}, 404, "no model named '../tiny'; served: tiny, tiny-gru"),
        ({"prompt": "ZQ"}, 422, "not in the model's vocabulary"),
        ({"temperature": -1}, 422, "temperature: Input should be greater than or equal to 0"),
        ({"top_p": 0}, 422, "top_p"),
        ({"length": "many"}, 422, "length: Input should be a valid integer"),
        ({"colour": "red"}, 422, "colour: Extra inputs are not permitted"),
    ],
)
def test_refusals_are_one_line(client, body, status, words):
    r = client.post("/v1/generate", json=body)
    assert r.status_code == status
    error = r.json()["error"]
    assert words in error and "\n" not in error


def test_bad_json_and_big_bodies(client):
    r = client.post(
        "/v1/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json() == {"error": "the request body is not valid JSON"}
    r = client.post(
        "/v1/score", content=b"x" * 1_000_001, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert client.post("/v1/score", json={"text": "Z" * 20_001}).status_code == 413
    assert client.post("/v1/score", json={"text": "a"}).status_code == 422
    assert client.post("/v1/score", json={"text": "aZZ", "unknown": "skip"}).status_code == 422
    assert client.post("/v1/score", json={"text": "deZZf", "unknown": "skip"}).status_code == 200


def test_stream_and_time_limits(runs):
    limits = Limits(max_streams=2, max_request_s=0.05, max_length=2000)
    with TestClient(create_app(runs[:1], limits)) as c:
        r = c.post("/v1/generate", json={"num_samples": 3, "length": 5})
        assert r.status_code == 429 and "2 streams" in r.json()["error"]
        r = c.post("/v1/generate", json={"length": 2000})  # 2,000 steps do not fit in 50 ms
        assert r.status_code == 408 and "0.05 s limit" in r.json()["error"]
        events = sse_events(
            c.post("/v1/generate", json={"length": 2000, "stream": True}).iter_lines()
        )
        assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "time_limit"
        assert c.get("/health").json()["models"]["tiny"]["streams_in_flight"] == 0


def test_a_client_that_disconnects_frees_its_row(runs):
    limits = Limits(max_streams=1, max_length=2000, max_request_s=600)
    server = Server(create_app(runs[:1], limits))
    try:
        body = {"length": 2000, "stream": True, "seed": 0}
        with httpx.Client(base_url=server.url, timeout=10) as http:
            with http.stream("POST", "/v1/generate", json=body) as r:
                lines = r.iter_lines()
                got = [next(lines) for _ in range(20)]  # start, then characters arrive
                assert any(line.startswith('data: {"sample"') for line in got)
                busy = http.post("/v1/generate", json={"length": 5})
                assert busy.status_code == 429  # the one row is taken
            # closed mid-stream: the batcher drops the row at its next step
            deadline = time.monotonic() + 10
            while http.get("/health").json()["models"]["tiny"]["streams_in_flight"]:
                assert time.monotonic() < deadline, "the row was not freed"
                time.sleep(0.02)
            steps = http.get("/health").json()["models"]["tiny"]["steps"]
            assert steps < 2000  # it stopped early, not by finishing
            assert http.post("/v1/generate", json={"length": 5}).status_code == 200
    finally:
        server.stop()


def test_cli_serve_refuses_bad_input(tmp_path, runs, capsys):
    from rnnlab.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["serve", str(runs[0]), str(runs[0])]) == 2
    assert "two runs are named 'tiny'" in capsys.readouterr().err
    assert main(["serve", str(runs[0]), "--max-streams", "0"]) == 2
    assert "--max-streams must be > 0" in capsys.readouterr().err


def test_json_in_details_mode(client):
    got = generate(client, prompt="(", length=6, seed=2, details=True)
    assert len(got["details"][0]) == 6
    assert "".join(d["text"] for d in got["details"][0]) == got["samples"][0]
    json.dumps(got)  # plain JSON all the way down


def test_cli_serve_binds_loopback_and_says_so(runs, monkeypatch, capsys):
    from rnnlab.cli import main
    from rnnlab.cli import serve as serve_command

    calls = []

    def serve(app, sock):
        calls.append((app, sock.getsockname()[:2]))
        sock.close()

    monkeypatch.setattr(serve_command, "serve", serve)
    port = free_port()
    assert main(["serve", str(runs[0]), str(runs[1]), "--port", str(port)]) == 0
    app, address = calls[-1]
    assert address == ("127.0.0.1", port)
    assert list(app.state.served) == ["tiny", "tiny-gru"]
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}" in err and "loopback only" in err
    argv = ["serve", str(runs[0]), "--host", "0.0.0.0", "--port", str(port), "--max-streams", "3"]
    assert main(argv) == 0
    assert calls[-1][1][0] == "0.0.0.0" and calls[-1][0].state.limits.max_streams == 3
    assert "reachable from other machines" in capsys.readouterr().err


def test_cli_serve_refuses_a_port_in_use_or_a_bad_host_before_saying_serving(runs, capsys):
    import socket

    from rnnlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(runs[0]), "--port", str(port)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "in use" in err and "serving" not in err, err
    assert main(["serve", str(runs[0]), "--host", "no-such-host.invalid"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be resolved" in err, err


def test_a_signal_swallowed_while_loading_stops_serve_before_it_serves(runs, monkeypatch, capsys):
    import uvicorn

    from rnnlab import cli

    def swallowed(*args, **kwargs):  # as an optional import cut short by Ctrl-C would
        cli.SIGNALS.append(signal.SIGINT)
        return create_app(*args, **kwargs)

    def never(self, sockets=None):
        raise AssertionError("served after Ctrl-C")

    monkeypatch.setattr("rnnlab.serve.create_app", swallowed)
    monkeypatch.setattr(uvicorn.Server, "run", never)
    assert cli.main(["serve", str(runs[0]), "--port", str(free_port())]) == 130
    assert capsys.readouterr().err.strip().endswith("rnnlab: interrupted")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cli_serve_exits_143_or_130_after_a_signal(runs, sig, code):
    port = free_port()
    argv = [sys.executable, "-m", "rnnlab", "serve", str(runs[0]), "--port", str(port)]

    def as_from_a_terminal() -> None:
        # a test run started in the background (`cmd &`) ignores SIGINT, and so would the server
        # it starts (rnnlab keeps an ignored signal ignored, as nohup asks); a person's server
        # started from a terminal has it
        signal.signal(sig, signal.SIG_DFL)

    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal)
    try:
        assert "serving" in proc.stderr.readline()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # up: the page answers
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == code
    finally:
        proc.kill()
        proc.wait()


def readme_curl_examples() -> list[list[str]]:
    """The documentation's curl commands for the HTTP API (README and docs/), as argv lists."""
    root = Path(__file__).parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    return [
        shlex.split(line)
        for page in pages
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("curl ") and "localhost:8000/v1/" in line
    ]


def test_the_readme_examples_work_as_written_against_a_live_server(tmp_path):
    # a run that knows every character of the examples, served on loopback as `rnnlab serve`
    run = make_run(tmp_path / "tiny", text=TEXT + "import os\n")
    server = Server(create_app([run], allowed_hosts=LOOPBACK_NAMES))
    examples = readme_curl_examples()
    assert len(examples) >= 3
    try:
        for argv in examples:
            url = next(a for a in argv if a.startswith("localhost:8000/"))
            headers = dict(
                argv[i + 1].split(": ", 1) for i, a in enumerate(argv) if a == "-H"
            )  # fmt: skip
            body = argv[argv.index("-d") + 1]
            r = httpx.post(
                url.replace("localhost:8000", server.url), content=body, headers=headers,
                timeout=60,
            )  # fmt: skip
            assert r.status_code == 200, (argv, r.text)
            if json.loads(body).get("stream"):
                assert sse_events(r.text.splitlines())[-1][0] == "done"
    finally:
        server.stop()


def test_the_api_refuses_in_its_one_line_format(runs):
    app = create_app(runs[:1], Limits(max_streams=1), allowed_hosts=LOOPBACK_NAMES)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        r = c.post("/v1/generate", content='{"prompt": "d"}')  # curl -d: a form content type
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"]
        r = c.post("/v1/generate", json={}, headers={"host": "attacker.example:8000"})
        assert r.status_code == 400 and "attacker.example" in r.json()["error"]
        assert c.get("/health", headers={"host": "localhost:8000"}).status_code == 200
        for method, path, status in (("GET", "/nowhere", 404), ("GET", "/v1/generate", 405)):
            r = c.request(method, path)
            assert r.status_code == status and set(r.json()) == {"error"}, r.text
        for body in ({"length": True}, {"stream": "yes"}, {"num_samples": 1.0}):
            r = c.post("/v1/generate", json=body)
            assert r.status_code == 422 and set(r.json()) == {"error"}, (body, r.text)
        raw = b'{"temperature": Infinity}'
        r = c.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
        assert r.status_code in (400, 422) and "error" in r.json(), r.text
        r = c.post("/v1/generate", json={"num_samples": 2, "length": 5})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    "flag, value", [("--max-request-s", "inf"), ("--max-request-s", "nan"),
                    ("--max-length", str(10**12)), ("--max-streams", str(10**9))],
)  # fmt: skip
def test_cli_serve_limits_have_a_ceiling(runs, capsys, flag, value):
    from rnnlab.cli import main

    assert main(["serve", str(runs[0]), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "at most" in err, err
