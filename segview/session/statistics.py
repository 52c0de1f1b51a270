"""Region statistics of the image under a class of the labels or of a model's prediction,
over one slice or the volume, or inside an ellipse or rectangle drawn on a slice
(``core.measures.region_statistics``), for the window's table, its ROI tool and for
scripts. No Qt.

A model's region counts only the slices it has predicted (the others are pending, not
empty); a slice it has not predicted is an empty region. Classes are taken one at a time
and each mask is built a block of slices at a time, so a whole-volume table of a large CT
holds no temporary the size of the volume as int64 and can be stopped between classes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..core.measures import RegionStatistics, region_statistics
from ..core.report import counted, number_text
from .errors import SessionError

#: Slices per block of a volume's statistics.
BLOCK = 32


@dataclass(frozen=True)
class RegionRow:
    source: str     # "labels", "A" or "B"
    value: int      # the class
    statistics: RegionStatistics


def class_statistics(session, source: str, value: int, z: int | None = None) -> RegionStatistics:
    """The image under class ``value`` of ``source`` ("labels", or a model's slot "A" / "B"),
    on slice ``z`` or (None) the volume. Raises SessionError for a slot with no model."""
    labels, predicted = _source(session, source)
    image = session.volume.array
    spacing = session.volume.spacing
    if z is not None:
        mask = (labels[z] == value) if predicted[z] else np.zeros(labels.shape[1:], bool)
        return region_statistics(image[z], mask, spacing)
    values = [image[first:first + BLOCK][(labels[first:first + BLOCK] == value)
                                         & predicted[first:first + BLOCK, None, None]]
              for first in range(0, len(labels), BLOCK)]
    flat = np.concatenate(values) if values else np.zeros(0, image.dtype)
    return region_statistics(flat, np.ones(flat.shape, bool), spacing)


#: The shapes of ``shape_statistics``: an ellipse inscribed in the box of two corners, or the box.
SHAPES = ("ellipse", "rectangle")


def shape_mask(plane_shape: tuple[int, int], a, b, shape: str = "ellipse") -> np.ndarray:
    """(h, w) bool: the pixels of a plane whose centres lie inside the box with opposite
    corners ``a`` and ``b`` (continuous (row, column) voxel coordinates of the plane, array
    order), or inside the ellipse inscribed in it. Raises ValueError for another shape."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, not {shape!r}")
    (r0, c0), (r1, c1) = a, b
    low, high = np.minimum((r0, c0), (r1, c1)), np.maximum((r0, c0), (r1, c1))
    rows = np.arange(plane_shape[0], dtype=float)[:, None]
    cols = np.arange(plane_shape[1], dtype=float)[None, :]
    if shape == "rectangle":
        return (rows >= low[0]) & (rows <= high[0]) & (cols >= low[1]) & (cols <= high[1])
    centre, half = (low + high) / 2, np.maximum((high - low) / 2, 1e-9)
    return ((rows - centre[0]) / half[0]) ** 2 + ((cols - centre[1]) / half[1]) ** 2 <= 1.0


def shape_statistics(session, axis: int, index: int, a, b, shape: str = "ellipse") -> RegionStatistics:
    """The image inside an ellipse or rectangle (``shape_mask``) on plane ``index`` normal to
    array ``axis`` (0: an axial slice), corners ``a`` and ``b`` in the plane's voxel
    coordinates. Raises SessionError for a plane off the image."""
    image = session.volume.array
    if not (0 <= axis < 3 and 0 <= index < image.shape[axis]):
        raise SessionError("That plane is not on the image.")
    plane = np.take(image, index, axis=axis)
    # Only the box's pixels can be inside: the mask of the box, not of the plane (a mouse move).
    low = np.clip(np.ceil(np.minimum(a, b)), 0, None).astype(int)
    high = np.minimum(np.floor(np.maximum(a, b)).astype(int) + 1, plane.shape)
    box = plane[low[0]:max(high[0], low[0]), low[1]:max(high[1], low[1])]
    inside = shape_mask(box.shape, np.subtract(a, low), np.subtract(b, low), shape)
    return region_statistics(box, inside, session.volume.spacing)


def statistics_text(statistics: RegionStatistics, unit: str = "") -> str:
    """One line for a person: volume, voxels and the image's values (``unit``: e.g. " HU");
    says so for an empty region."""
    if not statistics.voxels:
        return "no voxel centre inside"
    mean, sd, median, low, high = (number_text(getattr(statistics, name), 1) for name in
                                   ("mean", "std", "median", "min", "max"))
    volume = number_text(statistics.volume_ml, 2, small=True)
    return (f"{volume} mL ({counted(statistics.voxels, 'voxel')}), mean {mean} \u00b1 {sd}{unit}, "
            f"median {median}, {low} to {high}{unit}")


def statistics_rows(session, z: int | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> Iterator[RegionRow]:
    """Every foreground class of the labels, then of each model loaded: one ``RegionRow``
    at a time (a generator, for a worker), stopping between rows when ``should_stop()``."""
    values = [c.value for c in session.classes if c.value]
    for source in ("labels", *sorted(session.models)):
        for value in values:
            if should_stop():
                return
            yield RegionRow(source, value, class_statistics(session, source, value, z))


def _source(session, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels (z, y, x), (Z,) bool slices that count) of ``source``."""
    if source == "labels":
        labels = session.labels.array
        return labels, np.ones(len(labels), bool)
    if source not in session.models:
        raise SessionError(f"No model is loaded as {source}.")
    model = session.models[source]
    return model.prediction, model.predicted
