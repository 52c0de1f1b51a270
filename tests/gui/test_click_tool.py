"""The Click tool in the window (issue 20, item 5): real mouse clicks run the click model in
a worker, the labels and the live metrics follow, undo takes a click back, the clicks show
as green and red dots until Enter, Esc, another tool or slice ends the interaction; a
missing or failing model says so and changes nothing; a read-only case cannot use it.

The network's answer is replaced by a rule the test can predict (``disks_refine`` of the
session tests: a disk of radius 3 voxels set or cleared at each click)."""
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QPushButton

from segview.core.phantoms import make_phantom
from segview.ml.interactive import ClickModel
from segview.resources import DEMO_MODELS
from segview.session import ReviewSession
from segview.session.interaction import ENVIRONMENT

from ..session.test_click import disk, disks_refine, make_click_checkpoint, recount
from .helpers import display_pixel, drag, load_models, wait_for_inference

GREEN, RED = (40, 220, 40), (235, 40, 40)


@pytest.fixture(scope="module")
def click_checkpoint(tmp_path_factory):
    return make_click_checkpoint(tmp_path_factory.mktemp("click") / "interactive.safetensors")


@pytest.fixture
def threads(monkeypatch, click_checkpoint):
    """The tiny checkpoint as the click model, answering by ``disks_refine``; the threads it ran on."""
    monkeypatch.setenv(ENVIRONMENT, str(click_checkpoint))
    ran_on = []

    def refine(self, volume, z, mask, clicks, pixel_size=None):
        ran_on.append(threading.current_thread())
        return disks_refine(self, volume, z, mask, clicks)

    monkeypatch.setattr(ClickModel, "refine", refine)
    return ran_on


def open_case(qtbot, window, read_only=None):
    """The cardiac demo image with empty labels (its classes kept)."""
    case = make_phantom("cardiac", 0)
    session = ReviewSession.open(case.volume, classes=list(case.classes))
    if read_only:
        session.locked_by = read_only  # as a case another segview holds, its lock taken
        session.hold_labels_file = lambda: None
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(session)
    return session


def axial(window):
    return window.workspace.viewer.views["axial"]


def click(qtbot, window, voxel, button=Qt.LeftButton, modifiers=Qt.NoModifier, wait=True):
    """A mouse click on voxel (z, y, x) of the axial view; waits for the labels to change."""
    view = axial(window)
    before = window.session.version
    drag(view, [display_pixel(view, voxel)], modifiers, button)
    if wait:
        qtbot.waitUntil(lambda: window.session.version != before and not window.click_controller.busy, timeout=10000)


def dots(window):
    """The dots on the axial view: ((z, y, x), colour) of each, and how many are drawn."""
    view = axial(window)
    return window.click_controller.markers(), len(view.marker_item.data)


def test_clicks_correct_through_the_worker_undo_takes_one_back_and_enter_ends(qtbot, window, threads):
    session = open_case(qtbot, window)
    qtbot.keyClick(axial(window), Qt.Key_C)
    assert window.effect.name == "click"
    qtbot.waitUntil(lambda: session.interaction.model_ready, timeout=10000)  # loaded when the tool is chosen
    value = window.tools.active_class()
    z = axial(window).index
    shape = session.labels.array.shape[1:]
    click(qtbot, window, (z, 40, 50))
    expected = np.zeros(shape, np.uint8)
    expected[disk(shape, 40, 50)] = value
    np.testing.assert_array_equal(session.labels.array[z], expected)
    assert threads and all(t is not threading.main_thread() for t in threads)  # in a worker
    np.testing.assert_array_equal(axial(window).overlay_items["labels"].image,
                                  axial(window).orientation.slice(session.labels.array, "axial", z))
    click(qtbot, window, (z, 42, 50), button=Qt.RightButton)  # removes
    expected[disk(shape, 42, 50)] = 0
    np.testing.assert_array_equal(session.labels.array[z], expected)
    assert dots(window) == ([((z, 40, 50), GREEN), ((z, 42, 50), RED)], 2)
    assert len(threads) == 2 and [len(c) for c in [session.interaction.clicks]] == [2]
    assert "voxels changed" in window.statusBar().currentMessage()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # undo: the right click, its dot and its message go
    name = next(c.name for c in session.classes if c.value == value)
    assert window.statusBar().currentMessage() == f"Undid: click on slice {z + 1} ({name})"
    expected[disk(shape, 40, 50)] = value
    np.testing.assert_array_equal(session.labels.array[z], expected)
    assert dots(window) == ([((z, 40, 50), GREEN)], 1)
    qtbot.keyClick(axial(window), Qt.Key_Return)
    assert dots(window) == ([], 0) and not session.interaction.active
    np.testing.assert_array_equal(session.labels.array[z], expected)  # Enter changes nothing
    assert not session.reviewed.any()


def test_shift_click_removes_and_esc_another_slice_or_tool_end_the_interaction(qtbot, window, threads):
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    z = axial(window).index
    click(qtbot, window, (z, 40, 50))
    click(qtbot, window, (z, 40, 52), modifiers=Qt.ShiftModifier)
    assert [c.positive for c in session.interaction.clicks] == [True, False]
    assert dots(window)[1] == 2
    qtbot.keyClick(axial(window), Qt.Key_Escape)
    assert dots(window) == ([], 0) and not session.interaction.active
    click(qtbot, window, (z, 60, 60))
    assert dots(window)[1] == 1
    qtbot.keyClick(axial(window), Qt.Key_Up)  # another slice
    assert dots(window)[0] == [] and not session.interaction.active
    qtbot.keyClick(axial(window), Qt.Key_Down)
    assert dots(window) == ([], 0)
    click(qtbot, window, (z, 60, 60), button=Qt.RightButton)
    assert dots(window)[1] == 1
    window.tools.set_tool("brush")  # another tool
    assert dots(window) == ([], 0) and not session.interaction.active


@pytest.mark.parametrize("key", [Qt.Key_Period, Qt.Key_Comma], ids=["next", "previous"])
def test_the_next_or_previous_class_key_ends_the_interaction_as_the_class_box_does(qtbot, window, threads, key):
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    z = axial(window).index
    click(qtbot, window, (z, 40, 50))
    assert dots(window)[1] == 1
    qtbot.keyClick(window, key)  # Edit > Next / Previous class: a tester's dots stayed for the old class
    assert window.tools.active_class() != session.labels.array[z, 40, 50]
    assert dots(window) == ([], 0) and not session.interaction.active


@pytest.fixture
def gated(monkeypatch, click_checkpoint):
    """The click model answering by ``disks_refine`` once the test opens the gate."""
    monkeypatch.setenv(ENVIRONMENT, str(click_checkpoint))
    gate = threading.Event()

    def refine(self, volume, z, mask, clicks, pixel_size=None):
        assert gate.wait(30)
        return disks_refine(self, volume, z, mask, clicks)

    monkeypatch.setattr(ClickModel, "refine", refine)
    return gate


@pytest.mark.parametrize("ends", ["tool", "tool key", "slice", "esc", "enter"])
def test_a_click_still_computing_is_dropped_by_another_tool_or_esc_and_applied_then_ended_by_enter(
        qtbot, window, gated, ends):
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    qtbot.waitUntil(lambda: session.interaction.model_ready, timeout=10000)
    z = axial(window).index
    click(qtbot, window, (z, 40, 50), wait=False)
    click(qtbot, window, (z, 60, 60), wait=False)  # waits its turn
    qtbot.waitUntil(lambda: window.click_controller.running is not None)
    assert dots(window)[1] == 2
    if ends == "tool":
        window.tools.set_tool("brush")
    elif ends == "tool key":  # a helper's click then B: the click landed with the Brush chosen
        qtbot.keyClick(axial(window), Qt.Key_B)
        assert window.effect.name == "brush"
    elif ends == "slice":  # and then Down: it landed on a slice no longer shown
        qtbot.keyClick(axial(window), Qt.Key_Down)
        assert axial(window).index != z
    else:
        qtbot.keyClick(axial(window), Qt.Key_Escape if ends == "esc" else Qt.Key_Return)
    gated.set()
    qtbot.waitUntil(lambda: not window.click_controller.busy, timeout=10000)
    assert dots(window) == ([], 0) and not session.interaction.active
    if ends == "enter":  # both clicks applied, two undo steps
        assert session.labels.array[z, 40, 50] and session.labels.array[z, 60, 60]
        session.labels.undo()
        assert session.labels.array[z, 40, 50] and not session.labels.array[z, 60, 60]
    else:  # nothing changed, nothing to undo
        assert not session.labels.array.any() and not session.labels.can_undo
    assert not session.reviewed.any()


def test_enter_and_esc_end_the_interaction_wherever_the_focus_is_and_clear_slice_ends_it(qtbot, window, threads):
    """A tester pressed Enter and Esc in the Radius field, and cleared the slice, with the
    interaction on: its dots stayed, and the next click brought back the cleared lesion."""
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    z = axial(window).index
    for key, point in ((Qt.Key_Return, (40, 50)), (Qt.Key_Escape, (80, 80))):
        click(qtbot, window, (z, *point))
        assert session.interaction.active and dots(window)[1] == 1
        window.tools.radius.setFocus()
        qtbot.waitUntil(lambda: window.tools.radius.hasFocus() or not window.isActiveWindow(), timeout=15000)
        qtbot.keyClick(window.tools.radius, key)
        assert dots(window) == ([], 0) and not session.interaction.active
    click(qtbot, window, (z, 40, 80))
    button = next(b for b in window.tools.findChildren(QPushButton) if b.text() == "Clear slice")
    button.click()
    assert not session.labels.array[z].any()
    assert dots(window) == ([], 0) and not session.interaction.active
    click(qtbot, window, (z, 60, 60))   # a new interaction: the cleared disk stays cleared
    shape = session.labels.array.shape[1:]
    np.testing.assert_array_equal(session.labels.array[z] > 0, disk(shape, 60, 60))


def test_the_live_metrics_follow_a_click_exactly(qtbot, window, threads):
    session = open_case(qtbot, window)
    with wait_for_inference(qtbot, window):
        load_models(qtbot, window, DEMO_MODELS)
    window.tools.set_tool("click")
    z = axial(window).index
    click(qtbot, window, (z, 64, 64))
    click(qtbot, window, (z, 66, 64), button=Qt.RightButton)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    for slot in ("A", "B"):
        matrix = session.live.matrices[slot]
        np.testing.assert_array_equal(matrix.per_slice,
                                      recount(session.prediction(slot), session.labels.array, matrix.num_classes))


def test_without_a_click_model_a_dialog_says_so_and_nothing_changes(qtbot, window, dialogs, monkeypatch, tmp_path):
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "missing.safetensors"))
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    qtbot.wait(300)
    assert not dialogs  # said when a click needs the model, not when the tool is chosen
    z = axial(window).index
    click(qtbot, window, (z, 40, 50), wait=False)
    qtbot.waitUntil(lambda: any(kind == "warning" for kind, _ in dialogs), timeout=10000)
    assert any("No click model" in text and "missing.safetensors" in text for _, text in dialogs)
    assert not session.labels.array.any() and not session.labels.can_undo
    assert dots(window) == ([], 0)


def test_the_model_menu_loads_a_click_model_for_this_image_and_the_next(qtbot, window, dialogs, monkeypatch,
                                                                       tmp_path, click_checkpoint):
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "missing.safetensors"))
    monkeypatch.setattr(ClickModel, "refine", disks_refine)
    chosen = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *_, **__: (str(chosen[-1]), ""))
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    z = axial(window).index
    click(qtbot, window, (z, 40, 50), wait=False)  # no model yet: the dialog says where to load one
    qtbot.waitUntil(lambda: any("No click model" in text for _, text in dialogs), timeout=10000)
    assert "Model > Load click model" in dialogs[-1][1]
    window.click_controller.load_model(click_checkpoint)
    qtbot.waitUntil(lambda: session.interaction.model_ready, timeout=30000)
    click(qtbot, window, (z, 70, 80))
    assert len(dots(window)[0]) == 1
    session.interaction.model_path = window.click_controller.model_path = None  # forgotten, as before loading
    actions = {a.text().replace("&", ""): a for m in window.menuBar().actions() if m.menu() for a in m.menu().actions()}
    chosen.append(DEMO_MODELS[0])  # a segmentation checkpoint is no click model, and says what it is
    shown = len(dialogs)
    actions["Load click model..."].trigger()  # loaded in a worker: the refusal comes from there
    qtbot.waitUntil(lambda: len(dialogs) > shown, timeout=30000)
    assert dialogs[-1][0] == "warning" and "segmentation checkpoint" in dialogs[-1][1]
    assert session.interaction.model_path is None
    assert window.click_controller.model_path is None  # nor remembered for the images opened next
    assert len(dots(window)[0]) == 1  # the interaction in progress goes on
    chosen.append(click_checkpoint)
    actions["Load click model..."].trigger()
    qtbot.waitUntil(lambda: "Click model: interactive.safetensors" in window.statusBar().currentMessage(),
                    timeout=30000)
    assert session.interaction.model_path == click_checkpoint and session.interaction.model_ready
    assert dots(window) == ([], 0)  # a model taken ends it: its clicks were another model's
    click(qtbot, window, (z, 40, 50))
    assert session.labels.array[z, 40, 50] == window.tools.active_class()
    nxt = open_case(qtbot, window)  # the next image uses it too
    assert nxt.interaction.model_path == click_checkpoint


def test_a_failing_model_says_so_in_the_status_bar_and_nothing_changes(qtbot, window, monkeypatch, click_checkpoint):
    monkeypatch.setenv(ENVIRONMENT, str(click_checkpoint))

    def fail(*_, **__):
        raise RuntimeError("no memory left")

    monkeypatch.setattr(ClickModel, "refine", fail)
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    click(qtbot, window, (axial(window).index, 40, 50), wait=False)
    qtbot.waitUntil(lambda: "no memory left" in window.statusBar().currentMessage(), timeout=10000)
    assert not session.labels.array.any() and not session.labels.can_undo
    assert dots(window) == ([], 0)


def test_a_click_that_changes_nothing_says_why(qtbot, window, threads, monkeypatch):
    session = open_case(qtbot, window)
    qtbot.keyClick(axial(window), Qt.Key_C)
    value = window.tools.active_class()
    z, y, x = 6, 100, 110
    session.labels.array[z, y - 5:y + 6, x - 5:x + 6] = value
    session.labels.array[z, 10, 10] = 0
    monkeypatch.setattr(ClickModel, "refine", lambda self, volume, z, mask, clicks, pixel_size=None: (
        (slice(0, mask.shape[0]), slice(0, mask.shape[1])), mask.copy()))  # a model that follows nothing
    session.labels.array[z, 20, 20] = 3 - (value == 3)  # another class
    session.labels.policy.mode = "background"
    for voxel, button, expected in (((z, y, x), Qt.LeftButton, "already in the class"),
                                    ((z, 10, 10), Qt.RightButton, "not in the class"),
                                    ((z, 10, 10), Qt.LeftButton, "did not follow this click"),
                                    ((z, 20, 20), Qt.LeftButton, "'Paint over: everything'")):  # refused at once
        window.statusBar().clearMessage()
        click(qtbot, window, voxel, button, wait=False)
        qtbot.waitUntil(lambda: expected in window.statusBar().currentMessage(), timeout=10000)
    assert not session.labels.can_undo


def test_clicks_in_a_row_that_change_nothing_count_in_the_message_not_repeat_it(qtbot, window, threads):
    session = open_case(qtbot, window)
    qtbot.keyClick(axial(window), Qt.Key_C)
    value = window.tools.active_class()
    z, y, x = 6, 100, 110
    session.labels.array[z, y - 5:y + 6, x - 5:x + 6] = value
    said = "Click: the point clicked is already in the class: nothing to change there"
    for expected in (said, f"{said} (2 clicks)", f"{said} (3 clicks)"):
        click(qtbot, window, (z, y, x), wait=False)
        qtbot.waitUntil(lambda: window.statusBar().currentMessage() == expected, timeout=10000)
    click(qtbot, window, (z, 10, 10), Qt.RightButton, wait=False)  # another reason: counted afresh
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().endswith("not in the class: nothing to change there"),
                    timeout=10000)
    window.statusBar().clearMessage()  # the message gone: the next click is counted afresh
    click(qtbot, window, (z, y, x), wait=False)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == said, timeout=10000)
    assert not session.labels.can_undo


def test_a_bad_click_is_a_message(qtbot, window, threads):
    session = open_case(qtbot, window)
    window.tools.set_tool("click")
    window.workspace.viewer.show_view("coronal")
    view = window.workspace.viewer.views["coronal"]
    drag(view, [(view.volume.shape[0] // 2, 20)])
    assert "axial" in window.statusBar().currentMessage()
    assert not session.labels.array.any() and not threads


def test_a_read_only_case_cannot_use_the_click_tool(qtbot, window, threads):
    session = open_case(qtbot, window, read_only="another segview has it")
    button = next(b for b in window.tools.tool_buttons.buttons() if b.text() == "Click")
    assert not button.isEnabled() and "another segview" in button.toolTip()
    qtbot.keyClick(axial(window), Qt.Key_C)
    assert window.effect.name == "navigate"
    click(qtbot, window, (axial(window).index, 40, 50), wait=False)
    click(qtbot, window, (axial(window).index, 40, 50), button=Qt.RightButton, wait=False)
    qtbot.wait(200)
    assert not session.labels.array.any() and not threads and dots(window) == ([], 0)


def test_a_click_that_took_other_classes_voxels_says_how_many_of_whose():
    from segview.core.classes import named_classes
    from segview.gui.click_tool import changed_text

    classes = named_classes(["background", "right ventricle", "myocardium", "left ventricle"])
    assert changed_text(70, {2: 12, 3: 1}, classes) == "70 voxels changed, 12 of them from myocardium, " \
                                                      "1 of them from left ventricle"
    assert changed_text(1, {}, classes) == "1 voxel changed"
    assert changed_text(5, {7: 2, 3: 0}, classes) == "5 voxels changed, 2 of them from class 7"
