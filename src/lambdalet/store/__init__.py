"""Embedded state: functions and code (SQLite + files), asynchronous events, log streams."""

from lambdalet.store.async_events import AsyncEvent, AsyncEventQueue
from lambdalet.store.code import CodeStore, InvalidCode, StoredCode
from lambdalet.store.database import connect
from lambdalet.store.functions import FunctionRecord, FunctionStore
from lambdalet.store.logstore import LogEvent, LogStore

__all__ = [
    "AsyncEvent", "AsyncEventQueue", "CodeStore", "FunctionRecord", "FunctionStore", "InvalidCode", "LogEvent",
    "LogStore", "StoredCode", "connect",
]
