"""Forging hostile bundles for tests: take a real bundle made by `e3 build`, change its package
object or trees, rebuild every hash on the way up so the result is internally "valid" (each
object hashes to its name), and write it back as a deterministic bundle zip.

    forge(src, dest, lambda f: f.put_dataset(["inputs", "../../victim.txt"], b"pwned"))
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from e3logic.core import canon
from e3logic.core.hashing import hash_bytes
from e3logic.repo.bundle import write_bundle


class Forge:
    """A bundle's objects in memory: `pkg` (the package object, a dict) and `objects`
    {hash: bytes}. Change them, then `write` rebuilds the package object's hash."""

    def __init__(self, src: Path):
        with zipfile.ZipFile(src) as zf:
            self.manifest = json.loads(zf.read("e3package.json"))
            self.objects = {n[len("objects/"):]: zf.read(n) for n in zf.namelist()
                            if n.startswith("objects/")}
        self.pkg = canon.loads(self.objects.pop(self.manifest["hash"]))
        self.extra: list[tuple[str, bytes]] = []  # raw zip entries added as they are

    # -- objects ---------------------------------------------------------------------------
    def put(self, data: bytes) -> str:
        h = hash_bytes(data)
        self.objects[h] = data
        return h

    def blob(self, data: bytes, fmt: str = "raw") -> dict:
        return {"kind": "blob", "hash": self.put(data), "format": fmt, "size": len(data)}

    def tree(self, entries: dict) -> dict:
        return {"kind": "tree", "hash": self.put(canon.dumps({"e3": "tree", "entries": entries}))}

    def entries(self, h: str) -> dict:
        return dict(canon.loads(self.objects[h])["entries"])

    def put_entry(self, which: str, names: list[str], entry: dict) -> None:
        """Set the entry at raw entry names `names` (each one tree entry, used as given: '..'
        or 'a/b' are single entries) below the `which` tree ('datasets' or 'modules'),
        making the trees on the way."""
        def go(h: str | None, rest: list[str]) -> dict:
            ents = self.entries(h) if h else {}
            if len(rest) == 1:
                ents[rest[0]] = entry
            else:
                sub = ents.get(rest[0])
                ents[rest[0]] = go(sub["hash"] if sub and sub["kind"] == "tree" else None, rest[1:])
            return self.tree(ents)

        self.pkg[which] = go(self.pkg[which]["hash"], names)

    def put_dataset(self, names: list[str], data: bytes) -> None:
        self.put_entry("datasets", names, self.blob(data))

    # -- writing ---------------------------------------------------------------------------
    def write(self, dest: Path, name: str | None = None, version: str | None = None) -> Path:
        pkg_bytes = canon.dumps(self.pkg)
        h = hash_bytes(pkg_bytes)
        objs = dict(self.objects)
        objs[h] = pkg_bytes
        dest = write_bundle(dest, name or self.pkg["name"], version or self.pkg["version"], h,
                            objs, lambda x: io.BytesIO(objs[x]), lambda x: len(objs[x]))
        if self.extra:
            with zipfile.ZipFile(dest, "a", zipfile.ZIP_DEFLATED) as zf:
                for n, data in self.extra:
                    zf.writestr(n, data)
        return dest


def forge(src, dest, change) -> Path:
    """Copy bundle `src` to `dest`, with `change(Forge)` applied and hashes rebuilt."""
    f = Forge(Path(src))
    change(f)
    return f.write(Path(dest))


def rewrite_zip(src, dest, change) -> Path:
    """Copy zip `src` to `dest` entry by entry: `change(name, data)` returns the new bytes,
    or None to drop the entry."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
    return Path(dest)


def unreferenced_objects_bundle(src, dest, count: int, size: int = 1 << 20) -> Path:
    """`src` plus `count` valid objects of `size` bytes (highly compressible) that its
    package does not reference."""
    f = Forge(Path(src))
    dest = f.write(Path(dest))
    with zipfile.ZipFile(dest, "a", zipfile.ZIP_DEFLATED) as zf:
        for i in range(count):
            data = i.to_bytes(8, "big") + bytes(size - 8)
            zi = zipfile.ZipInfo(f"objects/{hash_bytes(data)}", date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o100644 << 16
            zf.writestr(zi, data)
    return dest


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth
