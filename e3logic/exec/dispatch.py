"""Turn an executor `Task` into a runtime `TaskSpec` and the runtime's result into a
`Finished` (`TaskRunner`, the local backends' runner)."""
from __future__ import annotations

import json
import time

from .jobs import Finished, Task


class TaskRunner:
    """Runs one task on `runtimes` (an `exec.runtimes.Runtimes`): inputs are read straight
    from the object store (read-only files); the output is written to the task's staged file,
    which the executor's commit adopts into the store; the log is `.e3/logs/<key>.log` (the
    runtime starts it afresh: a log holds one execution, the latest).

    `modules_tree`: the tree of the package's module files (None: none). `token`: put in the
    task's environment as `E3_RUN_TOKEN`, so a killed run's processes can be found.
    `clock`: start and end times of the `Finished`."""

    def __init__(self, repo, runtimes, modules_tree: str | None = None, *,
                 token: str | None = None, clock=time.time):
        self.repo = repo
        self.runtimes = runtimes
        self.modules_tree = modules_tree
        self.token = token
        self.clock = clock
        repo.logs_dir.mkdir(parents=True, exist_ok=True)
        self._logs, self._cwd = str(repo.logs_dir), str(repo.root)
        self._leases_json: dict[tuple, str] = {}

    def modules(self) -> dict[str, bytes]:
        """The package's module files (called by the runtimes once per module set)."""
        if not self.modules_tree:
            return {}
        repo = self.repo
        return {p: repo.objects.read(e["hash"]) for p, e in repo.trees.walk(self.modules_tree)}

    def spec(self, task: Task):
        from .runtimes import InputRef, TaskSpec

        job, key = task.job, task.key
        leases = self._leases_json.get(job.leases)
        if leases is None:
            leases = self._leases_json[job.leases] = json.dumps([list(l) for l in job.leases])
        path_of = self.repo.objects.path_str
        return TaskSpec(
            runtime=job.runtime, entry=job.entry, argv=tuple(job.argv) if job.argv else None,
            modules_hash=job.modules_hash, modules=self.modules,
            inputs=tuple(InputRef(path_of(h), fmt, p) for p, h, fmt in task.inputs),
            output=task.out_file, log_path=f"{self._logs}/{key}.log", budget=dict(job.budget),
            env={**({"E3_RUN_TOKEN": self.token} if self.token else {}), "E3_LEASES": leases,
                 "E3_DATAFLOW": job.name, "E3_EXECUTION": key, "E3_PROFILE": job.profile},
            cwd=self._cwd)

    async def __call__(self, task: Task) -> Finished:
        spec = self.spec(task)
        started = self.clock()
        ep, host = task.episode, task.host

        def on_start(pgid: int) -> None:
            ep.pgid = pgid
            if host is not None:
                host.started(pgid)

        res = await self.runtimes.run(spec, on_start=on_start, host=host)
        return task.finished(res.status, res.reason or "",
                             output_file=task.out_file if res.status == "ok" else None,
                             output_hash=res.output_hash, output_size=res.output_size,
                             output_format=res.output_format, exit_code=res.exit_code,
                             started=started, ended=self.clock())
