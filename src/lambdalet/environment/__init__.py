"""One execution environment: spawn the bootstrap, run the Init/Invoke lifecycle, enforce timeouts, log."""

from lambdalet.environment.environment import EnvState, ExecutionEnvironment
from lambdalet.environment.spec import FunctionSpec, LogSink

__all__ = ["EnvState", "ExecutionEnvironment", "FunctionSpec", "LogSink"]
