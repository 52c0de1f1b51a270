"""Open from PACS and Send to PACS, driven as a radiologist would (fill the form, search,
pick a series, retrieve; send a SEG), against a real Orthanc started for this module; and
against one that asks for a user over TLS (tests/core/secure_pacs.py): the password goes to
the keyring, or is held for the run where there is none, never to the settings file."""
from __future__ import annotations

import shutil
from pathlib import Path

import keyring
import numpy as np
import pydicom
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from PySide6.QtCore import QCoreApplication, Qt, QThreadPool
from PySide6.QtWidgets import QComboBox, QLineEdit

from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import save_dicom_seg
from segview.core.io import load_volume
from segview.core.pacs import DimsePacs, Pacs, PacsError
from segview.core.phantoms import make_phantom
from segview.core.volume import Volume
from segview.gui import pacs_secrets
from segview.gui.pacs_dialog import ImageSeries, PacsDialog, SendDialog, saved_servers
from segview.gui.settings import settings
from tests.core.conftest import free_port, orthanc_server, split_study
from tests.core.test_dicomseg import FRAME_SLICES, write_enhanced_ct
from tests.core.secure_pacs import secret_leaks, secure_pacs_server


@pytest.fixture(autouse=True)
def no_keyring():
    """No keyring, as on a machine without one (keyring's ``fail`` backend): the tests never
    touch the user's own keyring, and nothing is held from one test to the next."""
    keyring.set_keyring(fail.Keyring())
    pacs_secrets.forget_held()
    yield
    keyring.set_keyring(fail.Keyring())
    pacs_secrets.forget_held()


class MemoryKeyring(KeyringBackend):
    """A keyring that works, in memory: ``kept`` is what it holds."""

    priority = 1  # type: ignore[assignment]

    def __init__(self):
        super().__init__()
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.kept.get((service, username))

    def set_password(self, service, username, password):
        self.kept[(service, username)] = password

    def delete_password(self, service, username):
        self.kept.pop((service, username), None)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    yield from orthanc_server(tmp_path_factory, "orthanc-gui")


@pytest.fixture(scope="module")
def cardiac_series(orthanc, tmp_path_factory):
    case = make_phantom("cardiac", 7)
    paths = write_dicom_series(case.volume, tmp_path_factory.mktemp("mr") / "mr", patient_id="GUI-MR-7",
                               patient_name="Gui^Heart", series_description="short axis for the dialog")
    orthanc.upload(paths)
    return case, paths


def _search(qtbot, dialog, url, **form):
    dialog.server.url.setEditText(url)
    qtbot.keyClicks(dialog.patient_name, form.get("name", ""))
    dialog.modality.setEditText(form.get("modality", ""))
    with qtbot.waitSignal(dialog.searched, timeout=20000) as found:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    return found.args[0]


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_search_pick_and_retrieve_a_series_into_the_cache(qtbot, orthanc, cardiac_series, protocol, tmp_path):
    case, paths = cardiac_series
    url = orthanc.dicomweb_url if protocol == "dicomweb" else orthanc.dimse_url
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    assert _search(qtbot, dialog, url, name="gui", modality="MR") == 1
    study = dialog.results.topLevelItem(0)
    assert study.text(1) == "Gui Heart" and study.text(2) == "GUI-MR-7" and study.childCount() == 1
    series = study.child(0)
    assert series.text(3) == "short axis for the dialog (series 1)" and series.text(5) == str(len(paths))
    assert dialog.retrieve_button.isEnabled()  # the first series is chosen
    with qtbot.waitSignal(dialog.retrieved, timeout=30000) as done:
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    folder = dialog.folder
    assert str(folder) == done.args[0] and folder.parent == tmp_path / "cache"
    assert len(list(folder.glob("*.dcm"))) == len(paths)
    assert (load_volume(folder).array == load_volume(paths[0].parent).array).all()
    assert url in saved_servers()  # remembered for the next time
    again = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(again)
    assert again.server.url.currentText() == url


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_an_enhanced_ct_reads_as_its_frames_and_retrieves_whole(qtbot, orthanc, protocol, tmp_path):
    """A tester's enhanced CT of 38 frames read "Images 1" in the series table."""
    path = write_enhanced_ct(tmp_path / "ct", FRAME_SLICES, patient_id=f"GUI-ENH-{protocol}",
                             patient_name=f"Frames{protocol}^Gui")
    orthanc.upload([path])
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    assert _search(qtbot, dialog, orthanc.dicomweb_url if protocol == "dicomweb" else orthanc.dimse_url,
                   name=f"frames{protocol}") == 1
    study = dialog.results.topLevelItem(0)
    assert study.text(5) == study.child(0).text(5) == f"{len(FRAME_SLICES)} (1 file)"
    with qtbot.waitSignal(dialog.retrieved, timeout=30000):
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    assert load_volume(dialog.folder).shape[0] == len(FRAME_SLICES)


def test_a_pacs_that_is_down_is_reported_in_the_dialog(qtbot, tmp_path):
    dialog = PacsDialog(None, cache=tmp_path)
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText(f"dimse://PACS@127.0.0.1:{free_port()}")
    with qtbot.waitSignal(dialog.failed, timeout=20000) as failed:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    assert "Cannot reach the PACS" in failed.args[0] and "Cannot reach the PACS" in dialog.status.text()
    assert dialog.search_button.isEnabled() and dialog.results.topLevelItemCount() == 0


@pytest.mark.parametrize("url", ["dimse://PACS@127.0.0.1:{port}", "http://127.0.0.1:{port}/dicom-web"])
def test_cancel_ends_a_search_of_a_pacs_that_never_answers(qtbot, tmp_path, url):
    """A tester's Cancel said "Cancelling..." for the 30 s a silent PACS took to time out."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dialog = PacsDialog(None, cache=tmp_path)
        qtbot.addWidget(dialog)
        _an_earlier_result(dialog)  # of another PACS: a helper's cancelled search left it to retrieve from this one
        dialog.server.url.setEditText(url.format(port=silent.getsockname()[1]))
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
        qtbot.waitUntil(dialog.cancel_button.isEnabled, timeout=15000)
        qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
        qtbot.waitUntil(dialog.search_button.isEnabled, timeout=15000)  # well before the 30 s timeout
        assert dialog.status.text() == "Search cancelled." and dialog.results.topLevelItemCount() == 0
        assert not dialog.retrieve_button.isEnabled()


def _an_earlier_result(dialog) -> None:
    """A series in the results, as a search of another PACS left it."""
    from PySide6.QtWidgets import QTreeWidgetItem

    from segview.core.pacs import Series

    item = QTreeWidgetItem(["", "", "", "earlier", "CT", "1"])
    item.setData(0, Qt.ItemDataRole.UserRole, Series("1.2.3", "1.2", "CT", "earlier"))
    dialog.results.addTopLevelItem(item)
    dialog.results.setCurrentItem(item)


def test_a_structure_set_is_not_retrieved_as_an_image(qtbot, tmp_path):
    """A tester's SEG series downloaded, then "holds no DICOM image series"; a SEG now opens
    with its image, but contours, reports and presentation states are no image nor labels."""
    from PySide6.QtWidgets import QTreeWidgetItem

    from segview.core.pacs import Series

    dialog = PacsDialog(None, cache=tmp_path)
    qtbot.addWidget(dialog)
    dialog._pacs = object()  # a search was made; nothing may be asked of it
    item = QTreeWidgetItem(["", "", "", "contours", "RTSTRUCT", "1"])
    item.setData(0, Qt.ItemDataRole.UserRole, Series("1.2.3", "1.2", "RTSTRUCT", "contours"))
    dialog.results.addTopLevelItem(item)
    dialog.results.setCurrentItem(item)
    dialog.retrieve()
    assert "contours is a RTSTRUCT, which segview does not open" in dialog.status.text()
    assert not (tmp_path / "1.2.3").exists() and dialog.search_button.isEnabled()


@pytest.fixture(scope="module")
def seg_of_the_series(orthanc, cardiac_series, tmp_path_factory):
    """A SEG of the cardiac series in the PACS, and a SEG of a series the PACS never received."""
    case, paths = cardiac_series
    folder = tmp_path_factory.mktemp("segs")
    seg = save_dicom_seg(folder / "seg.dcm", case.labels, load_volume(paths[0].parent), list(case.classes))
    absent = write_dicom_series(case.volume, folder / "absent", patient_id="GUI-ORPHAN", patient_name="Orphan^Seg")
    orphan = save_dicom_seg(folder / "orphan.dcm", case.labels, load_volume(absent[0].parent), list(case.classes))
    orthanc.upload([seg, orphan])
    return {"seg": pydicom.dcmread(seg, stop_before_pixels=True), "absent": _series_uid(absent[0]),
            "image": _series_uid(paths[0])}


def _series_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _choose_series(dialog, uid: str) -> None:
    for study in range(dialog.results.topLevelItemCount()):
        item = dialog.results.topLevelItem(study)
        for child in (item.child(n) for n in range(item.childCount())):
            if child.data(0, Qt.ItemDataRole.UserRole).uid == uid:
                dialog.results.setCurrentItem(child)
                return
    raise AssertionError(f"no series {uid} in the results")


def _retrieve_seg(qtbot, dialog, url, seg_series_uid: str) -> None:
    """Search the cardiac patient, choose the SEG series and retrieve it, as a radiologist does."""
    _search(qtbot, dialog, url, name="gui")
    _choose_series(dialog, seg_series_uid)
    with qtbot.waitSignal(dialog.retrieved, timeout=30000):
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)


def test_a_seg_series_is_retrieved_with_the_image_series_it_segments(qtbot, orthanc, seg_of_the_series, tmp_path):
    seg = seg_of_the_series["seg"]
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _retrieve_seg(qtbot, dialog, orthanc.dicomweb_url, seg.SeriesInstanceUID)
    assert dialog.folder == tmp_path / "cache" / seg_of_the_series["image"]
    assert pydicom.dcmread(dialog.labels, stop_before_pixels=True).SOPInstanceUID == seg.SOPInstanceUID
    assert dialog.result() == PacsDialog.DialogCode.Accepted


def test_a_seg_of_a_series_the_pacs_does_not_hold_is_said_and_nothing_opens(qtbot, orthanc, seg_of_the_series,
                                                                           tmp_path):
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _search(qtbot, dialog, orthanc.dimse_url, name="orphan")
    [seg] = [dialog.results.topLevelItem(0).child(n) for n in range(dialog.results.topLevelItem(0).childCount())
             if dialog.results.topLevelItem(0).child(n).text(4) == "SEG"]
    dialog.results.setCurrentItem(seg)
    with qtbot.waitSignal(dialog.failed, timeout=30000) as failed:
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    assert f"segments the image series {seg_of_the_series['absent']}, which the PACS" in failed.args[0]
    assert "does not hold" in dialog.status.text() and dialog.folder is None and dialog.labels is None
    assert not (tmp_path / "cache" / seg_of_the_series["absent"]).exists()
    qtbot.waitUntil(dialog.retrieve_button.isEnabled, timeout=5000)  # another series may be chosen


def test_the_window_opens_a_pacs_seg_on_its_image_and_on_the_image_already_open(
        qtbot, window, dialogs, orthanc, cardiac_series, seg_of_the_series, tmp_path, monkeypatch):
    """File > Open from PACS with a SEG chosen: its image opens with the SEG's segments as the
    labels; chosen again with that image on screen, the SEG replaces the labels on it."""
    case, _ = cardiac_series
    seg = seg_of_the_series["seg"]
    monkeypatch.setattr("segview.gui.pacs_dialog.cache_folder", lambda: tmp_path / "cache")

    def exec_choosing_the_seg(dialog):  # the modal dialog, driven as a radiologist would
        qtbot.addWidget(dialog)
        _retrieve_seg(qtbot, dialog, orthanc.dimse_url, seg.SeriesInstanceUID)
        return dialog.result()

    monkeypatch.setattr(PacsDialog, "exec", exec_choosing_the_seg)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_from_pacs()
    session = window.session
    assert session.volume.meta["series_uid"] == seg_of_the_series["image"]
    np.testing.assert_array_equal(session.labels.array, case.labels)
    assert [c.name for c in session.classes] == [c.name for c in case.classes]
    session.labels.paint(2, [(40, 40)], 3.0, case.classes[1].value)  # an edit, then the SEG again
    edited = session.labels.array.copy()
    retrieved = []
    get_series = Pacs.get_series
    monkeypatch.setattr(Pacs, "get_series", lambda pacs, uid, *args, **kwargs:
                        retrieved.append(uid) or get_series(pacs, uid, *args, **kwargs))
    shutil.rmtree(tmp_path / "cache" / seg.SeriesInstanceUID)  # the SEG is retrieved again, not the image on screen
    with qtbot.waitSignal(window.session_changed, timeout=30000):
        window.open_from_pacs()
    assert window.session is session and retrieved == [seg.SeriesInstanceUID]
    np.testing.assert_array_equal(session.labels.array, case.labels)
    assert session.labels.undo() and (session.labels.array == edited).all()  # one undo step, as File > Open labels


def test_a_mistyped_date_range_is_reported_before_anything_is_sent(qtbot, tmp_path):
    dialog = PacsDialog(None, cache=tmp_path)
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText("http://127.0.0.1:1/dicom-web")
    qtbot.keyClicks(dialog.dates, "last week")
    with qtbot.waitSignal(dialog.failed, timeout=2000) as failed:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    assert "YYYYMMDD-YYYYMMDD" in failed.args[0]


def test_cancel_stops_a_retrieve_and_keeps_nothing(qtbot, orthanc, tmp_path):
    """A 60-slice 512 x 512 series (30 MB), cancelled right after the retrieve starts."""
    rng = np.random.default_rng(1)
    volume = Volume(rng.integers(-1000, 1000, (60, 512, 512)).astype(np.int16), (0.7, 0.7, 2.0),
                    (0.0, 0.0, 0.0), modality="CT")
    orthanc.upload(write_dicom_series(volume, tmp_path / "big", patient_id="GUI-BIG", patient_name="Big^Series"))
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _search(qtbot, dialog, orthanc.dicomweb_url, name="big")
    qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    assert dialog.cancel_button.isEnabled() and not dialog.search_button.isEnabled()
    qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: "cancelled" in dialog.status.text(), timeout=30000)
    assert dialog.folder is None
    assert not any((tmp_path / "cache").rglob("*.dcm"))
    qtbot.waitUntil(dialog.search_button.isEnabled, timeout=15000)


def test_send_a_seg_to_the_pacs_then_to_one_that_is_down(qtbot, orthanc, cardiac_series, tmp_path):
    case, paths = cardiac_series
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(paths[0].parent), list(case.classes))
    dialog = SendDialog(None, [seg])
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText(orthanc.dimse_url)
    with qtbot.waitSignal(dialog.sent, timeout=20000) as sent:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    assert sent.args[0] == 1 and "1 file(s) stored" in dialog.status.text()
    assert orthanc.lookup(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
    assert dialog.progress.value() == dialog.progress.maximum() == 1
    # A tester's failed send showed the full bar of the send before it beside "Cannot reach".
    dialog.server.url.setEditText(f"dimse://PACS@127.0.0.1:{free_port()}")
    with qtbot.waitSignal(dialog.failed, timeout=20000) as failed:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    assert "Cannot reach the PACS" in failed.args[0]
    assert dialog.progress.value() < dialog.progress.maximum() and dialog.send_button.isEnabled()


def _series_on_disk_only(folder) -> tuple[ImageSeries, Path]:
    """A cardiac series written here and never sent to the PACS, and a SEG of it."""
    case = make_phantom("cardiac", 8)
    paths = write_dicom_series(case.volume, folder / "local", patient_id="GUI-LOCAL-8",
                               series_description="cine on disk")
    seg = save_dicom_seg(folder / "seg.dcm", case.labels, load_volume(folder / "local"), list(case.classes))
    uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    return ImageSeries(uid, "cine on disk", tuple(paths)), seg


def _sop_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _ask(qtbot, dialog, url) -> str:
    """Click Send and wait for the dialog's question; nothing is sent meanwhile."""
    dialog.server.url.setEditText(url)
    with qtbot.waitSignal(dialog.asked, timeout=20000) as asked:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    assert asked.args[0] == dialog.status.text() and dialog.send_button.isHidden()
    assert dialog.send_anyway_button.isVisible() and dialog.cancel_button.isVisible()
    # The dialog grew to the question: a tester's PACS and user fields were squeezed to 9 pixels.
    assert all(edit.height() >= edit.minimumSizeHint().height() for edit in dialog.findChildren(QLineEdit)
               if edit.isVisible() and not isinstance(edit.parent(), QComboBox))  # a combo's own edit sits inside
    return asked.args[0]


@pytest.mark.parametrize("answer", ["cancel", "send anyway", "send the images too"])
def test_a_seg_whose_images_the_pacs_lacks_is_sent_only_as_the_reader_answers(qtbot, orthanc, tmp_path, answer):
    """A SEG stored without its image series is one no viewer of the PACS can show: asked
    before anything is sent."""
    images, seg = _series_on_disk_only(tmp_path)
    dialog = SendDialog(None, [seg], images)
    qtbot.addWidget(dialog)
    dialog.show()
    question = _ask(qtbot, dialog, orthanc.dicomweb_url)
    assert question.startswith(f"{orthanc.dicomweb_url} does not hold the image series this SEG refers to "
                               f"(cine on disk, series {images.uid}): send anyway, or send the image series too?")
    assert dialog.send_images_button.isVisible() and not orthanc.lookup(_sop_uid(seg))
    if answer == "cancel":
        qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
        assert dialog.status.text() == "Nothing was sent." and dialog.send_button.isVisible()
        assert dialog.send_button.isEnabled()  # to try again, another PACS perhaps
        assert not dialog.send_anyway_button.isVisible() and dialog.stored == 0
        assert not orthanc.lookup(_sop_uid(seg))
        return
    button = dialog.send_anyway_button if answer == "send anyway" else dialog.send_images_button
    with qtbot.waitSignal(dialog.sent, timeout=30000) as sent:
        qtbot.mouseClick(button, Qt.LeftButton)
    assert orthanc.lookup(_sop_uid(seg))
    if answer == "send anyway":
        assert sent.args[0] == 1 and not orthanc.lookup(images.uid)
    else:
        assert sent.args[0] == len(images.files) + 1 and orthanc.lookup(images.uid)
        assert all(orthanc.lookup(_sop_uid(path)) for path in images.files)


@pytest.mark.parametrize("answer", ["into that study", "as it is", "cancel"])
def test_a_seg_whose_images_the_pacs_holds_in_another_study_is_sent_into_it_as_the_reader_answers(
        qtbot, orthanc, tmp_path, answer):
    """A study split at the PACS: a tester's SEG, sent without a word into the study it
    named, sat alone there, and OHIF showed the images without it. Into the images' study
    is the default; the SEG's file is not changed."""
    images, seg = _series_on_disk_only(tmp_path)
    split = split_study(orthanc, list(images.files), tmp_path)
    on_disk, named = seg.read_bytes(), pydicom.dcmread(seg, stop_before_pixels=True).StudyInstanceUID
    dialog = SendDialog(None, [seg], images)
    qtbot.addWidget(dialog)
    dialog.show()
    question = _ask(qtbot, dialog, orthanc.dicomweb_url)
    assert question.startswith(f"{orthanc.dicomweb_url} holds the image series this SEG refers to in another "
                               f"study (series {images.uid} in the study {split.StudyInstanceUID}, not the SEG's "
                               f"study {named}). Send the SEG into that study?")
    assert dialog.send_into_study_button.isVisible() and dialog.send_into_study_button.isDefault()
    assert dialog.send_anyway_button.text() == "Send as it is" and not dialog.send_images_button.isVisible()
    if answer == "cancel":
        qtbot.mouseClick(dialog.cancel_button, Qt.LeftButton)
        assert dialog.status.text() == "Nothing was sent." and not orthanc.lookup(_sop_uid(seg))
        return
    button = dialog.send_into_study_button if answer == "into that study" else dialog.send_anyway_button
    with qtbot.waitSignal(dialog.sent, timeout=30000) as sent:
        qtbot.mouseClick(button, Qt.LeftButton)
    assert sent.args[0] == 1 and seg.read_bytes() == on_disk
    if answer == "into that study":  # a new object there: the SEG's own UID is not in the PACS
        [filed] = orthanc.instances(split.StudyInstanceUID, "SEG")
        assert orthanc.study_of(filed["SOPInstanceUID"])[1] == {"SEG", "MR"} and not orthanc.lookup(_sop_uid(seg))
    else:
        assert orthanc.study_of(_sop_uid(seg))[0] == named  # the study the SEG names, which kept another series only


def test_a_check_the_pacs_cannot_answer_is_said_and_left_to_the_reader(qtbot, orthanc, tmp_path, monkeypatch):
    """A PACS that refuses the query may still hold the series: the dialog says the check
    was not made and sends only when told to; image files no longer here are not offered."""
    def refused(self, study_uid, modality=""):
        raise PacsError(f"The PACS {self.called_ae} refused to search for the series: status 0xA700 (Failure).")

    monkeypatch.setattr(DimsePacs, "find_series", refused)
    images, seg = _series_on_disk_only(tmp_path)
    images.files[0].unlink()  # the image folder was cleaned up since
    dialog = SendDialog(None, [seg], images)
    qtbot.addWidget(dialog)
    dialog.show()
    question = _ask(qtbot, dialog, orthanc.dimse_url)
    assert question.startswith(f"Could not check whether the PACS at {orthanc.dimse_url} holds the image series")
    assert "status 0xA700" in question and question.endswith("Send anyway?")
    assert not dialog.send_images_button.isVisible()
    with qtbot.waitSignal(dialog.sent, timeout=30000) as sent:
        qtbot.mouseClick(dialog.send_anyway_button, Qt.LeftButton)
    assert sent.args[0] == 1 and orthanc.lookup(_sop_uid(seg))


def test_closed_while_the_pacs_is_asked_the_dialog_closes_and_sends_nothing(qtbot, orthanc, cardiac_series, tmp_path,
                                                                           monkeypatch):
    import threading

    case, paths = cardiac_series
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(paths[0].parent), list(case.classes))
    asked, answer = threading.Event(), threading.Event()
    find_series = DimsePacs.find_series

    def slow(self, study_uid, modality=""):
        asked.set()
        answer.wait(30)
        return find_series(self, study_uid, modality)  # it holds the series: a store would follow

    monkeypatch.setattr(DimsePacs, "find_series", slow)
    dialog = SendDialog(None, [seg])
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.server.url.setEditText(orthanc.dimse_url)
    qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    qtbot.waitUntil(asked.is_set, timeout=10000)
    qtbot.mouseClick(dialog.close_button, Qt.LeftButton)
    assert not dialog.isVisible()  # at once: the check writes nothing
    answer.set()
    QThreadPool.globalInstance().waitForDone(30000)
    QCoreApplication.processEvents()  # the check's answer, had it been acted on, would start a store here
    QThreadPool.globalInstance().waitForDone(30000)
    assert dialog.stored == 0 and not orthanc.lookup(_sop_uid(seg))


def test_another_address_withdraws_the_question(qtbot, orthanc, tmp_path):
    images, seg = _series_on_disk_only(tmp_path)
    dialog = SendDialog(None, [seg], images)
    qtbot.addWidget(dialog)
    dialog.show()
    _ask(qtbot, dialog, orthanc.dicomweb_url)
    dialog.server.url.setEditText(orthanc.dimse_url)  # the answer was about the other PACS
    assert dialog.send_button.isVisible() and not dialog.send_anyway_button.isVisible()
    assert dialog.status.text() == "Nothing was sent."


# -- a PACS that asks who you are, over TLS ------------------------------------------------

@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    yield from secure_pacs_server(tmp_path_factory, "secure-gui")


@pytest.fixture(scope="module")
def secure_series(secure, tmp_path_factory):
    paths = write_dicom_series(make_phantom("lung", 5).volume, tmp_path_factory.mktemp("ct") / "ct",
                               patient_id="GUI-TLS-5", patient_name="Tls^Lung", series_description="chest CT")
    secure.orthanc.upload(paths)
    return paths


def _log_in(form, secure, url, password="", token=""):
    form.url.setEditText(url)
    form.user.setText(secure.user if password else "")
    form.password.setText(password)
    form.token.setText(token)
    form.ca_bundle.setText(str(secure.ca))


def _settings_text() -> str:
    settings().sync()
    return Path(settings().fileName()).read_text()


@pytest.mark.parametrize("url", ["https_url", "dimse_tls_url"])
def test_adding_a_server_with_a_password_leaves_no_password_in_the_settings(qtbot, secure, secure_series, url,
                                                                            tmp_path):
    url = getattr(secure, url)
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _log_in(dialog.server, secure, url, password=secure.password)
    assert _search(qtbot, dialog, url, name="tls") == 1
    saved = _settings_text()
    assert url in saved and secure.user in saved and str(secure.ca) in saved
    assert secret_leaks([secure.password]) == []
    assert "held until segview closes" in dialog.server.keeping.text()
    with qtbot.waitSignal(dialog.retrieved, timeout=30000):
        qtbot.mouseClick(dialog.retrieve_button, Qt.LeftButton)
    assert len(list(dialog.folder.glob("*.dcm"))) == len(secure_series)
    again = PacsDialog(None, cache=tmp_path / "cache")  # the next time in this run: chosen, not typed
    qtbot.addWidget(again)
    assert (again.server.address(), again.server.user.text(), again.server.ca_bundle.text()) == (
        url, secure.user, str(secure.ca))
    assert again.server.password.text() == "" and again.server.password.placeholderText() == "kept"
    assert _search(qtbot, again, url, name="tls") == 1
    assert secret_leaks([secure.password]) == []


def test_with_a_keyring_the_password_goes_there_and_outlives_the_run(qtbot, secure, secure_series, tmp_path):
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _log_in(dialog.server, secure, secure.https_url, password=secure.password)
    assert _search(qtbot, dialog, secure.https_url, name="tls") == 1
    assert "kept in this computer's keyring" in dialog.server.keeping.text()
    assert list(ring.kept.values()) == [secure.password]
    assert secret_leaks([secure.password]) == []
    pacs_secrets.forget_held()  # a new run: only the keyring remembers
    again = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(again)
    assert _search(qtbot, again, secure.https_url, name="tls") == 1


def test_a_wrong_password_is_said_in_the_dialog_and_the_kept_one_forgotten(qtbot, secure, secure_series, tmp_path):
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    _log_in(dialog.server, secure, secure.https_url, password="not-" + secure.password)
    with qtbot.waitSignal(dialog.failed, timeout=20000) as failed:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    assert "refused the user name radiologist or its password (HTTP 401)" in failed.args[0]
    assert failed.args[0] == dialog.status.text() and ring.kept == {}
    assert secret_leaks(["not-" + secure.password]) == []


def test_a_certificate_the_computer_does_not_trust_is_said_in_the_dialog(qtbot, secure, tmp_path):
    dialog = PacsDialog(None, cache=tmp_path / "cache")
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText(secure.https_url)
    with qtbot.waitSignal(dialog.failed, timeout=20000) as failed:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    port = secure.https_url.split(":")[2].split("/")[0]
    assert f"The certificate of the PACS at localhost:{port} cannot be trusted" in failed.args[0]
    assert "CA bundle field" in failed.args[0]


def test_a_password_saved_in_an_address_by_an_earlier_version_is_removed(qtbot, tmp_path):
    settings().setValue("pacs/servers", ["https://doctor:hunter2-old@pacs.example:8443/dicom-web",
                                         "dimse://PACS@pacs.example:104"])
    dialog = PacsDialog(None, cache=tmp_path)
    qtbot.addWidget(dialog)
    assert saved_servers() == ["https://pacs.example:8443/dicom-web", "dimse://PACS@pacs.example:104"]
    assert dialog.server.user.text() == "doctor"
    assert secret_leaks(["hunter2-old"]) == []


def test_send_a_seg_over_dimse_tls_with_a_token_field_left_empty(qtbot, secure, secure_series, tmp_path):
    case = make_phantom("lung", 5)
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(secure_series[0].parent), list(case.classes))
    dialog = SendDialog(None, [seg])
    qtbot.addWidget(dialog)
    _log_in(dialog.server, secure, secure.dimse_tls_url)
    with qtbot.waitSignal(dialog.sent, timeout=20000) as sent:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    assert sent.args[0] == 1
    assert secure.orthanc.lookup(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
