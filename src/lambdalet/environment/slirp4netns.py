"""slirp4netns (Debian's package of that name; optional, detected): a user-mode TCP/IP stack that gives a
network namespace outbound access where no veth pair can route beyond the host (without root, or a root
whose host does not forward).

It gives the namespace a `tap0` (10.0.2.100/24, default route via 10.0.2.2, a DNS forwarder at 10.0.2.3)
and makes the function's connections as ordinary sockets of the host: functions reach the host's
non-loopback addresses and beyond, as on Lambda; the host's loopback stays out of reach
(--disable-host-loopback). It parses whatever a hostile function sends, so it runs sandboxed
(--enable-sandbox: an empty root, no capabilities; --enable-seccomp), which needs it to be root of its
user namespace: without root it is started by the user-namespace maker (environment/userns_maker.py, which
imports this file by path: standard library only). One process per namespace, started ahead with it
(~4 ms), ending when the write end of its --exit-fd pipe closes: with its namespace, and with a server
killed by kill -9 (only the server holds it).
"""

from __future__ import annotations

import os
import select
import subprocess

READY_TIMEOUT_S = 5.0
MTU = 65520  # (its maximum but one: larger segments, fewer copies)


def attach(executable: str, netns_fd: int, userns_fd: int | None = None) -> int:
    """Start slirp4netns for the namespace netns_fd (owned by userns_fd, if not the caller's) and wait until
    tap0 is up (blocking); the write end of its exit pipe. OSError if it does not come up."""
    exit_r, exit_w = os.pipe()
    ready_r, ready_w = os.pipe()
    owner = [f"--userns-path=/proc/self/fd/{userns_fd}"] if userns_fd is not None else []
    argv = [executable, "--configure", f"--mtu={MTU}", "--disable-host-loopback", "--enable-sandbox",
            "--enable-seccomp", *owner, "--netns-type=path", f"--exit-fd={exit_r}", f"--ready-fd={ready_w}",
            f"/proc/self/fd/{netns_fd}", "tap0"]
    keep = (netns_fd, exit_r, ready_w) + ((userns_fd,) if userns_fd is not None else ())
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=keep, start_new_session=True)
    except OSError:
        os.close(exit_w)
        raise
    finally:
        os.close(exit_r)
        os.close(ready_w)
    assert proc.stderr is not None
    try:
        ready, _, _ = select.select([ready_r], [], [], READY_TIMEOUT_S)
        up = bool(ready) and os.read(ready_r, 1) == b"1"
    finally:
        os.close(ready_r)
    if not up:
        os.close(exit_w)
        proc.kill()
        lines = proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        proc.stderr.close()
        raise OSError(f"slirp4netns did not come up: {'; '.join(lines) or 'no answer'}")
    proc.stderr.close()
    return exit_w
