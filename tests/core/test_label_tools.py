"""The class tools of LabelMap (islands, smoothing, margin, holes, logical operations,
growing from a seed, the sphere brush) against independent references: scipy.ndimage's
connected components, morphology, median filter and distance transform, and masks worked
by hand; all on anisotropic voxels. Then the contract every tool keeps: one undo step,
exact live metrics, review marks untouched, a stop that writes nothing."""
import numpy as np
import pytest
from scipy import ndimage

from segview.core.labels import LabelMap, OverwritePolicy
from segview.core.live import LiveMetrics
from segview.core.metrics import ConfusionMatrix

SPACING = (0.7, 0.9, 2.0)  # x, y, z in mm, as ITK orders it
ZYX = (2.0, 0.9, 0.7)
SIX = ndimage.generate_binary_structure(3, 1)


def blobs(shape=(12, 30, 34), seed=0, level=0.6, sigma=(0.8, 2.0, 2.0)) -> np.ndarray:
    """A random blobby mask: smoothed noise over a level (islands, holes, thin bridges)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return noise > level * noise.std()


def classes(shape=(12, 30, 34), seed=0) -> np.ndarray:
    """Labels with classes 1, 2 and 3 from three independent blob fields."""
    labels = np.zeros(shape, np.uint8)
    for value in (1, 2, 3):
        labels[blobs(shape, seed + 10 * value) & (labels == 0)] = value
    return labels


def with_holes(labels, values=(2, 3), seed=0) -> np.ndarray:
    """Background punched into the inside of classes ``values`` (a model's holes)."""
    holed = labels.copy()
    rng = np.random.default_rng(seed)
    for value in values:
        inside = ndimage.binary_erosion(labels == value, SIX)
        holed[inside & (rng.random(labels.shape) < 0.08)] = 0
    return holed


def ball(radius_mm, spacing_zyx=ZYX) -> np.ndarray:
    """The structuring element by its definition: voxel offsets within radius_mm, in mm."""
    reach = [int(radius_mm / s) for s in spacing_zyx]
    dz, dy, dx = np.mgrid[[slice(-r, r + 1) for r in reach]]
    sz, sy, sx = spacing_zyx
    return (dz * sz) ** 2 + (dy * sy) ** 2 + (dx * sx) ** 2 <= radius_mm ** 2


def labelmap(labels, spacing=SPACING, **options) -> LabelMap:
    return LabelMap(labels.copy(), spacing, **options)


def with_class(labels, value, mask) -> np.ndarray:
    """``labels`` where class ``value`` becomes exactly ``mask`` (lost voxels: background)."""
    expected = labels.copy()
    expected[(labels == value) & ~mask] = 0
    expected[mask] = value
    return expected


# -- islands -------------------------------------------------------------------------------

def test_islands_by_hand_six_connected_and_measured_in_mm3():
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[1:3, 1:3, 1:3] = 1      # cube of 8 voxels: 8 x 0.75 mm3 = 6 mm3
    labels[3, 3, 3] = 1            # touches the cube along an edge only: an island of 0.75 mm3
    labels[0:3, 6, 6] = 1          # a rod of 3 voxels: 2.25 mm3
    labels[5, 0, 0] = 2            # another class: untouched
    tool = labelmap(labels, spacing=(0.5, 0.75, 2.0))  # voxels of 0.75 mm3, exact in binary
    tool.remove_islands(1, min_mm3=2.25)  # "smaller than": the rod stays
    expected = labels.copy()
    expected[3, 3, 3] = 0
    np.testing.assert_array_equal(tool.array, expected)
    tool.remove_islands(1, min_mm3=2.3)
    expected[0:3, 6, 6] = 0
    np.testing.assert_array_equal(tool.array, expected)
    tool.remove_islands(1, min_mm3=6.0)  # the cube alone is not smaller than 6 mm3
    np.testing.assert_array_equal(tool.array, expected)


def test_islands_against_scipy_components_for_one_class_and_for_every_class():
    labels = classes()
    voxel = 0.7 * 0.9 * 2.0
    expected = labels.copy()
    for value in (1, 2, 3):
        components, _ = ndimage.label(labels == value, SIX)
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes * voxel < 30.0)
        small = small[small > 0]  # label 0 is everything else
        expected_one = labels.copy()
        expected_one[np.isin(components, small)] = 0
        tool = labelmap(labels)
        tool.remove_islands(value, min_mm3=30.0)
        np.testing.assert_array_equal(tool.array, expected_one)
        expected[np.isin(components, small)] = 0
        assert len(small) > 1  # the case tests something
    tool = labelmap(labels)
    tool.remove_islands(None, min_mm3=30.0)
    np.testing.assert_array_equal(tool.array, expected)


def test_keep_largest_keeps_one_component_per_class():
    labels = classes(seed=3)
    tool = labelmap(labels)
    tool.remove_islands(None, keep_largest=True)
    for value in (1, 2, 3):
        components, count = ndimage.label(labels == value, SIX)
        largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
        assert count > 1
        np.testing.assert_array_equal(tool.array == value, components == largest)


def test_each_island_is_an_edit_of_its_own_box_and_hundreds_are_one_edit():
    labels = np.zeros((12, 30, 34), np.uint8)
    labels[3:8, 10:20, 9:30] = 2    # the structure
    labels[0, 1, 1] = labels[11, 28, 2] = labels[10, 0, 33] = 2  # three islands in far corners
    tool = labelmap(labels)
    edits = tool.remove_islands(2, keep_largest=True)
    assert sorted(edit.region for edit in edits) == [
        (slice(0, 1), slice(1, 2), slice(1, 2)), (slice(10, 11), slice(0, 1), slice(33, 34)),
        (slice(11, 12), slice(28, 29), slice(2, 3))]
    assert tool.undo() and np.array_equal(tool.array, labels) and not tool.undo()  # one step
    labels[::2, ::2, ::2] = 2       # 1530 single voxels, some inside the structure
    components, _ = ndimage.label(labels == 2, SIX)
    largest = np.argmax(np.bincount(components.ravel())[1:]) + 1
    tool = labelmap(labels)
    edits = tool.remove_islands(2, keep_largest=True)
    assert len(edits) == 1
    np.testing.assert_array_equal(tool.array, np.where(components == largest, 2, 0))


def test_the_preview_shows_what_would_go_and_changes_nothing():
    labels = classes(seed=5)
    tool = labelmap(labels)
    preview = tool.islands_preview(2, min_mm3=20.0)
    np.testing.assert_array_equal(tool.array, labels)
    assert not tool.can_undo and preview.shape == labels.shape and preview.any()
    tool.remove_islands(2, min_mm3=20.0)
    np.testing.assert_array_equal(tool.array != labels, preview)
    np.testing.assert_array_equal(tool.array, np.where(preview, 0, labels))


def test_islands_refuse_bad_options_and_a_protected_class_keeps_its_islands():
    tool = labelmap(classes())
    for options in ({}, {"min_mm3": 5.0, "keep_largest": True}, {"min_mm3": -1.0}):
        with pytest.raises(ValueError):
            tool.remove_islands(1, **options)
    with pytest.raises(ValueError, match="background"):
        tool.remove_islands(0, min_mm3=5.0)
    tool.policy = OverwritePolicy("protect", frozenset({1}))
    before = tool.array.copy()
    assert tool.remove_islands(1, keep_largest=True) == []
    assert not tool.islands_preview(1, keep_largest=True).any()
    np.testing.assert_array_equal(tool.array, before)


# -- smoothing -----------------------------------------------------------------------------

def reference_opening(mask, footprint):
    # The image's edge is no boundary: erosion treats outside as the class.
    return ndimage.binary_dilation(ndimage.binary_erosion(mask, footprint, border_value=1), footprint)


def reference_closing(mask, footprint):
    return ndimage.binary_erosion(ndimage.binary_dilation(mask, footprint), footprint, border_value=1)


def reference_median(mask, footprint):
    return ndimage.median_filter(mask.astype(np.uint8), footprint=footprint, mode="reflect").astype(bool)


@pytest.mark.parametrize("method, reference", [("opening", reference_opening), ("closing", reference_closing),
                                               ("median", reference_median)])
@pytest.mark.parametrize("kernel_mm", [4.6, 2.9])
def test_smoothing_equals_scipy_morphology_with_the_ball_in_mm(method, reference, kernel_mm):
    labels = classes(seed=7)  # classes reach the array's edges
    footprint = ball(kernel_mm / 2)
    assert footprint.shape[0] > 1 or kernel_mm < 4  # 4.6 mm reaches the next slice (2 mm away)
    tool = labelmap(labels)
    tool.smooth(1, method, kernel_mm)
    expected = with_class(labels, 1, reference(labels == 1, footprint))
    assert not np.array_equal(expected, labels)
    np.testing.assert_array_equal(tool.array, expected)


@pytest.mark.parametrize("method, reference", [("opening", reference_opening), ("closing", reference_closing),
                                               ("median", reference_median)])
def test_a_big_ball_goes_through_the_distance_transform_and_agrees(method, reference):
    # (a median over a ball this big counts runs along x from a cumulative sum)
    labels = (blobs((14, 28, 30), seed=2, sigma=(2, 3, 3)) & ~blobs((14, 28, 30), seed=9)).astype(np.uint8)
    spacing = (0.4, 0.5, 0.6)
    tool = labelmap(labels, spacing)
    tool.smooth(1, method, 8.3)
    expected = with_class(labels, 1, reference(labels == 1, ball(4.15, spacing[::-1])))
    assert not np.array_equal(expected, labels)
    np.testing.assert_array_equal(tool.array, expected)


def test_closing_fills_only_what_the_policy_allows():
    labels = classes(seed=11)
    tool = labelmap(labels)
    tool.policy = OverwritePolicy("background")
    tool.smooth(1, "closing", 4.6)
    closed = reference_closing(labels == 1, ball(2.3))
    expected = labels.copy()
    expected[closed & (labels == 0)] = 1
    assert (closed & (labels > 1)).any()  # other classes were in the way and stay
    np.testing.assert_array_equal(tool.array, expected)


def test_smoothing_refuses_unknown_methods_and_empty_kernels():
    tool = labelmap(classes())
    with pytest.raises(ValueError, match="median, opening or closing"):
        tool.smooth(1, "gaussian", 3.0)
    with pytest.raises(ValueError, match="> 0"):
        tool.smooth(1, "median", 0.0)
    assert tool.smooth(4, "median", 3.0) is None  # an absent class: nothing to do


# -- margin ------------------------------------------------------------------------------

@pytest.mark.parametrize("spacing, distance", [(SPACING, 2.3), (SPACING, -2.3), (SPACING, 1.4),
                                               ((0.4, 0.5, 0.6), 4.5), ((0.4, 0.5, 0.6), -4.5)])
def test_margin_is_the_euclidean_distance_in_mm(spacing, distance):
    labels = classes(seed=13)
    mask = labels == 2
    tool = labelmap(labels, spacing)
    tool.margin(2, distance)
    sampling = spacing[::-1]
    if distance > 0:
        grown = mask | (ndimage.distance_transform_edt(~mask, sampling=sampling) <= distance)
        expected = labels.copy()
        expected[grown] = 2
    else:  # voxels within the distance of a voxel outside the class leave it
        expected = with_class(labels, 2, mask & (ndimage.distance_transform_edt(mask, sampling=sampling) > -distance))
    assert not np.array_equal(expected, labels)
    np.testing.assert_array_equal(tool.array, expected)


def test_a_very_big_margin_goes_through_the_distance_transform_and_agrees():
    labels = np.zeros((40, 40, 120), np.uint8)
    labels[18:22, 15:21, 5:12] = 1
    labels[5, 5, 5] = 1
    tool = labelmap(labels, (0.9, 1.0, 1.1))
    tool.margin(1, 38.45)  # a ball of over 4000 rows: the distance transform's turn
    grown = ndimage.distance_transform_edt(labels != 1, sampling=(1.1, 1.0, 0.9)) <= 38.45
    assert not grown.all()
    np.testing.assert_array_equal(tool.array == 1, grown)


def test_margin_grows_only_where_the_policy_allows():
    labels = classes(seed=17)
    tool = labelmap(labels)
    tool.policy = OverwritePolicy("protect", frozenset({3}))
    tool.margin(1, 2.5)
    grown = ndimage.distance_transform_edt(labels != 1, sampling=ZYX) <= 2.5
    expected = labels.copy()
    expected[grown & (labels != 3)] = 1
    assert (grown & (labels == 3)).any()
    np.testing.assert_array_equal(tool.array, expected)
    assert tool.margin(3, -1.0) is None  # a protected class does not shrink either


# -- holes --------------------------------------------------------------------------------

def hollow_box_with_a_tunnel() -> np.ndarray:
    labels = np.zeros((9, 12, 12), np.uint8)
    labels[1:8, 2:10, 2:10] = 1
    labels[2:7, 4:8, 4:8] = 0      # the cavity
    labels[4, 5, 5] = 2            # a structure of another class inside it
    labels[3:5, 5:7, 8:10] = 0     # a tunnel from the cavity out through the x wall
    return labels


def test_fill_holes_in_3d_leaves_a_cavity_open_to_the_outside_and_other_classes_inside():
    labels = hollow_box_with_a_tunnel()
    tool = labelmap(labels)
    assert tool.fill_holes(1) is None  # the tunnel connects the cavity to the outside
    labels[3:5, 5:7, 8:10] = 1          # close the tunnel: now the cavity is a hole
    tool = labelmap(labels)
    tool.fill_holes(1)
    expected = labels.copy()
    expected[2:7, 4:8, 4:8] = 1
    expected[4, 5, 5] = 2               # another class is a structure, not a hole
    np.testing.assert_array_equal(tool.array, expected)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_fill_holes_per_slice_equals_scipy_in_each_plane(axis):
    labels = hollow_box_with_a_tunnel()
    tool = labelmap(labels)
    tool.fill_holes(1, per_slice=True, axis=axis)
    planes = np.moveaxis(labels == 1, axis, 0)
    filled = np.moveaxis(np.stack([ndimage.binary_fill_holes(p) for p in planes]), 0, axis)
    expected = labels.copy()
    expected[filled & (labels == 0)] = 1
    assert not np.array_equal(expected, labels)
    np.testing.assert_array_equal(tool.array, expected)
    if axis == 0:  # by hand: axial slices 2 to 6 hold the cavity; the tunnel opens 3 and 4
        assert (tool.array[[2, 5, 6], 4:8, 4:8] != 0).all() and (tool.array[3, 4:8, 4:8] == 0).any()


def test_fill_holes_on_random_labels_equals_scipy():
    labels = with_holes(classes(seed=19))
    tool = labelmap(labels)
    tool.fill_holes(3)
    expected = labels.copy()
    expected[ndimage.binary_fill_holes(labels == 3) & (labels == 0)] = 3
    assert not np.array_equal(expected, labels)
    np.testing.assert_array_equal(tool.array, expected)


# -- logical operations --------------------------------------------------------------------

def test_logical_operations_by_hand():
    labels = np.zeros((1, 1, 6), np.uint8)
    labels[0, 0] = [0, 1, 1, 2, 2, 0]
    operand = np.zeros((1, 1, 6), bool)
    operand[0, 0] = [False, False, True, True, False, True]
    cases = {("add", 1, 2): [0, 1, 1, 1, 1, 0],          # class 2 moves into class 1
             ("copy", 1, 2): [0, 0, 0, 1, 1, 0],         # class 1 becomes exactly class 2's voxels
             ("subtract", 1, 2): [0, 1, 1, 2, 2, 0],     # a voxel holds one class: nothing shared
             ("add", 1, "mask"): [0, 1, 1, 1, 2, 1],
             ("copy", 1, "mask"): [0, 0, 1, 1, 2, 1],
             ("subtract", 1, "mask"): [0, 1, 0, 2, 2, 0],
             ("intersect", 1, "mask"): [0, 0, 1, 2, 2, 0],
             ("intersect", 2, "mask"): [0, 1, 1, 2, 0, 0]}
    for (operation, target, source), expected in cases.items():
        tool = labelmap(labels)
        tool.logical_operation(operation, target, operand if source == "mask" else source)
        assert tool.array[0, 0].tolist() == expected, (operation, target, source)
    tool = labelmap(labels)
    tool.policy = OverwritePolicy("background")
    tool.logical_operation("add", 1, operand)
    assert tool.array[0, 0].tolist() == [0, 1, 1, 2, 2, 1]
    with pytest.raises(ValueError, match="operation"):
        tool.logical_operation("xor", 1, 2)
    with pytest.raises(ValueError, match="shape"):
        tool.logical_operation("add", 1, np.ones((2, 2, 2), bool))


# -- growing from a seed -------------------------------------------------------------------

def image_with_organs(shape=(10, 24, 26), seed=0):
    """Two separate 'organs' (about 200) on background (about 0), bounded noise of +-5."""
    rng = np.random.default_rng(seed)
    organ = np.zeros(shape, bool)
    organ[2:8, 3:15, 3:12] = True
    organ[4:6, 12:20, 8:11] = True  # a bent extension, still one organ
    other = np.zeros(shape, bool)
    other[2:8, 3:15, 16:23] = True   # the same intensity, not connected
    image = np.where(organ | other, 200.0, 0.0) + rng.uniform(-5, 5, shape)
    return image.astype(np.float32), organ


def smooth_image(shape, seed):
    """A smooth random image (standard deviation 1): regions of similar intensity."""
    image = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5)
    return (image / image.std()).astype(np.float32)


def test_grow_from_seed_equals_the_seeds_connected_component_in_range():
    image = smooth_image((10, 24, 26), seed=1)
    labels = classes((10, 24, 26), seed=23)
    seed = (5, 12, 13)
    low, high = image[seed] - 0.4, image[seed] + 0.4
    components, _ = ndimage.label((image >= low) & (image <= high), SIX)
    grown = components == components[seed]
    tool = labelmap(labels, intensities=image)
    tool.grow_from_seed(seed, 3, low, high)
    expected = labels.copy()
    expected[grown] = 3
    assert 20 < grown.sum() < grown.size / 2
    np.testing.assert_array_equal(tool.array, expected)
    assert tool.grow_from_seed(seed, 3, high + 1, high + 100) is None  # the seed is out of range


def test_a_range_beyond_the_images_type_grows_over_all_it_holds():
    """ITK casts the bounds to the pixel type: +-1e5 on an int16 image wrapped round and
    grew nothing (a tester's whole-range Grow)."""
    image = np.random.default_rng(3).integers(-1000, 1000, (3, 10, 12)).astype(np.int16)
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_from_seed((1, 5, 6), 1, -1e5, 1e5, axis=0)
    assert (tool.array[1] == 1).all() and not tool.array[[0, 2]].any()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_grow_from_seed_in_one_plane_stays_in_it(axis):
    image = smooth_image((10, 24, 26), seed=2)
    seed = (5, 12, 13)
    low, high = image[seed] - 0.4, image[seed] + 0.4
    plane = np.take((image >= low) & (image <= high), seed[axis], axis=axis)
    components, _ = ndimage.label(plane)  # 4-connected in the plane
    in_plane = tuple(c for a, c in enumerate(seed) if a != axis)
    expected = np.zeros(image.shape, bool)
    index = [slice(None)] * 3
    index[axis] = seed[axis]
    expected[tuple(index)] = components == components[in_plane]
    assert expected.sum() > 5
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_from_seed(seed, 1, low, high, axis=axis)
    np.testing.assert_array_equal(tool.array == 1, expected)


@pytest.mark.parametrize("axis", [None, 1])
def test_grow_from_seed_within_a_box_stops_at_it(axis):
    image = smooth_image((10, 24, 26), seed=1)
    seed = (5, 12, 13)
    low, high = image[seed] - 0.6, image[seed] + 0.6
    box = (slice(3, 8), slice(7, 18), slice(7, 20))  # 4.5 mm: +-2 slices, +-5 rows, +-6 columns
    inside = np.zeros(image.shape, bool)
    inside[box] = (image[box] >= low) & (image[box] <= high)
    if axis is not None:  # and only the seed's coronal plane
        inside[:, :seed[1]] = inside[:, seed[1] + 1:] = False
    components, _ = ndimage.label(inside, SIX)
    expected = components == components[seed]
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_from_seed(seed, 1, low, high, axis=axis, box_mm=4.5)
    unbounded = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    unbounded.grow_from_seed(seed, 1, low, high, axis=axis)
    assert expected.sum() > 10 and (unbounded.array == 1).sum() > expected.sum()  # the box matters
    np.testing.assert_array_equal(tool.array == 1, expected)
    with pytest.raises(ValueError, match="box_mm"):
        tool.grow_from_seed(seed, 1, low, high, box_mm=0)


def test_confidence_connected_takes_the_organ_and_stops_at_its_edge():
    image, organ = image_with_organs()
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_confidence_connected((4, 8, 6), 2, multiplier=3.0, iterations=3)
    np.testing.assert_array_equal(tool.array == 2, organ)  # not the other organ of the same intensity
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_confidence_connected((4, 8, 6), 2, multiplier=3.0, axis=0)
    expected = np.zeros(image.shape, bool)
    expected[4] = organ[4]
    np.testing.assert_array_equal(tool.array == 2, expected)
    tool = labelmap(np.zeros(image.shape, np.uint8), intensities=image)
    tool.grow_confidence_connected((4, 8, 6), 2, multiplier=3.0, box_mm=4.1)  # +-2 slices, 4 rows, 5 columns
    expected = np.zeros(image.shape, bool)
    expected[2:7, 4:13, 1:12] = organ[2:7, 4:13, 1:12]
    np.testing.assert_array_equal(tool.array == 2, expected)


def test_growing_needs_an_image_and_a_seed_inside_it():
    with pytest.raises(ValueError, match="intensities"):
        labelmap(np.zeros((2, 3, 3), np.uint8)).grow_from_seed((0, 0, 0), 1, 0, 1)
    image, _ = image_with_organs()
    with pytest.raises(ValueError, match="outside"):
        labelmap(np.zeros(image.shape, np.uint8), intensities=image).grow_from_seed((10, 0, 0), 1, 0, 1)


# -- the sphere brush ----------------------------------------------------------------------

def within(shape, centre, radius, spacing_zyx=ZYX):
    """Voxel centres within ``radius`` mm of ``centre`` (z, y, x), by the definition."""
    zz, yy, xx = np.mgrid[0:shape[0], 0:shape[1], 0:shape[2]]
    offsets = [(a - c) * s for a, c, s in zip((zz, yy, xx), centre, spacing_zyx)]
    return sum(o ** 2 for o in offsets) <= radius ** 2


def test_the_sphere_brush_is_exact_on_anisotropic_voxels():
    tool = labelmap(np.zeros((12, 30, 34), np.uint8))
    tool.paint_sphere((5.3, 14.6, 16.2), 4.1, 2)
    expected = within((12, 30, 34), (5.3, 14.6, 16.2), 4.1)
    np.testing.assert_array_equal(tool.array == 2, expected)
    rows = np.flatnonzero(expected.any(axis=(1, 2)))
    assert rows.tolist() == [4, 5, 6, 7]  # 4.1 mm reaches two 2 mm slices up, one down, by hand
    assert tool.paint_sphere((5.3, 14.6, 16.2), 4.1, 0) is not None and not tool.array.any()


def test_a_sphere_drag_leaves_no_gap_and_obeys_the_policy():
    labels = np.zeros((12, 30, 34), np.uint8)
    labels[:, :, 20:] = 3
    tool = labelmap(labels)
    tool.policy = OverwritePolicy("protect", frozenset({3}))
    tool.paint_sphere([(2, 3, 3), (9, 25, 30)], 2.0, 1)
    expected = np.zeros(labels.shape, bool)
    for t in np.linspace(0, 1, 400):
        expected |= within(labels.shape, (2 + 7 * t, 3 + 22 * t, 3 + 27 * t), 2.0)
    np.testing.assert_array_equal(tool.array == 1, expected & (labels != 3))
    assert (tool.array[:, :, 20:] == 3).all()
    with pytest.raises(ValueError, match="points"):
        tool.paint_sphere([(1, 2)], 2.0, 1)
    assert tool.paint_sphere((-20, 5, 5), 2.0, 1) is None  # wholly outside the volume


# -- the contract every tool keeps ---------------------------------------------------------

TOOLS = {
    "islands": lambda t, p: t.remove_islands(1, min_mm3=30.0),
    "islands, every class": lambda t, p: t.remove_islands(None, keep_largest=True),
    "median": lambda t, p: t.smooth(1, "median", 2.9),
    "opening": lambda t, p: t.smooth(2, "opening", 4.6),
    "closing": lambda t, p: t.smooth(3, "closing", 4.6),
    "expand": lambda t, p: t.margin(1, 2.3),
    "shrink": lambda t, p: t.margin(2, -1.5),
    "holes": lambda t, p: t.fill_holes(3),
    "holes per slice": lambda t, p: t.fill_holes(2, per_slice=True, axis=1),
    "add class": lambda t, p: t.logical_operation("add", 1, 2),
    "subtract prediction": lambda t, p: t.logical_operation("subtract", 1, p == 2),
    "copy prediction": lambda t, p: t.logical_operation("copy", 3, p == 1),
    "intersect prediction": lambda t, p: t.logical_operation("intersect", 2, p == 2),
    "grow from seed": lambda t, p: t.grow_from_seed((6, 15, 17), 2, -1.0, 1.0),
    "confidence connected": lambda t, p: t.grow_confidence_connected((6, 15, 17), 3),
    "sphere": lambda t, p: t.paint_sphere((6, 15, 17), 5.0, 1),
}


def contract_case():
    labels = with_holes(classes(seed=29))
    image = smooth_image(labels.shape, seed=3)
    prediction = classes(seed=31)
    tool = labelmap(labels, intensities=image)
    tool.set_reviewed(2)
    tool.set_reviewed(7)
    live = LiveMetrics(tool, 4)
    live.add_model("A", prediction)
    return tool, live, prediction


@pytest.mark.parametrize("name", TOOLS)
def test_each_tool_is_one_undo_step_keeps_metrics_exact_and_marks_no_slice(name):
    tool, live, prediction = contract_case()
    before = tool.array.copy()
    marks = []
    tool.events.marked.connect(marks.append)
    edit = TOOLS[name](tool, prediction)
    assert edit is not None and not np.array_equal(tool.array, before), "the case must change something"
    after = tool.array.copy()
    assert np.flatnonzero(tool.reviewed).tolist() == [2, 7] and not marks
    recount = ConfusionMatrix.from_arrays(prediction, tool.array, 4)
    np.testing.assert_array_equal(live.matrices["A"].slice_counts, recount.slice_counts)
    np.testing.assert_array_equal(live.matrices["A"].counts, recount.counts)
    assert tool.undo()  # one step takes the whole tool back
    np.testing.assert_array_equal(tool.array, before)
    np.testing.assert_array_equal(live.matrices["A"].counts, ConfusionMatrix.from_arrays(prediction, before, 4).counts)
    assert np.flatnonzero(tool.reviewed).tolist() == [2, 7] and not marks
    assert tool.redo()
    np.testing.assert_array_equal(tool.array, after)
    tool.undo()
    tool.undo()  # the step before the tool is the mark of slice 7
    assert np.flatnonzero(tool.reviewed).tolist() == [2] and np.array_equal(tool.array, before)


STOPPABLE = {
    "islands": ("remove_islands", lambda p: (1,), {"min_mm3": 30.0}),
    "islands, every class": ("remove_islands", lambda p: (None,), {"keep_largest": True}),
    "median": ("smooth", lambda p: (1, "median", 2.9), {}),
    "closing": ("smooth", lambda p: (3, "closing", 4.6), {}),
    "expand": ("margin", lambda p: (1, 2.3), {}),
    "shrink": ("margin", lambda p: (2, -1.5), {}),
    "holes": ("fill_holes", lambda p: (3,), {"per_slice": True}),
    "subtract prediction": ("logical_operation", lambda p: ("subtract", 1, p == 2), {}),
}


@pytest.mark.parametrize("name", STOPPABLE)
def test_a_stopped_tool_writes_nothing_and_progress_ends_at_the_total(name):
    tool, _, prediction = contract_case()
    method, arguments, options = STOPPABLE[name]
    run = getattr(tool, method)
    before = tool.array.copy()
    assert run(*arguments(prediction), **options, should_stop=lambda: True) is None
    np.testing.assert_array_equal(tool.array, before)
    tool.undo()  # no step was made: undo takes back the mark of slice 7
    assert np.flatnonzero(tool.reviewed).tolist() == [2]
    reported = []
    assert run(*arguments(prediction), **options, progress=lambda *report: reported.append(report)) is not None
    done, total = reported[-1]
    assert done == total > 0 and all(0 < d <= t == total for d, t in reported)
    assert [d for d, _ in reported] == sorted(d for d, _ in reported)


def test_a_stop_late_in_the_work_still_writes_nothing():
    tool, _, _ = contract_case()
    before = tool.array.copy()
    asked = []

    def stop_on_the_second_question():
        asked.append(1)
        return len(asked) >= 2

    assert tool.margin(1, 2.3, should_stop=stop_on_the_second_question) is None
    assert len(asked) == 2
    np.testing.assert_array_equal(tool.array, before)


def test_a_tool_inside_an_open_step_joins_it():
    tool, _, _ = contract_case()
    before = tool.array.copy()
    with tool.step():
        assert tool.margin(1, 2.3) is not None
        assert tool.remove_islands(2, min_mm3=30.0) is not None
    tool.undo()
    np.testing.assert_array_equal(tool.array, before)
    assert np.flatnonzero(tool.reviewed).tolist() == [2, 7]
