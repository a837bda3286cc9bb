"""Launch spec for lambdalet's Python runtimes (python3.9 ... python3.14).

The process is ``<interpreter> -s -u <runtimes/python/bootstrap.py> <handler>``: ``-s`` keeps the
host user's ~/.local packages out (AWS has none; the server's own ones are passed explicitly below),
``-u`` makes print() reach the log immediately, as AWS's unbuffered stdout does.
"""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Mapping
from pathlib import Path

from lambdalet.environment.managed import LaunchSpec, RuntimeContext

SUPPORTED: frozenset[str] = frozenset(f"python3.{minor}" for minor in range(9, 15))

PYTHON_FLAGS = ("-s", "-u")
RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "python"
BOOTSTRAP = RUNTIME_DIR / "bootstrap.py"
FORK_SERVER_FLAG = "--fork-server"  # bootstrap.py's fork-server mode (environment/fork_servers.py)
# Read (and removed) by runtimes/python/bootstrap.py.
HOST_SITE_ENV = "_LAMBDALET_HOST_SITE_PACKAGES"


def launch_spec(ctx: RuntimeContext) -> LaunchSpec:
    """How to start lambdalet's Python runtime for ctx.runtime (one of SUPPORTED)."""
    warnings: list[str] = []
    interpreter = find_interpreter(ctx.runtime, ctx.interpreters)
    if interpreter is None:
        interpreter = os.path.realpath(sys.executable)
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        warnings.append(
            f"LAMBDALET_WARNING: no {ctx.runtime} interpreter found on this host; running the function "
            f"with {version} ({interpreter}). Install {ctx.runtime} or map it with "
            f"`lambdalet serve --runtime-interpreter {ctx.runtime}=/path/to/python`."
        )
    env = {
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{ctx.runtime}",
        HOST_SITE_ENV: os.pathsep.join(host_site_packages()),
        "_LAMBDALET_OPT_DIR": ctx.opt_dir,
    }
    if "PYTHONPATH" not in ctx.user_env:  # AWS's is $LAMBDA_RUNTIME_DIR (the layers' paths go on sys.path)
        env["PYTHONPATH"] = str(RUNTIME_DIR)
    # An exec wrapper must exec the interpreter, and PYTHON* variables shape its start-up: those start fresh.
    forkable = "AWS_LAMBDA_EXEC_WRAPPER" not in ctx.user_env and not any(k.startswith("PYTHON") for k in ctx.user_env)
    return LaunchSpec(
        argv=[interpreter, *PYTHON_FLAGS, str(BOOTSTRAP), ctx.handler],
        env=env,
        telemetry_fd=True,
        warnings=warnings,
        fork_server=[interpreter, *PYTHON_FLAGS, str(BOOTSTRAP), FORK_SERVER_FLAG] if forkable else None,
        joins_cgroup=True,
    )


def find_interpreter(runtime: str, configured: Mapping[str, str] | None = None) -> str | None:
    """The real executable for `runtime` (e.g. python3.12), or None when the host has none.

    A configured mapping wins. Otherwise PATH is searched for an executable of that name; pyenv
    shim directories are skipped (a shim costs ~90 ms per start) in favour of the pyenv
    installation they front, so the result is always a real binary, never a shell script.
    """
    if configured and configured.get(runtime):
        return os.path.realpath(configured[runtime])
    path = os.environ.get("PATH", os.defpath)
    cached = _found.get((runtime, path))
    if cached is not None and os.access(cached, os.X_OK):
        return cached  # every cold start asks: the PATH walk costs ~0.3 ms of it
    found = _search_path(runtime, path)
    if found is not None:
        _found[(runtime, path)] = found
    return found


_found: dict[tuple[str, str], str] = {}  # (runtime, PATH) -> interpreter found there


def _search_path(runtime: str, path: str) -> str | None:
    shim_roots: list[Path] = []
    for entry in path.split(os.pathsep):
        if not entry:
            continue
        directory = Path(entry)
        if directory.name == "shims":
            shim_roots.append(directory.parent)
            continue
        found = _executable(directory / runtime)
        if found:
            return found
    for root in shim_roots:
        found = _from_pyenv(root, runtime)
        if found:
            return found
    return None


def _from_pyenv(root: Path, runtime: str) -> str | None:
    """The newest pyenv-installed `runtime` binary under root/versions."""
    versions = root / "versions"
    try:
        names = os.listdir(versions)
    except OSError:
        return None
    for name in sorted(names, key=_version_key, reverse=True):
        found = _executable(versions / name / "bin" / runtime)
        if found:
            return found
    return None


def _version_key(name: str) -> tuple[int, ...]:
    parts = []
    for piece in name.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else -1)
    return tuple(parts)


def _executable(candidate: Path) -> str | None:
    real = os.path.realpath(candidate)
    if os.path.isfile(real) and os.access(real, os.X_OK) and not _is_script(real):
        return real
    return None


def _is_script(path: str) -> bool:
    """True for a `#!` script (a shim or wrapper), which must not be spawned as the interpreter."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return True


def host_site_packages() -> list[str]:
    """Site-packages directories of the interpreter lambdalet runs on (so `import boto3` works)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    for entry in sys.path:
        if entry.endswith(("site-packages", "dist-packages")) and entry not in dirs:
            dirs.append(entry)
    return [d for d in dirs if os.path.isdir(d)]
