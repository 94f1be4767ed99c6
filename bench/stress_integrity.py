"""Stress: `e3 go` 20 times while `e3 set` and `e3 gc --min-age 0` loop beside it (issue
"Integrity"). Not a timed test: it counts trials and failures.

    python bench/stress_integrity.py            # 20 runs
    python bench/stress_integrity.py --quick    # 3 runs, seconds

Project: 3 JSON inputs `inputs/s0..s2` and 24 shell dataflows in three layers (`cat {inputs} |
md5sum`, sleeping 0.05 s first), so every output is a pure function of the bytes it read.
Beside the runs, one loop sets a random input to a fresh value, another runs
`e3 gc --min-age 0`, both for the whole stress. After each run:
  1. the run exits 0 (ok) and `e3 fsck` is clean;
  2. no run's readers of one dataset saw two hashes (provenance of its receipt's executions);
  3. every output the run recorded equals the md5 of the bytes its recorded inputs name
     (computed here, independently, from the values the set loop wrote);
  4. no command of either loop failed (`set` exits 0; `gc` exits 0).
Seeded. Prints the counts (all failures must be 0); exit 1 on any failure.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e3logic.core.hashing import hash_bytes  # noqa: E402

PKG = '''
from e3logic import sdk

package = sdk.package("stress", "0.1.0")
for i in range(3):
    package.dataset(f"inputs/s{i}", value=f"v{i}")
package.task("h", ["sh", "-c", "sleep 0.05; cat {inputs} | md5sum > {output}"],
             runtime="shell")
W = 8
for j in range(W):
    package.dataflow(f"a{j}", task="h", inputs=[f"inputs/s{j % 3}", f"inputs/s{(j + 1) % 3}"],
                     output="o")
for j in range(W):
    package.dataflow(f"b{j}", task="h", inputs=[f"outputs/a{j}/o", f"outputs/a{(j + 1) % W}/o"],
                     output="o")
for j in range(W):
    package.dataflow(f"c{j}", task="h", inputs=[f"outputs/b{j}/o", f"inputs/s{j % 3}"], output="o")
'''


def e3(*args, cwd, check=False):
    r = subprocess.run([sys.executable, "-m", "e3logic", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=600)
    if check and r.returncode != 0:
        raise SystemExit(f"e3 {' '.join(args)} failed: {r.stderr}")
    return r


def setup(work: Path) -> Path:
    pkg = work / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "e3pkg.py").write_text(PKG)
    proj = work / "proj"
    e3("init", str(proj), cwd=work, check=True)
    e3("build", str(pkg), "-o", str(work / "dist"), cwd=proj, check=True)
    e3("add", str(work / "dist" / "stress-0.1.0.zip"), cwd=proj, check=True)
    e3("checkout", "stress", cwd=proj, check=True)
    return proj


def _failure_notes(proj: Path, res: dict) -> dict:
    """dataflow -> the last history note of each failed episode of the run."""
    eps = json.loads(e3("--json", "episodes", "--run", res["run"], cwd=proj).stdout)
    return {e["dataflow"]: e["history"][-1]["note"] for e in eps
            if e["dataflow"] in res.get("failed", [])}


class Loop(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.stop, self.count, self.failures = fn, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            err = self.fn()
            self.count += 1
            if err:
                self.failures.append(err)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 runs")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    runs = 3 if args.quick else args.runs
    rnd = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="e3-stress-integrity-"))
    proj = setup(work)
    values = {hash_bytes(json.dumps(f"v{i}").encode()): json.dumps(f"v{i}").encode()
              for i in range(3)}  # every input value ever set, by hash
    n = [0]

    def set_one():
        n[0] += 1
        data = json.dumps(f"value {n[0]} {rnd.random()}").encode()
        f = work / "value.json"
        f.write_bytes(data)
        values[hash_bytes(data)] = data
        r = e3("set", f"inputs/s{rnd.randrange(3)}", str(f), cwd=proj)
        return None if r.returncode == 0 else f"set: {r.stderr.strip()}"

    def gc_once():
        r = e3("gc", "--min-age", "0", cwd=proj)
        return None if r.returncode == 0 else f"gc: {r.stderr.strip()}"

    loops = [Loop(set_one), Loop(gc_once)]
    for t in loops:
        t.start()
    fails = {"go": 0, "fsck": 0, "mixed": 0, "wrong_output": 0}
    notes = []
    db = proj / ".e3" / "index.db"
    try:
        for i in range(runs):
            r = e3("--json", "go", "-j", "2", cwd=proj)
            if r.returncode != 0:
                fails["go"] += 1
                why = r.stderr.strip()[-300:]
                try:
                    why = json.dumps(json.loads(r.stdout).get("reasons") or
                                     _failure_notes(proj, json.loads(r.stdout)))
                except ValueError:
                    pass
                notes.append(f"run {i}: go exit {r.returncode}: {why}")
                continue
            res = json.loads(r.stdout)
            f = e3("--json", "fsck", cwd=proj)
            if f.returncode != 0:
                fails["fsck"] += 1
                notes.append(f"run {i}: fsck: {f.stdout.strip()[-300:]}")
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                rows = con.execute(
                    "SELECT r.dataflow, r.output_hash, p.pos, p.path, p.hash FROM receipts r "
                    "JOIN provenance p ON p.key = r.key AND p.role = 'in' WHERE r.run = ? "
                    "ORDER BY r.dataflow, p.pos", (res["run"],)).fetchall()
            finally:
                con.close()
            seen: dict[str, set] = {}
            ins: dict[str, list] = {}
            outs: dict[str, str] = {}
            for name, out, _, path, h in rows:
                seen.setdefault(path, set()).add(h)
                ins.setdefault(name, []).append((path, h))
                outs[name] = out
            mixed = sorted(p for p, hs in seen.items() if p.startswith("inputs/") and len(hs) > 1)
            if mixed:
                fails["mixed"] += 1
                notes.append(f"run {i}: readers of {mixed[0]} saw {len(seen[mixed[0]])} hashes")
            # recompute every output from the input bytes its run recorded, layer by layer
            produced = {f"outputs/{name}/o": h for name, h in outs.items()}
            computed: dict[str, bytes] = {}
            for name in sorted(ins, key=lambda x: (x[0], int(x[1:]))):
                parts = []
                for path, h in ins[name]:
                    if path.startswith("inputs/"):
                        parts.append(values.get(h))
                    else:
                        up = path.split("/")[1]
                        parts.append(computed.get(up) if produced.get(path) == h else None)
                if any(p is None for p in parts):
                    fails["wrong_output"] += 1
                    notes.append(f"run {i}: {name} read bytes nobody wrote")
                    continue
                want = hashlib.md5(b"".join(parts)).hexdigest().encode() + b"  -\n"
                computed[name] = want
                if hash_bytes(want) != outs[name]:
                    fails["wrong_output"] += 1
                    notes.append(f"run {i}: {name}'s output is not the md5 of its inputs")
    finally:
        for t in loops:
            t.stop.set()
        for t in loops:
            t.join(60)
    loop_fails = sum(len(t.failures) for t in loops)
    notes += [x for t in loops for x in t.failures[:3]]
    total = sum(fails.values()) + loop_fails
    print(json.dumps({"runs": runs, "sets": loops[0].count, "gcs": loops[1].count,
                      "failures": {**fails, "loops": loop_fails}}, sort_keys=True))
    for x in notes[:20]:
        print(" ", x)
    print("stress_integrity:", "ok" if total == 0 else f"{total} failures")
    return 0 if total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
