"""The shared memo: signed execution records, `push`, `pull` and the lookup `go --remote`
makes before executing (docs/sharing.md).

A **record** says "execution KEY — task TASK on inputs H1…Hn — produced OUTPUT", signed by its
producer's ed25519 key:

    {"format": "e3-record-v1", "key", "task", "inputs": [hash…], "output", "output_format",
     "dataflow", "input_paths": [path…], "output_path", "signer": "ed25519:…", "signature"}

The signature covers the canonical encoding (core/canon.py) of every other field; ed25519 is
deterministic, so a record is a function of what it says and who says it. It is stored on the
remote as `records/<key>/<hash of its bytes>`, its output object as `objects/ab/cdef…`: two
clones pushing at once never write different bytes under one name.

A record is **accepted** only when it parses, its signature verifies, its signer is trusted
here and not revoked, its key is the execution key of its task and inputs, and its output
object is on the remote (or here) and hashes to its name; anything else is refused with the
reason, and adds nothing. Accepted results become memo rows with their origin (the signer and
the remote: `Journal.add_pulled`), all in one transaction after every download succeeded: a
remote that fails mid-way leaves the memo as it was (`RemoteError`, exit 2).
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from ..core import canon
from ..core.errors import UsageError
from ..core.hashing import hash_bytes, is_hash
from ..core.paths import path_problem
from ..repo.keys import parse_public_key, verify
from ..repo.remotes import Missing, open_remote
from .memo import MemoHit, execution_key

RECORD_FORMAT = "e3-record-v1"
FIELDS = ("format", "key", "task", "inputs", "output", "output_format", "dataflow",
          "input_paths", "output_path", "signer", "signature")
_RECORD_NAME = re.compile(r"records/([0-9a-f]{64})/([0-9a-f]{64})")
_DATAFLOW = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,199}")
MAX_RECORD = 1 << 20


def object_name(h: str) -> str:
    return f"objects/{h[:2]}/{h[2:]}"


class Refused(Exception):
    """A record that is not accepted; the message is the reason."""


class Candidate(tuple):
    """An accepted record: (name, key, task, inputs [(path, hash)], output, format,
    dataflow, output path, signer)."""

    __slots__ = ()
    name = property(lambda s: s[0])
    key = property(lambda s: s[1])
    output = property(lambda s: s[4])


# -- records -----------------------------------------------------------------------------------
def make_record(signer, key: str, task: str, inputs, output: str, fmt: str, dataflow: str,
                output_path: str) -> tuple[str, bytes]:
    """(name on the remote, bytes) of the signed record of one memoized result."""
    body = {"format": RECORD_FORMAT, "key": key, "task": task,
            "inputs": [h for _, h in inputs], "input_paths": [p for p, _ in inputs],
            "output": output, "output_format": fmt or "raw", "dataflow": dataflow or "",
            "output_path": output_path, "signer": signer.public_key}
    data = canon.dumps({**body, "signature": signer.sign(canon.dumps(body))})
    return f"records/{key}/{hash_bytes(data)}", data


def check_record(name: str, data: bytes, trusted: dict) -> Candidate:
    """The candidate a record stands for, or `Refused` with the reason. `trusted`:
    {public key: (name, revoked)}. The output object is checked by the caller."""
    m = _RECORD_NAME.fullmatch(name)
    if m is None:
        raise Refused("not a record name (records/<key>/<hash>)")
    if len(data) > MAX_RECORD:
        raise Refused("not a valid record: too large")
    try:
        rec = canon.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Refused("not a valid record: not JSON") from None
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT:
        raise Refused(f"not a valid record: format is not {RECORD_FORMAT}")
    missing = [f for f in FIELDS if f not in rec]
    if missing:
        raise Refused(f"not a valid record: no {', '.join(missing)}")
    ins, paths = rec["inputs"], rec["input_paths"]
    if not (all(isinstance(rec[f], str) and is_hash(rec[f]) for f in ("key", "task", "output"))
            and isinstance(ins, list) and all(isinstance(h, str) and is_hash(h) for h in ins)
            and isinstance(paths, list) and len(paths) == len(ins)
            and all(path_problem(p) is None for p in paths)
            and path_problem(rec["output_path"]) is None
            and rec["output_format"] in ("raw", "json")
            and isinstance(rec["dataflow"], str)
            and (rec["dataflow"] == "" or _DATAFLOW.fullmatch(rec["dataflow"]))
            and isinstance(rec["signer"], str) and isinstance(rec["signature"], str)):
        raise Refused("not a valid record: a field has the wrong form")
    if rec["key"] != m.group(1):
        raise Refused("its key is not the one it is filed under")
    try:
        signer = parse_public_key(rec["signer"])
    except UsageError:
        raise Refused("not a valid record: its signer is not a public key") from None
    body = {k: v for k, v in rec.items() if k != "signature"}
    if set(body) != set(FIELDS) - {"signature"}:
        raise Refused("not a valid record: unknown fields")
    if not verify(signer, rec["signature"], canon.dumps(body)):
        raise Refused(f"bad signature (not signed by {signer} as it claims)")
    who = trusted.get(signer)
    if who is None:
        raise Refused(f"signed by an untrusted key {signer}")
    if who[1]:
        raise Refused(f"signed by revoked key {who[0]}")
    if execution_key(rec["task"], ins) != rec["key"]:
        raise Refused("its execution key is not the key of its task and inputs")
    return Candidate((name, rec["key"], rec["task"], list(zip(paths, ins)), rec["output"],
                      rec["output_format"], rec["dataflow"], rec["output_path"], signer))


def fetch_object(remote, h: str) -> bytes:
    """The bytes of object `h` from the remote, checked against their name (`Refused`)."""
    try:
        data = remote.get(object_name(h))
    except Missing:
        raise Refused(f"output object {h} is missing on the remote") from None
    if hash_bytes(data) != h:
        raise Refused(f"output object {h} does not hash to its name (altered on the "
                      f"remote)")
    return data


# -- where, and whom to trust -------------------------------------------------------------------
def trusted_keys(repo) -> dict:
    """{public key: (name, revoked)} of the keys `e3 trust add` named."""
    return {pk: (name, bool(rev)) for name, pk, rev in repo.journal.trusted_keys()}


def remote_for(repo, name: str | None = None):
    """The transport of remote `name`; without a name, `[cache] remote` in e3.toml, else the
    only remote there is. Bad or missing names: one line, exit 2."""
    from ..core.errors import NotFound

    rows = {n: (u, e) for n, u, e in repo.journal.remotes()}
    if name is None:
        name = (repo.config.get("cache") or {}).get("remote")
        if name is None:
            if len(rows) == 1:
                name = next(iter(rows))
            elif not rows:
                raise UsageError("no remote; add one with 'e3 remote add NAME URL'")
            else:
                raise UsageError(f"{len(rows)} remotes ({', '.join(sorted(rows))}); name one, "
                                 f"or set [cache] remote in e3.toml")
    if name not in rows:
        raise NotFound("remote", name, rows, hint="see 'e3 remote list'")
    url, endpoint = rows[name]
    return open_remote(name, url, endpoint)


def _pool(remote):
    return ThreadPoolExecutor(max_workers=getattr(remote, "WORKERS", 8),
                              thread_name_prefix="e3-remote")


def _map(pool, fn, items):
    """fn over items in the pool, results in order; the first error stops the rest."""
    futures = [pool.submit(fn, x) for x in items]
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise


# -- push ------------------------------------------------------------------------------------------
def push(repo, remote, signer) -> dict:
    """Sign and upload every result computed here (`Journal.shareable_results`) that the
    remote lacks: objects first, then — each only once its object is there — the records.
    {"remote", "objects", "records", "refused"}: what was uploaded, and what could not be
    (e.g. an output object lost here)."""
    rows = repo.journal.shareable_results()
    refused: list[dict] = []
    records = []
    for key, task, out, fmt, dataflow, out_path, inputs in rows:
        if execution_key(task, [h for _, h in inputs]) != key:
            refused.append({"record": key, "reason": "its inputs are not recorded here"})
            continue
        name, data = make_record(signer, key, task, inputs, out, fmt, dataflow, out_path)
        records.append((name, data, out))
    remote.ensure()
    with _pool(remote) as pool:
        have_records = set(remote.list("records/")) if records else set()
        todo = [r for r in records if r[0] not in have_records]
        have = set(remote.list("objects/")) if todo else set()
        need = sorted({out for _, _, out in todo if object_name(out) not in have})
        objects = repo.objects

        def upload(h):
            try:
                data = objects.read(h)
            except Exception:  # gone or unreadable here: refused below
                return False
            if hash_bytes(data) != h:
                return False
            remote.put(object_name(h), data)
            return True

        ok = dict(zip(need, _map(pool, upload, need)))
        sent = []
        for name, data, out in todo:
            if ok.get(out, True):
                sent.append((name, data))
            else:
                refused.append({"record": name, "reason": f"output object {out} is missing or "
                                                          f"corrupt here; run 'e3 fsck'"})
        _map(pool, lambda r: remote.put(*r), sent)
    return {"remote": remote.name, "objects": sum(ok.values()), "records": len(sent),
            "refused": refused}


# -- pull ----------------------------------------------------------------------------------------
def _names_by_key(remote) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in remote.list("records/"):
        m = _RECORD_NAME.fullmatch(n)
        if m is not None:
            out.setdefault(m.group(1), []).append(n)
    return out


def pull(repo, remote, trusted: dict | None = None) -> dict:
    """Download the records of every result the memo lacks, accept what verifies (module
    docstring), store the accepted objects and memo rows together. {"remote", "objects",
    "records", "refused": [{"record", "reason"}]}."""
    trusted = trusted_keys(repo) if trusted is None else trusted
    by_key = _names_by_key(remote)
    local = repo.journal.memo_lookup_many(by_key)
    names = [n for k in sorted(by_key) if k not in local for n in by_key[k]]
    refused: list[dict] = []
    objects = repo.objects
    batch = objects.batch()
    try:
        with _pool(remote) as pool:
            def get(name):
                try:
                    return remote.get(name)
                except Missing:
                    return None

            accepted: dict[str, list[Candidate]] = {}
            for name, data in zip(names, _map(pool, get, names)):
                if data is None:
                    continue  # deleted since the listing
                try:
                    c = check_record(name, data, trusted)
                except Refused as e:
                    refused.append({"record": name, "reason": str(e)})
                    continue
                accepted.setdefault(c.key, []).append(c)  # by name, per key
            want = sorted({c.output for cs in accepted.values() for c in cs
                           if not objects.exists(c.output)})

            def fetch(h):
                try:
                    return fetch_object(remote, h)
                except Refused as e:
                    return e

            got = dict(zip(want, _map(pool, fetch, want)))
        rows, written = [], set()
        for key in sorted(accepted):
            for c in accepted[key]:  # the first whose output object is good
                data = got.get(c.output)
                if isinstance(data, Refused):
                    refused.append({"record": c.name, "reason": str(data)})
                    continue
                if data is not None:
                    batch.write(data)
                    written.add(c.output)
                rows.append((*c[1:], remote.name, c.name))
                break
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    added = repo.journal.add_pulled(
        [(k, t, o, f, d, p, ins, s, r, n) for k, t, ins, o, f, d, p, s, r, n in rows])
    refused.sort(key=lambda r: r["record"])
    return {"remote": remote.name, "objects": len(written), "records": added,
            "refused": refused}


# -- go --remote ------------------------------------------------------------------------------------
class RemoteLookup:
    """What `go --remote` asks before executing a dataflow: `lookup(name, key)` → a
    `MemoHit` for an accepted result (its object written to the store, verified), or None.
    Accepted results are staged; `commit()` makes them memo rows (one transaction) with the
    project's own paths as their provenance. `adopted` {dataflow: key}, `refused` as `pull`
    reports them. `prefetch(keys)` fetches the records and objects of keys known in advance
    in parallel (a run's first wave: the dataflows whose inputs it holds); the keys only known
    once an upstream result is pulled are asked one by one, in dependency order."""

    def __init__(self, repo, remote, project, trusted: dict | None = None):
        self.repo, self.remote, self.project = repo, remote, project
        self.trusted = trusted_keys(repo) if trusted is None else trusted
        self.index: dict[str, list[str]] | None = None
        self.seen: dict[str, MemoHit | None] = {}
        self.ready: dict[str, Candidate | None] = {}  # prefetched: accepted, or None
        self.staged: list[tuple] = []
        self.adopted: dict[str, str] = {}
        self.refused: list[dict] = []
        self.objects = 0

    def _names(self, key: str) -> list[str]:
        if self.index is None:
            self.index = _names_by_key(self.remote)
        return self.index.get(key, [])

    def __call__(self, name: str, key: str) -> MemoHit | None:
        if key not in self.seen:
            c = self.ready[key] if key in self.ready else self._find(key)
            self.seen[key] = None if c is None else self._stage(name, key, c)
        hit = self.seen[key]
        if hit is not None:
            self.adopted[name] = key
        return hit

    def _stage(self, name: str, key: str, c: Candidate) -> MemoHit:
        d = self.project.dataflows[name]
        self.staged.append((key, c[2], c.output, c[5], name, self.project.outputs[name],
                            list(zip(d["inputs"], [h for _, h in c[3]])), c[8],
                            self.remote.name, c.name))
        return MemoHit(c.output, c[5], 0.0)

    def _find(self, key: str) -> Candidate | None:
        for rn in self._names(key):
            try:
                c = check_record(rn, self.remote.get(rn), self.trusted)
                if not self.repo.objects.exists(c.output):
                    self.repo.objects.write(fetch_object(self.remote, c.output))
                    self.objects += 1
            except Missing:
                continue
            except Refused as e:
                self.refused.append({"record": rn, "reason": str(e)})
                continue
            return c
        return None

    def prefetch(self, keys) -> None:
        """Fetch the records of `keys`, and the objects of the accepted ones, in parallel;
        each key then has its answer (`ready`: an accepted record, or None)."""
        keys = sorted({k for k in keys if k not in self.seen and k not in self.ready})
        names = [n for k in keys for n in self._names(k)]
        if not names:
            return
        objects = self.repo.objects

        def get(name):
            try:
                return self.remote.get(name)
            except Missing:
                return None

        def fetch(h):
            try:
                return fetch_object(self.remote, h)
            except Refused as e:
                return e

        found: dict[str, list[Candidate]] = {}
        with _pool(self.remote) as pool:
            for name, data in zip(names, _map(pool, get, names)):
                if data is None:
                    continue
                try:
                    c = check_record(name, data, self.trusted)
                except Refused as e:
                    self.refused.append({"record": name, "reason": str(e)})
                    continue
                found.setdefault(c.key, []).append(c)
            want = sorted({c.output for cs in found.values() for c in cs
                           if not objects.exists(c.output)})
            got = dict(zip(want, _map(pool, fetch, want)))
        for key in keys:
            self.ready[key] = None
            for c in found.get(key, ()):
                data = got.get(c.output)
                if isinstance(data, Refused):
                    self.refused.append({"record": c.name, "reason": str(data)})
                    continue
                if data is not None and not objects.exists(c.output):
                    objects.write(data)
                    self.objects += 1
                self.ready[key] = c
                break

    def commit(self) -> int:
        """The staged results become memo rows (one transaction); how many were added."""
        staged, self.staged = self.staged, []
        return self.repo.journal.add_pulled(staged) if staged else 0
