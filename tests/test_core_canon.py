"""core.canon: the canonical JSON encoding every structured object is hashed in."""
import pytest

from e3logic.core import canon
from e3logic.core.hashing import hash_bytes


def test_keys_are_sorted_and_there_is_no_whitespace():
    assert canon.dumps({"b": 1, "a": [1, 2, {"d": None, "c": True}]}) == \
        b'{"a":[1,2,{"c":true,"d":null}],"b":1}'


def test_insertion_order_does_not_change_the_bytes():
    assert canon.dumps({"x": 1, "y": 2}) == canon.dumps({"y": 2, "x": 1})


def test_non_ascii_text_is_utf8_not_escaped():
    assert canon.dumps({"é": "ü"}) == '{"é":"ü"}'.encode("utf-8")


def test_nan_and_infinity_are_refused():
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            canon.dumps({"x": bad})


def test_digest_is_the_hash_of_the_canonical_bytes():
    v = {"e3": "tree", "entries": {}}
    assert canon.digest(v) == hash_bytes(canon.dumps(v))


def test_loads_round_trips_dumps():
    v = {"a": [1, 2.5, "x", None, {"b": False}]}
    assert canon.loads(canon.dumps(v)) == v
