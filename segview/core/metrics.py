"""Dice, IoU and pixel error of a predicted label map against a reference label map.

Everything is computed from a confusion matrix of integer counts, ``counts[r, p]`` = the
number of voxels whose reference class is ``r`` and predicted class is ``p``. For class c:

    TP = counts[c, c]     FP = column sum - TP     FN = row sum - TP
    Dice = 2 TP / (2 TP + FP + FN)      IoU = TP / (TP + FP + FN)
    pixel error of c = (FP + FN) / N    (the paper's (FP + FN) / all pixels, one class vs rest)
    pixel error = (N - trace) / N       (fraction of voxels whose class differs)

Dice and IoU are NaN where prediction and reference are both empty for a class: there is
nothing to score, and neither 0 nor 1 would be honest. Means skip NaN (the UI shows a dash).

``ConfusionMatrix`` keeps those counts for a whole volume and for each of its slices, and is
updated in place when the labels (or a prediction) change inside a region, by counting only
the changed voxels: a brush stroke costs microseconds on a volume of any size, with counts
exactly equal to a full recount.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ConfusionMatrix", "Scores", "confusion_counts", "dice_per_class", "iou_per_class",
           "pixel_error", "scores_from_counts"]


def confusion_counts(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = reference class, columns = predicted.

    ``pred`` and ``ref`` are integer label maps of the same, any, shape. Raises ValueError
    for mismatched shapes or a class value outside 0 .. num_classes - 1."""
    pred, ref = _validated(pred, ref, num_classes)
    return _count(pred, ref, num_classes)


def _validated(pred, ref, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    _check_classes(pred, num_classes, "prediction")
    _check_classes(ref, num_classes, "reference")
    return pred, ref


def _count(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    # One bincount over (ref, pred) pairs; the narrow index dtype halves memory traffic.
    dtype = np.uint8 if num_classes <= 16 else np.int64
    pairs = ref.astype(dtype) * dtype(num_classes) + pred.astype(dtype)
    flat = np.bincount(pairs.ravel(), minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _check_classes(labels: np.ndarray, num_classes: int, what: str) -> None:
    if labels.dtype.kind not in "biu":
        raise ValueError(f"the {what} must be an integer label map, not {labels.dtype}")
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise ValueError(f"the {what} holds class {bad}, outside 0 .. {num_classes - 1}")


@dataclass(frozen=True)
class Scores:
    """Scores of one prediction; arrays are indexed by class (NaN where both are empty)."""

    dice: np.ndarray
    iou: np.ndarray
    pixel_error_per_class: np.ndarray  # (FP + FN) / N of each class against the rest
    pixel_error: float                 # fraction of voxels whose class differs
    voxels: int

    @property
    def mean_dice(self) -> float:
        """Mean Dice over the foreground classes (1 ..), skipping NaN; NaN if none is scored."""
        return _nanmean(self.dice[1:])

    @property
    def mean_iou(self) -> float:
        return _nanmean(self.iou[1:])


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def scores_from_counts(counts: np.ndarray) -> Scores:
    """Scores from a (C, C) confusion matrix, or the last two axes of a (..., C, C) stack
    (then every field has the leading shape)."""
    counts = np.asarray(counts, dtype=np.int64)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)
    fp = counts.sum(axis=-2) - tp
    fn = counts.sum(axis=-1) - tp
    total = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = 2 * tp / (2 * tp + fp + fn)
        iou = tp / (tp + fp + fn)
        error_per_class = (fp + fn) / np.expand_dims(total, -1)
        error = (total - tp.sum(axis=-1)) / total
    return Scores(dice, iou, error_per_class, error if np.ndim(error) else float(error),
                  total if np.ndim(total) else int(total))


def dice_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of each class, shape (num_classes,), NaN where pred and ref both lack the class."""
    return scores_from_counts(confusion_counts(pred, ref, num_classes)).dice


def iou_per_class(pred: np.ndarray, ref: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU (Jaccard) of each class, shape (num_classes,), NaN where both lack the class."""
    return scores_from_counts(confusion_counts(pred, ref, num_classes)).iou


def pixel_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of voxels whose predicted class differs from the reference: (FP + FN) / N
    in the binary case. NaN for empty arrays."""
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    return float(np.count_nonzero(pred != ref) / pred.size) if pred.size else float("nan")


class ConfusionMatrix:
    """Confusion counts of a prediction against a reference, for the whole volume and,
    for 3D label maps (z, y, x), for every slice along z.

    ``counts`` is (C, C) int64 with rows = reference class, columns = predicted class;
    ``slice_counts`` is (Z, C, C) or None for other shapes. Edits update both in place.
    """

    def __init__(self, num_classes: int, num_slices: int | None = None):
        if num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        self.num_classes = num_classes
        self.counts = np.zeros((num_classes, num_classes), np.int64)
        self.slice_counts = (None if num_slices is None
                             else np.zeros((num_slices, num_classes, num_classes), np.int64))

    @classmethod
    def from_arrays(cls, pred: np.ndarray, ref: np.ndarray, num_classes: int) -> ConfusionMatrix:
        """Count ``pred`` against ``ref`` (same shape; 3D arrays also get per-slice counts)."""
        pred, ref = _validated(pred, ref, num_classes)
        matrix = cls(num_classes, pred.shape[0] if pred.ndim == 3 else None)
        if matrix.slice_counts is None:
            matrix.counts = _count(pred, ref, num_classes)
        else:
            for z in range(pred.shape[0]):
                matrix.slice_counts[z] = _count(pred[z], ref[z], num_classes)
            matrix.counts = matrix.slice_counts.sum(axis=0)
        return matrix

    # -- edits ------------------------------------------------------------------------------

    def update_reference(self, region, old_ref: np.ndarray, new_ref: np.ndarray,
                         pred: np.ndarray) -> None:
        """The reference changed inside ``region`` (a tuple of slices or integers indexing
        the full arrays) from ``old_ref`` to ``new_ref``; ``pred`` is the full prediction."""
        self._replace(region, np.asarray(pred)[region], old_ref, new_ref, moved_axis="ref")

    def update_prediction(self, region, old_pred: np.ndarray, new_pred: np.ndarray,
                          ref: np.ndarray) -> None:
        """The prediction changed inside ``region`` (e.g. a slice streamed in from the model);
        ``ref`` is the full reference."""
        self._replace(region, np.asarray(ref)[region], old_pred, new_pred, moved_axis="pred")

    def recount_slice(self, z: int, pred: np.ndarray, ref: np.ndarray) -> None:
        """Slice ``z`` of a 3D map replaced as a whole (a streamed prediction slice):
        one bincount of that slice, cheaper than a diff when most pixels change."""
        pred, ref = _validated(pred, ref, self.num_classes)
        counts = _count(pred, ref, self.num_classes)
        self.counts += counts - self.slice_counts[z]
        self.slice_counts[z] = counts

    def _replace(self, region, fixed, old, new, moved_axis: str) -> None:
        old, new = np.asarray(old), np.asarray(new)
        if not (fixed.shape == old.shape == new.shape):
            raise ValueError(f"region values {old.shape} -> {new.shape} do not fit the region "
                             f"{fixed.shape}")
        _check_classes(new, self.num_classes, "new values")
        changed = old != new
        if not changed.any():
            return
        z_first = self._first_slice(region)
        if self.slice_counts is not None and fixed.ndim == 3:
            # One (C, C) update per slice the region spans; a stroke usually spans one.
            for dz in np.flatnonzero(changed.any(axis=(1, 2))):
                self._apply(z_first + dz, fixed[dz], old[dz], new[dz], changed[dz], moved_axis)
        else:
            self._apply(z_first, fixed, old, new, changed, moved_axis)

    def _apply(self, z, fixed, old, new, changed, moved_axis) -> None:
        fixed, old, new = (a[changed].astype(np.intp) for a in (fixed, old, new))
        c = self.num_classes
        if moved_axis == "ref":
            delta = (np.bincount(new * c + fixed, minlength=c * c)
                     - np.bincount(old * c + fixed, minlength=c * c))
        else:
            delta = (np.bincount(fixed * c + new, minlength=c * c)
                     - np.bincount(fixed * c + old, minlength=c * c))
        delta = delta.reshape(c, c)
        self.counts += delta
        if self.slice_counts is not None:
            if z is None:
                raise ValueError("a 3D matrix needs regions that start with a z index or slice")
            self.slice_counts[z] += delta

    def _first_slice(self, region) -> int | None:
        if self.slice_counts is None:
            return None
        head = region[0] if isinstance(region, tuple) else region
        if isinstance(head, (int, np.integer)):
            return int(head)
        if isinstance(head, slice) and (head.step in (None, 1)):
            return head.indices(len(self.slice_counts))[0]
        raise ValueError("regions must index z with an integer or a contiguous slice")

    # -- scores -----------------------------------------------------------------------------

    def scores(self, slices=None) -> Scores:
        """Scores over the volume, or over the slices selected by ``slices`` (indices or a
        boolean mask over z), e.g. the slices a radiologist has reviewed."""
        if slices is None:
            return scores_from_counts(self.counts)
        if self.slice_counts is None:
            raise ValueError("per-slice scores need a matrix built from a 3D volume")
        return scores_from_counts(self.slice_counts[slices].reshape(-1, self.num_classes,
                                                                    self.num_classes).sum(axis=0))

    def slice_scores(self) -> Scores:
        """Scores of every slice at once: fields have shape (Z, C) or (Z,)."""
        if self.slice_counts is None:
            raise ValueError("per-slice scores need a matrix built from a 3D volume")
        return scores_from_counts(self.slice_counts)

    def copy(self) -> ConfusionMatrix:
        other = ConfusionMatrix(self.num_classes)
        other.counts = self.counts.copy()
        other.slice_counts = None if self.slice_counts is None else self.slice_counts.copy()
        return other
