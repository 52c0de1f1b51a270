"""``segview bench surface``: the HD95 of one structure pair, segview against medpy's ``hd95``.

medpy erodes and distance-transforms the whole volume twice; segview crops to the box
around both objects and looks the nearest surface points up in a k-d tree of the surface
alone. The gain depends on the structure's size, so two are timed: a left-ventricle-sized
ellipsoid (the issue's target, >= 30x) and a liver-sized one.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np

from ..core.metrics import hausdorff95

SHAPE = (300, 384, 384)          # (z, y, x)
SPACING = (0.9, 0.9, 1.0)        # (x, y, z) mm
STRUCTURES = {                   # name: semi-axes (z, y, x) as fractions of the volume's size
    "ventricle-sized": (40 / 300, 40 / 384, 35 / 384),   # 80 x 80 x 70 voxels in 300 x 384 x 384
    "liver-sized": (90 / 300, 110 / 384, 100 / 384),     # 180 x 220 x 200 voxels
}
TARGET = 30.0


def structure_pair(semi_axes, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A reference ellipsoid in the middle of the volume and a prediction shifted by a few
    voxels and a few percent larger or smaller along two axes (uint8 label maps)."""
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    centre = np.array(shape) / 2

    def ellipsoid(shift, scale):
        rz, ry, rx = (a * s for a, s in zip(semi_axes, scale))
        cz, cy, cx = centre + shift
        return (((z - cz) / rz) ** 2 + ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1).astype(np.uint8)

    return ellipsoid((2, 3, -2), (1.03, 0.97, 1.0)), ellipsoid((0, 0, 0), (1, 1, 1))


def bench_surface(seconds: float = 3.0, echo: Callable[[str], None] = print, shape=SHAPE) -> dict:
    """segview's ``hausdorff95`` against medpy's ``hd95`` on the same pair, for each
    structure size; each is timed for about ``seconds`` (at least once). Returns per
    structure the two times, their ratio and whether the values agree (to 1e-9 mm)."""
    from . import machine_summary

    try:  # medpy is a test dependency, not the application's
        import medpy.metric  # noqa: F401
    except ImportError:
        echo("segview bench surface needs medpy, the baseline: pip install medpy")
        return {}

    echo(f"segview bench surface: HD95 of one structure pair in a {' x '.join(map(str, shape))} volume "
         f"(z, y, x), spacing {SPACING} mm (x, y, z)")
    echo(f"  {machine_summary()}")
    figures = {}
    for kind, fractions in STRUCTURES.items():
        semi_axes = [max(f * n, 1.0) for f, n in zip(fractions, shape)]
        name = f"{kind} ({' x '.join(f'{2 * a:.0f}' for a in semi_axes)} voxels)"
        pred, ref = structure_pair(semi_axes, shape)
        ours, ours_s = _timed(partial(_segview_hd95, pred, ref), seconds)
        theirs, theirs_s = _timed(partial(_medpy_hd95, pred, ref), seconds)
        agrees = bool(abs(ours - theirs) <= 1e-9)
        ratio = theirs_s / ours_s
        echo(f"  {name}")
        echo(f"    segview hausdorff95  {ours_s * 1e3:9.1f} ms   HD95 {ours:.6f} mm")
        echo(f"    medpy hd95           {theirs_s * 1e3:9.1f} ms   HD95 {theirs:.6f} mm")
        echo(f"    speed-up {ratio:6.1f}x (target >= {TARGET:g}x: {'PASS' if ratio >= TARGET else 'below'}); "
             f"values agree: {'yes' if agrees else 'NO'}")
        figures[name] = {"segview_s": ours_s, "medpy_s": theirs_s, "ratio": ratio, "agrees": agrees}
    return figures


def _segview_hd95(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(hausdorff95(pred, ref, 2, SPACING)[1])


def _medpy_hd95(pred: np.ndarray, ref: np.ndarray) -> float:
    from medpy.metric import binary as medpy_binary

    return float(medpy_binary.hd95(pred == 1, ref == 1, SPACING[::-1]))


def _timed(work: Callable[[], float], seconds: float) -> tuple[float, float]:
    """(value, median seconds per call) of ``work``, repeated for about ``seconds``."""
    times: list[float] = []
    value, start = 0.0, time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        value = float(work())
        times.append(time.perf_counter() - begin)
    return value, float(np.median(times))
