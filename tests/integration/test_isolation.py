"""Execution environments isolated like Lambda's (issue 10), through a real `lambdalet serve`.

The session's server runs with the default `--isolation auto`: sandboxed where this machine allows it
(root on Linux). A second server runs as an unprivileged uid (from root: `unprivileged`), sandboxed
with user namespaces where the host allows them. Each test asserts what its tier promises: in the
sandbox a hostile function sees nothing of the server, the data dir or other functions; in the degraded
tier (`--isolation none`, or where the host cannot sandbox) it runs as the server's user, and these
tests show what it then can do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import spec_bootstraps as sb
from conftest import (
    UNPRIVILEGED_UID,
    Server,
    create_function,
    log_messages,
    make_zip,
    sandboxed,
    start_server,
    stop_server,
    unique_name,
    unprivileged_server,
    user_namespaces_allowed,
    wait_for_log,
)

SANDBOXED = sandboxed()  # (the session's server: --isolation auto, where this machine allows it)
CAN_SANDBOX = sys.platform.startswith("linux") and os.geteuid() == 0
ROOT_TIER, USERNS_TIER = "root", "userns"
INIT_LINE = "PID 1: /var/runtime/init --enable-extensions --logs-egress-api fluxpump --disable-tracing "

# A bootstrap that answers every event with what one shell command printed (the event's "sh").
SHELL_RUNNER = r"""#!/bin/sh
set -eu
export RUNNER_PID=$$
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -D "$HEADERS" "$API/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:cntrl:]' | awk '{print $2}')
  rm -f "$HEADERS"
  CMD=$(printf '%s' "$EVENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sh"])')
  OUT=$(bash -c "$CMD" 2>&1 || true)
  printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.dumps({"out": sys.stdin.read()}))' \
    | curl -sS -o /dev/null -X POST "$API/$ID/response" --data-binary @-
done
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[Server]:
    """A server of the degraded tier: `--isolation none`."""
    srv = start_server(tmp_path_factory.mktemp("plain") / "data", "--isolation", "none")
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def unprivileged() -> Iterator[Server | None]:
    """unprivileged_server() for the module; None where the tests do not run as root (then the session's
    server is the unprivileged one)."""
    if not CAN_SANDBOX:
        yield None
        return
    with unprivileged_server() as srv:
        yield srv


def tier(server: Server | None) -> str | None:
    """The tier a server's start-up line names: ROOT_TIER, USERNS_TIER or None (no sandbox)."""
    if server is None:
        return None
    line = next(line for line in server.server_log().splitlines() if "isolation" in line)
    if "isolation sandbox without root:" in line:
        return USERNS_TIER
    return ROOT_TIER if "isolation sandbox:" in line else None


def _shell_function(server: Server, **extra) -> str:
    name = unique_name("iso")
    create_function(server, name, make_zip({"bootstrap": SHELL_RUNNER, "secret.txt": "CODE-SECRET-" + name}),
                    timeout=30, **extra)
    return name


def _sh(server: Server, name: str, command: str) -> str:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=json.dumps({"sh": command}).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body["out"]


def _tiers(server: Server, plain: Server, unprivileged: Server | None) -> list[tuple[Server, str | None]]:
    """Each server with its tier: the session's, the degraded one, the unprivileged one (if any)."""
    servers = [server, plain] + ([unprivileged] if unprivileged is not None else [])
    return [(srv, tier(srv)) for srv in servers]


def test_start_up_names_the_tier(server: Server, plain: Server, unprivileged: Server | None) -> None:
    if unprivileged is not None:
        (line,) = [line for line in unprivileged.server_log().splitlines() if "isolation" in line]
        if user_namespaces_allowed():
            assert line.split(" lambdalet: ")[1].startswith(
                "isolation sandbox without root: user, PID, mount, UTS and IPC namespaces per environment, uid 993 "
                "inside (the server's uid outside), 1024 processes and open files; network namespaces on: "
                "127.0.0.1:9001 per environment; outbound access "), line
            outbound = line.split("; outbound access ")[1]
            assert outbound in (  # (slirp4netns is optional; and /dev/net/tun may be root's only)
                "through slirp4netns (user-mode networking): the host's non-loopback addresses and beyond",
                "off (without root: no veth pairs; slirp4netns is not installed)",
                "off (without root: no veth pairs; slirp4netns failed)"), line
        else:  # (e.g. Ubuntu's AppArmor restriction): what is off, and why
            assert "isolation off (" in line and "user namespaces: " in line, line
    lines = [line for line in server.server_log().splitlines() if "isolation" in line]
    assert len(lines) == 1
    assert ("isolation sandbox:" in lines[0]) == SANDBOXED
    if not SANDBOXED and not CAN_SANDBOX:  # one line that says what is off
        assert "isolation off (" in lines[0] and "no PID namespace" in lines[0]
    plain_lines = [line for line in plain.server_log().splitlines() if "isolation" in line]
    assert len(plain_lines) == 1 and plain_lines[0].endswith(  # one line names all that is off
        "isolation none (--isolation none): functions run as the server's user and see its files; "
        "network isolation off (--isolation none)")


def test_strict_refuses_to_start_without_the_sandbox(tmp_path: Path) -> None:
    if CAN_SANDBOX:
        srv = start_server(tmp_path / "data", "--isolation", "strict")
        stop_server(srv)
        return
    with pytest.raises(RuntimeError, match="--isolation strict: no sandbox on this host"):
        start_server(tmp_path / "data", "--isolation", "strict")


def test_process_list_bootstrap_verbatim_lists_init_and_the_bootstrap(server: Server, plain: Server,
                                                                      unprivileged: Server | None) -> None:
    for srv, boxed in _tiers(server, plain, unprivileged):
        name = unique_name("ps")
        create_function(srv, name, make_zip({"bootstrap": sb.PROCESS_LIST}), timeout=30)
        srv.lambda_client.invoke(FunctionName=name, Payload=b'{"k": 1}')
        msgs = wait_for_log(srv, name, lambda m: any(x.startswith("REPORT") for x in m))
        pids = [m for m in msgs if m.startswith("PID ")]
        if boxed:  # exactly the two processes of AWS's listing, run once
            assert pids[:2] == [INIT_LINE, "PID 2: /bin/sh /var/task/bootstrap "], pids
        else:  # the host's processes, this server among them (once the walk got past it: under `set -e` a
            # process that exits between the glob and its `tr` ends the script there)
            walked = any(m.startswith(("Port 9001", "--- Searching")) for m in msgs)
            assert pids and INIT_LINE not in pids
            assert not walked or any(m.startswith(f"PID {srv.process.pid}: ") for m in pids)


def test_hostile_function_reads_nothing_of_others_or_the_server(server: Server, plain: Server,
                                                                unprivileged: Server | None) -> None:
    for srv, boxed in _tiers(server, plain, unprivileged):
        victim = _shell_function(srv, env={"VICTIM_SECRET": "ENV-SECRET-42"})
        # (one invoke: the next one may find this environment still busy and start another)
        victim_tmp, victim_pid = _sh(srv, victim, 'echo TMP-SECRET > "${TMPDIR:-/tmp}/victim.txt"; '
                                                  'echo "${TMPDIR:-/tmp}"; echo "$RUNNER_PID"').split()
        code = next(srv.data_dir.glob("code/**/secret.txt"))
        databases = [p for p in srv.data_dir.rglob("*") if p.is_file() and p.read_bytes()[:16] == b"SQLite format 3\0"]
        assert databases
        thief = _shell_function(srv)
        stolen = _sh(srv, thief, "; ".join([
            f"cat {code}", f"cat {victim_tmp}/victim.txt", f"tr '\\0' '\\n' < /proc/{victim_pid}/environ",
            f"head -c 16 {databases[0]}", f"ls {srv.data_dir}", f"kill -0 {srv.process.pid} && echo SIGNALLED",
        ]))
        leaks = ["CODE-SECRET-", "ENV-SECRET-42", "SQLite format 3", "SIGNALLED"]
        if boxed:
            assert not [leak for leak in leaks if leak in stolen], stolen
            assert "TMP-SECRET" not in stolen and "No such file or directory" in stolen
            assert _sh(srv, thief, "cat /tmp/victim.txt; ls -A /tmp").strip().endswith("No such file or directory")
            # no way out of the new root: chroot again, or a user namespace (with the capabilities to)
            escape = _sh(srv, thief, "python3 -c 'import os; os.chroot(\"/tmp\")' 2>&1 | tail -1; "
                                     "unshare -U true 2>&1; unshare -Ur true 2>&1")
            assert escape.splitlines() == ["PermissionError: [Errno 1] Operation not permitted: '/tmp'",
                                           *["unshare: unshare failed: Operation not permitted"] * 2], escape
        else:  # the degraded tier: a plain process of the server's user sees all of it
            assert [leak for leak in leaks if leak in stolen] == leaks, stolen
            assert "TMP-SECRET" in stolen


def test_identity_filesystem_and_limits(server: Server, plain: Server, unprivileged: Server | None) -> None:
    for srv, boxed in _tiers(server, plain, unprivileged):
        name = _shell_function(srv)
        report = _sh(srv, name, "; ".join([
            "id -u", "id -g", "pwd", 'echo "$LAMBDA_TASK_ROOT $LAMBDA_RUNTIME_DIR"', "ulimit -u", "ulimit -n",
            "touch /var/task/x 2>&1 || true", "touch /opt/x 2>&1 || true", "touch /x 2>&1 || true",
            "ls -A / | tr '\\n' ' '; echo", "cat /proc/1/comm",
        ])).splitlines()
        if boxed:
            uid = int(report[0])
            assert (uid >= 200000 if boxed == ROOT_TIER else uid == 993) and report[1] == str(uid)
            assert report[2:6] == ["/var/task", "/var/task /var/runtime", "1024", "1024"]
            assert report[6:9] == ["touch: cannot touch '/var/task/x': Read-only file system",
                                   "touch: cannot touch '/opt/x': Read-only file system",
                                   "touch: cannot touch '/x': Read-only file system"]
            top = report[9].split()
            assert {"var", "opt", "tmp", "proc", "dev", "usr", "etc"} <= set(top)
            assert not {"work", "home", "srv", "mnt"} & set(top)
            assert report[10] == "init"
        else:
            assert report[0] == str(os.geteuid())
            assert report[2] == report[3].split()[0] != "/var/task"


def test_environments_have_uids_of_their_own(server: Server, unprivileged: Server | None) -> None:
    """As root, a uid each; without root, uid 993 each, in a user namespace of its own."""
    if SANDBOXED:
        first, second = _shell_function(server), _shell_function(server)
        assert _sh(server, first, "id -u") != _sh(server, second, "id -u")
    if tier(unprivileged) == USERNS_TIER:
        first, second = _shell_function(unprivileged), _shell_function(unprivileged)
        ids = [_sh(unprivileged, name, "id -u; readlink /proc/self/ns/user").split() for name in (first, second)]
        assert ids[0][0] == ids[1][0] == "993" and ids[0][1] != ids[1][1], ids


def _host_uids_running(token: str) -> set[int]:
    return {os.stat(f"/proc/{pid}").st_uid for pid in _processes_named(token)}


def test_subordinate_ids_give_each_environment_a_uid_of_its_own_without_root() -> None:
    """Without root, where the user has subordinate ids and uidmap's helpers are installed, each environment
    is a uid of its own on the host (993 inside), and cannot signal its PID 1; elsewhere they share the
    server's uid, and the start-up line says so."""
    if not CAN_SANDBOX or not user_namespaces_allowed():
        return
    with unprivileged_server(subordinate_ids=1000) as srv:
        line = next(line for line in srv.server_log().splitlines() if "isolation" in line)
        mapped = all(shutil.which(tool) for tool in ("newuidmap", "newgidmap")) and all(
            os.path.exists(f"/etc/{name}") for name in ("subuid", "subgid"))
        assert ("uid 993 inside (a subordinate uid of its own outside, of 1000)" in line) == mapped, line
        tokens = [f"1000.{secrets.randbelow(10**9)}" for _ in range(2)]
        for token in tokens:
            name = _shell_function(srv)
            out = _sh(srv, name, f"sleep {token} > /dev/null 2>&1 < /dev/null & id -u; id -G; "
                                 "kill -0 1 2>&1 && echo signalled PID 1")
            assert out.splitlines()[0] == "993", out
            if mapped:
                assert out.splitlines()[1] == "993" and "signalled PID 1" not in out, out
        uids = [_host_uids_running(token) for token in tokens]
        if mapped:  # (two environments, two uids of the range)
            assert all(len(u) == 1 and 400000 <= min(u) < 401000 for u in uids) and uids[0] != uids[1], uids
        else:
            assert uids == [{UNPRIVILEGED_UID}] * 2, uids


def test_tmp_is_private_and_sized_by_ephemeral_storage(server: Server, plain: Server,
                                                      unprivileged: Server | None) -> None:
    for srv, boxed in _tiers(server, plain, unprivileged):
        name = _shell_function(srv, memory=1024, EphemeralStorage={"Size": 600})
        if not boxed:  # a directory of its own on the host's disk, unbounded
            assert _sh(srv, name, 'echo "$TMPDIR"').strip().startswith(str(srv.data_dir))
            continue
        out = _sh(srv, name, "df -m /tmp | tail -1; dd if=/dev/zero of=/tmp/fill bs=1M count=700 2>&1 | head -1; "
                             "du -m /tmp/fill; rm /tmp/fill")
        lines = out.splitlines()
        assert lines[0].split()[1] == "600", out
        assert "No space left on device" in lines[1], out
        assert 590 <= int(lines[2].split()[0]) <= 600, out


def _processes_named(token: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
    return found


def _gone(token: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while _processes_named(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_setsid_daemon_ends_with_its_environment(server: Server, plain: Server,
                                                   unprivileged: Server | None) -> None:
    for srv, boxed in _tiers(server, plain, unprivileged):
        token = f"1000.{secrets.randbelow(10**9)}"
        name = _shell_function(srv)
        _sh(srv, name, f"setsid sleep {token} > /dev/null 2>&1 < /dev/null & echo started")
        assert _processes_named(token)
        srv.lambda_client.delete_function(FunctionName=name)  # its environments end
        if boxed or os.access("/sys/fs/cgroup/memory", os.W_OK):  # (the degraded tier: its cgroup)
            assert _gone(token)


FORKER = """
import os, time
def handler(event, context):
    children, error = [], None
    try:
        while len(children) < event["count"]:
            pid = os.fork()
            if pid == 0:  # (exec'd: a thousand forked interpreters would dirty their memory past the limit)
                try:
                    os.execv("/bin/sleep", ["sleep", str(event.get("sleep", 5))])
                finally:
                    os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = exc.strerror
    if not event.get("keep"):
        for pid in children:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}
"""


def _sandboxed_servers(server: Server, unprivileged: Server | None) -> list[tuple[Server, str | None]]:
    return [(srv, tier(srv)) for srv in (server, unprivileged) if srv is not None]


def _forker(srv: Server) -> str:
    name = unique_name("forks")
    create_function(srv, name, make_zip({"app.py": FORKER}), runtime="python3.11", handler="app.handler",
                    timeout=60, memory=2048)
    return name


def _fork(srv: Server, name: str, **event) -> dict:
    return json.loads(srv.lambda_client.invoke(FunctionName=name, Payload=json.dumps(event))["Payload"].read())


def test_forking_past_1024_processes_fails(server: Server, unprivileged: Server | None) -> None:
    for srv, boxed in _sandboxed_servers(server, unprivileged):
        result = _fork(srv, _forker(srv), count=1100)
        if boxed:
            assert result["error"] == "Resource temporarily unavailable" and 1000 <= result["forked"] < 1024, result
        else:
            assert result["forked"] == 1100 or result["error"] is not None


def test_the_process_limit_is_each_environments_own(server: Server, unprivileged: Server | None) -> None:
    """One environment at its 1,024 processes leaves another one its own (without root too: each has a
    user namespace of its own, which the kernel counts processes in)."""
    for srv, boxed in _sandboxed_servers(server, unprivileged):
        if not boxed:
            continue
        hog, other = _forker(srv), _forker(srv)
        held = _fork(srv, hog, count=1100, keep=True, sleep=30)
        assert held["error"] == "Resource temporarily unavailable", held
        try:
            assert _fork(srv, other, count=200) == {"forked": 200, "error": None}
        finally:
            srv.lambda_client.delete_function(FunctionName=hog)  # (its environment, and the sleeps, end)


def test_missing_bootstrap_names_lambdas_paths(server: Server, plain: Server, unprivileged: Server | None) -> None:
    for srv, _ in _tiers(server, plain, unprivileged):
        name = unique_name("nob")
        create_function(srv, name, make_zip({"bootstrap2": sb.EVENT_LOOP}))
        body = json.loads(srv.lambda_client.invoke(FunctionName=name)["Payload"].read())
        assert body["errorType"] == "Runtime.InvalidEntrypoint"
        assert body["errorMessage"].endswith("Error: Couldn't find valid bootstrap(s): [/var/task/bootstrap "
                                             "/opt/bootstrap]")
        assert any(m.endswith("Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
                              "\nRuntime.InvalidEntrypoint") for m in log_messages(srv, name))


def test_python_runtime_runs_from_var_runtime_in_the_sandbox(server: Server, unprivileged: Server | None) -> None:
    code = """
import os, sys
def handler(event, context):
    churn = [str(i) * 20 for i in range(50000)]  # (reuses what was freed: a cmdline in freed memory shows)
    del churn
    return {"uid": os.getuid(), "ppid": os.getppid(), "cwd": os.getcwd(), "root": os.environ["LAMBDA_TASK_ROOT"],
            "cmdline": open("/proc/self/cmdline").read().split("\\0"), "init": open("/proc/1/cmdline").read(),
            "boto3": __import__("importlib.util").util.find_spec("boto3") is not None,
            "status": [line.split(":")[1].strip() for line in open("/proc/self/status")
                       if line.startswith(("CapPrm:", "CapEff:", "NoNewPrivs:"))]}
"""
    for srv, boxed in _sandboxed_servers(server, unprivileged):
        name = unique_name("pyrt")
        create_function(srv, name, make_zip({"app.py": code}), runtime="python3.11", handler="app.handler")
        for _ in range(3):  # (the first cold start may be exec'd while the fork server starts; later ones fork)
            srv.lambda_client.update_function_configuration(FunctionName=name, Description=secrets.token_hex(4))
            body = json.loads(srv.lambda_client.invoke(FunctionName=name)["Payload"].read())
            assert body["cwd"] == body["root"]
            assert body["boto3"]
            if boxed:
                assert body["uid"] >= 200000 if boxed == ROOT_TIER else body["uid"] == 993
                assert body["ppid"] == 1 and body["root"] == "/var/task"
                assert body["cmdline"][-3:] == ["/var/runtime/bootstrap.py", "app.handler", ""]
                assert body["init"].split("\0")[0] == "/var/runtime/init"
                # no capabilities (without root the runtime, never exec'd, joined a user namespace that gave it all)
                assert body["status"] == ["0000000000000000", "0000000000000000", "1"], body["status"]


def _kill_9_ends_everything(srv: Server) -> None:
    token = f"1000.{secrets.randbelow(10**9)}"
    try:
        name = _shell_function(srv)
        _sh(srv, name, f"setsid sleep {token} > /dev/null 2>&1 < /dev/null & echo started")
        assert _processes_named(token)
    finally:
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait()
    assert _gone(token, within=10)


def test_everything_ends_after_kill_9_of_the_server(tmp_path: Path) -> None:
    _kill_9_ends_everything(start_server(tmp_path / "data"))
    if CAN_SANDBOX:
        others = set(_processes_of(UNPRIVILEGED_UID))  # (the module's unprivileged server's)
        with unprivileged_server() as srv:
            _kill_9_ends_everything(srv)
            deadline = time.monotonic() + 10  # (the maker, slirp4netns, the fork servers and the watcher too)
            while set(_processes_of(UNPRIVILEGED_UID)) - others and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not set(_processes_of(UNPRIVILEGED_UID)) - others


# ---------------------------------------------------------------- the launcher seam itself


def test_pid_1_reaps_orphans_and_holds_the_listening_socket(tmp_path: Path) -> None:
    """Straight through the launcher: PID 1 keeps a dup of the socket handed to it (the Runtime API's,
    once the network namespace serves it), and reaps orphans that outlive their parents."""
    if not CAN_SANDBOX:
        return
    from lambdalet.environment import launcher
    from lambdalet.environment.launcher import SpawnRequest
    from lambdalet.environment.spec import FunctionSpec

    task, opt, tmp = tmp_path / "task", tmp_path / "opt", tmp_path / "env"
    for d in (task, opt, tmp):
        d.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    script = sb.PROCESS_LIST.split("RESPONSE=$(curl")[0].replace("PORT=9001", f"PORT={port}")
    script += "sh -c 'sleep 0.1 &'; sleep 0.5; grep -l '^State:.*Z' /proc/[0-9]*/status || echo no zombies\n"
    (task / "bootstrap").write_text(script)
    (task / "bootstrap").chmod(0o755)
    spec = FunctionSpec(name="seam", arn="arn", runtime="provided.al2023", handler="", memory_mb=128, timeout_s=3,
                        task_root=str(task), opt_dir=str(opt), region="us-east-1", revision_id="r")
    lines: list[str] = []

    async def run() -> int:
        launcher.configure("strict")
        await launcher.current().prepare()
        spawned = await launcher.current().spawn(SpawnRequest(
            spec, ["/bin/sh", str(task / "bootstrap")], "/bin/bash", {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1"},
            lines.append, None, None, str(tmp), listener.fileno()))
        code = await asyncio.wait_for(spawned.process.exited, 20)
        await spawned.process.settle_output()
        return code

    try:
        code = asyncio.run(run())
    finally:
        from lambdalet.environment import fork_servers

        fork_servers.shutdown_all()
        listener.close()
    text = "".join(lines)
    assert code == 0, text
    assert f"{INIT_LINE}\nPID 2: /bin/sh /var/task/bootstrap \n" in text
    assert "[MATCH FOUND]\nPID: 1\nProcess Name: init\n" in text
    assert text.rstrip().endswith("no zombies")


def test_ephemeral_storage_is_stored_returned_and_versioned(server: Server) -> None:
    lam = server.lambda_client
    name = unique_name("eph")
    created = create_function(server, name, make_zip({"bootstrap": SHELL_RUNNER}), EphemeralStorage={"Size": 1024})
    assert created["EphemeralStorage"] == {"Size": 1024}
    assert lam.get_function_configuration(FunctionName=name)["EphemeralStorage"] == {"Size": 1024}
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    updated = lam.update_function_configuration(FunctionName=name, EphemeralStorage={"Size": 2048})
    assert updated["EphemeralStorage"] == {"Size": 2048}
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    version = lam.publish_version(FunctionName=name)["Version"]
    assert lam.get_function(FunctionName=name, Qualifier=version)["Configuration"]["EphemeralStorage"] == {"Size": 2048}
    listed = [f for page in lam.get_paginator("list_functions").paginate() for f in page["Functions"]
              if f["FunctionName"] == name]
    assert listed[0]["EphemeralStorage"] == {"Size": 2048}
    default = unique_name("eph")
    assert create_function(server, default, make_zip({"bootstrap": SHELL_RUNNER}))["EphemeralStorage"] == {"Size": 512}
    if SANDBOXED:  # and it is the size of /tmp
        assert _sh(server, name, "df -m /tmp | tail -1").split()[1] == "2048"
        assert _sh(server, default, "df -m /tmp | tail -1").split()[1] == "512"
