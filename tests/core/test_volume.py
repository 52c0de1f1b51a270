import numpy as np
import pytest

from segview.core.volume import (Volume, DisplayOrientation, grid_differences, orthogonalized, slice_pixel_size,
                                 window_to_uint8)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def test_index_to_physical_matches_the_itk_formula_worked_by_hand():
    # origin + D @ (spacing * ijk), with the numpy index (z, y, x) = (k, j, i)
    v = Volume(np.zeros((4, 5, 6)), spacing=(2, 3, 4), origin=(10, 20, 30),
               direction=(0, -1, 0, 1, 0, 0, 0, 0, 1))
    # ijk = (1, 2, 3): spacing * ijk = (2, 6, 12); D @ that = (-6, 2, 12)
    np.testing.assert_allclose(v.index_to_physical((3, 2, 1)), (4, 22, 42))
    np.testing.assert_allclose(v.physical_to_index((4, 22, 42)), (3, 2, 1))


def test_index_to_physical_agrees_with_simpleitk():
    rng = np.random.default_rng(1)
    v = Volume(np.zeros((7, 5, 3)), spacing=(0.5, 1.25, 3.0), origin=tuple(rng.normal(0, 50, 3)),
               direction=tuple(random_rotation(rng).ravel()))
    image = v.to_sitk()
    for zyx in [(0, 0, 0), (6, 4, 2), (3, 1, 2)]:
        expected = image.TransformIndexToPhysicalPoint([int(i) for i in zyx[::-1]])
        np.testing.assert_allclose(v.index_to_physical(zyx), expected, atol=1e-9)


def test_ras_affine_flips_x_and_y_of_lps():
    v = Volume(np.zeros((2, 2, 2)), spacing=(1, 2, 3), origin=(5, 6, 7))
    np.testing.assert_allclose(v.affine_ras()[:3, 3], (-5, -6, 7))
    np.testing.assert_allclose(np.diag(v.affine_ras())[:3], (-1, -2, 3))


def anatomy(direction_signs):
    """A 3x4x5 volume in which the voxel at patient right-anterior-superior holds 1,
    stored with the given axis signs (LPS identity = (1, 1, 1))."""
    array = np.zeros((3, 4, 5))
    # In LPS index order, right = low x, anterior = low y, superior = high z.
    array[2, 0, 0] = 1
    for axis, sign in zip((2, 1, 0), direction_signs):
        if sign < 0:
            array = np.flip(array, axis)
    return Volume(array, direction=tuple(np.diag(direction_signs).ravel().astype(float)))


@pytest.mark.parametrize("signs", [(1, 1, 1), (-1, -1, 1), (-1, 1, -1), (1, -1, -1)])
def test_radiological_display_does_not_depend_on_storage_order(signs):
    v = anatomy(signs)
    orientation = v.display()
    marker = np.argwhere(v.array == 1)[0]

    def through_marker(view, lps_axis):
        return v.slice(view, marker[orientation.numpy_axis(lps_axis)])

    # Axial: patient right on screen left, anterior up.
    assert through_marker("axial", 2)[0, 0] == 1
    # Coronal: patient right on screen left, superior up.
    assert through_marker("coronal", 1)[0, 0] == 1
    # Sagittal: anterior on screen left, superior up.
    assert through_marker("sagittal", 0)[0, 0] == 1


def test_to_voxel_inverts_the_display_slice():
    rng = np.random.default_rng(3)
    array = rng.integers(0, 1000, (4, 5, 6))
    v = Volume(array, direction=(-1, 0, 0, 0, 0, 1, 0, -1, 0))
    orientation = v.display()
    for view in ("axial", "coronal", "sagittal"):
        n = orientation.num_slices(array.shape, view)
        plane = v.slice(view, n - 1)
        for row in range(plane.shape[0]):
            for col in range(plane.shape[1]):
                assert array[orientation.to_voxel(view, n - 1, row, col, array.shape)] == plane[row, col]


def test_edge_labels_and_pixel_spacing():
    orientation = DisplayOrientation(np.eye(3))
    assert orientation.edge_labels("axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientation.edge_labels("coronal") == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert orientation.edge_labels("sagittal") == {"left": "A", "right": "P", "top": "S", "bottom": "I"}
    # coronal rows run along z (3 mm), columns along x (1 mm)
    assert orientation.pixel_spacing("coronal", (1.0, 2.0, 3.0)) == (3.0, 1.0)


def test_oblique_axes_map_to_their_nearest_anatomical_axis():
    angle = np.radians(30)
    direction = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    orientation = DisplayOrientation(direction)
    assert orientation.lps_axis_of_index == [0, 1, 2]


def test_window_to_uint8():
    image = np.array([[-1000, -160, 40], [240, 1000, 40]], dtype=np.int16)
    out = window_to_uint8(image, 40, 400)  # soft-tissue window: -160 .. 240 HU
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0, 0, 127], [255, 255, 127]])


def test_grid_differences_names_what_differs():
    a = Volume(np.zeros((2, 3, 4)), spacing=(1, 1, 1))
    b = Volume(np.zeros((2, 3, 4)), spacing=(1, 1, 1.001), origin=(0, 0, 0.00005))
    problems = grid_differences(a, b)
    assert len(problems) == 1 and problems[0].startswith("spacing")
    assert grid_differences(a, Volume(np.zeros((2, 3, 5))))[0].startswith("size")


def test_orthogonalized_undoes_a_shear_and_keeps_physical_positions():
    # A tilted stack: each slice shifted 0.5 mm along y per 2 mm along z.
    slice_dir = np.array([0.0, 0.5, 2.0]) / np.linalg.norm([0, 0.5, 2.0])
    direction = np.column_stack([[1, 0, 0], [0, 1, 0], slice_dir])
    array = np.zeros((6, 20, 10), np.float32)
    array[:, 8:12, 4:6] = 100  # a bar that follows the tilt
    tilted = Volume(array, spacing=(1, 1, np.linalg.norm([0, 0.5, 2.0])), direction=tuple(direction.ravel()))
    upright = orthogonalized(tilted)
    np.testing.assert_allclose(upright.direction_matrix, np.eye(3), atol=1e-12)
    assert upright.spacing[2] == pytest.approx(2.0)
    # The centre of the bar in the last slice is at the same physical point.
    point = tilted.index_to_physical((5, 9.5, 4.5))
    k, j, i = np.round(upright.physical_to_index(point)).astype(int)
    assert upright.array[k, j, i] > 50
    assert orthogonalized(upright) is None


@pytest.mark.parametrize("direction", [
    (-1, 0, 0, 0, 1, 0, 0, 0, 1),                       # LAS as FSL writes it (RAS with x flipped)
    (1, 0, 0, 0, -1, 0, 0, 0, 1),
    (1, 0, 0, 0, 1, 0, 0, 0, -1),                       # slices stored from head to feet
])
def test_a_left_handed_grid_is_not_taken_for_a_shear(direction):
    """A tester's LAS NIfTI was 'resampled onto a perpendicular grid' with its z axis flipped,
    so its labels lay upside down against it in every other program."""
    volume = Volume(np.zeros((4, 5, 6)), direction=direction)
    assert np.linalg.det(volume.direction_matrix) < 0
    assert orthogonalized(volume) is None


def test_a_sheared_left_handed_grid_keeps_its_slice_order():
    slice_dir = np.array([0.0, 0.5, -2.0]) / np.linalg.norm([0, 0.5, 2.0])  # tilted, head to feet
    direction = np.column_stack([[1, 0, 0], [0, 1, 0], slice_dir])
    array = np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 20, 10), np.float32)
    tilted = Volume(array, spacing=(1, 1, np.linalg.norm([0, 0.5, 2.0])), direction=tuple(direction.ravel()))
    upright = orthogonalized(tilted)
    np.testing.assert_allclose(upright.direction_matrix, np.diag([1, 1, -1]), atol=1e-12)
    point = tilted.index_to_physical((5, 10, 5))
    k, j, i = np.round(upright.physical_to_index(point)).astype(int)
    assert k == 5 and upright.array[k, j, i] == pytest.approx(5, abs=0.01)


def test_a_slices_pixel_size_is_rows_then_columns_and_none_where_square():
    """(row, column) mm from (x, y, z) spacing; a DICOM series' float noise (0.7031249 against
    0.703125) is square: its crops and canvases are those of square pixels, to the pixel."""
    assert slice_pixel_size((0.6, 1.2, 3.0)) == (1.2, 0.6)
    assert slice_pixel_size((0.7031249, 0.703125, 5.0)) is None
    assert slice_pixel_size((0.7, 0.7, 5.0)) is None and slice_pixel_size(None) is None
    assert slice_pixel_size((0.70, 0.71, 5.0)) == (0.71, 0.70)   # 1.4 %: not square
