"""Boundary scores over the reviewed slices (``reviewed_surface_scores``): each run of
consecutive reviewed slices is scored as a block whose cut ends are no surface, the
distances and areas pooled over the runs. Expected values come from medpy and DeepMind's
surface-distance, on cases whose answer is known (a prism through the cuts scores as its
slice in 2D; objects inside the runs score as medpy on each run), and from scipy's
erosion and distance transform applied run by run."""
import itertools
import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage
from surface_distance import lookup_tables as deepmind_tables
from surface_distance import metrics as deepmind

from segview.core.metrics import reviewed_surface_scores

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # surface-distance's old scipy names

# medpy's directed distances from the surface voxels of one mask to the other's surface.
medpy_directed = vars(medpy_binary)["__surface_distances"]


def _reviewed(n: int, *runs: tuple[int, int]) -> np.ndarray:
    out = np.zeros(n, bool)
    for start, stop in runs:
        out[start:stop] = True
    return out


def _runs(reviewed) -> list[tuple[int, int]]:
    """(start, stop) of each run of consecutive reviewed slices."""
    out, z = [], 0
    for flag, group in itertools.groupby(reviewed):
        n = len(list(group))
        if flag:
            out.append((z, z + n))
        z += n
    return out


def _pooled(a_to_b, b_to_a) -> dict[str, float]:
    pooled = np.concatenate([np.concatenate(a_to_b), np.concatenate(b_to_a)])
    return {"hd": pooled.max(), "hd95": np.percentile(pooled, 95), "assd": pooled.mean()}


def _deepmind_pooled(results: list[dict], tolerance: float) -> float:
    """Surface Dice of several surface-distance results pooled: areas within tolerance over
    all areas, both directions, all parts."""
    within = total = 0.0
    for r in results:
        for d, a in (("distances_gt_to_pred", "surfel_areas_gt"), ("distances_pred_to_gt", "surfel_areas_pred")):
            within += r[a][r[d] <= tolerance].sum()
            total += r[a].sum()
    return within / total


# -- answers known from medpy and surface-distance ----------------------------------------

def _prism(shape, rows, columns) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[:, rows[0]:rows[1], columns[0]:columns[1]] = 1
    return out


PRISMS = [  # (reference rows, columns), (prediction rows, columns), reviewed runs, spacing (x, y, z) mm
    (((4, 14), (5, 17)), ((6, 14), (5, 20)), [(2, 6), (9, 13)], (0.8, 1.1, 3.0)),
    (((3, 15), (3, 15)), ((3, 9), (3, 15)), [(3, 4), (6, 12)], (1.0, 1.0, 0.5)),  # thin slices
    (((5, 12), (2, 18)), ((2, 16), (4, 13)), [(1, 2), (4, 5), (7, 8), (10, 14)], (0.6, 0.9, 5.0)),
]


@pytest.mark.parametrize("ref_box, pred_box, runs, spacing", PRISMS)
def test_a_prism_through_the_cuts_scores_as_its_slice_in_2d(ref_box, pred_box, runs, spacing):
    # Both masks run through every slice; the runs end inside the image. Without cut
    # faces each reviewed slice has the same contours, and the nearest point of the other
    # surface is in the same slice: every reviewed slice adds its 2D distances once, and
    # surface Dice is the slice's. (Emptying the unreviewed slices instead would make each
    # cut a face, and a wrong one.)
    shape = (16, 20, 22)
    ref, pred = _prism(shape, *ref_box), _prism(shape, *pred_box)
    reviewed = _reviewed(shape[0], *runs)
    pred[~reviewed] = np.roll(pred[~reviewed], 5, axis=2)  # what unreviewed slices hold counts for nothing
    tolerance = 1.5
    scores = reviewed_surface_scores(pred, ref, reviewed, 2, spacing, tolerance)

    in_plane = spacing[1::-1]  # (y, x)
    p, r = pred[runs[0][0]] == 1, ref[runs[0][0]] == 1
    one_slice = np.concatenate([medpy_directed(p, r, in_plane), medpy_directed(r, p, in_plane)])
    every_slice = np.tile(one_slice, int(reviewed.sum()))
    assert scores.hausdorff95[1] == pytest.approx(np.percentile(every_slice, 95), rel=1e-12)
    assert scores.average_surface_distance[1] == pytest.approx(medpy_binary.assd(p, r, in_plane), rel=1e-12)
    assert scores.hausdorff[1] == pytest.approx(medpy_binary.hd(p, r, in_plane), rel=1e-12)
    expected_nsd = deepmind.compute_surface_dice_at_tolerance(
        deepmind.compute_surface_distances(r, p, in_plane), tolerance)
    assert scores.surface_dice[1] == pytest.approx(expected_nsd, rel=1e-12)

    emptied_pred, emptied_ref = np.where(reviewed[:, None, None], pred, 0), np.where(reviewed[:, None, None], ref, 0)
    assert medpy_binary.assd(emptied_pred, emptied_ref, spacing[::-1]) != pytest.approx(
        scores.average_surface_distance[1]), "the case does not tell the rules apart"


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.indices(shape, float)
    return (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1).astype(np.uint8)


def test_objects_inside_the_runs_score_as_medpy_on_each_run_pooled():
    # Each run holds whole objects (empty slices at its ends), so its cuts touch nothing and
    # medpy and surface-distance on the run itself give its distances and areas; the runs
    # lie far apart, so no nearest point is in another run. Pooled, not averaged.
    shape, spacing = (30, 24, 24), (0.9, 0.9, 4.0)
    ref, pred = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    ref[2:9] = _ellipsoid((7, 24, 24), (3, 11, 12), (2.6, 7, 6))
    pred[2:9] = _ellipsoid((7, 24, 24), (3.3, 12, 11), (2.2, 6, 7))
    ref[20:28] = _ellipsoid((8, 24, 24), (4, 12, 12), (3, 4, 4))
    pred[20:28] = _ellipsoid((8, 24, 24), (3.5, 13, 10), (3.4, 5, 3))
    runs = [(1, 10), (19, 29)]
    reviewed = _reviewed(shape[0], *runs)
    ref[12:16, 4:20, 4:20] = 1  # an object no one has reviewed: left out
    tolerance = 2.0
    scores = reviewed_surface_scores(pred, ref, reviewed, 2, spacing, tolerance)

    array_spacing = spacing[::-1]
    blocks = [(pred[a:b] == 1, ref[a:b] == 1) for a, b in runs]
    expected = _pooled([medpy_directed(p, r, array_spacing) for p, r in blocks],
                       [medpy_directed(r, p, array_spacing) for p, r in blocks])
    assert scores.hausdorff[1] == pytest.approx(expected["hd"], rel=1e-12)
    assert scores.hausdorff95[1] == pytest.approx(expected["hd95"], rel=1e-12)
    assert scores.average_surface_distance[1] == pytest.approx(expected["assd"], rel=1e-12)
    nsd = _deepmind_pooled([deepmind.compute_surface_distances(r, p, array_spacing) for p, r in blocks], tolerance)
    assert scores.surface_dice[1] == pytest.approx(nsd, rel=1e-12)
    # ... which is not the mean of the runs' own figures.
    per_run = [medpy_binary.hd95(p, r, array_spacing) for p, r in blocks]
    assert scores.hausdorff95[1] != pytest.approx(np.mean(per_run))


@pytest.mark.parametrize("z", [3, 7])
def test_one_reviewed_slice_inside_the_image_scores_as_its_2d_contours(z):
    rng = np.random.default_rng(z)
    shape, spacing = (10, 30, 28), (0.7, 1.2, 2.5)
    ref, pred = _random_labels(rng, shape, 3), _random_labels(rng, shape, 3)
    scores = reviewed_surface_scores(pred, ref, _reviewed(shape[0], (z, z + 1)), 3, spacing, 1.0)
    in_plane = spacing[1::-1]
    for c in (1, 2):
        p, r = pred[z] == c, ref[z] == c
        assert scores.hausdorff95[c] == pytest.approx(medpy_binary.hd95(p, r, in_plane), rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(medpy_binary.assd(p, r, in_plane), rel=1e-12)
        expected = deepmind.compute_surface_dice_at_tolerance(deepmind.compute_surface_distances(r, p, in_plane),
                                                              1.0)
        assert scores.surface_dice[c] == pytest.approx(expected, rel=1e-12)


def test_every_slice_reviewed_scores_as_medpy_and_surface_distance_on_the_volume():
    rng = np.random.default_rng(5)
    shape, spacing = (12, 20, 18), (0.7, 0.9, 3.0)
    ref, pred = _random_labels(rng, shape, 3), _random_labels(rng, shape, 3)
    scores = reviewed_surface_scores(pred, ref, np.ones(shape[0], bool), 3, spacing, 2.0)
    for c in (1, 2):
        p, r = pred == c, ref == c
        assert scores.hausdorff95[c] == pytest.approx(medpy_binary.hd95(p, r, spacing[::-1]), rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(medpy_binary.assd(p, r, spacing[::-1]),
                                                                   rel=1e-12)
        expected = deepmind.compute_surface_dice_at_tolerance(
            deepmind.compute_surface_distances(r, p, spacing[::-1]), 2.0)
        assert scores.surface_dice[c] == pytest.approx(expected, rel=1e-12)


# -- any shapes: scipy's erosion and distance transform, run by run ------------------------

def _random_labels(rng, shape, num_classes):
    """Blobby multi-class labels (smoothed noise), touching the array's edges too."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 1.2)
    labels = np.digitize(noise, np.quantile(noise, np.linspace(0, 1, num_classes + 1)[1:-1] + 0.15))
    return np.clip(labels, 0, num_classes - 1).astype(np.uint8)


def _with_copies(mask: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, int]:
    """The run's slices with a copy of its end slice beyond each cut (an unreviewed
    neighbour; the image's edge gets none), and where the run starts in it."""
    before, after = int(start > 0), int(stop < len(mask))
    run = mask[start:stop]
    return np.concatenate([run[:1]] * before + [run] + [run[-1:]] * after), before


def _reference_voxel_distances(pred, ref, reviewed, array_spacing):
    """medpy's surface (the mask minus its erosion, scipy) of each run with copies beyond
    its cuts, the copies dropped; distances by scipy's distance transform in the volume."""
    borders = []
    for mask in (pred, ref):
        border = np.zeros_like(mask)
        for start, stop in _runs(reviewed):
            padded, at = _with_copies(mask, start, stop)
            eroded = ndimage.binary_erosion(padded, ndimage.generate_binary_structure(3, 1))
            border[start:stop] = (padded ^ eroded)[at:at + stop - start]
        borders.append(border)
    to_ref = ndimage.distance_transform_edt(~borders[1], sampling=array_spacing)[borders[0]]
    to_pred = ndimage.distance_transform_edt(~borders[0], sampling=array_spacing)[borders[1]]
    return to_ref, to_pred


def _reference_surface_dice(pred, ref, reviewed, array_spacing, tolerance):
    """surface-distance's neighbour codes (its kernel, scipy's correlate) of each run with
    copies beyond its cuts, put on the volume's grid of corners; a plane of corners between
    a run and its copy weighs half (half of it lies in the run); distances by scipy."""
    grids = []
    for mask in (pred, ref):
        codes = np.zeros((len(mask) + 1,) + tuple(s + 1 for s in mask.shape[1:]), np.uint8)
        weights = np.zeros(len(mask) + 1)
        for start, stop in _runs(reviewed):
            padded, at = _with_copies(mask, start, stop)
            padded = np.pad(padded.astype(np.uint8), ((0, 1), (0, 1), (0, 1)))
            run_codes = ndimage.correlate(padded, deepmind_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL,
                                          mode="constant", cval=0)
            # Plane i of run_codes lies between padded slices i - 1 and i.
            codes[start:stop + 1] = run_codes[at:at + stop - start + 1]
            weights[start:stop + 1] = 1.0
            weights[start] = 0.5 if start > 0 else 1.0
            weights[stop] = 0.5 if stop < len(mask) else 1.0
        grids.append((codes, weights))
    table = deepmind_tables.create_table_neighbour_code_to_surface_area(array_spacing)
    (pred_codes, pred_weights), (ref_codes, ref_weights) = grids
    pred_border = (pred_codes != 0) & (pred_codes != 255)
    ref_border = (ref_codes != 0) & (ref_codes != 255)
    pred_areas = (table[pred_codes] * pred_weights[:, None, None])[pred_border]
    ref_areas = (table[ref_codes] * ref_weights[:, None, None])[ref_border]
    to_ref = ndimage.distance_transform_edt(~ref_border, sampling=array_spacing)[pred_border]
    to_pred = ndimage.distance_transform_edt(~pred_border, sampling=array_spacing)[ref_border]
    within = pred_areas[to_ref <= tolerance].sum() + ref_areas[to_pred <= tolerance].sum()
    return within / (pred_areas.sum() + ref_areas.sum())


RUN_CASES = [  # (seed, shape (z, y, x), spacing (x, y, z) mm, reviewed runs)
    (0, (14, 20, 18), (0.7, 0.7, 5.0), [(2, 6), (9, 12)]),
    (1, (12, 22, 20), (1.2, 1.0, 2.0), [(0, 3), (7, 12)]),         # runs at both edges of the image
    (2, (16, 16, 16), (1.0, 1.0, 1.0), [(0, 1), (4, 5), (8, 15)]),  # one slice at the image's edge
    (3, (10, 18, 15), (0.35, 2.2, 1.3), [(1, 4), (5, 9)]),         # a gap of one slice
    (4, (9, 24, 24), (1.5, 1.2, 10.0), [(0, 4), (5, 9)]),          # all but one slice
]


@pytest.mark.parametrize("seed, shape, spacing, runs", RUN_CASES)
def test_runs_score_as_scipy_run_by_run_with_the_cut_faces_left_out(seed, shape, spacing, runs):
    rng = np.random.default_rng(seed)
    ref, pred = _random_labels(rng, shape, 3), _random_labels(rng, shape, 3)
    reviewed = _reviewed(shape[0], *runs)
    scores = reviewed_surface_scores(pred, ref, reviewed, 3, spacing, 1.5)
    array_spacing = spacing[::-1]
    for c in (1, 2):
        p, r = pred == c, ref == c
        p[~reviewed], r[~reviewed] = False, False
        expected = _pooled(*([d] for d in _reference_voxel_distances(p, r, reviewed, array_spacing)))
        assert scores.hausdorff[c] == pytest.approx(expected["hd"], rel=1e-12)
        assert scores.hausdorff95[c] == pytest.approx(expected["hd95"], rel=1e-12)
        assert scores.average_surface_distance[c] == pytest.approx(expected["assd"], rel=1e-12)
        assert scores.surface_dice[c] == pytest.approx(
            _reference_surface_dice(p, r, reviewed, array_spacing, 1.5), rel=1e-12)


# -- what has no score ------------------------------------------------------------------

def test_classes_absent_present_in_one_and_no_reviewed_slice():
    shape = (10, 8, 8)
    ref, pred = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    reviewed = _reviewed(shape[0], (2, 5))
    ref[3, 2:5, 2:5] = 1                    # class 1: in the labels only
    pred[3, 2:5, 2:5] = 2                   # class 2: predicted only
    ref[7, 2:5, 2:5] = pred[7, 2:5, 2:5] = 3  # class 3: only on an unreviewed slice
    scores = reviewed_surface_scores(pred, ref, reviewed, 5, (1.0, 1.0, 2.0))
    for c in (1, 2):
        assert scores.hausdorff95[c] == math.inf and scores.average_surface_distance[c] == math.inf
        assert scores.surface_dice[c] == 0.0
    for c in (0, 3, 4):  # background; only where nobody reviewed; nowhere
        assert np.isnan(scores.hausdorff95[c]) and np.isnan(scores.surface_dice[c])
    none = reviewed_surface_scores(pred, ref, np.zeros(shape[0], bool), 5, (1.0, 1.0, 2.0))
    for field in ("hausdorff", "hausdorff95", "average_surface_distance", "surface_dice"):
        assert np.isnan(getattr(none, field)).all()
    assert math.isnan(none.mean_hausdorff95)


@pytest.mark.parametrize("reviewed", [np.ones(9, bool), np.ones(10, int), np.ones((10, 1), bool)])
def test_reviewed_must_be_one_flag_per_slice(reviewed):
    labels = np.zeros((10, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="one bool per slice"):
        reviewed_surface_scores(labels, labels, reviewed, 2, (1.0, 1.0, 1.0))
