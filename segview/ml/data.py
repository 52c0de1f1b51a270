"""Training data: cases from a folder or from phantoms, the split by case, preprocessing of
2D slices for the network (and back), and augmentation.

Slices are taken along the volume's first array axis (z, the acquisition axis: the
slice direction of a DICOM series and the k index of NIfTI/NRRD/MetaImage). Each slice is
padded to a square in mm (so the anatomy keeps its proportions, whatever the pixels' shape)
and resized to ``input_size`` squared; predictions are resized back to the padded canvas
and cropped, so they land exactly on the input's pixel grid.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..core.classes import generic_class
from ..core.errors import DatasetError, VolumeLoadError
from ..core.files import FIRST_CHANNEL, case_name
from ..core.io import (IMAGE_EXTENSIONS, LabelClass, extension, load_classes, load_labels,
                       load_volume, named_classes)
from ..core.journal import image_key
from ..core.phantoms import make_phantom, phantom_written, scanner_shift
from ..core.review_state import flagged_reason, load_review_state, read_sidecar
from ..core.splits import SPLITS_FILE, read_split, write_split
from ..core.volume import Volume, slice_pixel_size
from .config import DEFAULT_CT_WINDOW

Progress = Callable[[int, int, str], None]

#: MRI has no absolute scale: each volume is mapped by these percentiles to [0, 1].
MR_PERCENTILES = (0.5, 99.5)


@dataclass
class Case:
    """One patient: the image and its reference labels (Z, Y, X) on the same grid;
    ``slices``: the z indices to learn from and score (the reviewed ones), None for all."""

    name: str
    volume: Volume
    labels: np.ndarray
    slices: np.ndarray | None = None

    def restricted(self) -> Case:
        """Only ``slices``, stacked (the case itself when all count): what 2D scoring sees."""
        if self.slices is None:
            return self
        v = self.volume
        return Case(self.name, Volume(v.array[self.slices], v.spacing, v.origin, v.direction, v.modality, v.meta),
                    self.labels[self.slices])


@dataclass
class Dataset:
    cases: list[Case]
    classes: list[LabelClass]
    source: str                                        # what it is, for the checkpoint
    skipped: list[str] = field(default_factory=list)   # "case: reason", reported to the user
    name: str = ""                                     # the dataset folder's name, for lineage
    phantom: str = ""   # the task of segview's phantoms its cases are (named by seed); "" for other images

    def summary(self) -> dict:
        return {"source": self.source, "cases": len(self.cases),
                "slices": int(sum(c.labels.shape[0] if c.slices is None else len(c.slices) for c in self.cases)),
                "modality": sorted({c.volume.modality for c in self.cases}),
                "skipped": self.skipped}


# -- finding cases ----------------------------------------------------------------------

def phantom_dataset(task: str, count: int, first_seed: int = 0,
                    progress: Progress | None = None, shift: bool = False) -> Dataset:
    """``count`` synthetic cases of ``task`` ("cardiac" or "lung") with seeds from
    ``first_seed``; ``shift``: as a new scanner shows them (``core.phantoms.scanner_shift``)."""
    if count < 1:
        raise DatasetError("the number of phantom cases must be at least 1")
    if first_seed < 0:  # numpy's seeding refused it with a traceback
        raise DatasetError("the first phantom seed must be 0 or more")
    cases = []
    classes: list[LabelClass] = []
    for n in range(count):
        if progress:
            progress(n, count, f"phantom {task} {first_seed + n}")
        phantom = make_phantom(task, first_seed + n)
        if shift:
            phantom = scanner_shift(phantom, first_seed + n)
        cases.append(Case(f"{task}_{first_seed + n:03d}", phantom.volume, phantom.labels))
        classes = list(phantom.classes)
    shifted = ", scanner shift" if shift else ""
    return Dataset(cases, classes, f"phantom {task}, seeds {first_seed}..{first_seed + count - 1}{shifted}",
                   phantom=task)


#: Phantom cases ``replay_dataset("phantom:TASK")`` draws when no count is given.
REPLAY_PHANTOMS = 12


def replay_dataset(spec: str, progress: Progress | None = None) -> Dataset:
    """Replay data as ``train --replay`` names it: a dataset folder, or
    ``phantom:TASK[:COUNT]`` (the shipped models' own training seeds, from 0). Raises
    DatasetError."""
    if spec.startswith("phantom:"):
        task, _, count = spec[len("phantom:"):].partition(":")
        if task not in ("cardiac", "lung") or (count and not count.isdigit()):
            raise DatasetError(f"replay data {spec}: phantom:cardiac or phantom:lung, optionally :COUNT")
        return phantom_dataset(task, int(count or REPLAY_PHANTOMS), 0, progress)
    return folder_dataset(Path(spec), progress)


def replay_spec(source: str) -> str | None:
    """The ``replay_dataset`` spec that gives a Dataset of ``source`` (its ``source``, as a
    checkpoint's metadata keeps it) again: ``phantom:TASK`` for unshifted phantoms, the
    folder where it still exists; None when those data cannot be had again."""
    if source.startswith("phantom ") and "scanner shift" not in source:
        task = source.split()[1].rstrip(",")
        return f"phantom:{task}" if task in ("cardiac", "lung") else None
    folder = source[len("folder "):] if source.startswith("folder ") else ""
    return folder if folder and Path(folder).is_dir() else None


def folder_dataset(folder, progress: Progress | None = None, reviewed_only: bool = False) -> Dataset:
    """Cases of an nnU-Net style folder: ``imagesTr/<case>_0000.<ext>`` (or a DICOM folder
    ``imagesTr/<case>/``) with ``labelsTr/<case>.<ext>``, and optionally ``dataset.json``
    whose ``labels`` map class names to values. Pairs whose grids disagree, or that cannot
    be read, are skipped and listed in ``skipped``; labels above the declared classes are
    an error. ``reviewed_only``: each case keeps only the slices its review sidecar marks
    reviewed (``Case.slices``), and a case with none is skipped, named. A case flagged in
    the worklist (a problem a person noted) is always skipped, named."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"there is no dataset folder at {folder}")
    images, labels = folder / "imagesTr", folder / "labelsTr"
    if not images.is_dir() or not labels.is_dir():
        raise DatasetError(f"{folder} needs imagesTr/ and labelsTr/ folders (nnU-Net layout)")
    declared = _declared_classes(folder / "dataset.json")
    pairs = _pairs(images, labels)
    if not pairs:
        raise DatasetError(f"{folder} holds no image/label pairs (imagesTr/<case>_0000.nii.gz "
                           "with labelsTr/<case>.nii.gz)")
    cases, skipped = [], [f"{name}: no label file in labelsTr/" for name in _images(images)
                          if name not in {pair[0] for pair in pairs}]
    for n, (name, image_path, label_path) in enumerate(pairs):
        if progress:
            progress(n, len(pairs), name)
        try:
            volume = load_volume(image_path)
            label_array = load_labels(label_path, volume)
            review, review_warning = _review(label_path, volume) if reviewed_only else (None, None)
        except VolumeLoadError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        # A flagged case (motion, the wrong series) teaches nothing, whether or not slices are reviewed.
        flag = _flag(review.extra if review is not None else read_sidecar(label_path) or {})
        if flag is not None:
            skipped.append(f"{name}: {flag}")
            continue
        slices = np.flatnonzero(review.reviewed) if review is not None else None
        if slices is not None and not slices.size:
            skipped.append(f"{name}: {review_warning or 'no reviewed slice'}")
            continue
        cases.append(Case(name, volume, label_array, slices))
    if not cases:
        what = "case with reviewed slices" if reviewed_only else "usable case"
        raise DatasetError(f"no {what} in {folder}: " + "; ".join(skipped[:6]))
    classes = _saved_colours(declared, pairs[0][2]) if declared else _classes_from_labels(cases, pairs[0][2])
    top = max(int(c.labels.max()) for c in cases)
    if top >= len(classes):
        offender = next(c.name for c in cases if c.labels.max() == top)
        raise DatasetError(f"case {offender} has label {top}, but the dataset declares only "
                           f"classes 0..{len(classes) - 1}")
    return Dataset(cases, classes, f"folder {folder.resolve()}", skipped, folder.resolve().name,
                   str(phantom_written(folder).get("task") or ""))


def _review(label_path, volume: Volume):
    """The review state in the sidecar of ``label_path`` (empty when it has none or it is of
    another image) and why it was not applied, if so. Raises VolumeLoadError for a damaged one."""
    return load_review_state(label_path, volume.shape[0], image_key(volume), volume)


def _flag(sidecar: dict) -> str | None:
    """Why the case is left out when the worklist flagged it (``flagged_reason``), from its
    sidecar's keys; None when it is not flagged."""
    entry = sidecar.get("case") or {}
    if not isinstance(entry, dict) or entry.get("status") != "flagged":
        return None
    return flagged_reason(str(entry.get("note") or ""))


def _pairs(images: Path, labels: Path) -> list[tuple[str, Path, Path]]:
    label_files = {_stem(p): p for p in labels.iterdir()
                   if p.is_file() and extension(p) in IMAGE_EXTENSIONS and not p.name.startswith(".")}
    return [(name, image, label_files[name]) for name, image in _images(images).items() if name in label_files]


def case_names(folder) -> list[str]:
    """Every case of an nnU-Net folder, labelled or not (``imagesTr``), sorted."""
    images = Path(folder) / "imagesTr"
    return sorted(_images(images)) if images.is_dir() else []


def _images(images: Path) -> dict[str, Path]:
    """Case name -> its image (``<case>_0000.<ext>`` or a DICOM folder ``<case>/``)."""
    found = {}
    for image in sorted(images.iterdir()):
        if image.name.startswith("."):
            continue
        name = _stem(image) if image.is_file() else image.name
        if image.is_file() and extension(image) not in IMAGE_EXTENSIONS:
            continue
        if image.is_file() and name.endswith(FIRST_CHANNEL):
            name = case_name(name)
        elif image.is_file() and len(name) > 5 and name[-5] == "_" and name[-4:].isdigit():
            continue  # a second channel (_0001 ...): single-channel models use _0000 only
        found[name] = image
    return found


def _stem(path: Path) -> str:
    return path.name[: len(path.name) - len(extension(path))]


def _declared_classes(dataset_json: Path) -> list[LabelClass]:
    """dataset.json's "labels" ({"background": 0, "RV": 1, ...}); none where the file or the
    key is absent: the label files name the classes then, as in the worklist."""
    if not dataset_json.exists():
        return []
    try:
        document = json.loads(dataset_json.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{dataset_json} cannot be read: {exc}") from exc
    if not isinstance(document, dict):
        raise DatasetError(f"{dataset_json} holds no JSON object")
    if "labels" not in document:
        return []
    try:
        by_value = {int(value): str(name) for name, value in document["labels"].items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(f'{dataset_json}: "labels" must map each class name to its value '
                           f'({{"background": 0, ...}}): {exc}') from exc
    if sorted(by_value) != list(range(len(by_value))):
        raise DatasetError(f"{dataset_json} must declare classes 0, 1, ..., C - 1")
    return named_classes([by_value[v] for v in range(len(by_value))])


def _saved_colours(declared: list[LabelClass], first_label: Path) -> list[LabelClass]:
    """dataset.json's classes (it names no colours) in the colours the label files keep for
    them (their sidecar, same value and name): a model trained on the folder shows its
    classes as the dataset does."""
    saved = {c.value: c for c in load_classes(first_label)}
    return [saved[c.value] if c.value in saved and saved[c.value].name.lower() == c.name.lower() else c
            for c in declared]


def _classes_from_labels(cases: list[Case], first_label: Path) -> list[LabelClass]:
    """The classes the label files name (their class file), the others under the generic
    name ``label N`` the worklist gives them, which names nothing and so refuses no model."""
    saved = {c.value: c for c in load_classes(first_label)}
    count = max(int(c.labels.max()) for c in cases) + 1
    generic = named_classes(["background"]) + [generic_class(v) for v in range(1, max(count, 2))]
    return [saved.get(v, generic[v]) for v in range(max(count, 2))]


def fixed_split(folder, names: list[str], fraction: float = 0.2, seed: int = 0,
                write: bool = True) -> dict[str, list[str]]:
    """The dataset's one split, {"train": [...], "val": [...]}, from ``folder/splits.json``
    (``core.splits``). Written once, when first needed: a seeded ``fraction`` of ``names``
    (at least one) held out as "val". Never reshuffled: a case added later joins "train"
    (written back) unless the user moves it in the file. ``write=False`` draws or extends it
    without writing (a run that may yet be refused). Raises DatasetError for a file that
    cannot be read or that names cases the dataset lacks."""
    split = read_split(folder)
    if split is None:
        train, held_out = split_cases(names, fraction, seed)
        drawn = {"train": train, "val": held_out}
        return write_split(folder, drawn) if write else drawn
    unknown = sorted(set(split["train"] + split["val"]) - set(names))
    if unknown:
        raise DatasetError(f"{Path(folder) / SPLITS_FILE} names cases this dataset lacks ({', '.join(unknown[:5])}); "
                           "put them back or remove them from the file: segview never reshuffles a split")
    added = sorted(set(names) - set(split["train"]) - set(split["val"]))
    if added:
        split["train"] = sorted(split["train"] + added)
        if write:
            write_split(folder, split)
    return split


def split_cases(names: list[str], validation_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and validation case names: a seeded shuffle of whole cases, so no patient
    feeds both. At least one case is held out when there are two or more."""
    if not 0 <= validation_fraction < 1:
        raise DatasetError("the validation fraction must lie in [0, 1)")
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    held_out = round(len(names) * validation_fraction)
    if validation_fraction > 0 and len(names) >= 2:
        held_out = max(held_out, 1)
    held_out = min(held_out, len(names) - 1)
    return sorted(shuffled[held_out:]), sorted(shuffled[:held_out])


# -- intensities ------------------------------------------------------------------------

def network_flips(volume: Volume, orientation: str) -> tuple[bool, bool]:
    """The flips a network that learnt slices in ``orientation`` ("display" or "stored":
    ``ml.checkpoint.slice_orientation``) sees ``volume``'s slices with."""
    return volume.display_flips() if orientation == "display" else (False, False)


def flip_in_plane(array: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    """``array`` (..., Y, X) with its rows and/or columns reversed (``Volume.display_flips``):
    a view, no copy; applied twice it gives ``array`` back."""
    rows, cols = flips
    return array[..., ::-1 if rows else 1, ::-1 if cols else 1]


def normalization_for(modality: str, ct_window=DEFAULT_CT_WINDOW) -> dict:
    """The intensity normalisation for a modality, as recorded in checkpoint metadata."""
    if modality == "CT":
        return {"method": "ct-window", "low": float(ct_window[0]), "high": float(ct_window[1])}
    return {"method": "percentile", "low_percentile": MR_PERCENTILES[0],
            "high_percentile": MR_PERCENTILES[1]}


def normalize(array: np.ndarray, normalization: dict) -> np.ndarray:
    """float32 intensities in [0, 1]: CT clipped to a fixed HU window, other modalities
    mapped by their own robust percentiles (one pair per volume)."""
    method = normalization["method"]
    if method == "ct-window":
        low, high = normalization["low"], normalization["high"]
    elif method == "percentile":
        low, high = np.percentile(array, [normalization["low_percentile"],
                                          normalization["high_percentile"]])
    else:
        raise ValueError(f"unknown intensity normalisation {method!r}")
    scaled = (array.astype(np.float32) - np.float32(low)) / np.float32(max(high - low, 1e-6))
    return np.clip(scaled, 0.0, 1.0, out=scaled)


# -- slices to and from the network -----------------------------------------------------

def padded_shape(shape: tuple[int, int], pixel_size: tuple[float, float] | None = None) -> tuple[int, int]:
    """(rows, columns) of the canvas a slice of ``shape`` (H, W) is padded to before it is
    resized to the network's square input: square in mm for pixels of ``pixel_size`` (row,
    column) mm, square in pixels where they are square (or None). On pixels of 1.6 x 3.2 mm
    a canvas square in pixels showed the shipped cardiac models a heart squashed 2:1: Dice
    0.00-0.61 where square pixels gave 0.79-0.95."""
    height, width = int(shape[0]), int(shape[1])
    if pixel_size is None or pixel_size[0] == pixel_size[1]:
        side = max(height, width)
        return side, side
    rows_mm, columns_mm = float(pixel_size[0]), float(pixel_size[1])
    side_mm = max(height * rows_mm, width * columns_mm)
    return max(height, round(side_mm / rows_mm)), max(width, round(side_mm / columns_mm))


def to_network(images: torch.Tensor, size: int, pixel_size: tuple[float, float] | None = None) -> torch.Tensor:
    """(N, 1, H, W) float -> (N, 1, size, size): padded at the bottom/right to a square in
    mm (``padded_shape``) with each slice's minimum, then resized (antialiased bilinear)."""
    images = _pad(images, padded_shape((images.shape[-2], images.shape[-1]), pixel_size), value=None)
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)


def labels_to_network(labels: torch.Tensor, size: int, pixel_size: tuple[float, float] | None = None
                      ) -> torch.Tensor:
    """(N, H, W) int64 -> (N, size, size), padded with background as ``to_network`` pads,
    nearest neighbour."""
    labels = _pad(labels[:, None].float(), padded_shape((labels.shape[-2], labels.shape[-1]), pixel_size), value=0.0)
    if labels.shape[-2:] != (size, size):
        labels = F.interpolate(labels, size=(size, size), mode="nearest-exact")
    return labels[:, 0].long()


def from_network(logits: torch.Tensor, shape: tuple[int, int], pixel_size: tuple[float, float] | None = None
                 ) -> torch.Tensor:
    """(N, C, size, size) -> (N, C, H, W) on the original pixel grid: resized back to the
    padded canvas (``padded_shape``; bilinear) and cropped."""
    canvas = padded_shape(shape, pixel_size)
    if logits.shape[-2:] != canvas:
        logits = F.interpolate(logits, size=canvas, mode="bilinear", align_corners=False)
    return logits[..., : shape[0], : shape[1]]


def _pad(images: torch.Tensor, canvas: tuple[int, int], value: float | None) -> torch.Tensor:
    height, width = images.shape[-2:]
    if (height, width) == canvas:
        return images
    if value is None:  # the darkest value of each slice: air, not a bright edge
        minimum = images.amin(dim=(-2, -1), keepdim=True)
        padded = minimum.expand(*images.shape[:-2], *canvas).clone()
    else:
        padded = images.new_full((*images.shape[:-2], *canvas), value)
    padded[..., :height, :width] = images
    return padded


# -- the training set of slices ---------------------------------------------------------

def slice_tensors(cases: list[Case], normalization: dict, size: int, orientation: str = "display",
                  progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The slices of ``cases`` (each case's ``slices``, or all): images (N, 1, size, size)
    float32, labels (N, size, size) int64, turned as ``orientation`` says (as the Predictor
    turns them: ``ml.checkpoint.slice_orientation``). MR percentiles come from the whole
    volume."""
    images, labels = [], []
    for n, case in enumerate(cases):
        if progress:
            progress(n, len(cases), case.name)
        chosen = slice(None) if case.slices is None else case.slices
        flips = network_flips(case.volume, orientation)
        array = flip_in_plane(normalize(case.volume.array, normalization)[chosen], flips)
        truth = flip_in_plane(case.labels[chosen], flips).astype(np.int64)
        pixel_size = slice_pixel_size(case.volume.spacing)
        images.append(to_network(torch.from_numpy(np.ascontiguousarray(array))[:, None], size, pixel_size))
        labels.append(labels_to_network(torch.from_numpy(truth), size, pixel_size))
    return torch.cat(images), torch.cat(labels)


def augment(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
            rotation_deg: float = 15.0, scale: float = 0.1, flip: bool = True,
            intensity: float = 0.1, contrast: float = 0.2, noise: float = 0.03):
    """A random variant of a batch (images (B, 1, H, W), labels (B, H, W)), on their device.

    One affine warp per image (flips, rotation within +-rotation_deg, scaling within
    +-scale), bilinear for the image and nearest for the labels so they stay aligned;
    then brightness shift, contrast around the image's mean, and Gaussian noise."""
    batch = images.shape[0]

    def uniform(low, high, shape=(batch,)):
        return torch.rand(shape, generator=generator).mul_(high - low).add_(low).to(images.device)

    angle = uniform(-rotation_deg, rotation_deg) * (torch.pi / 180)
    zoom = uniform(1 - scale, 1 + scale)
    sign_x = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if flip else torch.ones(batch, device=images.device)
    sign_y = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0) if flip else torch.ones(batch, device=images.device)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * sign_x, -sin, torch.zeros_like(cos)], -1),
                         torch.stack([sin, cos * sign_y, torch.zeros_like(cos)], -1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="border",
                           align_corners=False)[:, 0].long()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * uniform(1 - contrast, 1 + contrast).view(-1, 1, 1, 1) + mean
    images = images + uniform(-intensity, intensity).view(-1, 1, 1, 1)
    sigma = uniform(0, noise).view(-1, 1, 1, 1)
    images = images + sigma * torch.randn(images.shape, generator=generator).to(images.device)
    return images, labels
