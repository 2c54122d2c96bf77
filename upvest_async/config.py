"""Reading client settings from ``UPVEST_API_*`` environment variables.

The names are those of Upvest's own examples (see the package README, "Configuration"):
``UPVEST_API_BASE_URL``, ``UPVEST_API_CLIENT_ID``, ``UPVEST_API_CLIENT_SECRET``,
``UPVEST_API_KEY_ID``, ``UPVEST_API_SCOPES`` (comma-separated), the key as
``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_FILENAME`` (a PEM file), ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY``
(PEM text) or ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64`` (base64 of the PEM), and
``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE``.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = ["DEFAULT_BASE_URL", "ENV_PREFIX", "has_credentials", "settings_from_env"]

ENV_PREFIX = "UPVEST_API_"
DEFAULT_BASE_URL = "https://sandbox.upvest.co"
"""The base URL used when none is given: Upvest's sandbox environment (the live API is
``https://api.upvest.co``). ``UPVEST_API_BASE_URL`` or ``base_url=`` override it."""
_REQUIRED = ("CLIENT_ID", "CLIENT_SECRET", "KEY_ID")
_KEY = "HTTP_SIGN_PRIVATE_KEY"


def has_credentials(environ: Mapping[str, str] | None = None) -> bool:
    """Whether any ``UPVEST_API_*`` credential variable is set (non-empty)."""
    env = os.environ if environ is None else environ
    return any(env.get(ENV_PREFIX + name) for name in (*_REQUIRED, _KEY, _KEY + "_FILENAME"))


def _private_key(env: Mapping[str, str]) -> bytes:
    filename = env.get(f"{ENV_PREFIX}{_KEY}_FILENAME")
    if filename:
        try:
            return Path(filename).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read {ENV_PREFIX}{_KEY}_FILENAME ({filename}): {exc.strerror}"
            ) from None
    text = env.get(ENV_PREFIX + _KEY)
    if text:
        # Env files often carry the PEM on one line with literal "\n".
        return text.replace("\\n", "\n").encode("utf-8")
    encoded = env.get(f"{ENV_PREFIX}{_KEY}_BASE64")
    if encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{ENV_PREFIX}{_KEY}_BASE64 is not valid base64") from None
    raise ConfigurationError(
        f"set one of {ENV_PREFIX}{_KEY}_FILENAME, {ENV_PREFIX}{_KEY} or {ENV_PREFIX}{_KEY}_BASE64"
    )


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the :class:`~upvest_async.UpvestClient` keyword arguments the environment sets.

    Raises :class:`ConfigurationError` naming every missing variable (never their values).
    """
    env = os.environ if environ is None else environ
    missing = [ENV_PREFIX + name for name in _REQUIRED if not env.get(ENV_PREFIX + name)]
    if missing:
        raise ConfigurationError("missing environment variables: " + ", ".join(missing))
    settings: dict[str, Any] = {
        "client_id": env[ENV_PREFIX + "CLIENT_ID"],
        "client_secret": env[ENV_PREFIX + "CLIENT_SECRET"],
        "key_id": env[ENV_PREFIX + "KEY_ID"],
        "private_key": _private_key(env),
        "private_key_passphrase": env.get(f"{ENV_PREFIX}{_KEY}_PASSPHRASE") or None,
        "base_url": env.get(ENV_PREFIX + "BASE_URL") or DEFAULT_BASE_URL,
    }
    scopes = env.get(ENV_PREFIX + "SCOPES")
    if scopes:
        settings["scopes"] = [scope.strip() for scope in scopes.split(",") if scope.strip()]
    return settings
