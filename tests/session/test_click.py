"""Click correction in the session (issue 20, item 4), without a window: each click one
undo step and one journal record, the overwrite policy and protected classes obeyed, no
review mark, provenance "interactive", interactions that start and end as documented, bad
input refused, a failing or missing model changing nothing, and the live metrics equal to
a recount.

Most tests replace the network's answer (``ClickModel.refine``) by a rule simple enough to
predict by hand: the class's current mask, then a disk of radius 3 at each click (set by a
positive click, cleared by a negative one, later clicks over earlier ones). One test runs a
tiny untrained network end to end."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from segview.core.classes import named_classes
from segview.core.io import save_volume
from segview.core.labels import OverwritePolicy
from segview.core.volume import Volume
from segview.resources import CLICK_MODEL
from segview.ml.checkpoint import CheckpointError, classes_to_metadata, save_checkpoint
from segview.ml.interactive import PREPROCESSING, ClickModel
from segview.ml.unet import UNet
from segview.session import ReviewSession, SessionError, Worklist, read_label_file
from segview.session.interaction import ENVIRONMENT

from .conftest import make_dataset, tiny_case

RADIUS = 3


def disk(shape, y, x, radius=RADIUS) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2


def disks_refine(self, volume, z, mask, clicks, pixel_size=None):
    """The stand-in network: ``mask`` with a disk at each click, on the whole slice."""
    out = mask.copy()
    for click in clicks:
        out[disk(mask.shape, click.y, click.x)] = click.positive
    return (slice(0, mask.shape[0]), slice(0, mask.shape[1])), out


def make_click_checkpoint(path, seed: int = 0):
    torch.manual_seed(seed)
    model = UNet(in_channels=6, num_classes=2, base_channels=4, depth=2)
    meta = {"task": "interactive", "classes": classes_to_metadata(named_classes(["background", "class"])),
            "preprocessing": {**PREPROCESSING, "input_size": [32, 32]}, "loss": {"name": "ce+dice"}}
    return save_checkpoint(path, model, meta)


@pytest.fixture(scope="module")
def click_checkpoint(tmp_path_factory):
    return make_click_checkpoint(tmp_path_factory.mktemp("click") / "interactive.safetensors")


@pytest.fixture(autouse=True)
def click_model(click_checkpoint, monkeypatch):
    """Every session here finds the tiny checkpoint as its default click model."""
    monkeypatch.setenv(ENVIRONMENT, str(click_checkpoint))
    return click_checkpoint


@pytest.fixture
def disks(monkeypatch):
    """The network's answer replaced by ``disks_refine``; the clicks it was given, per call."""
    calls = []

    def refine(self, volume, z, mask, clicks, pixel_size=None):
        calls.append(list(clicks))
        return disks_refine(self, volume, z, mask, clicks)

    monkeypatch.setattr(ClickModel, "refine", refine)
    return calls


def open_case(seed=0):
    """A 6 x 24 x 24 case: a disc of class 1 (centre 12, 12) holding a spot of class 2 on even slices."""
    volume, labels = tiny_case(seed)
    return ReviewSession.open(volume, labels=labels), labels


def recount(prediction, labels, num_classes):
    """(Z, C, C) counts, rows the labels' class, columns the prediction's: by bincount."""
    codes = labels.astype(np.int64) * num_classes + prediction
    return np.stack([np.bincount(plane.ravel(), minlength=num_classes ** 2).reshape(num_classes, num_classes)
                     for plane in codes])


# -- undo, interactions ---------------------------------------------------------------------

def test_a_click_is_one_undo_step_and_redo_brings_it_back(disks):
    session, labels = open_case()
    expected = labels.copy()
    expected[2][disk(labels.shape[1:], 3, 4) & (labels[2] == 0)] = 1  # background becomes the class
    changed = session.click(2, (3, 4), value=1)
    np.testing.assert_array_equal(session.labels.array, expected)
    assert changed == int(np.count_nonzero(expected != labels)) > 0
    assert session.labels.undo()
    np.testing.assert_array_equal(session.labels.array, labels)
    assert not session.labels.can_undo
    assert session.labels.redo()
    np.testing.assert_array_equal(session.labels.array, expected)
    session.close(discard=True)


def test_undo_of_a_click_says_click_its_slice_and_class(disks):
    volume, labels = tiny_case(0)
    session = ReviewSession.open(volume, labels=labels, classes=named_classes(["background", "organ", "lesion"]))
    session.click(2, (3, 4), value=1)
    assert session.undo() == "click on slice 3 (organ)"
    assert session.redo() == "click on slice 3 (organ)"
    session.close(discard=True)


def test_the_model_is_given_the_slices_pixel_size(monkeypatch):
    """(row, column) mm of an axial slice, from the volume's (x, y, z) spacing: the crop is
    square in mm (``ml.interactive.crop_box``)."""
    sizes = []

    def refine(self, volume, z, mask, clicks, pixel_size=None):
        sizes.append(pixel_size)
        return disks_refine(self, volume, z, mask, clicks)

    monkeypatch.setattr(ClickModel, "refine", refine)
    volume, labels = tiny_case(0)
    session = ReviewSession.open(Volume(volume.array, (0.6, 1.2, 3.0), modality="MR"), labels=labels)
    session.click(2, (3, 4), value=1)
    assert sizes == [(1.2, 0.6)]
    session.close(discard=True)


def test_clicks_of_one_interaction_all_reach_the_model_and_a_new_class_or_slice_starts_anew(disks):
    session, _ = open_case()
    session.click(2, (3, 4), value=1)
    session.click(2, (12.4, 11.6), positive=False)      # value None: the interaction's class
    assert [(c.y, c.x, c.positive) for c in disks[-1]] == [(3, 4, True), (12, 12, False)]
    session.click(2, (20, 20), value=2)                 # another class
    assert [(c.y, c.x) for c in disks[-1]] == [(20, 20)]
    session.click(2, (21, 20))                          # continues class 2
    assert len(disks[-1]) == 2 and session.interaction.value == 2
    session.click(3, (21, 20))                          # another slice: class 2 still, a new interaction
    assert len(disks[-1]) == 1 and session.interaction.z == 3
    session.end_interaction()
    with pytest.raises(SessionError, match="Choose the class"):
        session.click(3, (5, 5))
    session.click(3, (5, 5), value=2)
    assert len(disks[-1]) == 1
    session.close(discard=True)


def test_another_change_of_the_slice_ends_the_interaction_and_the_next_click_starts_anew(disks, tmp_path):
    """A tester cleared the slice mid-interaction and clicked another blob: the first
    click's lesion came back with it."""
    session, labels = open_case()
    session.click(2, (3, 4), value=1)
    session.click(3, (20, 20))            # another slice: its own interaction
    session.click(3, (20, 4))
    with session.labels.step():
        session.labels.paint(2, [(20, 20)], 1.0, 1)   # another slice than the interaction's
    assert len(session.interaction.clicks) == 2
    session.labels.clear_slice(3)
    assert not session.interaction.active
    with pytest.raises(SessionError, match="Choose the class"):
        session.click(3, (5, 5))
    session.click(3, (5, 5), value=1)
    assert [(c.y, c.x) for c in disks[-1]] == [(5, 5)]
    np.testing.assert_array_equal(session.labels.array[3], disk(labels.shape[1:], 5, 5))
    path = tmp_path / "labels.nii.gz"
    saved = session.save(path)
    session.click(3, (20, 20))
    session.replace_labels(read_label_file(saved, session.volume))  # a label file opened: ends it
    assert not session.interaction.active
    session.close(discard=True)


def test_undo_takes_a_click_out_of_the_interaction_and_redo_puts_it_back(disks):
    session, _ = open_case()
    session.click(1, (3, 4), value=1)
    session.click(1, (20, 20))
    session.labels.undo()
    assert [(c.y, c.x) for c in session.interaction.clicks] == [(3, 4)]
    session.labels.redo()
    assert [(c.y, c.x) for c in session.interaction.clicks] == [(3, 4), (20, 20)]
    session.labels.undo()
    session.click(1, (4, 20))
    assert [(c.y, c.x) for c in disks[-1]] == [(3, 4), (4, 20)]  # the undone click is gone
    session.close(discard=True)


def test_a_click_that_changes_nothing_leaves_no_step_and_no_click_behind(disks):
    session, _ = open_case(1)  # a disc of class 1 of radius 6 at (12, 12)
    session.click(1, (3, 4), value=1)
    steps = len(session.labels._undo)
    assert session.click(1, (12, 12)) == 0  # its disk is all class 1 already
    assert len(session.labels._undo) == steps
    assert [(c.y, c.x) for c in session.interaction.clicks] == [(3, 4)]  # no dot for it
    session.labels.undo()  # one undo, one click
    assert session.interaction.clicks == []
    session.close(discard=True)


def test_nothing_is_marked_reviewed_and_marks_stay(disks):
    session, _ = open_case()
    session.mark_reviewed(4)
    session.click(2, (3, 4), value=1)
    session.click(4, (3, 4), value=1)
    assert session.reviewed.tolist() == [False, False, False, False, True, False]
    session.close(discard=True)


# -- policy ---------------------------------------------------------------------------------

# The spot of class 2 on slice 2 is the disc (y - 12)^2 + (x - 10)^2 <= 4 inside class 1.
SPOT = (12, 10)


@pytest.mark.parametrize("policy, takes_class_2", [
    (OverwritePolicy("all"), True),
    (OverwritePolicy("background"), False),
    (OverwritePolicy("protect", frozenset({2})), False),
    (OverwritePolicy("protect", frozenset()), False),      # only "everything" lets it take another class
])
def test_a_positive_click_takes_another_class_only_under_everything(disks, policy, takes_class_2):
    session, labels = open_case()
    session.labels.policy = policy
    if policy.mode != "all":  # on a voxel of class 1, which the policy keeps: refused
        with pytest.raises(SessionError, match="only under 'Paint over: everything'"):
            session.click(2, (12, 15), value=3)
        np.testing.assert_array_equal(session.labels.array, labels)
        assert not disks and not session.labels.can_undo
    near = disk(labels.shape[1:], 12, 6)                    # background: reaches class 1 and the spot
    session.click(2, (12, 6), value=3)
    after = session.labels.array[2]
    assert (after[near & (labels[2] == 0)] == 3).all()
    assert (after[near & (labels[2] == 1)] == (3 if policy.mode == "all" else 1)).all()
    assert ((after[near & (labels[2] == 2)] == 3) == takes_class_2).all()
    np.testing.assert_array_equal(after[~near], labels[2][~near])
    # What it took from other classes, by class, for the window to say (a tester's click took
    # most of the myocardium on a slice, unsaid).
    taken = {v: int((near & (labels[2] == v)).sum()) for v in (1, 2)} if policy.mode == "all" else {}
    assert session.interaction.last_taken == {v: n for v, n in taken.items() if n}
    session.close(discard=True)


def test_a_removing_click_takes_no_voxel_of_another_class_even_under_everything(monkeypatch):
    """A model may move an edge outward at a removing click; the class then takes
    background only: a right click on the left ventricle grew it over the myocardium."""
    def grows(self, volume, z, mask, clicks, pixel_size=None):  # removes a disk at the click, grows by two voxels
        from scipy import ndimage
        out = ndimage.binary_dilation(mask, iterations=2)
        out[disk(mask.shape, clicks[-1].y, clicks[-1].x)] = False
        return (slice(0, mask.shape[0]), slice(0, mask.shape[1])), out

    monkeypatch.setattr(ClickModel, "refine", grows)
    session, labels = open_case()
    session.labels.policy = OverwritePolicy("all")
    session.click(2, SPOT, positive=False, value=2)     # the spot of class 2 inside class 1
    after = session.labels.array[2]
    np.testing.assert_array_equal(after == 1, (labels[2] == 1))  # class 1 lost nothing to class 2
    assert not (after[disk(labels.shape[1:], *SPOT)] == 2).any()
    session.close(discard=True)


@pytest.mark.parametrize("mode", ["all", "background", "protect"])
def test_what_a_negative_click_removes_becomes_background_and_other_classes_stay(disks, mode):
    session, labels = open_case()
    session.labels.policy = OverwritePolicy(mode, frozenset({2}) if mode == "protect" else frozenset())
    near = disk(labels.shape[1:], *SPOT)
    session.click(2, SPOT, positive=False, value=1)
    expected = labels[2].copy()
    expected[near & (labels[2] == 1)] = 0
    np.testing.assert_array_equal(session.labels.array[2], expected)
    assert (session.labels.array[2][labels[2] == 2] == 2).all()
    session.close(discard=True)


def test_clicking_a_protected_class_is_refused_and_changes_nothing(disks):
    session, labels = open_case()
    session.labels.policy = OverwritePolicy("protect", frozenset({2}))
    with pytest.raises(SessionError, match="^Label 2 is protected"):  # by its name
        session.click(2, SPOT, positive=False, value=2)
    with pytest.raises(SessionError, match=r"^The point clicked holds label 2 \(protected\): "):  # said, as a tester
        session.click(2, SPOT, value=1)                                                      # looked for it
    np.testing.assert_array_equal(session.labels.array, labels)
    assert not disks and not session.labels.can_undo
    session.close(discard=True)


# -- provenance -----------------------------------------------------------------------------

def test_provenance_records_interactive_and_undo_takes_it_back(disks, tmp_path):
    """Any session follows provenance, and saves it beside the labels (a tester found none in
    the sidecar of an image opened on its own: only a worklist's cases followed it)."""
    session, _ = open_case()
    provenance = session.provenance
    session.labels.paint(2, [(20, 3)], 1.0, 1)
    session.click(2, (3, 4), value=1)
    assert provenance.of_slice(2) == ("hand", "interactive: interactive")  # with the click model's name
    session.labels.undo()
    assert provenance.of_slice(2) == ("hand",)
    session.click(3, (3, 4), value=1)
    path = session.save(tmp_path / "labels.nii.gz")
    session.close()
    sidecar = json.loads(path.with_name("labels.review.json").read_text())
    assert sidecar["provenance"] == {"2": ["hand"], "3": ["interactive: interactive"]}
    again = ReviewSession.open(session.volume, path)
    assert again.provenance.of_slice(3) == ("interactive: interactive",)
    again.close()


def test_a_dicom_seg_names_the_click_model_that_made_the_clicks(disks, tmp_path, click_checkpoint, checkpoints):
    """A tester's DICOM SEG after clicks named the click model loaded at export time, not the
    one that made the clicks; labels reopened without their models named "model A"."""
    import pydicom

    from segview.core.dicom import write_dicom_series

    write_dicom_series(tiny_case(0)[0], tmp_path / "series")
    session = ReviewSession.open(tmp_path / "series")  # empty labels: every slice's origin known
    session.load_model("A", checkpoints["A"])
    assert session.predict()
    session.copy_prediction("A", 1)  # the model's slice, then a click made by another click model
    other = tmp_path / "clicks_v2.safetensors"
    other.write_bytes(click_checkpoint.read_bytes())
    session.interaction.load_model(other)
    session.click(1, (3, 4), value=1)
    path = session.save(tmp_path / "labels.nii.gz")
    session.close()
    again = ReviewSession.open(tmp_path / "series", labels=path)  # no models; the default click model
    seg = pydicom.dcmread(again.dicom_seg_job(tmp_path / "seg.dcm")())
    again.close(discard=True)
    segment = next(s for s in seg.SegmentSequence if s.SegmentNumber == 1)
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    parameters = segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "sources=ce; click model clicks_v2" in parameters and "model A" not in parameters


def test_a_case_saved_after_clicks_says_interactive_in_its_sidecar(disks, tmp_path):
    make_dataset(tmp_path / "ds", 1)
    session = Worklist.open(tmp_path / "ds").session("case_000")
    session.click(3, (3, 4), value=1)
    path = session.save()
    session.close()
    sidecar = json.loads(path.with_name("case_000.review.json").read_text())
    assert sidecar["provenance"] == {"3": ["interactive: interactive"]}
    assert sidecar["reviewed"] == []


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("click, message", [
    (dict(z=2, point=(-1, 5), value=1), "outside the image"),
    (dict(z=2, point=(5, 24), value=1), "outside the image"),
    (dict(z=6, point=(5, 5), value=1), "not in this image"),
    (dict(z=-1, point=(5, 5), value=1), "not in this image"),
    (dict(z=2, point=(5, 5), value=1, axis=1), "works on the axial .acquired. slices, not on coronal ones"),
    (dict(z=2, point=(5, 5)), "Choose the class"),
    (dict(z=2, point=(5, 5), value=0), "not background"),
    (dict(z=2, point=(5, 5), value=256), "1 to 255"),
])
def test_bad_clicks_are_refused_with_a_message_and_change_nothing(disks, click, message):
    session, labels = open_case()
    version = session.version
    with pytest.raises(SessionError, match=message):
        session.click(**click)
    np.testing.assert_array_equal(session.labels.array, labels)
    assert session.version == version and not session.labels.can_undo and not disks
    session.close(discard=True)


def test_a_click_off_a_sagittal_acquisitions_planes_names_them():
    """A sagittal series: a click in the axial view was told to click in the axial view."""
    volume, labels = tiny_case(0)
    sagittal = type(volume)(volume.array, volume.spacing, direction=(0, 0, 1, 1, 0, 0, 0, 1, 0), modality="MR")
    session = ReviewSession.open(sagittal, labels=labels)
    assert sagittal.display().acquisition_view() == "sagittal"
    axial_axis = next(a for a in (1, 2) if sagittal.display().view_of_axis(a) == "axial")
    with pytest.raises(SessionError, match="works on the sagittal .acquired. slices, not on axial ones: click in "
                                           "the sagittal view"):
        session.click(2, (5, 5), value=1, axis=axial_axis)
    session.close(discard=True)


def test_a_slice_without_image_is_refused():
    volume, labels = tiny_case(0)
    volume.array[5] = 0
    session = ReviewSession.open(volume, labels=labels)
    with pytest.raises(SessionError, match="no image"):
        session.click(5, (5, 5), value=1)
    session.close(discard=True)


# -- failures -------------------------------------------------------------------------------

def test_a_failing_model_leaves_the_labels_and_the_interaction_as_they_were(disks, monkeypatch):
    session, _ = open_case()
    session.click(2, (3, 4), value=1)
    before, clicks = session.labels.array.copy(), list(session.interaction.clicks)

    def fail(*_, **__):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ClickModel, "refine", fail)
    with pytest.raises(SessionError, match="click model failed.*RuntimeError: out of memory"):
        session.click(2, (20, 20))
    np.testing.assert_array_equal(session.labels.array, before)
    assert session.interaction.clicks == clicks
    session.labels.undo()  # the last step is still the first click's
    assert not session.labels.can_undo
    session.close(discard=True)


def test_without_a_click_model_the_session_works_and_a_click_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path / "none.safetensors"))
    session, labels = open_case()
    session.labels.paint(1, [(3, 3)], 1.0, 1)
    with pytest.raises(CheckpointError, match="No click model.*none.safetensors"):
        session.click(2, (3, 4), value=1)
    assert session.labels.array[2].tolist() == labels[2].tolist()
    session.save(tmp_path / "labels.nii.gz")
    session.close()


@pytest.mark.parametrize("named", ["segmentation", "garbage"])
def test_a_click_model_the_environment_names_wrongly_is_said_to_come_from_it(monkeypatch, tmp_path, checkpoints,
                                                                               named):
    """The dialog named the file alone ("garbage.safetensors is not a readable safetensors
    checkpoint"): a person who set the variable long ago did not know where it came from."""
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(5000))
    monkeypatch.setenv(ENVIRONMENT, str(checkpoints["A"] if named == "segmentation" else garbage))
    session, labels = open_case()
    with pytest.raises(CheckpointError, match=f"named by {ENVIRONMENT}"):
        session.click(2, (3, 4), value=1)
    assert session.labels.array.tolist() == labels.tolist()
    session.close(discard=True)


def test_loading_no_path_loads_the_default_click_model(tmp_path, monkeypatch, checkpoints):
    session, _ = open_case()
    monkeypatch.setenv(ENVIRONMENT, str(checkpoints["A"]))
    with pytest.raises(CheckpointError, match="segmentation checkpoint"):
        session.load_click_model()
    monkeypatch.delenv(ENVIRONMENT)
    session.load_click_model()
    assert session.interaction.model_path == CLICK_MODEL
    session.close(discard=True)


def test_the_session_loads_the_click_model_where_click_device_says(monkeypatch):
    from segview.ml import interactive

    asked = []
    load = ClickModel.from_checkpoint.__func__

    def on_cpu(cls, path, device="cpu", runtime="auto"):  # records the device, loads where this machine can
        asked.append(torch.device(device))
        return load(cls, path, "cpu", runtime)

    monkeypatch.setattr(ClickModel, "from_checkpoint", classmethod(on_cpu))
    monkeypatch.setattr(interactive, "click_device", lambda: torch.device("cuda"))  # a GPU machine
    session, _ = open_case()
    session.load_click_model()
    assert asked == [torch.device("cuda")]
    session.close(discard=True)


def test_a_failing_warm_up_still_loads_the_click_model(monkeypatch):  # a click meets the failure and says so
    def fails(model):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(ClickModel, "warm_up", fails)
    session, _ = open_case()
    session.load_click_model()
    assert session.interaction.model_ready
    session.close(discard=True)


def test_a_segmentation_checkpoint_is_no_click_model(tmp_path, checkpoints):
    session, _ = open_case()
    with pytest.raises(CheckpointError, match="segmentation checkpoint"):
        session.load_click_model(checkpoints["A"])
    session.close(discard=True)


def test_a_cancelled_or_outdated_job_changes_nothing(disks):
    session, labels = open_case()
    job = session.click_job(2, (3, 4), value=1)
    job.cancel()
    assert job() is None and session.finish_click(job, None) == 0
    job = session.click_job(2, (3, 4), value=1)
    proposal = job()
    job.cancel()  # cancelled after the model answered: still nothing
    assert session.finish_click(job, proposal) == 0
    np.testing.assert_array_equal(session.labels.array, labels)
    job = session.click_job(2, (3, 4), value=1)
    proposal = job()
    session.labels.paint(0, [(3, 3)], 1.0, 2)  # the labels change while the model runs
    with pytest.raises(SessionError, match="labels changed"):
        session.finish_click(job, proposal)
    assert session.labels.array[2].tolist() == labels[2].tolist()
    assert not session.interaction.active
    session.close(discard=True)


def test_stopped_jobs_write_nothing(disks):
    session, labels = open_case()
    job = session.click_job(2, (3, 4), value=1)
    assert job(should_stop=lambda: True) is None
    assert session.finish_click(job, None) == 0 and not session.labels.can_undo
    session.close(discard=True)


# -- the live metrics -----------------------------------------------------------------------

def test_the_live_metrics_of_each_model_follow_clicks_undo_and_redo_exactly(disks, checkpoints):
    session, _ = open_case()
    for slot, path in checkpoints.items():
        session.load_model(slot, path)
    assert session.predict()
    steps = [lambda: session.click(2, (3, 4), value=1), lambda: session.click(2, SPOT, positive=False),
             lambda: session.click(3, (12, 12), value=2), session.labels.undo, session.labels.undo,
             session.labels.redo, lambda: session.click(0, (20, 5), value=1)]
    for step in steps:
        step()
        for slot in ("A", "B"):
            matrix = session.live.matrices[slot]
            np.testing.assert_array_equal(matrix.per_slice,
                                          recount(session.prediction(slot), session.labels.array, matrix.num_classes))
    session.close(discard=True)


# -- the real network -----------------------------------------------------------------------

def test_the_tiny_network_end_to_end_changes_only_its_slice_and_what_the_policy_allows():
    session, labels = open_case()
    session.labels.policy = OverwritePolicy("background")
    for point in ((12, 15), (3, 3), (20, 20)):
        before = session.labels.array.copy()
        changed = session.click(2, point, value=1)
        assert changed == int(np.count_nonzero(session.labels.array != before))
    after = session.labels.array
    np.testing.assert_array_equal(np.delete(after, 2, axis=0), np.delete(labels, 2, axis=0))
    moved = after[2] != labels[2]
    assert set(np.unique(labels[2][moved])) <= {0, 1} and set(np.unique(after[2][moved])) <= {0, 1}
    while session.labels.undo():
        pass
    np.testing.assert_array_equal(session.labels.array, labels)
    session.close(discard=True)


# -- the journal ----------------------------------------------------------------------------

CLICKING_SESSION = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from segview.ml.interactive import ClickModel
    from segview.session import ReviewSession
    from tests.session.test_click import disks_refine
    ClickModel.refine = disks_refine
    session = ReviewSession.open(sys.argv[1])
    session.load_click_model(sys.argv[2])
    session.click(2, (12, 12), value=1)
    session.click(2, (12, 14), positive=False)
    session.click(4, (5, 5), value=2)
    with session.labels.step():
        session.labels.paint(3, [(5, 5)], 1.0, 1)
    np.save(sys.argv[3], session.labels.array)
    job = session.click_job(4, (9, 9))           # the model has answered, not yet written
    proposal = job()
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_after_sigkill_every_finished_click_comes_back(tmp_path, click_checkpoint):
    volume, _ = tiny_case(0)
    image = save_volume(tmp_path / "image.nii.gz", volume) or tmp_path / "image.nii.gz"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = subprocess.run([sys.executable, "-c", CLICKING_SESSION, str(image), str(click_checkpoint),
                            str(tmp_path / "labels.npy")], capture_output=True, text=True, cwd=root,
                           env=dict(os.environ), timeout=120)
    assert child.returncode == -signal.SIGKILL and "ready" in child.stdout, child.stderr
    expected = np.load(tmp_path / "labels.npy")
    recovered = ReviewSession.recoverable(image)
    assert recovered is not None and recovered.steps == 4
    np.testing.assert_array_equal(recovered.labels, expected)
    assert not recovered.reviewed.any()
    session = ReviewSession.open(image, recover=True)
    np.testing.assert_array_equal(session.labels.array, expected)
    # Each slice's provenance comes back with its labels (journalled), and goes with undo.
    recorded = {2: ("interactive: interactive",), 3: ("hand",), 4: ("interactive: interactive",)}
    assert {z: session.provenance.of_slice(z) for z in range(6) if session.provenance.of_slice(z)} == recorded
    for _ in range(4):  # each step an undo step of its own, as it was made
        assert session.labels.undo()
    assert not session.labels.array.any() and not any(session.provenance.of_slice(z) for z in range(6))
    for _ in range(4):
        assert session.labels.redo()
    np.testing.assert_array_equal(session.labels.array, expected)
    assert {z: session.provenance.of_slice(z) for z in range(6) if session.provenance.of_slice(z)} == recorded
    session.close(discard=True)
