import pytest

from rnnlab.vocab import UnknownCharacterError, Vocab


def test_char_round_trip_and_sorted_ids():
    v = Vocab.from_chars("héllo wörld\n")
    assert list(v.symbols) == sorted(set("héllo wörld\n"))
    ids = v.encode("wörld héllo")
    assert v.decode(ids) == "wörld héllo"


def test_unknown_characters_error_lists_them_and_skip_drops_them():
    v = Vocab.from_chars("abc")
    with pytest.raises(UnknownCharacterError) as e:
        v.encode("abxyx")
    assert "'x'" in str(e.value) and "'y'" in str(e.value) and "--unknown skip" in str(e.value)
    assert v.decode(v.encode("abxyc", unknown="skip")) == "abc"


def test_byte_mode_accepts_anything():
    v = Vocab.bytes()
    assert len(v) == 256
    assert v.encode("é") == [0xC3, 0xA9]
    assert v.decode([0xC3, 0xA9]) == "é"
    assert v.unknown("any 文字") == []


def test_json_round_trip():
    for v in (Vocab.from_chars("ba\n"), Vocab.bytes()):
        assert Vocab.from_json(v.to_json()) == v


def test_json_rejects_repeated_symbols_and_keeps_an_extended_order():
    with pytest.raises(ValueError):
        Vocab.from_json({"mode": "char", "symbols": ["a", "b", "a"]})
    # a fine-tuned run appends new characters after its base's: ids are kept, order too
    v = Vocab.from_json({"mode": "char", "symbols": ["a", "c", "b"]})
    assert v.encode("abc") == [0, 2, 1] and v.decode([2, 1]) == "bc"
