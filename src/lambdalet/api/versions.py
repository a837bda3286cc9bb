"""PublishVersion, ListVersionsByFunction and the alias operations of the Lambda API."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from lambdalet.api import validation as v
from lambdalet.api.code_upload import read_json
from lambdalet.api.errors import AwsError, conflict, invalid, not_found, validation
from lambdalet.api.functions import FunctionManager, listed
from lambdalet.api.rest import query_params, send_json
from lambdalet.http11 import Request, Response
from lambdalet.store import AliasRecord, FunctionRecord

_FN = r"^/2015-03-31/functions/(?P<name>[^/]+)"
VERSION_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(_FN + r"/versions/?$"), "versions.publish"),
    ("GET", re.compile(_FN + r"/versions/?$"), "versions.list_versions"),
    ("POST", re.compile(_FN + r"/aliases/?$"), "versions.create_alias"),
    ("GET", re.compile(_FN + r"/aliases/?$"), "versions.list_aliases"),
    ("GET", re.compile(_FN + r"/aliases/(?P<alias>[^/]+)/?$"), "versions.get_alias"),
    ("PUT", re.compile(_FN + r"/aliases/(?P<alias>[^/]+)/?$"), "versions.update_alias"),
    ("DELETE", re.compile(_FN + r"/aliases/(?P<alias>[^/]+)/?$"), "versions.delete_alias"),
]
_PAGE = 50  # the most items a List* page holds when MaxItems asks for more






def _weights_shown(weights: dict[Any, Any]) -> str:
    """A map as AWS's messages print it: {2=0.5}."""
    return "{" + ", ".join(f"{k}={val}" for k, val in weights.items()) + "}"


def _page(items: list[tuple[Any, Any]], query: dict[str, str]) -> tuple[list[Any], Any | None]:
    """One page of (key, item) pairs sorted by key, after the Marker's key; and the next marker."""
    errors = v.max_items_errors(query.get("MaxItems"))
    if errors:
        raise validation(errors)
    limit = min(int(query.get("MaxItems", _PAGE)), _PAGE)
    marker = query.get("Marker")
    if marker:
        keys = [str(k) for k, _ in items]
        items = items[keys.index(marker) + 1:] if marker in keys else []
    page = items[:limit]
    return [item for _, item in page], (str(page[-1][0]) if len(items) > limit else None)


class VersionsApi:
    """Handlers for the version and alias operations (registered in lambda_api's route table)."""

    def __init__(self, functions: FunctionManager, on_change: Callable[[FunctionRecord], None],
                 on_delete: Callable[[str, str], None]) -> None:
        self.functions = functions
        self.on_change = on_change  # told when an alias changes (provisioned concurrency follows aliases)
        self.on_delete = on_delete  # told (function, alias) when an alias is deleted, for what hangs on it

    # -- versions
    async def publish(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.locate(name)
        body = await read_json(req, "PublishVersion")
        errors: list[str] = []
        v.check_string(errors, body.get("Description"), "description", max_len=256)
        for key in ("CodeSha256", "RevisionId"):
            v.check_string(errors, body.get(key), key[0].lower() + key[1:])
        if errors:
            raise validation(errors)
        cfg = self.functions.publish(rec, body.get("Description"), body.get("CodeSha256"), body.get("RevisionId"))
        send_json(resp, 201, cfg, rid)

    async def list_versions(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.locate(name, pattern=v.NAMESPACED_FUNCTION_NAME)
        latest = {**rec.config, "FunctionArn": rec.config["FunctionArn"] + ":$LATEST"}
        items = [("$LATEST", listed(latest))]
        items += [(ver.version, listed(ver.config)) for ver in self.functions.versions.versions(rec.name)]
        page, marker = _page(items, query_params(req))
        doc: dict[str, Any] = {"Versions": page}
        if marker is not None:
            doc["NextMarker"] = marker
        send_json(resp, 200, doc, rid)

    # -- aliases
    def _alias(self, rec: FunctionRecord, alias: str) -> AliasRecord:
        errors: list[str] = []
        v.check_string(errors, alias, "name", v.ALIAS, 128, required=True)
        if errors:
            raise validation(errors)
        found = self.functions.versions.alias(rec.name, alias)
        if found is None:
            raise not_found(f"Cannot find alias arn: {rec.config['FunctionArn']}:{alias}")
        return found

    @staticmethod
    def _check_alias_body(body: dict[str, Any], *, creating: bool) -> None:
        """The model's constraints on an alias request, every broken one named (see _check_versions)."""
        errors: list[str] = []
        if creating:
            v.check_string(errors, body.get("Name"), "name", v.ALIAS, 128, required=True)
        v.check_string(errors, body.get("FunctionVersion"), "functionVersion", v.ALIAS_VERSION, 1024,
                       required=creating)
        v.check_string(errors, body.get("Description"), "description", max_len=256)
        routing = body.get("RoutingConfig")
        weights = routing.get("AdditionalVersionWeights") if isinstance(routing, dict) else None
        if routing is not None and (not isinstance(routing, dict) or not isinstance(weights, dict | None)):
            errors.append(f"Value {v.shown(routing)} at 'routingConfig' failed to satisfy constraint: Member must "
                          "be a structure with an AdditionalVersionWeights map")
            weights = None
        for key, weight in (weights or {}).items():
            if not isinstance(weight, int | float) or isinstance(weight, bool) or not 0.0 <= weight <= 1.0:
                errors.append(f"Value '{_weights_shown(weights)}' at 'routingConfig.additionalVersionWeights' "
                              "failed to satisfy constraint: Map value must satisfy constraint: [Member must have "
                              "value less than or equal to 1.0, Member must have value greater than or equal to "
                              "0.0, Member must not be null]")
            if not v.matches(key, r"[0-9]+") or len(key) > 1024:
                errors.append(f"Value '{_weights_shown(weights)}' at 'routingConfig.additionalVersionWeights' "
                              "failed to satisfy constraint: Map keys must satisfy constraint: [Member must have "
                              "length less than or equal to 1024, Member must have length greater than or equal "
                              "to 1, Member must satisfy regular expression pattern: [0-9]+, Member must not be "
                              "null]")
        if errors:
            raise validation(errors)

    def _check_versions(self, rec: FunctionRecord, version: str, weights: dict[str, float] | None) -> None:
        self._version_exists(rec, version)
        if not weights:
            return
        if len(weights) > 1:
            raise invalid("Number of items in AdditionalVersionWeights cannot be greater than 1")
        for key in weights:
            if key == version:
                raise invalid(f"Invalid function version {version}. Function version {version} is already "
                              "included in routing configuration.")
            if version == "$LATEST":
                raise invalid("$LATEST is not supported for an alias pointing to more than 1 version")
            self._version_exists(rec, key)

    def _version_exists(self, rec: FunctionRecord, version: str) -> None:
        if version != "$LATEST" and self.functions.versions.version(rec.name, version) is None:
            raise not_found(f"Function not found: {rec.config['FunctionArn']}:{version}")

    async def create_alias(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.locate(name)
        body = await read_json(req, "CreateAlias")
        self._check_alias_body(body, creating=True)
        alias_name, version = body["Name"], body["FunctionVersion"]
        weights = (body.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or None
        arn = f"{rec.config['FunctionArn']}:{alias_name}"
        self._check_versions(rec, version, weights)
        if self.functions.versions.alias(rec.name, alias_name) is not None:
            raise conflict(f"Alias already exists: {arn}")
        cfg: dict[str, Any] = {"AliasArn": arn, "Name": alias_name, "FunctionVersion": version,
                               "Description": body.get("Description") or "", "RevisionId": str(uuid.uuid4())}
        if weights:
            cfg["RoutingConfig"] = {"AdditionalVersionWeights": dict(weights)}
        alias = AliasRecord(rec.name, alias_name, cfg)
        self.functions.versions.save_alias(alias)
        send_json(resp, 201, alias.config, rid)

    async def get_alias(self, req: Request, resp: Response, rid: str, name: str, alias: str) -> None:
        rec, _ = self.functions.locate(name)
        send_json(resp, 200, self._alias(rec, alias).config, rid)

    async def update_alias(self, req: Request, resp: Response, rid: str, name: str, alias: str) -> None:
        rec, _ = self.functions.locate(name)
        found = self._alias(rec, alias)
        body = await read_json(req, "UpdateAlias")
        self._check_alias_body(body, creating=False)
        wanted = body.get("RevisionId")
        if wanted is not None and wanted != found.config["RevisionId"]:
            raise AwsError(412, "PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. Call the "
                           "GetFunction/GetAlias API to retrieve the latest Revision Id")
        cfg = dict(found.config)
        if body.get("FunctionVersion") is not None:
            cfg["FunctionVersion"] = body["FunctionVersion"]
        if body.get("Description") is not None:
            cfg["Description"] = body["Description"]
        if body.get("RoutingConfig") is not None:
            weights = body["RoutingConfig"].get("AdditionalVersionWeights")
            cfg.pop("RoutingConfig", None)
            if weights:
                cfg["RoutingConfig"] = {"AdditionalVersionWeights": dict(weights)}
        self._check_versions(rec, cfg["FunctionVersion"],
                             (cfg.get("RoutingConfig") or {}).get("AdditionalVersionWeights"))
        cfg["RevisionId"] = str(uuid.uuid4())
        found.config = cfg
        self.functions.versions.save_alias(found)
        self.on_change(rec)
        send_json(resp, 200, found.config, rid)

    async def delete_alias(self, req: Request, resp: Response, rid: str, name: str, alias: str) -> None:
        rec, _ = self.functions.locate(name)
        self._alias(rec, alias)
        self.functions.delete_alias(rec, alias)  # (its function URL and resource policy go with it)
        self.on_delete(rec.name, alias)
        self.on_change(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def list_aliases(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.locate(name)
        query = query_params(req)
        version = query.get("FunctionVersion")
        errors: list[str] = []
        v.check_string(errors, version, "functionVersion", v.ALIAS_VERSION, 1024)
        if errors:
            raise validation(errors)
        items = [(a.name, a.config) for a in self.functions.versions.aliases(rec.name)
                 if version is None or a.config["FunctionVersion"] == version]
        page, marker = _page(items, query)
        doc: dict[str, Any] = {"Aliases": page}
        if marker is not None:
            doc["NextMarker"] = marker
        send_json(resp, 200, doc, rid)
