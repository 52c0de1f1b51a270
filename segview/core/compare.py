"""Comparing two models (A and B) against the labels being corrected: where each is
wrong, which slices are most disputed, the paired difference, and the report.

Everything here is numpy (and matplotlib for the report's plot); the compare view of the
window only shows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .classes import MODEL_COLORS
from .io import replace_atomically
from .live import LiveMetrics
from .report import counted, csv_cell, number_text, write_csv
from .measures import class_volumes_ml
from .metrics import SURFACE_DICE_TOLERANCE_MM, reviewed_surface_scores

# Disagreement categories, per voxel.
AGREE, ONLY_A_WRONG, ONLY_B_WRONG, BOTH_WRONG, UNREVIEWED_DISAGREE = range(5)
CATEGORY_NAMES = {ONLY_A_WRONG: "only A wrong", ONLY_B_WRONG: "only B wrong", BOTH_WRONG: "both wrong",
                  UNREVIEWED_DISAGREE: "A and B disagree (not reviewed)"}
#: Where A and B disagree on a slice not reviewed: a saturated indigo blue, seen on grey images
#: (a light grey was not) and far from the class palettes and the model colours.
CATEGORY_COLORS = {ONLY_A_WRONG: MODEL_COLORS["A"], ONLY_B_WRONG: MODEL_COLORS["B"], BOTH_WRONG: (230, 30, 60),
                   UNREVIEWED_DISAGREE: (60, 0, 255)}


def disagreement(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, reviewed: bool) -> np.ndarray:
    """Category of every voxel of one slice (or any same-shaped arrays): against the labels
    where they were reviewed; where not, only whether A and B disagree (the labels there
    may be a model's own prediction). uint8, AGREE where nothing is wrong."""
    if not reviewed:
        return np.where(pred_a != pred_b, UNREVIEWED_DISAGREE, AGREE).astype(np.uint8)
    a_wrong, b_wrong = pred_a != labels, pred_b != labels
    out = np.zeros(labels.shape, np.uint8)
    out[a_wrong & ~b_wrong] = ONLY_A_WRONG
    out[~a_wrong & b_wrong] = ONLY_B_WRONG
    out[a_wrong & b_wrong] = BOTH_WRONG
    return out


@dataclass
class SliceRank:
    z: int
    disputed: int        # voxels where A and B differ
    dice_a: float        # mean foreground Dice against the labels (NaN: nothing to score)
    dice_b: float
    reviewed: bool = False  # marked reviewed: ranked after every slice not yet reviewed

    @property
    def worst(self) -> float:
        scored = [d for d in (self.dice_a, self.dice_b) if not math.isnan(d)]
        return min(scored) if scored else math.nan


def rank_slices(live: LiveMetrics, a: str = "A", b: str = "B", by: str = "disputed") -> list[SliceRank]:
    """Slices ordered by where review matters most: ``disputed`` (A and B differ most,
    first; slices where they agree left out) or ``worst`` (the lower of the two Dice, lowest
    first; unscored slices last). Slices already reviewed come after all the others, in the
    same order among themselves."""
    disputed = np.where(live.predicted[a] & live.predicted[b], live.disputed_voxels(a, b), 0)  # pending: 0
    dice_a, dice_b = live.dice_along_slices(a), live.dice_along_slices(b)
    reviewed = live.labels.reviewed
    ranks = [SliceRank(z, int(disputed[z]), float(dice_a[z]), float(dice_b[z]), bool(reviewed[z]))
             for z in range(len(disputed))]
    if by == "disputed":
        return sorted((r for r in ranks if r.disputed), key=lambda r: (r.reviewed, -r.disputed, r.z))
    if by == "worst":
        return sorted(ranks, key=lambda r: (r.reviewed, math.isnan(r.worst), r.worst, r.z))
    raise ValueError(f"unknown ranking {by!r}: disputed or worst")


#: Fewer differing pairs than this cannot support a verdict: with n pairs the smallest
#: two-sided Wilcoxon p-value there is is 2 / 2**n (0.0625 for 5: never below 0.05, 0.031
#: for 6), and a bootstrap of so few values is no confidence interval. Reaching it says a
#: verdict is possible, not that there is one: the p-value and the interval say that.
MIN_PAIRS = 6
RESAMPLES = 10_000   # bootstrap resamples of the mean difference
SEED = 0             # numpy's default generator: the same data give the same interval
CONFIDENCE = 0.95


def paired_difference(a, b, lower_is_better: bool = False) -> dict:
    """B minus A over paired values (cases or slices) of one scoring rule: a pair where
    either is NaN (no score) is dropped for both. Returns ``pairs`` (n), ``mean_difference``,
    ``std_difference`` (NaN below two pairs), how often each is better (``b_better``,
    ``a_better``: higher, or lower for ``lower_is_better`` figures such as correction
    effort and clicks), ``differing`` (the pairs that differ: the Wilcoxon test leaves out
    ties), ``p_value`` (``signed_rank_p``: two-sided Wilcoxon signed-rank, exact with ties;
    1 when no pair differs; NaN below two pairs), ``ci95`` (``bootstrap_interval``
    of the mean difference; NaN below two pairs, where it would be the one value twice) and
    ``supports_verdict`` (False below ``MIN_PAIRS`` differing pairs, the test's own n;
    ``small_sample_note`` says why)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = ~(np.isnan(a) | np.isnan(b))
    differences = b[keep] - a[keep]
    differing = int(np.count_nonzero(differences))
    several = differences.size > 1
    p_value = math.nan
    if several:
        p_value = signed_rank_p(differences)
    b_gains = -differences if lower_is_better else differences
    return {"pairs": int(differences.size), "differing": differing,
            "mean_difference": float(differences.mean()) if differences.size else math.nan,
            "std_difference": float(differences.std(ddof=1)) if several else math.nan,
            "b_better": int((b_gains > 0).sum()), "a_better": int((b_gains < 0).sum()),
            "p_value": p_value, "ci95": bootstrap_interval(differences) if several else (math.nan, math.nan),
            "supports_verdict": differing >= MIN_PAIRS}


#: Up to this many differing pairs ``signed_rank_p`` is exact; beyond, the normal
#: approximation (tie-corrected) is within a few thousandths of it.
EXACT_PAIRS = 400


def signed_rank_p(differences) -> float:
    """Two-sided p of Wilcoxon's signed-rank test of ``differences`` (n,) against a
    median of 0: zeros left out (Wilcoxon's rule), tied magnitudes given their mean rank,
    and the p exact, from the distribution of the positive ranks' sum over all 2^n sign
    flips of those very ranks (the permutation distribution: exact with ties too, where
    scipy's ``method="exact"`` assumes none and its default turns to a permutation or a
    normal approximation). Beyond ``EXACT_PAIRS`` pairs, the normal approximation with
    the tie correction. 1 when no difference is non-zero."""
    from scipy.stats import norm, rankdata

    values = np.asarray(differences, float)
    values = values[values != 0]
    if values.size == 0:
        return 1.0
    ranks = rankdata(np.abs(values))  # mean ranks: multiples of one half
    if values.size > EXACT_PAIRS:
        n = values.size
        mean, variance = n * (n + 1) / 4, (ranks ** 2).sum() / 4  # the variance of the tied ranks' sum
        z = (ranks[values > 0].sum() - mean) / math.sqrt(variance)
        return float(min(1.0, 2 * norm.sf(abs(z))))
    doubled = np.rint(2 * ranks).astype(np.int64)  # whole numbers, so sums index an array
    chances = np.zeros(int(doubled.sum()) + 1)
    chances[0] = 1.0
    for rank in doubled:  # each rank positive or negative with chance 1/2
        chances[rank:] = 0.5 * (chances[rank:] + chances[:-rank])
        chances[:rank] *= 0.5
    observed = int(doubled[values > 0].sum())
    at_most, at_least = chances[:observed + 1].sum(), chances[observed:].sum()
    return float(min(1.0, 2 * min(at_most, at_least)))


def bootstrap_interval(differences, resamples: int = RESAMPLES, seed: int = SEED,
                       confidence: float = CONFIDENCE, weights=None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` (n,): the values are
    resampled with replacement ``resamples`` times (numpy's default generator, ``seed``).
    With ``weights`` (n,) > 0, the mean of each resample is sum(values) / sum(weights): the
    values are clusters' sums (a case's objects) and the weights their sizes, so whole
    clusters are resampled. The values are put in order first, so the interval is that of
    the values alone, whatever order (a case renamed) they came in: a helper's renamed case
    moved an interval's end from 0.44 to 0.56. (NaN, NaN) for none; one value gives it twice."""
    values = np.asarray(differences, float)
    if values.size == 0:
        return math.nan, math.nan
    sizes = np.ones_like(values) if weights is None else np.asarray(weights, float)
    order = np.lexsort((sizes, values))
    values, sizes = values[order], sizes[order]
    picks = np.random.default_rng(seed).integers(0, values.size, (resamples, values.size))
    means = values[picks].mean(axis=1) if weights is None else values[picks].sum(axis=1) / sizes[picks].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def small_sample_note(pairs: int, unit: str = "cases", differing: int | None = None) -> str:
    """Why ``pairs`` paired values, ``differing`` of them not tied (all by default), cannot
    support a verdict; "" from ``MIN_PAIRS`` differing pairs on."""
    differing = pairs if differing is None else differing
    if differing >= MIN_PAIRS:
        return ""
    if pairs < 2:
        said = counted(pairs, f"paired {unit.removesuffix('s')}", f"paired {unit}")  # "1 paired case"
        return f"{said}: no test and no interval are possible; this is no verdict."
    if differing == 0:
        return f"A and B score the same on all {pairs} paired {unit}: there is no difference to test."
    differ = "differs" if differing == 1 else "differ"
    which = f"{differing} of the {pairs} paired {unit} {differ} (the test leaves out ties)" if differing < pairs \
        else f"{pairs} paired {unit}"
    return (f"Only {which}: the test and the interval cannot support a verdict (the smallest "
            f"two-sided Wilcoxon p-value {counted(differing, 'pair')} can give is {2 / 2 ** differing:.3g}, "
            f"and a bootstrap of {pairs} values is no confidence interval). "
            f"At least {MIN_PAIRS} that differ are needed.")


# -- report ------------------------------------------------------------------------------

def write_report(folder, live: LiveMetrics, classes, names: dict[str, str],
                 tolerance_mm: float | None = None) -> list[Path]:
    """``comparison.md`` (Table-1 shape over the reviewed slices, with the paired per-slice
    difference), ``slices.csv``, ``classes.csv`` and ``dice_along_slices.png`` in
    ``folder``. ``names``: model key -> checkpoint description; ``tolerance_mm``: the
    surface Dice tolerance (default ``REPORT_TOLERANCE_MM``). Returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / name for name in ("comparison.md", "slices.csv", "classes.csv", "dice_along_slices.png")]
    _write_text(written[0], comparison_markdown(live, names, classes, tolerance_mm))
    write_csv(written[1], *slice_table(live))
    write_csv(written[2], *class_table(live, classes))
    replace_atomically(written[3], lambda temporary: _plot(temporary, live))
    return written


def comparison_markdown(live: LiveMetrics, names: dict[str, str], classes=None,
                        tolerance_mm: float | None = None) -> str:
    """The Table-1-shaped comparison over the reviewed slices; with ``classes``, also each
    class's volumes and boundary metrics (``boundary_markdown``, at ``tolerance_mm``)."""
    reviewed = live.labels.reviewed
    lines = [f"Labels reviewed on {int(reviewed.sum())} of {len(reviewed)} slices; the volume scores "
             "cover those slices.", "",
             "| model | checkpoint | Dice | IoU | pixel error |", "|---|---|---|---|---|"]
    for key in ("A", "B"):
        scores = live.volume_scores(key)
        cells = [number_text(scores.mean_dice), number_text(scores.mean_iou),
                 number_text(scores.pixel_error if scores.voxels else math.nan, 5)]
        lines.append(f"| {key} | {names.get(key, key)} | {' | '.join(cells)} |")
    dice_a, dice_b = live.dice_along_slices("A")[reviewed], live.dice_along_slices("B")[reviewed]  # NaN: pending
    paired = paired_difference(dice_a, dice_b)
    low, high = paired["ci95"]
    lines += ["", f"Per reviewed slice, Dice B - A (slices where either model has no Dice left out for both): "
                  f"{number_text(paired['mean_difference'])} +- {number_text(paired['std_difference'])} over "
                  f"n = {paired['pairs']} slices, bootstrap 95 % interval [{number_text(low)}, {number_text(high)}]; "
                  f"B better on {paired['b_better']}, A on {paired['a_better']}; Wilcoxon signed-rank p = "
                  f"{number_text(paired['p_value'], 4)}. Neighbouring slices of one image are not independent: "
                  "read the p-value and interval as a description of this image, not of the models."]
    note = small_sample_note(paired["pairs"], "slices", paired["differing"])
    if note:
        lines += ["", f"**{note}**"]
    if classes is not None:
        lines += ["", boundary_markdown(live, classes, REPORT_TOLERANCE_MM if tolerance_mm is None else tolerance_mm)]
    return "\n".join(lines) + "\n"


#: The comparison report's surface Dice tolerance, as ``segview evaluate``'s default.
REPORT_TOLERANCE_MM = SURFACE_DICE_TOLERANCE_MM


def boundary_markdown(live: LiveMetrics, classes, tolerance_mm: float = REPORT_TOLERANCE_MM) -> str:
    """Per foreground class: volumes (mL) of the labels and of A and B over the reviewed
    slices, and B's and A's differences from the labels; HD95 (mm) and surface Dice of A
    and B over the reviewed slices both have predicted, by ``reviewed_surface_scores`` (the
    one policy of the measures dock and the verdict: each run of consecutive such slices a
    block, its faces cut at a slice left out no surface)."""
    reviewed = live.labels.reviewed
    spacing = live.labels.spacing
    keys = [k for k in ("A", "B") if k in live.predictions]
    count = max(live.num_classes, max((c.value for c in classes), default=0) + 1)
    labels_ml = class_volumes_ml(live.labels.array[reviewed], count, spacing)
    models_ml = {k: class_volumes_ml(live.predictions[k][reviewed], count, spacing) for k in keys}
    scored = reviewed.copy()
    for k in keys:
        scored &= live.predicted[k]  # both models on the same slices
    surfaces = {k: reviewed_surface_scores(live.predictions[k], live.labels.array, scored, count, spacing,
                                           tolerance_mm) for k in keys}
    runs = int(np.count_nonzero(np.diff(scored.astype(np.int8), prepend=0) == 1))
    header = (["class", "labels mL"] + [f"{k} mL" for k in keys] + [f"{k} - labels mL" for k in keys]
              + [f"HD95 {k} (mm)" for k in keys] + [f"surface Dice {k}" for k in keys])
    lines = [f"Volumes over the reviewed slices; HD95 and surface Dice (at {tolerance_mm:g} mm) over the "
             f"{int(scored.sum())} of {len(scored)} slices reviewed and predicted by "
             + ("both models" if len(keys) > 1 else "the model")
             + (", the whole volume." if scored.all() else
                f", in {runs} run{'s' if runs != 1 else ''} of consecutive slices: each run is scored as a block "
                "and a face cut at a slice left out is no surface."),
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in (c for c in classes if c.value):
        cells = [c.name, f"{labels_ml[c.value]:.2f}"] + [f"{models_ml[k][c.value]:.2f}" for k in keys]
        cells += [f"{models_ml[k][c.value] - labels_ml[c.value]:+.2f}" for k in keys]
        cells += [number_text(surfaces[k].hausdorff95[c.value], 2) for k in keys]
        cells += [number_text(surfaces[k].surface_dice[c.value]) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: ``slice`` is the 1-based number the window shows (array index z + 1).
SLICE_COLUMNS = ("slice", "reviewed", "dice_a", "dice_b", "dice_b_minus_a", "iou_a", "iou_b",
                 "pixel_error_a", "pixel_error_b", "voxels_a_differs_from_b")


def slice_table(live: LiveMetrics) -> tuple[tuple[str, ...], list[dict]]:
    disputed = live.disputed_voxels("A", "B")
    rows = []
    for z in range(len(live.labels.reviewed)):
        a, b = live.slice_scores("A", z), live.slice_scores("B", z)
        if a is None or b is None:
            continue  # pending: not predicted by both yet
        rows.append({"slice": z + 1, "reviewed": bool(live.labels.reviewed[z]), "dice_a": csv_cell(a.mean_dice),
                     "dice_b": csv_cell(b.mean_dice), "dice_b_minus_a": csv_cell(b.mean_dice - a.mean_dice),
                     "iou_a": csv_cell(a.mean_iou), "iou_b": csv_cell(b.mean_iou),
                     "pixel_error_a": csv_cell(a.pixel_error),
                     "pixel_error_b": csv_cell(b.pixel_error), "voxels_a_differs_from_b": int(disputed[z])})
    return SLICE_COLUMNS, rows


CLASS_COLUMNS = ("class", "dice_a", "dice_b", "dice_b_minus_a", "iou_a", "iou_b", "iou_b_minus_a",
                 "pixel_error_a", "pixel_error_b")


def class_table(live: LiveMetrics, classes) -> tuple[tuple[str, ...], list[dict]]:
    """Per foreground class over the reviewed slices."""
    a, b = live.volume_scores("A"), live.volume_scores("B")
    names = {c.value: c.name for c in classes}
    rows = []
    for value in range(1, live.num_classes):
        rows.append({"class": names.get(value, str(value)), "dice_a": csv_cell(a.dice[value]),
                     "dice_b": csv_cell(b.dice[value]), "dice_b_minus_a": csv_cell(b.dice[value] - a.dice[value]),
                     "iou_a": csv_cell(a.iou[value]), "iou_b": csv_cell(b.iou[value]),
                     "iou_b_minus_a": csv_cell(b.iou[value] - a.iou[value]),
                     "pixel_error_a": csv_cell(a.pixel_error_per_class[value]),
                     "pixel_error_b": csv_cell(b.pixel_error_per_class[value])})
    return CLASS_COLUMNS, rows


def _plot(path, live: LiveMetrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(8, 3), dpi=100)
    slices = np.arange(1, len(live.labels.reviewed) + 1)
    for key, color in (("A", "#ff8c00"), ("B", "#00beff")):
        axes.plot(slices, live.dice_along_slices(key), color=color, label=f"model {key}", marker=".")
    for z in np.flatnonzero(live.labels.reviewed):
        axes.axvspan(z + 0.5, z + 1.5, color="#dddddd", zorder=0)
    axes.set(xlabel="slice (shaded: reviewed)", ylabel="Dice (foreground mean)", ylim=(0, 1.05))
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)


def _write_text(path: Path, text: str) -> None:
    replace_atomically(path, lambda temporary: Path(temporary).write_text(text))
