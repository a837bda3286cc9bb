"""A function's /opt: its layers' unpacked trees merged in order, later layers over earlier ones.

Run as a child process (`python -m lambdalet.store.opt_merge <request JSON>`), so that walking
trees of thousands of entries never holds the server's GIL. The request is
{"dest": dir, "layers": [layer roots, in order], "task_root": the function's code, "limit": bytes};
the one-line JSON answer is {"size": n} (function and layers unzipped; dest built unless it already
exists) or {"error": "too_large", "size": n} (nothing built) or {"error": "failed", "message": ...}.

The merged tree is made of hard links to the layers' read-only files (a copy where linking is not
possible), directories, and the layers' symbolic links, made last; a link that, in the merged tree,
resolves outside it (possible when another layer replaced a directory it went through) is dropped.
It is built in a staging directory and renamed into place, so dest is complete or absent.

Stdlib only, cheap to import (the child starts with -S).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from lambdalet.store.code import remove_tree

STAGING_PREFIX = ".staging-"


def _walk(root: str):
    """(rel, kind, path) of every entry below root, each directory before what it holds."""
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_symlink():
                yield sub, "link", entry.path
            elif entry.is_dir(follow_symlinks=False):
                yield sub, "dir", entry.path
                stack.append(sub)
            else:
                yield sub, "file", entry.path


def tree_size(root: str) -> int:
    """Bytes of the regular files below root (what Lambda counts as unzipped size)."""
    return sum(os.lstat(path).st_size for _, kind, path in _walk(root) if kind == "file")


def plan(layer_roots: list[str]) -> dict[str, tuple[str, str]]:
    """rel -> (kind, source) of the merged tree, parents before children (insertion order)."""
    nodes: dict[str, tuple[str, str]] = {}
    for root in layer_roots:
        for rel, kind, path in _walk(root):
            known = nodes.get(rel)
            if known is not None:
                if known[0] == kind == "dir":
                    continue
                if known[0] == "dir":  # a file or link replaces a whole directory
                    prefix = rel + "/"
                    for key in [k for k in nodes if k.startswith(prefix)]:
                        del nodes[key]
                del nodes[rel]
            nodes[rel] = (kind, path)
    return nodes


def build(layer_roots: list[str], dest: str) -> None:
    """Make dest the merged tree of layer_roots (no-op when it already exists)."""
    if os.path.isdir(dest):
        return
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=STAGING_PREFIX)
    try:
        nodes = plan(layer_roots)
        links = []
        for rel, (kind, source) in nodes.items():
            target = os.path.join(staging, *rel.split("/"))
            if kind == "dir":
                os.mkdir(target, 0o755)
            elif kind == "file":
                try:
                    os.link(source, target, follow_symlinks=False)
                except OSError:  # another filesystem, a link limit, a protected_hardlinks refusal
                    shutil.copy2(source, target, follow_symlinks=False)
            else:
                links.append((target, os.readlink(source)))
        for target, value in links:
            os.symlink(value, target)
        root = os.path.realpath(staging)
        for target, _ in links:
            resolved = os.path.realpath(target)
            if resolved != root and not resolved.startswith(root + os.sep):
                os.unlink(target)
        for rel, (kind, _) in reversed(nodes.items()):
            if kind == "dir":
                os.chmod(os.path.join(staging, *rel.split("/")), 0o555)
        try:
            os.rename(staging, dest)  # (while still writable: renaming a directory may need that)
        except OSError:
            if not os.path.isdir(dest):  # (else: built meanwhile by another request)
                raise
        else:
            os.chmod(dest, 0o555)
    finally:
        if os.path.lexists(staging):
            remove_tree(staging)


def sweep(root: str) -> None:
    """Remove the staging directories an interrupted merge left in root."""
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith(STAGING_PREFIX):
                remove_tree(os.path.join(root, name))


def run(request: dict) -> dict:
    layers = request["layers"]
    size = tree_size(request["task_root"]) + sum(tree_size(root) for root in layers)
    if size > request["limit"]:
        return {"error": "too_large", "size": size}
    build(layers, request["dest"])
    return {"size": size}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    try:
        answer = run(json.loads(args[0]))
    except (OSError, ValueError, KeyError, IndexError) as exc:
        answer = {"error": "failed", "message": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
