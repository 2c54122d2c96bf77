"""Writing job output so that a crash never leaves a complete-looking file."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["atomic_text"]


@contextlib.contextmanager
def atomic_text(path: Path | None) -> Iterator[TextIO]:
    """Open a text stream that becomes ``path`` only when the block completes.

    It writes to a temporary file beside ``path`` and renames it over ``path`` at the end
    (``os.replace`` is atomic on POSIX); on an exception the temporary file is removed.
    ``None`` (``--out -``) writes to standard output instead.
    """
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
