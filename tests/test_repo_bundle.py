"""Bundle zips: deterministic writing, defensive reading."""
from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

import pytest

from e3logic.core import canon
from e3logic.core.errors import IntegrityError, UsageError
from e3logic.core.hashing import hash_bytes
from e3logic.repo.bundle import BundleReader, manifest_bytes, write_bundle
from e3logic.repo.objects import MemoryStore


def objects(n: int = 3) -> tuple[MemoryStore, str]:
    store = MemoryStore()
    for i in range(n):
        store.write(f"object {i}\n".encode())
    pkg = store.write(canon.dumps({"e3": "package", "name": "demo", "version": "0.1.0"}))
    return store, pkg


def write(store: MemoryStore, pkg: str, dest: Path) -> Path:
    return write_bundle(dest, "demo", "0.1.0", pkg, list(store), lambda h: io.BytesIO(store.read(h)),
                        lambda h: len(store.read(h)))


def forge(dest: Path, entries: list[tuple], manifest: dict | None = None) -> Path:
    """A zip with arbitrary entries: (name, bytes[, unix mode])."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        if manifest is not None:
            zf.writestr("e3package.json", json.dumps(manifest))
        for e in entries:
            zi = zipfile.ZipInfo(e[0])
            zi.compress_type = zipfile.ZIP_DEFLATED
            if len(e) > 2:
                zi.external_attr = e[2] << 16
            zf.writestr(zi, e[1])
    return dest


def test_write_bundle_is_byte_identical_for_the_same_objects(tmp_path):
    store, pkg = objects()
    a = write(store, pkg, tmp_path / "a.zip").read_bytes()
    b = write(store, pkg, tmp_path / "sub" / "b.zip").read_bytes()
    assert a == b


def test_write_bundle_entries_are_sorted_with_fixed_times_and_modes(tmp_path):
    store, pkg = objects()
    with zipfile.ZipFile(write(store, pkg, tmp_path / "a.zip")) as zf:
        names = zf.namelist()
        assert names == ["e3package.json"] + sorted(f"objects/{h}" for h in store)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100644}
        assert zf.read("e3package.json") == manifest_bytes("demo", "0.1.0", pkg)


def test_write_bundle_leaves_no_temp_file_behind(tmp_path):
    store, pkg = objects()
    write(store, pkg, tmp_path / "a.zip")
    assert [p.name for p in tmp_path.iterdir()] == ["a.zip"]


def test_reader_accepts_a_written_bundle_and_verifies_objects(tmp_path):
    store, pkg = objects()
    with BundleReader(write(store, pkg, tmp_path / "a.zip")) as b:
        assert (b.name, b.version, b.hash) == ("demo", "0.1.0", pkg)
        assert sorted(b.objects) == sorted(store)
        out = io.BytesIO()
        h = sorted(store)[0]
        assert b.copy_object(h, out) == len(store.read(h)) and out.getvalue() == store.read(h)


def _manifest(h: str) -> dict:
    return {"format": 1, "name": "demo", "version": "0.1.0", "hash": h}


@pytest.mark.parametrize("name,needle", [
    ("../evil", "path-traversal entry name '../evil'"),
    ("objects/../../evil", "path-traversal"),
    ("/etc/passwd", "absolute entry name '/etc/passwd'"),
    ("C:/x", "absolute entry name"),
    ("objects\\..\\x", "path-traversal"),
    ("objects/notahash", "unexpected entry 'objects/notahash'"),
    ("README", "unexpected entry 'README'"),
])
def test_reader_refuses_bad_entry_names(tmp_path, name, needle):
    data = b"x"
    h = hash_bytes(data)
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", data), (name, b"evil")], _manifest(h))
    with pytest.raises(IntegrityError, match=needle):
        BundleReader(z)


def test_reader_refuses_symlink_entries(tmp_path):
    h = hash_bytes(b"/etc/passwd")
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"/etc/passwd", stat.S_IFLNK | 0o777)],
              _manifest(h))
    with pytest.raises(IntegrityError, match="symlink entry"):
        BundleReader(z)


def test_reader_refuses_directory_entries(tmp_path):
    h = hash_bytes(b"x")
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"x"), ("objects/", b"")], _manifest(h))
    with pytest.raises(IntegrityError, match="directory entry"):
        BundleReader(z)


def test_reader_refuses_duplicate_entries(tmp_path):
    h = hash_bytes(b"x")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"x"), (f"objects/{h}", b"y")], _manifest(h))
    with pytest.raises(IntegrityError, match="two entries named"):
        BundleReader(z)


def test_reader_bounds_the_total_decompressed_size(tmp_path):
    data = bytes(range(256)) * 64
    h = hash_bytes(data)
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", data)], _manifest(h))
    with pytest.raises(IntegrityError, match="decompresses to more than 1000 bytes"):
        BundleReader(z, max_bytes=1000)
    assert BundleReader(z).total_bytes > 1000


def test_reader_bounds_the_per_entry_compression_ratio(tmp_path):
    data = b"\0" * (4 << 20)  # 4 MiB of zeros deflates about 1000:1
    h = hash_bytes(data)
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", data)], _manifest(h))
    with pytest.raises(IntegrityError, match="possible zip bomb"):
        BundleReader(z)
    BundleReader(z, max_ratio=5000).close()


@pytest.mark.parametrize("manifest,needle", [
    (None, "has no e3package.json"),
    ({"format": 2, "name": "a", "version": "1.0.0", "hash": "0" * 64}, "not a format-1 manifest"),
    ({"format": 1, "name": "a", "version": "1.0.0", "hash": "zz"}, "not a BLAKE3-256 hex digest"),
    ({"format": 1, "name": "a", "version": "1.0.0", "hash": "0" * 64}, "lacks its package object"),
])
def test_reader_refuses_a_missing_or_bad_manifest(tmp_path, manifest, needle):
    h = hash_bytes(b"x")
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"x")], manifest)
    with pytest.raises(IntegrityError, match=needle):
        BundleReader(z)


def test_copy_object_refuses_bytes_that_do_not_match_their_name(tmp_path):
    h = hash_bytes(b"the real bytes")
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"forged bytes!!")], _manifest(h))
    with BundleReader(z) as b, pytest.raises(IntegrityError, match="does not match its hash"):
        b.copy_object(h, io.BytesIO())


def test_a_file_that_is_not_a_zip_is_a_usage_error(tmp_path):
    p = tmp_path / "x.zip"
    p.write_text("not a zip")
    with pytest.raises(UsageError, match="bundle x.zip: not a package bundle zip"):
        BundleReader(p)
    with pytest.raises(UsageError, match="does not exist"):
        BundleReader(tmp_path / "missing.zip")


# -- hostile bundles: bad input (exit 2), bounded JSON, bounded streaming -----------------------
def test_every_refusal_is_a_bad_bundle_that_exits_2(tmp_path):
    from e3logic.core.errors import BadBundle

    h = hash_bytes(b"x")
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", b"x"), ("../evil", b"x")], _manifest(h))
    with pytest.raises(BadBundle) as e:
        BundleReader(z)
    assert e.value.exit_code == 2
    assert str(e.value).startswith("bundle b.zip: path-traversal entry name '../evil'; ")


def test_a_deeply_nested_manifest_is_refused_without_a_recursion_error(tmp_path):
    h = hash_bytes(b"x")
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("e3package.json", json.dumps(_manifest(h))[:-1] + ', "x": '
                    + "[" * 30_000 + "]" * 30_000 + "}")
        zf.writestr(f"objects/{h}", b"x")
    with pytest.raises(UsageError, match="e3package.json is nested too deeply"):
        BundleReader(z)


@pytest.mark.parametrize("depth,ok", [(32, True), (33, False), (50_000, False)])
def test_loads_bounded_bounds_the_nesting_depth(depth, ok):
    from e3logic.repo.bundle import loads_bounded

    data = ("[" * depth + "]" * depth).encode()
    if ok:
        assert loads_bounded(data, "b.zip", "x") is not None
    else:
        with pytest.raises(UsageError, match="bundle b.zip: x is nested too deeply"):
            loads_bounded(data, "b.zip", "x")


def test_copy_object_stops_as_soon_as_an_object_expands_past_its_declared_size(tmp_path):
    data = b"y" * (3 << 20)
    h = hash_bytes(data)
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", data)], _manifest(h))
    out = io.BytesIO()
    with BundleReader(z, max_ratio=5000) as b, pytest.raises(UsageError, match="expands past the 1000 bytes "
                                                               "declared for it"):
        b.copy_object(h, out, expected=1000)
    assert len(out.getvalue()) <= 1000  # nothing past the declared size was written


def test_read_object_refuses_a_structured_object_over_its_limit(tmp_path):
    data = b"z" * 5000
    h = hash_bytes(data)
    z = forge(tmp_path / "b.zip", [(f"objects/{h}", data)], _manifest(h))
    with BundleReader(z) as b, pytest.raises(UsageError, match="too large for a tree"):
        b.read_object(h, limit=1000, what="a tree")
