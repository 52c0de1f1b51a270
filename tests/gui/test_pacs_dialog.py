"""Open from PACS and Send to PACS, driven as a radiologist would (fill the form, search,
pick a series, retrieve; send a SEG), against a real Orthanc started for this module."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt

from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import save_dicom_seg
from segview.core.io import load_volume
from segview.core.phantoms import make_phantom
from segview.core.volume import Volume
from segview.gui.pacs_dialog import PacsDialog, SendDialog, saved_servers
from tests.core.conftest import free_port, orthanc_server


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
    assert "short axis for the dialog" in study.child(0).text(3) and study.child(0).text(5) == str(len(paths))
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


def test_a_pacs_that_is_down_is_reported_in_the_dialog(qtbot, tmp_path):
    dialog = PacsDialog(None, cache=tmp_path)
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText(f"dimse://PACS@127.0.0.1:{free_port()}")
    with qtbot.waitSignal(dialog.failed, timeout=20000) as failed:
        qtbot.mouseClick(dialog.search_button, Qt.LeftButton)
    assert "Cannot reach the PACS" in failed.args[0] and "Cannot reach the PACS" in dialog.status.text()
    assert dialog.search_button.isEnabled() and dialog.results.topLevelItemCount() == 0


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
    qtbot.waitUntil(dialog.search_button.isEnabled, timeout=5000)


def test_send_a_seg_to_the_pacs(qtbot, orthanc, cardiac_series, tmp_path):
    case, paths = cardiac_series
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(paths[0].parent), list(case.classes))
    dialog = SendDialog(None, [seg])
    qtbot.addWidget(dialog)
    dialog.server.url.setEditText(orthanc.dimse_url)
    with qtbot.waitSignal(dialog.sent, timeout=20000) as sent:
        qtbot.mouseClick(dialog.send_button, Qt.LeftButton)
    assert sent.args[0] == 1 and "1 file(s) stored" in dialog.status.text()
    assert orthanc.lookup(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
