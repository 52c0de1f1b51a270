"""Background jobs: run a function in the thread pool, report on the main thread.

Signals live on a QObject (superqt style), so slots run in the receiver's thread and
no widget is ever touched from a worker.
"""
from __future__ import annotations

import traceback
from typing import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


class WorkerSignals(QObject):
    started = Signal()
    returned = Signal(object)
    errored = Signal(object)  # the exception
    finished = Signal()


class Worker(QRunnable):
    """Runs ``function(*args)`` in the global thread pool; connect ``signals`` first."""

    def __init__(self, function: Callable, *args):
        super().__init__()
        self.function, self.args = function, args
        self.signals = WorkerSignals()

    def run(self) -> None:
        self.signals.started.emit()
        try:
            result = self.function(*self.args)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread, never lost
            exc.formatted = traceback.format_exc()
            self.signals.errored.emit(exc)
        else:
            self.signals.returned.emit(result)
        finally:
            self.signals.finished.emit()

    def start(self) -> "Worker":
        QThreadPool.globalInstance().start(self)
        return self
