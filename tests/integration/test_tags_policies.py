"""Function tags and resource-based policies through boto3 against a real `lambdalet serve`."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError
from conftest import Server, create_function, make_zip, start_server, stop_server, unique_name

CODE = make_zip({"bootstrap": "#!/bin/sh\n"})
ACCOUNT_ARN = "arn:aws:lambda:us-east-1:000000000000:function:"


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], resp["Error"]["Message"]


def test_tags_on_create_get_and_tag_operations(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("tags")
    arn = create_function(server, name, CODE, Tags={"team": "core", "env": "dev"})["FunctionArn"]
    assert c.get_function(FunctionName=name)["Tags"] == {"team": "core", "env": "dev"}
    assert c.list_tags(Resource=arn)["Tags"] == {"team": "core", "env": "dev"}
    revision = c.get_function_configuration(FunctionName=name)["RevisionId"]
    tagged = c.tag_resource(Resource=arn, Tags={"env": "prod", "cost center": "42 / a+b=c@d"})
    assert tagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert c.list_tags(Resource=arn)["Tags"] == {"team": "core", "env": "prod", "cost center": "42 / a+b=c@d"}
    assert c.get_function_configuration(FunctionName=name)["RevisionId"] != revision
    untagged = c.untag_resource(Resource=arn, TagKeys=["team", "absent"])
    assert untagged["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert c.list_tags(Resource=arn)["Tags"] == {"env": "prod", "cost center": "42 / a+b=c@d"}
    c.untag_resource(Resource=arn, TagKeys=["env", "cost center"])
    assert c.list_tags(Resource=arn)["Tags"] == {}
    assert "Tags" not in c.get_function(FunctionName=name)
    bare = unique_name("tags")
    create_function(server, bare, CODE)
    assert c.list_tags(Resource=ACCOUNT_ARN + bare)["Tags"] == {}


def test_tag_errors(server: Server) -> None:
    c = server.client("lambda", validate=False)
    name = unique_name("tags")
    arn = create_function(server, name, CODE, Tags={f"k{i}": "v" for i in range(49)})["FunctionArn"]
    cases = [
        (lambda: c.tag_resource(Resource=arn + ":1", Tags={"a": "b"}), 400, "InvalidParameterValueException",
         "Tagging operations are permitted on Lambda functions only. Tags on aliases and versions are not "
         "supported. Please specify either a function name or a function ARN."),
        (lambda: c.tag_resource(Resource=ACCOUNT_ARN + "nobody-here", Tags={"a": "b"}), 404,
         "ResourceNotFoundException", f"Function not found: {ACCOUNT_ARN}nobody-here"),
        (lambda: c.tag_resource(Resource=arn, Tags={"k49": "v", "k50": "v"}), 400, "InvalidParameterValueException",
         "Number of tags exceeds function tag limit."),
        (lambda: c.tag_resource(Resource=arn, Tags={}), 400, "InvalidParameterValueException",
         "An error occurred and the request cannot be processed."),
        (lambda: c.tag_resource(Resource=arn, Tags={"AWS:owner": "me"}), 400, "InvalidParameterValueException",
         "Tag keys starting with 'aws:' are reserved for internal use"),
        (lambda: c.tag_resource(Resource=arn, Tags={"k" * 129: "v"}), 400, "ValidationException",
         f"1 validation error detected: Value '{{{'k' * 129}=v}}' at 'tags' failed to satisfy constraint: Map keys "
         "must satisfy constraint: [Member must have length less than or equal to 128, Member must have length "
         "greater than or equal to 1, Member must satisfy regular expression pattern: "
         "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)]"),
        (lambda: c.tag_resource(Resource=arn, Tags={"k": "v" * 257}), 400, "ValidationException",
         f"1 validation error detected: Value '{{k={'v' * 257}}}' at 'tags' failed to satisfy constraint: Map value "
         "must satisfy constraint: [Member must have length less than or equal to 256, Member must have length "
         "greater than or equal to 0, Member must satisfy regular expression pattern: "
         "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)]"),
        (lambda: c.list_tags(Resource=name), 400, "ValidationException",
         f"1 validation error detected: Value '{name}' at 'resource' failed to satisfy constraint: Member must "
         "satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:"),
    ]
    for call, status, code, message in cases:
        with pytest.raises(ClientError) as exc:
            call()
        got = error(exc)
        assert got[:2] == (status, code) and got[2].startswith(message), got
    assert len(c.list_tags(Resource=arn)["Tags"]) == 49  # nothing was applied
    with pytest.raises(ClientError) as exc:
        create_function(server, unique_name("tags"), CODE, Tags={"aws:x": "y"})
    assert error(exc)[1] == "InvalidParameterValueException"


def test_add_get_remove_permission(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("policy")
    arn = create_function(server, name, CODE)["FunctionArn"]
    with pytest.raises(ClientError) as exc:
        c.get_policy(FunctionName=name)
    assert error(exc) == (404, "ResourceNotFoundException", "The resource you requested does not exist.")
    revision = c.get_function_configuration(FunctionName=name)["RevisionId"]
    s3 = c.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                          Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::my-bucket",
                          SourceAccount="123456789012", RevisionId=revision)
    assert s3["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(s3["Statement"]) == {
        "Sid": "s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "lambda:InvokeFunction", "Resource": arn,
        "Condition": {"StringEquals": {"AWS:SourceAccount": "123456789012"},
                      "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}}}
    assert list(json.loads(s3["Statement"])) == ["Sid", "Effect", "Principal", "Action", "Resource", "Condition"]
    account = json.loads(c.add_permission(FunctionName=arn, StatementId="account", Action="lambda:*",
                                          Principal="123456789012")["Statement"])
    assert account["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"} and "Condition" not in account
    role = json.loads(c.add_permission(FunctionName=name, StatementId="role", Action="lambda:GetFunction",
                                       Principal="arn:aws:iam::123456789012:role/deployer")["Statement"])
    assert role["Principal"] == {"AWS": "arn:aws:iam::123456789012:role/deployer"}
    url = json.loads(c.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
                                      Principal="*", FunctionUrlAuthType="NONE")["Statement"])
    assert url["Principal"] == "*" and url["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}
    org = json.loads(c.add_permission(FunctionName=name, StatementId="org", Action="lambda:InvokeFunction",
                                      Principal="*", PrincipalOrgID="o-a1b2c3d4e5")["Statement"])
    assert org["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}

    policy = c.get_policy(FunctionName=name)
    assert policy["RevisionId"] == c.get_function_configuration(FunctionName=name)["RevisionId"] != revision
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17" and doc["Id"] == "default"
    assert [s["Sid"] for s in doc["Statement"]] == ["s3", "account", "role", "url", "org"]
    assert doc["Statement"][0] == json.loads(s3["Statement"])

    removed = c.remove_permission(FunctionName=name, StatementId="account", RevisionId=policy["RevisionId"])
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert [s["Sid"] for s in json.loads(c.get_policy(FunctionName=name)["Policy"])["Statement"]] == \
        ["s3", "role", "url", "org"]
    for sid in ("s3", "role", "url", "org"):
        c.remove_permission(FunctionName=name, StatementId=sid)
    with pytest.raises(ClientError) as exc:
        c.get_policy(FunctionName=name)
    assert error(exc)[1] == "ResourceNotFoundException"


def test_permission_errors(server: Server) -> None:
    c = server.client("lambda", validate=False)
    name = unique_name("policy")
    create_function(server, name, CODE)
    base = {"FunctionName": name, "Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com"}
    c.add_permission(StatementId="taken", **base)
    cases = [
        (dict(base, StatementId="taken"), 409, "ResourceConflictException", "The statement id (taken) provided "
         "already exists. Please provide a new statement id, or remove the existing statement."),
        (dict(base, StatementId="new", RevisionId="stale"), 412, "PreconditionFailedException", "The Revision Id "
         "provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest "
         "Revision Id"),
        (dict(base, StatementId="new", Qualifier="$LATEST"), 400, "InvalidParameterValueException",
         "We currently do not support adding policies for $LATEST."),
        (dict(base, StatementId="new", Qualifier="7"), 404, "ResourceNotFoundException",
         f"Function not found: {ACCOUNT_ARN}{name}:7"),
        (dict(base, StatementId="new", FunctionName="nobody-here"), 404, "ResourceNotFoundException",
         f"Function not found: {ACCOUNT_ARN}nobody-here"),
        (dict(base, StatementId="new", Principal="somebody"), 400, "InvalidParameterValueException",
         "The provided principal was invalid. Please check the principal and try again."),
        (dict(base, StatementId="bad id!", Action="invoke", SourceAccount="12"), 400, "ValidationException",
         "3 validation errors detected: Value 'bad id!' at 'statementId' failed to satisfy constraint: Member must "
         "satisfy regular expression pattern: ([a-zA-Z0-9-_]+); Value 'invoke' at 'action' failed to satisfy "
         "constraint: Member must satisfy regular expression pattern: (lambda:[*]|lambda:[a-zA-Z]+|[*]); Value '12' "
         "at 'sourceAccount' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{12}"),
    ]
    for kwargs, status, code, message in cases:
        with pytest.raises(ClientError) as exc:
            c.add_permission(**kwargs)
        assert error(exc) == (status, code, message)
    statements = json.loads(c.get_policy(FunctionName=name)["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["taken"]  # nothing else was added

    with pytest.raises(ClientError) as exc:
        c.remove_permission(FunctionName=name, StatementId="absent")
    assert error(exc) == (404, "ResourceNotFoundException", "Statement absent is not found in resource policy.")
    with pytest.raises(ClientError) as exc:
        c.remove_permission(FunctionName=name, StatementId="taken", RevisionId="stale")
    assert error(exc)[1] == "PreconditionFailedException"
    with pytest.raises(ClientError) as exc:
        c.remove_permission(FunctionName="nobody-here", StatementId="taken")
    assert error(exc) == (404, "ResourceNotFoundException", f"No policy found for: {ACCOUNT_ARN}nobody-here")
    c.remove_permission(FunctionName=name, StatementId="taken")
    with pytest.raises(ClientError) as exc:
        c.remove_permission(FunctionName=name, StatementId="taken")
    assert error(exc) == (404, "ResourceNotFoundException", "No policy is associated with the given resource.")
    with pytest.raises(ClientError) as exc:
        c.get_policy(FunctionName="nobody-here")
    assert error(exc) == (404, "ResourceNotFoundException", f"Function not found: {ACCOUNT_ARN}nobody-here")


def test_a_deleted_function_takes_its_tags_and_policy_along(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("policy")
    create_function(server, name, CODE, Tags={"a": "b"})
    c.add_permission(FunctionName=name, StatementId="s", Action="lambda:InvokeFunction", Principal="*")
    c.delete_function(FunctionName=name)
    arn = create_function(server, name, CODE)["FunctionArn"]
    assert c.list_tags(Resource=arn)["Tags"] == {}
    with pytest.raises(c.exceptions.ResourceNotFoundException):
        c.get_policy(FunctionName=name)


def test_tags_and_policies_survive_a_restart(tmp_path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        arn = create_function(srv, "kept", CODE, Tags={"team": "core"})["FunctionArn"]
        srv.lambda_client.add_permission(FunctionName="kept", StatementId="s", Action="lambda:InvokeFunction",
                                         Principal="sns.amazonaws.com")
        policy = srv.lambda_client.get_policy(FunctionName="kept")
    finally:
        assert stop_server(srv) == 0
    srv = start_server(tmp_path / "data")
    try:
        assert srv.lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "core"}
        again = srv.lambda_client.get_policy(FunctionName="kept")
        assert again["Policy"] == policy["Policy"] and again["RevisionId"] == policy["RevisionId"]
    finally:
        stop_server(srv)


def test_tags_and_permissions_keep_the_environment_warm_a_new_configuration_does_not(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("warm")
    # (one token per runtime process: pids repeat across sandboxed environments, each in a PID namespace)
    app = make_zip({"app.py": "import uuid\nTOKEN = uuid.uuid4().hex\n"
                              "def handler(event, context):\n    return TOKEN\n"})
    arn = create_function(server, name, app, runtime="python3.11", handler="app.handler")["FunctionArn"]

    def pid() -> int:
        return json.loads(c.invoke(FunctionName=name)["Payload"].read())

    first = pid()
    c.tag_resource(Resource=arn, Tags={"team": "core"})
    c.add_permission(FunctionName=name, StatementId="s3", Action="lambda:InvokeFunction",
                     Principal="s3.amazonaws.com")
    assert pid() == first  # what the function runs did not change
    c.update_function_configuration(FunctionName=name, Environment={"Variables": {"AB": "1"}})
    assert pid() != first
