"""PACS access against a real archive (Orthanc with DICOMweb, see conftest.py): find with
filters, retrieve with content checked, store a SEG and find it back, over DICOMweb and
DIMSE; and the failures: archive down, silent, refusing the association or the store, an
unknown UID, a cancelled retrieve and a retrieve cut off by the archive dying halfway."""
from __future__ import annotations

import io
import json
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pydicom
import pytest

from segview.cli import main
from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import save_dicom_seg
from segview.core.io import load_volume
from segview.core.pacs import (DicomWebPacs, PacsAuthError, PacsError, Query, ReferenceCheckFailed, ReferencedSeries,
                               RetrieveCancelled, SearchCancelled, SeriesNotFound, check_references, connect,
                               date_range, images_text, missing_series, retrieve_seg_with_image)
from segview.core.phantoms import make_phantom
from segview.core.volume import Volume

from .conftest import Orthanc, free_port, orthanc_missing, split_study
from .test_dicom_conformance import dciodvfy
from .test_dicomseg import FRAME_SLICES, write_enhanced_ct

PROTOCOLS = ["dicomweb", "dimse"]
CT_DATE, MR_DATE = "20240315", "20250620"


def _url(orthanc, protocol: str) -> str:
    return orthanc.dicomweb_url if protocol == "dicomweb" else orthanc.dimse_url


def _nothing_in(folder) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _set_study_date(paths, date: str) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
        ds.save_as(path)


@pytest.fixture(scope="module")
def archive(orthanc, tmp_path_factory):
    """A chest CT and a cardiac MR of two patients on two dates, uploaded through
    Orthanc's REST API (not through the code under test)."""
    folder = tmp_path_factory.mktemp("archive")
    lung, cardiac = make_phantom("lung", 4), make_phantom("cardiac", 4)
    ct = write_dicom_series(lung.volume, folder / "ct", patient_id="PACS-CT-1", patient_name="Lung^Patient",
                            series_description="chest CT", series_number=2)
    mr = write_dicom_series(cardiac.volume, folder / "mr", patient_id="PACS-MR-1",
                            patient_name="Heart^Patient", series_description="short axis cine", series_number=5)
    _set_study_date(ct, CT_DATE)
    _set_study_date(mr, MR_DATE)
    orthanc.upload(ct + mr)
    header = {name: pydicom.dcmread(paths[0], stop_before_pixels=True) for name, paths in (("ct", ct), ("mr", mr))}
    return {"ct": ct, "mr": mr, "header": header, "cardiac": cardiac, "folder": folder}


# -- find -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def enhanced_ct(orthanc, tmp_path_factory):
    """An enhanced CT, one file of 6 frames, uploaded through Orthanc's REST API: its header."""
    path = write_enhanced_ct(tmp_path_factory.mktemp("enhanced"), FRAME_SLICES, patient_id="PACS-ENHANCED-1",
                             patient_name="Frames^Patient")
    orthanc.upload([path])
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_of_one_multi_frame_file_counts_its_frames_as_images(orthanc, archive, enhanced_ct, protocol,
                                                                    monkeypatch):
    """A tester's enhanced CT of 38 frames read "Images 1": the PACS counts files. A series of
    few files is asked its frames; a series of many files (the chest CT) is not asked."""
    assert int(enhanced_ct.NumberOfFrames) == len(FRAME_SLICES)
    pacs = connect(_url(orthanc, protocol))
    asked = []
    instances = type(pacs)._instances
    monkeypatch.setattr(type(pacs), "_instances", lambda self, series: asked.append(series.uid) or instances(
        self, series))
    [study] = pacs.find(Query(patient_id="PACS-ENHANCED-1"))
    [series] = study.series
    assert (series.images, series.frames, study.images, study.frames) == (1, 6, 1, 6)
    assert images_text(series.images, series.frames) == images_text(study.images, study.frames) == "6 (1 file)"
    assert images_text(series.images, series.frames, "image") == "6 images (1 file)"
    assert asked == [enhanced_ct.SeriesInstanceUID]
    [chest] = pacs.find(Query(patient_id="PACS-CT-1"))
    assert chest.series[0].frames is None and asked == [enhanced_ct.SeriesInstanceUID]
    assert images_text(chest.series[0].images) == str(len(archive["ct"]))


def test_cli_find_counts_the_frames_of_a_multi_frame_file(orthanc, enhanced_ct, capsys):
    assert main(["pacs", "find", orthanc.dimse_url, "--patient-id", "PACS-ENHANCED-1"]) == 0
    assert f"CT (enhanced conversion) (series 2): 6 images (1 file)  UID {enhanced_ct.SeriesInstanceUID}" in \
        capsys.readouterr().out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_find_filters_by_patient_modality_and_dates(orthanc, archive, protocol):
    pacs = connect(_url(orthanc, protocol))
    ct, mr = archive["header"]["ct"], archive["header"]["mr"]
    uids = {ct.StudyInstanceUID: "ct", mr.StudyInstanceUID: "mr"}

    def found(**filters) -> list[str]:
        return sorted(uids[s.uid] for s in pacs.find_studies(Query(**filters)) if s.uid in uids)

    assert found() == ["ct", "mr"]
    assert found(patient_id="PACS-CT-1") == ["ct"]
    assert found(patient_name="heart") == ["mr"]  # a family name's start, any case
    assert found(patient_name="*Patient") == ["ct", "mr"]
    assert found(modality="MR") == ["mr"]
    assert found(dates="20240101-20241231") == ["ct"]
    assert found(dates="20250101-") == ["mr"]
    assert found(dates=MR_DATE) == ["mr"]
    assert found(patient_id="PACS-CT-1", modality="MR") == []
    [study] = pacs.find(Query(patient_id="PACS-CT-1"))
    assert (study.patient_name, study.date, study.modalities) == ("Lung^Patient", CT_DATE, ("CT",))
    [series] = study.series
    assert (series.uid, series.modality, series.description, series.number, series.images) == (
        ct.SeriesInstanceUID, "CT", "chest CT", 2, len(archive["ct"]))
    located = pacs.locate_series(mr.SeriesInstanceUID)
    assert (located.study_uid, located.images) == (mr.StudyInstanceUID, len(archive["mr"]))


@pytest.mark.parametrize("text, expected", [
    ("20240101-20240131", "20240101-20240131"), ("2024-01-01..2024-01-31", "20240101-20240131"),
    ("20240101-", "20240101-"), ("-20240131", "-20240131"), ("20240101", "20240101"), ("", "")])
def test_date_ranges_in_the_forms_users_type(text, expected):
    assert date_range(text) == expected


@pytest.mark.parametrize("text", ["2024", "yesterday", "-", "20240101-2024013"])
def test_a_malformed_date_range_is_refused_with_the_form_to_use(text):
    with pytest.raises(PacsError, match="YYYYMMDD-YYYYMMDD"):
        date_range(text)


# -- get --------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_series_brings_every_image_unchanged(orthanc, archive, protocol, tmp_path):
    sent = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in archive["ct"]}
    calls = []
    paths = connect(_url(orthanc, protocol)).get_series(
        archive["header"]["ct"].SeriesInstanceUID, tmp_path / "ct", progress=lambda d, t: calls.append((d, t)))
    assert len(paths) == len(sent) and all(p.parent == tmp_path / "ct" for p in paths)
    for path in paths:
        ds = pydicom.dcmread(path)
        assert ds.PixelData == sent[ds.SOPInstanceUID].PixelData
        assert ds.ImagePositionPatient == sent[ds.SOPInstanceUID].ImagePositionPatient
    assert calls[-1] == (len(sent), len(sent)) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    np.testing.assert_array_equal(load_volume(tmp_path / "ct").array, load_volume(archive["folder"] / "ct").array)
    assert [p.name for p in tmp_path.iterdir()] == ["ct"]  # no staging folder left behind


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_series_uid_is_named_in_the_error(orthanc, archive, protocol, tmp_path):
    with pytest.raises(PacsError, match=r"no series with the UID 1\.2\.3\.999"):
        connect(_url(orthanc, protocol)).get_series("1.2.3.999", tmp_path / "x")
    assert _nothing_in(tmp_path / "x")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cancelled_retrieve_keeps_nothing(orthanc, archive, protocol, tmp_path):
    calls = []
    with pytest.raises(RetrieveCancelled, match="cancelled"):
        connect(_url(orthanc, protocol)).get_series(
            archive["header"]["ct"].SeriesInstanceUID, tmp_path / "ct", progress=lambda d, t: calls.append(d),
            should_stop=lambda: len(calls) >= 3)
    assert 3 <= len(calls) < len(archive["ct"])
    assert not any(tmp_path.iterdir())  # neither staging nor the folder made for it is left behind


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_full_disk_here_is_said_as_such_not_blamed_on_the_pacs(orthanc, archive, protocol, tmp_path, monkeypatch):
    """A tester's C-GET into a full folder said 'The PACS could not send the series
    (status 0xA702)': segview's own store handler had refused the images."""
    def full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pydicom.Dataset, "save_as", full)
    monkeypatch.setattr(pydicom.FileDataset, "save_as", full)
    with pytest.raises(PacsError, match="Cannot write the images into .*No space left on device"):
        connect(_url(orthanc, protocol)).get_series(archive["header"]["ct"].SeriesInstanceUID, tmp_path / "ct")
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(orthanc_missing() is not None, reason=str(orthanc_missing()))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_retrieve_cut_off_by_the_pacs_dying_halfway_keeps_nothing(protocol, tmp_path):
    """A PACS of its own, killed after the third image: 60 slices of 512 x 512 (30 MB)
    are more than the loopback buffers hold, so the transfer really breaks."""
    server = Orthanc(tmp_path / "dying")
    try:
        rng = np.random.default_rng(0)
        volume = Volume(rng.integers(-1000, 1000, (60, 512, 512)).astype(np.int16), (0.7, 0.7, 2.0),
                        (0.0, 0.0, 0.0), modality="CT")
        paths = write_dicom_series(volume, tmp_path / "big")
        server.upload(paths)
        uid = pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID
        pacs = connect(_url(server, protocol), timeout=5)

        def kill_after_three(done, total):
            if done == 3:
                server.kill()

        with pytest.raises(PacsError) as caught:
            pacs.get_series(uid, tmp_path / "out", progress=kill_after_three)
        assert not isinstance(caught.value, RetrieveCancelled)
        assert "Nothing of the series was kept" in str(caught.value)
    finally:
        server.stop()
    assert _nothing_in(tmp_path / "out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.partial")]


def test_an_image_cut_short_in_a_dicomweb_retrieve_is_a_pacs_error_and_keeps_nothing(tmp_path, monkeypatch):
    """The dying PACS above, over DICOMweb, once left a multipart part without its DICM header:
    pydicom's InvalidDicomError escaped the retrieve. The same cut, made here on purpose."""
    from pydicom.errors import InvalidDicomError

    from segview.core.pacs import Series

    volume = Volume(np.zeros((4, 8, 8), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), modality="CT")
    images = [pydicom.dcmread(p) for p in write_dicom_series(volume, tmp_path / "series")]
    pacs = connect("http://127.0.0.1:9/dicom-web")

    def cut(study, series):
        yield from images[:2]
        pydicom.dcmread(io.BytesIO(b"\0" * 64))  # a part without its header
    monkeypatch.setattr(pacs, "locate_series", lambda uid: Series(uid, "1.2", "CT", images=4))
    monkeypatch.setattr(pacs._client, "iter_series", cut)
    with pytest.raises(PacsError, match="cannot read while asked to send the images") as caught:
        pacs.get_series("1.2.3", tmp_path / "out")
    assert "Nothing of the series was kept" in str(caught.value)
    assert isinstance(caught.value.__cause__.__cause__, InvalidDicomError)
    assert _nothing_in(tmp_path / "out")


# -- a SEG with the image series it segments --------------------------------------------

@pytest.fixture(scope="module")
def seg_archive(orthanc, tmp_path_factory):
    """A chest CT with a SEG of it, and a SEG of a CT the archive never received (of
    another patient), uploaded through Orthanc's REST API."""
    folder = tmp_path_factory.mktemp("seg-archive")
    lung = make_phantom("lung", 4)
    ct = write_dicom_series(lung.volume, folder / "ct", patient_id="PACS-SEG-1", patient_name="Seg^Patient",
                            series_description="chest CT")
    write_dicom_series(lung.volume, folder / "absent", patient_id="PACS-SEG-2", patient_name="Orphan^Seg")
    seg = save_dicom_seg(folder / "seg.dcm", lung.labels, load_volume(folder / "ct"), list(lung.classes))
    orphan = save_dicom_seg(folder / "orphan.dcm", lung.labels, load_volume(folder / "absent"), list(lung.classes))
    orthanc.upload([*ct, seg, orphan])
    return {"folder": folder, "ct": pydicom.dcmread(ct[0], stop_before_pixels=True).SeriesInstanceUID,
            "absent": pydicom.dcmread(next((folder / "absent").iterdir()), stop_before_pixels=True).SeriesInstanceUID,
            "seg": pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID}


def _seg_series(pacs, patient_id: str):
    [study] = pacs.find(Query(patient_id=patient_id))
    [seg] = [s for s in study.series if s.modality == "SEG"]
    return seg


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_seg_series_is_retrieved_with_the_image_series_it_segments(orthanc, seg_archive, protocol, tmp_path):
    pacs = connect(_url(orthanc, protocol))
    seg = _seg_series(pacs, "PACS-SEG-1")
    retrieved = retrieve_seg_with_image(pacs, seg, tmp_path)
    assert retrieved.image == tmp_path / seg_archive["ct"] and retrieved.labels.parent == tmp_path / seg.uid
    assert pydicom.dcmread(retrieved.labels, stop_before_pixels=True).SOPInstanceUID == seg_archive["seg"]
    np.testing.assert_array_equal(load_volume(retrieved.image).array,
                                  load_volume(seg_archive["folder"] / "ct").array)
    asked = []  # both series are in the cache now: nothing is retrieved again
    pacs.get_series = lambda uid, *args, **kwargs: asked.append(uid)
    assert retrieve_seg_with_image(pacs, seg, tmp_path) == retrieved and asked == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_seg_of_the_series_on_screen_comes_alone(orthanc, seg_archive, protocol, tmp_path):
    pacs = connect(_url(orthanc, protocol))
    retrieved = retrieve_seg_with_image(pacs, _seg_series(pacs, "PACS-SEG-1"), tmp_path, open_series=seg_archive["ct"])
    assert retrieved.image is None and retrieved.labels is not None
    assert not (tmp_path / seg_archive["ct"]).exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_seg_of_a_series_the_pacs_does_not_hold_says_so_and_brings_no_image(orthanc, seg_archive, protocol,
                                                                              tmp_path):
    pacs = connect(_url(orthanc, protocol))
    with pytest.raises(SeriesNotFound) as refused:
        retrieve_seg_with_image(pacs, _seg_series(pacs, "PACS-SEG-2"), tmp_path)
    assert f"segments the image series {seg_archive['absent']}, which the PACS at" in str(refused.value)
    assert "does not hold" in str(refused.value)
    assert not (tmp_path / seg_archive["absent"]).exists()


# -- store ------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_stored_seg_is_found_back_byte_for_byte(orthanc, archive, protocol, tmp_path):
    cardiac = archive["cardiac"]
    seg_path = save_dicom_seg(tmp_path / "seg.dcm", cardiac.labels, load_volume(archive["folder"] / "mr"),
                              list(cardiac.classes), "cardiac_ce")
    seg = pydicom.dcmread(seg_path)
    pacs = connect(_url(orthanc, protocol), calling_ae="SEGTEST")
    assert pacs.store([seg_path]) == [seg.SOPInstanceUID]
    [study] = pacs.find(Query(patient_id="PACS-MR-1", modality="SEG"))
    assert seg.SeriesInstanceUID in {s.uid for s in study.series if s.modality == "SEG"}
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(seg.SOPInstanceUID)))
    assert stored.PixelData == seg.PixelData and stored.SegmentSequence == seg.SegmentSequence
    if protocol == "dimse":  # the archive saw segview's calling AE title
        assert orthanc.instance_metadata(seg.SOPInstanceUID, "RemoteAET") == "SEGTEST"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_store_the_pacs_refuses_names_the_file_and_its_status(orthanc, archive, protocol, tmp_path):
    broken = pydicom.dcmread(archive["mr"][0])
    del broken.SeriesInstanceUID  # every archive needs it to file the image
    broken.SOPInstanceUID = broken.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    broken.save_as(tmp_path / "broken.dcm")
    good = pydicom.dcmread(archive["mr"][1])
    good.SOPInstanceUID = good.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    good.SeriesInstanceUID = pydicom.uid.generate_uid()  # leaves the archive's MR series as it was
    good.save_as(tmp_path / "good.dcm")
    with pytest.raises(PacsError, match=r"refused 1 of 2 file\(s\) \(1 stored\)") as caught:
        connect(_url(orthanc, protocol)).store([tmp_path / "broken.dcm", tmp_path / "good.dcm"])
    assert re.search(r"broken\.dcm: .*status 0x[0-9A-F]{4}", str(caught.value))
    assert orthanc.lookup(good.SOPInstanceUID) and not orthanc.lookup(broken.SOPInstanceUID)


def _seg_of_a_series_the_archive_lacks(archive, folder):
    """A cardiac series written here, never uploaded, and a SEG of it: (image paths, SEG path)."""
    cardiac = archive["cardiac"]
    images = write_dicom_series(cardiac.volume, folder / "local", patient_id="PACS-LOCAL-1",
                                series_description="local cine")
    seg = save_dicom_seg(folder / "local_seg.dcm", cardiac.labels, load_volume(folder / "local"),
                         list(cardiac.classes))
    return images, seg


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_archive_is_asked_whether_it_holds_the_series_a_seg_refers_to(orthanc, archive, protocol, tmp_path):
    cardiac = archive["cardiac"]
    held = save_dicom_seg(tmp_path / "held.dcm", cardiac.labels, load_volume(archive["folder"] / "mr"),
                          list(cardiac.classes))
    pacs = connect(_url(orthanc, protocol))
    assert missing_series(pacs, [held]) == []
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    header = pydicom.dcmread(images[0], stop_before_pixels=True)
    assert missing_series(pacs, [seg]) == [ReferencedSeries(header.StudyInstanceUID, header.SeriesInstanceUID)]
    assert not orthanc.lookup(header.SeriesInstanceUID)  # Orthanc's own word: it does not hold it


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_the_archive_holds_in_part_is_missed(orthanc, archive, protocol, tmp_path):
    """A send with the images cut short: Orthanc's own count of what it holds against the
    images the SEG names."""
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    pacs = connect(_url(orthanc, protocol))
    pacs.store(images[:3])
    missing = missing_series(pacs, [seg])
    assert [(m.held, m.images) for m in missing] == [(3, len(images))]
    pacs.store(images[3:])
    assert missing_series(pacs, [seg]) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_the_archive_holds_in_another_study_is_found_there_and_said(orthanc, archive, protocol, tmp_path):
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    split = split_study(orthanc, images, tmp_path)
    [reference] = check_references(connect(_url(orthanc, protocol)), [seg])
    assert not reference.missing and reference.elsewhere and reference.held == len(images)
    assert reference.held_in is not None and reference.held_in.study_uid == split.StudyInstanceUID
    assert dict(reference.held_in.study_attributes) == {"StudyDate": "20230102", "StudyTime": "101500",
                                                        "AccessionNumber": "SPLIT-7", "StudyID": "S7"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_stores_a_seg_into_the_study_the_archive_holds_its_images_in(orthanc, archive, protocol, tmp_path,
                                                                        capsys):
    """A tester's SEG, stored without a word into its own study after the PACS had split
    it, sat alone in a study with no images: OHIF showed the image without its SEG."""
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    split = split_study(orthanc, images, tmp_path)
    on_disk = seg.read_bytes()
    assert main(["pacs", "store", _url(orthanc, protocol), str(seg)]) == 0
    out, err = capsys.readouterr()
    assert f"holds the image series this SEG refers to in another study (series {split.SeriesInstanceUID} in the " \
           f"study {split.StudyInstanceUID}" in out and "storing the SEG into that study" in out and err == ""
    assert seg.read_bytes() == on_disk  # the file is not changed: only the copy sent
    [filed] = orthanc.instances(split.StudyInstanceUID, "SEG")
    seg_uid = filed["SOPInstanceUID"]
    study_uid, modalities = orthanc.study_of(seg_uid)
    assert study_uid == split.StudyInstanceUID and modalities == {"SEG", "MR"}  # with its images
    assert not [r for r in orthanc.lookup(pydicom.dcmread(seg, stop_before_pixels=True).StudyInstanceUID)
                if r["Type"] == "Instance"]  # and no SEG left alone in the study it named
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(seg_uid)))
    assert (stored.StudyDate, stored.StudyTime, stored.AccessionNumber, stored.StudyID) == (
        "20230102", "101500", "SPLIT-7", "S7")
    if shutil.which("dciodvfy"):
        stored.save_as(tmp_path / "stored.dcm", enforce_file_format=True)
        assert dciodvfy(tmp_path / "stored.dcm") == ([], [])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_seg_stored_as_it_is_and_into_the_held_study_is_two_objects(orthanc, archive, protocol, tmp_path):
    """The copy filed into the PACS's study kept the SEG's SOP Instance UID: a SEG sent both
    ways left the PACS two different objects under one UID. The copy is a new object, in a
    new series of that study, and conformant."""
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    split = split_study(orthanc, images, tmp_path)
    url = _url(orthanc, protocol)
    assert main(["pacs", "store", url, str(seg), "--as-is"]) == 0
    assert main(["pacs", "store", url, str(seg)]) == 0
    original = pydicom.dcmread(seg, stop_before_pixels=True)
    assert [r["Type"] for r in orthanc.lookup(original.SOPInstanceUID)] == ["Instance"]  # one object with its UID
    assert orthanc.study_of(original.SOPInstanceUID)[0] == original.StudyInstanceUID
    [filed] = orthanc.instances(split.StudyInstanceUID, "SEG")
    assert filed["SOPInstanceUID"] != original.SOPInstanceUID
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(filed["SOPInstanceUID"])))
    assert stored.SeriesInstanceUID != original.SeriesInstanceUID
    assert stored.file_meta.MediaStorageSOPInstanceUID == stored.SOPInstanceUID
    assert main(["pacs", "store", url, str(seg)]) == 0  # sent into that study again: the same object
    assert [instance["SOPInstanceUID"] for instance in orthanc.instances(split.StudyInstanceUID, "SEG")] == [
        filed["SOPInstanceUID"]]
    if shutil.which("dciodvfy"):
        stored.save_as(tmp_path / "filed.dcm", enforce_file_format=True)
        assert dciodvfy(tmp_path / "filed.dcm") == ([], [])


def test_cli_stores_a_seg_as_it_is_into_its_own_study_when_told(orthanc, archive, tmp_path, capsys):
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    split = split_study(orthanc, images, tmp_path)
    assert main(["pacs", "store", orthanc.dicomweb_url, str(seg), "--as-is"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("segview: warning: The PACS at") and "storing the SEG as it is (--as-is)" in err
    header = pydicom.dcmread(seg, stop_before_pixels=True)
    assert orthanc.study_of(header.SOPInstanceUID)[0] == header.StudyInstanceUID != split.StudyInstanceUID


class StudyGateway:
    """A DICOMweb gateway in front of Orthanc that answers the series query of a study as
    some archives do: 404 "Unknown study" where Orthanc answers [] (it does not hold the
    study), or ``status`` for every study once set; any other GET is Orthanc's answer."""

    def __init__(self, orthanc: Orthanc):
        self.status: int | None = None
        target, gateway = f"http://127.0.0.1:{orthanc.http_port}", self

        class Forward(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - quiet: the tests read stderr
                pass

            def do_GET(self) -> None:
                request = urllib.request.Request(target + self.path, headers={"Accept": self.headers["Accept"]})
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, kind, body = answer.status, answer.headers["Content-Type"], answer.read()
                except urllib.error.HTTPError as refused:
                    status, kind, body = refused.code, refused.headers["Content-Type"], refused.read()
                if re.fullmatch(r"/dicom-web/studies/[^/?]+/series(\?.*)?", self.path) and (
                        gateway.status or json.loads(body) == []):
                    status, kind, body = gateway.status or 404, "application/json", b'{"error": "Unknown study"}'
                self.send_response(status)
                self.send_header("Content-Type", kind or "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def gateway(orthanc):
    server = StudyGateway(orthanc)
    yield server
    server.stop()


def test_a_study_the_archive_answers_404_for_is_not_held(orthanc, archive, gateway, tmp_path, capsys):
    """"404 Unknown study" says the study, and so the series, is not there: not a check
    that could not be made. The command line refuses the SEG as for an empty answer."""
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    header = pydicom.dcmread(images[0], stop_before_pixels=True)
    pacs = connect(gateway.url)
    assert missing_series(pacs, [seg]) == [ReferencedSeries(header.StudyInstanceUID, header.SeriesInstanceUID)]
    assert main(["pacs", "store", gateway.url, str(seg)]) == 2
    assert f"does not hold the image series this SEG refers to (series {header.SeriesInstanceUID})" in (
        capsys.readouterr().err)
    orthanc.upload(images)  # the study known now: Orthanc's own answer goes through
    assert missing_series(pacs, [seg]) == []


@pytest.mark.parametrize("status, raised", [(500, ReferenceCheckFailed), (401, PacsAuthError),
                                            (403, PacsAuthError)])
def test_a_study_query_failing_otherwise_is_not_read_as_not_held(orthanc, archive, gateway, tmp_path, status,
                                                                 raised):
    _, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    gateway.status = status
    with pytest.raises(raised, match=f"HTTP {status}"):
        missing_series(connect(gateway.url), [seg])


def test_a_wrong_address_answering_404_to_everything_is_a_check_not_made(orthanc, archive, tmp_path):
    _, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    wrong = f"http://127.0.0.1:{orthanc.http_port}/no-dicom-web-here"
    with pytest.raises(ReferenceCheckFailed, match="HTTP 404"):
        missing_series(connect(wrong), [seg])


def test_a_file_that_is_not_dicom_is_refused_before_sending(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(PacsError, match="notes.txt is not a DICOM file"):
        connect("dimse://ANY@127.0.0.1:1").store([tmp_path / "notes.txt"])


# -- archives that are down, silent or refuse us ----------------------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/dicom-web", "dimse://PACS@127.0.0.1:{port}"])
def test_a_pacs_that_is_down_gives_a_clear_error_and_nothing_is_lost(url, archive, tmp_path):
    pacs = connect(url.format(port=free_port()), timeout=5)
    with pytest.raises(PacsError, match="Cannot reach the PACS.*(R|r)efused"):
        pacs.find(Query(patient_id="X"))
    with pytest.raises(PacsError, match="Cannot reach the PACS"):
        pacs.get_series("1.2.3", tmp_path / "out")
    assert _nothing_in(tmp_path / "out")
    before = archive["ct"][0].read_bytes()
    with pytest.raises(PacsError, match="Cannot reach the PACS"):
        pacs.store(archive["ct"][:2])
    assert archive["ct"][0].read_bytes() == before


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/dicom-web", "dimse://PACS@127.0.0.1:{port}"])
def test_a_pacs_that_never_answers_times_out_with_a_clear_error(url):
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        pacs = connect(url.format(port=silent.getsockname()[1]), timeout=1)
        started = time.monotonic()
        with pytest.raises(PacsError, match="did not answer within 1 s"):
            pacs.find(Query())
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/dicom-web", "dimse://PACS@127.0.0.1:{port}"])
def test_cancel_ends_a_search_of_a_pacs_that_never_answers(url):
    """A tester's Cancel waited out the 30 s timeout of a silent PACS: the search stops
    (cancelled, not timed out) as soon as it is told to. DIMSE hangs up; a DICOMweb
    request is left to its timeout, its answer unused."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        pacs = connect(url.format(port=silent.getsockname()[1]), timeout=120)
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        with pytest.raises(SearchCancelled, match="Search cancelled"):
            pacs.find(Query(), stop.is_set)
        assert not [t for t in threading.enumerate() if t.name == "pacs-hang-up"]


def test_a_refused_association_says_which_ae_titles_to_check(orthanc):
    url = orthanc.dimse_url.replace("ORTHANC@", "NOTORTHANC@")
    with pytest.raises(PacsError, match="refused the association.*SEGVIEW.*NOTORTHANC"):
        connect(url).find(Query())


def test_an_http_error_carries_its_status(orthanc):
    wrong_root = orthanc.dicomweb_url.replace("/dicom-web", "/not-dicom-web")
    with pytest.raises(PacsError, match=r"refused to search for studies: HTTP 404"):
        connect(wrong_root).find(Query())


@pytest.mark.parametrize("url, message", [
    ("ftp://host/x", "not a PACS address"), ("dimse://127.0.0.1:104", "dimse://AET@host:port"),
    ("dimse://PACS@host", "dimse://AET@host:port"), ("http:///dicom-web", "no host name")])
def test_malformed_addresses_say_how_to_write_them(url, message):
    with pytest.raises(PacsError, match=re.escape(message)):
        connect(url)


def test_an_ae_title_longer_than_16_characters_is_refused():
    with pytest.raises(PacsError, match="AE title"):
        connect("dimse://PACS@127.0.0.1:104", calling_ae="A" * 17)


# -- command line -----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_find_get_and_store(orthanc, archive, protocol, tmp_path, capsys):
    url = _url(orthanc, protocol)
    mr = archive["header"]["mr"]
    assert main(["pacs", "find", url, "--patient-name", "heart", "--modality", "MR", "--date", "20250101-"]) == 0
    out = capsys.readouterr().out
    assert mr.StudyInstanceUID in out and mr.SeriesInstanceUID in out and "short axis cine" in out
    assert "MR short axis cine (series 5): " in out  # its SeriesNumber, which two series may share: not "#5"
    assert f"{len(archive['mr'])} images" in out and "2025-06-20" in out and "PACS-CT-1" not in out
    assert main(["pacs", "get", url, mr.SeriesInstanceUID, "-o", str(tmp_path / "mr")]) == 0
    assert f"{len(archive['mr'])} images in" in capsys.readouterr().out
    assert len(list((tmp_path / "mr").glob("*.dcm"))) == len(archive["mr"])
    copy = pydicom.dcmread(archive["mr"][2])
    copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    copy.SeriesInstanceUID = pydicom.uid.generate_uid()
    copy.save_as(tmp_path / "copy.dcm")
    assert main(["pacs", "store", url, str(tmp_path / "copy.dcm"), "--calling-ae", "CLITEST"]) == 0
    assert "1 file(s) stored" in capsys.readouterr().out
    assert orthanc.lookup(copy.SOPInstanceUID)


def test_cli_reports_a_pacs_that_is_down_in_one_line(capsys):
    assert main(["pacs", "find", f"dimse://PACS@127.0.0.1:{free_port()}", "--timeout", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segview: Cannot reach the PACS (AE title PACS) at 127.0.0.1:") and "\n" not in err


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_store_refuses_a_seg_whose_series_the_pacs_lacks_unless_sent_along_or_forced(orthanc, archive, protocol,
                                                                                       tmp_path, capsys):
    url = _url(orthanc, protocol)
    images, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    series_uid = pydicom.dcmread(images[0], stop_before_pixels=True).SeriesInstanceUID
    seg_uid = pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID
    assert main(["pacs", "store", url, str(seg)]) == 2
    err = capsys.readouterr().err
    assert f"does not hold the image series this SEG refers to (series {series_uid})" in err and "--force" in err
    assert not orthanc.lookup(seg_uid)
    assert main(["pacs", "store", url, str(seg), "--force"]) == 0
    out, err = capsys.readouterr()
    assert "1 file(s) stored" in out and "warning" in err and "storing it anyway (--force)" in err
    assert orthanc.lookup(seg_uid) and not orthanc.lookup(series_uid)
    assert main(["pacs", "store", url, *map(str, images), str(seg)]) == 0  # the images with it: nothing to refuse
    assert f"{len(images) + 1} file(s) stored" in capsys.readouterr().out
    assert orthanc.lookup(series_uid)


def test_cli_store_goes_on_with_a_warning_when_the_pacs_cannot_answer_the_check(orthanc, archive, tmp_path, capsys,
                                                                                 monkeypatch):
    """An archive without QIDO-RS (HTTP 501 here) could hold the series: the files were
    named on purpose, so the store goes on, and the warning says the check was not made."""
    def no_qido(self, study_uid, modality=""):
        raise PacsError(f"The PACS at {self.url} refused to list the series of the study: HTTP 501 Not Implemented")

    monkeypatch.setattr(DicomWebPacs, "find_series", no_qido)
    _, seg = _seg_of_a_series_the_archive_lacks(archive, tmp_path)
    assert main(["pacs", "store", orthanc.dicomweb_url, str(seg)]) == 0
    out, err = capsys.readouterr()
    assert "1 file(s) stored" in out
    assert err.startswith("segview: warning: Could not check whether the PACS") and "HTTP 501" in err
    assert orthanc.lookup(pydicom.dcmread(seg, stop_before_pixels=True).SOPInstanceUID)
