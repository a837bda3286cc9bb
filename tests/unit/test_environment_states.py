"""The execution environment's lifecycle as one state machine: transitions it does not allow are refused,
and the scheduler claims and retires environments through their methods."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_scheduler import Sink, echo_spec

from lambdalet.environment import EnvState, ExecutionEnvironment
from lambdalet.environment.environment import InvalidStateTransition


def make(tmp_path: Path, name: str = "a") -> ExecutionEnvironment:
    (tmp_path / name).mkdir()
    return ExecutionEnvironment(echo_spec(tmp_path / name), Sink(), str(tmp_path / "tmp"))


def test_only_the_lifecycles_transitions_are_taken(tmp_path: Path) -> None:
    env = make(tmp_path)
    assert env.state is EnvState.INITIALIZING
    with pytest.raises(InvalidStateTransition):
        env._enter(EnvState.BUSY)  # no invocation during the Init phase
    env._enter(EnvState.READY)
    env._enter(EnvState.BUSY)
    env._enter(EnvState.READY)
    env._enter(EnvState.STOPPED)
    for state in EnvState:
        with pytest.raises(InvalidStateTransition, match="stopped cannot become"):
            env._enter(state)  # stopped is final
    env.kill_now()  # (ending a stopped environment again is no transition)
    assert env.state is EnvState.STOPPED


def test_claim_and_retire(tmp_path: Path) -> None:
    async def scenario() -> None:
        env = make(tmp_path)
        env._enter(EnvState.READY)
        env.claim()
        assert env.waiting_invoke and not env.available
        with pytest.raises(InvalidStateTransition):
            env.claim()  # one invocation at a time
        assert env.retire() is False  # claimed: it is stopped after its invocation, not now
        assert env.retired and not env.claim_ready()
        idle = make(tmp_path, "b")
        idle._enter(EnvState.READY)
        assert idle.retire() is True  # nothing runs there: stop it now
        with pytest.raises(InvalidStateTransition):
            idle.claim()

    asyncio.run(scenario())
