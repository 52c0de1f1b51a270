"""One 2D view of a volume: the windowed slice, the label overlay and orientation letters."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal

from ..core.io import LabelClass
from ..core.volume import Volume, window_to_uint8

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def label_lookup_table(classes: list[LabelClass]) -> np.ndarray:
    """256 x 4 uint8 RGBA table: class colours, transparent background and unknowns."""
    table = np.zeros((256, 4), np.uint8)
    for c in classes:
        if c.value != 0 and c.value < 256:
            table[c.value] = (*c.color, 255)
    return table


class SliceView(pg.GraphicsLayoutWidget):
    """Shows slice ``index`` of ``view`` in radiological orientation with true aspect."""

    cursor_moved = Signal(object)  # numpy (z, y, x) index under the mouse, or None
    slice_changed = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground("k")
        self.box = self.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(levels=(0, 255))
        self.label_item = pg.ImageItem(levels=(0, 255))
        self.label_item.setOpacity(0.45)
        self.box.addItem(self.image_item)
        self.box.addItem(self.label_item)
        self.edge_items = {side: pg.TextItem(color=(255, 210, 0), anchor=anchor) for side, anchor in
                           (("left", (0, 0.5)), ("right", (1, 0.5)), ("top", (0.5, 0)), ("bottom", (0.5, 1)))}
        for item in self.edge_items.values():
            item.setParentItem(self.box)
        self.box.sigResized.connect(self._place_edge_labels)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.volume: Volume | None = None
        self.labels: np.ndarray | None = None
        self.view, self.index, self.window = "axial", 0, (0.0, 1.0)

    # -- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume, labels: np.ndarray | None, classes: list[LabelClass]) -> None:
        self.volume, self.labels = volume, labels
        self.orientation = volume.display()
        self.label_item.setLookupTable(label_lookup_table(classes))
        self.set_view(self.view)

    def set_view(self, view: str) -> None:
        self.view = view
        self.index = self.num_slices() // 2
        for side, letter in self.orientation.edge_labels(view).items():
            self.edge_items[side].setText(letter)
        self.redraw()
        self.box.autoRange(padding=0.02)
        self.slice_changed.emit(self.index)

    def num_slices(self) -> int:
        return self.orientation.num_slices(self.volume.shape, self.view) if self.volume else 0

    def set_slice(self, index: int) -> None:
        index = int(np.clip(index, 0, self.num_slices() - 1))
        if index != self.index:
            self.index = index
            self.redraw()
            self.slice_changed.emit(index)

    def set_window(self, center: float, width: float) -> None:
        self.window = (center, width)
        self.redraw()

    def set_label_opacity(self, opacity: float) -> None:
        self.label_item.setOpacity(opacity)

    def redraw(self) -> None:
        if self.volume is None:
            return
        plane = self.orientation.slice(self.volume.array, self.view, self.index)
        self.image_item.setImage(window_to_uint8(plane, *self.window), autoLevels=False, levels=(0, 255))
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        rect = QRectF(0, 0, plane.shape[1] * col_mm, plane.shape[0] * row_mm)
        self.image_item.setRect(rect)
        if self.labels is not None:
            labels = np.ascontiguousarray(self.orientation.slice(self.labels, self.view, self.index))
            self.label_item.setImage(labels, autoLevels=False, levels=(0, 255))
            self.label_item.setRect(rect)
        self.label_item.setVisible(self.labels is not None)

    # -- interaction --------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:
        steps = {Qt.Key_Up: 1, Qt.Key_Down: -1, Qt.Key_PageUp: 10, Qt.Key_PageDown: -10}
        if event.key() in steps and self.volume is not None:
            self.set_slice(self.index + steps[event.key()])
        else:
            super().keyPressEvent(event)

    def _mouse_moved(self, position) -> None:
        if self.volume is None:
            return
        point = self.box.mapSceneToView(position)
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        row, col = int(point.y() // row_mm), int(point.x() // col_mm)
        rows, cols = self.image_item.image.shape
        inside = 0 <= row < rows and 0 <= col < cols
        self.cursor_moved.emit(
            self.orientation.to_voxel(self.view, self.index, row, col, self.volume.shape) if inside else None)

    def _place_edge_labels(self) -> None:
        rect = self.box.boundingRect()
        positions = {"left": (rect.left() + 4, rect.center().y()), "right": (rect.right() - 4, rect.center().y()),
                     "top": (rect.center().x(), rect.top() + 4), "bottom": (rect.center().x(), rect.bottom() - 4)}
        for side, (x, y) in positions.items():
            self.edge_items[side].setPos(x, y)
