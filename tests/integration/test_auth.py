"""`lambdalet serve --auth`: AWS SigV4 on every API call and on AWS_IAM function URLs, through a real server,
signed by real boto3 / botocore / the AWS CLI; and each environment's own temporary credentials."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotoCredentials
from botocore.exceptions import ClientError
from conftest import REPO, Server, free_port, make_zip, start_server, stop_server, unique_name

KEY, SECRET = "AKIAOPERATOR0000TEST", "operator/Secret+Key0000000000000000000000"
CREDENTIALS_FILE = f"""# the operator's keys
[default]
aws_access_key_id = {KEY}
aws_secret_access_key = {SECRET}

[ci]
aws_access_key_id = AKIAOPERATOR00000CI0
aws_secret_access_key = another-secret
"""

ECHO_APP = """
import os
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"event": event, "key": os.environ["AWS_ACCESS_KEY_ID"],
            "secret": os.environ["AWS_SECRET_ACCESS_KEY"], "token": os.environ["AWS_SESSION_TOKEN"]}
"""

CALLER_APP = """
import json
import boto3

def handler(event, context):
    out = boto3.client("lambda").invoke(FunctionName=event["target"], Payload=json.dumps({"from": "inside"}))
    return json.loads(out["Payload"].read())
"""

URL_APP = """
def handler(event, context):
    return {"statusCode": 200, "body": event["rawPath"] + "?" + event["rawQueryString"]}
"""


def client(server: Server, service: str = "lambda", key: str = KEY, secret: str = SECRET,
           token: str | None = None):
    return boto3.client(service, endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token,
                        config=Config(retries={"max_attempts": 0}, read_timeout=60))


def error_of(call) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call()
    resp = info.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"], resp["Error"]["Message"]


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def signed(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None,
           secret: str = SECRET, service: str = "lambda", when: datetime.datetime | None = None,
           presign: int | None = None) -> AWSRequest:
    """A request signed by botocore's own signer (header-signed, or presigned for `presign` seconds)."""
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    creds = BotoCredentials(KEY, secret)
    signer = SigV4QueryAuth(creds, service, "us-east-1", expires=presign) if presign \
        else SigV4Auth(creds, service, "us-east-1")
    now = when or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        signer.add_auth(req)
    return req


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth")
    creds = root / "credentials"
    creds.write_text(CREDENTIALS_FILE)
    srv = start_server(root / "data", "--auth", str(creds), "-v")
    yield srv
    stop_server(srv)


def deploy(server: Server, code: str, **kw) -> str:
    name = unique_name("auth")
    client(server).create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                                   Role="arn:aws:iam::000000000000:role/x",
                                   Code={"ZipFile": make_zip({"app.py": code})}, Timeout=30, **kw)
    return name


def invoke(server: Server, name: str, event: object, **kw) -> object:
    out = client(server, **kw).invoke(FunctionName=name, Payload=json.dumps(event))
    assert "FunctionError" not in out, out["Payload"].read()
    return json.loads(out["Payload"].read())


def test_right_keys_work_for_every_kind_of_call(auth_server: Server) -> None:
    name = deploy(auth_server, ECHO_APP)
    lam = client(auth_server)
    assert lam.get_function(FunctionName=name)["Configuration"]["FunctionName"] == name
    # `:` and `$` in the path are signed percent-encoded twice, as botocore does
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    assert lam.get_function_configuration(FunctionName=f"{arn}:$LATEST")["FunctionName"] == name
    assert invoke(auth_server, f"{name}:$LATEST", {"hi": 1})["event"] == {"hi": 1}
    assert client(auth_server, key="AKIAOPERATOR00000CI0", secret="another-secret").list_functions()["Functions"]
    names = [g["logGroupName"] for g in client(auth_server, "logs").describe_log_groups()["logGroups"]]
    assert f"/aws/lambda/{name}" in names
    assert "signed by operator [default]" in auth_server.server_log()
    assert "signed by operator [ci]" in auth_server.server_log()


def test_a_large_upload_is_verified_as_it_arrives(auth_server: Server) -> None:
    big = make_zip({"app.py": ECHO_APP, "blob.bin": os.urandom(3 << 20)})
    name = unique_name("auth-big")
    client(auth_server).create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                                        Role="arn:aws:iam::000000000000:role/x", Code={"ZipFile": big})
    assert invoke(auth_server, name, {"n": 2})["event"] == {"n": 2}
    status, code, _ = error_of(lambda: client(auth_server, secret="wrong").update_function_code(
        FunctionName=name, ZipFile=big))
    assert (status, code) == (403, "InvalidSignatureException")


def test_wrong_secret_is_invalid_signature(auth_server: Server) -> None:
    assert error_of(lambda: client(auth_server, secret="wrong").list_functions()) == (
        403, "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
        "Access Key and signing method. Consult the service documentation for details.")
    name = unique_name("nothing")
    status, code, _ = error_of(lambda: client(auth_server, secret="wrong").invoke(FunctionName=name))
    assert (status, code) == (403, "InvalidSignatureException")  # (the invoke fast path checks too)


def test_unknown_key_is_unrecognized_client(auth_server: Server) -> None:
    assert error_of(lambda: client(auth_server, key="AKIANOBODY0000000000").list_functions()) == (
        403, "UnrecognizedClientException", "The security token included in the request is invalid.")
    assert error_of(lambda: client(auth_server, token="made-up").list_functions())[1] == "UnrecognizedClientException"


def test_unsigned_and_malformed_calls(auth_server: Server) -> None:
    status, headers, body = http("GET", auth_server.endpoint + "/2015-03-31/functions/")
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert json.loads(body) == {"message": "Missing Authentication Token"}
    status, headers, body = http("POST", auth_server.endpoint + "/2015-03-31/functions/x/invocations", b"{}")
    assert status == 403 and headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    status, headers, body = http("GET", auth_server.endpoint + "/2015-03-31/functions/",
                                 headers={"Authorization": "AWS4-HMAC-SHA256 Credential=abc"})
    assert status == 403 and headers["x-amzn-errortype"] == "IncompleteSignatureException"
    assert json.loads(body)["message"] == (
        "Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' "
        "parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. "
        "Authorization=AWS4-HMAC-SHA256 Credential=abc")
    status, _, body = http("POST", auth_server.endpoint + "/", b"{}",
                           {"X-Amz-Target": "Logs_20140328.DescribeLogGroups",
                            "Content-Type": "application/x-amz-json-1.1"})
    assert status == 400 and json.loads(body)["__type"] == "MissingAuthenticationTokenException"
    assert http("GET", auth_server.endpoint + "/lambdalet/health")[0] == 200


def test_clock_skew_of_more_than_five_minutes_is_refused(auth_server: Server) -> None:
    url = auth_server.endpoint + "/2015-03-31/functions/"
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    req = signed("GET", url, when=now - datetime.timedelta(minutes=4))
    assert http("GET", url, headers=dict(req.headers))[0] == 200
    req = signed("GET", url, when=now - datetime.timedelta(minutes=6))
    status, headers, body = http("GET", url, headers=dict(req.headers))
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    message = json.loads(body)["message"]
    assert message.startswith(f"Signature expired: {req.headers['X-Amz-Date']} is now earlier than ")
    assert message.endswith(" - 5 min.)")
    req = signed("GET", url, when=now + datetime.timedelta(minutes=6))
    status, _, body = http("GET", url, headers=dict(req.headers))
    assert status == 403 and json.loads(body)["message"].startswith("Signature not yet current: ")


def test_presigned_url(auth_server: Server) -> None:
    name = deploy(auth_server, ECHO_APP)
    url = f"{auth_server.endpoint}/2015-03-31/functions/{name}?Qualifier=%24LATEST"
    status, _, body = http("GET", signed("GET", url, presign=60).url)
    assert status == 200, body
    assert json.loads(body)["Configuration"]["FunctionName"] == name
    old = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(seconds=120)
    status, headers, body = http("GET", signed("GET", url, presign=60, when=old).url)
    assert status == 403 and json.loads(body)["message"].startswith("Signature expired: ")
    status, headers, _ = http("GET", signed("GET", url, presign=60, secret="wrong").url)
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    status, headers, body = http("GET", url + "&X-Amz-Signature=00")
    assert status == 403 and headers["x-amzn-errortype"] == "IncompleteSignatureException"
    assert json.loads(body)["message"].endswith("Re-examine the query-string parameters.")


def test_logs_api_calls(auth_server: Server) -> None:
    assert "logGroups" in client(auth_server, "logs").describe_log_groups()
    status, code, message = error_of(lambda: client(auth_server, "logs", secret="wrong").describe_log_groups())
    assert (status, code) == (400, "InvalidSignatureException")
    assert "The Canonical String for this request should have been\n'POST\n/\n" in message
    assert error_of(lambda: client(auth_server, "logs", key="AKIANOBODY0000000000").describe_log_groups())[:2] \
        == (400, "UnrecognizedClientException")
    # a call signed for the wrong service
    req = signed("POST", auth_server.endpoint + "/", b"{}", {"X-Amz-Target": "Logs_20140328.DescribeLogGroups",
                                                             "Content-Type": "application/x-amz-json-1.1"})
    status, _, body = http("POST", auth_server.endpoint + "/", b"{}", dict(req.headers))
    assert status == 400
    assert json.loads(body) == {"__type": "InvalidSignatureException",
                                "message": "Credential should be scoped to correct service: 'logs'."}


def test_aws_iam_function_url(auth_server: Server) -> None:
    name = deploy(auth_server, URL_APP)
    url = client(auth_server).create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    target = url + "some/path?b=2&a=1"
    status, _, body = http("GET", target)
    assert (status, body) == (403, b'{"Message":"Forbidden"}')
    req = signed("POST", target, b'{"x": 1}', {"Content-Type": "application/json"})
    status, _, body = http("POST", target, b'{"x": 1}', dict(req.headers))
    assert (status, body) == (200, b"/some/path?b=2&a=1")
    req = signed("POST", target, b'{"x": 1}', {"Content-Type": "application/json"}, secret="wrong")
    status, headers, _ = http("POST", target, b'{"x": 1}', dict(req.headers))
    assert status == 403 and headers["x-amzn-errortype"] == "InvalidSignatureException"
    none_name = deploy(auth_server, URL_APP)
    open_url = client(auth_server).create_function_url_config(FunctionName=none_name, AuthType="NONE")["FunctionUrl"]
    assert http("GET", open_url + "x?y=1")[:1] == (200,)  # AuthType NONE needs no signature


def test_function_calls_with_its_environments_credentials_which_end_with_it(auth_server: Server) -> None:
    target = deploy(auth_server, ECHO_APP)
    caller = deploy(auth_server, CALLER_APP)
    inner = invoke(auth_server, caller, {"target": target})
    assert inner["event"] == {"from": "inside"}
    log = auth_server.server_log()
    assert f"POST /2015-03-31/functions/{target}/invocations signed by function {caller}:$LATEST, environment " in log

    creds = invoke(auth_server, target, {})
    assert creds["key"].startswith("ASIA") and len(creds["key"]) == 20 and creds["token"]
    assert creds["key"] == inner["key"]  # the same (warm) environment of the target answered both
    theirs = client(auth_server, key=creds["key"], secret=creds["secret"], token=creds["token"])
    assert theirs.get_function(FunctionName=caller)["Configuration"]["FunctionName"] == caller
    assert error_of(lambda: client(auth_server, key=creds["key"], secret=creds["secret"]).list_functions())[1] \
        == "UnrecognizedClientException"  # temporary credentials need their session token

    client(auth_server).delete_function(FunctionName=target)  # ends its environments
    deadline = time.time() + 15
    while True:
        try:
            theirs.list_functions()
        except ClientError as exc:
            assert (exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"],
                    exc.response["Error"]["Message"]) == (
                403, "ExpiredTokenException", "The security token included in the request is expired")
            break
        assert time.time() < deadline, "the ended environment's credentials still work"
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("aws") is None, reason="no AWS CLI on this host")
def test_aws_cli(auth_server: Server, tmp_path: Path) -> None:
    def aws(*args: str, secret: str = SECRET) -> subprocess.CompletedProcess:
        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": secret,
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        return subprocess.run(["aws", "--endpoint-url", auth_server.endpoint, "--output", "json", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    name = deploy(auth_server, ECHO_APP)
    out = aws("lambda", "get-function-configuration", "--function-name", name, "--qualifier", "$LATEST")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["FunctionName"] == name
    out = aws("lambda", "invoke", "--function-name", name, "--payload", "{}", str(tmp_path / "out.json"))
    assert out.returncode == 0, out.stderr
    out = aws("logs", "describe-log-groups")
    assert out.returncode == 0, out.stderr
    out = aws("lambda", "list-functions", secret="wrong")
    assert out.returncode != 0 and "InvalidSignatureException" in out.stderr


def test_without_auth_environments_still_get_credentials_of_their_own(server: Server) -> None:
    name = unique_name("creds")
    server.lambda_client.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                                         Role="arn:aws:iam::000000000000:role/x",
                                         Code={"ZipFile": make_zip({"app.py": ECHO_APP})})

    def key(_: int) -> str:  # two at once: two environments
        out = server.lambda_client.invoke(FunctionName=name, Payload=b'{"sleep": 1}')
        return json.loads(out["Payload"].read())["key"]

    with ThreadPoolExecutor(2) as pool:
        keys = set(pool.map(key, range(2)))
    assert len(keys) == 2 and all(k.startswith("ASIA") for k in keys)


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lambdalet.cli", "serve", "--port", str(free_port()), *args],
                          capture_output=True, text=True, timeout=30, cwd=str(REPO))


def test_refuses_to_start_off_loopback_without_auth(tmp_path: Path) -> None:
    out = serve("--host", "0.0.0.0", "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address" in out.stderr and "--auth" in out.stderr


@pytest.mark.parametrize("content, expected", [
    ("", "holds no access keys"),
    ("[default]\naws_access_key_id = AKIA1\n", "profile [default] has no aws_secret_access_key"),
    ("aws_access_key_id = AKIA1\n", "is not an AWS credentials file"),
    ("[a]\naws_access_key_id = AK IA\naws_secret_access_key = s\n", "must be letters, digits and underscores"),
    ("[a]\naws_access_key_id = K1\naws_secret_access_key = s\n[b]\naws_access_key_id = K1\n"
     "aws_secret_access_key = t\n", "access key K1 is in [a] and [b]"),
])
def test_refuses_a_malformed_credentials_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "creds"
    path.write_text(content)
    out = serve("--auth", str(path), "--data-dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert "cannot start: --auth: " in out.stderr and expected in out.stderr, out.stderr
    assert "cannot read" in serve("--auth", str(tmp_path / "missing"), "--data-dir", str(tmp_path / "d")).stderr


def test_lambdalets_own_cli_signs_with_the_environments_keys(auth_server: Server) -> None:
    name = deploy(auth_server, ECHO_APP)

    def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lambdalet.cli", *args, "--endpoint", auth_server.endpoint],
                              capture_output=True, text=True, timeout=60, cwd=str(REPO),
                              env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env)

    keys = {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    out = cli("invoke", name, "--payload", '{"a": 1}', **keys)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["event"] == {"a": 1}
    out = cli("functions", **keys)
    assert out.returncode == 0 and name in out.stdout, out.stderr
    out = cli("logs", name, **keys)
    assert out.returncode == 0 and "START RequestId" in out.stdout, out.stderr
    out = cli("functions")
    assert out.returncode == 1 and "error (403): Missing Authentication Token" in out.stderr


def test_off_loopback_with_auth_every_call_is_verified(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(CREDENTIALS_FILE)
    srv = start_server(tmp_path / "data", "--host", "0.0.0.0", "--auth", str(creds))  # (the last --host wins)
    try:
        deadline = time.monotonic() + 10  # (the line comes once listening: the health check may answer first)
        while "every API call must be signed with a key of" not in srv.server_log():
            assert time.monotonic() < deadline, srv.server_log()
            time.sleep(0.05)
        assert client(srv).list_functions()["Functions"] == []
        assert http("GET", srv.endpoint + "/2015-03-31/functions/")[0] == 403
    finally:
        stop_server(srv)
