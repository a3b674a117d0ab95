import numpy as np
import pytest
import torch

from rnnlab import corpus
from rnnlab.data import DataError, StreamBatches, encode, split, token_dtype


def encode_corpus(c, byte_mode=False, directory=None):
    read = corpus.iter_bytes if byte_mode else corpus.iter_text
    return encode(lambda: read(c), byte_mode, c.fingerprint(), directory)


def test_token_file_matches_the_text_and_is_reused(tmp_path, monkeypatch):
    f = tmp_path / "t.txt"
    text = "naïve café: ĉu vi? 文字\n" * 200
    f.write_text(text)
    monkeypatch.setattr(corpus, "READ_CHUNK_BYTES", 64)  # many chunks, split inside characters
    tokens = encode_corpus(corpus.resolve(str(f)), directory=tmp_path / "cache")
    ids = tokens.open()
    assert isinstance(ids, np.memmap) and ids.dtype == np.uint8
    assert tokens.vocab.decode(ids.tolist()) == text
    mtime = tokens.path.stat().st_mtime_ns
    again = encode_corpus(corpus.resolve(str(f)), directory=tmp_path / "cache")
    assert again.path == tokens.path and again.path.stat().st_mtime_ns == mtime


def test_byte_mode_token_file_is_the_raw_bytes(tmp_path):
    f = tmp_path / "t.bin"
    f.write_bytes(bytes(range(1, 256)) * 4)
    tokens = encode_corpus(corpus.resolve(str(f)), byte_mode=True, directory=tmp_path)
    assert bytes(tokens.open()) == f.read_bytes()
    assert len(tokens.vocab) == 256


def test_empty_corpus_is_an_error(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("")
    with pytest.raises(DataError, match="empty"):
        encode_corpus(corpus.resolve(str(f)), directory=tmp_path)


def test_dtype_grows_with_the_vocabulary():
    assert token_dtype(65) == np.uint8
    assert token_dtype(300) == np.uint16
    assert token_dtype(70_000) == np.uint32


def test_split_is_head_and_tail():
    ids = np.arange(100)
    train, val = split(ids, 0.1)
    assert len(train) == 90 and val[0] == 90 and val[-1] == 99


def test_streams_continue_from_step_to_step():
    ids = np.arange(10_000)
    b = StreamBatches(ids, batch_size=4, seq_len=10, seed=0)
    x0, y0 = b.batch(0)
    x1, _ = b.batch(1)
    assert x0.shape == (4, 10)
    assert (y0[:, :-1] == x0[:, 1:]).all()  # targets are the next characters
    assert (x1[:, 0] == x0[:, -1] + 1).all()  # row b of step 1 continues row b of step 0
    assert (x0[1:, 0] - x0[:-1, 0] == b.stream_len).all()  # rows are far-apart streams


def test_epochs_shift_the_chunk_boundaries_deterministically():
    ids = np.arange(5_000)
    b = StreamBatches(ids, batch_size=2, seq_len=16, seed=3)
    n = b.steps_per_epoch
    assert b.starts_epoch(n) and not b.starts_epoch(n + 1)
    firsts = {int(b.batch(e * n)[0][0, 0]) for e in range(1, 6)}
    assert len(firsts) > 1  # the offset moves between epochs
    assert (b.batch(3 * n)[0] == StreamBatches(ids, 2, 16, 3).batch(3 * n)[0]).all()


def test_too_short_corpus_says_what_fits():
    with pytest.raises(DataError, match=r"--batch-size 3 or less"):
        StreamBatches(np.arange(1000), batch_size=64, seq_len=128, seed=0)
    with pytest.raises(DataError, match=r"--seq-len 4 or less"):
        StreamBatches(np.arange(10), batch_size=1, seq_len=128, seed=0)


def test_state_resets_follow_from_the_step_alone():
    b = StreamBatches(np.arange(100_000), batch_size=64, seq_len=8, seed=1)
    masks = [b.resets(step, 0.05) for step in range(200)]
    assert all(m.shape == (64,) and m.dtype == torch.bool for m in masks)
    assert abs(torch.stack(masks).float().mean().item() - 0.05) < 0.01
    again = StreamBatches(np.arange(100_000), batch_size=64, seq_len=8, seed=1)
    assert torch.equal(again.resets(123, 0.05), masks[123])
    assert not b.resets(5, 0.0).any()
