"""The Volume (voxels + geometry) and every conversion between its coordinate systems.

Conventions, used everywhere in segview:

- numpy arrays are indexed (z, y, x): ``array[k, j, i]``.
- ITK geometry is ordered (x, y, z): ``spacing``, ``origin`` and the columns of
  ``direction`` refer to the index axes i, j, k in that order.
- Physical points are millimetres in LPS (DICOM/ITK): +x = patient Left,
  +y = Posterior, +z = Superior. RAS (NIfTI/nibabel) flips the sign of x and y.

The display orientation (radiological convention) is a view transform computed once
from the direction cosines: an axis permutation plus flips, never a resampling.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

#: Tolerance in millimetres (and for direction cosines) under which two grids are equal.
GEOMETRY_TOLERANCE = 1e-4

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    """A scalar 3D image on a regular grid.

    Attributes:
        array: voxel values, shape (Z, Y, X). CT values are in Hounsfield units.
        spacing: (x, y, z) voxel size in mm.
        origin: (x, y, z) LPS position in mm of the centre of voxel (0, 0, 0).
        direction: 9 floats, the row-major 3x3 matrix whose columns are the LPS
            unit vectors of the index axes i, j, k.
        modality: DICOM modality ("CT", "MR", ...) or "" when unknown.
        meta: free-form facts: ``series_description``, ``window_presets``
            (list of (name, center, width)), ``source``, ``warnings`` (list of str),
            ``photometric_interpretation`` (DICOM; "MONOCHROME1": shown with the grey scale
            inverted, the lowest value white; the values are not inverted).
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    modality: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume needs a 3D array (z, y, x), got shape {self.array.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        self.direction = tuple(float(d) for d in np.asarray(self.direction).ravel())
        if len(spacing) != 3 or len(origin) != 3 or len(self.direction) != 9:
            raise ValueError("spacing and origin need 3 values and direction 9")
        self.spacing = (spacing[0], spacing[1], spacing[2])
        self.origin = (origin[0], origin[1], origin[2])
        if min(self.spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {self.spacing}")
        self.meta.setdefault("warnings", [])

    # -- geometry ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 matrix whose columns are the LPS directions of the i, j, k axes."""
        return np.asarray(self.direction).reshape(3, 3)

    def tilt_degrees(self, axis: int) -> float:
        """The angle between numpy ``axis``'s direction (0: the acquired slices' normal) and
        the patient axis nearest it: 0 for an axial, coronal or sagittal grid, tens of
        degrees for a cardiac short-axis stack, whose planes the views name by the nearest."""
        column = self.direction_matrix[:, 2 - axis]
        cosine = float(np.abs(column).max() / np.linalg.norm(column))
        return float(np.degrees(np.arccos(min(1.0, cosine))))

    def index_to_physical(self, index_zyx) -> np.ndarray:
        """LPS point(s) in mm of numpy index(es) (..., 3) given as (z, y, x)."""
        ijk = np.asarray(index_zyx, dtype=float)[..., ::-1]
        return np.asarray(self.origin) + (ijk * self.spacing) @ self.direction_matrix.T

    def physical_to_index(self, point_lps) -> np.ndarray:
        """Continuous numpy index(es) (..., 3) as (z, y, x) of LPS point(s) in mm."""
        offset = np.asarray(point_lps, dtype=float) - self.origin
        ijk = offset @ np.linalg.inv(self.direction_matrix).T / self.spacing
        return ijk[..., ::-1]

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix from homogeneous (i, j, k, 1) to LPS millimetres."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix * self.spacing
        affine[:3, 3] = self.origin
        return affine

    def affine_ras(self) -> np.ndarray:
        """4x4 matrix from (i, j, k, 1) to RAS millimetres: the NIfTI/nibabel affine."""
        affine = self.affine_lps()
        affine[:3] = LPS_TO_RAS @ affine[:3]
        return affine

    def same_grid(self, other: "Volume") -> bool:
        return not grid_differences(self, other)

    # -- SimpleITK bridge -------------------------------------------------------------
    def to_sitk(self, array: np.ndarray | None = None) -> sitk.Image:
        """A SimpleITK image of ``array`` (default: the voxels) on this grid."""
        image = sitk.GetImageFromArray(self.array if array is None else array)
        copy_geometry(self, image)
        return image

    @classmethod
    def from_sitk(cls, image: sitk.Image, modality: str = "", meta: dict | None = None) -> "Volume":
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        return cls(
            array=sitk.GetArrayFromImage(image),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=image.GetDirection(),
            modality=modality,
            meta=dict(meta or {}),
        )

    # -- display ----------------------------------------------------------------------
    def display(self) -> "DisplayOrientation":
        """The radiological view transform for this volume's direction cosines."""
        return DisplayOrientation(self.direction_matrix)

    def display_flips(self) -> tuple[bool, bool]:
        """(flip rows, flip columns) that show an acquired slice to segview's networks as the
        window shows it (radiological convention: patient Right on the left, Anterior or
        Superior at the top), short of a transpose. One scan stored mirrored or turned
        half-way in its plane (LPS, RAS and LAS copies) then gives a network one picture, and
        one prediction. Flips only: a view of the voxels, never a resampling."""
        display = self.display()
        _, rows, _, flip_rows, flip_cols = display.axes(display.acquisition_view())
        return (flip_rows, flip_cols) if rows == 1 else (flip_cols, flip_rows)

    def slice(self, view: str, index: int) -> np.ndarray:
        """2D slice ``index`` of ``view`` ("axial", "coronal", "sagittal"), display-oriented.

        Rows run top to bottom and columns left to right on screen. The result is a view
        of ``array`` (no copy); use ``np.ascontiguousarray`` before uploading it.
        """
        return self.display().slice(self.array, view, index)


#: Pixels whose sides differ by less than this share are square (a DICOM series' spacing of
#: 0.7031249 x 0.703125 mm, say): cropped and resized as exactly square ones.
SQUARE_TOLERANCE = 1e-3


def slice_pixel_size(spacing) -> tuple[float, float] | None:
    """(row, column) mm of an axial slice (array order) from a volume's ``spacing`` (x, y, z)
    mm; None where there is none or the pixels are square (``SQUARE_TOLERANCE``). The
    networks see a slice square in mm, not in pixels (``ml.data.padded_shape``,
    ``ml.interactive.crop_box``)."""
    if spacing is None:
        return None
    rows, columns = float(spacing[1]), float(spacing[0])
    return None if abs(rows - columns) <= SQUARE_TOLERANCE * max(rows, columns) else (rows, columns)


def orthogonalized(volume: Volume) -> Volume | None:
    """``volume`` resampled onto an orthogonal grid when its axes are sheared (gantry
    tilt, a sheared NRRD), else None.

    The new grid keeps the in-plane axes and spacing, takes the slice normal as its third
    axis and covers the whole sheared volume; voxels outside it get the minimum value.
    """
    d = volume.direction_matrix
    row = d[:, 0] / np.linalg.norm(d[:, 0])
    col = d[:, 1] - (d[:, 1] @ row) * row
    col /= np.linalg.norm(col)
    normal = np.cross(row, col)
    if d[:, 2] @ normal < 0:  # a left-handed grid (an LAS NIfTI) is no shear: its slices keep their order
        normal = -normal
    direction = np.column_stack([row, col, normal])
    if np.max(np.abs(direction - d)) <= 1e-6:
        return None
    image = volume.to_sitk(volume.array.astype(np.float32))
    shape_xyz = np.array(volume.shape[::-1]) - 1
    corners = np.array([[i, j, k] for i in (0, shape_xyz[0]) for j in (0, shape_xyz[1])
                        for k in (0, shape_xyz[2])], dtype=float)
    local = (corners * volume.spacing) @ d.T @ direction  # corners along the new axes
    spacing = np.array(volume.spacing) * np.abs(np.diag(direction.T @ d))
    low = local.min(axis=0)
    size = np.ceil((local.max(axis=0) - low) / spacing - 1e-6).astype(int) + 1
    resampled = sitk.Resample(image, size.tolist(), sitk.Transform(), sitk.sitkLinear,
                              (np.asarray(volume.origin) + direction @ low).tolist(),
                              spacing.tolist(), direction.ravel().tolist(),
                              float(volume.array.min()))
    out = Volume.from_sitk(resampled, volume.modality, volume.meta)
    if np.issubdtype(volume.array.dtype, np.integer):
        info = np.iinfo(volume.array.dtype)
        out.array = np.clip(np.round(out.array), info.min, info.max).astype(volume.array.dtype)
    return out


def copy_geometry(volume: Volume, image: sitk.Image) -> None:
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)


def grid_differences(a: Volume | sitk.Image | dict, b: Volume | sitk.Image | dict,
                     tolerance: float = GEOMETRY_TOLERANCE) -> list[str]:
    """How the voxel grids of ``a`` and ``b`` differ, in words; empty when they agree (a
    dict: a grid's size, spacing, origin and direction, as a review sidecar keeps it).

    Size must match exactly; spacing and origin within ``tolerance`` mm; direction
    cosines within ``tolerance``.
    """
    ga, gb = _grid(a), _grid(b)
    problems = []
    if ga["size"] != gb["size"]:
        problems.append(f"size (x, y, z) {ga['size']} vs {gb['size']}")
    for key, unit in (("spacing", " mm"), ("origin", " mm"), ("direction", "")):
        delta = np.max(np.abs(np.subtract(ga[key], gb[key])))
        if delta > tolerance:
            problems.append(f"{key} {_fmt(ga[key])} vs {_fmt(gb[key])} "
                            f"(differs by up to {delta:.3g}{unit})")
    return problems


def _grid(x: Volume | sitk.Image | dict) -> dict:
    if isinstance(x, dict):
        return {key: tuple(x[key]) for key in ("size", "spacing", "origin", "direction")}
    if isinstance(x, Volume):
        return dict(size=tuple(x.shape[::-1]), spacing=x.spacing, origin=x.origin,
                    direction=x.direction)
    return dict(size=tuple(x.GetSize()), spacing=x.GetSpacing(), origin=x.GetOrigin(),
                direction=x.GetDirection())


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


# -- display orientation -------------------------------------------------------------

VIEWS = ("axial", "coronal", "sagittal")

# For each view: the LPS axis it slices through, and the LPS direction that screen
# columns (left -> right) and screen rows (top -> bottom) follow. Radiological
# convention: patient right on screen left, anterior up on axial, superior up on
# coronal and sagittal, anterior on the left of sagittal.
_VIEW_LAYOUT = {
    #            slice axis, (column axis, sign), (row axis, sign)
    "axial":    (2, (0, +1), (1, +1)),   # columns toward L, rows toward P
    "coronal":  (1, (0, +1), (2, -1)),   # columns toward L, rows toward I
    "sagittal": (0, (1, +1), (2, -1)),   # columns toward P, rows toward I
}
_LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative end, positive end)


class DisplayOrientation:
    """Maps numpy voxel axes to screen axes for each view, from the direction cosines.

    Each ITK index axis is assigned the LPS axis it is closest to; oblique volumes are
    shown in their own grid, labelled by the nearest anatomical direction.
    """

    def __init__(self, direction_matrix: np.ndarray):
        d = np.asarray(direction_matrix, dtype=float).reshape(3, 3)
        # Greedy assignment of index axes to distinct LPS axes, strongest first.
        self.lps_axis_of_index = [-1, -1, -1]
        self.sign_of_index = [1, 1, 1]
        for flat in np.argsort(-np.abs(d), axis=None):
            lps, idx = divmod(int(flat), 3)
            if self.lps_axis_of_index[idx] < 0 and lps not in self.lps_axis_of_index:
                self.lps_axis_of_index[idx] = lps
                self.sign_of_index[idx] = 1 if d[lps, idx] >= 0 else -1

    def numpy_axis(self, lps_axis: int) -> int:
        """The numpy axis (0=z, 1=y, 2=x) whose index axis lies closest to ``lps_axis``."""
        return 2 - self.lps_axis_of_index.index(lps_axis)

    def _sign(self, lps_axis: int) -> int:
        return self.sign_of_index[self.lps_axis_of_index.index(lps_axis)]

    def axes(self, view: str) -> tuple[int, int, int, bool, bool]:
        """(slice axis, row axis, column axis, flip rows, flip columns) in numpy terms."""
        slice_lps, (col_lps, col_sign), (row_lps, row_sign) = _VIEW_LAYOUT[view]
        return (self.numpy_axis(slice_lps), self.numpy_axis(row_lps), self.numpy_axis(col_lps),
                self._sign(row_lps) != row_sign, self._sign(col_lps) != col_sign)

    def slice(self, array: np.ndarray, view: str, index: int) -> np.ndarray:
        """Display-oriented 2D slice (rows, columns) of a (z, y, x) array; a view, no copy."""
        s, r, c, flip_r, flip_c = self.axes(view)
        plane = np.moveaxis(array, (s, r, c), (0, 1, 2))[index]
        return plane[::-1 if flip_r else 1, ::-1 if flip_c else 1]

    def num_slices(self, shape, view: str) -> int:
        return shape[self.axes(view)[0]]

    def to_voxel(self, view: str, index: int, row: int, col: int, shape) -> tuple[int, int, int]:
        """The numpy (z, y, x) index shown at screen (row, col) of slice ``index``."""
        s, r, c, flip_r, flip_c = self.axes(view)
        voxel = [0, 0, 0]
        voxel[s] = index
        voxel[r] = shape[r] - 1 - row if flip_r else row
        voxel[c] = shape[c] - 1 - col if flip_c else col
        return voxel[0], voxel[1], voxel[2]

    def to_display(self, view: str, voxel, shape) -> tuple[int, int]:
        """The screen (row, col) of numpy index ``voxel`` (z, y, x) in ``view``: the
        inverse of ``to_voxel``."""
        _, r, c, flip_r, flip_c = self.axes(view)
        row = shape[r] - 1 - voxel[r] if flip_r else voxel[r]
        col = shape[c] - 1 - voxel[c] if flip_c else voxel[c]
        return row, col

    def acquisition_view(self) -> str:
        """The view that shows the acquired slices (numpy z planes)."""
        return self.view_of_axis(0)

    def view_of_axis(self, axis: int) -> str:
        """The view whose slices are the planes across numpy ``axis`` (0: the acquired ones)."""
        return next(view for view in VIEWS if self.axes(view)[0] == axis)

    def pixel_spacing(self, view: str, spacing_xyz) -> tuple[float, float]:
        """(row height, column width) in mm of the displayed pixels."""
        _, r, c, _, _ = self.axes(view)
        return spacing_xyz[2 - r], spacing_xyz[2 - c]

    def edge_labels(self, view: str) -> dict[str, str]:
        """Anatomical letters at the left, right, top and bottom edges of the view."""
        _, (col_lps, col_sign), (row_lps, row_sign) = _VIEW_LAYOUT[view]
        col_neg, col_pos = _LPS_LETTERS[col_lps] if col_sign > 0 else _LPS_LETTERS[col_lps][::-1]
        row_neg, row_pos = _LPS_LETTERS[row_lps] if row_sign > 0 else _LPS_LETTERS[row_lps][::-1]
        return {"left": col_neg, "right": col_pos, "top": row_neg, "bottom": row_pos}


# -- windowing -----------------------------------------------------------------------

def window_to_uint8(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Map intensities to uint8 display values: [center - width/2, center + width/2] -> [0, 255].

    Returns a C-contiguous uint8 array of the same shape (pyqtgraph's fast path).
    """
    width = max(float(width), 1e-6)
    low = center - width / 2.0
    scaled = (np.asarray(image, dtype=np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.ascontiguousarray(np.clip(scaled, 0, 255, out=scaled).astype(np.uint8))


def auto_window(array: np.ndarray, low_percentile: float = 1.0,
                high_percentile: float = 99.0) -> tuple[float, float]:
    """(center, width) spanning the given percentiles: the default window for MRI."""
    sample = array[:: max(1, array.shape[0] // 16)]
    lo, hi = np.percentile(sample, [low_percentile, high_percentile])
    return float(lo + hi) / 2.0, float(max(hi - lo, 1.0))


#: Standard CT windows (center, width) in HU.
CT_WINDOW_PRESETS = (
    ("Lung", -600.0, 1500.0),
    ("Soft tissue", 40.0, 400.0),
    ("Mediastinum", 50.0, 350.0),
    ("Bone", 400.0, 1800.0),
    ("Brain", 40.0, 80.0),
)
