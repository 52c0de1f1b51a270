"""One background job's row in a dock (the worklist's prediction queue, dataset report and
fine-tuning): a label, a progress bar and Cancel. A module of its own so that the
fine-tuning job and the worklist dock share it without importing each other."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget


class JobRow(QWidget):
    """A label, a progress bar and a Cancel button for one background job."""
    cancel_clicked = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.label = QLabel()
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancel_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, stretch=1)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel)
        self.hide()

    def start(self, text: str) -> None:
        self.label.setText(text)
        self.bar.setRange(0, 0)
        self.cancel.setEnabled(True)
        self.show()

    def step(self, done: int, total: int, text: str | None = None) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        if text is not None:
            self.label.setText(text)
