"""Predictor: slice order, streaming, cancellation, input checks."""
import numpy as np
import pytest
import torch

from segview.core.phantoms import make_phantom
from segview.ml.checkpoint import CheckpointError, classes_to_metadata
from segview.ml.inference import Cancelled, Predictor, slice_order
from segview.ml.unet import UNet
from segview.core.phantoms import CARDIAC_CLASSES

META = {"classes": classes_to_metadata(CARDIAC_CLASSES),
        "preprocessing": {"input_size": [32, 32], "normalization": {
            "method": "percentile", "low_percentile": 0.5, "high_percentile": 99.5}}}


def _predictor(batch_size=3):
    torch.manual_seed(0)
    return Predictor(UNet(1, 4, base_channels=4, depth=2), META, "cpu", batch_size)


def test_slice_order_starts_on_screen_and_moves_outwards():
    assert slice_order(6, 2) == [2, 3, 1, 4, 0, 5]
    assert slice_order(4, None) == [0, 1, 2, 3]
    assert slice_order(3, 99) == [2, 1, 0]


def test_streamed_slices_equal_the_whole_volume_prediction():
    case = make_phantom("cardiac", 2)
    predictor = _predictor()
    whole = predictor.predict_volume(case.volume)
    assert whole.shape == case.volume.shape and whole.dtype == np.uint8
    normalized = predictor.prepare(case.volume)
    streamed = list(predictor.predict_slices(normalized, [5, 0, 3], want_probabilities=True))
    assert [s.index for s in streamed] == [5, 0, 3]
    for s in streamed:
        np.testing.assert_array_equal(s.labels, whole[s.index])
        np.testing.assert_allclose(s.probabilities.sum(axis=0), 1, rtol=1e-5)
        np.testing.assert_array_equal(s.probabilities.argmax(axis=0), s.labels)


def test_prediction_can_be_cancelled_between_batches():
    case = make_phantom("cardiac", 3)
    done = []
    with pytest.raises(Cancelled):
        _predictor().predict_volume(case.volume, progress=lambda n, total: done.append(n),
                                    should_stop=lambda: len(done) >= 3)
    assert len(done) == 3  # stopped as soon as it was asked


def test_a_network_with_several_input_channels_is_refused():
    with pytest.raises(CheckpointError, match="3 input channels"):
        Predictor(UNet(3, 4, base_channels=4, depth=2), META, "cpu")


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_message(monkeypatch):
    case = make_phantom("cardiac", 3)
    expected = _predictor().predict_volume(case.volume)
    predictor = _predictor()
    predictor.device = torch.device("cuda")  # pretend: the first batch "runs on the GPU"
    real_run, calls = predictor._run, []

    def run(images, shape):
        calls.append(predictor.device.type)
        if predictor.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(images, shape)

    monkeypatch.setattr(predictor, "_run", run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    np.testing.assert_array_equal(predictor.predict_volume(case.volume), expected)
    assert calls[:2] == ["cuda", "cpu"] and set(calls[2:]) == {"cpu"}
    assert predictor.device.type == "cpu" and "out of memory" in predictor.fallback_message
