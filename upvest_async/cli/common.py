"""What the commands share: the console, account lists, the target (the API the
``UPVEST_API_*`` variables configure, or the embedded sandbox, only with
``--embedded-sandbox``) and its client."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import click
from rich.console import Console

from ..client import UpvestClient
from ..config import (
    DEFAULT_BASE_URL,
    ENV_PREFIX,
    configured_variables,
    describe_missing,
    settings_from_env,
    unknown_variables,
)
from ..errors import ConfigurationError
from ..jobs.files import atomic_text
from ..ratelimit import RateLimiter
from .preflight import PreflightError, read_accounts

__all__ = [
    "EMBEDDED_SANDBOX",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "MAX_SANDBOX_ACCOUNTS",
    "MAX_SANDBOX_POSITIONS",
    "Target",
    "client_overrides",
    "embedded_sandbox_option",
    "open_client",
    "plural",
    "rate_limit_option",
    "read_accounts",
    "resolve_target",
    "sandbox_options",
    "stderr",
    "throttling",
    "write_json",
]

#: Exit statuses: 0 complete, 1 some accounts failed, 2 usage or configuration error,
#: 130 interrupted (Ctrl-C).
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Largest embedded sandbox tenant the bulk commands generate.
MAX_SANDBOX_ACCOUNTS = 100_000
MAX_SANDBOX_POSITIONS = 1_000_000

stderr = Console(stderr=True, highlight=False, soft_wrap=True)

#: The flag that selects the embedded sandbox; the target is never inferred.
EMBEDDED_SANDBOX = "--embedded-sandbox"


def _finite(_: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):  # nan passes FloatRange's checks
        raise click.BadParameter(f"{value!r} is not a number of requests per second",
                                 param=param)
    return value


def request_rate_option(*names: str, help: str) -> Any:
    """An option for a rate in requests per second: a finite number in (0, 100,000], else a
    usage error; default ``None``."""
    return click.option(*names, type=click.FloatRange(0, 100_000, min_open=True),
                        default=None, metavar="R", callback=_finite, help=help)


def rate_limit_option(function: Any) -> Any:
    """The ``--max-requests-per-second`` option (parameter ``max_requests_per_second``) of a
    command that calls the API: a known ceiling for the client's rate limiter."""
    return request_rate_option(
        "--max-requests-per-second",
        help="A limit Upvest told you for this client id, in requests per second: requests "
             "are paced to it from the first one. Without it the rate is learned from 429 "
             "answers (see the retries guide, Rate limits).")(function)


def client_overrides(max_retries: int | None,
                     max_requests_per_second: float | None) -> dict[str, Any]:
    """The :class:`UpvestClient` keywords of the ``--max-retries`` and
    ``--max-requests-per-second`` options (none when not given)."""
    overrides: dict[str, Any] = {}
    if max_retries is not None:
        overrides["max_retries"] = max_retries
    if max_requests_per_second is not None:
        overrides["rate_limiter"] = RateLimiter(max_requests_per_second=max_requests_per_second)
    return overrides


def throttling(throttled: int, learned_rate: float | None, *, short: bool = False) -> str:
    """What the rate limit did, for a summary line (``12 requests answered 429, paced at 38.2
    req/s``) or, ``short``, a progress bar (``12 x 429, 38.2 req/s``): ``""`` when no attempt
    was answered 429 (``throttled``). ``learned_rate``: the rate limiter's pacing rate,
    requests per second (``None``: not paced)."""
    if not throttled:
        return ""
    if short:
        pace = "" if learned_rate is None else f", {learned_rate:,.1f} req/s"
        return f"{throttled:,} x 429{pace}"
    pace = "" if learned_rate is None else f", paced at {learned_rate:,.1f} req/s"
    return f"{plural(throttled, 'request')} answered 429{pace}"


def embedded_sandbox_option(function: Any) -> Any:
    """The ``--embedded-sandbox`` flag (parameter ``embedded_sandbox``) of a command that can
    run against the embedded sandbox."""
    return click.option(
        EMBEDDED_SANDBOX, "embedded_sandbox", is_flag=True,
        help="Run against the embedded sandbox, a local simulator of the API started for this "
             "run, instead of the API the UPVEST_API_* variables configure (they must be "
             "unset). Never chosen for you: without it, an incomplete UPVEST_API_* "
             "configuration is an error.")(function)


def sandbox_options(function: Any) -> Any:
    """``--embedded-sandbox`` and the ``--sandbox-*`` tenant options of a bulk command
    (parameters ``sandbox_*``; they require ``--embedded-sandbox``, see
    :func:`resolve_target`)."""
    options = [
        click.option("--sandbox-accounts", type=click.IntRange(0, MAX_SANDBOX_ACCOUNTS),
                     default=20, show_default=True,
                     help="Embedded sandbox only: accounts in the generated tenant."),
        click.option("--sandbox-positions", type=click.IntRange(0, MAX_SANDBOX_POSITIONS),
                     default=1500, show_default=True,
                     help="Embedded sandbox only: positions per account."),
        click.option("--sandbox-seed", type=int, default=0, show_default=True,
                     help="Embedded sandbox only: seed of the generated tenant."),
        request_rate_option(
            "--sandbox-rate-limit",
            help="Embedded sandbox only: requests per second per client id, as Upvest limits "
                 "them (429 without Retry-After; default: no limit)."),
    ]
    for option in reversed(options):
        function = option(function)
    return embedded_sandbox_option(function)


#: ``Sandbox`` keywords of the ``--sandbox-*`` options whose name is not the option's own
#: (``--sandbox-NAME`` is ``NAME``, dashes as underscores, otherwise).
_SANDBOX_KEYWORDS = {"sandbox_positions": "positions_per_account"}


@attrs.frozen
class Target:
    """Where a command sends its requests: ``settings``, the :class:`UpvestClient` keywords
    the ``UPVEST_API_*`` variables set, or ``None`` for the embedded sandbox, whose tenant
    ``sandbox`` holds (``Sandbox`` keywords)."""

    settings: dict[str, Any] | None = attrs.field(repr=False)  # secrets: never shown
    sandbox: dict[str, Any] = attrs.field(factory=dict)
    #: :class:`UpvestClient` keywords that override the settings (``max_retries``, ...).
    overrides: dict[str, Any] = attrs.field(factory=dict)

    @property
    def embedded(self) -> bool:
        """Whether this is the embedded sandbox."""
        return self.settings is None


def resolve_target(embedded: bool, sandbox: Mapping[str, Any] | None = None,
                   **overrides: Any) -> Target:
    """The target of a command, decided before anything is sent or written.

    ``embedded``: ``--embedded-sandbox`` was given; ``sandbox``: the command's ``sandbox_*``
    parameters (the ``--sandbox-*`` options); ``overrides``: :class:`UpvestClient` keywords
    (checked here with the configured settings). Rules (the configuration guide lists them):

    - without ``--embedded-sandbox``, the ``UPVEST_API_*`` configuration must be complete
      (:func:`~upvest_async.config.missing_variables`) and valid (an :class:`UpvestClient` is
      built from it): otherwise a usage error naming what is missing and pointing to
      ``--embedded-sandbox``;
    - with it, no ``UPVEST_API_*`` variable this package reads may be set: a command line that
      names the embedded sandbox while the environment configures an API is ambiguous, and is
      refused rather than guessed (either guess can be the wrong one in a cron job);
    - a ``--sandbox-*`` option given without ``--embedded-sandbox`` is refused.

    An ``UPVEST_API_*`` name the package does not read is named in a warning on standard
    error (a typo shows at once); when the configuration is incomplete it is named in the
    error instead. Raises :class:`click.UsageError` (exit 2, one line).
    """
    ctx = click.get_current_context(silent=True)
    given = [name for name in (sandbox or {})
             if ctx is not None and ctx.get_parameter_source(name) not in
             (None, click.core.ParameterSource.DEFAULT)]
    if given and not embedded:
        option = "--" + given[0].replace("_", "-")
        raise PreflightError(option, f"sizes the embedded sandbox's tenant: it needs "
                                     f"{EMBEDDED_SANDBOX}")
    environ = os.environ
    if embedded:
        configured = configured_variables(environ)
        if configured:
            one = len(configured) == 1
            raise PreflightError(
                EMBEDDED_SANDBOX,
                f"{', '.join(configured)} {'is' if one else 'are'} set, which configure"
                f"{'s' if one else ''} an API: the target is ambiguous; unset "
                f"{'it' if one else 'them'} (env -u NAME ...) to use the embedded sandbox, "
                f"or drop {EMBEDDED_SANDBOX} to use that API")
        _warn_unknown(environ)
        tenant = {_SANDBOX_KEYWORDS.get(name, name.removeprefix("sandbox_")): value
                  for name, value in (sandbox or {}).items()}
        return Target(None, tenant, overrides)
    incomplete = describe_missing(environ)
    if incomplete is not None:
        unset = " (and the UPVEST_API_* variables unset)" if configured_variables(environ) else ""
        raise click.UsageError(
            f"{incomplete}; set them (see the configuration guide), or run against the "
            f"local simulator with {EMBEDDED_SANDBOX}{unset}", ctx=ctx)
    try:
        settings = settings_from_env(environ)
        UpvestClient(**{**settings, **overrides})  # every setting checked, nothing opened
    except ConfigurationError as exc:
        unknown = unknown_variables(environ)  # a misspelt passphrase or key name, maybe
        typo = (f" ({', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not read: "
                "a typo?)" if unknown else "")
        raise click.UsageError(f"UPVEST_API_* configuration: {exc}{typo}", ctx=ctx) from None
    _warn_unknown(environ)
    return Target(settings, {}, overrides)


def _warn_unknown(environ: Mapping[str, str]) -> None:
    unknown = unknown_variables(environ)
    if unknown:
        verb = "is not a variable" if len(unknown) == 1 else "are not variables"
        stderr.print(f"warning: {', '.join(unknown)} {verb} upvest-async reads (a typo?); "
                     "ignored", markup=False)


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``count`` (with thousands separators) and the noun in its number: ``1 account``,
    ``0 accounts``, ``1,500 positions``."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {noun}"


@contextlib.asynccontextmanager
async def open_client(target: Target, *, quiet: bool) -> AsyncIterator[UpvestClient]:
    """The client of ``target`` (:func:`resolve_target`): the API the ``UPVEST_API_*``
    variables configure, or an embedded sandbox run in a child process of its own
    (:mod:`.sandbox_process`), so the figures printed are the client's, not the simulator's.
    Says which (one line on standard error) unless ``quiet``."""
    if target.settings is not None:
        async with UpvestClient(**{**target.settings, **target.overrides}) as client:
            if not quiet:
                default = ("" if os.environ.get(ENV_PREFIX + "BASE_URL") else
                           f"; {ENV_PREFIX}BASE_URL not set: {DEFAULT_BASE_URL}, Upvest's "
                           "sandbox environment")
                stderr.print(f"Using {client.base_url} (from UPVEST_API_* variables{default})",
                             markup=False)
            yield client
        return
    from .sandbox_process import sandbox_process

    async with sandbox_process(target.sandbox) as running:
        if not quiet:
            stderr.print(
                f"Using the embedded sandbox at {running['base_url']} "
                f"({plural(len(running['accounts']), 'account')} x "
                f"{plural(running['positions_per_account'], 'position')}, seed "
                f"{running['seed']}; "
                + (f"rate limit {running['rate_limit']:g} req/s per client id; "
                   if running.get("rate_limit") is not None else "")
                + "in a child process)"
            )
        settings = {key: running[key] for key in (
            "client_id", "client_secret", "key_id", "private_key", "private_key_passphrase",
            "base_url")}
        async with UpvestClient(**{**settings, **target.overrides}) as client:
            yield client


# (json: a summary may quote the API's text, lone surrogates included; orjson cannot
# encode them)
def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    with atomic_text(path) as stream:
        json.dump(data, stream, indent=2)
        stream.write("\n")


def one_line(message: str, limit: int = 2000) -> str:
    """``message`` on one line (line breaks become spaces), at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
