"""Each environment's network namespace, through a real `lambdalet serve`: 127.0.0.1:9001 is its own Runtime
API and nobody else's, lambdalet's API is reachable from inside, outbound reaches the host (veth tier, or
slirp4netns without root), and no namespace, veth or descriptor is left behind. The tests of a namespace's
insides run against the session's server (root) and a server without root (user namespaces)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    Server,
    create_function,
    make_zip,
    start_server,
    stop_server,
    unique_name,
    unprivileged_server,
    user_namespaces_allowed,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                                reason="network namespaces need root on Linux")
with_namespaces = pytest.mark.skipif(os.environ.get("LAMBDALET_TEST_ISOLATION") == "none",
                                     reason="the suite runs with --isolation none")

# A hostile custom runtime: answers its own invokes, and with each one does what the event asks.
HOSTILE = f"""#!{os.path.realpath(sys.executable)} -S
import http.client, json, os, socket

API = os.environ["AWS_LAMBDA_RUNTIME_API"]

def scan():
    found = []
    for port in range(1, 65536):
        s = socket.socket()
        if s.connect_ex(("127.0.0.1", port)) == 0 and s.getsockname() != s.getpeername():  # (not a self-connect)
            found.append(port)
        s.close()
    return found

def steal(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        r = conn.getresponse()
        return [r.status, r.getheader("Lambda-Runtime-Aws-Request-Id")]
    except OSError as exc:
        return ["error", type(exc).__name__]

def reach(host, port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect((host, port))
        s.sendall(b"hello")
        return s.recv(100).decode()
    except OSError as exc:
        return type(exc).__name__
    finally:
        s.close()

def squat():
    out = {{}}
    for host in ("127.0.0.1", "0.0.0.0"):
        for opt in ("plain", "reuseaddr", "reuseport"):
            s = socket.socket()
            if opt == "reuseaddr":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if opt == "reuseport":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                s.bind((host, 9001))
                s.listen()
                out[host + "/" + opt] = "bound"
            except OSError as exc:
                out[host + "/" + opt] = exc.errno
            s.close()
    return out

def netns():
    return os.readlink("/proc/self/ns/net")

conn = http.client.HTTPConnection(*API.split(":"))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    answer = {{"api": API, "netns": netns()}}
    if "scan" in event:
        open_ports = scan()
        answer["open"] = open_ports
        answer["stolen"] = {{p: steal(p) for p in open_ports if p != 9001 and p not in event["scan"]}}
    if "reach" in event:
        answer["reach"] = [reach(h, p) for h, p in event["reach"]]
    if "squat" in event:
        answer["squat"] = squat()
    conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", json.dumps(answer))
    conn.getresponse().read()
"""

# A victim: the spec's curl bootstrap, waiting in /next.
CURL_ECHO = """#!/bin/sh
set -eu
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \\
       -d "{\\"api\\": \\"${AWS_LAMBDA_RUNTIME_API}\\", \\"echo\\": $EVENT}"
done
"""

# A Python function that calls lambdalet's API with boto3, as functions do.
CALLER = """import json, os
import boto3

def handler(event, context):
    out = {"api": os.environ["AWS_LAMBDA_RUNTIME_API"], "netns": os.readlink("/proc/self/ns/net"),
           "ppid": os.getppid()}
    if event.get("call"):
        client = boto3.client("lambda")
        resp = client.invoke(FunctionName=event["call"], Payload=json.dumps({"from": "inside"}))
        out["called"] = json.loads(resp["Payload"].read())
    return out
"""


def invoke(server: Server, name: str, event: object) -> dict:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=json.dumps(event).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body


def api_port(server: Server) -> int:
    return int(server.endpoint.rsplit(":", 1)[1])


def host_address() -> str | None:
    """A non-loopback address of this host, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # (no packet is sent)
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


class Greeter:
    """A TCP server of the host that greets whoever connects (the function's outbound target)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.address = self.sock.getsockname()[:2]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(100)
                conn.sendall(b"hi from the host")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module", params=["root", "unprivileged"])
def any_server(request, server: Server) -> Iterator[Server]:
    """The session's server (root), then one run by an unprivileged uid (namespaces of user namespaces)."""
    if request.param == "root":
        yield server
        return
    if not user_namespaces_allowed():
        pytest.skip("this host allows no user namespaces to an unprivileged uid")
    with unprivileged_server() as srv:
        yield srv


@pytest.fixture
def greeters() -> Iterator[list[Greeter]]:
    made: list[Greeter] = []
    yield made
    for g in made:
        g.close()


def deploy(server: Server, bootstrap: str, prefix: str) -> str:
    name = unique_name(prefix)
    create_function(server, name, make_zip({"bootstrap": bootstrap}), timeout=30)
    return name


@with_namespaces
def test_a_hostile_function_finds_only_its_own_runtime_api_and_lambdalets(any_server, greeters):
    victim = deploy(any_server, CURL_ECHO, "victim")
    assert invoke(any_server, victim, {"x": 1}) == {"api": "127.0.0.1:9001", "echo": {"x": 1}}  # waits in /next
    hostile = deploy(any_server, HOSTILE, "hostile")
    loopback = Greeter("127.0.0.1")  # a service on the host's loopback
    greeters.append(loopback)
    body = invoke(any_server, hostile, {"scan": [api_port(any_server)], "reach": [list(loopback.address)]})
    assert body["api"] == "127.0.0.1:9001"
    assert body["open"] == sorted([9001, api_port(any_server)])  # no other Runtime API, nothing of the host's
    assert body["stolen"] == {}
    assert body["reach"] == ["ConnectionRefusedError"]
    assert body["netns"] != os.readlink("/proc/self/ns/net")
    # The victim still gets its own events.
    assert invoke(any_server, victim, {"x": 2}) == {"api": "127.0.0.1:9001", "echo": {"x": 2}}


@with_namespaces
def test_port_9001_cannot_be_squatted_and_the_runtime_api_keeps_working(any_server):
    hostile = deploy(any_server, HOSTILE, "squat")
    body = invoke(any_server, hostile, {"squat": True})
    assert set(body["squat"].values()) == {98}, body  # EADDRINUSE, whatever the options
    again = invoke(any_server, hostile, {})
    assert again["api"] == "127.0.0.1:9001" and again["netns"] == body["netns"]


@with_namespaces
def test_every_environment_has_a_namespace_of_its_own(any_server):
    hostile = deploy(any_server, HOSTILE, "apart")
    first = invoke(any_server, hostile, {})
    any_server.lambda_client.update_function_configuration(FunctionName=hostile, Environment={"Variables": {"AB": "1"}})
    time.sleep(0.2)
    second = invoke(any_server, hostile, {})  # a new environment (the revision changed)
    assert first["netns"] != second["netns"]


@with_namespaces
def test_boto3_inside_a_function_reaches_lambdalets_api(any_server):
    callee = deploy(any_server, CURL_ECHO, "callee")
    caller = unique_name("caller")
    create_function(any_server, caller, make_zip({"app.py": CALLER}), runtime="python3.12", handler="app.handler",
                    timeout=30)
    body = invoke(any_server, caller, {"call": callee})
    assert body["api"] == "127.0.0.1:9001"
    assert body["called"] == {"api": "127.0.0.1:9001", "echo": {"from": "inside"}}


@with_namespaces
def test_python_runtimes_exec_d_and_forked_join_their_namespace(tmp_path: Path):
    """Each Python environment's runtime (the first exec'd while the fork server starts, later ones forked
    from it; in the sandbox tier all started by their PID 1) runs in its own namespace, joined before the
    runtime connects."""
    srv = start_server(tmp_path / "data")
    try:
        caller = unique_name("forked")
        create_function(srv, caller, make_zip({"app.py": CALLER}), runtime="python3.11", handler="app.handler")
        seen = set()
        for attempt in range(3):
            body = invoke(srv, caller, {})
            assert body["api"] == "127.0.0.1:9001"
            assert body["netns"] != os.readlink("/proc/self/ns/net")
            seen.add(body["netns"])
            srv.lambda_client.update_function_configuration(FunctionName=caller,
                                                            Environment={"Variables": {"NN": str(attempt)}})
            time.sleep(0.3)
        assert len(seen) == 3, "environments shared a network namespace"
    finally:
        stop_server(srv)
    # A server stopped as usual leaves no veth (nor namespace) behind either.
    _wait(lambda: not _veths(srv.process.pid), 10, lambda: f"veths left: {_veths(srv.process.pid)}")


@with_namespaces
def test_outbound_reaches_a_tcp_server_on_a_host_address(any_server, greeters):
    address = host_address()
    if address is None:
        pytest.skip("this host has no non-loopback address")
    log = any_server.server_log()
    if "outbound access via veth" not in log and "outbound access through slirp4netns" not in log:
        assert "outbound access off (" in log  # (said at start-up: e.g. no slirp4netns installed)
        pytest.skip("no outbound access here: " + log.split("outbound access off (")[1].split(")")[0])
    greeter, loopback = Greeter(address), Greeter("127.0.0.1")
    greeters += [greeter, loopback]
    hostile = deploy(any_server, HOSTILE, "outbound")
    # (10.0.2.2 is the host's loopback seen through slirp4netns: kept out of reach)
    body = invoke(any_server, hostile, {"reach": [list(greeter.address), ["10.0.2.2", loopback.address[1]]]})
    assert body["reach"][0] == "hi from the host"
    assert body["reach"][1] != "hi from the host", body


OUTSIDE_GREETER = """import socket, sys
s = socket.create_server(("0.0.0.0", 0))
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(100)
    c.sendall(b"hi from beyond the host")
    c.close()
"""


@pytest.fixture
def beyond_the_host() -> Iterator[tuple[str, int]]:
    """A network past the host: a namespace of the test's, on a veth from the host, with no route back to
    the environments' addresses (only NAT lets their connections through), a greeter listening there, and
    the host forwarding meanwhile."""
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("needs nft (nftables) and ip (iproute2)")
    tag = f"llt{os.getpid() % 100000}"
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip()
    subprocess.run(["ip", "netns", "add", tag], check=True)
    greeter = None
    try:
        for cmd in (f"link add {tag}a type veth peer name {tag}b netns {tag}",
                    f"addr add 192.168.253.1/30 dev {tag}a", f"link set {tag}a up",
                    f"-n {tag} addr add 192.168.253.2/30 dev {tag}b", f"-n {tag} link set {tag}b up",
                    f"-n {tag} link set lo up"):
            subprocess.run(["ip", *cmd.split()], check=True)
        greeter = subprocess.Popen(["ip", "netns", "exec", tag, sys.executable, "-c", OUTSIDE_GREETER],
                                   stdout=subprocess.PIPE, text=True)
        port = int(greeter.stdout.readline())
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        yield "192.168.253.2", port
    finally:
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(forwarding)
        if greeter is not None:
            greeter.kill()
            greeter.wait()
        subprocess.run(["ip", "netns", "delete", tag], check=False)


@with_namespaces
def test_outbound_reaches_beyond_the_host_through_nat_where_the_host_forwards(tmp_path: Path, beyond_the_host):
    srv = start_server(tmp_path / "data")
    try:
        assert "outbound access via veth to the host and beyond (NAT" in srv.server_log()
        hostile = deploy(srv, HOSTILE, "beyond")
        body = invoke(srv, hostile, {"reach": [list(beyond_the_host)]})
        assert body["reach"] == ["hi from beyond the host"]
    finally:
        stop_server(srv)


def _netns_fds(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("net:["):
                count += 1
        except OSError:
            continue
    return count


def _veths(pid: int) -> list[str]:
    return [name for name in os.listdir("/sys/class/net") if name.startswith(f"llet{pid % 100000}x")]


def _wait(condition, timeout: float, message) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(message())
        time.sleep(0.05)


@with_namespaces
def test_nothing_is_left_behind_by_ended_environments_nor_by_a_killed_server(tmp_path: Path):
    srv = start_server(tmp_path / "data")
    try:
        pid = srv.process.pid
        _wait(lambda: _netns_fds(pid) >= 5, 10, lambda: "the pool never filled")
        before = _netns_fds(pid)
        names = [deploy(srv, HOSTILE, "gone") for _ in range(3)]
        for name in names:
            invoke(srv, name, {})
        assert _netns_fds(pid) == before + 3  # (the pool refills)
        for name in names:
            srv.lambda_client.delete_function(FunctionName=name)
        _wait(lambda: _netns_fds(pid) == before, 10, lambda: f"{_netns_fds(pid)} namespaces held, not {before}")
        if _veths(pid):  # the ready ones' only (the kernel ends the others' in the background)
            _wait(lambda: len(_veths(pid)) == before - 1, 10, lambda: f"veths: {_veths(pid)}")
        invoke(srv, deploy(srv, HOSTILE, "left"), {})  # one running when the server is killed
        srv.process.send_signal(signal.SIGKILL)
        srv.process.wait()
        _wait(lambda: not _veths(pid), 15, lambda: f"veths left by the killed server: {_veths(pid)}")
    finally:
        if srv.process.poll() is None:
            stop_server(srv)


def test_isolation_none_runs_as_before_and_says_so(tmp_path: Path):
    srv = start_server(tmp_path / "data", "--isolation", "none")
    try:
        name = deploy(srv, CURL_ECHO, "plain")
        body = invoke(srv, name, {"y": 1})
        host, port = body["api"].split(":")
        assert host == "127.0.0.1" and port != "9001"
        assert "network isolation off (--isolation none)" in srv.server_log()
    finally:
        stop_server(srv)
