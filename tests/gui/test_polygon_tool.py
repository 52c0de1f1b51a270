"""The Polygon tool (P) in the window, driven by real mouse events: clicks are vertices, a
double-click or Enter fills the class inside (one undo step), Esc cancels; the line drawn
follows the vertices; fewer than 3 vertices say so and change nothing."""
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segview.core.phantoms import make_phantom
from segview.session import ReviewSession

from .helpers import drag_points, widget_point


@pytest.fixture
def editing(qtbot, window):
    """The demo image with empty labels (its classes kept) and the Polygon tool on."""
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_P)
    assert window.effect.name == "polygon"
    return window


def corner(view, row, col) -> QPointF:
    """The viewport point of the top-left corner of displayed pixel (row, col): vertices
    between voxel centres, so which centres are inside does not hang on a screen pixel."""
    return widget_point(view, row - 0.5, col - 0.5)


def double_click(view, point: QPointF) -> None:
    """A person's double-click: press, release, Qt's double-click event, release."""
    viewport = view.viewport()
    for kind, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton),
                          (QEvent.MouseButtonDblClick, Qt.LeftButton), (QEvent.MouseButtonRelease, Qt.NoButton)):
        event = QMouseEvent(kind, point, QPointF(viewport.mapToGlobal(point)), Qt.LeftButton, buttons,
                            Qt.NoModifier)
        QApplication.sendEvent(viewport, event)
        QTest.qWait(15)


def shown_labels(window, view):
    return view.orientation.slice(window.session.labels.array, view.view, view.index)


def line_points(window, view) -> int:
    xs, _ = window.polygon_controller.lines[view].getData()
    return 0 if xs is None else len(xs)


def test_clicks_then_a_double_click_fill_the_square_inside_and_undo_takes_it_back(qtbot, editing):
    window = editing
    view = window.workspace.active_view()
    corners = [(40, 50), (40, 90), (71, 90), (71, 50)]  # the pixel grid's corners of rows 40..70, cols 50..89
    for row, col in corners[:-1]:
        drag_points(view, [corner(view, row, col)])
    assert line_points(window, view) == 3 and not window.session.labels.array.any()
    double_click(view, corner(view, *corners[-1]))
    expected = np.zeros(view.image_item.image.shape, bool)
    expected[40:71, 50:90] = True
    np.testing.assert_array_equal(shown_labels(window, view) == window.tools.active_class(), expected)
    assert window.session.labels.array.sum() == shown_labels(window, view).sum()  # this slice only
    assert line_points(window, view) == 0
    np.testing.assert_array_equal(view.overlay_items["labels"].image, shown_labels(window, view))
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.session.labels.array.any() and not window.session.labels.can_undo  # one step


def test_enter_closes_a_triangle_in_the_coronal_view_and_escape_cancels(qtbot, editing):
    window = editing
    window.view_choice.setCurrentIndex(1)  # coronal
    view = window.workspace.active_view()
    assert view.normal_axis == 1
    rows, cols = view.image_item.image.shape
    # A right triangle on the pixel grid: row r (of rows 0 .. rows - 1) holds cols c0 .. c0 + w * (r + 1) / rows.
    c0, width = cols // 4, cols // 2
    for row, col in ((0, c0), (rows, c0), (rows, c0 + width)):
        drag_points(view, [corner(view, row, col)])
    qtbot.keyClick(view, Qt.Key_Return)
    filled = shown_labels(window, view) > 0
    for r in range(rows):
        reach = (r + 0.5) * width / rows  # the hypotenuse at the row's centre
        inside = np.arange(cols) + 0.5 - c0 < reach
        inside &= np.arange(cols) >= c0
        tolerance = np.abs(np.arange(cols) + 0.5 - c0 - reach) < 0.5  # centres on the edge within a screen pixel
        np.testing.assert_array_equal(filled[r][~tolerance], inside[~tolerance])
    assert set(np.argwhere(window.session.labels.array)[:, 1]) == {view.index}
    before = window.session.labels.array.copy()
    for row, col in ((1, 1), (1, 10), (5, 10)):
        drag_points(view, [corner(view, row, col)])
    assert line_points(window, view) == 3
    qtbot.keyClick(view, Qt.Key_Escape)
    assert line_points(window, view) == 0 and not window.polygon_controller.drawing
    qtbot.keyClick(view, Qt.Key_Return)  # nothing left to close
    np.testing.assert_array_equal(window.session.labels.array, before)


def test_two_vertices_say_a_polygon_needs_three_and_another_tool_forgets_them(qtbot, editing):
    window = editing
    view = window.workspace.active_view()
    drag_points(view, [corner(view, 20, 20)])
    double_click(view, corner(view, 20, 60))
    assert "at least 3 vertices" in window.statusBar().currentMessage()
    assert not window.session.labels.array.any()
    drag_points(view, [corner(view, 20, 20)])
    drag_points(view, [corner(view, 60, 60)])
    qtbot.keyClick(view, Qt.Key_B)
    assert window.effect.name == "brush" and line_points(window, view) == 0
    qtbot.keyClick(view, Qt.Key_P)
    drag_points(view, [corner(view, 60, 20)])
    qtbot.keyClick(view, Qt.Key_Return)
    assert not window.session.labels.array.any()  # the earlier vertices went with the tool
