"""Bytecode for the code a benchmark runs, as users have it.

``pip install`` compiles every module of a wheel to bytecode, and site-packages (aiohttp,
orjson, ...) has it already. A checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (set on the
machines here) never writes ``__pycache__``, so every process would compile the SDK's 50
modules from source again (about 0.1 s of start-up, not paid by the floor's imports).
:func:`ensure_bytecode` writes it once (``compileall`` writes whatever that variable says).
"""

from __future__ import annotations

import compileall
from pathlib import Path


def ensure_bytecode(before: str | None = None) -> None:
    """Compile every module of the installed ``upvest_async`` and, with ``before`` (a
    ``--before DIR``), of ``DIR/upvest_async`` (``__pycache__``, git-ignored)."""
    import upvest_async

    packages = [Path(upvest_async.__file__).parent]
    if before:
        packages.append(Path(before) / "upvest_async")
    for package in packages:
        if not compileall.compile_dir(package, quiet=1):
            raise SystemExit(f"could not compile {package}")
