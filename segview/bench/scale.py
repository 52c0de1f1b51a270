"""``segview bench scale``: a whole-body CT (1500 x 512 x 512) with two models, beside the
same figures at 300 slices: how each cost grows with the volume.

Everything goes through the session API, as the window drives it: open the image with its
labels (as a label file read for it: the session takes the array), add models A and B with
their whole predictions (counted against the labels), brush strokes, the whole volume
copied from model A (1 % of its voxels differ from the labels), undo and redo of that
copy. Figures:

- peak memory: the growth of this process's peak resident size (VmHWM, reset before each
  size by writing 5 to /proc/self/clear_refs, so the sizes do not see each other's peak)
  over the whole run, as a ratio to the image's bytes; and what the session still holds
  at the end (VmRSS). Both include the image, the labels and the two predictions
  (2.5x for an int16 image), which the bench hands to the session and then lets go of;
- counting both models against the labels, as a ratio to one
  ``np.bincount(prediction.ravel(), minlength=256)`` pass over the volume (timed after
  the memory figures: it widens the volume to int64, eight times its bytes);
- a brush stroke's mouse move (label write, both models' metrics, the journal), p95;
- the whole-volume copy's time as the window runs it (``copy_job`` compared in a worker,
  then ``start_copy`` written on the main thread a few slabs per turn of its event loop:
  that part timed on its own, in all and its longest piece, the longest the window waits
  at once), and its undo step's bytes as a share of a dense diff (old and new
  values of the bounding box of what changed);
- a save of the labels as .nii.gz through ``save_job`` (atomic, read back and compared):
  its time, and the growth of the peak resident size during it (reset just before) as a
  ratio to the labels' bytes.

The data are synthetic and seeded: an int16 CT (body, organs, noise), labels of two
classes, model A = the labels with 1 % of the voxels changed, model B = the labels moved.
"""
from __future__ import annotations

import gc
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

SHAPES = ((300, 512, 512), (1500, 512, 512))  # (z, y, x)
SPACING = (0.78, 0.78, 1.0)                    # (x, y, z) mm
CHANGED = 0.01                                 # share of voxels where model A differs from the labels
TARGET_PEAK = 3.5                              # x the image's bytes (plus the models: none here)
TARGET_COUNT = 1.0                             # x one np.bincount pass
TARGET_STROKE_MS = 4.0
TARGET_UNDO_SHARE = 0.05
TARGET_PIECE_S = 0.05                          # the window never waits longer at once


# -- memory -------------------------------------------------------------------------------

def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmHWM: the peak resident size, VmRSS: now)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_peak() -> None:
    """Make VmHWM start again from the current resident size (Linux 4.0 and later)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def memory_measurable() -> bool:
    try:
        _reset_peak()
        _status_kib("VmHWM")
    except (OSError, StopIteration):
        return False
    return True


# -- data -------------------------------------------------------------------------------

def synthetic_case(shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image int16 HU, labels, prediction A, prediction B), each (z, y, x), made slice by
    slice (no volume-sized float temporaries): a body ellipse of soft tissue with two
    organs (classes 1, 2) that taper towards the ends, noise; A is the labels with a share
    ``CHANGED`` of the voxels given another class, B the labels moved by a few voxels."""
    z, y, x = shape
    rng = np.random.default_rng(seed)
    image = np.empty(shape, np.int16)
    labels, pred_a, pred_b = (np.empty(shape, np.uint8) for _ in range(3))
    yy, xx = np.ogrid[0:y, 0:x]
    noise = rng.integers(-20, 21, (8, y, x), dtype=np.int16)
    body = ((yy - y / 2) / (0.45 * y)) ** 2 + ((xx - x / 2) / (0.48 * x)) ** 2 < 1
    changes = max(int(CHANGED * y * x), 1)
    for k in range(z):
        scale = 0.4 + 0.6 * np.sin(np.pi * (k + 0.5) / z)
        organ = ((yy - 0.45 * y) / (0.22 * y * scale)) ** 2 + ((xx - 0.4 * x) / (0.2 * x * scale)) ** 2 < 1
        small = ((yy - 0.55 * y) / (0.08 * y * scale)) ** 2 + ((xx - 0.65 * x) / (0.07 * x * scale)) ** 2 < 1
        plane = labels[k]
        plane[:] = 0
        plane[organ] = 1
        plane[small] = 2
        image[k] = np.where(body, 40, -1000) + 20 * plane + noise[k % 8]
        flat = pred_a[k].reshape(-1)
        flat[:] = plane.reshape(-1)
        where = rng.choice(y * x, changes, replace=False)
        flat[where] = (flat[where] + 1) % 3
        pred_b[k] = np.roll(plane, (3, -2), axis=(0, 1))
    return image, labels, pred_a, pred_b


class _Predictor:
    """What a session needs of a model whose whole prediction is handed to it."""
    num_classes = 3
    meta: dict = {}

    @property
    def classes(self):
        from ..core.classes import generic_classes

        return generic_classes(np.arange(3, dtype=np.uint8))


# -- the run ------------------------------------------------------------------------------

@dataclass
class Figures:
    slices: int
    image_bytes: int
    open_s: float = 0.0
    peak_ratio: float = float("nan")      # peak resident growth / image bytes
    held_ratio: float = float("nan")      # resident growth at the end / image bytes
    count_s: float = 0.0                  # both models counted against the labels
    bincount_s: float = 0.0               # one np.bincount pass over a prediction
    stroke_p95_s: float = 0.0
    copy_s: float = 0.0
    undo_s: float = 0.0
    undo_bytes: int = 0
    dense_bytes: int = 0
    apply_s: float = 0.0                  # the copy's writing on the main thread (start_copy, every step)
    longest_piece_s: float = 0.0          # its longest piece: the longest the window waits at once
    pieces: int = 0
    save_s: float = 0.0
    save_peak_ratio: float = float("nan")  # peak resident growth during a save / labels' bytes
    exact: bool = False

    @property
    def count_ratio(self) -> float:
        return self.count_s / self.bincount_s

    @property
    def undo_share(self) -> float:
        return self.undo_bytes / self.dense_bytes


@contextmanager
def _private_journals() -> Iterator[None]:
    """Journals in a temporary folder: a bench leaves nothing in the user's state."""
    previous = os.environ.get("XDG_STATE_HOME")
    with tempfile.TemporaryDirectory(prefix="segview-bench-scale-") as folder:
        os.environ["XDG_STATE_HOME"] = folder
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("XDG_STATE_HOME", None)
            else:
                os.environ["XDG_STATE_HOME"] = previous


def measure(shape, strokes: int = 40, seed: int = 0) -> Figures:
    """The figures of one volume size (see the module docstring)."""
    from ..core.metrics import ConfusionMatrix
    from ..core.review_state import ReviewState
    from ..core.volume import Volume
    from ..session import ReviewSession
    from ..session.review import LabelFile

    measurable = memory_measurable()
    baseline = _status_kib("VmRSS") if measurable else 0
    image, truth, pred_a, pred_b = synthetic_case(shape, seed)
    figures = Figures(shape[0], image.nbytes)
    volume = Volume(image, SPACING, modality="CT")
    del image
    # As a label file read for the image: the session takes the array as it is.
    label_file = LabelFile(Path("labels.nii.gz"), truth, [], ReviewState.empty(shape[0]))
    start = time.perf_counter()
    session = ReviewSession.open(volume, labels=label_file)
    figures.open_s = time.perf_counter() - start
    del truth, volume, label_file
    if session.journal is not None:
        session.journal.wait()

    start = time.perf_counter()
    session.add_model("A", "A.safetensors", _Predictor(), prediction=pred_a)
    session.add_model("B", "B.safetensors", _Predictor(), prediction=pred_b)
    figures.count_s = time.perf_counter() - start
    del pred_a, pred_b

    figures.stroke_p95_s = _strokes(session, strokes, seed)
    before = _checksum(session.labels.array)
    figures.dense_bytes = _dense_diff_bytes(session.labels.array, session.prediction("A"))
    stored = session.labels.history_nbytes()
    start = time.perf_counter()
    job = session.copy_job("A")
    patches = job()  # what a worker does
    writing = session.start_copy(job, patches)  # what the main thread does, a piece per event-loop turn
    finished = False
    while not finished:
        applying = time.perf_counter()
        finished = writing.step()
        piece = time.perf_counter() - applying
        figures.apply_s += piece
        figures.longest_piece_s = max(figures.longest_piece_s, piece)
        figures.pieces += 1
    figures.copy_s = time.perf_counter() - start
    del job, patches, writing
    figures.undo_bytes = session.labels.history_nbytes() - stored
    start = time.perf_counter()
    session.labels.undo()
    figures.undo_s = time.perf_counter() - start
    undone = _checksum(session.labels.array) == before
    session.labels.redo()
    if measurable:
        figures.peak_ratio = (_status_kib("VmHWM") - baseline) * 1024 / figures.image_bytes
        figures.held_ratio = (_status_kib("VmRSS") - baseline) * 1024 / figures.image_bytes
    with tempfile.TemporaryDirectory(prefix="segview-bench-save-") as folder:
        figures.save_s, figures.save_peak_ratio = _save(session, Path(folder) / "labels.nii.gz", measurable)
    prediction = session.prediction("A")
    copied = bool(np.array_equal(session.labels.array, prediction))
    recount = all(np.array_equal(session.live.matrices[slot].per_slice,
                                 ConfusionMatrix.from_arrays(session.prediction(slot), session.labels.array,
                                                             3).per_slice) for slot in "AB")
    figures.exact = undone and copied and recount
    figures.bincount_s = _bincount_seconds(prediction)
    del prediction
    session.close(discard=True)
    return figures


def _save(session, path: Path, measurable: bool) -> tuple[float, float]:
    """Seconds of a save as the window makes it (``save_job`` on the main thread, the job in
    a worker, ``finish_save``) and its peak resident growth over the labels' bytes."""
    if measurable:
        _reset_peak()
        before = _status_kib("VmRSS")
    start = time.perf_counter()
    job = session.save_job(path)
    job()
    session.finish_save(job)
    seconds = time.perf_counter() - start
    del job
    peak = (_status_kib("VmHWM") - before) * 1024 / session.labels.array.nbytes if measurable else float("nan")
    return seconds, peak


def _bincount_seconds(prediction: np.ndarray) -> float:
    """One ``np.bincount`` pass over the volume, the issue's yardstick for counting."""
    start = time.perf_counter()
    np.bincount(prediction.ravel(), minlength=256)
    return time.perf_counter() - start


def _strokes(session, strokes: int, seed: int) -> float:
    """p95 seconds of a mouse move of ``strokes`` drags of a 10 mm brush across the organ,
    each one undo step (journalled)."""
    rng = np.random.default_rng(seed + 1)
    z_count, y, x = session.labels.array.shape
    times = []
    for n in range(strokes):
        z = int(rng.integers(z_count // 4, max(3 * z_count // 4, z_count // 4 + 1)))
        start = rng.uniform([0.3 * y, 0.3 * x], [0.6 * y, 0.6 * x])
        session.labels.begin_stroke()
        for step in range(10):
            point = start + step * np.array([2.0, 3.0])
            began = time.perf_counter()
            session.labels.paint(z, [tuple(point)], 10.0, 1 + n % 2)
            times.append(time.perf_counter() - began)
        session.labels.end_stroke()
    return float(np.percentile(times, 95))


def _dense_diff_bytes(labels: np.ndarray, prediction: np.ndarray) -> int:
    """What a dense diff of copying ``prediction`` over ``labels`` stores: the old and new
    values of the bounding box of the voxels that differ (counted slice by slice)."""
    rows, cols, slices = np.zeros(labels.shape[1], bool), np.zeros(labels.shape[2], bool), []
    for z in range(labels.shape[0]):
        differs = labels[z] != prediction[z]
        rows |= differs.any(axis=1)
        cols |= differs.any(axis=0)
        if differs.any():
            slices.append(z)
    if not slices:
        return 0
    box = (slices[-1] - slices[0] + 1) * _span(rows) * _span(cols)
    return 2 * box


def _span(hits: np.ndarray) -> int:
    where = np.flatnonzero(hits)
    return int(where[-1] - where[0] + 1)


def _checksum(labels: np.ndarray) -> int:
    """A CRC of the labels, slice by slice (no copy of the volume)."""
    crc = 0
    for plane in labels:
        crc = zlib.crc32(plane, crc)
    return crc


# -- the report ---------------------------------------------------------------------------

def bench_scale(seconds: float = 3.0, echo: Callable[[str], None] = print, shapes=SHAPES,
                strokes: int = 40) -> dict:
    """The figures of each of ``shapes`` side by side, the last against the first
    (``seconds`` is not used: each figure is one pass over the volume)."""
    from . import machine_summary

    echo(f"segview bench scale: a CT with labels and two models through the session, at "
         f"{' and '.join(' x '.join(map(str, s)) for s in shapes)} (z, y, x), int16 image, uint8 labels")
    echo(f"  {machine_summary()}")
    measure((4, 32, 32), strokes=2)  # imports and first calls, outside the figures
    with _private_journals():
        results = [measure(shape, strokes) for shape in shapes]
    first, last = results[0], results[-1]
    growth = last.slices / first.slices
    header = "".join(f"{f'{r.slices} slices':>16}" for r in results)
    echo(f"  {'figure':<44}{header}{'growth':>10}   target (at {last.slices} slices)")
    rows = [
        ("image (int16)", lambda r: f"{r.image_bytes / 2 ** 20:.0f} MiB", None, ""),
        ("open (session, labels, journal)", lambda r: f"{r.open_s:.2f} s", lambda r: r.open_s, "linear"),
        ("peak memory / image bytes", lambda r: f"{r.peak_ratio:.2f}x", None,
         _judge(last.peak_ratio <= TARGET_PEAK, f"<= {TARGET_PEAK}x")),
        ("held at the end / image bytes", lambda r: f"{r.held_ratio:.2f}x", None, ""),
        ("count both models", lambda r: f"{r.count_s:.2f} s", lambda r: r.count_s, "linear"),
        ("one np.bincount pass", lambda r: f"{r.bincount_s:.2f} s", lambda r: r.bincount_s, ""),
        ("count both models / bincount pass", lambda r: f"{r.count_ratio:.2f}x", None,
         _judge(last.count_ratio <= TARGET_COUNT, f"<= {TARGET_COUNT}x")),
        ("brush stroke, mouse move p95", lambda r: f"{r.stroke_p95_s * 1e3:.2f} ms", lambda r: r.stroke_p95_s,
         _judge(last.stroke_p95_s * 1e3 <= TARGET_STROKE_MS, f"<= {TARGET_STROKE_MS} ms")),
        ("whole-volume copy of model A", lambda r: f"{r.copy_s:.2f} s", lambda r: r.copy_s, "linear"),
        ("  of which written on the main thread", lambda r: f"{r.apply_s:.2f} s", lambda r: r.apply_s, "linear"),
        ("  its longest piece (one event-loop turn)", lambda r: f"{r.longest_piece_s * 1e3:.0f} ms",
         lambda r: r.longest_piece_s,
         _judge(last.longest_piece_s <= TARGET_PIECE_S, f"<= {TARGET_PIECE_S * 1e3:.0f} ms")),
        ("  pieces", lambda r: f"{r.pieces}", lambda r: r.pieces, ""),
        ("its undo", lambda r: f"{r.undo_s:.2f} s", lambda r: r.undo_s, "linear"),
        ("its undo step", lambda r: f"{r.undo_bytes / 2 ** 20:.1f} MiB", lambda r: r.undo_bytes, ""),
        ("undo step / dense diff (1 % changed)", lambda r: f"{100 * r.undo_share:.1f} %", None,
         _judge(last.undo_share <= TARGET_UNDO_SHARE, f"<= {100 * TARGET_UNDO_SHARE:.0f} %")),
        ("save (.nii.gz, read back)", lambda r: f"{r.save_s:.2f} s", lambda r: r.save_s, "linear"),
        ("save: peak memory / labels' bytes", lambda r: f"{r.save_peak_ratio:.2f}x", None, ""),
    ]
    for name, cell, value, target in rows:
        cells = "".join(f"{cell(r):>16}" for r in results)
        ratio = f"{value(last) / value(first):9.2f}x" if value is not None and value(first) else " " * 10
        echo(f"  {name:<44}{cells}{ratio}   {target}")
    exact = all(r.exact for r in results)
    echo(f"  (growth: the {last.slices}-slice figure over the {first.slices}-slice one; linear is "
         f"{growth:g}x)")
    echo(f"  undo and redo exact, live counts equal to a full recount: {'yes' if exact else 'NO'}")
    if not memory_measurable():
        echo("  (peak memory not measured: /proc/self/clear_refs is not writable here)")
    return {"figures": results, "exact": exact}


def _judge(ok: bool, target: str) -> str:
    return f"{target:<10} {'PASS' if ok else 'FAIL'}"
