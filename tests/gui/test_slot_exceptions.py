"""The conftest fixture that fails a GUI test when an exception escapes a Qt slot: checked by
running tests that raise in slots in another pytest, with pytest-qt's own capture off."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

INNER = '''
from PySide6.QtCore import QObject, QTimer, Signal


class Source(QObject):
    fired = Signal(int)


def test_a_signal_into_a_raising_slot(qtbot):
    source = Source()
    source.fired.connect(lambda n: [][n])
    source.fired.emit(3)  # returns normally: PySide6 hands the IndexError to sys.excepthook


def test_a_timer_into_a_raising_slot(qtbot):
    def boom():
        raise KeyError("B")

    QTimer.singleShot(0, boom)
    qtbot.wait(20)


def test_a_window_slot_that_raises(qtbot, window):
    window.loaded.connect(lambda: 1 / 0)
    window.loaded.emit()


def test_quiet_slots_pass(qtbot, window):
    source = Source()
    seen = []
    source.fired.connect(seen.append)
    source.fired.emit(1)
    assert seen == [1]
'''


def test_an_exception_escaping_a_slot_fails_the_test(tmp_path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_STATE_HOME=str(tmp_path / "state"), COLUMNS="300")
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "qt_no_exception_capture=1",
               "-q", "-rf", str(tmp_path)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "3 failed, 1 passed" in out, out
    for name, error in (("test_a_signal_into_a_raising_slot", "IndexError"),
                        ("test_a_timer_into_a_raising_slot", "KeyError: 'B'"),
                        ("test_a_window_slot_that_raises", "ZeroDivisionError")):
        assert f"FAILED test_inner.py::{name} - Failed: 1 exception(s) escaped a Qt slot" in out, out
        assert error in out, out
