"""The runtime loop: load the handler, then /next -> handler(event, context) -> /response or /error."""

from __future__ import annotations

import os
import sys

from . import fast_json
from .handler_loader import FaultError, error_document, load_handler
from .lambda_context import LambdaContext
from .log_sink import LogSink
from .logging_hook import when_logging_imported
from .rapid_client import RapidClient, RuntimeApiError

# AWS's Python 3.12+ runtimes emit non-ASCII characters as is; older ones escape them.
_RAW_UNICODE_ENVS = frozenset(f"AWS_Lambda_python3.{minor}" for minor in range(12, 16))


def log_level_from_env(value: str | None) -> str | None:
    """AWS_LAMBDA_LOG_LEVEL as a `logging` level name (TRACE has no Python equivalent: DEBUG)."""
    if not value:
        return None
    level = value.strip().upper()
    return {"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level)


def _json_default(value):
    # Decimal (e.g. from DynamoDB) is written as a number, like AWS's runtime does.
    if type(value).__name__ == "Decimal":
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class Runtime:
    """One process's runtime: the Runtime API client, the log sink and the user's handler."""

    def __init__(self, handler_name: str) -> None:
        env = os.environ
        self.handler_name = handler_name
        self.ensure_ascii = env.get("AWS_EXECUTION_ENV") not in _RAW_UNICODE_ENVS
        level = log_level_from_env(env.get("AWS_LAMBDA_LOG_LEVEL"))
        json_format = env.get("AWS_LAMBDA_LOG_FORMAT", "").strip().upper() == "JSON"
        self.sink = LogSink(json_format, level is not None)
        self.client = RapidClient(env["AWS_LAMBDA_RUNTIME_API"])

        def install_logging() -> None:
            from .aws_logging import install

            install(self.sink, level)

        when_logging_imported(install_logging)

    def init(self):
        """Import the handler; on failure report /init/error and exit(1) as AWS does."""
        try:
            return load_handler(self.handler_name)
        except Exception as exc:
            doc = error_document(exc, "")
            self.sink.write_init_warning()
            self.sink.write_error(doc)
            self.client.post_init_error(doc["errorType"], self._dumps(doc))
            sys.exit(1)

    def serve_forever(self, handler) -> None:
        try:
            invocation = self.client.next_invocation()
            while True:
                invocation = self.invoke(handler, invocation)
        except RuntimeApiError as e:
            sys.stderr.write(f"lambdalet runtime: {e}\n")
            sys.exit(1)

    def invoke(self, handler, invocation):
        """Run one invocation, answer it, and return the next (its /next goes with the answer)."""
        headers = invocation.headers
        request_id = invocation.request_id
        self.sink.request_id = request_id
        self.sink.tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        attempt = headers.get("lambda-runtime-invocation-id")
        echo = (("Lambda-Runtime-Invocation-Id", attempt),) if attempt else ()
        try:
            context = self._context(request_id, headers)
            event = self._unmarshal(invocation.body, headers.get("content-type", "application/json"))
            result = handler(event, context)
            body, content_type = self._marshal(result)
        except Exception as exc:
            doc = error_document(exc, request_id)
            self.sink.write_error(doc)
            return self.client.respond_then_next(request_id, "error", self._dumps(doc), "application/json", echo)
        return self.client.respond_then_next(request_id, "response", body, content_type, echo)

    def _context(self, request_id: str, headers: dict) -> LambdaContext:
        client_context = self._header_json(headers, "lambda-runtime-client-context", "Client Context")
        identity = self._header_json(headers, "lambda-runtime-cognito-identity", "Cognito Identity")
        context = LambdaContext(
            request_id,
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            headers.get("lambda-runtime-invoked-function-arn"),
            client_context,
            identity,
            headers.get("lambda-runtime-aws-tenant-id"),
        )
        context._log_writer = self.sink.write
        return context

    @staticmethod
    def _header_json(headers: dict, name: str, what: str):
        raw = headers.get(name)
        if not raw:
            return None
        try:
            return fast_json.loads(raw)
        except Exception as e:
            message = f"Unable to parse {what} JSON: {e}"
            raise FaultError("Runtime.LambdaContextUnmarshalError", message) from None

    @staticmethod
    def _unmarshal(body: bytes, content_type: str):
        if content_type != "application/json":
            return body
        try:
            return fast_json.loads(body)
        except Exception as e:
            raise FaultError("Runtime.UnmarshalError", f"Unable to unmarshal input: {e}") from None

    def _marshal(self, result) -> tuple[bytes, str]:
        if isinstance(result, (bytes, bytearray)):
            return bytes(result), "application/unknown"
        try:
            text = fast_json.dumps(result, self.ensure_ascii, _json_default)
        except Exception as e:
            raise FaultError("Runtime.MarshalError", f"Unable to marshal response: {e}") from None
        return text.encode("utf-8"), "application/json"

    def _dumps(self, doc: dict) -> bytes:
        return fast_json.dumps(doc, self.ensure_ascii, str).encode("utf-8")


def run(handler_name: str) -> None:
    """Run the runtime for `handler_name` until the process is stopped."""
    runtime = Runtime(handler_name)
    handler = runtime.init()
    runtime.serve_forever(handler)
