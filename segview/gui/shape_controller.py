"""What the ROI and Polygon tools' controllers share (``roi_tool``, ``polygon_tool``): the
effect's shape drawn as a line on every view and pane showing its plane, redrawn after the
effect's own strokes and when a view moves to another slice; choosing another tool or image
cancels it. A subclass says which effect, in which colour, and what its line is (``shape_line``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

import pyqtgraph as pg
from PySide6.QtCore import QObject

if TYPE_CHECKING:
    from .effects import Effect, PlanePoint
    from .host import ToolHost
    from .slice_view import SliceView

Zyx = tuple[float, float, float]
EffectKind = TypeVar("EffectKind", bound="Effect")


class ShapeEffect(Protocol):
    """An effect that keeps a shape on one plane until cancelled."""
    name: str

    def cancel(self) -> None: ...


def window_effect(window: ToolHost, kind: type[EffectKind]) -> EffectKind:
    """``window``'s own instance of effect class ``kind``."""
    return next(e for e in window.effects if isinstance(e, kind))


class ShapeController(QObject):
    """Draws ``effect``'s shape for ``window`` as a ``colour`` line (see the module)."""

    def __init__(self, window: ToolHost, effect: ShapeEffect, colour: tuple[int, int, int]):
        super().__init__(window.workspace)
        self.window = window
        self.effect = effect
        self.lines: dict[SliceView, pg.PlotCurveItem] = {}
        for view in window.workspace.tool_views():
            line = pg.PlotCurveItem(pen=pg.mkPen(colour, width=2, cosmetic=True))
            line.setZValue(95)
            view.box.addItem(line, ignoreBounds=True)
            self.lines[view] = line
        window.workspace.stroked.connect(self._stroked)  # after the window gave the stroke to the effect
        window.workspace.slice_changed.connect(lambda *_: self.draw())
        window.tools.tool_changed.connect(self._tool_chosen)
        window.loaded.connect(self.cancel)

    def shape_line(self) -> tuple[PlanePoint, list[Zyx]] | None:
        """A point of the plane the shape lies on and its line's (z, y, x) indices; None
        when there is no shape."""
        raise NotImplementedError

    def draw(self) -> None:
        """The shape's line on each view showing its plane."""
        shape = self.shape_line()
        for view, line in self.lines.items():
            if shape is None or view.volume is None or view.normal_axis != shape[0].axis or \
                    view.index != shape[0].index:
                line.setData([], [])
                continue
            points = [view.xy_of(zyx) for zyx in shape[1]]
            line.setData([x for x, _ in points], [y for _, y in points])

    def cancel(self) -> None:
        self.effect.cancel()
        self.draw()

    def _stroked(self, phase: str, at) -> None:
        if self.window.effect is self.effect:  # other tools' strokes (every brush move) change no shape
            self.draw()

    def _tool_chosen(self, name: str) -> None:
        if name != self.effect.name:
            self.cancel()
