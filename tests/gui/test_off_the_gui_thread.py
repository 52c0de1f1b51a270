"""Nothing that can take long runs on the GUI thread: the PACS dialogs' retrieve and store
(and closing them while one runs), the DICOM SEG export and the save of the case left in
the worklist run in workers. Each test makes the slow part wait on a gate it holds, checks
that the window goes on meanwhile (the test itself runs on the GUI thread), records the
thread the slow part ran in, then opens the gate and checks that the result arrives."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

import segview.session.review as review_module
from segview.core.dicomseg import DicomSegError
from segview.core.io import load_labels, load_volume
from segview.core.pacs import RetrieveCancelled, Series, Study
from segview.gui.pacs_dialog import PacsDialog, SendDialog
from segview.gui.pacs_server import ServerForm
from tests.session.conftest import make_dataset

from .helpers import drag

TIMEOUT = 60000


class Gate:
    """A slow part: ``wait`` blocks until the test opens the gate and records the threads it ran in."""

    def __init__(self):
        self.open_ = threading.Event()
        self.entered = threading.Event()
        self.threads: list[threading.Thread] = []

    def wait(self) -> None:
        self.threads.append(threading.current_thread())
        self.entered.set()
        assert self.open_.wait(30), "the test never opened the gate"

    def off_the_gui_thread(self) -> bool:
        return bool(self.threads) and all(t is not threading.main_thread() for t in self.threads)


class SlowPacs:
    """A PACS whose retrieve and store wait on ``gate``; a retrieve honours ``should_stop``."""

    url = "dimse://SLOW@127.0.0.1:1"

    def __init__(self, gate: Gate):
        self.gate = gate
        self.series = Series(uid="1.2.3.4", study_uid="1.2.3", modality="CT", number=1, description="slow", images=3)

    def find(self, query, should_stop=None):
        return [Study(uid="1.2.3", patient_id="P1", patient_name="Slow^Case", date="20240101",
                      description="chest", modalities=("CT",), images=3, series=(self.series,))]

    def get_series(self, uid, folder, progress=None, should_stop=None):
        progress(1, 3)
        self.gate.wait()
        if should_stop():
            raise RetrieveCancelled("The retrieve was cancelled; nothing of it was kept.")
        Path(folder).mkdir(parents=True, exist_ok=True)
        return []

    def store(self, files, progress=None):
        self.gate.wait()
        progress(len(files), len(files))
        return ["1.2.3.4.5"] * len(files)


@pytest.fixture
def slow_pacs(monkeypatch):
    gate = Gate()
    pacs = SlowPacs(gate)
    monkeypatch.setattr(ServerForm, "open_pacs", lambda self: pacs)
    monkeypatch.setattr(ServerForm, "remember", lambda self: None)
    return pacs


def test_closing_the_pacs_dialog_during_a_retrieve_holds_nothing_and_closes_when_it_stopped(qtbot, slow_pacs,
                                                                                              tmp_path):
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.searched, timeout=5000):
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    assert slow_pacs.gate.entered.wait(10)
    qtbot.waitUntil(lambda: dialog.progress.value() == 1, timeout=15000)  # the progress arrives meanwhile
    dialog.reject()  # Close or Escape: returns at once, the retrieve is told to stop
    assert dialog.isVisible() and "Stopping the retrieve" in dialog.status.text()
    assert not dialog.close_button.isEnabled()
    slow_pacs.gate.open_.set()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10000)
    assert slow_pacs.gate.off_the_gui_thread()
    assert dialog.folder is None and dialog.result() == PacsDialog.DialogCode.Rejected


def test_a_retrieve_runs_off_the_gui_thread_and_its_folder_arrives(qtbot, slow_pacs, tmp_path):
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.searched, timeout=5000):
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    with qtbot.waitSignal(dialog.retrieved, timeout=10000) as retrieved:
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
        assert slow_pacs.gate.entered.wait(10) and dialog.cancel_button.isEnabled()
        slow_pacs.gate.open_.set()
    assert retrieved.args == [str(tmp_path / "cache" / "1.2.3.4")]
    assert slow_pacs.gate.off_the_gui_thread()


def _a_dicom_file(path: Path) -> None:
    import pydicom

    ds = pydicom.Dataset()
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def test_closing_the_send_dialog_during_a_store_closes_it_once_the_store_ended(qtbot, slow_pacs, tmp_path):
    seg = tmp_path / "seg.dcm"
    _a_dicom_file(seg)  # read before sending (for the image series it refers to; it refers to none)
    dialog = SendDialog(None, [seg])
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.sent, timeout=10000) as sent:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
        qtbot.waitUntil(slow_pacs.gate.entered.is_set, timeout=10000)  # the store starts once the check answered
        dialog.reject()  # returns at once: the store is not interrupted halfway
        assert dialog.isVisible() and "once the store has ended" in dialog.status.text()
        slow_pacs.gate.open_.set()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10000)
    assert sent.args == [1] and dialog.stored == 1
    assert slow_pacs.gate.off_the_gui_thread()


def test_the_dicom_seg_export_runs_in_a_worker_and_says_when_written(qtbot, demo, monkeypatch, tmp_path):
    window, gate = demo, Gate()
    written = {}

    def slow_export(path, labels, volume, classes, algorithm, **_):
        gate.wait()
        written["labels"] = labels
        Path(path).write_bytes(b"SEG")
        return Path(path)

    monkeypatch.setattr("segview.core.dicomseg.save_dicom_seg", slow_export)
    expected = window.session.labels.array.copy()
    with qtbot.waitSignal(window.seg_exported, timeout=10000) as exported:
        window.export_dicom_seg_to(tmp_path / "seg.dcm")
        assert gate.entered.wait(10)
        assert window.progress.isVisible()  # the window's progress bar shows the job
        gate.open_.set()
    assert exported.args == [str(tmp_path / "seg.dcm")] and (tmp_path / "seg.dcm").read_bytes() == b"SEG"
    np.testing.assert_array_equal(written["labels"], expected)
    assert gate.off_the_gui_thread()


def test_a_dicom_seg_export_that_fails_is_a_dialog_and_send_to_pacs_is_not_offered(qtbot, demo, dialogs,
                                                                                     monkeypatch):
    window, gate = demo, Gate()
    gate.open_.set()

    def refused(*_, **__):
        gate.wait()
        raise DicomSegError("The image was not loaded from DICOM.")

    sent = []
    monkeypatch.setattr("segview.core.dicomseg.save_dicom_seg", refused)
    monkeypatch.setattr("segview.gui.pacs_dialog.send_to_pacs", lambda parent, files, images: sent.append(files) or 1)
    window.send_seg_to_pacs()
    qtbot.waitUntil(lambda: bool(dialogs), timeout=10000)
    assert dialogs == [("critical", "The image was not loaded from DICOM.")]
    assert not sent and gate.off_the_gui_thread()


def test_the_case_edited_while_the_next_opened_is_saved_in_a_worker_then_the_next_shows(
        qtbot, window, tmp_path, monkeypatch):
    dataset = tmp_path / "Dataset001_Tiny"
    make_dataset(dataset, 3)
    controller = window.worklist_controller
    controller.set_prefetch(False)  # case_001 opens when asked, behind the gate
    with qtbot.waitSignal(controller.dataset_opened, timeout=TIMEOUT):
        controller.open_dataset(dataset)
    controller.panel.table.setCurrentCell(controller.panel.row_of("case_000"), 0)
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        qtbot.keyClick(controller.panel.table, Qt.Key_Return)
    worklist, opening, saving = controller.worklist, Gate(), Gate()
    saving.open_.set()
    open_session, save_labels = worklist.session, review_module.save_labels

    def slow_open(name, **kwargs):
        opening.wait()
        return open_session(name, **kwargs)

    def recorded_save(*args, **kwargs):
        saving.wait()
        return save_labels(*args, **kwargs)

    monkeypatch.setattr(worklist, "session", slow_open)
    monkeypatch.setattr(review_module, "save_labels", recorded_save)
    qtbot.keyClick(window, Qt.Key_N, Qt.ControlModifier)  # nothing to save yet: case_001 opens behind the gate
    assert opening.entered.wait(10) and controller.opening == "case_001"
    window.tools.set_tool("brush")
    window.tools.radius.setValue(1.0)
    drag(window.workspace.active_view(), [(1, 1), (1, 6)])  # case_000 edited meanwhile
    painted = window.session.labels.array.copy()
    assert window.session.modified and window.session.case.name == "case_000"
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT) as opened:
        opening.open_.set()
    assert opened.args == ["case_001"] and window.session.case.name == "case_001"
    assert saving.off_the_gui_thread()  # the save of case_000 ran in a worker
    image = load_volume(dataset / "imagesTr" / "case_000_0000.nii.gz")
    np.testing.assert_array_equal(load_labels(dataset / "labelsTr" / "case_000.nii.gz", image), painted)
    assert controller.panel.cell("case_000", "Status").text() == "in progress"


def test_reference_cycles_are_collected_on_the_gui_thread_between_events(qtbot):
    """A worker allocating past the collector's threshold (pynetdicom's threads do) would free
    what a cycle holds, Qt objects too, in its own thread; under the window's collector they
    are freed on the GUI thread, from its timer."""
    import gc

    from segview.gui.workers import garbage_collected_on_the_main_thread

    freed_in: list[threading.Thread] = []

    class Cycle:
        def __init__(self):
            self.itself = self

        def __del__(self):
            freed_in.append(threading.current_thread())

    kept: list = []
    gc.enable()  # as in the application (the GUI tests collect between tests only)
    try:
        with garbage_collected_on_the_main_thread():
            Cycle()  # garbage only a collection frees
            worker = threading.Thread(target=lambda: kept.extend([i] for i in range(20000)))
            worker.start()
            worker.join()
            assert freed_in == []
            qtbot.waitUntil(lambda: bool(freed_in), timeout=5000)
        assert freed_in == [threading.main_thread()] and gc.isenabled()
    finally:
        gc.disable()
