"""Two windows and a replaced session: each window has its own tools (a polygon begun in one
is not in the other), and a session replaced on screen lets go of its labels' events
while a follower outside the window still hears them."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from segview.core.phantoms import make_phantom
from segview.gui.main_window import MainWindow
from segview.session import ReviewSession, Worklist
from segview.session.case_files import CaseLock
from tests.session.conftest import make_dataset

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


def test_a_case_file_read_only_while_held_elsewhere_opens_editable_once_the_other_closed_it(qtbot, window, dialogs,
                                                                                            tmp_path):
    """A tester opened a dataset case's labels file while another segview had the case:
    read-only, rightly. Once the other had closed it, File > Open labels of that file was
    refused ("Read-only, nothing changed: ... open it again once the other has closed it"),
    naming a process that had ended. Editable again, it journals, and offers the edits a
    crashed session of the case left meanwhile."""
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 1)
    labels = folder / "labelsTr" / "case_000.nii.gz"
    crashed = Worklist.open(folder).session("case_000")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: as after a kill -9, its journal stays
    colleague, _ = CaseLock.acquire(labels)
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.show_session(ReviewSession.open(folder / "imagesTr" / "case_000_0000.nii.gz", labels))
    assert window.read_only_reason() is not None and window.session.journal is None
    colleague.release()
    dialogs.answers.append(QMessageBox.StandardButton.Yes)  # restore them
    window.open_labels(labels)
    qtbot.waitUntil(lambda: window.read_only_reason() is None, timeout=TIMEOUT)
    assert window.session.journal is not None and "read-only" not in window.windowTitle()
    assert any(kind == "question" and "never saved" in text for kind, text in dialogs)
    assert window.session.reviewed[2]


def test_the_window_names_the_labels_opened_before_it_warns_about_them(qtbot, window, dialogs, tmp_path,
                                                                       monkeypatch):
    """A tester's title still named the previous label file, unsaved ("*"), behind the
    warning about the one just opened."""
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 1)
    labels = folder / "labelsTr" / "case_000.nii.gz"
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.show_session(ReviewSession.open(folder / "imagesTr" / "case_000_0000.nii.gz"))
    window.session.labels.paint(1, [(3, 3)], 2.0, 1)  # unsaved
    colleague, _ = CaseLock.acquire(labels)
    seen = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *_: seen.append(
        (title, window.windowTitle(), window.isWindowModified())))
    window.open_labels(labels)
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    title, shown, modified = seen[0]
    assert title == "Labels opened read-only" and "case_000.nii.gz" in shown and not modified
    colleague.release()
