"""A dataset's one fixed split, ``splits.json`` (nnU-Net's ``splits_final.json`` shape: a
list of folds, fold 0 used), read and written without torch, so that the worklist can show
which cases are held out. Drawing it is ``ml.data.fixed_split``'s."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import DatasetError
from .files import atomic_write_text

SPLITS_FILE = "splits.json"


def read_split(folder) -> dict[str, list[str]] | None:
    """{"train": [...], "val": [...]} from ``folder/splits.json``; None when there is none.
    Raises DatasetError for a file that cannot be read."""
    path = Path(folder) / SPLITS_FILE
    if not path.exists():
        return None
    try:
        folds = json.loads(path.read_text(encoding="utf-8"))
        return {"train": [str(n) for n in folds[0]["train"]], "val": [str(n) for n in folds[0]["val"]]}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); fix or delete it (deleting draws a new split, "
                           "and checkpoints fine-tuned on the old one are then judged on cases they saw)") from exc


def write_split(folder, split: dict[str, list[str]]) -> dict[str, list[str]]:
    """Write ``split`` to ``folder/splits.json`` (atomically); returns it. A read-only dataset
    is left as it is: the seeded split is drawn the same way next time."""
    try:
        atomic_write_text(Path(folder) / SPLITS_FILE, json.dumps([split], indent=1))
    except OSError:
        pass
    return split
