"""Checkpoints: one safetensors file, the weights plus segview's JSON metadata in its header.

safetensors stores raw tensors and a JSON header, so loading a checkpoint can never run
code, unlike a pickled ``.pt`` file; segview refuses pickles outright. The metadata sits
under the header key ``"segview"``, readable by any safetensors tool::

    {
      "format": "segview-checkpoint", "format_version": 1, "segview_version": "0.1.0",
      "architecture": {"name": "UNet", "in_channels": 1, "num_classes": 4, ...},
      "classes": [{"value": 0, "name": "background", "color": [0, 0, 0]}, ...],
      "loss": {"name": "ce+dice", "alpha": 1.0, ...},
      "preprocessing": {"input_size": [256, 256], "modality": "MR",
                        "normalization": {"method": "percentile", ...}},
      "training": {...data summary, split, epochs...}, "validation": {...metrics...}
    }

``save_checkpoint`` fills in format, versions and architecture from the model; the caller
gives the rest. ``load_checkpoint`` raises CheckpointError for anything it cannot trust.

``architecture.name`` says which network to rebuild, from a fixed list: segview's ``UNet``
(every checkpoint segview trains) or a network imported from elsewhere (``MonaiUNet``,
``MonaiBasicUNet``, ``MilesialUNet``; see ``segview.ml.importers``); the other fields are
that class's arguments. A name outside the list is refused: a checkpoint never picks the
code that runs it.
"""
from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..core.files import replace_atomically
from ..core.report import finite_or_none
# CheckpointError and the class-table helpers stay importable from here (public names).
from .metadata import (FORMAT, FORMAT_VERSION, METADATA_KEY, CheckpointError, classes_from_metadata,
                       classes_to_metadata, parse_metadata, reason)
from .unet import UNet

ARCHITECTURES = {"UNet": UNet}
#: Networks imported from other code bases: class name -> module of segview.ml holding it.
#: Imported only when a checkpoint needs one (MONAI takes seconds to import).
FOREIGN_ARCHITECTURES = {"MonaiUNet": "monai_networks", "MonaiBasicUNet": "monai_networks",
                         "MilesialUNet": "milesial"}
PICKLE_EXTENSIONS = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")

__all__ = [
    "CheckpointError",
    "architecture_class",
    "classes_from_metadata",
    "classes_to_metadata",
    "load_checkpoint",
    "modality_mismatch",
    "read_metadata",
    "save_checkpoint",
]


def save_checkpoint(path, model: torch.nn.Module, meta: dict) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` (a .safetensors file), atomically.

    ``meta`` must hold ``classes`` (one entry per output channel: value, name, colour);
    ``architecture``, ``format`` and the versions are filled in here. Raises ValueError
    for inconsistent metadata and OSError when the file cannot be written."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"checkpoints are .safetensors files, not {path.name}")
    name = type(model).__name__
    if architecture_class(name) is not type(model):
        raise ValueError(f"cannot save a {name}; known architectures: {', '.join(_known_names())}")
    config = _config(model)
    meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
            "segview_version": __version__, "architecture": {"name": name, **config}}
    classes = classes_from_metadata(meta)
    if len(classes) != config["num_classes"]:
        raise ValueError(f"{len(classes)} classes described for a model with "
                         f"{config['num_classes']} outputs")
    header = {METADATA_KEY: metadata_json(meta)}
    tensors = {key: value.detach().to("cpu", copy=True).contiguous()
               for key, value in model.state_dict().items()}
    return replace_atomically(path, lambda temporary: save_file(tensors, temporary, header))


def read_metadata(path) -> dict:
    """The metadata of the checkpoint at ``path`` (.safetensors, or an exported .onnx)
    without building the model."""
    if str(path).lower().endswith(".onnx"):
        from .onnx_network import read_onnx_metadata

        return read_onnx_metadata(path)
    path = _checked_path(path)
    try:
        with safe_open(str(path), framework="pt") as file:
            header = file.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path.name} is not a readable safetensors checkpoint "
                              f"({reason(exc)}); it may be truncated or damaged") from exc
    return parse_metadata(path, header)


def load_checkpoint(path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The model (in eval mode, on ``device``) and metadata saved at ``path``.

    Raises CheckpointError for a missing, unreadable, truncated or pickled file, metadata
    from another program or a newer segview, an unknown architecture, weights that do not
    fit the architecture, a class table that does not fit the outputs, or non-finite
    weights, and for an ONNX file (it has no torch network; ``Predictor.from_checkpoint``
    runs it)."""
    path = _checked_path(path)
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(f"{path.name} is an ONNX model, not a segview checkpoint: it runs in "
                              "predict, evaluate and the window, but cannot be trained or exported")
    try:
        with safe_open(str(path), framework="pt") as file:
            meta = parse_metadata(path, file.metadata() or {})
            tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (not iterable)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors checkpoint "
                              f"({reason(exc)}); it may be truncated or damaged") from exc
    model = _build_model(path, meta["architecture"])
    _check_weights(path, model, tensors)
    classes = classes_from_metadata(meta, path)
    num_classes = _config(model)["num_classes"]
    if len(classes) != num_classes:
        raise CheckpointError(f"{path.name} names {len(classes)} classes but its network has "
                              f"{num_classes} outputs")
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval(), meta


def architecture_class(name: str) -> type[torch.nn.Module] | None:
    """The network class of ``architecture.name`` ``name`` in the fixed list, else None."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    if name in FOREIGN_ARCHITECTURES:
        module = importlib.import_module(f"{__package__}.{FOREIGN_ARCHITECTURES[name]}")
        return getattr(module, name)
    return None


#: How a network sees a slice (``preprocessing.orientation``): "display" turned as the window
#: shows it (``Volume.display_flips``), "stored" as its file stores it.
ORIENTATIONS = ("display", "stored")


def slice_orientation(meta: dict) -> str:
    """The orientation the checkpoint with metadata ``meta`` saw its slices in. Checkpoints
    segview trained before the key existed learned with random flips, so either serves and
    "display" keeps one scan's storages to one prediction; one trained without flips, or
    imported from elsewhere, learned the arrays as stored. Raises CheckpointError for a
    value it does not know."""
    preprocessing = meta.get("preprocessing") or {}
    if "orientation" in preprocessing:
        orientation = preprocessing["orientation"]
        if orientation not in ORIENTATIONS:
            raise CheckpointError(f"the checkpoint's slice orientation {orientation!r} is none of "
                                  f"{', '.join(ORIENTATIONS)}")
        return str(orientation)
    flipped = ((meta.get("training") or {}).get("config") or {}).get("augment")
    return "display" if flipped else "stored"


def modality_mismatch(meta: dict, volume, subject: str = "the image") -> str | None:
    """A warning when ``volume`` (its DICOM ``modality``, e.g. "CT" or "MR"; anything with
    ``modality`` and ``meta``) is not the modality the checkpoint with metadata ``meta`` was
    trained on, naming ``volume`` as ``subject``; None when they agree or either is unknown
    (a NIfTI file has no modality). Pure: reads, never raises."""
    trained = str((meta.get("preprocessing") or {}).get("modality") or "").upper()
    image = str(getattr(volume, "modality", "") or "").upper()
    if not trained or not image or trained == image:
        return None
    guessed = (getattr(volume, "meta", None) or {}).get("modality_guessed", False)
    seen = f"looks like {image} (guessed from its intensities)" if guessed else f"is {image}"
    return (f"this checkpoint was trained on {trained} images but {subject} {seen}; "
            "its predictions may be meaningless")


# -- loading, step by step --------------------------------------------------------------

def _checked_path(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"there is no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give the .safetensors file inside it")
    try:
        with open(path, "rb") as file:
            head = file.read(9)
    except OSError as exc:
        raise CheckpointError(f"{path.name} cannot be read ({reason(exc)})") from exc
    if _is_pickle(path, head):
        raise CheckpointError(
            f"{path.name} is a pickled PyTorch file. Loading a pickle can run any code it "
            "contains, so segview reads only .safetensors checkpoints; ask for one, or convert "
            "a file you trust with safetensors.torch.save_file(torch.load(path, "
            "weights_only=True), 'model.safetensors').")
    return path


def _is_pickle(path: Path, head: bytes) -> bool:
    """PyTorch's .pt is a zip of pickles; older ones and .pkl are bare pickles (0x80, then
    the protocol). A safetensors file starts with its header's length (8 bytes, any value)
    and then "{", which rules both out."""
    if head[8:9] == b"{":
        return False
    return (head.startswith(b"PK\x03\x04") or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")
            or path.suffix.lower() in PICKLE_EXTENSIONS)


def _build_model(path: Path, architecture: dict) -> torch.nn.Module:
    arguments = dict(architecture)
    name = arguments.pop("name", None)
    network = architecture_class(name) if isinstance(name, str) else None
    if network is None:
        raise CheckpointError(f"{path.name} holds an unknown architecture {name!r}; this "
                              f"segview knows {', '.join(_known_names())}")
    try:
        return network(**arguments)
    except (TypeError, ValueError, AssertionError) as exc:  # MONAI checks arguments with assert
        raise CheckpointError(f"{path.name} describes a {name} this segview cannot build "
                              f"({reason(exc)})") from exc


def _config(model: torch.nn.Module) -> Mapping[str, Any]:
    """The constructor arguments every network in the fixed list keeps in ``config`` (a
    dict; typed here because nn.Module's attributes read as tensors or modules)."""
    config = getattr(model, "config", None)
    if not isinstance(config, Mapping):
        raise TypeError(f"a {type(model).__name__} keeps no config dict")
    return config


def _known_names() -> list[str]:
    return [*ARCHITECTURES, *FOREIGN_ARCHITECTURES]


def _check_weights(path: Path, model: torch.nn.Module, tensors: dict) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [key for key in set(expected) & set(tensors)
                   if expected[key].shape != tensors[key].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weights (e.g. {unexpected[0]})")
    if wrong_shape:
        key = min(wrong_shape)
        problems.append(f"{len(wrong_shape)} weights of the wrong shape (e.g. {key}: "
                        f"{tuple(tensors[key].shape)}, expected {tuple(expected[key].shape)})")
    if problems:
        raise CheckpointError(f"{path.name}: the weights do not match the architecture in its "
                              f"metadata: {'; '.join(problems)}")
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path.name}: weight {key} holds NaN or infinite values "
                                  "(training diverged?)")


def metadata_json(meta: dict) -> str:
    """``meta`` as strict JSON (what jq and JSON.parse read): a NaN or infinity, no score
    (the spread of one validation case), is null."""
    return json.dumps(finite_or_none(meta), default=_to_json, allow_nan=False)


def _to_json(value):
    """numpy scalars and arrays in metadata become plain JSON numbers and lists."""
    if isinstance(value, np.generic):
        return finite_or_none(value.item())
    if isinstance(value, np.ndarray):
        return finite_or_none(value.tolist())
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be stored in checkpoint metadata")

