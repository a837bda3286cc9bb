"""Per function: warm pool, scale-out, concurrency limits, throttling, idle reaping."""

# What the api needs to know of environments reaches it through here, its neighbour.
from lambdalet.environment import (
    RESERVED_VARIABLES,
    DataDirInUse,
    FunctionSpec,
    IsolationUnavailable,
    is_supported_runtime,
    start_network_isolation,
)
from lambdalet.scheduler.pool import Limits, Scheduler, Throttled

__all__ = ["RESERVED_VARIABLES", "DataDirInUse", "FunctionSpec", "IsolationUnavailable", "Limits", "Scheduler",
           "Throttled", "is_supported_runtime", "start_network_isolation"]
