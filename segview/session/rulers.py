"""Rulers: straight-line measurements on a plane of the image, in mm from its real geometry.

A ruler joins two continuous (z, y, x) indices on one plane (normal to array ``axis``, at
``index``); its length is ``core.measures.distance_mm``, so oblique direction cosines and
anisotropic spacing count. Rulers are kept with the review state, in the labels' sidecar
(``<labels>.review.json``, key "rulers"), until deleted:

    "rulers": [{"axis": 0, "index": 12, "a": [12, 40.5, 80.0], "b": [12, 61.0, 95.5],
                "length_mm": 23.41, "by": "jdoe", "at": "2026-11-21T15:30:02+00:00"}]

``length_mm`` is written for other readers of the file; segview measures again from the
image. An entry it cannot read is kept in the file as it is and not shown.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..core.measures import distance_mm
from ..core.report import csv_cell, write_csv
from ..core.review_state import current_user, now
from ..core.volume import Volume
from .errors import SessionError

#: The sidecar key of the rulers.
KEY = "rulers"
#: ``slice`` is 1-based as on screen; ``a_zyx`` and ``b_zyx`` are 0-based (z, y, x) voxel indices.
CSV_COLUMNS = ("ruler", "view_axis", "slice", "length_mm", "a_zyx", "b_zyx", "by", "at")
_AXES = ("z (axial)", "y (coronal)", "x (sagittal)")


@dataclass(frozen=True)
class Ruler:
    axis: int                            # array axis normal to its plane
    index: int                           # the plane along it
    a: tuple[float, float, float]        # ends, continuous (z, y, x) indices
    b: tuple[float, float, float]
    length_mm: float
    by: str = ""
    at: str = ""

    def to_json(self) -> dict:
        return {"axis": self.axis, "index": self.index, "a": list(self.a), "b": list(self.b),
                "length_mm": round(self.length_mm, 4), "by": self.by, "at": self.at}


class Rulers:
    """The rulers of one image, read from and written to ``store`` (the session's sidecar
    keys), measured on ``volume``; ``changed()`` after each ruler added or removed (the
    session journals them)."""

    def __init__(self, volume: Volume, store: dict, changed: Callable[[], None] = lambda: None):
        self.volume, self.store, self.changed = volume, store, changed

    def __iter__(self):
        return iter(self.all())

    def __len__(self) -> int:
        return len(self.all())

    def all(self) -> list[Ruler]:
        """Every ruler that can be read, in the order they were drawn."""
        return [ruler for ruler in (self._read(entry) for entry in self.store.get(KEY) or []) if ruler is not None]

    def add(self, a, b, axis: int) -> Ruler:
        """A ruler from ``a`` to ``b`` ((z, y, x) indices on one plane normal to ``axis``).
        Raises SessionError for ends off the image or on two planes, or no length."""
        a, b = (tuple(float(v) for v in end) for end in (a, b))
        shape = self.volume.shape
        if not all(-0.5 <= end[k] <= shape[k] - 0.5 for end in (a, b) for k in range(3)):
            raise SessionError("A ruler's ends must lie on the image.")
        if round(a[axis]) != round(b[axis]):
            raise SessionError("A ruler's ends must lie on one slice.")
        length = distance_mm(self.volume, a, b)
        if length == 0:
            raise SessionError("Drag to measure: a ruler needs two distinct ends.")
        ruler = Ruler(int(axis), int(round(a[axis])), a, b, length, current_user(), now())  # type: ignore[arg-type]
        self.store[KEY] = [*self.store.get(KEY, []), ruler.to_json()]
        self.changed()
        return ruler

    def remove(self, ruler: Ruler) -> None:
        """Delete ``ruler`` (as ``all`` gave it); entries it cannot read stay in the file."""
        self.store[KEY] = [entry for entry in self.store.get(KEY, []) if self._read(entry) != ruler]
        self.changed()

    def on_plane(self, axis: int, index: int) -> list[Ruler]:
        return [r for r in self.all() if r.axis == axis and r.index == index]

    def rows(self) -> list[dict]:
        """One CSV row per ruler (``CSV_COLUMNS``); ``slice`` is 1-based, as the window shows."""
        return [{"ruler": n, "view_axis": _AXES[r.axis], "slice": r.index + 1, "length_mm": csv_cell(r.length_mm),
                 "a_zyx": " ".join(f"{v:g}" for v in r.a), "b_zyx": " ".join(f"{v:g}" for v in r.b),
                 "by": r.by, "at": r.at} for n, r in enumerate(self.all(), 1)]

    def write_csv(self, path) -> None:
        write_csv(path, CSV_COLUMNS, self.rows())

    def _read(self, entry) -> Ruler | None:
        try:
            axis = int(entry["axis"])
            a, b = (tuple(float(v) for v in entry[end]) for end in ("a", "b"))
            if axis not in (0, 1, 2) or len(a) != 3 or len(b) != 3:
                return None
            return Ruler(axis, int(entry["index"]), a, b, distance_mm(self.volume, a, b),  # type: ignore[arg-type]
                         str(entry.get("by", "")), str(entry.get("at", "")))
        except (KeyError, TypeError, ValueError):
            return None


def measurements_path(metrics_csv) -> str:
    """Where the rulers go beside an exported metrics CSV: ``<name>.measurements.csv``."""
    text = str(metrics_csv)
    return (text[:-4] if text.lower().endswith(".csv") else text) + ".measurements.csv"
