"""What a job or a closed window held is freed: memory does not grow over a long review.

Qt holds the slots connected to a signal out of the cycle collector's sight, so a lambda
capturing a job (or the window) in a connection keeps it alive unless the connection goes.
"""
import gc
import threading
import time
import weakref

from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool

from segview.gui.main_window import MainWindow
from segview.gui.workers import GeneratorWorker, Worker
from segview.resources import DEMO_MODELS

from .helpers import load_models, wait_for_inference


def collected(ref: weakref.ref, seconds: float = 30.0) -> bool:
    """Whether ``ref``'s object goes once the pool's jobs ended, deferred deletions ran and
    cycles were collected (a job's thread may still be leaving its run: polled)."""
    deadline = time.monotonic() + seconds
    QThreadPool.globalInstance().waitForDone(int(seconds * 1000))
    while ref() is not None and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        time.sleep(0.01)
    return ref() is None


def test_a_closed_window_frees_itself_its_session_and_its_models(qtbot, dialogs):
    """In the single layout too, where the coronal and sagittal views are out of the layout."""
    window = MainWindow()  # not qtbot.addWidget: it would hold the window to the test's end
    window.show()
    qtbot.waitExposed(window)
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    with wait_for_inference(qtbot, window):
        load_models(qtbot, window, DEMO_MODELS)
    session = weakref.ref(window.session)
    model = weakref.ref(window.session.models["A"])
    closed = weakref.ref(window)
    window.close()
    window.deleteLater()
    del window
    assert collected(closed)
    assert session() is None and model() is None


def test_the_session_of_the_image_before_is_freed_once_another_opens(qtbot, demo):
    """Each prediction run's job captured the session: every case opened with models
    stayed in memory (a worklist of CT cases grew by the volume and its predictions each)."""
    with wait_for_inference(qtbot, demo):
        load_models(qtbot, demo, DEMO_MODELS)
    before = weakref.ref(demo.session)
    with qtbot.waitSignal(demo.loaded, timeout=30000):
        demo.open_demo("cardiac")
    qtbot.waitUntil(lambda: demo.inference is None and all(m.predicted.all() for m in demo.session.models.values()),
                    timeout=60000)
    assert collected(before)


def test_a_worklist_keeps_no_case_it_has_left(qtbot, window, tmp_path, monkeypatch):
    """Going through a dataset with models A and B: the cases left behind are freed (the
    one on screen and the next, opened ahead, may stay)."""
    from tests.session.conftest import make_checkpoint, make_dataset

    from .test_worklist_panel import open_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_dataset(tmp_path / "Dataset001_Tiny", 4)
    (tmp_path / "models").mkdir()
    checkpoints = {slot: make_checkpoint(tmp_path / "models" / f"{slot}.safetensors", seed)
                   for slot, seed in (("A", 1), ("B", 2))}
    controller = open_dataset(qtbot, window, tmp_path / "Dataset001_Tiny", checkpoints)
    left = []
    for _ in range(3):
        left.append(weakref.ref(window.session))
        with qtbot.waitSignal(controller.case_opened, timeout=60000):
            controller.next_case()
        qtbot.waitUntil(lambda: window.inference is None, timeout=60000)
    assert [collected(ref) for ref in left[:-1]] == [True] * (len(left) - 1)


def test_every_finished_job_reaches_the_slots_connected_after_it_was_made(qtbot):
    """The window connects its slots to a job after making it. Deleting the signals from a
    slot of ``finished`` raced the worker thread still emitting ``finished`` to the others:
    some never ran (the inference bar and the worklist's "Predicting 8 / 8" stayed for good,
    Predict all greyed out), and now and then the emission touched the deleted object."""
    def work():
        threading.Event().wait(0.001)  # a job that ends while the window waits for events

    def job(should_stop):
        work()
        yield 1

    count = 200
    finished = []
    workers = [Worker(work) for _ in range(count)] + [GeneratorWorker(job) for _ in range(count)]
    for number, worker in enumerate(workers):
        worker.signals.finished.connect(lambda *_, number=number: finished.append(number))
    for worker in workers:
        worker.start()
    qtbot.waitUntil(lambda: len(finished) == 2 * count, timeout=30000)
    assert sorted(finished) == list(range(2 * count))
