"""Stepping through a worklist without a window (``WorklistNavigator``): the frozen order,
next / previous, save-then-open, Done, the next case prefetched in a thread, the one rule of
a dataset's layout, the "A vs B differ" figure, read-only cases. Tiny datasets made here."""
import json
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from segview.core.dicom import write_dicom_series
from segview.core.errors import DatasetError
from segview.core.io import load_labels, load_volume
from segview.core.journal import image_key, journal_path, set_aside_folder
from segview.core.review_state import read_sidecar
from segview.session import CaseSession, ReviewSession, SessionError, Worklist, WorklistNavigator, dataset_layout
from segview.session.case_files import CaseLock
from segview.session.worklist import PredictionCache, crashed_edits

from .conftest import make_dataset, tiny_case


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "ds"
    make_dataset(folder, 4)
    return folder


def count_sessions(monkeypatch, worklist):
    """The names ``worklist.session`` is called with, in order (from any thread)."""
    calls = []
    session = worklist.session

    def counted(name, *args, **options):
        calls.append(name)
        return session(name, *args, **options)

    monkeypatch.setattr(worklist, "session", counted)
    return calls


def journal_of(dataset, name):
    return journal_path(image_key(load_volume(dataset / "imagesTr" / f"{name}_0000.nii.gz")))


def in_a_thread(prefetch):
    """``start`` for ``prefetch_next``: the prefetch runs in a thread, joined here."""
    thread = threading.Thread(target=prefetch)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()


def test_the_order_is_frozen_at_the_last_sort_and_next_previous_follow_it(dataset):
    worklist = Worklist.open(dataset)
    for case, figure in zip(worklist.cases, (0.1, 0.3, float("nan"), 0.2)):
        case.disputed = figure
    navigator = WorklistNavigator(worklist)
    assert navigator.order == ["case_000", "case_001", "case_002", "case_003"]
    assert [c.name for c in navigator.sort("disputed")] == ["case_001", "case_003", "case_000", "case_002"]
    worklist.case("case_002").disputed = 0.9  # the queue counted it meanwhile: nothing reshuffles
    assert navigator.order == ["case_001", "case_003", "case_000", "case_002"]
    assert navigator.next_name("case_003") == "case_000" and navigator.previous_name("case_003") == "case_001"
    assert navigator.next_name("case_002") is None and navigator.previous_name("case_001") is None
    assert navigator.next_name() == "case_001" and navigator.previous_name() == "case_002"  # none current
    navigator.current = "case_000"
    assert navigator.next_name() == "case_002"
    assert navigator.sort("disputed")[0].name == "case_002"  # sorting again takes the figures as they are


def test_next_saves_the_case_left_into_the_dataset_closes_it_and_opens_the_next(dataset):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    first = navigator.save_and_open("case_000")
    assert navigator.current == "case_000" and isinstance(first, CaseSession)
    first.labels.paint(1, [(2, 2)], 1.5, 2)
    first.mark_reviewed(1)
    painted = first.labels.array.copy()
    second = navigator.next(first)
    assert second.case.name == "case_001" and navigator.current == "case_001"
    image = load_volume(dataset / "imagesTr" / "case_000_0000.nii.gz")
    np.testing.assert_array_equal(load_labels(dataset / "labelsTr" / "case_000.nii.gz", image), painted)
    sidecar = read_sidecar(dataset / "labelsTr" / "case_000.nii.gz")
    assert sidecar["case"]["status"] == "in progress" and [r["z"] for r in sidecar["reviewed"]] == [1]
    assert worklist.case("case_000").status == "in progress" and worklist.case("case_000").reviewed_count == 1
    again = Worklist.open(dataset).session("case_000")  # the lock went with the close
    assert not again.read_only
    again.close()
    before = (dataset / "labelsTr" / "case_001.nii.gz").read_bytes()
    third = navigator.next(second)  # nothing edited: nothing written
    assert third.case.name == "case_002"
    assert (dataset / "labelsTr" / "case_001.nii.gz").read_bytes() == before
    assert worklist.case("case_001").status == "new"
    assert navigator.previous(third).case.name == "case_001"


def test_done_saves_labels_marks_and_status_in_one_sidecar_and_done_and_next_goes_on(dataset):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_002")
    for z in (0, 2, 3):
        session.mark_reviewed(z)
    session.save(status="done")  # Done
    sidecar = read_sidecar(dataset / "labelsTr" / "case_002.nii.gz")
    assert sidecar["case"]["status"] == "done" and [r["z"] for r in sidecar["reviewed"]] == [0, 2, 3]
    case = worklist.case("case_002")
    assert (case.status, case.reviewed_count, case.slices) == ("done", 3, 6) and not session.modified
    reopened = Worklist.open(dataset).case("case_002")
    assert (reopened.status, reopened.reviewed_count) == ("done", 3)

    session.mark_reviewed(4)
    following = navigator.next(session, status="done")  # Done and next: also when nothing else changed
    assert following.case.name == "case_003"
    assert [r["z"] for r in read_sidecar(dataset / "labelsTr" / "case_002.nii.gz")["reviewed"]] == [0, 2, 3, 4]
    unchanged = following
    last = navigator.next(unchanged, status="done")
    assert last is None  # after the last case: nothing saved, nothing closed
    assert worklist.case("case_003").status == "new" and not unchanged.modified
    unchanged.save(status="flagged", note="motion")
    assert (worklist.case("case_003").status, worklist.case("case_003").note) == ("flagged", "motion")
    with pytest.raises(ValueError):
        unchanged.save_job(status="finished")
    unchanged.close()


def test_a_status_is_taken_only_when_its_save_succeeded(dataset, monkeypatch):
    import segview.session.review as review_module
    from segview.core.errors import LabelSaveError

    worklist = Worklist.open(dataset)
    session = worklist.session("case_001")

    def full_disk(*args, **kwargs):
        raise LabelSaveError("disk full")

    monkeypatch.setattr(review_module, "save_labels", full_disk)
    with pytest.raises(LabelSaveError):
        session.save(status="done")
    assert worklist.case("case_001").status == "new"
    session.close(discard=True)


def test_when_the_next_case_cannot_open_the_case_left_stays_open_and_saved(dataset):
    (dataset / "imagesTr" / "case_004_0000.nii.gz").write_bytes(b"not an image")
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_003")
    session.mark_reviewed(0)
    with pytest.raises(Exception) as raised:
        navigator.next(session)
    assert raised.value.saved_job is not None and navigator.opening is None
    assert navigator.current == "case_003" and not session.modified  # saved, still open
    assert worklist.case("case_004").error
    assert read_sidecar(dataset / "labelsTr" / "case_003.nii.gz")["reviewed"][0]["z"] == 0
    session.close()


def test_a_read_only_case_is_not_left_by_saving_and_says_why(dataset):
    holder = Worklist.open(dataset).session("case_000")
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_000")
    assert session.read_only and worklist.case("case_000").locked_by
    assert "open in another segview" in session.read_only_reason and "process" in session.read_only_reason
    session.mark_reviewed(2)
    with pytest.raises(SessionError, match="read-only"):
        navigator.next(session)
    assert navigator.current == "case_000" and navigator.opening is None
    with pytest.raises(SessionError, match="read-only"):
        navigator.next(session, status="done")
    session.close(discard=True)
    assert worklist.case("case_000").locked_by is None  # the row shows it while it is open here
    assert not holder.read_only and holder.read_only_reason is None
    holder.close()


def test_the_next_case_is_opened_in_a_thread_and_next_shows_that_session(dataset, monkeypatch):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    calls = count_sessions(monkeypatch, worklist)
    session = navigator.save_and_open("case_001")
    assert navigator.prefetch_next(in_a_thread) is not None
    assert navigator.prefetched == "case_002" and calls == ["case_001", "case_002"]
    assert journal_of(dataset, "case_002").is_file()      # open as any case: its journal
    assert not (dataset / "labelsTr" / "case_002.review.json").exists()  # nothing written
    assert navigator.prefetch_next(in_a_thread) is None    # already there
    prefetched = navigator.prefetch
    following = navigator.next(session)
    assert following.case.name == "case_002" and calls.count("case_002") == 1
    assert navigator.prefetched is None and prefetched.take() is None  # handed over once
    following.close()


def test_a_prefetch_is_closed_when_the_order_or_the_models_change_and_when_the_navigator_closes(dataset):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    navigator.save_and_open("case_000")
    navigator.prefetch_next(in_a_thread)
    first = journal_of(dataset, "case_001")
    assert navigator.prefetched == "case_001" and first.is_file()
    worklist.set_status("case_001", "done")
    navigator.sort("status")  # new first, done last: case_002 comes next now
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched == "case_002" and not first.exists()  # closed: it had no edits
    navigator.drop_prefetch()
    assert navigator.prefetched is None and not journal_of(dataset, "case_002").exists()
    navigator.prefetch_next(in_a_thread)
    navigator.prefetching = False
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched is None and not journal_of(dataset, "case_002").exists()
    navigator.prefetching = True
    navigator.prefetch_next(in_a_thread)
    navigator.close()
    assert navigator.prefetched is None and not journal_of(dataset, "case_002").exists()


def test_next_waits_for_the_case_opening_in_the_background_and_takes_over_one_not_started(dataset, monkeypatch):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    calls = count_sessions(monkeypatch, worklist)
    session = navigator.save_and_open("case_000")
    opening, release = threading.Event(), threading.Event()
    plain = worklist.session

    def slow(name, *args, **options):
        opening.set()
        assert release.wait(60)
        return plain(name, *args, **options)

    monkeypatch.setattr(worklist, "session", slow)
    threads = []
    navigator.prefetch_next(lambda prefetch: threads.append(threading.Thread(target=prefetch)) or threads[0].start())
    assert opening.wait(60)  # case_001 is opening
    threading.Timer(0.3, release.set).start()
    following = navigator.next(session)  # waits for it
    assert following.case.name == "case_001" and calls.count("case_001") == 1
    threads[0].join(60)
    monkeypatch.setattr(worklist, "session", plain)

    pending = []
    navigator.prefetch_next(pending.append)  # not started (a busy thread pool)
    assert navigator.prefetched is None and len(pending) == 1
    third = navigator.next(following)  # opened as any case...
    assert third.case.name == "case_002" and calls.count("case_002") == 1
    pending[0]()  # ...and the prefetch, when its turn comes, opens nothing
    assert calls.count("case_002") == 1
    third.close()


def test_a_case_with_a_crashed_sessions_edits_is_not_prefetched(dataset, checkpoints):
    crashed = ReviewSession.open(dataset / "imagesTr" / "case_001_0000.nii.gz",
                                 labels=dataset / "labelsTr" / "case_001.nii.gz")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    worklist = Worklist.open(dataset, checkpoints)
    list(worklist.prediction_queue())  # each case's image key is known
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_000")
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched is None
    following = navigator.next(session)
    assert following.recoverable_edits is not None and following.recoverable_edits.reviewed[2]
    following.close(discard=True)


@pytest.mark.parametrize("dropped", [True, False])
def test_a_case_with_a_crashed_sessions_edits_whose_key_is_unknown_is_not_opened_ahead(dataset, dropped):
    """Its image key not known yet (never opened, not in the cache), the case was opened
    ahead blind, which set the crashed journal aside: dropped unused, the case then opened
    without offering the edits (only File > Recover edits had them)."""
    image = dataset / "imagesTr" / "case_001_0000.nii.gz"
    crashed = ReviewSession.open(image, labels=dataset / "labelsTr" / "case_001.nii.gz")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    worklist = Worklist.open(dataset)
    assert worklist.case("case_001").key is None
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_000")
    navigator.prefetch_next(in_a_thread)
    if dropped:
        navigator.drop_prefetch()  # the models changed, say
        assert crashed_edits(image_key(load_volume(image)))  # still offered when the case opens
    else:
        assert navigator.prefetched is None
    following = navigator.next(session)
    assert following.case.name == "case_001"
    assert following.recoverable_edits is not None and following.recoverable_edits.reviewed[2]
    following.close(discard=True)


def test_edits_of_a_segview_that_crashed_after_the_prefetch_are_offered_when_the_case_is_shown(dataset):
    """A tester killed a second segview holding the case the first had opened ahead: the first
    showed it without the other's edits and without offering them. It is opened again."""
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    session = navigator.save_and_open("case_000")
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched == "case_001"
    crashed = Worklist.open(dataset).session("case_001")
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: the journal stays behind, as after a crash
    following = navigator.next(session)
    assert following.case.name == "case_001" and following.lock is not None
    assert following.recoverable_edits is not None and following.recoverable_edits.reviewed[2]
    following.close(discard=True)


def test_an_open_job_cancelled_closes_what_it_opens(dataset):
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    job = navigator.open_job("case_001")
    navigator.close()  # the window closed before the worker ran
    session = job()
    assert job.cancelled and not journal_of(dataset, "case_001").exists()
    navigator.opened(job)
    assert navigator.current is None and navigator.opening is None
    assert not session.modified
    again = Worklist.open(dataset).session("case_001")
    assert not again.read_only  # its lock went with it
    again.close()


def test_one_rule_decides_a_datasets_layout(tmp_path, dataset):
    assert dataset_layout(dataset) == "nnU-Net"
    series = tmp_path / "series"
    write_dicom_series(tiny_case(0, slices=3, size=16)[0], series)
    assert dataset_layout(series) is None  # one series: an image
    with pytest.raises(DatasetError, match="no dataset"):
        Worklist.open(series)
    study = tmp_path / "one_study"
    write_dicom_series(tiny_case(1, slices=3, size=16)[0], study / "patient_a" / "ax")
    assert dataset_layout(study) is None  # one study: an image, by both
    with pytest.raises(DatasetError, match="one study"):
        Worklist.open(study)
    write_dicom_series(tiny_case(2, slices=3, size=16)[0], study / "patient_b" / "ax")
    assert dataset_layout(study) == "DICOM" and Worklist.open(study).layout == "DICOM"
    (study / "notes.txt").write_text("a file of its own: not a folder of studies")
    assert dataset_layout(study) is None
    with pytest.raises(DatasetError):
        Worklist.open(study)
    assert dataset_layout(tmp_path / "missing") is None


def test_a_vs_b_differ_counts_voxels_per_voxel_of_either_foreground(tmp_path):
    cache = PredictionCache(tmp_path / "cache")
    a = np.zeros((4, 10, 10), np.uint8)
    b = np.zeros((4, 10, 10), np.uint8)
    a[1, 2:6, 2:6] = 1          # 16 voxels
    b[1, 3:7, 2:6] = 1          # 16 voxels, 12 shared with a
    b[2, 0, 0] = 2              # 1 voxel only b calls foreground
    a[3, 5, 5], b[3, 5, 5] = 1, 2  # foreground in both, classes differ
    cache.put("key", "da", a, {})
    cache.put("key", "db", b, {})
    # Differ: 4 (a only) + 4 (b only) + 1 + 1 = 10; foreground of either: 20 + 1 + 1 = 22.
    assert cache.ensure_disputed("key", "da", "db") == pytest.approx(10 / 22)
    assert cache.disputed("key", "da", "db") == pytest.approx(10 / 22)
    cache.put("key", "empty", np.zeros_like(a), {})
    assert cache.ensure_disputed("key", "empty", "empty") == 0.0  # both find nothing: they agree
    (tmp_path / "cache" / "key" / "disputed.json").write_text(json.dumps({"da:db": 0.005}))  # a whole-image share
    assert cache.disputed("key", "da", "db") is None
    assert cache.ensure_disputed("key", "da", "db") == pytest.approx(10 / 22)


def test_the_worklist_sorts_by_the_disagreement_of_the_queue(dataset, checkpoints):
    worklist = Worklist.open(dataset, checkpoints)
    list(worklist.prediction_queue())
    expected = {}
    for case in worklist.cases:
        digests = worklist.digests()
        a, b = (worklist.cache.get(case.key, digests[slot]) for slot in "AB")
        expected[case.name] = np.count_nonzero(a != b) / np.count_nonzero((a > 0) | (b > 0))
        assert case.disputed == pytest.approx(expected[case.name])
    assert [c.name for c in worklist.sorted("disputed")] == sorted(expected, key=lambda n: (-expected[n], n))
    assert max(expected.values()) > 0.01  # a figure a person can compare, not 0.1 % of the image


def test_a_case_opened_ahead_locks_nothing_until_it_is_shown(dataset, monkeypatch):
    """A tester's colleague found the next case "open in another segview" while only the case
    before it was on screen: the prefetch held its lock. Now a case opened ahead is locked as
    it is shown: read-only when another segview has it then, opened again when another saved
    it meanwhile (its labels and marks as saved, not as prefetched)."""
    worklist = Worklist.open(dataset)
    navigator = WorklistNavigator(worklist)
    calls = count_sessions(monkeypatch, worklist)
    session = navigator.save_and_open("case_001")
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched == "case_002"
    colleague = Worklist.open(dataset).session("case_002")
    assert not colleague.read_only  # the prefetch keeps nobody out
    shown = navigator.next(session)
    assert shown.case.name == "case_002" and calls.count("case_002") == 1
    assert shown.read_only and "open in another segview" in shown.read_only_reason
    assert shown.journal is None  # nothing can be edited: its journal, started ahead, is gone
    shown.close()
    colleague.close()

    # Saved by a colleague between the prefetch and the showing: opened again, as saved.
    navigator.prefetch_next(in_a_thread)
    assert navigator.prefetched == "case_003"
    colleague = Worklist.open(dataset).session("case_003")
    colleague.mark_reviewed(1)
    colleague.save()
    colleague.close()
    shown = navigator.next(None)
    assert shown.case.name == "case_003" and calls.count("case_003") == 2
    assert not shown.read_only and shown.reviewed[1] and shown.lock is not None
    case = worklist.case("case_003")  # its row as the colleague saved it, not as first listed
    assert (case.status, case.reviewed_count) == ("in progress", 1)
    other = Worklist.open(dataset).session("case_003")
    assert other.read_only  # locked now it is shown
    other.close()
    shown.close()


KILLED_IN_A_REVIEW = textwrap.dedent("""
    import os, signal, sys, threading
    from segview.session import Worklist, WorklistNavigator
    navigator = WorklistNavigator(Worklist.open(sys.argv[1]))
    session = navigator.save_and_open("case_001")
    session.labels.paint(1, [(5, 5)], 2.0, 1)
    session.mark_reviewed(1)

    def start(prefetch):
        thread = threading.Thread(target=prefetch)
        thread.start()
        thread.join(60)

    navigator.prefetch_next(start)
    print("ready", navigator.prefetched, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("restored", [True, False])
def test_after_a_kill_the_case_with_edits_is_marked_until_they_are_restored_or_declined(dataset, restored):
    """A radiologist back after a crash saw no case marked as holding unsaved edits; and the
    empty journal of the case opened ahead (never edited) was set aside with them."""
    child = subprocess.run([sys.executable, "-c", KILLED_IN_A_REVIEW, str(dataset)], capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL and "ready case_002" in child.stdout, child.stderr
    assert journal_of(dataset, "case_002").is_file()  # opened ahead, its snapshot written
    worklist = Worklist.open(dataset)
    assert [c.name for c in worklist.cases if c.crashed_edits] == ["case_001"]
    ahead = worklist.session("case_002")
    assert ahead.recoverable_edits is None and not worklist.case("case_002").crashed_edits
    ahead.close()
    shown = worklist.session("case_001")
    assert shown.recoverable_edits is not None and worklist.case("case_001").crashed_edits  # offered, not yet taken
    edited = journal_of(dataset, "case_001").stem
    assert [p.name[:len(edited)] for p in set_aside_folder().iterdir()] == [edited]  # case_002's was deleted
    if restored:
        shown.restore(shown.recoverable_edits)
        assert shown.reviewed[1]
    else:
        shown.recoverable_edits = None  # declined: the window's No
    assert not worklist.case("case_001").crashed_edits
    shown.close(discard=True)
    assert not any(c.crashed_edits for c in Worklist.open(dataset).cases)


def leave_crashed_edits(dataset, name):
    """A session of case ``name`` killed with a slice marked and nothing saved: its journal stays."""
    crashed = Worklist.open(dataset).session(name)
    crashed.mark_reviewed(2)
    crashed.close()  # unsaved: as after a kill -9


def test_a_crashed_sessions_edits_of_a_case_looked_at_read_only_are_offered_when_it_opens_editable_later(dataset):
    """A radiologist back after a kill looked at the case holding the unsaved edits while a
    colleague had it (read-only), went on to another, and came back once the colleague was
    done: the edits were not offered, and the row no longer said "crashed edits" (the
    read-only opening had set their journal aside; only File > Recover edits had them)."""
    leave_crashed_edits(dataset, "case_001")
    colleague, _ = CaseLock.acquire(dataset / "labelsTr" / "case_001.nii.gz")
    assert colleague is not None
    worklist = Worklist.open(dataset)
    looked = worklist.session("case_001")
    assert looked.read_only and looked.journal is None  # it cannot be saved: nothing to journal
    assert looked.recoverable_edits is not None and worklist.case("case_001").crashed_edits
    looked.close()
    assert worklist.case("case_001").crashed_edits and crashed_edits(looked.key)
    assert not set_aside_folder().exists() or not any(set_aside_folder().iterdir())
    assert Worklist.open(dataset).case("case_001").crashed_edits  # after a restart too
    colleague.release()
    editable = worklist.session("case_001")
    assert not editable.read_only and editable.recoverable_edits is not None
    assert editable.recoverable_edits.reviewed[2]
    editable.restore(editable.recoverable_edits)
    assert editable.reviewed[2] and not worklist.case("case_001").crashed_edits
    editable.close(discard=True)


def test_a_dataset_opens_on_the_first_case_with_crashed_edits_that_nobody_else_has_open(dataset):
    """After a restart the first case not done came on screen, a case a colleague had open
    (read-only here), while another case held this reader's unsaved edits."""
    assert WorklistNavigator(Worklist.open(dataset)).first_name() == "case_000"  # none: the first not done
    for name in ("case_002", "case_003"):
        leave_crashed_edits(dataset, name)
    holding = [CaseLock.acquire(dataset / "labelsTr" / f"{name}.nii.gz")[0] for name in ("case_000", "case_002")]
    navigator = WorklistNavigator(Worklist.open(dataset))
    assert [c.name for c in navigator.cases() if c.crashed_edits] == ["case_002", "case_003"]
    assert navigator.first_name() == "case_003"  # case_002's are offered once its holder is done
    for lock in holding:
        lock.release()
    assert WorklistNavigator(Worklist.open(dataset)).first_name() == "case_002"
