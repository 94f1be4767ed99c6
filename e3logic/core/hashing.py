"""BLAKE3-256 hashing, lowercase hex. Every hash in e3logic comes from here."""
from __future__ import annotations

from typing import BinaryIO, Iterable

HEX_LEN = 64
CHUNK = 1 << 20


def _blake3():
    from blake3 import blake3  # lazy: keeps CLI start-up fast

    return blake3


def hash_bytes(data: bytes) -> str:
    """The object name of `data`: BLAKE3-256 lowercase hex."""
    return _blake3()(data).hexdigest()


def hash_stream(stream: BinaryIO, chunk: int = CHUNK) -> str:
    h = _blake3()()
    while True:
        block = stream.read(chunk)
        if not block:
            return h.hexdigest()
        h.update(block)


def hash_file(path, chunk: int = CHUNK, mmap: bool = True) -> str:
    """Hash a file without loading it in memory (multi-threaded for large files).

    Large files are hashed through an mmap by default (fastest). Pass `mmap=False` for files
    someone else may truncate meanwhile (a user's working copy): a shrinking mapped file would
    kill the process with SIGBUS, while reads just see the new size."""
    import os

    size = os.path.getsize(path)
    big = size >= 8 * CHUNK
    h = _blake3()(max_threads=_blake3().AUTO) if big else _blake3()()
    if big and mmap:
        h.update_mmap(str(path))
        return h.hexdigest()
    buf = bytearray(4 * CHUNK if big else chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                return h.hexdigest()
            h.update(view[:n])


def hash_parts(parts: Iterable[bytes | str]) -> str:
    """Hash a sequence of fields unambiguously (each length-prefixed)."""
    h = _blake3()()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def is_hash(s: str) -> bool:
    return len(s) == HEX_LEN and all(c in "0123456789abcdef" for c in s)
