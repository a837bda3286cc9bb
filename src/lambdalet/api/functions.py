"""Function management: validate and apply CreateFunction / Update* / Delete, in Lambda's terms."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lambdalet.api.constraints import check_tags
from lambdalet.api.errors import AwsError, conflict, invalid, not_found
from lambdalet.limits import MAX_ENV_BYTES
from lambdalet.scheduler import RESERVED_VARIABLES, FunctionSpec, is_supported_runtime
from lambdalet.store import CodeStore, FunctionRecord, FunctionStore, StoredCode

if TYPE_CHECKING:
    from lambdalet.api.code_upload import CodeUpload
    from lambdalet.api.layers import FunctionLayers
    from lambdalet.store.policies import PolicyStore

_NAME = re.compile(r"^[a-zA-Z0-9-_]{1,64}$")
_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:lambda:([a-z0-9-]+):(\d{12}):function:([a-zA-Z0-9-_]+)(?::([^:]+))?$")
_PARTIAL = re.compile(r"^(\d{12}):function:([a-zA-Z0-9-_]+)(?::([^:]+))?$")
_ENV_KEY = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]+$")

CONFIG_FIELDS = ("Role", "Handler", "Description", "Timeout", "MemorySize", "Environment", "Runtime",
                 "Architectures", "LoggingConfig", "TracingConfig", "EphemeralStorage", "Layers", "DeadLetterConfig")


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def parse_function_name(raw: str) -> tuple[str, str | None]:
    """(name, qualifier) from a name, name:qualifier, partial ARN or full ARN."""
    m = _ARN.match(raw)
    if m:
        return m.group(3), m.group(4)
    m = _PARTIAL.match(raw)
    if m:
        return m.group(2), m.group(3)
    name, _, qualifier = raw.partition(":")
    if not _NAME.match(name):
        raise AwsError(400, "ValidationException",
                       f"1 validation error detected: Value '{raw}' at 'functionName' failed to satisfy "
                       "constraint: Member must satisfy regular expression pattern: "
                       "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
                       "(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
    return name, qualifier or None


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
                 policies: PolicyStore, interpreters: dict[str, str], *, memory_limit: bool = True) -> None:
        self.store = store
        self.code = code
        self.region = region
        self.account = account
        self.layers = layers
        self.policies = policies
        self.interpreters = interpreters
        self.endpoint_url = ""  # the server's own address, known once it listens
        self.memory_limit = memory_limit

    def arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"

    def get(self, raw_name: str) -> tuple[FunctionRecord, str | None]:
        name, qualifier = parse_function_name(raw_name)
        rec = self.store.get(name)
        if rec is None or (qualifier is not None and qualifier != "$LATEST"):
            target = self.arn(name) + (f":{qualifier}" if qualifier else "")
            raise not_found(f"Function not found: {target}")
        return rec, qualifier

    def spec(self, rec: FunctionRecord) -> FunctionSpec:
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
        size = sum(len(k) + len(v) for k, v in variables.items())
        if size > MAX_ENV_BYTES:
            raise invalid("Lambda was unable to configure your environment variables because the environment "
                          f"variables you have provided exceeded the 4KB limit. String measured: {size}")
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

    # -- operations
    async def create(self, upload: CodeUpload) -> dict[str, Any]:
        """CreateFunction: validate the request, then store its code, then the function."""
        body = upload.doc
        name = body.get("FunctionName")
        if not isinstance(name, str) or not name:
            raise invalid("FunctionName is required.")
        name, _ = parse_function_name(name)
        if body.get("PackageType", "Zip") != "Zip":
            raise invalid("lambdalet runs .zip functions only (PackageType Zip).")
        if not isinstance(body.get("Role"), str):
            raise invalid("Role is required.")
        if self.store.get(name) is not None:
            raise conflict(f"Function already exist: {name}")
        tags = check_tags(body["Tags"]) if body.get("Tags") is not None else {}
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
        rec = FunctionRecord(name, cfg, stored.sha_hex, None, None)
        if not self.store.create(rec):  # created by another request while the code was unpacked
            raise conflict(f"Function already exist: {name}")
        if tags:
            self.policies.set_tags(name, tags)
        return cfg

    def _finish_config(self, cfg: dict[str, Any], stored: StoredCode) -> None:
        cfg.update({
            "CodeSize": stored.size, "CodeSha256": stored.sha256_b64, "Version": "$LATEST",
            "LastModified": now_iso(), "RevisionId": str(uuid.uuid4()), "State": "Active",
            "LastUpdateStatus": "Successful", "PackageType": "Zip",
        })
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
        return cfg

    async def prepare_layers(self, raw_name: str, body: dict[str, Any]) -> None:
        """Check an UpdateFunctionConfiguration's Layers and build their /opt before update_config."""
        if body.get("Layers") is not None:
            rec, _ = self.get(raw_name)
            await self.layers.prepare(self.layers.resolve(body["Layers"]), self.code.task_root(rec.code_sha),
                                      self.code)

    def update_config(self, raw_name: str, body: dict[str, Any]) -> dict[str, Any]:
        rec, _ = self.get(raw_name)
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
        rec.config = cfg
        self.store.save(rec)
        return cfg

    def delete(self, raw_name: str) -> FunctionRecord:
        name, qualifier = parse_function_name(raw_name)
        rec = self.store.get(name)
        if rec is None:
            raise not_found(f"Function not found: {self.arn(name)}")
        if qualifier not in (None, "$LATEST"):
            raise not_found(f"Function not found: {self.arn(name)}:{qualifier}")
        self.store.delete(name)
        self.policies.forget(name)
        return rec

    def qualifier_exists(self, rec: FunctionRecord, qualifier: str | None) -> bool:
        """Whether rec has the version or alias qualifier (None: the function itself). A stand-in:
        only None and $LATEST exist here; versions and aliases are resolved elsewhere."""
        return qualifier in (None, "$LATEST")

    def tags(self, rec: FunctionRecord) -> dict[str, str]:
        return self.policies.tags(rec.name)

    def new_url_id(self) -> str:
        return secrets.token_hex(16)
