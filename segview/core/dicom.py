"""DICOM series discovery, reading into a Volume, and writing a Volume as a series.

Reading works on "frames": one per single-frame file, one per frame of a multi-frame
file. Frames are sorted by their position along the slice normal, checked for gaps,
uneven spacing and gantry tilt, and stacked; gaps and uneven spacing are filled by
linear interpolation along the normal, a tilted stack is resampled onto a perpendicular
grid (SimpleITK), and a warning says so. Nothing is loaded silently with
wrong geometry.
"""
from __future__ import annotations

import copy
import datetime
import importlib.util
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from .errors import VolumeLoadError
from .volume import Volume, orthogonalized

Progress = Callable[[int, int], None]

#: Relative tolerance on slice gaps before a stack counts as unevenly spaced.
GAP_TOLERANCE = 0.01
#: In-plane drift (mm) over the stack before the stack counts as tilted.
TILT_TOLERANCE_MM = 0.01

_NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.1.3.10",  # Media Storage Directory (DICOMDIR)
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation: labels, not an image to review
}
# Transfer syntax name fragment -> (pip packages, the module the decoder installs).
_DECODERS = (
    ("JPEG 2000", "pylibjpeg pylibjpeg-openjpeg", "openjpeg"),
    ("JPEG-LS", "pyjpegls", "jpeg_ls"),
    ("JPEG", "pylibjpeg pylibjpeg-libjpeg", "libjpeg"),
    ("RLE", "pylibjpeg pylibjpeg-rle", "rle"),
)


@dataclass(frozen=True)
class SeriesInfo:
    """One series found in a folder, as shown in the series picker."""

    uid: str
    description: str
    modality: str
    num_files: int
    size: tuple[int, int, int]  # (columns, rows, images or frames)
    number: int | None = None
    is_localizer: bool = False
    files: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def label(self) -> str:
        """One line naming the series for a message or a list."""
        number = f"#{self.number} " if self.number is not None else ""
        kind = " (localizer)" if self.is_localizer else ""
        desc = self.description or "no description"
        c, r, n = self.size
        return f"{number}{desc}{kind}: {self.modality or '?'}, {n} images of {c}x{r}, UID {self.uid}"


# -- discovery -------------------------------------------------------------------------

def list_dicom_series(folder, progress: Progress | None = None) -> list[SeriesInfo]:
    """All image series under ``folder`` (searched recursively), largest first.

    Files that are not DICOM are ignored; DICOM files without pixel data (reports,
    structure sets, DICOMDIR) are skipped. Raises VolumeLoadError when the folder
    cannot be read.
    """
    series, _ = _scan(Path(folder), progress)
    infos = [info for uid, items in series.items() if (info := _series_info(uid, items))]
    return sorted(infos, key=lambda s: (s.is_localizer, -s.num_files, s.number or 0))


def _scan(folder: Path, progress: Progress | None) -> tuple[dict[str, list], list[str]]:
    """Headers of every DICOM image file under ``folder``, grouped by series UID."""
    try:
        paths = sorted(p for p in folder.rglob("*") if p.is_file())
    except OSError as exc:
        raise VolumeLoadError(f"Cannot read the folder {folder}: {exc.strerror or exc}.") from exc
    series: dict[str, list] = defaultdict(list)
    damaged: list[str] = []
    for n, path in enumerate(paths):
        if progress:
            progress(n, len(paths))
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM: a README, a thumbnail, ...
        except Exception:  # noqa: BLE001 - any damage to one file must not stop the scan
            damaged.append(path.name)
            continue
        if _is_image(ds):
            series[str(ds.get("SeriesInstanceUID", "") or "unknown")].append((str(path), ds))
    return series, damaged


def _is_image(ds: Dataset) -> bool:
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds, "file_meta", Dataset()).get(
        "MediaStorageSOPClassUID", ""))
    return "Rows" in ds and "Columns" in ds and sop_class not in _NON_IMAGE_SOP_CLASSES


def _series_info(uid: str, items: list) -> SeriesInfo | None:
    """What the series picker shows of one series; None when its headers are too
    malformed to describe (its files are then reported as damaged when loaded)."""
    first = items[0][1]
    try:
        frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
        number = first.get("SeriesNumber")
        return SeriesInfo(
            uid=uid,
            description=str(first.get("SeriesDescription", "") or ""),
            modality=str(first.get("Modality", "") or ""),
            num_files=len(items),
            size=(int(first.Columns), int(first.Rows), frames),
            number=int(number) if number not in (None, "") else None,
            is_localizer=_is_localizer([ds for _, ds in items]),
            files=tuple(path for path, _ in items),
        )
    except (ValueError, TypeError, AttributeError):
        return None


def _is_localizer(headers: list[Dataset]) -> bool:
    image_type = {str(v).upper() for v in headers[0].get("ImageType", []) or []}
    if image_type & {"LOCALIZER", "SCOUT"}:
        return True
    description = str(headers[0].get("SeriesDescription", "")).lower()
    if any(word in description for word in ("localizer", "localiser", "scout", "survey", "topogram")):
        return True
    # Tri-planar localizers: a handful of images in several orientations.
    orientations = {tuple(np.round(np.asarray(h.get("ImageOrientationPatient", [0] * 6), float), 2))
                    for h in headers}
    return len(headers) <= 5 and len(orientations) > 1


# -- reading ---------------------------------------------------------------------------

def read_dicom_folder(folder, series_uid: str | None = None,
                      progress: Progress | None = None) -> Volume:
    """The image series in ``folder`` as a Volume (see ``list_dicom_series``).

    Without ``series_uid`` the folder must hold exactly one image series that is not a
    localizer; otherwise VolumeLoadError names the series to choose from.
    """
    folder = Path(folder)
    series, damaged = _scan(folder, None)
    infos = [info for uid, items in series.items() if (info := _series_info(uid, items))]
    warnings = []
    if damaged:
        warnings.append(f"{len(damaged)} damaged DICOM file(s) were skipped: "
                        + ", ".join(damaged[:5]) + ("..." if len(damaged) > 5 else ""))
    if not infos:
        hint = f" ({len(damaged)} damaged DICOM file(s) could not be read)" if damaged else ""
        raise VolumeLoadError(f"No DICOM images were found in {folder}{hint}. "
                              "Choose the folder that holds the image files of a series.")
    chosen = _choose_series(folder, infos, series_uid, warnings)
    volume = read_dicom_files(chosen.files, progress=progress)
    volume.meta["warnings"] = warnings + volume.meta["warnings"]
    return volume


def _choose_series(folder: Path, infos: list[SeriesInfo], series_uid: str | None,
                   warnings: list[str]) -> SeriesInfo:
    if series_uid is not None:
        for info in infos:
            if info.uid == series_uid:
                return info
        raise VolumeLoadError(f"The series {series_uid} is not in {folder}. It holds:\n"
                              + "\n".join("  " + i.label() for i in infos))
    volumes = [i for i in infos if not i.is_localizer]
    if len(volumes) == 1:
        skipped = [i for i in infos if i.is_localizer]
        if skipped:
            warnings.append(f"Skipped {len(skipped)} localizer series: "
                            + "; ".join(i.label() for i in skipped))
        return volumes[0]
    if not volumes:
        if len(infos) == 1:
            warnings.append("This series looks like a localizer (scout).")
            return infos[0]
        volumes = infos
    raise VolumeLoadError(f"{folder} holds {len(volumes)} image series; choose one:\n"
                          + "\n".join("  " + i.label() for i in volumes))


@dataclass
class _Frame:
    dataset: Dataset
    frame_index: int | None  # None for a single-frame file
    position: np.ndarray | None  # ImagePositionPatient, mm LPS
    orientation: np.ndarray | None  # ImageOrientationPatient (row cosines, column cosines)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm
    slope: float
    intercept: float
    source: str


def read_dicom_files(paths: Iterable[str], progress: Progress | None = None) -> Volume:
    """One Volume from the DICOM image files ``paths`` (one series, any order).

    Raises VolumeLoadError for unreadable or inconsistent files.
    """
    paths = list(paths)
    frames: list[_Frame] = []
    for n, path in enumerate(paths):
        if progress:
            progress(n, 2 * len(paths))
        frames.extend(_frames_of(_read_dataset(path), path))
    first = frames[0].dataset
    warnings: list[str] = []
    if len(paths) == 1 and frames[0].frame_index is None and first.get("SeriesInstanceUID"):
        warnings.append("This file is one image of a series; open its folder to see every slice.")
    frames = _sort_frames(frames, warnings)
    stack = np.empty((len(frames), int(first.Rows), int(first.Columns)), dtype=np.float32)
    decoded: dict[int, np.ndarray] = {}  # id(dataset) -> all frames of a multi-frame file
    for n, frame in enumerate(frames):
        if progress:
            progress(len(paths) + n * len(paths) // len(frames), 2 * len(paths))
        stack[n] = _pixels(frame, decoded) * np.float32(frame.slope) + np.float32(frame.intercept)
    volume = _assemble(stack, frames, warnings)
    volume.modality = str(first.get("Modality", "") or "")
    volume.meta.update(_describe(first, frames), warnings=warnings)
    return volume


def _read_dataset(path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as exc:
        raise VolumeLoadError(f"{Path(path).name} is not a DICOM file ({exc}).") from exc
    except (OSError, MemoryError) as exc:
        raise VolumeLoadError(f"Cannot read {path}: {exc}.") from exc
    except Exception as exc:
        raise VolumeLoadError(f"{Path(path).name} is damaged and cannot be read as DICOM "
                              f"({type(exc).__name__}: {exc}).") from exc


def _check_supported(ds: Dataset, path) -> None:
    name = Path(path).name
    has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels or "Rows" not in ds or "Columns" not in ds:
        what = _sop_name(ds)
        if "Image" in what:
            raise VolumeLoadError(f"{name} is a {what} header without its pixel data; "
                                  "re-export the series with its images.")
        raise VolumeLoadError(f"{name} holds no image (it is a {what}).")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise VolumeLoadError(f"{name} is a colour image ({ds.get('PhotometricInterpretation', 'RGB')}); "
                              "segview reads greyscale CT and MR images.")


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    return UID(str(uid)).name if uid else "DICOM object without an image"


def _frames_of(ds: Dataset, path: str) -> list[_Frame]:
    """One _Frame per image in ``ds``, with geometry from the classic tags or from the
    functional groups of an enhanced multi-frame object."""
    _check_supported(ds, path)
    try:
        count = int(ds.get("NumberOfFrames", 1) or 1)
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        offsets = ds.get("GridFrameOffsetVector")  # RT dose: positions along the normal
        frames = []
        for i in range(count):
            groups = [per_frame[i]] if per_frame is not None and i < len(per_frame) else []
            groups += [shared] if shared is not None else []
            position = _group_value(groups, "PlanePositionSequence", "ImagePositionPatient", ds)
            orientation = _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient", ds)
            spacing = _group_value(groups, "PixelMeasuresSequence", "PixelSpacing", ds)
            slope = _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope", ds)
            intercept = _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept", ds)
            if ds.get("Modality") == "RTDOSE" and "DoseGridScaling" in ds:
                slope = ds.DoseGridScaling
            position = None if position is None else np.asarray(position, float)
            orientation = None if orientation is None else np.asarray(orientation, float)
            if offsets is not None and position is not None and orientation is not None and count > 1:
                position = position + float(offsets[i]) * np.cross(orientation[:3], orientation[3:])
            frames.append(_Frame(
                dataset=ds, frame_index=i if count > 1 else None, position=position,
                orientation=orientation,
                pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
                slope=1.0 if slope in (None, "") else float(slope),
                intercept=0.0 if intercept in (None, "") else float(intercept),
                source=path))
        return frames
    except VolumeLoadError:
        raise
    except Exception as exc:
        raise VolumeLoadError(f"{Path(path).name} has malformed image geometry or rescale values "
                              f"({type(exc).__name__}: {exc}).") from exc


def _first_item(ds: Dataset, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _group_value(groups: list[Dataset], sequence: str, keyword: str, ds: Dataset):
    """``keyword`` from the first functional group that has it, else from the top level."""
    for group in groups:
        item = _first_item(group, sequence)
        if item is not None and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    value = ds.get(keyword)
    return None if value in (None, "") else value


def _pixels(frame: _Frame, decoded: dict[int, np.ndarray]) -> np.ndarray:
    ds = frame.dataset
    try:
        if frame.frame_index is None:
            pixels = ds.pixel_array
        else:
            if id(ds) not in decoded:
                decoded[id(ds)] = ds.pixel_array
            pixels = decoded[id(ds)][frame.frame_index]
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        raise VolumeLoadError(_decoder_message(ds, frame.source, exc)) from exc
    except MemoryError as exc:
        raise VolumeLoadError(f"Not enough memory to read {Path(frame.source).name}.") from exc
    except Exception as exc:
        raise VolumeLoadError(f"The image data of {Path(frame.source).name} are damaged or incomplete "
                              f"({type(exc).__name__}: {exc}). Re-export the series from the PACS.") from exc
    if pixels.shape[-2:] != (int(ds.Rows), int(ds.Columns)) or pixels.ndim != 2:
        raise VolumeLoadError(f"The image data of {Path(frame.source).name} do not have the size "
                              f"its header declares ({ds.Rows} x {ds.Columns}).")
    return pixels


def _decoder_message(ds: Dataset, path: str, exc: Exception) -> str:
    syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    name = UID(str(syntax)).name if syntax else "an unknown transfer syntax"
    what = f"{Path(path).name} is compressed with {name}, and no installed decoder can read it"
    for key, packages, module in _DECODERS:
        if key in name and not _installed(module):
            return f"{what}. Install one with:  pip install {packages}"
    return (f"{what} ({exc}). Decompress the series (e.g. with dcmdjpeg or gdcmconv --raw) "
            "and open it again.")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked or half-imported
        return False


def _sort_frames(frames: list[_Frame], warnings: list[str]) -> list[_Frame]:
    """Frames in order along the slice normal; refuses mixed sizes or orientations."""
    sizes = {(int(f.dataset.Rows), int(f.dataset.Columns)) for f in frames}
    if len(sizes) > 1:
        raise VolumeLoadError(f"The images of this series have different sizes {sorted(sizes)}; "
                              "it is not one volume.")
    if any(f.position is None or f.orientation is None for f in frames):
        if len(frames) > 1:
            warnings.append("The images carry no patient position; they are stacked in file order "
                            "with an assumed slice spacing.")
        return sorted(frames, key=lambda f: (int(f.dataset.get("InstanceNumber", 0) or 0),
                                             f.frame_index or 0))
    orientation = frames[0].orientation
    if any(np.max(np.abs(f.orientation - orientation)) > 1e-3 for f in frames):
        raise VolumeLoadError("The images of this series have different orientations (e.g. a "
                              "tri-planar localizer); it is not one volume.")
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(frames, key=lambda f: float(f.position @ normal))


def _assemble(stack: np.ndarray, frames: list[_Frame], warnings: list[str]) -> Volume:
    """A Volume from sorted slices, regularised where the acquisition was irregular."""
    first = frames[0]
    ds = first.dataset
    row_mm, col_mm = first.pixel_spacing or _fallback_pixel_spacing(ds, warnings)
    if first.position is None or first.orientation is None:
        warnings.append("The image carries no patient position or orientation; its axes are "
                        "shown as axial with the origin at 0.")
        origin, row_dir, col_dir = np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        positions = None
    else:
        origin, row_dir, col_dir = first.position, first.orientation[:3], first.orientation[3:]
        positions = np.array([f.position for f in frames])
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.9:
        raise VolumeLoadError("The image orientation in the header is not valid (row and column "
                              "directions are not perpendicular unit vectors).")
    normal /= np.linalg.norm(normal)
    if positions is None or len(frames) == 1:
        gap = _fallback_slice_spacing(ds, len(frames), warnings)
        direction = np.column_stack([row_dir, col_dir, normal])
        return _volume(stack, (col_mm, row_mm, gap), origin, direction)

    along = positions @ normal
    gaps = np.diff(along)
    if np.min(gaps) < 1e-3:
        raise VolumeLoadError(
            f"{len(frames)} images but only {len(np.unique(np.round(along, 3)))} distinct slice "
            "positions: the series holds several images per position (cardiac phases, echoes or "
            "diffusion directions). Export one phase or echo as its own series.")
    # The slice axis follows the stack; with gantry tilt it is not the normal.
    drift = (positions[-1] - positions[0]) - (along[-1] - along[0]) * normal
    slice_dir = normal + drift / (along[-1] - along[0])
    stack, along, gap = _regularise_spacing(stack, along, gaps, warnings)
    direction = np.column_stack([row_dir, col_dir, slice_dir / np.linalg.norm(slice_dir)])
    volume = _volume(stack, (col_mm, row_mm, gap * np.linalg.norm(slice_dir)), origin, direction)
    if np.linalg.norm(drift) > TILT_TOLERANCE_MM:
        angle = np.degrees(np.arccos(min(1.0, 1.0 / np.linalg.norm(slice_dir))))
        warnings.append(f"Gantry tilt of {angle:.2f} degrees: the volume was resampled onto a "
                        "grid perpendicular to the slices so distances and shapes are true.")
        volume = orthogonalized(volume) or volume
    return volume


def _regularise_spacing(stack: np.ndarray, along: np.ndarray, gaps: np.ndarray,
                        warnings: list[str]) -> tuple[np.ndarray, np.ndarray, float]:
    """Slices on a regular grid along the normal; missing or unevenly spaced slices are
    filled by linear interpolation between their neighbours, with a warning."""
    median = float(np.median(gaps))
    if np.max(np.abs(gaps - median)) <= GAP_TOLERANCE * median:
        return stack, along, float(np.mean(gaps))
    multiples = gaps / median
    if np.all(np.abs(multiples - np.round(multiples)) <= GAP_TOLERANCE * np.round(multiples)):
        gap = median
        missing = int(np.sum(np.round(multiples) - 1))
        where = ", ".join(f"after {along[i]:.1f} mm" for i in np.flatnonzero(np.round(multiples) > 1)[:5])
        warnings.append(f"{missing} slice(s) missing ({where}); they were filled by linear "
                        "interpolation between the neighbouring slices. Do not measure there.")
    else:
        gap = float(np.min(gaps))
        warnings.append(f"Slice spacing varies from {np.min(gaps):.3g} to {np.max(gaps):.3g} mm; "
                        f"the volume was resampled to a regular {gap:.3g} mm spacing by linear "
                        "interpolation.")
    target = along[0] + gap * np.arange(round((along[-1] - along[0]) / gap) + 1)
    upper = np.clip(np.searchsorted(along, target), 1, len(along) - 1)
    weight = np.clip((target - along[upper - 1]) / (along[upper] - along[upper - 1]), 0, 1)
    weight = np.where(weight < 1e-4, 0, np.where(weight > 1 - 1e-4, 1, weight))  # acquired slices stay exact
    regular = (1 - weight[:, None, None]) * stack[upper - 1] + weight[:, None, None] * stack[upper]
    if np.array_equal(stack, np.round(stack)):  # integer data (CT in HU) stay integer
        regular = np.round(regular)
    return regular.astype(np.float32), target, gap


def _volume(stack, spacing, origin, direction) -> Volume:
    return Volume(array=_compact(stack), spacing=spacing, origin=tuple(origin),
                  direction=tuple(np.asarray(direction).ravel()))


def _compact(stack: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer in range (CT in HU), else float32."""
    if stack.size and np.all(stack == np.round(stack)) and stack.min() >= -32768 and stack.max() <= 32767:
        return stack.astype(np.int16)
    return stack.astype(np.float32)


def _fallback_pixel_spacing(ds: Dataset, warnings: list[str]) -> tuple[float, float]:
    for keyword in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if ds.get(keyword):
            return float(ds.get(keyword)[0]), float(ds.get(keyword)[1])
    warnings.append("The header gives no pixel spacing; 1 mm pixels are assumed, so lengths "
                    "and areas are not in true millimetres.")
    return 1.0, 1.0


def _fallback_slice_spacing(ds: Dataset, count: int, warnings: list[str]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = ds.get(keyword)
        if value not in (None, "") and float(value) > 0:
            if count > 1:
                warnings.append(f"Slice spacing taken from {keyword} ({float(value):g} mm).")
            return float(value)
    if count > 1:
        warnings.append("The header gives no slice spacing; 1 mm is assumed.")
    return 1.0


def _describe(ds: Dataset, frames: list[_Frame]) -> dict:
    """The meta entries of a DICOM-loaded Volume."""
    return {
        "series_description": str(ds.get("SeriesDescription", "") or ""),
        "window_presets": _window_presets(ds),
        "source_format": "dicom",
        "series_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "study_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        "patient_id": str(ds.get("PatientID", "") or ""),
        "source_files": sorted({f.source for f in frames}),
    }


def _window_presets(ds: Dataset) -> list[tuple[str, float, float]]:
    item = _first_item(_first_item(ds, "SharedFunctionalGroupsSequence") or Dataset(), "FrameVOILUTSequence")
    source = item if item is not None and "WindowCenter" in item else ds
    centers, widths = source.get("WindowCenter"), source.get("WindowWidth")
    if centers is None or widths is None:
        return []
    centers = list(centers) if isinstance(centers, pydicom.multival.MultiValue) else [centers]
    widths = list(widths) if isinstance(widths, pydicom.multival.MultiValue) else [widths]
    names = source.get("WindowCenterWidthExplanation") or []
    names = list(names) if isinstance(names, pydicom.multival.MultiValue) else [names]
    presets = []
    for n, (c, w) in enumerate(zip(centers, widths)):
        name = str(names[n]) if n < len(names) and names[n] else f"DICOM {n + 1}"
        if float(w) > 0:
            presets.append((name, float(c), float(w)))
    return presets


# -- writing ---------------------------------------------------------------------------

_SOP_CLASS = {"CT": pydicom.uid.CTImageStorage, "MR": pydicom.uid.MRImageStorage}
_PHANTOM_BODY_PART = {"cardiac": "HEART", "lung": "CHEST"}
#: Slices whose normal is within this angle (degrees) of the patient's feet-head axis are
#: axial; a larger angle (an oblique short-axis stack) is not.
AXIAL_TOLERANCE_DEGREES = 30.0


def write_dicom_series(volume: Volume, folder, *, patient_id: str = "SEGVIEW-PHANTOM",
                       patient_name: str = "Phantom^Segview", series_description: str = "",
                       series_number: int = 1, study_uid: str | None = None,
                       image_type: tuple[str, ...] | None = None, body_part: str | None = None) -> list[Path]:
    """Write ``volume`` as a single-frame CT or MR series, one file per slice (k index).

    The files conform to the CT or MR Image IOD (dciodvfy reports no error): every
    Type 1 and 2 attribute is present, unknown Type 2 values (birth date, sex, echo
    time...) are present and empty. CT is stored unsigned with RescaleIntercept -1024
    (or lower, for values below -1024 HU) as scanners do, so the read-back is in HU; MR
    has no rescale in its IOD, so its values are stored as they are (unsigned, or signed
    when some are negative). ``image_type`` defaults to ORIGINAL\\PRIMARY and, as value
    3, AXIAL for axial CT and OTHER for anything else (an oblique short-axis MR is not
    axial). ``body_part`` (BodyPartExamined, e.g. "HEART") defaults to the phantom's
    (HEART, CHEST); a series without one gets an empty Laterality (unknown). Returns the
    written paths.

    Raises:
        ValueError: the values do not fit in 16-bit pixels.
        OSError: the folder or a file cannot be written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    modality = volume.modality if volume.modality in _SOP_CLASS else "MR"
    stored, intercept = _stored_pixels(volume.array, modality)
    series = Dataset()
    _patient_study_series(series, modality, patient_id, patient_name, study_uid, series_number,
                          series_description or volume.meta.get("series_description", ""))
    _body_part(series, body_part or _PHANTOM_BODY_PART.get(volume.meta.get("phantom", {}).get("task")))
    _image_pixel(series, volume, stored, intercept, image_type or _default_image_type(volume, modality))
    paths = []
    for k in range(volume.shape[0]):
        ds = _slice(series, volume, k, stored[k])
        path = folder / f"IM{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _stored_pixels(values: np.ndarray, modality: str) -> tuple[np.ndarray, int | None]:
    """The 16-bit stored values and the CT rescale intercept (None for MR: no rescale)."""
    values = np.round(values).astype(np.int32)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if modality == "CT":
        intercept = min(-1024, low)  # air at stored 0, as scanners write it
        if high - intercept > 65535:
            raise ValueError(f"CT values from {low} to {high} HU do not fit in 16-bit DICOM pixels")
        return (values - intercept).astype(np.uint16), intercept
    if low >= 0 and high <= 65535:
        return values.astype(np.uint16), None
    if -32768 <= low and high <= 32767:
        return values.astype(np.int16), None
    raise ValueError(f"MR values from {low} to {high} do not fit in 16-bit DICOM pixels")


def _default_image_type(volume: Volume, modality: str) -> tuple[str, ...]:
    """ORIGINAL\\PRIMARY\\AXIAL for axial CT, ORIGINAL\\PRIMARY\\OTHER otherwise (AXIAL is
    a defined term of the CT IOD only, and wrong for an oblique stack)."""
    normal = volume.direction_matrix[:, 2]
    angle = np.degrees(np.arccos(min(1.0, abs(float(normal[2])) / float(np.linalg.norm(normal)))))
    axial = modality == "CT" and angle <= AXIAL_TOLERANCE_DEGREES
    return ("ORIGINAL", "PRIMARY", "AXIAL" if axial else "OTHER")


def _patient_study_series(ds: Dataset, modality: str, patient_id: str, patient_name: str,
                          study_uid: str | None, series_number: int, description: str) -> None:
    """Patient, General Study, General Series, Frame of Reference and Equipment modules:
    shared by every slice. Type 2 attributes nobody knows for a phantom are empty."""
    now = datetime.datetime.now()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = _SOP_CLASS[modality]
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "1", ""
    ds.Modality = modality
    ds.SeriesNumber, ds.SeriesDescription = series_number, description
    ds.PatientPosition = "HFS"
    ds.PositionReferenceIndicator = ""  # Type 2: no landmark for a phantom
    ds.Manufacturer = "segview phantom"
    if modality == "CT":
        ds.KVP, ds.AcquisitionNumber = "", 1  # Type 2: no tube voltage for a phantom
    else:
        # Type 1 with no true value for a synthetic image: research mode, no variant
        # (defined terms of the MR Image Module); the timing is unknown, so empty.
        ds.ScanningSequence, ds.SequenceVariant = "RM", "NONE"
        ds.ScanOptions, ds.MRAcquisitionType = "", "2D"
        ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = "", "", ""


def _body_part(ds: Dataset, body_part: str | None) -> None:
    """BodyPartExamined, or an empty Laterality (Type 2C) when the body part is unknown:
    Laterality must be absent for an unpaired part (the heart, the whole chest) and
    may be empty only when nobody knows what was imaged."""
    if body_part:
        ds.BodyPartExamined = body_part.upper()[:16]
    else:
        ds.Laterality = ""


def _image_pixel(ds: Dataset, volume: Volume, stored: np.ndarray, intercept: int | None,
                 image_type: tuple[str, ...]) -> None:
    """General Image, Image Plane, Image Pixel, CT rescale and VOI LUT attributes shared
    by every slice."""
    direction = volume.direction_matrix
    ds.ImageType = list(image_type)
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    ds.PixelSpacing = [_ds(volume.spacing[1]), _ds(volume.spacing[0])]
    ds.SliceThickness = _ds(volume.spacing[2])
    ds.SpacingBetweenSlices = _ds(volume.spacing[2])
    ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if stored.dtype == np.int16 else 0
    if intercept is not None:  # the MR Image IOD has no rescale: values are stored as they are
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = intercept, 1, "HU"
    presets = volume.meta.get("window_presets") or []
    if presets:
        ds.WindowCenter = [_ds(c) for _, c, _ in presets]
        ds.WindowWidth = [_ds(w) for _, _, w in presets]
        ds.WindowCenterWidthExplanation = [name[:64] for name, _, _ in presets]


def _slice(series: Dataset, volume: Volume, k: int, pixels: np.ndarray) -> Dataset:
    """The dataset of slice ``k``: the shared attributes plus its own UID and position."""
    ds = copy.deepcopy(series)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    direction = volume.direction_matrix
    position = volume.index_to_physical((k, 0, 0))
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.SliceLocation = _ds(float(position @ np.cross(direction[:, 0], direction[:, 1])))
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds


def _ds(value: float) -> str:
    """A Decimal String of at most 16 characters holding ``value`` as precisely as fits."""
    for digits in range(10, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{value:.1e}"
