"""Scoring checkpoints on cases: per-case Dice, IoU and pixel error, boundary metrics (HD95,
ASSD, surface Dice) and clinical measures (volumes, cardiac mass, lung infection share),
summaries in the shape of the paper's Table 1, and a paired comparison of two checkpoints.

The paper reports means only. With two checkpoints on the same cases, the per-case
difference of mean Dice and a Wilcoxon signed-rank test tell whether one is really better
on this data or the difference is within case-to-case noise.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.compare import paired_difference
from ..core.report import DASH, csv_cell, number_text, write_csv
from ..core.measures import clinical_measures, lung_mask_from_ct, lungs_from_ct_needed
from ..core.metrics import SURFACE_DICE_TOLERANCE_MM, ConfusionMatrix, Scores, SurfaceScores, surface_scores
from .data import Case
from .inference import Predictor

METRICS = ("dice", "iou", "pixel_error", "hd95", "surface_dice")
#: Surface Dice tolerance (mm) of ``segview evaluate`` (see SURFACE_DICE_TOLERANCE_MM).
DEFAULT_TOLERANCE_MM = SURFACE_DICE_TOLERANCE_MM
_DIGITS = {"hd95": 2}  # mm; the rest are fractions, 4 digits


@dataclass
class CaseResult:
    """The scores of one case; ``surface`` and ``measures`` only when asked for. Measures
    are keyed ``reference_...``, ``prediction_...`` and ``difference_...`` (prediction
    minus reference), as ``clinical_measures`` names them."""

    case: str
    scores: Scores
    surface: SurfaceScores | None = None
    measures: dict[str, float] = field(default_factory=dict)

    def metric(self, name: str) -> float:
        """Mean over foreground classes for Dice, IoU, HD95 (mm; inf when a class is missing
        from the prediction or the labels) and surface Dice; the overall pixel error."""
        if name in ("hd95", "surface_dice"):
            if self.surface is None:
                return math.nan
            return self.surface.mean_hausdorff95 if name == "hd95" else self.surface.mean_surface_dice
        return {"dice": self.scores.mean_dice, "iou": self.scores.mean_iou,
                "pixel_error": self.scores.pixel_error}[name]


def evaluate_cases(predictor: Predictor, cases: list[Case],
                   progress: Callable[[int, int, str], None] | None = None,
                   tolerance_mm: float | None = None, measures: bool = False,
                   reference_cache: dict | None = None, classes=None) -> list[CaseResult]:
    """Predict every case and score it against its labels (a case naming its ``slices``:
    those, normalised with the whole volume). With ``tolerance_mm``, also the
    boundary metrics (surface Dice at that tolerance); with ``measures``, the clinical
    measures of labels and prediction, found by the names of ``classes`` (the data set's;
    default the checkpoint's), the lungs of CT without a lung class found once per case.
    ``reference_cache`` (a dict kept across checkpoints of one data set) saves recomputing
    the labels' own measures for each checkpoint."""
    results = []
    cache = {} if reference_cache is None else reference_cache
    classes = list(predictor.classes if classes is None else classes)
    for n, case in enumerate(cases):
        if progress:
            progress(n, len(cases), case.name)
        predicted = _predicted(predictor, case)
        case = case.restricted()  # scored as the stack of its slices
        matrix = ConfusionMatrix.from_arrays(predicted, case.labels, predictor.num_classes)
        result = CaseResult(case.name, matrix.scores())
        if tolerance_mm is not None:
            result.surface = surface_scores(predicted, case.labels, predictor.num_classes, case.volume.spacing,
                                            tolerance_mm)
        if measures:
            result.measures = _case_measures(case, predicted, classes, cache)
        results.append(result)
    return results


def _predicted(predictor: Predictor, case: Case) -> np.ndarray:
    """The prediction of ``case``'s slices (every slice when it names none), stacked, each
    normalised over the whole volume, as training and the window normalise it (the volume
    cut down to a held-out slice or two has other percentiles: a tester's held-out Dice
    differed from the window's and evaluate's)."""
    if case.slices is None:
        return predictor.predict_volume(case.volume)
    normalized = predictor.prepare(case.volume)
    predicted = np.zeros((len(case.slices), *case.volume.shape[1:]), np.uint8)
    for n, prediction in enumerate(predictor.predict_slices(normalized, [int(z) for z in case.slices])):
        predicted[n] = prediction.labels
    return predicted


def _case_measures(case: Case, predicted: np.ndarray, classes, cache: dict) -> dict[str, float]:
    if case.name not in cache:
        lungs = None
        if lungs_from_ct_needed(classes, case.volume.modality):
            lungs = lung_mask_from_ct(case.volume.array, case.volume.spacing)
        cache[case.name] = (lungs, clinical_measures(case.labels, classes, case.volume.spacing, lung_mask=lungs))
    lungs, reference = cache[case.name]
    prediction = clinical_measures(predicted, classes, case.volume.spacing, lung_mask=lungs)
    out = {f"reference_{key}": value for key, value in reference.items()}
    out.update({f"prediction_{key}": value for key, value in prediction.items()})
    out.update({f"difference_{key}": prediction[key] - reference[key] for key in reference if key in prediction})
    return out


def summary(results: list[CaseResult]) -> dict:
    """Per metric: mean and standard deviation over cases (of the per-case value) and how
    many cases were ``missed`` (HD95 inf: a class in only one of prediction and labels;
    left out of the mean, shown beside it); per class, the mean Dice, IoU, HD95 and
    surface Dice over cases (NaN classes skipped, and inf for HD95). HD95 and surface Dice
    are left out when no result has boundary metrics."""
    out: dict = {}
    boundary = any(r.surface is not None for r in results)
    for name in METRICS:
        if name in ("hd95", "surface_dice") and not boundary:
            continue  # not computed (training's validation): absent, not NaN
        values = np.array([r.metric(name) for r in results], float)
        finite = values[np.isfinite(values)]
        out[name] = {"mean": float(finite.mean()) if finite.size else math.nan,
                     "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,  # none from one case
                     "missed": int(np.isinf(values).sum()),
                     "unscored": int(np.isnan(values).sum()),  # no score (a class absent from both)
                     "cases": int(values.size)}
    per_class = {"dice": [r.scores.dice for r in results], "iou": [r.scores.iou for r in results],
                 "hd95": [r.surface.hausdorff95 for r in results if r.surface is not None],
                 "surface_dice": [r.surface.surface_dice for r in results if r.surface is not None]}
    for name, rows in per_class.items():
        if not rows:
            continue
        table = np.array(rows, float)
        table[np.isinf(table)] = np.nan
        with warnings.catch_warnings():  # a class absent from every case stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[f"{name}_per_class"] = np.nanmean(table, axis=0).tolist()
    out["cases"] = len(results)
    return out


def paired_comparison(a: list[CaseResult], b: list[CaseResult], metric: str = "dice") -> dict:
    """B minus A per case, its mean and std, and the two-sided Wilcoxon signed-rank p-value
    (``core.compare.paired_difference``: NaN below two cases, where no test is possible);
    ``left_out``: the cases not in the pairs (one model has no score there, or only one of
    the two was scored on it)."""
    by_case = {r.case: r.metric(metric) for r in a}
    pairs = [(r.case, by_case[r.case], r.metric(metric)) for r in b if r.case in by_case]
    paired = paired_difference([va for _, va, _ in pairs], [vb for _, _, vb in pairs])
    # Named, not only counted: the pairs' n is below the cases' (a case where one model has no
    # score, or that only one of them was scored on) and the reports say which.
    unpaired = sorted({r.case for r in a} ^ {r.case for r in b})
    left_out = sorted(case for case, va, vb in pairs if math.isnan(va) or math.isnan(vb)) + unpaired
    return {"metric": metric, "cases": paired.pop("pairs"),
            "per_case": {case: vb - va for case, va, vb in pairs}, "left_out": left_out, **paired}


def table1_markdown(rows: list[tuple[str, dict[str, dict]]]) -> str:
    """Rows (label, {data set: summary}) as the paper's Table 1: one row per checkpoint,
    Dice, IoU, pixel error, HD95 (mm) and surface Dice (mean +- std over cases) per data
    set; cases where HD95 is infinite are counted in the cell, "(n missed or invented)", and cases
    without a score, "(n of m scored)", so two rows' means over different cases show it."""
    datasets = list(dict.fromkeys(name for _, by_set in rows for name in by_set))
    header = ["checkpoint"] + [f"{name} {metric.replace('_', ' ')}" + (" (mm)" if metric == "hd95" else "")
                               for name in datasets for metric in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, by_set in rows:
        cells = [label]
        for name in datasets:
            for metric in METRICS:
                cells.append(_summary_cell(by_set[name].get(metric), metric) if name in by_set else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: Beside an HD95 mean: the cases where a class is in only one of the prediction and the
#: labels (the model missed it, or invented it where the labels have none), no distance.
ONE_SIDED = "missed or invented"


def _summary_cell(value: dict | None, metric: str) -> str:
    if value is None or math.isnan(value["mean"]):
        return DASH if value is None or not value.get("missed") else f"{DASH} ({value['missed']} {ONE_SIDED})"
    digits = _DIGITS.get(metric, 4)
    missed = f" ({value['missed']} {ONE_SIDED})" if value.get("missed") else ""
    unscored = value.get("unscored", 0)
    if unscored:
        cases = value["cases"]
        missed += f" ({cases - unscored} of {cases} scored)"
    return f"{number_text(value['mean'], digits)} ± {number_text(value['std'], digits)}{missed}"


def per_class_markdown(rows: list[tuple[str, dict[str, dict]]], class_names: dict[str, list[str]]) -> str:
    """Per class (foreground), per checkpoint and data set: mean Dice, HD95 (mm) and surface
    Dice over cases, the way ACDC reports each structure. ``class_names``: data set -> the
    names of its classes, by value."""
    lines = ["| checkpoint | data | class | Dice | HD95 (mm) | surface Dice |", "|---|---|---|---|---|---|"]
    for label, by_set in rows:
        for name, result in by_set.items():
            for c, class_name in enumerate(class_names[name]):
                if c == 0:
                    continue
                cells = [_per_class_cell(result, metric, c) for metric in ("dice", "hd95", "surface_dice")]
                lines.append(f"| {label} | {name} | {class_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _per_class_cell(result: dict, metric: str, c: int) -> str:
    values = result.get(f"{metric}_per_class")
    if values is None or c >= len(values):
        return DASH
    return number_text(values[c], _DIGITS.get(metric, 4))


def write_case_csv(path, results: dict[str, list[CaseResult]], class_names) -> Path:
    """One row per checkpoint and case: mean metrics; Dice, IoU, HD, HD95, ASSD (mm) and
    surface Dice per class (empty where a class is in neither, inf where in one only);
    the surface Dice tolerance; then every clinical measure (mL, g, %) of the labels, the
    prediction and their difference. ``class_names``: the names of the classes by value,
    one list for all, or a dict with one per key of ``results`` (data sets with different
    classes then fill different columns)."""
    path = Path(path)
    names_of = class_names if isinstance(class_names, dict) else {key: class_names for key in results}
    all_names = list(dict.fromkeys(n for key in results for n in names_of[key]))
    per_class = ("dice", "iou", "hd", "hd95", "assd", "surface_dice")
    measure_names = list(dict.fromkeys(key for rows in results.values() for r in rows for key in r.measures))
    header = (["checkpoint", "case", "mean_dice", "mean_iou", "pixel_error", "mean_hd95", "mean_assd",
               "mean_surface_dice", "surface_dice_tolerance_mm"]
              + [f"{metric}_{n}" for metric in per_class for n in all_names] + measure_names)
    write_csv(path, header, [_csv_row(label, r, names_of[label]) for label, rs in results.items() for r in rs])
    return path


def _csv_row(label: str, r: CaseResult, names: list[str]) -> dict[str, str]:
    s = r.surface
    row = {"checkpoint": label, "case": r.case, "mean_dice": csv_cell(r.scores.mean_dice),
           "mean_iou": csv_cell(r.scores.mean_iou), "pixel_error": csv_cell(r.scores.pixel_error)}
    if s is not None:
        row.update(mean_hd95=csv_cell(s.mean_hausdorff95), mean_assd=csv_cell(s.mean_average_surface_distance),
                   mean_surface_dice=csv_cell(s.mean_surface_dice),
                   surface_dice_tolerance_mm=csv_cell(float(np.max(s.tolerance_mm))))
    columns = {"dice": r.scores.dice, "iou": r.scores.iou}
    if s is not None:
        columns.update(hd=s.hausdorff, hd95=s.hausdorff95, assd=s.average_surface_distance,
                       surface_dice=s.surface_dice)
    for metric, values in columns.items():
        row.update({f"{metric}_{n}": csv_cell(v) for n, v in zip(names, values)})
    row.update({key: csv_cell(value) for key, value in r.measures.items()})
    return row
