"""Tiny datasets and checkpoints for the worklist and verdict tests, made in the test."""
import json

import numpy as np
import pytest
import torch

from segview.core.classes import named_classes
from segview.core.io import save_labels, save_volume
from segview.core.volume import Volume
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.unet import UNet

CLASSES = named_classes(["background", "organ", "lesion"])
SPACING = (0.5, 0.5, 2.0)  # x, y, z mm: one voxel is 0.5 mm3


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Predictions are cached in a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def tiny_case(seed: int, slices: int = 6, size: int = 24) -> tuple[Volume, np.ndarray]:
    """An MR-like image with a bright disc (class 1) holding a brighter spot (class 2)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:slices, :size, :size]
    radius = 5 + seed % 4
    labels = np.zeros((slices, size, size), np.uint8)
    labels[(yy - 12) ** 2 + (xx - 12) ** 2 <= radius ** 2] = 1
    labels[((yy - 12) ** 2 + (xx - 10) ** 2 <= 4) & (zz % 2 == 0)] = 2
    image = (100 + 200 * labels + rng.normal(0, 20, labels.shape)).astype(np.int16)
    return Volume(image, SPACING, modality="MR"), labels


def make_dataset(folder, count: int, with_labels=True, seed: int = 0):
    """An nnU-Net folder of ``count`` tiny cases ``case_000`` ..; returns the reference labels by name."""
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps(
        {"labels": {c.name: c.value for c in CLASSES}, "file_ending": ".nii.gz", "numTraining": count}))
    references = {}
    for n in range(count):
        volume, labels = tiny_case(seed + n)
        name = f"case_{n:03d}"
        save_volume(folder / "imagesTr" / f"{name}_0000.nii.gz", volume)
        if with_labels:
            save_labels(folder / "labelsTr" / f"{name}.nii.gz", labels, volume, CLASSES)
        references[name] = labels
    return references


def make_checkpoint(path, seed: int):
    torch.manual_seed(seed)
    return save_tiny_checkpoint(path, UNet(num_classes=3, base_channels=2, depth=1))


def save_tiny_checkpoint(path, model, classes=CLASSES):
    """``model`` (a tiny UNet of three classes, CLASSES unless named otherwise) saved as an
    MR checkpoint of 16 x 16 input."""
    meta = {"classes": classes_to_metadata(classes), "loss": {"name": "ce"},
            "preprocessing": {"input_size": [16, 16], "modality": "MR",
                              "normalization": {"method": "percentile", "low_percentile": 0.5,
                                                "high_percentile": 99.5}}}
    return save_checkpoint(path, model, meta)


def swapped_checkpoint(path):
    """A tiny checkpoint naming CLASSES 1 and 2 the other way round (a model for other classes)."""
    torch.manual_seed(3)
    swapped = named_classes(["background", CLASSES[2].name, CLASSES[1].name])
    return save_tiny_checkpoint(path, UNet(num_classes=3, base_channels=2, depth=1), swapped)


@pytest.fixture
def checkpoints(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    return {"A": make_checkpoint(models / "ce.safetensors", 1), "B": make_checkpoint(models / "ce_dice.safetensors", 2)}
