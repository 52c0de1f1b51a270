"""Scoring checkpoints on cases: per-case Dice, IoU and pixel error, summaries in the shape
of the paper's Table 1, and a paired comparison of two checkpoints.

The paper reports means only. With two checkpoints on the same cases, the per-case
difference of mean Dice and a Wilcoxon signed-rank test tell whether one is really better
on this data or the difference is within case-to-case noise.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.compare import paired_difference
from ..core.metrics import ConfusionMatrix, Scores
from .data import Case
from .inference import Predictor

METRICS = ("dice", "iou", "pixel_error")


@dataclass
class CaseResult:
    case: str
    scores: Scores

    def metric(self, name: str) -> float:
        """Mean over foreground classes for Dice and IoU; the overall pixel error."""
        return {"dice": self.scores.mean_dice, "iou": self.scores.mean_iou,
                "pixel_error": self.scores.pixel_error}[name]


def evaluate_cases(predictor: Predictor, cases: list[Case],
                   progress: Callable[[int, int, str], None] | None = None) -> list[CaseResult]:
    """Predict every case and score it against its labels."""
    results = []
    for n, case in enumerate(cases):
        if progress:
            progress(n, len(cases), case.name)
        predicted = predictor.predict_volume(case.volume)
        matrix = ConfusionMatrix.from_arrays(predicted, case.labels, predictor.num_classes)
        results.append(CaseResult(case.name, matrix.scores()))
    return results


def summary(results: list[CaseResult]) -> dict:
    """Per metric: mean and standard deviation over cases (of the per-case value), and the
    per-class mean Dice/IoU over cases (NaN classes skipped)."""
    out = {}
    for name in METRICS:
        values = np.array([r.metric(name) for r in results], float)
        values = values[~np.isnan(values)]
        out[name] = {"mean": float(values.mean()) if values.size else math.nan,
                     "std": float(values.std(ddof=1)) if values.size > 1 else 0.0}
    for name in ("dice", "iou"):
        per_class = np.array([getattr(r.scores, name) for r in results], float)
        with warnings.catch_warnings():  # a class absent from every case stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            out[f"{name}_per_class"] = np.nanmean(per_class, axis=0).tolist()
    out["cases"] = len(results)
    return out


def paired_comparison(a: list[CaseResult], b: list[CaseResult], metric: str = "dice") -> dict:
    """B minus A per case, its mean and std, and the two-sided Wilcoxon signed-rank p-value
    (NaN when fewer than two cases differ, where no test is possible)."""
    by_case = {r.case: r.metric(metric) for r in a}
    pairs = [(r.case, by_case[r.case], r.metric(metric)) for r in b if r.case in by_case]
    paired = paired_difference([va for _, va, _ in pairs], [vb for _, _, vb in pairs])
    return {"metric": metric, "cases": paired.pop("pairs"),
            "per_case": {case: vb - va for case, va, vb in pairs}, **paired}


def table1_markdown(rows: list[tuple[str, dict[str, dict]]]) -> str:
    """Rows (label, {data set: summary}) as the paper's Table 1: one row per checkpoint,
    Dice, IoU and pixel error (mean +- std over cases) per data set."""
    datasets = list(dict.fromkeys(name for _, by_set in rows for name in by_set))
    header = ["checkpoint"] + [f"{name} {metric.replace('_', ' ')}" for name in datasets
                               for metric in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, by_set in rows:
        cells = [label]
        for name in datasets:
            for metric in METRICS:
                if name in by_set:
                    value = by_set[name][metric]
                    cells.append(f"{value['mean']:.4f} ± {value['std']:.4f}")
                else:
                    cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_case_csv(path, results: dict[str, list[CaseResult]], class_names: list[str]) -> Path:
    """One row per checkpoint and case: mean metrics and Dice/IoU per class."""
    path = Path(path)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["checkpoint", "case", "mean_dice", "mean_iou", "pixel_error"]
                        + [f"dice_{n}" for n in class_names] + [f"iou_{n}" for n in class_names])
        for label, case_results in results.items():
            for r in case_results:
                writer.writerow([label, r.case, _cell(r.scores.mean_dice), _cell(r.scores.mean_iou),
                                 _cell(r.scores.pixel_error)]
                                + [_cell(v) for v in r.scores.dice] + [_cell(v) for v in r.scores.iou])
    return path


def _cell(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.6f}"

