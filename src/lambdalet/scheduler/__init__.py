"""Per function: warm pool, scale-out, concurrency limits, throttling, idle reaping."""

from lambdalet.scheduler.pool import Limits, Scheduler, Throttled

__all__ = ["Limits", "Scheduler", "Throttled"]
