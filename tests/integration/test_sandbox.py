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
