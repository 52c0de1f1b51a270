"""LabelMap: the editable label volume, its tools and its diff-based undo history.

Every change is an ``Edit`` (a region's old and new values) or a ``Mark`` (a slice's review
mark set or taken back); the listeners (the metrics, the overlays, the journal) hear
exactly what changed. One step (``with label_map.step():``, or ``begin_stroke`` ..
``end_stroke``: a mouse drag, a fill, a copy, a review mark) is one undo step, and undo
takes back its marks with its edits. The history is bounded in bytes.

The hand tools (brush, fill, slice copy, interpolation, adopt) obey the brush settings
``policy`` and ``intensity_range``; replacing the labels (``copy_from``: a label file, a
model's prediction, recovered edits) and undo never do. Nothing marks a slice reviewed but
``set_reviewed``: copying a model's prediction is not reviewing it.
Pixel coordinates are numpy (z, y, x) indices; the brush is round in millimetres.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Union

import numpy as np
from scipy import ndimage

Region = tuple[slice, slice, slice]


@dataclass
class Edit:
    """Voxels ``region`` of the labels went from ``old`` to ``new`` (same shape)."""
    region: Region
    old: np.ndarray
    new: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.old.nbytes + self.new.nbytes

    def reversed(self) -> Edit:
        return Edit(self.region, self.new, self.old)

    @property
    def slices(self) -> range:
        """The z indices it touches."""
        return range(self.region[0].start, self.region[0].stop)


@dataclass
class Mark:
    """Slice ``z``'s review mark went from ``old`` to ``new``."""
    z: int
    old: bool
    new: bool

    nbytes = 0

    def reversed(self) -> Mark:
        return Mark(self.z, self.new, self.old)


Change = Union[Edit, Mark]


@dataclass
class OverwritePolicy:
    """Which existing labels a paint may replace: all, only background, or all but the
    ``protected`` classes. Erasing (painting 0) obeys protection too."""
    mode: str = "all"                       # "all" | "background" | "protect"
    protected: frozenset[int] = field(default_factory=frozenset)

    def allows(self, old: np.ndarray) -> np.ndarray:
        if self.mode == "background":
            return old == 0
        if self.mode == "protect" and self.protected:
            return ~np.isin(old, list(self.protected))
        return np.ones(old.shape, bool)


class LabelMap:
    """``labels`` (z, y, x) uint8 edited in place; ``spacing`` (x, y, z) in mm as ITK
    orders it; ``intensities`` (z, y, x) the image, for the threshold-limited brush."""

    def __init__(self, labels: np.ndarray, spacing, intensities: np.ndarray | None = None,
                 history_bytes: int = 256 * 2 ** 20):
        if labels.dtype != np.uint8 or labels.ndim != 3:
            raise ValueError(f"labels must be a (z, y, x) uint8 array, not {labels.dtype} {labels.shape}")
        if intensities is not None and intensities.shape != labels.shape:
            raise ValueError(f"image {intensities.shape} and labels {labels.shape} differ in shape")
        self.array = labels
        self.spacing = tuple(float(s) for s in spacing)
        self.intensities = intensities
        self.policy = OverwritePolicy()
        self.intensity_range: tuple[float, float] | None = None  # threshold brush (e.g. HU)
        self.history_bytes = history_bytes
        self.reviewed = np.zeros(labels.shape[0], bool)           # (Z,) slices a person checked
        self.listeners: list[Callable[[Edit], None]] = []        # every label change, as it happens
        self.mark_listeners: list[Callable[[Mark], None]] = []   # every review mark change
        self.step_listeners: list[Callable[[], None]] = []       # after each completed undo step
        self._undo: list[list[Change]] = []
        self._redo: list[list[Change]] = []
        self._stroke: list[Change] | None = None

    # -- undo steps ---------------------------------------------------------------------
    def begin_stroke(self) -> None:
        """Start one undo step (a mouse drag); edits until ``end_stroke`` belong to it."""
        self.end_stroke()
        self._stroke = []

    def end_stroke(self) -> list[Change]:
        stroke, self._stroke = self._stroke, None
        if stroke:
            self._push(stroke)
        return stroke or []

    @contextmanager
    def step(self) -> Iterator[None]:
        """Everything done inside is one undo step (and one journal record)."""
        self.begin_stroke()
        try:
            yield
        finally:
            self.end_stroke()

    def undo(self) -> bool:
        """Take back the last step (its edits in reverse order); False when there is none."""
        self.end_stroke()
        if not self._undo:
            return False
        step = self._undo.pop()
        for edit in reversed(step):
            self._apply(edit.reversed())
        self._redo.append(step)
        self._step_done()
        return True

    def redo(self) -> bool:
        self.end_stroke()
        if not self._redo:
            return False
        step = self._redo.pop()
        for edit in step:
            self._apply(edit)
        self._undo.append(step)
        self._step_done()
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def history_nbytes(self) -> int:
        return sum(change.nbytes for step in self._undo + self._redo for change in step)

    def _push(self, step: list[Change]) -> None:
        self._undo.append(step)
        self._redo.clear()
        # Over budget, the oldest steps go first; the newest is kept whatever its size,
        # so the last action can always be undone.
        while len(self._undo) > 1 and self.history_nbytes() > self.history_bytes:
            self._undo.pop(0)
        self._step_done()

    def _step_done(self) -> None:
        for listener in self.step_listeners:
            listener()

    # -- tools ---------------------------------------------------------------------------
    def paint(self, index: int, points, radius_mm: float, value: int, axis: int = 0) -> Edit | None:
        """A round brush of ``radius_mm`` dragged through ``points`` on plane ``index`` of
        ``axis`` (the array axis normal to the plane: 0 axial z, 1 coronal y, 2 sagittal x).
        Points are the plane's voxel coordinates in array order ((y, x) for z planes, (z, x)
        for y planes, (z, y) for x planes). Every voxel whose centre lies within the radius
        of the polyline, in mm on the anisotropic grid, so a fast move leaves no gap.
        ``value`` 0 erases."""
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        in_plane = [a for a in range(3) if a != axis]
        spacing = [self.spacing_zyx[a] for a in in_plane]
        size = [self.array.shape[a] for a in in_plane]
        points = np.atleast_2d(np.asarray(points, float))
        bounds = []
        for n in range(2):
            reach = radius_mm / spacing[n]
            low = max(int(np.floor(points[:, n].min() - reach)), 0)
            high = min(int(np.ceil(points[:, n].max() + reach)) + 1, size[n])
            if low >= high:
                return None
            bounds.append((low, high))
        (r0, r1), (c0, c1) = bounds
        rows, cols = np.mgrid[r0:r1, c0:c1].astype(float)
        mask = _near_polyline(rows * spacing[0], cols * spacing[1], points * spacing, radius_mm)
        region = [slice(None)] * 3
        region[axis] = slice(index, index + 1)
        region[in_plane[0]], region[in_plane[1]] = slice(r0, r1), slice(c0, c1)
        return self._write(tuple(region), np.expand_dims(mask, axis), value)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order (z, y, x)."""
        return self.spacing[2], self.spacing[1], self.spacing[0]

    def fill(self, z: int, seed, value: int) -> Edit | None:
        """Flood fill (4-connected) the region of the seed's label on slice ``z``."""
        plane = self.array[z]
        y, x = (int(round(c)) for c in seed)
        if not (0 <= y < plane.shape[0] and 0 <= x < plane.shape[1]):
            return None
        components, _ = ndimage.label(plane == plane[y, x])
        mask = components == components[y, x]
        rows, cols = np.nonzero(mask)
        region = (slice(z, z + 1), slice(int(rows.min()), int(rows.max()) + 1),
                  slice(int(cols.min()), int(cols.max()) + 1))
        return self._write(region, mask[region[1:]][None], value)

    def clear_slice(self, z: int) -> Edit | None:
        return self._write(self._slab(z, z + 1), np.ones((1, *self.array.shape[1:]), bool), 0)

    def copy_slice(self, source: int, target: int) -> Edit | None:
        """Labels of slice ``source`` onto slice ``target`` (the policy still applies)."""
        return self._write_values(self._slab(target, target + 1), self.array[source][None].copy())

    def interpolate(self, first: int, last: int) -> Edit | None:
        """Fill the slices strictly between ``first`` and ``last`` from those two slices by
        shape-based interpolation: each class's signed distance map is blended linearly
        along z, and a voxel takes the class whose interpolated shape contains it."""
        if last < first:
            first, last = last, first
        if last - first < 2:
            return None
        a, b = self.array[first], self.array[last]
        classes = [c for c in np.union1d(np.unique(a), np.unique(b)) if c != 0]
        gaps = np.arange(1, last - first) / (last - first)  # weights of slice ``last``
        result = np.zeros((len(gaps), *a.shape), np.uint8)
        depth = np.full(result.shape, 0.0)
        spacing = (self.spacing[1], self.spacing[0])
        for c in classes:
            blended = (1 - gaps)[:, None, None] * _signed_distance(a == c, spacing) + \
                gaps[:, None, None] * _signed_distance(b == c, spacing)
            inside = (blended < 0) & (blended < depth)  # the deepest class wins an overlap
            result[inside] = c
            depth[inside] = blended[inside]
        return self._write_values(self._slab(first + 1, last), result)

    def copy_from(self, source: np.ndarray, z: int | None = None) -> Edit | None:
        """Replace the labels by ``source`` (z, y, x) exactly: a label file, a model's
        prediction, recovered edits; the whole volume, or slice ``z`` only. The brush
        settings do not apply and no slice becomes reviewed."""
        if source.shape != self.array.shape:
            raise ValueError(f"source {source.shape} and labels {self.array.shape} differ in shape")
        start, stop = (0, self.array.shape[0]) if z is None else (z, z + 1)
        return self._write_values(self._slab(start, stop), source[start:stop], brush=False)

    def adopt(self, z: int, seed, source: np.ndarray, other: np.ndarray) -> Edit | None:
        """Where two models disagree: the connected region (4-connected, slice ``z``) of
        pixels where ``source`` and ``other`` (z, y, x) differ that contains ``seed``
        (y, x) takes ``source``'s labels. One undo step; None off a disagreement."""
        differs = source[z] != other[z]
        y, x = (int(round(c)) for c in seed)
        if not (0 <= y < differs.shape[0] and 0 <= x < differs.shape[1]) or not differs[y, x]:
            return None
        components, _ = ndimage.label(differs)
        mask = components == components[y, x]
        values = np.where(mask, source[z], self.array[z])
        return self._write_values(self._slab(z, z + 1), values[None], mask[None])

    def fill_between_slices(self) -> list[Change]:
        """Interpolate across every run of empty slices between two labelled ones
        (one undo step)."""
        labelled = np.flatnonzero(self.array.reshape(self.array.shape[0], -1).any(axis=1))
        self.begin_stroke()
        for first, last in zip(labelled, labelled[1:]):
            if last - first > 1:
                self.interpolate(int(first), int(last))
        return self.end_stroke()

    def set_reviewed(self, z: int, reviewed: bool = True) -> Mark | None:
        """Mark slice ``z`` reviewed (or take the mark back): part of the step in progress,
        else a step of its own, so undo takes it back. None when nothing changes."""
        if bool(self.reviewed[z]) == reviewed:
            return None
        mark = Mark(int(z), not reviewed, reviewed)
        self._record(mark)
        return mark

    # -- writing -------------------------------------------------------------------------
    def _slab(self, start: int, stop: int) -> Region:
        return (slice(start, stop), slice(0, self.array.shape[1]), slice(0, self.array.shape[2]))

    def _write(self, region: Region, mask: np.ndarray, value: int) -> Edit | None:
        if not 0 <= value <= 255:
            raise ValueError(f"class value {value} does not fit a uint8 label volume")
        values = np.where(mask, np.uint8(value), self.array[region])
        return self._write_values(region, values, mask)

    def _write_values(self, region: Region, values: np.ndarray, mask: np.ndarray | None = None,
                      brush: bool = True) -> Edit | None:
        """Write ``values`` where ``mask`` (all of ``region`` without one) and, for the hand
        tools (``brush``), where the overwrite policy and the intensity range allow."""
        old = self.array[region].copy()
        allowed = np.ones(old.shape, bool) if mask is None else mask.copy()
        if brush:
            allowed &= self.policy.allows(old)
        if brush and self.intensity_range is not None and self.intensities is not None:
            low, high = self.intensity_range
            image = self.intensities[region]
            allowed &= (image >= low) & (image <= high)
        new = np.where(allowed, values, old).astype(np.uint8)
        changed = np.nonzero(new != old)
        if not len(changed[0]):
            return None
        # Keep only the bounding box of what changed: the smallest diff to store and count.
        box = tuple(slice(r.start + int(c.min()), r.start + int(c.max()) + 1) for r, c in zip(region, changed))
        inner = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))
        edit = Edit(box, old[inner], new[inner])
        self._record(edit)
        return edit

    def _record(self, change: Change) -> None:
        self._apply(change)
        if self._stroke is not None:
            self._stroke.append(change)
        else:
            self._push([change])

    def _apply(self, change: Change) -> None:
        if isinstance(change, Mark):
            self.reviewed[change.z] = change.new
            for mark_listener in self.mark_listeners:
                mark_listener(change)
            return
        self.array[change.region] = change.new
        for listener in self.listeners:
            listener(change)


def _near_polyline(yy: np.ndarray, xx: np.ndarray, points_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Pixels (centres at yy, xx, in mm) within ``radius_mm`` of the polyline."""
    inside = np.zeros(yy.shape, bool)
    segments = zip(points_mm, points_mm[1:]) if len(points_mm) > 1 else [(points_mm[0], points_mm[0])]
    for (ay, ax), (by, bx) in segments:
        dy, dx = by - ay, bx - ax
        length2 = dy * dy + dx * dx
        t = 0.0 if length2 == 0 else np.clip(((yy - ay) * dy + (xx - ax) * dx) / length2, 0, 1)
        inside |= (yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2 <= radius_mm ** 2
    return inside


def _signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance in mm to the mask's boundary: negative inside, positive outside."""
    if not mask.any():  # absent: "far outside", so the other slice's shape shrinks away
        return np.full(mask.shape, float(np.hypot(*np.multiply(mask.shape, spacing))))
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    return np.where(mask, -inside + 0.5 * min(spacing), outside - 0.5 * min(spacing))
