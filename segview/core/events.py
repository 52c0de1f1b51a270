"""Named events, as napari's ``EmitterGroup`` in small: a model (the ``LabelMap``) emits
them, and whoever follows it connects a callback and disconnects that same callback when
it stops following (a journal closed, a session closed, a window showing another session),
so nobody lets go of another's callbacks.

Connecting a callback that is connected already does nothing: it is heard once, and one
``disconnect`` lets go of it. Callbacks are called in the order they were connected.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, ParamSpec

P = ParamSpec("P")


class Event(Generic[P]):
    """One named event; ``Event[[Edit]]`` hands each callback an Edit, ``Event[[]]`` nothing."""

    def __init__(self, name: str):
        self.name = name
        self._callbacks: list[Callable[P, object]] = []

    def connect(self, callback: Callable[P, object]) -> Callable[P, object]:
        """Call ``callback`` on each emit from now on; returns it (so it serves as a decorator)."""
        if callback not in self._callbacks:  # bound methods compare equal when of one object
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[P, object]) -> None:
        """Stop calling ``callback``; nothing happens when it is not connected."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def connected(self, callback: Callable[P, object]) -> bool:
        return callback in self._callbacks

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        # Over a copy: a callback may connect or disconnect (itself, another) while it is heard.
        for callback in list(self._callbacks):
            callback(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._callbacks)

    def __repr__(self) -> str:
        return f"<Event {self.name}: {len(self._callbacks)} connected>"


class EmitterGroup:
    """A model's events as attributes (a subclass declares them in ``__init__``)."""

    def __iter__(self) -> Iterator[Event]:
        return (value for value in vars(self).values() if isinstance(value, Event))

    def disconnect(self, callback: Callable) -> None:
        """Disconnect ``callback`` from every event of the group it is connected to."""
        for event in self:
            event.disconnect(callback)
