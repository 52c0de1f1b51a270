"""LabelMap: the editable label volume, its tools and its diff-based undo history.

Every change is an ``Edit`` (a region's old and new values) or a ``Mark`` (a slice's review
mark set or taken back); those connected to its ``events`` (``changed``: each Edit,
``marked``: each Mark, ``step``: each completed undo step; the metrics, the overlays, the
journal) hear exactly what changed. One step (``with label_map.step():``, or ``begin_stroke`` ..
``end_stroke``: a mouse drag, a fill, a copy, a review mark) is one undo step, and undo
takes back its marks with its edits. The history keeps only the voxels each edit changed
(a ``Patch``: their positions and old and new values), so copying a model over the whole
volume costs what it changes; it is bounded in bytes, the newest step kept whatever its
size (then alone). Each step keeps the name of the edit that made it (``Step.what``: a
tool's own, or the one given to ``step``), so that undo and redo can say what they took back.

The hand tools (brush, fill, slice copy, interpolation, adopt) obey the brush settings
``policy`` and ``intensity_range`` (interpolation writes onto background only, so the
policy never has anything to refuse it); replacing the labels (``copy_from``: a label file, a
model's prediction, recovered edits) and undo never do. Nothing marks a slice reviewed but
``set_reviewed``: copying a model's prediction is not reviewing it.
Pixel coordinates are numpy (z, y, x) indices; the brush is round in millimetres.

The class tools (islands, smoothing, margin, holes, logical operations, growing from a
seed) work on one class at a time, inside the bounding box of what they can change, and
each application is one ``Edit``. What a tool adds to a class replaces only what the
overwrite policy allows; what it takes from a class becomes background unless that class
is protected. The brush's intensity range is a brush setting and does not apply to them
(growing from a seed has its own range). Kernels and distances are in mm: on anisotropic
voxels a ball of radius r mm is the ellipsoid of voxel offsets within r mm, centre to
centre. Long tools take ``progress(done, total)`` and ``should_stop()``: stopped, they
write nothing and return None.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import numpy as np
from scipy import ndimage

from .events import EmitterGroup, Event

#: A box of the (z, y, x) labels: one slice per axis. Typed with any length because boxes
#: come from comprehensions and scipy.ndimage.find_objects, which type them so.
Region = tuple[slice, ...]


#: The most bytes of labels one Edit of ``copy_from`` spans (whole slices): it bounds the
#: temporaries of the write, the arrays a listener is handed and what undo rebuilds.
SLAB_BYTES = 8 * 2 ** 20

_keys = itertools.count(1)  # next() is atomic: edits are made in workers too


@dataclass(eq=False)
class Edit:
    """Voxels ``region`` of the labels went from ``old`` to ``new`` (same shape).

    ``key`` names the change: undoing it applies ``reversed()`` (``undo`` True) and redoing
    it applies it again, both under the same key, so a listener recognises the undo or redo
    of an edit it saw, whatever arrays they come in (the history keeps changes sparse and
    rebuilds the arrays)."""
    region: Region
    old: np.ndarray
    new: np.ndarray
    key: int = field(default_factory=lambda: next(_keys))
    undo: bool = False
    _changes: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return self.old.nbytes + self.new.nbytes

    def reversed(self) -> Edit:
        changes = self._changes
        swapped = None if changes is None else (changes[0], changes[2], changes[1])
        return Edit(self.region, self.new, self.old, self.key, not self.undo, swapped)

    @property
    def slices(self) -> range:
        """The z indices it touches."""
        return range(self.region[0].start, self.region[0].stop)

    def changes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index, old, new) of the voxels whose value changed: their flat positions in
        ``region`` (C order; uint32 when the region allows) and their values before and
        after. Computed once; what the history, the journal and the metrics keep or count."""
        if self._changes is None:
            index: np.ndarray = np.flatnonzero(self.old != self.new).astype(_index_dtype(self.old.size))
            self._changes = (index, self.old.reshape(-1)[index], self.new.reshape(-1)[index])
        return self._changes


def _index_dtype(size: int) -> type:
    return np.uint32 if size <= 2 ** 32 else np.int64


@dataclass(eq=False)
class Patch:
    """An Edit as the undo history keeps it: only what changed. ``index`` holds the flat
    positions (C order) of the changed voxels in ``region`` and ``old``/``new`` their
    values; ``index`` None stores every voxel of the region instead, when most of it
    changed (then that is smaller). The voxels it does not store are the same before and
    after, so undo and redo rebuild the Edit from the labels as they are then."""
    region: Region
    index: np.ndarray | None
    old: np.ndarray
    new: np.ndarray
    key: int

    @classmethod
    def of(cls, edit: Edit) -> Patch:
        index, old, new = edit.changes()
        if index.nbytes + old.nbytes + new.nbytes < edit.nbytes:
            return cls(edit.region, index, old, new, edit.key)
        return cls(edit.region, None, edit.old.reshape(-1), edit.new.reshape(-1), edit.key)

    @property
    def nbytes(self) -> int:
        return (0 if self.index is None else self.index.nbytes) + self.old.nbytes + self.new.nbytes

    @property
    def slices(self) -> range:
        return range(self.region[0].start, self.region[0].stop)

    def changed_slices(self) -> list[int]:
        """The slices on which this change changed a voxel (of ``slices``)."""
        shape = box_shape(self.region)
        positions = np.flatnonzero(self.old != self.new) if self.index is None else self.index[self.old != self.new]
        return sorted({int(z) for z in self.region[0].start + positions // (shape[1] * shape[2])})

    def edit(self, labels: np.ndarray, undo: bool) -> Edit:
        """The Edit that redoes this change on ``labels`` (as they are just before it), or
        with ``undo`` takes it back (``labels`` as they are just after it)."""
        shape = box_shape(self.region)
        if self.index is None:
            edit = Edit(self.region, self.old.reshape(shape), self.new.reshape(shape), self.key)
        else:
            old, new = labels[self.region].copy(), labels[self.region].copy()
            old.reshape(-1)[self.index] = self.old
            new.reshape(-1)[self.index] = self.new
            edit = Edit(self.region, old, new, self.key, _changes=(self.index, self.old, self.new))
        return edit.reversed() if undo else edit


@dataclass
class Mark:
    """Slice ``z``'s review mark went from ``old`` to ``new``."""
    z: int
    old: bool
    new: bool

    nbytes = 0

    def reversed(self) -> Mark:
        return Mark(self.z, self.new, self.old)


Change = Edit | Mark
Stored = Patch | Mark  # a change as the undo history keeps it


#: What a step is called when nothing named it (``LabelMap.write`` alone, a script's step).
EDIT = "edit"

P = ParamSpec("P")
R = TypeVar("R")


class Step(list):
    """One undo step's changes; ``serial`` names the labels' state right after it (see
    ``LabelMap.history_position``), ``what`` the edit in a person's words ("fill", "click"),
    given when it was made, so that undo and redo can say what they took back."""

    def __init__(self, changes: list[Stored], serial: int, what: str = EDIT):
        super().__init__(changes)
        self.serial = serial
        self.what = what

    def slices(self) -> list[int]:
        """The slices whose labels or review mark it changed."""
        return sorted(set(labelled_slices(self)) | {change.z for change in self if isinstance(change, Mark)})

    def values(self) -> list[int]:
        """The classes (not background) of the voxels it changed, before or after."""
        counts = np.zeros(256, np.int64)  # bincount, not unique: a whole-volume copy is large
        for change in self:
            if isinstance(change, Patch):
                moved = change.old != change.new
                counts += np.bincount(change.old[moved], minlength=256) + np.bincount(change.new[moved], minlength=256)
        return [int(v) for v in np.flatnonzero(counts[1:]) + 1]


def labelled_slices(changes: list[Stored]) -> list[int]:
    """The slices whose labels ``changes`` changed (their marks aside)."""
    return sorted({z for change in changes if isinstance(change, Patch) for z in change.changed_slices()})


#: Each tool's name for the undo step it makes (``_named``), by method name.
STEP_NAMES: dict[str, str] = {}


def _named(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Calls ``what`` the undo step a tool makes of its own; one open around it (a drag,
    ``step(what)``) keeps its own name."""
    def decorate(tool: Callable[P, R]) -> Callable[P, R]:
        STEP_NAMES[tool.__name__] = what

        @functools.wraps(tool)
        def named(*args: P.args, **kwargs: P.kwargs) -> R:
            labels = args[0]
            assert isinstance(labels, LabelMap)
            if labels._stroke is not None or labels._naming is not None:
                return tool(*args, **kwargs)
            labels._naming = what
            try:
                return tool(*args, **kwargs)
            finally:
                labels._naming = None
        return named
    return decorate


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


class Kept:
    """Voxels the last hand-tool step would have changed but its settings kept: the
    overwrite policy (``by_policy``) or the intensity range (``by_intensity``), each voxel
    once however often a drag went over it. A tool that changed less than asked (an eraser
    under "background only") says why from this."""

    def __init__(self) -> None:
        self._voxels: dict[str, list[np.ndarray]] = {"policy": [], "intensity": []}  # flat indices

    def add(self, why: str, shape: tuple[int, ...], region: Region, where: np.ndarray) -> None:
        """Count the voxels of ``region`` (of a volume of ``shape``) set in ``where``."""
        if where.any():
            offsets = [np.asarray(idx) + (r.start or 0) for idx, r in zip(np.nonzero(where), region)]
            self._voxels[why].append(np.ravel_multi_index(offsets, shape))

    def _count(self, why: str) -> int:
        found = self._voxels[why]
        return int(np.unique(np.concatenate(found)).size) if found else 0

    @property
    def by_policy(self) -> int:
        return self._count("policy")

    @property
    def by_intensity(self) -> int:
        return self._count("intensity")

    def __bool__(self) -> bool:
        return any(self._voxels.values())

    def describe(self, policy: OverwritePolicy, intensity_range: tuple[float, float] | None) -> str:
        """'N voxels kept by ...' in the tools panel's words ('' when none were)."""
        reasons = []
        if self.by_policy:
            what = {"background": "background only", "protect": "all but protected classes"}.get(policy.mode, "")
            reasons.append(f"{self.by_policy} voxels kept by 'Paint over: {what}'")
        if self.by_intensity and intensity_range is not None:
            low, high = intensity_range
            reasons.append(f"{self.by_intensity} outside the intensity range {low:g} to {high:g}")
        return " and ".join(reasons)


@dataclass(frozen=True)
class Gaps:
    """Where Fill between slices interpolates each class, read once from the labels
    (``LabelMap.gaps``), by class value. ``runs``: each run of slices without the class
    between two slices that hold it, as those two (first, last); a reviewed slice ends
    every run it lies in. ``one_sided``: where the class ends while the fill goes on past
    it, as (its last slice, the first slice beyond that the fill does not reach) or the
    reverse below it: an unlabelled stretch up to a labelled slice, or one other classes
    are filled into. It is not extended there: where it ends is unknown (3D Slicer leaves
    a segment so)."""
    runs: dict[int, list[tuple[int, int]]]
    one_sided: dict[int, list[tuple[int, int]]]

    @classmethod
    def of(cls, present: np.ndarray, reviewed: np.ndarray) -> Gaps:
        """From ``present`` (Z, 256) bool (class on slice; column 0, background, unread)
        and ``reviewed`` (Z,) bool."""
        labelled = np.asarray(present[:, 1:].any(axis=1))
        classes = [int(c) for c in np.flatnonzero(present[:, 1:].any(axis=0)) + 1]
        stops = {c: np.flatnonzero(present[:, c] | reviewed) for c in classes}
        runs: dict[int, list[tuple[int, int]]] = {}
        covered = np.zeros(len(reviewed), bool)  # inside some class's run: filled for it
        for c in classes:
            first, last = stops[c][:-1], stops[c][1:]
            run = (last - first > 1) & present[first, c] & present[last, c]
            if run.any():
                runs[c] = list(zip(first[run].tolist(), last[run].tolist()))
                for a, b in runs[c]:
                    covered[a + 1:b] = True
        # The fill reaches past a class's end through unlabelled slices and slices it fills.
        reached = ~reviewed & (~labelled | covered)
        walk = _Walk(np.flatnonzero(~reached), labelled, np.concatenate(([0], np.cumsum(covered))))
        one_sided = {c: found for c in classes if (found := walk.one_sided(present[:, c], stops[c]))}
        return cls(runs, one_sided)

    def pairs(self) -> list[tuple[int, int]]:
        """The two slices of every run, each pair once, in order."""
        return sorted({run for runs in self.runs.values() for run in runs})


@dataclass(frozen=True)
class _Walk:
    """From a class's ends, how far Fill between slices reaches past it (``Gaps.of``):
    ``stops``, the slices it does not reach (sorted); ``labelled`` (Z,); ``covered``, the
    running count (Z + 1,) of the slices it fills for some class."""
    stops: np.ndarray
    labelled: np.ndarray
    covered: np.ndarray

    def one_sided(self, holds: np.ndarray, stops: np.ndarray) -> list[tuple[int, int]]:
        """Where a class on slices ``holds`` (Z,) bool, whose runs end at ``stops`` (its
        slices and the reviewed ones), is left out."""
        found = set()
        for s in np.flatnonzero(holds).tolist():
            after, before = np.searchsorted(stops, s, "right"), np.searchsorted(stops, s, "left") - 1
            if after == len(stops) or not holds[stops[after]]:  # no run of its own above
                n = np.searchsorted(self.stops, s, "right")
                if n < len(self.stops) and self._left_out(s, int(self.stops[n])):
                    found.add((s, int(self.stops[n])))
            if before < 0 or not holds[stops[before]]:  # nor below
                n = np.searchsorted(self.stops, s, "left") - 1
                if n >= 0 and self._left_out(int(self.stops[n]), s):
                    found.add((int(self.stops[n]), s))
        return sorted(found)

    def _left_out(self, first: int, last: int) -> bool:
        """Whether the fill reaches the slices between, labelled ``first`` and ``last`` on
        the class's side: some are filled, or the other side is labelled."""
        return last - first > 1 and bool(self.labelled[first] and self.labelled[last]
                                          or self.covered[last] > self.covered[first + 1])


class LabelEvents(EmitterGroup):
    """What a LabelMap tells those who follow it (``label_map.events``)."""

    def __init__(self) -> None:
        self.changed: Event[[Edit]] = Event("changed")  # every label change, as it happens
        self.marked: Event[[Mark]] = Event("marked")     # every review mark change
        self.step: Event[[]] = Event("step")             # after each completed undo step (undo, redo too)


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
        self.events = LabelEvents()
        self._undo: list[Step] = []
        self._redo: list[Step] = []
        self._stroke: list[Stored] | None = None
        self._stroke_what = EDIT  # the name of the step open (``_stroke``)
        self._naming: str | None = None  # the name of the step a tool would open (``_named``)
        self.kept = Kept()  # what the brush settings kept in the last hand-tool step
        self._serials = itertools.count(1)
        self._oldest_position = 0  # the state before the oldest step kept (0: as created)
        #: Held while a change is applied and heard: a reader in another thread (the journal
        #: writing its snapshot) sees each change whole, and its listeners heard it.
        self.lock = threading.RLock()

    def kept_reason(self) -> str:
        """What the brush settings kept in the last hand-tool step, in the tools panel's
        words ('' when nothing)."""
        return self.kept.describe(self.policy, self.intensity_range)

    # -- undo steps ---------------------------------------------------------------------
    def begin_stroke(self, what: str | None = None) -> None:
        """Start one undo step (a mouse drag) called ``what`` ("brush stroke"; None: the
        name of the tool making it, else ``EDIT``); edits until ``end_stroke`` belong to it."""
        self.end_stroke()
        self._stroke, self._stroke_what = [], what or self._naming or EDIT
        self.kept = Kept()

    def end_stroke(self) -> list[Stored]:
        """End the step begun by ``begin_stroke``; its changes as the history keeps them."""
        stroke, self._stroke = self._stroke, None
        if stroke:
            self._push(stroke, self._stroke_what)
        return stroke or []

    def abort_stroke(self, count: int | None = None) -> int:
        """Take back the last ``count`` changes (all when None) of the step begun by
        ``begin_stroke``, newest first, and keep nothing of them: no undo step, the redo
        history as it was; the step ends once none is left (then the labels are as before
        ``begin_stroke``). Listeners hear each reversal (the journal records the changes
        and their reversals with the next step: they cancel out). Returns how many changes
        the step still holds."""
        stroke = self._stroke if self._stroke is not None else []
        for _ in range(len(stroke) if count is None else min(count, len(stroke))):
            self._apply(self._taken_back(stroke.pop()))
        if not stroke:
            self._stroke = None
        return len(stroke)

    @contextmanager
    def step(self, what: str | None = None) -> Iterator[None]:
        """Everything done inside is one undo step called ``what`` (and one journal record)."""
        self.begin_stroke(what)
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
        for change in reversed(step):
            self._apply(self._taken_back(change))
        self._redo.append(step)
        self._step_done()
        return True

    def redo(self) -> bool:
        self.end_stroke()
        if not self._redo:
            return False
        step = self._redo.pop()
        self._undo.append(step)  # first, as undo pops first: listeners see the position it leads to
        for change in step:
            self._apply(change.edit(self.array, undo=False) if isinstance(change, Patch) else change)
        self._step_done()
        return True

    @property
    def history_position(self) -> int | None:
        """A number naming the labels' state in the undo history: undo and redo back to a
        state give its number again, a new step a new one. None while a step is open (a
        drag; listeners hearing a new step's changes): no state of the history."""
        if self._stroke is not None:
            return None
        return self._undo[-1].serial if self._undo else self._oldest_position

    @property
    def undo_step(self) -> Step | None:
        """The step ``undo`` would take back (None: none)."""
        return self._undo[-1] if self._undo else None

    @property
    def redo_step(self) -> Step | None:
        """The step ``redo`` would do again (None: none)."""
        return self._redo[-1] if self._redo else None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _taken_back(self, change: Stored) -> Change:
        """The change that takes back ``change`` (kept in the history), the labels as now."""
        return change.edit(self.array, undo=True) if isinstance(change, Patch) else change.reversed()

    def history_nbytes(self) -> int:
        """The bytes the undo history stores: the changed voxels' positions and values."""
        return sum(change.nbytes for step in self._undo + self._redo for change in step)

    def _push(self, step: list[Stored], what: str) -> None:
        self._undo.append(Step(step, next(self._serials), what))
        self._redo.clear()
        # Over budget, the oldest steps go first; the newest is kept whatever its size (then
        # as the only one), so the last action can always be undone.
        while len(self._undo) > 1 and self.history_nbytes() > self.history_bytes:
            self._oldest_position = self._undo.pop(0).serial
        self._step_done()

    def _step_done(self) -> None:
        self.events.step.emit()

    # -- tools ---------------------------------------------------------------------------
    @_named("brush stroke")
    def paint(self, index: int, points, radius_mm: float, value: int, axis: int = 0) -> Edit | None:
        """A round brush of ``radius_mm`` dragged through ``points`` on plane ``index`` of
        ``axis`` (the array axis normal to the plane: 0 axial z, 1 coronal y, 2 sagittal x).
        Points are the plane's voxel coordinates in array order ((y, x) for z planes, (z, x)
        for y planes, (z, y) for x planes). Every voxel whose centre lies within the radius
        of the polyline, in mm on the anisotropic grid, so a fast move leaves no gap, and
        every voxel the polyline passes through, so a brush smaller than a voxel still
        paints the voxels under its centre. ``value`` 0 erases."""
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, not {axis}")
        in_plane = [a for a in range(3) if a != axis]
        spacing = [self.spacing_zyx[a] for a in in_plane]
        size = [self.array.shape[a] for a in in_plane]
        points = np.atleast_2d(np.asarray(points, float))
        bounds = []
        for n in range(2):
            reach = max(radius_mm / spacing[n], 0.5)  # at least the voxel under the centre
            low = max(int(np.floor(points[:, n].min() - reach)), 0)
            high = min(int(np.ceil(points[:, n].max() + reach)) + 1, size[n])
            if low >= high:
                return None
            bounds.append((low, high))
        (r0, r1), (c0, c1) = bounds
        rows, cols = np.ogrid[r0:r1, c0:c1]  # broadcast, not two dense grids per mouse move
        mask = _under_brush([rows * spacing[0], cols * spacing[1]], points * spacing, radius_mm, spacing)
        region = [slice(None)] * 3
        region[axis] = slice(index, index + 1)
        region[in_plane[0]], region[in_plane[1]] = slice(r0, r1), slice(c0, c1)
        return self._write(tuple(region), np.expand_dims(mask, axis), value)

    @_named("polygon fill")
    def fill_polygon(self, index: int, points, value: int, axis: int = 0) -> Edit | None:
        """The polygon tool: every voxel of plane ``index`` of ``axis`` (as ``paint``) whose
        centre lies inside the closed polygon through ``points`` (the plane's voxel
        coordinates in array order) or on its edge takes ``value``, where the brush settings
        allow. A polygon that crosses itself fills by the even-odd rule (its crossed loops
        are holes). One undo step; None when nothing changes. Raises ValueError for fewer
        than 3 distinct vertices, a bad axis or a plane outside the labels."""
        self.kept = Kept()  # this call is the step, even where it writes nothing
        if axis not in (0, 1, 2) or not 0 <= index < self.array.shape[axis]:
            raise ValueError(f"plane {index} of axis {axis} is not in labels of shape {self.array.shape}")
        vertices = np.atleast_2d(np.asarray(points, float))
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(np.unique(vertices, axis=0)) < 3:
            raise ValueError("a polygon needs at least 3 distinct vertices")
        in_plane = [a for a in range(3) if a != axis]
        low = np.maximum(np.ceil(vertices.min(axis=0)).astype(int), 0)
        high = np.minimum(np.floor(vertices.max(axis=0)).astype(int) + 1, [self.array.shape[a] for a in in_plane])
        if (low >= high).any():
            return None
        rows, cols = np.ogrid[low[0]:high[0], low[1]:high[1]]
        region = [slice(index, index + 1)] * 3
        for a, start, stop in zip(in_plane, low, high):
            region[a] = slice(int(start), int(stop))
        return self._write(tuple(region), np.expand_dims(_in_polygon(rows, cols, vertices), axis), value)

    @_named("level tracing fill")
    def fill_level(self, index: int, seed, tolerance: float, value: int, axis: int = 0) -> Edit | None:
        """Level tracing: on plane ``index`` of ``axis`` (as ``paint``), the region
        ``traced_level`` finds from ``seed`` (the plane's voxel coordinates) in the image
        takes ``value``, where the brush settings allow. One undo step; None off the plane or
        when nothing changes. Raises ValueError without an image or for a bad axis."""
        self.kept = Kept()  # this call is the step, even where it writes nothing
        if self.intensities is None:
            raise ValueError("level tracing needs the image's intensities")
        if axis not in (0, 1, 2) or not 0 <= index < self.array.shape[axis]:
            raise ValueError(f"plane {index} of axis {axis} is not in labels of shape {self.array.shape}")
        mask = traced_level(np.take(self.intensities, index, axis), seed, tolerance)
        if mask is None:
            return None
        region = [slice(0, n) for n in self.array.shape]
        region[axis] = slice(index, index + 1)
        return self._write(tuple(region), np.expand_dims(mask, axis), value)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm in array order (z, y, x)."""
        return self.spacing[2], self.spacing[1], self.spacing[0]

    @_named("fill")
    def fill(self, z: int, seed, value: int) -> Edit | None:
        """Flood fill (4-connected) the region of the seed's label on slice ``z``."""
        self.kept = Kept()  # this call is the step, even where it writes nothing
        plane = self.array[z]
        y, x = (int(np.rint(c)) for c in seed)
        if not (0 <= y < plane.shape[0] and 0 <= x < plane.shape[1]):
            return None
        components, _ = ndimage.label(plane == plane[y, x])
        mask = components == components[y, x]
        rows, cols = np.nonzero(mask)
        region = (slice(z, z + 1), slice(int(rows.min()), int(rows.max()) + 1),
                  slice(int(cols.min()), int(cols.max()) + 1))
        return self._write(region, mask[region[1:]][None], value)

    @_named("clear slice")
    def clear_slice(self, z: int) -> Edit | None:
        return self._write(self._slab(z, z + 1), np.ones((1, *self.array.shape[1:]), bool), 0)

    @_named("copy of a slice")
    def copy_slice(self, source: int, target: int) -> Edit | None:
        """Labels of slice ``source`` onto slice ``target`` (the policy still applies). A copy
        is no review: a reviewed ``target`` it changes is reviewed no longer, in the same
        undo step (as a model's labels copied onto it)."""
        with self.step():
            edit = self._write_values(self._slab(target, target + 1), self.array[source][None].copy())
            if edit is not None:
                self.set_reviewed(target, False)
        return edit

    @_named("interpolation")
    def interpolate(self, first: int, last: int) -> Edit | None:
        """Fill the slices strictly between ``first`` and ``last`` with the classes labelled
        on both (``_run_blends``), onto their background only: a voxel of another class
        was drawn by a person (or a model) and an interpolation's guess never replaces it.
        The intensity range still limits it, as every hand tool. A class on one of the two
        slices only is not extended, as 3D Slicer leaves a segment labelled on one side: its
        shape says nothing of where it ends between them (blended with "far outside", it
        vanished at once, but for a remnant of a large organ whose size depended on the
        image's width). One Edit (None when nothing changes)."""
        if last < first:
            first, last = last, first
        a, b = self.array[first], self.array[last]
        classes = [int(c) for c in np.intersect1d(np.unique(a), np.unique(b)) if c != 0]  # on both sides
        if last - first < 2 or not classes:
            return None
        values = np.stack([value for value, _ in self._run_blends(first, last, classes)])
        region = self._slab(first + 1, last)
        return self._write_values(region, values, (values != 0) & (self.array[region] == 0))

    def _run_blends(self, first: int, last: int, classes: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Shape-based interpolation of ``classes`` (each labelled on slices ``first`` and
        ``last``) across the slices between, one slice at a time from ``first`` + 1: (the
        class of each voxel (y, x) uint8, 0 for none; its signed distance in mm to that
        class's interpolated outline, negative inside, inf for none). Each class's signed
        distance map is blended linearly along z (``_blend``) and a voxel takes the class
        whose interpolated shape contains it, the deepest where several do. A class whose
        regions on the two slices do not overlap, or that is one piece on each (a disc, a
        crescent, the myocardium's ring), is aligned first when it may be one object that
        moved (``_one_object``), as ITK's morphological contour interpolation aligns
        disjoint regions: the shapes are blended centroid on centroid and each result
        placed on the line between the two centroids. Unaligned, two disjoint shapes blend
        to nothing, and a ring that moves by more than its thickness breaks into pieces. A
        shape with holes is blended as its outline and its holes (``_blend``). Where a class
        on both slices still blends to nothing (a thin crescent and a small blob), the
        nearer slice's shape is taken: a class labelled on both sides is never left out.
        Classes of ``classes`` that touch on both slices (the myocardium around the cavity)
        are not parted by a seam of background: a voxel within a pixel of them, inside the
        blend of all of them together, takes the nearest. The two slices are read now, so
        the caller may write between them while it draws the slices one by one."""
        a, b = self.array[first].copy(), self.array[last].copy()
        gaps = np.arange(1, last - first) / (last - first)  # weights of slice ``last``
        values = np.asarray(classes, np.uint8)
        per_class = [self._blend(a == c, b == c, gaps) for c in classes]  # one slice at a time
        together = self._blend(np.isin(a, values), np.isin(b, values), gaps) if len(classes) > 1 else None
        seam_mm = max(self.spacing[:2])

        def slices() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for _ in gaps:
                if len(per_class) == 1:
                    depth, deepest = next(per_class[0]), values[0]
                else:
                    blends = np.stack([next(blend) for blend in per_class])
                    depth, deepest = blends.min(axis=0), values[blends.argmin(axis=0)]
                inside = depth < 0
                if together is not None:  # classes that touch on both slices touch between them: no seam
                    inside |= (depth < seam_mm) & (next(together) < 0)
                yield np.where(inside, deepest, np.uint8(0)), np.where(inside, depth, np.inf)
        return slices()

    def _blend(self, a: np.ndarray, b: np.ndarray, gaps: np.ndarray) -> Iterator[np.ndarray]:
        """The signed distance maps (mm, negative inside) of the shapes between masks ``a``
        and ``b`` (y, x), at each weight of ``b`` in ``gaps``. A shape with holes (the
        myocardium's ring around the cavity) is blended as its outline and its holes apart,
        and the holes cut out of the outline: a ring that narrows by more than its thickness
        towards the apex stays a ring, where its own distances blended to pieces."""
        spacing = (self.spacing[1], self.spacing[0])
        move = np.zeros(2, int)
        one = _one_object(a, b, spacing)
        if one and (not (a & b).any() or _one_piece(a) and _one_piece(b)):
            move = np.rint(np.subtract(ndimage.center_of_mass(b), ndimage.center_of_mass(a))).astype(int)
        b = _moved(b, -move)
        (outline_a, holes_a), (outline_b, holes_b) = _outline_and_holes(a), _outline_and_holes(b)
        at_a, b_on_a = _signed_distance(outline_a, spacing), _signed_distance(outline_b, spacing)
        holed = holes_a.any() or holes_b.any()
        if holed:  # a side without holes has one of no size at its centre, which the other's shrinks to
            hole_a = _signed_distance(holes_a if holes_a.any() else _centre(outline_a), spacing)
            hole_b = _signed_distance(holes_b if holes_b.any() else _centre(outline_b), spacing)
        for t in gaps:
            blended = (1 - t) * at_a + t * b_on_a
            if holed:
                blended = np.maximum(blended, -((1 - t) * hole_a + t * hole_b))
            if one and not (blended < 0).any():
                # A thin shape (a crescent, whose centroid lies outside it) and a much smaller
                # one blend to nothing: the nearer slice's shape, on the line between them.
                blended = _signed_distance(a if t < 0.5 else b, spacing)
            yield _moved(blended, np.rint(t * move).astype(int), fill=float(blended.max()))

    @_named("labels replaced")
    def copy_from(self, source: np.ndarray, z: int | None = None, where: np.ndarray | None = None) -> int:
        """Replace the labels by ``source`` (z, y, x) exactly: a label file, a model's
        prediction, recovered edits; the whole volume, slice ``z`` only, or the slices
        ``where`` (Z,) bool says. The brush settings do not apply and no slice becomes
        reviewed. Written in slabs of whole slices (at most ``SLAB_BYTES``), one Edit each,
        so no temporary is the size of the volume. Returns the voxels changed (the edits
        are not kept: the listeners have heard them, the history keeps what changed)."""
        if source.shape != self.array.shape:
            raise ValueError(f"source {source.shape} and labels {self.array.shape} differ in shape")
        chosen = np.zeros(self.array.shape[0], bool)
        chosen[slice(None) if z is None else slice(z, z + 1)] = True
        if where is not None:
            chosen &= where
        changed = 0
        for first, last in _slabs(chosen, self.array[:1].nbytes):
            edit = self._write_values(self._slab(first, last), source[first:last], brush=False)
            changed += 0 if edit is None else len(edit.changes()[0])
        return changed

    def patches_from(self, source: np.ndarray, where: np.ndarray | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> list[Patch] | None:
        """What ``copy_from(source, where=where)`` would change, changing nothing: one Patch
        per slab of whole slices (at most ``SLAB_BYTES``) that changes, holding the changed
        voxels of its box (or the box, when most of it changes), for ``write_patches``. Each slab is
        read under ``lock``, so a worker may call it while the labels are edited (the result
        then belongs to the labels of another moment: check they did not change before
        applying it). ``progress(done, total)`` in slices; None when ``should_stop`` said stop."""
        if source.shape != self.array.shape:
            raise ValueError(f"source {source.shape} and labels {self.array.shape} differ in shape")
        chosen = np.ones(self.array.shape[0], bool) if where is None else np.asarray(where, bool)
        total, done = int(np.count_nonzero(chosen)), 0
        patches: list[Patch] = []
        for first, last in _slabs(chosen, self.array[:1].nbytes):
            if should_stop is not None and should_stop():
                return None
            patch = self._slab_patch(first, source[first:last])
            if patch is not None:
                patches.append(patch)
            done += last - first
            if progress is not None:
                progress(done, total)
        return patches

    def _slab_patch(self, first: int, values: np.ndarray) -> Patch | None:
        """The Patch writing ``values`` (whole slices from ``first``) would make, or None."""
        with self.lock:
            old = self.array[first:first + len(values)]
            flat = np.flatnonzero(old != values)
            if not len(flat):
                return None
            old_values, new_values = old.reshape(-1)[flat], values.reshape(-1)[flat]
        where = np.unravel_index(flat, values.shape)
        del flat
        low = [int(w.min()) for w in where]
        high = [int(w.max()) + 1 for w in where]
        shape = tuple(h - lo for lo, h in zip(low, high))
        region = tuple(slice(lo + (first if axis == 0 else 0), h + (first if axis == 0 else 0))
                       for axis, (lo, h) in enumerate(zip(low, high)))
        size = int(np.prod(shape))
        index = np.ravel_multi_index(tuple(w - lo for w, lo in zip(where, low)), shape)
        index = index.astype(_index_dtype(size))
        del where
        if index.nbytes + old_values.nbytes + new_values.nbytes < 2 * size:
            return Patch(region, index, old_values, new_values, next(_keys))
        with self.lock:  # most of the box changes: its values are smaller than the positions
            old_box = np.array(self.array[region]).reshape(-1)  # a copy, never a view
        new_box = old_box.copy()
        new_box[index] = new_values
        return Patch(region, None, old_box, new_box, next(_keys))

    def write_patches(self, patches: list[Patch]) -> int:
        """Write ``patches`` (``patches_from`` these labels, as they are now: the caller
        checks they did not change since) exactly, no brush settings: part of the step in
        progress. Returns the voxels changed."""
        changed = 0
        for patch in patches:
            edit = patch.edit(self.array, undo=False)
            changed += len(edit.changes()[0])
            self._record(edit)
        return changed

    @_named("adopt")
    def adopt(self, z: int, seed, source: np.ndarray, other: np.ndarray) -> Edit | None:
        """Where two models disagree: ``source``'s labelling of the region clicked. The
        region is connected (4-connected, slice ``z``), contains ``seed`` (y, x), which must
        lie where ``source`` and ``other`` (z, y, x) differ, and holds the pixels where they
        differ or where the labels differ from ``source`` (where both models agree against
        the labels): a blob of B around a dot of A, on empty labels, is taken whole, not as
        a ring. One undo step; None off a disagreement."""
        differs = source[z] != other[z]
        y, x = (int(np.rint(c)) for c in seed)
        if not (0 <= y < differs.shape[0] and 0 <= x < differs.shape[1]) or not differs[y, x]:
            return None
        components, _ = ndimage.label(differs | (self.array[z] != source[z]))
        mask = components == components[y, x]
        values = np.where(mask, source[z], self.array[z])
        return self._write_values(self._slab(z, z + 1), values[None], mask[None])

    @_named("fill between slices")
    def fill_between_slices(self, gaps: Gaps | None = None, progress: Callable[[int, int], None] | None = None,
                            should_stop: Callable[[], bool] | None = None) -> list[Stored] | None:
        """Interpolate each class across its own runs of slices without it, between two
        slices that hold it (``gaps``; 3D Slicer's Fill between slices follows each segment
        so): the liver drawn on slices 0, 10 and 20 is filled between them though a kidney
        was drawn on slice 5. A reviewed slice is a person's answer, even an empty one
        ("nothing here"): it is never filled, and it ends every class's run it lies in. A
        class labelled on one side only is not extended (``one_sided_classes`` says where).
        Classes sharing a run are interpolated together (``_run_blends``: those that touch
        on both sides touch between them).

        A filled voxel only ever replaces background: a voxel of another class was drawn
        by a person (or a model), and an interpolation's guess never overwrites it,
        whatever the overwrite policy; so the policy has nothing to refuse and protected
        classes stay as they are (a protected class is still filled where it is labelled
        on both sides: protection keeps its voxels, as for the brush and the polygon). The
        intensity range limits it, as every hand tool. Where the interpolations of two
        classes claim the same voxel, the class it lies deeper inside wins (the lower
        signed distance to its interpolated outline, as the blend of one run decides;
        equal depths: the lower class value). One undo step, one Edit per slice filled.
        ``gaps``: ``gaps()``, where the caller has them (reading them scans the whole
        volume); changes made since are not looked at again. ``progress(done, total)`` in
        slices filled; stopped (``should_stop``, asked before each slice), it takes back
        what it wrote and returns None."""
        gaps = self.gaps() if gaps is None else gaps
        by_run: dict[tuple[int, int], list[int]] = {}
        for value, runs in sorted(gaps.runs.items()):
            for run in runs:
                by_run.setdefault(run, []).append(value)
        # Every run's two slices are read before any is written: a run may end on a slice
        # another class's run fills. Then slice by slice, each run's blend one step on.
        blends = [(first, last, self._run_blends(first, last, classes)) for (first, last), classes in by_run.items()]
        filled = sorted({z for first, last in by_run for z in range(first + 1, last)})
        self.begin_stroke()
        for done, z in enumerate(filled, 1):
            if should_stop is not None and should_stop():
                self.abort_stroke()
                return None
            claims = (next(slices) for first, last, slices in blends if first < z < last)
            values = _deepest(claims, self.array.shape[1:])
            onto = (values != 0) & (self.array[z] == 0)  # background only: never another class's voxel
            self._write_values(self._slab(z, z + 1), values[None], onto[None])
            if progress is not None:
                progress(done, len(filled))
        return self.end_stroke()

    def one_sided_classes(self, gaps: Gaps | None = None) -> dict[int, list[tuple[int, int]]]:
        """The classes ``fill_between_slices`` does not extend where it fills others, each
        with where (``Gaps.one_sided``). ``gaps``: as for ``fill_between_slices``."""
        return (self.gaps() if gaps is None else gaps).one_sided

    def gaps(self) -> Gaps:
        """Where Fill between slices interpolates each class, and where it leaves a class
        out (``Gaps``), from one reading of the labels: the classes of each labelled slice."""
        present = np.zeros((self.array.shape[0], 256), bool)  # (Z, class): class on slice
        for z in np.flatnonzero(self.array.reshape(self.array.shape[0], -1).any(axis=1)):
            present[z] = np.bincount(self.array[z].reshape(-1), minlength=256) > 0
        return Gaps.of(present, self.reviewed)

    def write(self, region: Region, values: np.ndarray) -> Edit | None:
        """Write ``values`` into ``region`` exactly (no brush settings): the result of a tool
        computed elsewhere, e.g. on a copy of these labels in a worker."""
        return self._write_values(region, values.astype(np.uint8, copy=False), brush=False)

    @_named("review mark")
    def set_reviewed(self, z: int, reviewed: bool = True) -> Mark | None:
        """Mark slice ``z`` reviewed (or take the mark back): part of the step in progress,
        else a step of its own, so undo takes it back. None when nothing changes."""
        if bool(self.reviewed[z]) == reviewed:
            return None
        mark = Mark(int(z), not reviewed, reviewed)
        self._record(mark)
        return mark

    # -- class tools ---------------------------------------------------------------------
    def check_tool(self, tool: str, *args, **options) -> dict:
        """Raises ValueError, saying what is wrong, for arguments the class tool ``tool``
        (``CLASS_TOOLS``) cannot take: a job checks them when it is made, so a worker never
        fails on them. The tool checks them again itself (scripts call it directly).
        Returns the arguments given, by parameter name."""
        if tool not in CLASS_TOOLS:
            raise ValueError(f"unknown tool {tool!r}: one of {', '.join(CLASS_TOOLS)}")
        try:
            given = inspect.signature(getattr(LabelMap, tool)).bind(self, *args, **options).arguments
        except TypeError as exc:
            raise ValueError(f"{tool}: {exc}") from None
        for name in ("value", "target"):
            if given.get(name) is not None:
                self._check_class(given[name])
        for name in ("min_mm3", "kernel_mm", "distance_mm", "low", "high", "multiplier", "box_mm"):
            if given.get(name) is not None and not math.isfinite(float(given[name])):
                raise ValueError(f"{name} must be a finite number, not {given[name]}")
        _TOOL_CHECKS.get(tool, lambda labels, given: None)(self, given)
        return given

    @_named("3D brush stroke")
    def paint_sphere(self, centre_zyx, radius_mm: float, value: int) -> Edit | None:
        """The 3D brush: every voxel whose centre lies within ``radius_mm`` of ``centre_zyx``
        ((3,) array coordinates (z, y, x), fractions allowed), or of any point of an (N, 3)
        polyline of centres (a drag, so a fast move leaves no gap), and every voxel the
        polyline passes through (as ``paint``). Exact on anisotropic voxels (an ellipsoid in
        voxels). A brush: obeys the policy and the intensity range;
        ``value`` 0 erases. Raises ValueError for a value beyond uint8 or a bad shape."""
        points = np.atleast_2d(np.asarray(centre_zyx, float))
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"sphere centres must be (z, y, x) points, not an array of shape {points.shape}")
        spacing = np.array(self.spacing_zyx)
        reach = np.maximum(radius_mm / spacing, 0.5)  # at least the voxel under the centre
        low = np.maximum(np.floor(points.min(axis=0) - reach).astype(int), 0)
        high = np.minimum(np.ceil(points.max(axis=0) + reach).astype(int) + 1, self.array.shape)
        if (low >= high).any():
            return None
        axes = np.ogrid[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        mask = _under_brush([a * s for a, s in zip(axes, spacing)], points * spacing, radius_mm, spacing)
        return self._write(tuple(slice(int(a), int(b)) for a, b in zip(low, high)), mask, value)

    def islands_preview(self, value: int | None, min_mm3: float | None = None, keep_largest: bool = False,
                        progress=None, should_stop=None) -> np.ndarray | None:
        """(z, y, x) bool: the voxels ``remove_islands`` with these arguments would take away;
        changes nothing. None when stopped."""
        islands = self._islands(value, min_mm3, keep_largest, _Job(progress, should_stop))
        if islands is None:
            return None
        preview = np.zeros(self.array.shape, bool)
        for region, mask in islands[0]:
            preview[region] |= mask
        return preview

    @_named("remove islands")
    def remove_islands(self, value: int | None, min_mm3: float | None = None, keep_largest: bool = False,
                       progress=None, should_stop=None) -> list[Edit] | None:
        """Remove the islands of class ``value`` (every class when None): its 6-connected
        components (face neighbours) smaller than ``min_mm3`` (voxel count x voxel volume),
        or, with ``keep_largest``, every component but the largest (a tie keeps the first in
        (z, y, x) order). They become background; a protected class keeps its islands.
        One undo step of one Edit per island (its own box: islands are scattered, a box
        around all of them would store and recount the whole class), or per class when
        there are over 256. Returns the Edits (empty when nothing goes); None when stopped.
        Raises ValueError unless exactly one of ``min_mm3`` >= 0 and ``keep_largest`` is given."""
        job = _Job(progress, should_stop)
        islands = self._islands(value, min_mm3, keep_largest, job)
        if islands is None or job.stopped():
            return None
        found, protected = islands
        edits = []
        with self._one_step():
            for region, mask in found:
                edits.append(self._write_values(region, np.zeros(mask.shape, np.uint8), mask, brush=False))
        for region, mask in protected:  # after the step: it began with nothing kept
            self.kept.add("policy", self.array.shape, region, mask)
        return [edit for edit in edits if edit is not None]

    @_named("smoothing")
    def smooth(self, value: int, method: str, kernel_mm: float, progress=None, should_stop=None) -> Edit | None:
        """Smooth class ``value`` with a ball of diameter ``kernel_mm`` (an ellipsoid in voxels):
        "median" (a voxel belongs to the class when most of the ball around it does; outside
        the image the labels are mirrored, as scipy.ndimage.median_filter's "reflect"),
        "opening" (erosion then dilation: removes what the ball cannot fit in, such as
        spurs and thin bridges) or "closing" (dilation then erosion: fills gaps and dents the
        ball cannot enter). The image's edge is no boundary: erosion treats outside as the
        class, dilation as not. Raises ValueError for another method or a kernel <= 0."""
        self.check_tool("smooth", value, method, kernel_mm)
        ball = self._ball(kernel_mm / 2)
        margin = {"median": ball.reach, "opening": (1, 1, 1), "closing": tuple(r + 1 for r in ball.reach)}[method]
        job = _Job(progress, should_stop, total=3)
        box = self._class_box(value, margin)
        if box is None or not job.advance():
            return None
        inside = self.array[box] == value
        if method == "median":
            smoothed = ball.majority(self._mirrored(box, value, ball.reach))
        elif method == "opening":
            smoothed = ball.dilate(ball.erode(inside))
        else:
            smoothed = ball.erode(ball.dilate(inside))
        if not job.advance():
            return None
        return job.finish(self._change_class(box, value, add=smoothed & ~inside, take=inside & ~smoothed))

    @_named("margin")
    def margin(self, value: int, distance_mm: float, progress=None, should_stop=None) -> Edit | None:
        """Grow (``distance_mm`` > 0) or shrink (< 0) class ``value`` by a distance in mm.
        Growing, every voxel whose centre lies within the distance of a voxel of the class
        joins it, where the policy allows; shrinking, every voxel of the class within the
        distance of a voxel outside it becomes background (the image's edge is no boundary).
        Exactly a threshold of the Euclidean distance transform with the voxel spacing
        (scipy.ndimage.distance_transform_edt(..., sampling=spacing) <= distance)."""
        if distance_mm == 0:
            return None
        ball = self._ball(abs(distance_mm))
        job = _Job(progress, should_stop, total=3)
        box = self._class_box(value, ball.reach if distance_mm > 0 else (1, 1, 1))
        if box is None or not job.advance():
            return None
        inside = self.array[box] == value
        if distance_mm > 0:
            change = {"add": ball.dilate(inside) & ~inside}
        else:
            change = {"take": inside & ~ball.erode(inside)}
        if not job.advance():
            return None
        return job.finish(self._change_class(box, value, **change))

    @_named("fill holes")
    def fill_holes(self, value: int, per_slice: bool = False, axis: int = 0,
                   progress=None, should_stop=None) -> Edit | None:
        """Fill the holes of class ``value``: regions of other voxels it encloses, that is
        not connected to the image's edge through face neighbours (6-connected in 3D; with
        ``per_slice``, 4-connected within each plane normal to ``axis``: 0 axial, 1 coronal,
        2 sagittal), as scipy.ndimage.binary_fill_holes. Only the background of a hole is
        filled: another class inside it is a structure, not a hole. The policy applies."""
        _check_axis(axis)
        job = _Job(progress, should_stop, total=3)
        box = self._class_box(value, (0, 0, 0))
        if box is None or not job.advance():
            return None
        old = self.array[box]
        inside = old == value
        if per_slice:
            planes = np.moveaxis(inside, axis, 0)
            filled = np.moveaxis(np.stack([ndimage.binary_fill_holes(plane) for plane in planes]), 0, axis)
        else:
            filled = ndimage.binary_fill_holes(inside)
        if not job.advance():
            return None
        return job.finish(self._change_class(box, value, add=filled & (old == 0)))

    @_named("logical operation")
    def logical_operation(self, operation: str, target: int, operand, progress=None,
                          should_stop=None) -> Edit | None:
        """Combine class ``target`` with ``operand``: a class value of these labels, or a
        (z, y, x) bool mask (e.g. ``prediction == 2``, a model's class). A voxel holds one
        class, so:
        "add": the operand's voxels join ``target`` (b = b or a; with a class of these
        labels, that class moves into ``target``); "copy": ``target`` becomes exactly the
        operand (its voxels outside the operand become background, then "add"); "subtract":
        voxels of ``target`` inside the operand become background (b = b and not a; with a
        class of these labels nothing changes, the two never share a voxel: use a mask);
        "intersect": voxels of ``target`` outside the operand become background (b = b and a).
        What joins ``target`` replaces only what the policy allows. Raises ValueError for
        another operation or a mask of another shape."""
        self.check_tool("logical_operation", operation, target, operand)
        if isinstance(operand, (int, np.integer)):
            operand_box, operand_mask = self._class_box(int(operand), (0, 0, 0)), None
        else:
            operand_mask = np.asarray(operand, bool)
            operand_box = mask_box(operand_mask)
        job = _Job(progress, should_stop, total=2)
        box = union_box(self._class_box(target, (0, 0, 0)), operand_box)
        if box is None or not job.advance():
            return None
        old = self.array[box]
        inside = old == target
        other = old == operand if operand_mask is None else operand_mask[box]
        take = {"add": None, "copy": inside & ~other, "subtract": inside & other, "intersect": inside & ~other}
        add = other if operation in ("add", "copy") else None
        return job.finish(self._change_class(box, target, add=add, take=take[operation]))

    @_named("grow from seed")
    def grow_from_seed(self, seed_zyx, value: int, low: float, high: float, axis: int | None = None,
                       box_mm: float | None = None) -> Edit | None:
        """Region growing from a click (SimpleITK ConnectedThreshold): the voxels connected
        to the seed ((z, y, x) indices) through face neighbours whose intensity lies within
        [``low``, ``high``] (e.g. HU) join class ``value`` where the policy allows; in 3D,
        or with ``axis`` (0 axial, 1 coronal, 2 sagittal) in the seed's plane only. With
        ``box_mm``, only within that many mm of the seed along each axis: a leak through a
        thin bridge stops there, and the work is the box's (the whole volume: seconds).
        None when the seed's own intensity is outside the range. Raises ValueError without
        an image or for a seed outside it."""
        import SimpleITK as sitk

        image, seed, region = self._seed_image(seed_zyx, axis, box_mm)
        # Within what the image holds: a bound beyond its pixel type wraps round in ITK (a range of
        # +-1e5 on an int16 image grew nothing).
        extremes = sitk.MinimumMaximumImageFilter()
        extremes.Execute(image)
        low, high = max(float(low), extremes.GetMinimum()), min(float(high), extremes.GetMaximum())
        if low > high:
            return None
        grown = sitk.ConnectedThreshold(image, seedList=[seed], lower=low, upper=high, replaceValue=1,
                                        connectivity=sitk.ConnectedThresholdImageFilter.FaceConnectivity)
        return self._add_grown(region, sitk.GetArrayFromImage(grown), value)

    @_named("grow from seed")
    def grow_confidence_connected(self, seed_zyx, value: int, multiplier: float = 2.5, iterations: int = 3,
                                  radius: int = 1, axis: int | None = None, box_mm: float | None = None
                                  ) -> Edit | None:
        """Region growing from a click with a range learnt from the image (SimpleITK
        ConfidenceConnected): start from the box of ``radius`` voxels around the seed, take
        the voxels connected to the seed within mean +- ``multiplier`` x standard deviation
        of the region's intensities, re-estimate from them, ``iterations`` times. They join
        class ``value`` where the policy allows. ``axis`` and ``box_mm`` as in
        ``grow_from_seed`` (a whole-volume flood repeated ``iterations`` + 1 times is slow:
        give a box)."""
        import SimpleITK as sitk

        image, seed, region = self._seed_image(seed_zyx, axis, box_mm)
        grown = sitk.ConfidenceConnected(image, seedList=[seed],
                                         numberOfIterations=int(iterations), multiplier=float(multiplier),
                                         initialNeighborhoodRadius=int(radius), replaceValue=1)
        return self._add_grown(region, sitk.GetArrayFromImage(grown), value)

    # -- class tool helpers ----------------------------------------------------------------
    def _islands(self, value, min_mm3, keep_largest,
                 job) -> tuple[list[tuple[Region, np.ndarray]], list[tuple[Region, np.ndarray]]] | None:
        """(region, mask) of each class's islands that may go, and of those a protected
        class keeps; None when stopped."""
        _check_island_sizes(min_mm3, keep_largest)
        if value is None:
            boxes = {c + 1: box for c, box in enumerate(ndimage.find_objects(self.array)) if box is not None}
        else:
            self._check_class(value)
            box = self._class_box(value, (0, 0, 0))
            boxes = {} if box is None else {value: box}
        voxel_mm3 = float(np.prod(self.spacing))
        job.total = len(boxes)
        found: list[tuple[Region, np.ndarray]] = []
        kept: list[tuple[Region, np.ndarray]] = []
        for c, box in boxes.items():
            if job.stopped():
                return None
            # 6-connected components lie inside the class's box
            components, count = ndimage.label(self.array[box] == c, ndimage.generate_binary_structure(3, 1))
            sizes = np.bincount(components.ravel())[1:]
            gone = np.ones(count, bool) if keep_largest else sizes * voxel_mm3 < min_mm3
            if keep_largest:
                gone[np.argmax(sizes)] = False
            (found if self._may_take(c) else kept).extend(_pieces(box, components, np.flatnonzero(gone) + 1))
            job.advance()
        return None if job.stopped() else (found, kept)

    @contextmanager
    def _one_step(self) -> Iterator[None]:
        """A step of its own, or part of the step in progress."""
        if self._stroke is not None:
            yield
            return
        with self.step():
            yield

    def _ball(self, radius_mm: float) -> _Ball:
        if not radius_mm > 0:
            raise ValueError(f"a kernel or distance must be > 0 mm, not {radius_mm}")
        return _Ball(radius_mm, self.spacing_zyx)

    def _check_class(self, value) -> None:
        if not 1 <= value <= 255:
            raise ValueError(f"a class value is 1 to 255 (0 is background), not {value}")

    def _class_box(self, value: int, margin) -> Region | None:
        """Bounding box of class ``value`` grown by ``margin`` (z, y, x) voxels, clipped to
        the volume; None when the class is absent. Read in slabs: no volume-sized temporary."""
        self._check_class(value)
        shape = self.array.shape
        hits = [np.zeros(n, bool) for n in shape]
        for start in range(0, shape[0], 16):
            slab = self.array[start:start + 16] == value
            along_z = slab.any(axis=(1, 2))
            if along_z.any():
                hits[0][start:start + 16] = along_z
                hits[1] |= slab.any(axis=(0, 2))
                hits[2] |= slab.any(axis=(0, 1))
        if not hits[0].any():
            return None
        box = []
        for hit, grow, n in zip(hits, margin, shape):
            where = np.flatnonzero(hit)
            box.append(slice(max(int(where[0]) - grow, 0), min(int(where[-1]) + 1 + grow, n)))
        return tuple(box)

    def _mirrored(self, box: Region, value: int, reach) -> np.ndarray:
        """Class ``value`` in ``box`` padded by ``reach`` voxels: mirrored where the box meets
        the image's edge (scipy's "reflect"), the labels beyond it elsewhere (the box holds
        the class and its reach, so they are background)."""
        at_edge = [(r if b.start == 0 else 0, r if b.stop == n else 0)
                   for b, r, n in zip(box, reach, self.array.shape)]
        beyond = [(r - before, r - after) for (before, after), r in zip(at_edge, reach)]
        return np.pad(np.pad(self.array[box] == value, at_edge, mode="symmetric"), beyond)

    def _may_take(self, value: int) -> bool:
        """Whether a tool may take voxels away from class ``value`` (not when it is protected)."""
        return not (self.policy.mode == "protect" and value in self.policy.protected)

    def _change_class(self, region: Region, value: int, add: np.ndarray | None = None,
                      take: np.ndarray | None = None) -> Edit | None:
        """In ``region``: voxels of ``take`` that hold ``value`` become background (unless it
        is protected); voxels of ``add`` become ``value`` where the policy allows. One Edit;
        what the policy kept is counted in ``kept``, so the tool can say why it did less."""
        old = self.array[region]
        new = old.copy()
        kept = np.zeros(old.shape, bool)
        if take is not None:
            taking = take & (old == value)
            if self._may_take(value):
                new[taking] = 0
            else:
                kept |= taking
        if add is not None:
            allowed = self.policy.allows(old)
            new[add & allowed] = value
            kept |= add & ~allowed & (old != value)
        edit = self._write_values(region, new, brush=False)  # a step of its own starts with nothing kept
        self.kept.add("policy", self.array.shape, region, kept)
        return edit

    def _seed_image(self, seed_zyx, axis, box_mm):
        """The image (3D, or the seed's plane normal to ``axis``; within ``box_mm`` of the
        seed when given) as a SimpleITK image, the seed in its (x, y[, z]) index order, and
        the label region it covers."""
        import SimpleITK as sitk

        seed = self._checked_seed(seed_zyx, axis)
        region = self.grow_region(seed, axis, box_mm)
        image = self.intensities[region]
        inner = [c - r.start for a, (c, r) in enumerate(zip(seed, region)) if a != axis]
        if axis is not None:
            image = image.squeeze(axis)
        return sitk.GetImageFromArray(np.ascontiguousarray(image)), inner[::-1], tuple(region)

    def grow_region(self, seed_zyx, axis: int | None, box_mm: float | None) -> Region:
        """The voxels a region grown from ``seed_zyx`` may reach: the seed's plane normal to
        ``axis`` (None: the volume), within ``box_mm`` of the seed along each axis when given."""
        if box_mm is not None and not box_mm > 0:
            raise ValueError(f"box_mm must be > 0, not {box_mm}")
        seed = [int(np.rint(c)) for c in seed_zyx]
        region = []
        for a, (c, n, s) in enumerate(zip(seed, self.array.shape, self.spacing_zyx)):
            reach = 0 if a == axis else n if box_mm is None else int(box_mm / s)
            region.append(slice(max(c - reach, 0), min(c + reach + 1, n)))
        return tuple(region)

    def _checked_seed(self, seed_zyx, axis) -> list[int]:
        """The voxel (z, y, x) of a seed to grow from in 3D (``axis`` None) or in its plane
        normal to ``axis``; raises ValueError without an image, or for a seed outside it."""
        if self.intensities is None:
            raise ValueError("growing from a seed needs the image's intensities")
        _check_axis(axis, in_3d=True)
        seed = [int(np.rint(c)) for c in seed_zyx]
        if len(seed) != 3 or not all(0 <= c < n for c, n in zip(seed, self.array.shape)):
            raise ValueError(f"seed {tuple(seed_zyx)} lies outside the image {self.array.shape}")
        return seed

    def _add_grown(self, region: Region, grown: np.ndarray, value: int) -> Edit | None:
        """Write a grown region (the plane's or the volume's shape) into ``region`` as ``value``."""
        self._check_class(value)
        grown = grown.reshape(box_shape(region)).astype(bool)
        if not grown.any():
            return None
        box = mask_box(grown)
        assert box is not None  # grown has a voxel
        region = tuple(slice(r.start + b.start, r.start + b.stop) for r, b in zip(region, box))
        return self._change_class(region, value, add=grown[box])

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
        if self._stroke is None:  # a step of its own
            self.kept = Kept()
        allowed = self._allowed(region, old, mask, brush, values)
        new = np.array(values, np.uint8) if allowed is None else np.where(allowed, values, old).astype(np.uint8)
        changed = np.nonzero(new != old)
        if not len(changed[0]):
            return None
        # Keep only the bounding box of what changed: the smallest diff to store and count.
        box = tuple(slice(r.start + int(c.min()), r.start + int(c.max()) + 1) for r, c in zip(region, changed))
        inner = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(box, region))
        edit = Edit(box, np.ascontiguousarray(old[inner]), np.ascontiguousarray(new[inner]))
        self._record(edit)
        return edit

    def _allowed(self, region: Region, old: np.ndarray, mask: np.ndarray | None, brush: bool,
                 values: np.ndarray) -> np.ndarray | None:
        """Where a write of ``values`` into ``region`` may change the labels (``old`` there):
        ``mask``, and for the hand tools (``brush``) the overwrite policy and the intensity
        range, whose refusals are counted in ``kept``; None for everywhere."""
        if not brush:
            return None if mask is None else mask
        asked = values != old
        if mask is not None:
            asked &= mask
        allowed = asked & self.policy.allows(old)
        self.kept.add("policy", self.array.shape, region, asked & ~allowed)
        if self.intensity_range is not None and self.intensities is not None:
            low, high = self.intensity_range
            image = self.intensities[region]
            in_range = (image >= low) & (image <= high)
            self.kept.add("intensity", self.array.shape, region, allowed & ~in_range)
            allowed &= in_range
        return allowed

    def _record(self, change: Change) -> None:
        if self._stroke is None:  # a step of its own, open while listeners hear the change
            self._stroke = []     # (not begin_stroke: ``kept`` tells of this step)
            self._stroke_what = self._naming or EDIT
            try:
                self._record(change)
            finally:
                self.end_stroke()
            return
        self._apply(change)
        self._stroke.append(Patch.of(change) if isinstance(change, Edit) else change)

    def _apply(self, change: Change) -> None:
        if isinstance(change, Mark):
            self.reviewed[change.z] = change.new
            self.events.marked.emit(change)
            return
        with self.lock:
            self.array[change.region] = change.new
            self.events.changed.emit(change)


def _deepest(claims: Iterable[tuple[np.ndarray, np.ndarray]], shape) -> np.ndarray:
    """Several interpolations' claims on one slice ((class, depth) as ``_run_blends`` gives
    them): the class (``shape`` uint8, 0 for none) each voxel lies deepest inside (the
    lowest signed distance; a tie to the lower class value, so the order never matters)."""
    claims = list(claims)
    if len(claims) == 1:  # most slices: one run over them
        return claims[0][0]
    value, depth = np.zeros(shape, np.uint8), np.full(shape, np.inf)
    for claimed, claimed_depth in claims:
        wins = (claimed != 0) & ((claimed_depth < depth) | ((claimed_depth == depth) & (claimed < value)))
        value[wins], depth[wins] = claimed[wins], claimed_depth[wins]
    return value


def _slabs(chosen: np.ndarray, plane_bytes: int) -> Iterator[tuple[int, int]]:
    """(first, last) of the slabs of whole slices, each at most ``SLAB_BYTES`` (slices of
    ``plane_bytes``; one slice at least), that cover the runs of True in ``chosen`` (1D bool)."""
    step = max(1, SLAB_BYTES // max(plane_bytes, 1))
    edges = np.flatnonzero(np.diff(np.concatenate(([False], chosen, [False])).astype(np.int8)))
    for start, stop in zip(edges[::2].tolist(), edges[1::2].tolist()):
        for first in range(start, stop, step):
            yield first, min(first + step, stop)


def _under_brush(axes_mm, points_mm: np.ndarray, radius_mm: float, spacing) -> np.ndarray:
    """What a brush of ``radius_mm`` dragged along ``points_mm`` paints on the open grids
    ``axes_mm`` (voxel centres in mm, 2D or 3D; ``spacing`` in mm along each): the voxels
    whose centres lie within the radius, and those whose cells the centre line passes
    through. A brush at least half a voxel's diagonal wide already covers the latter."""
    if len(axes_mm) == 2:
        mask = _near_polyline(axes_mm[0], axes_mm[1], points_mm, radius_mm)
    else:
        mask = _near_polyline_3d(axes_mm, points_mm, radius_mm)
    half = 0.5 * np.asarray(spacing, float)
    if radius_mm ** 2 < float(half @ half):
        mask |= _cells_on_polyline(axes_mm, points_mm, half)
    return mask


def _cells_on_polyline(axes_mm, points_mm: np.ndarray, half_mm: np.ndarray) -> np.ndarray:
    """Voxels (centres on the open grids ``axes_mm``, in mm) whose cells (the centre +-
    ``half_mm``, boundary included) the polyline ``points_mm`` (N, dims) touches. A segment
    misses a box only if an axis separates them: one of the box's own axes, or the normal
    of the segment's trace in a plane of two axes."""
    shape = np.broadcast_shapes(*(axis.shape for axis in axes_mm))
    touched = np.zeros(shape, bool)
    ends = itertools.pairwise(points_mm) if len(points_mm) > 1 else [(points_mm[0], points_mm[0])]
    for a, b in ends:
        d = b - a
        hit = np.ones(shape, bool)
        for k, centre in enumerate(axes_mm):
            hit &= (centre - half_mm[k] <= max(a[k], b[k])) & (centre + half_mm[k] >= min(a[k], b[k]))
        for j, k in itertools.combinations(range(len(axes_mm)), 2):
            across = d[k] * (axes_mm[j] - a[j]) - d[j] * (axes_mm[k] - a[k])
            hit &= np.abs(across) <= half_mm[j] * abs(d[k]) + half_mm[k] * abs(d[j])
        touched |= hit
    return touched


def _near_polyline(yy: np.ndarray, xx: np.ndarray, points_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Pixels (centres at yy, xx, in mm; open grids broadcast) within ``radius_mm`` of the
    polyline."""
    inside = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), bool)
    segments = itertools.pairwise(points_mm) if len(points_mm) > 1 else [(points_mm[0], points_mm[0])]
    for (ay, ax), (by, bx) in segments:
        dy, dx = by - ay, bx - ax
        length2 = dy * dy + dx * dx
        t = 0.0 if length2 == 0 else np.clip(((yy - ay) * dy + (xx - ax) * dx) / length2, 0, 1)
        inside |= (yy - ay - t * dy) ** 2 + (xx - ax - t * dx) ** 2 <= radius_mm ** 2
    return inside


def traced_level(plane: np.ndarray, seed, tolerance: float) -> np.ndarray | None:
    """Level tracing's region (3D Slicer's effect, ITK-SNAP's adaptive brush): the pixels of
    ``plane`` (2D image) 4-connected to ``seed`` (row, col; rounded) whose values lie within
    ``tolerance`` of the seed's, as a bool mask of the plane's shape; None off the plane."""
    row, col = (int(np.rint(c)) for c in seed)
    if not (0 <= row < plane.shape[0] and 0 <= col < plane.shape[1]):
        return None
    near = np.abs(plane.astype(np.float64) - float(plane[row, col])) <= tolerance
    components, _ = ndimage.label(near)
    return components == components[row, col]


def _in_polygon(yy: np.ndarray, xx: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Pixels (centres at yy, xx; open grids broadcast) inside the closed polygon by the
    even-odd rule, or on its edge: the crossing rule alone decides an edge point by which
    side it is on, so a vertex clicked on a voxel centre would keep or lose it by chance."""
    closed = np.vstack([vertices, vertices[:1]])
    inside = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), bool)
    for (ay, ax), (by, bx) in itertools.pairwise(closed):
        spans = (ay > yy) != (by > yy)  # the edge crosses this row (never when horizontal)
        x_at = ax + (yy - ay) * (bx - ax) / (by - ay if by != ay else 1.0)
        inside ^= spans & (xx < x_at)
    return inside | _near_polyline(yy, xx, closed, 1e-6)


def _signed_distance(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance in mm to the mask's boundary: negative inside, positive outside."""
    if not mask.any():  # absent: "far outside", so the other slice's shape shrinks away
        return np.full(mask.shape, float(np.hypot(*np.multiply(mask.shape, spacing))))
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    inside = ndimage.distance_transform_edt(mask, sampling=spacing)
    return np.where(mask, -inside + 0.5 * min(spacing), outside - 0.5 * min(spacing))


def _outline_and_holes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2D mask filled in, and the holes it encloses (4-connected background cut off from
    the edge, as a ring's cavity)."""
    outline = ndimage.binary_fill_holes(mask)
    return outline, outline & ~mask


def _centre(mask: np.ndarray) -> np.ndarray:
    """The pixel at ``mask``'s centroid (nothing for an empty mask)."""
    centre = np.zeros_like(mask)
    if mask.any():
        y, x = np.rint(ndimage.center_of_mass(mask)).astype(int)
        centre[min(max(y, 0), mask.shape[0] - 1), min(max(x, 0), mask.shape[1] - 1)] = True
    return centre


def _one_object(a: np.ndarray, b: np.ndarray, spacing) -> bool:
    """Whether masks ``a`` and ``b`` (y, x) on two slices may be one object that moved: their
    centroids lie no further apart (mm) than twice their reaches together (a reach: the
    farthest pixel from the centroid). Two lesions 120 mm apart are two lesions, each
    ending on its own side: a tester's lung fill had moved one into the other across the
    mediastinum."""
    if not (a.any() and b.any()):
        return False
    centres = [np.multiply(ndimage.center_of_mass(m), spacing) for m in (a, b)]
    reach = sum(np.hypot(*(np.argwhere(m) * spacing - c).T).max() for m, c in zip((a, b), centres))
    return bool(np.hypot(*(centres[1] - centres[0])) <= 2 * reach)


def _one_piece(mask: np.ndarray) -> bool:
    """A 2D mask that is one 8-connected region (holes allowed: a ring is one piece)."""
    return ndimage.label(mask, structure=np.ones((3, 3), bool))[1] == 1


def _moved(plane: np.ndarray, move, fill=False) -> np.ndarray:
    """``plane`` (y, x) moved by ``move`` (dy, dx) whole pixels; ``fill`` where it came from
    beyond the edge."""
    out = np.full_like(plane, fill)
    target, source = [], []
    for d, n in zip(move, plane.shape):
        d = int(d)
        target.append(slice(max(d, 0), max(n + min(d, 0), 0)))
        source.append(slice(max(-d, 0), max(n - max(d, 0), 0)))
    out[tuple(target)] = plane[tuple(source)]
    return out


class _Job:
    """Progress and cooperative stop of a long tool: ``progress(done, total)`` after each
    stage, ``should_stop()`` asked before the next one and before writing."""

    def __init__(self, progress=None, should_stop=None, total: int = 1):
        self.progress, self.should_stop, self.total, self.done = progress, should_stop, total, 0
        self._stopped = False

    def stopped(self) -> bool:
        if not self._stopped and self.should_stop is not None and self.should_stop():
            self._stopped = True
        return self._stopped

    def advance(self) -> bool:
        """A stage is done: report it; False when the tool should stop."""
        self.done = min(self.done + 1, self.total)
        if self.progress is not None:
            self.progress(self.done, self.total)
        return not self.stopped()

    def finish(self, result):
        """The tool has written ``result``: report the last stage and hand it back."""
        self.done = self.total
        if self.progress is not None:
            self.progress(self.total, self.total)
        return result


class _Ball:
    """A ball of ``radius_mm`` on voxels of ``spacing`` (z, y, x) mm: the offsets whose
    centres lie within the radius (an ellipsoid in voxels; a centre exactly at the radius
    is in), as rows along x ``(dz, dy, half-width)``. Morphology by rows costs one pass
    per row over bits packed along x, where scipy's costs one per offset over bytes; the
    result is the same voxels."""

    def __init__(self, radius_mm: float, spacing):
        self.spacing = tuple(float(s) for s in spacing)
        # A centre exactly on the sphere (a lattice point at the radius) is inside,
        # whatever the rounding of the squares.
        self.limit = radius_mm ** 2 * (1 + 1e-9)
        sz, sy, sx = self.spacing
        reach = math.sqrt(self.limit)
        rz, ry = int(reach / sz), int(reach / sy)
        self.rows = [(dz, dy, int(math.sqrt(rest) / sx))
                     for dz in range(-rz, rz + 1) for dy in range(-ry, ry + 1)
                     if (rest := self.limit - (dz * sz) ** 2 - (dy * sy) ** 2) >= 0]
        self.reach = (rz, ry, int(reach / sx))
        self.size = sum(2 * w + 1 for _, _, w in self.rows)

    def footprint(self) -> np.ndarray:
        """(2 rz + 1, 2 ry + 1, 2 rx + 1) bool: the ball as a structuring element."""
        rz, ry, rx = self.reach
        ball = np.zeros((2 * rz + 1, 2 * ry + 1, 2 * rx + 1), bool)
        for dz, dy, w in self.rows:
            ball[dz + rz, dy + ry, rx - w:rx + w + 1] = True
        return ball

    def dilate(self, mask: np.ndarray) -> np.ndarray:
        """Voxels within the radius of a voxel of ``mask`` (outside the array: not in it)."""
        if not mask.any():
            return np.zeros_like(mask)
        if len(self.rows) > 4000:  # a very big ball: one distance transform costs less
            distance = ndimage.distance_transform_edt(~mask, sampling=self.spacing)
            return distance ** 2 <= self.limit
        # Runs along x first; then every row is an OR of whole (y, x) planes shifted in z
        # and y, done on bits packed along x: eight voxels a byte. The ball's sections at
        # +dz and -dz are the same disc: each slice is dilated by the disc of each |dz|
        # once, then shifted both ways (when that memory is affordable).
        packed_size = mask.shape[0] * mask.shape[1] * -(-mask.shape[2] // 8)
        mirrored = (self.reach[0] + 1) * packed_size <= 2 ** 28
        sections: dict[int, np.ndarray] = {}
        out = None
        for w, run in self._runs(mask, np.logical_or):
            bits = np.packbits(run, axis=2)
            out = np.zeros_like(bits) if out is None else out
            for dz, dy, width in self.rows:
                if width != w or (mirrored and dz < 0):
                    continue
                section = sections.setdefault(dz, np.zeros_like(bits)) if mirrored else out
                target, source = _shifted(mask.shape, 0 if mirrored else dz, dy)
                np.bitwise_or(section[target], bits[source], out=section[target])
        assert out is not None  # the ball's row at dz = dy = 0 gave a run
        for dz, section in sections.items():
            for move in {dz, -dz}:
                target, source = _shifted(mask.shape, move, 0)
                np.bitwise_or(out[target], section[source], out=out[target])
        return np.unpackbits(out, axis=2, count=mask.shape[2]).view(bool)

    def erode(self, mask: np.ndarray) -> np.ndarray:
        """Voxels whose whole ball lies in ``mask`` (outside the array counts as in it)."""
        return ~self.dilate(~mask)

    def majority(self, padded: np.ndarray) -> np.ndarray:
        """Binary median: whether more than half the ball around each voxel lies in
        ``padded``, a mask padded by ``reach`` on every side; (its shape less the padding)."""
        dtype = np.uint8 if self.size < 2 ** 8 else np.int32  # counts up to the ball's size
        count = np.zeros(padded.shape, dtype)
        # Runs of a few voxels: added shifted copies; longer ones: from a cumulative sum.
        small = self.reach[2] <= 8
        for w, run in self._runs(padded.astype(dtype) if small else padded, np.add if small else None, dtype):
            for dz, dy, width in self.rows:
                if width == w:
                    target, source = _shifted(padded.shape, dz, dy)
                    count[target] += run[source]
        inner = tuple(slice(r, n - r) for r, n in zip(self.reach, padded.shape))
        return count[inner] > self.size // 2  # the size is odd: more than half

    def _runs(self, mask: np.ndarray, combine, dtype=None) -> Iterator[tuple[int, np.ndarray]]:
        """(w, ``mask`` combined over x - w .. x + w) for each half-width of the rows, in
        increasing order, one array at a time: ``combine`` (np.logical_or, np.add); without, sums
        (of ``dtype``) where the run fits in the array (the padding), 0 elsewhere."""
        widths = sorted({w for _, _, w in self.rows})
        if combine is None:  # sums of runs from the cumulative sum along x
            n = mask.shape[2]
            cumulative = np.zeros(mask.shape[:2] + (n + 1,), np.int16 if n < 2 ** 15 else np.int32)
            np.cumsum(mask, axis=2, dtype=cumulative.dtype, out=cumulative[..., 1:])
            for w in widths:
                run = np.zeros(mask.shape, dtype)
                if n > 2 * w:
                    np.subtract(cumulative[..., 2 * w + 1:], cumulative[..., :n - 2 * w], out=run[..., w:n - w],
                                casting="unsafe")
                yield w, run
            return
        run, done = mask.copy(), 0
        for w in widths:
            for step in range(done + 1, min(w, mask.shape[2] - 1) + 1):
                combine(run[..., step:], mask[..., :-step], out=run[..., step:])
                combine(run[..., :-step], mask[..., step:], out=run[..., :-step])
            done = w
            yield w, run


def _pieces(box: Region, components: np.ndarray, chosen: np.ndarray) -> list[tuple[Region, np.ndarray]]:
    """(region, mask) of each ``chosen`` component of ``components`` (labelled in ``box``)
    in its own box; one (box, mask) of them all when there are over 256."""
    if not len(chosen):
        return []
    if len(chosen) > 256:
        lookup = np.zeros(int(components.max()) + 1, bool)
        lookup[chosen] = True
        return [(box, lookup[components])]
    boxes = ndimage.find_objects(components)
    return [(tuple(slice(b.start + p.start, b.start + p.stop) for b, p in zip(box, boxes[n - 1])),
             components[boxes[n - 1]] == n) for n in chosen]


def _shifted(shape, dz: int, dy: int) -> tuple[Region, Region]:
    """Slices such that ``out[target]`` lines up with ``a[source]`` moved by (dz, dy):
    out[z, y] against a[z - dz, y - dy]; empty when the move leaves the array."""
    target, source = [], []
    for move, n in ((dz, shape[0]), (dy, shape[1])):
        target.append(slice(max(move, 0), max(n + min(move, 0), 0)))
        source.append(slice(max(-move, 0), max(n - max(move, 0), 0)))
    return (target[0], target[1], slice(None)), (source[0], source[1], slice(None))


# -- boxes (also the 3D view's, core.surfaces) ----------------------------------------------

def mask_box(mask: np.ndarray, region: Region | None = None) -> Region | None:
    """Bounding box of the (z, y, x) bool ``mask``'s voxels, offset by ``region``'s start
    (``mask`` is that region's); None when it has none."""
    hits = axis_hits(mask)
    if hits is None:
        return None
    starts = (0, 0, 0) if region is None else (part.start for part in region)
    return tuple(hit_span(hit, start) for hit, start in zip(hits, starts))


def axis_hits(mask: np.ndarray) -> list[np.ndarray] | None:
    """Whether each z, y and x plane of the (z, y, x) ``mask`` holds a voxel; None when none
    does. (Reduced over z first: numpy's fast contiguous path, not an any() over two axes.)"""
    plane = np.logical_or.reduce(mask, axis=0)
    if not plane.any():
        return None
    return [mask.reshape(len(mask), -1).any(axis=1), plane.any(axis=1), plane.any(axis=0)]


def hit_span(hit: np.ndarray, offset: int) -> slice:
    """The slice from the first to the last true of ``hit`` (one axis), moved by ``offset``."""
    where = np.flatnonzero(hit)
    return slice(offset + int(where[0]), offset + int(where[-1]) + 1)


def union_box(a: Region | None, b: Region | None) -> Region | None:
    """The smallest box holding boxes ``a`` and ``b``; the other one when one is None."""
    if a is None or b is None:
        return a or b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def box_shape(box: Region) -> tuple[int, ...]:
    return tuple(s.stop - s.start for s in box)


def _near_polyline_3d(axes_mm, points_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Voxels (centres on the open grids ``axes_mm`` (z, y, x), in mm) within ``radius_mm``
    of the 3D polyline ``points_mm`` (N, 3)."""
    zz, yy, xx = axes_mm
    inside = np.zeros(np.broadcast_shapes(zz.shape, yy.shape, xx.shape), bool)
    ends = itertools.pairwise(points_mm) if len(points_mm) > 1 else [(points_mm[0], points_mm[0])]
    for a, b in ends:
        d = b - a
        length2 = float(d @ d)
        rz, ry, rx = zz - a[0], yy - a[1], xx - a[2]
        t = 0.0 if length2 == 0 else np.clip((rz * d[0] + ry * d[1] + rx * d[2]) / length2, 0, 1)
        inside |= (rz - t * d[0]) ** 2 + (ry - t * d[1]) ** 2 + (rx - t * d[2]) ** 2 <= radius_mm ** 2
    return inside


#: The class tools a job may run (``LabelMap.check_tool``, ``session.ToolJob``).
CLASS_TOOLS = ("remove_islands", "smooth", "margin", "fill_holes", "logical_operation", "grow_from_seed",
               "grow_confidence_connected")


# Each check is written once: the tools call the same helpers as ``check_tool``'s table.

def _check_island_sizes(min_mm3, keep_largest) -> None:
    if (min_mm3 is None) == (not keep_largest):
        raise ValueError("give either min_mm3 or keep_largest=True")
    if min_mm3 is not None and min_mm3 < 0:
        raise ValueError(f"min_mm3 must be >= 0, not {min_mm3}")


def _check_axis(axis, in_3d: bool = False) -> None:
    """``axis``: the array axis normal to a plane (0, 1 or 2), or with ``in_3d`` None for 3D."""
    if axis not in ((None, 0, 1, 2) if in_3d else (0, 1, 2)):
        raise ValueError(f"axis must be {'None, ' if in_3d else ''}0, 1 or 2, not {axis}")


def _check_islands(labels: LabelMap, given: dict) -> None:
    _check_island_sizes(given.get("min_mm3"), given.get("keep_largest", False))


def _check_smooth(labels: LabelMap, given: dict) -> None:
    if given["method"] not in ("median", "opening", "closing"):
        raise ValueError(f"smoothing method must be median, opening or closing, not {given['method']!r}")
    if not given["kernel_mm"] > 0:
        raise ValueError(f"a kernel must be > 0 mm, not {given['kernel_mm']}")


def _check_margin(labels: LabelMap, given: dict) -> None:
    if given["distance_mm"] == 0:
        raise ValueError("a margin of 0 mm changes nothing: grow (> 0) or shrink (< 0)")


def _check_holes(labels: LabelMap, given: dict) -> None:
    _check_axis(given.get("axis", 0))


def _check_logical(labels: LabelMap, given: dict) -> None:
    if given["operation"] not in ("add", "copy", "subtract", "intersect"):
        raise ValueError(f"operation must be add, copy, subtract or intersect, not {given['operation']!r}")
    operand = given["operand"]
    if isinstance(operand, (int, np.integer)):
        labels._check_class(operand)
    elif np.shape(operand) != labels.array.shape:
        raise ValueError(f"operand {np.shape(operand)} and labels {labels.array.shape} differ in shape")


def _check_growing(labels: LabelMap, given: dict) -> None:
    labels._checked_seed(given["seed_zyx"], given.get("axis"))
    if "low" in given and given["low"] > given["high"]:
        raise ValueError(f"the intensity range is empty: low {given['low']} > high {given['high']}")


_TOOL_CHECKS: dict[str, Callable[[LabelMap, dict], None]] = {
    "remove_islands": _check_islands, "smooth": _check_smooth, "margin": _check_margin,
    "fill_holes": _check_holes, "logical_operation": _check_logical, "grow_from_seed": _check_growing,
    "grow_confidence_connected": _check_growing}
