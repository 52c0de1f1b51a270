"""``segview bench tools``: the class tools on an organ-sized class of a 300 x 512 x 512 volume.

The issue's goal: islands, smoothing and margin in at most 1 s each on such a class. Each
tool is timed as the window runs it (a ``LabelMap`` method: one undo step, the live metrics
of one model following), and beside it a naive baseline: scipy.ndimage on the whole
volume, without the crop to the class's box (and, for smoothing and margin, scipy's own
morphology and distance transform). Both must give the same labels.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from ..core.labels import LabelMap
from ..core.live import LiveMetrics
from ..core.metrics import ConfusionMatrix

SHAPE = (300, 512, 512)        # (z, y, x)
SPACING = (0.78, 0.78, 1.0)    # (x, y, z) mm: a 400 mm field of view, 1 mm slices
ORGAN_MM = (170, 150, 200)     # (z, y, x) extent of the organ in mm: liver-sized
GOAL_S = 1.0
SIX = ndimage.generate_binary_structure(3, 1)


def organ_labels(shape=SHAPE, spacing=SPACING, seed: int = 0) -> np.ndarray:
    """(z, y, x) uint8: a lobulated liver-sized blob (class 1) with what a model gets wrong:
    a ragged boundary, small islands around it and small holes inside."""
    rng = np.random.default_rng(seed)
    spacing_zyx = np.array(spacing[::-1])
    semi = np.minimum(np.array(ORGAN_MM) / spacing_zyx / 2, np.array(shape) / 2 - 12).astype(int)
    centre = np.array(shape) // 2
    box = tuple(slice(int(c - s - 10), int(c + s + 10)) for c, s in zip(centre, semi))
    size = tuple(b.stop - b.start for b in box)
    axes = np.ogrid[tuple(slice(0, n) for n in size)]
    radius = np.sqrt(sum(((a - n / 2) / s).astype(np.float32) ** 2 for a, n, s in zip(axes, size, semi)))
    coarse = rng.standard_normal((5, 6, 6))
    lobes = ndimage.zoom(coarse, [n / c for n, c in zip(size, coarse.shape)], order=3)[:size[0], :size[1], :size[2]]
    ragged = ndimage.gaussian_filter(rng.standard_normal(size).astype(np.float32), 1.2)
    # Lobes of about a tenth of the radius; a boundary ragged by a voxel or two.
    field = radius - 1 + 0.1 * lobes / lobes.std() + 0.015 * ragged / ragged.std()
    organ = field < 0
    for n, value in ((80, 1), (60, 0)):  # islands outside, holes inside
        for _ in range(n):
            inside = value == 0
            while True:
                point = [rng.integers(0, s) for s in size]
                if organ[tuple(point)] == inside and (inside or field[tuple(point)] < 0.25):
                    break
            r = rng.uniform(1.0, 3.5)
            reach = tuple(slice(max(p - 4, 0), min(p + 5, n)) for p, n in zip(point, size))
            zz, yy, xx = np.ogrid[reach]
            organ[reach] = np.where((zz - point[0]) ** 2 + (yy - point[1]) ** 2 + (xx - point[2]) ** 2 <= r * r,
                                    value == 1, organ[reach])
    labels = np.zeros(shape, np.uint8)
    labels[box][organ] = 1
    return labels


def bench_edit_tools(seconds: float = 3.0, echo: Callable[[str], None] = print, shape=SHAPE) -> dict:
    """Each tool on the organ: segview's (timed for about ``seconds``, at least twice,
    median) against the whole-volume scipy baseline (once). Returns per tool both times,
    whether segview's is within the 1 s goal and whether the labels agree."""
    from . import machine_summary

    labels = organ_labels(shape)
    box = ndimage.find_objects(labels)[0]
    echo(f"segview bench tools: class tools on a liver-sized class in a {' x '.join(map(str, shape))} volume "
         f"(z, y, x), spacing {SPACING} mm (x, y, z); the class's box is "
         f"{' x '.join(str(b.stop - b.start) for b in box)} voxels")
    echo(f"  {machine_summary()}")
    label_map = LabelMap(labels.copy(), SPACING)
    live = LiveMetrics(label_map, 2)
    live.add_model("A", labels)  # the model whose mask is being cleaned up
    echo(f"  {'tool':<24} {'segview':>10} {'scipy, whole volume':>20} {'speed-up':>9}   goal <= {GOAL_S:g} s   agree")
    figures: dict[str, dict[str, float | bool] | bool] = {}  # tool name -> its figures, and "metrics_exact"
    for name, tool, baseline in _tools():
        before = label_map.array.copy()
        ours, result = _timed_tool(label_map, tool, seconds)
        start = time.perf_counter()
        expected = baseline(before)
        theirs = time.perf_counter() - start
        agrees = bool(np.array_equal(result, expected))
        echo(f"  {name:<24} {ours * 1e3:8.0f} ms {theirs * 1e3:17.0f} ms {theirs / ours:8.1f}x   "
             f"{'PASS' if ours <= GOAL_S else 'over':<13}  {'yes' if agrees else 'NO'}")
        figures[name] = {"segview_s": ours, "baseline_s": theirs, "within_goal": ours <= GOAL_S, "agrees": agrees}
    recount = ConfusionMatrix.from_arrays(labels, label_map.array, 2)
    exact = bool(np.array_equal(live.matrices["A"].per_slice, recount.per_slice))
    echo(f"  live metrics equal to a full recount after every tool and undo: {'yes' if exact else 'NO'}")
    figures["metrics_exact"] = exact
    return figures


def _timed_tool(label_map: LabelMap, tool, seconds: float) -> tuple[float, np.ndarray]:
    """Median seconds of ``tool(label_map)``, each run undone (untimed); the labels it made."""
    times: list[float] = []
    result: np.ndarray | None = None
    spent = time.perf_counter()
    while len(times) < 2 or time.perf_counter() - spent < seconds:
        start = time.perf_counter()
        tool(label_map)
        times.append(time.perf_counter() - start)
        if result is None:
            result = label_map.array.copy()
        label_map.undo()
    assert result is not None  # the loop ran at least twice
    return statistics.median(times), result


def _ball(radius_mm: float) -> np.ndarray:
    """The structuring element by its definition: voxel offsets within radius_mm."""
    spacing_zyx = SPACING[::-1]
    reach = [int(radius_mm / s) for s in spacing_zyx]
    offsets = np.mgrid[[slice(-r, r + 1) for r in reach]]
    return sum((o * s) ** 2 for o, s in zip(offsets, spacing_zyx)) <= radius_mm ** 2


def _with_class(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.uint8(1), np.where(labels == 1, np.uint8(0), labels))


def _islands(labels: np.ndarray, min_mm3: float | None) -> np.ndarray:
    components, _ = ndimage.label(labels == 1, SIX)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    gone = sizes * float(np.prod(SPACING)) < min_mm3 if min_mm3 is not None else sizes < sizes.max()
    gone[0] = False
    return np.where(gone[components], np.uint8(0), labels)


def _tools():
    """(name, segview's call, the whole-volume scipy baseline giving the same labels)."""
    ball = _ball(1.5)
    spacing_zyx = SPACING[::-1]
    return [
        ("islands < 100 mm3", lambda m: m.remove_islands(1, min_mm3=100.0), lambda a: _islands(a, 100.0)),
        ("keep largest island", lambda m: m.remove_islands(1, keep_largest=True), lambda a: _islands(a, None)),
        ("median 3 mm", lambda m: m.smooth(1, "median", 3.0),
         lambda a: _with_class(a, ndimage.median_filter((a == 1).view(np.uint8), footprint=ball) > 0)),
        ("opening 3 mm", lambda m: m.smooth(1, "opening", 3.0),
         lambda a: _with_class(a, ndimage.binary_opening(a == 1, ball))),
        ("closing 3 mm", lambda m: m.smooth(1, "closing", 3.0),
         lambda a: _with_class(a, ndimage.binary_erosion(ndimage.binary_dilation(a == 1, ball), ball,
                                                         border_value=1))),
        ("grow 3 mm", lambda m: m.margin(1, 3.0),
         lambda a: _with_class(a, ndimage.distance_transform_edt(a != 1, sampling=spacing_zyx) <= 3.0)),
        ("shrink 3 mm", lambda m: m.margin(1, -3.0),
         lambda a: _with_class(a, ndimage.distance_transform_edt(a == 1, sampling=spacing_zyx) > 3.0)),
        ("grow 10 mm", lambda m: m.margin(1, 10.0),
         lambda a: _with_class(a, ndimage.distance_transform_edt(a != 1, sampling=spacing_zyx) <= 10.0)),
    ]
