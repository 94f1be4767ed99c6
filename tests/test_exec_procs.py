"""Process-group bookkeeping: /proc parsing, group signalling, reaping, killing orphans."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from e3logic.exec import procs
from tests.helpers import ROOT


def marker() -> str:
    """A unique sleep duration, so the test can find its own processes in /proc."""
    return f"3{uuid.uuid4().int % 10**6:06d}.5"


def live_with_arg(arg: str) -> list[int]:
    """Pids of running (non-zombie) processes whose command line holds `arg`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        st = procs.proc_stat(int(name))
        if st is not None and st.alive and arg.encode() in cmd:
            out.append(int(name))
    return out


def wait_until(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def spawn_group(script: str) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_proc_stat_reads_start_time_and_group_of_a_live_process():
    p = spawn_group(f"sleep {marker()}")
    try:
        st = procs.proc_stat(p.pid)
        assert st is not None and st.pgrp == p.pid and st.session == p.pid
        assert st.starttime == procs.start_time(p.pid) > 0
        assert st.alive
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_proc_stat_handles_parentheses_and_spaces_in_the_command_name(tmp_path):
    exe = tmp_path / "odd) name ("
    exe.symlink_to("/bin/sleep")
    p = subprocess.Popen([str(exe), "5"], start_new_session=True)
    try:
        st = procs.proc_stat(p.pid)
        assert st is not None and st.comm.startswith("odd) name")
        assert st.pgrp == p.pid and st.state in "RSD"
    finally:
        p.kill()
        p.wait()


def test_proc_stat_of_a_missing_pid_is_none():
    assert procs.proc_stat(2**22 + 12345) is None
    assert procs.start_time(2**22 + 12345) is None


def test_group_members_lists_the_leader_and_its_background_children():
    m = marker()
    p = spawn_group(f"sleep {m} & sleep {m} & wait")
    try:
        assert wait_until(lambda: len(live_with_arg(m)) == 2)
        members = procs.group_members(p.pid)
        assert p.pid in members and set(live_with_arg(m)) <= set(members)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    assert wait_until(lambda: not live_with_arg(m))


def test_terminate_group_escalates_to_sigkill_when_sigterm_is_ignored():
    m = marker()
    p = spawn_group(f"trap '' TERM; sleep {m} & wait; sleep {m}")
    assert wait_until(lambda: live_with_arg(m))
    t = time.monotonic()
    procs.terminate_group(p.pid, grace=0.3)
    p.wait(timeout=5)
    assert p.returncode == -signal.SIGKILL
    assert wait_until(lambda: not live_with_arg(m))
    assert time.monotonic() - t < 5


def test_kill_orphans_kills_a_group_whose_leader_has_the_recorded_start_time():
    m = marker()
    p = spawn_group(f"sleep {m} & wait")
    assert wait_until(lambda: live_with_arg(m))
    killed = procs.kill_orphans({p.pid: procs.start_time(p.pid)})
    assert killed == [p.pid]
    p.wait(timeout=5)
    assert wait_until(lambda: not live_with_arg(m))


def test_kill_orphans_spares_a_recycled_pid_whose_start_time_differs():
    m = marker()
    p = spawn_group(f"sleep {m}")
    try:
        assert wait_until(lambda: live_with_arg(m))
        killed = procs.kill_orphans([(p.pid, procs.start_time(p.pid) - 1)])
        assert killed == []
        time.sleep(0.1)
        assert p.poll() is None and live_with_arg(m)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_kill_orphans_ignores_groups_that_are_gone_and_never_signals_group_one():
    p = spawn_group("exit 0")
    p.wait()
    assert procs.kill_orphans({p.pid: 1, 1: procs.start_time(1) or 0, 0: 0}) == []


def test_reap_reports_exit_status_signal_and_cpu():
    p = subprocess.Popen([sys.executable, "-c", "import os; sum(range(3_000_000)); os._exit(7)"])
    r = procs.reap(p.pid)
    p.returncode = r.exit_code
    assert r.exit_code == 7 and r.signal is None and r.cpu_s > 0
    q = subprocess.Popen(["sleep", "30"])
    os.kill(q.pid, signal.SIGSEGV)
    r = procs.reap(q.pid)
    q.returncode = r.exit_code
    assert r.signal == signal.SIGSEGV
    assert procs.describe_exit(r.exit_code) == "killed by SIGSEGV"
    assert procs.describe_exit(3) == "exit 3"


def test_has_exited_does_not_reap_so_the_pid_stays_pinned():
    p = subprocess.Popen(["true"])
    assert wait_until(lambda: procs.has_exited(p.pid))
    st = procs.proc_stat(p.pid)
    assert st is not None and st.state == "Z"  # still ours to reap
    assert procs.reap(p.pid).exit_code == 0
    p.returncode = 0


def test_registry_kill_all_kills_every_registered_group():
    m = marker()
    reg = procs.GroupRegistry()
    ps = [spawn_group(f"sleep {m}") for _ in range(2)]
    for p in ps:
        reg.add(p.pid, procs.start_time(p.pid))
    assert set(reg.snapshot()) == {p.pid for p in ps}
    assert sorted(reg.kill_all()) == sorted(p.pid for p in ps)
    for p in ps:
        p.wait(timeout=5)
        assert p.returncode == -signal.SIGKILL


def test_orphans_of_a_sigkilled_engine_are_killed_by_recorded_pgids(tmp_path):
    """The engine records running groups, dies by SIGKILL; a later process kills the orphans."""
    m = marker()
    script = tmp_path / "engine.py"
    script.write_text(textwrap.dedent(f"""
        import anyio, json, sys
        sys.path.insert(0, {str(ROOT)!r})
        from e3logic.exec.runtimes import Runtimes, TaskSpec

        async def main():
            rt = Runtimes(1, {str(tmp_path / 'cache')!r})
            def started(pgid):
                print(json.dumps(rt.running_groups()), flush=True)
            await rt.run(TaskSpec("shell", argv=("sh", "-c", "sleep {m} & sleep {m}; wait"),
                                  output={str(tmp_path / 'out')!r}), on_start=started)
        anyio.run(main)
    """))
    eng = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    groups = {int(k): v for k, v in json.loads(eng.stdout.readline()).items()}
    assert wait_until(lambda: len(live_with_arg(m)) == 2)
    eng.kill()
    eng.wait()
    time.sleep(0.2)
    assert len(live_with_arg(m)) == 2  # orphaned, still running
    assert procs.kill_orphans(groups) == sorted(groups)
    assert wait_until(lambda: not live_with_arg(m))
    # SIGKILL lands asynchronously: the leader (sh) may outlive its sleeps by a moment
    assert wait_until(lambda: all(
        (st := procs.proc_stat(g)) is None or not st.alive for g in groups))
    assert procs.kill_orphans(groups) == []  # idempotent: the leader is gone now


def test_a_childs_start_time_is_known_from_the_clock_around_its_fork(monkeypatch):
    for _ in range(20):
        before = procs.boottime_ns()
        p = subprocess.Popen(["sleep", "5"], start_new_session=True)
        after = procs.boottime_ns()
        try:
            assert procs.child_start_time(p.pid, before, after) == procs.proc_stat(p.pid).starttime
        finally:
            p.kill()
            p.wait()
    # where the inference was found wrong, /proc is read
    monkeypatch.setattr(procs, "_inferred_ok", False)
    p = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        st = procs.proc_stat(p.pid).starttime
        assert procs.child_start_time(p.pid, 0, 0) == st
    finally:
        p.kill()
        p.wait()


def test_start_time_of_a_registered_leader_is_the_recorded_one_until_it_is_discarded(monkeypatch):
    reg = procs.GroupRegistry()
    p = subprocess.Popen(["sleep", "5"], start_new_session=True)
    real = procs.proc_stat(p.pid).starttime
    reg.add(p.pid, real)
    reads = []
    monkeypatch.setattr(procs, "proc_stat", lambda pid: reads.append(pid))
    assert procs.start_time(p.pid) == real and reads == []  # no /proc read
    reg.discard(p.pid)
    assert procs.start_time(p.pid) is None and reads == [p.pid]  # read again (here: patched)
    monkeypatch.undo()
    p.kill()
    p.wait()
    reg.add(p.pid, real)  # a stale entry for a reaped pid is not trusted
    assert procs.start_time(p.pid) is None
    reg.discard(p.pid)


def test_the_spawner_starts_a_session_leader_even_after_inherited_descriptors_were_closed(
        tmp_path):
    fd = os.open(tmp_path / "inherited", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(fd, True)
    sp = procs.Spawner()
    os.close(fd)  # the snapshot still names it: closing it in the child is harmless
    log = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
    try:
        assert sp.usable_with(log)
        pid = sp.spawn(["sh", "-c", "echo $$ $(cut -d' ' -f6 /proc/$$/stat); cat"], None, log)
        assert procs.reap(pid).exit_code == 0  # stdin is /dev/null: cat ends at once
        leader, sid = (tmp_path / "log").read_text().split()
        assert int(leader) == int(sid) == pid
        with pytest.raises(FileNotFoundError):
            sp.spawn(["no-such-command-e3"], None, log)
    finally:
        os.close(log)
        sp.close()


def test_a_spawned_task_gets_default_sigpipe_no_blocked_signals_and_only_fds_0_to_2(tmp_path):
    """What Popen(start_new_session=True) gives: Python ignores SIGPIPE, a task must not."""
    inherited = os.open(tmp_path / "inherited", os.O_WRONLY | os.O_CREAT)
    os.set_inheritable(inherited, True)
    sp = procs.Spawner()  # its snapshot of inheritable descriptors names it
    log = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # this thread's mask
    try:
        assert sp.usable_with(log)
        # each command reads its own /proc entry (a shell's own mask changes as it forks)
        for argv in (["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
                     ["ls", "/proc/self/fd"], ["readlink", "/proc/self/fd/0"]):
            assert procs.reap(sp.spawn(argv, None, log)).exit_code == 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        os.close(log)
        os.close(inherited)
        sp.close()
    lines = (tmp_path / "log").read_text().split()
    ign = int(lines[lines.index("SigIgn:") + 1], 16)
    blk = int(lines[lines.index("SigBlk:") + 1], 16)
    assert not ign & (1 << (signal.SIGPIPE - 1)) and not ign & (1 << (signal.SIGXFSZ - 1))
    assert blk == 0  # an empty mask, whatever the spawning thread blocks
    fds = [x for x in lines if x.isdigit() and len(x) < 4]
    assert sorted(set(fds) - {"3"}) == ["0", "1", "2"]  # 3: ls's own directory fd
    assert lines[-1] == "/dev/null"
