"""A checkpoint in a review session: its Predictor and its prediction on the session's image."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np

from ..core.classes import LabelClass

#: The two model slots of a session.
SLOTS = ("A", "B")
#: One load at a time: a checkpoint's ONNX export (for ONNX Runtime on the CPU) is not
#: thread-safe, and of two loaded at once (the window's workers load A and B together)
#: one fell back to torch.
_LOADING = threading.Lock()


def load_predictor(path):
    """The Predictor of checkpoint ``path`` (torch is imported only when a model is wanted).
    Raises CheckpointError for a file that cannot be used. Slow: run it in a worker; loads
    from several threads run one after the other."""
    from ..ml.inference import Predictor

    with _LOADING:
        return Predictor.from_checkpoint(path)


@dataclass
class Model:
    """Checkpoint ``path`` in slot ``slot``; ``prediction`` (z, y, x) uint8 on the image grid,
    ``predicted`` (Z,) bool the slices that hold one (the others are pending)."""
    slot: str
    path: Path
    predictor: Any                       # ml.inference.Predictor (or its ONNX twin): torch stays out
    prediction: np.ndarray
    predicted: np.ndarray
    device: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def classes(self) -> list[LabelClass]:
        return self.predictor.classes

    @property
    def meta(self) -> dict:
        return self.predictor.meta

    @property
    def modality(self) -> str | None:
        """The modality it was trained on, from its metadata (None when unknown)."""
        return self.meta.get("preprocessing", {}).get("modality")

    def describe(self, data: bool = False) -> str:
        """Checkpoint name, loss and validation Dice from its metadata (``data``: and what
        it was trained on); for a checkpoint segview did not train (an imported one), what
        its metadata says: architecture, modality, classes."""
        loss = self.meta.get("loss", {})
        if not loss.get("name"):
            return f"{self.name}: {self._architecture()}"
        text = f"{self.name}: {loss['name']}"
        if loss.get("name") == "ce+dice":
            text += f", alpha {loss.get('alpha', 1):g}"
        source = self.meta.get("training", {}).get("source")
        parent = (self.meta.get("lineage") or {}).get("parent")
        if parent:
            cases = len(self.meta["lineage"].get("cases", {}))
            text += f", fine-tuned from {Path(parent['name']).stem} on {cases} case{'s' if cases != 1 else ''}"
        elif data and source:
            text += f", trained on {source}"
        dice = self.meta.get("validation", {}).get("dice", {}).get("mean")
        if dice is None:
            return text
        if not parent:
            return text + f", validation Dice {dice:.3f}"
        # A fine-tune is scored on the dataset's held-out cases, its parent's own figure on
        # its first data: beside each other they mislead, so the parent's there is given.
        theirs = parent.get("held_out_dice")
        there = f" ({Path(parent['name']).stem} {theirs:.3f} there)" if isinstance(theirs, (int, float)) \
            and math.isfinite(theirs) else ""
        return text + f", held-out Dice {dice:.3f}{there}"

    def _architecture(self) -> str:
        """"imported monai-unet from weights.pth, CT, classes lesion, vessel": what the
        metadata of a checkpoint without a training record tells."""
        imported = self.meta.get("imported") or {}
        arch = imported.get("arch") or self.meta.get("architecture", {}).get("name") or "unknown network"
        parts = [f"imported {arch} from {imported['source']}" if imported.get("source") else arch]
        if self.modality:
            parts.append(str(self.modality))
        names = [c.name for c in self.classes if c.value]
        if names:
            parts.append(f"class{'es' if len(names) > 1 else ''} {', '.join(names)}")
        return ", ".join(parts)
