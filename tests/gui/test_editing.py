"""Correcting labels in the window: mouse strokes, live metrics, undo, save, recovery."""
import csv
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton
from scipy import ndimage

from segview.core.io import load_labels, save_labels
from segview.core.phantoms import make_phantom
from segview.resources import DEMO_MODELS
from segview.session import ReviewSession

from .helpers import distance_to_path_mm, drag, drag_points, load_models, wait_for_inference, widget_point


@pytest.fixture
def editing(qtbot, window):
    """The demo image with empty labels (its classes kept): every painted voxel is the test's."""
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
    session = window.session
    assert not session.labels.array.any() and not session.labels.can_undo and not window.isWindowModified()
    return window


def axial(window):
    return window.workspace.viewer.views["axial"]


def shown_labels(window, view):
    return view.orientation.slice(window.session.labels.array, view.view, view.index)


def test_a_mouse_drag_paints_a_gapless_stroke_and_ctrl_z_takes_it_back(qtbot, editing):
    window, view, labels = editing, axial(editing), editing.session.labels
    window.tools.set_tool("brush")
    window.tools.radius.setValue(3.0)
    z = view.index
    path = [(40, 40), (42, 90), (100, 100)]  # displayed (row, col); far apart: no gaps allowed
    drag(view, path)
    shown = shown_labels(window, view).copy()
    distance = distance_to_path_mm(view, path)
    row_mm, col_mm = view.orientation.pixel_spacing("axial", window.session.volume.spacing)
    slack = np.hypot(row_mm, col_mm)  # mouse positions are quantised to screen pixels
    assert (shown[distance <= 3.0 - slack] == window.tools.active_class()).all()
    assert (shown[distance > 3.0 + slack] == 0).all()
    assert labels.array.sum() == shown.sum()  # only this slice
    assert window.isWindowModified() and window.session.modified
    assert not window.session.reviewed[z]  # painting is not reviewing: only M marks a slice
    np.testing.assert_array_equal(view.overlay_items["labels"].image, shown)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert labels.array.sum() == 0
    assert not labels.can_undo  # the whole drag was one undo step
    np.testing.assert_array_equal(view.overlay_items["labels"].image, 0 * shown)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    np.testing.assert_array_equal(shown_labels(window, view), shown)
    assert labels.can_undo and not labels.can_redo


def brush_on_axial(window):
    """The brush chosen, on the axial view: that view, its slice and the class's name."""
    view = axial(window)
    window.tools.set_tool("brush")
    value = window.tools.active_class()
    return view, view.index, next(c.name for c in window.session.classes if c.value == value)


def test_ctrl_z_says_which_edit_it_took_back_and_on_which_slice_when_another_is_shown(qtbot, editing):
    window = editing
    view, z, name = brush_on_axial(window)
    drag(view, [(60, 60), (60, 70)])
    window.workspace.go_to_slice(z + 3)  # the stroke is no longer on screen
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.statusBar().currentMessage() == f"Undid: brush stroke on slice {z + 1} ({name}); nothing more to undo"
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.statusBar().currentMessage() == f"Redid: brush stroke on slice {z + 1} ({name}); nothing more to redo"
    assert view.index == z + 3  # said, not jumped to


def test_the_undo_that_empties_the_history_says_so_and_ctrl_z_then_does_nothing(qtbot, editing):
    window = editing
    view, z, name = brush_on_axial(window)
    drag(view, [(60, 60), (60, 70)])
    drag(view, [(80, 60), (80, 70)])
    undid = f"Undid: brush stroke on slice {z + 1} ({name})"
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.statusBar().currentMessage() == undid  # one step left
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.statusBar().currentMessage() == undid + "; nothing more to undo"
    assert not window.undo_action.isEnabled()  # the menu stays honest
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # ignored: the message left still reads true
    assert window.statusBar().currentMessage() == undid + "; nothing more to undo"
    redid = f"Redid: brush stroke on slice {z + 1} ({name})"
    redo = (Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    qtbot.keyClick(window, *redo)
    assert window.statusBar().currentMessage() == redid
    qtbot.keyClick(window, *redo)
    assert window.statusBar().currentMessage() == redid + "; nothing more to redo"
    assert not window.redo_action.isEnabled() and window.undo_action.isEnabled()


def test_the_brush_paints_in_the_coronal_view_the_plane_it_shows(qtbot, editing):
    window, labels = editing, editing.session.labels
    window.view_choice.setCurrentIndex(1)  # coronal
    view = window.workspace.active_view()
    assert view.view == "coronal" and view.normal_axis == 1
    qtbot.keyClick(window, Qt.Key_B)
    qtbot.keyClick(window, Qt.Key_BracketRight)  # a larger brush: 5 mm x 1.25
    assert window.tools.radius.value() == 6.25
    rows, cols = view.image_item.image.shape
    drag(view, [(rows // 2, cols // 3), (rows // 2, 2 * cols // 3)])
    painted = np.argwhere(labels.array > 0)
    assert len(painted) and set(painted[:, 1]) == {view.index}  # only the coronal plane on screen
    np.testing.assert_array_equal(view.overlay_items["labels"].image, shown_labels(window, view))
    # The axial view shows the painted row when it shows one of those slices.
    axial_view = axial(window)
    window.workspace.go_to_slice(int(painted[0, 0]))
    assert shown_labels(window, axial_view).any()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not labels.array.any() and not labels.can_undo
    qtbot.keyClick(window, Qt.Key_G)  # Fill works on the acquired planes only, and says so
    drag(view, [(rows // 2, cols // 2)])
    assert not labels.array.any() and "axial" in window.statusBar().currentMessage()


def test_the_smallest_brush_paints_the_voxel_under_the_mouse_even_off_its_centre(qtbot, editing):
    window, view, labels = editing, axial(editing), editing.session.labels
    window.tools.set_tool("brush")
    window.tools.radius.setValue(0.5)  # the smallest, narrower than the 1.4 mm pixels
    centre = widget_point(view, 60, 60)
    step = widget_point(view, 61, 61) - centre  # one image pixel on screen
    click = (centre + 0.4 * step).toPoint()  # towards the pixel's corner
    landed = np.array(view.index_at(view.box.mapSceneToView(view.mapToScene(click))))
    voxel = tuple(int(v) for v in np.floor(landed + 0.5))
    offset_mm = (landed - voxel)[1:] * window.session.volume.spacing[1::-1]
    assert np.hypot(*offset_mm) > 0.5  # no voxel centre lies within the brush
    drag_points(view, [QPointF(click)])
    assert labels.array.sum() == labels.array[voxel] > 0  # that voxel, and only it
    drag_points(view, [QPointF(click)], Qt.ShiftModifier)  # Shift erases it likewise
    assert not labels.array.any()


def test_shift_erases_and_fill_fills_an_enclosed_region(qtbot, editing):
    window, view, labels = editing, axial(editing), editing.session.labels
    window.tools.set_tool("brush")
    window.tools.radius.setValue(6.0)
    drag(view, [(60, 60), (60, 61)])
    painted = int((labels.array > 0).sum())
    drag(view, [(60, 60), (60, 61)], Qt.ShiftModifier)
    assert painted > 0 and labels.array.sum() == 0
    window.tools.radius.setValue(2.0)
    drag(view, [(60, 60), (60, 120), (120, 120), (120, 60), (60, 60)])  # a closed outline
    ring = shown_labels(window, view) > 0
    inside = ndimage.binary_fill_holes(ring) & ~ring
    assert inside.sum() > 40 * 40
    qtbot.keyClick(window, Qt.Key_G)  # the fill tool
    drag(view, [(90, 90)])  # a click inside the outline
    value = window.tools.active_class()
    np.testing.assert_array_equal(shown_labels(window, view), np.where(ring | inside, value, 0))
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # the fill is one step
    np.testing.assert_array_equal(shown_labels(window, view) > 0, ring)


def test_fill_on_an_empty_slice_does_nothing_and_says_why(qtbot, editing):
    window, view, labels = editing, axial(editing), editing.session.labels
    qtbot.keyClick(window, Qt.Key_G)
    assert window.tools.tool == "fill" and window.effect.name == "fill"
    drag(view, [(5, 5)])  # the whole slice is one background region, open to the edge
    assert not labels.array.any() and not labels.can_undo and not window.isWindowModified()
    assert "enclosed" in window.statusBar().currentMessage()


def test_metrics_panel_follows_the_stroke_for_both_models(qtbot, demo):
    session = demo.session
    load_models(qtbot, demo, DEMO_MODELS)
    with wait_for_inference(qtbot, demo):
        pass
    view = axial(demo)
    table = demo.metrics.table
    before = [table.item(r, 3).text() for r in range(4)]  # mean Dice / IoU: A slice, A vol, B slice, B vol
    assert before[1] == before[3] == "\u2013\n\u2013"  # no slice reviewed yet: a dash, not 0 or 1
    assert "0 / 12 slices reviewed" == demo.metrics.reviewed.text()
    demo.metrics.reviewed_only.setChecked(False)  # the volume over every predicted slice
    for r, key in ((1, "A"), (3, "B")):
        every = session.scores(key, reviewed_only=False)
        assert table.item(r, 3).text() == f"{every.mean_dice:.3f}\n{every.mean_iou:.3f}"
    demo.metrics.reviewed_only.setChecked(True)
    assert [table.item(r, 3).text() for r in range(4)] == before
    demo.tools.set_tool("eraser")
    demo.tools.radius.setValue(25.0)
    rows, cols = view.image_item.image.shape
    drag(view, [(rows // 2, cols // 2)])  # erase the heart on this slice
    qtbot.waitUntil(lambda: table.item(0, 3).text() != before[0], timeout=15000)
    assert "0 / 12 slices reviewed" == demo.metrics.reviewed.text()  # an edit is not a review
    assert table.item(1, 3).text() == before[1]
    qtbot.keyClick(demo, Qt.Key_M)  # mark this slice reviewed
    qtbot.waitUntil(lambda: demo.metrics.reviewed.text() == "1 / 12 slices reviewed", timeout=15000)
    z = view.index
    for r, key in ((0, "A"), (2, "B")):
        scores = session.live.slice_scores(key, z)
        assert table.item(r, 4).text() == f"{scores.pixel_error:.4f}"
        expected = ConfusionRecount(session.models[key].prediction[z], session.labels.array[z])
        assert scores.pixel_error == pytest.approx(expected.pixel_error)
        # The volume over the one reviewed slice is that slice.
        assert table.item(r + 1, 3).text() == table.item(r, 3).text() != before[r + 1]
    dice_a = session.live.dice_along_slices("A")
    np.testing.assert_allclose(demo.metrics.curves["A"].getData()[1], dice_a)
    qtbot.keyClick(demo, Qt.Key_Z, Qt.ControlModifier)  # undo takes the mark back, and the panel follows
    qtbot.waitUntil(lambda: demo.metrics.reviewed.text() == "0 / 12 slices reviewed", timeout=15000)
    assert not session.reviewed.any() and table.item(1, 3).text() == before[1]


def test_the_slice_rows_describe_the_sagittal_slice_painted_on_screen(qtbot, demo):
    """A tester painted in the sagittal view and the slice rows, which described the axial
    slice at the crosshair, did not move: they now score the slice on screen, as numpy does."""
    session, table = demo.session, demo.metrics.table
    load_models(qtbot, demo, DEMO_MODELS)
    with wait_for_inference(qtbot, demo):
        pass
    demo.view_choice.setCurrentIndex(2)  # sagittal
    view = demo.workspace.active_view()
    assert view.view == "sagittal" and view.normal_axis == 2
    qtbot.waitUntil(lambda: table.verticalHeaderItem(0).text() == "A sagittal slice", timeout=15000)
    assert [table.verticalHeaderItem(r).text() for r in (1, 2, 4)] == ["A volume", "B sagittal slice",
                                                                      "B \u2212 A sagittal slice"]
    mean, error = table.columnCount() - 2, table.columnCount() - 1
    before = table.item(0, mean).text()
    demo.tools.set_tool("brush")
    demo.tools.radius.setValue(8.0)
    rows, cols = view.image_item.image.shape
    drag(view, [(rows // 3, cols // 3), (2 * rows // 3, 2 * cols // 3)])
    painted = np.argwhere(session.labels.array > 0)
    assert set(painted[:, 2]) >= {view.index}
    qtbot.waitUntil(lambda: table.item(0, mean).text() != before, timeout=15000)
    plane = np.s_[:, :, view.index]
    for r, key in ((0, "A"), (2, "B")):
        prediction, labels = session.models[key].prediction[plane], session.labels.array[plane]
        dice = [2 * np.sum((prediction == c) & (labels == c)) / (np.sum(prediction == c) + np.sum(labels == c))
                for c in range(1, table.columnCount() - 1) if (prediction == c).any() or (labels == c).any()]
        assert table.item(r, mean).text().split("\n")[0] == f"{np.mean(dice):.3f}"
        assert table.item(r, error).text() == f"{ConfusionRecount(prediction, labels).pixel_error:.4f}"
    demo.view_choice.setCurrentIndex(0)  # axial: the acquired slice's rows, as before
    qtbot.waitUntil(lambda: table.verticalHeaderItem(0).text() == "A slice", timeout=15000)


class ConfusionRecount:
    """Independent pixel error of one slice: the fraction of pixels whose class differs."""
    def __init__(self, prediction, labels):
        self.pixel_error = float((prediction != labels).mean())


def test_save_reload_and_a_failed_save_keeps_the_edits(qtbot, editing, dialogs, tmp_path):
    window, view, session = editing, axial(editing), editing.session
    window.tools.set_tool("brush")
    drag(view, [(50, 50), (70, 80)])
    qtbot.keyClick(window, Qt.Key_M)
    edited = session.labels.array.copy()
    reviewed = session.reviewed.copy()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    assert not window.save_to(blocker / "labels.nii.gz", wait=True)
    assert dialogs[-1][0] == "critical" and "kept in memory" in dialogs[-1][1]
    assert window.isWindowModified()
    np.testing.assert_array_equal(session.labels.array, edited)
    with qtbot.waitSignal(window.saved, timeout=20000):
        window.save_to(tmp_path / "labels.nrrd")  # in the background
    assert not window.isWindowModified() and session.labels_path == tmp_path / "labels.nrrd"
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nrrd", session.volume), edited)
    reopened = ReviewSession.open(session.volume, tmp_path / "labels.nrrd")  # labels and review marks
    np.testing.assert_array_equal(reopened.reviewed, reviewed)
    assert reviewed.sum() == 1
    reopened.close()
    window.save_to(blocker / "labels.mha")
    qtbot.waitUntil(lambda: sum(kind == "critical" for kind, _ in dialogs) == 2, timeout=20000)
    assert "labels.mha" in dialogs[-1][1] and "kept in memory" in dialogs[-1][1]


def test_closing_with_unsaved_edits_asks_and_cancel_keeps_the_window(qtbot, editing, dialogs):
    window = editing
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])
    dialogs.answers.append(QMessageBox.Cancel)
    assert not window.close()
    assert dialogs[-1][0] == "question" and window.session is not None and window.isVisible()
    dialogs.answers.append(QMessageBox.Discard)
    assert window.close()
    assert window.session is None


def test_saving_before_closing_runs_in_a_worker_and_a_failure_keeps_the_window(qtbot, editing, dialogs, tmp_path,
                                                                                monkeypatch):
    from segview.session.review import SaveJob

    window, session = editing, editing.session
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])
    edited = session.labels.array.copy()
    threads = []
    write = SaveJob.__call__

    def recorded(job):
        threads.append(threading.current_thread())
        return write(job)
    monkeypatch.setattr(SaveJob, "__call__", recorded)
    blocker = tmp_path / "a file"
    blocker.write_text("")
    session.labels_path = blocker / "labels.nii.gz"  # a file where the folder should be
    dialogs.answers.append(QMessageBox.Save)
    assert not window.close()  # the save failed: it says so, the window and the edits stay
    assert window.isVisible() and window.session is session and dialogs[-1][0] == "critical"
    np.testing.assert_array_equal(session.labels.array, edited)
    session.labels_path = tmp_path / "labels.nii.gz"
    dialogs.answers.append(QMessageBox.Save)
    assert window.close() and window.session is None
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nii.gz", session.volume), edited)
    assert len(threads) == 2 and threading.main_thread() not in threads  # never on the GUI thread


def test_closing_with_unsaved_edits_and_save_writes_them_first(qtbot, editing, dialogs, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    window, session = editing, editing.session
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50), (60, 70)])
    qtbot.keyClick(window, Qt.Key_M)
    edited, reviewed = session.labels.array.copy(), session.reviewed.copy()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(tmp_path / "out.nrrd"), ""))
    dialogs.answers.append(QMessageBox.Save)
    assert window.close()
    assert window.session is None and session.journal is None  # closed, its journal gone with nothing unsaved
    reopened = ReviewSession.open(session.volume, tmp_path / "out.nrrd")
    np.testing.assert_array_equal(reopened.labels.array, edited)
    np.testing.assert_array_equal(reopened.reviewed, reviewed)
    assert reopened.recoverable_edits is None
    reopened.close()


def test_opening_another_image_over_unsaved_edits_asks_and_cancel_keeps_them(qtbot, editing, dialogs):
    window, session = editing, editing.session
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50), (60, 70)])
    edited = session.labels.array.copy()
    dialogs.answers.append(QMessageBox.Cancel)
    window.open_demo("cardiac")
    qtbot.waitUntil(lambda: any(kind == "question" for kind, _ in dialogs), timeout=30000)
    assert "unsaved" in dialogs[-1][1]
    assert window.session is session and session.journal is not None and window.isWindowModified()
    np.testing.assert_array_equal(session.labels.array, edited)
    assert all(v.volume is session.volume for v in window.workspace.viewer.views.values())
    drag(axial(window), [(90, 90)])  # still editing this image
    assert (session.labels.array != edited).any()
    dialogs.answers.append(QMessageBox.Discard)  # now let it go
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert window.session is not session and session.journal is None
    assert window.session.labels.array.any() and not window.isWindowModified()


def test_copy_a_models_prediction_into_the_labels_is_one_undo_step(qtbot, editing):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    z = window.current_slice()
    window.copy_prediction("A", this_slice=True)
    np.testing.assert_array_equal(session.labels.array[z], session.models["A"].prediction[z])
    assert session.labels.array.sum() == session.labels.array[z].sum() > 0
    assert not session.reviewed.any()  # a copy is not a review
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert session.labels.array.sum() == 0 and not session.labels.can_undo


def held_copy(monkeypatch, session):
    """Make the whole-volume copy's comparison wait (in its worker) until ``release`` is set;
    the threads it ran in are listed."""
    release, threads = threading.Event(), []
    compare = session.labels.patches_from

    def held(*args, **kwargs):
        threads.append(threading.current_thread())
        assert release.wait(30)
        return compare(*args, **kwargs)

    monkeypatch.setattr(session.labels, "patches_from", held)
    return release, threads


def test_whole_volume_copy_runs_in_a_worker_as_one_undo_step_equal_to_the_synchronous_copy(
        qtbot, editing, monkeypatch):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:2])
    with wait_for_inference(qtbot, window):
        pass
    window.tools.set_tool("brush")
    drag(axial(window), [(60, 60), (80, 90)])  # labels of the reader's own, before the copy
    before = session.labels.array.copy()
    release, threads = held_copy(monkeypatch, session)
    window.copy_prediction("A", this_slice=False)
    assert not window.progress.isHidden() and not window.cancel_button.isHidden()  # shows it is busy
    qtbot.waitUntil(lambda: bool(threads), timeout=10000)
    assert threads[0] is not threading.main_thread()
    np.testing.assert_array_equal(session.labels.array, before)  # nothing written while it compares
    with qtbot.waitSignal(window.prediction_copied, timeout=30000) as copied:
        release.set()
    np.testing.assert_array_equal(session.labels.array, session.prediction("A"))
    assert copied.args[0] == int((before != session.prediction("A")).sum()) > 0
    assert window.cancel_button.isHidden() and not session.reviewed.any()
    counts = {slot: session.live.matrices[slot].per_slice.copy() for slot in "AB"}
    np.testing.assert_array_equal(axial(window).overlay_items["labels"].image,
                                  shown_labels(window, axial(window)))
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # one undo step takes the whole copy back
    np.testing.assert_array_equal(session.labels.array, before)
    session.copy_prediction("A")  # the synchronous copy: the same labels and counts
    np.testing.assert_array_equal(session.labels.array, session.prediction("A"))
    for slot in "AB":
        np.testing.assert_array_equal(session.live.matrices[slot].per_slice, counts[slot])


def test_a_cancelled_whole_volume_copy_changes_nothing(qtbot, editing, monkeypatch):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    release, threads = held_copy(monkeypatch, session)
    window.copy_prediction("A", this_slice=False)
    qtbot.waitUntil(lambda: bool(threads), timeout=10000)
    qtbot.mouseClick(window.cancel_button, Qt.LeftButton)
    with qtbot.waitSignal(window.prediction_copied, timeout=30000) as copied:
        release.set()
    assert copied.args == [-1] and "cancelled" in window.statusBar().currentMessage()
    assert not session.labels.array.any() and not session.labels.can_undo and not window.isWindowModified()


def slab_by_slab(monkeypatch):
    """Whole-volume copies compared and written one slice a slab, one slab per event-loop turn."""
    from segview.core import labels as labels_module
    from segview.gui import main_window

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 240 * 240)
    monkeypatch.setattr(main_window, "COPY_PIECE_S", 0.0)


def watch_copy(window, then=None):
    """A zero-interval timer that ticks while the copy is written: the slabs written at
    each tick (``then(done)`` at each, e.g. to click Cancel)."""
    from PySide6.QtCore import QTimer

    seen, timer = [], QTimer(window)
    timer.setInterval(0)

    def tick() -> None:
        if window._copy_write is not None:
            seen.append(window._copy_write.done)
            if then is not None:
                then(window._copy_write.done)
    timer.timeout.connect(tick)
    timer.start()
    return seen, timer


def test_a_whole_volume_copy_is_written_a_slab_per_event_loop_turn_as_one_undo_step(qtbot, editing, monkeypatch):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    slab_by_slab(monkeypatch)
    before, refused = session.labels.array.copy(), []
    values = []
    window.progress.valueChanged.connect(values.append)

    def meanwhile(done: int) -> None:
        if done == 3 and not refused:  # the tools are off while it writes: an undo is refused
            window.undo()
            refused.append((window.statusBar().currentMessage(), session.labels.can_undo))
            window.save()  # and so is a save (half a copy never reaches a file)
            refused.append(window.statusBar().currentMessage())
    seen, timer = watch_copy(window, meanwhile)
    with qtbot.waitSignal(window.prediction_copied, timeout=30000) as copied:
        window.copy_prediction("A", this_slice=False)
    timer.stop()
    assert len(set(seen)) >= 6 and seen == sorted(seen)  # the event loop ran between the slabs
    assert {3, 6} <= set(values) and max(values) == 12     # the progress bar went along
    assert "copy is being written" in refused[0][0] and refused[0][1] is False
    assert "copy is being written" in refused[1]
    np.testing.assert_array_equal(session.labels.array, session.prediction("A"))
    assert copied.args[0] == int((before != session.prediction("A")).sum()) > 0
    assert window.cancel_button.isHidden() and window.progress.isHidden()
    assert session.journal.steps == 1 and session.labels.can_undo
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # one undo step takes the whole copy back
    np.testing.assert_array_equal(session.labels.array, before)
    assert not session.labels.can_undo


def test_cancel_while_a_whole_volume_copy_is_written_takes_it_back_exactly(qtbot, editing, monkeypatch):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    window.tools.set_tool("brush")
    drag(axial(window), [(60, 60), (80, 90)])
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    drag(axial(window), [(100, 100)])  # a step to undo and none to redo
    before, counts = session.labels.array.copy(), session.live.matrices["A"].per_slice.copy()
    slab_by_slab(monkeypatch)
    seen, timer = watch_copy(window, lambda done: done == 5 and window.cancel_button.click())
    with qtbot.waitSignal(window.prediction_copied, timeout=30000) as copied:
        window.copy_prediction("A", this_slice=False)
    timer.stop()
    assert copied.args == [-1] and "cancelled" in window.statusBar().currentMessage()
    assert 5 in seen and max(seen) < 12  # cancelled halfway, taken back piece by piece
    np.testing.assert_array_equal(session.labels.array, before)
    np.testing.assert_array_equal(session.live.matrices["A"].per_slice, counts)
    np.testing.assert_array_equal(axial(window).overlay_items["labels"].image, shown_labels(window, axial(window)))
    assert not session.labels.can_redo and session.journal.steps == 3  # the history as it was
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # the undo takes back the stroke, not the copy
    assert not session.labels.array.any()
    # Closing the image while a copy is written takes it back too, without a question. (Closed
    # between two slabs by the watching timer: a poll for "two slabs written" could miss the
    # whole copy on a busy machine, as a fresh clone's run did.)
    session.labels.redo()
    closed: list[int] = []

    def close_at_two(done: int) -> None:
        if done == 2 and not closed:
            closed.append(done)
            window.discard_session()
    seen, timer = watch_copy(window, close_at_two)
    window.copy_prediction("A", this_slice=False)
    qtbot.waitUntil(lambda: bool(closed), timeout=30000)
    timer.stop()
    np.testing.assert_array_equal(session.labels.array, before)
    assert window._copy_write is None and session.copying is None


def test_a_whole_volume_copy_is_refused_when_the_labels_changed_meanwhile(qtbot, editing, dialogs, monkeypatch):
    window, session = editing, editing.session
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    release, threads = held_copy(monkeypatch, session)
    window.copy_prediction("A", this_slice=False)
    qtbot.waitUntil(lambda: bool(threads), timeout=10000)
    window.tools.set_tool("brush")
    drag(axial(window), [(60, 60)])  # the window stays live: a stroke while it compares
    stroke = session.labels.array.copy()
    with qtbot.waitSignal(window.prediction_copied, timeout=30000) as copied:
        release.set()
    assert copied.args == [-1] and "changed while the copy ran" in dialogs[-1][1]
    assert "changed while the copy ran" in window.statusBar().currentMessage()
    np.testing.assert_array_equal(session.labels.array, stroke)


def test_labels_copied_into_new_labels_take_the_checkpoints_classes(qtbot, window):
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume))  # no class table of its own
    load_models(qtbot, window, DEMO_MODELS[:1])
    with wait_for_inference(qtbot, window):
        pass
    with qtbot.waitSignal(window.prediction_copied, timeout=30000):
        window.copy_prediction("A", this_slice=False)  # Edit > Labels from model A: whole volume
    np.testing.assert_array_equal(window.session.labels.array, window.session.models["A"].prediction)
    assert not window.session.reviewed.any()  # a copy marks nothing reviewed
    names = [c.name for c in window.session.classes]
    assert names == ["background", "right ventricle", "myocardium", "left ventricle"]
    assert [window.tools.class_choice.itemText(n) for n in range(window.tools.class_choice.count())] == names[1:]
    assert "left ventricle" in window.legend.text()


def test_open_labels_loads_the_whole_file_whatever_the_brush_settings(qtbot, editing, tmp_path):
    window, view, session = editing, axial(editing), editing.session
    case = make_phantom("cardiac", 0)
    reference = ReviewSession.open(case.volume, labels=case.labels.copy(), classes=list(case.classes))
    for z in (2, 7):
        reference.mark_reviewed(z)
    reference.save(tmp_path / "reference.nii.gz")  # the labels and their review state
    reference.close()
    window.tools.set_tool("brush")
    window.tools.policy_choice.setCurrentIndex(1)  # paint over background only
    window.tools.threshold.setChecked(True)  # and only within a narrow intensity range
    window.tools.low.setValue(400)
    window.tools.high.setValue(500)
    drag(view, [(60, 60), (80, 90)])
    window.open_labels(tmp_path / "reference.nii.gz")
    qtbot.waitUntil(lambda: session.labels_path == tmp_path / "reference.nii.gz", timeout=20000)
    np.testing.assert_array_equal(session.labels.array, case.labels)  # every voxel, not only where the brush may
    assert np.flatnonzero(session.reviewed).tolist() == [2, 7]
    np.testing.assert_array_equal(view.overlay_items["labels"].image, shown_labels(window, view))
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # one step: back to the stroke
    assert not session.reviewed.any() and session.labels.array.sum() < case.labels.sum()


def test_labels_of_another_grid_are_refused_and_the_labels_stay(qtbot, editing, dialogs, tmp_path):
    window, session = editing, editing.session
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])
    edited = session.labels.array.copy()
    other = make_phantom("lung", 0)
    save_labels(tmp_path / "lung.nii.gz", other.labels, other.volume, other.classes)
    with qtbot.waitSignal(window.load_failed, timeout=20000):
        window.open_labels(tmp_path / "lung.nii.gz")
    assert dialogs[-1][0] == "critical"
    np.testing.assert_array_equal(session.labels.array, edited)
    assert session.labels_path is None and [c.name for c in session.classes][1] == "right ventricle"


def test_export_metrics_csv(qtbot, demo, monkeypatch, tmp_path):
    load_models(qtbot, demo, DEMO_MODELS[1:], "B")
    with wait_for_inference(qtbot, demo):
        pass
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *args, **kw: (str(tmp_path / "m.csv"), ""))
    demo.session.mark_reviewed(3)
    demo.export_metrics()
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert list(rows[0]) == ["model", "scope", "slice", "reviewed", "class", "dice", "iou", "pixel_error"]
    volume = [r for r in rows if r["scope"] == "volume (reviewed slices)" and r["class"] == "left ventricle"]
    scores = demo.session.scores("B")
    assert float(volume[0]["dice"]) == pytest.approx(scores.dice[3], abs=1e-6)
    assert len([r for r in rows if r["scope"] == "slice"]) == 12 * 4  # 3 classes and the mean


def test_reopening_after_a_crash_offers_the_unsaved_edits(qtbot, window, dialogs, monkeypatch):
    asked = QMessageBox.question
    classes_shown = []  # the class list as the question is asked: filled, not empty behind it

    def question(*args, **kwargs):
        choice = window.tools.class_choice
        classes_shown.append([choice.itemText(n) for n in range(choice.count())])
        return asked(*args, **kwargs)

    monkeypatch.setattr(QMessageBox, "question", question)
    case = make_phantom("cardiac", 0)
    original = case.labels.copy()
    crashed = ReviewSession.open(case.volume, labels=case.labels)  # the demo's image, by content
    with crashed.labels.step():
        crashed.labels.paint(5, [(100, 100), (120, 130)], 6.0, 2)
    crashed.labels.clear_slice(2)
    crashed.mark_reviewed(4)
    expected, reviewed = crashed.labels.array.copy(), crashed.reviewed.copy()
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    dialogs.answers.append(QMessageBox.Yes)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert any(kind == "question" and "3 edit step" in text and "1 slice reviewed, 1 marked and 0 unmarked" in text
               for kind, text in dialogs)
    assert len(classes_shown) == 1 and any("left ventricle" in name for name in classes_shown[0])
    session = window.session
    np.testing.assert_array_equal(session.labels.array, expected)
    np.testing.assert_array_equal(session.reviewed, reviewed)
    assert window.isWindowModified() and session.labels.can_undo
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # each restored step is one: first the mark
    np.testing.assert_array_equal(session.labels.array, expected)
    assert not session.reviewed.any()
    for _ in range(2):  # then Clear slice, then the stroke
        qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(session.labels.array, original)
    assert not session.labels.can_undo


def test_a_crashed_sessions_edits_are_found_by_another_path_and_again_by_recover_edits(
        qtbot, window, dialogs, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from segview.core.dicom import write_dicom_series

    case = make_phantom("cardiac", 6)
    write_dicom_series(case.volume, tmp_path / "study" / "cine")
    (tmp_path / "link").symlink_to(tmp_path / "study")
    crashed = ReviewSession.open(tmp_path / "study" / "cine")
    with crashed.labels.step():
        crashed.labels.paint(4, [(100, 100), (110, 120)], 5.0, 1)
    crashed.mark_reviewed(4)
    expected = crashed.labels.array.copy()
    crashed.close()  # unsaved: the journal stays behind, as after a kill -9
    monkeypatch.chdir(tmp_path)
    dialogs.answers.append(QMessageBox.No)  # not now
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image("link/cine")  # the same series by another path
    assert [kind for kind, _ in dialogs] == ["question"] and "2 edit step" in dialogs[0][1]
    session = window.session
    assert not session.labels.array.any() and not window.isWindowModified()
    offered = []

    def get_item(parent, title, label, items, *args):
        offered.extend(items)
        return items[0], True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    recover = next(a for a in window.menuBar().actions()[0].menu().actions() if a.text() == "Recover &edits...")
    recover.trigger()
    assert len(offered) == 1 and offered[0].startswith("2 step(s); 1 slice reviewed, 1 marked and 0 unmarked")
    np.testing.assert_array_equal(session.labels.array, expected)
    assert np.flatnonzero(session.reviewed).tolist() == [4] and window.isWindowModified()


def test_dicom_seg_export_is_offered_for_dicom_images_only(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from segview.core.dicom import write_dicom_series
    from segview.core.dicomseg import read_dicom_seg

    case = make_phantom("cardiac", 5)
    images = write_dicom_series(case.volume, tmp_path / "mr", series_description="SA cine ED")
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert not window.seg_action.isEnabled() and "loaded from DICOM" in window.seg_action.toolTip()
    save_labels(tmp_path / "labels.nii.gz", case.labels, case.volume, case.classes)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path / "mr", tmp_path / "labels.nii.gz")
    assert window.seg_action.isEnabled()
    proposed = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, title, start, *_: proposed.append(start) or ("", ""))
    window.export_dicom_seg()
    assert Path(proposed[0]).name == "SA_cine_ED_seg.dcm"  # the series' own name: two series, two files
    with qtbot.waitSignal(window.seg_exported, timeout=30000):
        window.export_dicom_seg_to(tmp_path / "seg.dcm")
    session = window.session
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg.dcm", session.volume, session.classes), case.labels)
    # Send SEG to PACS sends the SEG exported while the labels are as it holds them; edited, a new
    # one, the next instance of the same series (a tester's every send was a new series on the PACS).
    sent, offered = [], []
    monkeypatch.setattr("segview.gui.pacs_dialog.send_to_pacs",
                        lambda parent, files, images: sent.extend(files) or offered.append(images) or 1)
    window.send_seg_to_pacs()
    window.send_seg_to_pacs()
    assert sent == [tmp_path / "seg.dcm"] * 2
    # The image series goes with it, to be sent too where the PACS lacks it: its files, as read.
    series = pydicom.dcmread(images[0], stop_before_pixels=True)
    assert (offered[0].uid, offered[0].description) == (series.SeriesInstanceUID, "SA cine ED")
    assert sorted(p.resolve() for p in offered[0].files) == sorted(p.resolve() for p in images)
    session.labels.paint(2, [(40, 40)], 3.0, case.classes[1].value)
    with qtbot.waitSignal(window.seg_exported, timeout=30000):
        window.send_seg_to_pacs()
    qtbot.waitUntil(lambda: len(sent) == 3)
    window.send_seg_to_pacs()
    assert sent[3] == sent[2] != sent[0] and sent[2].is_file()
    first, revised = (pydicom.dcmread(str(p)) for p in (sent[0], sent[2]))
    assert revised.SeriesInstanceUID == first.SeriesInstanceUID and revised.SOPInstanceUID != first.SOPInstanceUID
    assert (first.InstanceNumber, revised.InstanceNumber) == (1, 2)
    # The SEG opens back as the labels (File > Open labels): its classes, nothing reviewed, saved as a label file.
    session.labels.array[:] = 0
    with qtbot.waitSignal(window.session_changed, timeout=20000):
        window.open_labels(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(window.session.labels.array, case.labels)
    assert window.session.labels_path is None and not window.session.reviewed.any()


def test_saving_the_demos_labels_while_opening_a_dicom_folder_is_not_proposed_in_that_folder(
        qtbot, demo, dialogs, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from segview.core.dicom import write_dicom_series
    from segview.gui.settings import remember_folder

    work = tmp_path / "work"
    work.mkdir()
    remember_folder(work)  # where the person last chose a file
    series = tmp_path / "lung" / "series"
    write_dicom_series(make_phantom("lung", 3).volume, series)
    window = demo
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])  # unsaved labels of the demo (an image with no folder of its own)
    proposed = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_, **__: str(series))
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, title, path, *_: proposed.append(path) or ("", ""))
    dialogs.answers.append(QMessageBox.Save)
    window.choose_dicom_folder()
    qtbot.waitUntil(lambda: bool(proposed), timeout=60000)
    assert Path(proposed[0]).parent == work  # not the series folder being opened
    assert window.session is not None and window.session.volume.meta.get("source", "").startswith("demo")


def test_with_empty_labels_the_metrics_say_why_every_score_is_zero(qtbot, editing):
    window = editing
    with wait_for_inference(qtbot, window):
        load_models(qtbot, window, DEMO_MODELS[:1], "A")
    qtbot.waitUntil(lambda: window.metrics.table.isVisible())
    assert window.metrics.empty_labels.isVisible() and "labels are empty" in window.metrics.empty_labels.text()
    window.tools.set_tool("brush")
    drag(axial(window), [(50, 50)])
    qtbot.waitUntil(lambda: not window.metrics.empty_labels.isVisible())
    window.session.labels.undo()
    qtbot.waitUntil(lambda: window.metrics.empty_labels.isVisible())


def test_a_brush_stroke_held_back_in_part_says_what_paint_over_kept(qtbot, editing):
    """A stroke under "background only" across another class painted around it without a
    word (only a stroke that changed nothing said why)."""
    window, view, session = editing, axial(editing), editing.session
    window.tools.set_tool("brush")
    drag(view, [(60, 60), (60, 80)])
    painted = session.labels.array.copy()
    window.tools.policy_choice.setCurrentIndex(1)  # paint over background only
    window.tools.class_choice.setCurrentIndex(1)
    drag(view, [(50, 70), (70, 70)])  # across the first stroke
    assert (session.labels.array != painted).any()
    message = window.statusBar().currentMessage()
    assert message.startswith("Brush: ") and "kept by 'Paint over: background only'" in message
    assert int(message.split(": ")[1].split()[0]) > 0


def test_the_eraser_and_clear_slice_say_what_paint_over_kept(qtbot, editing):
    """A tester's eraser under "background only" and Clear slice under an intensity range
    changed nothing, or less than the slice, without a word."""
    window, view, session = editing, axial(editing), editing.session
    z = window.current_slice()
    window._slice_operation("clear")
    assert window.statusBar().currentMessage() == f"Slice {z + 1} holds no labels to clear"
    window.tools.set_tool("brush")
    drag(view, [(60, 60), (60, 80)])
    painted = session.labels.array.copy()
    window.tools.policy_choice.setCurrentIndex(1)  # paint over background only
    window.tools.set_tool("eraser")
    drag(view, [(60, 60), (60, 80)])
    np.testing.assert_array_equal(session.labels.array, painted)
    message = window.statusBar().currentMessage()
    assert message.startswith("Eraser changed nothing: ") and "kept by 'Paint over: background only'" in message
    kept = int(message.split(": ")[1].split()[0])
    assert 0 < kept <= int((painted[z] > 0).sum())
    window._slice_operation("clear")
    np.testing.assert_array_equal(session.labels.array, painted)
    assert window.statusBar().currentMessage() == (f"Clear slice on slice {z + 1}: 0 voxels changed: "
                                                   f"{int((painted[z] > 0).sum())} "
                                                   "voxels kept by 'Paint over: background only'.")
    window.tools.policy_choice.setCurrentIndex(0)  # everything: the slice is cleared, and says so
    window._slice_operation("clear")
    assert not session.labels.array[z].any()
    assert window.statusBar().currentMessage() == (f"Clear slice on slice {z + 1}: "
                                                   f"{int((painted[z] > 0).sum())} voxels changed")
    fill_between(qtbot, window)  # nothing labelled on two sides: nothing to fill, said
    assert window.statusBar().currentMessage().startswith(
        "Fill between slices: no class is labelled on two slices with slices without it between them")
    session.labels.array[z - 2, 50:60, 50:60] = 1
    session.labels.array[z + 2, 50:60, 50:60] = 1
    before = session.labels.array.copy()
    fill_between(qtbot, window)
    changed = int((session.labels.array != before).sum())
    filled = [int(z) for z in np.flatnonzero((session.labels.array != before).any(axis=(1, 2)))]
    assert filled == [z - 1, z, z + 1]  # which slices it filled, said (a tester could not tell)
    assert changed > 0 and window.statusBar().currentMessage() == (
        f"Fill between slices (slices {z}, {z + 1}, {z + 2}): {changed} voxels changed")


def test_protected_classes_stay_ticked_when_other_labels_are_opened(qtbot, demo, tmp_path):
    """A tester protected the left ventricle, opened labels with the same classes: the list
    showed nothing ticked while the brush still kept off the ventricle."""
    window, session = demo, demo.session
    tools = window.tools
    tools.policy_choice.setCurrentIndex(2)  # all but protected classes
    items = {tools.protected.item(n).text(): tools.protected.item(n) for n in range(tools.protected.count())}
    items["left ventricle"].setCheckState(Qt.CheckState.Checked)
    lv = next(c.value for c in session.classes if c.name == "left ventricle")
    assert session.labels.policy.protected == {lv}
    path = tmp_path / "same.nii.gz"
    save_labels(path, session.labels.array, session.volume, session.classes)
    with qtbot.waitSignal(window.session_changed, timeout=20000):
        window.open_labels(path)
    ticked = [tools.protected.item(n).text() for n in range(tools.protected.count())
              if tools.protected.item(n).checkState() == Qt.CheckState.Checked]
    assert ticked == ["left ventricle"] and session.labels.policy.protected == {lv}
    items = {tools.protected.item(n).text(): tools.protected.item(n) for n in range(tools.protected.count())}
    items["left ventricle"].setCheckState(Qt.CheckState.Unchecked)  # what shows is what holds
    assert session.labels.policy.protected == frozenset()


def test_a_grow_that_reaches_the_edge_of_the_image_asks_before_it_floods(qtbot, editing, dialogs):
    """A tester's Grow, with no intensity range to stop it, took a whole slice and the
    myocardium on it, unasked."""
    from PySide6.QtWidgets import QMessageBox

    window, view, session = editing, axial(editing), editing.session
    labels = session.labels
    window.tools.set_tool("brush")
    window.tools.radius.setValue(4.0)
    drag(view, [(40, 40), (40, 41)])  # another class's voxels, in the way
    window.tools.class_choice.setCurrentIndex(1)
    before = labels.array.copy()
    window.tools.threshold.setChecked(True)  # a range holding every intensity: the flood of the whole slice
    window.tools.low.setValue(-1e5)
    window.tools.high.setValue(1e5)
    window.tools.set_tool("grow")
    dialogs.answers.append(QMessageBox.StandardButton.No)
    drag(view, [(90, 90)])
    qtbot.waitUntil(lambda: any(kind == "question" for kind, _ in dialogs), timeout=20000)
    text = next(text for kind, text in dialogs if kind == "question")
    assert "reaching the edge of the image" in text and "taken from other classes" in text
    assert dialogs.defaults[-1] == QMessageBox.StandardButton.No
    np.testing.assert_array_equal(labels.array, before)  # not applied: nothing changed
    assert "not applied, as you chose" in window.statusBar().currentMessage()
    dialogs.answers.append(QMessageBox.StandardButton.Yes)
    drag(view, [(90, 90)])
    qtbot.waitUntil(lambda: (labels.array[view.index] == window.tools.active_class()).all(), timeout=20000)
    # In 3D the region stops at its 80 mm box, inside the image: that edge is asked about too (a tester).
    window.tools.grow_3d.setChecked(True)
    dialogs.answers.append(QMessageBox.StandardButton.No)
    asked = sum(kind == "question" for kind, _ in dialogs)
    before = labels.array.copy()
    drag(view, [(90, 90)])
    qtbot.waitUntil(lambda: sum(kind == "question" for kind, _ in dialogs) > asked, timeout=20000)
    assert "reaching the edge of the box it grows in" in dialogs[-1][1] and "untick Grow in 3D" in dialogs[-1][1]
    np.testing.assert_array_equal(labels.array, before)


def fill_between(qtbot, window) -> int:
    """Click Fill between slices and wait until it is written: the voxels it changed (-1:
    none, cancelled or refused)."""
    button = next(b for b in window.tools.findChildren(QPushButton) if b.text() == "Fill between slices")
    with qtbot.waitSignal(window.slices_filled, timeout=30000) as filled:
        qtbot.mouseClick(button, Qt.LeftButton)
    return filled.args[0]


def held_fill(monkeypatch):
    """Make the next Fill between slices wait in its worker until ``release`` is set (then
    run on, so a Cancel meanwhile stops it at its first slice); the threads it ran in are
    listed. Later fills run at once."""
    from segview.session.review import FillJob

    release, threads = threading.Event(), []
    fill = FillJob.__call__

    def held(job, *args, **kwargs):
        threads.append(threading.current_thread())
        assert len(threads) > 1 or release.wait(30)
        return fill(job, *args, **kwargs)

    monkeypatch.setattr(FillJob, "__call__", held)
    return release, threads


def labelled_apart(labels, classes) -> None:
    """Two classes, each on two slices with empty slices between (one undo step): the
    first on slices 1 and 9, the second on 2 and 6; slices 2 to 8 to fill."""
    first, second = [c.value for c in classes if c.value][:2]
    with labels.step("squares"):
        for z, rows, cols, value in ((1, (40, 80), (40, 80), first), (9, (45, 85), (40, 80), first),
                                     (2, (100, 120), (100, 130), second), (6, (100, 125), (100, 125), second)):
            region = (slice(z, z + 1), slice(*rows), slice(*cols))
            labels.write(region, np.full((1, rows[1] - rows[0], cols[1] - cols[0]), value, np.uint8))


def test_fill_between_slices_runs_in_a_worker_and_fills_as_labelmap_does_in_one_undo_step(qtbot, editing, monkeypatch):
    """It ran on the main thread: 2-4 s of a frozen window on a 300-slice CT. The worker's
    result is LabelMap.fill_between_slices's, written as one undo step, with progress."""
    from segview.core.labels import LabelMap

    window, session = editing, editing.session
    labelled_apart(session.labels, session.classes)
    before, steps = session.labels.array.copy(), session.journal.steps
    expected = LabelMap(before.copy(), session.volume.spacing)
    expected.fill_between_slices()
    values: list[int] = []
    window.progress.valueChanged.connect(values.append)
    release, threads = held_fill(monkeypatch)
    with qtbot.waitSignal(window.slices_filled, timeout=30000) as filled:
        window.tools.operation.emit("fill_between")
        assert not window.progress.isHidden() and not window.cancel_button.isHidden()  # shows it is busy
        qtbot.waitUntil(lambda: bool(threads), timeout=10000)
        assert threads[0] is not threading.main_thread()
        np.testing.assert_array_equal(session.labels.array, before)  # nothing written while it fills
        release.set()
    np.testing.assert_array_equal(session.labels.array, expected.array)
    assert filled.args[0] == int((before != expected.array).sum()) > 0
    assert max(values) == 7 and 1 in values  # slices filled so far, of seven
    qtbot.waitUntil(lambda: window.cancel_button.isHidden() and window.progress.isHidden(), timeout=10000)
    assert window.statusBar().currentMessage().startswith(f"Fill between slices (7 slices (3 to 9)): {filled.args[0]} ")
    assert session.journal.steps == steps + 1
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)  # one undo step takes the whole fill back
    np.testing.assert_array_equal(session.labels.array, before)
    assert session.labels.undo_step.what == "squares"


def test_a_cancelled_fill_between_slices_leaves_the_labels_and_the_undo_history_as_they_were(
        qtbot, editing, monkeypatch):
    window, session = editing, editing.session
    window.tools.set_tool("brush")
    drag(axial(window), [(150, 150)])
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    labelled_apart(session.labels, session.classes)  # a step to undo and none to redo
    before, steps, undo = session.labels.array.copy(), session.journal.steps, session.labels.undo_step
    release, threads = held_fill(monkeypatch)
    with qtbot.waitSignal(window.slices_filled, timeout=30000) as filled:
        window.tools.operation.emit("fill_between")
        qtbot.waitUntil(lambda: bool(threads), timeout=10000)
        qtbot.mouseClick(window.cancel_button, Qt.LeftButton)  # while it fills
        release.set()
    assert filled.args == [-1] and window.statusBar().currentMessage() == \
        "Fill between slices cancelled: nothing changed"
    np.testing.assert_array_equal(session.labels.array, before)
    assert session.labels.undo_step is undo and not session.labels.can_redo and session.journal.steps == steps
    # Cancelled while it is written, a slice per event-loop turn: taken back, piece by piece;
    # an edit meanwhile is refused (the undo step open is the fill's).
    slab_by_slab(monkeypatch)
    refused: list = []

    def meanwhile(done: int) -> None:
        if done == 2 and not refused:
            window.undo()
            refused.append((window.statusBar().currentMessage(), session.labels.array.copy()))
            window.cancel_button.click()
    seen, timer = watch_copy(window, meanwhile)
    with qtbot.waitSignal(window.slices_filled, timeout=30000) as filled:
        window.tools.operation.emit("fill_between")
    timer.stop()
    assert filled.args == [-1] and 2 in seen and max(seen) < 7
    assert "a fill between slices is being written" in refused[0][0]
    assert (refused[0][1] != before).any()  # two slices were written when it was cancelled
    np.testing.assert_array_equal(session.labels.array, before)
    np.testing.assert_array_equal(axial(window).overlay_items["labels"].image, shown_labels(window, axial(window)))
    assert session.labels.undo_step is undo and not session.labels.can_redo and session.journal.steps == steps


def test_a_fill_between_slices_is_refused_when_the_labels_changed_while_it_ran(qtbot, editing, dialogs, monkeypatch):
    window, session = editing, editing.session
    labelled_apart(session.labels, session.classes)
    release, threads = held_fill(monkeypatch)
    with qtbot.waitSignal(window.slices_filled, timeout=30000) as filled:
        window.tools.operation.emit("fill_between")
        qtbot.waitUntil(lambda: bool(threads), timeout=10000)
        window.tools.set_tool("brush")
        drag(axial(window), [(150, 150)])  # the labels change while it fills
        edited = session.labels.array.copy()
        release.set()
    assert filled.args == [-1]
    assert any("labels changed while Fill between slices ran" in text for kind, text in dialogs if kind == "warning")
    # A tester's status bar went on saying "Filling between slices..." after the refusal.
    assert "nothing was filled" in window.statusBar().currentMessage()
    np.testing.assert_array_equal(session.labels.array, edited)
    assert session.labels.undo_step.what == "brush stroke"


def test_fill_between_slices_with_nothing_to_fill_says_why(qtbot, editing):
    """It said only 'Fill between slices: 0 voxels changed' (a tester, after marking the empty slices reviewed)."""
    fill_between(qtbot, editing)
    message = editing.statusBar().currentMessage()
    assert "no class is labelled on two slices with slices without it between them" in message
    assert not editing.session.labels.can_undo


def test_fill_between_slices_says_when_the_shapes_lie_too_far_apart_to_blend(qtbot, editing):
    """A tester painted a blob on slice 35 of the lung phantom, seven slices above a two-voxel
    tail of the lesion across the lung: nothing was filled, and the status bar said no
    unlabelled slice lay between two labelled ones, with six of them on screen between."""
    labels = editing.session.labels
    with labels.step():
        labels.paint(2, [(20, 20)], 1.0, 1)     # a dot in one corner ...
        labels.paint(8, [(200, 200)], 10.0, 1)  # ... a blob far away in the other
    before = labels.array.copy()
    fill_between(qtbot, editing)
    message = editing.statusBar().currentMessage()
    assert "no class is labelled on two slices" not in message
    assert message.startswith("Fill between slices changed nothing: ") and "slices 3 and 9" in message
    np.testing.assert_array_equal(labels.array, before)


def test_the_slice_buttons_leave_the_keys_to_the_view(qtbot, demo):
    """A tester clicked Clear slice, then Up to go on: the button had taken the keys."""
    from PySide6.QtWidgets import QPushButton

    view = demo.workspace.active_view()
    demo.activateWindow()
    view.setFocus()
    qtbot.waitUntil(view.hasFocus, timeout=10000)
    z = view.index
    button = next(b for b in demo.tools.findChildren(QPushButton) if b.text() == "Clear slice")
    qtbot.mouseClick(button, Qt.LeftButton)
    assert not demo.session.labels.array[z].any() and view.hasFocus()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Up)
    assert view.index == z + 1


def test_closing_the_window_while_recovery_is_asked_leaves_the_edits_set_aside(qtbot, window, monkeypatch):
    """`segview --demo --screenshot` after a crash: the capture quit the app while the question
    was open, and the answer then met no session (AttributeError on None)."""
    case = make_phantom("cardiac", 0)
    crashed = ReviewSession.open(case.volume, labels=case.labels)  # the demo's image, by content
    crashed.mark_reviewed(4)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    asked = []

    def question(parent, title, text, *_):
        asked.append(title)
        window.close()  # the app quits while the dialog is open
        return QMessageBox.Yes

    monkeypatch.setattr(QMessageBox, "question", question)
    errors = []
    monkeypatch.setattr("sys.excepthook", lambda *exc: errors.append(exc))
    window.open_demo("cardiac")
    qtbot.waitUntil(lambda: bool(asked), timeout=30000)
    qtbot.wait(200)
    assert asked == ["Restore unsaved edits?"] and window.session is None and not errors
    from segview.core.journal import set_aside_journals

    assert [j.recovered.steps for j in set_aside_journals(crashed.key)] == [1]  # File > Recover edits... has them


def test_full_stop_and_comma_choose_the_next_and_previous_class_round_the_list(qtbot, editing):
    window, tools = editing, editing.tools
    names = [c.name for c in window.session.classes if c.value]
    start = tools.class_choice.currentIndex()
    qtbot.keyClick(window, Qt.Key_Period)
    assert tools.class_choice.currentIndex() == (start + 1) % len(names)
    assert window.statusBar().currentMessage() == f"Class: {names[(start + 1) % len(names)]}"
    view = axial(window)
    qtbot.keyClick(window, Qt.Key_B)
    drag(view, [(60, 60)])  # the brush paints the class chosen from the keyboard
    assert set(np.unique(window.session.labels.array)) == {0, tools.active_class()}
    for _ in range(2):
        qtbot.keyClick(window, Qt.Key_Comma)
    assert tools.class_choice.currentIndex() == (start - 1) % len(names)


def test_fill_between_slices_names_a_class_labelled_on_one_side_only(qtbot, editing):
    """A class on one side of the gap only is not extended (where it ends is unknown): the
    status bar said only how many voxels the other classes filled."""
    labels, classes = editing.session.labels, editing.session.classes
    both, one = [c for c in classes if c.value][:2]
    labels.array[3, 50:60, 50:60] = both.value
    labels.array[7, 50:60, 50:60] = both.value
    labels.array[3, 20:30, 20:30] = one.value
    fill_between(qtbot, editing)
    assert (labels.array[4:7] == both.value).any() and not (labels.array[4:7] == one.value).any()
    message = editing.statusBar().currentMessage()
    assert message.startswith("Fill between slices (slices 5, 6, 7): ")
    assert message.endswith(f". Not extended, labelled on one side only: {one.name}")
    why = editing.statusBar().toolTip()  # the whole story, on hover
    assert why.startswith(message) and why.endswith(f"not extended into it (where it ends is unknown: draw its last "
                                                    f"piece to fill up to it): {one.name} (between slices 4 and 8)")


def test_fill_between_slices_names_three_one_sided_classes_within_the_status_bar(qtbot, editing):
    """Three classes left out used to run past the end of the bar on a 1600-pixel window:
    the bar names them; which gaps, and why, are in its tooltip and the button's."""
    window, labels = editing, editing.session.labels
    window.resize(1600, 1000)
    first, second, third = (c for c in window.session.classes if c.value)
    for z, present in ((1, first), (5, second), (9, third)):  # each on one slice: each left out
        labels.array[z, 20:40, 60:90] = present.value
    fill_between(qtbot, window)
    bar = window.statusBar()
    message = bar.currentMessage()
    assert message.endswith(f"Not extended, labelled on one side only: {first.name}, {second.name}, {third.name}")
    assert bar.fontMetrics().horizontalAdvance(message) < bar.width() - 40  # room for the size grip and margins
    assert f"{second.name} (between slices 2 and 6, between slices 6 and 10)" in bar.toolTip()
    button = next(b for b in window.tools.findChildren(QPushButton) if b.text() == "Fill between slices")
    assert "labelled on one side of a gap only is not extended" in button.toolTip()  # there when wanted


def test_fill_between_slices_fills_each_class_between_its_own_slices_in_one_undo_step(qtbot, editing):
    """A radiologist's liver on slices 3, 7 and 11 and a kidney on slice 5 across its edge:
    the kidney's slice broke the liver's gap, the liver was filled from 7 to 11 only, and the
    status bar named it as labelled on one side. Each class follows its own slices now; the
    kidney, on one slice, is named; Ctrl+Z takes the whole fill back."""
    window, labels = editing, editing.session.labels
    liver, kidney = [c for c in window.session.classes if c.value][:2]
    for z in (2, 6, 10):
        labels.array[z, 40:80, 40:80] = liver.value
    labels.array[4, 50:70, 70:90] = kidney.value
    tools = window.tools
    tools.policy_choice.setCurrentIndex(2)  # all but protected classes, the liver protected: still filled
    next(tools.protected.item(n) for n in range(tools.protected.count())
         if tools.protected.item(n).text() == liver.name).setCheckState(Qt.CheckState.Checked)
    assert labels.policy.protected == {liver.value}
    before = labels.array.copy()
    fill_between(qtbot, window)
    for z in (3, 4, 5, 7, 8, 9):  # onto background only: the kidney's voxels stay
        expected = before[z].copy()
        expected[40:80, 40:80][expected[40:80, 40:80] == 0] = liver.value
        np.testing.assert_array_equal(labels.array[z], expected, err_msg=f"slice {z}")
    message = window.statusBar().currentMessage()
    assert message.startswith("Fill between slices (6 slices (4 to 10)): ")
    assert message.endswith(f". Not extended, labelled on one side only: {kidney.name}")
    assert f"{kidney.name} (between slices 3 and 5, between slices 5 and 7)" in window.statusBar().toolTip()
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    np.testing.assert_array_equal(labels.array, before)
    assert not labels.can_undo
