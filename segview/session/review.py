"""ReviewSession: one image, its labels and review state, models A and B with their
predictions, the live metrics, the edit journal and each slice's provenance (saved in the
review sidecar); every transition of the work.

The Logic of 3D Slicer's Widget/Logic split: no Qt. The window only wires its buttons to
these methods, and a script or a test does the same without a window:

    session = ReviewSession.open("ct_folder/", labels="ct.labels.nii.gz")
    session.load_model("A", "ce.safetensors")
    session.load_model("B", "ce_dice.safetensors")
    session.predict()
    session.copy_prediction("B", z=40)       # one undo step; slice 41 is not reviewed by it
    session.mark_reviewed(40)
    print(session.scores("A").mean_dice, session.scores("B").mean_dice)
    session.save()                           # labels + review state (.review.json)
    session.close()

Threads: ``open``, ``load_predictor``, a ``SaveJob``, a ``ToolJob``, a ``CopyJob``, a
``ClickJob`` and ``prediction_batches`` may run in a worker; every other method is called from one thread
(the window's main thread), which writes a whole-volume copy in pieces (``start_copy``: a
``CopyWrite`` stepped from its event loop) so that it never waits long.
"""
from __future__ import annotations

import math
from collections import deque
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import time

import numpy as np

from ..core.classes import (LabelClass, class_name, completed_classes, generic_classes, is_placeholder, merged_classes,
                            naming_conflict)
from ..core.dicom import FirstSlice, SeriesInfo, read_dicom_files
from ..core.errors import LabelSaveError, VolumeLoadError
from ..core.files import extension
from ..core.io import (LABEL_EXTENSIONS, labels_image, load_classes, load_labels, load_volume, read_label_image,
                       save_labels, slices_on_earlier_grid)
from ..core.journal import (Journal, JournalError, RecoveredLabels, image_fingerprint, image_key, labels_digest,
                            mark_restored, set_aside, start_journal, unsaved_edits)
from ..core.labels import STEP_NAMES, Edit, Gaps, Kept, LabelMap, Patch, Region, Step, labelled_slices
from ..core.memory import release_freed_slabs
from ..core.live import LiveMetrics
from ..core.measures import RegionStatistics
from ..core.metrics import Scores
from ..core.review_state import (ReviewState, current_user, load_review_state, names_image, now, read_sidecar,
                                 review_path, save_review_state, update_sidecar)
from ..core.volume import Volume, auto_window
from .case_files import CaseLock, case_entry, is_dataset_labels, keep_previous
from .models import SLOTS, Model, load_predictor
from .errors import SessionError, checked_slice
from .interaction import ClickJob, ClickProposal, Interaction
from .provenance import INTERACTIVE, INTERPOLATION, Provenance, from_json, segment_algorithms
from .provenance import KEY as KEY_PROVENANCE
from .rulers import KEY as KEY_RULERS
from .rulers import Rulers
from .statistics import class_statistics, shape_statistics

#: The review's DICOM SEG series in its sidecar: {"series_uid", "instance": the last written}.
KEY_SEG = "dicom_seg"

Progress = Callable[[int, int], None]
#: Seconds of a whole-volume copy (or a fill) written by one ``PatchWrite.step`` (the window writes one per
#: turn of its event loop).
COPY_PIECE_S = 0.03
#: The undo step of a crashed session's edits brought back (``restore``).
RECOVERED = "recovered edits"


@dataclass
class LabelFile:
    """A label file read for an image (in a worker): its voxels, classes and review state."""
    path: Path
    array: np.ndarray              # (z, y, x) uint8 on the image grid
    classes: list[LabelClass]
    review: ReviewState
    warning: str | None = None

    @property
    def saved_at(self) -> Path | None:
        """Where saving these labels writes them again: their file, unless it is a DICOM
        SEG (saving writes NIfTI, NRRD or MetaImage; a SEG is exported)."""
        return self.path if extension(self.path) in LABEL_EXTENSIONS else None


def _seg_label_file(path: Path, volume: Volume) -> LabelFile:
    """A DICOM SEG of ``volume``'s series as labels (``core.dicomseg.read_seg_labels``): no
    slice reviewed, nothing to save back onto it. Raises VolumeLoadError."""
    from ..core.dicomseg import DicomSegError, read_seg_labels, seg_name

    try:
        array, classes = read_seg_labels(path, volume)
    except DicomSegError as exc:
        raise VolumeLoadError(str(exc)) from exc
    return LabelFile(path, array, classes, ReviewState.empty(volume.shape[0]),
                     f"The labels come from the DICOM SEG {seg_name(path)}: no slice is marked reviewed, and saving "
                     "writes a label file (NIfTI, NRRD or MHA), never onto the SEG; File > Export DICOM SEG "
                     "writes a new SEG.")


def image_files(volume: Volume) -> set[Path]:
    """The files ``volume`` was read from (its file, or its DICOM series' files), resolved."""
    named = [volume.meta.get("source") or "", *(volume.meta.get("source_files") or [])]
    return {Path(f).resolve() for f in named if f and Path(f).is_file()}


def labels_beside_image(volume: Volume) -> Path | None:
    """Where a first save puts the labels of ``volume``: ``<image name>.labels.nii.gz`` beside
    its file or DICOM folder (None for an image without one)."""
    source = Path(str(volume.meta.get("source", "")))
    if not source.name or not source.exists():
        return None
    source = source.resolve()  # named after the image, not after a link to it
    stem = source.name[: -len(extension(source))] if source.is_file() and extension(source) else source.name
    return source.parent / f"{stem}.labels.nii.gz"


def series_labels_beside(volume: Volume) -> Path | None:
    """Where the labels of a DICOM series go when ``labels_beside_image`` holds another
    series' of the same folder: ``<folder>.<description>-<end of its series UID>.labels.nii.gz``
    (None for an image that is no DICOM series in a folder)."""
    plain = labels_beside_image(volume)
    uid = str(volume.meta.get("series_uid") or "")
    if plain is None or not uid or not Path(str(volume.meta.get("source", ""))).is_dir():
        return None
    description = "".join(c if c.isalnum() or c in "-_" else "_" for c in
                          str(volume.meta.get("series_description") or "series"))[:40]
    tail = "".join(c for c in uid if c.isdigit())[-6:]
    return plain.with_name(f"{plain.name[: -len('.labels.nii.gz')]}.{description}-{tail}.labels.nii.gz")


def _another_images(path: Path, key: str, volume: Volume) -> bool:
    """Whether the label file ``path`` exists and its sidecar names another image than
    ``volume`` (``key``: its image_key)."""
    return path.is_file() and not names_image(read_sidecar(path) or {}, key, volume)


def read_label_file(path, volume: Volume, key: str | None = None, image=None) -> LabelFile:
    """Labels, classes and review state saved at ``path`` for ``volume`` (``image``: the
    file as ``core.io.read_label_image`` read it beforehand). Raises VolumeLoadError (a
    grid that differs, an unreadable file, more than 255 classes)."""
    path = Path(path)
    if extension(path) not in LABEL_EXTENSIONS:
        from ..core.dicomseg import is_dicom_seg  # highdicom, only when a SEG may be read

        if is_dicom_seg(path):
            return _seg_label_file(path, volume)
    image = image or read_label_image(path)
    array = load_labels(path, volume, image=image)
    if array.dtype != np.uint8:
        raise VolumeLoadError(f"{path.name} holds class values up to {int(array.max())}; segview edits at "
                              "most 255 classes.")
    taken_from = slices_on_earlier_grid(image, volume)
    review, warning = load_review_state(path, volume.shape[0], key or image_key(volume), volume, taken_from)
    if taken_from is not None:
        moved = (f"The labels in {path.name} were saved on an earlier resampling of this unevenly spaced series, "
                 "whose grid did not end on its last acquired slice: each slice took the labels (and review mark) "
                 "of the nearest earlier slice. The next save writes them on the current grid.")
        warning = f"{moved} {warning}" if warning else moved
    classes, unnamed = completed_classes(load_classes(path), array)
    if unnamed:
        note = _unnamed_note(f"The class table of {path.name}", unnamed)
        warning = f"{warning} {note}" if warning else note
    return LabelFile(path, np.ascontiguousarray(array), classes, review, warning)


def unread_labels_note(path: Path, exc: Exception, then: str = "File > Open labels takes others") -> str:
    """Why the labels at ``path`` were not read (``exc``: on another grid, the message gives
    both sizes) and the labels start empty; ``then``: what the person may do."""
    return f"The labels {path.name} were not read, so the labels start empty ({then}): {exc}"


def _unnamed_note(table: str, values: list[int]) -> str:
    """What to say of the label ``values`` that ``table`` names no class for."""
    names = ", ".join(f'"label {v}"' for v in values)
    return f"{table} names no class for label value(s) {', '.join(str(v) for v in values)}: shown as {names}."


def _named_by(table: list[LabelClass], declared: list[LabelClass]) -> list[LabelClass]:
    """``table`` with each class under a generic name ("label 3": ``completed_classes``'s,
    or saved before anyone named it) taking the ``declared`` class of its value, if any."""
    named = {c.value: c for c in declared}
    return [named.get(c.value, c) if is_placeholder(c) else c for c in table]


@dataclass
class PredictionBatch:
    """Slices of one model's prediction, as ``prediction_batches`` yields them."""
    slot: str
    predictor: Any
    predictions: list                 # ml.inference.SlicePrediction
    done: int                         # slices done so far (all models)
    total: int
    message: str | None = None        # e.g. the GPU ran out of memory, continuing on the CPU
    counted: list = field(default_factory=list)  # core.live.SliceCount of each prediction, made in the worker


class SaveJob:
    """A save of the labels and review state as they were when the job was made: call it
    (in a worker if you like), then hand it to ``ReviewSession.finish_save``. Onto a
    dataset case's label file (``case_files.is_dataset_labels``), the file it replaces is
    kept in ``.previous/`` first, whichever route it was opened by."""

    keeps_previous = False

    def __init__(self, session: ReviewSession, path: Path):
        """Raises SessionError for a ``path`` that is a file of the image itself."""
        if Path(path).exists() and Path(path).resolve() in image_files(session.volume):
            raise SessionError(f"{Path(path).name} is the image itself: the labels go into a file of their own, "
                               "or the image would be lost. Choose another name.")
        self.path, self.version = path, session.version
        self.position = session.labels.history_position  # the state it saves, in the undo history
        # The one copy of the labels a save makes: the SimpleITK image it writes (no numpy
        # copy beside it), taken here, so edits made while a worker writes it are not in it.
        with session.labels.lock:
            self.image = labels_image(session.labels.array, session.volume)
        self.review = session.review_state()
        self.volume, self.classes, self.key = session.volume, list(session.classes), session.key
        self.fingerprint = session.image_fingerprint  # computed in the worker, the first time
        self.keeps_previous = self.keeps_previous or is_dataset_labels(path)

    def __call__(self) -> Path:
        if self.keeps_previous:
            keep_previous(Path(self.path))
        save_labels(self.path, self.image, self.volume, self.classes)
        try:
            save_review_state(self.path, self.review, self.key, self.fingerprint())
        except OSError as exc:
            raise LabelSaveError(f"The labels were saved to {self.path.name}, but not their review state "
                                 f"({review_path(self.path).name}: {exc.strerror or exc}).") from exc
        return self.path


@dataclass
class ToolChange:
    """What a class tool's edits would do to its class: millilitres it gains and loses, how
    much of it there was before, and where (one volume, not a mask for each)."""
    added_ml: float
    removed_ml: float
    class_ml: float
    changes: np.ndarray            # (z, y, x) uint8: GAINED where a voxel joins the class, LEFT where it leaves it
    kept: str = ""                 # what the overwrite policy kept ("N voxels kept by ..."), '' when nothing
    taken_ml: float = 0.0          # of what it gains, what other classes held
    bounds: Region | None = None   # where a region grown could reach (its plane or box); None: the volume

    @property
    def reaches_edge(self) -> bool:
        """Whether what the class gains touches the edge of where it could grow (the image's,
        the plane's, or the 3D box's): a region grown there has most likely leaked out of the
        structure (testers' Grow took a whole slice, and in 3D the whole box)."""
        gained = (self.changes == self.GAINED)[self.bounds or ...]
        # In 3D not the first or last slice: a structure may run off a thin stack of slices.
        for axis in (1, 2) if self.in_3d else range(3):
            if gained.shape[axis] > 1 and (np.take(gained, 0, axis).any() or np.take(gained, -1, axis).any()):
                return True
        return False

    @property
    def in_3d(self) -> bool:
        """Whether it could change more than one slice of each plane (grown in 3D)."""
        return self.bounds is None or all(r.stop - r.start > 1 for r in self.bounds)

    GAINED, LEFT = 1, 2

    @property
    def mask(self) -> np.ndarray:
        """(z, y, x) bool: every voxel that changes."""
        return self.changes != 0

    @property
    def removed_fraction(self) -> float:
        """Of the class as it was, the part taken away (0 to 1)."""
        return self.removed_ml / self.class_ml if self.class_ml else 0.0

    def text(self) -> str:
        """"1.25 mL added, 0.40 mL removed (of 12.00 mL) on slices 7, 10", or "nothing
        changes", with what the overwrite policy kept ("; 120 voxels kept by 'Paint over:
        background only'")."""
        parts = [f"{ml:.2f} mL {word}" for ml, word in ((self.added_ml, "added"), (self.removed_ml, "removed")) if ml]
        said = f"{', '.join(parts)} (of {self.class_ml:.2f} mL)" if parts else "nothing changes"
        if parts:  # where: a 3D tool may change slices far from the one on screen
            said += f" {self.where()}"
        return f"{said}; {self.kept}" if self.kept else said

    def where(self) -> str:
        """"on slice 7", "on slices 7, 10" or "on 12 slices (3 to 14)" (``slices_text``)."""
        return "on " + slices_text(np.flatnonzero(self.changes.any(axis=(1, 2))))


def step_text(step: Step, classes: list[LabelClass]) -> str:
    """An undo step in words: what it was, where, and the classes it changed ("brush
    stroke on slices 30, 31 (lesion)"), so that undo can say what it took back."""
    said = f"{step.what} on {slices_text(step.slices())}"
    names = [class_name(classes, value) for value in step.values()]
    if len(names) > 3:
        names = names[:2] + [f"{len(names) - 2} more classes"]
    return f"{said} ({', '.join(names)})" if names else said


def slices_text(indices) -> str:
    """Slice indices in words, numbered from 1 as the window shows them: "slice 7",
    "slices 7, 10" or "12 slices (3 to 14)"."""
    slices = np.asarray(indices, int) + 1
    if slices.size > 3:
        return f"{slices.size} slices ({slices[0]} to {slices[-1]})"
    return f"slice{'s' if slices.size > 1 else ''} {', '.join(map(str, slices))}"


class ToolJob:
    """A class tool (``core.labels.CLASS_TOOLS``: islands, smoothing, margin, holes, logical
    operations, region growing) run on a copy of the labels, so a worker can compute it while the window
    stays live; ``ReviewSession.finish_tool`` then writes its result as one undo step. The
    copy carries the brush settings (policy, intensity range) the tools obey."""

    def __init__(self, session: ReviewSession, tool: str, *args, **options):
        labels = session.labels
        try:
            given = labels.check_tool(tool, *args, **options)  # here, not in the worker
        except ValueError as exc:
            raise SessionError(f"{tool.replace('_', ' ').capitalize()}: {exc}") from None
        self.tool, self.args, self.options, self.version = tool, args, options, session.version
        # The class it changes: a logical operation's target, else its value (None: every class).
        self.value = given["target"] if "target" in given else given.get("value")
        self.copy = LabelMap(labels.array.copy(), labels.spacing, intensities=labels.intensities)
        self.copy.policy, self.copy.intensity_range = labels.policy, labels.intensity_range
        self.kept = ""  # after the call: what the policy kept ("N voxels kept by ...")

    def __call__(self, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[Edit] | None:
        """The edits the tool made on the copy (empty: nothing to change); None when stopped."""
        edits: list[Edit] = []
        self.copy.events.changed.connect(edits.append)
        options = dict(self.options)
        if not self.tool.startswith("grow"):  # region growing is one SimpleITK call: no steps
            options.update(progress=progress, should_stop=should_stop)
        result = getattr(self.copy, self.tool)(*self.args, **options)
        self.kept = self.copy.kept_reason()
        stopped = result is None and should_stop is not None and should_stop()
        return None if stopped else edits


class CopyJob:
    """Model ``slot``'s prediction over the whole labels (every slice it has predicted),
    computed by a worker while the window stays live: calling it compares the labels with
    the prediction slab by slab and returns what would change (``LabelMap.patches_from``:
    the changed voxels of each slab, no copy of the labels or the prediction), with
    ``progress`` and ``should_stop``; ``ReviewSession.finish_copy`` then writes it as one
    undo step."""

    def __init__(self, session: ReviewSession, slot: str):
        model = session.models.get(slot)
        if model is None:
            raise SessionError(f"No model is loaded as {slot}.")
        self.slot, self.model, self.version = slot, model, session.version
        self.labels = session.labels
        self.predicted = session.copied_slices(model)  # those now: later ones are not read

    def __call__(self, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[Patch] | None:
        """The slabs' changes (empty: the labels are the prediction already); None when stopped."""
        return self.labels.patches_from(self.model.prediction, self.predicted, progress, should_stop)


class FillJob:
    """Fill between slices (``LabelMap.fill_between_slices``) run on a copy of the labels,
    as a ToolJob is, so a worker copies them, reads where to fill (``gaps``: a scan of the
    whole volume) and fills while the window stays live; ``ReviewSession.start_fill`` then
    writes what it changed as one undo step, a few slices at a time. The copy carries the
    review marks and the brush settings as they are when the job is made; it is taken in
    the worker (a large volume's copy is no instant): a change made after the job was made
    refuses its result, so a copy taken across a change is never written."""

    def __init__(self, session: ReviewSession):
        self.labels, self.version = session.labels, session.version
        self.policy, self.intensity_range = session.labels.policy, session.labels.intensity_range
        self.gaps: Gaps | None = None  # after the call: where it filled, and the classes left out
        self.kept = Kept()             # after the call: what the brush settings kept
        self.slices: list[int] = []    # after the call: the slices it changed

    def __call__(self, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[Patch] | None:
        """The fill's changes, one Patch per slice changed (empty: nothing to fill); None
        when stopped."""
        labels = self.labels
        copy = LabelMap(np.empty_like(labels.array), labels.spacing, intensities=labels.intensities)
        for first in range(0, len(copy.array), 16):  # under the lock a slab at a time: edits wait little
            with labels.lock:
                copy.array[first:first + 16] = labels.array[first:first + 16]
        copy.reviewed[:] = labels.reviewed
        copy.policy, copy.intensity_range = self.policy, self.intensity_range
        self.gaps = copy.gaps()
        changes = copy.fill_between_slices(self.gaps, progress, should_stop)
        if changes is None:
            return None
        self.kept, self.slices = copy.kept, labelled_slices(changes)
        return [change for change in changes if isinstance(change, Patch)]  # it marks no slice


class PatchWrite:
    """Changes computed by a worker (``LabelMap.patches_from``: a whole-volume copy; a
    ``FillJob``) being written a few at a time, so that the thread writing them (the
    window's) can do other work between pieces: each ``step`` writes patches until
    ``budget_s`` has passed (at least one), inside ONE undo step called ``step_name``, begun
    at the start and ended after the last patch (then journalled as one record), the edits
    credited to ``source`` (provenance). ``cancel`` takes back what was written, also piece
    by piece through ``step`` (``finish`` does the rest at once): a cancelled write changes
    nothing, and leaves the undo and redo history as it was. While it runs,
    ``session.copying`` is it: nothing else may edit the labels (their undo step is this
    one's). ``what`` names it in messages ("a copy"); ``kept``: what the brush settings kept
    of it, the labels' ``kept`` once it is written."""

    def __init__(self, session: ReviewSession, patches: list[Patch], step_name: str, source: str, what: str,
                 kept: Kept | None = None):
        self.session, self.source, self.what, self._kept = session, source, what, kept
        self._patches = deque(patches)  # those still to write: the history keeps each once written
        self.total = len(self._patches)
        self.done = 0              # patches written (while cancelling: still written)
        self.changed = 0           # voxels changed by the patches written
        self.cancelled = False
        self.finished = not self._patches
        if self.finished:
            self._written()
        else:
            session.labels.begin_stroke(step_name)
            session.copying = self

    def step(self, budget_s: float = COPY_PIECE_S) -> bool:
        """Write patches (take them back, once cancelled) for about ``budget_s`` seconds, at
        least one; True when the write is done (ended as one undo step, or wholly taken back)."""
        if self.finished:
            return True
        labels, start, pieces = self.session.labels, time.perf_counter(), 0

        def more() -> bool:
            return pieces == 0 or time.perf_counter() - start < budget_s

        if self.cancelled:
            while self.done and more():
                self.done = labels.abort_stroke(1)
                pieces += 1
            if not self.done:
                labels.abort_stroke()  # nothing is left of it: the step ends, kept nowhere
                self.changed = 0
                self._end()
            return self.finished
        provenance = self.session.provenance
        with nullcontext() if provenance is None else provenance.source(self.source):  # not A where A agrees
            while self.done < self.total and more():
                self.changed += labels.write_patches([self._patches.popleft()])
                self.done += 1
                pieces += 1
        if self.done == self.total and more():
            labels.end_stroke()  # one undo step, one journal record
            self._end()
            self._written()
        return self.finished

    def cancel(self) -> None:
        """Take back what was written (by the next ``step`` calls); nothing once it is done."""
        if not self.finished:
            self.cancelled = True
            self._patches.clear()

    def finish(self) -> int:
        """The rest at once (or the whole take-back, once cancelled); the voxels changed."""
        while not self.step(float("inf")):
            pass
        return self.changed

    @property
    def busy(self) -> str:
        """Why the labels take no edit nor save meanwhile: "a copy is being written ...", no stop."""
        return f"{self.what} is being written into the labels: wait for it or cancel it"

    def _written(self) -> None:
        if self._kept is not None:  # the step's own tally: writing patches keeps nothing
            self.session.labels.kept = self._kept

    def _end(self) -> None:
        self.finished = True
        self._patches.clear()
        if self.session.copying is self:
            self.session.copying = None


class CopyWrite(PatchWrite):
    """A whole-volume copy of model ``job.slot``'s prediction being written
    (``ReviewSession.start_copy``): a PatchWrite of that model."""

    def __init__(self, session: ReviewSession, job: CopyJob, patches: list[Patch]):
        self.job, self.slot = job, job.slot
        super().__init__(session, patches, f"labels from model {job.slot}", f"model {job.slot}", "a copy")


class ReviewSession:
    """See the module docstring. Build it with ``ReviewSession.open``."""

    #: Whether ``open`` counts each slice's classes (for models added later, e.g. by the
    #: window); a worklist's session takes them from its models' cached counts instead.
    _counts_labels_on_open = True

    def __init__(self, volume: Volume, labels: LabelMap, key: str, label_file: LabelFile | None = None,
                 classes: list[LabelClass] | None = None):
        self.volume, self.labels, self.key = volume, labels, key
        self._fingerprint: dict | None = None  # image_fingerprint, once a save needed it
        self.labels_path: Path | None = label_file.saved_at if label_file else None
        # The file as read: a save over one another program saved since is refused.
        self._read_stamp = labels_stamp(self.labels_path) if self.labels_path else "none"
        # A dataset case's lock, while its labels are open here (a worklist case, or its file
        # opened directly: ``hold_labels_file``), or who has the case open elsewhere instead.
        self.lock: CaseLock | None = None
        self.locked_by: str | None = None
        self._held_file: Path | None = None  # the file ``hold_labels_file`` locked: the lock follows it
        # The label file's own class table wins (names and colours as the case keeps them);
        # ``classes`` (a dataset's declared names, a phantom's) is for labels without one.
        own = list(label_file.classes) if label_file else []
        declared, undeclared = completed_classes(list(classes or []), labels.array) if not own else ([], [])
        self._classes = _named_by(own or declared, classes or []) or None
        self.review_marks: dict[int, dict] = dict(label_file.review.marks) if label_file else {}
        self.review_extra: dict = dict(label_file.review.extra) if label_file else {}
        self._saved_rulers = self.review_extra.get(KEY_RULERS)  # a ruler drawn or deleted is unsaved too
        self.models: dict[str, Model] = {}
        # Where each slice's labels came from, saved in the sidecar (clicks: "interactive").
        saved_provenance = self.review_extra.get(KEY_PROVENANCE)
        self.provenance: Provenance | None = Provenance(labels, self._predictions, saved_provenance,
                                                        self._algorithm_names)
        self.live = LiveMetrics(labels, self._num_classes())
        self.journal: Journal | None = None
        self._stopped_journal: Path | None = None  # a journal that could not be written any more
        self.recoverable_edits: RecoveredLabels | None = None  # a crashed session's, to offer
        self.warnings = list(volume.meta.get("warnings") or [])
        # Which label file ``open`` chose by itself and why, naming the others beside the image.
        self.labels_note: str | None = None
        if label_file and label_file.warning:
            self.warnings.append(label_file.warning)
        if undeclared:
            self.warnings.append(_unnamed_note("The class names given (a dataset's dataset.json)", undeclared))
        self.version = 0  # counts every change (undo too): a job made at another version is stale
        self._saved_position = labels.history_position  # the undo history's state last opened or saved
        self.copying: PatchWrite | None = None  # a whole-volume copy or a fill being written (start_copy, start_fill)
        # The DICOM SEGs written of this review: one series, an instance per revision, kept
        # in the sidecar (a helper's revision after reopening began a second series, numbered
        # 1 again); the last one written here and the labels' version it holds (``written_seg``).
        seg = self.review_extra.get(KEY_SEG)
        seg = seg if isinstance(seg, dict) and isinstance(seg.get("series_uid"), str) else {}
        self._seg_series_uid: str | None = seg.get("series_uid")
        instance = seg.get("instance")
        self._seg_instance = instance if isinstance(instance, int) and instance > 0 else 0  # the last written
        self._last_seg: tuple[Path, int] | None = None
        labels.events.changed.connect(self._changed)
        labels.events.marked.connect(self._changed)
        self.interaction = Interaction(self)  # click correction (session/interaction.py)

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(cls, image, labels=None, series_uid: str | None = None, recover: bool = False, *,
             classes: list[LabelClass] | None = None, series: SeriesInfo | None = None,
             progress: Progress | None = None, first_slice: FirstSlice | None = None,
             key: str | None = None, labels_beside: bool = False, labels_saved=None,
             empty_if_unreadable: bool = False, journal: bool = True) -> ReviewSession:
        """Open ``image`` (a path: DICOM folder or file, NIfTI, NRRD, MHA; or a Volume) with
        ``labels`` (a label file on its grid with its classes and review state, or that file
        read already by ``read_label_file``; an array; or None for empty labels).
        ``classes``: the class table of labels that come without one (an array, none, a label
        file without a class file); a label file's own table wins. A crashed earlier
        session's unsaved edits of the same image (whatever path it was opened by) are
        restored with ``recover``, else kept aside in ``recoverable_edits`` for ``restore``.
        ``series``: a series ``list_dicom_series`` found in folder ``image`` (its files and
        headers are not read again). Slow on a large image: run it in a worker;
        ``first_slice(volume, z)`` is called from there as soon as slice ``z`` can be shown
        (the rest still loading). ``key``: the image's ``image_key``
        when known (a worklist remembers it by its files' size and time), else computed from
        its voxels. ``labels_beside``: without ``labels``, those a first save writes beside
        the image (``labels_beside_image``) when they are there; ones that cannot be read
        on its grid are named in ``warnings`` and the labels start empty. ``labels_saved``:
        without ``labels``, where the labels of this image were last saved (a window
        remembers it, whatever name a person chose), or a function of the image's key that
        says so (called once the image is read), read as those beside it and before them
        when their sidecar names this image (a DICOM folder's other series may have saved
        there). Labels found either way are named in ``labels_note``, with why and the
        other label files of the image beside it.
        ``empty_if_unreadable``: ``labels`` (a file) that cannot be read on the image do not
        stop it opening: empty labels, the reason in ``warnings``. ``journal``: False to start
        none, nor touch a crashed session's journals, until ``_start_journal`` is called, once
        it is known whether the labels may be edited here (a worklist case's lock). Raises
        VolumeLoadError."""
        release_freed_slabs()  # edits of a big volume go in slabs: their memory goes back
        volume = _load_image(image, series_uid, series, progress, first_slice)
        if "auto_window" not in volume.meta:
            volume.meta["auto_window"] = auto_window(volume.array)
        key = key or image_key(volume)
        unread, forgiving, found = None, empty_if_unreadable, None
        if labels is None:
            labels, unread, found = _labels_found(volume, key, labels_saved, labels_beside)
            forgiving = forgiving or labels is not None  # unreadable, they leave the labels empty
        label_file = None
        if labels is None:
            array = np.zeros(volume.shape, np.uint8)
        elif isinstance(labels, np.ndarray):
            if labels.shape != volume.shape:
                raise ValueError(f"labels {labels.shape} and image {volume.shape} differ in shape")
            array = np.array(labels, np.uint8, order="C")  # a copy: the caller's array stays theirs
        else:
            try:
                label_file = labels if isinstance(labels, LabelFile) else read_label_file(labels, volume, key)
            except VolumeLoadError as exc:
                if not forgiving:
                    raise
                unread = unread_labels_note(Path(labels), exc)
            array = label_file.array if label_file is not None else np.zeros(volume.shape, np.uint8)
        label_map = LabelMap(array, volume.spacing, intensities=volume.array)
        if label_file is not None:
            label_map.reviewed[:] = label_file.review.reviewed
        session = cls(volume, label_map, key, label_file, classes)
        if unread:
            session.warnings.append(unread)
        elif found is not None and label_file is not None:
            session.labels_note = _found_note(volume, key, Path(labels), found)
        if journal:
            # A dataset case's file opened directly: its lock first, so that a case another
            # segview has open leaves that segview's crashed journals where they are.
            session._start_journal(recover, editable=session.hold_labels_file() is None)
        if cls._counts_labels_on_open:
            session.live.label_histogram()  # here, in the worker: adding a model later is instant
        return session

    @staticmethod
    def recoverable(image, series_uid: str | None = None) -> RecoveredLabels | None:
        """Unsaved steps of a crashed session of ``image`` (a path or a Volume), whatever
        path it was opened by; None when there are none."""
        volume = image if isinstance(image, Volume) else load_volume(image, series_uid)
        return unsaved_edits(image_key(volume))

    def _start_journal(self, recover: bool, editable: bool = True) -> None:
        """Journal the edits from here, a crashed session's journals of the image set aside
        and its unsaved edits restored (``recover``) or kept in ``recoverable_edits``.
        ``editable``: False for labels that may not be edited here (a case another segview
        has open): nothing to journal, and the crashed journals stay where they are, so that
        opening the image editable offers them."""
        crashed = unsaved_edits(self.key)
        if editable:
            self._journal_setting_aside()
        if crashed is not None and recover and editable:
            self.restore(crashed)
        else:
            self.recoverable_edits = crashed

    def _journal_setting_aside(self) -> None:
        try:
            set_aside(self.key)  # kept, and listed by File > Recover edits
        except OSError as exc:
            self.warnings.append(f"{exc}. Edits are not journalled: save often.")
            return
        failure = self._journal_from_here()
        if failure is not None:
            self.warnings.append(failure)

    def _stop_journal(self) -> None:
        """Stop journalling labels found read-only (a case opened ahead that another segview
        has open when it is shown): their journal, unedited, is deleted."""
        if self.journal is not None:
            self.journal.close(delete=not self.modified)
            self.journal = None

    def _journal_from_here(self) -> str | None:
        """Start journalling the labels as they are now; what to tell the person when it
        cannot be done, else None."""
        about = {"source": str(self.volume.meta.get("source", "")),
                 "description": self.volume.meta.get("series_description", ""),
                 "labels": str(self.labels_path or "")}
        try:
            # Compressed and written by a thread while the rest opens (each step waits for it).
            snapshot = Journal.snapshot_job(self.labels.array, self.key, self.labels.reviewed, about, self._classes,
                                            self._journalled_sidecar())
            self.journal = start_journal(self.labels, self.key, snapshot, self._classes)
        except (JournalError, OSError) as exc:
            return f"{exc}. Edits are not journalled: save often."
        self.journal.mark_details = lambda z: self.review_marks.get(z, {})
        self.journal.class_table = lambda: self._classes  # names and colours come back after a crash
        self.journal.follow_sidecar(self._journalled_sidecar)  # and the rulers
        return None

    def _journalled_sidecar(self) -> dict:
        """The review sidecar's keys the journal keeps beside the labels: the rulers and each
        slice's provenance."""
        kept = {KEY_RULERS: self.review_extra.get(KEY_RULERS, [])}
        if self.provenance is not None:
            kept[KEY_PROVENANCE] = self.provenance.to_json()
        return kept

    def _sidecar_changed(self) -> None:
        """A ruler was drawn or deleted: journalled at once (it is no label step)."""
        if self.journal is not None:
            self.journal.record_sidecar()

    def restore(self, recovered: RecoveredLabels) -> None:
        """Bring back a crashed session's labels, review marks, class table (names and
        colours; a journal that holds none keeps the current one), rulers and provenance:
        each of its steps an undo step, as it was (one step, when the labels are no longer
        those the steps started from, or the steps are too large to keep twice)."""
        if recovered.labels.shape != self.volume.shape:
            raise SessionError("Those edits belong to an image of another size.")
        self.review_marks.update({int(z): details for z, details in recovered.marks.items() if details})
        if recovered.classes:
            self._classes = list(recovered.classes)
        sidecar = dict(recovered.sidecar or {})
        record = sidecar.pop(KEY_PROVENANCE, None)  # the provenance follows the labels' step below
        if sidecar:
            self.review_extra.update(sidecar)
            self._sidecar_changed()
        if recovered.history and recovered.base == labels_digest(self.labels.array, self.labels.reviewed):
            # The labels are those the steps started from: each comes back as its own undo step.
            for step in recovered.history:
                with self._recovering((step.sidecar or {}).get(KEY_PROVENANCE)), self.labels.step(RECOVERED):
                    for bounds, values in step.regions:
                        self.labels.write(tuple(slice(a, b) for a, b in bounds), values)
                    for mark, reviewed in step.marks:
                        self.labels.set_reviewed(mark, reviewed)
        else:  # labels saved since (or too many steps to keep): the edits as one step
            self._restore_changes(recovered, record)
        self.recoverable_edits = None
        with suppress(OSError):  # else still listed: a second restore writes the same values
            mark_restored(self.key, recovered)

    def _restore_changes(self, recovered: RecoveredLabels, record: dict | None) -> None:
        """The voxels and marks the crashed steps changed, as one step, onto the labels as
        they are now: someone may have saved them since (a colleague's stroke was wiped when
        the crashed session's whole labels were copied back)."""
        changed, marks = recovered.changed, recovered.changed_marks
        if changed is None or marks is None:  # not known: all of it
            changed = np.flatnonzero(recovered.labels != self.labels.array)
            marks = np.flatnonzero(recovered.reviewed != self.labels.reviewed)
        merged = self.labels.array.copy()
        merged.flat[changed] = recovered.labels.flat[changed]
        touched = np.unique(changed // math.prod(self.volume.shape[1:]))
        slices = np.zeros(self.volume.shape[0], bool)
        slices[touched] = True
        with self._recovering(record), self.labels.step(RECOVERED):
            self.labels.copy_from(merged, where=slices)
            for z in marks.tolist():
                self.labels.set_reviewed(z, bool(recovered.reviewed[z]))
        if record is not None and self.provenance is not None:
            # The slices the steps changed take the crashed session's record, also where the
            # file already held them (a crash between the labels' rename and their sidecar's:
            # a tester's brushed slice came back without its "hand").
            sources = from_json(record, self.volume.shape[0])
            for z in touched.tolist():
                if z in sources:
                    self.provenance.sources[z] = sources[z]
                else:
                    self.provenance.sources.pop(z, None)

    def _recovering(self, record: dict | None):
        """Edits inside bring a crashed session's labels back, with its ``record`` of each
        slice's provenance (``Provenance.recovering``)."""
        return nullcontext() if self.provenance is None else self.provenance.recovering(record)

    # -- labels -------------------------------------------------------------------------
    @property
    def classes(self) -> list[LabelClass]:
        """The labels' classes: from their file, else the first model's (a new annotation
        takes the checkpoint's names), else generic ones. A class of the file that bears a
        generic name ("label 1", saved before any model named it) takes the model's name."""
        model = next(iter(self.models.values()), None)
        if model is None:
            return self._classes or generic_classes(self.labels.array)
        if self._classes and not all(is_placeholder(c) for c in self._classes):
            return _named_by(self._classes, model.classes)
        return merged_classes(model.classes, self._classes or [])

    @property
    def reviewed(self) -> np.ndarray:
        """(Z,) bool: the slices a person marked reviewed."""
        return self.labels.reviewed

    @property
    def rulers(self) -> Rulers:
        """The rulers drawn on this image, kept in the review sidecar (``session.rulers``)."""
        return Rulers(self.volume, self.review_extra, self._sidecar_changed)

    def region_statistics(self, source: str, value: int, z: int | None = None) -> RegionStatistics:
        """The image under class ``value`` of ``source`` ("labels", "A" or "B": a model's
        predicted slices), on slice ``z`` or the volume (``session.statistics``)."""
        return class_statistics(self, source, value, z)

    def shape_statistics(self, axis: int, index: int, a, b, shape: str = "ellipse") -> RegionStatistics:
        """The image inside an ellipse (or ``shape`` "rectangle") drawn on plane ``index``
        normal to array ``axis``, corners ``a`` and ``b`` in the plane's (row, column) voxel
        coordinates (``session.statistics.shape_statistics``)."""
        return shape_statistics(self, axis, index, a, b, shape)

    @property
    def modified(self) -> bool:
        """Whether labels, review marks or rulers differ from what was opened or last saved
        (undo back to that state: they do not)."""
        position = self.labels.history_position
        return (position is None or position != self._saved_position  # no rulers: None or [], alike
                or (self.review_extra.get(KEY_RULERS) or []) != (self._saved_rulers or []))

    def replace_labels(self, label_file: LabelFile) -> list[str]:
        """The labels, classes and review marks of ``label_file`` (``read_label_file``)
        replace the current ones: one undo step. The brush settings do not apply. A model
        whose classes the file names otherwise is unloaded, as it would not have been loaded
        with these labels (``class_conflict``): returns why, one line per model."""
        self._check_not_copying()
        self._ensure_classes(int(label_file.array.max()) + 1 if label_file.array.size else 1)
        if label_file.classes:  # before the step, so the journal records them with it
            self._classes = list(label_file.classes)
        with self.labels.step("labels opened from a file"):
            self.labels.copy_from(label_file.array)
            for z in np.flatnonzero(label_file.review.reviewed != self.labels.reviewed):
                self.labels.set_reviewed(int(z), bool(label_file.review.reviewed[z]))
        self.review_marks.update(label_file.review.marks)
        # Rulers measure the image: those drawn stay, and the file's own come with it.
        theirs = list(label_file.review.extra.get(KEY_RULERS) or [])
        ours = list(self.review_extra.get(KEY_RULERS) or [])
        if any(r not in ours for r in theirs):
            self.review_extra[KEY_RULERS] = ours + [r for r in theirs if r not in ours]
            self._sidecar_changed()
        if label_file.warning:
            self.warnings.append(label_file.warning)
        self.labels_path = label_file.saved_at
        self._read_stamp = labels_stamp(self.labels_path) if self.labels_path else "none"
        self._saved_position = self.labels.history_position  # what is open is what that file holds
        self._saved_rulers = theirs  # rulers it lacks are unsaved there
        unloaded = []
        for slot, model in list(self.models.items()):  # the same rule whichever came first
            conflict = self.class_conflict(slot, model.predictor)
            if conflict is not None:
                self.remove_model(slot)
                unloaded.append(f"Model {slot} ({model.path.stem}) was unloaded: {conflict}.")
        return unloaded

    def hold_labels_file(self) -> str | None:
        """When the labels come from a dataset case's file opened directly (not through the
        worklist, whose cases lock themselves), take the case's lock as the worklist does,
        so that two people never edit one case unknowingly. Returns, when another segview
        has the case, the warning to show (the labels are read-only here: ``read_only_reason``)."""
        if self.labels_path is None or not is_dataset_labels(self.labels_path):
            self.release_lock()
            return None
        if self.lock is not None and self._held_file == Path(self.labels_path).absolute():
            return None  # taken already (``open``); one found held is tried again
        self._lock_labels(Path(self.labels_path))
        self._held_file = Path(self.labels_path).absolute()
        return self.read_only_reason

    def now_editable(self) -> None:
        """Labels read-only here while another segview had their case (``held_elsewhere``),
        editable now that it closed it: journalled from here, and a crashed session's edits
        of the image, left where they were meanwhile, kept in ``recoverable_edits`` to offer."""
        if self.journal is None and self.read_only_reason is None:
            self._start_journal(recover=False)

    @property
    def held_elsewhere(self) -> bool:
        """Read-only because another segview has the dataset case whose file was opened
        directly (``hold_labels_file``): opening a label file (that one again, once the other
        has closed it) tries the lock anew."""
        return self.locked_by is not None and self._held_file is not None

    def _lock_labels(self, path: Path) -> None:
        """Take the lock of the case whose labels are ``path`` (``case_files.CaseLock``):
        ``lock``, or ``locked_by`` who has it."""
        self.release_lock()
        self.lock, self.locked_by = CaseLock.acquire(path, patient=True)  # not taken for a glance

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()
        self.lock = self.locked_by = self._held_file = None

    @property
    def read_only_reason(self) -> str | None:
        """Why the labels may not be edited here (None: they may)."""
        if self.locked_by is None:
            return None
        name = Path(self.labels_path or "").name
        return (f"{name} is a case open in another segview ({self.locked_by}): read-only here, to look "
                "at; open it again once the other has closed it.")

    def mark_reviewed(self, z: int, reviewed: bool = True) -> None:
        """Mark slice ``z`` reviewed by the current user now (or take the mark back): one
        undo step, journalled, saved with the labels. Raises SessionError for a slice
        not in the image."""
        self._check_not_copying()
        z = self._checked_slice(z)
        if reviewed and not self.labels.reviewed[z]:
            self.review_marks[z] = {"by": current_user(), "at": now()}
        with self.labels.step("review mark" if reviewed else "review mark taken back"):
            self.labels.set_reviewed(z, reviewed)

    def undo(self) -> str | None:
        """Take back the labels' last undo step (``LabelMap.undo``); what it was, in words
        (``step_text``: the slice it changed may not be the one on screen), or None when
        there is none. Raises SessionError while a copy is written (its step is open)."""
        self._check_not_copying()
        step = self.labels.undo_step
        return step_text(step, self.classes) if step is not None and self.labels.undo() else None

    def redo(self) -> str | None:
        """Do the last step undone again; what it was (as ``undo``), None when there is none."""
        self._check_not_copying()
        step = self.labels.redo_step
        return step_text(step, self.classes) if step is not None and self.labels.redo() else None

    def _checked_slice(self, z) -> int:
        return checked_slice(z, self.labels.array.shape[0])

    def _check_not_copying(self) -> None:
        """Raises SessionError while a whole-volume copy or a fill is written (``start_copy``,
        ``start_fill``): the labels' open undo step is its, so an edit or a mark would join
        it (and go with its undo, or its cancel)."""
        if self.copying is not None:
            raise SessionError(f"{self.copying.busy.capitalize()}.")

    def image_fingerprint(self) -> dict:
        """The image's ``core.journal.image_fingerprint``, saved in the sidecar so that the
        review marks still apply once another tool re-saves the image (any thread)."""
        if self._fingerprint is None:
            self._fingerprint = image_fingerprint(self.volume)
        return self._fingerprint

    def review_state(self) -> ReviewState:
        return ReviewState(self.labels.reviewed.copy(),
                           {z: m for z, m in self.review_marks.items() if self.labels.reviewed[z]},
                           dict(self.review_extra))

    def _changed(self, _change) -> None:
        self.version += 1

    # -- models -------------------------------------------------------------------------
    def load_model(self, slot: str, path) -> Model:
        """Load checkpoint ``path`` into ``slot`` ("A" or "B"), replacing what was there.
        Its predictions are all pending until ``predict``. Raises CheckpointError."""
        return self.add_model(slot, path, load_predictor(path))

    def add_model(self, slot: str, path, predictor: Any, prediction: np.ndarray | None = None,
                  counts: np.ndarray | None = None) -> Model:
        """``load_model`` with a Predictor loaded beforehand (in a worker). A checkpoint
        trained on another modality is added with a warning in ``Model.warnings``.
        ``prediction``: its whole prediction when known (say, from the worklist's prediction
        cache), (z, y, x) uint8 on the image grid, every slice predicted: kept as it is, not
        copied; ``counts`` its per-slice confusion counts against the labels as they are
        now, (Z, C, C), when known (``LiveMetrics.add_model``): then nothing is counted.
        Raises ValueError for a prediction of another shape."""
        if slot not in SLOTS:
            raise ValueError(f"model slot {slot!r}: A or B")
        if prediction is not None and prediction.shape != self.volume.shape:
            raise ValueError(f"prediction {prediction.shape} and image {self.volume.shape} differ in shape")
        self.remove_model(slot)
        self._ensure_classes(predictor.num_classes)
        if prediction is None:
            prediction = np.zeros(self.volume.shape, np.uint8)
            self.live.add_model(slot, prediction, empty=True)
        else:
            prediction = np.ascontiguousarray(prediction, np.uint8)
            self.live.add_model(slot, prediction, counts=counts)
        warning = self.fit_warning(predictor)
        model = Model(slot, Path(path), predictor, prediction, self.live.predicted[slot],
                      warnings=[warning] if warning else [])
        self.models = dict(sorted({**self.models, slot: model}.items()))  # A before B
        return model

    def fit_warning(self, predictor: Any) -> str | None:
        """Why ``predictor``'s checkpoint may not fit this image (trained on another
        modality), or None: what to ask before it runs."""
        from ..ml.checkpoint import modality_mismatch

        return modality_mismatch(predictor.meta, self.volume)

    def class_conflict(self, slot: str, predictor: Any) -> str | None:
        """Why ``predictor``'s checkpoint may not go into ``slot``: a class value it names
        otherwise than the labels' class table or the other slot's model does (its voxels
        would be scored under another class's column); None when every shared value has
        the same name."""
        tables = [("the labels", self._classes or [])]
        tables += [(f"model {s}", m.classes) for s, m in self.models.items() if s != slot]
        return next((why for owner, table in tables
                     if (why := naming_conflict(predictor.classes, table, owner)) is not None), None)

    def remove_model(self, slot: str) -> None:
        if self.models.pop(slot, None) is not None:
            self.live.remove_model(slot)

    def prediction(self, slot: str) -> np.ndarray:
        """Model ``slot``'s labels (z, y, x) uint8 on the image grid; pending slices are 0
        (``models[slot].predicted`` says which are done)."""
        return self.models[slot].prediction

    def prediction_batches(self, first: int | None = None,
                           should_stop: Callable[[], bool] | None = None) -> Iterator[PredictionBatch]:
        """Predict every pending slice (not predicted yet, e.g. not in the cache) with every
        model, batch by batch, slice ``first`` first and then outwards; both models do a
        batch before the next starts. Reads only the image
        and the predictors, so a worker may drive it; hand each batch to ``accept``."""
        from ..ml.inference import slice_order

        order = slice_order(self.volume.shape[0], first)
        pending = {slot: [z for z in order if not m.predicted[z]] for slot, m in self.models.items()}
        predictors: dict[str, Any] = {slot: m.predictor for slot, m in self.models.items() if pending[slot]}
        if not predictors:
            return
        prepared = {slot: p.prepare(self.volume) for slot, p in predictors.items()}
        batch_size = min(p.batch_size for p in predictors.values())
        total, done = sum(len(pending[slot]) for slot in predictors), 0
        for start in range(0, max(len(pending[slot]) for slot in predictors), batch_size):
            for slot, predictor in predictors.items():
                if should_stop is not None and should_stop():
                    return
                if start >= len(pending[slot]):
                    continue
                warned = predictor.fallback_message
                batch = list(predictor.predict_slices(prepared[slot], pending[slot][start:start + batch_size]))
                done += len(batch)
                message = predictor.fallback_message if predictor.fallback_message != warned else None
                counted = [self.live.count_slice(p.index, p.labels) for p in batch]  # not on the GUI thread
                yield PredictionBatch(slot, predictor, batch, done, total, message, counted)

    def accept(self, batch: PredictionBatch) -> bool:
        """Store a batch of ``prediction_batches``; False (dropped) when its model has since
        been replaced or removed."""
        model = self.models.get(batch.slot)
        if model is None or model.predictor is not batch.predictor:
            return False
        counted = batch.counted or [None] * len(batch.predictions)
        for prediction, count in zip(batch.predictions, counted):
            self.live.set_prediction_slice(batch.slot, prediction.index, prediction.labels, count)
        return True

    def predict(self, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                first: int | None = None) -> bool:
        """Predict every slice with every model; True when all were done (False when
        ``should_stop`` said stop). ``progress(done, total)`` after each batch."""
        for batch in self.prediction_batches(first, should_stop):
            self.accept(batch)
            if progress is not None:
                progress(batch.done, batch.total)
        return all(m.predicted.all() for m in self.models.values())

    def copy_prediction(self, slot: str, z: int | None = None) -> int:
        """Model ``slot``'s prediction into the labels: slice ``z``, or every predicted
        slice not reviewed (a person's checked slices are never overwritten wholesale:
        ``slices_kept``). One undo step; it marks nothing reviewed (a copy is not a
        review), and a reviewed slice ``z`` it changes is reviewed no longer (its labels are
        the model's, unchecked). Labels without a class table of their own take the
        checkpoint's class names. Written slab by slab from the prediction: no copy of it,
        nor of the labels. Returns the voxels changed."""
        model = self.models.get(slot)
        if model is None:
            raise SessionError(f"No model is loaded as {slot}.")
        if z is not None and not model.predicted[self._checked_slice(z)]:
            raise SessionError(f"Model {slot} has not predicted slice {z + 1} yet.")
        self._take_classes(model)
        with self.labels.step(f"labels from model {slot}"):
            if z is None:
                return self.labels.copy_from(model.prediction, where=self.copied_slices(model))
            changed = self.labels.copy_from(model.prediction, z)
            if changed:
                self.labels.set_reviewed(z, False)
            return changed

    def copied_slices(self, model: Model) -> np.ndarray:
        """(Z,) bool: the slices a whole-volume copy of ``model`` writes: those it predicted
        that are not reviewed (a person's checked slices are never overwritten wholesale)."""
        return model.predicted & ~self.labels.reviewed

    def slices_kept(self, slot: str) -> list[int]:
        """The slices a whole-volume copy of model ``slot`` leaves as they are because they
        are reviewed, though the model predicts them otherwise."""
        model = self.models.get(slot)
        if model is None:
            return []
        reviewed = np.flatnonzero(self.labels.reviewed & model.predicted)
        return [int(z) for z in reviewed if not np.array_equal(self.labels.array[z], model.prediction[z])]

    def copy_job(self, slot: str) -> CopyJob:
        """``copy_prediction(slot)`` of the whole volume in two halves: call the job (in a
        worker), then hand its result to ``finish_copy``. Raises SessionError without a
        model in ``slot``."""
        return CopyJob(self, slot)

    def finish_copy(self, job: CopyJob, patches: list[Patch] | None) -> int:
        """Write what ``job`` computed: one undo step, as ``copy_prediction`` (labels
        without a class table take the checkpoint's); 0 and nothing changes when it was
        stopped (``patches`` None). Returns the voxels changed. Raises SessionError when
        the labels changed, or the model was replaced, while it ran (its result would undo
        those changes or copy another model)."""
        return self.start_copy(job, patches).finish()

    def start_copy(self, job: CopyJob, patches: list[Patch] | None) -> CopyWrite:
        """``finish_copy`` in pieces: a CopyWrite whose ``step`` writes a few of the slabs
        (about 30 ms) at a time, the whole of it one undo step, and whose ``cancel`` takes
        back what was written (the window calls ``step`` from a timer, so it never
        freezes). Refused (SessionError), and nothing changes, as by ``finish_copy``; a
        stopped job (``patches`` None) or one that changes nothing is done at once."""
        self._check_not_copying()
        if patches is None:
            return CopyWrite(self, job, [])
        if job.version != self.version or self.models.get(job.slot) is not job.model:
            what = "labels" if job.version != self.version else f"model {job.slot}"
            raise SessionError(f"The {what} changed while the copy ran; nothing was copied. Copy again.")
        self._take_classes(job.model)
        return CopyWrite(self, job, patches)

    def fill_job(self) -> FillJob:
        """Fill between slices (``LabelMap.fill_between_slices``) in two halves: call the
        job (in a worker: it reads the gaps and fills a copy of the labels, with progress
        and ``should_stop``), then hand its result to ``start_fill``."""
        return FillJob(self)

    def start_fill(self, job: FillJob, patches: list[Patch] | None) -> PatchWrite:
        """Write what ``job`` filled as a PatchWrite (``step`` by ``step``, or ``finish``
        at once): one undo step credited to interpolation, the labels' ``kept`` the fill's.
        A stopped job (``patches`` None) or one that filled nothing is done at once. Raises
        SessionError, and nothing changes, while another write runs or when the labels or
        review marks changed while it ran (its result would undo those changes)."""
        self._check_not_copying()
        if patches is not None and job.version != self.version:
            raise SessionError("The labels changed while Fill between slices ran; nothing was filled. Fill again.")
        return PatchWrite(self, patches or [], STEP_NAMES["fill_between_slices"], INTERPOLATION,
                          "a fill between slices", None if patches is None else job.kept)

    def fill(self, z: int, seed, value: int) -> Edit | None:
        """Flood fill (4-connected) the region of the seed's label on slice ``z``. Refused
        for background that reaches the image's edge: that is the whole outside, never
        what a person means to fill (close the outline first)."""
        self._check_not_copying()
        y, x = (int(round(c)) for c in seed)
        plane = self.labels.array[self._checked_slice(z)]
        inside = 0 <= y < plane.shape[0] and 0 <= x < plane.shape[1]
        if inside and plane[y, x] == 0 and _reaches_edge(plane == 0, (y, x)):
            raise SessionError("Fill needs an enclosed region: this background reaches the edge of the "
                               "image. Close the outline with the brush first.")
        return self.labels.fill(z, (y, x), value)  # None outside the image

    def adopt(self, slot: str, z: int, seed) -> Edit | None:
        """Where A and B disagree: the connected region under ``seed`` (y, x) on slice ``z``
        where they differ, or where the labels differ from model ``slot`` (``LabelMap.adopt``),
        takes model ``slot``'s labels. One undo step; None where they agree."""
        self._check_not_copying()
        other = "B" if slot == "A" else "A"
        if slot not in self.models or other not in self.models:
            raise SessionError("Adopt needs both models, A and B.")
        if not (self.models[slot].predicted[z] and self.models[other].predicted[z]):
            raise SessionError(f"Slice {z + 1} is not predicted by both models yet.")
        with self.labels.step(f"adopt from model {slot}"):
            return self.labels.adopt(z, seed, self.models[slot].prediction, self.models[other].prediction)

    def set_prediction(self, slot: str, labels: np.ndarray) -> None:
        """Model ``slot``'s whole prediction at once (e.g. from the worklist's prediction
        cache): ``labels`` (z, y, x) uint8 on the image grid; every slice becomes predicted
        and the scores are recounted once. Raises SessionError when no model is in
        ``slot``, ValueError for labels of another shape."""
        model = self.models.get(slot)
        if model is None:
            raise SessionError(f"No model is loaded as {slot}.")
        if labels.shape != self.volume.shape:
            raise ValueError(f"prediction {labels.shape} and image {self.volume.shape} differ in shape")
        model.prediction[:] = labels
        self.live.add_model(slot, model.prediction)  # counted once over the whole volume
        model.predicted = self.live.predicted[slot]

    def tool_job(self, tool: str, *args, **options) -> ToolJob:
        """A class tool to compute (in a worker) and then ``finish_tool``; e.g.
        ``tool_job("margin", 2, 1.5)`` grows class 2 by 1.5 mm."""
        return ToolJob(self, tool, *args, **options)

    def tool_change(self, job: ToolJob, edits: list[Edit] | None) -> ToolChange:
        """What ``job``'s ``edits`` would do to its class, before ``finish_tool`` writes
        them (a preview, or the question whether to take away most of a class)."""
        changes = np.zeros(self.volume.shape, np.uint8)
        added = removed = taken = 0
        for edit in edits or []:
            region = changes[edit.region]  # a view: written in place
            region[(edit.old != edit.new) & (region == 0)] = ToolChange.LEFT  # a gain by another edit stays one
            if job.value is not None:
                joins = (edit.new == job.value) & (edit.old != job.value)
                region[joins] = ToolChange.GAINED
                added += int(np.count_nonzero(joins))
                taken += int(np.count_nonzero(joins & (edit.old != 0)))
                removed += int(np.count_nonzero((edit.old == job.value) & (edit.new != job.value)))
        histogram = self.live.label_histogram()
        if job.value is None:  # every class: what changes is what goes
            before, removed = histogram[:, 1:].sum(), int(np.count_nonzero(changes))
        else:
            before = histogram[:, job.value].sum() if job.value < histogram.shape[1] else 0
        ml = float(np.prod(self.volume.spacing)) / 1000
        bounds = None
        if job.tool.startswith("grow"):  # its plane or box: a region reaching their edge has leaked
            bounds = self.labels.grow_region(job.args[0], job.options.get("axis"), job.options.get("box_mm"))
        return ToolChange(added * ml, removed * ml, float(before) * ml, changes, job.kept, taken * ml, bounds)

    def finish_tool(self, job: ToolJob, edits: list[Edit] | None) -> int:
        """Write what ``job`` computed: one undo step (nothing when it was stopped or
        changed nothing). Returns the voxels changed. Raises SessionError when the labels
        changed while it ran (its result would undo those changes)."""
        self._check_not_copying()
        if not edits:
            return 0
        if job.version != self.version:
            raise SessionError("The labels changed while the tool ran; nothing was applied. Run it again.")
        changed = 0
        with self.labels.step(STEP_NAMES[job.tool]):
            for edit in edits:
                changed += int(np.count_nonzero(edit.old != edit.new))
                self.labels.write(edit.region, edit.new)
        return changed

    def run_tool(self, tool: str, *args, **options) -> int:
        """``tool_job`` and ``finish_tool`` at once (scripts, small volumes)."""
        job = self.tool_job(tool, *args, **options)
        return self.finish_tool(job, job())

    # -- click correction (the logic: session/interaction.py) ---------------------------
    def click(self, z: int, point, positive: bool = True, value: int | None = None, axis: int = 0) -> int:
        """One click of interactive correction on slice ``z`` at ``point`` ((y, x) of the
        plane, array order; axial planes only) adding (``positive``) to class ``value`` or
        removing from it (None: the class of the interaction in progress): the click model
        refines the class from the labels and every click of the interaction. One undo
        step, journalled, marks nothing reviewed. Returns the voxels changed. Raises
        SessionError for a click it cannot take, CheckpointError without a click model;
        then nothing changes. ``click_job`` and ``finish_click`` are its two halves."""
        job = self.click_job(z, point, positive, value, axis)
        return self.finish_click(job, job())

    def click_job(self, z: int, point, positive: bool = True, value: int | None = None, axis: int = 0) -> ClickJob:
        """``click``'s input, checked (SessionError) and copied: call the job in a worker."""
        self._check_not_copying()
        return self.interaction.job(z, point, positive, value, axis)

    def finish_click(self, job: ClickJob, proposal: ClickProposal | None) -> int:
        """Write what ``job`` proposed: one undo step; 0 when it was cancelled. Raises
        SessionError when the labels changed while it ran."""
        self._check_not_copying()
        return self.interaction.finish(job, proposal)

    def end_interaction(self) -> None:
        """The next click starts a new interaction (so does another class, slice or plane)."""
        self.interaction.end()

    def load_click_model(self, path=None) -> None:
        """Correct clicks with interactive checkpoint ``path`` (default: ``SEGVIEW_CLICK_MODEL``
        when set, else the shipped one). Raises CheckpointError."""
        self.interaction.load_model(path)

    def scores(self, slot: str, reviewed_only: bool = True) -> Scores:
        """Dice, IoU and pixel error of model ``slot`` against the labels, over the
        reviewed slices it has predicted (all predicted slices without ``reviewed_only``)."""
        return self.live.volume_scores(slot, reviewed_only)

    def _take_classes(self, model: Model) -> None:
        """Labels without names of their own (none, or only generic ones) keep ``model``'s
        once its prediction is copied into them: they stay when the model goes."""
        if self._classes is None or all(is_placeholder(c) for c in self._classes):
            self._classes = merged_classes(model.classes, self._classes or [])

    def _num_classes(self) -> int:
        values = [c.value + 1 for c in self._classes or []]
        values += [m.predictor.num_classes for m in self.models.values()]
        return max(values + [int(self.labels.array.max()) + 1 if self.labels.array.size else 1, 2])

    def _ensure_classes(self, num_classes: int) -> None:
        """The live metrics count at least ``num_classes`` classes."""
        self.live.grow(num_classes)

    # -- saving and closing -------------------------------------------------------------
    def default_labels_path(self) -> Path | None:
        """Beside the image: ``labels_beside_image``, or, where that file holds another series
        of the same DICOM folder, ``series_labels_beside`` (two series of a folder must not
        share one file: a tester's save of the second replaced the first's labels)."""
        plain = labels_beside_image(self.volume)
        series = series_labels_beside(self.volume)
        if plain is None or series is None:
            return plain
        if series.is_file() or _another_images(plain, self.key, self.volume):
            return series
        return plain

    def dicom_seg_job(self, path) -> Callable[[], Path]:
        """The labels as they are now, written as a DICOM SEG at ``path`` when the job is
        called (any thread: a worker): each segment's algorithm from the slices' provenance
        (``provenance.segment_algorithms``: the models copied, the click model, or MANUAL
        where drawn by hand alone), the loaded models' names where it cannot tell."""
        from ..core.dicomseg import new_uid, save_dicom_seg

        labels, classes = self.labels.array.copy(), list(self.classes)
        algorithm = ", ".join(m.name for m in self.models.values()) or "manual"
        sources = dict(self.provenance.sources) if self.provenance is not None else {}
        names = self._algorithm_names()  # for slices recorded before sources carried names
        self._seg_series_uid = self._seg_series_uid or new_uid()
        # numbered after the last written: a failed export leaves no gap in the series
        number, series, version = self._seg_instance + 1, self._seg_series_uid, self.version

        def job(*_, **__) -> Path:
            written = save_dicom_seg(path, labels, self.volume, classes, algorithm,
                                     algorithms=segment_algorithms(labels, sources, names) if sources else None,
                                     series_uid=series, instance_number=number)
            self._last_seg, self._seg_instance = (Path(written), version), number
            self._keep_seg_series({"series_uid": series, "instance": number})
            return written
        return job

    def _keep_seg_series(self, entry: dict) -> None:
        """The SEG series and its last instance in the sidecar: with the next save, and at
        once where the labels have a file (any thread; nothing is lost where it cannot)."""
        self.review_extra[KEY_SEG] = entry
        if self.labels_path is not None and self.locked_by is None:
            try:
                update_sidecar(self.labels_path, **{KEY_SEG: entry})
            except OSError:
                pass  # written with the labels' next save

    def written_seg(self) -> Path | None:
        """The DICOM SEG last written (``dicom_seg_job``) when it holds the labels as they are
        now and is still there: what File > Send SEG to PACS sends rather than a new one."""
        if self._last_seg is None:
            return None
        path, version = self._last_seg
        return path if version == self.version and path.is_file() else None

    def save_job(self, path=None) -> SaveJob:
        """A save of the labels and review state as they are now, to ``path``, else where
        they were opened from or last saved, else ``default_labels_path``. Raises
        SessionError onto a case's file another segview has open (``hold_labels_file``)."""
        if self.copying is not None:  # half a copy must never reach a file
            raise SessionError(f"{self.copying.busy.capitalize()}, then save.")
        target = path or self.labels_path or self.default_labels_path()
        if target is None:
            raise SessionError("Say where to save the labels: this image has no file beside which to save them.")
        if self.locked_by is not None and Path(target).absolute() == Path(self.labels_path or "").absolute():
            raise SessionError(f"{self.read_only_reason} Save the labels elsewhere (Save as).")
        if is_dataset_labels(target) and not (self.review_extra.get("case") or {}).get("status"):
            self.review_extra["case"] = case_entry("in progress")  # edited: its worklist row says so
        self._check_not_overwriting_another(Path(target))
        if self.provenance is not None:
            self.review_extra[KEY_PROVENANCE] = self.provenance.to_json()
        return SaveJob(self, Path(target))

    def _check_not_overwriting_another(self, target: Path) -> None:
        """Raises SessionError when ``target`` is the file the labels were read from (or last
        saved to) and someone else has saved it since: two people on one case (one through
        the worklist, one opening the file itself) each saved over the other, silently."""
        if self.labels_path is None or not target.exists():
            return
        if target.resolve() == Path(self.labels_path).resolve() and labels_stamp(target) != self._read_stamp:
            raise SessionError(f"{target.name} was changed on disk since it was opened here: another segview or "
                               "program saved it. Saving would overwrite that work. Your edits are kept: save them "
                               "under another name (Save as), then compare the two.")

    def finish_save(self, job: SaveJob) -> str | None:
        """After ``job`` wrote its files: the labels now live there; unless they changed
        meanwhile, nothing is unsaved (and the journal knows). A journal that had stopped
        (``journal_failure``: a full disk, since freed) starts again from the labels saved;
        returns what to tell the person of that, else None."""
        if self._held_file is not None and Path(job.path).absolute() != self._held_file:
            self.release_lock()  # saved elsewhere: the case's file is no longer what is open here
        self.labels_path = job.path
        self._read_stamp = labels_stamp(job.path)
        self._saved_rulers = job.review.extra.get(KEY_RULERS)
        self._saved_position = job.position  # edits made meanwhile are unsaved, undone they are not
        if job.version != self.version:
            return None
        if self.journal is not None:
            self.journal.mark_saved()
            return None
        if self._stopped_journal is None:
            return None  # none could be started on opening: that was said then
        self._drop_stopped_journal()
        failure = self._journal_from_here()
        return failure or "Edits are journalled again."

    @property
    def edits_kept(self) -> str:
        """Where unsaved edits are kept, for a message saying a save failed."""
        if self.journal is not None:
            return "Your edits are kept in memory and in the edit journal"
        return "Your edits are kept in memory only (they are not journalled)"

    def save(self, path=None) -> Path:
        """Save the labels (on the image grid, atomically, verified) and their review state
        (``<name>.review.json``). Raises LabelSaveError; nothing in memory is lost."""
        job = self.save_job(path)
        job()
        self.finish_save(job)
        return job.path

    def journal_failure(self) -> str | None:
        """After a step: when the journal could not be written (a full disk, a folder gone),
        the session stops journalling (the journal is closed and kept: what it holds can
        still be recovered) and returns what to tell the person, once; None otherwise.
        The edits are never interrupted: they stay in memory until saved."""
        journal = self.journal
        if journal is None or journal.error is None:
            return None
        self.journal = None
        journal.close()
        self._stopped_journal = journal.path  # its edits are saved by the next save: then it goes
        return f"{journal.error}\n\nEdits are no longer journalled; they stay in memory: save them soon."

    def _drop_stopped_journal(self) -> None:
        """Delete the journal that stopped (``journal_failure``) once its edits are saved: a
        tester's next open offered 66 steps saved long before as unsaved work."""
        if self._stopped_journal is not None:
            self._stopped_journal.unlink(missing_ok=True)
            self._stopped_journal = None

    def close(self, discard: bool = False) -> None:
        """End the session. Its journal is deleted when nothing is unsaved (or ``discard``),
        else kept, so the edits can still be recovered. A copy still being written is
        taken back first, as its Cancel would."""
        if self.copying is not None:
            self.copying.cancel()
            self.copying.finish()
        if self.journal is not None:
            self.journal.close(delete=discard or not self.modified)
            self.journal = None
        if discard or not self.modified:
            self._drop_stopped_journal()
        self.release_lock()
        # Only what the session connected: a view or script following the labels stays connected.
        self.live.detach()
        self.interaction.detach()
        if self.provenance is not None:
            self.provenance.detach()
        self.labels.events.disconnect(self._changed)

    def _predictions(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each model's prediction and the slices it has predicted (what ``provenance`` names)."""
        return {slot: (m.prediction, m.predicted) for slot, m in self.models.items()}

    def _algorithm_names(self) -> dict[str, str]:
        """The checkpoint behind each source ``provenance`` records: "model A", the click model."""
        names = {f"model {slot}": m.name for slot, m in self.models.items()}
        names[INTERACTIVE] = self.interaction.model_name
        return names


def labels_stamp(path) -> str:
    """What identifies a label file's content for the cached counts without reading it: its
    resolved path, size and modification time (ns); "none" when there is no file (the labels
    are empty)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return "none"
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _labels_found(volume: Volume, key: str, saved, beside: bool) -> tuple[Path | None, str | None, str | None]:
    """The labels ``ReviewSession.open`` reads without any given: those last ``saved`` for this
    image, else (``beside``) those a first save writes beside it, each only when its sidecar
    does not name another image; the warning when those beside it are another's; and why
    these ("saved", "beside"; None for none). ``saved``: a path, or a function of ``key``
    that gives one (or None)."""
    if callable(saved):
        saved = saved(key)
    if saved is not None and Path(saved).is_file() and names_image(read_sidecar(saved) or {}, key, volume):
        return Path(saved), None, "saved"
    if not beside:
        return None, None, None
    series = series_labels_beside(volume)
    if series is not None and series.is_file() and not _another_images(series, key, volume):
        return series, None, "beside"
    there = labels_beside_image(volume)
    if there is None or not there.is_file():
        return None, None, None
    if _another_images(there, key, volume):  # another series, same grid
        if series is not None:
            return None, (f"The labels beside the folder ({there.name}) are those of another series in it, so "
                          f"they were not read; this series' labels will be saved as {series.name}."), None
        return None, (f"The labels beside the image ({there.name}) are those of another image, so they were "
                      "not read and the labels start empty; save these under another name."), None
    return there, None, "beside"


def _found_note(volume: Volume, key: str, path: Path, why: str) -> str:
    """What the window says of the labels ``open`` found at ``path`` by itself (``why``: as
    ``_labels_found`` says): which file, why that one, and the label files of this image
    beside it that were not read (a tester had three, saved as .nii.gz, .nrrd and .mha, and
    could not tell which one had opened)."""
    others = _other_labels_beside(volume, key, path)
    if why == "saved":
        reason = "where this image's labels were last saved"
    else:
        reason = "the name a first save gives them" + (" (no later save of this image is remembered here)"
                                                       if others else "")
    beside = labels_beside_image(volume)
    shown = path.name if beside is not None and path.resolve().parent == beside.parent else str(path)  # else: where
    note = f"Labels read from {shown}, {reason}"
    if others:
        note += (f"; not read: {', '.join(p.name for p in others)} beside the image "
                 "(File > Open labels reads another)")
    return note + "."


def _other_labels_beside(volume: Volume, key: str, chosen: Path) -> list[Path]:
    """The label files named after ``volume``'s file or folder beside it
    (``<name>[.<series>].labels.<ext>``), but ``chosen`` and those whose sidecar names
    another image (another series of the folder)."""
    plain = labels_beside_image(volume)
    if plain is None:
        return []
    stem = plain.name[: -len(".labels.nii.gz")]
    endings = tuple(f".labels{ext}" for ext in LABEL_EXTENSIONS)
    try:
        named = sorted(p for p in plain.parent.iterdir() if p.name.startswith(f"{stem}.") and p.name.endswith(endings))
    except OSError:
        return []
    chosen = chosen.resolve()
    return [p for p in named if p.resolve() != chosen and p.is_file() and not _another_images(p, key, volume)]


def _load_image(image, series_uid, series, progress, first_slice) -> Volume:
    if isinstance(image, Volume):
        return image
    if series is None:
        return load_volume(image, series_uid, progress=progress, first_slice=first_slice)
    try:
        volume = read_dicom_files(series, progress, first_slice=first_slice)
    except VolumeLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - load_volume's contract: only VolumeLoadError
        raise VolumeLoadError(f"The series {series.label()}, could not be opened "
                              f"({type(exc).__name__}: {exc}).") from exc
    volume.meta.setdefault("source", str(image))
    return volume


def _reaches_edge(mask: np.ndarray, seed) -> bool:
    """Whether the 4-connected component of ``mask`` (2D) containing ``seed`` touches the edge."""
    from scipy import ndimage

    components, _ = ndimage.label(mask)
    region = components == components[seed]
    return bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any())
