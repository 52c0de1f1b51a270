"""Where each slice's labels came from: model A, model B, hand edits, interpolation, a
label file, recovered edits, click correction; a slice never edited is "untouched".

``Provenance`` listens to a session's LabelMap, and wraps five of that LabelMap's methods
while attached, because an edit's values alone cannot tell an interpolated slice from a
painted one, nor a copied prediction from an erased false positive:

- ``copy_from`` (what a model's prediction, a label file or recovered edits go through)
  and ``write_patches`` (a whole-volume copy computed in a worker, ``CopyJob``): a model's
  prediction copied is that model's (the session names it: ``CopyWrite``); otherwise each
  slice whose new values equal a loaded model's prediction is that model's ("model A"
  before "model B" where both agree), other slices "loaded";
- ``adopt`` (a disputed region taken from one model): that model;
- ``interpolate`` / ``fill_between_slices``: "interpolation";
- inside ``with provenance.source(name):``: ``name`` (e.g. "interactive": the click model's
  corrections, ``session.interaction``);
- inside ``with provenance.recovering(record):`` (a crashed session's edits restored): the
  record that session journalled;
- anything else (brush, fill, slice copy, clear): "hand".

Undo and redo move the record back and forth with the labels: an undo or redo carries the
``key`` of the edit it takes back (``edit.undo``) or repeats, so each incoming edit is
matched to the one first applied under that key.

Only the slices an edit changed are touched (a slab copied over slices it left as they were
credits them to nothing). Per slice the record is the list of sources in the order they first touched it, e.g.
``["model B: lung_ce", "hand"]``: copied from B, then corrected by hand; a model's prediction
copied over the whole slice starts its record again (nothing of the earlier sources is left). A model's or the
click model's source carries the name of the checkpoint behind it when the edit was made
(``named``), so that labels reopened without their models, or with others, still name the
one that made them (a tester's DICOM SEG named the click model loaded at export, and "model
A" once reopened); records written before say "model B" alone. Saved in the review sidecar
under "provenance" (``to_json`` / ``from_json``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..core.dicomseg import PERSON
from ..core.labels import Edit, LabelMap

HAND, INTERPOLATION, LOADED, UNTOUCHED = "hand", "interpolation", "loaded", "untouched"
COPY = "copy"  # inside copy_from: the model whose prediction it is, else LOADED
INTERACTIVE = "interactive"  # the click model's corrections (session.interaction)
KEY = "provenance"  # its entry in the review sidecar
RECOVERED = "recovered"  # a crashed session's edits, from a journal that holds no record of their sources


@dataclass
class _Applied:
    """One edit as first applied (``undo``: it was itself an undo): the slices' sources
    before and after it."""
    undo: bool
    before: dict[int, tuple[str, ...]]
    after: dict[int, tuple[str, ...]]


def named(kind: str, name: str | None) -> str:
    """A source as recorded: its kind ("model A", "interactive") and the checkpoint behind
    it, where known ("model A: lung_ce")."""
    return f"{kind}: {name}" if name else kind


def kind_and_name(source: str) -> tuple[str, str | None]:
    """A recorded source's kind and checkpoint name (None in records written before names)."""
    kind, _, name = source.partition(": ")
    return kind, name or None


class Provenance:
    """Follows ``labels``; ``models()`` gives the current predictions by slot
    ({"A": (prediction (z, y, x) uint8, predicted (Z,) bool), ...}), ``algorithms()`` the
    checkpoint behind each source kind now ({"model A": "lung_ce", "interactive": ...})."""

    def __init__(self, labels: LabelMap, models: Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]],
                 saved: dict | None = None, algorithms: Callable[[], dict[str, str]] = dict):
        self.labels, self._models, self._algorithms = labels, models, algorithms
        self.sources: dict[int, tuple[str, ...]] = from_json(saved or {}, labels.array.shape[0])
        self._applied: dict[int, _Applied] = {}  # by Edit.key
        self._source: str | None = None   # a source named by the method being run
        self._recovered: dict[int, tuple[str, ...]] | None = None  # a crashed session's record (``recovering``)
        self._wrapped: dict[str, Callable] = {}
        labels.events.changed.connect(self._changed)
        self._wrap("interpolate", lambda *args: INTERPOLATION)
        self._wrap("fill_between_slices", lambda *args: INTERPOLATION)
        self._wrap("copy_from", lambda source, *args, **kwargs: self._model_of(source) or COPY)  # that model's
        self._wrap("write_patches", lambda *args, **kwargs: COPY)
        self._wrap("adopt", lambda z, seed, source, other: self._model_of(source) or HAND)

    def detach(self) -> None:
        """Stop listening and give the LabelMap its own methods back."""
        self.labels.events.changed.disconnect(self._changed)
        for name in self._wrapped:
            vars(self.labels).pop(name, None)
        self._wrapped.clear()

    @contextmanager
    def source(self, name: str) -> Iterator[None]:
        """Edits made inside come from ``name`` (e.g. "file" when a label file replaces the
        labels, "recovered" when a crashed session's edits come back)."""
        previous, self._source = self._source, name
        try:
            yield
        finally:
            self._source = previous

    @contextmanager
    def recovering(self, record: dict | None) -> Iterator[None]:
        """Edits made inside bring a crashed session's labels back: each slice they change
        takes that session's own record of it (``record``: its "provenance" as journalled,
        so a copied prediction is still that model's and a click still "interactive"), or
        "recovered" where the journal holds no record (written before it kept one)."""
        if record is None:
            with self.source(RECOVERED):
                yield
            return
        previous, self._recovered = self._recovered, from_json(record, self.labels.array.shape[0])
        try:
            yield
        finally:
            self._recovered = previous

    def _wrap(self, name: str, source_of: Callable[..., str]) -> None:
        """Run LabelMap method ``name`` with the source ``source_of`` its arguments give."""
        method = self._wrapped[name] = getattr(self.labels, name)

        def wrapped(*args, **kwargs):
            with self.source(self._source or source_of(*args, **kwargs)):
                return method(*args, **kwargs)
        setattr(self.labels, name, wrapped)

    def _model_of(self, array: np.ndarray) -> str | None:
        return next((f"model {slot}" for slot, (prediction, _) in sorted(self._models().items())
                     if array is prediction), None)

    def of_slice(self, z: int) -> tuple[str, ...]:
        """Sources of slice ``z`` in the order they first touched it; () when untouched."""
        return self.sources.get(int(z), ())

    def latest(self) -> list[str]:
        """(Z,) the last source of each slice ("untouched" for none), for a column or a plot."""
        return [self.sources[z][-1] if z in self.sources else UNTOUCHED for z in range(self.labels.array.shape[0])]

    def to_json(self) -> dict[str, list[str]]:
        return {str(z): list(sources) for z, sources in sorted(self.sources.items())}

    # -- listening ------------------------------------------------------------------------
    def _changed(self, edit: Edit) -> None:
        applied = self._applied.get(edit.key)
        if applied is not None:  # that edit again (a redo), or taken back
            self._restore(applied.after if edit.undo == applied.undo else applied.before)
            return
        # Only the slices the edit changed: a slab copied over slices it left as they were
        # credited them to a model (a tester's "model A" on slices never copied from A).
        plane = edit.old[0].size  # the changes are already found (``Edit.changes``): their planes, not a new compare
        touched = np.zeros(len(edit.slices), bool)
        touched[np.unique(edit.changes()[0] // plane)] = True
        before = {z: self.sources.get(z, ()) for z, hit in zip(edit.slices, touched) if hit}
        after = {}
        for n, z in enumerate(edit.slices):
            if not touched[n]:
                continue
            if self._recovered is not None:
                after[z] = self._recovered.get(z, ())
                continue
            kind = self._source or HAND
            if kind == COPY:
                kind = self._model_source(edit, n) or LOADED
            source = self._named(kind)
            if self._holds_whole_prediction(kind, z):  # nothing of the slice's earlier sources is left
                after[z] = (source,)
            else:
                after[z] = before[z] if source in before[z] else before[z] + (source,)
        self._restore(after)
        self._applied[edit.key] = _Applied(edit.undo, before, after)

    def _named(self, kind: str) -> str:
        """Source ``kind`` as recorded: with the checkpoint behind it now, for a model's or the
        click model's."""
        if kind != INTERACTIVE and not kind.startswith("model "):
            return kind
        return named(kind, self._algorithms().get(kind))

    def _holds_whole_prediction(self, kind: str, z: int) -> bool:
        """Whether slice ``z`` now holds exactly the prediction of the model source ``kind``
        names ("model B"): a tester's slice copied from A, then from B, was credited to both,
        and its DICOM SEG segments named A, whose labels were all gone."""
        model = self._models().get(kind.removeprefix("model ")) if kind.startswith("model ") else None
        return model is not None and bool(model[1][z]) and np.array_equal(self.labels.array[z], model[0][z])

    def _restore(self, sources: dict[int, tuple[str, ...]]) -> None:
        for z, value in sources.items():
            if value:
                self.sources[z] = value
            else:
                self.sources.pop(z, None)

    def _model_source(self, edit: Edit, n: int) -> str | None:
        """"model A" / "model B" when plane ``n`` of the edit wrote exactly that model's
        prediction."""
        z = edit.region[0].start + n
        for slot, (prediction, predicted) in sorted(self._models().items()):
            if predicted[z] and np.array_equal(prediction[(z,) + tuple(edit.region[1:])], edit.new[n]):
                return f"model {slot}"
        return None


def from_json(saved: dict, slices: int) -> dict[int, tuple[str, ...]]:
    """The "provenance" entry of a sidecar as z -> sources (entries off the volume dropped)."""
    sources = {}
    for key, value in saved.items():
        try:
            z = int(key)
        except (TypeError, ValueError):
            continue
        if 0 <= z < slices and isinstance(value, list) and value:
            sources[z] = tuple(str(v) for v in value)
    return sources


#: Sources of a slice drawn by a person (an interpolation spans a person's slices).
BY_HAND = (HAND, INTERPOLATION)


def segment_algorithms(labels: np.ndarray, sources: dict[int, tuple[str, ...]],
                       model_names: dict[str, str]) -> dict[int, list[str]]:
    """Class value -> the algorithms its labels (Z, Y, X) came from, by the slices'
    ``sources`` (``Provenance.sources``) where it is present: the names of the models
    copied (each source's own, else ``model_names["model A"]``: a record without names), the
    click model for clicks ("click model NAME", NAME as for a model), and ``core.dicomseg.PERSON`` where a
    person corrected it (``BY_HAND``, or clicks): ``[PERSON]`` where a person drew it alone,
    no ``PERSON`` where a model's labels were copied and left as they were. A class on a
    slice of unknown origin (untouched labels of a file, "loaded", "recovered") is left
    out: nothing can be said of it. For a DICOM SEG's segment algorithm types
    (``core.dicomseg.save_dicom_seg``)."""
    values_of = [np.flatnonzero(np.bincount(plane.ravel(), minlength=256)) for plane in labels]
    found: dict[int, set[str]] = {}
    unknown: set[int] = set()
    for z, values in enumerate(values_of):
        record = sources.get(z, ())
        for value in (int(v) for v in values if v):
            names = found.setdefault(value, set())
            for source in record:
                kind, name = kind_and_name(source)
                name = name or model_names.get(kind)
                if kind == INTERACTIVE:
                    names.update((f"click model {name}" if name else "click model", PERSON))
                elif kind.startswith("model "):
                    names.add(name or kind)
                elif source in BY_HAND:
                    names.add(PERSON)
                else:
                    unknown.add(value)
            if not record:
                unknown.add(value)
    return {value: sorted(names) for value, names in found.items() if value not in unknown}
