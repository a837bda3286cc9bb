"""The Runtime API state machine for one bootstrap process: what /next, /response and /error may do when.

States and transitions follow Lambda's runtime states (Started, Ready, Running, ResponseSent,
InitError). The session knows nothing about HTTP; the server turns its answers into responses,
and it tells its listener (the execution environment) about the moments that matter.
"""

from __future__ import annotations

import asyncio
import enum
import re
from collections.abc import Callable
from typing import Protocol

from lambdalet.invocation import Invocation, Outcome

_ERROR_TYPE = re.compile(r"(Runtime|Function)\.[A-Z][a-zA-Z]+")


class State(enum.Enum):
    STARTED = "Started"
    READY = "Ready"
    RUNNING = "Running"
    RESPONSE_SENT = "RuntimeResponseSent"
    INIT_ERROR = "InitError"


# (module globals: an enum member looked up on its class costs ~900 instructions on Python 3.11)
_STARTED, _READY, _RUNNING, _RESPONSE_SENT, _INIT_ERROR = (
    State.STARTED, State.READY, State.RUNNING, State.RESPONSE_SENT, State.INIT_ERROR)


class RuntimeApiError(Exception):
    """An error answer of the Runtime API: HTTP status plus Lambda's errorType and errorMessage."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def invalid_transition(current: str, target: str) -> RuntimeApiError:
    return RuntimeApiError(
        403, "InvalidStateTransition",
        f"State transition from {current} to {target} failed for runtime. Error: State transition is not allowed",
    )


def invalid_request_id() -> RuntimeApiError:
    return RuntimeApiError(400, "InvalidRequestID", "Invalid request ID")


def platform_error_type(header: str | None) -> str:
    """The error type Lambda records for a Lambda-Runtime-Function-Error-Type header value."""
    if header and _ERROR_TYPE.search(header):
        return header
    if header and header.startswith("Function."):
        return "Function.Unknown"
    return "Runtime.Unknown"


class RuntimeListener(Protocol):
    """The execution environment, told about the runtime's progress."""

    def runtime_ready(self) -> None:
        """The first /next arrived: init is complete."""

    def invocation_finished(self) -> None:
        """/next arrived after a response or error: the current invocation has ended."""

    def init_error(self, error_type: str, body: bytes) -> None:
        """The runtime reported an init error."""


class RuntimeSession:
    """Runtime API state for one bootstrap process."""

    def __init__(self, listener: RuntimeListener) -> None:
        self.listener = listener
        self.state = _STARTED
        self.current: Invocation | None = None
        self._deliver: Callable[[Invocation], None] | None = None  # the parked /next
        self._waiter: asyncio.Future[Invocation] | None = None  # next()'s, while it waits

    # -- called by the environment
    def assign(self, inv: Invocation) -> None:
        """Hand an invocation to the runtime's parked /next (the runtime must be Ready)."""
        if self.state is not _READY:
            raise RuntimeError(f"runtime not ready for an invocation (state {self.state.value})")
        self.current = inv
        self.state = _RUNNING
        deliver, self._deliver = self._deliver, None
        if deliver is not None:
            deliver(inv)  # answer the parked /next now; without one, the runtime's next /next gets it

    @property
    def parked(self) -> bool:
        return self._deliver is not None

    def close(self) -> None:
        """The process is gone: drop a parked /next."""
        self._deliver = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()
        self._waiter = None

    # -- called by the Runtime API server
    async def next(self) -> Invocation:
        """The runtime's /next, awaited: the invocation to run."""
        fut = asyncio.get_running_loop().create_future()

        def deliver(inv: Invocation) -> None:
            if not fut.done():
                fut.set_result(inv)

        inv = self.park_next(deliver)
        if inv is not None:
            return inv
        self._waiter = fut
        try:
            return await fut
        except asyncio.CancelledError:
            self.unpark(deliver)
            raise
        finally:
            if self._waiter is fut:
                self._waiter = None

    def unpark(self, deliver: Callable[[Invocation], None]) -> None:
        """The parked /next's connection went away: the runtime's next /next gets the invocation."""
        if self._deliver is deliver:
            self._deliver = None

    def park_next(self, deliver: Callable[[Invocation], None]) -> Invocation | None:
        """The runtime's /next: the invocation to run now, or None when deliver(invocation) is
        called later, the moment one is assigned (a newer /next replaces one left parked)."""
        state = self.state
        if state is _INIT_ERROR:
            raise invalid_transition("InitError", "Ready")
        if state is _RUNNING and self.current is not None:
            return self.current  # an unanswered event is handed out again
        self.state = _READY
        if state is _STARTED:
            self.listener.runtime_ready()
        elif state is _RESPONSE_SENT:
            self.current = None
            self.listener.invocation_finished()
        if self.state is _RUNNING and self.current is not None:
            return self.current  # the listener assigned an invocation synchronously
        self._deliver = deliver
        return None

    def check_response(self, request_id: str, target: str) -> Invocation:
        """Validate a /response or /error for request_id; returns the invocation it answers."""
        inv = self.current
        if inv is None or request_id != inv.request_id:
            raise invalid_request_id()
        if self.state is not _RUNNING:
            raise invalid_transition(self.state.value, target)
        return inv

    def respond(self, inv: Invocation, outcome: Outcome) -> None:
        """Record the runtime's answer for the current invocation and pass it to the caller."""
        self.state = _RESPONSE_SENT
        inv.resolve(outcome)

    def init_failed(self, header: str | None, body: bytes) -> None:
        if self.state is not _STARTED:
            raise invalid_transition(self.state.value, "InitError")
        self.state = _INIT_ERROR
        self.listener.init_error(platform_error_type(header), body)
