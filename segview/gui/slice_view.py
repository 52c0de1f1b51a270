"""One 2D view of a volume: the windowed slice, label overlays and orientation letters.

Mouse: the wheel steps through slices (with Ctrl or Cmd it zooms, as does a pinch),
a right-drag sets window (horizontal) and level (vertical), a left or middle drag pans,
a double-click asks the other views to go to that point. With a brush tool on, a left
click or drag is a stroke instead (the view reports it; the window edits the labels), and
a right click (no drag) is reported as a stroke of phase "right" (the Click tool removes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtWidgets import QGraphicsEllipseItem

from ..core.classes import LabelClass
from ..core.volume import Volume, window_to_uint8

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def single_color_lookup_table(classes: list[LabelClass], color) -> np.ndarray:
    """Every class of ``classes`` in one ``color``: a model's outline, told apart from the
    other model's by colour while the filled labels keep the class colours."""
    table = np.zeros((256, 4), np.uint8)
    for c in classes:
        if c.value != 0 and c.value < 256:
            table[c.value] = (*color, 255)
    return table


def label_lookup_table(classes: list[LabelClass]) -> np.ndarray:
    """256 x 4 uint8 RGBA table: class colours, transparent background and unknowns."""
    table = np.zeros((256, 4), np.uint8)
    for c in classes:
        if c.value != 0 and c.value < 256:
            table[c.value] = (*c.color, 255)
    return table


def label_outline(plane: np.ndarray) -> np.ndarray:
    """The labels of ``plane`` (rows, columns) kept only on their boundary: pixels with a
    4-neighbour of another value (or on the image edge), others 0. C-contiguous uint8."""
    edge = np.zeros(plane.shape, bool)
    edge[:1], edge[-1:], edge[:, :1], edge[:, -1:] = True, True, True, True
    vertical = plane[1:] != plane[:-1]
    horizontal = plane[:, 1:] != plane[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return np.ascontiguousarray(np.where(edge, plane, 0).astype(np.uint8, copy=False))


@dataclass
class Overlay:
    """A label volume drawn over the image: edited labels or a model's prediction; or a
    function (view, index) -> plane computed when drawn (e.g. A/B disagreement)."""
    labels: np.ndarray | Callable | None   # (z, y, x) uint8 on the image grid
    lookup_table: np.ndarray        # from label_lookup_table
    visible: bool = True
    outline: bool = False
    outline_table: np.ndarray | None = None  # drawn as an outline: this table, if given


class SliceViewBox(pg.ViewBox):
    """The ViewBox with a radiology viewer's mouse (see the module docstring)."""

    wheel_scrolled = Signal(int)              # +1 / -1 slices
    window_dragged = Signal(float, float)     # screen pixels moved right, up
    double_clicked = Signal(object)           # the point in view coordinates (mm)
    stroked = Signal(str, object, object)     # "start" | "move" | "end" | "right", point (mm), modifiers

    def __init__(self):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self._wheel_rest = 0
        self.painting = False  # left button strokes instead of panning

    def wheelEvent(self, event, axis=None):
        if event.modifiers() & (Qt.ControlModifier | Qt.MetaModifier):
            return super().wheelEvent(event, axis)
        event.accept()
        self._wheel_rest += event.delta()  # trackpads send small steps: add up to a notch
        steps = int(self._wheel_rest / 120)
        self._wheel_rest -= steps * 120
        if steps:
            self.wheel_scrolled.emit(steps)

    def mouseDragEvent(self, event, axis=None):
        if self.painting and event.button() == Qt.LeftButton:
            event.accept()
            if event.isStart():  # the drag is recognised a few pixels after the press
                self.stroked.emit("start", self.mapSceneToView(event.buttonDownScenePos()), event.modifiers())
            phase = "end" if event.isFinish() else "move"
            self.stroked.emit(phase, self.mapSceneToView(event.scenePos()), event.modifiers())
        elif event.button() == Qt.RightButton:
            event.accept()
            delta = event.screenPos() - event.lastScreenPos()
            self.window_dragged.emit(delta.x(), -delta.y())
        else:
            super().mouseDragEvent(event, axis)

    def mouseClickEvent(self, event):
        if self.painting and event.button() == Qt.LeftButton:  # a click is a one-dab stroke
            event.accept()
            point = self.mapSceneToView(event.scenePos())
            self.stroked.emit("start", point, event.modifiers())
            self.stroked.emit("end", point, event.modifiers())
        elif self.painting and event.button() == Qt.RightButton:  # a right click: for the tools that take one
            event.accept()
            self.stroked.emit("right", self.mapSceneToView(event.scenePos()), event.modifiers())
        else:
            super().mouseClickEvent(event)

    def mouseDoubleClickEvent(self, event):
        event.accept()
        self.double_clicked.emit(self.mapSceneToView(event.scenePos()))


class _Dots(pg.ScatterPlotItem):
    """Markers that let every click through to the view (a click on a dot is one on the image)."""

    def mouseClickEvent(self, ev):
        ev.ignore()


#: The notice on a slice the series did not have (filled in by interpolation).
INTERPOLATED_COLOR = "#ff5a3c"
#: Planes tilted at least this far (degrees) from the patient axis their view is named by say
#: so in the title: a degree or two is a scanner's rounding, or a CT's small gantry tilt.
OBLIQUE_DEGREES = 3.0


class SliceView(pg.GraphicsLayoutWidget):
    """Shows slice ``index`` of one ``view`` (axial, coronal or sagittal) of a volume in
    radiological orientation with true aspect ratio, with named overlays on top."""

    cursor_moved = Signal(object)   # numpy (z, y, x) index under the mouse, or None
    slice_changed = Signal(int)
    window_changed = Signal(float, float)  # center, width, after a right-drag
    go_to_voxel = Signal(object)   # numpy (z, y, x) index double-clicked
    stroked = Signal(str, object, object)  # phase, numpy (z, y, x) float index, modifiers

    def __init__(self, view: str = "axial", parent=None):
        super().__init__(parent)
        self.setBackground("k")
        self.box = SliceViewBox()
        self.addItem(self.box)
        self.image_item = pg.ImageItem(levels=(0, 255))
        self.box.addItem(self.image_item)
        self.overlays: dict[str, Overlay] = {}
        self.overlay_items: dict[str, pg.ImageItem] = {}
        self.opacity = 0.45
        # On a dark plate: read over bright anatomy too, when zoomed in.
        plate = pg.mkBrush(0, 0, 0, 150)
        self.edge_items = {side: pg.TextItem(color=(255, 210, 0), anchor=anchor, fill=plate) for side, anchor in
                           (("left", (0, 0.5)), ("right", (1, 0.5)), ("top", (0.5, 0)), ("bottom", (0.5, 1)))}
        for item in self.edge_items.values():
            item.setParentItem(self.box)
        self.title = pg.TextItem(color=(200, 200, 200), anchor=(0, 0), fill=plate)
        self.title.setParentItem(self.box)
        self.box.sigResized.connect(self._place_edge_labels)
        # A zoom carried from another view (set_zoom) holds while the layout settles, until
        # the user zooms or pans.
        self._kept_zoom: tuple[tuple[float, float], float] | None = None
        self.box.sigResized.connect(lambda: self._kept_zoom is not None and self._show_zoom(self._kept_zoom))
        self.box.sigRangeChangedManually.connect(lambda *_: setattr(self, "_kept_zoom", None))
        self.box.wheel_scrolled.connect(lambda steps: self.set_slice(self.index + steps))
        self.box.window_dragged.connect(self._drag_window)
        self.box.double_clicked.connect(self._double_clicked)
        self.box.stroked.connect(self._stroked)
        self.brush_cursor = QGraphicsEllipseItem()
        self.brush_cursor.setPen(pg.mkPen((255, 255, 0), width=1, cosmetic=True))
        self.brush_cursor.setVisible(False)
        self.brush_cursor.setZValue(100)
        self.box.addItem(self.brush_cursor, ignoreBounds=True)
        self.brush_radius_mm: float | None = None
        self.markers: list[tuple[tuple[int, ...], tuple[int, ...]]] = []  # ((z, y, x), (r, g, b)): set_markers
        self.marker_item = _Dots(size=9, pxMode=True, pen=pg.mkPen((0, 0, 0), width=1))
        self.marker_item.setZValue(90)
        self.box.addItem(self.marker_item, ignoreBounds=True)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.grabGesture(Qt.GestureType.PinchGesture)
        self.volume: Volume | None = None
        self.view: str = view
        self._tilt_line = ""  # the title's "oblique N°" line, set with the volume (``_tilt_line_of``)
        self.index: int = 0
        self.window: tuple[float, float] = (0.0, 1.0)
        self._needs_fit = False
        self._mouse_at = None  # the last mouse position, in view coordinates (mm)

    # -- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume) -> None:
        """Show ``volume`` at its middle slice, fitted to the view; overlays are dropped."""
        self.volume = volume
        self.orientation = volume.display()
        self._tilt_line = self._tilt_line_of(volume)
        for name in list(self.overlays):
            self.remove_overlay(name)
        for side, letter in self.orientation.edge_labels(self.view).items():
            self.edge_items[side].setText(letter)
        self.index = self.num_slices() // 2
        self.redraw()
        self.fit()
        self.slice_changed.emit(self.index)

    def show_nothing(self) -> None:
        """No image: the preview of an image that then failed to open goes. (Not ``clear``:
        pyqtgraph's GraphicsLayoutWidget binds that name to emptying its layout.)"""
        self.volume = None
        for name in list(self.overlays):
            self.remove_overlay(name)
        self.image_item.clear()
        for item in (*self.edge_items.values(), self.title):
            item.setText("")
        self.markers = []
        self._draw_markers()

    def set_overlay(self, name: str, overlay: Overlay) -> None:
        """Add or replace the overlay ``name``; overlays draw in the order they were added."""
        if name not in self.overlay_items:
            item = pg.ImageItem(levels=(0, 255))
            self.box.addItem(item)
            self.overlay_items[name] = item
        self.overlays[name] = overlay
        self.overlay_items[name].setLookupTable(overlay.lookup_table)
        self.redraw_overlay(name)

    def remove_overlay(self, name: str) -> None:
        self.overlays.pop(name, None)
        item = self.overlay_items.pop(name, None)
        if item is not None:
            self.box.removeItem(item)

    def set_opacity(self, opacity: float) -> None:
        """Opacity of filled overlays; outlines are always opaque (they are thin)."""
        self.opacity = opacity
        for name, item in self.overlay_items.items():
            item.setOpacity(1.0 if self.overlays[name].outline else opacity)

    def num_slices(self) -> int:
        return self.orientation.num_slices(self.volume.shape, self.view) if self.volume else 0

    def shows_any(self, z_indices) -> bool:
        """Whether the slice on screen contains any of the axial slices ``z_indices``."""
        if self.volume is None:
            return False
        axis = self.orientation.axes(self.view)[0]
        return axis != 0 or self.index in z_indices  # a range, set or list: no copy

    def set_slice(self, index: int) -> None:
        index = int(np.clip(index, 0, max(self.num_slices() - 1, 0)))
        if index != self.index:
            self.index = index
            self.redraw()
            self.slice_changed.emit(index)
            if self._mouse_at is not None and self.underMouse():  # the read-out follows the scroll
                self.cursor_moved.emit(self.voxel_under_mouse())

    def set_window(self, center: float, width: float) -> None:
        self.window = (float(center), max(float(width), 1.0))
        self.redraw_image()

    def fit(self) -> None:
        """Zoom and pan so the whole slice fills the view."""
        self._kept_zoom = None
        self._needs_fit = not self.isVisible() or self.image_item.image is None
        if not self._needs_fit:
            self.box.autoRange(padding=0.02)

    def zoom(self) -> tuple[tuple[float, float], float] | None:
        """What the view shows: (its centre (x, y) in mm, mm per screen pixel); None when it
        shows the whole slice (fitted, or waiting to be)."""
        if self._needs_fit or self.volume is None or self.image_item.image is None:
            return None
        (x0, x1), (y0, y1) = self.box.viewRange()
        rows, cols = self.image_item.image.shape
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        if x0 <= 0.5 * col_mm and x1 >= (cols - 0.5) * col_mm and y0 <= 0.5 * row_mm and y1 >= (rows - 0.5) * row_mm:
            return None
        return ((x0 + x1) / 2, (y0 + y1) / 2), self.box.viewPixelSize()[0]

    def set_zoom(self, zoom: tuple[tuple[float, float], float] | None) -> None:
        """Show ``zoom`` (as ``zoom`` returns it: the same centre and magnification, whatever
        this view's size; kept when the view is resized, until the user zooms or pans);
        None: the whole slice."""
        self._kept_zoom = zoom
        if zoom is None:
            return self.fit()
        self._show_zoom(zoom)

    def _show_zoom(self, zoom: tuple[tuple[float, float], float]) -> None:
        (x, y), mm = zoom
        half_width, half_height = self.box.width() * mm / 2, self.box.height() * mm / 2
        self._needs_fit = False
        self.box.setRange(xRange=(x - half_width, x + half_width), yRange=(y - half_height, y + half_height),
                          padding=0)

    # -- drawing (hidden views draw when they are shown) --------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.redraw()
        if self._needs_fit:
            self.fit()

    def redraw(self) -> None:
        self.redraw_image()
        for name in self.overlays:
            self.redraw_overlay(name)
        self._draw_markers()

    def set_markers(self, markers) -> None:
        """Small dots of a fixed size on screen at the voxels of ``markers`` (((z, y, x),
        (r, g, b)), ...), each on the slice of this view that holds it: the Click tool's clicks."""
        self.markers = [(tuple(int(v) for v in voxel), tuple(int(c) for c in color)) for voxel, color in markers]
        self._draw_markers()

    def _draw_markers(self) -> None:
        if self.volume is None or not self.markers:
            self.marker_item.setData([], [])
            return
        axis = self.orientation.axes(self.view)[0]
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        spots = []
        for voxel, color in self.markers:
            if voxel[axis] == self.index:
                row, col = self.orientation.to_display(self.view, voxel, self.volume.shape)
                spots.append({"pos": ((col + 0.5) * col_mm, (row + 0.5) * row_mm), "brush": pg.mkBrush(*color)})
        self.marker_item.setData(spots)

    def redraw_image(self) -> None:
        if self.volume is None or not self.isVisible():
            return
        plane = self.orientation.slice(self.volume.array, self.view, self.index)
        grey = window_to_uint8(plane, *self.window)
        if self.volume.meta.get("photometric_interpretation") == "MONOCHROME1":  # lowest value white
            np.subtract(255, grey, out=grey)
        self.image_item.setImage(grey, autoLevels=False, levels=(0, 255))
        self.image_item.setRect(self._rect(plane.shape))
        # the window on a line of its own: in the narrow views of T it ran past the edge, and
        # "L -600" read "L -6" there, a wrong number rather than a shortened one
        title = (f"{self.view}  {self.index + 1} / {self.num_slices()}{self._tilt_line}"
                 f"<br>W {self.window[1]:.0f}  L {self.window[0]:.0f}")
        if self.interpolated():  # short lines of their own, in red: a narrow view must not cut them off
            title += f'<br><b style="color:{INTERPOLATED_COLOR}">INTERPOLATED slice<br>do not measure</b>'
        self.title.setHtml(title)
        self._fit_title()

    def _tilt_line_of(self, volume: Volume) -> str:
        """How far the view's planes lie from the plane it is named by, where the grid is
        oblique (a line of its own: the narrow views of T): two testers read a short-axis
        cardiac stack, shown in the view of the nearest plane, as a coronal acquisition."""
        tilt = volume.tilt_degrees(self.orientation.axes(self.view)[0])
        return f"<br>oblique {tilt:.0f}\u00b0" if tilt >= OBLIQUE_DEGREES else ""

    def interpolated(self) -> bool:
        """Whether the slice shown was filled in by interpolation (a missing slice of the
        series, ``meta["interpolated_slices"]``), not acquired."""
        return (self.volume is not None and self.normal_axis == 0
                and self.index in self.volume.meta.get("interpolated_slices", ()))

    def redraw_overlay(self, name: str) -> None:
        overlay, item = self.overlays[name], self.overlay_items[name]
        if not self.isVisible():
            return
        item.setVisible(overlay.visible and overlay.labels is not None and self.volume is not None)
        if not item.isVisible():
            return
        labels = overlay.labels
        assert labels is not None  # the item is hidden otherwise
        plane = labels(self.view, self.index) if callable(labels) else self.orientation.slice(labels, self.view,
                                                                                              self.index)
        plane = label_outline(plane) if overlay.outline else np.ascontiguousarray(plane)
        table = overlay.outline_table if overlay.outline and overlay.outline_table is not None else overlay.lookup_table
        item.setLookupTable(table)
        item.setOpacity(1.0 if overlay.outline else self.opacity)
        item.setImage(plane, autoLevels=False, levels=(0, 255))
        item.setRect(self._rect(plane.shape))

    def _rect(self, shape) -> QRectF:
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        return QRectF(0, 0, shape[1] * col_mm, shape[0] * row_mm)

    # -- interaction --------------------------------------------------------------------
    def keyPressEvent(self, event) -> None:
        steps = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10}
        if event.key() in steps and self.volume is not None:
            self.set_slice(self.index + steps[event.key()])
        elif event.key() == Qt.Key.Key_Home and self.volume is not None:
            self.set_slice(0)
        elif event.key() == Qt.Key.Key_End and self.volume is not None:
            self.set_slice(self.num_slices() - 1)
        else:
            super().keyPressEvent(event)

    def event(self, event) -> bool:
        # Trackpad pinch: macOS sends native zoom gestures, other platforms QPinchGesture.
        if event.type() == QEvent.Type.NativeGesture and event.gestureType() == Qt.NativeGestureType.ZoomNativeGesture:
            factor = 1 / (1 + event.value())
            self.box.scaleBy((factor, factor))
            return True
        if event.type() == QEvent.Type.Gesture and (pinch := event.gesture(Qt.GestureType.PinchGesture)) is not None:
            factor = 1 / max(pinch.scaleFactor(), 1e-3)
            self._kept_zoom = None
            self.box.scaleBy((factor, factor))
            return True
        return super().event(event)

    def _drag_window(self, right: float, up: float) -> None:
        center, width = self.window
        step = max(width, 1.0) / 256  # the same feel at every window width
        if self.volume is not None and self.volume.meta.get("photometric_interpretation") == "MONOCHROME1":
            up = -up  # its grey scale is inverted: the hand must move the screen the same way (level stays in HU)
        self.set_window(center + up * step, width + right * step)
        self.window_changed.emit(*self.window)

    def _voxel_at(self, point) -> tuple[int, int, int] | None:
        """The numpy (z, y, x) index under view point ``point`` (mm), or None outside."""
        if self.volume is None or self.image_item.image is None:
            return None
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        row, col = int(point.y() // row_mm), int(point.x() // col_mm)
        rows, cols = self.image_item.image.shape
        if not (0 <= row < rows and 0 <= col < cols):
            return None
        return self.orientation.to_voxel(self.view, self.index, row, col, self.volume.shape)

    def viewport_point(self, position) -> QPointF:
        """The view point (mm) at ``position`` of the viewport: a mouse event's, taken by an
        event filter before the scene has seen it."""
        return self.box.mapSceneToView(self.mapToScene(position.toPoint()))

    def voxel_at_viewport(self, position) -> tuple[int, int, int] | None:
        """The numpy (z, y, x) voxel at viewport ``position``; None beside the image."""
        return self._voxel_at(self.viewport_point(position))

    def xy_of(self, zyx) -> tuple[float, float]:
        """Where continuous (z, y, x) index ``zyx`` is drawn in this view (mm; pixel k spans
        [k, k + 1] times the pixel size, so a voxel centre is at k + 0.5): ``index_at``'s inverse."""
        assert self.volume is not None
        row, col = self.orientation.to_display(self.view, zyx, self.volume.shape)
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        return (col + 0.5) * col_mm, (row + 0.5) * row_mm

    def voxel_under_mouse(self) -> tuple[int, int, int] | None:
        """The numpy (z, y, x) index where the mouse was last seen over this view, on the
        slice shown now; None when it never was, or was beside the image."""
        return None if self._mouse_at is None else self._voxel_at(self._mouse_at)

    def _mouse_moved(self, position) -> None:
        if self.volume is not None:
            point = self.box.mapSceneToView(position)
            self._mouse_at = point
            self._move_brush_cursor(point)
            self.cursor_moved.emit(self._voxel_at(point))

    def leaveEvent(self, event) -> None:
        """The mouse left the view: the brush outline that followed it goes. (The read-out
        keeps its voxel on purpose: it follows D and the ranking's slices from there.)"""
        super().leaveEvent(event)
        self.brush_cursor.setVisible(False)

    # -- brush --------------------------------------------------------------------------
    def can_paint(self) -> bool:
        """Strokes edit the plane on screen, in any view."""
        return self.volume is not None

    @property
    def normal_axis(self) -> int:
        """The array axis normal to this view's planes (0 z, 1 y, 2 x)."""
        return self.orientation.axes(self.view)[0]

    def set_brush(self, radius_mm: float | None) -> None:
        """Show a brush cursor of the true size and turn left drags into strokes; None:
        navigation (left drag pans)."""
        self.brush_radius_mm = radius_mm if self.can_paint() else None
        self.box.painting = self.brush_radius_mm is not None
        self.brush_cursor.setVisible(False)

    def _move_brush_cursor(self, point) -> None:
        r = self.brush_radius_mm
        self.brush_cursor.setVisible(r is not None)
        if r is not None:
            self.brush_cursor.setRect(QRectF(point.x() - r, point.y() - r, 2 * r, 2 * r))

    def index_at(self, point) -> tuple[float, float, float]:
        """The continuous numpy (z, y, x) index at view point ``point`` (mm) on this slice;
        pixel k spans [k - 0.5, k + 0.5]."""
        s, r, c, flip_r, flip_c = self.orientation.axes(self.view)
        row_mm, col_mm = self.orientation.pixel_spacing(self.view, self.volume.spacing)
        row, col = point.y() / row_mm - 0.5, point.x() / col_mm - 0.5
        index = [0.0, 0.0, 0.0]
        index[s] = float(self.index)
        index[r] = self.volume.shape[r] - 1 - row if flip_r else row
        index[c] = self.volume.shape[c] - 1 - col if flip_c else col
        return index[0], index[1], index[2]

    def _stroked(self, phase, point, modifiers) -> None:
        if self.volume is not None:
            self._move_brush_cursor(point)
            self.stroked.emit(phase, self.index_at(point), modifiers)

    def _double_clicked(self, point) -> None:
        voxel = self._voxel_at(point)
        if voxel is not None:
            self.go_to_voxel.emit(voxel)

    def go_to(self, voxel) -> None:
        """Show the slice of this view that contains numpy index ``voxel``."""
        if self.volume is not None:
            self.set_slice(voxel[self.orientation.axes(self.view)[0]])

    def _place_edge_labels(self) -> None:
        rect = self.box.boundingRect()
        positions = {"left": (rect.left() + 4, rect.center().y()), "right": (rect.right() - 4, rect.center().y()),
                     "top": (rect.center().x(), rect.top() + 4), "bottom": (rect.center().x(), rect.bottom() - 4)}
        for side, (x, y) in positions.items():
            self.edge_items[side].setPos(x, y)
        self.title.setPos(rect.left() + 4, rect.top() + 22)  # below the top edge's letter, which it would cover
        self._fit_title()

    def _fit_title(self) -> None:
        """Wrap the title between words where it is wider than the view: clipped at its edge,
        "oblique 44°" read "oblique 4" (and "L -600" "L -6") in the narrow views of T, wrong
        numbers. Unwrapped otherwise, so that its plate is no wider than its lines."""
        available = max(self.box.boundingRect().width() - 8, 1.0)
        self.title.setTextWidth(-1)
        if self.title.textItem.boundingRect().width() > available:
            self.title.setTextWidth(available)
