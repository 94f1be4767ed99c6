"""What the workspace's last *settled* run proves, for one `go`: the compiled shortcuts of the
decision (warm and incremental paths) and the check that makes a run settled in its turn.

A run is settled when it ended ok and, when it finished, every receipt row was checked against
its state root: the output at the dataflow's path, the key computed from the inputs there.
Then, for the same package, targets and filter:

- **warm** (`warm_receipt`): intake found that state root unchanged, the memo still maps every
  key to the recorded output and every output object is in the store at its recorded size. No
  fact can say `miss` or `forced`, so the shipped rules derive no `dirty(D)`: every dataflow is
  cached with exactly these keys and outputs, known without reading a tree.
- **incremental** (`incremental`): only the dataflows reading a dataset that differs between
  that state root and this one (`Trees.changed` reads only differing subtrees), and those
  downstream, are looked up; the rest keep the settled key and output.

The rules decide in both cases (`decide.py`); tests compare these paths with the full lookup.
"""
from __future__ import annotations

import json

from ..core.errors import NotFound
from .decide import Prediction, ProjectGraph, predict
from .model import Project


class Settled:
    """One `go` call's view of the last settled run of `ws` for `project` and `selected`
    (`targets`, `pattern`). Fields: `base` — (state root, {dataflow: (key, output, size)}) of
    the part an incremental run kept, which `settle` takes as checked; `sizes` — the output
    sizes a no-op run already knows (then `settle` returns them as they are)."""

    def __init__(self, repo, ws: str, project: Project, selected: list[str], targets,
                 pattern):
        self.repo, self.ws, self.project, self.selected = repo, ws, project, selected
        self.targets, self.pattern = list(targets), pattern
        self.base = None
        self.sizes = None
        self._rows = None  # read once: the warm path and the incremental one both ask
        self.run = None  # the settled run `rows` come from
        self.all_cached = False  # did that run execute nothing? (then a repeat's receipt is its)
        self.graph = ProjectGraph(project, selected)  # who reads what, among `selected`

    def rows(self, root: str | None = None):
        """(state root, rows `[(dataflow, key, output hash, size, format)]`) of the
        workspace's latest run when it is settled for this package and selection and the memo
        still maps each key to its output; None otherwise. `root`: the workspace root now —
        when it is that run's, a warm answer needs no format (None where not read)."""
        if self._rows is None:
            self._rows = (self._read(root),)
        return self._rows[0]

    def _read(self, root):
        j = self.repo.journal
        last = j.latest_run(self.ws)
        if last is None:
            return None
        run, status, settled, package, state_root, policy = last
        if status != "ok" or settled != 1 or package != self.project.pkg_hash or not policy:
            return None
        try:
            pol = json.loads(policy)
        except ValueError:
            return None
        if pol.get("targets") != sorted(self.targets) or pol.get("filter") != self.pattern:
            return None
        # a warm candidate: if that run's receipt was all in the memo at the memo's
        # generation now, the memo is not read again (nor the formats: None)
        gen = j.memo_generation() if root is not None and root == state_root else None
        rows = j.settled_receipt(run, gen)
        if len(rows) != len(self.selected) or [r[0] for r in rows] != sorted(self.selected):
            return None
        out = []
        cached = True
        for name, key, h, size, memo_h, fmt, outcome in rows:
            if not key or not h or memo_h != h or size is None:
                return None
            out.append((name, key, h, size, fmt or ("raw" if gen is None else None)))
            cached = cached and outcome == "cached"
        self.run, self.all_cached = run, cached
        return state_root, out

    def repeated_digest(self) -> str | None:
        """A warm no-op's receipt digest when the settled run it repeats executed nothing
        either: the receipts are then the same rows, so the same digest. None: compute it."""
        return self.repo.journal.receipt_digest(self.run) if self.all_cached else None

    def objects_intact(self, rows) -> bool:
        """Is every row's output object in the store at its recorded size? (If not, the full
        lookup finds the bad object and the dataflow re-executes.)"""
        size_of = self.repo.objects.size
        try:
            return all(size_of(h) == size for _, _, h, size, _ in rows)
        except OSError:
            return False

    def warm_receipt(self, root: str):
        """The receipt rows `[(dataflow, key, output hash, size)]` (sorted by name) of a run
        that provably has nothing to do (module docstring), or None."""
        settled = self.rows(root)
        if settled is None or settled[0] != root:
            return None
        if not self.objects_intact(settled[1]):
            return None
        return [(name, key, h, size) for name, key, h, size, _ in settled[1]]

    def incremental(self, root: str) -> Prediction | None:
        """The observation after an edit, from the settled run instead of every tree: the
        datasets that differ between its state root and `root` make the dataflows reading
        them, and everything downstream, be looked up as `predict` does; the rest keep the
        settled run's key and output (memo entry and object checked, as the warm path does).
        None — and the full lookup — when there is no such run, or a changed path is not an
        input of the selection (e.g. an edited output)."""
        settled = self.rows(root)
        if settled is None:
            return None
        project, selected = self.project, self.selected
        state_root, rows = settled
        try:
            changed = self.repo.trees.changed(state_root, root)
        except NotFound:  # the settled run's trees are gone (deleted by hand): settle in full
            return None
        graph = self.graph
        outputs = {project.outputs[n] for n in selected}
        if any(p in outputs or not graph.readers(p) for p in changed):
            return None
        look = {n for p in changed for n in graph.readers(p)}
        stack = list(look)
        while stack:
            for m in graph.down(stack.pop()):
                if m not in look:
                    look.add(m)
                    stack.append(m)
        kept = [r for r in rows if r[0] not in look]
        if not self.objects_intact(kept):
            return None
        prior = {name: (key, h, fmt) for name, key, h, _, fmt in kept}
        # what `settle` may take from the settled run instead of checking it again
        self.base = (state_root, {name: (key, h, size) for name, key, h, size, _ in kept})
        part = predict(self.repo, project, root, [n for n in selected if n in look], False,
                       overrides={project.outputs[n]: prior[n][1] for n in prior})
        keys = {n: k for n, (k, _, _) in prior.items()}
        keys.update(part.keys)
        outs = {n: h for n, (_, h, _) in prior.items()}
        outs.update(part.outputs)
        fmts = {n: f for n, (_, _, f) in prior.items()}
        fmts.update(part.formats)
        run = set(part.run)
        # no output path changed since the settled run: its outputs are in the root
        pred = Prediction(selected, [n for n in selected if n in run],
                          [n for n in selected if n not in run], keys, outs, fmts,
                          set(prior) | part.in_root, part.miss, part.input_missing,
                          part.output_lost)
        pred.observed = part.observed
        return pred

    def kept_rows(self, receipt: list[dict], sizes: dict | None):
        """(settled run, names) of the rows of an incremental run's `receipt` that are the
        settled run's rows as a copy makes them (`cached`, same key, output and size, the size
        only when this run is settled too); (None, None) when this run is not incremental."""
        if self.base is None or self.run is None:
            return None, None
        kept = self.base[1]
        names = set()
        for r in receipt:
            b = kept.get(r["dataflow"])
            if (b is not None and r["outcome"] == "cached" and b[0] == r["key"]
                    and b[1] == r["output"] and (not sizes or sizes.get(r["dataflow"]) == b[2])):
                names.add(r["dataflow"])
        return self.run, names

    def noop_sizes(self, pred: Prediction, root: str) -> bool:
        """Nothing to run and every decided output already in `root`? The keys were then
        computed from `root`'s inputs: the run is settled as it stands (`sizes`, unless an
        output's size is unknown)."""
        if pred.run:
            return False
        trees = self.repo.trees
        sizes = {}
        for n in pred.cached:
            e = trees.find(root, self.project.outputs[n])
            if e is None or e.get("hash") != pred.outputs[n]:
                return False
            sizes[n] = e.get("size")
        self.sizes = sizes if None not in sizes.values() else None
        return True

    def settle(self, status, outcome, results, root, events=None):
        """{dataflow: output size} when this run's receipt can stand for a later no-op run:
        it ended ok with nothing stale, and every selected dataflow's output in `root` is the
        receipt's and its key is the one its inputs in `root` give. None otherwise. A run that
        executed something is checked against the root itself, whatever the executor did; the
        two no-op paths know it already (`sizes`)."""
        if status != "ok":
            return None
        if self.sizes is not None:
            return self.sizes
        from ..exec.memo import execution_key

        project, selected = self.project, self.selected
        if any(outcome.get(n) not in ("executed", "cached", "pulled") for n in selected):
            return None
        sizes = {}
        check = selected
        base = self.base
        if base is not None:
            # an incremental run: a dataflow none of whose paths changed since the settled
            # run, with that run's key and output, is settled as it was there
            try:
                changed = self.repo.trees.changed(base[0], root)
            except NotFound:
                return None
            touched = set()  # writing or reading a changed path
            producer = project.producer
            for p in changed:
                if p in producer:
                    touched.add(producer[p])
                touched.update(self.graph.readers(p))
            check = []
            for n in selected:
                b = base[1].get(n)
                if b is None or n in touched or results.get(n) != b[:2]:
                    check.append(n)
                else:
                    sizes[n] = b[2]
        if events is not None:
            events.emit("settled", walked=base is None, checked=sorted(check))
        if base is None:
            entries = dict(self.repo.trees.walk(root))  # every dataset: one pass, no lookups
        else:  # a few: lookups (the trees on their paths were just read)
            find = self.repo.trees.find
            entries = {}
            for n in check:
                for p in (project.outputs[n], *project.dataflows[n]["inputs"]):
                    if p not in entries:
                        e = find(root, p)
                        if e is not None:
                            entries[p] = e
        for n in check:
            key, h = results.get(n, (None, None))
            e = entries.get(project.outputs[n])
            if not key or not h or e is None or e.get("hash") != h or e.get("size") is None:
                return None
            d = project.dataflows[n]
            th = project.task_hashes.get(d["task"])
            hs = []
            for p in d["inputs"]:
                i = entries.get(p)
                if i is None:
                    return None
                hs.append(i["hash"])
            if th is None or execution_key(th, hs) != key:
                return None
            sizes[n] = e["size"]
        return sizes
