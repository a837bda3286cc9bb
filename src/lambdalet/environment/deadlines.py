"""Invocation deadlines on one loop timer: arming one is a heap push, cancelling it a store.

A uvloop timer per invoke (call_later, then cancel) costs ~9k instructions of the warm path; these cost
~3k. The loop timer is armed for the earliest live deadline, no sooner than a millisecond from now
(libuv's timers have millisecond resolution anyway), so under load it fires at most once a millisecond.
Cancelled entries are dropped as the timer passes them, and all at once when they outnumber the live
ones (900 s timeouts at thousands of invokes a second must not pile up millions of them).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

_MIN_WAIT_S = 0.001
_COMPACT_AT = 1024  # cancelled entries kept at least before the heap is rebuilt without them


class Deadline:
    """One armed deadline; cancel() before it fires and its callback is never called."""

    __slots__ = ("_owner", "callback")

    def __init__(self, owner: Deadlines, callback: Callable[[], None]) -> None:
        self._owner = owner
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._owner.cancelled += 1


class Deadlines:
    """The deadlines of one event loop (loop.time() clock)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # (ties keep arming order, and Deadlines are never compared)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self.cancelled = 0  # entries of the heap whose deadline was cancelled

    def call_at(self, when: float, callback: Callable[[], None]) -> Deadline:
        """Call callback (once) at loop time `when`, unless the Deadline returned is cancelled first."""
        if self.cancelled > _COMPACT_AT and self.cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self.cancelled = 0
        deadline = Deadline(self, callback)
        heapq.heappush(self._heap, (when, next(self._order), deadline))
        if when < self._timer_at:
            self._arm(when)
        return deadline

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        when = max(when, self._loop.time() + _MIN_WAIT_S)
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        heap = self._heap
        now = self._loop.time()
        while heap and heap[0][0] <= now:
            deadline = heapq.heappop(heap)[2]
            callback, deadline.callback = deadline.callback, None
            if callback is None:
                self.cancelled -= 1
            else:
                callback()
        while heap and heap[0][2].callback is None:  # (cancelled ones need no timer)
            heapq.heappop(heap)
            self.cancelled -= 1
        if heap and self._timer is None:
            self._arm(heap[0][0])

    @property
    def pending(self) -> int:
        """Entries in the heap, cancelled ones included (for tests)."""
        return len(self._heap)


_current: Deadlines | None = None


def for_loop(loop: asyncio.AbstractEventLoop) -> Deadlines:
    """The running loop's Deadlines (one loop at a time: a new loop gets new ones)."""
    global _current
    if _current is None or _current._loop is not loop:
        _current = Deadlines(loop)
    return _current
