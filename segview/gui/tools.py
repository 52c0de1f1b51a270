"""The editing tools panel: tool, class, brush size, overwrite policy, intensity range,
and the slice operations. It holds the choices; the main window hands them to the
session's effects."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QToolButton,
                               QVBoxLayout, QWidget)

from ..core.classes import LabelClass
from ..core.labels import OverwritePolicy

POLICIES = (("all", "everything"), ("background", "background only"), ("protect", "all but protected classes"))
MIN_RADIUS_MM, MAX_RADIUS_MM = 0.5, 100.0


class ToolPanel(QWidget):
    tool_changed = Signal(str)
    brush_changed = Signal(float)        # radius in mm
    settings_changed = Signal()          # overwrite policy, protected classes or intensity range
    operation = Signal(str)              # "clear", "copy_previous", "fill_between", "review"

    def __init__(self, tools, parent=None):
        """``tools``: (name, text, shortcut, tip) of each effect, the first chosen."""
        super().__init__(parent)
        self.tools = list(tools)
        self.tool = self.tools[0][0]
        self.tool_buttons = QButtonGroup(self)
        row = QHBoxLayout()
        for name, text, key, tip in self.tools:
            button = QToolButton(text=text, checkable=True, toolTip=f"{tip} ({key})")
            button.setChecked(name == self.tool)
            button.clicked.connect(lambda _, name=name: self.set_tool(name))
            self.tool_buttons.addButton(button)
            row.addWidget(button)
        self.class_choice = QComboBox()
        self.radius = QDoubleSpinBox(minimum=MIN_RADIUS_MM, maximum=MAX_RADIUS_MM, value=5.0, singleStep=0.5,
                                     suffix=" mm", toolTip="Brush radius: [ and ] change it")
        self.radius.valueChanged.connect(self.brush_changed)
        self.policy_choice = QComboBox()
        self.policy_choice.addItems([text for _, text in POLICIES])
        self.protected = QListWidget(toolTip="Classes the brush and eraser never change")
        self.protected.setMaximumHeight(56)
        self.policy_choice.currentIndexChanged.connect(lambda n: self.protected.setEnabled(n == 2))
        self.protected.setEnabled(False)
        self.threshold = QCheckBox("only where intensity is in")
        self.low = QDoubleSpinBox(minimum=-1e6, maximum=1e6, value=-1000, decimals=0)
        self.high = QDoubleSpinBox(minimum=-1e6, maximum=1e6, value=1000, decimals=0)
        for signal in (self.policy_choice.currentIndexChanged, self.protected.itemChanged, self.threshold.toggled,
                       self.low.valueChanged, self.high.valueChanged):
            signal.connect(lambda *_: self.settings_changed.emit())
        limits = QHBoxLayout()
        for widget in (self.low, QLabel("to"), self.high):
            limits.addWidget(widget)
        form = QFormLayout()
        form.addRow("Class", self.class_choice)
        form.addRow("Radius", self.radius)
        form.addRow("Paint over", self.policy_choice)
        form.addRow("Protected", self.protected)
        form.addRow(self.threshold)
        form.addRow(limits)
        slices = QGroupBox("Slices")
        buttons = QGridLayout(slices)
        for n, (name, text, tip) in enumerate( (("clear", "Clear slice", "Erase every label on this slice"),
                                ("copy_previous", "Copy previous slice", "The labels of the slice below onto this one"),
                                ("fill_between", "Fill between slices", "Interpolate across unlabelled slices"),
                                ("review", "Mark reviewed (M)", "This slice has been checked"))):
            button = QPushButton(text, toolTip=tip)
            button.clicked.connect(lambda _, name=name: self.operation.emit(name))
            buttons.addWidget(button, n // 2, n % 2)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(slices)
        layout.addStretch(1)

    def set_classes(self, classes: list[LabelClass]) -> None:
        current = self.active_class()
        self.class_choice.clear()
        self.protected.clear()
        for c in classes:
            if c.value == 0:
                continue
            icon = QPixmap(12, 12)
            icon.fill(QColor(*c.color))
            self.class_choice.addItem(QIcon(icon), c.name, c.value)
            item = QListWidgetItem(QIcon(icon), c.name)
            item.setData(Qt.ItemDataRole.UserRole, c.value)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)
            self.protected.addItem(item)
        index = self.class_choice.findData(current)
        self.class_choice.setCurrentIndex(max(index, 0))

    def set_tool(self, name: str) -> None:
        self.tool = name
        for button, (tool, *_) in zip(self.tool_buttons.buttons(), self.tools):
            button.setChecked(tool == name)
        self.tool_changed.emit(name)

    def active_class(self) -> int:
        value = self.class_choice.currentData()
        return 1 if value is None else int(value)

    def policy(self) -> OverwritePolicy:
        mode = POLICIES[self.policy_choice.currentIndex()][0]
        items = [self.protected.item(n) for n in range(self.protected.count())]
        protected = frozenset(item.data(Qt.ItemDataRole.UserRole) for item in items
                              if item.checkState() == Qt.CheckState.Checked)
        return OverwritePolicy(mode, protected)

    def intensity_range(self) -> tuple[float, float] | None:
        return (self.low.value(), self.high.value()) if self.threshold.isChecked() else None

    def step_radius(self, factor: float) -> None:
        self.radius.setValue(min(max(self.radius.value() * factor, MIN_RADIUS_MM), MAX_RADIUS_MM))
