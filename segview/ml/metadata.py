"""Checkpoint metadata: the JSON segview keeps with a network, parsed and checked in one
place for both files that carry it: a safetensors checkpoint (its header) and an exported
ONNX model (its metadata properties), both under the key ``"segview"``. The fields are
described in ``segview.ml.checkpoint``.

Pure: no torch, no files opened here, so ``checkpoint`` and ``onnx_network`` both import
it and neither imports the other for it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.classes import LabelClass, naming_conflict, rgb
from ..core.errors import SegviewError

FORMAT = "segview-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "segview"

__all__ = ["FORMAT", "FORMAT_VERSION", "METADATA_KEY", "CheckpointError", "check_class_names",
           "classes_from_metadata", "classes_to_metadata", "parse_metadata", "parse_onnx_metadata", "reason"]


class CheckpointError(SegviewError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def parse_metadata(path: Path, header: dict) -> dict:
    """The metadata in a safetensors ``header`` (its string entries) of the checkpoint at
    ``path``. Raises CheckpointError when it is missing, damaged, another program's, from a
    newer segview, or does not say which network it holds."""
    if METADATA_KEY not in header:
        if "segview_training_state" in header:  # the resumable state of a run, beside its checkpoints
            raise CheckpointError(f"{path.name} is the resumable state of a training run, not a checkpoint: "
                                  "use best.safetensors or last.safetensors beside it")
        raise CheckpointError(f"{path.name} is a safetensors file without segview metadata; "
                              "it was not saved by segview")
    meta = _decoded(path, header[METADATA_KEY], "metadata")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path.name} does not hold a segview checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} was written by a newer segview "
                              f"({meta.get('segview_version', 'unknown')}); update segview")
    if not isinstance(meta.get("architecture"), dict):
        raise CheckpointError(f"{path.name} does not say which network it holds")
    return meta


def parse_onnx_metadata(path: Path, properties: dict) -> dict:
    """The metadata in the custom metadata ``properties`` of the ONNX model at ``path``.
    Raises CheckpointError when it is missing or damaged, does not say which network it
    holds, or has a bad class table."""
    if METADATA_KEY not in properties:
        raise CheckpointError(f"{path.name} has no segview metadata (classes, preprocessing); "
                              "export ONNX models with `segview export CKPT -o model.onnx`")
    meta = _decoded(path, properties[METADATA_KEY], "segview metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("architecture"), dict):
        raise CheckpointError(f"{path.name} does not say which network it holds")
    classes_from_metadata(meta, path)  # raises CheckpointError for a bad class table
    return meta


def _decoded(path: Path, text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path.name} has damaged {what} ({reason(exc)})") from exc


def classes_to_metadata(classes) -> list[dict]:
    """The JSON form of a class table (LabelClass values) for ``meta["classes"]``."""
    return [{"value": c.value, "name": c.name, "color": list(c.color)} for c in classes]


def classes_from_metadata(meta: dict, path: Path | None = None) -> list[LabelClass]:
    """The class table of a checkpoint's metadata, sorted by value 0 .. C - 1. Raises
    ValueError for a bad table, CheckpointError naming ``path`` when one is given."""
    try:
        classes = [LabelClass(int(c["value"]), str(c["name"]), rgb(c["color"]))
                   for c in meta["classes"]]
    except (KeyError, TypeError, ValueError) as exc:
        message = ("the metadata needs 'classes': a list of {value, name, color} "
                   f"({reason(exc)})")
        if path is None:
            raise ValueError(message) from exc
        raise CheckpointError(f"{path.name}: {message}") from exc
    classes.sort(key=lambda c: c.value)
    if [c.value for c in classes] != list(range(len(classes))):
        message = "class values must be 0, 1, ..., C - 1 with no gaps"
        if path is None:
            raise ValueError(message)
        raise CheckpointError(f"{path.name}: {message}")
    return classes


def check_class_names(model: str, theirs, dataset_classes) -> None:
    """Raises CheckpointError where ``model`` (its name in the message), whose classes are
    ``theirs``, names a class value otherwise than a dataset's ``dataset_classes``: its voxels
    would be scored under another class. The generic names a dataset falls back on where
    nothing names its classes ("label N") refuse no model. The one check of evaluate, with or
    without --reviewed-only, as the worklist's ``checkpoint_problems``."""
    conflict = naming_conflict(theirs, dataset_classes, "the dataset's classes")
    if conflict is not None:
        raise CheckpointError(f"{model}: {conflict}; its voxels would be scored under another class.")


def reason(exc: BaseException) -> str:
    """The last line of an exception's message (libraries put the cause there), else its type."""
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__


def trained_cases(meta: dict, cases: dict[str, tuple[str, str]], dataset: str, phantom: str = "") -> list[str]:
    """The names of ``cases`` (name -> its image_key and voxel_digest) a checkpoint learnt
    from, by its lineage: by the images' voxel values (``lineage.voxels``), wherever the data
    were copied, however renamed or re-saved (a DICOM series as NIfTI); for a checkpoint
    trained before those were kept, by the images' keys (``lineage.images``), and before
    those, by the ``dataset`` folder's name and the cases' names. Without a lineage (a
    checkpoint trained on phantoms, as the shipped ones), on a dataset of segview's
    ``phantom`` cases of its task, by their names (their seeds): a helper's verdict on the
    shipped lung models' own training seeds said nothing. A model judged on them shows no
    evidence of how it does on others."""
    lineage = meta.get("lineage") or {}
    if not lineage:
        training = meta.get("training") or {}
        if phantom and str(training.get("source", "")).startswith(f"phantom {phantom},"):
            learnt = (training.get("split") or {}).get("train") or []
            return sorted(set(cases) & set(learnt))
        return []
    for field, which in (("voxels", 1), ("images", 0)):
        learnt = lineage.get(field)
        if isinstance(learnt, dict):
            digests = set(learnt.values())
            return sorted(name for name, case in cases.items() if case[which] in digests)
    if lineage.get("dataset") == dataset and isinstance(lineage.get("cases"), dict):
        return sorted(set(cases) & set(lineage["cases"]))
    return []


def learnt_count(meta: dict) -> int | None:
    """How many cases a checkpoint learnt from in all, wherever they are (its lineage's
    ``cases``; without one, its training split's): more than ``trained_cases`` finds where
    some of them are not evaluated (flagged since, or elsewhere). None when not recorded."""
    lineage = meta.get("lineage") or {}
    learnt = lineage.get("cases") if lineage else ((meta.get("training") or {}).get("split") or {}).get("train")
    return len(learnt) if isinstance(learnt, (dict, list)) else None
