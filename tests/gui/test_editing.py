"""Correcting labels in the window: mouse strokes, live metrics, undo, save, recovery."""
import csv

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from segview.core.io import load_labels, save_labels
from segview.core.journal import Journal, journal_path
from segview.core.labels import LabelMap
from segview.core.phantoms import make_phantom
from segview.resources import DEMO_MODELS


def widget_point(view, row, col):
    """Viewport coordinates of the centre of displayed pixel (row, col)."""
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    scene = view.box.mapViewToScene(QPointF((col + 0.5) * col_mm, (row + 0.5) * row_mm))
    return view.mapFromScene(scene)


def drag(view, pixels, modifiers=Qt.NoModifier):
    """Press at the first displayed pixel, move through the others, release at the last.
    pyqtgraph takes at most 100 mouse moves a second, so the moves are 15 ms apart."""
    viewport = view.viewport()
    points = [QPointF(widget_point(view, r, c)) for r, c in pixels]

    def send(kind, point, button, buttons):
        event = QMouseEvent(kind, point, QPointF(viewport.mapToGlobal(point)), button, buttons, modifiers)
        QApplication.sendEvent(viewport, event)
        QTest.qWait(15)

    send(QEvent.MouseMove, points[0], Qt.NoButton, Qt.NoButton)
    send(QEvent.MouseButtonPress, points[0], Qt.LeftButton, Qt.LeftButton)
    for point in points[1:]:
        send(QEvent.MouseMove, point, Qt.NoButton, Qt.LeftButton)
    send(QEvent.MouseButtonRelease, points[-1], Qt.LeftButton, Qt.NoButton)


def distance_to_path_mm(view, pixels):
    """(rows, cols) distance in mm of every displayed pixel to the polyline through pixels."""
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    rows, cols = view.image_item.image.shape
    yy, xx = np.mgrid[0:rows, 0:cols] * np.array([row_mm, col_mm])[:, None, None]
    best = np.full((rows, cols), np.inf)
    for (r0, c0), (r1, c1) in zip(pixels, pixels[1:]):
        for t in np.linspace(0, 1, 400):
            y, x = (r0 + t * (r1 - r0)) * row_mm, (c0 + t * (c1 - c0)) * col_mm
            best = np.minimum(best, np.hypot(yy - y, xx - x))
    return best


@pytest.fixture
def editing(qtbot, demo):
    demo.label_map.array[:] = 0  # start from empty labels: every painted voxel is the test's
    demo.label_map.listeners  # noqa: B018 - the window already listens
    demo.viewer.views["axial"].redraw()
    return demo


def test_a_mouse_drag_paints_a_gapless_stroke_and_ctrl_z_takes_it_back(qtbot, editing):
    window, view = editing, editing.viewer.views["axial"]
    window.tools.set_tool("brush")
    window.tools.radius.setValue(3.0)
    z = view.index
    path = [(40, 40), (42, 90), (100, 100)]  # displayed (row, col); far apart: no gaps allowed
    drag(view, path)
    shown = view.orientation.slice(window.labels, "axial", z)
    distance = distance_to_path_mm(view, path)
    row_mm, col_mm = view.orientation.pixel_spacing("axial", window.volume.spacing)
    slack = np.hypot(row_mm, col_mm)  # mouse positions are quantised to screen pixels
    assert (shown[distance <= 3.0 - slack] == window.tools.active_class()).all()
    assert (shown[distance > 3.0 + slack] == 0).all()
    assert window.labels.sum() == shown.sum()  # only this slice
    assert len(window.label_map._undo) == 1  # one drag, one undo step
    assert window.isWindowModified() and window.label_map.reviewed[z]
    np.testing.assert_array_equal(view.overlay_items["labels"].image, shown)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.labels.sum() == 0
    np.testing.assert_array_equal(view.overlay_items["labels"].image, 0 * shown)
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    np.testing.assert_array_equal(view.orientation.slice(window.labels, "axial", z), shown)


def test_shift_erases_and_fill_fills(qtbot, editing):
    window, view = editing, editing.viewer.views["axial"]
    window.tools.set_tool("brush")
    window.tools.radius.setValue(6.0)
    drag(view, [(60, 60), (60, 61)])
    painted = int((window.labels > 0).sum())
    drag(view, [(60, 60), (60, 61)], Qt.ShiftModifier)
    assert painted > 0 and window.labels.sum() == 0
    window.tools.set_tool("fill")
    drag(view, [(5, 5)])  # a click: the empty slice is one region
    assert (view.orientation.slice(window.labels, "axial", view.index) == window.tools.active_class()).all()


def test_metrics_panel_follows_the_stroke_for_both_models(qtbot, demo):
    for key, path in zip("AB", DEMO_MODELS):
        with qtbot.waitSignal(demo.model_loaded, timeout=30000):
            demo.load_model(path, key)
    with qtbot.waitSignal(demo.inference_finished, timeout=60000):
        pass
    view = demo.viewer.views["axial"]
    demo._show_metrics()
    table = demo.metrics.table
    before = [table.item(r, 3).text() for r in range(4)]  # mean Dice / IoU: A slice, A vol, B slice, B vol
    assert before[1] == before[3] == "\u2013 / \u2013"  # no slice reviewed yet: a dash, not 0 or 1
    assert "0 / 12 slices reviewed" == demo.metrics.reviewed.text()
    demo.tools.set_tool("eraser")
    demo.tools.radius.setValue(25.0)
    rows, cols = view.image_item.image.shape
    drag(view, [(rows // 2, cols // 2)])  # erase the heart on this slice
    qtbot.waitUntil(lambda: table.item(0, 3).text() != before[0], timeout=2000)
    assert "1 / 12 slices reviewed" == demo.metrics.reviewed.text()
    z = view.index
    for r, key in ((0, "A"), (2, "B")):
        scores = demo.live.slice_scores(key, z)
        assert table.item(r, 4).text() == f"{scores.pixel_error:.4f}"
        expected = ConfusionRecount(demo.models[key].prediction[z], demo.labels[z])
        assert scores.pixel_error == pytest.approx(expected.pixel_error)
    dice_a = demo.live.dice_along_slices("A")
    np.testing.assert_allclose(demo.metrics.curves["A"].getData()[1], dice_a)


class ConfusionRecount:
    """Independent pixel error of one slice: the fraction of pixels whose class differs."""
    def __init__(self, prediction, labels):
        self.pixel_error = float((prediction != labels).mean())


def test_save_reload_and_a_failed_save_keeps_the_edits(qtbot, editing, dialogs, tmp_path):
    window, view = editing, editing.viewer.views["axial"]
    window.tools.set_tool("brush")
    drag(view, [(50, 50), (70, 80)])
    edited = window.labels.copy()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    assert not window.save_to(blocker / "labels.nii.gz", wait=True)
    assert dialogs[-1][0] == "critical" and "kept in memory" in dialogs[-1][1]
    assert window.isWindowModified()
    np.testing.assert_array_equal(window.labels, edited)
    with qtbot.waitSignal(window.saved, timeout=20000):
        window.save_to(tmp_path / "labels.nrrd")  # in the background
    assert not window.isWindowModified() and window.labels_path == tmp_path / "labels.nrrd"
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nrrd", window.volume), edited)
    window.save_to(blocker / "labels.mha")
    qtbot.waitUntil(lambda: sum(kind == "critical" for kind, _ in dialogs) == 2, timeout=20000)
    assert "labels.mha" in dialogs[-1][1] and "kept in memory" in dialogs[-1][1]


def test_closing_with_unsaved_edits_asks_and_cancel_keeps_the_window(qtbot, editing, dialogs):
    window = editing
    window.tools.set_tool("brush")
    drag(window.viewer.views["axial"], [(50, 50)])
    dialogs.answers.append(QMessageBox.Cancel)
    assert not window.close()
    assert dialogs[-1][0] == "question" and window.label_map is not None
    dialogs.answers.append(QMessageBox.Discard)
    assert window.close()


def test_copy_a_models_prediction_into_the_labels_is_one_undo_step(qtbot, editing):
    with qtbot.waitSignal(editing.inference_finished, timeout=60000):
        editing.load_model(DEMO_MODELS[0], "A")
    z = editing.viewer.views["axial"].index
    editing.copy_prediction("A", this_slice=True)
    np.testing.assert_array_equal(editing.labels[z], editing.models["A"].prediction[z])
    assert editing.labels.sum() == editing.labels[z].sum()
    editing.undo()
    assert editing.labels.sum() == 0


def test_export_metrics_csv(qtbot, demo, monkeypatch, tmp_path):
    with qtbot.waitSignal(demo.inference_finished, timeout=60000):
        demo.load_model(DEMO_MODELS[1], "B")
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *args, **kw: (str(tmp_path / "m.csv"), ""))
    demo.label_map.set_reviewed(3)
    demo.export_metrics()
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert list(rows[0]) == ["model", "scope", "slice", "reviewed", "class", "dice", "iou", "pixel_error"]
    volume = [r for r in rows if r["scope"] == "volume (reviewed slices)" and r["class"] == "left ventricle"]
    scores = demo.live.volume_scores("B")
    assert float(volume[0]["dice"]) == pytest.approx(scores.dice[3], abs=1e-6)
    assert len([r for r in rows if r["scope"] == "slice"]) == 12 * 4  # 3 classes and the mean


def test_reopening_after_a_crash_offers_the_unsaved_edits(qtbot, window, dialogs):
    volume = make_phantom("cardiac", 0).volume
    volume.meta["source"] = "demo: cardiac phantom"
    crashed = LabelMap(make_phantom("cardiac", 0).labels.copy(), volume.spacing)
    journal = Journal.start(journal_path(volume), crashed, "key")
    crashed.paint(5, [(100, 100), (120, 130)], 6.0, 2)
    crashed.clear_slice(2)
    journal._file.close()  # the process "died": the journal stays behind
    dialogs.answers.append(QMessageBox.Yes)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert any(kind == "question" and "2 edit step" in text for kind, text in dialogs)
    np.testing.assert_array_equal(window.labels, crashed.array)
    assert window.isWindowModified() and window.label_map.can_undo


def test_dicom_seg_export_is_offered_for_dicom_images_only(qtbot, window, tmp_path):
    from segview.core.dicom import write_dicom_series
    from segview.core.dicomseg import read_dicom_seg

    case = make_phantom("cardiac", 5)
    write_dicom_series(case.volume, tmp_path / "mr")
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert not window.seg_action.isEnabled() and "loaded from DICOM" in window.seg_action.toolTip()
    save_labels(tmp_path / "labels.nii.gz", case.labels, case.volume, case.classes)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path / "mr", tmp_path / "labels.nii.gz")
    assert window.seg_action.isEnabled()
    assert window.export_dicom_seg_to(tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg.dcm", window.volume, window._editable_classes()),
                                  case.labels)
