"""Turn an executor Job into a runtime TaskSpec and the runtime's result into a Finished."""
from __future__ import annotations

import json
import os
import time

from .executor import Finished, Job
from .logspares import truncate


def make_runner(repo, runtimes, modules_tree: str | None, clock=time.time):
    """A runner for `Executor`: inputs are read straight from the object store (read-only
    files); the output is written to a temp file the commit adopts into the store."""
    from .runtimes import InputRef, TaskSpec

    def modules() -> dict[str, bytes]:
        if not modules_tree:
            return {}
        return {p: repo.objects.read(e["hash"]) for p, e in repo.trees.walk(modules_tree)}

    repo.logs_dir.mkdir(parents=True, exist_ok=True)
    logs, cwd, path_of = str(repo.logs_dir), str(repo.root), repo.objects.path_str
    leases_json: dict[tuple, str] = {}

    async def run(job: Job, key: str, ins: tuple, out_file: str, ep) -> Finished:
        leases = leases_json.get(job.leases)
        if leases is None:
            leases = leases_json[job.leases] = json.dumps([list(l) for l in job.leases])
        spec = TaskSpec(
            runtime=job.runtime, entry=job.entry, argv=tuple(job.argv) if job.argv else None,
            modules_hash=job.modules_hash, modules=modules,
            inputs=tuple(InputRef(path_of(h), fmt, p) for p, h, fmt in ins),
            output=out_file, log_path=f"{logs}/{key}.log", budget=dict(job.budget),
            env={**({"E3_RUN_TOKEN": run.token} if run.token else {}), "E3_LEASES": leases,
                 "E3_DATAFLOW": job.name, "E3_EXECUTION": key, "E3_PROFILE": job.profile},
            cwd=cwd)
        started = clock()
        # a log holds one execution: the latest (the runtime opens it, appending). A task
        # process (killed with its group when the episode ends) starts on a spare empty file
        # linked in; an inline thread may outlive its episode, so it never shares one
        spares = run.spares if job.runtime != "inline" else None
        if spares is None:
            truncate(spec.log_path)
            return await _run(job, key, ins, out_file, ep, spec, started)
        spare = spares.link(spec.log_path)
        done = False
        try:
            res = await _run(job, key, ins, out_file, ep, spec, started)
            done = True
            return res
        finally:
            spares.settle(spare, spec.log_path, reuse=done)

    async def _run(job: Job, key: str, ins: tuple, out_file: str, ep, spec, started) -> Finished:
        if job.runtime == "inline" and not runtimes.inline_in_pool and run.executor is not None:
            from .inline import drive
            from .taskcode import TaskError

            try:
                fn, args = await runtimes.load_inline(spec)
            except TaskError as e:
                return Finished(job, key, "fail", tuple((p, h) for p, h, _ in ins),
                                reason=e.reason, started=started, ended=clock())
            status, fmt, reason = await drive(run.executor, job, ep, fn, args, out_file,
                                              spec.log_path)
            return Finished(job, key, status, tuple((p, h) for p, h, _ in ins),
                            output_file=out_file if status == "ok" else None, output_format=fmt,
                            reason=reason, started=started, ended=clock())

        def on_start(pgid):
            ep.pgid = pgid
            if run.on_group:
                from .procs import start_time

                run.on_group(ep, pgid, start_time(pgid))

        res = await runtimes.run(spec, on_start=on_start)
        ended = clock()
        return Finished(job, key, res.status, tuple((p, h) for p, h, _ in ins),
                        output_file=out_file if res.status == "ok" else None,
                        output_hash=res.output_hash, output_size=res.output_size,
                        output_format=res.output_format, reason=res.reason or "",
                        exit_code=res.exit_code, started=started, ended=ended)

    run.on_group = None  # set by the caller: record (episode, pgid, start) for orphan killing
    run.executor = None  # set by the caller: inline tasks are driven across beats by it
    run.token = None     # set by the caller: marks task processes so orphans can be found
    run.spares = None    # set by the caller: a LogSpares for the run (None: a file per log)
    return run
