"""Provisioned concurrency: environments of a version (or an alias's version) initialized ahead of invokes."""

from __future__ import annotations

import re
from typing import Any

from lambdalet.api import validation as v
from lambdalet.api.code_upload import read_json
from lambdalet.api.errors import AwsError, invalid, validation
from lambdalet.api.functions import FunctionManager, Target, now_iso
from lambdalet.api.invoker import Invoker
from lambdalet.api.rest import query_params, send_json
from lambdalet.http11 import Request, Response
from lambdalet.store import FunctionRecord

PROVISIONED_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (method, re.compile(r"^/2019-09-30/functions/(?P<name>[^/]+)/provisioned-concurrency/?$"), f"provisioned.{op}")
    for method, op in (("PUT", "put"), ("GET", "get"), ("DELETE", "delete"))
]


def _not_found() -> AwsError:
    return AwsError(404, "ProvisionedConcurrencyConfigNotFoundException",
                    "No Provisioned Concurrency Config found for this function")


class ProvisionedApi:
    """Put/Get/Delete/ListProvisionedConcurrencyConfigs, and keeping the scheduler's environments to them."""

    def __init__(self, functions: FunctionManager, invoker: Invoker) -> None:
        self.functions = functions
        self.invoker = invoker

    def refresh(self, rec: FunctionRecord) -> None:
        """Bring the function's provisioned environments to its configs (after any change of them, or of the
        aliases and versions they name, and at start)."""
        counts: dict[str, int] = {}
        for qualifier, (requested, _) in self.functions.versions.provisioned(rec.name).items():
            try:
                target = self._main_target(rec, qualifier)
            except AwsError:  # (gone: its config goes with it)
                continue
            if target.version == "$LATEST":  # an alias moved to $LATEST: nothing to provision
                continue
            self.invoker.prepare(target)
            counts[target.pool_key] = counts.get(target.pool_key, 0) + requested
        self.invoker.scheduler.provision(rec.name, counts)

    def refresh_all(self) -> None:
        for rec in self.functions.store.all():
            if self.functions.versions.provisioned(rec.name):
                self.refresh(rec)

    def _main_target(self, rec: FunctionRecord, qualifier: str) -> Target:
        return self.functions.target(rec, qualifier, routed=False)[0]

    def _locate(self, req: Request, name: str, query: dict[str, str]) -> tuple[FunctionRecord, str]:
        if query.get("Qualifier") is None:
            raise validation([v.null_error("qualifier")])
        rec, qualifier = self.functions.locate(name, query["Qualifier"], qualifier_pattern=v.PLAIN_QUALIFIER)
        return rec, qualifier or query["Qualifier"]

    def _doc(self, rec: FunctionRecord, qualifier: str, requested: int, modified: str) -> dict[str, Any]:
        key = self._main_target(rec, qualifier).pool_key
        ready = min(requested, self.invoker.scheduler.provisioned_ready(key))
        doc: dict[str, Any] = {"RequestedProvisionedConcurrentExecutions": requested,
                               "AvailableProvisionedConcurrentExecutions": ready,
                               "AllocatedProvisionedConcurrentExecutions": ready,
                               "Status": "READY" if ready >= requested else "IN_PROGRESS", "LastModified": modified}
        if ready < requested and self.invoker.scheduler.provisioned_failed(key):
            doc.update(Status="FAILED", StatusReason="FUNCTION_ERROR_INIT_FAILURE")  # (as AWS reports it)
        return doc

    async def put(self, req: Request, resp: Response, rid: str, name: str) -> None:
        query = query_params(req)
        rec, qualifier = self._locate(req, name, query)
        body = await read_json(req, "PutProvisionedConcurrencyConfig")
        count = body.get("ProvisionedConcurrentExecutions")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise validation([v.null_error("provisionedConcurrentExecutions") if count is None else
                              v.min_value_error(count, "provisionedConcurrentExecutions", 1)])
        if qualifier == "$LATEST":
            raise invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        target, _ = self.functions.target(rec, qualifier, routed=False)
        alias = self.functions.versions.alias(rec.name, qualifier)
        if alias is not None and (alias.config.get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
            raise invalid("Alias with weights can not be used with Provisioned Concurrency")
        if target.version == "$LATEST":
            raise invalid("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        limit = self.invoker.scheduler.limits.max_concurrency
        if count > limit:
            raise invalid(f"Requested Provisioned Concurrency ({count}) exceeds the account's concurrency limit "
                          f"({limit}).")
        modified = now_iso()
        self.functions.versions.save_provisioned(rec.name, qualifier, count, modified)
        self.refresh(rec)
        doc = self._doc(rec, qualifier, count, modified)
        doc.pop("AvailableProvisionedConcurrentExecutions")
        send_json(resp, 202, doc, rid)

    async def get(self, req: Request, resp: Response, rid: str, name: str) -> None:
        query = query_params(req)
        if query.get("List") == "ALL":
            await self.list(req, resp, rid, name, query)
            return
        rec, qualifier = self._locate(req, name, query)
        self.functions.target(rec, qualifier, routed=False)
        found = self.functions.versions.provisioned(rec.name).get(qualifier)
        if found is None:
            raise _not_found()
        send_json(resp, 200, self._doc(rec, qualifier, *found), rid)

    async def list(self, req: Request, resp: Response, rid: str, name: str, query: dict[str, str]) -> None:
        errors = v.max_items_errors(query.get("MaxItems"), 50)
        if errors:
            raise validation(errors)
        rec, _ = self.functions.locate(name)
        docs = [{"FunctionArn": f"{rec.config['FunctionArn']}:{q}", **self._doc(rec, q, n, modified)}
                for q, (n, modified) in self.functions.versions.provisioned(rec.name).items()]
        send_json(resp, 200, {"ProvisionedConcurrencyConfigs": docs}, rid)

    async def delete(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, qualifier = self._locate(req, name, query_params(req))
        self.functions.target(rec, qualifier, routed=False)
        if qualifier not in self.functions.versions.provisioned(rec.name):
            raise _not_found()
        self.functions.versions.delete_provisioned(rec.name, qualifier)
        self.refresh(rec)
        resp.send(204, b"", {"x-amzn-RequestId": rid})
