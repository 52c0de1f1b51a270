"""Volume and label I/O: geometry survives every format, saves are atomic and verified,
mismatched labels are refused with a message that says how they differ."""
import os
import re
import shutil

import nibabel
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from segview.core import io
from segview.core.io import (LabelClass, LabelSaveError, VolumeLoadError, load_classes, load_labels,
                             load_volume, save_labels, save_volume)
from segview.core.volume import Volume

FORMATS = [".nii.gz", ".nii", ".nrrd", ".mha"]
CLASSES = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "right ventricle", (66, 135, 245)),
           LabelClass(2, "myocardium", (80, 200, 120)), LabelClass(3, "left ventricle", (240, 80, 70))]


def random_volume(seed, dtype=np.int16):
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:  # NIfTI can store only proper rotations in its qform
        q[:, 2] *= -1
    shape = tuple(int(n) for n in rng.integers(3, 12, 3))  # non-cubic (z, y, x)
    return Volume(rng.integers(-1000, 1000, shape).astype(dtype),
                  spacing=tuple(rng.uniform(0.3, 5.0, 3)), origin=tuple(rng.uniform(-300, 300, 3)),
                  direction=tuple(q.ravel()), modality="CT")


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ext", FORMATS)
def test_geometry_round_trip(tmp_path, ext, seed):
    volume = random_volume(seed)
    labels = (np.arange(volume.array.size).reshape(volume.shape) % 4).astype(np.uint8)
    image_path = save_volume(tmp_path / f"image{ext}", volume)
    label_path = save_labels(tmp_path / f"labels{ext}", labels, volume, CLASSES)

    image = load_volume(image_path)
    np.testing.assert_array_equal(image.array, volume.array)
    back = load_labels(label_path, image)  # raises if the grids differ by > 1e-4 mm
    np.testing.assert_array_equal(back, labels)
    assert load_classes(label_path) == [c for c in CLASSES if ext != ".nrrd" or c.value]

    rng = np.random.default_rng(seed)
    for zyx in rng.integers(0, volume.shape, size=(5, 3)):
        np.testing.assert_allclose(image.index_to_physical(zyx), volume.index_to_physical(zyx), atol=1e-4)


@pytest.mark.parametrize("seed", range(4))
def test_nifti_affine_matches_nibabel(tmp_path, seed):
    volume = random_volume(seed)
    save_labels(tmp_path / "labels.nii.gz", np.zeros(volume.shape, np.uint8), volume)
    nib_affine = nibabel.load(tmp_path / "labels.nii.gz").affine  # RAS, index order (i, j, k)
    np.testing.assert_allclose(nib_affine, volume.affine_ras(), atol=1e-4)
    # nibabel's array is (i, j, k); ours is (k, j, i).
    assert nibabel.load(tmp_path / "labels.nii.gz").shape == volume.shape[::-1]


@pytest.mark.parametrize("seed", range(4))
def test_nrrd_header_matches_pynrrd(tmp_path, seed):
    volume = random_volume(seed)
    save_labels(tmp_path / "labels.nrrd", np.zeros(volume.shape, np.uint8), volume, CLASSES)
    data, header = nrrd.read(str(tmp_path / "labels.nrrd"))
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space origin"], volume.origin, atol=1e-6)
    # pynrrd: one row per index axis i, j, k = direction column * spacing
    np.testing.assert_allclose(header["space directions"], volume.affine_lps()[:3, :3].T, atol=1e-6)
    assert header["Segment2_Name"] == "left ventricle"
    assert data.shape == volume.shape[::-1]


def test_save_refuses_a_shape_that_is_not_the_image(tmp_path):
    volume = random_volume(0)
    with pytest.raises(ValueError, match="shape"):
        save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape[::-1], np.uint8), volume)
    with pytest.raises(ValueError, match="negative"):
        save_labels(tmp_path / "l.nii.gz", -np.ones(volume.shape, np.int16), volume)
    with pytest.raises(ValueError, match="whole numbers"):
        save_labels(tmp_path / "l.nii.gz", np.full(volume.shape, 0.5), volume)
    with pytest.raises(ValueError, match=".nii.gz"):
        save_labels(tmp_path / "l.png", np.zeros(volume.shape, np.uint8), volume)


def test_labels_use_the_smallest_unsigned_type(tmp_path):
    volume = random_volume(1)
    many = np.full(volume.shape, 300, np.int64)
    save_labels(tmp_path / "l.nrrd", many, volume)
    assert sitk.ReadImage(str(tmp_path / "l.nrrd")).GetPixelID() == sitk.sitkUInt16
    save_labels(tmp_path / "l.nrrd", many // 100, volume)
    assert sitk.ReadImage(str(tmp_path / "l.nrrd")).GetPixelID() == sitk.sitkUInt8


@pytest.mark.parametrize("change, words", [
    (dict(origin_shift=(0, 0, 0.001)), "origin"),
    (dict(spacing_scale=1.001), "spacing"),
    (dict(flip=True), "direction"),
])
def test_load_labels_refuses_another_grid_and_says_how(tmp_path, change, words):
    volume = random_volume(2)
    other = Volume(volume.array, volume.spacing, volume.origin, volume.direction)
    if "origin_shift" in change:
        other.origin = tuple(np.add(volume.origin, change["origin_shift"]))
    if "spacing_scale" in change:
        other.spacing = tuple(np.multiply(volume.spacing, change["spacing_scale"]))
    if "flip" in change:
        other.direction = tuple(-np.asarray(volume.direction))
    save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape, np.uint8), other)
    with pytest.raises(VolumeLoadError, match=words):
        load_labels(tmp_path / "l.nii.gz", volume)


def test_another_grid_names_the_image_the_labels_were_read_for(tmp_path):
    """A tester: the command line said "the open image" where no image was open."""
    volume = random_volume(2)
    save_volume(tmp_path / "scan.nrrd", volume)
    read = load_volume(tmp_path / "scan.nrrd")
    save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape[::-1], np.uint8),
                Volume(volume.array.transpose(), volume.spacing, volume.origin, volume.direction))
    with pytest.raises(VolumeLoadError, match="do not lie on the grid of scan.nrrd: size"):
        load_labels(tmp_path / "l.nii.gz", read)
    with pytest.raises(VolumeLoadError, match="do not lie on the grid of the image: size"):
        load_labels(tmp_path / "l.nii.gz", volume)  # made in memory: no file to name


def test_load_labels_accepts_differences_below_the_tolerance(tmp_path):
    volume = random_volume(3)
    close = Volume(volume.array, volume.spacing, tuple(np.add(volume.origin, 5e-5)), volume.direction)
    save_labels(tmp_path / "l.nrrd", np.ones(volume.shape, np.uint8), close)
    assert load_labels(tmp_path / "l.nrrd", volume).sum() == volume.array.size


def test_load_labels_refuses_a_different_size_and_non_labels(tmp_path):
    volume = random_volume(4)
    smaller = Volume(volume.array[1:], volume.spacing, volume.origin, volume.direction)
    save_labels(tmp_path / "small.mha", np.zeros(smaller.shape, np.uint8), smaller)
    with pytest.raises(VolumeLoadError, match="size"):
        load_labels(tmp_path / "small.mha", volume)
    save_volume(tmp_path / "image.mha", volume)  # negative HU values are not labels
    with pytest.raises(VolumeLoadError, match="not a label volume"):
        load_labels(tmp_path / "image.mha", volume)


def test_a_failure_during_the_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    volume = random_volume(5)
    path = tmp_path / "labels.nii.gz"
    save_labels(path, np.ones(volume.shape, np.uint8), volume, CLASSES)
    before = path.read_bytes()

    def write_half_then_fail(image, filename, *args):
        with open(filename, "wb") as f:
            f.write(before[: len(before) // 2])
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(io.sitk, "WriteImage", write_half_then_fail)
    with pytest.raises(LabelSaveError, match="No space left on device"):
        save_labels(path, np.full(volume.shape, 2, np.uint8), volume, CLASSES[:2])
    assert path.read_bytes() == before
    assert load_classes(path) == CLASSES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.classes.json", "labels.nii.gz"]


def test_a_write_that_reads_back_wrong_is_not_renamed_into_place(tmp_path, monkeypatch):
    volume = random_volume(6)
    path = tmp_path / "labels.mha"
    save_labels(path, np.ones(volume.shape, np.uint8), volume)
    before = path.read_bytes()
    real_write = sitk.WriteImage

    def write_corrupted(image, filename, *args):
        real_write(image * 0, filename, *args)

    monkeypatch.setattr(io.sitk, "WriteImage", write_corrupted)
    with pytest.raises(LabelSaveError, match="differs"):
        save_labels(path, np.full(volume.shape, 2, np.uint8), volume)
    assert path.read_bytes() == before


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_one_wrong_voxel_in_the_last_slab_read_back_is_caught(tmp_path, monkeypatch, ext):
    # NIfTI is read back in slabs (one slice each here): the last one is compared too.
    volume = random_volume(6)
    monkeypatch.setattr(io, "READ_BACK_BYTES", 1)
    labels = np.ones(volume.shape, np.uint8)
    path = save_labels(tmp_path / f"labels{ext}", labels, volume)
    np.testing.assert_array_equal(load_labels(path, volume), labels)
    before = path.read_bytes()
    real_write = sitk.WriteImage

    def write_corrupted(image, filename, *args):
        array = sitk.GetArrayFromImage(image)
        array[-1, -1, -1] += 1
        wrong = sitk.GetImageFromArray(array)
        wrong.CopyInformation(image)
        real_write(wrong, filename, *args)

    monkeypatch.setattr(io.sitk, "WriteImage", write_corrupted)
    with pytest.raises(LabelSaveError, match="differs"):
        save_labels(path, np.full(volume.shape, 2, np.uint8), volume)
    assert path.read_bytes() == before


def test_labels_image_is_a_copy_on_the_grid(tmp_path):
    volume = random_volume(8)
    labels = np.ones(volume.shape, np.uint8)
    image = io.labels_image(labels, volume)
    labels[:] = 3  # edited after the image was taken: the save writes the image
    save_labels(tmp_path / "labels.nii.gz", image, volume)
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nii.gz", volume), 1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_gives_a_message(tmp_path):
    volume = random_volume(7)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(LabelSaveError, match="read-only"):
            save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape, np.uint8), volume)
    finally:
        tmp_path.chmod(0o700)


def test_read_only_check_is_made_before_writing(tmp_path, monkeypatch):
    volume = random_volume(7)
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    with pytest.raises(LabelSaveError, match="read-only"):
        save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape, np.uint8), volume)
    assert list(tmp_path.iterdir()) == []


def test_read_only_media_are_not_called_full(tmp_path, monkeypatch):
    """A read-only mount reports no space free: a tester's save there said 'the disk is full'."""
    volume = random_volume(7)
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 20, 1 << 20, 0))
    monkeypatch.setattr(io.os, "access", lambda path, mode: False)
    with pytest.raises(LabelSaveError, match=r"\(the folder .* is read-only\)"):
        save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape, np.uint8), volume)
    monkeypatch.undo()
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 20, 1 << 20, 0))
    monkeypatch.setattr(io.sitk, "WriteImage", lambda *args: (_ for _ in ()).throw(RuntimeError("ITK ERROR")))
    with pytest.raises(LabelSaveError, match="the disk is full"):  # a write that fails with no space left
        save_labels(tmp_path / "l.nii.gz", np.zeros(volume.shape, np.uint8), volume)


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd", ".mha", ".nii"])
def test_damaged_image_files_raise_volume_load_error(tmp_path, ext):
    volume = random_volume(8)
    good = save_volume(tmp_path / f"good{ext}", volume)
    data = good.read_bytes()
    cases = {
        "empty": b"",
        "truncated": data[: len(data) // 3],
        "garbage": bytes(range(256)) * 20,
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}{ext}"
        path.write_bytes(content)
        with pytest.raises(VolumeLoadError):
            load_volume(path)


def test_a_sheared_nifti_is_refused_as_sheared_not_as_damaged(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[0, 1] = 0.4  # the second voxel axis leans on the first
    image = nibabel.Nifti1Image(np.zeros((6, 5, 4), np.int16), affine)
    image.set_qform(None, code=0)
    image.set_sform(affine, code=2)
    nibabel.save(image, tmp_path / "sheared.nii.gz")
    with pytest.raises(VolumeLoadError, match="sheared grid.*Resample it") as caught:
        load_volume(tmp_path / "sheared.nii.gz")
    assert "damaged" not in str(caught.value)


def test_a_nifti_whose_sform_is_not_the_geometry_used_says_so(tmp_path):
    """A tester's file: qform a plain grid, sform (code 2) sheared. ITK used the qform, nibabel
    the sform; the window said nothing."""
    nibabel = pytest.importorskip("nibabel")
    plain = np.diag([-1.3, -1.3, 5.0, 1.0])
    plain[:3, 3] = [160.0, 150.0, -200.0]
    sheared = plain.copy()
    sheared[0, 1] = 0.4
    turned = plain.copy()  # a rotation, but of an aligned space (code 2): a tester's file was told it was sheared
    c, s = np.cos(0.3), np.sin(0.3)
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ plain[:3, :3]
    for name, sform in (("agree.nii.gz", plain), ("sheared.nii.gz", sheared), ("turned.nii.gz", turned)):
        image = nibabel.Nifti1Image(np.zeros((6, 5, 4), np.int16), plain)
        image.set_qform(plain, code=1)
        image.set_sform(sform, code=2)
        nibabel.save(image, tmp_path / name)
    assert not [w for w in load_volume(tmp_path / "agree.nii.gz").meta.get("warnings", []) if "sform" in w]
    for name, why in (("sheared.nii.gz", "its sform is sheared"), ("turned.nii.gz", "names another space")):
        warnings = load_volume(tmp_path / name).meta["warnings"]
        assert any("sform (code 2)" in w and "used the qform" in w and why in w for w in warnings), warnings


def test_4d_and_vector_images_are_refused_clearly(tmp_path):
    four_d = sitk.GetImageFromArray(np.zeros((3, 2, 4, 5), np.int16), isVector=False)
    sitk.WriteImage(four_d, str(tmp_path / "4d.nii.gz"))
    with pytest.raises(VolumeLoadError, match="3 time points"):
        load_volume(tmp_path / "4d.nii.gz")
    rgb = sitk.GetImageFromArray(np.zeros((2, 4, 5, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(VolumeLoadError, match="colour"):
        load_volume(tmp_path / "rgb.mha")


def test_missing_paths_and_unknown_files(tmp_path):
    with pytest.raises(VolumeLoadError, match="does not exist"):
        load_volume(tmp_path / "nothing.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VolumeLoadError, match="neither DICOM"):
        load_volume(tmp_path / "notes.txt")


def test_modality_is_guessed_for_research_formats(tmp_path):
    ct = random_volume(9)
    save_volume(tmp_path / "ct.nrrd", ct)
    loaded = load_volume(tmp_path / "ct.nrrd")
    assert loaded.modality == "CT" and loaded.meta["modality_guessed"]
    assert any(name == "Lung" for name, _, _ in loaded.meta["window_presets"])
    mr = Volume(np.abs(ct.array), ct.spacing, ct.origin, ct.direction)
    save_volume(tmp_path / "mr.nrrd", mr)
    assert load_volume(tmp_path / "mr.nrrd").modality == "MR"


def test_a_sheared_nrrd_is_resampled_with_a_warning(tmp_path):
    array = np.zeros((5, 8, 8), np.int16)
    image = sitk.GetImageFromArray(array)
    d = np.eye(3)
    d[:, 2] = np.array([0, 0.3, 1.0]) / np.linalg.norm([0, 0.3, 1.0])
    image.SetDirection(d.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "sheared.nrrd"))
    loaded = load_volume(tmp_path / "sheared.nrrd")
    np.testing.assert_allclose(loaded.direction_matrix, np.eye(3), atol=1e-9)
    assert any("not perpendicular" in w for w in loaded.meta["warnings"])


def test_atomic_replace_keeps_the_previous_mode_or_uses_0644(tmp_path):
    import os
    import stat
    from segview.core.io import replace_atomically
    fresh = replace_atomically(tmp_path / "a.txt", lambda t: t.write_text("x") or os.chmod(t, 0o600))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    os.chmod(fresh, 0o640)
    replace_atomically(fresh, lambda t: t.write_text("y"))
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o640 and fresh.read_text() == "y"


def test_a_left_handed_nifti_keeps_its_grid_and_its_labels_lie_on_it(tmp_path):
    """An LAS NIfTI (FSL's habit) was resampled as if sheared, its z axis flipped: labels
    saved for it lay upside down in nibabel, and labels made elsewhere were refused."""
    affine = np.array([[-2.0, 0, 0, 30], [0, 2.0, 0, -20], [0, 0, 3.0, 50], [0, 0, 0, 1]])
    data = np.zeros((20, 18, 8), np.int16)
    data[3, 4, 5] = 1000  # a marker at voxel (i, j, k) = (3, 4, 5)
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "las.nii.gz")
    volume = load_volume(tmp_path / "las.nii.gz")
    assert not volume.meta.get("warnings")
    assert volume.shape == (8, 18, 20) and volume.array[5, 4, 3] == 1000
    labels = np.zeros(volume.shape, np.uint8)
    labels[5, 4, 3] = 1
    save_labels(tmp_path / "labels.nii.gz", labels, volume)
    saved = nibabel.load(tmp_path / "labels.nii.gz")
    np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
    assert np.argwhere(np.asarray(saved.dataobj)).tolist() == [[3, 4, 5]]
    # Labels another program wrote on the image's grid open on it.
    nibabel.save(nibabel.Nifti1Image((data > 0).astype(np.uint8), affine), tmp_path / "theirs.nii.gz")
    assert load_labels(tmp_path / "theirs.nii.gz", volume)[5, 4, 3] == 1


def test_a_nifti_that_gives_no_orientation_says_so(tmp_path):
    image = nibabel.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.diag([2.0, 2.0, 3.0, 1.0]))
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    nibabel.save(image, tmp_path / "noform.nii.gz")
    warnings = load_volume(tmp_path / "noform.nii.gz").meta["warnings"]
    assert any("does not say how it lies in the patient" in w for w in warnings)
    nibabel.save(nibabel.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.eye(4)), tmp_path / "placed.nii.gz")
    assert not load_volume(tmp_path / "placed.nii.gz").meta.get("warnings")


def test_a_save_removes_what_a_killed_save_left_behind_but_not_a_write_in_progress(tmp_path):
    """kill -9 during a save left '.labels.nii.gz.<id>.tmp.nii.gz', kept by every later save."""
    import time

    from segview.core.files import STALE_TEMPORARY_S, replace_atomically

    target = tmp_path / "labels.nii.gz"
    old = tmp_path / ".labels.nii.gz.0a1b2c3d.tmp.nii.gz"
    recent = tmp_path / ".labels.nii.gz.4e5f6a7b.tmp.nii.gz"  # another process may be writing it now
    other = tmp_path / ".other.nii.gz.0a1b2c3d.tmp.nii.gz"
    for path in (old, recent, other):
        path.write_bytes(b"half a file")
    hour_ago = time.time() - STALE_TEMPORARY_S - 60
    for path in (old, other):
        os.utime(path, (hour_ago, hour_ago))
    replace_atomically(target, lambda temporary: temporary.write_bytes(b"labels"))
    assert target.read_bytes() == b"labels"
    assert not old.exists() and recent.exists() and other.exists()


def test_labels_written_in_another_axis_order_on_the_same_points_open_unresampled(tmp_path):
    """Labels saved with nibabel's as_closest_canonical (RAS order) for an LAS image were
    refused as 'another scan or resampled', though every voxel lies where an image voxel is."""
    affine = np.array([[-2.0, 0, 0, 30], [0, 1.5, 0, -20], [0, 0, 3.0, 50], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4, (10, 8, 6)).astype(np.uint8)
    nibabel.save(nibabel.Nifti1Image(data.astype(np.int16), affine), tmp_path / "las.nii.gz")
    volume = load_volume(tmp_path / "las.nii.gz")
    expected = np.transpose(data, (2, 1, 0))  # ours: (z, y, x)
    labels = nibabel.Nifti1Image(data, affine)
    nibabel.save(nibabel.as_closest_canonical(labels), tmp_path / "ras.nii.gz")
    np.testing.assert_array_equal(load_labels(tmp_path / "ras.nii.gz", volume), expected)
    # Axes swapped as well: the same points, the voxels in another order.
    swapped = nibabel.Nifti1Image(np.ascontiguousarray(np.transpose(data, (1, 0, 2))[::-1]),
                                  affine[:, [1, 0, 2, 3]] @ np.array([[-1, 0, 0, 7], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                       [0, 0, 0, 1]]))
    nibabel.save(swapped, tmp_path / "swapped.nii.gz")
    np.testing.assert_array_equal(load_labels(tmp_path / "swapped.nii.gz", volume), expected)
    shifted = nibabel.Nifti1Image(data, affine @ np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    nibabel.save(shifted, tmp_path / "shifted.nii.gz")  # half a voxel off: not the same points
    with pytest.raises(VolumeLoadError, match="do not lie on the grid"):
        load_labels(tmp_path / "shifted.nii.gz", volume)


def one_slice_affine(oblique):
    """A RAS affine of one slice 20 mm up (0.8 x 0.9 mm pixels, 3 mm thick), its plane
    tilted when ``oblique``."""
    rotation = np.eye(3)
    if oblique:  # turned about z, then x: the plane tilts out of the axial one
        a, b = np.radians(30), np.radians(20)
        rotation = (np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
                    @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.9, 3.0])
    affine[:3, 3] = (-50.0, -60.0, 20.0)
    return affine


def write_one_slice_nifti(path, data, affine, form):
    """``data`` (nibabel's (i, j) or (i, j, 1)) with ``affine`` in the header's sform or qform
    alone (the other's code 0)."""
    image = nibabel.Nifti1Image(data, None)
    image.header["pixdim"][1:4] = (0.8, 0.9, 3.0)  # a 2D file too says how thick its slice is
    if form == "sform":
        image.set_sform(affine, code=1)
        image.set_qform(None, code=0)
    else:
        image.set_qform(affine, code=1)
        image.set_sform(None, code=0)
    nibabel.save(image, path)
    return path


@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
@pytest.mark.parametrize("form", ["sform", "qform"])
@pytest.mark.parametrize("dims", [2, 3])
def test_a_one_slice_nifti_keeps_its_3d_geometry(tmp_path, dims, form, oblique):
    """ITK read a file whose dim[0] is 2 as a 2D image: the slice's z position (20 mm) and
    any tilt of its plane were lost, and labels saved for it lay at z = 0."""
    affine = one_slice_affine(oblique)
    data = np.arange(10 * 12, dtype=np.int16).reshape((10, 12, 1)[:dims])
    path = write_one_slice_nifti(tmp_path / "slice.nii.gz", data, affine, form)
    assert nibabel.load(path).header["dim"][0] == dims
    np.testing.assert_allclose(nibabel.load(path).affine, affine, atol=1e-5)

    volume = load_volume(path)
    assert volume.shape == (1, 12, 10)
    np.testing.assert_array_equal(volume.array[0], data.reshape(10, 12).T)
    np.testing.assert_allclose(volume.affine_ras(), affine, atol=1e-5)
    assert volume.meta["warnings"] == []

    labels = (volume.array > 60).astype(np.uint8)
    save_labels(tmp_path / "labels.nii.gz", labels, volume)
    np.testing.assert_allclose(nibabel.load(tmp_path / "labels.nii.gz").affine, affine, atol=1e-5)
    np.testing.assert_array_equal(load_labels(tmp_path / "labels.nii.gz", volume), labels)
    # labels written as a 2D file by another program lie on the slice too
    flat = write_one_slice_nifti(tmp_path / "flat.nii.gz", (data.reshape(10, 12) > 60).astype(np.uint8), affine, form)
    np.testing.assert_array_equal(load_labels(flat, volume), labels)


@pytest.mark.parametrize("ext", [".mha", ".nrrd"])
def test_a_2d_metaimage_or_nrrd_is_one_slice_at_z_0(tmp_path, ext):
    """These formats give a 2D image no z: its in-plane geometry is kept, the slice lies at 0."""
    plane = sitk.GetImageFromArray(np.arange(12 * 10, dtype=np.int16).reshape(12, 10))
    plane.SetOrigin((-50.0, 60.0))
    plane.SetSpacing((0.8, 0.9))
    plane.SetDirection((0.0, 1.0, 1.0, 0.0))
    sitk.WriteImage(plane, str(tmp_path / f"slice{ext}"))
    volume = load_volume(tmp_path / f"slice{ext}")
    assert volume.shape == (1, 12, 10)
    np.testing.assert_allclose(volume.origin, (-50.0, 60.0, 0.0))
    np.testing.assert_allclose(volume.spacing, (0.8, 0.9, 1.0), rtol=1e-6)
    np.testing.assert_allclose(volume.direction_matrix, [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert io.image_shape(tmp_path / f"slice{ext}") == volume.shape
    labels = (volume.array > 60).astype(np.uint8)
    save_labels(tmp_path / f"labels{ext}", labels, volume)
    np.testing.assert_array_equal(load_labels(tmp_path / f"labels{ext}", volume), labels)



def write_float_labels(path, labels, volume):
    """``labels`` (z, y, x) as float voxels on ``volume``'s grid, as other programs write them
    (nibabel for NIfTI: it keeps NaN in the file)."""
    if str(path).endswith((".nii", ".nii.gz")):
        nibabel.save(nibabel.Nifti1Image(labels.transpose(), volume.affine_ras()), path)
    else:
        sitk.WriteImage(volume.to_sitk(labels), str(path))


@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("bad, words", [
    (np.nan, r"3 voxel\(s\) are NaN or infinite"), (np.inf, r"3 voxel\(s\) are NaN or infinite"),
    (0.5, r"whole numbers .* 3 voxel\(s\) hold fractions such as 0\.5"),
    (2.7, r"whole numbers .* 3 voxel\(s\) hold fractions such as 2\.7"),
], ids=["nan", "inf", "0.5", "2.7"])
def test_float_labels_that_are_no_class_numbers_are_refused_and_counted(tmp_path, ext, bad, words):
    """ITK reads a NIfTI file's NaN (which some programs write outside a mask) as 0: such
    labels opened as background without a word, where fractions were refused."""
    volume = random_volume(6)
    labels = np.zeros(volume.shape, np.float32)
    labels[0, 0, :2] = 2.0
    labels[-1, -1, -3:] = bad
    path = tmp_path / f"labels{ext}"
    write_float_labels(path, labels, volume)
    with pytest.raises(VolumeLoadError, match=rf"labels{re.escape(ext)} is not a label volume: .*{words}"):
        load_labels(path, volume)
    labels[-1, -1, -3:] = 1.0  # whole numbers stored as floats are labels
    write_float_labels(path, labels, volume)
    np.testing.assert_array_equal(load_labels(path, volume), labels.astype(np.uint8))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_nan_voxels_of_an_image_become_its_lowest_value_with_a_warning(tmp_path, ext):
    """NaN outside the field of view: in NRRD it made every prediction background and the
    modality MR; ITK read a NIfTI's as 0 HU (water) without a word."""
    array = np.full((4, 30, 40), -1000.0, np.float32)
    array[:, 10:20, 10:30] = 40.0  # soft tissue in air
    array[:, :3] = np.nan
    array[0, 5, 5] = np.inf
    path = tmp_path / f"ct{ext}"
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(image, str(path))
    if ext.startswith(".nii"):  # ITK's reader alone would give 0 there: counted in the file itself
        assert sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0, 0, 0] == 0
    volume = io.load_volume(path)
    expected = np.where(np.isfinite(array), array, -1000.0)
    np.testing.assert_array_equal(volume.array, expected)
    assert volume.modality == "CT"
    assert any(f"{4 * 3 * 40 + 1} voxel(s) of the image are NaN or infinite" in w and "-1000" in w
               for w in volume.meta["warnings"])


def test_an_image_with_no_nan_gets_no_warning_of_it(tmp_path):
    path = tmp_path / "mr.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(24, dtype=np.float32).reshape(2, 3, 4)), str(path))
    assert not any("NaN" in w for w in io.load_volume(path).meta.get("warnings", []))


def test_a_sform_that_is_the_only_geometry_places_the_image_whatever_pixdim_says(tmp_path):
    """sform code 1, qform code 0, pixdim 1 mm under a 1.317 mm sform: ITK took pixdim's
    voxel size, and the warning blamed a qform the file does not have."""
    angle = np.deg2rad(20)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) \
        @ np.diag([1.317, 1.317, 3.0])
    affine[:3, 3] = [10, -20, 30]
    image = nibabel.Nifti1Image(np.random.default_rng(0).random((20, 30, 5)).astype(np.float32), None)
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)
    assert image.header["pixdim"][1] == 1
    nibabel.save(image, tmp_path / "sform.nii.gz")
    volume = io.load_volume(tmp_path / "sform.nii.gz")
    assert not volume.meta.get("warnings")
    io.save_labels(tmp_path / "labels.nii.gz", np.zeros(volume.array.shape, np.uint8), volume)
    np.testing.assert_allclose(nibabel.load(tmp_path / "labels.nii.gz").affine,
                               nibabel.load(tmp_path / "sform.nii.gz").affine, atol=1e-4)


def test_a_sheared_sform_alone_is_refused_as_sheared(tmp_path):
    affine = np.eye(4)
    affine[0, 1] = 0.3  # sheared
    image = nibabel.Nifti1Image(np.zeros((10, 10, 4), np.float32), None)
    image.set_sform(affine, code=1)
    image.set_qform(None, code=0)
    nibabel.save(image, tmp_path / "sheared.nii.gz")
    with pytest.raises(VolumeLoadError, match="sheared grid"):
        io.load_volume(tmp_path / "sheared.nii.gz")
