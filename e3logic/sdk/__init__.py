"""Package authoring: the API an `e3pkg.py` uses, and building it into a bundle.

    from e3logic import sdk

    package = sdk.package("forecast", "0.1.0", dependencies={"stats-lib": "^1.0"})
    package.module("steps.py")
    package.task("clean", "steps:clean", runtime="python")
    package.dataset("inputs/sales", file="data/sales.csv")
    package.dataflow("clean", task="clean", inputs=["inputs/sales"], output="rows")

Public API:
    package(name, version, dependencies=None) -> PackageBuilder
    PackageBuilder.module(path) / .task(name, entry_or_argv, runtime="python")
        / .dataset(path, file=None, value=None, format=None)
        / .dataflow(name, task, inputs, output, leases=(), resources=None, budget=None,
                    profile=None, tags=()) / .validate()
    output_path(dataflow, output) -> "outputs/<dataflow>/<output>"
    load(dir) -> PackageBuilder               execute dir/e3pkg.py
    build_objects(builder, store=None) -> (hash, package object, store)
    build(dir, outdir=None) -> {"name","version","path","hash"}
    task_hash(package_obj, task_name, read) -> str     (implemented in repo.packages)

Inside tasks (see sdk/effects.py): yield_(), await_(dataflow, timeout_beats), promote(),
lease(path, mode) -> Lease or LeaseRefused.
"""
from __future__ import annotations

from ..repo.packages import module_files, task_hash, task_object
from .build import build, build_objects, bundle_name, load
from .builder import BUDGET_KEYS, PROFILES, RUNTIMES, PackageBuilder, output_path, package
from .effects import Lease, LeaseRefused, await_, lease, promote, yield_

__all__ = ["BUDGET_KEYS", "PROFILES", "RUNTIMES", "PackageBuilder", "build", "build_objects",
           "bundle_name", "load", "module_files", "output_path", "package", "task_hash",
           "task_object", "Lease", "LeaseRefused", "await_", "lease", "promote", "yield_"]
