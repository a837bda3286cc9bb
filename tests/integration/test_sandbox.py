"""Memory limits: a function that outgrows its MemorySize is killed as on Lambda (where cgroups allow)."""

from __future__ import annotations

import json
import os
import sys

from conftest import create_function, make_zip, unique_name, wait_for_log

HOG = f"""#!{os.path.realpath(sys.executable)} -S
import http.client, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    size = int(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    blob = bytearray(size * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", str(len(blob)))
    conn.getresponse().read()
    del blob
"""


def cgroups_writable() -> bool:
    return os.access("/sys/fs/cgroup/memory", os.W_OK)


def test_memory_over_the_limit_is_out_of_memory(server):
    name = unique_name("hog")
    create_function(server, name, make_zip({"bootstrap": HOG}), memory=128, timeout=20)
    ok = server.lambda_client.invoke(FunctionName=name, Payload=b"32")
    assert json.loads(ok["Payload"].read()) == 32 * 1024 * 1024
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"400")
    if not cgroups_writable():  # no cgroups here: nothing to enforce with
        assert "FunctionError" not in resp
        return
    assert resp["FunctionError"] == "Unhandled"
    doc = json.loads(resp["Payload"].read())
    assert doc["errorType"] == "Runtime.OutOfMemory"
    assert doc["errorMessage"].endswith("Error: Runtime exited with error: signal: killed")
    msgs = wait_for_log(server, name, lambda m: any("Runtime.OutOfMemory" in x for x in m))
    report = [m for m in msgs if m.startswith("REPORT")][-1]
    assert "Max Memory Used: 1" in report  # about the 128 MB limit
    again = server.lambda_client.invoke(FunctionName=name, Payload=b"16")  # restarted, healthy
    assert json.loads(again["Payload"].read()) == 16 * 1024 * 1024


CGROUP_PROBE = """import os
with open("/proc/self/cgroup") as f:
    AT_IMPORT = [line.strip() for line in f if ":memory:" in line]
def handler(event, context):
    return {"at_import": AT_IMPORT, "pid": os.getpid(),
            "leaked": sorted(k for k in os.environ if k.startswith("_LAMBDALET"))}
"""


def test_python_functions_are_in_their_memory_cgroup_before_user_code_runs(server):
    name = unique_name("cgpy")
    create_function(server, name, make_zip({"app.py": CGROUP_PROBE}), runtime="python3.12", handler="app.handler")
    for generation in range(3):  # the first cold start is exec'd, the next ones forked from the fork server
        if generation:
            server.lambda_client.update_function_configuration(
                FunctionName=name, Environment={"Variables": {"GEN": str(generation)}})
        doc = json.loads(server.lambda_client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        assert doc["leaked"] == []
        if cgroups_writable():
            (line,) = doc["at_import"]  # cgroup v1 (the only writable kind in cgroups_writable())
            assert "/lambdalet-" in line, line  # the environment's cgroup, not the server's
            env_cgroup = "/sys/fs/cgroup/memory" + line.split(":", 2)[2]
            with open(os.path.join(env_cgroup, "cgroup.procs")) as f:
                procs = f.read().split()
            if doc["pid"] == 2 and os.geteuid() == 0:  # sandboxed: PID 1 and the runtime, host pids
                assert len(procs) >= 2, procs
            else:
                assert str(doc["pid"]) in procs
