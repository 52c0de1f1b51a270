"""The Polygon tool's wiring (``effects.Polygon``): the vertices clicked so far drawn on the
plane that holds them, a double-click or Enter to fill, Esc to cancel.

The effect keeps the vertices (each click of the tool is one); this controller draws them
as a yellow line in every view and pane showing their plane, and closes or cancels the
polygon. A double-click's first click is a vertex like any; its second press (Qt's
double-click event) is taken here before pyqtgraph sees it, so it adds no vertex and does
not move the other views. Choosing another tool or image cancels the polygon.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt

from ..core.errors import SegviewError
from .effects import Polygon, ToolSettings

if TYPE_CHECKING:
    from .host import ToolHost
    from .slice_view import SliceView

CLOSES = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
LINE = (255, 230, 0)


class PolygonController(QObject):
    """Draws, closes and cancels the Polygon tool's polygon for ``window``."""

    def __init__(self, window: ToolHost):
        super().__init__(window.workspace)
        self.window = window
        self.effect = next(e for e in window.effects if isinstance(e, Polygon))
        self.lines: dict[SliceView, pg.PlotCurveItem] = {}
        for view in window.workspace.tool_views():
            line = pg.PlotCurveItem(pen=pg.mkPen(LINE, width=2, cosmetic=True))
            line.setZValue(95)
            view.box.addItem(line, ignoreBounds=True)
            self.lines[view] = line
            view.installEventFilter(self)             # Enter, Esc
            view.viewport().installEventFilter(self)  # the double-click
        window.workspace.stroked.connect(self._stroked)  # after the window gave the click to the effect
        window.workspace.slice_changed.connect(lambda *_: self.draw())
        window.tools.tool_changed.connect(self._tool_chosen)
        window.loaded.connect(self.cancel)

    @property
    def drawing(self) -> bool:
        """A polygon is under way (the tool is on and has a vertex)."""
        return self.window.effect is self.effect and bool(self.effect.vertices)

    def close(self) -> None:
        """Fill the polygon with the chosen class (one undo step); a message when it cannot."""
        session = self.window.session
        if session is None or self.window.read_only_reason() is not None:
            return self.cancel()
        settings = ToolSettings(self.window.tools.active_class(), self.window.tools.radius.value())
        try:
            message = self.effect.close(session, settings)
        except SegviewError as exc:
            message = str(exc)
        self.draw()
        if message:
            self.window.statusBar().showMessage(message, 8000)

    def cancel(self) -> None:
        self.effect.cancel()
        self.draw()

    def _stroked(self, *_) -> None:
        if self.window.effect is self.effect:  # other tools' strokes (every brush move) add no vertex
            self.draw()

    def _tool_chosen(self, name: str) -> None:
        if name != self.effect.name:
            self.cancel()

    def draw(self) -> None:
        """The vertices as an open line (the closing edge is drawn on closing) on each view
        showing their plane."""
        vertices = self.effect.vertices
        for view, line in self.lines.items():
            first = vertices[0] if vertices else None
            if first is None or view.volume is None or view.normal_axis != first.axis or view.index != first.index:
                line.setData([], [])
                continue
            points = [view.xy_of(at.zyx) for at in vertices]
            line.setData([x for x, _ in points], [y for _, y in points])

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if not self.drawing:
            return False
        if kind == QEvent.Type.MouseButtonDblClick and event.button() == Qt.MouseButton.LeftButton:  # type: ignore[attr-defined]
            self.close()
            return True
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and \
                event.key() in (*CLOSES, Qt.Key.Key_Escape):  # type: ignore[attr-defined]
            event.accept()  # Esc cancels the polygon, not inference, while one is drawn
            if kind == QEvent.Type.KeyPress and event.key() in CLOSES:  # type: ignore[attr-defined]
                self.close()
            elif kind == QEvent.Type.KeyPress:
                self.cancel()
            return True
        return False


def install_polygon(window: ToolHost) -> PolygonController:
    """The Polygon tool's controller for ``window`` (``window.polygon_controller``)."""
    return PolygonController(window)
