"""Get/PutFunctionRecursionConfig: a function's recursive loop detection setting (Allow | Terminate)."""

from __future__ import annotations

from lambdalet.api.code_upload import read_json
from lambdalet.api.errors import validation
from lambdalet.api.functions import FunctionManager
from lambdalet.api.rest import send_json
from lambdalet.http11 import Request, Response
from lambdalet.store import RecursionConfigStore

_VALUES = ("Allow", "Terminate")


class RecursionConfigApi:
    """The REST handlers of the recursion configuration operations."""

    def __init__(self, store: RecursionConfigStore, functions: FunctionManager) -> None:
        self.store = store
        self.functions = functions

    async def get(self, req: Request, resp: Response, rid: str, name: str) -> None:
        rec, _ = self.functions.get(name)
        send_json(resp, 200, {"RecursiveLoop": self.store.get(rec.name)}, rid)

    async def put(self, req: Request, resp: Response, rid: str, name: str) -> None:
        value = (await read_json(req, "PutFunctionRecursionConfig")).get("RecursiveLoop")
        if value is None:
            raise validation(["Value null at 'recursiveLoop' failed to satisfy constraint: Member must not be "
                                    "null"])
        if value not in _VALUES:
            raise validation([f"Value '{value}' at 'recursiveLoop' failed to satisfy constraint: Member must "
                                    f"satisfy enum value set: [{', '.join(_VALUES)}]"])
        rec, _ = self.functions.get(name)
        self.store.put(rec.name, value)
        send_json(resp, 200, {"RecursiveLoop": value}, rid)

    def delete_function(self, name: str) -> None:
        self.store.delete_function(name)
