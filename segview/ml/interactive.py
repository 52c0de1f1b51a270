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
box around the last click and the mask's connected regions it touches or is near, grown
by ``crop.margin`` of its side on each side and to at least ``crop.min_size`` pixels,
clipped to the image (``crop.around`` "last click"; a checkpoint without it was trained
on the box around every click); the model writes back only inside it. The earlier clicks
of the interaction are drawn where they fall inside the crop; what they did is in the
mask. So a click on a second lesion across the slice is seen at the resolution of the
first, and a click changes nothing far from it.

From the second click of an interaction on, ``refine`` keeps, of what the network changed,
the connected region of the change under the last click (FocalClick's progressive merge,
``merge_at_click``) and, in the structure clicked, the changes of the click's sign (an
adding click grows it, a removing click trims it, wherever the network does): a further
click fixes the error it was given, moves that structure's edge only the way it asked, and
leaves the other structures as the earlier clicks made them. The first click takes the whole proposal for
the structure clicked (``structure_at_click``: the connected region of the mask and the
proposal together under the click), and leaves the crop's other structures, which may be a
person's earlier corrections, as they were. Every voxel
clicked then takes the label of its last click (click consistency): a click the network
does not follow still fixes the voxel under it, so the reviewer never clicks in vain at the
same point. On unseen lung phantoms (bench clicks' seeds) the merge cut the clicks that
lower the Dice from about 20 % to 5 %, and the click consistency the objects that never
reach Dice 0.90 from 36 % to 21 % (from a prediction) and 20 % to 12 % (from empty).
A further click also sees a smaller crop, down to ``FOCUS_SIZE`` pixels (``focus_box``,
FocalClick's focus crop): the region it corrects magnified, as a person zooms in to fix an
edge, while the first click sees the whole structure.

The network sees the crop and its three mirror images (the four flips) in one batch, and
``refine`` takes the mean of their logits (``mirrored_logits``): steadier edges, and the
mirrored answer for a mirrored crop, for about four times the network's time, well within a
click's budget.

``error_click`` is the one place a click is derived from an error (the simulated reviewer
of ``session.reviewer`` and the training's click simulation): inside the largest error
region, at the point farthest from its boundary (or sampled by that distance).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .checkpoint import CheckpointError, load_checkpoint

TASK = "interactive"
CHANNELS = 6
#: Defaults of a new interactive checkpoint's metadata.
#: A crop is never smaller than the network's input (96 pixels), so small structures are
#: seen at their own resolution and a first click on an empty mask sees a whole heart
#: chamber or lesion of the phantoms (up to about 80 pixels across).
PREPROCESSING: dict[str, Any] = {
    "input_size": [96, 96], "context_slices": 1,
    "normalization": {"method": "crop-percentile", "low_percentile": 1.0, "high_percentile": 99.0},
    "click": {"shape": "disk", "radius": 3},          # pixels of the network's input
    "crop": {"margin": 0.4, "min_size": 96,           # share of the box's side; image pixels
             "around": "last click", "focus_size": 48},   # focus_size: ``focus_box``
}
RUNTIMES = ("auto", "torch")
#: The focus crop's least side (image pixels, ``focus_box``) for a checkpoint whose metadata
#: does not say (``crop.focus_size``; trained before it was there). On unseen lung phantoms (seeds
#: 5000-5003) it cut the clicks that lower the Dice from 9.5 % to 4.2 % and the objects that
#: never reach 0.90 from 5.9 % to 4.4 % (from a prediction), NoC@90 unchanged; on the
#: harder seeds 4000-4002, never from 17.9 % to 7.1 % for NoC@90 6.3 -> 6.5.
FOCUS_SIZE = 48


@dataclass(frozen=True)
class Click:
    """A click at (y, x) of the slice (array order), adding (positive) or removing."""
    y: int
    x: int
    positive: bool = True


# -- the crop -------------------------------------------------------------------------

def crop_box(shape: tuple[int, int], clicks: list[Click], mask: np.ndarray, margin: float = 0.4,
             min_size: int = 96, boxes: np.ndarray | None = None,
             pixel_size: tuple[float, float] | None = None) -> tuple[slice, slice]:
    """The box (rows, columns) the model sees, square in mm: around the clicks and the
    regions of ``mask`` (H, W) bool near a click (the click inside the region's box grown by
    ``margin`` of its side, at least 2 pixels, on each side: a click just beside a region,
    where it was missed, brings the region in), grown by ``margin`` of its side on each side,
    at least ``min_size``, clipped to ``shape``. Clicks must lie inside ``shape``. ``boxes``:
    ``region_boxes(mask)``, where the caller has them. ``pixel_size``: (row, column) mm,
    square when None; sides and ``min_size`` count pixels of the finer axis, so the network,
    trained on square pixels, sees the anatomy in its own proportions (a crop square in
    pixels showed it squashed 2:1 on 0.6 x 1.2 mm pixels)."""
    points = np.array([(c.y, c.x) for c in clicks], float).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    if boxes is None:
        boxes = region_boxes(mask)
    if len(boxes):
        near = np.maximum(margin * (boxes[:, 1] - boxes[:, 0] + 1), 2.0)
        inside = ((boxes[:, None, 0] - near[:, None] <= points) & (points <= boxes[:, None, 1] + near[:, None]))
        touched = boxes[inside.all(axis=2).any(axis=1)]
        if len(touched):
            low, high = np.minimum(low, touched[:, 0].min(axis=0)), np.maximum(high, touched[:, 1].max(axis=0))
    stretch = pixel_stretch(pixel_size)
    side = max(float(((high - low + 1) * stretch).max()), 1.0)   # in pixels of the finer axis
    side = max(side * (1 + 2 * margin), float(min_size))
    side = min(side, float((np.asarray(shape) * stretch).max()))
    centre = (low + high) / 2
    box = []
    for axis in range(2):
        extent = side / stretch[axis]   # pixels of this axis
        length = max(int(extent), 1)
        start = int(round(centre[axis] - extent / 2))
        start = min(max(start, 0), max(shape[axis] - length, 0))
        box.append(slice(start, min(start + length, shape[axis])))
    return box[0], box[1]


def pixel_stretch(pixel_size: tuple[float, float] | None) -> np.ndarray:
    """(2,): a pixel's (row, column) sides in sides of the finer axis' pixel ((1, 1) for
    square pixels, or None)."""
    return np.ones(2) if pixel_size is None else np.asarray(pixel_size, float) / min(pixel_size)


def region_boxes(mask: np.ndarray) -> np.ndarray:
    """(regions, 2, 2) float: each connected region's (top, left) and (bottom, right) pixel
    of ``mask`` (H, W) bool."""
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return np.zeros((0, 2, 2))
    top, left = rows[0], columns[0]  # labelled inside the mask's bounding box: a few times faster
    regions, _ = ndimage.label(mask[top:rows[-1] + 1, left:columns[-1] + 1])
    corners = [(top + r.start, left + c.start, top + r.stop - 1, left + c.stop - 1)
               for r, c in ndimage.find_objects(regions)]
    return np.array(corners, float).reshape(-1, 2, 2)  # (region, top | bottom, y | x)


# -- the input ------------------------------------------------------------------------

def context_slices(volume: np.ndarray, z: int, box: tuple[slice, slice]) -> np.ndarray:
    """(3, h, w) float32: slices z - 1, z, z + 1 of ``volume`` (Z, Y, X) inside ``box``,
    the end slices repeated at the volume's ends."""
    picks = [min(max(z + d, 0), volume.shape[0] - 1) for d in (-1, 0, 1)]
    return np.stack([volume[k, box[0], box[1]] for k in picks]).astype(np.float32)  # no whole slice copied


def encode(image: np.ndarray, mask: np.ndarray, clicks: list[Click], box: tuple[slice, slice],
           preprocessing: dict = PREPROCESSING) -> torch.Tensor:
    """The network's input (1, 6, S, S) for ``image`` (3, h, w) and ``mask`` (h, w) cropped by
    ``box``, with ``clicks`` in slice coordinates. Resized with ``resize_bilinear`` (numpy,
    one thread: a click waits for no thread pool)."""
    size = int(preprocessing["input_size"][0])
    norm = preprocessing["normalization"]
    low, high = np.percentile(image, [norm["low_percentile"], norm["high_percentile"]])
    scaled = np.clip((image - np.float32(low)) / np.float32(max(float(high - low), 1e-6)), 0, 1)
    planes = resize_bilinear(np.concatenate([scaled, mask[None].astype(np.float32)]), (size, size))
    maps = _click_disks(clicks, box, size, preprocessing["click"]["radius"])
    return torch.from_numpy(np.concatenate([planes, maps])[None].astype(np.float32, copy=False))


def click_maps(clicks: list[Click], box: tuple[slice, slice], size: int, radius: float) -> torch.Tensor:
    """(1, 2, size, size): disks of ``radius`` (input pixels) at the positive and the negative
    clicks, mapped from slice coordinates into the resized crop ``box``: a click at pixel
    (y, x) lands at ((y - top + 0.5) * size / h - 0.5, ...), the centre of its pixel in the
    resized crop (the mapping of ``resize_bilinear``)."""
    return torch.from_numpy(_click_disks(clicks, box, size, radius)[None])


def _click_disks(clicks: list[Click], box: tuple[slice, slice], size: int, radius: float) -> np.ndarray:
    maps = np.zeros((2, size, size), np.float32)
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    yy, xx = np.ogrid[:size, :size]
    for click in clicks:
        cy = (click.y - box[0].start + 0.5) * size / h - 0.5
        cx = (click.x - box[1].start + 0.5) * size / w - 0.5
        maps[0 if click.positive else 1][(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 1.0
    return maps


def decode(logits: torch.Tensor, box: tuple[slice, slice]) -> np.ndarray:
    """(h, w) bool: the class where its logit beats background, resized back to ``box``
    (bilinear is linear: the logits' difference is resized, one plane)."""
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    difference = (logits[0, 1].float() - logits[0, 0].float()).cpu().numpy()
    return resize_bilinear(difference, (h, w)) > 0


def resize_bilinear(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(..., h, w) -> (..., H, W): bilinear, pixel centres aligned, edges clamped: torch's
    ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing."""
    if array.shape[-2:] == tuple(shape):
        return array
    y0, y1, wy = _source_pixels(array.shape[-2], shape[0])
    x0, x1, wx = _source_pixels(array.shape[-1], shape[1])
    rows = array[..., y0, :] * (1 - wy)[:, None] + array[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def _source_pixels(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    source = np.maximum((np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5, 0.0)
    first = np.minimum(source.astype(np.int64), size_in - 1)
    return first, np.minimum(first + 1, size_in - 1), (source - first).astype(np.float32)


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
    # The distance transform of the region's box only (padded by one: beyond the box, and
    # beyond the image's edge, is boundary); row-major order is kept, so ties go alike.
    rows, cols = ndimage.find_objects(region.view(np.uint8))[0]
    distance = ndimage.distance_transform_edt(np.pad(region[rows, cols], 1))[1:-1, 1:-1]
    if rng is None:
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    else:
        weights = distance.ravel() ** 2
        y, x = np.unravel_index(int(rng.choice(weights.size, p=weights / weights.sum())), distance.shape)
    return Click(int(y) + rows.start, int(x) + cols.start, positive)


# -- the model ------------------------------------------------------------------------

def prepare(volume: np.ndarray, z: int, mask: np.ndarray, clicks: list[Click],
            preprocessing: dict = PREPROCESSING, focus_size: int | None = None,
            pixel_size: tuple[float, float] | None = None) -> tuple[tuple[slice, slice], torch.Tensor]:
    """The crop (``crop_box``) and the network's input (1, 6, S, S) for a click on slice
    ``z`` of ``volume`` (Z, Y, X), the class's current ``mask`` (Y, X) bool and every
    ``clicks`` of the interaction: the one path of the model, the training and the
    validation. ``focus_size``: from the second click on, the crop may be as small as
    that (``focus_box``). ``pixel_size``: (row, column) mm of the slice (``crop_box``)."""
    if not clicks:
        raise ValueError("refine needs at least one click")
    crop = preprocessing["crop"]
    focus = clicks[-1:] if crop.get("around") == "last click" else clicks
    boxes = region_boxes(mask)  # once for both crops
    box = crop_box(mask.shape, focus, mask, crop["margin"], crop["min_size"], boxes, pixel_size)
    if focus_size and len(clicks) > 1:
        box = focus_box(box, mask, focus, crop["margin"], focus_size, boxes, pixel_size)
    return box, encode(context_slices(volume, z, box), mask[box], clicks, box, preprocessing)


def focus_size_of(preprocessing: dict) -> int:
    """The focus crop's least side a checkpoint's ``preprocessing`` gives (``FOCUS_SIZE`` where
    it says none)."""
    return int(preprocessing["crop"].get("focus_size", FOCUS_SIZE))


def focus_box(box: tuple[slice, slice], mask: np.ndarray, clicks: list[Click], margin: float,
              focus_size: int, boxes: np.ndarray | None = None,
              pixel_size: tuple[float, float] | None = None) -> tuple[slice, slice]:
    """A further click's crop zoomed in (FocalClick's focus crop): ``crop_box`` with
    ``focus_size`` as its least side, where that smaller box still holds some of ``mask``
    (the region being corrected); else ``box``, so a click on a region the mask missed
    still sees it whole. A small region is then seen magnified (a 48-pixel crop at twice
    its size in a 96-pixel input), where a boundary error of one pixel is two."""
    near = crop_box(mask.shape, clicks, mask, margin, focus_size, boxes, pixel_size)
    return near if mask[near].any() else box


class ClickModel:
    """An interactive checkpoint ready to refine: ``refine(volume, z, mask, clicks)``.

    ``network`` is what runs: the torch model, or (``from_checkpoint``) on the CPU the same
    network in ONNX Runtime, about five times faster there, and on a GPU the model replayed
    from a CUDA graph (``GraphedNetwork``); the README's latency."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device = "cpu"):
        self.model, self.meta = model.to(device).eval(), meta
        self.network: Callable[[torch.Tensor], torch.Tensor] = self.model
        self.device = torch.device(device)
        self.preprocessing = meta["preprocessing"]
        self.mirrors = True  # refine averages the crop's mirror images (``mirrored_logits``)
        self.focus_size: int | None = focus_size_of(self.preprocessing)  # refine's least crop after the first click

    @classmethod
    def from_checkpoint(cls, path, device: str | torch.device = "cpu", runtime: str = "auto") -> ClickModel:
        """Raises CheckpointError for a file that cannot be used or is not an interactive
        checkpoint (a segmentation checkpoint is named as one). ``runtime`` "auto": ONNX
        Runtime on the CPU when installed and the network exports (torch otherwise), a CUDA
        graph on a GPU; "torch": torch always."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        if Path(path).suffix.lower() == ".onnx":
            raise CheckpointError(f"{Path(path).name} is an ONNX model: a click model is its interactive .safetensors "
                                  "checkpoint (segview runs that in ONNX Runtime by itself on the CPU)")
        model, meta = load_checkpoint(path, device)
        check_interactive(meta, Path(path).name)
        clicker = cls(model, meta, device)
        if runtime == "auto" and clicker.device.type == "cpu":
            from .onnx_model import onnxruntime_network

            network = onnxruntime_network(clicker.model, meta, Path(path))
            if network is not None:
                clicker.network = network
        elif runtime == "auto" and clicker.device.type == "cuda":
            clicker.network = GraphedNetwork(clicker.model)
        return clicker

    @property
    def runtime(self) -> str:
        """What runs the network: "onnxruntime", "cuda graph" or "torch"."""
        if self.network is self.model:
            return "torch"
        return "cuda graph" if isinstance(self.network, GraphedNetwork) else "onnxruntime"

    def warm_up(self) -> None:
        """One pass of the network on a blank input, so that the first click does not pay for
        the runtime's first run: on a GPU the CUDA graph's capture and cuDNN's timing of its
        algorithms (three passes and more), on the CPU ONNX Runtime's first allocations."""
        size = int(self.preprocessing["input_size"][0])
        blank = torch.zeros(1, CHANNELS, size, size, device=self.device)
        with torch.inference_mode():
            mirrored_logits(self.network, blank) if self.mirrors else self.network(blank)

    def refine(self, volume: np.ndarray, z: int, mask: np.ndarray, clicks: list[Click],
               merge: bool = True, pixel_size: tuple[float, float] | None = None
               ) -> tuple[tuple[slice, slice], np.ndarray]:
        """The class on slice ``z`` of ``volume`` (Z, Y, X) refined from its current ``mask``
        (Y, X) bool and every ``clicks`` of the interaction: (box, new mask inside the box);
        ``merge``: after the first click, only the change under the last click
        (``merge_at_click``), seen in the focus crop (``focus_box``); else all the network
        proposes in the box. ``pixel_size``: (row, column) mm of the slice, for a crop square
        in mm (``crop_box``). Raises ValueError without clicks."""
        box, x = prepare(volume, z, mask, clicks, self.preprocessing, self.focus_size if merge else None, pixel_size)
        x = x.to(self.device)
        with torch.inference_mode():
            logits = mirrored_logits(self.network, x) if self.mirrors else self.network(x)
        proposed = decode(logits, box)
        if merge:
            proposed = changes_only(mask[box], proposed, x.shape[-1])
        return box, settle(mask, clicks, box, proposed, merge)


def click_device() -> torch.device:
    """Where the window's clicks run: CUDA when there is a GPU (on an H200 machine a click
    took 2.4 ms there against 26 ms in ONNX Runtime on 2 of its cores, p50), else the CPU
    (Apple's MPS is not measured, and ONNX Runtime meets the CPU target)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class GraphedNetwork:
    """``network`` (on a GPU) replayed from a CUDA graph captured at the first input of each
    shape, with the convolution algorithms cuDNN timed fastest for it. The click network at
    batch 4 of 96 x 96 is bound by its kernel launches, not by arithmetic: on an H200 a
    replay took 0.53 ms against 2.9 ms eager (medians), and a click 2.4 ms against 7.3 ms
    (p50; the README's latency). A capture that fails leaves it eager. Call it under
    ``torch.inference_mode``; its output is a copy, safe to keep."""

    def __init__(self, network: torch.nn.Module):
        self.network = network
        self.graph: torch.cuda.CUDAGraph | None = None
        self.input = self.output = torch.empty(0)
        self.eager = False   # capture failed: run the network directly from now on

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.eager:
            return self.network(x)
        if self.graph is None or self.input.shape != x.shape:
            try:
                self._capture(x)
            except RuntimeError:  # an unsupported operation or driver: same answers, eager
                self.graph, self.eager = None, True
                return self.network(x)
        assert self.graph is not None
        self.input.copy_(x)
        self.graph.replay()
        return self.output.clone()

    def _capture(self, x: torch.Tensor) -> None:
        autotune = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True  # only while capturing: the Predictor keeps its setting
        try:
            self.input = x.clone()
            current = torch.cuda.current_stream(x.device)
            side = torch.cuda.Stream(x.device)
            side.wait_stream(current)
            with torch.cuda.stream(side):  # warm-up off the graph: cuDNN's autotuning, the allocator
                for _ in range(3):
                    self.network(self.input)
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: a Predictor working on the GPU in another thread does not break the capture
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self.output = self.network(self.input)
            self.graph = graph
        finally:
            torch.backends.cudnn.benchmark = autotune


def settle(mask: np.ndarray, clicks: list[Click], box: tuple[slice, slice], proposed: np.ndarray,
           merge: bool = True) -> np.ndarray:
    """What a click writes inside ``box``: the network's ``proposed`` mask there, or, with
    ``merge``, at the first click the structure clicked (``structure_at_click``), after it
    ``merge_at_click`` of it into ``mask`` (Y, X) bool at the last of ``clicks``, and every
    voxel clicked as its last click said (``merge``
    also keeps the clicks: a click is never undone by the network). A click may change
    the mask in both directions (an edge moved): on the bench's seeds, keeping an adding
    click to additions turned the lung's clicks lowering the Dice from 6.0 % to 5.2 % but
    its objects never reaching 0.90 from 4.5 % to 5.6 % and the cardiac NoC@90 from a
    prediction from 1.06 to 1.20; a removing one to removals, NoC@90 from 5.0 to 5.3. The
    session keeps a removing click off other classes (``session.interaction``).

    A click that agrees with the mask where it falls (adding on the class, removing off
    it) points at nothing wrong, so it changes the mask only its own way: a tester's
    adding click in the middle of a lesion trimmed 87 voxels of its true edge. The
    simulated reviewer never clicks so (it clicks on errors)."""
    if not merge:
        return proposed
    rows, cols = box
    last = clicks[-1]
    local = Click(last.y - rows.start, last.x - cols.start, last.positive)
    previous = mask[box]
    if len(clicks) > 1:
        proposed = merge_at_click(previous, proposed, local)
    else:
        proposed = structure_at_click(previous, proposed, local)
    if previous[local.y, local.x] == local.positive:
        proposed = previous | proposed if local.positive else previous & proposed
    settled = proposed.copy()
    for click in clicks:  # in order: a later click on the same voxel wins
        if rows.start <= click.y < rows.stop and cols.start <= click.x < cols.stop:
            settled[click.y - rows.start, click.x - cols.start] = click.positive
    return settled


def changes_only(previous: np.ndarray, proposed: np.ndarray, size: int) -> np.ndarray:
    """What the network changed of the crop's mask ``previous`` (h, w) bool, its answer
    ``proposed`` resized back to the crop: ``previous`` where the answer agrees with the mask
    as the network saw it (``previous`` resized to ``size`` and back). The crop's resizing
    then moves no edge the network left where it was (on a 1024 x 1024 slice, a crop resized
    2.5:1, a removing click added 226 voxels along the lesion's edge, 163 with this, the
    rest the network's own edge; on the bench's 512 x 512 phantoms no figure moved by more
    than 0.01). A crop no larger than the network's input (seen at least at its own
    resolution: a focus crop, a small image) is written as proposed."""
    if max(previous.shape) <= size:
        return proposed
    seen = resize_bilinear(resize_bilinear(previous.astype(np.float32), (size, size)), previous.shape) > 0.5
    return np.where(proposed == seen, previous, proposed)


def structure_at_click(previous: np.ndarray, proposed: np.ndarray, click: Click) -> np.ndarray:
    """``previous`` with ``proposed`` written inside the structure clicked: the connected
    region (8-neighbours) of ``previous | proposed`` under ``click`` ((H, W) bool arrays in
    the click's frame). The first click of an interaction corrects that structure whole
    and leaves the others in its crop as they were: a tester's removing click on one
    ventricle took away a blob an earlier interaction had added a few voxels off. On the
    bench's seeds it moved the lung's NoC@90 by under 0.15 either way. ``previous`` when
    the pixel clicked is in neither."""
    structure = _structure(previous | proposed, click)
    return previous.copy() if structure is None else np.where(structure, proposed, previous)


def merge_at_click(previous: np.ndarray, proposed: np.ndarray, click: Click) -> np.ndarray:
    """``previous`` with the connected region (8-neighbours) of its difference from
    ``proposed`` under ``click`` set as proposed, and, in the structure clicked (as
    ``structure_at_click``'s), the proposal's changes of the click's sign: an adding click
    also grows the structure wherever the network grows it, a removing click also trims it
    wherever the network trims it; neither takes the other way elsewhere. (H, W) bool arrays
    in the click's frame. A click on one side of a lesion thus moves the network's whole edge
    of it the way the click asked, where the change under the click alone left the rest of
    the edge to further clicks. On the bench's unseen phantoms (seeds 4000-4011), against the
    change under the click alone: the lung's NoC@90 from a prediction 4.13 (was 4.54), never
    reaching 0.90 4.1 % (5.1 %), but 6.4 % of clicks lowering the Dice (4.8 %); from empty
    3.39 (3.79); the cardiac task's 1.26 and 1.38 (1.24 and 1.44), 4.9 % of its clicks from
    a prediction lowering the Dice (1.7 %)."""
    changed = previous != proposed
    merged = previous.copy()
    if changed[click.y, click.x]:
        regions, _ = ndimage.label(changed, structure=np.ones((3, 3), bool))
        region = regions == regions[click.y, click.x]
        merged[region] = proposed[region]
    structure = _structure(previous | proposed, click)
    if structure is not None:
        if click.positive:
            merged |= proposed & structure
        else:
            merged &= proposed | ~structure
    return merged


def _structure(union: np.ndarray, click: Click) -> np.ndarray | None:
    """The connected region (8-neighbours) of ``union`` under ``click``; None outside it."""
    if not union[click.y, click.x]:
        return None
    regions, _ = ndimage.label(union, structure=np.ones((3, 3), bool))
    return regions == regions[click.y, click.x]


#: The flips of ``mirrored_logits``: none, columns, rows, both (dims of (1, C, S, S)).
FLIPS: tuple[list[int], ...] = ([], [3], [2], [2, 3])


def mirrored_logits(network, x: torch.Tensor) -> torch.Tensor:
    """The mean of ``network``'s logits for ``x`` (1, C, S, S) and its three mirror images
    (left-right, up-down, both), each mirrored back: test-time augmentation, one batch of
    four. The four flips are a group, so a mirrored crop gets the mirrored answer (a scan
    stored mirrored is corrected alike, to the crop box's rounding by a pixel). Against the
    crop alone: steadier edges, lung NoC@90 from a prediction 5.5 -> 4.7 (seeds 2000-2002);
    the fourth image, against three, fewer clicks lowering the Dice (README, "Correcting
    with clicks"); the transposes as well did not help."""
    out = network(torch.cat([torch.flip(x, dims) for dims in FLIPS]))
    return torch.stack([torch.flip(out[n:n + 1], dims) for n, dims in enumerate(FLIPS)]).mean(dim=0)


def check_interactive(meta: dict, name: str) -> None:
    """Raises CheckpointError unless ``meta`` is an interactive checkpoint's."""
    if meta.get("task") != TASK:
        names = [str(c.get("name", "?")) for c in meta.get("classes", []) if isinstance(c, dict)]
        raise CheckpointError(f"{name} is a segmentation checkpoint ({len(names)} classes: {', '.join(names)}), "
                              "not an interactive correction model (metadata \"task\": \"interactive\"; "
                              "train one with segview train DATA --interactive)")
    channels = meta.get("architecture", {}).get("in_channels")
    if channels != CHANNELS or "preprocessing" not in meta:
        raise CheckpointError(f"{name} says it is an interactive model but takes {channels} input channels "
                              f"(an interactive model takes {CHANNELS}) or lacks its preprocessing")
