"""Loading images and saving/loading label volumes, with exact geometry.

``load_volume`` reads DICOM (folder or file), NIfTI, NRRD and MetaImage; every failure
is a VolumeLoadError whose message says what is wrong and what to do. Labels are saved
atomically on exactly the image grid and read back only onto a matching grid.
"""
from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import struct
import tempfile
import zlib
from dataclasses import asdict, dataclass
from io import BufferedIOBase
from pathlib import Path
from typing import Iterable

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from .dicom import FirstSlice, Progress, SeriesInfo, list_dicom_series, read_dicom_files, read_dicom_folder
from .classes import LabelClass, named_classes, rgb
from .errors import LabelSaveError, VolumeLoadError
from .files import LABEL_EXTENSIONS, atomic_write_text, extension, replace_atomically
from .memory import ensure_fits, session_bytes
from .volume import CT_WINDOW_PRESETS, Volume, copy_geometry, grid_differences, orthogonalized

__all__ = ["load_volume", "list_dicom_series", "save_labels", "save_volume", "load_labels", "read_label_image",
           "slices_on_earlier_grid",
           "load_classes", "LabelClass", "named_classes", "SeriesInfo", "VolumeLoadError", "LabelSaveError",
           "IMAGE_EXTENSIONS", "LABEL_EXTENSIONS", "replace_atomically"]

#: Single-file and header+data formats read through SimpleITK.
IMAGE_EXTENSIONS = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

# -- images -----------------------------------------------------------------------------

def load_volume(path, series_uid: str | None = None, *, progress: Progress | None = None,
                first_slice: FirstSlice | None = None) -> Volume:
    """The image at ``path``: a DICOM folder or file, .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd.

    ``series_uid`` picks one series of a DICOM folder that holds several. Irregular
    acquisitions are regularised and reported in ``meta["warnings"]``.
    ``progress(done, total)`` is called while DICOM files are read. ``first_slice(volume,
    z)`` is called once the middle slice of a DICOM series is read, with the Volume still
    filling (see ``segview.core.dicom.read_dicom_files``); other formats call it at the end.

    Raises:
        VolumeLoadError: for every failure, with a message meant for the user. No
            partial volume is ever returned.
    """
    path = Path(path)
    try:
        volume = _load(path, series_uid, progress, first_slice)
    except VolumeLoadError:
        raise
    except MemoryError as exc:
        raise VolumeLoadError(f"Not enough memory to open {path.name}.") from exc
    except Exception as exc:  # noqa: BLE001 - the contract: nothing else escapes
        raise VolumeLoadError(f"{path.name} could not be opened ({type(exc).__name__}: {exc}).") from exc
    volume.meta.setdefault("source", str(path))
    return volume


def _load(path: Path, series_uid: str | None, progress: Progress | None,
          first_slice: FirstSlice | None) -> Volume:
    if not path.exists():
        raise VolumeLoadError(f"{path} does not exist.")
    if path.is_dir():
        return read_dicom_folder(path, series_uid, progress, first_slice=first_slice)
    if path.stat().st_size == 0:
        raise VolumeLoadError(f"{path.name} is empty (0 bytes); the copy or download was probably cut short.")
    if extension(path) in IMAGE_EXTENSIONS:
        volume = _read_itk_volume(path)
        if first_slice is not None:
            first_slice(volume, volume.shape[0] // 2)
        return volume
    try:
        pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise VolumeLoadError(
            f"{path.name} is neither DICOM nor a supported image file. segview opens DICOM "
            f"folders and files, {', '.join(IMAGE_EXTENSIONS)}.") from exc
    except Exception:  # noqa: BLE001 - damaged DICOM: read_dicom_files words the message
        pass
    return read_dicom_files([str(path)], progress, first_slice=first_slice)


def _read_itk(path: Path, what: str) -> sitk.Image:
    """A scalar 3D SimpleITK image from ``path``; 2D becomes one slice, 4D with one
    time point drops that axis."""
    if extension(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    _check_fits(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        if "orthonormal" in reason:  # a valid file whose voxel axes are not perpendicular
            raise VolumeLoadError(
                f"{path.name} has a sheared grid: its voxel axes are not perpendicular (an affine that is no "
                f"rotation and scaling), which segview, like ITK and 3D Slicer's label maps, does not "
                f"display. Resample it onto a regular grid first (e.g. 3D Slicer's Resample Scalar Volume, "
                f"or nibabel's resample_to_output).") from exc
        raise VolumeLoadError(f"{path.name} could not be read as {what}: the file is damaged, "
                              f"truncated or not in the format its extension says ({reason}).") from exc
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeLoadError(f"{path.name} has {image.GetNumberOfComponentsPerPixel()} values per "
                              "voxel (colour or vector image); segview reads scalar volumes.")
    if image.GetDimension() == 2:
        image = _joined(image)  # a 2D MetaImage or NRRD has no z: its slice lies at z = 0
        if extension(path) in (".nii", ".nii.gz"):
            _place_nifti_slice(path, image)
    elif image.GetDimension() == 4:
        size = list(image.GetSize())
        if size[3] != 1:
            raise VolumeLoadError(f"{path.name} is a 4D series with {size[3]} time points or "
                                  "channels; segview reads one 3D volume. Split it first.")
        image = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    elif image.GetDimension() != 3:
        raise VolumeLoadError(f"{path.name} has {image.GetDimension()} dimensions; segview reads 3D volumes.")
    if extension(path) in (".nii", ".nii.gz"):
        _place_by_sform_alone(path, image)
    return image


def _place_by_sform_alone(path: Path, image: sitk.Image) -> None:
    """Give ``image`` the voxel size of its NIfTI sform where the sform is the only geometry
    the file states (qform code 0) and a rotation with voxel sizes: ITK places it by the
    sform but keeps pixdim's voxel size, which may differ (a tester's 1.317 mm sform over
    pixdim's 1 mm), where nibabel, FSL and the writer mean the sform's."""
    header = _nifti_header(path)
    if header is None or header.form_codes[0] != 0 or header.form_codes[1] <= 0:
        return
    rows = header.sform
    sizes = np.linalg.norm(rows[:, :3], axis=0)
    if not np.all(sizes > 0):
        return
    columns = rows[:, :3] / sizes
    if not np.allclose(columns.T @ columns, np.eye(3), atol=1e-4):
        return  # sheared: ITK's own fallback stands, and the warning says so
    if not np.allclose(sizes, image.GetSpacing(), rtol=1e-5):
        image.SetSpacing([float(v) for v in sizes])


def _joined(plane: sitk.Image) -> sitk.Image:
    """The 2D image ``plane`` as a 3D image of one slice, with its header's keys (the NIfTI
    ones warn of a dubious geometry)."""
    image = sitk.JoinSeries(plane)
    for key in plane.GetMetaDataKeys():
        image.SetMetaData(key, plane.GetMetaData(key))
    return image


def _header(path) -> sitk.ImageFileReader | None:
    """A reader of the image file at ``path`` with its header read; None where it cannot be."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    return reader


def image_shape(path) -> tuple[int, ...] | None:
    """The (z, y, x) shape of the image or label file at ``path`` from its header alone;
    None where it cannot be read."""
    reader = _header(path)
    if reader is None:
        return None
    shape = tuple(reversed(reader.GetSize()))
    return (1, *shape) if len(shape) == 2 else shape  # 2D: one slice, as it is read


def _check_fits(path: Path) -> None:
    """Refuse, from the header alone, an image that would not fit in memory: ITK's image and
    the array made from it exist at once while it is read, then the labels."""
    reader = _header(path)
    if reader is None:
        return  # unreadable: ReadImage says so in its own words
    size = reader.GetSize()
    itemsize = sitk.Image([1] * len(size), reader.GetPixelID()).GetSizeOfPixelComponent()
    shape = tuple(reversed(size))
    ensure_fits(session_bytes(shape, itemsize * reader.GetNumberOfComponents(), copies=2),
                f"{path.name} ({' x '.join(map(str, shape))} voxels)")


def _check_nifti_complete(path: Path) -> None:
    """Refuse a NIfTI file shorter than its header announces: ITK would zero-fill it."""
    if extension(path) == ".nii.gz" and _gzip_size_matches(path):
        return
    try:
        with _open_nifti(path) as f:
            header = f.read(540)
            length = len(header)
            while chunk := f.read(1 << 20):
                length += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise VolumeLoadError(f"{path.name} is damaged or truncated ({exc}); "
                              "copy or export it again.") from exc
    expected = _nifti_expected_length(header)
    if expected is not None and length < expected:
        raise VolumeLoadError(f"{path.name} is truncated: it holds {length} of the {expected} "
                              "bytes its header announces. Copy or export it again.")


def _gzip_size_matches(path: Path) -> bool:
    """Whether a .nii.gz file's gzip trailer (its last 4 bytes: the uncompressed size modulo
    2**32) agrees with the size its NIfTI header announces: then the file ends where it
    should, without decompressing it all (a cut-off file ends in random bytes: a 2**-32
    chance to agree). False when in doubt, so the caller counts the bytes."""
    try:
        with gzip.open(path, "rb") as f:
            header = f.read(540)
        with open(path, "rb") as raw:
            raw.seek(-4, os.SEEK_END)
            (size,) = struct.unpack("<I", raw.read(4))
    except (OSError, EOFError, zlib.error, struct.error):
        return False
    expected = _nifti_expected_length(header)
    return expected is not None and size == expected % 2**32


def _nifti_expected_length(header: bytes) -> int | None:
    """Header + voxel bytes of a NIfTI-1 or NIfTI-2 header; None when it is not one."""
    fields = _NiftiHeader.parse(header)
    if fields is None or not 0 < fields.dims[0] <= 7:
        return None
    return fields.vox_offset + int(np.prod(fields.dims[1: fields.dims[0] + 1], dtype=np.int64)) * fields.bitpix // 8


@dataclass(frozen=True)
class _NiftiLayout:
    """Where a NIfTI-1 or NIfTI-2 header keeps the fields segview reads: (byte offset,
    struct code) of each, ``size`` the header's length (its first field)."""
    size: int
    dim: tuple[int, str]         # 8 values: dim[0] is the number of dimensions
    pixdim: tuple[int, str]      # 8 values: pixdim[1:4] the voxel size
    datatype: tuple[int, str]
    bitpix: tuple[int, str]
    vox_offset: tuple[int, str]
    codes: tuple[int, str]       # 2 values: qform_code, sform_code
    srow: tuple[int, str]        # 12 values: srow_x, srow_y, srow_z


_NIFTI_LAYOUTS = (_NiftiLayout(348, (40, "h"), (76, "f"), (70, "h"), (72, "h"), (108, "f"), (252, "h"), (280, "f")),
                  _NiftiLayout(540, (16, "q"), (104, "d"), (12, "h"), (14, "h"), (168, "q"), (344, "i"), (400, "d")))


@dataclass(frozen=True)
class _NiftiHeader:
    """The fields segview reads of a NIfTI-1 or NIfTI-2 header, in its own byte order."""
    raw: bytes
    endian: str
    layout: _NiftiLayout

    @classmethod
    def parse(cls, raw: bytes) -> "_NiftiHeader | None":
        """The header at the start of ``raw``; None when it is no NIfTI header."""
        for endian in "<>":
            for layout in _NIFTI_LAYOUTS:
                if len(raw) >= layout.size and struct.unpack(endian + "i", raw[:4])[0] == layout.size:
                    return cls(raw[: layout.size], endian, layout)
        return None

    def _get(self, field: tuple[int, str], count: int = 1) -> tuple:
        offset, code = field
        return struct.unpack_from(f"{self.endian}{count}{code}", self.raw, offset)

    @property
    def dims(self) -> tuple[int, ...]:
        return self._get(self.layout.dim, 8)

    @property
    def datatype(self) -> int:
        return self._get(self.layout.datatype)[0]

    @property
    def bitpix(self) -> int:
        return self._get(self.layout.bitpix)[0]

    @property
    def vox_offset(self) -> int:
        return int(self._get(self.layout.vox_offset)[0])

    @property
    def form_codes(self) -> tuple[int, int]:
        """(qform_code, sform_code)."""
        qform, sform = self._get(self.layout.codes, 2)
        return int(qform), int(sform)

    @property
    def sform(self) -> np.ndarray:
        """The sform's 3 x 4 rows, at the header's own precision (ITK's keys keep 6 digits)."""
        return np.array(self._get(self.layout.srow, 12), float).reshape(3, 4)

    def as_one_slice(self) -> bytes:
        """A header-only NIfTI file of this 2D image as a 3D one of one slice (dim[0] 3,
        dim[3] 1, no extensions): its geometry read as 3D keeps the slice's z position and
        tilt, which ITK drops for a 2D image. A voxel size pixdim[3] that is not positive (a
        2D file need not give one) becomes 1 mm."""
        raw = bytearray(self.raw)
        dims = list(self.dims)
        dims[0], dims[3] = 3, 1
        struct.pack_into(f"{self.endian}8{self.layout.dim[1]}", raw, self.layout.dim[0], *dims)
        pixdim = list(self._get(self.layout.pixdim, 8))
        if not (np.isfinite(pixdim[3]) and pixdim[3] > 0):
            pixdim[3] = 1.0
        struct.pack_into(f"{self.endian}8{self.layout.pixdim[1]}", raw, self.layout.pixdim[0], *pixdim)
        offset, code = self.layout.vox_offset
        struct.pack_into(self.endian + code, raw, offset, self.layout.size + 4)
        return bytes(raw) + bytes(4)  # the extension flag: none


def _open_nifti(path: Path) -> BufferedIOBase:
    """The NIfTI file at ``path`` opened to read its bytes (uncompressed)."""
    return gzip.open(path, "rb") if extension(path) == ".nii.gz" else open(path, "rb")


def _nifti_header(path: Path) -> _NiftiHeader | None:
    """The header of the NIfTI file at ``path``; None when it has none."""
    try:
        with _open_nifti(path) as f:
            return _NiftiHeader.parse(f.read(540))
    except (OSError, EOFError, zlib.error):
        return None


#: NIfTI datatype codes of float voxels: float32, float64.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


def _nifti_non_finite(path: Path) -> np.ndarray | None:
    """Where the voxels of the NIfTI file at ``path`` are NaN or infinite, as a flat mask in
    the file's order (that of ITK's array); None when its voxels are not floats. Read from
    its own bytes: ITK's NIfTI reader (nifti1_io) reads them as 0, without a word."""
    header = _nifti_header(path)
    if header is None or header.datatype not in _NIFTI_FLOATS:
        return None
    dtype = np.dtype(header.endian + _NIFTI_FLOATS[header.datatype])
    left = int(np.prod(header.dims[1: header.dims[0] + 1], dtype=np.int64))
    masks = []
    with _open_nifti(path) as f:
        f.seek(header.vox_offset)
        while left > 0:
            chunk = f.read(min(left, 1 << 22) * dtype.itemsize)  # 4 Mi voxels at a time
            values = np.frombuffer(chunk, dtype, len(chunk) // dtype.itemsize)
            if not values.size:
                break
            masks.append(~np.isfinite(values))
            left -= values.size
    return np.concatenate(masks) if masks else np.zeros(0, bool)


def _fill_non_finite(volume: Volume, path: Path) -> str | None:
    """Give the NaN or infinite voxels of ``volume`` (read from ``path``) the image's lowest
    value, and the warning that says so; None when there are none. Some programs write NaN
    outside the field of view: left NaN, it turned a model's whole prediction to background
    and the modality guess to MR; ITK reads a NIfTI's as 0, water on a CT."""
    array = volume.array
    if array.dtype.kind != "f":
        return None
    bad = ~np.isfinite(array)
    if extension(path) in (".nii", ".nii.gz"):
        in_file = _nifti_non_finite(path)
        if in_file is not None and in_file.size == array.size:
            bad |= in_file.reshape(array.shape)
    count = int(np.count_nonzero(bad))
    if not count:
        return None
    finite = array[~bad]
    lowest = float(finite.min()) if finite.size else 0.0
    array[bad] = lowest
    return (f"{count} voxel(s) of the image are NaN or infinite (outside the field of view?); they are shown, "
            f"measured and given to the models as the image's lowest value, {lowest:g}.")


def _place_nifti_slice(path: Path, image: sitk.Image) -> None:
    """Give ``image``, the one slice of the 2D NIfTI file at ``path`` joined into 3D, the 3D
    geometry of its header: ITK reads a file whose dim[0] is 2 as a 2D image, dropping the
    third row and column of its sform or qform (the slice's z position, a tilt of its plane).
    ITK itself reads that header made 3D, so it chooses between sform and qform as it does
    for any 3D file."""
    header = _nifti_header(path)
    if header is None or header.dims[0] != 2:
        return
    with tempfile.TemporaryDirectory(prefix="segview-") as folder:
        one_slice = Path(folder) / "slice.nii"
        one_slice.write_bytes(header.as_one_slice())
        reader = _header(one_slice)
        if reader is None or reader.GetDimension() != 3:
            return  # ITK cannot take that geometry in 3D (a sheared third axis): the plane's own, as before
        image.SetOrigin(reader.GetOrigin())
        image.SetSpacing(reader.GetSpacing())
        image.SetDirection(reader.GetDirection())


def _read_itk_volume(path: Path) -> Volume:
    image = _read_itk(path, "an image")
    volume = Volume.from_sitk(image, meta={"source_format": extension(path).lstrip(".")})
    filled = _fill_non_finite(volume, path)  # before the modality is guessed from the values
    volume.modality = _guess_modality(volume.array)
    volume.meta["modality_guessed"] = True
    if volume.modality == "CT":
        volume.meta["window_presets"] = list(CT_WINDOW_PRESETS)
    for warning in (_ignored_sform(path, image), _unknown_orientation(path, image), filled):
        if warning:
            volume.meta.setdefault("warnings", []).append(warning)
    regular = orthogonalized(volume)
    if regular is not None:
        regular.meta["warnings"].append("The image axes are not perpendicular (sheared or tilted); "
                                        "it was resampled onto a perpendicular grid.")
        volume = regular
    return volume


def _ignored_sform(path: Path, image: sitk.Image) -> str | None:
    """The warning for a NIfTI file whose sform (code > 0) is not the geometry ITK used: ITK
    takes the qform when the sform is sheared or oddly scaled, where nibabel and FSL take
    the sform, so the two programs would place the image differently. (A sform that is the
    only geometry stated is followed: ``_place_by_sform_alone``; ITK refuses a sheared one.)"""
    header = _nifti_header(path) if extension(path) in (".nii", ".nii.gz") else None
    if header is None or (code := header.form_codes[1]) <= 0:
        return None
    rows = header.sform
    ras = np.diag([-1.0, -1.0, 1.0])  # ITK's LPS to NIfTI's RAS
    used = ras @ np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    origin = ras @ np.array(image.GetOrigin())
    if np.allclose(rows[:, :3], used, atol=1e-3) and np.allclose(rows[:, 3], origin, atol=1e-2):
        return None
    columns = rows[:, :3] / np.linalg.norm(rows[:, :3], axis=0)
    why = ("its sform names another space than the scanner's" if np.allclose(columns.T @ columns, np.eye(3), atol=1e-4)
           else "its sform is sheared, not a rotation")
    return (f"{path.name} holds two geometries that disagree, its sform (code {code}) and its qform. "
            f"segview used the qform, as ITK and 3D Slicer do when {why}; nibabel and FSL use the sform and "
            "would place the image elsewhere. Check the position and orientation before measuring.")


def _unknown_orientation(path: Path, image: sitk.Image) -> str | None:
    """The warning for a NIfTI file that gives no orientation (qform and sform codes 0):
    ITK then assumes one and nibabel another, so the orientation letters are a guess (a
    tester's file showed Posterior where nibabel puts Anterior)."""
    keys = set(image.GetMetaDataKeys())
    if not {"qform_code", "sform_code"} <= keys:
        return None
    try:
        codes = [int(float(image.GetMetaData(key))) for key in ("qform_code", "sform_code")]
    except ValueError:
        return None
    if any(codes):
        return None
    return (f"{path.name} does not say how it lies in the patient (its NIfTI qform and sform codes are 0): "
            "the orientation letters shown are assumed, and other programs assume otherwise. Check left and "
            "right, and front and back, before reading or measuring.")


def _guess_modality(array: np.ndarray) -> str:
    """CT when values look like Hounsfield units (air near -1000), else MR."""
    sample = array[:: max(1, array.shape[0] // 8)]
    return "CT" if np.percentile(sample, 1) <= -500 else "MR"


# -- labels -----------------------------------------------------------------------------

def save_labels(path, labels: np.ndarray | sitk.Image, reference: Volume,
                classes: Iterable[LabelClass] | None = None) -> Path:
    """Write ``labels`` (Z, Y, X, non-negative integers; or ``labels_image`` of them, made
    beforehand: then nothing is copied here) on exactly ``reference``'s grid.

    The format follows the extension (.nii.gz, .nii, .nrrd, .mha). Class names and
    colours go into the NRRD header (3D Slicer's Segment keys) or, for NIfTI and
    MetaImage, a JSON sidecar ``<name>.classes.json`` (left untouched when it already
    holds exactly these classes). The write is atomic: a temporary
    file in the same folder is written, flushed to disk, read back and compared, then
    renamed over ``path``; on failure the previous file is untouched. The labels are
    copied once (into the SimpleITK image written), and a NIfTI file is read back and
    compared in slabs (``READ_BACK_BYTES``), so a save holds about one copy of them.

    Raises:
        ValueError: wrong shape, non-integer or negative labels, unsupported extension.
        LabelSaveError: the file could not be written (read-only folder, disk full...).
    """
    path = Path(path)
    if extension(path) not in LABEL_EXTENSIONS:
        raise ValueError(f"labels are saved as {', '.join(LABEL_EXTENSIONS)}; not {path.name}")
    image = labels if isinstance(labels, sitk.Image) else labels_image(labels, reference)
    if differences := grid_differences(image, reference):
        raise ValueError(f"the labels image is not on the image's grid ({'; '.join(differences)})")
    classes = list(classes or [])
    if extension(path) == ".nrrd":
        for key, value in _slicer_segment_keys(classes, reference.shape).items():
            image.SetMetaData(key, value)
    sidecar = None if extension(path) == ".nrrd" or _holds_classes(path, classes) else json.dumps(
        {"classes": [asdict(c) for c in classes]}, indent=2)
    return _write_atomically(image, path, sitk.GetArrayViewFromImage(image), reference, sidecar)


def labels_image(labels: np.ndarray, reference: Volume) -> sitk.Image:
    """``labels`` (Z, Y, X) checked (as ``save_labels`` says) in a SimpleITK image on
    ``reference``'s grid, as the smallest unsigned type that holds them: the one copy of
    them a save makes (e.g. taken on the main thread while a worker writes it).
    Raises ValueError."""
    checked = _checked_labels(np.asarray(labels), reference)
    image = sitk.GetImageFromArray(checked, isVector=False)  # copies: the caller may edit on
    copy_geometry(reference, image)
    return image


def save_volume(path, volume: Volume) -> Path:
    """Write an image with its geometry as .nii.gz, .nii, .nrrd or .mha, atomically
    (see ``save_labels``). Raises ValueError for another extension, LabelSaveError
    when the file cannot be written."""
    path = Path(path)
    if extension(path) not in LABEL_EXTENSIONS:
        raise ValueError(f"images are saved as {', '.join(LABEL_EXTENSIONS)}; not {path.name}")
    return _write_atomically(volume.to_sitk(), path, volume.array, volume)


def _write_atomically(image: sitk.Image, path: Path, expected: np.ndarray, reference: Volume,
                      sidecar: str | None = None) -> Path:
    """Write ``image`` to ``path`` through ``replace_atomically``, checking the file read
    back against ``expected`` first. Any failure is raised as LabelSaveError."""
    def write(temporary: Path) -> None:
        sitk.WriteImage(image, str(temporary), True)
        _verify(temporary, expected, reference)
        if sidecar is not None:
            atomic_write_text(sidecar_path(path), sidecar)

    try:
        if not path.parent.is_dir():
            raise FileNotFoundError(f"the folder {path.parent} does not exist")
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"the folder {path.parent} is read-only")
        return replace_atomically(path, write)
    except (OSError, RuntimeError, VolumeLoadError) as exc:
        raise LabelSaveError(_save_failure(path, expected, exc)) from exc


def _checked_labels(labels: np.ndarray, reference: Volume) -> np.ndarray:
    """``labels`` as the smallest unsigned dtype that holds them."""
    if labels.shape != reference.shape:
        raise ValueError(f"the labels have shape {labels.shape} (z, y, x) but the image has "
                         f"{reference.shape}; labels must lie on the image's voxel grid")
    if labels.dtype == np.uint8:
        return labels  # whole, not negative, fits: no pass over the volume needed
    if labels.dtype.kind not in "biu":
        _check_whole_numbers(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    return labels.astype(dtype, copy=False)


def _check_whole_numbers(labels: np.ndarray) -> None:
    """Raise ValueError, saying how many voxels, where float ``labels`` are not whole class numbers."""
    finite = np.isfinite(labels)
    if not finite.all():
        raise ValueError(_non_finite_labels(labels.size - int(np.count_nonzero(finite))))
    fractions = labels != np.round(labels)
    if fractions.any():
        raise ValueError(f"labels must be whole numbers (class indices), but {np.count_nonzero(fractions)} "
                         f"voxel(s) hold fractions such as {labels[fractions][0]:g} (labels resampled with linear "
                         "interpolation? nearest neighbour keeps the classes)")


def _non_finite_labels(count: int) -> str:
    """Why labels with ``count`` NaN or infinite voxels are refused, and what to do."""
    return (f"{count} voxel(s) are NaN or infinite, not class numbers (some programs write NaN outside a mask); "
            "set them to 0, the background (e.g. numpy.nan_to_num), and save the labels again")


#: A NIfTI file is read back in slabs of whole slices of at most these bytes (its reader
#: streams); NRRD and MetaImage readers read the whole file for any region, so they are
#: read back at once.
READ_BACK_BYTES = 64 * 2 ** 20


def _verify(written: Path, expected: np.ndarray, reference: Volume) -> None:
    """The file ``written`` holds exactly ``expected`` (z, y, x) on ``reference``'s grid."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(written))
    reader.ReadImageInformation()
    differences = grid_differences(reader, reference)  # type: ignore[arg-type]  # it has the grid getters
    if not differences:
        if extension(written) in (".nii", ".nii.gz") and expected.ndim == 3:
            plane = max(expected[0].nbytes, 1)
            step = max(1, READ_BACK_BYTES // plane)
            size = list(reader.GetSize())
            for first in range(0, expected.shape[0], step):
                count = min(step, expected.shape[0] - first)
                reader.SetExtractIndex([0, 0, first])
                reader.SetExtractSize(size[:2] + [count])
                slab = reader.Execute()
                if not np.array_equal(sitk.GetArrayViewFromImage(slab), expected[first:first + count]):
                    differences = ["voxel values"]
                    break
                del slab
        else:
            whole = reader.Execute()
            if not np.array_equal(sitk.GetArrayViewFromImage(whole), expected):
                differences = ["voxel values"]
    if differences:
        raise OSError(f"the file read back differs from what was written ({'; '.join(differences)})")


def _save_failure(path: Path, data: np.ndarray, exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    # ITK says neither why a write failed: a folder short of space is the likely cause, but a
    # read-only one (a patient CD, a mounted image) also reports no space free.
    refused = isinstance(exc, (PermissionError, FileNotFoundError)) or \
        getattr(exc, "errno", None) in (errno.EROFS, errno.EACCES, errno.EPERM)
    try:
        if not refused and shutil.disk_usage(path.parent).free < data.nbytes:
            reason = "the disk is full"
    except OSError:
        pass
    return (f"{path.name} could not be saved in {path.parent} ({reason}). Nothing was "
            "overwritten and nothing open was lost; save to another folder.")


def _holds_classes(path: Path, classes: list[LabelClass]) -> bool:
    """Whether the class file of ``path`` already holds exactly ``classes``: then a save
    leaves it as it is, byte for byte (whoever wrote it, whatever else it holds)."""
    if not classes or not sidecar_path(path).is_file():
        return False
    try:
        return load_classes(path) == [LabelClass(c.value, c.name, rgb(c.color)) for c in classes]
    except VolumeLoadError:
        return False


def sidecar_path(path) -> Path:
    """The JSON file next to a NIfTI/MetaImage label file that holds its class table."""
    path = Path(path)
    return path.with_name(path.name[: -len(extension(path))] + ".classes.json")


def _slicer_segment_keys(classes: list[LabelClass], shape: tuple[int, int, int]) -> dict[str, str]:
    """NRRD header keys of a 3D Slicer segmentation (.seg.nrrd) with one shared layer:
    every key Slicer writes and reads, so it loads the file without a warning.

    ``shape`` is the label volume's (z, y, x). Each segment's extent is the whole grid
    (i, j, k bounds inclusive, as Slicer and slicerio write for a shared layer); the
    terminology tag carries the SNOMED category and type the DICOM SEG uses.
    """
    from .dicomseg import KNOWN_STRUCTURES, OTHER_STRUCTURE  # here: highdicom is imported only to save NRRD

    z, y, x = shape
    keys = {
        "Segmentation_MasterRepresentation": "Binary labelmap",
        "Segmentation_ContainedRepresentationNames": "Binary labelmap|",
        "Segmentation_ReferenceImageExtentOffset": "0 0 0",
    }
    for n, c in enumerate(c for c in classes if c.value != 0):
        category, (code, meaning) = KNOWN_STRUCTURES.get(c.name.lower(), OTHER_STRUCTURE)
        terminology = ("Segmentation category and type - DICOM master list"
                       f"~SCT^{category.value}^{category.meaning}~SCT^{code}^{meaning}"
                       "~^^~Anatomic codes - DICOM master list~^^~^^")
        keys.update({
            f"Segment{n}_ID": f"Segment_{c.value}", f"Segment{n}_Name": c.name,
            f"Segment{n}_NameAutoGenerated": "0", f"Segment{n}_LabelValue": str(c.value),
            f"Segment{n}_Layer": "0", f"Segment{n}_Extent": f"0 {x - 1} 0 {y - 1} 0 {z - 1}",
            f"Segment{n}_Color": " ".join(f"{v / 255:.6g}" for v in c.color),
            f"Segment{n}_ColorAutoGenerated": "0",  # our colour, not the terminology's
            f"Segment{n}_Tags": f"TerminologyEntry:{terminology}|",
        })
    return keys


def load_classes(path) -> list[LabelClass]:
    """The class table saved with a label file (empty when there is none).

    For NRRD, the Segment keys of 3D Slicer (written by segview or by Slicer): one class
    per segment, with its label value, name and colour. A segment without a label value
    (Slicer before 4.11) takes its number + 1; without a colour, grey. Raises
    VolumeLoadError when the header or the JSON sidecar cannot be read.
    """
    path = Path(path)
    try:
        if extension(path) == ".nrrd":
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.ReadImageInformation()
            meta = {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}
            classes = []
            n = 0
            while f"Segment{n}_ID" in meta or f"Segment{n}_LabelValue" in meta:
                color = meta.get(f"Segment{n}_Color", "0.5 0.5 0.5").split()
                classes.append(LabelClass(int(meta.get(f"Segment{n}_LabelValue", n + 1)),
                                          meta.get(f"Segment{n}_Name", meta.get(f"Segment{n}_ID", "")),
                                          rgb(round(float(v) * 255) for v in color[:3])))
                n += 1
            return classes
        sidecar = sidecar_path(path)
        if not sidecar.exists():
            return []
        return [LabelClass(int(c["value"]), str(c["name"]), rgb(c["color"]))
                for c in json.loads(sidecar.read_text())["classes"]]
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise VolumeLoadError(f"The class names and colours of {path.name} could not be read ({exc}).") from exc


@dataclass
class LabelImage:
    """A label file read, not yet checked against an image's grid (``read_label_image``)."""
    image: sitk.Image      # its geometry (and voxels)
    array: np.ndarray      # its voxels, (z, y, x), a copy of its own


def read_label_image(path) -> LabelImage:
    """The label file at ``path`` read, not yet checked against an image's grid: the slow
    part of ``load_labels``, which another thread may do meanwhile. Raises VolumeLoadError."""
    path = Path(path)
    if not path.is_file():
        raise VolumeLoadError(f"{path} does not exist.")
    try:
        image = _read_itk(path, "a label volume")
        if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64) and extension(path) in (".nii", ".nii.gz") \
                and (non_finite := _nifti_non_finite(path)) is not None and non_finite.any():  # ITK read them as 0
            raise VolumeLoadError(f"{path.name} is not a label volume: "
                                  f"{_non_finite_labels(int(np.count_nonzero(non_finite)))}.")
        return LabelImage(image, sitk.GetArrayFromImage(image))
    except VolumeLoadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VolumeLoadError(f"{path.name} could not be read ({exc}).") from exc


def _on_the_same_points(read: LabelImage, reference: Volume, tolerance: float = 1e-4) -> np.ndarray | None:
    """The labels' voxels in ``reference``'s array order when their grid holds the same
    points in another order (axes swapped or reversed: labels a program wrote in RAS
    order, nibabel's ``as_closest_canonical``, for an LAS image); None otherwise. Voxels
    are moved, never interpolated."""
    image = read.image
    if image.GetDimension() != 3 or read.array.ndim != 3:
        return None
    d_l = np.array(image.GetDirection()).reshape(3, 3)
    d_r = reference.direction_matrix
    turn = d_r.T @ d_l  # column a: the labels' axis a along the image's axes
    signed = np.round(turn)
    if np.abs(turn - signed).max() > tolerance or sorted(np.abs(signed).sum(axis=0)) != [1, 1, 1] \
            or sorted(np.abs(signed).sum(axis=1)) != [1, 1, 1]:
        return None
    axis_of = np.abs(signed).argmax(axis=0)  # labels' axis a lies along the image's axis axis_of[a]
    sign = signed[axis_of, range(3)]
    size_l, size_r = np.array(image.GetSize()), np.array(reference.shape[::-1])
    spacing_l, spacing_r = np.array(image.GetSpacing()), np.array(reference.spacing)
    if (size_l != size_r[axis_of]).any() or np.abs(spacing_l - spacing_r[axis_of]).max() > tolerance:
        return None
    start = d_r.T @ (np.array(image.GetOrigin()) - np.array(reference.origin)) / spacing_r  # image index of voxel 0
    expected = np.where(sign[np.argsort(axis_of)] > 0, 0, size_r - 1)
    if np.abs(start - expected).max() * spacing_r.max() > tolerance:
        return None
    xyz = np.transpose(read.array, (2, 1, 0))                  # (i, j, k) of the labels
    xyz = np.transpose(xyz, np.argsort(axis_of))               # the image's axis order
    for b in range(3):
        if sign[np.argsort(axis_of)][b] < 0:
            xyz = np.flip(xyz, b)
    return np.ascontiguousarray(np.transpose(xyz, (2, 1, 0)))


def slices_on_earlier_grid(read: LabelImage, reference: Volume) -> np.ndarray | None:
    """For labels saved on the grid an earlier segview resampled ``reference`` (an unevenly
    spaced DICOM series) onto, ``reference.meta["earlier_grid"]``, which reached up to half a
    gap past the last acquired slice: (Z,) the slice of that grid each of ``reference``'s
    slices takes its labels from, the nearest along the slice normal. None for labels on any
    other grid. Both grids share origin, direction and planes; only the slices differ."""
    earlier = reference.meta.get("earlier_grid")
    if not earlier or grid_differences(read.image, earlier):
        return None
    planes = dict(earlier, size=[*earlier["size"][:2], reference.shape[0]],
                  spacing=[*earlier["spacing"][:2], reference.spacing[2]])
    if grid_differences(planes, reference):  # meta carried onto another grid (a volume derived from it)
        return None
    nearest = np.round(np.arange(reference.shape[0]) * reference.spacing[2] / earlier["spacing"][2])
    return np.minimum(nearest.astype(int), int(earlier["size"][2]) - 1)


def load_labels(path, reference: Volume, *, image: LabelImage | None = None) -> np.ndarray:
    """The label volume at ``path`` as an unsigned (Z, Y, X) array on ``reference``'s grid.
    ``image``: that file as ``read_label_image`` read it beforehand (say, in a thread while
    the image loads).

    Raises:
        VolumeLoadError: unreadable file, values that are no class numbers (NaN, infinite,
            fractions: the message counts them) or negative, or a grid that differs from
            the image by more than 1e-4 mm (the message says how). Labels on the grid an
            earlier segview resampled an uneven series onto are moved onto its grid
            (``slices_on_earlier_grid``), not refused.
    """
    path = Path(path)
    read = image or read_label_image(path)
    differences = grid_differences(read.image, reference)
    if differences and (reordered := _on_the_same_points(read, reference)) is not None:
        read, differences = LabelImage(reference.to_sitk(reordered), reordered), []  # voxels moved, none resampled
    if differences and (taken_from := slices_on_earlier_grid(read, reference)) is not None:
        moved = np.ascontiguousarray(read.array[taken_from])  # whole slices: class values, never interpolated
        read, differences = LabelImage(reference.to_sitk(moved), moved), []
    if differences:
        source = str(reference.meta.get("source") or "")
        image_name = Path(source).name if source and not source.startswith("demo") else "the image"
        raise VolumeLoadError(f"The labels in {path.name} do not lie on the grid of {image_name}: "
                              + "; ".join(differences)
                              + ". They belong to another scan or were resampled.")
    try:
        return _checked_labels(read.array, reference)
    except ValueError as exc:
        raise VolumeLoadError(f"{path.name} is not a label volume: {exc}.") from exc
