"""Embedded state: functions and code (SQLite + files), asynchronous events, log streams.

The names are imported on first use, so that the code-request child process
(`python -m lambdalet.store.request_body`) starts without SQLite and asyncio.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing costs the child ~10 ms
if TYPE_CHECKING:
    from typing import Any

    from lambdalet.store.async_events import AsyncEvent, AsyncEventQueue
    from lambdalet.store.code import CodeStore, InvalidCode, StoredCode
    from lambdalet.store.database import connect
    from lambdalet.store.event_configs import EventConfigStore
    from lambdalet.store.functions import FunctionRecord, FunctionStore
    from lambdalet.store.logstore import LogEvent, LogStore
    from lambdalet.store.recursion_configs import RecursionConfigStore
    from lambdalet.store.versions import AliasRecord, VersionRecord, VersionStore

_EXPORTS = {
    "AsyncEvent": "async_events", "AsyncEventQueue": "async_events",
    "CodeStore": "code", "InvalidCode": "code", "StoredCode": "code",
    "connect": "database",
    "EventConfigStore": "event_configs", "RecursionConfigStore": "recursion_configs",
    "FunctionRecord": "functions", "FunctionStore": "functions",
    "LogEvent": "logstore", "LogStore": "logstore",
    "AliasRecord": "versions", "VersionRecord": "versions", "VersionStore": "versions",
}

__all__ = [
    "AliasRecord", "AsyncEvent", "AsyncEventQueue", "CodeStore", "EventConfigStore", "FunctionRecord",
    "FunctionStore", "InvalidCode", "LogEvent", "LogStore", "RecursionConfigStore", "StoredCode", "VersionRecord",
    "VersionStore", "connect",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines name, on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lambdalet.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lambdalet.store.{module}"), name)
    globals()[name] = value
    return value
