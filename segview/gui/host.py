"""What the tools' controllers (polygon, ruler, crosshair, level tracing, region statistics)
need of the window: a small host protocol, so they never import ``main_window`` back (no
import circle). ``MainWindow`` is one; a test can hand them another."""
from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import Qt, SignalInstance
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenuBar, QStatusBar, QWidget

from ..session import ReviewSession
from .effects import Effect
from .tools import ToolPanel
from .workspace import Workspace


class MeasuresDock(Protocol):
    """The measures dock as region statistics see it: its panel and whether it is on screen."""

    @property
    def panel(self) -> QWidget: ...

    @property
    def shown(self) -> bool: ...


class ToolHost(Protocol):
    """The window's session, views, tools panel and chrome (status bar, menus, docks)."""

    @property
    def session(self) -> ReviewSession | None: ...

    @property
    def effect(self) -> Effect: ...

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

    def read_only_reason(self) -> str | None: ...

    def current_slice(self) -> int: ...

    def statusBar(self) -> QStatusBar: ...

    def menuBar(self) -> QMenuBar: ...

    def addAction(self, action: QAction, /) -> None: ...

    def addDockWidget(self, area: Qt.DockWidgetArea, dockwidget: QDockWidget, /) -> None: ...

    def tabifyDockWidget(self, first: QDockWidget, second: QDockWidget, /) -> None: ...

    def setWindowModified(self, modified: bool, /) -> None: ...
