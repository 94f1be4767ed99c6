"""`e3 watch`: re-run the affected dataflows whenever working-copy input files change.

The pieces, each injectable so tests can drive them without timing luck:

- an **event source**: a callable `source(directory, stop) -> iterator of batches`, a batch
  being a set of absolute paths that changed (an empty batch is a heartbeat). The default,
  `watchfiles_source`, watches `inputs/` with watchfiles (inotify on Linux). It watches the
  directory, not the files, so editors that save by writing a temp file and renaming it over
  the original (vim, VS Code) keep being watched; if `inputs/` itself is replaced (a restore,
  `git checkout`), it re-arms on the new directory and reports the whole of `inputs/` changed.
- `Debouncer`: a pure trailing-edge debounce on an injected clock — a batch is due once no
  event arrived for `window` seconds (or, under a steady stream of edits, `max_wait` after the
  first one).
- `Watcher`: the loop. One run at start (everything selected), then, per debounced batch, the
  dataflows that read a changed dataset and everything downstream of them (`affected`), as
  targets of the existing `Go` (which skips what the memo already holds). One `emit(result)` per
  run. A change during a run is queued for the next one or, with `abort_on_change`, cancels the
  current run through index.db (`runs.cancel_requested`, exactly as `e3 cancel` does) and is
  then run together with what the aborted run did not finish.

Stopping: Ctrl-C (and SIGTERM, which the watcher turns into a Ctrl-C) stops the run in flight as
`e3 go` does and returns exit code 130; so does a run cancelled by anyone but the watcher
itself (`e3 cancel` from another shell).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..core.errors import EXIT_CANCELLED, E3Error, LockBusy
from ..core.paths import overlaps

DEFAULT_DEBOUNCE_MS = 200
WATCHED = "inputs"

Batch = set  # absolute paths (str)
Source = Callable[[Path, threading.Event], Iterable[Batch]]


# -- debounce --------------------------------------------------------------------------------
class Debouncer:
    """Trailing-edge debounce. `add(paths, now)` records events; `due(now)` is true once the
    window passed since the last event (or `max_wait` since the first); `take()` returns the
    accumulated paths, sorted, and starts over. Pure: the caller supplies the time."""

    def __init__(self, window: float, max_wait: float | None = None):
        self.window = max(0.0, window)
        self.max_wait = max_wait if max_wait is not None else max(2.0, 10 * self.window)
        self.paths: dict[str, None] = {}
        self.first: float | None = None
        self.last: float | None = None

    def add(self, paths: Iterable[str], now: float) -> None:
        paths = list(paths)
        if not paths:
            return
        for p in paths:
            self.paths[p] = None
        if self.first is None:
            self.first = now
        self.last = now

    @property
    def pending(self) -> bool:
        return bool(self.paths)

    def due_at(self) -> float | None:
        if not self.paths:
            return None
        return min(self.last + self.window, self.first + self.max_wait)

    def due(self, now: float) -> bool:
        at = self.due_at()
        return at is not None and now >= at

    def take(self) -> list[str]:
        out = sorted(self.paths)
        self.paths, self.first, self.last = {}, None, None
        return out


# -- paths -> datasets -> dataflows ----------------------------------------------------------
def dataset_paths(root: Path, paths: Iterable[str], top: str = WATCHED) -> list[str]:
    """Changed file paths -> dataset paths under `top` (`/proj/inputs/sales` -> `inputs/sales`);
    anything outside `top` is dropped. `top` itself stands for every dataset under it."""
    base = os.path.realpath(root)
    out = set()
    for p in paths:
        ap = os.path.abspath(p)
        rel = os.path.relpath(ap, root)
        if rel.startswith(".."):
            rel = os.path.relpath(os.path.realpath(ap), base)
        parts = Path(rel).parts
        if not parts or parts[0] != top or ".." in parts:
            continue
        out.add("/".join(parts))
    return sorted(out)


def affected(project, selected: Iterable[str], changed: Iterable[str], policy=None
             ) -> list[str]:
    """The selected dataflows the rerun policy makes dirty when `changed` get new bytes: the
    what-if `changed(P)` for every path they read that a changed path overlaps (the path, an
    ancestor folder or a descendant of it), evaluated by the rules (`decide.Policy`, the
    shipped one by default): readers and everything downstream of them, plus whatever the
    project's rules add. Dependency order."""
    from .decide import Policy, graph_facts

    selected = list(selected)
    changed = list(changed)
    reads = {i for n in selected for i in project.dataflows[n]["inputs"]}
    facts = graph_facts(project, selected)
    facts["changed"] = {(p,) for p in reads if any(overlaps(p, c) for c in changed)}
    if not facts["changed"]:
        return []
    dirty, _, _ = (policy or Policy()).decide(facts)
    return [n for n in selected if n in dirty]


def read_paths(project, selected: Iterable[str]) -> set[str]:
    return {i for n in selected for i in project.dataflows[n]["inputs"]}


# -- event sources ---------------------------------------------------------------------------
def _ident(path: Path):
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except OSError:
        return None


def watchfiles_source(directory: Path, stop: threading.Event, *, rust_timeout_ms: int = 100,
                      step_ms: int = 10) -> Iterator[Batch]:
    """Batches of changed paths under `directory`, from watchfiles, until `stop` is set.

    watchfiles groups events for at most `step_ms`; the `Debouncer` does the real debounce.
    Every `rust_timeout_ms` the directory's identity is checked: when `inputs/` was replaced
    or removed and recreated, the watch is re-armed on the new directory and the directory
    itself is reported (every dataset under it may have changed)."""
    import watchfiles

    directory = Path(directory)
    while not stop.is_set():
        ident = _ident(directory)
        if ident is None:  # not there (yet): wait for it
            stop.wait(0.1)
            continue
        rearm = False
        try:
            for changes in watchfiles.watch(directory, watch_filter=None, debounce=step_ms * 5,
                                            step=step_ms, stop_event=stop,
                                            rust_timeout=rust_timeout_ms, yield_on_timeout=True,
                                            raise_interrupt=False):
                paths = {p for _, p in changes}
                if _ident(directory) != ident or str(directory) in paths:
                    rearm = True
                    break
                yield paths
        except (FileNotFoundError, OSError):
            rearm = True
        if rearm and not stop.is_set():
            yield {str(directory)}


class ManualSource:
    """An event source driven by hand (tests): `put(paths)` delivers one batch to the watcher,
    `close()` ends the stream."""

    _END = object()

    def __init__(self):
        import queue

        self.q: "queue.Queue" = queue.Queue()
        self.started = threading.Event()

    def put(self, paths: Iterable[str]) -> None:
        self.q.put(set(map(str, paths)))

    def close(self) -> None:
        self.q.put(self._END)

    def __call__(self, directory: Path, stop: threading.Event) -> Iterator[Batch]:
        import queue

        self.started.set()
        yield set()  # armed
        while not stop.is_set():
            try:
                item = self.q.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is self._END:
                return
            yield item


# -- the watcher -----------------------------------------------------------------------------
@dataclass
class WatchRun:
    """What one run of the watcher did (for tests; the CLI prints `result`)."""

    changed: list          # dataset paths that triggered it ([] for the initial run)
    targets: list          # dataflows passed to `Go` ([] = everything selected)
    result: dict | None    # the `go` answer, or None when the run could not start
    error: str | None = None
    busy: bool = False     # the run could not start: another command holds the workspace
    aborted: bool = False  # cancelled by the watcher itself (--abort-on-change)


@dataclass
class _Shared:
    """State shared between the loop (main thread) and the event thread, under `cond`."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    debouncer: Debouncer | None = None
    busy: bool = False
    seq_before: int = 0        # runs with a larger seq belong to the run in flight
    reads: set = field(default_factory=set)  # dataset paths the selected dataflows read
    abort: bool = False        # the run in flight should be cancelled
    aborting: bool = False     # ... the watcher is asking index.db to cancel it
    aborted: bool = False      # ... and it did
    source_error: str | None = None


class Watcher:
    """`e3 watch` as an object. `api` is the `Repo` facade (duck-typed: `.r`, `.ws()`).

    go_factory(targets, pattern) -> a callable returning the `go` answer (default: `Go`).
    emit(WatchRun) is called once per run; note(str) gets one-line messages for stderr.
    """

    def __init__(self, api, *, pattern: str | None = None,
                 debounce_ms: float = DEFAULT_DEBOUNCE_MS, abort_on_change: bool = False,
                 cap: int | None = None, executor: str | None = None, force: bool = False,
                 source: Source | None = None, emit: Callable[[WatchRun], None] | None = None,
                 note: Callable[[str], None] | None = None, go_factory=None, initial: bool = True,
                 clock: Callable[[], float] = time.monotonic, retry_s: float = 0.5,
                 max_wait_s: float | None = None,
                 canceller: Callable[[int], str | None] | None = None):
        self.api = api
        self.repo = api.r
        self.root = Path(self.repo.root)
        self.directory = self.root / WATCHED
        self.pattern = pattern
        self.window = max(0.0, float(debounce_ms)) / 1000.0
        self.abort_on_change = abort_on_change
        self.cap = cap
        if executor is None:
            from ..exec.backends import configured_executor

            executor = configured_executor(self.repo.config)
        self.executor = executor
        self.force = force
        self.source = source or watchfiles_source
        self.emit = emit or (lambda run: None)
        self.note = note or (lambda msg: None)
        self.go_factory = go_factory or self._default_go
        self.initial = initial
        self.clock = clock
        self.retry_s = retry_s
        self.sh = _Shared(debouncer=Debouncer(self.window, max_wait_s))
        self.stop_event = threading.Event()
        self.armed = threading.Event()  # set once the event source delivered anything
        self.runs: deque[WatchRun] = deque(maxlen=1000)  # the latest runs, for tests
        self.stale: dict[str, None] = {}   # changed dataset paths not yet run to the end
        self._thread: threading.Thread | None = None
        self._cancel_repo = None
        self.canceller = canceller or self.cancel_in_index

    # -- running `go` ------------------------------------------------------------------------
    def _default_go(self, targets, pattern):
        from .go import Go

        return Go(self.api, targets=targets, pattern=pattern, cap=self.cap,
                  executor=self.executor, force=self.force)

    def _policy(self):
        """The rerun policy (the project's rules/*.dl read again each time: they may change)."""
        from .decide import Policy

        return Policy.for_project(self.api.root, self.repo.dir / "cache")

    def _project(self):
        from .go import Go

        return Go(self.api, pattern=self.pattern).prepare(self.api.ws())

    # -- the event thread -------------------------------------------------------------------
    def _events(self) -> None:
        while not self.stop_event.is_set():
            try:
                for batch in self.source(self.directory, self.stop_event):
                    if self.stop_event.is_set():
                        return
                    if not self.armed.is_set():  # the source answered: its watch is in place
                        self.armed.set()
                        self.note(f"watching {WATCHED}/ (debounce {int(self.window * 1000)} "
                                  f"ms); Ctrl-C to stop")
                    if batch:
                        self._deliver(batch)
                return
            except Exception as e:  # a broken watcher must not kill the loop silently
                with self.sh.cond:
                    self.sh.source_error = f"{type(e).__name__}: {e}"
                    self.sh.cond.notify_all()
                self.stop_event.wait(1.0)

    def _deliver(self, batch: Batch) -> None:
        changed = dataset_paths(self.root, batch)
        if not changed:
            return
        sh = self.sh
        with sh.cond:
            sh.debouncer.add(changed, self.clock())
            relevant = any(overlaps(c, r) for c in changed for r in sh.reads)
            if sh.busy and self.abort_on_change and relevant and not sh.aborted:
                sh.abort = True
            sh.cond.notify_all()
        if sh.abort:
            self._abort_current()

    def _abort_current(self) -> None:
        """Cancel the run in flight through `canceller`; retried until the run is registered
        (the loop may still be taking in inputs) or over."""
        while not self.stop_event.is_set():
            with self.sh.cond:
                if not self.sh.busy or not self.sh.abort or self.sh.aborted:
                    return
                after = self.sh.seq_before
                self.sh.aborting = True  # the loop waits for the answer before judging a cancel
            run = None
            try:
                run = self.canceller(after)
            finally:
                with self.sh.cond:
                    self.sh.aborting = False
                    self.sh.aborted = bool(run)
                    self.sh.cond.notify_all()
            if run:
                self.note(f"inputs changed: cancelling run {run}")
                return
            time.sleep(0.02)

    def cancel_in_index(self, after_seq: int) -> str | None:
        """The default canceller: the newest `running` run of this process with a seq above
        `after_seq` gets `cancel_requested`, exactly as `e3 cancel RUN` does (its `go` stops at
        the next beat). Returns the run id, or None when no such run is registered yet. Runs in
        the event thread, on its own connection."""
        from ..repo.repository import Repository
        from .inspect import request_cancel

        if self._cancel_repo is None:
            self._cancel_repo = Repository.open(str(self.root))
        run = self._cancel_repo.journal.newest_running_run(os.getpid(), after_seq)
        if not run:
            return None
        shim = type("Api", (), {"r": self._cancel_repo})()
        return run if request_cancel(shim, run) else None

    # -- the loop ------------------------------------------------------------------------------
    def _wait_batch(self, deadline: float | None = None) -> list[str] | None:
        """Block until a debounced batch is due; None when stopping (or `deadline` passed)."""
        sh = self.sh
        with sh.cond:
            while not self.stop_event.is_set():
                if sh.source_error:
                    self.note(f"watching {WATCHED}/ failed ({sh.source_error}); retrying")
                    sh.source_error = None
                now = self.clock()
                if sh.debouncer.due(now):
                    return sh.debouncer.take()
                if deadline is not None and now >= deadline:
                    return None
                at = sh.debouncer.due_at()
                timeout = 0.5 if at is None else max(0.0, at - now)
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - now))
                sh.cond.wait(min(timeout, 0.5))
        return None

    def _max_seq(self) -> int:
        return self.repo.journal.max_run_seq()

    def run_once(self, changed: list[str] | None) -> WatchRun | None:
        """One `go`: everything selected when `changed` is None, else the dataflows affected
        by `changed` together with what earlier runs left unfinished. None when nothing is
        affected."""
        sh = self.sh
        for c in changed or ():
            self.stale[c] = None
        try:
            project, selected = self._project()
        except E3Error as e:
            run = WatchRun(sorted(self.stale), [], None, str(e))
            self.runs.append(run)
            return run
        if changed is None:
            targets: list[str] = []
            trigger: list[str] = []
        else:
            reads = read_paths(project, selected)
            trigger = [c for c in sorted(self.stale) if any(overlaps(c, r) for r in reads)]
            self.stale = dict.fromkeys(trigger)  # editor temp files and the like drop out
            targets = affected(project, selected, trigger, self._policy())
            if not targets:
                self.note(f"changed {', '.join(changed[:5])}"
                          f"{' …' if len(changed) > 5 else ''}: no dataflow reads it")
                self.stale.clear()
                return None
        with sh.cond:
            sh.busy, sh.abort, sh.aborted = True, False, False
            sh.reads = read_paths(project, selected)
            sh.seq_before = self._max_seq()
        error, busy, res = None, False, None
        try:
            res = self.go_factory(targets, self.pattern)()
        except LockBusy as e:
            error, busy = str(e), True
        except E3Error as e:
            error = str(e)
        except Exception as e:  # a bug: say it in one line and keep watching
            error = f"internal error: {type(e).__name__}: {e}"
        finally:
            with sh.cond:
                sh.busy = False
                while sh.aborting:
                    sh.cond.wait(0.1)
                aborted = sh.aborted
        run = WatchRun(trigger, targets, res, error, busy,
                       aborted=bool(aborted and res and res.get("status") == "cancelled"))
        if res is not None and res.get("status") in ("ok", "failed"):
            for c in trigger:
                self.stale.pop(c, None)
        self.runs.append(run)
        if res is not None:
            self.emit(run)
        return run

    def start(self) -> None:
        """Start the event thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._events, name="e3-watch-events",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        with self.sh.cond:
            self.sh.cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def loop(self, max_runs: int | None = None) -> int:
        """Run until stopped: 130 when interrupted (Ctrl-C, SIGTERM once installed) or when a
        run was cancelled from outside (`e3 cancel`); 0 when `stop()` was called or after
        `max_runs` runs."""
        self._project()  # fail fast (exit 2): no package deployed, a filter matching nothing
        self.start()
        try:
            return self._loop(max_runs)
        except KeyboardInterrupt:
            return EXIT_CANCELLED
        finally:
            self.stop()

    def _loop(self, max_runs: int | None) -> int:
        done = 0
        initial = self.initial
        retry = False  # the workspace was busy: try the same changes again soon
        while not self.stop_event.is_set():
            if max_runs is not None and done >= max_runs:
                return 0
            if initial:
                run = self.run_once(None)
            else:
                deadline = self.clock() + self.retry_s if retry else None
                changed = self._wait_batch(deadline)
                if self.stop_event.is_set() or (changed is None and not retry):
                    break
                run = self.run_once(changed or [])
            if run is None:
                continue
            retry = False
            if run.error is not None:
                self.note(f"error: {run.error}")
                if run.busy:
                    retry = not initial
                    if initial:
                        self.stop_event.wait(self.retry_s)
                else:
                    initial = False  # e.g. a bad input file: wait for the edit that fixes it
                continue
            initial = False
            done += 1
            if run.result.get("status") == "cancelled" and not run.aborted:
                return EXIT_CANCELLED
        return 0


def install_sigterm_as_sigint():
    """Make SIGTERM behave as Ctrl-C in this process (main thread only): it raises
    KeyboardInterrupt where the main thread is — itself, not by raising SIGINT, which a shell
    sets to ignored for a command it starts in the background (`e3 watch &` in a script): such
    a watch must stop on SIGTERM too. A `go` in flight has its own handler for both (it stops
    at its next beat). Returns a function restoring the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, old)
