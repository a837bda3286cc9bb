"""SigV4 canonicalisation and checks: AWS's published vectors, and botocore's own signer on generated requests."""

from __future__ import annotations

import datetime
import hashlib
import hmac
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from lambdalet import sigv4
from lambdalet.credentials import Credentials, CredentialStore, load_credentials_file
from lambdalet.sigv4 import SignatureError, Verifier

# The AWS SigV4 test suite's credentials and time (docs.aws.amazon.com, "Signature Version 4 test suite").
SUITE_KEY, SUITE_SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_TIME = "20150830T123600Z"
NOW = datetime.datetime(2015, 8, 30, 12, 36, 0, tzinfo=datetime.UTC)


def suite_signature(method: str, path: str, query: str, headers: dict[str, str], signed: str, body: bytes = b"",
                    service: str = "service") -> str:
    canonical = sigv4.canonical_request(method, path, query, headers, signed, hashlib.sha256(body).hexdigest())
    to_sign = sigv4.string_to_sign(SUITE_TIME, f"20150830/us-east-1/{service}/aws4_request", canonical)
    key = sigv4.derive_key(SUITE_SECRET, "20150830", "us-east-1", service)
    return hmac.new(key, to_sign.encode(), "sha256").hexdigest()


def test_derived_signing_key_of_the_aws_docs() -> None:
    assert sigv4.derive_key(SUITE_SECRET, "20120215", "us-east-1", "iam").hex() == \
        "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


@pytest.mark.parametrize("name, method, query, signature", [
    ("get-vanilla", "GET", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "Param2=value2&Param1=value1",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("post-vanilla", "POST", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
])
def test_aws_test_suite_vectors(name: str, method: str, query: str, signature: str) -> None:
    headers = {"host": "example.amazonaws.com", "x-amz-date": SUITE_TIME}
    assert suite_signature(method, "/", query, headers, "host;x-amz-date") == signature, name


def test_iam_list_users_example_of_the_aws_docs() -> None:
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8", "host": "iam.amazonaws.com",
               "x-amz-date": SUITE_TIME}
    assert suite_signature("GET", "/", "Action=ListUsers&Version=2010-05-08", headers, "content-type;host;x-amz-date",
                           service="iam") == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"


@pytest.mark.parametrize("raw, canonical", [
    ("/2015-03-31/functions/my%3Afn%3A%24LATEST/invocations",
     "/2015-03-31/functions/my%253Afn%253A%2524LATEST/invocations"),  # encoded once more, as botocore does
    ("/a//b/./c/../d/", "/a/b/d/"),
    ("/..", "/"),
    ("", "/"),
    ("/ሴ", "/%E1%88%B4"),
    ("/sp ace~", "/sp%20ace~"),
])
def test_canonical_uri(raw: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw.encode().decode("latin-1")) == canonical


def test_canonical_query_sorts_encoded_pairs_and_drops_a_presigned_signature() -> None:
    assert sigv4.canonical_query("b=2&a=%7e&a=1&c&X-Amz-Signature=x", presigned=True) == "a=1&a=~&b=2&c="
    assert sigv4.canonical_query("q=a b+c/") == "q=a%20b%2Bc%2F"


def test_canonical_headers_fold_whitespace() -> None:
    assert sigv4.canonical_headers({"a": "x   y\tz", "b": ""}, ["a", "b", "c"]) == "a:x y z\nb:\nc:\n"


# ---------------------------------------------------------------- against botocore's signer

def store() -> CredentialStore:
    return CredentialStore({SUITE_KEY: Credentials(SUITE_KEY, SUITE_SECRET, None, "default")})


def botocore_signed(method: str, url: str, body: bytes, headers: dict[str, str], presign: int | None = None,
                    token: str | None = None, key: str = SUITE_KEY, secret: str = SUITE_SECRET,
                    service: str = "lambda") -> AWSRequest:
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    creds = BotoCredentials(key, secret, token)
    signer = SigV4QueryAuth(creds, service, "us-east-1", expires=presign) if presign \
        else SigV4Auth(creds, service, "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(req)
    return req


def as_received(req: AWSRequest) -> tuple[str, str, dict[str, str]]:
    """Path, query and headers as lambdalet's HTTP server hands them over (names lower-cased, values trimmed)."""
    parts = urlsplit(req.url)
    headers = {k.lower(): v.strip(" \t") for k, v in req.headers.items()}
    headers.setdefault("host", parts.netloc)
    return parts.path, parts.query, headers


def verify(req: AWSRequest, body: bytes, keys: CredentialStore | None = None, service: str = "lambda",
           now: datetime.datetime = NOW) -> Credentials:
    path, query, headers = as_received(req)
    verifier = Verifier(keys or store(), "us-east-1", clock=now.timestamp)
    claim = verifier.claim(query, headers, service)
    body_hash = hashlib.sha256(body).hexdigest() if verifier.needs_body(claim) else None
    return verifier.check(claim, req.method, path, query, headers, body_hash)


segment = st.text(st.characters(codec="utf-8", exclude_characters="/?#\x00"), max_size=8)
query_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=6)
header_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=12).map(
    lambda v: v.replace("  ", " \t "))


@settings(max_examples=300, deadline=None)
@given(segments=st.lists(st.one_of(segment, st.sampled_from(["..", ".", "", "$LATEST", "a:b"])), max_size=5),
       trailing=st.booleans(), params=st.lists(st.tuples(query_text, query_text), max_size=4),
       header=header_value, body=st.binary(max_size=64), presign=st.sampled_from([None, 300]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_every_request_botocore_signs_verifies(segments, trailing, params, header, body, presign, method) -> None:
    from botocore.utils import percent_encode, percent_encode_sequence
    path = "/" + "/".join(percent_encode(s) if s not in ("..", ".") else s for s in segments)
    if trailing:
        path += "/"
    query = percent_encode_sequence(params) if params else ""
    url = f"http://127.0.0.1:9000{path}" + (f"?{query}" if query else "")
    if presign:
        body = b""  # (botocore's presigner moves a body into the query, as the Query protocol wants)
    req = botocore_signed(method, url, body, {"X-Custom": header, "Content-Type": "application/json"}, presign)
    assert verify(req, body).owner == "default"
    tampered = as_received(req)
    with pytest.raises(SignatureError) as info:
        verifier = Verifier(store(), "us-east-1", clock=NOW.timestamp)
        claim = verifier.claim(tampered[1], tampered[2], "lambda")
        verifier.check(claim, method, tampered[0], tampered[1], tampered[2], hashlib.sha256(body + b"!").hexdigest())
    assert info.value.code == "InvalidSignatureException"


def test_temporary_credentials_need_their_session_token_and_end_when_revoked() -> None:
    keys = CredentialStore()
    creds = keys.issue("fn:$LATEST", "env1")
    req = botocore_signed("GET", "http://h/x", b"", {}, key=creds.access_key_id, secret=creds.secret_access_key,
                          token=creds.session_token)
    assert verify(req, b"", keys).environment == "env1"
    presigned = botocore_signed("GET", "http://h/x", b"", {}, presign=60, key=creds.access_key_id,
                                secret=creds.secret_access_key, token=creds.session_token)
    assert verify(presigned, b"", keys) is creds
    no_token = botocore_signed("GET", "http://h/x", b"", {}, key=creds.access_key_id, secret=creds.secret_access_key)
    with pytest.raises(SignatureError, match=r"The security token included in the request is invalid\."):
        verify(no_token, b"", keys)
    keys.revoke(creds)
    with pytest.raises(SignatureError) as info:
        verify(req, b"", keys)
    assert (info.value.code, info.value.message) == ("ExpiredTokenException",
                                                     "The security token included in the request is expired")
    assert keys.issue("fn:$LATEST", "env2").access_key_id != creds.access_key_id


def error(query: str = "", now: datetime.datetime = NOW, service: str = "lambda", **headers: str) -> tuple[str, str]:
    base = {"host": "h", "x-amz-date": SUITE_TIME}
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    with pytest.raises(SignatureError) as info:
        Verifier(store(), "us-east-1", clock=now.timestamp).claim(query, base, service)
    return info.value.code, info.value.message


def auth(credential: str = f"{SUITE_KEY}/20150830/us-east-1/lambda/aws4_request", signed: str = "host;x-amz-date",
         algorithm: str = "AWS4-HMAC-SHA256") -> str:
    return f"{algorithm} Credential={credential}, SignedHeaders={signed}, Signature=abc"


def test_claims_refused_in_aws_words() -> None:
    assert error()[0] == "MissingAuthenticationTokenException"
    assert error(authorization="Bearer x")[0] == "MissingAuthenticationTokenException"
    assert error("X-Amz-Algorithm=AWS4-HMAC-SHA256", authorization=auth()) == (
        "InvalidSignatureException",
        "Found both 'X-Amz-Algorithm' as a query-string param and 'Authorization' as HTTP header.")
    assert error(authorization="AWS4-HMAC-SHA256 Credential") == (
        "IncompleteSignatureException", "'Credential' not a valid key=value pair (missing equal-sign) in "
                                        "Authorization header: 'AWS4-HMAC-SHA256 Credential'.")
    assert error(authorization=auth(), x_amz_date="2015") == (
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '2015'. See http://en.wikipedia.org/wiki/ISO_8601")
    assert error(authorization=auth(signed="x-amz-date")) == (
        "InvalidSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    assert error(authorization=auth(algorithm="AWS4-HMAC-SHA512")) == (
        "IncompleteSignatureException", "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA512' (only AWS4-HMAC-SHA256 "
                                        "for now). ")
    assert error(authorization=auth(credential="a/b/c/d")) == (
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got 'a/b/c/d'")
    assert error(authorization=auth(credential=f"{SUITE_KEY}/20150831/eu-west-1/s3/aws4")) == (
        "InvalidSignatureException",
        "Credential should be scoped to a valid region, not 'eu-west-1'. Credential should be scoped to correct "
        "service: 'lambda'. Credential should be scoped with a valid terminator: 'aws4_request', not 'aws4'. Date "
        "in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20150831' != "
        "'20150830', from '20150830T123600Z'.")
    assert error(authorization=auth(credential="AKIANOBODY/20150830/us-east-1/lambda/aws4_request")) == (
        "UnrecognizedClientException", "The security token included in the request is invalid.")
    late = NOW + datetime.timedelta(minutes=5, seconds=1)
    assert error(authorization=auth(), now=late) == (
        "InvalidSignatureException",
        "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)")
    early = NOW - datetime.timedelta(minutes=6)
    assert error(authorization=auth(), now=early) == (
        "InvalidSignatureException",
        "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z (20150830T123000Z + "
        "5 min.)")
    assert error("X-Amz-Signature=1&X-Amz-Date=x") == (
        "IncompleteSignatureException",
        "AWS query-string parameters must include 'X-Amz-Algorithm'. AWS query-string parameters must include "
        "'X-Amz-Credential'. AWS query-string parameters must include 'X-Amz-SignedHeaders'. Re-examine the "
        "query-string parameters.")


def test_payload_hash_header() -> None:
    body = b'{"a": 1}'
    req = botocore_signed("POST", "http://h/x", body, {"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    path, query, headers = as_received(req)
    verifier = Verifier(store(), "us-east-1", clock=NOW.timestamp)
    claim = verifier.claim(query, headers, "lambda")
    assert not verifier.needs_body(claim)
    assert verifier.check(claim, "POST", path, query, headers, None).owner == "default"
    req = botocore_signed("POST", "http://h/x", body, {"X-Amz-Content-SHA256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(SignatureError, match="does not match what was computed"):
        verify(req, body)


def test_signing_keys_are_cached_per_secret_and_scope() -> None:
    verifier = Verifier(store(), "us-east-1", clock=NOW.timestamp)
    for _ in range(3):
        req = botocore_signed("GET", "http://h/x", b"", {})
        path, query, headers = as_received(req)
        verifier.check(verifier.claim(query, headers, "lambda"), "GET", path, query, headers, sigv4.EMPTY_SHA256)
    assert list(verifier._keys) == [(SUITE_SECRET, "20150830/us-east-1/lambda/aws4_request")]


def test_credentials_file(tmp_path) -> None:
    path = tmp_path / "credentials"
    path.write_text("[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n"
                    "[DEFAULT]\naws_access_key_id = AKIA2\naws_secret_access_key = s2\n")
    keys = load_credentials_file(str(path))
    assert {k: (c.secret_access_key, c.owner, c.session_token) for k, c in keys.items()} == {
        "AKIA1": ("s1", "default", None), "AKIA2": ("s2", "DEFAULT", None)}


def test_lambdalets_own_signer_matches_botocore() -> None:
    url = "http://127.0.0.1:9000/2015-03-31/functions/my%3Afn/invocations?Qualifier=%24LATEST"
    headers = {"Content-Type": "application/json"}
    ours = sigv4.sign("POST", url, headers, b"{}", SUITE_KEY, SUITE_SECRET, "tok", "us-east-1", "lambda",
                      now=NOW.timestamp())
    theirs = botocore_signed("POST", url, b"{}", dict(headers), token="tok")
    assert ours["Authorization"] == theirs.headers["Authorization"]
    assert (ours["X-Amz-Date"], ours["X-Amz-Security-Token"]) == (SUITE_TIME, "tok")


def test_a_date_header_stands_in_for_x_amz_date() -> None:
    headers = {"host": "h", "date": "Sun, 30 Aug 2015 12:36:00 GMT"}
    canonical = sigv4.canonical_request("GET", "/", "", headers, "date;host", sigv4.EMPTY_SHA256)
    to_sign = sigv4.string_to_sign(SUITE_TIME, "20150830/us-east-1/lambda/aws4_request", canonical)
    key = sigv4.derive_key(SUITE_SECRET, "20150830", "us-east-1", "lambda")
    headers["authorization"] = auth(signed="date;host").replace(
        "Signature=abc", f"Signature={hmac.new(key, to_sign.encode(), 'sha256').hexdigest()}")
    verifier = Verifier(store(), "us-east-1", clock=NOW.timestamp)
    claim = verifier.claim("", headers, "lambda")
    assert verifier.check(claim, "GET", "/", "", headers, sigv4.EMPTY_SHA256).owner == "default"
