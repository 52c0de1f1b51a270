"""Clinical measures read from label volumes: class volumes, cardiac volumes and mass, the
share of the lungs that is infected; distances in mm and statistics of a region.

Volumes count voxels times the voxel volume (the product of the spacing, mm³; 1 mL =
1000 mm³), as ITK-SNAP and 3D Slicer's Segment Statistics do. Classes are found by their
names, so the measures work for any label file whose classes are named as radiologists
name them (ACDC's "LV", "RV", "MYO" included).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import SimpleITK as sitk

from .classes import LabelClass
from .volume import Volume

__all__ = [
    "LUNG_HU_RANGE",
    "MYOCARDIAL_DENSITY_G_PER_ML",
    "MEASURE_BLOCK",
    "CardiacMeasures",
    "ClinicalMeasures",
    "LungMeasures",
    "RegionStatistics",
    "cardiac_measures",
    "class_volumes_ml",
    "clinical_measures",
    "distance_mm",
    "find_class",
    "lung_mask_from_ct",
    "lung_measures",
    "lungs_from_ct_needed",
    "measure_slices",
    "region_statistics",
]

#: Density of myocardium (g/mL) by which cardiac MRI turns myocardial volume into mass.
MYOCARDIAL_DENSITY_G_PER_ML = 1.05
#: Aerated lung in CT (HU); denser lung (ground glass, consolidation) joins through the labels.
LUNG_HU_RANGE = (-1000.0, -300.0)
#: Slices counted at a time by ``measure_slices``: a count over a whole volume holds the
#: GIL for a noticeable time (numpy's bincount), a block's for milliseconds.
MEASURE_BLOCK = 16

_ALIASES = {
    "left ventricle": ("left ventricle", "lv", "left ventricle cavity", "lv cavity", "lv blood pool"),
    "right ventricle": ("right ventricle", "rv", "right ventricle cavity", "rv cavity", "rv blood pool"),
    "myocardium": ("myocardium", "myo", "lv myocardium", "left ventricular myocardium"),
    "lung": ("lung", "lungs", "left lung", "right lung"),
    "infection": ("infection", "infected", "lesion", "lesions", "covid-19 infection", "ground-glass opacity",
                  "ggo", "consolidation"),
}


def class_volumes_ml(labels: np.ndarray, num_classes: int, spacing) -> np.ndarray:
    """Volume of each class in mL, shape (num_classes,). ``labels`` (z, y, x) integer,
    ``spacing`` (x, y, z) mm. Raises ValueError for values outside 0 .. num_classes - 1."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"the labels hold values outside 0 .. {num_classes - 1}")
    counts = np.bincount(labels.ravel().astype(np.intp), minlength=num_classes)
    return counts * _voxel_ml(spacing)


def _voxel_ml(spacing) -> float:
    return float(np.prod(np.asarray(spacing, float))) / 1000.0


def find_class(classes, role: str) -> list[int]:
    """The values of the classes whose name means ``role`` (a key of the aliases: "left
    ventricle", "right ventricle", "myocardium", "lung", "infection"), case-insensitive."""
    names = _ALIASES[role]
    return [c.value for c in classes if c.name.strip().lower() in names]


@dataclass(frozen=True)
class CardiacMeasures:
    """Volumes (mL) of the left and right ventricular blood pools and the myocardium; the
    myocardial mass (g) at 1.05 g/mL. Volumes of one phase (e.g. end-diastole)."""

    lv_blood_ml: float
    rv_blood_ml: float
    myocardium_ml: float

    @property
    def myocardial_mass_g(self) -> float:
        return self.myocardium_ml * MYOCARDIAL_DENSITY_G_PER_ML


def cardiac_measures(labels: np.ndarray, classes, spacing) -> CardiacMeasures | None:
    """LV and RV blood volume and myocardial volume of a short-axis label volume (z, y, x),
    ``spacing`` (x, y, z) mm; None unless ``classes`` name a left ventricle, a right
    ventricle and a myocardium."""
    return _measure_all(labels, classes, spacing).cardiac


@dataclass(frozen=True)
class LungMeasures:
    """Lung volume (mL, infected parts included), infected volume (mL) and its share of
    the lungs (%); ``lung_source`` says where the lungs came from: "lung class" or
    "HU threshold" (``lung_mask_from_ct``)."""

    lung_ml: float
    infected_ml: float
    lung_source: str

    @property
    def infected_percent(self) -> float:
        return 100.0 * self.infected_ml / self.lung_ml if self.lung_ml > 0 else float("nan")


def lung_measures(labels: np.ndarray, classes, spacing, image_hu: np.ndarray | None = None,
                  lung_mask: np.ndarray | None = None) -> LungMeasures | None:
    """Infected volume as a share of lung volume. The lungs are the lung class(es) when
    ``classes`` name one, else ``lung_mask`` if given (``lung_mask_from_ct`` found once for
    several label maps of one CT), else ``lung_mask_from_ct(image_hu, spacing)``; infected
    voxels count as lung either way (consolidation is too dense for the HU threshold).

    ``labels`` (z, y, x), ``image_hu`` the CT in HU on the same grid, ``spacing`` (x, y, z)
    mm. None unless ``classes`` name an infection. Raises ValueError when the labels have
    no lung class and neither a mask nor a CT is given, or their shape differs from the labels'."""
    if not find_class(classes, "infection"):
        return None
    labels = np.asarray(labels)
    if lung_mask is None and _lungs_need_a_mask(classes):
        if image_hu is None:
            raise ValueError("the labels have no lung class: the lungs need the CT image in HU")
        lung_mask = _lungs_in_ct(image_hu, labels, spacing)
    return _measure_all(labels, classes, spacing, lung_mask).lung


def lungs_from_ct_needed(classes, modality: str | None) -> bool:
    """Whether the infected share needs the lungs found in the image (``lung_mask_from_ct``):
    a CT whose classes name an infection but no lung."""
    return modality == "CT" and _lungs_need_a_mask(classes)


def _lungs_need_a_mask(classes) -> bool:
    """Whether the infected share needs the lungs from a mask (given, or found in the CT):
    the classes name an infection but no lung."""
    return bool(find_class(classes, "infection")) and not find_class(classes, "lung")


def _lungs_in_ct(image_hu, labels: np.ndarray, spacing) -> np.ndarray:
    return lung_mask_from_ct(_same_grid(np.asarray(image_hu), labels, "CT"), spacing)


@dataclass(frozen=True)
class ClinicalMeasures:
    """What ``measure_slices`` finds: ``volumes_ml`` (mL of each class value, index = value),
    the cardiac measures when the classes are cardiac and the lung measures when they name an
    infection and the lungs are known (else None)."""

    volumes_ml: np.ndarray
    cardiac: CardiacMeasures | None
    lung: LungMeasures | None


def measure_slices(labels: np.ndarray, classes, spacing, slices=None, lung_mask: np.ndarray | None = None,
                   should_stop: Callable[[], bool] | None = None) -> ClinicalMeasures | None:
    """Class volumes, cardiac and lung measures of ``labels`` (z, y, x) over ``slices`` (a
    (Z,) bool mask or indices; default all): the one count behind ``clinical_measures``
    (``segview evaluate``), ``cardiac_measures``, ``lung_measures`` and the window's
    measures dock. Voxels are counted ``MEASURE_BLOCK`` slices at a time and turned into mL
    once, so a volume counted in blocks gives the figures of one count. ``should_stop()``
    is asked between blocks; None when it says so.

    ``volumes_ml`` covers the values of ``classes`` and any higher value found. The lungs
    are the lung class(es) when ``classes`` name one, else ``lung_mask`` ((z, y, x) bool,
    the labels' shape), else unknown (``lung`` None). ``spacing`` (x, y, z) mm."""
    labels = np.asarray(labels)
    chosen = np.arange(len(labels))[slice(None) if slices is None else slices]
    infection, lung_values = find_class(classes, "infection"), find_class(classes, "lung")
    mask = None
    if lung_mask is not None and _lungs_need_a_mask(classes):
        mask = _same_grid(np.asarray(lung_mask, bool), labels, "lung mask")
    counts = np.zeros(max((c.value for c in classes), default=0) + 1, np.int64)
    masked_lung_voxels = 0  # lungs from the mask, infected voxels outside it included
    for start in range(0, len(chosen), MEASURE_BLOCK):
        if should_stop is not None and should_stop():
            return None
        block_slices = chosen[start:start + MEASURE_BLOCK]
        block = labels[block_slices]
        counts = _add_counts(counts, np.bincount(block.ravel().astype(np.intp)))
        if mask is not None:
            masked_lung_voxels += int(np.count_nonzero(mask[block_slices] | np.isin(block, infection)))
    voxel = _voxel_ml(spacing)
    return ClinicalMeasures(counts * voxel, _cardiac_from_counts(counts, classes, voxel),
                            _lung_from_counts(counts, infection, lung_values, masked_lung_voxels, mask is not None,
                                              voxel))


def _measure_all(labels: np.ndarray, classes, spacing, lung_mask: np.ndarray | None = None) -> ClinicalMeasures:
    """``measure_slices`` over every slice, never stopped."""
    found = measure_slices(labels, classes, spacing, lung_mask=lung_mask)
    assert found is not None
    return found


def _add_counts(total: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``total`` plus ``block`` (voxels per value), the longer of the two."""
    if len(block) > len(total):
        total = np.pad(total, (0, len(block) - len(total)))
    total[:len(block)] += block
    return total


def _cardiac_from_counts(counts: np.ndarray, classes, voxel_ml: float) -> CardiacMeasures | None:
    roles = [find_class(classes, role) for role in ("left ventricle", "right ventricle", "myocardium")]
    if not all(roles):
        return None
    lv, rv, myo = (int(counts[values].sum()) * voxel_ml for values in roles)
    return CardiacMeasures(lv, rv, myo)


def _lung_from_counts(counts: np.ndarray, infection: list[int], lung_values: list[int], masked_lung_voxels: int,
                      masked: bool, voxel_ml: float) -> LungMeasures | None:
    """Class values are disjoint: the lung class and the infection add up to the lungs."""
    if not infection or not (lung_values or masked):
        return None
    infected = int(counts[infection].sum())
    if lung_values:
        return LungMeasures(float(int(counts[lung_values].sum()) + infected) * voxel_ml, float(infected) * voxel_ml,
                            "lung class")
    return LungMeasures(float(masked_lung_voxels) * voxel_ml, float(infected) * voxel_ml, "HU threshold")


def _same_grid(array: np.ndarray, labels: np.ndarray, what: str) -> np.ndarray:
    if array.shape != labels.shape:
        raise ValueError(f"the {what} {array.shape} and the labels {labels.shape} differ in shape")
    return array


def lung_mask_from_ct(image_hu: np.ndarray, spacing, closing_mm: float = 5.0) -> np.ndarray:
    """The aerated lungs of a chest CT, (z, y, x) bool, by threshold and connected components:

    1. voxels from -1000 to -300 HU (``LUNG_HU_RANGE``; below -1000 is air or padding);
    2. 3D components (face-connected); those touching the in-plane edge of the field of
       view are the air around the body and are dropped;
    3. the two largest remain (the lungs, or both lungs joined at the carina as one); the
       second is kept only if at least a tenth of the first, so bowel gas or a tube is not
       taken for a lung;
    4. a closing by ``closing_mm`` and a filling of holes in each slice put the vessels
       and airway walls inside the lungs back.

    ``spacing`` (x, y, z) mm. Assumes a chest CT whose body lies inside the field of view.
    Pleural effusion and dense consolidation are left out (add the labels' infection)."""
    low, high = LUNG_HU_RANGE
    air = (np.asarray(image_hu) >= low) & (np.asarray(image_hu) <= high)
    mask = sitk.GetImageFromArray(air.astype(np.uint8))
    mask.SetSpacing(tuple(float(s) for s in spacing))
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(mask, False))
    edge = np.unique(np.concatenate([components[:, 0].ravel(), components[:, -1].ravel(),
                                     components[:, :, 0].ravel(), components[:, :, -1].ravel()]))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    sizes[edge] = 0
    order = np.argsort(sizes)[::-1]
    keep = [order[0]] if sizes[order[0]] else []
    if len(order) > 1 and sizes[order[1]] and sizes[order[1]] >= 0.1 * sizes[order[0]]:
        keep.append(order[1])
    lungs = sitk.GetImageFromArray(np.isin(components, keep).astype(np.uint8))
    lungs.SetSpacing(tuple(float(s) for s in spacing))
    radius = [max(round(closing_mm / float(s)), 0) for s in spacing]
    if any(radius):
        lungs = sitk.BinaryMorphologicalClosing(lungs, radius, sitk.sitkBall)
    closed = sitk.GetArrayFromImage(lungs).astype(bool)
    for z in range(len(closed)):  # vessels are open tubes in 3D, closed holes in a slice
        plane = sitk.GetImageFromArray(closed[z].astype(np.uint8))
        closed[z] = sitk.GetArrayFromImage(sitk.BinaryFillhole(plane)).astype(bool)
    return closed


def clinical_measures(labels: np.ndarray, classes: list[LabelClass], spacing,
                      image_hu: np.ndarray | None = None, prefix: str = "",
                      lung_mask: np.ndarray | None = None) -> dict[str, float]:
    """Every measure that applies, flat for a CSV row or a table: ``volume_<class>_ml`` for
    every foreground class, ``lv_blood_ml``, ``rv_blood_ml``, ``myocardial_mass_g`` when the
    classes are cardiac, ``lung_ml``, ``infected_ml``, ``infected_percent`` when they name an
    infection and the lungs are known (a lung class, ``lung_mask`` or the CT ``image_hu``,
    see ``lung_measures``). Keys start with ``prefix``. Raises ValueError for label values
    outside the classes'."""
    labels = np.asarray(labels)
    if lung_mask is None and image_hu is not None and _lungs_need_a_mask(classes):
        lung_mask = _lungs_in_ct(image_hu, labels, spacing)
    found = _measure_all(labels, classes, spacing, lung_mask)
    num_classes = max(c.value for c in classes) + 1
    if len(found.volumes_ml) > num_classes:
        raise ValueError(f"the labels hold values outside 0 .. {num_classes - 1}")
    out = {f"{prefix}volume_{_key(c.name)}_ml": float(found.volumes_ml[c.value]) for c in classes if c.value}
    cardiac = found.cardiac
    if cardiac:
        out.update({f"{prefix}lv_blood_ml": cardiac.lv_blood_ml, f"{prefix}rv_blood_ml": cardiac.rv_blood_ml,
                    f"{prefix}myocardial_mass_g": cardiac.myocardial_mass_g})
    lung = found.lung
    if lung:
        out.update({f"{prefix}lung_ml": lung.lung_ml, f"{prefix}infected_ml": lung.infected_ml,
                    f"{prefix}infected_percent": lung.infected_percent})
    return out


def _key(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split())


def distance_mm(volume: Volume, a, b) -> float:
    """Distance in mm between two (z, y, x) indices of ``volume`` (continuous indices
    allowed: a ruler's ends need not be voxel centres). Taken between the LPS points of the
    indices, so the direction cosines and an anisotropic spacing count as they should."""
    return float(np.linalg.norm(volume.index_to_physical(a) - volume.index_to_physical(b)))


@dataclass(frozen=True)
class RegionStatistics:
    """The image under a region: ``voxels``, ``volume_ml``, and the ``mean``, ``std``
    (sample, n - 1, as ITK's LabelStatisticsImageFilter; 0 for one voxel), ``median``,
    ``min`` and ``max`` of its values (HU for CT). An empty region has 0 voxels, 0 mL and
    NaN for the rest (``report``'s formatter writes a dash). Read as attributes or, like the
    dict a script may expect, by name: ``stats["mean"]``, ``dict(stats)``."""

    voxels: int
    volume_ml: float
    mean: float
    std: float
    median: float
    min: float
    max: float

    def keys(self) -> list[str]:
        return [f.name for f in fields(self)]

    def __getitem__(self, name: str):
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)


def region_statistics(image: np.ndarray, mask: np.ndarray, spacing) -> RegionStatistics:
    """Statistics of ``image`` where ``mask`` is true; both of one shape, a volume (z, y, x)
    or one slice of it. ``spacing`` is the voxel's (x, y, z) mm, all three even for a slice
    (its voxels keep their thickness). Raises ValueError when the shapes differ."""
    image, mask = np.asarray(image), np.asarray(mask, bool)
    if image.shape != mask.shape:
        raise ValueError(f"the image {image.shape} and the region {mask.shape} differ in shape")
    values = image[mask].astype(np.float64)  # float64: int16 HU sums would overflow
    n = int(values.size)
    if not n:
        nan = float("nan")
        return RegionStatistics(0, 0.0, nan, nan, nan, nan, nan)
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    return RegionStatistics(n, n * _voxel_ml(spacing), float(values.mean()), std, float(np.median(values)),
                            float(values.min()), float(values.max()))
