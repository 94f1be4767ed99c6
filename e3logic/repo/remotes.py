"""Remotes of the shared cache: where a team's objects and signed execution records live.

A remote is a flat, content-addressed namespace of immutable files:

    objects/ab/cdef…                 object bytes, named by their BLAKE3 hash (as in .e3/)
    records/<execution key>/<hash>   one signed execution record, named by the hash of its
                                     bytes (exec/share.py)

Two transports, each `list(prefix)`, `get(name)`, `put(name, data)`:

- a **directory** (a path or `file://…`, e.g. on a shared filesystem): a file appears whole
  or not at all (written under a dot-name beside it, then renamed);
- an **S3-compatible bucket** `s3://bucket/prefix` through boto3 (imported only when such a
  remote is used: `pip install 'e3logic[s3]'`), with an endpoint URL for servers other than
  AWS (MinIO, Ceph, moto). A PUT is atomic: an object is there whole or not at all.

Names are content-addressed, so two clones pushing at once write the same bytes under the same
name or different names — never a clash — and an interrupted push leaves only complete files.
Credentials come from the environment (boto3's chain: `AWS_ACCESS_KEY_ID`…, a profile); they
are never stored, and no message names them: a URL or endpoint carrying a user or password is
refused, and an error says what failed by its kind (`AccessDenied`), not by the request.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

from ..core.errors import UsageError
from .atomic import write_atomic


class RemoteError(UsageError):
    """A remote that cannot be read or written (unreachable, missing, access denied): one
    line naming the remote (never its credentials), exit 2."""


class Missing(Exception):
    """(internal) a name the remote does not hold."""


def check_url(url: str, endpoint_url: str | None = None) -> tuple[str, str | None]:
    """A remote URL as stored: a directory (made absolute; `file://` kept as a path), or
    `s3://bucket[/prefix]`; `endpoint_url` only for s3. Bad input: one line, exit 2."""
    u = (url or "").strip()
    if not u:
        raise UsageError("an empty remote URL; give a directory, file:///path or "
                         "s3://bucket/prefix")
    parts = urlsplit(u)
    if parts.scheme == "s3":
        if "@" in parts.netloc:
            raise UsageError("a remote URL must not carry credentials; put them in the "
                             "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or a "
                             "profile")
        if not parts.netloc:
            raise UsageError(f"'{u}' names no bucket; give s3://bucket/prefix")
        prefix = parts.path.strip("/")
        out = f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else "")
        if endpoint_url is not None:
            e = urlsplit(endpoint_url.strip())
            if e.scheme not in ("http", "https") or not e.netloc:
                raise UsageError(f"'{redact(endpoint_url)}' is not an endpoint URL; give "
                                 f"http(s)://host:port")
            if "@" in e.netloc:
                raise UsageError("an endpoint URL must not carry credentials; put them in "
                                 "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
            endpoint_url = endpoint_url.strip().rstrip("/")
        return out, endpoint_url
    if endpoint_url is not None:
        raise UsageError("--endpoint-url is for s3:// remotes; drop it for a directory")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"'{u}' names another host; give file:///absolute/path")
        return str(Path(parts.path).resolve()), None
    if parts.scheme and len(parts.scheme) > 1:  # (a Windows drive letter is no scheme)
        raise UsageError(f"'{redact(u)}' is not a remote e3 can use; give a directory, "
                         f"file:///path or s3://bucket/prefix")
    return str(Path(u).expanduser().resolve()), None


def redact(url: str | None) -> str:
    """`url` without a user or password (`https://***@host/…`)."""
    if not url:
        return ""
    try:
        p = urlsplit(url)
    except ValueError:
        return "<url>"
    if "@" in p.netloc:
        return p._replace(netloc="***@" + p.netloc.rsplit("@", 1)[1]).geturl()
    return url


def open_remote(name: str, url: str, endpoint_url: str | None = None):
    """The transport of a stored remote."""
    if url.startswith("s3://"):
        return S3Remote(name, url, endpoint_url)
    return DirRemote(name, url)


class DirRemote:
    """A remote directory."""

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url
        self.root = Path(url)

    def describe(self) -> str:
        return f"remote '{self.name}' ({self.url})"

    def _fail(self, what: str, e: OSError):
        raise RemoteError(f"{self.describe()} is unreachable: {what}: "
                          f"{(e.strerror or str(e)).lower()}; check the path and retry") from None

    WORKERS = 8

    def ensure(self) -> None:
        """Before a push: the directory exists (a first push creates it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self._fail("creating it", e)

    def list(self, prefix: str) -> list[str]:
        """Every name under `prefix` (a folder ending in `/`), sorted."""
        top = self.root / prefix
        if not self.root.is_dir():
            raise RemoteError(f"{self.describe()} does not exist; check the path (a first "
                              f"'e3 push' creates it)")
        out = []
        try:
            for d, dirs, files in os.walk(top, onerror=_raise):
                dirs[:] = [x for x in dirs if not x.startswith(".")]
                rel = os.path.relpath(d, self.root)
                for f in files:
                    if not f.startswith("."):  # temp files of a put in progress
                        out.append(f"{rel}/{f}".replace(os.sep, "/"))
        except FileNotFoundError:
            return []
        except OSError as e:
            self._fail(f"listing {prefix}", e)
        out.sort()
        return out

    def get(self, name: str) -> bytes:
        try:
            with open(self.root / name, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise Missing(name) from None
        except OSError as e:
            self._fail(f"reading {name}", e)

    def put(self, name: str, data: bytes) -> None:
        try:  # whole or not at all: a temp file (hidden: `list` skips it), then a rename
            write_atomic(self.root / name, data, mode=0o644)
        except OSError as e:
            self._fail(f"writing {name}", e)


def _raise(e):
    raise e


class S3Remote:
    """A remote prefix of an S3-compatible bucket (boto3)."""

    #: parallel requests a push or pull makes (boto3 clients are thread-safe)
    WORKERS = 16

    def __init__(self, name: str, url: str, endpoint_url: str | None = None):
        self.name, self.url, self.endpoint_url = name, url, endpoint_url
        p = urlsplit(url)
        self.bucket = p.netloc
        self.prefix = p.path.strip("/") + "/" if p.path.strip("/") else ""
        self._client = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        where = f" at {redact(self.endpoint_url)}" if self.endpoint_url else ""
        return f"remote '{self.name}' ({self.url}{where})"

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                try:
                    import boto3
                    from botocore.config import Config
                except ImportError:
                    raise UsageError(f"{self.describe()} needs boto3; install it with "
                                     f"pip install 'e3logic[s3]'") from None
                cfg = Config(retries={"max_attempts": 3, "mode": "standard"},
                             connect_timeout=5, read_timeout=60,
                             max_pool_connections=self.WORKERS + 4)
                self._client = boto3.session.Session().client(
                    "s3", endpoint_url=self.endpoint_url, config=cfg)
            return self._client

    def _fail(self, what: str, e: BaseException):
        """One line for a boto3/botocore error: its kind, never the request or credentials."""
        from botocore import exceptions as bx

        if isinstance(e, bx.NoCredentialsError):
            why = ("no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                   "(or AWS_PROFILE) in the environment")
        elif isinstance(e, bx.ClientError):
            code = str(e.response.get("Error", {}).get("Code") or "error")
            if code == "NoSuchBucket":
                why = f"bucket '{self.bucket}' does not exist; create it or fix the URL"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "403", "Forbidden"):
                why = f"{code}: access denied; check the credentials in the environment"
            else:
                why = f"{what}: {code}; check the remote and retry"
        elif isinstance(e, (bx.EndpointConnectionError, bx.ConnectionClosedError,
                            bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.HTTPClientError)):
            why = f"{what}: cannot connect; check the network and the endpoint, and retry"
        else:
            why = f"{what}: {type(e).__name__}; check the remote and retry"
        raise RemoteError(f"{self.describe()} is unreachable: {why}") from None

    def ensure(self) -> None:
        """Before a push: nothing to prepare (the bucket must exist)."""

    def list(self, prefix: str) -> list[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        out = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for o in page.get("Contents", ()):
                    out.append(o["Key"][len(self.prefix):])
        except (BotoCoreError, ClientError) as e:
            self._fail(f"listing {prefix}", e)
        out.sort()
        return out

    def get(self, name: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket,
                                          Key=self.prefix + name)["Body"].read()
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code")) in ("NoSuchKey", "404"):
                raise Missing(name) from None
            self._fail(f"reading {name}", e)
        except BotoCoreError as e:
            self._fail(f"reading {name}", e)

    def put(self, name: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)
        except (BotoCoreError, ClientError) as e:
            self._fail(f"writing {name}", e)
