"""One execution environment: spawn the bootstrap, run the Init/Invoke lifecycle, enforce timeouts, log."""

from lambdalet.environment import fork_servers
from lambdalet.environment.environment import EnvState, ExecutionEnvironment
from lambdalet.environment.leftovers import DataDirInUse, EnvRecords
from lambdalet.environment.managed import is_supported as is_supported_runtime
from lambdalet.environment.netns import NAMESPACES, IsolationUnavailable
from lambdalet.environment.sandbox import HIERARCHY
from lambdalet.environment.spec import RESERVED_VARIABLES, FunctionSpec, LogSink


def release_shared() -> None:
    """End what all environments share: the fork servers, lambdalet's cgroup and the ready network
    namespaces (server shutdown)."""
    fork_servers.shutdown_all()
    HIERARCHY.remove()
    NAMESPACES.close()


def start_network_isolation(isolation: str, api_port: int, serve_api) -> str:
    """Network namespaces per environment as --isolation says, with lambdalet's API on 127.0.0.1:api_port
    inside each (served by serve_api(listening socket)); returns the start-up line's words for it."""
    return NAMESPACES.start(isolation, api_port, serve_api)


__all__ = ["RESERVED_VARIABLES", "DataDirInUse", "EnvRecords", "EnvState", "ExecutionEnvironment", "FunctionSpec",
           "IsolationUnavailable", "LogSink", "is_supported_runtime", "release_shared", "start_network_isolation"]
