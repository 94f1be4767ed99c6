"""Test packages for the executor's end-to-end tests, the `execute`, `episodes`,
`determinism`, `fault` and `stats` conformance suites: written as `e3pkg.py` directories,
built and installed once per template, copied per test.

`flows` — 12 dataflows mixing python (P), inline (I) and shell (S) tasks, three independent
branches plus a lone one:

    inputs/nums ─┬─ total (P) ─────────────┐
                 └─ peak (P) ── scaled (I) ┴─ report (S) ─┐
    inputs/k ───────────────────┘                          ├─ combine (S) ─┐
            └── side (S)                                   │               ├─ final (I)
    inputs/text ── norm (P) ─┬─ upper (S) ─────────────────┘               │
                             └─ count (I) ─────────────────────────────────┘
    inputs/flag ── check (P) ── after (S)

`peak` takes a max and `norm` normalises whitespace: the early-cutoff points. `check` raises
when `inputs/flag` is "fail" (a python task failure). `total` and `side` print to stdout and
stderr (logs).

`pair` — `bad` (shell: prints to stderr, exits 3), `slow` (shell `sleep 30`, no budget) and
`later` (reads `bad`'s output): fail-fast cancels `slow` in flight.

`limits` — one task per way of dying: `nap` (shell `sleep 30`, wall_s=1), `doze` (inline,
sleeps 6 s under wall_s=1), `hog` (python, allocates 512 MiB under mem_mb=64), `spin` (python
busy loop under cpu_s=1), `chatty` (python, prints 100 kB under io_bytes=1000), `flood`
(shell, writes 200 kB under io_bytes=1000), `crash` (python worker `os._exit(3)`), with
`after_crash` depending on `crash` and `fine`, independent.

`talk` — one inline dataflow that prints to stdout and stderr.

`twins` — `a` and `b` apply one shell task to one input (one execution key; the task writes its
output, then sleeps 0.5 s), `c` reads both.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

from e3logic.core.hashing import hash_bytes
from tests.helpers import ROOT, run_e3

ROOT_DIR = ROOT  # the repository checkout

FLOWS_STEPS = '''
import os
import sys


def total(nums):
    print("total of", len(nums), "numbers")
    print("total-stderr", file=sys.stderr)
    return sum(nums)


def peak(nums):
    return max(nums)


def scale(peak, k):
    return peak * k


def norm(text):
    return b" ".join(text.split()) + b"\\n"


def count(text):
    return {"words": len(text.split())}


def check(flag):
    if flag == "fail":
        raise ValueError("flag says fail")
    return {"flag": flag}


def final(combined, counts):
    return {"bytes": len(combined), "words": counts["words"]}
'''

FLOWS_PKG = '''
from e3logic import sdk

package = sdk.package("flows", "0.1.0")
package.module("steps.py")
package.task("total", "steps:total", runtime="python")
package.task("peak", "steps:peak", runtime="python")
package.task("norm", "steps:norm", runtime="python")
package.task("check", "steps:check", runtime="python")
package.task("scale", "steps:scale", runtime="inline")
package.task("count", "steps:count", runtime="inline")
package.task("final", "steps:final", runtime="inline")
package.task("concat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.task("upper", ["sh", "-c", "tr a-z A-Z < {input0} > {output}"], runtime="shell")
package.task("side", ["sh", "-c", "echo side-stdout; echo side-stderr >&2; "
                                  "cat {input0} {input0} > {output}"], runtime="shell")

package.dataset("inputs/nums", value=[3, 9, 4])
package.dataset("inputs/k", value=2)
package.dataset("inputs/text", file="data/text.txt")
package.dataset("inputs/flag", value="ok")

package.dataflow("total", task="total", inputs=["inputs/nums"], output="o")
package.dataflow("peak", task="peak", inputs=["inputs/nums"], output="o")
package.dataflow("scaled", task="scale", inputs=["outputs/peak/o", "inputs/k"], output="o")
package.dataflow("report", task="concat", inputs=["outputs/total/o", "outputs/scaled/o"],
                 output="o")
package.dataflow("side", task="side", inputs=["inputs/k"], output="o")
package.dataflow("norm", task="norm", inputs=["inputs/text"], output="o")
package.dataflow("upper", task="upper", inputs=["outputs/norm/o"], output="o")
package.dataflow("count", task="count", inputs=["outputs/norm/o"], output="o")
package.dataflow("combine", task="concat", inputs=["outputs/report/o", "outputs/upper/o"],
                 output="o")
package.dataflow("final", task="final", inputs=["outputs/combine/o", "outputs/count/o"],
                 output="o")
package.dataflow("check", task="check", inputs=["inputs/flag"], output="o")
package.dataflow("after", task="concat", inputs=["outputs/check/o"], output="o")
'''
FLOWS_TEXT = b"hello   world\nfoo bar\n"
FLOWS = sorted(["total", "peak", "scaled", "report", "side", "norm", "upper", "count",
                "combine", "final", "check", "after"])
# The cold run of `flows` (tests/flows.py) in a fresh repository, any -j, any executor.
FLOWS_COLD = {
    "state_root": "996bde2152f332b7b6201e270135c69f0f171192729274c1af3d2f5418557af3",
    "receipt": "93aa71d72bff882bb7f780b6bb93ebdea1d01ba79a541db113ada8e27b3fce1b",
    "commit": "acf7a55b4c586c2b2f19b8550f508a72057fed964b0e006978cb1c155cc85fb3",
}

# The cold run of the bundled example, e3logic/examples/forecast (e3 init, build, add, checkout,
# go). These change only when the example's sources or the identity rules (canonical encoding,
# keys, commit tag) change.
FORECAST_COLD = {
    "state_root": "3d46d3bee8e9d0e9f1e7c202075ac505f7fda024c53d3c240ab588be3f10575f",
    "receipt": "8ec585352c065691ed63e14b800f174a021f4a561b23573c63944757359551f5",
    "commit": "d3084828ea91a89f56b12605ff2a8fe0af306ee4159fb809903572adbc9cd830",
}

# what each dataflow reads (for closures in tests)
FLOWS_DEPS = {"total": [], "peak": [], "scaled": ["peak"], "report": ["total", "scaled"],
              "side": [], "norm": [], "upper": ["norm"], "count": ["norm"],
              "combine": ["report", "upper"], "final": ["combine", "count"], "check": [],
              "after": ["check"]}
# every output after a cold run of the package as shipped
FLOWS_OUTPUTS = {"total": b"16", "peak": b"9", "scaled": b"18", "report": b"1618",
                 "side": b"22", "norm": b"hello world foo bar\n",
                 "upper": b"HELLO WORLD FOO BAR\n", "count": b'{"words":4}',
                 "combine": b"1618HELLO WORLD FOO BAR\n", "final": b'{"bytes":24,"words":4}',
                 "check": b'{"flag":"ok"}', "after": b'{"flag":"ok"}'}
FLOWS_RUNTIMES = {"python": ["check", "norm", "peak", "total"],
                  "inline": ["count", "final", "scaled"],
                  "shell": ["after", "combine", "report", "side", "upper"]}

LIMITS_STEPS = '''
import os
import time


def hog(x):
    block = bytearray(512 * 1024 * 1024)
    return len(block)


def spin(x):
    n = 0
    while True:
        n += 1


def crash(x):
    os._exit(3)


def fine(x):
    return {"fine": x}


def doze(x):
    time.sleep(6)
    return x


def chatty(x):
    print("y" * 100000)
    return x
'''

LIMITS_PKG = '''
from e3logic import sdk

package = sdk.package("limits", "0.1.0")
package.module("steps.py")
package.task("nap", ["sh", "-c", "sleep 30; echo late > {output}"], runtime="shell")
package.task("hog", "steps:hog", runtime="python")
package.task("spin", "steps:spin", runtime="python")
package.task("crash", "steps:crash", runtime="python")
package.task("fine", "steps:fine", runtime="python")
package.task("copy", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/x", value=1)
package.dataflow("nap", task="nap", inputs=["inputs/x"], output="o", budget={"wall_s": 1})
package.dataflow("hog", task="hog", inputs=["inputs/x"], output="o",
                 budget={"mem_mb": 64, "wall_s": 60})
package.dataflow("spin", task="spin", inputs=["inputs/x"], output="o",
                 budget={"cpu_s": 1, "wall_s": 60})
package.dataflow("crash", task="crash", inputs=["inputs/x"], output="o")
package.dataflow("after_crash", task="copy", inputs=["outputs/crash/o"], output="o")
package.dataflow("fine", task="fine", inputs=["inputs/x"], output="o")
package.task("doze", "steps:doze", runtime="inline")
package.task("chatty", "steps:chatty", runtime="python")
package.task("flood", ["sh", "-c", "head -c 200000 /dev/zero > {output}"], runtime="shell")
package.dataflow("doze", task="doze", inputs=["inputs/x"], output="o", budget={"wall_s": 1})
package.dataflow("chatty", task="chatty", inputs=["inputs/x"], output="o",
                 budget={"io_bytes": 1000})
package.dataflow("flood", task="flood", inputs=["inputs/x"], output="o",
                 budget={"io_bytes": 1000})
'''
LIMITS = sorted(["nap", "hog", "spin", "crash", "after_crash", "fine", "doze", "chatty",
                 "flood"])
# dataflow -> the reason its episode must fail with
LIMITS_REASONS = {"nap": "budget wall_s=1 exceeded", "hog": "budget mem_mb=64 exceeded",
                  "spin": "budget cpu_s=1 exceeded", "crash": "python worker died (exit 3)",
                  "doze": "budget wall_s=1 exceeded", "chatty": "budget io_bytes=1000 exceeded",
                  "flood": "budget io_bytes=1000 exceeded"}

PAIR_PKG = '''
from e3logic import sdk

package = sdk.package("pair", "0.1.0")
package.task("bad", ["sh", "-c", "echo oops-on-stderr >&2; exit 3"], runtime="shell")
package.task("slow", ["sh", "-c", "sleep 30; cat {input0} > {output}"], runtime="shell")
package.task("copy", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/x", value=1)
package.dataflow("bad", task="bad", inputs=["inputs/x"], output="o")
package.dataflow("slow", task="slow", inputs=["inputs/x"], output="o")
package.dataflow("later", task="copy", inputs=["outputs/bad/o"], output="o")
'''


def write_flows(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "data").mkdir(exist_ok=True)
    (d / "steps.py").write_text(FLOWS_STEPS)
    (d / "data" / "text.txt").write_bytes(FLOWS_TEXT)
    (d / "e3pkg.py").write_text(FLOWS_PKG)
    return d


def write_limits(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "steps.py").write_text(LIMITS_STEPS)
    (d / "e3pkg.py").write_text(LIMITS_PKG)
    return d


TALK_PKG = '''
from e3logic import sdk

package = sdk.package("talk", "0.1.0")
package.module("steps.py")
package.task("talk", "steps:talk", runtime="inline")
package.dataset("inputs/x", value=1)
package.dataflow("talk", task="talk", inputs=["inputs/x"], output="o")
'''
TALK_STEPS = '''
import sys


def talk(x):
    print("inline-stdout")
    print("inline-stderr", file=sys.stderr)
    return x
'''


TWINS_PKG = '''
from e3logic import sdk

package = sdk.package("twins", "0.1.0")
package.task("up", ["sh", "-c", "tr a-z A-Z < {input0} > {output}; sleep 0.5"], runtime="shell")
package.task("cat", ["sh", "-c", "cat {inputs} > {output}"], runtime="shell")
package.dataset("inputs/x", value="abc")
package.dataflow("a", task="up", inputs=["inputs/x"], output="o")
package.dataflow("b", task="up", inputs=["inputs/x"], output="o")
package.dataflow("c", task="cat", inputs=["outputs/a/o", "outputs/b/o"], output="o")
'''


def write_twins(d: Path) -> Path:
    return write_package(d, TWINS_PKG)


def write_talk(d: Path) -> Path:
    return write_package(d, TALK_PKG, {"steps.py": TALK_STEPS})


def write_pair(d: Path) -> Path:
    return write_package(d, PAIR_PKG)


def write_package(d: Path, e3pkg: str, files: dict[str, str | bytes] | None = None) -> Path:
    """Any package directory: an `e3pkg.py` text plus `files` {relative path: content}."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "e3pkg.py").write_text(e3pkg)
    for rel, content in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return d


def make_project(dest: Path, package_dir: Path, name: str, version: str = "0.1.0") -> Path:
    """`e3 init`, `e3 build`, `e3 add`, `e3 checkout` through the real command."""
    dest.mkdir(parents=True, exist_ok=True)
    for args in (("init", "."), ("build", str(package_dir), "-o", "dist"),
                 ("add", f"dist/{name}-{version}.zip"), ("checkout", name)):
        r = run_e3(*args, cwd=dest)
        assert r.code == 0, (args, r)
    return dest


_TEMPLATES: dict[tuple, Path] = {}
WRITERS = {"flows": write_flows, "limits": write_limits, "pair": write_pair,
           "talk": write_talk, "twins": write_twins}


def template(cache_dir: Path, name: str) -> Path:
    """A project with package `name` ("flows" or "limits") checked out and nothing run,
    made once per (cache_dir, name)."""
    key = (str(cache_dir), name)
    if key not in _TEMPLATES or not _TEMPLATES[key].exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        src = WRITERS[name](cache_dir / f"{name}-pkg")
        _TEMPLATES[key] = make_project(cache_dir / f"{name}-template", src, name)
    return _TEMPLATES[key]


def copy_project(factory, name: str, dest: Path) -> "Proj":
    """A fresh project (a copy of the session's template) with package `name` checked out and
    nothing run; `factory` is pytest's `tmp_path_factory` (or a directory for the templates)."""
    cache = Path(factory) if isinstance(factory, (str, Path)) else \
        factory.getbasetemp() / "e3-templates"
    shutil.copytree(template(cache, name), dest, symlinks=True)
    return Proj(dest)


class Proj:
    """A project directory under test, driven through the real `e3` command."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def e3(self, *args, **kw):
        return run_e3(*args, cwd=self.path, **kw)

    def go(self, *args, code: int | None = 0) -> dict:
        """`e3 --json go -j 2 ARGS`; asserts the exit code (unless None); returns the answer."""
        if not any(a == "-j" or str(a).startswith("-j") for a in args):
            args = ("-j", "2", *args)
        r = self.e3("--json", "go", *args)
        if code is not None:
            assert r.code == code, r
        assert r.out.strip(), r
        return r.json

    def episodes(self, run: str | None = None) -> list[dict]:
        r = self.e3("--json", "episodes", *(("--run", run) if run else ()))
        assert r.code == 0, r
        return r.json

    def histories(self, run: str) -> dict[str, list[dict]]:
        """dataflow -> history rows ({"state","beat","note"}) of its last episode in `run`."""
        return {e["dataflow"]: e["history"] for e in self.episodes(run)}

    def set_json(self, path: str, value) -> None:
        self.write(path, json.dumps(value).encode())

    def write(self, path: str, data: bytes) -> None:
        """Edit a working-copy input file (save by rename, as editors do)."""
        p = self.path / path
        tmp = p.with_name("." + p.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    def read(self, path: str) -> bytes:
        return (self.path / path).read_bytes()

    def db(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Read-only query on index.db."""
        con = sqlite3.connect(f"file:{self.path / '.e3' / 'index.db'}?mode=ro", uri=True)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def object_path(self, h: str) -> Path:
        return self.path / ".e3" / "objects" / h[:2] / h[2:]

    def file_hash(self, path: str) -> str:
        """The object hash of a working-copy file (byte-identical to its dataset)."""
        return hash_bytes(self.read(path))


def states(history: list[dict]) -> list[str]:
    return [h["state"] for h in history]


def closure(changed_readers: list[str], deps: dict[str, list[str]] = FLOWS_DEPS) -> list[str]:
    """The dataflows downstream of (and including) `changed_readers`, sorted."""
    down: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            down[d].append(n)
    seen, stack = set(changed_readers), list(changed_readers)
    while stack:
        for m in down[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return sorted(seen)


GO_KEYS = {"run", "status", "executed", "cached", "failed", "skipped", "cancelled",
           "state_root", "commit", "receipt"}
LISTS = ("executed", "cached", "failed", "skipped", "cancelled")



def api_project(dest: Path, package_dir: Path, name: str, version: str = "0.1.0"):
    """In-process: `Repo.init(dest)`, build `package_dir`, install the bundle, check it out.
    Returns the `e3logic.api.Repo` (for module-level tests that need no subprocess)."""
    from e3logic import sdk
    from e3logic.api import Repo
    from e3logic.repo import packages

    api = Repo.init(dest)
    built = sdk.build(package_dir, outdir=dest.parent / f"{dest.name}-dist")
    packages.import_bundle(api.r, built["path"])
    api.checkout(f"{name}@{version}")
    return api


def in_process_go(api, *targets, **kw) -> dict:
    """One `e3 go` through `dataflow.go.Go`, in this process (for module-level tests)."""
    from e3logic.dataflow.go import Go

    kw.setdefault("cap", 2)
    return Go(api, targets, **kw)()


__all__ = [n for n in dir() if not n.startswith("_")]
