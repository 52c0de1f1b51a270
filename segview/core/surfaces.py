"""Surfaces of label classes for the 3D view: marching cubes (scikit-image) on each class's
bounding box, vertices and normals in patient millimetres (LPS), and which classes an edit
changed, so that only their surfaces are built again.

Speed: the box is found in one pass over the volume for all classes (later from the edits:
a class lies within its old box and what was edited); a class whose box holds more than
``MAX_CELLS`` voxels is first averaged in blocks (antialiased, unlike a step size; a voxel
the averaged surface leaves over a block away, a stroke one voxel thick, is kept); marching
cubes runs in slabs of about ``SLAB_CELLS`` cells, because scikit-image holds the GIL for a
whole call: between slabs the window's thread runs and a cancelled build stops.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .labels import Edit, Region, axis_hits, box_shape, hit_span, mask_box, union_box
from .volume import Volume

#: Voxels of a class's box beyond which it is averaged in blocks first: about 0.1 s of
#: building and some hundred thousand triangles, which software OpenGL still turns smoothly.
MAX_CELLS = 2_000_000
#: Cells of one marching-cubes call (about 15 ms with the GIL held).
SLAB_CELLS = 1_000_000
#: Slices of the labels read at once when looking for the classes' boxes.
BOX_SLAB = 16
#: Background voxels around a class's (blocked) box: the smoothing spreads it by one.
PAD = 2
#: What the smoothing multiplies the values by ((1, 2, 1) along each of three axes).
SMOOTHED = 4 ** 3


@dataclass(frozen=True)
class Surface:
    """The surface of class ``value``: ``vertices`` (N, 3) float32 LPS mm, ``faces`` (M, 3)
    uint32 (counter-clockwise seen from outside), ``normals`` (N, 3) float32 unit vectors
    pointing out; ``box`` the class's bounding box (numpy z, y, x slices), None and no
    faces when the class has no voxel."""

    value: int
    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    box: Region | None

    @classmethod
    def empty(cls, value: int) -> "Surface":
        nothing = np.zeros((0, 3), np.float32)
        return cls(value, nothing, np.zeros((0, 3), np.uint32), nothing, None)

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0


# -- where the classes are --------------------------------------------------------------

def class_boxes(labels: np.ndarray) -> dict[int, Region]:
    """Bounding box (numpy z, y, x slices) of each nonzero value of the non-negative integer
    array ``labels`` (z, y, x), in one pass, slab by slab, each slab cropped to its
    foreground before its classes are looked for."""
    hits: dict[int, list[np.ndarray]] = {}
    for z in range(0, labels.shape[0], BOX_SLAB):
        slab = labels[z:z + BOX_SLAB]
        foreground = axis_hits(slab != 0)
        if foreground is None:
            continue
        rows, cols = (hit_span(hit, 0) for hit in foreground[1:])
        crop = slab[:, rows, cols]
        for value in np.flatnonzero(np.bincount(crop[crop != 0])):
            along = hits.setdefault(int(value), [np.zeros(n, bool) for n in labels.shape])
            found = axis_hits(crop == value) or []  # never empty: the value is in the crop
            for axis, (hit, offset) in enumerate(zip(found, (z, rows.start, cols.start))):
                along[axis][offset:offset + len(hit)] |= hit
    return {value: tuple(hit_span(hit, 0) for hit in along) for value, along in hits.items()}


def class_box(labels: np.ndarray, value: int, within: Region) -> Region | None:
    """Bounding box of class ``value`` inside ``within``; None when it has no voxel there."""
    return mask_box(labels[within] == value, within)


def changed_classes(edit: Edit) -> set[int]:
    """The nonzero classes whose voxels ``edit`` changed (gained or lost)."""
    _, old, new = edit.changes()
    return {int(v) for v in np.union1d(old, new) if v != 0}


class StaleClasses:
    """Which classes of one label volume need their surface built again, and where each
    may lie now: its last known box joined with the regions edited since. Everything is
    stale at first (the first build finds the boxes in one pass)."""

    def __init__(self) -> None:
        self.boxes: dict[int, Region] = {}   # each class's box when its surface was built
        self.everything = True
        self._edited: dict[int, Region] = {}  # class -> the region edits changed it in

    def edited(self, edit: Edit) -> set[int]:
        """Note ``edit``; returns the classes it made stale."""
        changed = changed_classes(edit)
        for value in changed:
            self._edited[value] = union_box(self._edited.get(value), tuple(edit.region))  # type: ignore[assignment]
        return changed

    def invalidate(self) -> None:
        """The whole array changed (a prediction replaced): build every class again."""
        self.everything = True
        self._edited.clear()

    @property
    def stale(self) -> bool:
        return self.everything or bool(self._edited)

    def take(self) -> dict[int, Region] | None:
        """The classes to build and where to look for each (None: every class, everywhere);
        they are no longer stale."""
        if self.everything:
            self.everything = False
            self._edited.clear()
            return None
        wanted = {value: union_box(self.boxes.get(value), region) for value, region in self._edited.items()}
        self._edited.clear()
        return wanted  # type: ignore[return-value]

    def built(self, surface: Surface) -> None:
        if surface.box is None:
            self.boxes.pop(surface.value, None)
        else:
            self.boxes[surface.value] = surface.box


# -- building ---------------------------------------------------------------------------

def build_surfaces(labels: np.ndarray, geometry: Volume, wanted: dict[int, Region] | None,
                   should_stop: Callable[[], bool] = lambda: False) -> Iterator[Surface]:
    """The surface of each class of ``wanted`` (class -> where to look; None: every class
    of ``labels``, found in one pass), one at a time (a worker runs this generator)."""
    if wanted is None:
        boxes: dict[int, Region | None] = dict(class_boxes(labels))
    else:
        boxes = {value: class_box(labels, value, region) for value, region in wanted.items()}
    for value, box in sorted(boxes.items()):
        if should_stop():
            return
        surface = class_surface(labels, value, box, geometry, should_stop)
        if surface is not None:
            yield surface


def class_surface(labels: np.ndarray, value: int, box: Region | None, geometry: Volume,
                  should_stop: Callable[[], bool] = lambda: False) -> Surface | None:
    """The surface of class ``value`` of ``labels`` (z, y, x) found in ``box``, in the
    patient coordinates of ``geometry`` (the grid ``labels`` lies on); None when stopped."""
    if box is None:
        return Surface.empty(value)
    steps = block_steps(box_shape(box), geometry.spacing[::-1])
    # Background around the (blocked) mask, so the surface closes at the box's edge, smoothed
    # once so that it is not a staircase of voxel faces (and its area is the object's).
    grid = np.pad(_block_sum(labels[box] == value, steps), PAD)
    level = 0.5 * math.prod(steps)
    field = _smoothed(grid)
    _raise_labelled(field, grid, level, SMOOTHED * level)
    pieces = list(_marching_cubes_in_slabs(field, SMOOTHED * level, should_stop))
    if should_stop():
        return None
    if not pieces:
        return Surface.empty(value)
    vertices, faces, normals = _joined(pieces)
    # Grid point v is the centre of block v - PAD: index = box start + step * (v - PAD) + (step - 1) / 2.
    start, size = np.array([s.start for s in box], float), np.array(steps, float)
    index = start + size * (vertices - PAD) + (size - 1) / 2
    if np.linalg.det(geometry.direction_matrix) < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])  # a mirroring grid: faces stay counter-clockwise from outside
    return Surface(value, geometry.index_to_physical(index).astype(np.float32), faces,
                   _physical_normals(normals, steps, geometry), box)


def _raise_labelled(field: np.ndarray, grid: np.ndarray, level: float, threshold: float) -> None:
    """Make every labelled voxel show: smoothing alone loses what is thinner than two
    voxels (a lone voxel, a stroke on one slice), and averaging in blocks what fills at
    most half of its blocks (a one-voxel line or sheet, even one drawn onto a large object
    of the class: a correction the person painted). Points more than half set (``grid`` >
    ``level``) are raised just over the ``threshold``, so they stay inside the surface.
    Points with any voxel set that lie over a grid step from every point the smoothed field
    puts inside are raised to 1.5 times it, where the surface passes about half a point
    out from them, as a voxel's faces do (raised just over, a lone voxel was a speck 0.06 mm
    wide). The rest lie within a step of the surface already: a large object's rim keeps
    its smoothed half-level surface, not grown."""
    far = (grid > 0) & ~_grown(field > threshold)
    np.maximum(field, (grid > level) * field.dtype.type(threshold + 1), out=field)
    np.maximum(field, far * field.dtype.type(1.5 * threshold), out=field)


def _grown(mask: np.ndarray) -> np.ndarray:
    """``mask`` grown by one point along each axis and diagonal (a 3 x 3 x 3 cube), one axis
    at a time."""
    for axis in range(3):
        before = tuple(slice(None, -1) if a == axis else slice(None) for a in range(3))
        after = tuple(slice(1, None) if a == axis else slice(None) for a in range(3))
        grown = mask.copy()
        grown[after] |= mask[before]
        grown[before] |= mask[after]
        mask = grown
    return mask


def _smoothed(grid: np.ndarray) -> np.ndarray:
    """``grid`` filtered by the binomial kernel (1, 2, 1) along each axis (a Gaussian of 0.7
    voxel), unnormalised: 64 times the values, in integers (a quarter of float32's memory
    traffic); the edges see zeros beyond."""
    result = grid.astype(np.uint8 if grid.dtype == bool else np.uint32)  # 64 or 64 x the block's voxels
    for axis in range(3):
        def part(piece: slice) -> tuple[slice, ...]:
            return tuple(piece if a == axis else slice(None) for a in range(3))

        blurred = result * 2
        blurred[part(slice(1, None))] += result[part(slice(None, -1))]
        blurred[part(slice(None, -1))] += result[part(slice(1, None))]
        result = blurred
    return result


def block_steps(shape: Iterable[int], spacing_zyx: Iterable[float]) -> tuple[int, int, int]:
    """Block size (z, y, x) that brings a grid of ``shape`` under ``MAX_CELLS`` cells, the
    finer axes averaged more so the blocks are about as long as they are wide; (1, 1, 1)
    when it is small enough already."""
    shape, spacing = tuple(shape), tuple(spacing_zyx)
    finest = min(spacing)
    factor = 1
    while True:
        steps = tuple(max(1, round(factor * finest / s)) for s in spacing)
        if math.prod(math.ceil(n / k) for n, k in zip(shape, steps)) <= MAX_CELLS:
            return steps  # type: ignore[return-value]
        factor += 1


def _block_sum(mask: np.ndarray, steps: tuple[int, int, int]) -> np.ndarray:
    """How many voxels of each block of ``steps`` voxels are set (the mask itself for 1, 1, 1)."""
    if steps == (1, 1, 1):
        return mask
    padded = np.pad(mask, [(0, -n % k) for n, k in zip(mask.shape, steps)])
    (nz, ny, nx), (kz, ky, kx) = padded.shape, steps
    blocks = padded.reshape(nz // kz, kz, ny // ky, ky, nx // kx, kx)
    return blocks.sum(axis=(1, 3, 5), dtype=np.uint16)


def _marching_cubes_in_slabs(grid: np.ndarray, level: float, should_stop) -> Iterator[tuple]:
    """(vertices, faces, normals) of each slab of ``grid`` along z that the surface crosses;
    neighbouring slabs share a plane of grid points, so the pieces meet."""
    from skimage.measure import marching_cubes

    depth = max(1, SLAB_CELLS // max(grid.shape[1] * grid.shape[2], 1))
    for z in range(0, grid.shape[0] - 1, depth):
        if should_stop():
            return
        slab = grid[z:z + depth + 1]
        if slab.shape[0] < 2 or not slab.min() < level < slab.max():
            continue
        vertices, faces, normals, _ = marching_cubes(slab.astype(np.float32), level)
        vertices[:, 0] += z
        yield vertices, faces, normals


def _joined(pieces: list[tuple]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.cumsum([0] + [len(p[0]) for p in pieces[:-1]])
    vertices = np.concatenate([p[0] for p in pieces])
    faces = np.concatenate([p[1] + offset for p, offset in zip(pieces, offsets)]).astype(np.uint32)
    normals = np.concatenate([p[2] for p in pieces])
    return vertices, faces, normals


def _physical_normals(normals: np.ndarray, steps, geometry: Volume) -> np.ndarray:
    """Normals of the block grid (z, y, x) as unit LPS vectors pointing out of the class.
    A normal is a gradient: it maps by the inverse transpose of grid -> LPS."""
    to_lps = geometry.direction_matrix * geometry.spacing * np.array(steps[::-1], float)  # columns i, j, k
    # scikit-image's normals follow the descending values: out of the class (>= level inside).
    lps = normals[:, ::-1] @ np.linalg.inv(to_lps)
    lengths = np.linalg.norm(lps, axis=1, keepdims=True)
    return (lps / np.maximum(lengths, 1e-12)).astype(np.float32)
