"""The task runtimes, by name: the one table every layer asks (DESIGN.md §3, issue 17).

A runtime is how one task runs (`docs/runtimes.md`). Its *name* and *traits* live here, below
every layer, so that `sdk` can validate a package at build time, `exec` can choose where a task
runs and `dataflow` can count what the worker pool will be asked for — without any of them
comparing runtime names. The *implementation* is a class in `exec` named by `impl`
("module:Class", imported only by `exec.runtimes`), so a new runtime is one module plus one
entry in `RUNTIMES`.

>>> RUNTIMES["shell"].argv, RUNTIMES["python"].pooled, RUNTIMES["inline"].in_engine
(True, True, True)
>>> runtime("ruby")
Traceback (most recent call last):
...
e3logic.core.errors.UsageError: unknown runtime 'ruby'; use one of python, shell, inline
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError


@dataclass(frozen=True)
class RuntimeSpec:
    """What the engine must know about a runtime without running it.

    name       the name a package's task declares (`package.task(..., runtime=name)`)
    impl       "module:Class" of its implementation (an `exec.runtimes.Runtime`)
    argv       the task is an argv template (`['sh', '-c', ...]`); else a `module:function`
    pooled     runs in a python worker process of the engine's pool (the pool is started
               ahead for these)
    in_engine  runs in the engine's own process, in a thread; such a task may hand control
               back to the executor across beats (generators: `sdk.yield_`, `sdk.await_`), so
               a cooperative backend never runs it to completion inside a beat
    isolated   for an `in_engine` runtime: the runtime whose way it runs when the backend keeps
               every task out of the engine's process (the `processes` backend); None otherwise
    """

    name: str
    impl: str
    argv: bool = False
    pooled: bool = False
    in_engine: bool = False
    isolated: str | None = None


RUNTIMES: dict[str, RuntimeSpec] = {s.name: s for s in (
    RuntimeSpec("python", "e3logic.exec.runtimes:PythonRuntime", pooled=True),
    RuntimeSpec("shell", "e3logic.exec.runtimes:ShellRuntime", argv=True),
    RuntimeSpec("inline", "e3logic.exec.inline:InlineRuntime", in_engine=True,
                isolated="python"),
)}

DEFAULT = "python"  # the runtime of a task that names none


def runtime(name: str) -> RuntimeSpec:
    """The spec of runtime `name`; a `UsageError` naming the known ones if there is none."""
    spec = RUNTIMES.get(name)
    if spec is None:
        raise UsageError(f"unknown runtime {name!r}; use one of {', '.join(RUNTIMES)}")
    return spec


# -- argv templates (the runtimes whose `RuntimeSpec.argv` is set) -------------------------------

#: the placeholders an argv template may hold: `{inputs}`, `{input<i>}`, `{output}`, `{bundle}`
ARGV_PLACEHOLDER = re.compile(r"\{(inputs|output|bundle|input(\d+))\}")
ARGV_PLACEHOLDERS = "{inputs}, {input0}, {input1}…, {output} and {bundle}"
# `{word}` not after `$` (so `${HOME}` is the shell's): a placeholder candidate
_BRACED = re.compile(r"(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOOKALIKE = re.compile(r"(?i)(in|inputs?|out|outputs?|bundles?)_?\d*")


def argv_problem(argv) -> str | None:
    """Why `argv` is not a valid argv template (None: it is). A `{word}` that looks like a
    placeholder but is none (`{bundel}`, `{input}`, `{out}`) is a problem naming the known
    ones; other braces (`awk '{print $1}'`, `jq '{name}'`, `${HOME}`) are left alone."""
    import difflib

    for arg in argv:
        for m in _BRACED.finditer(arg):
            word = m.group(1)
            if ARGV_PLACEHOLDER.fullmatch(m.group(0)):
                continue
            near = difflib.get_close_matches(word.lower(), ("inputs", "input0", "output",
                                                            "bundle"), n=1, cutoff=0.75)
            if near or _LOOKALIKE.fullmatch(word):
                hint = f"did you mean {{{near[0]}}}? " if near else ""
                return (f"unknown placeholder {{{word}}} in {arg!r}; {hint}the placeholders "
                        f"are {ARGV_PLACEHOLDERS}")
    return None


def argv_max_input(argv) -> int:
    """The highest `{input<i>}` index the template refers to (-1: none)."""
    return max((int(m.group(2)) for a in argv for m in ARGV_PLACEHOLDER.finditer(a)
                if m.group(2) is not None), default=-1)
