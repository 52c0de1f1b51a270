"""Boundary metrics and clinical measures: a dock beside the metrics panel.

For each model against the labels: HD95 and ASSD (mm) and surface Dice at a tolerance
(mm), per class and their mean, for the slice on screen and for the volume; the class
volumes (mL) of the labels and of each model and their differences, LV and RV blood volume
and myocardial mass for cardiac classes, the infected share of the lungs for lung classes;
and a plot of a chosen metric along the slices (click it to go to a slice).

The figures come from the session (``session.measures``: the count and the scores
``segview evaluate`` and the comparison report use); this module only asks for its jobs,
runs them and shows what they yield. They run in the thread pool
(``workers.SupersedingJobQueue``), so the window never waits on them (a slice's scores take
5 to 40 ms on one core, a volume's seconds): the slice's as soon as it shows or changes,
the volume's and the plot's after edits have paused for ``DEBOUNCE_MS``. Each kind of job
runs one at a time; a newer request cancels the running one and takes its place, and
results computed from labels or predictions that have changed since are dropped.

The volume's boundary metrics are 3D (medpy's and surface-distance's definitions) over the
slices that count: those the model has predicted, and reviewed ones only when "volume over
reviewed slices only" is checked (the metrics panel's switch); volumes and clinical
measures count the same slices for the labels and for every model
(``session.measures.measured_slices``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QHBoxLayout,
                               QHeaderView, QLabel, QSizePolicy, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.classes import MODEL_COLORS, LabelClass
from ..core.labels import Edit, Mark
from ..core.measures import lungs_from_ct_needed
from ..core.metrics import SURFACE_DICE_TOLERANCE_MM, SurfaceScores
from ..core.report import DASH, number_text
from ..session.measures import (dice_along_slices, lung_mask_job, measured_slices,
                                plotted_values, scores_along_slices_job, slice_scores_job, volume_job)
from .widgets import NumberBox, scrolled
from .workers import SupersedingJobQueue

if TYPE_CHECKING:
    from ..session import ReviewSession
    from .host import MeasuresHost

__all__ = ["BOUNDARY_COLUMNS", "DEBOUNCE_MS", "PLOT_METRICS", "MeasuresController", "MeasuresPanel",
           "install_measures"]

#: Boundary column -> (header, SurfaceScores field, digits).
BOUNDARY_COLUMNS = {"HD95": ("HD95\n(mm)", "hausdorff95", 2),
                    "ASSD": ("ASSD\n(mm)", "average_surface_distance", 2),
                    "surface Dice": ("surface\nDice", "surface_dice", 3)}
#: Plot choice -> the key of ``surface_scores_along_slices`` (None: Dice, from the live metrics).
PLOT_METRICS = {"Dice": None, "HD95 (mm)": "hausdorff95", "ASSD (mm)": "average_surface_distance",
                "surface Dice": "surface_dice"}
LOAD_HINT = "Load checkpoints (Model > Load checkpoint A / B) to measure their boundaries against the labels."
#: Quiet time after the last edit before the volume's figures are recomputed.
DEBOUNCE_MS = 500
#: ... but while edits (or streamed predictions) keep coming, at least this often.
MAX_WAIT_MS = 3000


# -- the panel (widgets only; the controller below feeds it) ------------------------------------
class MeasuresPanel(QWidget):
    """Tables of boundary metrics and clinical measures and a plot along the slices. Fed
    by ``MeasuresController``; what it shows is also readable (``shown_*``) for scripts and
    tests."""

    slice_clicked = Signal(int)          # z, from the plot
    tolerance_changed = Signal(float)    # mm
    plot_changed = Signal()              # the plotted metric or class
    reviewed_only_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.hint = QLabel(LOAD_HINT)
        self.hint.setWordWrap(True)
        self.status = QLabel()
        self.tolerance = NumberBox(minimum=0.0, maximum=50.0, singleStep=0.5, decimals=1,
                                        value=SURFACE_DICE_TOLERANCE_MM, suffix=" mm")
        self.tolerance.setToolTip("Surface Dice counts the boundary within this distance of the other as agreeing")
        self.tolerance.setKeyboardTracking(False)  # one recomputation per value, not per digit typed
        self.tolerance.valueChanged.connect(self.tolerance_changed)
        self.reviewed_only = QCheckBox("volume over reviewed slices only", checked=True)
        self.reviewed_only.toggled.connect(self.reviewed_only_changed)
        self.column_choices: dict[str, QCheckBox] = {}
        columns_row = QHBoxLayout()
        columns_row.addWidget(QLabel("Show:"))
        for name in (*BOUNDARY_COLUMNS, "volumes"):
            box = QCheckBox(name, checked=True)
            box.toggled.connect(self._show_columns)
            self.column_choices[name] = box
            columns_row.addWidget(box)
        columns_row.addStretch(1)
        tolerance_row = QHBoxLayout()
        tolerance_row.addWidget(QLabel("Surface Dice tolerance"))
        tolerance_row.addWidget(self.tolerance)
        tolerance_row.addStretch(1)
        self.legend = QLabel("Each cell: the slice on screen above the volume. \u2013: nothing to score; "
                             "\u221e: the class is in only one of them.")
        self.legend.setWordWrap(True)
        self.boundary = self._table()
        self.boundary.setColumnCount(len(BOUNDARY_COLUMNS))
        self.boundary.setHorizontalHeaderLabels([header for header, _, _ in BOUNDARY_COLUMNS.values()])
        self.measures_label = QLabel()
        self.measures_label.setWordWrap(True)
        self.measures = self._table()
        self.plot_choice = QComboBox()
        self.plot_choice.addItems(list(PLOT_METRICS))
        self.plot_class = QComboBox()
        for combo in (self.plot_choice, self.plot_class):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.currentIndexChanged.connect(lambda _: self.plot_changed.emit())
        self.plot_row = QWidget()  # hidden with the plot while there is nothing to plot
        plot_row = QHBoxLayout(self.plot_row)
        plot_row.setContentsMargins(0, 0, 0, 0)
        plot_row.addWidget(QLabel("Along the slices:"))
        plot_row.addWidget(self.plot_choice)
        plot_row.addWidget(self.plot_class)
        plot_row.addStretch(1)
        self.plot = pg.PlotWidget(background="k")  # as the image: the model colours are bright
        self.plot.setMinimumHeight(120)
        self.plot.setMaximumHeight(170)
        self.plot.setLabel("bottom", "slice (1 = first); click: go there")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # Dice 0.5, not 500 "(x0.001)"
        self.plot.addLegend(offset=(-5, 5), brush=(0, 0, 0, 120), labelTextColor="w")  # top right
        self.current = pg.InfiniteLine(angle=90, pen=pg.mkPen((200, 200, 200), style=Qt.PenStyle.DashLine))
        self.plot.addItem(self.current)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.missed: dict[str, pg.ScatterPlotItem] = {}  # slices where a class is in only one: drawn on top
        self.plot.scene().sigMouseClicked.connect(self._plot_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for item in (self.hint, self.status, columns_row, tolerance_row, self.reviewed_only, self.legend,
                     self.boundary, self.measures_label, self.measures, self.plot_row, self.plot):
            if isinstance(item, QHBoxLayout):
                layout.addLayout(item)
            else:
                layout.addWidget(item)
        layout.addStretch(1)
        self.classes: list[LabelClass] = []
        self.slots: list[str] = []
        self._slice: dict[str, SurfaceScores | None] = {}
        self._volume: dict[str, SurfaceScores | None] = {}
        self._measures: dict[str, dict[str, float]] = {}

    @staticmethod
    def _table() -> QTableWidget:
        table = QTableWidget(0, 0)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        table.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        # At least its header and three rows of two lines (the slice above the volume) show:
        # squeezed by the region statistics below, the boundary table showed one row.
        line = table.fontMetrics().height()
        table.setMinimumHeight(2 * line + 10 + 3 * (2 * line + 8))
        return table

    # -- what it shows, for scripts and tests -------------------------------------------
    def shown_slice_scores(self, slot: str) -> SurfaceScores | None:
        """The boundary scores shown for the slice on screen (None: pending or not yet computed)."""
        return self._slice.get(slot)

    def shown_volume_scores(self, slot: str) -> SurfaceScores | None:
        return self._volume.get(slot)

    def shown_measures(self) -> dict[str, dict[str, float]]:
        """{"labels" | slot: {row: value}}: rows "volume <class value>" (mL), "lv", "rv"
        (mL), "mass" (g), "lungs", "infected" (mL), "infected %"."""
        return {column: dict(rows) for column, rows in self._measures.items()}

    def chosen_columns(self) -> list[str]:
        return [name for name, box in self.column_choices.items() if box.isChecked()]

    def plot_metric(self) -> str | None:
        """The key of ``surface_scores_along_slices`` plotted, None for Dice."""
        return PLOT_METRICS[self.plot_choice.currentText()]

    def plot_class_value(self) -> int | None:
        """The class plotted, None for the mean of the classes."""
        return self.plot_class.currentData()

    # -- filling it ---------------------------------------------------------------------
    def set_layout_for(self, classes: list[LabelClass], slots: list[str]) -> None:
        """Rows for ``slots`` x (foreground ``classes`` and their mean); the plot's class choice."""
        classes = [c for c in classes if c.value != 0]
        if [(c.value, c.name) for c in classes] == [(c.value, c.name) for c in self.classes] and slots == self.slots:
            return
        self.classes, self.slots = classes, list(slots)
        rows = [f"{slot}  {name}" for slot in slots for name in [c.name for c in classes] + ["mean"]]
        self.boundary.setRowCount(len(rows))
        self.boundary.setVerticalHeaderLabels(rows)
        chosen = self.plot_class.currentData()
        self.plot_class.blockSignals(True)
        self.plot_class.clear()
        self.plot_class.addItem("mean", None)
        for c in classes:
            self.plot_class.addItem(c.name, c.value)
        found = self.plot_class.findData(chosen)
        self.plot_class.setCurrentIndex(max(found, 0))
        self.plot_class.blockSignals(False)
        for slot in list(self.curves):
            if slot not in slots:
                self.plot.removeItem(self.curves.pop(slot))
                self.plot.removeItem(self.missed.pop(slot))
        self._slice = {s: v for s, v in self._slice.items() if s in slots}
        self._volume = {s: v for s, v in self._volume.items() if s in slots}
        self._show_columns()

    def clear(self) -> None:
        self._slice, self._volume, self._measures = {}, {}, {}
        self.show_boundary()
        self.show_measures({}, "")
        for slot in list(self.curves):
            self.curves[slot].setData([], [])
            self.missed[slot].setData([], [])

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def set_slice_scores(self, scores: dict[str, SurfaceScores | None]) -> None:
        self._slice = dict(scores)
        self.show_boundary()

    def set_volume_scores(self, slot: str, scores: SurfaceScores | None) -> None:
        self._volume[slot] = scores
        self.show_boundary()

    def set_hint(self, text: str | None) -> None:
        """What the panel says while there is nothing to measure (None: how to load checkpoints)."""
        self.hint.setText(text or LOAD_HINT)

    def show_boundary(self) -> None:
        scored = bool(self.slots)
        for widget in (self.legend, self.boundary, self.plot_row, self.plot):
            widget.setVisible(scored)
        self.hint.setVisible(not scored)
        values: list[int | None] = [c.value for c in self.classes] + [None]  # None: the mean
        for r, (slot, value) in enumerate((s, v) for s in self.slots for v in values):
            for col, (_, name, digits) in enumerate(BOUNDARY_COLUMNS.values()):
                lines = [self._score_line(self._slice.get(slot, False), name, value, digits, "pending"),
                         self._score_line(self._volume.get(slot), name, value, digits, "computing\u2026")]
                self._set_cell(self.boundary, r, col, "\n".join(lines))

    @staticmethod
    def _score_line(scores, name: str, value: int | None, digits: int, missing: str) -> str:
        if scores is False:
            return "\u2026"  # not computed yet
        if scores is None:
            return missing
        if value is None:
            return number_text(getattr(scores, f"mean_{name}"), digits)
        values = getattr(scores, name)
        return number_text(values[value], digits) if value < len(values) else DASH

    def show_measures(self, measures: dict[str, dict[str, float]], scope: str) -> None:
        """Rows: each class's volume, then the cardiac or lung measures; columns: the labels,
        each model, and each model minus the labels."""
        self._measures = {column: dict(rows) for column, rows in measures.items()}
        columns = [c for c in ("labels", *self.slots) if c in measures]
        headers = [c if c == "labels" else f"model {c}" for c in columns]
        headers += [f"{c} \u2212\nlabels" for c in columns if c != "labels"]
        names = {f"volume {c.value}": (f"{c.name} (mL)", 1) for c in self.classes}
        names.update({"lv": ("LV blood (mL)", 1), "rv": ("RV blood (mL)", 1), "mass": ("myocardial mass (g)", 1),
                      "lungs": ("lungs (mL)", 1), "infected": ("infected (mL)", 1),
                      "infected %": ("infected (% of lungs)", 1)})
        labels_rows = measures.get("labels", {})
        rows = [key for key in names if key in labels_rows]
        self.measures.setColumnCount(len(headers))
        self.measures.setHorizontalHeaderLabels(headers)
        self.measures.setRowCount(len(rows))
        self.measures.setVerticalHeaderLabels([names[key][0] for key in rows])
        for r, key in enumerate(rows):
            digits = names[key][1]
            cells = [number_text(measures[c].get(key, math.nan), digits, small=True) for c in columns]
            cells += [number_text(measures[c].get(key, math.nan) - labels_rows[key], digits, signed=True, small=True)
                      for c in columns if c != "labels"]
            for col, text in enumerate(cells):
                self._set_cell(self.measures, r, col, text)
        self.measures_label.setText(scope)
        self._show_columns()

    @staticmethod
    def _set_cell(table: QTableWidget, row: int, col: int, text: str) -> None:
        item = table.item(row, col)
        if item is None:
            item = QTableWidgetItem()
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            table.setItem(row, col, item)
        item.setText(text)

    def _show_columns(self) -> None:
        for col, name in enumerate(BOUNDARY_COLUMNS):
            self.boundary.setColumnHidden(col, not self.column_choices[name].isChecked())
        volumes = self.column_choices["volumes"].isChecked()
        self.measures.setVisible(volumes and self.measures.rowCount() > 0)
        self.measures_label.setVisible(volumes)

    def set_current_slice(self, z: int) -> None:
        self.current.setValue(z + 1)

    def set_curve(self, slot: str, values: np.ndarray) -> None:
        """Model ``slot``'s value of the plotted metric on each slice (NaN: a gap; inf: a
        cross at the top, the class is in only one of them)."""
        if slot not in self.curves:
            color = MODEL_COLORS.get(slot, (255, 255, 255))
            self.curves[slot] = self.plot.plot(name=f"model {slot}", pen=pg.mkPen(color, width=2), connect="finite")
            self.missed[slot] = pg.ScatterPlotItem(symbol="x", size=9, pen=pg.mkPen(color), brush=None)
            self.plot.addItem(self.missed[slot])
            legend = self.plot.plotItem.legend
            if legend is not None:  # A above B, whichever model's values came first
                legend.clear()
                for key in sorted(self.curves):
                    legend.addItem(self.curves[key], f"model {key}")
        values = np.asarray(values, float)
        x = np.arange(1, len(values) + 1)
        finite = np.where(np.isfinite(values), values, np.nan)
        self.curves[slot].setData(x, finite)
        infinite = np.isinf(values)
        top = np.nanmax(finite) * 1.1 if np.isfinite(finite).any() else 1.0
        self.missed[slot].setData(x[infinite], np.full(int(infinite.sum()), top))

    def set_plot_label(self, text: str) -> None:
        """The plotted metric's name on the axis; a Dice is drawn on its whole range, 0 to 1."""
        self.plot.setLabel("left", text)
        if "Dice" in text:
            self.plot.setYRange(0, 1.05, padding=0)
        else:
            self.plot.enableAutoRange(axis="y")

    def _plot_clicked(self, event) -> None:
        view = self.plot.getPlotItem().vb
        if not self.curves or not view.sceneBoundingRect().contains(event.scenePos()):
            return
        self.go_to_plot_x(view.mapSceneToView(event.scenePos()).x())

    def go_to_plot_x(self, x: float) -> None:
        """The slice nearest plot position ``x`` (1 = the first slice) is wanted."""
        self.slice_clicked.emit(int(round(x)) - 1)


# -- the controller: the window's session -> jobs -> the panel -------------------------------
@dataclass
class _State:
    """What the controller knows of one session; a new session gets a new one."""
    session: ReviewSession
    generation: int = 0                                   # bumped by every change of labels, marks, predictions
    fingerprint: tuple = ()                               # models, their predicted slices, class count
    predictions: dict[str, np.ndarray] = field(default_factory=dict)       # slot: the array its rows are of
    rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)   # slot: name -> (Z, C)
    known: dict[str, np.ndarray] = field(default_factory=dict)             # slot: (Z,) rows current
    stamps: dict[str, np.ndarray] = field(default_factory=dict)            # slot: (Z,) changes of each slice
    lung_mask: np.ndarray | None = None
    lung_wanted: bool = False
    first_request: float | None = None                     # monotonic time of the oldest unserved change


class MeasuresController(QObject):
    """Wires ``window``'s session to a ``MeasuresPanel`` in its own dock (see the module)."""

    def __init__(self, window: MeasuresHost):
        super().__init__(window.window())
        self.window = window
        self.panel = MeasuresPanel()
        self.dock = QDockWidget("Measures", window.window())  # a tab: a short title (a longer one was cut off)
        self.dock.setObjectName("measures dock")
        # Scrolled, not squeezed: its tables keep their rows, and the docks it shares the
        # side with (the 3D view) never push the window past the screen.
        self.dock.setWidget(scrolled(self.panel))
        features = QDockWidget.DockWidgetFeature
        self.dock.setFeatures(features.DockWidgetMovable | features.DockWidgetFloatable)
        self._place_dock()
        self.state: _State | None = None
        # The slice's scores (milliseconds) on one pool thread, ahead of the window's own
        # jobs; the volume, the plot and the lungs (seconds) one after the other on another,
        # and not while inference runs, so that a thread stays free for opening and loading.
        # Nothing is computed while the dock is hidden (behind the metrics tab): it would
        # only take the processor from scrolling and painting.
        self.slice_jobs = SupersedingJobQueue(("slice",), priority=1,
                                              ready=lambda: self._current() is not None and self.shown)
        self.slow_jobs = SupersedingJobQueue(("volume", "plot", "lung"), ready=lambda: self._current() is not None
                                             and self.window.inference is None and self.shown)
        # One job when scrolling pauses, not one per slice flown past.
        self.slice_timer = QTimer(self, singleShot=True, interval=120)
        self.slice_timer.timeout.connect(self.refresh_slice)
        self.volume_timer = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self.volume_timer.timeout.connect(self.refresh_volume)
        self.panel.slice_clicked.connect(window.workspace.go_to_slice)
        self.panel.tolerance_changed.connect(lambda _: self._changed(all_rows=True))
        self.panel.plot_changed.connect(self.refresh_plot)
        self.panel.reviewed_only_changed.connect(self._reviewed_only_changed)
        window.metrics.reviewed_only.toggled.connect(self._follow_metrics_panel)
        self.panel.reviewed_only.setChecked(window.metrics.reviewed_only.isChecked())
        window.loaded.connect(self.attach)
        window.model_loaded.connect(lambda _: self._poll())
        window.inference_finished.connect(lambda _: self._poll())
        window.session_changed.connect(self._poll)       # models loaded or removed, classes added
        window.predictions_changed.connect(self._poll)   # slices streamed in
        window.workspace.slice_changed.connect(lambda *_: self._slice_moved())
        self._on_screen = False
        self.dock.visibilityChanged.connect(self._visibility_changed)
        self.panel.set_status("")
        self.panel.show_boundary()

    @property
    def shown(self) -> bool:
        """Whether the dock is on screen: not behind the metrics tab, not closed (a tabbed
        dock behind another still says isVisible(); its visibilityChanged tells)."""
        return self._on_screen

    def _visibility_changed(self, visible: bool) -> None:
        self._on_screen = visible
        if visible:
            self._poll(force=True)

    def _place_dock(self) -> None:
        """Tabbed with the metrics panel's dock (the image keeps its width), behind it."""
        window = self.window
        metrics_dock = window.metrics.parentWidget()  # the dock that holds the metrics panel
        if not isinstance(metrics_dock, QDockWidget):
            self.dock.setMinimumWidth(400)
            window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            return
        self.dock.setMinimumWidth(metrics_dock.minimumWidth())
        self.dock.setMaximumWidth(metrics_dock.maximumWidth())
        window.tabifyDockWidget(metrics_dock, self.dock)
        metrics_dock.raise_()

    # -- sessions -----------------------------------------------------------------------
    def attach(self) -> None:
        """A session is on screen: follow it (and let go of the one before)."""
        self.detach()
        session = self.window.session
        if session is None:
            return
        self.state = _State(session)
        session.labels.events.changed.connect(self._labels_changed)
        session.labels.events.marked.connect(self._marks_changed)
        self._poll(force=True)

    def detach(self) -> None:
        """Stop following the session (closed or not: its ``close`` lets go of its own callbacks only)."""
        state, self.state = self.state, None
        self.slice_jobs.cancel()
        self.slow_jobs.cancel()
        for timer in (self.slice_timer, self.volume_timer):
            timer.stop()
        if state is not None:
            events = state.session.labels.events
            events.changed.disconnect(self._labels_changed)
            events.marked.disconnect(self._marks_changed)
        self.panel.clear()
        self.panel.set_status("")

    def _current(self) -> _State | None:
        """The state of the session on screen; None (and let go) once it has gone."""
        state = self.state
        if state is not None and state.session is not self.window.session:
            self.detach()
            return None
        return state

    # -- changes ------------------------------------------------------------------------
    def _labels_changed(self, edit: Edit) -> None:
        state = self.state
        if state is None:
            return
        slices = list(edit.slices)
        for slot, stamps in state.stamps.items():
            stamps[slices] += 1            # a plot job's rows of these slices are stale
            state.known[slot][slices] = False  # and they are computed again
        self._changed()

    def _marks_changed(self, _mark: Mark) -> None:
        if self.panel.reviewed_only.isChecked():
            self._changed()

    def _reviewed_only_changed(self, on: bool) -> None:
        if self.window.metrics.reviewed_only.isChecked() != on:
            self.window.metrics.reviewed_only.setChecked(on)  # one switch, shown in both panels
        self._changed()

    def _follow_metrics_panel(self, on: bool) -> None:
        if self.panel.reviewed_only.isChecked() != on:
            self.panel.reviewed_only.setChecked(on)

    def _changed(self, all_rows: bool = False) -> None:
        """Labels, marks, predictions or the tolerance changed: the slice now, the rest
        after a pause."""
        state = self._current()
        if state is None:
            return
        if not self.shown:  # computed when the dock shows (visibilityChanged)
            for slot, stamps in state.stamps.items():
                stamps += 1
                state.known[slot][:] = False
            return
        state.generation += 1
        if all_rows:
            for slot, stamps in state.stamps.items():
                stamps += 1
                state.known[slot][:] = False
        self.slice_timer.start()
        now = time.monotonic()
        if state.first_request is None:
            state.first_request = now
        if (now - state.first_request) * 1000 < MAX_WAIT_MS or not self.volume_timer.isActive():
            self.volume_timer.start()
        self._show_busy()

    def _slice_moved(self) -> None:
        if self._current() is not None and self.shown:
            self.panel.set_current_slice(self.window.workspace.current_slice())
            self.slice_timer.start()

    def _poll(self, force: bool = False) -> None:
        """The window says models, classes or predicted slices changed: see what (a few (Z,)
        arrays, microseconds) and recompute what that touches."""
        state = self._current()
        if state is None:
            return
        self.slow_jobs.start()  # jobs that waited for inference to end
        session = state.session
        models = session.models
        models_key = (tuple((slot, id(m.prediction), id(m.predicted)) for slot, m in models.items()),
                      session.live.num_classes)
        fingerprint = (models_key, tuple(int(np.count_nonzero(m.predicted)) for m in models.values()))
        if fingerprint == state.fingerprint and not force:
            return
        models_changed = force or not state.fingerprint or models_key != state.fingerprint[0]
        state.fingerprint = fingerprint
        num_slices = session.volume.array.shape[0]
        for slot, model in models.items():
            if models_changed or state.predictions.get(slot) is not model.prediction:
                state.predictions[slot] = model.prediction
                state.rows[slot] = {}
                state.known[slot] = np.zeros(num_slices, bool)
                state.stamps[slot] = np.zeros(num_slices, np.int64)
        for slot in [s for s in state.predictions if s not in models]:
            del state.predictions[slot], state.rows[slot], state.known[slot], state.stamps[slot]
        if models_changed:
            self._show_classes(state)
        self.panel.set_current_slice(self.window.workspace.current_slice())
        self._changed()

    def _show_classes(self, state: _State) -> None:
        """The rows of the classes and models; whether the lungs must be found in the CT
        (its classes name an infection but no lungs). (``session.classes`` may read the
        whole label volume: asked only when models change and before each volume job.)"""
        session = state.session
        classes = session.classes
        self.panel.set_layout_for(classes, list(session.models))
        state.lung_wanted = lungs_from_ct_needed(classes, session.volume.modality)

    # -- the slice on screen ------------------------------------------------------------
    def refresh_slice(self) -> None:
        """Compute the slice on screen's boundary scores of each model (in a worker)."""
        state = self._current()
        if state is None:
            return
        session = state.session
        z = self.window.workspace.current_slice()
        job = slice_scores_job(session, z, self.panel.tolerance.value())
        shown: dict[str, SurfaceScores | None] = {slot: None for slot in session.models}  # None: pending
        if job is None:
            self.panel.set_slice_scores(shown)
            return
        generation = state.generation

        def arrived(value) -> None:
            if self._current() is state and state.generation == generation and value[0] == z:
                self.panel.set_slice_scores({**shown, **value[1]})
                self._show_busy()

        self.slice_jobs.request("slice", job, arrived, on_done=lambda _: self._show_busy(),
                                on_error=partial(self._failed, state, generation))
        self._show_busy()

    # -- the volume -----------------------------------------------------------------------
    def refresh_volume(self) -> None:
        """Recompute the volume's figures (in a worker); a job still running is cancelled."""
        state = self._current()
        if state is None:
            return
        state.first_request = None
        session = state.session
        self._show_classes(state)
        measured, scored = measured_slices(session, self.panel.reviewed_only.isChecked())
        job = volume_job(session, measured, scored, self.panel.tolerance.value(), state.lung_mask)
        generation = state.generation
        total = len(measured)
        scope = (f"Volumes over {int(measured.sum())} of {total} slices ("
                 + ("reviewed" if self.panel.reviewed_only.isChecked() else "all")
                 + (", predicted by every model)" if session.models else ")"))
        if state.lung_wanted and state.lung_mask is None:
            scope += "; the lungs are still being found in the CT"
        for slot in session.models:
            self.panel.set_volume_scores(slot, None)  # "computing..."

        def arrived(value) -> None:
            if self._current() is not state or state.generation != generation:
                return  # the labels changed meanwhile: a newer request is on its way
            kind, payload = value
            if kind == "measures":
                self.panel.show_measures(payload, scope)
            else:
                self.panel.set_volume_scores(*payload)

        self.slow_jobs.request("volume", job, arrived,
                               on_done=lambda _: self._find_lungs(state),
                               on_error=partial(self._failed, state, generation))
        self.refresh_plot()
        self._show_busy()

    def _find_lungs(self, state: _State) -> None:
        """After the volume's first figures (it takes seconds; once per image): the lungs
        of a CT whose classes name an infection but no lungs, for the infected share."""
        if (self._current() is state and state.lung_wanted and state.lung_mask is None
                and not self.slow_jobs.busy("lung")):
            self.slow_jobs.request("lung", lung_mask_job(state.session), partial(self._lung_found, state),
                                   on_error=partial(self._failed, state, None))
        self._show_busy()

    def _lung_found(self, state: _State, mask: np.ndarray) -> None:
        if self._current() is state:
            state.lung_mask = mask
            self._changed()

    # -- the plot -------------------------------------------------------------------------
    def refresh_plot(self) -> None:
        """Draw the chosen metric along the slices; boundary rows not yet current are
        computed in a worker (only the slices edited since, after the first time)."""
        state = self._current()
        if state is None:
            return
        session = state.session
        name, value = self.panel.plot_metric(), self.panel.plot_class_value()
        self.panel.set_plot_label(self.panel.plot_choice.currentText())
        if name is None:
            for slot in session.models:
                self.panel.set_curve(slot, dice_along_slices(session, slot, value))
            self.slow_jobs.cancel("plot")
            return
        for slot in session.models:
            self._draw_rows(state, slot)
        wanted = {slot: np.flatnonzero(m.predicted & ~state.known[slot]) for slot, m in session.models.items()}
        wanted = {slot: z for slot, z in wanted.items() if len(z)}
        if not wanted:
            return
        stamps = {slot: state.stamps[slot].copy() for slot in wanted}
        predictions = {slot: session.models[slot].prediction for slot in wanted}

        def arrived(value) -> None:
            slot, done, rows = value
            if self._current() is not state or state.predictions.get(slot) is not predictions[slot]:
                return
            fresh = done[state.stamps[slot][done] == stamps[slot][done]]  # not edited since
            table = state.rows[slot]
            for key, array in rows.items():
                if key not in table:
                    table[key] = np.full_like(array, np.nan)
                table[key][fresh] = array[fresh]
            state.known[slot][fresh] = True
            self._draw_rows(state, slot)

        job = scores_along_slices_job(session, wanted, self.panel.tolerance.value())
        self.slow_jobs.request("plot", job, arrived, on_done=lambda _: self._show_busy(),
                               on_error=partial(self._failed, state, state.generation))

    def _draw_rows(self, state: _State, slot: str) -> None:
        name, value = self.panel.plot_metric(), self.panel.plot_class_value()
        if name is None:
            return
        table = state.rows.get(slot, {})
        if name not in table:
            self.panel.set_curve(slot, np.full(len(state.known[slot]), np.nan))
            return
        # An edited slice keeps its old value until its new one arrives.
        self.panel.set_curve(slot, plotted_values(table[name], value))

    # -- status ---------------------------------------------------------------------------
    def _show_busy(self) -> None:
        state = self._current()
        busy = state is not None and (self.volume_timer.isActive() or self.slow_jobs.busy())
        self.panel.set_status("computing\u2026" if busy else "")

    def _failed(self, state: _State, generation: int | None, exc: Exception) -> None:
        """A job failed: on labels that have changed since (a torn read), nothing to say;
        otherwise a programming error, raised to surface (as the window does)."""
        if self._current() is not state or (generation is not None and state.generation != generation):
            return
        raise exc


def install_measures(window: MeasuresHost) -> MeasuresController:
    """Add the boundary metrics and measures dock to ``window`` (tabbed with the metrics
    panel) and follow its sessions. Returns the controller (``window.measures_controller``)."""
    return MeasuresController(window)
