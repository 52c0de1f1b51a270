"""Editing and saving the labels: the part of the main window that wires the tools
panel, the views' strokes and the File menu's saving to the ``LabelMap``."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from ..core.dicomseg import DicomSegError, save_dicom_seg
from ..core.errors import LabelSaveError
from ..core.io import LABEL_EXTENSIONS, LabelClass, save_labels
from ..core.labels import Edit
from ..core.live import write_metrics_csv


class EditingMixin:
    """Mixed into MainWindow (which provides the widgets and state it uses)."""

    # -- editing ------------------------------------------------------------------------
    def _editable_classes(self) -> list[LabelClass]:
        """The labels' classes, else the first model's (a new annotation takes its names)."""
        if any(c.value for c in self.classes):
            return self.classes
        return next((m.classes for m in self.models.values()), self.classes)

    def _tool_changed(self, tool: str) -> None:
        radius = self.tools.radius.value() if tool in ("brush", "eraser") else None
        for view in self.viewer.views.values():
            view.set_brush(radius)
            view.box.painting = tool != "navigate" and view.can_paint()
        self.compare.set_brush(radius, tool != "navigate")

    def _stroke(self, phase: str, index, modifiers, pane: str = "A") -> None:
        """A click or drag of a tool in a view of z planes: ``index`` is the (z, y, x)
        float index under the mouse; ``pane`` the compare pane (adopt takes that model's
        region). Shift turns the brush into the eraser."""
        if self.label_map is None:
            return
        z, point = int(round(index[0])), (index[1], index[2])
        tool = self.tools.tool
        erase = tool == "eraser" or bool(modifiers & Qt.ShiftModifier)
        value = 0 if erase else self.tools.active_class()
        self.label_map.policy = self.tools.policy()
        self.label_map.intensity_range = self.tools.intensity_range()
        if tool == "fill":
            if phase == "end":
                self.label_map.fill(z, point, value)
            return
        if tool == "adopt":
            if phase == "end" and "A" in self.models and "B" in self.models:
                other = "B" if pane == "A" else "A"
                self.label_map.adopt(z, point, self.models[pane].prediction, self.models[other].prediction)
            return
        if tool not in ("brush", "eraser"):
            return
        if phase == "start":
            self.label_map.begin_stroke()
            self._last_point = point
        path = [self._last_point or point, point]
        self.label_map.paint(z, path, self.tools.radius.value(), value)
        self._last_point = point
        if phase == "end":
            self.label_map.end_stroke()
            self._last_point = None

    def _labels_edited(self, edit: Edit) -> None:
        """Every change of the labels (stroke, undo, ...): redraw where it shows."""
        self.viewer.refresh_overlay("labels", edit.slices)
        if self.comparing:
            self.compare.refresh(edit.slices)
        self._edits += 1
        self.setWindowModified(True)
        self._metrics_timer.start()

    def _step_done(self) -> None:
        self.undo_action.setEnabled(self.label_map.can_undo)
        self.redo_action.setEnabled(self.label_map.can_redo)
        if self.journal is not None and self.journal.error is not None:
            error, self.journal = self.journal.error, None
            QMessageBox.warning(self, "Edits no longer journalled",
                                f"{error}\n\nYour edits stay in memory; save them soon.")

    def undo(self) -> None:
        if self.label_map is not None:
            self.label_map.undo()

    def redo(self) -> None:
        if self.label_map is not None:
            self.label_map.redo()

    def current_slice(self) -> int:
        """The z plane on screen: of the compare panes, or of the view of acquired slices."""
        return self.compare.index if self.comparing else self.viewer.plane_view().index

    def _slice_operation(self, name: str) -> None:
        if self.label_map is None:
            return
        z = self.current_slice()
        if name == "clear":
            self.label_map.clear_slice(z)
        elif name == "copy_previous" and z > 0:
            self.label_map.copy_slice(z - 1, z)
        elif name == "fill_between":
            self.label_map.fill_between_slices()
        elif name == "review":
            self.label_map.set_reviewed(z, not self.label_map.reviewed[z])
            self._show_metrics()

    def copy_prediction(self, key: str, this_slice: bool) -> None:
        """Model ``key``'s prediction into the labels (this slice or all): one undo step."""
        model = self.models.get(key)
        if model is None or self.label_map is None:
            return
        self.label_map.begin_stroke()
        self.label_map.copy_from(model.prediction, self.current_slice() if this_slice else None)
        self.label_map.end_stroke()

    def _go_to_slice(self, z: int) -> None:
        if self.volume is None:
            return
        if self.comparing:
            return self.compare.set_slice(z)
        planes = self.viewer.plane_view()
        planes.set_slice(z)
        if not planes.isVisible():
            self.viewer.show_view(planes.view)

    def _show_metrics(self) -> None:
        self.metrics.show_scores(self.live, self.current_slice())
        self.metrics.show_slices(self.live)
        self.metrics.show_ranking(self.live)

    # -- saving -------------------------------------------------------------------------
    def save(self, wait: bool = False) -> bool:
        if self.labels_path is None:
            return self.save_as(wait)
        return self.save_to(self.labels_path, wait)

    def save_as(self, wait: bool = False) -> bool:
        if self.label_map is None:
            return False
        pattern = " ".join(f"*{e}" for e in LABEL_EXTENSIONS)
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(self.labels_path or "labels.nii.gz"),
                                              f"Labels ({pattern})")
        return bool(path) and self.save_to(Path(path), wait)

    def save_to(self, path: Path, wait: bool = False) -> bool:
        """Write a copy of the labels on the image grid, atomically and verified, in the
        background (``wait``: here, e.g. when closing). A failure leaves the edits in
        memory and in the journal. Returns False when a waited-for save failed."""
        labels, edits, classes = self.labels.copy(), self._edits, self._editable_classes()
        if not wait:
            self._run(save_labels, path, labels, self.volume, classes,
                      done=lambda _: self._saved(Path(path), edits), failed=self._save_failed)
            return True
        try:
            save_labels(path, labels, self.volume, classes)
        except (LabelSaveError, ValueError) as exc:
            self._save_failed(exc)
            return False
        self._saved(Path(path), edits)
        return True

    def _saved(self, path: Path, edits: int) -> None:
        self.labels_path = path
        if edits == self._edits:  # nothing was edited while the copy was written
            self.setWindowModified(False)
        self.statusBar().showMessage(f"Saved {path}", 5000)
        self.saved.emit(str(path))

    def _save_failed(self, exc: Exception) -> None:
        QMessageBox.critical(self, "Labels not saved", f"{exc}\n\nYour edits are kept in memory and in "
                             "the edit journal; save them somewhere else.")

    def _close_labels(self) -> bool:
        """Before the labels go away (another image, closing): ask about unsaved edits.
        True when it is fine to go on."""
        if self.label_map is None:
            return True
        if self.isWindowModified():
            answer = QMessageBox.question(self, "Unsaved labels", "The labels have unsaved changes. Save them?",
                                          QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel)
            if answer == QMessageBox.Cancel or (answer == QMessageBox.Save and not self.save(wait=True)):
                return False
        if self.journal is not None:
            self.journal.close(delete=True)  # saved or discarded on purpose: nothing to recover
            self.journal = None
        self.label_map.listeners.clear()
        self.label_map = None
        self.setWindowModified(False)
        return True

    def export_dicom_seg(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export DICOM SEG", "labels_seg.dcm", "DICOM (*.dcm)")
        if path:
            self.export_dicom_seg_to(Path(path))

    def export_dicom_seg_to(self, path: Path) -> bool:
        algorithm = ", ".join(m.name for m in self.models.values()) or "manual"
        try:
            save_dicom_seg(path, self.labels.copy(), self.volume, self._editable_classes(), algorithm)
        except (DicomSegError, LabelSaveError) as exc:
            QMessageBox.critical(self, "DICOM SEG not written", str(exc))
            return False
        self.statusBar().showMessage(f"Wrote {path}", 5000)
        return True

    def export_metrics(self) -> None:
        if self.live is None or not self.live.matrices:
            return self._error("Load a model first: the metrics compare models with the labels.", "No metrics")
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", "metrics.csv", "CSV (*.csv)")
        if path:
            try:
                write_metrics_csv(path, self.live, self._editable_classes())
            except OSError as exc:
                QMessageBox.critical(self, "Metrics not saved", str(exc))
