import numpy as np
import pytest

from segview.core.phantoms import CARDIAC_CLASSES, LUNG_CLASSES, cardiac_phantom, lung_phantom, make_phantom


@pytest.mark.parametrize("task", ["cardiac", "lung"])
def test_deterministic_for_a_seed_and_varied_across_seeds(task):
    a, b, c = make_phantom(task, 5), make_phantom(task, 5), make_phantom(task, 6)
    np.testing.assert_array_equal(a.volume.array, b.volume.array)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.volume.spacing == b.volume.spacing and a.volume.origin == b.volume.origin
    assert a.volume.shape != c.volume.shape or not np.array_equal(a.labels, c.labels)
    assert a.volume.spacing != c.volume.spacing


def test_cardiac_phantom_is_an_acdc_style_short_axis_stack():
    for seed in range(4):
        case = cardiac_phantom(seed)
        v = case.volume
        assert case.classes == CARDIAC_CLASSES and v.modality == "MR"
        assert 8 <= v.shape[0] <= 12
        assert 1.3 <= v.spacing[0] == v.spacing[1] <= 1.7 and 8 <= v.spacing[2] <= 10
        d = v.direction_matrix
        np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-12)
        assert np.linalg.det(d) > 0 and np.abs(d).max() < 0.99  # oblique short axis
        areas = np.stack([(case.labels == c).sum(axis=(1, 2)) for c in (1, 2, 3)])
        assert (areas[:, 0] > 0).all()  # every structure at the base
        # The LV cavity shrinks from base to apex; the RV vanishes before the apex.
        assert areas[2, 0] > 3 * areas[2, -1] and areas[0, -1] < areas[0, 0] / 4
        blood = v.array[case.labels == 3].mean()
        assert blood > 2 * v.array[case.labels == 2].mean()  # bright blood, dark myocardium
        assert v.array.min() >= 0  # magnitude images
        # The myocardium surrounds the LV cavity: no LV pixel touches the background.
        lv = case.labels == 3
        neighbours = np.roll(lv, 1, 1) | np.roll(lv, -1, 1) | np.roll(lv, 1, 2) | np.roll(lv, -1, 2)
        assert not np.any(neighbours & (case.labels == 0))


def test_lung_phantom_is_a_chest_ct_in_hu_with_imbalanced_lesions():
    for seed in range(4):
        case = lung_phantom(seed)
        v = case.volume
        assert case.classes == LUNG_CLASSES and v.modality == "CT" and v.array.dtype == np.int16
        assert v.direction == (1, 0, 0, 0, 1, 0, 0, 0, 1)
        lesion = case.labels == 1
        assert 0 < lesion.mean() < 0.05  # a small class: where Dice loss matters
        assert -700 < np.median(v.array[lesion]) < 50  # ground glass to consolidation
        assert v.array.min() == -1024  # air outside the body
        lung_hu = v.array[(case.labels == 0) & (v.array < -700) & (v.array > -950)]
        assert -900 < np.median(lung_hu) < -780
        assert (v.array > 300).any()  # bone
        assert set(np.unique(case.labels)) == {0, 1}


def test_lung_phantoms_include_small_lesions():
    from SimpleITK import ConnectedComponent, GetArrayFromImage, GetImageFromArray

    sizes = []
    for seed in range(6):
        labels = lung_phantom(seed).labels
        components = GetArrayFromImage(ConnectedComponent(GetImageFromArray(labels)))
        sizes += list(np.bincount(components.ravel())[1:])
    assert min(sizes) < 300 and max(sizes) > 3000


def test_lung_phantom_edge_draws_the_same_lesions_tighter_or_wider():
    """A reader who puts a lesion's edge at 60 % or 40 % of its contrast: the same image,
    labels nested around the 50 % label, none outside the lung's lesions."""
    label = lung_phantom(3)
    tight, wide = lung_phantom(3, 0.6), lung_phantom(3, 0.4)
    assert np.array_equal(tight.volume.array, label.volume.array)
    assert np.array_equal(lung_phantom(3, 0.5).labels, label.labels)
    assert not np.any((tight.labels == 1) & (label.labels == 0))
    assert not np.any((label.labels == 1) & (wide.labels == 0))
    assert (tight.labels == 1).sum() < (label.labels == 1).sum() < (wide.labels == 1).sum()
    # Wider only by the lesions' soft edges: the extra voxels are brighter than the lung around.
    extra = (wide.labels == 1) & (label.labels == 0)
    lung = (label.labels == 0) & (label.volume.array < -700) & (label.volume.array > -950)
    assert np.median(label.volume.array[extra]) > np.median(label.volume.array[lung])
    for edge in (0, 1, -0.5):
        with pytest.raises(ValueError, match="edge"):
            lung_phantom(0, edge)
