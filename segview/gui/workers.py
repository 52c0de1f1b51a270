"""Background jobs: run a function in the thread pool, report on the main thread.

Signals live on a QObject (superqt style), so slots run in the receiver's thread and
no widget is ever touched from a worker.
"""
from __future__ import annotations

import threading
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
        self.pool().start(self)
        return self

    @staticmethod
    def pool() -> QThreadPool:
        return QThreadPool.globalInstance()


class InferenceSignals(QObject):
    device = Signal(str)             # the device each model runs on, e.g. "cuda (NVIDIA H100)"
    predicted = Signal(str, object)  # model key, list of SlicePrediction
    progress = Signal(int, int)      # slices done (all models), total
    message = Signal(str)            # e.g. the GPU ran out of memory, continuing on the CPU
    errored = Signal(object)
    finished = Signal(bool)          # True when every slice was predicted, False if cancelled


class InferenceWorker(QRunnable):
    """Runs one or two ``Predictor`` s over a volume, batch by batch, starting at slice
    ``first`` and moving outwards; both models predict a batch before the next one starts,
    so the slice on screen shows both overlays first. ``cancel`` stops it after the batch
    in progress (cooperative: a batch is the smallest unit the GPU works on)."""

    def __init__(self, predictors: dict, volume, first: int | None = None):
        super().__init__()
        self.setAutoDelete(False)  # the window keeps it until finished, then drops it
        self.predictors, self.volume, self.first = predictors, volume, first
        self.signals = InferenceSignals()
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
        from ..ml.inference import slice_order

        try:
            completed = self._predict(slice_order(self.volume.shape[0], self.first))
        except Exception as exc:  # noqa: BLE001 - reported to the main thread, never lost
            exc.formatted = traceback.format_exc()
            self.signals.errored.emit(exc)
            completed = False
        finally:
            self._done.set()
        self.signals.finished.emit(completed)

    def _predict(self, order: list[int]) -> bool:
        for key, predictor in self.predictors.items():
            self.signals.device.emit(f"{key}: {describe_device(predictor.device)}")
        prepared = {key: p.prepare(self.volume) for key, p in self.predictors.items()}
        batch_size = min(p.batch_size for p in self.predictors.values())
        total, done = len(order) * len(self.predictors), 0
        for start in range(0, len(order), batch_size):
            for key, predictor in self.predictors.items():
                if self._stop.is_set():
                    return False
                warned = predictor.fallback_message
                batch = list(predictor.predict_slices(prepared[key], order[start:start + batch_size]))
                if predictor.fallback_message and not warned:
                    self.signals.message.emit(predictor.fallback_message)
                    self.signals.device.emit(f"{key}: {describe_device(predictor.device)}")
                self.signals.predicted.emit(key, batch)
                done += len(batch)
                self.signals.progress.emit(done, total)
        return True


def describe_device(device) -> str:
    """"cpu", "cuda (NVIDIA H100 80GB HBM3)" or "mps": what the status bar shows."""
    if device.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
