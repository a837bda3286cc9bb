"""Entry point of lambdalet's Python runtime: `python -s -u bootstrap.py <handler>`.

`python -s -u bootstrap.py --fork-server` is the fork server (lambdalet_runtime.fork_server): the
same start-up with the runtime imported, whose forked children carry on into the same main().

Runs inside the function's environment with cwd = the task root. Honours AWS_LAMBDA_EXEC_WRAPPER
the way AWS's managed-runtime bootstraps do, lays out sys.path (task root, layers, the
interpreter's own paths, then the host's site-packages) and starts the runtime loop.
"""

from __future__ import annotations

import os
import sys

_WRAPPED_MARK = "_LAMBDALET_EXEC_WRAPPED"
_HOST_SITE_ENV = "_LAMBDALET_HOST_SITE_PACKAGES"
_OPT_DIR_ENV = "_LAMBDALET_OPT_DIR"
_CGROUP_JOIN_ENV = "_LAMBDALET_CGROUP_TASKS"


def _say(text: str) -> None:
    os.write(1, (text + "\n").encode("utf-8", "replace"))


def exec_wrapper_if_any() -> None:
    """exec $AWS_LAMBDA_EXEC_WRAPPER <interpreter> <args...> once, with AWS's 127/126 exit codes."""
    wrapper = os.environ.get("AWS_LAMBDA_EXEC_WRAPPER")
    if not wrapper or os.environ.get(_WRAPPED_MARK) == wrapper:
        os.environ.pop(_WRAPPED_MARK, None)
        return
    path = wrapper
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    opt_dir = os.environ.get(_OPT_DIR_ENV)
    if not os.path.exists(path) and path.startswith("/var/task/"):
        # The task root is not /var/task here; AWS-style absolute paths into it still work.
        path = os.path.join(task_root, path[len("/var/task/") :])
    elif not os.path.exists(path) and path.startswith("/opt/") and opt_dir:  # a wrapper from a layer
        path = os.path.join(opt_dir, path[len("/opt/") :])
    if not os.path.isfile(path):
        _say(f"{wrapper}: does not exist")
        sys.exit(127)
    if not os.access(path, os.X_OK):
        _say(f"{wrapper}: is not an executable")
        sys.exit(126)
    os.environ[_WRAPPED_MARK] = wrapper
    args = list(getattr(sys, "orig_argv", None) or ["python", "-s", "-u", *sys.argv])
    args[0] = sys.executable
    os.execv(path, [path, *args])


def arrange_sys_path(runtime_dir: str) -> None:
    """Task root first, then layer paths, then the interpreter's own, then the host's site-packages."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    paths = [p for p in sys.path if p and os.path.abspath(p) != runtime_dir]
    front = [task_root]
    opt_dir = os.environ.pop(_OPT_DIR_ENV, None)
    if opt_dir:
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        layer_python = os.path.join(opt_dir, "python")
        front += [os.path.join(layer_python, "lib", version, "site-packages"), layer_python]
    host_site = os.environ.pop(_HOST_SITE_ENV, "")
    back = [p for p in host_site.split(os.pathsep) if p]
    result: list[str] = []
    for p in front + paths + back:
        if p not in result:
            result.append(p)
    sys.path[:] = result


def _runtime_dir() -> str:
    runtime_dir = os.path.dirname(os.path.abspath(__file__))
    if runtime_dir not in sys.path:  # e.g. PYTHONSAFEPATH keeps the script's directory off sys.path
        sys.path.insert(0, runtime_dir)
    return runtime_dir


def join_memory_cgroup() -> None:
    """Move this (still single-threaded) process into the environment's memory cgroup, if asked:
    moving oneself is ~0.1 ms where the server moving us would wait for an RCU grace period."""
    path = os.environ.pop(_CGROUP_JOIN_ENV, None)
    if path:
        try:
            with open(path, "w") as tasks:
                tasks.write("0")
        except OSError:
            pass  # the server sees it and moves the process itself


def main() -> None:
    join_memory_cgroup()
    exec_wrapper_if_any()
    handler = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("_HANDLER", "")
    runtime_dir = _runtime_dir()
    # Import the whole runtime before the task root goes on sys.path, so user modules can't shadow it.
    from lambdalet_runtime.invoke_loop import run

    arrange_sys_path(runtime_dir)
    run(handler)


def fork_server() -> None:
    """Serve fork requests; returns only in a forked child, ready for main()."""
    _runtime_dir()
    import lambdalet_runtime.invoke_loop  # noqa: F401  (what main() imports, done once here)

    keep = set(sys.modules)
    from lambdalet_runtime.fork_server import serve

    serve(keep)


if __name__ == "__main__":
    if sys.argv[1:] == ["--fork-server"]:
        fork_server()
    main()
