"""Region statistics in the measures dock: for each class of the labels and of each model's
prediction, the voxels, volume (mL) and the mean, SD, median, minimum and maximum of the
image under it (HU for CT), over the slice on screen or the volume.

The figures come from the session (``session.statistics.statistics_rows``), computed in the
thread pool; this module only shows them. It looks every ``POLL_MS`` at what they depend on
(the labels' version, the slice, the models and what they have predicted, the scope) and
recomputes when that changed and the dock is on screen; a result that arrives after a newer
request is dropped. An empty region shows dashes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QGroupBox, QHBoxLayout, QHeaderView, QLabel,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from ..core.errors import SegviewError
from ..core.report import number_text
from ..session.statistics import RegionRow, statistics_rows
from .workers import GeneratorWorker, Worker

if TYPE_CHECKING:
    from .host import ToolHost

#: Column header -> (RegionStatistics field, decimals).
COLUMNS = {"voxels": ("voxels", 0), "mL": ("volume_ml", 2), "mean": ("mean", 1), "SD": ("std", 1),
           "median": ("median", 1), "min": ("min", 1), "max": ("max", 1)}
SCOPES = ("slice on screen", "volume")
POLL_MS = 400


class StatisticsController(QObject):
    """The "Region statistics" box of ``window``'s measures dock (see the module)."""

    def __init__(self, window: ToolHost):
        super().__init__(window.workspace)
        self.window = window
        self.scope = QComboBox()
        self.scope.addItems(list(SCOPES))
        self.scope.setToolTip("Statistics of the slice on screen (its acquired plane) or of the whole volume")
        self.status = QLabel()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        self.box = self._box()
        self.rows: list[RegionRow] = []   # shown, for scripts and tests
        self.shown_for: tuple | None = None  # the state ``rows`` were computed for
        self._wanted: tuple | None = None
        self._worker: GeneratorWorker | None = None
        self._workers: set[GeneratorWorker] = set()
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.scope.currentIndexChanged.connect(lambda _: self.poll())

    def _box(self) -> QGroupBox:
        box = QGroupBox("Region statistics: the image under each class")
        layout = QVBoxLayout(box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Over"))
        row.addWidget(self.scope)
        row.addWidget(self.status, 1)
        layout.addLayout(row)
        layout.addWidget(self.table)
        panel = self.window.measures_controller.panel
        panel_layout = panel.layout()
        assert isinstance(panel_layout, QVBoxLayout)
        panel_layout.insertWidget(panel_layout.count() - 1, box)  # above the panel's closing stretch
        return box

    def state(self) -> tuple | None:
        """What the figures depend on now; None without a session."""
        session = self.window.session
        if session is None:
            return None
        z = self.window.current_slice() if self.scope.currentIndex() == 0 else None
        models = tuple((slot, id(m), int(m.predicted.sum())) for slot, m in sorted(session.models.items()))
        classes = tuple((c.value, c.name) for c in session.classes)
        return id(session), session.version, z, models, classes

    def poll(self) -> None:
        """Recompute when what the figures depend on changed and the dock is on screen."""
        if not self.window.measures_controller.shown:
            return  # each tick: nothing read while the dock is hidden
        state = self.state()
        if state is None or state in (self._wanted, self.shown_for):
            return
        self._wanted = state
        if self._worker is not None:
            self._worker.cancel()
        found: list[RegionRow] = []
        worker = GeneratorWorker(statistics_rows, self.window.session, state[2])
        worker.signals.yielded.connect(found.append)
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda completed: self._done(worker, state, found, completed))
        self._worker = worker
        self._workers.add(worker)
        self.status.setText("computing\u2026")
        Worker.pool().start(worker)

    def _done(self, worker: GeneratorWorker, state: tuple, found: list[RegionRow], completed: bool) -> None:
        self._workers.discard(worker)
        if worker is not self._worker:
            return  # a newer request took its place
        self._worker = None
        if completed and state == self.state():
            self.show(found, state)
        self._wanted = None  # else the next poll asks again

    @staticmethod
    def _failed(exc: Exception) -> None:
        """A model taken away while its rows were counted: the next poll counts again.
        Anything else is a programming error: raised, to surface."""
        if not isinstance(exc, SegviewError):
            raise exc

    def show(self, rows: list[RegionRow], state: tuple) -> None:
        session = self.window.session
        self.rows, self.shown_for = rows, state
        names = {c.value: c.name for c in session.classes} if session is not None else {}
        unit = " (values in HU)" if session is not None and session.volume.modality == "CT" else ""
        where = "volume" if state[2] is None else f"slice {state[2] + 1}"
        self.status.setText(f"{where}{unit}")
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([f"{r.source}  {names.get(r.value, r.value)}" for r in rows])
        for n, row in enumerate(rows):
            for column, (field, digits) in enumerate(COLUMNS.values()):
                value = getattr(row.statistics, field)
                self.table.setItem(n, column, QTableWidgetItem(number_text(value, digits, small=field == "volume_ml")))


def install_statistics(window: ToolHost) -> StatisticsController:
    """The region statistics box in ``window``'s measures dock (``window.statistics_controller``);
    after ``install_measures``."""
    return StatisticsController(window)
