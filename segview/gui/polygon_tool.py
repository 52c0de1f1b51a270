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

from PySide6.QtCore import QEvent, QObject, Qt

from ..core.errors import SegviewError
from .effects import PlanePoint, Polygon, ToolSettings
from .shape_controller import ShapeController, Zyx, window_effect

if TYPE_CHECKING:
    from .host import ToolHost

CLOSES = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
LINE = (255, 230, 0)


class PolygonController(ShapeController):
    """Draws, closes and cancels the Polygon tool's polygon for ``window``."""

    effect: Polygon

    def __init__(self, window: ToolHost):
        super().__init__(window, window_effect(window, Polygon), LINE)
        for view in self.lines:
            view.installEventFilter(self)             # Enter, Esc
            view.viewport().installEventFilter(self)  # the double-click

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

    def shape_line(self) -> tuple[PlanePoint, list[Zyx]] | None:
        """The vertices as an open line (the closing edge is drawn on closing)."""
        vertices = self.effect.vertices
        return (vertices[0], [at.zyx for at in vertices]) if vertices else None

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
