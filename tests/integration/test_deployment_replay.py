"""What a deployment tool does, end to end, with boto3 against a real `lambdalet serve`: publish a layer,
create the function with it and tags, publish versions, point an alias at them with a weight, put an
event invoke config with an OnSuccess destination, invoke through the alias, and check that the
destination got AWS's invocation record."""

from __future__ import annotations

import json
import re

from conftest import create_function, make_zip, unique_name, wait_for_log

ACCOUNT = "000000000000"
REGION = "us-east-1"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

LAYER = {"python/greeting.py": "def greet(name):\n    return 'hello ' + name\n"}
APP = """
import os
from greeting import greet

def handler(event, context):
    return {"said": greet(event["who"]), "code": "%s", "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
            "invoked": context.invoked_function_arn}
"""
RECORDER = """
import json
def handler(event, context):
    print("RECORD " + json.dumps(event))
"""


def test_a_deployment_tool_replayed_end_to_end(server) -> None:
    lam = server.lambda_client
    layer_name = unique_name("greeting")
    layer = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": make_zip(LAYER)},
                                      CompatibleRuntimes=["python3.11"])
    assert layer["Version"] == 1
    assert layer["LayerVersionArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{layer_name}:1"

    recorder = unique_name("recorder")
    create_function(server, recorder, make_zip({"app.py": RECORDER}), runtime="python3.11",
                    handler="app.handler")

    name = unique_name("app")
    created = create_function(server, name, make_zip({"app.py": APP % "one"}), runtime="python3.11",
                              handler="app.handler", Layers=[layer["LayerVersionArn"]],
                              Tags={"app": "replay", "stage": "prod"}, Publish=True)
    assert created["Version"] == "1"
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    assert created["FunctionArn"] == function_arn + ":1"
    assert created["Layers"][0]["Arn"] == layer["LayerVersionArn"]
    lam.get_waiter("function_active_v2").wait(FunctionName=name)
    assert lam.get_function(FunctionName=name)["Tags"] == {"app": "replay", "stage": "prod"}

    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": APP % "two"}))
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    v2 = lam.publish_version(FunctionName=name, Description="second")
    assert v2["Version"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1", "2"]

    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert alias["AliasArn"] == function_arn + ":live"

    lam.put_function_event_invoke_config(FunctionName=name, Qualifier="live", MaximumRetryAttempts=0,
                                         DestinationConfig={"OnSuccess": {"Destination": recorder_arn(recorder)}})

    seen = {}
    for _ in range(40):  # synchronous invokes through the alias: both versions answer
        resp = lam.invoke(FunctionName=f"{name}:live", Payload=json.dumps({"who": "sync"}).encode())
        doc = json.loads(resp["Payload"].read())
        assert doc["said"] == "hello sync" and doc["invoked"] == function_arn + ":live"
        assert resp["ExecutedVersion"] == doc["version"]
        seen[doc["version"]] = doc["code"]
    assert seen == {"1": "one", "2": "two"}

    queued = lam.invoke(FunctionName=name, Qualifier="live", InvocationType="Event",
                        Payload=json.dumps({"who": "async"}).encode())
    assert queued["StatusCode"] == 202
    request_id = queued["ResponseMetadata"]["RequestId"]
    (record,) = records(server, recorder)
    assert TIMESTAMP.match(record.pop("timestamp"))
    executed = record["responseContext"]["executedVersion"]
    assert executed in ("1", "2")
    assert record == {
        "version": "1.0",
        "requestContext": {"requestId": request_id, "functionArn": function_arn + ":live", "condition": "Success",
                           "approximateInvokeCount": 1},
        "requestPayload": {"who": "async"},
        "responseContext": {"statusCode": 200, "executedVersion": executed},
        "responsePayload": {"said": "hello async", "code": {"1": "one", "2": "two"}[executed], "version": executed,
                            "invoked": function_arn + ":live"},
    }


def recorder_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def records(server, name: str) -> list[dict]:
    def found(messages: list[str]) -> list[dict]:
        return [json.loads(m[len("RECORD "):]) for m in messages if m.startswith("RECORD ")]
    return found(wait_for_log(server, name, lambda m: len(found(m)) >= 1, timeout=30))
