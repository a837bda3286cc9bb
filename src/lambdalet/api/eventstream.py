"""AWS event-stream framing (application/vnd.amazon.eventstream), as InvokeWithResponseStream answers."""

from __future__ import annotations

import struct
import zlib


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, string headers, payload, message CRC."""
    raw_headers = b"".join(
        struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v.encode())) + v.encode()
        for k, v in headers.items()
    )
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def payload_chunk(data: bytes) -> bytes:
    return encode_message({":event-type": "PayloadChunk", ":content-type": "application/octet-stream",
                           ":message-type": "event"}, data)


def invoke_complete(doc: bytes) -> bytes:
    return encode_message({":event-type": "InvokeComplete", ":content-type": "application/json",
                           ":message-type": "event"}, doc)
