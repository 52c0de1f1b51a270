"""What every command shares: the one-line user error and a terminal progress bar."""
from __future__ import annotations

import sys

from ..core.errors import SegviewError


class UserError(SegviewError):
    """A mistake in the command line or the data: shown as one line."""


def progress(done: int, total: int, what: str = "") -> None:
    """A one-line progress bar on stderr (only when it is a terminal)."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / max(total, 1))
    end = "\n" if done >= total else ""
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {what:<30}", end=end,
          file=sys.stderr, flush=True)
