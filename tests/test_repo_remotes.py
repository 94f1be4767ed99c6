"""repo.remotes: remote URLs as stored, and the two transports — a directory and an
S3-compatible bucket (a real local server: moto in server mode) — listing, reading and
writing whole files, with one-line errors that never name a credential."""
from __future__ import annotations

import os

import pytest

from e3logic.core.errors import UsageError
from e3logic.repo.remotes import (DirRemote, Missing, RemoteError, S3Remote, check_url,
                                  open_remote, redact)
from tests.s3server import SECRET, S3Server


def test_a_url_is_stored_as_an_absolute_directory_or_a_normal_s3_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_url("shared/cache") == (str(tmp_path / "shared" / "cache"), None)
    assert check_url(f"file://{tmp_path}/x") == (str(tmp_path / "x"), None)
    assert check_url("s3://bucket/a/b/", "http://127.0.0.1:9000/") == \
        ("s3://bucket/a/b", "http://127.0.0.1:9000")
    assert check_url("s3://bucket") == ("s3://bucket", None)


@pytest.mark.parametrize("url, endpoint, why", [
    ("", None, "an empty remote URL"),
    ("s3://", None, "names no bucket"),
    (f"s3://key:{SECRET}@bucket/p", None, "must not carry credentials"),
    ("s3://bucket", f"http://u:{SECRET}@host:1", "must not carry credentials"),
    ("s3://bucket", "ftp://host", "is not an endpoint URL"),
    ("/some/dir", "http://host:1", "is for s3:// remotes"),
    ("https://example.com/cache", None, "is not a remote e3 can use"),
    ("file://otherhost/x", None, "names another host"),
])
def test_bad_urls_are_refused_in_one_line_without_repeating_a_secret(url, endpoint, why):
    with pytest.raises(UsageError, match=why) as e:
        check_url(url, endpoint)
    assert SECRET not in str(e.value) and "\n" not in str(e.value)


def test_redact_hides_a_user_and_password():
    assert redact(f"http://me:{SECRET}@host:9000/x") == "http://***@host:9000/x"
    assert redact("http://host:9000") == "http://host:9000"


def test_a_directory_remote_lists_reads_and_writes_whole_files(tmp_path):
    r = open_remote("team", str(tmp_path / "remote"))
    assert isinstance(r, DirRemote)
    with pytest.raises(RemoteError, match="does not exist"):
        r.list("records/")
    r.ensure()
    assert r.list("records/") == []
    r.put("records/k/2", b"two")
    r.put("records/k/1", b"one")
    r.put("objects/ab/cd", b"obj")
    r.put("records/k/1", b"ONE")  # replaced whole
    (tmp_path / "remote" / "records" / "k" / ".3.123.tmp").write_bytes(b"half")  # a put in flight
    assert r.list("records/") == ["records/k/1", "records/k/2"]
    assert r.get("records/k/1") == b"ONE"
    with pytest.raises(Missing):
        r.get("records/k/9")
    leftovers = [p for p in (tmp_path / "remote").rglob("*") if p.name.startswith(".") and
                 p.name != ".3.123.tmp"]
    assert leftovers == []


def test_an_unreadable_directory_remote_is_a_remote_error(tmp_path):
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "records").write_text("a file where a folder should be")
    r = DirRemote("team", str(tmp_path / "remote"))
    with pytest.raises(RemoteError, match=r"remote 'team' \(.*\) is unreachable"):
        r.get("records/k/1")


@pytest.fixture(scope="module")
def s3():
    with S3Server() as server:
        old = {k: os.environ.get(k) for k in server.env}
        os.environ.update(server.env)
        try:
            yield server
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.mark.slow
def test_an_s3_remote_keeps_its_files_under_its_prefix(s3):
    bucket = s3.bucket("remotes-a")
    r = open_remote("s3", f"s3://{bucket}/team/cache", s3.endpoint)
    assert isinstance(r, S3Remote)
    assert r.list("records/") == []
    r.put("records/k/1", b"one")
    r.put("objects/ab/cd", b"obj")
    other = open_remote("other", f"s3://{bucket}/elsewhere", s3.endpoint)
    other.put("records/k/9", b"not ours")
    assert r.list("records/") == ["records/k/1"]
    assert r.list("") == ["objects/ab/cd", "records/k/1"]
    assert r.get("objects/ab/cd") == b"obj"
    with pytest.raises(Missing):
        r.get("records/k/2")
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == ["elsewhere/records/k/9", "team/cache/objects/ab/cd",
                            "team/cache/records/k/1"]


@pytest.mark.slow
def test_s3_errors_are_one_line_naming_the_remote_and_never_a_credential(s3):
    missing = S3Remote("team", "s3://no-such-bucket/x", s3.endpoint)
    with pytest.raises(RemoteError, match="bucket 'no-such-bucket' does not exist") as e:
        missing.list("records/")
    gone = S3Remote("team", "s3://b/x", "http://127.0.0.1:9")
    with pytest.raises(RemoteError, match="cannot connect") as e2:
        gone.get("records/k/1")
    for err in (e, e2):
        msg = str(err.value)
        assert msg.startswith("remote 'team' (s3://") and "\n" not in msg
        assert SECRET not in msg and "e3testkey" not in msg


def test_a_put_that_fails_half_way_leaves_no_file_not_even_a_temporary_one(tmp_path):
    r = DirRemote("team", str(tmp_path / "remote"))
    r.ensure()
    with pytest.raises(TypeError):
        r.put("records/k/1", object())  # the write fails after the temp file is made
    assert [p for p in (tmp_path / "remote").rglob("*") if p.is_file()] == []
    assert r.list("records/") == []
