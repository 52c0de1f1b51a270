"""Compare mode as a tester drove it on the demo: the error map's unreviewed disagreement
seen on the grey image, the panes' one (linked) crosshair, Shift+K back to where it came
from, the layout keys and image buttons with no image, the review list's hint."""
import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QApplication, QDockWidget, QPushButton

from segview.core.compare import CATEGORY_COLORS, UNREVIEWED_DISAGREE
from segview.resources import DEMO_MODELS

from .helpers import display_pixel, hover, load_models, wait_for_inference, widget_point

IMAGE_BUTTONS = ("Preview", "Apply", "Clear slice", "Copy previous slice", "Fill between slices", "Mark reviewed (M)")


@pytest.fixture
def comparing(qtbot, demo):
    load_models(qtbot, demo, DEMO_MODELS)
    with wait_for_inference(qtbot, demo):
        pass
    press(qtbot, demo, Qt.Key_K)
    assert demo.workspace.mode == "compare"
    return demo


def press(qtbot, window, key, modifiers=Qt.NoModifier):
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), key, modifiers)


def on_screen(pane, row, col) -> tuple[int, int, int]:
    """The colour drawn at the centre of displayed pixel (row, col) of ``pane``."""
    point = widget_point(pane, row, col).toPoint()
    color = pane.viewport().grab().toImage().pixelColor(point)
    return color.red(), color.green(), color.blue()


def test_the_error_map_shows_unreviewed_disagreement_in_its_saturated_colour(qtbot, comparing):
    window, session = comparing, comparing.session
    a, b = session.models["A"].prediction, session.models["B"].prediction
    z = next(z for z in range(a.shape[0]) if not session.reviewed[z] and (a[z] != b[z]).sum() > 100)
    press(qtbot, window, Qt.Key_K, Qt.ShiftModifier)
    pane = window.workspace.compare.panes["disagreement"]
    window.workspace.go_to_slice(z)
    QApplication.processEvents()
    rgb = CATEGORY_COLORS[UNREVIEWED_DISAGREE]
    assert max(rgb) - min(rgb) >= 200  # saturated, not a grey
    assert f"rgb{rgb}'>&#9632;</span> A and B disagree" in window.workspace.compare.headers["disagreement"].text()
    color = np.array(rgb, float)
    ys, xs = np.nonzero(a[z] != b[z])
    for y, x in list(zip(ys, xs))[::20]:
        row, col = display_pixel(pane, (z, y, x))
        grey = float(pane.image_item.image[row, col])
        expected = pane.opacity * color + (1 - pane.opacity) * grey  # the overlay over the image
        np.testing.assert_allclose(on_screen(pane, row, col), expected, atol=3)
    y, x = np.argwhere(a[z] == b[z])[len(ys) // 2]  # where they agree: the image alone
    row, col = display_pixel(pane, (z, y, x))
    assert on_screen(pane, row, col) == (pane.image_item.image[row, col],) * 3


def visible_lines(pane) -> list:
    return [item for item in pane.scene().items() if isinstance(item, pg.InfiniteLine) and item.isVisible()]


def test_the_panes_draw_only_the_linked_crosshair_dashed_green_and_x_hides_it(qtbot, comparing):
    window, panes = comparing, comparing.workspace.compare.panes
    z = panes["A"].index
    hover(panes["A"], *display_pixel(panes["A"], (z, 90, 110)))  # a plain hover draws no cross
    assert not any(visible_lines(panes[name]) for name in ("A", "B"))
    window.crosshair.set_point((z, 60, 70))
    for name in ("A", "B"):
        lines = visible_lines(panes[name])
        assert set(lines) == set(window.crosshair.lines[panes[name]])
        for line in lines:
            assert line.pen.style() == Qt.PenStyle.DashLine and line.pen.color().getRgb()[:3] == (120, 255, 120)
    press(qtbot, window, Qt.Key_X)
    assert not any(visible_lines(panes[name]) for name in ("A", "B"))


def test_the_brush_outline_goes_when_the_mouse_leaves_a_pane(qtbot, comparing):
    window, pane = comparing, comparing.workspace.compare.panes["B"]
    window.tools.set_tool("brush")
    hover(pane, 60, 60)
    assert pane.brush_cursor.isVisible()
    QApplication.sendEvent(pane, QEvent(QEvent.Type.Leave))
    assert not pane.brush_cursor.isVisible()


def test_shift_k_goes_back_to_the_layout_it_came_from(qtbot, comparing):
    window = comparing
    for start in ("compare", "views"):
        assert window.workspace.mode == start
        press(qtbot, window, Qt.Key_K, Qt.ShiftModifier)
        assert window.workspace.mode == "disagreement" and window.disagreement_action.isChecked()
        press(qtbot, window, Qt.Key_K, Qt.ShiftModifier)
        assert window.workspace.mode == start and window.compare_action.isChecked() == (start == "compare")
        if start == "compare":
            press(qtbot, window, Qt.Key_K)  # to the single view, to start from there


def test_the_side_docks_keep_their_widths_in_every_layout(qtbot, comparing):
    """The legend and the model line above the image change with the layout; their text
    once set the centre's least width, so the docks beside it jumped at each K."""
    window = comparing
    docks = [d for d in window.findChildren(QDockWidget) if d.isVisible()]

    def widths():
        qtbot.wait(50)  # the layout settles on the next turn of the event loop
        return [d.width() for d in docks]

    seen = {}
    for key, modifiers in ((Qt.Key_K, Qt.ShiftModifier), (Qt.Key_K, Qt.ShiftModifier), (Qt.Key_K, Qt.NoModifier)):
        seen[window.workspace.mode] = widths()
        press(qtbot, window, key, modifiers)
    seen[window.workspace.mode] = widths()
    assert set(seen) == {"compare", "disagreement", "views"}
    assert len({tuple(w) for w in seen.values()}) == 1, seen


def test_with_no_image_the_layout_keys_do_nothing_and_image_buttons_are_off(qtbot, window):
    slices = window.slice_number.text()
    buttons = [b for b in window.tools.findChildren(QPushButton) if b.text() in IMAGE_BUTTONS]
    assert len(buttons) == len(IMAGE_BUTTONS) and not any(b.isEnabled() for b in buttons)
    for key, modifiers in ((Qt.Key_K, Qt.NoModifier), (Qt.Key_K, Qt.ShiftModifier), (Qt.Key_D, Qt.NoModifier)):
        press(qtbot, window, key, modifiers)
        assert window.workspace.mode == "views" and window.workspace.viewer.isVisible()
        assert not window.compare_action.isChecked() and not window.disagreement_action.isChecked()
        assert window.slice_number.text() == slices and not window.workspace.compare.isVisible()  # nor its legend
        assert window.statusBar().currentMessage() == "Open an image first"
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert all(b.isEnabled() for b in buttons)
    window.discard_session()  # closed: nothing to apply them to again
    assert not any(b.isEnabled() for b in buttons)


def test_the_review_list_says_when_a_and_b_agree_everywhere(qtbot, demo):
    window = demo
    load_models(qtbot, window, [DEMO_MODELS[0], DEMO_MODELS[0]])  # the same checkpoint as A and B
    with wait_for_inference(qtbot, window):
        pass
    press(qtbot, window, Qt.Key_K)
    ranking = window.metrics.ranking
    qtbot.waitUntil(lambda: ranking.count() == 1, timeout=15000)
    hint = ranking.item(0)
    assert hint.text() == "A and B agree on every predicted slice" and hint.flags() == Qt.ItemFlag.NoItemFlags
    z = window.current_slice()
    ranking.itemClicked.emit(hint)  # not a slice: nothing happens
    assert window.current_slice() == z


def test_the_view_box_names_the_compare_panes_plane_and_is_off_there(qtbot, demo):
    """A tester chose Coronal in compare mode: the box said Coronal, the panes stayed axial.
    The panes show the acquired plane only, so the box says so and cannot be changed there;
    back in the views it names (and drives) the views' plane again."""
    demo.view_choice.setCurrentIndex(1)  # coronal in the views
    assert demo.workspace.viewer.active.view == "coronal"
    demo.set_mode("compare")
    acquired = demo.workspace.compare.panes["A"].view
    assert acquired == "axial"
    assert demo.view_choice.currentText() == "Axial" and not demo.view_choice.isEnabled()
    assert "acquired (axial)" in demo.view_choice.toolTip()
    demo.workspace.go_to_slice(3)
    assert demo.view_choice.currentText() == "Axial"
    demo.set_mode("views")
    assert demo.view_choice.isEnabled()
    assert demo.view_choice.currentText() == demo.workspace.viewer.active.view.capitalize() == "Coronal"
    demo.view_choice.setCurrentIndex(2)
    assert demo.workspace.viewer.active.view == "sagittal"
