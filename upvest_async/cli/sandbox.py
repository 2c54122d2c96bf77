"""``upvest-async sandbox``: the embedded sandbox, standalone, optionally rate-limited per client
id as Upvest is, optionally unreliable, optionally sending webhooks to loopback receivers."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:  # imported when the command runs: the other commands start faster
    from ..sandbox import Sandbox
    from ..sandbox.faults import LostMode

__all__ = ["sandbox_command"]


def _env_file_text(sandbox: Sandbox) -> str:
    env = sandbox.env(key_base64=True)
    return "".join(f"export {name}={value}\n" for name, value in env.items())


@click.command("sandbox")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="0: any free port.")
@click.option("--accounts", type=click.IntRange(0), default=20, show_default=True)
@click.option("--positions", type=click.IntRange(0), default=1500, show_default=True,
              help="Positions per account.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Milliseconds added to every response.")
@click.option("--token-lifetime", type=click.FloatRange(0.5), default=1799.0,
              show_default=True, help="Seconds an access token is valid.")
@click.option("--env-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the UPVEST_API_* variables for a client to this file.")
@click.option("--rate-limit", type=click.FloatRange(0, min_open=True), default=None,
              metavar="R",
              help="Requests per second per upvest-client-id, as Upvest limits them (default: "
                   "no limit); a request over it is answered 429 problem+json, without "
                   "Retry-After.")
@click.option("--rate-burst", type=click.FloatRange(1), default=None, metavar="B",
              help="With --rate-limit: requests a client id may send at once (its bucket's "
                   "capacity; default R/10, at least 1).")
@click.option("--rate-limit-retry-after", is_flag=True,
              help="With --rate-limit: send Retry-After (whole seconds until the next token) "
                   "with its 429s; Upvest sends none.")
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fault: share of API requests answered 500/502/503 without processing.")
@click.option("--rate-limit-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fault: share of API requests answered 429 without processing.")
@click.option("--retry-after", type=click.IntRange(0), default=1, show_default=True,
              help="Seconds sent in Retry-After with the injected 429s.")
@click.option("--reset-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fault: share of API requests whose connection is reset before processing.")
@click.option("--lost-response-rate", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Fault: share of writes processed and stored whose answer is then lost "
                   "(connection dropped or 504).")
@click.option("--lost-response-mode", type=click.Choice(["drop", "504", "mixed"]),
              default="mixed", show_default=True, help="How a lost answer is lost.")
@click.option("--slow-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Fault: share of API requests answered after --slow-seconds.")
@click.option("--slow-seconds", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Seconds a slow answer is held back.")
@click.option("--fault-seed", type=int, default=0, show_default=True,
              help="Seed of the fault draws (the same traffic sees the same faults).")
@click.option("--webhook-url", "webhook_urls", multiple=True, metavar="URL",
              help="Deliver every webhook event to this loopback URL "
                   "(http://127.0.0.1, localhost or [::1]; repeatable).")
@click.option("--order-fill-seconds", type=click.FloatRange(0), default=2.0, show_default=True,
              help="Seconds an order takes from NEW through PROCESSING to FILLED.")
@click.option("--webhook-backoff-scale", type=click.FloatRange(0), default=1.0,
              show_default=True,
              help="Multiplies Upvest's webhook back-off (1, 2, 3, 5, 8, ... 600 s) and delays.")
@click.option("--webhook-duplicate-rate", type=click.FloatRange(0, 1), default=0.0,
              show_default=True, help="Fault: share of delivered packages sent twice.")
@click.option("--webhook-lost-answer-rate", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Fault: share of 200 answers treated as failed (the package is resent).")
def sandbox_command(
    port: int,
    accounts: int,
    positions: int,
    seed: int,
    latency_ms: float,
    token_lifetime: float,
    env_file: Path | None,
    rate_limit: float | None,
    rate_burst: float | None,
    rate_limit_retry_after: bool,
    error_rate: float,
    rate_limit_rate: float,
    retry_after: int,
    reset_rate: float,
    lost_response_rate: float,
    lost_response_mode: str,
    slow_rate: float,
    slow_seconds: float,
    fault_seed: int,
    webhook_urls: tuple[str, ...],
    order_fill_seconds: float,
    webhook_backoff_scale: float,
    webhook_duplicate_rate: float,
    webhook_lost_answer_rate: float,
) -> None:
    """Run the embedded sandbox on 127.0.0.1 until interrupted.

    --rate-limit throttles every request (token requests too) per upvest-client-id, before
    its signature is checked. The fault options make it an unreliable server (faults apply to
    API requests that passed authentication; the rates are exclusive and must add up to at
    most 1).
    """
    from ..sandbox import Sandbox
    from ..sandbox.faults import Faults
    from ..sandbox.throttling import ClientBuckets
    from ..sandbox.webhooks import WebhookFaults, check_url

    if rate_limit is None and (rate_burst is not None or rate_limit_retry_after):
        raise click.UsageError("--rate-burst and --rate-limit-retry-after need --rate-limit")
    limit = ""
    if rate_limit is not None:
        try:
            buckets = ClientBuckets(rate_limit, rate_burst)
        except (TypeError, ValueError) as exc:
            raise click.BadParameter(str(exc), param_hint="--rate-limit/--rate-burst") from None
        limit = (f" (rate limit {buckets.rate:g} req/s per client id, burst {buckets.burst:g}, "
                 f"{'with' if rate_limit_retry_after else 'no'} Retry-After)")

    try:
        faults = Faults(
            seed=fault_seed, server_error_rate=error_rate, rate_limit_rate=rate_limit_rate,
            rate_limit_retry_after=retry_after, reset_rate=reset_rate,
            lost_response_rate=lost_response_rate,
            lost_response_mode=cast("LostMode", lost_response_mode),
            slow_rate=slow_rate, slow_seconds=slow_seconds,
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(f"fault options: {exc}") from None
    for url in webhook_urls:
        try:
            check_url(url)
        except ValueError as exc:
            raise click.BadParameter(f"{url}: {exc}", param_hint="--webhook-url") from None
    webhook_faults = WebhookFaults(
        seed=fault_seed, duplicate_rate=webhook_duplicate_rate,
        lost_answer_rate=webhook_lost_answer_rate,
    )

    async def serve() -> None:
        async with Sandbox(
            accounts=accounts, positions_per_account=positions, seed=seed, port=port,
            latency_ms=latency_ms, token_lifetime=token_lifetime, faults=faults,
            webhook_urls=webhook_urls, order_fill_seconds=order_fill_seconds,
            webhook_backoff_scale=webhook_backoff_scale, webhook_faults=webhook_faults,
            rate_limit=rate_limit, rate_burst=rate_burst,
            rate_limit_retry_after=rate_limit_retry_after,
        ) as sandbox:
            text = _env_file_text(sandbox)
            if env_file is not None:
                partial = env_file.with_name(env_file.name + ".tmp")
                partial.write_text(text, encoding="utf-8")
                partial.chmod(0o600)
                partial.replace(env_file)
                hint = f"source {env_file}"
            else:
                hint = "set the variables below"
            click.echo(f"Sandbox listening on {sandbox.base_url}{limit}; to point a client at it, "
                       f"{hint} (Ctrl-C stops it)")
            if faults.active:
                click.echo(
                    f"Injecting faults (seed {faults.seed}): {error_rate:.0%} 5xx, "
                    f"{rate_limit_rate:.0%} 429 (Retry-After {retry_after} s), "
                    f"{reset_rate:.0%} resets, {lost_response_rate:.0%} lost answers of writes "
                    f"({lost_response_mode}), {slow_rate:.0%} slow ({slow_seconds:g} s)"
                )
            for url in webhook_urls:
                click.echo(f"Delivering webhooks to {url} (signed v6, key id "
                           f"{sandbox.webhooks.keys.current.kid}; JWKS at "
                           f"{sandbox.base_url}/auth/verify_keys)")
            if env_file is None:
                click.echo(text, nl=False)
            sys.stdout.flush()
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
