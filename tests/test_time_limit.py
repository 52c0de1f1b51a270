"""A test that hangs fails alone, after the time limit of pyproject.toml, with the stack of
every thread printed; the run goes on to the next test."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HANGING = '''
import threading
import time


def test_hangs():
    helper = threading.Thread(target=time.sleep, args=(60,), name="helper-thread", daemon=True)
    helper.start()
    helper.join()


def test_after_the_hang():
    assert True
'''


def test_the_time_limit_is_generous_and_fails_one_test(pytestconfig):
    assert float(pytestconfig.getini("timeout")) >= 120, "the machines are slow: a limit a slow test never meets"
    assert pytestconfig.getini("timeout_method") == "signal", "the thread method ends the whole run"


def test_a_hang_fails_its_test_with_every_threads_stack_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_hang.py").write_text(textwrap.dedent(HANGING))
    # The project's configuration, with a short limit for this run only.
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir",
                             str(tmp_path), "-p", "no:cacheprovider", "--timeout", "3", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = result.stdout + result.stderr
    assert "1 failed, 1 passed" in out, out
    assert "Timeout" in out and "helper-thread" in out, out   # the other thread's stack
    assert "test_hang.py:9" in out, out                        # and the main thread's
