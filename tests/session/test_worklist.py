"""Worklist on tiny nnU-Net and DICOM datasets made here: statuses, sort orders, saving into
the dataset with backups, the prediction cache, provenance, correction effort."""
import json
import math

import numpy as np
import pytest
from scipy.stats import entropy

import segview.core.io as io_module
import segview.session.review as review_module
import segview.session.worklist as worklist_module
from segview.core.dicom import write_dicom_series
from segview.core.errors import LabelSaveError, VolumeLoadError
from segview.core.io import load_labels, load_volume, save_labels
from segview.core.journal import image_key
from segview.core.review_state import read_sidecar
from segview.ml.checkpoint import CheckpointError
from segview.ml.inference import Predictor
from segview.session import SessionError
from segview.session.provenance import segment_algorithms
from segview.session.worklist import STATUSES, PredictionCache, Worklist

from ..core.test_dicom import uneven_series
from .conftest import CLASSES, SPACING, make_checkpoint, make_dataset, tiny_case


def _refuse(*args, **kwargs):
    raise AssertionError("no image may be read here")


def test_200_cases_open_from_sidecars_without_reading_an_image(tmp_path, monkeypatch):
    folder = tmp_path / "big"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    volume, _ = tiny_case(0, slices=2, size=4)
    for n in range(200):
        io_module.save_volume(folder / "imagesTr" / f"case_{n:03d}_0000.nii.gz", volume)
    statuses = {f"case_{n:03d}": STATUSES[n % 4] for n in range(0, 200, 7)}
    for name, status in statuses.items():
        (folder / "labelsTr" / f"{name}.review.json").write_text(json.dumps(
            {"format": "segview-review-state", "version": 1, "case": {"status": status, "note": f"note {name}"},
             "reviewed": []}))
    for module in (io_module, worklist_module):
        monkeypatch.setattr(module, "load_volume", _refuse)
    monkeypatch.setattr(worklist_module, "read_dicom_files", _refuse)

    worklist = Worklist.open(folder)

    assert [c.name for c in worklist.cases] == [f"case_{n:03d}" for n in range(200)]
    assert {c.name: c.status for c in worklist.cases if c.name in statuses} == statuses
    assert all(c.status == "new" for c in worklist.cases if c.name not in statuses)
    assert worklist.case("case_007").note == "note case_007"


def test_status_and_note_round_trip_and_bad_status_refused(tmp_path):
    make_dataset(tmp_path / "ds", 3)
    worklist = Worklist.open(tmp_path / "ds")
    worklist.set_status("case_001", "flagged", "motion artefact on slices 3-4")
    worklist.set_status("case_002", "done")
    with pytest.raises(ValueError):
        worklist.set_status("case_000", "finished")

    again = Worklist.open(tmp_path / "ds")
    assert [(c.status, c.note) for c in again.cases] == [
        ("new", ""), ("flagged", "motion artefact on slices 3-4"), ("done", "")]
    # A status-only sidecar applies to the image when the case is opened, and is kept by a save.
    session = again.session("case_002")
    session.mark_reviewed(0)
    session.save()
    session.close()
    assert read_sidecar(tmp_path / "ds" / "labelsTr" / "case_002.nii.gz")["case"]["status"] == "done"
    assert Worklist.open(tmp_path / "ds").case("case_002").reviewed_count == 1


def test_held_out_cases_are_those_of_splits_json_and_a_broken_file_marks_none(tmp_path):
    make_dataset(tmp_path / "ds", 4)
    assert not any(c.held_out for c in Worklist.open(tmp_path / "ds").cases)  # no split yet: none drawn
    assert not (tmp_path / "ds" / "splits.json").exists()                     # opening writes nothing
    (tmp_path / "ds" / "splits.json").write_text(json.dumps(
        [{"train": ["case_000", "case_001", "case_003"], "val": ["case_002"]}]))
    worklist = Worklist.open(tmp_path / "ds")
    assert [c.name for c in worklist.cases if c.held_out] == ["case_002"]
    (tmp_path / "ds" / "splits.json").write_text("[{\"train\": [")
    problem = worklist.read_split()
    assert problem is not None and "splits.json cannot be read" in problem
    assert not any(c.held_out for c in worklist.cases)


@pytest.mark.parametrize("channel, modality", [("CT", "CT"), ("MRI", "MR"), ("t2", "MR"), ("FLAIR", "MR"),
                                               ("noNorm", None), (None, None)])
def test_the_dataset_modality_is_its_first_channel_and_a_checkpoint_of_another_is_to_be_asked(
        tmp_path, checkpoints, channel, modality):
    make_dataset(tmp_path / "ds", 2)
    document = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    if channel is not None:
        document["channel_names"] = {"0": channel}
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(document))
    worklist = Worklist.open(tmp_path / "ds", checkpoints)  # tiny MR checkpoints of the dataset's classes
    assert worklist.modality == modality
    problems = worklist.checkpoint_problems()
    if modality == "CT":
        assert set(problems) == {"A", "B"} and not any(refused for _, refused in problems.values())
        assert "trained on MR images but the dataset is CT" in problems["A"][0]
    else:
        assert problems == {}


def test_a_checkpoint_naming_a_class_otherwise_than_dataset_json_is_refused(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 2)
    document = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    document["labels"] = {"background": 0, "organ": 1, "tumour": 2}  # the checkpoints say "lesion"
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(document))
    problems = Worklist.open(tmp_path / "ds", checkpoints).checkpoint_problems()
    assert problems["A"] == ("its class 2 is \u201clesion\u201d where the dataset's classes have \u201ctumour\u201d: "
                             "it was trained for other classes", True)
    document["labels"] = {"background": 0, "Organ": 1, "label 2": 2}     # case and placeholders agree
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(document))
    assert Worklist.open(tmp_path / "ds", checkpoints).checkpoint_problems() == {}


def test_sort_orders_and_next_previous(tmp_path):
    make_dataset(tmp_path / "ds", 4)
    worklist = Worklist.open(tmp_path / "ds")
    figures = {"case_000": (0.10, 0.5), "case_001": (0.30, 0.2), "case_002": (math.nan, math.nan),
               "case_003": (0.20, 0.9)}
    for case in worklist.cases:
        case.disputed, case.entropy = figures[case.name][0], {"A": figures[case.name][1]}

    assert [c.name for c in worklist.sorted("disputed")] == ["case_001", "case_003", "case_000", "case_002"]
    assert [c.name for c in worklist.sorted("uncertain")] == ["case_003", "case_000", "case_001", "case_002"]
    assert [c.name for c in worklist.sorted("name")] == ["case_000", "case_001", "case_002", "case_003"]
    assert worklist.next_case("case_003", "disputed").name == "case_000"
    assert worklist.previous_case("case_003", "disputed").name == "case_001"
    assert worklist.previous_case("case_001", "disputed") is None
    assert worklist.next_case("case_003") is None
    with pytest.raises(ValueError):
        worklist.sorted("size")


def test_save_writes_into_labelsTr_and_keeps_what_it_replaces(tmp_path):
    references = make_dataset(tmp_path / "ds", 2)
    labels_path = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    original_bytes = labels_path.read_bytes()
    worklist = Worklist.open(tmp_path / "ds")
    session = worklist.session("case_000")
    assert np.array_equal(session.labels.array, references["case_000"])

    session.labels.paint(2, [(3, 3)], 1.0, 2)
    session.mark_reviewed(2)
    assert session.save() == labels_path
    first = session.labels.array.copy()
    volume = session.volume
    assert np.array_equal(load_labels(labels_path, volume), first)
    previous = tmp_path / "ds" / "labelsTr" / ".previous"
    assert (previous / "case_000.original.nii.gz").read_bytes() == original_bytes
    assert worklist.case("case_000").status == "in progress"

    session.labels.paint(3, [(20, 20)], 1.0, 1)
    session.save()
    # The original stays; the latest backup is the file the second save replaced.
    assert (previous / "case_000.original.nii.gz").read_bytes() == original_bytes
    assert np.array_equal(load_labels(previous / "case_000.nii.gz", volume), first)
    assert json.loads((previous / "case_000.review.json").read_text())["reviewed"][0]["z"] == 2

    # A save that fails leaves the labels of the last good save in place.
    session.labels.paint(4, [(20, 20)], 1.0, 1)

    def full_disk(*args, **kwargs):
        raise LabelSaveError("disk full")

    saved = labels_path.read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(review_module, "save_labels", full_disk)
        with pytest.raises(LabelSaveError):
            session.save()
    assert labels_path.read_bytes() == saved
    assert session.modified
    session.close()
    assert sorted(p.name for p in labels_path.parent.iterdir() if p.name.startswith(".") and p.is_file()) == []


def test_read_only_dataset_refuses_to_save(tmp_path, monkeypatch):
    make_dataset(tmp_path / "ds", 1)
    monkeypatch.setattr(worklist_module.os, "access", lambda path, mode: False)
    worklist = Worklist.open(tmp_path / "ds")
    assert worklist.read_only
    with pytest.raises(SessionError, match="read-only"):
        worklist.set_status("case_000", "done")
    session = worklist.session("case_000")
    with pytest.raises(SessionError, match="read-only"):
        session.save()
    session.close(discard=True)


def test_unreadable_case_is_listed_with_its_reason_and_the_rest_open(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 3)
    (tmp_path / "ds" / "imagesTr" / "case_001_0000.nii.gz").write_bytes(b"not an image")
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    with pytest.raises(VolumeLoadError):
        worklist.session("case_001")
    assert worklist.case("case_001").error
    steps = list(worklist.prediction_queue())
    assert [s.case for s in steps if s.error] == ["case_001"]
    assert steps[-1].done == steps[-1].total == 6
    worklist.session("case_002").close()


def test_a_case_whose_labels_lie_on_another_grid_opens_empty_and_keeps_them_until_saved(tmp_path):
    """A tester's case whose label file lay on another grid could not be opened at all (so not
    relabelled), where File > Open gave empty labels and a warning."""
    make_dataset(tmp_path / "ds", 1)
    volume, labels = tiny_case(0, slices=5)
    bad = tmp_path / "ds" / "labelsTr" / "case_000.nii.gz"
    save_labels(bad, labels, volume)
    written = bad.read_bytes()
    worklist = Worklist.open(tmp_path / "ds")
    session = worklist.session("case_000")
    case = worklist.case("case_000")
    assert case.error is None and not session.labels.array.any() and session.labels.array.shape == (6, 24, 24)
    assert session.warnings == [case.labels_unread]
    assert case.labels_unread.startswith("The labels case_000.nii.gz were not read, so the labels start empty")
    assert "size (x, y, z) (24, 24, 5) vs (24, 24, 6)" in case.labels_unread
    session.close()
    assert bad.read_bytes() == written  # opened and left unsaved: the file is as it was
    session = worklist.session("case_000")
    session.labels.array[0, 10, 10] = 1
    session.save()
    session.close()
    assert case.labels_unread is None and load_labels(bad, load_volume(case.image))[0, 10, 10] == 1
    assert (bad.parent / ".previous" / "case_000.original.nii.gz").read_bytes() == written


def _mean_entropy(predictor, volume):
    """Mean softmax entropy (nats) over every voxel, by scipy.stats.entropy."""
    normalized = predictor.prepare(volume)
    total = 0.0
    for p in predictor.predict_slices(normalized, list(range(volume.shape[0])), want_probabilities=True):
        total += entropy(p.probabilities.astype(np.float64), axis=0).sum()
    return total / np.prod(volume.shape)


def test_background_prediction_fills_the_cache_and_a_reopened_case_runs_no_model(tmp_path, checkpoints, monkeypatch):
    make_dataset(tmp_path / "ds", 3)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    assert [c.slices for c in worklist.cases] == [None] * 3  # never saved nor read: unknown
    steps = list(worklist.prediction_queue())
    assert [(s.case, s.slot, s.done, s.cached) for s in steps] == [
        ("case_000", "A", 1, False), ("case_000", "B", 2, False), ("case_001", "A", 3, False),
        ("case_001", "B", 4, False), ("case_002", "A", 5, False), ("case_002", "B", 6, False)]
    expected = {}
    predictors = {slot: Predictor.from_checkpoint(path, "cpu") for slot, path in checkpoints.items()}
    for case in worklist.cases:
        volume = load_volume(case.image)
        a, b = (predictors[slot].predict_volume(volume) for slot in "AB")
        expected[case.name] = (a, b)
        assert case.disputed == pytest.approx(np.count_nonzero(a != b) / np.count_nonzero((a > 0) | (b > 0)))
        assert case.entropy["A"] == pytest.approx(_mean_entropy(predictors["A"], volume), rel=1e-4)
    assert len(worklist.sorted("disputed")) == 3
    assert not any(math.isnan(c.disputed) for c in worklist.cases)

    def no_model(*args, **kwargs):
        raise AssertionError("the model ran although its prediction is cached")

    monkeypatch.setattr(Predictor, "predict_slices", no_model)
    monkeypatch.setattr(Predictor, "_probabilities", no_model)
    reopened = Worklist.open(tmp_path / "ds", checkpoints)
    # The sort covers every case from the cache, without reading an image, and so do the slices.
    assert [c.disputed for c in reopened.cases] == [c.disputed for c in worklist.cases]
    assert [c.slices for c in reopened.cases] == [c.slices for c in worklist.cases] == \
        [load_volume(c.image).shape[0] for c in worklist.cases]
    assert [s.cached for s in reopened.prediction_queue()] == [True] * 6
    # A case opened before the queue reached it takes the predictions when they arrive.
    early = Worklist.open(tmp_path / "ds", checkpoints, cache=PredictionCache(tmp_path / "later"))
    session = early.session("case_002")
    assert not session.models["A"].predicted.any() and session.take_cached_predictions() == []
    early.cache = reopened.cache
    assert session.take_cached_predictions() == ["A", "B"]
    assert np.array_equal(session.prediction("B"), expected["case_002"][1])
    session.close()
    session = reopened.session("case_001")
    assert session.models["A"].predicted.all() and session.models["B"].predicted.all()
    assert np.array_equal(session.prediction("A"), expected["case_001"][0])
    assert np.array_equal(session.prediction("B"), expected["case_001"][1])
    session.close()


def test_cache_misses_after_the_checkpoint_or_the_image_changes(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 1)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    case = worklist.case("case_000")
    digests = worklist.digests()
    assert worklist.cache.has(case.key, digests["A"])

    retrained = make_checkpoint(tmp_path / "retrained.safetensors", 3)
    worklist.set_checkpoints({"A": retrained, "B": checkpoints["B"]})
    assert not worklist.cache.has(case.key, worklist.digests()["A"])
    assert math.isnan(case.entropy["A"]) and not math.isnan(case.entropy["B"])
    assert [s.cached for s in worklist.prediction_queue()] == [False, True]

    volume, _ = tiny_case(7)
    io_module.save_volume(case.image, volume)
    changed = Worklist.open(tmp_path / "ds", checkpoints)
    assert changed.case("case_000").key is None  # the file changed: its old key is not trusted
    assert [s.cached for s in changed.prediction_queue()] == [False, False]


def test_an_image_key_remembered_by_a_segview_that_read_the_files_otherwise_is_not_trusted(tmp_path):
    """An older segview resampled an unevenly spaced series onto another grid: the key it
    remembered for the files opened the case under that image's key, with its cached
    predictions and crash journals (a journal of 8 slices offered on an image of 9)."""
    root = tmp_path / "studies"
    uneven_series(root / "patient_u" / "ax", tuple(np.eye(3).ravel()), last_moved_mm=0.9)
    write_dicom_series(tiny_case(0, slices=3, size=16)[0], root / "patient_v" / "ax")
    cache = PredictionCache(tmp_path / "cache")
    session = Worklist.open(root, cache=cache).session("patient_u")
    key = session.key
    session.close()
    index_path = tmp_path / "cache" / "images.json"
    index = json.loads(index_path.read_text())
    assert [entry["key"] for entry in index.values()] == [key]
    index_path.write_text(json.dumps({files: {"stamp": entry["stamp"], "key": "0" * 40}  # as it wrote them
                                      for files, entry in index.items()}))
    worklist = Worklist.open(root, cache=PredictionCache(tmp_path / "cache"))
    assert worklist.case("patient_u").key is None
    session = worklist.session("patient_u")
    assert session.key == key == image_key(session.volume)
    session.close()


def test_a_prediction_cached_by_a_segview_that_fed_slices_otherwise_is_not_reused(tmp_path):
    """An older segview padded slices square in pixels: on non-square pixels its cached
    predictions are of a squashed image (the shipped cardiac_ce drew nothing), so they are
    not taken for the predictions of a checkpoint fed square in mm."""
    cache = PredictionCache(tmp_path / "cache")
    labels = np.ones((2, 4, 4), np.uint8)
    cache.put("key", "digest", labels, {"shape": [2, 4, 4]})
    np.testing.assert_array_equal(cache.get("key", "digest"), labels)
    for path in (tmp_path / "cache" / "key").iterdir():  # as an older segview named them
        path.rename(path.with_name(path.name.replace("digest-mm", "digest")))
    assert (tmp_path / "cache" / "key" / "digest.npz").is_file()
    fresh = PredictionCache(tmp_path / "cache")
    assert fresh.get("key", "digest") is None and not fresh.has("key", "digest")
    assert fresh.summary("key", "digest") is None


def test_cancelled_prediction_caches_nothing_of_the_case_cut_short(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 2)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    asked = []

    def stop_after_first_batch():
        asked.append(1)
        return len(asked) > 1

    assert list(worklist.prediction_queue(should_stop=stop_after_first_batch)) == []
    assert not list((tmp_path / "cache").glob("**/*.npz"))
    steps = list(worklist.prediction_queue(order=["case_001"]))
    assert [(s.case, s.done, s.total) for s in steps] == [("case_001", 1, 2), ("case_001", 2, 2)]


def test_cache_is_bounded(tmp_path):
    cache = PredictionCache(tmp_path / "c", max_bytes=1)
    labels = np.random.default_rng(0).integers(0, 3, (4, 16, 16), dtype=np.uint8)
    cache.put("k1", "d", labels, {"mean_entropy": 0.1})
    cache.put("k2", "d", labels, {"mean_entropy": 0.1})
    assert not cache.has("k1", "d") and not cache.has("k2", "d")
    roomy = PredictionCache(tmp_path / "c", max_bytes=2 ** 20)
    roomy.put("k3", "d", labels, {"mean_entropy": 0.1})
    assert np.array_equal(roomy.get("k3", "d"), labels)


def test_provenance_follows_copies_edits_interpolation_and_undo(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    session = worklist.session("case_000")
    session.predict()
    provenance = session.provenance
    assert provenance.latest() == ["untouched"] * 6

    session.copy_prediction("B", z=1)
    session.copy_prediction("A", z=4)
    assert provenance.of_slice(1) == ("model B: ce_dice",) and provenance.of_slice(4) == ("model A: ce",)
    labels = session.labels
    with labels.step():
        labels.paint(1, [(12, 12)], 2.0, 2)
    assert provenance.of_slice(1) == ("model B: ce_dice", "hand")
    # One voxel painted with the class model A predicts there is still a hand edit.
    y, x = np.argwhere(session.prediction("A")[0] != 0)[0]
    with labels.step():
        labels.paint(0, [(y, x)], 0.1, int(session.prediction("A")[0, y, x]))
    assert provenance.of_slice(0) == ("hand",)
    labels.undo()
    labels.undo()
    assert provenance.of_slice(0) == ()
    assert provenance.of_slice(1) == ("model B: ce_dice",)
    labels.redo()
    assert provenance.of_slice(1) == ("model B: ce_dice", "hand")
    with labels.step():
        labels.interpolate(1, 4)
    assert [provenance.of_slice(z) for z in (2, 3)] == [("interpolation",), ("interpolation",)]
    labels.undo()
    assert provenance.of_slice(2) == () and provenance.of_slice(4) == ("model A: ce",)
    session.mark_reviewed(1)
    session.save()
    session.close()

    sidecar = read_sidecar(tmp_path / "ds" / "labelsTr" / "case_000.nii.gz")
    assert sidecar["provenance"] == {"1": ["model B: ce_dice", "hand"], "4": ["model A: ce"]}
    reopened = worklist.session("case_000")
    assert reopened.provenance.of_slice(1) == ("model B: ce_dice", "hand")
    assert reopened.review_marks[1]["by"]
    reopened.close()


def test_a_model_copied_over_a_whole_slice_is_its_only_source(tmp_path, checkpoints):
    """A tester copied model A onto a slice, then model B over it: the slice, B's prediction
    exactly, was credited to A and B, and its DICOM SEG segments named A too."""
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    session = Worklist.open(tmp_path / "ds", checkpoints).session("case_000")
    session.predict()
    provenance = session.provenance
    session.copy_prediction("A", z=1)
    with session.labels.step():
        session.labels.paint(1, [(12, 12)], 2.0, 2)
    session.copy_prediction("B", z=1)
    assert provenance.of_slice(1) == ("model B: ce_dice",)
    assert all("ce" not in names for names in segment_algorithms(
        session.labels.array, provenance.sources, {}).values())
    session.labels.undo()
    assert provenance.of_slice(1) == ("model A: ce", "hand")
    session.close(discard=True)


def test_correction_effort_against_a_count_by_hand(tmp_path, checkpoints):
    references = make_dataset(tmp_path / "ds", 1)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    session = worklist.session("case_000")
    for z in (0, 3, 5):
        session.mark_reviewed(z)
    with session.labels.step():
        session.labels.paint(3, [(2, 2)], 1.0, 2)
    session.save()
    session.close()

    labels = load_labels(tmp_path / "ds" / "labelsTr" / "case_000.nii.gz", load_volume(worklist.case("case_000").image))
    assert not np.array_equal(labels, references["case_000"])
    cache = worklist.cache
    reopened = Worklist.open(tmp_path / "ds", checkpoints)
    case = reopened.case("case_000")
    for slot, digest in reopened.digests().items():
        prediction = cache.get(case.key, digest)
        voxels = sum(1 for z in (0, 3, 5) for y in range(24) for x in range(24)
                     if prediction[z, y, x] != labels[z, y, x])
        assert case.correction_voxels[slot] == voxels
        voxel_ml = SPACING[0] * SPACING[1] * SPACING[2] / 1000
        assert case.correction_ml[slot] == pytest.approx(voxels * voxel_ml)
    assert case.reviewed_count == 3 and case.slices == 6 and case.status == "in progress"


def test_a_case_with_nothing_reviewed_has_no_correction_not_zero(tmp_path, checkpoints):
    """A tester copied a model's labels, reviewed nothing and saved: the worklist said the case
    needed 0.00 mL of correction."""
    make_dataset(tmp_path / "ds", 1)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    list(worklist.prediction_queue())
    session = worklist.session("case_000")
    with session.labels.step():
        session.labels.paint(3, [(2, 2)], 1.0, 2)
    session.save()
    for slot in session.models:
        assert math.isnan(session.case.correction_ml[slot])
    session.close()
    sidecar = read_sidecar(tmp_path / "ds" / "labelsTr" / "case_000.nii.gz")
    assert all(entry["correction_ml"] is None for entry in sidecar["models"].values())
    case = Worklist.open(tmp_path / "ds", checkpoints).case("case_000")
    assert case.correction_ml and all(math.isnan(ml) for ml in case.correction_ml.values())


def test_a_folder_of_dicom_studies(tmp_path):
    root = tmp_path / "studies"
    for n, study in enumerate(("patient_a", "patient_b")):
        volume, _ = tiny_case(n, slices=3, size=16)
        write_dicom_series(volume, root / study / "ax", series_number=3)
        if study == "patient_b":
            write_dicom_series(tiny_case(5, slices=3, size=16)[0], root / study / "cor", series_number=4)
    worklist = Worklist.open(root)
    assert worklist.layout == "DICOM"
    assert [c.name for c in worklist.cases] == ["patient_a", "patient_b_3", "patient_b_4"]
    session = worklist.session("patient_b_4")
    assert session.volume.shape == (3, 16, 16)
    session.mark_reviewed(1)
    assert session.save() == root / "labels" / "patient_b_4.nii.gz"
    session.close()
    assert Worklist.open(root).case("patient_b_4").reviewed_count == 1  # labels/ is not a study



def test_a_study_that_gains_a_series_keeps_its_saved_case_and_every_name_is_unique(tmp_path):
    """A tester copied a second series (of the same SeriesNumber) into a reviewed study: the
    saved case came back new under another name, and two rows shared one name."""
    root = tmp_path / "studies"
    write_dicom_series(tiny_case(0, slices=3, size=16)[0], root / "patient_c" / "ax", series_number=3)
    write_dicom_series(tiny_case(3, slices=3, size=16)[0], root / "patient_d" / "ax", series_number=3)
    session = Worklist.open(root).session("patient_c")
    session.mark_reviewed(1)
    assert session.save() == root / "labels" / "patient_c.nii.gz"
    session.close()
    write_dicom_series(tiny_case(1, slices=4, size=16)[0], root / "patient_c" / "ax2", series_number=3)
    write_dicom_series(tiny_case(2, slices=5, size=16)[0], root / "patient_c" / "ax3", series_number=3)
    worklist = Worklist.open(root)
    names = [c.name for c in worklist.cases if c.name != "patient_d"]
    assert len(names) == len(set(names)) == 3 and names.count("patient_c") == 1
    kept = worklist.case("patient_c")
    assert kept.reviewed_count == 1 and kept.series.size[2] == 3  # the series its labels were saved on
    assert all(n.startswith("patient_c_3_") for n in names if n != "patient_c")
    assert len({worklist.case(n).series.uid for n in names}) == 3  # each name reaches its own series


def test_a_dicom_series_in_imagesTr_is_a_case(tmp_path):
    make_dataset(tmp_path / "ds", 1)
    volume, labels = tiny_case(3, slices=3, size=16)
    write_dicom_series(volume, tmp_path / "ds" / "imagesTr" / "case_dicom")
    worklist = Worklist.open(tmp_path / "ds")
    assert [c.name for c in worklist.cases] == ["case_000", "case_dicom"]
    session = worklist.session("case_dicom")
    assert session.volume.shape == (3, 16, 16)
    session.mark_reviewed(0)
    assert session.save() == tmp_path / "ds" / "labelsTr" / "case_dicom.nii.gz"
    session.close()


def test_classes_come_from_dataset_json(tmp_path):
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    session = Worklist.open(tmp_path / "ds").session("case_000")
    assert [c.name for c in session.classes] == [c.name for c in CLASSES]
    session.close(discard=True)


def test_a_case_open_in_another_session_opens_read_only_until_it_is_closed(tmp_path):
    make_dataset(tmp_path / "ds", 1)
    first = Worklist.open(tmp_path / "ds").session("case_000")
    assert not first.read_only
    second = Worklist.open(tmp_path / "ds").session("case_000")
    assert second.read_only
    assert any("open in another segview" in w and "process" in w for w in second.warnings)
    second.mark_reviewed(1)
    with pytest.raises(SessionError, match="read-only"):
        second.save()
    assert second.save(tmp_path / "elsewhere.nii.gz").exists()  # Save as still works
    second.close()
    first.mark_reviewed(0)
    first.save()
    first.close()
    third = Worklist.open(tmp_path / "ds").session("case_000")
    assert not third.read_only and third.reviewed[0] and not third.reviewed[1]
    third.close()


def test_a_checkpoint_that_cannot_be_read_leaves_no_case_locked(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 1)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    worklist = Worklist.open(tmp_path / "ds", {"A": broken, "B": checkpoints["B"]})
    with pytest.raises(CheckpointError):
        worklist.session("case_000")
    with pytest.raises(SessionError, match="cannot be read"):
        worklist.set_checkpoints({"A": tmp_path / "missing.safetensors"})
    assert worklist.checkpoints["A"] == broken
    session = Worklist.open(tmp_path / "ds").session("case_000")
    assert not session.read_only
    session.close()


def test_figures_saved_for_a_checkpoint_loaded_by_hand_are_not_shown_for_the_worklists(tmp_path, checkpoints):
    make_dataset(tmp_path / "ds", 1)
    other = make_checkpoint(tmp_path / "other.safetensors", 4)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    session = worklist.session("case_000")
    session.load_model("A", other)
    session.predict()
    session.mark_reviewed(2)
    session.save()
    session.close()
    saved = read_sidecar(tmp_path / "ds" / "labelsTr" / "case_000.nii.gz")["models"]
    assert saved["A"]["checkpoint"] == "other"
    assert math.isnan(Worklist.open(tmp_path / "ds", checkpoints).case("case_000").dice["A"])
    assert not math.isnan(Worklist.open(tmp_path / "ds", {"A": other}).case("case_000").dice["A"])


def test_a_copy_credits_the_model_copied_and_only_the_slices_it_changed(tmp_path, checkpoints):
    """A tester's copy of model B over the volume credited "model A" to slices where A
    agreed with B, and to slices the copy had not changed at all."""
    make_dataset(tmp_path / "ds", 1, with_labels=False)
    session = Worklist.open(tmp_path / "ds", {"A": checkpoints["B"], "B": checkpoints["B"]}).session("case_000")
    session.predict()  # A and B predict alike: every slice copied from B could be taken for A's
    provenance = session.provenance
    unchanged = [z for z in range(6) if not session.prediction("B")[z].any()]  # empty labels stay empty there
    session.copy_prediction("B")
    for z in range(6):
        assert provenance.of_slice(z) == (() if z in unchanged else ("model B: ce_dice",)), z
    session.labels.undo()
    job = session.copy_job("A")  # the window's route, written in pieces
    session.start_copy(job, job()).finish()
    assert all(provenance.of_slice(z) in ((), ("model A: ce_dice",)) for z in range(6))  # A is B's checkpoint here
    session.close(discard=True)


def test_opening_a_case_keeps_the_figures_of_a_model_changed_since_it_was_saved(tmp_path, checkpoints):
    """A tester's row lost model B's Dice and correction ("–") on opening the case, once B had
    been replaced by a fine-tuned checkpoint: the sidecar holds the old B's figures only, and
    the row, scored from the new B's cached prediction, was reset from the sidecar alone."""
    make_dataset(tmp_path / "ds", 1)
    worklist = Worklist.open(tmp_path / "ds", checkpoints)
    session = worklist.session("case_000")
    session.predict()
    session.mark_reviewed(2)
    session.save()
    session.close()
    tuned = make_checkpoint(tmp_path / "tuned.safetensors", 5)
    worklist.set_checkpoints({"A": checkpoints["A"], "B": tuned})
    list(worklist.prediction_queue())
    case = worklist.case("case_000")
    scored = case.dice["B"], case.correction_ml["B"]
    assert not math.isnan(scored[0]) and not math.isnan(case.dice["A"])
    session = worklist.session("case_000")
    assert (case.dice["B"], case.correction_ml["B"]) == scored
    np.testing.assert_allclose(case.dice["B"], session.scores("B").mean_dice)  # the panel's figure
    session.close()


def test_a_case_saved_after_its_journal_stopped_says_it_is_journalled_again(tmp_path, monkeypatch):
    """A tester's worklist case, saved once the full disk had room again, journalled again
    but the window never said so: the case's save dropped the session's note."""
    import segview.core.journal as journal_module

    make_dataset(tmp_path / "ds", 1)
    session = Worklist.open(tmp_path / "ds").session("case_000")
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "_write_record", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
        session.labels.paint(1, [(5, 5)], 2.0, 1)
        assert session.journal_failure() is not None
    job = session.save_job()
    job()
    assert session.finish_save(job) == "Edits are journalled again." and session.journal is not None
    session.close()


def _reviewed_case(folder) -> None:
    """A one-case dataset at ``folder`` whose case_000 is saved with slices 1, 2 and 4 reviewed."""
    make_dataset(folder, 1)
    session = Worklist.open(folder).session("case_000")
    for z in (1, 2, 4):
        session.mark_reviewed(z)
    session.save()
    session.close()


def test_a_row_counts_no_marks_that_do_not_apply_to_its_image_changed_since(tmp_path):
    """A helper changed one voxel of a reviewed case's image: opening it marked nothing (the
    review is of another image), yet its row kept saying 3 reviewed slices."""
    import SimpleITK as sitk

    _reviewed_case(tmp_path / "ds")
    path = tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz"
    image = sitk.ReadImage(str(path))
    image[0, 0, 0] = image[0, 0, 0] + 1
    sitk.WriteImage(image, str(path))
    worklist = Worklist.open(tmp_path / "ds")
    assert worklist.case("case_000").reviewed_count == 3  # as saved: the image is not read to list it
    session = worklist.session("case_000")
    assert not session.reviewed.any() and "another image" in " ".join(session.warnings)
    session.close()
    worklist.read_status(worklist.case("case_000"))
    assert worklist.case("case_000").reviewed_count == 0  # once read, the row follows what applies
    session = worklist.session("case_000")
    session.mark_reviewed(3)
    session.save()  # a review of this image: counted again
    session.close()
    worklist.read_status(worklist.case("case_000"))
    assert worklist.case("case_000").reviewed_count == 1


def test_a_case_opening_while_the_models_change_is_built_of_the_models_it_started_with(tmp_path, monkeypatch):
    """The window opens the next case ahead in a worker; a model loaded meanwhile raised
    KeyError there (the new slot had no predictor) instead of leaving a session to drop."""
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 2)
    a, b = make_checkpoint(tmp_path / "a.safetensors", 1), make_checkpoint(tmp_path / "b.safetensors", 2)
    worklist = Worklist.open(folder, {"A": a})
    load_image = worklist.load_image

    def models_changed_meanwhile(*args, **kwargs):
        worklist.set_checkpoints({"A": a, "B": b})  # as the window's thread does while the image is read
        return load_image(*args, **kwargs)

    monkeypatch.setattr(worklist, "load_image", models_changed_meanwhile)
    session = worklist.session("case_000", lock=False)
    assert {slot: m.path for slot, m in session.models.items()} == {"A": a}
    session.close(discard=True)


def test_a_worklist_sees_what_another_segview_saved_and_holds_when_it_refreshes(tmp_path, checkpoints):
    """Two radiologists on one dataset: one's worklist showed the case the other had saved
    "in progress" or "done" as "new" until it was opened there."""
    make_dataset(tmp_path / "ds", 3)
    mine = Worklist.open(tmp_path / "ds", checkpoints)
    theirs = Worklist.open(tmp_path / "ds", checkpoints)
    assert mine.refresh_changed() == []                        # nothing changed: nothing read again
    session = theirs.session("case_001")
    assert mine.refresh_changed() == ["case_001"]
    assert "process" in mine.case("case_001").held_by          # who has it, from its lock
    session.predict()
    session.mark_reviewed(2)
    session.save()
    theirs.set_status("case_002", "done")
    assert mine.refresh_changed() == ["case_001", "case_002"]
    assert (mine.case("case_001").status, mine.case("case_001").reviewed_count) == ("in progress", 1)
    assert mine.case("case_001").dice == pytest.approx(session.case.dice, nan_ok=True)
    assert not math.isnan(mine.case("case_001").dice["A"])     # the figures it saved follow
    assert mine.case("case_002").status == "done" and mine.case("case_002").held_by is None
    session.close()
    assert mine.refresh_changed() == ["case_001"] and mine.case("case_001").held_by is None
    # The case open here is left to its own session.
    theirs.set_status("case_000", "flagged", "motion")
    assert mine.refresh_changed(keep={"case_000"}) == [] and mine.case("case_000").status == "new"
    assert mine.refresh_changed() == ["case_000"] and mine.case("case_000").note == "motion"


def test_a_case_a_worklists_own_session_holds_is_not_anothers(tmp_path):
    make_dataset(tmp_path / "ds", 2)
    worklist = Worklist.open(tmp_path / "ds")
    session = worklist.session("case_001")
    worklist.refresh_changed()
    assert worklist.case("case_001").held_by is None
    session.close()


def test_a_row_counts_no_marks_of_labels_that_lie_on_another_grid_until_saved(tmp_path):
    """A case whose label file lay on another grid opened with empty labels ("labels not
    read"), yet its row kept the reviewed slices of that file's sidecar."""
    _reviewed_case(tmp_path / "ds")
    volume, _ = tiny_case(0, slices=5)  # the image exported again on another grid
    io_module.save_volume(tmp_path / "ds" / "imagesTr" / "case_000_0000.nii.gz", volume)
    worklist = Worklist.open(tmp_path / "ds")
    case = worklist.case("case_000")
    session = worklist.session("case_000")
    assert case.labels_unread and not session.reviewed.any() and case.reviewed_count == 0
    session.close()
    worklist.read_status(case)  # as the row reads it again once the case is closed
    assert case.reviewed_count == 0
    session = worklist.session("case_000")
    session.mark_reviewed(3)
    session.save()  # labels of this image now: its marks count
    session.close()
    worklist.read_status(case)
    assert case.reviewed_count == 1 and case.labels_unread is None
