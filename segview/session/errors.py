"""The session's error: a step the user asked for that the session cannot take now."""
from __future__ import annotations

from ..core.errors import SegviewError


class SessionError(SegviewError):
    """A step the session cannot take now (say, copying a slice a model has not predicted)."""


def checked_slice(z, count: int) -> int:
    """``z`` as an index of ``count`` acquired slices; raises SessionError outside them (a
    negative index is not the last slice here)."""
    if not 0 <= int(z) < count:
        raise SessionError(f"Slice {int(z) + 1} is not in this image (1 to {count}).")
    return int(z)
