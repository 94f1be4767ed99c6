"""`e3 run PKG/TASK INPUT... -o OUT`: one memoized execution of a package's task on files.

It goes the executor's way: the memo is asked as the executor asks it (`memo_hit`), the task
is submitted to a `threads` backend (`backend_for`, the runtimes and `TaskRunner` of `go`),
its output adopted into the store (`adopt_output`) and recorded (`execution_record`) as a
`go` execution is — so the same task on the same bytes is a hit whichever command ran it
first."""
from __future__ import annotations

import os
import shutil
import time

from ..core.errors import NotFound, UsageError
from ..exec.memo import Memo, execution_key
from .model import Project

BACKEND = "threads"  # one task, in the engine's threads if it is an inline one


def run_task(api, spec: str, inputs: list[str], output: str, force: bool = False) -> dict:
    pkg_spec, _, task = spec.rpartition("/")
    if not pkg_spec or not task:
        raise UsageError(f"'{spec}' is not PKG/TASK; e.g. forecast/clean or forecast@0.1.0/clean")
    name, version, h = api.resolve(pkg_spec)
    project = Project.load(api.r, h)
    tasks = project.pkg.get("tasks", {})
    if task not in tasks:
        raise NotFound("task", task, tasks)
    from ..exec.executor import memo_hit

    repo = api.r
    hashes = [repo.objects.write_file(p) for p in inputs]
    th = project.task_hashes[task]
    key = execution_key(th, hashes)
    memo = Memo(repo.index)
    t0 = time.time()
    hit = None if force else memo_hit(memo, repo.objects, key)
    if hit is not None:
        repo.objects.copy_to(hit.output_hash, output)
        return {"execution": key, "cached": True, "output_hash": hit.output_hash,
                "seconds": round(time.time() - t0, 6), "status": "ok"}
    res = _execute(api, project, f"{name}/{task}", tasks[task], th, key, inputs, hashes)
    from ..exec.executor import adopt_output, execution_record

    if res.status == "ok":
        batch = repo.objects.batch()
        try:
            res.output_hash, _ = adopt_output(batch, res)
            batch.commit()
        except BaseException:
            batch.abort()
            raise
        finally:
            try:
                os.unlink(res.output_file)  # installed by hard link (or never)
            except FileNotFoundError:
                pass
        shutil.copyfile(repo.objects.path(res.output_hash), output)
    rec = execution_record(res, "adhoc", "", inputs=tuple(zip(inputs, hashes)),
                           output_path=output)
    with repo.index.transaction() as c:
        memo.record(c, rec)
    if res.status != "ok":
        raise _task_failed(res.job.name, res.reason, key)
    return {"execution": key, "cached": False, "output_hash": res.output_hash,
            "seconds": round(res.ended - res.started, 6), "status": "ok"}


def _execute(api, project: Project, name: str, t: dict, task_hash: str, key: str,
             inputs: list[str], hashes: list[str]):
    """Run the task once on a backend; its `Finished`."""
    import anyio

    from ..exec.backends import backend_for, run_one
    from ..exec.episodes import Episode
    from ..exec.jobs import Job, Task

    repo = api.r
    job = Job(name=name, task_hash=task_hash, runtime=t["runtime"], entry=t.get("entry"),
              argv=tuple(t["argv"]) if t.get("argv") else None,
              inputs=tuple(f"arg{i}" for i in range(len(inputs))), output_path="output",
              deps=frozenset(), modules_hash=project.modules_hash)
    fmts = ["json" if p.endswith(".json") else "raw" for p in inputs]
    ins = tuple((f"arg{i}", h, f) for i, (h, f) in enumerate(zip(hashes, fmts)))
    mref = project.pkg.get("modules")
    backend = backend_for(BACKEND, repo, workers=1, modules_tree=mref["hash"] if mref else None)
    (repo.dir / "staging").mkdir(parents=True, exist_ok=True)  # not swept by gc
    out_file = str(repo.dir / "staging" / f"out-{key[:24]}-adhoc-{os.getpid()}")
    one = Task(job, key, ins, out_file, Episode("adhoc", "adhoc", name, key))

    async def main():
        try:
            return await run_one(backend, one)
        finally:
            await backend.close()

    try:
        return anyio.run(main)
    except BaseException:
        backend.kill()
        raise


def _task_failed(name, reason, key):
    from ..core.errors import TaskFailed

    return TaskFailed(f"task {name} failed: {reason}; see 'e3 logs {key[:12]}'")
