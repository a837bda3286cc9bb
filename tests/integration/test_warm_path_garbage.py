"""A warm invoke leaves no reference cycles behind: everything it allocates is freed by reference
counting, so the server's cyclic GC has nothing to find. (Each cycle left per invoke is garbage the
collector must trace: 20 objects an invoke cost ~40 µs of server CPU in collections.)"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from conftest import REPO, Server, create_function, free_port, make_zip, stop_server, unique_name

# The real CLI, with a gc callback counting what the collector frees; the test asks for a full
# collection by creating <dir>/collect, and reads the total from <dir>/collected.
_WRAPPER = textwrap.dedent("""
    import gc, os, sys, threading, time
    probe = sys.argv.pop(1)
    freed = [0]
    gc.callbacks.append(lambda phase, info: phase == "stop" and freed.__setitem__(0, freed[0] + info["collected"]))

    def watch():
        while True:
            time.sleep(0.02)
            request = os.path.join(probe, "collect")
            if os.path.exists(request):
                os.unlink(request)
                gc.collect()
                with open(os.path.join(probe, "collected.tmp"), "w") as f:
                    f.write(str(freed[0]))
                os.replace(os.path.join(probe, "collected.tmp"), os.path.join(probe, "collected"))

    threading.Thread(target=watch, daemon=True).start()
    from lambdalet.cli import main
    sys.argv[0] = "lambdalet"
    main()
""")

APP = "def handler(event, context):\n    return {'ok': True, 'n': event.get('n')}\n"
BOOTSTRAP = """#!/bin/sh
while true; do
  curl -sS -D /tmp/h.$$ -o /tmp/e.$$ "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id /tmp/h.$$ | tr -d '[:cntrl:]' | awk '{print $2}')
  curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" -d '{}'
done
"""


def _start(tmp_path: Path) -> tuple[Server, Path]:
    probe = tmp_path / "probe"
    probe.mkdir()
    port = free_port()
    log_path = tmp_path / "server.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRAPPER, str(probe), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(tmp_path / "data")],
        stdout=log_file, stderr=subprocess.STDOUT, cwd=str(REPO))
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(endpoint + "/lambdalet/health", timeout=1):
                return Server(endpoint, tmp_path / "data", proc, log_path), probe
        except OSError:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def _collected(probe: Path) -> int:
    (probe / "collected").unlink(missing_ok=True)
    (probe / "collect").touch()
    deadline = time.time() + 10
    while not (probe / "collected").exists():
        assert time.time() < deadline, "no answer from the gc probe"
        time.sleep(0.01)
    return int((probe / "collected").read_text())


def _invoke_many(server: Server, name: str, count: int) -> None:
    conn = http.client.HTTPConnection(server.endpoint.removeprefix("http://"), timeout=30)
    path = f"/2015-03-31/functions/{name}/invocations"
    for n in range(count):
        conn.request("POST", path, json.dumps({"n": n}).encode())
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    conn.close()


def test_warm_invokes_leave_no_cyclic_garbage(tmp_path):
    server, probe = _start(tmp_path)
    try:
        python = unique_name("gc-py")
        create_function(server, python, make_zip({"app.py": APP}), runtime="python3.11", handler="app.handler")
        provided = unique_name("gc-sh")
        create_function(server, provided, make_zip({"bootstrap": BOOTSTRAP}))
        for name in (python, provided):
            _invoke_many(server, name, 20)  # cold start and warm-up: whatever they leave is not counted
        before = _collected(probe)
        _invoke_many(server, python, 300)
        _invoke_many(server, provided, 50)
        freed = _collected(probe) - before
        # Before the cycles were broken: ~20 objects an invoke (7,000 here).
        assert freed < 100, f"{freed} objects of cyclic garbage after 350 warm invokes"
    finally:
        stop_server(server)
