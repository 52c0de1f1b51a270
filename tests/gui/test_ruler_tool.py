"""The Ruler tool (L) in the window, driven by real mouse drags on the oblique cardiac demo:
the length in mm from the real geometry (against SimpleITK), the ruler kept on its plane,
listed in the Measurements panel, deleted there, saved in the sidecar and exported beside
the metrics CSV."""
import csv
import json
import math

import pytest
from PySide6.QtCore import Qt

from segview.core.review_state import review_path
from segview.core.volume import VIEWS
from segview.resources import DEMO_MODELS

from .helpers import display_pixel, drag, load_models, wait_for_inference


def sitk_length(volume, a, b) -> float:
    image = volume.to_sitk()
    ends = [image.TransformContinuousIndexToPhysicalPoint([float(v) for v in end[::-1]]) for end in (a, b)]  # x, y, z
    return math.dist(*ends)


def choose_ruler(qtbot, window):
    window.activateWindow()  # its shortcuts answer keys only when it is the active window
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_L)
    assert window.effect.name == "ruler"


def drawn_points(window, view) -> int:
    xs, _ = next(d for d in window.ruler_controller.drawn if d.view is view).lines.getData()
    return 0 if xs is None else len(xs)


def test_a_drag_measures_in_mm_on_an_oblique_image_and_the_ruler_stays_on_its_slice(qtbot, demo, tmp_path):
    window, volume = demo, demo.session.volume
    assert volume.direction != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # oblique, 1.4 x 1.4 x 8.1 mm
    choose_ruler(qtbot, window)
    view = window.workspace.active_view()
    z = view.index
    a, b = (z, 60, 70), (z, 150, 180)  # voxels (z, y, x)
    drag(view, [display_pixel(view, a), display_pixel(view, (z, 100, 120)), display_pixel(view, b)])
    rulers = window.session.rulers.all()
    assert len(rulers) == 1 and (rulers[0].axis, rulers[0].index) == (0, z)
    slack = math.hypot(*volume.spacing[:2])  # the mouse lands on screen pixels, not voxel centres
    assert rulers[0].length_mm == pytest.approx(sitk_length(volume, a, b), abs=slack)
    assert rulers[0].length_mm == pytest.approx(sitk_length(volume, rulers[0].a, rulers[0].b), rel=1e-9)
    assert window.statusBar().currentMessage() == f"Ruler: {rulers[0].length_mm:.1f} mm"
    table = window.ruler_controller.table
    assert table.rowCount() == 1 and table.item(0, 0).text() == f"{rulers[0].length_mm:.1f}"
    assert (table.item(0, 1).text(), table.item(0, 2).text()) == ("axial", str(z + 1))
    assert drawn_points(window, view) == 2
    assert window.isWindowModified()  # unsaved: closing asks
    qtbot.keyClick(view, Qt.Key_Up)  # another slice: not there
    assert view.index == z + 1 and drawn_points(window, view) == 0
    table.cellDoubleClicked.emit(0, 0)  # the panel finds it
    assert view.index == z and drawn_points(window, view) == 2
    # From another plane too: its own plane comes back (a tester's coronal ruler was looked for in axial).
    window.view_choice.setCurrentIndex(VIEWS.index("coronal"))
    qtbot.keyClick(view, Qt.Key_Up)
    assert window.workspace.active_view() is not view and not view.isVisible()
    table.cellDoubleClicked.emit(0, 0)
    assert window.workspace.active_view() is view and view.isVisible() and view.index == z
    assert window.view_choice.currentText().lower() == "axial" and drawn_points(window, view) == 2
    path = window.session.save(tmp_path / "case.labels.nii.gz")
    saved = json.loads(review_path(path).read_text())["rulers"]
    assert len(saved) == 1 and saved[0]["length_mm"] == pytest.approx(rulers[0].length_mm, abs=1e-4)
    table.selectRow(0)
    qtbot.keyClick(table, Qt.Key_Delete)
    assert window.session.rulers.all() == [] and table.rowCount() == 0 and drawn_points(window, view) == 0


def test_a_click_without_a_drag_says_so_and_the_rulers_export_beside_the_metrics(qtbot, demo, monkeypatch, tmp_path):
    window = demo
    load_models(qtbot, window, DEMO_MODELS[1:], "B")
    with wait_for_inference(qtbot, window):
        pass
    choose_ruler(qtbot, window)
    view = window.workspace.active_view()
    drag(view, [(100, 100)])
    assert "two distinct ends" in window.statusBar().currentMessage() and not window.session.rulers.all()
    drag(view, [(100, 100), (100, 140)])
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName",
                        lambda *args, **kw: (str(tmp_path / "m.csv"), ""))
    window.export_metrics()
    rows = list(csv.DictReader(open(tmp_path / "m.measurements.csv")))
    assert len(rows) == 1 and float(rows[0]["length_mm"]) == pytest.approx(window.session.rulers.all()[0].length_mm)
    assert (tmp_path / "m.csv").is_file()
