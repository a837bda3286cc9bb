"""AWS Signature Version 4 as AWS checks it: the claim a request makes (Authorization header or presigned
query string), its canonical request exactly as botocore builds it, and the checks in AWS's order with
AWS's error codes and messages. Pure logic: the front door (api/auth.py) turns errors into answers;
sign() is the client side, for lambdalet's own CLI.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urlsplit

from lambdalet.credentials import Credentials, CredentialStore

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SHA256 = hashlib.sha256()  # copied, not built: a copy skips OpenSSL's per-hash set-up
EMPTY_SHA256 = _SHA256.hexdigest()
SKEW_S = 300  # AWS's 5 minutes either way
MAX_EXPIRES_S = 604_800  # a presigned URL lives at most a week
_CACHE_MAX = 4096  # entries of each cache below (paths, times, signing keys); a full one starts over
_URIS: dict[str, str] = {}  # raw path -> canonical URI (a warm path repeats its few paths)
_TIMES: dict[str, float | None] = {}  # X-Amz-Date -> seconds (one value a second)
_HEX = frozenset("0123456789abcdef")

MISSING_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
UNRECOGNIZED = "UnrecognizedClientException"
EXPIRED_TOKEN = "ExpiredTokenException"
MISMATCH_MESSAGE = ("The request signature we calculated does not match the signature you provided. Check your "
                    "AWS Secret Access Key and signing method. Consult the service documentation for details.")
INVALID_TOKEN_MESSAGE = "The security token included in the request is invalid."


class SignatureError(Exception):
    """A request AWS would refuse before running it: code and message in AWS's words."""

    def __init__(self, code: str, message: str, canonical: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.canonical = canonical  # (canonical request, string to sign) of a mismatch, for the JSON services


@dataclass(slots=True)
class Claim:
    """What a signed request says about itself, checked up to (not including) its signature."""

    credentials: Credentials
    timestamp: str  # YYYYMMDDTHHMMSSZ
    scope: str  # date/region/service/aws4_request
    signed_headers: str
    signature: str
    presigned: bool
    payload_hash: str | None  # x-amz-content-sha256 when sent, else None: the body's own hash is signed


def canonical_uri(raw_path: str) -> str:
    """The path as botocore signs it for every service but S3: dot segments and empty segments removed,
    then percent-encoded once more (a wire path's %3A is signed as %253A, %24LATEST as %2524LATEST)."""
    uri = _URIS.get(raw_path)
    if uri is None:
        if len(_URIS) >= _CACHE_MAX:
            _URIS.clear()
        uri = _URIS[raw_path] = _canonical_uri(raw_path)
    return uri


def _canonical_uri(raw_path: str) -> str:
    segments = []
    for part in raw_path.split("/"):
        if part == "..":
            if segments:
                segments.pop()
        elif part and part != ".":
            segments.append(part)
    path = "/" + "/".join(segments) if raw_path.startswith("/") else "/".join(segments)
    if raw_path.endswith("/") and segments:
        path += "/"
    return quote((path or "/").encode("latin-1"), safe="/~")


def _uri_encode(value: str) -> str:
    return quote(unquote(value), safe="-_.~")


def canonical_query(query: str, presigned: bool = False) -> str:
    """Every name=value pair URI-encoded (AWS's unreserved characters only) and sorted; a presigned
    request's own X-Amz-Signature is left out."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if presigned and name == "X-Amz-Signature":
            continue
        pairs.append((_uri_encode(name), _uri_encode(value)))
    pairs.sort()
    return "&".join([f"{name}={value}" for name, value in pairs])


def query_params(query: str) -> dict[str, str]:
    """The query's X-Amz-* parameters, decoded (the first of each name)."""
    params: dict[str, str] = {}
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name.startswith("X-Amz-") and name not in params:
            params[name] = unquote(value)
    return params


def canonical_headers(headers: Mapping[str, str], signed: list[str]) -> str:
    """name:value lines of the signed headers, values with runs of whitespace folded to one space."""
    return "".join([f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed])


def canonical_request(method: str, raw_path: str, query: str, headers: Mapping[str, str], signed_headers: str,
                      payload_hash: str, presigned: bool = False) -> str:
    lines = canonical_headers(headers, signed_headers.split(";"))
    return (f"{method}\n{canonical_uri(raw_path)}\n{canonical_query(query, presigned) if query else ''}\n"
            f"{lines}\n{signed_headers}\n{payload_hash}")


def sha256_hex(data: bytes) -> str:
    digest = _SHA256.copy()
    digest.update(data)
    return digest.hexdigest()


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"


def derive_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The signing key: HMAC chain over the date, region, service and 'aws4_request'."""
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, "aws4_request"):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


class _Hmac:
    """HMAC-SHA256 under one key with its two padded-key states hashed once: a message then costs two
    SHA-256 copies (~1 us), where hmac.new/hmac.digest set up OpenSSL's HMAC afresh (~5 us)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:  # (a signing key is 32 bytes: shorter than SHA-256's block)
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key.ljust(64, b"\0")))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key.ljust(64, b"\0")))

    def hexdigest(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


def _amz_time(stamp: str) -> float | None:
    """Seconds since the epoch of an ISO-8601 basic-format UTC time (YYYYMMDDTHHMMSSZ), or None."""
    try:
        return _TIMES[stamp]
    except KeyError:
        if len(_TIMES) >= _CACHE_MAX:
            _TIMES.clear()
        seconds = _TIMES[stamp] = _parse_time(stamp)
        return seconds


def _parse_time(stamp: str) -> float | None:
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z" or not (stamp[:8] + stamp[9:15]).isdigit():
        return None
    try:
        return datetime(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]), int(stamp[11:13]),
                        int(stamp[13:15]), tzinfo=UTC).timestamp()
    except ValueError:
        return None


def _date_mismatch(date: str, timestamp: str) -> str:
    if date == timestamp[:8]:
        return ""
    return ("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{date}' != '{timestamp[:8]}', from '{timestamp}'.")


def _basic(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def sign(method: str, url: str, headers: dict[str, str], body: bytes, key_id: str, secret: str,
         token: str | None, region: str, service: str, now: float | None = None) -> dict[str, str]:
    """headers plus X-Amz-Date, X-Amz-Security-Token (with a token) and Authorization, as botocore signs
    them (the URL's path and query as they go on the wire)."""
    parts = urlsplit(url)
    timestamp = _basic(time.time() if now is None else now)
    out = {**headers, "X-Amz-Date": timestamp}
    if token:
        out["X-Amz-Security-Token"] = token
    lower = {k.lower(): v for k, v in out.items()}
    lower["host"] = parts.netloc
    signed = ";".join(sorted(lower))
    scope = f"{timestamp[:8]}/{region}/{service}/aws4_request"
    canonical = canonical_request(method, parts.path or "/", parts.query, lower, signed,
                                  hashlib.sha256(body).hexdigest())
    key = derive_key(secret, timestamp[:8], region, service)
    signature = _Hmac(key).hexdigest(string_to_sign(timestamp, scope, canonical).encode())
    out["Authorization"] = f"{ALGORITHM} Credential={key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    return out


class Verifier:
    """Checks SigV4 signatures for one region against a CredentialStore; derived keys are cached per
    secret, date and service (a warm call then costs two SHA-256 and one HMAC over short strings)."""

    def __init__(self, store: CredentialStore, region: str, clock=time.time) -> None:
        self.store = store
        self.region = region
        self.clock = clock
        self._keys: dict[tuple[str, str], _Hmac] = {}
        # (Authorization up to its signature, service) -> (key id, date, scope, signed headers), checked
        self._heads: dict[tuple[str, str], tuple[str, str, str, str]] = {}

    # ------------------------------------------------------------------ the claim
    def claim(self, query: str, headers: Mapping[str, str], service: str) -> Claim:
        """Everything but the signature itself, in AWS's order; raises SignatureError."""
        auth = headers.get("authorization")
        if auth is not None and not query:  # the usual call: its Authorization as the last one of the client's
            head, sep, signature = auth.rpartition(" Signature=")
            known = self._heads.get((head, service)) if sep else None
            timestamp = headers.get("x-amz-date")
            if known is not None and timestamp is not None and signature.isalnum():
                self._check_time(timestamp, None)
                return self._finish(known, timestamp, signature, headers.get("x-amz-security-token"), False, headers)
        presigned = "X-Amz-Algorithm=" in query or "X-Amz-Signature=" in query
        if auth is not None and presigned:
            raise SignatureError(INVALID_SIGNATURE, "Found both 'X-Amz-Algorithm' as a query-string param and "
                                                    "'Authorization' as HTTP header.")
        if (auth is None and not presigned) or (auth is not None and not auth.lstrip().startswith("AWS4-")):
            raise SignatureError(MISSING_TOKEN, "")  # (worded by the door: the services differ)
        if auth is not None:
            algorithm, fields, timestamp = self._header_fields(auth, headers)
            token = headers.get("x-amz-security-token")
            expires = None
        else:
            algorithm, fields, timestamp, expires = self._query_fields(query)
            token = fields.get("X-Amz-Security-Token")
        self._check_time(timestamp, expires)
        signed_headers = fields["SignedHeaders"]
        if "host" not in signed_headers.lower().split(";"):
            raise SignatureError(INVALID_SIGNATURE,
                                 "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        if algorithm != ALGORITHM:
            raise SignatureError(INCOMPLETE, f"Unsupported AWS 'algorithm': '{algorithm}' "
                                             f"(only {ALGORITHM} for now). ")
        credential = fields["Credential"]
        parts = credential.rstrip("/").split("/")
        if len(parts) != 5:
            raise SignatureError(INCOMPLETE, "Credential must have exactly 5 slash-delimited elements, "
                                             f"e.g. keyid/date/region/service/term, got '{credential}'")
        key_id, date, region, scope_service, terminator = parts
        problems = []
        if region != self.region:
            problems.append(f"Credential should be scoped to a valid region, not '{region}'. ")
        if scope_service != service:
            problems.append(f"Credential should be scoped to correct service: '{service}'. ")
        if terminator != "aws4_request":
            problems.append(f"Credential should be scoped with a valid terminator: 'aws4_request', not "
                            f"'{terminator}'. ")
        if problems or date != timestamp[:8]:
            raise SignatureError(INVALID_SIGNATURE, ("".join(problems) + _date_mismatch(date, timestamp)).rstrip(" "))
        known = (key_id, date, "/".join(parts[1:]), signed_headers)
        if auth is not None and auth.endswith(f" Signature={fields['Signature']}"):
            if len(self._heads) >= _CACHE_MAX:
                self._heads.clear()
            self._heads[(auth.rpartition(" Signature=")[0], service)] = known
        return self._finish(known, timestamp, fields["Signature"], token, auth is None, headers)

    def _finish(self, known: tuple[str, str, str, str], timestamp: str, signature: str, token: str | None,
                presigned: bool, headers: Mapping[str, str]) -> Claim:
        key_id, date, scope, signed_headers = known
        if date != timestamp[:8]:
            raise SignatureError(INVALID_SIGNATURE, _date_mismatch(date, timestamp))
        creds = self.store.lookup(key_id)
        if creds is None:
            if self.store.revoked(key_id):
                raise SignatureError(EXPIRED_TOKEN, "The security token included in the request is expired")
            raise SignatureError(UNRECOGNIZED, INVALID_TOKEN_MESSAGE)
        if token != creds.session_token:  # temporary credentials need theirs; long-term ones take none
            raise SignatureError(UNRECOGNIZED, INVALID_TOKEN_MESSAGE)
        return Claim(creds, timestamp, scope, signed_headers, signature, presigned,
                     headers.get("x-amz-content-sha256"))

    @staticmethod
    def _header_fields(auth: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str], str]:
        algorithm, _, rest = auth.strip().partition(" ")
        fields: dict[str, str] = {}
        for item in rest.replace(",", " ").split():
            name, eq, value = item.partition("=")
            if not eq:
                raise SignatureError(INCOMPLETE, f"'{item}' not a valid key=value pair (missing equal-sign) in "
                                                 f"Authorization header: '{auth}'.")
            fields[name] = value
        missing = [f"Authorization header requires '{name}' parameter. "
                   for name in ("Credential", "Signature", "SignedHeaders") if not fields.get(name)]
        timestamp = headers.get("x-amz-date")
        if timestamp is None and "date" in headers:
            try:
                timestamp = _basic(parsedate_to_datetime(headers["date"]).timestamp())
            except (TypeError, ValueError, OverflowError):
                timestamp = headers["date"]
        if timestamp is None:
            missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
        if missing:
            raise SignatureError(INCOMPLETE, "".join(missing) + f"Authorization={auth}")
        return algorithm, fields, timestamp  # type: ignore[return-value]

    @staticmethod
    def _query_fields(query: str) -> tuple[str, dict[str, str], str, int]:
        params = query_params(query)
        names = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-SignedHeaders", "X-Amz-Date")
        missing = [f"AWS query-string parameters must include '{name}'. " for name in names if not params.get(name)]
        if missing:
            raise SignatureError(INCOMPLETE, "".join(missing) + "Re-examine the query-string parameters.")
        raw_expires = params.get("X-Amz-Expires", str(MAX_EXPIRES_S))
        if not raw_expires.isdigit():
            raise SignatureError(INCOMPLETE, f"X-Amz-Expires should be a number, got '{raw_expires}'")
        expires = int(raw_expires)
        if expires > MAX_EXPIRES_S:
            raise SignatureError(INCOMPLETE, f"X-Amz-Expires must be less than a week (in seconds) that is "
                                             f"{MAX_EXPIRES_S}")
        fields = {"Credential": params["X-Amz-Credential"], "Signature": params["X-Amz-Signature"],
                  "SignedHeaders": params["X-Amz-SignedHeaders"]}
        if "X-Amz-Security-Token" in params:
            fields["X-Amz-Security-Token"] = params["X-Amz-Security-Token"]
        return params["X-Amz-Algorithm"], fields, params["X-Amz-Date"], expires

    def _check_time(self, timestamp: str, expires: int | None) -> None:
        when = _amz_time(timestamp)
        if when is None:
            raise SignatureError(INCOMPLETE, f"Date must be in ISO-8601 'basic format'. Got '{timestamp}'. "
                                             "See http://en.wikipedia.org/wiki/ISO_8601")
        now = self.clock()
        if expires is not None and now - when > expires:
            raise SignatureError(INVALID_SIGNATURE, f"Signature expired: {timestamp} is now earlier than "
                                                    f"{_basic(now - expires)} ({_basic(now)} - {expires} sec.)")
        if expires is None and when < now - SKEW_S:
            raise SignatureError(INVALID_SIGNATURE, f"Signature expired: {timestamp} is now earlier than "
                                                    f"{_basic(now - SKEW_S)} ({_basic(now)} - 5 min.)")
        if when > now + SKEW_S:
            raise SignatureError(INVALID_SIGNATURE, f"Signature not yet current: {timestamp} is still later than "
                                                    f"{_basic(now + SKEW_S)} ({_basic(now)} + 5 min.)")

    # ------------------------------------------------------------------ the signature
    @staticmethod
    def needs_body(claim: Claim) -> bool:
        """Whether checking the signature takes the body (its SHA-256 is signed)."""
        return claim.payload_hash != UNSIGNED_PAYLOAD

    def check(self, claim: Claim, method: str, raw_path: str, query: str, headers: Mapping[str, str],
              body_hash: str | None) -> Credentials:
        """Verify the signature of a claimed request whose body hashes to body_hash (None: not needed,
        see needs_body); returns whose credentials signed it, or raises SignatureError."""
        payload = claim.payload_hash
        if payload is None:
            payload = body_hash or EMPTY_SHA256
        elif payload != UNSIGNED_PAYLOAD and payload != body_hash:
            if len(payload) != 64 or not _HEX.issuperset(payload):
                raise SignatureError(INVALID_SIGNATURE, f"x-amz-content-sha256 must be UNSIGNED-PAYLOAD, or a "
                                                        f"valid sha256 value, got '{payload}'.")
            raise SignatureError(INVALID_SIGNATURE, "The provided 'x-amz-content-sha256' header does not match "
                                                    "what was computed.")
        canonical = canonical_request(method, raw_path, query, headers, claim.signed_headers, payload,
                                      claim.presigned)
        to_sign = string_to_sign(claim.timestamp, claim.scope, canonical)
        secret = claim.credentials.secret_access_key
        cache_key = (secret, claim.scope)
        signer = self._keys.get(cache_key)
        if signer is None:
            date, region, service, _ = claim.scope.split("/")
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            signer = self._keys[cache_key] = _Hmac(derive_key(secret, date, region, service))
        expected = signer.hexdigest(to_sign.encode("utf-8"))
        if not hmac.compare_digest(expected, claim.signature):
            raise SignatureError(INVALID_SIGNATURE, MISMATCH_MESSAGE, (canonical, to_sign))
        return claim.credentials
