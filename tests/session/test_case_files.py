"""A dataset case's label file opened directly (not through the worklist): it takes the
case's lock as the worklist does, and a save onto it keeps the file it replaces, so the
original labels never go (a tester's direct save lost them, unwarned, while a colleague had
the case open in the worklist)."""
import numpy as np
import pytest

from segview.core.io import load_labels
from segview.core.journal import set_aside_folder
from segview.session import ReviewSession, SessionError, Worklist
from segview.session.case_files import CaseLock, is_dataset_labels
from segview.session.worklist import crashed_edits

from .conftest import make_dataset


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "Dataset001_Tiny"
    make_dataset(folder, 2)
    return folder


def open_directly(dataset, name="case_000"):
    return ReviewSession.open(dataset / "imagesTr" / f"{name}_0000.nii.gz", dataset / "labelsTr" / f"{name}.nii.gz")


def test_a_dataset_case_file_is_told_from_other_label_files(dataset, tmp_path):
    assert is_dataset_labels(dataset / "labelsTr" / "case_000.nii.gz")
    assert not is_dataset_labels(tmp_path / "scan.labels.nii.gz")
    (tmp_path / "study" / "labels" / ".locks").mkdir(parents=True)  # a DICOM dataset's labels folder, once used
    assert is_dataset_labels(tmp_path / "study" / "labels" / "1.2.3.nii.gz")


def test_a_case_open_in_the_worklist_opens_read_only_directly_and_cannot_be_saved_over(dataset):
    held = Worklist.open(dataset).session("case_000")
    direct = open_directly(dataset)
    warning = direct.hold_labels_file()
    assert warning is not None and "case_000.nii.gz is a case open in another segview" in warning
    assert direct.read_only_reason == warning
    with pytest.raises(SessionError, match="open in another segview.*Save the labels elsewhere"):
        direct.save_job()
    direct.close()
    held.close()


def test_a_case_held_elsewhere_opened_directly_leaves_its_crashed_edits_to_be_offered(dataset):
    """A reader back after a kill opened a case's file directly while a colleague had the case:
    the unsaved edits were set aside before the lock was known, so opening it editable later
    no longer offered them (only File > Recover edits had them)."""
    crashed = Worklist.open(dataset).session("case_001")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: as after a kill -9
    colleague, _ = CaseLock.acquire(dataset / "labelsTr" / "case_001.nii.gz")
    assert colleague is not None
    looked = open_directly(dataset, "case_001")
    assert looked.read_only_reason is not None and looked.journal is None
    assert looked.hold_labels_file() == looked.read_only_reason  # the lock ``open`` found, kept
    looked.close()
    assert crashed_edits(looked.key)
    assert not set_aside_folder().exists() or not any(set_aside_folder().iterdir())
    colleague.release()
    editable = open_directly(dataset, "case_001")
    assert editable.read_only_reason is None and editable.recoverable_edits.reviewed[2]
    editable.close(discard=True)


def test_a_case_opened_directly_is_read_only_in_the_worklist_until_closed(dataset):
    direct = open_directly(dataset)
    assert direct.hold_labels_file() is None and direct.read_only_reason is None
    worklist = Worklist.open(dataset)
    other = worklist.session("case_000")
    assert other.read_only_reason is not None and "open in another segview" in other.read_only_reason
    other.close()
    direct.close()  # the lock goes with the session
    again = worklist.session("case_000")
    assert again.read_only_reason is None
    again.close()


def test_a_direct_save_onto_a_case_keeps_the_original(dataset):
    labels = dataset / "labelsTr" / "case_001.nii.gz"
    original = labels.read_bytes()
    direct = open_directly(dataset, "case_001")
    direct.hold_labels_file()
    direct.labels.paint(0, [(3, 3)], 1.5, 2)
    direct.save()
    assert (dataset / "labelsTr" / ".previous" / "case_001.original.nii.gz").read_bytes() == original
    # Its worklist row says it was worked on, as a save through the worklist does (a tester's stayed "new").
    assert Worklist.open(dataset).case("case_001").status == "in progress"
    saved = load_labels(labels, direct.volume)
    np.testing.assert_array_equal(saved, direct.labels.array)
    direct.close()


def test_the_backup_keeps_the_class_table_with_the_labels(tmp_path):
    """A NIfTI file's class names and colours live in ``<case>.classes.json``: a save that
    rewrites them must keep the old table with the old labels (it was not kept)."""
    from segview.core.io import sidecar_path
    from segview.session.case_files import keep_previous

    labels = tmp_path / "labelsTr" / "case.nii.gz"
    labels.parent.mkdir()
    labels.write_bytes(b"labels 1")
    sidecar_path(labels).write_text('{"first": "table"}')
    keep_previous(labels)
    previous = labels.parent / ".previous"
    assert (previous / "case.original.classes.json").read_text() == '{"first": "table"}'
    assert (previous / "case.classes.json").read_text() == '{"first": "table"}'

    labels.write_bytes(b"labels 2")  # saved by a tool that keeps no class table
    sidecar_path(labels).unlink()
    keep_previous(labels)
    assert (previous / "case.nii.gz").read_bytes() == b"labels 2"
    assert not (previous / "case.classes.json").exists()  # the last backup's table is not another file's
    assert (previous / "case.original.classes.json").read_text() == '{"first": "table"}'
    assert (previous / "case.original.nii.gz").read_bytes() == b"labels 1"


HOLDER = """
import sys
from pathlib import Path
from segview.session.case_files import CaseLock
lock, holder = CaseLock.acquire(Path(sys.argv[1]))
print("held" if lock else holder, flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_a_case_open_in_another_segview_keeps_its_status(dataset):
    """Flagging a case another segview has open wrote its sidecar behind that segview's
    back, whose next save then wrote its own status over the flag: refused, naming who."""
    import subprocess
    import sys

    worklist = Worklist.open(dataset)
    labels = dataset / "labelsTr" / "case_000.nii.gz"
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(labels)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as other:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(SessionError, match=r"case_000.nii.gz is a case open in another segview \(.*process "
                                               rf"{other.pid}.*set its status there"):
            worklist.set_status("case_000", "flagged", "motion")
        assert worklist.case("case_000").status == "new"
        # Done on it, opened read-only here, says what cannot be done (not "save elsewhere").
        read_only = worklist.session("case_000")
        with pytest.raises(SessionError, match=r"open in another segview .*: it was opened read-only here "
                                               r"and cannot be marked done\. Set its status there"):
            read_only.save_job(status="done")
        read_only.close()
        worklist.set_status("case_001", "flagged", "motion on slices 2-3")  # a case nobody has
        other.stdin.close()
    assert Worklist.open(dataset).case("case_001").note == "motion on slices 2-3"
    worklist.set_status("case_000", "done")  # closed there: free here
    assert Worklist.open(dataset).case("case_000").status == "done"


def test_a_session_here_does_not_keep_its_worklist_from_setting_the_status(dataset):
    worklist = Worklist.open(dataset)
    session = worklist.session("case_000")
    session.labels.paint(2, [(3, 3)], 1.0, 2)
    session.save()
    worklist.set_status("case_000", "flagged", "motion on slices 10-14")  # as the README's example does
    session.labels.paint(3, [(3, 3)], 1.0, 2)
    session.save()  # the session saves the status its case has now
    case = Worklist.open(dataset).case("case_000")
    assert (case.status, case.note) == ("flagged", "motion on slices 10-14")
    session.close()


def test_a_dataset_shared_by_a_team_stays_shared_whatever_the_umask(dataset, monkeypatch):
    """Two users on one dataset: the first one's segview made ``.locks`` and ``.previous``
    with its umask (0755), so the second could not lock a case (it opened editable, unwarned,
    while the first had it) nor save at all."""
    import os
    import stat

    labels = dataset / "labelsTr"
    labels.chmod(0o2777)  # a team's folder
    old = os.umask(0o022)
    try:
        session = Worklist.open(dataset).session("case_000")
        session.labels.paint(0, [(3, 3)], 1.5, 2)
        session.save()
    finally:
        os.umask(old)
    for folder in (labels, labels / ".locks", labels / ".previous"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2777, folder
    assert stat.S_IMODE((labels / ".locks" / "case_000.nii.gz.lock").stat().st_mode) == 0o666
    # A lock file another user made and could not share (an older segview's) still locks.
    real_open = open

    def not_ours(path, mode="r", *args, **kwargs):
        if "a" in mode or "w" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("segview.session.case_files.open", not_ours, raising=False)
    other = Worklist.open(dataset).session("case_000")
    assert other.read_only_reason is not None and "open in another segview" in other.read_only_reason
    other.close()
    session.close()
    free = Worklist.open(dataset).session("case_000")  # held with a read-only descriptor: the lock works
    assert free.read_only_reason is None and free.lock is not None
    second = Worklist.open(dataset).session("case_000")
    assert second.read_only_reason is not None
    second.close()
    free.close()


def test_a_case_no_lock_can_be_taken_for_opens_read_only_saying_why(dataset, monkeypatch):
    """Another user's older segview made ``.locks`` writable by them alone: a case with no
    lock file yet opened editable for a second user, unwarned, while the first had it."""
    def not_ours(path, mode="r", *args, **kwargs):
        if "a" in mode or "w" in mode:
            raise PermissionError(13, "Permission denied", str(path))
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr("segview.session.case_files.open", not_ours, raising=False)
    session = Worklist.open(dataset).session("case_001")
    assert session.read_only and session.lock is None
    reason = session.read_only_reason
    assert "no lock can be taken here" in reason and ".locks was made by" in reason and "chmod a+rwx" in reason
    session.close()


def test_a_case_opens_editable_while_another_segview_glances_at_its_lock(dataset, monkeypatch):
    """Another segview asking who holds a case (every 3 s) takes its lock for an instant: a
    case opened at that instant opened read-only, editable only at the next check."""
    import segview.session.case_files as case_files

    real_flock, glanced = case_files.fcntl.flock, []

    def glanced_at_once(file, operation):
        if operation & case_files.fcntl.LOCK_EX and not glanced:
            glanced.append(True)
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_flock(file, operation)

    monkeypatch.setattr(case_files.fcntl, "flock", glanced_at_once)
    direct = open_directly(dataset)
    assert glanced and direct.read_only_reason is None and direct.journal is not None
    direct.close()
    glanced.clear()
    assert case_files.held_by_another(dataset / "labelsTr" / "case_000.nii.gz")  # a glance does not wait
