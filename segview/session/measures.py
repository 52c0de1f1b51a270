"""The boundary metrics and clinical measures of a session's models against its labels, for
the window's measures dock and for scripts. No Qt.

Each ``*_job`` function reads what it needs from the session (array references and a few
(Z,) flags: cheap, on the caller's thread) and returns a job: a plain generator function
that a worker calls with ``should_stop=`` and that yields its results as they come, so it
can be cancelled between steps. The jobs read the session's arrays in place (no copies): a
read torn by an edit belongs to a result that the edit has made stale, which the caller
drops.

The figures are the ones ``segview evaluate`` and the comparison report give: the volume's
boundary metrics are ``reviewed_surface_scores`` (3D, each run of consecutive slices that
count a block whose faces cut at a slice left out are no surface), the volumes and the
cardiac and lung measures ``measure_slices`` (the count behind ``clinical_measures``).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from ..core.classes import LabelClass
from ..core.measures import ClinicalMeasures, lung_mask_from_ct, measure_slices
from ..core.metrics import SurfaceScores, reviewed_surface_scores, slice_surface_scores, surface_scores_along_slices

__all__ = ["PLOT_CHUNK", "Job", "dice_along_slices", "lung_mask_job", "measure_rows",
           "measured_slices", "plotted_values", "scores_along_slices_job", "slice_scores_job", "volume_job"]

#: A job: called with ``should_stop=`` (() -> bool), a generator of results.
Job = Callable[..., Iterator]
#: Slices per step of ``scores_along_slices_job`` (each step a chance to cancel and to draw).
PLOT_CHUNK = 8


# -- the slice on screen -------------------------------------------------------------------------
def slice_scores_job(session, z: int, tolerance_mm: float) -> Job | None:
    """The 2D boundary scores of slice ``z`` of each model that has predicted it: the job
    yields (z, {slot: SurfaceScores}) once. None when no model has predicted ``z``."""
    predictions = {slot: m.prediction for slot, m in session.models.items() if m.predicted[z]}
    if not predictions:
        return None
    return partial(_slice_scores, predictions, session.labels.array, z, session.live.num_classes,
                   tuple(session.volume.spacing), tolerance_mm)


def _slice_scores(predictions: dict[str, np.ndarray], labels: np.ndarray, z: int, num_classes: int, spacing,
                  tolerance_mm: float, should_stop: Callable[[], bool]
                  ) -> Iterator[tuple[int, dict[str, SurfaceScores]]]:
    out = {}
    for slot, prediction in predictions.items():
        if should_stop():
            return
        out[slot] = slice_surface_scores(prediction, labels, z, num_classes, spacing, tolerance_mm)
    yield z, out


# -- the volume ----------------------------------------------------------------------------------
def measured_slices(session, reviewed_only: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """((Z,) bool the slices measured, {slot: (Z,) bool the slices of its boundary scores}).
    A model's boundary scores count the slices it has predicted (the reviewed ones only with
    ``reviewed_only``); volumes and measures count the slices every model has predicted, for
    the labels and every model alike, so that their differences compare like with like."""
    wanted = (session.reviewed.copy() if reviewed_only
              else np.ones(session.volume.array.shape[0], bool))
    scored = {slot: wanted & m.predicted for slot, m in session.models.items()}
    measured = wanted.copy()
    for mask in scored.values():
        measured &= mask
    return measured, scored


def volume_job(session, measured: np.ndarray, scored: dict[str, np.ndarray], tolerance_mm: float,
               lung_mask: np.ndarray | None) -> Job:
    """The volume's figures over the slices of ``measured_slices``: the job yields
    ("measures", {"labels" | slot: ``measure_rows``}) first (fast), then ("boundary",
    (slot, SurfaceScores)) for each model. ``lung_mask``: the lungs found in the CT
    (``lung_mask_job``) when its classes name an infection but no lung, else None.
    (``session.classes`` may read the whole label volume: call this when the job is due.)"""
    columns = {"labels": (session.labels.array, list(session.classes))}
    columns.update({slot: (m.prediction, list(m.classes)) for slot, m in session.models.items()})
    predictions = {slot: m.prediction for slot, m in session.models.items()}
    return partial(_volume_figures, columns, predictions, session.labels.array, measured, scored,
                   session.live.num_classes, tuple(session.volume.spacing), tolerance_mm, lung_mask)


def _volume_figures(columns: dict[str, tuple[np.ndarray, list[LabelClass]]], predictions: dict[str, np.ndarray],
                    labels: np.ndarray, measured: np.ndarray, scored: dict[str, np.ndarray], num_classes: int,
                    spacing, tolerance_mm: float, lung_mask: np.ndarray | None,
                    should_stop: Callable[[], bool]) -> Iterator[tuple[str, object]]:
    rows = {}
    for column, (array, classes) in columns.items():
        found = measure_rows(array, measured, classes, spacing, lung_mask, should_stop)
        if found is None:
            return
        rows[column] = found
    yield "measures", rows
    for slot, prediction in predictions.items():
        if should_stop():
            return
        yield "boundary", (slot, reviewed_surface_scores(prediction, labels, scored[slot], num_classes, spacing,
                                                         tolerance_mm))


def measure_rows(labels: np.ndarray, measured: np.ndarray, classes: list[LabelClass], spacing,
                 lung_mask: np.ndarray | None = None,
                 should_stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
    """The measures of ``labels`` (z, y, x) over the ``measured`` slices ((Z,) bool) by
    ``measure_slices``, as rows: "volume <value>" (mL) for each foreground class value (and
    any higher value found), and when they apply and a slice is measured, "lv", "rv" (mL),
    "mass" (g), "lungs", "infected" (mL) and "infected %". None when stopped."""
    found = measure_slices(labels, classes, spacing, measured, lung_mask, should_stop)
    if found is None:
        return None
    out = {f"volume {value}": float(ml) for value, ml in enumerate(found.volumes_ml) if value}
    if measured.any():
        out.update(_clinical_rows(found))
    return out


def _clinical_rows(found: ClinicalMeasures) -> dict[str, float]:
    out = {}
    if found.cardiac is not None:
        cardiac = found.cardiac
        out.update({"lv": cardiac.lv_blood_ml, "rv": cardiac.rv_blood_ml, "mass": cardiac.myocardial_mass_g})
    if found.lung is not None:
        lung = found.lung
        out.update({"lungs": lung.lung_ml, "infected": lung.infected_ml, "infected %": lung.infected_percent})
    return out


def lung_mask_job(session) -> Job:
    """The aerated lungs of the session's CT (``lung_mask_from_ct``; seconds), for the
    infected share when its classes name an infection but no lung (``lungs_from_ct_needed``,
    as ``segview evaluate`` decides): the job yields the (z, y, x) bool mask once."""
    return partial(_lung_mask, session.volume.array, tuple(session.volume.spacing))


def _lung_mask(image: np.ndarray, spacing, should_stop: Callable[[], bool]) -> Iterator[np.ndarray]:
    yield lung_mask_from_ct(image, spacing)


# -- along the slices ----------------------------------------------------------------------------
def scores_along_slices_job(session, slices: dict[str, np.ndarray], tolerance_mm: float) -> Job:
    """Each model's 2D boundary scores on its chosen ``slices`` ({slot: indices}), a few
    (``PLOT_CHUNK``) at a time: the job yields (slot, the slices done, {name: (Z, C)
    array}) as ``surface_scores_along_slices`` names them, rows not done NaN."""
    predictions = {slot: session.models[slot].prediction for slot in slices}
    return partial(_scores_along_slices, predictions, session.labels.array, slices, session.live.num_classes,
                   tuple(session.volume.spacing), tolerance_mm)


def _scores_along_slices(predictions: dict[str, np.ndarray], labels: np.ndarray, slices: dict[str, np.ndarray],
                         num_classes: int, spacing, tolerance_mm: float, should_stop: Callable[[], bool]
                         ) -> Iterator[tuple[str, np.ndarray, dict[str, np.ndarray]]]:
    for slot, prediction in predictions.items():
        chosen = slices[slot]
        for start in range(0, len(chosen), PLOT_CHUNK):
            if should_stop():
                return
            part = chosen[start:start + PLOT_CHUNK]
            rows = surface_scores_along_slices(prediction, labels, num_classes, spacing, tolerance_mm,
                                               slices=part, should_stop=should_stop)
            if should_stop():
                return  # the slices not reached are NaN: not results
            yield slot, part, rows


def plotted_values(rows: np.ndarray, value: int | None) -> np.ndarray:
    """(Z,) the value of class ``value`` on each slice of ``rows`` ((Z, C), a metric of
    each class), or with None the mean of the foreground classes that have one (NaN where
    none has: nothing to score on that slice, or where the class is beyond the rows)."""
    if value is None:
        if rows.shape[1] < 2:
            return np.full(len(rows), np.nan)
        with warnings.catch_warnings():  # all NaN: nothing to score on that slice
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(rows[:, 1:], axis=1)
    return rows[:, value] if value < rows.shape[1] else np.full(len(rows), np.nan)


def dice_along_slices(session, slot: str, value: int | None) -> np.ndarray:
    """(Z,) model ``slot``'s Dice on each slice from the live metrics
    (``LiveMetrics.dice_by_class``): of class ``value``, or with None their mean; NaN on the
    slices it has not predicted or where the class is in neither."""
    return plotted_values(session.live.dice_by_class(slot), value)
