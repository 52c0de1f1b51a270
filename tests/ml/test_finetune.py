"""Learning from corrections: the fixed split, reviewed-only training, fine-tuning with
lineage, and the verdict on held-out cases. Which slices and cases trained is observed
through a hook on the slice sampler, never assumed."""
import hashlib
import math
import json

import pytest
import torch

from segview.resources import CLICK_MODEL
from segview.cli import main
from segview.core.classes import LabelClass
from segview.core.io import load_labels, load_volume, save_labels, save_volume
from segview.core.journal import image_key
from segview.core.review_state import ReviewState, save_review_state
from segview.ml import train as train_module
from segview.ml.checkpoint import classes_to_metadata, load_checkpoint, read_metadata, save_checkpoint
from segview.ml.data import DatasetError, case_names, fixed_split, folder_dataset
from segview.ml.train import TrainConfig, file_sha256, train

from ..session.conftest import CLASSES, make_checkpoint, make_dataset

#: Reviewed slices per case; case_004 and case_005 have none.
REVIEWED = {"case_000": [0, 2], "case_001": [1, 3, 5], "case_002": [4], "case_003": [0, 1, 2, 3, 4, 5]}
#: What the unreviewed slices hold: a class no reviewed slice has there (a model's guess).
UNREVIEWED_MARK = 2


@pytest.fixture
def reviewed_folder(tmp_path):
    """Six tiny cases; unreviewed slices hold a full square of class 2 that reviewed ones lack."""
    folder = tmp_path / "ds"
    make_dataset(folder, 6)
    for name in case_names(folder):
        path = folder / "labelsTr" / f"{name}.nii.gz"
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        labels = load_labels(path, volume)
        labels[labels == 2] = 1
        state = ReviewState.empty(labels.shape[0])
        state.reviewed[REVIEWED.get(name, [])] = True
        labels[~state.reviewed, 2:20, 2:20] = UNREVIEWED_MARK
        save_labels(path, labels, volume, CLASSES)
        save_review_state(path, state, image_key(volume))
    return folder


def test_the_split_is_written_once_never_reshuffled_and_added_cases_train(reviewed_folder):
    names = case_names(reviewed_folder)
    first = fixed_split(reviewed_folder, names)
    assert len(first["val"]) == 1 and sorted(first["train"] + first["val"]) == names
    document = json.loads((reviewed_folder / "splits.json").read_text())
    assert document == [first]                                   # nnU-Net's splits_final.json shape
    assert fixed_split(reviewed_folder, names, seed=99) == first   # read back, not drawn again
    assert fixed_split(reviewed_folder, [*names, "case_new"])["val"] == first["val"]
    assert "case_new" in json.loads((reviewed_folder / "splits.json").read_text())[0]["train"]
    with pytest.raises(DatasetError, match="lacks \\(case_000, case_new\\)"):
        fixed_split(reviewed_folder, ["case_gone"] + names[1:])


def test_a_user_moved_case_stays_where_the_user_put_it(reviewed_folder):
    names = case_names(reviewed_folder)
    split = fixed_split(reviewed_folder, names)
    moved = {"train": sorted(set(names) - {"case_003"}), "val": ["case_003"]}
    (reviewed_folder / "splits.json").write_text(json.dumps([moved]))
    assert fixed_split(reviewed_folder, names) == moved != split


def _trained_on(monkeypatch) -> list:
    """A hook on the sampler: the cases (names and the labels of what they give) of each call."""
    seen = []
    original = train_module.slice_tensors

    def spy(cases, *args, **kwargs):
        images, labels = original(cases, *args, **kwargs)
        seen.append(([c.name for c in cases], labels))
        return images, labels

    monkeypatch.setattr(train_module, "slice_tensors", spy)
    return seen


def test_reviewed_only_trains_on_reviewed_slices_of_training_cases_only(reviewed_folder, tmp_path, monkeypatch):
    seen = _trained_on(monkeypatch)
    (reviewed_folder / "splits.json").write_text(json.dumps([{
        "train": ["case_000", "case_001", "case_002", "case_004", "case_005"], "val": ["case_003"]}]))
    assert main(["train", str(reviewed_folder), "--reviewed-only", "-o", str(tmp_path / "run"), "--epochs", "1",
                 "--input-size", "16", "--base-channels", "2", "--depth", "1", "--batch-size", "2"]) == 0

    names, labels = seen[0]
    assert names == ["case_000", "case_001", "case_002"]         # the held-out case_003 never trains
    assert len(labels) == sum(len(REVIEWED[n]) for n in names)  # only reviewed slices
    assert not (labels == UNREVIEWED_MARK).any()                # nothing of what unreviewed slices hold
    meta = read_metadata(tmp_path / "run" / "best.safetensors")
    lineage = meta["lineage"]
    assert lineage["cases"] == {n: REVIEWED[n] for n in names}
    assert lineage["reviewed_slices"] == lineage["slices"] == 6 and lineage["split"]["val"] == ["case_003"]
    assert lineage["parent"] is None and lineage["dataset"] == "ds"


def test_fine_tuning_keeps_the_parent_and_records_its_lineage(reviewed_folder, tmp_path, monkeypatch, capsys):
    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    parent_meta = read_metadata(parent)
    assert main(["train", str(reviewed_folder), "--reviewed-only", "--init", str(parent), "-o",
                 str(tmp_path / "ft"), "--epochs", "2", "--batch-size", "2"]) == 0
    meta = read_metadata(tmp_path / "ft" / "best.safetensors")
    assert meta["architecture"] == parent_meta["architecture"]
    config = meta["training"]["config"]  # the network trained, not the defaults of a new one
    assert [config[k] for k in ("base_channels", "depth", "norm")] == \
        [parent_meta["architecture"][k] for k in ("base_channels", "depth", "norm")]
    assert meta["preprocessing"]["normalization"] == parent_meta["preprocessing"]["normalization"]
    assert meta["preprocessing"]["input_size"] == parent_meta["preprocessing"]["input_size"]
    assert meta["preprocessing"]["orientation"] == "stored"  # as its parent (no flips recorded) saw them
    assert meta["loss"]["name"] == parent_meta["loss"]["name"]
    assert meta["training"]["config"]["lr"] == pytest.approx(3e-4)
    parent_sha = hashlib.sha256(parent.read_bytes()).hexdigest()
    assert meta["lineage"]["parent"]["sha256"] == parent_sha
    held_out = fixed_split(reviewed_folder, case_names(reviewed_folder))["val"]
    assert not set(meta["lineage"]["cases"]) & set(held_out)
    assert meta["lineage"]["parent"]["held_out_dice"] is None  # no reviewed held-out slice (strict JSON: null)
    capsys.readouterr()

    assert main(["info", str(tmp_path / "ft" / "best.safetensors")]) == 0
    out = capsys.readouterr().out
    assert f"parent     parent.safetensors (sha256 {parent_sha})" in out
    assert f"held out   {', '.join(held_out)}" in out
    # Its held-out case has no reviewed slice: not in the dataset, so not "held out" of it (a tester).
    slices = meta["lineage"]["slices"]
    assert (f": {len(meta['lineage']['cases'])} cases ({slices} reviewed slices); 2 left out (no reviewed slice); "
            in out) and meta["training"]["cases"] == len(meta["lineage"]["cases"])
    assert f"slices     {slices} ({slices} reviewed)" in out


def test_info_says_how_many_cases_a_fine_tune_learnt_from_held_out_and_left_out(reviewed_folder, tmp_path, capsys):
    """A tester's fine-tune on 3 cases, 1 held out and a fifth with nothing reviewed read
    "trained on ... 4 cases (1 held out)"; one with a flagged case read "left out (flagged in
    the worklist (motion on slices 3-4))"."""
    from segview.session import Worklist

    (reviewed_folder / "splits.json").write_text(json.dumps([{
        "train": ["case_000", "case_001", "case_002", "case_004", "case_005"], "val": ["case_003"]}]))
    Worklist.open(reviewed_folder).set_status("case_005", "flagged", "motion on slices 3-4")
    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    assert main(["train", str(reviewed_folder), "--reviewed-only", "--init", str(parent), "-o", str(tmp_path / "ft"),
                 "--epochs", "1", "--batch-size", "2"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "ft" / "best.safetensors")]) == 0
    reviewed = sum(len(REVIEWED[n]) for n in ("case_000", "case_001", "case_002"))
    assert (f"\nfine-tuned on folder {reviewed_folder.resolve()}: 3 cases ({reviewed} reviewed slices); 1 held out; "
            "2 left out (1 no reviewed slice; 1 flagged in the worklist: motion on slices 3-4); 1 of 1 epochs, "
            ) in capsys.readouterr().out


def test_info_says_plain_training_reviewed_nothing_and_reads_a_click_model(tmp_path, capsys):
    """A tester's plain run showed "32 reviewed"; the click model's data and validation showed '?'."""
    assert main(["train", "--phantom", "cardiac", "--cases", "2", "-o", str(tmp_path / "run"), "--epochs", "1",
                 "--input-size", "16", "--base-channels", "2", "--depth", "1", "--batch-size", "2"]) == 0
    lineage = read_metadata(tmp_path / "run" / "best.safetensors")["lineage"]
    assert lineage["reviewed_slices"] == 0 and lineage["slices"] > 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run" / "best.safetensors")]) == 0
    out = capsys.readouterr().out
    assert f"slices     {lineage['slices']} (every slice of each case)" in out
    assert f"trained on   phantom cardiac, seeds 0..1: 1 case ({lineage['slices']} slices); 1 held out; 1 of 1 epochs" \
        in out
    assert main(["info", str(CLICK_MODEL)]) == 0
    out = capsys.readouterr().out
    assert "trained on   phantom cardiac, seeds 0..39: 40 cases" in out and "lung" in out
    assert "Dice after 1/3/5 clicks" in out and "NoC@90" in out and "?" not in out
    # A tester: "(epoch 20)" for the best of 20 epochs stored as 19 (counting from 1 already).
    assert f"(epoch {read_metadata(CLICK_MODEL)['validation']['epoch']})" in out
    # The starts it learnt from, and the figures per start (two runs differing only in --from-model read alike).
    assert "starts       prediction 40%, perturbed 35%, empty 25%; predictions of cardiac_ce.safetensors" in out
    by_start = read_metadata(CLICK_MODEL)["validation"]["by_start"]
    assert f"  from prediction {by_start['prediction']['objects']} objects" in out
    assert f"NoC@90 {by_start['empty']['noc90']:.2f}" in out


def test_info_says_a_click_model_is_one_and_what_it_sees(capsys):
    """A tester read the click model as a one-class UNet of 6 input channels: its task, click
    encoding, context slices and crop were only in --json."""
    from segview.cli.models import checkpoint_text

    assert main(["info", str(CLICK_MODEL)]) == 0
    out = capsys.readouterr().out
    assert "\ntask         interactive: a click model" in out
    assert "channels     slices z-1..z+1, the class's current mask, positive clicks, negative clicks" in out
    assert "clicks       disk, radius 3 pixels of the input" in out
    assert ("crop         around the last click, margin 40% of its side, at least 96 pixels; from the second "
            "click a focus crop of at least 48 pixels (the runtime's; not in its metadata)") in out
    meta = read_metadata(CLICK_MODEL)
    meta["preprocessing"]["crop"] = {"margin": 0.25, "min_size": 64, "focus_size": 32}  # no "around": every click
    text = checkpoint_text("m.safetensors", "0" * 64, meta)
    assert "around every click, margin 25% of its side, at least 64 pixels; " \
           "from the second click a focus crop of at least 32 pixels\n" in text
    segmentation = checkpoint_text("m.safetensors", "0" * 64, read_metadata(CLICK_MODEL.parent / "lung_ce.safetensors"))
    assert "task " not in segmentation and "clicks " not in segmentation


def test_info_counts_the_held_out_cases_apart_from_the_training_slices(capsys):
    """A tester read "40 cases, 1126 slices": 40 with the held-out cases, 1126 without."""
    path = CLICK_MODEL.parent / "lung_ce.safetensors"
    training = read_metadata(path)["training"]
    assert main(["info", str(path)]) == 0
    held_out = len(training["split"]["validation"])
    assert (f"{training['cases']} cases ({held_out} held out), {training['train_slices']} training slices, "
            f"{training['epochs']} of {training['config']['epochs']} epochs") in capsys.readouterr().out


def test_without_reviewed_held_out_slices_the_run_says_it_chose_by_the_training_loss(reviewed_folder, tmp_path,
                                                                                       capsys):
    """A tester read 'best validation Dice -0.0804': the negative training loss it chose by."""
    (reviewed_folder / "splits.json").write_text(json.dumps([{
        "train": ["case_000", "case_001", "case_002", "case_003", "case_005"], "val": ["case_004"]}]))
    assert main(["train", str(reviewed_folder), "--reviewed-only", "-o", str(tmp_path / "run"), "--epochs", "1",
                 "--input-size", "16", "--base-channels", "2", "--depth", "1", "--batch-size", "2"]) == 0
    out, err = capsys.readouterr()
    assert "no held-out slices to validate on: best training loss " in out and "validation Dice" not in out
    # A tester read "1 cases held out (...): never trained on" as a validation set there was not.
    assert "(case_004): never trained on; none has reviewed slices to validate on" in err
    assert float(out.split("best training loss ")[1].split()[0]) > 0


def test_a_parent_with_other_classes_or_nothing_reviewed_is_refused_with_the_cases_named(reviewed_folder, tmp_path):
    from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
    from segview.ml.unet import UNet

    other = save_checkpoint(tmp_path / "other.safetensors", UNet(num_classes=3, base_channels=2, depth=1), {
        "classes": classes_to_metadata([*CLASSES[:2], LabelClass(2, "tumour", CLASSES[2].color)]),
        "loss": {"name": "ce"}, "preprocessing": {"input_size": [16, 16], "modality": "MR",
                                                  "normalization": {"method": "percentile", "low_percentile": 0.5,
                                                                    "high_percentile": 99.5}}})
    dataset = folder_dataset(reviewed_folder, reviewed_only=True)
    assert "case_004: no reviewed slice" in dataset.skipped
    with pytest.raises(DatasetError, match="tumour"):
        train(TrainConfig(output=str(tmp_path / "x"), init=str(other), epochs=1), dataset,
              split={"train": ["case_000"], "validation": []})
    with pytest.raises(DatasetError, match="held out"):
        train(TrainConfig(output=str(tmp_path / "y"), epochs=1), dataset,
              split={"train": ["case_004", "case_005"], "validation": ["case_000"]})


def test_a_case_whose_review_is_of_another_image_is_skipped_saying_so(reviewed_folder, tmp_path):
    """A tester's image changed under its review: train --reviewed-only said "no reviewed
    slice", where evaluate said why."""
    import shutil

    import SimpleITK as sitk

    copy = shutil.copytree(reviewed_folder, tmp_path / "changed")
    path = copy / "imagesTr" / "case_000_0000.nii.gz"
    image = sitk.ReadImage(str(path))
    image[0, 0, 0] = image[0, 0, 0] + 1
    sitk.WriteImage(image, str(path))
    skipped = folder_dataset(copy, reviewed_only=True).skipped
    assert "case_000: case_000.review.json records the review of another image; no slice is marked reviewed." \
        in skipped


def review_a_slice(folder, name, z=0):
    path = folder / "labelsTr" / f"{name}.nii.gz"
    volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
    state = ReviewState.empty(volume.shape[0])
    state.reviewed[z] = True
    save_review_state(path, state, image_key(volume))


def test_evaluate_held_out_scores_only_the_split_held_out_cases(reviewed_folder, tmp_path):
    a, b = make_checkpoint(tmp_path / "a.safetensors", 1), make_checkpoint(tmp_path / "b.safetensors", 2)
    held_out = fixed_split(reviewed_folder, case_names(reviewed_folder))["val"]
    review_a_slice(reviewed_folder, held_out[0])  # none of its slices was reviewed: nothing to compare
    assert main(["evaluate", str(a), str(b), "--data", str(reviewed_folder), "--reviewed-only", "--held-out",
                 "-o", str(tmp_path / "out")]) == 0
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert set(verdict["correction_cases"]) <= set(held_out)
    assert set(verdict["cases"]) | set(verdict["left_out"]) == set(held_out)
    assert main(["evaluate", str(a), str(b), "--data", str(reviewed_folder), "--held-out"]) == 2


def test_the_window_job_writes_a_whole_checkpoint_or_none(reviewed_folder, tmp_path):
    from segview.ml.train import TrainingCancelled
    from segview.session.finetune import FineTuneError, fine_tune

    parent = make_checkpoint(tmp_path / "ce.safetensors", 3)
    other = make_checkpoint(tmp_path / "other.safetensors", 3)
    meta = read_metadata(other)
    meta["classes"] = classes_to_metadata([*CLASSES[:2], LabelClass(2, "tumour", CLASSES[2].color)])
    save_checkpoint(other, load_checkpoint(other)[0], meta)
    with pytest.raises(FineTuneError, match="tumour"):
        fine_tune(reviewed_folder, other, device="cpu")
    assert not (reviewed_folder / "splits.json").exists()  # a refused run draws no split for good
    assert not (reviewed_folder / "models").exists()  # nor leaves the folder it made
    events = []
    path = fine_tune(reviewed_folder, parent, progress=events.append, device="cpu")
    assert (reviewed_folder / "splits.json").exists()
    assert path == reviewed_folder / "models" / "ce_ft1.safetensors"
    assert read_metadata(path)["lineage"]["parent"]["name"] == "ce.safetensors"
    assert any("val_dice" in e for e in events) and any("step" in e for e in events)
    # A few reviewed slices (one batch) still make 8 steps an epoch: 20 single noisy steps
    # left a tester's model worse on the very slices it was tuned on.
    assert {e["steps"] for e in events if "steps" in e} == {8}
    assert sorted(p.name for p in path.parent.iterdir()) == ["ce_ft1.curves.png", "ce_ft1.log.csv",
                                                             "ce_ft1.safetensors"]
    with pytest.raises(TrainingCancelled):
        fine_tune(reviewed_folder, parent, should_stop=lambda: True, device="cpu")
    assert sorted(p.name for p in path.parent.iterdir()) == ["ce_ft1.curves.png", "ce_ft1.log.csv",
                                                             "ce_ft1.safetensors"]  # nothing partial
    every_reviewed = ["case_000", "case_001", "case_002", "case_003"]
    split = {"train": ["case_004", "case_005"], "val": every_reviewed}
    (reviewed_folder / "splits.json").write_text(json.dumps([split]))
    with pytest.raises(FineTuneError, match="every case with reviewed slices is held out"):
        fine_tune(reviewed_folder, parent, device="cpu")


def test_a_refusal_that_asks_for_the_split_to_be_edited_writes_it(tmp_path):
    """A tester reviewed slices of the one case the seeded split holds out: the refusal said
    to edit splits.json, which a refused fine-tune had not written."""
    from segview.session.finetune import FineTuneError, fine_tune

    folder = tmp_path / "ds"
    make_dataset(folder, 5)
    held_out = fixed_split(folder, case_names(folder), write=False)["val"]
    review_a_slice(folder, held_out[0])
    with pytest.raises(FineTuneError, match="move a case from \"val\" to \"train\" in splits.json"):
        fine_tune(folder, make_checkpoint(tmp_path / "ce.safetensors", 3), device="cpu")
    assert json.loads((folder / "splits.json").read_text())[0]["val"] == held_out
    assert not (folder / "models").exists()
    with pytest.raises(FineTuneError, match=f"in splits.json \\({folder / 'splits.json'}\\)"):
        fine_tune(folder, make_checkpoint(tmp_path / "ce.safetensors", 3), device="cpu")


def test_an_epoch_of_few_slices_draws_them_again_up_to_its_least_steps():
    from segview.ml.train import _at_least

    generator = torch.Generator().manual_seed(0)
    order = torch.tensor([3, 1, 2])
    drawn = _at_least(order, 8, generator)
    assert drawn[:3].tolist() == [3, 1, 2] and len(drawn) == 8
    assert sorted(drawn[3:6].tolist()) == [1, 2, 3]  # each copy holds every slice once
    assert _at_least(order, 2, generator) is order and len(_at_least(torch.tensor([], dtype=torch.long), 8,
                                                                     generator)) == 0


def test_a_click_model_is_refused_as_the_checkpoint_to_fine_tune(reviewed_folder, tmp_path, capsys):
    assert main(["train", str(reviewed_folder), "--reviewed-only", "--init", str(CLICK_MODEL), "-o",
                 str(tmp_path / "ft"), "--epochs", "1"]) == 2
    assert "interactive.safetensors is an interactive correction model" in capsys.readouterr().err
    assert not (tmp_path / "ft").exists()  # a refused run leaves no empty output folder behind


def test_the_run_says_what_the_parent_scored_on_the_same_held_out_slices(tmp_path, capsys):
    """A tester's fine-tuned model was offered at 0.955 held-out Dice with no word that its
    parent had 0.991 there."""
    from segview.ml.evaluate import evaluate_cases, summary
    from segview.ml.inference import Predictor

    folder = tmp_path / "ds"
    make_dataset(folder, 5)
    for name in case_names(folder):
        path = folder / "labelsTr" / f"{name}.nii.gz"
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        state = ReviewState.empty(volume.shape[0])
        state.reviewed[:] = True
        save_review_state(path, state, image_key(volume))
    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    assert main(["train", str(folder), "--reviewed-only", "--init", str(parent), "-o", str(tmp_path / "ft"),
                 "--epochs", "1", "--batch-size", "2"]) == 0
    held_out = fixed_split(folder, case_names(folder))["val"]
    cases = [c for c in folder_dataset(folder, reviewed_only=True).cases if c.name in held_out]
    expected = summary(evaluate_cases(Predictor.from_checkpoint(parent), cases))["dice"]["mean"]
    assert not math.isnan(expected)
    meta = read_metadata(tmp_path / "ft" / "best.safetensors")
    assert meta["lineage"]["parent"]["held_out_dice"] == pytest.approx(expected)
    out = capsys.readouterr().out
    best = meta["validation"]["dice"]["mean"]
    verdict = "better" if best > expected else "NOT better: keep the parent"
    assert (f"parent.safetensors before fine-tuning: validation Dice {expected:.4f} on the same held-out slices; "
            f"the fine-tuned checkpoint is {verdict}") in out
    # with the window's cautions: the epoch chosen on these cases, and too few of them (a helper's "better" alone)
    assert f"the fine-tuned checkpoint is {verdict}. The epoch was chosen by this Dice on these same cases" in out
    assert f"On {len(held_out)} held-out case" in out and "(fewer than 6) it is no verdict" in out
    # and segview info says it with the lineage, long after the run's output is gone
    assert main(["info", str(tmp_path / "ft" / "best.safetensors")]) == 0
    info = capsys.readouterr().out
    assert f"parent.safetensors (sha256 {file_sha256(parent)}), held-out Dice before fine-tuning {expected:.4f}" in info
    assert "known by their voxels" not in info and "no image digests" not in info


def test_the_warning_on_cases_learnt_from_counts_those_evaluated_and_says_so(reviewed_folder, tmp_path, capsys):
    """A tester's warning said "trained on 3 of the 5 cases of DS" of a DS of 7 cases, 5
    evaluated, and a model that learnt from 4 of them (one flagged since)."""
    from segview.session import Worklist

    from ..session.conftest import tiny_case

    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    assert main(["train", str(reviewed_folder), "--reviewed-only", "--init", str(parent), "-o",
                 str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "2"]) == 0
    tuned = tmp_path / "ft" / "best.safetensors"
    learnt = sorted(read_metadata(tuned)["lineage"]["cases"])
    assert len(learnt) >= 2
    Worklist.open(reviewed_folder).set_status(learnt[0], "flagged", "motion")  # not evaluated any more
    save_volume(reviewed_folder / "imagesTr" / "case_006_0000.nii.gz", tiny_case(6)[0])  # no labels: skipped
    capsys.readouterr()
    assert main(["evaluate", str(parent), str(tuned), "--data", str(reviewed_folder), "-o", str(tmp_path / "out")]) == 0
    said = (f"was trained on {len(learnt) - 1} of the 5 cases of ds evaluated here ({', '.join(learnt[1:])}; "
            f"it learnt from {len(learnt)} cases in all, and ds holds 7): its figures there are no evidence")
    assert said in capsys.readouterr().err and said in (tmp_path / "out" / "table1.md").read_text()


def test_a_flagged_case_is_left_out_of_reviewed_training_with_its_note(reviewed_folder):
    """A tester's case flagged "motion on slice 6" trained the fine-tuned model all the same."""
    from segview.session import Worklist

    flagged = next(iter(REVIEWED))
    Worklist.open(reviewed_folder).set_status(flagged, "flagged", "motion on slice 6")
    dataset = folder_dataset(reviewed_folder, reviewed_only=True)
    assert flagged not in [c.name for c in dataset.cases]
    assert f"{flagged}: flagged in the worklist: motion on slice 6" in dataset.skipped
    assert {c.name for c in dataset.cases} == set(REVIEWED) - {flagged}
    # Training on every label (no --reviewed-only) leaves it out too, as the verdict does.
    everything = folder_dataset(reviewed_folder)
    assert flagged not in [c.name for c in everything.cases] and len(everything.cases) >= len(dataset.cases)
    assert f"{flagged}: flagged in the worklist: motion on slice 6" in everything.skipped


def test_held_out_slices_are_scored_normalised_over_their_whole_volume(tmp_path):
    """Validation cut a case down to its held-out slices before predicting, so the MR
    percentiles came from those slices alone: a tester's held-out Dice of the parent read
    0.8405 in the run and 0.8426 in the window and in evaluate."""
    import numpy as np

    from segview.core.metrics import ConfusionMatrix
    from segview.ml.data import Case
    from segview.ml.evaluate import evaluate_cases
    from segview.ml.inference import Predictor

    from ..session.conftest import tiny_case

    volume, labels = tiny_case(3, slices=8)
    volume.array[5:] += 400  # the other slices are brighter: percentiles over the volume differ
    predictor = Predictor.from_checkpoint(make_checkpoint(tmp_path / "model.safetensors", 1), "cpu")
    slices = np.array([1, 2])
    [scored] = evaluate_cases(predictor, [Case("case", volume, labels, slices)])
    whole = predictor.predict_volume(volume)
    expected = ConfusionMatrix.from_arrays(whole[slices], labels[slices], 3).scores()
    assert scored.scores.dice == pytest.approx(expected.dice, nan_ok=True)
    cut = Case("case", volume, labels, slices).restricted()
    assert not np.array_equal(predictor.predict_volume(cut.volume), whole[slices])  # what it scored before


def test_info_json_is_strict_json(tmp_path, capsys):
    """A fine-tune without held-out slices keeps held_out_dice NaN; info --json printed NaN,
    which a strict JSON parser refuses."""
    from segview.ml.checkpoint import save_checkpoint
    from segview.ml.unet import UNet

    meta = {**read_metadata(CLICK_MODEL.parent / "cardiac_ce.safetensors"),
            "lineage": {"parent": {"name": "cardiac_ce.safetensors", "held_out_dice": float("nan")}}}
    path = save_checkpoint(tmp_path / "ft.safetensors", UNet(1, 4, 4, 2), meta)
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0

    def refuse(constant):
        raise ValueError(constant)

    printed = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert printed["lineage"]["parent"]["held_out_dice"] is None
    assert main(["info", str(path)]) == 0  # as text: no NaN Dice, and what its lineage cannot say
    text = capsys.readouterr().out
    assert "parent     cardiac_ce.safetensors (sha256 ?)\n" in text
    assert "cases      0 (no image digests: a copy elsewhere is not recognised)" in text


def test_a_verdict_says_when_a_model_is_judged_on_cases_it_learnt_from(reviewed_folder, tmp_path, capsys):
    """A tester compared a parent with its fine-tune over the reviewed cases, three of which
    the fine-tune had trained on: nothing said so."""
    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    assert main(["train", str(reviewed_folder), "--reviewed-only", "--init", str(parent), "-o",
                 str(tmp_path / "ft"), "--epochs", "1", "--batch-size", "2"]) == 0
    tuned = tmp_path / "ft" / "best.safetensors"
    learnt = set(read_metadata(tuned)["lineage"]["cases"])
    capsys.readouterr()
    assert main(["evaluate", str(parent), str(tuned), "--data", str(reviewed_folder), "--reviewed-only",
                 "-o", str(tmp_path / "out")]) == 0
    verdict = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert set(verdict["trained_on"]) == {"B"} and set(verdict["trained_on"]["B"]) == learnt & set(
        verdict["correction_cases"]) != set()
    assert f"Model B (best.safetensors) was trained on {len(verdict['trained_on']['B'])} of these cases" in \
        (tmp_path / "out" / "verdict.md").read_text()
    # and no figure of it supports a verdict (a helper's script read supports_verdict: true)
    assert verdict["dice_difference"]["supports_verdict"] is False
    assert verdict["correction_ml_difference"]["supports_verdict"] is False
    # A copy of the dataset under another name: the same images, known by themselves (a tester's copy said nothing).
    import shutil

    copy = shutil.copytree(reviewed_folder, tmp_path / "copied elsewhere")
    assert main(["evaluate", str(parent), str(tuned), "--data", str(copy), "--reviewed-only",
                 "-o", str(tmp_path / "copied")]) == 0
    assert json.loads((tmp_path / "copied" / "verdict.json").read_text())["trained_on"] == verdict["trained_on"]
    # The whole-case evaluation (no --reviewed-only) says it too, on screen and in table1.md.
    capsys.readouterr()
    assert main(["evaluate", str(parent), str(tuned), "--data", str(copy), "-o", str(tmp_path / "whole")]) == 0
    said = f"was trained on {len(learnt)} of the {len(case_names(copy))} cases of copied elsewhere"
    assert said in capsys.readouterr().err and said in (tmp_path / "whole" / "table1.md").read_text()
    comparison = json.loads((tmp_path / "whole" / "comparisons.json").read_text())[0]
    assert comparison["supports_verdict"] is False and sorted(comparison["trained_on"]["B"]) == sorted(learnt)
    assert "parent" not in (tmp_path / "whole" / "table1.md").read_text().split("**")[1]
    # Re-saved by another tool, as floats 5 mm away: the same voxels, learnt from all the same.
    import SimpleITK as sitk

    for path in sorted(copy.glob("*Tr/*.nii.gz")):
        image = sitk.ReadImage(str(path))
        image.SetOrigin([o + 5.0 for o in image.GetOrigin()])
        sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32) if "images" in path.parent.name else image, str(path))
    assert main(["evaluate", str(parent), str(tuned), "--data", str(copy), "-o", str(tmp_path / "resaved")]) == 0
    assert said in capsys.readouterr().err
    review_a_slice(reviewed_folder, fixed_split(reviewed_folder, case_names(reviewed_folder))["val"][0])
    assert main(["evaluate", str(parent), str(tuned), "--data", str(reviewed_folder), "--reviewed-only",
                 "--held-out", "-o", str(tmp_path / "held")]) == 0
    assert json.loads((tmp_path / "held" / "verdict.json").read_text())["trained_on"] == {}


def test_resuming_after_the_reviewed_slices_changed_is_refused(reviewed_folder, tmp_path, capsys):
    """A tester reviewed more slices and flagged a trained case before --resume: the run went
    on, and its lineage named data other than its first epoch's."""
    parent = make_checkpoint(tmp_path / "parent.safetensors", 3)
    command = ["train", str(reviewed_folder), "--reviewed-only", "--init", str(parent), "-o", str(tmp_path / "ft"),
               "--batch-size", "2"]
    assert main([*command, "--epochs", "1"]) == 0
    trained = sorted(read_metadata(tmp_path / "ft" / "last.safetensors")["lineage"]["cases"])
    review_a_slice(reviewed_folder, trained[0], z=5)  # its marks now: slice 5 only
    capsys.readouterr()
    assert main([*command, "--epochs", "2", "--resume"]) == 2
    assert f"the reviewed slices changed since this run was interrupted ({trained[0]})" in capsys.readouterr().err


def _learnt_from(path, source: str, replayed: str | None = None):
    """``path``'s checkpoint as if trained on ``source`` (a Dataset's source), or fine-tuned
    with ``replayed`` as its replay data."""
    meta = read_metadata(path)
    meta["training"] = {"source": source}
    if replayed is not None:
        meta["lineage"] = {"replay": {"source": replayed, "share": 0.5}}
    save_checkpoint(path, load_checkpoint(path)[0], meta)
    return path


def test_a_fine_tune_replays_the_data_its_parent_learnt_from_where_they_are_at_hand(reviewed_folder, tmp_path,
                                                                                    monkeypatch):
    """A tester's window fine-tune replayed nothing: cardiac_ce on 4 cases of a new scanner fell
    from 0.914 to 0.782 Dice on the first one (0.894 replaying, as the command line does)."""
    from segview.resources import MODELS
    from segview.session.finetune import fine_tune, replay_source

    assert replay_source(MODELS / "cardiac_ce.safetensors") == "phantom:cardiac"  # the shipped models' seeds
    first = tmp_path / "first_scanner"
    make_dataset(first, 2, seed=20)  # the parent's own data, of the dataset's classes
    parent = _learnt_from(make_checkpoint(tmp_path / "ce.safetensors", 3), f"folder {first.resolve()}")
    assert replay_source(parent) == str(first.resolve())
    gone = _learnt_from(make_checkpoint(tmp_path / "gone.safetensors", 3), f"folder {tmp_path / 'deleted'}")
    assert replay_source(gone) is None
    shifted = _learnt_from(make_checkpoint(tmp_path / "new.safetensors", 3),
                           "phantom cardiac, seeds 0..3, scanner shift")
    assert replay_source(shifted) is None
    again = _learnt_from(make_checkpoint(tmp_path / "ft.safetensors", 3), f"folder {reviewed_folder.resolve()}",
                        replayed=f"folder {first.resolve()}")
    assert replay_source(again) == str(first.resolve())  # a fine-tune's first data: what it replayed
    lineage = read_metadata(fine_tune(reviewed_folder, parent, device="cpu"))["lineage"]
    assert lineage["replay"] == {"source": f"folder {first.resolve()}", "share": 0.5}
    # Data of another task are not replayed (they would teach it): the run goes on without.
    monkeypatch.setattr("segview.ml.data.REPLAY_PHANTOMS", 1)  # one lung phantom shows it
    other = _learnt_from(make_checkpoint(tmp_path / "lung.safetensors", 3), "phantom lung, seeds 0..39")
    assert replay_source(other) == "phantom:lung"
    assert read_metadata(fine_tune(reviewed_folder, other, device="cpu"))["lineage"]["replay"] is None


def test_info_gives_alpha_only_for_the_loss_that_has_one(capsys):
    """A tester read "loss ce, alpha 1" for a plain CE model: --alpha weights only ce+dice's Dice term."""
    assert main(["info", str(CLICK_MODEL.parent / "cardiac_ce.safetensors")]) == 0
    assert "loss         ce\n" in capsys.readouterr().out
    assert main(["info", str(CLICK_MODEL.parent / "cardiac_ce_dice.safetensors")]) == 0
    assert "loss         ce+dice, alpha 1\n" in capsys.readouterr().out


def test_info_says_how_many_processes_a_segmentation_model_trained_on(capsys):
    """A run under torchrun took N times --batch-size a step: info said so of click models only."""
    meta = read_metadata(CLICK_MODEL.parent / "cardiac_ce.safetensors")
    training = meta["training"]
    assert main(["info", str(CLICK_MODEL.parent / "cardiac_ce.safetensors")]) == 0
    assert f"{training['world_size']} process(es) on {training['device']}" in capsys.readouterr().out
