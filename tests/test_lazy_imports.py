"""What each entry point imports: ``import upvest_async`` and ``export-positions`` never import
the webhook receiver (``aiohttp.web``), JOSE, the sandbox or OpenTelemetry (imported on a
client's first use); the webhook names still resolve.

Each case runs in a fresh interpreter, so nothing imported by other tests hides an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLIENT_ID = "1a2b3c4d-0000-4000-8000-000000000001"
#: Modules only webhooks, ``webhooks listen`` and the sandbox need.
HEAVY = ("aiohttp.web", "joserfc", "http_sfv", "upvest_async.webhooks", "upvest_async.sandbox",
         "opentelemetry")


def _imported_after(code: str) -> set[str]:
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("code", [
    "import upvest_async",
    "import upvest_async\nfrom support.keys import p521_key, pem\n"
    f"upvest_async.UpvestClient(client_id={CLIENT_ID!r}, client_secret='s', key_id='k',"
    " private_key=pem(p521_key())).with_options(max_retries=0)",
    "from upvest_async.cli import main; main.get_command(None, 'export-positions')",
    "from upvest_async.cli import main; main.get_command(None, 'rebalance')",
])
def test_the_client_and_the_bulk_commands_do_not_import_webhooks_or_the_sandbox(
        code: str) -> None:
    assert _imported_after(code) == set()


def test_webhook_names_resolve_on_first_use() -> None:
    imported = _imported_after(
        "import upvest_async\n"
        "from upvest_async import WebhookVerifier, webhook_app\n"
        "from upvest_async.webhooks import WebhookVerifier as Same\n"
        "assert WebhookVerifier is Same and 'webhook_app' in dir(upvest_async)\n")
    assert {"upvest_async.webhooks", "aiohttp.web", "joserfc"} <= imported


def test_a_name_that_is_not_exported_is_still_an_attribute_error() -> None:
    import upvest_async

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        upvest_async.nope  # noqa: B018


def test_the_webhooks_namespace_is_made_on_first_use_and_shared_with_views() -> None:
    from support.keys import p521_key, pem

    from upvest_async import UpvestClient

    client = UpvestClient(client_id=CLIENT_ID, client_secret="s", key_id="k",
                          private_key=pem(p521_key()))
    view = client.with_options(max_retries=0)
    assert view.webhooks.keys is client.webhooks.keys
    assert view.webhooks.verifier is client.webhooks.verifier
    assert view.webhooks._client is view and client.webhooks._client is client
    assert client.webhooks is client.webhooks


def test_the_lazy_commands_are_listed_and_an_unknown_one_is_a_one_line_usage_error() -> None:
    """An unknown command suggests the one meant (a prefix or a close spelling), else lists
    them."""
    listed = subprocess.run([sys.executable, "-m", "upvest_async", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    for name in ("export-positions", "mirror", "rebalance", "sandbox", "webhooks"):
        assert f"  {name}  " in listed.stdout or f"  {name} " in listed.stdout
    for typed, hint in [
        ("nope", "Commands: export-positions, mirror, rebalance, sandbox, webhooks."),
        ("export", "Did you mean 'export-positions'?"),
        ("rebalanse", "Did you mean 'rebalance'?"),
        ("webhook", "Did you mean 'webhooks'?"),
    ]:
        unknown = subprocess.run([sys.executable, "-m", "upvest_async", typed],
                                 capture_output=True, text=True, timeout=120)
        assert unknown.returncode == 2
        assert unknown.stderr.strip().splitlines() == [
            f"python -m upvest_async: error: No such command {typed!r}. {hint}"]
