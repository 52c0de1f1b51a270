"""The ROI tool's wiring (``effects.RegionShape``): the ellipse or rectangle being dragged,
drawn on every view and pane showing its plane, its statistics in a tooltip beside the mouse
while drawing, and, once released, in the status bar (the effect's message) and under the
measures dock's region statistics.

The effect keeps the shape and measures it (``ReviewSession.shape_statistics``); this
controller only draws and shows. The last shape stays drawn until the next one, another
tool or another image.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QLayout, QToolTip

from .effects import PlanePoint, RegionShape

if TYPE_CHECKING:
    from .host import ToolHost
    from .slice_view import SliceView

LINE = (0, 230, 255)
ELLIPSE_POINTS = 96


class RegionShapeController(QObject):
    """Draws the ROI tool's shape for ``window`` and shows its statistics (see the module)."""

    def __init__(self, window: ToolHost, results: QLayout):
        super().__init__(window.workspace)
        self.window = window
        self.effect = next(e for e in window.effects if isinstance(e, RegionShape))
        self.lines: dict[SliceView, pg.PlotCurveItem] = {}
        for view in window.workspace.tool_views():
            line = pg.PlotCurveItem(pen=pg.mkPen(LINE, width=2, cosmetic=True))
            line.setZValue(95)
            view.box.addItem(line, ignoreBounds=True)
            self.lines[view] = line
        self.result = QLabel()  # the last shape's statistics, under the region statistics table
        self.result.setWordWrap(True)
        self.result.setVisible(False)
        results.addWidget(self.result)
        window.workspace.stroked.connect(self._stroked)  # after the window gave the drag to the effect
        window.workspace.slice_changed.connect(lambda *_: self.draw())
        window.tools.tool_changed.connect(self._tool_chosen)
        window.loaded.connect(self.cancel)

    def _stroked(self, phase: str, _at) -> None:
        if self.window.effect is not self.effect:
            return
        self.draw()
        session = self.window.session
        summary = self.effect.summary(session) if session is not None else None
        if phase == "end":
            QToolTip.hideText()
            self.result.setText(f"ROI: {summary}" if summary else "")
            self.result.setVisible(bool(summary))
        elif summary:
            QToolTip.showText(QCursor.pos(), summary)

    def _tool_chosen(self, name: str) -> None:
        if name != self.effect.name:
            self.cancel()

    def cancel(self) -> None:
        self.effect.cancel()
        QToolTip.hideText()
        self.draw()

    def draw(self) -> None:
        """The shape's outline on each view showing its plane."""
        start, end = self.effect.start, self.effect.end
        for view, line in self.lines.items():
            if start is None or end is None or view.volume is None or \
                    view.normal_axis != start.axis or view.index != start.index:
                line.setData([], [])
                continue
            points = [view.xy_of(zyx) for zyx in outline(start, end, self.effect.shape)]
            line.setData([x for x, _ in points], [y for _, y in points])


def outline(start: PlanePoint, end: PlanePoint, shape: str) -> list[tuple[float, float, float]]:
    """The closed outline of the ellipse inscribed in the box of ``start`` and ``end`` (or
    the box) as (z, y, x) indices on their plane."""
    (r0, c0), (r1, c1) = start.point, end.point
    if shape == "rectangle":
        corners = [(r0, c0), (r0, c1), (r1, c1), (r1, c0), (r0, c0)]
    else:
        angle = np.linspace(0, 2 * np.pi, ELLIPSE_POINTS + 1)
        rows = (r0 + r1) / 2 + (r1 - r0) / 2 * np.sin(angle)
        cols = (c0 + c1) / 2 + (c1 - c0) / 2 * np.cos(angle)
        corners = list(zip(rows.tolist(), cols.tolist()))
    return [_zyx(start, row, col) for row, col in corners]


def _zyx(on: PlanePoint, row: float, col: float) -> tuple[float, float, float]:
    """The (z, y, x) index of in-plane point (row, col) on ``on``'s plane."""
    zyx = [row, col]
    zyx.insert(on.axis, float(on.index))
    return zyx[0], zyx[1], zyx[2]


def install_region_shapes(window: ToolHost, results: QLayout) -> RegionShapeController:
    """The ROI tool's controller for ``window`` (``window.roi_controller``); the last shape's
    statistics are shown at the end of ``results`` (the region statistics box)."""
    return RegionShapeController(window, results)
