"""Metrics against hand-worked cases, medpy and MONAI; incremental updates against recounts."""
import math

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import DiceMetric, MeanIoU

from segview.core.metrics import (ConfusionMatrix, confusion_counts, dice_per_class,
                                  iou_per_class, pixel_error)


# -- hand-worked cases ------------------------------------------------------------------

def test_worked_example_from_the_source_material():
    x = np.array([1, 1, 0, 0])
    y = np.array([1, 0, 1, 0])
    # |X ∩ Y| = 1, |X| = |Y| = 2, |X ∪ Y| = 3
    assert dice_per_class(x, y, 2)[1] == pytest.approx(2 * 1 / (2 + 2))
    assert iou_per_class(x, y, 2)[1] == pytest.approx(1 / 3)
    assert pixel_error(x, y) == pytest.approx(2 / 4)


def test_pixel_error_is_false_positives_plus_false_negatives_over_all_pixels():
    ref = np.array([[0, 1, 1],
                    [0, 1, 1],
                    [0, 0, 0]])
    pred = np.array([[1, 1, 1],   # one false positive at (0, 0)
                     [0, 0, 1],   # one false negative at (1, 1)
                     [0, 0, 0]])
    assert pixel_error(pred, ref) == pytest.approx((1 + 1) / 9)
    assert dice_per_class(pred, ref, 2)[1] == pytest.approx(2 * 3 / (4 + 4))
    assert iou_per_class(pred, ref, 2)[1] == pytest.approx(3 / 5)


def test_class_missing_from_both_is_nan_and_left_out_of_means():
    ref = np.array([0, 1, 1, 0, 0, 0])
    pred = np.array([0, 1, 0, 0, 0, 0])
    dice = dice_per_class(pred, ref, 4)
    assert dice[1] == pytest.approx(2 / 3)
    assert np.isnan(dice[2]) and np.isnan(dice[3])
    scores = ConfusionMatrix.from_arrays(pred, ref, 4).scores()
    assert scores.mean_dice == pytest.approx(2 / 3)
    assert scores.mean_iou == pytest.approx(1 / 2)


def test_class_predicted_but_absent_from_reference_scores_zero():
    ref = np.zeros(5, int)
    pred = np.array([0, 2, 0, 0, 0])
    assert dice_per_class(pred, ref, 3)[2] == 0.0
    assert iou_per_class(pred, ref, 3)[2] == 0.0


def test_nothing_to_score_gives_nan_means():
    scores = ConfusionMatrix.from_arrays(np.zeros(4, int), np.zeros(4, int), 3).scores()
    assert math.isnan(scores.mean_dice) and scores.pixel_error == 0.0


def test_per_class_pixel_error_is_that_class_against_the_rest():
    ref = np.array([0, 1, 2, 2, 0])
    pred = np.array([0, 2, 2, 1, 0])
    scores = ConfusionMatrix.from_arrays(pred, ref, 3).scores()
    assert scores.pixel_error_per_class.tolist() == pytest.approx([0, 2 / 5, 2 / 5])
    assert scores.pixel_error == pytest.approx(2 / 5)


@pytest.mark.parametrize("pred, ref, message", [
    (np.array([0, 3]), np.array([0, 1]), "prediction holds class 3"),
    (np.array([0, 1]), np.array([-1, 1]), "reference holds class -1"),
    (np.array([0, 1]), np.array([0, 1, 1]), "differ in shape"),
    (np.array([0.0, 1.0]), np.array([0, 1]), "integer label map"),
])
def test_bad_input_is_refused(pred, ref, message):
    with pytest.raises(ValueError, match=message):
        confusion_counts(pred, ref, 3)


# -- independent references, table-driven ----------------------------------------------

def _random_case(seed):
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 6))
    shape = tuple(int(s) for s in rng.integers(1, 12, size=int(rng.integers(1, 4))))
    ref = rng.integers(0, num_classes, shape)
    pred = np.where(rng.random(shape) < 0.7, ref, rng.integers(0, num_classes, shape))
    if rng.random() < 0.5:  # a class absent from both
        gone = int(rng.integers(1, num_classes))
        ref[ref == gone] = 0
        pred[pred == gone] = 0
    return pred, ref, num_classes


@pytest.mark.parametrize("seed", range(40))
def test_against_medpy(seed):
    pred, ref, num_classes = _random_case(seed)
    dice, iou = dice_per_class(pred, ref, num_classes), iou_per_class(pred, ref, num_classes)
    for c in range(num_classes):
        p, r = pred == c, ref == c
        if not p.any() and not r.any():
            assert np.isnan(dice[c]) and np.isnan(iou[c])
        else:
            assert dice[c] == pytest.approx(medpy_binary.dc(p, r))
            assert iou[c] == pytest.approx(medpy_binary.jc(p, r))


@pytest.mark.parametrize("seed", range(40))
def test_against_monai(seed):
    pred, ref, num_classes = _random_case(seed)

    def one_hot(labels):  # MONAI wants (B, C, spatial...)
        return torch.nn.functional.one_hot(torch.as_tensor(labels).reshape(1, -1),
                                           num_classes).permute(0, 2, 1).float()

    monai_dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(
        one_hot(pred), one_hot(ref))[0].numpy()
    monai_iou = MeanIoU(include_background=True, reduction="none", ignore_empty=False)(
        one_hot(pred), one_hot(ref))[0].numpy()
    both_empty = np.array([not ((pred == c).any() or (ref == c).any())
                           for c in range(num_classes)])
    dice, iou = dice_per_class(pred, ref, num_classes), iou_per_class(pred, ref, num_classes)
    np.testing.assert_allclose(dice[~both_empty], monai_dice[~both_empty], rtol=1e-6)
    np.testing.assert_allclose(iou[~both_empty], monai_iou[~both_empty], rtol=1e-6)
    assert np.isnan(dice[both_empty]).all()
    binary_error = np.count_nonzero((pred > 0) != (ref > 0)) / pred.size
    if num_classes == 2:
        assert pixel_error(pred, ref) == pytest.approx(binary_error)


def _counts_by_definition(pred, ref, num_classes):
    return np.array([[np.count_nonzero((ref == r) & (pred == p)) for p in range(num_classes)]
                     for r in range(num_classes)])


@pytest.mark.parametrize("seed", range(10))
def test_confusion_counts_by_definition(seed):
    pred, ref, num_classes = _random_case(seed)
    np.testing.assert_array_equal(confusion_counts(pred, ref, num_classes),
                                  _counts_by_definition(pred, ref, num_classes))


# -- incremental updates ----------------------------------------------------------------

def _volume_case(seed, shape=(6, 20, 24), num_classes=4):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, num_classes, shape).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.6, ref, rng.integers(0, num_classes, shape)).astype(np.uint8)
    return rng, pred, ref


def _random_region(rng, shape):
    z0 = int(rng.integers(0, shape[0]))
    z = z0 if rng.random() < 0.5 else slice(z0, int(rng.integers(z0 + 1, shape[0] + 1)))
    y0, x0 = (int(rng.integers(0, s)) for s in shape[1:])
    return (z, slice(y0, int(rng.integers(y0 + 1, shape[1] + 1))),
            slice(x0, int(rng.integers(x0 + 1, shape[2] + 1))))


def _assert_matches_recount(matrix, pred, ref, num_classes):
    np.testing.assert_array_equal(matrix.counts, _counts_by_definition(pred, ref, num_classes))
    for z in range(pred.shape[0]):
        np.testing.assert_array_equal(matrix.slice_counts[z],
                                      _counts_by_definition(pred[z], ref[z], num_classes))


@pytest.mark.parametrize("seed", range(8))
def test_reference_edits_keep_counts_exact(seed):
    rng, pred, ref = _volume_case(seed)
    matrix = ConfusionMatrix.from_arrays(pred, ref, 4)
    _assert_matches_recount(matrix, pred, ref, 4)
    for _ in range(25):
        region = _random_region(rng, ref.shape)
        old = ref[region].copy()
        new = old.copy()
        brush = rng.random(old.shape) < 0.5  # a brush covers part of its bounding box
        new[brush] = rng.integers(0, 4)
        ref[region] = new
        matrix.update_reference(region, old, new, pred)
        _assert_matches_recount(matrix, pred, ref, 4)


@pytest.mark.parametrize("seed", range(4))
def test_prediction_updates_keep_counts_exact(seed):
    rng, pred, ref = _volume_case(seed)
    matrix = ConfusionMatrix.from_arrays(np.zeros_like(pred), ref, 4)
    for z in rng.permutation(pred.shape[0]):  # slices stream in from the model
        old = np.zeros_like(pred[z])
        matrix.update_prediction((int(z), slice(None), slice(None)), old, pred[z], ref)
    _assert_matches_recount(matrix, pred, ref, 4)


def test_edit_of_a_2d_map():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 3, (30, 30))
    pred = rng.integers(0, 3, (30, 30))
    matrix = ConfusionMatrix.from_arrays(pred, ref, 3)
    assert matrix.slice_counts is None
    region = (slice(5, 9), slice(10, 20))
    old = ref[region].copy()
    ref[region] = 2
    matrix.update_reference(region, old, ref[region], pred)
    np.testing.assert_array_equal(matrix.counts, _counts_by_definition(pred, ref, 3))


def test_edit_with_a_class_out_of_range_is_refused_and_changes_nothing():
    _, pred, ref = _volume_case(0)
    matrix = ConfusionMatrix.from_arrays(pred, ref, 4)
    before = matrix.counts.copy()
    region = (0, slice(0, 2), slice(0, 2))
    with pytest.raises(ValueError, match="class 7"):
        matrix.update_reference(region, ref[region], np.full((2, 2), 7, np.uint8), pred)
    np.testing.assert_array_equal(matrix.counts, before)


def test_scores_over_chosen_slices_equal_a_recount_of_those_slices():
    _, pred, ref = _volume_case(3)
    matrix = ConfusionMatrix.from_arrays(pred, ref, 4)
    reviewed = np.array([True, False, True, True, False, False])
    subset = matrix.scores(reviewed)
    np.testing.assert_allclose(subset.dice, dice_per_class(pred[reviewed], ref[reviewed], 4))
    assert subset.voxels == reviewed.sum() * 20 * 24
    per_slice = matrix.slice_scores()
    assert per_slice.dice.shape == (6, 4) and per_slice.pixel_error.shape == (6,)
    for z in range(6):
        np.testing.assert_allclose(per_slice.dice[z], dice_per_class(pred[z], ref[z], 4))
        assert per_slice.pixel_error[z] == pytest.approx(pixel_error(pred[z], ref[z]))


def _counts_by_definition(pred, ref, num_classes):
    """counts[r, p]: voxels whose reference is r and prediction p, one class pair at a time."""
    return np.array([[np.count_nonzero((ref == r) & (pred == p)) for p in range(num_classes)]
                     for r in range(num_classes)])


@pytest.mark.parametrize("shape", [(7, 9, 11), (3, 5), (130,)])
def test_counting_in_slabs_equals_a_whole_volume_count(monkeypatch, shape):
    import segview.core.metrics as metrics_module

    rng = np.random.default_rng(5)
    pred, ref = (rng.integers(0, 20, shape).astype(np.uint8) for _ in range(2))
    whole = _counts_by_definition(pred, ref, 20)
    for voxels in (1, 40, 10 ** 6):  # a slice (or less) per slab, a few slices, all at once
        monkeypatch.setattr(metrics_module, "SLAB_VOXELS", voxels)
        np.testing.assert_array_equal(confusion_counts(pred, ref, 20), whole)
        np.testing.assert_array_equal(confusion_counts(pred[:, ::-1] if pred.ndim > 1 else pred,
                                                       ref[:, ::-1] if ref.ndim > 1 else ref, 20), whole)


def test_counting_only_the_changed_voxels_equals_a_recount():
    rng = np.random.default_rng(6)
    pred, ref = (rng.integers(0, 4, (6, 10, 12)).astype(np.uint8) for _ in range(2))
    matrix = ConfusionMatrix.from_arrays(pred, ref, 4)
    z, y, x = (rng.integers(0, n, 50) for n in ref.shape)
    z, y, x = np.unique(np.stack([z, y, x]), axis=1)  # each voxel once
    new = ref.copy()
    new[z, y, x] = rng.integers(0, 4, len(z))
    matrix.reference_changed(z, ref[z, y, x], new[z, y, x], pred[z, y, x])
    np.testing.assert_array_equal(matrix.counts, _counts_by_definition(pred, new, 4))
    for k in range(6):
        np.testing.assert_array_equal(matrix.per_slice[k], _counts_by_definition(pred[k], new[k], 4))
