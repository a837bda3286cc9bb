"""Per-function warm pools: pick or create an execution environment for each invocation.

An environment runs one invocation at a time. An invocation takes the most recently used idle
environment (warm start), else one whose Init phase is running, else one whose last init failed
(it retries init inside the invoke, as Lambda does), else a new environment (cold start) while
the function's and the server's concurrency allow, else it is throttled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass, replace

from lambdalet.credentials import CredentialStore
from lambdalet.environment import EnvRecords, EnvState, ExecutionEnvironment, FunctionSpec, LogSink, release_shared
from lambdalet.invocation import Invocation

log = logging.getLogger("lambdalet.scheduler")


class Throttled(Exception):
    """No environment may be started for this invocation: a concurrency limit is reached."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Limits:
    max_concurrency: int = 1000  # environments across all functions, like an account's limit
    idle_timeout_s: float = 600.0  # idle environments are ended after this long


# (module globals: an enum member looked up on its class costs ~900 instructions on Python 3.11)
_INITIALIZING, _READY, _BUSY, _FAILED = (EnvState.INITIALIZING, EnvState.READY, EnvState.BUSY,
                                         EnvState.FAILED)

_PREFERENCE = {_READY: 0, _INITIALIZING: 1, _FAILED: 2}
# An invocation arriving while an environment has answered but not yet called /next again waits this
# long for it before starting a new environment: back-to-back calls then stay on one warm environment.
FINISHING_GRACE_S = 0.1


class FunctionPool:
    """The environments of one function version."""

    def __init__(self, spec: FunctionSpec, reserved: int | None, group: list[FunctionPool] | None = None) -> None:
        self.spec = spec
        self.reserved = reserved
        # The pools of every version of the function (its reserved concurrency is shared by them).
        self.group: list[FunctionPool] = [] if group is None else group
        self.group.append(self)
        self.envs: list[ExecutionEnvironment] = []
        # Environments that went back to Ready, the most recently used last: a warm invoke takes the
        # top one without scanning them all. Entries that went stale since are dropped as met.
        self.ready: list[ExecutionEnvironment] = []
        self.ready_provisioned: list[ExecutionEnvironment] = []  # the same, for provisioned ones: taken first
        self.waiters: deque[asyncio.Future[None]] = deque()  # invocations waiting for a finishing one

    @property
    def busy(self) -> int:
        """Environments running (or about to run) an invocation."""
        return sum(1 for e in self.envs if e.state is _BUSY or e.waiting_invoke)

    def pick(self) -> ExecutionEnvironment | None:
        """The environment an invocation should take now, or None (see the module docstring)."""
        for ready in (self.ready_provisioned, self.ready):  # (as on Lambda: provisioned concurrency first)
            while ready:
                env = ready[-1]
                if env.state is _READY and env.available:
                    return env
                ready.pop()
        best: ExecutionEnvironment | None = None
        for env in self.envs:
            if not env.available:
                continue
            if best is None or (not env.provisioned, _PREFERENCE[env.state], -env.last_used) < (
                    not best.provisioned, _PREFERENCE[best.state], -best.last_used):
                best = env
        return best

    def take_ready(self) -> ExecutionEnvironment | None:
        """Claim the most recently used Ready environment (a provisioned one first), if there is one:
        the warm path's whole pick."""
        for ready in (self.ready_provisioned, self.ready):
            while ready:
                env = ready.pop()
                if env.claim_ready():
                    return env
        return None

    def take(self, env: ExecutionEnvironment) -> None:
        """Claim env, picked: no other invocation may pick it."""
        ready = self.ready_provisioned if env.provisioned else self.ready
        if ready and ready[-1] is env:
            ready.pop()
        env.claim()

    def freed(self, env: ExecutionEnvironment) -> None:
        """env can take work again: it goes on top of the ready stack, and one waiter is woken."""
        if env.state is _READY:
            (self.ready_provisioned if env.provisioned else self.ready).append(env)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


class Scheduler:
    """Routes invocations to environments; owns every environment's life."""

    def __init__(self, sink: LogSink, tmp_root: str, limits: Limits,
                 credentials: CredentialStore | None = None) -> None:
        self.sink = sink
        self.credentials = credentials if credentials is not None else CredentialStore()  # issued per environment
        self.tmp_root = tmp_root
        self.limits = limits
        self.pools: dict[str, FunctionPool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        self.records: EnvRecords | None = None  # see claim_data_dir()

    def claim_data_dir(self, data_dir: str) -> None:
        """Hold data_dir for this server alone (DataDirInUse when another server runs on it), end whatever
        servers before it left running there, and record every environment in it from now on, so that the
        next server can end them should this one die without doing so (environment/leftovers.py)."""
        self.records = EnvRecords.claim(data_dir)

    @property
    def environment_count(self) -> int:
        return sum(len(p.envs) for p in self.pools.values())

    def configure(self, spec: FunctionSpec, reserved: int | None) -> None:
        """Set what a function version (spec.pool_key) runs; environments of an older revision are retired."""
        pool = self.pools.get(spec.pool_key)
        if pool is None:
            group = next((p.group for p in self.pools.values() if p.spec.name == spec.name), [])
            self.pools[spec.pool_key] = FunctionPool(spec, reserved, group)
            return
        pool.reserved = reserved
        if pool.spec.revision_id == spec.revision_id:
            return
        # A new revision that runs the same (tags or a resource policy changed): its environments stay warm.
        same = replace(pool.spec, revision_id=spec.revision_id) == spec
        pool.spec = spec
        if not same:
            for env in pool.envs:
                self._retire(pool, env)

    def remove(self, name: str, version: str | None = None) -> None:
        """End the environments of a function (every version of it), or of one published version."""
        keys = [f"{name}:{version}"] if version else [k for k, p in self.pools.items() if p.spec.name == name]
        for key in keys:
            pool = self.pools.pop(key, None)
            if pool is not None:
                pool.group.remove(pool)
                for env in list(pool.envs):
                    self._retire(pool, env)

    def provision(self, name: str, counts: dict[str, int]) -> None:
        """Keep counts[key] environments of each (configured) version of function `name` initialized ahead
        of invokes, and none of its other versions."""
        for key, pool in list(self.pools.items()):
            if pool.spec.name == name:
                self._provision(key, pool, counts.get(key, 0))

    def _provision(self, key: str, pool: FunctionPool, count: int) -> None:
        current = [env for env in pool.envs if env.provisioned and not env.retired]
        for env in current[count:]:
            self._retire(pool, env)
        spec = dataclasses.replace(pool.spec, initialization_type="provisioned-concurrency")
        for _ in range(count - len(current)):
            env = ExecutionEnvironment(spec, self.sink, self.tmp_root, self.records, self.credentials)
            env.on_idle = functools.partial(pool.freed, env)
            pool.envs.append(env)
            env.start()
            log.info("provisioned: %s environment %s", key, env.id)

    def provisioned_failed(self, key: str) -> bool:
        """Whether a provisioned environment of the version keyed `key` failed its Init phase."""
        pool = self.pools.get(key)
        return pool is not None and any(env.provisioned and not env.retired and env.state is _FAILED
                                        for env in pool.envs)

    def provisioned_ready(self, key: str) -> int:
        """How many provisioned environments of the version keyed `key` have finished their Init phase."""
        pool = self.pools.get(key)
        return 0 if pool is None else sum(1 for env in pool.envs if env.provisioned and not env.retired
                                          and env.state in (_READY, _BUSY))

    def _retire(self, pool: FunctionPool, env: ExecutionEnvironment) -> None:
        if env.retire():
            self._spawn_task(self._stop(pool, env))

    async def _stop(self, pool: FunctionPool, env: ExecutionEnvironment) -> None:
        await env.stop()
        if env in pool.envs:
            pool.envs.remove(env)

    def _spawn_task(self, coro) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def acquire(self, name: str) -> ExecutionEnvironment:
        """An environment for one invocation of the function version keyed `name`, or Throttled."""
        pool = self.pools[name]
        if pool.reserved is not None and sum(p.busy for p in pool.group) >= pool.reserved:
            raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        env = pool.pick()
        if env is not None:
            pool.take(env)
            return env
        if self.environment_count >= self.limits.max_concurrency and not self._evict_idle():
            raise Throttled("ConcurrentInvocationLimitExceeded")
        env = ExecutionEnvironment(pool.spec, self.sink, self.tmp_root, self.records, self.credentials)
        env.on_idle = functools.partial(pool.freed, env)
        env.claim()
        pool.envs.append(env)
        env.start()
        log.info("cold start: %s environment %s", name, env.id)
        return env

    def _evict_idle(self) -> bool:
        """Make room by ending the longest-idle environment of any function."""
        idle = [(env.last_used, pool, env) for pool in self.pools.values() for env in pool.envs
                if env.state in (_READY, _FAILED) and not env.waiting_invoke and not env.provisioned]
        if not idle:
            return False
        _, pool, env = min(idle, key=lambda t: t[0])
        pool.envs.remove(env)
        self._spawn_task(env.stop())
        return True

    def should_wait(self, name: str) -> bool:
        """True when no environment is free but one is about to be (see FINISHING_GRACE_S)."""
        pool = self.pools[name]
        return pool.pick() is None and any(e.finishing for e in pool.envs)

    def start_now(self, name: str, inv: Invocation) -> bool:
        """Start inv on an environment now, unless it should wait for one that is finishing (False:
        use invoke()). A warm environment gets it before this returns."""
        pool = self.pools[name]
        env = pool.take_ready() if pool.reserved is None else None
        if env is None:
            if self.should_wait(name):
                return False
            env = self.acquire(name)
        env.run(inv, functools.partial(self._after_invoke, pool, env))
        return True

    def start(self, name: str, inv: Invocation) -> ExecutionEnvironment:
        """Start inv on an environment now; a warm one gets it before this returns."""
        env = self.acquire(name)
        env.run(inv, functools.partial(self._after_invoke, self.pools[name], env))
        return env

    async def invoke(self, name: str, inv: Invocation) -> ExecutionEnvironment:
        """Start inv on an environment; returns it (inv.outcome / inv.done report progress)."""
        if self.should_wait(name):
            waiter = asyncio.get_running_loop().create_future()
            pool = self.pools[name]
            pool.waiters.append(waiter)
            try:
                async with asyncio.timeout(FINISHING_GRACE_S):
                    await waiter
            except TimeoutError:
                pass
            finally:
                if not waiter.done():
                    waiter.cancel()  # (freed() skips it)
        return self.start(name, inv)

    def _after_invoke(self, pool: FunctionPool, env: ExecutionEnvironment, inv: Invocation,
                      error: BaseException | None) -> None:
        if self._closed:  # shutting down: every environment is already ended
            inv.fail(error or RuntimeError("server shutting down"))
        elif error is not None:
            # A platform fault, not the function's: the caller gets a ServiceException, never silence,
            # and the environment is replaced.
            log.error("invocation failed in environment %s", env.id, exc_info=error)
            inv.fail(error)
            env.retire()
            self._spawn_task(self._stop(pool, env))
        elif env.retired and env.state is not _BUSY:
            self._spawn_task(self._stop(pool, env))

    def start_reaper(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(min(5.0, max(0.2, self.limits.idle_timeout_s / 4)))
            self.reap_idle()

    def reap_idle(self) -> None:
        cutoff = time.monotonic() - self.limits.idle_timeout_s
        for pool in self.pools.values():
            for env in list(pool.envs):
                if env.state in (_READY, _FAILED) and not env.waiting_invoke \
                        and env.last_used < cutoff and not env.provisioned:
                    log.info("idle: ending %s environment %s", pool.spec.name, env.id)
                    pool.envs.remove(env)
                    self._spawn_task(env.stop())

    def shutdown(self) -> None:
        """End every environment's process tree now (no orphans)."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        if self.records is not None:
            self.records.end_all()  # also what left the process groups
        for pool in self.pools.values():
            for env in pool.envs:
                env.kill_now()
            pool.envs.clear()
        for task in list(self._tasks):
            task.cancel()
        release_shared()
        if self.records is not None:
            self.records.close()
            self.records = None
