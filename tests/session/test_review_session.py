"""ReviewSession without a window: each defect the review-session issue names, reproduced on
the session, plus the transitions a script relies on."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from segview.core.dicom import write_dicom_series
from segview.core.errors import LabelSaveError, VolumeLoadError
from segview.core.io import load_classes, save_labels
from segview.core.labels import OverwritePolicy
from segview.core.metrics import dice_per_class
from segview.core.review_state import review_path
from segview.core.volume import Volume
from segview.session import ReviewSession, SessionError, Worklist, read_label_file
from segview.session.case_files import CaseLock

from ..core.test_dicom import earlier_grid_labels, nearest_earlier, uneven_series
from .conftest import CLASSES, make_dataset, tiny_case


@pytest.fixture
def series(tmp_path):
    """A tiny MR series as DICOM in study/series/ under a folder; its labels."""
    volume, labels = tiny_case(3)
    folder = tmp_path / "study" / "series"
    write_dicom_series(volume, folder, series_description="tiny")
    return tmp_path / "study", labels


def open_with_models(image, checkpoints, **options) -> ReviewSession:
    session = ReviewSession.open(image, **options)
    for slot, path in checkpoints.items():
        session.load_model(slot, path)
    assert session.predict()
    return session


def test_a_second_image_gets_models_whose_predictions_fit_it(tmp_path, checkpoints):
    # The defect: predictions of the first image's shape were scored against the second's labels.
    first = open_with_models(tiny_case(0)[0], checkpoints)
    other, labels = tiny_case(1, slices=9, size=30)
    second = ReviewSession.open(other, labels=labels)
    for slot, model in first.models.items():
        second.add_model(slot, model.path, model.predictor)
    first.close()
    assert second.predict()
    for slot in "AB":
        assert second.prediction(slot).shape == (9, 30, 30)
        expected = dice_per_class(second.prediction(slot), labels, 3)
        np.testing.assert_allclose(second.scores(slot, reviewed_only=False).dice, expected)


def test_copying_a_model_marks_nothing_reviewed_and_undo_takes_the_copy_back(checkpoints):
    session = open_with_models(tiny_case(0)[0], checkpoints)
    session.copy_prediction("A")
    assert not session.reviewed.any()
    assert np.isnan(session.scores("A").mean_dice)  # nothing reviewed: no flattering 1.000
    np.testing.assert_array_equal(session.labels.array, session.prediction("A"))
    session.mark_reviewed(2)
    session.labels.undo()
    assert not session.reviewed.any()
    session.labels.undo()
    assert not session.labels.array.any()
    session.labels.redo()
    session.labels.redo()
    assert session.reviewed.tolist() == [False, False, True, False, False, False]


def test_a_model_copy_never_overwrites_a_reviewed_slice_wholesale_and_unmarks_one_it_is_asked_onto(checkpoints):
    """A tester's Labels from model B over the whole volume replaced three corrected,
    reviewed slices and kept their marks: B then scored 1.000 over the reviewed slices."""
    session = open_with_models(tiny_case(0)[0], checkpoints)
    session.labels.paint(2, [(10, 10)], 3.0, 1)  # corrected by hand
    session.mark_reviewed(2)
    session.mark_reviewed(4)  # reviewed empty: "nothing here"
    corrected = session.labels.array[[2, 4]].copy()
    assert 2 in session.slices_kept("B") and set(session.slices_kept("B")) <= {2, 4}
    session.copy_prediction("B")
    np.testing.assert_array_equal(session.labels.array[[2, 4]], corrected)  # the person's answers stay
    for z in (0, 1, 3, 5):
        np.testing.assert_array_equal(session.labels.array[z], session.prediction("B")[z])
    assert session.reviewed.tolist() == [False, False, True, False, True, False]
    job = session.copy_job("B")  # the window's route: the same slices
    assert session.finish_copy(job, job()) == 0
    # Asked onto one reviewed slice, the copy is the model's labels there, unchecked: the mark goes.
    changed = session.copy_prediction("B", z=2)
    assert changed > 0 and not session.reviewed[2] and session.reviewed[4]
    session.labels.undo()  # one step: the labels and the mark come back together
    assert session.reviewed[2]
    np.testing.assert_array_equal(session.labels.array[2], corrected[0])


@pytest.mark.parametrize("z", [-1, 6, 40])
def test_a_slice_outside_the_image_is_refused_by_name(checkpoints, z):
    """A tester's mark_reviewed(-1) marked the last slice; 40 raised a bare IndexError."""
    session = open_with_models(tiny_case(0)[0], checkpoints)
    for act in (lambda: session.mark_reviewed(z), lambda: session.copy_prediction("A", z),
                lambda: session.fill(z, (3, 3), 1)):
        with pytest.raises(SessionError, match=rf"Slice {z + 1} is not in this image \(1 to 6\)"):
            act()
    assert not session.reviewed.any() and not session.labels.array.any() and not session.labels.can_undo


def test_labels_from_a_model_take_its_class_names_into_the_saved_file(tmp_path, checkpoints):
    session = open_with_models(tiny_case(0)[0], checkpoints)
    assert session.classes[0].name == "background"  # before a copy: the first model's table
    session.copy_prediction("B", z=3)
    path = session.save(tmp_path / "labels.nii.gz")
    assert [c.name for c in load_classes(path) if c.value] == ["organ", "lesion"]


def test_labels_saved_with_generic_names_take_a_models_names_and_no_conflict(tmp_path, checkpoints):
    """A tester painted an image opened without labels, saved ("label 1", "label 2") and
    reopened it with a model: it was refused, its class 1 being "organ" where the labels
    had "label 1". A generic name is a placeholder: the model's name takes its place."""
    from segview.ml.inference import Predictor

    volume, labels = tiny_case(0)
    first = ReviewSession.open(volume, labels=labels)
    assert [c.name for c in first.classes] == ["label 1", "label 2"]
    path = first.save(tmp_path / "labels.nii.gz")
    first.close()
    session = ReviewSession.open(volume, path)
    predictor = Predictor.from_checkpoint(checkpoints["A"], "cpu")
    assert session.class_conflict("A", predictor) is None
    session.add_model("A", checkpoints["A"], predictor)
    assert [c.name for c in session.classes] == ["background", "organ", "lesion"]
    assert session.save() == path and [c.name for c in load_classes(path) if c.value] == ["organ", "lesion"]
    session.close()
    named = ReviewSession.open(volume, path)  # names someone chose still conflict with other names
    other = Predictor.from_checkpoint(checkpoints["A"], "cpu")
    other.classes = [c if c.value != 1 else type(c)(1, "liver", c.color) for c in other.classes]
    assert "\u201cliver\u201d where the labels have \u201corgan\u201d" in named.class_conflict("A", other)
    named.close()


def test_review_marks_are_saved_beside_the_labels_and_come_back(tmp_path):
    volume, labels = tiny_case(0)
    session = ReviewSession.open(volume, labels=labels)
    for z in (1, 4):
        session.mark_reviewed(z)
    path = session.save(tmp_path / "case.nii.gz")
    session.close()
    sidecar = json.loads(review_path(path).read_text())
    assert sidecar["format"] == "segview-review-state"
    assert [(e["z"], e["slice"]) for e in sidecar["reviewed"]] == [(1, 2), (4, 5)]
    assert all(e["by"] and e["at"] for e in sidecar["reviewed"])
    reopened = ReviewSession.open(volume, labels=path)
    assert reopened.reviewed.tolist() == [False, True, False, False, True, False]
    np.testing.assert_array_equal(reopened.labels.array, labels)


def test_a_sidecar_of_another_image_marks_nothing(tmp_path):
    volume, labels = tiny_case(0)
    session = ReviewSession.open(volume, labels=labels)
    session.mark_reviewed(0)
    path = session.save(tmp_path / "case.nii.gz")
    other = tiny_case(5)[0]  # the same grid, other voxels
    reopened = ReviewSession.open(other, labels=path)
    assert not reopened.reviewed.any() and "another image" in " ".join(reopened.warnings)


def test_the_marks_stay_with_the_image_once_another_tool_re_saves_it(tmp_path):
    """A series reviewed as DICOM, then written as NIfTI by SimpleITK (as floats or int16, on
    a grid of float32 numbers: another image_key), still has its reviewed slices; with other
    greys it is another image."""
    import SimpleITK as sitk

    volume, labels = tiny_case(0)
    volume = Volume(volume.array, (0.7031250123, 0.7031250123, 2.5000000456),
                    origin=(-120.3456789, -98.7654321, 33.3333333), modality="MR")
    write_dicom_series(volume, tmp_path / "dicom")
    session = ReviewSession.open(tmp_path / "dicom", labels=labels)
    session.mark_reviewed(1), session.mark_reviewed(4)
    path = session.save(tmp_path / "case.labels.nii.gz")
    session.close()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "dicom")))
    image = sitk.Cast(reader.Execute(), sitk.sitkFloat32)  # whole values, another type
    sitk.WriteImage(image, str(tmp_path / "case.nii.gz"))
    for resaved in (image, sitk.Cast(image, sitk.sitkInt16)):
        sitk.WriteImage(resaved, str(tmp_path / "case.nii.gz"))
        reopened = ReviewSession.open(tmp_path / "case.nii.gz", labels=path)
        assert reopened.key != session.key  # the grid's float32 numbers
        assert reopened.reviewed.tolist() == [False, True, False, False, True, False] and not reopened.warnings
        reopened.close()
    sitk.WriteImage(image + 0.5, str(tmp_path / "case.nii.gz"))
    reopened = ReviewSession.open(tmp_path / "case.nii.gz", labels=path)
    assert not reopened.reviewed.any() and "another image" in " ".join(reopened.warnings)


def test_two_label_files_of_one_name_keep_their_own_marks(tmp_path):
    """case.nii.gz and case.nrrd shared case.review.json: the marks saved with the .nrrd,
    after more review, were shown on the older .nii.gz's slices; later (a tester) a save of
    the .nii.gz wrote over the .nrrd's marks, and they were gone."""
    volume, labels = tiny_case(0)
    session = ReviewSession.open(volume, labels=labels)
    session.mark_reviewed(0)
    older = session.save(tmp_path / "case.nii.gz")
    session.mark_reviewed(3)
    newer = session.save(tmp_path / "case.nrrd")
    assert review_path(older) != review_path(newer) and review_path(older).name == "case.review.json"
    assert json.loads(review_path(newer).read_text())["labels"] == "case.nrrd"
    reopened = ReviewSession.open(volume, labels=older)
    assert reopened.reviewed.tolist() == [True, False, False, False, False, False] and not reopened.warnings
    reopened.mark_reviewed(5)
    reopened.save()  # the older saved again: the newer's marks stay
    assert ReviewSession.open(volume, labels=newer).reviewed.tolist() == [True, False, False, True, False, False]
    assert ReviewSession.open(volume, labels=older).reviewed.tolist() == [True, False, False, False, False, True]
    newer.rename(tmp_path / "renamed.nrrd")  # the file it names is gone: a pair renamed keeps its marks
    review_path(newer).rename(review_path(tmp_path / "renamed.nrrd"))
    assert ReviewSession.open(volume, labels=tmp_path / "renamed.nrrd").reviewed.sum() == 2


def test_opening_labels_after_a_restricted_stroke_loads_every_voxel(tmp_path):
    # The defect: "paint over background only" and an intensity range leaked into loading.
    volume, labels = tiny_case(0)
    save_labels(tmp_path / "file.nii.gz", labels, volume, CLASSES)
    session = ReviewSession.open(volume)
    session.labels.policy = OverwritePolicy("background")
    session.labels.intensity_range = (0.0, 150.0)
    session.labels.paint(2, [(12, 12)], 2.0, 2)
    session.replace_labels(read_label_file(tmp_path / "file.nii.gz", volume))
    np.testing.assert_array_equal(session.labels.array, labels)
    session.labels.undo()
    assert session.labels.array[2].any() and not session.labels.array[0].any()


def test_a_pending_slice_cannot_be_copied_and_counts_in_no_score(checkpoints):
    session = ReviewSession.open(tiny_case(0)[0])
    session.load_model("A", checkpoints["A"]).predictor.batch_size = 2
    batches = session.prediction_batches(first=2)
    session.accept(next(batches))  # the first batch only
    predicted = session.models["A"].predicted
    assert predicted.any() and not predicted.all()
    pending = int(np.flatnonzero(~predicted)[0])
    with pytest.raises(SessionError, match="not predicted"):
        session.copy_prediction("A", z=pending)
    session.mark_reviewed(pending)
    assert session.live.slice_scores("A", pending) is None
    assert session.scores("A").voxels == 0


def test_a_batch_of_a_replaced_model_is_dropped(checkpoints):
    session = ReviewSession.open(tiny_case(0)[0])
    session.load_model("A", checkpoints["A"])
    batch = next(session.prediction_batches())
    session.load_model("A", checkpoints["B"])
    assert not session.accept(batch)
    assert not session.models["A"].predicted.any()


def test_fill_refuses_background_that_reaches_the_edge():
    session = ReviewSession.open(tiny_case(0)[0])
    with pytest.raises(SessionError, match="enclosed"):
        session.fill(1, (0, 0), 1)
    assert not session.labels.array.any()
    session.labels.paint(1, [(12, 6), (6, 12), (12, 18), (18, 12), (12, 6)], 0.6, 1)
    session.fill(1, (12, 12), 2)  # inside a closed outline: filled
    assert session.labels.array[1, 12, 12] == 2 and session.labels.array[1, 0, 0] == 0


def test_save_without_a_path_writes_beside_the_image(tmp_path):
    from segview.core.io import save_volume

    volume, _ = tiny_case(0)
    image = save_volume(tmp_path / "patient7_0000.nii.gz", volume)
    session = ReviewSession.open(image)
    session.mark_reviewed(0)
    assert session.save() == tmp_path / "patient7_0000.labels.nii.gz"
    assert review_path(tmp_path / "patient7_0000.labels.nii.gz").exists()
    assert not session.modified


def test_labels_that_cannot_be_read_stop_the_open_unless_empty_ones_will_do(tmp_path):
    volume, labels = tiny_case(0)
    small = tiny_case(1, slices=2, size=8)[0]
    path = save_labels(tmp_path / "other.nii.gz", np.zeros(small.shape, np.uint8), small)  # another grid
    with pytest.raises(VolumeLoadError):
        ReviewSession.open(volume, path)
    session = ReviewSession.open(volume, path, empty_if_unreadable=True)
    assert not session.labels.array.any() and session.labels_path is None
    assert len(session.warnings) == 1 and "other.nii.gz were not read" in session.warnings[0]
    session.close(discard=True)


def test_labels_are_never_saved_over_the_image(tmp_path):
    """A tester's Save as onto the CT file opened replaced the CT by the labels."""
    from segview.core.io import save_volume

    volume, labels = tiny_case(0)
    image = save_volume(tmp_path / "ct.nii.gz", volume)
    write_dicom_series(volume, tmp_path / "dicom")
    before = image.read_bytes()
    for source in (image, tmp_path / "dicom"):
        session = ReviewSession.open(source, labels=labels)
        targets = [image] if source == image else sorted((tmp_path / "dicom").iterdir())[:1]
        for target in targets:
            with pytest.raises(SessionError, match="is the image itself"):
                session.save(target)
        session.close(discard=True)
    assert image.read_bytes() == before


def test_the_labels_saved_beside_the_image_come_back_when_it_is_opened_again(tmp_path):
    """A tester saved the labels of a DICOM series beside its folder, opened the folder again
    and found them empty. With ``labels_beside`` (the window's File > Open) they are read;
    ones on another grid are named in a warning and the labels start empty."""
    volume, labels = tiny_case(0)
    folder = tmp_path / "ct"
    write_dicom_series(volume, folder)
    session = ReviewSession.open(folder)
    session.labels.array[:] = labels
    session.mark_reviewed(2)
    saved = session.save()
    session.close()
    assert saved == tmp_path / "ct.labels.nii.gz"
    again = ReviewSession.open(folder, labels_beside=True)
    np.testing.assert_array_equal(again.labels.array, labels)
    assert again.reviewed.tolist() == [z == 2 for z in range(labels.shape[0])]
    assert again.labels_path == saved and not again.warnings
    again.close()
    assert not ReviewSession.open(folder).labels.array.any()  # only when asked (scripts keep theirs)
    second = tiny_case(5)[0]  # another series of the folder, on the same grid: not its labels
    write_dicom_series(second, tmp_path / "t2")
    (tmp_path / "t2.labels.nii.gz").write_bytes(saved.read_bytes())
    review_path(tmp_path / "t2.labels.nii.gz").write_bytes(review_path(saved).read_bytes())
    mixed = ReviewSession.open(tmp_path / "t2", labels_beside=True)
    assert not mixed.labels.array.any() and "of another series" in mixed.warnings[0]
    mixed.close(discard=True)
    small = tiny_case(1, slices=2, size=8)[0]
    save_labels(saved, np.zeros(small.shape, np.uint8), small)  # another grid
    other = ReviewSession.open(folder, labels_beside=True)
    assert not other.labels.array.any() and other.labels_path is None
    assert len(other.warnings) == 1 and "ct.labels.nii.gz" in other.warnings[0] and "start empty" in other.warnings[0]
    other.close(discard=True)


def test_labels_saved_on_an_earlier_grid_of_an_uneven_series_open_with_their_review(tmp_path):
    """The grid of an unevenly spaced series now ends at its last acquired slice: labels and
    review marks saved beside it on the grid segview used before were refused as another
    image's. They are moved onto the grid, each slice taking those of the nearest earlier
    slice (reviewed only when that one was), and the person is told; a save writes them anew."""
    paths = uneven_series(tmp_path / "ct", tuple(np.eye(3).ravel()), last_moved_mm=0.9)
    saved = tmp_path / "ct.labels.nii.gz"
    earlier = earlier_grid_labels(paths, saved)
    grid = sitk.ReadImage(str(saved))
    review_path(saved).write_text(json.dumps({
        "format": "segview-review-state", "version": 1, "image_key": "0" * 40, "labels": saved.name,
        "image": {"voxels": "0" * 40, "size": list(grid.GetSize()), "spacing": list(grid.GetSpacing()),
                  "origin": list(grid.GetOrigin()), "direction": list(grid.GetDirection())},
        "slices": len(earlier), "reviewed": [{"z": z, "slice": z + 1, "by": "jdoe"} for z in (0, 5, 7)],
        "provenance": {"7": ["hand"]},
        "rulers": [{"axis": 0, "index": 7, "a": [7, 2, 3], "b": [7, 10, 3]},  # on the last earlier slice
                   {"axis": 1, "index": 4, "a": [0, 4, 2], "b": [7, 4, 2]}]}))  # across the stack: 21 mm
    session = ReviewSession.open(tmp_path / "ct", labels_beside=True)
    nearest = nearest_earlier(paths, earlier, session.volume.shape[0])
    assert nearest.tolist() == [0, 1, 2, 3, 4, 5, 5, 6, 7]  # earlier slice 6 gives none of its labels
    np.testing.assert_array_equal(session.labels.array[:, 0, 0], nearest + 1)
    assert session.reviewed.tolist() == np.isin(nearest, (0, 5, 7)).tolist()
    assert session.review_marks[8] == {"by": "jdoe"} and session.provenance.sources == {8: ("hand",)}
    [moved] = [w for w in session.warnings if "earlier resampling" in w]
    assert "did not end on its last acquired slice" in moved  # this earlier grid ended short of it, not past
    axial, across = session.rulers.all()
    assert (axial.index, axial.length_mm) == (8, pytest.approx(8.0))  # on the slice it took its labels from
    assert across.length_mm == pytest.approx(21.0)  # the same two points of the patient
    assert session.save() == saved
    session.close()
    assert sitk.ReadImage(str(saved)).GetSize()[2] == len(nearest)
    again = ReviewSession.open(tmp_path / "ct", labels_beside=True)
    assert not any("earlier resampling" in w for w in again.warnings)
    assert again.reviewed.tolist() == np.isin(nearest, (0, 5, 7)).tolist()
    again.close()


def test_two_series_of_one_folder_keep_their_labels_apart(tmp_path):
    """A tester saved the second series of a folder: its first save proposed the file of the
    first series beside the folder, and replaced it."""
    from segview.core.dicom import list_dicom_series

    first, labels = tiny_case(0)
    write_dicom_series(first, tmp_path / "two" / "a", series_description="SA cine")
    write_dicom_series(tiny_case(5)[0], tmp_path / "two" / "b", series_description="T2 ax", series_number=2)
    uids = {info.description: info.uid for info in list_dicom_series(tmp_path / "two")}
    session = ReviewSession.open(tmp_path / "two", series_uid=uids["SA cine"])
    session.labels.array[:] = labels
    plain = session.save()
    session.close()
    assert plain == tmp_path / "two.labels.nii.gz"
    before = plain.read_bytes()
    other = ReviewSession.open(tmp_path / "two", series_uid=uids["T2 ax"], labels_beside=True)
    assert not other.labels.array.any() and other.labels_path is None
    own = other.default_labels_path()
    assert own.name.startswith("two.T2_ax-") and own.name.endswith(".labels.nii.gz") and own.parent == tmp_path
    assert "another series" in other.warnings[0] and own.name in other.warnings[0]
    other.labels.array[1, 2:4, 2:4] = 2
    assert other.save() == own and plain.read_bytes() == before
    other.close()
    again = ReviewSession.open(tmp_path / "two", series_uid=uids["T2 ax"], labels_beside=True)
    assert again.labels_path == own and again.labels.array[1, 2, 2] == 2 and not again.warnings
    # The other series' file beside the folder is no label file of this series: not named as one
    assert again.labels_note == f"Labels read from {own.name}, the name a first save gives them."
    again.close()
    back = ReviewSession.open(tmp_path / "two", series_uid=uids["SA cine"], labels_beside=True)
    assert back.labels_path == plain and not back.warnings
    assert back.labels_note == "Labels read from two.labels.nii.gz, the name a first save gives them."
    np.testing.assert_array_equal(back.labels.array, labels)
    back.close()


def test_the_labels_last_saved_under_any_name_come_back_when_their_image_opens(tmp_path):
    """A tester saved under a name of their own and reopened the folder: the labels were empty.
    ``labels_saved`` (the window remembers where) reads them, before those beside the image,
    only when their sidecar names this image."""
    volume, labels = tiny_case(0)
    folder = tmp_path / "ct"
    write_dicom_series(volume, folder)
    session = ReviewSession.open(folder)
    session.labels.array[:] = labels
    session.save(tmp_path / "beside_first.nii.gz")
    beside = session.save(tmp_path / "ct.labels.nii.gz")  # an older copy beside the image
    session.labels.array[0] = 0
    with pytest.raises(LabelSaveError, match="elsewhere does not exist"):
        session.save(tmp_path / "elsewhere" / "mine.nii.gz")
    (tmp_path / "elsewhere").mkdir()
    mine = session.save(tmp_path / "elsewhere" / "mine.nii.gz")
    session.close()
    again = ReviewSession.open(folder, labels_beside=True, labels_saved=mine)
    assert again.labels_path == mine and not again.labels.array[0].any() and not again.warnings
    again.close()
    second = tiny_case(5)[0]  # another series the same path once named: its labels are not these
    write_dicom_series(second, tmp_path / "t2")
    other = ReviewSession.open(tmp_path / "t2", labels_beside=True, labels_saved=mine)
    assert other.labels_path is None and not other.labels.array.any()
    other.close(discard=True)
    gone = ReviewSession.open(folder, labels_beside=True, labels_saved=tmp_path / "deleted.nii.gz")
    assert gone.labels_path == beside  # a remembered file removed since: those beside the image
    gone.close()


def test_edits_restored_from_a_journal_without_provenance_say_recovered():
    from segview.core.journal import RecoveredLabels

    volume, labels = tiny_case(0)
    session = ReviewSession.open(volume, labels=labels)
    crashed = labels.copy()
    crashed[2, 5:9, 5:9] = 1
    session.restore(RecoveredLabels(crashed, session.key, 1, False, np.zeros(len(labels), bool)))
    assert session.provenance.of_slice(2) == ("recovered",) and not session.provenance.of_slice(3)
    session.labels.undo()
    assert session.provenance.of_slice(2) == ()
    session.close(discard=True)


def test_a_crash_between_the_labels_and_their_sidecar_keeps_each_slices_provenance(tmp_path):
    """A tester's kill -9 fell between the renames of the labels and of their sidecar: the
    restored edits changed no voxel (the file held them), and the brushed slice came back
    reviewed but without its "hand"."""
    from segview.core.io import save_volume

    volume, _ = tiny_case(0)
    image = save_volume(tmp_path / "image.nii.gz", volume)
    labels_file = tmp_path / "labels.nii.gz"
    crashed = ReviewSession.open(image)
    crashed.labels.paint(2, [(5, 5)], 2.0, 1)
    crashed.mark_reviewed(2)
    crashed.save(labels_file)
    crashed.labels.paint(3, [(6, 6)], 2.0, 1)
    crashed.mark_reviewed(3)
    save_labels(labels_file, crashed.labels.array, crashed.volume, crashed.classes)  # the sidecar's rename never came
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    again = ReviewSession.open(image, labels=labels_file, recover=True)
    assert again.labels.array[3].any() and list(np.flatnonzero(again.reviewed)) == [2, 3]
    assert again.provenance.of_slice(2) == ("hand",) and again.provenance.of_slice(3) == ("hand",)
    again.close(discard=True)


def test_restored_edits_are_no_longer_offered_by_recover_edits(tmp_path):
    """A tester's File > Recover edits still listed the journal just restored."""
    from segview.core.journal import set_aside_folder, set_aside_journals

    volume, _ = tiny_case(0)
    crashed = ReviewSession.open(volume)
    crashed.labels.paint(2, [(5, 5)], 2.0, 1)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    again = ReviewSession.open(volume)  # the window asks first: set aside, then restored
    assert again.recoverable_edits is not None and len(set_aside_journals(again.key)) == 1
    again.restore(again.recoverable_edits)
    assert set_aside_journals(again.key) == [] and again.labels.array[2].any()
    assert list(set_aside_folder().glob(f"{again.key}*.restored"))  # kept, not listed
    again.close(discard=True)


def test_undoing_the_restored_edits_leaves_nothing_unsaved(tmp_path):
    """A tester restored a killed segview's stroke and undid it: the title kept its * and
    closing asked to save, the rulers' "none" having come back as an empty list."""
    from segview.core.io import save_volume

    volume, _ = tiny_case(0)
    image = save_volume(tmp_path / "image.nii.gz", volume)
    crashed = ReviewSession.open(image)
    crashed.labels.paint(2, [(5, 5)], 2.0, 1)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    again = ReviewSession.open(image, recover=True)
    assert again.labels.array.any() and again.modified
    again.labels.undo()
    assert not again.labels.array.any() and not again.modified
    again.close(discard=True)


def test_close_keeps_the_journal_of_unsaved_edits_and_discard_drops_it():
    volume, _ = tiny_case(0)
    session = ReviewSession.open(volume)
    session.labels.paint(1, [(5, 5)], 2.0, 1)
    session.close()
    assert ReviewSession.recoverable(volume).steps == 1
    again = ReviewSession.open(volume)
    assert again.recoverable_edits is not None and again.recoverable_edits.steps == 1
    again.close(discard=True)
    assert ReviewSession.recoverable(volume) is None


def test_a_second_live_session_of_one_image_is_no_crash(tmp_path):
    volume, _ = tiny_case(0)
    first = ReviewSession.open(volume)
    first.labels.paint(1, [(5, 5)], 2.0, 1)
    second = ReviewSession.open(volume)  # the first is alive: nothing to recover
    assert second.recoverable_edits is None and second.journal is not None
    assert second.journal.path != first.journal.path
    first.close(discard=True)
    second.close(discard=True)


CRASHING_SESSION = textwrap.dedent("""
    import os, signal, sys
    from segview.session import ReviewSession
    session = ReviewSession.open(sys.argv[1])
    session.labels.paint(1, [(8, 8), (8, 14)], 2.0, 1)
    for z in (0, 2, 4):
        session.mark_reviewed(z)
    session.labels.begin_stroke()             # a stroke in progress when the power goes
    session.labels.paint(3, [(5, 5)], 3.0, 2)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_after_sigkill_the_edits_and_marks_come_back_whatever_path_opens_the_series(tmp_path, series):
    study, _ = series
    subfolder = study / "series"
    link = tmp_path / "link-to-study"
    link.symlink_to(study)
    child = subprocess.run([sys.executable, "-c", CRASHING_SESSION, str(subfolder)], capture_output=True,
                           text=True, env=dict(os.environ), timeout=120)
    assert child.returncode == -signal.SIGKILL and "ready" in child.stdout
    relative = os.path.relpath(study, os.getcwd())
    for path in (study, link, relative, subfolder):
        recovered = ReviewSession.recoverable(path)
        assert recovered is not None and recovered.steps == 4, path  # the stroke in progress is lost
        assert recovered.reviewed.tolist() == [True, False, True, False, True, False]
    session = ReviewSession.open(link, recover=True)
    assert session.reviewed.sum() == 3 and session.labels.array[1].any() and not session.labels.array[3].any()
    assert session.provenance.of_slice(1) == ("hand",)
    # Each step comes back as its own undo step, as it was made (two testers' one Ctrl+Z took
    # back every restored step at once).
    for reviewed in ([0, 2], [0], []):
        session.labels.undo()
        assert np.flatnonzero(session.reviewed).tolist() == reviewed and session.labels.array[1].any()
    session.labels.undo()
    assert not session.labels.array.any() and session.provenance.of_slice(1) == ()
    assert not session.labels.undo()
    session.close(discard=True)


def test_restored_edits_are_one_step_on_the_labels_saved_since(tmp_path):
    """A tester's colleague saved a stroke after the crash: restoring wiped it, the crashed
    session's whole labels copied over the file's."""
    volume, _ = tiny_case(0)
    crashed = ReviewSession.open(volume)
    crashed.labels.paint(1, [(5, 5)], 2.0, 1)
    crashed.mark_reviewed(1)
    stroke = crashed.labels.array > 0
    crashed.close()  # the journal stays, as after a crash
    changed = np.zeros(volume.shape, np.uint8)
    changed[4, 2:4, 2:4] = 2  # saved since by someone else: not the labels the steps started from
    changed[1, 0, 0] = 3  # on the stroke's slice too, away from it
    again = ReviewSession.open(volume, labels=changed)
    again.restore(again.recoverable_edits)
    expected = changed.copy()
    expected[stroke] = 1
    np.testing.assert_array_equal(again.labels.array, expected)  # the stroke, on what was saved since
    assert np.flatnonzero(again.reviewed).tolist() == [1]
    again.labels.undo()
    np.testing.assert_array_equal(again.labels.array, changed)
    assert not again.reviewed.any()
    again.close(discard=True)


def test_recovered_marks_keep_who_marked_them_and_when(tmp_path):
    volume, _ = tiny_case(0)
    session = ReviewSession.open(volume)
    session.mark_reviewed(3)
    details = dict(session.review_marks[3])
    session.close()  # unsaved: the journal stays
    restored = ReviewSession.open(volume, recover=True)
    assert restored.reviewed[3] and restored.review_marks[3] == details
    path = restored.save(tmp_path / "case.nii.gz")
    entry = json.loads(review_path(path).read_text())["reviewed"][0]
    assert (entry["by"], entry["at"]) == (details["by"], details["at"])


def test_steps_that_cancel_out_leave_nothing_to_recover():
    volume, _ = tiny_case(0)
    session = ReviewSession.open(volume)
    session.mark_reviewed(2)
    session.mark_reviewed(2, False)
    session.close()
    assert ReviewSession.recoverable(volume) is None


def test_opening_a_label_file_is_not_an_unsaved_change(tmp_path):
    volume, labels = tiny_case(0)
    save_labels(tmp_path / "file.nii.gz", labels, volume, CLASSES)
    session = ReviewSession.open(volume)
    session.replace_labels(read_label_file(tmp_path / "file.nii.gz", volume))
    assert not session.modified
    session.labels.undo()
    assert session.modified


def test_a_class_tool_computed_on_a_copy_is_one_step_equal_to_the_tool_on_the_labels():
    from scipy import ndimage

    volume, labels = tiny_case(0)
    labels = labels.copy()
    labels[1, 2, 2] = 1  # an island of one voxel
    session = ReviewSession.open(volume, labels=labels)
    job = session.tool_job("remove_islands", 1, min_mm3=1.0)
    assert session.labels.array[1, 2, 2] == 1  # the job has not touched the labels
    assert session.finish_tool(job, job()) == 1
    components, count = ndimage.label(session.labels.array == 1, ndimage.generate_binary_structure(3, 1))
    assert count == 1
    session.labels.undo()
    np.testing.assert_array_equal(session.labels.array, labels)
    job = session.tool_job("margin", 1, 1.0)
    edits = job()
    session.labels.paint(0, [(3, 3)], 1.0, 2)  # the labels change meanwhile
    with pytest.raises(SessionError, match="changed while"):
        session.finish_tool(job, edits)
    assert not session.reviewed.any()


def test_a_whole_volume_copy_job_in_a_thread_equals_copy_prediction_and_is_one_undo_step(checkpoints):
    import threading

    session = open_with_models(tiny_case(0)[0], checkpoints)
    session.labels.paint(2, [(10, 10)], 3.0, 1)  # labels of the reader's own, before the copy
    before = session.labels.array.copy()
    job, result, seen = session.copy_job("B"), {}, []
    thread = threading.Thread(target=lambda: result.update(patches=job(progress=lambda *p: seen.append(p))))
    thread.start()
    thread.join(30)
    assert seen[-1] == (6, 6) and np.array_equal(session.labels.array, before)  # compared only
    changed = session.finish_copy(job, result["patches"])
    np.testing.assert_array_equal(session.labels.array, session.prediction("B"))
    assert changed == int((before != session.prediction("B")).sum()) > 0 and not session.reviewed.any()
    counts = {slot: session.live.matrices[slot].per_slice.copy() for slot in "AB"}
    assert session.labels.undo() and np.array_equal(session.labels.array, before)  # one step
    assert session.copy_prediction("B") == changed
    for slot in "AB":
        np.testing.assert_array_equal(session.live.matrices[slot].per_slice, counts[slot])
    session.close(discard=True)


def _copied_in_pieces(session, slot: str, budget_s: float = 0.0):
    """A whole-volume copy written a slab at a time (``start_copy``), as the window does."""
    job = session.copy_job(slot)
    writing = session.start_copy(job, job())
    pieces = 0
    while not writing.step(budget_s):
        pieces += 1
        assert session.copying is writing and writing.done <= writing.total
    assert session.copying is None
    return writing, pieces


def test_a_copy_written_slab_by_slab_equals_the_one_shot_copy_as_one_undo_step(checkpoints, monkeypatch):
    from segview.core import labels as labels_module

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 24 * 24)  # one slice a slab: six pieces
    results = []
    for pieces in (False, True):
        session = open_with_models(tiny_case(0)[0], checkpoints)
        session.labels.paint(2, [(10, 10)], 3.0, 1)
        before, steps = session.labels.array.copy(), session.journal.steps
        undo_depth = len(session.labels._undo)
        if pieces:
            writing, count = _copied_in_pieces(session, "B")
            changed = writing.changed
            assert writing.total > 1 and count >= writing.total  # a step per slab, then the end
        else:
            job = session.copy_job("B")
            changed = session.finish_copy(job, job())
        np.testing.assert_array_equal(session.labels.array, session.prediction("B"))
        assert changed == int((before != session.prediction("B")).sum()) > 0
        assert len(session.labels._undo) == undo_depth + 1  # one undo step
        assert session.journal.steps == steps + 1            # one journal record
        counts = {slot: session.live.matrices[slot].per_slice.copy() for slot in "AB"}
        step = [(p.region, None if p.index is None else p.index.tolist(), p.old.tolist(), p.new.tolist())
                for p in session.labels._undo[-1]]
        results.append((session.labels.array.copy(), counts, step, changed, session.labels.history_nbytes()))
        assert session.labels.undo() and np.array_equal(session.labels.array, before)
        session.close(discard=True)
    (labels_a, counts_a, step_a, changed_a, bytes_a), (labels_b, counts_b, step_b, changed_b, bytes_b) = results
    np.testing.assert_array_equal(labels_a, labels_b)
    for slot in "AB":
        np.testing.assert_array_equal(counts_a[slot], counts_b[slot])
    assert step_a == step_b and changed_a == changed_b and bytes_a == bytes_b


def test_a_copy_cancelled_while_written_changes_nothing_and_keeps_the_history(checkpoints, monkeypatch):
    from segview.core import labels as labels_module

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 24 * 24)
    session = open_with_models(tiny_case(0)[0], checkpoints)
    session.labels.paint(2, [(10, 10)], 3.0, 1)
    session.labels.paint(3, [(10, 10)], 3.0, 2)
    session.labels.undo()  # something to redo, which a cancelled copy must keep
    before, counts = session.labels.array.copy(), {s: session.live.matrices[s].per_slice.copy() for s in "AB"}
    history = (len(session.labels._undo), len(session.labels._redo), session.journal.steps)
    job = session.copy_job("B")
    writing = session.start_copy(job, job())
    assert not writing.step(0.0) and not writing.step(0.0)  # two slabs written
    assert writing.done == 2 and not np.array_equal(session.labels.array, before)
    with pytest.raises(SessionError, match="being written"):
        session.save_job()
    with pytest.raises(SessionError, match="being written"):
        session.start_copy(job, [])
    writing.cancel()
    while not writing.step(0.0):
        pass
    assert writing.changed == 0 and session.copying is None
    np.testing.assert_array_equal(session.labels.array, before)
    for slot in "AB":
        np.testing.assert_array_equal(session.live.matrices[slot].per_slice, counts[slot])
    assert (len(session.labels._undo), len(session.labels._redo), session.journal.steps) == history
    assert session.labels.redo()  # the redo history is whole
    session.labels.undo()
    # Closing while a copy is written takes it back too.
    job = session.copy_job("B")
    writing = session.start_copy(job, job())
    writing.step(0.0)
    labels = session.labels
    session.close(discard=True)
    assert writing.finished and session.copying is None
    np.testing.assert_array_equal(labels.array, before)


def test_fill_between_slices_computed_off_the_labels_and_written_in_pieces_equals_the_direct_fill():
    """The window fills in a worker (``fill_job``) and writes the result a slice per piece
    (``start_fill``): the labels, the one undo step, the journal record, the provenance and
    what the intensity range kept are those of ``LabelMap.fill_between_slices``."""
    from segview.core.labels import LabelMap
    from segview.core.phantoms import make_phantom

    case = make_phantom("cardiac", seed=0)
    case.labels[5:8] = 0
    session = ReviewSession.open(case.volume, labels=case.labels.copy(), classes=list(case.classes))
    session.mark_reviewed(0)
    labelled = case.volume.array[4][case.labels[4] > 0]  # a range that keeps about half of what is filled
    session.labels.intensity_range = (float(np.median(labelled)), float(case.volume.array.max()))
    reference = LabelMap(case.labels.copy(), case.volume.spacing, intensities=session.labels.intensities)
    reference.intensity_range = session.labels.intensity_range
    expected_changes = reference.fill_between_slices()
    before, steps = session.labels.array.copy(), session.journal.steps
    job = session.fill_job()
    seen: list = []
    thread = threading.Thread(target=lambda: seen.append(job(progress=lambda *p: seen.append(p))))
    thread.start()
    thread.join(30)
    patches = seen.pop()
    assert seen == [(1, 3), (2, 3), (3, 3)] and job.slices == [5, 6, 7]
    np.testing.assert_array_equal(session.labels.array, before)  # computed on a copy
    writing = session.start_fill(job, patches)
    while not writing.step(0.0):
        assert session.copying is writing
    np.testing.assert_array_equal(session.labels.array, reference.array)
    assert writing.changed == int((before != reference.array).sum()) > 0 and len(patches) == len(expected_changes)
    assert session.labels.kept_reason() == reference.kept_reason() != ""  # the status bar says it as before
    assert session.journal.steps == steps + 1 and session.labels.undo_step.what == "fill between slices"
    assert all(session.provenance.of_slice(z) == ("interpolation",) for z in (5, 6, 7))
    assert session.labels.undo() and np.array_equal(session.labels.array, before)  # one step
    # A slice marked reviewed while it ran (never filled): refused, nothing written; a
    # stopped job writes nothing.
    job = session.fill_job()
    patches = job()
    session.mark_reviewed(6)
    with pytest.raises(SessionError, match="changed while Fill between slices ran"):
        session.start_fill(job, patches)
    session.mark_reviewed(6, False)
    changed = session.labels.array.copy()
    job = session.fill_job()
    assert job(should_stop=lambda: True) is None
    assert session.start_fill(job, None).finished and np.array_equal(session.labels.array, changed)
    session.close(discard=True)


def test_no_edit_or_mark_joins_a_copy_being_written_and_all_work_after_it(checkpoints, monkeypatch):
    """The copy's undo step is open while it is written: an edit or a review mark would
    join it (and go with its undo or cancel), so the session refuses them, not only the window."""
    from segview.core import labels as labels_module

    monkeypatch.setattr(labels_module, "SLAB_BYTES", 24 * 24)
    session = open_with_models(tiny_case(0)[0], checkpoints)
    tool = session.tool_job("margin", 1, 1.0)
    edits = tool()
    job = session.copy_job("B")
    writing = session.start_copy(job, job())
    assert not writing.step(0.0)
    written, marks = session.labels.array.copy(), session.reviewed.copy()
    refused = {"fill": lambda: session.fill(2, (5, 5), 1),
               "adopt": lambda: session.adopt("A", 2, (5, 5)),
               "mark": lambda: session.mark_reviewed(2),
               "tool": lambda: session.finish_tool(tool, edits),
               "click": lambda: session.click_job(2, (5, 5), value=1)}
    for name, edit in refused.items():
        with pytest.raises(SessionError, match="being written"):
            edit()
            pytest.fail(f"{name} was taken during the copy")
    np.testing.assert_array_equal(session.labels.array, written)
    np.testing.assert_array_equal(session.reviewed, marks)
    writing.finish()
    session.mark_reviewed(2)
    assert session.reviewed[2] and session.labels.undo() and not session.reviewed[2]  # a step of its own
    np.testing.assert_array_equal(session.labels.array, session.prediction("B"))  # the copy stays


def test_a_stopped_copy_job_changes_nothing_and_a_stale_one_is_refused(checkpoints):
    session = open_with_models(tiny_case(0)[0], checkpoints)
    job = session.copy_job("A")
    assert job(should_stop=lambda: True) is None
    assert session.finish_copy(job, None) == 0
    assert not session.labels.array.any() and not session.labels.can_undo
    patches = job()
    session.labels.paint(2, [(10, 10)], 3.0, 1)  # the labels change while it runs
    painted = session.labels.array.copy()
    with pytest.raises(SessionError, match="changed while the copy ran"):
        session.finish_copy(job, patches)
    np.testing.assert_array_equal(session.labels.array, painted)
    with pytest.raises(SessionError, match="No model"):
        session.copy_job("C")
    session.close(discard=True)


def test_when_the_journal_cannot_be_written_the_session_stops_it_and_says_so_once(monkeypatch):
    import segview.core.journal as journal_module

    volume, _ = tiny_case(0)
    session = ReviewSession.open(volume)
    journal = session.journal
    assert journal is not None and session.journal_failure() is None
    session.labels.paint(1, [(12, 12)], 2.0, 1)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_record", full_disk)
    session.labels.paint(2, [(12, 12)], 2.0, 1)  # the edit is made all the same
    assert session.labels.array[2, 12, 12] == 1
    message = session.journal_failure()
    assert "No space left" in message and "save them soon" in message
    assert session.journal is None and session.journal_failure() is None  # said once
    assert not session.labels.events.step.connected(journal.flush)  # closed: it hears no more edits
    session.labels.paint(3, [(12, 12)], 2.0, 1)
    assert session.labels.array[3, 12, 12] == 1 and session.labels.can_undo
    session.close(discard=True)


def test_a_journal_that_stopped_goes_once_its_edits_are_saved(monkeypatch, tmp_path):
    """A tester's journal stopped on a full disk; every edit was saved and the session closed,
    yet the next open offered its 66 steps as unsaved work. Once saved, it journals again."""
    import segview.core.journal as journal_module

    volume, _ = tiny_case(0)
    session = ReviewSession.open(volume)
    path = session.journal.path
    session.labels.paint(1, [(12, 12)], 2.0, 1)
    with monkeypatch.context() as patch:
        patch.setattr(journal_module, "_write_record", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
        session.labels.paint(2, [(12, 12)], 2.0, 1)
        assert session.journal_failure() is not None
    assert path.exists()  # kept while its edits are unsaved: they can still be recovered
    assert "memory only" in session.edits_kept
    job = session.save_job(tmp_path / "labels.nii.gz")
    job()
    # The disk has room again: journalling starts again from the labels saved (a tester's
    # next stroke, after the save, was lost to a crash with no word).
    assert session.finish_save(job) == "Edits are journalled again."
    assert session.journal is not None and session.edits_kept.endswith("and in the edit journal")
    session.journal.wait()  # its snapshot is written by a thread
    assert journal_module.recover(session.journal.path).steps == 0  # the 66 saved steps are gone
    session.labels.paint(4, [(12, 12)], 2.0, 1)
    recovered = journal_module.recover(session.journal.path)
    assert recovered.steps == 1 and recovered.labels[4, 12, 12] == 1
    session.close(discard=True)
    assert ReviewSession.recoverable(volume) is None


def follow(labels) -> list[str]:
    """A follower of ``labels`` outside the session (a view, a script): what it hears."""
    heard: list[str] = []
    labels.events.changed.connect(lambda edit: heard.append("changed"))
    labels.events.marked.connect(lambda mark: heard.append("marked"))
    labels.events.step.connect(lambda: heard.append("step"))
    return heard


def edit_and_mark(labels) -> None:
    with labels.step():
        labels.paint(1, [(12, 12)], 2.0, 2)  # the lesion's class: on no odd slice yet
        labels.set_reviewed(1)


def test_closing_a_session_disconnects_its_own_callbacks_only(checkpoints):
    session = open_with_models(tiny_case(0)[0], checkpoints)  # its live metrics, journal, clicks
    assert session.journal is not None
    labels = session.labels
    heard = follow(labels)
    session.close(discard=True)
    assert [len(event) for event in labels.events] == [1, 1, 1]  # the follower's, nobody else's
    version = session.version
    edit_and_mark(labels)
    assert heard == ["changed", "marked", "step"] and session.version == version


def test_closing_a_case_lets_go_of_its_provenance_and_keeps_other_followers(tmp_path):
    make_dataset(tmp_path / "ds", 1)
    session = Worklist.open(tmp_path / "ds").session("case_000")
    labels = session.labels
    heard = follow(labels)
    session.close(discard=True)
    assert [len(event) for event in labels.events] == [1, 1, 1]
    edit_and_mark(labels)
    assert heard == ["changed", "marked", "step"]


def test_a_save_over_labels_someone_else_saved_meanwhile_is_refused(tmp_path, monkeypatch):
    """A tester's two readers of one case (one through the worklist, one opening the file)
    each saved over the other without a word. Where a lock can be taken the second opens
    read-only (test_case_files); here, as on a filesystem without locks, it cannot."""
    folder = tmp_path / "ds"
    make_dataset(folder, 1)
    worklist = Worklist.open(folder)
    name = worklist.cases[0].name
    mine = worklist.session(name)
    image, labels = folder / "imagesTr" / f"{name}_0000.nii.gz", folder / "labelsTr" / f"{name}.nii.gz"
    monkeypatch.setattr(CaseLock, "acquire", classmethod(lambda cls, path, patient=False: (None, None)))
    theirs = ReviewSession.open(image, labels=labels)
    theirs.labels.paint(2, [(5, 5)], 2.0, 1)
    theirs.save()
    saved = read_label_file(labels, theirs.volume).array.copy()
    mine.labels.paint(3, [(8, 8)], 2.0, 2)
    with pytest.raises(SessionError, match="changed on disk since it was opened here"):
        mine.save()
    np.testing.assert_array_equal(read_label_file(labels, theirs.volume).array, saved)  # their work stays
    assert mine.modified  # and mine is kept, to save elsewhere
    elsewhere = mine.save(tmp_path / "mine.nii.gz")
    assert elsewhere.is_file()
    theirs.labels.paint(4, [(5, 5)], 2.0, 1)  # their own file, saved again by them: no refusal
    theirs.save()
    theirs.labels.paint(4, [(9, 9)], 2.0, 1)
    theirs.save()
    mine.close()
    theirs.close()


def test_labels_naming_a_models_classes_otherwise_unload_it_as_opening_them_first_would_refuse_it(
        tmp_path, checkpoints):
    """A tester's labels calling class 1 "GGO infection" kept both models when opened after
    them, while opening the image with those labels first refused the same models."""
    from segview.core.classes import LabelClass

    volume, labels = tiny_case(0)
    session = open_with_models(volume, checkpoints)
    renamed = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "liver", (200, 0, 0)),
               LabelClass(2, "lesion", (0, 200, 0))]
    save_labels(tmp_path / "renamed.nii.gz", labels, volume, renamed)
    unloaded = session.replace_labels(read_label_file(tmp_path / "renamed.nii.gz", volume))
    assert not session.models and len(unloaded) == 2
    assert unloaded[0].startswith("Model A (") and "class 1 is \u201corgan\u201d where the labels have" in unloaded[0]
    fresh = ReviewSession.open(volume, labels=tmp_path / "renamed.nii.gz")
    assert fresh.class_conflict("A", next(iter(open_with_models(volume, checkpoints).models.values())).predictor)
    same = open_with_models(volume, checkpoints)
    save_labels(tmp_path / "same.nii.gz", labels, volume, CLASSES)
    assert same.replace_labels(read_label_file(tmp_path / "same.nii.gz", volume)) == [] and len(same.models) == 2


def test_a_failed_seg_export_takes_no_instance_number(series, tmp_path):
    """Every SEG of one review is an instance of one series, numbered in the order written: an
    export that fails (here into a file where a folder should be) leaves no gap."""
    import pydicom

    folder, labels = series
    session = ReviewSession.open(folder, labels=labels)
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(OSError):
        session.dicom_seg_job(tmp_path / "blocked" / "seg.dcm")()
    first = pydicom.dcmread(session.dicom_seg_job(tmp_path / "first.dcm")())
    second = pydicom.dcmread(session.dicom_seg_job(tmp_path / "second.dcm")())
    assert (first.InstanceNumber, second.InstanceNumber) == (1, 2)
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    session.close(discard=True)


def test_the_seg_series_goes_on_after_the_case_is_reopened(series, tmp_path):
    """A helper sent a SEG, quit, reopened the case, corrected one slice and sent again: a
    second series, numbered 1 again, beside the first in the PACS. The series and its last
    instance are kept in the sidecar, at once where the labels have a file (no save needed)."""
    import pydicom

    folder, labels = series
    session = ReviewSession.open(folder, labels=labels)
    saved = session.save(tmp_path / "labels.nii.gz")
    session.labels.paint(2, [(5, 5)], 2.0, 1)
    first = pydicom.dcmread(session.dicom_seg_job(tmp_path / "first.dcm")())
    second = pydicom.dcmread(session.dicom_seg_job(tmp_path / "second.dcm")())
    session.close(discard=True)  # the stroke is not saved; the SEGs were sent all the same
    again = ReviewSession.open(folder, labels=saved)
    again.labels.paint(3, [(6, 6)], 2.0, 1)
    third = pydicom.dcmread(again.dicom_seg_job(tmp_path / "third.dcm")())
    assert first.SeriesInstanceUID == second.SeriesInstanceUID == third.SeriesInstanceUID
    assert [s.InstanceNumber for s in (first, second, third)] == [1, 2, 3]
    again.save()
    assert json.loads(review_path(saved).read_text())["dicom_seg"] == {
        "series_uid": first.SeriesInstanceUID, "instance": 3}
    again.close()
