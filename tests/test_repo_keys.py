"""repo.keys: the user's ed25519 signing key in their config directory (0600, written whole),
public keys as text, deterministic signatures and their checks."""
from __future__ import annotations

import os

import pytest

from e3logic.core.errors import UsageError
from e3logic.repo import keys


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    return tmp_path / "cfg"


def test_the_key_lives_in_the_xdg_config_directory_readable_by_its_owner_only(home):
    got = keys.keygen()
    path = home / "e3" / "signing-key.pem"
    assert got == {"public_key": got["public_key"], "path": str(path), "created": True}
    assert path.stat().st_mode & 0o777 == 0o600
    assert got["public_key"] == keys.load_signer().public_key
    assert [p.name for p in path.parent.iterdir()] == ["signing-key.pem"]  # no temp left


def test_a_second_keygen_keeps_the_key_and_force_replaces_it(home):
    first = keys.keygen()["public_key"]
    again = keys.keygen()
    assert again["public_key"] == first and again["created"] is False
    assert keys.keygen(force=True)["public_key"] != first


def test_without_xdg_config_home_the_key_goes_under_dot_config(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keys.key_path() == tmp_path / ".config" / "e3" / "signing-key.pem"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")  # ignored, as the spec says
    assert keys.key_path() == tmp_path / ".config" / "e3" / "signing-key.pem"


def test_no_key_or_a_key_others_may_read_is_refused_in_one_line(home):
    with pytest.raises(UsageError, match="make one with 'e3 keygen'"):
        keys.load_signer()
    keys.keygen()
    os.chmod(keys.key_path(), 0o644)
    with pytest.raises(UsageError, match=r"may be read by other users.*chmod 600"):
        keys.load_signer()
    os.chmod(keys.key_path(), 0o600)
    keys.key_path().write_text("not a key")
    with pytest.raises(UsageError, match="is not an ed25519 private key"):
        keys.load_signer()


def test_signatures_are_deterministic_and_verify_only_the_signed_bytes_under_their_key(home):
    keys.keygen()
    s = keys.load_signer()
    sig = s.sign(b"record")
    assert sig == s.sign(b"record") and len(sig) == 128
    assert keys.verify(s.public_key, sig, b"record")
    assert not keys.verify(s.public_key, sig, b"record!")
    other = keys.keygen(force=True)["public_key"]
    assert not keys.verify(other, sig, b"record")
    assert not keys.verify(s.public_key, "zz" * 64, b"record")
    assert not keys.verify("ed25519:nonsense", sig, b"record")


def test_a_public_key_is_ed25519_and_64_hex_digits_with_or_without_its_prefix():
    h = "ab" * 32
    assert keys.parse_public_key(h) == keys.parse_public_key(f"ED25519:{h.upper()}") == \
        f"ed25519:{h}"
    for bad in ("", "ed25519:", "ed25519:" + "g" * 64, h[:-2], "rsa:" + h):
        with pytest.raises(UsageError, match="is not a public key"):
            keys.parse_public_key(bad)
