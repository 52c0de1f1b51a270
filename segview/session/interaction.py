"""Interactive correction (issue 20): the person clicks, the click model corrects one class
on one slice. No Qt.

An ``Interaction`` is held by the session (``ReviewSession.interaction``); the session's
``click``, ``click_job``, ``finish_click``, ``end_interaction`` and ``load_click_model``
are its public face. One interaction is the clicks given to one class on one slice of one
plane (axial: the acquired planes; others are refused); a click for another class, slice
or plane, or ``end_interaction``, starts a new one, and so does any other change of its
slice (Clear slice, a label file, the brush; undo and redo of its own clicks excepted). The
model refines the class from the current labels of the slice and every click of the
interaction so far.

A click is computed in two parts, as the session's other long jobs are: ``click_job``
checks the click and copies what the model needs (main thread); calling the ``ClickJob``
runs the model (any thread: a worker); ``finish_click`` writes its ``ClickProposal`` as one
undo step and one journal record (main thread), refused when the labels changed
meanwhile. A job that fails, is cancelled (``ClickJob.cancel``) or is never finished
changes nothing.

What the model proposes is written inside its crop only, and as the overwrite policy of
the hand tools allows (``LabelMap.policy``): the class takes background, and other classes
only under "everything" (mode "all") and at an adding click; what it removes becomes
background; a protected class is never changed (clicking one is refused), and an adding
click on a voxel of another class the policy keeps is refused (the model would grow the
class around a point it may not have). A click that
changes nothing leaves no undo step and leaves the interaction as it was (its dot goes).
The brush's intensity range does not apply (as for the class tools). Nothing is marked
reviewed; the slice's provenance records "interactive" (``provenance.INTERACTIVE``) where
the session follows provenance.

The click model is the shipped ``resources/models/interactive.safetensors``, or the
checkpoint named by the environment variable ``SEGVIEW_CLICK_MODEL`` (to try another
without installing it), or one given to ``load_click_model``; it is loaded at the first
click (in the job, so in the worker), so a session without one works until a click asks
for it.
"""
from __future__ import annotations

import os
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..core.labels import Edit, LabelMap
from ..core.volume import Volume, slice_pixel_size
from .errors import SessionError, checked_slice
from .provenance import INTERACTIVE

if TYPE_CHECKING:  # torch is imported at the first click, not with the session
    from ..ml.interactive import Click, ClickModel

#: The environment variable naming an interactive checkpoint to use instead of the shipped one.
ENVIRONMENT = "SEGVIEW_CLICK_MODEL"


def default_click_model() -> Path:
    """``SEGVIEW_CLICK_MODEL`` when set, else the shipped interactive checkpoint."""
    named = os.environ.get(ENVIRONMENT)
    if named:
        return Path(named).expanduser()
    from ..resources import CLICK_MODEL

    return CLICK_MODEL


class _Host(Protocol):
    """What an Interaction needs of its session."""
    labels: LabelMap
    volume: Volume
    version: int


@dataclass(frozen=True)
class ClickProposal:
    """What the model made of a click: the class on the slice inside ``box`` (rows, columns
    of the slice), as ``mask`` (h, w) bool."""
    box: tuple[slice, slice]
    mask: np.ndarray


class ClickJob:
    """One click to compute: call it (in a worker if you like) for its ``ClickProposal``,
    then hand both to ``ReviewSession.finish_click``. Holds a copy of what the model reads
    (the class's mask on the slice, the clicks), so the labels may change meanwhile."""

    def __init__(self, interaction: Interaction, z: int, click: Click, value: int, axis: int, previous: list[Click]):
        self.z, self.click, self.value, self.axis = z, click, value, axis
        self.clicks = [*previous, click]          # every click of the interaction, this one last
        self.continues = bool(previous)           # False: it starts a new interaction
        self.version, self.generation = interaction.host.version, interaction.generation
        self.mask = interaction.host.labels.array[z] == value   # (Y, X) bool, a copy
        self._volume = interaction.host.volume.array
        self._pixel_size = slice_pixel_size(interaction.host.volume.spacing)
        self._model = interaction.model
        self._cancelled = threading.Event()

    @property
    def point(self) -> tuple[int, int]:
        return self.click.y, self.click.x

    @property
    def positive(self) -> bool:
        return self.click.positive

    def cancel(self) -> None:
        """Drop this click: ``__call__`` stops as soon as it can and ``finish_click`` writes
        nothing."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def __call__(self, should_stop: Callable[[], bool] | None = None, **_: Any) -> ClickProposal | None:
        """Run the model (loading it at the first click); None when cancelled or stopped.
        Raises CheckpointError (no usable click model) or SessionError (the model failed)."""
        def stopped() -> bool:
            return self.cancelled or (should_stop is not None and should_stop())

        if stopped():
            return None
        model = self._model()
        if stopped():
            return None
        try:
            box, mask = model.refine(self._volume, self.z, self.mask, self.clicks, pixel_size=self._pixel_size)
        except (RuntimeError, ValueError, MemoryError) as exc:  # torch reports its failures so
            raise SessionError(f"The click model failed on this click ({type(exc).__name__}: {exc}); "
                               "the labels are as they were.") from exc
        return None if stopped() else ClickProposal(box, np.asarray(mask, bool))


@dataclass
class _Step:
    """A click's undo step: its edit, and the clicks of the interaction before and after it."""
    edit: Edit
    before: list[Click]
    after: list[Click]


class Interaction:
    """The interaction in progress and the click model of a session (see the module)."""

    def __init__(self, host: _Host):
        self.host = host
        self.value: int | None = None      # the class, the slice and the plane of the clicks
        self.z: int | None = None
        self.axis = 0
        self.clicks: list[Click] = []
        self.generation = 0                # ends of interactions so far: older jobs are stale
        self.model_path: Path | None = None  # None: ``default_click_model()``
        self._model: ClickModel | None = None
        self._loading = threading.Lock()
        self._steps: list[_Step] = []      # this interaction's clicks that changed the labels
        self._undone: list[_Step] = []
        self._writing = False              # a click of this interaction is being written
        self.last_taken: dict[int, int] = {}  # the last click's voxels taken from other classes, by class
        host.labels.events.changed.connect(self._changed)

    def detach(self) -> None:
        """Stop following the labels (the session is closing)."""
        self.host.labels.events.changed.disconnect(self._changed)

    @property
    def active(self) -> bool:
        """Whether an interaction is in progress (it has clicks)."""
        return bool(self.clicks)

    # -- the model ----------------------------------------------------------------------
    def load_model(self, path=None) -> ClickModel:
        """Use interactive checkpoint ``path`` (default: ``default_click_model()``) from now on.
        Raises CheckpointError."""
        path = default_click_model() if path is None else Path(path)
        with self._loading:
            self._model = _warmed_up(path)
            self.model_path = path
        return self._model

    @property
    def model_name(self) -> str:
        """The click model's name: its file's (the one loaded, else the one a click would load)."""
        return (self.model_path or default_click_model()).stem

    @property
    def model_ready(self) -> bool:
        """Whether the click model is loaded (else the next click loads it: seconds)."""
        return self._model is not None

    def model(self) -> ClickModel:
        """The click model, loaded (and warmed up: ``ClickModel.warm_up``) now if need be (any
        thread; the window calls it in a worker when the Click tool is chosen). Raises
        CheckpointError."""
        from ..ml.checkpoint import CheckpointError

        with self._loading:
            if self._model is None:
                path = self.model_path or default_click_model()
                if self.model_path is None and not path.exists():
                    raise CheckpointError(f"No click model: {path} is not there. Set {ENVIRONMENT} to an "
                                          "interactive checkpoint (segview train DATA --interactive) or load one.")
                try:
                    self._model = _warmed_up(path)
                except CheckpointError as exc:
                    if self.model_path is None and os.environ.get(ENVIRONMENT):  # say where the file came from
                        raise CheckpointError(f"{exc} (the file named by {ENVIRONMENT})") from exc
                    raise
            return self._model

    # -- clicks -------------------------------------------------------------------------
    def job(self, z: int, point, positive: bool = True, value: int | None = None, axis: int = 0) -> ClickJob:
        """A click on slice ``z`` of plane ``axis`` at ``point`` (y, x; rounded to the
        voxel) for class ``value`` (None: the interaction's). Raises SessionError for a
        click the session cannot take (nothing changes)."""
        from ..ml.interactive import Click

        labels = self.host.labels
        if axis != 0:
            display = self.host.volume.display()
            acquired, clicked = display.acquisition_view(), display.view_of_axis(axis)
            raise SessionError(f"Click correction works on the {acquired} (acquired) slices, not on {clicked} "
                               f"ones: click in the {acquired} view.")
        if value is None:
            if not self.active:
                raise SessionError("Choose the class to correct before clicking.")
            value = self.value
        assert value is not None
        value = int(value)
        if value == 0:
            raise SessionError("Click correction corrects a class: choose one, not background.")
        if not 0 < value <= 255:
            raise SessionError(f"Class {value} does not fit the labels (1 to 255).")
        policy = labels.policy
        if policy.mode == "protect" and value in policy.protected:
            name = self._class_name(value)
            raise SessionError(f"{name[:1].upper()}{name[1:]} is protected: take it off the protected classes to "
                               "correct it.")
        slices, rows, cols = labels.array.shape
        z = checked_slice(z, slices)
        y, x = (int(np.floor(float(c) + 0.5)) for c in point)
        if not (0 <= y < rows and 0 <= x < cols):
            raise SessionError("The click is outside the image: nothing changed.")
        held = int(labels.array[z, y, x])
        if positive and held not in (0, value) and not _may_take(labels, held):
            # The model would correct the class around a voxel it may not have.
            protected = " (protected)" if policy.mode == "protect" and held in policy.protected else ""
            # Short enough for the status bar, which cut the longer text off.
            raise SessionError(f"The point clicked holds {self._class_name(held)}{protected}: nothing changed. "
                               "A click takes another class only under 'Paint over: everything'.")
        plane = self.host.volume.array[z]
        if not np.isfinite(plane).all() or plane.min() == plane.max():
            raise SessionError(f"Slice {z + 1} holds no image for the model to see (every voxel the same "
                               "or not a number): nothing changed.")
        continues = self.active and (value, z, axis) == (self.value, self.z, self.axis)
        return ClickJob(self, z, Click(y, x, bool(positive)), value, axis, list(self.clicks) if continues else [])

    def _class_name(self, value: int) -> str:
        names = {c.value: c.name for c in getattr(self.host, "classes", [])}
        return names.get(value, f"class {value}")

    def finish(self, job: ClickJob, proposal: ClickProposal | None) -> int:
        """Write ``proposal`` (``job()``'s) as one undo step; returns the voxels changed (0
        and nothing written when it was cancelled or stopped). Raises SessionError when the
        labels changed, or the interaction ended, while it ran."""
        if proposal is None or job.cancelled:
            return 0
        if job.version != self.host.version:
            raise SessionError("The labels changed while the click model ran; the click was not applied. "
                               "Click again.")
        if job.continues and job.generation != self.generation:
            raise SessionError("The interaction ended while the click model ran; the click was not applied.")
        if not job.continues:
            self.end()
            self.value, self.z, self.axis = job.value, job.z, job.axis
        before, self.clicks = list(self.clicks), list(job.clicks)
        labels = self.host.labels
        rows, cols = proposal.box
        region = (slice(job.z, job.z + 1), rows, cols)
        old = labels.array[region][0]
        current = old == job.value
        # The class takes background (anything under "everything"); what it loses becomes
        # background. A protected class cannot be the one clicked (refused in ``job``),
        # and only "everything" lets the class take another's voxels, and only at an
        # adding click: a right click on the left ventricle grew it over the myocardium.
        may_take = _may_take(labels, old) if job.positive else old == 0
        new = old.copy()
        new[current & ~proposal.mask] = 0
        new[proposal.mask & ~current & may_take] = job.value
        provenance = getattr(self.host, "provenance", None)
        self._writing = True
        try:
            with provenance.source(INTERACTIVE) if provenance is not None else nullcontext(), labels.step("click"):
                edit = labels.write(region, new[None])
        finally:
            self._writing = False
        if edit is None:  # no undo step: the click leaves no trace, its dot goes too
            self.clicks = before
            return 0
        self._steps.append(_Step(edit, before, list(self.clicks)))
        self._undone.clear()
        taken = edit.old[(edit.new == job.value) & (edit.old != 0) & (edit.old != job.value)]
        values, counts = np.unique(taken, return_counts=True)
        self.last_taken = {int(v): int(n) for v, n in zip(values, counts)}  # under "everything" only
        return int(np.count_nonzero(edit.old != edit.new))

    def unchanged_reason(self, job: ClickJob) -> str:
        """Why ``job``'s click changed nothing, in the person's words (after ``finish``
        returned 0)."""
        labels = self.host.labels
        y, x = job.point
        held = labels.array[job.z, y, x]
        if (held == job.value) == job.positive:
            where = "already in" if job.positive else "not in"
            return f"the point clicked is {where} the class: nothing to change there"
        if job.positive and not _may_take(labels, held):
            return ("the point clicked holds another class, which a click takes only under 'Paint over: "
                    "everything': nothing changed")
        return "the model did not follow this click and changed nothing (the brush can)"

    def end(self) -> None:
        """End the interaction in progress: the next click starts a new one."""
        self.value, self.z, self.axis, self.clicks = None, None, 0, []
        self._steps.clear()
        self._undone.clear()
        self.generation += 1

    def _changed(self, edit: Edit) -> None:
        """Undo of a click takes its click back out of the interaction; redo puts it back.
        Any other change of the interaction's slice (Clear slice, a label file opened, the
        brush, an older step undone) ends it: its clicks were given to labels that are gone,
        and the next click would bring back what they asked for (a tester's cleared lesion
        came back with the next click on another)."""
        if self._writing:
            return
        if self._steps and edit.key == self._steps[-1].edit.key and edit.undo:
            step = self._steps.pop()
            self._undone.append(step)
            self.clicks = list(step.before)
        elif self._undone and edit.key == self._undone[-1].edit.key and not edit.undo:
            step = self._undone.pop()
            self._steps.append(step)
            self.clicks = list(step.after)
        elif self.active and self.z in edit.slices:
            self.end()


def _may_take(labels: LabelMap, old):
    """Where a click may give its class voxels holding ``old``: background, or anything
    under the overwrite policy "everything" (mode "all")."""
    return np.ones(np.shape(old), bool) if labels.policy.mode == "all" else np.asarray(old) == 0


def _warmed_up(path: Path) -> ClickModel:
    """The click model of ``path`` on ``click_device()``, its network run once
    (``ClickModel.warm_up``) so that the first click does not wait for that. Raises
    CheckpointError."""
    from ..ml.interactive import ClickModel, click_device

    model = ClickModel.from_checkpoint(path, click_device())
    try:
        model.warm_up()
    except (RuntimeError, ValueError, MemoryError):
        pass  # the first click meets the same failure and says so (``ClickJob``)
    return model
