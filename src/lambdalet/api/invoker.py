"""Running invocations for the front door: synchronous, streamed, and durable asynchronous (Event) ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from lambdalet.api.destinations import Destinations
from lambdalet.api.errors import AwsError
from lambdalet.api.event_configs import AsyncSettings, EventInvokeConfigs
from lambdalet.api.functions import FunctionManager, Target
from lambdalet.invocation import Invocation, Outcome, ResponseStream, error_document
from lambdalet.limits import MAX_PAYLOAD
from lambdalet.scheduler import Scheduler, Throttled
from lambdalet.store import AsyncEvent, AsyncEventQueue

log = logging.getLogger("lambdalet.invoker")


def throttled_error(exc: Throttled) -> AwsError:
    return AwsError(429, "TooManyRequestsException", "Rate Exceeded.", Reason=exc.reason)


async def collect(stream: ResponseStream) -> Outcome:
    """A streamed response as one buffered Outcome (for callers that cannot take a stream)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.chunks():
        size += len(chunk)
        if size <= MAX_PAYLOAD:
            parts.append(chunk)
    if stream.error_type is not None:
        body = stream.error_body or error_document(stream.error_type, stream.error_type)
        return Outcome(payload=body, function_error="Unhandled", error_type=stream.error_type)
    if size > MAX_PAYLOAD:
        msg = f"Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
        return Outcome(payload=error_document("Function.ResponseSizeTooLarge", msg), function_error="Unhandled",
                       error_type="Function.ResponseSizeTooLarge")
    return Outcome(payload=b"".join(parts), content_type=stream.content_type)


class Invoker:
    """Hands invocations to the scheduler, and runs accepted Event invocations in the background."""

    def __init__(self, functions: FunctionManager, scheduler: Scheduler, queue: AsyncEventQueue,
                 event_configs: EventInvokeConfigs, destinations: Destinations,
                 async_retry_delay_s: float = 60.0) -> None:
        self.functions = functions
        self.scheduler = scheduler
        self.queue = queue
        self.event_configs = event_configs
        self.destinations = destinations
        self.async_retry_delay_s = async_retry_delay_s
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def prepare(self, rec: Target) -> None:
        """Make sure the scheduler runs the current revision of the function (or of the version)."""
        pool = self.scheduler.pools.get(rec.pool_key)
        if pool is None or pool.spec.revision_id != rec.config["RevisionId"] \
                or pool.reserved != rec.reserved_concurrency:
            self.scheduler.configure(self.functions.spec(rec), rec.reserved_concurrency)

    async def start(self, rec: Target, inv: Invocation) -> None:
        """Start inv on an environment (raises AwsError when throttled)."""
        self.prepare(rec)
        try:
            await self.scheduler.invoke(rec.pool_key, inv)
        except Throttled as exc:
            raise throttled_error(exc) from None

    def start_now(self, rec: Target, inv: Invocation) -> bool:
        """Start inv without suspending, when that keeps Lambda's semantics; False to use start()."""
        self.prepare(rec)
        try:
            return self.scheduler.start_now(rec.pool_key, inv)
        except Throttled as exc:
            raise throttled_error(exc) from None

    async def invoke(self, rec: Target, inv: Invocation, *, wait_done: bool = False) -> Outcome:
        """Run inv and return its buffered outcome."""
        await self.start(rec, inv)
        outcome = await inv.outcome
        if outcome.stream is not None:
            outcome = await collect(outcome.stream)
        if wait_done:
            await inv.done
        return outcome

    # -- asynchronous invocations
    def enqueue(self, rec: Target, inv: Invocation) -> None:
        # Queued as invoked (`name` or `name:qualifier`): an alias routes each attempt when it runs.
        ref = inv.invoked_arn.rpartition(":function:")[2]
        self.queue.put(ref, inv.request_id, inv.payload, inv.client_context)
        self._wakeup.set()

    def start_worker(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._work())

    def stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for event in self.queue.due():
                if event.id not in self._running:
                    self._running.add(event.id)
                    task = loop.create_task(self._run_event(event))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            next_due = self.queue.next_due()
            delay = 1.0 if next_due is None else min(1.0, max(0.01, next_due - time.time()))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    async def _run_event(self, event: AsyncEvent) -> None:
        try:
            await self._attempt(event)
        except Exception:
            log.exception("asynchronous invocation %s failed", event.request_id)
            # a system error, as Lambda counts them: not an attempt; tried again until the event is too old
            self.queue.postpone(event.id, self.async_retry_delay_s, attempted=False)
        finally:
            self._running.discard(event.id)
            self._wakeup.set()

    async def _attempt(self, event: AsyncEvent) -> None:
        """One try at an Event invocation, under the event invoke configuration of what was invoked."""
        found = self.functions.find(event.function)  # (`name` or `name:qualifier`, as invoked)
        if found is None:  # the function, version or alias is gone
            self.queue.delete(event.id)
            return
        target, arn = found
        name, _, qualifier = event.function.partition(":")
        qualifier = qualifier or "$LATEST"
        settings = self.event_configs.settings(name, qualifier)
        if time.time() - event.created > settings.max_age_s:  # too old: dropped, not run
            self._finish(target, qualifier, event, "EventAgeExceeded", event.attempts, None, settings)
            return
        inv = Invocation(payload=event.payload, invoked_arn=arn, request_id=event.request_id,
                         client_context=event.client_context, executed_version=target.version)
        try:
            outcome = await self.invoke(target, inv, wait_done=True)
        except AwsError:  # throttled: try again shortly, not counted as an attempt
            self.queue.postpone(event.id, 0.5, attempted=False)
            return
        if not outcome.function_error:
            self._finish(target, qualifier, event, "Success", event.attempts + 1, outcome, settings)
        elif event.attempts < settings.max_retries:
            self.queue.postpone(event.id, self.async_retry_delay_s * (event.attempts + 1), attempted=True)
        else:
            self._finish(target, qualifier, event, "RetriesExhausted", event.attempts + 1, outcome, settings)

    def _finish(self, rec: Target, qualifier: str, event: AsyncEvent, condition: str, invoke_count: int,
                outcome: Outcome | None, settings: AsyncSettings) -> None:
        follow_ups = self.destinations.deliveries(rec, qualifier, event, condition, invoke_count, outcome, settings)
        self.queue.complete(event.id, follow_ups)
