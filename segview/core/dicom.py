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
import os
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from .errors import VolumeLoadError
from .memory import ensure_fits, session_bytes
from .volume import Volume, grid_differences, orthogonalized

Progress = Callable[[int, int], None]
_EMPTY = Dataset()

#: How far (a share of the slice gap) a slice may lie off a regular grid along the stack,
#: and a gap off a whole number of gaps, before the stack counts as unevenly spaced: positions
#: rounded or jittered by the scanner stay as acquired rather than being resampled.
SPACING_TOLERANCE = 0.05
#: In-plane drift over the whole stack (a share of the pixel) before it counts as gantry tilt.
TILT_TOLERANCE = 0.1
#: Positions off the grid by more than this (mm), though within the tolerances, are reported.
REPORTED_OFFSET_MM = 0.01

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


class _DamagedFile(VolumeLoadError):
    """One file of a series is damaged (cut short, unparsable): the series opens without it,
    its slice taken as missing, unless no file is left."""

    def __init__(self, message: str, path, reason: str):
        super().__init__(message)
        self.path, self.reason = str(path), reason

    def warning(self) -> str:
        return f"Skipped the damaged file {Path(self.path).name}: {self.reason}; its slice is taken as missing."


class _DamagedFiles(Exception):
    """Files found damaged as their pixels were read: the series is read again without them."""

    def __init__(self, files: list[_DamagedFile]):
        super().__init__(", ".join(Path(f.path).name for f in files))
        self.files = files


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
    #: What the scan read of each file, so that ``read_dicom_files(series)`` parses no
    #: header again (geometry, rescale and pixel offsets; the first file's whole header).
    headers: _SeriesHeaders | None = field(default=None, repr=False, compare=False)
    #: Files of the folder scanned that are damaged DICOM (of which series, no one can tell):
    #: reading the series says so.
    damaged: tuple[str, ...] = field(default=(), repr=False, compare=False)
    #: Who the series is of, as ``patient_line`` says it ("" when its header names no one).
    patient: str = ""

    def label(self) -> str:
        """One line naming the series for a message or a list: "chest (series 2): CT, ...".
        "series N" is its DICOM SeriesNumber, which two series may share (a "#1" read as a
        place in the list, and two series of number 1 as one listed twice)."""
        notes = [f"series {self.number}"] if self.number is not None else []
        notes += ["localizer"] if self.is_localizer else []
        desc = (self.description or "no description") + (f" ({', '.join(notes)})" if notes else "")
        c, r, n = self.size
        return f"{desc}: {self.modality or '?'}, {n} images of {c}x{r}, UID {self.uid}"


def series_list(infos: Iterable[SeriesInfo]) -> str:
    """Lines numbering the series by their place in the list (1., 2., ...; not their
    SeriesNumber, which ``label`` gives), for a message that asks to choose one."""
    return "\n".join(f"  {n}. {info.label()}" for n, info in enumerate(infos, 1))


# -- discovery -------------------------------------------------------------------------

def list_dicom_series(folder, progress: Progress | None = None) -> list[SeriesInfo]:
    """All image series under ``folder`` (searched recursively), largest first.

    Files that are not DICOM are ignored; DICOM files without pixel data (reports,
    structure sets, DICOMDIR) are skipped. Raises VolumeLoadError when the folder
    cannot be read.
    """
    series, damaged = _scan(Path(folder), progress)
    infos = [info for uid, items in series.items() if (info := _series_info(uid, items, damaged))]
    return sorted(infos, key=lambda s: (s.is_localizer, -s.num_files, s.number or 0))


def _scan(folder: Path, progress: Progress | None) -> tuple[dict[str, list], list[str]]:
    """Headers of every DICOM image file under ``folder`` (path, _Header), grouped by
    series UID, and the names of the damaged files."""
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
            header = _read_header(path)
        except InvalidDicomError:
            if path.suffix.lower() == ".dcm":  # named as a slice: a slice destroyed, not a README
                damaged.append(path.name)
            continue  # not DICOM: a README, a thumbnail, ...
        except Exception:  # noqa: BLE001 - any damage to one file must not stop the scan
            damaged.append(path.name)
            continue
        if _is_image(header.dataset):
            uid = str(_value(header.dataset, "SeriesInstanceUID") or "unknown")
            series[uid].append((str(path), header))
        elif _claims_image(header.dataset):  # an image storage class without rows: cut off in its header
            damaged.append(path.name)
    return series, damaged


def _is_image(ds: Dataset) -> bool:
    return "Rows" in ds and "Columns" in ds and _sop_class(ds) not in _NON_IMAGE_SOP_CLASSES


def _claims_image(ds: Dataset) -> bool:
    """Whether ``ds``'s SOP class is an image storage class (CT, MR, secondary capture...;
    not a structured report or a presentation state)."""
    return "Image Storage" in UID(_sop_class(ds)).name


def _sop_class(ds: Dataset) -> str:
    return str(_value(ds, "SOPClassUID") or _value(getattr(ds, "file_meta", _EMPTY), "MediaStorageSOPClassUID") or "")


def _series_info(uid: str, items: list, damaged: list[str]) -> SeriesInfo | None:
    """What the series picker shows of one series; None when its headers are too
    malformed to describe (its files are then reported as damaged when loaded)."""
    first = items[0][1].dataset
    datasets = [header.dataset for _, header in items]
    try:
        frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)
        number = first.get("SeriesNumber")
        return SeriesInfo(
            uid=uid,
            description=str(first.get("SeriesDescription", "") or ""),
            modality=str(first.get("Modality", "") or ""),
            num_files=len(items),
            size=(int(first.Columns), int(first.Rows), frames),
            number=int(number) if number not in (None, "") else None,
            is_localizer=_is_localizer(datasets),
            files=tuple(path for path, _ in items),
            headers=_series_headers([header for _, header in items]),
            damaged=tuple(damaged),
            patient=patient_line(_patient_fields(first)),
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
    orientations = {tuple(np.round(np.asarray(_value(h, "ImageOrientationPatient") or [0] * 6, float), 2))
                    for h in headers}
    return len(headers) <= 5 and len(orientations) > 1


# -- reading ---------------------------------------------------------------------------
#
# Each file's header is parsed once (by the scan that lists the series, or here when only
# paths are given) and what reading needs is kept in a _Frame: geometry, rescale, pixel
# format and the byte offset of the pixel data. Pixels are then read in parallel threads
# straight into one preallocated volume: uncompressed little-endian 16-bit data with
# readinto (no parse, no copy but the rescale), everything else through pydicom's decoders
# (which release the GIL for compressed data) from the bytes at that offset. CT with
# integer rescale slope and intercept stays in 16 bits (int16 HU).

#: Threads that read and decode the images of one series.
READ_THREADS = max(2, min(8, os.cpu_count() or 1))

#: Called with (volume, z) once slice z holds its final voxels; see ``read_dicom_files``.
FirstSlice = Callable[[Volume, int], None]

_IMPLICIT_VR_LE = "1.2.840.10008.1.2"
_NATIVE_LE = {_IMPLICIT_VR_LE, "1.2.840.10008.1.2.1"}
_PIXEL_TAGS = {b"\xe0\x7f\x10\x00": "PixelData", b"\xe0\x7f\x08\x00": "FloatPixelData",
               b"\xe0\x7f\x09\x00": "DoubleFloatPixelData"}
_PIXEL_VRS = {"PixelData": "OW", "FloatPixelData": "OF", "DoubleFloatPixelData": "OD"}
# Explicit VRs whose length takes 4 bytes after 2 reserved ones (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_ITEM, _SEQUENCE_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"


@dataclass(frozen=True)
class _Header:
    """One file's header as parsed once: the dataset without its pixel data, and where
    the pixel data element starts (None when it cannot be read at an offset: big-endian
    or deflated files, read whole by pydicom instead)."""

    path: str
    dataset: Dataset
    pixel_offset: int | None
    pixel_keyword: str | None  # PixelData, FloatPixelData, ...; None: none follows the header
    implicit_vr: bool
    stamp: tuple[int, int] = (0, 0)  # (size, mtime in ns) when read: a changed file is read again


@dataclass(frozen=True)
class _PixelFormat:
    """How one file stores its pixels (Image Pixel module and transfer syntax)."""

    samples: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric: str
    planar_configuration: int | None
    number_of_frames: int | None
    transfer_syntax: str
    keyword: str
    implicit_vr: bool


@dataclass
class _Frame:
    source: str
    frame_index: int | None  # None for a single-frame file
    position: np.ndarray | None  # ImagePositionPatient, mm LPS
    orientation: np.ndarray | None  # ImageOrientationPatient (row cosines, column cosines)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns), mm
    slope: float
    intercept: float
    rows: int
    columns: int
    instance: int
    pixel_format: _PixelFormat | None  # None: the file is read again whole by pydicom
    pixel_offset: int | None
    stamp: tuple[int, int] = (0, 0)  # the file's (size, mtime in ns) when its header was read


@dataclass(frozen=True)
class _SeriesHeaders:
    """What the scan keeps of a series so that reading parses no header again: the first
    file's header (description, window presets, UIDs) and a _Frame per image, or the
    error a file's header gives (raised when the series is read); the damaged files left out."""

    first: Dataset
    frames: tuple[_Frame, ...]
    error: VolumeLoadError | None = None
    skipped: tuple[_DamagedFile, ...] = ()


def _read_header(path) -> _Header:
    """The header of ``path`` up to its pixel data (pydicom errors pass through)."""
    with open(path, "rb") as f:
        header = _quick_header(f, str(path))
        if header is not None:
            return replace(header, stamp=_stamp(os.fstat(f.fileno())))
        f.seek(0)
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        implicit, little = ds.original_encoding
        syntax = str(_value(getattr(ds, "file_meta", _EMPTY), "TransferSyntaxUID") or "")
        if not little or syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
            return _Header(str(path), ds, None, None, bool(implicit), _stamp(os.fstat(f.fileno())))
        offset = f.tell()
        keyword = _PIXEL_TAGS.get(f.read(4))
        stamp = _stamp(os.fstat(f.fileno()))
    return _Header(str(path), ds, offset, keyword, bool(implicit), stamp)


def _stamp(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_size, stat.st_mtime_ns


def _unchanged(frames: Iterable[_Frame]) -> bool:
    """Whether every file is as it was when its header was read (offsets still hold)."""
    try:
        return all(_stamp(os.stat(f.source)) == f.stamp for f in {f.source: f for f in frames}.values())
    except OSError:
        return False


_CHUNK = 1 << 14
_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
_HEADER = struct.Struct("<HH2sH")  # group, element, explicit VR, short length
_LONG = struct.Struct("<I")


def _quick_header(f, path: str) -> _Header | None:
    """The header of a Part 10 little-endian file whose top-level elements all have a
    defined length, split into pydicom RawDataElements (converted when read, as pydicom's
    own) without pydicom's per-element overhead: a quarter of dcmread's time. None for
    anything else (no preamble, undefined lengths, big-endian, deflated, damage): pydicom
    then parses the file."""
    data = f.read(_CHUNK)
    if len(data) < 144 or data[128:132] != b"DICM":
        return None
    meta: dict[BaseTag, DataElement | RawDataElement] = {}
    position = 132
    while True:  # the File Meta Information: group 2, always explicit VR little endian
        element = _raw_element(data, position, False)
        if element is None or element[0].tag >> 16 != 2:
            break
        meta[element[0].tag], position = element
    syntax_value = getattr(meta.get(BaseTag(0x00020010)), "value", None) or b""
    syntax = syntax_value.decode("ascii", "replace").strip(" \x00")
    if syntax == _IMPLICIT_VR_LE:
        implicit = True
    elif syntax == _EXPLICIT_VR_LE or (syntax and UID(syntax).is_compressed and UID(syntax).is_little_endian
                                        and syntax != pydicom.uid.DeflatedExplicitVRLittleEndian):
        implicit = False
    else:
        return None
    elements: dict[BaseTag, DataElement | RawDataElement] = {}
    keyword = None
    while True:
        if position + 12 > len(data):
            data += f.read(max(_CHUNK, position + 12 - len(data)))
            if position == len(data):
                break  # the end of the file: no pixel data
            if position + 8 > len(data):
                return None
        keyword = _PIXEL_TAGS.get(data[position: position + 4])
        if keyword is not None:
            break
        element = _raw_element(data, position, implicit)
        if element is None:
            return None
        raw, end = element
        if end > len(data):  # a long value: read on
            data += f.read(end - len(data) + _CHUNK)
            if end > len(data):
                return None
            raw = raw._replace(value=data[raw.value_tell: end])
        elements[raw.tag], position = raw, end
    ds = Dataset(elements)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(implicit, True, "iso8859")
    return _Header(path, ds, position, keyword, implicit)


def _raw_element(data: bytes, position: int, implicit: bool) -> tuple[RawDataElement, int] | None:
    """The element at ``position`` and where the next one starts; None for an undefined
    length, an item tag or a VR that is not two capitals (implicit VR in disguise)."""
    if position + 8 > len(data):
        return None
    group, number, vr_bytes, short = _HEADER.unpack_from(data, position)
    if group == 0xFFFE:
        return None
    if implicit:
        vr, length, start = None, _LONG.unpack_from(data, position + 4)[0], position + 8
    else:
        if not (65 <= vr_bytes[0] <= 90 and 65 <= vr_bytes[1] <= 90):
            return None
        vr = vr_bytes.decode("ascii")
        if vr_bytes in _LONG_VRS:
            if position + 12 > len(data):
                return None
            length, start = _LONG.unpack_from(data, position + 8)[0], position + 12
        else:
            length, start = short, position + 8
    if length == 0xFFFFFFFF:
        return None
    tag = BaseTag(group << 16 | number)
    return RawDataElement(tag, vr, length, data[start: start + length], start, implicit, True), start + length


def _header_or_error(path) -> _Header:
    return _read_or_error(path, _read_header)


def _series_headers(headers: list[_Header]) -> _SeriesHeaders:
    frames: list[_Frame] = []
    skipped: list[_DamagedFile] = []
    try:
        for header in headers:
            try:
                frames.extend(_frames_of(header))
            except _DamagedFile as exc:
                skipped.append(exc)
    except VolumeLoadError as exc:
        return _SeriesHeaders(headers[0].dataset, (), exc)
    except Exception as exc:  # noqa: BLE001 - a malformed header must not stop the scan
        error = VolumeLoadError(f"A header of this series is malformed ({type(exc).__name__}: {exc}).")
        return _SeriesHeaders(headers[0].dataset, (), error)
    if not frames:
        return _SeriesHeaders(headers[0].dataset, (), _none_readable(skipped))
    first = next(h.dataset for h in headers if h.path == frames[0].source)
    return _SeriesHeaders(first, tuple(frames), skipped=tuple(skipped))


def _none_readable(skipped: list[_DamagedFile]) -> VolumeLoadError:
    """The refusal of a series whose every file is damaged."""
    if len(skipped) == 1:
        return skipped[0]
    first = skipped[0]
    return VolumeLoadError(f"None of the {len(skipped)} files of this series can be read: each is damaged "
                           f"(e.g. {Path(first.path).name}: {first.reason}). Re-export the series from the PACS.")


def read_dicom_folder(folder, series_uid: str | None = None, progress: Progress | None = None,
                      *, first_slice: FirstSlice | None = None) -> Volume:
    """The image series in ``folder`` as a Volume (see ``list_dicom_series``).

    Without ``series_uid`` the folder must hold exactly one image series that is not a
    localizer; otherwise VolumeLoadError names the series to choose from. The headers
    the scan reads are not read again; ``first_slice`` as in ``read_dicom_files``.
    """
    folder = Path(folder)
    series, damaged = _scan(folder, None)
    infos = [info for uid, items in series.items() if (info := _series_info(uid, items, damaged))]
    del series  # the headers of the other series
    warnings: list[str] = []
    if not infos:
        hint = f" ({len(damaged)} damaged DICOM file(s) could not be read)" if damaged else ""
        raise VolumeLoadError(f"No DICOM images were found in {folder}{hint}. "
                              "Choose the folder that holds the image files of a series.")
    chosen = _choose_series(folder, infos, series_uid, warnings)
    volume = read_dicom_files(chosen, progress=progress, first_slice=first_slice)
    volume.meta["warnings"] = warnings + volume.meta["warnings"]
    return volume


def _choose_series(folder: Path, infos: list[SeriesInfo], series_uid: str | None,
                   warnings: list[str]) -> SeriesInfo:
    if series_uid is not None:
        for info in infos:
            if info.uid == series_uid:
                return info
        raise VolumeLoadError(f"The series {series_uid} is not in {folder}. It holds:\n" + series_list(infos))
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
    raise VolumeLoadError(f"{folder} holds {len(volumes)} image series; choose one:\n" + series_list(volumes))


def read_dicom_files(paths: Iterable[str] | SeriesInfo, progress: Progress | None = None, *,
                     first_slice: FirstSlice | None = None) -> Volume:
    """One Volume from the DICOM image files ``paths`` (one series, any order), or from a
    ``SeriesInfo`` of ``list_dicom_series``, whose headers are then not parsed again
    (unless a file changed since: then all are).

    Pixels are read in ``READ_THREADS`` threads into one preallocated array: int16 when
    every rescale slope and intercept is an integer and the values fit (CT in HU), float32
    otherwise. ``progress(done, total)`` is called from the calling thread.

    ``first_slice(volume, z)``, for a window that shows the image while the rest loads,
    is called once from the calling thread as soon as slice ``z``, the middle one (read
    first, then its neighbours outward), holds its final voxels. ``volume`` is the one
    being filled: geometry, modality and meta (window presets) are final, and its
    ``array`` is the preallocated (Z, Y, X) array, zero where slices are still being read.
    The returned Volume is that same object. When values turn out not to fit int16, the
    slices concerned stay zero until, after the others, ``volume.array`` is replaced by a
    float32 array holding every slice. An irregular series (gaps, uneven spacing, tilt) is
    resampled after reading: ``first_slice`` then comes with that final Volume, at the end.

    A damaged file (cut short, unparsable) among others is left out, as a missing slice,
    with a warning that names it and says why; one found damaged only as its pixels are
    read costs a second reading of the others, and ``first_slice`` may then come again,
    with the volume read without it.

    Raises VolumeLoadError for unreadable or inconsistent files, or when every file is
    damaged; no partial volume is returned.
    """
    first, frames, count, done, skipped = _series_frames(paths, progress)
    scan_damaged = paths.damaged if isinstance(paths, SeriesInfo) else ()
    while True:
        try:
            return _read_frames(first, frames, count, done, progress, first_slice, scan_damaged, skipped)
        except _DamagedFiles as exc:  # seen only in their pixels (compressed data cut short)
            skipped = [*skipped, *exc.files]
            gone = {damaged.path for damaged in exc.files}
            frames = [frame for frame in frames if frame.source not in gone]
            if not frames:
                raise _none_readable(skipped) from None


def _series_frames(paths: Iterable[str] | SeriesInfo, progress: Progress | None
                   ) -> tuple[Dataset, list[_Frame], int, int, list[_DamagedFile]]:
    """The first readable header, the frames of the series, its file count, the progress
    made reading headers, and the damaged files left out."""
    if isinstance(paths, SeriesInfo) and paths.headers is not None and _unchanged(paths.headers.frames):
        if paths.headers.error is not None:
            raise paths.headers.error
        return paths.headers.first, list(paths.headers.frames), paths.num_files, 0, list(paths.headers.skipped)
    files = list(paths.files if isinstance(paths, SeriesInfo) else paths)
    frames: list[_Frame] = []
    first, skipped = None, []
    for n, path in enumerate(files):
        if progress:
            progress(n, 2 * len(files))
        try:
            header = _header_or_error(path)
            frames.extend(_frames_of(header))
        except _DamagedFile as exc:
            skipped.append(exc)
            continue
        first = header.dataset if first is None else first
    if not frames and skipped:
        raise _none_readable(skipped)
    if not frames or first is None:
        raise VolumeLoadError("No DICOM image files were given.")
    return first, frames, len(files), len(files), skipped


def _read_frames(first: Dataset, frames: list[_Frame], count: int, done: int, progress: Progress | None,
                 first_slice: FirstSlice | None, scan_damaged: tuple[str, ...],
                 skipped: list[_DamagedFile]) -> Volume:
    """The Volume of ``frames`` (see ``read_dicom_files``); raises _DamagedFiles for files
    whose pixels turn out damaged."""
    warnings: list[str] = []
    if scan_damaged:
        warnings.append(f"{len(scan_damaged)} damaged DICOM file(s) were skipped: "
                        + ", ".join(scan_damaged[:5]) + ("..." if len(scan_damaged) > 5 else ""))
    warnings += [damaged.warning() for damaged in skipped]
    if count == 1 and frames[0].frame_index is None and first.get("SeriesInstanceUID"):
        warnings.append("This file is one image of a series; open its folder to see every slice.")
    frames = _sort_frames(frames, warnings)
    grid = _grid(frames, first, warnings)
    integer = all(float(f.slope).is_integer() and float(f.intercept).is_integer()
                  and (f.pixel_format is None or f.pixel_format.keyword == "PixelData") for f in frames)
    shape = (len(frames), frames[0].rows, frames[0].columns)
    # From the headers, before the array: zero-filled, it would take memory only as the
    # slices are read, and a series too big would be killed half-way, without a word.
    ensure_fits(session_bytes(shape, 2 if integer else 4), f"This series ({' x '.join(map(str, shape))} voxels)")
    array = np.zeros(shape, np.int16 if integer else np.float32)
    volume = Volume(array, grid.spacing, tuple(grid.origin), tuple(grid.direction.ravel()),
                    modality=str(first.get("Modality", "") or ""),
                    meta={**_describe(first, frames), "warnings": warnings})
    on_middle = None
    if first_slice is not None and grid.regular:
        def on_middle(z: int) -> None:
            first_slice(volume, z)
    overflowed = _read_pixels(frames, array, progress, done, done + count, on_middle)
    if overflowed:  # values beyond int16: float32, and those slices read again
        volume.array = array = array.astype(np.float32)
        _read_pixels([frames[z] for z in overflowed], array, None, 0, 0, None, [*overflowed])
    if not grid.regular:
        final, interpolated, earlier = _regular_volume(array, grid, warnings, [_frame_name(f) for f in frames])
        final.modality, final.meta = volume.modality, volume.meta
        final.meta["resampled"] = True  # its slices are no longer the source images one to one
        final.meta["resampled_because"] = " and ".join(
            why for why, irregular in (("gantry tilt", grid.tilted), ("missing or unevenly spaced slices", grid.uneven))
            if irregular)
        if interpolated:  # so a viewer can mark them
            final.meta["interpolated_slices"] = interpolated
        if earlier:  # labels saved on it still open (``core.io.load_labels``)
            final.meta["earlier_grid"] = earlier
        volume = final
        if first_slice:
            first_slice(volume, volume.shape[0] // 2)
    return volume


def _read_pixels(frames: list[_Frame], out: np.ndarray, progress: Progress | None, done: int,
                 total: int, on_middle: Callable[[int], None] | None,
                 slots: list[int] | None = None) -> list[int]:
    """Read every frame into ``out[z]`` (z = its index in ``frames``, or ``slots[index]``)
    in threads, one task per file, the middle slice's file first. Returns the z of the
    slices whose values do not fit ``out``'s int16 (left unread)."""
    slots = list(range(len(frames))) if slots is None else slots
    by_file: dict[str, list[tuple[int, _Frame]]] = {}
    for z, frame in zip(slots, frames):
        by_file.setdefault(frame.source, []).append((z, frame))
    middle = len(out) // 2
    tasks = sorted(by_file.values(), key=lambda items: min((abs(z - middle), z) for z, _ in items))
    overflowed: list[int] = []
    damaged: list[_DamagedFile] = []
    pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="segview-dicom")
    try:
        futures = [pool.submit(_read_file_noting_damage, items, out, overflowed, damaged) for items in tasks]
        if on_middle is not None:
            futures[0].result()
            if not damaged:  # else the series is read again without the damaged files
                on_middle(middle)
        for n, future in enumerate(as_completed(futures)):
            future.result()
            if progress:
                progress(done + (n + 1) * (total - done) // len(futures), total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if damaged:
        raise _DamagedFiles(damaged)
    return sorted(overflowed)


def _read_file_noting_damage(items: list[tuple[int, _Frame]], out: np.ndarray, overflowed: list[int],
                             damaged: list[_DamagedFile]) -> None:
    """``_read_file``; a damaged file is added to ``damaged`` (its slices left as they are)."""
    try:
        _read_file(items, out, overflowed)
    except _DamagedFile as exc:
        damaged.append(exc)


def _read_file(items: list[tuple[int, _Frame]], out: np.ndarray, overflowed: list[int]) -> None:
    """The frames of one file into their slices of ``out`` (runs in a worker thread)."""
    z, frame = items[0]
    if len(items) == 1 and _raw_readable(frame):
        if out.dtype == np.int16:
            _raw_into_int16(frame, out[z], z, overflowed)
        else:
            _store(out, z, _raw_pixels(frame, None), frame, overflowed)
        return
    pixels = _decoded(frame)
    for z, frame in items:
        one = pixels if frame.frame_index is None else pixels[frame.frame_index]
        if one.ndim != 2 or one.shape != (frame.rows, frame.columns):
            raise _damaged_pixels(frame.source, f"its image data are not of the {frame.rows} x {frame.columns} "
                                                "pixels its header declares")
        _store(out, z, one, frame, overflowed)


def _raw_readable(frame: _Frame) -> bool:
    """Uncompressed little-endian 16-bit greyscale: read with readinto, without pydicom."""
    fmt = frame.pixel_format
    return (fmt is not None and frame.pixel_offset is not None and frame.frame_index is None
            and fmt.transfer_syntax in _NATIVE_LE and fmt.keyword == "PixelData"
            and fmt.bits_allocated == 16 and fmt.samples == 1 and 1 <= fmt.bits_stored <= 16
            and fmt.number_of_frames in (None, 1))


def _raw_into_int16(frame: _Frame, target: np.ndarray, z: int, overflowed: list[int]) -> None:
    """Read the stored values straight into the volume's slice ``target`` (int16) and
    rescale them there: with slope 1, adding the intercept modulo 2**16 in the stored
    type gives the int16 bits of the value once the value is known to fit."""
    assert frame.pixel_format is not None
    stored = _raw_pixels(frame, target.view(np.int16 if frame.pixel_format.pixel_representation else np.uint16))
    slope, intercept = int(frame.slope), int(frame.intercept)
    low, high = _stored_range(frame, stored)
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    if (low < -32768 or high > 32767) and not _fits_int16(stored, slope, intercept):
        target[...] = 0  # not the stored bits: a window may show this slice meanwhile
        overflowed.append(z)
        return
    if slope != 1:
        target[...] = stored.astype(np.int32) * slope + intercept
    elif intercept:
        wrapped = intercept % 65536 if stored.dtype == np.uint16 else (intercept + 32768) % 65536 - 32768
        np.add(stored, stored.dtype.type(wrapped), out=stored)


def _raw_pixels(frame: _Frame, into: np.ndarray | None) -> np.ndarray:
    """The stored values of an uncompressed 16-bit file, read into ``into`` when given
    (a C-contiguous (rows, columns) array of the stored type)."""
    fmt = frame.pixel_format
    assert fmt is not None and frame.pixel_offset is not None
    dtype = np.int16 if fmt.pixel_representation == 1 else np.uint16
    pixels = np.empty((frame.rows, frame.columns), dtype) if into is None else into
    try:
        with open(frame.source, "rb") as f:
            f.seek(frame.pixel_offset)
            length = _element_length(f, fmt.implicit_vr)
            if length < pixels.nbytes or length == 0xFFFFFFFF:
                raise ValueError(f"{length} bytes of pixel data for {frame.rows} x {frame.columns} 16-bit pixels")
            read = f.readinto(pixels.data.cast("B"))
            if read != pixels.nbytes:
                raise ValueError(f"pixel data is {pixels.nbytes - read} bytes short: the file is cut off")
    except OSError as exc:
        raise VolumeLoadError(f"Cannot read {frame.source}: {exc}.") from exc
    except ValueError as exc:
        raise _damaged_pixels(frame.source, str(exc)) from exc
    pixels = pixels.view(dtype)
    if fmt.bits_stored < 16:  # as pydicom: bits above the high bit are not the value
        shift = 16 - fmt.bits_stored
        np.left_shift(pixels, shift, out=pixels)
        np.right_shift(pixels, shift, out=pixels)
    return pixels


def _element_length(f, implicit_vr: bool) -> int:
    """Read a data element's tag, VR and length at the file position; its value follows."""
    head = f.read(8)
    if len(head) < 8:
        raise ValueError("the file ends before its pixel data")
    if implicit_vr:
        return int.from_bytes(head[4:8], "little")
    if head[4:6] in _LONG_VRS:
        return int.from_bytes(f.read(4), "little")
    return int.from_bytes(head[6:8], "little")


def _store(out: np.ndarray, z: int, stored: np.ndarray, frame: _Frame, overflowed: list[int]) -> None:
    """``out[z]`` = stored * slope + intercept, exactly: integer arithmetic into int16 (the
    slice left for a float32 reading when it does not fit), double into float32."""
    target = out[z]
    if out.dtype != np.int16:
        if frame.slope == 1 and frame.intercept == 0:
            target[...] = stored
        else:
            target[...] = stored * frame.slope + frame.intercept
        return
    if stored.dtype.kind not in "iu":  # float pixel data: the volume becomes float32
        overflowed.append(z)
        return
    slope, intercept = int(frame.slope), int(frame.intercept)
    low, high = _stored_range(frame, stored)
    low, high = sorted((low * slope + intercept, high * slope + intercept))
    if low < -32768 or high > 32767:
        if not _fits_int16(stored, slope, intercept):
            overflowed.append(z)
            return
    if slope == 1:
        np.add(stored, intercept, out=target, dtype=np.int32, casting="unsafe")
    else:
        target[...] = stored.astype(np.int32) * slope + intercept


def _stored_range(frame: _Frame, stored: np.ndarray) -> tuple[int, int]:
    """The range the stored values can take, from Bits Stored (no pass over the data)."""
    fmt = frame.pixel_format
    info = np.iinfo(stored.dtype)
    if fmt is None or fmt.bits_stored >= info.bits:
        return int(info.min), int(info.max)
    if stored.dtype.kind == "i":
        return -(1 << (fmt.bits_stored - 1)), (1 << (fmt.bits_stored - 1)) - 1
    return 0, (1 << fmt.bits_stored) - 1


def _fits_int16(stored: np.ndarray, slope: int, intercept: int) -> bool:
    low, high = sorted((int(stored.min()) * slope + intercept, int(stored.max()) * slope + intercept))
    return low >= -32768 and high <= 32767


def _decoded(frame: _Frame) -> np.ndarray:
    """Every frame of ``frame``'s file through pydicom: from the bytes at its pixel offset
    with the header already parsed, or (big-endian, deflated) by reading the file whole."""
    fmt = frame.pixel_format
    name = Path(frame.source).name
    syntax = None if fmt is None else fmt.transfer_syntax
    try:
        if fmt is None or frame.pixel_offset is None:
            ds = _read_dataset(frame.source)
            _check_supported(ds, frame.source, None)
            syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
        else:
            ds = _decode_dataset(frame, fmt, _element_value(frame, fmt))
        return ds.pixel_array
    except VolumeLoadError:
        raise
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        raise VolumeLoadError(_decoder_message(syntax, frame.source, exc)) from exc
    except MemoryError as exc:
        raise VolumeLoadError(f"Not enough memory to read {name}.") from exc
    except Exception as exc:
        raise _damaged_pixels(frame.source, f"{type(exc).__name__}: {exc}") from exc


def _damaged_pixels(path, reason: str) -> _DamagedFile:
    return _DamagedFile(f"The image data of {Path(path).name} are damaged or incomplete ({reason}). "
                        "Re-export the series from the PACS.", path, reason)


def _element_value(frame: _Frame, fmt: _PixelFormat) -> bytes:
    """The value of the pixel data element at the frame's offset; for encapsulated
    (compressed) data, its items up to the sequence delimiter."""
    assert frame.pixel_offset is not None
    with open(frame.source, "rb") as f:
        f.seek(frame.pixel_offset)
        length = _element_length(f, fmt.implicit_vr)
        if length != 0xFFFFFFFF:
            return f.read(length)
        data = f.read()
    position = 0
    while position + 8 <= len(data):
        tag = data[position: position + 4]
        if tag == _SEQUENCE_END:
            return data[:position]
        if tag != _ITEM:
            raise ValueError(f"unexpected tag {tag.hex()} among the compressed fragments")
        position += 8 + int.from_bytes(data[position + 4: position + 8], "little")
    raise ValueError("the compressed pixel data end before their last fragment")


def _decode_dataset(frame: _Frame, fmt: _PixelFormat, value: bytes) -> Dataset:
    """A dataset holding just what pydicom's decoders read: the Image Pixel module, the
    transfer syntax and the pixel data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(fmt.transfer_syntax)
    ds.Rows, ds.Columns = frame.rows, frame.columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = fmt.samples, fmt.photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = fmt.bits_allocated, fmt.bits_stored, fmt.bits_stored - 1
    ds.PixelRepresentation = fmt.pixel_representation
    if fmt.planar_configuration is not None:
        ds.PlanarConfiguration = fmt.planar_configuration
    if fmt.number_of_frames is not None:
        ds.NumberOfFrames = fmt.number_of_frames
    encapsulated = UID(fmt.transfer_syntax).is_compressed
    vr = "OB" if encapsulated or (fmt.keyword == "PixelData" and fmt.bits_allocated <= 8) else _PIXEL_VRS[fmt.keyword]
    ds.add_new(fmt.keyword, vr, value)
    ds.set_original_encoding(fmt.implicit_vr, True)
    return ds


def _read_dataset(path) -> Dataset:
    return _read_or_error(path, pydicom.dcmread)


def _read_or_error(path, read):
    """``read(path)``, every failure a VolumeLoadError that says what is wrong with the file."""
    try:
        return read(path)
    except InvalidDicomError as exc:
        raise _DamagedFile(f"{Path(path).name} is not a DICOM file ({exc}).", path,
                           f"it is not DICOM ({exc})") from exc
    except (OSError, MemoryError) as exc:
        raise VolumeLoadError(f"Cannot read {path}: {exc}.") from exc
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise _DamagedFile(f"{Path(path).name} is damaged and cannot be read as DICOM ({reason}).", path,
                           f"it cannot be read as DICOM ({reason})") from exc


def _check_supported(ds: Dataset, path, has_pixels: bool | None) -> None:
    """Refuse a file without pixel data or in colour; ``has_pixels`` None: look in ``ds``."""
    name = Path(path).name
    if has_pixels is None:
        has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_pixels or "Rows" not in ds or "Columns" not in ds:
        what = _sop_name(ds)
        if "Image" in what:
            raise _DamagedFile(f"{name} is a {what} header without its pixel data; "
                               "re-export the series with its images.", path, "its pixel data are missing")
        raise VolumeLoadError(f"{name} holds no image (it is a {what}).")
    if int(_value(ds, "SamplesPerPixel") or 1) != 1:
        raise VolumeLoadError(f"{name} is a colour image ({ds.get('PhotometricInterpretation', 'RGB')}); "
                              "segview reads greyscale CT and MR images.")


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID")
    return UID(str(uid)).name if uid else "DICOM object without an image"


def _frames_of(header: _Header) -> list[_Frame]:
    """One _Frame per image in the file, with geometry from the classic tags or from the
    functional groups of an enhanced multi-frame object."""
    ds, path = header.dataset, header.path
    # Pixel data at no known offset (big-endian, deflated): the whole read checks them.
    _check_supported(ds, path, header.pixel_offset is None or header.pixel_keyword is not None)
    try:
        count = int(_value(ds, "NumberOfFrames") or 1)
        shared = _first_item(ds, "SharedFunctionalGroupsSequence")
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        offsets = ds.get("GridFrameOffsetVector")  # RT dose: positions along the normal
        rows, columns = int(_value(ds, "Rows")), int(_value(ds, "Columns"))
        instance = _instance_number(ds)
        pixel_format = _pixel_format(header)
        frames = []
        for i in range(count):
            groups = [per_frame[i]] if per_frame is not None and i < len(per_frame) else []
            groups += [shared] if shared is not None else []
            position = _group_value(groups, "PlanePositionSequence", "ImagePositionPatient", ds)
            orientation = _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient", ds)
            spacing = _group_value(groups, "PixelMeasuresSequence", "PixelSpacing", ds)
            slope = _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope", ds)
            intercept = _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept", ds)
            if _value(ds, "Modality") == "RTDOSE" and "DoseGridScaling" in ds:
                slope = ds.DoseGridScaling
            position = None if position is None else np.asarray(position, float)
            orientation = None if orientation is None else np.asarray(orientation, float)
            if offsets is not None and position is not None and orientation is not None and count > 1:
                position = position + float(offsets[i]) * np.cross(orientation[:3], orientation[3:])
            frames.append(_Frame(
                source=path, frame_index=i if count > 1 else None, position=position,
                orientation=orientation,
                pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
                slope=1.0 if slope in (None, "") else float(slope),
                intercept=0.0 if intercept in (None, "") else float(intercept),
                rows=rows, columns=columns, instance=instance, pixel_format=pixel_format,
                pixel_offset=header.pixel_offset, stamp=header.stamp))
        return frames
    except VolumeLoadError:
        raise
    except Exception as exc:
        raise VolumeLoadError(f"{Path(path).name} has malformed image geometry or rescale values "
                              f"({type(exc).__name__}: {exc}).") from exc


def _instance_number(ds: Dataset) -> int:
    try:
        return int(_value(ds, "InstanceNumber") or 0)
    except (TypeError, ValueError):
        return 0


def _pixel_format(header: _Header) -> _PixelFormat | None:
    """How the file stores its pixels; None when they are not at a known offset or the
    header lacks what decoding needs (pydicom then reads the file whole, and says why)."""
    ds = header.dataset
    if header.pixel_offset is None or header.pixel_keyword is None:
        return None
    syntax = str(_value(getattr(ds, "file_meta", _EMPTY), "TransferSyntaxUID") or "")
    if not syntax or not UID(syntax).is_compressed:  # native: the encoding pydicom found
        syntax = _IMPLICIT_VR_LE if header.implicit_vr else "1.2.840.10008.1.2.1"
    try:
        bits_allocated = int(_value(ds, "BitsAllocated"))
        frames = _value(ds, "NumberOfFrames")
        planar = _value(ds, "PlanarConfiguration")
        photometric = _value(ds, "PhotometricInterpretation")
        if photometric is None:
            return None
        return _PixelFormat(
            samples=int(_value(ds, "SamplesPerPixel") or 1), bits_allocated=bits_allocated,
            bits_stored=int(_value(ds, "BitsStored") or bits_allocated),
            pixel_representation=int(_value(ds, "PixelRepresentation") or 0),
            photometric=str(photometric),
            planar_configuration=None if planar in (None, "") else int(planar),
            number_of_frames=None if frames in (None, "") else int(frames),
            transfer_syntax=syntax, keyword=header.pixel_keyword, implicit_vr=header.implicit_vr)
    except (AttributeError, TypeError, ValueError):
        return None


# Top-level attributes read for every file, by VR: parsed from their raw bytes (pydicom's
# conversion of each element costs more than parsing the whole header).
_FAST_VRS = {"ImagePositionPatient": "DS", "ImageOrientationPatient": "DS", "PixelSpacing": "DS",
             "RescaleSlope": "DS", "RescaleIntercept": "DS", "InstanceNumber": "IS",
             "NumberOfFrames": "IS", "Rows": "US", "Columns": "US", "SamplesPerPixel": "US",
             "BitsAllocated": "US", "BitsStored": "US", "PixelRepresentation": "US",
             "PlanarConfiguration": "US", "PhotometricInterpretation": "CS", "Modality": "CS",
             "SOPClassUID": "UI", "MediaStorageSOPClassUID": "UI", "SeriesInstanceUID": "UI",
             "TransferSyntaxUID": "UI"}
_FAST_TAGS = {keyword: int(pydicom.datadict.tag_for_keyword(keyword) or 0) for keyword in _FAST_VRS}


def _value(ds: Dataset, keyword: str):
    """``ds.get(keyword)`` for the attributes of _FAST_VRS in a little-endian file, parsed
    from the raw bytes: a float or int, a list of them (several values), a str, or None
    when absent or empty. Anything unusual goes through pydicom."""
    element = ds.get_item(_FAST_TAGS[keyword]) if keyword in _FAST_TAGS else None
    vr = _FAST_VRS.get(keyword)
    if not isinstance(element, RawDataElement) or not element.is_little_endian or element.VR not in (None, vr):
        return ds.get(keyword)
    data = element.value
    if not data:
        return None
    if vr == "US":
        return int.from_bytes(data, "little") if len(data) == 2 else ds.get(keyword)
    try:
        text = data.decode("ascii").strip(" \x00")
        if vr in ("CS", "UI") or not text:
            return text or None
        kind = float if vr == "DS" else int
        values = [kind(v) for v in text.split("\\")]
    except (UnicodeDecodeError, ValueError):
        return ds.get(keyword)
    return values[0] if len(values) == 1 else values


def _first_item(ds: Dataset, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _group_value(groups: list[Dataset], sequence: str, keyword: str, ds: Dataset):
    """``keyword`` from the first functional group that has it, else from the top level."""
    for group in groups:
        item = _first_item(group, sequence)
        if item is not None and item.get(keyword) not in (None, ""):
            return item.get(keyword)
    value = _value(ds, keyword)
    return None if value in (None, "") else value


def _decoder_message(syntax: str | None, path: str, exc: Exception) -> str:
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
    sizes = Counter((f.rows, f.columns) for f in frames)
    if len(sizes) > 1:
        usual = sizes.most_common(1)[0][0]
        odd = [f for f in frames if (f.rows, f.columns) != usual]
        raise VolumeLoadError(f"The images of this series have different sizes "
                              f"({', '.join(f'{c} x {r}: {n} image(s)' for (r, c), n in sorted(sizes.items()))}; "
                              f"e.g. {', '.join(_frame_name(f) for f in odd[:3])} against {usual[1]} x {usual[0]}): "
                              "it is not one volume. Re-export the series, or move those files out.")
    spacings = sorted({f.pixel_spacing for f in frames if f.pixel_spacing is not None})
    if spacings and np.ptp(np.array(spacings), axis=0).max() > 1e-3 * max(max(s) for s in spacings):
        odd = [f for f in frames if f.pixel_spacing != frames[0].pixel_spacing][:3]
        raise VolumeLoadError(f"The images of this series have different pixel spacings "
                              f"({', '.join(f'{r:g} x {c:g} mm' for r, c in spacings[:4])}; e.g. "
                              f"{', '.join(_frame_name(f) for f in odd)}): one grid cannot hold them all.")
    unplaced = [f for f in frames if f.position is None or f.orientation is None]
    if unplaced and len(unplaced) < len(frames):  # stacked in file order, they would go anywhere
        names = ", ".join(sorted({Path(f.source).name for f in unplaced})[:5])
        raise VolumeLoadError(f"{len(unplaced)} image(s) of this series carry no patient position or orientation "
                              f"(ImagePositionPatient, ImageOrientationPatient) while the others do: {names}. "
                              "They cannot be placed in the volume; re-export the series, or move them out.")
    if unplaced:
        if len(frames) > 1:
            warnings.append("The images carry no patient position; they are stacked in file order "
                            "with an assumed slice spacing.")
        return sorted(frames, key=lambda f: (f.instance, f.frame_index or 0))
    orientation = np.asarray(frames[0].orientation)
    turned = [f for f in frames if np.max(np.abs(np.asarray(f.orientation) - orientation)) > 1e-3]
    if turned:
        raise VolumeLoadError(f"The images of this series have different orientations (e.g. a "
                              f"tri-planar localizer; {len(turned)} image(s) differ from "
                              f"{_frame_name(frames[0])}, e.g. {', '.join(_frame_name(f) for f in turned[:3])}); "
                              "it is not one volume.")
    normal = np.cross(orientation[:3], orientation[3:])
    return sorted(frames, key=lambda f: float(np.asarray(f.position) @ normal))


@dataclass
class _Grid:
    """The voxel grid of sorted slices, known from their headers before any pixel is read."""

    spacing: tuple[float, float, float]  # (x, y, z) mm; z the mean gap along the stack
    origin: np.ndarray
    direction: np.ndarray  # 3x3, columns i, j, k; k along the stack (tilted with the gantry)
    along: np.ndarray | None = None  # slice positions along the normal, mm
    stretch: float = 1.0  # length of the stack axis per mm along the normal
    uneven: bool = False  # gaps or uneven spacing: resampled after reading
    tilted: bool = False  # gantry tilt: resampled onto a perpendicular grid after reading

    @property
    def regular(self) -> bool:
        return not (self.uneven or self.tilted)


def _frame_name(frame: _Frame) -> str:
    """A frame as a person finds it: its file's name (and frame number in a multi-frame file)."""
    name = Path(frame.source).name
    return name if frame.frame_index is None else f"{name} (frame {frame.frame_index + 1})"


def _grid(frames: list[_Frame], ds: Dataset, warnings: list[str]) -> _Grid:
    """The grid of sorted slices; refuses several images per position."""
    first = frames[0]
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
        return _Grid((col_mm, row_mm, gap), origin, np.column_stack([row_dir, col_dir, normal]))

    along = positions @ normal
    gaps = np.diff(along)
    if np.min(gaps) < 1e-3:
        _refuse_shared_positions(frames, along, gaps)
    # The slice axis follows the stack; with gantry tilt it is not the normal.
    gap = (along[-1] - along[0]) / (len(along) - 1)
    line = (positions[-1] - positions[0]) / (along[-1] - along[0])  # per mm along the normal
    tilted = bool(np.linalg.norm(line - normal) * (along[-1] - along[0]) > TILT_TOLERANCE * min(row_mm, col_mm))
    slice_dir = line if tilted else normal
    stretch = float(np.linalg.norm(slice_dir))
    uneven = _off_grid(along) > SPACING_TOLERANCE * gap
    # Sideways of the stack's straight line (first slice to last): a drift is a tilt, a step is not.
    sideways = np.linalg.norm(positions - positions[0] - np.outer(along - along[0], line), axis=1)
    stepped = np.flatnonzero(sideways > TILT_TOLERANCE * min(row_mm, col_mm))
    if stepped.size:
        warnings.append(f"Slices {stepped[0] + 1}-{stepped[-1] + 1} ({_frame_name(frames[stepped[0]])} to "
                        f"{_frame_name(frames[stepped[-1]])}) lie up to {sideways.max():.2g} mm sideways of the "
                        "others (not a gantry tilt): they are shown on one straight grid, not moved back, so "
                        "shapes and distances across them are off by as much.")
    elif not (uneven or tilted):
        off = np.linalg.norm(positions - origin - np.outer(np.arange(len(along)) * gap, normal), axis=1).max()
        if off > REPORTED_OFFSET_MM:
            warnings.append(f"Slice positions lie up to {off:.2g} mm off a regular {gap:.3g} mm grid "
                            "(rounded or jittered by the scanner): they were taken as regular, "
                            "not resampled.")
    return _Grid((col_mm, row_mm, float(gap) * stretch), origin,
                 np.column_stack([row_dir, col_dir, slice_dir / stretch]), along, stretch,
                 uneven=uneven, tilted=tilted)


def _off_grid(along: np.ndarray) -> float:
    """How far (mm) the slices lie from evenly spaced positions between the first and last."""
    return float(np.abs(along - np.linspace(along[0], along[-1], len(along))).max())


def _refuse_shared_positions(frames: list[_Frame], along: np.ndarray, gaps: np.ndarray) -> None:
    """Several images at one position: a file copied twice, or several phases or echoes."""
    distinct = len(np.unique(np.round(along, 3)))
    shared = [n for n in range(len(gaps)) if gaps[n] < 1e-3]
    if len(frames) % distinct:  # not a whole number of images per position: a copy or two
        named = "; ".join(f"{_frame_name(frames[n])} and {_frame_name(frames[n + 1])} at {along[n]:.1f} mm"
                          for n in shared[:3])
        raise VolumeLoadError(f"{len(frames)} images but only {distinct} distinct slice positions: {named}"
                              f"{' ...' if len(shared) > 3 else ''}. A file copied twice, or an image "
                              "exported again? Move the extra file(s) out of the folder.")
    raise VolumeLoadError(
        f"{len(frames)} images but only {distinct} distinct slice "
        "positions: the series holds several images per position (cardiac phases, echoes or "
        "diffusion directions). Export one phase or echo as its own series.")


def _regular_volume(stack: np.ndarray, grid: _Grid, warnings: list[str],
                    names: list[str]) -> tuple[Volume, list[int], dict | None]:
    """A Volume from slices of an irregular grid: gaps and uneven spacing filled by
    interpolation, a tilted stack resampled perpendicular to its slices; the indices of
    the slices interpolated (none listed when tilted: every slice is resampled then); and
    the grid segview resampled an uneven stack onto before it ended at the last acquired
    slice, when that differs (``core.io.slices_on_earlier_grid``; None when tilted)."""
    spacing = grid.spacing
    interpolated: list[int] = []
    earlier_rule = None
    if grid.uneven and grid.along is not None:
        stack, _, gap, interpolated, earlier_rule = _regularise_spacing(stack, grid.along, np.diff(grid.along),
                                                                        warnings, names)
        spacing = (spacing[0], spacing[1], gap * grid.stretch)
    volume = _volume(stack, spacing, grid.origin, grid.direction)
    if grid.tilted:
        angle = np.degrees(np.arccos(min(1.0, 1.0 / grid.stretch)))
        warnings.append(f"Gantry tilt of {angle:.2f} degrees: the volume was resampled onto a "
                        "grid perpendicular to the slices so distances and shapes are true.")
        return orthogonalized(volume) or volume, [], None
    earlier = None
    if earlier_rule is not None:
        earlier_gap, earlier_slices = earlier_rule
        earlier = {"size": [volume.shape[2], volume.shape[1], earlier_slices],
                   "spacing": [spacing[0], spacing[1], earlier_gap], "origin": list(volume.origin),
                   "direction": list(volume.direction)}
    return volume, interpolated, earlier if earlier and grid_differences(earlier, volume) else None


def _regularise_spacing(stack: np.ndarray, along: np.ndarray, gaps: np.ndarray, warnings: list[str],
                        names: list[str]) -> tuple[np.ndarray, np.ndarray, float, list[int],
                                                   tuple[float, int] | None]:
    """Slices on a regular grid along the normal from the first acquired slice to the last;
    missing or unevenly spaced slices are filled by linear interpolation between their
    neighbours, with a warning. Also returns the indices of the slices that were
    interpolated (no acquired slice there), and for uneven spacing the gap and slice count
    of the grid segview used before (the finest gap, as many slices as round to the extent:
    labels saved on it are moved onto this grid, ``core.io.slices_on_earlier_grid``)."""
    earlier = None
    median = float(np.median(gaps))
    multiples = gaps / median
    if np.all(np.abs(multiples - np.round(multiples)) <= SPACING_TOLERANCE):
        missing = int(np.sum(np.round(multiples) - 1))
        where = ", ".join(f"after {names[i]} at {along[i]:.1f} mm" for i in np.flatnonzero(np.round(multiples) > 1)[:5])
        # Each acquired slice keeps its place on the grid, however its position was rounded.
        steps = np.concatenate([[0], np.cumsum(np.round(multiples))])
        gap = float((along[-1] - along[0]) / steps[-1])
        snapped = along[0] + gap * steps
        if np.abs(along - snapped).max() > REPORTED_OFFSET_MM:
            warnings.append(f"Slice positions lie up to {np.abs(along - snapped).max():.2g} mm off a regular "
                            f"{gap:.3g} mm grid (rounded or jittered by the scanner): the acquired slices "
                            "were taken as on it.")
        along = snapped
        warnings.append(f"{missing} slice(s) missing ({where}); they were filled by linear "
                        "interpolation between the neighbouring slices. Do not measure there.")
    else:
        # The finest gap, shrunk until a whole number of gaps spans the stack: the grid then
        # starts and ends on the acquired first and last slices (a grid slice past the last
        # could only be filled, not interpolated) and is never coarser than the acquisition
        # (beyond the tolerance that keeps a rounded extent from adding a slice).
        intervals = int(np.ceil((along[-1] - along[0]) / np.min(gaps) - SPACING_TOLERANCE))
        gap = float((along[-1] - along[0]) / intervals)
        earlier = float(np.min(gaps)), round((along[-1] - along[0]) / np.min(gaps)) + 1
        warnings.append(f"Slice spacing varies from {np.min(gaps):.3g} to {np.max(gaps):.3g} mm; "
                        f"the volume was resampled to a regular {gap:.3g} mm spacing by linear "
                        "interpolation.")
    target = np.linspace(along[0], along[-1], round((along[-1] - along[0]) / gap) + 1)  # ends exact
    upper = np.clip(np.searchsorted(along, target), 1, len(along) - 1)
    weight = np.clip((target - along[upper - 1]) / (along[upper] - along[upper - 1]), 0, 1)
    weight = np.where(weight < 1e-4, 0, np.where(weight > 1 - 1e-4, 1, weight))  # acquired slices stay exact
    regular = (1 - weight[:, None, None]) * stack[upper - 1] + weight[:, None, None] * stack[upper]
    if np.array_equal(stack, np.round(stack)):  # integer data (CT in HU) stay integer
        regular = np.round(regular)
    interpolated = [int(z) for z in np.flatnonzero((weight > 0) & (weight < 1))]
    return regular.astype(np.float32), target, gap, interpolated, earlier


def _volume(stack, spacing, origin, direction) -> Volume:
    return Volume(array=_compact(stack), spacing=spacing, origin=tuple(origin),
                  direction=tuple(np.asarray(direction).ravel()))


def _compact(stack: np.ndarray) -> np.ndarray:
    """int16 when every value is an integer in range (CT in HU), else float32."""
    if stack.dtype.kind in "iu":  # no copy when the stack is int16 already
        if not stack.size or (stack.min() >= -32768 and stack.max() <= 32767):
            return stack.astype(np.int16, copy=False)
        return stack.astype(np.float32)
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
        "study_description": str(ds.get("StudyDescription", "") or ""),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        # MONOCHROME1: the lowest value is shown white. The values stay as stored (HU);
        # the slice view inverts its grey scale, as radiology viewers do.
        "photometric_interpretation": str(_value(ds, "PhotometricInterpretation") or ""),
        **_patient_fields(ds),
        "source_files": sorted({f.source for f in frames}),
    }


def _patient_fields(ds: Dataset) -> dict[str, str]:
    """The meta entries that say whose images they are."""
    return {"patient_name": person_name_text(ds.get("PatientName")),
            "patient_id": str(ds.get("PatientID", "") or ""),
            "study_date": str(ds.get("StudyDate", "") or "")}


def person_name_text(value) -> str:
    """A DICOM person name as people write it: "Müller, Jürgen" for ``Müller^Jürgen``
    (family, given and middle names of its alphabetic group; the whole value, its ^ as
    spaces, where that group is empty: an ideographic name alone)."""
    if not value:
        return ""
    name = pydicom.valuerep.PersonName(value) if not isinstance(value, pydicom.valuerep.PersonName) else value
    given = " ".join(part for part in (name.given_name, name.middle_name) if part)
    text = ", ".join(part for part in (name.family_name, given) if part)
    return text or str(value).replace("^", " ").strip("= ")


def readable_date(date: str) -> str:
    """A DICOM date (DA, "20260102") as "2026-01-02"; anything else as it is."""
    return f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 and date.isdigit() else date


def patient_line(meta: dict) -> str:
    """"Müller, Jürgen; ID 12345; study 2026-01-02" from a Volume's ``meta`` (what a
    reader checks before reading an image: whose it is); "" when it names no one."""
    date = readable_date(str(meta.get("study_date") or ""))
    parts = [str(meta.get("patient_name") or ""), f"ID {meta['patient_id']}" if meta.get("patient_id") else "",
             f"study {date}" if date else ""]
    return "; ".join(part for part in parts if part) if meta.get("patient_name") or meta.get("patient_id") else ""


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
