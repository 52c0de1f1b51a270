"""DICOM reading on the fast path: 16-bit CT, values and geometry equal to SimpleITK's
ImageSeriesReader (the reference), each header parsed once, pixels read in threads into
one preallocated volume, and the middle slice handed to a window before the rest is read.
No timings here: ``segview bench load`` measures the speed."""
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from segview.core import dicom
from segview.core.dicom import list_dicom_series, read_dicom_files, write_dicom_series
from segview.core.io import load_volume
from segview.core.phantoms import lung_phantom
from segview.core.volume import Volume


@pytest.fixture(scope="module")
def lung():
    return lung_phantom(seed=21).volume


@pytest.fixture(scope="module")
def series(lung, tmp_path_factory) -> Path:
    """The lung phantom as segview writes CT: uint16 stored, RescaleIntercept -1024."""
    folder = tmp_path_factory.mktemp("ct")
    write_dicom_series(lung, folder)
    return folder


def sitk_volume(folder) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_equal_to_sitk(volume: Volume, image: sitk.Image):
    reference = sitk.GetArrayFromImage(image)
    assert volume.shape == reference.shape
    if np.issubdtype(volume.array.dtype, np.floating):
        reference = reference.astype(volume.array.dtype)  # ITK rescales in double
    np.testing.assert_array_equal(volume.array, reference)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(volume.direction, image.GetDirection(), atol=1e-6)


def rewrite(folder: Path, to: Path, change) -> Path:
    to.mkdir()
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(to / path.name)
    return to


def test_integer_rescale_gives_int16_equal_to_simpleitk(series):
    volume = load_volume(series)
    assert volume.array.dtype == np.int16  # uint16 stored with intercept -1024: HU in 16 bits
    assert volume.array.min() == -1024
    assert_equal_to_sitk(volume, sitk_volume(series))


def test_fractional_slope_gives_float32_equal_to_simpleitk(series, tmp_path):
    def fractional(ds):
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024.25"
    folder = rewrite(series, tmp_path / "fractional", fractional)
    volume = load_volume(folder)
    assert volume.array.dtype == np.float32
    assert_equal_to_sitk(volume, sitk_volume(folder))


def test_values_beyond_int16_are_read_again_as_float32(tmp_path):
    """MR stored unsigned up to 60000: no int16 holds it, so the slices that overflow are
    read again into float32 (exact for 16-bit values)."""
    array = np.tile(np.arange(0, 60000, 60000 / 64, dtype=np.float64).round()[None, None], (6, 64, 1))
    array[:3] //= 4  # the first half fits int16, the second does not
    write_dicom_series(Volume(array.astype(np.int32), (1.0, 1.0, 2.0), modality="MR"), tmp_path)
    shown = []
    volume = load_volume(tmp_path, first_slice=lambda v, z: shown.append(v))
    assert shown == [volume]  # handed over early; its array replaced by the float32 one
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, array)
    assert_equal_to_sitk(volume, sitk_volume(tmp_path))


def test_signed_pixels_with_12_bits_stored_read_as_pydicom_reads_them(series, tmp_path):
    """Signed 12-bit values whose unused high bits hold garbage: the value is in the low
    12 bits, sign-extended (pydicom's reading, the independent reference here)."""
    def signed_12_bits(ds):
        values = ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)  # HU, fits 12 bits
        stored = (values & 0x0FFF) | 0x5000  # garbage above the high bit
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.RescaleIntercept = 0
        ds.PixelData = stored.astype(np.uint16).tobytes()
    folder = rewrite(series, tmp_path / "signed12", signed_12_bits)
    volume = load_volume(folder)
    assert volume.array.dtype == np.int16
    for k, path in enumerate(sorted(folder.iterdir())):
        np.testing.assert_array_equal(volume.array[k], pydicom.dcmread(path).pixel_array)
    np.testing.assert_array_equal(volume.array, load_volume(series).array)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_compressed_series_equal_simpleitk_and_the_uncompressed_series(series, tmp_path, syntax):
    folder = rewrite(series, tmp_path / "compressed", lambda ds: ds.compress(syntax))
    volume = load_volume(folder)
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, load_volume(series).array)
    assert_equal_to_sitk(volume, sitk_volume(folder))


def count_parses(monkeypatch) -> dict[str, int]:
    """Header parses per file name: by pydicom.dcmread, or by segview's quick reader of
    plain little-endian headers (which hands anything else to pydicom)."""
    parses: dict[str, int] = {}
    dcmread, quick = pydicom.dcmread, dicom._quick_header

    def count(source):
        name = Path(getattr(source, "name", source)).name
        parses[name] = parses.get(name, 0) + 1

    def counting_dcmread(source, *args, **kwargs):
        count(source)
        return dcmread(source, *args, **kwargs)

    def counting_quick(f, path):
        header = quick(f, path)
        if header is not None:
            count(path)
        return header

    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    monkeypatch.setattr(dicom, "_quick_header", counting_quick)
    return parses


def test_each_header_is_parsed_once(series, monkeypatch):
    names = sorted(p.name for p in series.iterdir())
    reads = count_parses(monkeypatch)
    load_volume(series)
    assert reads == dict.fromkeys(names, 1)

    reads.clear()  # the window's way: the scan lists the series, reading takes its headers
    [info] = list_dicom_series(series)
    volume = read_dicom_files(info)
    assert reads == dict.fromkeys(names, 1)
    np.testing.assert_array_equal(volume.array, load_volume(series).array)


def test_paths_alone_are_parsed_once_too(series, monkeypatch):
    paths = [str(p) for p in sorted(series.iterdir())]
    reads = count_parses(monkeypatch)
    read_dicom_files(paths[::-1])
    assert reads == {Path(p).name: 1 for p in paths}


def test_first_slice_comes_before_the_last_slice_is_read_and_threads_read(series, monkeypatch):
    """The middle slice is read first and handed over with the volume being filled; the
    rest is read afterwards by several threads into the same array."""
    original = dicom._read_file
    started: list[list[int]] = []
    done: list[list[int]] = []
    threads: set[str] = set()

    def slow_read(items, out, overflowed):
        slices = [z for z, _ in items]
        started.append(slices)
        threads.add(threading.current_thread().name)
        if slices != [len(out) // 2]:  # every slice but the middle one is slow to read
            time.sleep(0.02)
        original(items, out, overflowed)
        done.append(slices)

    monkeypatch.setattr(dicom, "_read_file", slow_read)
    seen = []

    def first_slice(volume, z):
        seen.append((volume, z, volume.array[z].copy(), len(done)))

    [info] = list_dicom_series(series)
    volume = read_dicom_files(info, first_slice=first_slice)
    [(shown, z, pixels, files_done)] = seen
    assert shown is volume  # the same Volume, filled in place
    assert z == volume.shape[0] // 2 and started[0] == [z]  # the middle slice is read first
    assert files_done < volume.shape[0]  # the call came before the last slice was read
    np.testing.assert_array_equal(pixels, volume.array[z])
    assert not any(t == threading.main_thread().name for t in threads)
    assert len(threads) >= 2
    np.testing.assert_array_equal(volume.array, load_volume(series).array)


def test_first_slice_of_an_irregular_series_comes_with_the_final_volume(series, tmp_path):
    folder = tmp_path / "gap"
    folder.mkdir()
    for n, path in enumerate(sorted(series.iterdir())):
        if n != 5:  # a missing slice: resampled after reading
            (folder / path.name).write_bytes(path.read_bytes())
    seen = []
    volume = load_volume(folder, first_slice=lambda v, z: seen.append((v, z)))
    assert seen == [(volume, volume.shape[0] // 2)]
    assert any("missing" in w for w in volume.meta["warnings"])


def test_peak_memory_is_at_most_one_and_a_half_volumes(series):
    [info] = list_dicom_series(series)
    tracemalloc.start()
    try:
        volume = read_dicom_files(info)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * volume.array.nbytes, (peak, volume.array.nbytes)


def test_a_truncated_file_is_left_out_and_the_window_shown_the_volume_without_it(series, lung, tmp_path):
    folder = rewrite(series, tmp_path / "cut", lambda ds: None)
    victim = sorted(folder.iterdir())[-1]
    victim.write_bytes(victim.read_bytes()[:-1000])
    seen = []
    volume = load_volume(folder, first_slice=lambda v, z: seen.append(v))
    assert seen[-1] is volume and volume.shape[0] == lung.shape[0] - 1
    assert any(w.startswith(f"Skipped the damaged file {victim.name}: pixel data is 1000 bytes short")
               for w in volume.meta["warnings"])


def test_the_quick_header_reader_agrees_with_pydicom(series):
    """Every file the quick reader takes (the others go to pydicom) gives pydicom's header
    and pixel offset; it takes plain CT and the compressed single-frame test files."""
    from pydicom.data import get_testdata_files

    taken = []
    files = [p for p in get_testdata_files() if Path(p).is_file()]
    for path in [*files, *map(str, sorted(series.iterdir())[:3])]:
        with open(path, "rb") as f:
            try:
                quick = dicom._quick_header(f, path)
            except Exception as exc:  # noqa: BLE001 - the name of the file that broke it
                raise AssertionError(path) from exc
        if quick is None:
            continue
        with open(path, "rb") as f:
            reference = pydicom.dcmread(f, stop_before_pixels=True)
            offset = f.tell()
        assert quick.dataset == reference, path
        assert quick.dataset.file_meta == reference.file_meta, path
        assert quick.pixel_offset == offset, path
        assert quick.implicit_vr == reference.original_encoding[0], path
        taken.append(Path(path).name)
    assert "CT_small.dcm" in taken and "MR_small_RLE.dcm" in taken and "IM00001.dcm" in taken
    assert len(taken) > 30


def test_a_file_changed_after_the_scan_is_read_as_it_is_now(series, tmp_path):
    """A listed series keeps pixel offsets; a file rewritten since (another header length,
    other pixels) must not be read at the old offset."""
    folder = rewrite(series, tmp_path / "changing", lambda ds: None)
    [info] = list_dicom_series(folder)
    path = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(path)
    ds.ImageComments = "re-exported with a longer header " * 20
    ds.PixelData = np.full((ds.Rows, ds.Columns), 1024 + 40, np.uint16).tobytes()
    ds.save_as(path)
    volume = read_dicom_files(info)
    np.testing.assert_array_equal(volume.array[4], 40)
    np.testing.assert_array_equal(volume.array, load_volume(folder).array)
