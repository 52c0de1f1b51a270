"""DICOM SEG export: references the source series, reads back to the same labels."""
import numpy as np
import pydicom
import pytest

from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import DicomSegError, export_reason, read_dicom_seg, save_dicom_seg
from segview.core.io import load_volume
from segview.core.phantoms import make_phantom


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
    resampled = load_volume(volume.meta["source_files"][0].rsplit("/", 1)[0])
    resampled.meta["source_files"] = resampled.meta["source_files"][:-1]  # as if a slice were interpolated
    assert "resampled" in export_reason(resampled)
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
    assert "resampled (gantry tilt" in export_reason(volume)
    with pytest.raises(DicomSegError, match="resampled"):
        save_dicom_seg(tmp_path / "seg.dcm", np.ones(volume.shape, np.uint8), volume, list(case.classes))
