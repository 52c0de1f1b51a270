import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from segview.gui.main_window import MainWindow


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """Recent files and other settings go to a temporary folder, not the user's."""
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path_factory.mktemp("settings")))


class Dialogs(list):
    """Message boxes shown (kind, text); ``answers`` are popped by questions (default:
    Discard, so a test never waits on a modal dialog)."""
    answers: list


@pytest.fixture
def dialogs(monkeypatch):
    shown = Dialogs()
    shown.answers = []
    for kind in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, kind, lambda parent, title, text, *_, kind=kind: shown.append((kind, text)))

    def question(parent, title, text, *_):
        shown.append(("question", text))
        return shown.answers.pop(0) if shown.answers else QMessageBox.Discard

    monkeypatch.setattr(QMessageBox, "question", question)
    return shown


@pytest.fixture
def window(qtbot, dialogs):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()  # stops inference and waits for workers, so no thread outlives the test


@pytest.fixture
def demo(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    return window
