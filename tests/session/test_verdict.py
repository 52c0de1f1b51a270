"""The A/B verdict over reviewed slices, recomputed independently from the saved files:
Dice and correction effort by hand, Wilcoxon by scipy, the bootstrap against scipy's."""
import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from segview.core.io import load_labels, load_volume
from segview.ml.inference import Predictor
from segview.session.verdict import RESAMPLES, bootstrap_interval, reviewed_verdict, write_dataset_report
from segview.session.worklist import Worklist

from .conftest import SPACING, make_checkpoint, make_dataset

REVIEWED = {"case_000": (0, 1, 2), "case_001": (3,), "case_002": (1, 4, 5), "case_003": (0, 2, 4, 5)}


@pytest.fixture
def reviewed_dataset(tmp_path, checkpoints):
    """Five cases; four with reviewed (and partly corrected) slices, case_004 with none."""
    folder = tmp_path / "ds"
    make_dataset(folder, 5)
    worklist = Worklist.open(folder, checkpoints)
    for n, (name, slices) in enumerate(REVIEWED.items()):
        session = worklist.session(name)
        session.predict()
        with session.labels.step():
            session.labels.paint(slices[0], [(4 + n, 4)], 1.5, 2)
        for z in slices:
            session.mark_reviewed(z)
        session.save()
        session.close()
    worklist.set_status("case_004", "flagged", "not looked at")
    return folder


def _dice_by_hand(prediction, labels, num_classes=3):
    """Mean over foreground classes of 2|P n R| / (|P| + |R|), classes absent from both skipped."""
    values = []
    for c in range(1, num_classes):
        p, r = prediction == c, labels == c
        if p.sum() + r.sum():
            values.append(2 * (p & r).sum() / (p.sum() + r.sum()))
    return float(np.mean(values)) if values else math.nan


def _recount(folder, checkpoints):
    """Per case and model, Dice and differing voxels over the reviewed slices named in the
    saved sidecars, with predictions of the whole volume."""
    figures = {}
    predictors = {slot: Predictor.from_checkpoint(path, "cpu") for slot, path in checkpoints.items()}
    for sidecar in sorted((folder / "labelsTr").glob("*.review.json")):
        document = json.loads(sidecar.read_text())
        reviewed = [entry["z"] for entry in document["reviewed"]]
        if not reviewed:
            continue
        name = sidecar.name[: -len(".review.json")]
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        labels = load_labels(folder / "labelsTr" / f"{name}.nii.gz", volume)[reviewed]
        for slot, predictor in predictors.items():
            prediction = predictor.predict_volume(volume)[reviewed]
            figures[name, slot] = (_dice_by_hand(prediction, labels), int((prediction != labels).sum()))
    return figures


def test_verdict_scores_reviewed_slices_only_and_leaves_out_cases_with_none(reviewed_dataset, checkpoints):
    verdict = reviewed_verdict(reviewed_dataset, checkpoints)
    expected = _recount(reviewed_dataset, checkpoints)

    assert [c.case for c in verdict.cases] == list(REVIEWED)
    assert verdict.left_out == ["case_004: no reviewed slice"]
    voxel_ml = np.prod(SPACING) / 1000
    for case in verdict.cases:
        assert case.reviewed == len(REVIEWED[case.case]) and case.slices == 6
        for slot in ("A", "B"):
            dice, voxels = expected[case.case, slot]
            assert case.dice[slot] == pytest.approx(dice, nan_ok=True)
            assert case.correction_voxels[slot] == voxels
            assert case.correction_ml[slot] == pytest.approx(voxels * voxel_ml)

    paired = verdict.paired("dice")
    a = np.array([expected[name, "A"][0] for name in REVIEWED])
    b = np.array([expected[name, "B"][0] for name in REVIEWED])
    assert paired["pairs"] == 4
    assert paired["mean_difference"] == pytest.approx(np.mean(b - a))
    assert paired["p_value"] == pytest.approx(stats.wilcoxon(b, a).pvalue)
    low, high = paired["interval"]
    assert low <= np.mean(b - a) <= high


def test_a_stopped_verdict_returns_nothing(reviewed_dataset, checkpoints):
    seen = []
    assert reviewed_verdict(reviewed_dataset, checkpoints, progress=lambda n, total, name: seen.append(name),
                            should_stop=lambda: len(seen) == 2) is None
    assert seen == ["case_000", "case_001"]


def test_cached_predictions_give_the_same_verdict(reviewed_dataset, checkpoints, monkeypatch):
    uncached = reviewed_verdict(reviewed_dataset, checkpoints)
    list(Worklist.open(reviewed_dataset, checkpoints).prediction_queue())

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although its prediction is cached")

    monkeypatch.setattr(Predictor, "predict_slices", no_model)
    cached = reviewed_verdict(reviewed_dataset, checkpoints)
    assert [(c.dice, c.correction_voxels) for c in cached.cases] == [
        (c.dice, c.correction_voxels) for c in uncached.cases]


def test_bootstrap_interval_is_reproducible_and_agrees_with_scipy():
    differences = np.random.default_rng(3).normal(0.02, 0.05, 30)
    low, high = bootstrap_interval(differences)
    assert low < differences.mean() < high
    assert bootstrap_interval(differences) == (low, high)
    assert bootstrap_interval(differences, seed=1) != (low, high)
    reference = stats.bootstrap((differences,), np.mean, n_resamples=RESAMPLES, method="percentile",
                                confidence_level=0.95, random_state=np.random.default_rng(9)).confidence_interval
    width = high - low
    assert low == pytest.approx(reference.low, abs=0.05 * width)
    assert high == pytest.approx(reference.high, abs=0.05 * width)
    assert bootstrap_interval([0.1]) == pytest.approx((0.1, 0.1))
    assert all(math.isnan(v) for v in bootstrap_interval([]))


def test_dataset_report_and_the_command(reviewed_dataset, checkpoints, tmp_path):
    from segview.cli import main

    verdict = reviewed_verdict(reviewed_dataset, checkpoints)
    paths = write_dataset_report(tmp_path / "report", verdict)
    assert [p.name for p in paths] == ["results.csv", "verdict.md", "verdict.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(paths[0].open()))
    assert [(r["case"], r["model"]) for r in rows] == [(name, slot) for name in REVIEWED for slot in "AB"]
    for row in rows:
        case = next(c for c in verdict.cases if c.case == row["case"])
        assert float(row["correction_ml"]) == pytest.approx(case.correction_ml[row["model"]], abs=1e-4)
    text = paths[1].read_text()
    assert "case_004: no reviewed slice" in text and "p = " in text

    out = tmp_path / "cli"
    assert main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(reviewed_dataset),
                 "--reviewed-only", "-o", str(out)]) == 0
    assert (out / "results.csv").read_text() == paths[0].read_text()


def test_worklist_figures_match_a_recount_and_new_checkpoints_get_them_from_the_queue(reviewed_dataset, checkpoints,
                                                                                      tmp_path):
    retrained = {"A": make_checkpoint(tmp_path / "retrained.safetensors", 5), "B": checkpoints["B"]}
    expected = _recount(reviewed_dataset, retrained)
    worklist = Worklist.open(reviewed_dataset, retrained)
    saved_b = {c.name: c.dice["B"] for c in worklist.cases if c.name in REVIEWED}
    assert all(math.isnan(c.dice.get("A", math.nan)) for c in worklist.cases)  # not saved with this A
    list(worklist.prediction_queue())
    for name in REVIEWED:
        case = worklist.case(name)
        assert saved_b[name] == pytest.approx(expected[name, "B"][0])  # as the session saved it
        for slot in "AB":
            assert case.dice[slot] == pytest.approx(expected[name, slot][0])
            assert case.correction_voxels[slot] == expected[name, slot][1]
    assert math.isnan(worklist.case("case_004").dice.get("A", math.nan))
