"""Level tracing: the region 4-connected to the seed within a tolerance of its intensity,
against a region grown by hand (breadth-first), in every plane, under the brush settings,
one undo step."""
from collections import deque

import numpy as np
import pytest

from segview.core.labels import LabelMap, OverwritePolicy, traced_level


def grown_by_hand(plane: np.ndarray, seed, tolerance: float) -> np.ndarray:
    """Breadth-first growth through 4-neighbours within the tolerance of the seed's value."""
    inside = np.zeros(plane.shape, bool)
    level = float(plane[seed])
    queue = deque([seed])
    inside[seed] = True
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (r + dr, c + dc)
            on_plane = 0 <= n[0] < plane.shape[0] and 0 <= n[1] < plane.shape[1]
            if on_plane and not inside[n] and abs(float(plane[n]) - level) <= tolerance:
                inside[n] = True
                queue.append(n)
    return inside


@pytest.mark.parametrize("seed, tolerance", [((5, 5), 10.0), ((12, 3), 40.0), ((0, 0), 0.0)])
def test_the_traced_region_equals_a_growth_by_hand(seed, tolerance):
    plane = np.random.default_rng(sum(seed)).integers(0, 100, (16, 14)).astype(np.int16)
    np.testing.assert_array_equal(traced_level(plane, seed, tolerance), grown_by_hand(plane, seed, tolerance))


def test_a_seed_off_the_plane_traces_nothing():
    assert traced_level(np.zeros((4, 4)), (4, 0), 1.0) is None
    assert traced_level(np.zeros((4, 4)), (0, -1), 1.0) is None


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_fill_level_fills_the_traced_region_of_a_plane_in_one_step(axis):
    image = np.full((6, 7, 8), 100, np.int16)
    image[2:5, 2:5, 2:6] = 300  # a bright box
    labels = LabelMap(np.zeros(image.shape, np.uint8), (0.7, 0.8, 3.0), intensities=image)
    labels.array[3, 3, 3] = 2
    labels.policy = OverwritePolicy("protect", frozenset({2}))
    seed = tuple(v for a, v in enumerate((3, 3, 3)) if a != axis)
    assert labels.fill_level(3, seed, 50.0, 1, axis) is not None
    expected = np.zeros(image.shape, bool)
    plane = [slice(2, 5), slice(2, 5), slice(2, 6)]
    plane[axis] = slice(3, 4)
    expected[tuple(plane)] = True
    expected[3, 3, 3] = False  # protected
    np.testing.assert_array_equal(labels.array == 1, expected)
    assert labels.undo() and not labels.array[labels.array != 2].any() and not labels.can_undo


def test_fill_level_needs_the_image():
    with pytest.raises(ValueError, match="needs the image"):
        LabelMap(np.zeros((2, 3, 4), np.uint8), (1.0, 1.0, 1.0)).fill_level(0, (1, 1), 5.0, 1)
