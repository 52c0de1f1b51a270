"""Number boxes read "." and "," alike as the decimal mark and never a group separator,
whatever the locale: Qt's spin boxes read German "7.5" as 75 (the dot is its group
separator), silently, and English "7,5" alike. Typed with real key events into the window."""
from pathlib import Path

import pytest
from PySide6.QtCore import QLocale, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QSpinBox

from segview.gui.dialogs import FineTuneDialog


@pytest.fixture
def in_locale():
    """Sets Qt's default locale (what widgets made after it read and show numbers in), as
    LC_ALL would, with no system locale needed; puts the one before back."""
    before = QLocale()

    def use(language):
        QLocale.setDefault(QLocale(language))

    yield use
    QLocale.setDefault(before)


@pytest.fixture
def german(in_locale):
    in_locale(QLocale.Language.German)


@pytest.fixture
def english(in_locale):
    in_locale(QLocale.Language.English)


def typed(qtbot, box, text):
    """The box's value after ``text`` typed over its number and Return."""
    box.selectAll()
    qtbot.keyClicks(box, text)
    qtbot.keyClick(box, Qt.Key.Key_Return)
    return box.value()


@pytest.mark.parametrize("text", ["7.5", "7,5"])
def test_a_german_brush_radius_takes_either_decimal_mark(qtbot, german, window, text):
    radius = window.tools.radius
    assert typed(qtbot, radius, text) == 7.5
    assert radius.text() == "7,50 mm"  # shown with the locale's mark


def test_a_german_brush_radius_reads_no_group_separator(qtbot, german, window):
    assert typed(qtbot, window.tools.radius, "1.000") == 1.0  # a decimal mark (the last 0 is past its 2 decimals)


@pytest.mark.parametrize("text", ["7.5", "7,5"])
def test_an_english_brush_radius_takes_either_decimal_mark(qtbot, english, window, text):
    assert typed(qtbot, window.tools.radius, text) == 7.5


def test_no_number_box_in_the_window_reads_german_7_5_as_75(qtbot, german, demo):
    boxes = demo.findChildren(QAbstractSpinBox)
    assert len(boxes) >= 6  # radius, intensity range, class tool amount, level and surface tolerances
    for box in boxes:
        assert box.isEnabled(), box.toolTip()
        whole = isinstance(box, QSpinBox) or box.decimals() == 0
        # A whole-number box keeps the 7 typed before the mark: ".5" cannot be read there.
        assert typed(qtbot, box, "7.5") == (7 if whole else 7.5), box.toolTip()


def test_the_fine_tune_epochs_are_not_multiplied_by_a_decimal_mark(qtbot, german):
    dialog = FineTuneDialog(None, Path("model.pt"), 20, (10, None))
    qtbot.addWidget(dialog)
    assert typed(qtbot, dialog.epochs, "7.5") == 7
    assert typed(qtbot, dialog.epochs, "1.00") == 1  # not one hundred
