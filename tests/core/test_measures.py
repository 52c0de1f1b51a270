"""Clinical measures: volumes against SimpleITK's label statistics and hand counts, cardiac
volumes and mass, lung infection share with the lungs from a class or from the CT."""
import numpy as np
import pytest
import SimpleITK as sitk

from segview.core.classes import named_classes
from segview.core.measures import (
    MYOCARDIAL_DENSITY_G_PER_ML,
    cardiac_measures,
    class_volumes_ml,
    clinical_measures,
    lung_mask_from_ct,
    lung_measures,
)


def test_class_volumes_equal_simpleitk_label_statistics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (7, 11, 13)).astype(np.uint8)
    spacing = (0.7, 1.3, 6.5)  # x, y, z mm
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(image)
    volumes = class_volumes_ml(labels, 5, spacing)
    for c in (1, 2, 3):
        assert volumes[c] == pytest.approx(statistics.GetPhysicalSize(c) / 1000)  # mm³ -> mL
    assert volumes[4] == 0.0


def test_class_volumes_refuse_values_outside_the_classes():
    with pytest.raises(ValueError, match="outside 0 .. 2"):
        class_volumes_ml(np.array([[0, 3]]), 3, (1.0, 1.0))


@pytest.mark.parametrize("names", [["background", "right ventricle", "myocardium", "left ventricle"],
                                   ["background", "RV", "MYO", "LV"]])
def test_cardiac_volumes_and_mass_by_class_name(names):
    labels = np.zeros((10, 20, 20), np.uint8)
    labels[:8, :10, :10] = 3   # LV: 800 voxels
    labels[:5, 10:, :10] = 1   # RV: 500 voxels
    labels[:2, :, 10:] = 2     # myocardium: 400 voxels
    spacing = (1.25, 1.25, 8.0)  # 12.5 mm³ a voxel
    measures = cardiac_measures(labels, named_classes(names), spacing)
    assert measures.lv_blood_ml == pytest.approx(800 * 12.5 / 1000)
    assert measures.rv_blood_ml == pytest.approx(500 * 12.5 / 1000)
    assert measures.myocardial_mass_g == pytest.approx(400 * 12.5 / 1000 * 1.05)
    assert MYOCARDIAL_DENSITY_G_PER_ML == 1.05


def test_cardiac_measures_need_the_three_cardiac_classes():
    assert cardiac_measures(np.zeros((2, 2, 2), np.uint8), named_classes(["background", "liver"]),
                            (1, 1, 1)) is None


def _chest_ct():
    """(HU, infection labels, true lungs, spacing): a body in air, two lungs at -850 HU
    with vessels (40 HU) inside them, a consolidation (0 HU) in the left lung,
    and a gas bubble below the lungs that is not lung."""
    shape, spacing = (20, 96, 96), (1.5, 1.5, 5.0)
    z, y, x = np.mgrid[:shape[0], :shape[1], :shape[2]]
    hu = np.full(shape, -1000.0)
    hu[((y - 48) / 44) ** 2 + ((x - 48) / 46) ** 2 < 1] = 40
    lungs = np.zeros(shape, bool)
    for cx in (28, 68):
        lungs |= (((y - 46) / 30) ** 2 + ((x - cx) / 15) ** 2 < 1) & (z >= 3) & (z < 17)
    hu[lungs] = -850
    vessels = lungs & (((np.abs(y - 40) <= 1) & (np.abs(x - 28) < 9))  # inside each lung, as in a slice
                       | ((np.abs(x - 66) <= 1) & (np.abs(y - 46) < 20)))
    hu[vessels] = 40
    infection = lungs & (np.abs(y - 52) < 6) & (np.abs(x - 24) < 5) & (z >= 8) & (z < 12)
    hu[infection] = 0
    hu[0:2, 80:86, 40:50] = -1000  # bowel gas in the body, below the lungs
    return hu.astype(np.int16), infection.astype(np.uint8), lungs, spacing


def test_lungs_from_the_ct_match_the_drawn_lungs():
    hu, _, lungs, spacing = _chest_ct()
    found = lung_mask_from_ct(hu, spacing)
    assert not found[0:2, 80:86, 40:50].any()  # the gas bubble is not lung
    assert not found[:, :3].any() and not found[:, :, :3].any()  # nor the air around the body
    dice = 2 * (found & lungs).sum() / (found.sum() + lungs.sum())
    assert dice > 0.99
    assert found[lungs & (hu == 40)].all()  # vessels filled back in


def test_infected_share_from_the_ct_or_from_a_lung_class():
    hu, infection, lungs, spacing = _chest_ct()
    classes = named_classes(["background", "infection"])
    voxel_ml = 1.5 * 1.5 * 5.0 / 1000
    measures = lung_measures(infection, classes, spacing, hu)
    assert measures.lung_source == "HU threshold"
    assert measures.infected_ml == pytest.approx(infection.sum() * voxel_ml)
    assert measures.lung_ml == pytest.approx(lungs.sum() * voxel_ml, rel=0.01)
    assert measures.infected_percent == pytest.approx(100 * infection.sum() / lungs.sum(), rel=0.01)

    labelled = np.where(lungs, 1, 0).astype(np.uint8)
    labelled[infection == 1] = 2
    with_lung = named_classes(["background", "lung", "infection"])
    exact = lung_measures(labelled, with_lung, spacing)
    assert exact.lung_source == "lung class"
    assert exact.infected_percent == pytest.approx(100 * infection.sum() / lungs.sum())


def test_lung_measures_need_an_infection_class_and_a_lung_source():
    labels = np.zeros((3, 4, 4), np.uint8)
    assert lung_measures(labels, named_classes(["background", "liver"]), (1, 1, 1)) is None
    with pytest.raises(ValueError, match="no lung class"):
        lung_measures(labels, named_classes(["background", "infection"]), (1, 1, 1))


def test_clinical_measures_gather_what_applies():
    labels = np.zeros((4, 6, 6), np.uint8)
    labels[1:3, 1:3, 1:3] = 3
    classes = named_classes(["background", "right ventricle", "myocardium", "left ventricle"])
    measures = clinical_measures(labels, classes, (2.0, 2.0, 2.0), prefix="ref_")
    assert measures["ref_volume_left_ventricle_ml"] == pytest.approx(8 * 8 / 1000)
    assert measures["ref_lv_blood_ml"] == measures["ref_volume_left_ventricle_ml"]
    assert measures["ref_myocardial_mass_g"] == 0.0
    assert "ref_lung_ml" not in measures


def test_a_lung_mask_found_once_serves_several_label_maps():
    hu, infection, lungs, spacing = _chest_ct()
    classes = named_classes(["background", "infection"])
    found = lung_mask_from_ct(hu, spacing)
    once = lung_measures(infection, classes, spacing, lung_mask=found)
    assert once == lung_measures(infection, classes, spacing, hu)
    with pytest.raises(ValueError, match="differ in shape"):
        lung_measures(infection, classes, spacing, lung_mask=found[1:])
