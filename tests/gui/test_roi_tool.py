"""The ROI tool (O) in the window, driven by real mouse drags on the demo: the statistics of
the image inside the ellipse (Shift: rectangle) follow the mouse in a tooltip, stay in the
status bar and the measures dock, equal the session's for the shape drawn, and change
nothing; the shape is drawn on its plane only and goes with another tool."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolTip

from segview.session.statistics import shape_mask

from .helpers import display_pixel, drag


def choose_roi(qtbot, window):
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_O)
    assert window.effect.name == "roi"


def drawn_points(window, view) -> int:
    xs, _ = window.roi_controller.lines[view].getData()
    return 0 if xs is None else len(xs)


@pytest.mark.parametrize("modifiers, shape", [(Qt.NoModifier, "ellipse"), (Qt.ShiftModifier, "rectangle")])
def test_a_drag_shows_the_statistics_inside_the_shape_and_changes_nothing(qtbot, demo, monkeypatch, modifiers, shape):
    window, session = demo, demo.session
    tips = []
    monkeypatch.setattr(QToolTip, "showText", lambda point, text, *_: tips.append(text))
    before = session.labels.array.copy()
    choose_roi(qtbot, window)
    view = window.workspace.active_view()
    z = view.index
    drag(view, [display_pixel(view, (z, 70, 80)), display_pixel(view, (z, 100, 110)),
                display_pixel(view, (z, 130, 150))], modifiers)
    effect = window.roi_controller.effect
    assert effect.shape == shape and (effect.start.axis, effect.start.index) == (0, z)
    mask = shape_mask(session.volume.shape[1:], effect.start.point, effect.end.point, shape)
    inside = session.volume.array[z][mask]
    assert 1500 < inside.size <= 61 * 71  # an ellipse, or the whole box: at most 61 x 71 voxel centres
    assert effect.statistics.voxels == inside.size
    assert effect.statistics.mean == pytest.approx(inside.mean())
    assert effect.statistics.median == np.median(inside)
    assert len(tips) >= 2 and tips[-1].startswith(shape.capitalize())  # followed the mouse
    message = window.statusBar().currentMessage()
    assert message.startswith(f"{shape.capitalize()}: ") and f"({inside.size} voxels)" in message
    assert window.roi_controller.result.text() == f"ROI: {message}"
    np.testing.assert_array_equal(session.labels.array, before)
    assert not window.isWindowModified() and not session.labels.can_undo
    assert drawn_points(window, view) > 4
    qtbot.keyClick(view, Qt.Key_Up)  # another slice: the shape is not drawn there
    assert drawn_points(window, view) == 0
    qtbot.keyClick(view, Qt.Key_Down)
    assert drawn_points(window, view) > 4
    drag(view, [display_pixel(view, (z, 90, 90))])  # a click, not a drag: says so, draws nothing
    assert window.statusBar().currentMessage().startswith("ROI: drag to draw")
    assert drawn_points(window, view) == 0 and effect.statistics is None and not window.roi_controller.result.text()
    drag(view, [display_pixel(view, (z, 70, 80)), display_pixel(view, (z, 130, 150))], modifiers)
    assert window.roi_controller.result.text().startswith("ROI: ")
    qtbot.keyClick(view, Qt.Key_N)  # another tool: it goes, and its statistics with it
    assert drawn_points(window, view) == 0 and effect.statistics is None
    assert not window.roi_controller.result.text() and window.roi_controller.result.isHidden()
