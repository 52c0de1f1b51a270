"""Starting the application."""
from __future__ import annotations

import os
import sys


def leave_a_core_for_the_window() -> None:
    """Compute threads (torch's, and ONNX Runtime's, which follows torch's count): one fewer
    than the cores, so the window's thread always finds one. On 2 cores, two compute threads
    beside the window's starved it while slices streamed in (60 Hz timer gaps p99 36 ms,
    longest 70 ms) and predicted fewer slices a second than one thread (15 against 19)."""
    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - 1)))


def keep_c_numbers() -> None:
    """The C library's numbers back to the C locale. Qt sets the C library's locale from the
    environment when its application starts, and ITK's NRRD reader and writer parse and print
    numbers with it: under LC_ALL=de_DE.UTF-8 an NRRD's spacing 1.3174 was read as 1.0 (its
    origin cut to whole mm alike) and labels saved as NRRD were written with decimal commas
    and refused by their read-back. Qt's widgets format with QLocale, so the spin boxes keep
    the user's decimal comma."""
    import locale

    locale.setlocale(locale.LC_NUMERIC, "C")


def quiet_offscreen_plugin(app) -> None:
    """Drop the offscreen platform's notes that it cannot do what only a screen does ("This
    plugin does not support propagateSizeHints()", five of them for one --screenshot): noise
    on stderr, where a person looks for real warnings. Every other message goes on as Qt
    writes it."""
    if app.platformName() != "offscreen":
        return
    from PySide6.QtCore import qInstallMessageHandler

    def handler(mode, context, message: str) -> None:
        if not message.startswith("This plugin does not support"):
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def run(image=None, labels=None, models=(), demo=False, screenshot=None, compare=False) -> int:
    """Open the main window (optionally on an image, a dataset folder or the demo, with up
    to two checkpoints) and run the event loop. A dataset folder (``dataset_layout``: the
    nnU-Net layout or DICOM studies) opens as a worklist whose cases open with those
    checkpoints. The demo is the cardiac phantom with the two shipped cardiac checkpoints
    (CE as model A, CE + Dice as model B).

    With ``screenshot`` the window is rendered to that PNG once loading (and inference,
    when there are models) has finished, and the application exits; no display is needed.
    ``compare`` opens in compare mode (models A and B side by side).
    """
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif not _display_available():
        print("segview: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run it on a "
              "desktop, or render the window with --screenshot PNG.", file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication

    from .workers import garbage_collected_on_the_main_thread

    if demo and not models:
        from ..resources import DEMO_MODELS

        models = DEMO_MODELS
    app = QApplication.instance() or QApplication(sys.argv[:1])
    keep_c_numbers()
    quiet_offscreen_plugin(app)
    app.setApplicationName("segview")
    leave_a_core_for_the_window()
    with garbage_collected_on_the_main_thread():
        return _show(app, image, labels, models, demo, screenshot, compare)


def _show(app, image, labels, models, demo, screenshot, compare) -> int:
    """The window on what ``run`` was given, until the event loop ends; the exit status."""
    from PySide6.QtCore import QTimer

    from .main_window import MainWindow
    from ..session.worklist import dataset_layout

    window = MainWindow()
    window.show()
    app.aboutToQuit.connect(window.close)  # also on app.quit(): journals closed, workers joined
    if compare:
        window.loaded.connect(lambda: window.set_comparing(True))
    # A dataset folder (nnU-Net, or DICOM studies; not a folder of one series) opens as a worklist.
    dataset = image if image and not demo and dataset_layout(image) else None
    status = {"code": 0}
    if screenshot:
        def capture():
            window.grab().save(str(screenshot))
            app.quit()

        def failed(message):
            print(f"segview: {message}", file=sys.stderr)
            status["code"] = 2
            app.quit()

        wanted = len(models)

        def all_predicted(*_) -> None:
            """Every model given is in and has every slice: a run that finished before the
            second model arrived is not the picture."""
            session = window.session
            if session is not None and len(session.models) == wanted and \
                    all(m.predicted.all() for m in session.models.values()):
                QTimer.singleShot(300, capture)

        if dataset:
            window.worklist_controller.dataset_opened.connect(lambda *_: QTimer.singleShot(300, capture))
        elif models:
            window.inference_finished.connect(all_predicted)
        else:
            window.loaded.connect(lambda *_: QTimer.singleShot(300, capture))
        window.load_failed.connect(failed)
        if not (image or demo):
            QTimer.singleShot(300, capture)
    if demo:
        window.open_demo("cardiac")
    elif dataset:
        window.worklist_controller.open_dataset(dataset, dict(zip(("A", "B"), models)))
        models = ()  # the dataset's checkpoints: each case opens with them
    elif image:
        window.open_image(image, labels)
    for key, path in zip(("A", "B"), models):
        window.load_model(path, key)
    app.exec()
    return status["code"]


def _display_available() -> bool:
    if os.environ.get("QT_QPA_PLATFORM") or sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
