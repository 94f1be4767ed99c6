"""Stress: 5 concurrent `e3 go` and 10 concurrent `e3 set` on one workspace (issue 6).

    python bench/stress_concurrent.py               # 20 rounds
    python bench/stress_concurrent.py --quick       # 2 rounds, seconds
    python bench/stress_concurrent.py --retry       # refused gos retry until each has run once

Project: `naps` (tests/naps.py), shell tasks sleeping 0-0.2 s, whose outputs are a pure function
of their inputs: every output is its data input's bytes plus the dataflow's name (`big`: zero
bytes first), so whether a root is consistent can be checked edge by edge.

Each round starts, at random offsets within about one run's length, 5 `e3 go` and 10 `e3 set`
(each sets one input — the seed, a duration or `big`'s size — to a random value from a file).
Then it requires:
  1. every `e3 set` exits 0 (a set during a run succeeds);
  2. every `e3 go` either ran (exit 0 or 1) or was refused fast with the lock message naming the
     running one (`is busy: held by pid ...`); with --retry each refused one tries again;
  3. exactly one `go` at a time ran: the [started, ended] intervals of the runs in index.db do
     not overlap;
  4. no output is computed from a mix of old and new inputs: in the state root every run
     answered with, each dataflow's output is its inputs' function in that same root, unless
     the run reported the dataflow `stale`;
  5. after the round, one more `e3 go` leaves every output matching the final inputs, and a
     further `e3 go` executes nothing; `e3 fsck` is clean.
Seeded. Prints counts; exit 1 on any failure.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from e3logic.repo.repository import Repository  # noqa: E402
from tests.helpers import e3_env  # noqa: E402
from tests.naps import FLOWS, NAMES, make_project  # noqa: E402

GOS, SETS = 5, 10


def e3(cwd, *args, env, timeout=300):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "e3logic", *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def consistent(repo: Repository, root: str, skip=()) -> list[str]:
    """Dataflows whose output in `root` is not the function of their inputs in `root`."""
    trees, objects = repo.trees, repo.objects

    def read(path):
        e = trees.find(root, path)
        return None if e is None else objects.read(e["hash"])

    bad = []
    for name, data in FLOWS.items():
        if name in skip:
            continue
        out = read(f"outputs/{name}/o")
        if out is None:
            continue  # not computed (yet): nothing to be inconsistent
        src = read(data)
        if src is None:
            bad.append(name)
            continue
        want = src + name.encode() + b"\n" if name != "big" else None
        if name == "big":
            size = int(read("inputs/size") or b"0")
            want = b"\0" * size + src
        if out != want:
            bad.append(name)
    return bad


def runs(repo: Repository, after: int) -> list[tuple]:
    return repo.index.execute("SELECT run, started, ended, status FROM runs WHERE seq>? "
                              "ORDER BY started", (after,)).fetchall()


def round_(proj: Path, repo: Repository, rnd: random.Random, env, window: float,
           retry: bool) -> dict:
    seq0 = repo.index.execute("SELECT COALESCE(MAX(seq),0) FROM runs").fetchone()[0]
    results = {"go": [], "set": []}
    lock = threading.Lock()
    values = proj / "values"
    values.mkdir(exist_ok=True)

    def go(delay, backoff):
        time.sleep(delay)
        while True:
            rc, out, err, dt = e3(proj, "--json", "go", "-j", "4", env=env)
            refused = rc != 0 and "is busy" in err
            with lock:
                results["go"].append((rc, out, err, dt, refused))
            if not (retry and refused):
                return
            time.sleep(backoff)

    def set_(i, delay, path, text):
        time.sleep(delay)
        f = values / f"v{i}"
        f.write_text(text)
        rc, out, err, dt = e3(proj, "--json", "set", path, f, env=env)
        with lock:
            results["set"].append((rc, path, err))

    # every random choice is drawn here, before the threads start (seeded, in order)
    threads = [threading.Thread(target=go, args=(rnd.uniform(0, window), rnd.uniform(0.01, 0.1)))
               for _ in range(GOS)]
    for i in range(SETS):
        path = rnd.choice(["inputs/seed", "inputs/size"] + [f"inputs/t/{n}" for n in NAMES])
        if path == "inputs/seed":
            text = json.dumps(f"seed-{rnd.randint(0, 5)}")
        elif path == "inputs/size":
            text = str(rnd.choice([0, 10, 1000]))
        else:
            n = path.rsplit("/", 1)[1]
            text = f"{n} {rnd.choice([0, 0.05, 0.1, 0.2])}\n"
        threads.append(threading.Thread(target=set_,
                                        args=(i, rnd.uniform(0, window), path, text)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    problems = []
    for rc, path, err in results["set"]:
        if rc != 0:
            problems.append(f"e3 set {path} exit {rc}: {err.strip()[-200:]}")
    ran = refused = 0
    for rc, out, err, dt, was_refused in results["go"]:
        if was_refused:
            refused += 1
            if "held by pid" not in err:
                problems.append(f"refused go does not name the holder: {err.strip()}")
            continue
        if rc not in (0, 1):
            problems.append(f"go exit {rc}: {err.strip()[-300:]}")
            continue
        ran += 1
        res = json.loads(out)
        bad = consistent(repo, res["state_root"], skip=set(res.get("stale") or ()))
        if bad:
            problems.append(f"run {res['run']}: outputs not matching inputs in its root: {bad}")
    rs = runs(repo, seq0)
    if len(rs) != ran:
        problems.append(f"{ran} gos ran but index.db holds {len(rs)} runs")
    for (r1, s1, e1, _), (r2, s2, e2, _) in zip(rs, rs[1:]):
        if e1 is None or s2 < e1:
            problems.append(f"runs {r1} and {r2} overlapped")
    # settle: one more go, then outputs match the final inputs and a further go has no work
    rc, out, err, _ = e3(proj, "--json", "go", "-j", "4", env=env)
    if rc != 0:
        problems.append(f"settling go exit {rc}: {err.strip()[-300:]}")
    else:
        res = json.loads(out)
        from e3logic.repo.workspaces import Workspaces

        cur = Workspaces(repo).root("main")
        bad = consistent(repo, cur)
        missing = [n for n in NAMES if repo.trees.find(cur, f"outputs/{n}/o") is None]
        if bad or missing:
            problems.append(f"after settling: inconsistent {bad}, missing {missing}")
        for n in NAMES:
            e = repo.trees.find(cur, f"outputs/{n}/o")
            f = proj / "outputs" / n / "o"
            if e is not None and (not f.exists() or repo.objects.read(e["hash"]) != f.read_bytes()):
                from e3logic.core.hashing import hash_file

                wch = hash_file(f) if f.exists() else None

                def made_by(h):
                    r = repo.index.execute("SELECT run, status FROM executions WHERE "
                                           "output_hash=? AND dataflow=? ORDER BY id", (h, n))
                    return [f"{a}:{b}" for a, b in r.fetchall()]
                problems.append(f"working copy outputs/{n}/o differs from the root (root "
                                f"{e['hash'][:10]} made by {made_by(e['hash'])}, file "
                                f"{(wch or 'missing')[:10]} made by {made_by(wch)}; "
                                f"settling run {res['run']} executed {res['executed']}, "
                                f"cached {res['cached']})")
        rc, out, err, _ = e3(proj, "--json", "go", "-j", "4", env=env)
        if rc != 0 or json.loads(out)["executed"]:
            problems.append(f"a further go had work: {out.strip()[:300]}")
    rc, out, err, _ = e3(proj, "--json", "fsck", env=env)
    if rc != 0 or not json.loads(out).get("ok"):
        problems.append(f"fsck: {out.strip()}")
    return {"gos": len(results["go"]), "ran": ran, "refused": refused,
            "sets": len(results["set"]), "problems": problems}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 rounds")
    ap.add_argument("--retry", action="store_true", help="refused gos retry until they ran")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    rnd = random.Random(args.seed)
    env = e3_env()
    totals = {"rounds": rounds, "gos": 0, "ran": 0, "refused": 0, "sets": 0, "failures": 0,
              "refusals_not_naming_the_holder": 0, "other_problems": 0}
    failed = []
    with tempfile.TemporaryDirectory(prefix="e3-stress-concurrent-") as tmp:
        proj = make_project(Path(tmp) / "proj", Path(tmp) / "pkg")
        repo = Repository(proj)
        t0 = time.perf_counter()
        e3(proj, "--json", "go", env=env)
        window = max(0.5, time.perf_counter() - t0)
        for i in range(rounds):
            r = round_(proj, repo, rnd, env, window, args.retry)
            for k in ("gos", "ran", "refused", "sets"):
                totals[k] += r[k]
            unnamed = sum("does not name the holder" in x for x in r["problems"])
            totals["refusals_not_naming_the_holder"] += unnamed
            totals["other_problems"] += len(r["problems"]) - unnamed
            if r["problems"]:
                totals["failures"] += 1
                failed.append({"round": i, "problems": r["problems"]})
                print(f"round {i}: FAILED {r['problems']}", file=sys.stderr)
            else:
                print(f"round {i}: ok ({r['ran']} ran, {r['refused']} refused, "
                      f"{r['sets']} sets)", file=sys.stderr)
    print(f"{totals['rounds']} rounds: {totals['gos']} go ({totals['ran']} ran, "
          f"{totals['refused']} refused fast), {totals['sets']} set; "
          f"{totals['failures']} failed rounds ({totals['refusals_not_naming_the_holder']} "
          f"refusals not naming the holder, {totals['other_problems']} other problems)",
          file=sys.stderr)
    if args.json:
        print(json.dumps({"seed": args.seed, "retry": args.retry, **totals, "failed": failed},
                         indent=2))
    return 1 if totals["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
