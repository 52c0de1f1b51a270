"""The main window: wires menus, controls and the views to core and ml functions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QSlider, QStackedWidget, QToolBar, QVBoxLayout,
                               QWidget)

from ..core.dicomseg import export_reason
from ..core.errors import LabelSaveError, VolumeLoadError
from ..core.io import IMAGE_EXTENSIONS, LabelClass, list_dicom_series
from ..core.journal import (Journal, JournalError, RecoveredLabels, image_key, journal_path, set_aside_path,
                            unsaved_edits)
from ..core.labels import LabelMap
from ..core.live import LiveMetrics
from ..core.volume import VIEWS, Volume
from ..core.classes import class_name
from .case import LoadedModel, OpenCase, demo_case, load_predictor, open_case, read_labels
from .compare import CompareMixin, CompareView
from .dialogs import choose_series
from .editing import EditingMixin
from .metrics_panel import MetricsPanel
from .slice_view import Overlay, label_lookup_table
from .tools import ToolPanel
from .viewer import Viewer
from .workers import InferenceWorker, Worker

AUTO_WINDOW = "Auto (1-99th percentile)"
MODEL_KEYS = ("A", "B")
RECENT_LIMIT = 10
#: Overlay name -> (menu text, visibility shortcut, drawn as outline by default)
OVERLAYS = {"labels": ("Labels", "1", False), "A": ("Model A", "2", True), "B": ("Model B", "3", True)}


def settings() -> QSettings:
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "segview", "segview")


class MainWindow(EditingMixin, CompareMixin, QMainWindow):
    loaded = Signal()               # a volume is on screen (tests and --screenshot wait for it)
    load_failed = Signal(str)
    model_loaded = Signal(str)      # model key
    inference_finished = Signal(bool)  # True: every slice predicted; False: cancelled or failed
    saved = Signal(str)             # the labels were written to this path

    def __init__(self):
        super().__init__()
        self.setWindowTitle("segview")
        self.resize(1440, 900)
        self.setAcceptDrops(True)
        self.volume: Volume | None = None
        self.label_map: LabelMap | None = None
        self.live: LiveMetrics | None = None
        self.journal: Journal | None = None
        self.labels_path: Path | None = None
        self.classes: list[LabelClass] = []
        self.models: dict[str, LoadedModel] = {}
        self._last_point = None
        self._edits = 0  # label changes so far: a save knows whether it is still current
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
        self._metrics_timer = QTimer(self, singleShot=True, interval=30)  # the panel, not every mouse move
        self._metrics_timer.timeout.connect(self._show_metrics)
        self._build_docks()
        for view in self.viewer.views.values():
            view.stroked.connect(self._stroke)
        self.viewer.active_slice_changed.connect(lambda *_: self._metrics_timer.start())
        self.compare.stroked.connect(self._stroke)
        self.compare.slice_changed.connect(self._show_slice_number)
        self.compare.slice_changed.connect(lambda *_: self._metrics_timer.start())
        self.compare.cursor_moved.connect(self._show_cursor)
        self.compare.window_changed.connect(self._show_window)
        self.compare.window_changed.connect(lambda c, w: self.viewer.set_window(c, w) if self.comparing else None)
        self.viewer.window_changed.connect(lambda c, w: self.compare.set_window(c, w) if not self.comparing else None)

    @property
    def view(self):
        """The active slice view."""
        return self.viewer.active

    @property
    def labels(self) -> np.ndarray | None:
        """The edited label volume (z, y, x) uint8."""
        return self.label_map.array if self.label_map is not None else None

    # -- layout -------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.view_choice = QComboBox()
        self.view_choice.addItems([v.capitalize() for v in VIEWS])
        self.view_choice.currentIndexChanged.connect(lambda n: self.viewer.show_view(VIEWS[n]))
        self.slider = QSlider(Qt.Horizontal)
        self.slider.valueChanged.connect(lambda z: (self.compare if self.comparing else self.viewer).set_slice(z))
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
        self.opacity.valueChanged.connect(lambda v: (self.viewer.set_opacity(v / 100), self.compare.set_opacity(v / 100)))
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
        self.compare = CompareView()
        self.central_views = QStackedWidget()
        self.central_views.addWidget(self.viewer)
        self.central_views.addWidget(self.compare)
        layout.addWidget(self.central_views, stretch=1)
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

    def _build_docks(self) -> None:
        self.tools = ToolPanel()
        self.tools.tool_changed.connect(self._tool_changed)
        self.tools.brush_changed.connect(lambda _: self._tool_changed(self.tools.tool))
        self.tools.operation.connect(self._slice_operation)
        self.metrics = MetricsPanel()
        self.metrics.slice_clicked.connect(self._go_to_slice)
        self.metrics.reviewed_only.toggled.connect(lambda _: self._show_metrics())
        docks = []
        for title, widget in (("Tools", self.tools), ("Metrics: Dice / IoU against the labels", self.metrics)):
            dock = QDockWidget(title, self)
            dock.setWidget(widget)
            dock.setMinimumWidth(440)
            dock.setMaximumWidth(520)
            dock.setFeatures(QDockWidget.DockWidgetMovable | QDockWidget.DockWidgetFloatable)
            self.addDockWidget(Qt.RightDockWidgetArea, dock)
            docks.append(dock)
        self.resizeDocks(docks, [300, 560], Qt.Vertical)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open image...", QKeySequence.Open, self.choose_image)
        menu.addAction("Open &DICOM folder...", "Ctrl+D", self.choose_dicom_folder)
        menu.addAction("Open &labels...", "Ctrl+L", self.choose_labels)
        self.recent_menu = menu.addMenu("Open &recent")
        self._fill_recent_menu()
        menu.addSeparator()
        menu.addAction("&Save labels", QKeySequence.Save, self.save)
        menu.addAction("Save labels &as...", QKeySequence.SaveAs, self.save_as)
        menu.addAction("Export comparison &report...", self.export_report)
        self.seg_action = menu.addAction("Export DICOM &SEG...", self.export_dicom_seg)
        self.seg_action.setEnabled(False)
        menu.setToolTipsVisible(True)
        menu.addAction("Export &metrics as CSV...", self.export_metrics)
        menu.addSeparator()
        menu.addAction("&Quit", QKeySequence.Quit, self.close)

        menu = self.menuBar().addMenu("&Edit")
        self.undo_action = menu.addAction("&Undo", QKeySequence.Undo, self.undo)
        self.redo_action = menu.addAction("&Redo", QKeySequence("Ctrl+Shift+Z"), self.redo)
        menu.addSeparator()
        for name, _, key in (("navigate", None, "N"), ("brush", None, "B"), ("eraser", None, "E"), ("fill", None, "G")):
            menu.addAction(f"{name.capitalize()} tool", key, lambda name=name: self.tools.set_tool(name))
        menu.addAction("Smaller brush", "[", lambda: self.tools.step_radius(1 / 1.25))
        menu.addAction("Larger brush", "]", lambda: self.tools.step_radius(1.25))
        menu.addAction("Mark slice reviewed", "M", lambda: self._slice_operation("review"))
        menu.addSeparator()
        for key in MODEL_KEYS:
            menu.addAction(f"Labels from model {key}: this slice", lambda key=key: self.copy_prediction(key, True))
            menu.addAction(f"Labels from model {key}: whole volume", lambda key=key: self.copy_prediction(key, False))

        menu = self.menuBar().addMenu("&View")
        three = menu.addAction("&Three views", "T")
        three.setCheckable(True)
        three.toggled.connect(self.viewer.set_three_views)
        menu.addAction("&Fit to window", "F", lambda: (self.viewer.fit(), self.compare.fit()))
        self.compare_action = menu.addAction("&Compare A | B", "K")
        self.compare_action.setCheckable(True)
        self.compare_action.toggled.connect(self.set_comparing)
        self.disagreement_action = menu.addAction("&Disagreement of A and B", "Shift+K")
        self.disagreement_action.setCheckable(True)
        self.disagreement_action.toggled.connect(self._show_disagreement)
        menu.addAction("Next most disputed slice", "D", self.next_disputed_slice)
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
            show.toggled.connect(lambda on, name=name: (self.viewer.set_overlay_style(name, visible=on),
                                                        self._update_compare()))
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
            self._run(open_case, path, None, labels_path, done=self._show_case)

    def _pick_series(self, folder, series, labels_path) -> None:
        if len(series) <= 1 or len([s for s in series if not s.is_localizer]) == 1:
            chosen = next((s for s in series if not s.is_localizer), series[0] if series else None)
        else:
            chosen = choose_series(self, folder, series)
            if chosen is None:
                return
        self._run(open_case, folder, chosen.uid if chosen else None, labels_path, done=self._show_case)

    def open_labels(self, path) -> None:
        """Replace the labels by a label file on the image's grid (one undo step)."""
        if self.volume is None:
            return self._error("Open an image before its labels.")
        self._run(read_labels, path, self.volume, done=lambda result: self._replace_labels(Path(path), *result))

    def open_demo(self, task: str = "cardiac") -> None:
        self._run(demo_case, task, done=self._show_case)

    def load_model(self, path, key: str = "A") -> None:
        """Load checkpoint ``path`` as model ``key`` ("A" or "B") and run it on the volume."""
        self._run(load_predictor, path, done=lambda predictor: self._add_model(key, Path(path), predictor))

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
    def _show_case(self, case: OpenCase) -> None:
        if not self._close_labels():
            return
        self.cancel_inference()
        volume = self.volume = case.volume
        self.label_map, self.live = case.labels, case.live
        recovered = case.recovered if case.recovered and unsaved_edits(volume) else None  # not closed since
        journal_warning = self._start_journal(case, recovered is not None)
        self.labels_path = case.labels_path
        self.label_map.listeners.append(self._labels_edited)
        self.label_map.step_listeners.append(self._step_done)
        source = volume.meta.get("source", "")
        self.setWindowTitle(f"segview - {volume.meta.get('series_description') or Path(source).name}[*]")
        self.setWindowModified(False)
        if source and not source.startswith("demo"):
            self._remember(source)
        self.viewer.set_volume(volume)
        self.compare.set_volume(volume)
        self.classes = case.classes
        self._set_overlay("labels", self.labels, self.classes)
        for key in self.models:
            self._reset_prediction(key)
        self._show_legend()
        self._fill_window_presets(volume)
        self._tool_changed(self.tools.tool)
        reason = export_reason(volume)
        self.seg_action.setEnabled(reason is None)
        self.seg_action.setToolTip(reason or "The labels as a DICOM SEG that references this series")
        warnings = list(volume.meta.get("warnings") or []) + ([journal_warning] if journal_warning else [])
        if warnings:
            QMessageBox.warning(self, "Opened with warnings", "\n\n".join(warnings))
        if recovered is not None:
            self._offer_recovery(recovered)
            set_aside_path(volume).unlink(missing_ok=True)
        self._show_metrics()
        self.loaded.emit()
        if self.models:
            self._start_timer.start()

    def _start_journal(self, case: OpenCase, keep_crashed: bool) -> str:
        """Journal the edits of this image; a crashed session's journal is set aside first
        until the user has decided about it. Returns a warning when it cannot be written."""
        path = journal_path(case.volume)
        try:
            if keep_crashed and path.exists():
                path.replace(set_aside_path(case.volume))
            self.journal = Journal.start(path, self.label_map, image_key(case.volume), case.snapshot)
        except (JournalError, OSError) as exc:
            self.journal = None
            return f"{exc}. Edits are not journalled: save often."
        return ""

    def _offer_recovery(self, recovered: RecoveredLabels) -> None:
        answer = QMessageBox.question(
            self, "Restore unsaved edits?",
            f"segview found {recovered.steps} edit step(s) on this image that were never saved "
            "(the program did not close normally). Restore them?", QMessageBox.Yes | QMessageBox.No)
        if answer == QMessageBox.Yes:
            self.label_map.begin_stroke()
            self.label_map.copy_from(recovered.labels)
            self.label_map.end_stroke()

    def _ensure_classes(self, num_classes: int) -> None:
        """The live metrics count at least ``num_classes`` classes. Rare (a model or a label
        file with more classes than known so far): then everything is recounted once."""
        if num_classes <= self.live.num_classes:
            return
        self.label_map.listeners.remove(self.live._labels_changed)
        self.live = LiveMetrics(self.label_map, num_classes)
        for key, model in self.models.items():
            if model.prediction is not None:
                self.live.add_model(key, model.prediction)

    def _replace_labels(self, path: Path, labels: np.ndarray, classes) -> None:
        self._ensure_classes(int(labels.max()) + 1)
        if classes:
            self.classes = list(classes)
            self._set_overlay("labels", self.labels, self.classes)
            self._show_legend()
        self.label_map.begin_stroke()
        self.label_map.copy_from(labels.astype(np.uint8))
        self.label_map.end_stroke()
        self.labels_path = path

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
        self.tools.set_classes(self._editable_classes())
        self.metrics.set_classes(self._editable_classes())
        self._update_compare()
        self.model_info.setText("   |   ".join(f"<b>{k}</b> {m.describe()}" for k, m in self.models.items()))
        self.model_info.setVisible(bool(self.models) and not self.comparing)
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
            text += f"   label {class_name(self.classes, int(self.labels[voxel]))}"
        for key, model in self.models.items():
            if model.predicted is not None and model.predicted[z]:
                text += f"   {key} {class_name(model.classes, int(model.prediction[voxel]))}"
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
        self._ensure_classes(model.predictor.num_classes)
        self.live.add_model(key, model.prediction, empty=True)
        self._update_compare()
        self._metrics_timer.start()

    def run_inference(self) -> None:
        """Predict every slice with every model, the slice on screen first; a run already
        going is cancelled (it stops after its current batch)."""
        if self.volume is None or not self.models:
            return
        self.cancel_inference()
        first = self.viewer.plane_view().index
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
            self.live.set_prediction_slice(key, prediction.index, prediction.labels)
            model.predicted[prediction.index] = True
        self._dirty.setdefault(key, set()).update(p.index for p in batch)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw_predictions(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for key, z_indices in dirty.items():
            self.viewer.refresh_overlay(key, z_indices)
            if self.comparing:
                self.compare.refresh(z_indices)
        if dirty:
            self._show_metrics()

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
        if not self._close_labels():
            return event.ignore()
        # Nothing may run on after the window is gone: stop inference, let loads finish.
        self.cancel_inference()
        Worker.pool().waitForDone()
        super().closeEvent(event)

    # -- background work ----------------------------------------------------------------
    def _run(self, function, *args, done, failed=None) -> None:
        worker = Worker(function, *args)
        self._jobs.add(worker)
        self._update_busy()
        worker.signals.returned.connect(done)
        worker.signals.errored.connect(failed or self._failed)
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
