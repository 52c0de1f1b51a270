import gc
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


def _opens_windows(item) -> bool:
    return "qapp" in getattr(item, "fixturenames", ())  # qtbot's tests too


def pytest_runtest_setup(item):
    if _opens_windows(item):
        gc.disable()  # see pytest_runtest_teardown


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
    """No cycle collection during a test that opens windows: it collects once the test's
    widgets are deleted and its jobs have ended, on the main thread. Left to run at any
    allocation, a collection crashed CI twice in 'test_pacs_dialog' (a segmentation fault while
    a PACS search ran in the pool), and a window's garbage left for later could be freed in
    another test's worker thread. The application collects on its main thread between events
    (``segview.gui.workers.garbage_collected_on_the_main_thread``)."""
    try:
        return (yield)
    finally:
        if _opens_windows(item):
            from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool

            if QCoreApplication.instance() is not None:
                QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # qtbot's deleteLater
                QThreadPool.globalInstance().waitForDone(30000)
            gc.collect()
            gc.enable()
