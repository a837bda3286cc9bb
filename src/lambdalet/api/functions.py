"""Function management: validate and apply CreateFunction / Update* / Delete, in Lambda's terms."""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lambdalet.api import validation as v
from lambdalet.api.errors import AwsError, conflict, invalid, not_found, validation
from lambdalet.limits import MAX_ENV_BYTES
from lambdalet.scheduler import RESERVED_VARIABLES, FunctionSpec, is_supported_runtime
from lambdalet.store import CodeStore, FunctionRecord, FunctionStore, StoredCode, VersionRecord, VersionStore

if TYPE_CHECKING:
    from lambdalet.api.code_upload import CodeUpload
    from lambdalet.api.layers import FunctionLayers
    from lambdalet.store.policies import PolicyStore

_ENV_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+$")

CONFIG_FIELDS = ("Role", "Handler", "Description", "Timeout", "MemorySize", "Environment", "Runtime",
                 "Architectures", "LoggingConfig", "TracingConfig", "EphemeralStorage", "Layers", "DeadLetterConfig")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


Target = FunctionRecord | VersionRecord  # what an invocation runs: $LATEST or a published version


def parse_function_name(raw: str) -> tuple[str, str | None]:
    """(name, qualifier) from a name, name:qualifier, partial ARN or full ARN (ValidationException when it
    breaks the FunctionName pattern; FunctionManager.locate also checks region, account and existence)."""
    errors: list[str] = []
    v.check_function_name(errors, raw, v.NAMESPACED_FUNCTION_NAME)
    if errors:
        raise validation(errors)
    name, qualifier, _, _ = v.locate(raw)
    return name, qualifier

_UPDATE_STATUS = ("LastUpdateStatus", "LastUpdateStatusReason", "LastUpdateStatusReasonCode")
_LIST_HIDDEN = ("State", "StateReason", "StateReasonCode", *_UPDATE_STATUS, "RuntimeVersionConfig")
# Transitional states and where each settles, with the reason fields shown while in it.
_TRANSITIONS = {
    "State": ("Pending", "Active", ("StateReason", "StateReasonCode")),
    "LastUpdateStatus": ("InProgress", "Successful", ("LastUpdateStatusReason", "LastUpdateStatusReasonCode")),
}


def listed(cfg: dict[str, Any]) -> dict[str, Any]:
    """A configuration as the List* operations show it (without state fields, as AWS)."""
    return {k: val for k, val in cfg.items() if k not in _LIST_HIDDEN}


def _begin(cfg: dict[str, Any], field: str) -> None:
    """Enter the transitional state of field (State: Pending, LastUpdateStatus: InProgress)."""
    state, _, (reason, code) = _TRANSITIONS[field]
    cfg.update({field: state, reason: "The function is being created.", code: "Creating"})


def _settled(cfg: dict[str, Any]) -> bool:
    """Move each transitional field of cfg to its final state; True when something changed."""
    changed = False
    for field, (state, final, reasons) in _TRANSITIONS.items():
        if cfg.get(field) == state:
            cfg[field] = final
            for key in reasons:
                cfg.pop(key, None)
            changed = True
    return changed


_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _check_object(cfg: dict[str, Any], key: str, fields: dict[str, Any]) -> None:
    """A nested setting must be an object whose known fields hold allowed values."""
    value = cfg.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid(f"{key} must be an object.")
    for name, allowed in fields.items():
        if name not in value:
            continue
        item = value[name]
        if allowed is str:
            ok = isinstance(item, str)
        elif isinstance(allowed, range):
            ok = isinstance(item, int) and not isinstance(item, bool) and item in allowed
        else:
            ok = item in allowed
        if not ok:
            raise invalid(f"Value {item!r} at '{key}.{name}' failed to satisfy constraint.")


def _with_log_levels(logging_config: dict[str, Any]) -> dict[str, Any]:
    """JSON logs have levels, INFO unless set, as Lambda returns them."""
    if logging_config.get("LogFormat") == "JSON":
        logging_config.setdefault("ApplicationLogLevel", "INFO")
        logging_config.setdefault("SystemLogLevel", "INFO")
    return logging_config


_DLQ_ARN = re.compile(r"(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()")


def _check_dead_letter(cfg: dict[str, Any]) -> None:
    """DeadLetterConfig: an SQS queue or SNS topic ARN; an empty TargetArn removes it."""
    value = cfg.get("DeadLetterConfig")
    if value is None:
        return
    target = value.get("TargetArn") if isinstance(value, dict) else None
    if not isinstance(value, dict) or not isinstance(target, str | None):
        raise invalid("DeadLetterConfig must be an object with a TargetArn.")
    if not target:
        del cfg["DeadLetterConfig"]
        return
    if len(target) > 10000 or not _DLQ_ARN.fullmatch(target):
        raise AwsError(400, "ValidationException",
                       f"1 validation error detected: Value '{target}' at 'deadLetterConfig.targetArn' failed to "
                       "satisfy constraint: Member must satisfy regular expression pattern: "
                       "(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()")
    if target.split(":")[2] not in ("sqs", "sns"):
        raise invalid(f"The provided target arn {target} is invalid: a dead-letter queue is an SQS queue or an "
                      "SNS topic.")


class FunctionManager:
    """The function registry as the Lambda API sees it."""

    def __init__(self, store: FunctionStore, code: CodeStore, region: str, account: str, layers: FunctionLayers,
                 policies: PolicyStore, interpreters: dict[str, str], *, versions: VersionStore,
                 memory_limit: bool = True) -> None:
        self.store = store
        self.versions = versions
        self.code = code
        self.region = region
        self.account = account
        self.layers = layers
        self.policies = policies
        self.interpreters = interpreters
        self.endpoint_url = ""  # the server's own address, known once it listens
        self.memory_limit = memory_limit
        for rec in store.all():  # a server stopped mid-transition: what it was doing is done
            if _settled(rec.config):
                store.save(rec)
            for version in versions.versions(rec.name):
                if _settled(version.config):
                    versions.save_version(version)

    def arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"

    # -- finding functions, versions and aliases
    def locate(self, raw: Any, qualifier: str | None = None, *, pattern: str = v.FUNCTION_NAME,
               qualifier_pattern: str = v.QUALIFIER) -> tuple[FunctionRecord, str | None]:
        """The function a FunctionName (name, name:qualifier, partial or full ARN) names, and the qualifier
        asked for there or in the Qualifier parameter (not checked against the versions and aliases)."""
        errors: list[str] = []
        v.check_function_name(errors, raw, pattern)
        if qualifier is not None:
            v.check_string(errors, qualifier, "qualifier", qualifier_pattern, 128)
        if errors:
            raise validation(errors)
        name, arn_qualifier, account, region = v.locate(raw)
        if region is not None and region != self.region:
            raise not_found(f"Functions from '{region}' are not reachable in this region ('{self.region}')")
        if qualifier and arn_qualifier and qualifier != arn_qualifier:
            raise invalid("The derived qualifier from the function name does not match the specified qualifier.")
        qualifier = qualifier or arn_qualifier
        rec = self.store.get(name)
        if rec is None or (account is not None and account != self.account):
            arn = f"arn:aws:lambda:{self.region}:{account or self.account}:function:{name}"
            raise not_found(f"Function not found: {arn}" + (f":{qualifier}" if qualifier else ""))
        return rec, qualifier

    def split_name(self, raw: Any) -> tuple[str, str | None]:
        """(name, qualifier) of a FunctionName that names a function of this region and account (which
        may not exist); an ARN of another region or account is answered as AWS does."""
        name, qualifier = parse_function_name(raw)
        _, _, account, region = v.locate(raw)
        if region is not None and region != self.region:
            raise not_found(f"Functions from '{region}' are not reachable in this region ('{self.region}')")
        if account is not None and account != self.account:
            raise not_found(f"Function not found: arn:aws:lambda:{self.region}:{account}:function:{name}"
                            + (f":{qualifier}" if qualifier else ""))
        return name, qualifier

    def get(self, raw_name: Any) -> tuple[FunctionRecord, str | None]:
        """The function itself ($LATEST) for operations on an unqualified function."""
        rec, qualifier = self.locate(raw_name)
        if qualifier not in (None, "$LATEST"):
            raise not_found(f"Function not found: {rec.config['FunctionArn']}:{qualifier}")
        return rec, qualifier

    def qualifier_exists(self, rec: FunctionRecord, qualifier: str | None) -> bool:
        """True for no qualifier, $LATEST, and the number of a version or the name of an alias of rec."""
        if qualifier is None or qualifier == "$LATEST":
            return True
        if qualifier.isdigit():
            return self.versions.version(rec.name, qualifier) is not None
        return self.versions.alias(rec.name, qualifier) is not None

    def resolve(self, raw: Any, qualifier: str | None = None,
                pattern: str = v.NAMESPACED_FUNCTION_NAME) -> tuple[Target, str]:
        """What runs for a FunctionName and Qualifier ($LATEST, a version, or the version an alias routes
        this call to), and the ARN that was asked for."""
        if qualifier is None:
            rec = self.store.get(raw)  # a plain, existing name: its own (valid) spelling
            if rec is not None:
                return rec, rec.config["FunctionArn"]
        rec, qualifier = self.locate(raw, qualifier, pattern=pattern)
        return self.target(rec, qualifier)

    def target(self, rec: FunctionRecord, qualifier: str | None, *, routed: bool = True) -> tuple[Target, str]:
        """(what runs, the ARN asked for) for a qualifier of rec; ResourceNotFound when it does not exist.
        An alias with a routing config picks its version per call, unless not routed (reading it)."""
        arn = rec.config["FunctionArn"]
        if qualifier is None:
            return rec, arn
        arn = f"{arn}:{qualifier}"
        if qualifier == "$LATEST":
            return rec, arn
        if qualifier.isdigit():
            version = self.versions.version(rec.name, qualifier)
            if version is None:
                raise not_found(f"Function not found: {arn}")
            return version, arn
        alias = self.versions.alias(rec.name, qualifier)
        if alias is None:
            raise not_found(f"Function not found: {arn}")
        chosen = alias.config["FunctionVersion"]
        weights = (alias.config.get("RoutingConfig") or {}).get("AdditionalVersionWeights") if routed else None
        for version, weight in (weights or {}).items():
            if random.random() < weight:
                chosen = version
        if chosen == "$LATEST":
            return rec, arn
        found = self.versions.version(rec.name, chosen)
        if found is None:  # (an alias's versions cannot be deleted)
            raise not_found(f"Function not found: {self.arn(rec.name)}:{chosen}")
        return found, arn

    def find(self, ref: str) -> tuple[Target, str] | None:
        """resolve() for a stored reference (`name` or `name:qualifier`), None when it is gone."""
        name, _, qualifier = ref.partition(":")
        rec = self.store.get(name)
        if rec is None:
            return None
        try:
            return self.target(rec, qualifier or None)
        except AwsError:
            return None

    def spec(self, rec: Target) -> FunctionSpec:
        cfg = rec.config
        variables = dict((cfg.get("Environment") or {}).get("Variables") or {})
        logging_config = cfg.get("LoggingConfig") or {}
        if logging_config.get("LogFormat") == "JSON":
            variables.setdefault("AWS_LAMBDA_LOG_FORMAT", "JSON")
            if logging_config.get("ApplicationLogLevel"):
                variables.setdefault("AWS_LAMBDA_LOG_LEVEL", logging_config["ApplicationLogLevel"])
        opt_dir = self.layers.opt_dir(self.layers.in_config(cfg))  # (a few queries, once per revision)
        return FunctionSpec(
            name=rec.name, arn=cfg["FunctionArn"], runtime=cfg.get("Runtime", ""), handler=cfg.get("Handler", ""),
            memory_mb=cfg["MemorySize"], timeout_s=cfg["Timeout"], task_root=self.code.task_root(rec.code_sha),
            opt_dir=opt_dir, region=self.region, revision_id=cfg["RevisionId"], variables=variables,
            interpreters=self.interpreters, endpoint_url=self.endpoint_url, memory_limit=self.memory_limit,
            version=rec.version, ephemeral_mb=(cfg.get("EphemeralStorage") or {}).get("Size", 512),
        )

    # -- validation
    @staticmethod
    def _check_source(code: Any, has_zip: bool) -> None:
        """The request must carry its code as a ZipFile (the upload holds it, outside the doc)."""
        if has_zip:
            return
        if isinstance(code, dict) and ("S3Bucket" in code or "ImageUri" in code):
            raise invalid("lambdalet accepts function code as a ZipFile only (S3 and images are not "
                          "available locally).")
        raise invalid("Please provide a source for function code.")

    @staticmethod
    def _validate(cfg: dict[str, Any]) -> None:
        runtime = cfg.get("Runtime")
        if not isinstance(runtime, str) or not runtime:
            raise invalid("Runtime is required for .zip deployment packages.")
        if not is_supported_runtime(runtime):
            raise invalid(f"Value {runtime} at 'runtime' failed to satisfy constraint: lambdalet cannot run "
                          "this runtime (supported: provided, provided.al2, provided.al2023, and the built-in "
                          "python3.x and nodejsNN.x runtimes once available).")
        handler = cfg.get("Handler")
        if not runtime.startswith("provided") and not handler:
            raise invalid("Handler is required for .zip deployment packages.")
        if handler is not None and (not isinstance(handler, str) or len(handler) > 128):
            raise invalid("Handler must be a string of at most 128 characters.")
        timeout = cfg.get("Timeout")
        if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 900:
            raise invalid(f"Value {timeout} at 'timeout' failed to satisfy constraint: Member must have value "
                          "less than or equal to 900 and greater than or equal to 1")
        memory = cfg.get("MemorySize")
        if not isinstance(memory, int) or isinstance(memory, bool) or not 128 <= memory <= 10240:
            raise invalid(f"Value {memory} at 'memorySize' failed to satisfy constraint: Member must have value "
                          "less than or equal to 10240 and greater than or equal to 128")
        env = cfg.get("Environment")
        if env is not None and not isinstance(env, dict):
            raise invalid("Environment must be an object with a Variables map.")
        variables = (env or {}).get("Variables") or {}
        if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
            raise invalid("Environment.Variables must be a map of strings to strings.")
        for key in variables:
            if not isinstance(key, str) or not _ENV_KEY.match(key):
                raise invalid(f"Environment variable key '{key}' is invalid: keys start with a letter, are at "
                              "least 2 characters long and contain only letters, digits and underscores.")
        reserved = sorted(k for k in variables if k in RESERVED_VARIABLES)
        if reserved:
            raise invalid("Lambda was unable to configure your environment variables because the environment "
                          f"variables you have provided contains reserved keys that are currently not "
                          f"supported for modification. Reserved keys used in this request: {', '.join(reserved)}")
        measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)  # what AWS measures
        if len(measured.encode()) > MAX_ENV_BYTES:
            raise invalid("Lambda was unable to configure your environment variables because the environment "
                          f"variables you have provided exceeded the 4KB limit. String measured: {measured}")
        arch = cfg.get("Architectures")
        if arch is not None and (not isinstance(arch, list) or len(arch) != 1
                                 or arch[0] not in ("x86_64", "arm64")):
            raise invalid("Architectures must be ['x86_64'] or ['arm64'].")
        if not isinstance(cfg.get("Role", ""), str):
            raise invalid("Role must be a string.")
        description = cfg.get("Description", "")
        if not isinstance(description, str) or len(description) > 256:
            raise invalid("Description must be a string of at most 256 characters.")
        _check_object(cfg, "TracingConfig", {"Mode": ("Active", "PassThrough")})
        _check_object(cfg, "LoggingConfig", {"LogFormat": ("Text", "JSON"),
                                             "ApplicationLogLevel": _LOG_LEVELS, "SystemLogLevel": _LOG_LEVELS,
                                             "LogGroup": str})
        _check_object(cfg, "EphemeralStorage", {"Size": range(512, 10241)})
        _check_dead_letter(cfg)

    @staticmethod
    def _check_members(body: dict[str, Any], *, creating: bool) -> None:
        """The members botocore's model constrains: every one that fails is named (ValidationException)."""
        errors: list[str] = []
        raw = body.get("FunctionName")
        plain = isinstance(raw, str) and v.locate(raw)[0] == raw
        if creating and plain and len(raw) > 64:  # (a new function's own name: 64 characters at most)
            errors.append(v.max_length_error(raw, "functionName", 64))
        elif creating:
            v.check_function_name(errors, raw)
        name_only = len(errors) == 1 and plain
        v.check_string(errors, body.get("Role"), "role", v.ROLE, 10000, required=creating)
        # (the model's bounds; within them, Lambda's own limits answer InvalidParameterValueException)
        v.check_range(errors, body.get("Timeout"), "timeout", 1, 5400)
        v.check_range(errors, body.get("MemorySize"), "memorySize", 128, 32768)
        if name_only and len(errors) == 1:
            # (a bad plain name alone: AWS answers InvalidParameterValueException with the same text)
            raise invalid(validation(errors).message)
        if errors:
            raise validation(errors)

    # -- operations
    async def create(self, upload: CodeUpload) -> dict[str, Any]:
        """CreateFunction: validate the request, then store its code, then the function."""
        body = upload.doc
        self._check_members(body, creating=True)
        name, qualifier, account, region = v.locate(body["FunctionName"])
        if region is not None and region != self.region:
            raise not_found(f"Functions from '{region}' are not reachable in this region ('{self.region}')")
        if qualifier is not None or (account is not None and account != self.account):
            raise invalid(f"Invalid function name {body['FunctionName']}: a new function is named by its name, "
                          "or its unqualified ARN in this account.")
        if body.get("PackageType", "Zip") != "Zip":
            raise invalid("lambdalet runs .zip functions only (PackageType Zip).")
        if self.store.get(name) is not None:
            raise conflict(f"Function already exist: {name}")
        tags = v.check_tags(body["Tags"]) if body.get("Tags") is not None else {}
        layers = self.layers.resolve(body["Layers"]) if body.get("Layers") is not None else []
        cfg: dict[str, Any] = {
            "FunctionName": name, "FunctionArn": self.arn(name), "Runtime": body.get("Runtime"),
            "Role": body.get("Role"), "Handler": body.get("Handler"), "Description": body.get("Description", ""),
            "Timeout": body.get("Timeout", 3), "MemorySize": body.get("MemorySize", 128),
            "Architectures": body.get("Architectures") or ["x86_64"],
        }
        for key in ("Environment", "LoggingConfig", "TracingConfig", "EphemeralStorage", "DeadLetterConfig"):
            if body.get(key) is not None:
                cfg[key] = body[key]
        self._validate(cfg)
        self._check_source(body.get("Code"), upload.has_zip)
        stored = await upload.store()
        await self.layers.prepare(layers, stored.task_root, self.code)
        if layers:
            cfg["Layers"] = self.layers.describe(layers)
        self._finish_config(cfg, stored)
        for key in _UPDATE_STATUS:  # a new function is Pending; no update of it is in progress
            cfg.pop(key, None)
        cfg["LastUpdateStatus"] = "Successful"
        _begin(cfg, "State")
        rec = FunctionRecord(name, cfg, stored.sha_hex, None, None)
        if not self.store.create(rec):  # created by another request while the code was unpacked
            raise conflict(f"Function already exist: {name}")
        if tags:
            self.policies.set_tags(name, tags)
        self._settle_soon(rec)
        if body.get("Publish") is True:
            return self.publish(rec)
        return dict(cfg)

    def _settle_soon(self, rec: Target) -> None:
        """Finish rec's transition (Pending -> Active, InProgress -> Successful) right after this request."""
        def settle() -> None:
            if isinstance(rec, VersionRecord):
                if self.versions.version(rec.name, rec.version) is rec and _settled(rec.config):
                    self.versions.save_version(rec)
            elif self.store.get(rec.name) is rec:
                cfg = dict(rec.config)
                if _settled(cfg):
                    rec.config = cfg  # (a new dict: the one answered may still be on its way out)
                    self.store.save(rec)
        asyncio.get_running_loop().call_soon(settle)

    def _finish_config(self, cfg: dict[str, Any], stored: StoredCode) -> None:
        cfg.update({
            "CodeSize": stored.size, "CodeSha256": stored.sha256_b64, "Version": "$LATEST",
            "LastModified": now_iso(), "RevisionId": str(uuid.uuid4()), "State": "Active",
            "PackageType": "Zip",
        })
        _begin(cfg, "LastUpdateStatus")
        cfg.setdefault("TracingConfig", {"Mode": "PassThrough"})
        cfg.setdefault("EphemeralStorage", {"Size": 512})
        logging_config = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{cfg['FunctionName']}"}
        logging_config.update(cfg.get("LoggingConfig") or {})
        cfg["LoggingConfig"] = _with_log_levels(logging_config)
        cfg["SnapStart"] = {"ApplyOn": "None", "OptimizationStatus": "Off"}
        cfg["RuntimeVersionConfig"] = {"RuntimeVersionArn": f"arn:aws:lambda:{self.region}::runtime:lambdalet"}

    def _check_revision(self, rec: FunctionRecord, body: dict[str, Any]) -> None:
        wanted = body.get("RevisionId")
        if wanted is not None and wanted != rec.config["RevisionId"]:
            raise AwsError(412, "PreconditionFailedException",
                           "The Revision Id provided does not match the latest Revision Id. Call the "
                           "GetFunction/GetAlias API to retrieve the latest Revision Id")

    async def update_code(self, raw_name: str, upload: CodeUpload) -> dict[str, Any]:
        """UpdateFunctionCode: store the new code, then point the function at it."""
        body = upload.doc
        rec, _ = self.get(raw_name)
        self._check_revision(rec, body)
        if body.get("Architectures"):
            self._validate({**rec.config, "Architectures": body["Architectures"]})
        self._check_source(body, upload.has_zip)
        stored = await upload.store()
        await self.layers.prepare(self.layers.in_config(rec.config), stored.task_root, self.code)
        rec, _ = self.get(raw_name)  # again: it may have changed, or gone, while the code was unpacked
        self._check_revision(rec, body)
        cfg = dict(rec.config)
        if body.get("Architectures"):
            cfg["Architectures"] = body["Architectures"]
        self._finish_config(cfg, stored)
        rec.config, rec.code_sha = cfg, stored.sha_hex
        self.store.save(rec)
        self._settle_soon(rec)
        if body.get("Publish") is True:
            return self.publish(rec)
        return dict(cfg)

    async def prepare_layers(self, raw_name: str, body: dict[str, Any]) -> None:
        """Check an UpdateFunctionConfiguration's Layers and build their /opt before update_config."""
        if body.get("Layers") is not None:
            rec, _ = self.get(raw_name)
            await self.layers.prepare(self.layers.resolve(body["Layers"]), self.code.task_root(rec.code_sha),
                                      self.code)

    def update_config(self, raw_name: str, body: dict[str, Any]) -> dict[str, Any]:
        rec, _ = self.get(raw_name)
        self._check_members(body, creating=False)
        self._check_revision(rec, body)
        cfg = dict(rec.config)
        for key in CONFIG_FIELDS:
            if body.get(key) is not None and key != "Layers":
                cfg[key] = body[key]
        if isinstance(body.get("LoggingConfig"), dict):
            merged = {**(rec.config.get("LoggingConfig") or {}), **body["LoggingConfig"]}
            cfg["LoggingConfig"] = _with_log_levels(merged)
        if body.get("Layers") is not None:
            cfg.pop("Layers", None)
            if body["Layers"]:
                cfg["Layers"] = self.layers.describe(self.layers.resolve(body["Layers"]))
        self._validate(cfg)
        cfg.update({"LastModified": now_iso(), "RevisionId": str(uuid.uuid4())})
        _begin(cfg, "LastUpdateStatus")
        rec.config = cfg
        self.store.save(rec)
        self._settle_soon(rec)
        return dict(cfg)

    def publish(self, rec: FunctionRecord, description: str | None = None, code_sha256: str | None = None,
                revision_id: str | None = None) -> dict[str, Any]:
        """PublishVersion: a new, immutable version from $LATEST; the last one when nothing changed since."""
        self._check_revision(rec, {"RevisionId": revision_id})
        current = rec.config["CodeSha256"]
        if code_sha256 is not None and code_sha256 != current:
            raise invalid(f"CodeSHA256 ({code_sha256}) is different from current CodeSHA256 in $LATEST "
                          f"({current}). Please try again with the CodeSHA256 in $LATEST.")
        number = self.versions.last_number(rec.name)
        last = self.versions.version(rec.name, str(number)) if number else None
        if last is not None and last.source_revision == rec.config["RevisionId"]:
            return dict(last.config)
        number += 1
        # A deep copy: nothing done to $LATEST's configuration may reach the version's.
        cfg = json.loads(json.dumps({k: val for k, val in rec.config.items() if k not in _UPDATE_STATUS}))
        cfg.update({"Version": str(number), "FunctionArn": f"{self.arn(rec.name)}:{number}",
                    "RevisionId": str(uuid.uuid4())})
        if description is not None:
            cfg["Description"] = description
        _begin(cfg, "State")
        # Publishing is a change of the function: $LATEST gets a new RevisionId (as on AWS).
        rec.config = {**rec.config, "RevisionId": str(uuid.uuid4())}
        self.store.save(rec)
        version = VersionRecord(rec.name, str(number), cfg, rec.code_sha, rec.config["RevisionId"], rec)
        self.versions.add_version(version)
        self._settle_soon(version)
        return dict(cfg)

    def delete(self, raw_name: Any, qualifier: str | None = None) -> tuple[FunctionRecord, str | None]:
        """DeleteFunction: the whole function, or with a qualifier one version only (never $LATEST, nor an
        alias, nor a version an alias routes to). Returns the function and the version deleted, if one."""
        rec, qualifier = self.locate(raw_name, qualifier, pattern=v.NAMESPACED_FUNCTION_NAME)
        if qualifier is None:
            self.store.delete(rec.name)
            self.versions.delete_function(rec.name)
            self.policies.forget(rec.name)
            return rec, None
        if qualifier == "$LATEST":
            raise invalid("$LATEST version cannot be deleted without deleting the function.")
        if not qualifier.isdigit():
            raise invalid("Deletion of aliases is not currently supported.")
        if self.versions.version(rec.name, qualifier) is None:
            raise not_found(f"Function not found: {rec.config['FunctionArn']}:{qualifier}")
        users = [a.name for a in self.versions.aliases(rec.name) if a.config["FunctionVersion"] == qualifier
                 or qualifier in ((a.config.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})]
        if users:
            raise conflict(f"Unable to delete version because the following aliases reference it: "
                           f"[{', '.join(users)}]")
        self.versions.delete_version(rec.name, qualifier)
        self.policies.set_statements(rec.name, qualifier, [])  # (its resource policy goes with it)
        return rec, qualifier

    def total_code_size(self) -> int:
        """Bytes of the code of every function's $LATEST and published versions."""
        return sum(rec.config.get("CodeSize", 0) + sum(v.config.get("CodeSize", 0)
                                                        for v in self.versions.versions(rec.name))
                   for rec in self.store.all())

    def delete_alias(self, rec: FunctionRecord, alias: str) -> None:
        """DeleteAlias: the alias, its function URL and its resource policy."""
        self.versions.delete_alias(rec.name, alias)
        self.policies.set_statements(rec.name, alias, [])

    def url_target(self, url_id: str) -> tuple[dict[str, Any], Target, str] | None:
        """(URL config, what runs, the ARN invoked) for a function URL id ($LATEST's or an alias's)."""
        rec = self.store.by_url_id(url_id)
        if rec is not None and rec.url_config is not None:
            return rec.url_config, rec, rec.config["FunctionArn"]
        alias = self.versions.alias_by_url_id(url_id)
        function = None if alias is None else self.store.get(alias.function)
        if alias is None or alias.url_config is None or function is None:
            return None
        target, arn = self.target(function, alias.name)
        return alias.url_config, target, arn

    def tags(self, rec: FunctionRecord) -> dict[str, str]:
        return self.policies.tags(rec.name)

    def new_url_id(self) -> str:
        return secrets.token_hex(16)
