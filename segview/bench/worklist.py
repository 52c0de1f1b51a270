"""``segview bench worklist``: switching to the next case of a dataset in the window, cold
against prefetched (issue 13: a 300 x 512 x 512 CT case with cached predictions on screen
in at most 1 s).

A 2-case nnU-Net dataset of 300 x 512 x 512 CT (the lung phantom blown up, as ``bench gui``
does; the second case mirrored, so each has an image of its own) is written to a temporary
folder with labels, and the predictions of both shipped lung checkpoints are put straight
into the worklist's prediction cache with their confusion counts against the labels, as the
prediction queue leaves them (synthetic predictions: a shift and an erosion of the labels, as
``large_ct`` makes them; no inference runs). The cache and the edit journals live in
temporary folders too, never the user's.

In the window (offscreen without a display) the dataset opens with both checkpoints, and
each round times Ctrl+N from case 1 to case 2, until the case is on screen
(``case_opened``): cold, with prefetching off (``Worklist.session`` and
``window.show_session`` while the user waits), and with prefetching on, once case 2 was
opened in the background while case 1 was on screen. The shown session's predictions are
checked against the cached ones. The cold switch is also given as a ratio to reading the
case's image alone (``load_volume``, timed in the same rounds): what no open can go below.
"""
from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core.errors import SegviewError
from .gui import large_ct

SHAPE = (300, 512, 512)  # (z, y, x)
TARGET_S = 1.0
CASES = ("case_000", "case_001")
TIMEOUT_S = 120.0  # a step takes about a second; past this the bench is stuck, not slow


def lung_checkpoints() -> dict[str, Path]:
    """Models A and B: the shipped lung checkpoints (CE, CE + Dice)."""
    from ..resources import shipped_models

    models = shipped_models()
    missing = [name for name in ("lung_ce", "lung_ce_dice") if name not in models]
    if missing:
        raise FileNotFoundError(f"no shipped checkpoint {', '.join(missing)} in segview/resources/models")
    return {"A": models["lung_ce"], "B": models["lung_ce_dice"]}


def build_dataset(folder: Path, cache, checkpoints: dict[str, Path], shape=SHAPE) -> dict[str, dict]:
    """Write the 2-case dataset into ``folder`` (nnU-Net layout) and put each case's
    synthetic predictions by ``checkpoints`` into ``cache`` (a ``PredictionCache``) as the
    prediction queue would. Returns case -> {"key": image key, slot: prediction}."""
    from ..core.io import load_volume, save_labels, save_volume
    from ..core.journal import image_key
    from ..core.phantoms import LUNG_CLASSES
    from ..core.volume import Volume
    from ..session.worklist import cache_counts, checkpoint_digest

    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    volume, labels, shifted, eroded = large_ct(tuple(shape))
    digests = {slot: checkpoint_digest(path) for slot, path in checkpoints.items()}
    cases: dict[str, dict] = {}
    for n, name in enumerate(CASES):
        flip = (lambda a: np.ascontiguousarray(a[:, :, ::-1])) if n else (lambda a: a)
        image = Volume(flip(volume.array), volume.spacing, volume.origin, volume.direction,
                       modality="CT", meta=dict(volume.meta))
        path = save_volume(folder / "imagesTr" / f"{name}_0000.nii.gz", image)
        labels_path = save_labels(folder / "labelsTr" / f"{name}.nii.gz", flip(labels), image, LUNG_CLASSES)
        read_back = load_volume(path)  # the image as a session reads it back
        key = image_key(read_back)
        cases[name] = {"key": key}
        for slot, prediction, entropy in (("A", flip(shifted), 0.05), ("B", flip(eroded), 0.04)):
            cache.put(key, digests[slot], prediction, {"mean_entropy": entropy, "shape": list(shape)})
            cases[name][slot] = prediction
        cache_counts(cache, key, {digests[slot]: cases[name][slot] for slot in "AB"}, labels_path, read_back)
        cache.remember_key([path], key)
        cache.ensure_disputed(key, digests["A"], digests["B"])
    dataset = {"name": "segview bench worklist", "channel_names": {"0": "CT"},
               "labels": {c.name: c.value for c in LUNG_CLASSES}, "numTraining": len(CASES),
               "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return cases


@contextlib.contextmanager
def _private_folders(root: Path):
    """The prediction cache, the edit journals and the window's settings (recent files, last
    folder) in ``root`` while the bench runs: a bench never leaves its temporary cases in the
    user's File > Open recent."""
    from PySide6.QtCore import QSettings

    from ..gui.settings import settings

    saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "XDG_STATE_HOME")}
    os.environ["XDG_CACHE_HOME"], os.environ["XDG_STATE_HOME"] = str(root / "cache"), str(root / "state")
    user = Path(settings().fileName()).parent.parent  # <folder>/segview/segview.ini
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(root / "config"))
    try:
        yield
    finally:
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(user))
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def bench_worklist(seconds: float = 3.0, echo=print, shape=SHAPE) -> dict:
    """Ctrl+N to the next case, cold and prefetched, side by side (see the module
    docstring); about one round per second of ``seconds`` (1 to 5). Returns the medians
    (seconds) and whether the predictions shown were the cached ones."""
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
    from PySide6.QtWidgets import QApplication

    from . import machine_summary
    from ..gui.app import keep_c_numbers
    from ..gui.main_window import MainWindow
    from ..gui.workers import garbage_collected_on_the_main_thread
    from ..session import CaseSession
    from ..session.worklist import PredictionCache, checkpoint_digest

    app = QApplication.instance() or QApplication([])
    keep_c_numbers()
    rounds = int(min(5, max(1, round(seconds))))
    echo(f"segview bench worklist: Ctrl+N to the next {' x '.join(map(str, shape))} CT case with cached "
         f"predictions, in the window ({QGuiApplication.platformName()})")
    echo(f"  {machine_summary()}")
    checkpoints = lung_checkpoints()
    with tempfile.TemporaryDirectory(prefix="segview-bench-worklist-") as temporary, \
            _private_folders(Path(temporary)), garbage_collected_on_the_main_thread():  # as the window runs
        root = Path(temporary)
        started = time.perf_counter()
        cases = build_dataset(root / "Dataset900_Lung", PredictionCache(), checkpoints, shape)
        echo(f"  dataset: {len(CASES)} cases, A = {checkpoints['A'].name}, B = {checkpoints['B'].name}, "
             f"predictions in the cache (built in {time.perf_counter() - started:.1f} s)")
        window = MainWindow()
        window.resize(1280, 900)
        window.show()
        controller = window.worklist_controller

        def wait(signal, start=None, expected=None) -> list:
            """Run the event loop until ``signal`` (after calling ``start``); its arguments."""
            loop, got = QEventLoop(), []

            def arrived(*args) -> None:
                if expected is None or list(args) == expected:
                    got.append(list(args))
                    loop.quit()

            signal.connect(arrived)
            timer = QTimer(singleShot=True, interval=int(TIMEOUT_S * 1000))
            timer.timeout.connect(loop.quit)
            try:
                timer.start()
                if start is not None:
                    start()
                if not got:
                    loop.exec()
            finally:
                timer.stop()
                signal.disconnect(arrived)
            if not got:
                raise SegviewError(f"bench worklist: stuck, nothing came in {TIMEOUT_S:.0f} s (waiting for {signal}"
                                   + (f" {expected})" if expected else ")"))
            return got[0]

        def ctrl(key: str) -> None:
            # The menu action the key triggers: a synthetic key reaches a shortcut only in the
            # active window, which on X without a window manager the window is not, and the
            # bench waited in vain for Ctrl+N.
            sequence = QKeySequence(f"Ctrl+{key}")
            next(a for a in window.findChildren(QAction) if a.shortcut() == sequence).trigger()

        def switch(to: str) -> float:
            """Seconds from Ctrl+N until case ``to`` is on screen."""
            start = time.perf_counter()
            wait(controller.case_opened, lambda: ctrl("N"), [to])
            return time.perf_counter() - start

        def shown_as_cached(name: str) -> bool:
            session = window.session
            return (isinstance(session, CaseSession) and session.case.name == name
                    and all(session.models[slot].predicted.all()
                            and np.array_equal(session.prediction(slot), cases[name][slot])
                            and np.array_equal(session.prediction(slot), controller.worklist.cache.get(
                                cases[name]["key"], checkpoint_digest(checkpoints[slot])))
                            for slot in "AB"))

        cold: list[float] = []
        warm: list[float] = []
        opened: list[float] = []  # Worklist.session alone, in the worker
        cold_open: list[float] = []  # ... during the cold switches
        image_read: list[float] = []  # reading the case's image alone (load_volume), nothing else running
        exact = True
        try:
            controller.set_prefetch(False)
            wait(controller.queue_finished, lambda: controller.open_dataset(root / "Dataset900_Lung", checkpoints))
            worklist = controller.worklist
            session_of = worklist.session

            def timed_session(name, *args, **options):
                start = time.perf_counter()
                try:
                    return session_of(name, *args, **options)
                finally:
                    opened.append(time.perf_counter() - start)

            worklist.session = timed_session  # type: ignore[method-assign]
            wait(controller.case_opened, lambda: controller.open_case(CASES[0]))  # loads the networks too
            for _ in range(rounds):
                start = time.perf_counter()
                worklist.load_image(worklist.case(CASES[1]))
                image_read.append(time.perf_counter() - start)
                cold.append(switch(CASES[1]))
                cold_open.append(opened[-1])
                exact &= shown_as_cached(CASES[1])
                controller.set_prefetch(True)
                wait(controller.case_prefetched, lambda: ctrl("P"), [CASES[1]])  # back, then prefetch
                warm.append(switch(CASES[1]))
                exact &= shown_as_cached(CASES[1])
                controller.set_prefetch(False)
                wait(controller.case_opened, lambda: ctrl("P"), [CASES[0]])
        finally:
            window.discard_session()
            window.close()
            window.deleteLater()
            app.processEvents()
    cold_s, warm_s = statistics.median(cold), statistics.median(warm)
    ratios = [c / r for c, r in zip(cold, image_read)]  # round by round: both see the same load

    def verdict(value: float) -> str:
        return f"{value / TARGET_S:.2f}x the {TARGET_S:g} s goal  {'PASS' if value <= TARGET_S else 'FAIL'}"

    echo(f"  next case cold (Worklist.session + show_session): median {cold_s:.2f} s  "
         f"(rounds: {', '.join(f'{t:.2f}' for t in cold)}; of which Worklist.session in the worker: "
         f"median {statistics.median(cold_open):.2f} s)  {verdict(cold_s)}")
    echo(f"  reading the case's image alone (load_volume): median {statistics.median(image_read):.2f} s  "
         f"(rounds: {', '.join(f'{t:.2f}' for t in image_read)}); next case cold / image read: median "
         f"{statistics.median(ratios):.2f}x  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    echo(f"  next case prefetched (Ctrl+N after the prefetch): median {warm_s:.3f} s  "
         f"(rounds: {', '.join(f'{t:.3f}' for t in warm)})  {verdict(warm_s)}")
    echo(f"  prefetched / cold: {warm_s / cold_s:.3f} ({cold_s / warm_s:.0f}x faster); "
         f"predictions shown equal the cached ones: {'yes' if exact else 'NO'}")
    return {"cold_s": cold_s, "prefetched_s": warm_s, "cold_session_s": statistics.median(cold_open),
            "image_read_s": statistics.median(image_read), "cold_to_image_read": statistics.median(ratios),
            "cold_rounds": cold, "prefetched_rounds": warm, "image_read_rounds": image_read, "exact": exact}
