"""The Runtime API served to each execution environment (/next, /response, /error, /init/error)."""

from lambdalet.runtime_api.server import RuntimeApiServer
from lambdalet.runtime_api.session import RuntimeListener, RuntimeSession, State

__all__ = ["RuntimeApiServer", "RuntimeListener", "RuntimeSession", "State"]
