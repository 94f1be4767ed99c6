"""The user's signing key and signature checks (ed25519, through the `cryptography` package).

A key belongs to a user, not to a repository: its private half lives in the user's config
directory (`$XDG_CONFIG_HOME/e3/signing-key.pem`, else `~/.config/e3/…`), mode 0600, written
whole or not at all. Public keys are written `ed25519:<64 hex digits>` (the raw 32 bytes);
the same text is what `e3 trust add` takes. ed25519 signatures are deterministic: the same
record signed twice gives the same bytes, so a record's name (its hash) is the same on every
machine that signs it with the same key.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..core.errors import UsageError

PREFIX = "ed25519:"
KEY_FILE = "signing-key.pem"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIG = re.compile(r"[0-9a-f]{128}")


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/e3`, else `~/.config/e3`."""
    base = os.environ.get("XDG_CONFIG_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "e3"


def key_path() -> Path:
    return config_dir() / KEY_FILE


def parse_public_key(text: str) -> str:
    """`ed25519:<hex>` (or the bare 64 hex digits) → the normal form `ed25519:<hex>`."""
    t = (text or "").strip().lower()
    body = t[len(PREFIX):] if t.startswith(PREFIX) else t
    if not _HEX64.fullmatch(body):
        raise UsageError(f"'{text}' is not a public key; give what 'e3 keygen' printed "
                         f"(ed25519: and 64 hex digits)")
    return PREFIX + body


def _public_text(private) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    return PREFIX + raw.hex()


class Signer:
    """The user's private key: `public_key` (text) and `sign(data)` → hex signature."""

    def __init__(self, private):
        self._private = private
        self.public_key = _public_text(private)

    def sign(self, data: bytes) -> str:
        return self._private.sign(data).hex()


def keygen(force: bool = False) -> dict:
    """Make the user's key unless there is one (then it is kept, and its public key
    answered; `force` replaces it). {"public_key", "path", "created"}."""
    path = key_path()
    if path.exists() and not force:
        return {"public_key": load_signer().public_key, "path": str(path), "created": False}
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600 from the first byte: the private key is never readable by anyone else
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)  # whatever the umask
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"public_key": _public_text(key), "path": str(path), "created": True}


def load_signer() -> Signer:
    """The user's key; one clear line when there is none, it is unreadable or others may
    read it."""
    path = key_path()
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no signing key at {path}; make one with 'e3 keygen'") from None
    except OSError as e:
        raise UsageError(f"cannot read the signing key {path} ({e.strerror}); check its "
                         f"permissions") from None
    if st.st_mode & 0o077:
        raise UsageError(f"the signing key {path} may be read by other users (mode "
                         f"{st.st_mode & 0o777:o}); run 'chmod 600 {path}'")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an ed25519 private key; move it away and run "
                         f"'e3 keygen'")
    return Signer(key)


def verify(public_key: str, signature: str, data: bytes) -> bool:
    """Does `signature` (hex) sign `data` under `public_key` (`ed25519:<hex>`)?"""
    if not isinstance(signature, str) or not _SIG.fullmatch(signature):
        return False
    try:
        raw = bytes.fromhex(parse_public_key(public_key)[len(PREFIX):])
    except UsageError:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(bytes.fromhex(signature), data)
    except (InvalidSignature, ValueError):
        return False
    return True
