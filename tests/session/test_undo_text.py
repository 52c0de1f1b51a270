"""Undo and redo say what they took back, and where (the edit may lie on a slice not on
screen): each kind of edit's undo step carries its name, its slices (numbered from 1 as the
window shows them) and its classes."""
import numpy as np
import pytest

from segview.session import ReviewSession, SessionError

from .conftest import CLASSES, make_checkpoint, tiny_case


def open_case() -> ReviewSession:
    """6 slices of 24 x 24: an organ disc (centre 12, 12) holding a lesion spot on slices 1, 3, 5."""
    volume, labels = tiny_case(0)
    return ReviewSession.open(volume, labels=labels, classes=CLASSES)


@pytest.mark.parametrize("edit, said", [
    (lambda s: s.labels.paint(3, [(2, 2)], 1.0, 2), "brush stroke on slice 4 (lesion)"),
    (lambda s: s.fill(1, (12, 14), 2), "fill on slice 2 (organ, lesion)"),
    (lambda s: s.labels.clear_slice(1), "clear slice on slice 2 (organ)"),
    (lambda s: s.labels.copy_slice(1, 0), "copy of a slice on slice 1 (organ, lesion)"),
    (lambda s: s.labels.fill_polygon(5, [(1, 1), (1, 4), (4, 4), (4, 1)], 2), "polygon fill on slice 6 (lesion)"),
    (lambda s: s.mark_reviewed(4), "review mark on slice 5"),
    (lambda s: (s.labels.paint(1, [(2, 2)], 0.4, 1), s.run_tool("remove_islands", 1, min_mm3=1.0)),
     "remove islands on slice 2 (organ)"),
])
def test_undo_and_redo_say_which_edit_on_which_slices_of_which_classes(edit, said):
    session = open_case()
    edit(session)
    before_undo = session.labels.array.copy()
    assert session.undo() == said
    assert session.redo() == said
    np.testing.assert_array_equal(session.labels.array, before_undo)


def test_nothing_to_undo_or_redo_says_none():
    session = open_case()
    assert session.undo() is None and session.redo() is None


def test_taking_a_review_mark_back_is_named_so():
    session = open_case()
    session.mark_reviewed(0)
    session.mark_reviewed(0, False)
    assert session.undo() == "review mark taken back on slice 1"
    assert session.undo() == "review mark on slice 1"


def test_a_models_labels_copied_say_the_model_and_every_slice_they_changed(tmp_path):
    session = open_case()
    session.load_model("A", make_checkpoint(tmp_path / "a.safetensors", 1))
    prediction = session.labels.array.copy()
    prediction[prediction == 2] = 1  # the model sees no lesion: slices 1, 3, 5 change
    session.set_prediction("A", prediction)
    session.copy_prediction("A")
    assert session.undo() == "labels from model A on slices 1, 3, 5 (organ, lesion)"
    session.copy_prediction("A", z=2)
    assert session.undo() == "labels from model A on slice 3 (organ, lesion)"


def test_undo_is_refused_while_a_copy_is_written_into_the_labels(tmp_path):
    session = open_case()
    session.load_model("A", make_checkpoint(tmp_path / "a.safetensors", 1))
    session.set_prediction("A", np.zeros_like(session.labels.array))
    job = session.copy_job("A")
    writing = session.start_copy(job, job())
    with pytest.raises(SessionError, match="copy is being written"):
        session.undo()
    writing.finish()
    assert session.undo() == "labels from model A on 6 slices (1 to 6) (organ, lesion)"
