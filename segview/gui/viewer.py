"""The axial, coronal and sagittal views of one volume, as one large view or three.

Window/level and overlays are shared by the views; each view keeps its own slice. The
active view (the one clicked, scrolled or chosen last) drives the slider of the window.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, QEvent, Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from ..core.volume import VIEWS, Volume
from .slice_view import Overlay, SliceView


class Viewer(QWidget):
    active_slice_changed = Signal(int, int)   # index, number of slices of the active view
    cursor_moved = Signal(object)             # numpy (z, y, x) or None
    window_changed = Signal(float, float)     # center, width

    def __init__(self, parent=None):
        super().__init__(parent)
        # Parented from the start: a view outside the layout (coronal and sagittal in the
        # single layout) was a top-level widget that outlived the window, and its signals'
        # lambdas kept the closed window and its session alive.
        self.views = {name: SliceView(name, self) for name in VIEWS}
        self.active = self.views["axial"]
        self.three_views = False
        self.volume: Volume | None = None
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        for view in self.views.values():
            view.slice_changed.connect(lambda index, view=view: self._slice_changed(view, index))
            view.cursor_moved.connect(self.cursor_moved)
            view.window_changed.connect(self.set_window)
            view.go_to_voxel.connect(self.go_to)
            view.installEventFilter(self)
        self._arrange()

    # -- layout -------------------------------------------------------------------------
    def set_three_views(self, on: bool) -> None:
        self.three_views = on
        self._arrange()

    def show_view(self, name: str) -> None:
        """Make ``name`` the active view (and the one shown in the single layout)."""
        self.active = self.views[name]
        self._arrange()
        self.active.setFocus()
        self._slice_changed(self.active, self.active.index)

    def large_view(self) -> SliceView:
        """The view shown large: the only one, or in three views the one on the left (the
        active view may be a small one, clicked since)."""
        return self.grid.itemAtPosition(0, 0).widget()  # type: ignore[return-value]

    def _arrange(self) -> None:
        layout = self.grid
        for view in self.views.values():
            layout.removeWidget(view)
        if self.three_views:
            # The active view large on the left, the other two stacked on the right.
            others = [v for v in self.views.values() if v is not self.active]
            layout.addWidget(self.active, 0, 0, 2, 1)
            layout.addWidget(others[0], 0, 1)
            layout.addWidget(others[1], 1, 1)
            layout.setColumnStretch(0, 2)
            layout.setColumnStretch(1, 1)
        else:
            layout.addWidget(self.active, 0, 0, 2, 1)
            layout.setColumnStretch(1, 0)
        for view in self.views.values():
            view.setVisible(self.three_views or view is self.active)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (event.type() in (QEvent.Type.FocusIn, QEvent.Type.Wheel) and isinstance(watched, SliceView)
                and watched is not self.active):
            self.active = watched
            self._slice_changed(watched, watched.index)
        return False

    # -- content (shared by the views) --------------------------------------------------
    def set_volume(self, volume: Volume) -> None:
        """Show ``volume``. The first image, and one acquired in another plane than the
        last, opens in its acquired plane, where slices are reviewed and clicks correct: a
        coronal cardiac series opened as a blocky axial reformat of 9 rows. Another image
        of the same acquisition keeps the plane the person chose."""
        acquired = volume.display().acquisition_view()
        new_plane = self.volume is None or self.volume.display().acquisition_view() != acquired
        self.volume = volume
        for view in self.views.values():
            view.set_volume(volume)
        if new_plane and self.active.view != acquired:
            self.show_view(acquired)

    def show_nothing(self) -> None:
        """No image in any view (``SliceView.show_nothing``)."""
        self.volume = None
        for view in self.views.values():
            view.show_nothing()

    def set_overlay(self, name: str, overlay: Overlay) -> None:
        for view in self.views.values():
            view.set_overlay(name, overlay)

    def set_overlay_style(self, name: str, visible: bool | None = None, outline: bool | None = None) -> None:
        overlay = self.active.overlays.get(name)
        if overlay is None:
            return
        # The views share this Overlay object: change it once, redraw everywhere.
        overlay.visible = overlay.visible if visible is None else visible
        overlay.outline = overlay.outline if outline is None else outline
        for view in self.views.values():
            view.redraw_overlay(name)

    def refresh_overlay(self, name: str, z_indices) -> None:
        """Redraw overlay ``name`` where it shows one of the changed axial slices."""
        for view in self.visible_views():
            if name in view.overlays and view.shows_any(z_indices):
                view.redraw_overlay(name)

    def set_opacity(self, opacity: float) -> None:
        for view in self.views.values():
            view.set_opacity(opacity)

    def set_window(self, center: float, width: float) -> None:
        for view in self.views.values():
            view.set_window(center, width)
        self.window_changed.emit(*self.active.window)

    def set_slice(self, index: int) -> None:
        self.active.set_slice(index)

    def go_to(self, voxel) -> None:
        """Every view moves to the slice through numpy index ``voxel`` (z, y, x)."""
        for view in self.views.values():
            view.go_to(voxel)

    def fit(self) -> None:
        for view in self.views.values():
            view.fit()

    def plane_view(self) -> SliceView:
        """The view of the acquired slices (numpy z planes): strokes, review marks and
        the per-slice metrics refer to its slice index."""
        if self.volume is None:
            return self.views["axial"]
        return self.views[self.volume.display().acquisition_view()]

    def visible_views(self) -> list[SliceView]:
        return [v for v in self.views.values() if self.three_views or v is self.active]

    def _slice_changed(self, view: SliceView, index: int) -> None:
        if view is self.active:
            self.active_slice_changed.emit(index, view.num_slices())
