"""Bundle zips: the deterministic distribution format of a package (docs/internals.md).

A bundle holds `e3package.json` (`{"format":1,"name","version","hash"}`) and `objects/<hash>`
for every object reachable from the package object. Writing is deterministic: entries sorted,
fixed timestamps (1980-01-01 00:00:00), fixed permissions (0644, unix), deflate at zlib's default
level, no comment and no extra fields — so identical objects give identical bytes (on one zlib).

Reading is defensive (`BundleReader`): every name is checked before anything is extracted
(absolute, `..`, backslashes, directories, symlinks, duplicates and unknown entries are
refused), the total decompressed size and the per-entry compression ratio are bounded, JSON
nesting is bounded, and each object is streamed through BLAKE3 and compared with its name,
never past the size it is expected to have. Every refusal is a `BadBundle` (exit 2) naming the
bundle and the entry. What the package object names and reaches is checked in `packages.py`.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from ..core import canon
from ..core.errors import BadBundle, UsageError
from ..core.hashing import is_hash
from ..core.paths import show
from .atomic import FSYNC

FORMAT = 1
MANIFEST = "e3package.json"
OBJECTS = "objects/"
DATE = (1980, 1, 1, 0, 0, 0)
MODE = 0o100644  # regular file, rw-r--r--
CHUNK = 1 << 20

#: defaults for import bounds (overridable per call and in e3.toml `[packages]`)
MAX_BYTES = 4 << 30          # total decompressed size of a bundle
MAX_RATIO = 200              # per-entry decompressed/compressed ratio ...
RATIO_MIN_SIZE = 1 << 20     # ... checked for entries larger than this

MAX_MANIFEST_BYTES = 1 << 16
MAX_JSON_DEPTH = 32          # nesting of the manifest and of package objects
REBUILD = "rebuild the bundle with 'e3 build' (or 'e3 export')"

_OBJ_NAME = re.compile(r"objects/([0-9a-f]{64})")


def bad(label: str, what: str, fix: str = REBUILD) -> BadBundle:
    """The one-line refusal of bundle `label`: `bundle x.zip: <what>; <fix>`."""
    return BadBundle(f"bundle {label}: {what}; {fix}")


def loads_bounded(data: bytes, label: str, what: str, max_depth: int = MAX_JSON_DEPTH):
    """Decode JSON `data` (the bundle's `what`), refusing invalid JSON and nesting deeper than
    `max_depth` (a deeply nested document must not exhaust the stack)."""
    try:
        value = canon.loads(data)
    except RecursionError:
        raise bad(label, f"{what} is nested too deeply (more than {max_depth} levels)") from None
    except (ValueError, UnicodeDecodeError):
        raise bad(label, f"{what} is not valid JSON") from None
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > max_depth:
                raise bad(label, f"{what} is nested too deeply (more than {max_depth} levels)")
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def manifest_bytes(name: str, version: str, h: str) -> bytes:
    return canon.dumps({"format": FORMAT, "name": name, "version": version, "hash": h})


def _zinfo(name: str, size: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=DATE)
    zi.create_system = 3
    zi.create_version = 20
    zi.extract_version = 20
    zi.external_attr = MODE << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.file_size = size  # decides zip64 up front, deterministically
    return zi


def write_bundle(dest: Path | str, name: str, version: str, package_hash: str,
                 hashes: Iterable[str], open_object: Callable[[str], BinaryIO],
                 size_of: Callable[[str], int], fsync: bool = FSYNC) -> Path:
    """Write a deterministic bundle zip to `dest` atomically (temp file beside it, rename).

    `hashes` are the objects to include (the package object among them); `open_object(h)`
    returns a binary stream of an object's bytes and `size_of(h)` its size, so large objects
    are streamed, never loaded in memory.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hs = sorted(set(hashes))
    if package_hash not in hs:
        raise UsageError(f"package object {package_hash[:12]} is missing from its bundle")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-", suffix=".zip.part")
    try:
        with os.fdopen(fd, "w+b") as f:
            with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
                man = manifest_bytes(name, version, package_hash)
                with zf.open(_zinfo(MANIFEST, len(man)), "w") as w:
                    w.write(man)
                for h in hs:  # "e3package.json" < "objects/…": entries are sorted
                    with open_object(h) as src, zf.open(_zinfo(OBJECTS + h, size_of(h)), "w") as w:
                        while True:
                            block = src.read(CHUNK)
                            if not block:
                                break
                            w.write(block)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return dest


class BundleReader:
    """A checked view of a bundle zip. Construction validates names, sizes and the manifest;
    nothing is extracted until `copy_object`."""

    def __init__(self, path: Path | str, max_bytes: int = MAX_BYTES, max_ratio: float = MAX_RATIO):
        self.path = Path(path)
        self.label = label = self.path.name
        if not self.path.is_file():
            raise UsageError(f"bundle '{self.path}' does not exist; check the path or build it "
                             f"with 'e3 build'")
        try:
            self.zf = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise bad(label, f"not a package bundle zip ({e})") from None
        try:
            self._check(label, max_bytes, max_ratio)
        except BaseException:
            self.zf.close()
            raise

    def _check(self, label: str, max_bytes: int, max_ratio: float) -> None:
        self.objects: dict[str, zipfile.ZipInfo] = {}
        seen: set[str] = set()
        manifest_info = None
        total = 0
        for info in self.zf.infolist():
            n = info.filename
            shown = show(n)
            if n.startswith("/") or n.startswith("\\") or re.match(r"^[A-Za-z]:", n):
                raise bad(label, f"absolute entry name {shown}",
                          "only install bundles made by 'e3 build' or 'e3 export'")
            parts = re.split(r"[/\\]", n)
            if ".." in parts or "\\" in n:
                raise bad(label, f"path-traversal entry name {shown}",
                          "only install bundles made by 'e3 build' or 'e3 export'")
            if n in seen:
                raise bad(label, f"two entries named {shown}")
            seen.add(n)
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or kind == stat.S_IFDIR:
                raise bad(label, f"directory entry {shown}")
            if kind == stat.S_IFLNK:
                raise bad(label, f"symlink entry {shown}")
            if kind not in (0, stat.S_IFREG):
                raise bad(label, f"special-file entry {shown}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise bad(label, f"entry {shown} uses an unsupported compression method")
            if info.flag_bits & 0x1:
                raise bad(label, f"entry {shown} is encrypted")
            if info.file_size > RATIO_MIN_SIZE and (
                    info.compress_size <= 0 or info.file_size / info.compress_size > max_ratio):
                raise bad(label, f"entry {shown} expands {info.file_size} bytes from "
                          f"{info.compress_size} (ratio over {max_ratio:g}), a possible zip bomb",
                          "raise [packages] max_ratio in e3.toml if you trust it")
            total += info.file_size
            if total > max_bytes:
                raise bad(label, f"it decompresses to more than {max_bytes} bytes",
                          "raise [packages] max_bundle_bytes in e3.toml if you trust it")
            if n == MANIFEST:
                manifest_info = info
                continue
            m = _OBJ_NAME.fullmatch(n)
            if not m:
                raise bad(label, f"unexpected entry {shown} (a bundle holds only {MANIFEST} "
                          f"and objects/<hash>)")
            self.objects[m.group(1)] = info
        if manifest_info is None:
            raise bad(label, f"it has no {MANIFEST}")
        if manifest_info.file_size > MAX_MANIFEST_BYTES:
            raise bad(label, f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        man = loads_bounded(self._read_small(manifest_info), label, MANIFEST)
        if (not isinstance(man, dict) or man.get("format") != FORMAT
                or not all(isinstance(man.get(k), str) for k in ("name", "version", "hash"))):
            raise bad(label, f"{MANIFEST} is not a format-{FORMAT} manifest with name, version "
                      f"and hash", "rebuild the bundle with this e3's 'e3 build'")
        if not is_hash(man["hash"]):
            raise bad(label, f"manifest hash {show(man['hash'])} is not a BLAKE3-256 hex digest")
        if man["hash"] not in self.objects:
            raise bad(label, f"it lacks its package object {man['hash'][:12]}")
        self.manifest = man
        self.name, self.version, self.hash = man["name"], man["version"], man["hash"]
        self.total_bytes = total

    def _read_small(self, info: zipfile.ZipInfo) -> bytes:
        try:
            return self.zf.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
            raise bad(self.label, f"entry {show(info.filename)} is corrupt ({e})") from None

    def size(self, h: str) -> int:
        """The decompressed size object `h`'s entry declares."""
        return self.objects[h].file_size

    def read_object(self, h: str, limit: int = 64 << 20, what: str = "a structured object") -> bytes:
        """Bytes of a (small, structured) object, verified against its hash."""
        from ..core.hashing import hash_bytes

        info = self.objects[h]
        if info.file_size > limit:
            raise bad(self.label, f"object {h[:12]} is {info.file_size} bytes, too large for "
                      f"{what} (at most {limit})")
        data = self._read_small(info)
        if len(data) != info.file_size or hash_bytes(data) != h:
            raise bad(self.label, _mismatch(h))
        return data

    def copy_object(self, h: str, dest: BinaryIO | None, expected: int | None = None) -> int:
        """Stream object `h` into `dest` (or only hash it when `dest` is None), verifying its
        hash; returns its size. Stops as soon as more than `expected` bytes (default: the size
        its entry declares) come out. Raises BadBundle on any mismatch or corruption."""
        from ..core.hashing import _blake3

        info = self.objects[h]
        limit = info.file_size if expected is None else expected
        hasher = _blake3()()
        size = 0
        try:
            with self.zf.open(info) as src:
                while True:
                    block = src.read(min(CHUNK, limit - size + 1))
                    if not block:
                        break
                    size += len(block)
                    if size > limit:
                        raise bad(self.label, f"object {h[:12]} expands past the {limit} bytes "
                                  f"declared for it")
                    hasher.update(block)
                    if dest is not None:
                        dest.write(block)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as e:
            raise bad(self.label, f"entry {show(info.filename)} is corrupt ({e})") from None
        if size != limit or hasher.hexdigest() != h:
            raise bad(self.label, _mismatch(h))
        return size

    def close(self) -> None:
        self.zf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _mismatch(h: str) -> str:
    return f"object {h[:12]} does not match its hash (the bundle is corrupt or was tampered with)"
