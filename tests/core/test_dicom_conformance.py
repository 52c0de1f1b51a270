"""What segview writes, judged by tools made by others: David Clunie's dciodvfy for the
DICOM series and SEGs, pydicom's raw reading with the colour formulas of PS3.3 for the SEG
colours and codes, and 3D Slicer's slicerio for .seg.nrrd label files."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segview.core.dicom import write_dicom_series
from segview.core.dicomseg import save_dicom_seg
from segview.core.io import load_classes, load_volume, save_labels
from segview.core.phantoms import make_phantom
from segview.core.volume import Volume

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None,
                                    reason="dciodvfy is not installed (apt-get install dicom3tools)")


def dciodvfy(path: Path) -> tuple[list[str], list[str]]:
    """dciodvfy's errors and warnings for one file."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return [s for s in lines if s.startswith("Error")], [s for s in lines if s.startswith("Warning")]


@pytest.fixture(scope="module", params=["lung", "cardiac"])
def written(request, tmp_path_factory):
    """A phantom as a DICOM series and its labels as a SEG: (case, series paths, SEG path)."""
    case = make_phantom(request.param, 5)
    folder = tmp_path_factory.mktemp(request.param)
    paths = write_dicom_series(case.volume, folder / "series")
    seg = save_dicom_seg(folder / "seg.dcm", case.labels, load_volume(folder / "series"), list(case.classes),
                         "model", content_creator="Doe^Jane")
    return case, paths, seg


@needs_dciodvfy
def test_every_series_image_passes_dciodvfy_without_error_or_warning(written):
    _, paths, _ = written
    for path in (paths[0], paths[len(paths) // 2], paths[-1]):
        errors, warnings = dciodvfy(path)
        assert errors == [] and warnings == [], (path.name, errors, warnings)


@needs_dciodvfy
def test_the_seg_passes_dciodvfy_without_error_or_warning(written):
    errors, warnings = dciodvfy(written[2])
    assert errors == [] and warnings == []


@needs_dciodvfy
def test_segments_drawn_by_hand_are_manual_copied_ones_automatic_and_corrected_ones_semiautomatic(tmp_path):
    """A tester's hand-painted segment was written SEMIAUTOMATIC, by 'Artificial Intelligence';
    a helper's model labels, sent untouched, said "corrected by a person"."""
    import pydicom

    from segview.core.dicomseg import PERSON
    from segview.session.provenance import segment_algorithms

    case = make_phantom("cardiac", 5)
    write_dicom_series(case.volume, tmp_path / "series")
    everywhere_by_hand = {z: ("hand",) for z in range(case.labels.shape[0])}
    assert segment_algorithms(case.labels, everywhere_by_hand, {}) == {1: [PERSON], 2: [PERSON], 3: [PERSON]}
    # a tester's long checkpoint names made an Algorithm Name (LO) of 73 characters
    long_name = "liver_tumour_ce_dice_finetuned_on_site_b_2026_11"
    algorithms = {1: [PERSON], 2: ["cardiac_ce"], 3: [long_name, "click model interactive", PERSON]}
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(tmp_path / "series"), list(case.classes),
                         "fallback", algorithms=algorithms)
    errors, warnings = dciodvfy(seg)
    assert errors == [] and warnings == [], (errors, warnings)
    segments = {int(s.SegmentNumber): s for s in pydicom.dcmread(seg).SegmentSequence}
    assert segments[1].SegmentAlgorithmType == "MANUAL" and "SegmentAlgorithmName" not in segments[1]
    assert segments[2].SegmentAlgorithmType == "AUTOMATIC"
    assert segments[2].SegmentAlgorithmName == "segview (cardiac_ce)"
    assert segments[2].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters == "sources=cardiac_ce"
    assert segments[3].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segments[3].SegmentAlgorithmName == "segview (2 sources)"
    identification = segments[3].SegmentationAlgorithmIdentificationSequence[0]
    assert identification.AlgorithmParameters == (f"sources={long_name}; click model interactive,"
                                                  "corrected=by a person (brush or clicks)")
    # without a history (labels from a file), the models loaded: SEMIAUTOMATIC, no correction claimed
    seg = save_dicom_seg(tmp_path / "unknown.dcm", case.labels, load_volume(tmp_path / "series"),
                         list(case.classes), "cardiac_ce")
    for segment in pydicom.dcmread(seg).SegmentSequence:
        assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
        assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters == "sources=cardiac_ce"


def test_segment_algorithms_leave_out_a_class_of_unknown_origin_and_say_who_corrected():
    from segview.core.dicomseg import PERSON
    from segview.session.provenance import segment_algorithms

    labels = np.zeros((3, 4, 4), np.uint8)
    labels[0, :2] = 1
    labels[1, :2] = 1
    labels[1, 2:] = 2
    labels[2, :2] = 3
    sources = {0: ("hand",), 1: ("interpolation",), 2: ("loaded",)}
    assert segment_algorithms(labels, sources, {}) == {1: [PERSON], 2: [PERSON]}
    assert segment_algorithms(labels, {0: ("hand",)}, {}) == {}  # class 1 on an untouched slice too
    copied = {z: ("model B", "interactive") for z in range(3)}  # a record written before names
    names = {"model B": "lung_ce", "interactive": "interactive"}
    expected = {v: sorted([PERSON, "click model interactive", "lung_ce"]) for v in (1, 2, 3)}
    assert segment_algorithms(labels, copied, names) == expected
    # a record's own names win over the models loaded now (another model B, another click model)
    named = {z: ("model B: lung_ce", "interactive: clicks_v2") for z in range(3)}
    expected = {v: sorted([PERSON, "click model clicks_v2", "lung_ce"]) for v in (1, 2, 3)}
    assert segment_algorithms(labels, named, {"model B": "other", "interactive": "interactive"}) == expected
    untouched = {z: ("model B",) for z in range(3)}  # copied and left as it was: no person
    assert segment_algorithms(labels, untouched, names) == {v: ["lung_ce"] for v in (1, 2, 3)}


@needs_dciodvfy
@pytest.mark.parametrize("modality, low, high", [("MR", -300, 900), ("CT", -3024, 3071)])
def test_values_outside_the_usual_range_still_conform_and_read_back_exactly(modality, low, high, tmp_path):
    """MR with negative values (no rescale in the MR IOD: signed pixels) and CT below
    -1024 HU (the intercept goes lower)."""
    array = np.linspace(low, high, 4 * 8 * 8).reshape(4, 8, 8).round().astype(np.int16)
    volume = Volume(array, (0.8, 0.8, 3.0), (0.0, 0.0, 0.0), modality=modality)
    paths = write_dicom_series(volume, tmp_path / "series", body_part="CHEST")
    assert dciodvfy(paths[0]) == ([], [])
    np.testing.assert_array_equal(load_volume(tmp_path / "series").array, array)


@needs_dciodvfy
def test_a_series_of_unknown_body_part_has_no_error(tmp_path):
    volume = Volume(np.zeros((2, 8, 8), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), modality="MR")
    errors, warnings = dciodvfy(write_dicom_series(volume, tmp_path / "series")[0])
    assert errors == []
    # The one warning allowed: Laterality (Type 2C) is empty, which the standard permits
    # "when actually unknown", and nobody knows whether an unnamed body part is paired.
    assert len(warnings) == 1 and "<Laterality>" in warnings[0]


def test_image_type_says_axial_only_for_axial_ct(written):
    case, paths, _ = written
    expected = "AXIAL" if case.volume.modality == "CT" else "OTHER"  # the cardiac phantom is an oblique short axis
    assert list(pydicom.dcmread(paths[0]).ImageType) == ["ORIGINAL", "PRIMARY", expected]


def test_mr_images_carry_no_rescale_and_the_sequence_attributes(written):
    case, paths, _ = written
    ds = pydicom.dcmread(paths[0])
    if case.volume.modality == "MR":
        assert "RescaleIntercept" not in ds and "RescaleSlope" not in ds
        assert ds.ScanningSequence and ds.SequenceVariant and "EchoTime" in ds and "RepetitionTime" in ds
    else:
        assert ds.RescaleIntercept == -1024 and "KVP" in ds and "AcquisitionNumber" in ds


def _dicom_lab_to_rgb(value) -> np.ndarray:
    """sRGB 0..255 from a RecommendedDisplayCIELabValue (PS3.3 C.10.7.1.1: L* scaled
    0..65535 for 0..100, a* and b* for -128..127; D65 white), by the CIE and IEC
    61966-2-1 formulas."""
    L = value[0] * 100 / 65535
    a, b = value[1] * 255 / 65535 - 128, value[2] * 255 / 65535 - 128
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f ** 3 > 216 / 24389, f ** 3, (116 * f - 16) / (24389 / 27)) * [0.95047, 1.0, 1.08883]
    linear = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]) @ xyz
    linear = np.clip(linear, 0, 1)
    srgb = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return srgb * 255


def test_seg_colours_decode_to_the_class_colours(written):
    case, _, seg_path = written
    seg = pydicom.dcmread(seg_path)
    colours = {c.name: c.color for c in case.classes}
    for segment in seg.SegmentSequence:
        rgb = _dicom_lab_to_rgb(list(segment.RecommendedDisplayCIELabValue))
        np.testing.assert_allclose(rgb, colours[segment.SegmentLabel], atol=2, err_msg=segment.SegmentLabel)
        assert segment.RecommendedDisplayCIELabValue[0] > 65535 * 0.3  # not near black (the old defect)


#: Category and type (SNOMED CT) a radiologist expects, from DICOM CID 7150 / 7151.
EXPECTED_CODES = {
    "right ventricle": (("91723000", "Anatomical Structure"), "53085002"),
    "myocardium": (("91723000", "Anatomical Structure"), "74281007"),
    "left ventricle": (("91723000", "Anatomical Structure"), "87878005"),
    "infection": (("49755003", "Morphologically Abnormal Structure"), "128477000"),
}


def test_seg_categories_codes_and_creator_read_back_raw(written):
    _, _, seg_path = written
    seg = pydicom.dcmread(seg_path)
    assert str(seg.ContentCreatorName) == "Doe^Jane"
    for segment in seg.SegmentSequence:
        category = segment.SegmentedPropertyCategoryCodeSequence[0]
        kind = segment.SegmentedPropertyTypeCodeSequence[0]
        (code, meaning), type_code = EXPECTED_CODES[segment.SegmentLabel]
        assert (category.CodeValue, category.CodingSchemeDesignator, category.CodeMeaning) == (code, "SCT", meaning)
        assert (kind.CodeValue, kind.CodingSchemeDesignator) == (type_code, "SCT")


def test_a_seg_without_a_named_creator_names_the_computer_user(written, tmp_path):
    case, paths, _ = written
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, load_volume(paths[0].parent), list(case.classes))
    assert str(pydicom.dcmread(seg).ContentCreatorName).strip("^")


@needs_dciodvfy
def test_a_class_named_at_length_makes_a_valid_seg_that_reads_back(written, tmp_path):
    """Segment Label is LO (64 characters, no backslash): a dataset's long class name made a
    SEG dciodvfy refused."""
    from segview.core.classes import LabelClass
    from segview.core.dicomseg import read_dicom_seg

    case, paths, _ = written
    classes = list(case.classes)
    classes[1] = LabelClass(classes[1].value, "ground glass opacity and consolidation\\crazy paving, "
                            "peripheral and posterior predominant", classes[1].color)
    volume = load_volume(paths[0].parent)
    seg = save_dicom_seg(tmp_path / "seg.dcm", case.labels, volume, classes)
    errors, warnings = dciodvfy(seg)
    assert errors == [] and warnings == [], (errors, warnings)
    label = pydicom.dcmread(seg).SegmentSequence[0].SegmentLabel
    assert len(label) <= 64 and "\\" not in label and label.startswith("ground glass opacity and consolidation/")
    np.testing.assert_array_equal(read_dicom_seg(seg, volume, classes), case.labels)


# -- 3D Slicer segmentation files ------------------------------------------------------

def test_seg_nrrd_is_read_by_slicerio_with_every_key_slicer_writes(written, tmp_path):
    slicerio = pytest.importorskip("slicerio")
    nrrd = pytest.importorskip("nrrd")
    case, _, _ = written
    path = save_labels(tmp_path / "labels.seg.nrrd", case.labels, case.volume, case.classes)
    segmentation = slicerio.read_segmentation(str(path))
    assert segmentation["masterRepresentation"] == "Binary labelmap"
    assert segmentation["containedRepresentationNames"] == ["Binary labelmap"]
    assert segmentation["referenceImageExtentOffset"] == [0, 0, 0]
    z, y, x = case.labels.shape
    foreground = [c for c in case.classes if c.value != 0]
    assert len(segmentation["segments"]) == len(foreground)
    for segment, c in zip(segmentation["segments"], foreground, strict=True):
        assert (segment["name"], segment["labelValue"], segment["layer"]) == (c.name, c.value, 0)
        assert segment["extent"] == [0, x - 1, 0, y - 1, 0, z - 1]
        np.testing.assert_allclose(np.array(segment["color"]) * 255, c.color, atol=0.01)
        (code, meaning), type_code = EXPECTED_CODES[c.name]
        assert segment["terminology"]["category"] == ["SCT", code, meaning]
        assert segment["terminology"]["type"][:2] == ["SCT", type_code]
        mask = slicerio.extract_segments(segmentation, [(c.name, 1)])["voxels"]
        assert int(mask.sum()) == int((case.labels == c.value).sum())
    header = nrrd.read_header(str(path))
    for key in ("Segment0_Extent", "Segment0_Tags", "Segmentation_MasterRepresentation",
                "Segmentation_ContainedRepresentationNames", "Segmentation_ReferenceImageExtentOffset"):
        assert key in header


def test_load_classes_reads_a_segmentation_written_by_3d_slicer():
    slicerio = pytest.importorskip("slicerio")
    path = Path(slicerio.__file__).parent / "data" / "Segmentation.seg.nrrd"  # written by 3D Slicer
    expected = slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]
    classes = load_classes(path)
    assert [(c.value, c.name) for c in classes] == [(s["labelValue"], s["name"]) for s in expected]
    for c, s in zip(classes, expected, strict=True):
        np.testing.assert_allclose(c.color, np.array(s["color"]) * 255, atol=0.5)
