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
from PySide6.QtGui import QCursor
from PySide6.QtWidgets import QLabel, QLayout, QToolTip

from .effects import PlanePoint, RegionShape
from .shape_controller import ShapeController, Zyx, window_effect

if TYPE_CHECKING:
    from .host import ToolHost

LINE = (0, 230, 255)
ELLIPSE_POINTS = 96


class RegionShapeController(ShapeController):
    """Draws the ROI tool's shape for ``window`` and shows its statistics (see the module)."""

    effect: RegionShape

    def __init__(self, window: ToolHost, results: QLayout):
        super().__init__(window, window_effect(window, RegionShape), LINE)
        self.result = QLabel()  # the last shape's statistics, under the region statistics table
        self.result.setWordWrap(True)
        self.result.setVisible(False)
        results.addWidget(self.result)

    def _stroked(self, phase: str, at) -> None:
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

    def cancel(self) -> None:
        """The shape goes (another tool, another image): its statistics go with it."""
        super().cancel()
        QToolTip.hideText()
        self.result.clear()
        self.result.setVisible(False)

    def shape_line(self) -> tuple[PlanePoint, list[Zyx]] | None:
        start, end = self.effect.start, self.effect.end
        if start is None or end is None:
            return None
        return start, outline(start, end, self.effect.shape)


def outline(start: PlanePoint, end: PlanePoint, shape: str) -> list[Zyx]:
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


def _zyx(on: PlanePoint, row: float, col: float) -> Zyx:
    """The (z, y, x) index of in-plane point (row, col) on ``on``'s plane."""
    zyx = [row, col]
    zyx.insert(on.axis, float(on.index))
    return zyx[0], zyx[1], zyx[2]


def install_region_shapes(window: ToolHost, results: QLayout) -> RegionShapeController:
    """The ROI tool's controller for ``window`` (``window.roi_controller``); the last shape's
    statistics are shown at the end of ``results`` (the region statistics box)."""
    return RegionShapeController(window, results)
