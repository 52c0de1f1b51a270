"""The session's error: a step the user asked for that the session cannot take now."""
from __future__ import annotations

from ..core.errors import SegviewError


class SessionError(SegviewError):
    """A step the session cannot take now (say, copying a slice a model has not predicted)."""
