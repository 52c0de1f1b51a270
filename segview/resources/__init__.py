"""Files shipped with the package (package data): the trained checkpoints in ``models/``:
four segmentation checkpoints and the click model (``CLICK_MODEL``)."""
from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parent
MODELS = RESOURCES / "models"
#: The interactive correction model (segview.ml.interactive), class-agnostic.
CLICK_MODEL = MODELS / "interactive.safetensors"


def shipped_models() -> dict[str, Path]:
    """Checkpoint name (file stem, e.g. "cardiac_ce_dice", "interactive") -> path."""
    return {path.stem: path for path in sorted(MODELS.glob("*.safetensors"))}

#: The checkpoints ``segview --demo`` opens as models A and B.
DEMO_MODELS = (MODELS / "cardiac_ce.safetensors", MODELS / "cardiac_ce_dice.safetensors")
