"""Two windows and a replaced session: each window has its own tools (a polygon begun in one
is not in the other), and a session replaced on screen lets go of its labels' events
while a follower outside the window still hears them."""
import numpy as np
import pytest
from PySide6.QtCore import Qt

from segview.core.phantoms import make_phantom
from segview.gui.main_window import MainWindow
from segview.session import ReviewSession

from .helpers import drag_points, widget_point

TIMEOUT = 30000


def click_corner(view, row, col) -> None:
    """A click on the top-left corner of displayed pixel (row, col): a vertex between voxel
    centres, so which centres are inside does not hang on a screen pixel."""
    drag_points(view, [widget_point(view, row - 0.5, col - 0.5)])


def polygon_vertices_drawn(window) -> int:
    xs, _ = window.polygon_controller.lines[window.workspace.active_view()].getData()
    return 0 if xs is None else len(xs)


def show_phantom(qtbot, window) -> ReviewSession:
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
    assert window.session is not None
    return window.session


@pytest.fixture
def second_window(qtbot, dialogs):
    other = MainWindow()
    qtbot.addWidget(other)
    other.show()
    qtbot.waitExposed(other)
    yield other
    other.close()


def test_a_polygon_begun_in_one_window_is_not_in_another(qtbot, window, second_window):
    windows = (window, second_window)
    for each in windows:
        show_phantom(qtbot, each)
        each.tools.set_tool("polygon")
        assert each.effect.name == "polygon"
    first, second = (each.workspace.active_view() for each in windows)
    for row, col in ((10, 10), (10, 30), (30, 30)):  # three vertices in the first window, not closed
        click_corner(first, row, col)
    for row, col in ((40, 50), (40, 90), (71, 90), (71, 50)):  # the pixel grid's corners
        click_corner(second, row, col)
    qtbot.keyClick(second, Qt.Key_Return)
    filled = second.orientation.slice(second_window.session.labels.array, second.view, second.index) > 0
    expected = np.zeros(filled.shape, bool)
    expected[40:71, 50:90] = True  # rows 40..70, cols 50..89: the second window's square alone
    np.testing.assert_array_equal(filled, expected)
    assert not window.session.labels.array.any() and polygon_vertices_drawn(window) == 3
    assert polygon_vertices_drawn(second_window) == 0  # closed


def test_a_replaced_session_lets_go_of_its_labels_and_a_follower_still_hears_them(qtbot, window):
    old = show_phantom(qtbot, window)
    labels, heard = old.labels, []
    labels.events.changed.connect(heard.append)
    new = show_phantom(qtbot, window)
    assert new is not old
    assert [len(event) for event in labels.events] == [1, 0, 0]  # the follower's alone
    with labels.step():
        labels.paint(5, [(20, 20)], 3.0, 1)
    assert len(heard) == 1 and not new.labels.array.any() and not new.labels.can_undo
