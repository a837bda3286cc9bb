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
import math
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lambdalet.environment import launcher, platform_log
from lambdalet.environment.launcher import SpawnRequest
from lambdalet.environment.leftovers import EnvRecords
from lambdalet.environment.process import BootstrapProcess, exit_reason
from lambdalet.environment.sandbox import MemoryCgroup
from lambdalet.environment.spec import INIT_TIMEOUT_S, LAMBDA_BOOTSTRAPS, FunctionSpec, LogSink
from lambdalet.invocation import Invocation, Outcome, error_document
from lambdalet.runtime_api import RuntimeApiServer, RuntimeSession

log = logging.getLogger("lambdalet.environment")


class EnvState(enum.Enum):
    INITIALIZING = "initializing"  # Init phase running (cold start or background re-init)
    READY = "ready"  # runtime waiting in /next
    BUSY = "busy"  # an invocation is running
    FAILED = "failed"  # the last Init phase failed; the next invoke retries init in its Invoke phase
    STOPPED = "stopped"


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

    def __init__(self, spec: FunctionSpec, sink: LogSink, tmp_root: str, records: EnvRecords | None = None) -> None:
        self.spec = spec
        self.sink = sink
        self.records = records  # where the running bootstrap is noted, for the next server if this one dies
        self.id = secrets.token_hex(16)
        self.log_stream = datetime.now(UTC).strftime("%Y/%m/%d/") + f"[{spec.version}]{self.id}"
        self.tmp_dir = os.path.join(tmp_root, self.id)
        self.state = EnvState.INITIALIZING
        self.last_used = time.monotonic()
        self.invocations = 0
        self.retired = False  # the function changed: stop after the current work
        # Initialized ahead for provisioned concurrency: kept when idle, and no invoke reports its Init Duration.
        self.provisioned = spec.initialization_type == "provisioned-concurrency"
        self.process: BootstrapProcess | None = None
        self.server: RuntimeApiServer | None = None
        self.session: RuntimeSession | None = None
        self._ready: asyncio.Future[None] | None = None
        # The invocation being followed to its end (invoke, started, init ms, process), its deadline timer,
        # and whom to tell when it is over.
        self._watching: tuple[Invocation, float, float | None, BootstrapProcess] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._on_end: Callable[[Invocation, BaseException | None], None] | None = None
        self._invoke_task: asyncio.Task[None] | None = None
        self._exit_watched: BootstrapProcess | None = None
        self._init_error: tuple[str, bytes] | None = None
        self._init_task: asyncio.Task[None] | None = None
        self._log_group = spec.log_group
        try:  # (asyncio.get_running_loop() costs a getpid() syscall on Python 3.11: asked once)
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._cold_init_ms: float | None = None  # reported once, on the first invoke
        self._current: Invocation | None = None
        self.waiting_invoke = False
        self.on_idle: Callable[[], None] | None = None  # told when the environment can take work again
        self.cgroup: MemoryCgroup | None = None
        self._cgroup_delegated = False  # the runtime moves itself into self.cgroup (LaunchSpec.joins_cgroup)

    # ---------------------------------------------------------------- logs
    def _platform(self, line: str) -> None:
        self.emit(line + "\n")

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
            self.state = EnvState.READY
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
        return not self.retired and not self.waiting_invoke and self.state in (
            EnvState.READY, EnvState.INITIALIZING, EnvState.FAILED)

    @property
    def finishing(self) -> bool:
        """Busy, but the caller already has its response: free again at the runtime's next /next."""
        inv = self._current
        return self.state is EnvState.BUSY and inv is not None and inv.resolved and not self.retired

    def start(self) -> None:
        """Begin the Init phase (a cold start)."""
        os.makedirs(self.tmp_dir, exist_ok=True)
        if self.spec.memory_limit:
            self.cgroup = MemoryCgroup.create(self.id, self.spec.memory_mb)
        self._init_task = asyncio.get_running_loop().create_task(self._init_phase(cold=True))

    async def _init_phase(self, cold: bool = False) -> None:
        self.state = EnvState.INITIALIZING
        self._platform(platform_log.init_start(self.spec.runtime, self.spec.region))
        started = time.monotonic()
        failure = await self._spawn_and_wait(INIT_TIMEOUT_S)
        elapsed = (time.monotonic() - started) * 1000
        if self.state is EnvState.STOPPED:
            return
        if failure is None:
            self.state = EnvState.READY
            if cold and not self.provisioned:
                self._cold_init_ms = elapsed
            return
        self._platform(platform_log.init_report(elapsed, "init", failure.status, failure.error_type))
        await self._end_process()
        self.state = EnvState.FAILED

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
        address = await self.server.start()
        env = self.spec.base_environment(address, self.log_stream, self.tmp_dir)
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
                self.spec, argv, executable, env, self.emit, launch, self.cgroup, self.tmp_dir))
        except OSError as exc:
            shown = exc.filename if isinstance(exc.filename, str) else argv[0]
            return InitFailure("error", "Runtime.InvalidEntrypoint",
                               f"fork/exec {shown}: {(exc.strerror or str(exc)).lower()}", retry=False)
        self.process, self._cgroup_delegated = spawned.process, spawned.cgroup_joined
        if self.records is not None:
            self.records.record(self.id, self.process.pid, self.cgroup.path if self.cgroup is not None else None)
        return None

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
        self.state = EnvState.INITIALIZING
        self._init_task = asyncio.get_running_loop().create_task(self._init_phase())

    def run(self, inv: Invocation, on_end: Callable[[Invocation, BaseException | None], None]) -> None:
        """Run one invocation to its end: the runtime's next /next, a timeout or a crash. on_end is
        called once, when it is over, with the platform fault that cut it short, if any.

        The warm path hands inv to the runtime waiting in /next right here and follows it with a timer
        and callbacks: no task, no asyncio.wait (~40-60 µs a warm invoke). Otherwise a task waits for
        the Init phase first."""
        self._on_end = on_end
        if self.state is EnvState.READY and self.process is not None and self.session is not None \
                and (self._init_task is None or self._init_task.done()):
            started = self._begin(inv)
            init_ms, self._cold_init_ms = self._cold_init_ms, None
            try:
                self._dispatch(inv, started, init_ms)
            except Exception as exc:
                self._end_invoke(inv, exc)
            return
        self.waiting_invoke = True
        self._invoke_task = asyncio.get_running_loop().create_task(self._run_after_init(inv))

    def _begin(self, inv: Invocation) -> float:
        self.waiting_invoke = False
        self.state = EnvState.BUSY
        self.invocations += 1
        self._current = inv
        inv.deadline_ms = platform_log.now_ms() + self.spec.timeout_s * 1000
        return time.monotonic()

    async def _run_after_init(self, inv: Invocation) -> None:
        try:
            try:
                if self._init_task is not None and not self._init_task.done():
                    await asyncio.shield(self._init_task)
            finally:
                self.waiting_invoke = False
            if self.state is EnvState.STOPPED:
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
        if failure.retry and not self.retired:
            self._restart_in_background()
        else:
            self.state = EnvState.FAILED

    def _dispatch(self, inv: Invocation, started: float, init_ms: float | None) -> None:
        """Hand inv to the runtime, and follow it: invocation_finished() (the next /next), the deadline
        timer or the process's exit ends it."""
        session, proc = self.session, self.process
        assert session is not None and proc is not None
        self._platform(platform_log.start(inv.request_id, self.spec.version))
        loop = self._loop or asyncio.get_running_loop()
        self._watching = (inv, started, init_ms, proc)
        remaining = self.spec.timeout_s - (time.monotonic() - started)
        self._deadline = loop.call_later(max(remaining, 0.0), self._timed_out)
        if proc.exited.done():  # it died while idle: this invocation finds out
            loop.call_soon(self._process_exited, proc.exited)
        elif self._exit_watched is not proc:  # once per process: its exit ends whatever runs then
            self._exit_watched = proc
            proc.exited.add_done_callback(self._process_exited)
        session.assign(inv)

    def _timed_out(self) -> None:
        watched = self._watching
        if watched is None:
            return
        early = self.spec.timeout_s - (time.monotonic() - watched[1])
        if early > 0:  # (the loop's timers may fire up to a millisecond early: the deadline is not past yet)
            self._deadline = (self._loop or asyncio.get_running_loop()).call_later(early, self._timed_out)
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
            if self.retired or self.state is EnvState.STOPPED:
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
        self._platform(platform_log.end(inv.request_id))
        peak = self.process.sample_memory(max_age=1.0) if self.process is not None and self.process.alive else 0
        if self.process is not None:
            peak = max(peak, self.process.peak_rss)
        used_mb = max(1, math.ceil(peak / (1024 * 1024)))
        billed_init = init_ms if self.spec.runtime.startswith("provided") else None
        billed = platform_log.billed_ms(duration, self.spec.timeout_s, billed_init)
        self._platform(platform_log.report(inv.request_id, duration, billed, self.spec.memory_mb, used_mb, init_ms))

    async def stop(self) -> None:
        """End the environment: its process tree, its Runtime API port, its temporary files."""
        if self.state is EnvState.STOPPED:
            return
        self.state = EnvState.STOPPED
        if self._init_task is not None and not self._init_task.done() and not self.waiting_invoke:
            self._init_task.cancel()
        await self._end_process(grace=0.3)
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
        self.state = EnvState.STOPPED
        if self.process is not None:
            self.process.kill_now()
        if self.server is not None:
            self.server.close()
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
