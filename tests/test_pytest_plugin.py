"""The pytest plugin (``upvest_async.pytest_plugin``, entry point ``pytest11``): users' test
files run in fresh pytest processes (pytester) in pytest-asyncio's auto and strict modes; the
guide's example file; the marker's errors; a test file that uses no fixture runs the same with
and without the plugin (and without pytest-asyncio); importing the plugin imports nothing heavy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "testing" / "test_example.py"
GUIDE = ROOT / "docs" / "guides" / "testing.md"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
UNRELATED = """
import pytest

def test_plain(tmp_path):
    assert tmp_path.exists()

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n < 2

@pytest.mark.skip(reason="skipped")
def test_skipped():
    pass
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest args`` in a fresh process (the ini option is pytest-asyncio's)."""
    pytester.makeini("" if "no:asyncio" in args else INI)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


@pytest.mark.parametrize("mode", ["auto", "strict"])
def test_the_guides_example_passes(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makepyfile(test_example=EXAMPLE.read_text())
    result = run(pytester, "-o", f"asyncio_mode={mode}", "-W", "error")
    result.assert_outcomes(passed=5)


def test_auto_mode_needs_no_mark(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        async def test_lists(upvest_sandbox, upvest_client):
            account_id = upvest_sandbox.account_ids[1]
            positions = [p async for p in upvest_client.positions.list(account_id)]
            assert len(positions) == 20 and len(upvest_sandbox.account_ids) == 2
    """)
    run(pytester, "-o", "asyncio_mode=auto").assert_outcomes(passed=1)


def test_strict_mode_without_the_mark_is_pytest_asyncios_usual_error(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        async def test_lists(upvest_client):
            pass
    """)
    result = run(pytester, "-o", "asyncio_mode=strict")
    assert result.ret != 0


def test_an_unknown_marker_keyword_is_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.upvest_sandbox(acounts=3)
        async def test_typo(upvest_sandbox):
            pass
    """)
    result = run(pytester, "-o", "asyncio_mode=auto")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*TypeError: @pytest.mark.upvest_sandbox: unknown Sandbox "
                                 "keyword(s) acounts; accepted: accounts, *"])


def test_markers_on_the_module_and_the_test_merge(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        pytestmark = pytest.mark.upvest_sandbox(accounts=4, rate_limit=7)

        @pytest.mark.upvest_sandbox(accounts=1)
        async def test_closest_wins(upvest_sandbox):
            assert len(upvest_sandbox.account_ids) == 1 and upvest_sandbox.rate_limit == 7

        async def test_module(upvest_sandbox):
            assert len(upvest_sandbox.account_ids) == 4
    """)
    run(pytester, "-o", "asyncio_mode=auto").assert_outcomes(passed=2)


def test_the_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.upvest_sandbox(**kwargs):*"])


def _outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


@pytest.mark.parametrize("extra", [[], ["-p", "no:asyncio"]], ids=["asyncio", "no-asyncio"])
def test_a_file_using_no_fixture_runs_the_same_without_the_plugin(
        pytester: pytest.Pytester, extra: list[str]) -> None:
    pytester.makepyfile(test_unrelated=UNRELATED)
    with_plugin = run(pytester, "-rA", *extra)
    without = run(pytester, "-rA", "-p", "no:upvest_async", *extra)
    assert with_plugin.ret == without.ret == 1
    assert _outcomes(with_plugin) == _outcomes(without) == {
        "passed": 2, "failed": 1, "skipped": 1}
    assert "warning" not in str(with_plugin.stdout).lower()
    added = _fixtures(run(pytester, "--fixtures", *extra)) - _fixtures(
        run(pytester, "--fixtures", "-p", "no:upvest_async", *extra))
    # Loaded from the entry point by default, and adds its four fixtures only.
    assert added == {"upvest_sandbox", "upvest_sandbox_factory", "upvest_client",
                     "upvest_webhooks"}


def _fixtures(result: pytest.RunResult) -> set[str]:
    """The fixture names ``pytest --fixtures`` lists."""
    return {line.split()[0] for line in result.stdout.lines
            if " -- " in line and not line.startswith((" ", "-", "="))}


def test_importing_the_plugin_imports_nothing_heavy() -> None:
    probe = (
        # pytest and pytest-asyncio are loaded in any pytest session that loads the plugin.
        "import sys, json\nimport pytest, pytest_asyncio, upvest_async\n"
        "before = set(sys.modules)\n"
        "import upvest_async.pytest_plugin\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == ["upvest_async.pytest_plugin"]
    heavy = ("aiohttp.web", "joserfc", "http_sfv", "upvest_async.webhooks",
             "upvest_async.sandbox")
    probe = ("import sys, json\nimport upvest_async.pytest_plugin\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({heavy!r}))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=120)
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_the_guide_includes_the_example_file() -> None:
    assert '--8<-- "examples/testing/test_example.py"' in GUIDE.read_text()


def test_orders_filled_on_their_own_are_captured(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import uuid
        import pytest
        from upvest_async import Position

        @pytest.mark.upvest_sandbox(order_fill_seconds=0.05)
        async def test_fill(upvest_sandbox, upvest_client, upvest_webhooks):
            await upvest_client.portfolios.orders.create(
                user_id="4b9732bd-7496-4e91-8a5f-6360479d7fed",
                account_id=uuid.UUID(upvest_sandbox.account_ids[0]), cash_amount="250.00",
                side="BUY")
            await upvest_sandbox.webhooks_idle(10)
            types = [str(event.type) for event in upvest_webhooks.events]
            assert types[0] == "PORTFOLIO_ORDER.NEW" and types[-1] == "PORTFOLIO_ORDER.FILLED"
            assert "POSITION.UPDATED" in types
            assert any(isinstance(event.object, Position) for event in upvest_webhooks.events)
            assert len(types) == upvest_sandbox.webhook_stats.emitted

        async def test_timeout_says_how_many(upvest_webhooks):
            with pytest.raises(TimeoutError, match="0 webhook event.s. of 1 arrived in 0.05 s"):
                await upvest_webhooks.wait_for(1, timeout=0.05)
    """)
    run(pytester, "-o", "asyncio_mode=auto", "-W", "error").assert_outcomes(passed=2)
