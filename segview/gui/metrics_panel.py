"""Live Dice, IoU and pixel error of each model against the edited labels, and a strip of
each model's Dice along the slices (click it to go to a slice)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QHeaderView, QLabel, QListWidget,
                               QListWidgetItem, QTableWidget,
                               QSizePolicy, QTableWidgetItem, QVBoxLayout, QWidget)

from ..core.classes import MODEL_COLORS, LabelClass
from ..core.compare import rank_slices
from ..core.metrics import Scores
from ..core.live import LiveMetrics
from ..core.report import DASH, number_text

LOAD_HINT = "Load checkpoints (Model > Load checkpoint A / B) to score them against the labels."
EMPTY_LABELS = ("The labels are empty, so each model is scored against nothing (Dice 0). Take a model's "
                "prediction (Edit > Labels from model A / B) or paint, correct it, and mark each slice you "
                "checked reviewed (M).")
REVIEWED_TICK = "\u2713 "   # before a reviewed slice in "Slices to review first"
NOT_REVIEWED = "\u2003 "    # an em space: the numbers of both kinds line up


@dataclass(frozen=True)
class ShownPlane:
    """The slice the active view shows: its view's name, the array axis normal to it (0 z,
    1 y, 2 x) and its index along that axis."""
    view: str
    axis: int
    index: int


class MetricsPanel(QWidget):
    slice_clicked = Signal(int)
    ranking_changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.reviewed = QLabel()
        self.hint = QLabel(LOAD_HINT)
        self.hint.setWordWrap(True)
        self.empty_labels = QLabel(EMPTY_LABELS)  # why every score reads 0 before anything is labelled
        self.empty_labels.setWordWrap(True)
        self.empty_labels.setStyleSheet("color: #b36b00")
        self.reviewed_only = QCheckBox("volume over reviewed slices only", checked=True)
        self.legend = QLabel("Each cell: Dice above IoU. \u2013: nothing to score; pending: not predicted yet.")
        self.legend.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setFocusPolicy(Qt.NoFocus)  # read only: a click keeps the slice keys on the view
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setSizeAdjustPolicy(QAbstractItemView.AdjustToContents)
        self.table.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
        self.plot = pg.PlotWidget(background="k")  # as the image: the model colours are bright
        self.plot.setMaximumHeight(150)
        self.plot.setLabel("left", "Dice")
        self.plot.setLabel("bottom", "slice (1 = first)")
        self.plot.setYRange(0, 1.05)
        self.plot.getAxis("left").enableAutoSIPrefix(False)  # Dice 0.5, not 500 "(x0.001)"
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        # Bottom left: Dice is rarely low there.
        self.plot.addLegend(offset=(5, -5), brush=(0, 0, 0, 120), labelTextColor="w")
        self.current = pg.InfiniteLine(angle=90, pen=pg.mkPen((200, 200, 200), style=Qt.DashLine))
        self.plot.addItem(self.current)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.dots: dict[str, pg.ScatterPlotItem] = {}  # a dot on every slice scored: one alone draws no line
        self.plot.scene().sigMouseClicked.connect(self._plot_clicked)
        self.ranking_choice = QComboBox()
        self.ranking_choice.addItems(["A and B disagree most", "worse model lowest"])
        self.ranking_choice.currentIndexChanged.connect(lambda _: self.ranking_changed.emit())
        self.ranking = QListWidget()
        self.ranking.setMinimumHeight(80)
        self.ranking.itemClicked.connect(self._ranking_clicked)
        self.ranking.currentItemChanged.connect(self._ranking_moved)
        self.ranking_label = QLabel("Slices to review first (D: next most disputed; \u2713 reviewed, listed last)")
        self.ranking_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.reviewed, self.hint, self.empty_labels, self.reviewed_only, self.legend, self.table,
                       self.plot, self.ranking_label, self.ranking_choice):
            layout.addWidget(widget)
        layout.addWidget(self.ranking, stretch=100)  # the list takes what room is left...
        layout.addStretch(1)  # ...or, hidden (one model, none), the space stays below, not between rows
        self.classes: list[LabelClass] = []
        self.refresh(None, 0)  # nothing to score yet: the hint alone

    def set_hint(self, text: str | None) -> None:
        """What the panel says while there is nothing to score (None: how to load checkpoints)."""
        self.hint.setText(text or LOAD_HINT)

    def set_classes(self, classes: list[LabelClass]) -> None:
        self.classes = [c for c in classes if c.value != 0]
        headers = [c.name.replace(" ", "\n", 1) for c in self.classes] + ["mean", "pixel\nerror"]
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)

    def refresh(self, live: LiveMetrics | None, z: int, shown: ShownPlane | None = None) -> None:
        """Everything for slice ``z``: the table (its slice rows ``shown``'s, where a view
        shows another plane), the strip of Dice along the slices, the ranking; without a
        model, the hint instead of empty tables."""
        scored = live is not None and bool(live.matrices)
        for widget in (self.reviewed_only, self.legend, self.table, self.plot):
            widget.setVisible(scored)
        self.hint.setVisible(not scored)
        # A model's counts (rows: the labels' classes, every slice) say it in C x C numbers.
        self.empty_labels.setVisible(scored and not next(iter(live.matrices.values())).counts[1:].any())  # type: ignore[union-attr]
        self.show_scores(live, z, shown)
        self.show_slices(live)
        self.show_ranking(live, z=z)

    def show_scores(self, live: LiveMetrics | None, z: int, shown: ShownPlane | None = None) -> None:
        """Fill the table for the slice on screen (``shown``; None: acquired slice ``z``) and
        the volume, for every model in ``live``. A coronal or sagittal slice's rows are named
        so: a slice row describes the slice the person sees and edits, never another one."""
        keys = sorted(live.matrices) if live else []
        rows = [(key, scope) for key in keys for scope in ("slice", "volume")]
        if "A" in keys and "B" in keys:
            rows += [("B \u2212 A", "slice"), ("B \u2212 A", "volume")]
        plane = shown if shown is not None and shown.axis != 0 else ShownPlane("", 0, z)
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([f"{key} {plane.view} {scope}" if plane.view and scope == "slice"
                                            else f"{key} {scope}" for key, scope in rows])
        by_scope = self._scores(live, plane) if live is not None else {}
        for r, (key, scope) in enumerate(rows):
            found = {k: by_scope[scope, k] for k in (("A", "B") if key not in keys else (key,))}
            scores = {k: v for k, v in found.items() if v is not None}
            if len(scores) < len(found):
                cells = ["pending"] * self.table.columnCount()  # not predicted yet
            elif key in keys:
                cells = self._cells(scores[key])
            else:
                cells = self._difference_cells(scores["A"], scores["B"])
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(r, c, item)
                item.setText(text)
        if live is not None:
            reviewed = live.labels.reviewed
            self.reviewed.setText(f"{int(reviewed.sum())} / {len(reviewed)} slices reviewed")
        self.current.setValue(z + 1)

    def _scores(self, live: LiveMetrics, plane: ShownPlane) -> dict[tuple[str, str], Scores | None]:
        """Each model's scores by (scope, model), each counted once: a sagittal slice is
        counted anew (some milliseconds on a big CT), and B − A reads both models'."""
        reviewed_only = self.reviewed_only.isChecked()
        scores: dict[tuple[str, str], Scores | None] = {}
        for key in live.matrices:
            scores["slice", key] = live.plane_scores(key, plane.axis, plane.index)
            scores["volume", key] = live.volume_scores(key, reviewed_only)
        return scores

    def _cells(self, scores: Scores) -> list[str]:
        """Dice over IoU per class and for the foreground mean, then the pixel error."""
        cells = []
        for c in self.classes:
            dice = scores.dice[c.value] if c.value < len(scores.dice) else float("nan")
            iou = scores.iou[c.value] if c.value < len(scores.iou) else float("nan")
            cells.append(f"{number_text(dice)}\n{number_text(iou)}")
        cells.append(f"{number_text(scores.mean_dice)}\n{number_text(scores.mean_iou)}")
        cells.append(number_text(scores.pixel_error, 4) if scores.voxels else "\u2013")
        return cells

    def _difference_cells(self, a: Scores, b: Scores) -> list[str]:
        """B minus A: Dice / IoU per class and mean, then the pixel error (signed)."""
        cells = []
        for c in self.classes:
            if c.value < len(a.dice) and c.value < len(b.dice):
                dice, iou = b.dice[c.value] - a.dice[c.value], b.iou[c.value] - a.iou[c.value]
                cells.append(f"{number_text(dice, signed=True)}\n{number_text(iou, signed=True)}")
            else:
                cells.append(DASH)
        dice, iou = b.mean_dice - a.mean_dice, b.mean_iou - a.mean_iou
        cells.append(f"{number_text(dice, signed=True)}\n{number_text(iou, signed=True)}")
        cells.append(number_text(b.pixel_error - a.pixel_error, 4, signed=True) if a.voxels else DASH)
        return cells

    def show_slices(self, live: LiveMetrics | None) -> None:
        """The per-slice Dice strip; NaN slices (nothing to score) leave gaps, and a dot marks
        every slice scored (a lesion on one slice alone, between gaps, draws no line)."""
        keys = sorted(live.matrices) if live else []
        if list(self.curves) != keys:  # rebuilt in order: the legend reads A above B whichever loaded first
            for key in list(self.curves):
                self.plot.removeItem(self.curves.pop(key))
                self.plot.removeItem(self.dots.pop(key))
        for key in keys:
            if key not in self.curves:
                colour = MODEL_COLORS.get(key, "w")
                self.curves[key] = self.plot.plot(name=f"model {key}", pen=pg.mkPen(colour, width=2),
                                                  connect="finite")
                self.dots[key] = pg.ScatterPlotItem(size=4, brush=colour, pen=None)
                self.plot.addItem(self.dots[key])
            dice = live.dice_along_slices(key)
            slices = np.arange(1, len(dice) + 1)
            self.curves[key].setData(slices, dice)
            scored = np.isfinite(dice)  # the dots: scored slices only (NaN bounds warn in pyqtgraph)
            self.dots[key].setData(slices[scored], dice[scored])

    def show_ranking(self, live: LiveMetrics | None, limit: int = 20, z: int | None = None) -> list:
        """The slices to review first, as ranked by ``core.compare.rank_slices``: the first
        ``limit`` of those not yet reviewed, then (greyed, with a tick) the first ``limit`` of
        those reviewed, and a line saying how many more there are (a tester's reviewed slices
        went missing under the cut); slice ``z``'s row current (where it is listed), so the
        arrow keys go on from the slice shown."""
        both = live is not None and "A" in live.matrices and "B" in live.matrices
        for widget in (self.ranking_label, self.ranking_choice, self.ranking):
            widget.setVisible(both)
        if live is None or not both:
            return []
        ranks = rank_slices(live, by=("disputed", "worst")[self.ranking_choice.currentIndex()])
        blocker = QSignalBlocker(self.ranking)
        self.ranking.clear()
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        listed = [r for r in ranks if not r.reviewed][:limit] + [r for r in ranks if r.reviewed][:limit]
        for rank in listed:
            item = QListWidgetItem(f"{REVIEWED_TICK if rank.reviewed else NOT_REVIEWED}slice {rank.z + 1}: "
                                   f"{rank.disputed} voxels differ, Dice A {number_text(rank.dice_a)} "
                                   f"B {number_text(rank.dice_b)}")
            item.setData(Qt.ItemDataRole.UserRole, rank.z)
            if rank.reviewed:
                item.setForeground(grey)
                item.setToolTip("Reviewed (M marks and unmarks a slice)")
            self.ranking.addItem(item)
        if not ranks:
            self.ranking.addItem(_empty_ranking_hint(live))
        elif len(listed) < len(ranks):
            self.ranking.addItem(_more_hint(len(ranks) - len(listed),
                                            sum(r.reviewed for r in ranks) - sum(r.reviewed for r in listed)))
        shown = [n for n, rank in enumerate(listed) if rank.z == z]
        self.ranking.setCurrentRow(shown[0] if shown else -1)
        blocker.unblock()
        return ranks

    def _ranking_moved(self, item: QListWidgetItem | None, _previous) -> None:
        """The arrow keys walk the list as clicks do (a rebuild blocks its signals: not a person's)."""
        if item is not None:
            self._ranking_clicked(item)

    def _ranking_clicked(self, item: QListWidgetItem) -> None:
        z = item.data(Qt.ItemDataRole.UserRole)
        if z is not None:  # not the hint of an empty list
            self.slice_clicked.emit(z)

    def _plot_clicked(self, event) -> None:
        point = self.plot.getPlotItem().vb.mapSceneToView(event.scenePos())
        if self.curves:
            self.slice_clicked.emit(int(round(point.x())) - 1)


def _more_hint(left: int, reviewed: int) -> QListWidgetItem:
    """The line under a cut ranking: how many slices it leaves out (``reviewed`` of them
    reviewed), and how to reach them."""
    item = QListWidgetItem(f"... {left} more slice{'s' if left != 1 else ''} not listed"
                           + (f" ({reviewed} reviewed)" if reviewed else "") + ": D goes on down the ranking")
    item.setFlags(Qt.ItemFlag.NoItemFlags)  # not a slice: nothing to select or click
    return item


def _empty_ranking_hint(live: LiveMetrics) -> QListWidgetItem:
    """The one line an empty "Slices to review first" shows, saying why (an empty box did not)."""
    predicted = bool((live.predicted["A"] & live.predicted["B"]).any())
    item = QListWidgetItem("A and B agree on every predicted slice" if predicted
                           else "No slice predicted by both A and B yet")
    item.setFlags(Qt.ItemFlag.NoItemFlags)  # not a slice: nothing to select or click
    return item
