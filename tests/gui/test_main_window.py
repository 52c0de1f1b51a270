"""The window wires core functions: open, scroll, views, window/level, errors, files."""
import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segview.core.dicom import write_dicom_series
from segview.core.io import save_labels, save_volume
from segview.core.phantoms import cardiac_phantom, lung_phantom
from segview.gui import main_window
from segview.gui.slice_view import label_outline

from .helpers import display_pixel, drag_points, hover, load_models, widget_point


def test_demo_opens_with_labels_and_scrolls(qtbot, demo):
    window, session = demo, demo.session
    view = window.workspace.active_view()
    assert view is window.workspace.viewer.active and view.view == "axial"
    assert session.volume.modality == "MR" and session.labels.array.any()
    n = view.num_slices()
    assert window.slice_number.text() == f"{n // 2 + 1} / {n}"
    qtbot.keyClick(view, Qt.Key_Up)
    assert view.index == n // 2 + 1 and window.slider.value() == view.index
    window.slider.setValue(0)
    assert view.index == 0 and window.slice_number.text() == f"1 / {n}"
    qtbot.keyClick(view, Qt.Key_End)
    assert view.index == n - 1
    shown = view.image_item.image
    assert shown.dtype == np.uint8 and shown.shape == session.volume.slice("axial", n - 1).shape
    assert window.current_slice() == n - 1 and window.slice_number.text() == f"{n} / {n}"
    overlay = view.overlay_items["labels"].image
    np.testing.assert_array_equal(overlay, session.volume.display().slice(session.labels.array, "axial", n - 1))


def test_wheel_scrolls_slices_and_ctrl_wheel_zooms(qtbot, demo):
    view = demo.workspace.active_view()
    start, before = view.index, view.box.viewRange()
    centre = view.mapFromScene(view.box.mapViewToScene(view.box.viewRect().center()))
    qtbot.wait(10)
    _wheel(view, centre, -120)
    assert view.index == start - 1 and view.box.viewRange() == before
    _wheel(view, centre, 120, Qt.ControlModifier)
    assert view.index == start - 1
    after = view.box.viewRange()
    assert after[0][1] - after[0][0] < before[0][1] - before[0][0]  # zoomed in
    qtbot.keyClick(demo, Qt.Key_F)  # fit to window
    np.testing.assert_allclose(view.box.viewRange(), before)


def _wheel(widget, position, delta, modifiers=Qt.NoModifier):
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    global_position = widget.viewport().mapToGlobal(position)
    event = QWheelEvent(QPointF(position), QPointF(global_position), QPoint(0, 0), QPoint(0, delta),
                        Qt.NoButton, modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget.viewport(), event)


def test_views_switch_and_three_view_layout_keeps_each_views_slice(qtbot, demo):
    window, viewer, volume = demo, demo.workspace.viewer, demo.session.volume
    window.view_choice.setCurrentIndex(2)  # sagittal
    view = window.workspace.active_view()
    assert view.view == "sagittal" and view.isVisible()
    assert not viewer.views["axial"].isVisible()
    assert window.slider.maximum() == view.num_slices() - 1 == volume.shape[2] - 1
    rows, cols = view.image_item.image.shape
    assert (rows, cols) == (volume.shape[0], volume.shape[1])
    # True aspect: the displayed rectangle is in millimetres.
    rect = view.image_item.mapRectToParent(view.image_item.boundingRect())
    assert rect.height() == pytest.approx(rows * volume.spacing[2])
    assert rect.width() == pytest.approx(cols * volume.spacing[1])
    assert {view.edge_items[s].textItem.toPlainText() for s in ("left", "right", "top", "bottom")} == set("APSI")

    qtbot.keyClick(window, Qt.Key_T)  # three views
    assert all(v.isVisible() for v in viewer.views.values())
    axial = viewer.views["axial"]
    axial.setFocus()
    qtbot.waitUntil(lambda: window.workspace.active_view() is axial)
    axial.set_slice(3)
    assert window.slice_number.text() == f"4 / {axial.num_slices()}" and window.current_slice() == 3
    viewer.go_to((5, 40, 60))
    assert [v.index for v in viewer.views.values()] == [5, 40, 60]
    # M marks the acquired (axial) slice on screen, from the axial view; elsewhere it says so.
    viewer.views["sagittal"].setFocus()
    qtbot.waitUntil(lambda: window.workspace.active_view() is viewer.views["sagittal"])
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_M)
    assert not window.session.reviewed.any() and "axial view" in window.statusBar().currentMessage()
    axial.setFocus()
    qtbot.waitUntil(lambda: window.workspace.active_view() is axial)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_M)
    assert np.flatnonzero(window.session.reviewed).tolist() == [5] and window.current_slice() == 5
    assert window.statusBar().currentMessage() == "Slice 6 reviewed"
    # A double click in one view sends the others to that voxel.
    sagittal = viewer.views["sagittal"]
    point = widget_point(sagittal, *display_pixel(sagittal, (7, 50, 60)))
    qtbot.mouseDClick(sagittal.viewport(), Qt.LeftButton, pos=point.toPoint())
    # QTest's double click leaves its button held in QTest's state: later tests' mouse moves
    # (a hover) were drags, and the level tool's outline never showed.
    qtbot.mouseRelease(sagittal.viewport(), Qt.LeftButton, pos=point.toPoint())
    assert [v.index for v in viewer.views.values()] == [7, 50, 60]


def test_right_drag_sets_window_and_level(qtbot, demo):
    view = demo.workspace.active_view()
    center, width = view.window
    start = widget_point(view, 100, 100)
    drag_points(view, [start, start + QPointF(64, -32)], button=Qt.RightButton)  # 64 pixels right, 32 up
    new_center, new_width = view.window
    assert new_width == pytest.approx(width + 64 * width / 256)
    assert new_center == pytest.approx(center + 32 * width / 256)
    assert demo.window_values.text() == f"W {new_width:.0f}  L {new_center:.0f}"
    assert all(v.window == view.window for v in demo.workspace.viewer.views.values())
    qtbot.keyClick(demo, Qt.Key_R)  # reset view and window
    assert view.window == (center, width)


def test_overlays_toggle_and_draw_as_outline(qtbot, demo):
    view = demo.workspace.active_view()
    show, outline = demo.overlay_actions["labels"]
    qtbot.keyClick(demo, Qt.Key_1)
    assert not show.isChecked() and not view.overlay_items["labels"].isVisible()
    show.setChecked(True)
    assert view.overlay_items["labels"].isVisible()
    qtbot.keyClick(demo, Qt.Key_1, Qt.ShiftModifier)  # labels as outline
    assert outline.isChecked()
    plane = demo.session.volume.display().slice(demo.session.labels.array, "axial", view.index)
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


def test_an_image_opens_with_the_labels_saved_beside_it(qtbot, window, tmp_path):
    case = lung_phantom(1)
    save_volume(tmp_path / "ct.nii.gz", case.volume)
    save_labels(tmp_path / "ct.labels.nii.gz", case.labels, case.volume, case.classes)  # where Save puts them
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(window.session.labels.array, case.labels)
    assert window.session.labels_path == tmp_path / "ct.labels.nii.gz"
    assert [c.name for c in window.session.classes] == ["background", "infection"]


def test_an_image_opens_with_the_labels_last_saved_under_a_name_of_ones_own(qtbot, window, tmp_path, dialogs):
    """A tester saved to out.nii.gz, quit and opened the image again: the labels were empty."""
    case = lung_phantom(1)
    save_volume(tmp_path / "ct.nii.gz", case.volume)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz")
    window.session.labels.array[:] = case.labels
    assert window.save_to(tmp_path / "out.nii.gz", wait=True)
    window.discard_session()
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz")
    assert window.session.labels_path == tmp_path / "out.nii.gz"
    np.testing.assert_array_equal(window.session.labels.array, case.labels)
    window.discard_session()
    (tmp_path / "copy").mkdir()  # the same image elsewhere (a second export, a USB copy): by its content
    (tmp_path / "copy" / "ct.nii.gz").write_bytes((tmp_path / "ct.nii.gz").read_bytes())
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "copy" / "ct.nii.gz")
    assert window.session.labels_path == tmp_path / "out.nii.gz"
    window.discard_session()
    other = lung_phantom(2)  # another image at a path once used: not those labels
    save_volume(tmp_path / "copy" / "ct.nii.gz", other.volume)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "copy" / "ct.nii.gz")
    assert window.session.labels_path is None and not window.session.labels.array.any()


def test_the_window_says_which_of_several_label_files_beside_an_image_it_read(qtbot, window, tmp_path):
    """A tester saved lung_000's labels as .nii.gz, .nrrd and .mha: reopened, one of them came
    back and nothing said which."""
    case = lung_phantom(1)
    image = save_volume(tmp_path / "lung_000.nii.gz", case.volume)
    for n, ending in enumerate((".nii.gz", ".nrrd")):  # saved by another segview: nothing remembered here
        save_labels(tmp_path / f"lung_000.labels{ending}", (case.labels > 0) * (n + 1), case.volume)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(image)
    assert window.session.labels_path == tmp_path / "lung_000.labels.nii.gz"
    assert window.windowTitle() == "segview - lung_000.nii.gz - labels lung_000.labels.nii.gz[*]"
    assert window.statusBar().currentMessage() == (
        "Labels read from lung_000.labels.nii.gz, the name a first save gives them (no later save of this image is "
        "remembered here); not read: lung_000.labels.nrrd beside the image (File > Open labels reads another).")
    assert window.save_to(tmp_path / "lung_000.labels.mha", wait=True)
    assert window.windowTitle().endswith(" - labels lung_000.labels.mha[*]")  # the file saved to
    window.discard_session()
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(image)
    assert window.session.labels_path == tmp_path / "lung_000.labels.mha"
    assert window.windowTitle() == "segview - lung_000.nii.gz - labels lung_000.labels.mha[*]"
    assert window.statusBar().currentMessage() == (
        "Labels read from lung_000.labels.mha, where this image's labels were last saved; not read: "
        "lung_000.labels.nii.gz, lung_000.labels.nrrd beside the image (File > Open labels reads another).")
    window.discard_session()
    (tmp_path / "copy").mkdir()  # the image copied elsewhere: the labels saved for it, named with their folder
    copy = tmp_path / "copy" / "lung_000.nii.gz"
    copy.write_bytes(image.read_bytes())
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(copy)
    assert window.statusBar().currentMessage() == (
        f"Labels read from {tmp_path / 'lung_000.labels.mha'}, where this image's labels were last saved.")


def test_save_as_onto_the_image_file_is_refused_and_the_image_kept(qtbot, window, tmp_path, dialogs):
    case = lung_phantom(1)
    image = save_volume(tmp_path / "ct.nii.gz", case.volume)
    before = image.read_bytes()
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(image)
    assert not window.save_to(image, wait=True)
    assert image.read_bytes() == before
    assert dialogs[-1][0] == "critical" and "is the image itself" in dialogs[-1][1]


def test_a_ct_opens_in_a_ct_window_and_presets_apply(qtbot, window, tmp_path):
    case = lung_phantom(1)
    save_volume(tmp_path / "ct.nii.gz", case.volume)
    save_labels(tmp_path / "labels.nii.gz", case.labels, case.volume, case.classes)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    view = window.workspace.active_view()
    assert view.window == (-600.0, 1500.0)  # the lung window first for CT
    bone = next(i for i, p in enumerate(window.presets) if p[0] == "Bone")
    window.window_choice.setCurrentIndex(bone)
    assert view.window == (400.0, 1800.0)
    assert [c.name for c in window.session.classes] == ["background", "infection"]
    recent = [a.text() for a in window.recent_menu.actions()]
    assert recent == [str(tmp_path / "ct.nii.gz")]
    window.workspace.go_to_slice(3)
    hover(view, *display_pixel(view, (3, 100, 120)))
    message = window.read_out.text()
    assert "voxel (120, 100, 3)" in message and f"value {case.volume.array[3, 100, 120]:g} HU" in message
    assert f"label: {case.classes[case.labels[3, 100, 120]].name}" in message


def test_a_folder_with_several_series_asks_which_one(qtbot, window, monkeypatch, tmp_path):
    cardiac = cardiac_phantom(2).volume
    write_dicom_series(lung_phantom(2).volume, tmp_path / "a", series_description="chest", series_number=3)
    write_dicom_series(cardiac, tmp_path / "b", series_description="short axis", series_number=7,
                       patient_name="Müller^Jürgen", patient_id="P-7")
    offered = []

    def choose(parent, folder, series):
        offered.extend((s.description, s.modality) for s in series)
        return series[1]

    monkeypatch.setattr(main_window, "choose_series", choose)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path)
    assert offered == [("chest", "CT"), ("short axis", "MR")]
    assert window.session.volume.meta["series_description"] == "short axis"
    np.testing.assert_array_equal(window.session.volume.array, cardiac.array)
    # Whose images they are, first in the title: a tester found no patient named anywhere.
    assert window.windowTitle().startswith("segview - Müller, Jürgen; ID P-7; study ")
    assert window.windowTitle().endswith(" - short axis[*]")


def test_a_missing_slice_is_marked_on_the_slice_itself(qtbot, window, dialogs, tmp_path):
    """Beyond the warning when the series opens (with the damaged file the folder's scan
    found): the axial view's title says the slice shown was interpolated, on that slice only."""
    files = sorted(write_dicom_series(lung_phantom(2).volume, tmp_path))
    files[10].unlink()
    (tmp_path / "IM_junk.dcm").write_bytes(b"junk")  # a slice's name without DICOM in it
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path)
    [(_, text)] = dialogs
    assert "1 slice(s) missing" in text and "1 damaged DICOM file(s) were skipped: IM_junk.dcm" in text
    axial, coronal = (window.workspace.viewer.views[v] for v in ("axial", "coronal"))
    for z, marked in ((9, False), (10, True), (11, False)):
        axial.set_slice(z)
        assert ("INTERPOLATED" in axial.title.toPlainText()) is marked
    coronal.set_slice(10)  # a row of every slice there, not the slice
    assert "INTERPOLATED" not in coronal.title.toPlainText()


def test_a_truncated_slice_opens_as_missing_and_the_window_says_which_and_why(qtbot, window, dialogs, tmp_path):
    """A series with one slice cut in half was refused whole; it opens, the dialog naming it."""
    files = sorted(write_dicom_series(lung_phantom(2).volume, tmp_path))
    files[10].write_bytes(files[10].read_bytes()[:-4000])
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path)
    [(_, text)] = dialogs
    assert f"Skipped the damaged file {files[10].name}: pixel data is 4000 bytes short" in text
    assert "1 slice(s) missing" in text and window.session.volume.meta["interpolated_slices"] == [10]


def test_series_picker_lists_the_series_and_marks_localizers(qtbot, tmp_path):
    from segview.core.dicom import SeriesInfo
    from segview.gui.dialogs import SeriesDialog

    series = [SeriesInfo("1.2", "scout", "CT", 3, (32, 32, 3), 1, True, patient="Doe, Jane; ID 7"),
              SeriesInfo("1.3", "chest", "CT", 120, (512, 512, 120), 2, patient="Roe, Rick; ID 8")]
    dialog = SeriesDialog(None, tmp_path, series)
    qtbot.addWidget(dialog)
    cells = [[dialog.table.item(r, c).text() for c in range(7)] for r in range(2)]
    assert cells == [["1", "scout", "CT", "3", "32 x 32", "localizer", "Doe, Jane; ID 7"],  # a folder of two
                     ["2", "chest", "CT", "120", "512 x 512", "", "Roe, Rick; ID 8"]]
    assert dialog.chosen() is series[1]  # the first series that is not a localizer


def test_series_picker_tells_apart_series_that_share_a_number(qtbot, tmp_path):
    """Two series numbered 1 read as one listed twice: their notes say so, with their UIDs' ends."""
    from segview.core.dicom import SeriesInfo
    from segview.gui.dialogs import SeriesDialog

    series = [SeriesInfo("1.2.111", "chest", "CT", 80, (512, 512, 80), 1),
              SeriesInfo("1.2.222", "chest", "CT", 80, (512, 512, 80), 1),
              SeriesInfo("1.2.333", "chest", "CT", 3, (512, 512, 3), 2, True)]
    dialog = SeriesDialog(None, tmp_path, series)
    qtbot.addWidget(dialog)
    assert dialog.table.horizontalHeaderItem(0).text() == "Series number"
    assert [dialog.table.item(r, 5).text() for r in range(3)] == [
        "shares its number; UID ...1.2.111", "shares its number; UID ...1.2.222", "localizer"]


def test_series_picker_columns_fit_their_headers_and_cells(qtbot, tmp_path):
    """A tester saw the Description header squeezed to "crip" beside a long note and patient."""
    from segview.core.dicom import SeriesInfo
    from segview.gui.dialogs import SeriesDialog

    series = [SeriesInfo("1.2.840.113619.2.55.3.111", "Thorax 1.0 B31f lung window", "CT", 3, (32, 32, 3), 1, True,
                         patient="Doe, Jane (born 1970-01-01); ID 1234567"),
              SeriesInfo("1.2.840.113619.2.55.3.222", "chest", "CT", 120, (512, 512, 120), 1,
                         patient="Roe, Rick; ID 8")]
    dialog = SeriesDialog(None, tmp_path, series)
    qtbot.addWidget(dialog)
    dialog.show()
    header = dialog.table.horizontalHeader()
    for column in range(header.count()):
        fits = max(header.sectionSizeHint(column), dialog.table.sizeHintForColumn(column))
        assert header.sectionSize(column) >= fits, header.model().headerData(column, Qt.Horizontal)
    assert dialog.table.viewport().width() >= header.length()  # all of them in view


def test_a_corrupt_file_shows_the_error_and_keeps_the_open_volume(qtbot, demo, dialogs, tmp_path):
    session = demo.session
    (tmp_path / "broken.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.open_image(tmp_path / "broken.dcm")
    assert dialogs and dialogs[-1][0] == "critical" and "neither DICOM" in dialogs[-1][1]
    assert demo.session is session and session.journal is not None  # still open
    assert all(v.volume is session.volume for v in demo.workspace.viewer.views.values())


def test_a_damaged_series_keeps_the_open_session_on_screen_and_leaves_no_preview(qtbot, demo, dialogs, tmp_path):
    """A tester opened a series with a truncated slice: its preview replaced the saved case on
    screen, then the load failed, leaving neither. The case stays until the new one opens; with
    none open, the preview goes with the failure. (A truncated slice is now skipped: here a
    slice no decoder reads fails the load after the preview.)"""
    case = lung_phantom(1)
    files = sorted(write_dicom_series(case.volume, tmp_path / "ct"))
    undecodable = pydicom.dcmread(files[len(files) * 3 // 4])
    undecodable.PixelData = pydicom.encaps.encapsulate([undecodable.PixelData])
    undecodable.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    undecodable.save_as(files[len(files) * 3 // 4])
    session = demo.session
    with qtbot.waitSignal(demo.load_failed, timeout=30000):
        demo.open_image(tmp_path / "ct")
    assert demo.session is session and demo.workspace.active_view().volume is session.volume
    demo.discard_session()
    with qtbot.waitSignal(demo.load_failed, timeout=30000):
        demo.open_image(tmp_path / "ct")
    assert demo.session is None and all(v.volume is None for v in demo.workspace.viewer.views.values())
    assert demo.windowTitle() == "segview"
    # Nor the preview's slice number and window in the toolbar (a tester read "15 / 29", W 1500 L -600).
    assert demo.slice_number.text() == "- / -" and demo.window_values.text() == "" and demo.slider.maximum() == 0
    view = demo.workspace.active_view()
    QTest.mouseMove(view, QPoint(view.width() // 2, view.height() // 2))  # an empty view takes the mouse
    QTest.mouseMove(view, QPoint(view.width() // 3, view.height() // 3))
    with qtbot.waitSignal(demo.loaded, timeout=30000):  # and the next image shows as ever
        demo.open_image(save_volume(tmp_path / "ok.nii.gz", case.volume))
    assert demo.workspace.active_view().volume is demo.session.volume


def test_the_loading_message_goes_once_the_series_has_opened(qtbot, window, tmp_path):
    """A tester's --screenshot of a DICOM series said "Loading the other slices..." in its
    status bar: the preview's message outlived the load by up to 3 s."""
    files = write_dicom_series(lung_phantom(1).volume, tmp_path / "ct")
    shown = []
    window.statusBar().messageChanged.connect(shown.append)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(files[0].parent)
    assert main_window.LOADING_OTHER_SLICES in shown  # the preview said it
    assert window.statusBar().currentMessage() != main_window.LOADING_OTHER_SLICES


def test_an_image_whose_labels_cannot_be_read_opens_with_empty_labels_and_says_why(qtbot, window, dialogs, tmp_path):
    """A tester gave labels of another grid on the command line: the image showed, yet nothing
    worked on it (no session). It opens, with empty labels that a save does not write over
    the file named."""
    case = lung_phantom(1)
    image = save_volume(tmp_path / "ct.nii.gz", case.volume)
    other = cardiac_phantom(4)
    save_labels(tmp_path / "heart.nii.gz", other.labels, other.volume, other.classes)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(image, tmp_path / "heart.nii.gz")
    session = window.session
    assert session is not None and not session.labels.array.any() and session.labels_path is None
    assert dialogs[-1][0] == "warning" and "heart.nii.gz were not read" in dialogs[-1][1]


def test_dropping_a_file_opens_it(qtbot, window, tmp_path):
    case = cardiac_phantom(4)
    save_volume(tmp_path / "mr.nrrd", case.volume)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "mr.nrrd"))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.dropEvent(event)
    np.testing.assert_array_equal(window.session.volume.array, case.volume.array)


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


def test_a_folder_without_dicom_says_so_and_keeps_the_open_image(qtbot, demo, dialogs, tmp_path):
    session = demo.session
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    with qtbot.waitSignal(demo.load_failed, timeout=20000) as failed:
        demo.open_image(tmp_path / "notes")
    assert "notes" in failed.args[0] and dialogs[-1][0] == "critical"
    assert demo.session is session and demo.workspace.active_view().volume is session.volume


def test_dropping_a_checkpoint_loads_it_as_model_a(qtbot, demo):
    from segview.resources import DEMO_MODELS

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(DEMO_MODELS[1]))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    with qtbot.waitSignal(demo.inference_finished, timeout=60000, check_params_cb=lambda completed: completed):
        demo.dropEvent(event)
    model = demo.session.models["A"]
    assert list(demo.session.models) == ["A"] and model.name == "cardiac_ce_dice" and model.predicted.all()


def test_the_window_is_built_without_qt_warnings(qtbot, dialogs, qtlog):
    """Connecting the status bar's messages to setToolTip, a property setter and no slot,
    printed a libpyside warning at every launch (a tester)."""
    from segview.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.statusBar().showMessage("a message")
    assert window.statusBar().toolTip() == "a message"
    assert [r.message for r in qtlog.records if "addMetaMethod" in r.message or "Cannot add" in r.message] == []
    window.close()


def test_save_in_an_empty_window_says_there_is_nothing_to_save(qtbot, dialogs):
    """A tester's Ctrl+S before any image was open did nothing, without a word."""
    from segview.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    for save in (window.save, window.save_as):
        window.statusBar().clearMessage()
        assert save() is False
        assert window.statusBar().currentMessage().startswith("No image is open: there are no labels to save")
    window.close()


def test_the_file_menu_greys_saves_and_exports_until_there_is_something_to_save_or_export(qtbot, window):
    """In an empty window a tester found Save labels, Save labels as, Export comparison
    report and Export metrics as CSV enabled: the exports then asked for models, not for an image."""
    from segview.resources import DEMO_MODELS

    from .test_worklist_panel import action

    names = ["Save labels", "Save labels as...", "Export comparison report...", "Export metrics as CSV...",
             "Export DICOM SEG...", "Send SEG to PACS..."]
    menu = {name: action(window, "File", name) for name in names}
    assert not any(a.isEnabled() for a in menu.values())
    assert all(a.toolTip().startswith("No image is open") for a in menu.values())
    for keys in (Qt.ControlModifier, Qt.ControlModifier | Qt.ShiftModifier):  # Save, Save as: the keys say why
        window.statusBar().clearMessage()
        qtbot.keyClick(window, Qt.Key_S, keys)
        assert window.statusBar().currentMessage().startswith("No image is open: there are no labels to save")
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    enabled = {name for name, a in menu.items() if a.isEnabled()}
    assert enabled == {"Save labels", "Save labels as..."}  # the demo is no DICOM series: no SEG
    assert menu["Export metrics as CSV..."].toolTip().startswith("Load a model first")
    load_models(qtbot, window, DEMO_MODELS[:1], "A")
    assert menu["Export metrics as CSV..."].isEnabled() and not menu["Export comparison report..."].isEnabled()
    assert menu["Export comparison report..."].toolTip() == "Load two models (A and B) to compare them."
    load_models(qtbot, window, DEMO_MODELS[1:2], "B")
    assert menu["Export comparison report..."].isEnabled()
    window.discard_session()  # empty again
    assert not any(a.isEnabled() for a in menu.values())


def test_the_window_fits_a_small_screen_the_tools_scrolling(qtbot, demo):
    """At 1024 x 700 a tester's docks painted over each other: the Tools panel alone asked
    614 pixels of height."""
    from PySide6.QtWidgets import QDockWidget, QScrollArea

    dock = next(d for d in demo.findChildren(QDockWidget) if d.windowTitle() == "Tools")
    assert isinstance(dock.widget(), QScrollArea) and dock.widget().widget() is demo.tools
    assert demo.minimumSizeHint().height() <= 640 and demo.minimumSizeHint().width() <= 1024
    assert dock.widget().horizontalScrollBar().maximum() == 0  # it scrolls down, never across


def test_the_views_titles_fit_the_narrow_views_of_the_three_view_layout(qtbot, demo):
    """A tester read "W 1500  L -6" on the coronal and sagittal views of T: the title ran
    past the narrow view's edge and cut the level's digits off, a wrong number, not a
    shortened one. The window values have a line of their own."""
    window, viewer = demo, demo.workspace.viewer
    qtbot.keyClick(window, Qt.Key_T)  # three views: coronal and sagittal in a narrow column
    for size in ((1440, 900), (1060, 700)):  # in the smaller, "oblique 44°" read "oblique 4"
        window.resize(*size)
        for view in viewer.views.values():
            view.window = (-600.0, 1500.0)  # the lung preset: the longest level a CT preset shows
            view.redraw_image()
            qtbot.waitUntil(lambda v=view: v.width() > 0)
            QApplication.processEvents()
            right = view.mapFromScene(view.title.sceneBoundingRect().topRight()).x()
            assert "L -600" in view.title.toPlainText() and "oblique" in view.title.toPlainText()
            assert right <= view.width(), (size, view.view, right, view.width())
            if size == (1440, 900) and view is viewer.large_view():  # wrapped only where it must
                assert view.title.boundingRect().width() < view.width() / 3


def test_an_oblique_stack_says_how_far_its_planes_lie_from_the_plane_named(qtbot, window, tmp_path):
    """Two testers read a short-axis cardiac stack, shown in the view of the nearest plane,
    as a coronal acquisition. The tilt is checked against the direction cosines by hand."""
    cardiac = cardiac_phantom(1).volume
    save_volume(tmp_path / "short_axis.nii.gz", cardiac)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path / "short_axis.nii.gz")
    normal = window.session.volume.direction_matrix[:, 2]  # the acquired slices' normal, in LPS
    tilt = np.degrees(np.arccos(np.abs(normal).max()))
    assert tilt > 10
    acquired = window.workspace.viewer.large_view()
    assert acquired.title.toPlainText().split("\n")[:2] == [f"{acquired.view} 6 / 10", f"oblique {tilt:.0f}\u00b0"]
    save_volume(tmp_path / "chest.nii.gz", lung_phantom(2).volume)  # an axial grid: no tilt to tell
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path / "chest.nii.gz")
    assert all("oblique" not in view.title.toPlainText() for view in window.workspace.viewer.views.values())
