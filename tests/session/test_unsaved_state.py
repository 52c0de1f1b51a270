"""ReviewSession.modified: whether what is open differs from what was opened or last saved,
undo and redo included."""
import pytest

from segview.session import ReviewSession

from .conftest import tiny_case


@pytest.fixture
def session():
    opened = ReviewSession.open(tiny_case(0)[0])
    yield opened
    opened.close(discard=True)


def paint(session, z=1, value=1):
    session.labels.paint(z, [(5, 5)], 2.0, value)


def test_undoing_an_edit_leaves_nothing_unsaved_and_redoing_it_does(session):
    paint(session)
    assert session.modified
    session.labels.undo()
    assert not session.modified
    session.labels.redo()
    assert session.modified


def test_undoing_back_to_the_saved_labels_leaves_nothing_unsaved(session, tmp_path):
    paint(session)
    session.save(tmp_path / "case.labels.nii.gz")
    paint(session, z=2)
    session.labels.undo()
    assert not session.modified


def test_undoing_a_saved_edit_is_unsaved_and_redoing_it_is_not(session, tmp_path):
    paint(session)
    session.save(tmp_path / "case.labels.nii.gz")
    session.labels.undo()
    assert session.modified
    session.labels.redo()
    assert not session.modified


def test_a_new_edit_after_undo_is_unsaved_though_as_many_steps_deep(session, tmp_path):
    paint(session)
    session.save(tmp_path / "case.labels.nii.gz")
    session.labels.undo()
    paint(session, z=2)  # one step deep again, but other labels
    assert session.modified


def test_a_review_mark_taken_back_by_undo_is_not_unsaved_and_a_ruler_is(session):
    session.mark_reviewed(1)
    assert session.modified
    session.labels.undo()
    assert not session.modified
    session.rulers.add((1, 2.0, 2.0), (1, 8.0, 8.0), axis=0)
    assert session.modified  # a ruler is no undo step: it stays unsaved until saved


def test_a_step_half_made_is_unsaved(session):
    session.labels.begin_stroke()
    paint(session)
    assert session.modified
    session.labels.abort_stroke()  # nothing of it kept: the labels as opened
    assert not session.modified


def test_undo_beyond_the_steps_the_history_dropped_is_still_unsaved(session):
    session.labels.history_bytes = 1  # each new step drops the older ones
    paint(session, z=1)
    paint(session, z=2)
    session.labels.undo()  # back to after the first edit, not to the labels as opened
    assert session.labels.array[1].any() and not session.labels.can_undo
    assert session.modified
