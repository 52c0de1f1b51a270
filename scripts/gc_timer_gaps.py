"""The window's 60 Hz timer gaps while a worker thread reads a DICOM series, under Python's
own cycle collector and under the window's (``gui.workers.garbage_collected_on_the_main_thread``),
side by side in one run, alternating. The README's figures came from:

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/gc_timer_gaps.py [--reads 200] [--rounds 2]

Left to itself the collector runs in whichever thread allocates past its threshold: here the
reading worker, which holds the GIL meanwhile, so the window's thread waits."""
import argparse
import gc
import tempfile
import threading
import time
from contextlib import nullcontext

import numpy as np
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from segview.core.dicom import write_dicom_series
from segview.core.io import load_volume
from segview.core.phantoms import make_phantom
from segview.gui.workers import garbage_collected_on_the_main_thread


def timer_gaps(app: QApplication, folder: str, reads: int) -> np.ndarray:
    """Milliseconds between the ticks of a 16 ms timer while a thread reads ``folder`` ``reads`` times."""
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    done = threading.Event()

    def read() -> None:
        for _ in range(reads):
            load_volume(folder)
        done.set()

    timer.start(16)
    threading.Thread(target=read).start()
    while not done.is_set():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.001)
    timer.stop()
    return np.diff(ticks) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as folder:
        write_dicom_series(make_phantom("lung", 7).volume, folder)
        regimes = {"Python's collector (any thread)": nullcontext,
                   "the window's (main thread, 1 s)": garbage_collected_on_the_main_thread}
        for round_ in range(args.rounds):
            for name, regime in regimes.items():
                gc.collect()
                with regime():
                    gaps = timer_gaps(app, folder, args.reads)
                print(f"round {round_ + 1}, {name:32s}: {gaps.size} ticks, p50 {np.percentile(gaps, 50):.1f} ms, "
                      f"p99 {np.percentile(gaps, 99):.1f} ms, longest {gaps.max():.1f} ms")


if __name__ == "__main__":
    main()
