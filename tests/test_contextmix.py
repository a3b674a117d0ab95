"""Context mixing (issue 22): the tables, the mixer, and the coder that uses them by default."""

import os
import shutil
import subprocess
import sys
from concurrent.futures import Future
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnlab import adaptive, ctxrun
from rnnlab import compression as C
from rnnlab import contextmix as cm
from rnnlab import rzformat as Z
from rnnlab.cli import main
from rnnlab.ctxtables import symbol_classes
from rnnlab.ctxtree import balanced_tree
from rnnlab.errors import UsageError
from rnnlab.model import CharLM, ModelConfig
from rnnlab.rzmodel import Stepper
from tests.conftest import train_tiny_runs, words_text

SYMBOLS = tuple("\n !',.?ABCabcdefghijklmnopqrstuvwxyz")


def ids_of(text: str) -> np.ndarray:
    index = {c: i for i, c in enumerate(SYMBOLS)}
    return np.array([index[c] for c in text if c in index], dtype=np.int64)


def small_config(**kw) -> cm.MixConfig:
    return cm.MixConfig(**{"table_bits": 10, **kw})


def read(tables: cm.ContextTables, ids: np.ndarray, streams: int = 3) -> np.ndarray:
    """The mixer's (N, V) predictions of ``ids`` read as ``streams`` pieces, from a network
    that knows nothing (uniform): row i predicts ids[i] (the first of each piece: uniform)."""
    n, V = len(ids), len(SYMBOLS)
    L = -(-n // streams)
    mixer = cm.Mixer(tables.copy(), streams)
    out = np.full((n, V), 1.0 / V)
    column = np.zeros(streams, dtype=np.int64)
    for t in range(L):
        active = min(streams, max(0, -(-(n - t) // L)))
        where = np.arange(active) * L + t
        if t:
            out[where] = mixer.predict(np.full((streams, V), 1.0 / V))[:active]
        column[:active] = ids[where]
        mixer.observe(column, active)
    return out


def test_counts_halve_a_row_instead_of_passing_255():
    tables = cm.ContextTables.empty(small_config(discount=0), SYMBOLS)
    rows = np.zeros((tables.config.tables, 1), dtype=np.uint64)  # hashes of row 0
    for _ in range(300):
        tables.update(rows, np.array([5]), 1)
    tables.update(rows, np.array([6]), 1)
    row = tables.counts[0, 0]
    assert row.max() <= 255 and 100 < row[5] < 255 and row[6] == 1


def test_a_count_halves_the_excess_of_the_rows_other_counts_over_the_discount():
    tables = cm.ContextTables.empty(small_config(discount=4), SYMBOLS)
    rows = np.zeros((tables.config.tables, 2), dtype=np.uint64)  # hashes of row 0
    for _ in range(3):
        tables.update(rows[:, :1], np.array([7]), 1)
    for _ in range(20):
        tables.update(rows[:, :1], np.array([5]), 1)
    assert tables.counts[0, 0, 5] == 20 and tables.counts[0, 0, 7] == 3  # 3 is under 4
    tables.update(rows[:, :1], np.array([6]), 1)  # 5 keeps 4 + (20 - 4) // 2; 7 is kept
    assert list(tables.counts[0, 0, 5:8]) == [12, 1, 3]
    tables.update(rows, np.array([5, 7]), 2)  # one row counted by two streams at once
    assert list(tables.counts[0, 0, 5:8]) == [13, 1, 4]  # neither discounted by the other


def context_hash(row: int, check: int, bits: int = 10) -> np.uint64:
    """A context hash that a table of 2**bits rows reads as ``row`` with ``check``."""
    return np.uint64((row << (64 - bits)) | (check << (56 - bits)))


def test_a_row_holds_one_context_and_a_new_one_takes_the_emptier_of_two_rows():
    tables = cm.ContextTables.empty(small_config(checks=1), SYMBOLS)
    M = tables.config.tables

    def update(h, symbol, times=1):
        for _ in range(times):
            tables.update(np.full((M, 1), h, dtype=np.uint64), np.array([symbol]), 1)

    def counts(h):
        return tables.lookup(np.full((M, 1), h, dtype=np.uint64))[0, 0]

    a, b, c = (context_hash(6, check) for check in (7, 9, 11))  # rows 6 and 7 for all three
    update(a, 5, times=3)
    assert counts(a)[5] == 3 and not counts(b).any()  # b's row is a's: b reads it as empty
    update(b, 2)  # b takes row 7, the emptier one; a keeps row 6
    assert counts(a)[5] == 3 and counts(b)[2] == 1 and tables.checks[0, 6:8].tolist() == [7, 9]
    update(c, 4)  # c takes b's row (one count against a's three), emptied first
    assert counts(a)[5] == 3 and not counts(b).any() and list(np.flatnonzero(counts(c))) == [4]
    update(context_hash(7, 13), 1)  # row 7 is the first choice of another pair: 6 and 7 again
    assert counts(a)[5] == 3


def test_the_mixer_predicts_before_it_sees_and_repeats_itself_exactly():
    text = ids_of(words_text(40))
    tables = cm.ContextTables.build(ids_of(words_text(200, seed=3)), SYMBOLS, small_config())
    first = read(tables, text)
    assert np.allclose(first.sum(axis=1), 1.0) and (first > 0).all()
    assert np.array_equal(first, read(tables, text))  # the same bits every time
    changed = text.copy()
    changed[100] = (changed[100] + 1) % len(SYMBOLS)
    other = read(tables, changed)
    L = -(-len(text) // 3)
    # stream 0 reads positions 0..L-1: up to and including 100 nothing of position 100 is known
    assert np.array_equal(first[:101], other[:101]) and L > 101
    assert not np.array_equal(first[101:L], other[101:L])


def test_tables_of_the_text_predict_it_better_than_a_network_alone():
    text = ids_of(words_text(60, seed=9))
    tables = cm.ContextTables.build(ids_of(words_text(300)), SYMBOLS, small_config())
    p = read(tables, text)
    bits = -np.log2(p[np.arange(len(text)), text]).mean()
    assert bits < 0.6 * np.log2(len(SYMBOLS))  # uniform: log2 V


def test_a_saved_table_file_is_checked_and_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(cm, "WARMUP_CHARS", 500)  # the mixer's state learned on the last 500
    tables = cm.build_tables(ids_of(words_text(50)), SYMBOLS, small_config())
    assert set(tables.learned) == set(cm.LEARNED) | {"match_map"}
    path = tmp_path / cm.CONTEXTS_FILE
    tables.save(path)
    back = cm.ContextTables.load(path, len(SYMBOLS), 10**8)
    assert back.sha256() == tables.sha256() and back.config == tables.config
    mixer = cm.Mixer(back, 2)  # starts from what the warm-up learned
    assert np.array_equal(mixer.apm, tables.learned["apm"])
    assert (mixer.weights[: cm.NETWORK_INPUTS].sum(axis=0) == cm.NETWORK_START).all()
    with pytest.raises(UsageError, match="limit"):
        cm.ContextTables.load(path, len(SYMBOLS), 1000)
    with pytest.raises(UsageError, match="damaged"):
        cm.ContextTables.load(path, len(SYMBOLS) + 1, 10**8)  # another vocabulary
    monkeypatch.setattr("rnnlab.ctxtables.FORMAT_VERSION", 5)  # as an earlier rnnlab wrote it
    tables.save(tmp_path / "old.safetensors")
    monkeypatch.undo()
    with pytest.raises(UsageError, match=r"another format \(rnnlab's tables are of format \d+\)"):
        cm.ContextTables.load(tmp_path / "old.safetensors", len(SYMBOLS), 10**8)
    blob = bytearray(path.read_bytes())
    blob[-7] ^= 0x40  # a count flipped
    path.write_bytes(bytes(blob))
    with pytest.raises(UsageError, match="damaged"):
        cm.ContextTables.load(path, len(SYMBOLS), 10**8)


@pytest.mark.slow
def test_compress_mixes_by_default_and_another_process_decodes_it(tmp_path, capsys):
    root = train_tiny_runs(tmp_path, {"run": "1"})
    run = root / "run"
    assert (run / cm.CONTEXTS_FILE).exists()  # the end of training made them
    text = tmp_path / "held_out.txt"
    text.write_text(words_text(30, seed=5))
    mixed, plain = tmp_path / "mixed.rz", tmp_path / "plain.rz"
    assert main(["compress", str(run), str(text), "-o", str(mixed), "--segments", "8"]) == 0
    assert "mixed with context tables" in capsys.readouterr().out
    assert main(["compress", str(run), str(text), "-o", str(plain), "--no-mix"]) == 0
    assert mixed.stat().st_size < plain.stat().st_size
    # mixed, the network steps on one torch thread and the mixer learns on another
    assert C.read_header(mixed.read_bytes())[0].threads == C.MIXED_THREADS == 1
    assert C.read_header(plain.read_bytes())[0].threads == C.THREADS == 2
    back = tmp_path / "back.txt"
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache")}
    done = subprocess.run(
        [sys.executable, "-m", "rnnlab", "decompress", str(run), str(mixed), "-o", str(back)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert back.read_bytes() == text.read_bytes()
    # a mixed file of format 11 (the head's sgd rule, all it could hold) reads as it did
    sgd = tmp_path / "sgd.rz"
    assert main(["compress", str(run), str(text), "-o", str(sgd), "--adapt-head-rule", "sgd"]) == 0
    header, payload = C.read_header(sgd.read_bytes())
    assert header.adapt.head_rule == "sgd" and header.mix is not None
    older = replace(header, format_version=11)
    sgd.write_bytes(Z.assemble(older, payload.astype("<u4").tobytes()))
    assert main(["decompress", str(run), str(sgd), "-o", str(back), "-f"]) == 0
    assert back.read_bytes() == text.read_bytes()
    # without the run's tables, or with other ones, the file is refused, not decoded wrongly
    moved = tmp_path / "elsewhere"
    shutil.move(run / cm.CONTEXTS_FILE, moved)
    assert main(["decompress", str(run), str(mixed), "-o", str(back), "-f"]) == 2
    assert "context tables" in capsys.readouterr().err
    assert main(["contexts", str(run), "--context-mb", "1"]) == 0  # larger: other tables
    again = ["decompress", str(run), str(mixed), "-o", str(back), "-f", "--context-mb", "1"]
    assert main(again) == 2
    assert "other context tables" in capsys.readouterr().err
    assert main(["contexts", str(run), "--context-mb", "0.001"]) == 2
    assert "too small" in capsys.readouterr().err


def test_the_mixer_learning_on_its_own_thread_gives_the_bits_of_learning_in_line(monkeypatch):
    """The Adapter's mixer learns from a position while the caller steps on (and writes its
    array of symbols again): every prediction is the one of a mixer that learned in line,
    whether the learning runs at once, on the thread, or as late as it can (when waited for)."""
    V, H, S = len(SYMBOLS), 16, 4
    tables = cm.ContextTables.build(ids_of(words_text(100)), SYMBOLS, small_config(match=4))
    torch.manual_seed(0)
    head_w, head_b = torch.randn(V, H), torch.zeros(V)
    text = ids_of(words_text(40, seed=7))[: 60 * S].reshape(60, S)
    feats = torch.randn(60, S, H)

    def predictions() -> list[np.ndarray]:
        adapter = adaptive.Adapter(head_w, head_b, adaptive.AdaptConfig(), S, 61, tables=tables)
        column, out = np.zeros(S, dtype=np.int64), []
        for t in range(60):
            column[:] = text[t]  # the same array, written before the last learning is waited for
            if t:
                out.append(adapter.predict(feats[t]).copy())
            adapter.observe(column, S)
        adapter.learned()
        return out

    class Later:  # runs what was submitted only when its result is asked for
        def submit(self, fn, *args):
            done = Future()
            done.result = lambda timeout=None: fn(*args)
            return done

    class InLine:
        def submit(self, fn, *args):
            done = Future()
            done.set_result(fn(*args))
            return done

    threaded = predictions()
    monkeypatch.setattr(adaptive, "_LEARNER", Later())
    later = predictions()
    monkeypatch.setattr(adaptive, "_LEARNER", InLine())
    in_line = predictions()
    assert len(in_line) == 59
    for other in (threaded, later):
        assert all(np.array_equal(a, b) for a, b in zip(other, in_line, strict=True))


def test_a_diverged_head_reaches_the_caller_as_nan_not_through_the_mixer():
    """NaN from an adapted head that diverged is left for eval and the coder to refuse (exit 3),
    not fed to the mixer, whose APM would index by it."""
    V, H, S = len(SYMBOLS), 16, 2
    tables = cm.ContextTables.build(ids_of(words_text(100)), SYMBOLS, small_config())
    adapter = adaptive.Adapter(torch.randn(V, H), torch.zeros(V), adaptive.AdaptConfig(), S, 4)
    adapter.mixer = cm.Mixer(tables.copy(), S)
    adapter.observe(np.zeros(S, dtype=np.int64), S)
    assert np.isfinite(adapter.predict(torch.randn(S, H))).all()
    adapter.observe(np.ones(S, dtype=np.int64), S)
    adapter.w[0, 0] = float("nan")
    assert np.isnan(adapter.predict(torch.randn(S, H))).any()


def test_a_transposed_distribution_reaches_the_coder_in_row_order():
    """constriction reads a probability array's buffer as rows whatever its strides: the mixer's
    Fortran-ordered output was once coded as other probabilities (a file six times larger)."""
    from rnnlab.rzmodel import quantize_probs

    p = np.random.default_rng(0).dirichlet(np.ones(7), size=5)
    freq = quantize_probs(np.asfortranarray(p))
    assert freq.flags.c_contiguous and (freq[:2] / 2.0**20).flags.c_contiguous
    assert np.array_equal(freq, quantize_probs(p))


def test_the_mixer_learns_to_follow_the_trained_network_where_the_adapted_one_strays():
    """The network's two inputs: where the adapted distribution says nothing (uniform) and the
    trained one names the next symbol, the mixed prediction comes to follow the trained one,
    and a prediction given one distribution alone reads it as both."""
    V, S = len(SYMBOLS), 3
    rng = np.random.default_rng(7)
    tables = cm.ContextTables.build(rng.integers(0, V, 4000), SYMBOLS, small_config())
    mixer = cm.Mixer(tables.copy(), S)
    text = rng.integers(0, V, (400, S))  # random: the tables know nothing of it
    uniform = np.full((S, V), 1.0 / V)
    mixer.observe(text[0], S)
    for t in range(1, len(text)):
        trained = np.full((S, V), 0.1 / (V - 1))
        trained[np.arange(S), text[t]] = 0.9
        p = mixer.predict(uniform, trained)
        mixer.observe(text[t], S)
    assert (p[np.arange(S), text[-1]] > 0.5).all()  # the first prediction gave it 1/V
    assert (mixer.weights[1] > mixer.weights[0]).any()
    one, both = cm.Mixer(tables.copy(), S), cm.Mixer(tables.copy(), S)
    one.observe(text[0], S)
    both.observe(text[0], S)
    assert np.array_equal(one.predict(trained), both.predict(trained, trained))
    assert not np.array_equal(one.predict(trained), both.predict(trained, uniform))


def test_a_large_vocabulary_shares_the_apm_of_its_rare_symbols():
    symbols = tuple(chr(0x100 + i) for i in range(300))
    ids = np.random.default_rng(1).integers(0, 300, 3000)
    tables = cm.ContextTables.build(ids, symbols, small_config(table_bits=8))
    mixer = cm.Mixer(tables, 4)
    assert mixer.apm.shape == (cm.APM_SYMBOLS + 1, 299, cm.APM_BUCKETS)
    mixer.observe(np.array([299, 5, 0, 200]), 4)  # rare symbols before: one shared map
    p = mixer.predict(np.full((4, 300), 1 / 300))
    assert np.allclose(p.sum(axis=1), 1.0) and (p > 0).all()
    mixer.observe(np.array([1, 2, 3, 4]), 4)  # learning reaches the shared map, in bounds


def test_a_branch_of_hundreds_of_full_counts_reads_as_full_not_wrapped():
    """Past 257 symbols a branch's counts can sum past uint16: with 516 symbols, each half of
    the root's 258 holds 257 x 255 + 11 = 65,546, which must read as full (255), not as 10."""
    V = 516
    symbols = tuple(chr(0x100 + i) for i in range(V))
    tables = cm.ContextTables.empty(small_config(table_bits=8, local_bits=0, checks=0), symbols)
    tables.counts[:] = 255
    tables.counts[:, :, [257, 515]] = 11
    tables.tree = balanced_tree(V)  # halves of 258 symbols at the root
    mixer = cm.Mixer(tables, 2)
    assert tuple(mixer.mid[:1]) == (258,)  # the root: 0..257 left, 258..515 right
    mixer.predict(np.full((2, V), 1 / V))
    root = mixer.pending[4][:, :, 0]  # (M, S): each table's state cell at the root
    assert (root == mixer.state_offsets[:, :, 0] + cm._STATE[(255 << 8) | 255]).all()


def test_a_deterministic_context_gives_its_input_a_second_time_and_others_zero():
    """Each table's second input is its first where one branch of the decision has counts and
    the other none, and 0 where both or neither have."""
    V = len(SYMBOLS)
    tables = cm.ContextTables.empty(small_config(local_bits=0, checks=0, match=0), SYMBOLS)
    mixer = cm.Mixer(tables, 1)
    M, N, net = mixer.M, mixer.N, cm.NETWORK_INPUTS
    tables.counts[0, :, :] = 0
    tables.counts[0, :, 5] = 7  # table 0: only symbol 5 seen in every context
    tables.counts[1, :, :] = 3  # table 1: every symbol seen
    mixer.ready = None
    mixer.predict(np.full((1, V), 1 / V))
    x = mixer.pending[0]
    first, second = x[net : net + M, 0], x[net + M : net + 2 * M, 0]  # (M, N)
    on_path = np.zeros(N, bool)
    nodes = mixer.path_nodes[5]
    on_path[nodes[nodes < N]] = True  # the decisions above symbol 5: one branch counted
    assert np.array_equal(second[0], np.where(on_path, first[0], 0))
    assert on_path.any() and (second[0][on_path] != 0).all()
    assert (second[1] == 0).all() and (second[2:] == 0).all()  # both counted / neither


def test_the_local_tables_count_only_the_text_read_and_are_never_saved(tmp_path):
    tables = cm.ContextTables.build(ids_of(words_text(100)), SYMBOLS, small_config(local_bits=9))
    mixer = cm.Mixer(tables.copy(), 3)
    assert mixer.local.counts.shape[1] == 2**9 and not mixer.local.counts.any()  # empty at first
    text = ids_of(words_text(20, seed=5))
    for t in range(0, 60, 3):
        if t:
            mixer.predict(np.full((3, len(SYMBOLS)), 1.0 / len(SYMBOLS)))
        mixer.observe(text[t : t + 3], 3)
    assert mixer.local.counts.any()
    tables.save(tmp_path / cm.CONTEXTS_FILE)
    assert (tmp_path / cm.CONTEXTS_FILE).stat().st_size < tables.reading_bytes  # not in the file


@pytest.mark.parametrize("budget", [2 * 10**5, 10**6, 3 * 10**6, 10**7])
def test_the_tables_fit_the_limit_in_memory_while_reading(budget):
    config = ctxrun._sized(cm.MixConfig(match=0), budget, len(SYMBOLS))  # the text apart
    tables = cm.ContextTables.empty(config, SYMBOLS)
    assert tables.reading_bytes <= budget
    # the local tables at half the rows, or a quarter where half would halve the saved ones
    assert config.local_bits in (0, config.table_bits - 1, config.table_bits - 2)
    quarter = config.table_bits - 1 if config.local_bits else 0  # of one more bit's rows
    bigger = replace(config, table_bits=config.table_bits + 1, local_bits=quarter)
    assert cm.ContextTables.empty(bigger, SYMBOLS).reading_bytes > budget


def test_the_line_contexts_see_the_line_above_and_the_lines_start():
    """Every other line repeats the one above with dots for spaces, in the same columns: the
    character above tells what comes, which no order-k context sees."""
    rng = np.random.default_rng(0)
    words = ["the", "fox", "a", "dog", "it"]
    rows = []
    for _ in range(120):
        row = " ".join(rng.choice(words, 6))
        rows += [row, row.replace(" ", ".")]
    text = ids_of("\n".join(rows) + "\n")
    train, held = text[: len(text) * 3 // 4], text[len(text) * 3 // 4 :]
    bits = {}
    for lines in (0, 1, 2):
        tables = cm.ContextTables.build(train, SYMBOLS, small_config(lines=lines))
        p = read(tables, held, streams=1)
        bits[lines] = -np.log2(p[np.arange(len(held)), held]).mean()
    assert bits[2] < 0.9 * bits[0] and bits[1] < bits[0]


def test_every_mixer_reads_only_its_own_weight_sets():
    tables = cm.ContextTables.empty(small_config(local_bits=9), SYMBOLS)
    mixer = cm.Mixer(tables, 3)
    ends = [*mixer.first_set[1:], mixer.weights.shape[1]]
    seen = [set() for _ in ends]
    V = len(SYMBOLS)
    for column in ids_of(words_text(30)).reshape(-1, 1)[:600]:
        mixer.predict(np.full((3, V), 1.0 / V))
        for k, (start, end) in enumerate(zip(mixer.first_set, ends, strict=True)):
            sel = start + mixer._mixer_context(k, np.minimum(mixer.previous, V - 1))
            assert ((start <= sel) & (sel < end)).all()
            seen[k].update(sel.tolist())
        mixer.observe(np.repeat(column, 3), 3)
    assert [len(s) > 1 for s in seen] == [False, True, True, True]  # one set, then several
    assert np.isin(symbol_classes(SYMBOLS), range(4)).all()


def test_each_pieces_first_symbol_reads_at_the_training_texts_frequencies():
    """No context precedes a segment's first symbol: mixed, it is coded (and scored) at the
    training text's frequencies, kept with the warm-up's state; without one, uniform."""
    ids = ids_of(words_text(200))
    V = len(SYMBOLS)
    tables = cm.build_tables(ids, SYMBOLS, small_config())
    first = cm.Mixer(tables.copy(), 2).first
    counts = np.bincount(ids, minlength=V)
    assert abs(first.sum() - 1) < 1e-12 and (first > 0).all()
    assert np.allclose(first, (counts + 0.5) / (counts + 0.5).sum())
    fresh = cm.ContextTables.build(ids, SYMBOLS, small_config())  # counts alone, no warm-up
    assert np.allclose(cm.Mixer(fresh, 2).first, 1 / V)
    torch.manual_seed(0)
    model = CharLM(ModelConfig(vocab_size=V, hidden_size=16, num_layers=1, embedding_size=8))
    stepper = Stepper(model.eval(), 4, 16, adapt=adaptive.AdaptConfig(), tables=tables)
    freq = stepper.first()
    assert freq.shape == (4, V) and (freq.sum(axis=1) == 1 << 16).all()
    assert (freq.argmax(axis=1) == counts.argmax()).all() and (freq > 0).all()
    # eval scores the first symbols as the coder codes them: at -log2 first, not log2 V
    text = ids_of(words_text(10, seed=3))
    uniform = tables.copy()
    uniform.learned["first"] = np.full(V, 1 / V)
    read = [
        adaptive.adaptive_bits_per_char(model, text, adaptive.AdaptConfig(), 4, tables=t)
        for t in (tables, uniform)
    ]
    assert read[0].unmixed_bpc == read[1].unmixed_bpc  # the network's own reading: uniform first
    starts = text[np.arange(4) * -(-len(text) // 4)]
    gain = (4 * np.log2(V) + np.log2(first[starts]).sum()) / len(text)
    assert gain > 0 and abs((read[1].bpc - read[0].bpc) - gain) < 1e-9
