import sys
import traceback

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from segview.gui.main_window import MainWindow


@pytest.fixture(autouse=True)
def no_exception_escapes_a_slot(request):
    """Fail the test when an exception escapes a Qt slot (a signal's receiver, a timer's
    callback, a virtual method such as an event handler) during it: the test fails when its
    body ends (``pytest_runtest_call`` below), or at teardown for what escaped after that.

    PySide6 does not raise such an exception where the signal was emitted: it hands it to
    ``sys.excepthook`` and carries on, so the window goes on half updated and the test
    would pass. pytest-qt hooks ``sys.excepthook`` too, unless ``qt_no_exception_capture``
    turns it off; this fixture does not depend on that (``test_slot_exceptions.py``
    checks it with pytest-qt's capture off)."""
    escaped = request.node.escaped_from_slots = []
    previous = sys.excepthook

    def record(kind, value, trace):
        escaped.append((kind, value, trace))
        traceback.print_exception(kind, value, trace, file=sys.stderr)

    sys.excepthook = record
    try:
        yield escaped
        if QApplication.instance() is not None:
            QApplication.processEvents()  # what the test left queued (a worker's last signals)
    finally:
        sys.excepthook = previous
    _fail_if_escaped(escaped)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    escaped = getattr(item, "escaped_from_slots", None)
    if escaped is not None:
        if QApplication.instance() is not None:
            QApplication.processEvents()
        _fail_if_escaped(escaped)
    return result


def _fail_if_escaped(escaped: list) -> None:
    if escaped:
        found, escaped[:] = list(escaped), []
        text = "".join("".join(traceback.format_exception(kind, value, trace)) for kind, value, trace in found)
        pytest.fail(f"{len(found)} exception(s) escaped a Qt slot during the test:\n{text}", pytrace=False)


class Dialogs(list):
    """Message boxes shown (kind, text); ``answers`` are popped by questions (default:
    Discard, so a test never waits on a modal dialog); ``defaults``: each question's
    default button (what Enter answers), None where it gave none."""
    answers: list
    defaults: list


@pytest.fixture
def dialogs(monkeypatch):
    shown = Dialogs()
    shown.answers, shown.defaults = [], []
    for kind in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, kind, lambda parent, title, text, *_, kind=kind: shown.append((kind, text)))

    def question(parent, title, text, buttons=None, default=None):
        shown.append(("question", text))
        shown.defaults.append(default)
        return shown.answers.pop(0) if shown.answers else QMessageBox.Discard

    monkeypatch.setattr(QMessageBox, "question", question)
    return shown


@pytest.fixture
def window(qtbot, dialogs):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()  # stops inference and waits for workers, so no thread outlives the test


@pytest.fixture
def demo(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    return window
