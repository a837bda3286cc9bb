"""A `lambdalet serve` killed with kill -9 leaves nothing running: not for long, and not past the next start.

Environments are ended by the server's watcher once the server is gone, and whatever is still there
(the watcher killed too) by the next `lambdalet serve` on the same data dir, which also removes their
temp dirs; queued Event invocations still run after the restart. One server per data dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import REPO, Server, create_function, free_port, log_messages, make_zip, start_server, stop_server

# A bootstrap with a daemon that leaves its session (setsid) and a child that stays in its group.
DAEMONS = r"""#!/bin/bash
setsid sleep 1000 &
sleep 1001 &
CHILD=$!
H=$(mktemp)
while true; do
  curl -sS -D "$H" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{\"pids\": [$$, $CHILD]}"
done
"""

# Prints each event, for counting the queued Event invocations that ran.
PRINT_EVENTS = r"""#!/bin/bash
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "EVENT $EVENT"
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" -d '{}'
done
"""

# A Python function (forked from the fork server) that starts a daemon of its own once.
PYTHON_DAEMON = """
import os, subprocess
DAEMON = None
def handler(event, context):
    global DAEMON
    if DAEMON is None:
        DAEMON = subprocess.Popen(["setsid", "sleep", "1002"])
    return {"pid": os.getpid(), "ppid": os.getppid(), "daemon": DAEMON.pid}
"""

# Busy in its handler when the server dies: only PR_SET_PDEATHSIG ends it before the next start.
BUSY = """
import os, time
def handler(event, context):
    print("busy", os.getpid(), os.getppid(), flush=True)
    time.sleep(60)
"""

QUEUED = 50
# What this file tests is the plain tier's guarantee (records, the watcher, the start-up sweep): in the
# sandbox every process of an environment ends with its PID 1 (tests/integration/test_isolation.py).
PLAIN = ("--isolation", "none")


def start_time(pid: int) -> int | None:
    """The start time of a live process (a zombie counts as gone), None when there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == b"Z" else int(fields[19])


def marked(data: Path) -> dict[int, int]:
    """Live processes started for environments of data dir `data` (by their LAMBDA_TASK_ROOT): pid -> start."""
    needle = f"LAMBDA_TASK_ROOT={data}/code/".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        start = start_time(int(entry))
        if start is not None and any(e.startswith(needle) for e in environ):
            found[int(entry)] = start
    return found


def children(parent: int, word: bytes) -> list[int]:
    """Pids of parent's children whose command line has `word`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == parent and word in cmd:
            found.append(int(entry))
    return found


def sleeping(pid: int) -> bool:
    """Whether pid runs `sleep` (the daemons here; the bootstraps' curls and greps come and go)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().startswith(b"sleep\0")
    except OSError:
        return False


def still_running(pids: dict[int, int]) -> dict[int, int]:
    """Those of pids (pid -> start time) that still run as the same process."""
    return {pid: start for pid, start in pids.items() if start_time(pid) == start}


def wait_until(condition, timeout: float, message) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(message())
        time.sleep(0.05)


def invoke(server: Server, name: str) -> dict:
    return json.loads(server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())


def deploy_forked_python(server: Server) -> dict:
    """A python3.11 function whose environment is forked from the fork server; its handler's answer."""
    create_function(server, "py-warm", make_zip({"app.py": PYTHON_DAEMON}), runtime="python3.11",
                    handler="app.handler")
    invoke(server, "py-warm")  # exec'd, and starts the fork server
    wait_until(lambda: children(server.process.pid, b"--fork-server"), 15, lambda: "no fork server")
    time.sleep(0.3)  # its imports
    for attempt in range(10):
        name = f"py-forked-{attempt}"
        create_function(server, name, make_zip({"app.py": PYTHON_DAEMON}), runtime="python3.11",
                        handler="app.handler")
        body = invoke(server, name)
        if body["ppid"] in children(server.process.pid, b"--fork-server"):
            return body
        time.sleep(0.2)
    raise AssertionError("the python function was never forked from the fork server")


def run_everything(server: Server) -> tuple[dict[int, int], dict[int, int]]:
    """Environments of both kinds, with daemons, and QUEUED Event invocations waiting (throttled).
    Returns the processes of the environments (pid -> start) and the fork servers."""
    create_function(server, "daemons", make_zip({"bootstrap": DAEMONS}))
    bootstrap, child = invoke(server, "daemons")["pids"]
    python = deploy_forked_python(server)
    procs = marked(server.data_dir)
    assert {bootstrap, child, python["daemon"]} <= set(procs)
    assert len(procs) >= 4  # and the setsid daemon of the bootstrap
    procs[python["pid"]] = start_time(python["pid"])  # forked: its environ is the fork server's
    forks = {pid: start_time(pid) for pid in children(server.process.pid, b"--fork-server")}
    assert forks

    create_function(server, "queued", make_zip({"bootstrap": PRINT_EVENTS}))
    server.lambda_client.put_function_concurrency(FunctionName="queued", ReservedConcurrentExecutions=0)
    for n in range(QUEUED):
        assert server.lambda_client.invoke(FunctionName="queued", InvocationType="Event",
                                           Payload=json.dumps({"n": n}).encode())["StatusCode"] == 202
    return procs, forks


def environment_dirs(data: Path) -> set[str]:
    return set(os.listdir(data / "tmp"))


def check_restart(data: Path, procs: dict[int, int], old_dirs: set[str]) -> None:
    """Restart on data: nothing of the old run is left, and the queued invocations all run."""
    srv = start_server(data, *PLAIN)
    try:
        assert not still_running(procs)
        assert not marked(data), "processes of the previous run's environments still run"
        assert not old_dirs & environment_dirs(data), "the previous run's environment temp dirs are still there"
        srv.lambda_client.put_function_concurrency(FunctionName="queued", ReservedConcurrentExecutions=10)

        def ran() -> set[str]:
            return {m for m in log_messages(srv, "queued") if m.startswith("EVENT ")}

        wait_until(lambda: len(ran()) >= QUEUED, 60, lambda: f"only {len(ran())} of {QUEUED} queued invocations ran")
        assert ran() == {f'EVENT {{"n": {n}}}' for n in range(QUEUED)}
    finally:
        assert stop_server(srv) == 0
    wait_until(lambda: not marked(data), 5, lambda: f"left running after SIGTERM: {marked(data)}")


def test_kill_9_ends_the_environments_and_a_restart_finds_nothing_left(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = start_server(data, *PLAIN)
    try:
        procs, forks = run_everything(srv)
        old_dirs = environment_dirs(data)
        assert len(old_dirs) >= 3  # daemons, py-warm, py-forked-N, and not queued (throttled)
    finally:
        srv.process.kill()
        srv.process.wait()
    # The fork servers and forked runtimes die with their parent, the rest by the server's watcher.
    wait_until(lambda: not still_running(forks) and not still_running(procs) and not marked(data), 10,
               lambda: f"still running after kill -9: {still_running({**forks, **procs})} {marked(data)}")
    wait_until(lambda: "ended the" in srv.server_log(), 5, lambda: "the watcher said nothing")
    check_restart(data, procs, old_dirs)


def test_a_restart_ends_what_a_killed_server_left_running(tmp_path: Path) -> None:
    """Without the watcher (killed first), the next start on the data dir is what ends the leftovers;
    the fork servers and the runtimes forked from them die with the server all the same."""
    data = tmp_path / "data"
    srv = start_server(data, *PLAIN)
    try:
        procs, forks = run_everything(srv)
        busy = start_busy_forked_invoke(srv)
        old_dirs = environment_dirs(data)
        for watcher in children(srv.process.pid, b"leftovers.py"):
            os.kill(watcher, signal.SIGKILL)
    finally:
        srv.process.kill()
        srv.process.wait()
    wait_until(lambda: not still_running({**forks, **busy}), 5,
               lambda: f"outlived the server: {still_running({**forks, **busy})}")
    time.sleep(0.5)
    assert len(marked(data)) >= 3, "the daemons were expected to outlive the server and its watcher"
    check_restart(data, procs, old_dirs)


def start_busy_forked_invoke(server: Server) -> dict[int, int]:
    """A forked python runtime in the middle of a long invoke (so it does not see the server go): pid -> start."""
    create_function(server, "py-busy", make_zip({"app.py": BUSY}), runtime="python3.11", handler="app.handler",
                    timeout=60)
    client = server.client("lambda", read_timeout=90)

    def call() -> None:
        with contextlib.suppress(Exception):  # the server is killed under it
            client.invoke(FunctionName="py-busy", Payload=b"{}")

    threading.Thread(target=call, daemon=True).start()
    wait_until(lambda: any(m.startswith("busy ") for m in log_messages(server, "py-busy")), 20,
               lambda: "the busy invoke never started")
    line = next(m for m in log_messages(server, "py-busy") if m.startswith("busy "))
    pid, ppid = (int(x) for x in line.split()[1:])
    assert ppid in children(server.process.pid, b"--fork-server")
    return {pid: start_time(pid)}


def test_one_server_per_data_dir_and_other_data_dirs_are_left_alone(tmp_path: Path) -> None:
    first = start_server(tmp_path / "one", *PLAIN)
    try:
        create_function(first, "daemons", make_zip({"bootstrap": DAEMONS}))
        pids = invoke(first, "daemons")["pids"]
        procs = {pid: start for pid, start in marked(first.data_dir).items() if pid in pids or sleeping(pid)}
        assert set(pids) < set(procs)  # and the setsid daemon

        second = subprocess.Popen(
            [sys.executable, "-m", "lambdalet.cli", "serve", "--port", str(free_port()),
             "--data-dir", str(first.data_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO))
        try:
            out, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.communicate()
            raise AssertionError("a second server started on a data dir in use") from None
        assert second.returncode == 1
        text = err.decode()
        assert f"data dir {first.data_dir} is in use by another lambdalet server (pid {first.process.pid})" in text
        assert "Traceback" not in text and not out

        other = start_server(tmp_path / "two", *PLAIN)  # another data dir: its start-up sweep leaves ours alone
        try:
            create_function(other, "daemons", make_zip({"bootstrap": DAEMONS}))
            invoke(other, "daemons")
        finally:
            assert stop_server(other) == 0
        assert still_running(procs) == procs
        assert invoke(first, "daemons")["pids"] == pids  # the same warm environment
    finally:
        assert stop_server(first) == 0
    wait_until(lambda: not still_running(procs), 5, lambda: f"left running after SIGTERM: {still_running(procs)}")
