"""The worklist in the window: open a dataset, sort, open cases, save on leaving, statuses,
background prediction with cancel, the dataset report. Tiny nnU-Net datasets made here."""
import csv

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QInputDialog, QMessageBox

from segview.core.io import load_labels, load_volume
from segview.core.journal import image_key, journal_path
from segview.core.review_state import update_sidecar
from segview.gui.worklist_panel import SORTS, dataset_layout
from segview.session import CaseSession, ReviewSession, Worklist
from tests.session.conftest import make_checkpoint, make_dataset

from .helpers import drag, load_models

TIMEOUT = 60000


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Predictions are cached in a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 4)
    return folder


@pytest.fixture
def checkpoints(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    return {"A": make_checkpoint(models / "ce.safetensors", 1), "B": make_checkpoint(models / "ce_dice.safetensors", 2)}


def action(window, *path):
    """The menu action at ``path`` (texts without the & of their mnemonics)."""
    actions = window.menuBar().actions()
    for text in path:
        found = next((a for a in actions if a.text().replace("&", "") == text), None)
        assert found is not None, f"no menu item {text!r} in {[a.text() for a in actions]}"
        actions = found.menu().actions() if found.menu() is not None else []
    return found


def open_dataset(qtbot, window, folder, checkpoints=None):
    """Open dataset ``folder`` and wait until its first case not done is on screen."""
    controller = window.worklist_controller
    with qtbot.waitSignals([controller.dataset_opened, controller.case_opened], timeout=TIMEOUT):
        controller.open_dataset(folder, checkpoints)
    return controller


def open_case(qtbot, controller, name):
    """Select the row of ``name`` and press Enter on the table (nothing to wait for when it
    is on screen already, as the first case of a dataset opened is, unless another segview
    held it: then it is read again)."""
    session = controller.window.session
    if isinstance(session, CaseSession) and session.case.name == name and session.locked_by is None:
        return controller.panel.select(name)
    table = controller.panel.table
    table.setCurrentCell(controller.panel.row_of(name), 0)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(table, Qt.Key_Return)
    assert opened.args == [name]


def status_cell(controller, name):
    return controller.panel.cell(name, "Status")


def predictions(image, checkpoints):
    """Each model's labels on ``image``, predicted by a session of its own (the reference)."""
    session = ReviewSession.open(image)
    for slot, path in checkpoints.items():
        session.load_model(slot, path)
    assert session.predict()
    result = {slot: session.prediction(slot).copy() for slot in checkpoints}
    session.close(discard=True)
    return result


def test_file_open_dataset_lists_every_case_with_its_status_from_the_sidecars(qtbot, window, dataset,
                                                                               monkeypatch):
    update_sidecar(dataset / "labelsTr" / "case_001.nii.gz", case={"status": "done", "note": ""})
    update_sidecar(dataset / "labelsTr" / "case_002.nii.gz", case={"status": "flagged", "note": "motion on 3-4"})
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(dataset))
    controller = window.worklist_controller
    assert not action(window, "Worklist", "Next case").isEnabled()  # nothing to step through yet
    with qtbot.waitSignals([controller.dataset_opened, controller.case_opened], timeout=TIMEOUT):
        action(window, "File", "Open dataset...").trigger()
    panel = controller.panel
    assert controller.dock.isVisible()
    assert panel.names() == ["case_000", "case_001", "case_002", "case_003"]
    assert [status_cell(controller, n).text() for n in panel.names()] == ["new", "done", "flagged", "new"]
    assert status_cell(controller, "case_002").toolTip() == "motion on 3-4"
    assert panel.cell("case_003", "Reviewed").text() == "0 / ?"  # no image read to list them
    assert panel.cell("case_003", "Dice A").text() == "–"        # no models yet
    assert action(window, "Worklist", "Next case").isEnabled()


def test_a_dataset_opened_on_an_empty_window_shows_its_first_case_not_done(qtbot, window, dataset, monkeypatch):
    """A new user saw the worklist beside an empty view, and nothing to review."""
    update_sidecar(dataset / "labelsTr" / "case_000.nii.gz", case={"status": "done", "note": ""})
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(dataset))
    controller = window.worklist_controller
    assert window.session is None
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        action(window, "File", "Open dataset...").trigger()
    assert opened.args == ["case_001"]                          # case_000 is done: Next would skip it too
    session = window.session
    assert isinstance(session, CaseSession) and session.case.name == "case_001"
    image = load_volume(dataset / "imagesTr" / "case_001_0000.nii.gz")
    np.testing.assert_array_equal(session.volume.array, image.array)
    assert controller.panel.selected() == "case_001"
    assert status_cell(controller, "case_001").text() == "new"  # opening alone changes nothing


def test_a_dataset_opened_over_an_edited_image_keeps_it_when_the_user_cancels(qtbot, window, dataset, tmp_path,
                                                                              dialogs):
    image = dataset / "imagesTr" / "case_002_0000.nii.gz"
    elsewhere = tmp_path / "elsewhere.nii.gz"
    elsewhere.write_bytes(image.read_bytes())
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_image(elsewhere)
    window.tools.set_tool("brush")
    drag(window.workspace.active_view(), [(1, 1), (1, 6)])
    edited = window.session
    painted = edited.labels.array.copy()
    assert edited.modified
    dialogs.answers = [QMessageBox.Cancel]                      # "Unsaved labels. Save them?"
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.dataset_opened, timeout=TIMEOUT):
        controller.open_dataset(dataset)
    qtbot.waitUntil(lambda: any(kind == "question" for kind, _ in dialogs), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: controller.opening is None, timeout=TIMEOUT)
    assert window.session is edited and edited.modified      # the edits stay on screen, unsaved, not lost
    np.testing.assert_array_equal(edited.labels.array, painted)


def test_a_folder_is_a_dataset_in_the_nnunet_layout_or_of_dicom_studies_not_one_series(tmp_path, dataset):
    assert dataset_layout(dataset) == "nnU-Net"
    series = tmp_path / "series"
    series.mkdir()
    for n in range(3):
        (series / f"IM{n}.dcm").write_bytes(b"")
    assert dataset_layout(series) is None              # one series: an image, as before
    studies = tmp_path / "studies"
    for name in ("patient1", "patient2"):
        (studies / name).mkdir(parents=True)
    assert dataset_layout(studies) == "DICOM"
    assert dataset_layout(tmp_path / "missing") is None


def test_after_the_queue_ran_sorting_by_most_disputed_orders_the_cases_by_a_recount(qtbot, window, dataset,
                                                                                    checkpoints):
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT) as finished:
        open_dataset(qtbot, window, dataset, checkpoints)  # both models: the queue starts by itself
    assert finished.args == [True]
    shares = {}
    for name in ("case_000", "case_001", "case_002", "case_003"):
        predicted = predictions(dataset / "imagesTr" / f"{name}_0000.nii.gz", checkpoints)
        a, b = predicted["A"], predicted["B"]  # voxels where they differ per voxel of either foreground
        shares[name] = np.count_nonzero(a != b) / np.count_nonzero((a > 0) | (b > 0))
    panel = controller.panel
    assert panel.names() == sorted(shares)  # rows kept still while the queue filled them in
    index = [key for _, key in SORTS].index("disputed")
    panel.sort_choice.setCurrentIndex(index)
    panel.sort_choice.activated.emit(index)
    assert panel.names() == sorted(shares, key=lambda n: (-shares[n], n))
    for name, share in shares.items():
        assert panel.cell(name, "A vs B differ").text() == f"{share * 100:.1f} %"
        assert panel.cell(name, "Uncertainty").text() != "–"


def test_models_loaded_in_an_empty_window_predict_the_dataset_opened_next(qtbot, window, dataset, checkpoints):
    load_models(qtbot, window, [checkpoints["A"], checkpoints["B"]])
    assert window.models_hint() == "Models A and B loaded: they run on the image you open."
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT) as finished:
        open_dataset(qtbot, window, dataset)  # no checkpoints given: the window's, waiting for an image
    assert finished.args == [True]
    assert {s: p.name for s, p in controller.worklist.checkpoints.items()} == {"A": "ce.safetensors",
                                                                              "B": "ce_dice.safetensors"}
    assert "no models" not in controller.panel.title.text()
    assert set(window.session.models) == {"A", "B"}             # on the first case, opened with the dataset
    assert all(controller.panel.cell(name, "A vs B differ").text() != "–" for name in controller.panel.names())


def test_a_case_opens_with_its_cached_predictions_and_runs_no_inference(qtbot, window, dataset, checkpoints):
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):
        open_dataset(qtbot, window, dataset, checkpoints)
    # The first case's own run (shown before its predictions were cached) may still be going
    # on a loaded machine; its finish is not case_002's.
    qtbot.waitUntil(lambda: window.inference is None, timeout=TIMEOUT)
    expected = predictions(dataset / "imagesTr" / "case_002_0000.nii.gz", checkpoints)
    with qtbot.assertNotEmitted(window.inference_finished, wait=300):
        open_case(qtbot, controller, "case_002")
        session = window.session
        assert isinstance(session, CaseSession) and session.case.name == "case_002"
        for slot in "AB":  # all there at once: from the cache, not streamed by inference
            assert session.models[slot].predicted.all()
            np.testing.assert_array_equal(session.prediction(slot), expected[slot])
    reference = load_labels(dataset / "labelsTr" / "case_002.nii.gz",
                            load_volume(dataset / "imagesTr" / "case_002_0000.nii.gz"))
    np.testing.assert_array_equal(session.labels.array, reference)
    assert controller.panel.selected() == "case_002"


def test_ctrl_n_saves_the_painted_case_into_labelstr_and_opens_the_next(qtbot, window, dataset):
    controller = open_dataset(qtbot, window, dataset)
    labels_path = dataset / "labelsTr" / "case_000.nii.gz"
    image = load_volume(dataset / "imagesTr" / "case_000_0000.nii.gz")
    before = load_labels(labels_path, image)
    open_case(qtbot, controller, "case_000")
    view = window.workspace.active_view()
    window.tools.set_tool("brush")
    window.tools.radius.setValue(1.0)
    drag(view, [(1, 1), (1, 6)])  # a corner of background
    painted = window.session.labels.array.copy()
    assert (painted != before).any() and window.session.modified
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert opened.args == ["case_001"] and window.session.case.name == "case_001"
    np.testing.assert_array_equal(load_labels(labels_path, image), painted)
    kept = dataset / "labelsTr" / ".previous" / "case_000.original.nii.gz"
    np.testing.assert_array_equal(load_labels(kept, image), before)
    assert status_cell(controller, "case_000").text() == "in progress"
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_P, Qt.ControlModifier)  # back, nothing to save on the way
    assert opened.args == ["case_000"]
    np.testing.assert_array_equal(window.session.labels.array, painted)


def test_next_follows_the_order_of_the_last_sort(qtbot, window, dataset):
    controller = open_dataset(qtbot, window, dataset)
    index = [key for _, key in SORTS].index("status")
    controller.set_status("case_002", "done")  # not the case on screen (case_000, opened with the dataset)
    panel = controller.panel
    panel.sort_choice.setCurrentIndex(index)
    panel.sort_choice.activated.emit(index)
    assert panel.names() == ["case_000", "case_001", "case_003", "case_002"]  # new first, done last
    open_case(qtbot, controller, "case_003")
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.mouseClick(panel.buttons["next"], Qt.LeftButton)
    assert opened.args == ["case_002"]


def test_done_and_flag_are_saved_in_the_dataset(qtbot, window, dataset, monkeypatch):
    controller = open_dataset(qtbot, window, dataset)
    panel = controller.panel
    panel.table.selectRow(panel.row_of("case_001"))
    qtbot.mouseClick(panel.buttons["done"], Qt.LeftButton)
    monkeypatch.setattr(QInputDialog, "getText", lambda *_, **__: ("contrast missing", True))
    panel.table.selectRow(panel.row_of("case_003"))
    action(window, "Worklist", "Flag case...").trigger()
    assert status_cell(controller, "case_001").text() == "done"
    assert status_cell(controller, "case_003").text() == "flagged"
    assert status_cell(controller, "case_003").toolTip() == "contrast missing"
    again = {c.name: (c.status, c.note) for c in Worklist.open(dataset).cases}
    assert again == {"case_000": ("new", ""), "case_001": ("done", ""), "case_002": ("new", ""),
                     "case_003": ("flagged", "contrast missing")}


def test_the_prediction_queue_can_be_cancelled_and_taken_up_again(qtbot, window, tmp_path, checkpoints):
    folder = tmp_path / "Dataset002_Eight"
    make_dataset(folder, 8)
    controller = open_dataset(qtbot, window, folder)
    steps = []
    controller.queue_step.connect(steps.append)
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT) as finished:
        controller.set_checkpoints(checkpoints)  # both models: the queue starts
        assert controller.panel.queue.isVisible()
        qtbot.mouseClick(controller.panel.queue.cancel, Qt.LeftButton)
    assert finished.args == [False] and len(steps) < 16
    assert not controller.panel.queue.isVisible()
    done_before = {(s.case, s.slot) for s in steps}
    steps.clear()
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT) as finished:
        qtbot.mouseClick(controller.panel.buttons["predict"], Qt.LeftButton)
    assert finished.args == [True] and len(steps) == 16
    assert {(s.case, s.slot) for s in steps if s.cached} == done_before


def test_export_dataset_report_scores_the_reviewed_slices(qtbot, window, dataset, checkpoints, monkeypatch,
                                                          dialogs):
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):
        open_dataset(qtbot, window, dataset, checkpoints)
    out = dataset.parent / "report"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_: str(out))
    action(window, "File", "Export dataset report...").trigger()  # nothing reviewed yet: no verdict, nothing written
    qtbot.waitUntil(lambda: any("has reviewed slices to compare" in text for _, text in dialogs), timeout=TIMEOUT)
    assert "case_001: no reviewed slice" in dialogs[-1][1] and not out.exists()
    qtbot.waitUntil(lambda: controller._report_stop is None, timeout=TIMEOUT)
    open_case(qtbot, controller, "case_001")
    window.session.mark_reviewed(2)
    window.session.mark_reviewed(3)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)  # saves case_001 with its reviewed slices
    assert controller.panel.cell("case_001", "Reviewed").text() == "2 / 6"
    with qtbot.waitSignal(controller.report_written, timeout=TIMEOUT):
        action(window, "File", "Export dataset report...").trigger()
    with open(out / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["case"], r["model"]) for r in rows] == [("case_001", "A"), ("case_001", "B")]
    image = dataset / "imagesTr" / "case_001_0000.nii.gz"
    labels = load_labels(dataset / "labelsTr" / "case_001.nii.gz", load_volume(image))
    predicted = predictions(image, checkpoints)
    for row in rows:
        assert row["reviewed_slices"] == "2"
        assert int(row["correction_voxels"]) == int(np.count_nonzero(predicted[row["model"]][2:4] != labels[2:4]))
    assert (out / "verdict.md").is_file() and (out / "verdict.png").is_file()
    # A second report into the same folder asks first; No keeps the first, untouched.
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    dialogs.answers = [QMessageBox.No]
    action(window, "File", "Export dataset report...").trigger()
    assert dialogs[-1][0] == "question" and "results.csv, verdict.md, verdict.json, verdict.png" in dialogs[-1][1]
    assert dialogs.defaults[-1] == QMessageBox.StandardButton.No
    assert controller._report_stop is None and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written
    dialogs.answers = [QMessageBox.Yes]
    with qtbot.waitSignal(controller.report_written, timeout=TIMEOUT):
        action(window, "File", "Export dataset report...").trigger()


def test_a_case_that_cannot_be_read_is_listed_with_the_reason_and_the_case_left_stays_saved(qtbot, window,
                                                                                            dataset, dialogs):
    (dataset / "imagesTr" / "case_004_0000.nii.gz").write_bytes(b"not an image")
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_003")
    drag(window.workspace.active_view(), [(1, 1), (1, 6)])
    painted = window.session.labels.array.copy()
    with qtbot.waitSignal(controller.case_failed, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert window.session.case.name == "case_003" and not window.session.modified  # saved, still on screen
    image = load_volume(dataset / "imagesTr" / "case_003_0000.nii.gz")
    np.testing.assert_array_equal(load_labels(dataset / "labelsTr" / "case_003.nii.gz", image), painted)
    cell = status_cell(controller, "case_004")
    assert cell.text() == "cannot open" and cell.toolTip()
    assert [kind for kind, _ in dialogs] == ["critical"]
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_P, Qt.ControlModifier)  # the rest stay usable
    assert opened.args == ["case_002"]


def test_a_case_whose_labels_lie_on_another_grid_opens_empty_to_be_labelled_again(qtbot, window, dataset,
                                                                                    dialogs):
    """A tester's case whose label file lay on another grid gave "cannot open", where File >
    Open gave empty labels and a warning: it could not be relabelled."""
    import nibabel

    bad = dataset / "labelsTr" / "case_002.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((64, 64, 5), np.uint8), np.eye(4)), bad)
    written = bad.read_bytes()
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_002")
    assert window.session.case.name == "case_002" and not window.session.labels.array.any()
    assert [kind for kind, _ in dialogs] == ["warning"]
    assert "The labels case_002.nii.gz were not read" in dialogs[0][1]
    assert "size (x, y, z) (64, 64, 5) vs (24, 24, 6)" in dialogs[0][1]
    cell = status_cell(controller, "case_002")
    assert cell.text() == "new, labels not read" and "(64, 64, 5) vs (24, 24, 6)" in cell.toolTip()
    open_case(qtbot, controller, "case_001")  # left unsaved: its file is as it was
    assert bad.read_bytes() == written


def test_other_checkpoints_restart_the_queue_at_once(qtbot, window, dataset, checkpoints):
    controller = window.worklist_controller
    swapped = {"A": checkpoints["B"], "B": checkpoints["A"]}
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT) as finished:
        open_dataset(qtbot, window, dataset, checkpoints)
        controller.set_checkpoints(swapped)  # the first queue is still going
    assert finished.args == [True]
    again = Worklist.open(dataset, swapped)
    assert all(not np.isnan(case.disputed) for case in again.cases)


def count_sessions(monkeypatch, worklist):
    """The names ``worklist.session`` is called with, in order (in workers too)."""
    calls = []
    session = worklist.session

    def counted(name, *args, **options):
        calls.append(name)
        return session(name, *args, **options)

    monkeypatch.setattr(worklist, "session", counted)
    return calls


def files_of(folder):
    """What a folder holds, but its case locks: {relative path: bytes}."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".locks" not in p.parts}


def journal_of(dataset, name):
    """The edit journal a session of case ``name`` writes."""
    return journal_path(image_key(load_volume(dataset / "imagesTr" / f"{name}_0000.nii.gz")))


def test_the_next_case_opens_in_the_background_and_ctrl_n_shows_it_without_opening_it_again(
        qtbot, window, dataset, checkpoints, monkeypatch):
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):
        open_dataset(qtbot, window, dataset, checkpoints)
    calls = count_sessions(monkeypatch, controller.worklist)
    before = files_of(dataset)
    with qtbot.waitSignal(controller.case_prefetched, timeout=TIMEOUT) as prefetched:
        open_case(qtbot, controller, "case_002")
    assert prefetched.args == ["case_003"] and controller.prefetched == "case_003"
    assert calls == ["case_002", "case_003"]
    assert window.session.case.name == "case_002"         # on screen: the case opened, not the next
    assert journal_of(dataset, "case_003").is_file()       # open, as any case: its journal, its lock
    assert files_of(dataset) == before                     # nothing written into the dataset
    assert status_cell(controller, "case_003").text() == "new"
    expected = predictions(dataset / "imagesTr" / "case_003_0000.nii.gz", checkpoints)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert opened.args == ["case_003"] and calls[:2] == ["case_002", "case_003"]
    assert calls.count("case_003") == 1
    session = window.session
    assert isinstance(session, CaseSession) and session.case.name == "case_003"
    for slot in "AB":
        assert session.models[slot].predicted.all()
        np.testing.assert_array_equal(session.prediction(slot), expected[slot])
    assert not session.modified and controller.panel.selected() == "case_003"
    assert Worklist.open(dataset).case("case_003").status == "new"  # opening marks nothing


def test_ctrl_n_at_once_waits_for_the_case_opening_in_the_background(qtbot, window, dataset, monkeypatch):
    controller = open_dataset(qtbot, window, dataset)
    calls = count_sessions(monkeypatch, controller.worklist)
    open_case(qtbot, controller, "case_001")  # case_002 starts opening in the background
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)  # whether it is open yet or not
    assert opened.args == ["case_002"] and window.session.case.name == "case_002"
    assert calls.count("case_002") == 1


def test_an_unused_prefetched_case_is_closed_when_the_order_changes_or_the_window_closes(qtbot, window,
                                                                                           dataset):
    controller = open_dataset(qtbot, window, dataset)
    with qtbot.waitSignal(controller.case_prefetched, timeout=TIMEOUT):
        open_case(qtbot, controller, "case_000")
    first = journal_of(dataset, "case_001")
    assert controller.prefetched == "case_001" and first.is_file()
    controller.set_status("case_001", "done")
    panel = controller.panel
    index = [key for _, key in SORTS].index("status")
    panel.sort_choice.setCurrentIndex(index)
    with qtbot.waitSignal(controller.case_prefetched, timeout=TIMEOUT) as prefetched:
        panel.sort_choice.activated.emit(index)  # new first, done last: case_002 comes next now
    assert prefetched.args == ["case_002"] and controller.prefetched == "case_002"
    assert not first.exists()  # closed, its journal deleted: it had no edits
    assert Worklist.open(dataset).case("case_001").status == "done"
    second, shown = journal_of(dataset, "case_002"), journal_of(dataset, "case_000")
    assert second.is_file() and shown.is_file()
    window.close()
    assert not second.exists() and not shown.exists()
    assert controller.prefetched is None


def test_a_case_with_a_crashed_sessions_edits_is_not_prefetched_and_offers_them_when_opened(
        qtbot, window, dataset, checkpoints, dialogs, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from segview.gui.workers import Worker

    crashed = ReviewSession.open(dataset / "imagesTr" / "case_001_0000.nii.gz",
                                 labels=dataset / "labelsTr" / "case_001.nii.gz")
    crashed.mark_reviewed(0)
    crashed.save()  # a saved mark is not among the edits recovered (a tester read "2 marked" for 1)
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    controller = window.worklist_controller
    # Nothing opened ahead until each case's image key is known, so that the prefetch of
    # case_001 reads nothing (``calls`` below); before its key is known, it reads the image to
    # learn it (a test of its own, below).
    controller.prefetch_enabled = False
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):  # each case's image key is known
        open_dataset(qtbot, window, dataset, checkpoints)
    assert controller.worklist.case("case_001").key is not None
    controller.prefetch_enabled = True
    open_case(qtbot, controller, "case_003")
    calls = count_sessions(monkeypatch, controller.worklist)
    open_case(qtbot, controller, "case_000")
    assert Worker.pool().waitForDone(TIMEOUT)
    QApplication.processEvents()  # the prefetch's end
    assert controller.prefetched is None and calls == ["case_000"]
    dialogs.answers.append(QMessageBox.Yes)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert opened.args == ["case_001"] and calls[:2] == ["case_000", "case_001"]  # then case_002 prefetches
    said = "2 slices reviewed, 1 marked and 0 unmarked against the labels open now"
    assert any(kind == "question" and said in text for kind, text in dialogs)
    assert window.session.reviewed[2]


@pytest.mark.parametrize("dropped", [True, False])
def test_a_case_with_a_crashed_sessions_edits_opened_before_its_key_is_known_still_offers_them(
        qtbot, window, dataset, dialogs, dropped):
    """No model, no prediction queue: case_001's image key is unknown when the first case
    opens and the next is opened ahead. That set the crashed journal aside, and once the
    prefetch was dropped unused (prefetching turned off), Ctrl+N no longer offered the edits."""
    from segview.gui.workers import Worker

    crashed = ReviewSession.open(dataset / "imagesTr" / "case_001_0000.nii.gz",
                                 labels=dataset / "labelsTr" / "case_001.nii.gz")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    controller = open_dataset(qtbot, window, dataset)  # case_000 on screen, case_001 next
    assert Worker.pool().waitForDone(TIMEOUT)
    QApplication.processEvents()  # the prefetch's end
    if dropped:
        controller.set_prefetch(False)
    dialogs.answers.append(QMessageBox.Yes)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert opened.args == ["case_001"]
    said = "1 slice reviewed, 1 marked and 0 unmarked against the labels open now"
    assert any(kind == "question" and said in text for kind, text in dialogs)
    assert window.session.reviewed[2]


@pytest.mark.parametrize("answer", [QMessageBox.Yes, QMessageBox.No])
def test_the_row_of_a_case_with_a_crashed_sessions_edits_says_so_until_they_are_restored_or_declined(
        qtbot, window, dataset, dialogs, answer):
    """A radiologist back after a crash could not tell which case held the unsaved edits
    until it was opened."""
    from segview.gui.workers import Worker

    for name in ("case_001", "case_002"):
        crashed = Worklist.open(dataset).session(name)  # its image key is known from now on
        crashed.mark_reviewed(2)
        crashed.close()  # unsaved: the journal stays behind, as after a crash
    dialogs.answers.append(QMessageBox.No)
    controller = open_dataset(qtbot, window, dataset)  # case_001 on screen, to offer its edits; case_002 next
    assert window.session.case.name == "case_001"
    assert Worker.pool().waitForDone(TIMEOUT)
    QApplication.processEvents()  # the prefetch's end
    statuses = [status_cell(controller, n).text() for n in controller.panel.names()]
    assert statuses == ["new", "new", "new, crashed edits", "new"]  # case_001's declined
    assert "unsaved edits" in status_cell(controller, "case_002").toolTip()
    dialogs.answers.append(answer)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert sum(kind == "question" and "never saved" in text for kind, text in dialogs) == 2
    assert "crashed" not in status_cell(controller, "case_002").text()
    assert "unsaved edits" not in status_cell(controller, "case_002").toolTip()


def test_segview_dataset_opens_the_worklist(tmp_path, dataset):
    """``segview DATASET``: an nnU-Net folder is no image, so only the worklist opens it
    (as an image it would fail, exit status 2, before the screenshot)."""
    import os
    import subprocess
    import sys

    png = tmp_path / "shot.png"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_STATE_HOME=str(tmp_path / "state"), QT_QPA_PLATFORM="offscreen")
    subprocess.run([sys.executable, "-m", "segview.cli", str(dataset), "--screenshot", str(png)], check=True,
                   timeout=180, env=env)
    assert png.is_file()
