"""The main window: wires menus, controls and the slice view to core functions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QSlider, QVBoxLayout, QWidget)

from ..core.io import (IMAGE_EXTENSIONS, LabelClass, list_dicom_series, load_classes, load_labels,
                       load_volume)
from ..core.phantoms import make_phantom
from ..core.volume import VIEWS, Volume, auto_window
from .slice_view import SliceView
from .workers import Worker

AUTO_WINDOW = "Auto (1-99th percentile)"


def default_classes(labels: np.ndarray | None) -> list[LabelClass]:
    """Distinct colours for label values that came without a class table."""
    palette = [(240, 80, 70), (80, 200, 120), (66, 135, 245), (255, 170, 0), (190, 90, 220), (0, 200, 200)]
    top = int(labels.max()) if labels is not None and labels.size else 0
    return [LabelClass(v, f"label {v}", palette[(v - 1) % len(palette)]) for v in range(1, top + 1)]


class MainWindow(QMainWindow):
    loaded = Signal()  # a volume is on screen (tests and --screenshot wait for it)
    load_failed = Signal(str)

    def __init__(self):
        super().__init__()
        self.setWindowTitle("segview")
        self.resize(1100, 820)
        self.volume: Volume | None = None
        self.labels: np.ndarray | None = None
        self.classes: list[LabelClass] = []
        self._jobs: set[Worker] = set()
        self.view = SliceView()
        self._build_controls()
        self._build_menus()
        self.view.slice_changed.connect(self._show_slice_number)
        self.view.cursor_moved.connect(self._show_cursor)

    # -- layout -------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.view_choice = QComboBox()
        self.view_choice.addItems([v.capitalize() for v in VIEWS])
        self.view_choice.currentIndexChanged.connect(lambda n: self.view.set_view(VIEWS[n]))
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(self.view.set_slice)
        self.slice_number = QLabel("- / -")
        self.window_choice = QComboBox()
        self.window_choice.currentIndexChanged.connect(self._apply_window)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(120)
        self.opacity.valueChanged.connect(lambda v: self.view.set_label_opacity(v / 100))
        self.legend = QLabel()
        controls = QHBoxLayout()
        for label, widget in (("View", self.view_choice), (None, self.slider), (None, self.slice_number),
                              ("Window", self.window_choice), ("Labels", self.opacity)):
            if label:
                controls.addWidget(QLabel(label))
            controls.addWidget(widget, stretch=1 if widget is self.slider else 0)
        layout = QVBoxLayout()
        layout.addLayout(controls)
        layout.addWidget(self.legend)
        layout.addWidget(self.view, stretch=1)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setMaximumWidth(160)
        self.progress.hide()
        self.statusBar().addPermanentWidget(self.progress)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open image...", self.choose_image, "Ctrl+O")
        menu.addAction("Open &DICOM folder...", self.choose_dicom_folder, "Ctrl+D")
        menu.addAction("Open &labels...", self.choose_labels, "Ctrl+L")
        menu.addSeparator()
        menu.addAction("&Quit", self.close, "Ctrl+Q")

    # -- opening ------------------------------------------------------------------------
    def choose_image(self) -> None:
        pattern = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + " *.dcm"
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", f"Images ({pattern});;All files (*)")
        if path:
            self.open_image(path)

    def choose_dicom_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if folder:
            self.open_image(folder)

    def choose_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open labels", "", "Labels (*.nii *.nii.gz *.nrrd *.mha)")
        if path:
            self.open_labels(path)

    def open_image(self, path, labels_path=None) -> None:
        """Open an image file or DICOM folder in the background (a picker for several series)."""
        if Path(path).is_dir():
            self._run(list_dicom_series, path, done=lambda series: self._pick_series(path, series, labels_path))
        else:
            self._run(_read_case, path, None, labels_path, done=self._show_case)

    def _pick_series(self, folder, series, labels_path) -> None:
        volumes = [s for s in series if not s.is_localizer] or series
        if len(volumes) <= 1:
            return self._run(_read_case, folder, volumes[0].uid if volumes else None, labels_path, done=self._show_case)
        names = [s.label() for s in series]
        choice, ok = QInputDialog.getItem(self, "Choose a series", f"{Path(folder).name} holds several series:",
                                          names, names.index(volumes[0].label()), False)
        if ok:
            self._run(_read_case, folder, series[names.index(choice)].uid, labels_path, done=self._show_case)

    def open_labels(self, path) -> None:
        if self.volume is None:
            return self._error("Open an image before its labels.")
        self._run(_read_labels, path, self.volume, done=lambda result: self._show_labels(*result))

    def open_demo(self, task: str = "cardiac") -> None:
        self._run(_phantom_case, task, done=self._show_case)

    # -- showing ------------------------------------------------------------------------
    def _show_case(self, case) -> None:
        volume, labels, classes = case
        self.volume = volume
        self._show_labels(labels, classes)
        self.setWindowTitle(f"segview - {volume.meta.get('series_description') or Path(volume.meta.get('source', '')).name}")
        self._fill_window_presets(volume)
        self.view.set_volume(volume, labels, self.classes)
        if volume.meta.get("warnings"):
            QMessageBox.warning(self, "Opened with warnings", "\n\n".join(volume.meta["warnings"]))
        self.loaded.emit()

    def _show_labels(self, labels, classes) -> None:
        self.labels = labels
        self.classes = list(classes) or default_classes(labels)
        self.legend.setText("  ".join(
            f"<span style='color: rgb{c.color}'>&#9632;</span> {c.name}" for c in self.classes if c.value))
        if self.volume is not None:
            self.view.set_volume(self.volume, labels, self.classes)

    def _fill_window_presets(self, volume: Volume) -> None:
        self.presets = [(AUTO_WINDOW, *volume.meta["auto_window"])] + list(volume.meta.get("window_presets") or [])
        self.window_choice.blockSignals(True)
        self.window_choice.clear()
        self.window_choice.addItems([f"{n} ({c:g}/{w:g})" for n, c, w in self.presets])
        self.window_choice.blockSignals(False)
        first = 1 if volume.modality == "CT" and len(self.presets) > 1 else 0
        self.window_choice.setCurrentIndex(first)
        self._apply_window(first)

    def _apply_window(self, index: int) -> None:
        if 0 <= index < len(getattr(self, "presets", [])):
            _, center, width = self.presets[index]
            self.view.set_window(center, width)

    def _show_slice_number(self, index: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(self.view.num_slices() - 1, 0))  # the view may have changed
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.slice_number.setText(f"{index + 1} / {self.view.num_slices()}")

    def _show_cursor(self, voxel) -> None:
        if voxel is None or self.volume is None:
            return self.statusBar().clearMessage()
        z, y, x = voxel
        lps = self.volume.index_to_physical(voxel)
        unit = " HU" if self.volume.modality == "CT" else ""
        text = (f"voxel ({x}, {y}, {z})   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm   "
                f"value {self.volume.array[voxel]:g}{unit}")
        if self.labels is not None:
            value = int(self.labels[voxel])
            name = next((c.name for c in self.classes if c.value == value), "background" if value == 0 else str(value))
            text += f"   label {name}"
        self.statusBar().showMessage(text)

    # -- background work ----------------------------------------------------------------
    def _run(self, function, *args, done) -> None:
        worker = Worker(function, *args)
        self._jobs.add(worker)
        self.progress.show()
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda: self._finished(worker))
        worker.start()

    def _finished(self, worker) -> None:
        self._jobs.discard(worker)
        self.progress.setVisible(bool(self._jobs))

    def _failed(self, exc: Exception) -> None:
        from ..core.errors import VolumeLoadError

        if not isinstance(exc, VolumeLoadError):
            raise exc  # a programming error: let it surface
        self._error(str(exc))

    def _error(self, message: str) -> None:
        self.load_failed.emit(message)
        QMessageBox.critical(self, "Cannot open", message)


# -- work done in the background (no Qt) ----------------------------------------------

def _read_case(path, series_uid, labels_path):
    volume = _with_auto_window(load_volume(path, series_uid))
    labels, classes = _read_labels(labels_path, volume) if labels_path else (None, [])
    return volume, labels, classes


def _with_auto_window(volume: Volume) -> Volume:
    """Percentiles take a while on a large volume: computed here, not on the main thread."""
    volume.meta["auto_window"] = auto_window(volume.array)
    return volume


def _read_labels(path, volume):
    return load_labels(path, volume), load_classes(path)


def _phantom_case(task: str):
    case = make_phantom(task, seed=0)
    case.volume.meta["source"] = f"demo: {task} phantom"
    return _with_auto_window(case.volume), case.labels, list(case.classes)
