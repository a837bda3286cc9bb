"""CloudWatch Logs subset and function URLs, through boto3 and plain HTTP."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
import spec_bootstraps as sb
from botocore.exceptions import ClientError
from conftest import create_function, make_zip, unique_name, wait_for_log

# Returns the function URL event as the HTTP body, or a statusCode response chosen by the event's path.
URL_FUNCTION = r"""#!/bin/bash
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  case "$EVENT" in
    *'"rawPath": "/teapot"'*|*'"rawPath":"/teapot"'*)
      OUT='{"statusCode": 418, "headers": {"x-custom": "yes", "content-type": "text/plain"}, "cookies": ["a=1", "b=2"], "body": "short and stout"}' ;;
    *'"rawPath": "/binary"'*)
      OUT='{"statusCode": 200, "headers": {"content-type": "application/octet-stream"}, "isBase64Encoded": true, "body": "AAEC/w=="}' ;;
    *'"rawPath": "/fail"'*)
      curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/error" -d '{"errorMessage":"no","errorType":"E"}'
      continue ;;
    *) OUT="$EVENT" ;;
  esac
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" -d "$OUT"
done
"""


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def url_fn(server):
    name = unique_name("url")
    create_function(server, name, make_zip({"bootstrap": URL_FUNCTION}))
    cfg = server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    return name, cfg["FunctionUrl"]


def test_function_url_config_lifecycle(server):
    name = unique_name("urlcfg")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    lam = server.lambda_client
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert cfg["FunctionUrl"].startswith(server.endpoint + "/lambda-url/") and cfg["FunctionUrl"].endswith("/")
    assert cfg["AuthType"] == "NONE" and cfg["FunctionArn"].endswith(name)
    with pytest.raises(ClientError) as exc:
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert exc.value.response["Error"]["Code"] == "ResourceConflictException"
    assert lam.get_function_url_config(FunctionName=name)["FunctionUrl"] == cfg["FunctionUrl"]
    assert lam.update_function_url_config(FunctionName=name, InvokeMode="RESPONSE_STREAM")["InvokeMode"] == \
        "RESPONSE_STREAM"
    assert [c["FunctionUrl"] for c in lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]] == \
        [cfg["FunctionUrl"]]
    lam.delete_function_url_config(FunctionName=name)
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=name)
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"
    status, headers, body = http("GET", cfg["FunctionUrl"])
    assert (status, headers["x-amzn-ErrorType"]) == (403, "AccessDeniedException")
    assert json.loads(body) == {"Message": "Forbidden. For troubleshooting Function URL authorization issues, see: "
                                           "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"}


def test_function_url_builds_a_v2_event(url_fn):
    _, url = url_fn
    status, headers, body = http("POST", url + "a/b?x=1&x=2&y=3", b'{"hi": 1}',
                                 {"Content-Type": "application/json", "Cookie": "c1=v1; c2=v2", "X-Thing": "t"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/a/b" and event["rawQueryString"] == "x=1&x=2&y=3"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "3"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-thing"] == "t" and "cookie" not in event["headers"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["http"]["path"] == "/a/b"
    assert event["body"] == '{"hi": 1}' and event["isBase64Encoded"] is False
    status, _, body = http("PUT", url, b"\x00\x01\x02", {"Content-Type": "application/octet-stream"})
    event = json.loads(body)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\x00\x01\x02"
    assert event["rawPath"] == "/" and "queryStringParameters" not in event


def test_function_url_maps_status_headers_cookies_and_binary(url_fn):
    _, url = url_fn
    status, headers, body = http("GET", url + "teapot")
    assert (status, body) == (418, b"short and stout")
    assert headers["x-custom"] == "yes" and headers["Content-Type"] == "text/plain"
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    status, _, body = http("GET", url + "binary")
    assert (status, body) == (200, b"\x00\x01\x02\xff")
    status, _, body = http("GET", url + "fail")
    assert (status, body) == (502, b"Internal Server Error")


def test_function_url_host_based_routing(url_fn):
    _, url = url_fn
    url_id = url.rstrip("/").rsplit("/", 1)[1]
    port = url.split(":")[2].split("/")[0]
    status, _, body = http("GET", f"http://127.0.0.1:{port}/hello?z=1",
                           headers={"Host": f"{url_id}.lambda-url.us-east-1.localhost:{port}"})
    assert status == 200 and json.loads(body)["rawPath"] == "/hello"


def test_logs_api_groups_streams_events_and_filters(server):
    name = unique_name("logs")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    for n in range(3):
        server.lambda_client.invoke(FunctionName=name, Payload=json.dumps({"n": n}).encode())
    wait_for_log(server, name, lambda m: sum(x.startswith("REPORT") for x in m) == 3)
    logs = server.logs_client
    group = f"/aws/lambda/{name}"
    groups = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    (stream,) = logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True)[
        "logStreams"]
    assert stream["logStreamName"].startswith(time.strftime("%Y/%m/%d/", time.gmtime()) + "[$LATEST]")
    assert len(stream["logStreamName"].split("]")[1]) == 32
    events = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True,
                                 limit=4)
    assert [e["message"] for e in events["events"]][1] == "bootstrap is executed!\n"
    assert all(e["message"].endswith("\n") for e in events["events"])  # as CloudWatch stores them
    more = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], startFromHead=True,
                               nextToken=events["nextForwardToken"])
    assert events["events"][3]["message"].startswith("The event data is")
    assert more["events"][0]["message"].startswith("The Request ID is")
    latest = logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"], limit=1)
    assert latest["events"][0]["message"].startswith("REPORT")
    found = logs.filter_log_events(logGroupName=group, filterPattern='"event data" 1')["events"]
    assert [e["message"] for e in found] == ['The event data is: {"n": 1}\n']
    assert all("logStreamName" in e and "eventId" in e for e in found)
    either = logs.filter_log_events(logGroupName=group, filterPattern='?END ?bootstrap')["events"]
    assert len(either) == 4
    paged = [e for p in logs.get_paginator("filter_log_events").paginate(logGroupName=group,
                                                                         PaginationConfig={"PageSize": 5})
             for e in p["events"]]
    assert len(paged) == len(logs.filter_log_events(logGroupName=group)["events"])
    with pytest.raises(ClientError) as exc:
        logs.filter_log_events(logGroupName="/aws/lambda/nope")
    assert exc.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_cli_invoke_and_logs(server):
    import subprocess
    import sys

    name = unique_name("cli")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    out = subprocess.run([sys.executable, "-m", "lambdalet.cli", "invoke", name, "--payload", '{"c": 1}',
                          "--endpoint", server.endpoint], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["echo"] == {"c": 1}
    wait_for_log(server, name, lambda m: any(x.startswith("REPORT") for x in m))
    out = subprocess.run([sys.executable, "-m", "lambdalet.cli", "logs", name, "--endpoint", server.endpoint],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "bootstrap is executed!" in out.stdout and "REPORT RequestId" in out.stdout


def test_function_url_cors(server):
    name = unique_name("cors")
    create_function(server, name, make_zip({"bootstrap": URL_FUNCTION}))
    url = server.lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
              "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-custom"], "MaxAge": 300,
              "AllowCredentials": True})["FunctionUrl"]
    status, headers, body = http("OPTIONS", url + "teapot", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert status == 200 and body == b""
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Allow-Headers"] == "x-custom"
    assert headers["Access-Control-Max-Age"] == "300"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    status, headers, body = http("GET", url + "teapot", headers={"Origin": "https://app.example"})
    assert status == 418 and headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert headers["Access-Control-Expose-Headers"] == "x-custom"
    status, headers, _ = http("GET", url + "teapot", headers={"Origin": "https://evil.example"})
    assert status == 418 and "Access-Control-Allow-Origin" not in headers
