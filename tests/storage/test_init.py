"""The database layer is optional: the core SDK never imports SQLAlchemy, and without the
mirror extra ``import upvest_async.storage`` fails naming the command that installs it."""

from __future__ import annotations

import subprocess
import sys

CORE = """
import sys
import upvest_async, upvest_async.webhooks, upvest_async.cli, upvest_async.jobs
import upvest_async.sandbox, upvest_async.pytest_plugin
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] in {"sqlalchemy", "asyncpg", "aiosqlite"}
                or m.startswith("upvest_async.storage"))
assert loaded == [], loaded
"""

WITHOUT_EXTRA = """
import sys
sys.modules["sqlalchemy"] = None  # as if the mirror extra were not installed
try:
    import upvest_async.storage
except ImportError as exc:
    print(exc)
else:
    raise AssertionError("imported without SQLAlchemy")
"""


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_core_sdk_never_imports_the_database_layer() -> None:
    run(CORE)


def test_without_the_extra_the_import_error_names_the_extra() -> None:
    assert "pip install 'upvest-async[mirror]'" in run(WITHOUT_EXTRA)
