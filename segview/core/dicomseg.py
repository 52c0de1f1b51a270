"""DICOM SEG export of corrected labels (highdicom), for images loaded from DICOM.

The SEG references the source series image by image (frame by frame of an enhanced
multi-frame image), so a PACS or 3D Slicer shows it on the right slices. Each foreground
class is one segment; its algorithm is marked automatic (a model's prediction left as it
was), semi-automatic (corrected by a person, with the brush or with clicks, or of unknown
history) with the models' names, or manual where the session's provenance says the class
was drawn by hand alone.
Only volumes whose slices are exactly the source images can be exported: a series that
was interpolated or resampled on loading has slices no source image stands for.
"""
from __future__ import annotations

import getpass
from pathlib import Path
from typing import NamedTuple

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from .. import __version__
from .classes import LabelClass
from .dicom import SPACING_TOLERANCE, readable_date
from .errors import LabelSaveError, SegviewError
from .files import replace_atomically
from .report import counted
from .volume import Volume

#: In a segment's list of algorithms (``save_dicom_seg``'s ``algorithms``): a person corrected it.
PERSON = "a person"

#: Segmented property category and type (SNOMED CT) of the class names segview knows:
#: heart chambers are anatomical structures, an infection is a morphologically abnormal
#: structure (the pairings of DICOM CID 7150/7151 and 3D Slicer's terminology). Other
#: classes are "Tissue".
KNOWN_STRUCTURES = {
    "right ventricle": (codes.SCT.AnatomicalStructure, ("53085002", "Right ventricular structure")),
    "myocardium": (codes.SCT.AnatomicalStructure, ("74281007", "Myocardium structure")),
    "left ventricle": (codes.SCT.AnatomicalStructure, ("87878005", "Left ventricular structure")),
    "infection": (codes.SCT.MorphologicallyAbnormalStructure, ("128477000", "Abnormal tissue")),
}
OTHER_STRUCTURE = (codes.SCT.Tissue, ("85756007", "Tissue"))
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage


#: Patient and study attributes a SEG copies from its source (type 2: present, maybe empty).
TYPE_2_ATTRIBUTES = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                     "ReferringPhysicianName", "StudyID", "AccessionNumber")


class DicomSegError(SegviewError):
    """This volume cannot be exported as DICOM SEG, or a SEG cannot be read onto it; the
    message says why."""


def export_reason(volume: Volume) -> str | None:
    """Why ``volume``'s labels cannot become a DICOM SEG, or None when they can."""
    problem = _seg_problem(volume)
    return None if problem is None else f"{problem}: save the labels as NIfTI or NRRD instead."


def _seg_problem(volume: Volume) -> str | None:
    """Why a SEG cannot lie on ``volume``'s slices (written or read), or None: it needs the
    source DICOM images, placed, one to one with the slices."""
    if volume.meta.get("source_format") != "dicom" or not volume.meta.get("source_files"):
        return "A DICOM SEG needs an image loaded from DICOM (this one is not)"
    try:
        first = _source_header(Path(volume.meta["source_files"][0]),
                               ["ImagePositionPatient", "PerFrameFunctionalGroupsSequence"])
    except DicomSegError as exc:
        return str(exc)
    if "ImagePositionPatient" not in first and "PerFrameFunctionalGroupsSequence" not in first:
        return "The DICOM images carry no patient position, so a SEG cannot say where its frames lie"
    if volume.meta.get("resampled"):
        why = volume.meta.get("resampled_because") or "irregular slices"
        return f"The DICOM series was resampled ({why}), so its slices are not the source images one to one"
    files = volume.meta["source_files"]
    if "PerFrameFunctionalGroupsSequence" in first and len(files) > 1:  # highdicom takes one multi-frame source
        return (f"The DICOM series is {len(files)} multi-frame (enhanced) files: segview writes a SEG of one "
                "multi-frame image or of a series of one image per slice")
    if "PerFrameFunctionalGroupsSequence" not in first and len(files) != volume.shape[0]:
        return ("The DICOM image is multi-frame without a position for each frame (no functional groups): segview "
                "writes a SEG of an enhanced multi-frame image or of a series of one image per slice")
    return None


def save_dicom_seg(path, labels: np.ndarray, volume: Volume, classes: list[LabelClass],
                   algorithm: str = "manual", content_creator: str | None = None,
                   algorithms: dict[int, list[str]] | None = None, series_uid: str | None = None,
                   instance_number: int = 1) -> Path:
    """Write ``labels`` (z, y, x) as a DICOM SEG referencing ``volume``'s source images.
    ``algorithm`` names the models whose predictions the labels may hold; ``algorithms``
    (class value -> the algorithms its labels came from and ``PERSON`` where a person
    corrected them, ``provenance.segment_algorithms``) says it per class instead: no
    algorithm makes that segment MANUAL, algorithms alone AUTOMATIC, with ``PERSON``
    SEMIAUTOMATIC; a class it lacks falls back to ``algorithm`` ("manual": MANUAL), of
    unknown history: SEMIAUTOMATIC, no correction claimed. An empty segment is MANUAL
    whatever they say (no algorithm made it); ``content_creator``
    (ContentCreatorName, a DICOM person name such as "Doe^Jane") is the reader who
    corrected it, by default the login name of this computer's user. ``series_uid`` and
    ``instance_number``: the SEG series it joins and its number there (default: a new
    series, instance 1), so that the revisions of one review are one series. Raises
    DicomSegError when the volume cannot be exported and LabelSaveError when the file
    cannot be written."""
    reason = export_reason(volume)
    if reason:
        raise DicomSegError(reason)
    sources = _slice_sources(volume)
    values = [c for c in classes if c.value != 0]  # one segment per class, empty ones too
    if not labels.any():
        raise DicomSegError("The labels are empty: there is no segment to export.")
    segment_map = np.zeros(labels.shape, np.uint8)
    for number, c in enumerate(values, 1):
        segment_map[labels == c.value] = number
    by_class = algorithms or {}
    fallback = [] if algorithm == "manual" else [algorithm]
    present = set(np.unique(labels).tolist())  # an empty segment is no algorithm's work
    segments = [_segment(number, c, *_algorithm(by_class.get(c.value, fallback) if c.value in present else [],
                                                known=c.value in by_class))
                for number, c in enumerate(values, 1)]
    try:
        seg = _segmentation(sources.images, _in_source_order(segment_map, sources), segments, content_creator,
                            series_uid or new_uid(), instance_number)
    except ValueError as exc:  # highdicom's refusal of these source images: say it, as ours are said
        raise DicomSegError(f"These DICOM images cannot carry a DICOM SEG ({exc}); save the labels as NIfTI or "
                            "NRRD instead.") from exc
    try:
        return replace_atomically(path, lambda temporary: seg.save_as(temporary))
    except OSError as exc:
        raise LabelSaveError(f"Cannot write the DICOM SEG {path}: {exc.strerror or exc}") from exc


def _in_source_order(segment_map: np.ndarray, sources: _Sources) -> np.ndarray:
    """``segment_map`` (z, y, x) with its planes in the order highdicom takes them: the
    source images' (slice order) or, for a multi-frame image, its frames' (the reader sorts
    frames by position, so slice z need not be frame z + 1)."""
    return segment_map if sources.frames is None else segment_map[np.argsort(sources.frames)]


def new_uid() -> str:
    """A new DICOM UID (highdicom's, under its root)."""
    return str(hd.UID())


def _segmentation(sources: list[pydicom.Dataset], segment_map: np.ndarray,
                  segments: list[hd.seg.SegmentDescription], content_creator: str | None, series_uid: str,
                  instance_number: int) -> hd.seg.Segmentation:
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=segment_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=series_uid, series_number=900,
        sop_instance_uid=hd.UID(), instance_number=instance_number, manufacturer="segview",
        manufacturer_model_name="segview", software_versions=__version__, device_serial_number="none",
        series_description="segview corrected labels", omit_empty_frames=False,
        content_creator_name=content_creator or _login_name())


def is_dicom_seg(path) -> bool:
    """Whether ``path`` is a DICOM Segmentation object (read by its header only)."""
    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # noqa: BLE001 - anything unreadable is no SEG
        return False
    return str(header.get("SOPClassUID", "")) == SEG_SOP_CLASS


def latest_seg(folder) -> Path:
    """The DICOM SEG of a retrieved SEG series ``folder`` to open: its last revision (the
    highest InstanceNumber; segview's revisions of one review are the instances of one
    series). Raises DicomSegError when the folder holds none."""
    segs = [path for path in sorted(Path(folder).glob("*.dcm")) if is_dicom_seg(path)]
    if not segs:
        raise DicomSegError(f"The series in {Path(folder).name} holds no DICOM SEG (a Segmentation object).")

    def instance_number(path: Path) -> int:
        header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["InstanceNumber"])
        return int(header.get("InstanceNumber") or 0)

    return max(segs, key=instance_number)


def seg_name(path) -> str:
    """The DICOM SEG at ``path`` as a clinician names it: '"segview corrected labels"
    (series 900, 2026-01-02)' from its SeriesDescription, SeriesNumber and SeriesDate (or
    ContentDate); its file name when it has no description (a PACS names files by UID)."""
    path = Path(path)
    try:
        header = pydicom.dcmread(str(path), stop_before_pixels=True,
                                 specific_tags=["SeriesDescription", "SeriesNumber", "SeriesDate", "ContentDate"])
    except Exception:  # noqa: BLE001 - a header that cannot be read names nothing
        return path.name
    description = str(header.get("SeriesDescription") or "").strip()
    if not description:
        return path.name
    number = str(header.get("SeriesNumber") or "").strip()
    date = readable_date(str(header.get("SeriesDate") or header.get("ContentDate") or "").strip())
    details = ", ".join(part for part in (f"series {number}" if number else "", date) if part)
    return f'"{description}"' + (f" ({details})" if details else "")


def referenced_series_uid(path) -> str:
    """The Series Instance UID of the images the DICOM SEG ``path`` segments (its
    ReferencedSeriesSequence; of several, the one it references most images of). Raises
    DicomSegError for a file that is no SEG or names no series."""
    path = Path(path)
    if not is_dicom_seg(path):
        raise DicomSegError(f"{path.name} is not a DICOM SEG.")
    header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["ReferencedSeriesSequence"])
    referenced = referenced_images(header)
    if not referenced:
        raise DicomSegError(f"The DICOM SEG {path.name} does not say which image series it segments "
                            "(it has no Referenced Series Sequence).")
    return max(referenced, key=referenced.__getitem__)


def referenced_images(header: pydicom.Dataset) -> dict[str, int]:
    """Series Instance UID -> how many of its images a SEG's ``header`` references (its
    ReferencedSeriesSequence)."""
    counts: dict[str, int] = {}
    for item in header.get("ReferencedSeriesSequence", []):
        uid = str(item.get("SeriesInstanceUID", "") or "")
        if uid:
            images = {str(i.get("ReferencedSOPInstanceUID", "")) for i in item.get("ReferencedInstanceSequence", [])}
            counts[uid] = max(counts.get(uid, 0), len(images))
    return counts


def read_seg_labels(path, volume: Volume) -> tuple[np.ndarray, list[LabelClass]]:
    """The labels (z, y, x) uint8 and the classes of a DICOM SEG of ``volume``'s series,
    written by segview or any other program: segment N is class N, named by its label, in
    its recommended colour (grey without one), a FRACTIONAL segment where it reaches half.
    Frames go to the slices of the source images they reference. Raises DicomSegError for a
    SEG of another series, one whose segments overlap (named: a label volume cannot hold
    them) or more than 255 segments."""
    problem = _seg_problem(volume)  # the same one-to-one slices are needed to read one back
    if problem:
        raise DicomSegError(f"{problem}: a SEG cannot be read onto it.")
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise DicomSegError(f"{Path(path).name} cannot be read as a DICOM SEG ({exc}).") from exc
    numbers = list(seg.get_segment_numbers())
    if max(numbers, default=0) > 255:
        raise DicomSegError(f"{Path(path).name} has {len(numbers)} segments; segview edits at most 255 classes.")
    sources = _slice_sources(volume)
    uids = [str(ds.SOPInstanceUID) for ds in sources.images]
    referenced = {str(item.ReferencedSOPInstanceUID) for series in seg.ReferencedSeriesSequence
                  for item in series.ReferencedInstanceSequence}
    if not referenced & set(uids):
        raise DicomSegError(f"{Path(path).name} segments another series: none of the images it references is "
                            f"one of this image's {counted(len(uids), 'source image')}.")
    try:  # each segment apart: a fractional one is thresholded, an overlap named
        planes = _slice_planes(seg, sources, segment_numbers=numbers, combine_segments=False, rescale_fractional=True,
                               ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    except (ValueError, RuntimeError) as exc:
        raise DicomSegError(f"{Path(path).name} cannot be read onto this image ({exc}).") from exc
    array = _one_class_a_voxel(np.asarray(planes) >= 0.5, numbers, seg, Path(path).name)
    classes = [LabelClass(0, "background", (0, 0, 0))]
    for number in numbers:
        description = seg.get_segment_description(number)
        lab = description.get("RecommendedDisplayCIELabValue")
        red, green, blue = hd.color.CIELabColor.from_dicom_value(lab).to_rgb() if lab else (128, 128, 128)
        classes.append(LabelClass(number, str(description.segment_label), (int(red), int(green), int(blue))))
    return np.asarray(array, np.uint8), classes


def _one_class_a_voxel(inside: np.ndarray, numbers: list[int], seg, name: str) -> np.ndarray:
    """The segment number of each voxel from ``inside`` (z, y, x, segment) bool, a fractional
    segment held where it reaches half; raises DicomSegError naming two segments that
    overlap and a slice where they do (a label volume holds one class a voxel)."""
    shared = inside.sum(axis=-1) > 1
    if shared.any():
        z, y, x = np.argwhere(shared)[0]
        first, second = (numbers[n] for n in np.flatnonzero(inside[z, y, x])[:2])
        labels = [seg.get_segment_description(n).segment_label for n in (first, second)]
        raise DicomSegError(f"{name}: segments {first} ({labels[0]}) and {second} ({labels[1]}) overlap, e.g. on "
                            f"slice {z + 1}; a label volume holds one class a voxel.")
    out = np.zeros(inside.shape[:3], np.uint8)
    for index, number in enumerate(numbers):
        out[inside[..., index]] = number
    return out


def read_dicom_seg(path, volume: Volume, classes: list[LabelClass]) -> np.ndarray:
    """The label volume (z, y, x) of a SEG written for ``volume``: each segment becomes
    the value of the class with its label."""
    seg = hd.seg.segread(str(path))
    numbers = _slice_planes(seg, _slice_sources(volume), combine_segments=True, skip_overlap_checks=True)
    value_of = {segment_label(c.name): c.value for c in classes}
    table = np.zeros(256, np.uint8)
    for number in seg.get_segment_numbers():
        table[number] = value_of[seg.get_segment_description(number).segment_label]
    return table[np.asarray(numbers, np.uint8)]


class _Sources(NamedTuple):
    """The source images of a volume's slices: ``images`` (headers), one a slice in slice
    order, or the one multi-frame image; ``frames``: the frame number (from 1) of that
    image that each slice is, None for one image a slice."""
    images: list[pydicom.Dataset]
    frames: list[int] | None


def _slice_sources(volume: Volume) -> _Sources:
    """The source images of ``volume``'s slices (headers only), each placed on its slice by
    its position. Raises DicomSegError when they are not the slices one to one."""
    datasets = [_source_header(Path(f)) for f in volume.meta["source_files"]]
    for ds in datasets:
        for keyword in TYPE_2_ATTRIBUTES:  # required (may be empty); some writers omit them
            if keyword not in ds:
                setattr(ds, keyword, "")
    if "PerFrameFunctionalGroupsSequence" in datasets[0]:  # one enhanced image (_seg_problem refuses more)
        image = datasets[0]
        positions = _frame_positions(image)
        names = [f"{Path(str(image.filename)).name} (frame {n})" for n in range(1, len(positions) + 1)]
        slices = _slice_indices(volume, positions, names)
        frames = [0] * volume.shape[0]
        for number, z in enumerate(slices, 1):
            frames[z] = number
        return _Sources([image], frames)
    slices = _slice_indices(volume, [[float(v) for v in ds.ImagePositionPatient] for ds in datasets],
                            [Path(str(ds.filename)).name for ds in datasets])
    by_slice = dict(zip(slices, datasets))
    return _Sources([by_slice[z] for z in range(volume.shape[0])], None)


def _frame_positions(image: pydicom.Dataset) -> list[list[float]]:
    """The patient position (mm, LPS) of each frame of an enhanced image, from its
    per-frame functional groups (where highdicom reads them for the SEG's frames)."""
    positions = []
    for number, group in enumerate(image.PerFrameFunctionalGroupsSequence, 1):
        plane = group.get("PlanePositionSequence")
        if not plane or "ImagePositionPatient" not in plane[0]:
            raise DicomSegError(f"Frame {number} of the source image {Path(str(image.filename)).name} has no "
                                "position of its own, so a SEG cannot say where its frames lie.")
        positions.append([float(v) for v in plane[0].ImagePositionPatient])
    return positions


def _slice_indices(volume: Volume, positions: list[list[float]], names: list[str]) -> list[int]:
    """The slice of ``volume`` that each source image (or frame) at ``positions`` (LPS, mm)
    is, named by ``names``. Raises DicomSegError unless they are the slices one to one."""
    slices = []
    for position, name in zip(positions, names):
        z = volume.physical_to_index(position)[0]
        if abs(z - round(z)) > SPACING_TOLERANCE or not 0 <= round(z) < volume.shape[0]:
            raise DicomSegError(f"The source image {name} is not on a slice of the volume.")
        slices.append(int(round(z)))
    if sorted(slices) != list(range(volume.shape[0])):
        raise DicomSegError("Some slices of the volume have no source image of their own.")
    return slices


def _slice_planes(seg: hd.seg.Segmentation, sources: _Sources, **options) -> np.ndarray:
    """``seg``'s pixels of each slice (z first), found by the source image, or the frame of
    a multi-frame one, that each frame of the SEG references; ``options`` as highdicom's."""
    if sources.frames is None:
        uids = [str(ds.SOPInstanceUID) for ds in sources.images]
        return seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, **options)
    return seg.get_pixels_by_source_frame(source_sop_instance_uid=str(sources.images[0].SOPInstanceUID),
                                          source_frame_numbers=sources.frames, **options)


def _source_header(path: Path, tags: list[str] | None = None) -> pydicom.Dataset:
    """The header (``tags`` of it, or all) of the source image at ``path``. Raises
    DicomSegError when it is gone or unreadable (a cache emptied, a disk unmounted while the
    image is on screen)."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=tags)
    except OSError as exc:
        raise DicomSegError(f"The source image {path} can no longer be read ({exc.strerror or exc})") from exc


def segment_label(name: str) -> str:
    """A class's name as a Segment Label (LO: 64 characters, no backslash), written and read
    alike; a longer name made a SEG dciodvfy refuses."""
    return name.replace("\\", "/")[:64].strip()  # DICOM drops the spaces at either end


def _algorithm(names: list[str], known: bool
               ) -> tuple[hd.seg.SegmentAlgorithmTypeValues, hd.AlgorithmIdentificationSequence | None]:
    """A segment's algorithm type and identification from ``names`` (the algorithms it came
    from, and ``PERSON`` where a person corrected it; ``known``: its history is known).
    A model's labels copied and left as they were are AUTOMATIC: a helper's SEG, sent
    untouched, said "corrected by a person"."""
    kind = hd.seg.SegmentAlgorithmTypeValues
    algorithms = [n for n in names if n != PERSON]
    if not algorithms:
        return kind.MANUAL, None
    corrected = PERSON in names
    name = f"segview ({', '.join(algorithms)})"
    if len(name) > 64:  # Algorithm Name is LO: 64 characters at most (dciodvfy)
        name = f"segview ({counted(len(algorithms), 'source')})"
    # The sources in full, and whether a person corrected them (with the brush or with
    # clicks), in Algorithm Parameters (LT, 10240 characters).
    parameters = {"sources": "; ".join(algorithms)}
    if corrected:
        parameters["corrected"] = "by a person (brush or clicks)"
    identification = hd.AlgorithmIdentificationSequence(name=name, version=__version__, parameters=parameters,
                                                        family=codes.cid7162.ArtificialIntelligence)
    return (kind.SEMIAUTOMATIC if corrected or not known else kind.AUTOMATIC), identification


def _segment(number: int, label_class: LabelClass, algorithm_type: hd.seg.SegmentAlgorithmTypeValues,
             algorithm_id: hd.AlgorithmIdentificationSequence | None) -> hd.seg.SegmentDescription:
    """One segment: the class's name, SNOMED category and type, its algorithm (``_algorithm``),
    and its colour as the CIELab value viewers show (highdicom's from_rgb takes 0..255 per
    channel)."""
    category, (code, meaning) = KNOWN_STRUCTURES.get(label_class.name.lower(), OTHER_STRUCTURE)
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=segment_label(label_class.name),
        segmented_property_category=category, segmented_property_type=hd.sr.CodedConcept(code, "SCT", meaning),
        algorithm_type=algorithm_type,
        algorithm_identification=algorithm_id,
        display_color=hd.color.CIELabColor.from_rgb(*(int(v) for v in label_class.color)))


def _login_name() -> str:
    """This computer's user as a DICOM person name (family name component only)."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no user name in the environment or the password file
        name = ""
    # A trailing caret marks a one-component name as the family name (PS3.5 6.2.1.2).
    return (name or "segview user")[:63].replace("^", " ") + "^"
