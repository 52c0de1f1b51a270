"""The faults a person saw in the window (issue 23), each reproduced through what a person
does: keys, clicks and the mouse on the demo."""
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from segview.core.classes import class_name
from segview.core.phantoms import make_phantom
from segview.gui.tools import CLASS_OPERATIONS
from segview.resources import DEMO_MODELS
from segview.session import ReviewSession

from .helpers import display_pixel, drag, drag_points, load_models, wait_for_inference, widget_point


@pytest.fixture
def editing(qtbot, window):
    """The demo image with empty labels (its classes kept)."""
    case = make_phantom("cardiac", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
    return window


@pytest.fixture
def both_models(qtbot, demo):
    """The demo with both shipped cardiac models, every slice predicted."""
    load_models(qtbot, demo, DEMO_MODELS)
    with wait_for_inference(qtbot, demo):
        pass
    return demo


def move_mouse_away(window) -> None:
    """The mouse leaves the image for the metrics dock, as when a person goes for the ranking."""
    QTest.mouseMove(window.metrics.ranking.viewport(), window.metrics.ranking.viewport().rect().center())
    QTest.qWait(15)


# -- 3: the read-out under the mouse ---------------------------------------------------

def test_the_read_out_follows_a_fill_undo_and_redo_without_a_mouse_move(qtbot, editing):
    window, view = editing, editing.workspace.viewer.views["axial"]
    window.tools.set_tool("brush")
    window.tools.radius.setValue(2.0)
    drag(view, [(60, 60), (60, 120), (120, 120), (120, 60), (60, 60)])  # a closed outline
    name = class_name(window.session.classes, window.tools.active_class())
    qtbot.keyClick(window, Qt.Key_G)  # the fill tool
    drag(view, [(90, 90)])  # the mouse rests inside the outline and clicks: the fill
    assert window.read_out.text().endswith(f"label: {name}")
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert window.read_out.text().endswith("label: background")
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert window.read_out.text().endswith(f"label: {name}")


def test_the_read_out_follows_adopt_d_and_the_ranking_without_a_mouse_move(qtbot, both_models):
    window, session = both_models, both_models.session
    qtbot.keyClick(window, Qt.Key_K)
    pane, ranking = window.workspace.compare.panes["B"], window.metrics.ranking
    z = ranking.item(1).data(Qt.UserRole)  # not the most disputed: D goes elsewhere
    window.workspace.go_to_slice(z)
    a, b = session.models["A"].prediction[z], session.models["B"].prediction[z]
    session.labels.clear_slice(z)
    ys, xs = np.nonzero((a != b) & (b != 0))
    seed = (int(ys[0]), int(xs[0]))
    qtbot.keyClick(window, Qt.Key_J)  # adopt B's labelling of the region under the click
    drag(pane, [display_pixel(pane, (z, *seed))])
    assert f"label: {class_name(session.classes, int(b[seed]))}" in window.read_out.text()
    assert window.read_out.text().startswith(f"voxel ({seed[1]}, {seed[0]}, {z})")
    move_mouse_away(window)
    qtbot.keyClick(window, Qt.Key_D)  # the most disputed slice
    target = window.current_slice()
    assert target != z and window.read_out.text().startswith(f"voxel ({seed[1]}, {seed[0]}, {target})")
    item = next(ranking.item(n) for n in range(ranking.count()) if ranking.item(n).data(Qt.UserRole) != target)
    qtbot.mouseClick(ranking.viewport(), Qt.LeftButton, pos=ranking.visualItemRect(item).center())
    chosen = item.data(Qt.UserRole)
    assert window.current_slice() == chosen
    label = class_name(session.classes, int(session.labels.array[chosen][seed]))
    assert window.read_out.text().startswith(f"voxel ({seed[1]}, {seed[0]}, {chosen})")
    assert f"label: {label}" in window.read_out.text()


# -- 5: the Window box after a right drag ------------------------------------------------

def test_after_a_right_drag_the_window_box_says_custom_with_the_values(qtbot, demo):
    window, view = demo, demo.workspace.active_view()
    box, preset = window.window_choice, window.window_choice.currentText()
    start = widget_point(view, 100, 100)
    drag_points(view, [start, start + QPointF(64, -32)], button=Qt.RightButton)
    center, width = view.window
    assert box.currentText() == f"Custom ({center:.0f}/{width:.0f})"
    box.setCurrentIndex(box.findText(preset))  # the preset again, then the custom window again
    assert view.window != (center, width) and box.currentText() == preset
    box.setCurrentIndex(box.findText(f"Custom ({center:.0f}/{width:.0f})"))
    assert view.window == (center, width)


# -- 4: the plot along the slices --------------------------------------------------------

def test_the_dice_plot_reads_dice_from_0_to_1_and_shows_nothing_without_a_model(qtbot, demo):
    window, controller = demo, demo.measures_controller
    with qtbot.waitSignal(controller.dock.visibilityChanged, timeout=5000):
        controller.dock.raise_()
    panel = controller.panel
    assert panel.hint.isVisible() and not panel.plot.isVisible()  # no empty axes, no empty legend
    load_models(qtbot, window, DEMO_MODELS)
    qtbot.waitUntil(lambda: window.inference is None and all(m.predicted.all() for m in window.session.models.values()),
                    timeout=120000)
    panel.plot_choice.setCurrentText("Dice")

    def plotted() -> bool:  # the measures are counted in a worker: the curve is NaN until they come
        data = panel.curves["A"].getData()[1] if panel.plot.isVisible() and len(panel.curves) == 2 else None
        return data is not None and bool(np.isfinite(data).any())

    qtbot.waitUntil(plotted, timeout=60000)
    dice = panel.curves["A"].getData()[1]
    assert 0.4 < np.nanmin(dice) and np.nanmax(dice) < 1  # the demo's Dice: the range that gave "x0.001"
    QTest.qWait(50)
    for plot in (panel.plot, window.metrics.plot):
        axis = plot.getAxis("left")
        assert axis.labelString().split("<")[0].count("x0.") == 0, axis.labelString()
        low, high = plot.getViewBox().viewRange()[1]
        assert -0.1 < low <= 0 and 1 <= high < 1.15  # Dice 0 to 1, whatever the curves' range


# -- 8: the hint to load checkpoints -----------------------------------------------------

def test_the_hint_to_load_checkpoints_goes_while_they_load_and_once_loaded(qtbot, window):
    hints = (window.metrics.hint, window.measures_controller.panel.hint)
    assert all("Load checkpoints" in hint.text() for hint in hints)
    window.load_model(DEMO_MODELS[0], "A")
    assert all(hint.text() == "Loading checkpoint A\u2026" for hint in hints)
    with qtbot.waitSignal(window.model_loaded, timeout=120000):
        pass
    assert all("Load checkpoints" not in hint.text() and "Model A loaded" in hint.text() for hint in hints)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    assert not window.metrics.hint.isVisible() and window.metrics.table.isVisible()


# -- 7: K and Shift+K keep the zoom ------------------------------------------------------

def shown(view):
    """(centre x, centre y, mm per screen pixel) of what ``view`` shows, and whether it is
    the whole slice."""
    (x0, x1), (y0, y1) = view.box.viewRange()
    rows, cols = view.image_item.image.shape
    row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
    whole = x0 <= 0 and x1 >= cols * col_mm and y0 <= 0 and y1 >= rows * row_mm
    return ((x0 + x1) / 2, (y0 + y1) / 2, view.box.viewPixelSize()[0]), whole


def test_k_and_shift_k_keep_the_zoom_and_pan(qtbot, both_models):
    window = both_models
    view, panes = window.workspace.active_view(), window.workspace.compare.panes

    def key(*args):
        qtbot.keyClick(window, *args)
        QTest.qWait(20)  # the zoom follows once the layout has settled

    assert shown(view)[1]
    key(Qt.Key_K)
    assert shown(panes["A"])[1]  # still the whole slice, in the narrower panes
    key(Qt.Key_K)
    view.box.scaleBy((0.4, 0.4))  # zoomed in 2.5 times...
    view.box.translateBy((12.0, -8.0))  # ...and panned (mm)
    zoom, whole = shown(view)
    assert not whole

    def same(found):
        assert found[0] == pytest.approx(zoom[0], abs=0.5) and found[1] == pytest.approx(zoom[1], abs=0.5)
        assert found[2] == pytest.approx(zoom[2], rel=0.01)  # pane B may be a pixel narrower than A

    key(Qt.Key_K)
    for name in ("A", "B"):
        same(shown(panes[name])[0])
    key(Qt.Key_K, Qt.ShiftModifier)
    same(shown(panes["disagreement"])[0])
    key(Qt.Key_K, Qt.ShiftModifier)  # back to the panes it came from, as they were
    assert window.workspace.mode == "compare"
    same(shown(panes["A"])[0])
    key(Qt.Key_K)  # back to the view, as it was
    assert not window.comparing
    same(shown(view)[0])


# -- 6: the legend says what is drawn -----------------------------------------------------

def test_the_legend_says_what_each_mode_draws(qtbot, both_models):
    window = both_models
    names = [c.name for c in window.session.classes if c.value]
    legend = window.legend
    assert all(name in legend.text() for name in names)
    assert "model A outline" in legend.text() and "model B outline" in legend.text()
    qtbot.keyClick(window, Qt.Key_2, Qt.ShiftModifier)  # model A filled
    assert "model A filled" in legend.text() and "model A outline" not in legend.text()
    qtbot.keyClick(window, Qt.Key_K)  # compare: the models filled, the labels outlined
    text = legend.text()
    assert all(name in text for name in names) and "outline" in text and "model A outline" not in text
    assert "model B outline" not in text and "labels outlined" in text
    qtbot.keyClick(window, Qt.Key_K, Qt.ShiftModifier)  # the error map shows no class
    assert not legend.isVisible() or not any(name in legend.text() for name in names)
    qtbot.keyClick(window, Qt.Key_K, Qt.ShiftModifier)  # back to compare
    assert legend.isVisible() and "labels outlined" in legend.text()
    qtbot.keyClick(window, Qt.Key_K)
    assert legend.isVisible() and "model B outline" in legend.text()


# -- 9: checkpoints of other classes -------------------------------------------------------

def test_a_checkpoint_of_other_classes_is_refused_not_scored_under_another_column(qtbot, window, dialogs):
    from segview.resources import MODELS

    case = make_phantom("lung", 0)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.show_session(ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes)))
    load_models(qtbot, window, [MODELS / "lung_ce.safetensors", DEMO_MODELS[0]])  # A lung, B cardiac
    assert list(window.session.models) == ["A"]
    refusals = [text for kind, text in dialogs if kind == "critical"]
    assert len(refusals) == 1 and "Model B" in refusals[0] and "right ventricle" in refusals[0]
    table = window.metrics.table
    columns = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert columns == ["infection", "mean", "pixel\nerror"]
    assert window.device_label.text().startswith("A on ") and "B on" not in window.device_label.text()


def test_models_refused_by_the_next_image_leave_the_status_bar_and_the_legend_is_its_own(qtbot, demo, dialogs,
                                                                                          monkeypatch):
    """A tester opened a lung CT with its labels after the cardiac demo: both cardiac models
    were refused, yet the status bar still named them, and the refusals stood over the
    cardiac classes."""
    load_models(qtbot, demo, list(DEMO_MODELS))
    assert list(demo.session.models) == ["A", "B"]
    case = make_phantom("lung", 0)
    choice = demo.tools.class_choice
    listed = []  # the class box at each refusal

    def refused(parent, title, text, *_):
        listed.append([choice.itemText(n) for n in range(choice.count())])
        dialogs.append(("critical", text))
        assert "B on" not in demo.device_label.text()  # not named while it is being refused

    monkeypatch.setattr(QMessageBox, "critical", refused)
    with qtbot.waitSignal(demo.loaded, timeout=30000):
        demo.show_session(ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes)))
    assert not demo.session.models and demo.device_label.text() == ""
    assert len(listed) == 2 and all(any("infection" in text for text in names) for names in listed)


# -- 1: the class tools --------------------------------------------------------------------

def panel_button(window, text):
    from PySide6.QtWidgets import QPushButton

    return next(b for b in window.tools.findChildren(QPushButton) if b.text() == text)


def choose_class_tool(window, key):
    tools = window.tools
    tools.class_operation.setCurrentIndex(tools.class_operation.findData(key))


def test_each_class_tool_keeps_its_own_amount_unit_and_range(qtbot, demo):
    tools = demo.tools
    choose_class_tool(demo, "islands_smaller")
    tools.amount.setValue(100.0)
    assert tools.amount.suffix() == " mm\u00b3"
    choose_class_tool(demo, "median")  # not the islands' 100 as a kernel of 100 mm
    assert tools.amount.suffix() == " mm" and tools.amount.value() == 3.0 and tools.amount.maximum() <= 20
    tools.amount.setValue(5.0)
    choose_class_tool(demo, "expand")
    assert tools.amount.value() == 2.0
    choose_class_tool(demo, "islands_smaller")
    assert tools.amount.value() == 100.0 and tools.amount.suffix() == " mm\u00b3"
    choose_class_tool(demo, "median")
    assert tools.amount.value() == 5.0


def test_a_class_tool_previews_says_ml_and_asks_before_taking_most_of_a_class(qtbot, demo, dialogs):
    window, labels = demo, demo.session.labels
    tools = window.tools
    tools.class_choice.setCurrentIndex(tools.class_choice.findData(1))  # the right ventricle
    before = labels.array.copy()
    spacing_ml = float(np.prod(window.session.volume.spacing)) / 1000
    rv_ml = np.count_nonzero(before == 1) * spacing_ml
    choose_class_tool(window, "median")
    assert panel_button(window, "Preview").isEnabled()
    qtbot.mouseClick(panel_button(window, "Preview"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "Preview" in window.statusBar().currentMessage(), timeout=60000)
    assert "mL" in window.statusBar().currentMessage() and "voxels" not in window.statusBar().currentMessage()
    assert "preview" in window.workspace.viewer.active.overlays
    np.testing.assert_array_equal(labels.array, before)  # a preview changes nothing
    choose_class_tool(window, "shrink")
    window.tools.amount.setValue(20.0)  # the whole ventricle would go
    qtbot.mouseClick(panel_button(window, "Apply"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "not applied" in window.statusBar().currentMessage(), timeout=60000)
    questions = [text for kind, text in dialogs if kind == "question"]
    assert len(questions) == 1 and f"of the class's {rv_ml:.2f} mL" in questions[0]
    assert dialogs.defaults == [QMessageBox.StandardButton.No]  # Enter keeps the class
    np.testing.assert_array_equal(labels.array, before)  # answered No
    choose_class_tool(window, "expand")  # asks nothing, says mL
    qtbot.mouseClick(panel_button(window, "Apply"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "mL added" in window.statusBar().currentMessage(), timeout=60000)
    added = np.count_nonzero((before != 1) & (labels.array == 1)) * spacing_ml
    assert added > 0 and f"{added:.2f} mL added" in window.statusBar().currentMessage()
    assert len([kind for kind, _ in dialogs if kind == "question"]) == 1


def test_the_dice_strip_legend_reads_a_above_b_whichever_model_came_first(qtbot):
    from types import SimpleNamespace

    from segview.gui.metrics_panel import MetricsPanel

    panel = MetricsPanel()
    qtbot.addWidget(panel)
    dice = {"A": np.array([0.5, 0.6]), "B": np.array([0.7, 0.8])}

    def live(*keys):
        return SimpleNamespace(matrices=dict.fromkeys(keys), dice_along_slices=lambda key: dice[key])

    panel.show_slices(live("B"))  # model B's prediction came first
    panel.show_slices(live("A", "B"))
    names = [label.text for _, label in panel.plot.plotItem.legend.items]
    assert names == ["model A", "model B"]
    np.testing.assert_array_equal(panel.curves["B"].getData()[1], dice["B"])


def test_the_dice_strip_marks_a_slice_scored_alone_between_gaps(qtbot):
    """A tester's lesion on one slice, its neighbours unscored, drew nothing in the strip."""
    from types import SimpleNamespace

    from segview.gui.metrics_panel import MetricsPanel

    panel = MetricsPanel()
    qtbot.addWidget(panel)
    dice = np.array([np.nan, 0.49, np.nan, np.nan, 0.3, 0.4, np.nan])
    panel.show_slices(SimpleNamespace(matrices={"A": None}, dice_along_slices=lambda key: dice))
    shown = np.array([(p.pos().x(), p.pos().y()) for p in panel.dots["A"].points()])
    np.testing.assert_allclose(shown, [(2, 0.49), (5, 0.3), (6, 0.4)])


def test_the_measures_plot_legend_reads_a_above_b_whichever_model_came_first(qtbot):
    from segview.gui.measures_panel import MeasuresPanel

    panel = MeasuresPanel()
    qtbot.addWidget(panel)
    panel.set_curve("B", np.array([0.7, 0.8]))
    panel.set_curve("A", np.array([0.5, 0.6]))
    assert [label.text for _, label in panel.plot.plotItem.legend.items] == ["model A", "model B"]


def test_a_journal_that_cannot_be_written_is_said_once_and_editing_goes_on(qtbot, editing, dialogs, monkeypatch):
    import segview.core.journal as journal_module

    window = editing
    view = window.workspace.viewer.views["axial"]
    qtbot.keyClick(window, Qt.Key_B)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_record", full_disk)
    rows, cols = view.image_item.image.shape
    for row in (rows // 3, rows // 2):  # two strokes: the dialog comes once
        drag(view, [(row, cols // 3), (row, cols // 2)])
    warnings = [text for kind, text in dialogs if kind == "warning"]
    assert len(warnings) == 1 and "No space left" in warnings[0] and "save them soon" in warnings[0]
    assert window.session.journal is None and window.session.labels.can_undo


def test_the_slices_buttons_stay_where_they_are_whatever_class_tool_is_chosen(qtbot, demo):
    """And Preview and Apply keep their sizes (they followed the width of the row above)."""
    button = panel_button(demo, "Fill between slices")
    preview, apply = panel_button(demo, "Preview"), panel_button(demo, "Apply")
    places, sizes = set(), set()
    for key in CLASS_OPERATIONS:
        choose_class_tool(demo, key)
        QApplication.processEvents()
        places.add(button.mapTo(demo.tools, QPoint(0, 0)).y())
        sizes.add((preview.width(), apply.width()))
    assert len(places) == 1, places
    assert len(sizes) == 1, sizes


def test_an_image_opens_in_its_acquired_plane_and_a_chosen_plane_stays_for_the_same_acquisition(qtbot, window):
    """A tester's coronal cardiac series opened as a 9-row axial reformat, where M and the
    Click tool refuse to work."""
    def show(seed):
        case = make_phantom("cardiac", seed)
        with qtbot.waitSignal(window.loaded, timeout=30000):
            window.show_session(ReviewSession.open(case.volume, classes=list(case.classes)))
        return case

    show(0)  # acquired axially
    assert window.workspace.viewer.active.view == "axial"
    window.view_choice.setCurrentIndex(2)  # the person looks at sagittal slices
    show(1)  # acquired axially too: the person's plane stays
    assert window.workspace.viewer.active.view == "sagittal"
    case = show(3)  # acquired coronally
    assert case.volume.display().acquisition_view() == "coronal"
    assert window.workspace.viewer.active.view == "coronal" and window.view_choice.currentText() == "Coronal"
    assert window.slice_number.text().endswith(f"/ {case.volume.shape[0]}")
    window.workspace.active_view().setFocus()
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_M)
    assert window.session.reviewed[window.current_slice()]


def test_the_slice_keys_still_turn_slices_after_a_click_in_the_metrics_table(qtbot, both_models):
    window = both_models
    table = window.metrics.table
    assert table.rowCount() and table.columnCount()
    cell = table.visualItemRect(table.item(0, 0)).center()
    QTest.mouseClick(table.viewport(), Qt.LeftButton, pos=cell)
    before = window.current_slice()
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Up)
    assert window.current_slice() != before


def test_the_offscreen_platform_leaves_stderr_to_real_warnings():
    """``segview --demo --screenshot`` wrote "This plugin does not support
    propagateSizeHints()" five times on stderr, where a person looks for real faults."""
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        from PySide6.QtCore import Qt, qWarning
        from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow
        from segview.gui.app import quiet_offscreen_plugin
        app = QApplication([])
        quiet_offscreen_plugin(app)
        window, dock = QMainWindow(), QDockWidget("dock")
        window.addDockWidget(Qt.LeftDockWidgetArea, dock)
        window.show()
        dock.setFloating(True)  # the offscreen plugin's notes
        app.processEvents()
        qWarning("a real warning")
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stderr
    assert "a real warning" in run.stderr and "does not support" not in run.stderr
