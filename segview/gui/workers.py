"""Background jobs: run a function in the thread pool, report on the main thread.

Signals live on a QObject (superqt style), so slots run in the receiver's thread and
no widget is ever touched from a worker.
"""
from __future__ import annotations

import gc
import threading
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

from PySide6.QtCore import QEventLoop, QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(int, int)  # done, total
    first_slice = Signal(object, int)  # a volume still loading, and the slice of it ready to show
    returned = Signal(object)
    errored = Signal(object)  # the exception
    finished = Signal()


def release_when_finished(signals: QObject) -> None:
    """Delete ``signals`` on the main thread once every slot of its ``finished`` has run;
    call it in the worker, after ``finished`` was emitted. The lambdas connected to it are
    held by Qt, out of the collector's sight; one capturing the job kept the job, its
    arguments and the window alive for good. The deletion is posted after the slots' calls:
    deleted from a slot of ``finished`` instead, it raced the worker thread still emitting
    ``finished`` to the other slots, some of which then never ran."""
    signals.deleteLater()  # type: ignore[attr-defined]


class Worker(QRunnable):
    """Runs ``function(*args)`` in the global thread pool; connect ``signals`` first. With
    ``reports_progress`` the function is also given ``progress=`` (done, total) -> None, with
    ``shows_first_slice`` a loader's ``first_slice=`` (volume, z) -> None."""

    def __init__(self, function: Callable, *args, reports_progress: bool = False,
                 shows_first_slice: bool = False):
        super().__init__()
        self.function, self.args = function, args
        self.signals = WorkerSignals()
        self.kwargs: dict = {"progress": self._progress} if reports_progress else {}
        if shows_first_slice:  # the function takes first_slice=(volume, z) -> None (a loader)
            self.kwargs["first_slice"] = self.signals.first_slice.emit

    def _progress(self, done: int, total: int) -> None:
        self.signals.progress.emit(done, total)

    def run(self) -> None:
        self.signals.started.emit()
        try:
            result = self.function(*self.args, **self.kwargs)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread, never lost
            exc.formatted = traceback.format_exc()  # type: ignore[attr-defined]  # for the report
            self.signals.errored.emit(exc)
        else:
            self.signals.returned.emit(result)
        finally:
            self.signals.finished.emit()
            release_when_finished(self.signals)

    def start(self) -> "Worker":
        self.pool().start(self)
        return self

    @staticmethod
    def pool() -> QThreadPool:
        return QThreadPool.globalInstance()


class GeneratorSignals(QObject):
    yielded = Signal(object)         # each value the generator yields
    errored = Signal(object)
    finished = Signal(bool)          # True when the generator ran out, False if cancelled or failed


class GeneratorWorker(QRunnable):
    """Drives ``function(*args, should_stop=...)``, a plain generator, in the thread pool
    (superqt's GeneratorWorker): each value it yields arrives on the main thread through
    ``signals.yielded``. ``cancel`` is cooperative: the generator checks ``should_stop``
    between its steps (inference: after each batch, the smallest unit a GPU works on)."""

    def __init__(self, function: Callable, *args):
        super().__init__()  # deleted by the pool once run (as Worker): kept, it kept its arguments for good
        self.function, self.args = function, args
        self.signals = GeneratorSignals()
        self._stop = threading.Event()
        self._done = threading.Event()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``run`` has returned (for closing the window); False on timeout."""
        return self._done.wait(timeout)

    def run(self) -> None:
        completed = False
        try:
            for value in self.function(*self.args, should_stop=self._stop.is_set):
                self.signals.yielded.emit(value)
            completed = not self._stop.is_set()
        except Exception as exc:  # noqa: BLE001 - reported to the main thread, never lost
            exc.formatted = traceback.format_exc()  # type: ignore[attr-defined]  # for the report
            self.signals.errored.emit(exc)
        finally:
            self._done.set()
        self.signals.finished.emit(completed)
        release_when_finished(self.signals)

    def start(self) -> "GeneratorWorker":
        Worker.pool().start(self)
        return self


class SupersedingJobQueue:
    """Generator jobs (``GeneratorWorker``) of a few kinds, run one at a time, so that they
    hold at most one of the pool's threads. Of each kind only the newest request counts: it
    replaces one still waiting and cancels one running, whose values are no longer handed
    on. Waiting kinds start in the order of ``kinds``; none starts while ``ready()`` says
    no (call ``start`` when it may say yes again). ``priority``: the thread pool's."""

    def __init__(self, kinds: tuple[str, ...], priority: int = 0, ready: Callable[[], bool] | None = None):
        self.kinds, self.priority, self.ready = kinds, priority, ready
        self.running: tuple[str, GeneratorWorker] | None = None
        self.waiting: dict[str, tuple] = {}
        self.requests = dict.fromkeys(kinds, 0)  # of each kind: the number of the newest request

    def busy(self, kind: str | None = None) -> bool:
        """Whether a job (of ``kind``) runs or waits."""
        if kind is None:
            return self.running is not None or bool(self.waiting)
        return kind in self.waiting or (self.running is not None and self.running[0] == kind)

    def request(self, kind: str, job: Callable, on_value: Callable, on_done: Callable | None = None,
                on_error: Callable | None = None) -> None:
        """Run ``job(should_stop=...)``, a generator, in place of any other of ``kind``: each
        value it yields goes to ``on_value``, then ``on_done(completed)``; an exception to
        ``on_error`` (all on the main thread, and only while this is the newest request)."""
        self.requests[kind] += 1
        self.waiting[kind] = (self.requests[kind], job, on_value, on_done, on_error)
        if self.running is not None and self.running[0] == kind:
            self.running[1].cancel()
        self.start()

    def cancel(self, kind: str | None = None) -> None:
        """Drop the jobs of ``kind`` (default: every kind), waiting or running."""
        for name in (kind,) if kind else self.kinds:
            self.requests[name] += 1
            self.waiting.pop(name, None)
            if self.running is not None and self.running[0] == name:
                self.running[1].cancel()

    def start(self) -> None:
        """Start the first waiting job, if none runs and ``ready()`` allows."""
        if self.running is not None or not self.waiting or (self.ready is not None and not self.ready()):
            return
        kind = next(k for k in self.kinds if k in self.waiting)
        number, job, on_value, on_done, on_error = self.waiting.pop(kind)
        newest = lambda: number == self.requests[kind]
        worker = GeneratorWorker(job)
        worker.signals.yielded.connect(lambda value: on_value(value) if newest() else None)
        worker.signals.errored.connect(lambda exc: on_error(exc) if newest() and on_error else None)
        worker.signals.finished.connect(lambda completed: self._finished(worker, newest(), completed, on_done))
        self.running = (kind, worker)
        Worker.pool().start(worker, self.priority)

    def _finished(self, worker: GeneratorWorker, newest: bool, completed: bool, on_done: Callable | None) -> None:
        if self.running is not None and self.running[1] is worker:
            self.running = None
        if newest and on_done is not None:
            on_done(completed)
        self.start()


def run_modal(parent: QWidget, function: Callable, text: str) -> tuple[bool, object]:
    """``function()`` in a worker while the caller waits (a save before closing): a busy
    dialog, modal to ``parent``, shows after 300 ms; the window keeps painting but takes no
    input meanwhile. Returns (True, the result) or (False, the exception)."""
    outcome: list[tuple[bool, object]] = []
    loop = QEventLoop()
    worker = Worker(function)
    worker.signals.returned.connect(lambda result: outcome.append((True, result)))
    worker.signals.errored.connect(lambda exc: outcome.append((False, exc)))
    worker.signals.finished.connect(loop.quit)  # queued: delivered inside loop.exec()
    dialog = QProgressDialog(text, "", 0, 0, parent)
    dialog.setCancelButton(None)  # a half-written file is never left: the save finishes
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(300)
    worker.start()
    loop.exec()
    dialog.close()
    dialog.deleteLater()
    return outcome[0]


@contextmanager
def garbage_collected_on_the_main_thread() -> Iterator[None]:
    """Inside, Python's cycle collector runs on the main thread only, between events.
    Left alone it runs in whichever thread allocates past its threshold: in a worker
    (pynetdicom's threads allocate a great deal) it would free Qt objects caught in a
    reference cycle from the wrong thread. pyqtgraph's GarbageCollector turns it off and
    collects from a main-thread timer instead."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    collector = GarbageCollector(interval=1.0)
    try:
        yield
    finally:
        collector.timer.stop()
        gc.enable()


def describe_device(device) -> str:
    """"cpu", "cuda (NVIDIA H100 80GB HBM3)" or "mps": what the status bar shows."""
    if device.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
