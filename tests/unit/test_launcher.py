"""The launcher seam's pure parts: paths moved into the sandbox, the uid pool, the tier's choice."""

from __future__ import annotations

import pytest

from lambdalet.environment import launcher
from lambdalet.environment.launcher import UidPool, _install_root, _moved

MOVES = [["/data/code/abc/task", "/var/task"], ["/data/opt", "/opt"], ["/data/tmp/env1", "/tmp"]]


@pytest.mark.parametrize(("value", "moved"), [
    ("/data/code/abc/task", "/var/task"),
    ("/data/code/abc/task/bootstrap", "/var/task/bootstrap"),
    ("/data/code/abc/taskforce", "/data/code/abc/taskforce"),  # a sibling, not inside
    ("/lib64:/data/code/abc/task/lib:/data/opt/lib", "/lib64:/var/task/lib:/opt/lib"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("plain", "plain"),
    ("", ""),
])
def test_host_paths_move_to_lambdas(value: str, moved: str) -> None:
    assert _moved(value, MOVES) == moved


def test_uid_pool_hands_out_each_uid_once_and_reuses_the_lowest() -> None:
    pool = UidPool(100, 102)
    assert [pool.acquire() for _ in range(3)] == [100, 101, 102]
    with pytest.raises(OSError, match="all 3 sandbox uids are in use"):
        pool.acquire()
    pool.release(101)
    pool.release(101)  # (twice: once only)
    pool.release(100)
    assert [pool.acquire(), pool.acquire()] == [100, 101]


def test_install_root_of_an_interpreter(tmp_path) -> None:
    exe = tmp_path / "py" / "bin" / "python3"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    assert _install_root(str(exe)) == str(tmp_path / "py")
    assert _install_root(str(tmp_path / "py" / "python3")) == str(tmp_path / "py")


def test_none_is_the_plain_tier_and_says_so() -> None:
    line = launcher.configure("none")
    assert isinstance(launcher.current(), launcher.PlainLauncher)
    assert line == "isolation none (--isolation none): functions run as the server's user and see its files"
