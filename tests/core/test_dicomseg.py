"""DICOM SEG export: references the source series, reads back to the same labels."""
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segview.core.classes import LabelClass
from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import (DicomSegError, export_reason, latest_seg, read_dicom_seg, referenced_series_uid,
                                    save_dicom_seg, seg_name)
from segview.core.io import load_volume
from segview.core.phantoms import make_phantom

from .test_dicom_conformance import dciodvfy, needs_dciodvfy


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory):
    case = make_phantom("cardiac", 3)
    folder = tmp_path_factory.mktemp("mr")
    write_dicom_series(case.volume, folder / "series")
    return case, load_volume(folder / "series")


def test_a_seg_reads_back_to_the_same_labels_and_references_every_source_image(dicom_case, tmp_path):
    case, volume = dicom_case
    labels = case.labels.copy()
    labels[labels == 2] = 0  # a class with no voxels is still a segment
    save_dicom_seg(tmp_path / "seg.dcm", labels, volume, list(case.classes), "cardiac_ce")
    np.testing.assert_array_equal(read_dicom_seg(tmp_path / "seg.dcm", volume, list(case.classes)), labels)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.Modality == "SEG" and seg.SeriesInstanceUID != volume.meta["series_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.meta["series_uid"]
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in volume.meta["source_files"]}
    assert referenced == sources
    segment = seg.SegmentSequence[2]
    assert (segment.SegmentLabel, segment.SegmentAlgorithmType) == ("left ventricle", "SEMIAUTOMATIC")
    assert "cardiac_ce" in segment.SegmentAlgorithmName
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "87878005"
    assert seg.StudyInstanceUID == volume.meta["study_uid"] and seg.PatientID == volume.meta["patient_id"]


def test_volumes_that_are_not_their_dicom_slices_cannot_be_exported(dicom_case, tmp_path):
    case, volume = dicom_case
    assert export_reason(volume) is None
    assert "loaded from DICOM" in export_reason(case.volume)
    with pytest.raises(DicomSegError, match="loaded from DICOM"):
        save_dicom_seg(tmp_path / "seg.dcm", case.labels, case.volume, list(case.classes))
    gap = tmp_path / "gap"
    shutil.copytree(Path(volume.meta["source_files"][0]).parent, gap)
    (gap / Path(volume.meta["source_files"][5]).name).unlink()  # a slice missing: interpolated
    assert "resampled (missing or unevenly spaced slices)" in export_reason(load_volume(gap))
    frames = load_volume(gap)
    frames.meta = {**frames.meta, "resampled": False, "source_files": frames.meta["source_files"][:1]}
    assert "multi-frame" in export_reason(frames)  # one file of many frames: a tester's reason named tilts
    with pytest.raises(DicomSegError, match="empty"):
        save_dicom_seg(tmp_path / "seg.dcm", np.zeros_like(case.labels), volume, list(case.classes))


def test_an_empty_segment_and_one_drawn_by_hand_name_no_algorithm(dicom_case, tmp_path):
    """A tester's SEG called its empty classes SEMIAUTOMATIC 'segview (manual, corrected by
    hand)' of the family 'Artificial Intelligence'."""
    case, volume = dicom_case
    labels = case.labels.copy()
    labels[labels == 2] = 0
    save_dicom_seg(tmp_path / "seg.dcm", labels, volume, list(case.classes), "cardiac_ce")
    segments = pydicom.dcmread(tmp_path / "seg.dcm").SegmentSequence
    assert segments[1].SegmentAlgorithmType == "MANUAL" and "SegmentAlgorithmName" not in segments[1]  # empty
    save_dicom_seg(tmp_path / "hand.dcm", labels, volume, list(case.classes))  # algorithm "manual"
    assert {s.SegmentAlgorithmType for s in pydicom.dcmread(tmp_path / "hand.dcm").SegmentSequence} == {"MANUAL"}


def test_a_tilted_series_cannot_be_exported_and_says_why(tmp_path):
    """A gantry-tilted series keeps as many slices as files once resampled: export was on,
    and highdicom's error escaped the window with no message."""
    from segview.core.volume import Volume

    case = make_phantom("cardiac", 3)
    slice_dir = np.array([0.0, 0.3, 1.0]) / np.linalg.norm([0.0, 0.3, 1.0])
    direction = np.column_stack([[1, 0, 0], [0, 1, 0], slice_dir])
    tilted = Volume(case.volume.array, case.volume.spacing, case.volume.origin, tuple(direction.ravel()),
                    modality="MR")
    write_dicom_series(tilted, tmp_path / "tilt")
    volume = load_volume(tmp_path / "tilt")
    assert any("tilt" in w for w in volume.meta["warnings"])
    assert "resampled (gantry tilt)" in export_reason(volume)
    with pytest.raises(DicomSegError, match="resampled"):
        save_dicom_seg(tmp_path / "seg.dcm", np.ones(volume.shape, np.uint8), volume, list(case.classes))


def test_a_seg_opens_as_labels_with_its_segments_as_classes(dicom_case, tmp_path):
    """A SEG segview exported, or one from the PACS, opened as the labels of its series (a
    tester's SEG was refused as 'not on the grid')."""
    from segview.core.dicomseg import is_dicom_seg
    from segview.session import ReviewSession

    case, volume = dicom_case
    labels = case.labels.copy()
    labels[labels == 2] = 0
    save_dicom_seg(tmp_path / "seg.dcm", labels, volume, list(case.classes), "cardiac_ce")
    assert is_dicom_seg(tmp_path / "seg.dcm") and not is_dicom_seg(volume.meta["source_files"][0])
    session = ReviewSession.open(volume, labels=tmp_path / "seg.dcm")
    np.testing.assert_array_equal(session.labels.array, labels)
    assert [(c.value, c.name, c.color) for c in session.classes] == [(c.value, c.name, c.color) for c in case.classes]
    assert not session.reviewed.any() and session.labels_path is None  # saving writes a label file, not the SEG
    assert any('DICOM SEG "segview corrected labels" (series 900, ' in w for w in session.warnings)  # not its file
    session.close(discard=True)


def test_a_seg_is_named_by_its_series_description_number_and_date_else_by_its_file(dicom_case, tmp_path):
    """A SEG from the PACS was named by its file, a UID: "1.2.826.0.1.3680043...245.dcm"."""
    case, volume = dicom_case
    written = save_dicom_seg(tmp_path / "1.2.826.0.1.3680043.245.dcm", case.labels, volume, list(case.classes))
    seg = pydicom.dcmread(written)
    seg.SeriesNumber, seg.SeriesDate, seg.ContentDate = 7, "20260102", "20260103"
    seg.save_as(written)
    assert seg_name(written) == '"segview corrected labels" (series 7, 2026-01-02)'
    del seg.SeriesDate, seg.SeriesNumber  # the content date stands in for the series date
    seg.save_as(written)
    assert seg_name(written) == '"segview corrected labels" (2026-01-03)'
    del seg.SeriesDescription
    seg.save_as(written)
    assert seg_name(written) == "1.2.826.0.1.3680043.245.dcm"


def test_a_seg_on_an_image_whose_files_are_gone_is_refused_with_the_reason(dicom_case, tmp_path):
    """The PACS cache emptied while its image is on screen: opening a SEG on it said
    FileNotFoundError, shown as a programming error."""
    import copy
    import shutil

    from segview.core.dicomseg import DicomSegError, read_seg_labels

    case, volume = dicom_case
    save_dicom_seg(tmp_path / "seg.dcm", case.labels, volume, list(case.classes), "cardiac_ce")
    moved = tmp_path / "moved"
    shutil.copytree(Path(volume.meta["source_files"][0]).parent, moved)
    gone = copy.copy(volume)
    gone.meta = {**volume.meta, "source_files": [str(moved / Path(f).name) for f in volume.meta["source_files"]]}
    shutil.rmtree(moved)
    with pytest.raises(DicomSegError, match="can no longer be read"):
        read_seg_labels(tmp_path / "seg.dcm", gone)


def test_a_seg_of_another_series_is_refused_with_the_reason(dicom_case, tmp_path):
    from segview.core.errors import VolumeLoadError
    from segview.session import ReviewSession

    case, volume = dicom_case
    other_case = make_phantom("cardiac", 4)
    write_dicom_series(other_case.volume, tmp_path / "other")
    other = load_volume(tmp_path / "other")
    save_dicom_seg(tmp_path / "other_seg.dcm", other_case.labels, other, list(other_case.classes))
    with pytest.raises(VolumeLoadError, match="segments another series"):
        ReviewSession.open(volume, labels=tmp_path / "other_seg.dcm")


def test_images_without_positions_cannot_carry_a_seg(tmp_path):
    """Export was on for such a series, and save_dicom_seg raised an AttributeError."""
    case = make_phantom("cardiac", 3)
    for path in write_dicom_series(case.volume, tmp_path / "s"):
        dataset = pydicom.dcmread(path)
        del dataset.ImagePositionPatient
        dataset.save_as(path)
    volume = load_volume(tmp_path / "s")
    assert "carry no patient position" in export_reason(volume)
    with pytest.raises(DicomSegError, match="no patient position"):
        save_dicom_seg(tmp_path / "seg.dcm", case.labels, volume, list(case.classes))


def _foreign_seg(path, volume, pixels, kind):
    """A SEG another program wrote (highdicom), segments 1.. of ``pixels`` (z, y, x, segment)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from segview.core.dicomseg import _slice_sources

    sources = [pydicom.dcmread(ds.filename) for ds in _slice_sources(volume).images]
    algorithm = hd.AlgorithmIdentificationSequence(name="t", version="1", family=codes.cid7162.ArtificialIntelligence)
    segments = [hd.seg.SegmentDescription(segment_number=n, segment_label=f"s{n}",
                                          segmented_property_category=codes.SCT.Tissue,
                                          segmented_property_type=codes.SCT.Tissue,
                                          algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                                          algorithm_identification=algorithm) for n in range(1, pixels.shape[-1] + 1)]
    hd.seg.Segmentation(source_images=sources, pixel_array=pixels, segmentation_type=kind,
                        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=5,
                        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="x", manufacturer_model_name="x",
                        software_versions="1", device_serial_number="1").save_as(path)


def test_a_fractional_seg_opens_where_it_reaches_half_and_an_overlap_is_named(dicom_case, tmp_path):
    """A tester's FRACTIONAL SEG was refused in highdicom's words, and an overlap unnamed."""
    import highdicom as hd

    from segview.core.dicomseg import read_seg_labels

    _, volume = dicom_case
    fractional = np.zeros((*volume.shape, 2), np.float32)
    fractional[3, 40:60, 40:60, 0] = 1.0
    fractional[3, 40:60, 60:70, 0] = 0.4  # under half: not the class
    fractional[4, 80:90, 80:90, 1] = 0.7
    _foreign_seg(tmp_path / "fractional.dcm", volume, fractional, hd.seg.SegmentationTypeValues.FRACTIONAL)
    labels, classes = read_seg_labels(tmp_path / "fractional.dcm", volume)
    expected = np.zeros(volume.shape, np.uint8)
    expected[3, 40:60, 40:60] = 1
    expected[4, 80:90, 80:90] = 2
    np.testing.assert_array_equal(labels, expected)
    assert [c.name for c in classes] == ["background", "s1", "s2"]
    overlapping = np.zeros((*volume.shape, 2), bool)
    overlapping[5, 10:20, 10:30, 0] = overlapping[5, 15:25, 10:30, 1] = True
    _foreign_seg(tmp_path / "overlap.dcm", volume, overlapping, hd.seg.SegmentationTypeValues.BINARY)
    with pytest.raises(DicomSegError, match=r"segments 1 \(s1\) and 2 \(s2\) overlap, e.g. on slice 6"):
        read_seg_labels(tmp_path / "overlap.dcm", volume)


def test_a_seg_names_the_image_series_it_segments_and_its_last_revision_is_opened(dicom_case, tmp_path):
    """File > Open from PACS opens a SEG series' last revision on the series it references."""
    case, volume = dicom_case
    source_series = pydicom.dcmread(volume.meta["source_files"][0], stop_before_pixels=True).SeriesInstanceUID
    folder = tmp_path / "seg series"
    folder.mkdir()
    revisions = {number: save_dicom_seg(folder / name, case.labels, volume, list(case.classes),
                                        series_uid="1.2.826.0.1.77", instance_number=number)
                 for number, name in ((1, "c.dcm"), (3, "b.dcm"), (2, "a.dcm"))}  # names in no order of theirs
    (folder / "d.dcm").write_bytes(b"not DICOM")  # anything else in the folder is passed over
    assert referenced_series_uid(revisions[1]) == source_series
    assert latest_seg(folder) == revisions[3]


def test_a_folder_without_a_seg_or_a_seg_without_references_is_refused_with_the_reason(dicom_case, tmp_path):
    case, volume = dicom_case
    with pytest.raises(DicomSegError, match="holds no DICOM SEG"):
        latest_seg(Path(volume.meta["source_files"][0]).parent)
    with pytest.raises(DicomSegError, match="is not a DICOM SEG"):
        referenced_series_uid(volume.meta["source_files"][0])
    seg_path = save_dicom_seg(tmp_path / "seg.dcm", case.labels, volume, list(case.classes))
    seg = pydicom.dcmread(seg_path)
    del seg.ReferencedSeriesSequence
    seg.save_as(seg_path)
    with pytest.raises(DicomSegError, match="does not say which image series it segments"):
        referenced_series_uid(seg_path)


# -- enhanced (multi-frame) source images -------------------------------------------------

#: The slice (index z) each frame of the test's enhanced CT holds: frame 1 holds
#: slice 3 and so on, so that a SEG putting slice z on frame z + 1 is caught.
FRAME_SLICES = [3, 0, 5, 1, 4, 2]


def write_enhanced_ct(folder: Path, frame_slices: list[int], **patient) -> Path:
    """A Legacy Converted Enhanced CT (highdicom's converter) of a 6 x 16 x 20 volume of
    random HU, whose frame n + 1 is slice ``frame_slices[n]`` of a single-frame series
    (written with ``patient``: write_dicom_series's patient_id, patient_name)."""
    import highdicom as hd

    from segview.core.volume import Volume

    values = np.random.default_rng(0).integers(-1000, 1000, (6, 16, 20)).astype(np.int16)
    volume = Volume(values, spacing=(0.8, 0.7, 2.5), origin=(-10.0, 5.0, 30.0), modality="CT")
    paths = write_dicom_series(volume, folder / "single", **patient)
    ct = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(paths[z]) for z in frame_slices], series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, include_dimension_index=False)  # frames in the order given
    ct.save_as(folder / "ct.dcm")
    return folder / "ct.dcm"


ENHANCED_CLASSES = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "left ventricle", (255, 0, 0)),
                    LabelClass(2, "myocardium", (0, 255, 0)), LabelClass(3, "infection", (0, 0, 255))]


@pytest.fixture(scope="module")
def enhanced_seg(tmp_path_factory):
    """An enhanced CT, labels with one class a slice, and their SEG: (volume, labels, SEG path)."""
    folder = tmp_path_factory.mktemp("enhanced")
    volume = load_volume(write_enhanced_ct(folder, FRAME_SLICES))
    assert volume.shape == (6, 16, 20) and not volume.meta.get("resampled")
    labels = np.zeros(volume.shape, np.uint8)
    labels[1, 2:6, 3:9] = 1
    labels[4, 8:12, 10:15] = 2
    labels[5, 0:3, 0:3] = 3
    return volume, labels, save_dicom_seg(folder / "seg.dcm", labels, volume, ENHANCED_CLASSES, "model")


def test_a_seg_of_an_enhanced_ct_lies_on_the_frames_of_its_slices_and_reads_back(enhanced_seg):
    """segview refused a SEG on an enhanced image; highdicom puts the planes it is given on
    the source's frames in frame order, and the reader sorts frames by position."""
    import highdicom as hd

    from segview.core.dicomseg import read_seg_labels

    volume, labels, path = enhanced_seg
    seg = hd.seg.segread(path)
    [series] = seg.ReferencedSeriesSequence
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedInstanceSequence] == [
        pydicom.dcmread(volume.meta["source_files"][0], stop_before_pixels=True).SOPInstanceUID]
    pixels = seg.pixel_array.reshape(-1, *volume.shape[1:])
    for frame, item in zip(pixels, seg.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source_frame = int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        z = FRAME_SLICES[source_frame - 1]
        np.testing.assert_array_equal(frame, labels[z] == segment, err_msg=f"segment {segment}, frame {source_frame}")
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   volume.index_to_physical((z, 0, 0)), atol=1e-3)
    back, classes = read_seg_labels(path, volume)
    np.testing.assert_array_equal(back, labels)
    assert [c.name for c in classes] == [c.name for c in ENHANCED_CLASSES]
    np.testing.assert_array_equal(read_dicom_seg(path, volume, ENHANCED_CLASSES), labels)


@needs_dciodvfy
def test_a_seg_of_an_enhanced_ct_passes_dciodvfy(enhanced_seg):
    errors, warnings = dciodvfy(enhanced_seg[2])
    assert errors == [] and warnings == [], (errors, warnings)


def test_a_resampled_or_split_enhanced_series_is_still_refused_with_its_reason(tmp_path):
    """highdicom takes one multi-frame source, placed frame by frame on the slices."""
    import copy

    gap = load_volume(write_enhanced_ct(tmp_path / "gap", [3, 0, 5, 1, 4]))  # slice 2 missing: interpolated
    assert "resampled (missing or unevenly spaced slices)" in export_reason(gap)
    with pytest.raises(DicomSegError, match="resampled"):
        save_dicom_seg(tmp_path / "seg.dcm", np.ones(gap.shape, np.uint8), gap, ENHANCED_CLASSES)
    whole = pydicom.dcmread(write_enhanced_ct(tmp_path / "whole", FRAME_SLICES))
    (tmp_path / "halves").mkdir()
    for name, frames in (("a.dcm", [0, 1, 2]), ("b.dcm", [3, 4, 5])):  # one series in two enhanced files
        half = copy.deepcopy(whole)
        half.SOPInstanceUID = half.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        half.NumberOfFrames = len(frames)
        half.PerFrameFunctionalGroupsSequence = [whole.PerFrameFunctionalGroupsSequence[n] for n in frames]
        half.PixelData = whole.pixel_array[frames].tobytes()
        half.save_as(tmp_path / "halves" / name)
    split = load_volume(tmp_path / "halves")
    assert split.shape == (6, 16, 20) and not split.meta.get("resampled")
    assert "2 multi-frame (enhanced) files" in export_reason(split)
