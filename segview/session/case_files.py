"""What segview keeps beside a dataset's label files: a lock per case open in a session
(``CaseLock``, in ``.locks/``) and the files a save replaces (``keep_previous``, in
``.previous/``). The worklist uses both for its cases; a window that opens a case's label
file directly uses them too (``is_dataset_labels``), so that neither route overwrites the
other's work or the original labels."""
from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.files import extension, not_shared, replace_atomically, share_like_folder, shared_folder
from ..core.io import sidecar_path
from ..core.review_state import current_user, now, review_path
from .errors import SessionError

try:
    import fcntl  # POSIX: a case open in one segview is locked, released by the system if it dies
except ImportError:  # pragma: no cover - Windows: no case locks
    fcntl = None  # type: ignore[assignment]

LOCKS, PREVIOUS = ".locks", ".previous"


def case_entry(status: str, note: str = "") -> dict:
    """The sidecar's "case" entry a worklist reads: the case's status and note, who set them
    and when."""
    return {"status": status, "note": note, "by": current_user(), "at": now()}


def is_dataset_labels(path) -> bool:
    """Whether ``path`` is a case's label file in a dataset: in an nnU-Net ``labelsTr`` beside
    its ``imagesTr``, or in a folder where segview keeps case locks or replaced files."""
    folder = Path(path).absolute().parent
    return ((folder.name == "labelsTr" and (folder.parent / "imagesTr").is_dir())
            or (folder / LOCKS).is_dir() or (folder / PREVIOUS).is_dir())


class CaseLock:
    """A case open in a session: an exclusive ``flock`` on ``.locks/<case>.lock`` beside its
    labels, holding who has it. Released by ``release``, and by the system when the process
    ends, even by a crash. No locks where the system has no ``flock`` (Windows)."""

    def __init__(self, file):
        self.file = file

    @classmethod
    def acquire(cls, labels_path: Path, patient: bool = False) -> tuple[CaseLock | None, str | None]:
        """(the lock, None), or (None, who holds it) when another session has the case.
        A folder where nothing can be saved gives (None, None): nothing to guard. Where the
        labels could be saved but no lock made (another user's ``.locks``), (None, why): the
        case may be open elsewhere. ``patient``: a lock found held is tried again a few
        times within 40 ms before it is taken as held: another segview asking who
        holds the case (``holder_of``, every few seconds) takes the lock for an instant,
        and a session opening the case then would open it read-only."""
        if fcntl is None:
            return None, None
        path = lock_path(labels_path)
        try:
            _segview_folder(path.parent)
            file = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open while the case is
            share_like_folder(path)  # made now, or by an older segview of this user
        except PermissionError:
            # Made by another user who could not share it (an older segview): it still locks.
            try:
                file = open(path, encoding="utf-8")  # noqa: SIM115
            except FileNotFoundError:  # none to lock, none can be made: someone may have the case
                writable = os.access(labels_path.parent, os.W_OK)
                return None, f"or may be: no lock can be taken here, {not_shared(path.parent)}" if writable \
                    else None
            except OSError:
                return None, None
        except OSError:
            return None, None
        if not _flocked(file, PATIENCE_S if patient else 0.0):
            file.seek(0)
            holder = file.read().strip() or "another session"
            file.close()
            return None, holder
        if file.writable():  # who holds it, for the others to say
            file.seek(0)
            file.truncate()
            file.write(f"{current_user()}{_this_process()}since {now()}")
            file.flush()
        return cls(file), None

    def release(self) -> None:
        if self.file.writable():
            self.file.seek(0)
            self.file.truncate()
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


#: How long ``CaseLock.acquire(patient=True)`` tries a lock found held (seconds).
PATIENCE_S = 0.04


def _flocked(file, patience_s: float) -> bool:
    """Whether ``file``'s exclusive ``flock`` was taken, tried again every 10 ms for up to
    ``patience_s``."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def lock_path(labels_path: Path) -> Path:
    """The lock file of the case whose labels are ``labels_path``."""
    return labels_path.parent / LOCKS / f"{labels_path.name}.lock"


def holder_of(labels_path: Path) -> str | None:
    """Who holds the case whose labels are ``labels_path`` (any session, of any process), as
    its lock file names them; None when nobody does. Only a lock file that names someone is
    tried (a lock let go empties its file), so asking never locks a case nobody had; one a
    segview that crashed left naming it is found free, and emptied."""
    try:
        named = lock_path(labels_path).read_text(encoding="utf-8").strip()
    except (OSError, ValueError):
        return None
    if not named:
        return None
    lock, holder = CaseLock.acquire(labels_path)
    if lock is not None:
        lock.release()
    return holder


def _segview_folder(folder: Path) -> None:
    """``.locks`` or ``.previous``, made if need be, with its folder's permissions (also when an
    older segview of this user made it with this user's umask: ``share_like_folder``)."""
    shared_folder(folder.parent)  # a DICOM dataset's labels folder, before its first save
    folder.mkdir(exist_ok=True)
    share_like_folder(folder)


def held_by_another(labels_path: Path) -> bool:
    """Whether another session (of any process) holds the case whose labels are
    ``labels_path``; the lock is taken and let go at once to find out."""
    lock, holder = CaseLock.acquire(labels_path)
    if lock is not None:
        lock.release()
    return holder is not None


def _this_process() -> str:
    """How a lock file names this process (between the user and the time)."""
    return f" on {socket.gethostname()}, process {os.getpid()}, "


@contextmanager
def case_held(labels_path: Path) -> Iterator[None]:
    """The case whose labels are ``labels_path`` locked while something is written beside
    them without a session (its status and note), so that no segview opens it meanwhile.
    Raises SessionError naming who has it open elsewhere: that segview's next save would
    write its own status over this one. A case a session of this process holds is written
    at once (that session saves the status its worklist's case then has)."""
    lock, holder = CaseLock.acquire(labels_path)
    if holder is not None and _this_process() not in holder:
        raise SessionError(f"{labels_path.name} is a case open in another segview ({holder}): set its status "
                           "there, or here once it has been closed.")
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def keep_previous(labels_path: Path) -> None:
    """Copy ``labels_path`` and its sidecars (review state; class table of a NIfTI or
    MetaImage file) into ``.previous/`` beside it: as ``<case>.original<ext>`` the first
    time, and as ``<case><ext>`` (replacing the last backup, whose sidecars go where the
    file replaced has none, so a backup never pairs with another save's). Atomic copies.
    Raises LabelSaveError when they cannot be made."""
    from ..core.errors import LabelSaveError

    if not labels_path.is_file():
        return
    backups = labels_path.parent / PREVIOUS
    ext = extension(labels_path)
    stem = labels_path.name[: -len(ext)] if ext else labels_path.name
    try:
        _segview_folder(backups)
        first_time = not (backups / f"{stem}.original{ext}").exists()
        for source in (labels_path, review_path(labels_path), sidecar_path(labels_path)):
            suffix = source.name[len(stem):]  # ".nii.gz", ".review.json", ".classes.json"
            if not source.is_file():
                (backups / source.name).unlink(missing_ok=True)
                continue
            if first_time:
                _copy(source, backups / f"{stem}.original{suffix}")
            _copy(source, backups / source.name)
    except OSError as exc:
        why = f"; {not_shared(backups)}" if isinstance(exc, PermissionError) and backups.is_dir() else ""
        raise LabelSaveError(f"The labels were not saved: the file they replace could not be kept in "
                             f"{backups} ({exc.strerror or exc}{why}).") from exc


def _copy(source: Path, target: Path) -> None:
    def write(temporary: Path) -> None:
        shutil.copyfile(source, temporary)

    replace_atomically(target, write)
