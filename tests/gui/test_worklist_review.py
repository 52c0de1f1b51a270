"""What a reviewer does in the window and must find kept (issue 24): Done saves the case and
its row says so, Done and next, D from the top of the ranking with reviewed slices ticked and
last, a case another segview has open shown read-only with its tools off, and where the file
dialogs start (a PACS study's labels never in the cache). Tiny datasets made here."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMessageBox

from segview.core.dicom import write_dicom_series
from segview.core.io import load_labels, load_volume, save_volume
from segview.core.review_state import read_sidecar
from segview.gui import settings as settings_module
from segview.gui.metrics_panel import REVIEWED_TICK
from segview.session import Worklist
from segview.session.case_files import CaseLock
from tests.session.conftest import make_checkpoint, make_dataset, tiny_case

from .helpers import drag, load_models
from .test_worklist_panel import TIMEOUT, action, open_case, open_dataset, status_cell


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Predictions are cached in a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 3)
    return folder


@pytest.fixture
def checkpoints(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    return {"A": make_checkpoint(models / "ce.safetensors", 1), "B": make_checkpoint(models / "ce_dice.safetensors", 2)}


def mark(qtbot, window, z):
    """Go to slice ``z`` and press M, as a reviewer does."""
    window.workspace.go_to_slice(z)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_M)
    assert window.session.reviewed[z]


def reviewed_in_sidecar(dataset, name):
    return [r["z"] for r in (read_sidecar(dataset / "labelsTr" / f"{name}.nii.gz") or {}).get("reviewed", [])]


def test_done_saves_the_case_on_screen_labels_marks_and_status_and_its_row_says_so(qtbot, window, dataset):
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    window.tools.set_tool("brush")
    window.tools.radius.setValue(1.0)
    drag(window.workspace.active_view(), [(1, 1), (1, 6)])
    for z in (1, 4):
        mark(qtbot, window, z)
    painted = window.session.labels.array.copy()
    with qtbot.waitSignal(controller.case_saved, timeout=TIMEOUT) as saved:
        qtbot.mouseClick(controller.panel.buttons["done"], Qt.LeftButton)
    assert saved.args == ["case_001"]
    assert status_cell(controller, "case_001").text() == "done"
    assert controller.panel.cell("case_001", "Reviewed").text() == "2 / 6"
    sidecar = read_sidecar(dataset / "labelsTr" / "case_001.nii.gz")
    assert sidecar["case"]["status"] == "done" and reviewed_in_sidecar(dataset, "case_001") == [1, 4]
    image = load_volume(dataset / "imagesTr" / "case_001_0000.nii.gz")
    np.testing.assert_array_equal(load_labels(dataset / "labelsTr" / "case_001.nii.gz", image), painted)
    assert not window.session.modified and not window.isWindowModified()
    again = Worklist.open(dataset).case("case_001")
    assert (again.status, again.reviewed_count) == ("done", 2)


def test_the_open_cases_row_counts_its_review_marks_as_they_are_made_and_undone(qtbot, window, dataset):
    """A tester saw "0 / 6" beside the case on screen after marking slices, until the case
    was left: the row follows M and Ctrl+Z at once, its status "in progress" while a slice is
    marked (as read from a saved sidecar); leaving without saving shows the saved count."""
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    cell = lambda: controller.panel.cell("case_001", "Reviewed").text()  # noqa: E731
    assert (cell(), status_cell(controller, "case_001").text()) == ("0 / 6", "new")
    for z in (1, 4):
        mark(qtbot, window, z)
    assert (cell(), status_cell(controller, "case_001").text()) == ("2 / 6", "in progress")
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert not window.session.reviewed[4] and cell() == "1 / 6"
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert (cell(), status_cell(controller, "case_001").text()) == ("0 / 6", "new")
    window.session.labels.paint(2, [(5, 5)], 2.0, 1)  # an edit alone: in progress too, until undone
    assert (cell(), status_cell(controller, "case_001").text()) == ("0 / 6", "in progress")
    qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
    assert status_cell(controller, "case_001").text() == "new"
    mark(qtbot, window, 1)
    assert controller.panel.cell("case_000", "Reviewed").text() == "0 / 6"  # the others as saved
    window.session.close(discard=True)
    window.discard_session()
    controller._refresh_row("case_001")
    assert (cell(), status_cell(controller, "case_001").text()) == ("0 / 6", "new")  # nothing saved


def test_loading_model_b_keeps_the_open_cases_unsaved_marks_in_its_row(qtbot, window, dataset, checkpoints):
    """A tester's row went back to "new 0/10" when the fine-tuned model became B, until Done."""
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    for z in (1, 4):
        mark(qtbot, window, z)
    load_models(qtbot, window, [checkpoints["B"]], "B")
    assert controller.panel.cell("case_001", "Reviewed").text() == "2 / 6"
    assert status_cell(controller, "case_001").text() == "in progress"


def test_done_and_next_saves_the_case_as_done_and_opens_the_next(qtbot, window, dataset):
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    mark(qtbot, window, 3)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier | Qt.ShiftModifier)
    assert opened.args == ["case_002"] and window.session.case.name == "case_002"
    assert status_cell(controller, "case_001").text() == "done"
    assert controller.panel.cell("case_001", "Reviewed").text() == "1 / 6"
    assert read_sidecar(dataset / "labelsTr" / "case_001.nii.gz")["case"]["status"] == "done"
    assert reviewed_in_sidecar(dataset, "case_001") == [3]
    # The last case: Done and next saves it as done and says there is no next.
    with qtbot.waitSignal(controller.case_saved, timeout=TIMEOUT):
        qtbot.mouseClick(controller.panel.buttons["done_next"], Qt.LeftButton)
    assert window.session.case.name == "case_002" and status_cell(controller, "case_002").text() == "done"
    assert "last case" in window.statusBar().currentMessage()
    assert read_sidecar(dataset / "labelsTr" / "case_002.nii.gz")["case"]["status"] == "done"
    assert action(window, "Worklist", "Done and next case").shortcut().toString() == "Ctrl+Shift+N"


def test_d_starts_at_the_top_of_the_ranking_and_reviewed_slices_are_ticked_and_last(qtbot, window, dataset,
                                                                                      checkpoints):
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):
        open_dataset(qtbot, window, dataset, checkpoints)
    open_case(qtbot, controller, "case_000")
    session = window.session
    # Opened on its own (the first case not done), maybe before the queue cached its predictions.
    qtbot.waitUntil(lambda: all(m.predicted.all() for m in session.models.values()), timeout=TIMEOUT)
    # The ranking, counted here: voxels where A and B differ on each slice, most first.
    a, b = session.prediction("A"), session.prediction("B")
    differ = [int(np.count_nonzero(a[z] != b[z])) for z in range(a.shape[0])]
    ranked = sorted((z for z in range(len(differ)) if differ[z]), key=lambda z: (-differ[z], z))
    assert len(ranked) >= 3
    window.workspace.go_to_slice(ranked[1])  # wherever the reviewer is on a case just opened
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_D)
    assert window.current_slice() == ranked[0]
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_M)  # reviewed: out of D's way
    qtbot.wait(100)  # the metrics panel is refreshed after a short pause
    ranking = window.metrics.ranking
    texts = [ranking.item(n).text() for n in range(ranking.count())]
    order = [ranking.item(n).data(Qt.UserRole) for n in range(ranking.count())]
    assert order == ranked[1:] + [ranked[0]]  # reviewed after every slice not yet reviewed
    assert texts[-1].startswith(REVIEWED_TICK) and not any(t.startswith(REVIEWED_TICK) for t in texts[:-1])
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_D)
    assert window.current_slice() == ranked[1]
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_D)
    assert window.current_slice() == ranked[2]
    # Another case opened: D starts at its top again.
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    session = window.session
    a, b = session.prediction("A"), session.prediction("B")
    differ = [int(np.count_nonzero(a[z] != b[z])) for z in range(a.shape[0])]
    top = min((z for z in range(len(differ)) if differ[z]), key=lambda z: (-differ[z], z))
    window.workspace.go_to_slice(top)
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_D)
    assert window.current_slice() == top


def test_a_case_open_in_another_segview_is_read_only_in_title_row_and_tools(qtbot, window, dataset, dialogs):
    other = Worklist.open(dataset).session("case_001")  # another segview has it (its lock)
    controller = open_dataset(qtbot, window, dataset)
    other.mark_reviewed(1)  # and has saved a review since this window listed the cases
    other.save()
    open_case(qtbot, controller, "case_001")
    assert any(kind == "warning" and "open in another segview" in text for kind, text in dialogs)
    assert "read-only" in window.windowTitle()
    cell = status_cell(controller, "case_001")
    assert cell.text() == "in progress, read-only" and "another segview" in cell.toolTip()
    assert controller.worklist.case("case_001").reviewed_count == 1 and window.session.reviewed[1]
    tools = window.tools
    assert not tools.isEnabled()
    brush = next(b for b in tools.tool_buttons.buttons() if b.text() == "Brush")
    assert not brush.isEnabled() and "another segview" in brush.toolTip() and "process" in brush.toolTip()
    assert not action(window, "Edit", "Mark slice reviewed").isEnabled()
    before = window.session.labels.array.copy()
    tools.set_tool("brush")  # B, as the menu's shortcut would
    window.tools.radius.setValue(2.0)
    drag(window.workspace.active_view(), [(2, 2), (2, 12), (12, 12)])
    qtbot.keyClick(window.workspace.active_view(), Qt.Key_M)
    window.copy_prediction("A", True)
    np.testing.assert_array_equal(window.session.labels.array, before)
    assert np.flatnonzero(window.session.reviewed).tolist() == [1] and not window.session.modified
    assert "Read-only" in window.statusBar().currentMessage()
    # Leaving it asks nothing (nothing changed); the next case is editable, its row no longer
    # read-only (the other still has it open).
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)
    assert status_cell(controller, "case_001").text() == "in progress, open elsewhere"
    assert "read-only" not in window.windowTitle() and tools.isEnabled() and brush.isEnabled()
    assert "another segview" not in brush.toolTip()
    assert action(window, "Edit", "Mark slice reviewed").isEnabled()
    other.close()


def test_dialogs_start_in_the_images_folder_then_in_the_last_folder_used(qtbot, window, tmp_path, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    volume, _ = tiny_case(0)
    save_volume(folder / "scan.nii.gz", volume)
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_image(folder / "scan.nii.gz")
    starts = []
    chosen = tmp_path / "elsewhere" / "metrics.csv"
    chosen.parent.mkdir()

    def save_dialog(parent, title, start, *rest):
        starts.append(start)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", save_dialog)
    window.export_dicom_seg()
    window.choose_labels()
    assert starts == [str(folder / "labels_seg.dcm"), str(folder)]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(chosen), ""))
    window.export_dicom_seg()  # the user chose another folder...
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    window.export_dicom_seg()
    window.choose_image()
    assert starts[2:] == [str(chosen.parent / "labels_seg.dcm"), str(chosen.parent)]  # ...where the next start


def test_a_checkpoint_chosen_in_the_models_folder_moves_no_other_dialog_there(qtbot, window, tmp_path, monkeypatch):
    """After Model > Load checkpoint in the program's own models folder, Export comparison
    report opened there; checkpoints are remembered apart."""
    folder = tmp_path / "images"
    folder.mkdir()
    save_volume(folder / "scan.nii.gz", tiny_case(0)[0])
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_image(folder / "scan.nii.gz")
    models = tmp_path / "models"
    models.mkdir()
    starts = []

    def dialog(parent, title, start, *rest):
        starts.append(start)
        return (str(models / "missing.safetensors"), "") if "checkpoint" in title else ("", "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", dialog)
    monkeypatch.setattr(window, "load_model", lambda *_: None)
    window.choose_model("A")
    window.choose_model("B")
    window.choose_image()
    assert starts == [str(folder), str(models), str(folder)]


def test_a_pacs_studys_first_save_asks_for_a_folder_once_and_names_it_by_patient_and_study(qtbot, window, tmp_path,
                                                                                            monkeypatch):
    cache = tmp_path / "cache" / "segview" / "pacs"
    monkeypatch.setattr(settings_module, "pacs_cache_folder", lambda: cache)
    for n, uid in enumerate(("1.2.3.1", "1.2.3.2")):
        write_dicom_series(tiny_case(n, slices=3, size=16)[0], cache / uid, patient_id=f"PAT{n}",
                           series_description="AX T1")
    asked, proposed = [], []
    labels_root = tmp_path / "labels"
    labels_root.mkdir()

    def choose_folder(parent, title, start, *rest):
        asked.append(title)
        return str(labels_root)

    def save_dialog(parent, title, start, *rest):
        proposed.append(start)
        return start, ""

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", choose_folder)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    saved_paths = []
    for uid in ("1.2.3.1", "1.2.3.2"):
        with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
            window.open_image(cache / uid)
        window.session.mark_reviewed(1)
        with qtbot.waitSignal(window.saved, timeout=TIMEOUT) as saved:
            qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)
        saved_paths.append(saved.args[0])
    assert len(asked) == 1  # the folder is chosen once, then kept in the settings
    assert settings_module.pacs_labels_folder() == labels_root
    date = window.session.volume.meta["study_date"]
    assert date and proposed == saved_paths
    for n, path in enumerate(saved_paths):
        assert path == str(labels_root / f"PAT{n}_{date}" / "AX_T1.labels.nii.gz")
        assert str(cache) not in path
    window.session.mark_reviewed(2)
    with qtbot.waitSignal(window.saved, timeout=TIMEOUT):
        qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)  # saved where it was: no dialog
    assert len(proposed) == 2 and reviewed_sidecar(saved_paths[1]) == [1, 2]


def reviewed_sidecar(path):
    from pathlib import Path

    return [r["z"] for r in read_sidecar(Path(path))["reviewed"]]


def test_a_read_only_case_saves_no_edits_it_has_not_and_opens_editable_once_the_other_closed_it(
        qtbot, window, dataset, dialogs, tmp_path, monkeypatch):
    other = Worklist.open(dataset).session("case_001")  # another segview has it
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    warnings = len(dialogs)
    qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)  # Ctrl+S: no edits here, no error about edits
    assert len(dialogs) == warnings
    message = window.statusBar().currentMessage()
    assert message.startswith("Nothing to save: no edits were made here.") and "another segview" in message
    assert window.statusBar().toolTip() == message  # the whole of it, where the bar cuts it off
    # Save As proposes a copy outside the dataset's labels, never the case's own file.
    proposed = window.proposed_labels_path()
    assert proposed.name == "case_001.labels.nii.gz" and proposed.parent != dataset / "labelsTr"
    # Its row chosen again while the other still has it: read-only again, and the row says so (a tester's
    # row lost "read-only": the first read-only session, closing, took the mark the second had set).
    open_case(qtbot, controller, "case_001")
    assert window.session.read_only_reason is not None and status_cell(controller, "case_001").text() == \
        "new, read-only"
    # The other segview paints, saves and closes; opening the row again reads its labels, editable now.
    other.labels.array[2, 1:4, 1:4] = 1
    other.save()
    other.close()
    open_case(qtbot, controller, "case_001")
    assert window.session.read_only_reason is None and "read-only" not in window.windowTitle()
    assert (window.session.labels.array[2, 1:4, 1:4] == 1).all() and window.tools.isEnabled()
    assert status_cell(controller, "case_001").text() == "in progress"


def test_a_read_only_case_is_read_again_on_its_slice_when_the_other_segview_closes_it(qtbot, window, dataset,
                                                                                       dialogs):
    other = Worklist.open(dataset).session("case_001")  # another segview has it
    controller = open_dataset(qtbot, window, dataset)
    controller.release_watch.setInterval(20)
    open_case(qtbot, controller, "case_001")
    assert controller.release_watch.isActive()
    window.workspace.go_to_slice(3)
    qtbot.wait(100)  # watched meanwhile: still held, nothing read again
    assert window.session.read_only_reason is not None and window.current_slice() == 3
    other.labels.array[3, 1:4, 1:4] = 1
    other.save()
    question = QDialog(window)  # a dialog the person is answering: not read anew under it
    question.setModal(True)
    question.show()
    other.close()
    qtbot.wait(200)
    assert window.session.read_only_reason is not None
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        question.accept()
    assert opened.args == ["case_001"]
    assert window.session.read_only_reason is None and "read-only" not in window.windowTitle()
    assert window.current_slice() == 3 and (window.session.labels.array[3, 1:4, 1:4] == 1).all()
    assert window.tools.isEnabled() and status_cell(controller, "case_001").text() == "in progress"
    assert "let go by the other segview (closed, or it stopped)" in window.statusBar().currentMessage()
    assert not controller.release_watch.isActive()
    # Its own lock now: a third segview finds the case held.
    third = Worklist.open(dataset).session("case_001")
    assert third.read_only_reason is not None
    third.close()


def test_a_crashed_sessions_edits_of_a_case_open_elsewhere_are_offered_once_it_is_editable_here(
        qtbot, window, dataset, dialogs, monkeypatch):
    """A radiologist back after a kill found a colleague on the case that held the unsaved
    edits: they were offered on the read-only case and restored there, where nothing can be
    saved; once the colleague closed it, reading it again editable asked to drop them, and
    they were gone (their journal taken as restored)."""
    crashed = Worklist.open(dataset).session("case_001")  # its image key is known from now on
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a kill -9
    colleague, _ = CaseLock.acquire(dataset / "labelsTr" / "case_001.nii.gz")  # the other segview has it
    assert colleague is not None
    controller = open_dataset(qtbot, window, dataset)
    controller.release_watch.setInterval(20)
    dialogs.answers.append(QMessageBox.Yes)  # restore, whenever asked
    open_case(qtbot, controller, "case_001")
    assert window.session.read_only_reason is not None and not window.session.modified
    assert not any("never saved" in text for _, text in dialogs)
    assert status_cell(controller, "case_001").text().endswith("crashed edits")
    monkeypatch.setattr(QInputDialog, "getItem", lambda parent, title, label, items, *_: (items[0], True))
    window.recover_edits()  # File > Recover edits... refuses too
    assert not window.session.modified and any("Recover the edits once" in text for _, text in dialogs)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        colleague.release()
    assert window.session.read_only_reason is None and window.session.reviewed[2]
    assert sum("never saved" in text for _, text in dialogs) == 1
    assert not any("drop its unsaved edits" in text for _, text in dialogs)


def test_a_crashed_sessions_edits_of_a_case_left_while_read_only_are_offered_when_it_is_opened_again(
        qtbot, window, dataset, dialogs):
    """A radiologist back after a kill looked at the case holding the unsaved edits while a
    colleague had it, went on to another case and came back once the colleague was done: the
    edits were not offered and the row no longer said "crashed edits" (the read-only case had
    set them aside, for File > Recover edits only)."""
    crashed = Worklist.open(dataset).session("case_001")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a kill -9
    colleague, _ = CaseLock.acquire(dataset / "labelsTr" / "case_001.nii.gz")
    assert colleague is not None
    controller = open_dataset(qtbot, window, dataset)
    open_case(qtbot, controller, "case_001")
    assert window.session.read_only_reason is not None
    open_case(qtbot, controller, "case_002")  # left while the colleague still has it
    assert status_cell(controller, "case_001").text().endswith("crashed edits")
    colleague.release()
    dialogs.answers.append(QMessageBox.Yes)  # restore
    open_case(qtbot, controller, "case_001")
    assert window.session.read_only_reason is None and window.session.reviewed[2]
    assert sum("never saved" in text for _, text in dialogs) == 1
    assert not status_cell(controller, "case_001").text().endswith("crashed edits")


def test_a_dataset_opens_on_the_case_with_crashed_edits_not_on_one_a_colleague_has_open(
        qtbot, window, dataset, dialogs):
    """After a restart the dataset opened on its first case, which a colleague had open
    (read-only here), while another case held this reader's unsaved edits."""
    crashed = Worklist.open(dataset).session("case_001")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a kill -9
    colleague, _ = CaseLock.acquire(dataset / "labelsTr" / "case_000.nii.gz")
    assert colleague is not None
    dialogs.answers.append(QMessageBox.Yes)  # restore
    open_dataset(qtbot, window, dataset)
    assert window.session.case.name == "case_001" and window.session.read_only_reason is None
    assert window.session.reviewed[2] and sum("never saved" in text for _, text in dialogs) == 1
    colleague.release()


def test_a_read_only_case_is_read_again_when_the_other_segview_saves_it(qtbot, window, dataset, dialogs):
    """A tester's second reader kept looking at labels the first reader had since corrected
    and saved, until the first closed the case."""
    other = Worklist.open(dataset).session("case_001")  # another segview has it, and keeps it
    controller = open_dataset(qtbot, window, dataset)
    controller.release_watch.setInterval(20)
    open_case(qtbot, controller, "case_001")
    window.workspace.go_to_slice(3)
    other.labels.array[3, 1:4, 1:4] = 1
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        other.save()
    assert window.session.read_only_reason is not None and not window.tools.isEnabled()
    assert window.current_slice() == 3 and (window.session.labels.array[3, 1:4, 1:4] == 1).all()
    assert window.statusBar().currentMessage().startswith("case_001 was saved by the other segview (")
    # Said once, when it opened: a dialog at each of the other's saves held up the release check.
    assert sum("is open in another segview" in text for _, text in dialogs) == 1
    assert controller.release_watch.isActive()
    qtbot.wait(150)  # nothing saved since: not read again
    assert not window.session.saved_since_read()
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        other.close()
    assert window.session.read_only_reason is None and window.tools.isEnabled()
    assert not controller.release_watch.isActive()


def test_a_case_file_opened_directly_while_the_worklist_has_it_is_read_only(qtbot, window, dataset, dialogs):
    """A tester opened labelsTr/<case>.nii.gz directly while a colleague had the case in the
    worklist: it was editable, and its save replaced the original labels without a backup."""
    other = Worklist.open(dataset).session("case_001")
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_image(dataset / "imagesTr" / "case_001_0000.nii.gz")
    with qtbot.waitSignal(window.session_changed, timeout=TIMEOUT):
        window.open_labels(dataset / "labelsTr" / "case_001.nii.gz")
    assert any(kind == "warning" and "is a case open in another segview" in text for kind, text in dialogs)
    assert "read-only" in window.windowTitle() and not window.tools.isEnabled()
    qtbot.keyClick(window, Qt.Key_S, Qt.ControlModifier)
    assert window.statusBar().currentMessage().startswith("Nothing to save")
    other.close()


def test_a_read_only_case_file_saved_elsewhere_is_editable_as_that_copy(qtbot, window, dataset, dialogs, tmp_path):
    other = Worklist.open(dataset).session("case_002")
    with qtbot.waitSignal(window.loaded, timeout=TIMEOUT):
        window.open_image(dataset / "imagesTr" / "case_002_0000.nii.gz")
    with qtbot.waitSignal(window.session_changed, timeout=TIMEOUT):
        window.open_labels(dataset / "labelsTr" / "case_002.nii.gz")
    assert not window.tools.isEnabled()
    assert window.save_to(tmp_path / "copy.nii.gz", wait=True)
    assert window.session.read_only_reason is None and window.tools.isEnabled()
    assert "read-only" not in window.windowTitle()
    other.close()


def test_rows_follow_what_another_segview_on_the_dataset_opens_saves_and_closes(qtbot, window, dataset):
    """Two radiologists on one dataset: a case the other had saved "in progress" or "done"
    stayed "new" here until it was opened here, and nothing said which case the other had open."""
    controller = open_dataset(qtbot, window, dataset)  # case_000 on screen
    controller.changes_watch.setInterval(20)
    mark(qtbot, window, 1)                             # unsaved here: its row is this session's
    other = Worklist.open(dataset).session("case_001")  # another segview opens case_001
    qtbot.waitUntil(lambda: status_cell(controller, "case_001").text() == "new, open elsewhere", timeout=TIMEOUT)
    assert "process" in status_cell(controller, "case_001").toolTip()
    other.mark_reviewed(2)
    other.save(status="done")
    other.close()
    Worklist.open(dataset).set_status("case_002", "flagged", "motion on 3-4")
    qtbot.waitUntil(lambda: [status_cell(controller, n).text() for n in ("case_001", "case_002")]
                    == ["done", "flagged"], timeout=TIMEOUT)
    assert controller.panel.cell("case_001", "Reviewed").text() == "1 / 6"
    assert status_cell(controller, "case_002").toolTip() == "motion on 3-4"
    assert "1 done, 1 flagged" in controller.panel.title.text()
    assert status_cell(controller, "case_000").text() == "in progress" and window.session.reviewed[1]


def test_the_report_and_seg_dialogs_start_in_this_dataset_not_in_another_used_before(qtbot, window, dataset,
                                                                                     tmp_path, monkeypatch):
    other = tmp_path / "Dataset002_Other" / "reports"
    other.mkdir(parents=True)
    open_dataset(qtbot, window, dataset)
    starts = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda parent, title, start: starts.append(start) or "")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, title, start, kinds: starts.append(start) or ("", ""))
    settings_module.remember_folder(other)   # a dialog of another dataset chose there
    window.worklist_controller.choose_report_folder()
    window.export_dicom_seg()  # and a DICOM SEG, proposed among the dataset's images, in imagesTr/
    inside = dataset / "reports"
    inside.mkdir()
    settings_module.remember_folder(inside)  # one inside this dataset is kept
    window.worklist_controller.choose_report_folder(held_out=True)
    assert starts == [str(dataset.resolve()), str(dataset.resolve() / "labels_seg.dcm"), str(inside)]
