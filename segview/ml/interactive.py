"""The click-conditioned correction model: one class on one slice, refined from the
person's clicks (RITM / nnInteractive style, in 2D, class-agnostic).

The model sees a square crop of the slice, resized to ``input_size`` (metadata
``preprocessing.input_size``):

- channels 0-2: slices z - 1, z, z + 1 (the edge slice repeated at the volume's ends),
  scaled to [0, 1] by the crop's own ``low_percentile`` / ``high_percentile`` of the three
  slices (``normalization.method`` "crop-percentile"): the structure clicked decides the
  contrast, whatever the modality or the window a segmentation model would use;
- channel 3: the class's current mask on slice z (a copied prediction, the person's
  edits, or empty);
- channels 4 and 5: positive and negative clicks, each a disk of ``click.radius`` pixels
  of the network's input (metadata ``click``).

The output is two logits per pixel (background, the class). The crop (``crop_box``) is the
box around the clicks and the mask's connected regions that the clicks touch or are near,
grown by ``crop.margin`` of its side on each side and to at least ``crop.min_size`` pixels,
clipped to the image; the model writes back only inside it.

``error_click`` is the one place a click is derived from an error (the simulated reviewer
of ``session.reviewer`` and the training's click simulation): inside the largest error
region, at the point farthest from its boundary (or sampled by that distance).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from .checkpoint import CheckpointError, load_checkpoint

TASK = "interactive"
CHANNELS = 6
#: Defaults of a new interactive checkpoint's metadata.
PREPROCESSING: dict[str, Any] = {
    "input_size": [128, 128], "context_slices": 1,
    "normalization": {"method": "crop-percentile", "low_percentile": 1.0, "high_percentile": 99.0},
    "click": {"shape": "disk", "radius": 3},          # pixels of the network's input
    "crop": {"margin": 0.4, "min_size": 64},          # share of the box's side; image pixels
}


@dataclass(frozen=True)
class Click:
    """A click at (y, x) of the slice (array order), adding (positive) or removing."""
    y: int
    x: int
    positive: bool = True


# -- the crop -------------------------------------------------------------------------

def crop_box(shape: tuple[int, int], clicks: list[Click], mask: np.ndarray, margin: float = 0.4,
             min_size: int = 64) -> tuple[slice, slice]:
    """The square box (rows, columns) the model sees: around the clicks and the regions of
    ``mask`` (H, W) bool that a click falls in or whose box holds a click, grown by
    ``margin`` of its side on each side, at least ``min_size``, clipped to ``shape``."""
    points = np.array([(c.y, c.x) for c in clicks], float).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    if mask.any():
        regions, _ = ndimage.label(mask)
        for found in ndimage.find_objects(regions):
            if found is None:
                continue
            top, bottom = np.array([found[0].start, found[1].start]), np.array([found[0].stop - 1,
                                                                                  found[1].stop - 1])
            if any((top <= p).all() and (p <= bottom).all() for p in points):
                low, high = np.minimum(low, top), np.maximum(high, bottom)
    side = max(float((high - low).max()) + 1, 1.0)
    side = max(side * (1 + 2 * margin), float(min_size))
    side = min(side, float(max(shape)))
    centre = (low + high) / 2
    box = []
    for axis in range(2):
        start = int(round(centre[axis] - side / 2))
        start = min(max(start, 0), max(shape[axis] - int(side), 0))
        box.append(slice(start, min(start + int(side), shape[axis])))
    return box[0], box[1]


# -- the input ------------------------------------------------------------------------

def context_slices(volume: np.ndarray, z: int, box: tuple[slice, slice]) -> np.ndarray:
    """(3, h, w) float32: slices z - 1, z, z + 1 of ``volume`` (Z, Y, X) inside ``box``,
    the end slices repeated at the volume's ends."""
    picks = [min(max(z + d, 0), volume.shape[0] - 1) for d in (-1, 0, 1)]
    return volume[picks][:, box[0], box[1]].astype(np.float32)


def encode(image: np.ndarray, mask: np.ndarray, clicks: list[Click], box: tuple[slice, slice],
           preprocessing: dict = PREPROCESSING) -> torch.Tensor:
    """The network's input (1, 6, S, S) for ``image`` (3, h, w) and ``mask`` (h, w) cropped by
    ``box``, with ``clicks`` in slice coordinates."""
    size = int(preprocessing["input_size"][0])
    norm = preprocessing["normalization"]
    low, high = np.percentile(image, [norm["low_percentile"], norm["high_percentile"]])
    scaled = np.clip((image - np.float32(low)) / np.float32(max(float(high - low), 1e-6)), 0, 1)
    planes = torch.from_numpy(np.concatenate([scaled, mask[None].astype(np.float32)]))
    planes = F.interpolate(planes[None], size=(size, size), mode="bilinear", align_corners=False)
    return torch.cat([planes, click_maps(clicks, box, size, preprocessing["click"]["radius"])], dim=1)


def click_maps(clicks: list[Click], box: tuple[slice, slice], size: int, radius: float) -> torch.Tensor:
    """(1, 2, size, size): disks of ``radius`` (input pixels) at the positive and the negative
    clicks, mapped from slice coordinates into the resized crop ``box``."""
    maps = torch.zeros(1, 2, size, size)
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    for click in clicks:
        cy = (click.y - box[0].start + 0.5) * size / h - 0.5
        cx = (click.x - box[1].start + 0.5) * size / w - 0.5
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        maps[0, 0 if click.positive else 1][disk] = 1.0
    return maps


def decode(logits: torch.Tensor, box: tuple[slice, slice]) -> np.ndarray:
    """(h, w) bool: the class where its logit beats background, resized back to ``box``."""
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    resized = F.interpolate(logits.float(), size=(h, w), mode="bilinear", align_corners=False)
    return (resized[0, 1] > resized[0, 0]).cpu().numpy()


# -- clicks from errors ---------------------------------------------------------------

def error_click(mask: np.ndarray, reference: np.ndarray, rng: np.random.Generator | None = None) -> Click | None:
    """The click a reviewer gives to bring ``mask`` (H, W) bool toward ``reference``: inside
    the largest error region (missed: positive; extra: negative), at the point farthest from
    its boundary (the image's edge counts as boundary), or, with ``rng``, a point drawn with
    probability rising with that distance. None when they agree."""
    best = None
    for positive, error in ((True, reference & ~mask), (False, mask & ~reference)):
        regions, count = ndimage.label(error)
        if not count:
            continue
        sizes = np.bincount(regions.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        if best is None or sizes[largest - 1] > best[0]:
            best = (sizes[largest - 1], positive, regions == largest)
    if best is None:
        return None
    _, positive, region = best
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    if rng is None:
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    else:
        weights = distance.ravel() ** 2
        y, x = np.unravel_index(int(rng.choice(weights.size, p=weights / weights.sum())), distance.shape)
    return Click(int(y), int(x), positive)


# -- the model ------------------------------------------------------------------------

class ClickModel:
    """An interactive checkpoint ready to refine: ``refine(volume, z, mask, clicks)``."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device = "cpu"):
        self.model, self.meta = model.to(device).eval(), meta
        self.device = torch.device(device)
        self.preprocessing = meta["preprocessing"]

    @classmethod
    def from_checkpoint(cls, path, device: str | torch.device = "cpu") -> ClickModel:
        """Raises CheckpointError for a file that cannot be used or is not an interactive
        checkpoint (a segmentation checkpoint is named as one)."""
        model, meta = load_checkpoint(path, device)
        check_interactive(meta, Path(path).name)
        return cls(model, meta, device)

    def refine(self, volume: np.ndarray, z: int, mask: np.ndarray, clicks: list[Click]) -> tuple[tuple[slice, slice],
                                                                                                  np.ndarray]:
        """The class on slice ``z`` of ``volume`` (Z, Y, X) refined from its current ``mask``
        (Y, X) bool and every ``clicks`` of the interaction: (box, new mask inside the box)."""
        if not clicks:
            raise ValueError("refine needs at least one click")
        crop = self.preprocessing["crop"]
        box = crop_box(mask.shape, clicks, mask, crop["margin"], crop["min_size"])
        x = encode(context_slices(volume, z, box), mask[box], clicks, box, self.preprocessing)
        with torch.inference_mode():
            logits = self.model(x.to(self.device))
        return box, decode(logits, box)


def check_interactive(meta: dict, name: str) -> None:
    """Raises CheckpointError unless ``meta`` is an interactive checkpoint's."""
    if meta.get("task") != TASK:
        classes = len(meta.get("classes", []))
        raise CheckpointError(f"{name} is a segmentation checkpoint ({classes} classes), not an interactive "
                              "correction model (metadata \"task\": \"interactive\")")
