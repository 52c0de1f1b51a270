"""``segview bench``: speed figures measured side by side in one run.

Machines are shared and noisy, so every benchmark times the fast path and its baseline in
the same process on the same data and reports their ratio against the target an issue
sets; absolute times are printed too but mean little except on a dedicated GPU. Each one
also checks that the fast path gives the same answer as the baseline.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable

import numpy as np

from .core.metrics import ConfusionMatrix, confusion_counts, scores_from_counts


def machine_summary() -> str:
    try:
        import torch
        threads = torch.get_num_threads()
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    except ImportError:
        threads, gpu = "?", "no torch"
    return (f"{platform.node()}: {os.cpu_count()} CPUs, torch threads {threads}, {gpu}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:8.1f} ms"
    return f"{seconds:8.2f} s "


def _verdict(ratio: float, target: float) -> str:
    return f"{ratio:10.0f}x  (target >= {target:g}x)  {'PASS' if ratio >= target else 'FAIL'}"


# -- metrics ----------------------------------------------------------------------------

def synthetic_labels(shape, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference labels (nested ellipsoids, one shell per class) and two predictions that
    differ from it by a shift and by a boundary jitter, like two imperfect models."""
    z, y, x = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:y, 0:x].astype(np.float32)
    ref = np.zeros(shape, np.uint8)
    pred_a = np.zeros(shape, np.uint8)
    pred_b = np.zeros(shape, np.uint8)
    for k in range(z):
        scale = 1 - abs(2 * k / max(z - 1, 1) - 1) * 0.6  # ellipsoids taper towards the ends
        for target, (dy, dx, wobble) in ((ref, (0, 0, 0)), (pred_a, (3, -2, 0)),
                                         (pred_b, (0, 0, 0.04))):
            radius = np.hypot((yy - y / 2 - dy) / (0.40 * y), (xx - x / 2 - dx) / (0.30 * x))
            radius /= scale * (1 + wobble * rng.standard_normal())
            for c in range(1, num_classes):
                target[k][radius < 1 - (c - 1) / num_classes] = c
    return pred_a, pred_b, ref


def bench_metrics(shape=(300, 512, 512), num_classes: int = 4, radius: int = 15,
                  strokes: int = 200, echo: Callable[[str], None] = print) -> dict:
    """ConfusionMatrix update after a brush stroke vs a full recount (np.bincount) and vs
    MONAI's DiceMetric, for two models. Returns the measured figures."""
    echo(f"segview bench metrics: {' x '.join(map(str, shape))} volume (z, y, x), "
         f"{num_classes} classes, brush radius {radius} px on one slice, two models")
    echo(f"  {machine_summary()}")
    pred_a, pred_b, ref = synthetic_labels(shape, num_classes, seed=0)
    matrices = [ConfusionMatrix.from_arrays(p, ref, num_classes) for p in (pred_a, pred_b)]

    z = shape[0] // 2
    cy, cx = shape[1] // 2, int(shape[2] * 0.62)  # across the outer boundaries
    region = (z, slice(max(cy - radius, 0), cy + radius + 1),
              slice(max(cx - radius, 0), cx + radius + 1))
    yy, xx = np.ogrid[region[1], region[2]]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2

    def stroke(paint: int) -> None:
        old = ref[region].copy()
        new = old.copy()
        new[disc] = paint
        ref[region] = new
        start = time.perf_counter()
        for matrix, pred in zip(matrices, (pred_a, pred_b)):
            matrix.update_reference(region, old, new, pred)
        update_times.append(time.perf_counter() - start)

    update_times: list[float] = []
    for n in range(strokes):  # paint and repaint with changing classes
        stroke(1 + n % (num_classes - 1))
    update = statistics.median(update_times)
    full = median_seconds(lambda: confusion_counts(pred_a, ref, num_classes), repeats=3)

    identical = all(np.array_equal(m.counts, confusion_counts(p, ref, num_classes))
                    and np.array_equal(m.slice_counts[z], confusion_counts(p[z], ref[z], num_classes))
                    for m, p in zip(matrices, (pred_a, pred_b)))
    echo(f"  incremental update, 2 models  {_format_time(update)}  (median of {strokes} strokes)")
    echo(f"  full np.bincount, 1 model     {_format_time(full)}  (median of 3)")
    echo(f"  speed-up vs full bincount     {_verdict(full / update, 100)}")
    figures = {"update_s": update, "bincount_s": full, "identical": identical}

    monai = _monai_dice_seconds(pred_a, pred_b, ref, num_classes, matrices)
    if monai is None:
        echo("  MONAI is not installed (pip install monai): its comparison is skipped")
    else:
        seconds, agrees = monai
        echo(f"  MONAI DiceMetric, 2 models    {_format_time(seconds)}  (one-hot tensors "
             "made beforehand, not timed)")
        echo(f"  speed-up vs MONAI             {_verdict(seconds / update, 1000)}")
        figures.update(monai_s=seconds, identical=identical and agrees)
    echo(f"  counts identical to a full recount (volume and slice {z}): "
         f"{'yes' if identical else 'NO'}" + ("" if monai is None else
                                            f"; Dice equal to MONAI's: {'yes' if monai[1] else 'NO'}"))
    return figures


def _monai_dice_seconds(pred_a, pred_b, ref, num_classes, matrices):
    try:
        import torch
        from monai.metrics import DiceMetric
    except ImportError:
        return None

    def one_hot(labels):
        tensor = torch.from_numpy(labels).long()[None]
        return torch.nn.functional.one_hot(tensor, num_classes).movedim(-1, 1).float()

    reference = one_hot(ref)
    predictions = [one_hot(pred_a), one_hot(pred_b)]
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    results = []
    with torch.no_grad():
        seconds = median_seconds(lambda: results.append([metric(p, reference)[0].numpy()
                                                         for p in predictions]), repeats=2)
    ours = [scores_from_counts(m.counts).dice for m in matrices]
    agrees = all(np.allclose(np.nan_to_num(o, nan=1.0), r, rtol=1e-5)
                 for o, r in zip(ours, results[-1]))
    return seconds, agrees


BENCHMARKS = {"metrics": bench_metrics}
