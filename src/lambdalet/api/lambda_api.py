"""The Lambda REST API (2015-03-31 and friends) as botocore calls it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import re
from typing import Any

from lambdalet.api import eventstream
from lambdalet.api import validation as v
from lambdalet.api.code_upload import check_json_payload, read_json, receive_code
from lambdalet.api.errors import AwsError, conflict, invalid, not_found, service_error, validation
from lambdalet.api.event_configs import EventConfigApi
from lambdalet.api.functions import FunctionManager, listed, now_iso
from lambdalet.api.invoker import Invoker, collect
from lambdalet.api.layers import LayersApi
from lambdalet.api.provisioned import PROVISIONED_ROUTES, ProvisionedApi
from lambdalet.api.recursion_config import RecursionConfigApi
from lambdalet.api.rest import query_params, send_json
from lambdalet.api.tags_policies import TagsPoliciesApi
from lambdalet.api.versions import VERSION_ROUTES, VersionsApi
from lambdalet.http11 import DEFER, BodyTooLarge, Request, Response, valid_field
from lambdalet.invocation import Invocation, LogTail, Outcome
from lambdalet.limits import ASYNC_MAX_PAYLOAD, MAX_PAYLOAD
from lambdalet.store import AliasRecord
from lambdalet.store.request_body import is_light

UNRESERVED_MINIMUM = 100  # concurrency Lambda keeps for functions without a reservation
_deliveries: set[asyncio.Task[None]] = set()  # streamed outcomes being collected for their callers
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/2015-03-31/functions/?$"), "create_function"),
    ("GET", re.compile(r"^/2015-03-31/functions/?$"), "list_functions"),
    ("GET", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/?$"), "get_function"),
    ("DELETE", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/?$"), "delete_function"),
    ("GET", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/configuration/?$"), "get_configuration"),
    ("PUT", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/configuration/?$"), "update_configuration"),
    ("PUT", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/code/?$"), "update_code"),
    ("POST", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations/?$"), "invoke"),
    ("POST", re.compile(r"^/2021-11-15/functions/(?P<name>[^/]+)/response-streaming-invocations/?$"),
     "invoke_stream"),
    ("POST", re.compile(r"^/2021-10-31/functions/(?P<name>[^/]+)/url/?$"), "create_url"),
    ("GET", re.compile(r"^/2021-10-31/functions/(?P<name>[^/]+)/url/?$"), "get_url"),
    ("PUT", re.compile(r"^/2021-10-31/functions/(?P<name>[^/]+)/url/?$"), "update_url"),
    ("DELETE", re.compile(r"^/2021-10-31/functions/(?P<name>[^/]+)/url/?$"), "delete_url"),
    ("GET", re.compile(r"^/2021-10-31/functions/(?P<name>[^/]+)/urls/?$"), "list_urls"),
    ("PUT", re.compile(r"^/2017-10-31/functions/(?P<name>[^/]+)/concurrency/?$"), "put_concurrency"),
    ("DELETE", re.compile(r"^/2017-10-31/functions/(?P<name>[^/]+)/concurrency/?$"), "delete_concurrency"),
    ("GET", re.compile(r"^/2019-09-30/functions/(?P<name>[^/]+)/concurrency/?$"), "get_concurrency"),
    ("GET", re.compile(r"^/2016-08-19/account-settings/?$"), "account_settings"),
    ("PUT", re.compile(r"^/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config/?$"), "event_configs.put"),
    ("POST", re.compile(r"^/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config/?$"), "event_configs.update"),
    ("GET", re.compile(r"^/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config/?$"), "event_configs.get"),
    ("DELETE", re.compile(r"^/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config/?$"), "event_configs.delete"),
    ("GET", re.compile(r"^/2019-09-25/functions/(?P<name>[^/]+)/event-invoke-config/list/?$"), "event_configs.list"),
    ("GET", re.compile(r"^/2024-08-31/functions/(?P<name>[^/]+)/recursion-config/?$"), "recursion.get"),
    ("PUT", re.compile(r"^/2024-08-31/functions/(?P<name>[^/]+)/recursion-config/?$"), "recursion.put"),
    # layers (api/layers.py) and tags and policies (api/tags_policies.py): "<owner>.<handler>"
    ("POST", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/?$"), "layers.publish"),
    ("GET", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/?$"), "layers.list_versions"),
    ("GET", re.compile(r"^/2018-10-31/layers/?$"), "layers.layers"),
    ("GET", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$"), "layers.get_version"),
    ("DELETE", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$"),
     "layers.delete_version"),
    ("POST", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/policy/?$"),
     "layers.add_permission"),
    ("GET", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/policy/?$"),
     "layers.get_policy"),
    ("DELETE", re.compile(r"^/2018-10-31/layers/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/policy/(?P<sid>[^/]+)/?$"),
     "layers.remove_permission"),
    ("POST", re.compile(r"^/2017-03-31/tags/(?P<resource>[^/]+)/?$"), "permissions.tag"),
    ("DELETE", re.compile(r"^/2017-03-31/tags/(?P<resource>[^/]+)/?$"), "permissions.untag"),
    ("GET", re.compile(r"^/2017-03-31/tags/(?P<resource>[^/]+)/?$"), "permissions.list_tags"),
    ("POST", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/policy/?$"), "permissions.add_permission"),
    ("GET", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/policy/?$"), "permissions.get_policy"),
    ("DELETE", re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/policy/(?P<sid>[^/]+)/?$"),
     "permissions.remove_permission"),
    *VERSION_ROUTES,
    *PROVISIONED_ROUTES,
]






def _payload_too_large(limit: int) -> AwsError:
    return AwsError(413, "RequestTooLargeException",
                    f"Request must be smaller than {limit} bytes for the InvokeFunction operation")


def _check_payload(payload: bytes) -> bytes:
    """An invoke payload as the runtime receives it: JSON, an empty one being {}."""
    if payload == b"{}":
        return payload
    if not payload.strip():
        return b"{}"
    try:
        json.loads(payload)
    except RecursionError as exc:
        raise _bad_payload("Document nesting depth exceeds the maximum allowed") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad_payload(str(exc)) from exc
    return payload


def _bad_payload(detail: str) -> AwsError:
    return AwsError(400, "InvalidRequestContentException",
                    f"Could not parse request body into json: Could not parse payload into json: {detail}")


class LambdaApi:
    """Handlers for the Lambda operations lambdalet implements."""

    def __init__(self, functions: FunctionManager, invoker: Invoker, event_configs: EventConfigApi,
                 recursion: RecursionConfigApi, layers: LayersApi, permissions: TagsPoliciesApi) -> None:
        self.functions = functions
        self.invoker = invoker
        # the handlers of the "<owner>.<handler>" routes
        self.event_configs = event_configs
        self.recursion = recursion
        self.layers = layers
        self.permissions = permissions
        self.provisioned = ProvisionedApi(functions, invoker)
        self.versions = VersionsApi(functions, on_change=self.provisioned.refresh,
                                    on_delete=event_configs.delete_qualifier)

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        allowed = False
        for m, pattern, handler in _ROUTES:
            found = pattern.match(path)
            if found:
                if m == method:
                    return handler, found.groupdict()
                allowed = True
        if allowed:
            raise AwsError(405, "MethodNotAllowedException", f"{method} is not allowed on {path}")
        return None

    async def handle(self, handler: str, params: dict[str, str], req: Request, resp: Response,
                     request_id: str) -> None:
        owner, _, method = handler.rpartition(".")  # "owner.method": a handler of another module's
        await getattr(getattr(self, owner) if owner else self, method)(req, resp, request_id, **params)

    def _retire_and_configure(self, name: str) -> None:
        rec = self.functions.store.get(name)
        if rec is not None:
            self.invoker.prepare(rec)

    # -- function management
    async def create_function(self, req: Request, resp: Response, rid: str) -> None:
        upload = await receive_code(req, self.functions.code, "CreateFunction")
        try:
            cfg = await self.functions.create(upload)
        finally:
            upload.close()
        send_json(resp, 201, cfg, rid)

    async def list_functions(self, req: Request, resp: Response, rid: str) -> None:
        q = query_params(req)
        errors = v.max_items_errors(q.get("MaxItems"))
        every = q.get("FunctionVersion")
        if every is not None and every != "ALL":
            errors.append(f"Value {v.shown(every)} at 'functionVersion' failed to satisfy constraint: Member "
                          "must satisfy enum value set: [ALL]")
        if errors:
            raise validation(errors)
        max_items = min(int(q.get("MaxItems", "50")), 50)
        configs: list[tuple[tuple[str, int], dict[str, Any]]] = []  # ((name, version: $LATEST 0), config)
        for rec in self.functions.store.all():
            if every is None:
                configs.append(((rec.name, -1), rec.config))
                continue
            configs.append(((rec.name, 0), {**rec.config, "FunctionArn": rec.config["FunctionArn"] + ":$LATEST"}))
            configs += [((rec.name, int(ver.version)), ver.config)
                        for ver in self.functions.versions.versions(rec.name)]
        marker = q.get("Marker")
        if marker:  # the last item of the previous page: `name`, or `name:version` with FunctionVersion=ALL
            name, _, number = marker.partition(":")
            after = (name, int(number) if number.isdigit() else -1)
            configs = [item for item in configs if item[0] > after]
        page = configs[:max_items]
        doc: dict[str, Any] = {"Functions": [listed(cfg) for _, cfg in page]}
        if len(configs) > max_items:
            name, number = page[-1][0]
            doc["NextMarker"] = name if number < 0 else f"{name}:{number}"
        send_json(resp, 200, doc, rid)

    def _host_url(self, req: Request) -> str:
        return f"http://{req.headers.get('host', '127.0.0.1')}"

    def _read_target(self, req: Request, name: str) -> tuple[Any, dict[str, Any], str]:
        """What GetFunction/GetFunctionConfiguration show: the function, the configuration of the version
        asked for (an alias's: the version it points at) under the ARN asked for, and that code's sha."""
        rec, qualifier = self.functions.locate(name, query_params(req).get("Qualifier"),
                                               pattern=v.NAMESPACED_FUNCTION_NAME)
        target, arn = self.functions.target(rec, qualifier, routed=False)
        return rec, {**target.config, "FunctionArn": arn}, target.code_sha

    async def get_function(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, cfg, code_sha = self._read_target(req, name)
        doc: dict[str, Any] = {
            "Configuration": cfg,
            "Code": {"RepositoryType": "S3",
                     "Location": f"{self._host_url(req)}/lambdalet/code/{code_sha}.zip"},
        }
        if rec.reserved_concurrency is not None:
            doc["Concurrency"] = {"ReservedConcurrentExecutions": rec.reserved_concurrency}
        tags = self.functions.tags(rec)
        if tags:
            doc["Tags"] = tags
        send_json(resp, 200, doc, rid)

    async def get_configuration(self, req: Request, resp: Response, rid: str, name: str) -> None:
        send_json(resp, 200, self._read_target(req, name)[1], rid)

    async def update_configuration(self, req: Request, resp: Response, rid: str, name: str) -> None:
        body = await read_json(req, "UpdateFunctionConfiguration")
        await self.functions.prepare_layers(name, body)
        cfg = self.functions.update_config(name, body)
        self._retire_and_configure(cfg["FunctionName"])
        send_json(resp, 200, cfg, rid)

    async def update_code(self, req: Request, resp: Response, rid: str, name: str) -> None:
        self.functions.get(name)  # an unknown function is answered before its body is taken in
        upload = await receive_code(req, self.functions.code, "UpdateFunctionCode")
        try:
            cfg = await self.functions.update_code(name, upload)
        finally:
            upload.close()
        self._retire_and_configure(cfg["FunctionName"])
        send_json(resp, 200, cfg, rid)

    async def delete_function(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, version = self.functions.delete(name, query_params(req).get("Qualifier"))
        self.invoker.scheduler.remove(rec.name, version)
        if version is None:
            self.invoker.queue.delete_function(rec.name)
            self.event_configs.delete_function(rec.name)
            self.recursion.delete_function(rec.name)
        else:
            self.event_configs.delete_qualifier(rec.name, version)
            self.provisioned.refresh(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    # -- invoke
    def _invocation(self, req: Request, rec, arn: str, payload: bytes, request_id: str | None = None) -> Invocation:
        client_context = None
        raw_cc = req.headers.get("x-amz-client-context")
        if raw_cc:
            try:
                client_context = base64.b64decode(raw_cc, validate=True).decode()
                doc = json.loads(client_context)
                if not client_context.isprintable():  # a newline would forge Runtime API header lines
                    client_context = json.dumps(doc, separators=(",", ":"))
            except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
                raise AwsError(400, "InvalidRequestContentException",
                               "Client context must be a valid Base64-encoded JSON object.") from None
        return Invocation(payload, arn, request_id, client_context=client_context, executed_version=rec.version)

    async def _payload(self, req: Request, limit: int) -> bytes:
        try:
            payload = await req.read(limit)
        except BodyTooLarge as exc:
            raise _payload_too_large(limit) from exc
        if is_light(payload):
            return _check_payload(payload)
        # json.loads of 6 MB of `[0,0,...]` holds the GIL for ~360 ms: checked by a child instead
        await check_json_payload(payload, self.functions.code)
        return payload

    def invoke_now(self, req: Request, resp: Response, rid: str, name: str):
        """Invoke's hot path, run as the request arrives: a synchronous RequestResponse invoke is
        dispatched before this returns; what remains (waiting for the outcome) is returned to await."""
        headers = req.headers
        if headers.get("x-amz-invocation-type", "RequestResponse") != "RequestResponse" \
                or headers.get("x-amz-log-type", "None") == "Tail":
            return self.invoke(req, resp, rid, name)
        rec, arn = self._qualified(req, name)
        payload = req.body_now()
        if len(payload) > MAX_PAYLOAD:
            raise _payload_too_large(MAX_PAYLOAD)
        if not is_light(payload):
            return self.invoke(req, resp, rid, name, payload)
        inv = self._invocation(req, rec, arn, _check_payload(payload), rid)
        # Dispatched now, the answer goes out from the outcome's callback: no task waits for it. (Set
        # first: a platform fault may fail the invocation before start_now() returns.)
        inv.on_outcome = functools.partial(self._deliver, resp, inv)
        inv.on_failure = functools.partial(self._send_failure, resp, rid)
        if not self.invoker.start_now(rec, inv):
            inv.on_outcome = lambda outcome: self._send_outcome(resp, inv, outcome)
            inv.on_failure = None
            return self._finish_invoke(resp, rec, inv)
        return DEFER

    def _deliver(self, resp: Response, inv: Invocation, outcome: Outcome) -> None:
        if outcome.stream is None:
            self._send_outcome(resp, inv, outcome)
            return
        task = asyncio.get_running_loop().create_task(self._deliver_stream(resp, inv, outcome))
        _deliveries.add(task)
        task.add_done_callback(_deliveries.discard)

    async def _deliver_stream(self, resp: Response, inv: Invocation, outcome: Outcome) -> None:
        """A streamed response to a buffered Invoke: collected, then sent."""
        try:
            collected = await collect(outcome.stream)  # type: ignore[arg-type]
        except Exception as exc:
            self._send_failure(resp, inv.request_id, exc)
            return
        if not resp.started:
            self._send_outcome(resp, inv, collected)

    @staticmethod
    def _send_failure(resp: Response, rid: str, exc: BaseException) -> None:
        """The platform could not run the invocation: ServiceException, as AWS answers then."""
        if not resp.started:
            err = service_error(f"An internal error occurred: {type(exc).__name__}")
            resp.send(err.status, err.body(), err.headers(rid))

    async def _finish_invoke(self, resp: Response, rec, inv: Invocation) -> None:
        await self.invoker.start(rec, inv)
        outcome = await inv.outcome
        if outcome.stream is not None:
            outcome = await collect(outcome.stream)
        if not resp.started:
            self._send_outcome(resp, inv, outcome)

    def _qualified(self, req: Request, name: str):
        """(what runs, the ARN invoked) for an invoke of name with its Qualifier."""
        return self.functions.resolve(name, query_params(req).get("Qualifier") if req.query else None)

    async def invoke(self, req: Request, resp: Response, rid: str, name: str, payload: bytes | None = None) -> None:
        rec, arn = self._qualified(req, name)
        kind = req.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise invalid(f"Invalid InvocationType: {kind}")
        tail = req.headers.get("x-amz-log-type", "None") == "Tail"
        if kind == "DryRun":
            resp.send(204, b"", {"x-amzn-RequestId": rid})
            return
        limit = ASYNC_MAX_PAYLOAD if kind == "Event" else MAX_PAYLOAD
        if payload is None:
            payload = await self._payload(req, limit)
        elif len(payload) > limit:
            raise _payload_too_large(limit)
        else:  # taken with body_now() by invoke_now: heavy, checked off the loop
            await check_json_payload(payload, self.functions.code)
        inv = self._invocation(req, rec, arn, payload)
        if kind == "Event":
            self.invoker.enqueue(rec, inv)
            resp.send(202, b"", {"x-amzn-RequestId": inv.request_id})
            return
        if tail:
            inv.log_tail = LogTail()
        else:  # answer the caller the moment the runtime posts its response
            inv.on_outcome = lambda outcome: self._send_outcome(resp, inv, outcome)
        outcome = await self.invoker.invoke(rec, inv, wait_done=tail)
        if not resp.started:
            self._send_outcome(resp, inv, outcome)

    @staticmethod
    def _send_outcome(resp: Response, inv: Invocation, outcome: Outcome) -> None:
        if outcome.stream is not None:
            return  # collected by Invoker.invoke, then sent
        content_type = "application/json" if outcome.function_error else outcome.content_type
        if content_type != "application/json" and not valid_field("Content-Type", content_type):
            content_type = "application/octet-stream"  # (the runtime's own header: checked here)
        fields = (f"Content-Type: {content_type}\r\nx-amzn-RequestId: {inv.request_id}\r\n"
                  f"X-Amz-Executed-Version: {inv.executed_version}\r\n")
        if outcome.function_error:
            fields += f"X-Amz-Function-Error: {outcome.function_error}\r\n"
        if inv.log_tail is not None:
            fields += f"X-Amz-Log-Result: {inv.log_tail.base64()}\r\n"
        resp.send_platform(200, outcome.payload, fields)

    async def invoke_stream(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, arn = self._qualified(req, name)
        kind = req.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "DryRun"):
            raise invalid(f"Invalid InvocationType: {kind}")
        if kind == "DryRun":
            resp.send(204, b"", {"x-amzn-RequestId": rid})
            return
        tail = req.headers.get("x-amz-log-type", "None") == "Tail"
        payload = await self._payload(req, MAX_PAYLOAD)
        inv = self._invocation(req, rec, arn, payload)
        if tail:
            inv.log_tail = LogTail()
        await self.invoker.start(rec, inv)
        outcome = await inv.outcome
        resp.start(200, {"Content-Type": "application/vnd.amazon.eventstream", "x-amzn-RequestId": inv.request_id,
                         "X-Amz-Executed-Version": inv.executed_version})
        complete: dict[str, str] = {}
        if outcome.stream is not None:
            async for chunk in outcome.stream.chunks():
                resp.write(eventstream.payload_chunk(chunk))
                await resp.drain()
            if outcome.stream.error_type is not None:
                complete["ErrorCode"] = outcome.stream.error_type
                complete["ErrorDetails"] = (outcome.stream.error_body or b"").decode("utf-8", "replace")
        elif outcome.function_error:
            complete["ErrorCode"] = outcome.error_type or outcome.function_error
            complete["ErrorDetails"] = outcome.payload.decode("utf-8", "replace")
        elif outcome.payload:
            resp.write(eventstream.payload_chunk(outcome.payload))
        if tail:
            await inv.done
            complete["LogResult"] = inv.log_tail.base64()
        resp.write(eventstream.invoke_complete(json.dumps(complete).encode()))
        resp.end()

    # -- function URL configuration ($LATEST's, or an alias's)
    def _url_holder(self, req: Request, name: str):
        """The record holding the URL config a request is about ($LATEST, or an alias with Qualifier), and
        the function ARN the URL config shows."""
        rec, qualifier = self.functions.locate(name, query_params(req).get("Qualifier"), pattern=v.URL_FUNCTION_NAME,
                                               qualifier_pattern=v.URL_QUALIFIER)
        if qualifier is None:
            return rec, rec.config["FunctionArn"]
        alias = self.functions.versions.alias(rec.name, qualifier)
        arn = f"{rec.config['FunctionArn']}:{qualifier}"
        if alias is None:
            raise not_found(f"Function not found: {arn}")
        return alias, arn

    def _save_url(self, holder) -> None:
        if isinstance(holder, AliasRecord):
            self.functions.versions.save_alias(holder)
        else:
            self.functions.store.save(holder)

    def _url_doc(self, req: Request, url_config: dict[str, Any], arn: str) -> dict[str, Any]:
        cfg = dict(url_config)
        url_id = cfg.pop("_UrlId")
        cfg["FunctionUrl"] = f"{self._host_url(req)}/lambda-url/{url_id}/"
        cfg["FunctionArn"] = arn
        return cfg

    @staticmethod
    def _url_settings(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        auth = body.get("AuthType", current.get("AuthType"))
        if auth not in ("NONE", "AWS_IAM"):
            raise invalid("AuthType must be NONE or AWS_IAM.")
        mode = body.get("InvokeMode", current.get("InvokeMode", "BUFFERED"))
        if mode not in ("BUFFERED", "RESPONSE_STREAM"):
            raise invalid("InvokeMode must be BUFFERED or RESPONSE_STREAM.")
        out = {**current, "AuthType": auth, "InvokeMode": mode}
        if "Cors" in body:
            if not isinstance(body["Cors"], dict):
                raise invalid("Cors must be an object.")
            out["Cors"] = body["Cors"]
        return out

    async def create_url(self, req: Request, resp: Response, rid: str, name: str) -> None:
        holder, arn = self._url_holder(req, name)
        body = await read_json(req, "CreateFunctionUrlConfig")
        if holder.url_config is not None:
            raise conflict(f"Failed to create function url config for [functionArn = {arn}]. Error message:  "
                           "FunctionUrlConfig exists for this Lambda function")
        now = now_iso()
        holder.url_config = {"_UrlId": self.functions.new_url_id(), "CreationTime": now, "LastModifiedTime": now,
                             **self._url_settings(body, {})}
        self._save_url(holder)
        doc = self._url_doc(req, holder.url_config, arn)
        doc.pop("LastModifiedTime", None)
        send_json(resp, 201, doc, rid)

    def _url_rec(self, req: Request, name: str):
        holder, arn = self._url_holder(req, name)
        if holder.url_config is None:
            raise not_found("The resource you requested does not exist.")
        return holder, arn

    async def get_url(self, req: Request, resp: Response, rid: str, name: str) -> None:
        holder, arn = self._url_rec(req, name)
        send_json(resp, 200, self._url_doc(req, holder.url_config, arn), rid)

    async def update_url(self, req: Request, resp: Response, rid: str, name: str) -> None:
        holder, arn = self._url_rec(req, name)
        holder.url_config = {**self._url_settings(await read_json(req, "UpdateFunctionUrlConfig"),
                                                  holder.url_config or {}),
                             "LastModifiedTime": now_iso()}
        self._save_url(holder)
        send_json(resp, 200, self._url_doc(req, holder.url_config, arn), rid)

    async def delete_url(self, req: Request, resp: Response, rid: str, name: str) -> None:
        holder, _ = self._url_rec(req, name)
        holder.url_config = None
        self._save_url(holder)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def list_urls(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.locate(name, pattern=v.URL_FUNCTION_NAME)
        docs = [self._url_doc(req, rec.url_config, rec.config["FunctionArn"])] if rec.url_config else []
        docs += [self._url_doc(req, a.url_config, f"{rec.config['FunctionArn']}:{a.name}")
                 for a in self.functions.versions.aliases(rec.name) if a.url_config]
        send_json(resp, 200, {"FunctionUrlConfigs": docs}, rid)

    # -- concurrency
    def _unreserved(self, leaving_out: str | None = None) -> tuple[int, int]:
        """(the account's unreserved concurrency, the minimum it must keep), with leaving_out's reservation
        not counted."""
        limit = self.invoker.scheduler.limits.max_concurrency
        reserved = sum(r.reserved_concurrency or 0 for r in self.functions.store.all() if r.name != leaving_out)
        return limit - reserved, min(UNRESERVED_MINIMUM, limit)

    async def put_concurrency(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.get(name)
        value = (await read_json(req, "PutFunctionConcurrency")).get("ReservedConcurrentExecutions")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid("ReservedConcurrentExecutions must be a non-negative integer.")
        unreserved, minimum = self._unreserved(leaving_out=rec.name)
        if unreserved - value < minimum:
            raise invalid("Specified ReservedConcurrentExecutions for function decreases account's "
                          f"UnreservedConcurrentExecution below its minimum value of [{minimum}].")
        rec.reserved_concurrency = value
        self.functions.store.save(rec)
        self.invoker.prepare(rec)
        send_json(resp, 200, {"ReservedConcurrentExecutions": value}, rid)

    async def delete_concurrency(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.get(name)
        rec.reserved_concurrency = None
        self.functions.store.save(rec)
        self.invoker.prepare(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})

    async def get_concurrency(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.get(name)
        doc = {} if rec.reserved_concurrency is None else {
            "ReservedConcurrentExecutions": rec.reserved_concurrency}
        send_json(resp, 200, doc, rid)

    async def account_settings(self, req: Request, resp: Response, rid: str) -> None:
        records = self.functions.store.all()
        send_json(resp, 200, {
            "AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                             "CodeSizeZipped": 52428800,
                             "ConcurrentExecutions": self.invoker.scheduler.limits.max_concurrency,
                             "UnreservedConcurrentExecutions": self._unreserved()[0]},
            # (the storage of every function's $LATEST and published versions, and of the layers)
            "AccountUsage": {"TotalCodeSize": self.functions.total_code_size() + self.layers.total_size(),
                             "FunctionCount": len(records)},
        }, rid)
