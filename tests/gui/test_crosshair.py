"""The linked crosshair on the oblique cardiac demo, driven by real mouse events: Shift +
mouse move and a click in Navigate mode move it, every view of the three (T) goes to the
slice through it and draws it there, scrolling carries it along, X hides and shows it, the
read-out says where it is; the compare panes (K) show and move it too."""
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from .helpers import display_pixel, drag, widget_point


def shift_move(view, row, col) -> None:
    """The mouse moved over displayed pixel (row, col) with Shift held, no button."""
    viewport = view.viewport()
    point = widget_point(view, row, col)
    event = QMouseEvent(QEvent.MouseMove, point, QPointF(viewport.mapToGlobal(point)), Qt.NoButton, Qt.NoButton,
                        Qt.ShiftModifier)
    QApplication.sendEvent(viewport, event)
    QTest.qWait(15)


def drawn_at(window, view):
    """(x, y) of the crosshair's lines in ``view`` (view coordinates, mm), None when hidden."""
    vertical, horizontal = window.crosshair.lines[view]
    return (vertical.value(), horizontal.value()) if vertical.isVisible() and horizontal.isVisible() else None


def expected_at(view, voxel):
    row, col = display_pixel(view, voxel)
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    return pytest.approx(((col + 0.5) * col_mm, (row + 0.5) * row_mm))


def press(qtbot, window, key):
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), key)


def test_shift_move_click_scroll_and_x_in_three_views(qtbot, demo):
    window = demo
    press(qtbot, window, Qt.Key_T)
    views = window.workspace.viewer.views
    assert all(view.isVisible() for view in views.values())
    axial = views["axial"]
    z = axial.index
    shift_move(axial, *display_pixel(axial, (z, 100, 120)))
    assert window.crosshair.point == (z, 100, 120)
    for view in views.values():
        assert view.index == window.crosshair.point[view.normal_axis]  # the slice through it
        assert drawn_at(window, view) == expected_at(view, (z, 100, 120))
    assert window.read_out.text().startswith(f"voxel (120, 100, {z})")
    assert window.crosshair.label.text() == f"\u271b (120, 100, {z})"

    coronal = views["coronal"]
    target = (3, coronal.index, 80)  # a voxel on the coronal slice shown
    drag(coronal, [display_pixel(coronal, target)])  # a click with the Navigate tool
    point = window.crosshair.point
    assert window.effect.name == "navigate" and point[:2] == target[:2]
    assert abs(point[2] - 80) <= 1  # this small view draws more than one voxel per screen pixel
    assert axial.index == 3 and drawn_at(window, axial) == expected_at(axial, point)

    qtbot.keyClick(axial, Qt.Key_Up)  # scrolling carries it along the axial view's axis
    assert window.crosshair.point == (4, *point[1:])
    assert drawn_at(window, coronal) == expected_at(coronal, (4, *point[1:]))

    press(qtbot, window, Qt.Key_X)
    assert all(drawn_at(window, view) is None for view in views.values()) and window.crosshair.label.text() == ""
    press(qtbot, window, Qt.Key_X)
    assert all(drawn_at(window, view) is not None for view in views.values())


def test_the_compare_panes_show_and_move_it(qtbot, demo):
    window = demo
    axial = window.workspace.viewer.views["axial"]
    shift_move(axial, *display_pixel(axial, (axial.index, 90, 110)))
    press(qtbot, window, Qt.Key_K)
    assert window.comparing
    panes = window.workspace.compare.panes
    z = window.crosshair.point[0]
    for name in ("A", "B"):
        assert panes[name].index == z and drawn_at(window, panes[name]) == expected_at(panes[name], (z, 90, 110))
    shift_move(panes["B"], *display_pixel(panes["B"], (z, 60, 70)))
    assert window.crosshair.point == (z, 60, 70)
    assert drawn_at(window, panes["A"]) == expected_at(panes["A"], (z, 60, 70))
    qtbot.keyClick(panes["A"], Qt.Key_Down)
    assert window.crosshair.point == (z - 1, 60, 70) and panes["B"].index == z - 1
