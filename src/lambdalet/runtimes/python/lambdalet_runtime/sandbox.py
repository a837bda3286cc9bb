"""The sandbox of one execution environment, built by the fork server (Linux: as root, or in a user
namespace of lambdalet's that gives it the capabilities needed here, environment/userns.py).

The fork server clones PID 1 of a new PID, mount, UTS and IPC namespace (a raw clone: one process,
no exec). PID 1 builds Lambda's filesystem in a tmpfs of its own (``/var/task``, ``/opt``,
``/var/runtime`` and the host's system directories read-only, a private ``/tmp`` of the function's
size, a fresh ``/proc``, a minimal ``/dev``), moves into it, becomes ``/var/runtime/init`` (cmdline
and comm), forks the runtime and reaps every process of the environment until the runtime exits:
then it exits, and the kernel ends whatever is left in the namespace. The runtime drops to the
environment's own uid/gid (without root: joins the environment's own user namespace instead, as uid 993,
and drops every capability) with Lambda's limits, then either execs the bootstrap or (a forked Python
runtime) returns into the already-imported runtime. What does not depend on the function (prepare())
is done ahead of time by a spare PID 1 that waits for the next cold start, which then only finish()es.

PID 1 tells lambdalet through the status pipe, one line each: ``R`` (the runtime runs), ``E<errno>``
(its exec failed), ``S<wait status>`` (it exited). PID 1 keeps the Runtime API's listening socket, when
given one, so that it is PID 1 that serves port 9001 as on Lambda.
"""

from __future__ import annotations

import _signal
import ctypes
import os
import platform
import resource

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
_SIGCHLD = 17
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME, PR_SET_MM, PR_SET_NO_NEW_PRIVS = 1, 4, 15, 35, 38
PR_SET_MM_MAP = 14
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
# SECBIT_NOROOT, SECBIT_NO_SETUID_FIXUP, SECBIT_NO_CAP_AMBIENT_RAISE (+ their locks), SECBIT_KEEP_CAPS_LOCKED
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CLONE = {"x86_64": 56, "aarch64": 220}.get(platform.machine())
INIT_ARGV = ("/var/runtime/init", "--enable-extensions", "--logs-egress-api", "fluxpump", "--disable-tracing")
NEW_ROOT = "/root"  # (a directory of the tmpfs, not its top: see finish())
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MAX_PROCESSES = 1024  # Lambda's processes/threads limit
MAX_FILES = 1024  # and open files

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p)
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
_libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
_libc.syscall.restype = ctypes.c_long
_libc.sbrk.restype = ctypes.c_void_p
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_layout: list[int] = []


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _enc(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = _enc
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def clone_init() -> int:
    """Fork into PID 1 of new namespaces: the child's pid here, 0 in the child (like os.fork())."""
    if _CLONE is None:
        raise OSError(38, f"no clone syscall known for {platform.machine()}")
    flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | _SIGCHLD
    return _check(_libc.syscall(_CLONE, ctypes.c_long(flags), ctypes.c_long(0), ctypes.c_long(0),
                                ctypes.c_long(0), ctypes.c_long(0)), "clone")


def _bind(source: str, target: str, *, read_only: bool = True, device: bool = False) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | (0 if device else MS_NODEV)
        _mount(None, target, None, flags)


def _mkdirs(root: str, path: str) -> str:
    target = root + path
    os.makedirs(target, exist_ok=True)
    return target


def prepare(generic: dict) -> None:
    """What any environment of this fork server gets, done by PID 1 before it knows its function (a spare
    made ahead of the next cold start): a tmpfs root on generic["root"] with the host's system
    directories and shared binds (interpreters, site-packages) read-only, a fresh /proc, a minimal /dev,
    and the look of Lambda's init."""
    _libc.prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)
    os.setsid()  # its pid (as lambdalet sees it) leads the environment's process group
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host
    _mount("tmpfs", generic["root"], "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,nr_inodes=512,mode=755")
    root = _mkdirs(generic["root"], NEW_ROOT)
    for path in generic["system"]:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        else:
            _bind(path, _mkdirs(root, path))
    for source, target in generic["binds"]:
        _bind(source, _mkdirs(root, target))
    for path in ("/var/task", "/opt", "/var/runtime", "/tmp"):
        _mkdirs(root, path)
    _mount("proc", _mkdirs(root, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    dev = _mkdirs(root, "/dev")
    for name in DEVICES:
        os.close(os.open(f"{dev}/{name}", os.O_CREAT | os.O_WRONLY, 0o666))
        _bind(f"/dev/{name}", f"{dev}/{name}", read_only=False, device=True)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    set_cmdline(INIT_ARGV, "init")


def finish(config: dict) -> None:
    """The function's part, then into the new root: its memory cgroup, /var/task, /opt, /var/runtime, a
    /tmp of its size, its hostname."""
    tasks = config.get("cgroup")
    if tasks:
        with open(tasks, "w") as f:
            f.write("0")
    mount = config["generic"]["root"]
    root = mount + NEW_ROOT
    for source, target in config["binds"]:
        _bind(source, _mkdirs(root, target))
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={config['tmp_mb']}m,mode=700,uid={config['uid']},gid={config['gid']}")
    # Into the new root: its tmpfs moved over "/", then chroot'ed into a directory of it, where pivot_root
    # would also need the old root unmounted (MNT_DETACH waits for an RCU grace period: 2-5 ms a cold
    # start). What it shadows is out of reach: mountinfo hides it, and a process whose root is not its
    # mount namespace's may neither chroot again without CAP_SYS_CHROOT nor create a user namespace
    # (which would give it that capability): the kernel refuses both.
    os.chdir(mount)
    _mount(mount, "/", None, MS_MOVE)
    _mount(None, ".", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(NEW_ROOT.lstrip("/"))
    os.chdir("/")
    hostname = os.fsencode(config["hostname"])
    _libc.sethostname(hostname, len(hostname))


def _drop_capabilities() -> None:
    """No capability left, now or after an exec, even of a uid 0 (securebits: root is not special)."""
    _libc.prctl(PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            break  # (EINVAL past the kernel's last capability)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(_libc.capset(header, data), "capset")


class _MmMap(ctypes.Structure):
    """struct prctl_mm_map (linux/prctl.h)."""

    _fields_ = [*((name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end", "auxv")), ("auxv_size", ctypes.c_uint32),
        ("exe_fd", ctypes.c_uint32)]


def set_cmdline(argv: list[str] | tuple[str, ...], comm: str | None = None) -> None:
    """Make /proc/self/cmdline show argv (NUL-separated) and, if given, comm.

    PR_SET_MM_MAP points the kernel's idea of this process's argv at a buffer of ours: it needs no
    CAP_SYS_RESOURCE (which PR_SET_MM_ARG_* need, and containers often drop)."""
    text = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
    if not _layout:  # (a forked child has its parent's layout: read once)
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().rsplit(b")", 1)[1].split()
        # start_code, end_code, start_data, end_data, start_brk, start_stack, env_start, env_end (proc(5))
        _layout.extend(int(stat[number - 3]) for number in (26, 27, 45, 46, 47, 28, 50, 51))
    code, end_code, data, end_data, start_brk, stack, env, end_env = _layout
    # The kernel reads /proc/<pid>/cmdline from this memory for the process's whole life: malloc'd and
    # never freed (a Python buffer would be freed with this module, which a forked runtime drops).
    start = _libc.malloc(len(text))
    if not start:
        raise OSError(12, "cannot allocate the cmdline")
    ctypes.memmove(start, text, len(text))
    mm = _MmMap(code, end_code, data, end_data, start_brk, _libc.sbrk(0), stack,
                start, start + len(text), env, end_env, 0, 0, 0xFFFFFFFF)
    _check(_libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(mm), ctypes.sizeof(mm), 0), "prctl PR_SET_MM_MAP")
    if comm is not None:
        name = ctypes.create_string_buffer(os.fsencode(comm)[:15])
        _libc.prctl(PR_SET_NAME, ctypes.addressof(name), 0, 0, 0)


def run_init(config: dict, runtime_pid: int, status_fd: int, exec_error_fd: int | None) -> None:
    """PID 1 after the runtime's fork: become the environment's user too (so that, as on Lambda, the
    function can read PID 1's /proc entries), report the runtime's start, reap everything, and exit
    when the runtime exits."""
    _signal.signal(_signal.SIGTERM, _signal.SIG_IGN)  # (the process group's SIGTERM is for the runtime)
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    _become_user(config)
    _libc.prctl(PR_SET_PDEATHSIG, _signal.SIGKILL, 0, 0, 0)  # (a change of credentials cleared it)
    if exec_error_fd is not None:
        error = b""
        while chunk := os.read(exec_error_fd, 64):
            error += chunk
        os.close(exec_error_fd)
        os.write(status_fd, b"E" + error + b"\n" if error else b"R\n")
    else:
        os.write(status_fd, b"R\n")
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == runtime_pid:
            os.write(status_fd, b"S%d\n" % status)
            os._exit(0)


def set_limits() -> None:
    """Lambda's limits, in PID 1 for its runtime to inherit (root is not held to RLIMIT_NPROC); without root,
    in the runtime once in its own user namespace (drop_privileges()): the kernel counts a user namespace's
    processes in its parents' too, so PID 1, in the one all environments share, must not be held to 1,024."""
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_FILES, MAX_FILES))


def drop_privileges(config: dict, userns_fd: int | None = None) -> None:
    """In the runtime: the environment's own uid/gid (or its own user namespace, userns_fd), no way back
    to more privileges."""
    if userns_fd is not None:
        _check(_libc.setns(userns_fd, CLONE_NEWUSER), "setns(user namespace)")
        os.close(userns_fd)
        config["joined"] = True
    if config.get("userns"):
        set_limits()
    _become_user(config)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _become_user(config: dict) -> None:
    if config.get("userns"):  # (PID 1 too: capabilities only; the runtime, in its own user namespace, 993)
        if config.get("joined"):
            uid, gid = config["inside"]
            if config["uid"]:  # (an id of its own: mapped by lambdalet, so supplementary groups may go)
                os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        _drop_capabilities()
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        return
    os.setgroups([])
    os.setresgid(config["gid"], config["gid"], config["gid"])
    os.setresuid(config["uid"], config["uid"], config["uid"])
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # (setuid cleared it: /proc/<pid> would stay root's)
