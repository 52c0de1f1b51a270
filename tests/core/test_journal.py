"""The edit journal: replay equals the labels, torn writes and SIGKILL lose only the step
in progress, unwritable places give JournalError."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from segview.core.journal import Journal, JournalError, image_key, recover
from segview.core.labels import LabelMap
from segview.core.phantoms import make_phantom


def editing_session(tmp_path, shape=(4, 30, 40)):
    labels = LabelMap(np.zeros(shape, np.uint8), (1.0, 1.0, 2.0))
    labels.array[1, 5:10, 5:10] = 2  # labels that existed before editing began
    return labels, Journal.start(tmp_path / "edits.svj", labels, "key")


def test_replaying_the_journal_gives_the_labels_after_strokes_fills_undo_and_redo(tmp_path):
    labels, journal = editing_session(tmp_path)
    labels.begin_stroke()
    labels.paint(0, [(5, 5), (20, 30)], 2.0, 1)
    labels.paint(0, [(20, 30), (25, 10)], 2.0, 1)
    labels.end_stroke()
    labels.fill(1, (7, 7), 3)
    labels.paint(2, [(15, 15)], 4.0, 1)
    labels.undo()
    labels.undo()
    labels.redo()
    labels.copy_slice(0, 3)
    assert labels.interpolate(0, 3) is not None  # around slice 1's square: it fills background only
    journal.close()
    recovered = recover(tmp_path / "edits.svj")
    np.testing.assert_array_equal(recovered.labels, labels.array)
    assert recovered.steps == 8 and recovered.image_key == "key" and not recovered.truncated


def test_a_torn_last_record_loses_only_the_last_step(tmp_path):
    labels, journal = editing_session(tmp_path)
    labels.paint(0, [(10, 10)], 3.0, 1)
    before_last = labels.array.copy()
    size = (tmp_path / "edits.svj").stat().st_size
    labels.paint(3, [(20, 20)], 6.0, 2)
    journal.close()
    data = (tmp_path / "edits.svj").read_bytes()
    for cut in (size + 5, len(data) - 1):  # torn inside the record header, inside its body
        (tmp_path / "torn.svj").write_bytes(data[:cut])
        recovered = recover(tmp_path / "torn.svj")
        np.testing.assert_array_equal(recovered.labels, before_last)
        assert recovered.truncated and recovered.steps == 1
    damaged = bytearray(data)
    damaged[-3] ^= 0xFF  # a flipped bit in the last record: its CRC fails
    (tmp_path / "damaged.svj").write_bytes(bytes(damaged))
    np.testing.assert_array_equal(recover(tmp_path / "damaged.svj").labels, before_last)


def test_a_stroke_in_progress_is_not_journalled(tmp_path):
    labels, journal = editing_session(tmp_path)
    start = labels.array.copy()
    labels.begin_stroke()
    labels.paint(0, [(10, 10)], 3.0, 1)
    np.testing.assert_array_equal(recover(tmp_path / "edits.svj").labels, start)
    labels.end_stroke()
    np.testing.assert_array_equal(recover(tmp_path / "edits.svj").labels, labels.array)
    journal.close(delete=True)
    assert not (tmp_path / "edits.svj").exists()


def test_not_a_journal_and_unwritable_places(tmp_path):
    (tmp_path / "other.svj").write_bytes(b"PK\x03\x04 not a journal")
    with pytest.raises(JournalError, match="not a segview edit journal"):
        recover(tmp_path / "other.svj")
    labels = LabelMap(np.zeros((2, 4, 4), np.uint8), (1, 1, 1))
    (tmp_path / "file").write_text("x")
    with pytest.raises(JournalError, match="cannot keep a journal"):
        Journal.start(tmp_path / "file" / "edits.svj", labels, "key")  # a file where a folder should be


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_raises_journal_error_and_keeps_the_edit_in_memory(tmp_path):
    labels = LabelMap(np.zeros((2, 8, 8), np.uint8), (1, 1, 1))
    with pytest.raises(JournalError, match="No space left"):
        Journal.start("/dev/full", labels, "key")


def test_the_image_key_follows_the_image_and_its_grid():
    a, b = make_phantom("cardiac", 0).volume, make_phantom("cardiac", 1).volume
    assert image_key(a) == image_key(make_phantom("cardiac", 0).volume) != image_key(b)
    a.spacing = (a.spacing[0], a.spacing[1], a.spacing[2] + 1)
    assert image_key(a) != image_key(make_phantom("cardiac", 0).volume)


CHILD = textwrap.dedent("""
    import sys, os, time
    import numpy as np
    from segview.core.journal import Journal
    from segview.core.labels import LabelMap

    folder = sys.argv[1]
    rng = np.random.default_rng(7)
    labels = LabelMap(np.zeros((20, 128, 128), np.uint8), (0.8, 0.8, 3.0))
    Journal.start(os.path.join(folder, "edits.svj"), labels, "key")
    for step in range(15):
        labels.begin_stroke()
        z = int(rng.integers(0, 20))
        for _ in range(8):
            labels.paint(z, rng.uniform(0, 128, (2, 2)), float(rng.uniform(1, 8)), int(rng.integers(0, 4)))
        labels.end_stroke()
        if step % 5 == 4:
            labels.undo()
        np.save(os.path.join(folder, "expected.npy"), labels.array)
    print("ready", flush=True)
    labels.begin_stroke()  # killed in the middle of this stroke
    labels.paint(3, [(10, 10), (100, 100)], 10.0, 2)
    print("mid-stroke", flush=True)
    time.sleep(60)
""")


def test_sigkill_in_the_middle_of_a_stroke_loses_nothing_completed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "mid-stroke"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    recovered = recover(tmp_path / "edits.svj")
    expected = np.load(tmp_path / "expected.npy")
    assert expected.any() and recovered.steps == 18  # 15 strokes and 3 undos
    np.testing.assert_array_equal(recovered.labels, expected)


def test_a_failing_append_stops_the_journal_without_interrupting_editing(tmp_path, monkeypatch):
    import segview.core.journal as journal_module

    labels, journal = editing_session(tmp_path)
    labels.paint(0, [(10, 10)], 3.0, 1)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_record", full_disk)
    labels.paint(1, [(10, 10)], 3.0, 2)  # no exception: the edit is made
    assert labels.array[1, 10, 10] == 2
    assert isinstance(journal.error, JournalError) and "No space left" in str(journal.error)
    assert journal.steps == 1


def test_the_class_table_is_journalled_at_the_start_and_where_it_changes(tmp_path):
    from segview.core.classes import LabelClass

    first = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "liver", (200, 30, 200))]
    later = first + [LabelClass(2, "tumour", (10, 220, 240))]
    labels = LabelMap(np.zeros((3, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    current = [first]
    journal = Journal.start(tmp_path / "a.svj", labels, "key", classes=first)
    journal.class_table = lambda: current[0]
    labels.paint(0, [(3, 3)], 1.0, 1)
    assert recover(tmp_path / "a.svj").classes == first
    current[0] = later
    labels.paint(1, [(3, 3)], 1.0, 2)
    labels.paint(2, [(3, 3)], 1.0, 2)
    journal.close()
    recovered = recover(tmp_path / "a.svj")
    assert recovered.classes == later and recovered.steps == 3
    np.testing.assert_array_equal(recovered.labels, labels.array)
    plain = LabelMap(np.zeros((3, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    Journal.start(tmp_path / "b.svj", plain, "key").close()  # labels without a table of their own
    assert recover(tmp_path / "b.svj").classes == []


def test_a_snapshot_written_by_a_thread_comes_before_every_step(tmp_path):
    labels = LabelMap(np.zeros((4, 30, 40), np.uint8), (1.0, 1.0, 2.0))
    labels.array[1, 5:10, 5:10] = 2
    before = labels.array.copy()
    job = Journal.snapshot_job(labels.array, "key", labels.reviewed)
    journal = Journal.start(tmp_path / "edits.svj", labels, "key", job)
    labels.paint(0, [(5, 5), (20, 30)], 2.0, 1)
    labels.set_reviewed(3)
    journal.close()
    recovered = recover(tmp_path / "edits.svj")
    np.testing.assert_array_equal(recovered.labels, labels.array)
    assert recovered.steps == 2 and recovered.reviewed.tolist() == [False, False, False, True]
    quiet = LabelMap(before.copy(), (1.0, 1.0, 2.0))
    Journal.start(tmp_path / "quiet.svj", quiet, "key", Journal.snapshot_job(quiet.array, "key")).close()
    np.testing.assert_array_equal(recover(tmp_path / "quiet.svj").labels, before)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_snapshot_that_cannot_be_written_stops_the_journal_without_interrupting_editing():
    labels = LabelMap(np.zeros((2, 8, 8), np.uint8), (1, 1, 1))
    journal = Journal.start("/dev/full", labels, "key", Journal.snapshot_job(labels.array, "key"))
    labels.paint(0, [(3, 3)], 1.0, 1)  # the step waits for the snapshot, which failed
    assert isinstance(journal.error, JournalError) and "No space left" in str(journal.error)
    assert labels.array[0, 3, 3] == 1
    journal.close()


def test_a_stroke_drawn_while_the_snapshot_is_written_stays_out_of_it(tmp_path, monkeypatch):
    import threading

    import segview.core.journal as journal_module

    monkeypatch.setattr(journal_module, "SLAB_BYTES", 30 * 40)  # one slice a slab
    reading, go = threading.Event(), threading.Event()
    chunks = journal_module.Snapshot.chunks

    def gated(self, read=None):
        def slab(start, stop):
            if start > 0:  # slice 0 is read; the thread waits before slice 1
                reading.set()
                go.wait(10)
            return read(start, stop)
        yield from chunks(self, slab)

    monkeypatch.setattr(journal_module.Snapshot, "chunks", gated)
    labels = LabelMap(np.zeros((4, 30, 40), np.uint8), (1.0, 1.0, 2.0))
    labels.array[1, 5:10, 5:10] = 2
    before = labels.array.copy()
    journal = Journal.start(tmp_path / "edits.svj", labels, "key", Journal.snapshot_job(labels.array, "key"))
    assert reading.wait(10)
    labels.begin_stroke()  # slice 0 already read, slices 1 to 3 not yet
    labels.paint(0, [(5, 5), (20, 30)], 3.0, 1)
    labels.paint(1, [(7, 7)], 4.0, 0)  # erases some of class 2
    labels.copy_from(np.full(labels.array.shape, 3, np.uint8), z=3)
    scattered = np.zeros(labels.array.shape, np.uint8)
    scattered[2, ::7, ::9] = 1
    labels.copy_from(scattered, z=2)  # a few voxels in a wide box: kept as positions
    go.set()
    journal.wait()
    np.testing.assert_array_equal(recover(tmp_path / "edits.svj").labels, before)  # nothing of the stroke
    labels.end_stroke()
    np.testing.assert_array_equal(recover(tmp_path / "edits.svj").labels, labels.array)
    journal.close()


def test_a_whole_volume_copy_is_journalled_sparse_and_recovered_exactly(tmp_path):
    rng = np.random.default_rng(2)
    labels = LabelMap(rng.integers(0, 3, (12, 64, 64)).astype(np.uint8), (1.0, 1.0, 2.0))
    journal = Journal.start(tmp_path / "edits.svj", labels, "key")
    size = (tmp_path / "edits.svj").stat().st_size
    model = labels.array.copy()
    flat = model.reshape(-1)
    where = rng.choice(flat.size, flat.size // 100, replace=False)
    flat[where] = (flat[where] + 1) % 3
    with labels.step():
        labels.copy_from(model)
    record = (tmp_path / "edits.svj").stat().st_size - size
    assert record < 6 * len(where)  # positions and values of what changed: nothing of the rest
    labels.undo()
    labels.redo()
    journal.close()
    recovered = recover(tmp_path / "edits.svj")
    assert recovered.steps == 3
    np.testing.assert_array_equal(recovered.labels, model)


SPARSE_CHILD = textwrap.dedent("""
    import sys, os, time
    import numpy as np
    from segview.core.journal import Journal
    from segview.core.labels import LabelMap

    folder = sys.argv[1]
    rng = np.random.default_rng(8)
    labels = LabelMap(rng.integers(0, 3, (16, 96, 96)).astype(np.uint8), (0.8, 0.8, 3.0))
    Journal.start(os.path.join(folder, "edits.svj"), labels, "key", Journal.snapshot_job(labels.array, "key"))
    for step in range(4):
        model = labels.array.copy()
        flat = model.reshape(-1)
        where = rng.choice(flat.size, flat.size // 100, replace=False)
        flat[where] = (flat[where] + 1) % 3
        with labels.step():
            labels.copy_from(model)  # a whole-volume copy: a sparse step
        if step == 2:
            labels.undo()
        np.save(os.path.join(folder, "expected.npy"), labels.array)
    print("ready", flush=True)
    labels.begin_stroke()  # killed in the middle of this step
    labels.copy_from(np.zeros(labels.array.shape, np.uint8))
    print("mid-step", flush=True)
    time.sleep(60)
""")


def test_sigkill_after_sparse_steps_recovers_them_exactly(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", SPARSE_CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "mid-step"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    recovered = recover(tmp_path / "edits.svj")
    assert recovered.steps == 5  # four copies and an undo
    np.testing.assert_array_equal(recovered.labels, np.load(tmp_path / "expected.npy"))


def test_the_voxel_digest_is_of_the_values_whatever_type_holds_them():
    from segview.core.journal import voxel_digest
    from segview.core.volume import Volume

    values = np.arange(-1024, 3072, dtype=np.int32).reshape(4, 32, 32)
    digests = {voxel_digest(Volume(values.astype(dtype))) for dtype in (np.int16, np.int32, np.int64, np.float32,
                                                                          np.float64, ">i2")}
    assert len(digests) == 1
    assert voxel_digest(Volume(values + 0.5)) not in digests  # another grey
    assert voxel_digest(Volume(values.reshape(8, 16, 32))) not in digests  # another shape
    assert voxel_digest(Volume(values[::-1].copy())) not in digests  # slices in another order
    assert voxel_digest(Volume(np.full((2, 4, 4), np.inf))) != voxel_digest(Volume(np.full((2, 4, 4), 1e20)))


def test_setting_aside_deletes_the_journals_that_record_no_step_and_keeps_any_with_one(tmp_path):
    """After a kill in a dataset's review, the journals of the cases opened ahead (a snapshot,
    no edit) piled up in the set-aside folder; a journal with one step is kept there."""
    from segview.core.journal import journal_path, set_aside, set_aside_folder

    empty_key, edited_key, saved_key, torn_key, other_key = (f"{n}" * 40 for n in range(5))
    ahead = LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    Journal.start(journal_path(empty_key), ahead, empty_key).close()  # not deleted: as after a kill
    for key, save in ((edited_key, False), (saved_key, True)):
        labels = LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0))
        journal = Journal.start(journal_path(key), labels, key)
        labels.paint(1, [(4, 4)], 1.0, 1)
        if save:
            journal.mark_saved()  # nothing left to recover, but it records a step: kept
        journal.close()
    journal_path(torn_key).write_bytes(b"SV")  # killed as it began
    journal_path(other_key).write_bytes(b"not a journal")  # not taken for an empty one
    assert set_aside(empty_key) == [] and set_aside(torn_key) == []
    assert not journal_path(empty_key).exists() and not journal_path(torn_key).exists()
    for key in (edited_key, saved_key, other_key):
        moved = set_aside(key)
        assert len(moved) == 1 and moved[0].is_file() and not journal_path(key).exists()
    assert sorted(p.name[:40] for p in set_aside_folder().iterdir()) == [edited_key, saved_key, other_key]


def test_a_new_journal_is_locked_before_another_session_can_see_it(monkeypatch):
    """A session setting aside the same image's crashed journals between another's creating
    its journal and locking it took the new one for a crashed one and deleted it (no step
    yet): the other session then journalled into a file nobody could find after a crash."""
    import fcntl

    from segview.core import journal as journal_module
    from segview.core.journal import journal_path, set_aside, start_journal

    key = "7" * 40
    real_flock = fcntl.flock

    def flock_after_another_session_looked(file, operation):
        set_aside(key)  # another segview opening the same image, in the gap
        return real_flock(file, operation)

    monkeypatch.setattr(journal_module.fcntl, "flock", flock_after_another_session_looked)
    labels = LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    journal = start_journal(labels, key)
    monkeypatch.setattr(journal_module.fcntl, "flock", real_flock)
    labels.paint(1, [(4, 4)], 1.0, 1)
    assert journal.path == journal_path(key) and journal.path.is_file()
    assert recover(journal.path).steps == 1
    journal.close()


def test_a_crashed_journal_not_yet_set_aside_is_never_overwritten_by_a_new_one():
    from segview.core.journal import journal_path, start_journal

    key = "8" * 40
    crashed = LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    journal = Journal.start(journal_path(key), crashed, key)
    crashed.paint(2, [(3, 3)], 1.0, 1)
    journal._file.close()  # killed: not closed cleanly, its file stays
    fresh = start_journal(LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0)), key)
    assert fresh.path == journal_path(key, 1)
    assert recover(journal_path(key)).steps == 1
    fresh.close()


def test_a_journal_is_kept_where_the_filesystem_has_no_hard_links(monkeypatch):
    from segview.core import journal as journal_module
    from segview.core.journal import journal_path, start_journal

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")  # as on a FAT or some SMB mounts

    monkeypatch.setattr(journal_module.os, "link", no_links)
    key = "9" * 40
    labels = LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0))
    journal = start_journal(labels, key)
    labels.paint(1, [(4, 4)], 1.0, 1)
    assert journal.path == journal_path(key) and recover(journal.path).steps == 1
    assert [p.name for p in journal.path.parent.iterdir()] == [journal.path.name]  # no temporary left
    second = start_journal(LabelMap(np.zeros((4, 8, 8), np.uint8), (1.0, 1.0, 1.0)), key)
    assert second.path == journal_path(key, 1)  # the first is taken: never truncated
    second.close()
    journal.close()
