"""The scheduler with real environments (a bash bootstrap on a real Runtime API socket)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from lambdalet.environment import EnvState, ExecutionEnvironment, FunctionSpec
from lambdalet.invocation import Invocation
from lambdalet.scheduler.pool import Limits, Scheduler

ECHO_BOOTSTRAP = """#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation"
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -D "$HEADERS" "$API/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  curl -sS -X POST "$API/$ID/response" -d "$EVENT" >/dev/null
done
"""


class Sink:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def append(self, group: str, stream: str, message: str, ts_ms: int) -> None:
        self.messages.append(message)

    def extend(self, group: str, stream: str, ts_ms: int, messages: tuple[str, ...]) -> None:
        self.messages.extend(messages)


def echo_spec(root: Path) -> FunctionSpec:
    task = root / "task"
    task.mkdir()
    (task / "bootstrap").write_text(ECHO_BOOTSTRAP)
    os.chmod(task / "bootstrap", 0o755)
    return FunctionSpec(name="echo", arn="arn:aws:lambda:us-east-1:000000000000:function:echo",
                        runtime="provided.al2023", handler="x", memory_mb=128, timeout_s=3, task_root=str(task),
                        opt_dir=str(root / "opt"), region="us-east-1", revision_id="r1", memory_limit=False)


def test_a_platform_fault_fails_the_caller_and_replaces_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        scheduler = Scheduler(Sink(), str(tmp_path / "tmp"), Limits())
        scheduler.configure(echo_spec(tmp_path), None)
        try:
            first = Invocation(b'{"n":1}', "arn")
            env = await scheduler.invoke("echo", first)
            assert (await asyncio.wait_for(first.outcome, 10)).payload == b'{"n":1}'
            # Its /next came: the environment is free again, not finishing, so that the next invoke takes
            # it even on a loaded machine (a finishing one is waited for only FINISHING_GRACE_S).
            await asyncio.wait_for(first.done, 10)
            pid = env.process.pid

            real_dispatch = ExecutionEnvironment._dispatch

            def broken(self: ExecutionEnvironment, inv: Invocation, started: float, init_ms: object) -> None:
                raise RuntimeError("platform bug")

            monkeypatch.setattr(ExecutionEnvironment, "_dispatch", broken)
            second = Invocation(b'{"n":2}', "arn")
            assert await scheduler.invoke("echo", second) is env
            with pytest.raises(RuntimeError, match="platform bug"):
                await asyncio.wait_for(second.outcome, 5)
            for _ in range(100):  # the faulty environment is stopped and dropped
                if env not in scheduler.pools["echo"].envs:
                    break
                await asyncio.sleep(0.05)
            assert env.retired and env not in scheduler.pools["echo"].envs
            assert env.state is EnvState.STOPPED and not os.path.exists(f"/proc/{pid}")

            monkeypatch.setattr(ExecutionEnvironment, "_dispatch", real_dispatch)
            third = Invocation(b'{"n":3}', "arn")
            replacement = await scheduler.invoke("echo", third)
            assert replacement is not env
            assert (await asyncio.wait_for(third.outcome, 10)).payload == b'{"n":3}'
        finally:
            scheduler.shutdown()

    asyncio.run(scenario())


def test_a_freed_environment_wakes_one_waiter_and_tops_the_ready_stack(tmp_path: Path) -> None:
    """One free environment is one invocation's: waking every waiter made each of the others
    cold-start an environment (8 connections used to bring up 16-19 of them)."""
    from lambdalet.scheduler.pool import FunctionPool

    async def scenario() -> None:
        pool = FunctionPool(echo_spec(tmp_path), None)
        loop = asyncio.get_running_loop()
        waiters = [loop.create_future() for _ in range(3)]
        pool.waiters.extend(waiters)
        envs = [ExecutionEnvironment(pool.spec, Sink(), str(tmp_path / "tmp")) for _ in range(2)]
        for env in envs:
            env._enter(EnvState.READY)  # (as at the end of its Init phase)
            pool.envs.append(env)
        waiters[0].cancel()  # one that timed out meanwhile is skipped
        pool.freed(envs[0])
        assert [w.done() and not w.cancelled() for w in waiters] == [False, True, False]
        pool.freed(envs[1])
        assert waiters[2].done()
        assert pool.pick() is envs[1]  # the most recently freed first
        pool.take(envs[1])
        assert pool.pick() is envs[0] and envs[1].waiting_invoke

    asyncio.run(scenario())


def test_provisioned_environments_are_taken_before_on_demand_ones(tmp_path: Path) -> None:
    """As on Lambda: an invoke runs on provisioned concurrency whenever some is free, even when an
    on-demand environment was used more recently."""
    import dataclasses

    from lambdalet.scheduler.pool import FunctionPool

    async def scenario() -> None:
        spec = echo_spec(tmp_path)
        pool = FunctionPool(spec, None)
        provisioned = ExecutionEnvironment(dataclasses.replace(spec, initialization_type="provisioned-concurrency"),
                                           Sink(), str(tmp_path / "tmp"))
        on_demand = ExecutionEnvironment(spec, Sink(), str(tmp_path / "tmp"))
        for env in (provisioned, on_demand):
            env._enter(EnvState.READY)  # (as at the end of its Init phase)
            pool.envs.append(env)
        pool.freed(provisioned)
        pool.freed(on_demand)  # the most recent one: would be first without provisioned concurrency
        assert pool.pick() is provisioned
        pool.take(provisioned)
        assert pool.pick() is on_demand
        pool.ready.clear()
        pool.ready_provisioned.clear()
        provisioned._claimed = False  # (as once its invocation has begun)
        on_demand.last_used += 10  # no ready stack (e.g. after a restart of init): the scan prefers it too
        assert pool.pick() is provisioned

    asyncio.run(scenario())
