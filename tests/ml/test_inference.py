"""Predictor: slice order, streaming, cancellation, input checks."""
import numpy as np
import pytest
import torch

from segview.core.phantoms import make_phantom
from segview.ml.checkpoint import CheckpointError, classes_to_metadata, slice_orientation
from segview.ml.inference import Cancelled, Predictor, slice_order
from segview.ml.unet import UNet
from segview.core.phantoms import CARDIAC_CLASSES
from segview.core.volume import Volume
from segview.ml.data import Case, normalization_for, slice_tensors

META = {"classes": classes_to_metadata(CARDIAC_CLASSES),
        "preprocessing": {"input_size": [32, 32], "orientation": "display", "normalization": {
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

    def run(images, shape, pixel_size):
        calls.append(predictor.device.type)
        if predictor.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(images, shape, pixel_size)

    monkeypatch.setattr(predictor, "_run", run)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    np.testing.assert_array_equal(predictor.predict_volume(case.volume), expected)
    assert calls[:2] == ["cuda", "cpu"] and set(calls[2:]) == {"cpu"}
    assert predictor.device.type == "cpu" and "out of memory" in predictor.fallback_message


def stored_flipped(volume: Volume, rows: bool, cols: bool) -> Volume:
    """The same scan, its rows and/or columns stored the other way (geometry to match)."""
    direction, origin, array = volume.direction_matrix.copy(), np.asarray(volume.origin, float), volume.array
    for flip, axis, column in ((cols, 2, 0), (rows, 1, 1)):
        if flip:
            origin = origin + direction[:, column] * volume.spacing[column] * (array.shape[axis] - 1)
            direction[:, column] *= -1
            array = np.flip(array, axis)
    return Volume(np.ascontiguousarray(array), volume.spacing, tuple(origin), tuple(direction.ravel()),
                  volume.modality, dict(volume.meta))


def test_network_orientation_of_the_usual_storages():
    lps = Volume(np.zeros((2, 3, 4)), (1, 1, 1))  # DICOM's axial: i to the Left, j Posterior
    assert lps.display_flips() == (False, False)
    assert stored_flipped(lps, True, True).display_flips() == (True, True)  # RAS (nibabel's canonical)
    assert stored_flipped(lps, True, False).display_flips() == (True, False)  # LAS (FSL)
    head_to_feet = Volume(np.zeros((2, 3, 4)), (1, 1, 1), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1))
    assert head_to_feet.display_flips() == (False, False)  # the slice order is no mirror


@pytest.mark.parametrize("task", ["cardiac", "lung"])
def test_one_scan_stored_four_ways_gets_one_prediction(task):
    """An untrained network is no more mirror-symmetric than chance: each storage would give
    its own labels if the network saw the array as stored."""
    volume = make_phantom(task, 5).volume
    predictor = _predictor()
    predictor.normalization = normalization_for(volume.modality)
    first = predictor.predict_volume(volume)
    for rows, cols in ((False, True), (True, False), (True, True)):
        other = predictor.predict_volume(stored_flipped(volume, rows, cols))
        np.testing.assert_array_equal(np.flip(other, [a for a, f in ((1, rows), (2, cols)) if f]), first)


def test_training_sees_a_scan_as_prediction_does_whatever_its_storage():
    case = make_phantom("cardiac", 6)
    flipped = stored_flipped(case.volume, True, True)
    stored = [Case("a", case.volume, case.labels), Case("b", flipped, np.ascontiguousarray(case.labels[:, ::-1, ::-1]))]
    images, labels = slice_tensors(stored, normalization_for("MR"), 64)
    half = case.volume.shape[0]
    torch.testing.assert_close(images[:half], images[half:])
    torch.testing.assert_close(labels[:half], labels[half:])


def test_the_slice_orientation_of_a_checkpoint():
    assert slice_orientation(META) == "display"
    trained_with_flips = {"preprocessing": {}, "training": {"config": {"augment": True}}}
    assert slice_orientation(trained_with_flips) == "display"  # segview's, before the key: either serves
    assert slice_orientation({"preprocessing": {}, "training": {"config": {"augment": False}}}) == "stored"
    assert slice_orientation({"preprocessing": {"input_size": [32, 32]}}) == "stored"  # imported
    with pytest.raises(CheckpointError, match="'sideways' is none of display, stored"):
        slice_orientation({"preprocessing": {"orientation": "sideways"}})


def test_a_network_that_learned_the_arrays_as_stored_sees_them_so():
    ras = stored_flipped(make_phantom("lung", 5).volume, True, True)
    meta = {**META, "preprocessing": {**META["preprocessing"], "orientation": "stored"}}
    predictor = Predictor(UNet(1, 4, base_channels=4, depth=2), meta, "cpu", 3)
    assert predictor.prepare(ras).flips == (False, False)
    assert _predictor().prepare(ras).flips == (True, True)
