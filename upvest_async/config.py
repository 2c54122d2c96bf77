"""Reading client settings from ``UPVEST_API_*`` environment variables.

The names are those of Upvest's own examples (see the package README, "Configuration"):
``UPVEST_API_BASE_URL``, ``UPVEST_API_CLIENT_ID``, ``UPVEST_API_CLIENT_SECRET``,
``UPVEST_API_KEY_ID``, ``UPVEST_API_SCOPES`` (comma-separated), the key as
``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_FILENAME`` (a PEM file), ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY``
(PEM text) or ``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_BASE64`` (base64 of the PEM), and
``UPVEST_API_HTTP_SIGN_PRIVATE_KEY_PASSPHRASE``.

This module is the one home of the rule what a complete configuration is
(:func:`missing_variables`): the client id, the client secret, the key id and exactly one key
source. The base URL is optional (default :data:`DEFAULT_BASE_URL`, Upvest's sandbox
environment), and so are the passphrase (for an unencrypted key) and the scopes (the least
scope each call needs). A variable set to the empty string counts as not set. Anything else is
incomplete: :func:`settings_from_env` (and so ``UpvestClient.from_env()`` and the command line)
refuses it with a :class:`~upvest_async.ConfigurationError` naming what is missing.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_BASE_URL",
    "ENV_PREFIX",
    "KEY_VARIABLES",
    "REQUIRED_VARIABLES",
    "VARIABLES",
    "configured_variables",
    "describe_missing",
    "missing_variables",
    "settings_from_env",
    "unknown_variables",
]

ENV_PREFIX = "UPVEST_API_"
DEFAULT_BASE_URL = "https://sandbox.upvest.co"
"""The base URL used when none is given: Upvest's sandbox environment (the live API is
``https://api.upvest.co``). ``UPVEST_API_BASE_URL`` or ``base_url=`` override it."""
_KEY = "HTTP_SIGN_PRIVATE_KEY"

REQUIRED_VARIABLES = tuple(ENV_PREFIX + name for name in ("CLIENT_ID", "CLIENT_SECRET", "KEY_ID"))
"""The variables a complete configuration always sets."""
KEY_VARIABLES = tuple(ENV_PREFIX + _KEY + suffix for suffix in ("_FILENAME", "", "_BASE64"))
"""The key sources, of which a complete configuration sets exactly one: a PEM file, PEM text,
base64 of the PEM."""
VARIABLES = frozenset({
    *REQUIRED_VARIABLES, *KEY_VARIABLES, f"{ENV_PREFIX}{_KEY}_PASSPHRASE",
    ENV_PREFIX + "BASE_URL", ENV_PREFIX + "SCOPES",
})
"""Every ``UPVEST_API_*`` variable this package reads."""


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def configured_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of :data:`VARIABLES` that are set to a non-empty value (sorted); ``environ``
    defaults to ``os.environ``."""
    env = _environ(environ)
    return sorted(name for name in VARIABLES if env.get(name))


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``UPVEST_API_*`` names in ``environ`` that this package does not read (sorted),
    set or empty: most likely a typo (Upvest's other tools share the prefix, so it is no
    error)."""
    return sorted(name for name in _environ(environ)
                  if name.startswith(ENV_PREFIX) and name not in VARIABLES)


def missing_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """What a complete configuration lacks, one entry per item: each of
    :data:`REQUIRED_VARIABLES` not set, then ``"one of A, B or C"`` when no key source is set
    (:data:`KEY_VARIABLES`). Empty for a complete configuration. Several key sources set is
    not "missing": :func:`settings_from_env` refuses it as ambiguous."""
    env = _environ(environ)
    missing = [name for name in REQUIRED_VARIABLES if not env.get(name)]
    if not any(env.get(name) for name in KEY_VARIABLES):
        missing.append("one of " + ", ".join(KEY_VARIABLES[:-1]) + " or " + KEY_VARIABLES[-1])
    return missing


def describe_missing(environ: Mapping[str, str] | None = None) -> str | None:
    """One line saying why the configuration is incomplete (what is missing, what is set,
    which ``UPVEST_API_*`` names are not read), or ``None`` when it is complete. Never shows
    a value."""
    env = _environ(environ)
    missing = missing_variables(env)
    if not missing:
        return None
    configured = configured_variables(env)
    what = (f"incomplete UPVEST_API_* configuration (set: {', '.join(configured)})"
            if configured else "no UPVEST_API_* configuration")
    text = f"{what}: missing {_and(missing)}"
    unknown = unknown_variables(env)
    if unknown:
        text += f" ({_and(unknown)} {'is' if len(unknown) == 1 else 'are'} not read: a typo?)"
    return text


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _private_key(env: Mapping[str, str]) -> bytes:
    given = [name for name in KEY_VARIABLES if env.get(name)]
    if len(given) > 1:
        raise ConfigurationError(f"{_and(given)} are set: set only one key source")
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
    raise ConfigurationError("set one of " + ", ".join(KEY_VARIABLES))


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Return the :class:`~upvest_async.UpvestClient` keyword arguments the environment sets
    (``environ``, default ``os.environ``): ``client_id``, ``client_secret``, ``key_id``,
    ``private_key`` (bytes), ``private_key_passphrase`` (``None`` when not set), ``base_url``
    (:data:`DEFAULT_BASE_URL` when not set), and ``scopes`` (a list) when set.

    Raises :class:`ConfigurationError` for an incomplete configuration, naming every missing
    variable (never a value) and any ``UPVEST_API_*`` name it does not read; for more than one
    key source; for a key file that cannot be read or base64 that is not valid.
    """
    env = _environ(environ)
    incomplete = describe_missing(env)
    if incomplete is not None:
        raise ConfigurationError(incomplete)
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
