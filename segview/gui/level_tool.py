"""Level tracing's wiring (``effects.LevelTrace``): the outline of the region a click would
fill, drawn as the mouse moves, and the tolerance in the Tools panel.

The region is ``core.labels.traced_level`` of the slice as shown (flips and axis order do
not change which pixels connect), so the outline is exactly what ``LabelMap.fill_level``
fills from that pixel. It is traced again only when the mouse reaches another pixel, the
tolerance changes, or the slice or labels change under it. The tolerance starts at a tenth
of the image's 1st-99th percentile range (HU for CT) when an image is shown.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QRectF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout

from ..core.labels import traced_level
from .effects import LevelTrace
from .slice_view import label_outline
from .widgets import NumberBox

if TYPE_CHECKING:
    from .host import ToolHost
    from .slice_view import SliceView

OUTLINE = (255, 230, 0)


class LevelController(QObject):
    """Draws level tracing's outline for ``window`` and holds its tolerance (see the module)."""

    def __init__(self, window: ToolHost):
        super().__init__(window.workspace)
        self.window = window
        self.effect = next(e for e in window.effects if isinstance(e, LevelTrace))
        self.tolerance = NumberBox(minimum=0.0, maximum=1e5, decimals=1, value=self.effect.tolerance)
        self.tolerance.setToolTip("Level tracing (V): pixels within this of the intensity under the mouse join")
        self.tolerance.valueChanged.connect(self._tolerance_changed)
        row = QHBoxLayout()
        row.addWidget(QLabel("Level tolerance"))
        row.addWidget(self.tolerance)
        layout = window.tools.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertLayout(2, row)  # below the class, radius and policy form
        table = np.zeros((256, 4), np.uint8)
        table[1] = (*OUTLINE, 255)
        self.items: dict[SliceView, pg.ImageItem] = {}
        workspace = window.workspace
        for view in workspace.tool_views():
            item = pg.ImageItem(levels=(0, 255))
            item.setLookupTable(table)
            item.setZValue(94)
            item.setVisible(False)
            view.box.addItem(item, ignoreBounds=True)
            self.items[view] = item
            view.viewport().installEventFilter(self)
        self._traced: tuple | None = None  # (view, slice, row, col, tolerance, labels' version) drawn
        window.tools.tool_changed.connect(lambda _: self.hide())
        workspace.slice_changed.connect(lambda *_: self.hide())
        workspace.stroked.connect(lambda *_: self.hide())  # a fill changed the labels: trace again on moving
        # Set as soon as an image is put on screen, before any question about it (a model of
        # another modality): the tolerance shown meanwhile was the image before's.
        window.session_shown.connect(self._session_shown)

    def hide(self) -> None:
        self._traced = None
        for item in self.items.values():
            item.setVisible(False)

    def _tolerance_changed(self, value: float) -> None:
        self.effect.tolerance = value
        self.hide()

    def _session_shown(self) -> None:
        """A new image's tolerance; the person's stays while its models or classes change."""
        session = self.window.session
        if session is None:
            return
        sample = session.volume.array[::4, ::4, ::4]  # enough for percentiles, at 1/64 of the cost
        low, high = np.percentile(sample, (1, 99)) if sample.size else (0.0, 0.0)
        self.tolerance.setValue(max(round(float(high - low) / 10, 1), 1.0))
        self.hide()

    def trace(self, view: SliceView, row: int, col: int) -> np.ndarray | None:
        """The region (display rows, cols of ``view``'s slice) a click at (row, col) would fill."""
        assert view.volume is not None
        plane = view.orientation.slice(view.volume.array, view.view, view.index)
        return traced_level(plane, (row, col), self.effect.tolerance)

    def _moved(self, view: SliceView, position) -> None:
        session = self.window.session
        if view.volume is None or session is None:
            return
        point = view.viewport_point(position)
        row_mm, col_mm = view.orientation.pixel_spacing(view.view, view.volume.spacing)
        row, col = int(point.y() // row_mm), int(point.x() // col_mm)
        key = (view, view.index, row, col, self.effect.tolerance, session.version)
        if key == self._traced:
            return
        self.hide()
        mask = self.trace(view, row, col)
        if mask is None:
            return
        self._traced = key
        item = self.items[view]
        item.setImage(label_outline(mask.astype(np.uint8)), autoLevels=False, levels=(0, 255))
        item.setRect(QRectF(0, 0, mask.shape[1] * col_mm, mask.shape[0] * row_mm))
        item.setVisible(True)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseMove and self.window.effect is self.effect \
                and not event.buttons():  # type: ignore[attr-defined]
            view = next((v for v in self.items if v.viewport() is watched), None)
            if view is not None:
                self._moved(view, event.position())  # type: ignore[attr-defined]
        return False


def install_level_tracing(window: ToolHost) -> LevelController:
    """Level tracing's outline and tolerance for ``window`` (``window.level_controller``)."""
    return LevelController(window)
