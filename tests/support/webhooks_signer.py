"""A tiny v6 webhook signer for tests: builds the base with upvest_async's own base builder
and signs it with ``cryptography`` (the sandbox's signer is separate code)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from upvest_async.webhooks.base import digest_value, signature_base

KEY_ID = "test-webhook-key-1"


def jwk(public: ec.EllipticCurvePublicKey, kid: str) -> dict[str, Any]:
    data: dict[str, Any] = dict(ECKey.import_key(public).as_dict(private=False))
    data["kid"] = kid
    return data


def jwks(*pairs: tuple[ec.EllipticCurvePublicKey, str]) -> dict[str, Any]:
    return {"keys": [jwk(public, kid) for public, kid in pairs]}


def sign(
    body: bytes,
    *,
    key: ec.EllipticCurvePrivateKey,
    key_id: str = KEY_ID,
    created: int,
    method: str = "POST",
    path: str = "/hooks",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    expires_in: int = 60,
    nonce: str | None = None,
    components: Sequence[str] | None = None,
    params_order: str = "proxy",
    label: str = "sig1",
) -> dict[str, str]:
    """Headers of a v6-signed request (lower-case names)."""
    default = {"content-type": "application/json",
               "upvest-client-id": "c5161455-4d27-4781-bc74-f05532e49a77"}
    lowered = {name.lower(): value for name, value in (headers or default).items()}
    if body:
        lowered["digest"] = digest_value(body)
    if components is None:
        names = [name for name in lowered if name != "digest"]
        components = [*names, "@method", "@path"] + (["digest"] if body else []) + (
            ["@query"] if query else []
        )
    nonce = nonce if nonce is not None else str(secrets.randbelow(10**10)).zfill(10)
    inner = "(" + " ".join(f'"{name}"' for name in components) + ")"
    expires = created + expires_in
    if params_order == "proxy":
        params = f'{inner};keyid="{key_id}";created={created};nonce="{nonce}";expires={expires}'
    else:  # the docs' order
        params = f'{inner};keyid="{key_id}";created={created};expires={expires};nonce="{nonce}"'
    base = signature_base(components, method=method, path=path, query=query, headers=lowered,
                          signature_params=params)
    signature = key.sign(base, ec.ECDSA(hashes.SHA512()))
    return {
        **lowered,
        "signature-input": f"{label}={params}",
        "signature": f"{label}=:{base64.b64encode(signature).decode('ascii')}:",
    }


def event(kind: str, obj: Any, *, event_id: str | None = None,
          created_at: str = "2026-12-01T10:00:00Z") -> dict[str, Any]:
    import uuid
    return {
        "id": event_id or str(uuid.uuid4()), "type": kind, "created_at": created_at,
        "webhook_id": "9df39835-be87-4243-9018-f2500b39cee6", "object": obj,
    }


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps({"payload": list(events)}).encode()


def position(quantity: str = "10.4", **extra: Any) -> dict[str, Any]:
    return {
        "account_id": "c5161455-4d27-4781-bc74-f05532e49a77",
        "instrument": {"uuid": "ccb86937-8a39-4160-8d33-85bf9e902321", "isin": "US0378331005"},
        "quantity": quantity, "available_for_trading": quantity, "locked_for_trading": "0",
        "pending_settlement": "0", **extra,
    }
