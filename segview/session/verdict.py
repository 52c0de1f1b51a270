"""The A/B verdict over everything reviewed: each checkpoint scored on the reviewed slices
of each case of a dataset, and the per-case paired difference.

    verdict = reviewed_verdict("dataset/", {"A": "ce.safetensors", "B": "ce_dice.safetensors"})
    print(verdict.markdown())
    write_dataset_report("report/", verdict)     # results.csv, verdict.md, verdict.png

Only the slices a person marked reviewed count (the saved review sidecars, checked against
the image); a case with none is left out and listed with the reason. Per case and model:
mean foreground Dice over the reviewed slices (one confusion matrix over them, as the
window's metrics dock counts it), Dice per class, and the correction effort: voxels and mL
where the model's prediction differs from the saved labels on those slices.

The paired difference is B minus A per case: mean, Wilcoxon signed-rank p-value
(``core.compare.paired_difference``), and a percentile bootstrap 95 % interval of the mean
difference (cases resampled with replacement, ``RESAMPLES`` = 10 000 resamples, seed
``SEED`` = 0, so the same data always give the same interval).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.classes import LabelClass, class_name
from ..core.compare import paired_difference
from ..core.errors import VolumeLoadError
from ..core.files import atomic_write_text, replace_atomically
from ..core.journal import image_key
from ..core.report import csv_cell, number_text, write_csv
from ..core.metrics import confusion_counts, scores_from_counts
from .review import read_label_file
from .worklist import Worklist, checkpoint_digest, correction_effort

RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95
Progress = Callable[[int, int, str], None]


@dataclass
class CaseVerdict:
    """One case's figures over its ``reviewed`` slices; dicts keyed by model slot."""
    case: str
    reviewed: int
    slices: int
    dice: dict[str, float] = field(default_factory=dict)            # mean foreground Dice
    dice_per_class: dict[str, np.ndarray] = field(default_factory=dict)
    correction_voxels: dict[str, int] = field(default_factory=dict)
    correction_ml: dict[str, float] = field(default_factory=dict)


@dataclass
class Verdict:
    """The verdict of checkpoints ``checkpoints`` ({"A": path, "B": path}) on ``cases``;
    ``left_out``: "case: why" for each case not scored."""
    dataset: Path
    checkpoints: dict[str, Path]
    classes: list[LabelClass]
    cases: list[CaseVerdict]
    left_out: list[str]

    def paired(self, figure: str = "dice") -> dict:
        """B minus A per case of ``figure`` ("dice" or "correction_ml"): the fields of
        ``paired_difference`` plus ``interval`` (bootstrap 95 % of the mean difference)."""
        a = [getattr(c, figure).get("A", math.nan) for c in self.cases]
        b = [getattr(c, figure).get("B", math.nan) for c in self.cases]
        result = paired_difference(a, b)
        keep = ~(np.isnan(a) | np.isnan(b))
        result["interval"] = bootstrap_interval(np.subtract(b, a)[keep])
        return result

    def rows(self) -> tuple[list[str], list[dict]]:
        """Columns and rows of results.csv: one row per case and model."""
        names = [class_name(self.classes, v) for v in range(1, len(self.classes))]
        columns = ["case", "model", "checkpoint", "reviewed_slices", "slices", "dice",
                   *[f"dice_{n}" for n in names], "correction_voxels", "correction_ml"]
        rows = []
        for case in self.cases:
            for slot, path in self.checkpoints.items():
                per_class = case.dice_per_class[slot]
                rows.append({"case": case.case, "model": slot, "checkpoint": path.name,
                             "reviewed_slices": case.reviewed, "slices": case.slices,
                             "dice": csv_cell(case.dice[slot]),
                             **{f"dice_{n}": csv_cell(per_class[v] if v < len(per_class) else math.nan)
                                for v, n in enumerate(names, 1)},
                             "correction_voxels": case.correction_voxels[slot],
                             "correction_ml": f"{case.correction_ml[slot]:.4f}"})
        return columns, rows

    def markdown(self) -> str:
        """The summary: per model the mean over cases, then the paired differences."""
        lines = [f"# A/B verdict over reviewed slices: {self.dataset.name}", "",
                 (f"{len(self.cases)} cases with reviewed slices "
                  f"({sum(c.reviewed for c in self.cases)} slices); {len(self.left_out)} left out."), "",
                 "| model | checkpoint | Dice (mean ± std over cases) | correction mL (mean ± std) |",
                 "|---|---|---|---|"]
        for slot, path in self.checkpoints.items():
            dice = np.array([c.dice[slot] for c in self.cases], float)
            ml = np.array([c.correction_ml[slot] for c in self.cases], float)
            lines.append(f"| {slot} | {path.name} | {_mean_std(dice)} | {_mean_std(ml, 2)} |")
        if len(self.checkpoints) == 2:
            lines += ["", (f"Paired per case, B minus A; bootstrap {CONFIDENCE:.0%} interval of the mean "
                           f"difference ({RESAMPLES} resamples, seed {SEED}); Wilcoxon signed-rank test:"), ""]
            for figure, label, better in (("dice", "Dice", "higher"), ("correction_ml", "correction (mL)", "lower")):
                p = self.paired(figure)
                low, high = p["interval"]
                lines.append(f"- {label}: mean difference {number_text(p['mean_difference'], 4)} "
                             f"[{number_text(low, 4)}, {number_text(high, 4)}], p = {number_text(p['p_value'], 4)}, "
                             f"B {better} in {p['b_better'] if better == 'higher' else p['a_better']} "
                             f"of {p['pairs']} cases")
        if self.left_out:
            lines += ["", "Left out:", ""] + [f"- {why}" for why in self.left_out]
        return "\n".join(lines) + "\n"


def bootstrap_interval(differences, resamples: int = RESAMPLES, seed: int = SEED,
                       confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (n,): the cases are
    resampled with replacement ``resamples`` times (numpy's default generator, ``seed``).
    (NaN, NaN) for no case; one case gives its value twice."""
    values = np.asarray(differences, float)
    if values.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def reviewed_verdict(dataset, checkpoints: dict[str, Path], progress: Progress | None = None,
                     worklist: Worklist | None = None, device: str | None = None,
                     should_stop: Callable[[], bool] | None = None) -> Verdict | None:
    """Score ``checkpoints`` ({"A": path, "B": path}) on the reviewed slices of every case
    of ``dataset`` (a folder ``Worklist.open`` reads). Predictions come from the worklist's
    prediction cache where it has them; otherwise only the reviewed slices are predicted.
    ``device``: where the models run (default: the best there is). ``progress(done, total,
    case)`` before each case; None when ``should_stop()`` said stop (asked between cases).
    Raises DatasetError, CheckpointError."""
    from ..ml.inference import Predictor

    worklist = worklist or Worklist.open(dataset, checkpoints)
    checkpoints = {slot: Path(path) for slot, path in sorted(checkpoints.items())}
    predictors = {slot: Predictor.from_checkpoint(path, device) for slot, path in checkpoints.items()}
    num_classes = max(p.num_classes for p in predictors.values())
    classes = worklist.classes or list(next(iter(predictors.values())).classes)
    cases, left_out = [], []
    for n, case in enumerate(worklist.cases):
        if should_stop is not None and should_stop():
            return None
        if progress is not None:
            progress(n, len(worklist.cases), case.name)
        if not case.reviewed_count:
            left_out.append(f"{case.name}: no reviewed slice")
            continue
        try:
            result = _case_verdict(worklist, case, checkpoints, predictors, num_classes)
        except VolumeLoadError as exc:
            left_out.append(f"{case.name}: {exc}")
            continue
        if isinstance(result, str):
            left_out.append(f"{case.name}: {result}")
        else:
            cases.append(result)
    return Verdict(Path(dataset), checkpoints, classes, cases, left_out)


def _case_verdict(worklist: Worklist, case, checkpoints: dict[str, Path], predictors: dict,
                  num_classes: int) -> CaseVerdict | str:
    """The figures of one case, or why it is left out."""
    volume = worklist.load_image(case)
    if not case.labels.is_file():
        return "its review sidecar has no label file beside it"
    label_file = read_label_file(case.labels, volume)
    reviewed = label_file.review.reviewed
    if not reviewed.any():
        return label_file.warning or "no reviewed slice"
    if int(label_file.array.max()) >= num_classes:
        return f"its labels hold class {int(label_file.array.max())}, beyond the models' {num_classes} classes"
    key = None
    verdict = CaseVerdict(case.name, int(reviewed.sum()), len(reviewed))
    for slot, path in checkpoints.items():
        prediction = None
        key = key or image_key(volume)
        prediction = worklist.cache.get(key, checkpoint_digest(path))
        if prediction is None or prediction.shape != volume.shape:
            prediction = _predict_slices(predictors[slot], volume, np.flatnonzero(reviewed))
        scores = scores_from_counts(confusion_counts(prediction[reviewed], label_file.array[reviewed], num_classes))
        verdict.dice[slot] = scores.mean_dice
        verdict.dice_per_class[slot] = scores.dice
        voxels, ml = correction_effort(prediction, label_file.array, reviewed, volume.spacing)
        verdict.correction_voxels[slot], verdict.correction_ml[slot] = voxels, ml
    return verdict


def _predict_slices(predictor, volume, indices) -> np.ndarray:
    """(z, y, x) uint8: slices ``indices`` predicted, the rest 0."""
    labels = np.zeros(volume.shape, np.uint8)
    for prediction in predictor.predict_slices(predictor.prepare(volume), [int(z) for z in indices]):
        labels[prediction.index] = prediction.labels
    return labels


# -- the report ------------------------------------------------------------------------------

def write_dataset_report(folder, verdict: Verdict) -> list[Path]:
    """``results.csv`` (per case and model), ``verdict.md`` (the summary) and
    ``verdict.png`` (A vs B Dice per case; correction effort per case) in ``folder``, each
    written atomically. Returns the paths. Raises OSError."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = folder / "results.csv", folder / "verdict.md", folder / "verdict.png"
    write_csv(csv_path, *verdict.rows())
    atomic_write_text(md_path, verdict.markdown())
    replace_atomically(png_path, lambda temporary: _plot(temporary, verdict))
    return [csv_path, md_path, png_path]


def _plot(path, verdict: Verdict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4), dpi=100)
    a = [c.dice.get("A", math.nan) for c in verdict.cases]
    b = [c.dice.get("B", math.nan) for c in verdict.cases]
    left.scatter(a, b, color="#3070b0")
    left.plot([0, 1], [0, 1], color="#999999", linewidth=1)
    left.set(xlabel="Dice of A (reviewed slices)", ylabel="Dice of B", xlim=(0, 1.02), ylim=(0, 1.02),
             title="each dot a case; above the line B is better")
    names = [c.case for c in verdict.cases]
    x = np.arange(len(names))
    for offset, (slot, color) in zip((-0.2, 0.2), (("A", "#ff8c00"), ("B", "#00beff"))):
        if slot in verdict.checkpoints:
            right.bar(x + offset, [c.correction_ml[slot] for c in verdict.cases], 0.4, color=color,
                      label=f"{slot}: {verdict.checkpoints[slot].stem}")
    if len(names) <= 40:  # beyond, names would overlap: the CSV has them
        right.set_xticks(x, names, rotation=90, fontsize=7)
    right.set(xlabel="case", ylabel="correction (mL)", title="how much each model needed correcting")
    right.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)


def _mean_std(values: np.ndarray, digits: int = 3) -> str:
    finite = values[~np.isnan(values)]
    if not finite.size:
        return "-"
    std = finite.std(ddof=1) if finite.size > 1 else 0.0
    return f"{finite.mean():.{digits}f} ± {std:.{digits}f}"
