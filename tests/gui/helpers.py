"""Mouse and wait helpers for the GUI tests: real mouse events on a view's viewport, as
pyqtgraph receives them from a person."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication


def widget_point(view, row, col) -> QPointF:
    """Viewport coordinates of the centre of displayed pixel (row, col), once pending
    layout and resize events have moved the view where it stays."""
    QApplication.processEvents()
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    scene = view.box.mapViewToScene(QPointF((col + 0.5) * col_mm, (row + 0.5) * row_mm))
    return QPointF(view.mapFromScene(scene))


def display_pixel(view, voxel) -> tuple[int, int]:
    """The displayed (row, col) of numpy index ``voxel`` (z, y, x) in ``view``."""
    return view.orientation.to_display(view.view, voxel, view.volume.shape)


def _send(view, kind, point: QPointF, button, buttons, modifiers=Qt.NoModifier) -> None:
    viewport = view.viewport()
    event = QMouseEvent(kind, point, QPointF(viewport.mapToGlobal(point)), button, buttons, modifiers)
    QApplication.sendEvent(viewport, event)
    QTest.qWait(15)  # pyqtgraph takes at most 100 mouse moves a second


def drag(view, pixels, modifiers=Qt.NoModifier, button=Qt.LeftButton) -> None:
    """Press at the first displayed pixel, move through the others, release at the last
    (one pixel: a click)."""
    drag_points(view, [widget_point(view, r, c) for r, c in pixels], modifiers, button)


def drag_points(view, points, modifiers=Qt.NoModifier, button=Qt.LeftButton) -> None:
    """``drag`` through viewport points."""
    _send(view, QEvent.MouseMove, points[0], Qt.NoButton, Qt.NoButton, modifiers)
    _send(view, QEvent.MouseButtonPress, points[0], button, button, modifiers)
    for point in points[1:]:
        _send(view, QEvent.MouseMove, point, Qt.NoButton, button, modifiers)
    _send(view, QEvent.MouseButtonRelease, points[-1], button, Qt.NoButton, modifiers)


def hover(view, row, col) -> None:
    """Move the mouse (no button) over displayed pixel (row, col), entering the view as a
    person's mouse does."""
    point = widget_point(view, row, col).toPoint()
    QTest.mouseMove(view.viewport(), point + QPoint(3, 3))  # Qt drops a move to where the mouse is
    QTest.qWait(15)  # pyqtgraph takes at most 100 mouse moves a second
    QTest.mouseMove(view.viewport(), point)
    QTest.qWait(15)


def distance_to_path_mm(view, pixels) -> np.ndarray:
    """(rows, cols) distance in mm of every displayed pixel to the polyline through pixels."""
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    rows, cols = view.image_item.image.shape
    yy, xx = np.mgrid[0:rows, 0:cols] * np.array([row_mm, col_mm])[:, None, None]
    best = np.full((rows, cols), np.inf)
    for (r0, c0), (r1, c1) in zip(pixels, pixels[1:]):
        for t in np.linspace(0, 1, 400):
            y, x = (r0 + t * (r1 - r0)) * row_mm, (c0 + t * (c1 - c0)) * col_mm
            best = np.minimum(best, np.hypot(yy - y, xx - x))
    return best


def load_models(qtbot, window, paths, slots="AB") -> None:
    """Load checkpoints into ``slots`` one after the other (each load waited for)."""
    for slot, path in zip(slots, paths):
        with qtbot.waitSignal(window.model_loaded, timeout=30000):
            window.load_model(path, slot)


def wait_for_inference(qtbot, window, timeout=60000):
    """Wait until a run leaves every model loaded with every slice predicted (runs
    cancelled on the way, e.g. by loading the second model, do not count, nor does the
    first model's run ending while the second's goes on); returns the blocker."""
    def whole(completed) -> bool:
        session = window.session
        return completed and session is not None and all(m.predicted.all() for m in session.models.values())

    return qtbot.waitSignal(window.inference_finished, timeout=timeout, check_params_cb=whole)
