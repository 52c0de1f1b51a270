"""The simulated reviewer: the clicks a person would need to bring a mask to the reference,
one implementation for ``segview bench clicks`` and ``segview evaluate --robot``.

    model = ClickModel.from_checkpoint("interactive.safetensors")
    traces = review_case(volume.array, reference, start,
                         {"click model": click_corrector(model, volume.array, volume.spacing)})
    summarize(traces["click model"])          # NoC@85, NoC@90, Dice@1/3/5, never, lowering, latency

The rules (the field's, RITM and nnInteractive):

- An *object* is one class on one axial slice. It is reviewed when its starting Dice is below
  the goal (``GOAL``, 0.90) and it holds at least ``MIN_VOXELS`` voxels: the reference's
  voxels of that class on that slice or, where the reference has none, the start's (a false
  positive to clear). From an empty start that is every object of at least ``MIN_VOXELS``.
- Each object is corrected on its own, as the binary mask of its class; the other classes
  are neither read nor written.
- Each click is ``ml.interactive.error_click`` of the current mask against the reference:
  inside the largest error region (positive where missed, negative where extra), at its
  point farthest from its boundary. The corrector gets the current mask and every click of
  the interaction (the object's clicks so far) and returns the new mask. The reviewer stops
  at Dice >= the goal, after ``MAX_CLICKS`` clicks, or when the masks agree.
- NoC@g: the clicks until Dice >= g (0 when the start already is). An object that never
  gets there in ``MAX_CLICKS`` clicks counts ``MAX_CLICKS`` in the mean (RITM's rule) and as
  *never*; so every NoC mean is a lower bound where some objects never get there.
- Dice@k: after k clicks; where the reviewer stopped earlier, its last Dice (it stays).
- Lowering: the share of all clicks after which the object's Dice is lower than before.
- Latency: the corrector's wall time per click.

Correctors compared on the same objects with the same click rule, each on its own mask:

- ``click_corrector``: the interactive model (``ClickModel.refine``), writing inside its crop.
- ``brush_corrector``: the window's brush (``LabelMap.paint``): each click paints (positive)
  or erases a disk of ``BRUSH_RADIUS_MM`` (every voxel whose centre is within the radius, in
  mm on the slice's spacing) at the click.
- ``random_walker_corrector``: scikit-image's ``random_walker`` (Grady 2006) on the slice,
  inside a box drawn by the model's crop rule (``ml.interactive.crop_box`` with the default
  margin and minimum size) around every click of the interaction and the mask's regions
  near them (the model itself may crop around the last click only: its metadata's
  ``crop.around``), so every click is a seed. Seeds: each positive click
  (one pixel) the class; each negative click and the crop's border background, as
  nnInteractive's baselines bound a prompt by a box. It sees no previous mask (a classic
  method has no such input): the crop is replaced by its answer, outside it the mask stays;
  with no positive click yet, the crop is cleared. Default beta (130); the linear system is
  solved directly (mode "bf": the conjugate gradient did not converge on the noisy phantoms
  and took seconds per click).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..core.compare import bootstrap_interval
from ..core.labels import LabelMap
from ..core.volume import Volume, slice_pixel_size
from ..ml.interactive import PREPROCESSING, Click, crop_box, error_click, pixel_stretch

GOAL = 0.90
LEVELS = (0.85, 0.90)          # NoC@85, NoC@90
MAX_CLICKS = 20
MIN_VOXELS = 50
DICE_AFTER = (1, 3, 5)
BRUSH_RADIUS_MM = 5.0          # the window's default brush

#: corrector(mask, clicks) -> the new mask: (H, W) bool, every click of the interaction.
Corrector = Callable[[np.ndarray, list[Click]], np.ndarray]


def object_dice(mask: np.ndarray, reference: np.ndarray) -> float:
    """2 |M n R| / (|M| + |R|) of two bool arrays; 1 when both are empty (nothing to fix)."""
    total = int(mask.sum()) + int(reference.sum())
    return 1.0 if total == 0 else 2.0 * int((mask & reference).sum()) / total


@dataclass
class Trace:
    """One object reviewed by one corrector: ``dice[k]`` after k clicks (``dice[0]`` the
    start), the ``clicks`` given and the corrector's ``seconds`` per click."""
    case: str
    z: int
    value: int
    start: str
    dice: list[float]
    clicks: list[Click] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def clicks_to(self, goal: float = GOAL) -> int | None:
        """The clicks after which Dice first reached ``goal``; None: never."""
        return next((k for k, d in enumerate(self.dice) if d >= goal), None)

    def noc(self, goal: float = GOAL, cap: int = MAX_CLICKS) -> int:
        """NoC@goal, ``cap`` where it never got there (RITM's rule)."""
        found = self.clicks_to(goal)
        return cap if found is None else min(found, cap)

    def dice_after(self, clicks: int) -> float:
        return self.dice[min(clicks, len(self.dice) - 1)]

    @property
    def lowering(self) -> int:
        """Clicks after which Dice was lower than before."""
        return sum(after < before for before, after in zip(self.dice, self.dice[1:]))


def review_object(corrector: Corrector, start: np.ndarray, reference: np.ndarray, goal: float = GOAL,
                  max_clicks: int = MAX_CLICKS, clock: Callable[[], float] = time.perf_counter
                  ) -> tuple[list[float], list[Click], list[float]]:
    """Click at the largest error until Dice >= ``goal``, ``max_clicks`` or agreement:
    (Dice after each click, starting with the start's; the clicks; seconds per click).
    ``start`` and ``reference`` (H, W) bool; ``start`` is not changed."""
    mask = start.copy()
    dice = [object_dice(mask, reference)]
    clicks: list[Click] = []
    seconds: list[float] = []
    while dice[-1] < goal and len(clicks) < max_clicks:
        click = error_click(mask, reference)
        if click is None:  # agree (only below the goal when it is above 1)
            break
        clicks.append(click)
        began = clock()
        mask = np.asarray(corrector(mask, list(clicks)), bool)
        seconds.append(clock() - began)
        dice.append(object_dice(mask, reference))
    return dice, clicks, seconds


def objects(start: np.ndarray, reference: np.ndarray, slices: Iterable[int] | None = None, goal: float = GOAL,
            min_voxels: int = MIN_VOXELS) -> list[tuple[int, int]]:
    """(z, class value) of every object to review in ``start`` against ``reference``
    (Z, Y, X) labels, on ``slices`` (default all): starting Dice below ``goal``, at least
    ``min_voxels`` voxels (the reference's, or the start's where the reference has none)."""
    return [(z, value) for z, value, dice in _large_objects(start, reference, slices, min_voxels) if dice < goal]


def _large_objects(start: np.ndarray, reference: np.ndarray, slices: Iterable[int] | None,
                   min_voxels: int) -> list[tuple[int, int, float]]:
    """(z, class value, starting Dice) of every object of at least ``min_voxels`` voxels, whatever its Dice."""
    found = []
    for z in range(start.shape[0]) if slices is None else slices:
        z = int(z)
        values = np.union1d(np.unique(start[z]), np.unique(reference[z]))
        for value in (int(v) for v in values if v):
            mask, truth = start[z] == value, reference[z] == value
            size = int(truth.sum()) if truth.any() else int(mask.sum())
            if size >= min_voxels:
                found.append((z, value, object_dice(mask, truth)))
    return found


def review_case(volume_array: np.ndarray, reference: np.ndarray, start: np.ndarray,
                correctors: dict[str, Callable[[int], Corrector]], case: str = "", start_name: str = "",
                slices: Iterable[int] | None = None, goal: float = GOAL, max_clicks: int = MAX_CLICKS,
                min_voxels: int = MIN_VOXELS) -> dict[str, list[Trace]]:
    """Every object of ``start`` (``objects``) reviewed by each corrector: name -> traces.
    ``correctors``: name -> a factory of the corrector of slice z (``click_corrector(model,
    volume_array)`` and the like). Arrays (Z, Y, X): the image, reference and start labels."""
    traces: dict[str, list[Trace]] = {name: [] for name in correctors}
    for z, value in objects(start, reference, slices, goal, min_voxels):
        mask, truth = start[z] == value, reference[z] == value
        for name, factory in correctors.items():
            dice, clicks, seconds = review_object(factory(z), mask, truth, goal, max_clicks)
            traces[name].append(Trace(case, z, value, start_name, dice, clicks, seconds))
    return traces


# -- correctors ---------------------------------------------------------------------------

def click_corrector(model, volume_array: np.ndarray, spacing=None) -> Callable[[int], Corrector]:
    """The interactive model (``ml.interactive.ClickModel`` or anything with its
    ``refine(volume, z, mask, clicks, pixel_size=...) -> (box, mask inside box)``) on slice z
    of ``volume_array`` (Z, Y, X) of ``spacing`` (x, y, z) mm (None: square pixels)."""
    pixel_size = slice_pixel_size(spacing)

    def on_slice(z: int) -> Corrector:
        def correct(mask: np.ndarray, clicks: list[Click]) -> np.ndarray:
            box, inside = model.refine(volume_array, z, mask, clicks, pixel_size=pixel_size)
            out = mask.copy()
            out[box] = inside
            return out
        return correct
    return on_slice


def brush_corrector(spacing, radius_mm: float = BRUSH_RADIUS_MM) -> Callable[[int], Corrector]:
    """The window's brush (``LabelMap.paint``) of ``radius_mm`` at the last click, on voxels of
    ``spacing`` (x, y, z) mm: paints the class (positive) or erases it."""
    def on_slice(z: int) -> Corrector:
        def correct(mask: np.ndarray, clicks: list[Click]) -> np.ndarray:
            labels = LabelMap(mask[None].astype(np.uint8), spacing, history_bytes=0)
            click = clicks[-1]
            labels.paint(0, [(click.y, click.x)], radius_mm, int(click.positive))
            return labels.array[0] == 1
        return correct
    return on_slice


def random_walker_corrector(volume_array: np.ndarray, spacing=None, beta: float = 130.0) -> Callable[[int], Corrector]:
    """scikit-image's ``random_walker`` on slice z of ``volume_array`` (Z, Y, X) of ``spacing``
    (x, y, z) mm (None: square pixels) inside the model's crop, seeded by the clicks and the
    crop's border (see the module's text). Raises ImportError without scikit-image."""
    from skimage.segmentation import random_walker

    crop = PREPROCESSING["crop"]
    pixel_size = slice_pixel_size(spacing)
    # in pixels of the finer axis: square pixels walk as they did without a spacing
    stretch = None if pixel_size is None else tuple(pixel_stretch(pixel_size))

    def on_slice(z: int) -> Corrector:
        image = volume_array[z].astype(np.float64)

        def correct(mask: np.ndarray, clicks: list[Click]) -> np.ndarray:
            box = crop_box(mask.shape, clicks, mask, crop["margin"], crop["min_size"], pixel_size=pixel_size)
            out = mask.copy()
            if not any(c.positive for c in clicks):
                out[box] = False
                return out
            data = image[box]
            if not data.std():  # a flat image: nothing to walk on
                return out
            seeds = np.zeros(data.shape, np.int32)
            seeds[[0, -1], :] = seeds[:, [0, -1]] = 2
            for c in clicks:  # after the border: a click on it keeps its own label
                seeds[c.y - box[0].start, c.x - box[1].start] = 1 if c.positive else 2
            out[box] = random_walker(data, seeds, beta=beta, mode="bf", spacing=stretch) == 1
            return out
        return correct
    return on_slice


# -- figures ------------------------------------------------------------------------------

def summarize(traces: list[Trace], goal: float = GOAL) -> dict:
    """Figures of one corrector over ``traces``: ``objects``, ``noc`` {level: mean NoC,
    failures counted ``MAX_CLICKS``}, ``dice_after`` {k: mean Dice after k clicks}, ``never``
    (share never reaching ``goal``), ``clicks`` (given), ``lowering`` (share of clicks that
    lowered the Dice), ``p50`` and ``p95`` (seconds per click). NaN where nothing to count."""
    nan = float("nan")
    count = len(traces)
    clicks = sum(len(t.clicks) for t in traces)
    seconds = np.array([s for t in traces for s in t.seconds], float)
    return {"objects": count,
            "noc": {level: float(np.mean([t.noc(level) for t in traces])) if count else nan for level in LEVELS},
            "dice_after": {k: float(np.mean([t.dice_after(k) for t in traces])) if count else nan
                           for k in DICE_AFTER},
            "never": float(np.mean([t.clicks_to(goal) is None for t in traces])) if count else nan,
            "clicks": clicks,
            "lowering": sum(t.lowering for t in traces) / clicks if clicks else nan,
            "p50": float(np.percentile(seconds, 50)) if seconds.size else nan,
            "p95": float(np.percentile(seconds, 95)) if seconds.size else nan}


def noc_interval(traces: list[Trace], goal: float = GOAL) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean NoC@``goal`` over ``traces``, resampling
    whole cases (the objects of one image are not independent of each other): each resample
    draws as many cases as there are and takes the mean over all their objects
    (``core.compare.bootstrap_interval`` of the cases' sums weighted by their objects).
    (NaN, NaN) for none."""
    cases = sorted({t.case for t in traces})
    sums = [sum(t.noc(goal) for t in traces if t.case == case) for case in cases]
    counts = [sum(t.case == case for t in traces) for case in cases]
    return bootstrap_interval(sums, weights=counts)


#: Why a case has no clicks to count (``CaseClicks.count`` None): said in the reports.
NOTHING_TO_CLICK = f"no object of at least {MIN_VOXELS} voxels to click on"


@dataclass
class CaseClicks:
    """The reviewer's effort on one case: ``clicks`` (the sum of every object's NoC@goal,
    failures counted ``MAX_CLICKS``), ``objects`` reviewed, ``never`` (objects that never
    reached the goal), ``large`` (objects of at least ``MIN_VOXELS`` voxels, whatever their
    Dice: those the reviewer would click on below the goal)."""
    clicks: int
    objects: int
    never: int
    large: int

    @property
    def count(self) -> int | None:
        """``clicks`` as the case's figure: None where no object was large enough to click
        on (its 0 clicks read as "needed no correction" beside a model that predicted
        nothing of a few small lesions)."""
        return self.clicks if self.large else None


def clicks_to_goal(model, volume: Volume, reference: np.ndarray, start: np.ndarray,
                   slices: Iterable[int] | None = None, goal: float = GOAL) -> CaseClicks:
    """The clicks the interactive ``model`` needs to bring ``start`` (a model's prediction,
    (Z, Y, X) labels) to Dice ``goal`` on every object of ``slices`` (default all) of
    ``volume``: the verdict of ``segview evaluate --robot`` in the reviewer's effort."""
    slices = None if slices is None else [int(z) for z in slices]
    corrector = click_corrector(model, volume.array, volume.spacing)
    traces = review_case(volume.array, reference, start, {"model": corrector}, slices=slices, goal=goal)["model"]
    return CaseClicks(sum(t.noc(goal) for t in traces), len(traces), sum(t.clicks_to(goal) is None for t in traces),
                      len(_large_objects(start, reference, slices, MIN_VOXELS)))


def verdict_robot(model) -> Callable[[Volume, np.ndarray, np.ndarray, np.ndarray], int | None]:
    """``session.verdict.reviewed_verdict``'s ``robot``: (volume, labels, prediction, reviewed)
    -> the clicks of ``clicks_to_goal`` over the reviewed slices (``CaseClicks.count``:
    None where no object there is large enough to click on)."""
    def clicks(volume, labels, prediction, reviewed) -> int | None:
        return clicks_to_goal(model, volume, labels, prediction, np.flatnonzero(reviewed)).count
    return clicks
