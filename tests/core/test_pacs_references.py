"""Whether a PACS holds the image series a SEG refers to, asked of a fake archive (no
network): a SEG stored without its images is one no viewer of the PACS can show. The same
check against a real Orthanc is in test_pacs.py."""
from __future__ import annotations

import pydicom
import pytest

from segview.core import pacs as pacs_module
from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import save_dicom_seg
from segview.core.io import load_volume
from segview.core.pacs import (Pacs, PacsError, ReferenceCheckFailed, ReferencedSeries, Series, SeriesNotFound,
                               check_references, held_elsewhere_text, into_held_study, missing_series, not_held_text,
                               referenced_series)
from segview.core.phantoms import make_phantom


class FakeArchive(Pacs):
    """An archive that holds ``held`` (study UID -> its series UIDs; of each, ``images``
    (series UID -> count) or else all the images a SEG may name), or whose series queries
    raise ``failure`` (``locate_failure``: the query by series UID alone, as a strictly
    hierarchical PACS refuses it); ``asked`` lists the studies it was asked about,
    ``located`` the series asked for by UID alone, ``counted`` the (study, series) whose
    images were counted. Like some PACS, its series query gives no image count: that is
    asked apart."""

    def __init__(self, held: dict[str, list[str]] | None = None, failure: Exception | None = None,
                 images: dict[str, int] | None = None, locate_failure: Exception | None = None):
        super().__init__("dimse://FAKE@127.0.0.1:1", "SEGVIEW", 1)
        self.held, self.failure, self.images, self.locate_failure = held or {}, failure, images or {}, locate_failure
        self.asked: list[str] = []
        self.located: list[str] = []
        self.counted: list[tuple[str, str]] = []

    def find_series(self, study_uid: str, modality: str = "") -> list[Series]:
        self.asked.append(study_uid)
        if self.failure is not None:
            raise self.failure
        return [Series(uid, study_uid, "MR") for uid in self.held.get(study_uid, [])]

    def locate_series(self, series_uid: str) -> Series:
        self.located.append(series_uid)
        if self.locate_failure is not None:
            raise self.locate_failure
        for study_uid, series in self.held.items():
            if series_uid in series:
                return Series(series_uid, study_uid, "MR")
        raise SeriesNotFound(f"The PACS holds no series with the UID {series_uid}.")

    def _count_images(self, series: Series) -> int:
        self.counted.append((series.study_uid, series.uid))
        return self.images.get(series.uid, 10_000)


@pytest.fixture(scope="module")
def seg_case(tmp_path_factory):
    """A cardiac series on disk and a SEG of it: (image paths, SEG path, study UID, series UID)."""
    folder = tmp_path_factory.mktemp("seg-case")
    case = make_phantom("cardiac", 3)
    images = write_dicom_series(case.volume, folder / "mr", patient_id="REF-1", series_description="cine")
    seg = save_dicom_seg(folder / "seg.dcm", case.labels, load_volume(folder / "mr"), list(case.classes))
    header = pydicom.dcmread(images[0], stop_before_pixels=True)
    return images, seg, str(header.StudyInstanceUID), str(header.SeriesInstanceUID)


def test_a_seg_refers_to_the_series_it_was_made_on(seg_case):
    _, seg, study, series = seg_case
    assert referenced_series([seg]) == [ReferencedSeries(study, series)]


def test_an_archive_that_holds_the_series_is_asked_once_and_misses_nothing(seg_case):
    _, seg, study, series = seg_case
    archive = FakeArchive({study: ["1.2.3", series]})
    assert missing_series(archive, [seg]) == [] and archive.asked == [study] and archive.located == []


def test_an_archive_without_the_series_misses_it(seg_case):
    _, seg, study, series = seg_case
    archive = FakeArchive({study: ["1.2.3"]})  # another series of the study: not the SEG's
    assert missing_series(archive, [seg]) == [ReferencedSeries(study, series)]
    assert archive.located == [series]  # nor in another study
    assert missing_series(FakeArchive(), [seg]) == [ReferencedSeries(study, series)]  # nor the study


def test_a_series_the_archive_holds_in_another_study_is_held(seg_case):
    """A study split or merged at the PACS: the series the SEG refers to now lies in
    another study than the SEG's own, whose images are counted there."""
    images, seg, study, series = seg_case
    archive = FakeArchive({study: ["1.2.3"], "1.2.99": [series]}, images={series: len(images)})
    assert missing_series(archive, [seg]) == []
    assert archive.located == [series] and archive.counted == [("1.2.99", series)]
    [reference] = check_references(archive, [seg])  # held, but not where the SEG says: said apart
    assert reference.elsewhere and not reference.missing and reference.held_in.study_uid == "1.2.99"
    assert not check_references(FakeArchive({study: [series]}), [seg])[0].elsewhere  # in the SEG's own study
    part = FakeArchive({"1.2.99": [series]}, images={series: 2})  # the SEG's study is not held at all
    assert [(m.held, m.images) for m in missing_series(part, [seg])] == [(2, len(images))]


def test_a_query_by_series_alone_the_archive_refuses_is_a_check_not_made(seg_case):
    """A strictly hierarchical PACS refuses a C-FIND for a series without its study: the
    series may lie in another study, so it is not said to be missing."""
    _, seg, study, _ = seg_case
    refused = PacsError("The PACS FAKE refused to search for the series: status 0xA900 (Failure).")
    with pytest.raises(ReferenceCheckFailed, match="Could not check whether the PACS at .*status 0xA900"):
        missing_series(FakeArchive({study: ["1.2.3"]}, locate_failure=refused), [seg])


def test_an_archive_holding_part_of_the_series_misses_the_rest(seg_case):
    """A send of the images cut short (the PACS stopped): a retry stored the SEG alone over
    22 of the 40 images it names, without a word."""
    images, seg, study, series = seg_case
    archive = FakeArchive({study: [series]}, images={series: len(images) - 3})
    missing = missing_series(archive, [seg])
    assert missing == [ReferencedSeries(study, series)]
    assert (missing[0].held, missing[0].images) == (len(images) - 3, len(images))
    assert not_held_text("ORTHANC", missing) == (f"ORTHANC does not hold all of the image series this SEG refers to "
                                                 f"(series {series}: {len(images) - 3} of its {len(images)} images)")
    assert missing_series(FakeArchive({study: [series]}, images={series: len(images)}), [seg]) == []


def test_images_sent_with_their_seg_need_not_be_in_the_archive(seg_case):
    images, seg, _, _ = seg_case
    archive = FakeArchive()
    assert missing_series(archive, [*images, seg]) == [] and archive.asked == []


def test_files_that_are_not_segs_are_not_checked(seg_case):
    images, _, _, _ = seg_case
    archive = FakeArchive()
    assert missing_series(archive, images[:1]) == [] and archive.asked == []


def test_a_query_the_archive_refuses_is_a_check_not_made(seg_case):
    _, seg, _, _ = seg_case
    archive = FakeArchive(failure=PacsError("The PACS refused to list the series: HTTP 501 Not Implemented"))
    with pytest.raises(ReferenceCheckFailed, match="Could not check whether the PACS at .* holds the image series.*"
                                                   "HTTP 501"):
        missing_series(archive, [seg])


def test_an_archive_that_cannot_be_reached_fails_as_the_store_would(seg_case):
    _, seg, _, _ = seg_case
    down = pacs_module._ConnectionFailure("Cannot reach the PACS at dimse://FAKE@127.0.0.1:1")
    with pytest.raises(PacsError, match="Cannot reach the PACS") as caught:
        missing_series(FakeArchive(failure=down), [seg])
    assert not isinstance(caught.value, ReferenceCheckFailed)


def test_the_series_not_held_are_named_by_description_where_known():
    missing = [ReferencedSeries("1.2", "1.2.3"), ReferencedSeries("1.2", "1.2.4")]
    assert not_held_text("ORTHANC", missing, {"1.2.3": "short axis cine"}) == (
        "ORTHANC does not hold the image series this SEG refers to (short axis cine, series 1.2.3; series 1.2.4)")


def test_a_series_answered_for_another_uid_is_not_taken_for_the_one_asked():
    # A PACS that ignores the series UID of a relational query answers its other series.
    others = [Series("1.2.9", "1.2.1"), Series("1.2.8", "1.2.1")]
    with pytest.raises(SeriesNotFound):
        pacs_module._only_series(others, "1.2.3", "dimse://PACS@host:104")
    assert pacs_module._only_series([*others, Series("1.2.3", "1.2.2")], "1.2.3", "x").study_uid == "1.2.2"


def test_a_seg_is_copied_into_the_study_the_archive_holds_its_images_in(seg_case, tmp_path):
    """The copy sent takes the study's UID, and the study attributes the PACS answered (only
    those); the SEG's file, and files that are no SEG, are sent as they are."""
    images, seg, study, series = seg_case
    on_disk = seg.read_bytes()
    held_in = Series(series, "1.2.99", study_attributes=(("AccessionNumber", "ACC-9"), ("StudyDate", "20230102")))
    elsewhere = ReferencedSeries(study, series, len(images), len(images), held_in)
    sent = into_held_study([images[0], seg], [elsewhere], tmp_path)
    assert sent[0] == images[0] and sent[1] != seg and sent[1].name == seg.name and seg.read_bytes() == on_disk
    copy, original = pydicom.dcmread(sent[1]), pydicom.dcmread(seg)
    assert (copy.StudyInstanceUID, copy.AccessionNumber, copy.StudyDate) == ("1.2.99", "ACC-9", "20230102")
    assert copy.StudyTime == original.StudyTime and copy.StudyID == original.StudyID  # not answered: kept
    assert copy.PixelData == original.PixelData
    # Another study, another object: new UIDs (the file meta's too), the same on a second copy.
    assert copy.SOPInstanceUID != original.SOPInstanceUID == original.file_meta.MediaStorageSOPInstanceUID
    assert copy.file_meta.MediaStorageSOPInstanceUID == copy.SOPInstanceUID
    assert copy.SeriesInstanceUID != original.SeriesInstanceUID
    revision = pydicom.dcmread(seg)  # the next revision of the review: another object of the SEG's series
    revision.SOPInstanceUID = revision.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    revision.save_as(tmp_path / "revision.dcm", enforce_file_format=True)
    again, next_one = (pydicom.dcmread(p) for p in into_held_study([seg, tmp_path / "revision.dcm"], [elsewhere],
                                                                   tmp_path))
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (copy.SOPInstanceUID, copy.SeriesInstanceUID)
    assert next_one.SeriesInstanceUID == copy.SeriesInstanceUID and next_one.SOPInstanceUID != copy.SOPInstanceUID
    assert into_held_study([seg], [ReferencedSeries(study, series, 3, 3, Series(series, study))], tmp_path) == [seg]
    assert held_elsewhere_text("ORTHANC", [elsewhere]) == (
        f"ORTHANC holds the image series this SEG refers to in another study (series {series} in the study "
        f"1.2.99, not the SEG's study {study})")
