"""Python functions forked from a fork server behave as exec'd ones, through `lambdalet serve`."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Server, create_function, log_messages, make_zip, start_server, stop_server, unique_name

PROBE = """
import os, sys
def handler(event, context):
    if event.get("exit") is not None:
        os._exit(event["exit"])
    if event.get("kill"):
        os.kill(os.getpid(), 9)
    return {"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "cwd": os.getcwd(),
            "argv": sys.argv, "path": sys.path, "env": dict(os.environ),
            "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")), "tz": __import__("time").tzname,
            "stdout": sys.stdout.encoding, "main": sys.modules["__main__"].__file__,
            "fork_server_module": "lambdalet_runtime.fork_server" in sys.modules}
"""


# The fork server's own mechanics (parents, sessions, pids) as the plain tier shows them; forked runtimes in
# the sandbox, whose PID 1 comes from the same fork server, are tested in tests/integration/test_isolation.py.
PLAIN = ("--isolation", "none")


def _fork_servers(server: Server) -> list[int]:
    """Pids of the fork servers running under this lambdalet server."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if b"--fork-server" in cmd and ppid == server.process.pid:
            found.append(int(entry))
    return found


def _invoke(server: Server, name: str, event: object = None) -> tuple[dict, dict]:
    payload = json.dumps({} if event is None else event).encode()
    resp = server.lambda_client.invoke(FunctionName=name, Payload=payload)
    return resp, json.loads(resp["Payload"].read())


def _deploy(server: Server, env: dict[str, str] | None = None, prefix: str = "zyg") -> str:
    name = unique_name(prefix)
    create_function(server, name, make_zip({"app.py": PROBE}), runtime="python3.12", handler="app.handler",
                    env=env)
    return name


def _warm_up(server: Server) -> None:
    """The first cold start is exec'd while the fork server starts; wait until one is there."""
    _invoke(server, _deploy(server, prefix="warmup"))
    deadline = time.time() + 10
    while not _fork_servers(server) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # its imports


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    """Two servers: one forking python runtimes from a fork server, one exec'ing them (LAMBDALET_FORK_SERVER=0)."""
    forking = start_server(tmp_path_factory.mktemp("fork") / "data", *PLAIN)
    _warm_up(forking)
    os.environ["LAMBDALET_FORK_SERVER"] = "0"
    try:
        spawning = start_server(tmp_path_factory.mktemp("spawn") / "data", *PLAIN)
    finally:
        del os.environ["LAMBDALET_FORK_SERVER"]
    yield forking, spawning
    stop_server(forking)
    stop_server(spawning)


@pytest.mark.slow
def test_forked_runtime_looks_like_an_exec_one(pair: tuple[Server, Server]) -> None:
    forking, spawning = pair
    results = []
    for server in pair:
        _, body = _invoke(server, _deploy(server, {"COLOR": "blue"}))
        results.append(body)
    forked, spawned = results
    assert _fork_servers(forking) and not _fork_servers(spawning)
    assert forked["ppid"] in _fork_servers(forking)
    assert forked["sid"] == forked["pid"]
    for key in ("argv", "tz", "stdout", "main", "fork_server_module"):
        assert forked[key] == spawned[key], key
    assert forked["fork_server_module"] is False
    # stdio, the Runtime API socket, listdir's own fd and the telemetry pipe (its number may differ)
    assert len(forked["fds"]) == len(spawned["fds"]) and forked["fds"][:3] == [0, 1, 2]
    assert forked["env"]["COLOR"] == "blue"
    differing = {"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER",
                 "LAMBDA_TASK_ROOT", "TMPDIR", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_LOGS",
                 "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "AWS_LAMBDA_LOG_GROUP_NAME", "_X_AMZN_TRACE_ID",
                 "PWD", "PATH", "LD_LIBRARY_PATH",  # (these hold the data dir's paths)
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}  # (each environment's own)
    assert set(forked["env"]) == set(spawned["env"])
    for key in set(forked["env"]) - differing:
        assert forked["env"][key] == spawned["env"][key], key
    assert forked["cwd"] == forked["env"]["LAMBDA_TASK_ROOT"]
    strip = [lambda p, s=srv: p.replace(str(s.data_dir), "D") for srv in pair]
    assert [strip[0](p) for p in forked["path"]] == [strip[1](p) for p in spawned["path"]]


@pytest.mark.slow
def test_env_isolation_between_functions_of_one_fork_server(pair: tuple[Server, Server]) -> None:
    forking, _ = pair
    a = _deploy(forking, {"ONLY_A": "1", "SHARED": "a"})
    b = _deploy(forking, {"ONLY_B": "1", "SHARED": "b"})
    _, body_a = _invoke(forking, a)
    _, body_b = _invoke(forking, b)
    assert body_a["ppid"] == body_b["ppid"]  # one fork server
    assert body_a["env"]["SHARED"] == "a" and "ONLY_B" not in body_a["env"]
    assert body_b["env"]["SHARED"] == "b" and "ONLY_A" not in body_b["env"]


@pytest.mark.slow
@pytest.mark.parametrize(("event", "message"), [({"exit": 3}, "exit status 3"), ({"kill": True}, "signal: killed")])
def test_exit_wording_and_restart(pair: tuple[Server, Server], event: dict, message: str) -> None:
    forking, _ = pair
    name = _deploy(forking)
    _, first = _invoke(forking, name)
    resp, body = _invoke(forking, name, event)
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith(f"Runtime exited with error: {message}")
    _, again = _invoke(forking, name)  # restarted
    assert again["pid"] != first["pid"] and again["ppid"] == first["ppid"]
    assert any(f"Runtime exited with error: {message}" in m for m in log_messages(forking, name))


@pytest.mark.slow
def test_exec_wrapper_and_python_variables_are_not_forked(pair: tuple[Server, Server]) -> None:
    forking, _ = pair
    _, body = _invoke(forking, _deploy(forking, {"PYTHONDONTWRITEBYTECODE": "1"}))
    assert body["ppid"] == forking.process.pid
    name = unique_name("zygwrap")
    files = {"app.py": PROBE, "wrap.sh": '#!/bin/sh\nexport WRAPPED=yes\nexec "$@"\n'}
    create_function(forking, name, make_zip(files, executable=("wrap.sh",)), runtime="python3.12",
                    handler="app.handler", env={"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrap.sh"})
    _, body = _invoke(forking, name)
    assert body["env"]["WRAPPED"] == "yes"
    assert body["ppid"] == forking.process.pid  # exec'd by the server, through the wrapper


@pytest.mark.slow
def test_fallback_when_the_fork_server_dies_and_no_leftovers(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", *PLAIN)
    try:
        _warm_up(server)
        name = _deploy(server)
        _, first = _invoke(server, name)
        servers = _fork_servers(server)
        assert servers == [first["ppid"]]
        os.kill(servers[0], signal.SIGKILL)
        # its child cannot be waited for any more: it is ended (as if killed), and restarted
        deadline = time.time() + 5
        while _alive(first["pid"]) and time.time() < deadline:
            time.sleep(0.02)
        assert not _alive(first["pid"])
        _, second = _invoke(server, name)
        assert second.get("errorType") in (None, "Runtime.ExitError"), second
        if "errorType" in second:
            _, second = _invoke(server, name)
        assert second["pid"] != first["pid"]
        other = _deploy(server, prefix="zyg2")
        _, third = _invoke(server, other)
        assert "pid" in third
        runtimes = [second["pid"], third["pid"], *_fork_servers(server)]
    finally:
        assert stop_server(server) == 0
    deadline = time.time() + 5
    while time.time() < deadline and any(_alive(pid) for pid in runtimes):
        time.sleep(0.05)
    assert not [pid for pid in runtimes if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_timeout_ends_the_forked_tree(pair: tuple[Server, Server]) -> None:
    forking, _ = pair
    name = unique_name("zygto")
    app = ("import subprocess, time\n"
           "def handler(event, context):\n"
           "    child = subprocess.Popen(['sleep', '30'])\n"
           "    print('child', child.pid)\n"
           "    time.sleep(10)\n")
    create_function(forking, name, make_zip({"app.py": app}), runtime="python3.12", handler="app.handler", timeout=1)
    resp, body = _invoke(forking, name)
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    messages = log_messages(forking, name)
    assert any("Task timed out after 1.00 seconds" in m for m in messages)
    (child,) = [int(m.split()[1]) for m in messages if m.startswith("child ")]
    deadline = time.time() + 5
    while _alive(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


@pytest.mark.slow
def test_out_of_memory_is_detected(pair: tuple[Server, Server]) -> None:
    forking, _ = pair
    name = unique_name("zygoom")
    app = ("def handler(event, context):\n"
           "    blob = bytearray(event * 1024 * 1024)\n"
           "    for i in range(0, len(blob), 4096):\n"
           "        blob[i] = 1\n"
           "    return len(blob)\n")
    create_function(forking, name, make_zip({"app.py": app}), runtime="python3.12", handler="app.handler",
                    timeout=20, memory=128)
    resp, body = _invoke(forking, name, 16)
    assert body == 16 * 1024 * 1024
    resp, body = _invoke(forking, name, 400)
    if not os.access("/sys/fs/cgroup/memory", os.W_OK):
        return  # no cgroups here: nothing to enforce with
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert body["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    _, again = _invoke(forking, name, 16)
    assert again == 16 * 1024 * 1024
