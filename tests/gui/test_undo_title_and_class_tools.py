"""Faults a tester found driving the window: Ctrl+Y, the overlap tools' other class, the
preview's colours, the title's * after undo and after File > Open labels."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton

from segview.core.phantoms import make_phantom
from segview.resources import DEMO_MODELS
from segview.session import ReviewSession

from .helpers import drag, load_models, wait_for_inference

RV, MYOCARDIUM, LV = 1, 2, 3


@pytest.fixture
def editing(qtbot, window):
    """The demo image with empty labels (its classes kept)."""
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
    window.tools.set_tool("brush")
    return window


def axial(window):
    return window.workspace.viewer.views["axial"]


def panel_button(window, text):
    return next(b for b in window.tools.findChildren(QPushButton) if b.text() == text)


def choose(tools, class_value, operation):
    tools.class_choice.setCurrentIndex(tools.class_choice.findData(class_value))
    tools.class_operation.setCurrentIndex(tools.class_operation.findData(operation))


def operands(tools):
    return [tools.other_class.itemData(n) for n in range(tools.other_class.count())]


# -- 1: Ctrl+Y redoes ----------------------------------------------------------------------
def test_ctrl_y_redoes_as_ctrl_shift_z_does_and_no_other_action_has_it(qtbot, editing):
    window, labels = editing, editing.session.labels
    ctrl_y = QKeySequence("Ctrl+Y")
    assert [a for a in window.findChildren(QAction) if ctrl_y in a.shortcuts()] == [window.redo_action]
    drag(axial(window), [(50, 50)])
    painted = labels.array.copy()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not labels.array.any()
    qtbot.keyClick(window, Qt.Key_Y, Qt.ControlModifier)
    np.testing.assert_array_equal(labels.array, painted)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    np.testing.assert_array_equal(labels.array, painted)


# -- 2: the overlap tools' other class -----------------------------------------------------
def test_the_overlap_tools_offer_every_class_but_the_chosen_one_the_next_first(qtbot, demo, dialogs):
    window, tools, labels = demo, demo.tools, demo.session.labels
    for chosen, default in ((RV, MYOCARDIUM), (MYOCARDIUM, LV), (LV, RV)):
        choose(tools, chosen, "subtract")
        assert ("class", chosen) not in operands(tools)
        assert tools.other_class.currentData() == ("class", default)
    assert not any(kind == "model" for kind, _ in operands(tools))  # none loaded
    choose(tools, RV, "subtract")
    before = labels.array.copy()
    qtbot.mouseClick(panel_button(window, "Apply"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "nothing changes" in window.statusBar().currentMessage(), timeout=60000)
    assert not dialogs  # the RV and the myocardium never overlap: nothing taken, nothing asked
    np.testing.assert_array_equal(labels.array, before)
    qtbot.mouseClick(panel_button(window, "Preview"), Qt.LeftButton)  # nothing drawn: no colours named
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("Preview"), timeout=60000)
    assert window.statusBar().currentMessage().endswith(": nothing changes")


def test_the_other_class_picked_stays_and_a_loaded_model_becomes_the_default(qtbot, demo):
    tools = demo.tools
    choose(tools, RV, "intersect")
    tools.other_class.setFocus()
    QTest.keyClick(tools.other_class, Qt.Key_Down)  # the person picks the left ventricle
    assert tools.other_class.currentData() == ("class", LV)
    choose(tools, MYOCARDIUM, "intersect")
    assert tools.other_class.currentData() == ("class", LV)  # still offered: kept
    choose(tools, LV, "intersect")
    assert tools.other_class.currentData() == ("class", RV)  # itself never: the next class
    load_models(qtbot, demo, DEMO_MODELS[:1], "A")
    assert tools.other_class.currentData() == ("model", "A")
    assert ("class", LV) not in operands(tools) and ("model", "B") not in operands(tools)


# -- 3: the preview's colours --------------------------------------------------------------
def test_a_preview_shows_what_it_adds_and_removes_in_colours_no_class_or_model_has(qtbot, demo):
    """Green and red, unless a class looks like them: the demo's myocardium is green and
    its left ventricle red, so there the preview adds in yellow and removes in orange (black
    would not show on dark MR)."""
    window, labels, view = demo, demo.session.labels, axial(demo)
    choose(window.tools, MYOCARDIUM, "median")
    window.tools.amount.setValue(8.0)  # wide enough to both fill dents and cut spurs of the ring
    qtbot.mouseClick(panel_button(window, "Preview"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "Preview" in window.statusBar().currentMessage(), timeout=60000)
    message = window.statusBar().currentMessage()
    assert "mL added" in message and "mL removed" in message and "added in yellow, removed in orange" in message
    change = view.overlays["preview"].labels
    z = next(z for z in range(change.shape[0]) if {1, 2} <= set(np.unique(change[z]).tolist()))
    view.set_slice(z)
    item = view.overlay_items["preview"]
    drawn = item.lut[item.image]
    shown = drawn[..., 3] == 255
    added = shown & (drawn[..., :3] == (255, 255, 0)).all(-1)
    removed = shown & (drawn[..., :3] == (255, 140, 0)).all(-1)
    assert added.any() and removed.any()
    before = view.orientation.slice(labels.array, view.view, z).copy()
    qtbot.mouseClick(panel_button(window, "Apply"), Qt.LeftButton)
    qtbot.waitUntil(lambda: not window.statusBar().currentMessage().startswith("Preview"), timeout=60000)
    after = view.orientation.slice(labels.array, view.view, z)
    np.testing.assert_array_equal(added, (before != MYOCARDIUM) & (after == MYOCARDIUM))
    np.testing.assert_array_equal(removed, (before == MYOCARDIUM) & (after != MYOCARDIUM))


# -- 4 and 5: the title's * ------------------------------------------------------------------
def test_the_title_loses_its_star_when_undo_comes_back_to_the_saved_labels(qtbot, editing, tmp_path):
    window = editing
    drag(axial(window), [(50, 50)])
    assert window.isWindowModified()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.isWindowModified()
    qtbot.keyClick(window, Qt.Key_Y, Qt.ControlModifier)
    assert window.isWindowModified()
    window.session.save(tmp_path / "case.labels.nii.gz")
    drag(axial(window), [(80, 80)])
    assert window.isWindowModified()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.isWindowModified()  # the labels saved
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.isWindowModified()  # before the save


def test_opening_a_label_file_on_a_fresh_image_leaves_the_title_unstarred(qtbot, editing, tmp_path):
    window, session = editing, editing.session
    case = make_phantom("cardiac", 0)
    reference = ReviewSession.open(case.volume, labels=case.labels.copy(), classes=list(case.classes))
    reference.save(tmp_path / "reference.nii.gz")
    reference.close()
    with qtbot.waitSignal(window.session_changed, timeout=20000):
        window.open_labels(tmp_path / "reference.nii.gz")
    np.testing.assert_array_equal(session.labels.array, case.labels)
    assert not window.isWindowModified() and not session.modified
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # back to the empty labels: not the file's
    assert window.isWindowModified()


@pytest.mark.parametrize("classes, added, removed", [
    ([(255, 170, 0)], "green", "red"),                        # the lung's infection: orange, not red
    ([(80, 200, 120), (240, 80, 70)], "yellow", "orange"),    # the cardiac myocardium and left ventricle
    ([(255, 255, 0), (0, 255, 0), (255, 0, 0)], "white", "orange"),
    ([(255, 255, 0), (0, 255, 0), (255, 0, 0), (255, 140, 0)], "white", "black"),  # never white on white
])
def test_the_preview_colours_keep_clear_of_the_classes_and_models(classes, added, removed):
    from segview.core.classes import MODEL_COLORS
    from segview.gui.tools import preview_colours

    chosen = preview_colours([*classes, *MODEL_COLORS.values()])
    assert (chosen["added"][0], chosen["removed"][0]) == (added, removed)


def test_the_demo_opens_unmodified_and_an_edit_marks_it(qtbot, window, dialogs):
    """segview --demo (make demo) as app.run opens it: the image, then models A and B loaded
    while it opens and run on it. Nothing the person did is unsaved: no *, closing asks
    nothing; a brush stroke is, until undone."""
    with wait_for_inference(qtbot, window):
        window.open_demo("cardiac")
        for slot, path in zip("AB", DEMO_MODELS):
            window.load_model(path, slot)
    assert set(window.session.models) == {"A", "B"}
    assert not window.isWindowModified() and not window.session.modified
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])
    assert window.isWindowModified()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.isWindowModified()
    window.close()
    assert not any(kind == "question" for kind, _ in dialogs)  # nothing unsaved to ask about
