import os

# GUI tests never need a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def private_state(tmp_path_factory, monkeypatch):
    """Edit journals go to a temporary state folder, and the window's settings (recent
    files, last folder, PACS servers) to a temporary config folder: never the user's, in
    every test (the bench and command-line tests open windows too)."""
    from PySide6.QtCore import QSettings

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path_factory.mktemp("settings")))
