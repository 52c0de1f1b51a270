"""Live metrics of each model against the labels being corrected.

``LiveMetrics`` keeps one ``ConfusionMatrix`` per model exact at all times: label edits
arrive from the ``LabelMap`` (only the changed region is counted), prediction slices
arrive as inference streams them. The volume scores default to the reviewed slices: a
slice nobody has checked may still hold a model's own prediction copied into the labels,
which would flatter that model. Slices a model has not predicted yet are pending: they
count in no score of that model (never as background).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .report import csv_cell, write_csv
from .labels import Edit, LabelMap
from .metrics import ConfusionMatrix, Scores, confusion_counts, scores_from_counts


@dataclass(frozen=True)
class SliceCount:
    """A prediction slice's confusion counts (C, C) against the labels, made in a worker by
    ``LiveMetrics.count_slice``; ``stamp``: the label edits ``live`` had heard then."""
    live: LiveMetrics
    stamp: int
    counts: np.ndarray


class LiveMetrics:
    """Build it where a full pass over the labels is affordable (a worker): each slice's
    classes are counted once, when first needed (adding a model with an empty prediction)
    or taken from a model's counts, so adding a model after that is instant."""

    def __init__(self, labels: LabelMap, num_classes: int):
        top = int(labels.array.max()) if labels.array.size else 0
        if top >= num_classes:
            raise ValueError(f"the labels hold class {top}, beyond the {num_classes} classes of the models")
        self.labels, self.num_classes = labels, num_classes
        self.predictions: dict[str, np.ndarray] = {}
        self.predicted: dict[str, np.ndarray] = {}               # (Z,) bool: slices not pending
        self.matrices: dict[str, ConfusionMatrix] = {}
        self._disputed: dict[tuple[str, str], np.ndarray] = {}  # per-slice counts where two models differ
        self._histogram: np.ndarray | None = None  # (Z, C) voxels of each class per slice, when known
        self.edits = 0  # label edits heard: a SliceCount made before the last one is stale
        labels.events.changed.connect(self._labels_changed)

    def grow(self, num_classes: int) -> None:
        """Count at least ``num_classes`` classes (a class value seen for the first time, a
        model with more classes): rare, so everything is recounted once."""
        if num_classes <= self.num_classes:
            return
        self.num_classes = num_classes
        self._histogram = None
        for key, prediction in list(self.predictions.items()):
            self.add_model(key, prediction, predicted=self.predicted[key])

    def add_model(self, key: str, prediction: np.ndarray, empty: bool = False,
                  predicted: np.ndarray | None = None, counts: np.ndarray | None = None) -> None:
        """Follow ``prediction`` (z, y, x) uint8, which inference will fill slice by slice;
        ``empty`` says no slice is predicted yet (all pending; no counting needed);
        ``predicted`` (Z,) bool which slices are, when only some are. ``counts``: the
        prediction's per-slice confusion counts against the labels as they are now, (Z, C, C)
        int (rows the labels' class), when known (the prediction cache keeps them): then
        nothing is counted; counts of another number of classes are fitted when they can be
        (classes beyond those counted hold no voxel), else the prediction is counted."""
        if prediction.shape != self.labels.array.shape:
            raise ValueError(f"prediction {prediction.shape} and labels {self.labels.array.shape} differ")
        known = None if counts is None or empty else fit_counts(counts, prediction.shape[0], self.num_classes)
        if empty:
            matrix = ConfusionMatrix(self.num_classes, prediction.shape[0])
            matrix.per_slice[:, :, 0] = self.label_histogram()
            matrix.counts = matrix.per_slice.sum(axis=0)
        elif known is not None:
            matrix = ConfusionMatrix(self.num_classes, prediction.shape[0])
            matrix.per_slice[:] = known
            matrix.counts = known.sum(axis=0)
        else:
            matrix = ConfusionMatrix.from_arrays(prediction, self.labels.array, self.num_classes)
        if self._histogram is None and not empty:
            self._histogram = matrix.per_slice.sum(axis=2)  # each slice's labels, whatever was predicted
        self.predictions[key], self.matrices[key] = prediction, matrix
        # ``predicted`` is kept, not copied: whoever holds it sees the slices arrive.
        self.predicted[key] = np.full(prediction.shape[0], not empty) if predicted is None else predicted
        self._forget_disputed(key)

    def label_histogram(self) -> np.ndarray:
        """(Z, C) int64 voxels of each class on each slice of the labels: counted once, or
        taken from a model's counts, then kept current edit by edit."""
        if self._histogram is None:
            self._histogram = _slice_histograms(self.labels.array, self.num_classes)
        return self._histogram

    def detach(self) -> None:
        """Stop following the labels (this object is being replaced)."""
        self.labels.events.changed.disconnect(self._labels_changed)

    def remove_model(self, key: str) -> None:
        self.predictions.pop(key, None)
        self.predicted.pop(key, None)
        self.matrices.pop(key, None)
        self._forget_disputed(key)

    def disputed_voxels(self, a: str, b: str) -> np.ndarray:
        """(Z,) voxels per slice where models ``a`` and ``b`` differ: counted once, then
        kept current slice by slice as predictions stream in."""
        if (a, b) not in self._disputed:
            pred_a, pred_b = self.predictions[a], self.predictions[b]
            self._disputed[(a, b)] = np.array([np.count_nonzero(pred_a[z] != pred_b[z])
                                               for z in range(pred_a.shape[0])])
        return self._disputed[(a, b)]

    def _forget_disputed(self, key: str) -> None:
        for pair in [p for p in self._disputed if key in p]:
            del self._disputed[pair]

    def count_slice(self, z: int, labels: np.ndarray) -> SliceCount:
        """Prediction slice ``labels`` of slice ``z`` counted against the labels as they are
        now, for ``set_prediction_slice``: the counting of a streamed slice, done in the
        worker that predicted it (a batch of 512 x 512 slices held the GUI thread 20-45 ms).
        The stamp is read before the labels' slice: an edit meanwhile makes it stale."""
        stamp = self.edits
        with self.labels.lock:
            reference = self.labels.array[z].copy()
        return SliceCount(self, stamp, confusion_counts(labels, reference, self.num_classes))

    def set_prediction_slice(self, key: str, z: int, labels: np.ndarray, counted: SliceCount | None = None) -> None:
        """Inference delivered slice ``z`` of model ``key``: store it and count the change
        (``counted``, by ``count_slice``, unless a label edit or a new class came since)."""
        self.predictions[key][z] = labels
        self.predicted[key][z] = True
        if counted is not None and counted.live is self and counted.stamp == self.edits \
                and counted.counts.shape == (self.num_classes,) * 2:
            self.matrices[key].set_slice_counts(z, counted.counts)
        else:
            self.matrices[key].recount_slice(z, labels, self.labels.array[z])
        for (a, b), counts in self._disputed.items():
            if key in (a, b):
                counts[z] = np.count_nonzero(self.predictions[a][z] != self.predictions[b][z])

    # -- scores --------------------------------------------------------------------------
    def slice_scores(self, key: str, z: int) -> Scores | None:
        """Scores of slice ``z``; None while it is pending."""
        if not self.predicted[key][z]:
            return None
        return scores_from_counts(self.matrices[key].per_slice[z])

    def plane_scores(self, key: str, axis: int, index: int) -> Scores | None:
        """Scores of the plane normal to array ``axis`` (0 z, 1 y, 2 x) at ``index``: the
        slice a view shows, whichever plane. A z slice's are kept current; another plane
        crosses every z slice and is counted now (one 2D slice: a few milliseconds), so
        it is exact after every edit too. None while a z slice it crosses is pending."""
        if axis == 0:
            return self.slice_scores(key, index)
        if not self.predicted[key].all():
            return None
        plane = tuple(index if a == axis else slice(None) for a in range(3))
        return scores_from_counts(confusion_counts(self.predictions[key][plane], self.labels.array[plane],
                                                   self.num_classes))

    def scored_slices(self, key: str, reviewed_only: bool = True) -> np.ndarray:
        """(Z,) bool: the slices a volume score of ``key`` covers (predicted; and reviewed)."""
        return self.predicted[key] & self.labels.reviewed if reviewed_only else self.predicted[key]

    def volume_scores(self, key: str, reviewed_only: bool = True) -> Scores:
        """Over the predicted slices that are reviewed (all predicted slices when
        ``reviewed_only`` is False)."""
        matrix = self.matrices[key]
        scored = self.scored_slices(key, reviewed_only)
        if scored.all():
            return scores_from_counts(matrix.counts)
        return scores_from_counts(matrix.per_slice[scored].sum(axis=0))

    def dice_by_class(self, key: str) -> np.ndarray:
        """(Z, C) Dice of each class on each slice; NaN where the class is in neither the
        slice's labels nor its prediction, and on every slice ``key`` has not predicted."""
        counts = self.matrices[key].per_slice
        true_positive = np.einsum("zcc->zc", counts).astype(float)
        total = counts.sum(axis=2) + counts.sum(axis=1)  # the class's voxels in the labels and the prediction
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(total > 0, 2 * true_positive / total, np.nan)
        dice[~self.predicted[key]] = np.nan
        return dice

    def dice_along_slices(self, key: str) -> np.ndarray:
        """(Z,) mean foreground Dice of each slice; NaN where no foreground class is in the
        slice's labels or prediction, or ``key`` has not predicted it."""
        return _nanmean_rows(self.dice_by_class(key)[:, 1:])

    def _labels_changed(self, edit: Edit) -> None:
        self.edits += 1
        # Only the changed voxels are counted: a whole-volume copy that changes 1 % of the
        # voxels costs 1 %, and nothing the size of its bounding box is widened to int64.
        index, old, new = edit.changes()
        if not len(index):
            return
        top = int(new.max())
        if top >= self.num_classes:  # the labels already hold the edit: a recount includes it
            return self.grow(top + 1)
        region = edit.region
        # The slice of each changed voxel by one division (its row and column are not needed),
        # and the predictions there through the flat positions: no three int64 index arrays.
        plane = (region[1].stop - region[1].start) * (region[2].stop - region[2].start)
        z = (index // max(plane, 1)).astype(np.intp) + region[0].start
        for key, matrix in self.matrices.items():
            matrix.reference_changed(z, old, new, self.predictions[key][region].ravel()[index])
        histogram = self._histogram
        if histogram is not None:  # keep the per-slice class counts current (else counted when needed)
            c, first = self.num_classes, int(z.min())
            span = int(z.max()) - first + 1
            base = (z - first) * c
            histogram[first:first + span] += (np.bincount(base + new, minlength=span * c)
                                              - np.bincount(base + old, minlength=span * c)).reshape(span, c)


METRICS_COLUMNS = ("model", "scope", "slice", "reviewed", "class", "dice", "iou", "pixel_error")


def metrics_rows(live: LiveMetrics, classes) -> list[dict]:
    """Per model: the volume over reviewed slices, over all slices, then every predicted
    slice (``slice``: the 1-based number the window shows); for each foreground class and
    the foreground mean. Empty cells where nothing is scored."""
    names = {c.value: c.name for c in classes}
    rows = []
    for key in live.matrices:
        scopes: list[tuple[str, int | str, Scores]] = [
            ("volume (reviewed slices)", "", live.volume_scores(key, True)),
            ("volume (all slices)", "", live.volume_scores(key, False))]
        for index in np.flatnonzero(live.predicted[key]):
            slice_scores = live.slice_scores(key, int(index))
            assert slice_scores is not None  # predicted
            scopes.append(("slice", int(index) + 1, slice_scores))
        for scope, z, scores in scopes:
            reviewed = bool(live.labels.reviewed[int(z) - 1]) if scope == "slice" else ""
            for value in range(1, len(scores.dice)):
                rows.append(dict(model=key, scope=scope, slice=z, reviewed=reviewed,
                                 **{"class": names.get(value, str(value))},
                                 dice=csv_cell(scores.dice[value]), iou=csv_cell(scores.iou[value]),
                                 pixel_error=csv_cell(scores.pixel_error_per_class[value])))
            rows.append(dict(model=key, scope=scope, slice=z, reviewed=reviewed, **{"class": "mean (foreground)"},
                             dice=csv_cell(scores.mean_dice), iou=csv_cell(scores.mean_iou),
                             pixel_error=csv_cell(scores.pixel_error if scores.voxels else math.nan)))
    return rows


def write_metrics_csv(path, live: LiveMetrics, classes) -> None:
    """``metrics_rows`` as CSV with METRICS_COLUMNS, written atomically."""
    write_csv(path, METRICS_COLUMNS, metrics_rows(live, classes))


def fit_counts(counts, slices: int, num_classes: int) -> np.ndarray | None:
    """Per-slice confusion counts ``counts`` (Z, C', C') as (``slices``, ``num_classes``,
    ``num_classes``) int64: padded with zeros when C' is smaller, cut when the classes cut
    hold no voxel; None when they do not fit (another number of slices, voxels in a class
    cut)."""
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[0] != slices or counts.shape[1] != counts.shape[2]:
        return None
    c = min(counts.shape[1], num_classes)
    if counts[:, c:, :].any() or counts[:, :, c:].any():
        return None
    fitted = np.zeros((slices, num_classes, num_classes), np.int64)
    fitted[:, :c, :c] = counts[:, :c, :c]
    return fitted


def _slice_histograms(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(Z, C) voxels of each class on each slice of ``labels`` (z, y, x) uint8. Slice by
    slice: one bincount of the whole volume would first widen it to int64 (8x its bytes)."""
    histograms = np.zeros((labels.shape[0], num_classes), np.int64)
    for z, plane in enumerate(labels):
        histograms[z] = np.bincount(plane.ravel(), minlength=num_classes)[:num_classes]
    return histograms


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN for all-NaN rows (without numpy's warning)."""
    valid = ~np.isnan(values)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(valid, values, 0).sum(axis=1) / count, np.nan)
