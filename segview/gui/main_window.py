"""The main window. It holds one ``ReviewSession`` and wires menus, panels and the
workspace to it; every state of the work (image, labels, review marks, models and their
predictions, metrics, journal) lives in the session, none in the widgets."""
from __future__ import annotations

import tempfile
import threading
import uuid
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QGroupBox, QInputDialog, QLabel, QMainWindow,
                               QMessageBox, QProgressBar, QPushButton, QSizePolicy, QSlider, QToolBar, QVBoxLayout,
                               QWidget)

from ..core.classes import MODEL_COLORS, class_name, merged_classes
from ..core.compare import rank_slices, write_report
from ..core.dicom import patient_line
from ..core.dicomseg import export_reason
from ..core.errors import SegviewError
from ..core.io import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, list_dicom_series
from ..core.journal import set_aside_journals
from ..core.labels import Edit, Gaps, Mark
from ..core.live import write_metrics_csv
from ..core.report import counted
from ..core.volume import VIEWS
from ..session import SLOTS, PredictionBatch, ReviewSession, SessionError, read_label_file
from ..session.interaction import ClickJob
from ..session.review import COPY_PIECE_S, CopyJob, FillJob, PatchWrite, ToolJob, slices_text
from ..session.models import load_predictor
from ..session.rulers import measurements_path
from .compare import labels_outline_colour
from .dialogs import choose_series
from .effects import Effect, PlanePoint, ToolSettings, kept_note, new_effects
from .host import EDIT_MENU, EXPORT_REPORT_ACTION, FILE_MENU, MODEL_MENU, OPEN_DICOM_ACTION, VIEW_MENU
from .metrics_panel import MetricsPanel, ShownPlane
from .settings import (dialog_folder, dialog_path, is_retrieved, last_folder, pacs_labels_folder, pacs_labels_path,
                       recent, remember_folder, remember_labels, remember_recent, saved_labels,
                       set_pacs_labels_folder)
from .tools import ONE_SIDED_EXPLAINED, ToolPanel, preview_colours, preview_legend, preview_overlay
from .widgets import scrolled
from .workers import GeneratorWorker, Worker, describe_device, run_modal
from .click_tool import install_clicks
from .crosshair import install_crosshair
from .level_tool import install_level_tracing
from .measures_panel import install_measures
from .polygon_tool import install_polygon
from .roi_tool import install_region_shapes
from .ruler_tool import install_rulers
from .statistics_panel import install_statistics
from .surface_view import install_surfaces
from .worklist_panel import install_worklist
from .workspace import Workspace

AUTO_WINDOW = "Auto (1-99th percentile)"
LOADING_OTHER_SLICES = "Loading the other slices..."  # the status bar while a preview shows
#: Overlay name -> (menu text, visibility shortcut, drawn as outline by default)
OVERLAYS = {"labels": ("Labels", "1", False), "A": ("Model A", "2", True), "B": ("Model B", "3", True)}


def models_named(slots) -> str:
    """"Model A", "Models A and B"."""
    return f"Model {slots[0]}" if len(slots) == 1 else f"Models {' and '.join(slots)}"


class MainWindow(QMainWindow):
    loaded = Signal()                  # a session is on screen (tests and --screenshot wait for it)
    session_shown = Signal()           # a new session is on screen, before any question about it
    load_failed = Signal(str)
    model_loaded = Signal(str)         # slot
    inference_finished = Signal(bool)  # True: every slice predicted; False: cancelled or failed
    saved = Signal(str)                # the labels were written to this path
    seg_exported = Signal(str)         # a DICOM SEG of the labels was written to this path
    session_changed = Signal()         # the session's models or classes changed (panels rebuild)
    predictions_changed = Signal()     # streamed prediction slices were stored and drawn
    prediction_copied = Signal(int)    # a whole-volume copy ended: voxels changed, -1 when nothing was applied
    slices_filled = Signal(int)        # Fill between slices ended: voxels changed, -1 when nothing was applied
    review_changed = Signal()          # a slice was marked reviewed or no longer (also by undo)
    modified_changed = Signal(bool)    # the labels came to differ from those saved, or no longer

    def __init__(self):
        super().__init__()
        self.setWindowTitle("segview")
        self.resize(1440, 900)
        self.setAcceptDrops(True)
        self.session: ReviewSession | None = None
        self.effects = new_effects()  # this window's own: an effect holds its drag in progress
        self.effect: Effect = self.effects[0]
        self.inference: GeneratorWorker | None = None
        self._cancelled_by_person = False  # the inference running was cancelled by Esc or Cancel
        # A change of the whole labels (a model's copy, a fill between slices) computed in a
        # worker, then written a piece per event-loop turn (``_run_volume_work``): one at a time.
        self._copy_stop: threading.Event | None = None  # set to stop the one running (its Cancel)
        self._copy_name = ""  # its name ("Copy of model A")
        self._copy_write: PatchWrite | None = None  # its result being written
        self._copy_over: Callable[[], None] = lambda: None  # said when it ends unwritten
        self._models_waiting: dict[str, tuple[Path, object]] = {}  # loaded before any image
        self._models_loading: set[str] = set()  # slots whose checkpoint a worker is reading
        self._models_asking: set[str] = set()  # slots whose "run it on this image?" question is open
        # What File > Open chose: remembered for the next dialog once the image is on screen, not
        # before: while the question about the previous image's unsaved labels is open, Save must
        # not propose the folder of the image being opened (the demo's labels went into a DICOM folder).
        self._chosen: str | None = None
        self._jobs: set[Worker] = set()
        self._seg_folder: tempfile.TemporaryDirectory | None = None  # the SEGs written to send to a PACS
        self._dirty: set[int] = set()   # streamed z planes not yet redrawn
        self._disputed_shown: int | None = None  # the slice D went to last, in this session
        self.custom_window: tuple[float, float] | None = None  # (center, width) of the last right drag
        self.workspace = Workspace()
        self._build_controls()
        self._build_docks()
        self._build_menus()
        self._build_status_bar()
        self.workspace.slice_changed.connect(self._show_slice_number)
        self.workspace.cursor_moved.connect(self._show_cursor)
        self.workspace.window_changed.connect(self._show_window)
        self.workspace.stroked.connect(self._stroke)
        self.workspace.edit_refused.connect(lambda: self.statusBar().showMessage(
            "The disagreement pane only shows where A and B are wrong: edit in panes A and B (Shift+K).", 8000))
        self._redraw_timer = QTimer(self, singleShot=True, interval=40)  # streamed slices: ~25 redraws/s
        self._redraw_timer.timeout.connect(self._redraw_predictions)
        # During a drag, label edits are drawn once per event-loop pass, not once per mouse
        # move: a fast drag (or a coronal stroke crossing many slices) never waits on painting.
        self._dragging = False
        self._tool_note = ""  # the status bar's last note from a tool's click, cleared by the next click
        self._label_timer = QTimer(self, singleShot=True, interval=0)
        self._label_timer.timeout.connect(self._redraw_labels)
        self._dirty_labels: set[int] = set()
        self._start_timer = QTimer(self, singleShot=True, interval=50)   # one run for a burst of loads
        self._start_timer.timeout.connect(self._run_pending)
        self._metrics_timer = QTimer(self, singleShot=True, interval=30)  # the panel, not every mouse move
        self._metrics_timer.timeout.connect(self._show_metrics)
        self.worklist_controller = install_worklist(self)  # File > Open dataset, the Worklist menu and dock
        self.worklist_controller.dataset_opened.connect(self._show_metrics)  # the hint names its models
        self.measures_controller = install_measures(self)  # boundary metrics and clinical measures dock
        self.click_controller = install_clicks(self)  # the Click tool's model runs and dots
        self.polygon_controller = install_polygon(self)  # the Polygon tool's line, closing and cancelling
        self.ruler_controller = install_rulers(self)  # the rulers drawn and the Rulers dock
        self.statistics_controller = install_statistics(self)  # region statistics in the measures dock
        self.roi_controller = install_region_shapes(self, self.statistics_controller.box.layout())  # the ROI tool (O)
        self.crosshair = install_crosshair(self)  # the linked crosshair (X), moved by Shift + mouse move
        self.level_controller = install_level_tracing(self)  # level tracing's outline and tolerance
        self.surfaces = install_surfaces(self)  # the 3D view's dock (4)

    # -- what tests and scripts read --------------------------------------------------
    @property
    def comparing(self) -> bool:
        return self.workspace.mode != "views"

    def current_slice(self) -> int:
        """The acquired (z) plane on screen."""
        return self.workspace.current_slice()

    # -- layout -------------------------------------------------------------------------
    def _build_controls(self) -> None:
        self.view_choice = QComboBox()
        self.view_choice.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrow keys scroll slices, not this
        self.view_choice.addItems([v.capitalize() for v in VIEWS])
        self.view_choice.currentIndexChanged.connect(lambda n: self.workspace.viewer.show_view(VIEWS[n]))
        # In three views the box names the active view, which may be a small one: choosing
        # that same plane (no index change) must still show it large.
        self.view_choice.activated.connect(self._show_chosen_view_large)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.workspace.set_shown_slice)
        self.slice_number = QLabel("- / -")
        self.slice_number.setMinimumWidth(150)
        self.window_choice = QComboBox()
        self.window_choice.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.window_choice.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.window_choice.currentIndexChanged.connect(self._apply_window)
        self.window_values = QLabel()
        self.window_values.setMinimumWidth(120)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.setMaximumWidth(100)
        self.opacity.valueChanged.connect(lambda v: self.workspace.set_opacity(v / 100))
        bar = QToolBar("Slice")
        bar.setMovable(False)
        for label, widget in (("View ", self.view_choice), (None, self.slider), (None, self.slice_number),
                              (" Window ", self.window_choice), (None, self.window_values),
                              (" Opacity ", self.opacity)):
            if label:
                bar.addWidget(QLabel(label))
            bar.addWidget(widget)
        self.addToolBar(bar)
        self.legend, self.model_info = QLabel(), QLabel()
        for line in (self.legend, self.model_info):
            line.setTextFormat(Qt.TextFormat.RichText)
            # Their text (which changes with the layout) must not set the centre's width:
            # it wraps instead, and the docks beside keep their widths in every layout.
            line.setWordWrap(True)
            line.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout()
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.legend)
        layout.addWidget(self.model_info)
        layout.addWidget(self.workspace, stretch=1)
        central = QWidget()
        central.setLayout(layout)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        # What lies under the mouse: a widget of its own, so a message (saved, preview, D)
        # shows over it for a while and does not vanish at the next mouse move.
        self.read_out = QLabel()
        self.statusBar().addWidget(self.read_out, 1)
        self.device_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.cancel_button.hide()
        for widget in (self.device_label, self.progress, self.cancel_button):
            self.statusBar().addPermanentWidget(widget)
        # A message longer than the bar is cut off there: the whole of it shows on hover.
        self.statusBar().messageChanged.connect(self._show_message_whole)

    def _show_message_whole(self, message: str) -> None:
        self.statusBar().setToolTip(message)

    def _build_docks(self) -> None:
        self.tools = ToolPanel([(e.name, e.text, e.key, e.tip) for e in self.effects])
        self.tools.tool_changed.connect(self.set_tool)
        self.tools.brush_changed.connect(lambda _: self._apply_tool())
        self.tools.settings_changed.connect(self._apply_brush_settings)
        self.tools.operation.connect(self._slice_operation)
        self.tools.class_tool.connect(self.class_tool)
        self._enable_image_controls(False)
        self.metrics = MetricsPanel()
        self.metrics.slice_clicked.connect(self.workspace.go_to_slice)
        self.metrics.reviewed_only.toggled.connect(lambda _: self._show_metrics())
        self.metrics.ranking_changed.connect(self._show_metrics)
        # Tools on the left (as 3D Slicer's module panel), metrics on the right, each the
        # window's full height, so neither clips the other on a 1440 x 900 screen.
        docks = []
        for title, widget, area, width in (("Tools", self.tools, Qt.DockWidgetArea.LeftDockWidgetArea, 290),
                                           ("Metrics", self.metrics,  # tabbed with two more: short titles
                                            Qt.DockWidgetArea.RightDockWidgetArea, 400)):
            dock = QDockWidget(title, self)
            dock.setWidget(scrolled(widget) if widget is self.tools else widget)
            dock.setMinimumWidth(width)
            dock.setMaximumWidth(width + 160)  # the image keeps most of the window
            features = QDockWidget.DockWidgetFeature
            dock.setFeatures(features.DockWidgetMovable | features.DockWidgetFloatable)
            self.addDockWidget(area, dock)
            docks.append(dock)
        # The image gets what the docks leave: the tools start at their least width, the
        # metrics where a three-class table (rows, five classes' columns, pixel error) fits.
        self.resizeDocks(docks, [290, 470], Qt.Orientation.Horizontal)

    def _build_menus(self) -> None:
        menu = self.menuBar().addMenu("&File")
        menu.setObjectName(FILE_MENU)
        menu.addAction("&Open image...", QKeySequence.StandardKey.Open, self.choose_image)
        menu.addAction("Open &DICOM folder...", "Ctrl+D", self.choose_dicom_folder).setObjectName(OPEN_DICOM_ACTION)
        menu.addAction("Open &labels...", "Ctrl+L", self.choose_labels)
        menu.addAction("Open from &PACS...", self.open_from_pacs)
        self.recent_menu = menu.addMenu("Open &recent")
        self._fill_recent_menu()
        menu.addAction("Recover &edits...", self.recover_edits)
        menu.addSeparator()
        self.save_action = menu.addAction("&Save labels", QKeySequence.StandardKey.Save, self.save)
        self.save_as_action = menu.addAction("Save labels &as...", QKeySequence.StandardKey.SaveAs, self.save_as)
        # Greyed in an empty window, their keys still say why (a tester's Ctrl+S did nothing, without a word).
        self._empty_window_keys = []
        for action in (self.save_action, self.save_as_action):
            for sequence in action.shortcuts():
                shortcut = QShortcut(sequence, self)
                shortcut.activated.connect(self._nothing_open)
                self._empty_window_keys.append(shortcut)
        self.export_report_action = menu.addAction("Export comparison &report...", self.export_report)
        self.export_report_action.setObjectName(EXPORT_REPORT_ACTION)
        self.seg_action = menu.addAction("Export DICOM &SEG...", self.export_dicom_seg)
        self.send_seg_action = menu.addAction("Send SEG to PA&CS...", self.send_seg_to_pacs)
        for action in (self.seg_action, self.send_seg_action):
            action.setEnabled(False)
        menu.setToolTipsVisible(True)
        self.export_metrics_action = menu.addAction("Export &metrics as CSV...", self.export_metrics)
        self._enable_file_actions()
        menu.addSeparator()
        menu.addAction("&Quit", QKeySequence.StandardKey.Quit, self.close)

        menu = self.edit_menu = self.menuBar().addMenu("&Edit")
        menu.setObjectName(EDIT_MENU)
        self.undo_action = menu.addAction("&Undo", QKeySequence.StandardKey.Undo, self.undo)
        self.redo_action = menu.addAction("&Redo", self.redo)
        # Ctrl+Y too on every platform (people come with either habit), and the platform's own.
        keys = [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")]
        keys += [k for k in QKeySequence.keyBindings(QKeySequence.StandardKey.Redo) if k not in keys]
        self.redo_action.setShortcuts(keys)
        menu.addSeparator()
        for effect in self.effects:
            menu.addAction(f"{effect.text} tool", effect.key, partial(self.tools.set_tool, effect.name))
        menu.addAction("Smaller brush", "[", lambda: self.tools.step_radius(1 / 1.25))
        menu.addAction("Larger brush", "]", lambda: self.tools.step_radius(1.25))
        menu.addAction("Next class", ".", partial(self._step_class, 1))
        menu.addAction("Previous class", ",", partial(self._step_class, -1))
        menu.addAction("Mark slice reviewed", "M", lambda: self._slice_operation("review"))
        menu.addSeparator()
        copies = {slot: [menu.addAction(f"Labels from model {slot}: {where}", partial(self.copy_prediction, slot, one))
                         for where, one in (("this slice", True), ("whole volume", False))] for slot in SLOTS}
        menu.aboutToShow.connect(partial(self._enable_copies, copies))

        menu = self.menuBar().addMenu("&View")
        menu.setObjectName(VIEW_MENU)
        three = menu.addAction("&Three views", "T")
        three.setCheckable(True)
        three.toggled.connect(self.workspace.viewer.set_three_views)
        three.toggled.connect(lambda _: self._show_view_choice())
        menu.addAction("&Fit to window", "F", self.workspace.fit)
        self.compare_action = menu.addAction("&Compare A | B", "K")
        self.compare_action.setCheckable(True)
        self.compare_action.triggered.connect(lambda on: self.set_mode("compare" if on else "views"))
        self.disagreement_action = menu.addAction("&Disagreement of A and B", "Shift+K")
        self.disagreement_action.setCheckable(True)
        # Shift+K again: back to the layout the error map was entered from.
        self.disagreement_action.triggered.connect(
            lambda on: self.set_mode("disagreement" if on else self.workspace.previous_mode))
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
            show.toggled.connect(lambda on, name=name: self.workspace.set_overlay_style(name, visible=on))
            draw.toggled.connect(lambda on, name=name: self.workspace.set_overlay_style(name, outline=on))
            draw.toggled.connect(lambda _: self._show_legend())
            show.setText(text)
            overlay_bar.addAction(show)
            self.overlay_actions[name] = (show, draw)
        self.addToolBar(overlay_bar)

        menu = self.menuBar().addMenu("&Model")
        menu.setObjectName(MODEL_MENU)
        for slot in SLOTS:
            menu.addAction(f"Load checkpoint &{slot}...", partial(self.choose_model, slot))
        menu.addAction("Load c&lick model...", self.choose_click_model)
        menu.addSeparator()
        menu.addAction("&Run inference", "Ctrl+R", self.run_inference)
        menu.addAction("&Cancel inference", "Esc", self.escape)

    # -- opening ------------------------------------------------------------------------
    def image_source(self) -> str | None:
        """The file or folder the image on screen was read from (None: none, or the demo)."""
        source = str(self.session.volume.meta.get("source", "")) if self.session is not None else ""
        return source if source and not source.startswith("demo") else None

    def start_folder(self) -> str:
        """Where a file dialog starts: the last folder one chose in, else the image's. With a
        dataset open, the last folder where it lies in the dataset, else the dataset's: a
        tester's report of one dataset was offered the folder of another, opened before, and
        a DICOM SEG was proposed in imagesTr/, among the dataset's images."""
        worklist = self.worklist_controller.worklist
        if worklist is None:
            return str(dialog_folder(self.image_source()))
        last, dataset = last_folder(), worklist.folder.resolve()
        return str(last if last is not None and last.resolve().is_relative_to(dataset) else dataset)

    def _start_path(self, name: str) -> str:
        """``name``, a file a save dialog proposes, in ``start_folder``."""
        return str(Path(self.start_folder()) / name)

    def choose_image(self) -> None:
        pattern = " ".join(f"*{e}" for e in IMAGE_EXTENSIONS) + " *.dcm"
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.start_folder(),
                                              f"Images ({pattern});;All files (*)")
        if path:
            self._chosen = path  # its folder is remembered once it is on screen (``show_session``)
            self.open_image(path)

    def choose_dicom_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open DICOM folder", self.start_folder())
        if folder:
            self._chosen = folder
            self.open_image(folder)

    def choose_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open labels", self.start_folder(),
                                              "Labels (*.nii *.nii.gz *.nrrd *.mha *.dcm);;All files (*)")
        remember_folder(path)
        if path:
            self.open_labels(path)

    def choose_model(self, slot: str) -> None:
        start = last_folder("checkpoints") or self.start_folder()
        path, _ = QFileDialog.getOpenFileName(self, f"Load checkpoint {slot}", str(start),
                                              "Checkpoints (*.safetensors *.onnx)")
        remember_folder(path, "checkpoints")
        if path:
            self.load_model(path, slot)

    def choose_click_model(self) -> None:
        start = last_folder("checkpoints") or self.start_folder()
        path, _ = QFileDialog.getOpenFileName(self, "Load click model", str(start),
                                              "Interactive checkpoints (*.safetensors)")
        remember_folder(path, "checkpoints")
        if path:
            self.click_controller.load_model(path)

    def open_image(self, path, labels_path=None) -> None:
        """Open an image file or DICOM folder in the background (a picker for several
        series; the folder is scanned once) with ``labels_path``, else with the labels last
        saved for it (``saved_labels``: any name a person chose) or those a save put beside
        it (``labels_beside_image``) when they are there."""
        path = Path(path).absolute()
        if path.is_dir():
            self._run(list_dicom_series, path, done=lambda series: self._pick_series(path, series, labels_path),
                      reports_progress=True)
        else:
            # The labels saved beside it when none are named; labels that cannot be read on it
            # leave it open with empty ones (and say why).
            self._open_session(partial(ReviewSession.open, path, labels_path, labels_beside=True,
                                       labels_saved=partial(saved_labels, path), empty_if_unreadable=True))

    def _pick_series(self, folder: Path, series, labels_path) -> None:
        if not series:
            return self._error(f"{folder.name} holds no DICOM image series.")
        candidates = [s for s in series if not s.is_localizer] or series
        chosen = candidates[0] if len(candidates) == 1 else choose_series(self, folder, series)
        if chosen is not None:
            self._open_session(partial(ReviewSession.open, folder, labels_path, series=chosen, labels_beside=True,
                                       labels_saved=partial(saved_labels, folder), empty_if_unreadable=True))

    def _open_session(self, open_session) -> None:
        """Run ``open_session(progress=, first_slice=)`` in a worker; its first slice shows as
        soon as it is read (when nothing unsaved is on screen), the session when complete."""
        self._run(open_session, done=self.show_session, failed=self._open_failed, reports_progress=True,
                  shows_first_slice=True)

    def _show_first_slice(self, volume, z: int) -> None:
        """A preview of an image still loading: its slice ``z`` in the plane view, when no
        session is on screen (one stays until the new image has opened: the open may fail)."""
        if self.session is not None:
            return
        presets = volume.meta.get("window_presets") or []
        if presets:
            center, width = presets[0][1], presets[0][2]
        else:
            low, high = np.percentile(volume.array[z], (1, 99))
            center, width = (low + high) / 2, max(high - low, 1.0)
        viewer = self.workspace.viewer
        viewer.set_volume(volume)
        viewer.plane_view().set_slice(z)
        viewer.set_window(center, width)
        self.statusBar().showMessage(LOADING_OTHER_SLICES, 3000)

    def _open_failed(self, exc: Exception) -> None:
        if self.session is None:  # a preview may show what was read before the failure
            self.setWindowTitle("segview")
            self.workspace.viewer.show_nothing()
            self._show_no_slice()
        self._failed(exc)

    def _show_no_slice(self) -> None:
        """The toolbar as with no image: no slice number, slider or window values (a preview
        of an image that then failed to open had set them)."""
        self._set_slider(0, 1)
        self.slice_number.setText("- / -")
        self.window_values.clear()

    def open_labels(self, path) -> None:
        """Replace the labels (and their review marks) by a label file on the image's grid:
        one undo step."""
        if self.session is None:
            return self._error("Open an image before its labels.")
        if not self.session.held_elsewhere and self._refused():  # held: opening again tries the lock
            return
        session = self.session
        self._run(read_label_file, Path(path).absolute(), session.volume, session.key,
                  done=lambda label_file: self._replace_labels(session, label_file))

    def open_demo(self, task: str = "cardiac") -> None:
        self._run(demo_session, task, done=self.show_session)

    def load_model(self, path, slot: str = "A") -> None:
        """Load checkpoint ``path`` into ``slot`` ("A" or "B") and run it on the image."""
        path = Path(path).absolute()
        self._models_loading.add(slot)
        self._show_metrics()
        self._run(load_predictor, path, done=lambda predictor: self._model_read(slot, path, predictor),
                  failed=lambda exc: self._model_read(slot, path, exc))

    def _model_read(self, slot: str, path: Path, predictor) -> None:
        """A worker read checkpoint ``path`` for ``slot``: its predictor, or the error it raised."""
        self._models_loading.discard(slot)
        try:
            if isinstance(predictor, Exception):
                return self._failed(predictor)
            self._add_model(slot, path, predictor)
        finally:
            self._show_metrics()  # the hint: no longer loading

    def waiting_checkpoints(self) -> dict[str, Path]:
        """The checkpoints loaded before any image, waiting for one: {slot: path}."""
        return {slot: path for slot, (path, _) in self._models_waiting.items()}

    def models_hint(self) -> str | None:
        """What the score panels say while they have no model to score: checkpoints being
        read, or loaded and waiting for an image; None: how to load them."""
        if self._models_loading:
            return f"Loading checkpoint {' and '.join(sorted(self._models_loading))}\u2026"
        if self._models_asking:
            asking = sorted(self._models_asking)
            them = "it" if len(asking) == 1 else "them"
            return f"{models_named(asking)}: waiting for your answer to run {them} here."
        worklist = self.worklist_controller.worklist
        if self.session is None and worklist is not None and worklist.checkpoints:  # they wait for a case
            return (f"{models_named(sorted(worklist.checkpoints))} of the dataset: scored on each case "
                    "you open (Enter or a double-click in the worklist).")
        waiting = [slot for slot in SLOTS if slot in self._models_waiting]
        if waiting and self.session is None:
            run = "it runs" if len(waiting) == 1 else "they run"
            return f"{models_named(waiting)} loaded: {run} on the image you open."
        return None

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        checkpoints = [p for p in paths if p.endswith((".safetensors", ".onnx"))]
        for slot, path in zip(SLOTS, checkpoints):
            self.load_model(path, slot)
        images = [p for p in paths if p not in checkpoints]
        if images:
            self.open_image(images[0])

    # -- recent files -------------------------------------------------------------------
    def _remember(self, path: str) -> None:
        remember_recent(path)
        self._fill_recent_menu()

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in recent():
            self.recent_menu.addAction(path, partial(self.open_image, path))
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # -- a session on screen ------------------------------------------------------------
    def show_session(self, session: ReviewSession) -> None:
        """Put ``session`` (opened by a worker, a script or a worklist) on screen; everything
        of the previous one goes (its models stay
        when they fit this image, and run again)."""
        chosen, self._chosen = self._chosen, None
        if not self._close_session():
            session.close(discard=True)
            return
        remember_folder(chosen)
        self.cancel_inference()
        old_models = dict(self._models_waiting)
        self._models_waiting.clear()
        self.session = session
        events = session.labels.events
        events.changed.connect(self._labels_changed)
        events.marked.connect(self._mark_changed)
        events.step.connect(self._step_done)
        volume = session.volume
        source = str(volume.meta.get("source", ""))
        self._disputed_shown = None  # D starts at the top of this image's ranking
        held = session.hold_labels_file()  # a dataset case's file opened directly: its lock, as the worklist's
        if held:
            session.warnings.append(held)
        self.setWindowModified(False)
        self._show_read_only(self.read_only_reason())
        if source and not source.startswith("demo"):
            self._remember(source)
        self.workspace.set_session(session)
        self._fill_window_presets()
        self._apply_brush_settings()
        reason = export_reason(volume)
        for action, tip in ((self.seg_action, "The labels as a DICOM SEG that references this series"),
                            (self.send_seg_action, "The labels as a DICOM SEG, stored in a PACS")):
            action.setEnabled(reason is None)
            action.setToolTip(reason or tip)
        self._session_changed()  # the new image's classes and panels, before any question
        self.session_shown.emit()
        if self.statusBar().currentMessage() == LOADING_OTHER_SLICES:
            self.statusBar().clearMessage()  # loaded: it lingered 3 s (and in --screenshot's picture)
        if session.labels_note:  # the labels it found by itself: which file, and why that one
            self.statusBar().showMessage(session.labels_note, 15000)
        if session.warnings:
            QMessageBox.warning(self, "Opened with warnings", "\n\n".join(session.warnings))
        if session.recoverable_edits is not None:
            self._offer_recovery()
        if session is not self.session:
            return  # the window was closed while a question was open: nothing left to show it in
        self._show_devices()  # its own models: those of the image before go back in one by one, or are refused
        for slot, (path, predictor) in old_models.items():
            if slot not in session.models:  # a session may come with its own (a worklist case)
                self._add_model(slot, path, predictor, start=False)
        self.workspace.active_view().setFocus()
        self.loaded.emit()
        if any(not m.predicted.all() for m in session.models.values()):
            self._start_timer.start()

    def refresh_session(self) -> None:
        """Redraw what shows the session's models, predictions and classes after a script or
        the worklist changed them (say, predictions taken from the cache); lighter than
        ``show_session``."""
        if self.session is not None:
            self._session_changed()

    def _session_changed(self) -> None:
        """Rebuild what shows the session's models and classes: overlays, legend, panels."""
        session = self.session
        assert session is not None
        self.workspace.show_overlays(session)
        self._show_legend()
        self.tools.set_classes(session.classes, session.models)
        self._enable_image_controls(True)
        self._enable_file_actions()  # models come and go with the session
        self.metrics.set_classes(session.classes)
        self._step_done()
        self._show_metrics()
        self.session_changed.emit()

    def _enable_image_controls(self, on: bool) -> None:
        """The class tools and slice buttons work on an image: disabled until one is shown
        (read-only disables the whole panel on top of this)."""
        for box in self.tools.findChildren(QGroupBox):
            box.setEnabled(on)

    def _enable_file_actions(self) -> None:
        """File menu items greyed until there is something to save or export, the reason in
        their tooltips; in an empty window the save keys say it."""
        session = self.session
        models = set(session.models) if session is not None else set()
        reasons = {self.save_action: None, self.save_as_action: None,
                   self.export_report_action: None if {"A", "B"} <= models else
                   "Load two models (A and B) to compare them.",
                   self.export_metrics_action: None if models else
                   "Load a model first: the metrics compare models with the labels."}
        if session is None:  # with an image, the SEG actions follow its export_reason (show_session)
            reasons = dict.fromkeys([*reasons, self.seg_action, self.send_seg_action],
                                    "No image is open: there are no labels to save or export (File > Open image...)")
        for action, reason in reasons.items():
            action.setEnabled(reason is None)
            action.setToolTip(reason or action.text().replace("&", "").rstrip("."))
        for shortcut in self._empty_window_keys:
            shortcut.setEnabled(session is None)

    def _offer_recovery(self) -> None:
        session = self.session
        assert session is not None
        recovered = session.recoverable_edits
        if recovered is None:
            return
        if self.read_only_reason() is not None:  # restored here they could not be saved: kept for later
            self.statusBar().showMessage("A crashed session's unsaved edits of this image are offered once it is "
                                         "editable here (File > Recover edits... finds them too)", 10000)
            return
        answer = QMessageBox.question(
            self, "Restore unsaved edits?",
            f"segview found {recovered.steps} edit step(s) on this image that were never saved "
            f"(the program did not close normally); {_marks_text(recovered.reviewed, session.reviewed)}. "
            "Restore them? (If not, File > Recover edits... still finds them.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        if session is not self.session:
            return  # closed while asked (the app quit, --screenshot's capture): the edits stay set aside
        if answer == QMessageBox.StandardButton.Yes:
            session.restore(recovered)
            self._session_changed()  # the journal's class names and colours: legend, tools, panels
        session.recoverable_edits = None

    def recover_edits(self) -> None:
        """File > Recover edits...: the set-aside journals of crashed sessions of this image."""
        if self.session is None:
            return self._error("Open the image whose edits you want to recover.", "Recover edits")
        reason = self.read_only_reason()
        if reason is not None:  # restored here they could not be saved, and reading it again dropped them
            return self._error(f"{reason}\n\nRecover the edits once it is editable here.", "Recover edits")
        journals = set_aside_journals(self.session.key)
        if not journals:
            QMessageBox.information(self, "Recover edits", "No set-aside edits of this image were found.")
            return
        items = [f"{j.recovered.steps} step(s); {_marks_text(j.recovered.reviewed, self.session.reviewed)}; "
                 f"{_time_text(j.modified)}" for j in journals]
        item, ok = QInputDialog.getItem(self, "Recover edits", "Restore the labels of:", items, 0, False)
        if ok:
            self.session.restore(journals[items.index(item)].recovered)
            self._session_changed()  # the journal's class names and colours: legend, tools, panels

    def _replace_labels(self, session: ReviewSession, label_file) -> None:
        if session is not self.session:
            return  # another image was opened meanwhile
        try:
            unloaded = session.replace_labels(label_file)
        except SessionError as exc:  # a copy began while the file was read
            return self._error(str(exc), "Labels not opened")
        was_held = session.held_elsewhere
        held = session.hold_labels_file()  # a dataset case's file: its lock, as the worklist takes
        if not held and was_held:  # the other segview has closed the case: editable here from now on
            session.now_editable()
        # The window shows the file opened before any question about it: a tester's title
        # still named the previous file, unsaved, behind the warning.
        self._show_read_only(self.read_only_reason())
        self._show_modified()  # opening a label file is no unsaved change
        self._session_changed()
        said = [label_file.warning] if label_file.warning else []
        if unloaded:
            self._show_devices()
        if unloaded or said:
            QMessageBox.warning(self, "Labels opened with warnings", "\n\n".join(said + unloaded))
        if held:
            QMessageBox.warning(self, "Labels opened read-only", held)
        if session is self.session and session.recoverable_edits is not None:
            self._offer_recovery()

    def _show_legend(self) -> None:
        session = self.session
        if session is None:
            return
        self.legend.setText(self._legend_text(session))
        self.legend.setVisible(bool(self.legend.text()))
        self.model_info.setText("   |   ".join(f"<b>{s}</b> {m.describe()}" for s, m in session.models.items()))
        self.model_info.setVisible(bool(session.models) and not self.comparing)
        for name, (show, _) in self.overlay_actions.items():
            model = session.models.get(name)
            show.setEnabled(name == "labels" or model is not None)
            show.setToolTip(model.describe() if model is not None else "")

    def _legend_text(self, session: ReviewSession) -> str:
        """What the overlays on screen mean: the class colours, and how labels and models
        are drawn in this mode (the error map's categories head its own pane)."""
        if self.workspace.mode == "disagreement":
            return ""
        # One entry per class value, as the overlays draw it: the case's own classes, then
        # a checkpoint's classes the case does not name.
        classes = merged_classes(session.classes, *(m.classes for m in session.models.values()))
        items = [f"<span style='color: rgb{tuple(c.color)}'>&#9632;</span> {c.name}" for c in classes if c.value]
        if self.workspace.mode == "compare":
            name, colour = labels_outline_colour(classes)
            return "  ".join(items + [f"&nbsp; each pane: its model filled, the labels outlined in {name} "
                                      f"(<span style='color: rgb{colour}'>&#9633;</span>)"])
        for slot in session.models:
            if self.overlay_actions[slot][1].isChecked():  # "Model A as outline"
                items.append(f"<span style='color: rgb{MODEL_COLORS[slot]}'>&#9633;</span> model {slot} outline")
            else:
                items.append(f"model {slot} filled in the class colours")  # no swatch of its own
        return "  ".join(items)

    def _fill_window_presets(self) -> None:
        volume = self.session.volume
        self.presets = [(AUTO_WINDOW, *volume.meta["auto_window"])] + list(volume.meta.get("window_presets") or [])
        self.custom_window = None
        self.window_choice.blockSignals(True)
        self.window_choice.clear()
        self.window_choice.addItems([f"{n} ({c:g}/{w:g})" for n, c, w in self.presets])
        self.window_choice.blockSignals(False)
        self.window_choice.setCurrentIndex(self._default_preset())
        self._apply_window(self._default_preset())

    def _default_preset(self) -> int:
        """The first header or CT preset for CT; the percentile window otherwise."""
        return 1 if self.session.volume.modality == "CT" and len(self.presets) > 1 else 0

    def _apply_window(self, index: int) -> None:
        presets = getattr(self, "presets", [])
        if 0 <= index < len(presets):
            self.workspace.set_window(*presets[index][1:])
        elif index == len(presets) and self.custom_window is not None:  # back to the custom one
            self.workspace.set_window(*self.custom_window)

    def reset_view(self) -> None:
        if self.session is not None:
            self.window_choice.setCurrentIndex(self._default_preset())
            self._apply_window(self._default_preset())
            self.workspace.fit()

    def _show_window(self, center: float, width: float) -> None:
        """The window's values; the Window box says "Custom" once they are no preset's."""
        self.window_values.setText(f"W {width:.0f}  L {center:.0f}")
        presets, index = getattr(self, "presets", []), self.window_choice.currentIndex()
        if self.session is None or (0 <= index < len(presets) and np.allclose(presets[index][1:], (center, width))):
            return  # a preview while an image loads, or the preset chosen
        self.custom_window = (center, width)
        text = f"Custom ({center:.0f}/{width:.0f})"
        self.window_choice.blockSignals(True)  # shown, not applied again
        if self.window_choice.count() == len(presets):
            self.window_choice.addItem(text)
        self.window_choice.setItemText(len(presets), text)
        self.window_choice.setCurrentIndex(len(presets))
        self.window_choice.blockSignals(False)

    def _show_slice_number(self, index: int, count: int) -> None:
        self._set_slider(index, count)
        self.slice_number.setText(f"{index + 1} / {count}" + self._reviewed_mark())
        self._show_view_choice()
        self._refresh_read_out()
        self._metrics_timer.start()

    def _set_slider(self, index: int, count: int) -> None:
        """The slider at ``index`` of ``count`` slices, shown only: it moves no slice."""
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(count - 1, 0))
        self.slider.setValue(index)
        self.slider.blockSignals(False)

    def _show_view_choice(self) -> None:
        """The View box names the plane on screen. The compare panes show only the acquired
        plane, so in those modes it says which and is off (it drives the views' layout)."""
        view = self.workspace.active_view().view
        self.view_choice.blockSignals(True)
        self.view_choice.setCurrentIndex(VIEWS.index(view))
        self.view_choice.blockSignals(False)
        self.view_choice.setEnabled(not self.comparing)
        if self.comparing:
            tip = f"Compare shows the acquired ({view}) slices; the views show any plane"
        elif self.workspace.viewer.three_views:
            tip = ("The active view (the one clicked last), whose slices the slider and arrow keys move; "
                   "choose a plane to show it large")
        else:
            tip = "The plane shown"
        self.view_choice.setToolTip(tip)

    def _show_chosen_view_large(self, index: int) -> None:
        viewer = self.workspace.viewer
        if viewer.large_view().view != VIEWS[index]:
            viewer.show_view(VIEWS[index])

    def _reviewed_mark(self) -> str:
        """" \u2713 reviewed" when the acquired slice on screen is marked reviewed."""
        session = self.session
        if session is None or (not self.comparing
                               and self.workspace.active_view() is not self.workspace.viewer.plane_view()):
            return ""
        return "  \u2713 reviewed" if session.reviewed[self.current_slice()] else ""

    def _refresh_read_out(self) -> None:
        """The read-out after what changes it without a mouse move: another slice (D, the
        ranking, a key), an edit, undo, streamed predictions."""
        if self.session is not None and self.workspace.volume is self.session.volume:  # not mid-switch
            self._show_cursor(self.workspace.voxel_under_mouse())

    def _show_cursor(self, voxel) -> None:
        if voxel is None or self.session is None:
            return self.read_out.clear()
        session, (z, y, x) = self.session, voxel
        lps = session.volume.index_to_physical(voxel)
        unit = " HU" if session.volume.modality == "CT" else ""
        text = (f"voxel ({x}, {y}, {z})   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm   "
                f"value {session.volume.array[voxel]:g}{unit}   "
                f"label: {class_name(session.classes, int(session.labels.array[voxel]))}")  # a class may be "label 1"
        for slot, model in session.models.items():
            predicted = class_name(model.classes, int(model.prediction[voxel])) if model.predicted[z] else "pending"
            text += f"   {slot}: {predicted}"
        self.read_out.setText(text)

    # -- models and inference -----------------------------------------------------------
    def _add_model(self, slot: str, path: Path, predictor, start: bool = True) -> None:
        if self.session is None:  # no image yet: the model waits for one
            self._models_waiting[slot] = (path, predictor)
            self.model_loaded.emit(slot)
            return
        # Asked before the model goes in, so a No keeps the model it would replace (and its
        # predictions). A run in progress goes on until the new one (after the start timer)
        # replaces it.
        name, conflict = Path(path).stem, self.session.class_conflict(slot, predictor)
        if conflict is not None:  # scored under another class's columns, it would mislead
            self._error(f"Model {slot} ({name}) was not loaded: {conflict}.", "Checkpoint of other classes")
            self._show_devices()
            self.model_loaded.emit(slot)
            return
        warning = self.session.fit_warning(predictor)
        refused = warning is not None and self._ask_to_run(slot, f"{name}: {warning[0].upper()}{warning[1:]}.")
        if refused:
            self.statusBar().showMessage(f"Model {slot} ({name}) not loaded, as you chose", 10000)
        else:
            self.session.add_model(slot, path, predictor)
        self._show_devices()
        self._session_changed()
        self.model_loaded.emit(slot)
        if start and not refused:
            self._start_timer.start()

    def _ask_to_run(self, slot: str, why: str) -> bool:
        """Ask whether model ``slot`` runs on this image despite ``why``; True: refused. The
        score panels say meanwhile that the model waits for the answer."""
        self._models_asking.add(slot)
        self._show_metrics()
        try:
            # No by default: Enter must not run a model whose predictions may be meaningless.
            answer = QMessageBox.question(self, f"Run model {slot} on this image?", f"{why}\n\nRun it anyway?",
                                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                          QMessageBox.StandardButton.No)
        finally:
            self._models_asking.discard(slot)
        return answer != QMessageBox.StandardButton.Yes

    def run_inference(self) -> None:
        """Predict every slice with every model, the slice on screen first; a run already
        going is cancelled (it stops after its current batch)."""
        session = self.session
        if session is None or not session.models:
            return
        self.cancel_inference()
        for model in session.models.values():
            model.device = _device_text(model.predictor)
        self._show_devices()
        worker = GeneratorWorker(session.prediction_batches, self.current_slice())
        worker.signals.yielded.connect(lambda batch: self._stream(worker, session, batch))
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda completed: self._inference_done(worker, session, completed))
        self.inference = worker
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        worker.start()

    def _run_pending(self) -> None:
        """The start timer's run: only when a slice is left to predict. A worklist case shown
        before its cached predictions arrived started the timer; run then, it predicted
        nothing and said "Inference finished"."""
        if self.session is not None and any(not m.predicted.all() for m in self.session.models.values()):
            self.run_inference()

    def escape(self) -> None:
        """Esc (wherever the focus is): ends a click interaction in progress, its clicks
        waiting dropped; else cancels inference."""
        if self.click_controller.interacting:
            self.click_controller.end(cancel=True)
        else:
            self.cancel_inference(by_person=True)

    def cancel_inference(self, by_person: bool = False) -> None:
        """Stop the inference running; ``by_person``: asked for (Esc, Cancel), so its end is
        said. Stopped for another image or other models, it ends without a word: a tester read
        "Inference stopped" after accepting a fine-tuned model as a failure."""
        if self.inference is not None:
            self._cancelled_by_person = by_person
            self.inference.cancel()

    def cancel_jobs(self) -> None:
        """The status bar's Cancel: inference and a whole-volume copy or fill stop (nothing of it is written)."""
        self.cancel_inference(by_person=True)
        if self._copy_stop is not None:
            self._copy_stop.set()

    def _stream(self, worker: GeneratorWorker, session: ReviewSession, batch: PredictionBatch) -> None:
        if worker is not self.inference or session is not self.session or not session.accept(batch):
            return  # a superseded run, another image, or a model since replaced
        if batch.message:
            self.statusBar().showMessage(batch.message, 15000)
            session.models[batch.slot].device = _device_text(batch.predictor)
            self._show_devices()
        self.progress.setRange(0, batch.total)
        self.progress.setValue(batch.done)
        self.progress.setFormat("inference %p%")
        self._dirty.update(p.index for p in batch.predictions)
        if not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw_predictions(self) -> None:
        dirty, self._dirty = self._dirty, set()
        if dirty:
            self.workspace.refresh(dirty, names=("A", "B"))
            self._refresh_read_out()
            self._show_metrics()
            self.predictions_changed.emit()

    def _show_devices(self) -> None:
        models = self.session.models if self.session else {}
        self.device_label.setText("   ".join(f"{s} on {m.device}" for s, m in models.items() if m.device))

    def _inference_done(self, worker: GeneratorWorker, session: ReviewSession, completed: bool) -> None:
        if worker is not self.inference:
            return  # superseded by a newer run
        self.inference = None
        self.progress.setVisible(bool(self._jobs) or self._copy_write is not None)
        self.cancel_button.setVisible(self._copy_stop is not None)
        if session is not self.session:
            return  # the run of an image no longer shown, stopped as it finished: nothing to say of this one
        self._redraw_predictions()
        if completed or self._cancelled_by_person:
            self.statusBar().showMessage("Inference finished" if completed else "Inference cancelled", 5000)
        self._cancelled_by_person = False
        self.inference_finished.emit(completed)

    # -- editing ------------------------------------------------------------------------
    def set_tool(self, name: str) -> None:
        self.effect = next(e for e in self.effects if e.name == name)
        self._apply_tool()

    def _apply_tool(self) -> None:
        radius = self.tools.radius.value() if self.effect.brush else None
        self.workspace.set_tool(radius, self.effect.paints, self.effect.cursor)

    def _apply_brush_settings(self) -> None:
        """The panel's overwrite policy and intensity range govern the hand tools."""
        if self.session is not None:
            self.session.labels.policy = self.tools.policy()
            self.session.labels.intensity_range = self.tools.intensity_range()

    def _stroke(self, phase: str, at: PlanePoint) -> None:
        if self._copy_write is not None:  # the labels' undo step is the copy's or fill's: no edit joins it
            if phase in ("start", "right"):
                self._refused()
            return
        if phase == "right":  # a right click: a removing click, for the tools that take one
            if not self.effect.right_click:
                return
            phase, at = "end", replace(at, erase=True)
            if self._refused():
                return
        if self.session is None or (phase == "start" and self._refused()) or self.read_only_reason() is not None:
            return
        hook = {"start": self.effect.press, "move": self.effect.drag, "end": self.effect.release}[phase]
        self._dragging = phase != "end"
        settings = ToolSettings(self.tools.active_class(), self.tools.radius.value(), self.tools.sphere.isChecked(),
                                self.tools.grow_3d.isChecked(), self.tools.intensity_range())
        try:
            outcome = hook(self.session, at, settings)
        except SegviewError as exc:
            outcome = str(exc)
        if phase == "end":
            self._redraw_labels()  # the stroke is whole on screen when the mouse is released
        if phase == "end" and self.statusBar().currentMessage() == self._tool_note:
            self.statusBar().clearMessage()  # a Fill's refusal still shown read as this click's
        if isinstance(outcome, ToolJob):
            self._run_tool(outcome, self.effect.text)
        elif isinstance(outcome, ClickJob):
            self.click_controller.submit(outcome)
        elif outcome:
            self._tool_note = outcome
            self.statusBar().showMessage(outcome, 8000)

    def class_tool(self, operation: str, preview: bool = False) -> None:
        """A whole-class tool of the tools panel on the chosen class, in a worker: one undo
        step; ``preview`` shows what would change, changing nothing."""
        session = self.session
        if session is None or self._refused():
            return
        value, amount = self.tools.active_class(), self.tools.amount.value()
        try:
            job = self._tool_job(session, operation, value, amount)
        except SegviewError as exc:
            return self.statusBar().showMessage(str(exc), 8000)
        self._run_tool(job, self.tools.class_operation.currentText(), preview)

    def _tool_job(self, session: ReviewSession, operation: str, value: int, amount: float) -> ToolJob:
        if operation.startswith("islands"):
            largest = operation == "islands_largest"
            return session.tool_job("remove_islands", value, None if largest else amount, largest)
        if operation in ("median", "opening", "closing"):
            return session.tool_job("smooth", value, operation, amount)
        if operation in ("expand", "shrink"):
            return session.tool_job("margin", value, amount if operation == "expand" else -amount)
        if operation.startswith("fill_holes"):
            return session.tool_job("fill_holes", value, per_slice=operation == "fill_holes_slices")
        kind, other = self.tools.operand()
        if kind == "model":
            if other not in session.models:
                raise SessionError(f"No model is loaded as {other}.")
            model = session.models[other]
            operand = (model.prediction == value) & model.predicted[:, None, None]
        else:
            operand = other
        return session.tool_job("logical_operation", operation, value, operand)

    def _run_tool(self, job: ToolJob, what: str, preview: bool = False) -> None:
        """Compute ``job`` in a worker, then show what it would change (``preview``) or
        write it: asked first when it would take away more than half of its class."""
        session = self.session

        def done(edits) -> None:
            if session is not self.session:
                return
            change = session.tool_change(job, edits)
            if preview:
                return self._show_preview(change, what)
            if job.tool.startswith("grow") and change.reaches_edge and not self._apply_leak(change, what):
                return self.statusBar().showMessage(f"{what}: not applied, as you chose", 8000)
            if change.removed_fraction > 0.5 and QMessageBox.question(
                    self, f"{what}: take away most of the class?",
                    f"{what} would take away {change.removed_ml:.2f} mL of the class's {change.class_ml:.2f} mL "
                    f"({change.removed_fraction:.0%}). Apply it?",
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.No) != QMessageBox.StandardButton.Yes:  # Enter keeps the class
                return self.statusBar().showMessage(f"{what}: not applied, as you chose", 8000)
            try:
                session.finish_tool(job, edits)
            except SegviewError as exc:
                return self._error(str(exc), f"{what}: not applied")
            self.statusBar().showMessage(f"{what}: {change.text()}", 8000)

        self._clear_preview()
        self._run(lambda progress: job(progress=progress), done=done, reports_progress=True)

    def _apply_leak(self, change, what: str) -> bool:
        """Whether to apply a region grown to the edge of the image, asked: it most likely
        leaked (a tester's Grow filled a whole slice and took the myocardium on it)."""
        taken = f", {change.taken_ml:.2f} mL of it taken from other classes" if change.taken_ml else ""
        edge = "the edge of the box it grows in" if change.bounds is not None and change.in_3d else \
            "the edge of the image"
        return QMessageBox.question(
            self, f"{what}: apply a region that reaches {edge}?",
            f"{what} would add {change.added_ml:.2f} mL {change.where()}{taken}, reaching {edge}: "
            "it has most likely leaked out of the structure. Narrow the intensity range in the Tools panel"
            + (", or untick Grow in 3D" if change.in_3d else "") + ". Apply it all the same?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No) == QMessageBox.StandardButton.Yes  # Enter keeps the labels

    def _show_preview(self, change, what: str) -> None:
        """What a class tool would change, over the labels until the next edit."""
        taken = [c.color for c in self.session.classes if c.value] if self.session else []
        colours = preview_colours([*taken, *MODEL_COLORS.values()])
        self.workspace.viewer.set_overlay("preview", preview_overlay(change, colours))
        legend = f" ({preview_legend(colours)})" if change.mask.any() else ""  # nothing drawn: no colours to name
        self.statusBar().showMessage(f"Preview of {what}: {change.text()}{legend}", 10000)

    def _clear_preview(self) -> None:
        if "preview" in self.workspace.viewer.active.overlays:
            for view in self.workspace.viewer.views.values():
                view.remove_overlay("preview")

    def _labels_changed(self, edit: Edit) -> None:
        """Every change of the labels (stroke, undo, copy...): redraw where it shows."""
        self._clear_preview()
        self._dirty_labels.update(edit.slices)
        if not self._dragging:
            self._redraw_labels()
        elif not self._label_timer.isActive():
            self._label_timer.start()
        self._show_modified()
        self._metrics_timer.start()

    def _redraw_labels(self) -> None:
        dirty, self._dirty_labels = self._dirty_labels, set()
        self.workspace.refresh(dirty, names=("labels",))

    def _mark_changed(self, mark: Mark) -> None:
        self._show_slice_number(*self.workspace.shown())
        self.review_changed.emit()
        if self.comparing:
            self.workspace.refresh([mark.z], names=())
        self._show_modified()
        self._metrics_timer.start()

    def _show_modified(self) -> None:
        """The title's *: the labels differ from those opened or last saved (undo back to them: no *)."""
        modified = self.session is not None and self.session.modified
        if modified != self.isWindowModified():
            self.setWindowModified(modified)
            self.modified_changed.emit(modified)

    def read_only_reason(self) -> str | None:
        """Why the labels on screen may not be edited (a worklist case another segview has
        open, or a dataset that cannot be written); None when they may."""
        return getattr(self.session, "read_only_reason", None) if self.session is not None else None

    def _show_read_only(self, reason: str | None) -> None:
        """A read-only case: every editing tool and Edit menu item disabled, the reason in
        their tooltips, "(read-only)" in the title; left drag pans. The title names the
        image and the label file the labels were read from or last saved to."""
        session = self.session
        if session is not None:
            volume = session.volume
            name = volume.meta.get("series_description") or Path(str(volume.meta.get("source", ""))).name
            patient = patient_line(volume.meta)  # whose images: the first thing a reader checks
            # Which file the labels are: several may lie beside an image (a tester could not tell).
            labels = f" - labels {Path(session.labels_path).name}" if session.labels_path else ""
            self.setWindowTitle(f"segview - {patient + ' - ' if patient else ''}{name}{labels}"
                                f"{' (read-only)' if reason else ''}[*]")
        if reason is not None:
            self.tools.set_tool(self.effects[0].name)  # navigate
        self.tools.set_read_only(reason)
        for action in self.edit_menu.actions():
            if not action.isSeparator():
                action.setEnabled(reason is None)
                action.setToolTip(f"Read-only: {reason}" if reason else action.text().replace("&", ""))
        self.edit_menu.setToolTipsVisible(reason is not None)
        self._step_done()

    def _refused(self) -> bool:
        """True (and the reason in the status bar) when the labels on screen are read-only,
        or take no edit while a whole-volume copy is written into them."""
        reason = self.read_only_reason()
        if reason is None and self._copy_write is not None:
            reason = self._copy_write.busy
        if reason is not None:
            self.statusBar().showMessage(f"Read-only, nothing changed: {reason}", 8000)
        return reason is not None

    def _step_done(self) -> None:
        """After each undo step (a stroke, a fill, adopt, undo, redo) and a session change."""
        self._refresh_read_out()
        session = self.session
        editable = session is not None and self.read_only_reason() is None
        self.undo_action.setEnabled(editable and session.labels.can_undo)
        self.redo_action.setEnabled(editable and session.labels.can_redo)
        failure = session.journal_failure() if session else None
        if failure is not None:
            QMessageBox.warning(self, "Edits no longer journalled", failure)

    def undo(self) -> None:
        """Take back the last step and say which, and where: it may lie on another slice."""
        if self.session is not None and not self._refused():
            what = self.session.undo()  # replaces what the step undone said ("N voxels changed")
            self._say_history_step("Undid", what, self.session.labels.can_undo, "undo")

    def redo(self) -> None:
        if self.session is not None and not self._refused():
            what = self.session.redo()
            self._say_history_step("Redid", what, self.session.labels.can_redo, "redo")

    def _say_history_step(self, done: str, what: str | None, more: bool, verb: str) -> None:
        """Say the step taken back or done again, and when it was the last: the action then
        greys out and its key does nothing, so the message left must not read as if it did."""
        if what is None:
            self.statusBar().showMessage(f"Nothing to {verb}", 8000)
        else:
            self.statusBar().showMessage(f"{done}: {what}" + ("" if more else f"; nothing more to {verb}"), 8000)

    def _slice_operation(self, name: str) -> None:
        session = self.session
        if session is None or self._refused():
            return
        z = self.current_slice()
        if name == "clear":
            edit = session.labels.clear_slice(z)
            if edit is None and not session.labels.kept:
                return self.statusBar().showMessage(f"Slice {z + 1} holds no labels to clear", 5000)
            self._say_done(f"Clear slice on slice {z + 1}", edit)
        elif name == "copy_previous" and z > 0:
            self._say_done(f"Copy previous slice onto slice {z + 1}", session.labels.copy_slice(z - 1, z))
        elif name == "fill_between":
            self._fill_between_slices(session)
        elif name == "review":
            if not self.comparing and self.workspace.active_view() is not self.workspace.viewer.plane_view():
                return self.statusBar().showMessage(
                    "Review marks belong to the acquired slices: mark them in the "
                    f"{self.workspace.viewer.plane_view().view} view", 8000)
            session.mark_reviewed(z, not session.reviewed[z])
            state = "reviewed" if session.reviewed[z] else "no longer reviewed"
            self.statusBar().showMessage(f"Slice {z + 1} {state}", 4000)

    def _say_done(self, what: str, changes) -> None:
        """Say in the status bar what a slice operation changed (an Edit, or a step's
        changes), and what the brush settings kept of it."""
        changes = [] if changes is None else changes if isinstance(changes, list) else [changes]
        self._say_changed(what, sum(int(np.count_nonzero(c.old != c.new)) for c in changes if hasattr(c, "old")))

    def _say_changed(self, what: str, changed: int, more: str = "", details: str = "") -> None:
        """Say in the status bar that ``what`` changed ``changed`` voxels, and what the
        brush settings kept of it; then ``more``, short enough for the bar. ``details``:
        the whole story, in the bar's tooltip while the message shows."""
        note = kept_note(self.session, f"{what}: {changed} voxels changed") if self.session is not None else None
        said = note or f"{what}: {changed} voxels changed"
        message = f"{said.rstrip('.')}. {more}" if more else said
        self.statusBar().showMessage(message, 15000 if more else 10000)
        if details:
            self.statusBar().setToolTip(f"{message}\n{details}")

    def _fill_between_slices(self, session: ReviewSession) -> None:
        """Fill between slices in a worker (reading where to fill scans the whole volume,
        the fill takes seconds on a large one), with progress in slices and Cancel, then
        written as one undo step (``slices_filled``)."""
        if self._volume_work_refused():
            return
        job = session.fill_job()

        def written(writing: PatchWrite) -> None:
            self._say_filled(job, writing.changed)
            self.slices_filled.emit(writing.changed)

        self._run_volume_work(session, job, _FILL_SAYS, partial(session.start_fill, job), written,
                              lambda: self.slices_filled.emit(-1))

    def _say_filled(self, job: FillJob, changed: int) -> None:
        """What Fill between slices did: the slices it filled, what the brush settings kept,
        the classes it left out; or why it filled nothing."""
        gaps = job.gaps
        assert gaps is not None and self.session is not None  # the job ran, for the session shown
        if not changed and not self.session.labels.kept and not gaps.one_sided:
            return self.statusBar().showMessage(self._nothing_filled_text(gaps), 10000)
        self._say_changed(f"Fill between slices ({slices_text(job.slices)})" if job.slices else "Fill between slices",
                          changed, *self._one_sided_text(gaps.one_sided))

    @staticmethod
    def _nothing_filled_text(gaps: Gaps) -> str:
        """Why Fill between slices changed nothing: no class is missing from a slice between
        two that hold it, or its shapes on those two lie so far apart (for their size) that
        each ends on its own side before the first slice between them."""
        if not gaps.runs:
            return ("Fill between slices: no class is labelled on two slices with slices without it between "
                    "them (a slice marked reviewed is never filled, and ends the run it lies in)")
        pairs = "; ".join(f"{first + 1} and {last + 1}" for first, last in gaps.pairs())
        return (f"Fill between slices changed nothing: the labels on slices {pairs} lie too far apart for "
                "their size to blend (each ends on its own side)")

    def _one_sided_text(self, one_sided: dict[int, list[tuple[int, int]]]) -> tuple[str, str]:
        """The classes Fill between slices leaves out (a class labelled on one side of a gap
        only is not extended into it: where it ends there is unknown): their names, for the
        status bar, and which gaps and why, for its tooltip."""
        if not one_sided or self.session is None:
            return "", ""
        names = [class_name(self.session.classes, value) for value in sorted(one_sided)]
        gaps = ["{} ({})".format(name, ", ".join(f"between slices {first + 1} and {last + 1}" for first, last in
                                                 one_sided[value]))
                for name, value in zip(names, sorted(one_sided))]
        return ("Not extended, labelled on one side only: " + ", ".join(names),
                f"{ONE_SIDED_EXPLAINED}: " + "; ".join(gaps))

    def _enable_copies(self, copies: dict[str, list[QAction]]) -> None:
        """Edit > Labels from model X: only for a slot that holds a model."""
        for slot, actions in copies.items():
            for action in actions:
                action.setEnabled(self.session is not None and slot in self.session.models)

    def copy_prediction(self, slot: str, this_slice: bool) -> None:
        """Model ``slot``'s prediction into the labels (this slice, or every predicted
        one): one undo step, and no slice becomes reviewed by it. The whole volume is
        compared in a worker (progress, Cancel) and written when it is done
        (``prediction_copied``)."""
        if self.session is None or self._refused():
            return
        if not this_slice:
            return self._copy_whole_volume(self.session, slot)
        z = self.current_slice()
        reviewed = bool(self.session.reviewed[z])
        try:
            changed = self.session.copy_prediction(slot, z)
        except SegviewError as exc:
            return self._error(str(exc), "Nothing copied")
        self._session_changed()  # the labels may have taken the checkpoint's class names
        unmarked = ("; it is no longer marked reviewed: its labels are the model's now (check them, then M)"
                    if reviewed and changed else "")
        self.statusBar().showMessage(f"Labels from model {slot} on slice {z + 1}: {changed} voxels changed{unmarked}",
                                     10000)

    def _copy_whole_volume(self, session: ReviewSession, slot: str) -> None:
        if self._volume_work_refused():
            return
        try:
            job = session.copy_job(slot)
        except SegviewError as exc:
            return self._error(str(exc), "Nothing copied")

        def written(writing: PatchWrite) -> None:
            self._session_changed()  # the labels may have taken the checkpoint's class names
            ml = writing.changed * float(np.prod(session.volume.spacing)) / 1000
            kept = session.slices_kept(slot)
            kept_text = f"; reviewed {slices_text(kept)} kept as they are" if kept else ""
            self.statusBar().showMessage(
                f"Labels from model {slot}: {writing.changed} voxels ({ml:.2f} mL) changed{kept_text}", 10000)
            self.prediction_copied.emit(writing.changed)

        says = _VolumeWorkSays(f"Copy of model {slot}", "Nothing copied",
                               f"Copying model {slot}'s labels over the whole volume...",
                               f"Writing model {slot}'s labels into the whole volume...",
                               f"Taking back the copy of model {slot}...")
        self._run_volume_work(session, job, says, partial(session.start_copy, job), written,
                              lambda: self.prediction_copied.emit(-1))

    def _volume_work_refused(self) -> bool:
        """True (and why in the status bar) while a whole-volume copy or fill runs."""
        if self._copy_stop is not None:
            self.statusBar().showMessage(f"{self._copy_name} is running already: wait for it or cancel it", 8000)
        return self._copy_stop is not None

    def _run_volume_work(self, session: ReviewSession, job: CopyJob | FillJob, says: _VolumeWorkSays,
                         start_write: Callable[[list | None], PatchWrite], written: Callable[[PatchWrite], None],
                         over: Callable[[], None]) -> None:
        """``job`` (``job(progress=, should_stop=)``) in a worker with the status bar's
        progress and Cancel, then ``start_write(its result)`` written a piece per turn of
        the event loop (``_write_pieces``); ``written(writing)`` once all of it is, ``over()``
        once it ended any other way (cancelled, refused, failed, the session gone)."""
        stop = self._copy_stop = threading.Event()
        self._copy_name, self._copy_over = says.name, over
        self.cancel_button.show()
        self.statusBar().showMessage(says.computing)

        def ended() -> None:
            if self._copy_stop is stop:
                self._copy_stop = None
            self.cancel_button.setVisible(self.inference is not None)
            self._update_busy()

        def done(result) -> None:
            if session is not self.session or result is None or stop.is_set():
                ended()
                if session is self.session:
                    self.statusBar().showMessage(f"{says.name} cancelled: nothing changed", 8000)
                return over()
            try:
                writing = start_write(result)
            except SegviewError as exc:  # the labels changed meanwhile: a refusal, not a fault
                ended()
                over()
                self.statusBar().showMessage(f"{says.refused}: {exc}", 15000)  # not "computing" on and on
                QMessageBox.warning(self, says.refused, str(exc))
                return
            self._write_pieces(writing, stop, says, ended, written)

        def failed(exc: Exception) -> None:
            ended()
            over()
            self.statusBar().clearMessage()
            self._failed(exc)

        self._run(_volume_work_in_worker, job, stop, done=done, failed=failed, reports_progress=True)

    def _write_pieces(self, writing: PatchWrite, stop: threading.Event, says: _VolumeWorkSays,
                      ended: Callable[[], None], written: Callable[[PatchWrite], None]) -> None:
        """Write the result of a whole-volume job a few patches at a time, one piece (~30
        ms) per turn of the event loop (a zero-interval timer), with progress; the labels
        take no other edit meanwhile (``_refused``). Cancel takes back what was written,
        piece by piece."""
        self._copy_write = writing
        self._dragging = False  # a drag held through the comparison ended with it (start_copy)
        self._update_busy()
        self.statusBar().showMessage(says.writing)

        def piece() -> None:
            if self._copy_write is not writing:
                return  # taken back at once (the session closed)
            if stop.is_set() and not writing.cancelled:
                writing.cancel()
                self.statusBar().showMessage(says.taking_back)
            try:
                finished = writing.step(COPY_PIECE_S)
            except BaseException:
                writing.cancel()
                writing.finish()
                self._copy_write = None
                ended()
                self._copy_over()
                raise
            self._show_job_progress(writing.done, writing.total)
            if not finished:
                return QTimer.singleShot(0, piece)
            self._copy_write = None
            ended()
            if writing.cancelled:
                self._step_done()
                self._show_modified()
                self.statusBar().showMessage(f"{says.name} cancelled: nothing changed", 8000)
                return self._copy_over()
            written(writing)

        QTimer.singleShot(0, piece)

    def _settle_copy(self) -> None:
        """A copy or fill being written is taken back at once (the session goes): nothing of it stays."""
        writing, self._copy_write = self._copy_write, None
        if writing is not None:
            writing.cancel()
            writing.finish()
            if self._copy_stop is not None:
                self._copy_stop.set()
            self._copy_stop = None
            self.cancel_button.setVisible(self.inference is not None)
            self._update_busy()
            self._copy_over()

    # -- the metrics panel and compare mode ---------------------------------------------
    def _show_metrics(self) -> None:
        hint = self.models_hint()
        self.metrics.set_hint(hint)
        self.measures_controller.panel.set_hint(hint)
        if self.session is not None:
            view = self.workspace.active_view()
            shown = ShownPlane(view.view, view.normal_axis, view.index)
            self.metrics.refresh(self.session.live, self.current_slice(), shown)

    def set_comparing(self, on: bool) -> None:
        """Two panes, A and B, instead of the views (slice, window and zoom carried over)."""
        self.set_mode("compare" if on else "views")

    def set_mode(self, mode: str) -> None:
        """"views", "compare" (A | B) or "disagreement": one at a time, the menu in step.
        With no image the layout stays (the panes would be empty boxes)."""
        if mode != "views" and self.session is None:
            self.statusBar().showMessage("Open an image first", 5000)
            mode = self.workspace.mode
        self.workspace.set_mode(mode)
        for action, checked in ((self.compare_action, mode == "compare"),
                                (self.disagreement_action, mode == "disagreement")):
            action.setChecked(checked)
        if self.session is not None:
            self.model_info.setVisible(bool(self.session.models) and mode == "views")  # panes name their models
        self._show_legend()
        self._show_view_choice()
        self.workspace.active_view().setFocus()  # arrow keys keep scrolling
        self._show_metrics()

    def _step_class(self, step: int) -> None:
        """Another class for the tools, from the keyboard (the Class box needs the mouse)."""
        if name := self.tools.step_class(step):
            self.statusBar().showMessage(f"Class: {name}", 3000)

    def next_disputed_slice(self) -> None:
        """Go to the most disputed slice nobody has reviewed yet: the top of "Slices to
        review first" on a case just opened; D again, the one ranked after the slice D went
        to last (back to the top after the last). Marking that slice reviewed takes it out."""
        session = self.session
        if session is None:
            return self.statusBar().showMessage("Open an image first", 5000)
        if not ("A" in session.models and "B" in session.models):
            return
        ranks = [r for r in rank_slices(session.live, by="disputed") if not session.reviewed[r.z]]
        if not ranks:
            return self.statusBar().showMessage("A and B agree on every slice not yet reviewed", 5000)
        last = self._disputed_shown
        position = next((n for n, r in enumerate(ranks) if r.z == last), -1)
        target = ranks[(position + 1) % len(ranks)]
        self._disputed_shown = target.z
        self.workspace.go_to_slice(target.z)
        self.statusBar().showMessage(f"Slice {target.z + 1}: A and B differ on {target.disputed} voxels; number "
                                     f"{(position + 1) % len(ranks) + 1} of the {len(ranks)} disputed slices not yet "
                                     "reviewed (M marks it reviewed, D goes to the next)", 6000)

    # -- saving and exporting -----------------------------------------------------------
    def save(self, wait: bool = False) -> bool:
        if self.session is None:
            return self._nothing_open()
        if self._copy_write is not None:  # half a copy never reaches a file
            self.statusBar().showMessage(f"{self._copy_write.busy.capitalize()}, then save", 8000)
            return False
        reason = self.read_only_reason()
        if reason is not None and not self.session.modified:  # nothing of this window's to keep
            self.statusBar().showMessage(f"Nothing to save: no edits were made here. {reason}", 8000)
            return True
        if self.session.labels_path is None or reason is not None:
            return self.save_as(wait)  # a read-only case's own file is not this window's to write
        return self.save_to(self.session.labels_path, wait)

    def _nothing_open(self) -> bool:
        """Save with no image open: said, where it did nothing without a word."""
        self.statusBar().showMessage("No image is open: there are no labels to save (File > Open image...)", 8000)
        return False

    def save_as(self, wait: bool = False) -> bool:
        if self.session is None:
            return self._nothing_open()
        if self._copy_write is not None:
            return self.save(wait)  # refused, and says why
        suggested = self.proposed_labels_path()
        if suggested is None:
            return False  # no folder chosen for the labels of PACS studies
        made = not suggested.parent.exists()
        if made:  # a PACS study's own folder: the dialog opens in it
            try:
                suggested.parent.mkdir(parents=True)
            except OSError:
                made = False
        pattern = " ".join(f"*{e}" for e in LABEL_EXTENSIONS)
        path, _ = QFileDialog.getSaveFileName(self, "Save labels", str(suggested), f"Labels ({pattern})")
        if not path and made and not any(suggested.parent.iterdir()):
            suggested.parent.rmdir()  # cancelled: no empty folder left behind
        remember_folder(path)
        return bool(path) and self.save_to(Path(path), wait)

    def proposed_labels_path(self) -> Path | None:
        """Where Save labels as... proposes to save: where the labels were opened from or
        last saved; for a study retrieved from a PACS, ``<folder>/<patient>_<study>/<series>``
        in the folder chosen for PACS labels (asked once, then kept in the settings; None
        when the user chooses none), never the retrieval cache; else beside the image; else
        in the folder the last dialog chose. A read-only case's copy goes, named after it, to
        the folder the last dialog chose (not the dataset's labels folder; else the home
        folder), never onto its own file."""
        session = self.session
        assert session is not None
        if session.labels_path is not None and self.read_only_reason() is not None:
            own = Path(session.labels_path).absolute()
            folder = last_folder()
            if folder is None or folder.absolute() == own.parent:  # not among the dataset's labels
                folder = Path.home()
            return folder / f"{own.name.split('.')[0]}.labels.nii.gz"
        if session.labels_path is not None and not is_retrieved(session.labels_path):
            return Path(session.labels_path)
        if is_retrieved(self.image_source()):
            folder = pacs_labels_folder()
            if folder is None:
                chosen = QFileDialog.getExistingDirectory(
                    self, "Folder for the labels of studies from the PACS (asked once; each study gets a folder "
                    "in it, named by patient and study)", str(Path.home()))
                if not chosen:
                    return None
                set_pacs_labels_folder(chosen)
                folder = Path(chosen)
            return pacs_labels_path(folder, session.volume.meta)
        name = _series_name(session.volume) or "segview"
        return session.default_labels_path() or Path(dialog_path(f"{name}.labels.nii.gz", self.image_source()))

    def save_to(self, path: Path, wait: bool = False) -> bool:
        """Write the labels and their review state as they are now, atomically and verified,
        in the background (``wait``: and wait for it, e.g. when closing; the window keeps
        painting under a busy dialog). A failure leaves the edits in
        memory and in the journal. Returns False when a waited-for save failed."""
        session = self.session
        assert session is not None  # the File menu saves only an open session
        try:
            job = session.save_job(Path(path))
        except SegviewError as exc:  # e.g. the image's own file chosen
            self._save_failed(exc)
            return False
        if not wait:
            self._run(job, done=lambda _: self._saved(session, job), failed=self._save_failed)
            return True
        saved, result = run_modal(self, job, f"Saving the labels to {Path(path).name}\u2026")
        if not saved:
            self._save_failed(result)  # type: ignore[arg-type]  # run_modal gives the exception
            return False
        self._saved(session, job)
        return True

    def _saved(self, session: ReviewSession, job) -> None:
        journal_note = session.finish_save(job)
        source = str(session.volume.meta.get("source", ""))
        if source and Path(source).exists():  # opening it again reads them, whatever their name
            remember_labels(source, job.path, session.key)
        if session is self.session:
            self._show_modified()
            self._show_read_only(self.read_only_reason())  # a copy saved elsewhere is this window's to edit
        self.statusBar().showMessage(f"Saved {job.path}" + (f". {journal_note}" if journal_note else ""), 8000)
        self.saved.emit(str(job.path))

    def _save_failed(self, exc: Exception) -> None:
        if not isinstance(exc, (SegviewError, ValueError)):
            raise exc
        kept = self.session.edits_kept if self.session is not None else "Your edits are kept in memory"
        QMessageBox.critical(self, "Labels not saved", f"{exc}\n\n{kept}; save them somewhere else.")

    def _close_session(self) -> bool:
        """Before the session goes (another image, closing): ask about unsaved edits.
        True when it is fine to go on."""
        session = self.session
        if session is None:
            return True
        self._settle_copy()  # a copy being written is taken back: the question is about the labels as they were
        discard = False
        if session.modified:
            button = QMessageBox.StandardButton
            answer = QMessageBox.question(self, "Unsaved labels",
                                          "The labels or their review marks have unsaved changes. Save them?",
                                          button.Save | button.Discard | button.Cancel)
            if answer == button.Cancel or (answer == button.Save and not self.save(wait=True)):
                return False
            discard = answer == button.Discard
        self.cancel_inference()
        self._models_waiting = {slot: (m.path, m.predictor) for slot, m in session.models.items()}
        self._stop_following(session)
        session.close(discard=discard)
        self.session = None
        self._enable_image_controls(False)  # nothing to apply them to until the next image shows
        self._enable_file_actions()
        self._show_modified()
        return True

    def _stop_following(self, session: ReviewSession) -> None:
        """Disconnect what ``show_session`` connected; the session's ``close`` leaves it."""
        events = session.labels.events
        events.changed.disconnect(self._labels_changed)
        events.marked.disconnect(self._mark_changed)
        events.step.disconnect(self._step_done)

    def open_from_pacs(self) -> None:
        """File > Open from PACS: search, retrieve into the cache (with progress), open. A
        SEG opens as the labels of the image series it segments, retrieved with it; a SEG
        of the series on screen opens on it as File > Open labels does."""
        from .pacs_dialog import open_from_pacs

        on_screen = str(self.session.volume.meta.get("series_uid") or "") if self.session is not None else ""
        retrieved = open_from_pacs(self, open_series=on_screen or None)
        if retrieved is None:
            return
        if retrieved.image is None:
            self.open_labels(retrieved.labels)
        else:
            self.open_image(retrieved.image, labels_path=retrieved.labels)

    def send_seg_to_pacs(self) -> None:
        """File > Send SEG to PACS: the labels as a DICOM SEG, stored in a PACS the user
        chooses: the SEG last exported or sent when the labels have not changed since (sent
        again, the PACS keeps one object), else a new one (the next instance of this review's
        SEG series), written into a folder of the window's kept until it closes. A PACS that
        does not hold the image's series is offered its files with the SEG."""
        from .pacs_dialog import ImageSeries, send_to_pacs

        meta = self.session.volume.meta
        images = ImageSeries(str(meta.get("series_uid") or ""), str(meta.get("series_description") or ""),
                             tuple(Path(f) for f in meta.get("source_files") or ()))

        def send(path: Path | None) -> None:
            if path is not None and self.isVisible():  # not after the window closed meanwhile
                stored = send_to_pacs(self, [path], images)
                if stored:
                    what = "the SEG and its image series" if stored > 1 else "the SEG"  # the reader sent them too
                    self.statusBar().showMessage(f"The PACS stored {what} ({counted(stored, 'object')})", 8000)

        written = self.session.written_seg()
        if written is not None:
            return send(written)
        if self._seg_folder is None:
            self._seg_folder = tempfile.TemporaryDirectory(prefix="segview-seg-")  # removed when the window goes
        self.export_dicom_seg_to(Path(self._seg_folder.name) / f"labels_seg_{uuid.uuid4().hex[:8]}.dcm", then=send)

    def discard_session(self) -> None:
        """Close the session without saving, its journal deleted (scripts, benchmarks)."""
        if self.session is not None:
            self.cancel_inference()
            self._settle_copy()
            self._stop_following(self.session)
            self.session.close(discard=True)
            self.session = None
            self._enable_image_controls(False)
            self._enable_file_actions()
            self._show_modified()

    def export_dicom_seg(self) -> None:
        name = _series_name(self.session.volume) or "labels"  # two series of a folder: two names
        path, _ = QFileDialog.getSaveFileName(self, "Export DICOM SEG", self._start_path(f"{name}_seg.dcm"),
                                              "DICOM (*.dcm)")
        remember_folder(path)
        if path:
            self.export_dicom_seg_to(Path(path))

    def export_dicom_seg_to(self, path: Path, then: Callable[[Path | None], None] | None = None) -> None:
        """Write the labels as they are now as a DICOM SEG at ``path`` in a worker (the
        window's progress bar shows it): ``seg_exported`` when written, a dialog when not;
        then ``then(path)`` (None: not written). Closing the window waits for it."""
        session = self.session
        assert session is not None
        job = session.dicom_seg_job(path)

        def written(_) -> None:
            self.statusBar().showMessage(f"Wrote {path}", 5000)
            self.seg_exported.emit(str(path))
            if then is not None:
                then(path)

        def failed(exc: Exception) -> None:
            if then is not None:
                then(None)
            self.statusBar().clearMessage()  # "Writing..." is over, whatever ended it
            if not isinstance(exc, SegviewError):
                raise exc
            QMessageBox.critical(self, "DICOM SEG not written", str(exc))

        self.statusBar().showMessage(f"Writing the DICOM SEG {path.name}...")
        self._run(job, done=written, failed=failed)

    def export_metrics(self) -> None:
        if self.session is None or not self.session.models:
            return self._error("Load a model first: the metrics compare models with the labels.", "No metrics")
        path, _ = QFileDialog.getSaveFileName(self, "Export metrics", self._start_path("metrics.csv"),
                                              "CSV (*.csv)")
        remember_folder(path)
        if path:
            try:
                write_metrics_csv(path, self.session.live, self.session.classes)
                if len(self.session.rulers):  # the rulers beside it: <name>.measurements.csv
                    self.session.rulers.write_csv(measurements_path(path))
            except OSError as exc:
                QMessageBox.critical(self, "Metrics not saved", str(exc))

    def export_report(self) -> None:
        """File > Export comparison report: written in the background (boundary metrics of
        both models take seconds on a large volume)."""
        if self._comparison_missing():
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the comparison report", self.start_folder())
        remember_folder(folder)
        if folder:
            self._run(self._report_job(Path(folder)),
                      done=lambda paths: self.statusBar().showMessage(f"Wrote {len(paths)} files to {folder}", 8000),
                      failed=self._report_failed)

    def export_report_to(self, folder: Path) -> list[Path]:
        """The comparison report in ``folder``, here and now (scripts, tests)."""
        if self._comparison_missing():
            return []
        try:
            return self._report_job(folder)()
        except OSError as exc:
            self._report_failed(exc)
            return []

    def _comparison_missing(self) -> bool:
        session = self.session
        if session is None or not ("A" in session.models and "B" in session.models):
            self._error("Load two models (A and B) to compare them.", "No comparison")
            return True
        return False

    def _report_job(self, folder: Path):
        session = self.session
        assert session is not None
        names = {slot: m.describe() for slot, m in session.models.items()}
        return partial(write_report, folder, session.live, list(session.classes), names)

    def _report_failed(self, exc: Exception) -> None:
        if not isinstance(exc, (OSError, SegviewError)):
            raise exc
        QMessageBox.critical(self, "Report not written", str(exc))

    def closeEvent(self, event) -> None:
        if not self._close_session():
            return event.ignore()
        # Nothing may run on after the window is gone: stop inference and a copy, let loads finish.
        self.cancel_jobs()
        Worker.pool().waitForDone()
        super().closeEvent(event)

    # -- background work ----------------------------------------------------------------
    def _run(self, function, *args, done, failed=None, reports_progress: bool = False,
             shows_first_slice: bool = False) -> None:
        worker = Worker(function, *args, reports_progress=reports_progress, shows_first_slice=shows_first_slice)
        worker.signals.first_slice.connect(self._show_first_slice)
        self._jobs.add(worker)
        self._update_busy()
        worker.signals.returned.connect(done)
        worker.signals.progress.connect(self._show_job_progress)
        worker.signals.errored.connect(failed or self._failed)
        worker.signals.finished.connect(lambda: self._finished(worker))
        worker.start()

    def _finished(self, worker) -> None:
        self._jobs.discard(worker)
        self._update_busy()

    def _update_busy(self) -> None:
        if self.inference is None and self._copy_write is None:
            self.progress.setRange(0, 0)
            self.progress.setFormat("%p%")
            self.progress.setVisible(bool(self._jobs))

    def _show_job_progress(self, done: int, total: int) -> None:
        if self.inference is None:
            self.progress.setRange(0, total)
            self.progress.setValue(done)

    def _failed(self, exc: Exception) -> None:
        if not isinstance(exc, SegviewError):
            raise exc  # a programming error: let it surface
        from ..ml.checkpoint import CheckpointError

        title = "Cannot use the checkpoint" if isinstance(exc, CheckpointError) else "Cannot open"
        self._error(str(exc), title)

    def _error(self, message: str, title: str = "Cannot open") -> None:
        self.load_failed.emit(message)
        QMessageBox.critical(self, title, message)


@dataclass(frozen=True)
class _VolumeWorkSays:
    """What the status bar says of a whole-volume job (``_run_volume_work``)."""
    name: str         # "Copy of model A": "Copy of model A cancelled: nothing changed"
    refused: str      # the title of the message when it is refused ("Nothing copied")
    computing: str    # while the worker computes it
    writing: str      # while it is written
    taking_back: str  # while a cancelled one is taken back


_FILL_SAYS = _VolumeWorkSays("Fill between slices", "Nothing filled", "Filling between slices...",
                             "Writing the fill between slices...", "Taking back the fill between slices...")


def _volume_work_in_worker(job: CopyJob | FillJob, stop: threading.Event, progress=None):
    """``job`` with the window's progress and its Cancel (a worker calls this)."""
    return job(progress=progress, should_stop=stop.is_set)


def demo_session(task: str) -> ReviewSession:
    """The bundled demo: a phantom case of ``task`` with its reference labels."""
    from ..core.phantoms import make_phantom

    case = make_phantom(task, seed=0)
    case.volume.meta["source"] = f"demo: {task} phantom"
    return ReviewSession.open(case.volume, labels=case.labels, classes=list(case.classes))


def _device_text(predictor) -> str:
    """"cpu (onnxruntime)", "cuda (NVIDIA H100 80GB HBM3)": where and with what a model runs."""
    device = describe_device(predictor.device)
    runtime = getattr(predictor, "runtime", "torch")
    return f"{device} ({runtime})" if device == "cpu" else device


def _series_name(volume) -> str:
    """The series description as a file name ("" when it has none)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in volume.meta.get("series_description") or "")


def _marks_text(recovered: np.ndarray, shown: np.ndarray) -> str:
    """The review marks of recovered edits against those of the labels open now: "3 slices
    reviewed, 1 marked and 0 unmarked against the labels open now", or "no review marks"
    (a new user puzzled over "0 slice(s) reviewed, 0 marked and 0 unmarked")."""
    reviewed, marked, unmarked = int(recovered.sum()), int((recovered & ~shown).sum()), int((~recovered & shown).sum())
    if not (reviewed or unmarked):
        return "no review marks"
    return f"{counted(reviewed, 'slice')} reviewed, {marked} marked and {unmarked} unmarked against the labels open now"


def _time_text(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))
