"""Versions, aliases and qualifiers through boto3 against a real `lambdalet serve`."""

from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
import zipfile

import pytest
from botocore.exceptions import ClientError
from conftest import (
    create_function,
    log_messages,
    make_zip,
    start_server,
    stop_server,
    unique_name,
    wait_for_log,
)

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/x"

# Answers with what it runs: the code's own mark, its version, a configured variable, the invoked ARN.
VERSIONED = r"""#!/bin/bash
H=$(mktemp)
while true; do
  EVENT=$(curl -sS -D "$H" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  ARN=$(grep -Fi Lambda-Runtime-Invoked-Function-Arn "$H" | tr -d '[:cntrl:]' | awk '{print $2}')
  DOC="\"code\":\"__MARK__\",\"version\":\"$AWS_LAMBDA_FUNCTION_VERSION\",\"greeting\":\"${GREETING:-}\""
  DOC="$DOC,\"arn\":\"$ARN\",\"stream\":\"$AWS_LAMBDA_LOG_STREAM_NAME\""
  curl -sS -o /dev/null -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" \
    -d "{$DOC}"
done
"""


def code(mark: str) -> bytes:
    return make_zip({"bootstrap": VERSIONED.replace("__MARK__", mark)})


def error(exc: ClientError) -> tuple[str, int, str]:
    return (exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"],
            exc.response["Error"]["Message"])


def arn(name: str, qualifier: str | None = None) -> str:
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}" + (f":{qualifier}" if qualifier else "")


def call(lam, name: str, **kwargs) -> tuple[dict, str]:
    resp = lam.invoke(FunctionName=name, Payload=b"{}", **kwargs)
    assert "FunctionError" not in resp, resp["Payload"].read()
    return json.loads(resp["Payload"].read()), resp["ExecutedVersion"]


@pytest.fixture
def fn(server):
    name = unique_name("ver")
    create_function(server, name, code("A"), env={"GREETING": "a"})
    return name


def test_a_version_keeps_its_code_and_configuration(server, fn):
    lam = server.lambda_client
    v1 = lam.publish_version(FunctionName=fn, Description="first")
    assert (v1["Version"], v1["FunctionArn"], v1["Description"]) == ("1", arn(fn, "1"), "first")
    assert v1["State"] == "Pending" and "LastUpdateStatus" not in v1
    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {"GREETING": "b"}})
    lam.update_function_code(FunctionName=fn, ZipFile=code("B"))
    doc, executed = call(lam, fn, Qualifier="1")
    assert (doc["code"], doc["greeting"], doc["version"], executed) == ("A", "a", "1", "1")
    assert doc["arn"] == arn(fn, "1")
    doc, executed = call(lam, fn)
    assert (doc["code"], doc["greeting"], doc["version"], executed) == ("B", "b", "$LATEST", "$LATEST")
    got = lam.get_function(FunctionName=fn, Qualifier="1")
    assert got["Configuration"]["Environment"]["Variables"] == {"GREETING": "a"}
    assert got["Configuration"]["CodeSha256"] == v1["CodeSha256"] and got["Configuration"]["State"] == "Active"
    with urllib.request.urlopen(got["Code"]["Location"]) as r:
        assert b"A" in zipfile.ZipFile(io.BytesIO(r.read())).read("bootstrap")
    assert lam.get_function_configuration(FunctionName=f"{fn}:1")["Description"] == "first"
    assert lam.get_function_configuration(FunctionName=fn)["Environment"]["Variables"] == {"GREETING": "b"}


def test_publishing_unchanged_code_returns_the_last_version_and_preconditions(server, fn):
    lam = server.lambda_client
    before = lam.get_function_configuration(FunctionName=fn)
    v1 = lam.publish_version(FunctionName=fn, CodeSha256=before["CodeSha256"], RevisionId=before["RevisionId"])
    assert v1["Version"] == "1"
    latest = lam.get_function_configuration(FunctionName=fn)
    assert latest["RevisionId"] != before["RevisionId"]  # publishing changes $LATEST's revision
    assert lam.publish_version(FunctionName=fn)["Version"] == "1"
    assert lam.publish_version(FunctionName=fn)["RevisionId"] == v1["RevisionId"]
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=fn, CodeSha256="abc")
    assert error(exc.value) == ("InvalidParameterValueException", 400,
                                f"CodeSHA256 (abc) is different from current CodeSHA256 in $LATEST "
                                f"({before['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.")
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=fn, RevisionId=before["RevisionId"])
    assert error(exc.value)[:2] == ("PreconditionFailedException", 412)
    assert "does not match the latest Revision Id" in error(exc.value)[2]
    with pytest.raises(ClientError) as exc:
        lam.publish_version(FunctionName=unique_name("none"))
    assert error(exc.value)[:2] == ("ResourceNotFoundException", 404)
    lam.update_function_configuration(FunctionName=fn, Description="changed")
    assert lam.publish_version(FunctionName=fn)["Version"] == "2"


def test_publish_on_create_and_on_update_code(server):
    lam = server.lambda_client
    name = unique_name("pub")
    created = create_function(server, name, code("A"), Publish=True)
    assert (created["Version"], created["FunctionArn"]) == ("1", arn(name, "1"))
    updated = lam.update_function_code(FunctionName=name, ZipFile=code("B"), Publish=True)
    assert updated["Version"] == "2"
    plain = lam.update_function_code(FunctionName=name, ZipFile=code("C"))
    assert plain["Version"] == "$LATEST" and plain["LastUpdateStatus"] == "InProgress"
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert versions[0]["FunctionArn"] == arn(name, "$LATEST") and "State" not in versions[1]
    assert [call(lam, name, Qualifier=q)[0]["code"] for q in ("1", "2", "$LATEST")] == ["A", "B", "C"]


def test_list_versions_and_functions_page_like_aws(server, fn):
    lam = server.lambda_client
    for i in range(4):
        lam.update_function_configuration(FunctionName=fn, Description=f"d{i}")
        lam.publish_version(FunctionName=fn)
    seen, marker = [], None
    while True:
        page = lam.list_versions_by_function(FunctionName=fn, MaxItems=2, **({"Marker": marker} if marker else {}))
        assert len(page["Versions"]) <= 2
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2", "3", "4"]
    paged = [v["Version"] for p in lam.get_paginator("list_versions_by_function").paginate(
        FunctionName=fn, PaginationConfig={"PageSize": 3}) for v in p["Versions"]]
    assert paged == seen
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).list_versions_by_function(FunctionName=fn, MaxItems=0)
    assert error(exc.value) == ("ValidationException", 400, "1 validation error detected: Value '0' at 'maxItems' "
                                "failed to satisfy constraint: Member must have value greater than or equal to 1")
    everything = [f["FunctionArn"] for p in lam.get_paginator("list_functions").paginate(
        FunctionVersion="ALL", PaginationConfig={"PageSize": 2}) for f in p["Functions"]]
    assert [a for a in everything if a.startswith(arn(fn) + ":")] == [
        arn(fn, q) for q in ("$LATEST", "1", "2", "3", "4")]
    plain = [f["FunctionArn"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]]
    assert arn(fn) in plain and not any(a.startswith(arn(fn) + ":") for a in plain)
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).list_functions(FunctionVersion="SOME")
    assert error(exc.value) == ("ValidationException", 400, "1 validation error detected: Value 'SOME' at "
                                "'functionVersion' failed to satisfy constraint: Member must satisfy enum value "
                                "set: [ALL]")


def test_a_version_has_its_own_environments_log_stream_and_start_line(server, fn):
    lam = server.lambda_client
    lam.publish_version(FunctionName=fn)
    resp = lam.invoke(FunctionName=fn, Qualifier="1", Payload=b"{}", LogType="Tail")
    doc = json.loads(resp["Payload"].read())
    rid = resp["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {rid} Version: 1" in base64.b64decode(resp["LogResult"]).decode().splitlines()
    assert doc["stream"].split("/")[3].startswith("[1]")
    latest, _ = call(lam, fn)
    assert latest["stream"].split("/")[3].startswith("[$LATEST]")
    streams = server.logs_client.describe_log_streams(logGroupName=f"/aws/lambda/{fn}")["logStreams"]
    assert sorted(s["logStreamName"].split("/")[3][:3] for s in streams) == ["[$L", "[1]"]
    event = lam.invoke(FunctionName=f"{fn}:1", InvocationType="Event", Payload=b'{"async": 1}')
    assert event["StatusCode"] == 202
    messages = wait_for_log(server, fn, lambda m: sum(x.endswith("Version: 1") for x in m) >= 2)
    assert sum(x.startswith("START") and x.endswith("Version: 1") for x in messages) == 2


def test_delete_function_with_a_qualifier_deletes_only_that_version(server, fn):
    lam = server.lambda_client
    lam.publish_version(FunctionName=fn)
    lam.update_function_code(FunctionName=fn, ZipFile=code("B"))
    lam.publish_version(FunctionName=fn)
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="2")
    assert call(lam, fn, Qualifier="1")[0]["code"] == "A"
    lam.delete_function(FunctionName=fn, Qualifier="1")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=fn)["Versions"]] == ["$LATEST", "2"]
    assert call(lam, fn)[0]["code"] == "B"  # the function itself is still there
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn, Qualifier="1", Payload=b"{}")
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(fn, '1')}")
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=fn, Qualifier="1")
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(fn, '1')}")
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=fn, Qualifier="$LATEST")
    assert error(exc.value) == ("InvalidParameterValueException", 400,
                                "$LATEST version cannot be deleted without deleting the function.")
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=fn, Qualifier="2")
    assert error(exc.value) == ("ResourceConflictException", 409,
                                "Unable to delete version because the following aliases reference it: [live]")
    with pytest.raises(ClientError) as exc:
        lam.delete_function(FunctionName=f"{fn}:live")
    assert error(exc.value) == ("InvalidParameterValueException", 400,
                                "Deletion of aliases is not currently supported.")
    lam.delete_alias(FunctionName=fn, Name="live")
    lam.delete_function(FunctionName=arn(fn, "2"))
    lam.update_function_configuration(FunctionName=fn, Description="again")
    assert lam.publish_version(FunctionName=fn)["Version"] == "3"  # numbers are never reused
    lam.delete_function(FunctionName=fn)
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=fn, Qualifier="3")
    assert error(exc.value)[:2] == ("ResourceNotFoundException", 404)


def test_alias_crud_and_errors(server, fn):
    lam = server.lambda_client
    raw = server.client("lambda", validate=False)
    lam.publish_version(FunctionName=fn)
    created = lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1", Description="prod")
    assert {k: created[k] for k in ("AliasArn", "Name", "FunctionVersion", "Description")} == {
        "AliasArn": arn(fn, "live"), "Name": "live", "FunctionVersion": "1", "Description": "prod"}
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    got = lam.get_alias(FunctionName=fn, Name="live")
    assert got["RevisionId"] == created["RevisionId"]
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    assert error(exc.value) == ("ResourceConflictException", 409, f"Alias already exists: {arn(fn, 'live')}")
    with pytest.raises(ClientError) as exc:
        lam.create_alias(FunctionName=fn, Name="other", FunctionVersion="9")
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(fn, '9')}")
    with pytest.raises(ClientError) as exc:
        raw.create_alias(FunctionName=fn, Name="123", FunctionVersion="1")
    assert error(exc.value) == ("ValidationException", 400, "1 validation error detected: Value '123' at 'name' "
                                "failed to satisfy constraint: Member must satisfy regular expression pattern: "
                                "(?!^[0-9]+$)([a-zA-Z0-9-_]+)")
    with pytest.raises(ClientError) as exc:
        raw.create_alias(FunctionName=fn, Name="a b", FunctionVersion="x")
    code, status, message = error(exc.value)
    assert (code, status) == ("ValidationException", 400) and message.startswith("2 validation errors detected: ")
    assert "Value 'x' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression " \
           "pattern: (\\$LATEST(\\.PUBLISHED)?|[0-9]+)" in message
    with pytest.raises(ClientError) as exc:
        lam.update_alias(FunctionName=fn, Name="live", Description="x", RevisionId="stale")
    assert error(exc.value)[:2] == ("PreconditionFailedException", 412)
    updated = lam.update_alias(FunctionName=fn, Name="live", FunctionVersion="$LATEST",
                               RevisionId=got["RevisionId"])
    assert updated["FunctionVersion"] == "$LATEST" and updated["Description"] == "prod"
    assert updated["RevisionId"] != got["RevisionId"]
    assert call(lam, fn, Qualifier="live")[1] == "$LATEST"
    lam.create_alias(FunctionName=fn, Name="beta", FunctionVersion="1")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=fn)["Aliases"]] == ["beta", "live"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName=fn, FunctionVersion="1")["Aliases"]] == ["beta"]
    page = lam.list_aliases(FunctionName=fn, MaxItems=1)
    assert [a["Name"] for a in page["Aliases"]] == ["beta"] and page["NextMarker"]
    rest = lam.list_aliases(FunctionName=fn, Marker=page["NextMarker"])
    assert [a["Name"] for a in rest["Aliases"]] == ["live"] and "NextMarker" not in rest
    lam.delete_alias(FunctionName=fn, Name="beta")
    for call_it in (lambda: lam.get_alias(FunctionName=fn, Name="beta"),
                    lambda: lam.delete_alias(FunctionName=fn, Name="beta"),
                    lambda: lam.update_alias(FunctionName=fn, Name="beta", Description="x")):
        with pytest.raises(ClientError) as exc:
            call_it()
        assert error(exc.value) == ("ResourceNotFoundException", 404, f"Cannot find alias arn: {arn(fn, 'beta')}")
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=fn, Qualifier="beta", Payload=b"{}")
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(fn, 'beta')}")


def python_code(mark: str) -> bytes:
    handler = f"def handler(event, context):\n    return {{'code': {mark!r}, 'arn': context.invoked_function_arn}}\n"
    return make_zip({"app.py": handler}, executable=())


def test_routing_config_sends_its_share_to_the_second_version(server):
    lam = server.lambda_client
    fn = unique_name("route")
    create_function(server, fn, python_code("A"), runtime="python3.12", handler="app.handler")
    lam.publish_version(FunctionName=fn)
    lam.update_function_code(FunctionName=fn, ZipFile=python_code("B"))
    lam.publish_version(FunctionName=fn)
    alias = lam.create_alias(FunctionName=fn, Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    counts = {"1": 0, "2": 0}
    for _ in range(400):
        doc, executed = call(lam, f"{fn}:canary")
        assert doc["code"] == {"1": "A", "2": "B"}[executed] and doc["arn"] == arn(fn, "canary")
        counts[executed] += 1
    assert 80 <= counts["2"] <= 160, counts  # 120 expected; 160 and 80 are over 4 standard deviations away
    lam.update_alias(FunctionName=fn, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in lam.get_alias(FunctionName=fn, Name="canary")
    assert {call(lam, f"{fn}:canary")[1] for _ in range(20)} == {"1"}


@pytest.mark.parametrize(("version", "weights", "expected"), [
    ("1", {"2": 1.5}, ("ValidationException", 400, "1 validation error detected: Value '{2=1.5}' at "
                       "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must "
                       "satisfy constraint: [Member must have value less than or equal to 1.0, Member must have "
                       "value greater than or equal to 0.0, Member must not be null]")),
    ("1", {"x": 0.5}, ("ValidationException", 400, "1 validation error detected: Value '{x=0.5}' at "
                       "'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must "
                       "satisfy constraint: [Member must have length less than or equal to 1024, Member must have "
                       "length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+, "
                       "Member must not be null]")),
    ("1", {"2": 0.1, "3": 0.1}, ("InvalidParameterValueException", 400,
                                 "Number of items in AdditionalVersionWeights cannot be greater than 1")),
    ("1", {"1": 0.5}, ("InvalidParameterValueException", 400, "Invalid function version 1. Function version 1 "
                       "is already included in routing configuration.")),
    ("$LATEST", {"1": 0.5}, ("InvalidParameterValueException", 400,
                             "$LATEST is not supported for an alias pointing to more than 1 version")),
    ("1", {"7": 0.5}, ("ResourceNotFoundException", 404, "Function not found: {arn}:7")),
])
def test_routing_config_is_validated_as_aws_does(server, fn, version, weights, expected):
    lam = server.lambda_client
    lam.publish_version(FunctionName=fn)
    lam.update_function_configuration(FunctionName=fn, Description="2")
    lam.publish_version(FunctionName=fn)
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).create_alias(
            FunctionName=fn, Name="a", FunctionVersion=version, RoutingConfig={"AdditionalVersionWeights": weights})
    assert error(exc.value) == (expected[0], expected[1], expected[2].replace("{arn}", arn(fn)))
    assert lam.list_aliases(FunctionName=fn)["Aliases"] == []


def test_qualifiers_in_every_spelling(server, fn):
    lam = server.lambda_client
    lam.publish_version(FunctionName=fn)
    lam.update_function_code(FunctionName=fn, ZipFile=code("B"))
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    for spelling in (f"{fn}:live", f"{ACCOUNT}:function:{fn}:live", arn(fn, "live")):
        doc, executed = call(lam, spelling)
        assert (doc["code"], executed, doc["arn"]) == ("A", "1", arn(fn, "live"))
        cfg = lam.get_function_configuration(FunctionName=spelling)
        assert (cfg["FunctionArn"], cfg["Version"]) == (arn(fn, "live"), "1")
    assert call(lam, f"{ACCOUNT}:function:{fn}", Qualifier="1")[0]["code"] == "A"
    assert call(lam, arn(fn), Qualifier="$LATEST")[0]["arn"] == arn(fn, "$LATEST")
    got = lam.get_function(FunctionName=fn, Qualifier="live")
    assert got["Configuration"]["FunctionArn"] == arn(fn, "live")
    streamed = lam.invoke_with_response_stream(FunctionName=fn, Qualifier="live", Payload=b"{}")
    assert streamed["ExecutedVersion"] == "1"
    chunks = b"".join(e["PayloadChunk"]["Payload"] for e in streamed["EventStream"] if "PayloadChunk" in e)
    assert json.loads(chunks)["code"] == "A"
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=f"{fn}:live", Qualifier="1", Payload=b"{}")
    assert error(exc.value) == ("InvalidParameterValueException", 400, "The derived qualifier from the function "
                                "name does not match the specified qualifier.")
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=f"arn:aws:lambda:eu-central-1:{ACCOUNT}:function:{fn}")
    assert error(exc.value) == ("ResourceNotFoundException", 404,
                                "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')")
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=f"arn:aws:lambda:eu-central-1:{ACCOUNT}:function:{fn}:live", Payload=b"{}")
    assert error(exc.value)[2] == "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')"
    with pytest.raises(ClientError) as exc:
        lam.get_function(FunctionName=f"123456789012:function:{fn}")
    assert error(exc.value) == ("ResourceNotFoundException", 404,
                                f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:{fn}")


def test_function_urls_on_latest_or_an_alias_only(server, fn):
    lam = server.lambda_client
    raw = server.client("lambda", validate=False)
    lam.publish_version(FunctionName=fn)
    lam.update_function_code(FunctionName=fn, ZipFile=code("B"))
    lam.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    on_alias = lam.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    assert on_alias["FunctionArn"] == arn(fn, "live")
    on_latest = lam.create_function_url_config(FunctionName=fn, AuthType="NONE")
    assert on_latest["FunctionUrl"] != on_alias["FunctionUrl"]
    with urllib.request.urlopen(on_alias["FunctionUrl"]) as r:
        assert json.loads(r.read())["code"] == "A"
    with urllib.request.urlopen(on_latest["FunctionUrl"]) as r:
        assert json.loads(r.read())["code"] == "B"
    assert lam.get_function_url_config(FunctionName=f"{fn}:live")["FunctionUrl"] == on_alias["FunctionUrl"]
    urls = lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]
    assert sorted(u["FunctionArn"] for u in urls) == [arn(fn), arn(fn, "live")]
    for qualifier in ("1", "$LATEST"):
        with pytest.raises(ClientError) as exc:
            raw.create_function_url_config(FunctionName=fn, Qualifier=qualifier, AuthType="NONE")
        assert error(exc.value) == ("ValidationException", 400, f"1 validation error detected: Value '{qualifier}' "
                                    "at 'qualifier' failed to satisfy constraint: Member must satisfy regular "
                                    "expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)")
    with pytest.raises(ClientError) as exc:
        lam.get_function_url_config(FunctionName=fn, Qualifier="nope")
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(fn, 'nope')}")
    lam.delete_alias(FunctionName=fn, Name="live")
    with pytest.raises(urllib.error.HTTPError) as http_exc:
        urllib.request.urlopen(on_alias["FunctionUrl"])
    assert http_exc.value.code in (403, 404)
    assert len(lam.list_function_url_configs(FunctionName=fn)["FunctionUrlConfigs"]) == 1


def test_reserved_concurrency_counts_every_version(server):
    lam = server.lambda_client
    name = unique_name("resv")
    slow = VERSIONED.replace('curl -sS -o /dev/null -X POST', 'sleep 1; curl -sS -o /dev/null -X POST')
    create_function(server, name, make_zip({"bootstrap": slow}), timeout=10)
    lam.publish_version(FunctionName=name)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    lam.invoke(FunctionName=name, Qualifier="1", InvocationType="Event", Payload=b"{}")
    wait_for_log(server, name, lambda m: any(x.startswith("START") for x in m))
    with pytest.raises(ClientError) as exc:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert error(exc.value)[:2] == ("TooManyRequestsException", 429)


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"FunctionName": "bad name"}, ("InvalidParameterValueException", "1 validation error detected: Value 'bad "
                                    "name' at 'functionName' failed to satisfy constraint: Member must satisfy "
                                    "regular expression pattern: " + r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?"
                                    r"[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?"
                                    r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?")),
    ({"Role": "r"}, ("ValidationException", "1 validation error detected: Value 'r' at 'role' failed to satisfy "
                     "constraint: Member must satisfy regular expression pattern: "
                     r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")),
])
def test_model_validation_is_worded_as_aws_and_creates_nothing(server, kwargs, expected):
    args = {"FunctionName": unique_name("val"), "Runtime": "provided.al2023", "Role": ROLE, "Handler": "h",
            "Code": {"ZipFile": code("A")}, **kwargs}
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).create_function(**args)
    assert error(exc.value) == (expected[0], 400, expected[1])
    names = [f["FunctionName"] for p in server.lambda_client.get_paginator("list_functions").paginate()
             for f in p["Functions"]]
    assert args["FunctionName"] not in names


def test_several_broken_members_are_named_together(server):
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).create_function(
            FunctionName="no spaces", Runtime="provided.al2023", Role="nope", Code={"ZipFile": code("A")})
    code_, status, message = error(exc.value)
    assert (code_, status) == ("ValidationException", 400)
    assert message.startswith("2 validation errors detected: Value 'no spaces' at 'functionName' failed")
    assert "; Value 'nope' at 'role' failed to satisfy constraint" in message
    name = unique_name("role")
    create_function(server, name, code("A"))
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).update_function_configuration(FunctionName=name, Role="x")
    assert error(exc.value)[:2] == ("ValidationException", 400)


def test_environment_limit_is_measured_on_the_json_text(server):
    variables = {"BIG": "x" * 4083}  # {"BIG":"xxx..."} is 4093 bytes: allowed
    name = unique_name("env")
    create_function(server, name, code("A"), env=variables)
    too_big = {"BIG": "x" * 4083, "AB": "1"}
    with pytest.raises(ClientError) as exc:
        server.lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": too_big})
    measured = json.dumps(too_big, separators=(",", ":"))
    assert error(exc.value) == ("InvalidParameterValueException", 400, "Lambda was unable to configure your "
                                "environment variables because the environment variables you have provided "
                                f"exceeded the 4KB limit. String measured: {measured}")


def test_error_bodies_carry_what_boto3_reads(server):
    req = urllib.request.Request(f"{server.endpoint}/2015-03-31/functions/{unique_name('none')}")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    assert exc.value.code == 404 and exc.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    body = json.loads(exc.value.read())
    assert body["Type"] == "User" and body["message"] == body["Message"]
    assert body["Message"].startswith("Function not found: ")


def test_state_transitions_satisfy_the_cli_waiters(server):
    lam = server.lambda_client
    name = unique_name("wait")
    created = create_function(server, name, code("A"))
    assert (created["State"], created["StateReasonCode"]) == ("Pending", "Creating")
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    active = lam.get_function(FunctionName=name)["Configuration"]
    assert active["State"] == "Active" and "StateReason" not in active
    updated = lam.update_function_configuration(FunctionName=name, Timeout=5)
    assert (updated["LastUpdateStatus"], updated["LastUpdateStatusReasonCode"]) == ("InProgress", "Creating")
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 5})
    assert lam.get_function(FunctionName=name)["Configuration"]["LastUpdateStatus"] == "Successful"
    version = lam.publish_version(FunctionName=name)
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier=version["Version"],
                                                    WaiterConfig={"Delay": 1, "MaxAttempts": 5})


def test_versions_and_aliases_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        lam = srv.lambda_client
        name = unique_name("keep")
        create_function(srv, name, code("A"))
        lam.publish_version(FunctionName=name)
        lam.update_function_code(FunctionName=name, ZipFile=code("B"))
        lam.publish_version(FunctionName=name)
        lam.delete_function(FunctionName=name, Qualifier="2")
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="kept")
        url = lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")["FunctionUrl"]
    finally:
        stop_server(srv)
    srv = start_server(data)
    try:
        lam = srv.lambda_client
        assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1"]
        assert lam.get_alias(FunctionName=name, Name="live")["Description"] == "kept"
        doc, executed = call(lam, f"{name}:live")
        assert (doc["code"], executed) == ("A", "1")
        assert call(lam, name)[0]["code"] == "B"
        path = url.split("/lambda-url/", 1)[1]
        with urllib.request.urlopen(f"{srv.endpoint}/lambda-url/{path}") as r:
            assert json.loads(r.read())["code"] == "A"
        lam.update_function_configuration(FunctionName=name, Description="new")
        assert lam.publish_version(FunctionName=name)["Version"] == "3"
        assert lam.get_function(FunctionName=name)["Configuration"]["State"] == "Active"
        assert any(m.startswith("START") for m in log_messages(srv, name))
    finally:
        stop_server(srv)


INIT_TYPE = VERSIONED.replace('\\"stream\\":', '\\"init\\":\\"$AWS_LAMBDA_INITIALIZATION_TYPE\\",\\"stream\\":')


def _wait_ready(lam, name: str, qualifier: str) -> dict:
    deadline = time.time() + 20
    while True:
        got = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if got["Status"] == "READY" or time.time() > deadline:
            return got
        time.sleep(0.1)


def test_provisioned_concurrency_initializes_environments_ahead(server):
    lam = server.lambda_client
    raw = server.client("lambda", validate=False)
    name = unique_name("prov")
    create_function(server, name, make_zip({"bootstrap": INIT_TYPE}))
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    put = lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                 ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert (put["Status"], put["RequestedProvisionedConcurrentExecutions"]) == ("IN_PROGRESS", 2)
    ready = _wait_ready(lam, name, "live")
    assert (ready["Status"], ready["AvailableProvisionedConcurrentExecutions"]) == ("READY", 2)
    inits = [m for m in log_messages(server, name) if m.startswith("INIT_START")]
    assert len(inits) == 2  # initialized before any invoke
    resp = lam.invoke(FunctionName=f"{name}:live", Payload=b"{}", LogType="Tail")
    assert json.loads(resp["Payload"].read())["init"] == "provisioned-concurrency"
    report = base64.b64decode(resp["LogResult"]).decode().splitlines()[-1]
    assert report.startswith("REPORT") and "Init Duration" not in report
    configs = lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [(c["FunctionArn"], c["Status"]) for c in configs] == [(arn(name, "live"), "READY")]
    on_demand, _ = call(lam, name)  # $LATEST has none: a cold, on-demand environment
    assert on_demand["init"] == "on-demand"
    with pytest.raises(ClientError) as exc:
        lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    assert error(exc.value) == ("ProvisionedConcurrencyConfigNotFoundException", 404,
                                "No Provisioned Concurrency Config found for this function")
    with pytest.raises(ClientError) as exc:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    assert error(exc.value) == ("InvalidParameterValueException", 400, "Provisioned Concurrency Configs cannot be "
                                "applied to unpublished function versions.")
    with pytest.raises(ClientError) as exc:
        raw.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=0)
    assert error(exc.value) == ("ValidationException", 400, "1 validation error detected: Value '0' at "
                                "'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have "
                                "value greater than or equal to 1")
    with pytest.raises(ClientError) as exc:
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="nope",
                                               ProvisionedConcurrentExecutions=1)
    assert error(exc.value) == ("ResourceNotFoundException", 404, f"Function not found: {arn(name, 'nope')}")
    lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []
    assert call(lam, f"{name}:live")[1] == "1"


def test_provisioned_environments_count_against_the_account(tmp_path):
    srv = start_server(tmp_path / "data", "--max-concurrency", "2")
    try:
        lam = srv.lambda_client
        name = unique_name("acct")
        create_function(srv, name, make_zip({"bootstrap": INIT_TYPE}))
        lam.publish_version(FunctionName=name)
        lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2)
        assert _wait_ready(lam, name, "1")["Status"] == "READY"
        with pytest.raises(ClientError) as exc:
            lam.invoke(FunctionName=name, Payload=b"{}")  # $LATEST would need a third environment
        assert error(exc.value)[:2] == ("TooManyRequestsException", 429)
        assert call(lam, name, Qualifier="1")[0]["init"] == "provisioned-concurrency"
    finally:
        stop_server(srv)
    srv = start_server(tmp_path / "data", "--max-concurrency", "2")
    try:  # the config outlives the server: its environments are initialized again at start
        assert _wait_ready(srv.lambda_client, name, "1")["Status"] == "READY"
    finally:
        stop_server(srv)


def test_provisioned_concurrency_whose_init_fails_is_failed(server):
    """As AWS reports it: Status FAILED, StatusReason FUNCTION_ERROR_INIT_FAILURE."""
    lam = server.lambda_client
    name = unique_name("prov-bad")
    create_function(server, name, make_zip({"bootstrap": "#!/bin/sh\necho cannot start\nexit 3\n"}))
    lam.publish_version(FunctionName=name)
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    deadline = time.time() + 20
    while True:
        got = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        if got["Status"] != "IN_PROGRESS" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert (got["Status"], got.get("StatusReason")) == ("FAILED", "FUNCTION_ERROR_INIT_FAILURE")
    assert got["AvailableProvisionedConcurrentExecutions"] == 0
