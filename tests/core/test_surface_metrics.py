"""Surface metrics (HD, HD95, ASSD, surface Dice) against cases worked by hand, medpy and
DeepMind's surface-distance package, on anisotropic voxels."""
import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage
from surface_distance import lookup_tables as deepmind_tables
from surface_distance import metrics as deepmind

from segview.core.metrics import (
    _surfel_area_table,
    average_surface_distance,
    hausdorff95,
    slice_surface_scores,
    surface_dice,
    surface_scores,
    surface_scores_along_slices,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface-distance's old scipy names


def _box(shape, z, y, x) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = 1
    return labels


# -- worked by hand ---------------------------------------------------------------------

def test_two_single_voxels_are_as_far_apart_as_their_centres_in_mm():
    spacing = (0.5, 2.0, 3.0)  # x, y, z
    pred, ref = np.zeros((6, 5, 9), np.uint8), np.zeros((6, 5, 9), np.uint8)
    pred[1, 2, 3] = 1
    ref[4, 2, 7] = 1
    expected = math.hypot(3 * 3.0, 4 * 0.5)  # 3 slices of 3 mm, 4 columns of 0.5 mm
    assert hausdorff95(pred, ref, 2, spacing)[1] == pytest.approx(expected)
    assert average_surface_distance(pred, ref, 2, spacing)[1] == pytest.approx(expected)
    assert surface_dice(pred, ref, 2, spacing, tolerance_mm=expected - 0.5)[1] < 1


@pytest.mark.parametrize("axis, step_mm", [(2, 0.7), (1, 1.1), (0, 2.5)])
def test_a_cube_shifted_by_k_voxels_is_k_voxel_sizes_away_at_most(axis, step_mm):
    # Every surface voxel of one cube is at most k steps from the other's surface: the
    # face that leads is exactly that far, the faces alongside are closer.
    spacing = (0.7, 1.1, 2.5)
    k = 3
    ref = _box((20, 20, 20), (4, 12), (4, 12), (4, 12))
    pred = np.roll(ref, k, axis=axis)
    scores = surface_scores(pred, ref, 2, spacing, tolerance_mm=k * step_mm)
    assert scores.hausdorff[1] == pytest.approx(k * step_mm)
    assert scores.surface_dice[1] == pytest.approx(1.0)


def test_surface_dice_of_a_shifted_square_leaves_out_its_vertical_edges():
    # Squares of n x n pixels, B shifted k columns right, tolerance just under k columns.
    # Contour on the pixel corners: straight pieces of one pixel side, a diagonal cut of
    # half a pixel at each corner. Too far from the other contour: A's left edge and B's
    # right edge (corner cuts included), and the inner parts of A's right and B's left
    # edge, which run k columns inside the other square (their corner cuts lie on the
    # other's top and bottom edges, so they count).
    n, k = 6, 2
    sx, sy = 0.8, 1.9  # rows are further apart than k columns: the top edges are not nearer
    ref = np.zeros((10, 14), np.uint8)
    ref[2:2 + n, 1:1 + n] = 1
    pred = np.roll(ref, k, axis=1)
    corner = 0.5 * math.hypot(sx, sy)
    perimeter = 2 * (n - 1) * (sx + sy) + 4 * corner
    too_far = 2 * ((n - 1) * sy + 2 * corner) + 2 * (n - 1) * sy
    below = surface_dice(pred, ref, 2, (sx, sy), tolerance_mm=k * sx - 1e-6)[1]
    assert below == pytest.approx(1 - too_far / (2 * perimeter))
    assert surface_dice(pred, ref, 2, (sx, sy), tolerance_mm=k * sx)[1] == pytest.approx(1.0)


def test_identical_masks_score_zero_distance_and_full_surface_dice():
    ref = _box((8, 9, 10), (2, 6), (1, 5), (3, 9))
    scores = surface_scores(ref, ref, 2, (0.6, 0.6, 3.0), tolerance_mm=0.0)
    assert scores.hausdorff95[1] == 0.0 and scores.average_surface_distance[1] == 0.0
    assert scores.surface_dice[1] == 1.0


def test_background_and_absent_classes_follow_the_documented_values():
    ref = _box((6, 6, 6), (1, 3), (1, 3), (1, 3))
    pred = np.where(ref == 1, 2, 0).astype(np.uint8)  # class 1 missed, class 2 invented
    scores = surface_scores(pred, ref, 4, (1.0, 1.0, 1.0), tolerance_mm=1.0)
    assert np.isnan(scores.hausdorff95[0]) and np.isnan(scores.surface_dice[0])  # background
    for c in (1, 2):  # present in one only
        assert scores.hausdorff95[c] == math.inf
        assert scores.average_surface_distance[c] == math.inf
        assert scores.surface_dice[c] == 0.0
    assert np.isnan(scores.hausdorff95[3]) and np.isnan(scores.surface_dice[3])  # in neither
    # Parts switched off stay NaN, missed class or not.
    assert np.isnan(surface_scores(pred, ref, 4, (1.0, 1.0, 1.0), distances=False).hausdorff95).all()
    assert np.isnan(surface_scores(pred, ref, 4, (1.0, 1.0, 1.0), surface_dice=False).surface_dice).all()


@pytest.mark.parametrize("call, message", [
    (lambda p: hausdorff95(p, p, 2, (1.0, 1.0)), "spacing"),
    (lambda p: hausdorff95(p, p, 2, (1.0, -1.0, 1.0)), "spacing"),
    (lambda p: surface_dice(p, p, 2, (1.0, 1.0, 1.0), -0.5), "tolerance"),
    (lambda p: hausdorff95(p, p[:2], 2, (1.0, 1.0, 1.0)), "differ in shape"),
    (lambda p: hausdorff95(p * 3, p, 2, (1.0, 1.0, 1.0)), "holds class 3"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call(_box((4, 4, 4), (1, 2), (1, 2), (1, 2)))


# -- independent references, table-driven -----------------------------------------------

def _random_labels(rng, shape, num_classes):
    """Blobby multi-class labels (smoothed noise), touching the array's edges too."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.2)
    labels = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, num_classes + 1)[1:-1] + 0.15))
    return np.clip(labels, 0, num_classes - 1).astype(np.uint8)


CASES = [  # (seed, shape (z, y, x), spacing (x, y, z) mm, classes)
    (0, (14, 20, 18), (0.7, 0.7, 5.0), 3),
    (1, (9, 24, 24), (1.5, 1.2, 10.0), 4),
    (2, (16, 16, 16), (1.0, 1.0, 1.0), 2),
    (3, (20, 12, 15), (0.35, 2.2, 1.3), 3),
    (4, (30, 30, 30), (0.9, 0.9, 2.0), 2),
]


@pytest.mark.parametrize("seed, shape, spacing, num_classes", CASES)
def test_distances_equal_medpy(seed, shape, spacing, num_classes):
    rng = np.random.default_rng(seed)
    ref = _random_labels(rng, shape, num_classes)
    pred = _random_labels(rng, shape, num_classes)
    # A small object far from the rest: the crop must still span both.
    pred[1:3, 1:3, -3:-1] = num_classes - 1
    scores = surface_scores(pred, ref, num_classes, spacing)
    array_spacing = spacing[::-1]
    for c in range(1, num_classes):
        p, r = pred == c, ref == c
        assert scores.hausdorff95[c] == pytest.approx(medpy_binary.hd95(p, r, array_spacing), rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(medpy_binary.assd(p, r, array_spacing),
                                                                   rel=1e-12)
        assert scores.hausdorff[c] == pytest.approx(medpy_binary.hd(p, r, array_spacing), rel=1e-12)


@pytest.mark.parametrize("seed, shape, spacing, num_classes", CASES)
def test_surface_dice_equals_deepmind_surface_distance(seed, shape, spacing, num_classes):
    rng = np.random.default_rng(100 + seed)
    ref = _random_labels(rng, shape, num_classes)
    pred = _random_labels(rng, shape, num_classes)
    for tolerance in (0.0, 1.0, 2.5, 6.0):
        ours = surface_dice(pred, ref, num_classes, spacing, tolerance)
        for c in range(1, num_classes):
            distances = deepmind.compute_surface_distances(ref == c, pred == c, spacing[::-1])
            expected = deepmind.compute_surface_dice_at_tolerance(distances, tolerance)
            assert ours[c] == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_one_slice_in_2d_equals_medpy_and_surface_distance(seed):
    rng = np.random.default_rng(200 + seed)
    shape, spacing = (5, 40, 36), (0.6, 0.9, 6.0)
    ref, pred = _random_labels(rng, shape, 3), _random_labels(rng, shape, 3)
    z = 2
    scores = slice_surface_scores(pred, ref, z, 3, spacing, tolerance_mm=1.2)
    for c in (1, 2):
        p, r = pred[z] == c, ref[z] == c
        assert scores.hausdorff95[c] == pytest.approx(medpy_binary.hd95(p, r, (0.9, 0.6)), rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(medpy_binary.assd(p, r, (0.9, 0.6)),
                                                                   rel=1e-12)
        distances = deepmind.compute_surface_distances(r, p, (0.9, 0.6))
        assert scores.surface_dice[c] == pytest.approx(
            deepmind.compute_surface_dice_at_tolerance(distances, 1.2), rel=1e-12)


def test_a_near_perfect_prediction_of_ten_structures_equals_both_references():
    # Most surface is shared (a one-voxel shift in half the volume): the shared part is
    # 0 mm away; ten classes take the one-pass bounding boxes.
    rng = np.random.default_rng(11)
    noise = ndimage.gaussian_filter(rng.standard_normal((12, 22, 20)), 1.5)
    ref = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, 11)[1:-1])).astype(np.uint8)
    pred = ref.copy()
    pred[:, :, 10:] = ref[:, :, 9:-1]
    spacing = (0.8, 1.1, 3.0)
    scores = surface_scores(pred, ref, 10, spacing, tolerance_mm=0.5)
    for c in range(1, 10):
        p, r = pred == c, ref == c
        assert scores.hausdorff95[c] == pytest.approx(medpy_binary.hd95(p, r, spacing[::-1]), rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(medpy_binary.assd(p, r, spacing[::-1]),
                                                                   rel=1e-12)
        distances = deepmind.compute_surface_distances(r, p, spacing[::-1])
        assert scores.surface_dice[c] == pytest.approx(
            deepmind.compute_surface_dice_at_tolerance(distances, 0.5), rel=1e-12)


def test_scores_along_slices_equal_medpy_slice_by_slice_where_asked():
    rng = np.random.default_rng(300)
    shape, spacing = (6, 30, 28), (0.7, 1.1, 5.0)
    ref, pred = _random_labels(rng, shape, 3), _random_labels(rng, shape, 3)
    chosen = np.zeros(6, bool)
    chosen[[1, 4]] = True
    along = surface_scores_along_slices(pred, ref, 3, spacing, slices=chosen)
    assert along["hausdorff95"].shape == (6, 3) and np.isnan(along["hausdorff95"][~chosen]).all()
    for z in (1, 4):
        for c in (1, 2):
            p, r = pred[z] == c, ref[z] == c
            assert along["hausdorff95"][z, c] == pytest.approx(medpy_binary.hd95(p, r, (1.1, 0.7)), rel=1e-12)
    stopped = surface_scores_along_slices(pred, ref, 3, spacing, should_stop=lambda: True)
    assert np.isnan(stopped["surface_dice"]).all()


def test_per_class_tolerances_apply_to_their_class():
    rng = np.random.default_rng(7)
    ref, pred = _random_labels(rng, (10, 16, 16), 3), _random_labels(rng, (10, 16, 16), 3)
    both = surface_dice(pred, ref, 3, (1.0, 1.0, 2.0), tolerance_mm=[0.0, 1.0, 3.0])
    assert both[1] == surface_dice(pred, ref, 3, (1.0, 1.0, 2.0), 1.0)[1]
    assert both[2] == surface_dice(pred, ref, 3, (1.0, 1.0, 2.0), 3.0)[2]


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 4.9), (3.0, 0.25, 0.9)])
def test_every_neighbourhood_code_has_deepmind_surfel_area(spacing):
    # All 256 (3D) and 16 (2D) corner configurations, several of which random masks rarely hit.
    np.testing.assert_allclose(_surfel_area_table(spacing),
                               deepmind_tables.create_table_neighbour_code_to_surface_area(spacing),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_surfel_area_table(spacing[:2]),
                               deepmind_tables.create_table_neighbour_code_to_contour_length(spacing[:2]),
                               rtol=1e-12, atol=1e-15)


def test_bench_surface_times_both_and_checks_they_agree():
    from segview.bench.surface import bench_surface

    lines = []
    figures = bench_surface(seconds=0.0, echo=lines.append, shape=(30, 40, 40))
    assert len(figures) == 2 and all(f["agrees"] for f in figures.values())
    assert sum("medpy hd95" in line for line in lines) == 2
