"""Synthetic stand-ins for the paper's two tasks, deterministic for a seed and varied
across seeds (shape, size, position, contrast, noise).

- ``cardiac_phantom``: ACDC-style short-axis cine MRI (end-diastole): about 10 oblique
  slices of ~1.5 mm pixels, ~10 mm apart; classes 0 background, 1 right ventricle,
  2 myocardium, 3 left ventricle. Bright blood, a dark myocardial ring of varying
  thickness, a crescent RV, tissue texture, a smooth bias field, Rician noise; the
  structures shrink from base to apex.
- ``lung_phantom``: COVID-19-style chest CT in HU (int16): body outline, fat, muscle,
  bone, mediastinum, air-filled lungs around -850 HU with vessels; class 1 infection:
  ground-glass and consolidation lesions of varied size, several small ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .io import LabelClass
from .volume import CT_WINDOW_PRESETS, Volume

CARDIAC_CLASSES = (
    LabelClass(0, "background", (0, 0, 0)),
    LabelClass(1, "right ventricle", (66, 135, 245)),
    LabelClass(2, "myocardium", (80, 200, 120)),
    LabelClass(3, "left ventricle", (240, 80, 70)),
)
LUNG_CLASSES = (
    LabelClass(0, "background", (0, 0, 0)),
    LabelClass(1, "infection", (255, 170, 0)),
)


@dataclass
class Phantom:
    """A synthetic case: the image, its reference labels (Z, Y, X, uint8) and classes."""

    volume: Volume
    labels: np.ndarray
    classes: tuple[LabelClass, ...]
    task: str


def phantom_written(folder) -> dict:
    """What a dataset folder's dataset.json says of the phantoms ``segview phantom`` wrote
    there ({"task", "first_seed", "format"}; {} for a dataset of other images)."""
    try:
        found = json.loads((Path(folder) / "dataset.json").read_text(encoding="utf-8")).get("segview")
    except (OSError, ValueError, AttributeError):
        return {}
    return dict(found) if isinstance(found, dict) else {}


def make_phantom(task: str, seed: int = 0) -> Phantom:
    """``cardiac_phantom`` or ``lung_phantom`` by name."""
    makers = {"cardiac": cardiac_phantom, "lung": lung_phantom}
    if task not in makers:
        raise ValueError(f"unknown phantom {task!r}; choose from {sorted(makers)}")
    return makers[task](seed)


# -- shared pieces ---------------------------------------------------------------------

def _smooth_noise(rng: np.random.Generator, shape, sigma_px) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation (a texture field)."""
    image = sitk.GetImageFromArray(rng.standard_normal(shape).astype(np.float32))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma_px))
    return smooth / max(float(smooth.std()), 1e-6)


def _blur_in_plane(array: np.ndarray, sigma_px: float) -> np.ndarray:
    """Partial-volume blur within each slice."""
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((1.0, 1.0, 1e6))  # a huge slice spacing keeps the blur in-plane
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, (sigma_px, sigma_px, 1e-3)))


def _ellipse(x, y, cx, cy, ax, ay, angle=0.0, wobble=None) -> np.ndarray:
    """Boolean mask of a rotated ellipse; ``wobble(theta)`` perturbs its radius."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = (x - cx) * c + (y - cy) * s, -(x - cx) * s + (y - cy) * c
    r = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    if wobble is not None:
        r = r / wobble(np.arctan2(v, u))
    return r < 1.0


def _wobble(rng: np.random.Generator, amplitude: float):
    """A smooth random radius modulation 1 + sum a_k cos(k theta + phi_k), k = 2..4."""
    a = rng.uniform(0, amplitude, 3)
    phi = rng.uniform(0, 2 * np.pi, 3)
    return lambda theta: 1 + sum(a[i] * np.cos((i + 2) * theta + phi[i]) for i in range(3))


def _short_axis_direction(rng: np.random.Generator) -> np.ndarray:
    """A right-handed, oblique short-axis direction matrix: its third column is the
    heart's long axis (base to apex: toward the patient's left, anterior and inferior),
    its first column lies near the patient's left within the slice plane."""
    n = np.array([0.55, -0.5, -0.65]) + rng.normal(0, 0.08, 3)
    n /= np.linalg.norm(n)
    r = np.array([1.0, 0, 0]) + rng.normal(0, 0.1, 3)
    r -= (r @ n) * n
    r /= np.linalg.norm(r)
    return np.column_stack([r, np.cross(n, r), n])


def _in_plane_angle(direction: np.ndarray, lps_vector) -> float:
    """The angle, in the slice's (column, row) coordinates, of an LPS direction."""
    v = np.asarray(lps_vector, float)
    return float(np.arctan2(v @ direction[:, 1], v @ direction[:, 0]))


# -- cardiac MRI -----------------------------------------------------------------------

def cardiac_phantom(seed: int = 0) -> Phantom:
    """ACDC-style short-axis cine MRI at end-diastole (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_slices = int(rng.integers(8, 13))
    size = int(rng.choice([192, 208, 224, 240, 256]))
    pixel = float(rng.uniform(1.3, 1.7))
    gap = float(rng.uniform(8.0, 10.0))
    half = size * pixel / 2
    mm = (np.arange(size) + 0.5) * pixel - half
    y, x = np.meshgrid(mm, mm, indexing="ij")

    labels = np.zeros((n_slices, size, size), np.uint8)
    tissue = np.zeros((n_slices, size, size), np.float32)
    # Patient-level anatomy, fixed along the stack.
    body_a, body_b = rng.uniform(0.78, 0.95) * half, rng.uniform(0.58, 0.72) * half
    heart_x, heart_y = rng.uniform(-15, 15), rng.uniform(-15, 15)
    direction = _short_axis_direction(rng)
    # The RV lies to the right of and in front of the LV; the liver to the right, below.
    rv_angle = _in_plane_angle(direction, (-1, -0.8, 0)) + rng.normal(0, 0.2)
    liver_angle = _in_plane_angle(direction, (-1, 0.3, -0.5))
    lv_radius = rng.uniform(19, 27)
    wall = rng.uniform(6, 10.5)
    septum_boost = rng.uniform(0.0, 0.35)
    lv_ecc, lv_angle = rng.uniform(0.85, 1.1), rng.uniform(0, np.pi)
    rv_length, rv_width = rng.uniform(1.4, 1.8), rng.uniform(0.8, 1.1)
    blood, myo = rng.uniform(0.8, 1.0), rng.uniform(0.2, 0.33)
    muscle, fat, lung = rng.uniform(0.3, 0.42), rng.uniform(0.7, 0.9), rng.uniform(0.03, 0.08)
    endo_wobble, epi_wobble, rv_wobble = (_wobble(rng, a) for a in (0.05, 0.04, 0.08))
    for k in range(n_slices):
        t = k / (n_slices - 1)  # 0 at the base, 1 at the apex
        cx, cy = heart_x + 4 * t * np.cos(rv_angle + np.pi), heart_y + 4 * t * np.sin(rv_angle + np.pi)
        r_endo = lv_radius * (1 - 0.75 * t ** 1.6)
        r_epi = r_endo + wall * (1 - 0.2 * t)
        theta = np.arctan2(y - cy, x - cx)
        thickness = 1 + septum_boost * np.cos(theta - rv_angle)  # thicker septum
        rr = np.hypot(x - cx, y - cy)
        lv = _ellipse(x, y, cx, cy, r_endo, r_endo * lv_ecc, lv_angle, endo_wobble)
        epi = rr < (r_endo + (r_epi - r_endo) * thickness) * epi_wobble(theta)
        epi |= lv
        # The RV: a crescent wrapped around the septal side, gone near the apex.
        labels[k][epi] = 2
        labels[k][lv] = 3
        rv_scale = max(0.0, 1 - 1.05 * t ** 1.5)
        rv_wall = np.zeros_like(lv)
        if rv_scale > 0.15:
            d = r_epi * 0.85
            rcx, rcy = cx + d * np.cos(rv_angle), cy + d * np.sin(rv_angle)
            radial, tangential = r_epi * rv_width * rv_scale + 6, r_epi * rv_length * rv_scale
            rv_outer = _ellipse(x, y, rcx, rcy, radial, tangential, rv_angle, rv_wobble)
            rv_wall = _ellipse(x, y, rcx, rcy, radial + 3, tangential + 3, rv_angle, rv_wobble)
            septal_wall = rr < (r_epi * 1.08 + 3) * epi_wobble(theta)
            labels[k][rv_outer & ~septal_wall] = 1
        # Surroundings: body, subcutaneous fat, lungs beside the heart, a liver below.
        body = _ellipse(x, y, 0, 0, body_a, body_b)
        inner = _ellipse(x, y, 0, 0, body_a - 12, body_b - 10)
        left_lung = _ellipse(x, y, cx - 70, cy + 10, 45, 70, 0.3)
        right_lung = _ellipse(x, y, cx + 80, cy + 5, 42, 68, -0.3)
        liver_d = 90 - 20 * t
        liver = _ellipse(x, y, cx + liver_d * np.cos(liver_angle), cy + liver_d * np.sin(liver_angle),
                         70 * (0.3 + t), 50 * (0.3 + t), liver_angle)
        slice_tissue = np.where(body, fat, 0.0)
        slice_tissue = np.where(inner, muscle, slice_tissue)
        slice_tissue = np.where(inner & (left_lung | right_lung), lung, slice_tissue)
        slice_tissue = np.where(inner & liver, muscle * 1.3, slice_tissue)
        # Epicardial fat (bright) around the heart, the thin RV free wall (dark, unlabelled).
        slice_tissue = np.where(rr < r_epi + 7, fat * 0.85, slice_tissue)
        slice_tissue = np.where(rv_wall, myo, slice_tissue)
        tissue[k] = slice_tissue
    texture = 1 + 0.08 * _smooth_noise(rng, tissue.shape, (3.0, 3.0, 0.5))
    image = np.where(labels == 2, myo, tissue) * texture
    image = np.where((labels == 1) | (labels == 3), blood * (1 + 0.03 * texture), image)
    image = _blur_in_plane(image, 0.7)
    # Coil sensitivity: a smooth multiplicative bias field.
    gx, gy = rng.uniform(-0.25, 0.25, 2)
    bias = 1 + gx * x / half + gy * y / half + rng.uniform(-0.15, 0.15) * (x ** 2 + y ** 2) / half ** 2
    image = image * bias[None].astype(np.float32)
    # Rician noise: the magnitude of complex Gaussian noise.
    sigma = rng.uniform(0.02, 0.05)
    real = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = sigma * rng.standard_normal(image.shape, dtype=np.float32)
    scale = rng.uniform(600, 1400)
    image = np.clip(np.hypot(real, imaginary) * scale, 0, 32767).astype(np.int16)

    extent = np.array([size * pixel, size * pixel, n_slices * gap])
    centre = np.array([20.0, -10.0, 30.0]) + rng.normal(0, 10, 3)
    origin = centre - direction @ (extent / 2 - np.array([pixel, pixel, gap]) / 2)
    volume = Volume(image, (pixel, pixel, gap), tuple(origin), tuple(direction.ravel()), "MR",
                    {"series_description": f"SA cine ED (cardiac phantom, seed {seed})",
                     "window_presets": [], "phantom": {"task": "cardiac", "seed": seed}})
    return Phantom(volume, labels, CARDIAC_CLASSES, "cardiac")


# -- lung CT ---------------------------------------------------------------------------

#: Where a lesion's label ends: at this share of the lesion's own contrast over the lung
#: around it (halfway). ``lung_phantom(seed, edge)`` draws the same lesions as a reader who
#: puts the edge tighter (0.6) or wider (0.4) would: the image is the same.
EDGE = 0.5


def lung_phantom(seed: int = 0, edge: float = EDGE) -> Phantom:
    """COVID-19-style chest CT in HU with infection labels (see the module docstring),
    labelled where each lesion reaches ``edge`` of its own contrast (``EDGE``)."""
    if not 0 < edge < 1:
        raise ValueError(f"the lesions' edge lies between 0 and 1 of their contrast, not {edge}")
    rng = np.random.default_rng(seed)
    size = 256
    n_slices = int(rng.integers(28, 41))
    pixel = float(rng.uniform(1.25, 1.5))
    gap = float(rng.uniform(5.0, 7.0))
    half = size * pixel / 2
    mm = (np.arange(size) + 0.5) * pixel - half
    y, x = np.meshgrid(mm, mm, indexing="ij")  # x toward patient left, y toward posterior
    z = np.linspace(0, 1, n_slices)[:, None, None]  # 0 at the bases, 1 at the apices
    x3, y3 = x[None], y[None]

    body_a = rng.uniform(0.75, 0.9) * half * (1 - 0.12 * z)
    body_b = rng.uniform(0.5, 0.62) * half * (1 - 0.08 * z)
    by = rng.uniform(-10, 5)
    fat_thickness = rng.uniform(8, 20)
    body = ((x3 / body_a) ** 2 + ((y3 - by) / body_b) ** 2) < 1
    inner = ((x3 / (body_a - fat_thickness)) ** 2 + ((y3 - by) / (body_b - fat_thickness)) ** 2) < 1
    hu = np.where(body, rng.uniform(-110, -80), -1000.0).astype(np.float32)
    hu = np.where(inner, rng.uniform(35, 55), hu)

    # Lungs: two lobulated ellipses that taper to the apices, minus the mediastinum and
    # the liver dome at the right base.
    taper = np.sqrt(np.clip(1 - z ** 2.5, 0.02, 1)) * np.clip(0.35 + 3 * z, 0, 1) ** 0.3
    lungs = np.zeros(body.shape, bool)
    for side in (-1, 1):
        cx = side * rng.uniform(0.42, 0.5) * body_a
        ax, ay = rng.uniform(0.3, 0.36) * body_a * taper, rng.uniform(0.72, 0.82) * body_b * taper
        wobble = _wobble(rng, 0.06)(np.arctan2(y3 - by, x3 - cx))
        lungs |= np.sqrt(((x3 - cx) / ax) ** 2 + ((y3 - by) / ay) ** 2) < wobble
    mediastinum = ((x3 / (0.22 * body_a)) ** 2 + ((y3 - by + 10) / (0.9 * body_b)) ** 2) < 1
    heart = (((x3 - 0.12 * body_a) / (0.3 * body_a * (1.2 - z))) ** 2
             + ((y3 - by + 0.35 * body_b) / (0.45 * body_b)) ** 2) < np.clip(1 - 2 * z, 0, 1)
    liver = (((x3 + 0.35 * body_a) / (0.55 * body_a)) ** 2 + ((y3 - by) / (0.8 * body_b)) ** 2
             + ((z + 0.15) / 0.35) ** 2) < 1
    lungs &= inner & ~mediastinum & ~heart & ~liver
    hu = np.where(mediastinum | heart | liver, rng.uniform(35, 60), hu)
    lung_hu = rng.uniform(-880, -820)
    parenchyma = lung_hu + 25 * _smooth_noise(rng, hu.shape, (4, 4, 1)) + 40 * (y3 - by) / body_b
    hu = np.where(lungs, parenchyma, hu)
    # Spine and ribs.
    spine = (x3 ** 2 + (y3 - by - 0.72 * body_b) ** 2) < (0.09 * body_a) ** 2
    hu = np.where(spine & body, rng.uniform(250, 400), hu)
    for angle in rng.uniform(0.2, np.pi - 0.2, 7):
        rx = (body_a - fat_thickness - 4) * np.cos(angle + 0.3 * z)
        ry = by - (body_b - fat_thickness - 4) * np.sin(angle + 0.3 * z) * np.sign(np.cos(3 * angle))
        hu = np.where(((x3 - rx) ** 2 + (y3 - ry) ** 2) < 36, 700.0, hu)
    # Trachea in the upper slices.
    trachea = (x3 ** 2 + (y3 - by + 0.2 * body_b) ** 2 < 81) & (z > 0.65)
    hu = np.where(trachea, -1000.0, hu)
    hu = np.where(lungs, hu + _vessels(rng, lungs, pixel, gap), hu)

    labels = np.zeros(hu.shape, np.uint8)
    fields = _smooth_noise(rng, hu.shape, (2, 2, 0.5)), _smooth_noise(rng, hu.shape, (1.5, 1.5, 0.5))
    for _ in range(int(rng.integers(2, 9))):
        hu = _add_lesion(rng, hu, labels, lungs, pixel, gap, fields, edge)

    hu = _blur_in_plane(hu, 0.6) + rng.uniform(8, 22) * rng.standard_normal(hu.shape, dtype=np.float32)
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    origin = (-half + pixel / 2, -half + pixel / 2 + rng.uniform(-20, 20), rng.uniform(-300, -150))
    volume = Volume(image, (pixel, pixel, gap), origin, modality="CT",
                    meta={"series_description": f"Chest CT (lung phantom, seed {seed})",
                          "window_presets": list(CT_WINDOW_PRESETS),
                          "phantom": {"task": "lung", "seed": seed}})
    return Phantom(volume, labels, LUNG_CLASSES, "lung")


def _vessels(rng: np.random.Generator, lungs: np.ndarray, pixel: float, gap: float) -> np.ndarray:
    """HU added by branching pulmonary vessels: random walks that start at the hila,
    branch and thin out toward the periphery, stamped as discs and slightly blurred."""
    shape = lungs.shape
    mask = np.zeros(shape, np.float32)
    walkers = []
    for side in (-1, 1):
        hilum = np.array([shape[0] * rng.uniform(0.4, 0.6), 0.45 * shape[1], (0.5 + side * 0.1) * shape[2]])
        for _ in range(8):
            heading = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), side * abs(rng.normal(1, 0.3))])
            walkers.append((hilum.copy(), heading, 3.5 / pixel + 1))
    step = np.array([pixel / gap, 1.0, 1.0]) * 2.0  # ~2 pixels a step, in index units
    stamped = 0
    while walkers and stamped < 6000:
        point, heading, radius = walkers.pop()
        for _ in range(int(rng.integers(15, 40))):
            heading = heading + rng.normal(0, 0.25, 3)
            heading /= np.linalg.norm(heading)
            point = point + heading * step
            k, j, i = np.round(point).astype(int)
            if not (0 <= k < shape[0] and 0 <= j < shape[1] and 0 <= i < shape[2]):
                break
            r = int(np.ceil(radius))
            j0, i0 = max(j - r, 0), max(i - r, 0)
            jj, ii = np.ogrid[j0:j + r + 1, i0:i + r + 1]
            disc = (jj - j) ** 2 + (ii - i) ** 2 <= radius ** 2
            mask[k, j0:j + r + 1, i0:i + r + 1][disc[: shape[1] - j0, : shape[2] - i0]] = 1
            stamped += 1
            radius = max(radius * 0.98, 0.7)
            if rng.random() < 0.12 and len(walkers) < 200:
                walkers.append((point.copy(), heading + rng.normal(0, 0.7, 3), radius * 0.8))
    return 880 * np.clip(_blur_in_plane(mask, 0.6), 0, 1)


def _add_lesion(rng: np.random.Generator, hu: np.ndarray, labels: np.ndarray, lungs: np.ndarray,
                pixel: float, gap: float, fields: tuple[np.ndarray, np.ndarray], edge: float = EDGE) -> np.ndarray:
    """One ground-glass or consolidation lesion, centred in the lung, preferring the
    periphery; labelled where it lies inside the lung and its blend into the lung reaches
    ``edge``. ``fields`` are two smooth noise volumes that lobulate its edge and texture
    its inside."""
    candidates = np.argwhere(lungs)
    if not len(candidates):
        return hu
    # Peripheral and posterior lesions are typical of COVID-19 pneumonia.
    centre_of_lungs = candidates.mean(axis=0)
    periphery = np.abs(candidates[:, 2] - centre_of_lungs[2]) + 0.5 * candidates[:, 1]
    weights = (periphery - periphery.min() + 1) ** 2
    centre = candidates[rng.choice(len(candidates), p=weights / weights.sum())]
    small = rng.random() < 0.5
    radius_mm = rng.uniform(4, 9) if small else rng.uniform(10, 35)
    axes = radius_mm * rng.uniform(0.7, 1.3, 3) / [gap, pixel, pixel]
    axes[0] = max(axes[0], 0.6)
    lo = np.maximum(np.floor(centre - axes * 1.4).astype(int), 0)
    hi = np.minimum(np.ceil(centre + axes * 1.4).astype(int) + 1, hu.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grid = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
    distance = np.sqrt((((grid - centre) / axes) ** 2).sum(-1))
    distance = distance + 0.12 * fields[0][box]
    inside = lungs[box]
    consolidation = rng.random() < 0.35
    target = rng.uniform(-120, 30) if consolidation else rng.uniform(-700, -400)
    softness = 0.15 if consolidation else 0.35
    blend = np.clip((1 + softness / 2 - distance) / softness, 0, 1) * inside
    texture = 30 * fields[1][box]
    hu[box] = hu[box] * (1 - blend) + (target + texture) * blend
    # blend > edge, as a distance: at EDGE exactly distance < 1, the lesion's own outline.
    labels[box][(distance < 1 + softness * (EDGE - edge)) & inside] = 1
    return hu


# -- a new scanner ---------------------------------------------------------------------

#: ``scanner_shift``'s change of appearance, as documented in the README: the same anatomy
#: seen by another scanner.
SHIFT = {"gamma": (0.3, 0.4),           # MR: intensity curve on the [0, 1]-scaled signal
         "bias": (0.5, 0.7),            # MR: strength of a smooth multiplicative bias field
         "hu_scale": (0.85, 0.9),       # CT: a miscalibrated HU scale ...
         "hu_offset": (150.0, 200.0),   # ... and offset (HU)
         "noise": (0.08, 0.1),          # extra Gaussian noise, share of the signal's range (MR)
         "hu_noise": (50.0, 70.0)}      # ... and in HU (CT: a sharper kernel, lower dose)


def scanner_shift(phantom: Phantom, seed: int) -> Phantom:
    """``phantom`` as another scanner would show it (labels and geometry unchanged), seeded:
    MR gets a gamma intensity curve, a strong smooth bias field and more noise; CT a
    miscalibrated HU scale and offset and more noise. Ranges in ``SHIFT``. A stand-in for
    the domain shift a model meets at a new site, to show fine-tuning on corrected cases."""
    rng = np.random.default_rng([seed, 7919])
    array = phantom.volume.array.astype(np.float32)
    if phantom.volume.modality == "CT":
        hu = array * rng.uniform(*SHIFT["hu_scale"]) + rng.uniform(*SHIFT["hu_offset"])
        hu += rng.uniform(*SHIFT["hu_noise"]) * rng.standard_normal(hu.shape, dtype=np.float32)
        shifted = np.clip(np.round(hu), -1024, 3071)
    else:
        top = max(float(np.percentile(array, 99.5)), 1.0)
        signal = np.clip(array / top, 0, None) ** rng.uniform(*SHIFT["gamma"])
        _, height, width = array.shape
        v, u = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
        angle = rng.uniform(0, 2 * np.pi)
        bias = 1 + rng.uniform(*SHIFT["bias"]) * (np.cos(angle) * u + np.sin(angle) * v)
        signal = signal * bias[None] + rng.uniform(*SHIFT["noise"]) * rng.standard_normal(array.shape)
        shifted = np.clip(signal * top, 0, 32767)
    meta = dict(phantom.volume.meta, scanner_shift={"seed": seed})
    volume = Volume(shifted.astype(np.int16), phantom.volume.spacing, phantom.volume.origin,
                    phantom.volume.direction, phantom.volume.modality, meta)
    return Phantom(volume, phantom.labels, phantom.classes, phantom.task)
