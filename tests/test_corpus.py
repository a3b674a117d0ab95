import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from rnnlab import corpus
from rnnlab.corpus import CorpusError


def _read_all(c) -> str:
    return "".join(corpus.iter_text(c))


def test_file_and_folder_resolution_is_deterministic(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.md").write_text("second")
    (tmp_path / "a.md").write_text("first")
    (tmp_path / "skip.txt").write_text("not me")
    (tmp_path / ".hidden.md").write_text("hidden")
    c = corpus.resolve(str(tmp_path), "*.md")
    assert [f.name for f in c.files] == ["a.md", "two.md"]
    assert _read_all(c) == "first" + corpus.FILE_SEPARATOR + "second"
    single = corpus.resolve(str(tmp_path / "a.md"))
    assert single.files == (tmp_path / "a.md",) and single.name == "a"


def test_missing_path_names_the_named_corpora(tmp_path):
    with pytest.raises(CorpusError, match="shakespeare"):
        corpus.resolve(str(tmp_path / "nope.txt"))


def test_glob_that_matches_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CorpusError, match="--glob"):
        corpus.resolve(str(tmp_path), "*.md")


def test_invalid_utf8_points_to_bytes(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9 au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="--bytes"):
        _read_all(corpus.resolve(str(f)))
    raw = b"".join(corpus.iter_bytes(corpus.resolve(str(f))))
    assert raw == f.read_bytes()


def test_binary_file_is_refused(tmp_path):
    f = tmp_path / "blob.bin"
    f.write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(CorpusError, match="binary"):
        _read_all(corpus.resolve(str(f)))


def test_python_corpus_is_the_stdlib_without_tests():
    c = corpus.resolve(None)
    assert c.name == "python"
    names = {f.name for f in c.files}
    assert "os.py" in names and "json" in {f.parent.name for f in c.files}
    assert not any(part in ("test", "tests") for f in c.files for part in f.parts[-4:-1])
    assert list(c.files) == sorted(c.files)


class _Server:
    """A loopback HTTP server serving one payload."""

    def __init__(self, payload: bytes):
        body = payload

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/input.txt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_keeps_a_verified_file(tmp_path):
    payload = b"First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50
    server = _Server(payload)
    try:
        dest = tmp_path / "corpora" / "tiny.txt"
        got = corpus.download(server.url, dest, hashlib.sha256(payload).hexdigest())
        assert got == dest and dest.read_bytes() == payload
        assert not list(dest.parent.glob("*.part"))
    finally:
        server.close()


def test_download_with_wrong_checksum_keeps_nothing(tmp_path):
    server = _Server(b"tampered text")
    try:
        dest = tmp_path / "corpora" / "tiny.txt"
        with pytest.raises(CorpusError, match="sha256"):
            corpus.download(server.url, dest, "0" * 64)
        assert not dest.exists() and not list(dest.parent.iterdir())
    finally:
        server.close()


def test_named_corpus_download_once_then_cached(monkeypatch, tmp_path):
    payload = b"To be, or not to be\n" * 100
    server = _Server(payload)
    try:
        named = corpus.NamedCorpus(
            "mini",
            "test",
            url=server.url,
            sha256=hashlib.sha256(payload).hexdigest(),
            filename="mini.txt",
        )
        monkeypatch.setitem(corpus.NAMED, "mini", named)
        first = corpus.resolve("mini")
        assert first.files[0].read_bytes() == payload
    finally:
        server.close()
    # the server is gone: the cached copy is used, no network needed
    assert corpus.resolve("mini").files == first.files


def test_offline_message_says_how_to_pass_the_file(monkeypatch):
    # a loopback port with nothing listening: the connection is refused at once
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    named = corpus.NamedCorpus(
        "gone", "t", url=f"http://127.0.0.1:{port}/x.txt", sha256="0" * 64, filename="x.txt"
    )
    monkeypatch.setitem(corpus.NAMED, "gone", named)
    with pytest.raises(CorpusError, match=r"offline.*rnnlab train path/to/x.txt"):
        corpus.resolve("gone")


def test_files_are_read_in_bounded_pieces(tmp_path, monkeypatch):
    """A corpus larger than the read size is never read whole."""
    f = tmp_path / "big.txt"
    text = "héllo wörld, " * 5000  # 65 KB of mostly 1-byte and some 2-byte characters
    f.write_text(text)
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            sizes.append(n)
            return self.fh.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(corpus, "READ_CHUNK_BYTES", 1000)
    monkeypatch.setattr(corpus, "open", lambda p, m: Spy(real_open(p, m)), raising=False)
    assert _read_all(corpus.resolve(str(f))) == text
    assert sizes and all(0 < n <= 1000 for n in sizes)
    assert Path(f).stat().st_size > 50 * 1000
