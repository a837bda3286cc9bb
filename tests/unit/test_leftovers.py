"""environment/leftovers.py with real processes: the data dir's lock, records, sweeps and the watcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lambdalet.environment.leftovers import DataDirInUse, EnvRecords, Record, _checked_cgroup, read_proc, sweep_data_dir

ENV_A, ENV_B, ENV_C = "a" * 32, "b" * 32, "c" * 32


def _gone(proc: subprocess.Popen, timeout: float = 3.0) -> bool:
    """Whether proc exits (is killed) within timeout; it is reaped either way at the end."""
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _spawn(argv: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(argv, start_new_session=True, env={"PATH": os.environ["PATH"], **env})


def _write_record(run_dir: Path, env_id: str, pid: int, start: int, cgroup: str = "") -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / env_id).write_text(f"{pid} {start}\n{cgroup}\n")


def test_one_claim_per_data_dir(tmp_path: Path) -> None:
    records = EnvRecords.claim(str(tmp_path))
    try:
        with pytest.raises(DataDirInUse, match=f"is in use by another lambdalet server \\(pid {os.getpid()}\\)"):
            EnvRecords.claim(str(tmp_path))
        other = EnvRecords.claim(str(tmp_path / "elsewhere"))
        other.close()
    finally:
        records.close()
    EnvRecords.claim(str(tmp_path)).close()  # released
    assert os.listdir(tmp_path / "run") == ["lock"]


def test_record_and_forget(tmp_path: Path) -> None:
    records = EnvRecords.claim(str(tmp_path))
    try:
        records.record(ENV_A, os.getpid(), "/sys/fs/cgroup/memory/lambdalet-1/" + ENV_A)
        records.flush()
        text = (Path(records.run_dir) / ENV_A).read_text()
        me = read_proc(os.getpid())
        assert me is not None
        assert text == f"{os.getpid()} {me.start}\n/sys/fs/cgroup/memory/lambdalet-1/{ENV_A}\n"
        records.process_ended(ENV_A, None)  # its pid may be reused from now on
        records.flush()
        assert (Path(records.run_dir) / ENV_A).read_text() == "0 -1\n\n"
        records.forget(ENV_A)
        records.flush()
        assert not os.listdir(records.run_dir)
    finally:
        records.close()


def test_start_up_sweep_ends_what_is_ours_and_only_that(tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    group = _spawn(["sh", "-c", "sleep 100 & exec sleep 100"])  # a leader and a child in its group
    orphaned = _spawn(["sh", "-c", "sleep 100 & exit 0"])  # the leader goes, the child stays in its group
    reused = _spawn(["sleep", "100"])  # recorded with another start time: a pid since reused
    marked = _spawn(["sleep", "100"], LAMBDA_TASK_ROOT=f"{data}/code/abc/task")
    foreign = _spawn(["sleep", "100"], LAMBDA_TASK_ROOT=f"{other}/code/abc/task")
    time.sleep(0.2)
    orphaned_start = read_proc(orphaned.pid).start
    orphaned.wait()
    _write_record(data / "run" / "123-456", ENV_A, group.pid, read_proc(group.pid).start)
    _write_record(data / "run" / "123-456", ENV_B, orphaned.pid, orphaned_start)
    _write_record(data / "run" / "789-1", ENV_C, reused.pid, read_proc(reused.pid).start + 1)
    for name in (ENV_A, ENV_B, "notes"):
        (data / "tmp" / name).mkdir(parents=True)
    try:
        killed = sweep_data_dir(str(data))
        assert _gone(group) and _gone(marked)
        assert not _gone(reused, 0.3) and not _gone(foreign, 0.1)
        assert killed == 4  # the group's two, the orphaned group's child, the marked one
    finally:
        for proc in (group, reused, marked, foreign):
            proc.kill()
            proc.wait()
    assert sorted(os.listdir(data / "tmp")) == ["notes"]
    assert os.listdir(data / "run") == []


def test_watcher_ends_the_environments_of_a_killed_server(tmp_path: Path) -> None:
    script = (
        "import os, signal, subprocess, sys\n"
        "from lambdalet.environment.leftovers import EnvRecords\n"
        "records = EnvRecords.claim(sys.argv[1])\n"
        "env = {'PATH': os.environ['PATH'], 'AWS_LAMBDA_LOG_STREAM_NAME': '2024/01/01/[$LATEST]' + 'a' * 32}\n"
        "leader = subprocess.Popen(['sleep', '100'], start_new_session=True)\n"
        "daemon = subprocess.Popen(['sleep', '101'], start_new_session=True, env=env)\n"
        "records.record('a' * 32, leader.pid, None)\n"
        "records.flush()\n"
        "print(leader.pid, daemon.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    server = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, timeout=30)
    assert server.returncode == -signal.SIGKILL, server.stderr
    pids = [int(p) for p in server.stdout.split()]
    deadline = time.time() + 5
    while any(_running(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.02)
    assert not any(_running(pid) for pid in pids)
    deadline = time.time() + 5
    while os.listdir(tmp_path / "run") != ["lock"] and time.time() < deadline:
        time.sleep(0.02)
    assert os.listdir(tmp_path / "run") == ["lock"]  # the run's records went with it


def _running(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and not proc.zombie


@pytest.mark.parametrize(("cgroup", "ok"), [
    (f"/sys/fs/cgroup/memory/lambdalet-12/{ENV_A}", True),
    (f"/sys/fs/cgroup/lambdalet.slice/lambdalet-12/{ENV_A}", True),
    (f"/sys/fs/cgroup/memory/lambdalet-12/{ENV_B}", False),
    ("/sys/fs/cgroup/memory", False),
    (f"/sys/fs/cgroup/memory/{ENV_A}", False),
    (f"/etc/lambdalet-12/{ENV_A}", False),
    (f"/sys/fs/cgroup/memory/lambdalet-12/../../{ENV_A}", False),
    ("", False),
])
def test_only_lambdalets_cgroups_are_swept(cgroup: str, ok: bool) -> None:
    assert (_checked_cgroup(Record(ENV_A, 1, 1, cgroup)) is not None) is ok
