"""The window wires core functions: open, scroll, views, window/level, errors, files."""
import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from segview.core.dicom import write_dicom_series
from segview.core.io import save_labels, save_volume
from segview.core.phantoms import cardiac_phantom, lung_phantom
from segview.gui import main_window
from segview.gui.slice_view import label_outline


def test_demo_opens_with_labels_and_scrolls(qtbot, demo):
    window = demo
    view = window.view
    assert window.volume.modality == "MR" and window.labels is not None
    n = view.num_slices()
    assert window.slice_number.text() == f"{n // 2 + 1} / {n}"
    qtbot.keyClick(view, Qt.Key_Up)
    assert view.index == n // 2 + 1 and window.slider.value() == view.index
    window.slider.setValue(0)
    assert view.index == 0 and window.slice_number.text() == f"1 / {n}"
    qtbot.keyClick(view, Qt.Key_End)
    assert view.index == n - 1
    shown = view.image_item.image
    assert shown.dtype == np.uint8 and shown.shape == window.volume.slice("axial", n - 1).shape
    overlay = view.overlay_items["labels"].image
    np.testing.assert_array_equal(overlay, window.volume.display().slice(window.labels, "axial", n - 1))


def test_wheel_scrolls_slices_and_ctrl_wheel_zooms(qtbot, demo):
    view = demo.view
    start, before = view.index, view.box.viewRange()
    centre = view.mapFromScene(view.box.mapViewToScene(view.box.viewRect().center()))
    qtbot.wait(10)
    _wheel(view, centre, -120)
    assert view.index == start - 1 and view.box.viewRange() == before
    _wheel(view, centre, 120, Qt.ControlModifier)
    assert view.index == start - 1
    after = view.box.viewRange()
    assert after[0][1] - after[0][0] < before[0][1] - before[0][0]  # zoomed in
    demo.viewer.fit()


def _wheel(widget, position, delta, modifiers=Qt.NoModifier):
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    global_position = widget.viewport().mapToGlobal(position)
    event = QWheelEvent(QPointF(position), QPointF(global_position), QPoint(0, 0), QPoint(0, delta),
                        Qt.NoButton, modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget.viewport(), event)


def test_views_switch_and_three_view_layout_keeps_each_views_slice(qtbot, demo):
    window = demo
    window.view_choice.setCurrentIndex(2)  # sagittal
    view = window.view
    assert view.view == "sagittal" and view.isVisible()
    assert not window.viewer.views["axial"].isVisible()
    assert window.slider.maximum() == view.num_slices() - 1 == window.volume.shape[2] - 1
    rows, cols = view.image_item.image.shape
    assert (rows, cols) == (window.volume.shape[0], window.volume.shape[1])
    # True aspect: the displayed rectangle is in millimetres.
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    assert rect.height() == pytest.approx(rows * window.volume.spacing[2])
    assert rect.width() == pytest.approx(cols * window.volume.spacing[1])
    assert {view.edge_items[s].textItem.toPlainText() for s in ("left", "right", "top", "bottom")} == set("APSI")

    window.viewer.set_three_views(True)
    assert all(v.isVisible() for v in window.viewer.views.values())
    axial = window.viewer.views["axial"]
    axial.setFocus()
    qtbot.waitUntil(lambda: window.view is axial)
    axial.set_slice(3)
    assert window.slice_number.text() == f"4 / {axial.num_slices()}"
    window.viewer.go_to((5, 40, 60))
    assert [v.index for v in window.viewer.views.values()] == [5, 40, 60]


def test_right_drag_sets_window_and_level(qtbot, demo):
    view = demo.view
    center, width = view.window
    view.box.window_dragged.emit(64.0, 32.0)  # the ViewBox reports right-drags as this
    new_center, new_width = view.window
    assert new_width == pytest.approx(width + 64 * width / 256)
    assert new_center == pytest.approx(center + 32 * width / 256)
    assert demo.window_values.text() == f"W {new_width:.0f}  L {new_center:.0f}"
    assert all(v.window == view.window for v in demo.viewer.views.values())
    demo.reset_view()
    assert view.window == (center, width)


def test_overlays_toggle_and_draw_as_outline(qtbot, demo):
    view = demo.view
    show, outline = demo.overlay_actions["labels"]
    qtbot.keyClick(demo, Qt.Key_1)
    assert not show.isChecked() and not view.overlay_items["labels"].isVisible()
    show.setChecked(True)
    outline.setChecked(True)
    plane = demo.volume.display().slice(demo.labels, "axial", view.index)
    np.testing.assert_array_equal(view.overlay_items["labels"].image, label_outline(plane))
    assert view.overlay_items["labels"].opacity() == 1.0


def test_label_outline_keeps_the_boundary_of_each_label():
    plane = np.zeros((6, 7), np.uint8)
    plane[1:5, 1:5] = 2
    plane[2:4, 2:4] = 3
    expected = plane.copy()
    expected[0], expected[-1], expected[:, 0], expected[:, -1] = 0, 0, 0, 0
    # Interior pixels whose 4 neighbours all share their value disappear.
    expected[2:4, 2:4] = 3  # the 2 x 2 square of 3s is all boundary
    outline = label_outline(plane)
    assert outline.dtype == np.uint8 and outline.flags.c_contiguous
    np.testing.assert_array_equal(outline, expected)
    full = np.full((4, 4), 5, np.uint8)
    inner = label_outline(full)
    assert inner[1:3, 1:3].sum() == 0 and inner[0].tolist() == [5] * 4  # the image edge is a boundary


def test_a_ct_opens_in_a_ct_window_and_presets_apply(qtbot, window, tmp_path):
    case = lung_phantom(1)
    save_volume(tmp_path / "ct.nii.gz", case.volume)
    save_labels(tmp_path / "labels.nii.gz", case.labels, case.volume, case.classes)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    assert window.view.window == (-600.0, 1500.0)  # the lung window first for CT
    bone = next(i for i, p in enumerate(window.presets) if p[0] == "Bone")
    window.window_choice.setCurrentIndex(bone)
    assert window.view.window == (400.0, 1800.0)
    assert [c.name for c in window.classes] == ["background", "infection"]
    recent = [a.text() for a in window.recent_menu.actions()]
    assert recent == [str(tmp_path / "ct.nii.gz")]
    window._show_cursor((3, 100, 120))
    message = window.statusBar().currentMessage()
    assert "voxel (120, 100, 3)" in message and f"value {case.volume.array[3, 100, 120]} HU" in message


def test_a_folder_with_several_series_asks_which_one(qtbot, window, monkeypatch, tmp_path):
    cardiac = cardiac_phantom(2).volume
    write_dicom_series(lung_phantom(2).volume, tmp_path / "a", series_description="chest", series_number=3)
    write_dicom_series(cardiac, tmp_path / "b", series_description="short axis", series_number=7)
    offered = []

    def choose(parent, folder, series):
        offered.extend((s.description, s.modality) for s in series)
        return series[1]

    monkeypatch.setattr(main_window, "choose_series", choose)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path)
    assert offered == [("chest", "CT"), ("short axis", "MR")]
    assert window.volume.meta["series_description"] == "short axis"
    np.testing.assert_array_equal(window.volume.array, cardiac.array)


def test_series_picker_lists_the_series_and_marks_localizers(qtbot, tmp_path):
    from segview.core.dicom import SeriesInfo
    from segview.gui.dialogs import SeriesDialog

    series = [SeriesInfo("1.2", "scout", "CT", 3, (32, 32, 3), 1, True),
              SeriesInfo("1.3", "chest", "CT", 120, (512, 512, 120), 2)]
    dialog = SeriesDialog(None, tmp_path, series)
    qtbot.addWidget(dialog)
    cells = [[dialog.table.item(r, c).text() for c in range(6)] for r in range(2)]
    assert cells == [["1", "scout", "CT", "3", "32 x 32", "localizer"],
                     ["2", "chest", "CT", "120", "512 x 512", ""]]
    assert dialog.chosen() is series[1]  # the first series that is not a localizer


def test_a_corrupt_file_shows_the_error_and_keeps_the_open_volume(qtbot, demo, dialogs, tmp_path):
    before = demo.volume
    (tmp_path / "broken.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.open_image(tmp_path / "broken.dcm")
    assert dialogs and dialogs[-1][0] == "critical" and "neither DICOM" in dialogs[-1][1]
    assert demo.volume is before and demo.view.volume is before


def test_dropping_a_file_opens_it(qtbot, window, tmp_path):
    case = cardiac_phantom(4)
    save_volume(tmp_path / "mr.nrrd", case.volume)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "mr.nrrd"))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.dropEvent(event)
    np.testing.assert_array_equal(window.volume.array, case.volume.array)


def test_screenshot_renders_image_and_overlay(tmp_path):
    import subprocess
    import sys

    png = tmp_path / "shot.png"
    subprocess.run([sys.executable, "-m", "segview.cli", "--demo", "--screenshot", str(png)], check=True,
                   timeout=180)
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    assert image.width() > 600 and image.height() > 400
    colours = [image.pixelColor(x, y) for x in range(0, image.width(), 5) for y in range(0, image.height(), 5)]
    assert len({c.name() for c in colours}) > 50  # greyscale image plus coloured labels, not a blank window
    assert sum(c.red() > c.green() + 60 and c.red() > c.blue() + 60 for c in colours) > 20  # the LV in red
