"""Answers that once differed from the ones recorded on AWS: invoke headers, LoggingConfig defaults,
function URL result mapping, unknown URLs and path normalisation."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import spec_bootstraps as sb
from conftest import create_function, make_zip, unique_name

URL_HANDLER = """
def handler(event, context):
    path = event["rawPath"]
    if path == "/string":
        return "hello"
    if path == "/string-status":
        return {"statusCode": "418", "body": "teapot"}
    if path == "/number":
        return 42
    return {"statusCode": 200, "body": path + " " + event["requestContext"]["http"]["path"]}
"""


def http(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def url(server) -> str:
    name = unique_name("answers")
    create_function(server, name, make_zip({"app.py": URL_HANDLER}), runtime="python3.11", handler="app.handler")
    return server.lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]


def test_event_and_dry_run_answers_carry_no_executed_version(server):
    name = unique_name("headers")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    lam = server.lambda_client
    event = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    dry = lam.invoke(FunctionName=name, InvocationType="DryRun")
    assert (event["StatusCode"], dry["StatusCode"]) == (202, 204)
    for resp in (event, dry):
        assert "x-amz-executed-version" not in resp["ResponseMetadata"]["HTTPHeaders"]
        assert "ExecutedVersion" not in resp
    sync = lam.invoke(FunctionName=name, Payload=b"{}")
    assert sync["ExecutedVersion"] == "$LATEST"


def test_json_log_format_defaults_its_levels_to_info(server):
    lam = server.lambda_client
    name = unique_name("jsonlogs")
    cfg = create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}), LoggingConfig={"LogFormat": "JSON"})
    assert cfg["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                                    "LogGroup": f"/aws/lambda/{name}"}
    other = unique_name("textlogs")
    cfg = create_function(server, other, make_zip({"bootstrap": sb.EVENT_LOOP}))
    assert cfg["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{other}"}
    cfg = lam.update_function_configuration(FunctionName=other, LoggingConfig={"LogFormat": "JSON",
                                                                                 "SystemLogLevel": "WARN"})
    assert cfg["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN",
                                    "LogGroup": f"/aws/lambda/{other}"}
    assert lam.get_function_configuration(FunctionName=other)["LoggingConfig"] == cfg["LoggingConfig"]


def test_function_url_result_as_aws_maps_it(url):
    assert http(url + "string")[::2] == (200, b"hello")  # a JSON string is the body itself
    assert http(url + "string-status")[::2] == (418, b"teapot")
    assert http(url + "number")[::2] == (200, b"42")


def test_unknown_function_url_is_forbidden(server, url):
    status, headers, body = http(server.endpoint + "/lambda-url/" + "0" * 32 + "/")
    assert status == 403 and headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert json.loads(body) == {"Message": "Forbidden. For troubleshooting Function URL authorization issues, see: "
                                           "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"}


def test_function_url_paths_are_normalised(url):
    assert http(url + "/x")[::2] == (200, b"/x /x")
    assert http(url + "a//b///c")[::2] == (200, b"/a/b/c /a/b/c")
