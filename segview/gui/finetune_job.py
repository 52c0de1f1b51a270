"""Worklist > Fine-tune model A on reviewed cases...: the window's job around
``segview.session.finetune.fine_tune`` (no Qt there; this only runs it and shows it).

- A dialog first shows model A, the reviewed training and held-out slices and the number of
  epochs (the last chosen, else the fine-tuning default); Cancel starts nothing.
- The case on screen is saved first when it has unsaved edits (the dock's save: training
  reads the labels and review marks from the dataset).
- The training runs in a worker thread; its progress (the cases read and replay phantoms
  made, counted; then "Fine-tuning A: epoch k/n, loss x, held-out Dice y") and Cancel are
  a row of the worklist dock. Cancel, or closing the
  window, stops it before its next step and leaves no checkpoint (``fine_tune`` moves only
  a finished run's best checkpoint into place).
- A read-only dataset: the user chooses the folder the checkpoint goes into.
- When it finishes, the checkpoint (``DATA/models/<parent>_ft<N>.safetensors``) is offered
  as model B; Yes loads it as Model > Load checkpoint B does, so the worklist's checkpoints,
  its prediction cache and queue follow, and File > Export held-out report... compares A
  (the parent) and B (fine-tuned) on the held-out cases.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMessageBox

from ..core.errors import SegviewError
from ..core.report import counted, number_text
from ..session import CaseSession, ReviewSession, Worklist
from ..session.finetune import selection_caution
from .dialogs import ask_fine_tune_epochs
from .job_row import JobRow
from .settings import fine_tune_epochs, last_folder, remember_fine_tune_epochs, remember_folder
from .workers import Worker

if TYPE_CHECKING:
    from .host import WorklistHost

#: The folder of the dataset that fine-tuned checkpoints go into (``session.finetune.MODELS_FOLDER``;
#: not imported here, as that module brings torch with it).
MODELS_FOLDER = "models"


@dataclass
class FineTuned:
    """A finished run: the checkpoint written, and from its lineage the cases it trained on
    and those held out (the split's "val")."""
    path: Path
    parent: Path
    trained: list[str] = field(default_factory=list)
    held_out: list[str] = field(default_factory=list)
    slices: int = 0
    parent_dice: float = math.nan  # the parent's held-out Dice, on the slices that chose the epoch
    left_out: list[str] = field(default_factory=list)  # "case: why" (flagged, nothing reviewed, unreadable)
    replayed: str | None = None  # the parent's own data drawn for half of each epoch (its Dataset.source)


class Worklists(Protocol):
    """What the job needs of the worklist dock's controller (``WorklistController``, which
    imports this module): the dataset open, its window and dock, saving the case on screen."""

    @property
    def window(self) -> WorklistHost: ...

    @property
    def worklist(self) -> Worklist | None: ...

    @property
    def dock(self) -> QDockWidget: ...

    def save_current(self, then: Callable[[], None], what: str) -> None: ...

    def update_actions(self) -> None: ...

    def show_split(self, held_out: list[str] | None = None) -> None: ...


def progress_text(epoch: int, epochs: int, loss: float, dice: float, left_s: float | None = None,
                  dice_epoch: int | None = None, judged: bool = True) -> str:
    """What the job's row says: ``epoch`` counted from 1, its loss so far; the held-out
    ``dice`` of epoch ``dice_epoch`` (the last finished: while an epoch runs, the one
    before it), named so that it is not read as the running epoch's, or, not ``judged``,
    that no held-out slice is reviewed; ``left_s``: the time still to go (seconds), when known."""
    held_out = f"held-out Dice {number_text(dice)}" if judged else "no held-out slice reviewed"
    text = f"Fine-tuning A: epoch {epoch}/{epochs}, loss {number_text(loss)}, {held_out}"
    if dice_epoch is not None and not math.isnan(dice):
        text += f" after epoch {dice_epoch}"
    if left_s is None:
        return text
    return text + (", less than a minute left" if left_s < 60 else f", about {math.ceil(left_s / 60)} min left")


def reading_text(event: dict) -> str:
    """What the job's row says before training: ``fine_tune``'s {"reading", "done", "count"}
    event as the case read or phantom made, counted from 1."""
    doing = {"cases": "reading case", "replay cases": "reading replay case",
             "replay phantoms": "making replay phantom"}[event["reading"]]
    return f"{doing} {int(event['done']) + 1}/{int(event['count'])}..."


class FineTuning(QObject):
    """The fine-tuning job of a worklist dock (one at a time). Signals for tests
    and scripts: ``progressed(dict)`` (``fine_tune``'s "reading" events, then ml.train's,
    on the main thread),
    ``finished(FineTuned or None)`` (None: cancelled; after the user answered whether to
    use it as model B), ``failed(str)`` (the message shown)."""
    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str)
    _event = Signal(object)  # from the worker thread; queued to the main thread

    def __init__(self, controller: Worklists, row: JobRow):
        super().__init__(controller.window.window())
        self.controller, self.window, self.row = controller, controller.window, row
        self.history: list[dict] = []      # the epoch rows of the run going on (or last run)
        self._stop: threading.Event | None = None
        self._worker: Worker | None = None
        self._worklist: Worklist | None = None
        self.judged = True                  # whether a held-out case of the run has reviewed slices
        self._epochs = 0
        self._started: float | None = None   # the first training step (reading the cases not counted)
        self._title = "Fine-tuning A"       # what the row says of the run while it reads the data
        row.cancel_clicked.connect(self.cancel)
        self._event.connect(self._progress)

    @property
    def running(self) -> bool:
        return self._stop is not None

    def reason(self) -> str | None:
        """Why fine-tuning cannot start now; None when it can."""
        worklist = self.controller.worklist
        if worklist is None:
            return "Open a dataset first (File > Open dataset...)."
        if worklist.layout != "nnU-Net":
            return "Fine-tuning needs a dataset in the nnU-Net layout (imagesTr/, labelsTr/), not DICOM studies."
        parent = worklist.checkpoints.get("A")
        if parent is None:
            return "Load model A first (Model > Load checkpoint A): it is the checkpoint fine-tuned."
        if parent.suffix.lower() == ".onnx":
            return f"Model A ({parent.name}) is an ONNX model: only a segview checkpoint (.safetensors) can be " \
                   "fine-tuned."
        if self.running:
            return "Fine-tuning is running (Cancel in the worklist dock)."
        return None

    def tooltip(self) -> str:
        reason = self.reason()
        if reason is not None:
            return reason
        parent = self.controller.worklist.checkpoints["A"] if self.controller.worklist else Path("A")
        return (f"Train {parent.name} further on the reviewed slices of the training cases\n"
                "(the dataset's fixed split, splits.json; the held-out cases choose the epoch).\n"
                f"Saved as {MODELS_FOLDER}/{parent.stem}_ft<N>.safetensors and offered as model B.")

    # -- starting -----------------------------------------------------------------------
    def start(self) -> None:
        """Ask for the number of epochs, save the case on screen when it has unsaved edits,
        then fine-tune model A in a worker (a read-only dataset: the user chooses where the
        checkpoint goes)."""
        reason = self.reason()
        worklist = self.controller.worklist
        if reason is not None or worklist is None:
            if reason is not None:
                self.window.statusBar().showMessage(reason, 8000)
            return
        parent = worklist.checkpoints["A"]
        epochs = ask_fine_tune_epochs(self.window.window(), parent, fine_tune_epochs(default_epochs()),
                                      reviewed_slices(worklist, self.window.session))
        if epochs is None:
            return
        remember_fine_tune_epochs(epochs)
        models_folder = None
        if worklist.read_only or not _writable(worklist.folder / MODELS_FOLDER):
            start = str(last_folder() or worklist.folder.parent)
            chosen = QFileDialog.getExistingDirectory(
                self.window.window(), f"{worklist.folder.name} is read-only: folder for the fine-tuned checkpoint",
                start)
            remember_folder(chosen)
            if not chosen:
                return
            models_folder = Path(chosen)
        self.controller.save_current(lambda: self._train(worklist, parent, models_folder, epochs), "fine-tuning")

    def _train(self, worklist: Worklist, parent: Path, models_folder: Path | None, epochs: int) -> None:
        if self.running or worklist is not self.controller.worklist:
            return
        stop = self._stop = threading.Event()
        self._worklist, self.history, self._epochs, self._started = worklist, [], 0, None
        self.judged = True  # until the split says its held-out cases have no reviewed slice
        self._title = (f"Fine-tuning A ({parent.stem}, {counted(epochs, 'epoch')}) on the reviewed cases of "
                       f"{worklist.folder.name}")
        self.row.start(f"{self._title}: reading them...")
        self.controller.dock.show()
        worker = self._worker = Worker(run_fine_tune, worklist.folder, parent, models_folder, stop, self._event.emit,
                                       epochs)
        worker.signals.returned.connect(self._done)
        worker.signals.errored.connect(self._failed)
        worker.start()
        self.controller.update_actions()
        self.window.statusBar().showMessage(f"Fine-tuning {parent.name} in the background...", 5000)

    def cancel(self) -> None:
        """Stop before the next training step; nothing is written."""
        if self._stop is not None:
            self._stop.set()
            self.row.cancel.setEnabled(False)
            self.row.label.setText("Fine-tuning: stopping...")

    # -- on the main thread ---------------------------------------------------------------
    def _progress(self, event: dict) -> None:
        if self._stop is None or self._stop.is_set():
            return  # stopping: the row says so
        if "held_out" in event:  # before reading the cases: marked while the run goes on
            return self._held_out(event["held_out"])
        if "reading" in event:  # reading the cases, making the replay phantoms: half a minute for a lung replay
            self.row.step(int(event["done"]), int(event["count"]), f"{self._title}: {reading_text(event)}")
            return self.progressed.emit(event)
        if self._started is None:
            self._started = time.monotonic()
        dice = self.history[-1]["val_dice"] if self.history else math.nan
        finished = int(self.history[-1]["epoch"]) if self.history else None  # the epoch ``dice`` is of
        if "step" in event:  # during an epoch (counted from 0)
            self._epochs, steps = int(event["epochs"]), int(event["steps"])
            self.row.step(int(event["epoch"]) * steps + int(event["step"]), self._epochs * steps,
                          progress_text(int(event["epoch"]) + 1, self._epochs, float(event["loss"]), dice,
                                        self._left(), dice_epoch=finished, judged=self.judged))
        else:  # an epoch's row (counted from 1)
            self.history.append(event)
            epoch = int(event["epoch"])
            self.row.step(epoch, max(self._epochs, epoch),
                          progress_text(epoch, max(self._epochs, epoch), float(event["train_loss"]),
                                        float(event["val_dice"]), self._left(), dice_epoch=epoch, judged=self.judged))
        self.progressed.emit(event)

    def _held_out(self, names: list[str]) -> None:
        """The split drawn: its cases marked; where none of them has a reviewed slice, said
        now, not after the run (no held-out Dice will choose the epoch or judge the model)."""
        self.controller.show_split(names)
        worklist = self._worklist
        self.judged = worklist is None or any(c.reviewed_count for c in worklist.cases if c.name in names)
        if not self.judged:
            self.window.statusBar().showMessage(
                f"The held-out cases ({', '.join(names)}) have no reviewed slices: no held-out Dice will choose the "
                "epoch or judge the model. Cancel, review them (M) and fine-tune again, or let it run.", 20000)

    def _left(self) -> float | None:
        """Seconds still to go, from the pace of the epochs finished (None before the first)."""
        if not self.history or self._started is None or not self._epochs:
            return None
        done = len(self.history)
        return (time.monotonic() - self._started) / done * max(self._epochs - done, 0)

    def _finish(self) -> None:
        self._stop = self._worker = None
        self.row.hide()
        self.controller.update_actions()
        self.controller.show_split()  # the split as the run left it: written on success or when refused for it

    def _done(self, result: FineTuned | None) -> None:
        worklist = self._worklist
        self._finish()
        if result is None:
            self.window.statusBar().showMessage("Fine-tuning cancelled: no checkpoint written", 8000)
            return self.finished.emit(None)
        self.window.statusBar().showMessage(f"Fine-tuned checkpoint saved: {result.path}", 10000)
        if self.window.isVisible() and worklist is self.controller.worklist and worklist is not None:
            answer = QMessageBox.question(
                self.window.window(), "Fine-tuning finished",
                f"Use {result.path.name} as model B?\n\n{self.summary(result)}",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No if self.worse(result) else QMessageBox.StandardButton.Yes)
            if answer == QMessageBox.StandardButton.Yes:
                # As Model > Load checkpoint B: the worklist's checkpoints, cache and queue follow.
                self.window.load_model(result.path, "B")
                held_out = ", ".join(result.held_out) or "none"
                self.window.statusBar().showMessage(
                    f"Model B: {result.path.name}. File > Export held-out report... compares A and B on the "
                    f"held-out cases ({held_out})", 15000)
        self.finished.emit(result)

    def summary(self, result: FineTuned) -> str:
        """What the question says of a finished run: where it is, what it learnt from, its
        best held-out Dice."""
        scored = [row for row in self.history if not math.isnan(row["val_dice"])]
        held_out = ", ".join(result.held_out) or "none"
        if scored:
            best = max(scored, key=lambda row: row["val_dice"])
            judging = self.judging(result) or list(result.held_out)
            unreviewed = [name for name in result.held_out if name not in judging]
            judged = (f"Best held-out Dice {number_text(best['val_dice'])} (epoch {best['epoch']} of "
                      f"{len(self.history)}) on the held-out {'case' if len(judging) == 1 else 'cases'} with reviewed "
                      f"slices ({', '.join(judging)})"
                      + (f"; {', '.join(unreviewed)}, held out too, {'has' if len(unreviewed) == 1 else 'have'} "
                         "none." if unreviewed else "."))
            if not math.isnan(result.parent_dice):
                judged += f" {result.parent.name} itself scores {number_text(result.parent_dice)} there"
                judged += (": the fine-tuned model is worse on the held-out cases, so keeping A is advised "
                           "(review more slices, or of more cases, and fine-tune again)."
                           if self.worse(result) else ".")
            judged += " " + selection_caution(len(judging))
        else:
            judged = (f"The held-out cases ({held_out}) have no reviewed slices, so no held-out Dice chose the "
                      "epoch (the lowest training loss did): review them to judge the model.")
        left_out = f"\nLeft out: {'; '.join(result.left_out)}." if result.left_out else ""
        kept = (f"Half of each epoch replayed the data {result.parent.name} learnt from ({result.replayed}), so "
                "that it keeps its first task." if result.replayed else
                f"The data {result.parent.name} learnt from are not at hand, so none was replayed: it may have "
                "lost some of its first task; check it on cases of the first scanner before relying on it there.")
        return (f"Fine-tuned from {result.parent.name} on {result.slices} reviewed slices of "
                f"{counted(len(result.trained), 'case')}; saved as {result.path}.{left_out}\n{kept}\n\n{judged}\n\n"
                "As model B, the worklist predicts every case with it, and File > Export held-out report... "
                "compares A and B on the held-out cases.")

    def judging(self, result: FineTuned) -> list[str]:
        """The held-out cases of ``result`` that have reviewed slices: those whose Dice chose
        its epoch (a held-out case with none gave nothing to the Dice shown)."""
        reviewed = {case.name for case in self._worklist.cases if case.reviewed_count} if self._worklist else set()
        return [name for name in result.held_out if name in reviewed]

    def worse(self, result: FineTuned) -> bool:
        """Whether the run's best held-out Dice is below its parent's on the same slices."""
        scored = [row["val_dice"] for row in self.history if not math.isnan(row["val_dice"])]
        return bool(scored) and not math.isnan(result.parent_dice) and max(scored) < result.parent_dice

    def _failed(self, exc: Exception) -> None:
        self._finish()
        if not isinstance(exc, (SegviewError, OSError, FloatingPointError)):
            raise exc
        message = str(exc)
        what = "refused" if isinstance(exc, SegviewError) else "failed"  # the data or model, not a fault
        self.window.statusBar().showMessage(f"Fine-tuning {what}: {message}", 10000)
        QMessageBox.critical(self.window.window(), f"Fine-tuning {what}", message)
        self.failed.emit(message)


def default_epochs() -> int:
    """The fine-tuning default's epochs (``ml.train.finetune_values``, as ``segview train
    --init`` without --epochs). Imported here: ml.train brings torch, in the window already
    once model A's predictor has been loaded."""
    from ..ml.train import FINETUNE_PRESET

    return int(FINETUNE_PRESET["epochs"])


def reviewed_slices(worklist: Worklist, on_screen: ReviewSession | None) -> tuple[int, int | None]:
    """The reviewed slices that fine-tuning would use, (training, held-out), as the rows count
    them (the case on screen with its unsaved marks: the job saves them first; flagged cases
    are left out, as training leaves them out); held-out None while the dataset has no split
    yet, the first count then being all of them."""
    counts = [0, 0]
    for case in worklist.cases:
        if case.status == "flagged":
            continue
        mine = isinstance(on_screen, CaseSession) and on_screen.case is case and not on_screen.read_only
        counts[case.held_out] += int(on_screen.reviewed.sum()) if mine else case.reviewed_count
    split = any(case.held_out for case in worklist.cases)
    return (counts[0], counts[1]) if split else (counts[0], None)


def _writable(folder: Path) -> bool:
    """Whether a checkpoint can be written into ``folder`` (or, before it exists, made there)."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


# -- in the worker ---------------------------------------------------------------------------

def run_fine_tune(folder: Path, parent: Path, models_folder: Path | None, stop: threading.Event,
                  progress: Callable[[dict], None], epochs: int | None = None) -> FineTuned | None:
    """``fine_tune`` (``epochs``: None, its default) with its lineage read back; None when
    ``stop`` was set (nothing written). Raises FineTuneError, CheckpointError."""
    from ..ml.checkpoint import read_metadata
    from ..ml.train import TrainingCancelled
    from ..session.finetune import fine_tune

    try:
        path = fine_tune(folder, parent, progress=progress, should_stop=stop.is_set, models_folder=models_folder,
                         epochs=epochs)
    except TrainingCancelled:
        return None
    meta = read_metadata(path)
    lineage = meta.get("lineage") or {}
    parent_dice = (lineage.get("parent") or {}).get("held_out_dice")
    return FineTuned(path, parent, sorted(lineage.get("cases", {})), list(lineage.get("split", {}).get("val", [])),
                     int(lineage.get("reviewed_slices", 0)), math.nan if parent_dice is None else float(parent_dice),
                     [str(s) for s in meta.get("training", {}).get("skipped", [])],
                     (lineage.get("replay") or {}).get("source"))
