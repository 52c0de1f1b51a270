"""The review state saved beside a label file: which slices a person checked, by whom, when.

Sidecar ``<labels name>.review.json`` (``<name>`` without .nii.gz / .nrrd / .mha):

    {
      "format": "segview-review-state", "version": 1,
      "image_key": "<digest of the image's voxels and grid (core.journal.image_key)>",
      "image": {"voxels": "<digest of its voxel values alone>", "size": [..], "spacing": [..],
                "origin": [..], "direction": [..]},  # core.journal.image_fingerprint: the same image
                                         # re-saved by another tool (its image_key changed)
      "labels": "case.nii.gz",           # the label file it was saved with
      "slices": Z,                       # number of z planes of the label volume
      "reviewed": [                      # one entry per reviewed slice
        {"z": 12, "slice": 13, "by": "jdoe", "at": "2026-11-21T15:30:02+00:00"}
      ]
    }

``z`` is the 0-based array index, ``slice`` the 1-based number the window shows. Keys
this version does not know are kept when the file is written again (``ReviewState.extra``).
A sidecar that belongs to another image (its ``image_key`` differs and its ``image`` is not
this one's voxels on this grid, or its slice count differs) is not applied: its review marks
would lie about these slices. Label files of one name in several formats (``case.nii.gz``,
``case.nrrd``) share ``case.review.json`` until it records the other's review: then each
keeps its own (``review_path``).

Keys a dataset worklist (``segview.session.worklist``) adds, all optional:

    "case": {"status": "new" | "in progress" | "done" | "flagged", "note": "...",
             "by": "jdoe", "at": "..."},            # who set the status, when
    "provenance": {"12": ["model B", "hand"]},      # z -> where its labels came from, in order
                                                    # ("model A", "model B", "hand",
                                                    # "interpolation", "interactive": the
                                                    # click model's corrections, "loaded":
                                                    # a label file or recovered edits);
                                                    # a slice not listed is untouched
    "models": {"A": {"checkpoint": "cardiac_ce", "digest": "<blake2b of the file>",
                     "dice": 0.91,                  # mean foreground Dice, reviewed slices
                     "scored_slices": 7,            # reviewed slices it had predicted
                     "correction_voxels": 1234,     # voxels where its prediction differs
                     "correction_ml": 2.31}}        # from the saved labels on those slices

A worklist may write a status-only sidecar (no ``slices``, no ``image_key``, no reviewed
slice) for a case never opened: it applies to any image. ``read_sidecar`` and
``update_sidecar`` read and merge these keys without loading the image.
"""
from __future__ import annotations

import getpass
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .errors import VolumeLoadError
from .files import LABEL_EXTENSIONS, atomic_write_text, extension
from .journal import same_image
from .volume import grid_differences

FORMAT = "segview-review-state"
VERSION = 1


@dataclass
class ReviewState:
    """(Z,) ``reviewed`` slices with who marked each and when (``marks``: z -> {"by", "at"})."""
    reviewed: np.ndarray
    marks: dict[int, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # keys of later versions, kept as they are

    @classmethod
    def empty(cls, slices: int) -> ReviewState:
        return cls(np.zeros(slices, bool))

    def to_json(self, image_key: str, labels_name: str | None = None, fingerprint: dict | None = None) -> str:
        entries = [{"z": int(z), "slice": int(z) + 1, **self.marks.get(int(z), {})}
                   for z in np.flatnonzero(self.reviewed)]
        document = dict(self.extra, format=FORMAT, version=VERSION, image_key=image_key,
                        **({"image": fingerprint} if fingerprint else {}),
                        **({"labels": labels_name} if labels_name else {}),
                        slices=len(self.reviewed), reviewed=entries)
        return json.dumps(document, indent=1)


def review_path(labels_path) -> Path:
    """The sidecar of the label file ``labels_path``: ``<stem>.review.json``, which the
    formats of one name share (lung.labels.nii.gz, lung.labels.nrrd), unless that one
    records the review of another of them still beside it: then this file's own
    ``<name>.review.json`` (a tester's save of the .nii.gz wrote over the review of the
    .nrrd saved beside it, and its marks were gone)."""
    path = Path(labels_path)
    own = path.with_name(path.name + ".review.json")
    stem = path.name[: -len(extension(path))] if extension(path) else path.name
    shared = path.with_name(stem + ".review.json")
    if own.exists():
        return own
    others = [path.with_name(stem + e) for e in LABEL_EXTENSIONS if e != extension(path)]
    if not any(other.exists() for other in others):  # one format of this name: no stat more, no read
        return shared
    try:
        owner = json.loads(shared.read_text(encoding="utf-8")).get("labels")
    except (OSError, ValueError, AttributeError):
        return shared
    return own if isinstance(owner, str) and owner != path.name and (path.parent / owner).exists() else shared


def flagged_reason(note: str | None) -> str:
    """Why a case the worklist flagged is left out, as every report and printout says it:
    "flagged in the worklist: motion on slice 6"."""
    return f"flagged in the worklist: {note}" if note else "flagged in the worklist"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment or the password database
        return "unknown"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def save_review_state(labels_path, state: ReviewState, image_key: str, fingerprint: dict | None = None) -> Path:
    """Write the sidecar of ``labels_path`` atomically (``fingerprint``: the image's
    ``core.journal.image_fingerprint``). Raises OSError when it cannot."""
    return atomic_write_text(review_path(labels_path),
                             state.to_json(image_key, Path(labels_path).name, fingerprint))


def names_image(document: dict, image_key: str, volume=None) -> bool:
    """Whether the sidecar ``document`` may be applied to the image with ``image_key``
    (``volume``): it names that key, or none (a status-only sidecar), or its fingerprint is
    that image's (the image re-saved by another tool since)."""
    if document.get("image_key") in (None, image_key):
        return True
    fingerprint = document.get("image")
    if volume is None or not isinstance(fingerprint, dict):
        return False
    return same_image(fingerprint, volume) or _on_earlier_grid(fingerprint, volume)


def _on_earlier_grid(fingerprint: dict, volume) -> bool:
    """Whether ``fingerprint``'s grid is the one an earlier segview resampled this uneven
    series onto (``core.io.slices_on_earlier_grid``): its voxels were those of that grid."""
    earlier = volume.meta.get("earlier_grid")
    try:
        return bool(earlier) and not grid_differences(fingerprint, earlier)
    except (KeyError, TypeError, ValueError):  # not a fingerprint
        return False


def load_review_state(labels_path, slices: int, image_key: str, volume=None,
                      taken_from: np.ndarray | None = None) -> tuple[ReviewState, str | None]:
    """The review state saved with ``labels_path`` (empty when there is none) and a warning
    when a sidecar was there but could not be applied (``volume``: the image, to know it
    re-saved by another tool; see ``names_image``). ``taken_from``: for labels saved on an
    earlier grid of ``volume`` (``core.io.slices_on_earlier_grid``), the earlier slice each
    slice took its labels from; the marks follow them (``_carried``). Raises VolumeLoadError
    for a sidecar that is not one."""
    if taken_from is not None:
        state, warning = load_review_state(labels_path, int(volume.meta["earlier_grid"]["size"][2]),
                                           image_key, volume)
        return _carried(state, taken_from, volume.meta["earlier_grid"]["spacing"][2] / volume.spacing[2]), warning
    path = review_path(labels_path)
    if not path.exists():
        return ReviewState.empty(slices), None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError("not a segview review state")
        entries = document["reviewed"]
        extra = {k: v for k, v in document.items()
                 if k not in ("format", "version", "image_key", "image", "slices", "reviewed", "labels")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VolumeLoadError(f"The review state {path.name} could not be read ({exc}).") from exc
    if document.get("slices", slices) != slices or not names_image(document, image_key, volume):
        return ReviewState.empty(slices), (f"{path.name} records the review of another image; "
                                           "no slice is marked reviewed.")
    state = ReviewState(np.zeros(slices, bool), extra=extra)
    for entry in entries:
        z = int(entry["z"])
        if 0 <= z < slices:
            state.reviewed[z] = True
            state.marks[z] = {k: entry[k] for k in ("by", "at") if k in entry}
    return state, None


def _carried(state: ReviewState, taken_from: np.ndarray, scale: float) -> ReviewState:
    """``state``, saved on an earlier grid, on slices that each took the labels of earlier slice
    ``taken_from[z]``: a slice is reviewed only when that one was, and keeps its marks and
    provenance; rulers' slice coordinates are multiplied by ``scale`` (earlier gap / gap), an
    axial one put on the nearest slice."""
    reviewed = state.reviewed[taken_from]
    marks = {z: state.marks[int(taken_from[z])] for z in map(int, np.flatnonzero(reviewed))
             if int(taken_from[z]) in state.marks}
    extra = dict(state.extra)
    if isinstance(extra.get("provenance"), dict):
        extra["provenance"] = {str(z): extra["provenance"][str(k)] for z, k in enumerate(taken_from)
                               if str(k) in extra["provenance"]}
    if isinstance(extra.get("rulers"), list):
        extra["rulers"] = [_ruler_carried(r, scale) for r in extra["rulers"]]
    return ReviewState(reviewed, marks, extra)


def _ruler_carried(ruler, scale: float):
    """A ruler's entry (``session.rulers``) with its z coordinates scaled; one it cannot read as it is."""
    try:
        a, b = [float(ruler["a"][0]) * scale, *ruler["a"][1:]], [float(ruler["b"][0]) * scale, *ruler["b"][1:]]
        if ruler["axis"] == 0:
            a[0] = b[0] = round(a[0])
            return {**ruler, "index": round(a[0]), "a": a, "b": b}
        return {**ruler, "a": a, "b": b}
    except (KeyError, TypeError, ValueError, IndexError):
        return ruler


def read_sidecar(labels_path) -> dict | None:
    """The sidecar of ``labels_path`` as saved (a dict), without the image; None when there
    is none or it is not a segview review state (the worklist then shows the case as new)."""
    try:
        document = json.loads(review_path(labels_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("format") == FORMAT else None


def update_sidecar(labels_path, **keys) -> Path:
    """Merge ``keys`` (e.g. ``case={...}``) into the sidecar of ``labels_path``, keeping all
    else; a status-only sidecar is made when there is none. Atomic. Raises OSError."""
    document = read_sidecar(labels_path) or {"reviewed": []}
    document.update(keys, format=FORMAT, version=VERSION)
    return atomic_write_text(review_path(labels_path), json.dumps(document, indent=1))
