"""The Ruler tool's wiring (``effects.Ruler``): the rulers drawn on the planes that hold
them, the line being dragged, and the Rulers panel that lists, finds and deletes them.

The rulers live in the session (``ReviewSession.rulers``, saved in the labels' sidecar);
this module only draws them: a white line with its length in mm beside its end, in every
view and compare pane showing its plane. A double-click on a row of the panel goes to its
slice; Delete (the button or the key) removes the rulers selected.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (QAbstractItemView, QDockWidget, QHBoxLayout, QLabel, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from .effects import Ruler as RulerEffect

if TYPE_CHECKING:
    from ..session.rulers import Ruler
    from .host import ToolHost
    from .slice_view import SliceView

LINE, TEXT = (255, 255, 255), (255, 230, 0)
_PLANES = ("axial", "coronal", "sagittal")  # by the array axis normal to the plane, as acquired


class _ViewRulers:
    """The rulers' line (pairs of points) and their length labels on one view."""

    def __init__(self, view: SliceView):
        self.view = view
        self.lines = pg.PlotCurveItem(pen=pg.mkPen(LINE, width=2, cosmetic=True), connect="pairs")
        self.lines.setZValue(96)
        view.box.addItem(self.lines, ignoreBounds=True)
        self.labels: list[pg.TextItem] = []

    def show(self, segments: list[tuple], lengths: list[float]) -> None:
        """``segments``: ((z, y, x), (z, y, x)) of each ruler on the plane shown; ``lengths``
        mm of the first len(lengths) of them (the rest: the drag in progress, unlabelled)."""
        points = [self.view.xy_of(end) for segment in segments for end in segment]
        self.lines.setData(np.array([p[0] for p in points], float), np.array([p[1] for p in points], float))
        while len(self.labels) < len(lengths):
            label = pg.TextItem(color=TEXT, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 150))  # read over the overlays
            self.view.box.addItem(label, ignoreBounds=True)
            self.labels.append(label)
        for n, label in enumerate(self.labels):
            label.setVisible(n < len(lengths))
            if n < len(lengths):
                label.setText(f"{lengths[n]:.1f} mm")
                label.setPos(*points[2 * n + 1])


class RulerController(QObject):
    """Draws the rulers for ``window`` and keeps its Rulers panel (see the module)."""

    def __init__(self, window: ToolHost):
        super().__init__(window.workspace)
        self.window = window
        self.effect = next(e for e in window.effects if isinstance(e, RulerEffect))
        workspace = window.workspace
        self.drawn = [_ViewRulers(view) for view in workspace.tool_views()]
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Length (mm)", "Plane", "Slice"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.cellDoubleClicked.connect(lambda row, _: self.go_to(row))
        self.table.installEventFilter(self)
        delete = QPushButton("Delete")
        delete.setToolTip("Delete the rulers selected (Delete)")
        delete.clicked.connect(self.delete_selected)
        self.dock = self._dock(delete)
        workspace.stroked.connect(self._stroked)  # after the window gave the drag to the effect
        workspace.slice_changed.connect(lambda *_: self.draw())
        window.loaded.connect(self.refresh)

    def _dock(self, delete: QPushButton) -> QDockWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.addWidget(QLabel("Rulers (L): drag a line in any view. Double-click a row to go to it."))
        layout.addWidget(self.table)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(delete)
        layout.addLayout(buttons)
        dock = QDockWidget("Rulers")
        dock.setObjectName("measurements")
        dock.setWidget(panel)
        metrics = self.window.metrics.parentWidget()  # the dock that holds the metrics panel
        self.window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        if isinstance(metrics, QDockWidget):  # a tab behind the metrics: the image keeps its width
            self.window.tabifyDockWidget(metrics, dock)
            metrics.raise_()
        return dock

    def _stroked(self, phase: str, _at) -> None:
        """The drag drawn as it moves; the panel once it ends (a ruler added). Other tools'
        strokes (every brush move) change no ruler."""
        if self.window.effect is not self.effect:
            return
        if phase == "end":
            self.refresh()
        else:
            self.draw()

    def rulers(self) -> list[Ruler]:
        session = self.window.session
        return session.rulers.all() if session is not None else []

    def refresh(self) -> None:
        """The panel's rows and the drawing, from the session."""
        rulers = self.rulers()
        if self.window.session is not None:
            self.window.setWindowModified(self.window.session.modified)  # a ruler is saved with the labels
        if self.table.rowCount() != len(rulers) or any(
                self.table.item(n, 0).data(Qt.ItemDataRole.UserRole) != r for n, r in enumerate(rulers)):
            self.table.setRowCount(len(rulers))
            for n, ruler in enumerate(rulers):
                cells = (f"{ruler.length_mm:.1f}", _PLANES[ruler.axis], str(ruler.index + 1))
                for column, text in enumerate(cells):
                    item = QTableWidgetItem(text)
                    item.setData(Qt.ItemDataRole.UserRole, ruler)
                    self.table.setItem(n, column, item)
        self.draw()

    def draw(self) -> None:
        rulers = self.rulers()
        start, end = self.effect.start, self.effect.end
        for drawn in self.drawn:
            view = drawn.view
            if view.volume is None or self.window.session is None:
                drawn.show([], [])
                continue
            shown = [r for r in rulers if r.axis == view.normal_axis and r.index == view.index]
            segments = [(r.a, r.b) for r in shown]
            if start is not None and end is not None and start.axis == view.normal_axis and start.index == view.index:
                segments.append((start.zyx, end.zyx))
            drawn.show(segments, [r.length_mm for r in shown])

    def go_to(self, row: int) -> None:
        """Show ruler ``row`` on its slice, in its plane (``Workspace.go_to_plane``)."""
        rulers = self.rulers()
        if 0 <= row < len(rulers):
            ruler = rulers[row]
            self.window.workspace.go_to_plane(tuple(int(round(v)) for v in ruler.a), ruler.axis)

    def delete_selected(self) -> None:
        session = self.window.session
        if session is None:
            return
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        for ruler in [r for n, r in enumerate(self.rulers()) if n in rows]:
            session.rulers.remove(ruler)
        self.refresh()

    def eventFilter(self, watched: QObject, event) -> bool:
        if event.type() == event.Type.KeyPress and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.delete_selected()
            return True
        return False


def install_rulers(window: ToolHost) -> RulerController:
    """The Ruler tool's drawing and the Rulers dock for ``window`` (``window.ruler_controller``)."""
    return RulerController(window)
