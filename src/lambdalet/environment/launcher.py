"""The launcher seam: every runtime process an environment starts goes through one Launcher.

A tier is one implementation:
- PlainLauncher ("none"): processes of the server's own user, as lambdalet always ran them: exec'd, or
  forked by a Python fork server (environment/fork_servers.py).
- SandboxLauncher ("sandbox"): each environment in new PID, mount, UTS and IPC namespaces with Lambda's
  filesystem and Lambda's limits (runtimes/python/lambdalet_runtime/sandbox.py). PID 1 and a forked
  Python runtime both come from an already-imported fork server, so that the sandbox costs a clone, a
  few mounts and a fork rather than an interpreter's start. As root, each environment runs as a uid/gid
  of its own (a UidPool); without root, in a user namespace of its own (environment/userns.py), as
  Lambda's uid 993 inside and the server's uid outside.

configure() picks the tier once at start-up (`lambdalet serve --isolation`); current() is it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from lambdalet.environment import fork_servers, namespaces
from lambdalet.environment.managed import LaunchSpec, RuntimeContext, python
from lambdalet.environment.netns import NetNamespace
from lambdalet.environment.process import BootstrapProcess, SandboxedProcess
from lambdalet.environment.sandbox import CGROUP_JOIN_ENV, MemoryCgroup
from lambdalet.environment.spec import RUNTIMES_DIR, FunctionSpec
from lambdalet.environment.userns import BASE_UID, SANDBOX_GID, SANDBOX_UID, USER_NAMESPACES

TASK_ROOT, OPT, RUNTIME_DIR, TMP = "/var/task", "/opt", "/var/runtime", "/tmp"
LAMBDA_PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LAMBDA_LIBRARY_PATH = "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEFAULT_UIDS = (200000, 265535)
SITE_PACKAGES = "/var/lang/lib/site-packages"
STAGING_ROOT = os.path.join(tempfile.gettempdir(), "lambdalet-sandbox-root")


class IsolationUnavailable(RuntimeError):
    """--isolation strict on a host that cannot sandbox."""


@dataclass
class SpawnRequest:
    """One runtime process to start, as the environment knows it (host paths)."""

    spec: FunctionSpec
    argv: list[str]
    executable: str | None  # what to exec, when not argv[0] (a `#!/bin/sh` bootstrap runs with bash)
    env: dict[str, str]
    emit: Callable[[str], None]
    launch: LaunchSpec | None  # a managed runtime's, None for a provided runtime's bootstrap
    cgroup: MemoryCgroup | None
    tmp_dir: str  # the environment's own directory on the host
    listen_fd: int | None = None  # the Runtime API's listening socket, held by PID 1 in a sandbox
    netns: NetNamespace | None = None  # the environment's network namespace, which the process joins


@dataclass
class Spawned:
    process: BootstrapProcess
    cgroup_joined: bool  # the process moved itself into request.cgroup (no need to move it from outside)


class Launcher:
    """Starts an environment's runtime process; one subclass per isolation tier."""

    async def spawn(self, request: SpawnRequest) -> Spawned:
        """Start the process; raises OSError when it cannot be started (fork/exec)."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Ready what every spawn shares (at server start-up)."""


class PlainLauncher(Launcher):
    """Processes of the server's user, with the host's paths (tier "none")."""

    async def spawn(self, request: SpawnRequest) -> Spawned:
        launch, env = request.launch, request.env
        join_path = request.cgroup.self_join_path if request.cgroup is not None else None
        delegated = bool(launch is not None and launch.joins_cgroup and join_path)
        if delegated:
            env[CGROUP_JOIN_ENV] = join_path  # type: ignore[assignment]
        telemetry = launch is not None and launch.telemetry_fd
        netns = request.netns
        proc = None
        if launch is not None and launch.fork_server:
            proc = await fork_servers.fork_process(launch.fork_server, request.argv, cwd=request.spec.task_root,
                                                   env=env, emit=request.emit, telemetry_fd=telemetry,
                                                   netns_fd=netns.fd if netns is not None else None)
        if proc is None:
            with netns.entered() if netns is not None else contextlib.nullcontext():
                proc = BootstrapProcess.spawn(request.argv, executable=request.executable,
                                              cwd=request.spec.task_root, env=env, emit=request.emit,
                                              telemetry_fd=telemetry)
        return Spawned(proc, delegated)


class UidPool:
    """The environments' own uids (gid = uid), lowest free first."""

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last
        self._next = first
        self._free: list[int] = []
        self._used: set[int] = set()

    def acquire(self) -> int:
        if self._free:
            uid = min(self._free)
            self._free.remove(uid)
        elif self._next <= self.last:
            uid, self._next = self._next, self._next + 1
        else:
            raise OSError(11, f"all {self.last - self.first + 1} sandbox uids are in use")
        self._used.add(uid)
        return uid

    def release(self, uid: int) -> None:
        if uid in self._used:
            self._used.discard(uid)
            self._free.append(uid)


class SandboxLauncher(Launcher):
    """Each environment in a sandbox of its own (tier "sandbox"): as a uid of `uids` (root), or, with
    uids None, in a user namespace of its own as SANDBOX_UID (no root: environment/userns.py)."""

    def __init__(self, uids: UidPool | None) -> None:
        self.uids = uids
        self._hosts = itertools.count(1)
        self.system = [p for p in SYSTEM_DIRS if os.path.lexists(p)]
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        # The zygote: the fork server of lambdalet's own Python, which also forks that version's runtimes.
        zygote = python.launch_spec(RuntimeContext(runtime=version, task_root="/", handler="", user_env={},
                                                   interpreters={}))
        assert zygote.fork_server is not None
        self.zygote = zygote.fork_server
        self.zygote_env = {"LANG": "en_US.UTF-8", "PATH": os.environ.get("PATH", os.defpath)}
        self._shared: dict | None = None
        self._site_moves: list[list[str]] = []

    async def prepare(self) -> None:
        await fork_servers.started_server(self.zygote, self.zygote_env)

    async def spawn(self, request: SpawnRequest) -> Spawned:
        spec, launch = request.spec, request.launch
        moves = self._moves(request)
        env = {k: _moved(v, moves) for k, v in request.env.items()}
        env.update({"LAMBDA_TASK_ROOT": TASK_ROOT, "LAMBDA_RUNTIME_DIR": RUNTIME_DIR, "PWD": TASK_ROOT})
        if "PATH" not in spec.variables:
            env["PATH"] = LAMBDA_PATH
        if "LD_LIBRARY_PATH" not in spec.variables:
            env["LD_LIBRARY_PATH"] = LAMBDA_LIBRARY_PATH
        argv = [_moved(a, moves) for a in request.argv]
        telemetry = launch is not None and launch.telemetry_fd
        netns = request.netns
        netns_fd = netns.fd if netns is not None else None
        userns_fd = netns.userns_fd if netns is not None and self.uids is None else None
        # (without root: the id of lambdalet's user namespace that is 993 in the environment's own)
        uid = self.uids.acquire() if self.uids is not None else netns.userns_id if netns is not None else BASE_UID
        config = self._config(request, moves, uid)
        os.makedirs(STAGING_ROOT, exist_ok=True)  # (PID 1 mounts its root here, in its own mount namespace)

        def release() -> None:
            if self.uids is not None:
                self.uids.release(uid)

        try:
            server = None
            if launch is not None and launch.fork_server and fork_servers.enabled():
                server = fork_servers.ready_server(launch.fork_server, env)
            if server is not None:  # a forked runtime: PID 1 forks it from the already-imported runtime
                config["path_map"] = moves
                sandboxing = fork_servers.Sandboxing(config, None, request.listen_fd, release, userns_fd)
                prefix = len(launch.fork_server) - 1  # type: ignore[union-attr]
                proc = await server.fork(argv, argv[prefix:], cwd=TASK_ROOT, env=env, emit=request.emit,
                                         telemetry_fd=telemetry, sandbox=sandboxing, netns_fd=netns_fd)
                return Spawned(proc, request.cgroup is not None)
            zygote = await fork_servers.started_server(self.zygote, self.zygote_env)
            if zygote is None:
                raise OSError(11, "the sandbox's fork server is not available")
            exe = _moved(request.executable, moves) if request.executable else argv[0]
            sandboxing = fork_servers.Sandboxing(config, exe, request.listen_fd, release, userns_fd)
            proc = await zygote.fork(argv, [], cwd=TASK_ROOT, env=env, emit=request.emit, telemetry_fd=telemetry,
                                     sandbox=sandboxing, netns_fd=netns_fd)
        except BaseException:
            release()
            raise
        assert isinstance(proc, SandboxedProcess)
        errno = await proc.started
        if errno:
            proc.kill_now()
            raise OSError(errno, os.strerror(errno), argv[0])
        return Spawned(proc, request.cgroup is not None)

    def _moves(self, request: SpawnRequest) -> list[list[str]]:
        """Host path -> path inside the sandbox."""
        spec = request.spec
        self._generic()
        moves = [[spec.task_root, TASK_ROOT], [spec.opt_dir, OPT], [request.tmp_dir, TMP], *self._site_moves]
        runtime_dir = spec.runtime_dir()
        if runtime_dir.startswith(RUNTIMES_DIR + os.sep):
            moves.append([runtime_dir, RUNTIME_DIR])
        return moves

    def _config(self, request: SpawnRequest, moves: list[list[str]], uid: int) -> dict:
        """What PID 1 builds (read by runtimes/python/lambdalet_runtime/sandbox.py): "generic" is the same
        for every environment, so that a spare PID 1 prepares it ahead of time."""
        spec = request.spec
        generic = self._generic()
        binds = [[host, inside] for host, inside in moves
                 if inside in (TASK_ROOT, OPT, RUNTIME_DIR) and os.path.isdir(host)]
        if request.launch is not None:  # (another interpreter than lambdalet's own)
            root = _install_root(request.launch.argv[0])
            if not _under(root, self.system) and not any(_under(root, [b[0]]) for b in generic["binds"]):
                binds.append([root, root])
        cgroup = request.cgroup
        host = uid if self.uids is not None else next(self._hosts)
        return {
            "generic": generic, "binds": binds, "tmp_mb": spec.ephemeral_mb, "uid": uid,
            "gid": uid, "userns": self.uids is None,
            "inside": [SANDBOX_UID, SANDBOX_GID],
            "cgroup": cgroup.own_join_path if cgroup is not None else None,
            "hostname": f"169.254.{(host >> 8) & 255}.{host & 255}",
        }

    def _generic(self) -> dict:
        """The host's system directories, lambdalet's Python (for `#!python3` bootstraps and the fork
        servers) and its site-packages (boto3, at /var/lang/lib/site-packages as on Lambda), on an empty
        directory to build the root on."""
        if self._shared is None:
            shared = [[root, root] for root in [_install_root(sys.executable)] if not _under(root, self.system)]
            for i, path in enumerate(python.host_site_packages()):
                if not _under(path, self.system) and not any(_under(path, [b[0]]) for b in shared):
                    shared.append([path, SITE_PACKAGES + (f"-{i + 1}" if i else "")])
            self._shared = {"root": STAGING_ROOT, "system": self.system, "binds": shared}
            self._site_moves = [b for b in shared if b[1].startswith(SITE_PACKAGES)]
        return self._shared


def _under(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


@functools.lru_cache(maxsize=64)  # (a realpath walk is ~40 µs of every cold start's event-loop time)
def _install_root(executable: str) -> str:
    """Where an interpreter is installed: /x/y for /x/y/bin/python3.11."""
    real = os.path.realpath(executable)
    parent = os.path.dirname(real)
    return os.path.dirname(parent) if os.path.basename(parent) == "bin" else parent


def _moved(value: str, moves: list[list[str]]) -> str:
    """value with each host path (alone, or one entry of a PATH-like list) moved to the sandbox's."""
    if "/" not in value:
        return value
    parts = value.split(":")
    for i, part in enumerate(parts):
        for host, inside in moves:
            if part == host or part.startswith(host + "/"):
                parts[i] = inside + part[len(host):]
                break
    return ":".join(parts)


_current: Launcher = PlainLauncher()


def configure(isolation: str, uids: tuple[int, int] = DEFAULT_UIDS) -> str:
    """Pick the tier for `--isolation` (auto, strict, none) and return the start-up line that says so;
    raises IsolationUnavailable for strict where the host cannot sandbox."""
    global _current
    USER_NAMESPACES.close()
    fork_servers.join_user_namespace(None)
    if isolation == "none":
        _current = PlainLauncher()
        return "isolation none (--isolation none): functions run as the server's user and see its files"
    tier, missing = namespaces.sandbox_tier()
    if tier == namespaces.ROOT:
        _current = SandboxLauncher(UidPool(*uids))
        return (f"isolation sandbox: PID, mount, UTS and IPC namespaces per environment, uids {uids[0]}-{uids[1]}, "
                "1024 processes and open files")
    if tier == namespaces.USERNS:
        fork_servers.join_user_namespace(USER_NAMESPACES.join_fd())
        _current = SandboxLauncher(None)
        outside = (f"a subordinate uid of its own outside, of {USER_NAMESPACES.own_ids}" if USER_NAMESPACES.own_ids
                   else "the server's uid outside")
        return (f"isolation sandbox without root: user, PID, mount, UTS and IPC namespaces per environment, uid "
                f"{SANDBOX_UID} inside ({outside}), 1024 processes and open files")
    if isolation == "strict":
        raise IsolationUnavailable(f"--isolation strict: no sandbox on this host ({missing})")
    _current = PlainLauncher()
    return (f"isolation off ({missing}): no sandbox, no PID namespace, no uid of their own and no process or "
            "file limits: functions run as the server's user and see its files, /tmp and processes")


def current() -> Launcher:
    return _current
