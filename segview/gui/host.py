"""What the panels and the tools' controllers (worklist, measures, click, polygon, ruler,
crosshair, level tracing, region statistics) need of the window: small host protocols, so
they never import ``main_window`` back (no import circle). ``MainWindow`` is each of them;
a test can hand them another."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, Qt, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenuBar, QStatusBar, QWidget

from ..session import ReviewSession
from .effects import Effect
from .metrics_panel import MetricsPanel
from .tools import ToolPanel
from .workers import GeneratorWorker
from .workspace import Workspace

#: Object names of the window's menus and of the items others put theirs after: found by
#: these, not by their display text (which may change, or be translated).
FILE_MENU, EDIT_MENU, VIEW_MENU, MODEL_MENU = "file menu", "edit menu", "view menu", "model menu"
OPEN_DICOM_ACTION, EXPORT_REPORT_ACTION = "open dicom folder", "export comparison report"


class Chrome(Protocol):
    """The window as a top-level widget: its bars, docks and actions. ``window()`` is the
    widget itself (``QWidget.window``): the parent of dialogs."""

    def window(self) -> QWidget: ...

    def isVisible(self) -> bool: ...

    def statusBar(self) -> QStatusBar: ...

    def menuBar(self) -> QMenuBar: ...

    def addAction(self, action: QAction, /) -> None: ...

    def addDockWidget(self, area: Qt.DockWidgetArea, dockwidget: QDockWidget, /) -> None: ...

    def tabifyDockWidget(self, first: QDockWidget, second: QDockWidget, /) -> None: ...

    def setWindowModified(self, modified: bool, /) -> None: ...

    def installEventFilter(self, filter: QObject, /) -> None: ...


class MeasuresDock(Protocol):
    """The measures dock as region statistics see it: its panel and whether it is on screen."""

    @property
    def panel(self) -> QWidget: ...

    @property
    def shown(self) -> bool: ...


class ToolHost(Chrome, Protocol):
    """The window's session, views and tools panel, for the tools' controllers."""

    @property
    def session(self) -> ReviewSession | None: ...

    @property
    def effect(self) -> Effect: ...

    @property
    def effects(self) -> tuple[Effect, ...]: ...

    @property
    def workspace(self) -> Workspace: ...

    @property
    def tools(self) -> ToolPanel: ...

    @property
    def metrics(self) -> QWidget: ...

    @property
    def measures_controller(self) -> MeasuresDock: ...

    @property
    def loaded(self) -> SignalInstance: ...

    @property
    def session_shown(self) -> SignalInstance: ...

    def read_only_reason(self) -> str | None: ...

    def current_slice(self) -> int: ...


class MeasuresHost(Chrome, Protocol):
    """The window as the measures dock follows it: its session, views, metrics panel
    (one "reviewed only" switch for both), inference, and the signals that say what changed."""

    @property
    def session(self) -> ReviewSession | None: ...

    @property
    def workspace(self) -> Workspace: ...

    @property
    def metrics(self) -> MetricsPanel: ...

    @property
    def inference(self) -> GeneratorWorker | None: ...

    @property
    def loaded(self) -> SignalInstance: ...

    @property
    def model_loaded(self) -> SignalInstance: ...

    @property
    def inference_finished(self) -> SignalInstance: ...

    @property
    def session_changed(self) -> SignalInstance: ...

    @property
    def predictions_changed(self) -> SignalInstance: ...


class WorklistHost(Chrome, Protocol):
    """The window as the worklist (and its fine-tuning job) drives it: the session on
    screen, replaced, refreshed, saved, and its slice; models loaded; where file dialogs
    start."""

    @property
    def session(self) -> ReviewSession | None: ...

    @property
    def model_loaded(self) -> SignalInstance: ...

    @property
    def saved(self) -> SignalInstance: ...

    @property
    def review_changed(self) -> SignalInstance: ...

    @property
    def modified_changed(self) -> SignalInstance: ...

    @property
    def workspace(self) -> Workspace: ...

    def current_slice(self) -> int: ...

    def start_folder(self) -> str: ...

    def waiting_checkpoints(self) -> dict[str, Path]: ...

    def show_session(self, session: ReviewSession) -> None: ...

    def discard_session(self) -> None: ...

    def refresh_session(self) -> None: ...

    def cancel_inference(self) -> None: ...

    def save(self, wait: bool = False) -> bool: ...

    def load_model(self, path: Path, slot: str = "A") -> None: ...
