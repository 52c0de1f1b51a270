"""Inference in the window: streaming, cancel, close mid-run, bad checkpoints, fallback."""
import threading

import numpy as np
import torch

from segview.core.metrics import dice_per_class
from segview.core.phantoms import CARDIAC_CLASSES
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.unet import UNet
from segview.resources import DEMO_MODELS

CE, CE_DICE = DEMO_MODELS


def load(qtbot, window, path, key="A"):
    with qtbot.waitSignal(window.model_loaded, timeout=30000):
        window.load_model(path, key)


def test_both_checkpoints_predict_the_demo_streaming_the_slice_on_screen_first(qtbot, demo):
    first = demo.view.index
    arrived = []
    load(qtbot, demo, CE, "A")
    load(qtbot, demo, CE_DICE, "B")
    demo._start_timer.stop()  # the run that loading starts: started here to watch it
    demo.run_inference()
    demo.inference.signals.predicted.connect(lambda key, batch: arrived.append((key, [p.index for p in batch])))
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [True]
    assert [key for key, _ in arrived[:2]] == ["A", "B"]  # both models show the first batch
    assert arrived[0][1][0] == first  # the slice on screen came first
    for key in "AB":
        model = demo.models[key]
        assert model.predicted.all() and model.device == "cpu"
        dice = dice_per_class(model.prediction, demo.labels, 4)[1:]
        assert np.nanmean(dice) > 0.85  # the shipped checkpoints on the demo phantom
    assert "A on cpu" in demo.device_label.text() and "B on cpu" in demo.device_label.text()
    shown = demo.view.overlay_items["A"].image
    assert shown is not None and shown.any()
    assert "cardiac_ce_dice: ce+dice, alpha 1" in demo.model_info.text()
    demo._show_cursor((first, 100, 100))
    assert " A " in demo.statusBar().currentMessage() and " B " in demo.statusBar().currentMessage()


def test_cancel_stops_the_run_mid_volume(qtbot, demo, monkeypatch):
    load(qtbot, demo, CE, "A")
    demo._start_timer.stop()
    predictor = demo.models["A"].predictor
    predictor.batch_size = 2
    # The second batch waits until the first has been shown and Cancel pressed, so the
    # test does not race the worker.
    pressed, real_predict, batches = threading.Event(), predictor.predict_slices, []

    def predict_slices(*args):
        if batches:
            pressed.wait(10)
        batches.append(1)
        yield from real_predict(*args)

    monkeypatch.setattr(predictor, "predict_slices", predict_slices)
    demo.run_inference()
    worker = demo.inference
    worker.signals.predicted.connect(lambda *_: (demo.cancel_inference(), pressed.set()))
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [False] and worker.cancelled
    predicted = demo.models["A"].predicted
    # Cancel came during batch 1 or 2 (the worker may see it before it starts batch 2):
    # that batch is finished and shown, no further one starts.
    assert predicted.sum() in (2, 4) and len(batches) <= 2
    assert not demo.progress.isVisible() and not demo.cancel_button.isVisible()


def test_a_new_run_cancels_the_old_one(qtbot, demo):
    load(qtbot, demo, CE, "A")
    demo._start_timer.stop()
    demo.run_inference()
    old = demo.inference
    demo.run_inference()
    assert old.cancelled and demo.inference is not old
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        pass
    assert finished.args == [True] and demo.models["A"].predicted.all()


def test_closing_the_window_mid_run_stops_inference(qtbot, demo):
    load(qtbot, demo, CE, "A")
    demo._start_timer.stop()
    demo.run_inference()
    worker = demo.inference
    demo.close()
    assert worker.cancelled and worker.wait(0)  # nothing runs on after close


def test_a_checkpoint_the_window_cannot_feed_gives_a_dialog(qtbot, demo, dialogs, tmp_path):
    model = UNet(in_channels=2, num_classes=4, base_channels=4, depth=2)
    save_checkpoint(tmp_path / "two_channels.safetensors", model,
                    {"classes": classes_to_metadata(CARDIAC_CLASSES), "preprocessing": {"input_size": [32, 32],
                                                      "normalization": {"method": "percentile"}}})
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.load_model(tmp_path / "two_channels.safetensors", "A")
    assert dialogs[-1][0] == "critical" and "2 input channels" in dialogs[-1][1]
    assert not demo.models and demo.volume is not None
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04K\x01.")
    with qtbot.waitSignal(demo.load_failed, timeout=20000):
        demo.load_model(tmp_path / "evil.pt", "B")
    assert "pickle" in dialogs[-1][1]


def test_gpu_out_of_memory_continues_on_the_cpu_and_says_so(qtbot, demo, monkeypatch):
    load(qtbot, demo, CE, "A")
    demo._start_timer.stop()
    with qtbot.waitSignal(demo.inference_finished, timeout=60000):
        demo.run_inference()
    expected = demo.models["A"].prediction.copy()
    predictor = demo.models["A"].predictor
    predictor.device = torch.device("cuda")  # pretend the model sits on a full GPU
    real_run = predictor._run

    def run(images, shape):
        if predictor.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_run(images, shape)

    monkeypatch.setattr(predictor, "_run", run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr("segview.gui.workers.describe_device", lambda device: device.type)
    with qtbot.waitSignal(demo.inference_finished, timeout=60000) as finished:
        demo.run_inference()
    assert finished.args == [True]
    assert "out of memory" in demo.statusBar().currentMessage() or "out of memory" in predictor.fallback_message
    assert demo.device_label.text() == "A on cpu"
    np.testing.assert_array_equal(demo.models["A"].prediction, expected)


def test_the_cli_refuses_a_third_model(capsys):
    from segview.cli import main

    assert main(["--demo", "--model", str(CE), "--model", str(CE), "--model", str(CE)]) == 2
    assert "at most twice" in capsys.readouterr().err
