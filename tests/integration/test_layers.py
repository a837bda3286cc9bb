"""Layers through boto3 against a real `lambdalet serve`: the layer operations and their errors, and
functions whose /opt is made of their layers (python, nodejs and provided runtimes)."""

from __future__ import annotations

import io
import json
import shutil
import urllib.request
import zipfile

import pytest
from botocore.exceptions import ClientError
from conftest import Server, create_function, make_zip, start_server, stop_server, unique_name

ROLE = "arn:aws:iam::000000000000:role/x"
PREFIX = "arn:aws:lambda:us-east-1:000000000000:layer:"


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], resp["Error"]["Message"]


def publish(server: Server, name: str, files: dict[str, str], executable: tuple[str, ...] = (), **kw) -> dict:
    return server.lambda_client.publish_layer_version(
        LayerName=name, Content={"ZipFile": make_zip(files, executable=executable)}, **kw)


def invoke(server: Server, name: str) -> tuple[object, str | None]:
    resp = server.lambda_client.invoke(FunctionName=name, Payload=b"{}")
    raw = resp["Payload"].read()
    return json.loads(raw), resp.get("FunctionError")


def test_publish_get_list_and_delete_layer_versions(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("layer")
    zip_one = make_zip({"python/one.py": "X = 1\n"})
    first = c.publish_layer_version(LayerName=name, Content={"ZipFile": zip_one}, Description="first",
                                    CompatibleRuntimes=["python3.12", "python3.13"], LicenseInfo="MIT",
                                    CompatibleArchitectures=["arm64"])
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["LayerArn"] == PREFIX + name and first["LayerVersionArn"] == f"{PREFIX}{name}:1"
    assert first["Version"] == 1 and first["Description"] == "first" and first["LicenseInfo"] == "MIT"
    assert first["CompatibleRuntimes"] == ["python3.12", "python3.13"]
    assert first["CompatibleArchitectures"] == ["arm64"]
    assert first["Content"]["CodeSize"] == len(zip_one) and len(first["Content"]["CodeSha256"]) == 44
    assert first["CreatedDate"].endswith("+0000")
    with urllib.request.urlopen(first["Content"]["Location"], timeout=5) as got:
        assert got.read() == zip_one
    second = publish(server, name, {"python/two.py": "X = 2\n"}, CompatibleRuntimes=["nodejs20.x"])
    assert second["Version"] == 2 and second["Description"] == "" and "LicenseInfo" not in second

    got = c.get_layer_version(LayerName=name, VersionNumber=1)
    assert {k: got[k] for k in first if k != "ResponseMetadata"} == {k: first[k] for k in first
                                                                     if k != "ResponseMetadata"}
    assert c.get_layer_version(LayerName=PREFIX + name, VersionNumber=2)["Version"] == 2  # a layer ARN
    assert c.get_layer_version_by_arn(Arn=f"{PREFIX}{name}:2")["LayerVersionArn"] == f"{PREFIX}{name}:2"

    versions = c.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    assert set(versions[1]) == {"LayerVersionArn", "Version", "Description", "CreatedDate", "CompatibleRuntimes",
                                "LicenseInfo", "CompatibleArchitectures"}
    page = c.list_layer_versions(LayerName=name, MaxItems=1)
    assert [v["Version"] for v in page["LayerVersions"]] == [2]
    rest = c.list_layer_versions(LayerName=name, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1] and "NextMarker" not in rest
    assert [v["Version"] for v in c.list_layer_versions(LayerName=name, CompatibleRuntime="python3.13")
            ["LayerVersions"]] == [1]

    def listed(**kw) -> dict:
        layers = []
        paginator = c.get_paginator("list_layers")
        for p in paginator.paginate(**kw, PaginationConfig={"PageSize": 1}):
            layers += p["Layers"]
        return {layer["LayerName"]: layer for layer in layers}

    everything = listed()
    assert everything[name]["LayerArn"] == PREFIX + name
    assert everything[name]["LatestMatchingVersion"]["Version"] == 2
    assert listed(CompatibleRuntime="python3.12")[name]["LatestMatchingVersion"]["Version"] == 1
    assert listed(CompatibleArchitecture="arm64")[name]["LatestMatchingVersion"]["Version"] == 1
    assert name not in listed(CompatibleRuntime="java21")

    delete = c.delete_layer_version(LayerName=name, VersionNumber=1)
    assert delete["ResponseMetadata"]["HTTPStatusCode"] == 204
    c.delete_layer_version(LayerName=name, VersionNumber=1)  # deleting again: still 204
    with pytest.raises(ClientError) as exc:
        c.get_layer_version(LayerName=name, VersionNumber=1)
    assert error(exc) == (404, "ResourceNotFoundException", "The resource you requested does not exist.")
    assert publish(server, name, {"a": "b"})["Version"] == 3  # numbers are never reused
    assert [v["Version"] for v in c.list_layer_versions(LayerName=name)["LayerVersions"]] == [3, 2]


@pytest.mark.parametrize("call, expected", [
    (lambda c: c.get_layer_version(LayerName="nope-never", VersionNumber=1),
     (404, "ResourceNotFoundException", "The resource you requested does not exist.")),
    (lambda c: c.get_layer_version(LayerName="nope-never", VersionNumber=0),
     (400, "InvalidParameterValueException", "Layer Version Cannot be less than 1")),
    (lambda c: c.delete_layer_version(LayerName="nope-never", VersionNumber=0),
     (400, "InvalidParameterValueException", "Layer Version Cannot be less than 1")),
    (lambda c: c.get_layer_version_by_arn(Arn=PREFIX + "nope-never:3"),
     (404, "ResourceNotFoundException", "The resource you requested does not exist.")),
    (lambda c: c.get_layer_version_by_arn(Arn="arn:aws:lambda:us-east-1:000000000000:function:f"),
     (400, "ValidationException", "1 validation error detected: Value 'arn:aws:lambda:us-east-1:000000000000:"
      "function:f' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: "
      "arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:"
      "[a-zA-Z0-9-_]+:[0-9]+")),
    (lambda c: c.list_layers(CompatibleRuntime="cobol"),
     (400, "ValidationException", "1 validation error detected: Value 'cobol' at 'compatibleRuntime' failed to "
      "satisfy constraint: Member must satisfy enum value set: [nodejs, nodejs4.3, ")),
    (lambda c: c.publish_layer_version(LayerName="l", Content={"S3Bucket": "b", "S3Key": "k"}),
     (400, "InvalidParameterValueException", "Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 "
      "Error Message: The specified bucket does not exist")),
    (lambda c: c.publish_layer_version(LayerName="l", Content={"ZipFile": b"not a zip"}),
     (400, "InvalidParameterValueException",
      "Could not unzip uploaded file. Please check your file, then try to upload again.")),
    (lambda c: c.publish_layer_version(LayerName="l", Content={"ZipFile": make_zip({"a": "b"})},
                                       CompatibleArchitectures=["x86_64", "arm64", "s390"]),
     (400, "ValidationException", "2 validation errors detected: Value '[x86_64, arm64, s390]' at "
      "'compatibleArchitectures' failed to satisfy constraint: Member must satisfy constraint: [Member must "
      "satisfy enum value set: [x86_64, arm64]]; Value '['x86_64', 'arm64', 's390']' at 'compatibleArchitectures' "
      "failed to satisfy constraint: Member must have length less than or equal to 2")),
])
def test_layer_errors(server: Server, call, expected) -> None:
    with pytest.raises(ClientError) as exc:
        call(server.client("lambda", validate=False))
    status, code, message = error(exc)
    assert (status, code) == expected[:2]
    assert message.startswith(expected[2]) and (message == expected[2] or expected[2].endswith(", "))


def test_bad_layer_names_and_list_paging_limits(server: Server) -> None:
    c = server.client("lambda", validate=False)
    with pytest.raises(ClientError) as exc:
        c.get_layer_version(LayerName="bad name", VersionNumber=1)
    assert error(exc)[:2] == (400, "ValidationException")
    assert "Value 'bad name' at 'layerName' failed to satisfy constraint" in error(exc)[2]
    with pytest.raises(ClientError) as exc:
        c.list_layers(MaxItems=0)
    assert error(exc) == (400, "ValidationException", "1 validation error detected: Value '0' at 'maxItems' "
                          "failed to satisfy constraint: Member must have value greater than or equal to 1")
    with pytest.raises(ClientError) as exc:
        c.list_layer_versions(LayerName="x", MaxItems=51)
    assert error(exc)[2].endswith("Member must have value less than or equal to 50")


def test_layer_version_policy(server: Server) -> None:
    c = server.lambda_client
    name = unique_name("layer")
    publish(server, name, {"a.txt": "a"})
    arn = f"{PREFIX}{name}:1"
    with pytest.raises(ClientError) as exc:
        c.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert error(exc) == (404, "ResourceNotFoundException", "No policy is associated with the given resource.")
    added = c.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="everyone",
                                           Action="lambda:GetLayerVersion", Principal="*")
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {"Sid": "everyone", "Effect": "Allow", "Principal": "*",
                                              "Action": "lambda:GetLayerVersion", "Resource": arn}
    org = c.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org",
                                         Action="lambda:GetLayerVersion", Principal="123456789012",
                                         OrganizationId="o-abcdefghij", RevisionId=added["RevisionId"])
    assert json.loads(org["Statement"])["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert json.loads(org["Statement"])["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": "o-abcdefghij"}}
    policy = c.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == org["RevisionId"] != added["RevisionId"]
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17" and doc["Id"] == "default"
    assert [s["Sid"] for s in doc["Statement"]] == ["everyone", "org"]

    with pytest.raises(ClientError) as exc:
        c.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org",
                                       Action="lambda:GetLayerVersion", Principal="*")
    assert error(exc) == (409, "ResourceConflictException", "The statement id (org) provided already exists. "
                          "Please provide a new statement id, or remove the existing statement.")
    with pytest.raises(ClientError) as exc:
        c.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="new",
                                       Action="lambda:GetLayerVersion", Principal="*", RevisionId="stale")
    assert error(exc) == (412, "PreconditionFailedException", "The Revision Id provided does not match the latest "
                          "Revision Id. Call the GetLayerPolicy API to retrieve the latest Revision Id")
    with pytest.raises(ClientError) as exc:
        c.add_layer_version_permission(LayerName=name, VersionNumber=7, StatementId="new",
                                       Action="lambda:GetLayerVersion", Principal="*")
    assert error(exc) == (404, "ResourceNotFoundException", f"Layer version {PREFIX}{name}:7 does not exist.")
    with pytest.raises(ClientError) as exc:
        server.client("lambda", validate=False).add_layer_version_permission(
            LayerName=name, VersionNumber=1, StatementId="new", Action="lambda:InvokeFunction", Principal="*")
    assert error(exc) == (400, "ValidationException", "1 validation error detected: Value 'lambda:InvokeFunction' at "
                          "'action' failed to satisfy constraint: Member must satisfy regular expression pattern: "
                          "lambda:GetLayerVersion")

    removed = c.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="everyone")
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        c.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="everyone")
    assert error(exc) == (404, "ResourceNotFoundException", "Statement everyone is not found in resource policy.")
    c.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="org")
    with pytest.raises(ClientError) as exc:
        c.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert error(exc)[1] == "ResourceNotFoundException"


def test_function_layers_are_validated(server: Server) -> None:
    c = server.client("lambda", validate=False)
    name = unique_name("layer")
    arns = [publish(server, name, {f"f{i}": "x"})["LayerVersionArn"] for i in range(2)]
    others = [publish(server, unique_name("layer"), {"f": "x"})["LayerVersionArn"] for _ in range(5)]
    code = make_zip({"bootstrap": "#!/bin/sh\n"})
    cases = [
        ([*others, arns[0]], 400, "InvalidParameterValueException", "Cannot reference more than 5 layers."),
        (arns, 400, "InvalidParameterValueException", "Two different versions of the same layer are not allowed to "
         f"be referenced in the same function. {arns[0]} and {arns[1]} are versions of the same layer."),
        ([f"{PREFIX}{name}:9"], 400, "InvalidParameterValueException",
         f"Layer version {PREFIX}{name}:9 does not exist."),
        ([arns[0].replace("us-east-1", "eu-west-1")], 400, "InvalidParameterValueException",
         "Layers are not in the same region as the function. Layers are expected to be in region us-east-1."),
        ([arns[0].replace("000000000000", "123456789012")], 403, "AccessDeniedException",
         "User: arn:aws:iam::000000000000:root is not authorized to perform: lambda:GetLayerVersion on resource: "
         f"{arns[0].replace('000000000000', '123456789012')} because no resource-based policy allows the "
         "lambda:GetLayerVersion action"),
        (["my-layer"], 400, "ValidationException", "1 validation error detected: Value '[my-layer]' at 'layers' "
         "failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal "
         "to 2048, Member must have length greater than or equal to 1, Member must satisfy regular expression "
         "pattern: (arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:layer:"
         "[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+), Member must not be null]"),
    ]
    fn = unique_name("fn")
    for layers, status, code_, message in cases:
        with pytest.raises(ClientError) as exc:
            c.create_function(FunctionName=fn, Runtime="provided.al2023", Role=ROLE, Handler="h",
                              Code={"ZipFile": code}, Layers=layers)
        assert error(exc) == (status, code_, message)
        with pytest.raises(c.exceptions.ResourceNotFoundException):
            c.get_function(FunctionName=fn)  # nothing was created
    created = c.create_function(FunctionName=fn, Runtime="provided.al2023", Role=ROLE, Handler="h",
                                Code={"ZipFile": code}, Layers=[arns[1], others[0]])
    assert [layer["Arn"] for layer in created["Layers"]] == [arns[1], others[0]]
    assert all(layer["CodeSize"] > 0 for layer in created["Layers"])
    with pytest.raises(ClientError) as exc:
        c.update_function_configuration(FunctionName=fn, Layers=arns)
    assert error(exc)[1] == "InvalidParameterValueException"
    assert c.get_function_configuration(FunctionName=fn)["Layers"] == created["Layers"]  # unchanged
    updated = c.update_function_configuration(FunctionName=fn, Layers=[others[2]])
    assert [layer["Arn"] for layer in updated["Layers"]] == [others[2]]
    assert "Layers" not in c.update_function_configuration(FunctionName=fn, Layers=[])
    assert "Layers" not in c.get_function(FunctionName=fn)["Configuration"]


def _site_packages(module: str, text: str) -> dict[str, str]:
    """A module in python/lib/python3.X/site-packages for every interpreter a test host may run."""
    return {f"python/lib/python3.{minor}/site-packages/{module}": text for minor in range(9, 15)}


def test_python_function_sees_its_layers_in_order(server: Server) -> None:
    first = publish(server, unique_name("layer"), {
        "python/from_first.py": "WHO = 'first'\n", "python/shared.py": "WHO = 'first'\n",
        **_site_packages("deep_first.py", "WHO = 'site-packages'\n"),
        "bin/layer-tool": "#!/bin/sh\necho tool-of-first\n", "lib/libfirst.txt": "first",
        "data/only-first.txt": "1",
    }, executable=("bin/layer-tool",))
    second = publish(server, unique_name("layer"), {
        "python/shared.py": "WHO = 'second'\n", "bin/layer-tool": "#!/bin/sh\necho tool-of-second\n",
    }, executable=("bin/layer-tool",))
    app = """import os, subprocess, sys
import deep_first, from_first, shared

def handler(event, context):
    opt = os.environ["LD_LIBRARY_PATH"].rsplit(":", 1)[1][:-len("/lib")]
    return {"first": from_first.WHO, "shared": shared.WHO, "deep": deep_first.WHO,
            "tool": subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip(),
            "lib": open(os.path.join(opt, "lib", "libfirst.txt")).read(),
            "data": sorted(os.listdir(os.path.join(opt, "data"))), "path_tail": os.environ["PATH"].rsplit(":", 1)[1],
            "sys_path": sys.path[:3], "task": os.environ["LAMBDA_TASK_ROOT"], "opt": opt}
"""
    name = unique_name("py")
    create_function(server, name, make_zip({"app.py": app}), runtime="python3.12", handler="app.handler",
                    Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
    body, err = invoke(server, name)
    assert err is None, body
    assert body["first"] == "first" and body["shared"] == "second" and body["deep"] == "site-packages"
    assert body["tool"] == "tool-of-second" and body["lib"] == "first" and body["data"] == ["only-first.txt"]
    assert body["path_tail"] == body["opt"] + "/bin"
    opt = body["opt"]
    assert body["sys_path"][0] == body["task"]
    assert body["sys_path"][1].startswith(opt + "/python/lib/python3.") and body["sys_path"][2] == opt + "/python"


def test_nodejs_function_sees_its_layers_in_order(server: Server) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    first = publish(server, unique_name("layer"), {
        "nodejs/node_modules/from-first/index.js": "module.exports = 'first';",
        "nodejs/node_modules/shared/index.js": "module.exports = 'first';",
        "nodejs/node20/node_modules/versioned/index.js": "module.exports = 'node20';",
        "bin/layer-tool": "#!/bin/sh\necho tool-of-first\n",
    }, executable=("bin/layer-tool",))
    second = publish(server, unique_name("layer"), {
        "nodejs/node_modules/shared/index.js": "module.exports = 'second';",
    })
    code = """const { execSync } = require("child_process");
exports.handler = async () => ({ first: require("from-first"), shared: require("shared"),
  versioned: require("versioned"), tool: execSync("layer-tool").toString().trim(),
  nodePath: process.env.NODE_PATH });"""
    name = unique_name("node")
    create_function(server, name, make_zip({"index.js": code}), runtime="nodejs20.x", handler="index.handler",
                    Layers=[first["LayerVersionArn"], second["LayerVersionArn"]])
    body, err = invoke(server, name)
    assert err is None, body
    assert body["first"] == "first" and body["shared"] == "second" and body["versioned"] == "node20"
    assert body["tool"] == "tool-of-first"
    assert body["nodePath"].split(":")[0].endswith("/nodejs/node20/node_modules")


BOOTSTRAP = """#!/bin/sh
set -eu
while true; do
  HEADERS=$(mktemp)
  curl -sS -D "$HEADERS" -o /dev/null "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next"
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:cntrl:]' | awk '{print $2}')
  WORD=$(cat "$(dirname "$0")/word.txt")  # $0 is /opt/bootstrap: word.txt is the merged /opt's
  TASK=$(cat "$LAMBDA_TASK_ROOT/handler.txt")
  BODY="{\\"greeting\\": \\"$(greet)\\", \\"word\\": \\"$WORD\\", \\"handler\\": \\"$TASK\\"}"
  curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$ID/response" -d "$BODY" >/dev/null
done
"""


def test_provided_function_runs_a_bootstrap_from_its_layers(server: Server) -> None:
    runtime = publish(server, unique_name("layer"), {
        "bootstrap": BOOTSTRAP, "word.txt": "from-runtime-layer", "bin/greet": "#!/bin/sh\necho hello-from-bin\n",
    }, executable=("bootstrap", "bin/greet"))
    words = publish(server, unique_name("layer"), {"word.txt": "overridden"})
    name = unique_name("provided")
    create_function(server, name, make_zip({"handler.txt": "task-file"}), runtime="provided.al2023",
                    Layers=[runtime["LayerVersionArn"], words["LayerVersionArn"]])
    body, err = invoke(server, name)
    assert err is None, body
    assert body == {"greeting": "hello-from-bin", "word": "overridden", "handler": "task-file"}

    bare = unique_name("provided")  # no bootstrap in the zip, none in the layers
    create_function(server, bare, make_zip({"handler.txt": "x"}), runtime="provided.al2023",
                    Layers=[words["LayerVersionArn"]])
    body, err = invoke(server, bare)
    assert err == "Unhandled" and body["errorType"] == "Runtime.InvalidEntrypoint"


def test_layers_and_their_functions_survive_a_restart(tmp_path) -> None:
    srv = start_server(tmp_path / "data")
    try:
        layer = publish(srv, "persisted", {"python/persisted.py": "VALUE = 'from-layer'\n"})
        srv.lambda_client.add_layer_version_permission(LayerName="persisted", VersionNumber=1, StatementId="all",
                                                       Action="lambda:GetLayerVersion", Principal="*")
        create_function(srv, "uses-layer", make_zip({"app.py": "import persisted\n"
                                                     "def handler(e, c):\n    return persisted.VALUE\n"}),
                        runtime="python3.12", handler="app.handler", Layers=[layer["LayerVersionArn"]])
        assert invoke(srv, "uses-layer") == ("from-layer", None)
        srv.lambda_client.delete_layer_version(LayerName="persisted", VersionNumber=1)
    finally:
        assert stop_server(srv) == 0
    srv = start_server(tmp_path / "data")
    try:
        c = srv.lambda_client
        assert invoke(srv, "uses-layer") == ("from-layer", None)  # a deleted version stays with its function
        layers = c.get_function(FunctionName="uses-layer")["Configuration"]["Layers"]
        assert [entry["Arn"] for entry in layers] == [layer["LayerVersionArn"]]
        assert c.publish_layer_version(LayerName="persisted",
                                       Content={"ZipFile": make_zip({"x": "y"})})["Version"] == 2
        with pytest.raises(c.exceptions.ResourceNotFoundException):
            c.get_layer_version(LayerName="persisted", VersionNumber=1)
        c.add_layer_version_permission(LayerName="persisted", VersionNumber=2, StatementId="all",
                                       Action="lambda:GetLayerVersion", Principal="*")
    finally:
        stop_server(srv)
    srv = start_server(tmp_path / "data")
    try:
        got = srv.lambda_client.get_layer_version_policy(LayerName="persisted", VersionNumber=2)
        policy = json.loads(got["Policy"])
        assert [s["Sid"] for s in policy["Statement"]] == ["all"]
    finally:
        stop_server(srv)


def _zeros_zip(path: str, size: int) -> bytes:
    """A small zip that unpacks to `size` bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open(path, "w", force_zip64=True) as f:
        chunk = b"\0" * (1 << 20)
        left = size
        while left:
            f.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))
    return buf.getvalue()


@pytest.mark.slow
def test_function_and_layers_together_stay_under_the_unzipped_limit(server: Server) -> None:
    c = server.lambda_client
    big = c.publish_layer_version(LayerName=unique_name("big"),
                                  Content={"ZipFile": _zeros_zip("big/a.bin", 140_000_000)})["LayerVersionArn"]
    bigger = c.publish_layer_version(LayerName=unique_name("big"),
                                     Content={"ZipFile": _zeros_zip("big/b.bin", 122_144_000)})["LayerVersionArn"]
    code = make_zip({"bootstrap": "#!/bin/sh\n"})  # 10 bytes unzipped
    name = unique_name("fn")
    with pytest.raises(ClientError) as exc:
        create_function(server, name, code, Layers=[big, bigger])
    assert error(exc) == (400, "InvalidParameterValueException", "Function code combined with layers exceeds the "
                          "maximum allowed size of 262144000 bytes. The actual size is 262144010 bytes.")
    create_function(server, name, code, Layers=[big])
    with pytest.raises(ClientError) as exc:
        c.update_function_configuration(FunctionName=name, Layers=[big, bigger])
    assert "The actual size is 262144010 bytes." in error(exc)[2]


@pytest.mark.parametrize("runtime, files, handler", [
    ("python3.12", {"app.py": "import os\ndef handler(e, c):\n    return os.environ.get('WRAPPED')\n"},
     "app.handler"),
    ("nodejs20.x", {"index.js": "exports.handler = async () => process.env.WRAPPED;"}, "index.handler"),
])
def test_an_exec_wrapper_from_a_layer(server: Server, runtime: str, files: dict[str, str], handler: str) -> None:
    if runtime.startswith("nodejs") and shutil.which("node") is None:
        pytest.skip("node is not installed")
    wrapper = publish(server, unique_name("layer"), {"wrapper": '#!/bin/bash\nexport WRAPPED="by-layer"\nexec "$@"\n'},
                      executable=("wrapper",))
    name = unique_name("wrapped")
    create_function(server, name, make_zip(files), runtime=runtime, handler=handler,
                    env={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper"}, Layers=[wrapper["LayerVersionArn"]])
    assert invoke(server, name) == ("by-layer", None)
