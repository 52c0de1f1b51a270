"""LabelMap: tools with expected arrays, undo/redo, the history bound, the events."""
import numpy as np
import pytest
from scipy import ndimage

from segview.core.labels import LabelMap, OverwritePolicy
from segview.core.metrics import ConfusionMatrix
from segview.core.phantoms import make_phantom


def blank(shape=(5, 40, 50), spacing=(1.0, 1.0, 2.0), **options):
    return LabelMap(np.zeros(shape, np.uint8), spacing, **options)


def disc(shape, centre, radius, spacing=(1.0, 1.0)):
    """Reference disc by the definition: pixel centres within ``radius`` mm of ``centre``."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - centre[0]) * spacing[1]) ** 2 + ((xx - centre[1]) * spacing[0]) ** 2 <= radius ** 2


def test_a_dab_paints_a_disc_of_the_radius_in_millimetres():
    labels = blank()
    labels.paint(2, [(20, 25)], 3.0, 1)
    np.testing.assert_array_equal(labels.array[2], disc((40, 50), (20, 25), 3.0).astype(np.uint8))
    assert labels.array[[0, 1, 3, 4]].sum() == 0
    assert labels.array[2].sum() == 29  # pixels with dx^2 + dy^2 <= 9, counted by hand


def test_anisotropic_pixels_give_an_ellipse_in_pixels():
    labels = blank(spacing=(0.5, 2.0, 1.0))  # x 0.5 mm, y 2 mm
    labels.paint(0, [(20, 25)], 4.0, 2)
    painted = labels.array[0] == 2
    rows, cols = np.nonzero(painted)
    assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 16  # +-2 rows, +-8 columns
    np.testing.assert_array_equal(painted, disc((40, 50), (20, 25), 4.0, spacing=(0.5, 2.0)))


def test_a_fast_move_leaves_no_gap():
    labels = blank()
    labels.paint(1, [(5, 5), (30, 45)], 1.5, 1)
    expected = np.zeros((40, 50), bool)
    for t in np.linspace(0, 1, 2000):  # the brush dabbed densely along the segment
        expected |= disc((40, 50), (5 + 25 * t, 5 + 40 * t), 1.5)
    np.testing.assert_array_equal(labels.array[1] == 1, expected)


def cells_under(points, samples=200_000):
    """Reference: the pixels whose cells (centre +- half a pixel) contain a point of the
    polyline, found by sampling it densely and rounding to the nearest centre."""
    points = np.asarray(points, float)
    t = np.linspace(0, 1, samples)[:, None]
    dense = np.concatenate([a + t * (b - a) for a, b in zip(points, points[1:])]) if len(points) > 1 else points
    return {tuple(cell) for cell in np.floor(dense + 0.5).astype(int).tolist()}


def test_a_brush_smaller_than_a_pixel_paints_the_pixel_under_its_centre():
    labels = blank(spacing=(1.32, 1.32, 5.0))
    labels.paint(2, [(10.4, 7.3)], 0.5, 1)  # 0.66 mm from the nearest centre: no centre within 0.5 mm
    assert labels.array.sum() == 1 and labels.array[2, 10, 7] == 1
    labels.paint(2, [(10.4, 7.3)], 0.5, 0)  # the eraser (value 0) likewise
    assert not labels.array.any()


def test_a_stroke_of_a_small_brush_paints_every_pixel_its_centre_line_passes_through():
    labels = blank(spacing=(1.32, 1.32, 5.0))
    stroke = [(2.2, 3.1), (9.7, 20.4), (25.35, 18.1)]
    labels.paint(1, stroke, 0.5, 1)
    painted = {tuple(cell) for cell in np.argwhere(labels.array[1]).tolist()}
    assert painted == cells_under(stroke) | {tuple(c) for c in np.argwhere(disc((40, 50), stroke[0], 0.5))}
    assert ndimage.label(labels.array[1])[1] == 1  # one piece: no gap


def test_the_small_brush_paints_the_voxel_under_its_centre_on_anisotropic_planes_and_in_3d():
    labels = blank(spacing=(5.0, 1.0, 1.0))  # coronal planes: 1 mm rows (z), 5 mm columns (x)
    labels.paint(20, [(2.3, 6.4)], 1.5, 1, axis=1)  # 2 mm from the nearest centre along x
    assert labels.array.sum() == 1 and labels.array[2, 20, 6] == 1
    labels.paint_sphere((3.4, 12.45, 8.3), 0.5, 2)
    assert (labels.array == 2).sum() == 1 and labels.array[3, 12, 8] == 2


@pytest.mark.parametrize("radius", [0.94, 1.0, 2.3, 6.0])
def test_a_brush_at_least_half_a_pixel_diagonal_wide_paints_the_centres_within_its_radius(radius):
    labels = blank(spacing=(1.32, 1.32, 5.0))  # the half diagonal: 0.933 mm
    rng = np.random.default_rng(7)
    for centre in rng.uniform(5, 30, size=(20, 2)):
        labels.paint(2, [centre], radius, 1)
        np.testing.assert_array_equal(labels.array[2] == 1, disc((40, 50), centre, radius, (1.32, 1.32)))
        labels.paint(2, [centre], radius + 1, 0)


def test_erase_and_the_overwrite_policies():
    labels = blank()
    labels.array[0, 10:20, 10:20] = 2
    labels.array[0, 10:20, 20:30] = 3
    labels.policy = OverwritePolicy("background")
    labels.paint(0, [(15, 20)], 8.0, 1)
    assert (labels.array[0, 10:20, 10:30] != 1).all()  # labelled voxels kept
    assert labels.array[0, 8, 20] == 1  # background painted
    labels.policy = OverwritePolicy("protect", frozenset({3}))
    labels.paint(0, [(15, 20)], 8.0, 1)
    assert (labels.array[0, 10:20, 20:30] == 3).all() and labels.array[0, 15, 15] == 1
    labels.paint(0, [(15, 20)], 8.0, 0)  # erasing respects protection too
    assert (labels.array[0, 10:20, 20:30] == 3).all() and labels.array[0, 15, 15] == 0
    labels.policy = OverwritePolicy()
    labels.paint(0, [(15, 25)], 2.0, 0)
    assert labels.array[0, 15, 25] == 0


def test_the_threshold_brush_paints_only_inside_the_intensity_range():
    image = np.zeros((1, 20, 20), np.int16)
    image[0, :, 10:] = 300  # "bone" on the right half
    labels = LabelMap(np.zeros((1, 20, 20), np.uint8), (1, 1, 1), intensities=image)
    labels.intensity_range = (-100, 100)
    labels.paint(0, [(10, 10)], 5.0, 1)
    painted = labels.array[0] == 1
    np.testing.assert_array_equal(painted, disc((20, 20), (10, 10), 5.0) & (image[0] <= 100))


def test_flood_fill_is_4_connected_and_stays_on_its_slice():
    labels = blank(shape=(2, 6, 6))
    labels.array[:, 1:4, 1:4] = 1
    labels.array[:, 4, 4] = 1  # touches the square only diagonally
    labels.fill(0, (2, 2), 3)
    expected = np.zeros((6, 6), np.uint8)
    expected[1:4, 1:4] = 3
    expected[4, 4] = 1
    np.testing.assert_array_equal(labels.array[0], expected)
    assert (labels.array[1][1:4, 1:4] == 1).all()
    labels.fill(0, (0, 0), 2)  # the background around is one region
    assert (labels.array[0] == 2).sum() == 36 - 9 - 1


def test_clear_and_copy_slices():
    labels = blank()
    labels.paint(1, [(20, 20)], 5.0, 1)
    labels.copy_slice(1, 3)
    np.testing.assert_array_equal(labels.array[3], labels.array[1])
    labels.clear_slice(1)
    assert labels.array[1].sum() == 0 and labels.array[3].sum() > 0


def test_a_slice_copied_onto_a_reviewed_one_takes_its_mark_in_the_same_undo_step():
    """A tester's Copy previous slice left its mark on the slice it wrote."""
    labels = blank()
    labels.paint(1, [(20, 20)], 5.0, 1)
    labels.set_reviewed(2)
    labels.set_reviewed(3)
    labels.copy_slice(1, 2)
    np.testing.assert_array_equal(labels.array[2], labels.array[1])
    assert labels.reviewed.tolist()[2:4] == [False, True]
    labels.undo()  # the copy and the mark's removal together
    assert not labels.array[2].any() and labels.reviewed[2]
    labels.copy_slice(0, 3)  # nothing changes: the mark stays
    assert labels.reviewed[3]


def test_interpolation_between_slices_grows_a_disc_and_keeps_a_constant_shape():
    labels = blank(shape=(5, 80, 80))
    labels.paint(0, [(40, 40)], 10.0, 1)
    labels.paint(4, [(40, 40)], 20.0, 1)
    labels.interpolate(0, 4)
    radii = [np.sqrt((labels.array[z] == 1).sum() / np.pi) for z in range(5)]
    assert radii[1] == pytest.approx(12.5, abs=0.6)
    assert radii[2] == pytest.approx(15.0, abs=0.6)
    assert radii[3] == pytest.approx(17.5, abs=0.6)
    same = blank(shape=(4, 30, 30))
    same.array[0, 5:20, 8:14] = 2
    same.array[3, 5:20, 8:14] = 2
    same.interpolate(3, 0)
    for z in (1, 2):
        np.testing.assert_array_equal(same.array[z], same.array[0])


def test_interpolation_moves_a_shape_whose_regions_on_the_two_slices_do_not_overlap():
    labels = blank(shape=(3, 30, 60))
    labels.array[0][disc((30, 60), (15, 20), 6.0)] = 1
    labels.array[2][disc((30, 60), (15, 40), 6.0)] = 1   # 20 mm away: the discs are disjoint
    labels.fill_between_slices()
    np.testing.assert_array_equal(labels.array[1], disc((30, 60), (15, 30), 6.0))  # halfway, same disc


def test_fill_between_slices_reports_each_slice_filled_and_a_stop_writes_nothing():
    """The window fills in a worker with progress and Cancel: a stop midway takes back the
    slices filled so far, leaves no undo step and tells no listener of a change that stays."""
    labels = blank(shape=(7, 30, 40))
    labels.array[0][disc((30, 40), (15, 20), 6.0)] = 1
    labels.array[6][disc((30, 40), (15, 20), 6.0)] = 1
    labels.paint(3, [(2, 2)], 1.0, 2)  # a step of the reader's own, before the fill
    before, reports = labels.array.copy(), []
    assert labels.fill_between_slices(should_stop=lambda: len(reports) == 2, progress=lambda *r: reports.append(r)) \
        is None
    assert reports == [(1, 5), (2, 5)]  # slices 1 to 5 are filled, one at a time
    np.testing.assert_array_equal(labels.array, before)
    assert labels.undo_step is not None and labels.undo_step.what == "brush stroke" and not labels.can_redo
    reports.clear()
    changes = labels.fill_between_slices(progress=lambda *r: reports.append(r))
    assert reports == [(n, 5) for n in range(1, 6)] and len(changes) == 5
    assert labels.undo_step.what == "fill between slices" and (labels.array[1:6] == 1).any(axis=(1, 2)).all()


def test_two_lesions_far_apart_each_end_on_their_own_side():
    """A tester's lung: a lesion on one slice, another 120 mm away two slices on; the fill
    moved the first into the second across the mediastinum. Two objects: nothing between."""
    labels = blank(shape=(4, 100, 120))
    labels.array[0][disc((100, 120), (30, 20), 4.0)] = 1
    labels.array[3][disc((100, 120), (80, 100), 3.0)] = 1
    labels.fill_between_slices()
    assert not labels.array[1:3].any()


def test_a_ring_that_moves_by_more_than_its_thickness_stays_a_ring():
    """The myocardium: a ring 3 mm thick, 8 mm further right four slices on. Blended in
    place, the slices between fell into pieces."""
    def ring(centre):
        return disc((80, 80), centre, 15.0) & ~disc((80, 80), centre, 12.0)
    labels = blank(shape=(5, 80, 80))
    labels.array[0][ring((40, 36))] = 2
    labels.array[4][ring((40, 44))] = 2
    labels.fill_between_slices()
    halfway = labels.array[2] == 2
    np.testing.assert_array_equal(halfway, ring((40, 40)))
    for z in (1, 3):  # one piece around one hole, on the line between the two
        mask = labels.array[z] == 2
        assert ndimage.label(mask, np.ones((3, 3)))[1] == 1 and ndimage.label(~mask)[1] == 2


def test_the_demo_myocardium_filled_towards_the_apex_stays_a_ring_around_the_cavity():
    """A tester cleared three slices of the demo's truth and filled them: the myocardium
    narrows by more than its thickness there, and came out as crescents and a blob (its
    Dice 0.44-0.61), with background between the cavity and the wall."""
    case = make_phantom("cardiac", seed=0)
    labels = LabelMap(case.labels.copy(), case.volume.spacing)
    labels.array[5:8] = 0
    labels.fill_between_slices()
    for z in (5, 6, 7):
        wall, cavity = labels.array[z] == 2, labels.array[z] == 3
        assert ndimage.label(wall, np.ones((3, 3)))[1] == 1 and ndimage.label(~wall)[1] == 2  # one ring
        truth = case.labels[z] == 2
        assert 2 * (wall & truth).sum() / (wall.sum() + truth.sum()) > 0.8
        around = ndimage.binary_dilation(cavity) & ~cavity
        assert (labels.array[z][around] != 0).all()  # the cavity touches its wall, no seam


def test_a_thin_crescent_and_a_small_blob_still_give_the_class_between_them():
    """The window's case: a right-ventricle crescent on one side, a few voxels left of it on
    the other (after shrinking); the signed distances blend to nothing, yet the class is
    labelled on both sides, so it is interpolated: the nearer slice's shape, moved."""
    labels = blank(shape=(5, 80, 80))
    crescent = disc((80, 80), (40, 40), 14.0) & ~disc((80, 80), (40, 40), 12.0)
    crescent[:, 44:] = False  # a thin C: its centroid lies in its hollow
    blob = disc((80, 80), (40, 62), 1.5)
    labels.array[0][crescent] = 1
    labels.array[4][blob] = 1
    assert not (crescent & blob).any()
    labels.fill_between_slices()
    sizes = [int((labels.array[z] == 1).sum()) for z in range(5)]
    assert all(sizes[1:4]), sizes
    assert sizes[1] > sizes[3]  # the crescent's side first, the blob's last


def test_a_class_labelled_on_one_side_of_the_gap_only_is_not_extended_and_is_named():
    """A large organ on one side only, blended with "far outside": it left a disc half its
    width on the next slice and nothing beyond (how much, set by the image's width). Like
    3D Slicer, a class on one side only is not extended; the other class is filled."""
    labels = blank(shape=(11, 200, 200))
    labels.array[0][disc((200, 200), (100, 100), 60.0)] = 1  # on slice 0 only
    labels.array[0][disc((200, 200), (20, 20), 8.0)] = 2
    labels.array[10][disc((200, 200), (20, 20), 10.0)] = 2   # on both sides
    assert labels.one_sided_classes() == {1: [(0, 10)]}
    labels.fill_between_slices()
    assert not (labels.array[1:10] == 1).any()
    assert all((labels.array[z] == 2).any() for z in range(11))
    assert labels.one_sided_classes() == {}  # nothing left to fill


def liver_and_kidney(shape=(21, 100, 100)):
    """The liver (1) drawn on slices 0, 10 and 20, a kidney (2) on slice 5 across its edge."""
    labels = blank(shape=shape, spacing=(1.0, 1.0, 2.0))
    liver, kidney = disc(shape[1:], (50, 50), 20.0), disc(shape[1:], (50, 72), 6.0)
    for z in (0, 10, 20):
        labels.array[z][liver] = 1
    labels.array[5][kidney] = 2
    return labels, liver, kidney


def test_each_class_is_filled_between_its_own_slices_though_another_is_drawn_between():
    """A radiologist's liver on slices 0, 10 and 20 and a kidney on slice 5: the kidney's
    slice broke the liver's gap, so the liver was not filled from 0 to 10, and the status bar
    named it. As 3D Slicer, each class follows its own slices; the kidney's voxels stay."""
    labels, liver, kidney = liver_and_kidney()
    before = labels.array.copy()
    assert labels.one_sided_classes() == {2: [(0, 5), (5, 10)]}  # the kidney, on one slice only
    labels.fill_between_slices()
    for z in range(21):
        expected = np.where(kidney, 2, np.where(liver, 1, 0)) if z == 5 else np.where(liver, 1, 0)
        np.testing.assert_array_equal(labels.array[z], expected, err_msg=f"slice {z}")
    assert labels.undo() and not labels.can_undo  # one undo step
    np.testing.assert_array_equal(labels.array, before)


@pytest.mark.parametrize("mode, protected", [("all", ()), ("background", ()), ("protect", (1,)), ("protect", (2,))])
def test_fill_between_slices_writes_background_only_whatever_the_overwrite_policy(mode, protected):
    """A filled voxel never replaces another class's (a person drew it), so "paint over
    everything" overwrites nothing, "background only" refuses nothing, and a protected class
    keeps its voxels and is itself still filled where it lies on both sides."""
    labels, liver, kidney = liver_and_kidney()
    labels.policy = OverwritePolicy(mode, frozenset(protected))
    labels.fill_between_slices()
    assert (labels.array[5][kidney] == 2).all() and (labels.array[5][liver & ~kidney] == 1).all()
    assert all((labels.array[z] == 1).sum() == liver.sum() for z in (1, 4, 6, 9, 15))
    assert not labels.kept  # nothing asked was refused: it only ever asks for background


def test_where_two_classes_interpolations_claim_a_voxel_the_one_it_lies_deeper_inside_wins():
    """Two discs of 12 mm, centres 17 mm apart, overlapping on the slices both are filled
    into (3 to 7): each voxel of the overlap goes to the disc whose centre is nearer (deeper
    inside its shape), whichever class value that is; where one class is drawn (slices 2
    and 8) the other's fill does not replace it."""
    shape = (11, 60, 80)
    left, right = disc(shape[1:], (30, 30), 12.0), disc(shape[1:], (30, 47), 12.0)
    columns = np.arange(80)[None, :].repeat(60, axis=0)
    for on_left, on_right in ((1, 2), (2, 1)):
        labels = blank(shape=shape)
        labels.array[[0, 10]] = np.where(left, on_left, 0)
        labels.array[[2, 8]] = np.where(right, on_right, 0)
        labels.fill_between_slices()
        for z in range(3, 8):
            plane = labels.array[z]
            assert (plane[left & ~right] == on_left).all() and (plane[right & ~left] == on_right).all()
            overlap = left & right
            assert (plane[overlap & (columns <= 37)] == on_left).all()   # nearer the left centre (30)
            assert (plane[overlap & (columns >= 40)] == on_right).all()  # nearer the right one (47)
            assert (plane[overlap] != 0).all() and not plane[~(left | right)].any()
        for z in (2, 8):
            np.testing.assert_array_equal(labels.array[z][right], on_right)


def test_a_reviewed_slice_holding_another_class_ends_every_class_run():
    """A reviewed slice is a person's whole answer: the liver absent from it is not filled
    across it, though it holds only the kidney."""
    labels, liver, kidney = liver_and_kidney()
    labels.set_reviewed(5)
    labels.fill_between_slices()
    assert not labels.array[1:5].any() and not labels.array[6:10].any()
    np.testing.assert_array_equal(labels.array[5], np.where(kidney, 2, 0))
    assert (labels.array[11:20] == 1).sum() == 9 * liver.sum()  # beyond it, filled as before
    assert labels.one_sided_classes() == {1: [(0, 5), (5, 10)], 2: [(0, 5), (5, 10)]}


def test_fill_between_slices_never_fills_a_reviewed_slice_and_stops_at_it():
    """A tester cleared a slice, marked it reviewed ("no infection") and filled between
    slices: 2071 voxels were interpolated into it, its mark kept."""
    labels = blank(shape=(7, 20, 20))
    for z in (0, 6):
        labels.array[z][disc((20, 20), (10, 10), 5.0)] = 1
    labels.set_reviewed(3)
    labels.fill_between_slices()
    assert not labels.array[1:6].any()  # both runs end at the empty reviewed slice
    labels.set_reviewed(3, False)
    labels.fill_between_slices()
    assert all(labels.array[z].any() for z in range(7))


def test_fill_between_slices_restores_every_class_of_a_cleared_phantom_slice():
    """The demo (cardiac phantom, seed 0): slice 8 cleared, 7 and 9 labelled. The right
    ventricle's regions on 7 and 9 are disjoint; every class still comes back, close to
    the phantom's true slice 8."""
    case = make_phantom("cardiac", seed=0)
    labels = LabelMap(case.labels.copy(), case.volume.spacing)
    z = 7
    assert not ((case.labels[z - 1] == 1) & (case.labels[z + 1] == 1)).any()
    labels.clear_slice(z)
    labels.fill_between_slices()
    for c in (1, 2, 3):
        truth, filled = case.labels[z] == c, labels.array[z] == c
        dice = 2 * (truth & filled).sum() / (truth.sum() + filled.sum())
        assert dice > 0.65, (c, dice)


def test_one_stroke_is_one_undo_step_and_undo_redo_round_trip():
    rng = np.random.default_rng(0)
    labels = blank()
    snapshots = [labels.array.copy()]
    for n in range(12):
        z = int(rng.integers(0, 5))
        if n % 3 == 2:
            labels.fill(z, rng.integers(0, 40, 2), int(rng.integers(0, 4)))
        else:
            labels.begin_stroke()
            for _ in range(5):  # several mouse moves
                labels.paint(z, rng.uniform(0, 40, (2, 2)), float(rng.uniform(1, 6)), int(rng.integers(0, 4)))
            labels.end_stroke()
        if not np.array_equal(labels.array, snapshots[-1]):
            snapshots.append(labels.array.copy())
    for expected in reversed(snapshots[:-1]):
        assert labels.undo()
        np.testing.assert_array_equal(labels.array, expected)
    assert not labels.undo()
    for expected in snapshots[1:]:
        assert labels.redo()
        np.testing.assert_array_equal(labels.array, expected)
    assert not labels.redo()
    labels.undo()
    labels.paint(0, [(1, 1)], 1.0, 3)  # a new edit drops what could be redone
    assert not labels.can_redo


def test_the_history_is_bounded_in_bytes_and_the_newest_step_survives():
    labels = blank(shape=(3, 100, 100), history_bytes=20_000)
    for n in range(40):
        labels.paint(n % 3, [(50, 50)], 20.0, n % 4 + 1)
        assert labels.history_nbytes() <= 20_000 or len(labels._undo) == 1
    assert 1 <= len(labels._undo) < 40
    before = labels.array.copy()
    big = blank(shape=(3, 100, 100), history_bytes=10)
    big.clear_slice(0)
    big.paint(0, [(50, 50)], 30.0, 1)  # bigger than the whole budget: still undoable
    assert big.undo() and big.array.sum() == 0
    assert labels.array.sum() == before.sum()


def test_edits_are_tight_boxes_and_their_events_keep_metrics_exact():
    rng = np.random.default_rng(1)
    prediction = rng.integers(0, 3, (5, 40, 50)).astype(np.uint8)
    labels = blank()
    matrix = ConfusionMatrix.from_arrays(prediction, labels.array, 4)
    edits = []

    def follow(edit):
        edits.append(edit)
        matrix.update_reference(edit.region, edit.old, edit.new, prediction)

    labels.events.changed.connect(follow)
    labels.paint(2, [(20, 25)], 3.0, 1)
    assert edits[-1].region == (slice(2, 3), slice(17, 24), slice(22, 29))
    for n in range(30):
        action = n % 4
        z = int(rng.integers(0, 5))
        if action == 0:
            labels.paint(z, rng.uniform(0, 45, (3, 2)), 4.0, int(rng.integers(0, 4)))
        elif action == 1:
            labels.fill(z, rng.integers(0, 40, 2), int(rng.integers(0, 4)))
        elif action == 2:
            labels.undo()
        else:
            labels.copy_slice(z, (z + 1) % 5)
        expected = ConfusionMatrix.from_arrays(prediction, labels.array, 4)
        np.testing.assert_array_equal(matrix.counts, expected.counts)
        np.testing.assert_array_equal(matrix.slice_counts, expected.slice_counts)


def test_nothing_changed_is_no_step_and_bad_values_are_refused():
    labels = blank()
    labels.paint(3, [(10, 10)], 2.0, 1)
    assert labels.paint(3, [(10, 10)], 2.0, 1) is None  # the same dab again changes nothing
    assert labels.undo() and not labels.undo()
    with pytest.raises(ValueError, match="uint8"):
        labels.paint(0, [(1, 1)], 1.0, 300)
    with pytest.raises(ValueError, match="uint8"):
        LabelMap(np.zeros((2, 2, 2), np.int32), (1, 1, 1))


def test_copy_from_a_prediction_and_fill_between_slices_are_single_steps():
    labels = blank(shape=(6, 40, 40))
    prediction = np.zeros((6, 40, 40), np.uint8)
    prediction[2, 10:20, 10:20] = 3
    labels.copy_from(prediction, z=2)
    np.testing.assert_array_equal(labels.array, prediction)
    labels.array[:] = 0
    labels.copy_from(prediction)
    np.testing.assert_array_equal(labels.array, prediction)
    labels.array[:] = 0
    labels.paint(0, [(20, 20)], 6.0, 1)
    labels.paint(3, [(20, 20)], 6.0, 1)
    labels.paint(5, [(20, 20)], 6.0, 2)
    labels.fill_between_slices()
    np.testing.assert_array_equal(labels.array[1], labels.array[0])  # same disc at both ends
    np.testing.assert_array_equal(labels.array[2], labels.array[0])
    assert labels.array[4].sum() == 0  # class 1 below, class 2 above: neither is extended
    labels.undo()
    assert labels.array[1].sum() == labels.array[2].sum() == 0


def one_percent_changed(labels_array, seed=3):
    """A prediction equal to ``labels_array`` but for 1 % of the voxels, spread everywhere."""
    rng = np.random.default_rng(seed)
    prediction = labels_array.copy()
    flat = prediction.reshape(-1)
    where = rng.choice(flat.size, flat.size // 100, replace=False)
    flat[where] = (flat[where] + 1) % 4
    return prediction


def test_a_whole_volume_copy_changing_one_percent_stores_only_what_changed(monkeypatch):
    import segview.core.labels as labels_module

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 3 * 40 * 50)  # slabs of 3 slices
    labels = blank(shape=(10, 40, 50))
    labels.array[2:8, 10:30, 10:40] = 1
    before = labels.array.copy()
    prediction = one_percent_changed(before)
    heard = []
    labels.events.changed.connect(heard.append)
    with labels.step():
        assert labels.copy_from(prediction) == np.count_nonzero(before != prediction)
    np.testing.assert_array_equal(labels.array, prediction)
    # One edit per slab of at most 3 slices, each a region with its old and new values.
    edits = list(heard)
    assert len(edits) == 4 and all(len(e.slices) <= 3 for e in edits)
    for edit in edits:
        np.testing.assert_array_equal(edit.old, before[edit.region])
        np.testing.assert_array_equal(edit.new, prediction[edit.region])
    changed = int(np.count_nonzero(before != prediction))
    dense = 2 * before.size
    assert labels.history_nbytes() == 6 * changed  # a 4-byte position, the old and the new value
    assert labels.history_nbytes() <= 0.035 * dense
    heard.clear()
    assert labels.undo()
    np.testing.assert_array_equal(labels.array, before)
    # The undo hands the changed event each edit taken back, by the same key, with its arrays.
    assert [e.key for e in heard] == [e.key for e in reversed(edits)] and all(e.undo for e in heard)
    for edit in heard:
        np.testing.assert_array_equal(edit.new, before[edit.region])
        np.testing.assert_array_equal(edit.old, prediction[edit.region])
    heard.clear()
    assert labels.redo()
    np.testing.assert_array_equal(labels.array, prediction)
    assert [e.key for e in heard] == [e.key for e in edits] and not any(e.undo for e in heard)


def test_copy_from_the_chosen_slices_only():
    labels = blank(shape=(6, 20, 20))
    source = np.full((6, 20, 20), 2, np.uint8)
    where = np.array([True, False, True, True, False, True])
    heard = []
    labels.events.changed.connect(heard.append)
    assert labels.copy_from(source, where=where) == 4 * 400
    np.testing.assert_array_equal(labels.array.any(axis=(1, 2)), where)
    assert [(e.region[0].start, e.region[0].stop) for e in heard] == [(0, 1), (2, 4), (5, 6)]
    heard.clear()
    assert labels.copy_from(source, z=1) == 400 and [e.region[0].start for e in heard] == [1]
    heard.clear()
    assert labels.copy_from(source) == 400 and [e.region[0].start for e in heard] == [4]  # the one left
    assert labels.copy_from(source) == 0


def test_a_step_is_stored_as_the_smaller_of_its_changes_and_its_box():
    labels = blank(shape=(2, 40, 40))
    labels.paint(0, [(20, 20)], 8.0, 1)  # a disc: most of its box changes
    (stored,) = labels._undo[-1]
    changed = int(labels.array.sum())
    assert stored.index is None and labels.history_nbytes() == 2 * stored.old.size < 6 * changed
    labels.undo()
    assert labels.array.sum() == 0 and labels.redo() and labels.array.sum() == changed


def test_the_history_bound_holds_after_every_step_and_a_step_over_it_is_kept_alone():
    labels = blank(shape=(4, 60, 60), history_bytes=5_000)
    rng = np.random.default_rng(0)
    for n in range(30):
        with labels.step():
            for _ in range(int(rng.integers(1, 4))):
                labels.paint(int(rng.integers(0, 4)), rng.uniform(0, 60, (2, 2)), float(rng.uniform(2, 9)), n % 3 + 1)
        assert labels.history_nbytes() <= 5_000 or len(labels._undo) == 1
    assert labels.copy_from(np.full(labels.array.shape, 3, np.uint8))
    assert len(labels._undo) == 1 and labels.history_nbytes() > 5_000  # kept, alone
    assert labels.undo() and not labels.can_undo


@pytest.mark.parametrize("share", [0.01, 0.9])  # sparse patches, and whole boxes where most changes
def test_patches_from_write_what_copy_from_writes_in_one_undoable_step(share):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (9, 20, 24), dtype=np.uint8)
    source = labels.copy()
    differs = rng.random(labels.shape) < share
    source[differs] = (source[differs] + 1) % 3
    where = np.ones(9, bool)
    where[4] = False  # a slice the source does not hold
    expected = labels.copy()
    expected[where] = source[where]
    label_map, heard = LabelMap(labels.copy(), (1.0, 1.0, 1.0)), []
    label_map.events.changed.connect(heard.append)
    patches = label_map.patches_from(source, where)
    assert not heard and (label_map.array == labels).all()  # computed, nothing written
    with label_map.step():
        changed = label_map.write_patches(patches)
    np.testing.assert_array_equal(label_map.array, expected)
    assert changed == int((expected != labels).sum()) == sum(len(e.changes()[0]) for e in heard)
    assert label_map.undo() and (label_map.array == labels).all() and not label_map.can_undo
    assert label_map.redo() and (label_map.array == expected).all()
    assert label_map.patches_from(source, where, should_stop=lambda: True) is None


def test_kept_counts_what_the_brush_settings_refused_in_the_last_step():
    image = np.zeros((2, 20, 20), np.int16)
    image[:, :, 10:] = 300
    labels = LabelMap(np.zeros((2, 20, 20), np.uint8), (1, 1, 1), intensities=image)
    labels.array[0, 5:10, 5:10] = 2  # 25 voxels of class 2
    labels.policy = OverwritePolicy("background")
    labels.begin_stroke()
    labels.paint(0, [(7, 7)], 1.0, 0)  # the eraser: 5 voxels of class 2 under it, all kept
    labels.paint(0, [(7, 8)], 1.0, 0)  # 3 more
    assert labels.end_stroke() == []
    assert (labels.kept.by_policy, labels.kept.by_intensity) == (8, 0)  # (7,6..9), (6,7..8), (8,7..8)
    assert labels.kept_reason() == "8 voxels kept by 'Paint over: background only'"
    labels.clear_slice(0)  # a step of its own: its own tally
    assert labels.kept.by_policy == 25 and (labels.array[0] == 2).sum() == 25
    labels.policy = OverwritePolicy()
    labels.intensity_range = (-100, 100)
    labels.array[1] = 1
    labels.clear_slice(1)  # the right half is outside the range
    assert (labels.kept.by_policy, labels.kept.by_intensity) == (0, 200)
    assert labels.kept_reason() == "200 outside the intensity range -100 to 100"
    assert labels.fill(1, (50, 50), 3) is None and not labels.kept  # outside: nothing asked, nothing kept
    labels.intensity_range = None
    assert labels.clear_slice(1) is not None and not labels.kept and not labels.array[1].any()
    assert labels.clear_slice(1) is None and not labels.kept  # nothing to clear: nothing kept


def test_a_stored_change_names_the_slices_it_changed():
    """Fill between slices says which slices it filled, from the change the history keeps
    (its voxels indexed, or its whole region)."""
    from segview.core.labels import Edit, Patch

    old = np.zeros((4, 5, 6), np.uint8)
    new = old.copy()
    new[1, 2, 3] = 1
    new[3, 0, 0] = 2
    sparse = Patch.of(Edit((slice(2, 6), slice(0, 5), slice(0, 6)), old, new, 1))
    assert sparse.index is not None and sparse.changed_slices() == [3, 5]
    new[:] = 1  # most voxels changed: stored whole
    whole = Patch.of(Edit((slice(0, 4), slice(0, 5), slice(0, 6)), old, new, 2))
    assert whole.index is None and whole.changed_slices() == [0, 1, 2, 3]


def test_each_undo_step_keeps_the_name_of_the_edit_that_made_it_its_slices_and_classes():
    """What undo says it took back: the name given when the step was made (a tool's own,
    or that of a step opened around it), the slices and the classes it changed."""
    labels = LabelMap(np.zeros((4, 10, 10), np.uint8), (1.0, 1.0, 1.0))

    def last():
        step = labels.undo_step
        return step.what, step.slices(), step.values()

    labels.paint(1, [(5, 5)], 1.5, 2)
    assert last() == ("brush stroke", [1], [2])
    labels.copy_slice(1, 3)  # opens a step of its own inside: the tool's name still
    assert last() == ("copy of a slice", [3], [2])
    with labels.step("eraser stroke"):  # a drag: the tools inside are part of it
        labels.paint(1, [(5, 5)], 1.5, 0)
        labels.paint(3, [(5, 5)], 1.5, 0)
    assert last() == ("eraser stroke", [1, 3], [2])
    labels.set_reviewed(2)
    assert last() == ("review mark", [2], [])
    labels.write((slice(0, 1), slice(0, 1), slice(0, 1)), np.full((1, 1, 1), 7, np.uint8))
    assert last() == ("edit", [0], [7])  # named by nobody
    assert labels.undo() and labels.undo() and labels.redo_step.what == "review mark"
    assert labels.redo() and last()[0] == "review mark" and labels.redo_step.what == "edit"
