"""The A/B verdict over everything reviewed: each checkpoint scored on the reviewed slices
of each case of a dataset, and the per-case paired difference.

    verdict = reviewed_verdict("dataset/", {"A": "ce.safetensors", "B": "ce_dice.safetensors"})
    print(verdict.markdown())
    write_dataset_report("report/", verdict)  # results.csv, verdict.md, verdict.json, verdict.png

The scoring rule (``SCORING_RULE``, the one the window, the comparison report and the
dataset report follow): only the slices a person marked reviewed count (the saved review
sidecars, checked against the image); a case with none is left out. Per case, class and
model over those slices (one confusion matrix, as the window's metrics dock counts it): a
class absent from both the labels and the model's prediction has no score; a class the
model predicts where the labels have none scores Dice 0. A case's Dice is the mean over its
scored foreground classes. Both models are compared on the same cases: a case where either
has no Dice is left out of the Dice for both, with the reason. It still counts in the
correction effort (voxels and mL where the prediction differs from the saved labels on the
reviewed slices), and per model the report lists the mL it predicted of classes the
reviewed labels do not hold, so a model that invents a lesion is never hidden by the rule.

The paired difference is B minus A per case (``core.compare.paired_difference``): n, mean,
two-sided Wilcoxon signed-rank p-value (exact for small n, as scipy computes it) and a
percentile bootstrap 95 % interval of the mean difference (10 000 resamples, seed 0, so the
same data always give the same interval); below ``MIN_PAIRS`` pairs the report says they
cannot support a verdict.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..core.classes import LabelClass, class_name
from ..core.compare import MIN_PAIRS, paired_difference, small_sample_note
from ..core.errors import SegviewError, VolumeLoadError
from ..core.files import atomic_write_text, replace_atomically
from ..core.io import load_classes
from ..core.journal import image_key, voxel_digest
from ..core.metrics import confusion_counts, scores_from_counts
from ..core.phantoms import phantom_written
from ..core.report import counted, csv_cell, finite_or_none, number_text, write_csv
from ..core.review_state import flagged_reason
from ..core.volume import Volume
from ..ml.metadata import CheckpointError, check_class_names, trained_cases
from .review import read_label_file
from .worklist import Worklist, checkpoint_digest, correction_effort

SCORING_RULE = ("Per case, class and model over the reviewed slices: a class absent from both the labels and "
                "the prediction has no score; a class predicted where the labels have none scores Dice 0; a "
                "case's Dice is the mean over its scored foreground classes. Both models are compared on the "
                "same cases: a case where either has no Dice is left out of the Dice for both, and still counts "
                "in the correction effort.")
Progress = Callable[[int, int, str], None]
#: --robot: (volume, labels, prediction (Z, Y, X), reviewed (Z,) bool) -> clicks, None where no object
#: is large enough to click on (session.reviewer.verdict_robot)
Robot = Callable[[Volume, np.ndarray, np.ndarray, np.ndarray], "int | None"]
__all__ = ["MIN_PAIRS", "REPORT_FILES", "SCORING_RULE", "CaseVerdict", "Verdict", "reviewed_verdict",
           "write_dataset_report"]


@dataclass
class CaseVerdict:
    """One case's figures over its ``reviewed`` slices; dicts keyed by model slot.
    ``invented_ml``: slot -> {class value: mL predicted on the reviewed slices of a class
    those slices' labels do not hold} (only classes with some)."""
    case: str
    reviewed: int
    slices: int
    dice: dict[str, float] = field(default_factory=dict)            # mean foreground Dice; NaN: no score
    dice_per_class: dict[str, np.ndarray] = field(default_factory=dict)
    correction_voxels: dict[str, int] = field(default_factory=dict)
    correction_ml: dict[str, float] = field(default_factory=dict)
    invented_ml: dict[str, dict[int, float]] = field(default_factory=dict)
    # --robot (session.reviewer): the simulated reviewer's clicks to Dice 0.90, None where no
    # object on the reviewed slices is large enough to click on; empty without --robot
    clicks_to_90: dict[str, int | None] = field(default_factory=dict)
    key: str = ""                                                   # the image's image_key
    voxels: str = ""                                                # its voxel_digest

    def unscored_reason(self) -> str | None:
        """Why this case is left out of the Dice comparison; None when every model has a Dice."""
        missing = [slot for slot, dice in sorted(self.dice.items()) if math.isnan(dice)]
        if not missing:
            return None
        whose = "their" if len(missing) > 1 else "its"
        return (f"no Dice for {' and '.join(missing)}: no foreground class in the reviewed labels or in "
                f"{whose} prediction on the {counted(self.reviewed, 'reviewed slice')} "
                "(counted in the correction effort)")

    def unclicked_reason(self) -> str | None:
        """Why this case is left out of the clicks' comparison (--robot); None when every
        model has a count."""
        missing = [slot for slot, clicks in sorted(self.clicks_to_90.items()) if clicks is None]
        if not missing:
            return None
        # 50: session.reviewer.MIN_VOXELS (not imported: it brings torch), as _robot_markdown says it
        return (f"no clicks for {' and '.join(missing)}: the {counted(self.reviewed, 'reviewed slice')} "
                f"{'holds' if self.reviewed == 1 else 'hold'} no "
                f"object of at least 50 voxels to click on (in the labels, or in "
                f"{'their' if len(missing) > 1 else 'its'} prediction where the labels have none)")


class NoVerdictError(SegviewError):
    """No case of a dataset could be compared (``Verdict.check_evaluated``)."""


@dataclass
class Verdict:
    """The verdict of ``checkpoints`` ({"A": path, "B": path}). ``cases``: every case that
    could be evaluated (the correction effort covers them all); ``scored``: those where
    every model has a Dice (the Dice comparison); ``left_out``: case -> why it is not in
    ``scored`` (flagged in the worklist, no reviewed slice, an image that cannot be read, a
    model without a Dice)."""
    dataset: Path
    checkpoints: dict[str, Path]
    classes: list[LabelClass]
    cases: list[CaseVerdict]
    excluded: dict[str, str] = field(default_factory=dict)   # not evaluated at all: why
    only: list[str] | None = None   # the cases asked for (e.g. the split's held-out ones); None: all
    trained_on: dict[str, list[str]] = field(default_factory=dict)  # slot -> evaluated cases it learnt from

    @cached_property
    def names(self) -> dict[str, str]:
        """Slot -> the checkpoint's name as the reports give it (``distinct_names``)."""
        return distinct_names(self.checkpoints)

    @property
    def scored(self) -> list[CaseVerdict]:
        return [c for c in self.cases if c.unscored_reason() is None]

    @property
    def left_out(self) -> dict[str, str]:
        reasons = dict(self.excluded)
        for case in self.cases:
            reason = case.unscored_reason()
            if reason is not None:
                reasons[case.case] = reason
        return dict(sorted(reasons.items()))

    def check_evaluated(self) -> None:
        """Raises NoVerdictError when no case could be evaluated (n = 0 is no verdict),
        saying why each case is out."""
        if self.cases:
            return
        reasons = "; ".join(f"{case}: {why}" for case, why in list(self.excluded.items())[:6]) or "no case"
        which = "held-out case" if self.only is not None else "case"
        raise NoVerdictError(f"no {which} of {self.dataset} has reviewed slices to compare A and B on ({reasons}); "
                             "review slices first (M marks a slice reviewed)")

    @property
    def robot(self) -> bool:
        """Whether the simulated reviewer's clicks were counted (``evaluate --robot``)."""
        return bool(self.cases) and all(c.clicks_to_90 for c in self.cases)

    @property
    def clicked(self) -> list[CaseVerdict]:
        """The cases where every model has a count of clicks (--robot)."""
        return [c for c in self.cases if c.unclicked_reason() is None]

    @property
    def clicks_left_out(self) -> dict[str, str]:
        """Case -> why it is out of the clicks' comparison (no object large enough to click on)."""
        reasons = {c.case: c.unclicked_reason() for c in self.cases}
        return {case: why for case, why in sorted(reasons.items()) if why is not None}

    def _over(self, figure: str) -> list[CaseVerdict]:
        """The cases ``figure`` ("dice", "correction_ml" or "clicks_to_90") is compared over."""
        return {"dice": self.scored, "clicks_to_90": self.clicked}.get(figure, self.cases)

    def paired(self, figure: str = "dice") -> dict:
        """B minus A per case of ``figure`` ("dice" over ``scored``, "correction_ml" over
        every case): the fields of ``core.compare.paired_difference``; ``b_better`` counts
        the cases where B did better (less correction, fewer clicks)."""
        cases = self._over(figure)
        return paired_difference([getattr(c, figure)["A"] for c in cases], [getattr(c, figure)["B"] for c in cases],
                                 lower_is_better=figure != "dice")

    def summary(self, slot: str) -> dict:
        """Model ``slot``'s figures for verdict.json."""
        dice = np.array([c.dice[slot] for c in self.scored], float)
        ml = np.array([c.correction_ml[slot] for c in self.cases], float)
        invented = {c.case: sum(c.invented_ml[slot].values()) for c in self.cases if c.invented_ml[slot]}
        return {"checkpoint": self.names[slot], "dice_mean": _mean(dice), "dice_std": _std(dice),
                "dice_n": int(dice.size), "correction_ml_mean": _mean(ml), "correction_ml_std": _std(ml),
                "correction_n": int(ml.size), "invented_ml": invented}

    def to_json(self) -> dict:
        """verdict.json: ``cases`` (names in the Dice comparison), ``n``, ``left_out``
        ({case: reason}), per model its ``summary``, and with two models
        ``dice_difference`` and ``correction_ml_difference`` (B minus A: ``mean``,
        ``ci95`` [low, high], ``wilcoxon_p``, ``n``, ``b_better``, ``a_better``,
        ``supports_verdict``). No score is null."""
        scored = self.scored
        document: dict = {"dataset": self.dataset.name, "scoring_rule": SCORING_RULE,
                          "cases": [c.case for c in scored], "n": len(scored), "left_out": self.left_out,
                          "correction_cases": [c.case for c in self.cases], "min_pairs": MIN_PAIRS,
                          "only": self.only, "trained_on": self.trained_on}
        for slot in self.checkpoints:
            document[slot] = self.summary(slot)
            if self.robot:  # as the summary's other figures: mean, std and n (verdict.md shows all three)
                clicks = np.array([c.clicks_to_90[slot] for c in self.clicked], float)
                document[slot].update({"clicks_to_90_mean": _mean(clicks), "clicks_to_90_std": _std(clicks),
                                       "clicks_n": int(clicks.size)})
        if len(self.checkpoints) == 2:
            figures = [("dice", "dice"), ("correction_ml", "correction_ml")]
            if self.robot:
                figures.append(("clicks_to_90", "clicks"))
            for figure, key in figures:
                p = self.paired(figure)
                document[f"{key}_difference"] = {
                    "mean": p["mean_difference"], "std": p["std_difference"], "ci95": list(p["ci95"]),
                    "wilcoxon_p": p["p_value"], "n": p["pairs"], "differing": p["differing"], "b_better": p["b_better"],
                    "a_better": p["a_better"],
                    # figures of a model on cases it learnt from are no evidence (``trained_on``)
                    "supports_verdict": p["supports_verdict"] and not self.trained_on}
                if figure == "clicks_to_90":
                    document[f"{key}_difference"]["left_out"] = self.clicks_left_out
        return finite_or_none(document)

    def rows(self) -> tuple[list[str], list[dict]]:
        """Columns and rows of results.csv: one row per case and model; ``dice_scored`` says
        whether the case is in the Dice comparison."""
        names = [class_name(self.classes, v) for v in range(1, len(self.classes))]
        columns = ["case", "model", "checkpoint", "reviewed_slices", "slices", "dice", "dice_scored",
                   *[f"dice_{n}" for n in names], "correction_voxels", "correction_ml", "invented_ml"]
        rows = []
        for case in self.cases:
            scored = case.unscored_reason() is None
            for slot in self.checkpoints:
                per_class = case.dice_per_class[slot]
                rows.append({"case": case.case, "model": slot, "checkpoint": self.names[slot],
                             "reviewed_slices": case.reviewed, "slices": case.slices,
                             "dice": csv_cell(case.dice[slot]), "dice_scored": int(scored),
                             **{f"dice_{n}": csv_cell(per_class[v] if v < len(per_class) else math.nan)
                                for v, n in enumerate(names, 1)},
                             "correction_voxels": case.correction_voxels[slot],
                             "correction_ml": f"{case.correction_ml[slot]:.4f}",
                             "invented_ml": f"{sum(case.invented_ml[slot].values()):.4f}"})
                if self.robot:  # empty where nothing was large enough to click on, not 0
                    rows[-1]["clicks_to_90"] = csv_cell(case.clicks_to_90[slot])
                    rows[-1]["clicks_scored"] = int(case.unclicked_reason() is None)
        return columns + (["clicks_to_90", "clicks_scored"] if self.robot else []), rows

    def markdown(self) -> str:
        """The summary: the rule, per model its means with n, the paired differences with
        their n (and a warning below ``MIN_PAIRS``), invented classes, the cases left out."""
        scored = self.scored
        lines = [f"# A/B verdict over reviewed slices: {self.dataset.name}", "",
                 f"Scoring rule: {SCORING_RULE}", "",
                 *([f"Only the cases asked for (e.g. the held-out cases of the dataset's split): "
                    f"{', '.join(self.only) or 'none'}.", ""] if self.only is not None else []),
                 (f"Dice compared on n = {counted(len(scored), 'case')} "
                  f"({counted(sum(c.reviewed for c in scored), 'reviewed slice')}); "
                  f"correction effort on {counted(len(self.cases), 'case')}; {len(self.excluded)} not evaluated, "
                  f"{len(self.left_out) - len(self.excluded)} more left out of the Dice only."), "",
                 *self._trained_on_markdown(),
                 "| model | checkpoint | Dice (mean ± std) | n | correction mL (mean ± std) | n |",
                 "|---|---|---|---|---|---|"]
        for slot in self.checkpoints:
            s = self.summary(slot)
            dice = np.array([c.dice[slot] for c in scored], float)
            ml = np.array([c.correction_ml[slot] for c in self.cases], float)
            lines.append(f"| {slot} | {self.names[slot]} | {_mean_std(dice)} | {s['dice_n']} | {_mean_std(ml, 2)} "
                         f"| {s['correction_n']} |")
        if len(self.checkpoints) == 2:
            lines += ["", ("Paired per case, B minus A: mean difference [bootstrap 95 % interval of the mean, "
                           "10000 resamples, seed 0], two-sided Wilcoxon signed-rank p (exact for small n):"), ""]
            for figure, label, better in (("dice", "Dice", "higher"), ("correction_ml", "correction (mL)", "lower")):
                p = self.paired(figure)
                low, high = p["ci95"]
                lines.append(f"- {label}: n = {counted(p['pairs'], 'pair')}, mean difference "
                             f"{number_text(p['mean_difference'], 4)} "
                             f"[{number_text(low, 4)}, {number_text(high, 4)}], p = {number_text(p['p_value'], 4)}, "
                             f"B {better} in {p['b_better']} "
                             f"of {counted(p['pairs'], 'case')}")
                note = small_sample_note(p["pairs"], differing=p["differing"])
                if note:
                    lines.append(f"  **{note}**")
        if self.robot:
            lines += ["", self._robot_markdown()]
        lines += ["", self._invented_markdown()]
        dice_only = {case: why for case, why in self.left_out.items() if case not in self.excluded}
        for heading, cases in (("Not evaluated (neither in the Dice nor in the correction effort)", self.excluded),
                               ("Left out of the Dice comparison (still in the correction effort)", dice_only)):
            if cases:
                lines += ["", f"{heading}:", ""]
                lines += [f"- {case}: {why}" for case, why in sorted(cases.items())]
        return "\n".join(lines) + "\n"

    def _trained_on_markdown(self) -> list[str]:
        """A warning per model that learnt from some of the cases it is judged on."""
        # With --held-out the split's cases are already all that is judged: a model that learnt
        # from them did so elsewhere (its own training data), so --held-out is no remedy.
        remedy = "Judge it on cases it never trained on." if self.only is not None \
            else "Compare on the held-out cases (evaluate --held-out)."
        lines = []
        for slot, names in self.trained_on.items():
            shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
            lines += [f"**Model {slot} ({self.names[slot]}) was trained on {len(names)} of these cases "
                      f"({shown}): its figures there are no evidence of how it does on cases it never saw. "
                      f"{remedy}**", ""]
        return lines

    def _robot_markdown(self) -> str:
        """--robot: the simulated reviewer's clicks per case, and B minus A paired."""
        lines = ["The simulated reviewer (session.reviewer; --robot): clicks of the interactive model to bring "
                 "each class on each reviewed slice to Dice 0.90 (objects of at least 50 voxels below it; one "
                 "that never gets there in 20 clicks counts 20), summed per case:", ""]
        for slot in self.checkpoints:
            values = np.array([c.clicks_to_90[slot] for c in self.clicked], float)
            lines.append(f"- {slot} ({self.names[slot]}): {_mean_std(values, 1)} clicks per case, n = {values.size}")
        p = self.paired("clicks_to_90")
        low, high = p["ci95"]
        lines.append(f"- clicks, B minus A: n = {counted(p['pairs'], 'pair')}, mean difference "
                     f"{number_text(p['mean_difference'], 2)} [{number_text(low, 2)}, {number_text(high, 2)}], "
                     f"p = {number_text(p['p_value'], 4)}, "
                     f"B lower in {p['b_better']} of {counted(p['pairs'], 'case')}")
        note = small_sample_note(p["pairs"], differing=p["differing"])
        if note:
            lines.append(f"  **{note}**")
        left_out = self.clicks_left_out
        if left_out:  # 0 clicks there would read as "needed no correction"
            lines += ["", f"Left out of the clicks ({counted(len(left_out), 'case')}; still in the Dice and the "
                      "correction effort):", "", *[f"- {case}: {why}" for case, why in left_out.items()]]
        return "\n".join(lines)

    def _invented_markdown(self) -> str:
        """Per case and class, the mL each model predicted where the reviewed labels hold
        none of that class: what the Dice rule alone would not show."""
        rows = [(c.case, value) for c in self.cases
                for value in sorted({v for slot in self.checkpoints for v in c.invented_ml[slot]})]
        if not rows:
            return "No model predicted a class the reviewed labels do not hold."
        slots = list(self.checkpoints)
        lines = ["Predicted where the reviewed labels hold none of that class (mL):", "",
                 "| case | class | " + " | ".join(slots) + " |", "|---|---|" + "---|" * len(slots)]
        by_case = {c.case: c for c in self.cases}
        for name, value in rows:
            cells = [f"{by_case[name].invented_ml[slot].get(value, 0.0):.2f}" for slot in slots]
            lines.append(f"| {name} | {class_name(self.classes, value)} | " + " | ".join(cells) + " |")
        totals = [f"{sum(sum(c.invented_ml[slot].values()) for c in self.cases):.2f}" for slot in slots]
        lines.append("| all cases | | " + " | ".join(totals) + " |")
        return "\n".join(lines)


def reviewed_verdict(dataset, checkpoints: dict[str, Path], progress: Progress | None = None,
                     worklist: Worklist | None = None, device: str | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     cases: list[str] | None = None, robot: Robot | None = None) -> Verdict | None:
    """Score ``checkpoints`` ({"A": path, "B": path}) on the reviewed slices of every case
    of ``dataset`` (a folder ``Worklist.open`` reads). Predictions come from the worklist's
    prediction cache where it has them; otherwise only the reviewed slices are predicted.
    ``device``: where the models run (default: the best there is). ``cases``: only these
    (e.g. the held-out cases of the dataset's split). ``progress(done, total, case)`` before
    each case; None when ``should_stop()`` said stop (asked between cases). ``robot``
    (``evaluate --robot``): called per case and model with (image (Z, Y, X), labels,
    prediction, reviewed (Z,) bool), gives the simulated reviewer's ``clicks_to_90``.
    Raises DatasetError, CheckpointError."""
    from ..ml.inference import Predictor

    worklist = worklist or Worklist.open(dataset, checkpoints)
    checkpoints = {slot: Path(path) for slot, path in sorted(checkpoints.items())}
    predictors = {slot: Predictor.from_checkpoint(path, device) for slot, path in checkpoints.items()}
    _check_one_task(predictors, checkpoints, worklist.classes)
    num_classes = max(p.num_classes for p in predictors.values())
    classes = worklist.classes or list(next(iter(predictors.values())).classes)
    chosen = [c for c in worklist.cases if cases is None or c.name in cases]
    if not worklist.classes:  # no dataset.json "labels": the label files name the classes
        _check_label_files(predictors, checkpoints, [c for c in chosen if c.status != "flagged" and c.reviewed_count])
    evaluated, excluded = [], {}
    for n, case in enumerate(chosen):
        if should_stop is not None and should_stop():
            return None
        if progress is not None:
            progress(n, len(chosen), case.name)
        if case.status == "flagged":  # a problem noted in the worklist: no evidence, as for training
            excluded[case.name] = flagged_reason(case.note)
            continue
        if not case.reviewed_count:
            excluded[case.name] = "no reviewed slice"
            continue
        try:
            result = _case_verdict(worklist, case, checkpoints, predictors, num_classes, robot)
        except VolumeLoadError as exc:
            excluded[case.name] = str(exc)
            continue
        if isinstance(result, str):
            excluded[case.name] = result
        else:
            evaluated.append(result)
    return Verdict(Path(dataset), checkpoints, classes, evaluated, excluded, None if cases is None else list(cases),
                   _trained_on(predictors, Path(dataset), evaluated))


def _trained_on(predictors: dict, dataset: Path, cases: list[CaseVerdict]) -> dict[str, list[str]]:
    """slot -> the ``cases`` its checkpoint learnt from (``ml.metadata.trained_cases``): a
    fine-tune judged on its own training cases (a tester's verdict said nothing)."""
    digests = {c.case: (c.key, c.voxels) for c in cases}
    phantom = str(phantom_written(dataset).get("task") or "")
    found = {slot: trained_cases(p.meta, digests, dataset.absolute().name, phantom) for slot, p in predictors.items()}
    return {slot: names for slot, names in found.items() if names}


def _check_one_task(predictors: dict, checkpoints: dict[str, Path], classes: list[LabelClass] | None) -> None:
    """Raises CheckpointError unless both models segment as many classes as the dataset
    labels (as model A, where the dataset does not say), under the same names: a lung model
    scored against cardiac labels got Dice 0 in a verdict, silently, and one whose class 1
    is the dataset's class 2 was scored under the other class, where the worklist refuses it
    (``Worklist.checkpoint_problems``)."""
    def described(found) -> str:
        count = len(found) - 1
        return f"{count} class{'es' if count != 1 else ''} ({', '.join(c.name for c in found[1:])})"

    first = next(iter(predictors))
    reference, whose = ((classes, "the dataset labels") if classes else
                        (predictors[first].classes, f"model {first} ({checkpoints[first].name}) predicts"))
    for slot, predictor in predictors.items():
        if predictor.num_classes != len(reference):
            raise CheckpointError(f"Model {slot} ({checkpoints[slot].name}) predicts {described(predictor.classes)}, "
                                  f"but {whose} {described(reference)}: a verdict compares models of the "
                                  "dataset's task.")
        check_class_names(f"Model {slot} ({checkpoints[slot].name})", predictor.classes, classes or [])


def _check_label_files(predictors: dict, checkpoints: dict[str, Path], cases) -> None:
    """Raises CheckpointError where a model names a class value otherwise than the class
    file of the labels of one of ``cases`` (those scored), before anything is predicted:
    where dataset.json names no classes those files name them, as the whole-case evaluate
    reads them (``ml.data.folder_dataset``). A class file that cannot be read is left to
    ``_case_verdict``, which leaves its case out."""
    for case in cases:
        try:
            theirs = load_classes(case.labels) if case.labels.is_file() else []
        except VolumeLoadError:
            continue
        for slot, predictor in predictors.items():
            check_class_names(f"Model {slot} ({checkpoints[slot].name}) on the labels of {case.name}",
                              predictor.classes, theirs)


def _case_verdict(worklist: Worklist, case, checkpoints: dict[str, Path], predictors: dict,
                  num_classes: int, robot: Robot | None = None) -> CaseVerdict | str:
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
    key = image_key(volume)
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    verdict = CaseVerdict(case.name, int(reviewed.sum()), len(reviewed), key=key, voxels=voxel_digest(volume))
    for slot, path in checkpoints.items():
        prediction = worklist.cache.get(key, checkpoint_digest(path))
        if prediction is None or prediction.shape != volume.shape:
            prediction = _predict_slices(predictors[slot], volume, np.flatnonzero(reviewed))
        counts = confusion_counts(prediction[reviewed], label_file.array[reviewed], num_classes)
        scores = scores_from_counts(counts)
        verdict.dice[slot] = scores.mean_dice
        verdict.dice_per_class[slot] = scores.dice
        voxels, ml = correction_effort(prediction, label_file.array, reviewed, volume.spacing)
        verdict.correction_voxels[slot], verdict.correction_ml[slot] = voxels, ml
        verdict.invented_ml[slot] = _invented_ml(counts, voxel_ml)
        if robot is not None:
            clicks = robot(volume, label_file.array, prediction, reviewed)
            verdict.clicks_to_90[slot] = None if clicks is None else int(clicks)
    return verdict


def _invented_ml(counts: np.ndarray, voxel_ml: float) -> dict[int, float]:
    """Class value -> mL predicted of each foreground class the labels do not hold, from a
    (C, C) confusion matrix (rows: labels, columns: prediction)."""
    in_labels, predicted = counts.sum(axis=1), counts.sum(axis=0)
    return {c: float(predicted[c]) * voxel_ml for c in range(1, len(predicted))
            if in_labels[c] == 0 and predicted[c] > 0}


def _predict_slices(predictor, volume, indices) -> np.ndarray:
    """(z, y, x) uint8: slices ``indices`` predicted, the rest 0."""
    labels = np.zeros(volume.shape, np.uint8)
    for prediction in predictor.predict_slices(predictor.prepare(volume), [int(z) for z in indices]):
        labels[prediction.index] = prediction.labels
    return labels


# -- the report ------------------------------------------------------------------------------

#: The files of a dataset report, in ``write_dataset_report``'s order.
REPORT_FILES = ("results.csv", "verdict.md", "verdict.json", "verdict.png")


def distinct_names(paths: dict[str, Path]) -> dict[str, str]:
    """Each path's file name, with as many of its folders before it as it takes to tell the
    paths apart: two runs' best.safetensors read "ce/best.safetensors" and
    "ce_dice/best.safetensors", where both read "best.safetensors"."""
    depth = max((len(p.parts) for p in paths.values()), default=1)
    for n in range(1, depth + 1):
        names = {slot: "/".join(p.parts[-n:]) for slot, p in paths.items()}
        if len(set(names.values())) == len(names):
            return names
    return {slot: p.name for slot, p in paths.items()}  # the same file twice


def write_dataset_report(folder, verdict: Verdict) -> list[Path]:
    """``results.csv`` (per case and model), ``verdict.md`` (the summary), ``verdict.json``
    (``Verdict.to_json``) and ``verdict.png`` (A vs B Dice per scored case; correction
    effort per case) in ``folder``, each written atomically. Returns the paths. Raises
    NoVerdictError (nothing written) when no case was evaluated, OSError."""
    verdict.check_evaluated()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in REPORT_FILES]
    write_csv(paths[0], *verdict.rows())
    atomic_write_text(paths[1], verdict.markdown())
    atomic_write_text(paths[2], json.dumps(verdict.to_json(), indent=1, allow_nan=False))
    replace_atomically(paths[3], lambda temporary: _plot(temporary, verdict))
    return paths


def _plot(path, verdict: Verdict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (left, right) = pyplot.subplots(1, 2, figsize=(10, 4), dpi=100)
    a = [c.dice.get("A", math.nan) for c in verdict.scored]
    b = [c.dice.get("B", math.nan) for c in verdict.scored]
    left.scatter(a, b, color="#3070b0")
    left.plot([0, 1], [0, 1], color="#999999", linewidth=1)
    left.set(xlabel="Dice of A (reviewed slices)", ylabel="Dice of B", xlim=(0, 1.02), ylim=(0, 1.02),
             title=f"each dot a case (n = {len(a)}); above the line B is better")
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


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _std(values: np.ndarray) -> float:
    """The sample standard deviation (ddof 1); NaN below two values."""
    return float(values.std(ddof=1)) if values.size > 1 else math.nan


def _mean_std(values: np.ndarray, digits: int = 3) -> str:
    if not values.size:
        return "-"
    return f"{_mean(values):.{digits}f} ± {number_text(_std(values), digits)}"
