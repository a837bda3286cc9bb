"""Launch specs for lambdalet's built-in (managed) runtimes.

A ``provided*`` runtime runs the function's own ``bootstrap``; every other runtime name is
resolved here to the command that starts lambdalet's runtime for that language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

PROVIDED_RUNTIMES = ("provided", "provided.al2", "provided.al2023")


class UnsupportedRuntime(ValueError):
    """The runtime name is not one lambdalet can run."""


@dataclass
class LaunchSpec:
    """How to start one managed-runtime process.

    argv[0] is the resolved path of the real executable (never a shell shim).
    env is merged over the platform's environment (reserved variables cannot be overridden
    by the user, but a LaunchSpec may add its own, e.g. AWS_EXECUTION_ENV).
    telemetry_fd asks the environment to pass a log pipe as _LAMBDA_TELEMETRY_LOG_FD
    (AWS's framed log protocol) so that a multi-line record stays one log event.
    warnings are written to the function's log stream when the process starts.
    fork_server, when set, is the command of a fork server that can start argv by forking instead
    (see environment/fork_servers.py): the same argv with its last argument the server's mode flag.
    joins_cgroup: the runtime, while still single-threaded, moves itself into its memory cgroup by
    writing "0" to the file named by $_LAMBDALET_CGROUP_TASKS (removing the variable) when it is set.
    """

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    telemetry_fd: bool = False
    warnings: list[str] = field(default_factory=list)
    fork_server: list[str] | None = None
    joins_cgroup: bool = False


@dataclass
class RuntimeContext:
    """What a managed runtime may need to know to build its LaunchSpec."""

    runtime: str
    task_root: str
    handler: str
    user_env: Mapping[str, str]
    interpreters: Mapping[str, str]  # runtime name -> interpreter path, from `serve --runtime-interpreter`
    memory_mb: int = 128
    opt_dir: str = "/opt"  # where layers would be unpacked
    region: str = "us-east-1"


def is_supported(runtime: str) -> bool:
    """True when lambdalet can run functions of this runtime."""
    try:
        launch_spec(
            RuntimeContext(runtime=runtime, task_root="/", handler="x.y", user_env={}, interpreters={}),
            check_only=True,
        )
    except UnsupportedRuntime:
        return False
    return True


def launch_spec(ctx: RuntimeContext, *, check_only: bool = False) -> LaunchSpec | None:
    """The LaunchSpec for ctx.runtime, or None for provided runtimes (run the zip's bootstrap).

    Raises UnsupportedRuntime for runtime names lambdalet does not implement.
    With check_only, only validates the name (returns None or a placeholder spec).
    """
    runtime = ctx.runtime
    if runtime in PROVIDED_RUNTIMES:
        return None
    if runtime.startswith("python3."):
        from lambdalet.environment.managed import python

        if runtime in python.SUPPORTED:
            return None if check_only else python.launch_spec(ctx)
    if runtime.startswith("nodejs"):
        from lambdalet.environment.managed import nodejs

        if runtime in nodejs.SUPPORTED:
            return None if check_only else nodejs.launch_spec(ctx)
    raise UnsupportedRuntime(runtime)
