"""AWS-shaped errors: `x-amzn-ErrorType` header, JSON body with message/Type, and the HTTP status."""

from __future__ import annotations

import json


class AwsError(Exception):
    """An error answer of the front door, as botocore parses it."""

    def __init__(self, status: int, code: str, message: str, error_kind: str = "User", **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_kind = error_kind
        self.extra = extra

    def body(self) -> bytes:
        doc: dict[str, object] = {"__type": self.code, "Type": self.error_kind, "message": self.message,
                                  "Message": self.message, **self.extra}
        return json.dumps(doc).encode()

    def headers(self, request_id: str) -> dict[str, str]:
        return {"Content-Type": "application/json", "x-amzn-ErrorType": self.code,
                "x-amzn-RequestId": request_id}


def not_found(message: str) -> AwsError:
    return AwsError(404, "ResourceNotFoundException", message)


def invalid(message: str) -> AwsError:
    return AwsError(400, "InvalidParameterValueException", message)


def validation(errors: list[str]) -> AwsError:
    """Lambda's answer to request members that break the model's constraints, all named at once."""
    count = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected"
    return AwsError(400, "ValidationException", f"{count}: {'; '.join(errors)}")


def conflict(message: str) -> AwsError:
    return AwsError(409, "ResourceConflictException", message)


def request_too_large(operation: str, limit: int) -> AwsError:
    """Lambda's answer to a request body over the operation's limit."""
    return AwsError(413, "RequestEntityTooLargeException",
                    f"Request must be smaller than {limit} bytes for the {operation} operation")


def service_error(message: str = "An internal error occurred.") -> AwsError:
    return AwsError(500, "ServiceException", message, error_kind="Service")


_PROTOCOL_CODES = {400: "InvalidRequestContentException", 413: "RequestTooLargeException",
                   431: "RequestTooLargeException"}


def protocol_error(status: int, message: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The front door's answer to a request it cannot even parse (http11's error_answer)."""
    kind = "User" if status < 500 else "Service"
    err = AwsError(status, _PROTOCOL_CODES.get(status, "ServiceException"), message, error_kind=kind)
    return err.body(), [("Content-Type", "application/json"), ("x-amzn-ErrorType", err.code)]
