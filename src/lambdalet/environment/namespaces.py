"""Can this host sandbox environments, and how? Asked once, at start-up, by trying what the sandbox does."""

from __future__ import annotations

import ctypes
import os
import sys

from lambdalet.environment.userns import USER_NAMESPACES

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC, _CLONE_NEWPID = 0x00020000, 0x04000000, 0x08000000, 0x20000000
ROOT, USERNS = "root", "userns"


def sandbox_tier() -> tuple[str | None, str]:
    """(ROOT, "") with the capabilities of root, (USERNS, "") where an unprivileged user namespace can hold
    the sandbox (USER_NAMESPACES then runs), else (None, what stands in the way, for the start-up line)."""
    if not sys.platform.startswith("linux"):
        return None, f"the sandbox needs Linux namespaces; this is {sys.platform}"
    root_error = ""
    if os.geteuid() == 0:
        err = _probe()
        if err == 0:
            return ROOT, ""
        root_error = f"creating namespaces as root failed: {os.strerror(err)}; "
    reason = USER_NAMESPACES.start()
    if reason is None:
        return USERNS, ""
    return None, f"{root_error}user namespaces: {reason}"


def _probe() -> int:
    """0 when a child can enter new mount, PID, UTS and IPC namespaces, else the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWUTS | _CLONE_NEWIPC
    pid = os.fork()
    if pid == 0:  # (only a syscall and an exit here: safe after fork in any process)
        os._exit(0 if libc.unshare(flags) == 0 else (ctypes.get_errno() or 1) & 0xFF)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
