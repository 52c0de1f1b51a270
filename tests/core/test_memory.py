"""An image that does not fit in memory is refused from its header, before anything is
allocated: a clear message, never a crash."""
import numpy as np
import pytest

from segview.core import dicom, memory
from segview.core.dicom import write_dicom_series
from segview.core.errors import VolumeLoadError
from segview.core.io import load_volume, save_volume
from segview.core.volume import Volume


def test_available_memory_is_read_from_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:  16000000 kB\nMemFree:   1000 kB\nMemAvailable:   2048 kB\n")
    assert memory.available_bytes(str(tmp_path / "meminfo")) == 2048 * 1024
    (tmp_path / "other").write_text("MemTotal:  16000000 kB\n")
    assert memory.available_bytes(str(tmp_path / "other")) is None
    assert memory.available_bytes(str(tmp_path / "missing")) is None


def test_the_estimate_is_the_image_its_copies_while_read_and_the_labels():
    assert memory.session_bytes((1500, 512, 512), 2) == 1500 * 512 * 512 * 3
    assert memory.session_bytes((10, 20, 30), 4, copies=2) == 6000 * 9
    memory.ensure_fits(memory.GIB, "small.nii.gz", available=2 * memory.GIB)
    with pytest.raises(VolumeLoadError, match=r"big.nii.gz needs about 2.0 GB .* only 1.0 GB is free"):
        memory.ensure_fits(2 * memory.GIB, "big.nii.gz", available=memory.GIB)


def small_volume():
    rng = np.random.default_rng(0)
    return Volume(rng.integers(-1000, 1000, (6, 32, 40)).astype(np.int16), (0.7, 0.7, 2.5), modality="CT")


def test_a_file_too_big_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import SimpleITK as sitk

    path = save_volume(tmp_path / "ct.nii.gz", small_volume())
    needed = memory.session_bytes((6, 32, 40), 2, copies=2)
    monkeypatch.setattr(memory, "available_bytes", lambda: needed - 1)

    def never(*args, **kwargs):
        raise AssertionError("the voxels were read")

    monkeypatch.setattr(sitk, "ReadImage", never)
    with pytest.raises(VolumeLoadError, match=r"ct.nii.gz \(6 x 32 x 40 voxels\) needs about .* of memory"):
        load_volume(path)
    monkeypatch.undo()
    monkeypatch.setattr(memory, "available_bytes", lambda: needed)
    assert load_volume(path).shape == (6, 32, 40)


def test_a_dicom_series_too_big_is_refused_from_its_headers(tmp_path, monkeypatch):
    folder = tmp_path / "series"
    write_dicom_series(small_volume(), folder)
    monkeypatch.setattr(memory, "available_bytes", lambda: 100)
    allocated = []
    monkeypatch.setattr(dicom, "_read_pixels", lambda *args, **kwargs: allocated.append(1) or [])
    with pytest.raises(VolumeLoadError, match=r"This series \(6 x 32 x 40 voxels\) needs about"):
        load_volume(folder)
    assert not allocated
