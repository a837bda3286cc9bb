"""Integration fixtures: a real `lambdalet serve` process, real boto3 clients, zips built in memory."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    endpoint: str
    data_dir: Path
    process: subprocess.Popen
    log_path: Path

    def client(self, service: str, read_timeout: int = 120, validate: bool = True):
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 0}, read_timeout=read_timeout, connect_timeout=5,
                          parameter_validation=validate),
        )

    @property
    def lambda_client(self):
        return self.client("lambda")

    @property
    def logs_client(self):
        return self.client("logs")

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace")


# `lambdalet serve --isolation` for servers whose tests do not choose one (LAMBDALET_TEST_ISOLATION=none runs the
# whole suite in the degraded tier); the default, auto, sandboxes where this machine allows it (root, Linux).
TEST_ISOLATION = os.environ.get("LAMBDALET_TEST_ISOLATION", "auto")
UNPRIVILEGED_UID = 60999  # the uid of the servers run without root (any uid without processes of its own here)


def sandboxed() -> bool:
    """Whether servers started without an --isolation of their own sandbox their environments."""
    return TEST_ISOLATION != "none" and sys.platform.startswith("linux") and os.geteuid() == 0


def start_server(data_dir: Path, *extra: str, as_uid: int | None = None, log_dir: Path | None = None,
                 etc: dict[str, Path] | None = None) -> Server:
    """A real `lambdalet serve` on data_dir; as_uid runs it as that (unprivileged) uid, from root, with the
    files of `etc` (e.g. {"/etc/subuid": path}) in place of the host's, for it only."""
    if "--isolation" not in extra:
        extra = (*extra, "--isolation", TEST_ISOLATION)
    port = free_port()
    log_path = (log_dir or data_dir.parent) / f"server-{port}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    argv = [sys.executable, "-m", "lambdalet.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), *extra]
    if as_uid is not None:
        argv = as_unprivileged(as_uid, argv, [sys.executable, sys.prefix, sys.base_prefix, str(REPO), str(data_dir)],
                               etc or {})
    proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(REPO))
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(endpoint + "/lambdalet/health", timeout=1):
                return Server(endpoint, data_dir, proc, log_path)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("lambdalet serve did not start:\n" + log_path.read_text(errors="replace"))


def as_unprivileged(uid: int, argv: list[str], paths: list[str], etc: dict[str, Path]) -> list[str]:
    """argv run by root as uid (gid = uid, no groups), able to reach `paths`: a directory on their way that
    only its owner may enter (pyenv's Pythons under /root) is shadowed by a tmpfs that holds just what
    leads to them, in a mount namespace of that command's own, where the files of `etc` are bound over the
    host's (which must exist). The host is left as it is."""
    shadows: dict[str, set[str]] = {}
    for path in paths:
        parts = Path(os.path.realpath(path)).parts
        for depth in range(1, len(parts) - 1):
            ancestor = os.path.join(*parts[:depth + 1])
            if not os.stat(ancestor).st_mode & 0o001:  # no search permission for others
                shadows.setdefault(ancestor, set()).add(parts[depth + 1])
                break
    script = [f"mount --bind {source} {target}" for target, source in sorted(etc.items())]
    for i, (directory, children) in enumerate(sorted(shadows.items())):
        hidden = f"/run/lambdalet-test-hidden-{os.getpid()}-{i}"
        script += [f"mkdir -p {hidden}", f"mount --bind {directory} {hidden}",
                   f"mount -t tmpfs -o mode=755 tmpfs {directory}"]
        for child in sorted(children):
            script += [f"mkdir -p {directory}/{child}", f"mount --bind {hidden}/{child} {directory}/{child}"]
        script += [f"umount -l {hidden}", f"rmdir {hidden}"]
    script.append(f'exec setpriv --reuid {uid} --regid {uid} --clear-groups env HOME=/nonexistent "$@"')
    return ["unshare", "-m", "--propagation", "private", "sh", "-ec", " && ".join(script), "sh", *argv]


@contextlib.contextmanager
def unprivileged_server(subordinate_ids: int = 0) -> Iterator[Server]:
    """A server run by UNPRIVILEGED_UID (from root), `--isolation auto`: the sandbox without root. With
    subordinate_ids, that uid has a name and that many subordinate uids and gids (from 400000), as
    `useradd` sets up, in files of the server's own (/etc/passwd, /etc/subuid, /etc/subgid)."""
    top = Path(tempfile.mkdtemp(prefix="lambdalet-unprivileged-"))  # (reachable by that uid, unlike pytest's)
    try:
        os.chmod(top, 0o755)
        (top / "data").mkdir()
        os.chown(top / "data", UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        etc = {}
        if subordinate_ids:
            passwd = Path("/etc/passwd").read_text() + f"lltest:x:{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}::/:/bin/false\n"
            for name, text in (("passwd", passwd), ("subuid", f"lltest:400000:{subordinate_ids}\n"),
                               ("subgid", f"lltest:400000:{subordinate_ids}\n")):
                if os.path.exists(f"/etc/{name}"):  # (a file can only be bound over one that exists)
                    (top / name).write_text(text)
                    os.chmod(top / name, 0o644)
                    etc[f"/etc/{name}"] = top / name
        srv = start_server(top / "data", "--isolation", "auto", as_uid=UNPRIVILEGED_UID, log_dir=top, etc=etc)
        try:
            yield srv
        finally:
            stop_server(srv)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def user_namespaces_allowed() -> bool:
    """Whether UNPRIVILEGED_UID may create a user namespace here (as a plain `unshare -U` tells)."""
    command = ["setpriv", "--reuid", str(UNPRIVILEGED_UID), "--regid", str(UNPRIVILEGED_UID), "--clear-groups",
               "unshare", "-U", "true"]
    return subprocess.run(command, capture_output=True).returncode == 0


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """One real `lambdalet serve` shared by the session's tests (each test uses its own functions)."""
    srv = start_server(tmp_path_factory.mktemp("lambdalet") / "data", "--async-retry-delay", "1")
    yield srv
    stop_server(srv)


def unique_name(prefix: str = "fn") -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def make_zip(files: dict[str, str | bytes], executable: tuple[str, ...] = ("bootstrap",)) -> bytes:
    """A deployment zip from {path: content}; paths in `executable` get mode 0755."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if path in executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
    return buf.getvalue()


def create_function(server: Server, name: str, zip_bytes: bytes, runtime: str = "provided.al2023",
                    handler: str = "function.handler", timeout: int = 3, memory: int = 128,
                    env: dict[str, str] | None = None, **extra) -> dict:
    kwargs = dict(FunctionName=name, Runtime=runtime, Handler=handler, Role="arn:aws:iam::000000000000:role/x",
                  Code={"ZipFile": zip_bytes}, Timeout=timeout, MemorySize=memory, **extra)
    if env:
        kwargs["Environment"] = {"Variables": env}
    return server.lambda_client.create_function(**kwargs)


def log_events(server: Server, function_name: str) -> list[dict]:
    """All log events of a function, in order, across its streams."""
    logs = server.logs_client
    group = f"/aws/lambda/{function_name}"
    events: list[dict] = []
    token = None
    try:
        while True:
            kwargs = {"logGroupName": group}
            if token:
                kwargs["nextToken"] = token
            page = logs.filter_log_events(**kwargs)
            events.extend(page["events"])
            token = page.get("nextToken")
            if not token:
                return events
    except logs.exceptions.ResourceNotFoundException:
        return []


def log_messages(server: Server, function_name: str) -> list[str]:
    """Messages of log_events without the trailing newline every Lambda log event carries."""
    return [e["message"].removesuffix("\n") for e in log_events(server, function_name)]


def wait_for_log(server: Server, function_name: str, predicate, timeout: float = 20.0) -> list[str]:
    """Poll the function's log until predicate(messages) is true; returns the messages."""
    deadline = time.time() + timeout
    while True:
        messages = log_messages(server, function_name)
        if predicate(messages):
            return messages
        if time.time() > deadline:
            raise AssertionError("log condition not met; log was:\n" + "\n".join(messages))
        time.sleep(0.1)
