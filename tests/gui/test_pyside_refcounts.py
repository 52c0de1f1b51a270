"""PySide6 6.12.0 on Python 3.11 releases None once per void-method call, and the
process dies with "deallocating None" (the suite did, at exit). pyproject.toml keeps
such a build out; this test catches it, or another like it, before a user does."""
import sys

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel


def test_qt_calls_keep_the_reference_counts_of_none_and_bools(qapp):
    timer, label, holder = QTimer(), QLabel(), QObject()
    calls = (lambda: timer.setSingleShot(True), lambda: timer.setInterval(5), lambda: label.setText("x"),
             lambda: holder.blockSignals(False), lambda: QTimer(singleShot=True, interval=5))
    for call in calls:
        call()  # first calls may cache things
    before = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(200):
        for call in calls:
            call()
    after = sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False)
    # Immortal objects (Python 3.12+) report a constant huge count; otherwise a loss of
    # about one per call shows up as a drop of 1000.
    assert all(a - b > -50 for a, b in zip(after, before)), (before, after)
