"""Checkpoints: exact round trip, every kind of bad file refused with a clear message."""
import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from segview.core.phantoms import CARDIAC_CLASSES
from segview.ml import checkpoint as checkpoint_module
from segview.ml.checkpoint import (CheckpointError, classes_from_metadata, classes_to_metadata,
                                   load_checkpoint, read_metadata, save_checkpoint)
from segview.ml.unet import UNet

META = {
    "classes": classes_to_metadata(CARDIAC_CLASSES),
    "loss": {"name": "ce+dice", "alpha": 1.0},
    "preprocessing": {"input_size": [256, 256], "modality": "MR",
                      "normalization": {"method": "percentile", "low": 0.5, "high": 99.5}},
    "training": {"cases": ["cardiac_000", "cardiac_001"], "epochs": 3},
    "validation": {"dice": [None, 0.91, 0.87, 0.93], "mean_dice": 0.9033},
}


def _model(norm="batch"):
    torch.manual_seed(0)
    model = UNet(num_classes=4, base_channels=4, depth=2, norm=norm)
    model.train()
    model(torch.randn(2, 1, 16, 16))  # moves the batch-norm running statistics
    return model


@pytest.fixture
def saved(tmp_path):
    model = _model()
    return model, save_checkpoint(tmp_path / "cardiac.safetensors", model, META)


def test_round_trip_is_exact(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert original[key].dtype == restored[key].dtype
        assert torch.equal(original[key], restored[key]), key
    for key, value in META.items():
        assert meta[key] == value
    assert meta["architecture"] == {"name": "UNet", **model.config}
    assert meta["format_version"] == 1 and meta["segview_version"]
    assert read_metadata(path) == meta
    assert [c.name for c in classes_from_metadata(meta)] == [c.name for c in CARDIAC_CLASSES]


def test_loaded_model_predicts_exactly_as_the_saved_one(saved):
    model, path = saved
    image = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(model.eval()(image), load_checkpoint(path)[0](image))


def test_numpy_values_in_metadata_are_stored_as_numbers(tmp_path):
    import numpy as np
    meta = {**META, "validation": {"dice": np.array([0.5, 0.25]), "mean": np.float32(0.375)}}
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), meta)
    assert read_metadata(path)["validation"] == {"dice": [0.5, 0.25], "mean": 0.375}


def test_the_metadata_is_plain_json_in_the_safetensors_header(saved):
    _, path = saved
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_length])
    assert json.loads(header["__metadata__"]["segview"])["loss"]["name"] == "ce+dice"


def test_a_missing_score_in_the_metadata_is_strict_json_null(tmp_path):
    """One validation case has no spread: it was written as NaN, which jq and JSON.parse refuse."""
    import math

    import numpy as np

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the metadata"))

    meta = {**META, "validation": {"dice": {"mean": 0.9, "std": math.nan}, "hd95": np.float32("inf"),
                                   "per_case": np.array([0.9, np.nan])}}
    path = save_checkpoint(tmp_path / "m.safetensors", _model(), meta)
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    stored = strict(strict(path.read_bytes()[8:8 + header_length])["__metadata__"]["segview"])
    assert stored["validation"] == {"dice": {"mean": 0.9, "std": None}, "hd95": None, "per_case": [0.9, None]}


# -- saving -----------------------------------------------------------------------------

def test_save_refuses_inconsistent_metadata(tmp_path):
    with pytest.raises(ValueError, match="3 classes described for a model with 4"):
        save_checkpoint(tmp_path / "m.safetensors", _model(), {**META, "classes": META["classes"][:3]})
    with pytest.raises(ValueError, match="classes"):
        save_checkpoint(tmp_path / "m.safetensors", _model(), {})
    with pytest.raises(ValueError, match=".safetensors"):
        save_checkpoint(tmp_path / "m.pt", _model(), META)


def test_a_failed_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    model, path = saved
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, _model(norm=None), META)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


# -- refusing bad files -----------------------------------------------------------------

class _CreatesAFile:
    """Unpickling this object opens (creates) a file: a harmless stand-in for any code."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


@pytest.mark.parametrize("name, writer", [
    ("model.pt", "torch"), ("model.pth", "pickle"), ("model.safetensors", "torch"),
    ("model.safetensors", "pickle"), ("weights.bin", "pickle"),
])
def test_a_malicious_pickle_is_refused_and_runs_nothing(tmp_path, name, writer):
    path = tmp_path / name
    marker = tmp_path / "pwned"
    payload = {"state_dict": _CreatesAFile(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="pickle"):
        read_metadata(path)
    assert not marker.exists()
    # The payload is real: unpickling it does create the file.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def _write_raw(path, tensors, meta):
    save_file(tensors, path, None if meta is None else {"segview": json.dumps(meta)})
    return path


def _tampered(tmp_path, saved, change):
    model, path = saved
    meta = read_metadata(path)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    change(meta, tensors)
    return _write_raw(tmp_path / "tampered.safetensors", tensors, meta)


@pytest.mark.parametrize("change, message", [
    (lambda m, t: m["architecture"].update(num_classes=3), "wrong shape"),
    (lambda m, t: m["architecture"].update(depth=3), "missing"),
    (lambda m, t: t.pop("head.bias"), "weights missing"),
    (lambda m, t: t.update(extra=torch.zeros(2)), "unexpected"),
    (lambda m, t: m["architecture"].update(name="SwinUNETR"), "unknown architecture 'SwinUNETR'"),
    (lambda m, t: m["architecture"].update(norm="group"), "cannot build"),
    (lambda m, t: m.update(classes=m["classes"][:2]), "names 2 classes but its network has 4"),
    (lambda m, t: m["classes"][1].update(value=7), "no gaps"),
    (lambda m, t: m.update(format_version=99), "newer segview"),
    (lambda m, t: m.update(format="something-else"), "not hold a segview checkpoint"),
    (lambda m, t: t["head.weight"].fill_(float("nan")), "NaN"),
])
def test_metadata_and_weights_that_disagree_are_refused(tmp_path, saved, change, message):
    path = _tampered(tmp_path, saved, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_corrupt_truncated_and_foreign_files(tmp_path, saved):
    _, path = saved
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.safetensors")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(garbage)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(empty)
    foreign = _write_raw(tmp_path / "foreign.safetensors", {"w": torch.zeros(3)}, None)
    with pytest.raises(CheckpointError, match="without segview metadata"):
        load_checkpoint(foreign)
    bad_json = tmp_path / "bad_json.safetensors"
    save_file({"w": torch.zeros(3)}, bad_json, {"segview": "{not json"})
    with pytest.raises(CheckpointError, match="damaged metadata"):
        load_checkpoint(bad_json)


def test_a_header_length_starting_with_the_pickle_byte_is_still_safetensors(tmp_path):
    # The first byte of a safetensors file is the low byte of its header length; 0x80 is
    # also how a pickle starts, so detection must not stop at the first byte.
    model = _model()
    for padding in range(256):
        path = save_checkpoint(tmp_path / "m.safetensors", model, {**META, "note": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    loaded, meta = load_checkpoint(path)
    assert meta["note"].startswith("x") and loaded.config == model.config
