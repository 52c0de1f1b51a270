"""The worklist in the window: a dataset's cases in a dock, one case at a time on screen.

``install_worklist(window)`` adds File > Open dataset... and File > Export dataset report...,
a Worklist menu (next / previous case, done, flag, predict the dataset) and the dock to a
``MainWindow`` through its public API, and returns the ``WorklistController`` that wires
them to a ``segview.session.Worklist`` (no Qt; every transition of the work is its or its
``CaseSession``'s). The panel only shows the cases and forwards what the user asks.

- A case opens in a worker (``Worklist.session``), then ``window.show_session``. Leaving a
  case saves it into the dataset first when it has unsaved edits (the journal covers them
  until then); a case whose predictions are all in the cache does not run inference again.
- Background prediction of the whole dataset by models A and B (``prediction_queue``) in a
  ``GeneratorWorker``, with progress and Cancel; rows update as cases are cached, and the
  open case takes its predictions when the queue reaches it.
- Next and previous follow the order shown, as it was when the user last sorted, so rows the
  queue updates do not reshuffle under them; choosing a sort again re-sorts.
- Prefetch: while a case is on screen, the next one in the order shown (where Ctrl+N goes)
  is opened in a worker, the same ``Worklist.session`` as any open (its lock and journal
  taken, no status set, nothing written); Ctrl+N then shows it at once, or waits for it when
  it is still opening (never opening it twice). At most one is kept: it is closed, its
  journal deleted (it has no edits), when the next case is another (the case on screen or the
  order changed), the models change, another dataset opens or the window closes.
"""
from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QHeaderView,
                               QInputDialog, QLabel, QMenu, QMessageBox, QProgressBar, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.report import number_text
from ..core.errors import SegviewError
from ..core.journal import crashed_journals, unsaved_edits
from ..session import Case, CaseSession, QueueStep, ReviewSession, Worklist
from ..session.verdict import reviewed_verdict, write_dataset_report
from .workers import GeneratorWorker, Worker

if TYPE_CHECKING:
    from .main_window import MainWindow

#: Sort choices of the panel: (shown text, ``Worklist.sorted`` key).
SORTS = (("Most disputed (A vs B)", "disputed"), ("Most uncertain", "uncertain"), ("Name", "name"),
         ("Status", "status"))
COLUMNS = ("Case", "Status", "Reviewed", "Dice A", "Dice B", "A vs B differ", "Uncertainty",
           "Correction A", "Correction B")
COLUMN_TIPS = ("", "new, in progress, done or flagged (the note in the tooltip)",
               "slices marked reviewed / slices of the image",
               "mean foreground Dice of model A over the reviewed slices, as last saved",
               "mean foreground Dice of model B over the reviewed slices, as last saved",
               "share of voxels where models A and B differ (whole image, from the prediction cache)",
               "mean softmax entropy of A and B (nats; from the prediction cache)",
               "volume where A's prediction had to change to reach the labels (reviewed slices)",
               "volume where B's prediction had to change to reach the labels (reviewed slices)")
STATUS_COLORS = {"done": QColor(60, 160, 60), "flagged": QColor(210, 120, 0), "in progress": QColor(40, 110, 200)}
NAME_ROLE = Qt.ItemDataRole.UserRole


def dataset_layout(folder) -> str | None:
    """"nnU-Net" or "DICOM" when ``folder`` is a dataset ``Worklist.open`` reads, else None;
    nothing is read but the folder's listing. nnU-Net: an ``imagesTr/`` folder. DICOM
    studies: only sub-folders (no files of its own but a DICOMDIR), and either two of them or
    a ``labels/`` folder segview made; a folder holding one series is an image, not a dataset."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "imagesTr").is_dir():
        return "nnU-Net"
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    if any(p.is_file() and p.name.upper() != "DICOMDIR" for p in entries):
        return None
    studies = [p for p in entries if p.is_dir() and p.name != "labels"]
    has_labels = (folder / "labels").is_dir()
    return "DICOM" if studies and (len(studies) >= 2 or has_labels) else None


def case_cells(case: Case) -> list[str]:
    """The texts of a case's row, in ``COLUMNS`` order."""
    status = "cannot open" if case.error else case.status
    return [case.name, status, case.reviewed_text.replace(" slices reviewed", ""),
            number_text(case.dice.get("A", math.nan)), number_text(case.dice.get("B", math.nan)),
            number_text(case.disputed * 100, 1, unit=" %"), number_text(case.uncertainty),
            number_text(case.correction_ml.get("A", math.nan), 2, unit=" mL"),
            number_text(case.correction_ml.get("B", math.nan), 2, unit=" mL")]


class JobRow(QWidget):
    """A label, a progress bar and a Cancel button for one background job."""
    cancel_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancel_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, stretch=1)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)
        self.hide()

    def start(self, text: str) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.cancel.setEnabled(True)
        self.show()

    def step(self, done: int, total: int, text: str | None = None) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        if text is not None:
            self.label.setText(text)


class WorklistPanel(QWidget):
    """Every case of a worklist in a table, in the order of the last sort. Emits what the
    user asks for; the controller does it."""
    open_requested = Signal(str)       # case name
    sort_chosen = Signal(str)          # a Worklist.sorted key, also when chosen again
    done_clicked = Signal()
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
                ("done", "Done", "Mark the selected case done", self.done_clicked),
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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.title)
        layout.addLayout(row)
        layout.addWidget(self.table, stretch=1)
        layout.addWidget(self.queue)
        layout.addWidget(self.report)
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
            status.setToolTip(case.error or case.note or "")
            color = QColor(200, 40, 40) if case.error else STATUS_COLORS.get(case.status)
            status.setForeground(QBrush(color) if color is not None else QBrush())
        name = self.table.item(n, 0)
        if name is not None:
            name.setToolTip(str(case.image))

    def _activated(self, index) -> None:
        item = self.table.item(index.row(), 0)
        if item is not None:
            self.open_requested.emit(str(item.data(NAME_ROLE)))


class WorklistController(QObject):
    """The worklist of a ``MainWindow``: see the module docstring. Signals for tests and
    scripts: ``dataset_opened``, ``case_opened(name)`` (on screen), ``case_failed(message)``,
    ``queue_step(QueueStep)``, ``queue_finished(bool)`` (True: every case predicted),
    ``report_written(list of paths)``, ``case_prefetched(name)`` (the next case is open in
    the background, ready for Ctrl+N: ``prefetched``)."""
    dataset_opened = Signal()
    case_opened = Signal(str)
    case_prefetched = Signal(str)
    case_failed = Signal(str)
    queue_step = Signal(object)
    queue_finished = Signal(bool)
    report_written = Signal(list)

    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.worklist: Worklist | None = None
        self.checkpoints: dict[str, Path] = {}       # wanted for datasets, even before one opens
        self.sort = "name"
        self.queue: GeneratorWorker | None = None
        self.opening: str | None = None               # the case being opened in a worker
        self._leaving: ReviewSession | None = None     # the session on screen meanwhile
        self._report_stop: threading.Event | None = None
        self._jobs: set[Worker] = set()
        self._last_queue_case: str | None = None
        self.prefetch_enabled = True                  # open the next case in the background
        self._prefetch: _Prefetch | None = None        # the next case, opening or open in the background
        self.panel = WorklistPanel()
        self.dock = QDockWidget("Worklist", window)
        self.dock.setObjectName("worklist")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                              | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                              | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)
        self.dock.hide()
        self._build_actions()
        panel = self.panel
        panel.open_requested.connect(self.open_case)
        panel.sort_chosen.connect(self.sort_by)
        panel.next_clicked.connect(self.next_case)
        panel.previous_clicked.connect(self.previous_case)
        panel.done_clicked.connect(self.mark_done)
        panel.flag_clicked.connect(self.flag)
        panel.predict_clicked.connect(self.predict_dataset)
        panel.queue.cancel_clicked.connect(self.cancel_prediction)
        panel.report.cancel_clicked.connect(self._cancel_report)
        window.model_loaded.connect(self._model_loaded)
        window.saved.connect(self._saved)
        window.installEventFilter(self)

    # -- menus --------------------------------------------------------------------------
    def _build_actions(self) -> None:
        window = self.window
        file_menu = _menu(window, "&File")
        self.open_action = QAction("Open data&set...", window)
        self.open_action.setToolTip("A folder in the nnU-Net layout (imagesTr/, labelsTr/) or of DICOM studies")
        self.open_action.triggered.connect(self.choose_dataset)
        self.report_action = QAction("Export &dataset report...", window)
        self.report_action.setToolTip("A and B over the reviewed slices of every case: results.csv, "
                                      "verdict.md, verdict.png")
        self.report_action.triggered.connect(self.choose_report_folder)
        _insert_after(file_menu, "Open &DICOM folder...", self.open_action)
        _insert_after(file_menu, "Export comparison &report...", self.report_action)
        menu = QMenu("&Worklist", window)
        self.next_action = menu.addAction("&Next case", QKeySequence("Ctrl+N"), self.next_case)
        self.previous_action = menu.addAction("&Previous case", QKeySequence("Ctrl+P"), self.previous_case)
        menu.addSeparator()
        self.done_action = menu.addAction("Mark case &done", self.mark_done)
        self.flag_action = menu.addAction("&Flag case...", self.flag)
        menu.addSeparator()
        self.predict_action = menu.addAction("P&redict every case (A and B)", self.predict_dataset)
        self.cancel_action = menu.addAction("&Cancel predicting", self.cancel_prediction)
        menu.addSeparator()
        menu.addAction(self.dock.toggleViewAction())
        model_menu = _menu(window, "&Model")
        if model_menu is not None:
            window.menuBar().insertMenu(model_menu.menuAction(), menu)
        else:
            window.menuBar().addMenu(menu)
        self.menu = menu
        self._update_actions()

    def _update_actions(self) -> None:
        has = self.worklist is not None
        for action in (self.next_action, self.previous_action, self.done_action, self.flag_action,
                       self.predict_action, self.report_action):
            action.setEnabled(has)
        self.cancel_action.setEnabled(self.queue is not None)
        self.panel.set_enabled(has)
        self.panel.buttons["predict"].setEnabled(has and self.queue is None)

    # -- opening a dataset ----------------------------------------------------------------
    def choose_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open dataset (nnU-Net or DICOM studies)")
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
        self._run(Worklist.open, Path(folder).absolute(), wanted or None, done=self._dataset_open,
                  reports_progress=True)
        self.window.statusBar().showMessage(f"Opening dataset {folder}...")

    def _dataset_open(self, worklist: Worklist) -> None:
        self._drop_queue()
        self._drop_prefetch(force=True)
        self.worklist = worklist
        self.checkpoints = dict(worklist.checkpoints) or self.checkpoints
        self.sort = "name"
        self.panel.sort_choice.setCurrentIndex([key for _, key in SORTS].index("name"))
        self._show_rows()
        self.panel.title.setText(self._title())
        self.dock.show()
        self._update_actions()
        self.window.statusBar().showMessage(f"Dataset {worklist.folder.name}: {len(worklist.cases)} cases", 8000)
        self.dataset_opened.emit()
        if len(worklist.checkpoints) == 2:
            self.predict_dataset()

    def _title(self) -> str:
        worklist = self.worklist
        if worklist is None:
            return ""
        counts = {s: sum(c.status == s for c in worklist.cases) for s in ("done", "flagged")}
        models = ", ".join(f"{s}: {p.name}" for s, p in worklist.checkpoints.items()) or \
            "no models (Model > Load checkpoint A / B)"
        read_only = " <b>read-only</b>" if worklist.read_only else ""
        return (f"<b>{worklist.folder.name}</b> ({worklist.layout}, {len(worklist.cases)} cases, "
                f"{counts['done']} done, {counts['flagged']} flagged){read_only}<br>{models}<br>"
                "Enter or double-click opens a case; Ctrl+N / Ctrl+P: next / previous (the case left is saved)")

    def _show_rows(self) -> None:
        """Rows in the current sort order, taken now (a snapshot)."""
        if self.worklist is None:
            return
        self.panel.show_cases(self.worklist.sorted(self.sort), self._current_name())

    def sort_by(self, key: str) -> None:
        """Sort the rows by ``key`` ("disputed", "uncertain", "name", "status") as the
        figures are now; next and previous follow this order until the next sort."""
        self.sort = key
        self.panel.sort_choice.setCurrentIndex([k for _, k in SORTS].index(key))
        self._show_rows()
        self._prefetch_next()  # the next case may be another now

    def _refresh_row(self, name: str) -> None:
        if self.worklist is not None:
            self.panel.update_case(self.worklist.case(name))
            self.panel.title.setText(self._title())

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
        self._drop_queue()  # it predicts for the old checkpoints
        self._drop_prefetch()  # opened with the old ones
        for case in self.worklist.cases:
            self.panel.update_case(case)
        self.panel.title.setText(self._title())
        self._prefetch_next()
        if len(self.checkpoints) == 2:
            self.predict_dataset()

    def _model_loaded(self, slot: str) -> None:
        """Model > Load checkpoint: the window's models are the dataset's."""
        session = self.window.session
        if session is None:
            # The model waits in the window for an image: with a dataset open, that is a case.
            names = self.panel.names()
            if self.worklist is not None and self.opening is None and names:
                self.open_case(self.panel.selected() or names[0])
            return
        paths = {s: m.path for s, m in session.models.items()}
        if self.worklist is None:
            self.checkpoints.update(paths)
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

    def open_case(self, name: str) -> None:
        """Open case ``name`` in a worker and put it on screen; the case on screen is saved
        into the dataset first when it has unsaved edits."""
        worklist = self.worklist
        if worklist is None:
            return
        if self.opening is not None:
            return self.window.statusBar().showMessage(f"Still opening {self.opening}...", 4000)
        if name == self._current_name():
            return self.panel.select(name)
        job = None
        session = self.window.session
        if isinstance(session, CaseSession) and session.modified:
            try:
                job = session.save_job()  # the labels as they are now, written in the worker
            except SegviewError as exc:
                answer = QMessageBox.question(
                    self.window, "Case not saved", f"{exc}\n\nLeave {session.case.name} and drop its unsaved edits?",
                    QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
                if answer != QMessageBox.StandardButton.Discard:
                    return
        self.opening, self._leaving = name, session
        self.panel.select(name)
        self.window.statusBar().showMessage(f"Opening {name}...")
        prefetch = self._prefetch
        if prefetch is not None and prefetch.name == name:  # opened or opening in the background
            prefetch.claim = (session, job)
            if prefetch.ready:
                self._use_prefetch(prefetch)
            return  # else ``_prefetch_done`` shows it when it is open
        self._run(_save_and_open, worklist, name, job, done=lambda result: self._case_open(session, result),
                  failed=self._case_failed, reports_progress=True)

    def _case_failed(self, exc: Exception) -> None:
        name, self.opening = self.opening, None
        saved = getattr(exc, "saved_job", None)
        if saved is not None and self._leaving is not None:  # the case left was saved all the same
            self._leaving.finish_save(saved)
            self.window.saved.emit(str(saved.path))
        self._leaving = None
        if name is not None:
            self._refresh_row(name)
        if not isinstance(exc, SegviewError):
            raise exc
        self.case_failed.emit(str(exc))
        leaving = getattr(exc, "while_saving", None)
        self._error(str(exc), f"{leaving} not saved: {name} not opened" if leaving
                    else f"Cannot open {name}" if name else "Cannot open")

    def _case_open(self, previous: ReviewSession | None, result: tuple) -> None:
        session, job = result
        self.opening, self._leaving = None, None
        window = self.window
        if not window.isVisible():  # the window closed meanwhile: nothing to show it in
            if job is not None and previous is not None:
                previous.finish_save(job)
            session.close(discard=True)
            return
        window.statusBar().clearMessage()  # "Opening ..."
        if job is not None and previous is not None:
            previous.finish_save(job)
            window.saved.emit(str(job.path))
        old = window.session
        if old is not None and old.modified and not self._leave(old):
            session.close(discard=True)  # stay on the case on screen
            self._refresh_row(session.case.name)
            return self._prefetch_next()
        window.discard_session()  # saved above, or nothing unsaved: show_session asks nothing
        window.show_session(session)  # runs inference only on slices the cache did not have
        if window.session is not session:
            return
        self._refresh_row(session.case.name)
        self.panel.select(session.case.name)
        window.statusBar().showMessage(f"Opened {session.case.name}", 4000)
        self.case_opened.emit(session.case.name)
        self._prefetch_next()

    # -- prefetching the next case ----------------------------------------------------------
    @property
    def prefetched(self) -> str | None:
        """The case open in the background, ready for Ctrl+N; None when there is none (yet)."""
        prefetch = self._prefetch
        return prefetch.name if prefetch is not None and prefetch.ready else None

    def set_prefetch(self, on: bool) -> None:
        """Open the next case in the background (on by default); off closes the one there."""
        self.prefetch_enabled = on
        self._prefetch_next()

    def _next_name(self) -> str | None:
        """Where Ctrl+N goes from the case on screen; None after the last, or with no case."""
        names, here = self.panel.names(), self._current_name()
        if here not in names:
            return None
        n = names.index(here) + 1
        return names[n] if n < len(names) else None

    def _prefetch_next(self) -> None:
        """Open the next case in a worker, unless it is already; any other is closed."""
        worklist = self.worklist
        target = self._next_name() if self.prefetch_enabled and worklist is not None else None
        if self._prefetch is not None and self._prefetch.name == target:
            return
        self._drop_prefetch()
        if target is None or worklist is None or self._prefetch is not None or self.opening is not None:
            return  # while a case opens, its own next is prefetched once it is on screen
        prefetch = self._prefetch = _Prefetch(target)
        self._run(_open_prefetch, worklist, prefetch, done=lambda _: self._prefetch_done(prefetch),
                  failed=lambda exc: self._prefetch_failed(prefetch, exc))

    def _drop_prefetch(self, force: bool = False) -> None:
        """Close the case opened in the background (when it arrives, if still opening);
        one Ctrl+N waits for is kept, unless ``force`` (the window closes, another dataset)."""
        prefetch = self._prefetch
        if prefetch is None or (prefetch.claim is not None and not force):
            return
        self._prefetch = None
        prefetch.drop()
        if prefetch.claim is not None:  # it was awaited: nothing is opening any more
            self.opening, self._leaving = None, None

    def _prefetch_done(self, prefetch: _Prefetch) -> None:
        if prefetch is not self._prefetch:
            return  # dropped: closed already
        if not prefetch.ready:  # left to a plain open (edits of a crashed session to offer)
            return self._prefetch_failed(prefetch)
        if prefetch.claim is not None:
            return self._use_prefetch(prefetch)
        self.case_prefetched.emit(prefetch.name)

    def _prefetch_failed(self, prefetch: _Prefetch, exc: Exception | None = None) -> None:
        """The case could not be opened in the background: Ctrl+N opens it as any case."""
        if prefetch is not self._prefetch:
            return
        self._prefetch = None
        if prefetch.claim is None:  # nobody asked for it yet: opening it says why, as for any case
            return self._refresh_row(prefetch.name)
        previous, job = prefetch.claim
        assert self.worklist is not None  # a forced drop would have forgotten the prefetch
        self._run(_save_and_open, self.worklist, prefetch.name, job,
                  done=lambda result: self._case_open(previous, result), failed=self._case_failed,
                  reports_progress=True)

    def _use_prefetch(self, prefetch: _Prefetch) -> None:
        """Show the case opened in the background that open_case asked for: at once when
        nothing is to be saved first and the cache had all its predictions, else after a
        worker saved the case left and took what the cache has gained since."""
        assert prefetch.claim is not None
        previous, job = prefetch.claim
        self._prefetch = None
        session = prefetch.take()
        assert session is not None  # ready
        if job is None and all(m.predicted.all() for m in session.models.values()):
            return self._case_open(previous, (session, None))
        self._run(_save_and_take, session, job, done=lambda result: self._case_open(previous, result),
                  failed=lambda exc: self._take_failed(session, exc))

    def _take_failed(self, session: CaseSession, exc: Exception) -> None:
        """The case left was not saved: it stays on screen, and the next stays ready."""
        prefetch = self._prefetch = _Prefetch(session.case.name)
        prefetch.session = session
        self._case_failed(exc)

    def _leave(self, session: ReviewSession) -> bool:
        """Save ``session`` (edited while the next case opened, or not a case) before it
        goes; True when it may go."""
        if isinstance(session, CaseSession):
            try:
                session.save()
                self.window.saved.emit(str(session.labels_path))
                return True
            except SegviewError as exc:
                answer = QMessageBox.question(
                    self.window, "Case not saved", f"{exc}\n\nLeave it and drop its unsaved edits?",
                    QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel)
                return answer == QMessageBox.StandardButton.Discard
        answer = QMessageBox.question(self.window, "Unsaved labels", "The labels have unsaved changes. Save them?",
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

    def _step(self, step: int) -> None:
        names = self.panel.names()
        if not names:
            return
        here = self._current_name() or self.panel.selected()
        if here not in names:
            return self.open_case(names[0] if step > 0 else names[-1])
        n = names.index(here) + step
        if not 0 <= n < len(names):
            return self.window.statusBar().showMessage("That was the last case" if step > 0
                                                       else "That was the first case", 5000)
        self.open_case(names[n])

    # -- status ----------------------------------------------------------------------------
    def _target(self) -> str | None:
        return self.panel.selected() or self._current_name()

    def mark_done(self) -> None:
        name = self._target()
        if name is not None:
            self.set_status(name, "done")

    def flag(self) -> None:
        """Flag the selected case with a note the user types."""
        name = self._target()
        if name is None or self.worklist is None:
            return
        note, ok = QInputDialog.getText(self.window, f"Flag {name}", "Why (a note for whoever reads it):",
                                        text=self.worklist.case(name).note)
        if ok:
            self.set_status(name, "flagged", note)

    def set_status(self, name: str, status: str, note: str = "") -> None:
        """Set case ``name``'s status, written to its sidecar at once."""
        if self.worklist is None:
            return
        try:
            self.worklist.set_status(name, status, note)
        except SegviewError as exc:
            return self._error(str(exc), "Status not saved")
        self._refresh_row(name)

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
    def choose_report_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Folder for the dataset report")
        if folder:
            self.export_report(folder)

    def export_report(self, folder) -> None:
        """Score models A and B over the reviewed slices of every case (the open case is
        saved first when it has unsaved edits) in a worker, then write results.csv,
        verdict.md and verdict.png into ``folder``."""
        worklist = self.worklist
        if worklist is None:
            return
        if not worklist.checkpoints:
            return self._error("Load checkpoints A and B first (Model > Load checkpoint).", "No models")
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
        self.panel.report.start("Dataset report: scoring the reviewed slices...")
        self._run(_report, worklist, Path(folder), job, stop,
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
            self._drop_prefetch(force=True)
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
        QMessageBox.critical(self.window, title, message)


# -- in workers ------------------------------------------------------------------------------

def _save_left(job) -> None:
    """Run the save ``job`` of the case being left (None: nothing to save); an error says
    which file in ``while_saving``."""
    if job is None:
        return
    try:
        job()
    except Exception as exc:
        exc.while_saving = getattr(job, "path", Path("the case")).name  # type: ignore[attr-defined]
        raise


def _save_and_open(worklist: Worklist, name: str, job, progress=None) -> tuple[CaseSession, object]:
    """The case being left saved (``job``, None if nothing to save), then case ``name``.
    An error says which: ``while_saving`` (the case left), or ``saved_job`` (saved, then
    ``name`` failed)."""
    _save_left(job)
    try:
        return worklist.session(name, progress=progress), job
    except Exception as exc:
        exc.saved_job = job  # type: ignore[attr-defined]
        raise


class _Prefetch:
    """A case opened in the background. Its session is handed over once, under a lock: to
    the controller (``take``), or closed by ``drop``, or by the worker itself when it was
    dropped while opening, so that no session is left open (nor its journal) whatever comes
    first, even when the window is gone before the worker's signal arrives."""

    def __init__(self, name: str):
        self.name = name
        self.session: CaseSession | None = None
        self.claim: tuple[ReviewSession | None, object] | None = None  # (case left, its save job)
        self._dropped = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.session is not None

    def deliver(self, session: CaseSession) -> None:
        """In the worker: keep ``session``, or close it when the prefetch was dropped."""
        with self._lock:
            dropped = self._dropped
            if not dropped:
                self.session = session
        if dropped:
            session.close(discard=True)

    def take(self) -> CaseSession | None:
        with self._lock:
            session, self.session, self._dropped = self.session, None, True
        return session

    def drop(self) -> None:
        """Close the session (no edits: its journal is deleted); one still opening closes
        when it is open."""
        session = self.take()
        if session is not None:
            session.close(discard=True)


def _open_prefetch(worklist: Worklist, prefetch: _Prefetch) -> None:
    """Open the case for ``prefetch``; not one with a crashed session's unsaved edits: opening
    sets those aside, so that one left unused would no longer offer them when opened."""
    key = worklist.case(prefetch.name).key  # known from the cache, or from an earlier open
    if key is not None and crashed_journals(key) and unsaved_edits(key) is not None:
        return
    prefetch.deliver(worklist.session(prefetch.name))


def _save_and_take(session: CaseSession, job) -> tuple[CaseSession, object]:
    """The case being left saved (``job``, None if nothing to save), then ``session`` (opened
    in the background) takes what the cache gained since it opened."""
    _save_left(job)
    session.take_cached_predictions()
    return session, job


def _queue(worklist: Worklist, order: list[str], should_stop):
    yield from worklist.prediction_queue(should_stop=should_stop, order=order)


def _report(worklist: Worklist, folder: Path, job, stop: threading.Event, progress=None) -> list[Path] | None:
    if job is not None:
        job()

    def step(done: int, total: int, case: str) -> None:
        if progress is not None:
            progress(done, total)

    verdict = reviewed_verdict(worklist.folder, dict(worklist.checkpoints), progress=step, worklist=worklist,
                               should_stop=stop.is_set)
    return None if verdict is None else write_dataset_report(folder, verdict)


# -- the window's menus ----------------------------------------------------------------------

def _menu(window, title: str) -> QMenu | None:
    for action in window.menuBar().actions():
        if action.text() == title and action.menu() is not None:
            return action.menu()
    return None


def _insert_after(menu: QMenu | None, text: str, action: QAction) -> None:
    """Put ``action`` after the item ``text`` of ``menu`` (at its end when there is none)."""
    if menu is None:
        return
    actions = menu.actions()
    for n, existing in enumerate(actions):
        if existing.text() == text:
            if n + 1 < len(actions):
                menu.insertAction(actions[n + 1], action)
            else:
                menu.addAction(action)
            return
    menu.addAction(action)


def install_worklist(window: MainWindow) -> WorklistController:
    """Add the worklist to ``window``: File > Open dataset... and Export dataset report...,
    the Worklist menu (Ctrl+N / Ctrl+P: next / previous case) and the dock. Returns its
    controller (``window.worklist_controller``)."""
    return WorklistController(window)


__all__ = ["WorklistPanel", "WorklistController", "install_worklist", "dataset_layout", "SORTS", "COLUMNS"]
