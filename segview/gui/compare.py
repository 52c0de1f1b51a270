"""Compare mode: model A and model B side by side over the same image, or one pane
coloured by where each is wrong. Slice, zoom, pan and window/level stay synchronised (the
linked crosshair of crosshair.py draws in the panes too); a stroke in either pane edits
the one label volume."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from ..core.classes import MODEL_COLORS, LabelClass, first_distinct, merged_classes
from ..core.compare import CATEGORY_COLORS, CATEGORY_NAMES, disagreement
from ..core.volume import Volume
from .slice_view import Overlay, SliceView, label_lookup_table, single_color_lookup_table

#: The labels' outline over a model's filled prediction: one colour apart from every class
#: colour (an outline in the class's own colour vanished along the fill of that class, a
#: tester saw on the lung task), the first of these distinct from them and the models'.
#: Yellow first: it is apart from every grey of the image too (CIEDE2000 >= 30; white
#: vanished along the chest wall in a lung window).
OUTLINE_CANDIDATES = (("yellow", (255, 255, 0)), ("white", (255, 255, 255)), ("black", (0, 0, 0)))


def labels_outline_colour(classes: list[LabelClass]) -> tuple[str, tuple[int, int, int]]:
    """(name, RGB) of the labels' outline in the compare panes, over ``classes``' fills."""
    return first_distinct(OUTLINE_CANDIDATES, [*(c.color for c in classes if c.value), *MODEL_COLORS.values()])

PANES = ("A", "B", "disagreement")


def category_lookup_table() -> np.ndarray:
    table = np.zeros((256, 4), np.uint8)
    for category, color in CATEGORY_COLORS.items():
        table[category] = (*color, 255)
    return table


class CompareView(QWidget):
    stroked = Signal(str, object, object, str)   # phase, (z, y, x), modifiers, pane ("A" / "B")
    slice_changed = Signal(int, int)             # index, number of slices
    cursor_moved = Signal(object)
    window_changed = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.panes = {name: SliceView() for name in PANES}
        self.headers = {name: QLabel() for name in PANES}
        self.show_disagreement = False
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        first = self.panes["A"]
        layout.setColumnStretch(0, 1)
        layout.setColumnStretch(1, 1)
        for column, (name, pane) in enumerate(self.panes.items()):
            self.headers[name].setWordWrap(True)
            # A header takes its column's width and wraps there, never the width of its text
            # (which ran into the other pane's header).
            self.headers[name].setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
            self.headers[name].setContentsMargins(2, 0, 12, 0)  # A's last word apart from B's name
            layout.addWidget(self.headers[name], 0, min(column, 1) if name != "disagreement" else 0, 1,
                             1 if name != "disagreement" else 2)
            layout.addWidget(pane, 1, min(column, 1) if name != "disagreement" else 0, 1,
                             1 if name != "disagreement" else 2)
            if pane is not first:  # zoom and pan follow pane A
                pane.box.setXLink(first.box)
                pane.box.setYLink(first.box)
            pane.slice_changed.connect(lambda index, pane=pane: self._sync_slice(pane, index))
            pane.window_changed.connect(self.set_window)
            pane.cursor_moved.connect(self.cursor_moved)  # the read-out; the crosshair is crosshair.py's
            pane.stroked.connect(lambda phase, index, modifiers, name=name:
                                 self.stroked.emit(phase, index, modifiers, "B" if name == "B" else "A"))
        layout.setRowStretch(1, 1)
        self.headers["disagreement"].setText("  ".join(
            f"<span style='color: rgb{color}'>&#9632;</span> {CATEGORY_NAMES[c]}"
            for c, color in CATEGORY_COLORS.items()))
        self._arrange()

    @property
    def index(self) -> int:
        return self.panes["A"].index

    def visible_panes(self) -> list[SliceView]:
        return [p for name, p in self.panes.items() if (name == "disagreement") == self.show_disagreement]

    def set_disagreement(self, on: bool) -> None:
        self.show_disagreement = on
        self._arrange()

    def _arrange(self) -> None:
        for name, pane in self.panes.items():
            visible = (name == "disagreement") == self.show_disagreement
            pane.setVisible(visible)
            self.headers[name].setVisible(visible)

    # -- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume) -> None:
        view = volume.display().acquisition_view()  # strokes and review work on z planes
        for pane in self.panes.values():
            pane.view = view
            pane.set_volume(volume)

    def set_model_overlays(self, labels_overlay: Overlay | None, models: dict, reviewed: np.ndarray,
                           classes: list[LabelClass] | None = None) -> None:
        """``models``: slot -> session Model; ``reviewed`` (Z,) the session's review marks;
        ``classes`` the labels' classes, whose colours a model's class of the same value takes.
        Each pane: its model's prediction filled, the labels as an outline on top in one
        colour (``labels_outline_colour``); the disagreement pane: the categories of
        ``core.compare.disagreement``."""
        filled = merged_classes(classes or [], *(m.classes for m in models.values()))
        outline = single_color_lookup_table(filled, labels_outline_colour(filled)[1])
        for key in ("A", "B"):
            pane = self.panes[key]
            for name in list(pane.overlays):
                pane.remove_overlay(name)
            if key in models:
                model = models[key]
                pane.set_overlay("prediction", Overlay(model.prediction, _lut(merged_classes(classes or [],
                                                                                             model.classes))))
            if labels_overlay is not None:  # as an outline, shown when the labels are
                pane.set_overlay("labels", Overlay(labels_overlay.labels, labels_overlay.lookup_table,
                                                   labels_overlay.visible, True, outline))
            self.headers[key].setText(f"<b>{key}</b> " + (models[key].describe(data=True) if key in models
                                                          else "(no model)"))
        pane = self.panes["disagreement"]
        if "disagreement" in pane.overlays:
            pane.remove_overlay("disagreement")
        if "A" in models and "B" in models and labels_overlay is not None:
            volumes = (models["A"].prediction, models["B"].prediction, labels_overlay.labels)

            def categories(view, index):  # the pane shows z planes: index is z
                planes = [pane.orientation.slice(v, view, index) for v in volumes]
                return disagreement(*planes, reviewed=bool(reviewed[index]))  # the live array: marks show at once

            pane.set_overlay("disagreement", Overlay(categories, category_lookup_table()))

    def set_labels_visible(self, visible: bool) -> None:
        """Show or hide the labels' outline in the model panes (View > Labels, key 1)."""
        for key in ("A", "B"):
            overlay = self.panes[key].overlays.get("labels")
            if overlay is not None:
                overlay.visible = visible
                self.panes[key].redraw_overlay("labels")

    def refresh(self, z_indices=None) -> None:
        """Redraw the overlays (all, or where the changed axial slices show)."""
        for pane in self.visible_panes():
            if z_indices is None or pane.shows_any(z_indices):
                for name in pane.overlays:
                    pane.redraw_overlay(name)

    def set_window(self, center: float, width: float) -> None:
        for pane in self.panes.values():
            pane.set_window(center, width)
        self.window_changed.emit(center, width)

    def set_opacity(self, opacity: float) -> None:
        for pane in self.panes.values():
            pane.set_opacity(opacity)

    def set_slice(self, index: int) -> None:
        self.panes["A"].set_slice(index)

    def set_brush(self, radius_mm, painting: bool) -> None:
        for name, pane in self.panes.items():
            pane.set_brush(radius_mm if name != "disagreement" else None)
            # The disagreement pane takes a tool's click too, only to say where edits go.
            pane.box.painting = painting and pane.can_paint()

    def fit(self) -> None:
        for pane in self.panes.values():
            pane.fit()

    # -- synchronisation ----------------------------------------------------------------
    def _sync_slice(self, source: SliceView, index: int) -> None:
        for pane in self.panes.values():
            if pane is not source:
                with QSignalBlocker(pane):
                    pane.set_slice(index)
        self.slice_changed.emit(index, source.num_slices())


def _lut(classes):
    return label_lookup_table(classes)
