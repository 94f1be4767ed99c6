"""What a run must execute, and why: observe the repository, let the rules decide.

Observing is content work the rules cannot do: walking the selected dataflows in dependency
order, each one's execution key is computed from its task hash and its input bytes (upstream
outputs as the memo holds them) and looked up in the memo (`predict`). What it finds becomes
facts — `miss(D)`, `input_missing(D, P)`, `output_lost(D)` — beside the package graph restricted
to the selection and, for the dataflows that miss, the facts that explain it, read from the
workspace's last settled run (`input_changed(P)`, `code_changed(D)`, `failed_last(D)`,
`never_run(D)`). Deciding is the rerun policy, e3logic/rules/dirty.dl plus the project's own
rules/*.dl, evaluated by the fast engine: `dirty(D)` is what runs, `reason(D, Kind, About)`
says why (`Policy.decide`). `Go`'s warm and incremental paths are this decision compiled for
speed; a property test checks that they, and both engines, agree.
"""
from __future__ import annotations

from pathlib import Path

# The order in which a dataflow's own reasons are preferred (a user rule after `forced`).
KINDS = ("forced", "rule", "revoked", "code", "failed", "input", "input_missing",
         "output_lost", "never_run", "changed", "no_memo")
RULE_PREFIX = "e3_rule_"


class Prediction:
    """What was observed and decided for one run: `order` the selected dataflows in dependency
    order, `run` those decided to execute, `cached` the rest; `keys` the known execution keys,
    `outputs` and `formats` the output hash and format of every memo hit (cached or not);
    `in_root` the hits whose output the root already holds at its path. Observations: `miss`,
    `input_missing` {D: path}, `output_lost`. Decision: `reasons` {D: text} for every one in
    `run`, `rule_forced` those a project rule made dirty although the memo has them."""

    __slots__ = ("order", "run", "cached", "keys", "outputs", "formats", "in_root", "miss",
                 "input_missing", "output_lost", "reasons", "rule_forced", "observed")

    def __init__(self, order: list, run: list, cached: list, keys: dict | None = None,
                 outputs: dict | None = None, formats: dict | None = None,
                 in_root: set | None = None, miss: set | None = None,
                 input_missing: dict | None = None, output_lost: set | None = None):
        self.order, self.run, self.cached = order, run, cached
        self.keys = {} if keys is None else keys
        self.outputs = {} if outputs is None else outputs
        self.formats = {} if formats is None else formats
        self.in_root = set() if in_root is None else in_root
        self.miss = set(run) if miss is None else miss
        self.input_missing = {} if input_missing is None else input_missing
        self.output_lost = set() if output_lost is None else output_lost
        self.reasons: dict[str, str] = {}
        self.rule_forced: frozenset = frozenset()
        self.observed = len(order)  # how many dataflows were looked up to decide

    def __repr__(self) -> str:
        return (f"Prediction(order={self.order!r}, run={self.run!r}, cached={self.cached!r}, "
                f"miss={sorted(self.miss)!r})")


def predict(repo, project, root: str, selected: list[str], force: bool,
            overrides: dict | None = None, remote=None) -> Prediction:
    """Observe `selected` (dependency order) against `root`: keys, memo hits, misses. `run`
    is every dataflow without a hit (what the shipped rules decide when no project rule adds
    to them; `Policy.decide` has the last word). `overrides` {path: hash or None}: dataset
    values to assume instead of the root's (e.g. unsaved working-copy edits, for `e3
    status`). `remote(name, key)`: asked on a local miss (`go --remote`,
    `exec.share.RemoteLookup`), a `MemoHit` for a trusted result it fetched, or None."""
    from ..exec.memo import Memo, execution_key, usable

    memo = Memo(repo.index)
    trees = repo.trees
    # many dataflows, a good part of the package: one query for every memo entry of their
    # tasks instead of one per key (a few of many — an incremental run — ask key by key: the
    # entries of their tasks are those of the whole package, and of every past run)
    prefetched = None
    if len(selected) > 64 and len(selected) * 8 >= len(project.dataflows) and not force:
        prefetched = memo.by_tasks(
            project.task_hashes[project.dataflows[n]["task"]] for n in selected
            if project.dataflows[n]["task"] in project.task_hashes)
    known: dict[str, str | None] = dict(overrides or {})  # path -> hash (None = will change)
    produced = project.producer
    sel = set(selected)
    keys: dict[str, str] = {}
    formats: dict[str, str] = {}
    in_root: set[str] = set()
    miss: set[str] = set()
    input_missing: dict[str, str] = {}
    lost: set[str] = set()
    for n in selected:
        d = project.dataflows[n]
        hs = []
        absent = None  # an input no dataset holds and no selected dataflow writes
        for p in d["inputs"]:
            if p in known:
                h = known[p]
            else:
                e = trees.find(root, p)
                h = e["hash"] if e and e["kind"] == "blob" else None
            if h is None and absent is None and produced.get(p) not in sel:
                absent = p
            hs.append(h)
        th = project.task_hashes.get(d["task"])  # an undeclared task never hits the memo
        key = execution_key(th, hs) if th and all(hs) else None
        hit = None
        if key is not None:
            keys[n] = key
            if not force:
                hit = prefetched.get(key) if prefetched is not None else memo.lookup(key)
                if hit is None and remote is not None:
                    hit = remote(n, key)
            if hit is not None:
                e = trees.find(root, project.outputs[n])
                size = e.get("size") if e and e.get("hash") == hit.output_hash else None
                if not usable(repo.objects, hit, size):
                    hit = None
                    lost.add(n)
                elif size is not None:
                    in_root.add(n)
            if hit is None:
                miss.add(n)
        elif absent is not None or th is None:
            miss.add(n)
            if absent is not None:
                input_missing[n] = absent
        # else: an upstream dataflow runs, so this one's key is not known yet (no fact)
        if hit:
            formats[n] = hit.output_format
        known[project.outputs[n]] = hit.output_hash if hit else None
    run = [n for n in selected if known[project.outputs[n]] is None]
    cached = [n for n in selected if known[project.outputs[n]] is not None]
    return Prediction(selected, run, cached, keys,
                      {n: known[project.outputs[n]] for n in cached}, formats, in_root,
                      miss, input_missing, lost)


class Policy:
    """The rerun policy: the shipped rules (e3logic/rules/dirty.dl among them) and the project's own
    `rules/*.dl`. A project rule with head `dirty(D)` is copied under a name of its own
    (`e3_rule_<i>`) so a decision can say which rule made a dataflow dirty."""

    def __init__(self, rule_files=(), cache_dir: Path | None = None):
        files = [str(f) for f in rule_files]
        got = _cached(files, cache_dir)
        if got is None:
            got = self._build(files)
            _store(files, cache_dir, got)
        self.program, self.labels = got

    @staticmethod
    def _build(files: list[str]):
        from ..logic.program import Program
        from ..logic.queries import load_program
        from ..logic.syntax import Atom, Rule

        program = load_program(files)
        own = set(files)
        copies, labels = [], {}
        for r in program.rules:
            if r.source in own and r.head.pred == "dirty":
                name = f"{RULE_PREFIX}{len(copies)}"
                copies.append(Rule(Atom(name, r.head.args, r.head.line, r.head.column),
                                   r.body, r.source))
                labels[name] = f"rule {Path(r.source).name}:{r.line}"
        program = program.extend(Program(copies)) if copies else program
        program.fast_plan(frozenset({"miss"}))  # what `decide` evaluates: kept in the cache
        return program, labels

    @staticmethod
    def project_files(project_dir: Path | None) -> list[Path]:
        """The project's own rule files, `rules/*.dl` beside e3.toml, sorted."""
        d = Path(project_dir) / "rules" if project_dir is not None else None
        return sorted(d.glob("*.dl")) if d is not None and d.is_dir() else []

    @classmethod
    def for_project(cls, project_dir: Path | None, cache_dir: Path | None = None):
        """The project's policy: the compiled shipped one (`CompiledPolicy`) when the project
        adds no rules and the shipped dirty.dl is the one it was compiled from, else the
        rules interpreted."""
        files = cls.project_files(project_dir)
        if not files and CompiledPolicy.matches():
            return CompiledPolicy()
        return cls(files, cache_dir)

    @property
    def extended(self) -> bool:
        """Do project rules add `dirty(D)` rules? (Then no shortcut may skip them.)"""
        return bool(self.labels)

    def decide(self, facts: dict, engine: str = "fast", limits=None):
        """(dirty set, {D: [(kind, about)]}, {D: rule label}) for the given facts."""
        only = ["dirty", "reason", *self.labels]
        got = self.program.evaluate(facts, engine=engine, only=only, trusted=True,
                                    limits=limits)
        dirty = {d for d, in got.get("dirty", ())}
        reasons: dict[str, list] = {}
        for d, kind, about in got.get("reason", ()):
            reasons.setdefault(d, []).append((kind, about))
        by_rule: dict[str, str] = {}
        for name in sorted(self.labels):  # the first rule (file order) that fires names it
            for row in got.get(name, ()):
                by_rule.setdefault(row[0], self.labels[name])
        return dirty, reasons, by_rule


#: blake3 of the shipped dirty.dl that `compiled_decide` mirrors, rule for rule; when the file
#: differs, nothing is compiled: the rules are interpreted
COMPILED_FOR = "f8aa0207bbf60933d234ad9da44b23605b0861e0c88f96d038606ce7d0f3ee2c"


class FactGraph:
    """The graph relations of a fact set (`edge`, `reads`) as adjacency, for
    `compiled_decide`."""

    def __init__(self, facts: dict):
        self._down: dict[str, list] = {}
        for u, d in facts.get("edge", ()):
            self._down.setdefault(u, []).append(d)
        self._reads: dict[str, list] = {}
        self._readers: dict[str, list] = {}
        for d, p in facts.get("reads", ()):
            self._reads.setdefault(d, []).append(p)
            self._readers.setdefault(p, []).append(d)

    def down(self, u: str):
        return self._down.get(u, ())

    def reads(self, d: str):
        return self._reads.get(d, ())

    def readers(self, p: str):
        return self._readers.get(p, ())


class ProjectGraph:
    """The same relations read off the package for the dataflows `selected` — what
    `graph_facts` would materialise, looked up only around what is dirty (at 100,000 dataflows
    the fact sets alone cost more than the decision)."""

    def __init__(self, project, selected):
        self.project = project
        self.sel = None if len(selected) == len(project.dataflows) else set(selected)

    def down(self, u: str):
        sel = self.sel
        if sel is not None and u not in sel:
            return ()
        ds = self.project.downstream.get(u, ())
        return ds if sel is None else [d for d in ds if d in sel]

    def reads(self, d: str):
        return self.project.dataflows[d]["inputs"]

    def readers(self, p: str):
        sel = self.sel
        rs = self.project.readers.get(p, ())
        return rs if sel is None else [d for d in rs if d in sel]


def compiled_decide(facts: dict, graph=None) -> tuple[set, dict, dict]:
    """The shipped dirty.dl compiled to Python (what `Policy.decide` answers for it, without
    loading the rule engine): `dirty(D)` is the closure of `miss(D)` (given, or a reader of a
    `changed` path), `forced(D)` and `revoked_producer(D, _)` along `edge`; `reason(D, Kind,
    About)` rule by rule. `graph`: `edge` and `reads` as adjacency (`ProjectGraph`, or by
    default `FactGraph(facts)`), walked only from what is dirty. Property tests check it
    against both engines on random facts, and the two graphs against each other."""
    get = facts.get
    graph = FactGraph(facts) if graph is None else graph
    changed = {p for p, in get("changed", ())}
    miss = {d for d, in get("miss", ())}
    for p in sorted(changed):
        miss.update(graph.readers(p))
    forced = {d for d, in get("forced", ())}
    revoked = set(get("revoked_producer", ()))
    dirty = miss | forced | {d for d, _ in revoked}
    stack = list(dirty)
    while stack:
        for d in graph.down(stack.pop()):
            if d not in dirty:
                dirty.add(d)
                stack.append(d)
    reasons: dict[str, list] = {}

    def add(d, kind, about):
        reasons.setdefault(d, []).append((kind, about))

    for d in forced:
        add(d, "forced", d)
    for d, name in revoked:
        add(d, "revoked", name)
    for rel, kind in (("code_changed", "code"), ("failed_last", "failed"),
                      ("never_run", "never_run")):
        for d, in get(rel, ()):
            if d in dirty:
                add(d, kind, d)
    inputs = {p for p, in get("input_changed", ())}
    if inputs:
        for d in dirty:
            for p in graph.reads(d):
                if p in inputs:
                    add(d, "input", p)
    for p in changed:
        for d in graph.readers(p):
            add(d, "changed", p)
    for d, p in get("input_missing", ()):
        if d in miss:
            add(d, "input_missing", p)
    for d, in get("output_lost", ()):
        if d in miss:
            add(d, "output_lost", d)
    for u in dirty:
        for d in graph.down(u):
            add(d, "upstream", u)
    for rs in reasons.values():  # a set, as the engines answer, in a stable order
        rs[:] = sorted(set(rs))
    return dirty, reasons, {}


class CompiledPolicy:
    """The shipped rerun policy compiled (`compiled_decide`): what `Policy.for_project` gives
    a project that adds no rules, when dirty.dl is the file it was compiled from."""

    labels: dict = {}
    extended = False

    @staticmethod
    def matches() -> bool:
        import e3logic

        from ..core.hashing import hash_bytes

        try:
            return hash_bytes((Path(e3logic.RULES_DIR) / "dirty.dl").read_bytes()) == COMPILED_FOR
        except OSError:
            return False

    def decide(self, facts: dict, engine: str = "fast", limits=None):
        return compiled_decide(facts)


def _cache_path(files: list[str], cache_dir: Path | None) -> Path | None:
    """Where the checked program of these rule files is kept: named by the hash of every
    rule text it is built from (shipped and the project's) and of the e3logic version."""
    if cache_dir is None:
        return None
    import e3logic

    from ..core.hashing import hash_parts

    from ..logic.queries import SHIPPED_FILES

    parts = [e3logic.__version__]
    try:
        for f in [*(Path(e3logic.RULES_DIR) / n for n in SHIPPED_FILES), *map(Path, files)]:
            parts += [str(f), f.read_text(encoding="utf-8")]
    except (OSError, UnicodeDecodeError):
        return None  # the parser reports it
    return Path(cache_dir) / f"rules-{hash_parts(parts)[:32]}.pickle"


def _cached(files: list[str], cache_dir: Path | None):
    """(program, labels) from the cache, or None. A pickle in .e3/cache is trusted as the
    repository's own (written only by `_store`); a damaged one is rebuilt."""
    path = _cache_path(files, cache_dir)
    if path is None:
        return None
    import pickle

    try:
        got = pickle.loads(path.read_bytes())
    except Exception:
        return None
    return got if isinstance(got, tuple) and len(got) == 2 else None


def _store(files: list[str], cache_dir: Path | None, got) -> None:
    path = _cache_path(files, cache_dir)
    if path is None:
        return
    import pickle

    from ..repo.atomic import write_atomic

    try:
        write_atomic(path, pickle.dumps(got), fsync=False)  # a cache: rebuilt if lost
    except OSError:
        pass


def graph_facts(project, selected) -> dict[str, set]:
    """The package graph restricted to `selected`: dataflow, reads, writes, edge, tag."""
    dfs, outs, deps = project.dataflows, project.outputs, project.deps
    edge = {(u, n) for n in selected for u in deps[n]}
    if len(selected) != len(dfs):
        sel = set(selected)
        edge = {e for e in edge if e[0] in sel}
    return {"dataflow": {(n, dfs[n]["task"]) for n in selected},
            "writes": {(n, outs[n]) for n in selected},
            "reads": {(n, p) for n in selected for p in dfs[n]["inputs"]},
            "edge": edge,
            "tag": {(n, t) for n in selected for t in dfs[n].get("tags") or ()}}


def decision_facts(project, selected, pred: Prediction, force: bool, why: dict | None = None
                   ) -> dict[str, set]:
    """Every fact the policy decides on: the graph, the observations, `why` (the explaining
    facts, see `explaining_facts`)."""
    f = graph_facts(project, selected)
    f.update(observed_facts(selected, pred, force, why))
    return f


def observed_facts(selected, pred: Prediction, force: bool, why: dict | None = None
                   ) -> dict[str, set]:
    """The facts of a decision but the graph's: what was observed, and `why`."""
    f = {"miss": {(n,) for n in pred.miss}}
    f["forced"] = {(n,) for n in selected} if force else set()
    f["input_missing"] = set(pred.input_missing.items())
    f["output_lost"] = {(n,) for n in pred.output_lost}
    for rel in ("input_changed", "code_changed", "failed_last", "never_run",
                "revoked_producer"):
        f[rel] = set((why or {}).get(rel, ()))
    return f


def explaining_facts(repo, project, root: str, pred: Prediction, base, overrides=None
                     ) -> dict[str, set]:
    """The facts that explain the misses, from `base` (the workspace's last settled run:
    a dict with `root`, `package`, `keys` {dataflow: key} — or None) and `failed` (the
    dataflows that failed in its last run)."""
    out = {"input_changed": set(), "code_changed": set(), "failed_last": set(),
           "never_run": set(), "revoked_producer": set()}
    # about every dataflow without a memo hit (those that miss, and those whose key waits
    # for an upstream one): a reason of its own reads better than a chain
    unsure = [n for n in pred.order if n not in pred.outputs]
    if not unsure:
        return out
    out["revoked_producer"] = revoked_producers(repo, project, root, pred, base, unsure)
    failed = set((base or {}).get("failed", ()))
    out["failed_last"] = {(n,) for n in unsure if n in failed}
    executed = repo.journal.ever_executed(unsure)  # ever attempted, in any run
    out["never_run"] = {(n,) for n in unsure if n not in executed}
    if base is None or base.get("root") is None:
        return out
    ran = base["keys"]
    wanted = {p for n in unsure for p in project.dataflows[n]["inputs"]
              if p not in project.producer}
    if wanted:
        from ..core.errors import NotFound

        try:
            changed = repo.trees.changed(base["root"], root)
        except NotFound:
            changed = set(wanted)
        for p, h in (overrides or {}).items():
            e = repo.trees.find(base["root"], p)
            if (e or {}).get("hash") != h:
                changed.add(p)
        out["input_changed"] = {(p,) for p in wanted if p in changed}
    if base.get("package") and base["package"] != project.pkg_hash:
        from .model import Project

        try:
            old = Project.load(repo, base["package"])
        except Exception:  # the old package is gone: every miss counts as a code change
            old = None
        for n in unsure:
            if n not in ran:
                continue
            d = project.dataflows[n]
            od = old.dataflows.get(n) if old is not None else None
            if (od is None or old.task_hashes.get(od["task"])
                    != project.task_hashes.get(d["task"])):
                out["code_changed"].add((n,))
    return out


def revoked_producers(repo, project, root: str, pred: Prediction, base, unsure) -> set:
    """`revoked_producer(D, Name)` facts: among `unsure`, the dataflows whose result — the
    one their key now names, the one the last settled run recorded, or the one the workspace
    holds at their output path — was pulled from a record signed by a key since revoked
    (`e3 trust revoke`), and not computed here since (rules/trust.dl says the same of every
    output, transitively: `tainted(P)`)."""
    rows = repo.journal.revoked_results()
    if not rows:
        return set()
    by_key = {k: name for k, name, _ in rows}
    by_output = {h: name for _, name, h in rows}
    ran = (base or {}).get("keys") or {}
    out = set()
    for n in unsure:
        name = by_key.get(pred.keys.get(n)) or by_key.get(ran.get(n))
        if name is None:
            e = repo.trees.find(root, project.outputs[n])
            name = by_output.get(e["hash"]) if e is not None and e.get("hash") else None
        if name is not None:
            out.add((n, name))
    return out


def _own_text(kind: str, about: str, name: str) -> str:
    return {"forced": "forced", "code": f"task code of {name} changed",
            "revoked": f"produced under revoked key {about}",
            "input": f"{about} changed → {name}", "changed": f"{about} changed → {name}",
            "input_missing": f"input {about} is missing", "output_lost": "output missing",
            "failed": "failed last run", "never_run": "never run",
            "no_memo": "no cached result for its inputs"}.get(kind, about)


def _origin_text(kind: str, about: str, name: str) -> str:
    """An own reason phrased to start a chain `… → name → … → D`."""
    return {"forced": f"{name} forced", "code": f"task code of {name} changed",
            "revoked": f"produced under revoked key {about}",
            "input": f"{about} changed", "changed": f"{about} changed",
            "input_missing": f"input {about} of {name} is missing",
            "output_lost": f"output of {name} missing", "failed": f"{name} failed last run",
            "never_run": f"{name} never ran",
            "no_memo": f"no cached result for {name}"}.get(kind, f"{about} on {name}")


#: a chain longer than this shows its two first and two last dataflows around `…`
CHAIN_SHOWN = 5


def explain(dirty: set, reasons: dict, by_rule: dict, miss: set) -> dict[str, str]:
    """One reason text per dirty dataflow: its own reason (by `KINDS` order, then `about`),
    else the shortest chain of dirty dataflows back to one with an own reason:
    `inputs/sales changed → clean → train`. One breadth-first pass from every dataflow with an
    own reason (each level in name order, so a tie goes to the smaller name); a long chain is
    shown as `origin → next → … → parent → D`."""
    own: dict[str, tuple] = {}
    down: dict[str, list] = {}
    for d in dirty:
        mine = []
        for kind, about in reasons.get(d, ()):
            if kind == "upstream":
                down.setdefault(about, []).append(d)
            else:
                mine.append((KINDS.index(kind) if kind in KINDS else len(KINDS), kind, about))
        if d in by_rule:
            mine.append((KINDS.index("rule"), "rule", by_rule[d]))
        if not mine and d in miss:
            mine.append((KINDS.index("no_memo"), "no_memo", d))
        if mine:
            own[d] = min(mine)
    # origin[d], depth[d] (dataflows after the origin), prev[d], second[d] (the origin's
    # successor on d's chain)
    origin = {d: d for d in own}
    depth = {d: 0 for d in own}
    prev: dict[str, str] = {}
    second: dict[str, str] = {}
    level = sorted(own)
    while level:
        nxt = []
        for u in level:
            for d in sorted(down.get(u, ())):
                if d in origin:
                    continue
                origin[d], depth[d], prev[d] = origin[u], depth[u] + 1, u
                second[d] = d if depth[u] == 0 else second[u]
                nxt.append(d)
        level = sorted(nxt)
    out = {}
    for d in sorted(dirty):
        o = origin.get(d)
        if o is None:
            out[d] = "upstream of it something runs"
            continue
        _, kind, about = own[o]
        if o == d:
            out[d] = about if kind == "rule" else _own_text(kind, about, d)
            continue
        head = f"{about} on {o}" if kind == "rule" else _origin_text(kind, about, o)
        n = depth[d] + 1  # dataflows on the chain, origin and d included
        if n <= CHAIN_SHOWN:
            chain = [d]
            while chain[-1] != o:
                chain.append(prev[chain[-1]])
            chain.reverse()
        else:
            chain = [o, second[d], f"… ({n - 4} more)", prev[d], d]
        out[d] = " → ".join([head, *chain])
    return out


def decide(policy: Policy, project, selected, pred: Prediction, force: bool, why=None,
           limits=None, engine: str = "fast") -> Prediction:
    """Set `pred.run`, `pred.cached`, `pred.reasons` and `pred.rule_forced` from the
    policy's answer over the observed facts. Returns `pred`."""
    if isinstance(policy, CompiledPolicy):  # the graph looked up, not materialised as facts
        facts = observed_facts(selected, pred, force, why)
        dirty, reasons, by_rule = compiled_decide(facts, ProjectGraph(project, selected))
    else:
        facts = decision_facts(project, selected, pred, force, why)
        dirty, reasons, by_rule = policy.decide(facts, engine, limits)
    dirty &= set(selected)
    pred.run = [n for n in selected if n in dirty]
    pred.cached = [n for n in selected if n not in dirty]
    # a dataflow the rules made dirty although the memo has it: executed anyway
    pred.rule_forced = frozenset(n for n in by_rule if n in dirty and n in pred.outputs)
    pred.outputs = {n: h for n, h in pred.outputs.items() if n not in dirty}
    pred.reasons = explain(dirty, reasons, by_rule, pred.miss)
    return pred
