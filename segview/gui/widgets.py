"""Small widget helpers the window and its panels share."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QWidget


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
