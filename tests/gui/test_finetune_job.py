"""Worklist > Fine-tune model A on reviewed cases...: the job runs in the background with
progress and Cancel, its checkpoint lands in DATA/models and becomes model B when the user
says so (the worklist predicts with it), the held-out report compares A and B on the
held-out cases only. Tiny datasets and checkpoints made here; two epochs."""
import csv
import json
import math

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QFileDialog, QLabel, QMessageBox

from segview.core.io import load_volume
from segview.core.journal import image_key
from segview.core.review_state import ReviewState, save_review_state
from segview.gui.dialogs import FineTuneDialog
from segview.gui.finetune_job import progress_text
from segview.session.finetune import selection_caution
from segview.ml import train as train_module
from segview.ml.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from segview.ml.data import case_names, fixed_split
from segview.session import Worklist
from tests.session.conftest import make_checkpoint, make_dataset

from .test_worklist_panel import action, open_case, open_dataset
from .test_worklist_review import mark

TIMEOUT = 120000
FINE_TUNE = ("Worklist", "Fine-tune model A on reviewed cases...")


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Predictions are cached in a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


class EpochsAsked(list):
    """The fine-tune dialogs shown, as (epochs offered, texts shown); ``epochs``: what the
    next is set to (None: left as offered), ``cancel``: whether it is cancelled."""
    epochs: int | None = None
    cancel: bool = False


@pytest.fixture(autouse=True)
def epochs_asked(monkeypatch):
    """The fine-tune dialog answered as the test says (default: Fine-tune, epochs as offered),
    never left waiting on a modal dialog."""
    asked = EpochsAsked()

    def answer(dialog):
        texts = [label.text() for label in dialog.findChildren(QLabel)]
        asked.append((dialog.epochs.value(), texts))
        if asked.epochs is not None:
            dialog.epochs.setValue(asked.epochs)
        return QDialog.Rejected if asked.cancel else QDialog.Accepted

    monkeypatch.setattr(FineTuneDialog, "exec", answer)
    return asked


@pytest.fixture
def short(monkeypatch):
    """The documented fine-tuning defaults, but two epochs (the TrainConfig values every
    fine-tuning takes)."""
    monkeypatch.setitem(train_module.FINETUNE_PRESET, "epochs", 2)


def review(folder, name, slices) -> None:
    """Write ``slices`` of case ``name`` as reviewed into its sidecar, as a saved review does."""
    path = folder / "labelsTr" / f"{name}.nii.gz"
    volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
    state = ReviewState.empty(volume.array.shape[0])
    state.reviewed[list(slices)] = True
    save_review_state(path, state, image_key(volume))


@pytest.fixture
def dataset(tmp_path):
    """Six tiny cases, every slice reviewed but in the first training case (none reviewed,
    ``dataset.unreviewed``); the split drawn (``dataset.held_out``)."""
    folder = tmp_path / "Dataset003_Scanner"
    make_dataset(folder, 6)
    split = fixed_split(folder, case_names(folder))
    for name in case_names(folder):
        if name != split["train"][0]:
            review(folder, name, range(6))
    return folder


@pytest.fixture
def parent(tmp_path):
    (tmp_path / "shipped").mkdir()
    return make_checkpoint(tmp_path / "shipped" / "ce.safetensors", 1)


def split_of(folder) -> dict:
    return json.loads((folder / "splits.json").read_text())[0]


def checkpoints_in(folder) -> list[str]:
    """What a models folder holds, hidden work folders included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fine_tune_runs_in_the_background_and_its_checkpoint_becomes_model_b(qtbot, window, dataset, parent,
                                                                            short, dialogs, monkeypatch):
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    unreviewed, held_out = split_of(dataset)["train"][0], split_of(dataset)["val"]
    open_case(qtbot, controller, unreviewed)
    for z in (1, 2):
        mark(qtbot, window, z)  # not saved yet: the job saves it before training
    assert window.session.modified
    job, row = controller.fine_tuning, controller.panel.finetune
    shown = []
    job.progressed.connect(lambda event: shown.append((event, row.isVisible(), row.label.text())))
    queue = []
    controller.queue_finished.connect(queue.append)
    dialogs.answers = [QMessageBox.Yes]
    assert action(window, *FINE_TUNE).isEnabled()
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT) as finished:
        action(window, *FINE_TUNE).trigger()
        assert not action(window, *FINE_TUNE).isEnabled() or controller.saving  # one job at a time
    result = finished.args[0]

    path = dataset / "models" / "ce_ft1.safetensors"
    assert result.path == path and path.is_file()
    assert checkpoints_in(dataset / "models") == ["ce_ft1.curves.png", "ce_ft1.log.csv", "ce_ft1.safetensors"]
    steps = [(e, visible, text) for e, visible, text in shown if "step" in e]
    epochs = [(e, text) for e, _, text in shown if "val_dice" in e]
    assert steps and all(visible for _, visible, _ in steps)
    assert steps[0][2].startswith("Fine-tuning A: epoch 1/2, loss ") and steps[0][2].endswith("held-out Dice –")
    assert [e["epoch"] for e, _ in epochs] == [1, 2]
    for event, text in epochs:
        assert text.startswith(f"Fine-tuning A: epoch {event['epoch']}/2, loss {event['train_loss']:.3f}, "
                               f"held-out Dice {event['val_dice']:.3f} after epoch {event['epoch']}, ")
        assert text.endswith(" left")                             # the time to go, from the epochs done
    second = [text for e, _, text in steps if e["epoch"] == 1]    # epoch 2 running: the Dice is epoch 1's
    assert second and all(f"held-out Dice {epochs[0][0]['val_dice']:.3f} after epoch 1, " in t for t in second)
    assert not row.isVisible() and action(window, *FINE_TUNE).isEnabled()

    lineage = read_metadata(path)["lineage"]
    assert lineage["cases"][unreviewed] == [1, 2]             # the marks on screen were saved first
    assert not set(lineage["cases"]) & set(held_out) and lineage["split"]["val"] == held_out
    assert lineage["parent"]["name"] == "ce.safetensors"
    question = [text for kind, text in dialogs if kind == "question"]
    assert question and question[0].startswith("Use ce_ft1.safetensors as model B?")
    # The parent's own held-out Dice beside the run's best; a worse run advises keeping A.
    parent_dice, best = lineage["parent"]["held_out_dice"], max(e["val_dice"] for e, _ in epochs)
    assert f"ce.safetensors itself scores {parent_dice:.3f} there" in question[0]
    worse = best < parent_dice
    assert ("keeping A is advised" in question[0]) is worse
    # The best of the epochs on the cases that chose it flatters it; on one held-out case, no verdict.
    assert "chosen by this Dice on these same cases" in question[0]
    assert f"On {len(held_out)} held-out case (fewer than 6) it is no verdict" in question[0]
    # The tiny parent's own data are unknown: nothing replayed, and the question says what that risks.
    assert lineage["replay"] is None and "none was replayed" in question[0] and "first scanner" in question[0]
    assert dialogs.defaults[0] == (QMessageBox.StandardButton.No if worse else QMessageBox.StandardButton.Yes)

    qtbot.waitUntil(lambda: bool(queue), timeout=TIMEOUT)           # B loaded: the worklist predicts every case
    assert controller.worklist.checkpoints == {"A": parent, "B": path} and queue == [True]
    assert set(window.session.models) == {"A", "B"} and window.session.models["B"].path == path
    window.set_comparing(True)
    header = window.workspace.compare.headers["B"].text()
    assert "fine-tuned from ce on 5 cases" in header
    # Scored on the held-out cases, beside the parent's own figure there (a tester read A's
    # validation Dice on its own data against B's on these as "B is worse").
    assert f"held-out Dice {read_metadata(path)['validation']['dice']['mean']:.3f} (ce {parent_dice:.3f} there)" \
        in header and "validation Dice" not in header
    cached = Worklist.open(dataset, {"A": parent, "B": path})  # the cache holds B's predictions
    assert all(case.disputed == case.disputed for case in cached.cases)  # none NaN

    out = dataset.parent / "held_out_report"
    started = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda parent, title, start: started.append(start)
                        or str(out))
    with qtbot.waitSignal(controller.report_written, timeout=TIMEOUT):
        action(window, "File", "Export held-out report...").trigger()
    assert started == [str(dataset)]                             # no folder chosen before: the dataset's
    with open(out / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted((r["case"], r["model"]) for r in rows) == sorted((n, s) for n in held_out for s in "AB")
    assert {r["checkpoint"] for r in rows if r["model"] == "B"} == {"ce_ft1.safetensors"}
    verdict = json.loads((out / "verdict.json").read_text())
    assert set(verdict["cases"]) | set(verdict["left_out"]) == set(held_out)
    assert [kind for kind, _ in dialogs] == ["question"]


def test_the_question_names_only_the_held_out_cases_whose_slices_chose_the_epoch(qtbot, window, tmp_path, parent,
                                                                              short, dialogs):
    """A tester's question named two held-out cases for a Dice that one of them, with no
    reviewed slice, had no part in."""
    folder = tmp_path / "Dataset004_Two"
    make_dataset(folder, 10)
    split = fixed_split(folder, case_names(folder))
    assert len(split["val"]) >= 2
    judging, silent = split["val"][0], split["val"][1:]
    for name in case_names(folder):
        if name not in silent:
            review(folder, name, range(6))
    controller = open_dataset(qtbot, window, folder, {"A": parent})
    dialogs.answers = [QMessageBox.No]
    with qtbot.waitSignal(controller.fine_tuning.finished, timeout=TIMEOUT):
        action(window, *FINE_TUNE).trigger()
    question = [text for kind, text in dialogs if kind == "question"][0]
    assert f"on the held-out case with reviewed slices ({judging}); {', '.join(silent)}, held out too, " in question
    assert "On 1 held-out case (fewer than 6)" in question


def test_cancel_leaves_no_checkpoint_and_the_window_stays_usable(qtbot, window, dataset, parent, dialogs):
    with qtbot.waitSignal(window.inference_finished, timeout=TIMEOUT):  # its "Inference finished" said before
        controller = open_dataset(qtbot, window, dataset, {"A": parent})  # the first case, predicted by A
    job, row = controller.fine_tuning, controller.panel.finetune
    events = []

    def cancel_at_first_step(event):
        events.append(event)
        if len(events) == 1:
            qtbot.mouseClick(row.cancel, Qt.LeftButton)

    job.progressed.connect(cancel_at_first_step)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT) as finished:
        action(window, *FINE_TUNE).trigger()
    assert finished.args == [None] and len(events) == 1          # stopped before its next step
    assert checkpoints_in(dataset / "models") == []
    held_out = split_of(dataset)["val"]                           # the fixture's split: marked before and after
    assert [n for n in controller.panel.names() if controller.panel.cell(n, "Case").text().endswith("(held out)")] \
        == held_out
    assert "cancelled" in window.statusBar().currentMessage()
    assert not row.isVisible() and action(window, *FINE_TUNE).isEnabled()
    assert dialogs == []                                          # nothing offered, nothing failed
    open_case(qtbot, controller, "case_002")                      # the window goes on


def test_held_out_cases_without_a_reviewed_slice_are_said_at_once_not_after_the_run(qtbot, window, dataset, parent):
    """A tester learnt it from the finishing question, three minutes later."""
    held_out = split_of(dataset)["val"]
    for name in held_out:
        review(dataset, name, [])
    with qtbot.waitSignal(window.inference_finished, timeout=TIMEOUT):  # its "Inference finished" said before
        controller = open_dataset(qtbot, window, dataset, {"A": parent})  # the first case, predicted by A
    job, row = controller.fine_tuning, controller.panel.finetune
    said = []

    def cancel_at_first_step(event):
        if "reading" in event:  # the cases read first
            return
        said.append((window.statusBar().currentMessage(), row.label.text()))
        qtbot.mouseClick(row.cancel, Qt.LeftButton)

    job.progressed.connect(cancel_at_first_step)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT):
        action(window, *FINE_TUNE).trigger()
    message, text = said[0]
    assert f"The held-out cases ({', '.join(held_out)}) have no reviewed slices" in message
    assert text.endswith("no held-out slice reviewed") and "held-out Dice" not in text


def test_the_row_counts_the_cases_read_and_the_replay_cases_before_training(qtbot, window, dataset, parent,
                                                                             short, tmp_path):
    """Reading the cases and making a lung replay took half a minute on 2 cores with only a
    busy bar: the row counts them, its bar too."""
    first = tmp_path / "Dataset001_First"  # the data the parent learnt from, replayed
    make_dataset(first, 3, seed=20)
    model, meta = load_checkpoint(parent)
    meta["training"] = {"source": f"folder {first}"}
    save_checkpoint(parent, model, meta)
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    job, row = controller.fine_tuning, controller.panel.finetune
    shown = []

    def cancel_at_the_last_replay_case(event):
        shown.append((row.label.text(), row.bar.value(), row.bar.maximum()))
        if event.get("reading") == "replay cases" and event["done"] == 2:
            qtbot.mouseClick(row.cancel, Qt.LeftButton)

    job.progressed.connect(cancel_at_the_last_replay_case)
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT):
        action(window, *FINE_TUNE).trigger()
    said = f"Fine-tuning A (ce, 2 epochs) on the reviewed cases of {dataset.name}: "
    assert shown == [(said + f"reading case {n + 1}/6...", n, 6) for n in range(6)] + [
        (said + f"reading replay case {n + 1}/3...", n, 3) for n in range(3)]


def test_closing_the_window_during_the_job_cancels_it_and_waits_for_it(qtbot, window, dataset, parent):
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    job = controller.fine_tuning
    finished = []
    job.finished.connect(finished.append)
    job.progressed.connect(lambda event: window.close() if window.isVisible() else None)
    with qtbot.waitSignal(job.progressed, timeout=TIMEOUT):
        action(window, *FINE_TUNE).trigger()
    qtbot.waitUntil(lambda: bool(finished), timeout=TIMEOUT)
    assert finished == [None] and not window.isVisible()
    assert checkpoints_in(dataset / "models") == []


def test_fine_tune_is_disabled_with_the_reason_without_a_dataset_or_model_a(qtbot, window, dataset, parent):
    item = action(window, *FINE_TUNE)
    assert not item.isEnabled() and "Open a dataset" in item.toolTip()
    controller = open_dataset(qtbot, window, dataset)
    assert not item.isEnabled() and "Load model A" in item.toolTip()
    controller.set_checkpoints({"A": parent})
    assert item.isEnabled() and "ce_ft<N>.safetensors" in item.toolTip()


def test_a_read_only_dataset_asks_where_the_checkpoint_goes(qtbot, window, dataset, parent, short, dialogs,
                                                             tmp_path, monkeypatch):
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    controller.worklist.read_only = True  # as a dataset this user cannot write opens (tests run as root)
    chosen = tmp_path / "mine"
    chosen.mkdir()
    asked = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args: asked.append(args[1]) or str(chosen))
    dialogs.answers = [QMessageBox.No]
    with qtbot.waitSignal(controller.fine_tuning.finished, timeout=TIMEOUT) as finished:
        action(window, *FINE_TUNE).trigger()
    assert asked and "read-only" in asked[0]
    assert finished.args[0].path == chosen / "ce_ft1.safetensors" and checkpoints_in(dataset / "models") == []
    assert "B" not in controller.worklist.checkpoints                 # No: offered, not taken


def test_nothing_reviewed_to_train_on_is_a_message_and_no_checkpoint(qtbot, window, tmp_path, parent, dialogs):
    folder = tmp_path / "Dataset004_Unreviewed"
    make_dataset(folder, 3)
    controller = open_dataset(qtbot, window, folder, {"A": parent})
    with qtbot.waitSignal(controller.fine_tuning.failed, timeout=TIMEOUT) as failed:
        action(window, *FINE_TUNE).trigger()
    assert "reviewed" in failed.args[0]
    assert [kind for kind, _ in dialogs] == ["critical"]
    assert checkpoints_in(folder / "models") == [] and action(window, *FINE_TUNE).isEnabled()


def test_the_caution_on_the_held_out_dice_names_too_few_cases():
    assert "fewer than 6" in selection_caution(5) and "flatters" in selection_caution(5)
    assert "fewer than" not in selection_caution(6) and "flatters" in selection_caution(6)
    assert "On 2 held-out cases (fewer than 6)" in selection_caution(2)


def test_the_progress_text_says_epoch_loss_held_out_dice_and_the_time_left():
    assert progress_text(3, 20, 0.12345, math.nan) == "Fine-tuning A: epoch 3/20, loss 0.123, held-out Dice –"
    assert progress_text(3, 20, 0.1, 0.8456, 30) == \
        "Fine-tuning A: epoch 3/20, loss 0.100, held-out Dice 0.846, less than a minute left"
    assert progress_text(3, 20, 0.1, 0.8, 125).endswith("held-out Dice 0.800, about 3 min left")
    assert progress_text(3, 20, 0.1, 0.8, 125, dice_epoch=2) == \
        "Fine-tuning A: epoch 3/20, loss 0.100, held-out Dice 0.800 after epoch 2, about 3 min left"
    assert progress_text(1, 20, 0.1, math.nan, dice_epoch=None).endswith("held-out Dice –")
    assert progress_text(1, 20, 0.1, math.nan, judged=False) == \
        "Fine-tuning A: epoch 1/20, loss 0.100, no held-out slice reviewed"


def test_the_held_out_cases_are_marked_in_the_worklist_once_the_split_is_written(qtbot, window, dataset, parent,
                                                                                   short, dialogs):
    held_out = split_of(dataset)["val"]
    (dataset / "splits.json").unlink()  # drawn again, the same way (seeded), by the first fine-tune
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    panel = controller.panel
    assert not any(panel.cell(name, "Case").text().endswith("(held out)") for name in panel.names())
    dialogs.answers = [QMessageBox.No]
    marked_while_running = []
    controller.fine_tuning.progressed.connect(lambda _: marked_while_running.append(
        [n for n in panel.names() if panel.cell(n, "Case").text().endswith("(held out)")]))
    with qtbot.waitSignal(controller.fine_tuning.finished, timeout=TIMEOUT):
        action(window, *FINE_TUNE).trigger()
    assert marked_while_running and all(marked == held_out for marked in marked_while_running)
    assert split_of(dataset)["val"] == held_out
    for name in panel.names():
        cell = panel.cell(name, "Case")
        assert cell.text() == (f"{name} (held out)" if name in held_out else name)
        assert cell.font().italic() == (name in held_out) and ("fine-tuning never trains on it" in cell.toolTip()) \
            == (name in held_out)
    assert f"{len(held_out)} held out" in panel.title.text()
    open_case(qtbot, controller, held_out[0])                     # the mark names the case; opening still works
    assert window.session.case.name == held_out[0]


def test_the_epochs_chosen_in_the_dialog_are_run_and_offered_next_time(qtbot, window, dataset, parent, short,
                                                                        dialogs, epochs_asked):
    """A helper waited 4 minutes for 20 epochs on a CPU, with no way to ask for fewer."""
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    split = split_of(dataset)
    epochs_asked.epochs = 1
    dialogs.answers = [QMessageBox.No]
    job = controller.fine_tuning
    with qtbot.waitSignal(job.finished, timeout=TIMEOUT) as finished:
        action(window, *FINE_TUNE).trigger()
    offered, texts = epochs_asked[0]
    assert offered == 2                                           # the fine-tuning default (two, in these tests)
    training = 6 * (len(split["train"]) - 1)                      # all six slices of each but the unreviewed case
    assert "ce.safetensors" in texts and f"{training} training slices, {6 * len(split['val'])} held-out " \
        f"slice{'s' if 6 * len(split['val']) != 1 else ''}" in texts
    assert any("cost time, not overfitting" in text for text in texts)
    assert [row["epoch"] for row in job.history] == [1]
    with open(finished.args[0].path.with_suffix(".log.csv"), newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1"]
    epochs_asked.epochs, epochs_asked.cancel = None, True
    action(window, *FINE_TUNE).trigger()
    assert epochs_asked[1][0] == 1                                # remembered for next time


def test_cancel_in_the_dialog_starts_nothing_and_saves_nothing(qtbot, window, dataset, parent, epochs_asked):
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    open_case(qtbot, controller, split_of(dataset)["train"][0])  # the case with no reviewed slice
    mark(qtbot, window, 1)                                        # unsaved: Fine-tune would save it first
    before = files_in(dataset)
    epochs_asked.epochs, epochs_asked.cancel = 7, True
    action(window, *FINE_TUNE).trigger()                          # the dialog is answered before this returns
    assert len(epochs_asked) == 1 and not controller.fine_tuning.running
    assert not controller.panel.finetune.isVisible() and action(window, *FINE_TUNE).isEnabled()
    assert window.session.modified and files_in(dataset) == before
    epochs_asked.epochs, epochs_asked.cancel = None, True
    action(window, *FINE_TUNE).trigger()
    assert epochs_asked[1][0] == 20                               # a cancelled choice is not remembered


def test_before_a_split_the_dialog_counts_every_reviewed_slice(qtbot, window, dataset, parent, epochs_asked):
    """The first fine-tune of a dataset draws its split as it starts: the dialog said
    nothing of the slices it would train on."""
    (dataset / "splits.json").unlink()
    controller = open_dataset(qtbot, window, dataset, {"A": parent})
    epochs_asked.cancel = True
    action(window, *FINE_TUNE).trigger()
    _, texts = epochs_asked[0]
    assert f"{6 * 5} reviewed slices; the held-out cases are drawn when it starts (splits.json)" in texts
    assert not controller.fine_tuning.running


def files_in(folder) -> dict:
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file() and ".locks" not in p.parts}
