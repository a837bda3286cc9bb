"""The `context` object handed to Python handlers, with AWS's attribute names."""

from __future__ import annotations

import os
import sys
import time


class CognitoIdentity:
    """context.identity: always present, fields None when the invoke carried no identity."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data: dict | None) -> None:
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")

    def __repr__(self) -> str:
        return (f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id}, "
                f"cognito_identity_pool_id={self.cognito_identity_pool_id}])")


class Client:
    """context.client_context.client (mobile SDK client information)."""

    __slots__ = ("app_package_name", "app_title", "app_version_code", "app_version_name", "installation_id")

    def __init__(self, data: dict) -> None:
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")

    def __repr__(self) -> str:
        return (f"Client([installation_id={self.installation_id}, app_title={self.app_title}, "
                f"app_version_name={self.app_version_name}, app_version_code={self.app_version_code}, "
                f"app_package_name={self.app_package_name}])")


class ClientContext:
    """context.client_context: `custom`, `env` and `client` from the invoke's client context."""

    __slots__ = ("client", "custom", "env")

    def __init__(self, data: dict) -> None:
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = data.get("custom")
        self.env = data.get("env")

    def __repr__(self) -> str:
        return f"ClientContext([custom={self.custom}, env={self.env}, client={self.client}])"


class LambdaContext:
    """What AWS passes as the handler's second argument."""

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str | None,
                 client_context: dict | None, identity: dict | None, tenant_id: str | None) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id
        self.client_context = ClientContext(client_context) if client_context is not None else None
        self.identity = CognitoIdentity(identity)
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invoke times out (never negative)."""
        return max(0, self._deadline_ms - int(time.time() * 1000))

    # Set by the runtime: writes one raw record to the log sink.
    _log_writer = None

    def log(self, msg: str) -> None:
        """Write msg to the function's log as one record, as is (no newline added)."""
        if self._log_writer is not None:
            self._log_writer(str(msg), None)
        else:
            sys.stdout.write(str(msg))
            sys.stdout.flush()

    def __repr__(self) -> str:
        return (f"LambdaContext([aws_request_id={self.aws_request_id}, log_group_name={self.log_group_name}, "
                f"log_stream_name={self.log_stream_name}, function_name={self.function_name}, "
                f"memory_limit_in_mb={self.memory_limit_in_mb}, function_version={self.function_version}, "
                f"invoked_function_arn={self.invoked_function_arn}, client_context={self.client_context}, "
                f"identity={self.identity}, tenant_id={self.tenant_id}])")
