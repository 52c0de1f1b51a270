"""The boundary metrics and measures dock on the demo: the slice's and the volume's scores
against independent computations, after brush strokes, with clinical measures counted
here, and across images. Values come from the panel's public readers and its tables."""
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from segview.core.measures import lung_measures
from segview.core.metrics import (SURFACE_DICE_TOLERANCE_MM, reviewed_surface_scores, slice_surface_scores,
                                  surface_scores)
from segview.gui.effects import PlanePoint
from segview.resources import DEMO_MODELS

from .helpers import load_models

TIMEOUT = 60000


@pytest.fixture
def measured(qtbot, demo):
    """The cardiac demo with both demo models, every slice predicted; the dock's tab in
    front (it computes nothing while behind the metrics tab)."""
    with qtbot.waitSignal(controller(demo).dock.visibilityChanged, timeout=5000):
        controller(demo).dock.raise_()
    load_models(qtbot, demo, DEMO_MODELS)
    # A run for A alone may finish before B is loaded: wait until both have every slice.
    qtbot.waitUntil(lambda: demo.inference is None and len(demo.session.models) == 2
                    and all(m.predicted.all() for m in demo.session.models.values()), timeout=120000)
    return demo


def controller(window):
    return window.measures_controller


def num_classes(session) -> int:
    return max(c.value for c in session.classes) + 1


def class_value(session, name: str) -> int:
    return next(c.value for c in session.classes if c.name == name)


def stroke(window, z: int, points, value: int, radius_mm: float = 6.0) -> None:
    """A brush drag on slice ``z`` through ``points`` (y, x), as a view emits it."""
    window.tools.set_tool("brush")
    window.tools.radius.setValue(radius_mm)
    window.tools.class_choice.setCurrentIndex(window.tools.class_choice.findData(value))
    assert window.tools.active_class() == value
    window.workspace.go_to_slice(z)
    emit = window.workspace.stroked.emit
    emit("start", PlanePoint.from_index((z, *points[0]), 0))
    for point in points[1:]:
        emit("move", PlanePoint.from_index((z, *point), 0))
    emit("end", PlanePoint.from_index((z, *points[-1]), 0))


def settled(panel) -> bool:
    return panel.status.text() == ""


def same(a, b) -> bool:
    return np.allclose(a, b, equal_nan=True)


def test_the_dock_is_tabbed_with_the_metrics_panel(window):
    dock = controller(window).dock
    assert dock.widget().widget() is controller(window).panel  # scrolled
    assert dock in window.tabifiedDockWidgets(window.metrics.parentWidget())
    panel = controller(window).panel
    assert panel.tolerance.value() == SURFACE_DICE_TOLERANCE_MM
    assert panel.chosen_columns() == ["HD95", "ASSD", "surface Dice", "volumes"]


def test_the_slice_scores_are_the_slice_surface_scores(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    for z in (window.current_slice(), 2):
        window.workspace.go_to_slice(z)
        expected = {slot: slice_surface_scores(m.prediction, session.labels.array, z, num_classes(session),
                                               session.volume.spacing, SURFACE_DICE_TOLERANCE_MM)
                    for slot, m in session.models.items()}
        qtbot.waitUntil(lambda: all(isinstance(panel.shown_slice_scores(s), type(expected[s]))
                                    and same(panel.shown_slice_scores(s).hausdorff95, expected[s].hausdorff95)
                                    for s in expected), timeout=TIMEOUT)
        for slot, scores in expected.items():
            shown = panel.shown_slice_scores(slot)
            assert same(shown.average_surface_distance, scores.average_surface_distance)
            assert same(shown.surface_dice, scores.surface_dice)
        # The table's first row: model A's first class; its HD95 cell starts with the slice's value.
        first = panel.classes[0].value
        assert panel.boundary.item(0, 0).text().split("\n")[0] == f"{expected['A'].hausdorff95[first]:.2f}"


def test_the_tolerance_changes_the_slice_surface_dice(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session, z = window.session, window.current_slice()
    panel.tolerance.setValue(0.5)
    expected = slice_surface_scores(session.models["A"].prediction, session.labels.array, z, num_classes(session),
                                    session.volume.spacing, 0.5)
    qtbot.waitUntil(lambda: panel.shown_slice_scores("A") is not None
                    and same(panel.shown_slice_scores("A").surface_dice, expected.surface_dice), timeout=TIMEOUT)


def test_a_brush_stroke_updates_the_volume_after_a_pause(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    panel.reviewed_only.setChecked(False)  # every predicted slice counts
    assert not window.metrics.reviewed_only.isChecked()  # one switch for both panels
    qtbot.waitUntil(lambda: settled(panel) and panel.shown_volume_scores("A") is not None, timeout=TIMEOUT)
    lv = class_value(session, "left ventricle")
    before = panel.shown_volume_scores("A").hausdorff95[lv]
    # A blob of "left ventricle" far from the heart: the labels' LV surface gains a far part.
    z = 5
    value_before = session.labels.array.copy()
    stroke(window, z, [(30, 30), (34, 34), (38, 38)], lv)
    changed = np.flatnonzero((session.labels.array != value_before).reshape(len(value_before), -1).any(axis=1))
    assert list(changed) == [z], "the stroke painted slice z"
    assert panel.status.text() == "computing\u2026"
    spacing, count = session.volume.spacing, num_classes(session)
    expected = {slot: surface_scores(m.prediction, session.labels.array, count, spacing, SURFACE_DICE_TOLERANCE_MM)
                for slot, m in session.models.items()}
    qtbot.waitUntil(lambda: settled(panel) and all(
        panel.shown_volume_scores(s) is not None
        and same(panel.shown_volume_scores(s).hausdorff95, expected[s].hausdorff95) for s in expected),
        timeout=TIMEOUT)
    painted = session.labels.array[z] == lv
    assert painted.sum() > (value_before[z] == lv).sum()
    assert panel.shown_volume_scores("A").hausdorff95[lv] != before
    for slot, scores in expected.items():
        assert same(panel.shown_volume_scores(slot).average_surface_distance, scores.average_surface_distance)
        assert same(panel.shown_volume_scores(slot).surface_dice, scores.surface_dice)
    voxel_ml = float(np.prod(spacing)) / 1000
    assert panel.shown_measures()["labels"][f"volume {lv}"] == pytest.approx(
        np.count_nonzero(session.labels.array == lv) * voxel_ml)


def test_the_volume_counts_only_reviewed_slices_when_asked(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    assert panel.reviewed_only.isChecked()
    for z in (3, 4, 5):
        session.mark_reviewed(z)
    reviewed = session.reviewed.copy()
    pred, ref = session.models["B"].prediction, session.labels.array
    # The one policy of the report and the verdict (core/metrics, tested against medpy):
    # slices 3 to 5 are one run, its faces cut at slices 2 and 6 no surface.
    expected = reviewed_surface_scores(pred, ref, reviewed, num_classes(session), session.volume.spacing)
    emptied = surface_scores(np.where(reviewed[:, None, None], pred, 0), np.where(reviewed[:, None, None], ref, 0),
                             num_classes(session), session.volume.spacing)
    assert not same(expected.hausdorff95, emptied.hausdorff95), "the case tells the policies apart"
    qtbot.waitUntil(lambda: settled(panel) and panel.shown_volume_scores("B") is not None
                    and same(panel.shown_volume_scores("B").hausdorff95, expected.hausdorff95), timeout=TIMEOUT)
    assert same(panel.shown_volume_scores("B").surface_dice, expected.surface_dice)
    assert "3 of 12 slices" in panel.measures_label.text()


def test_cardiac_measures_are_counted_voxels(qtbot, demo):
    window, panel = demo, controller(demo).panel
    with qtbot.waitSignal(controller(demo).dock.visibilityChanged, timeout=5000):
        controller(demo).dock.raise_()  # the tab in front: it computes nothing behind the metrics tab
    session = window.session
    panel.reviewed_only.setChecked(False)
    labels, spacing = session.labels.array, session.volume.spacing
    voxel_ml = float(np.prod(spacing)) / 1000
    lv, rv, myo = (class_value(session, n) for n in ("left ventricle", "right ventricle", "myocardium"))
    qtbot.waitUntil(lambda: settled(panel) and "lv" in panel.shown_measures().get("labels", {}), timeout=TIMEOUT)
    shown = panel.shown_measures()["labels"]
    assert shown["lv"] == pytest.approx(np.count_nonzero(labels == lv) * voxel_ml)
    assert shown["rv"] == pytest.approx(np.count_nonzero(labels == rv) * voxel_ml)
    assert shown["mass"] == pytest.approx(np.count_nonzero(labels == myo) * voxel_ml * 1.05)
    rows = [panel.measures.verticalHeaderItem(r).text() for r in range(panel.measures.rowCount())]
    assert "LV blood (mL)" in rows and "myocardial mass (g)" in rows
    lv_row = rows.index("LV blood (mL)")
    assert panel.measures.item(lv_row, 0).text() == f"{np.count_nonzero(labels == lv) * voxel_ml:.1f}"
    # Over the reviewed slices only: the volumes of those slices.
    panel.reviewed_only.setChecked(True)
    session.mark_reviewed(4)
    session.mark_reviewed(6)
    qtbot.waitUntil(lambda: settled(panel) and "2 of 12" in panel.measures_label.text(), timeout=TIMEOUT)
    assert panel.shown_measures()["labels"]["lv"] == pytest.approx(
        np.count_nonzero(labels[[4, 6]] == lv) * voxel_ml)


def test_model_measures_and_differences(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    panel.reviewed_only.setChecked(False)
    lv = class_value(session, "left ventricle")
    voxel_ml = float(np.prod(session.volume.spacing)) / 1000
    qtbot.waitUntil(lambda: settled(panel) and "B" in panel.shown_measures(), timeout=TIMEOUT)
    for slot in ("A", "B"):
        assert panel.shown_measures()[slot]["lv"] == pytest.approx(
            np.count_nonzero(session.models[slot].prediction == lv) * voxel_ml)
    headers = [panel.measures.horizontalHeaderItem(c).text() for c in range(panel.measures.columnCount())]
    assert headers[:3] == ["labels", "model A", "model B"] and len(headers) == 5
    rows = [panel.measures.verticalHeaderItem(r).text() for r in range(panel.measures.rowCount())]
    difference = (np.count_nonzero(session.models["A"].prediction == lv)
                  - np.count_nonzero(session.labels.array == lv)) * voxel_ml
    assert panel.measures.item(rows.index("LV blood (mL)"), 3).text() == f"{difference:+.1f}"


def test_columns_can_be_hidden(qtbot, measured):
    panel = controller(measured).panel
    panel.column_choices["ASSD"].setChecked(False)
    panel.column_choices["volumes"].setChecked(False)
    assert panel.boundary.isColumnHidden(1) and not panel.boundary.isColumnHidden(0)
    assert not panel.measures.isVisible()
    assert panel.chosen_columns() == ["HD95", "surface Dice"]


def test_the_plot_draws_hd95_along_the_slices_and_a_click_goes_to_a_slice(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    panel.plot_choice.setCurrentText("HD95 (mm)")
    count, spacing = num_classes(session), session.volume.spacing
    expected = np.array([np.nanmean(slice_surface_scores(session.models["A"].prediction, session.labels.array, z,
                                                         count, spacing).hausdorff95[1:])
                         for z in range(session.volume.shape[0])])

    def drawn():
        _, y = panel.curves["A"].getData() if "A" in panel.curves else (None, None)
        return y is not None and len(y) == len(expected) and same(y, np.where(np.isfinite(expected), expected, np.nan))

    qtbot.waitUntil(drawn, timeout=TIMEOUT)
    controller(window).dock.raise_()  # the tab in front of the metrics panel
    qtbot.waitUntil(panel.plot.isVisible, timeout=15000)
    QApplication.processEvents()  # the plot's layout settles where it stays
    view = panel.plot.getPlotItem().vb
    scene_point = view.mapViewToScene(QPointF(3, float(np.nanmean(expected[np.isfinite(expected)]))))
    QTest.mouseClick(panel.plot.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     panel.plot.mapFromScene(scene_point))
    qtbot.waitUntil(lambda: window.current_slice() == 2, timeout=15000)
    # Dice comes from the live metrics, at once.
    panel.plot_choice.setCurrentText("Dice")
    assert same(panel.curves["A"].getData()[1], session.live.dice_along_slices("A"))


def test_an_edit_updates_the_plot_along_the_slices(qtbot, measured):
    window, panel = measured, controller(measured).panel
    session = window.session
    panel.plot_choice.setCurrentText("surface Dice")
    lv = class_value(session, "left ventricle")
    panel.plot_class.setCurrentIndex(panel.plot_class.findData(lv))
    count, spacing = num_classes(session), session.volume.spacing

    def expected():
        return np.array([slice_surface_scores(session.models["B"].prediction, session.labels.array, z, count,
                                              spacing).surface_dice[lv] for z in range(session.volume.shape[0])])

    def drawn(values):
        y = panel.curves["B"].getData()[1] if "B" in panel.curves else None
        return y is not None and same(y, values)

    before = expected()
    qtbot.waitUntil(lambda: settled(panel) and drawn(before), timeout=TIMEOUT)
    stroke(window, 7, [(40, 40), (44, 44)], lv)  # far from the heart: slice 8's surface Dice drops
    after = expected()
    assert after[7] < before[7] and same(np.delete(after, 7), np.delete(before, 7))
    qtbot.waitUntil(lambda: settled(panel) and drawn(after), timeout=TIMEOUT)


def test_opening_another_image_replaces_everything(qtbot, measured, dialogs):
    window, panel = measured, controller(measured).panel
    old = window.session
    panel.reviewed_only.setChecked(False)
    qtbot.waitUntil(lambda: settled(panel) and "lv" in panel.shown_measures().get("A", {}), timeout=TIMEOUT)
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_demo("lung")  # the cardiac models do not fit a CT: the dialog's answer drops them
    session = window.session
    assert session is not old
    # The old session's labels no longer followed; the new session's labels followed.
    stroke_value = 1
    qtbot.waitUntil(lambda: settled(panel) and "infected %" in panel.shown_measures().get("labels", {}),
                    timeout=TIMEOUT)
    assert "lv" not in panel.shown_measures()["labels"]
    expected = lung_measures(session.labels.array, session.classes, session.volume.spacing,
                             image_hu=session.volume.array)
    assert panel.shown_measures()["labels"]["infected %"] == pytest.approx(expected.infected_percent)
    assert set(panel.shown_measures()) == {"labels"} | set(session.models)
    # The new session's edits reach the panel; the old one's do not.
    z = session.volume.shape[0] // 2
    before = panel.shown_measures()["labels"]["infected"]
    stroke(window, z, [(60, 60), (64, 64)], stroke_value)
    qtbot.waitUntil(lambda: settled(panel) and panel.shown_measures()["labels"]["infected"] > before,
                    timeout=TIMEOUT)
    voxel_ml = float(np.prod(session.volume.spacing)) / 1000
    assert panel.shown_measures()["labels"]["infected"] == pytest.approx(
        np.count_nonzero(session.labels.array == stroke_value) * voxel_ml)


def test_closing_the_window_while_computing(qtbot, measured):
    window, c = measured, controller(measured)
    c.panel.reviewed_only.setChecked(False)
    c.panel.plot_choice.setCurrentText("ASSD (mm)")
    c.panel.tolerance.setValue(1.0)
    c.refresh_volume()  # now, not after the pause
    assert c.panel.status.text() == "computing\u2026"
    window.close()
    QApplication.processEvents()  # what the workers had queued arrives, into a window without a session
    assert window.session is None


def test_nothing_is_computed_while_the_dock_is_behind_the_metrics_tab(qtbot, demo):
    panel = controller(demo).panel
    panel.reviewed_only.setChecked(False)  # every slice counts: there is something to measure
    qtbot.wait(700)  # past the debounce: a hidden dock would have started its jobs by now
    assert panel.shown_measures() == {} and panel.shown_volume_scores("A") is None
    with qtbot.waitSignal(controller(demo).dock.visibilityChanged, timeout=5000):
        controller(demo).dock.raise_()
    qtbot.waitUntil(lambda: "lv" in panel.shown_measures().get("labels", {}), timeout=TIMEOUT)
