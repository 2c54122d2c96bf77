"""Making aioresponses 0.7.9 work on aiohttp 3.14, contained here in the tests.

Why aioresponses at all: a few tests drive :class:`upvest_async.transport.Transport` alone (its
retry loop, error mapping and idempotency keys) with no server, no token and no signature.
aioresponses patches ``ClientSession._request``, so client middlewares do NOT run under it:
nothing that crosses the token or signing middleware is tested this way (those tests use the
sandbox on loopback).

The workaround: aiohttp 3.14 (a security release, which we do not pin below) made
``ClientResponse.__init__`` require ``stream_writer``, which aioresponses does not pass
(pnuckowski/aioresponses#289). :class:`CompatResponse` supplies a stand-in writer with the one
attribute aiohttp reads (``output_size``). Pass it as ``response_class=`` to every mocked
response.
"""

from __future__ import annotations

import types
from typing import Any

import aiohttp

__all__ = ["CompatResponse"]


class CompatResponse(aiohttp.ClientResponse):
    """``aiohttp.ClientResponse`` that tolerates aioresponses' missing ``stream_writer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", types.SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)
