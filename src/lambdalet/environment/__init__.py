"""One execution environment: spawn the bootstrap, run the Init/Invoke lifecycle, enforce timeouts, log."""

from lambdalet.environment import fork_servers
from lambdalet.environment.environment import EnvState, ExecutionEnvironment
from lambdalet.environment.leftovers import DataDirInUse, EnvRecords
from lambdalet.environment.managed import is_supported as is_supported_runtime
from lambdalet.environment.sandbox import HIERARCHY
from lambdalet.environment.spec import RESERVED_VARIABLES, FunctionSpec, LogSink


def release_shared() -> None:
    """End what all environments share: the fork servers and lambdalet's cgroup (server shutdown)."""
    fork_servers.shutdown_all()
    HIERARCHY.remove()


__all__ = ["RESERVED_VARIABLES", "DataDirInUse", "EnvRecords", "EnvState", "ExecutionEnvironment", "FunctionSpec",
           "LogSink", "is_supported_runtime", "release_shared"]
