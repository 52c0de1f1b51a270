"""The linked crosshair: one voxel of the volume shown as a crosshair in every view (the
three views of ``T``) and compare pane, each showing the slice through it.

Shift + mouse move over a view, or a click there with the Navigate tool, moves it to the
voxel under the mouse; the other views go to the slices through it. Scrolling a view moves
it along that view's axis (as ITK-SNAP's cursor), so it stays on every slice shown. ``X``
(View > Crosshair) hides or shows it. Where it is shows in the status bar's read-out (as
the voxel under the mouse does) and beside it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QMenu

from .host import VIEW_MENU

if TYPE_CHECKING:
    from .host import ToolHost
    from .slice_view import SliceView

COLOR = (120, 255, 120)
#: Screen pixels the mouse may move between press and release for a click (else a pan).
CLICK_SLOP = 3


class CrosshairController(QObject):
    """Keeps, draws and moves ``window``'s crosshair (see the module)."""

    def __init__(self, window: ToolHost):
        super().__init__(window.workspace)
        self.window = window
        self.point: tuple[int, int, int] | None = None  # numpy (z, y, x)
        self.action = QAction("&Crosshair", self)
        self.action.setCheckable(True)
        self.action.setChecked(True)
        self.action.setShortcut("X")
        self.action.setToolTip("Show the linked crosshair (Shift + mouse move, or a click with Navigate, moves it)")
        self.action.toggled.connect(lambda _: self.draw())
        menu = window.menuBar().findChild(QMenu, VIEW_MENU)
        if menu is not None:
            menu.addAction(self.action)
        else:
            window.addAction(self.action)
        self.label = QLabel()
        window.statusBar().addPermanentWidget(self.label)
        self._pressed: QPointF | None = None
        self._moving = False
        self.lines: dict[SliceView, tuple[pg.InfiniteLine, pg.InfiniteLine]] = {}
        for view in self._views():
            pen = pg.mkPen(COLOR, width=1, style=Qt.PenStyle.DashLine, cosmetic=True)
            pair = (pg.InfiniteLine(angle=90, pen=pen), pg.InfiniteLine(angle=0, pen=pen))
            for line in pair:
                line.setZValue(80)
                line.setVisible(False)
                view.box.addItem(line, ignoreBounds=True)
            self.lines[view] = pair
            view.viewport().installEventFilter(self)
            view.slice_changed.connect(lambda index, view=view: self._scrolled(view, index))
        window.loaded.connect(self._session_shown)

    @property
    def shown(self) -> bool:
        return self.action.isChecked() and self.point is not None

    def set_point(self, voxel) -> None:
        """Move the crosshair to numpy index ``voxel`` (z, y, x; clipped to the volume) and
        every view and pane to the slices through it."""
        volume = self.window.session.volume if self.window.session is not None else None
        if volume is None:
            return
        z, y, x = (int(min(max(round(v), 0), n - 1)) for v, n in zip(voxel, volume.shape))
        self.point = (z, y, x)
        self._moving = True
        try:
            for view in self.window.workspace.viewer.views.values():
                view.go_to(self.point)
            self.window.workspace.compare.set_slice(z)
        finally:
            self._moving = False
        self.draw()
        self.window.workspace.cursor_moved.emit(self.point)  # the read-out shows it

    def draw(self) -> None:
        point = self.point
        for view, (vertical, horizontal) in self.lines.items():
            on = self.action.isChecked() and point is not None and view.volume is not None
            vertical.setVisible(on)
            horizontal.setVisible(on)
            if on:
                x, y = view.xy_of(point)
                vertical.setPos(x)
                horizontal.setPos(y)
        self.label.setText(f"\u271b ({point[2]}, {point[1]}, {point[0]})" if self.shown and point else "")

    def _session_shown(self) -> None:
        self.point = None
        self.draw()

    def _scrolled(self, view: SliceView, index: int) -> None:
        """A view went to another slice: the crosshair follows along its axis."""
        if self._moving or self.point is None or view.volume is None:
            return
        point = list(self.point)
        point[view.normal_axis] = index
        self.set_point(point)

    def _views(self) -> list[SliceView]:
        workspace = self.window.workspace
        return [*workspace.viewer.views.values(), *workspace.compare.panes.values()]

    def _view_of(self, viewport: QObject) -> SliceView | None:
        return next((view for view in self.lines if view.viewport() is viewport), None)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind not in (QEvent.Type.MouseMove, QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonRelease):
            return False
        view = self._view_of(watched)
        if view is None or self.window.session is None:
            return False
        position = event.position()  # type: ignore[attr-defined]
        if kind == QEvent.Type.MouseButtonPress:
            self._pressed = position if event.button() == Qt.MouseButton.LeftButton else None  # type: ignore[attr-defined]
            return False
        if kind == QEvent.Type.MouseMove:
            moving = event.modifiers() & Qt.KeyboardModifier.ShiftModifier and not event.buttons()  # type: ignore[attr-defined]
        else:
            pressed, self._pressed = self._pressed, None
            moving = (pressed is not None and event.button() == Qt.MouseButton.LeftButton  # type: ignore[attr-defined]
                      and self.window.effect.name == "navigate"
                      and (position - pressed).manhattanLength() <= CLICK_SLOP)
        voxel = view.voxel_at_viewport(position) if moving else None
        if voxel is not None:
            self.set_point(voxel)
        return False  # the view still gets the event (the read-out, the pan)


def install_crosshair(window: ToolHost) -> CrosshairController:
    """The linked crosshair of ``window`` (``window.crosshair``)."""
    return CrosshairController(window)
