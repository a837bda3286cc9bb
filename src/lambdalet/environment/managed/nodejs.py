"""Launch spec for lambdalet's Node.js runtimes (nodejs18.x ... nodejs24.x), run on the host's node.

AWS starts these through a bash bootstrap that sets NODE_PATH, V8 heap flags and AWS_EXECUTION_ENV,
then execs node (or AWS_LAMBDA_EXEC_WRAPPER with node and its args). Spawning bash costs a few ms, so
when no wrapper is set and the memory size is known, the same argv/env is built here and node is
started directly; otherwise runtimes/nodejs/bootstrap (which follows AWS's script) is used.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from lambdalet.environment.managed import LaunchSpec, RuntimeContext

SUPPORTED: frozenset[str] = frozenset({"nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x"})

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtimes" / "nodejs"
ENTRY = RUNTIME_DIR / "index.mjs"
BOOTSTRAP = RUNTIME_DIR / "bootstrap"
BASE_NODE_ARGS = ("--expose-gc", "--max-http-header-size", "81920")
# Any of these in NODE_OPTIONS means the customer sized the heap themselves.
HEAP_OPTIONS = ("--max_semi_space_size", "--max_old_space_size", "--max-semi-space-size", "--max-old-space-size")
RDS_CA_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"
OPT_DIR_ENV = "_LAMBDALET_OPT_DIR"  # read (and removed) by runtimes/nodejs/bootstrap


class NodeNotFound(FileNotFoundError):
    """The host has no node executable for this runtime."""


def runtime_major(runtime: str) -> int:
    """24 for "nodejs24.x"."""
    match = re.fullmatch(r"nodejs(\d+)\.x", runtime)
    if not match:
        raise ValueError(f"not a Node.js runtime: {runtime}")
    return int(match.group(1))


def launch_spec(ctx: RuntimeContext) -> LaunchSpec:
    """How to start lambdalet's Node.js runtime for ctx.runtime (one of SUPPORTED)."""
    major = runtime_major(ctx.runtime)
    node = find_node(ctx.runtime, ctx.interpreters)
    warnings: list[str] = []
    host_major = node_major(node)
    if host_major != major:
        found = f"v{host_major}" if host_major is not None else "of unknown version"
        warnings.append(
            f"LAMBDALET_WARNING: {ctx.runtime} requested but this host's node ({node}) is {found}; "
            f"running the function with it. Map a Node.js {major} with "
            f"`lambdalet serve --runtime-interpreter {ctx.runtime}=/path/to/node`."
        )
    user = ctx.user_env
    opt_dir = ctx.opt_dir or "/opt"
    env = {"AWS_EXECUTION_ENV": f"AWS_Lambda_{ctx.runtime}"}
    if not user.get("NODE_PATH"):
        env["NODE_PATH"] = default_node_path(major, str(RUNTIME_DIR), ctx.task_root, opt_dir)
    ca = extra_ca_certs(user, ctx.region)
    if ca:
        env["NODE_EXTRA_CA_CERTS"] = ca
    memory_mb = ctx.memory_mb
    if user.get("AWS_LAMBDA_EXEC_WRAPPER") or memory_mb is None:
        # The wrapper checks (exit 127/126) and the exec belong to a shell, as on AWS.
        env[OPT_DIR_ENV] = opt_dir
        argv = [bash_path(), str(BOOTSTRAP), node, str(major)]
    else:
        argv = [node, *node_args(int(memory_mb), user.get("NODE_OPTIONS", ""))]
    return LaunchSpec(argv=argv, env=env, telemetry_fd=True, warnings=warnings)


def node_args(memory_mb: int | None, node_options: str) -> list[str]:
    """node's arguments as AWS's bootstrap builds them (without the executable)."""
    return [*BASE_NODE_ARGS, *memory_args(memory_mb, node_options), str(ENTRY)]


def memory_args(memory_mb: int | None, node_options: str) -> list[str]:
    """V8 semi/old space flags for the function's memory size, unless NODE_OPTIONS sets either."""
    if not memory_mb or any(option in node_options for option in HEAP_OPTIONS):
        return []
    new_space = memory_mb // 10
    return [f"--max-semi-space-size={new_space // 6}", f"--max-old-space-size={memory_mb - new_space}"]


def default_node_path(major: int, runtime_dir: str, task_root: str, opt_dir: str = "/opt") -> str:
    """NODE_PATH when the function does not set one: layer dirs, the runtime's, then the task root."""
    return ":".join((
        f"{opt_dir}/nodejs/node{major}/node_modules",
        f"{opt_dir}/nodejs/node_modules",
        f"{runtime_dir}/node_modules",
        runtime_dir,
        task_root,
    ))


def extra_ca_certs(user_env: Mapping[str, str], region: str | None) -> str | None:
    """AWS adds the RDS CA bundle in regions with three dashes (not GovCloud) unless the user chose one."""
    if "NODE_EXTRA_CA_CERTS" in user_env or not region:
        return None
    if region.startswith("us-gov") or region.count("-") != 3 or not os.path.isfile(RDS_CA_BUNDLE):
        return None
    return RDS_CA_BUNDLE


def find_node(runtime: str, configured: Mapping[str, str] | None = None) -> str:
    """The real node executable for runtime: the configured one, else `node` on PATH."""
    if configured and configured.get(runtime):
        return os.path.realpath(configured[runtime])
    found = shutil.which("node")
    if not found:
        raise NodeNotFound(
            f"{runtime}: no `node` found on PATH; install Node.js or map one with "
            f"`lambdalet serve --runtime-interpreter {runtime}=/path/to/node`"
        )
    return os.path.realpath(found)


@functools.lru_cache(maxsize=16)
def _node_version(node: str, mtime_ns: int) -> str:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def node_major(node: str) -> int | None:
    """The major version of a node executable (cached per file), or None if it cannot be run."""
    try:
        mtime = os.stat(node).st_mtime_ns
    except OSError:
        return None
    match = re.match(r"v(\d+)\.", _node_version(node, mtime))
    return int(match.group(1)) if match else None


@functools.cache
def bash_path() -> str:
    """The real bash executable (for the wrapper-capable bootstrap)."""
    return os.path.realpath(shutil.which("bash") or "/bin/bash")
