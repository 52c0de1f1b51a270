"""Opening a cached case counts nothing and hashes nothing (issue 24, item 10): each model's
per-slice confusion counts come from the prediction cache, for the labels as saved, and give
the scores of a count by hand; a save refreshes them; labels replaced outside segview are
counted again. No timings here (``segview bench worklist`` measures them)."""
import numpy as np
import pytest

import segview.session.review as review_module
from segview.core.io import load_volume, save_labels
from segview.core.metrics import ConfusionMatrix
from segview.session import Worklist
from segview.session.worklist import checkpoint_digest, labels_stamp

from .conftest import CLASSES, make_dataset


def dice_by_hand(prediction: np.ndarray, labels: np.ndarray, classes: int = 3) -> np.ndarray:
    dice = []
    for c in range(classes):
        p, r = prediction == c, labels == c
        total = np.count_nonzero(p) + np.count_nonzero(r)
        dice.append(2 * np.count_nonzero(p & r) / total if total else np.nan)
    return np.array(dice)


def _refuse(*args, **kwargs):
    raise AssertionError("counted or hashed although the cache knows it")


def assert_scores_by_hand(session) -> None:
    for slot in "AB":
        expected = dice_by_hand(session.prediction(slot), session.labels.array)
        np.testing.assert_allclose(session.scores(slot, reviewed_only=False).dice, expected)
        reviewed = session.reviewed
        if reviewed.any():
            np.testing.assert_allclose(session.scores(slot).dice,
                                       dice_by_hand(session.prediction(slot)[reviewed], session.labels.array[reviewed]))


def test_a_cached_case_opens_with_the_cached_counts_and_they_follow_its_saves(tmp_path, checkpoints, monkeypatch):
    make_dataset(tmp_path / "ds", 1)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())  # predictions and their counts against the saved labels
    for path in checkpoints.values():
        assert worklist.cache.counts(worklist.case("case_000").key, checkpoint_digest(path),
                                     labels_stamp(labels_path)) is not None
    with monkeypatch.context() as patched:
        patched.setattr(ConfusionMatrix, "from_arrays", _refuse)
        patched.setattr(review_module, "image_key", _refuse)
        session = Worklist.open(tmp_path / "ds", checkpoints).session("case_000")
        assert all(m.predicted.all() for m in session.models.values())
        assert_scores_by_hand(session)
        session.labels.paint(2, [(12, 12)], 3.0, 2)
        session.mark_reviewed(2)
        assert_scores_by_hand(session)
        session.save()
        session.close()
        again = Worklist.open(tmp_path / "ds", checkpoints).session("case_000")  # the saved labels' counts
        assert again.labels.array[2, 12, 12] == 2 and again.reviewed[2]
        assert_scores_by_hand(again)
        again.close()
    # Labels written by another program: their stamp changed, so they are counted again.
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz")
    other = np.zeros(volume.shape, np.uint8)
    other[:, 4:14, 4:14] = 1
    save_labels(labels_path, other, volume, CLASSES)
    session = Worklist.open(tmp_path / "ds", checkpoints).session("case_000")
    np.testing.assert_array_equal(session.labels.array, other)
    assert_scores_by_hand(session)
    session.close(discard=True)


def test_a_case_first_opened_without_cached_counts_is_counted_once(tmp_path, checkpoints, monkeypatch):
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    key = worklist.case("case_000").key
    for path in checkpoints.values():  # an older cache: predictions without counts
        worklist.cache._entry(key, checkpoint_digest(path)).with_suffix(".counts.json").unlink()
    session = worklist.session("case_000")  # counts them, and keeps them
    assert_scores_by_hand(session)
    session.close()
    monkeypatch.setattr(ConfusionMatrix, "from_arrays", _refuse)
    session = worklist.session("case_000")
    assert not session.labels.array.any()
    assert_scores_by_hand(session)
    session.close()


def test_restored_edits_are_counted_not_taken_from_the_cache(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 1)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    session = worklist.session("case_000")
    session.labels.paint(1, [(5, 5), (15, 15)], 3.0, 2)
    session.close()  # unsaved: the journal stays
    restored = Worklist.open(tmp_path / "ds", checkpoints).session("case_000", recover=True)
    assert restored.labels.array[1, 5, 5] == 2
    assert_scores_by_hand(restored)
    restored.close(discard=True)


@pytest.mark.parametrize("stored", [2, 4])
def test_counts_of_another_number_of_classes_fit(tmp_path, checkpoints, stored):
    """Counts kept for fewer classes are padded; for more, cut when the extra classes are empty."""
    make_dataset(tmp_path / "ds", 1)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    key = worklist.case("case_000").key
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz")
    labels = np.zeros(volume.shape, np.uint8)
    labels[:, 6:12, 6:12] = 1
    save_labels(labels_path, labels, volume, CLASSES)
    for path in checkpoints.values():
        digest = checkpoint_digest(path)
        prediction = np.minimum(worklist.cache.get(key, digest), 1)  # classes 0 and 1 only
        worklist.cache.put(key, digest, prediction, {"mean_entropy": 0.1})
        counts = ConfusionMatrix.from_arrays(prediction, labels, stored).per_slice
        worklist.cache.put_counts(key, digest, labels_stamp(labels_path), counts)
    session = worklist.session("case_000")
    assert_scores_by_hand(session)
    session.close(discard=True)
