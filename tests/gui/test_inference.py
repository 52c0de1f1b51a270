"""Inference in the window: streaming, cancel, close mid-run, bad checkpoints, fallback."""
import threading

import numpy as np
import torch
from PySide6.QtCore import Qt

from segview.core.metrics import dice_per_class
from segview.core.phantoms import CARDIAC_CLASSES
from segview.gui import main_window
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.unet import UNet
from segview.resources import DEMO_MODELS
from segview.session.models import load_predictor

from .helpers import hover, load_models, wait_for_inference

CE, CE_DICE = DEMO_MODELS


def open_demo(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("cardiac")
    return window.session


def record_batches(monkeypatch, session, then=None):
    """The batches the window hands to ``session.accept`` (slot, slice indices), in order;
    ``then(batch)`` after each."""
    arrived, accept = [], session.accept

    def recorded(batch):
        taken = accept(batch)
        if taken:
            arrived.append((batch.slot, [p.index for p in batch.predictions]))
            if then is not None:
                then(batch)
        return taken

    monkeypatch.setattr(session, "accept", recorded)
    return arrived


def test_both_checkpoints_predict_the_demo_streaming_the_slice_on_screen_first(qtbot, window, monkeypatch):
    load_models(qtbot, window, DEMO_MODELS)  # before any image: they wait for one
    assert window.session is None
    session = open_demo(qtbot, window)
    assert list(session.models) == ["A", "B"] and not session.models["A"].predicted.any()
    window.workspace.go_to_slice(3)  # the run starts from the slice on screen when it starts
    arrived = record_batches(monkeypatch, session)
    with wait_for_inference(qtbot, window) as finished:
        pass
    assert finished.args == [True]
    assert [key for key, _ in arrived[:2]] == ["A", "B"]  # both models show the first batch
    assert arrived[0][1][0] == 3 and arrived[1][1][0] == 3  # the slice on screen came first
    for key in "AB":
        model = session.models[key]
        assert model.predicted.all() and model.device == f"cpu ({model.predictor.runtime})"
        assert sorted(z for slot, batch in arrived if slot == key for z in batch) == list(range(12))
        dice = dice_per_class(model.prediction, session.labels.array, 4)[1:]
        assert np.nanmean(dice) > 0.85  # the shipped checkpoints on the demo phantom
    assert "A on cpu (" in window.device_label.text() and "B on cpu (" in window.device_label.text()
    view = window.workspace.active_view()
    shown = view.overlay_items["A"].image
    assert shown is not None and shown.any()
    assert "cardiac_ce_dice: ce+dice, alpha 1" in window.model_info.text()
    hover(view, 120, 120)
    message = window.read_out.text()
    assert " A: " in message and " B: " in message and "pending" not in message


def test_cancel_stops_the_run_mid_volume(qtbot, window, monkeypatch):
    load_models(qtbot, window, [CE])
    session = open_demo(qtbot, window)  # the run starts once the image is shown
    predictor = session.models["A"].predictor
    predictor.batch_size = 2
    # The second batch waits until the first has been shown and Cancel pressed, so the
    # test does not race the worker.
    pressed, real_predict, batches, runs = threading.Event(), predictor.predict_slices, [], []

    def predict_slices(*args):
        if batches:
            pressed.wait(10)
        batches.append(1)
        yield from real_predict(*args)

    def cancel(batch):
        runs.append(window.inference)
        qtbot.mouseClick(window.cancel_button, Qt.LeftButton)
        pressed.set()

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    record_batches(monkeypatch, session, then=cancel)
    with qtbot.waitSignal(window.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [False] and runs[0].cancelled and window.inference is None
    predicted = session.models["A"].predicted
    # Cancel came during batch 1 or 2 (the worker may see it before it starts batch 2):
    # that batch is finished and shown, no further one starts.
    assert predicted.sum() in (2, 4) and len(batches) <= 2
    assert not window.progress.isVisible() and not window.cancel_button.isVisible()
    assert window.statusBar().currentMessage() == "Inference cancelled"
    z = next(z for z in range(12) if not predicted[z])
    window.workspace.go_to_slice(z)
    hover(window.workspace.active_view(), 120, 120)  # slices not predicted are pending, not background
    assert window.read_out.text().endswith("A: pending")
    qtbot.waitUntil(lambda: window.metrics.table.item(0, 0).text() == "pending", timeout=15000)
    rows = [window.metrics.table.verticalHeaderItem(r).text() for r in range(window.metrics.table.rowCount())]
    assert rows == ["A slice", "A volume"]


def test_a_run_stopped_for_other_models_ends_without_a_word(qtbot, window, monkeypatch):
    """The worklist stops the window's run when its own queue takes over (a fine-tuned model
    accepted as B): "Inference stopped" read as a failure to a tester."""
    load_models(qtbot, window, [CE])
    session = open_demo(qtbot, window)
    predictor = session.models["A"].predictor
    predictor.batch_size = 2
    stopped, real_predict = threading.Event(), predictor.predict_slices

    def predict_slices(*args):
        stopped.wait(10)
        yield from real_predict(*args)

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    qtbot.waitUntil(lambda: window.inference is not None, timeout=15000)
    with qtbot.waitSignal(window.inference_finished, timeout=60000) as finished:
        window.cancel_inference()
        stopped.set()
    assert finished.args == [False]
    assert not [m for m in messages if m.startswith("Inference")]


def test_a_model_loaded_mid_run_restarts_it_without_a_finish_in_between(qtbot, demo, monkeypatch):
    """Loading B while A's run goes starts a run of A and B that replaces it: the window
    reports one finish, of the run that predicted everything (scripts and --screenshot
    wait for it), and never "Inference stopped"."""
    window, session = demo, demo.session
    finishes, messages = [], []
    window.inference_finished.connect(lambda completed: finishes.append(
        (completed, {slot: bool(m.predicted.all()) for slot, m in session.models.items()})))
    window.statusBar().messageChanged.connect(messages.append)
    load_models(qtbot, window, [CE])
    predictor = session.models["A"].predictor
    predictor.batch_size = 1
    b_loaded, real_predict, runs = threading.Event(), predictor.predict_slices, []

    def predict_slices(*args):
        run = window.inference  # the run asking (the newest when it starts)
        if run in runs:  # A's first run waits after its first slice until B is in
            b_loaded.wait(20)
            if run.cancelled:
                return
        runs.append(run)
        yield from real_predict(*args)

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    window.model_loaded.connect(lambda slot: b_loaded.set())
    load_models(qtbot, window, [CE_DICE], "B")
    with wait_for_inference(qtbot, window):
        pass
    assert finishes == [(True, {"A": True, "B": True})]
    assert runs[0].cancelled and runs[-1] is not runs[0]
    assert not [m for m in messages if m.startswith("Inference") and m != "Inference finished"]


def test_a_new_run_cancels_the_old_one(qtbot, demo):
    load_models(qtbot, demo, [CE])  # its run starts on the next pass of the event loop: first, by hand
    qtbot.keyClick(demo, Qt.Key_R, Qt.ControlModifier)  # run inference
    old = demo.inference
    qtbot.keyClick(demo, Qt.Key_R, Qt.ControlModifier)
    assert old.cancelled and demo.inference is not old and not demo.inference.cancelled
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [True] and demo.session.models["A"].predicted.all()


def test_closing_the_window_mid_run_stops_inference(qtbot, demo):
    load_models(qtbot, demo, [CE])
    with wait_for_inference(qtbot, demo):
        pass
    demo.run_inference()
    worker = demo.inference
    assert worker is not None and not worker.cancelled
    assert demo.close()
    assert worker.cancelled and worker.wait(0)  # nothing runs on after close


def test_a_checkpoint_the_window_cannot_feed_gives_a_dialog(qtbot, demo, dialogs, tmp_path):
    model = UNet(in_channels=2, num_classes=4, base_channels=4, depth=2)
    save_checkpoint(tmp_path / "two_channels.safetensors", model,
                    {"classes": classes_to_metadata(CARDIAC_CLASSES), "preprocessing": {"input_size": [32, 32],
                                                      "normalization": {"method": "percentile"}}})
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.load_model(tmp_path / "two_channels.safetensors", "A")
    assert dialogs[-1][0] == "critical" and "2 input channels" in dialogs[-1][1]
    assert not demo.session.models and demo.session.volume is not None
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.load_model(tmp_path / "evil.pt", "B")
    assert "pickle" in dialogs[-1][1] and not demo.session.models


def test_gpu_out_of_memory_continues_on_the_cpu_and_says_so(qtbot, demo, monkeypatch):
    """The Predictor's own fallback is tested in tests/ml; here the window shows it: the
    predictor says it moved to the CPU after a batch, as it does after an out-of-memory
    error on the GPU."""
    load_models(qtbot, demo, [CE])  # its run starts on the next pass of the event loop
    session = demo.session
    predictor = session.models["A"].predictor
    real_predict, real_device = predictor.predict_slices, predictor.device

    def predict_slices(*args):
        if predictor.device.type == "cuda":
            predictor.device = real_device
            predictor.fallback_message = "The GPU ran out of memory; segview continues on the CPU (slower)."
        yield from real_predict(*args)

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    monkeypatch.setattr(main_window, "describe_device", lambda device: device.type)
    predictor.device = torch.device("cuda")  # pretend the model sits on a full GPU
    messages = []
    demo.statusBar().messageChanged.connect(messages.append)
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [True]
    assert any("out of memory" in m for m in messages)
    device = f"cpu ({predictor.runtime})"  # and what runs the network there
    assert demo.device_label.text() == f"A on {device}" and session.models["A"].device == device
    expected = load_predictor(CE).predict_volume(session.volume)  # a run that never left the CPU
    np.testing.assert_array_equal(session.models["A"].prediction, expected)


def test_the_cli_refuses_a_third_model(capsys):
    from segview.cli import main

    assert main(["--demo", "--model", str(CE), "--model", str(CE), "--model", str(CE)]) == 2
    assert "at most twice" in capsys.readouterr().err


def test_labels_from_a_model_on_this_slice_says_what_changed_and_needs_the_model(qtbot, demo):
    """A tester: the slice's copy said nothing (the whole volume's says N voxels), and model
    B's entries were offered with no model B."""
    window, session = demo, demo.session
    with wait_for_inference(qtbot, window):
        load_models(qtbot, window, [CE], slots="A")
    edit = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Edit")
    edit.aboutToShow.emit()
    copies = {a.text(): a for a in edit.actions() if a.text().startswith("Labels from model")}
    assert [a.isEnabled() for a in copies.values()] == [True, True, False, False]  # A's two, then B's
    z = window.current_slice()
    expected = int((session.labels.array[z] != session.models["A"].prediction[z]).sum())
    assert expected  # the demo's labels are not the model's
    copies["Labels from model A: this slice"].trigger()
    assert window.statusBar().currentMessage() == f"Labels from model A on slice {z + 1}: {expected} voxels changed"
    np.testing.assert_array_equal(session.labels.array[z], session.models["A"].prediction[z])


def test_a_run_due_after_every_slice_was_predicted_otherwise_does_not_start(qtbot, window):
    """A worklist case shown before its cached predictions arrive starts the window's run
    timer; the predictions came before it fired (simulated here), and the run then
    predicted nothing and said "Inference finished" over the case."""
    load_models(qtbot, window, [CE])
    session = open_demo(qtbot, window)  # shown: its run is due in 50 ms
    for model in session.models.values():
        model.predicted[:] = True  # as the worklist's cache fills it
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    with qtbot.assertNotEmitted(window.inference_finished, wait=500):
        pass
    assert window.inference is None and not [m for m in messages if m.startswith("Inference")]


def test_the_run_of_an_image_no_longer_shown_finishing_says_nothing_over_the_one_shown(qtbot, window, monkeypatch):
    """A worklist case shown with its cached predictions runs nothing; the run of the case
    before it, in its last batch when stopped, finished after the switch and said
    "Inference finished" (and emitted it) over the new case."""
    from segview.session.review import ReviewSession

    load_models(qtbot, window, [CE])
    session = open_demo(qtbot, window)
    predictor = session.models["A"].predictor
    predictor.batch_size = session.volume.shape[0]  # one batch: the run ends with it, stopped or not
    release, real_predict = threading.Event(), predictor.predict_slices

    def predict_slices(*args):
        release.wait(20)
        yield from real_predict(*args)

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    qtbot.waitUntil(lambda: window.inference is not None, timeout=15000)
    case = ReviewSession.open(session.volume)
    case.add_model("A", CE, load_predictor(CE), prediction=np.zeros(session.volume.shape, np.uint8))
    window.show_session(case)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    with qtbot.assertNotEmitted(window.inference_finished, wait=300):
        release.set()
        qtbot.waitUntil(lambda: window.inference is None, timeout=30000)
    assert not [m for m in messages if m.startswith("Inference")]
