"""distance_mm against SimpleITK's TransformIndexToPhysicalPoint on oblique, anisotropic
grids; region_statistics against numpy and SimpleITK's LabelStatisticsImageFilter."""
import math

import numpy as np
import pytest
import SimpleITK as sitk

from segview.core.measures import distance_mm, region_statistics
from segview.core.volume import Volume


def _oblique_direction(seed: int) -> tuple[float, ...]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return tuple(q.ravel())


def _sitk_distance(image: sitk.Image, a_zyx, b_zyx) -> float:
    # SimpleITK indexes (x, y, z): reverse the numpy order.
    pa = image.TransformIndexToPhysicalPoint([int(v) for v in a_zyx[::-1]])
    pb = image.TransformIndexToPhysicalPoint([int(v) for v in b_zyx[::-1]])
    return math.dist(pa, pb)


@pytest.mark.parametrize("seed", range(6))
def test_distance_equals_simpleitk_on_oblique_anisotropic_grids(seed):
    rng = np.random.default_rng(seed)
    volume = Volume(np.zeros((12, 20, 30), np.int16), spacing=tuple(rng.uniform(0.3, 8.0, 3)),
                    origin=tuple(rng.uniform(-200, 200, 3)), direction=_oblique_direction(seed))
    image = volume.to_sitk()
    for _ in range(5):
        a = tuple(int(v) for v in rng.integers(0, volume.shape))
        b = tuple(int(v) for v in rng.integers(0, volume.shape))
        assert distance_mm(volume, a, b) == pytest.approx(_sitk_distance(image, a, b), abs=1e-9)


def test_distance_along_one_axis_is_its_spacing_whatever_the_direction():
    volume = Volume(np.zeros((5, 5, 5)), spacing=(0.5, 0.8, 6.0), direction=_oblique_direction(7))
    assert distance_mm(volume, (0, 0, 0), (3, 0, 0)) == pytest.approx(18.0)  # 3 slices of 6 mm
    assert distance_mm(volume, (0, 0, 0), (0, 0, 4)) == pytest.approx(2.0)
    assert distance_mm(volume, (1, 2, 3), (1, 2, 3)) == 0.0


def test_distance_takes_points_between_voxel_centres():
    volume = Volume(np.zeros((5, 5, 5)), spacing=(2.0, 2.0, 2.0))
    assert distance_mm(volume, (0, 0, 0.5), (0, 1.5, 0.5)) == pytest.approx(3.0)


def _sitk_statistics(image: np.ndarray, mask: np.ndarray):
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(sitk.GetImageFromArray(image), sitk.GetImageFromArray(mask.astype(np.uint8)))
    return statistics


@pytest.mark.parametrize("seed", range(4))
def test_region_statistics_equal_numpy_and_simpleitk(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(-1024, 1500, (6, 17, 19)).astype(np.int16)
    mask = rng.random(image.shape) < 0.3
    spacing = (0.7, 0.9, 5.0)
    stats = region_statistics(image, mask, spacing)
    values = image[mask].astype(float)
    reference = _sitk_statistics(image, mask)
    assert stats.voxels == reference.GetCount(1) == mask.sum()
    assert stats.volume_ml == pytest.approx(mask.sum() * 0.7 * 0.9 * 5.0 / 1000)
    assert stats.mean == pytest.approx(reference.GetMean(1))
    assert stats.std == pytest.approx(reference.GetSigma(1))
    assert stats.std == pytest.approx(np.std(values, ddof=1))
    assert stats.min == reference.GetMinimum(1) == values.min()
    assert stats.max == reference.GetMaximum(1) == values.max()
    assert stats.median == np.median(values)  # SimpleITK's median is a histogram's estimate


def test_region_statistics_of_one_slice_keep_the_slice_thickness():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    mask = image >= 8
    stats = region_statistics(image, mask, (1.0, 1.0, 5.0))
    assert (stats.voxels, stats.volume_ml, stats.mean, stats.median, stats.min, stats.max) == (
        4, pytest.approx(0.02), 9.5, 9.5, 8.0, 11.0)


def test_region_statistics_of_one_voxel_have_no_spread():
    stats = region_statistics(np.array([[5.0, 7.0]]), np.array([[False, True]]), (1.0, 1.0, 1.0))
    assert (stats.voxels, stats.mean, stats.std) == (1, 7.0, 0.0)
    assert _sitk_statistics(np.array([[[5.0, 7.0]]]), np.array([[[False, True]]])).GetSigma(1) == 0.0


def test_region_statistics_of_an_empty_region():
    image = np.ones((2, 3, 4), np.int16)
    stats = region_statistics(image, np.zeros(image.shape, bool), (1.0, 1.0, 1.0))
    assert stats.voxels == 0 and stats.volume_ml == 0.0
    assert all(math.isnan(getattr(stats, name)) for name in ("mean", "std", "median", "min", "max"))
    assert not _sitk_statistics(image, np.zeros(image.shape, bool)).HasLabel(1)


def test_region_statistics_refuse_a_region_of_another_shape():
    with pytest.raises(ValueError, match="differ in shape"):
        region_statistics(np.zeros((2, 3)), np.zeros((3, 2), bool), (1.0, 1.0, 1.0))


def test_region_statistics_read_by_name_as_a_dict():
    stats = region_statistics(np.arange(8.0).reshape(2, 2, 2), np.ones((2, 2, 2), bool), (1.0, 2.0, 0.5))
    as_dict = dict(stats)
    assert list(as_dict) == ["voxels", "volume_ml", "mean", "std", "median", "min", "max"]
    assert as_dict["voxels"] == stats["voxels"] == 8 and stats["volume_ml"] == pytest.approx(8 * 1.0 / 1000)
    assert stats["mean"] == stats.mean == 3.5 and stats["max"] == 7.0
    with pytest.raises(KeyError):
        stats["sum"]
