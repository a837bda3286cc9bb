"""Per function: warm pool, scale-out, concurrency limits, throttling, idle reaping."""

# What the api needs to know of environments reaches it through here, its neighbour.
from lambdalet.environment import RESERVED_VARIABLES, DataDirInUse, FunctionSpec, is_supported_runtime
from lambdalet.scheduler.pool import Limits, Scheduler, Throttled

__all__ = ["RESERVED_VARIABLES", "DataDirInUse", "FunctionSpec", "Limits", "Scheduler", "Throttled",
           "is_supported_runtime"]
