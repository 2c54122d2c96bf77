"""``UpvestClient``: one ``aiohttp.ClientSession`` under the token and signing middlewares."""

from __future__ import annotations

import copy
import functools
import ipaddress
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar, Unpack

import aiohttp
import attrs
from yarl import URL

from .config import DEFAULT_BASE_URL, settings_from_env
from .errors import ConfigurationError
from .ids import user_uuid_text
from .keys import PrivateKeyInput, load_signing_key
from .middlewares import SigningMiddleware, TokenMiddleware
from .pagination import DEFAULT_PREFETCH, MAX_LIMIT, Paginator
from .ratelimit import RateLimiter, shared_rate_limiter
from .resources import Portfolios, Positions
from .responses import APIResponse, RawResponse, capture_responses, stop_capture
from .retries import RetryBudget, RetryPolicy
from .stats import ClientStats
from .telemetry import telemetry_for
from .tokens import TokenManager
from .transport import Limits, RequestOptions, Transport, resolve_options

if TYPE_CHECKING:
    from .webhooks.resource import Webhooks

__all__ = ["UpvestClient"]

T = TypeVar("T")

#: Default retries after the first attempt of a call.
DEFAULT_MAX_RETRIES = 2
#: Default seconds allowed for one attempt of a call.
DEFAULT_TIMEOUT = 60.0
#: Default cap on simultaneous connections of the client.
DEFAULT_CONNECTION_LIMIT = 100

P = ParamSpec("P")


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class UpvestClient:
    """Async client of the Upvest Investment API (Portfolios and Positions).

    Use it as ``async with UpvestClient(...) as client:``; the session is opened on entry (or on
    the first call) and closed on exit. Resource namespaces: ``client.positions``,
    ``client.portfolios`` (``.configurations``) and ``client.webhooks``.

    Arguments: ``client_id`` (tenant client uuid, sent as ``upvest-client-id``),
    ``client_secret``, ``key_id`` (issued by Upvest for the registered public key),
    ``private_key`` (PEM text/bytes, EC or PKCS#8, or a loaded P-521 key),
    ``private_key_passphrase``, ``base_url`` (default ``https://sandbox.upvest.co``; ``http://``
    only for loopback hosts), ``scopes`` (``None``: each call asks for the least scope its
    endpoint needs), ``max_retries`` (retries after the first attempt, default 2), ``timeout``
    (seconds per attempt, default 60), ``connect_timeout`` (seconds to connect, default 10),
    ``read_timeout`` (seconds the server may stay silent, default 30), ``max_response_bytes``
    (larger bodies are refused, default 32 MiB), ``ssl`` (an :class:`ssl.SSLContext` for custom
    CAs or client certificates; verification cannot be switched off), ``trace_configs``
    (``aiohttp.TraceConfig`` objects, e.g. for OpenTelemetry), ``connection_limit``
    (simultaneous connections, 100),
    ``retry_policy`` (a :class:`~upvest_async.RetryPolicy`: backoff bounds, ``Retry-After`` cap,
    deadline; ``max_retries`` overrides its own), ``retry_budget`` (a
    :class:`~upvest_async.RetryBudget` shared by all calls of the client; default capacity 500),
    ``rate_limiter`` (a :class:`~upvest_async.RateLimiter` pacing every request, the access
    token requests included; default: an adaptive one shared by every client of this
    ``client_id`` and the same origin of ``base_url`` (scheme, host, port) in the process,
    which learns the allowed rate from 429s;
    ``RateLimiter(max_requests_per_second=...)`` for a limit Upvest told you,
    ``RateLimiter(adaptive=False)`` for none), ``tracer_provider`` and ``meter_provider``
    (OpenTelemetry providers for the SDK's spans and metrics, see
    :mod:`upvest_async.telemetry` and the observability guide; default ``None``: the global
    ones, looked up on the client's first use; without ``opentelemetry-api`` installed,
    nothing is recorded or imported).

    Raises :class:`~upvest_async.ConfigurationError` (or its subclass
    :class:`~upvest_async.SigningKeyError`) at construction for unusable settings; nothing is
    sent before the first call.
    """

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        key_id: str,
        private_key: PrivateKeyInput,
        private_key_passphrase: str | bytes | None = None,
        base_url: str = DEFAULT_BASE_URL,
        scopes: Sequence[str] | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        connection_limit: int = DEFAULT_CONNECTION_LIMIT,
        retry_policy: RetryPolicy | None = None,
        retry_budget: RetryBudget | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        max_response_bytes: int = 32 * 1024 * 1024,
        ssl: ssl_module.SSLContext | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
        rate_limiter: RateLimiter | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        try:
            self.client_id = user_uuid_text(client_id)  # (upvest_async.ids)
        except (ValueError, TypeError, AttributeError):
            raise ConfigurationError("client_id must be the tenant's client UUID") from None
        if not isinstance(client_secret, str) or not client_secret:
            raise ConfigurationError("client_secret must be a non-empty string")
        if not isinstance(key_id, str) or not key_id or not key_id.isprintable():
            raise ConfigurationError("key_id must be a non-empty printable string")
        url = URL(base_url)
        if url.scheme not in {"https", "http"} or not url.host:
            raise ConfigurationError(f"base_url must be an https:// URL, got {base_url!r}")
        if url.scheme == "http" and not _is_loopback(url.host):
            raise ConfigurationError(
                "base_url must use https:// (http:// is allowed for loopback hosts only)"
            )
        if scopes is not None and (
            isinstance(scopes, str) or not all(s and " " not in s for s in scopes)
        ):
            raise ConfigurationError("scopes must be a sequence of scope names without spaces")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError("max_retries must be an integer >= 0")
        for name, seconds in (("timeout", timeout), ("connect_timeout", connect_timeout),
                              ("read_timeout", read_timeout)):
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds")
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ConfigurationError(
                "ssl must be an ssl.SSLContext; TLS verification cannot be turned off"
            )
        if not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            raise ConfigurationError("max_response_bytes must be an integer >= 1024")
        self.key_id = key_id
        self.base_url = url
        self.scopes = tuple(scopes) if scopes is not None else None
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self._limits = Limits(
            timeout=float(timeout), connect_timeout=float(connect_timeout),
            read_timeout=float(read_timeout), max_response_bytes=max_response_bytes,
        )
        self._ssl = ssl
        self._trace_configs = list(trace_configs or [])
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.retry_policy = attrs.evolve(retry_policy or RetryPolicy(), max_retries=max_retries)
        #: The client-wide retry budget (token bucket) that stops retry storms.
        self.retry_budget = retry_budget if retry_budget is not None else RetryBudget()
        if rate_limiter is not None and not isinstance(rate_limiter, RateLimiter):
            raise ConfigurationError("rate_limiter must be a RateLimiter")
        #: The rate limiter pacing the client's requests (see :mod:`upvest_async.ratelimit`).
        self.rate_limiter = (rate_limiter if rate_limiter is not None
                             else shared_rate_limiter((self.client_id, str(url.origin()))))
        #: Default per-call options (set by :meth:`with_options`).
        self._defaults: RequestOptions = {}
        self._root: UpvestClient | None = None
        self._connection_limit = connection_limit
        self._private_key = load_signing_key(private_key, private_key_passphrase)
        #: Traffic counters (requests, token requests, pages, retries).
        self.stats = ClientStats()
        self._tokens = TokenManager(
            client_id=self.client_id, client_secret=client_secret, scopes=scopes,
            stats=self.stats,
        )
        self._session: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self._closed = False
        self.positions = Positions(self)
        self.portfolios = Portfolios(self)
        self._webhooks: Webhooks | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Build a client from the ``UPVEST_API_*`` variables (see :mod:`upvest_async.config`);
        any constructor keyword in ``overrides`` wins. Raises
        :class:`~upvest_async.ConfigurationError` naming missing variables."""
        settings = settings_from_env(environ)
        settings.update(overrides)
        return cls(**settings)

    def __repr__(self) -> str:
        return (
            f"UpvestClient(base_url={str(self.base_url)!r}, client_id={self.client_id!r}, "
            f"key_id={self.key_id!r})"
        )

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def with_options(self, **options: Unpack[RequestOptions]) -> UpvestClient:
        """A view of this client whose calls use ``options`` by default (``timeout``,
        ``max_retries``, ``max_throttled_retries``, ``deadline``, ``backoff_max``,
        ``extra_headers``; see :class:`~upvest_async.transport.RequestOptions`).

        The view shares the session, access tokens, retry budget, rate limiter and counters,
        and its ``webhooks`` shares the JWKS cache, verifier and replay cache of the original (one
        set of keys and nonces per client, so a request replayed through a view is refused
        too); closing it does nothing, closing the original closes both.
        """
        view = copy.copy(self)
        view._root = self._root or self
        view._defaults = {**self._defaults, **options}
        view.positions = Positions(view)
        view.portfolios = Portfolios(view)
        view._webhooks = None  # (made on first use, from the original's: see webhooks)
        return view

    def _bulk_options(self) -> RequestOptions:
        """The per-call options of the bulk methods (exports, batch triggers): a 429 is re-sent
        as long as the call's deadline allows, so that an account never fails for throttling
        alone, unless ``max_throttled_retries`` was set with :meth:`with_options`."""
        if "max_throttled_retries" in self._defaults:
            return {}
        return {"max_throttled_retries": None}

    @property
    def webhooks(self) -> Webhooks:
        """Webhook verification keys and verified events (:mod:`upvest_async.webhooks`),
        made on first use (so a client that never receives webhooks never imports the
        receiver or JOSE). A :meth:`with_options` view shares the original's JWKS cache,
        verifier and replay cache."""
        if self._webhooks is None:
            from .webhooks.resource import Webhooks

            root = self._root
            self._webhooks = (Webhooks(self) if root is None or root is self
                              else root.webhooks.for_client(self))
        return self._webhooks

    async def with_raw_response(
        self, method: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> APIResponse[T]:
        """Call ``method`` (any method of this client's resources, e.g.
        ``client.portfolios.orders.create``) and return its result with the HTTP status,
        headers, ``upvest-request-id`` and number of attempts of its last response::

            response = await client.with_raw_response(client.positions.retrieve, account, isin)
            response.request_id, response.attempts, response.parsed.quantity

        Errors are raised as usual (they carry ``status``, ``headers`` and ``attempts``).
        The capture is local to the calling task, so concurrent calls do not mix.
        """
        sink, token = capture_responses()
        try:
            parsed = await method(*args, **kwargs)
        finally:
            stop_capture(token)
        if not sink:
            raise RuntimeError("the method made no API call")
        return APIResponse(parsed=parsed, raw=sink[-1])

    async def aclose(self) -> None:
        """Close the HTTP session; the client cannot be used afterwards."""
        if self._root is not None:
            return
        self._closed = True
        if self._session is not None:
            session, self._session, self._transport = self._session, None, None
            await self._tokens.aclose()
            await session.close()

    def _open(self) -> Transport:
        if self._root is not None:
            return self._root._open()
        if self._transport is not None:
            return self._transport
        if self._closed:
            raise RuntimeError("this UpvestClient is closed")
        signing = SigningMiddleware(self._private_key, self.key_id, stats=self.stats)
        session = aiohttp.ClientSession(
            headers={
                "accept": "application/json",
                "upvest-api-version": "1",
                "upvest-client-id": self.client_id,
            },
            middlewares=(TokenMiddleware(self._tokens), signing),
            connector=aiohttp.TCPConnector(
                limit=self._connection_limit, ssl=self._ssl if self._ssl is not None else True
            ),
            trace_configs=self._trace_configs or None,
        )
        telemetry = telemetry_for(self._tracer_provider, self._meter_provider, self.base_url,
                                  self.rate_limiter)
        self._tokens.bind(session, self.base_url, signing, limits=self._limits,
                          policy=self.retry_policy, budget=self.retry_budget,
                          limiter=self.rate_limiter, telemetry=telemetry)
        self._session = session
        self._transport = Transport(
            session, self.base_url, policy=self.retry_policy, budget=self.retry_budget,
            limits=self._limits, stats=self.stats, limiter=self.rate_limiter,
            telemetry=telemetry,
        )
        return self._transport

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        idempotency_key: str | None = None,
        template: str | None = None,
        **options: Unpack[RequestOptions],
    ) -> RawResponse:
        return await self._open().request(
            method, path, params=params, json_body=json_body, idempotency_key=idempotency_key,
            options={**self._defaults, **options}, template=template,
        )

    def _paginate(
        self,
        path: str,
        item_type: type[T],
        *,
        params: Mapping[str, str | int] | None = None,
        page_size: int = MAX_LIMIT,
        offset: int = 0,
        max_items: int | None = None,
        prefetch: int = DEFAULT_PREFETCH,
        strict: bool = False,
        key: Callable[[T], Hashable] | None = None,
        template: str | None = None,
        options: RequestOptions | None = None,
    ) -> Paginator[T]:
        """A paginator whose page requests use ``options`` (per-call options, checked here,
        before anything is sent) over this client's defaults. ``template``: the path's URL
        template, for telemetry (``None``: derived from the path)."""
        options = options or {}
        resolve_options({**self._defaults, **options}, self.retry_policy, self._limits.timeout)
        request = functools.partial(self._request, template=template, **options)
        return Paginator(
            request, self.stats, path, item_type, params=params, page_size=page_size,
            offset=offset, max_items=max_items, prefetch=prefetch, strict=strict, key=key,
        )
