"""Lambda layers: the layer operations of the Lambda API, and a function's Layers (validated, and
merged into the /opt its environments see, once per distinct list of layers)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import unquote

from lambdalet.api.code_upload import child_env, read_json, receive_code
from lambdalet.api.errors import AwsError, conflict, invalid, not_found, service_error, validation
from lambdalet.api.functions import now_iso
from lambdalet.api.rest import query_params, send_json
from lambdalet.api.validation import pattern_error
from lambdalet.http11 import Request, Response
from lambdalet.limits import MAX_UNZIPPED
from lambdalet.store import CodeStore
from lambdalet.store.layers import LayerStore, LayerVersion
from lambdalet.store.opt_merge import sweep

MAX_FUNCTION_LAYERS = 5
_REGION = r"(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}"
_LAYER_NAME_TEXT = (r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
                    r":layer:[a-zA-Z0-9-_]{1,140}|[a-zA-Z0-9-_]{1,140})")
_LAYER_NAME = re.compile(rf"^(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):layer:"
                         r"(?P<arn_name>[a-zA-Z0-9-_]{1,140})|(?P<name>[a-zA-Z0-9-_]{1,140}))$")
_VERSION_ARN_TEXT = (r"(arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
                     r":layer:[a-zA-Z0-9-_]+:[0-9]+)|(arn:[a-zA-Z0-9-]+:lambda:::awslayer:[a-zA-Z0-9-_]+)")
_VERSION_ARN = re.compile(rf"^arn:aws[a-zA-Z-]*:lambda:(?P<region>{_REGION}):(?P<account>\d{{12}}):layer:"
                          r"(?P<name>[a-zA-Z0-9-_]+):(?P<version>[0-9]+)$")
_BY_ARN_TEXT = (r"arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}"
                r":layer:[a-zA-Z0-9-_]+:[0-9]+")
RUNTIMES = (
    "nodejs", "nodejs4.3", "nodejs6.10", "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x",
    "nodejs18.x", "nodejs20.x", "nodejs22.x", "nodejs24.x", "java8", "java8.al2", "java11", "java17", "java21",
    "java25", "python2.7", "python3.6", "python3.7", "python3.8", "python3.9", "python3.10", "python3.11",
    "python3.12", "python3.13", "python3.14", "dotnetcore1.0", "dotnetcore2.0", "dotnetcore2.1", "dotnetcore3.1",
    "dotnet6", "dotnet8", "dotnet10", "nodejs4.3-edge", "go1.x", "ruby2.5", "ruby2.7", "ruby3.2", "ruby3.3",
    "ruby3.4", "ruby4.0", "provided", "provided.al2", "provided.al2023", "nodejs26.x", "python3.15",
    "java8.al2023", "java11.al2023", "java17.al2023", "custom",
)
ARCHITECTURES = ("x86_64", "arm64")
_LAYER_PRINCIPAL = re.compile(r"^(\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root)$")
_STATEMENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,100}$")
_ORGANIZATION_ID = re.compile(r"^o-[a-z0-9]{10,32}$")


def _enum_problem(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    return (f"Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: "
            f"[{', '.join(allowed)}]")


def _list_problems(values: Any, field: str, allowed: tuple[str, ...], most: int) -> list[str]:
    """Problems of a list of enum values (CompatibleRuntimes / CompatibleArchitectures)."""
    if values is None:
        return []
    if not isinstance(values, list):
        return [f"Value '{values}' at '{field}' failed to satisfy constraint: Member must be a list"]
    problems = []
    if any(v not in allowed for v in values):
        text = "[" + ", ".join(str(v) for v in values) + "]"
        problems.append(f"Value '{text}' at '{field}' failed to satisfy constraint: Member must satisfy "
                        f"constraint: [Member must satisfy enum value set: [{', '.join(allowed)}]]")
    if len(values) > most:
        problems.append(f"Value '{values}' at '{field}' failed to satisfy constraint: Member must have length "
                        f"less than or equal to {most}")
    return problems






def _max_items(q: dict[str, str]) -> int:
    raw = q.get("MaxItems", "50")
    try:
        value = int(raw)
    except ValueError:
        raise validation([f"Value '{raw}' at 'maxItems' failed to satisfy constraint: Member must be an "
                                "integer"]) from None
    if not 1 <= value <= 50:
        bound = "greater than or equal to 1" if value < 1 else "less than or equal to 50"
        raise validation([f"Value '{value}' at 'maxItems' failed to satisfy constraint: Member must "
                                f"have value {bound}"])
    return value


def _version_number(raw: str) -> int:
    try:
        return _long(int(raw))
    except ValueError:
        raise validation([f"Value '{raw}' at 'versionNumber' failed to satisfy constraint: Member must "
                                "be a number"]) from None


def _long(value: int) -> int:
    """value within a long (a version number beyond one names no version, and SQLite takes no more)."""
    return max(min(value, (1 << 63) - 1), -(1 << 63))


class LayersApi:
    """PublishLayerVersion, Get/List/DeleteLayerVersion(s), ListLayers and the layer version policy."""

    def __init__(self, store: LayerStore, code: CodeStore, region: str, account: str) -> None:
        self.store = store
        self.code = code
        self.region = region
        self.account = account

    def total_size(self) -> int:
        """Bytes of the layer versions' zips, as the account's code storage counts them."""
        return self.store.total_size()

    def layer_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:layer:{name}"

    def _name(self, raw: str) -> str:
        """The layer name of a LayerName path parameter (a name or a layer ARN)."""
        raw = unquote(raw)
        m = _LAYER_NAME.match(raw)
        if m is None:
            raise validation([pattern_error(raw, "layerName", _LAYER_NAME_TEXT)])
        return m.group("arn_name") or m.group("name")

    def _location(self, req: Request, sha: str) -> str:
        return f"http://{req.headers.get('host', '127.0.0.1')}/lambdalet/code/{sha}.zip"

    def _doc(self, req: Request, layer: LayerVersion) -> dict[str, Any]:
        doc = dict(layer.doc)
        doc["Content"] = {"Location": self._location(req, layer.code_sha), **doc["Content"]}
        return doc

    @staticmethod
    def _item(layer: LayerVersion) -> dict[str, Any]:
        """A LayerVersionsListItem."""
        return {k: v for k, v in layer.doc.items() if k not in ("Content", "LayerArn")}

    def _found(self, name: str, version: int) -> LayerVersion:
        if version < 1:
            raise invalid("Layer Version Cannot be less than 1")
        layer = self.store.get(name, version)
        if layer is None:
            raise not_found("The resource you requested does not exist.")
        return layer

    def _for_policy(self, raw: str, version_raw: str) -> LayerVersion:
        name = self._name(raw)
        version = _version_number(version_raw)
        layer = self.store.get(name, version)
        if layer is None:
            raise not_found(f"Layer version {self.layer_arn(name)}:{version} does not exist.")
        return layer

    async def publish(self, req: Request, resp: Response, rid: str, name: str) -> None:
        name = self._name(name)
        upload = await receive_code(req, self.code, "PublishLayerVersion")
        try:
            body = upload.doc
            problems = _list_problems(body.get("CompatibleRuntimes"), "compatibleRuntimes", RUNTIMES, 15)
            problems += _list_problems(body.get("CompatibleArchitectures"), "compatibleArchitectures",
                                       ARCHITECTURES, 2)
            description = body.get("Description", "")
            if not isinstance(description, str) or len(description) > 256:
                problems.append(f"Value '{description}' at 'description' failed to satisfy constraint: Member "
                                "must have length less than or equal to 256")
            license_info = body.get("LicenseInfo")
            if license_info is not None and (not isinstance(license_info, str) or len(license_info) > 512):
                problems.append(f"Value '{license_info}' at 'licenseInfo' failed to satisfy constraint: Member "
                                "must have length less than or equal to 512")
            if problems:
                raise validation(problems)
            content = body.get("Content")
            if not upload.has_zip:
                if isinstance(content, dict) and content.get("S3Bucket"):
                    raise invalid("Error occurred while GetObject. S3 Error Code: NoSuchBucket. S3 Error Message: "
                                  "The specified bucket does not exist")
                raise invalid("Please provide a source for function code.")
            stored = await upload.store()
        finally:
            upload.close()

        def make_doc(version: int) -> dict[str, Any]:
            doc: dict[str, Any] = {
                "Content": {"CodeSha256": stored.sha256_b64, "CodeSize": stored.size},
                "LayerArn": self.layer_arn(name), "LayerVersionArn": f"{self.layer_arn(name)}:{version}",
                "Description": description, "CreatedDate": now_iso(), "Version": version,
            }
            for key in ("CompatibleRuntimes", "LicenseInfo", "CompatibleArchitectures"):
                if body.get(key) is not None:
                    doc[key] = body[key]
            return doc

        send_json(resp, 201, self._doc(req, self.store.publish(name, make_doc, stored.sha_hex)), rid)

    async def get_version(self, req: Request, resp: Response, rid: str, name: str, version: str) -> None:
        send_json(resp, 200, self._doc(req, self._found(self._name(name), _version_number(version))), rid)

    async def layers(self, req: Request, resp: Response, rid: str) -> None:
        """GET /layers: ListLayers, or GetLayerVersionByArn with ?find=LayerVersion."""
        q = query_params(req)
        if q.get("find") == "LayerVersion":
            arn = q.get("Arn", "")
            m = _VERSION_ARN.match(arn)
            if m is None:
                raise validation([pattern_error(arn, "arn", _BY_ARN_TEXT)])
            layer = None
            if m.group("region") == self.region and m.group("account") == self.account:
                layer = self.store.get(m.group("name"), _long(int(m.group("version"))))
            if layer is None:
                raise not_found("The resource you requested does not exist.")
            send_json(resp, 200, self._doc(req, layer), rid)
            return
        runtime, arch = self._filters(q)
        max_items = _max_items(q)
        items = []
        for layer_name in self.store.names():
            if q.get("Marker") and layer_name <= q["Marker"]:
                continue
            latest = next((v for v in self.store.versions(layer_name) if _matches(v, runtime, arch)), None)
            if latest is not None:
                items.append({"LayerName": layer_name, "LayerArn": self.layer_arn(layer_name),
                              "LatestMatchingVersion": self._item(latest)})
        doc: dict[str, Any] = {"Layers": items[:max_items]}
        if len(items) > max_items:
            doc["NextMarker"] = items[max_items - 1]["LayerName"]
        send_json(resp, 200, doc, rid)

    @staticmethod
    def _filters(q: dict[str, str]) -> tuple[str | None, str | None]:
        runtime, arch = q.get("CompatibleRuntime"), q.get("CompatibleArchitecture")
        problems = []
        if runtime is not None and runtime not in RUNTIMES:
            problems.append(_enum_problem(runtime, "compatibleRuntime", RUNTIMES))
        if arch is not None and arch not in ARCHITECTURES:
            problems.append(_enum_problem(arch, "compatibleArchitecture", ARCHITECTURES))
        if problems:
            raise validation(problems)
        return runtime, arch

    async def list_versions(self, req: Request, resp: Response, rid: str, name: str) -> None:
        name = self._name(name)
        q = query_params(req)
        runtime, arch = self._filters(q)
        max_items = _max_items(q)
        versions = [v for v in self.store.versions(name) if _matches(v, runtime, arch)]
        marker = q.get("Marker")
        if marker:
            versions = [v for v in versions if marker.isdigit() and v.version < int(marker)]
        doc: dict[str, Any] = {"LayerVersions": [self._item(v) for v in versions[:max_items]]}
        if len(versions) > max_items:
            doc["NextMarker"] = str(versions[max_items - 1].version)
        send_json(resp, 200, doc, rid)

    async def delete_version(self, req: Request, resp: Response, rid: str, name: str, version: str) -> None:
        name, number = self._name(name), _version_number(version)
        if number < 1:
            raise invalid("Layer Version Cannot be less than 1")
        self.store.delete(name, number)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    # -- the layer version's resource policy
    async def add_permission(self, req: Request, resp: Response, rid: str, name: str, version: str) -> None:
        body = await read_json(req, "AddLayerVersionPermission")
        sid, action, principal = body.get("StatementId"), body.get("Action"), body.get("Principal")
        org = body.get("OrganizationId")
        problems = []
        if not isinstance(sid, str) or not _STATEMENT_ID.match(sid):
            problems.append(pattern_error(sid, "statementId", "([a-zA-Z0-9-_]+)"))
        if action != "lambda:GetLayerVersion":
            problems.append(pattern_error(action, "action", "lambda:GetLayerVersion"))
        if not isinstance(principal, str) or not _LAYER_PRINCIPAL.match(principal):
            problems.append(pattern_error(principal, "principal", r"\d{12}|\*|arn:(aws[a-zA-Z-]*):iam::\d{12}:root"))
        if org is not None and (not isinstance(org, str) or not _ORGANIZATION_ID.match(org)):
            problems.append(pattern_error(org, "organizationId", "o-[a-z0-9]{10,32}"))
        if problems:
            raise validation(problems)
        layer = self._for_policy(name, version)
        policy = layer.policy or {"RevisionId": "", "Statement": []}
        if any(s["Sid"] == sid for s in policy["Statement"]):
            raise conflict(f"The statement id ({sid}) provided already exists. Please provide a new statement id, "
                           "or remove the existing statement.")
        self._check_revision(policy, query_params(req).get("RevisionId"))
        statement: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Principal": _layer_principal(principal),
                                     "Action": action, "Resource": layer.doc["LayerVersionArn"]}
        if org:
            statement["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": org}}
        policy = {"RevisionId": str(uuid.uuid4()), "Statement": [*policy["Statement"], statement]}
        self.store.set_policy(layer.name, layer.version, policy)
        send_json(resp, 201, {"Statement": _compact(statement), "RevisionId": policy["RevisionId"]}, rid)

    @staticmethod
    def _check_revision(policy: dict[str, Any], wanted: str | None) -> None:
        if wanted and wanted != policy["RevisionId"]:
            raise AwsError(412, "PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. Call the "
                           "GetLayerPolicy API to retrieve the latest Revision Id")

    async def remove_permission(self, req: Request, resp: Response, rid: str, name: str, version: str,
                                sid: str) -> None:
        layer = self._for_policy(name, version)
        sid = unquote(sid)
        policy = layer.policy or {"RevisionId": "", "Statement": []}
        self._check_revision(policy, query_params(req).get("RevisionId"))
        kept = [s for s in policy["Statement"] if s["Sid"] != sid]
        if len(kept) == len(policy["Statement"]):
            raise not_found(f"Statement {sid} is not found in resource policy.")
        self.store.set_policy(layer.name, layer.version,
                              {"RevisionId": str(uuid.uuid4()), "Statement": kept} if kept else None)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def get_policy(self, req: Request, resp: Response, rid: str, name: str, version: str) -> None:
        layer = self._for_policy(name, version)
        if not layer.policy:
            raise not_found("No policy is associated with the given resource.")
        document = {"Version": "2012-10-17", "Id": "default", "Statement": layer.policy["Statement"]}
        send_json(resp, 200, {"Policy": _compact(document), "RevisionId": layer.policy["RevisionId"]}, rid)


def _matches(layer: LayerVersion, runtime: str | None, arch: str | None) -> bool:
    return (runtime is None or runtime in (layer.doc.get("CompatibleRuntimes") or ())) and \
        (arch is None or arch in (layer.doc.get("CompatibleArchitectures") or ()))


def _layer_principal(principal: str) -> Any:
    if principal == "*":
        return "*"
    return {"AWS": f"arn:aws:iam::{principal}:root" if principal.isdigit() else principal}


def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


class FunctionLayers:
    """A function's Layers: checked as Lambda checks them, and merged into an /opt directory that is
    built once per distinct list of layer zips (off the loop, in a child) and kept under opt_root."""

    def __init__(self, store: LayerStore, opt_root: str, empty_opt: str, region: str, account: str) -> None:
        self.store = store
        self.opt_root = opt_root
        self.empty_opt = empty_opt
        self.region = region
        self.account = account
        os.makedirs(opt_root, exist_ok=True)
        sweep(opt_root)

    def resolve(self, value: Any) -> list[LayerVersion]:
        """The layer versions of a CreateFunction / UpdateFunctionConfiguration Layers list."""
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise invalid("Layers must be a list of layer version ARNs.")
        if len(value) > MAX_FUNCTION_LAYERS:
            raise invalid("Cannot reference more than 5 layers.")
        bad = [a for a in value if not _VERSION_ARN.match(a) or len(a) > 2048]
        if bad:
            raise validation([
                f"Value '[{', '.join(value)}]' at 'layers' failed to satisfy constraint: Member must satisfy "
                "constraint: [Member must have length less than or equal to 2048, Member must have length "
                "greater than or equal to 1, Member must satisfy regular expression pattern: "
                f"{_VERSION_ARN_TEXT}, Member must not be null]"])
        found: list[LayerVersion] = []
        seen: dict[str, str] = {}
        for arn in value:
            m = _VERSION_ARN.match(arn)
            assert m is not None
            if m.group("account") != self.account:
                raise AwsError(403, "AccessDeniedException",
                               f"User: arn:aws:iam::{self.account}:root is not authorized to perform: "
                               f"lambda:GetLayerVersion on resource: {arn} because no resource-based policy "
                               "allows the lambda:GetLayerVersion action")
            if m.group("region") != self.region:
                raise invalid("Layers are not in the same region as the function. Layers are expected to be in "
                              f"region {self.region}.")
            layer = self.store.get(m.group("name"), _long(int(m.group("version"))))
            if layer is None:
                raise invalid(f"Layer version {arn} does not exist.")
            unversioned = arn.rpartition(":")[0]
            if unversioned in seen:
                raise invalid("Two different versions of the same layer are not allowed to be referenced in the "
                              f"same function. {seen[unversioned]} and {arn} are versions of the same layer.")
            seen[unversioned] = arn
            found.append(layer)
        return found

    def in_config(self, cfg: dict[str, Any]) -> list[LayerVersion]:
        """The layer versions a configuration holds (deleted ones included: the function keeps them)."""
        found = []
        for entry in cfg.get("Layers") or ():
            m = _VERSION_ARN.match(entry["Arn"])
            layer = self.store.get(m.group("name"), _long(int(m.group("version"))), deleted=True) if m else None
            if layer is not None:
                found.append(layer)
        return found

    @staticmethod
    def describe(layers: list[LayerVersion]) -> list[dict[str, Any]]:
        """FunctionConfiguration's Layers."""
        return [{"Arn": v.doc["LayerVersionArn"], "CodeSize": v.doc["Content"]["CodeSize"]} for v in layers]

    def opt_dir(self, layers: list[LayerVersion]) -> str:
        if not layers:
            return self.empty_opt
        key = hashlib.sha256("\n".join(v.code_sha for v in layers).encode()).hexdigest()
        return os.path.join(self.opt_root, key)

    async def prepare(self, layers: list[LayerVersion], task_root: str, code: CodeStore) -> None:
        """Check the function's code and layers together against Lambda's unzipped limit and build
        their /opt (a no-op when it exists); raises AwsError in Lambda's terms."""
        if not layers:
            return
        request = {"dest": self.opt_dir(layers), "layers": [code.task_root(v.code_sha) for v in layers],
                   "task_root": task_root, "limit": MAX_UNZIPPED}
        answer = await _run_merge(request)
        if answer.get("error") == "too_large":
            raise invalid("Function code combined with layers exceeds the maximum allowed size of "
                          f"{MAX_UNZIPPED} bytes. The actual size is {answer['size']} bytes.")
        if "error" in answer:
            raise service_error(f"An internal error occurred: {answer.get('message', 'layer merge failed')}")


async def _run_merge(request: dict[str, Any]) -> dict[str, Any]:
    """Run lambdalet.store.opt_merge in a child (spawned with vfork, as code_upload's children)."""
    proc = subprocess.Popen([sys.executable, "-P", "-S", "-m", "lambdalet.store.opt_merge", json.dumps(request)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=child_env(), close_fds=True)
    try:
        while proc.poll() is None:
            await asyncio.sleep(0.01)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    out = proc.stdout.read() if proc.stdout else b""
    if proc.stdout:
        proc.stdout.close()
    try:
        answer = json.loads(out)
    except ValueError:
        return {"error": "failed", "message": "the layer merger exited"}
    return answer if isinstance(answer, dict) else {"error": "failed", "message": "the layer merger answered garbage"}
