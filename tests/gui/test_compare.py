"""Compare mode: two synchronised panes, shared edits, disagreement, adopt, report."""
import numpy as np
import pytest
from PySide6.QtCore import Qt

from segview.core.compare import disagreement
from segview.resources import DEMO_MODELS

from .test_editing import drag


@pytest.fixture
def comparing(qtbot, demo):
    for key, path in zip("AB", DEMO_MODELS):
        with qtbot.waitSignal(demo.model_loaded, timeout=30000):
            demo.load_model(path, key)
    with qtbot.waitSignal(demo.inference_finished, timeout=60000):
        pass
    demo.set_comparing(True)
    return demo


def test_panes_show_each_model_and_stay_synchronised(qtbot, comparing):
    window, panes = comparing, comparing.compare.panes
    assert panes["A"].isVisible() and panes["B"].isVisible() and not window.viewer.isVisible()
    assert "cardiac_ce: ce" in window.compare.headers["A"].text()
    assert "cardiac_ce_dice: ce+dice, alpha 1" in window.compare.headers["B"].text()
    z = panes["A"].index
    np.testing.assert_array_equal(panes["B"].overlay_items["prediction"].image,
                                  panes["B"].orientation.slice(window.models["B"].prediction, panes["B"].view, z))
    panes["B"].set_slice(2)  # navigation in either pane moves both
    assert panes["A"].index == 2 and window.slice_number.text() == "3 / 12"
    window.slider.setValue(5)
    assert panes["A"].index == panes["B"].index == 5
    panes["A"].box.scaleBy((0.5, 0.5))  # zoom and pan are linked
    np.testing.assert_allclose(panes["B"].box.viewRange(), panes["A"].box.viewRange())
    panes["B"].box.window_dragged.emit(40.0, 0.0)
    assert panes["A"].window == panes["B"].window and window.viewer.active.window == panes["B"].window
    panes["A"].cursor_moved.emit((5, 100, 90))  # the crosshair follows in both panes
    vertical, horizontal = window.compare.crosshairs["B"]
    row, col = panes["B"].orientation.to_display(panes["B"].view, (5, 100, 90), window.volume.shape)
    row_mm, col_mm = panes["B"].orientation.pixel_spacing(panes["B"].view, window.volume.spacing)
    assert vertical.isVisible() and vertical.value() == pytest.approx((col + 0.5) * col_mm)
    assert horizontal.value() == pytest.approx((row + 0.5) * row_mm)


def test_painting_in_pane_b_edits_the_shared_labels_and_both_models_metrics_follow(qtbot, comparing):
    window, pane = comparing, comparing.compare.panes["B"]
    z = pane.index
    before = {k: window.live.slice_scores(k, z).pixel_error for k in "AB"}
    labelled = int((window.labels[z] > 0).sum())
    table_before = window.metrics.table.item(0, 4).text()
    window.tools.set_tool("eraser")
    window.tools.radius.setValue(25.0)
    rows, cols = pane.image_item.image.shape
    drag(pane, [(rows // 2, cols // 2)])
    after = {k: window.live.slice_scores(k, z).pixel_error for k in "AB"}
    assert after["A"] > before["A"] and after["B"] > before["B"]  # the heart erased from the labels
    assert (window.labels[z] > 0).sum() < labelled
    qtbot.waitUntil(lambda: window.metrics.table.item(0, 4).text() != table_before, timeout=2000)
    for key in "AB":  # both panes draw the edited labels (as an outline)
        shown = window.compare.panes[key].overlay_items["labels"].image
        plane = window.compare.panes[key].orientation.slice(window.labels, pane.view, z)
        assert ((shown > 0) <= (plane > 0)).all() and (shown > 0).sum() <= (plane > 0).sum()
    difference = window.metrics.table.verticalHeaderItem(4).text()
    assert difference == "B \u2212 A slice"


def test_the_disagreement_pane_colours_each_voxel_by_category(qtbot, comparing):
    window = comparing
    window.disagreement_action.trigger()
    pane = window.compare.panes["disagreement"]
    assert pane.isVisible() and not window.compare.panes["A"].isVisible()
    z = pane.index
    window.label_map.set_reviewed(z)
    pane.redraw()
    a, b = window.models["A"].prediction, window.models["B"].prediction
    expected = disagreement(*(pane.orientation.slice(v, pane.view, z) for v in (a, b, window.labels)), reviewed=True)
    np.testing.assert_array_equal(pane.overlay_items["disagreement"].image, expected)
    assert set(np.unique(expected)) > {0}


def test_adopt_takes_a_models_region_in_one_undo_step(qtbot, comparing):
    window, pane = comparing, comparing.compare.panes["B"]
    z = pane.index
    a, b = window.models["A"].prediction, window.models["B"].prediction
    window.label_map.clear_slice(z)
    ys, xs = np.nonzero(a[z] != b[z])
    seed = (ys[0], xs[0])
    row, col = pane.orientation.to_display(pane.view, (z, *seed), window.volume.shape)
    window.tools.set_tool("adopt")
    steps = len(window.label_map._undo)
    drag(pane, [(row, col)])  # a click in pane B: B's labelling of that region
    assert len(window.label_map._undo) == steps + 1
    assert window.labels[z][seed] == b[z][seed]
    assert ((window.labels[z] != 0) <= (a[z] != b[z])).all()  # only voxels where A and B differ
    window.undo()
    assert window.labels[z].sum() == 0


def test_next_disputed_slice_and_the_report(qtbot, comparing, tmp_path):
    window = comparing
    ranks = window.metrics.show_ranking(window.live)
    assert ranks and window.metrics.ranking.count() == min(len(ranks), 20)
    window.compare.set_slice(ranks[0].z)
    qtbot.keyClick(window, Qt.Key_D)
    assert window.compare.index == ranks[1].z
    window.metrics.ranking.itemClicked.emit(window.metrics.ranking.item(2))
    assert window.compare.index == ranks[2].z
    window.label_map.set_reviewed(ranks[0].z)
    paths = window.export_report_to(tmp_path)
    assert [p.name for p in paths] == ["comparison.md", "slices.csv", "classes.csv", "dice_along_slices.png"]
    assert "cardiac_ce_dice" in paths[0].read_text() and "reviewed on 1 of 12 slices" in paths[0].read_text()
