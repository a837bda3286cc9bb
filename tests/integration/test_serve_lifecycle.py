"""`lambdalet serve` as a process: state survives restarts, SIGTERM leaves no orphans, idle reaping."""

from __future__ import annotations

import json
import os
import time

import spec_bootstraps as sb
from conftest import create_function, log_messages, make_zip, start_server, stop_server, wait_for_log

# Reports the pids of its process tree: the bootstrap shell and a background child.
PIDS = r"""#!/bin/bash
sleep 600 &
CHILD=$!
H=$(mktemp)
while true; do
  curl -sS -D "$H" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{\"pids\": [$$, $CHILD], \"stream\": \"$AWS_LAMBDA_LOG_STREAM_NAME\"}"
done
"""


def host_pids(doc: dict) -> list[int]:
    """The host's pids of the environment's processes that PIDS reported (its environ names its log stream):
    in a sandbox the pids it sees are its PID namespace's."""
    needle = f"AWS_LAMBDA_LOG_STREAM_NAME={doc['stream']}".encode()
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError):
            continue
        # (the bootstrap and its sleep: the curls and greps of its loop come and go)
        if needle in environ and (b"bootstrap" in cmd or cmd.startswith(b"sleep\0")):
            found.append(int(entry))
    assert len(found) == len(doc["pids"]), (found, doc)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_ends_every_environment_and_state_survives_restart(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        create_function(srv, "keeper", make_zip({"bootstrap": PIDS}))
        pids = json.loads(srv.lambda_client.invoke(FunctionName="keeper", Payload=b"{}")["Payload"].read())
        pids = host_pids(pids)
        assert all(alive(p) for p in pids)
        srv.lambda_client.put_function_concurrency(FunctionName="keeper", ReservedConcurrentExecutions=0)
        # Accepted while throttled: it must wait in the queue, across the restart.
        assert srv.lambda_client.invoke(FunctionName="keeper", InvocationType="Event",
                                        Payload=b'{"queued": true}')["StatusCode"] == 202
    finally:
        assert stop_server(srv) == 0
    deadline = time.time() + 5
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "orphaned processes after SIGTERM"
    assert "stopping" in srv.server_log()

    srv = start_server(data)
    try:
        lam = srv.lambda_client
        assert lam.get_function(FunctionName="keeper")["Configuration"]["Runtime"] == "provided.al2023"
        lam.delete_function_concurrency(FunctionName="keeper")
        # the queued Event invocation runs once the function is no longer throttled
        wait_for_log(srv, "keeper", lambda m: sum(x.startswith("START") for x in m) >= 2
                     and m[-1].startswith("REPORT"), timeout=15)
        # the logs written before the restart are still there
        assert sum(m.startswith("INIT_START") for m in log_messages(srv, "keeper")) >= 2
    finally:
        stop_server(srv)


def test_idle_environments_are_reaped(tmp_path):
    srv = start_server(tmp_path / "data", "--idle-timeout", "1")
    try:
        create_function(srv, "idle", make_zip({"bootstrap": PIDS}))
        pids = json.loads(srv.lambda_client.invoke(FunctionName="idle", Payload=b"{}")["Payload"].read())
        pids = host_pids(pids)
        deadline = time.time() + 6
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids)
        # The next invoke is a cold start in a new environment.
        srv.lambda_client.invoke(FunctionName="idle", Payload=b"{}")
        streams = srv.logs_client.describe_log_streams(logGroupName="/aws/lambda/idle")["logStreams"]
        assert len(streams) == 2
    finally:
        stop_server(srv)


def test_deleting_a_function_ends_its_environments(tmp_path):
    srv = start_server(tmp_path / "data")
    try:
        create_function(srv, "gone", make_zip({"bootstrap": PIDS}))
        pids = json.loads(srv.lambda_client.invoke(FunctionName="gone", Payload=b"{}")["Payload"].read())
        pids = host_pids(pids)
        srv.lambda_client.delete_function(FunctionName="gone")
        deadline = time.time() + 5
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in pids)
        create_function(srv, "gone", make_zip({"bootstrap": sb.EVENT_LOOP}))
        assert srv.lambda_client.invoke(FunctionName="gone", Payload=b"{}")["StatusCode"] == 200
    finally:
        stop_server(srv)


def test_sigterm_right_after_the_health_check_is_a_clean_stop(tmp_path):
    """The health check answers while start-up still runs (the sandbox's fork server is starting): a
    SIGTERM then ends the server as cleanly as later, exit status 0, not a kill by the signal."""
    for attempt in range(3):
        srv = start_server(tmp_path / f"data{attempt}")
        assert stop_server(srv) == 0, srv.log_path.read_text(errors="replace")[-2000:]
        assert "stopping: ending every execution environment" in srv.server_log()
