"""Memory limits for an environment's process tree through cgroups, where this machine allows them.

With a writable cgroup v1 memory hierarchy (root), or a delegated cgroup v2 subtree (systemd user
sessions), each environment gets a memory cgroup limited to the function's MemorySize, so a function
that outgrows it is killed as on Lambda (Runtime.OutOfMemory). Elsewhere there is no limit and the
environment runs as before: everything here degrades to "not available" rather than failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time

log = logging.getLogger("lambdalet.sandbox")

_V1_ROOT = "/sys/fs/cgroup/memory"
_V2_ROOT = "/sys/fs/cgroup"


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class _Hierarchy:
    """Where this server creates environment cgroups, found once."""

    def __init__(self) -> None:
        self.base: str | None = None
        self.v2 = False
        self._probed = False

    def probe(self) -> str | None:
        if self._probed:
            return self.base
        self._probed = True
        name = f"lambdalet-{os.getpid()}"
        if os.path.isdir(_V1_ROOT) and os.access(_V1_ROOT, os.W_OK):
            _remove_stale(_V1_ROOT)
            base = os.path.join(_V1_ROOT, name)
            with contextlib.suppress(OSError):
                os.makedirs(base, exist_ok=True)
                self.base = base
                return base
        own = self._own_v2_cgroup()
        if own is not None:
            parent = os.path.dirname(own)
            base = os.path.join(parent, name)
            try:  # a sibling of our own cgroup, in a subtree delegated to us
                if "memory" not in _read(os.path.join(parent, "cgroup.subtree_control")).split():
                    _write(os.path.join(parent, "cgroup.subtree_control"), "+memory")
                os.makedirs(base, exist_ok=True)
                _write(os.path.join(base, "cgroup.subtree_control"), "+memory")
                self.base, self.v2 = base, True
                return base
            except OSError:
                with contextlib.suppress(OSError):
                    os.rmdir(base)
        log.info("no writable memory cgroup here: function memory limits are not enforced")
        return None

    @staticmethod
    def _own_v2_cgroup() -> str | None:
        try:
            for line in _read("/proc/self/cgroup").splitlines():
                if line.startswith("0::"):
                    path = os.path.join(_V2_ROOT, line[3:].lstrip("/"))
                    if os.path.exists(os.path.join(path, "cgroup.controllers")):
                        return path
        except OSError:
            pass
        return None

    def remove(self) -> None:
        if self.base is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self.base)


def _remove_stale(root: str) -> None:
    """Drop the empty cgroups left by lambdalet servers that died without cleaning up."""
    with contextlib.suppress(OSError):
        for entry in os.listdir(root):
            pid = entry.removeprefix("lambdalet-")
            if pid == entry or not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
                continue
            base = os.path.join(root, entry)
            for child in os.listdir(base):
                if os.path.isdir(os.path.join(base, child)):
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(base, child))
            with contextlib.suppress(OSError):
                os.rmdir(base)


HIERARCHY = _Hierarchy()
CGROUP_JOIN_ENV = "_LAMBDALET_CGROUP_TASKS"  # see LaunchSpec.joins_cgroup


class MemoryCgroup:
    """One environment's memory cgroup."""

    def __init__(self, path: str, v2: bool) -> None:
        self.path = path
        self.v2 = v2
        self._ooms = self.oom_kills()

    @classmethod
    def create(cls, env_id: str, limit_mb: int) -> MemoryCgroup | None:
        base = HIERARCHY.probe()
        if base is None:
            return None
        path = os.path.join(base, env_id)
        try:
            os.makedirs(path, exist_ok=True)
            limit = str(limit_mb * 1024 * 1024)
            if HIERARCHY.v2:
                _write(os.path.join(path, "memory.max"), limit)
                with contextlib.suppress(OSError):
                    _write(os.path.join(path, "memory.swap.max"), "0")
            else:
                _write(os.path.join(path, "memory.limit_in_bytes"), limit)
                with contextlib.suppress(OSError):
                    _write(os.path.join(path, "memory.memsw.limit_in_bytes"), limit)
        except OSError as exc:
            log.debug("memory cgroup for %s unavailable: %s", env_id, exc)
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return None
        return cls(path, HIERARCHY.v2)

    def add(self, pid: int) -> bool:
        """Move process pid in (may wait for an RCU grace period: ~5-10 ms)."""
        try:
            _write(os.path.join(self.path, "cgroup.procs"), str(pid))
            return True
        except OSError:
            return False

    @property
    def self_join_path(self) -> str | None:
        """On cgroup v1, a file a single-threaded process writes "0" to to move itself in: that takes
        ~0.1 ms where add() from outside waits for an RCU grace period. None on v2 (no such fast path)."""
        return None if self.v2 else os.path.join(self.path, "tasks")

    @property
    def own_join_path(self) -> str:
        """A file any process writes "0" to to move itself in: self_join_path on v1, cgroup.procs on v2."""
        return self.self_join_path or os.path.join(self.path, "cgroup.procs")

    def holds(self, pid: int) -> bool:
        try:
            return str(pid) in _read(os.path.join(self.path, "cgroup.procs")).split()
        except OSError:
            return False

    def oom_kills(self) -> int:
        """How many processes the kernel has killed here for want of memory."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            for line in _read(os.path.join(self.path, name)).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def out_of_memory(self) -> bool:
        """True when an OOM kill happened since the last call."""
        count = self.oom_kills()
        killed = count > self._ooms
        self._ooms = count
        return killed

    def destroy(self) -> None:
        """Kill whatever is left in the cgroup (even processes that left the process group), remove it."""
        procs = os.path.join(self.path, "cgroup.procs")
        for _ in range(50):
            try:
                pids = _read(procs).split()
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.01)
        with contextlib.suppress(OSError):
            os.rmdir(self.path)
