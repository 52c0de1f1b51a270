"""The main window: wires menus, controls and the views to core and ml functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QFileDialog, QLabel, QMainWindow, QMessageBox, QProgressBar,
                               QPushButton, QSlider, QToolBar, QVBoxLayout, QWidget)

from ..core.errors import LabelSaveError, VolumeLoadError
from ..core.io import IMAGE_EXTENSIONS, LabelClass, list_dicom_series, load_classes, load_labels, load_volume
from ..core.phantoms import make_phantom
from ..core.volume import VIEWS, Volume, auto_window
from .dialogs import choose_series
from .slice_view import Overlay, label_lookup_table
from .viewer import Viewer
from .workers import InferenceWorker, Worker

AUTO_WINDOW = "Auto (1-99th percentile)"
MODEL_KEYS = ("A", "B")
RECENT_LIMIT = 10
#: Overlay name -> (menu text, visibility shortcut, drawn as outline by default)
OVERLAYS = {"labels": ("Labels", "1", False), "A": ("Model A", "2", True), "B": ("Model B", "3", True)}


def default_classes(labels: np.ndarray | None) -> list[LabelClass]:
    """Distinct colours for label values that came without a class table."""
    palette = [(240, 80, 70), (80, 200, 120), (66, 135, 245), (255, 170, 0), (190, 90, 220), (0, 200, 200)]
    top = int(labels.max()) if labels is not None and labels.size else 0
    return [LabelClass(v, f"label {v}", palette[(v - 1) % len(palette)]) for v in range(1, top + 1)]


def settings() -> QSettings:
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "segview", "segview")


@dataclass
class LoadedModel:
    """A checkpoint in the window: its Predictor and its prediction on the open volume."""
    path: Path
    predictor: object                      # ml.inference.Predictor (torch imported lazily)
    prediction: np.ndarray | None = None   # (z, y, x) uint8 on the image grid
    predicted: np.ndarray | None = None    # (z,) bool: slices that hold a prediction
    device: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def classes(self) -> list[LabelClass]:
        return self.predictor.classes

    def describe(self) -> str:
        """Checkpoint name, loss and validation Dice from its metadata."""
        meta = self.predictor.meta
        loss = meta.get("loss", {})
        text = f"{self.name}: {loss.get('name', '?')}"
        if loss.get("name") == "ce+dice":
            text += f", alpha {loss.get('alpha', 1):g}"
        dice = meta.get("validation", {}).get("dice", {}).get("mean")
        return text + (f", validation Dice {dice:.3f}" if dice is not None else "")


class MainWindow(QMainWindow):
    loaded = Signal()               # a volume is on screen (tests and --screenshot wait for it)
    load_failed = Signal(str)
    model_loaded = Signal(str)      # model key
    inference_finished = Signal(bool)  # True: every slice predicted; False: cancelled or failed

    def __init__(self):
        super().__init__()
        self.setWindowTitle("segview")
        self.resize(1200, 860)
        self.setAcceptDrops(True)
        self.volume: Volume | None = None
        self.labels: np.ndarray | None = None
        self.classes: list[LabelClass] = []
        self.models: dict[str, LoadedModel] = {}
        self.inference: InferenceWorker | None = None
        self._jobs: set[Worker] = set()
        self._dirty: dict[str, set[int]] = {}
        self.viewer = Viewer()
        self._build_controls()
        self._build_menus()
        self._build_status_bar()
        self.viewer.active_slice_changed.connect(self._show_slice_number)
        self.viewer.cursor_moved.connect(self._show_cursor)
        self.viewer.window_changed.connect(self._show_window)
        self._redraw_timer = QTimer(self, singleShot=True, interval=40)  # streamed slices: ~25 redraws/s
        self._redraw_timer.timeout.connect(self._redraw_predictions)
        self._start_timer = QTimer(self, singleShot=True, interval=50)   # one run for a burst of loads
        self._start_timer.timeout.connect(self.run_inference)

    @property
    def view(self):
        """The active slice view."""
        return self.viewer.active

    # -- layout -------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.view_choice = QComboBox()
        self.view_choice.addItems([v.capitalize() for v in VIEWS])
        self.view_choice.currentIndexChanged.connect(lambda n: self.viewer.show_view(VIEWS[n]))
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(self.viewer.set_slice)
        self.slice_number = QLabel("- / -")
        self.slice_number.setMinimumWidth(70)
        self.window_choice = QComboBox()
        self.window_choice.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.window_choice.currentIndexChanged.connect(self._apply_window)
        self.window_values = QLabel()
        self.window_values.setMinimumWidth(120)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(100)
        self.opacity.valueChanged.connect(lambda v: self.viewer.set_opacity(v / 100))
        bar = QToolBar("Slice")
        bar.setMovable(False)
        for label, widget in (("View ", self.view_choice), (None, self.slider), (None, self.slice_number),
                              (" Window ", self.window_choice), (None, self.window_values),
                              (" Opacity ", self.opacity)):
            if label:
                bar.addWidget(QLabel(label))
            bar.addWidget(widget)
        self.addToolBar(bar)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.RichText)
        self.model_info = QLabel()
        layout = QVBoxLayout()
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.legend)
        layout.addWidget(self.model_info)
        layout.addWidget(self.viewer, stretch=1)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        self.device_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_inference)
        self.cancel_button.hide()
        for widget in (self.device_label, self.progress, self.cancel_button):
            self.statusBar().addPermanentWidget(widget)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open image...", QKeySequence.Open, self.choose_image)
        menu.addAction("Open &DICOM folder...", "Ctrl+D", self.choose_dicom_folder)
        menu.addAction("Open &labels...", "Ctrl+L", self.choose_labels)
        self.recent_menu = menu.addMenu("Open &recent")
        self._fill_recent_menu()
        menu.addSeparator()
        menu.addAction("&Quit", QKeySequence.Quit, self.close)

        menu = self.menuBar().addMenu("&View")
        three = menu.addAction("&Three views", "T", self.viewer.set_three_views)
        three.setCheckable(True)
        menu.addAction("&Fit to window", "F", self.viewer.fit)
        menu.addAction("&Reset view and window", "R", self.reset_view)
        menu.addSeparator()
        self.overlay_actions: dict[str, tuple[QAction, QAction]] = {}
        overlay_bar = QToolBar("Overlays")
        overlay_bar.setMovable(False)
        for name, (text, key, outline) in OVERLAYS.items():
            show = menu.addAction(f"Show {text.lower()}", key)
            draw = menu.addAction(f"{text} as outline", f"Shift+{key}")
            for action, checked in ((show, True), (draw, outline)):
                action.setCheckable(True)
                action.setChecked(checked)
            show.toggled.connect(lambda on, name=name: self.viewer.set_overlay_style(name, visible=on))
            draw.toggled.connect(lambda on, name=name: self.viewer.set_overlay_style(name, outline=on))
            show.setText(text)
            overlay_bar.addAction(show)
            self.overlay_actions[name] = (show, draw)
        self.addToolBar(overlay_bar)

        menu = self.menuBar().addMenu("&Model")
        for key in MODEL_KEYS:
            menu.addAction(f"Load checkpoint &{key}...", lambda key=key: self.choose_model(key))
        menu.addSeparator()
        menu.addAction("&Run inference", "Ctrl+R", self.run_inference)
        menu.addAction("&Cancel inference", "Esc", self.cancel_inference)

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

    def choose_model(self, key: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Load checkpoint {key}", "", "Checkpoints (*.safetensors)")
        if path:
            self.load_model(path, key)

    def open_image(self, path, labels_path=None) -> None:
        """Open an image file or DICOM folder in the background (a picker for several series)."""
        if Path(path).is_dir():
            self._run(list_dicom_series, path, done=lambda series: self._pick_series(path, series, labels_path))
        else:
            self._run(_read_case, path, None, labels_path, done=self._show_case)

    def _pick_series(self, folder, series, labels_path) -> None:
        if len(series) <= 1 or len([s for s in series if not s.is_localizer]) == 1:
            chosen = next((s for s in series if not s.is_localizer), series[0] if series else None)
        else:
            chosen = choose_series(self, folder, series)
            if chosen is None:
                return
        self._run(_read_case, folder, chosen.uid if chosen else None, labels_path, done=self._show_case)

    def open_labels(self, path) -> None:
        if self.volume is None:
            return self._error("Open an image before its labels.")
        self._run(_read_labels, path, self.volume, done=lambda result: self._show_labels(*result))

    def open_demo(self, task: str = "cardiac") -> None:
        self._run(_phantom_case, task, done=self._show_case)

    def load_model(self, path, key: str = "A") -> None:
        """Load checkpoint ``path`` as model ``key`` ("A" or "B") and run it on the volume."""
        self._run(_load_predictor, path, done=lambda predictor: self._add_model(key, Path(path), predictor))

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        checkpoints = [p for p in paths if p.endswith(".safetensors")]
        for key, path in zip(MODEL_KEYS, checkpoints):
            self.load_model(path, key)
        images = [p for p in paths if p not in checkpoints]
        if images:
            self.open_image(images[0])

    # -- recent files -------------------------------------------------------------------
    def _remember(self, path: str) -> None:
        recent = [p for p in settings().value("recent", [], list) if p != path]
        settings().setValue("recent", [path] + recent[:RECENT_LIMIT - 1])
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in settings().value("recent", [], list):
            self.recent_menu.addAction(path, lambda path=path: self.open_image(path))
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # -- showing ------------------------------------------------------------------------
    def _show_case(self, case) -> None:
        volume, labels, classes = case
        self.cancel_inference()
        self.volume = volume
        source = volume.meta.get("source", "")
        self.setWindowTitle(f"segview - {volume.meta.get('series_description') or Path(source).name}")
        if source and not source.startswith("demo"):
            self._remember(source)
        self.viewer.set_volume(volume)
        self._show_labels(labels, classes)
        for key in self.models:
            self._reset_prediction(key)
        self._fill_window_presets(volume)
        if volume.meta.get("warnings"):
            QMessageBox.warning(self, "Opened with warnings", "\n\n".join(volume.meta["warnings"]))
        self.loaded.emit()
        if self.models:
            self._start_timer.start()

    def _show_labels(self, labels, classes) -> None:
        self.labels = labels
        self.classes = list(classes) or default_classes(labels)
        self._set_overlay("labels", labels, self.classes)
        self._show_legend()

    def _set_overlay(self, name: str, labels, classes) -> None:
        show, outline = self.overlay_actions[name]
        self.viewer.set_overlay(name, Overlay(labels, label_lookup_table(classes), show.isChecked(),
                                              outline.isChecked()))

    def _show_legend(self) -> None:
        tables = [self.classes] + [m.classes for m in self.models.values()]
        seen, items = set(), []
        for table in tables:
            for c in table:
                if c.value and (c.name, c.color) not in seen:
                    seen.add((c.name, c.color))
                    items.append(f"<span style='color: rgb{tuple(c.color)}'>&#9632;</span> {c.name}")
        self.legend.setText("  ".join(items))
        self.model_info.setText("   |   ".join(f"<b>{k}</b> {m.describe()}" for k, m in self.models.items()))
        self.model_info.setVisible(bool(self.models))
        for name, (show, _) in self.overlay_actions.items():
            model = self.models.get(name)
            show.setEnabled(name == "labels" and self.labels is not None or model is not None)
            if model is not None:
                show.setToolTip(model.describe())

    def _fill_window_presets(self, volume: Volume) -> None:
        self.presets = [(AUTO_WINDOW, *volume.meta["auto_window"])] + list(volume.meta.get("window_presets") or [])
        self.window_choice.blockSignals(True)
        self.window_choice.clear()
        self.window_choice.addItems([f"{n} ({c:g}/{w:g})" for n, c, w in self.presets])
        self.window_choice.blockSignals(False)
        self.window_choice.setCurrentIndex(self._default_preset())
        self._apply_window(self._default_preset())

    def _default_preset(self) -> int:
        """The first header or CT preset for CT; the percentile window otherwise."""
        return 1 if self.volume.modality == "CT" and len(self.presets) > 1 else 0

    def _apply_window(self, index: int) -> None:
        if 0 <= index < len(getattr(self, "presets", [])):
            _, center, width = self.presets[index]
            self.viewer.set_window(center, width)

    def reset_view(self) -> None:
        if self.volume is not None:
            self.window_choice.setCurrentIndex(self._default_preset())
            self._apply_window(self._default_preset())
            self.viewer.fit()

    def _show_window(self, center: float, width: float) -> None:
        self.window_values.setText(f"W {width:.0f}  L {center:.0f}")

    def _show_slice_number(self, index: int, count: int) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(count - 1, 0))
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.slice_number.setText(f"{index + 1} / {count}")
        self.view_choice.blockSignals(True)
        self.view_choice.setCurrentIndex(VIEWS.index(self.viewer.active.view))
        self.view_choice.blockSignals(False)

    def _show_cursor(self, voxel) -> None:
        if voxel is None or self.volume is None:
            return self.statusBar().clearMessage()
        z, y, x = voxel
        lps = self.volume.index_to_physical(voxel)
        unit = " HU" if self.volume.modality == "CT" else ""
        text = (f"voxel ({x}, {y}, {z})   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm   "
                f"value {self.volume.array[voxel]:g}{unit}")
        if self.labels is not None:
            text += f"   label {_class_name(self.classes, int(self.labels[voxel]))}"
        for key, model in self.models.items():
            if model.predicted is not None and model.predicted[z]:
                text += f"   {key} {_class_name(model.classes, int(model.prediction[voxel]))}"
        self.statusBar().showMessage(text)

    # -- models and inference -----------------------------------------------------------
    def _add_model(self, key: str, path: Path, predictor) -> None:
        self.models[key] = LoadedModel(path, predictor)
        self.models = dict(sorted(self.models.items()))  # A before B, whichever loaded first
        if self.volume is not None:
            self._reset_prediction(key)
            self._start_timer.start()
        self._show_legend()
        self.model_loaded.emit(key)

    def _reset_prediction(self, key: str) -> None:
        model = self.models[key]
        model.prediction = np.zeros(self.volume.shape, np.uint8)
        model.predicted = np.zeros(self.volume.shape[0], bool)
        self._set_overlay(key, model.prediction, model.classes)

    def run_inference(self) -> None:
        """Predict every slice with every model, the slice on screen first; a run already
        going is cancelled (it stops after its current batch)."""
        if self.volume is None or not self.models:
            return
        self.cancel_inference()
        first = self.viewer.views["axial"].index
        worker = InferenceWorker({k: m.predictor for k, m in self.models.items()}, self.volume, first)
        worker.signals.predicted.connect(lambda key, batch: self._stream_prediction(worker, key, batch))
        worker.signals.progress.connect(lambda done, total: self._show_progress(worker, done, total))
        worker.signals.device.connect(self._show_device)
        worker.signals.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda completed: self._inference_done(worker, completed))
        self.inference = worker
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        Worker.pool().start(worker)

    def cancel_inference(self) -> None:
        if self.inference is not None:
            self.inference.cancel()

    def _stream_prediction(self, worker: InferenceWorker, key: str, batch) -> None:
        model = self.models.get(key)
        if model is None or worker is not self.inference or model.predictor is not worker.predictors.get(key):
            return  # a cancelled run's last batch, or a model since replaced
        for prediction in batch:
            model.prediction[prediction.index] = prediction.labels
            model.predicted[prediction.index] = True
        self._dirty.setdefault(key, set()).update(p.index for p in batch)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw_predictions(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for key, z_indices in dirty.items():
            self.viewer.refresh_overlay(key, z_indices)

    def _show_progress(self, worker: InferenceWorker, done: int, total: int) -> None:
        if worker is self.inference:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            self.progress.setFormat("inference %p%")

    def _show_device(self, text: str) -> None:
        key = text.split(":")[0]
        if key in self.models:
            self.models[key].device = text.split(": ", 1)[1]
        self.device_label.setText("   ".join(f"{k} on {m.device}" for k, m in self.models.items() if m.device))

    def _inference_done(self, worker: InferenceWorker, completed: bool) -> None:
        if worker is not self.inference:
            return  # superseded by a newer run
        self._redraw_predictions()
        self.inference = None
        self.progress.hide()
        self.cancel_button.hide()
        self.statusBar().showMessage("Inference finished" if completed else "Inference stopped", 5000)
        self.inference_finished.emit(completed)

    def closeEvent(self, event) -> None:
        # Nothing may run on after the window is gone: stop inference, let loads finish.
        self.cancel_inference()
        Worker.pool().waitForDone()
        super().closeEvent(event)

    # -- background work ----------------------------------------------------------------
    def _run(self, function, *args, done) -> None:
        worker = Worker(function, *args)
        self._jobs.add(worker)
        self._update_busy()
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda: self._finished(worker))
        worker.start()

    def _finished(self, worker) -> None:
        self._jobs.discard(worker)
        self._update_busy()

    def _update_busy(self) -> None:
        if self.inference is None:
            self.progress.setRange(0, 0)
            self.progress.setVisible(bool(self._jobs))

    def _failed(self, exc: Exception) -> None:
        from ..ml.checkpoint import CheckpointError

        if not isinstance(exc, (VolumeLoadError, LabelSaveError, CheckpointError)):
            raise exc  # a programming error: let it surface
        title = "Cannot use the checkpoint" if isinstance(exc, CheckpointError) else "Cannot open"
        self._error(str(exc), title)

    def _error(self, message: str, title: str = "Cannot open") -> None:
        self.load_failed.emit(message)
        QMessageBox.critical(self, title, message)


def _class_name(classes: list[LabelClass], value: int) -> str:
    return next((c.name for c in classes if c.value == value), "background" if value == 0 else str(value))


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


def _load_predictor(path):
    from ..ml.inference import Predictor  # torch is imported when a model is wanted

    return Predictor.from_checkpoint(path)
