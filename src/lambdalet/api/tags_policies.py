"""Tags (TagResource / UntagResource / ListTags) and resource-based policies (AddPermission /
RemovePermission / GetPolicy) of functions, in AWS's shapes and words."""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from lambdalet.api.code_upload import read_json
from lambdalet.api.errors import AwsError, conflict, invalid, not_found, validation
from lambdalet.api.rest import send_json
from lambdalet.api.validation import check_tags, pattern_error
from lambdalet.http11 import Request, Response
from lambdalet.store.policies import PolicyStore

if TYPE_CHECKING:
    from lambdalet.api.functions import FunctionManager
    from lambdalet.store import FunctionRecord

_TAGGABLE_TEXT = (r"arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                  r"(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|code-signing-config:csc-[a-z0-9]{17}|"
                  r"event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                  r"[0-9a-fA-F]{12}|(capacity-provider|network-connector):[a-zA-Z0-9-_]{1,64})")
_FUNCTION_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                           r"function:[a-zA-Z0-9-_]+(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9-_]+))?$")
_STATEMENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,100}$")
_NAMESPACED_STATEMENT_ID = re.compile(r"^[a-zA-Z0-9-_.]{1,100}$")
_ACTION = re.compile(r"^(lambda:[*]|lambda:[a-zA-Z]+|[*])$")
_SOURCE_ACCOUNT = re.compile(r"^\d{12}$")
_ORG_ID = re.compile(r"^o-[a-z0-9]{10,32}$")
_ARN = re.compile(r"^arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:"
                  r"(\d{12})?:(.*)$")
_EVENT_SOURCE_TOKEN = re.compile(r"^[a-zA-Z0-9._\-]+$")
_QUALIFIER = re.compile(r"^(|[a-zA-Z0-9$_-]+)$")
_QUALIFIER_TEXT = r"(|[a-zA-Z0-9$_-]+)"




def _compact(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def _principal(principal: str) -> Any:
    """The statement's Principal as AWS writes it: "*", {"Service": host} or {"AWS": arn}."""
    if principal == "*":
        return "*"
    if _SOURCE_ACCOUNT.match(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:aws") and ":iam::" in principal:
        return {"AWS": principal}
    if "." in principal and ":" not in principal and "/" not in principal:
        return {"Service": principal}
    raise invalid("The provided principal was invalid. Please check the principal and try again.")


class TagsPoliciesApi:
    """Tag and policy operations on functions (policies per qualifier: the function, a version, an alias)."""

    def __init__(self, functions: FunctionManager, store: PolicyStore) -> None:
        self.functions = functions
        self.store = store

    # -- tags
    def _tagged(self, resource: str) -> FunctionRecord:
        m = _FUNCTION_ARN.match(resource)
        if m is None:
            raise validation([pattern_error(resource, "resource", _TAGGABLE_TEXT)])
        if m.group("qualifier"):
            raise invalid("Tagging operations are permitted on Lambda functions only. Tags on aliases and versions "
                          "are not supported. Please specify either a function name or a function ARN.")
        rec, _ = self.functions.get(resource)
        return rec

    def _touch(self, rec: FunctionRecord) -> None:
        """A change of a function's tags or policy gives it a new RevisionId, as on Lambda."""
        rec.config = {**rec.config, "RevisionId": str(uuid.uuid4())}
        self.functions.store.save(rec)

    async def tag(self, req: Request, resp: Response, rid: str, resource: str) -> None:
        rec = self._tagged(resource)
        tags = (await read_json(req, "TagResource")).get("Tags")
        if not tags:
            raise invalid("An error occurred and the request cannot be processed.")
        current = self.store.tags(rec.name)
        self.store.set_tags(rec.name, {**current, **check_tags(tags, current)})
        self._touch(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def untag(self, req: Request, resp: Response, rid: str, resource: str) -> None:
        rec = self._tagged(resource)
        keys = set(parse_qs(req.query or "", keep_blank_values=True).get("tagKeys", []))
        current = self.store.tags(rec.name)
        self.store.set_tags(rec.name, {k: v for k, v in current.items() if k not in keys})
        self._touch(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def list_tags(self, req: Request, resp: Response, rid: str, resource: str) -> None:
        rec = self._tagged(resource)
        send_json(resp, 200, {"Tags": self.store.tags(rec.name)}, rid)

    # -- resource-based policy
    def _target(self, req: Request, name: str) -> tuple[FunctionRecord, str | None]:
        """The function and qualifier a policy request is about (Qualifier= or name:qualifier)."""
        rec, _ = self.functions.get(_unqualified(name))
        named = named_qualifier(name)
        qualifier = parse_qs(req.query or "", keep_blank_values=True).get("Qualifier", [named])[-1]
        if qualifier and named and qualifier != named:
            raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
        if qualifier is not None and not _QUALIFIER.match(qualifier):
            raise validation([pattern_error(qualifier, "qualifier", _QUALIFIER_TEXT)])
        qualifier = qualifier or None
        if not self.functions.qualifier_exists(rec, qualifier):
            raise not_found(f"Function not found: {rec.config['FunctionArn']}:{qualifier}")
        return rec, qualifier

    def _check_revision(self, rec: FunctionRecord, wanted: Any) -> None:
        if wanted and wanted != rec.config["RevisionId"]:
            raise AwsError(412, "PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. Call the "
                           "GetFunction/GetAlias API to retrieve the latest Revision Id")

    async def add_permission(self, req: Request, resp: Response, rid: str, name: str) -> None:
        body = await read_json(req, "AddPermission")
        problems = _permission_problems(body)
        if problems:
            raise validation(problems)
        rec, qualifier = self._target(req, name)
        if qualifier == "$LATEST":
            raise invalid("We currently do not support adding policies for $LATEST.")
        self._check_revision(rec, body.get("RevisionId"))
        key = qualifier or "$LATEST"
        statements = self.store.statements(rec.name, key)
        sid = body["StatementId"]
        if any(s.get("Sid") == sid for s in statements):
            raise conflict(f"The statement id ({sid}) provided already exists. Please provide a new statement id, "
                           "or remove the existing statement.")
        resource = rec.config["FunctionArn"] + (f":{qualifier}" if qualifier else "")
        statement = _statement(body, resource)
        self.store.set_statements(rec.name, key, [*statements, statement])
        self._touch(rec)
        send_json(resp, 201, {"Statement": _compact(statement)}, rid)

    async def remove_permission(self, req: Request, resp: Response, rid: str, name: str, sid: str) -> None:
        if not _NAMESPACED_STATEMENT_ID.match(sid):
            raise validation([pattern_error(sid, "statementId", "([a-zA-Z0-9-_.]+)")])
        function, _ = self.functions.split_name(_unqualified(name))
        if self.functions.store.get(function) is None:
            raise not_found(f"No policy found for: {self.functions.arn(function)}")
        rec, qualifier = self._target(req, name)
        key = qualifier or "$LATEST"
        statements = self.store.statements(rec.name, key)
        if not statements:
            raise not_found("No policy is associated with the given resource.")
        kept = [s for s in statements if s.get("Sid") != sid]
        if len(kept) == len(statements):
            raise not_found(f"Statement {sid} is not found in resource policy.")
        self._check_revision(rec, parse_qs(req.query or "").get("RevisionId", [None])[-1])
        self.store.set_statements(rec.name, key, kept)
        self._touch(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def get_policy(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, qualifier = self._target(req, name)
        statements = self.store.statements(rec.name, qualifier or "$LATEST")
        if not statements:
            raise not_found("The resource you requested does not exist.")
        document = {"Version": "2012-10-17", "Id": "default", "Statement": statements}
        send_json(resp, 200, {"Policy": _compact(document), "RevisionId": rec.config["RevisionId"]}, rid)


def named_qualifier(name: str) -> str | None:
    """The qualifier written into a function name or ARN (name:q, account:function:name:q, arn...:q)."""
    parts = name.split(":")
    if name.startswith("arn:"):
        return parts[7] if len(parts) > 7 else None
    if len(parts) >= 3 and parts[1] == "function":
        return parts[3] if len(parts) > 3 else None
    return parts[1] if len(parts) == 2 else None


def _unqualified(name: str) -> str:
    """name without its qualifier."""
    qualifier = named_qualifier(name)
    return name[: -len(qualifier) - 1] if qualifier is not None else name


def _permission_problems(body: dict[str, Any]) -> list[str]:
    """AddPermission's constraint violations, in the request's member order."""
    problems = []
    checks = (("StatementId", "statementId", _STATEMENT_ID, "([a-zA-Z0-9-_]+)", True),
              ("Action", "action", _ACTION, "(lambda:[*]|lambda:[a-zA-Z]+|[*])", True),
              ("Principal", "principal", re.compile(r"^[^\s]+$"), r"[^\s]+", True),
              ("SourceArn", "sourceArn", _ARN, r"arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\-])+:((eusc-)?[a-z]{2}"
               r"((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1})?:(\d{12})?:(.*)", False),
              ("SourceAccount", "sourceAccount", _SOURCE_ACCOUNT, r"\d{12}", False),
              ("EventSourceToken", "eventSourceToken", _EVENT_SOURCE_TOKEN, r"[a-zA-Z0-9._\-]+", False),
              ("PrincipalOrgID", "principalOrgID", _ORG_ID, "o-[a-z0-9]{10,32}", False))
    for key, field, pattern, text, required in checks:
        value = body.get(key)
        if value is None:
            if required:
                problems.append(f"Value null at '{field}' failed to satisfy constraint: Member must not be null")
        elif not isinstance(value, str) or not pattern.match(value):
            problems.append(pattern_error(value, field, text))
    auth = body.get("FunctionUrlAuthType")
    if auth is not None and auth not in ("NONE", "AWS_IAM"):
        problems.append(f"Value '{auth}' at 'functionUrlAuthType' failed to satisfy constraint: Member must "
                        "satisfy enum value set: [AWS_IAM, NONE]")
    return problems


def _statement(body: dict[str, Any], resource: str) -> dict[str, Any]:
    """The policy statement AWS writes for an AddPermission request."""
    statement: dict[str, Any] = {"Sid": body["StatementId"], "Effect": "Allow",
                                 "Principal": _principal(body["Principal"]), "Action": body["Action"],
                                 "Resource": resource}
    equals = {}
    if body.get("FunctionUrlAuthType"):
        equals["lambda:FunctionUrlAuthType"] = body["FunctionUrlAuthType"]
    if body.get("PrincipalOrgID"):
        equals["aws:PrincipalOrgID"] = body["PrincipalOrgID"]
    if body.get("SourceAccount"):
        equals["AWS:SourceAccount"] = body["SourceAccount"]
    if body.get("EventSourceToken"):
        equals["lambda:EventSourceToken"] = body["EventSourceToken"]
    condition: dict[str, Any] = {"StringEquals": equals} if equals else {}
    if body.get("SourceArn"):
        condition["ArnLike"] = {"AWS:SourceArn": body["SourceArn"]}
    if condition:
        statement["Condition"] = condition
    return statement
