"""A real local S3-compatible server for the shared-cache tests, the `fed` conformance suite and
bench/bench_share.py: moto in server mode (`python -m moto.server`), started as a process of
its own on a free port — requests go over HTTP as they would to MinIO or AWS — and a TCP
proxy that can cut the connection after N requests (a remote that goes away mid-pull).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

#: credentials the server accepts (moto takes any); `SECRET` must never show in e3's output
SECRET = "s3cr3t-e3-test-do-not-print"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "e3testkey", "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """`with S3Server() as s3:` a moto server process at `s3.endpoint`; `s3.bucket(name)`
    creates a bucket; `s3.env` the environment an `e3` command needs to reach it."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = dict(CREDENTIALS)
        self.proc = None

    def __enter__(self):
        env = {**os.environ, **CREDENTIALS}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moto server exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start within 60 s")

    def __exit__(self, *exc):
        self.stop()
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, endpoint: str | None = None):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=SECRET, region_name="us-east-1").client(
                "s3", endpoint_url=endpoint or self.endpoint)

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


class CutProxy:
    """A TCP proxy to `target` (host, port) that forwards every byte until it has seen
    `budget` HTTP requests from clients, then closes every connection and its listener: the
    server is unreachable from then on. `with CutProxy(("127.0.0.1", port), 15) as p:`
    `p.endpoint`."""

    def __init__(self, target: tuple[str, int], budget: int):
        self.target, self.budget = target, budget
        self.seen = 0
        self.cut = threading.Event()
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self):
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._cut()
        return False

    def _cut(self):
        self.cut.set()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in [self.listener, *socks]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self):
        while not self.cut.is_set():
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            with self.lock:
                if self.cut.is_set():
                    c.close()
                    u.close()
                    return
                self.socks += [c, u]
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, src, dst, upstream: bool):
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    with self.lock:
                        self.seen += data.count(b" HTTP/1.1\r\n")
                        over = self.seen > self.budget
                    if over:
                        self._cut()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
