"""Small dialogs the main window asks questions with."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QFormLayout, QHeaderView, QLabel,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from ..core.report import counted
from .widgets import WholeNumberBox

SERIES_COLUMNS = ("Series number", "Description", "Modality", "Images", "Size", "Note", "Patient")


def series_rows(series) -> list[tuple[str, str, str, str, str, str, str]]:
    """One row of SERIES_COLUMNS per ``SeriesInfo``: the patient too, as a folder may hold
    series of several. Series sharing a SeriesNumber say so, with the end of their UIDs:
    their rows read as one series listed twice."""
    numbers = [s.number for s in series]
    rows = []
    for s in series:
        columns, rows_, count = s.size
        notes = ["localizer"] if s.is_localizer else []
        if s.number is not None and numbers.count(s.number) > 1:
            notes.append(f"shares its number; UID ...{s.uid[-8:]}")
        rows.append(("" if s.number is None else str(s.number), s.description or "(no description)",
                     s.modality or "?", str(count), f"{columns} x {rows_}", "; ".join(notes), s.patient))
    return rows


class SeriesDialog(QDialog):
    """A table of the series of a DICOM folder; the first non-localizer is selected."""

    def __init__(self, parent, folder, series):
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.series = list(series)
        self.table = QTableWidget(len(self.series), len(SERIES_COLUMNS))
        self.table.setHorizontalHeaderLabels(SERIES_COLUMNS)
        self.table.horizontalHeaderItem(0).setToolTip("The DICOM SeriesNumber, which two series may share")
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().hide()
        for r, row in enumerate(series_rows(self.series)):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                item.setToolTip(f"UID {self.series[r].uid}")
                self.table.setItem(r, c, item)
        # Every column as wide as its header and cells: a stretched Description was squeezed
        # to "escriptio" by a long note or patient.
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.selectRow(next((n for n, s in enumerate(self.series) if not s.is_localizer), 0))
        self.table.doubleClicked.connect(self.accept)
        buttons = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"{Path(folder).name} holds {len(self.series)} series. Open which one?"))
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(min(max(900, self.table.horizontalHeader().length() + 60), 1600), 320)  # the columns, on a screen

    def chosen(self):
        rows = self.table.selectionModel().selectedRows()
        return self.series[rows[0].row()] if rows else None


def choose_series(parent, folder, series):
    """The ``SeriesInfo`` the user picks, or None when cancelled."""
    dialog = SeriesDialog(parent, folder, series)
    return dialog.chosen() if dialog.exec() == QDialog.Accepted else None


#: The most epochs the fine-tune dialog offers (the shipped models learnt in fewer).
MAX_FINE_TUNE_EPOCHS = 500


class FineTuneDialog(QDialog):
    """Fine-tune model A: what it trains on and the number of epochs (``epochs``)."""

    def __init__(self, parent, checkpoint: Path, epochs: int, slices: tuple[int, int | None]):
        super().__init__(parent)
        self.setWindowTitle("Fine-tune model A")
        self.epochs = WholeNumberBox()
        self.epochs.setRange(1, MAX_FINE_TUNE_EPOCHS)
        self.epochs.setValue(min(max(epochs, 1), MAX_FINE_TUNE_EPOCHS))
        self.epochs.setToolTip("Each epoch draws every reviewed training slice (at least 8 steps)")
        form = QFormLayout()
        form.addRow("Model A:", QLabel(checkpoint.name))
        form.addRow("Reviewed slices:", QLabel(reviewed_slices_text(*slices)))
        form.addRow("Epochs:", self.epochs)
        note = QLabel("The epoch with the best held-out Dice is kept, so more epochs cost time, not overfitting.")
        note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fine-tune")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(note)
        layout.addWidget(buttons)


def reviewed_slices_text(train: int, held_out: int | None) -> str:
    """What the dialog says of the reviewed slices of the training and held-out cases
    (``held_out`` None: no split yet, ``train`` counts them all)."""
    if held_out is None:
        return f"{counted(train, 'reviewed slice')}; the held-out cases are drawn when it starts (splits.json)"
    return f"{counted(train, 'training slice')}, {counted(held_out, 'held-out slice')}"


def ask_fine_tune_epochs(parent, checkpoint: Path, epochs: int, slices: tuple[int, int | None]) -> int | None:
    """The number of epochs chosen (``epochs`` offered first), or None when cancelled."""
    dialog = FineTuneDialog(parent, checkpoint, epochs, slices)
    return dialog.epochs.value() if dialog.exec() == QDialog.DialogCode.Accepted else None
