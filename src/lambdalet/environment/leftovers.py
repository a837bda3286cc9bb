"""Environments must not outlive their server: a record of each in the data dir, and sweeps that end them.

A server that is killed (kill -9, the OOM killer) cannot end its environments: their bootstraps, their
children and any daemon that left the process group live on. So that they end all the same:

- ``<data-dir>/run/lock`` is flock'ed by the running server: one server per data dir (DataDirInUse).
- ``<data-dir>/run/<pid>-<start>/<env id>`` records one running environment of that server run: the pid
  of its bootstrap, which leads the environment's session and process group, that process's start time
  (so that a reused pid is never taken for it) and its memory cgroup. The file is written when a
  bootstrap starts (one small write per cold start, by a thread of its own; nothing per invoke) and
  removed when the environment ends.
- A watcher process, started with the server, waits for the server to be gone and then ends whatever
  that run's records still name, so that a kill -9 leaves nothing running for long.
- At start-up, claim() first ends whatever every earlier run recorded, every process whose environment
  names this data dir's code (LAMBDA_TASK_ROOT), and removes the per-environment temp dirs they left:
  that sweep is the guarantee, the watcher only makes it sooner.

Runtimes forked by a fork server, and the fork servers themselves, also die with their parent through
PR_SET_PDEATHSIG (runtimes/python/lambdalet_runtime/fork_server.py). Exec'd bootstraps do not get it: a
preexec_fn makes subprocess fork the whole server instead of vfork'ing, ~5 ms more per cold start.

Standard library only: the watcher runs this file as a script (``python -I -S leftovers.py watch ...``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

log = logging.getLogger("lambdalet.leftovers")

KILL_WAIT_S = 2.0  # how long a sweep waits for SIGKILLed processes to be gone
_PASSES = 5  # sweeps repeat while they find processes (children forked just before the kill)
_ENV_ID = re.compile(r"[0-9a-f]{32}")
_CGROUP_BASE = re.compile(r"lambdalet-[0-9]+")
_CGROUP_ROOT = "/sys/fs/cgroup/"
_STREAM_VAR = b"AWS_LAMBDA_LOG_STREAM_NAME="  # ends with the environment id, in every exec'd process
_Change = tuple[str, int | None, str | None] | threading.Event | None  # record, forget, flush, stop


class DataDirInUse(Exception):
    """Another lambdalet server is running on this data dir."""

    def __init__(self, data_dir: str, holder: str) -> None:
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"data dir {data_dir} is in use by another lambdalet server{who}: "
                         "stop that server first, or give this one another --data-dir")


@dataclass(frozen=True)
class Proc:
    """One process, from /proc/<pid>/stat."""

    pid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the pid, identifies the process for good
    zombie: bool


@dataclass(frozen=True)
class Record:
    """One environment of a server run, as recorded in its run dir."""

    env_id: str
    pid: int  # its bootstrap: leader of the environment's session and process group
    start: int  # that process's start time; -1 when unknown
    cgroup: str  # its memory cgroup, or ""


def read_proc(pid: int) -> Proc | None:
    """Process pid as /proc shows it now, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return Proc(pid, int(fields[2]), int(fields[3]), int(fields[19]), fields[0] == b"Z")
    except (OSError, ValueError, IndexError):
        return None


def _processes() -> dict[int, Proc]:
    """Every process on the machine (as far as this /proc shows)."""
    procs: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = read_proc(int(entry))
            if proc is not None:
                procs[proc.pid] = proc
    return procs


def _spared() -> set[int]:
    """This process and its ancestors, never to be killed whatever their environment says."""
    spared = {0, 1}
    pid = os.getpid()
    while pid not in spared:
        spared.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            pid = int(data[data.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return spared


# ---------------------------------------------------------------- the data dir's lock and this run's records
def _lock(path: str, data_dir: str) -> int:
    """Take the data dir's lock (held until the returned fd is closed, i.e. by this process's death)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise DataDirInUse(data_dir, holder) from None
    except OSError as exc:  # a file system without locks: go on, unguarded
        log.warning("cannot lock %s (%s): nothing keeps a second server off this data dir", path, exc)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class EnvRecords:
    """This server's hold on its data dir, and the record of each of its running environments.

    record() and forget() only queue the change: one thread of its own writes the files, in order, so that
    the event loop never waits for the disk (creating a file takes 0.05-0.4 ms here).
    """

    def __init__(self, data_dir: str, lock_fd: int, run_dir: str) -> None:
        self.data_dir = data_dir
        self.run_dir = run_dir
        self._lock_fd: int | None = lock_fd
        self._watch_fd: int | None = None
        self._watcher: subprocess.Popen | None = None
        self._changes: queue.SimpleQueue[_Change] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_changes, name="lambdalet-env-records", daemon=True)
        self._writer.start()

    @classmethod
    def claim(cls, data_dir: str) -> EnvRecords:
        """Lock data_dir (DataDirInUse when another server has it), end what earlier servers left in it,
        and start recording this server's environments there."""
        data_dir = os.path.abspath(data_dir)
        root = os.path.join(data_dir, "run")
        os.makedirs(root, exist_ok=True)
        lock_fd = _lock(os.path.join(root, "lock"), data_dir)
        try:
            sweep_data_dir(data_dir)
            me = read_proc(os.getpid())
            run_dir = os.path.join(root, f"{os.getpid()}-{me.start if me is not None else 0}")
            os.makedirs(run_dir, exist_ok=True)
        except BaseException:
            os.close(lock_fd)
            raise
        records = cls(data_dir, lock_fd, run_dir)
        records._start_watcher()
        return records

    def _start_watcher(self) -> None:
        """Start the process that ends this run's environments once this server is gone, however it goes."""
        read_end, self._watch_fd = os.pipe()  # only this process holds the write end: EOF = we are gone
        argv = [sys.executable, "-I", "-S", os.path.abspath(__file__), "watch", self.data_dir, self.run_dir,
                str(read_end)]
        try:
            self._watcher = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             pass_fds=(read_end,), close_fds=True, start_new_session=True)
        except (OSError, ValueError) as exc:
            log.warning("no watcher for this server's environments (%s): after a kill -9 they run until the "
                        "next start on this data dir", exc)
            os.close(self._watch_fd)
            self._watch_fd = None
        finally:
            os.close(read_end)

    def record(self, env_id: str, pid: int, cgroup: str | None) -> None:
        """Note that environment env_id now runs bootstrap pid (in cgroup). The start time is read by the
        writer thread: the pid is not reused meanwhile, as pids are handed out in turn."""
        self._changes.put((env_id, pid, cgroup))

    def process_ended(self, env_id: str, cgroup: str | None) -> None:
        """Environment env_id's bootstrap and its process group are gone, the environment is not (yet): its
        pid, free to be reused, is no longer recorded."""
        self._changes.put((env_id, 0, cgroup))

    def forget(self, env_id: str) -> None:
        """Environment env_id has ended: nothing of it is left to end."""
        self._changes.put((env_id, None, None))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every change queued so far is on disk (timeout seconds at most: a hung disk)."""
        if self._writer.is_alive():
            done = threading.Event()
            self._changes.put(done)
            done.wait(timeout)

    def _write_changes(self) -> None:
        """The writer thread: apply the queued changes one by one until the None that close() queues."""
        while (change := self._changes.get()) is not None:
            if isinstance(change, threading.Event):
                change.set()
            elif change[1] is None:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.run_dir, change[0]))
            else:
                self._write(*change)

    def _write(self, env_id: str, pid: int, cgroup: str | None) -> None:
        proc = read_proc(pid) if pid > 0 else None
        text = f"{pid} {proc.start if proc is not None else -1}\n{cgroup or ''}\n".encode()
        try:
            fd = os.open(os.path.join(self.run_dir, env_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                         0o644)
            try:
                os.write(fd, text)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot record environment %s: %s", env_id, exc)

    def end_all(self) -> int:
        """SIGKILL every process of this server's environments, daemons that left their session included
        (server shutdown). Returns how many were killed."""
        self.flush()
        records = read_records(self.run_dir)
        return end_processes(records, [path for path in map(_checked_cgroup, records) if path is not None], [])

    def close(self) -> None:
        """Server shutdown, after every environment ended: let the watcher go, release the data dir."""
        self._changes.put(None)
        self._writer.join(5.0)
        if self._watch_fd is not None:
            os.close(self._watch_fd)
            self._watch_fd = None
        if self._watcher is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watcher.wait(1.0)  # it finds nothing left, and goes
            self._watcher = None
        with contextlib.suppress(OSError):
            os.rmdir(self.run_dir)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def read_records(run_dir: str) -> list[Record]:
    """The environments recorded in one run dir (unreadable or torn records are skipped)."""
    records = []
    with contextlib.suppress(OSError):
        for name in os.listdir(run_dir):
            if not _ENV_ID.fullmatch(name):
                continue
            try:
                with open(os.path.join(run_dir, name)) as f:
                    head, _, cgroup = f.read().partition("\n")
                pid, start = (int(x) for x in head.split())
            except (OSError, ValueError):
                continue
            records.append(Record(name, pid, start, cgroup.strip()))
    return records


# ---------------------------------------------------------------- sweeps
def sweep_data_dir(data_dir: str) -> int:
    """End everything earlier servers on data_dir left behind (start-up, with the lock held): the recorded
    environments, any process whose LAMBDA_TASK_ROOT is in this data dir, their cgroups, temp dirs and
    records. Returns how many processes were killed."""
    root = os.path.join(data_dir, "run")
    runs = [os.path.join(root, d) for d in _listdir(root) if os.path.isdir(os.path.join(root, d))]
    records = [r for run in runs for r in read_records(run)]
    marker = f"LAMBDA_TASK_ROOT={os.path.join(data_dir, 'code')}{os.sep}".encode()
    recorded = [path for path in (_checked_cgroup(r) for r in records) if path is not None]
    bases = {base for base in map(os.path.dirname, recorded) if _orphaned(base)}
    cgroups = set(recorded) | {os.path.join(b, d) for b in bases for d in _listdir(b) if _ENV_ID.fullmatch(d)}
    killed = end_processes(records, cgroups, [marker])
    _remove_cgroups(cgroups)
    for base in bases:
        with contextlib.suppress(OSError):
            os.rmdir(base)
    tmp = os.path.join(data_dir, "tmp")
    for name in _listdir(tmp):
        if _ENV_ID.fullmatch(name):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    for run in runs:
        shutil.rmtree(run, ignore_errors=True)
    if killed:
        log.warning("ended %d processes that an earlier server on %s left running", killed, data_dir)
    return killed


def sweep_run(data_dir: str, run_dir: str) -> int:
    """End what one server run's records still name (the watcher, once that server is gone); a newer
    server on the data dir may already be running, so nothing but the records is touched."""
    records = read_records(run_dir)
    cgroups = [path for path in (_checked_cgroup(r) for r in records) if path is not None]
    killed = end_processes(records, cgroups, [])
    _remove_cgroups(cgroups)
    for base in {os.path.dirname(path) for path in cgroups}:
        if _orphaned(base):
            with contextlib.suppress(OSError):
                os.rmdir(base)
    for record in records:
        shutil.rmtree(os.path.join(data_dir, "tmp", record.env_id), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    return killed


def end_processes(records: Iterable[Record], cgroups: Iterable[str], markers: Iterable[bytes]) -> int:
    """SIGKILL every process of the recorded environments, of the cgroups, and whose environment has a
    marker; wait (KILL_WAIT_S at most) until they are gone. Returns how many were killed."""
    records, cgroups, markers = list(records), list(cgroups), list(markers)
    spared = _spared()
    deadline = time.monotonic() + KILL_WAIT_S
    killed: set[tuple[int, int]] = set()
    for _ in range(_PASSES):
        victims = [p for p in _find(records, cgroups, markers) if p.pid not in spared and not p.zombie]
        if not victims:
            break
        for proc in victims:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
            killed.add((proc.pid, proc.start))
        _wait_gone(victims, deadline)
    return len(killed)


def _find(records: list[Record], cgroups: list[str], markers: list[bytes]) -> list[Proc]:
    """The processes that belong to the recorded environments, by session or group, cgroup or environment."""
    procs = _processes()
    leaders: dict[int, int] = {}  # session / process group id -> the recorded leader's start time
    for record in records:
        leader = procs.get(record.pid)
        # A leader still there must be the recorded process; one that is gone may have left its group
        # behind (a pid is not reused while a group or session is named after it).
        if record.start >= 0 and (leader is None or leader.start == record.start):
            leaders[record.pid] = record.start
    found: dict[int, Proc] = {}
    for proc in procs.values():
        for key in (proc.pgid, proc.sid):
            if key in leaders and proc.start >= leaders[key]:
                found[proc.pid] = proc
    for path in cgroups:
        for pid in _cgroup_pids(path):
            if pid in procs:
                found[pid] = procs[pid]
    env_ids = {record.env_id.encode() for record in records}
    if env_ids or markers:
        for proc in procs.values():
            if proc.pid not in found and _marked(proc.pid, env_ids, markers):
                found[proc.pid] = proc
    return list(found.values())


def _marked(pid: int, env_ids: set[bytes], markers: list[bytes]) -> bool:
    """Whether process pid's initial environment names one of env_ids' log streams, or has a marker."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:  # not ours to read: not ours at all
        return False
    for entry in entries:
        if entry.startswith(_STREAM_VAR) and entry[-32:] in env_ids:
            return True
        if any(entry.startswith(marker) for marker in markers):
            return True
    return False


def _wait_gone(victims: list[Proc], deadline: float) -> None:
    """Wait until each victim has exited (or is a zombie, for its new parent to reap)."""
    waiting = victims
    while waiting and time.monotonic() < deadline:
        waiting = [v for v in waiting if _still_there(v)]
        if waiting:
            time.sleep(0.005)


def _still_there(victim: Proc) -> bool:
    proc = read_proc(victim.pid)
    return proc is not None and proc.start == victim.start and not proc.zombie


def _checked_cgroup(record: Record) -> str | None:
    """The record's cgroup path, if it is what lambdalet creates (…/lambdalet-<pid>/<env id>)."""
    path = os.path.normpath(record.cgroup) if record.cgroup else ""
    if not path.startswith(_CGROUP_ROOT) or os.path.basename(path) != record.env_id:
        return None
    if not _CGROUP_BASE.fullmatch(os.path.basename(os.path.dirname(path))):
        return None
    return path


def _orphaned(base: str) -> bool:
    """Whether cgroup base (lambdalet-<pid>) is no live server's: every environment cgroup in it is a leftover.
    (Its pid may since be another server's, on another data dir: then only recorded cgroups are ended.)"""
    pid = int(os.path.basename(base).removeprefix("lambdalet-"))
    return pid == os.getpid() or read_proc(pid) is None


def _cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(pid) for pid in f.read().split()]
    except (OSError, ValueError):
        return []


def _remove_cgroups(paths: Iterable[str]) -> None:
    """rmdir emptied cgroups (the kernel may take a moment to see their last process go): 1 s at most."""
    left = set(paths)
    deadline = time.monotonic() + 1.0
    while left:
        for path in list(left):
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                continue
            left.discard(path)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for path in left:
        log.warning("cannot remove cgroup %s", path)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


# ---------------------------------------------------------------- the watcher
def watch(data_dir: str, run_dir: str, fd: int) -> int:
    """The watcher's life: wait until the server is gone (fd, a pipe only it writes, reaches its end),
    then end what the server's run still records."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the server: the server handles it
    while True:
        try:
            if not os.read(fd, 64):
                break
        except OSError:
            break
    killed = sweep_run(data_dir, run_dir)
    if killed:
        print(f"lambdalet: the server on {data_dir} is gone; ended the {killed} processes of its environments",
              file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "watch":
        sys.exit(watch(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(f"usage: {sys.argv[0]} watch DATA_DIR RUN_DIR FD")
