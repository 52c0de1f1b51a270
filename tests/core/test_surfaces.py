"""Surfaces of label classes (segview.core.surfaces) against analytic shapes and SimpleITK's
index-to-physical mapping, and which classes an edit makes stale."""
import math

import numpy as np
import pytest
import SimpleITK as sitk

from segview.core import surfaces
from segview.core.labels import LabelMap
from segview.core.surfaces import StaleClasses, build_surfaces, class_boxes, class_surface
from segview.core.volume import Volume

# An oblique (rotated about two axes) and anisotropic grid, as an MRI short-axis stack.
OBLIQUE = sitk.VersorTransform((0.3, -0.5, 0.8), 0.6).GetMatrix()
SPACING = (0.9, 0.7, 1.6)  # x, y, z mm
ORIGIN = (-40.0, 25.0, 110.0)
SHAPE = (44, 70, 64)  # z, y, x


def reference_image(shape=SHAPE) -> sitk.Image:
    image = sitk.Image([shape[2], shape[1], shape[0]], sitk.sitkUInt8)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(OBLIQUE)
    return image


def ball(shape, centre_zyx, radius_mm: float, value: int = 1) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A ball of ``radius_mm`` around continuous index ``centre_zyx`` on the oblique grid, in
    the physical space SimpleITK defines: the volume, its labels and the centre in LPS mm."""
    image = reference_image(shape)
    centre = np.array(image.TransformContinuousIndexToPhysicalPoint([float(c) for c in centre_zyx[::-1]]))
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1).reshape(-1, 3)[:, ::-1]
    physical = np.array(ORIGIN) + (ijk * SPACING) @ np.reshape(OBLIQUE, (3, 3)).T
    for n in range(0, len(ijk), 4999):  # the same mapping as SimpleITK's
        assert np.allclose(physical[n], image.TransformIndexToPhysicalPoint([int(i) for i in ijk[n]]))
    labels = (np.linalg.norm(physical - centre, axis=1) <= radius_mm).reshape(shape).astype(np.uint8) * value
    return Volume(labels, SPACING, ORIGIN, OBLIQUE), labels, centre


def area_and_volume(surface) -> tuple[float, float]:
    """Surface area (mm²) and enclosed volume (mm³, divergence theorem) of a closed mesh."""
    v = surface.vertices.astype(float)
    a, b, c = (v[surface.faces[:, k]] for k in range(3))
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2
    enclosed = np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6
    return area, enclosed


def test_a_ball_has_the_area_and_volume_of_a_sphere_on_an_oblique_anisotropic_grid():
    radius = 18.0
    volume, labels, _ = ball(SHAPE, (22, 35, 32), radius)
    (surface,) = build_surfaces(labels, volume, None)
    area, enclosed = area_and_volume(surface)
    assert area == pytest.approx(4 * math.pi * radius ** 2, rel=0.03)
    assert enclosed == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.03)  # positive: faces wind outward


def test_vertices_lie_in_patient_mm_where_simpleitk_puts_the_ball():
    radius = 15.0
    volume, labels, centre = ball(SHAPE, (20.5, 33, 30.25), radius)
    surface = class_surface(labels, 1, class_boxes(labels)[1], volume)
    distances = np.linalg.norm(surface.vertices - centre, axis=1)
    assert np.abs(distances - radius).max() < max(SPACING)  # on the sphere, within a voxel
    assert np.abs(surface.vertices.mean(axis=0) - centre).max() < 0.5  # centred where SimpleITK says
    outward = np.einsum("ij,ij->i", surface.normals, surface.vertices - centre) / distances
    assert outward.min() > 0.8 and np.allclose(np.linalg.norm(surface.normals, axis=1), 1, atol=1e-5)


def test_a_box_of_voxels_ends_half_a_voxel_beyond_its_outer_centres():
    labels = np.zeros(SHAPE, np.uint8)
    labels[10:30, 20:50, 15:45] = 3
    volume = Volume(labels, SPACING, ORIGIN, OBLIQUE)
    (surface,) = build_surfaces(labels, volume, None)
    image = reference_image()
    index = np.array([image.TransformPhysicalPointToContinuousIndex([float(c) for c in p])
                      for p in surface.vertices[::25]])[:, ::-1]  # back to (z, y, x)
    low, high = np.array([10, 20, 15]) - 0.5, np.array([29, 49, 44]) + 0.5
    assert (index > low - 0.5).all() and (index < high + 0.5).all()
    assert np.abs(index.min(axis=0) - low).max() < 0.5 and np.abs(index.max(axis=0) - high).max() < 0.5


def index_extent(surface) -> np.ndarray:
    """How far ``surface`` reaches along each array axis, in voxels (z, y, x)."""
    image = reference_image()
    index = np.array([image.TransformPhysicalPointToContinuousIndex([float(c) for c in p])
                      for p in surface.vertices])[:, ::-1]
    return index.max(axis=0) - index.min(axis=0)


def test_a_lone_voxel_and_a_stroke_on_one_slice_show_about_their_size():
    """A tester's one-voxel class was drawn 0.06 mm wide, and a stroke as a sheet of no thickness."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[20, 30, 30] = 1
    labels[5, 10:40, 10:40] = 2
    volume = Volume(labels, SPACING, ORIGIN, OBLIQUE)
    voxel, stroke = build_surfaces(labels, volume, None)
    assert (index_extent(voxel) > 0.6).all() and (index_extent(voxel) < 1.2).all()
    assert 0.8 < index_extent(stroke)[0] < 1.2  # one slice thick
    assert (np.abs(index_extent(stroke)[1:] - 30) < 0.7).all()


def test_a_large_class_is_averaged_in_blocks_and_still_a_sphere(monkeypatch):
    radius = 18.0
    volume, labels, _ = ball(SHAPE, (22, 35, 32), radius)
    whole = class_surface(labels, 1, class_boxes(labels)[1], volume)
    box = class_boxes(labels)[1]
    monkeypatch.setattr(surfaces, "MAX_CELLS", math.prod(s.stop - s.start for s in box) // 6)
    blocked = class_surface(labels, 1, class_boxes(labels)[1], volume)
    assert len(blocked.faces) < len(whole.faces) / 2
    area, enclosed = area_and_volume(blocked)
    assert area == pytest.approx(4 * math.pi * radius ** 2, rel=0.04)
    assert enclosed == pytest.approx(4 / 3 * math.pi * radius ** 3, rel=0.04)


def test_slabs_join_into_the_surface_built_at_once(monkeypatch):
    volume, labels, _ = ball(SHAPE, (22, 35, 32), 18.0)
    whole = class_surface(labels, 1, class_boxes(labels)[1], volume)
    monkeypatch.setattr(surfaces, "SLAB_CELLS", 1)  # one grid plane per marching-cubes call
    sliced = class_surface(labels, 1, class_boxes(labels)[1], volume)
    assert np.allclose(area_and_volume(sliced), area_and_volume(whole), rtol=1e-5)


def test_block_steps_keep_blocks_about_square_in_mm(monkeypatch):
    monkeypatch.setattr(surfaces, "MAX_CELLS", 1_000_000)
    assert surfaces.block_steps((100, 100, 100), (1.0, 1.0, 1.0)) == (1, 1, 1)
    assert surfaces.block_steps((300, 512, 512), (1.0, 1.0, 1.0)) == (5, 5, 5)  # 4: 1.2 million cells
    steps = surfaces.block_steps((60, 512, 512), (5.0, 0.7, 0.7))  # thick slices: averaged across them last
    assert steps[0] == 1 and steps[1] == steps[2] > 1


def test_class_boxes_are_each_class_bounding_box():
    rng = np.random.default_rng(0)
    labels = np.zeros((40, 50, 60), np.uint8)
    for value in (1, 2, 7):
        low = rng.integers(0, 20, 3)
        high = low + rng.integers(1, 20, 3)
        labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = value
    labels[35, 2, 59] = 7
    boxes = class_boxes(labels)
    for value in np.unique(labels[labels > 0]):
        where = np.nonzero(labels == value)
        assert boxes[int(value)] == tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)
    assert set(boxes) == set(np.unique(labels[labels > 0]).tolist())


def test_an_absent_class_has_an_empty_surface_and_a_stopped_build_none():
    volume, labels, _ = ball(SHAPE, (22, 35, 32), 10.0)
    assert class_surface(labels, 5, None, volume).is_empty
    assert class_surface(labels, 1, class_boxes(labels)[1], volume, should_stop=lambda: True) is None
    assert list(build_surfaces(labels, volume, None, should_stop=lambda: True)) == []


def test_an_edit_makes_only_the_classes_it_changed_stale_and_says_where_to_look():
    labels = np.zeros((20, 40, 40), np.uint8)
    labels[2:8, 5:15, 5:15] = 1
    labels[10:18, 20:30, 20:30] = 2
    volume = Volume(labels, (1.0, 1.0, 2.0))
    label_map = LabelMap(labels, volume.spacing)
    stale = StaleClasses()
    assert stale.take() is None  # everything, the first time
    for surface in build_surfaces(labels, volume, None):
        stale.built(surface)
    assert not stale.stale

    with label_map.step():
        edit = label_map.paint(15, [(35.0, 35.0)], 2.0, 2)  # class 2 grows into background, far off
    assert stale.edited(edit) == {2}
    wanted = stale.take()
    assert set(wanted) == {2}
    (surface,) = build_surfaces(labels, volume, wanted)
    stale.built(surface)
    where = np.nonzero(labels == 2)
    assert surface.box == tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)

    with label_map.step():
        edits = [label_map.paint(z, [(10.0, 10.0)], 30.0, 0) for z in range(2, 8)]  # class 1 erased entirely
    assert set().union(*(stale.edited(edit) for edit in edits)) == {1}
    (surface,) = build_surfaces(labels, volume, stale.take())
    assert surface.value == 1 and surface.is_empty and surface.box is None

    stale.built(surface)
    assert not stale.stale
    with label_map.step():
        edit = label_map.paint(4, [(10.0, 10.0)], 3.0, 1)  # class 1 anew, a disc one slice thick
    assert stale.edited(edit) == {1}
    (surface,) = build_surfaces(labels, volume, stale.take())
    assert surface.value == 1 and surface.box == (slice(4, 5), slice(7, 14), slice(7, 14))
    assert not surface.is_empty  # smoothing never loses a thin stroke



def test_thin_sheets_of_a_blocked_class_appear_and_its_big_object_keeps_its_area(monkeypatch):
    """A one-voxel sheet painted in a sagittal and in a coronal view fills at most half of
    each block when the class's box is averaged in (1, 2, 2) blocks: each must still appear,
    while the big object of the class keeps its half-level surface (a sphere's area)."""
    radius = 14.0
    volume, labels, centre = ball(SHAPE, (22, 30, 18), radius)
    labels[0, 0, 0] = labels[-1, -1, -1] = 1  # the box: the whole volume, with or without sheets
    monkeypatch.setattr(surfaces, "MAX_CELLS", math.prod(SHAPE) // 4)
    assert surfaces.block_steps(SHAPE, volume.spacing[::-1]) == (1, 2, 2)
    alone = class_surface(labels, 1, class_boxes(labels)[1], volume)
    labels[5:40, 10:40, 58] = 1  # sagittal: one x
    labels[5:40, 64, 40:62] = 1  # coronal: one y
    surface = class_surface(labels, 1, class_boxes(labels)[1], volume)

    image = reference_image()
    for inside_sheet in ((22, 25, 58), (22, 64, 51)):  # (z, y, x)
        where = np.array(image.TransformIndexToPhysicalPoint(inside_sheet[::-1]))
        assert np.linalg.norm(surface.vertices - where, axis=1).min() < max(SPACING)

    def ball_area(mesh) -> float:
        near = np.linalg.norm(mesh.vertices - centre, axis=1) < radius + 5
        faces = mesh.faces[near[mesh.faces].all(axis=1)]
        a, b, c = (mesh.vertices[faces[:, k]].astype(float) for k in range(3))
        return np.linalg.norm(np.cross(b - a, c - a), axis=1).sum() / 2

    assert ball_area(surface) == pytest.approx(ball_area(alone), rel=1e-6)
    assert ball_area(surface) == pytest.approx(4 * math.pi * radius ** 2, rel=0.04)  # half-level, not grown


def test_a_one_voxel_line_drawn_onto_a_blocked_class_shows(monkeypatch):
    """A radiologist's correction: a brush line one voxel wide on one slice, drawn out of a
    large object of the same class. Averaged in blocks it filled a tenth of each, one piece
    with the ball, and vanished from the 3D view; each of its voxels must lie within a block
    of the surface."""
    volume, labels, _ = ball(SHAPE, (22, 30, 24), 14.0)
    ball_only = labels.copy()
    labels[22, 30, 24:64] = 1  # from the ball's centre out to the volume's edge
    box = class_boxes(labels)[1]
    monkeypatch.setattr(surfaces, "MAX_CELLS", math.prod(s.stop - s.start for s in box) // 30)
    steps = surfaces.block_steps([s.stop - s.start for s in box], volume.spacing[::-1])
    assert min(steps) > 1
    surface = class_surface(labels, 1, box, volume)

    image = reference_image()
    block_mm = max(np.multiply(steps, SPACING[::-1]))
    outside = [x for x in range(24, 64) if not ball_only[22, 30, x]]
    assert len(outside) > 20
    for x in outside:
        where = np.array(image.TransformIndexToPhysicalPoint((x, 30, 22)))
        assert np.linalg.norm(surface.vertices - where, axis=1).min() < block_mm, x
