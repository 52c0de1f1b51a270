"""``segview bench gui``: frame times and event-loop stalls, measured in the running window.

Scrolling: a 300 x 512 x 512 CT with window/level and two model overlays; each frame is
one slice step and the event processing that paints it (one paint, as after a wheel
event), so its time is what the user waits for. Stalls: a 60 Hz timer records the gaps
between its ticks, first with the window idle, then while a shipped checkpoint predicts
every slice of that volume and the results stream into the overlay; a gap beyond the timer period is a stall.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..core.phantoms import make_phantom
from ..core.volume import Volume

FRAME_TARGET_MS = 1000 / 60
STALL_TARGET_MS = 25.0
TIMER_PERIOD_MS = 1000 / 60


def large_ct(shape=(300, 512, 512)) -> tuple[Volume, np.ndarray, np.ndarray, np.ndarray]:
    """A lung phantom blown up to ``shape`` (nearest neighbour), its labels and two
    'predictions' that differ from them (a shift, an erosion), like two models."""
    case = make_phantom("lung", seed=0)
    z = np.linspace(0, case.labels.shape[0] - 1, shape[0]).round().astype(int)
    rows = np.arange(shape[1]) * case.labels.shape[1] // shape[1]
    cols = np.arange(shape[2]) * case.labels.shape[2] // shape[2]
    grid = np.ix_(z, rows, cols)
    scale = case.labels.shape[1] / shape[1]
    spacing = (case.volume.spacing[0] * scale, case.volume.spacing[1] * scale, case.volume.spacing[2])
    volume = Volume(np.ascontiguousarray(case.volume.array[grid]), spacing, case.volume.origin,
                    modality="CT", meta=dict(case.volume.meta))
    labels = np.ascontiguousarray(case.labels[grid])
    shifted = np.roll(labels, 4, axis=2)
    eroded = labels & np.roll(labels, 3, axis=1) & np.roll(labels, -3, axis=1)
    return volume, labels, shifted, eroded


def bench_gui(seconds: float = 3.0, echo=print, shape=(300, 512, 512), compare: bool = False) -> dict:
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication

    from . import machine_summary
    from ..gui.app import leave_a_core_for_the_window

    app = _application()
    leave_a_core_for_the_window()  # as ``segview`` starts the window
    echo("segview bench gui: the running window, offscreen" if QGuiApplication.platformName() == "offscreen"
         else f"segview bench gui: the running window on {QGuiApplication.platformName()}")
    echo(f"  {machine_summary()}")
    session = large_ct_session(shape)
    checkpoint = _checkpoint()
    with _window_showing(app, session) as window:
        if compare:
            window.set_comparing(True)
        app.processEvents()
        view = window.workspace.active_view()

        p50, p95 = np.percentile(_scroll_frames(app, view, shape[0], seconds), [50, 95])
        what = "compare mode, 2 panes, prediction + label outline each" if compare else "window/level, 2 overlays"
        echo(f"  scroll {shape[1]}x{shape[2]} CT, {what}: "
             f"frame p50 {p50:.1f} ms  p95 {p95:.1f} ms ({1000 / p95:.0f} fps at p95)  "
             f"(target p95 <= {FRAME_TARGET_MS:.1f} ms)  {'PASS' if p95 <= FRAME_TARGET_MS else 'FAIL'}")
        figures = {"frame_p50_ms": p50, "frame_p95_ms": p95}
        if compare:
            window.set_comparing(False)

        # Event-loop gaps: idle, then during inference, in a real event loop (QEventLoop).
        figures.update(_report_gaps(echo, "idle", _timer_gaps(window, lambda loop: QTimer.singleShot(
            int(min(seconds, 2.0) * 1000), loop.quit))))
        if checkpoint is None:
            echo("  no shipped checkpoint in segview/resources/models: inference stalls not measured")
            return figures
        session.remove_model("B")
        session.load_model("A", checkpoint)
        started = time.perf_counter()

        def run(loop) -> None:
            window.inference_finished.connect(loop.quit)
            window.run_inference()

        busy = _timer_gaps(window, run)
        elapsed = time.perf_counter() - started
        echo(f"  inference: {checkpoint.name} on {session.models['A'].device}, {shape[0]} slices "
             f"in {elapsed:.1f} s ({shape[0] / elapsed:.0f} slices/s)")
        figures.update(_report_gaps(echo, "during inference", busy))
        figures["inference_s"] = elapsed
        return figures


def _application():
    from PySide6.QtWidgets import QApplication

    from ..gui.app import keep_c_numbers

    app = QApplication.instance() or QApplication([])
    keep_c_numbers()
    return app


@contextmanager
def _window_showing(app, session) -> Iterator:
    """A shown 1280 x 900 window showing ``session``, garbage collected as the application
    does; then the session is discarded (nothing to save) and the window closed and deleted."""
    from ..gui.main_window import MainWindow
    from ..gui.workers import garbage_collected_on_the_main_thread

    with garbage_collected_on_the_main_thread():
        window = MainWindow()
        window.resize(1280, 900)
        window.show()
        try:
            window.show_session(session)
            yield window
        finally:
            window.discard_session()
            window.close()
            window.deleteLater()
            app.processEvents()


def _scroll_frames(app, view, count: int, seconds: float) -> list[float]:
    """Milliseconds of each frame of scrolling ``view`` one slice step at a time, painted
    (processEvents) before the clock stops."""
    frames: list[float] = []
    deadline = time.perf_counter() + seconds
    step = 1
    while time.perf_counter() < deadline or len(frames) < 60:
        if not 0 <= view.index + step < count:
            step = -step
        start = time.perf_counter()
        view.set_slice(view.index + step)
        app.processEvents()
        frames.append((time.perf_counter() - start) * 1e3)
    return frames


FIRST_SURFACES_TARGET_S = 2.0
SURFACE_EDIT_TARGET_S = 0.5


def bench_3d(seconds: float = 3.0, echo=print, shape=(300, 512, 512)) -> dict:
    """The 3D view on a ``shape`` label volume of 3 classes: the first surfaces (opening the
    view until every class is drawn) and the update after an edit of one class (the edit
    until its surface is drawn again), each as a ratio to scikit-image's marching cubes of
    those classes' boxes alone; then scrolling with the 3D view open. Without OpenGL (the
    offscreen platform) the window cannot draw them: the builder is timed alone."""
    from ..core.surfaces import class_boxes
    from ..gui.surface_view import EDIT_DELAY_MS, opengl_problem

    app = _application()
    session = large_labels_session(shape)
    with _window_showing(app, session) as window:
        app.processEvents()
        labels = session.labels.array
        boxes = class_boxes(labels)
        figures: dict = {}
        alone = {value: _marching_cubes_alone(labels, value, box) for value, box in boxes.items()}
        gl = opengl_problem() is None
        where = "drawn in the window" if gl else "built alone (no OpenGL here: run under a display or xvfb-run)"
        if gl:
            first = _until_updated(window, app, window.surfaces.action.trigger)
        else:
            window.surfaces.action.trigger()  # it says why it draws nothing
            first = _builder_alone(session)
        ratio = first / sum(alone.values())
        echo(f"  3D view, {' x '.join(map(str, shape))} labels, {len(boxes)} classes, {where}: first surfaces "
             f"{first:.2f} s = {ratio:.1f} x marching cubes alone ({sum(alone.values()):.2f} s)  "
             f"(target <= {FIRST_SURFACES_TARGET_S:g} s)  {'PASS' if first <= FIRST_SURFACES_TARGET_S else 'FAIL'}")
        figures.update(surfaces_first_s=first, surfaces_first_ratio=ratio)
        if gl:
            updates = [_until_updated(window, app, partial) for partial in _edits(session, value=2, count=5)]
            p50, p95 = np.percentile(updates, [50, 95])
            echo(f"  3D view, an edit of one class ({len(updates)} edits, {EDIT_DELAY_MS} ms of "
                 f"gathering edits included): update p50 {p50:.2f} s  p95 {p95:.2f} s = "
                 f"{p95 / alone[2]:.1f} x its marching cubes alone ({alone[2]:.2f} s)  "
                 f"(target <= {SURFACE_EDIT_TARGET_S:g} s)  {'PASS' if p95 <= SURFACE_EDIT_TARGET_S else 'FAIL'}")
            figures.update(surfaces_edit_p95_s=p95, surfaces_edit_ratio=p95 / alone[2])
        view = window.workspace.active_view()
        p50, p95 = np.percentile(_scroll_frames(app, view, shape[0], seconds), [50, 95])
        echo(f"  scroll with the 3D view open: frame p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
             f"(target p95 <= {FRAME_TARGET_MS:.1f} ms)  {'PASS' if p95 <= FRAME_TARGET_MS else 'FAIL'}")
        figures.update(frame_p95_ms_3d=p95)
        return figures


def large_labels_session(shape=(300, 512, 512)):
    """A ReviewSession of the cardiac phantom blown up to ``shape`` (nearest neighbour):
    three classes (right ventricle, myocardium, left ventricle) on an oblique grid."""
    from ..core.phantoms import CARDIAC_CLASSES
    from ..session import ReviewSession

    case = make_phantom("cardiac", seed=0)
    grid = _blown_up(case.labels.shape, shape)
    scale = [old / new for old, new in zip(case.labels.shape[::-1], shape[::-1])]
    spacing = tuple(s * k for s, k in zip(case.volume.spacing, scale))
    volume = Volume(np.ascontiguousarray(case.volume.array[grid]), spacing, case.volume.origin,
                    case.volume.direction, modality="MR", meta=dict(case.volume.meta))
    return ReviewSession.open(volume, labels=np.ascontiguousarray(case.labels[grid]), classes=list(CARDIAC_CLASSES))


def _blown_up(old, new):
    """Nearest-neighbour indices that resample a grid of shape ``old`` to ``new`` (np.ix_)."""
    return np.ix_(*(np.linspace(0, o - 1, n).round().astype(int) for o, n in zip(old, new)))


def _marching_cubes_alone(labels: np.ndarray, value: int, box) -> float:
    """Seconds of scikit-image's marching cubes on class ``value`` in its box (median of 3)."""
    from skimage.measure import marching_cubes

    mask = np.pad(labels[box] == value, 1).astype(np.float32)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        marching_cubes(mask, 0.5)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _builder_alone(session) -> float:
    from ..core.surfaces import build_surfaces

    start = time.perf_counter()
    list(build_surfaces(session.labels.array, session.volume, None))
    return time.perf_counter() - start




def _edits(session, value: int, count: int):
    """``count`` edits that take a disc out of class ``value`` alone (no other class within
    reach), on slices spread over the volume: each a callable."""
    labels = session.labels
    array = labels.array
    radius = 3
    for z in np.linspace(0.2, 0.8, count) * array.shape[0]:
        z = int(z)
        ys, xs = np.nonzero(array[z] == value)
        for y, x in zip(ys[::7], xs[::7]):
            around = array[z, max(y - radius, 0):y + radius + 1, max(x - radius, 0):x + radius + 1]
            if np.isin(around, (0, value)).all():
                break

        def edit(z=z, y=y, x=x) -> None:
            with labels.step():
                labels.paint(z, [(float(y), float(x))], radius * min(session.volume.spacing[:2]), 0)

        yield edit


def _until_updated(window, app, action) -> float:
    """Seconds from ``action()`` until the 3D view says every surface is up to date."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    window.surfaces.updated.connect(loop.quit)
    timeout = QTimer(singleShot=True, interval=120_000)  # never hangs the bench
    timeout.timeout.connect(loop.quit)
    timeout.start()
    start = time.perf_counter()
    action()
    loop.exec()
    elapsed = time.perf_counter() - start
    window.surfaces.updated.disconnect(loop.quit)
    if not timeout.isActive():
        raise RuntimeError("the 3D view did not finish its surfaces within 120 s")
    timeout.stop()
    return elapsed


def large_ct_session(shape=(300, 512, 512)):
    """A ReviewSession of ``large_ct`` with its two 'predictions' as models A and B (the
    shipped lung checkpoint stands in for both, its predictions replaced), or none when
    no checkpoint is shipped."""
    from ..core.phantoms import LUNG_CLASSES
    from ..session import ReviewSession

    volume, labels, model_a, model_b = large_ct(shape)
    session = ReviewSession.open(volume, labels=labels, classes=list(LUNG_CLASSES))
    checkpoint = _checkpoint()
    if checkpoint is not None:
        from ..ml.inference import Predictor

        for slot, prediction in (("A", model_a), ("B", model_b)):
            session.add_model(slot, checkpoint, Predictor.from_checkpoint(checkpoint, "cpu"))
            session.set_prediction(slot, prediction)
    return session


def _timer_gaps(parent, start) -> np.ndarray:
    """Milliseconds between the ticks of a 60 Hz timer while an event loop runs, from its
    start to its end (so a stall before the first tick or after the last counts, and work
    over within a tick, 6 small slices' inference, still gives a gap); ``start(loop)`` starts
    the work and arranges for ``loop.quit`` when it ends."""
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer

    ticks: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    timer = QTimer(parent, timerType=Qt.TimerType.PreciseTimer, interval=round(TIMER_PERIOD_MS))
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
    loop = QEventLoop()
    timer.start()
    ticks.append(clock.nsecsElapsed() / 1e6)
    start(loop)
    loop.exec()
    ticks.append(clock.nsecsElapsed() / 1e6)
    timer.stop()
    timer.deleteLater()
    return np.diff(ticks)


def _report_gaps(echo, what: str, gaps: np.ndarray) -> dict:
    p99, longest = (np.percentile(gaps, 99), gaps.max()) if len(gaps) else (np.nan, np.nan)
    stall = longest - TIMER_PERIOD_MS
    echo(f"  60 Hz timer gaps, {what:<16}: p99 {p99:5.1f} ms  max {longest:5.1f} ms "
         f"(longest stall {stall:.1f} ms, target <= {STALL_TARGET_MS:g} ms)  "
         f"{'PASS' if stall <= STALL_TARGET_MS else 'FAIL'}")
    key = what.split()[-1]
    return {f"gap_p99_ms_{key}": p99, f"gap_max_ms_{key}": longest}


def _checkpoint():
    from ..resources import shipped_models

    models = shipped_models()
    return next((models[name] for name in ("lung_ce_dice", "cardiac_ce_dice") if name in models), None)


EDIT_TARGET_MS = 4.0
EDIT_GROWTH_TARGET = 1.25


PLANES = {0: "axial", 1: "coronal", 2: "sagittal"}


def bench_edit(seconds: float = 3.0, echo=print, shapes=((300, 512, 512), (30, 512, 512))) -> dict:
    """Mouse-move handling of a brush stroke in the window (label write, live metrics of
    two models, overlay update), p95 on a large and a small volume: the cost must not
    grow with the volume; on the large one also in the coronal and sagittal planes, where
    a stroke crosses every slice. Checks the live metrics against a full recount."""
    from PySide6.QtGui import QGuiApplication

    from . import machine_summary
    from ..core.metrics import ConfusionMatrix

    app = _application()
    echo(f"segview bench edit: brush strokes in the running window ({QGuiApplication.platformName()})")
    echo(f"  {machine_summary()}")
    figures: dict = {}
    rng = np.random.default_rng(0)
    for n, shape in enumerate(shapes):
        session = large_ct_session(shape)
        with _window_showing(app, session) as window:
            window.cancel_inference()  # the predictions are given: nothing to run
            window.tools.set_tool("brush")
            window.tools.radius.setValue(5.0)
            app.processEvents()
            for axis in (0, 1, 2) if n == 0 else (0,):
                moves = _drag_moves(window, app, axis, shape, rng, seconds)
                p50, p95 = np.percentile(moves, [50, 95])
                live = session.live
                exact = all(np.array_equal(live.matrices[k].counts, ConfusionMatrix.from_arrays(
                    session.prediction(k), session.labels.array, live.num_classes).counts) for k in "AB")
                echo(f"  {shape[0]:>3} x {shape[1]} x {shape[2]} {PLANES[axis]:>8}: mouse move p50 {p50:.2f} ms  "
                     f"p95 {p95:.2f} ms ({len(moves)} moves; target p95 <= {EDIT_TARGET_MS:g} ms)  "
                     f"{'PASS' if p95 <= EDIT_TARGET_MS else 'FAIL'}; metrics {'exact' if exact else 'WRONG'}")
                figures[(shape, PLANES[axis])] = {"p50_ms": p50, "p95_ms": p95, "exact": exact}
    if len(shapes) == 2:
        growth = figures[(shapes[0], "axial")]["p95_ms"] / figures[(shapes[1], "axial")]["p95_ms"]
        echo(f"  p95 {shapes[0][0]} slices / p95 {shapes[1][0]} slices: {growth:.2f} "
             f"(target <= {EDIT_GROWTH_TARGET})  {'PASS' if growth <= EDIT_GROWTH_TARGET else 'FAIL'}")
        figures["growth"] = growth
    return figures


def _drag_moves(window, app, axis: int, shape, rng, seconds: float) -> list[float]:
    """Milliseconds each mouse move of random 20-move drags in planes normal to ``axis``
    takes, as the views emit them (press, moves, release)."""
    from ..gui.effects import PlanePoint

    in_plane = [a for a in range(3) if a != axis]
    size = np.array([shape[a] for a in in_plane])
    moves: list[float] = []
    deadline = time.perf_counter() + seconds
    stroke = window.workspace.stroked  # what a view emits for a mouse press, move, release

    def at(index: int, point) -> PlanePoint:
        zyx = [0.0, 0.0, 0.0]
        zyx[axis] = index
        zyx[in_plane[0]], zyx[in_plane[1]] = point
        return PlanePoint.from_index(zyx, axis)

    while time.perf_counter() < deadline or len(moves) < 200:
        index = int(rng.integers(0, shape[axis]))
        if axis == 0:
            window.workspace.go_to_slice(index)
        point = rng.uniform(0.2, 0.8, 2) * size
        stroke.emit("start", at(index, point))
        for _ in range(20):  # a drag: 20 mouse moves of a few pixels
            point = np.clip(point + rng.normal(0, 4, 2), 0, size - 1)
            start = time.perf_counter()
            stroke.emit("move", at(index, point))
            moves.append((time.perf_counter() - start) * 1e3)
        stroke.emit("end", at(index, point))
        app.processEvents()  # paint, the metrics panel, the journal
    return moves
