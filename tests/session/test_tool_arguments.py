"""A class tool's arguments are checked when its job is made (issue 23): a mistake is a
SessionError in the person's words there and then, never a failure in the worker."""
import numpy as np
import pytest

from segview.session import ReviewSession, SessionError

from .conftest import tiny_case


@pytest.fixture
def session():
    volume, labels = tiny_case(0)
    opened = ReviewSession.open(volume)
    opened.labels.array[:] = labels
    yield opened
    opened.close(discard=True)


@pytest.mark.parametrize("tool, args, options, message", [
    ("sharpen", (1,), {}, "unknown tool 'sharpen'"),
    ("smooth", (1, "gaussian", 3.0), {}, "median, opening or closing, not 'gaussian'"),
    ("smooth", (1, "median", 0.0), {}, "kernel must be > 0 mm"),
    ("smooth", (1, "median", float("nan")), {}, "kernel_mm must be a finite number"),
    ("smooth", (1, "median"), {}, "missing a required argument: 'kernel_mm'"),
    ("margin", (0, 2.0), {}, "a class value is 1 to 255 (0 is background), not 0"),
    ("margin", (1, 0.0), {}, "a margin of 0 mm changes nothing"),
    ("remove_islands", (1,), {}, "give either min_mm3 or keep_largest=True"),
    ("remove_islands", (1, -5.0), {}, "min_mm3 must be >= 0"),
    ("fill_holes", (1,), {"axis": 3}, "axis must be 0, 1 or 2"),
    ("logical_operation", ("xor", 1, 2), {}, "add, copy, subtract or intersect, not 'xor'"),
    ("logical_operation", ("add", 1, np.zeros((2, 2), bool)), {}, "differ in shape"),
    ("logical_operation", ("add", 1, 300), {}, "a class value is 1 to 255"),
    ("grow_from_seed", ((0, 99, 0), 1, 0.0, 10.0), {}, "lies outside the image"),
    ("grow_from_seed", ((0, 1, 1), 1, 10.0, 0.0), {}, "the intensity range is empty"),
    ("grow_confidence_connected", ((0, 1, 1), 1), {"colour": "red"}, "unexpected keyword argument 'colour'"),
])
def test_a_bad_argument_is_refused_when_the_job_is_made(session, tool, args, options, message):
    before = session.labels.array.copy()
    with pytest.raises(SessionError) as raised:
        session.tool_job(tool, *args, **options)
    assert message in str(raised.value)
    np.testing.assert_array_equal(session.labels.array, before)


@pytest.mark.parametrize("tool, args, options", [
    ("smooth", (1, "median", 3.0), {}),
    ("margin", (1, -1.0), {}),
    ("remove_islands", (None,), {"keep_largest": True}),
    ("fill_holes", (2,), {"per_slice": True}),
    ("logical_operation", ("add", 1, 2), {}),
    ("grow_from_seed", ((2, 12, 12), 1, 0.0, 10_000.0), {"axis": 0}),
])
def test_good_arguments_make_a_job_that_runs(session, tool, args, options):
    job = session.tool_job(tool, *args, **options)
    assert job() is not None
