"""A loopback webhook receiver for the sandbox's webhooks (:class:`Receiver`): a real
``aiohttp.web`` server on 127.0.0.1 that verifies every v6 signature independently of
``upvest_async``: the base is rebuilt from ``signature-input`` and checked with
``cryptography`` against the key of the JWKS fetched from ``GET /auth/verify_keys``
(:func:`jwks_of`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import attrs
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList

from upvest_async import UpvestClient


def public_keys(jwks: dict[str, Any]) -> dict[str, ec.EllipticCurvePublicKey]:
    keys = {}
    for jwk in jwks["keys"]:
        assert (jwk["kty"], jwk["crv"]) == ("EC", "P-521")
        x, y = (int.from_bytes(base64.urlsafe_b64decode(jwk[c] + "==")) for c in ("x", "y"))
        keys[jwk["kid"]] = ec.EllipticCurvePublicNumbers(x, y, ec.SECP521R1()).public_key()
    return keys


def check_signature(request: web.Request, body: bytes,
                    keys: dict[str, ec.EllipticCurvePublicKey]) -> tuple[str, str]:
    """Verify a v6 signature of ``request``; returns ``(keyid, nonce)``, raises AssertionError."""
    raw_input = request.headers["signature-input"]
    parsed = Dictionary()
    parsed.parse(raw_input.encode("ascii"))
    inner = parsed["sig1"]
    assert isinstance(inner, InnerList)
    components = [str(item.value) for item in inner]
    params = dict(inner.params)
    assert {"@method", "@path", "digest"} <= set(components)
    assert "content-type" in components
    assert params["created"] <= time.time() + 1 <= params["expires"] + 1
    digest = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert request.headers["digest"] == digest
    lines = []
    for name in components:
        if name == "@method":
            value = request.method
        elif name == "@path":
            value = request.rel_url.raw_path
        elif name == "@query":
            value = "?" + request.rel_url.raw_query_string
        else:
            value = ", ".join(request.headers.getall(name)).strip()
        lines.append(f"{name}: {value}")
    lines.append("@signature-params: " + raw_input.removeprefix("sig1="))
    der = base64.b64decode(
        request.headers["signature"].removeprefix("sig1=:").removesuffix(":"), validate=True
    )
    keyid = str(params["keyid"])
    try:
        keys[keyid].verify(der, "\n".join(lines).encode(), ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        raise AssertionError("signature does not verify") from None
    return keyid, str(params["nonce"])


@attrs.define
class Delivery:
    """One request the receiver got, and what it answered (0: connection dropped)."""

    path: str
    content_type: str
    body: bytes
    keyid: str
    nonce: str
    answered: int
    at: float

    @property
    def events(self) -> list[dict[str, Any]]:
        payload = json.loads(self.body)["payload"]
        assert isinstance(payload, list)
        return payload


class Receiver:
    """A loopback webhook receiver. ``answers``: what to answer the first requests (a status,
    ``"drop"`` to close the connection, ``"slow"`` to answer after 5 s); then 200 (or what
    ``default`` says). Every request must carry a valid signature by a key of ``jwks``."""

    def __init__(self, jwks: dict[str, Any] | None = None, *, answers: list[Any] | None = None,
                 path: str = "/hooks/upvest") -> None:
        self.keys = public_keys(jwks) if jwks is not None else {}
        self.answers = list(answers or [])
        self.default: Callable[[Delivery], Any] = lambda _: 200
        self.path = path
        self.deliveries: list[Delivery] = []
        self.errors: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def use_jwks(self, jwks: dict[str, Any]) -> None:
        self.keys = public_keys(jwks)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            keyid, nonce = check_signature(request, body, self.keys)
        except (AssertionError, KeyError, ValueError) as error:
            self.errors.append(repr(error))
            return web.Response(status=401)
        answer = self.answers.pop(0) if self.answers else None
        delivery = Delivery(request.rel_url.raw_path, request.headers["content-type"], body,
                            keyid, nonce, 0, time.monotonic())
        if answer is None:
            answer = self.default(delivery)
        self.deliveries.append(delivery)
        if answer == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)
        if answer == "slow":
            await asyncio.sleep(5)
            answer = 200
        delivery.answered = int(answer)
        return web.Response(status=int(answer), text="ok")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}{self.path}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def accepted(self) -> list[Delivery]:
        """Deliveries answered 200."""
        return [d for d in self.deliveries if d.answered == 200]

    def events(self) -> list[dict[str, Any]]:
        """Events of the deliveries answered 200, in arrival order (duplicates included)."""
        return [event for d in self.accepted() for event in d.events]


async def jwks_of(client: UpvestClient) -> dict[str, Any]:
    response = await client._request("GET", "/auth/verify_keys")
    body: dict[str, Any] = response.json()
    return body
