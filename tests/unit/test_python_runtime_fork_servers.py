"""The fork server (environment/fork_servers.py + runtimes/python/.../fork_server.py) with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from lambdalet.environment import fork_servers
from lambdalet.environment.managed import RuntimeContext
from lambdalet.environment.managed.python import launch_spec


def _spec(tmp_path: Path, handler: str = "app.handler"):
    return launch_spec(RuntimeContext(runtime="python3.12", task_root=str(tmp_path), handler=handler, user_env={},
                                      interpreters={}))


async def _fork(tmp_path: Path, env: dict[str, str], lines: list[str], handler: str = "app.handler",
                wait: bool = True):
    """Fork through the fork server; with wait, retry while it is starting (the first calls return None)."""
    spec = _spec(tmp_path, handler)
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **env, **spec.env}
    for _ in range(500):
        proc = await fork_servers.fork_process(spec.fork_server, spec.argv, cwd=str(tmp_path), env=env,
                                               emit=lines.append, telemetry_fd=True)
        if proc is not None or not wait:
            return proc
        await asyncio.sleep(0.01)
    return None


def test_exit_status_output_and_env_of_forked_children(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os, sys\nprint('cwd', os.getcwd(), 'var', os.environ.get('VAR'), 'argv', sys.argv[1:])\n"
        "os._exit(int(os.environ['CODE']))\n")

    async def scenario() -> None:
        try:
            results = []
            for code, var in ((7, "first"), (0, "second")):
                lines: list[str] = []
                proc = await _fork(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9", "CODE": str(code),
                                              "VAR": var}, lines)
                assert isinstance(proc, fork_servers.ForkedProcess)
                assert await asyncio.wait_for(proc.exited, 10) == code
                await proc.settle_output()
                results.append((proc.returncode, lines))
            assert results[0] == (7, [f"cwd {tmp_path} var first argv ['app.handler']\n"])
            assert results[1] == (0, [f"cwd {tmp_path} var second argv ['app.handler']\n"])
        finally:
            fork_servers.shutdown_all()

    asyncio.run(scenario())


def test_signal_tree_kills_and_is_reported(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import time\ntime.sleep(30)\n")

    async def scenario() -> None:
        try:
            proc = await _fork(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}, [])
            assert proc is not None
            await asyncio.sleep(0.2)
            assert os.getsid(proc.pid) == proc.pid  # its own session: the tree can be ended together
            assert proc.sample_memory() > 0
            await proc.terminate(grace=2.0)
            assert proc.returncode == -signal.SIGTERM
        finally:
            fork_servers.shutdown_all()

    asyncio.run(scenario())


def test_dead_fork_server_ends_its_children_and_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import time\ntime.sleep(30)\n")

    async def scenario() -> None:
        try:
            proc = await _fork(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}, [])
            assert proc is not None
            (first,) = fork_servers._servers.values()
            first.proc.kill()
            assert await asyncio.wait_for(proc.exited, 5) == -signal.SIGKILL
            # the next start is exec'd (None here) while a new fork server starts
            assert await _fork(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}, [], wait=False) is None
            again = await _fork(tmp_path, {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9"}, [])
            assert again is not None
            (second,) = fork_servers._servers.values()
            assert second is not first and not second.dead
            await again.terminate(0.5)
        finally:
            fork_servers.shutdown_all()

    asyncio.run(scenario())


def test_falls_back_when_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fork_servers, "_failures", {})

    async def scenario() -> None:
        lines: list[str] = []
        broken = ["/bin/false", "--fork-server"]
        for _ in range(200):  # /bin/false dies at once, again and again, until the command is given up
            assert await fork_servers.fork_process(broken, ["/bin/false", "h"], cwd=str(tmp_path), env={},
                                                   emit=lines.append) is None
            await asyncio.sleep(0.01)
        assert list(fork_servers._failures.values()) == [fork_servers.MAX_FAILURES]
        fork_servers.shutdown_all()
        monkeypatch.setenv("LAMBDALET_FORK_SERVER", "0")
        assert await _fork(tmp_path, {}, lines, wait=False) is None
        assert not fork_servers._servers

    asyncio.run(scenario())
