"""launch_spec for python3.x: interpreter choice, argv, environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lambdalet.environment.managed import RuntimeContext, is_supported
from lambdalet.environment.managed import launch_spec as dispatch
from lambdalet.environment.managed.python import (
    BOOTSTRAP,
    HOST_SITE_ENV,
    SUPPORTED,
    find_interpreter,
    launch_spec,
)


def ctx(runtime: str = "python3.12", interpreters: dict[str, str] | None = None) -> RuntimeContext:
    return RuntimeContext(runtime=runtime, task_root="/tmp", handler="app.handler", user_env={},
                          interpreters=interpreters or {})


def fake_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF fake")
    path.chmod(0o755)
    return path


def test_supported_names() -> None:
    assert {f"python3.{m}" for m in range(9, 15)} == SUPPORTED
    assert all(is_supported(name) for name in SUPPORTED)
    assert not is_supported("python3.8") and not is_supported("python2.7")


def test_spec_shape() -> None:
    spec = dispatch(ctx())
    assert spec is not None
    assert os.path.isabs(spec.argv[0]) and os.path.realpath(spec.argv[0]) == spec.argv[0]
    assert spec.argv[1:] == ["-s", "-u", str(BOOTSTRAP), "app.handler"]
    assert BOOTSTRAP.is_file()
    assert spec.env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert spec.telemetry_fd is True
    host_site = spec.env[HOST_SITE_ENV].split(os.pathsep)
    assert any(Path(p, "boto3").is_dir() for p in host_site)


def test_configured_interpreter_wins(tmp_path: Path) -> None:
    binary = fake_binary(tmp_path / "real" / "python3.12")
    link = tmp_path / "link"
    link.symlink_to(binary)
    spec = launch_spec(ctx(interpreters={"python3.12": str(link)}))
    assert spec.argv[0] == str(binary)
    assert not spec.warnings


def test_path_search_skips_shims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shims = tmp_path / "pyenv" / "shims"
    shim = shims / "python3.12"
    shim.parent.mkdir(parents=True)
    shim.write_text("#!/usr/bin/env bash\nexec pyenv exec python3.12 \"$@\"\n")
    shim.chmod(0o755)
    old = fake_binary(tmp_path / "pyenv" / "versions" / "3.12.1" / "bin" / "python3.12")
    new = fake_binary(tmp_path / "pyenv" / "versions" / "3.12.10" / "bin" / "python3.12")
    script_dir = tmp_path / "scripts"
    script = script_dir / "python3.12"
    script_dir.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), str(script_dir)]))
    assert find_interpreter("python3.12") == str(new)
    assert old.exists()
    plain = fake_binary(tmp_path / "bin" / "python3.12")
    monkeypatch.setenv("PATH", os.pathsep.join([str(shims), str(tmp_path / "bin")]))
    assert find_interpreter("python3.12") == str(plain)


def test_fallback_warns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = launch_spec(ctx("python3.14"))
    assert spec.argv[0] == os.path.realpath(sys.executable)
    assert len(spec.warnings) == 1
    assert "python3.14" in spec.warnings[0] and "--runtime-interpreter" in spec.warnings[0]


@pytest.mark.parametrize(("user_env", "forked"), [
    ({}, True),
    ({"COLOR": "blue"}, True),
    ({"AWS_LAMBDA_EXEC_WRAPPER": "/var/task/wrap.sh"}, False),
    ({"PYTHONDONTWRITEBYTECODE": "1"}, False),
])
def test_fork_server_only_when_a_fresh_start_is_not_needed(user_env: dict[str, str], forked: bool) -> None:
    spec = launch_spec(RuntimeContext(runtime="python3.12", task_root="/tmp", handler="app.handler",
                                      user_env=user_env, interpreters={}))
    assert (spec.fork_server is not None) is forked
    if forked:
        assert spec.fork_server[:-1] == spec.argv[:-1] and spec.fork_server[-1] == "--fork-server"


def test_a_remembered_interpreter_that_goes_is_searched_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fake_binary(tmp_path / "a" / "python3.12")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert find_interpreter("python3.12") == str(first)
    assert find_interpreter("python3.12") == str(first)  # remembered (every cold start asks)
    later = fake_binary(tmp_path / "b" / "python3.12")
    first.unlink()
    assert find_interpreter("python3.12") == str(later)
    later.unlink()
    assert find_interpreter("python3.12") is None
