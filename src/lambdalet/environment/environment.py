"""One execution environment: its bootstrap process, the Init and Invoke phases, timeouts and restarts.

The rules are the ones measured on AWS Lambda (see the spec):
- Init phase: 10 s from spawn until the first /next. On timeout, exit, /init/error or a missing
  bootstrap, the failure is logged (INIT_REPORT Phase: init) and init is retried inside the first
  invoke with the function timeout (Phase: invoke). If that fails too, the invoke fails and the
  environment re-runs the Init phase in the background, ready for the next request.
- Invoke phase: the function timeout runs from /next to the next /next (work after /response counts).
  A timeout or a crash ends the invoke, the process tree is ended and init runs again in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lambdalet.credentials import CredentialStore
from lambdalet.environment import deadlines, launcher, platform_log
from lambdalet.environment.launcher import SpawnRequest
from lambdalet.environment.leftovers import EnvRecords
from lambdalet.environment.netns import NAMESPACES, RUNTIME_API_PORT, NetNamespace
from lambdalet.environment.process import BootstrapProcess, exit_reason
from lambdalet.environment.sandbox import MemoryCgroup
from lambdalet.environment.spec import INIT_TIMEOUT_S, LAMBDA_BOOTSTRAPS, FunctionSpec, LogSink
from lambdalet.invocation import Invocation, Outcome, error_document
from lambdalet.runtime_api import RuntimeApiServer, RuntimeSession

log = logging.getLogger("lambdalet.environment")
_MiB = 1024 * 1024


class EnvState(enum.Enum):
    INITIALIZING = "initializing"  # Init phase running (cold start or background re-init)
    READY = "ready"  # runtime waiting in /next
    BUSY = "busy"  # an invocation is running
    FAILED = "failed"  # the last Init phase failed; the next invoke retries init in its Invoke phase
    STOPPED = "stopped"

    # Members are singletons: hashed by identity, in C. (Enum's own __hash__ is Python code, and
    # _enter looks states up twice per transition, two transitions per warm invoke.)
    __hash__ = object.__hash__


# The members as module globals: on Python 3.11 `EnvState.READY` is a metaclass lookup of ~900
# instructions, a global almost nothing, and the warm path compares states a few dozen times.
_INITIALIZING, _READY, _BUSY, _FAILED, _STOPPED = (
    EnvState.INITIALIZING, EnvState.READY, EnvState.BUSY, EnvState.FAILED, EnvState.STOPPED)

# What each state may become; anything else is a platform bug, refused (the caller gets a ServiceException
# and the environment is replaced). STOPPED is final.
_NEXT_STATES = {
    _INITIALIZING: frozenset({_INITIALIZING, _READY, _FAILED, _STOPPED}),
    _READY: frozenset({_BUSY, _INITIALIZING, _STOPPED}),
    _BUSY: frozenset({_READY, _INITIALIZING, _FAILED, _STOPPED}),
    _FAILED: frozenset({_BUSY, _INITIALIZING, _STOPPED}),
    _STOPPED: frozenset(),
}


class InvalidStateTransition(RuntimeError):
    """An execution environment was asked to go where its state does not lead."""


@dataclass
class InitFailure:
    """Why an Init attempt failed, in Lambda's words."""

    status: str  # "error" | "timeout"
    error_type: str | None
    message: str  # for the invoke's error event and payload
    body: bytes | None = None  # the document posted to /init/error, passed to the caller as is
    retry: bool = True  # a missing bootstrap is not restarted


class ExecutionEnvironment:
    """A function's execution environment, with its own log stream and Runtime API port."""

    def __init__(self, spec: FunctionSpec, sink: LogSink, tmp_root: str, records: EnvRecords | None = None,
                 credentials: CredentialStore | None = None) -> None:
        self.spec = spec
        self.sink = sink
        self.records = records  # where the running bootstrap is noted, for the next server if this one dies
        self.id = secrets.token_hex(16)
        # Its own AWS credentials, valid while it lives (revoked by stop() and kill_now()).
        self._credential_store = credentials if credentials is not None else CredentialStore()
        self.credentials = self._credential_store.issue(f"{spec.name}:{spec.version}", self.id)
        self.log_stream = datetime.now(UTC).strftime("%Y/%m/%d/") + f"[{spec.version}]{self.id}"
        self.tmp_dir = os.path.join(tmp_root, self.id)
        self._state = _INITIALIZING
        self.last_used = time.monotonic()
        self.invocations = 0
        self._retired = False  # the function changed: stop after the current work
        # Initialized ahead for provisioned concurrency: kept when idle, and no invoke reports its Init Duration.
        self.provisioned = spec.initialization_type == "provisioned-concurrency"
        self.process: BootstrapProcess | None = None
        self.server: RuntimeApiServer | None = None
        self.session: RuntimeSession | None = None
        self._ready: asyncio.Future[None] | None = None
        # The invocation being followed to its end (invoke, started, init ms, process), its deadline timer,
        # and whom to tell when it is over.
        self._watching: tuple[Invocation, float, float | None, BootstrapProcess] | None = None
        self._deadline: deadlines.Deadline | None = None
        self._deadline_timers: deadlines.Deadlines | None = None  # (the loop's, asked once)
        self._on_end: Callable[[Invocation, BaseException | None], None] | None = None
        self._invoke_task: asyncio.Task[None] | None = None
        self._exit_watched: BootstrapProcess | None = None
        self._init_error: tuple[str, bytes] | None = None
        self._init_task: asyncio.Task[None] | None = None
        self._log_group = spec.log_group
        self._bills_init = spec.runtime.startswith("provided")  # (a provided runtime's cold start bills its init)
        self._began_ms = 0  # the epoch ms the current invocation started at
        try:  # (asyncio.get_running_loop() costs a getpid() syscall on Python 3.11: asked once)
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._cold_init_ms: float | None = None  # reported once, on the first invoke
        self._current: Invocation | None = None
        self._claimed = False  # picked for an invocation that has not begun yet
        self.on_idle: Callable[[], None] | None = None  # told when the environment can take work again
        self.cgroup: MemoryCgroup | None = None
        self._cgroup_delegated = False  # the runtime moves itself into self.cgroup (LaunchSpec.joins_cgroup)
        self.netns: NetNamespace | None = None  # its network namespace, for its whole life (environment/netns.py)

    # ---------------------------------------------------------------- logs
    def _platform(self, line: str) -> None:
        self.emit(line + "\n")

    def _platform_lines(self, ts_ms: int, lines: tuple[str, ...]) -> None:
        """Record platform events that share a timestamp (START; END and REPORT): one call to the sink."""
        self.sink.extend(self._log_group, self.log_stream, ts_ms, lines)
        inv = self._current
        if inv is not None and inv.log_tail is not None:
            for line in lines:
                inv.log_tail.append(line)

    def emit(self, message: str) -> None:
        """Record one log event (CloudWatch keeps each event's trailing newline, as Lambda sends it)."""
        self.sink.append(self._log_group, self.log_stream, message, platform_log.now_ms())
        inv = self._current  # (LogType=Tail: the invocation's own lines, from START on, as Lambda returns)
        if inv is not None and inv.log_tail is not None:
            inv.log_tail.append(message)

    # ---------------------------------------------------------------- RuntimeListener
    def runtime_ready(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def invocation_finished(self) -> None:
        if self.process is not None:
            self.process.drain_output()  # lines printed before this /next belong to the invoke
        watched = self._watching
        if watched is None:
            return
        self._watching = None
        if self._deadline is not None:
            self._deadline.cancel()
        inv, started, init_ms, _ = watched
        try:
            self._log_end(inv, started, init_ms)
            self._enter(_READY)
        except Exception as exc:  # a platform fault: the scheduler replaces the environment
            self._end_invoke(inv, exc)
            return
        self._end_invoke(inv, None)

    def init_error(self, error_type: str, body: bytes) -> None:
        self._init_error = (error_type, body)

    # ---------------------------------------------------------------- lifecycle
    @property
    def available(self) -> bool:
        """Can take an invocation now (possibly after waiting for its Init phase)."""
        return not self._retired and not self._claimed and self._state in (
            _READY, _INITIALIZING, _FAILED)

    # ---------------------------------------------------------------- the state machine
    @property
    def state(self) -> EnvState:
        return self._state

    def _enter(self, state: EnvState) -> None:
        if state not in _NEXT_STATES[self._state]:
            raise InvalidStateTransition(f"environment {self.id}: {self._state.value} cannot become {state.value}")
        self._state = state

    @property
    def retired(self) -> bool:
        """The function changed (or the environment failed): it ends after its current work."""
        return self._retired

    def retire(self) -> bool:
        """Take no new invocation; True when nothing runs or waits here, so it can be stopped now."""
        self._retired = True
        return self._state is not _BUSY and not self._claimed

    @property
    def waiting_invoke(self) -> bool:
        """Claimed for an invocation that has not begun (it may be waiting for the Init phase)."""
        return self._claimed

    def claim(self) -> None:
        """Reserve the environment for an invocation (picked: no other invocation may pick it)."""
        if not self.available:
            raise InvalidStateTransition(f"environment {self.id} cannot be claimed ({self._state.value})")
        self._claimed = True

    def claim_ready(self) -> bool:
        """Claim the environment for an invocation if it is Ready and free (nobody else may pick it)."""
        if self._state is _READY and not self._claimed and not self._retired:
            self._claimed = True
            return True
        return False

    @property
    def finishing(self) -> bool:
        """Busy, but the caller already has its response: free again at the runtime's next /next."""
        inv = self._current
        return self._state is _BUSY and inv is not None and inv.resolved and not self._retired

    def start(self) -> None:
        """Begin the Init phase (a cold start)."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        if self.spec.memory_limit:
            self.cgroup = MemoryCgroup.create(self.id, self.spec.memory_mb)
        self._init_task = asyncio.get_running_loop().create_task(self._init_phase(cold=True))

    async def _init_phase(self, cold: bool = False) -> None:
        self._enter(_INITIALIZING)
        self._platform(platform_log.init_start(self.spec.runtime, self.spec.region))
        started = time.monotonic()
        failure = await self._spawn_and_wait(INIT_TIMEOUT_S)
        elapsed = (time.monotonic() - started) * 1000
        if self._state is _STOPPED:
            return
        if failure is None:
            self._enter(_READY)
            if cold and not self.provisioned:
                self._cold_init_ms = elapsed
            return
        self._platform(platform_log.init_report(elapsed, "init", failure.status, failure.error_type))
        await self._end_process()
        self._enter(_FAILED)

    async def _spawn_and_wait(self, budget: float) -> InitFailure | None:
        """Start the bootstrap and wait for its first /next; None on success."""
        failure = await self._spawn()
        if failure is not None:
            return failure
        assert self.process is not None and self._ready is not None
        proc = self.process
        joined = None
        if self.cgroup is not None and not self._cgroup_delegated:
            # Moving another process in waits for an RCU grace period (~5-10 ms): done in a thread, so
            # the event loop (every other invocation) does not wait for it too.
            joined = asyncio.get_running_loop().run_in_executor(None, self.cgroup.add, proc.pid)
        done, _ = await asyncio.wait({self._ready, proc.exited}, timeout=budget,
                                     return_when=asyncio.FIRST_COMPLETED)
        if self._ready.done() and proc.alive:
            if joined is not None:
                await joined  # no invoke runs outside the cgroup
            elif self.cgroup is not None and not self.cgroup.holds(proc.pid):
                await asyncio.get_running_loop().run_in_executor(None, self.cgroup.add, proc.pid)
            proc.sample_memory()
            return None
        if not done:  # timed out
            if self._init_error is not None:
                return self._init_error_failure()
            return InitFailure("timeout", None, "")
        await proc.settle_output()
        if self._init_error is not None:
            return self._init_error_failure()
        return InitFailure("error", *self._exit_error(proc))

    def _exit_error(self, proc: BootstrapProcess) -> tuple[str, str]:
        """Lambda's error type and message for a runtime that exited."""
        code = proc.returncode or 0
        if code == 0:
            return "Runtime.ExitError", "Runtime exited without providing a reason"
        error_type = "Runtime.OutOfMemory" if self.cgroup is not None and self.cgroup.out_of_memory() \
            else "Runtime.ExitError"
        return error_type, f"Runtime exited with error: {exit_reason(code)}"

    def _init_error_failure(self) -> InitFailure:
        assert self._init_error is not None
        error_type, body = self._init_error
        return InitFailure("error", error_type, "Unknown application error occurred", body=body)

    async def _spawn(self) -> InitFailure | None:
        self._init_error = None
        self._ready = asyncio.get_running_loop().create_future()
        self.session = RuntimeSession(self)
        self.server = RuntimeApiServer(self.session)
        try:
            sock = await self._runtime_api_socket()
        except OSError as exc:
            log.error("environment %s: %s", self.id, exc)
            return InitFailure("error", "Runtime.Unknown", str(exc))
        address = await self.server.start(sock)
        env = self.spec.base_environment(address, self.log_stream, self.tmp_dir, self.credentials)
        try:
            launch = self.spec.launch()
        except Exception as exc:  # a managed runtime that cannot start here (e.g. no interpreter)
            log.warning("cannot launch %s: %s", self.spec.runtime, exc)
            return InitFailure("error", "Runtime.InvalidEntrypoint", str(exc), retry=False)
        executable = None
        if launch is None:
            path = self.spec.find_bootstrap()
            if path is None:
                candidates = " ".join(LAMBDA_BOOTSTRAPS)
                return InitFailure("error", "Runtime.InvalidEntrypoint",
                                   f"Couldn't find valid bootstrap(s): [{candidates}]", retry=False)
            argv = [path]
            executable = _shebang_interpreter(path)
            if executable is not None:
                argv = ["/bin/sh", path]
        else:
            for line in launch.warnings:
                self._platform(line)
            argv = launch.argv
            env.update(launch.env)
        self.process = None
        try:  # (the launcher seam: the isolation tier decides how the process starts)
            spawned = await launcher.current().spawn(SpawnRequest(
                self.spec, argv, executable, env, self.emit, launch, self.cgroup, self.tmp_dir,
                listen_fd=sock.fileno() if sock is not None else None, netns=self.netns))
        except OSError as exc:
            shown = exc.filename if isinstance(exc.filename, str) else argv[0]
            return InitFailure("error", "Runtime.InvalidEntrypoint",
                               f"fork/exec {shown}: {(exc.strerror or str(exc)).lower()}", retry=False)
        self.process, self._cgroup_delegated = spawned.process, spawned.cgroup_joined
        if self.records is not None:
            self.records.record(self.id, self.process.pid, self.cgroup.path if self.cgroup is not None else None)
        return None

    async def _runtime_api_socket(self):
        """127.0.0.1:9001 in the environment's network namespace (taken on its first spawn), or None where
        environments have none (the Runtime API then listens on a port of the host's loopback)."""
        if not NAMESPACES.enabled:
            return None
        if self.netns is None:
            netns = await NAMESPACES.take()
            if self._state is _STOPPED:  # stopped while it waited
                netns.close()
                raise OSError("environment stopped")
            self.netns = netns
        return self.netns.listen("127.0.0.1", RUNTIME_API_PORT)

    def _close_netns(self) -> None:
        if self.netns is not None:
            self.netns.close()
            self.netns = None

    async def _end_process(self, grace: float = 2.0) -> None:
        proc, server = self.process, self.server
        self.process = None
        self.server = None
        if server is not None:
            server.close()
        if proc is not None:
            await proc.terminate(grace)
            if self.records is not None:  # its group is gone; what left it may still be in the cgroup
                self.records.process_ended(self.id, self.cgroup.path if self.cgroup is not None else None)

    def _restart_in_background(self) -> None:
        self._enter(_INITIALIZING)
        self._init_task = asyncio.get_running_loop().create_task(self._init_phase())

    def run(self, inv: Invocation, on_end: Callable[[Invocation, BaseException | None], None]) -> None:
        """Run one invocation to its end: the runtime's next /next, a timeout or a crash. on_end is
        called once, when it is over, with the platform fault that cut it short, if any.

        The warm path hands inv to the runtime waiting in /next right here and follows it with a timer
        and callbacks: no task, no asyncio.wait (~40-60 µs a warm invoke). Otherwise a task waits for
        the Init phase first."""
        self._on_end = on_end
        if self._state is _READY and self.process is not None and self.session is not None \
                and (self._init_task is None or self._init_task.done()):
            started = self._begin(inv)
            init_ms, self._cold_init_ms = self._cold_init_ms, None
            try:
                self._dispatch(inv, started, init_ms)
            except Exception as exc:
                self._end_invoke(inv, exc)
            return
        self._claimed = True
        self._invoke_task = asyncio.get_running_loop().create_task(self._run_after_init(inv))

    def _begin(self, inv: Invocation) -> float:
        self._claimed = False
        self._enter(_BUSY)
        self.invocations += 1
        self._current = inv
        self._began_ms = platform_log.now_ms()
        inv.deadline_ms = self._began_ms + self.spec.timeout_s * 1000
        return time.monotonic()

    async def _run_after_init(self, inv: Invocation) -> None:
        try:
            try:
                if self._init_task is not None and not self._init_task.done():
                    await asyncio.shield(self._init_task)
            finally:
                self._claimed = False
            if self._state is _STOPPED:
                inv.resolve(_failure_outcome(inv, "Runtime.Unavailable", "Execution environment stopped"))
                self._end_invoke(inv, None)
                return
            started = self._begin(inv)
            init_ms = None
            if self.process is None or self.session is None:
                failure = await self._spawn_and_wait(self.spec.timeout_s)
                if failure is not None:
                    await self._fail_invoke_init(inv, failure, started)
                    self._end_invoke(inv, None)
                    return
            else:
                init_ms, self._cold_init_ms = self._cold_init_ms, None
            self._dispatch(inv, started, init_ms)
        except asyncio.CancelledError:
            self._end_invoke(inv, RuntimeError("invocation cancelled"))
            raise
        except Exception as exc:
            self._end_invoke(inv, exc)

    def _end_invoke(self, inv: Invocation, error: BaseException | None) -> None:
        """The invocation is over: free the environment and tell whoever ran it (once)."""
        on_end, self._on_end = self._on_end, None
        watched = self._watching
        if watched is not None and watched[0] is inv:  # ended by a fault before its own end came
            self._watching = None
            if self._deadline is not None:
                self._deadline.cancel()
        if self._current is inv:
            self._current = None
        self.last_used = time.monotonic()
        inv.finish()
        if on_end is not None:
            on_end(inv, error)
        if self.on_idle is not None and self.available:
            self.on_idle()

    async def _fail_invoke_init(self, inv: Invocation, failure: InitFailure, started: float) -> None:
        elapsed = (time.monotonic() - started) * 1000
        self._platform(platform_log.init_report(elapsed, "invoke", failure.status, failure.error_type))
        self._platform(platform_log.start(inv.request_id, self.spec.version))
        if failure.status == "timeout":
            seconds = time.monotonic() - started
            self._platform(platform_log.timed_out(inv.request_id, seconds))
            inv.resolve(_timeout_outcome(inv, seconds))
        elif failure.body is not None:
            self._platform(platform_log.runtime_error(None, failure.message, failure.error_type or "Runtime.Unknown"))
            inv.resolve(Outcome(payload=failure.body, function_error="Unhandled", error_type=failure.error_type))
        else:
            error_type = failure.error_type or "Runtime.Unknown"
            self._platform(platform_log.runtime_error(inv.request_id, failure.message, error_type))
            inv.resolve(_failure_outcome(inv, error_type, failure.message))
        await self._end_process(grace=0.5)
        self._log_end(inv, started, None)
        if failure.retry and not self._retired:
            self._restart_in_background()
        else:
            self._enter(_FAILED)

    def _dispatch(self, inv: Invocation, started: float, init_ms: float | None) -> None:
        """Hand inv to the runtime, and follow it: invocation_finished() (the next /next), the deadline
        timer or the process's exit ends it."""
        session, proc = self.session, self.process
        assert session is not None and proc is not None
        self._platform_lines(self._began_ms, (platform_log.start(inv.request_id, self.spec.version) + "\n",))
        loop = self._loop or asyncio.get_running_loop()
        self._watching = (inv, started, init_ms, proc)
        remaining = self.spec.timeout_s - (time.monotonic() - started)
        # (conditionals, not max(): the builtin costs ~700 instructions a call on Python 3.11)
        self._deadline = self._deadlines(loop).call_at(loop.time() + (remaining if remaining > 0 else 0.0),
                                                       self._timed_out)
        if proc.exited.done():  # it died while idle: this invocation finds out
            loop.call_soon(self._process_exited, proc.exited)
        elif self._exit_watched is not proc:  # once per process: its exit ends whatever runs then
            self._exit_watched = proc
            proc.exited.add_done_callback(self._process_exited)
        session.assign(inv)

    def _deadlines(self, loop: asyncio.AbstractEventLoop) -> deadlines.Deadlines:
        if self._deadline_timers is None:
            self._deadline_timers = deadlines.for_loop(loop)
        return self._deadline_timers

    def _timed_out(self) -> None:
        watched = self._watching
        if watched is None:
            return
        early = self.spec.timeout_s - (time.monotonic() - watched[1])
        if early > 0:  # (the loop's timers may fire up to a millisecond early: the deadline is not past yet)
            loop = self._loop or asyncio.get_running_loop()
            self._deadline = self._deadlines(loop).call_at(loop.time() + early, self._timed_out)
            return
        self._watching = None
        self._fail_task(self._invoke_failed(*watched, timed_out=True))

    def _process_exited(self, exited: asyncio.Future[int]) -> None:
        watched = self._watching
        if watched is not None and watched[3].exited is exited:
            self._watching = None
            if self._deadline is not None:
                self._deadline.cancel()
            self._fail_task(self._invoke_failed(*watched, timed_out=False))

    def _fail_task(self, coro) -> None:
        self._invoke_task = asyncio.get_running_loop().create_task(coro)

    async def _invoke_failed(self, inv: Invocation, started: float, init_ms: float | None,
                             proc: BootstrapProcess, *, timed_out: bool) -> None:
        """A timeout or a crash ended the invocation: report it, end the process tree, start again."""
        try:
            if timed_out:
                seconds = time.monotonic() - started
                self._platform(platform_log.timed_out(inv.request_id, seconds))
                outcome = _timeout_outcome(inv, seconds)
                self._fail_stream(inv, outcome)
                inv.resolve(outcome)
                self._log_end(inv, started, init_ms)
                await self._end_process()
            else:
                await proc.settle_output()
                error_type, message = self._exit_error(proc)
                self._platform(platform_log.runtime_error(inv.request_id, message, error_type))
                outcome = _failure_outcome(inv, error_type, message)
                self._fail_stream(inv, outcome)
                inv.resolve(outcome)
                self._log_end(inv, started, init_ms)
                await self._end_process(grace=0.5)
            if self._retired or self._state is _STOPPED:
                await self.stop()
            else:
                self._restart_in_background()
        except asyncio.CancelledError:
            self._end_invoke(inv, RuntimeError("invocation cancelled"))
            raise
        except Exception as exc:
            self._end_invoke(inv, exc)
            return
        self._end_invoke(inv, None)

    @staticmethod
    def _fail_stream(inv: Invocation, outcome: Outcome) -> None:
        result = inv.result
        if result is not None:
            stream = result.stream
            if stream is not None and not stream.closed:
                stream.close(outcome.error_type, outcome.payload)

    def _log_end(self, inv: Invocation, started: float, init_ms: float | None) -> None:
        duration = (time.monotonic() - started) * 1000
        proc = self.process
        peak = 0
        if proc is not None:
            peak = proc.sample_memory(1.0) if proc.alive else proc.peak_rss  # (max_age)
        used_mb = -(-peak // _MiB) or 1
        billed = platform_log.billed_ms(duration, self.spec.timeout_s, init_ms if self._bills_init else None)
        self._platform_lines(platform_log.now_ms(), (
            platform_log.end(inv.request_id) + "\n",
            platform_log.report(inv.request_id, duration, billed, self.spec.memory_mb, used_mb, init_ms) + "\n"))

    async def stop(self) -> None:
        """End the environment: its process tree, its Runtime API port, its temporary files."""
        if self._state is _STOPPED:
            return
        self._enter(_STOPPED)
        self._credential_store.revoke(self.credentials)
        if self._init_task is not None and not self._init_task.done() and not self._claimed:
            self._init_task.cancel()
        await self._end_process(grace=0.3)
        self._close_netns()
        # Emptying a cgroup and deleting /tmp (up to gigabytes) must not hold up every other invocation.
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self.cgroup is not None:
            self.cgroup.destroy()  # also ends processes that left the process group
            self.cgroup = None
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        if self.records is not None:
            self.records.forget(self.id)

    def kill_now(self) -> None:
        """Synchronously end the process tree (server shutdown)."""
        if self._state is not _STOPPED:
            self._enter(_STOPPED)
        self._credential_store.revoke(self.credentials)
        if self.process is not None:
            self.process.kill_now()
        if self.server is not None:
            self.server.close()
        self._close_netns()
        self._release()


def _shebang_interpreter(path: str) -> str | None:
    """Amazon Linux's /bin/sh is bash: run `#!/bin/sh` bootstraps with bash (in its sh mode) here too."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        first = f.readline(128)
        if first.startswith(b"#!") and first[2:].strip().split(b" ")[0] == b"/bin/sh":
            bash = shutil.which("bash")
            if bash is not None:
                return os.path.realpath(bash)
    return None


def _failure_outcome(inv: Invocation, error_type: str, message: str) -> Outcome:
    return Outcome(payload=error_document(error_type, f"RequestId: {inv.request_id} Error: {message}"),
                   function_error="Unhandled", error_type=error_type)


def _timeout_outcome(inv: Invocation, seconds: float) -> Outcome:
    return _failure_outcome(inv, "Sandbox.Timedout", f"Task timed out after {seconds:.2f} seconds")
