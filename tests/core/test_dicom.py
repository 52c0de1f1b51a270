"""DICOM: series discovery, sorting, irregular stacks, multi-frame, and every kind of
bad input ending in VolumeLoadError."""
import random
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from segview.core.classes import LabelClass
from segview.core.dicom import read_dicom_files, write_dicom_series
from segview.core.dicomseg import DicomSegError, read_seg_labels, save_dicom_seg
from segview.core.io import VolumeLoadError, list_dicom_series, load_labels, load_volume, save_labels, save_volume
from segview.core.phantoms import cardiac_phantom, lung_phantom
from segview.core.volume import Volume


@pytest.fixture(scope="module")
def lung():
    return lung_phantom(seed=11).volume


@pytest.fixture(scope="module")
def cardiac():
    return cardiac_phantom(seed=12).volume


def assert_same_volume(a: Volume, b: Volume, atol=1e-4):
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.spacing, b.spacing, atol=atol)
    np.testing.assert_allclose(a.origin, b.origin, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


@pytest.mark.parametrize("which", ["lung", "cardiac"])
def test_phantom_as_dicom_reads_back_equal_to_the_nifti_phantom(tmp_path, which, request):
    phantom = request.getfixturevalue(which)
    write_dicom_series(phantom, tmp_path / "dicom")
    save_volume(tmp_path / "image.nii.gz", phantom)
    from_dicom = load_volume(tmp_path / "dicom")
    from_nifti = load_volume(tmp_path / "image.nii.gz")
    assert_same_volume(from_dicom, from_nifti)
    assert from_dicom.meta["warnings"] == []
    assert from_dicom.modality == phantom.modality
    assert from_dicom.meta["series_description"] == phantom.meta["series_description"]
    if which == "lung":  # HU through RescaleIntercept, window presets kept
        assert from_dicom.array.min() == -1024
        assert ("Lung", -600.0, 1500.0) in from_dicom.meta["window_presets"]
        assert pydicom.dcmread(next((tmp_path / "dicom").iterdir())).RescaleIntercept == -1024


def test_shuffled_file_names_and_order_give_the_same_volume(tmp_path, lung):
    paths = write_dicom_series(lung, tmp_path / "ordered")
    shuffled = tmp_path / "shuffled" / "deep" / "er"
    shuffled.mkdir(parents=True)
    names = [f"{n:08x}" for n in random.Random(4).sample(range(10**6), len(paths))]
    for path, name in zip(paths, names):
        shutil.copy(path, shuffled / name)  # no extension, random order
    (tmp_path / "shuffled" / "README.txt").write_text("not DICOM")
    assert_same_volume(load_volume(tmp_path / "shuffled"), load_volume(tmp_path / "ordered"))


def test_a_missing_slice_is_interpolated_and_reported(tmp_path, lung):
    paths = write_dicom_series(lung, tmp_path)
    paths[10].unlink()
    volume = load_volume(tmp_path)
    assert volume.shape == lung.shape
    np.testing.assert_allclose(volume.spacing, lung.spacing, atol=1e-4)
    assert any("1 slice(s) missing (after IM00010.dcm at" in w for w in volume.meta["warnings"])
    assert volume.meta["interpolated_slices"] == [10]  # so the viewer can mark it
    np.testing.assert_array_equal(volume.array[:10], lung.array[:10])
    np.testing.assert_array_equal(volume.array[11:], lung.array[11:])
    expected = (lung.array[9].astype(float) + lung.array[11]) / 2
    assert np.abs(volume.array[10] - expected).max() <= 0.5


def test_uneven_spacing_is_resampled_and_reported(tmp_path, cardiac):
    paths = write_dicom_series(cardiac, tmp_path)
    normal = cardiac.direction_matrix[:, 2]
    for n, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        shift = 0.0 if n < 5 else cardiac.spacing[2] * 0.5  # the gap 4 -> 5 is 1.5x
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(ds.ImagePositionPatient, float) + shift * normal]
        ds.save_as(path)
    volume = load_volume(tmp_path)
    assert any("varies" in w for w in volume.meta["warnings"])
    # 10.5 gaps span the stack: 11 grid gaps a little finer than acquired, first and last kept.
    np.testing.assert_allclose(volume.spacing[2], cardiac.spacing[2] * 10.5 / 11, rtol=1e-4)
    assert volume.shape[0] == cardiac.shape[0] + 1
    np.testing.assert_array_equal(volume.array[0], cardiac.array[0])
    np.testing.assert_array_equal(volume.array[-1], cardiac.array[-1])
    assert volume.meta["interpolated_slices"] == list(range(1, volume.shape[0] - 1))


def acquired_ends(paths) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first and last slice positions (LPS, mm) along the normal, and that normal,
    from the headers alone."""
    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in paths]
    orientation = np.asarray(headers[0].ImageOrientationPatient, float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = sorted((np.asarray(ds.ImagePositionPatient, float) for ds in headers), key=lambda p: p @ normal)
    return positions[0], positions[-1], normal


def nifti_slice_corners(path) -> tuple[np.ndarray, np.ndarray]:
    """The first voxel of the first and last slices of a NIfTI, LPS mm, by nibabel's affine."""
    image = nibabel.load(path)
    ras = image.affine @ np.array([[0, 0, 0, 1], [0, 0, image.shape[2] - 1, 1]], float).T
    return tuple(ras[:3].T * [-1, -1, 1])  # RAS to LPS


def test_an_unevenly_spaced_series_is_resampled_between_its_first_and_last_slices(tmp_path, cardiac):
    """A tester's resampled grid reached half a gap past the last acquired slice: that grid
    slice lay outside the scan and was filled with the last one, not interpolated."""
    array = np.repeat(np.arange(0, 80, 10, dtype=np.int16)[:, None, None], 16, axis=1).repeat(16, axis=2)
    oblique = Volume(array, (1.0, 1.0, 3.0), (-8.0, -8.0, 10.0), cardiac.direction, modality="CT")
    paths = write_dicom_series(oblique, tmp_path / "dicom")
    ds = pydicom.dcmread(paths[-1])  # the last gap 4.6 mm: 7.53 finest gaps span the stack
    ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(ds.ImagePositionPatient, float)
                               + 1.6 * oblique.direction_matrix[:, 2]]
    ds.save_as(paths[-1])
    first, last, normal = acquired_ends(paths)
    volume = load_volume(tmp_path / "dicom")
    assert volume.meta["resampled_because"] == "missing or unevenly spaced slices"
    assert volume.shape[0] == 9 and volume.spacing[2] <= 3.0  # never coarser than acquired
    np.testing.assert_allclose(volume.direction_matrix, oblique.direction_matrix, atol=1e-6)
    along = [np.asarray(volume.index_to_physical((k, 0, 0))) @ normal for k in range(volume.shape[0])]
    assert first @ normal - 1e-6 <= min(along) and max(along) <= last @ normal + 1e-6
    save_volume(tmp_path / "resampled.nii.gz", volume)
    for at, acquired in zip(nifti_slice_corners(tmp_path / "resampled.nii.gz"), (first, last)):
        np.testing.assert_allclose(at, acquired, atol=1e-3)
    assert volume.array[0].max() == 0 and volume.array[-1].min() == 70  # acquired, not filled
    assert np.all(np.diff(volume.array[:, 0, 0].astype(int)) > 0)  # each grid slice interpolated
    labels = (volume.array >= 40).astype(np.uint8)
    save_labels(tmp_path / "labels.nii.gz", labels, volume)
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nii.gz", load_volume(tmp_path / "dicom")), labels)


def uneven_series(folder, direction, last_moved_mm=1.6) -> list:
    """Eight 16 x 16 slices 3 mm apart, the last moved on ``last_moved_mm``: with 1.6 mm the
    grid segview used to resample it onto (the finest gap, round(22.6 / 3) + 1 = 9 slices)
    ended at 24 mm, 1.4 mm past the last acquired slice; with 0.9 mm (8 slices) 0.9 mm short
    of it, and the grid now has a slice more. Returns the files."""
    array = np.repeat(np.arange(0, 80, 10, dtype=np.int16)[:, None, None], 16, axis=1).repeat(16, axis=2)
    volume = Volume(array, (1.0, 1.0, 3.0), (-8.0, -8.0, 10.0), direction, modality="CT")
    paths = write_dicom_series(volume, folder)
    ds = pydicom.dcmread(paths[-1])
    ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(ds.ImagePositionPatient, float)
                               + last_moved_mm * volume.direction_matrix[:, 2]]
    ds.save_as(paths[-1])
    return paths


def earlier_grid_labels(paths, path) -> np.ndarray:
    """Labels saved as segview saved them on the earlier grid of ``uneven_series``, built from
    the headers alone: the first slice's position, the finest gap, as many slices as round
    to the extent. Slice k holds class k + 1. Returns the earlier slices' positions along
    the normal (mm)."""
    first, last, normal = acquired_ends(paths)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    along = np.sort([np.asarray(ds.ImagePositionPatient, float) @ normal for ds in headers])
    gap = float(np.diff(along).min())
    count = round((along[-1] - along[0]) / gap) + 1
    image = sitk.GetImageFromArray(np.repeat(np.arange(1, count + 1, dtype=np.uint8), 256).reshape(count, 16, 16))
    orientation = np.asarray(headers[0].ImageOrientationPatient, float)
    image.SetOrigin(first.tolist())
    image.SetSpacing([float(v) for v in headers[0].PixelSpacing[::-1]] + [gap])
    image.SetDirection(np.column_stack([orientation[:3], orientation[3:], normal]).ravel().tolist())
    sitk.WriteImage(image, str(path))
    return along[0] + gap * np.arange(count)


def nearest_earlier(paths, earlier: np.ndarray, slices: int) -> np.ndarray:
    """For each of ``slices`` slices evenly spaced from the first acquired slice to the last,
    the nearest of the ``earlier`` positions (mm along the normal)."""
    first, last, normal = acquired_ends(paths)
    along = np.linspace(first @ normal, last @ normal, slices)
    return np.abs(along[:, None] - earlier[None, :]).argmin(axis=1)


@pytest.mark.parametrize("last_moved_mm", [1.6, 0.9])  # the earlier grid past the last slice; short of it
def test_labels_saved_on_the_earlier_grid_of_an_uneven_series_move_onto_its_grid(tmp_path, cardiac, last_moved_mm):
    """Labels saved before the grid of an uneven series ended at its last acquired slice
    were refused as another scan's: each slice now takes those of the nearest earlier slice."""
    paths = uneven_series(tmp_path / "dicom", cardiac.direction, last_moved_mm)
    earlier = earlier_grid_labels(paths, tmp_path / "labels.nii.gz")
    volume = load_volume(tmp_path / "dicom")
    labels = load_labels(tmp_path / "labels.nii.gz", volume)
    nearest = nearest_earlier(paths, earlier, volume.shape[0])
    np.testing.assert_array_equal(labels, np.broadcast_to((nearest + 1)[:, None, None], volume.shape))
    assert labels[0].min() == labels[0].max() == 1  # the first acquired slice: the earlier first
    assert labels[-1].min() == labels[-1].max() == len(earlier)  # the last: the earlier last, which showed it


def test_labels_on_another_grid_of_an_uneven_series_are_still_refused(tmp_path, cardiac):
    paths = uneven_series(tmp_path / "dicom", cardiac.direction)
    earlier_grid_labels(paths, tmp_path / "labels.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "labels.nii.gz"))
    for change in ({"SetSpacing": (1.0, 1.0, 2.9)}, {"SetOrigin": (-8.0, -8.0, 13.0)}):
        shifted = sitk.Image(image)
        for setter, value in change.items():
            getattr(shifted, setter)(value)
        sitk.WriteImage(shifted, str(tmp_path / "other.nii.gz"))
        with pytest.raises(VolumeLoadError, match="another scan"):
            load_labels(tmp_path / "other.nii.gz", load_volume(tmp_path / "dicom"))


def jitter_positions(paths, volume, amount_mm, seed=0):
    """Each slice moved up to amount_mm along every axis, as a scanner's rounding does."""
    rng = np.random.default_rng(seed)
    for path in paths:
        ds = pydicom.dcmread(path)
        moved = np.asarray(ds.ImagePositionPatient, float) + rng.uniform(-amount_mm, amount_mm, 3)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in moved]
        ds.save_as(path)


def test_positions_jittered_by_a_fraction_of_a_voxel_stay_as_acquired(tmp_path, lung):
    paths = write_dicom_series(lung, tmp_path)
    jitter_positions(paths, lung, 0.02)  # a small share of a voxel
    volume = load_volume(tmp_path)
    np.testing.assert_array_equal(volume.array, lung.array)  # not resampled
    assert not volume.meta.get("interpolated_slices")
    np.testing.assert_allclose(volume.spacing, lung.spacing, atol=0.002)
    np.testing.assert_allclose(volume.direction_matrix, lung.direction_matrix, atol=1e-9)  # no shear
    assert not volume.meta.get("resampled")
    assert any("taken as regular" in w for w in volume.meta["warnings"])
    assert not any("tilt" in w or "varies" in w for w in volume.meta["warnings"])
    labels = (lung.array > -500).astype(np.uint8)  # its SEG references each jittered slice
    seg = save_dicom_seg(tmp_path / "seg.dcm", labels, volume, [LabelClass(1, "body", (200, 120, 80))])
    np.testing.assert_array_equal(read_seg_labels(seg, volume)[0], labels)


def test_a_missing_slice_among_jittered_ones_is_still_found(tmp_path, lung):
    paths = write_dicom_series(lung, tmp_path)
    jitter_positions(paths, lung, 0.02)
    paths[10].unlink()
    volume = load_volume(tmp_path)
    assert volume.shape == lung.shape
    assert volume.meta["interpolated_slices"] == [10]
    assert any("1 slice(s) missing" in w for w in volume.meta["warnings"])
    assert any("taken as on it" in w for w in volume.meta["warnings"])  # the jitter is said too


def test_slices_stepped_sideways_are_named_not_taken_for_jitter(tmp_path, lung):
    """A tester moved slices 6-24 of 29 by 3 mm to the side, the first and last left: it
    loaded as "rounded or jittered by the scanner"."""
    paths = write_dicom_series(lung, tmp_path)
    for path in paths[5:24]:
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(ds.ImagePositionPatient, float) + [3.0, 0, 0]]
        ds.save_as(path)
    warnings = load_volume(tmp_path).meta["warnings"]
    assert any("Slices 6-24 (IM00006.dcm to IM00024.dcm) lie up to 3 mm sideways" in w for w in warnings), warnings
    assert not any("jittered" in w or "tilt of" in w for w in warnings)


def test_gantry_tilt_is_resampled_onto_an_orthogonal_grid(tmp_path):
    array = np.full((8, 64, 64), -1000, np.int16)
    array[:, 20:40, 24:40] = 300  # a block that is sheared by the tilt
    small = Volume(array, (1.5, 1.5, 5.0), (-48.0, -48.0, 10.0), modality="CT")
    paths = write_dicom_series(small, tmp_path)
    tilt = np.tan(np.radians(12))
    for k, path in enumerate(paths):  # shift each slice posteriorly: a 12 degree tilt
        ds = pydicom.dcmread(path)
        x, y, z = np.asarray(ds.ImagePositionPatient, float)
        ds.ImagePositionPatient = [f"{x:.6f}", f"{y + tilt * k * small.spacing[2]:.6f}", f"{z:.6f}"]
        ds.save_as(path)
    volume = load_volume(tmp_path)
    assert any("Gantry tilt of 12.00 degrees" in w for w in volume.meta["warnings"])
    np.testing.assert_allclose(volume.direction_matrix, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(volume.spacing, small.spacing, rtol=1e-6)
    assert volume.shape[1] > small.shape[1]  # the grid grew to hold the sheared block
    # The block's centre in the first and last slices is found at its tilted position.
    for k in (0, 7):
        point = np.asarray(small.index_to_physical((k, 29.5, 31.5))) + [0, tilt * k * small.spacing[2], 0]
        kk, jj, ii = np.round(volume.physical_to_index(point)).astype(int)
        assert volume.array[kk, jj, ii] == 300
        assert volume.array[kk, jj - 14, ii] == -1000  # 14 pixels outside the block


@pytest.mark.parametrize("last_gap_mm", [5.0, 7.6])  # even, and 1.52 gaps: tilted and uneven
def test_a_tilted_grid_spans_the_acquired_slices_and_no_further(tmp_path, last_gap_mm):
    array = np.repeat(np.arange(0, 80, 10, dtype=np.int16)[:, None, None], 32, axis=1).repeat(32, axis=2)
    small = Volume(array, (1.5, 1.5, 5.0), (-24.0, -24.0, 10.0), modality="CT")
    paths = write_dicom_series(small, tmp_path / "dicom")
    tilt = np.tan(np.radians(12))
    for k, path in enumerate(paths):  # a 12 degree tilt, the last slice moved on along z
        ds = pydicom.dcmread(path)
        x, y, z = np.asarray(ds.ImagePositionPatient, float)
        z += (last_gap_mm - 5.0) * (k == len(paths) - 1)
        ds.ImagePositionPatient = [f"{x:.6f}", f"{y + tilt * (z - 10.0):.6f}", f"{z:.6f}"]
        ds.save_as(path)
    first, last, normal = acquired_ends(paths)
    volume = load_volume(tmp_path / "dicom")
    assert "gantry tilt" in volume.meta["resampled_because"]
    assert volume.spacing[2] <= 5.0 + 1e-6
    save_volume(tmp_path / "resampled.nii.gz", volume)
    for at, acquired in zip(nifti_slice_corners(tmp_path / "resampled.nii.gz"), (first, last)):
        assert at @ normal == pytest.approx(acquired @ normal, abs=1e-3)
    inside = volume.array[:, volume.shape[1] // 2, volume.shape[2] // 2]
    assert inside[0] == 0 and inside[-1] == 70  # the acquired first and last, not filled


def test_several_series_and_a_localizer_are_listed_never_merged(tmp_path, lung, cardiac):
    write_dicom_series(lung, tmp_path / "a", series_description="chest", series_number=3)
    write_dicom_series(cardiac, tmp_path / "b", series_description="short axis", series_number=7)
    write_localizer(tmp_path / "c")
    series = list_dicom_series(tmp_path)
    assert [(s.description, s.num_files, s.is_localizer) for s in series] == [
        ("chest", lung.shape[0], False), ("short axis", cardiac.shape[0], False), ("tri-planar", 3, True)]
    assert series[0].size == (256, 256, lung.shape[0]) and series[0].modality == "CT"
    with pytest.raises(VolumeLoadError) as error:
        load_volume(tmp_path)
    assert "2 image series" in str(error.value)
    assert "chest" in str(error.value) and "short axis" in str(error.value)
    assert series[0].uid in str(error.value)
    assert_same_volume(load_volume(tmp_path, series_uid=series[1].uid), load_volume(tmp_path / "b"))
    with pytest.raises(VolumeLoadError, match="is not in"):
        load_volume(tmp_path, series_uid="1.2.3")


def test_two_series_sharing_a_number_are_listed_apart(tmp_path, lung):
    """A tester's list read "#1 chest" twice: the "#" was the SeriesNumber, not a place."""
    for folder in ("a", "b"):
        write_dicom_series(lung, tmp_path / folder, series_description="chest", series_number=1)
    first, second = list_dicom_series(tmp_path)
    with pytest.raises(VolumeLoadError) as error:
        load_volume(tmp_path)
    assert str(error.value).splitlines()[1:] == [
        f"  1. chest (series 1): CT, {lung.shape[0]} images of 256x256, UID {first.uid}",
        f"  2. chest (series 1): CT, {lung.shape[0]} images of 256x256, UID {second.uid}"]


def test_one_series_with_a_localizer_loads_the_series_and_says_so(tmp_path, cardiac):
    write_dicom_series(cardiac, tmp_path / "sa")
    write_localizer(tmp_path / "loc")
    volume = load_volume(tmp_path)
    assert volume.shape == cardiac.shape
    assert any("localizer" in w for w in volume.meta["warnings"])


def write_localizer(folder):
    """Three 32x32 images in three orientations, as scanners write a tri-planar scout."""
    plane = Volume(np.zeros((1, 32, 32), np.int16), modality="MR")
    uid = generate_uid()
    for n, direction in enumerate([np.eye(3), np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]),
                                   np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])]):
        plane.direction = tuple(direction.T.ravel().astype(float))
        [path] = write_dicom_series(plane, folder / str(n), series_description="tri-planar",
                                    image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.InstanceNumber = uid, n + 1
        ds.save_as(path)


def test_several_images_per_position_are_refused_with_a_reason(tmp_path, cardiac):
    paths = write_dicom_series(cardiac, tmp_path / "a")
    for n, path in enumerate(paths):  # a second cardiac phase at the same positions
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / "a" / f"phase2_{n}.dcm")
    with pytest.raises(VolumeLoadError, match="cardiac phases"):
        load_volume(tmp_path / "a")


def test_enhanced_multiframe_mr_reads_like_the_single_frame_series(tmp_path, cardiac):
    path = write_enhanced_mr(cardiac, tmp_path / "enhanced.dcm")
    volume = load_volume(path)
    assert_same_volume(volume, cardiac)
    assert volume.modality == "MR"
    assert volume.meta["window_presets"] == [("heart", 400.0, 800.0)]


def write_enhanced_mr(volume: Volume, path: Path) -> Path:
    """An Enhanced MR Image object: frames in reverse order, geometry in functional groups."""
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.EnhancedMRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesDescription = "MR", "enhanced"
    n = volume.shape[0]
    ds.NumberOfFrames, ds.Rows, ds.Columns = n, volume.shape[1], volume.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    d = volume.direction_matrix
    shared = Dataset()
    measures, orientation, voi = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = [f"{volume.spacing[1]:.10g}", f"{volume.spacing[0]:.10g}"]
    measures.SliceThickness = f"{volume.spacing[2]:.10g}"
    orientation.ImageOrientationPatient = [f"{v:.10g}" for v in np.concatenate([d[:, 0], d[:, 1]])]
    voi.WindowCenter, voi.WindowWidth, voi.WindowCenterWidthExplanation = 400, 800, "heart"
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    order = list(range(n))[::-1]
    frames = []
    for k in order:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [f"{v:.10g}" for v in volume.index_to_physical((k, 0, 0))]
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.ascontiguousarray(volume.array[order].astype(np.int16)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# -- bad input ------------------------------------------------------------------------

def test_every_pydicom_test_file_loads_or_raises_volume_load_error():
    loaded = refused = 0
    for path in get_testdata_files():
        try:
            volume = load_volume(path)
        except VolumeLoadError as exc:
            assert str(exc), path
            refused += 1
        else:
            assert volume.array.ndim == 3 and volume.array.size > 0
            assert np.isfinite(volume.array).all(), path
            loaded += 1
    assert loaded >= 20 and refused >= 20


def test_the_pydicom_test_data_folder_as_a_whole(tmp_path):
    folder = Path(get_testdata_file("CT_small.dcm")).parent
    series = list_dicom_series(folder)
    assert len(series) > 10
    with pytest.raises(VolumeLoadError, match="image series; choose one"):
        load_volume(folder)
    ct = next(s for s in series if "CT_small.dcm" in " ".join(s.files))
    assert load_volume(folder, series_uid=ct.uid).modality == "CT"


def test_ct_small_is_in_hounsfield_units():
    volume = load_volume(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(volume.array[0], expected)
    np.testing.assert_allclose(volume.origin, [float(v) for v in ds.ImagePositionPatient])
    assert volume.spacing[:2] == (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0]))


def test_damaged_files_raise_volume_load_error(tmp_path, lung):
    [path] = write_dicom_series(Volume(lung.array[:1], lung.spacing, lung.origin, modality="CT"), tmp_path / "one")
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    flipped = bytearray(data)
    for i in rng.integers(128, 1200, 60):  # damage the header after the preamble
        flipped[i] ^= 0xFF
    png = (b"\x89PNG\r\n\x1a\n" + bytes(200))
    cases = {"truncated.dcm": data[: len(data) // 2], "header_only.dcm": data[:400],
             "flipped.dcm": bytes(flipped), "empty.dcm": b"", "picture.dcm": png}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(VolumeLoadError):
            load_volume(tmp_path / name)
    with pytest.raises(VolumeLoadError, match="damaged or incomplete"):
        load_volume(tmp_path / "truncated.dcm")


def test_a_truncated_file_in_a_series_is_skipped_as_a_missing_slice(tmp_path, cardiac):
    """It refused the whole series, where a zero-byte file is skipped as a missing slice."""
    paths = write_dicom_series(cardiac, tmp_path)
    paths[3].write_bytes(paths[3].read_bytes()[:-5000])
    volume = load_volume(tmp_path)
    assert (f"Skipped the damaged file {paths[3].name}: pixel data is 5000 bytes short: the file is cut off; "
            "its slice is taken as missing.") in volume.meta["warnings"]
    assert any("1 slice(s) missing" in w for w in volume.meta["warnings"])
    assert volume.shape == cardiac.shape and volume.meta["interpolated_slices"] == [3]
    kept = [z for z in range(cardiac.shape[0]) if z != 3]
    np.testing.assert_array_equal(volume.array[kept], cardiac.array[kept])
    assert str(paths[3]) not in volume.meta["source_files"]
    with pytest.raises(DicomSegError, match=r"resampled \(missing or unevenly spaced slices\)"):
        save_dicom_seg(tmp_path / "seg.dcm", np.ones(volume.shape, np.uint8), volume,
                       [LabelClass(1, "myocardium", (255, 0, 0))])


@pytest.mark.parametrize("cut", ["header only", "pixel data short"])
def test_a_cut_file_among_given_paths_is_skipped_naming_why(tmp_path, cardiac, cut):
    paths = write_dicom_series(cardiac, tmp_path)
    data = paths[-1].read_bytes()
    header_end = len(data) - cardiac.array[0].size * 2  # the pixel data element: 12 bytes, then its value
    paths[-1].write_bytes(data[: header_end - 12] if cut == "header only" else data[: header_end + 100])
    volume = read_dicom_files(map(str, paths))
    why = "its pixel data are missing" if cut == "header only" else "pixel data is"
    assert any(w.startswith(f"Skipped the damaged file {paths[-1].name}: {why}") for w in volume.meta["warnings"])
    np.testing.assert_array_equal(volume.array, cardiac.array[:-1])  # the last slice: nothing to fill


def test_a_compressed_file_cut_short_is_skipped_after_reading(tmp_path):
    """Compressed pixel data cut short are seen only when decoded: the others are read again."""
    source = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    paths = []
    for k in range(4):
        source.SOPInstanceUID, source.InstanceNumber = generate_uid(), k + 1
        source.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
        source.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        paths.append(tmp_path / f"IM{k}.dcm")
        source.save_as(paths[-1])
    paths[1].write_bytes(paths[1].read_bytes()[:-2000])
    seen = []
    volume = load_volume(tmp_path, first_slice=lambda v, z: seen.append(v))
    assert any(w.startswith("Skipped the damaged file IM1.dcm:") for w in volume.meta["warnings"])
    assert volume.meta["resampled"] and volume.meta["interpolated_slices"] == [1]
    np.testing.assert_array_equal(volume.array[[0, 2, 3]], [reference] * 3)
    assert seen[-1] is volume


def test_a_series_of_damaged_files_only_is_refused(tmp_path, cardiac):
    paths = write_dicom_series(cardiac, tmp_path)
    for path in paths:
        path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(VolumeLoadError, match=rf"None of the {len(paths)} files .* each is damaged .*bytes short"):
        load_volume(tmp_path)
    with pytest.raises(VolumeLoadError, match=rf"{paths[0].name} are damaged or incomplete"):
        load_volume(paths[0])


def test_a_slice_cut_off_in_its_header_is_named_damaged_not_only_missing(tmp_path, cardiac):
    """A tester's slice cut to 300 bytes (its file meta whole, its dataset cut) was taken
    for a file of no image and dropped unnamed: only 'a slice missing' was said."""
    paths = write_dicom_series(cardiac, tmp_path)
    paths[3].write_bytes(paths[3].read_bytes()[:300])
    volume = load_volume(tmp_path)
    assert f"1 damaged DICOM file(s) were skipped: {paths[3].name}" in volume.meta["warnings"]
    assert any("missing" in w for w in volume.meta["warnings"])


def test_one_slice_without_a_position_is_named(tmp_path, cardiac):
    """It gave numpy's 'inhomogeneous shape' error."""
    paths = write_dicom_series(cardiac, tmp_path)
    dataset = pydicom.dcmread(paths[4])
    del dataset.ImagePositionPatient
    dataset.save_as(paths[4])
    with pytest.raises(VolumeLoadError, match=rf"1 image\(s\) of this series carry no patient .*{paths[4].name}"):
        load_volume(tmp_path)


def test_a_file_copied_twice_is_named(tmp_path, cardiac):
    """A copy of one slice was told to be 'several images per position (cardiac phases...)'."""
    paths = write_dicom_series(cardiac, tmp_path)
    (tmp_path / "copy_of_5.dcm").write_bytes(paths[5].read_bytes())
    with pytest.raises(VolumeLoadError, match=rf"{paths[5].name} and copy_of_5.dcm at .* mm\. A file copied twice"):
        load_volume(tmp_path)


def test_a_slice_of_another_pixel_spacing_is_refused_naming_it(tmp_path, cardiac):
    """It loaded with the first slice's spacing for every slice, unsaid."""
    paths = write_dicom_series(cardiac, tmp_path)
    dataset = pydicom.dcmread(paths[6])
    dataset.PixelSpacing = [float(v) * 1.125 for v in dataset.PixelSpacing]
    dataset.save_as(paths[6])
    with pytest.raises(VolumeLoadError, match=rf"different pixel spacings .*{paths[6].name}"):
        load_volume(tmp_path)


def test_a_slice_file_that_is_not_dicom_is_reported_a_readme_is_not(tmp_path, cardiac):
    paths = write_dicom_series(cardiac, tmp_path)
    (tmp_path / "IM_junk.dcm").write_bytes(b"\x00" * 50 + b"not an image")  # a slice name, no DICOM in it
    (tmp_path / "README.txt").write_text("not DICOM")
    volume = load_volume(tmp_path)
    assert volume.shape[0] == len(paths)
    [warning] = [w for w in volume.meta["warnings"] if "damaged" in w]
    assert "1 damaged DICOM file(s) were skipped: IM_junk.dcm" == warning
    [series] = list_dicom_series(tmp_path)  # the window's way: the scan, then the series chosen
    assert warning in read_dicom_files(series).meta["warnings"]


def test_folders_without_images(tmp_path):
    with pytest.raises(VolumeLoadError, match="No DICOM images"):
        load_volume(tmp_path)
    (tmp_path / "a.txt").write_text("hello")
    shutil.copy(get_testdata_file("rtplan.dcm"), tmp_path)  # DICOM, but no image
    with pytest.raises(VolumeLoadError, match="No DICOM images"):
        load_volume(tmp_path)


def test_a_colour_image_is_refused_clearly():
    with pytest.raises(VolumeLoadError, match="colour"):
        load_volume(get_testdata_file("SC_rgb_small_odd.dcm"))


def test_missing_decoder_names_the_package_to_install():
    code = (
        "import sys\n"
        "for name in ('openjpeg', 'pylibjpeg', 'libjpeg', 'rle', 'PIL', 'gdcm', 'jpeg_ls'):\n"
        "    sys.modules[name] = None\n"
        "from pydicom.data import get_testdata_file\n"
        "from segview.core.io import load_volume, VolumeLoadError\n"
        "try:\n"
        "    load_volume(get_testdata_file('MR_small_jp2klossless.dcm'))\n"
        "except VolumeLoadError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "JPEG 2000" in out and "pip install pylibjpeg pylibjpeg-openjpeg" in out, out


def test_compressed_files_load_with_the_bundled_decoders():
    reference = load_volume(get_testdata_file("MR_small.dcm")).array
    for name in ("MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        np.testing.assert_array_equal(load_volume(get_testdata_file(name)).array, reference)


def test_a_slice_of_another_size_is_refused_naming_it(tmp_path, cardiac):
    """It said 'different sizes [(254, 254), (256, 256)]' without naming the odd file, so a
    reader of a 300-file folder could not find it."""
    paths = write_dicom_series(cardiac, tmp_path)
    dataset = pydicom.dcmread(paths[4])
    pixels = dataset.pixel_array[:-2, :-1].copy()
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.PixelData = pixels.tobytes()
    dataset.save_as(paths[4])
    rows, columns = pixels.shape
    expected = rf"different sizes .*{columns} x {rows}: 1 image.*e\.g\. {paths[4].name} "
    with pytest.raises(VolumeLoadError, match=expected):
        load_volume(tmp_path)


def test_a_slice_of_another_orientation_is_refused_naming_it(tmp_path, cardiac):
    paths = write_dicom_series(cardiac, tmp_path)
    dataset = pydicom.dcmread(paths[3])
    dataset.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    dataset.save_as(paths[3])
    with pytest.raises(VolumeLoadError, match=rf"different orientations .*1 image\(s\) differ .*{paths[3].name}"):
        load_volume(tmp_path)


def test_whose_images_a_series_is_is_read_and_said(tmp_path):
    """A tester opened a series of 'Müller^Jürgen' and found no patient named anywhere: not in
    the title, nor in the series chooser."""
    from segview.core.dicom import patient_line, person_name_text

    volume = cardiac_phantom(2).volume
    write_dicom_series(volume, tmp_path / "mr", patient_id="P-0042", patient_name="Müller^Jürgen")
    loaded = load_volume(tmp_path / "mr")
    study_date = loaded.meta["study_date"]
    expected = f"Müller, Jürgen; ID P-0042; study {study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    assert patient_line(loaded.meta) == expected
    assert [s.patient for s in list_dicom_series(tmp_path / "mr")] == [expected]
    assert person_name_text("Yamada^Tarou=山田^太郎") == "Yamada, Tarou"
    assert person_name_text("=山田^太郎") == "山田 太郎"  # an ideographic name alone
    assert person_name_text("Doe^John^Q^Dr") == "Doe, John Q" and person_name_text("") == ""
    assert patient_line({"study_date": "20260102"}) == ""  # no one named: nothing to say
    assert patient_line(Volume(np.zeros((1, 2, 2))).meta) == ""


def test_monochrome1_is_recorded_and_its_values_kept(tmp_path, lung):
    """MONOCHROME1 (the lowest value white) was read as MONOCHROME2, unsaid: the values are
    right as stored (HU), so they stay; the photometric interpretation goes to meta for display."""
    volume = Volume(lung.array[:4], lung.spacing, lung.origin, modality="CT")
    for path in write_dicom_series(volume, tmp_path):
        dataset = pydicom.dcmread(path)
        dataset.PhotometricInterpretation = "MONOCHROME1"
        dataset.save_as(path)
    loaded = load_volume(tmp_path)
    assert loaded.meta["photometric_interpretation"] == "MONOCHROME1"
    np.testing.assert_array_equal(loaded.array, volume.array)
    assert load_volume(get_testdata_file("CT_small.dcm")).meta["photometric_interpretation"] == "MONOCHROME2"
