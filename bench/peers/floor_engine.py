"""A minimal build engine in Python, for bench/bench_floor.py: what any Python engine must pay.

Runs the Makefile workload's shell tasks (`sh -c "cat INPUTS | md5sum > OUTPUT"`, make's
directory layout) from graph.json with at most JOBS in flight, like make: one thread, a ready
queue in dependency order, `posix_spawn` (each task in its own session, as e3 must), `os.wait`
for any child. Levels (`LEVEL`, cumulative):

- `spawn`: nothing else — make's loop written in Python.
- `record`: per finished task also what e3 records at the least: the output's blake3, an
  execution key from the input hashes, the output hard-linked into an object store by hash,
  a copy written into a working-copy directory of its own (`wc/<task>/out`, as e3's
  `outputs/<df>/out`), one
  SQLite row per task (one transaction at the end), and a `syncfs`-like `os.sync()` at the end.
- `imports`: `record`, after importing what e3's design builds `e3 go` on (click, sqlite3,
  blake3, anyio on asyncio) — the start-up floor of such an engine. (kanren, the scheduler's,
  is not loaded for work without leases or capacities, as here.)

Incremental: the state of the last run (leaf stat signatures and hashes, output hashes) is kept
in `floor-state.json`; a run executes only the tasks downstream of leaves whose signature
changed. No e3 import: this is the floor, not e3.
"""
from __future__ import annotations

import json
import os
import sys


def main(level: str, jobs: int) -> int:
    if level == "imports":
        import asyncio  # noqa: F401
        import sqlite3  # noqa: F401

        import anyio._backends._asyncio  # noqa: F401
        import click  # noqa: F401
    record = level in ("record", "imports")
    if record:
        import sqlite3

        from blake3 import blake3
    g = json.load(open("graph.json"))
    tasks: dict = g["tasks"]
    order = list(tasks)
    try:
        state = json.load(open("floor-state.json"))
    except FileNotFoundError:
        state = None
    dirty_leaves = set()
    leaf_sig = {}
    for leaf in g["leaves"]:
        st = os.stat("in/" + leaf)
        leaf_sig[leaf] = [st.st_size, st.st_mtime_ns]
        if state is None or state["sig"].get(leaf) != leaf_sig[leaf]:
            dirty_leaves.add(leaf)
    hashes = dict(state["hashes"]) if state else {}
    if record:
        for leaf in dirty_leaves:
            hashes["leaf:" + leaf] = blake3(open("in/" + leaf, "rb").read()).hexdigest()
    run = []
    dirty = {("leaf", x) for x in dirty_leaves}
    for t in order:
        if any(tuple(i) in dirty for i in tasks[t]):
            dirty.add(("task", t))
            run.append(t)
    todo = set(run)
    waiting = {t: sum(1 for k, n in tasks[t] if k == "task" and n in todo) for t in run}
    kids: dict = {}
    for t in run:
        for k, n in tasks[t]:
            if k == "task" and n in todo:
                kids.setdefault(n, []).append(t)
    ready = [t for t in run if waiting[t] == 0]
    ready.reverse()  # pop() from the end: dependency order
    env = dict(os.environ)
    log = os.open("floor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    acts = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
    running: dict = {}
    rows = []
    made = set()
    if record:
        os.makedirs(".floor/objects", exist_ok=True)
        os.makedirs("wc", exist_ok=True)
    failed = 0
    while ready or running:
        while ready and len(running) < jobs:
            t = ready.pop()
            if record and state is not None:  # its last output is an object now: a new file
                try:
                    os.unlink("out/" + t)
                except FileNotFoundError:
                    pass
            ins = " ".join(("in/" if k == "leaf" else "out/") + n for k, n in tasks[t])
            pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"cat {ins} | md5sum > out/{t}"], env,
                                 file_actions=acts, setsid=True)
            running[pid] = t
        pid, status = os.wait()
        t = running.pop(pid)
        if status != 0:
            failed += 1
            continue
        if record:
            out = "out/" + t
            data = open(out, "rb").read()
            h = blake3(data).hexdigest()
            key = blake3(("sh\0" + "\0".join(
                hashes[("leaf:" if k == "leaf" else "task:") + n] for k, n in tasks[t])).encode()
            ).hexdigest()
            hashes["task:" + t] = h
            d = ".floor/objects/" + h[:2]
            if d not in made:
                os.makedirs(d, exist_ok=True)
                made.add(d)
            try:
                os.link(out, d + "/" + h[2:])
            except FileExistsError:
                pass
            w = "wc/" + t
            os.makedirs(w, exist_ok=True)
            tmp = w + "/.out.tmp"  # the working copy: a file of its own, as e3 writes it
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, data)
            os.close(fd)
            os.replace(tmp, w + "/out")
            rows.append((key, h, t))
        for k in kids.get(t, ()):
            waiting[k] -= 1
            if waiting[k] == 0:
                ready.append(k)
    if record:
        db = sqlite3.connect(".floor/index.db")
        db.execute("CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, output TEXT, df TEXT)")
        with db:
            db.executemany("INSERT OR REPLACE INTO memo VALUES (?, ?, ?)", rows)
        db.close()
        os.sync()
    with open("floor-state.json.tmp", "w") as f:
        json.dump({"sig": leaf_sig, "hashes": hashes}, f)
    os.replace("floor-state.json.tmp", "floor-state.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
