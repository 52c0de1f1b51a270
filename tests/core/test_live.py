"""LiveMetrics: exact after edits and streamed slices; reviewed-slice scores by definition."""
import numpy as np

from segview.core.labels import LabelMap
from segview.core.metrics import ConfusionMatrix, dice_per_class, iou_per_class, pixel_error
from segview.core.live import LiveMetrics


def session(seed=0):
    rng = np.random.default_rng(seed)
    labels = LabelMap(np.zeros((6, 30, 40), np.uint8), (1.0, 1.0, 2.0))
    labels.array[:, 5:20, 5:25] = rng.integers(0, 4, (6, 15, 20))
    return rng, labels, LiveMetrics(labels, 4)


def test_matrices_follow_edits_and_streamed_prediction_slices():
    rng, labels, live = session()
    truth = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    live.add_model("A", np.zeros(labels.array.shape, np.uint8), empty=True)
    live.add_model("B", truth.copy())
    for step in range(25):
        z = int(rng.integers(0, 6))
        if step % 3 == 0:
            live.set_prediction_slice("A", z, truth[z])
        elif step % 3 == 1:
            labels.paint(z, rng.uniform(0, 35, (2, 2)), 3.0, int(rng.integers(0, 4)))
        else:
            labels.fill(z, rng.integers(0, 30, 2), int(rng.integers(0, 4)))
        for key in "AB":
            expected = ConfusionMatrix.from_arrays(live.predictions[key], labels.array, 4)
            np.testing.assert_array_equal(live.matrices[key].slice_counts, expected.slice_counts)
            np.testing.assert_array_equal(live.matrices[key].counts, expected.counts)
    # A model added after edits, still empty, starts from the labels as they are now.
    live.add_model("C", np.zeros(labels.array.shape, np.uint8), empty=True)
    expected = ConfusionMatrix.from_arrays(np.zeros(labels.array.shape, np.uint8), labels.array, 4)
    np.testing.assert_array_equal(live.matrices["C"].slice_counts, expected.slice_counts)


def test_volume_scores_cover_the_reviewed_slices_and_slice_scores_one_slice():
    rng, labels, live = session(1)
    prediction = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    live.add_model("A", prediction)
    labels.set_reviewed(1)
    labels.paint(4, [(10, 10)], 4.0, 2)  # editing slice 4 does not mark it reviewed
    labels.set_reviewed(4)
    reviewed = [1, 4]
    scores = live.volume_scores("A")
    np.testing.assert_allclose(scores.dice, dice_per_class(prediction[reviewed], labels.array[reviewed], 4))
    np.testing.assert_allclose(scores.iou, iou_per_class(prediction[reviewed], labels.array[reviewed], 4))
    assert scores.pixel_error == pixel_error(prediction[reviewed], labels.array[reviewed])
    everything = live.volume_scores("A", reviewed_only=False)
    np.testing.assert_allclose(everything.dice, dice_per_class(prediction, labels.array, 4))
    np.testing.assert_allclose(live.slice_scores("A", 3).dice, dice_per_class(prediction[3], labels.array[3], 4))


def test_dice_along_slices_is_the_mean_foreground_dice_with_nan_for_empty_slices():
    labels = LabelMap(np.zeros((3, 10, 10), np.uint8), (1, 1, 1))
    labels.array[0, 2:6, 2:6] = 1   # 16 voxels
    labels.array[1, 2:6, 2:6] = 2
    live = LiveMetrics(labels, 3)
    prediction = np.zeros((3, 10, 10), np.uint8)
    prediction[0, 2:6, 2:4] = 1     # 8 of the 16: Dice 2 * 8 / 24
    prediction[1, 2:6, 2:6] = 2     # perfect
    live.add_model("A", prediction)
    dice = live.dice_along_slices("A")
    np.testing.assert_allclose(dice[:2], [2 * 8 / 24, 1.0])
    assert np.isnan(dice[2])  # nothing in labels or prediction: no score, not 0 or 1


def test_disputed_voxels_are_counted_once_and_follow_streamed_slices():
    rng, labels, live = session(2)
    a = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    live.add_model("A", a)
    live.add_model("B", a.copy())
    np.testing.assert_array_equal(live.disputed_voxels("A", "B"), np.zeros(6))
    new = rng.integers(0, 4, labels.array.shape[1:]).astype(np.uint8)
    live.set_prediction_slice("B", 4, new)
    expected = (live.predictions["A"] != live.predictions["B"]).reshape(6, -1).sum(axis=1)
    np.testing.assert_array_equal(live.disputed_voxels("A", "B"), expected)
    assert expected[4] == np.count_nonzero(a[4] != new) > 0


def test_pending_slices_count_in_no_score():
    # While inference streams, a slice not predicted yet is pending, not background.
    rng, labels, live = session(3)
    truth = labels.array.copy()
    live.add_model("A", np.zeros(labels.array.shape, np.uint8), empty=True)
    for z in range(6):
        labels.set_reviewed(z)
    assert live.slice_scores("A", 2) is None
    assert np.isnan(live.volume_scores("A").mean_dice) and live.volume_scores("A").voxels == 0
    live.set_prediction_slice("A", 2, truth[2])
    live.set_prediction_slice("A", 3, truth[3])
    assert live.volume_scores("A").mean_dice == 1.0  # only the two predicted slices, both right
    assert live.slice_scores("A", 2).mean_dice == 1.0
    dice = live.dice_along_slices("A")
    assert np.isnan(dice[[0, 1, 4, 5]]).all() and (dice[[2, 3]] == 1.0).all()


def _by_hand(prediction: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """(Z, C, C) counts, rows the labels' class, by a loop over the pairs of classes."""
    return np.array([[[np.count_nonzero((labels[z] == r) & (prediction[z] == p)) for p in range(classes)]
                      for r in range(classes)] for z in range(labels.shape[0])])


def test_counts_given_with_a_model_are_used_and_kept_exact_through_edits():
    rng = np.random.default_rng(2)
    labels = LabelMap(rng.integers(0, 3, (6, 30, 40)).astype(np.uint8), (1.0, 1.0, 2.0))
    live = LiveMetrics(labels, 4)
    prediction = rng.integers(0, 3, labels.array.shape).astype(np.uint8)
    known = _by_hand(prediction, labels.array, 3)  # counted for 3 classes: padded to the 4 followed
    live.add_model("A", prediction, counts=known)
    np.testing.assert_array_equal(live.matrices["A"].slice_counts, _by_hand(prediction, labels.array, 4))
    np.testing.assert_array_equal(live.label_histogram(), _by_hand(prediction, labels.array, 4).sum(axis=2))
    labels.paint(2, [(10, 10), (20, 30)], 3.0, 3)
    live.add_model("B", np.zeros(labels.array.shape, np.uint8), empty=True)  # from the histogram kept current
    for key in "AB":
        np.testing.assert_array_equal(live.matrices[key].slice_counts,
                                      _by_hand(live.predictions[key], labels.array, 4))


def test_counts_that_do_not_fit_are_counted_again():
    rng, labels, live = session(3)
    prediction = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    wrong_slices = _by_hand(prediction[:5], labels.array[:5], 4)
    live.add_model("A", prediction, counts=wrong_slices)
    cut = np.zeros((6, 5, 5), np.int64)
    cut[:, 4, 4] = 1  # voxels in a class beyond the 4 followed: cannot be cut away
    live.add_model("B", prediction, counts=cut)
    for key in "AB":
        np.testing.assert_array_equal(live.matrices[key].slice_counts, _by_hand(prediction, labels.array, 4))


def test_a_whole_volume_copy_in_slabs_and_its_undo_keep_counts_and_histograms_exact(monkeypatch):
    import segview.core.labels as labels_module

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 2 * 30 * 40)  # slabs of 2 slices
    rng, labels, live = session(4)
    model = labels.array.copy()
    flat = model.reshape(-1)
    where = rng.choice(flat.size, flat.size // 100, replace=False)
    flat[where] = (flat[where] + 1) % 4  # 1 % of the voxels differ
    live.add_model("A", model)
    live.add_model("B", rng.integers(0, 4, labels.array.shape).astype(np.uint8))
    live.label_histogram()

    def exact():
        for key in "AB":
            expected = ConfusionMatrix.from_arrays(live.predictions[key], labels.array, 4)
            np.testing.assert_array_equal(live.matrices[key].slice_counts, expected.slice_counts)
            np.testing.assert_array_equal(live.matrices[key].counts, expected.counts)
        by_definition = [[np.count_nonzero(plane == c) for c in range(4)] for plane in labels.array]
        np.testing.assert_array_equal(live.label_histogram(), by_definition)

    differing = np.count_nonzero(model != labels.array)
    with labels.step():
        assert labels.copy_from(model) == differing
    exact()
    labels.undo()
    exact()
    labels.redo()
    exact()


def test_a_slice_counted_in_a_worker_is_used_unless_an_edit_came_since():
    rng, labels, live = session(4)
    truth = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    live.add_model("A", np.zeros(labels.array.shape, np.uint8), empty=True)
    fresh = live.count_slice(1, truth[1])
    np.testing.assert_array_equal(fresh.counts, _by_hand(truth[1:2], labels.array[1:2], 4)[0])
    stale = live.count_slice(3, truth[3])
    labels.paint(3, [(10, 10)], 4.0, 2)             # the labels' slice changed after it was counted
    live.set_prediction_slice("A", 1, truth[1], fresh)
    live.set_prediction_slice("A", 3, truth[3], stale)
    expected = ConfusionMatrix.from_arrays(live.predictions["A"], labels.array, 4)
    np.testing.assert_array_equal(live.matrices["A"].slice_counts, expected.slice_counts)
    np.testing.assert_array_equal(live.matrices["A"].counts, expected.counts)


def test_the_scores_of_a_coronal_or_sagittal_plane_follow_edits_in_that_plane():
    rng, labels, live = session(5)
    prediction = rng.integers(0, 4, labels.array.shape).astype(np.uint8)
    live.add_model("A", prediction)
    for axis, index in ((1, 12), (2, 17), (1, 12), (2, 30)):
        labels.paint(index, rng.uniform(0, 25, (3, 2)), 3.0, int(rng.integers(0, 4)), axis=axis)
        plane = (slice(None), index, slice(None)) if axis == 1 else (slice(None), slice(None), index)
        scores = live.plane_scores("A", axis, index)
        np.testing.assert_allclose(scores.dice, dice_per_class(prediction[plane], labels.array[plane], 4))
        np.testing.assert_allclose(scores.iou, iou_per_class(prediction[plane], labels.array[plane], 4))
        assert scores.pixel_error == pixel_error(prediction[plane], labels.array[plane])
    np.testing.assert_allclose(live.plane_scores("A", 0, 3).dice, dice_per_class(prediction[3], labels.array[3], 4))


def test_a_plane_across_a_pending_slice_is_pending():
    _, labels, live = session(6)
    live.add_model("A", np.zeros(labels.array.shape, np.uint8), empty=True)
    for z in range(5):
        live.set_prediction_slice("A", z, labels.array[z])
    assert live.plane_scores("A", 1, 10) is None and live.plane_scores("A", 2, 10) is None
    live.set_prediction_slice("A", 5, labels.array[5])
    assert live.plane_scores("A", 1, 10).mean_dice == 1.0 and live.plane_scores("A", 2, 10).mean_dice == 1.0
