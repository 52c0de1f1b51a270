"""The measures dock's figures through the session, against independent references: class
volumes as voxels counted by hand times the voxel's volume, boundary scores as
``segview evaluate`` computes them (``surface_scores`` of the whole volume or of one slice),
cardiac and lung measures counted by hand; the jobs stop when told to."""
import numpy as np
import pytest

from segview.core.classes import named_classes
from segview.core.measures import MEASURE_BLOCK, clinical_measures, measure_slices
from segview.core.metrics import surface_scores
from segview.session import ReviewSession
from segview.session.measures import (PLOT_CHUNK, measure_rows, measured_slices, plotted_values,
                                      scores_along_slices_job, slice_scores_job, volume_job)

from .conftest import CLASSES, SPACING, tiny_case

VOXEL_ML = float(np.prod(SPACING)) / 1000
CARDIAC = named_classes(["background", "right ventricle", "myocardium", "left ventricle"])


def never() -> bool:
    return False


def same_scores(found, expected) -> bool:
    return all(np.allclose(getattr(found, name), getattr(expected, name), equal_nan=True)
               for name in ("hausdorff", "hausdorff95", "average_surface_distance", "surface_dice"))


@pytest.fixture
def session(checkpoints):
    """The tiny case's labels, and as model A the labels shifted by two voxels: every slice predicted."""
    volume, labels = tiny_case(3, slices=MEASURE_BLOCK + 5)  # more slices than a block
    session = ReviewSession.open(volume, classes=list(CLASSES))
    session.labels.copy_from(labels)
    session.load_model("A", checkpoints["A"])
    session.set_prediction("A", np.roll(labels, 2, axis=2))
    return session


def test_class_volumes_are_counted_voxels_over_the_measured_slices():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (2 * MEASURE_BLOCK + 3, 9, 7)).astype(np.uint8)
    measured = rng.random(len(labels)) < 0.6
    rows = measure_rows(labels, measured, CARDIAC, SPACING)
    for value in (1, 2, 3):
        assert rows[f"volume {value}"] == pytest.approx(np.count_nonzero(labels[measured] == value) * VOXEL_ML)
    assert rows["lv"] == rows["volume 3"] and rows["rv"] == rows["volume 1"]
    assert rows["mass"] == pytest.approx(np.count_nonzero(labels[measured] == 2) * VOXEL_ML * 1.05)
    assert "lungs" not in rows


def test_nothing_measured_gives_no_clinical_measures():
    labels = np.ones((3, 4, 4), np.uint8)
    rows = measure_rows(labels, np.zeros(3, bool), CARDIAC, SPACING)
    assert rows == {"volume 1": 0.0, "volume 2": 0.0, "volume 3": 0.0}


def test_the_infected_share_counts_the_lung_mask_and_the_infection():
    classes = named_classes(["background", "infection"])
    labels = np.zeros((MEASURE_BLOCK + 4, 6, 6), np.uint8)
    lungs = np.zeros(labels.shape, bool)
    lungs[:, 1:5, 1:5] = True
    labels[2:9, 3:6, 3:6] = 1  # partly outside the mask: still lung
    measured = np.ones(len(labels), bool)
    rows = measure_rows(labels, measured, classes, SPACING, lung_mask=lungs)
    lung_voxels = np.count_nonzero(lungs | (labels == 1))
    assert rows["lungs"] == pytest.approx(lung_voxels * VOXEL_ML)
    assert rows["infected"] == pytest.approx(np.count_nonzero(labels == 1) * VOXEL_ML)
    assert rows["infected %"] == pytest.approx(100 * np.count_nonzero(labels == 1) / lung_voxels)
    assert "lungs" not in measure_rows(labels, measured, classes, SPACING)  # lungs unknown


def test_a_count_in_blocks_is_the_count_of_evaluate():
    labels = np.random.default_rng(2).integers(0, 4, (3 * MEASURE_BLOCK + 1, 8, 8)).astype(np.uint8)
    rows = measure_rows(labels, np.ones(len(labels), bool), CARDIAC, SPACING)
    evaluated = clinical_measures(labels, CARDIAC, SPACING)
    assert rows["volume 3"] == evaluated["volume_left_ventricle_ml"]
    assert (rows["lv"], rows["rv"], rows["mass"]) == (evaluated["lv_blood_ml"], evaluated["rv_blood_ml"],
                                                      evaluated["myocardial_mass_g"])


def test_a_count_stops_between_blocks():
    asked = []

    def stop_at_the_second() -> bool:
        asked.append(True)
        return len(asked) > 1

    labels = np.zeros((2 * MEASURE_BLOCK, 4, 4), np.uint8)
    assert measure_slices(labels, CARDIAC, SPACING, should_stop=stop_at_the_second) is None


def test_measured_slices_follow_reviewed_and_predicted(session):
    for z in (1, 2, 5):
        session.mark_reviewed(z)
    session.models["A"].predicted[2] = False  # pending
    measured, scored = measured_slices(session, reviewed_only=True)
    assert np.flatnonzero(measured).tolist() == [1, 5] and np.flatnonzero(scored["A"]).tolist() == [1, 5]
    measured, scored = measured_slices(session, reviewed_only=False)
    assert not measured[2] and measured.sum() == len(measured) - 1
    assert (scored["A"] == measured).all()


def test_the_volume_job_gives_the_figures_of_evaluate(session):
    measured, scored = measured_slices(session, reviewed_only=False)
    values = list(volume_job(session, measured, scored, 2.0, None)(should_stop=never))
    assert [kind for kind, _ in values] == ["measures", "boundary"]
    rows = values[0][1]
    prediction, labels = session.models["A"].prediction, session.labels.array
    for column, array in (("labels", labels), ("A", prediction)):
        assert rows[column]["volume 1"] == pytest.approx(np.count_nonzero(array == 1) * VOXEL_ML)
    slot, scores = values[1][1]
    assert slot == "A"
    assert same_scores(scores, surface_scores(prediction, labels, 3, SPACING, 2.0))


def test_a_stopped_volume_job_yields_nothing(session):
    measured, scored = measured_slices(session, reviewed_only=False)
    assert list(volume_job(session, measured, scored, 2.0, None)(should_stop=lambda: True)) == []


def test_the_slice_job_scores_the_slice_in_2d(session):
    prediction, labels = session.models["A"].prediction, session.labels.array
    [(z, scores)] = list(slice_scores_job(session, 4, 1.0)(should_stop=never))
    assert z == 4 and same_scores(scores["A"], surface_scores(prediction[4], labels[4], 3, SPACING[:2], 1.0))
    session.models["A"].predicted[4] = False
    assert slice_scores_job(session, 4, 1.0) is None  # nothing to score


def test_scores_along_slices_come_a_few_slices_at_a_time(session):
    chosen = np.arange(0, PLOT_CHUNK + 3)
    values = list(scores_along_slices_job(session, {"A": chosen}, 1.0)(should_stop=never))
    assert [part.tolist() for _, part, _ in values] == [chosen[:PLOT_CHUNK].tolist(), chosen[PLOT_CHUNK:].tolist()]
    prediction, labels = session.models["A"].prediction, session.labels.array
    slot, part, rows = values[1]
    z = int(part[0])
    expected = surface_scores(prediction[z], labels[z], 3, SPACING[:2], 1.0)
    assert slot == "A" and np.allclose(rows["hausdorff95"][z], expected.hausdorff95, equal_nan=True)
    assert list(scores_along_slices_job(session, {"A": chosen}, 1.0)(should_stop=lambda: True)) == []


@pytest.mark.parametrize("value, expected", [(None, [1.5, np.nan, 3.0]), (1, [1.0, np.nan, np.nan]),
                                             (2, [2.0, np.nan, 3.0]), (5, [np.nan] * 3)])
def test_plotted_values_are_a_class_or_the_mean_of_the_classes(value, expected):
    rows = np.array([[np.nan, 1.0, 2.0], [np.nan, np.nan, np.nan], [np.nan, np.nan, 3.0]])
    assert np.allclose(plotted_values(rows, value), expected, equal_nan=True)
