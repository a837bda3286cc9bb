"""The Runtime API state machine: what /next, /response, /error and /init/error may do when."""

from __future__ import annotations

import asyncio

import pytest

from lambdalet.invocation import Invocation, Outcome
from lambdalet.runtime_api.session import RuntimeApiError, RuntimeSession, State, platform_error_type


class Listener:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.init_errors: list[tuple[str, bytes]] = []

    def runtime_ready(self) -> None:
        self.events.append("ready")

    def invocation_finished(self) -> None:
        self.events.append("finished")

    def init_error(self, error_type: str, body: bytes) -> None:
        self.init_errors.append((error_type, body))


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(("header", "expected"), [
    ("Runtime.ImportModuleError", "Runtime.ImportModuleError"),
    ("Function.MyError", "Function.MyError"),
    ("Bootstrap.Unhandled", "Runtime.Unknown"),
    ("Unhandled", "Runtime.Unknown"),
    (None, "Runtime.Unknown"),
    ("Function.x", "Function.Unknown"),
    ("Runtime.lowercase", "Runtime.Unknown"),
])
def test_error_type_header_validation(header, expected):
    assert platform_error_type(header) == expected


def test_first_next_signals_ready_and_parks_until_assigned():
    async def scenario():
        listener = Listener()
        session = RuntimeSession(listener)
        task = asyncio.ensure_future(session.next())
        await asyncio.sleep(0)
        assert listener.events == ["ready"] and session.state is State.READY and session.parked
        inv = Invocation(payload=b"{}", invoked_arn="arn")
        session.assign(inv)
        assert await task is inv
        assert session.state is State.RUNNING
        # /next again before responding returns the same event at once
        assert await session.next() is inv
        session.check_response(inv.request_id, "InvocationResponse")
        session.respond(inv, Outcome(payload=b'"ok"'))
        assert (await inv.outcome).payload == b'"ok"'
        with pytest.raises(RuntimeApiError) as dup:
            session.check_response(inv.request_id, "InvocationResponse")
        assert dup.value.status == 403 and dup.value.error_type == "InvalidStateTransition"
        with pytest.raises(RuntimeApiError) as wrong:
            session.check_response("other-id", "InvocationResponse")
        assert (wrong.value.status, wrong.value.error_type) == (400, "InvalidRequestID")
        task = asyncio.ensure_future(session.next())
        await asyncio.sleep(0)
        assert listener.events == ["ready", "finished"] and session.current is None
        with pytest.raises(RuntimeApiError) as stale:
            session.check_response(inv.request_id, "InvocationResponse")
        assert stale.value.status == 400
        task.cancel()

    run(scenario())


def test_init_error_only_before_first_next_and_then_next_is_refused():
    async def scenario():
        listener = Listener()
        session = RuntimeSession(listener)
        session.init_failed("Bootstrap.Unhandled", b'{"errorMessage":"x"}')
        assert listener.init_errors == [("Runtime.Unknown", b'{"errorMessage":"x"}')]
        with pytest.raises(RuntimeApiError) as exc:
            await session.next()
        assert exc.value.status == 403
        assert exc.value.message == ("State transition from InitError to Ready failed for runtime. "
                                     "Error: State transition is not allowed")
        other = RuntimeSession(Listener())
        task = asyncio.ensure_future(other.next())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeApiError) as late:
            other.init_failed("Runtime.X", b"")
        assert late.value.status == 403 and "to InitError" in late.value.message
        task.cancel()

    run(scenario())


def test_assign_requires_ready_and_tolerates_a_dropped_next():
    async def scenario():
        session = RuntimeSession(Listener())
        with pytest.raises(RuntimeError):
            session.assign(Invocation(payload=b"{}", invoked_arn="arn"))
        task = asyncio.ensure_future(session.next())
        await asyncio.sleep(0)
        task.cancel()  # the runtime's connection went away while parked
        await asyncio.sleep(0)
        inv = Invocation(payload=b"{}", invoked_arn="arn")
        session.assign(inv)
        assert await session.next() is inv  # delivered on its next /next

    run(scenario())
