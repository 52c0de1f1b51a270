"""A crash-safe journal of label edits and review marks: nothing a radiologist draws or
checks is lost.

The file starts with a snapshot of the labels, review marks and class table (names and
colours) when editing began, then holds one record per completed step (a stroke, a fill, a
review mark, an undo, a redo): for each changed region the positions and new values of
the voxels that changed (or, when most of the region changed, its new values: whichever is
smaller, as the undo history keeps it), the marks set or taken back, and the class table
and the journalled sidecar keys (the rulers) when they changed since the last record (a
ruler drawn or deleted is a record of its own). Each record
is written whole, flushed and fsynced before the next one, and
carries its length and CRC, so after a crash (even SIGKILL or a power cut in the middle
of a write) replaying the intact records gives the labels as they were after the last
completed step. No pickle: a small JSON header and raw uint8 bytes, zlib-compressed.

    journal = Journal.start(path, labels, image_key)   # labels: LabelMap
    ...                                                # every completed step is appended
    recovered = recover(path)                          # after a crash: RecoveredLabels

Journals are named by ``image_key``: a digest of the pixel data and the geometry, so the
same series opened by another path (relative, through a link, by a subfolder) finds its
journal. A crashed session's journal is set aside (never deleted) while the user decides;
``set_aside_journals`` lists them for File > Recover edits. One that records no step (a case
opened ahead, never edited) holds nothing to recover: it is deleted instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np

try:
    import fcntl  # POSIX: a live session locks its journal, so nobody takes it for a crashed one
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .classes import LabelClass, rgb
from .errors import SegviewError
from .labels import SLAB_BYTES, Edit, LabelMap, Mark, Patch
from .volume import grid_differences

MAGIC = b"SVJ1"
RECORD = struct.Struct("<4sII")  # tag, payload length, CRC32 of the payload
SNAPSHOT, STEP, SAVED = b"SNAP", b"STEP", b"SAVE"  # SAVE: the labels were saved here


class JournalError(SegviewError):
    """The journal cannot be written (full disk, read-only folder) or is not a journal."""


def state_directory() -> Path:
    """Where journals live when the user's data folder is not writable: XDG_STATE_HOME."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "segview" / "journals"


def image_key(volume) -> str:
    """Identifies an image whatever path it was opened by: a digest of all its voxels and
    its grid (shape, spacing, origin, direction)."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr((volume.array.dtype.str, volume.shape, tuple(volume.spacing), tuple(volume.origin),
                        tuple(volume.direction))).encode())
    array = np.ascontiguousarray(volume.array)
    for plane in array:  # slice by slice: no copy of the whole volume
        digest.update(memoryview(plane).cast("B"))
    return digest.hexdigest()


def image_fingerprint(volume) -> dict:
    """What identifies an image another tool re-saved (a DICOM series written as NIfTI), whose
    ``image_key`` changed: a digest of its voxel values alone, whatever type holds them, and
    its grid. JSON, for the review sidecar."""
    return {"voxels": voxel_digest(volume), "size": list(volume.shape[::-1]), "spacing": list(volume.spacing),
            "origin": list(volume.origin), "direction": list(volume.direction)}


def same_image(fingerprint: dict, volume) -> bool:
    """Whether ``fingerprint`` (``image_fingerprint``'s) is of ``volume``: the same voxel values
    on a grid that ``core.volume.grid_differences`` calls the same (what a header of float32
    numbers, NIfTI's, or of decimal strings, DICOM's, makes of one grid)."""
    try:
        if grid_differences(fingerprint, volume):
            return False
    except (KeyError, TypeError, ValueError):  # not a fingerprint
        return False
    return fingerprint.get("voxels") == voxel_digest(volume)


def voxel_digest(volume) -> str:
    """A digest of the shape and voxel values alone: the same for int16 HU read back as int32
    or as whole floats. Whole values are hashed in the smallest integer type that holds
    their range, other values as float32."""
    array = volume.array
    dtype = _whole_type(array) or np.dtype("<f4")
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr(volume.shape).encode())
    for plane in array:
        digest.update(np.ascontiguousarray(plane.astype(dtype, copy=False)).data)
    return digest.hexdigest()


def _whole_type(array: np.ndarray) -> np.dtype | None:
    """The smallest integer type (unsigned when no value is negative) that holds every value
    of ``array`` exactly; None when some value is not a whole number of int64's range."""
    if array.dtype.kind == "f" and not all(np.isfinite(plane).all() and np.array_equal(plane, np.trunc(plane))
                                           for plane in array):
        return None
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    kinds = (np.uint8, np.uint16, np.uint32, np.uint64) if low >= 0 else (np.int8, np.int16, np.int32, np.int64)
    kind = next((k for k in kinds if np.iinfo(k).min <= low and high <= np.iinfo(k).max), None)
    return None if kind is None else np.dtype(kind).newbyteorder("<")


def journal_path(key: str, instance: int = 0) -> Path:
    """The journal of the image with ``image_key`` ``key`` (``instance``: a second window on
    the same image journals beside the first)."""
    return state_directory() / (f"{key}.svj" if not instance else f"{key}-{instance}.svj")


def start_journal(labels: LabelMap, key: str, snapshot: bytes | Callable[[], bytes] | None = None,
                  classes: list[LabelClass] | None = None) -> Journal:
    """A journal of ``labels`` under the image's key, beside any live session's journal of the
    same image (those are locked); ``snapshot`` and ``classes`` as for ``Journal.start``.
    Raises JournalError when none can be written."""
    for instance in range(100):
        try:
            return Journal.start(journal_path(key, instance), labels, key, snapshot, classes, exclusive=True)
        except FileExistsError:  # a live session's, or a crash's not yet set aside: both kept
            continue
    raise JournalError(f"too many sessions journal edits of this image in {state_directory()}")


def _new_locked_file(path: Path) -> BinaryIO:
    """A new file at ``path``, open for writing and locked before it appears there: made under
    a hidden temporary name, locked, then linked to ``path``. Another session never sees it
    unlocked, so never takes it for a crashed journal to set aside or delete. Raises
    FileExistsError when ``path`` exists."""
    if fcntl is None:  # pragma: no cover - Windows: no locks to race with
        return open(path, "xb")
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    file = os.fdopen(descriptor, "wb")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.link(temporary, path)
    except FileExistsError:
        file.close()
        raise
    except OSError:  # no hard links there (some network or FAT mounts): created, then locked
        file.close()
        file = open(path, "xb")
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        file.close()
        raise
    finally:
        os.unlink(temporary)
    return file


def _in_use(path: Path) -> bool:
    """Whether a running session holds ``path`` (its lock)."""
    if fcntl is None or not path.exists():
        return False
    try:
        with open(path, "rb") as file:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


def crashed_journals(key: str) -> list[Path]:
    """Journals of image ``key`` that no running session holds: left by a crash or a kill."""
    folder = state_directory()
    paths = list(folder.glob(f"{key}.svj")) + list(folder.glob(f"{key}-*.svj")) if folder.exists() else []
    return [p for p in paths if not _in_use(p)]


def journalled_keys() -> set[str]:
    """The image keys of the journals in the journal folder (live sessions' and crashed
    ones'): one listing, so that a worklist looks for crashed edits only where there are
    journals."""
    folder = state_directory()
    return {p.stem.split("-")[0] for p in folder.glob("*.svj")} if folder.exists() else set()


def set_aside_folder() -> Path:
    return state_directory() / "set-aside"


#: Recovered steps are kept one by one (so that undo takes them back one by one) while
#: their regions hold at most this many bytes; beyond, they come back as one step.
HISTORY_BYTES = 256 * 2 ** 20


@dataclass
class RecoveredStep:
    """One completed step of a journal: the regions it wrote (bounds, values after it), the
    review marks it set or took back (z, reviewed), and the journalled sidecar after it."""
    regions: list[tuple[list[list[int]], np.ndarray]]
    marks: list[tuple[int, bool]]
    sidecar: dict | None


def labels_digest(labels: np.ndarray, reviewed: np.ndarray) -> str:
    """A digest of labels and review marks: which state a journal's steps start from."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(labels.shape).encode())
    for plane in labels:
        digest.update(np.ascontiguousarray(plane, np.uint8).data)
    digest.update(np.asarray(reviewed, bool).tobytes())
    return digest.hexdigest()


@dataclass
class RecoveredLabels:
    labels: np.ndarray   # (z, y, x) uint8 after the last completed step
    image_key: str
    steps: int           # completed steps replayed since the labels were last saved
    truncated: bool      # an incomplete record at the end was ignored (the crash)
    reviewed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (Z,) review marks then
    about: dict = field(default_factory=dict)  # what the image was: source, description, started
    marks: dict = field(default_factory=dict)  # z -> {"by", "at"} of the marks set since the snapshot
    #: The class table after the last completed step; empty when the journal holds none (the
    #: labels had no table of their own, or a journal written before tables were journalled).
    classes: list[LabelClass] = field(default_factory=list)
    #: The journalled sidecar keys (the rulers, the provenance) after the last completed step; None in a
    #: journal written before they were journalled.
    sidecar: dict | None = None
    #: The steps since the labels were last saved, one by one, from the state ``base``
    #: (``labels_digest``) names; empty when they held more than HISTORY_BYTES.
    history: list[RecoveredStep] = field(default_factory=list)
    base: str = ""
    #: The voxels (flat indices) and the slices' marks the steps changed since the labels were
    #: last saved: all a restore writes onto labels someone else has saved since (None: not
    #: known, the whole labels and marks are taken).
    changed: np.ndarray | None = None
    changed_marks: np.ndarray | None = None


class Journal:
    """Appends every completed step of ``labels`` to ``path``; see the module docstring."""

    def __init__(self, path: Path, labels: LabelMap, file, classes: list[LabelClass] | None = None):
        self.path, self.labels, self._file = path, labels, file
        self._pending: list[Patch] = []  # the step's edits, kept as the undo history keeps them
        self._marks: list[Mark] = []
        self.mark_details: Callable[[int], dict] = lambda z: {}  # who marked slice z, and when
        #: The labels' class table now (None: they have none); recorded with the next step
        #: whenever it differs from the one last recorded.
        self.class_table: Callable[[], list[LabelClass] | None] = lambda: None
        self._recorded_classes = list(classes) if classes else None
        #: The review sidecar's journalled keys now (``follow_sidecar``), recorded whenever
        #: they differ from those last recorded.
        self.sidecar: Callable[[], dict] = dict
        self._recorded_sidecar: dict = {}
        self.steps = 0
        self.error: JournalError | None = None  # set when a write failed; journalling stops
        self._writing: threading.Thread | None = None  # writes the snapshot (see ``start``)
        self._since_start: list[Patch] | None = None
        labels.events.changed.connect(self._collect)
        labels.events.marked.connect(self._collect_mark)
        labels.events.step.connect(self.flush)

    def follow_sidecar(self, sidecar: Callable[[], dict]) -> None:
        """Journal what ``sidecar()`` gives (JSON: the rulers), as it is now the baseline (the
        snapshot's, ``snapshot_job``'s ``sidecar``)."""
        self.sidecar, self._recorded_sidecar = sidecar, _json_copy(sidecar())

    def record_sidecar(self) -> None:
        """A sidecar change (a ruler) outside any step: written now, unless a step is open
        (a drag, a copy written in slabs), whose half must not become a record: then it
        goes with that step's record when it ends."""
        if self.labels.history_position is not None:
            self.flush()

    @staticmethod
    def snapshot(labels: np.ndarray, key: str, reviewed=None, about: dict | None = None,
                 classes: list[LabelClass] | None = None) -> bytes:
        """The compressed first record for ``labels``, the ``reviewed`` slices and the
        labels' ``classes`` (None: they have no table of their own): the slow part of
        ``start``, which a worker can do beforehand. ``about`` (JSON) says what the image
        is, for the list of set-aside journals."""
        return Journal.snapshot_job(labels, key, reviewed, about, classes)()

    @staticmethod
    def snapshot_job(labels: np.ndarray, key: str, reviewed=None, about: dict | None = None,
                     classes: list[LabelClass] | None = None, sidecar: dict | None = None) -> Snapshot:
        """``snapshot`` as a job: the review marks and classes are taken now, the labels
        read and compressed slab by slab when it runs (no copy of the volume). Given to
        ``Journal.start``, a thread of the journal's streams it to the file while editing
        goes on, and it holds the labels as they were when the journal started."""
        marks = [] if reviewed is None else np.flatnonzero(reviewed).tolist()
        document = {"image_key": key, "shape": list(labels.shape), "reviewed": marks,
                    "about": dict(about or {}, started=time.time())}
        if classes:
            document["classes"] = _classes_json(classes)
        if sidecar is not None:  # the journalled sidecar keys (the rulers) then
            document["sidecar"] = _json_copy(sidecar)
        return Snapshot(labels, json.dumps(document).encode())

    @classmethod
    def start(cls, path, labels: LabelMap, key: str, snapshot: bytes | Callable[[], bytes] | None = None,
              classes: list[LabelClass] | None = None, exclusive: bool = False) -> Journal:
        """A new journal at ``path`` (replacing any) beginning with a snapshot of ``labels``,
        their review marks and ``classes`` now (or ``snapshot``, made by ``Journal.snapshot``
        of the same labels and ``classes``; or a ``Journal.snapshot_job``, compressed and
        written by a thread of the journal's while editing starts: each step waits for it).
        Raises JournalError when it cannot be written (for a job: when the file cannot be
        made; a failed write of its snapshot sets ``error``). ``exclusive``: only where no
        file is (FileExistsError otherwise), appearing already locked (``_new_locked_file``)."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = _new_locked_file(path) if exclusive else open(path, "wb")
            if fcntl is not None and not exclusive:
                fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not callable(snapshot):
                _write_record(file, SNAPSHOT, snapshot or cls.snapshot(labels.array, key, labels.reviewed,
                                                                       classes=classes), compressed=True)
        except FileExistsError:
            if exclusive:
                raise
            raise JournalError(f"cannot keep a journal of the edits at {path}: it exists") from None
        except OSError as exc:
            raise JournalError(f"cannot keep a journal of the edits in {path.parent}: "
                               f"{exc.strerror or exc}") from exc
        journal = cls(path, labels, file, classes)
        if callable(snapshot):
            journal._since_start = []  # the edits made while the thread reads the labels
            journal._writing = threading.Thread(target=journal._write_snapshot, args=(snapshot,),
                                                name="journal snapshot", daemon=True)
            journal._writing.start()
        return journal

    def _write_snapshot(self, job: Callable[[], bytes]) -> None:
        try:
            if isinstance(job, Snapshot):
                _write_streamed(self._file, SNAPSHOT, job.chunks(self._read_slab))
            else:
                _write_record(self._file, SNAPSHOT, job(), compressed=True)
        except (OSError, MemoryError) as exc:
            self.error = JournalError(f"cannot keep a journal of the edits in {self.path.parent}: "
                                      f"{getattr(exc, 'strerror', None) or exc}")
        finally:
            with self.labels.lock:
                self._since_start = None

    def _read_slab(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` of the labels as they were when the journal started: read
        while no change is being applied, then the edits made since put back (newest
        first), so a stroke in progress never reaches the snapshot."""
        with self.labels.lock:
            slab = self.labels.array[start:stop].copy()
            since = list(self._since_start or [])
        for patch in reversed(since):
            _put_back(slab, start, patch)
        return slab

    def wait(self) -> None:
        """Until the snapshot is written (a ``Journal.snapshot_job`` runs in a thread)."""
        if self._writing is not None:
            self._writing.join()
            self._writing = None

    def _collect(self, edit: Edit) -> None:
        patch = Patch.of(edit)  # its changed voxels only, not the arrays of its box
        self._pending.append(patch)
        if self._since_start is not None:  # heard under the labels' lock, as the snapshot reads them
            self._since_start.append(patch)

    def _collect_mark(self, mark: Mark) -> None:
        self._marks.append(mark)

    def flush(self) -> None:
        """Append the edits since the last flush as one record (called after each step).
        A failed write (disk full) never interrupts editing: it sets ``error`` and the
        journal stops, so the window can say so."""
        sidecar = _json_copy(self.sidecar())
        if self._pending or self._marks or sidecar != self._recorded_sidecar:
            self.wait()  # the snapshot first
        if not (self._pending or self._marks or sidecar != self._recorded_sidecar) or self.error is not None:
            self._pending.clear()
            self._marks.clear()
            return
        edits, self._pending = self._pending, []
        marks, self._marks = self._marks, []
        # "stored": per region the voxels recorded (their positions, then their new values),
        # -1 for every voxel of the region (its new values only).
        document: dict = {"regions": [[[int(r.start), int(r.stop)] for r in e.region] for e in edits],
                          "stored": [-1 if e.index is None else len(e.index) for e in edits],
                          "marks": [[m.z, m.new, self.mark_details(m.z) if m.new else {}] for m in marks]}
        classes = self.class_table()
        classes = list(classes) if classes else None
        if classes != self._recorded_classes and classes is not None:
            document["classes"] = _classes_json(classes)
        if sidecar != self._recorded_sidecar:
            document["sidecar"] = sidecar
        header = json.dumps(document).encode()
        payload = struct.pack("<I", len(header)) + header + b"".join(_voxels(e) for e in edits)
        try:
            _write_record(self._file, STEP, zlib.compress(payload, 1), compressed=True)
        except OSError as exc:
            self.error = JournalError(f"cannot append to the edit journal {self.path}: {exc.strerror or exc}")
            return
        if "classes" in document:
            self._recorded_classes = classes
        self._recorded_sidecar = sidecar
        self.steps += 1

    def mark_saved(self) -> None:
        """The labels as of now are safely saved: recovery counts only the steps after this."""
        self.wait()
        if self.error is None:
            try:
                _write_record(self._file, SAVED, b"", compressed=False)
            except OSError as exc:
                self.error = JournalError(f"cannot append to the edit journal {self.path}: {exc.strerror or exc}")

    def close(self, delete: bool = False) -> None:
        """Stop journalling; ``delete`` once the labels are safely saved."""
        self.wait()
        events = self.labels.events
        events.changed.disconnect(self._collect)
        events.marked.disconnect(self._collect_mark)
        events.step.disconnect(self.flush)
        try:
            self._file.close()
        except OSError:
            pass  # only the bytes of a write that failed were left to flush (``error`` says so)
        if delete:
            self.path.unlink(missing_ok=True)


def unsaved_edits(key: str) -> RecoveredLabels | None:
    """Edits of the image with ``image_key`` ``key`` that an earlier session journalled and
    never saved (it crashed or was killed: a clean close deletes its journal), the newest if
    there are several. None if there are none or the journals are unreadable."""
    found = [r for r in (_readable(p) for p in crashed_journals(key)) if r is not None and r.steps]
    return max(found, key=lambda r: r.about.get("started", 0), default=None)


def set_aside(key: str) -> list[Path]:
    """Move the crashed journals of image ``key`` out of the way of a new session, into the
    set-aside folder, where ``set_aside_journals`` finds them again. Returns their new paths.
    One that records no step (``records_nothing``: a case opened ahead, never edited) is
    deleted instead: it holds nothing to recover, and such journals piled up there."""
    moved = []
    for path in crashed_journals(key):
        if records_nothing(path):
            path.unlink(missing_ok=True)
            continue
        target = set_aside_folder() / f"{path.stem}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.svj"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.replace(target)
        moved.append(target)
    return moved


@dataclass
class SetAsideJournal:
    path: Path
    recovered: RecoveredLabels
    modified: float   # seconds since the epoch: when its last step was written


def set_aside_journals(key: str | None = None) -> list[SetAsideJournal]:
    """Journals of crashed sessions kept aside (of image ``key``, or all), newest first;
    only those with at least one step, unreadable files skipped."""
    folder = set_aside_folder()
    found = []
    for path in folder.glob(f"{key or ''}*.svj") if folder.exists() else []:
        recovered = _readable(path)
        if recovered is not None and recovered.steps:
            found.append(SetAsideJournal(path, recovered, path.stat().st_mtime))
    return sorted(found, key=lambda j: j.modified, reverse=True)


def mark_restored(key: str, recovered: RecoveredLabels) -> None:
    """Keep the set-aside journals of image ``key`` that ``recovered`` came from, but no
    longer list them (``set_aside_journals``): File > Recover edits offered edits already
    restored, to be restored twice. A journal is known by when its session started."""
    started = recovered.about.get("started")
    folder = set_aside_folder()
    if not started or not folder.exists():
        return
    for path in folder.glob(f"{key}*.svj"):
        found = _readable(path)
        if found is not None and found.about.get("started") == started:
            path.replace(path.with_suffix(".restored"))


def records_nothing(path: Path) -> bool:
    """Whether journal ``path`` records no step (no edit, review mark or ruler): its snapshot
    alone, or less (killed while it was made). Decompresses nothing. A file that is no
    journal, or cannot be read, is not taken for an empty one."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if len(data) < len(MAGIC):
        return MAGIC.startswith(data)
    if not data.startswith(MAGIC):
        return False
    records, _ = _packed_records(data[len(MAGIC):])
    return all(tag != STEP for tag, _ in records)


def _readable(path: Path) -> RecoveredLabels | None:
    try:
        return recover(path)
    except (JournalError, OSError, ValueError, KeyError, TypeError, zlib.error):
        return None


def recover(path) -> RecoveredLabels:
    """The labels after the last completed step recorded in journal ``path``. Raises
    JournalError for a file that is not a journal or lacks its snapshot."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise JournalError(f"{path} is not a segview edit journal")
    records, truncated = _records(data[len(MAGIC):])
    if not records or records[0][0] != SNAPSHOT:
        raise JournalError(f"{path} lacks the snapshot it starts from")
    header, body = _split(records[0][1])
    labels = np.frombuffer(body, np.uint8).reshape(header["shape"]).copy()
    reviewed = np.zeros(labels.shape[0], bool)
    reviewed[header.get("reviewed", [])] = True
    classes = _classes_from_json(header.get("classes"))  # absent from journals before class tables
    sidecar = header.get("sidecar")  # absent from journals before rulers were journalled
    steps, marks = 0, {}
    saved = labels.copy(), reviewed.copy(), sidecar  # the state nothing needs recovering to
    history: list[RecoveredStep] | None = []
    kept_bytes = 0
    for tag, payload in records[1:]:
        if tag == SAVED:
            steps, saved, history, kept_bytes = 0, (labels.copy(), reviewed.copy(), sidecar), [], 0
            continue
        steps += 1
        step, body = _split(payload)
        regions = step["regions"] if isinstance(step, dict) else step  # a list: journals before marks
        step_marks = []
        for z, new, *details in step.get("marks", []) if isinstance(step, dict) else []:
            reviewed[z] = new
            marks[z] = details[0] if details else {}
            step_marks.append((int(z), bool(new)))
        if isinstance(step, dict) and step.get("classes"):
            classes = _classes_from_json(step["classes"])
        if isinstance(step, dict) and "sidecar" in step:
            sidecar = step["sidecar"]
        stored = step.get("stored") if isinstance(step, dict) else None  # None: journals before sparse steps
        offset = 0
        for n, bounds in enumerate(regions):
            offset = _replay(labels, bounds, body, offset, -1 if stored is None else stored[n])
        if history is not None:
            written = [(bounds, labels[tuple(slice(a, b) for a, b in bounds)].copy()) for bounds in regions]
            kept_bytes += sum(values.nbytes for _, values in written)
            if kept_bytes <= HISTORY_BYTES:
                history.append(RecoveredStep(written, step_marks, sidecar))
            else:
                history = None  # too large to keep twice: they come back as one step
    if np.array_equal(labels, saved[0]) and np.array_equal(reviewed, saved[1]) and sidecar == saved[2]:
        steps = 0  # steps that cancel out (a mark set and taken back) leave nothing to recover
    return RecoveredLabels(labels, header["image_key"], steps, truncated, reviewed,
                           header.get("about", {}), marks, classes, sidecar, history or [],
                           labels_digest(*saved[:2]) if history else "",
                           np.flatnonzero(labels != saved[0]), np.flatnonzero(reviewed != saved[1]))


class Snapshot:
    """A journal's first record, made as it is written: the JSON ``header`` and the
    ``labels`` (z, y, x) uint8, compressed slab by slab. Called, it gives the whole record."""

    def __init__(self, labels: np.ndarray, header: bytes):
        self.labels, self.header = labels, header

    def chunks(self, read: Callable[[int, int], np.ndarray] | None = None) -> Iterator[bytes]:
        """The compressed record in pieces; ``read(start, stop)`` gives those slices of the
        labels (default: as they are now)."""
        packer = zlib.compressobj(1)
        yield packer.compress(struct.pack("<I", len(self.header)) + self.header)
        slices = self.labels.shape[0]
        step = max(1, SLAB_BYTES // max(self.labels[:1].nbytes, 1))
        for start in range(0, slices, step):
            stop = min(start + step, slices)
            slab = read(start, stop) if read is not None else self.labels[start:stop]
            yield packer.compress(np.ascontiguousarray(slab, np.uint8).data)
        yield packer.flush()

    def __call__(self) -> bytes:
        return b"".join(self.chunks())


def _put_back(slab: np.ndarray, start: int, patch: Patch) -> None:
    """Give the voxels of ``slab`` (slices ``start`` on) that ``patch`` changed their old values."""
    region, stop = patch.region, start + slab.shape[0]
    first, last = max(region[0].start, start), min(region[0].stop, stop)
    if first >= last:
        return
    shape = tuple(r.stop - r.start for r in region)
    if patch.index is None:
        old = patch.old.reshape(shape)[first - region[0].start:last - region[0].start]
        slab[first - start:last - start, region[1], region[2]] = old
        return
    z, y, x = np.unravel_index(patch.index, shape)
    z = z + region[0].start
    inside = (z >= first) & (z < last)
    slab[z[inside] - start, y[inside] + region[1].start, x[inside] + region[2].start] = patch.old[inside]


def _write_streamed(file, tag: bytes, chunks: Iterable[bytes]) -> None:
    """One record written as its ``chunks`` come (already compressed), its length and CRC
    filled in at the end; then fsync. Torn, its CRC fails: it was never written."""
    if file.tell() == 0:
        file.write(MAGIC)
    at = file.tell()
    file.write(RECORD.pack(tag, 0, 0))
    length, crc = 0, 0
    for chunk in chunks:
        file.write(chunk)
        length, crc = length + len(chunk), zlib.crc32(chunk, crc)
    end = file.tell()
    file.seek(at)
    file.write(RECORD.pack(tag, length, crc))
    file.seek(end)
    file.flush()
    os.fsync(file.fileno())


def _json_copy(document: dict) -> dict:
    """``document`` as the journal records it: a copy through JSON (lists, not tuples)."""
    return json.loads(json.dumps(document))


def _index_dtype(shape) -> str:
    """How a record stores positions in a region of ``shape``: little-endian, 4 bytes
    while they fit (as ``Patch`` keeps them)."""
    return "<u4" if int(np.prod(shape, dtype=np.int64)) <= 2 ** 32 else "<u8"


def _voxels(patch: Patch) -> bytes:
    """A region's bytes in a step record: the changed voxels' positions and new values, or
    the new values of the whole region."""
    if patch.index is None:
        return patch.new.tobytes()
    shape = [r.stop - r.start for r in patch.region]
    return patch.index.astype(_index_dtype(shape), copy=False).tobytes() + patch.new.tobytes()


def _replay(labels: np.ndarray, bounds, body: bytes, offset: int, stored: int) -> int:
    """Write one region of a step record (``stored`` voxels, -1 for all) into ``labels``;
    returns the offset of the next region's bytes."""
    region = tuple(slice(a, b) for a, b in bounds)
    shape = [b - a for a, b in bounds]
    if stored < 0:
        size = int(np.prod(shape))
        labels[region] = np.frombuffer(body, np.uint8, size, offset).reshape(shape)
        return offset + size
    dtype = np.dtype(_index_dtype(shape))
    index = np.frombuffer(body, dtype, stored, offset)
    offset += index.nbytes
    labels[region][np.unravel_index(index, shape)] = np.frombuffer(body, np.uint8, stored, offset)
    return offset + stored


def _classes_json(classes: list[LabelClass]) -> list[dict]:
    """A class table as JSON, in the shape of a label file's class file."""
    return [{"value": int(c.value), "name": str(c.name), "color": [int(v) for v in c.color]} for c in classes]


def _classes_from_json(table) -> list[LabelClass]:
    return [LabelClass(int(c["value"]), str(c["name"]), rgb(c["color"])) for c in table or []]


def _write_record(file, tag: bytes, packed: bytes, compressed: bool) -> None:
    """One record: tag, length, CRC and the zlib-compressed payload; then fsync."""
    if not compressed:
        packed = zlib.compress(packed, 1)
    if file.tell() == 0:
        file.write(MAGIC)
    file.write(RECORD.pack(tag, len(packed), zlib.crc32(packed)) + packed)
    file.flush()
    os.fsync(file.fileno())


def _records(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The intact records, and whether an incomplete or damaged one ended the file."""
    records, truncated = _packed_records(data)
    return [(tag, zlib.decompress(packed)) for tag, packed in records], truncated


def _packed_records(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The intact records, their payloads still compressed, and whether an incomplete or
    damaged one ended the file."""
    records: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset < len(data):
        if offset + RECORD.size > len(data):
            return records, True
        tag, length, crc = RECORD.unpack_from(data, offset)
        packed = data[offset + RECORD.size: offset + RECORD.size + length]
        if tag not in (SNAPSHOT, STEP, SAVED) or len(packed) < length or zlib.crc32(packed) != crc:
            return records, True
        records.append((tag, packed))
        offset += RECORD.size + length
    return records, False


def _split(payload: bytes):
    (length,) = struct.unpack_from("<I", payload)
    return json.loads(payload[4:4 + length]), payload[4 + length:]
