"""The editing tools panel: tool, class, brush size, overwrite policy, intensity range,
and the slice operations. It holds the choices; the main window hands them to the
session's effects."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QButtonGroup, QCheckBox, QComboBox,
                               QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QPushButton, QToolButton, QVBoxLayout, QWidget)

from ..core.classes import LabelClass, first_distinct
from ..core.labels import OverwritePolicy
from ..session.errors import SessionError
from ..session.review import ToolChange
from .slice_view import Overlay
from .widgets import NumberBox

POLICIES = (("all", "everything"), ("background", "background only"), ("protect", "all but protected classes"))
MIN_RADIUS_MM, MAX_RADIUS_MM = 0.5, 100.0
#: Why Fill between slices leaves a class out: its button's tooltip says so, and the status
#: bar's tooltip after it did.
ONE_SIDED_EXPLAINED = ("A class labelled on one side of a gap only is not extended into it (where it ends is "
                       "unknown: draw its last piece to fill up to it)")
#: Class tools: key -> (menu text, what the amount is: "mm", "mm3", "class" or "", and for
#: an amount its default, smallest and largest value). Each tool keeps its own amount.
#: "Grow" is region growing from a click (the W effect) only; a margin expands or shrinks.
CLASS_OPERATIONS = {
    "islands_smaller": ("Remove islands smaller than", "mm3", 100.0, 1.0, 1e6),
    "islands_largest": ("Keep only the largest island", "", 0, 0, 0),
    "median": ("Smooth (median), kernel", "mm", 3.0, 0.5, 20.0),
    "opening": ("Smooth (opening: spurs, bridges), kernel", "mm", 3.0, 0.5, 20.0),
    "closing": ("Smooth (closing: gaps, dents), kernel", "mm", 3.0, 0.5, 20.0),
    "expand": ("Expand margin by", "mm", 2.0, 0.5, 50.0),
    "shrink": ("Shrink margin by", "mm", 2.0, 0.5, 50.0),
    "fill_holes": ("Fill holes (3D)", "", 0, 0, 0),
    "fill_holes_slices": ("Fill holes (each axial slice)", "", 0, 0, 0),
    "add": ("Take in the voxels of", "class", 0, 0, 0),
    "intersect": ("Keep only where it overlaps", "class", 0, 0, 0),
    "subtract": ("Remove where it overlaps", "class", 0, 0, 0),
}

#: A class tool's preview: the voxels it would add to the class, and those it would take
#: away, each in the first of its colours distinct from every class's and model's
#: (``classes.DISTINCT``; green added and red removed were the cardiac demo's myocardium
#: and left ventricle).
#: Bright, saturated colours first: the preview must show on dark MR as on CT; black last.
PREVIEW_CANDIDATES = {"added": (("green", (0, 255, 0)), ("yellow", (255, 255, 0)), ("white", (255, 255, 255))),
                      "removed": (("red", (255, 0, 0)), ("violet", (150, 0, 255)), ("orange", (255, 140, 0)),
                                  ("white", (255, 255, 255)), ("black", (0, 0, 0)))}


def preview_colours(taken: Iterable[tuple[int, int, int]]) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """{"added" | "removed": (name, RGB)}: for each, the first candidate distinct from every
    colour of ``taken`` (the classes', the models') and from the colour chosen before it,
    else its last."""
    taken = list(taken)
    chosen: dict[str, tuple[str, tuple[int, int, int]]] = {}
    for word, candidates in PREVIEW_CANDIDATES.items():
        chosen[word] = first_distinct(candidates, [*taken, *(colour for _, colour in chosen.values())])
    return chosen


def preview_legend(colours: dict[str, tuple[str, tuple[int, int, int]]]) -> str:
    return ", ".join(f"{word} in {name}" for word, (name, _) in colours.items())


def preview_overlay(change: ToolChange, colours: dict[str, tuple[str, tuple[int, int, int]]]) -> Overlay:
    """``change`` drawn over the labels: 1 where it adds to the class, 2 where it takes away
    (``ToolChange.changes`` as it is), in ``colours`` (``preview_colours``)."""
    table = np.zeros((256, 4), np.uint8)
    for value, (_, colour) in enumerate(colours.values(), start=1):
        table[value] = (*colour, 255)
    return Overlay(change.changes, table, True, False)


class ToolPanel(QWidget):
    tool_changed = Signal(str)
    brush_changed = Signal(float)        # radius in mm
    settings_changed = Signal()          # overwrite policy, protected classes or intensity range
    operation = Signal(str)              # "clear", "copy_previous", "fill_between", "review"
    class_tool = Signal(str, bool)       # a CLASS_OPERATIONS key; True: preview only
    class_chosen = Signal(int)           # a person chose the class (the Class box, . or ,), not a refill

    def __init__(self, tools, parent=None):
        """``tools``: (name, text, shortcut, tip) of each effect, the first chosen."""
        super().__init__(parent)
        self.read_only_reason: str | None = None
        self._classes: list[LabelClass] = []
        self._models: list[str] = []                 # the slots with a model loaded
        self._operand_chosen: tuple | None = None    # the other class the person picked last
        self._own_tips: dict[QWidget, str] = {}
        self.tools = list(tools)
        self.tool = self.tools[0][0]
        self.tool_buttons = QButtonGroup(self)
        row = QGridLayout()
        for n, (name, text, key, tip) in enumerate(self.tools):
            button = QToolButton(text=text, checkable=True, toolTip=f"{tip} ({key})")
            button.setChecked(name == self.tool)
            button.clicked.connect(lambda _, name=name: self.set_tool(name))
            self.tool_buttons.addButton(button)
            row.addWidget(button, n // 3, n % 3)
        self.class_choice = QComboBox(toolTip="The class the tools draw: . and , choose the next and previous")
        self.radius = NumberBox(minimum=MIN_RADIUS_MM, maximum=MAX_RADIUS_MM, value=5.0, singleStep=0.5,
                                     suffix=" mm", toolTip="Brush radius: [ and ] change it")
        self.radius.valueChanged.connect(self.brush_changed)
        self.sphere = QCheckBox("3D sphere", toolTip="The brush paints a ball of the radius through the slices")
        self.grow_3d = QCheckBox("Grow in 3D", toolTip="Grow (W) fills the connected region in the whole volume, "
                                 "not only the plane clicked; within the intensity range when it is set, else "
                                 "where the intensity is like the seed's (confidence connected)")
        radius_row = QHBoxLayout()
        radius_row.addWidget(self.radius)
        radius_row.addWidget(self.sphere)
        self.policy_choice = QComboBox()
        self.policy_choice.addItems([text for _, text in POLICIES])
        self.protected = QListWidget(toolTip="Classes the brush, the eraser and the Click tool never change")
        self.protected.setMaximumHeight(56)
        self.policy_choice.currentIndexChanged.connect(lambda n: self.protected.setEnabled(n == 2))
        self.protected.setEnabled(False)
        self.threshold = QCheckBox("only where intensity is in")
        self.low = NumberBox(minimum=-1e6, maximum=1e6, value=-1000, decimals=0)
        self.high = NumberBox(minimum=-1e6, maximum=1e6, value=1000, decimals=0)
        for signal in (self.policy_choice.currentIndexChanged, self.protected.itemChanged, self.threshold.toggled,
                       self.low.valueChanged, self.high.valueChanged):
            signal.connect(lambda *_: self.settings_changed.emit())
        limits = QHBoxLayout()
        for widget in (self.low, QLabel("to"), self.high):
            limits.addWidget(widget)
        form = QFormLayout()
        form.addRow("Class", self.class_choice)
        form.addRow("Radius", radius_row)
        form.addRow("Paint over", self.policy_choice)
        form.addRow("Protected", self.protected)
        form.addRow(self.threshold)
        form.addRow(limits)
        form.addRow(self.grow_3d)
        slices = QGroupBox("Slices")
        buttons = QGridLayout(slices)
        for n, (name, text, tip) in enumerate( (("clear", "Clear slice", "Erase every label on this slice"),
                                ("copy_previous", "Copy previous slice", "The labels of the slice below onto this one"),
                                ("fill_between", "Fill between slices",
                                 f"Interpolate each class across the slices without it between two that hold it, onto "
                                 "background only (a voxel of another class is never overwritten). "
                                 f"{ONE_SIDED_EXPLAINED}; a slice marked reviewed is never filled"),
                                ("review", "Mark reviewed (M)", "This slice has been checked"))):
            button = QPushButton(text, toolTip=tip)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the view keeps the keys: Up / Down go on moving slices
            button.clicked.connect(lambda _, name=name: self.operation.emit(name))
            buttons.addWidget(button, n // 2, n % 2)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(self._class_tools())
        layout.addWidget(slices)
        layout.addStretch(1)

    def _class_tools(self) -> QGroupBox:
        """Whole-class cleanup: an operation, its amount (mm or mm3) or other class, apply."""
        box = QGroupBox("Class tools (on the chosen class)")
        self.class_operation = QComboBox()
        for key, (text, *_) in CLASS_OPERATIONS.items():
            self.class_operation.addItem(text, key)
        self.amounts = {key: default for key, (_, unit, default, *_) in CLASS_OPERATIONS.items() if unit}
        self.amount = NumberBox(decimals=1, singleStep=0.5)
        self.amount.valueChanged.connect(self._remember_amount)
        self.other_class = QComboBox()
        self.other_class.setToolTip("The other class, or a model's prediction of the chosen class")
        for widget in (self.amount, self.other_class):  # hidden by turns: their row keeps its height,
            policy = widget.sizePolicy()                  # so the Slices buttons below do not jump
            policy.setRetainSizeWhenHidden(True)
            widget.setSizePolicy(policy)
        self.other_class.activated.connect(lambda _: setattr(self, "_operand_chosen", self.other_class.currentData()))
        self.class_choice.currentIndexChanged.connect(lambda _: self._fill_operands())
        self.class_choice.activated.connect(lambda _: self.class_chosen.emit(self.active_class()))
        preview, apply = QPushButton("Preview"), QPushButton("Apply")
        preview.setToolTip("Show what would change, without changing anything (the status bar names the colours)")
        apply.setToolTip("One undo step; asks first when it would take away more than half of the class")
        preview.clicked.connect(lambda: self.class_tool.emit(self.class_operation.currentData(), True))
        apply.clicked.connect(lambda: self.class_tool.emit(self.class_operation.currentData(), False))
        self.class_operation.currentIndexChanged.connect(lambda _: self._show_amount())
        grid = QGridLayout(box)
        grid.addWidget(self.class_operation, 0, 0, 1, 2)
        grid.addWidget(self.amount, 1, 0)
        grid.addWidget(self.other_class, 1, 1)
        buttons = QHBoxLayout()  # a row of their own: equal, whatever the row above holds
        buttons.addWidget(preview)
        buttons.addWidget(apply)
        grid.addLayout(buttons, 2, 0, 1, 2)
        self._show_amount()
        return box

    def _remember_amount(self, value: float) -> None:
        self.amounts[self.class_operation.currentData()] = value

    def _show_amount(self) -> None:
        """The chosen tool's own amount: its unit, range and the value it had last."""
        key = self.class_operation.currentData()
        _, unit, _, low, high = CLASS_OPERATIONS[key]
        self.amount.setVisible(unit in ("mm", "mm3"))
        self.other_class.setVisible(unit == "class")
        if key in self.amounts:
            self.amount.blockSignals(True)  # the range first, so the value is not clipped to the last tool's
            self.amount.setSuffix(" mm\u00b3" if unit == "mm3" else " mm")
            self.amount.setRange(low, high)
            self.amount.setValue(self.amounts[key])
            self.amount.blockSignals(False)

    def set_classes(self, classes: list[LabelClass], models: Iterable[str] = ()) -> None:
        """The labels' classes, and the slots (``models``) with a model loaded."""
        self._classes, self._models = list(classes), list(models)
        current = self.active_class()
        protected = self.policy().protected  # a class keeps its tick (the labels keep obeying it)
        self.class_choice.clear()
        self.protected.blockSignals(True)
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
            item.setCheckState(Qt.CheckState.Checked if c.value in protected else Qt.CheckState.Unchecked)
            self.protected.addItem(item)
        self.protected.blockSignals(False)
        index = self.class_choice.findData(current)
        self.class_choice.setCurrentIndex(max(index, 0))
        self._fill_operands()
        self.settings_changed.emit()  # what the list shows is what the labels obey

    def _fill_operands(self) -> None:
        """The overlap tools' other class: every class but the chosen one (an overlap with
        itself takes in nothing, or takes it all), then the loaded models' prediction of
        it. The person's last pick stays when offered; else a model's prediction, else the
        class after the chosen one."""
        chosen = self.active_class()
        values = [c.value for c in self._classes if c.value]
        self.other_class.clear()
        for c in self._classes:
            if c.value and c.value != chosen:
                self.other_class.addItem(f"class {c.name}", ("class", c.value))
        for slot in self._models:
            self.other_class.addItem(f"model {slot}'s prediction of it", ("model", slot))
        following = [v for v in values if v > chosen] + [v for v in values if v < chosen]
        default = ("model", self._models[0]) if self._models else ("class", following[0]) if following else None
        # By value: findData compares a tuple by identity.
        offered = [self.other_class.itemData(n) for n in range(self.other_class.count())]
        for wanted in (self._operand_chosen, default):
            if wanted is not None and wanted in offered:
                self.other_class.setCurrentIndex(offered.index(wanted))
                return

    def operand(self) -> tuple[str, int | str]:
        """The overlap tools' other class: ("class", value) or ("model", slot). Raises
        SessionError when there is none to choose."""
        data = self.other_class.currentData()
        if data is None:
            raise SessionError("The overlap tools need another class or a loaded model; there is none.")
        return data

    def set_read_only(self, reason: str | None) -> None:
        """Disable every control (the labels may not be edited), ``reason`` (why) in each
        one's tooltip; None enables them again with their own tips (and enabled states:
        Qt keeps those of the children)."""
        self.read_only_reason = reason
        self.setEnabled(reason is None)
        for widget in self.findChildren(QWidget):
            if isinstance(widget, (QAbstractButton, QComboBox, QAbstractSpinBox, QListWidget)):
                own = self._own_tips.setdefault(widget, widget.toolTip())
                widget.setToolTip(own if reason is None else f"Read-only: {reason}")
        self.setToolTip("" if reason is None else f"Read-only: {reason}")

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

    def step_class(self, step: int) -> str:
        """The next (``step`` 1) or previous (-1) class, round the list; its name."""
        count = self.class_choice.count()
        if count:
            self.class_choice.setCurrentIndex((self.class_choice.currentIndex() + step) % count)
            self.class_chosen.emit(self.active_class())
        return self.class_choice.currentText()
