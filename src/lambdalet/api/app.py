"""The front door: one port for the Lambda API, the CloudWatch Logs subset and function URLs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import resource
from dataclasses import dataclass, field

from lambdalet.api.auth import ApiAuth, is_loopback
from lambdalet.api.destinations import Destinations
from lambdalet.api.errors import AwsError, protocol_error, request_too_large, service_error
from lambdalet.api.event_configs import EventConfigApi, EventInvokeConfigs
from lambdalet.api.function_urls import FunctionUrls, url_target
from lambdalet.api.functions import FunctionManager
from lambdalet.api.invoker import Invoker
from lambdalet.api.lambda_api import LambdaApi
from lambdalet.api.layers import FunctionLayers, LayersApi
from lambdalet.api.logs_api import TARGET_PREFIX, LogsApi
from lambdalet.api.recursion_config import RecursionConfigApi
from lambdalet.api.tags_policies import TagsPoliciesApi
from lambdalet.credentials import CredentialStore, load_credentials_file
from lambdalet.http11 import DEFER, BodyTooLarge, HttpServer, Request, Response, ServerLimits
from lambdalet.invocation import new_request_id
from lambdalet.limits import KEEP_ALIVE_S, MAX_API_REQUEST, MAX_CONNECTIONS, MAX_HEAD_BYTES
from lambdalet.scheduler import Limits, Scheduler, start_network_isolation
from lambdalet.store import (
    AsyncEventQueue,
    CodeStore,
    EventConfigStore,
    FunctionStore,
    LogStore,
    RecursionConfigStore,
    VersionStore,
    connect,
)
from lambdalet.store.layers import LayerStore
from lambdalet.store.policies import PolicyStore

log = logging.getLogger("lambdalet.api")
_INVOKE_PREFIX = "/2015-03-31/functions/"
_CODE_PATH = re.compile(r"^/lambdalet/code/([0-9a-f]{64})\.zip$")


@dataclass
class Settings:
    """`lambdalet serve` options."""

    host: str = "127.0.0.1"
    port: int = 9000
    data_dir: str = ".lambdalet"
    region: str = "us-east-1"
    account: str = "000000000000"
    max_concurrency: int = 1000
    idle_timeout_s: float = 600.0
    async_retry_delay_s: float = 60.0
    interpreters: dict[str, str] = field(default_factory=dict)
    memory_limit: bool = True
    keep_alive_s: float = KEEP_ALIVE_S
    max_connections: int = MAX_CONNECTIONS
    isolation: str = "auto"  # auto | strict | none
    auth_file: str | None = None  # the operator's access keys: every API call must be signed with one


class ConfigError(ValueError):
    """Settings lambdalet refuses to start with (the message says why)."""


class FrontDoor:
    """Owns the store, the scheduler and the HTTP server, and routes each request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.credentials, self.auth = _auth(settings)
        data = os.path.abspath(settings.data_dir)
        for sub in ("code", "opt", "tmp"):
            os.makedirs(os.path.join(data, sub), exist_ok=True)
        self.db = connect(os.path.join(data, "lambdalet.db"))
        self.logs = LogStore(self.db)
        self.scheduler = Scheduler(self.logs, os.path.join(data, "tmp"),
                                   Limits(settings.max_concurrency, settings.idle_timeout_s), self.credentials)
        self.scheduler.claim_data_dir(data)  # one server per data dir; ends what a killed one left running
        layer_store = LayerStore(self.db)
        layers = FunctionLayers(layer_store, os.path.join(data, "opt.layers"), os.path.join(data, "opt"),
                                settings.region, settings.account)
        code = CodeStore(os.path.join(data, "code"))
        policies = PolicyStore(self.db)
        functions = FunctionStore(self.db)
        self.functions = FunctionManager(functions, code, settings.region, settings.account, layers, policies,
                                         settings.interpreters, versions=VersionStore(self.db, functions),
                                         memory_limit=settings.memory_limit)
        event_configs = EventInvokeConfigs(EventConfigStore(self.db), self.functions)
        self.invoker = Invoker(self.functions, self.scheduler, AsyncEventQueue(self.db), event_configs,
                               Destinations(self.functions, self.logs), settings.async_retry_delay_s)
        self.lambda_api = LambdaApi(self.functions, self.invoker, EventConfigApi(event_configs),
                                    RecursionConfigApi(RecursionConfigStore(self.db), self.functions),
                                    LayersApi(layer_store, code, settings.region, settings.account),
                                    TagsPoliciesApi(self.functions, policies))
        self.logs_api = LogsApi(self.logs, settings.region, settings.account)
        self.urls = FunctionUrls(self.functions, self.invoker, self.auth)
        limits = ServerLimits(MAX_HEAD_BYTES, settings.keep_alive_s, _connection_cap(settings.max_connections))
        self.http = HttpServer(self.handle, self.fast, limits=limits, error_answer=protocol_error)
        self.address = ("", 0)
        self.network = ""  # what isolates environments' networks (start() says)

    async def start(self) -> None:
        self.address = await self.http.listen(self.settings.host, self.settings.port)
        host = self.address[0]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        self.functions.endpoint_url = f"http://{host}:{self.address[1]}"
        # Environments in network namespaces reach this API on 127.0.0.1:<port> of their own.
        self.network = start_network_isolation(self.settings.isolation, self.address[1], self.http.serve)
        self.scheduler.start_reaper()
        self.invoker.start_worker()
        self.lambda_api.provisioned.refresh_all()

    async def close(self) -> None:
        self.invoker.stop_worker()
        self.http.close()
        self.scheduler.shutdown()
        self.logs.close()
        await asyncio.sleep(0)
        self.db.close()

    def fast(self, req: Request, resp: Response):
        """Requests that arrived whole: Invoke starts right here; everything else goes to _serve()."""
        if self.auth is not None and self.auth.refuse(req, resp):  # (auth off: this one test)
            return None
        path = req.path
        if req.method == "POST" and path.startswith(_INVOKE_PREFIX) and path.endswith("/invocations") \
                and "x-amz-target" not in req.headers:
            name = path[len(_INVOKE_PREFIX):-len("/invocations")]
            if name and "/" not in name and url_target(req) is None:  # (anything else: routed by handle())
                request_id = new_request_id()
                try:
                    rest = self.lambda_api.invoke_now(req, resp, request_id, name)
                except AwsError as err:
                    resp.send(err.status, err.body(), err.headers(request_id))
                    return None
                if rest is DEFER:
                    return DEFER
                return self._answer_errors(rest, req, resp, request_id)
        return self._serve(req, resp)

    async def handle(self, req: Request, resp: Response) -> None:
        """Requests whose body is still arriving."""
        if self.auth is not None and await self.auth.refuse_later(req, resp):
            return
        await self._serve(req, resp)

    async def _serve(self, req: Request, resp: Response) -> None:
        request_id = new_request_id()
        await self._answer_errors(self._route(req, resp, request_id), req, resp, request_id)

    async def _answer_errors(self, work, req: Request, resp: Response, request_id: str) -> None:
        """Await work; an error becomes an AWS-shaped answer, never a dropped connection."""
        try:
            await work
        except AwsError as err:
            if not resp.started:
                resp.send(err.status, err.body(), err.headers(request_id))
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", req.method, req.path)
            if not resp.started:
                err = service_error(f"An internal error occurred: {type(exc).__name__}")
                resp.send(err.status, err.body(), err.headers(request_id))

    async def _route(self, req: Request, resp: Response, request_id: str) -> None:
        target = url_target(req)
        if target is not None:
            await self.urls.handle(req, resp, *target)
            return
        amz_target = req.headers.get("x-amz-target", "")
        if amz_target.startswith(TARGET_PREFIX):
            try:
                raw = await req.read(MAX_API_REQUEST)
            except BodyTooLarge:
                raise request_too_large(amz_target[len(TARGET_PREFIX):], MAX_API_REQUEST) from None
            doc = self.logs_api.handle(amz_target, raw)
            resp.send(200, json.dumps(doc).encode(),
                      {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id})
            return
        match = self.lambda_api.match(req.method, req.path.rstrip("/") if req.path != "/" else "/")
        if match is not None:
            await self.lambda_api.handle(match[0], match[1], req, resp, request_id)
            return
        code = _CODE_PATH.match(req.path)
        if code is not None and req.method == "GET":
            data = self.functions.code.read_zip(code.group(1))
            if data is not None:
                resp.send(200, data, {"Content-Type": "application/zip"})
                return
        if req.path == "/lambdalet/health":
            resp.send(200, b'{"status":"ok"}', {"Content-Type": "application/json"})
            return
        raise AwsError(404, "UnknownOperationException", f"Unknown operation {req.method} {req.path}")


def _auth(settings: Settings) -> tuple[CredentialStore, ApiAuth | None]:
    """The key store, and the verifier when calls must be signed: with --auth, and always off loopback."""
    if settings.auth_file is None:
        if not is_loopback(settings.host):
            shown = settings.host or "''"
            raise ConfigError(f"--host {shown} is not a loopback address: there every call must "
                              "be signed, so lambdalet serve needs --auth <credentials file> (see the README)")
        return CredentialStore(), None
    try:
        store = CredentialStore(load_credentials_file(settings.auth_file))
    except ValueError as exc:
        raise ConfigError(f"--auth: {exc}") from None
    return store, ApiAuth(store, settings.region)


def _connection_cap(wanted: int) -> int:
    """wanted, within the open-files limit: half of it stays for environments (pipes, Runtime API
    sockets) and the database. (Not raised here: functions inherit it, and Lambda's is 1,024.)"""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, soft // 2))
