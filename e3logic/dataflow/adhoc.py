"""`e3 run PKG/TASK INPUT... -o OUT`: one memoized execution of a package's task on files."""
from __future__ import annotations

import os
import shutil
import time

from ..core.errors import NotFound, UsageError
from ..exec.memo import ExecutionRecord, Memo, execution_key
from .model import Project


def run_task(api, spec: str, inputs: list[str], output: str, force: bool = False) -> dict:
    pkg_spec, _, task = spec.rpartition("/")
    if not pkg_spec or not task:
        raise UsageError(f"'{spec}' is not PKG/TASK; e.g. forecast/clean or forecast@0.1.0/clean")
    name, version, h = api.resolve(pkg_spec)
    project = Project.load(api.r, h)
    tasks = project.pkg.get("tasks", {})
    if task not in tasks:
        raise NotFound("task", task, tasks)
    repo = api.r
    hashes = [repo.objects.write_file(p) for p in inputs]
    th = project.task_hashes[task]
    key = execution_key(th, hashes)
    memo = Memo(repo.index)
    t0 = time.time()
    hit = None if force else memo.lookup(key)
    if hit and repo.objects.exists(hit.output_hash):
        repo.objects.copy_to(hit.output_hash, output)
        return {"execution": key, "cached": True, "output_hash": hit.output_hash,
                "seconds": round(time.time() - t0, 6), "status": "ok"}
    import anyio

    from ..exec.dispatch import make_runner
    from ..exec.episodes import Episode
    from ..exec.executor import Job
    from ..exec.runtimes import Runtimes

    t = tasks[task]
    job = Job(name=f"{name}/{task}", task_hash=th, runtime=t["runtime"], entry=t.get("entry"),
              argv=tuple(t["argv"]) if t.get("argv") else None,
              inputs=tuple(f"arg{i}" for i in range(len(inputs))), output_path="output",
              deps=frozenset(), modules_hash=project.modules_hash)
    fmts = ["json" if p.endswith(".json") else "raw" for p in inputs]
    ins = tuple((f"arg{i}", h, f) for i, (h, f) in enumerate(zip(hashes, fmts)))
    runtimes = Runtimes(workers=1, cache_dir=repo.dir / "cache")
    mref = project.pkg.get("modules")
    runner = make_runner(repo, runtimes, mref["hash"] if mref else None)
    (repo.dir / "staging").mkdir(parents=True, exist_ok=True)  # not swept by gc
    out_file = str(repo.dir / "staging" / f"out-{key[:24]}-adhoc-{os.getpid()}")

    async def main():
        try:
            return await runner(job, key, ins, out_file, Episode("adhoc", "adhoc", job.name, key))
        finally:
            await runtimes.aclose()

    res = anyio.run(main)
    rec = ExecutionRecord(key=key, task_hash=th, dataflow=job.name, run="adhoc", workspace="",
                          status=res.status, started=res.started, ended=res.ended,
                          exit_code=res.exit_code, error=res.reason or None,
                          inputs=tuple(zip(inputs, hashes)), output_path=output)
    if res.status == "ok":
        rec.output_hash = repo.objects.adopt(out_file)
        rec.output_format = res.output_format
        shutil.copyfile(repo.objects.path(rec.output_hash), output)
    with repo.index.transaction() as c:
        memo.record(c, rec)
    if res.status != "ok":
        raise _task_failed(job.name, res.reason, key)
    return {"execution": key, "cached": False, "output_hash": rec.output_hash,
            "seconds": round(res.ended - res.started, 6), "status": "ok"}


def _task_failed(name, reason, key):
    from ..core.errors import TaskFailed

    return TaskFailed(f"task {name} failed: {reason}; see 'e3 logs {key[:12]}'")
