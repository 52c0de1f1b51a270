"""Worklist: the cases of a dataset folder, their review status, and the prediction cache.

Two layouts open:

- nnU-Net: ``imagesTr/<case>_0000.<ext>`` (other channels are ignored) or a DICOM folder
  ``imagesTr/<case>/``, labels
  ``labelsTr/<case>.<ext>`` (the ``file_ending`` of ``dataset.json``, else the image's),
  class names from ``dataset.json``'s ``labels``.
- A folder of DICOM studies: each image series (localizers left out) under each
  sub-folder is a case, named ``<folder>`` or, when a folder holds several series,
  ``<folder>_<series number>``. Labels go to ``labels/<case>.nii.gz`` in the dataset
  folder (that folder is never scanned for images). Each folder is scanned once, on open.

Opening reads no image: a case's status, note, reviewed slices and saved figures come from
its review sidecar (``core.review_state``: keys "case", "provenance", "models"), its
disagreement and uncertainty from the prediction cache. A case whose image cannot be read
is listed with the reason in ``Case.error`` when it is opened; the rest stay usable.

Saving a case (``CaseSession.save()`` with no path) writes into the dataset, atomically,
and keeps what it replaces in ``.previous/`` beside the labels (``labelsTr/.previous/``,
``labels/.previous/``; nnU-Net skips sub-folders): ``<case>.original<ext>`` is the file as
it was before segview first replaced it (written once, never overwritten) and
``<case><ext>`` the file the latest save replaced, each with its review sidecar. So at
most two backups per case; nothing that was there before segview is ever lost.

A case open in a session is locked (``CaseLock``: ``.locks/<case>.lock`` beside the labels,
naming who has it); a second segview gets it read-only with a message (``Case.locked_by``,
``CaseSession.read_only_reason``). A dataset folder that cannot be written opens read-only
(``Worklist.read_only``). What another segview on the dataset saved, and which cases it has
open (``Case.held_by``), ``Worklist.refresh_changed`` reads again: from a few stats a case.

Stepping through the cases (``WorklistNavigator``) is the window's Ctrl+N without a window:
the order frozen at the last sort, next / previous, the case left saved before the next
opens (``save_and_open``; Done and next saves it with the status "done"), and the next case
opened in the background meanwhile (``prefetch_next``).

The prediction cache (``PredictionCache``) lives in ``$XDG_CACHE_HOME/segview/predictions``
(``~/.cache/...``): per (image content digest, checkpoint file content digest) the uint8
labels (compressed ``.npz``), a summary (mean softmax entropy) and the prediction's
per-slice confusion counts against the case's labels as last saved (so opening a case
counts nothing; they name the label file's size and time, and are counted again for labels
changed elsewhere). It is bounded: beyond ``max_bytes`` (default 5 GiB) the least recently
used predictions are deleted.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.classes import LabelClass, named_classes, naming_conflict
from ..core.dicom import SeriesInfo, read_dicom_files
from ..core.errors import DatasetError, VolumeLoadError
from ..core.files import FIRST_CHANNEL, atomic_write_text, case_name, extension, replace_atomically, shared_folder
from ..core.io import image_shape, list_dicom_series, load_labels, load_volume, read_label_image
from ..core.journal import RecoveredLabels, crashed_journals, image_key, journalled_keys, unsaved_edits
from ..core.metrics import ConfusionMatrix, confusion_counts, scores_from_counts
from ..core.review_state import read_sidecar, review_path, update_sidecar
from ..core.splits import read_split
from ..core.volume import Volume
from .models import SLOTS, Model, load_predictor
from .case_files import PREVIOUS, case_entry, case_held, holder_of, lock_path
from .provenance import from_json as provenance_from_json
from .review import (LabelFile, ReviewSession, SaveJob, SessionError, labels_stamp, read_label_file,
                     unread_labels_note)

STATUSES = ("new", "in progress", "done", "flagged")
SORT_KEYS = ("name", "disputed", "uncertain", "status")
Progress = Callable[[int, int], None]


def working_status(status: str, reviewed_count: int, edited: bool = False) -> str:
    """A "new" case with a slice reviewed, or with unsaved edits, is "in progress" (read from
    its sidecar, or the open case as it is now in the worklist's row)."""
    return "in progress" if status == "new" and (reviewed_count or edited) else status


#: nnU-Net channel names (dataset.json "channel_names") of MR sequences.
MR_CHANNELS = {"T1", "T2", "T1W", "T2W", "T1C", "T1CE", "T1GD", "FLAIR", "PD", "ADC", "DWI", "CINE", "SSFP"}


@dataclass
class Case:
    """One case of a worklist. Figures are NaN until known: ``dice`` and ``correction_ml``
    (slot -> value, over the reviewed slices, as last saved, for the current checkpoints),
    ``disputed`` (voxels where A and B differ per voxel either calls foreground, 0..1: see
    ``PredictionCache.disputed``) and ``entropy`` (slot -> mean softmax entropy in nats)
    from the prediction cache. ``locked_by``: who has the case open in another segview,
    while it is open read-only here. ``held_out``: a "val" case of the dataset's fixed split
    (``splits.json``), which no fine-tune trains on and whose reviewed slices judge it."""
    name: str
    image: Path                                   # image file or DICOM study folder
    labels: Path                                  # where its labels are (or will be) saved
    series: SeriesInfo | None = None              # the DICOM series, for a DICOM dataset
    status: str = "new"
    note: str = ""
    reviewed_count: int = 0
    slices: int | None = None                     # known once its labels were saved or it was predicted
    dice: dict[str, float] = field(default_factory=dict)
    correction_ml: dict[str, float] = field(default_factory=dict)
    correction_voxels: dict[str, int] = field(default_factory=dict)
    disputed: float = math.nan
    entropy: dict[str, float] = field(default_factory=dict)
    key: str | None = None                        # image_key, when known
    error: str | None = None                      # why it cannot be opened
    labels_unread: str | None = None              # why its saved labels were not read (it opened empty)
    locked_by: str | None = None                  # open in another segview (read-only here)
    held_by: str | None = None                    # open in another segview now (``Worklist.refresh_changed``)
    held_out: bool = False                        # in splits.json's "val"
    # A segview that crashed left unsaved edits of it (opening it offers them), until they are
    # restored or declined: known where its image key is (``Worklist.read_crashed_edits``).
    crashed_edits: bool = False
    # The sidecar, as it was on disk (its ``labels_stamp``), whose marks opening the case did
    # not apply (its image changed since): its reviewed slices are not counted until it changes.
    refused_review: str | None = field(default=None, repr=False, compare=False)
    # The session here that set ``locked_by``: only it clears it (a second, read-only again,
    # may open before the first closes).
    _locked_for: object = field(default=None, init=False, repr=False, compare=False)

    @property
    def uncertainty(self) -> float:
        """Mean softmax entropy (nats) of the models that predicted it; NaN when none."""
        values = [v for v in self.entropy.values() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    @property
    def reviewed_text(self) -> str:
        """"k / n slices reviewed" for the list."""
        return f"{self.reviewed_count} / {self.slices if self.slices is not None else '?'} slices reviewed"


# -- the worklist ----------------------------------------------------------------------------

class Worklist:
    """The cases of a dataset folder. Build it with ``Worklist.open``."""

    def __init__(self, folder: Path, layout: str, cases: list[Case], classes: list[LabelClass] | None = None,
                 cache: PredictionCache | None = None):
        self.folder, self.layout, self.classes = folder, layout, classes
        self.cases = cases
        self.cache = cache if cache is not None else PredictionCache()
        self.checkpoints: dict[str, Path] = {}
        self._predictors: dict[str, object] = {}
        labels_folder = cases[0].labels.parent if cases else folder
        self.read_only = not os.access(labels_folder if labels_folder.exists() else folder, os.W_OK)
        # Case -> stamps of its labels and sidecar (``_files_stamp``), and of its lock file, as
        # last read here: what ``refresh_changed`` compares to see another segview's work.
        self._files_read: dict[str, str] = {}
        self._lock_read: dict[str, str] = {}
        self._holding: set[str] = set()  # cases a session of this worklist has locked

    @classmethod
    def open(cls, folder, checkpoints: dict[str, Path] | None = None, cache: PredictionCache | None = None,
             progress: Progress | None = None) -> Worklist:
        """The cases of ``folder`` (nnU-Net layout or DICOM studies), sorted by name, with
        statuses from their sidecars; no image is read (a DICOM folder's headers are).
        ``checkpoints``: {"A": path, "B": path} whose cached figures to show. Raises
        DatasetError."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"There is no dataset folder at {folder}.")
        layout = dataset_layout(folder)
        if layout is None:
            raise DatasetError(f"{folder} is no dataset: neither imagesTr/<case>_0000.nii.gz (nnU-Net) nor a folder "
                               "of DICOM studies (two or more sub-folders and no files of its own). A folder of "
                               "one study or series opens as an image (File > Open DICOM folder).")
        if layout == "nnU-Net":
            cases, classes = _nnunet_cases(folder), _declared_classes(folder / "dataset.json")
        else:
            cases, classes = _dicom_cases(folder, progress), None
        if not cases:
            raise DatasetError(f"{folder} holds no case: neither imagesTr/<case>_0000.nii.gz (nnU-Net) "
                               "nor DICOM image series.")
        worklist = cls(folder, layout, cases, classes, cache)
        for case in cases:
            worklist.read_status(case)
            worklist._read_holder(case)
        worklist.read_crashed_edits()
        worklist.read_split()
        if checkpoints:
            worklist.set_checkpoints(checkpoints)
        return worklist

    def case(self, name: str) -> Case:
        for case in self.cases:
            if case.name == name:
                return case
        raise KeyError(f"no case named {name!r} in {self.folder}")

    # -- status -------------------------------------------------------------------------
    def set_status(self, name: str, status: str, note: str = "") -> None:
        """Set case ``name``'s status ("new", "in progress", "done", "flagged") and note;
        written to its sidecar at once. Raises ValueError for another status,
        SessionError when the dataset is read-only, another segview has the case open
        (``case_files.case_held``) or the sidecar cannot be written."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
        case = self.case(name)
        self._check_writable()
        try:
            case.labels.parent.mkdir(parents=True, exist_ok=True)
            with case_held(case.labels):
                update_sidecar(case.labels, case=case_entry(status, note))
        except OSError as exc:
            raise SessionError(f"The status of {name} could not be saved ({exc.strerror or exc}).") from exc
        case.status, case.note = status, note

    def refresh_changed(self, keep: Collection[str] = ()) -> list[str]:
        """Read again what another segview changed since it was read here: the status, note,
        review count and saved figures of each case whose labels or review sidecar changed on
        disk, and who holds each case (``Case.held_by``). Two or three stats a case; only what
        changed is read. ``keep``: cases left as they are (the one on screen: its session
        knows better). Returns the names of the cases read again or held otherwise, in the
        worklist's order."""
        changed = []
        for case in self.cases:
            if case.name in keep:
                continue
            saved = _files_stamp(case.labels) != self._files_read.get(case.name)
            if saved:
                self.read_status(case)
                self._read_figures(case)
            if self._read_holder(case) or saved:
                changed.append(case.name)
        return changed

    def _read_holder(self, case: Case) -> bool:
        """Read who holds ``case`` now (``Case.held_by``) where its lock file changed, or it
        was held (its holder may have stopped: the file stays as it was); True when that
        changed. A case one of this worklist's sessions holds is nobody else's."""
        stamp = labels_stamp(lock_path(case.labels))
        if stamp == self._lock_read.get(case.name) and case.held_by is None:
            return False
        self._lock_read[case.name] = stamp
        holder = None if case.name in self._holding else holder_of(case.labels)
        changed, case.held_by = holder != case.held_by, holder
        return changed

    def _check_writable(self) -> None:
        if self.read_only:
            raise SessionError(f"The dataset {self.folder} is read-only: nothing can be saved into it.")

    # -- order ----------------------------------------------------------------------------
    def sorted(self, by: str = "name") -> list[Case]:
        """The cases by ``by``: "name"; "disputed" (A and B differ most first: ``Case.disputed``,
        voxels where they differ per voxel of their foreground), "uncertain" (largest mean
        softmax entropy first), "status" (new, in progress, flagged, done); unknown figures
        last, then by name. A query: the order to step through is ``WorklistNavigator.sort``'s."""
        if by not in SORT_KEYS:
            raise ValueError(f"sort by {by!r}: one of {', '.join(SORT_KEYS)}")
        if by == "name":
            return sorted(self.cases, key=lambda c: c.name)
        if by == "status":
            rank = {"new": 0, "in progress": 1, "flagged": 2, "done": 3}
            return sorted(self.cases, key=lambda c: (rank[c.status], c.name))
        figure = (lambda c: c.disputed) if by == "disputed" else (lambda c: c.uncertainty)
        return sorted(self.cases, key=lambda c: (math.isnan(figure(c)), -_or_zero(figure(c)), c.name))

    def next_case(self, name: str, by: str = "name") -> Case | None:
        """The case after ``name`` in the order ``by``; None after the last."""
        return self._neighbour(name, by, +1)

    def previous_case(self, name: str, by: str = "name") -> Case | None:
        """The case before ``name`` in the order ``by``; None before the first."""
        return self._neighbour(name, by, -1)

    def _neighbour(self, name: str, by: str, step: int) -> Case | None:
        order = [c.name for c in self.sorted(by)]
        n = order.index(self.case(name).name) + step
        return self.case(order[n]) if 0 <= n < len(order) else None

    # -- models -----------------------------------------------------------------------------
    def set_checkpoints(self, checkpoints: dict[str, Path]) -> None:
        """Models A and B ({"A": path, "B": path}) for sessions, the prediction queue and
        the figures shown (read from the cache and the sidecars); the files are read once for
        their digests, the networks loaded when first needed. Raises SessionError for a file
        that cannot be read."""
        unknown = set(checkpoints) - set(SLOTS)
        if unknown:
            raise ValueError(f"model slots {sorted(unknown)}: A or B")
        chosen = {slot: Path(path) for slot, path in sorted(checkpoints.items())}
        for slot, path in chosen.items():
            try:
                checkpoint_digest(path)
            except OSError as exc:
                raise SessionError(f"Checkpoint {slot} ({path.name}) cannot be read: {exc.strerror or exc}.") from exc
        self.checkpoints = chosen
        self._predictors.clear()
        for case in self.cases:
            self._read_figures(case)

    @property
    def modality(self) -> str | None:
        """The dataset's modality, "CT" or "MR": its dataset.json's first channel (nnU-Net
        names: "CT", "MRI", "T2", ...), or that of every DICOM series; None when unknown or mixed."""
        if self.layout == "nnU-Net":
            channels = (_read_json(self.folder / "dataset.json") or {}).get("channel_names")
            channel = str(channels.get("0", "")).upper() if isinstance(channels, dict) else ""
            if channel:
                return "CT" if channel == "CT" else "MR" if channel.startswith("MR") or channel in MR_CHANNELS else None
        found = {c.series.modality.upper() for c in self.cases if c.series is not None}
        return found.pop() if len(found) == 1 and "" not in found else None

    def checkpoint_problems(self) -> dict[str, tuple[str, bool]]:
        """Why a checkpoint chosen may not serve this dataset: slot -> (why, refused).
        Refused: it names a class value otherwise than dataset.json does, so its voxels would
        be scored under another class, as ``ReviewSession.class_conflict`` refuses it for one
        image. Not refused but to be asked: it was trained on another modality. A checkpoint
        that cannot be read is left to its first use, which says why."""
        from types import SimpleNamespace

        from ..ml.checkpoint import CheckpointError, modality_mismatch, read_metadata
        from ..ml.metadata import classes_from_metadata

        problems: dict[str, tuple[str, bool]] = {}
        dataset = SimpleNamespace(modality=self.modality or "", meta={})
        for slot, path in self.checkpoints.items():
            try:
                meta = read_metadata(path)
                theirs = classes_from_metadata(meta, path)
            except (CheckpointError, ValueError):
                continue
            conflict = naming_conflict(theirs, self.classes or [], "the dataset's classes")
            warning = modality_mismatch(meta, dataset, "the dataset")
            if conflict is not None:
                problems[slot] = (conflict, True)
            elif warning is not None:
                problems[slot] = (warning, False)
        return problems

    def digests(self) -> dict[str, str]:
        """Slot -> content digest of its checkpoint file."""
        return {slot: checkpoint_digest(path) for slot, path in self.checkpoints.items()}

    def predictor(self, slot: str):
        """The Predictor of checkpoint ``slot``, loaded once. Raises CheckpointError."""
        if slot not in self._predictors:
            self._predictors[slot] = load_predictor(self.checkpoints[slot])
        return self._predictors[slot]

    # -- a case's session --------------------------------------------------------------------
    def load_image(self, case: Case, progress: Progress | None = None) -> Volume:
        """The image of ``case``; a failure is kept in ``case.error``. Raises VolumeLoadError."""
        try:
            if case.series is not None:
                volume = read_dicom_files(case.series, progress)  # headers read by the scan
                volume.meta.setdefault("source", str(case.image))
            else:
                volume = load_volume(case.image, progress=progress)
        except VolumeLoadError as exc:
            case.error = str(exc)
            raise
        except Exception as exc:
            case.error = f"{type(exc).__name__}: {exc}"
            raise VolumeLoadError(f"{case.name} could not be opened ({case.error}).") from exc
        case.error = None
        return volume

    def session(self, name: str, recover: bool = False, progress: Progress | None = None,
                lock: bool = True) -> CaseSession:
        """Case ``name`` as a ``CaseSession``: its image, its saved labels and review state,
        provenance followed, models A and B with their cached predictions (slices not in
        the cache are pending: ``predict`` them). Slow on a large image: run it in a
        worker. ``lock``: take the case's lock now (else ``CaseSession.claim_lock`` when it is
        shown: a case opened ahead keeps nobody else out). Without it, a case with a crashed
        session's unsaved edits is not opened (``CrashedEditsAhead``): its journal would be
        set aside, and a session never shown would no longer offer them. Raises
        VolumeLoadError (kept in ``Case.error``), CheckpointError."""
        case = self.case(name)
        on_disk = _files_stamp(case.labels)  # before they are read: what claim_lock checks
        self.read_status(case)  # its row as saved now: another segview may have saved it since
        self._read_figures(case)
        # The models as chosen now: changed meanwhile (a prefetch's models), this session is
        # dropped whole, never built of half the old and half the new ones.
        checkpoints = dict(self.checkpoints)
        predictors = {slot: self.predictor(slot) for slot in checkpoints}  # before anything is locked
        key = self.cache.known_key(_image_files(case))  # by its files' size and time: no hashing again
        stamp = labels_stamp(case.labels)  # before they are read: a file replaced meanwhile never matches
        # While the image is read, other threads read its cached predictions and its labels.
        with ThreadPoolExecutor(len(checkpoints) + 1, thread_name_prefix="segview-open") as pool:
            reading = {slot: pool.submit(self.cache.get, key, checkpoint_digest(path))
                       for slot, path in checkpoints.items()} if key else {}
            label_image = pool.submit(read_label_image, case.labels) if case.labels.is_file() else None
            volume = self.load_image(case, progress)
            cached = {slot: job.result() for slot, job in reading.items()}
        # Known before the journal starts: it sets a crashed session's journals aside.
        key = key or image_key(volume)
        if not lock and crashed_edits(key):
            self._learn_key(case, key, crashed=True)  # the next one opened ahead is not read at all
            raise CrashedEditsAhead(f"{name} holds a crashed session's unsaved edits: it opens when shown, "
                                    "to offer them.")
        try:
            labels = self._saved_labels(case, volume, key, label_image)
            self._note_refused_review(case, labels)
            # A model changed since the case was saved has no figures in its sidecar: scored
            # from what is read here, as the prediction queue scored it (not left at none).
            self._score_reviewed(case, volume, self.digests(), labels, cached)
            # The case's own class file wins over the dataset's names.
            # Its journal starts once its lock says whether it may be edited here (``attach``).
            session = CaseSession.open(volume, labels, classes=self.classes, key=key, journal=False)
            assert isinstance(session, CaseSession)  # ReviewSession.open builds ``cls``
        except VolumeLoadError as exc:
            case.error = str(exc)
            raise
        if case.labels_unread:
            session.warnings.append(case.labels_unread)
        try:
            session.attach(self, case, predictors, stamp, cached, lock, checkpoints, recover)
            session.read_from = on_disk
        except BaseException:
            session.close(discard=True)  # its lock and journal go with it
            raise
        return session

    @staticmethod
    def _saved_labels(case: Case, volume: Volume, key: str, label_image) -> LabelFile | None:
        """``case``'s label file read on ``volume`` (``label_image``: its read job; None when
        it has none). Labels that cannot be read on it (another grid) leave the case to open
        with empty labels, to be labelled again, as File > Open does with them, and why in
        ``case.labels_unread``: a tester's case could not be opened at all. Their file is
        written over only by a save (which keeps it in .previous/)."""
        case.labels_unread = None
        if label_image is None:
            return None
        try:
            return read_label_file(case.labels, volume, key, label_image.result())
        except VolumeLoadError as exc:
            case.labels_unread = unread_labels_note(
                case.labels, exc, "labelling it and saving writes new ones over them, the old file kept in "
                                  f"{case.labels.parent.name}/{PREVIOUS}/")
            return None

    def _learn_key(self, case: Case, key: str, crashed: bool | None = None) -> None:
        """``case``'s image key, kept by its files' size and time: not hashed again. Newly
        known, it tells whether a crashed segview left edits of the case (``crashed``, where
        the caller knows: its journals are not read again)."""
        if crashed is not None:
            case.crashed_edits = crashed
        elif case.key != key:
            case.crashed_edits = crashed_edits(key)
        case.key = key
        self.cache.remember_key(_image_files(case), key)

    def read_crashed_edits(self) -> None:
        """Mark the cases whose unsaved edits a segview that crashed left (``Case.crashed_edits``),
        so the person opens those first: each case whose image key is known (its image read
        here before: the prediction cache remembers it by its files) and has journals that no
        running segview holds, with steps to restore. Journals are read only where there are some."""
        journalled = journalled_keys()
        for case in self.cases:
            key = case.key or (self.cache.known_key(_image_files(case)) if journalled else None)
            case.crashed_edits = key is not None and key in journalled and crashed_edits(key)

    def read_split(self) -> str | None:
        """Mark the held-out cases of the dataset's fixed split (``splits.json``, written by
        the first fine-tune or held-out report; none before). Returns why the file cannot be
        read, or None; the marks are then cleared (training would refuse the file too)."""
        held_out: set[str] = set()
        problem = None
        if self.layout == "nnU-Net":
            try:
                held_out = set((read_split(self.folder) or {}).get("val", []))
            except DatasetError as exc:
                problem = str(exc)
        self.mark_held_out(held_out)
        return problem

    def mark_held_out(self, names) -> None:
        """Mark cases ``names`` held out, and only them."""
        for case in self.cases:
            case.held_out = case.name in names

    def _note_refused_review(self, case: Case, labels) -> None:
        """Count none of the sidecar's marks in ``case``'s row when opening it did not apply
        them (``labels``: the LabelFile read; a helper's row said 3 reviewed slices that train
        and evaluate did not use), or did not read its labels at all (``case.labels_unread``:
        it opened empty), until the sidecar changes."""
        unapplied = case.labels_unread is not None or (labels is not None and not labels.review.reviewed.any())
        refused = case.reviewed_count > 0 and unapplied
        case.refused_review = labels_stamp(review_path(case.labels)) if refused else None
        if refused:
            self.read_status(case)

    def read_status(self, case: Case) -> None:
        """``case``'s status, note and review count as its sidecar has them now (another
        segview may have saved it since)."""
        self._files_read[case.name] = _files_stamp(case.labels)  # before it is read: a save meanwhile shows next time
        document = read_sidecar(case.labels) or {}
        entry = document.get("case") or {}
        case.status = str(entry["status"]) if entry.get("status") in STATUSES else "new"
        case.note = str(entry.get("note") or "")
        refused = case.refused_review == labels_stamp(review_path(case.labels))
        case.reviewed_count = 0 if refused else len(document.get("reviewed") or [])
        case.slices = document.get("slices") or case.slices  # known once the image was read
        case.status = working_status(case.status, case.reviewed_count)

    def _read_figures(self, case: Case) -> None:
        """Dice and correction effort saved in the sidecar for the current checkpoints;
        disagreement and entropy from the cache."""
        digests = self.digests()
        saved = (read_sidecar(case.labels) or {}).get("models") or {}
        case.key = self.cache.known_key(_image_files(case)) or case.key
        case.dice, case.correction_ml, case.correction_voxels, case.entropy = {}, {}, {}, {}
        for slot, digest in digests.items():
            entry = saved.get(slot) or {}
            case.dice[slot] = case.correction_ml[slot] = math.nan
            if entry.get("digest") == digest:
                case.dice[slot] = _float(entry.get("dice"))
                case.correction_ml[slot] = _float(entry.get("correction_ml"))
                case.correction_voxels[slot] = int(entry.get("correction_voxels") or 0)
            summary = self.cache.summary(case.key, digest) if case.key else None
            case.entropy[slot] = _float((summary or {}).get("mean_entropy"))
            shape = (summary or {}).get("shape")
            if case.slices is None and isinstance(shape, list) and shape:
                case.slices = int(shape[0])  # a case never saved: its slices, from its prediction
        case.disputed = math.nan
        if case.key and len(digests) == 2:
            case.disputed = _float(self.cache.disputed(case.key, digests["A"], digests["B"]))

    # -- background prediction --------------------------------------------------------------
    def prediction_queue(self, should_stop: Callable[[], bool] | None = None,
                         order: list[str] | None = None) -> Iterator[QueueStep]:
        """Predict every case (``order``: these names, in this order) with every checkpoint
        into the cache, skipping what is cached; one ``QueueStep`` per case and model, so
        a worker reports progress; ``should_stop()`` is asked between batches of slices
        (a case cut short is not cached). Loads predictors of its own, so a session may
        predict meanwhile. Updates each Case's figures as it goes. Raises CheckpointError."""
        if not self.checkpoints:
            raise SessionError("Choose checkpoints A and B before predicting the dataset.")
        digests = self.digests()
        predictors: dict[str, object] = {}
        names = order or [c.name for c in self.cases]
        total, done = len(names) * len(digests), 0
        for name in names:
            case = self.case(name)
            missing = [s for s, d in digests.items() if not (case.key and self.cache.has(case.key, d))]
            volume, fresh = None, {}
            if missing:
                try:
                    volume = self.load_image(case)
                except VolumeLoadError as exc:
                    done += len(digests)
                    yield QueueStep(name, None, done, total, error=str(exc))
                    continue
                self._learn_key(case, image_key(volume))
            for slot, digest in digests.items():
                if should_stop is not None and should_stop():
                    return
                if slot in missing:
                    assert volume is not None and case.key is not None  # loaded above for what is missing
                    if slot not in predictors:
                        predictors[slot] = load_predictor(self.checkpoints[slot])
                    result = predict_case(predictors[slot], volume, should_stop)
                    if result is None:
                        return
                    self.cache.put(case.key, digest, *result)
                    fresh[digest] = result[0]
                done += 1
                yield QueueStep(name, slot, done, total, cached=slot not in missing)
            if fresh and volume is not None and case.key:
                cache_counts(self.cache, case.key, fresh, case.labels, volume)  # so opening it counts nothing
            if len(digests) == 2 and case.key:
                self.cache.ensure_disputed(case.key, digests["A"], digests["B"])
            self._read_figures(case)
            self._score_reviewed(case, volume, digests)

    def _score_reviewed(self, case: Case, volume: Volume | None, digests: dict[str, str], saved=None,
                        predictions: dict[str, np.ndarray | None] | None = None) -> None:
        """A case with reviewed slices but no saved figures for these checkpoints gets them
        from the cached predictions and its saved labels (shown, not written: the sidecar
        changes only when the case is saved). ``saved`` (its label file read) and
        ``predictions`` (slot -> cached prediction): what the caller has read already."""
        if not case.reviewed_count or not case.labels.is_file() or \
                all(not math.isnan(case.dice.get(slot, math.nan)) for slot in digests):
            return
        try:
            volume = volume or self.load_image(case)
            saved = saved if saved is not None else read_label_file(case.labels, volume, case.key)
        except VolumeLoadError:
            return
        reviewed = saved.review.reviewed
        for slot, digest in digests.items():
            if predictions is not None:
                prediction = predictions.get(slot)
            else:
                prediction = self.cache.get(case.key, digest) if case.key else None
            if prediction is None or prediction.shape != saved.array.shape or not reviewed.any():
                continue
            classes = max(int(prediction.max()), int(saved.array.max())) + 1
            counts = confusion_counts(prediction[reviewed], saved.array[reviewed], max(classes, 2))
            case.dice[slot] = scores_from_counts(counts).mean_dice
            voxels, ml = correction_effort(prediction, saved.array, reviewed, volume.spacing)
            case.correction_voxels[slot], case.correction_ml[slot] = voxels, ml


@dataclass
class QueueStep:
    """One step of ``Worklist.prediction_queue``: model ``slot`` of case ``case`` is in the
    cache (``cached``: it was already), or the case's image failed (``error``, slot None)."""
    case: str
    slot: str | None
    done: int
    total: int
    cached: bool = False
    error: str | None = None


def cache_counts(cache: PredictionCache, key: str, predictions: dict[str, np.ndarray], labels_path: Path,
                 volume: Volume) -> None:
    """Keep in ``cache`` the per-slice confusion counts of ``predictions`` (checkpoint digest
    -> (z, y, x) uint8 on ``volume``'s grid) against the labels saved at ``labels_path``
    (none: empty labels), as the prediction queue does once it predicted a case: a session
    then counts nothing when it opens the case. Labels that cannot be read are skipped."""
    stamp = labels_stamp(labels_path)  # before they are read
    try:
        labels = np.zeros(volume.shape, np.uint8) if stamp == "none" else load_labels(labels_path, volume)
    except VolumeLoadError:
        return
    for digest, prediction in predictions.items():
        if prediction.shape == labels.shape:
            classes = max(int(prediction.max()), int(labels.max()), 1) + 1
            cache.put_counts(key, digest, stamp, ConfusionMatrix.from_arrays(prediction, labels, classes).per_slice)


def predict_case(predictor, volume: Volume, should_stop: Callable[[], bool] | None = None,
                 ) -> tuple[np.ndarray, dict] | None:
    """Every slice of ``volume`` by ``predictor``: (z, y, x) uint8 labels and a summary
    {"mean_entropy": nats, averaged over all voxels}; None when ``should_stop`` said stop."""
    from ..ml.inference import slice_order

    labels = np.zeros(volume.shape, np.uint8)
    entropy_sum = 0.0
    normalized = predictor.prepare(volume)
    order = slice_order(volume.shape[0], None)
    for start in range(0, len(order), predictor.batch_size):
        if should_stop is not None and should_stop():
            return None
        batch = order[start:start + predictor.batch_size]
        for prediction in predictor.predict_slices(normalized, batch, want_probabilities=True):
            labels[prediction.index] = prediction.labels
            p = np.clip(prediction.probabilities, 1e-12, 1.0)
            entropy_sum += float(-(p * np.log(p)).sum(axis=0).sum())
    return labels, {"mean_entropy": entropy_sum / labels.size, "shape": list(volume.shape)}


# -- a case's session ----------------------------------------------------------------------

class CaseSession(ReviewSession):
    """A ReviewSession of a worklist case: ``save()`` with no path writes into the dataset
    (backing up what it replaces), and the sidecar carries the case status, the per-slice
    provenance (``self.provenance``) and each model's Dice and correction effort."""

    worklist: Worklist
    case: Case

    _counts_labels_on_open = False                # its models' cached counts give them (attach)
    _cached_models: dict[str, Model]              # slot -> its model as filled from the cache (attach)
    read_from: str = ""                           # the case's files as read (``_files_stamp``)
    lock_warning: str | None = None               # why it opened read-only: another segview holds it
    _recoverable: RecoveredLabels | None = None

    @property
    def recoverable_edits(self) -> RecoveredLabels | None:
        """As ``ReviewSession.recoverable_edits``; the case's row shows them
        (``Case.crashed_edits``) until they are restored or declined (set to None)."""
        return self._recoverable

    @recoverable_edits.setter
    def recoverable_edits(self, recovered: RecoveredLabels | None) -> None:
        self._recoverable = recovered
        case = getattr(self, "case", None)  # None while ``open`` builds it, before ``attach``
        if case is not None:
            case.crashed_edits = recovered is not None

    def attach(self, worklist: Worklist, case: Case, predictors: dict[str, object],
               stamp: str | None = None, cached: dict[str, np.ndarray | None] | None = None,
               lock: bool = True, checkpoints: dict[str, Path] | None = None, recover: bool = False) -> None:
        """Called by ``Worklist.session``: the case, its provenance, its models (slot ->
        Predictor, of ``checkpoints``: slot -> path, default the worklist's) with their
        cached predictions (``cached``: slot -> those read already) and, when the cache has
        them for the labels as read (``stamp``: ``labels_stamp`` of the file, taken before it
        was read), their confusion counts; its lock, with ``lock``; its journal, unless it is
        read-only: then a crashed session's journals stay, offered when the case is opened
        editable (``recover``: restored now, when it is)."""
        self.worklist, self.case = worklist, case
        self.labels_path = case.labels
        if case.labels_unread and stamp is not None:  # seen, not read: a save over it is the person's
            self._read_stamp = stamp
        if lock:
            self._lock_case()
        self._start_journal(recover, editable=not self.read_only)
        if not case.labels.is_file():  # a status-only sidecar: keep its keys, provenance too
            sidecar = read_sidecar(case.labels) or {}
            self.review_extra = {k: v for k, v in sidecar.items() if k in ("case", "provenance")}
            if self.provenance is not None:
                self.provenance.sources = provenance_from_json(self.review_extra.get("provenance") or {},
                                                               self.labels.array.shape[0])
        worklist._learn_key(case, self.key, crashed=self.recoverable_edits is not None)  # as offered
        self._add_cached_models(checkpoints if checkpoints is not None else dict(worklist.checkpoints), predictors,
                                stamp if self.version == 0 else None, cached or {})  # not after a restore
        case.slices = self.volume.shape[0]

    def claim_lock(self) -> bool:
        """Lock a case opened ahead (``Worklist.session(lock=False)``) as it is shown: read-only
        when another segview has it now. False, and nothing locked, when its labels or review
        state changed on disk since they were read (another segview saved it meanwhile), or
        another segview that had it open crashed with unsaved edits: open it again."""
        if self.lock is not None or self.worklist.read_only:
            return True
        if self.saved_since_read() or crashed_edits(self.key):
            return False  # opened again: as saved, offering the edits of a segview that crashed since
        self._lock_case()
        if self.saved_since_read():  # saved just before the lock was taken
            self.release_lock()
            return False
        if self.read_only:
            self._stop_journal()  # nothing can be edited, so nothing to journal
        return True

    def saved_since_read(self) -> bool:
        """Whether the case's labels or review state changed on disk since they were read
        (another segview saved them)."""
        return _files_stamp(self.case.labels) != self.read_from

    @property
    def read_only(self) -> bool:
        """The dataset cannot be written, or another segview has the case open."""
        return self.worklist.read_only or self.locked_by is not None

    def _lock_case(self) -> None:
        if self.worklist.read_only:
            return
        self._lock_labels(self.case.labels)
        if self.lock is not None:
            self.worklist._holding.add(self.case.name)
            self.case.held_by = None
        holder = self.case.locked_by = self.locked_by
        self.case._locked_for = self if holder is not None else None
        if holder is not None:
            self.lock_warning = (f"{self.case.name} is open in another segview ({holder}): it opens read-only "
                                 "here, to look at; the window reads it again, editable, once the other has closed it.")
            self.warnings.append(self.lock_warning)

    def _add_cached_models(self, checkpoints: dict[str, Path], predictors: dict[str, object], stamp: str | None,
                           read: dict[str, np.ndarray | None]) -> None:
        """Models A and B, each with its cached prediction (``read`` already, or read now;
        taken as it is) and its counts against the labels ``stamp`` names (counted and kept
        in the cache when missing); models the cache lacks are added pending, after the
        others, whose counts give each slice's classes."""
        cache, cached = self.worklist.cache, {}
        for slot, path in checkpoints.items():
            prediction = read[slot] if slot in read else cache.get(self.key, checkpoint_digest(path))
            if prediction is not None and prediction.shape == self.volume.shape:
                cached[slot] = prediction
        self._cached_models = {}
        for slot, prediction in cached.items():
            path, digest = checkpoints[slot], checkpoint_digest(checkpoints[slot])
            counts = cache.counts(self.key, digest, stamp) if stamp else None
            self._cached_models[slot] = self.add_model(slot, path, predictors[slot], prediction, counts)
            if counts is None and stamp:
                cache.put_counts(self.key, digest, stamp, self.live.matrices[slot].per_slice)
        for slot, path in checkpoints.items():
            if slot not in cached:
                self.add_model(slot, path, predictors[slot])
        self.live.label_histogram()  # here, in the worker (from a model's counts when there is one)

    def _cache_counts(self, job: SaveJob) -> None:
        """After a save into the dataset: each cached model's counts against the labels as
        saved, kept in the cache under the new file's stamp, so the next open counts nothing."""
        if job.version != self.version:
            return  # edited while it saved: the counts are of other labels
        stamp = labels_stamp(job.path)
        cached: dict[str, Model] = getattr(self, "_cached_models", {})
        for slot, model in cached.items():
            if self.models.get(slot) is model and model.predicted.all():
                self.worklist.cache.put_counts(self.key, checkpoint_digest(model.path), stamp,
                                               self.live.matrices[slot].per_slice)

    def take_cached_predictions(self) -> list[str]:
        """Fill each model not fully predicted from the prediction cache, if it has this
        image by that checkpoint (e.g. when the background queue reaches the open case).
        Returns the slots filled."""
        filled = []
        for slot, model in self.models.items():
            if model.predicted.all():
                continue
            cached = self.worklist.cache.get(self.key, checkpoint_digest(model.path))
            if cached is not None and cached.shape == self.volume.shape:
                self.set_prediction(slot, cached)
                self._cached_models[slot] = model
                filled.append(slot)
        return filled

    def correction_effort(self, slot: str) -> tuple[int, float]:
        """Voxels and mL where model ``slot``'s prediction differs from the labels, over the
        reviewed slices it has predicted: how much correcting it needed."""
        model = self.models[slot]
        return correction_effort(model.prediction, self.labels.array, self.reviewed & model.predicted,
                                 self.volume.spacing)

    def figures(self) -> dict[str, dict]:
        """Slot -> the "models" entry of the sidecar (checkpoint, digest, Dice, correction)."""
        figures = {}
        for slot, model in self.models.items():
            voxels, ml = self.correction_effort(slot)
            scores = self.scores(slot)
            scored = int((self.reviewed & model.predicted).sum())
            # The model's own file: the window may have loaded another checkpoint into the slot.
            # Nothing reviewed: no correction is known (None), not a correction of 0 mL.
            figures[slot] = {"checkpoint": model.name, "digest": checkpoint_digest(model.path),
                             "dice": None if math.isnan(scores.mean_dice) else scores.mean_dice,
                             "scored_slices": scored,
                             "correction_voxels": voxels if scored else None, "correction_ml": ml if scored else None}
        return figures

    @property
    def read_only_reason(self) -> str | None:
        """Why this case may not be edited here (None: it may): the dataset folder cannot be
        written, or another segview has the case open."""
        if self.worklist.read_only:
            return f"The dataset {self.worklist.folder.name} is read-only: nothing can be saved into it."
        if self.read_only:
            return f"{self.case.name} is open in another segview ({self.locked_by or 'another session'})."
        return None

    def hold_labels_file(self) -> str | None:
        """A case holds its own lock (``attach``), and says so in ``warnings``: nothing more."""
        return None

    def save_job(self, path=None, status: str | None = None, note: str | None = None) -> SaveJob:
        """As ``ReviewSession.save_job``; saving into the dataset (no ``path``) also keeps the
        replaced files and sets the case's status (``status``, e.g. "done"; by default "new"
        becomes "in progress") and ``note``, written in the same sidecar as the labels' review
        state and taken by the Case once the job is finished (``finish_save``). Raises
        SessionError when the case is read-only, ValueError for another status."""
        into_dataset = path is None or Path(path).absolute() == self.case.labels.absolute()
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
        if into_dataset:
            self.worklist._check_writable()
            if self.read_only:
                held = f"{self.case.name} is open in another segview ({self.locked_by or 'another session'})"
                if status is not None:
                    raise SessionError(f"{held}: it was opened read-only here and cannot be marked {status}. Set its "
                                       "status there, or here once it has been closed (choose its row again).")
                raise SessionError(f"{held}: it was opened read-only here. Save the labels elsewhere (Save as).")
        if status is None or not into_dataset:
            status = "in progress" if into_dataset and self.case.status == "new" else self.case.status
        models = dict(self.review_extra.get("models") or {})  # a slot not loaded keeps its saved figures
        models.update(self.figures())
        self.review_extra.update(case=case_entry(status, self.case.note if note is None else note),
                                 provenance=self.provenance.to_json() if self.provenance else {}, models=models)
        target = Path(path) if path is not None else self.case.labels
        self._check_not_overwriting_another(target)
        return (_DatasetSaveJob if into_dataset else SaveJob)(self, target)

    def save(self, path=None, status: str | None = None, note: str | None = None) -> Path:
        """As ``ReviewSession.save``, with the case's ``status`` and ``note`` (``save_job``):
        ``save(status="done")`` is what Done does."""
        job = self.save_job(path, status, note)
        job()
        self.finish_save(job)
        return job.path

    def finish_save(self, job: SaveJob) -> str | None:
        journal_note = super().finish_save(job)
        if Path(job.path) == self.case.labels:
            self.case.labels_unread = None  # the file holds labels of this image now
            self._cache_counts(job)
            entry = job.review.extra.get("case") or {}
            self.case.status, self.case.note = entry.get("status", self.case.status), entry.get("note", self.case.note)
            self.case.reviewed_count = int(job.review.reviewed.sum())
            self.case.slices = len(job.review.reviewed)
            for slot, entry in job.review.extra.get("models", {}).items():
                self.case.dice[slot] = _float(entry["dice"])
                self.case.correction_ml[slot] = _float(entry["correction_ml"])
                self.case.correction_voxels[slot] = int(entry["correction_voxels"] or 0)
        return journal_note

    def release_lock(self) -> None:
        if self.locked_by is not None and self.case._locked_for is self:
            self.case.locked_by = self.case._locked_for = None  # the row shows the lock while it is open here
        if self.lock is not None:
            self.worklist._holding.discard(self.case.name)
        super().release_lock()


class _DatasetSaveJob(SaveJob):
    """A save into the dataset: what it replaces goes to ``.previous/`` first."""

    keeps_previous = True

    def __call__(self) -> Path:
        shared_folder(self.path.parent)  # a DICOM dataset's labels folder, made at the first save
        return super().__call__()


# -- stepping through the cases ---------------------------------------------------------

class CrashedEditsAhead(SessionError):
    """A case with a crashed session's unsaved edits, not opened ahead
    (``Worklist.session(lock=False)``): opening sets its journals aside."""


class Prefetch:
    """Case ``name`` opened ahead of being asked for: call it once, in a thread, to open it
    (``Worklist.session``: its journal taken, no status set, nothing written; not its lock,
    taken when it is shown, ``CaseSession.claim_lock``, so a colleague may open it meanwhile).
    Its session has one owner, handed over under a lock: ``take`` (waiting while it opens),
    or ``drop``, which closes it, at once or, when it is still opening, as soon as it is
    open; so no session is left open (nor its journal) whatever comes first. A case with a
    crashed session's unsaved edits is not opened: opening sets those aside, and a session
    left unused would no longer offer them."""

    def __init__(self, worklist: Worklist, name: str):
        self.worklist, self.name = worklist, name
        self._state = "waiting"  # then opening; open or failed; taken or dropped
        self._session: CaseSession | None = None
        self._lock = threading.Lock()
        self._finished = threading.Event()

    @property
    def ready(self) -> bool:
        """Open, and not yet taken."""
        return self._state == "open"

    @property
    def complete(self) -> bool:
        """Ready with every model's every slice: shown, it runs nothing."""
        session = self._session
        return self.ready and session is not None and all(m.predicted.all() for m in session.models.values())

    def __call__(self) -> None:
        """Open the case (in a thread). An error is raised after the prefetch has ended:
        taking it then gives None, and opening the case as any says why."""
        with self._lock:
            if self._state != "waiting":
                return  # taken (opened as any case) or dropped before it started
            self._state = "opening"
        session = None
        try:
            key = self.worklist.case(self.name).key  # known from the cache, or from an earlier open
            if key is None or not crashed_edits(key):  # known: the image is not even read
                session = self.worklist.session(self.name, lock=False)  # locked when shown (OpenJob)
                if session.journal is not None:
                    session.journal.wait()  # its snapshot written here too, not while it is on screen
        except CrashedEditsAhead:
            pass  # found once the image was read (its key unknown before): opened when shown
        finally:
            with self._lock:
                dropped = self._state == "dropped"
                if not dropped:
                    self._state, self._session = ("open" if session is not None else "failed"), session
            self._finished.set()
            if dropped and session is not None:
                session.close(discard=True)

    def take(self) -> CaseSession | None:
        """The session, waiting while it opens; None when there is none (not started, which
        it then never will be; skipped; failed; dropped): open the case as any case."""
        with self._lock:
            opening = self._state == "opening"
            if not opening:
                return self._hand_over()
        self._finished.wait()
        with self._lock:
            return self._hand_over()

    def _hand_over(self) -> CaseSession | None:
        session, self._session = self._session, None
        if self._state != "dropped":
            self._state = "taken"
        return session

    def drop(self) -> None:
        """Close the session (it has no edits: its journal is deleted); one still opening
        closes when it is open."""
        with self._lock:
            session, self._session = self._session, None
            self._state = "dropped"
        if session is not None:
            session.close(discard=True)


class OpenJob:
    """Save the case being left, then open case ``name``: what Ctrl+N does. Made by
    ``WorklistNavigator.open_job``; call it once, here or in a thread (``job(progress=None)``).
    ``save``: the SaveJob of the case left (None: nothing to save), run first; nothing is
    opened when it fails. Then the session the navigator's prefetch opened for ``name``
    (waiting while it opens, then taking what the cache gained since), else
    ``Worklist.session``. An error says which part failed: ``while_saving`` (the file not
    saved), or ``saved_job`` (the case left was saved: finish that save). ``cancel`` (the
    window closes) closes what it opened or will open."""

    def __init__(self, navigator: WorklistNavigator, name: str, save: SaveJob | None = None):
        self.navigator, self.name, self.save = navigator, name, save
        self.cancelled = False
        self._session: CaseSession | None = None
        self._lock = threading.Lock()

    def __call__(self, progress: Progress | None = None) -> CaseSession:
        if self.save is not None:
            try:
                self.save()
            except Exception as exc:
                exc.while_saving = Path(self.save.path).name  # type: ignore[attr-defined]
                raise
        try:
            prefetch = self.navigator._claim(self.name)
            session = prefetch.take() if prefetch is not None else None
            if session is not None and not session.claim_lock():  # saved by another segview meanwhile
                session.close(discard=True)
                session = None
            if session is not None:
                session.take_cached_predictions()
            else:
                session = self.navigator.worklist.session(self.name, progress=progress)
        except Exception as exc:
            exc.saved_job = self.save  # type: ignore[attr-defined]
            raise
        with self._lock:
            cancelled = self.cancelled
            if not cancelled:
                self._session = session
        if cancelled:
            session.close(discard=True)
        return session

    def cancel(self) -> None:
        """Close the session opened (or, when it opens later, then): nobody will show it."""
        with self._lock:
            self.cancelled = True
            session, self._session = self._session, None
        if session is not None:
            session.close(discard=True)


class WorklistNavigator:
    """Stepping through a worklist as a reviewer does, without a window: the order frozen
    when it was last sorted (figures that change meanwhile do not reshuffle it), next and
    previous case in it, saving the case left before opening the next (``save_and_open``,
    ``next``), and the next case opened in the background meanwhile (``prefetch_next``),
    so that going there costs nothing. The window's worklist dock drives one of these;
    a script does exactly what Ctrl+N does with ``navigator.next(session)``.

    Threads: every method runs in one thread (the window's); only an ``OpenJob`` and a
    ``Prefetch`` run in others."""

    def __init__(self, worklist: Worklist, by: str = "name", prefetching: bool = True):
        self.worklist = worklist
        self.prefetching = prefetching
        self.current: str | None = None    # the case on screen (the window sets it)
        self.sort_key, self.order = by, [c.name for c in worklist.sorted(by)]
        self._prefetch: Prefetch | None = None
        self._opening: OpenJob | None = None
        self._lock = threading.Lock()      # an OpenJob claims the prefetch from its thread

    # -- the order --------------------------------------------------------------------------
    def sort(self, by: str) -> list[Case]:
        """Freeze the order ``by`` (``Worklist.sorted``) as the figures are now; next and
        previous follow it until the next sort. Returns the cases in it."""
        self.order = [c.name for c in self.worklist.sorted(by)]
        self.sort_key = by
        return self.cases()

    def cases(self) -> list[Case]:
        """The cases in the frozen order."""
        return [self.worklist.case(name) for name in self.order]

    def first_name(self) -> str | None:
        """The case to show first, in the frozen order: the first holding a crashed session's
        unsaved edits (``Case.crashed_edits``) that no other segview has open, to offer them;
        else the first not done; else the first. None without cases."""
        cases = self.cases()
        crashed = (c for c in cases if c.crashed_edits and c.held_by is None)
        first = next(crashed, None) or next((c for c in cases if c.status != "done"), cases[0] if cases else None)
        return first.name if first is not None else None

    def next_name(self, name: str | None = None) -> str | None:
        """The case after ``name`` (default: ``current``) in the frozen order; the first when
        ``name`` is none of them; None after the last."""
        return self._neighbour(name, +1)

    def previous_name(self, name: str | None = None) -> str | None:
        """The case before ``name`` (default: ``current``); the last when ``name`` is none
        of them; None before the first."""
        return self._neighbour(name, -1)

    def _neighbour(self, name: str | None, step: int) -> str | None:
        name = name if name is not None else self.current
        if not self.order:
            return None
        if name not in self.order:
            return self.order[0] if step > 0 else self.order[-1]
        n = self.order.index(name) + step
        return self.order[n] if 0 <= n < len(self.order) else None

    # -- opening ------------------------------------------------------------------------------
    @property
    def opening(self) -> str | None:
        """The case an OpenJob made here is opening (until ``opened``)."""
        return self._opening.name if self._opening is not None else None

    @staticmethod
    def leave_job(session: ReviewSession | None, status: str | None = None) -> SaveJob | None:
        """The save that leaving ``session`` needs: None when it is no case or has nothing
        unsaved and no ``status`` to set (e.g. "done"), else its ``save_job`` into the
        dataset, the labels as they are now. Raises SessionError (a read-only case)."""
        if not isinstance(session, CaseSession) or (not session.modified and status is None):
            return None
        return session.save_job(status=status)

    def open_job(self, name: str, save: SaveJob | None = None) -> OpenJob:
        """The job that saves the case left (``save``, see ``leave_job``) and opens ``name``;
        the case prefetched for ``name`` is kept for it. Hand the job to ``opened`` once it ran."""
        self.worklist.case(name)  # KeyError for a case it does not have
        job = self._opening = OpenJob(self, name, save)
        return job

    def opened(self, job: OpenJob, shown: bool = True) -> None:
        """``job`` ran (or failed); ``shown``: its case is the current one now."""
        if self._opening is job:
            self._opening = None
        if shown and not job.cancelled:
            self.current = job.name

    def _claim(self, name: str) -> Prefetch | None:
        """The prefetch of ``name``, taken out of the slot (from an OpenJob's thread)."""
        with self._lock:
            prefetch = self._prefetch
            if prefetch is None or prefetch.name != name:
                return None
            self._prefetch = None
            return prefetch

    def save_and_open(self, name: str, leaving: ReviewSession | None = None, status: str | None = None,
                      progress: Progress | None = None) -> CaseSession:
        """Save ``leaving`` into the dataset when it has unsaved edits or a ``status`` is
        given (``leave_job``), close it, and open case ``name`` (the prefetched session
        when there is one): Ctrl+N, here and now. When the save fails nothing changes;
        when ``name`` cannot be opened, ``leaving`` stays open (and saved). Raises
        SessionError, LabelSaveError, VolumeLoadError, CheckpointError."""
        job = self.open_job(name, self.leave_job(leaving, status))
        try:
            session = job(progress)
        except Exception as exc:
            self.opened(job, shown=False)
            saved = getattr(exc, "saved_job", None)
            if saved is not None and leaving is not None:
                leaving.finish_save(saved)
            raise
        self.opened(job)
        if leaving is not None:
            if job.save is not None:
                leaving.finish_save(job.save)
            leaving.close()
        return session

    def next(self, leaving: ReviewSession | None = None, status: str | None = None) -> CaseSession | None:
        """``save_and_open`` the case after ``current`` (status: e.g. "done" for Done and
        next); None after the last (nothing saved, nothing closed)."""
        name = self.next_name()
        return None if name is None else self.save_and_open(name, leaving, status)

    def previous(self, leaving: ReviewSession | None = None) -> CaseSession | None:
        """``save_and_open`` the case before ``current``; None before the first."""
        name = self.previous_name()
        return None if name is None else self.save_and_open(name, leaving)

    # -- the next case, opened in the background ----------------------------------------------
    @property
    def prefetched(self) -> str | None:
        """The case open in the background, ready to be shown; None when none is (yet)."""
        prefetch = self._prefetch
        return prefetch.name if prefetch is not None and prefetch.ready else None

    @property
    def prefetch(self) -> Prefetch | None:
        """The prefetch in the slot (opening or open), if any."""
        return self._prefetch

    def prefetch_next(self, start: Callable[[Prefetch], object]) -> Prefetch | None:
        """Have the case after ``current`` opened in the background: ``start(prefetch)``
        must run ``prefetch()`` in another thread (a Qt worker, a ``threading.Thread``).
        Any other case prefetched is closed (the order, the case on screen or
        ``prefetching`` changed). Returns the prefetch started; None when there is none to
        start: the next is already there, there is no next, prefetching is off, or a case
        is opening (its own next comes once it is current)."""
        target = self.next_name() if self.prefetching and self.current is not None else None
        with self._lock:
            prefetch = self._prefetch
            if prefetch is not None and prefetch.name == target:
                return None
            if prefetch is not None and prefetch.name != self.opening:  # one an OpenJob awaits is kept
                self._prefetch = None
            else:
                prefetch = None
            started = None
            if target is not None and self._opening is None and self._prefetch is None:
                started = self._prefetch = Prefetch(self.worklist, target)
        if prefetch is not None:
            prefetch.drop()
        if started is not None:
            start(started)
        return started

    def drop_prefetch(self, force: bool = False) -> None:
        """Close the case opened in the background (when it is open, if it is still
        opening): the models changed. One an OpenJob awaits is kept, unless ``force``."""
        with self._lock:
            prefetch = self._prefetch
            if prefetch is None or (prefetch.name == self.opening and not force):
                return
            self._prefetch = None
        prefetch.drop()

    def close(self) -> None:
        """Nothing goes on: the case opening is cancelled, the one prefetched closed (the
        window closes, or another dataset opens)."""
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        self.drop_prefetch(force=True)


# -- figures -------------------------------------------------------------------------------

def correction_effort(prediction: np.ndarray, labels: np.ndarray, slices: np.ndarray, spacing) -> tuple[int, float]:
    """Voxels, and mL, where ``prediction`` and ``labels`` (z, y, x) differ on the slices
    ``slices`` ((Z,) bool); ``spacing`` (x, y, z) in mm."""
    voxels = int(np.count_nonzero(prediction[slices] != labels[slices]))
    return voxels, voxels * float(np.prod(spacing)) / 1000.0


# -- the prediction cache ------------------------------------------------------------------

#: How segview feeds a checkpoint its slices, in the names of the cache's entries: a prediction
#: cached by a segview that fed them otherwise is not reused (and is pruned as the oldest).
#: "mm": slices padded square in mm (``ml.data.padded_shape``); before, on non-square pixels,
#: predictions were of a squashed image.
FEEDING = "mm"
#: How segview reads image files into a volume, in ``images.json``'s entries: a key remembered
#: by a segview that read the same files onto another grid is not trusted (it would open the
#: case under that image's key: its cached predictions and crash journals). 2: an unevenly
#: spaced DICOM series ends at its last acquired slice (``core.dicom``); before, unrecorded.
READING = 2


def _fed(digest: str) -> str:
    """A cache entry's name: the checkpoint's digest and ``FEEDING``."""
    return f"{digest}-{FEEDING}"


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/segview/predictions`` (``~/.cache/segview/predictions``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segview" / "predictions"


class PredictionCache:
    """Predictions by (image content digest, checkpoint content digest):
    ``<root>/<key>/<digest>.npz`` (labels, uint8, compressed), ``<digest>.json`` (summary),
    ``<digest>.counts.json`` (per-slice confusion counts against the labels a
    ``labels_stamp`` names), ``<key>/disputed.json`` (voxels where two checkpoints differ, and where either calls
    foreground), and
    ``images.json`` (image file stamps -> key, so a worklist knows a case's key without
    reading its image). Deleting the folder is always safe."""

    def __init__(self, root=None, max_bytes: int = 5 * 2 ** 30):
        self.root = Path(root) if root is not None else cache_folder()
        self.max_bytes = max_bytes
        self._index: dict | None = None
        self._index_lock = threading.Lock()  # the prediction queue's worker and the window both write it
        self._bytes: int | None = None        # size of the stored predictions, counted once

    def _entry(self, key: str, digest: str) -> Path:
        return self.root / key / _fed(digest)

    def has(self, key: str, digest: str) -> bool:
        return self._entry(key, digest).with_suffix(".npz").is_file()

    def get(self, key: str, digest: str) -> np.ndarray | None:
        """The cached labels (z, y, x) uint8, or None."""
        path = self._entry(key, digest).with_suffix(".npz")
        try:
            with np.load(path) as data:
                labels = data["labels"]
            os.utime(path)  # recently used: pruned last
        except (OSError, KeyError, ValueError):
            return None
        return labels if labels.dtype == np.uint8 and labels.ndim == 3 else None

    def summary(self, key: str, digest: str) -> dict | None:
        return _read_json(self._entry(key, digest).with_suffix(".json"))

    def counts(self, key: str, digest: str, stamp: str) -> np.ndarray | None:
        """The cached prediction's per-slice confusion counts (Z, C, C) against the labels
        ``stamp`` (``labels_stamp``) names, or None: kept for the latest labels only."""
        entry = _read_json(self._entry(key, digest).with_suffix(".counts.json")) or {}
        try:
            return np.asarray(entry["per_slice"], np.int64) if entry.get("labels") == stamp else None
        except (KeyError, TypeError, ValueError):
            return None

    def put_counts(self, key: str, digest: str, stamp: str, per_slice: np.ndarray) -> None:
        """Keep the per-slice confusion counts (Z, C, C) of the prediction of ``digest``
        against the labels ``stamp`` names (replacing those of older labels). Skipped when
        the cache cannot be written."""
        document = {"labels": stamp, "per_slice": np.asarray(per_slice, np.int64).tolist()}
        try:
            self._entry(key, digest).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self._entry(key, digest).with_suffix(".counts.json"), json.dumps(document))
        except OSError:
            pass

    def put(self, key: str, digest: str, labels: np.ndarray, summary: dict) -> None:
        """Store ``labels`` (z, y, x) uint8 and ``summary``; then prune to ``max_bytes``.
        A cache that cannot be written is skipped (it is only a cache)."""
        entry = self._entry(key, digest)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            replace_atomically(entry.with_suffix(".npz"),
                               lambda temporary: _save_npz(temporary, np.ascontiguousarray(labels, np.uint8)))
            atomic_write_text(entry.with_suffix(".json"), json.dumps(summary))
        except OSError:
            return
        if self._bytes is None:
            self._bytes = sum(p.stat().st_size for p in self.root.glob("*/*.npz"))
        else:
            self._bytes += entry.with_suffix(".npz").stat().st_size
        if self._bytes > self.max_bytes:
            self.prune()

    def disputed(self, key: str, digest_a: str, digest_b: str) -> float | None:
        """Voxels where the two cached predictions differ per voxel either calls foreground
        (class > 0), over the whole image: 0 where they agree everywhere (also where both
        find nothing), 1 where their foregrounds do not overlap at all. Unlike a share of
        the whole image (mostly background, so 0.1 % for any case), it compares cases of
        any size. None until ``ensure_disputed`` counted it."""
        entry = (_read_json(self.root / key / "disputed.json") or {}).get(f"{_fed(digest_a)}:{_fed(digest_b)}")
        if not isinstance(entry, dict):  # none, or an older share of the whole image: count again
            return None
        differ, foreground = int(entry.get("differ", 0)), int(entry.get("foreground", 0))
        return differ / foreground if foreground else 0.0

    def ensure_disputed(self, key: str, digest_a: str, digest_b: str) -> float | None:
        """``disputed``, counted once from the cached predictions (None when one is missing)."""
        known = self.disputed(key, digest_a, digest_b)
        if known is not None:
            return known
        a, b = self.get(key, digest_a), self.get(key, digest_b)
        if a is None or b is None or a.shape != b.shape:
            return None
        counts = {"differ": int(np.count_nonzero(a != b)), "foreground": int(np.count_nonzero((a > 0) | (b > 0)))}
        path = self.root / key / "disputed.json"
        entries = _read_json(path) or {}
        entries[f"{_fed(digest_a)}:{_fed(digest_b)}"] = counts
        try:
            atomic_write_text(path, json.dumps(entries))
        except OSError:
            pass
        return counts["differ"] / counts["foreground"] if counts["foreground"] else 0.0

    def known_key(self, files: list[Path]) -> str | None:
        """The image_key remembered for these image files, if none changed since and this
        segview reads them as the one that remembered it (``READING``)."""
        stamp = _stamp(files)
        entry = self._images().get(_files_id(files))
        if not entry or stamp is None or entry.get("stamp") != stamp or entry.get("reading") != READING:
            return None
        return entry["key"]

    def remember_key(self, files: list[Path], key: str) -> None:
        stamp = _stamp(files)
        if stamp is None or self.known_key(files) == key:
            return
        with self._index_lock:
            index = self._images()
            index[_files_id(files)] = {"stamp": stamp, "key": key, "reading": READING}
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.root / "images.json", json.dumps(index))
            except OSError:
                pass

    def _images(self) -> dict:
        if self._index is None:
            self._index = _read_json(self.root / "images.json") or {}
        return self._index

    def prune(self) -> None:
        """Delete the least recently used predictions beyond ``max_bytes``."""
        files = sorted(self.root.glob("*/*.npz"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            path.with_suffix(".json").unlink(missing_ok=True)
            path.with_suffix(".counts.json").unlink(missing_ok=True)
        self._bytes = total


_digests: dict[tuple, str] = {}


def crashed_edits(key: str) -> bool:
    """Whether a segview that crashed left unsaved edits of image ``key`` (opening it offers them)."""
    return bool(crashed_journals(key)) and unsaved_edits(key) is not None


def _files_stamp(labels_path) -> str:
    """``labels_stamp`` of a case's labels and of their review sidecar: what another segview's
    save changes."""
    return f"{labels_stamp(labels_path)}+{labels_stamp(review_path(labels_path))}"


def checkpoint_digest(path) -> str:
    """blake2b (20 bytes, hex) of the checkpoint file's content; remembered per
    (path, size, modification time)."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _digests:
        digest = hashlib.blake2b(digest_size=20)
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(2 ** 20), b""):
                digest.update(block)
        _digests[memo] = digest.hexdigest()
    return _digests[memo]


# -- reading the dataset -----------------------------------------------------------------

def dataset_layout(folder) -> str | None:
    """"nnU-Net" or "DICOM" when ``folder`` is a dataset (the one rule: ``Worklist.open``
    and the command line's ``segview FOLDER`` both ask it), else None; nothing is read but
    the folder's listing. nnU-Net: an ``imagesTr/`` folder. DICOM studies: only sub-folders
    (no files of its own but a DICOMDIR; names starting with a dot are left out), and either
    two of them or a ``labels/`` folder segview made; a folder holding one study or series is
    an image, not a dataset."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "imagesTr").is_dir():
        return "nnU-Net"
    try:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    except OSError:
        return None
    if any(p.is_file() and p.name.upper() != "DICOMDIR" for p in entries):
        return None
    studies = [p for p in entries if p.is_dir() and p.name != "labels"]
    has_labels = (folder / "labels").is_dir()
    return "DICOM" if studies and (len(studies) >= 2 or has_labels) else None


def _nnunet_cases(folder: Path) -> list[Case]:
    ending = _file_ending(folder / "dataset.json")
    cases = []
    for image in sorted((folder / "imagesTr").iterdir()):
        if image.name.startswith("."):
            continue
        if image.is_dir():  # a DICOM series as imagesTr/<case>/, as segview train reads it
            cases.append(Case(image.name, image, folder / "labelsTr" / f"{image.name}{ending or '.nii.gz'}"))
            continue
        ext = extension(image)
        stem = image.name[: -len(ext)] if ext else image.name
        if stem.endswith(FIRST_CHANNEL):
            name = case_name(stem)
            cases.append(Case(name, image, folder / "labelsTr" / f"{name}{ending or ext or '.nii.gz'}"))
    return cases


def _dicom_cases(folder: Path, progress: Progress | None) -> list[Case]:
    studies = sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "labels" and not p.name.startswith("."))
    cases = []
    for n, study in enumerate(studies):
        if progress is not None:
            progress(n, len(studies))
        try:
            series = [s for s in list_dicom_series(study) if not s.is_localizer]
        except VolumeLoadError as exc:
            cases.append(Case(study.name, study, folder / "labels" / f"{study.name}.nii.gz", error=str(exc)))
            continue
        series.sort(key=lambda s: (s.number is None, s.number or 0, s.uid))
        for name, info in zip(_series_names(study.name, series, folder / "labels"), series):
            cases.append(Case(name, study, folder / "labels" / f"{name}.nii.gz", series=info))
    return cases


def _series_names(study: str, series: list, labels: Path) -> list[str]:
    """The case names of a study's ``series``, unique and stable: the study's name for its only
    series, else ``<study>_<SeriesNumber>`` (with the end of the series UID where two share a
    number, then a count). Labels saved under the study's name while it held one series keep
    it for the series of their slice count, when exactly one has it: a series added to the
    study later does not leave them behind (a tester's saved, reviewed case came back new)."""
    if len(series) == 1:
        return [study]
    numbers = [s.number for s in series]
    names = [f"{study}_{s.number if s.number is not None else s.uid}" if numbers.count(s.number) == 1
             else f"{study}_{s.number}_{s.uid[-6:]}" for s in series]
    names = [name if names.count(name) == 1 else f"{name}_{k + 1}" for k, name in enumerate(names)]
    saved = _label_slices(labels / f"{study}.nii.gz")
    owners = [k for k, s in enumerate(series) if saved is not None and s.size[2] == saved]
    if len(owners) == 1:
        names[owners[0]] = study
    return names


def _label_slices(path: Path) -> int | None:
    """The slices of a label file, from its header alone; None where there is none."""
    shape = image_shape(path) if path.is_file() else None
    return shape[0] if shape is not None and len(shape) == 3 else None


def _declared_classes(dataset_json: Path) -> list[LabelClass] | None:
    """Class names from dataset.json's "labels" ({"background": 0, "RV": 1, ...})."""
    labels = (_read_json(dataset_json) or {}).get("labels")
    if not isinstance(labels, dict):
        return None
    try:
        by_value = {int(value): str(name) for name, value in labels.items()}
    except (TypeError, ValueError):
        return None
    if sorted(by_value) != list(range(len(by_value))):
        return None  # regions or gaps: leave the classes to the label files
    return named_classes([by_value[v] for v in range(len(by_value))])


def _file_ending(dataset_json: Path) -> str | None:
    ending = (_read_json(dataset_json) or {}).get("file_ending")
    return ending if isinstance(ending, str) and ending.startswith(".") else None


def _image_files(case: Case) -> list[Path]:
    return [Path(f) for f in case.series.files] if case.series is not None else [case.image]


def _files_id(files: list[Path]) -> str:
    first = str(Path(files[0]).resolve()) if files else ""
    return f"{first}|{len(files)}"


def _stamp(files: list[Path]) -> list[int] | None:
    """Total size and latest modification time (ns) of ``files``; None if one is missing."""
    try:
        stats = [os.stat(f) for f in files]
    except OSError:
        return None
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]


def _read_json(path: Path) -> dict | None:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def _save_npz(path: Path, labels: np.ndarray) -> None:
    with open(path, "wb") as file:  # a file object: np.savez would append .npz to the name
        np.savez_compressed(file, labels=labels)


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _or_zero(value: float) -> float:
    return 0.0 if math.isnan(value) else value
