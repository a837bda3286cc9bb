"""json.loads / json.dumps on the C accelerator `_json`, without importing the `json` package.

`import json` pulls in `re` (and with it enum, functools...), about 6 ms of cold start. The C
scanner and encoder below are exactly what `json` itself uses for these calls, so the output is
identical; on any decode failure the real `json` module is imported to raise its exact error.
"""

from __future__ import annotations

import _json

_WS = " \t\n\r"


class _DecodeContext:
    # The attributes _json.make_scanner reads: json.JSONDecoder's defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


_scan_once = _json.make_scanner(_DecodeContext())


def loads(data: bytes | str):
    """Decode a JSON document (bytes are UTF-8, optionally with a BOM)."""
    text = data.decode("utf-8-sig") if isinstance(data, (bytes, bytearray)) else data
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan_once(text, start)
        if text[end:].strip(_WS):
            raise ValueError("extra data")
        return value
    except (StopIteration, ValueError):
        import json

        return json.loads(text)  # raises json's own, exactly worded, JSONDecodeError


def dumps(value, ensure_ascii: bool = True, default=None) -> str:
    """json.dumps(value, ensure_ascii=..., default=...) with the standard separators."""
    encode_str = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    if isinstance(value, str):
        return encode_str(value)
    try:
        encoder = _json.make_encoder({}, default or _no_default, encode_str, None, ": ", ", ", False, False,
                                     True)
    except TypeError:  # a future CPython changed the accelerator's signature: use the json package
        import json

        return json.dumps(value, ensure_ascii=ensure_ascii, default=default)
    return "".join(encoder(value, 0))


def _no_default(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
