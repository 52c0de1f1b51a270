"""The A/B verdict over reviewed slices, recomputed independently from the saved files:
Dice and correction effort by hand, Wilcoxon by scipy, the bootstrap against scipy's."""
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from segview.core.io import load_labels, load_volume
from segview.core.classes import named_classes
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.inference import Predictor
from segview.ml.metadata import CheckpointError
from segview.ml.unet import UNet
from segview.core.compare import RESAMPLES, bootstrap_interval
from segview.core.io import save_labels
from segview.core.journal import image_key
from segview.core.review_state import ReviewState, save_review_state
from segview.session.verdict import CaseVerdict, Verdict, reviewed_verdict, write_dataset_report
from segview.session.worklist import Worklist, checkpoint_digest

from .conftest import CLASSES, SPACING, make_checkpoint, make_dataset, swapped_checkpoint

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
    assert verdict.left_out == {"case_004": "flagged in the worklist: not looked at"}
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
    assert not paired["supports_verdict"]  # 4 pairs
    low, high = paired["ci95"]
    assert low <= np.mean(b - a) <= high


def test_a_flagged_case_is_no_evidence_and_is_named(reviewed_dataset, checkpoints):
    """A tester's case flagged "motion" counted in the verdict, while training left it out."""
    Worklist.open(reviewed_dataset, checkpoints).set_status("case_001", "flagged", "motion on slice 6")
    verdict = reviewed_verdict(reviewed_dataset, checkpoints)
    assert [c.case for c in verdict.cases] == ["case_000", "case_002", "case_003"]
    assert verdict.left_out["case_001"] == "flagged in the worklist: motion on slice 6"
    text = verdict.markdown()  # a tester: "left out of the Dice" where it was out of the effort too
    assert "Not evaluated (neither in the Dice nor in the correction effort):\n\n- case_001: flagged in the " \
        "worklist: motion on slice 6\n- case_004" in text and "more left out of the Dice only" in text


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
    # the values' order (the cases' names) changes nothing: a helper's renamed case moved an end
    shuffled = np.random.default_rng(4).permutation(differences)
    assert bootstrap_interval(shuffled) == (low, high)
    sizes = np.arange(1, 31)
    order = np.random.default_rng(5).permutation(30)
    weighted = bootstrap_interval(differences, weights=sizes)
    assert weighted == bootstrap_interval(differences[order], weights=sizes[order])


def test_dataset_report_and_the_command(reviewed_dataset, checkpoints, tmp_path):
    from segview.cli import main

    verdict = reviewed_verdict(reviewed_dataset, checkpoints)
    paths = write_dataset_report(tmp_path / "report", verdict)
    assert [p.name for p in paths] == ["results.csv", "verdict.md", "verdict.json", "verdict.png"]
    assert paths[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(paths[0].open()))
    assert [(r["case"], r["model"]) for r in rows] == [(name, slot) for name in REVIEWED for slot in "AB"]
    for row in rows:
        case = next(c for c in verdict.cases if c.case == row["case"])
        assert float(row["correction_ml"]) == pytest.approx(case.correction_ml[row["model"]], abs=1e-4)
    text = paths[1].read_text()
    assert "case_004: flagged in the worklist: not looked at" in text
    assert "p = " in text and "cannot support a verdict" in text

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


# -- the scoring rule, on predictions written into the cache by hand ---------------------------

RULE_REVIEWED = (0, 2, 3)


def _crafted_dataset(folder, checkpoints):
    """Seven cases whose predictions are set by hand in the cache: case_000..004 scored
    (each model off by a few voxels), case_005 reviewed where the labels and A hold nothing
    and B invents 9 lesion voxels, case_006 not reviewed. Returns (labels, A, B) by case."""
    references = make_dataset(folder, 7)
    worklist = Worklist.open(folder, checkpoints)
    digests = {slot: checkpoint_digest(path) for slot, path in checkpoints.items()}
    arrays = {}
    for n, name in enumerate(sorted(references)):
        volume = worklist.load_image(worklist.case(name))
        labels = references[name].copy()
        a, b = labels.copy(), labels.copy()
        a[0, 2:2 + n, 2:5] = 1          # A: n * 3 false organ voxels on reviewed slice 0
        b[2, 12, 5:5 + 2 * n] = 0        # B: misses 2n organ voxels on reviewed slice 2
        if name == "case_005":
            labels[list(RULE_REVIEWED)] = 0
            a[list(RULE_REVIEWED)] = 0
            b[list(RULE_REVIEWED)] = 0
            b[3, 1:4, 1:4] = 2           # 9 invented lesion voxels
        save_labels(folder / "labelsTr" / f"{name}.nii.gz", labels, volume, CLASSES)
        state = ReviewState.empty(labels.shape[0])
        if name != "case_006":
            state.reviewed[list(RULE_REVIEWED)] = True
        save_review_state(folder / "labelsTr" / f"{name}.nii.gz", state, image_key(volume))
        for slot, prediction in (("A", a), ("B", b)):
            worklist.cache.put(image_key(volume), digests[slot], prediction, {})
        arrays[name] = labels, a, b
    return arrays


def test_both_models_are_scored_on_the_same_cases_and_every_number_matches_scipy(tmp_path, checkpoints):
    folder = tmp_path / "ds"
    arrays = _crafted_dataset(folder, checkpoints)
    verdict = reviewed_verdict(folder, checkpoints)
    written = {p.name: p for p in write_dataset_report(tmp_path / "report", verdict)}
    document = json.loads(written["verdict.json"].read_text())

    # Recount from the saved files: the sidecars name the reviewed slices.
    rows = list(csv.DictReader(written["results.csv"].open()))
    reviewed = list(RULE_REVIEWED)
    dice = {slot: {} for slot in "AB"}
    ml = {slot: {} for slot in "AB"}
    voxel_ml = np.prod(SPACING) / 1000
    for name, (labels, a, b) in arrays.items():
        if name == "case_006":
            continue
        for slot, prediction in (("A", a), ("B", b)):
            dice[slot][name] = _dice_by_hand(prediction[reviewed], labels[reviewed])
            ml[slot][name] = (prediction[reviewed] != labels[reviewed]).sum() * voxel_ml
    scored = [n for n in sorted(dice["A"]) if not (math.isnan(dice["A"][n]) or math.isnan(dice["B"][n]))]

    assert math.isnan(dice["A"]["case_005"]) and dice["B"]["case_005"] == 0  # the case
    assert document["cases"] == scored == [f"case_{n:03d}" for n in range(5)]
    assert document["n"] == 5
    assert set(document["left_out"]) == {"case_005", "case_006"}
    assert "no Dice for A" in document["left_out"]["case_005"]
    assert document["left_out"]["case_006"] == "no reviewed slice"
    assert document["correction_cases"] == sorted(ml["A"])       # case_005 counts in the effort

    for slot in "AB":
        values = np.array([dice[slot][n] for n in scored])
        assert document[slot]["checkpoint"] == checkpoints[slot].name
        assert document[slot]["dice_mean"] == pytest.approx(values.mean())
        assert document[slot]["dice_std"] == pytest.approx(values.std(ddof=1))
        assert document[slot]["correction_ml_mean"] == pytest.approx(np.mean(list(ml[slot].values())))
    assert document["B"]["invented_ml"] == {"case_005": pytest.approx(9 * voxel_ml)}
    assert document["A"]["invented_ml"] == {}

    for figure, values in (("dice", dice), ("correction_ml", ml)):
        names = scored if figure == "dice" else sorted(ml["A"])
        differences = np.array([values["B"][n] - values["A"][n] for n in names])
        entry = document[f"{figure}_difference"]
        assert entry["n"] == len(names)
        assert entry["mean"] == pytest.approx(differences.mean())
        assert entry["wilcoxon_p"] == pytest.approx(stats.wilcoxon(differences).pvalue)
        reference = stats.bootstrap((differences,), np.mean, n_resamples=RESAMPLES, method="percentile",
                                    random_state=np.random.default_rng(1)).confidence_interval
        width = max(reference.high - reference.low, 1e-9)
        assert entry["ci95"] == pytest.approx([reference.low, reference.high], abs=0.1 * width)
        assert entry["supports_verdict"] is bool(np.count_nonzero(differences) >= 6)  # ties do not count
        b_gains = differences if figure == "dice" else -differences  # less correction: B better
        assert (entry["b_better"], entry["a_better"]) == ((b_gains > 0).sum(), (b_gains < 0).sum())

    # The CSV holds every evaluated case, saying which are in the Dice comparison.
    assert {(r["case"], r["dice_scored"]) for r in rows} == {(n, "1" if n in scored else "0") for n in ml["A"]}
    text = written["verdict.md"].read_text()
    assert "n = 5 cases" in text and "| case_005 | lesion | 0.00 | 0.00 |" in text


def _verdict(pairs: list[tuple[float, float]]) -> Verdict:
    cases = [CaseVerdict(f"c{n}", 1, 1, dice={"A": a, "B": b}, dice_per_class={"A": np.array([a]), "B": np.array([b])},
                         correction_voxels={"A": 0, "B": 0}, correction_ml={"A": 0.0, "B": 0.0},
                         invented_ml={"A": {}, "B": {}})
             for n, (a, b) in enumerate(pairs)]
    return Verdict(tmp_folder(), {"A": tmp_folder() / "a.safetensors", "B": tmp_folder() / "b.safetensors"},
                   list(CLASSES), cases)


def tmp_folder():
    from pathlib import Path
    return Path("ds")


@pytest.mark.parametrize("pairs, p_value", [
    ([], None),                                   # nothing scored
    ([(0.5, 0.7)], None),                          # n = 1: no test
    ([(0.5, 0.7), (0.6, 0.9)], 0.5),              # n = 2, same sign: exact p = 2 / 2**2
    ([(0.5, 0.7), (0.6, 0.9), (0.4, 0.45), (0.3, 0.2)], 0.375),   # n = 4: exact, scipy's
])
def test_too_few_pairs_are_no_verdict(pairs, p_value):
    verdict = _verdict(pairs)
    document = verdict.to_json()
    entry = document["dice_difference"]
    assert document["n"] == len(pairs) and entry["n"] == len(pairs)
    assert entry["supports_verdict"] is False
    if p_value is None:
        assert entry["wilcoxon_p"] is None
    else:
        differences = [b - a for a, b in pairs]
        assert entry["wilcoxon_p"] == pytest.approx(stats.wilcoxon(differences, method="exact").pvalue)
        assert entry["wilcoxon_p"] == pytest.approx(p_value)
    assert ("cannot support a verdict" in verdict.markdown()) or ("this is no verdict" in verdict.markdown())
    json.dumps(document, allow_nan=False)  # strict JSON: no NaN


def test_the_trained_on_warning_does_not_advise_held_out_to_a_held_out_verdict():
    """A tester's --held-out verdict of a shipped model (trained on the phantom seed of the
    split's held-out case) advised "Compare on the held-out cases (evaluate --held-out)"."""
    verdict = _verdict([(0.5, 0.7)])
    verdict.trained_on = {"A": ["c0"]}
    assert "(evaluate --held-out)" in verdict.markdown()
    verdict.only = ["c0"]
    text = verdict.markdown()
    assert "was trained on 1 of these cases (c0)" in text and "--held-out" not in text
    assert "Judge it on cases it never trained on." in text


def test_a_case_without_a_dice_for_one_model_is_left_out_for_both():
    verdict = _verdict([(0.5, 0.7), (math.nan, 0.0), (0.6, 0.8)])
    assert [c.case for c in verdict.scored] == ["c0", "c2"]
    assert list(verdict.left_out) == ["c1"]
    assert "its prediction on the 1 reviewed slice (counted" in verdict.left_out["c1"]  # not "1 reviewed slices"
    assert verdict.summary("B")["dice_mean"] == pytest.approx(0.75)
    assert verdict.paired("dice")["pairs"] == 2
    assert verdict.paired("correction_ml")["pairs"] == 3


def test_a_model_of_another_task_is_refused_not_scored_zero(reviewed_dataset, checkpoints, tmp_path):
    """A tester's lung model (2 classes) against cardiac labels got Dice 0 in a verdict."""
    other = tmp_path / "two_classes.safetensors"
    torch.manual_seed(0)
    save_checkpoint(other, UNet(num_classes=2, base_channels=2, depth=1),
                    {"classes": classes_to_metadata(named_classes(["background", "infection"])),
                     "loss": {"name": "ce"}, "preprocessing": {"input_size": [16, 16], "modality": "MR",
                                                               "normalization": {"method": "percentile",
                                                                                 "low_percentile": 0.5,
                                                                                 "high_percentile": 99.5}}})
    with pytest.raises(CheckpointError, match=r"Model B \(two_classes.safetensors\) predicts 1 class "
                                              r"\(infection\), but the dataset labels 2 classes \(organ, lesion\)"):
        reviewed_verdict(reviewed_dataset, {"A": checkpoints["A"], "B": other})


def test_a_model_naming_the_classes_otherwise_is_refused_as_the_window_refuses_it(reviewed_dataset, checkpoints,
                                                                                  tmp_path):
    """A tester's checkpoint whose class 1 is the dataset's class 2 (and 2 its 1): the worklist
    would not use it, but evaluate --reviewed-only scored its voxels under the other class."""
    swapped = swapped_checkpoint(tmp_path / "swapped.safetensors")
    refused = Worklist.open(reviewed_dataset, {"A": checkpoints["A"], "B": swapped}).checkpoint_problems()
    assert refused["B"][1]
    with pytest.raises(CheckpointError, match=r"Model B \(swapped.safetensors\): its class 1 is .lesion. where "
                                              r"the dataset's classes have .organ."):
        reviewed_verdict(reviewed_dataset, {"A": checkpoints["A"], "B": swapped})


def test_a_model_naming_otherwise_the_classes_only_the_label_files_name_is_refused(reviewed_dataset, checkpoints,
                                                                                  tmp_path, capsys):
    """A dataset.json without "labels" leaves the label files' class files to name the
    classes: the whole-case evaluate refused a checkpoint naming them the other way round,
    --reviewed-only scored its voxels under the other class."""
    from segview.cli import main

    swapped = swapped_checkpoint(tmp_path / "swapped.safetensors")
    (reviewed_dataset / "dataset.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"Model B \(swapped.safetensors\) on the labels of case_000: its "
                                              r"class 1 is .lesion. where the dataset's classes have .organ."):
        reviewed_verdict(reviewed_dataset, {"A": checkpoints["A"], "B": swapped})
    assert main(["evaluate", str(checkpoints["A"]), str(swapped), "--data", str(reviewed_dataset),
                 "--reviewed-only", "--device", "cpu", "-o", str(tmp_path / "out")]) == 2
    assert "its class 1 is \u201clesion\u201d" in capsys.readouterr().err and not (tmp_path / "out").exists()
    for class_file in (reviewed_dataset / "labelsTr").glob("*.classes.json"):
        class_file.unlink()  # nothing names the classes: any names do
    assert reviewed_verdict(reviewed_dataset, {"A": checkpoints["A"], "B": swapped}).cases


def test_the_command_refuses_a_dataset_with_nothing_reviewed(tmp_path, checkpoints, capsys):
    """A tester's evaluate --reviewed-only on a dataset with no reviewed slice exited 0 with an
    empty verdict (n = 0), where train refuses the same data."""
    from segview.cli import main

    make_dataset(tmp_path / "ds", 2)
    assert main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(tmp_path / "ds"),
                 "--reviewed-only", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no case of" in err and "has reviewed slices to compare A and B on" in err and "case_000" in err
    assert not (tmp_path / "out").exists()


def test_two_checkpoints_of_one_name_are_told_apart_by_their_folders():
    """A tester's evaluate of two runs' best.safetensors named both the same in every report."""
    from segview.session.verdict import distinct_names

    runs = {"A": Path("/work/runs/ce/best.safetensors"), "B": Path("/work/runs/ce_dice/best.safetensors")}
    assert distinct_names(runs) == {"A": "ce/best.safetensors", "B": "ce_dice/best.safetensors"}
    assert distinct_names({"A": Path("/m/ce.safetensors"), "B": Path("/n/dice.safetensors")}) == \
        {"A": "ce.safetensors", "B": "dice.safetensors"}
    same = Path("/m/ce.safetensors")
    assert distinct_names({"A": same, "B": same}) == {"A": "ce.safetensors", "B": "ce.safetensors"}
    verdict = Verdict(Path("data"), runs, [], [])
    assert verdict.summary("B")["checkpoint"] == "ce_dice/best.safetensors"
    assert "| B | ce_dice/best.safetensors |" in verdict.markdown()
