"""What the window holds for an open image and its models, and the work that
prepares it in the background. No Qt: plain data and functions."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.classes import LabelClass, generic_classes
from ..core.io import load_classes, load_labels, load_volume
from ..core.journal import Journal, RecoveredLabels, image_key, unsaved_edits
from ..core.labels import LabelMap
from ..core.phantoms import make_phantom
from ..core.live import LiveMetrics
from ..core.volume import Volume, auto_window


@dataclass
class OpenCase:
    """What opening an image gives the window (built in a worker: counting the labels'
    classes and writing the journal's snapshot take a while on a large volume)."""
    volume: Volume
    labels: LabelMap
    classes: list[LabelClass]
    live: LiveMetrics
    snapshot: bytes                     # the journal's first record, made in the worker
    recovered: RecoveredLabels | None   # unsaved edits of an earlier session that crashed
    labels_path: Path | None


@dataclass
class LoadedModel:
    """A checkpoint in the window: its Predictor and its prediction on the open volume."""
    path: Path
    predictor: object                      # ml.inference.Predictor (torch imported lazily)
    prediction: np.ndarray | None = None   # (z, y, x) uint8 on the image grid
    predicted: np.ndarray | None = None    # (z,) bool: slices that hold a prediction
    device: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def classes(self) -> list[LabelClass]:
        return self.predictor.classes

    def describe(self, data: bool = False) -> str:
        """Checkpoint name, loss and validation Dice from its metadata (``data``: and what
        it was trained on)."""
        meta = self.predictor.meta
        loss = meta.get("loss", {})
        text = f"{self.name}: {loss.get('name', '?')}"
        if loss.get("name") == "ce+dice":
            text += f", alpha {loss.get('alpha', 1):g}"
        source = meta.get("training", {}).get("source")
        if data and source:
            text += f", trained on {source}"
        dice = meta.get("validation", {}).get("dice", {}).get("mean")
        return text + (f", validation Dice {dice:.3f}" if dice is not None else "")


# -- work done in the background ------------------------------------------------------

def open_case(path, series_uid, labels_path) -> OpenCase:
    volume = with_auto_window(load_volume(path, series_uid))
    labels, classes = read_labels(labels_path, volume) if labels_path else (None, [])
    return editing_session(volume, labels, classes, Path(labels_path) if labels_path else None)


def demo_case(task: str) -> OpenCase:
    case = make_phantom(task, seed=0)
    case.volume.meta["source"] = f"demo: {task} phantom"
    return editing_session(with_auto_window(case.volume), case.labels, list(case.classes), None)


def editing_session(volume: Volume, labels, classes, labels_path) -> OpenCase:
    """The LabelMap, its live metrics, the journal's snapshot, and the unsaved edits of a
    crashed earlier session if there are any (the window asks whether to restore them)."""
    array = np.zeros(volume.shape, np.uint8) if labels is None else np.ascontiguousarray(labels, np.uint8)
    label_map = LabelMap(array, volume.spacing, intensities=volume.array)
    num_classes = max([c.value + 1 for c in classes] + [int(array.max()) + 1, 2])
    return OpenCase(volume, label_map, list(classes) or generic_classes(array), LiveMetrics(label_map, num_classes),
                    Journal.snapshot(array, image_key(volume)), unsaved_edits(volume), labels_path)


def with_auto_window(volume: Volume) -> Volume:
    """Percentiles take a while on a large volume: computed here, not on the main thread."""
    volume.meta["auto_window"] = auto_window(volume.array)
    return volume


def read_labels(path, volume):
    return load_labels(path, volume), load_classes(path)


def load_predictor(path):
    from ..ml.inference import Predictor  # torch is imported when a model is wanted

    return Predictor.from_checkpoint(path)
