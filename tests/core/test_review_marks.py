"""Review marks are honest: only a person's mark sets one, it belongs to the step that made
it (undo and redo take it back and forth), and replacing the labels ignores the brush."""
import numpy as np
import pytest

from segview.core.labels import LabelMap, OverwritePolicy


def blank(shape=(5, 32, 40), spacing=(0.8, 0.6, 2.5)):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 100
    return LabelMap(np.zeros(shape, np.uint8), spacing, intensities=image)


def test_no_edit_marks_a_slice_reviewed():
    labels = blank()
    labels.paint(3, [(10, 10)], 2.0, 1)
    labels.fill(2, (5, 5), 2)
    labels.copy_from(np.full(labels.array.shape, 3, np.uint8))
    labels.interpolate(0, 4)
    assert not labels.reviewed.any()


def test_a_mark_is_an_undo_step_of_its_own_and_follows_undo_and_redo():
    labels = blank()
    labels.paint(1, [(10, 10)], 2.0, 1)
    labels.set_reviewed(1)
    assert labels.reviewed.tolist() == [False, True, False, False, False]
    assert labels.undo()  # the mark
    assert not labels.reviewed.any() and labels.array[1].any()
    assert labels.redo()
    assert labels.reviewed[1]
    labels.set_reviewed(1, False)
    assert not labels.reviewed[1]
    labels.undo()
    assert labels.reviewed[1]
    assert labels.set_reviewed(1) is None  # already marked: no step


def test_a_mark_made_inside_a_step_goes_with_its_edits():
    labels = blank()
    copied = np.zeros(labels.array.shape, np.uint8)
    copied[2, 4:9, 4:9] = 2
    with labels.step():
        labels.copy_from(copied)
        labels.set_reviewed(2)
    labels.undo()
    assert not labels.array.any() and not labels.reviewed.any()
    labels.redo()
    assert labels.reviewed[2] and np.array_equal(labels.array, copied)


def test_the_marked_event_hears_every_mark_change_undo_included():
    labels = blank()
    heard = []
    labels.events.marked.connect(lambda mark: heard.append((mark.z, mark.new)))
    labels.set_reviewed(4)
    labels.undo()
    labels.redo()
    assert heard == [(4, True), (4, False), (4, True)]


def test_replacing_the_labels_ignores_the_brush_policy_and_intensity_range():
    # A stroke with "paint over background only" and an intensity range, then a label file
    # is opened: every voxel of the file arrives (the defect loaded 69 of 192).
    labels = blank()
    labels.policy = OverwritePolicy("background")
    labels.intensity_range = (0.0, 20.0)
    labels.paint(0, [(16, 20)], 5.0, 1)
    from_file = np.zeros(labels.array.shape, np.uint8)
    from_file[:, 10:22, 10:26] = 2
    labels.copy_from(from_file)
    np.testing.assert_array_equal(labels.array, from_file)
    labels.paint(1, [(16, 16)], 3.0, 1)  # the brush still obeys them
    assert not (labels.array[1] == 1).any()


def brute_force_disc(shape, axis, index, centre, radius_mm, spacing_zyx):
    """Voxels whose centre lies within ``radius_mm`` of ``centre`` in plane ``index``."""
    grid = np.indices(shape).astype(float)
    in_plane = [a for a in range(3) if a != axis]
    distance2 = sum(((grid[a] - c) * spacing_zyx[a]) ** 2 for a, c in zip(in_plane, centre))
    expected = distance2 <= radius_mm ** 2
    expected &= grid[axis] == index
    return expected


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_dab_in_any_plane_paints_the_voxels_within_the_radius_in_mm(axis):
    spacing_xyz = (0.7, 0.9, 3.0)
    labels = blank(shape=(12, 30, 34), spacing=spacing_xyz)
    plane_shape = [s for a, s in enumerate(labels.array.shape) if a != axis]
    centre = (plane_shape[0] / 2 + 0.3, plane_shape[1] / 2 - 0.2)
    labels.paint(5, [centre], 4.0, 2, axis=axis)
    expected = brute_force_disc(labels.array.shape, axis, 5, centre, 4.0, spacing_xyz[::-1])
    np.testing.assert_array_equal(labels.array == 2, expected)
    assert labels.undo() and not labels.array.any()


def test_a_coronal_drag_is_one_step_touching_many_slices():
    labels = blank(shape=(12, 30, 34), spacing=(0.7, 0.9, 3.0))
    with labels.step():
        labels.paint(15, [(1, 5), (10, 5)], 2.0, 1, axis=1)
        labels.paint(15, [(10, 5), (10, 20)], 2.0, 1, axis=1)
    touched = np.flatnonzero(labels.array.any(axis=(1, 2)))
    assert touched.min() <= 1 and touched.max() >= 10
    assert set(np.flatnonzero(labels.array.any(axis=(0, 2)))) == {15}
    labels.undo()
    assert not labels.array.any()
