"""Can this host sandbox environments? Asked once, at start-up, by trying what the sandbox does."""

from __future__ import annotations

import ctypes
import os
import sys

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC, _CLONE_NEWPID = 0x00020000, 0x04000000, 0x08000000, 0x20000000
_USERNS_SYSCTL = "/proc/sys/kernel/unprivileged_userns_clone"


def missing() -> str | None:
    """None when the sandbox works here, else what stands in its way (for the start-up line)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return f"the sandbox needs root; {_userns_state()}"
    err = _probe()
    return None if err == 0 else f"creating namespaces failed: {os.strerror(err)}"


def _userns_state() -> str:
    try:
        with open(_USERNS_SYSCTL) as f:
            enabled = f.read().strip() != "0"
    except OSError:
        enabled = os.path.exists("/proc/self/ns/user")
    if enabled:
        return "unprivileged user namespaces are enabled here, but lambdalet does not sandbox with them yet"
    return "unprivileged user namespaces are disabled here"


def _probe() -> int:
    """0 when a child can enter new mount, PID, UTS and IPC namespaces, else the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWUTS | _CLONE_NEWIPC
    pid = os.fork()
    if pid == 0:  # (only a syscall and an exit here: safe after fork in any process)
        os._exit(0 if libc.unshare(flags) == 0 else (ctypes.get_errno() or 1) & 0xFF)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
