"""The legend of a worklist case (issue 24, item 4): each class once, in the colours of the
case's class file, even where dataset.json and the checkpoints colour it otherwise."""
import json
import re

import numpy as np
import pytest
import torch

from segview.core.classes import LabelClass
from segview.core.io import save_labels, save_volume
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.unet import UNet
from tests.session.conftest import tiny_case

TIMEOUT = 60000
#: The checkpoints' table: infection in orange, as the shipped lung checkpoints have it.
CHECKPOINT_CLASSES = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "infection", (255, 170, 0))]
CASE_COLOR = (200, 30, 200)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Predictions are cached in a temporary folder, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def checkpoint(path, seed: int):
    torch.manual_seed(seed)
    meta = {"classes": classes_to_metadata(CHECKPOINT_CLASSES), "loss": {"name": "ce"},
            "preprocessing": {"input_size": [16, 16], "modality": "MR",
                              "normalization": {"method": "percentile", "low_percentile": 0.5,
                                                "high_percentile": 99.5}}}
    return save_checkpoint(path, UNet(num_classes=2, base_channels=2, depth=1), meta)


@pytest.fixture
def dataset(tmp_path):
    """Two cases: case_000 with a class file of its own (infection in purple), case_001
    without labels; dataset.json names the classes (no colours: the palette's)."""
    folder = tmp_path / "Dataset002_Infection"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "infection": 1},
                                                     "file_ending": ".nii.gz", "numTraining": 2}))
    for n in range(2):
        volume, labels = tiny_case(n)
        save_volume(folder / "imagesTr" / f"case_00{n}_0000.nii.gz", volume)
        if n == 0:
            save_labels(folder / "labelsTr" / "case_000.nii.gz", (labels > 0).astype(np.uint8), volume,
                        [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "infection", CASE_COLOR)])
    return folder


def legend_entries(window) -> list[tuple[str, tuple[int, ...]]]:
    """(class name, colour) of each filled square of the legend (outlines left out)."""
    text = window.legend.text()
    return [(name.strip(), tuple(int(v) for v in color.split(",")))
            for color, name in re.findall(r"rgb\(([\d, ]+)\)'>&#9632;</span> ([^<&]+)", text)]


def test_the_legend_lists_each_class_once_in_the_case_colour(qtbot, window, dataset, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    checkpoints = {"A": checkpoint(models / "a.safetensors", 1), "B": checkpoint(models / "b.safetensors", 2)}
    controller = window.worklist_controller
    with qtbot.waitSignal(controller.queue_finished, timeout=TIMEOUT):
        with qtbot.waitSignals([controller.dataset_opened, controller.case_opened], timeout=TIMEOUT):
            controller.open_dataset(dataset, checkpoints)  # its first case opens with it
    assert window.session.case.name == "case_000"
    assert set(window.session.models) == {"A", "B"}
    assert legend_entries(window) == [("infection", CASE_COLOR)]
    assert window.legend.text().count("infection") == 1
    # A case without a class file: the dataset's names, still one entry per class.
    with qtbot.waitSignal(controller.case_opened, timeout=TIMEOUT):
        controller.open_case("case_001")
    entries = legend_entries(window)
    assert [name for name, _ in entries] == ["infection"]
    assert entries[0][1] == tuple(window.session.classes[1].color)
