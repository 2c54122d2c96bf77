"""Webhook request bodies that test the receiver's limits: nested to an exact depth (with
strings that look like brackets, exact numbers and a lone surrogate), and the head of a raw
HTTP request for senders that break the framing."""

from __future__ import annotations

import json
from typing import Any

from support.webhooks_signer import event

PATH = "/hooks/upvest"
AMOUNT = "<the number 1.250>"


def depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (the test's own count)."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def nested(levels: int) -> Any:
    """A value ``levels`` deep, objects and arrays alternating, with strings that look like
    brackets, exact numbers and a lone surrogate at the bottom."""
    value: Any = {"leaf": "]]}}[[{{ \"quoted\" \\", "amount": AMOUNT,
                  "odd": "\ud800"} if levels else "x"
    for level in range(levels - 1):
        value = [value, "]"] if level % 2 else {"k[": value, "n": 7}
    return value


def encode(document: Any) -> bytes:
    """``document`` as JSON, each :data:`AMOUNT` written as the number ``1.250``."""
    return json.dumps(document).replace(f'"{AMOUNT}"', "1.250").encode()


def deep_body(total_depth: int, kind: str = "X.NESTED") -> tuple[bytes, dict[str, Any]]:
    """A one-event batch whose body nests exactly ``total_depth`` levels (batch, payload list
    and event take 3), and its event."""
    sent = event(kind, nested(total_depth - 3))
    document = {"payload": [sent]}
    assert depth(document) == total_depth
    return encode(document), sent


#: The head of a raw POST to :data:`PATH` announcing 1,000 bytes of body.
HEADERS = (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
