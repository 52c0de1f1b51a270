"""The centre of the window: the slice views (one large or three) or the compare panes (A | B,
or the disagreement of A and B), behind one interface, so nothing else asks which is shown.

Slice numbers the window's slider and metrics use: ``shown_slice`` is the slice of the
view that drives the slider (any orientation); ``current_slice`` is the acquired (z) plane
on screen, the one review marks and per-slice metrics refer to.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QStackedWidget

from ..core.classes import MODEL_COLORS, merged_classes
from ..core.volume import Volume
from ..session import ReviewSession
from .compare import CompareView
from .effects import PlanePoint
from .slice_view import Overlay, SliceView, label_lookup_table, single_color_lookup_table
from .viewer import Viewer

MODES = ("views", "compare", "disagreement")


class Workspace(QStackedWidget):
    slice_changed = Signal(int, int)       # shown slice, number of slices (the slider's)
    cursor_moved = Signal(object)          # numpy (z, y, x) or None
    window_changed = Signal(float, float)  # center, width
    stroked = Signal(str, object)          # "start" | "move" | "end", PlanePoint
    edit_refused = Signal()                # a tool's click or drag in the disagreement pane, which takes no edits

    def __init__(self, parent=None):
        super().__init__(parent)
        self.viewer, self.compare = Viewer(), CompareView()
        self.addWidget(self.viewer)
        self.addWidget(self.compare)
        self.mode = "views"
        self.previous_mode = "views"  # the mode before the last change (Shift+K returns there)
        self.volume: Volume | None = None
        self.styles: dict[str, tuple[bool, bool]] = {}  # overlay -> (visible, outline)
        self.viewer.active_slice_changed.connect(lambda i, n: self._emit_slice(self.viewer, i, n))
        self.compare.slice_changed.connect(lambda i, n: self._emit_slice(self.compare, i, n))
        self.hovered: SliceView | None = None  # the view the mouse was last seen over
        for source in (self.viewer, self.compare):
            source.cursor_moved.connect(self.cursor_moved)
            source.window_changed.connect(self._window_changed)
        for view in [*self.viewer.views.values(), *self.compare.panes.values()]:
            view.cursor_moved.connect(lambda _, view=view: setattr(self, "hovered", view))
        for view in self.viewer.views.values():
            view.stroked.connect(lambda phase, index, mods, view=view: self._stroked(phase, index, mods, view, ""))
        for name, pane in self.compare.panes.items():
            if name in ("A", "B"):
                pane.stroked.connect(lambda phase, index, mods, pane=pane, name=name:
                                     self._stroked(phase, index, mods, pane, name))
            else:
                pane.stroked.connect(lambda phase, *_: self.edit_refused.emit() if phase in ("end", "right") else None)

    @property
    def showing(self):
        return self.compare if self.mode != "views" else self.viewer

    # -- content ------------------------------------------------------------------------
    def set_session(self, session: ReviewSession) -> None:
        """Show the session's image, labels and predictions (everything of the last one goes)."""
        self.volume = session.volume
        self.viewer.set_volume(session.volume)
        self.compare.set_volume(session.volume)
        self.show_overlays(session)

    def show_overlays(self, session: ReviewSession) -> None:
        """(Re)build the overlays from the session: its labels and each model's prediction."""
        for name in ("A", "B"):
            for view in self.viewer.views.values():
                view.remove_overlay(name)
        self.viewer.set_overlay("labels", self._overlay("labels", session.labels.array, session.classes))
        for slot, model in session.models.items():
            # A class the labels name is filled in their colour (one class, one colour).
            overlay = self._overlay(slot, model.prediction, merged_classes(session.classes, model.classes))
            overlay.outline_table = single_color_lookup_table(model.classes, MODEL_COLORS[slot])
            self.viewer.set_overlay(slot, overlay)
        self.compare.set_model_overlays(self.viewer.active.overlays.get("labels"), session.models, session.reviewed,
                                        session.classes)

    def _overlay(self, name: str, labels, classes) -> Overlay:
        visible, outline = self.styles.get(name, (True, name != "labels"))
        return Overlay(labels, label_lookup_table(classes), visible, outline)

    def set_overlay_style(self, name: str, visible: bool | None = None, outline: bool | None = None) -> None:
        old_visible, old_outline = self.styles.get(name, (True, name != "labels"))
        self.styles[name] = (old_visible if visible is None else visible, old_outline if outline is None else outline)
        self.viewer.set_overlay_style(name, visible, outline)
        if name == "labels":
            self.compare.set_labels_visible(self.styles[name][0])
            self.compare.refresh()

    def refresh(self, z_indices, names=("labels", "A", "B")) -> None:
        """Redraw overlays ``names`` where the changed z planes ``z_indices`` show."""
        for name in names:
            self.viewer.refresh_overlay(name, z_indices)
        if self.mode != "views":
            self.compare.refresh(z_indices)

    # -- mode ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """"views", "compare" (A | B) or "disagreement"; slice, window, zoom and pan carry over."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: one of {MODES}")
        was = self.mode
        if mode == was:
            return
        z, zoom = self.current_slice(), self._zoomed_view().zoom()
        self.previous_mode, self.mode = was, mode
        self.compare.set_disagreement(mode == "disagreement")
        if mode != "views":
            if was == "views":
                self.compare.set_window(*self.viewer.active.window)
            self.compare.set_slice(z)
            self.compare.refresh()
        else:
            self.viewer.set_window(*self.compare.panes["A"].window)
            self.viewer.plane_view().set_slice(z)
        self.setCurrentWidget(self.showing)
        self._zoomed_view().set_zoom(zoom)
        self._emit_slice(self.showing, *self.shown())

    def _zoomed_view(self) -> SliceView:
        """The view whose zoom and pan a change of mode carries: the acquired plane's view,
        pane A (B follows it) or the disagreement pane."""
        if self.mode == "views":
            return self.viewer.plane_view()
        return self.compare.panes["disagreement" if self.mode == "disagreement" else "A"]

    def shown(self) -> tuple[int, int]:
        """The slider's slice and slice count."""
        if self.mode != "views":
            return self.compare.index, self.compare.panes["A"].num_slices()
        return self.viewer.active.index, self.viewer.active.num_slices()

    def current_slice(self) -> int:
        """The acquired (z) plane on screen."""
        return self.compare.index if self.mode != "views" else self.viewer.plane_view().index

    def set_shown_slice(self, index: int) -> None:
        """Move the slider's view (the active view, or the compare panes) to ``index``."""
        self.showing.set_slice(index)

    def go_to_slice(self, z: int) -> None:
        """Show acquired plane ``z`` (from a list of slices, a plot, the next disputed)."""
        if self.mode != "views":
            return self.compare.set_slice(z)
        planes = self.viewer.plane_view()
        planes.set_slice(z)
        if not planes.isVisible():
            self.viewer.show_view(planes.view)

    def go_to_plane(self, voxel: tuple[int, ...], axis: int) -> None:
        """Show the plane normal to array ``axis`` through ``voxel`` (z, y, x) (a ruler's, from
        the Rulers dock): that view made active where it is not on screen, every view
        through the voxel; the compare panes, which show only the acquired plane, its slice."""
        if self.mode != "views":
            return self.compare.set_slice(voxel[0])
        self.viewer.go_to(voxel)
        view = next(v for v in self.viewer.views.values() if v.normal_axis == axis)
        if not view.isVisible():
            self.viewer.show_view(view.view)

    def tool_views(self) -> list[SliceView]:
        """The views that take the tools' strokes and show what they draw: the three planes
        and compare panes A and B (not the disagreement pane)."""
        return [*self.viewer.views.values(), self.compare.panes["A"], self.compare.panes["B"]]

    def voxel_under_mouse(self) -> tuple[int, int, int] | None:
        """The voxel under the mouse's last position in the view it was last over, on the
        slice that view shows now (None: none, or a view of the other mode)."""
        view = self.hovered
        return view.voxel_under_mouse() if view is not None and view.isVisible() else None

    def active_view(self) -> SliceView:
        return self.compare.panes["A"] if self.mode != "views" else self.viewer.active

    # -- shared display settings --------------------------------------------------------
    def set_window(self, center: float, width: float) -> None:
        self.viewer.set_window(center, width)
        self.compare.set_window(center, width)

    def set_opacity(self, opacity: float) -> None:
        self.viewer.set_opacity(opacity)
        self.compare.set_opacity(opacity)

    def set_tool(self, radius_mm: float | None, paints: bool, cursor=Qt.CursorShape.ArrowCursor) -> None:
        """``radius_mm``: a brush cursor of that size (None: no brush); ``paints``: left
        drags edit rather than pan."""
        for view in self.viewer.views.values():
            view.set_brush(radius_mm)
            view.box.painting = paints and view.can_paint()
            view.setCursor(cursor)
        self.compare.set_brush(radius_mm, paints)
        for pane in self.compare.panes.values():
            pane.setCursor(cursor)

    def fit(self) -> None:
        self.viewer.fit()
        self.compare.fit()

    # -- signals ------------------------------------------------------------------------
    def _emit_slice(self, source, index: int, count: int) -> None:
        if source is self.showing:
            self.slice_changed.emit(index, count)

    def _window_changed(self, center: float, width: float) -> None:
        other = self.compare if self.sender() is self.viewer else self.viewer
        other.blockSignals(True)
        other.set_window(center, width)
        other.blockSignals(False)
        self.window_changed.emit(center, width)

    def _stroked(self, phase: str, index, modifiers, view: SliceView, pane: str) -> None:
        self.stroked.emit(phase, PlanePoint.from_index(index, view.normal_axis, pane, modifiers))
