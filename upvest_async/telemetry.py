"""OpenTelemetry traces and metrics of the SDK's HTTP traffic (the ``otel`` extra).

Nothing here imports ``opentelemetry`` at module import: :func:`telemetry_for` is called once
per client, on its first use, and returns ``None`` when ``opentelemetry-api`` is not
installed or no tracer or meter provider is configured (given to the client, or set
globally before its first use), so the retry loop then pays one ``is None`` check per call.

The one retry loop (:func:`upvest_async.retry_loop.call_with_retries`) calls this module:

- one INTERNAL span per logical call, ``upvest {method} {url.template}``, with the events
  ``rate_limiter.wait`` (``seconds``, when the limiter made the call wait a millisecond or
  more) and
  ``retry.backoff`` (``seconds``, ``reason``: the status code or the exception's class);
- as its children, one CLIENT span per HTTP attempt, ``{method} {url.template}``, following
  OpenTelemetry's HTTP client semantic conventions (``http.request.method``,
  ``server.address``, ``server.port``, ``url.full``, ``url.template``,
  ``http.response.status_code``, ``error.type``, ``http.request.resend_count``) plus
  ``upvest.request_id`` (redacted like errors' request ids);
- the metrics ``http.client.request.duration`` (histogram, s), ``upvest.client.throttled``
  (429 answers), ``upvest.client.retries`` (re-sent attempts) and ``upvest.client.rate_limit``
  (observable gauge, the rate limiter's current rate in requests/s).

No request header, body or form is ever recorded, so neither the client secret, a bearer
token, a signature, nor the key reaches a span; the query of the API's URLs holds only
``offset`` and ``limit``.
"""

from __future__ import annotations

import re
import sys
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .redaction import redact

if TYPE_CHECKING:
    from yarl import URL

    from .ratelimit import RateLimiter

__all__ = ["TEMPLATES", "CallTrace", "Telemetry", "telemetry_for", "url_template"]

INSTRUMENTATION_NAME = "upvest_async"

#: The URL templates of the API paths the SDK calls (the Upvest reference's parameter names).
#: The resources pass their own template with each call; this table is the fallback for a
#: call that does not (:func:`url_template`), and the tests check that both agree.
TEMPLATES = (
    "/auth/token",
    "/accounts/{account_id}/positions",
    "/accounts/{account_id}/positions/{instrument_id}",
    "/portfolios/allocations",
    "/portfolios/allocations/{allocation_id}",
    "/portfolios/configurations",
    "/portfolios/configurations/{account_id}",
    "/portfolios/orders",
    "/portfolios/orders/{order_id}",
    "/portfolios/{account_id}/liquidation_request",
    "/portfolios/rebalancings/executions",
    "/portfolios/rebalancings/executions/{execution_id}",
)
_LITERAL = re.compile(r"^[a-z_]+$")


def _compile() -> dict[int, list[tuple[tuple[str | None, ...], str]]]:
    table: dict[int, list[tuple[tuple[str | None, ...], str]]] = {}
    for template in TEMPLATES:
        parts = tuple(None if part.startswith("{") else part
                      for part in template.strip("/").split("/"))
        table.setdefault(len(parts), []).append((parts, template))
    for rows in table.values():  # the most literal template first
        rows.sort(key=lambda row: sum(part is None for part in row[0]))
    return table


_TABLE = _compile()
_CACHE: dict[str, str] = {}


def url_template(path: str) -> str:
    """The URL template of the API ``path`` (without the base URL's path or the query):
    ``/accounts/<uuid>/positions`` -> ``/accounts/{account_id}/positions``. A path the SDK
    does not know keeps its lower-case word segments and shows every other segment as
    ``{id}``, so an id never reaches a span name."""
    template = _CACHE.get(path)
    if template is not None:
        return template
    segments = path.strip("/").split("/")
    for parts, candidate in _TABLE.get(len(segments), ()):
        if all(part is None or part == segment for part, segment in zip(parts, segments,
                                                                         strict=True)):
            template = candidate
            break
    else:
        template = "/" + "/".join(s if _LITERAL.match(s) else "{id}" for s in segments)
    if len(_CACHE) < 4096:
        _CACHE[path] = template
    return template


def _error_type(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        return str(status)
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


class _RateGauge:
    """One ``upvest.client.rate_limit`` gauge per meter provider, observing every limiter
    registered with it (weakly: a limiter that is gone is no longer observed)."""

    def __init__(self, meter: Any) -> None:
        self.limiters: weakref.WeakKeyDictionary[RateLimiter, dict[str, Any]] = (
            weakref.WeakKeyDictionary())
        meter.create_observable_gauge(
            "upvest.client.rate_limit", callbacks=[self._observe], unit="{request}/s",
            description="The rate limiter's current pacing rate (absent: not paced)",
        )

    def _observe(self, options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for limiter, attributes in list(self.limiters.items()):
            rate = limiter.rate
            if rate is not None:
                yield Observation(rate, attributes)


_GAUGES: weakref.WeakKeyDictionary[Any, _RateGauge] = weakref.WeakKeyDictionary()


class Telemetry:
    """The tracer and instruments of one client (see the module docs)."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, base_url: URL,
                 limiter: RateLimiter | None) -> None:
        from opentelemetry import context, metrics, trace

        from . import __version__

        self._trace = trace
        self._context = context
        self._kind = trace.SpanKind
        self._status = trace.Status
        self._error = trace.StatusCode.ERROR
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        meter_provider = meter_provider or metrics.get_meter_provider()
        self.tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter = meter_provider.get_meter(INSTRUMENTATION_NAME, __version__)
        duration = {"name": "http.client.request.duration", "unit": "s",
                    "description": "Duration of HTTP client requests (one per attempt)"}
        try:  # the semantic conventions' buckets (the advice is an API of 1.23 and later)
            self.duration = meter.create_histogram(
                **duration, explicit_bucket_boundaries_advisory=[
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10])
        except TypeError:
            self.duration = meter.create_histogram(**duration)
        self.throttled = meter.create_counter(
            "upvest.client.throttled", unit="{response}", description="429 answers")
        self.retries = meter.create_counter(
            "upvest.client.retries", unit="{request}",
            description="Re-sent attempts (after a 429 or a retryable failure)")
        self.server = {"server.address": base_url.host or "", "server.port": base_url.port or 0}
        if limiter is not None:
            try:
                gauge = _GAUGES.get(meter_provider)
                if gauge is None:
                    gauge = _GAUGES[meter_provider] = _RateGauge(meter)
            except TypeError:  # a provider that cannot be weakly referenced: not cached
                gauge = _RateGauge(meter)
            gauge.limiters[limiter] = dict(self.server)

    def call(self, method: str, path: str, url: URL, template: str | None = None) -> CallTrace:
        """Start the span of one logical call of ``method`` ``path`` to ``url``
        (``template``: ``path``'s URL template, as the resources know it; ``None``: derived
        from ``path`` by :func:`url_template`)."""
        return CallTrace(self, method, template or url_template(path), str(url))


class CallTrace:
    """The INTERNAL span of one logical call and the CLIENT spans of its attempts."""

    __slots__ = ("_attempt", "_attributes", "_context", "_current", "_metric", "_started",
                 "_telemetry", "span")

    def __init__(self, telemetry: Telemetry, method: str, template: str, url: str) -> None:
        self._telemetry = telemetry
        self._attributes: dict[str, Any] = {
            "http.request.method": method, **telemetry.server, "url.full": url,
            "url.template": template,
        }
        self._metric: dict[str, Any] = {
            "http.request.method": method, **telemetry.server, "url.template": template}
        self.span = telemetry.tracer.start_span(
            f"upvest {method} {template}", kind=telemetry._kind.INTERNAL,
            attributes={"http.request.method": method, "url.template": template,
                        **telemetry.server},
        )
        self._context = telemetry._trace.set_span_in_context(self.span)
        self._attempt: Any = None
        self._current: object = None
        self._started = 0.0

    def waited(self, seconds: float) -> None:
        """The rate limiter made this call wait ``seconds`` before an attempt (recorded from
        a millisecond: a turn taken at once costs microseconds)."""
        if seconds >= 0.001:
            self.span.add_event("rate_limiter.wait", {"seconds": seconds})

    def backoff(self, seconds: float, exc: BaseException | None) -> None:
        """The call backs off ``seconds`` after ``exc`` before its next attempt."""
        self.span.add_event("retry.backoff", {
            "seconds": seconds, "reason": _error_type(exc) if exc is not None else "unknown"})

    def attempt_started(self, number: int) -> None:
        """Attempt ``number`` (from 1) is being sent; its span is the current span until
        :meth:`attempt_ended` (so aiohttp's own instrumentation, and the access token request
        an attempt may wait for, are its children)."""
        telemetry = self._telemetry
        attributes = self._attributes
        if number > 1:
            attributes = {**attributes, "http.request.resend_count": number - 1}
            telemetry.retries.add(1, self._metric)
        template = attributes["url.template"]
        self._attempt = telemetry.tracer.start_span(
            f"{attributes['http.request.method']} {template}", context=self._context,
            kind=telemetry._kind.CLIENT, attributes=attributes,
        )
        self._current = telemetry._context.attach(
            telemetry._trace.set_span_in_context(self._attempt, self._context))
        self._started = time.monotonic()

    def attempt_ended(self, result: object = None, exc: BaseException | None = None) -> None:
        """The attempt got ``result`` (an answer) or failed with ``exc``."""
        span, self._attempt = self._attempt, None
        if span is None:
            return
        telemetry = self._telemetry
        telemetry._context.detach(self._current)
        self._current = None
        metric = dict(self._metric)
        source = exc if exc is not None else result
        status = getattr(source, "status", None)
        if exc is None and status is None:
            status = 200  # an access token: only a 200 answer is one
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
            metric["http.response.status_code"] = status
            if status == 429:
                telemetry.throttled.add(1, self._metric)
        request_id = getattr(source, "request_id", None)
        if isinstance(request_id, str) and request_id:
            span.set_attribute("upvest.request_id", redact(request_id))
        if exc is not None:
            error = _error_type(exc)
            span.set_attribute("error.type", error)
            metric["error.type"] = error
            span.set_status(telemetry._status(telemetry._error, error))
        telemetry.duration.record(time.monotonic() - self._started, metric)
        span.end()

    def end(self, exc: BaseException | None = None) -> None:
        """The call is over (``exc``: how it failed)."""
        if self._attempt is not None:  # (cancelled mid-attempt)
            self.attempt_ended(exc=exc)
        if exc is not None:
            error = _error_type(exc)
            self.span.set_attribute("error.type", error)
            self.span.set_status(self._telemetry._status(self._telemetry._error, error))
        self.span.end()


def telemetry_for(tracer_provider: Any, meter_provider: Any, base_url: URL,
                  limiter: RateLimiter | None) -> Telemetry | None:
    """The client's :class:`Telemetry` (``tracer_provider``/``meter_provider``: ``None`` for
    the global ones), or ``None``: nothing to record, nothing imported, no cost.

    ``None`` when ``opentelemetry-api`` is not installed, and when no provider was given and
    none is configured globally: the application has not imported OpenTelemetry yet (one
    look at ``sys.modules``), or its global providers are still the API's placeholders. So a
    global provider must be set before the client's first use, as OpenTelemetry's own
    instrumentations expect."""
    if tracer_provider is None and meter_provider is None and not (
            "opentelemetry.trace" in sys.modules or "opentelemetry.metrics" in sys.modules):
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        return None
    if tracer_provider is None and meter_provider is None and (
            isinstance(trace.get_tracer_provider(),
                       trace.ProxyTracerProvider | trace.NoOpTracerProvider)
            and type(metrics.get_meter_provider()).__name__ in _PLACEHOLDER_METER_PROVIDERS):
        return None
    return Telemetry(tracer_provider, meter_provider, base_url, limiter)


#: The API's meter providers before (or instead of) an SDK's.
_PLACEHOLDER_METER_PROVIDERS = frozenset({"_ProxyMeterProvider", "NoOpMeterProvider"})
