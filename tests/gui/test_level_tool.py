"""Level tracing (V) in the window on the lung CT demo, driven by real mouse events: moving
the mouse outlines the region of similar intensity under it (against a region grown by hand),
a click fills exactly that region with the class in one undo step, and the tolerance in the
Tools panel changes it."""
import numpy as np
import pytest
from PySide6.QtCore import Qt

from segview.gui.slice_view import label_outline

from ..core.test_level_tracing import grown_by_hand
from .helpers import display_pixel, drag, hover


@pytest.fixture
def lung(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("lung")
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_V)
    assert window.effect.name == "level"
    return window


def shown(view, array):
    return view.orientation.slice(array, view.view, view.index)


def test_the_outline_follows_the_mouse_and_a_click_fills_it_in_one_step(qtbot, lung):
    window, session = lung, lung.session
    view = window.workspace.viewer.plane_view()
    infection = next(c.value for c in session.classes if c.name == "infection")
    window.workspace.go_to_slice(int(np.argmax((session.labels.array == infection).sum(axis=(1, 2)))))
    session.labels.copy_from(np.zeros_like(session.labels.array))  # every label filled is the click's
    tolerance = window.level_controller.tolerance.value()
    assert tolerance > 0
    row, col = display_pixel(view, (view.index, 128, 128))
    hover(view, row, col)
    expected = grown_by_hand(shown(view, session.volume.array), (row, col), tolerance)
    item = window.level_controller.items[view]
    assert item.isVisible()
    np.testing.assert_array_equal(item.image, label_outline(expected.astype(np.uint8)))

    drag(view, [(row, col)])  # a click
    np.testing.assert_array_equal(shown(view, session.labels.array) == window.tools.active_class(), expected)
    assert session.labels.array.sum() == shown(view, session.labels.array).sum()  # this slice only
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not session.labels.array.any()  # the fill was one step

    window.level_controller.tolerance.setValue(tolerance / 4)
    assert not item.isVisible()
    hover(view, row, col)
    smaller = grown_by_hand(shown(view, session.volume.array), (row, col), tolerance / 4)
    np.testing.assert_array_equal(item.image, label_outline(smaller.astype(np.uint8)))
    assert 0 < smaller.sum() < expected.sum() < expected.size / 2, (smaller.sum(), expected.sum())


def test_a_click_replaces_another_tools_stale_note_in_the_status_bar(qtbot, lung):
    """A tester's Level click left Fill's refusal of the coronal view in the status bar."""
    window, session = lung, lung.session
    session.labels.copy_from(np.zeros_like(session.labels.array))
    window.view_choice.setCurrentIndex(1)  # coronal
    view = window.workspace.active_view()
    rows, cols = view.image_item.image.shape
    qtbot.keyClick(window, Qt.Key_G)
    drag(view, [(rows // 2, cols // 2)])
    assert "Fill works on the acquired" in window.statusBar().currentMessage()
    qtbot.keyClick(window, Qt.Key_V)
    drag(view, [(rows // 2, cols // 2)])
    assert session.labels.array.any()  # the level click filled
    assert "Fill" not in window.statusBar().currentMessage()
