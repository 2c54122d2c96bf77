"""OpenTelemetry spans and metrics (upvest_async.telemetry) against the embedded sandbox, with
opentelemetry-sdk's in-memory exporter and reader passed to the client explicitly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from support.clients import client_for

from upvest_async import NotFoundError, RateLimiter, UpvestClient
from upvest_async.sandbox import Faults, Sandbox
from upvest_async.telemetry import url_template

USER = "4b9732bd-7496-4e91-8a5f-6360479d7fed"
ITEMS = [{"instrument_id": "US0378331005", "weight": "100"}]


class Recorder:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def client(self, sandbox: Sandbox, **overrides: Any) -> UpvestClient:
        return client_for(sandbox, tracer_provider=self.tracer_provider,
                              meter_provider=self.meter_provider, **overrides)

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans()
                if kind is None or span.kind == kind]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _server(sandbox: Sandbox) -> dict[str, Any]:
    host, port = sandbox.base_url.removeprefix("http://").split(":")
    return {"server.address": host, "server.port": int(port)}


def _strings(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    for value in (span.attributes or {}).values():
        yield str(value)
    for event in span.events:
        yield event.name
        for value in (event.attributes or {}).values():
            yield str(value)
    if span.status.description:
        yield span.status.description


def test_url_templates_never_keep_an_id() -> None:
    account = str(uuid.uuid4())
    assert url_template(f"/accounts/{account}/positions") == "/accounts/{account_id}/positions"
    assert (url_template(f"/accounts/{account}/positions/US0378331005")
            == "/accounts/{account_id}/positions/{instrument_id}")
    assert (url_template(f"/portfolios/{account}/liquidation_request")
            == "/portfolios/{account_id}/liquidation_request")
    assert url_template("/portfolios/allocations") == "/portfolios/allocations"
    assert url_template(f"/unknown/{account}/x1") == "/unknown/{id}/{id}"


async def test_a_call_answered_429_429_200_gives_three_client_spans(
        recorder: Recorder) -> None:
    faults = Faults(script=("429", "429"), rate_limit_retry_after=0)
    async with Sandbox(accounts=1, positions_per_account=3, seed=3, faults=faults) as sandbox:
        account = sandbox.account_ids[0]
        async with recorder.client(sandbox) as client:
            positions = [p async for p in client.positions.list(account)]
        assert len(positions) == 3
    template = "/accounts/{account_id}/positions"
    attempts = [s for s in recorder.spans(SpanKind.CLIENT) if s.name == f"GET {template}"]
    assert len(attempts) == 3
    answered = [s.attributes or {} for s in attempts]
    assert [a.get("http.response.status_code") for a in answered] == [429, 429, 200]
    assert [a.get("http.request.resend_count") for a in answered] == [None, 1, 2]
    url = f"{sandbox.base_url}/accounts/{account}/positions?offset=0&limit=1000"
    for number, (span, attributes) in enumerate(zip(attempts, answered, strict=True)):
        request_id = attributes["upvest.request_id"]
        assert isinstance(request_id, str) and request_id
        expected: dict[str, Any] = {
            "http.request.method": "GET", **_server(sandbox), "url.full": url,
            "url.template": template, "upvest.request_id": request_id,
            "http.response.status_code": 200 if number == 2 else 429,
        }
        if number:
            expected["http.request.resend_count"] = number
        if number < 2:
            expected["error.type"] = "429"
            assert span.status.status_code is StatusCode.ERROR
        else:
            assert span.status.status_code is StatusCode.UNSET
        assert dict(attributes) == expected
    # One INTERNAL span per logical call, the parent of its attempts, with the back-offs.
    calls = [s for s in recorder.spans(SpanKind.INTERNAL) if s.name == f"upvest GET {template}"]
    assert len(calls) == 1
    call = calls[0]
    assert dict(call.attributes or {}) == {
        "http.request.method": "GET", "url.template": template, **_server(sandbox)}
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id
               for s in attempts)
    backoffs = [e for e in call.events if e.name == "retry.backoff"]
    assert [dict(e.attributes or {})["reason"] for e in backoffs] == ["429", "429"]
    # The access token request: a CLIENT span of its own, under its own INTERNAL span.
    token = [s for s in recorder.spans(SpanKind.CLIENT) if s.name == "POST /auth/token"]
    assert len(token) == 1
    assert dict(token[0].attributes or {}) == {
        "http.request.method": "POST", **_server(sandbox),
        "url.full": f"{sandbox.base_url}/auth/token", "url.template": "/auth/token",
        "http.response.status_code": 200,
    }

    metrics = recorder.metrics()
    assert sum(p.value for p in metrics["upvest.client.throttled"]) == 2
    assert sum(p.value for p in metrics["upvest.client.retries"]) == 2
    durations = {tuple(sorted(p.attributes.items())): p.count
                 for p in metrics["http.client.request.duration"]}
    base = {"http.request.method": "GET", **_server(sandbox), "url.template": template}
    assert durations[tuple(sorted({**base, "http.response.status_code": 429,
                                   "error.type": "429"}.items()))] == 2
    assert durations[tuple(sorted({**base, "http.response.status_code": 200}.items()))] == 1


async def test_every_endpoint_is_named_by_its_template_and_no_secret_is_recorded(
        recorder: Recorder) -> None:
    async with Sandbox(accounts=4, positions_per_account=2, seed=5) as sandbox:
        accounts = sandbox.account_ids
        async with recorder.client(sandbox) as client:
            [p async for p in client.positions.list(accounts[0])]
            wanted = next(p for p in sandbox.tenant.positions(accounts[0])
                          if "isin" in p["instrument"])
            await client.positions.retrieve(accounts[0], wanted["instrument"]["isin"])
            portfolios = client.portfolios
            allocation = await portfolios.allocations.create(name="A", allocation=ITEMS)
            await portfolios.allocations.retrieve(allocation.id)
            await portfolios.allocations.update(allocation.id, allocation=ITEMS)
            [a async for a in portfolios.allocations.list()]
            [c async for c in portfolios.configurations.list()]
            await portfolios.configurations.retrieve(accounts[0])
            await portfolios.configurations.update(accounts[0], allocation_id=allocation.id)
            order = await portfolios.orders.create(
                user_id=USER, account_id=accounts[1], cash_amount=Decimal("100.00"),
                side="BUY", post_tax=True)
            await portfolios.orders.retrieve(order.id)
            [o async for o in portfolios.orders.list()]
            await portfolios.orders.cancel(order.id)
            await portfolios.liquidation_requests.create(accounts[3], user_id=USER)
            execution = await portfolios.rebalancings.executions.create(
                accounts=accounts[:2])
            await portfolios.rebalancings.executions.retrieve(execution.id)
            with pytest.raises(NotFoundError):
                await portfolios.orders.retrieve(uuid.uuid4())
        secrets = [sandbox.credentials.client_secret, sandbox.credentials.private_key_pem()]
        passphrase = sandbox.credentials.passphrase
        if passphrase:
            secrets.append(passphrase if isinstance(passphrase, str) else passphrase.decode())
        secrets += list(sandbox.state.tokens)
        for entry in sandbox.state.journal:
            for name in ("authorization", "signature", "signature-input"):
                if name in entry.headers:
                    value = entry.headers[name]
                    secrets += [value, value.partition(" ")[2]]

    names = {s.name for s in recorder.spans(SpanKind.CLIENT)}
    assert names == {
        "POST /auth/token",
        "GET /accounts/{account_id}/positions",
        "GET /accounts/{account_id}/positions/{instrument_id}",
        "POST /portfolios/allocations",
        "GET /portfolios/allocations/{allocation_id}",
        "PUT /portfolios/allocations/{allocation_id}",
        "GET /portfolios/allocations",
        "GET /portfolios/configurations",
        "GET /portfolios/configurations/{account_id}",
        "PATCH /portfolios/configurations/{account_id}",
        "POST /portfolios/orders",
        "GET /portfolios/orders/{order_id}",
        "GET /portfolios/orders",
        "DELETE /portfolios/orders/{order_id}",
        "POST /portfolios/{account_id}/liquidation_request",
        "POST /portfolios/rebalancings/executions",
        "GET /portfolios/rebalancings/executions/{execution_id}",
    }
    for span in recorder.spans():
        assert not any(account in span.name for account in accounts)
    # The templates the resources pass agree with the ones derived from the paths.
    for span in recorder.spans(SpanKind.CLIENT):
        attributes = span.attributes or {}
        path = urlsplit(str(attributes["url.full"])).path
        assert url_template(path) == attributes["url.template"]
    failed = [s for s in recorder.spans(SpanKind.CLIENT)
              if (s.attributes or {}).get("http.response.status_code") == 404]
    assert len(failed) == 1 and failed[0].attributes["error.type"] == "404"  # type: ignore[index]
    assert failed[0].status.status_code is StatusCode.ERROR
    failed_call = [s for s in recorder.spans(SpanKind.INTERNAL)
                   if (s.attributes or {}).get("error.type") == "404"]
    assert [s.name for s in failed_call] == ["upvest GET /portfolios/orders/{order_id}"]
    assert failed_call[0].status.status_code is StatusCode.ERROR
    allowed = {"http.request.method", "server.address", "server.port", "url.full",
               "url.template", "http.response.status_code", "error.type",
               "http.request.resend_count", "upvest.request_id"}
    for span in recorder.spans(SpanKind.CLIENT):
        assert set(span.attributes or {}) <= allowed
    secrets = [secret for secret in secrets if len(secret) >= 8]
    assert len(secrets) > 4
    for span in recorder.spans():
        for text in _strings(span):
            for secret in secrets:
                assert secret not in text, (span.name, text)
        for line in secrets[1].splitlines():
            if len(line) > 20:
                assert all(line not in text for text in _strings(span))


async def test_a_failure_without_an_answer_is_an_error_span_with_the_exception_class(
        recorder: Recorder) -> None:
    async with Sandbox(accounts=1, positions_per_account=1, seed=3,
                       faults=Faults(script=("slow",), slow_seconds=2)) as sandbox:
        account = sandbox.account_ids[0]
        async with recorder.client(sandbox, timeout=0.3) as client:
            [p async for p in client.positions.list(account)]
    attempts = [s for s in recorder.spans(SpanKind.CLIENT)
                if s.name == "GET /accounts/{account_id}/positions"]
    assert len(attempts) == 2
    first = dict(attempts[0].attributes or {})
    assert first["error.type"] == "upvest_async.errors.APITimeoutError"
    assert "http.response.status_code" not in first
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].attributes["http.request.resend_count"] == 1  # type: ignore[index]


async def test_without_a_configured_provider_nothing_breaks() -> None:
    faults = Faults(script=("429",), rate_limit_retry_after=0)
    async with Sandbox(accounts=1, positions_per_account=2, seed=3, faults=faults) as sandbox:
        client = client_for(sandbox)  # the API's global no-op providers
        async with client:
            # The API's placeholders: nothing to record, so no telemetry at all.
            assert client._open().telemetry is None
            positions = [p async for p in client.positions.list(sandbox.account_ids[0])]
    assert len(positions) == 2


async def test_a_tracer_provider_alone_traces_and_the_meter_is_the_global_no_op(
        recorder: Recorder) -> None:
    async with Sandbox(accounts=1, positions_per_account=2, seed=3) as sandbox:
        client = client_for(sandbox, tracer_provider=recorder.tracer_provider)
        async with client:
            [p async for p in client.positions.list(sandbox.account_ids[0])]
    assert {s.name for s in recorder.spans(SpanKind.CLIENT)} == {
        "POST /auth/token", "GET /accounts/{account_id}/positions"}
    assert recorder.metrics() == {}


async def test_rate_limiter_waits_are_events_and_its_rate_a_gauge(recorder: Recorder) -> None:
    async with Sandbox(accounts=1, positions_per_account=2, seed=3) as sandbox:
        account = sandbox.account_ids[0]
        limiter = RateLimiter(max_requests_per_second=20)
        async with recorder.client(sandbox, rate_limiter=limiter) as client:
            await asyncio.gather(*(client.positions.retrieve(account, isin) for isin in [
                p["instrument"]["isin"] for p in sandbox.tenant.positions(account)
                if "isin" in p["instrument"]] * 3))
    waits = [e for s in recorder.spans(SpanKind.INTERNAL) for e in s.events
             if e.name == "rate_limiter.wait"]
    seconds = [float((e.attributes or {})["seconds"]) for e in waits]  # type: ignore[arg-type]
    assert seconds and all(0.001 <= value < 1 for value in seconds)
    gauge = recorder.metrics()["upvest.client.rate_limit"]
    assert [(p.value, dict(p.attributes)) for p in gauge] == [(20, _server(sandbox))]


def test_a_client_in_use_without_a_provider_does_not_import_opentelemetry() -> None:
    code = (
        "import asyncio, sys\n"
        "from support.keys import p521_key, pem\n"
        "from upvest_async import UpvestClient\n"
        "async def main():\n"
        "    client = UpvestClient(client_id='1a2b3c4d-0000-4000-8000-000000000001',"
        " client_secret='s', key_id='k', private_key=pem(p521_key()))\n"
        "    async with client:\n"
        "        assert client._open().telemetry is None\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[]"


async def test_the_spans_nest_under_the_callers_span(recorder: Recorder) -> None:
    tracer = recorder.tracer_provider.get_tracer("the application")
    async with Sandbox(accounts=1, positions_per_account=2, seed=3) as sandbox:
        client = recorder.client(sandbox)
        async with client:
            with tracer.start_as_current_span("job") as job:
                [p async for p in client.positions.list(sandbox.account_ids[0])]
    by_name = {s.name: s for s in recorder.spans()}
    call = by_name["upvest GET /accounts/{account_id}/positions"]
    attempt = by_name["GET /accounts/{account_id}/positions"]
    token_call = by_name["upvest POST /auth/token"]
    token = by_name["POST /auth/token"]
    assert call.parent is not None and call.parent.span_id == job.get_span_context().span_id
    assert attempt.parent is not None and attempt.parent.span_id == call.context.span_id
    # The access token was requested for that attempt (by the token middleware): its child.
    assert token_call.parent is not None
    assert token_call.parent.span_id == attempt.context.span_id
    assert token.parent is not None and token.parent.span_id == token_call.context.span_id
