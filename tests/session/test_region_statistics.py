"""Region statistics through the session: the image under a class of the labels or of a
model's prediction, slice or volume, against SimpleITK's LabelStatisticsImageFilter and
numpy; a model's unpredicted slices are an empty region."""
import math

import numpy as np
import pytest
import SimpleITK as sitk

from segview.session import ReviewSession
from segview.session.errors import SessionError
from segview.session.statistics import BLOCK, statistics_rows, statistics_text

from .conftest import CLASSES, tiny_case


def sitk_statistics(image: np.ndarray, labels: np.ndarray, value: int):
    statistics = sitk.LabelStatisticsImageFilter()
    statistics.Execute(sitk.GetImageFromArray(image), sitk.GetImageFromArray(labels))
    return statistics


def assert_equal_to_sitk(found, image, labels, value, voxel_ml):
    reference = sitk_statistics(image, labels, value)
    assert found.voxels == reference.GetCount(value)
    assert found.volume_ml == pytest.approx(reference.GetCount(value) * voxel_ml)
    assert found.mean == pytest.approx(reference.GetMean(value))
    assert found.std == pytest.approx(reference.GetSigma(value))
    assert (found.min, found.max) == (reference.GetMinimum(value), reference.GetMaximum(value))
    assert found.median == np.median(image[labels == value])


@pytest.fixture
def session():
    volume, labels = tiny_case(3, slices=BLOCK + 5)  # more slices than a block
    session = ReviewSession.open(volume, classes=list(CLASSES))
    session.labels.copy_from(labels)
    return session


def test_the_labels_classes_over_the_volume_and_a_slice(session):
    image, labels = session.volume.array, session.labels.array
    voxel_ml = 0.5 * 0.5 * 2.0 / 1000
    for value in (1, 2):
        assert_equal_to_sitk(session.region_statistics("labels", value), image, labels, value, voxel_ml)
        assert_equal_to_sitk(session.region_statistics("labels", value, z=4), image[4], labels[4], value, voxel_ml)


def test_a_models_class_counts_its_predicted_slices_only(session, checkpoints):
    session.load_model("A", checkpoints["A"])
    pending = session.region_statistics("A", 1)
    assert pending.voxels == 0 and math.isnan(pending.mean)  # nothing predicted yet
    prediction = np.roll(session.labels.array, 2, axis=2)
    session.set_prediction("A", prediction)
    found = session.region_statistics("A", 1)
    assert_equal_to_sitk(found, session.volume.array, prediction, 1, 0.5 * 0.5 * 2.0 / 1000)
    rows = list(statistics_rows(session, z=3))
    assert [(r.source, r.value) for r in rows] == [("labels", 1), ("labels", 2), ("A", 1), ("A", 2)]
    assert rows[2].statistics == session.region_statistics("A", 1, z=3)
    with pytest.raises(SessionError, match="No model is loaded as B"):
        session.region_statistics("B", 1)


def test_a_class_absent_is_empty_and_the_rows_stop_when_asked(session):
    session.labels.copy_from(np.zeros_like(session.labels.array))
    empty = session.region_statistics("labels", 2, z=0)
    assert empty.voxels == 0 and empty.volume_ml == 0 and math.isnan(empty.median)
    assert list(statistics_rows(session, should_stop=lambda: True)) == []


def test_a_rectangle_and_an_ellipse_drawn_on_a_plane(session):
    image = session.volume.array
    # a rectangle on axial slice 4: the pixels whose centres are inside, corners in any order
    box = session.shape_statistics(0, 4, (5.0, 7.6), (2.2, 3.0), "rectangle")
    assert box.voxels == 3 * 5 and box.mean == pytest.approx(image[4, 3:6, 3:8].mean())
    # an ellipse on coronal plane y = 6, against a hand-made mask and SimpleITK
    plane = image[:, 6, :]
    (r0, c0), (r1, c1) = (1.5, 2.0), (9.5, 14.0)
    hand = np.zeros(plane.shape, np.uint8)
    for r in range(plane.shape[0]):
        for c in range(plane.shape[1]):
            hand[r, c] = ((r - 5.5) / 4.0) ** 2 + ((c - 8.0) / 6.0) ** 2 <= 1
    assert 0 < hand.sum() < hand.size
    found = session.shape_statistics(1, 6, (r0, c0), (r1, c1))
    assert_equal_to_sitk(found, plane, hand, 1, 0.5 * 0.5 * 2.0 / 1000)


def test_a_shape_off_the_image_or_of_another_kind_is_refused_and_an_empty_one_has_no_values(session):
    with pytest.raises(SessionError, match="not on the image"):
        session.shape_statistics(0, session.volume.shape[0], (1, 1), (4, 4))
    with pytest.raises(ValueError, match="shape must be one of"):
        session.shape_statistics(0, 0, (1, 1), (4, 4), "circle")
    empty = session.shape_statistics(0, 0, (1.2, 1.2), (1.4, 1.4))  # no pixel centre inside
    assert empty.voxels == 0 and empty.volume_ml == 0 and math.isnan(empty.mean)
    assert statistics_text(empty, " HU") == "no voxel centre inside"  # not NaN noise
    one = session.shape_statistics(0, 0, (0.6, 0.6), (1.4, 1.4))  # one pixel centre: 0.0005 mL, not "0.00"
    assert one.voxels == 1 and statistics_text(one).startswith(f"0.000{round(one.volume_ml * 1e4)} mL (1 voxel)")
