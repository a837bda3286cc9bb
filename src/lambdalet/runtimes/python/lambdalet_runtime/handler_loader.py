"""Resolve a handler string (`path/to/module.function`, `package.module.function`) as AWS does."""

from __future__ import annotations

import os
import sys

# Frames from these files are the runtime's, not the user's: they are cut from stack traces.
RUNTIME_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FaultError(Exception):
    """A runtime-detected failure with AWS's error type, message and stack trace."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []


def load_handler(handler: str):
    """Import the handler's module and return the function. Raises FaultError, or the user's exception."""
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultError("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {e}") from None
    if modname.split(".")[0] in sys.builtin_module_names:
        raise FaultError("Runtime.BuiltInModuleConflict",
                         f"Cannot use built-in module {modname} as a handler module")
    dotted = modname.replace("/", ".")
    try:
        __import__(dotted)  # what importlib.import_module does, without importing importlib
        module = sys.modules[dotted]
    except ImportError as e:
        raise FaultError("Runtime.ImportModuleError", f"Unable to import module '{modname}': {e}") from None
    except SyntaxError as e:
        trace = [f'  File "{e.filename}" Line {e.lineno}\n    {e.text}']
        raise FaultError("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {e}",
                         trace) from None
    try:
        return getattr(module, fname)
    except AttributeError:
        message = f"Handler '{fname}' missing on module '{modname}'"
        raise FaultError("Runtime.HandlerNotFound", message) from None


def user_stack_trace(tb) -> list[str]:
    """traceback.format_list entries for `tb`, minus the runtime's and importlib's own frames."""
    import traceback

    frames = [
        frame for frame in traceback.extract_tb(tb)
        if not frame.filename.startswith(RUNTIME_DIR) and not frame.filename.startswith("<frozen importlib")
    ]
    return traceback.format_list(frames)


def error_document(exc: BaseException, request_id: str) -> dict:
    """AWS's error body for an exception: errorMessage, errorType, requestId, stackTrace."""
    if isinstance(exc, FaultError):
        return {"errorMessage": exc.message, "errorType": exc.error_type, "requestId": request_id,
                "stackTrace": exc.stack_trace}
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": request_id,
            "stackTrace": user_stack_trace(exc.__traceback__)}
