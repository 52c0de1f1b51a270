"""Small widget helpers the window and its panels share."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QFrame, QScrollArea, QSpinBox, QWidget

#: What a spin box's ``validate`` returns: the state, the text (as shown) and the cursor.
Validated = tuple[QValidator.State, str, int]


def scrolled(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless scroll area that fits its width: a tall panel scrolls in a
    short window instead of setting the window's least height (the Tools panel's 614
    pixels had a 1024 x 700 window paint docks over each other)."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(widget)
    scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a click on a panel's button leaves the keys to the view
    # As wide as the widget needs beside a vertical scroll bar: it scrolls down, never across.
    scroll.setMinimumWidth(widget.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width())
    return scroll


class NumberBox(QDoubleSpinBox):
    """A QDoubleSpinBox that reads both "." and "," as the decimal mark and never reads a
    group separator. Qt's own takes the locale's group separator in typed text and drops it:
    under a German locale "7.5" typed into the brush radius became 75 mm, silently, and under
    an English one "7,5" did. Numbers are shown with the locale's decimal mark."""

    def validate(self, text: str, pos: int) -> Validated:
        return _validate(self, QDoubleSpinBox.validate, text, pos)

    def valueFromText(self, text: str) -> float:
        return super().valueFromText(_decimal_marks(self, text))


class WholeNumberBox(QSpinBox):
    """A QSpinBox that reads no group separator (German "1.000" was 1000) and takes no
    decimal mark ("7.5" was 75, the mark typed was dropped or read as a group separator)."""

    def validate(self, text: str, pos: int) -> Validated:
        return _validate(self, QSpinBox.validate, text, pos)

    def valueFromText(self, text: str) -> int:
        return super().valueFromText(_decimal_marks(self, text))


def _number_span(box: QSpinBox | QDoubleSpinBox, text: str) -> slice:
    """Where the number is in ``text``: between the box's prefix and suffix."""
    start = len(box.prefix()) if text.startswith(box.prefix()) else 0
    end = len(text) - len(box.suffix()) if box.suffix() and text.endswith(box.suffix()) else len(text)
    return slice(start, end)


def _decimal_marks(box: QSpinBox | QDoubleSpinBox, text: str) -> str:
    """``text`` with every "." and "," of its number made the locale's decimal mark."""
    span, mark = _number_span(box, text), box.locale().decimalPoint()
    return text[:span.start] + text[span].replace(".", mark).replace(",", mark) + text[span.stop:]


def _validate(box: QSpinBox | QDoubleSpinBox, validate: Callable[..., Validated], text: str, pos: int) -> Validated:
    """Qt's validation of ``text`` with the locale's decimal marks (``_decimal_marks``).
    A group separator, or a decimal mark in a box of whole numbers, leaves the number
    unfinished (Intermediate, not Invalid): Qt drops an Invalid keystroke, so "7.5" typed
    would still be 75; Return on an unfinished number keeps the last value."""
    text = _decimal_marks(box, text)
    locale = box.locale()
    unreadable = {locale.groupSeparator()}
    if isinstance(box, QSpinBox) or box.decimals() == 0:
        unreadable.add(locale.decimalPoint())
    if any(mark and mark in text[_number_span(box, text)] for mark in unreadable):
        return QValidator.State.Intermediate, text, pos
    return validate(box, text, pos)
