"""``session.finetune.fine_tune`` as a script calls it: the epoch count chosen, else the
fine-tuning default. Tiny cases, every slice of all but one reviewed."""
import csv

import pytest

from segview.core.io import load_volume
from segview.core.journal import image_key
from segview.core.review_state import ReviewState, save_review_state
from segview.ml import train as train_module
from segview.ml.data import case_names
from segview.session.finetune import fine_tune

from .conftest import make_checkpoint, make_dataset


@pytest.fixture
def reviewed(tmp_path):
    folder = tmp_path / "Dataset005_Reviewed"
    make_dataset(folder, 5)
    for name in case_names(folder):
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        state = ReviewState.empty(volume.array.shape[0])
        state.reviewed[:] = True
        save_review_state(folder / "labelsTr" / f"{name}.nii.gz", state, image_key(volume))
    return folder


def epoch_rows(checkpoint) -> list[int]:
    """The epochs of the run's log (``<name>.log.csv`` beside the checkpoint)."""
    with open(checkpoint.with_suffix(".log.csv"), newline="") as file:
        return [int(row["epoch"]) for row in csv.DictReader(file)]


def test_fine_tune_runs_the_epochs_asked_for_else_the_fine_tuning_default(reviewed, tmp_path, monkeypatch):
    parent = make_checkpoint(tmp_path / "ce.safetensors", 1)
    monkeypatch.setitem(train_module.FINETUNE_PRESET, "epochs", 2)
    events = []
    chosen = fine_tune(reviewed, parent, progress=events.append, device="cpu", epochs=3)
    assert epoch_rows(chosen) == [1, 2, 3]
    assert {e["epochs"] for e in events if "step" in e} == {3}  # what the window's row shows as epoch i/N
    default = fine_tune(reviewed, parent, device="cpu")
    assert epoch_rows(default) == [1, 2]


def test_a_cancel_while_the_replay_phantoms_are_made_stops_there(reviewed, tmp_path, monkeypatch):
    """Making a lung replay (12 phantoms) took half a minute on 2 cores, and the window's
    Cancel said "stopping..." all that while: it was heard only once training began."""
    from segview.ml import data as data_module
    from segview.session import finetune as finetune_module

    parent = make_checkpoint(tmp_path / "ce.safetensors", 1)
    monkeypatch.setattr(finetune_module, "replay_source", lambda _parent: "phantom:cardiac")
    made = []
    monkeypatch.setattr(data_module, "make_phantom", lambda task, seed: made.append(seed) or pytest.fail("made"))
    cancelled = {"now": False}

    def stop_after_reading(n, count, text):  # Cancel pressed once the cases are read
        cancelled["now"] = True

    monkeypatch.setattr(finetune_module, "folder_dataset",
                        lambda folder, progress=None, reviewed_only=False: _read(folder, stop_after_reading))
    with pytest.raises(train_module.TrainingCancelled):
        fine_tune(reviewed, parent, device="cpu", epochs=1, should_stop=lambda: cancelled["now"])
    assert made == []  # no phantom made after the Cancel
    assert not (reviewed / "models").exists() and not (reviewed / "splits.json").exists()


def _read(folder, progress):
    from segview.ml.data import folder_dataset

    dataset = folder_dataset(folder, reviewed_only=True)
    progress(0, 1, "read")
    return dataset


def test_the_cases_read_and_the_replay_phantoms_made_are_counted(reviewed, tmp_path, monkeypatch):
    """The window showed only a busy bar for the half minute of reading the cases and making
    a lung replay: each case and phantom is told, counted, before it is read or made."""
    from segview.session import finetune as finetune_module

    parent = make_checkpoint(tmp_path / "ce.safetensors", 1)
    monkeypatch.setattr(finetune_module, "replay_source", lambda _parent: "phantom:cardiac:3")
    events = []

    def stop_at_the_second_phantom():
        return any(e.get("reading") == "replay phantoms" and e["done"] == 1 for e in events)

    with pytest.raises(train_module.TrainingCancelled):
        fine_tune(reviewed, parent, progress=events.append, device="cpu", epochs=1,
                  should_stop=stop_at_the_second_phantom)
    told = [(e["reading"], e["done"], e["count"], e["name"]) for e in events if "reading" in e]
    assert told == [("cases", n, 5, f"case_{n:03d}") for n in range(5)] + [
        ("replay phantoms", 0, 3, "phantom cardiac 0"), ("replay phantoms", 1, 3, "phantom cardiac 1")]
