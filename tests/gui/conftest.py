import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from segview.gui.main_window import MainWindow


@pytest.fixture(autouse=True)
def private_settings(tmp_path_factory):
    """Recent files and other settings go to a temporary folder, not the user's."""
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp_path_factory.mktemp("settings")))


@pytest.fixture
def dialogs(monkeypatch):
    shown = []
    for kind in ("critical", "warning", "information"):
        monkeypatch.setattr(QMessageBox, kind, lambda parent, title, text, kind=kind: shown.append((kind, text)))
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
