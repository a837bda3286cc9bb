"""Merging layer trees into one /opt (lambdalet.store.opt_merge), on real directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lambdalet.store import opt_merge

SRC = str(Path(__file__).resolve().parents[2] / "src")


def tree(root: Path, files: dict[str, str | None]) -> str:
    """Files (None: an empty directory) below root."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return str(root)


def contents(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = path.read_text()
    return out


def test_later_layers_win_and_replace_whole_subtrees(tmp_path: Path) -> None:
    first = tree(tmp_path / "a", {"python/x.py": "a", "python/only_a.py": "a", "lib": None, "thing/inner": "a",
                                  "file_then_dir": "a"})
    second = tree(tmp_path / "b", {"python/x.py": "b", "thing": "b", "file_then_dir/inside": "b"})
    dest = tmp_path / "opt"
    opt_merge.build([first, second], str(dest))
    assert contents(dest) == {"python/x.py": "b", "python/only_a.py": "a", "thing": "b", "file_then_dir/inside": "b"}
    assert (dest / "lib").is_dir()
    assert not os.access(dest / "python", os.W_OK) or os.geteuid() == 0  # sealed read-only, as the code is
    assert os.stat(dest / "python" / "only_a.py").st_ino == os.stat(tmp_path / "a" / "python" / "only_a.py").st_ino


def test_links_are_kept_but_none_may_leave_the_merged_tree(tmp_path: Path) -> None:
    first = tree(tmp_path / "a", {"s/a/b/c": None, "data.txt": "d"})
    os.symlink("s/a/b", tmp_path / "a" / "s2")  # fine in the first layer alone
    os.symlink("s2/../../..", tmp_path / "a" / "up")  # s/a/b/../../.. is the layer's root: inside
    os.symlink("data.txt", tmp_path / "a" / "alias")
    opt_merge.build([first], str(tmp_path / "alone"))
    assert os.path.lexists(tmp_path / "alone" / "up")
    second = tree(tmp_path / "b", {"s2/x": "x"})  # s2 becomes a directory: "up" would now leave the tree
    dest = tmp_path / "opt"
    opt_merge.build([first, second], str(dest))
    assert (dest / "alias").is_symlink() and (dest / "alias").read_text() == "d"
    assert not os.path.lexists(dest / "up")
    assert (dest / "s2" / "x").read_text() == "x"


def test_an_existing_destination_is_left_alone_and_sizes_add_up(tmp_path: Path) -> None:
    layer = tree(tmp_path / "a", {"one": "12345", "sub/two": "123"})
    task = tree(tmp_path / "task", {"app.py": "1234567890"})
    dest = tmp_path / "opt"
    request = {"dest": str(dest), "layers": [layer], "task_root": task, "limit": 18}
    assert opt_merge.run(request) == {"size": 18}
    assert opt_merge.run({**request, "layers": [layer, layer]}) == {"error": "too_large", "size": 26}
    other = tree(tmp_path / "b", {"z": "z"})
    opt_merge.build([other], str(dest))  # already built: unchanged
    assert contents(dest) == {"one": "12345", "sub/two": "123"}


def test_the_child_process_answers_one_json_line(tmp_path: Path) -> None:
    layer = tree(tmp_path / "a", {"f": "x"})
    (tmp_path / "opt.layers").mkdir()
    (tmp_path / "opt.layers" / f"{opt_merge.STAGING_PREFIX}left").mkdir()
    opt_merge.sweep(str(tmp_path / "opt.layers"))
    assert list((tmp_path / "opt.layers").iterdir()) == []
    request = {"dest": str(tmp_path / "opt.layers" / "k"), "layers": [layer], "task_root": layer, "limit": 100}
    out = subprocess.run([sys.executable, "-P", "-S", "-m", "lambdalet.store.opt_merge", json.dumps(request)],
                         capture_output=True, env={**os.environ, "PYTHONPATH": SRC}, check=True)
    assert json.loads(out.stdout) == {"size": 2}
    broken = subprocess.run([sys.executable, "-P", "-S", "-m", "lambdalet.store.opt_merge", "{}"],
                            capture_output=True, env={**os.environ, "PYTHONPATH": SRC}, check=True)
    assert json.loads(broken.stdout)["error"] == "failed"
