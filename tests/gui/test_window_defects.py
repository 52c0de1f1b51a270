"""The window defects of issue 12, each reproduced through what a person does: a scenario
over three images with two models, then one test a defect."""
import re
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from segview.cli import main as cli_main
from segview.core.dicom import write_dicom_series
from segview.core.io import load_labels, save_volume
from segview.core.phantoms import make_phantom
from segview.core.volume import auto_window
from segview.gui.main_window import AUTO_WINDOW
from segview.resources import DEMO_MODELS

from .helpers import display_pixel, drag, hover, load_models, wait_for_inference, widget_point


def check_window_shows_the_session(qtbot, window, slots):
    """Everything on screen comes from ``window.session`` and its models ``slots``, all
    predicted: views, overlays, metrics rows and columns, legend, presets, read-out."""
    session, workspace = window.session, window.workspace
    volume = session.volume
    assert list(session.models) == list(slots)
    for view in [*workspace.viewer.views.values(), *workspace.compare.panes.values()]:
        assert view.volume is volume
    for slot in "AB":
        in_views = [slot in view.overlays for view in workspace.viewer.views.values()]
        assert in_views == [slot in slots] * 3, slot
        show, _ = window.overlay_actions[slot]
        assert show.isEnabled() == (slot in slots)
    for slot in slots:
        model = session.models[slot]
        assert model.prediction.shape == volume.shape and model.predicted.shape == (volume.shape[0],)
        assert model.predicted.all()
        assert model.device  # where it ran, for the status bar
        assert model.describe() in window.model_info.text()
    assert window.model_info.isVisible() == bool(slots)
    # The metrics table: a slice and a volume row per model (and B - A), a column per class.
    table = window.metrics.table
    rows = [f"{slot} {scope}" for slot in slots for scope in ("slice", "volume")]
    if len(slots) == 2:
        rows += ["B \u2212 A slice", "B \u2212 A volume"]
    assert [table.verticalHeaderItem(r).text() for r in range(table.rowCount())] == rows
    foreground = [c for c in session.classes if c.value]
    columns = [table.horizontalHeaderItem(c).text().replace("\n", " ") for c in range(table.columnCount())]
    assert columns == [c.name for c in foreground] + ["mean", "pixel error"]
    assert all(table.item(r, c).text() not in ("", "pending") for r in range(len(rows)) for c in range(len(columns)))
    # The ranking of slices to review first: for two models, slices of this image.
    ranking = window.metrics.ranking
    assert ranking.isVisible() == (len(slots) == 2)
    if len(slots) == 2:
        assert ranking.count() and all(0 <= ranking.item(n).data(Qt.UserRole) < volume.shape[0]
                                       for n in range(ranking.count()))
    # The legend: the labels' classes and each model's outline, nothing of the last image.
    legend = window.legend.text()
    for c in foreground:
        assert c.name in legend
    for slot in "AB":
        assert (f"model {slot} outline" in legend) == (slot in slots)
    # Window presets: the percentile window and the image's own (CT: lung first).
    presets = [AUTO_WINDOW] + [name for name, *_ in volume.meta.get("window_presets") or []]
    assert [name for name, *_ in window.presets] == presets
    assert window.window_choice.count() == len(presets)
    expected = (-600.0, 1500.0) if volume.modality == "CT" else auto_window(volume.array)
    view = workspace.active_view()
    assert view.window == tuple(float(v) for v in expected)
    assert window.window_choice.currentIndex() == (1 if volume.modality == "CT" else 0)
    # Slices: the slider and the number are this image's.
    n = view.num_slices()
    assert window.slider.maximum() == n - 1 and window.slice_number.text() == f"{view.index + 1} / {n}"
    # The read-out under the mouse (it raised IndexError after another image was opened).
    z = window.current_slice()
    hover(view, *display_pixel(view, (z, volume.shape[1] // 2, volume.shape[2] // 2)))
    message = window.read_out.text()
    assert f"voxel ({volume.shape[2] // 2}, {volume.shape[1] // 2}, {z})" in message
    for slot in "AB":
        assert (f"   {slot}: " in message) == (slot in slots)


def test_the_demo_with_two_models_then_a_ct_from_dicom_then_the_demo_again(qtbot, demo, dialogs, tmp_path):
    window = demo
    load_models(qtbot, window, DEMO_MODELS)
    with wait_for_inference(qtbot, window):
        pass
    assert window.session.volume.modality == "MR" and not dialogs
    check_window_shows_the_session(qtbot, window, "AB")

    # A chest CT from a DICOM folder: the cardiac MR checkpoints ask before they run on it.
    assert cli_main(["phantom", "lung", "-o", str(tmp_path / "lung"), "--format", "dicom"]) == 0
    folder = tmp_path / "lung" / "imagesTr" / "lung_000"
    dialogs.answers += [QMessageBox.Yes, QMessageBox.No]  # A: run it anyway; B: no
    demo_session = window.session
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_image(folder)
    session = window.session
    assert session is not demo_session and demo_session.journal is None  # the demo's session closed
    assert session.volume.modality == "CT" and session.volume.shape == (39, 256, 256)
    questions = [text for kind, text in dialogs if kind == "question"]
    assert len(questions) == 2 and all("trained on MR" in q and "is CT" in q for q in questions)
    assert list(session.models) == ["A"]  # B unloaded
    assert not session.models["A"].predicted.any()  # the demo's predictions are not carried over
    with wait_for_inference(qtbot, window):
        pass
    assert session.models["A"].prediction.shape == session.volume.shape
    check_window_shows_the_session(qtbot, window, "A")
    qtbot.keyClick(window, Qt.Key_R, Qt.ControlModifier)  # run again (it raised KeyError: 'B')
    with wait_for_inference(qtbot, window):
        pass
    check_window_shows_the_session(qtbot, window, "A")

    # The demo again: model A fits (MR), no question; B stays unloaded.
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert len([kind for kind, _ in dialogs if kind == "question"]) == 2
    assert window.session.volume.modality == "MR" and list(window.session.models) == ["A"]
    with wait_for_inference(qtbot, window):
        pass
    check_window_shows_the_session(qtbot, window, "A")
    assert window.session.models["A"].prediction.shape == (12, 240, 240)
    assert not [kind for kind, _ in dialogs if kind in ("critical", "warning")]


def test_j_selects_the_adopt_tool(qtbot, demo):
    for key, name in ((Qt.Key_B, "brush"), (Qt.Key_J, "adopt"), (Qt.Key_N, "navigate"), (Qt.Key_J, "adopt")):
        qtbot.keyClick(demo, key)
        assert demo.tools.tool == name and demo.effect.name == name
        checked = [b.text() for b in demo.tools.tool_buttons.buttons() if b.isChecked()]
        assert checked == [demo.effect.text]


def test_arrow_keys_change_the_slice_after_the_view_box_was_used(qtbot, demo):
    window, box = demo, demo.view_choice
    qtbot.mouseClick(box, Qt.LeftButton)  # open the View box and pick coronal with the keyboard
    popup = box.view()
    qtbot.waitUntil(popup.isVisible, timeout=15000)
    qtbot.keyClick(popup, Qt.Key_Down)
    qtbot.keyClick(popup, Qt.Key_Return)
    qtbot.waitUntil(lambda: not popup.isVisible(), timeout=15000)
    view = window.workspace.active_view()
    assert box.currentText() == "Coronal" and view.view == "coronal"
    for key, step in ((Qt.Key_Up, 1), (Qt.Key_Down, -1), (Qt.Key_Down, -1)):
        focused = QApplication.focusWidget() or window  # where a key press goes
        assert focused is not box
        index = view.index
        qtbot.keyClick(focused, key)
        assert view.index == index + step and box.currentText() == "Coronal"
        assert window.slice_number.text() == f"{view.index + 1} / {view.num_slices()}"


def test_in_three_views_the_view_box_names_the_active_view_and_choosing_it_shows_it_large(qtbot, demo):
    """A click in the small coronal view makes it the active one (the slider's): the box
    said "Coronal" while axial stayed large, and choosing Coronal there did nothing."""
    window, box, viewer = demo, demo.view_choice, demo.workspace.viewer
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_T)
    axial, coronal = viewer.views["axial"], viewer.views["coronal"]
    qtbot.mouseClick(coronal.viewport(), Qt.LeftButton, pos=widget_point(coronal, 20, 20).toPoint())
    assert viewer.active is coronal and box.currentText() == "Coronal"
    assert axial.width() > coronal.width() and "active view" in box.toolTip()  # says what it names
    qtbot.mouseClick(box, Qt.LeftButton)  # open the box and choose Coronal, the item it shows
    popup = box.view()
    qtbot.waitUntil(popup.isVisible, timeout=15000)
    qtbot.keyClick(popup, Qt.Key_Return)
    qtbot.waitUntil(lambda: not popup.isVisible(), timeout=15000)
    qtbot.waitUntil(lambda: coronal.width() > axial.width(), timeout=15000)
    assert viewer.active is coronal and box.currentText() == "Coronal"


def test_the_read_out_follows_a_key_scroll_without_mouse_movement(qtbot, demo):
    window = demo
    view = window.workspace.active_view()
    volume = window.session.volume
    z = view.index
    hover(view, *display_pixel(view, (z, 100, 110)))
    assert window.read_out.text().startswith(f"voxel (110, 100, {z})")
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Up)  # no mouse movement
    message = window.read_out.text()
    assert message.startswith(f"voxel (110, 100, {z + 1})")
    assert f"value {volume.array[z + 1, 100, 110]:g}" in message
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Home)
    assert window.read_out.text().startswith("voxel (110, 100, 0)")
    wheel(view, widget_point(view, *display_pixel(view, (0, 100, 110))), 120)  # and the wheel
    assert view.index == 1 and window.read_out.text().startswith("voxel (110, 100, 1)")


def wheel(view, position, delta):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QWheelEvent

    viewport = view.viewport()
    event = QWheelEvent(position, viewport.mapToGlobal(position), QPoint(0, 0), QPoint(0, delta),
                        Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)


def test_open_recent_stores_absolute_paths_once_each(qtbot, window, tmp_path, monkeypatch):
    case = make_phantom("cardiac", 2)
    write_dicom_series(case.volume, tmp_path / "series")
    save_volume(tmp_path / "other.nrrd", case.volume)
    monkeypatch.chdir(tmp_path)
    for path in (Path("series"), tmp_path / "series", Path("./series/"), Path("other.nrrd"), tmp_path / "series"):
        with qtbot.waitSignal(window.loaded, timeout=30000):
            window.open_image(path)
    recent = [action.text() for action in window.recent_menu.actions()]
    assert recent == [str(tmp_path.resolve() / "series"), str(tmp_path.resolve() / "other.nrrd")]
    assert all(Path(p).is_absolute() for p in recent)
    monkeypatch.chdir(tmp_path.parent)  # elsewhere, the entries still open
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.recent_menu.actions()[1].trigger()
    assert Path(window.session.volume.meta["source"]).name == "other.nrrd"


def test_the_default_save_name_is_beside_the_image(qtbot, window, tmp_path, monkeypatch):
    case = make_phantom("cardiac", 1)
    save_volume(tmp_path / "heart.nii.gz", case.volume)
    write_dicom_series(case.volume, tmp_path / "study" / "cine")
    monkeypatch.chdir(tmp_path / "study")
    offered = []

    def save_dialog(parent, caption, suggested, *args, **kwargs):
        offered.append(suggested)
        return suggested, ""  # the person accepts the suggestion

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    for image, expected in ((tmp_path / "heart.nii.gz", tmp_path / "heart.labels.nii.gz"),
                            (Path("cine"), tmp_path / "study" / "cine.labels.nii.gz")):
        with qtbot.waitSignal(window.loaded, timeout=30000):
            window.open_image(image)
        window.tools.set_tool("brush")
        drag(window.workspace.active_view(), [(100, 100)])
        with qtbot.waitSignal(window.saved, timeout=20000) as saved:
            qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)
        assert Path(offered[-1]) == expected and saved.args == [str(expected)]
        np.testing.assert_array_equal(load_labels(expected, window.session.volume), window.session.labels.array)
    assert not (tmp_path / "study" / "labels.nii.gz").exists() and not Path("labels.nii.gz").exists()


def test_a_and_b_outlines_in_the_single_view_have_different_colours(qtbot, demo):
    window = demo
    load_models(qtbot, window, DEMO_MODELS)
    with wait_for_inference(qtbot, window):
        pass
    view = window.workspace.active_view()
    assert all(window.overlay_actions[slot][1].isChecked() for slot in "AB")  # models drawn as outlines
    qtbot.keyClick(window, Qt.Key_1)  # hide the labels: only the model outlines over the image

    def colours():
        """The coloured (not grey) pixels of the view as rendered."""
        QTest.qWait(1)
        image = view.grab().toImage()
        found = set()
        for y in range(0, image.height(), 2):
            for x in range(0, image.width(), 2):
                c = image.pixelColor(x, y)
                if max(c.red(), c.green(), c.blue()) - min(c.red(), c.green(), c.blue()) > 60:
                    found.add((c.red(), c.green(), c.blue()))
        return found

    for key in (Qt.Key_2, Qt.Key_3):
        qtbot.keyClick(window, key)
    neither = colours()  # the orientation letters and the title
    outline = {}
    for slot, key in (("A", Qt.Key_2), ("B", Qt.Key_3)):
        qtbot.keyClick(window, key)  # show only this model's outline
        outline[slot] = colours() - neither
        qtbot.keyClick(window, key)
    assert outline["A"] and outline["B"]
    assert not outline["A"] & outline["B"]  # no colour of A's outline is one of B's


def test_the_metrics_table_is_not_clipped_at_1600_by_1000(qtbot, demo):
    window = demo
    window.resize(1600, 1000)
    load_models(qtbot, window, DEMO_MODELS)
    with wait_for_inference(qtbot, window):
        pass
    QApplication.processEvents()
    table = window.metrics.table
    assert table.rowCount() == 6 and table.columnCount() == 5
    assert table.isVisible() and not table.verticalScrollBar().isVisible()
    assert not table.horizontalScrollBar().isVisible()
    viewport = table.viewport().rect()
    for r in range(table.rowCount()):
        for c in range(table.columnCount()):
            assert viewport.contains(table.visualItemRect(table.item(r, c))), (r, c)
    # and the table lies inside the window, not cut off by the screen's edge
    corner = table.mapTo(window, table.rect().bottomRight())
    assert window.rect().contains(corner)


def test_another_image_in_compare_mode_and_three_views_rebuilds_the_panes(qtbot, demo, dialogs, tmp_path):
    window = demo
    load_models(qtbot, window, DEMO_MODELS)
    with wait_for_inference(qtbot, window):
        pass
    qtbot.keyClick(window, Qt.Key_T)  # three views, then compare A | B over them
    qtbot.keyClick(window, Qt.Key_K)
    case = make_phantom("lung", 3)
    write_dicom_series(case.volume, tmp_path / "chest")
    dialogs.answers += [QMessageBox.Yes, QMessageBox.Yes]
    with qtbot.waitSignal(window.loaded, timeout=60000):
        window.open_image(tmp_path / "chest")
    session = window.session
    assert window.comparing and list(session.models) == ["A", "B"]
    with wait_for_inference(qtbot, window):
        pass
    compare = window.workspace.compare
    z = compare.index
    assert 0 <= z < session.volume.shape[0] and window.current_slice() == z
    assert window.slice_number.text() == f"{z + 1} / {session.volume.shape[0]}"
    for slot in "AB":
        pane = compare.panes[slot]
        assert pane.volume is session.volume and pane.isVisible()
        expected = pane.orientation.slice(session.models[slot].prediction, pane.view, z)
        np.testing.assert_array_equal(pane.overlay_items["prediction"].image, expected)
        assert session.models[slot].describe(data=True) in compare.headers[slot].text()
    hover(compare.panes["B"], *display_pixel(compare.panes["B"], (z, 128, 128)))
    # (the panes are narrow: about a screen pixel a voxel, so the mouse lands within one)
    found = re.match(r"voxel \((\d+), (\d+), (\d+)\)", window.read_out.text())
    x, y, at = (int(v) for v in found.groups())
    assert abs(x - 128) <= 1 and abs(y - 128) <= 1 and at == z
    qtbot.keyClick(window, Qt.Key_K, Qt.ShiftModifier)  # the disagreement of A and B on the CT
    pane = compare.panes["disagreement"]
    assert pane.isVisible() and pane.overlay_items["disagreement"].image.shape == session.volume.shape[1:]
    qtbot.keyClick(window, Qt.Key_K, Qt.ShiftModifier)  # back to the panes
    qtbot.keyClick(window, Qt.Key_K)  # back to the three views of the CT
    assert not window.comparing
    views = window.workspace.viewer.views
    assert all(v.isVisible() and v.volume is session.volume for v in views.values())
    assert [v.index < n for v, n in zip(views.values(), (session.volume.shape[0], session.volume.shape[1],
                                                          session.volume.shape[2]))] == [True] * 3
    for v in views.values():
        assert v.overlay_items["A"].image.shape == v.image_item.image.shape


def test_refusing_a_checkpoint_of_another_modality_keeps_the_model_it_would_replace(qtbot, window, dialogs, tmp_path):
    from segview.resources import MODELS

    case = make_phantom("lung", 2)
    write_dicom_series(case.volume, tmp_path / "chest")
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_image(tmp_path / "chest")
    session = window.session
    load_models(qtbot, window, [MODELS / "lung_ce.safetensors"])
    with wait_for_inference(qtbot, window):
        pass
    lung = session.models["A"]
    prediction = lung.prediction.copy()
    assert not dialogs and prediction.any()
    dialogs.answers.append(QMessageBox.No)  # the cardiac MR checkpoint into A: no
    load_models(qtbot, window, DEMO_MODELS[:1])
    assert [kind for kind, _ in dialogs] == ["question"] and "trained on MR" in dialogs[0][1]
    assert session.models["A"] is lung and lung.predicted.all()  # the lung model stays, predictions and all
    np.testing.assert_array_equal(session.models["A"].prediction, prediction)
    assert "lung_ce" in window.model_info.text() and "model A outline" in window.legend.text()
    assert window.workspace.active_view().overlay_items["A"].image.any()
