"""Region statistics through the session: the image under a class of the labels or of a
model's prediction, slice or volume, against SimpleITK's LabelStatisticsImageFilter and
numpy; a model's unpredicted slices are an empty region."""
import math

import numpy as np
import pytest
import SimpleITK as sitk

from segview.session import ReviewSession
from segview.session.errors import SessionError
from segview.session.statistics import BLOCK, statistics_rows

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
