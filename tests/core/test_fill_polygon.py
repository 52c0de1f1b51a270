"""LabelMap.fill_polygon: voxel centres inside the polygon or on its edge, counted by hand and
checked against matplotlib's Path away from the edge; every plane; the brush settings; one
undo step; bad polygons refused."""
import numpy as np
import pytest
from matplotlib.path import Path

from segview.core.labels import LabelMap, OverwritePolicy


def label_map(shape=(4, 12, 14)) -> LabelMap:
    return LabelMap(np.zeros(shape, np.uint8), (0.7, 0.9, 2.0))


def test_a_square_through_voxel_centres_takes_its_edge():
    labels = label_map()
    labels.fill_polygon(1, [(2, 3), (2, 7), (6, 7), (6, 3)], 2)  # (y, x) vertices on centres
    expected = np.zeros((12, 14), bool)
    expected[2:7, 3:8] = True  # 5 x 5 centres, the edge's included
    assert (labels.array[1] == 2).sum() == 25
    np.testing.assert_array_equal(labels.array[1] == 2, expected)
    assert not labels.array[[0, 2, 3]].any()


def test_a_triangle_counted_by_hand():
    labels = label_map()
    # Right triangle with legs of 4 along y and x: the centres with y - 1 + x - 1 <= 4.
    labels.fill_polygon(0, [(1, 1), (5, 1), (1, 5)], 1)
    assert (labels.array[0] == 1).sum() == 15  # 5 + 4 + 3 + 2 + 1


def test_inside_centres_equal_matplotlib_path_off_the_edge():
    rng = np.random.default_rng(3)
    for _ in range(10):
        vertices = rng.uniform(-1.3, 13.7, (6, 2))  # may cross itself and leave the plane
        labels = label_map((1, 12, 14))
        try:
            labels.fill_polygon(0, vertices, 1)
        except ValueError:
            continue
        centres = np.argwhere(np.ones((12, 14), bool)).astype(float)
        path = Path(np.vstack([vertices, vertices[:1]]), closed=True)
        inside = path.contains_points(centres).reshape(12, 14)
        # Path leaves a centre on the edge to chance: compare only centres 0.05 away from it.
        near_edge = path.contains_points(centres, radius=0.05).reshape(12, 14) != \
            path.contains_points(centres, radius=-0.05).reshape(12, 14)
        np.testing.assert_array_equal((labels.array[0] == 1)[~near_edge], inside[~near_edge])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_each_plane_takes_its_own_coordinates(axis):
    labels = LabelMap(np.zeros((10, 11, 12), np.uint8), (1.0, 1.0, 1.0))
    labels.fill_polygon(4, [(1, 2), (1, 5), (3, 5), (3, 2)], 3, axis=axis)
    expected = np.zeros((10, 11, 12), bool)
    region = [slice(1, 4), slice(2, 6)]
    region.insert(axis, slice(4, 5))
    expected[tuple(region)] = True
    np.testing.assert_array_equal(labels.array == 3, expected)


def test_the_overwrite_policy_and_protected_classes_hold_and_undo_is_one_step():
    labels = label_map()
    labels.array[2, 4:6, :] = 1
    labels.array[2, 8, :] = 2
    labels.policy = OverwritePolicy("protect", frozenset({1}))
    edit = labels.fill_polygon(2, [(0, 0), (0, 13), (11, 13), (11, 0)], 3)
    assert edit is not None
    assert (labels.array[2, 4:6] == 1).all()
    assert (labels.array[2, 8] == 3).all()
    assert (labels.array[2] == 3).sum() == 12 * 14 - 2 * 14
    labels.policy = OverwritePolicy("background")
    assert labels.fill_polygon(2, [(0, 0), (0, 13), (11, 13)], 4) is None  # nothing left that is background
    assert labels.undo()
    assert (labels.array[2] == 3).sum() == 0 and (labels.array[2, 8] == 2).all()
    assert not labels.can_undo


def test_a_polygon_partly_off_the_plane_fills_what_is_on_it():
    labels = label_map()
    labels.fill_polygon(0, [(-5, -5), (-5, 3), (3, 3), (3, -5)], 1)
    assert (labels.array[0] == 1).sum() == 16
    assert labels.fill_polygon(0, [(-5, -5), (-5, -2), (-2, -2)], 1) is None


def test_a_crossed_polygon_fills_by_the_even_odd_rule():
    labels = label_map((1, 12, 14))
    # A bow tie: two triangles meeting at (4, 4); its crossing point is a centre on the edge.
    labels.fill_polygon(0, [(0, 0), (8, 8), (8, 0), (0, 8)], 1)
    filled = labels.array[0] == 1
    assert filled[1, 4] and filled[7, 4] and not filled[4, 1] and not filled[4, 7]


@pytest.mark.parametrize("points", [[(1, 1), (3, 3)], [(1, 1), (3, 3), (1, 1)], [1, 2, 3]])
def test_fewer_than_three_vertices_are_refused(points):
    with pytest.raises(ValueError, match="3 distinct vertices"):
        label_map().fill_polygon(0, points, 1)


def test_a_plane_outside_the_labels_is_refused():
    with pytest.raises(ValueError, match="is not in labels"):
        label_map().fill_polygon(4, [(1, 1), (3, 3), (1, 3)], 1)
