"""Training the click model (``segview train DATA --interactive``): a simulated reviewer
clicks on the errors of starting masks, as RITM, nnInteractive and DeepEdit train.

Each training sample is one class on one slice of a training case:

- the *object*: a class present on the slice (``absent_share`` of the time one that is
  not, whose false positives the reviewer clears);
- the *starting mask*: a given segmentation checkpoint's prediction (``from_models``,
  predicted once up front and kept), the reference perturbed (eroded, dilated, shifted,
  holed, a piece cut off or a component dropped, a blob added, a wobbly boundary; one or
  two of these), or empty; for an absent class, a checkpoint's false positive or a blob;
- the *first click*: ``interactive.error_click`` of the start against the reference,
  drawn inside the largest error region with a probability rising with the distance
  from its boundary;
- then 0 to ``max_rounds`` rounds without gradients (the network in eval mode, as RITM):
  the network's whole answer is written into its crop (``refine_batch``), and the next
  click is drawn on its errors, so it learns to correct itself, not just a start;
- the input is the last state: every click and the current mask, which is dropped
  (replaced by an empty one) ``drop_mask`` of the time; the target is the reference in
  the crop. The crop and the input are those of ``ClickModel.refine`` (``interactive.prepare``):
  from the second click on, the focus crop (``interactive.focus_box``).

Slices are flipped and transposed at random; the image channels get a random gamma and
noise. The loss is ``build_loss(config.loss)`` (CE + Dice) on the crops.

Validation after each epoch (rank 0): the simulated reviewer of ``session.reviewer``
(deterministic clicks at the largest error's farthest point, up to ``validation_clicks``,
stopping at Dice 0.90) on a fixed set of objects of the held-out cases (at least
``MIN_VOXELS`` voxels) from three starts: a checkpoint's prediction where its Dice is below
0.90, the reference perturbed with a fixed seed per object (redrawn until its Dice is below
0.90), and empty. The log has the mean
Dice after 1, 3 and 5 clicks, NoC@85 and NoC@90 (``validation_clicks`` where never
reached), the share never reaching 0.90 and the share of clicks that lowered the Dice;
``best.safetensors`` is the epoch of the highest Dice after 3 clicks
(``validation.selected_by``).

The machinery is ``train``'s: atomic best/last checkpoints, ``log.csv``, ``curves.png``,
the resumable ``training_state.safetensors``, DDP under torchrun, bf16 autocast on CUDA
(and on a CPU with bf16 matrix units: about twice as fast there).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np
import torch
from scipy import ndimage

from ..core.errors import DatasetError
from ..core.io import named_classes
from ..core.volume import slice_pixel_size
from .checkpoint import classes_to_metadata, load_checkpoint, save_checkpoint
from .metadata import CheckpointError
from .config import InteractiveConfig, SCHEDULES
from .data import Dataset, split_cases
from .interactive import (CHANNELS, PREPROCESSING, TASK, Click, check_interactive, decode, error_click, focus_size_of,
                          prepare, resize_bilinear)
from .losses import build_loss
from .train import (STATE_FILE, ProgressCallback, TrainingCancelled, TrainingInterrupted,
                    TrainResult, _barrier, _config_json, _device, _finished_result, _move_optimizer, _plot,
                    _read_state, _restore, _resumed_config, _start_distributed, _stop_distributed, _write_log,
                    _write_state, cpu_share_note, file_sha256, resume_note)
from .unet import UNet

LOG_COLUMNS = ("epoch", "train_loss", "val_dice_1", "val_dice_3", "val_dice_5", "val_noc85", "val_noc90",
               "val_never90", "val_lowering", "val_objects", "lr", "seconds", "samples_per_second")
SELECTED_BY = "val_dice_3"
GOAL = 0.90
MIN_VOXELS = 50        # validation objects: as the simulated reviewer's
MIN_TRAIN_PIXELS = 9   # training objects: anything a person could click in
STARTS = ("prediction", "perturbed", "empty")
#: Shares of the starting masks of a present class (the first without checkpoints is
#: left out and the others scaled up).
START_SHARES = {"prediction": 0.4, "perturbed": 0.35, "empty": 0.25}
VALIDATION_SEED = 20_240_601


# -- cases ------------------------------------------------------------------------------

@dataclass
class InteractiveCase:
    """A case as the simulation sees it: the image (Z, Y, X) float32, the reference labels
    (Z, Y, X) uint8, and the checkpoints' predictions of it (Z, Y, X) uint8 each;
    ``pixel_size`` (row, column) mm of its slices (None: square), for crops square in mm."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    predictions: list[np.ndarray] = field(default_factory=list)
    group: int = 0   # which dataset: draws are balanced over them
    pixel_size: tuple[float, float] | None = None

    def __post_init__(self):
        present, absent = [], []
        for value in (int(v) for v in np.unique(self.labels) if v):
            counts = (self.labels == value).sum(axis=(1, 2))
            present += [(int(z), value) for z in np.flatnonzero(counts >= MIN_TRAIN_PIXELS)]
            absent += [(int(z), value) for z in np.flatnonzero(counts == 0)]
        self.present, self.absent = present, absent
        self.false_positives = []  # (prediction, z, value): predicted where the reference has none
        for n, prediction in enumerate(self.predictions):
            for z, value in absent:
                if (prediction[z] == value).sum() >= MIN_TRAIN_PIXELS:
                    self.false_positives.append((n, z, value))


@dataclass
class _Sample:
    image: np.ndarray      # (3, Y, X): slices z - 1, z, z + 1
    reference: np.ndarray  # (Y, X) bool
    mask: np.ndarray       # (Y, X) bool, the current mask
    start: str
    pixel_size: tuple[float, float] | None = None   # (row, column) mm
    clicks: list[Click] = field(default_factory=list)
    done: bool = False


# -- the reviewer simulation ------------------------------------------------------------

class ClickSimulation:
    """Training batches from ``cases``: ``batch(model, rng, size)`` -> (inputs (B, 6, S, S),
    targets (B, S, S) int64), simulated as the module's text says."""

    def __init__(self, cases: list[InteractiveCase], config: InteractiveConfig, preprocessing: dict = PREPROCESSING,
                 device: torch.device | str = "cpu", amp: bool = False):
        self.cases = [c for c in cases if c.present]
        if not self.cases:
            raise DatasetError("no training case has a labelled object to click on")
        self.groups: dict[int, list[InteractiveCase]] = {}
        for case in self.cases:
            self.groups.setdefault(case.group, []).append(case)
        self.config, self.preprocessing = config, preprocessing
        self.device, self.amp = torch.device(device), amp
        self.size = int(preprocessing["input_size"][0])
        self.focus_size = focus_size_of(preprocessing)

    def batch(self, model: torch.nn.Module, rng: np.random.Generator, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        samples = [self.draw(rng) for _ in range(size)]
        rounds = rng.integers(0, self.config.max_rounds + 1, size=len(samples))
        if rounds.max() > 0:
            training = model.training
            model.eval()
            for r in range(int(rounds.max())):
                active = [s for s, k in zip(samples, rounds) if k > r and not s.done]
                if not active:
                    break
                answers = refine_batch(model, [(s.image, 1, s.mask, s.clicks, s.pixel_size) for s in active],
                                       self.preprocessing, self.device, self.amp)
                for sample, (box, inside) in zip(active, answers):
                    sample.mask[box] = inside
                    click = error_click(sample.mask, sample.reference, rng)
                    if click is None:
                        sample.done = True
                    else:
                        sample.clicks.append(click)
            model.train(training)
        inputs, targets = [], []
        for sample in samples:
            mask = sample.mask if rng.random() >= self.config.drop_mask else np.zeros_like(sample.mask)
            box, x = prepare(sample.image, 1, mask, sample.clicks, self.preprocessing, self.focus_size,
                             sample.pixel_size)
            inputs.append(x)
            targets.append(_resize_mask(sample.reference[box], self.size))
        x = torch.cat(inputs)
        if self.config.augment:
            x = _intensity_augment(x, rng)
        return x, torch.stack(targets)

    def draw(self, rng: np.random.Generator) -> _Sample:
        """One object, its starting mask and its first click."""
        while True:
            group = self.groups[list(self.groups)[int(rng.integers(len(self.groups)))]]
            sample = self._draw(group, rng)
            if sample is None:
                continue
            if self.config.augment:
                sample = _flipped(sample, rng)
            click = error_click(sample.mask, sample.reference, rng)
            if click is not None:
                sample.clicks.append(click)
                return sample

    def _draw(self, group: list[InteractiveCase], rng: np.random.Generator) -> _Sample | None:
        if rng.random() < self.config.absent_share:
            return self._draw_absent(group, rng)
        # A present object: each case in proportion to its objects.
        weights = np.array([len(c.present) for c in group], float)
        case = group[int(rng.choice(len(group), p=weights / weights.sum()))]
        z, value = case.present[int(rng.integers(len(case.present)))]
        reference = case.labels[z] == value
        shares = {k: v for k, v in START_SHARES.items() if k != "prediction" or case.predictions}
        kinds = list(shares)
        start = kinds[int(rng.choice(len(kinds), p=np.array(list(shares.values())) / sum(shares.values())))]
        if start == "prediction":
            mask = case.predictions[int(rng.integers(len(case.predictions)))][z] == value
            if (mask == reference).all():
                start, mask = "perturbed", perturb(reference, rng)
        elif start == "perturbed":
            mask = perturb(reference, rng)
        else:
            mask = np.zeros_like(reference)
        return _Sample(_context(case.image, z), reference, mask, start, case.pixel_size)

    def _draw_absent(self, group: list[InteractiveCase], rng: np.random.Generator) -> _Sample | None:
        case = group[int(rng.integers(len(group)))]
        if case.false_positives and rng.random() < 0.7:
            n, z, value = case.false_positives[int(rng.integers(len(case.false_positives)))]
            mask = case.predictions[n][z] == value
        elif case.absent:
            z, _ = case.absent[int(rng.integers(len(case.absent)))]
            mask = _blob(case.labels.shape[1:], rng)
        else:
            return None
        return _Sample(_context(case.image, z), np.zeros(mask.shape, bool), mask, "absent", case.pixel_size)


def _context(image: np.ndarray, z: int) -> np.ndarray:
    picks = [min(max(z + d, 0), image.shape[0] - 1) for d in (-1, 0, 1)]
    return image[picks]


def _flipped(sample: _Sample, rng: np.random.Generator) -> _Sample:
    """The slice flipped up-down, left-right and transposed, each half of the time."""
    image, reference, mask, pixel_size = sample.image, sample.reference, sample.mask, sample.pixel_size
    if rng.random() < 0.5:
        image, reference, mask = image[:, ::-1], reference[::-1], mask[::-1]
    if rng.random() < 0.5:
        image, reference, mask = image[:, :, ::-1], reference[:, ::-1], mask[:, ::-1]
    if rng.random() < 0.5:
        image, reference, mask = image.transpose(0, 2, 1), reference.T, mask.T
        pixel_size = None if pixel_size is None else (pixel_size[1], pixel_size[0])
    return _Sample(np.ascontiguousarray(image), np.ascontiguousarray(reference), np.ascontiguousarray(mask),
                   sample.start, pixel_size)


def _intensity_augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random gamma (0.7 to 1.4) and Gaussian noise (sigma up to 0.03) on the image channels."""
    batch = x.shape[0]
    gamma = torch.from_numpy(np.exp(rng.uniform(-0.35, 0.35, batch))).float().view(-1, 1, 1, 1)
    sigma = torch.from_numpy(rng.uniform(0, 0.03, batch)).float().view(-1, 1, 1, 1)
    noise = torch.from_numpy(rng.standard_normal(x[:, :3].shape).astype(np.float32))
    image = (x[:, :3].clamp_min(0) ** gamma + sigma * noise).clamp(0, 1)
    return torch.cat([image, x[:, 3:]], dim=1)


def _resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """(h, w) bool -> (size, size) int64: bilinear, then halfway (as ``decode`` reads logits)."""
    return torch.from_numpy(resize_bilinear(mask.astype(np.float32), (size, size)) >= 0.5).long()


#: (volume (Z, Y, X), z, mask (Y, X) bool, clicks, pixel size (row, column) mm or None)
RefineItem = tuple[np.ndarray, int, np.ndarray, list[Click], tuple[float, float] | None]


def refine_batch(model: torch.nn.Module, items: list[RefineItem],
                 preprocessing: dict, device: torch.device, amp: bool = False
                 ) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """``ClickModel.refine(..., merge=False)`` of each (volume, z, mask, clicks, pixel size) in one batch:
    (box, mask in box). The training's rounds and its validation see the network's whole
    answer: it learns to correct all of its own errors, and the best epoch is the best
    network; the merge after the first click is judged by ``segview bench clicks``. A
    further click sees the focus crop (``focus_box``), as in ``refine``."""
    focus = focus_size_of(preprocessing)
    prepared = [prepare(volume, z, mask, clicks, preprocessing, focus, pixel_size)
                for volume, z, mask, clicks, pixel_size in items]
    x = torch.cat([p[1] for p in prepared]).to(device)
    if amp:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x).float()
    return [(box, decode(logits[n:n + 1], box)) for n, (box, _) in enumerate(prepared)]


# -- starting masks ---------------------------------------------------------------------

def perturb(reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``reference`` (H, W) bool spoilt as a model or a hasty person would: one or two of
    eroded, dilated, shifted, holed, a piece cut off (or a component dropped), a blob
    added, a wobbly boundary; scaled to the object's size."""
    mask = reference.copy()
    radius = math.sqrt(max(int(reference.sum()), 1) / math.pi)
    for operation in rng.choice(len(_PERTURBATIONS), size=int(rng.integers(1, 3)), replace=False):
        mask = _PERTURBATIONS[int(operation)](mask, radius, rng)
    return mask


def _erode(mask, radius, rng):
    return ndimage.binary_erosion(mask, iterations=int(rng.integers(1, max(2, round(0.35 * radius)) + 1)))


def _dilate(mask, radius, rng):
    return ndimage.binary_dilation(mask, iterations=int(rng.integers(1, max(2, round(0.35 * radius)) + 1)))


def _shift(mask, radius, rng):
    reach = max(1, round(0.4 * radius))
    dy, dx = (int(v) for v in rng.integers(-reach, reach + 1, size=2))
    return np.roll(mask, (dy, dx), axis=(0, 1)) & _inside(mask.shape, dy, dx)


def _inside(shape, dy, dx):
    """Where ``np.roll`` by (dy, dx) brought nothing round from the other edge."""
    keep = np.ones(shape, bool)
    if dy > 0:
        keep[:dy] = False
    elif dy < 0:
        keep[dy:] = False
    if dx > 0:
        keep[:, :dx] = False
    elif dx < 0:
        keep[:, dx:] = False
    return keep


def _holes(mask, radius, rng):
    points = np.argwhere(mask)
    if not len(points):
        return mask
    out = mask.copy()
    yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
    for _ in range(int(rng.integers(1, 4))):
        y, x = points[int(rng.integers(len(points)))]
        r = rng.uniform(0.15, 0.45) * radius + 1
        out &= (yy - y) ** 2 + (xx - x) ** 2 > r ** 2
    return out


def _cut(mask, radius, rng):
    regions, count = ndimage.label(mask)
    if count > 1 and rng.random() < 0.5:  # drop a component
        return mask & (regions != int(rng.integers(1, count + 1)))
    points = np.argwhere(mask)
    if not len(points):
        return mask
    y, x = points[int(rng.integers(len(points)))]
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.ogrid[:mask.shape[0], :mask.shape[1]]
    return mask & ((yy - y) * np.sin(angle) + (xx - x) * np.cos(angle) < 0)


def _add_blob(mask, radius, rng):
    points = np.argwhere(mask)
    centre = points.mean(axis=0) if len(points) else np.array(mask.shape) / 2
    direction = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(0.6, 2.0) * radius + 2
    y, x = centre + distance * np.array([np.sin(direction), np.cos(direction)])
    size = rng.uniform(0.25, 0.7) * radius + 2
    return mask | _ellipse(mask.shape, y, x, size, size * rng.uniform(0.5, 1.5), rng.uniform(0, np.pi))


def _wobble(mask, radius, rng):
    field = ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma=max(1.5, 0.4 * radius))
    field /= max(float(np.abs(field).max()), 1e-6)
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), 1.0)
    return smooth + 0.45 * field > 0.5


_PERTURBATIONS: list[Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = [
    _erode, _dilate, _shift, _holes, _cut, _add_blob, _wobble]


def _ellipse(shape, y, x, ry, rx, angle) -> np.ndarray:
    yy, xx = np.ogrid[:shape[0], :shape[1]]
    c, s = np.cos(angle), np.sin(angle)
    u, v = (xx - x) * c + (yy - y) * s, -(xx - x) * s + (yy - y) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1


def _blob(shape, rng: np.random.Generator) -> np.ndarray:
    """A false positive of 3 to 15 pixels' radius somewhere in the middle of the slice."""
    y, x = (rng.uniform(0.2, 0.8) * side for side in shape)
    r = rng.uniform(3, 15)
    return _ellipse(shape, y, x, r, r * rng.uniform(0.5, 1.5), rng.uniform(0, np.pi))


# -- validation: the simulated reviewer -------------------------------------------------

@dataclass
class ValidationObject:
    case: InteractiveCase
    z: int
    reference: np.ndarray   # (Y, X) bool
    start_mask: np.ndarray  # (Y, X) bool
    start: str              # "prediction", "perturbed" or "empty"


def validation_objects(cases: list[InteractiveCase], count: int, seed: int = VALIDATION_SEED) -> list[ValidationObject]:
    """A fixed set of up to ``count`` objects of ``cases`` (at least ``MIN_VOXELS`` voxels),
    a third from each start (a prediction whose Dice is below 0.90, the reference
    perturbed with a seed of the object's own and redrawn until below 0.90, empty), the
    same for every epoch and run."""
    found: dict[str, list[ValidationObject]] = {kind: [] for kind in STARTS}
    for index, case in enumerate(cases):
        for z, value in case.present:
            reference = case.labels[z] == value
            if reference.sum() < MIN_VOXELS:
                continue
            for prediction in case.predictions:
                mask = prediction[z] == value
                if dice(mask, reference) < GOAL:
                    found["prediction"].append(ValidationObject(case, z, reference, mask, "prediction"))
            perturbed = _perturbed_start(reference, np.random.default_rng([seed, index, z, value]))
            if perturbed is not None:
                found["perturbed"].append(ValidationObject(case, z, reference, perturbed, "perturbed"))
            found["empty"].append(ValidationObject(case, z, reference, np.zeros_like(reference), "empty"))
    rng = np.random.default_rng(seed)
    kinds = [k for k in STARTS if found[k]]
    chosen: list[ValidationObject] = []
    for n, kind in enumerate(kinds):
        share = (count - len(chosen)) // (len(kinds) - n)
        picks = rng.permutation(len(found[kind]))[:share]
        chosen += [found[kind][int(i)] for i in sorted(picks)]
    return chosen


def _perturbed_start(reference: np.ndarray, rng: np.random.Generator, tries: int = 5) -> np.ndarray | None:
    """``perturb(reference, rng)`` redrawn (up to ``tries`` times) until its Dice is below
    0.90, None if never: the reviewer clicks only objects below 0.90, as ``bench clicks``
    does, so a start already there would count 0 clicks and skew NoC@90."""
    for _ in range(tries):
        mask = perturb(reference, rng)
        if dice(mask, reference) < GOAL:
            return mask
    return None


def dice(mask: np.ndarray, reference: np.ndarray) -> float:
    """2 |M n R| / (|M| + |R|); 1 when both are empty."""
    total = int(mask.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((mask & reference).sum()) / total


def review(model: torch.nn.Module, objects: list[ValidationObject], preprocessing: dict, device: torch.device,
           max_clicks: int = 20, amp: bool = False, batch_size: int = 64) -> list[list[float]]:
    """The simulated reviewer on each object, all objects' clicks in batches: Dice after
    each click (the start's first), stopping at Dice >= 0.90, ``max_clicks`` or agreement;
    clicks at the largest error's farthest point (``error_click`` without chance)."""
    masks = [o.start_mask.copy() for o in objects]
    clicks: list[list[Click]] = [[] for _ in objects]
    traces = [[dice(m, o.reference)] for m, o in zip(masks, objects)]
    was_training = model.training
    model.eval()
    for _ in range(max_clicks):
        active = []
        for n, obj in enumerate(objects):
            if traces[n][-1] >= GOAL:
                continue
            click = error_click(masks[n], obj.reference)
            if click is not None:
                clicks[n].append(click)
                active.append(n)
        if not active:
            break
        for start in range(0, len(active), batch_size):
            chunk = active[start:start + batch_size]
            items = [(objects[n].case.image, objects[n].z, masks[n], clicks[n], objects[n].case.pixel_size)
                     for n in chunk]
            answers = refine_batch(model, items, preprocessing, device, amp)
            for n, (box, inside) in zip(chunk, answers):
                masks[n][box] = inside
                traces[n].append(dice(masks[n], objects[n].reference))
    model.train(was_training)
    return traces


def review_summary(traces: list[list[float]], max_clicks: int = 20) -> dict[str, float]:
    """Mean Dice after 1, 3, 5 clicks (the last one where the reviewer stopped), NoC@85 and
    NoC@90 (``max_clicks`` where never reached), the share never reaching 0.90, the share
    of clicks that lowered the Dice; NaN without objects."""
    if not traces:
        nan = float("nan")
        return dict(dice_1=nan, dice_3=nan, dice_5=nan, noc85=nan, noc90=nan, never90=nan, lowering=nan,
                    objects=0)

    def noc(trace, goal):
        return next((k for k, d in enumerate(trace) if d >= goal), max_clicks)

    clicks = sum(len(t) - 1 for t in traces)
    lowered = sum(after < before for t in traces for before, after in zip(t, t[1:]))
    return {"dice_1": float(np.mean([t[min(1, len(t) - 1)] for t in traces])),
            "dice_3": float(np.mean([t[min(3, len(t) - 1)] for t in traces])),
            "dice_5": float(np.mean([t[min(5, len(t) - 1)] for t in traces])),
            "noc85": float(np.mean([noc(t, 0.85) for t in traces])),
            "noc90": float(np.mean([noc(t, GOAL) for t in traces])),
            "never90": float(np.mean([max(t) < GOAL for t in traces])),
            "lowering": lowered / clicks if clicks else 0.0,
            "objects": len(traces)}


# -- the run ------------------------------------------------------------------------------

def interactive_cases(datasets: list[Dataset], from_models: tuple[str, ...] = (), device=None,
                      progress: Callable[[int, int, str], None] | None = None,
                      notes: list[str] | None = None) -> list[InteractiveCase]:
    """The cases of ``datasets`` with the predictions of each checkpoint of ``from_models``
    whose classes (names, in order) are the dataset's; the others are skipped there (said
    in ``notes``). Raises CheckpointError for a checkpoint that cannot be used, or that
    fits none of the datasets (its predictions would start nothing)."""
    from .inference import Predictor

    predictors = [(Path(p), Predictor.from_checkpoint(p, device)) for p in from_models]
    fitting_by_dataset = [[(path, p) for path, p in predictors
                           if [c.name.lower() for c in p.classes] == [c.name.lower() for c in dataset.classes]]
                          for dataset in datasets]
    for path, predictor in predictors:
        if not any((path, predictor) in fitting for fitting in fitting_by_dataset):
            raise CheckpointError(f"--from-model {path.name} predicts "
                                  f"{', '.join(c.name for c in predictor.classes[1:])}, the classes of none of "
                                  f"the datasets ({'; '.join(d.name or d.source for d in datasets)}): "
                                  "its predictions cannot start a correction there")
    cases: list[InteractiveCase] = []
    seen: set[str] = set()
    for group, (dataset, fitting) in enumerate(zip(datasets, fitting_by_dataset)):
        if notes is not None:
            notes += [f"{path.name} predicts other classes than {dataset.name or dataset.source}; not used there"
                      for path, p in predictors if (path, p) not in fitting]
        for n, case in enumerate(dataset.cases):
            if progress:
                progress(n, len(dataset.cases), f"{case.name}: {len(fitting)} predictions")
            name = case.name if case.name not in seen else f"{group}:{case.name}"
            seen.add(name)
            predictions = [p.predict_volume(case.volume) for _, p in fitting]
            cases.append(InteractiveCase(name, case.volume.array.astype(np.float32), case.labels.astype(np.uint8),
                                         predictions, group, slice_pixel_size(case.volume.spacing)))
    return cases


def train_interactive(config: InteractiveConfig, datasets: list[Dataset], progress: ProgressCallback | None = None,
                      resume: bool = False, should_stop: Callable[[], bool] | None = None,
                      data_progress: Callable[[int, int, str], None] | None = None,
                      given: Collection[str] | None = None) -> TrainResult:
    """Train the click model on ``datasets`` (one or several: the model is class-agnostic,
    each dataset's cases are split on their own and draws are balanced over datasets).
    ``progress`` as ``train``'s (the epoch rows have this module's ``LOG_COLUMNS``).
    Raises DatasetError, CheckpointError (``from_models``, ``init``), TrainingInterrupted
    on Ctrl-C and TrainingCancelled when ``should_stop()`` says stop. ``resume`` and
    ``given`` as ``train``'s."""
    rank, world = _start_distributed(config)
    device = _device(config)
    output = Path(config.output)  # made once the data and the parent are known good
    state = _read_state(output / STATE_FILE) if resume else None
    notes: list[str] = []
    resumed = resume_note(state, config, world, given) if state is not None else None  # not in the metadata
    if state is not None:
        config = _resumed_config(state, config, given)
        if (finished := _finished_result(state, config.epochs, output, progress, rank, world)) is not None:
            return finished
    if not datasets or not any(d.cases for d in datasets):
        raise DatasetError("no case to train the click model on")
    cases = interactive_cases(datasets, config.from_models, device, data_progress, notes)
    if progress is not None and rank == 0:
        for note in filter(None, [*notes, cpu_share_note(device), resumed]):  # ``notes`` go in the metadata too
            progress({"note": note})
    if state is not None:
        split = state["split"]
    else:
        split = {"train": [], "validation": []}
        for index in range(len(datasets)):
            train_names, held_out = split_cases([c.name for c in cases if c.group == index],
                                                config.validation_fraction, config.seed)
            split["train"] += train_names
            split["validation"] += held_out
    train_cases = [c for c in cases if c.name in set(split["train"])]
    validation = validation_objects([c for c in cases if c.name in set(split["validation"])],
                                    config.validation_objects)

    torch.manual_seed(config.seed)
    parent = None
    if config.init:
        model, parent = load_checkpoint(config.init)
        check_interactive(parent, Path(config.init).name)
        # A parent trained before the focus crop is fine-tuned on it (its runtime's focus_size).
        preprocessing = {**parent["preprocessing"], "crop": {**parent["preprocessing"]["crop"],
                                                             "focus_size": focus_size_of(parent["preprocessing"])}}
        config.input_size = int(preprocessing["input_size"][0])
    else:
        model = UNet(CHANNELS, 2, config.base_channels, config.depth, config.norm)
        preprocessing = {**PREPROCESSING, "input_size": [config.input_size, config.input_size]}
    amp = device.type == "cuda" or (device.type == "cpu" and config.cpu_bf16 and _cpu_has_bf16())
    simulation = ClickSimulation(train_cases, config, preprocessing, device, amp)
    output.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    meta: dict[str, Any] = {
        "task": TASK,
        "classes": classes_to_metadata(named_classes(["background", "class"])),
        "loss": {"name": config.loss, "alpha": config.alpha},
        "preprocessing": preprocessing,
        "training": {"datasets": [d.summary() for d in datasets], "split": split, "optimizer": "Adam",
                     "config": _config_json(config), "world_size": world, "device": str(device),
                     "autocast": "bf16" if amp else None, "notes": notes,
                     "from_models": [{"name": Path(p).name, "sha256": file_sha256(Path(p))}
                                     for p in config.from_models],
                     "parent": None if parent is None else {"name": Path(str(config.init)).name,
                                                            "sha256": file_sha256(Path(str(config.init)))},
                     "recipe": _recipe(config, any(c.predictions for c in cases))},
    }
    history: list[dict] = []
    start_epoch, best_score, best_epoch = 0, -math.inf, -1
    if state is not None:
        _restore(state, model, optimizer)
        history, start_epoch = state["history"], state["next_epoch"]
        best_score, best_epoch = state["best_dice"], state["best_epoch"]
    model.to(device)
    _move_optimizer(optimizer, device)
    if amp:
        # Module.to accepts memory_format (torch's docs); its overload stubs omit it.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    network: torch.nn.Module = model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_function = build_loss(config.loss, config.alpha).to(device)

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            lr = SCHEDULES[config.schedule](config.lr, epoch, config.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rng = np.random.default_rng([config.seed, epoch, rank])
            train_loss, seen = _train_epoch(network, model, optimizer, loss_function, simulation, config, epoch,
                                            rank, world, device, amp, rng, progress, should_stop)
            if rank == 0:
                traces = review(model, validation, preprocessing, device, config.validation_clicks, amp)
                figures = review_summary(traces, config.validation_clicks)
                seconds = time.perf_counter() - started
                row = {"epoch": epoch + 1, "train_loss": train_loss, **{f"val_{k}": v for k, v in figures.items()},
                       "lr": lr, "seconds": seconds, "samples_per_second": seen * world / max(seconds, 1e-9)}
                history.append(row)
                meta["validation"] = {**figures, "epoch": epoch + 1, "selected_by": SELECTED_BY,
                                      "max_clicks": config.validation_clicks, "goal": GOAL,
                                      "by_start": _by_start(validation, traces, config.validation_clicks)}
                meta["training"]["epochs"] = epoch + 1
                save_checkpoint(output / "last.safetensors", model, meta)
                score = row[SELECTED_BY] if not math.isnan(row[SELECTED_BY]) else -row["train_loss"]
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    save_checkpoint(output / "best.safetensors", model, meta)
                _write_log(output / "log.csv", history, LOG_COLUMNS)
                _plot(output / "curves.png", history,
                      scores=(("val_dice_1", "Dice after 1 click"), ("val_dice_3", "after 3"),
                              ("val_dice_5", "after 5")),
                      score_label="simulated reviewer, held-out cases", counts=("val_noc90", "NoC@90"))
                _write_state(output / STATE_FILE, model, optimizer, config, split, history, epoch + 1,
                             best_score, best_epoch, world)
                if progress:
                    progress(dict(row))
            _barrier(world)
    except KeyboardInterrupt:  # the state of the last epoch completed stays (TrainingInterrupted)
        raise TrainingInterrupted(output / STATE_FILE, epoch) from None
    finally:
        _stop_distributed(world)
    return TrainResult(output, best_score, best_epoch, history)


def _train_epoch(network, model, optimizer, loss_function, simulation: ClickSimulation, config: InteractiveConfig,
                 epoch: int, rank: int, world: int, device: torch.device, amp: bool, rng: np.random.Generator,
                 progress, should_stop) -> tuple[float, int]:
    network.train()
    batch = config.batch_size
    steps = max(config.samples_per_epoch // (batch * world), 1)
    total, seen = 0.0, 0
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"cancelled in epoch {epoch + 1}")
        x, y = simulation.batch(model, rng, batch)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = network(x)
        loss = loss_function(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        seen += len(x)
        if progress and rank == 0:
            progress({"epoch": epoch, "epochs": config.epochs, "step": step + 1, "steps": steps,
                      "loss": total / seen})
    return total / max(seen, 1), seen


def _by_start(objects: list[ValidationObject], traces: list[list[float]], max_clicks: int) -> dict:
    return {kind: review_summary([t for o, t in zip(objects, traces) if o.start == kind], max_clicks)
            for kind in STARTS if any(o.start == kind for o in objects)}


def _recipe(config: InteractiveConfig, predictions: bool) -> dict:
    shares = {k: v for k, v in START_SHARES.items() if predictions or k != "prediction"}
    total = sum(shares.values())
    return {"objects": f"a class on a slice, at least {MIN_TRAIN_PIXELS} pixels; absent (false positives to "
                       f"clear: a checkpoint's or a blob) {config.absent_share:g} of the time",
            "starts": {k: round(v / total, 3) for k, v in shares.items()},
            "perturbations": [f.__name__.strip("_") for f in _PERTURBATIONS] + ["one or two of them"],
            "first_click": "error_click drawn by the squared distance from the largest error's boundary",
            "rounds": f"0-{config.max_rounds} without gradients on the network's own errors (eval mode)",
            "drop_mask": config.drop_mask,
            "augmentation": "flips, transposition, gamma 0.7-1.4, noise up to 0.03" if config.augment else None,
            "crop": "interactive.prepare: as ClickModel.refine"}


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (oneDNN says so for AMX and AVX512-BF16)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


__all__ = ["ClickSimulation", "InteractiveCase", "InteractiveConfig", "LOG_COLUMNS", "SELECTED_BY",
           "ValidationObject", "interactive_cases", "perturb", "refine_batch", "review", "review_summary",
           "train_interactive", "validation_objects"]
