"""core.hashing: BLAKE3-256 lowercase hex for bytes, streams and files of any size."""
import io

import pytest

from e3logic.core import hashing

EMPTY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # BLAKE3("")


def test_hash_of_empty_bytes_is_the_blake3_test_vector():
    assert hashing.hash_bytes(b"") == EMPTY


def test_hashes_are_64_lowercase_hex_characters():
    h = hashing.hash_bytes(b"abc")
    assert hashing.is_hash(h) and len(h) == 64 and h == h.lower()


def test_stream_and_bytes_agree_across_chunk_boundaries():
    data = bytes(range(256)) * 5000
    assert hashing.hash_stream(io.BytesIO(data), chunk=1000) == hashing.hash_bytes(data)


@pytest.mark.parametrize("size", [0, 1, hashing.CHUNK - 1, hashing.CHUNK + 1,
                                  8 * hashing.CHUNK - 1, 8 * hashing.CHUNK, 9 * hashing.CHUNK + 7])
def test_file_hash_equals_bytes_hash_on_both_sides_of_the_mmap_threshold(tmp_path, size):
    data = (b"e3logic-" * (size // 8 + 1))[:size]
    p = tmp_path / "f"
    p.write_bytes(data)
    assert hashing.hash_file(p) == hashing.hash_bytes(data)
    assert hashing.hash_file(p, mmap=False) == hashing.hash_bytes(data)


def test_hash_parts_is_unambiguous_about_field_boundaries():
    assert hashing.hash_parts(["ab", "c"]) != hashing.hash_parts(["a", "bc"])
    assert hashing.hash_parts(["ab", b"c"]) == hashing.hash_parts([b"ab", "c"])


def test_is_hash_rejects_wrong_length_uppercase_and_non_hex():
    h = hashing.hash_bytes(b"x")
    assert not hashing.is_hash(h[:-1])
    assert not hashing.is_hash(h.upper())
    assert not hashing.is_hash("g" * 64)
    assert not hashing.is_hash("")
