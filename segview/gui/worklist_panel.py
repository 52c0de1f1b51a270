"""The worklist in the window: a dataset's cases in a dock, one case at a time on screen.

``install_worklist(window)`` adds File > Open dataset... and File > Export dataset report...,
a Worklist menu (next / previous case, done, flag, predict the dataset) and the dock to a
window (a ``host.WorklistHost``, as ``MainWindow`` is; never imported here), and returns the
``WorklistController`` that wires them to a ``segview.session.Worklist`` (no Qt; every
transition of the work is its or its ``CaseSession``'s). The panel only shows the cases and
forwards what the user asks.

- A case opens in a worker (``Worklist.session``), then ``window.show_session``. Leaving a
  case saves it into the dataset first when it has unsaved edits (the journal covers them
  until then); a case whose predictions are all in the cache does not run inference again.
- Background prediction of the whole dataset by models A and B (``prediction_queue``) in a
  ``GeneratorWorker``, with progress and Cancel; rows update as cases are cached, and the
  open case takes its predictions when the queue reaches it.
- Navigation is the session's (``segview.session.WorklistNavigator``, no Qt): next and
  previous follow the order as it was when the user last sorted, so rows the queue updates
  do not reshuffle under them; the case left is saved before the next opens; the next case
  in that order is opened in the background while one is on screen (Ctrl+N then shows it at
  once, or waits for it while it opens, never opening it twice). The dock only runs the
  navigator's jobs in workers and shows what they did.
- Done saves the case on screen into the dataset with the status "done" (labels, reviewed
  slices and status in one sidecar); Done and next (Ctrl+Shift+N) also opens the next.
- A case another segview has open shows "read-only" in its row (and the window's title;
  its editing tools are disabled); a case with a crashed segview's unsaved edits shows
  "crashed edits" (``Case.crashed_edits``) until they are restored or declined.
- Rows follow another segview on the same dataset: every few seconds a worker reads again
  the cases it saved, opened or closed (``Worklist.refresh_changed``; never the case on
  screen), so its statuses, figures and the cases it has open ("open elsewhere") show here.
- Worklist > Fine-tune model A on reviewed cases... (``gui/finetune_job.py``): a job with
  progress and Cancel whose checkpoint is offered as model B; File > Export held-out
  report... compares A and B on the held-out cases of the dataset's fixed split.
"""
from __future__ import annotations

import math
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QDockWidget, QFileDialog, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QMenu, QMessageBox, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.report import counted, number_text
from ..core.errors import SegviewError
from ..session import Case, CaseSession, QueueStep, ReviewSession, Worklist, WorklistNavigator, dataset_layout
from ..session.verdict import REPORT_FILES, reviewed_verdict, write_dataset_report
from ..session.case_files import held_by_another
from ..session.worklist import OpenJob, Prefetch, working_status
from .finetune_job import FineTuning
from .host import EXPORT_REPORT_ACTION, FILE_MENU, MODEL_MENU, OPEN_DICOM_ACTION
from .job_row import JobRow
from .settings import remember_folder
from .workers import GeneratorWorker, Worker

if TYPE_CHECKING:
    from .host import WorklistHost

#: Sort choices of the panel: (shown text, ``Worklist.sorted`` key).
SORTS = (("Most disputed (A vs B)", "disputed"), ("Most uncertain", "uncertain"), ("Name", "name"),
         ("Status", "status"))
COLUMNS = ("Case", "Status", "Reviewed", "Dice A", "Dice B", "A vs B differ", "Uncertainty",
           "Correction A", "Correction B")
COLUMN_TIPS = ("", "new, in progress, done or flagged (the note in the tooltip)",
               "slices marked reviewed / slices of the image",
               "mean foreground Dice of model A over the reviewed slices, as last saved",
               "mean foreground Dice of model B over the reviewed slices, as last saved",
               "voxels where models A and B differ, per 100 voxels either calls foreground (whole image, "
               "from the prediction cache): 0 % they agree, 100 % their foregrounds do not overlap",
               "mean softmax entropy of A and B (nats; from the prediction cache)",
               "volume where A's prediction had to change to reach the labels (reviewed slices)",
               "volume where B's prediction had to change to reach the labels (reviewed slices)")
STATUS_COLORS = {"done": QColor(60, 160, 60), "flagged": QColor(210, 120, 0), "in progress": QColor(40, 110, 200)}
NAME_ROLE = Qt.ItemDataRole.UserRole


#: What a held-out case's name says, and its tooltip.
HELD_OUT_MARK = " (held out)"
HELD_OUT_TIP = ("Held out (the dataset's fixed split, splits.json): fine-tuning never trains on it; its reviewed "
                "slices choose the fine-tune's epoch and judge model B (File > Export held-out report...)")


#: What the status of a case with a crashed segview's unsaved edits says, and its tooltip.
CRASHED_MARK = ", crashed edits"
CRASHED_TIP = ("segview stopped (a crash, a kill) with unsaved edits of this case: open it to restore them "
               "(or File > Recover edits... later)")


#: What the status of a case another segview has open says.
HELD_MARK = ", open elsewhere"

#: What the status of a case whose saved labels could not be read (another grid) says: it
#: opened with empty labels (``Case.labels_unread``, its tooltip).
UNREAD_MARK = ", labels not read"


def case_cells(case: Case) -> list[str]:
    """The texts of a case's row, in ``COLUMNS`` order."""
    status = "cannot open" if case.error else f"{case.status}, read-only" if case.locked_by else \
        f"{case.status}{HELD_MARK}" if case.held_by else case.status
    status += CRASHED_MARK if case.crashed_edits else ""
    status += UNREAD_MARK if case.labels_unread and not case.error else ""
    name = case.name + (HELD_OUT_MARK if case.held_out else "")
    return [name, status, case.reviewed_text.replace(" slices reviewed", ""),
            number_text(case.dice.get("A", math.nan)), number_text(case.dice.get("B", math.nan)),
            number_text(case.disputed * 100, 1, unit=" %"), number_text(case.uncertainty),
            number_text(case.correction_ml.get("A", math.nan), 2, unit=" mL"),
            number_text(case.correction_ml.get("B", math.nan), 2, unit=" mL")]


class WorklistPanel(QWidget):
    """Every case of a worklist in a table, in the order of the last sort. Emits what the
    user asks for; the controller does it."""
    open_requested = Signal(str)       # case name
    sort_chosen = Signal(str)          # a Worklist.sorted key, also when chosen again
    done_clicked = Signal()
    done_next_clicked = Signal()
    flag_clicked = Signal()
    next_clicked = Signal()
    previous_clicked = Signal()
    predict_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title = QLabel("No dataset: File > Open dataset...")
        self.title.setWordWrap(True)
        self.sort_choice = QComboBox()
        self.sort_choice.addItems([text for text, _ in SORTS])
        self.sort_choice.setCurrentIndex([key for _, key in SORTS].index("name"))
        self.sort_choice.activated.connect(lambda n: self.sort_chosen.emit(SORTS[n][1]))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for n, tip in enumerate(COLUMN_TIPS):
            header_item = self.table.horizontalHeaderItem(n)
            if header_item is not None and tip:
                header_item.setToolTip(tip)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        # Enter (and double-click, where the platform activates items by double-click) opens.
        self.table.activated.connect(self._activated)
        self.buttons: dict[str, QPushButton] = {}
        row = QHBoxLayout()
        for name, text, tip, signal in (
                ("previous", "◀ Previous", "Previous case in this order (Ctrl+P)", self.previous_clicked),
                ("next", "Next ▶", "Next case in this order (Ctrl+N); the case you leave is saved",
                 self.next_clicked),
                ("done", "Done", "Mark the selected case done; the case on screen is saved with it (labels, "
                 "reviewed slices)", self.done_clicked),
                ("done_next", "Done ▶", "Done and next (Ctrl+Shift+N): save the case on screen as done and open "
                 "the next", self.done_next_clicked),
                ("flag", "Flag...", "Flag the selected case, with a note", self.flag_clicked),
                ("predict", "Predict all", "Predict every case with models A and B, in the background",
                 self.predict_clicked)):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(signal)
            self.buttons[name] = button
            row.addWidget(button)
        row.addStretch(1)
        row.addWidget(QLabel("Sort by"))
        row.addWidget(self.sort_choice)
        self.queue = JobRow()
        self.report = JobRow()
        self.finetune = JobRow()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.queue)
        layout.addWidget(self.report)
        layout.addWidget(self.finetune)
        self.set_enabled(False)

    # -- what the controller shows ------------------------------------------------------
    def set_enabled(self, on: bool) -> None:
        for button in self.buttons.values():
            button.setEnabled(on)
        self.sort_choice.setEnabled(on)

    def show_cases(self, cases: list[Case], current: str | None = None) -> None:
        """Rows for ``cases``, in this order; the row of ``current`` selected."""
        self.table.setRowCount(len(cases))
        for n, case in enumerate(cases):
            self._fill(n, case)
        if current is not None:
            self.select(current)

    def update_case(self, case: Case) -> None:
        n = self.row_of(case.name)
        if n is not None:
            self._fill(n, case)

    def row_of(self, name: str) -> int | None:
        for n in range(self.table.rowCount()):
            item = self.table.item(n, 0)
            if item is not None and item.data(NAME_ROLE) == name:
                return n
        return None

    def names(self) -> list[str]:
        """The case names in the order shown."""
        names = []
        for n in range(self.table.rowCount()):
            item = self.table.item(n, 0)
            if item is not None:
                names.append(str(item.data(NAME_ROLE)))
        return names

    def cell(self, name: str, column: str) -> QTableWidgetItem | None:
        """The item of case ``name`` in ``column`` (a ``COLUMNS`` name)."""
        n = self.row_of(name)
        return None if n is None else self.table.item(n, COLUMNS.index(column))

    def selected(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return None if item is None else str(item.data(NAME_ROLE))

    def select(self, name: str) -> None:
        n = self.row_of(name)
        if n is not None:
            self.table.selectRow(n)
            item = self.table.item(n, 0)
            if item is not None:
                self.table.scrollToItem(item)

    def _fill(self, n: int, case: Case) -> None:
        for column, text in enumerate(case_cells(case)):
            item = self.table.item(n, column)
            if item is None:
                item = QTableWidgetItem()
                self.table.setItem(n, column, item)
            item.setText(text)
            item.setData(NAME_ROLE, case.name)
            if column >= 2:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        status = self.table.item(n, 1)
        if status is not None:
            locked = f"Open in another segview ({case.locked_by}): read-only here" if case.locked_by else \
                f"Open in another segview ({case.held_by})" if case.held_by else ""
            crashed = CRASHED_TIP if case.crashed_edits else ""
            status.setToolTip("\n".join(t for t in (case.error, case.labels_unread, crashed, case.note, locked) if t))
            problem = case.error or case.labels_unread or case.crashed_edits
            color = QColor(200, 40, 40) if problem else STATUS_COLORS.get(case.status)
            status.setForeground(QBrush(color) if color is not None else QBrush())
        name = self.table.item(n, 0)
        if name is not None:
            name.setToolTip(str(case.image) + (f"\n{HELD_OUT_TIP}" if case.held_out else ""))
            font = name.font()
            font.setItalic(case.held_out)
            name.setFont(font)

    def _activated(self, index) -> None:
        item = self.table.item(index.row(), 0)
        if item is not None:
            self.open_requested.emit(str(item.data(NAME_ROLE)))


#: How often a case held by another segview is checked for its release (ms).
RELEASE_POLL_MS = 3000
#: How often the dataset is checked for cases another segview saved, opened or closed (ms).
CHANGES_POLL_MS = 3000


class WorklistController(QObject):
    """The worklist of a window: see the module docstring. Signals for tests and
    scripts: ``dataset_opened``, ``case_opened(name)`` (on screen), ``case_failed(message)``,
    ``case_saved(name)`` (Done, Flag: saved into the dataset with its status),
    ``queue_step(QueueStep)``, ``queue_finished(bool)`` (True: every case predicted),
    ``report_written(list of paths)``, ``case_prefetched(name)`` (the next case is open in
    the background, ready for Ctrl+N: ``prefetched``)."""
    dataset_opened = Signal()
    case_opened = Signal(str)
    case_prefetched = Signal(str)
    case_failed = Signal(str)
    case_saved = Signal(str)
    queue_step = Signal(object)
    queue_finished = Signal(bool)
    report_written = Signal(list)

    def __init__(self, window: WorklistHost):
        super().__init__(window.window())
        self.window = window
        self.worklist: Worklist | None = None
        self.navigator: WorklistNavigator | None = None  # the order, next / previous, prefetch
        self.checkpoints: dict[str, Path] = {}       # wanted for datasets, even before one opens
        self.queue: GeneratorWorker | None = None
        self._report_stop: threading.Event | None = None
        self._jobs: set[Worker] = set()
        self.saving: str | None = None                # the case Done or Flag is saving in a worker
        self._last_queue_case: str | None = None
        self.prefetch_enabled = True                  # open the next case in the background
        # A case on screen read-only because another segview has it is read anew, on the
        # slice shown, once that segview lets it go (``_watch_release``).
        self.release_watch = QTimer(self)
        self.release_watch.setInterval(RELEASE_POLL_MS)
        self.release_watch.timeout.connect(self._check_release)
        # Rows follow what another segview on the dataset saves, opens and closes.
        self.changes_watch = QTimer(self)
        self.changes_watch.setInterval(CHANGES_POLL_MS)
        self.changes_watch.timeout.connect(self._check_changes)
        self._checking_changes = False                # a check runs in a worker
        # (case, slice, whether the other segview still holds it) read anew on its release or save
        self._reopening: tuple[str, int, bool] | None = None
        self.panel = WorklistPanel()
        self.dock = QDockWidget("Worklist", window.window())
        self.dock.setObjectName("worklist")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                              | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                              | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self.fine_tuning = FineTuning(self, self.panel.finetune)  # Worklist > Fine-tune model A...
        self._build_actions()
        panel = self.panel
        panel.open_requested.connect(self.open_case)
        panel.sort_chosen.connect(self.sort_by)
        panel.next_clicked.connect(self.next_case)
        panel.previous_clicked.connect(self.previous_case)
        panel.done_clicked.connect(self.mark_done)
        panel.done_next_clicked.connect(self.done_and_next)
        panel.flag_clicked.connect(self.flag)
        panel.predict_clicked.connect(self.predict_dataset)
        panel.queue.cancel_clicked.connect(self.cancel_prediction)
        panel.report.cancel_clicked.connect(self._cancel_report)
        window.model_loaded.connect(self._model_loaded)
        window.saved.connect(self._saved)
        window.review_changed.connect(self._review_changed)
        window.modified_changed.connect(self._review_changed)
        window.installEventFilter(self)

    @property
    def sort(self) -> str:
        """The key of the last sort (``Worklist.sorted``)."""
        return self.navigator.sort_key if self.navigator is not None else "name"

    @property
    def opening(self) -> str | None:
        """The case being opened (or saved, then opened) in a worker."""
        return self.navigator.opening if self.navigator is not None else None

    # -- menus --------------------------------------------------------------------------
    def _build_actions(self) -> None:
        window = self.window
        parent = window.window()  # the window as a widget
        file_menu = _menu(window, FILE_MENU)
        self.open_action = QAction("Open data&set...", parent)
        self.open_action.setToolTip("A folder in the nnU-Net layout (imagesTr/, labelsTr/) or of DICOM studies")
        self.open_action.triggered.connect(self.choose_dataset)
        self.report_action = QAction("Export &dataset report...", parent)
        self.report_action.setObjectName("export dataset report")
        self.report_action.setToolTip("A and B over the reviewed slices of every case: results.csv, "
                                      "verdict.md, verdict.png")
        self.report_action.triggered.connect(lambda: self.choose_report_folder())
        self.held_out_action = QAction("Export &held-out report...", parent)
        self.held_out_action.setToolTip("The dataset report over the held-out cases of the dataset's fixed split\n"
                                        "(splits.json) only: cases neither A nor a B fine-tuned from it trained on")
        self.held_out_action.triggered.connect(lambda: self.choose_report_folder(held_out=True))
        _insert_after(file_menu, OPEN_DICOM_ACTION, self.open_action)
        _insert_after(file_menu, EXPORT_REPORT_ACTION, self.report_action)
        _insert_after(file_menu, self.report_action.objectName(), self.held_out_action)
        menu = QMenu("&Worklist", parent)
        menu.setObjectName("worklist menu")
        self.next_action = menu.addAction("&Next case", QKeySequence("Ctrl+N"), self.next_case)
        self.previous_action = menu.addAction("&Previous case", QKeySequence("Ctrl+P"), self.previous_case)
        menu.addSeparator()
        self.done_action = menu.addAction("Mark case &done", self.mark_done)
        self.done_next_action = menu.addAction("Done and ne&xt case", QKeySequence("Ctrl+Shift+N"),
                                               self.done_and_next)
        self.flag_action = menu.addAction("&Flag case...", self.flag)
        menu.addSeparator()
        self.predict_action = menu.addAction("P&redict every case (A and B)", self.predict_dataset)
        self.cancel_action = menu.addAction("&Cancel predicting", self.cancel_prediction)
        menu.addSeparator()
        self.finetune_action = menu.addAction("Fine-&tune model A on reviewed cases...", self.fine_tuning.start)
        menu.setToolTipsVisible(True)  # a disabled item says why in its tooltip
        menu.addSeparator()
        menu.addAction(self.dock.toggleViewAction())
        model_menu = _menu(window, MODEL_MENU)
        if model_menu is not None:
            window.menuBar().insertMenu(model_menu.menuAction(), menu)
        else:
            window.menuBar().addMenu(menu)
        self.menu = menu
        self._update_actions()

    def _update_actions(self) -> None:
        has = self.worklist is not None
        for action in (self.next_action, self.previous_action, self.done_action, self.done_next_action,
                       self.flag_action, self.predict_action, self.report_action):
            action.setEnabled(has)
        self.cancel_action.setEnabled(self.queue is not None)
        self.panel.set_enabled(has)
        self.panel.buttons["predict"].setEnabled(has and self.queue is None)
        nnunet = has and self.worklist is not None and self.worklist.layout == "nnU-Net"
        self.held_out_action.setEnabled(nnunet)
        self.finetune_action.setEnabled(self.fine_tuning.reason() is None)
        self.finetune_action.setToolTip(self.fine_tuning.tooltip())

    def show_split(self, held_out: list[str] | None = None) -> None:
        """Mark the held-out cases of ``splits.json`` as it is now (a fine-tune or held-out
        report may have written it), or ``held_out``: those of a fine-tune going on, whose
        split is written only if it succeeds."""
        if self.worklist is None:
            return
        problem = None
        if held_out is None:
            problem = self.worklist.read_split()
        else:
            self.worklist.mark_held_out(held_out)
        if problem is not None:
            self.window.statusBar().showMessage(problem, 10000)
        self._show_rows()
        self._review_changed()  # the case on screen with its unsaved marks
        self.panel.title.setText(self._title())

    def update_actions(self) -> None:
        """Enable the menu items and buttons for what can be done now (the fine-tuning job
        calls it when it starts and ends)."""
        self._update_actions()

    # -- opening a dataset ----------------------------------------------------------------
    def choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window.window(), "Open dataset (nnU-Net or DICOM studies)",
                                                  self.window.start_folder())
        remember_folder(folder)
        if folder:
            self.open_dataset(folder)

    def open_dataset(self, folder, checkpoints: dict | None = None) -> None:
        """Open dataset ``folder`` in a worker (statuses from the sidecars, no image read),
        with ``checkpoints`` ({"A": path, "B": path}; default: those already chosen, else the
        models of the window's session)."""
        if checkpoints:
            self.checkpoints = {slot: Path(p).absolute() for slot, p in checkpoints.items()}
        elif not self.checkpoints and self.window.session is not None:
            self.checkpoints = {slot: m.path for slot, m in self.window.session.models.items()}
        wanted = dict(self.checkpoints)
        self._run(_open_worklist, Path(folder).absolute(), wanted or None,
                  done=lambda opened: self._dataset_open(*opened), reports_progress=True)
        self.window.statusBar().showMessage(f"Opening dataset {folder}...")

    def _dataset_open(self, worklist: Worklist, problems: dict[str, tuple[str, bool]] | None = None) -> None:
        self._drop_queue()
        if self.navigator is not None:
            self.navigator.close()  # the case prefetched, or opening, of the dataset before
        self._keep_fitting(worklist, problems or {})
        self.worklist = worklist
        self.navigator = WorklistNavigator(worklist, "name", prefetching=self.prefetch_enabled)
        self.checkpoints = dict(worklist.checkpoints)
        self.panel.sort_choice.setCurrentIndex([key for _, key in SORTS].index("name"))
        self._show_rows()
        self.panel.title.setText(self._title())
        self.dock.show()
        self._update_actions()
        self.changes_watch.start()
        self.window.statusBar().showMessage(f"Dataset {worklist.folder.name}: {len(worklist.cases)} cases", 8000)
        self.dataset_opened.emit()
        if len(worklist.checkpoints) == 2:
            self.predict_dataset()
        # A case goes on screen (``WorklistNavigator.first_name``: one with a crashed session's
        # edits, else the first not done): an empty window would show nothing to a new user,
        # and an image of elsewhere left there would have models loaded next checked against
        # it (its unsaved edits are asked about first, as any case opened does).
        first = self.navigator.first_name()
        if first is not None:
            self.open_case(first)

    def _keep_fitting(self, worklist: Worklist, problems: dict[str, tuple[str, bool]]) -> None:
        """Leave out the checkpoints chosen before that do not fit the dataset opened
        (``Worklist.checkpoint_problems``): one of other classes is refused, saying why; for
        one of another modality the user decides, once for every case (default No)."""
        kept, refused = dict(worklist.checkpoints), []
        for slot, (why, refuse) in sorted(problems.items()):
            said = f"Model {slot} ({kept[slot].name}): {why[0].upper()}{why[1:]}."
            if refuse:
                refused.append(said)
            elif QMessageBox.question(
                    self.window.window(), "Checkpoint of another modality",
                    f"{said}\n\nRun it on every case of {worklist.folder.name} anyway?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes:
                continue
            del kept[slot]
        if len(kept) < len(worklist.checkpoints):
            worklist.set_checkpoints(kept)
        if refused:
            self._error("\n".join(refused) + "\n\nNot used for this dataset: load a checkpoint of its classes "
                        "(Model > Load checkpoint A / B).", "Checkpoint of other classes")

    def _title(self) -> str:
        worklist = self.worklist
        if worklist is None:
            return ""
        counts = {s: sum(c.status == s for c in worklist.cases) for s in ("done", "flagged")}
        held_out = sum(c.held_out for c in worklist.cases)
        models = ", ".join(f"{s}: {p.name}" for s, p in worklist.checkpoints.items()) or \
            "no models (Model > Load checkpoint A / B)"
        read_only = " <b>read-only</b>" if worklist.read_only else ""
        return (f"<b>{worklist.folder.name}</b> ({worklist.layout}, {counted(len(worklist.cases), 'case')}, "
                f"{counts['done']} done, {counts['flagged']} flagged"
                f"{f', {held_out} held out' if held_out else ''}){read_only}<br>{models}<br>"
                "Enter or double-click opens a case; Ctrl+N / Ctrl+P: next / previous (the case left is saved); "
                "Ctrl+Shift+N: done and next")

    def _show_rows(self) -> None:
        """Rows in the navigator's frozen order."""
        if self.navigator is not None:
            self.panel.show_cases(self.navigator.cases(), self._current_name())

    def sort_by(self, key: str) -> None:
        """Sort the rows by ``key`` ("disputed", "uncertain", "name", "status") as the
        figures are now; next and previous follow this order until the next sort."""
        self.panel.sort_choice.setCurrentIndex([k for _, k in SORTS].index(key))
        if self.navigator is None:
            return
        self.navigator.sort(key)
        self._show_rows()
        self._prefetch_next()  # the next case may be another now

    def _refresh_row(self, name: str) -> None:
        """The case's row as saved (read again: another segview may have saved it since); the
        case open here, unless read-only, with its review count, and the status it and any
        unsaved edit give, as they are now (not saved yet)."""
        if self.worklist is None:
            return
        case, session = self.worklist.case(name), self._current()
        if session is not None and session.case is case and not session.read_only:
            reviewed = int(session.reviewed.sum())
            case = replace(case, reviewed_count=reviewed, slices=len(session.reviewed),
                           status=working_status(case.status, reviewed, session.modified))
        else:
            self.worklist.read_status(case)
        self.panel.update_case(case)
        self.panel.title.setText(self._title())

    def _check_changes(self) -> None:
        """Read again, in a worker, the cases another segview saved, opened or closed since
        (``Worklist.refresh_changed``), all but the case on screen, and show their rows."""
        worklist = self.worklist
        if worklist is None or self._checking_changes:
            return
        self._checking_changes = True
        keep = {name for name in (self._current_name(), self.opening) if name is not None}
        self._run(worklist.refresh_changed, keep, done=lambda names: self._show_changed(worklist, names),
                  failed=self._changes_failed)

    def _show_changed(self, worklist: Worklist, names: list[str]) -> None:
        self._checking_changes = False
        if worklist is not self.worklist:
            return  # another dataset opened meanwhile
        current = self._current_name()
        for name in names:
            if name != current:  # opened meanwhile: its own session's row
                self.panel.update_case(worklist.case(name))
        if names:
            self.panel.title.setText(self._title())  # the done and flagged counts follow

    def _changes_failed(self, exc: Exception) -> None:
        self._checking_changes = False
        if not isinstance(exc, OSError):  # a share gone for a while: checked again next time
            raise exc

    def _review_changed(self) -> None:
        name = self._current_name()
        if name is not None:
            self._refresh_row(name)

    # -- models -----------------------------------------------------------------------------
    def set_checkpoints(self, checkpoints: dict) -> None:
        """Models A and B for datasets ({"A": path, "B": path}); with a dataset open its
        figures follow them and, with both, every case is predicted in the background."""
        self.checkpoints = {slot: Path(p).absolute() for slot, p in checkpoints.items()}
        if self.worklist is None:
            return
        try:
            self.worklist.set_checkpoints(self.checkpoints)
        except SegviewError as exc:
            return self._error(str(exc), "Cannot use the checkpoint")
        self._update_actions()  # fine-tuning needs model A
        self._drop_queue()  # it predicts for the old checkpoints
        if self.navigator is not None:
            self.navigator.drop_prefetch()  # opened with the old ones
        for case in self.worklist.cases:
            self.panel.update_case(case)
        self._review_changed()  # the case on screen as it is now, unsaved review marks and edits included
        self.panel.title.setText(self._title())
        self._prefetch_next()
        if len(self.checkpoints) == 2:
            self.predict_dataset()

    def _model_loaded(self, slot: str) -> None:
        """Model > Load checkpoint: the window's models are the dataset's."""
        session = self.window.session
        if session is None:
            # The model waits in the window for an image: with a dataset open, that is a case;
            # without one, the dataset opened next is predicted with it.
            names = self.panel.names()
            if self.worklist is not None and self.opening is None and names:
                self.open_case(self.panel.selected() or names[0])
            elif self.worklist is None:
                self.checkpoints = self.window.waiting_checkpoints()
            return
        paths = {s: m.path for s, m in session.models.items()}
        if self.worklist is None:
            self.checkpoints = paths  # a model the user declined for this image is not wanted either
            return
        if any(self.worklist.checkpoints.get(s) != p for s, p in paths.items()):
            self.set_checkpoints({**self.worklist.checkpoints, **paths})
        self._take_cached(session)

    # -- opening a case -------------------------------------------------------------------
    def _current(self) -> CaseSession | None:
        session = self.window.session
        if isinstance(session, CaseSession) and self.worklist is not None and session.worklist is self.worklist:
            return session
        return None

    def _current_name(self) -> str | None:
        session = self._current()
        return session.case.name if session is not None else None

    def open_case(self, name: str, status: str | None = None) -> None:
        """Open case ``name`` in a worker and put it on screen; the case on screen is saved
        into the dataset first when it has unsaved edits, or with ``status`` when one is
        given (Done and next: "done")."""
        navigator = self.navigator
        if navigator is None:
            return
        if self._busy():
            return
        if name == self._current_name() and status is None and not self._held_elsewhere():
            return self.panel.select(name)  # a case another segview held is read anew: it may be free now
        previous = self.window.session
        try:
            save = navigator.leave_job(previous, status)  # the labels as they are now, written in the worker
        except SegviewError as exc:
            if status is not None:  # Done and next on a case that cannot be saved: stay
                return self._error(str(exc), "Case not saved")
            answer = QMessageBox.question(
                self.window.window(), "Case not saved",
                f"{exc}\n\nLeave {previous.case.name} and drop its unsaved edits?",
                QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Discard:
                return
            save = None
        job = navigator.open_job(name, save)
        self.panel.select(name)
        self.window.statusBar().showMessage(f"Opening {name}...")
        prefetch = navigator.prefetch
        if save is None and prefetch is not None and prefetch.name == name and prefetch.complete:
            # Open in the background with every prediction: shown now, no worker round trip.
            return self._case_open(job, previous, job())
        self._run(job, done=lambda session: self._case_open(job, previous, session),
                  failed=lambda exc: self._case_failed(job, previous, exc), reports_progress=True)

    def _watch_release(self) -> None:
        """Watch the lock of the case on screen while another segview holds it."""
        if self._held_elsewhere():
            self.release_watch.start()
        else:
            self.release_watch.stop()

    def _check_release(self) -> None:
        """The case on screen, read-only while another segview held it, is read anew on the
        slice shown once that segview has closed it, or saved it (still read-only then: a
        tester's second reader kept looking at labels the first had since corrected). It was
        read-only here: nothing of this window's is lost."""
        session = self._current()
        if session is None or session.locked_by is None or session.labels_path is None:
            return self.release_watch.stop()
        if self.opening or self.saving or QApplication.activeModalWidget() is not None:
            return  # not under a dialog the person is answering: at the next check
        held = held_by_another(Path(session.labels_path))
        if held and not session.saved_since_read():
            return
        if not held:
            self.release_watch.stop()
        self._reopening = (session.case.name, self.window.current_slice(), bool(held))
        self.open_case(session.case.name)

    def _held_elsewhere(self) -> bool:
        """The case on screen opened read-only because another segview had it open."""
        session = self._current()
        return session is not None and session.locked_by is not None

    def _busy(self) -> bool:
        """True (and why, in the status bar) while a case opens or Done saves one: one save
        of a case at a time."""
        what = f"Still opening {self.opening}..." if self.opening else \
            f"Still saving {self.saving}..." if self.saving else None
        if what is not None:
            self.window.statusBar().showMessage(what, 4000)
        return what is not None

    def _case_failed(self, job: OpenJob, previous: ReviewSession | None, exc: Exception) -> None:
        self._reopening = None
        if self.navigator is not None:
            self.navigator.opened(job, shown=False)
        if job.cancelled:
            return
        saved = getattr(exc, "saved_job", None)
        if saved is not None and previous is not None:  # the case left was saved all the same
            self._finish_save(previous, saved)
        self._refresh_row(job.name)
        if not isinstance(exc, SegviewError):
            raise exc
        self.case_failed.emit(str(exc))
        leaving = getattr(exc, "while_saving", None)
        self._error(str(exc), f"{leaving} not saved: {job.name} not opened" if leaving else f"Cannot open {job.name}")

    def _case_open(self, job: OpenJob, previous: ReviewSession | None, session: CaseSession) -> None:
        navigator = self.navigator
        if job.cancelled or navigator is None or job.navigator is not navigator:
            return  # the window closed, or another dataset opened: the job closed it
        window = self.window
        if not window.isVisible():  # the window closed meanwhile: nothing to show it in
            navigator.opened(job, shown=False)
            if job.save is not None and previous is not None:
                previous.finish_save(job.save)
            session.close(discard=True)
            return
        window.statusBar().clearMessage()  # "Opening ..."
        if job.save is not None and previous is not None:
            self._finish_save(previous, job.save)
        self._show_case(job, previous, session)

    def _show_case(self, job: OpenJob, previous: ReviewSession | None, session: CaseSession) -> None:
        """Put the case opened by ``job`` on screen, the session there saved first when it
        was edited meanwhile (a case: in a worker, then here again)."""
        navigator, window = self.navigator, self.window
        if job.cancelled or navigator is None or job.navigator is not navigator:
            return
        if not window.isVisible():  # the window closed while the session there was saved
            navigator.opened(job, shown=False)
            session.close(discard=True)
            return
        old = window.session

        def stay() -> None:
            assert navigator is not None
            navigator.opened(job, shown=False)
            session.close(discard=True)  # stay on the case on screen
            self._refresh_row(session.case.name)
            self._prefetch_next()

        if old is not None and old.modified:
            if isinstance(old, CaseSession):
                return self._save_leaving(old, job.name, lambda: self._show_case(job, previous, session), stay)
            if not self._leave(old):
                return stay()
        window.discard_session()  # saved above, or nothing unsaved: show_session asks nothing
        if isinstance(previous, CaseSession) and previous.worklist is self.worklist:
            self._refresh_row(previous.case.name)  # closed: its lock, if it was read-only, is gone
        if self._reopening is not None and self._reopening[0] == session.case.name and session.lock_warning:
            # Read again while the other still holds it: the status line says so, not a dialog
            # at each of its saves (which also held up the check for its release).
            session.warnings = [w for w in session.warnings if w != session.lock_warning]
        window.show_session(session)  # runs inference only on slices the cache did not have
        navigator.opened(job, shown=window.session is session)
        if window.session is not session:
            return
        self._refresh_row(session.case.name)
        self.panel.select(session.case.name)
        said, shown_for = f"Opened {session.case.name}" + (" (read-only)" if session.read_only else ""), 4000
        reopened, self._reopening = self._reopening, None
        if reopened is not None and reopened[0] == session.case.name:
            window.workspace.go_to_slice(min(reopened[1], session.volume.shape[0] - 1))
            said, shown_for = (f"{session.case.name} was saved by the other segview ({session.locked_by}): "
                               "read again, read-only still" if reopened[2] else
                               f"{session.case.name} was let go by the other segview (closed, or it stopped): "
                               "read again, with what it saved"
                               + (", read-only still: another segview took it" if session.locked_by else
                                  ", editable here")), 10000
        window.statusBar().showMessage(said, shown_for)
        self._watch_release()
        self.case_opened.emit(session.case.name)
        self._prefetch_next()

    def _finish_save(self, session: ReviewSession, job) -> None:
        """``job`` (a save of ``session``) was written: the session, the window and the row know."""
        journal_note = session.finish_save(job)
        if journal_note:
            self.window.statusBar().showMessage(f"Saved {Path(job.path).name}. {journal_note}", 8000)
        if session is self.window.session:
            self.window.setWindowModified(session.modified)
        self.window.saved.emit(str(job.path))

    # -- prefetching the next case ----------------------------------------------------------
    @property
    def prefetched(self) -> str | None:
        """The case open in the background, ready for Ctrl+N; None when there is none (yet)."""
        return self.navigator.prefetched if self.navigator is not None else None

    def set_prefetch(self, on: bool) -> None:
        """Open the next case in the background (on by default); off closes the one there."""
        self.prefetch_enabled = on
        self._prefetch_next()

    def _prefetch_next(self) -> None:
        """Have the navigator open the case after the one on screen in a worker (any other
        it holds is closed)."""
        navigator = self.navigator
        if navigator is None:
            return
        navigator.current = self._current_name()
        navigator.prefetching = self.prefetch_enabled
        navigator.prefetch_next(self._start_prefetch)

    def _start_prefetch(self, prefetch: Prefetch) -> None:
        self._run(prefetch, done=lambda _: self._prefetch_done(prefetch),
                  failed=lambda exc: self._prefetch_failed(prefetch, exc))

    def _prefetch_done(self, prefetch: Prefetch) -> None:
        if self.navigator is None or prefetch is not self.navigator.prefetch:
            return  # taken by Ctrl+N, or dropped: closed already
        if prefetch.ready:
            self.case_prefetched.emit(prefetch.name)
        else:  # not opened ahead: it may hold a crashed segview's edits, known now
            self._refresh_row(prefetch.name)

    def _prefetch_failed(self, prefetch: Prefetch, exc: Exception) -> None:
        """The case could not be opened in the background: Ctrl+N opens it as any case, and
        says why."""
        self._refresh_row(prefetch.name)
        if not isinstance(exc, SegviewError):
            raise exc

    def _save_leaving(self, session: CaseSession, opening: str, go: Callable[[], None],
                      stay: Callable[[], None]) -> None:
        """Save the case ``session`` (edited while case ``opening`` opened) into the dataset
        in a worker, then ``go``; when it cannot be saved, ``go`` only if the user drops its
        edits, else ``stay``. The labels are taken as they are now; edits made during the
        save leave it modified, and ``go`` saves again."""
        name = session.case.name
        try:
            job = session.save_job()
        except SegviewError as exc:
            answer = QMessageBox.question(
                self.window.window(), "Case not saved", f"{exc}\n\nLeave it and drop its unsaved edits?",
                QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Discard:
                return stay()
            self.window.discard_session()  # dropped: not asked again when ``go`` replaces it
            return go()
        self.window.statusBar().showMessage(f"Saving {name} before {opening} opens...")

        def saved(_) -> None:
            self._finish_save(session, job)
            self._refresh_row(name)
            go()

        def failed(exc: Exception) -> None:
            stay()
            self._save_failed(name, exc)

        self._run(job, done=saved, failed=failed)

    def _leave(self, session: ReviewSession) -> bool:
        """Ask whether to save ``session`` (not a case: the window saves it) before it goes;
        True when it may go."""
        answer = QMessageBox.question(self.window.window(), "Unsaved labels",
                                      "The labels or their review marks have unsaved changes. Save them?",
                                      QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                      | QMessageBox.StandardButton.Cancel)
        if answer == QMessageBox.StandardButton.Save:
            return self.window.save(wait=True)
        return answer == QMessageBox.StandardButton.Discard

    def next_case(self) -> None:
        """Open the case after the one on screen (else the selected one) in the order shown."""
        self._step(+1)

    def previous_case(self) -> None:
        self._step(-1)

    def _step(self, step: int, status: str | None = None) -> None:
        navigator = self.navigator
        if navigator is None:
            return
        here = self._current_name() or self.panel.selected()
        navigator.current = self._current_name()
        name = navigator.next_name(here) if step > 0 else navigator.previous_name(here)
        if name is None:
            current = self._current()
            if status is not None and current is not None:  # Done on the last case: saved all the same
                return self._save_status(current, status, then="; that was the last case")
            return self.window.statusBar().showMessage("That was the last case" if step > 0
                                                       else "That was the first case", 5000)
        self.open_case(name, status)

    # -- status ----------------------------------------------------------------------------
    def _target(self) -> str | None:
        return self.panel.selected() or self._current_name()

    def mark_done(self) -> None:
        """The selected case is done: the case on screen is saved with it (labels, reviewed
        slices, status: one sidecar), another case's sidecar takes the status."""
        name = self._target()
        if name is not None:
            self.set_status(name, "done")

    def done_and_next(self) -> None:
        """Save the case on screen as done, then open the next (no case on screen: the
        selected case is marked done and the next opens)."""
        if self.navigator is None:
            return
        if self._current() is None:
            name = self.panel.selected()
            if name is not None:
                self.set_status(name, "done")
        self._step(+1, status="done" if self._current() is not None else None)

    def flag(self) -> None:
        """Flag the selected case with a note the user types."""
        name = self._target()
        if name is None or self.worklist is None:
            return
        note, ok = QInputDialog.getText(self.window.window(), f"Flag {name}", "Why (a note for whoever reads it):",
                                        text=self.worklist.case(name).note)
        if ok:
            self.set_status(name, "flagged", note)

    def set_status(self, name: str, status: str, note: str = "") -> None:
        """Set case ``name``'s status and note: the case on screen is saved into the dataset
        with them (in a worker: ``case_saved`` when written), any other's sidecar is written
        at once."""
        if self.worklist is None:
            return
        session = self._current()
        if session is not None and session.case.name == name:
            return self._save_status(session, status, note)
        try:
            self.worklist.set_status(name, status, note)
        except SegviewError as exc:
            return self._error(str(exc), "Status not saved")
        self._refresh_row(name)

    def _save_status(self, session: CaseSession, status: str, note: str = "", then: str = "") -> None:
        """Save ``session`` into the dataset with ``status`` and ``note``, in a worker
        (``then``: said after "saved" in the status bar)."""
        if self._busy():
            return
        try:
            job = session.save_job(status=status, note=note)
        except SegviewError as exc:
            return self._error(str(exc), f"{session.case.name} not saved")
        name = self.saving = session.case.name
        self.window.statusBar().showMessage(f"Saving {name} as {status}...")

        def saved(_) -> None:
            self.saving = None
            self._finish_save(session, job)
            self._refresh_row(name)
            self.window.statusBar().showMessage(f"{name}: {status}, saved{then}", 5000)
            self.case_saved.emit(name)

        self._run(job, done=saved, failed=lambda exc: self._save_failed(name, exc))

    def save_current(self, then: Callable[[], None], what: str) -> None:
        """Save the case on screen into the dataset when it has unsaved edits (in a worker,
        as Done does; one save at a time), then call ``then`` on the main thread; nothing to
        save: ``then`` at once. A save refused or failed says why, and ``then`` is not called
        (``what``: the work that waited, named in the message)."""
        if self._busy():
            return
        session = self._current()
        if session is None or not session.modified:
            return then()
        try:
            job = session.save_job()
        except SegviewError as exc:
            return self._error(f"{exc}\n\nSave or discard the edits first.",
                               f"{session.case.name} not saved: {what} not started")
        name = self.saving = session.case.name
        self.window.statusBar().showMessage(f"Saving {name} before {what}...")

        def saved(_) -> None:
            self.saving = None
            self._finish_save(session, job)
            self._refresh_row(name)
            then()

        self._run(job, done=saved, failed=lambda exc: self._save_failed(name, exc))

    def _save_failed(self, name: str, exc: Exception) -> None:
        self.saving = None
        self._refresh_row(name)
        if not isinstance(exc, (SegviewError, OSError)):
            raise exc
        session = self._current()
        kept = session.edits_kept if session is not None else "Your edits are kept in memory"
        self._error(f"{exc}\n\n{kept}.", f"{name} not saved")

    def _saved(self, path: str) -> None:
        """The window saved the labels: a case's row follows (and a new case is in progress)."""
        session = self._current()
        if session is None or Path(path) != session.case.labels:
            return
        self._refresh_row(session.case.name)  # the save set "in progress" (CaseSession.save_job)

    # -- predicting the dataset -------------------------------------------------------------
    def predict_dataset(self) -> None:
        """Predict every case with models A and B into the cache, in the background: the
        open case first, then in the order shown."""
        worklist = self.worklist
        if worklist is None or self.queue is not None:
            return
        if not worklist.checkpoints:
            return self._error("Load checkpoints A and B first (Model > Load checkpoint), then predict the "
                               "dataset.", "No models")
        names = self.panel.names()
        current = self._current_name()
        if current in names:
            names.remove(current)
            names.insert(0, current)
        worker = GeneratorWorker(_queue, worklist, names)
        worker.signals.yielded.connect(lambda step: self._queue_step(worker, step))
        worker.signals.errored.connect(self._queue_failed)
        worker.signals.finished.connect(lambda completed: self._queue_done(worker, completed))
        self.queue = worker
        self._last_queue_case = None
        self.panel.queue.start(f"Predicting {len(names)} cases with {' and '.join(worklist.checkpoints)}...")
        self._update_actions()
        worker.start()

    def cancel_prediction(self) -> None:
        if self.queue is not None:
            self.queue.cancel()
            self.panel.queue.cancel.setEnabled(False)
            self.panel.queue.label.setText("Stopping after this batch...")

    def _drop_queue(self) -> None:
        """Stop the queue and forget it at once (it winds down after its batch), so that a
        new one may start now: another dataset, other checkpoints."""
        if self.queue is not None:
            self.queue.cancel()
            self.queue = None
            self.panel.queue.hide()
            self._update_actions()

    def _queue_step(self, worker: GeneratorWorker, step: QueueStep) -> None:
        if worker is not self.queue or self.worklist is None:
            return
        what = f"{step.case}: cannot open" if step.error else f"{step.case} {step.slot}" + \
            (" (cached)" if step.cached else "")
        self.panel.queue.step(step.done, step.total, f"Predicting: {step.done} / {step.total}  {what}")
        # A case's figures are read once both models are done, after its last step.
        for name in {self._last_queue_case, step.case} - {None}:
            self._refresh_row(str(name))
        self._last_queue_case = step.case
        session = self._current()
        if session is not None and session.case.name == step.case and step.slot is not None:
            self._take_cached(session)
        self.queue_step.emit(step)

    def _take_cached(self, session: ReviewSession) -> None:
        """The open case takes what the cache has of its models; inference of the window
        stops when nothing is left to predict."""
        if not isinstance(session, CaseSession) or session is not self.window.session:
            return
        if session.take_cached_predictions():
            self.window.refresh_session()
            if all(m.predicted.all() for m in session.models.values()):
                self.window.cancel_inference()

    def _queue_failed(self, exc: Exception) -> None:
        if not isinstance(exc, SegviewError):
            raise exc
        self._error(str(exc), "Dataset not predicted")

    def _queue_done(self, worker: GeneratorWorker, completed: bool) -> None:
        if worker is not self.queue:
            return
        self.queue = None
        self.panel.queue.hide()
        if self.worklist is not None:
            for case in self.worklist.cases:
                self.panel.update_case(case)
            self.panel.title.setText(self._title())
        self._update_actions()
        self.window.statusBar().showMessage("Every case is predicted" if completed else "Predicting stopped", 5000)
        self.queue_finished.emit(completed)

    # -- the dataset report -------------------------------------------------------------------
    def choose_report_folder(self, held_out: bool = False) -> None:
        start = self.window.start_folder()  # in this dataset
        title = "Folder for the held-out report" if held_out else "Folder for the dataset report"
        folder = QFileDialog.getExistingDirectory(self.window.window(), title, start)
        remember_folder(folder)
        if folder and self._may_replace_report(Path(folder)):
            self.export_report(folder, held_out)

    def _may_replace_report(self, folder: Path) -> bool:
        """Whether a report may go to ``folder``: yes where none is there, else as the person
        answers (default No: an earlier report, of other cases or models, is kept)."""
        there = [name for name in REPORT_FILES if (folder / name).exists()]
        if not there:
            return True
        return QMessageBox.question(
            self.window.window(), "Replace the report?",
            f"{folder} already holds {', '.join(there)}: replace {'it' if len(there) == 1 else 'them'}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes

    def export_report(self, folder, held_out: bool = False) -> None:
        """Score models A and B over the reviewed slices of every case (``held_out``: of the
        held-out cases of the dataset's fixed split only, ``splits.json``, drawn now if it is
        not there) in a worker, the open case saved first when it has unsaved edits; then
        write results.csv, verdict.md, verdict.json and verdict.png into ``folder``."""
        worklist = self.worklist
        if worklist is None:
            return
        if not worklist.checkpoints:
            return self._error("Load checkpoints A and B first (Model > Load checkpoint).", "No models")
        if held_out and worklist.layout != "nnU-Net":
            return self._error("Held-out cases are those of the fixed split of a dataset in the nnU-Net layout "
                               "(splits.json).", "No held-out cases")
        if self._report_stop is not None:
            return self.window.statusBar().showMessage("A dataset report is being written", 4000)
        session = self._current()
        job = None
        if session is not None and session.modified:
            try:
                job = session.save_job()
            except SegviewError as exc:
                self.window.statusBar().showMessage(f"The open case is reported as last saved: {exc}", 8000)
        stop = self._report_stop = threading.Event()
        self.panel.report.start("Held-out report: scoring the reviewed slices of the held-out cases..." if held_out
                                else "Dataset report: scoring the reviewed slices...")
        self._run(_report, worklist, Path(folder), job, stop, held_out,
                  done=lambda paths: self._report_done(session, job, paths),
                  failed=self._report_failed, reports_progress=True, progress=self.panel.report.step)

    def _cancel_report(self) -> None:
        if self._report_stop is not None:
            self._report_stop.set()
            self.panel.report.cancel.setEnabled(False)

    def _report_done(self, session: ReviewSession | None, job, paths: list[Path] | None) -> None:
        self._report_stop = None
        self.panel.report.hide()
        if job is not None and session is not None:
            session.finish_save(job)
            self.window.saved.emit(str(job.path))
        self.show_split()  # a held-out report draws the split when there is none
        if paths is None:
            return self.window.statusBar().showMessage("Dataset report cancelled", 5000)
        self.window.statusBar().showMessage(f"Wrote {', '.join(p.name for p in paths)} to {paths[0].parent}", 8000)
        self.report_written.emit([str(p) for p in paths])

    def _report_failed(self, exc: Exception) -> None:
        self._report_stop = None
        self.panel.report.hide()
        if isinstance(exc, OSError):
            return self._error(str(exc), "Report not written")
        if not isinstance(exc, SegviewError):
            raise exc
        self._error(str(exc), "Report not written")

    # -- plumbing ----------------------------------------------------------------------------
    def eventFilter(self, watched, event) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            # The window waits for the thread pool when it closes: stop what would go on.
            self.cancel_prediction()
            self._cancel_report()
            self.changes_watch.stop()
            self.fine_tuning.cancel()  # the window then waits for it to stop, before its next step
            if self.navigator is not None:
                self.navigator.close()  # the case prefetched closed; one opening, when it is open
        return False

    def _run(self, function: Callable, *args, done: Callable, failed: Callable | None = None,
             reports_progress: bool = False, progress: Callable | None = None) -> None:
        worker = Worker(function, *args, reports_progress=reports_progress)
        self._jobs.add(worker)
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(failed or self._failed)
        worker.signals.progress.connect(progress or self._progress)
        worker.signals.finished.connect(lambda: self._jobs.discard(worker))
        worker.start()

    def _progress(self, done: int, total: int) -> None:
        what = f"Opening {self.opening}" if self.opening else "Opening"
        self.window.statusBar().showMessage(f"{what}: {done} / {total}")

    def _failed(self, exc: Exception) -> None:
        if not isinstance(exc, SegviewError):
            raise exc
        self._error(str(exc))

    def _error(self, message: str, title: str = "Cannot open") -> None:
        self.window.statusBar().showMessage(message, 10000)
        QMessageBox.critical(self.window.window(), title, message)


# -- in workers ------------------------------------------------------------------------------

def _open_worklist(folder: Path, checkpoints: dict[str, Path] | None, progress=None):
    """The worklist of ``folder`` and how the checkpoints chosen fit it (they are read)."""
    worklist = Worklist.open(folder, checkpoints, progress=progress)
    return worklist, worklist.checkpoint_problems()


def _queue(worklist: Worklist, order: list[str], should_stop):
    yield from worklist.prediction_queue(should_stop=should_stop, order=order)


def _report(worklist: Worklist, folder: Path, job, stop: threading.Event, held_out: bool = False,
            progress=None) -> list[Path] | None:
    if job is not None:
        job()
    cases = None
    if held_out:
        from ..ml.data import case_names, fixed_split  # torch: only when asked for

        cases = fixed_split(worklist.folder, case_names(worklist.folder))["val"]

    def step(done: int, total: int, case: str) -> None:
        if progress is not None:
            progress(done, total)

    verdict = reviewed_verdict(worklist.folder, dict(worklist.checkpoints), progress=step, worklist=worklist,
                               should_stop=stop.is_set, cases=cases)
    return None if verdict is None else write_dataset_report(folder, verdict)


# -- the window's menus ----------------------------------------------------------------------

def _menu(window: WorklistHost, name: str) -> QMenu | None:
    """The window's menu with object name ``name`` (``host.FILE_MENU``...), if it has one."""
    return window.menuBar().findChild(QMenu, name)


def _insert_after(menu: QMenu | None, name: str, action: QAction) -> None:
    """Put ``action`` after the item with object name ``name`` of ``menu`` (at its end when
    there is none)."""
    if menu is None:
        return
    actions = menu.actions()
    for n, existing in enumerate(actions):
        if existing.objectName() == name:
            if n + 1 < len(actions):
                menu.insertAction(actions[n + 1], action)
            else:
                menu.addAction(action)
            return
    menu.addAction(action)


def install_worklist(window: WorklistHost) -> WorklistController:
    """Add the worklist to ``window``: File > Open dataset... and Export dataset report...,
    the Worklist menu (Ctrl+N / Ctrl+P: next / previous case) and the dock. Returns its
    controller (``window.worklist_controller``)."""
    return WorklistController(window)


__all__ = ["WorklistPanel", "WorklistController", "install_worklist", "dataset_layout", "SORTS", "COLUMNS"]
