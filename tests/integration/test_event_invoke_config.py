"""Event invoke configs, recursion config, account settings and the reserved-concurrency floor, through boto3."""

from __future__ import annotations

import datetime
import time

import pytest
import spec_bootstraps as sb
from botocore.exceptions import ClientError
from conftest import create_function, make_zip, start_server, stop_server, unique_name

ARN = "arn:aws:lambda:us-east-1:000000000000:function:"
DEST_PATTERN = (r"$|kafka://([^.]([a-zA-Z0-9\-_.]{0,248}))|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:"
                r"((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)")


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


@pytest.fixture
def fn(server) -> str:
    name = unique_name("eic")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    return name


def test_put_get_update_list_delete(server, fn):
    lam = server.lambda_client
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    put = lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1)
    assert put["FunctionArn"] == f"{ARN}{fn}:$LATEST"
    assert put["MaximumRetryAttempts"] == 1 and "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert before <= put["LastModified"] <= datetime.datetime.now(datetime.UTC)  # epoch seconds, parsed by botocore
    got = lam.get_function_event_invoke_config(FunctionName=fn)
    assert {k: got[k] for k in put if k != "ResponseMetadata"} == {k: put[k] for k in put if k != "ResponseMetadata"}

    # Update merges: the retry count stays, the age and an OnFailure destination are added
    dest = unique_name("dest")
    create_function(server, dest, make_zip({"bootstrap": sb.EVENT_LOOP}))
    time.sleep(0.01)
    upd = lam.update_function_event_invoke_config(
        FunctionName=fn, MaximumEventAgeInSeconds=120, DestinationConfig={"OnFailure": {"Destination": ARN + dest}})
    assert upd["MaximumRetryAttempts"] == 1 and upd["MaximumEventAgeInSeconds"] == 120
    assert upd["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {"Destination": ARN + dest}}
    assert upd["LastModified"] > put["LastModified"]
    upd = lam.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": ARN + dest}})
    assert upd["DestinationConfig"] == {"OnSuccess": {"Destination": ARN + dest},
                                        "OnFailure": {"Destination": ARN + dest}}

    # Put replaces: what it does not name is gone
    put = lam.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=60)
    assert put["MaximumEventAgeInSeconds"] == 60 and "MaximumRetryAttempts" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}

    listed = lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [f"{ARN}{fn}:$LATEST"]
    assert listed[0]["MaximumEventAgeInSeconds"] == 60

    # the same configuration, named in other ways
    assert lam.get_function_event_invoke_config(FunctionName=ARN + fn)["MaximumEventAgeInSeconds"] == 60
    assert lam.get_function_event_invoke_config(FunctionName=fn, Qualifier="$LATEST")["FunctionArn"] == \
        f"{ARN}{fn}:$LATEST"
    assert lam.get_function_event_invoke_config(FunctionName=f"{fn}:$LATEST")["MaximumEventAgeInSeconds"] == 60

    assert lam.delete_function_event_invoke_config(FunctionName=fn)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lam.get_function_event_invoke_config(FunctionName=fn)
    assert error(exc) == ("ResourceNotFoundException", 404,
                          f"The function {ARN}{fn}:$LATEST doesn't have an EventInvokeConfig")
    with pytest.raises(ClientError) as exc:
        lam.delete_function_event_invoke_config(FunctionName=fn)
    assert error(exc) == ("ResourceNotFoundException", 404,
                          f"The function {ARN}{fn}:$LATEST doesn't have an EventInvokeConfig")
    assert lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"] == []


def test_errors_as_aws_words_them(server, fn):
    lam = server.client("lambda", validate=False)  # (botocore would refuse some of these itself)
    missing = unique_name("missing")
    cases = [
        (lambda: lam.put_function_event_invoke_config(FunctionName=fn),
         ("InvalidParameterValueException", 400, "You must specify at least one of error handling or destination "
                                                 "setting.")),
        (lambda: lam.put_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1),
         ("ResourceNotFoundException", 404, "The function doesn't exist.")),
        (lambda: lam.put_function_event_invoke_config(FunctionName=fn, Qualifier="7", MaximumRetryAttempts=1),
         ("ResourceNotFoundException", 404, "The function doesn't exist.")),
        (lambda: lam.update_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=1),
         ("ResourceNotFoundException", 404, f"The function {ARN}{fn}:$LATEST doesn't have an EventInvokeConfig")),
        (lambda: lam.update_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1),
         ("ResourceNotFoundException", 404, "The function doesn't exist.")),
        (lambda: lam.get_function_event_invoke_config(FunctionName=missing),
         ("ResourceNotFoundException", 404, f"The function {ARN}{missing}:$LATEST doesn't have an EventInvokeConfig")),
        (lambda: lam.list_function_event_invoke_configs(FunctionName=missing),
         ("ResourceNotFoundException", 404, "The function doesn't exist.")),
        (lambda: lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=5),
         ("ValidationException", 400, "1 validation error detected: Value '5' at 'maximumRetryAttempts' failed to "
                                      "satisfy constraint: Member must have value less than or equal to 2")),
        (lambda: lam.put_function_event_invoke_config(FunctionName=fn, MaximumRetryAttempts=-1,
                                                      MaximumEventAgeInSeconds=59),
         ("ValidationException", 400, "2 validation errors detected: Value '-1' at 'maximumRetryAttempts' failed to "
                                      "satisfy constraint: Member must have value greater than or equal to 0; Value "
                                      "'59' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must "
                                      "have value greater than or equal to 60")),
        (lambda: lam.put_function_event_invoke_config(FunctionName=fn, MaximumEventAgeInSeconds=21601),
         ("ValidationException", 400, "1 validation error detected: Value '21601' at 'maximumEventAgeInSeconds' "
                                      "failed to satisfy constraint: Member must have value less than or equal to "
                                      "21600")),
        (lambda: lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": "not-an-arn"}}),
         ("ValidationException", 400, "1 validation error detected: Value 'not-an-arn' at "
                                      "'destinationConfig.onFailure.destination' failed to satisfy constraint: Member "
                                      f"must satisfy regular expression pattern: {DEST_PATTERN}")),
        (lambda: lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": ARN + fn}}),
         ("InvalidParameterValueException", 400, "You can't specify the function as a destination for itself.")),
        (lambda: lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": ARN + missing}}),
         ("InvalidParameterValueException", 400, f"The destination ARN {ARN}{missing} is invalid.")),
        (lambda: lam.put_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": "arn:aws:iam::000000000000:role/x"}}),
         ("InvalidParameterValueException", 400, "The provided destination config DestinationConfig(onSuccess="
                                                 "OnSuccess(destination=arn:aws:iam::000000000000:role/x), "
                                                 "onFailure=null) is invalid.")),
        (lambda: lam.get_function_event_invoke_config(FunctionName=f"{fn}:$LATEST", Qualifier="prod"),
         ("InvalidParameterValueException", 400, "The derived qualifier from the function name does not match the "
                                                 "specified qualifier.")),
        (lambda: lam.list_function_event_invoke_configs(FunctionName=fn, MaxItems=51),
         ("ValidationException", 400, "1 validation error detected: Value '51' at 'maxItems' failed to satisfy "
                                      "constraint: Member must have value less than or equal to 50")),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == expected
    # nothing of that was stored
    assert lam.list_function_event_invoke_configs(FunctionName=fn)["FunctionEventInvokeConfigs"] == []


def test_other_destination_types_are_accepted_and_returned(server, fn):
    lam = server.lambda_client
    queue, topic = "arn:aws:sqs:us-east-1:000000000000:q", "arn:aws:sns:us-east-1:000000000000:t"
    cfg = lam.put_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": topic}, "OnFailure": {"Destination": queue}})
    assert cfg["DestinationConfig"] == {"OnSuccess": {"Destination": topic}, "OnFailure": {"Destination": queue}}
    cfg = lam.update_function_event_invoke_config(
        FunctionName=fn, DestinationConfig={"OnFailure": {"Destination": "arn:aws:s3:::bucket"}})
    assert cfg["DestinationConfig"]["OnFailure"] == {"Destination": "arn:aws:s3:::bucket"}
    with pytest.raises(ClientError) as exc:  # S3 takes failures only
        lam.update_function_event_invoke_config(
            FunctionName=fn, DestinationConfig={"OnSuccess": {"Destination": "arn:aws:s3:::bucket"}})
    assert error(exc)[:2] == ("InvalidParameterValueException", 400)


def test_dead_letter_config_is_stored_and_returned(server):
    lam = server.lambda_client
    name = unique_name("dlq")
    queue = "arn:aws:sqs:us-east-1:000000000000:dlq"
    cfg = create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}), DeadLetterConfig={"TargetArn": queue})
    assert cfg["DeadLetterConfig"] == {"TargetArn": queue}
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {"TargetArn": queue}
    topic = "arn:aws:sns:us-east-1:000000000000:t"
    assert lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": topic})[
        "DeadLetterConfig"] == {"TargetArn": topic}
    with pytest.raises(ClientError) as exc:
        lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": "nope"})
    assert error(exc)[:2] == ("ValidationException", 400)
    assert "deadLetterConfig.targetArn" in error(exc)[2]
    assert "DeadLetterConfig" not in lam.update_function_configuration(
        FunctionName=name, DeadLetterConfig={"TargetArn": ""})
    assert "DeadLetterConfig" not in lam.get_function_configuration(FunctionName=name)


def test_recursion_config(server, fn):
    lam = server.client("lambda", validate=False)
    assert lam.get_function_recursion_config(FunctionName=fn)["RecursiveLoop"] == "Terminate"
    assert lam.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Allow")["RecursiveLoop"] == "Allow"
    assert lam.get_function_recursion_config(FunctionName=ARN + fn)["RecursiveLoop"] == "Allow"
    with pytest.raises(ClientError) as exc:
        lam.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Sometimes")
    assert error(exc) == ("ValidationException", 400, "1 validation error detected: Value 'Sometimes' at "
                          "'recursiveLoop' failed to satisfy constraint: Member must satisfy enum value set: "
                          "[Allow, Terminate]")
    missing = unique_name("missing")
    for call in (lambda: lam.get_function_recursion_config(FunctionName=missing),
                 lambda: lam.put_function_recursion_config(FunctionName=missing, RecursiveLoop="Allow")):
        with pytest.raises(ClientError) as exc:
            call()
        assert error(exc) == ("ResourceNotFoundException", 404, f"Function not found: {ARN}{missing}")
    # a function created again under the name starts from the default
    lam.delete_function(FunctionName=fn)
    create_function(server, fn, make_zip({"bootstrap": sb.EVENT_LOOP}))
    assert lam.get_function_recursion_config(FunctionName=fn)["RecursiveLoop"] == "Terminate"


def test_settings_survive_a_restart_and_go_with_their_function(tmp_path):
    data = tmp_path / "data"
    srv = start_server(data)
    try:
        create_function(srv, "keep", make_zip({"bootstrap": sb.EVENT_LOOP}))
        create_function(srv, "dest", make_zip({"bootstrap": sb.EVENT_LOOP}))
        srv.lambda_client.put_function_event_invoke_config(
            FunctionName="keep", MaximumRetryAttempts=0, MaximumEventAgeInSeconds=300,
            DestinationConfig={"OnSuccess": {"Destination": ARN + "dest"}})
        srv.lambda_client.put_function_recursion_config(FunctionName="keep", RecursiveLoop="Allow")
        saved = srv.lambda_client.get_function_event_invoke_config(FunctionName="keep")
    finally:
        assert stop_server(srv) == 0
    srv = start_server(data)
    try:
        lam = srv.lambda_client
        again = lam.get_function_event_invoke_config(FunctionName="keep")
        for key in ("FunctionArn", "LastModified", "MaximumRetryAttempts", "MaximumEventAgeInSeconds",
                    "DestinationConfig"):
            assert again[key] == saved[key]
        assert lam.get_function_recursion_config(FunctionName="keep")["RecursiveLoop"] == "Allow"
        lam.delete_function(FunctionName="keep")
        create_function(srv, "keep", make_zip({"bootstrap": sb.EVENT_LOOP}))
        with pytest.raises(ClientError) as exc:
            lam.get_function_event_invoke_config(FunctionName="keep")
        assert error(exc)[0] == "ResourceNotFoundException"
    finally:
        stop_server(srv)


def test_account_settings_add_up_and_reserved_concurrency_keeps_the_unreserved_minimum(tmp_path):
    srv = start_server(tmp_path / "data", "--max-concurrency", "150")
    try:
        lam = srv.lambda_client
        first = create_function(srv, "one", make_zip({"bootstrap": sb.EVENT_LOOP}))
        second = create_function(srv, "two", make_zip({"bootstrap": sb.EVENT_LOOP, "pad.txt": "x" * 1000}))
        settings = lam.get_account_settings()
        assert settings["AccountLimit"]["ConcurrentExecutions"] == 150
        assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 150
        assert settings["AccountUsage"] == {"TotalCodeSize": first["CodeSize"] + second["CodeSize"],
                                            "FunctionCount": 2}
        lam.put_function_concurrency(FunctionName="one", ReservedConcurrentExecutions=30)
        with pytest.raises(ClientError) as exc:  # 150 - 30 - 21 < 100
            lam.put_function_concurrency(FunctionName="two", ReservedConcurrentExecutions=21)
        assert error(exc) == ("InvalidParameterValueException", 400,
                              "Specified ReservedConcurrentExecutions for function decreases account's "
                              "UnreservedConcurrentExecution below its minimum value of [100].")
        assert "Concurrency" not in lam.get_function(FunctionName="two")  # nothing was reserved
        lam.put_function_concurrency(FunctionName="two", ReservedConcurrentExecutions=20)
        lam.put_function_concurrency(FunctionName="one", ReservedConcurrentExecutions=30)  # its own 30 are not counted
        assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
        lam.delete_function_concurrency(FunctionName="one")
        assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 130
        lam.delete_function(FunctionName="two")
        settings = lam.get_account_settings()
        assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 150
        assert settings["AccountUsage"] == {"TotalCodeSize": first["CodeSize"], "FunctionCount": 1}
        # published versions and layers count too, as AWS counts the account's code storage
        lam.publish_version(FunctionName="one")
        layer = lam.publish_layer_version(LayerName="lib", Content={"ZipFile": make_zip({"lib/x": "y" * 500})})
        assert lam.get_account_settings()["AccountUsage"] == {
            "TotalCodeSize": 2 * first["CodeSize"] + layer["Content"]["CodeSize"], "FunctionCount": 1}
    finally:
        stop_server(srv)


def test_an_account_below_the_minimum_reserves_nothing(tmp_path):
    srv = start_server(tmp_path / "data", "--max-concurrency", "10")
    try:
        create_function(srv, "small", make_zip({"bootstrap": sb.EVENT_LOOP}))
        with pytest.raises(ClientError) as exc:
            srv.lambda_client.put_function_concurrency(FunctionName="small", ReservedConcurrentExecutions=1)
        assert error(exc)[2].endswith("below its minimum value of [10].")
        srv.lambda_client.put_function_concurrency(FunctionName="small", ReservedConcurrentExecutions=0)
    finally:
        stop_server(srv)


def test_arns_of_another_region_or_account_are_answered_as_aws_does(server):
    lam = server.lambda_client
    name = unique_name("elsewhere")
    create_function(server, name, make_zip({"bootstrap": sb.EVENT_LOOP}))
    other_region = f"arn:aws:lambda:eu-central-1:000000000000:function:{name}"
    other_account = f"arn:aws:lambda:us-east-1:111122223333:function:{name}"
    with pytest.raises(ClientError) as exc:
        lam.put_function_event_invoke_config(FunctionName=other_region, MaximumRetryAttempts=1)
    assert error(exc) == ("ResourceNotFoundException", 404,
                          "Functions from 'eu-central-1' are not reachable in this region ('us-east-1')")
    with pytest.raises(ClientError) as exc:
        lam.get_policy(FunctionName=other_region)
    assert error(exc)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as exc:
        lam.put_function_event_invoke_config(FunctionName=other_account, MaximumRetryAttempts=1)
    assert error(exc)[:2] == ("ResourceNotFoundException", 404)
    assert lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"] == []
