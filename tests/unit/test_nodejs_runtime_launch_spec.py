"""launch_spec for nodejsNN.x and the bash bootstrap (NODE_PATH, heap flags, exec wrapper)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_nodejs_runtime_stub import MemoryContext

from lambdalet.environment.managed import is_supported
from lambdalet.environment.managed import nodejs as launch

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
HOST_MAJOR = launch.node_major(os.path.realpath(NODE)) if NODE else None


def ctx(runtime: str = "nodejs20.x", user_env: dict[str, str] | None = None, memory_mb: int | None = 1024,
        interpreters: dict[str, str] | None = None) -> MemoryContext:
    return MemoryContext(runtime=runtime, task_root="/task", handler="index.handler",
                         user_env=user_env or {}, interpreters=interpreters or {}, memory_mb=memory_mb)


def test_supported_runtimes() -> None:
    assert sorted(launch.SUPPORTED) == ["nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x"]
    for runtime in launch.SUPPORTED:
        assert is_supported(runtime)
    assert not is_supported("nodejs16.x")


def test_direct_node_argv_and_env() -> None:
    spec = launch.launch_spec(ctx("nodejs24.x"))
    rt = str(launch.RUNTIME_DIR)
    assert spec.argv == [
        os.path.realpath(NODE), "--expose-gc", "--max-http-header-size", "81920",
        "--max-semi-space-size=17", "--max-old-space-size=922", f"{rt}/index.mjs",
    ]
    assert spec.env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs24.x"
    assert spec.env["NODE_PATH"] == (
        f"/opt/nodejs/node24/node_modules:/opt/nodejs/node_modules:{rt}/node_modules:{rt}:/task"
    )
    assert spec.telemetry_fd is True


@pytest.mark.parametrize("memory,semi,old", [(128, 2, 116), (1024, 17, 922), (10240, 170, 9216)])
def test_memory_flags_formula(memory: int, semi: int, old: int) -> None:
    assert launch.memory_args(memory, "") == [f"--max-semi-space-size={semi}", f"--max-old-space-size={old}"]


@pytest.mark.parametrize("option", [
    "--max_semi_space_size=8", "--max_old_space_size=300", "--max-semi-space-size=8", "--max-old-space-size=300",
])
def test_node_options_heap_setting_disables_memory_flags(option: str) -> None:
    spec = launch.launch_spec(ctx(user_env={"NODE_OPTIONS": f"--enable-source-maps {option}"}))
    assert not any(a.startswith(("--max-semi", "--max-old")) for a in spec.argv)


def test_user_node_path_is_kept() -> None:
    spec = launch.launch_spec(ctx(user_env={"NODE_PATH": "/mine"}))
    assert "NODE_PATH" not in spec.env


def test_wrapper_goes_through_bash_bootstrap() -> None:
    spec = launch.launch_spec(ctx("nodejs22.x", user_env={"AWS_LAMBDA_EXEC_WRAPPER": "/w"}))
    assert spec.argv == [launch.bash_path(), str(launch.BOOTSTRAP), os.path.realpath(NODE), "22"]
    assert os.path.isabs(spec.argv[0]) and not os.path.islink(spec.argv[0])


def test_unknown_memory_goes_through_bash_bootstrap() -> None:
    spec = launch.launch_spec(ctx(memory_mb=None))
    assert spec.argv[1] == str(launch.BOOTSTRAP)


def test_version_warning_only_when_major_differs() -> None:
    same = launch.launch_spec(ctx(f"nodejs{HOST_MAJOR}.x")) if f"nodejs{HOST_MAJOR}.x" in launch.SUPPORTED else None
    if same is not None:
        assert same.warnings == []
    other = next(r for r in sorted(launch.SUPPORTED) if r != f"nodejs{HOST_MAJOR}.x")
    spec = launch.launch_spec(ctx(other))
    assert len(spec.warnings) == 1
    assert other in spec.warnings[0] and f"v{HOST_MAJOR}" in spec.warnings[0]


def test_configured_interpreter_wins(tmp_path: Path) -> None:
    link = tmp_path / "mynode"
    link.symlink_to(os.path.realpath(NODE))
    spec = launch.launch_spec(ctx(interpreters={"nodejs20.x": str(link)}))
    assert spec.argv[0] == os.path.realpath(NODE)


def test_no_node_on_path_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(launch.NodeNotFound, match="no `node` found"):
        launch.launch_spec(ctx())


# --- the bash bootstrap, run for real with a fake "node" that prints what it got ----------------------

FAKE_NODE = """#!/bin/sh
printf 'ARGV'; for a in "$@"; do printf ' [%s]' "$a"; done; echo
echo "NODE_PATH=$NODE_PATH"
echo "AWS_EXECUTION_ENV=$AWS_EXECUTION_ENV"
echo "WRAPPED=$WRAPPED"
"""


def run_bootstrap(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "fake-node"
    fake.write_text(FAKE_NODE)
    fake.chmod(0o755)
    base = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": "/task", "LAMBDA_RUNTIME_DIR": "/rt",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024"}
    return subprocess.run([launch.bash_path(), str(launch.BOOTSTRAP), str(fake), "24"], env={**base, **env},
                          capture_output=True, text=True, timeout=10, check=False)


def test_bootstrap_matches_direct_launch(tmp_path: Path) -> None:
    out = run_bootstrap(tmp_path, {})
    assert out.returncode == 0, out.stderr
    index = f"{launch.RUNTIME_DIR}/index.mjs"
    assert out.stdout.splitlines()[:3] == [
        f"ARGV [--expose-gc] [--max-http-header-size] [81920] [--max-semi-space-size=17] "
        f"[--max-old-space-size=922] [{index}]",
        "NODE_PATH=/opt/nodejs/node24/node_modules:/opt/nodejs/node_modules:/rt/node_modules:/rt:/task",
        "AWS_EXECUTION_ENV=AWS_Lambda_nodejs24.x",
    ]
    assert launch.node_args(1024, "") == out.stdout.split("\n")[0].replace("ARGV ", "").replace("[", "").replace(
        "]", "").split(" ")


def test_bootstrap_keeps_node_path_and_heap_options(tmp_path: Path) -> None:
    out = run_bootstrap(tmp_path, {"NODE_PATH": "/mine", "NODE_OPTIONS": "--max_old_space_size=64"})
    lines = out.stdout.splitlines()
    assert "--max-" not in lines[0].replace("--max-http-header-size", "")
    assert lines[1] == "NODE_PATH=/mine"


def test_bootstrap_exec_wrapper_gets_node_and_args(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/bash\nexport WRAPPED=yes\nexec "$@"\n')
    wrapper.chmod(0o755)
    out = run_bootstrap(tmp_path, {"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("ARGV [--expose-gc]")
    assert "WRAPPED=yes" in out.stdout


def test_bootstrap_wrapper_missing_exits_127(tmp_path: Path) -> None:
    out = run_bootstrap(tmp_path, {"AWS_LAMBDA_EXEC_WRAPPER": "/nope/wrapper"})
    assert out.returncode == 127
    assert out.stdout == "/nope/wrapper: does not exist\n"


def test_bootstrap_wrapper_not_executable_exits_126(tmp_path: Path) -> None:
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text("#!/bin/sh\n")
    wrapper.chmod(0o644)
    out = run_bootstrap(tmp_path, {"AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)})
    assert out.returncode == 126
    assert out.stdout == f"{wrapper}: is not an executable\n"
