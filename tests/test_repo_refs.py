"""repo.refs: small JSON files naming an object and its kind, replaced atomically."""
import pytest

from e3logic.core.errors import IntegrityError
from e3logic.core.hashing import hash_bytes
from e3logic.repo.refs import read_ref, write_ref

H = hash_bytes(b"x")


def test_a_ref_is_canonical_json_with_an_explicit_kind(tmp_path):
    p = tmp_path / "refs" / "r"
    write_ref(p, "package", H, name="demo", version="1.0.0")
    assert p.read_bytes() == (f'{{"hash":"{H}","kind":"package","name":"demo",'
                              f'"version":"1.0.0"}}\n').encode()
    assert read_ref(p) == {"kind": "package", "hash": H, "name": "demo", "version": "1.0.0"}


def test_a_missing_ref_reads_as_none(tmp_path):
    assert read_ref(tmp_path / "nope") is None


def test_rewriting_a_ref_replaces_it_whole_and_leaves_no_temp_file(tmp_path):
    p = tmp_path / "r"
    write_ref(p, "tree", H)
    write_ref(p, "blob", hash_bytes(b"y"))
    assert read_ref(p)["kind"] == "blob"
    assert [q.name for q in tmp_path.iterdir()] == ["r"]


def test_an_unknown_kind_is_refused_when_writing(tmp_path):
    with pytest.raises(AssertionError):
        write_ref(tmp_path / "r", "guess", H)


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"kind":"tree"}',
                                     b'{"kind":"weird","hash":"x"}'])
def test_a_malformed_ref_is_an_integrity_error_pointing_to_fsck(tmp_path, content):
    p = tmp_path / "r"
    p.write_bytes(content)
    with pytest.raises(IntegrityError) as e:
        read_ref(p)
    assert "fsck" in str(e.value)


@pytest.mark.parametrize("content,words", [
    (b'{"kind":"tree","hash":"../../../../etc/passwd"}', "64 lowercase hex"),
    (b'{"kind":"tree","hash":"' + b"A" * 64 + b'"}', "64 lowercase hex"),
    (b'{"kind":"exe","hash":"' + b"a" * 64 + b'"}', "unknown kind"),
    (b'{"kind":"tree","hash":"' + b"a" * 64 + b'","package":{"hash":"x"}}', "malformed package"),
    (b"not json", "not valid JSON"),
])
def test_a_ref_naming_no_valid_object_is_refused_naming_the_file_and_the_repair(tmp_path, content,
                                                                                 words):
    from e3logic.core.errors import DamagedMetadata

    p = tmp_path / "state"
    p.write_bytes(content)
    with pytest.raises(DamagedMetadata) as e:
        read_ref(p)
    msg = str(e.value)
    assert str(p) in msg and words in msg and "e3 fsck --repair" in msg
    assert e.value.exit_code == 2


def test_a_ref_with_a_hostile_hash_is_never_written(tmp_path):
    with pytest.raises(ValueError):
        write_ref(tmp_path / "r", "tree", "../../etc/passwd")
    assert not (tmp_path / "r").exists()
