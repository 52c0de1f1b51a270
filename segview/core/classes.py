"""Label classes: value, name and display colour, and the one default palette."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class LabelClass:
    """One class of a label volume: its value, name and display colour (RGB, 0-255)."""

    value: int
    name: str
    color: tuple[int, int, int]


#: Colours for classes that come without one (3D Slicer's first generic anatomy colours).
DEFAULT_COLORS = ((128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210),
                  (216, 101, 79), (221, 130, 101), (144, 238, 144), (192, 104, 88),
                  (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70))


#: Each model's colour (its outline over the labels, its curves, where only it is wrong):
#: magenta and cyan, hues no class colour here takes (tests/core/test_classes.py checks
#: the default palette and the phantoms' against them), so a model's outline is never
#: mistaken for a class.
MODEL_COLORS = {"A": (255, 0, 255), "B": (0, 255, 255)}

#: CIEDE2000 difference a person tells apart at a glance (2.3 is just noticeable): what
#: "distinct" means for every colour segview chooses beside others.
DISTINCT = 20.0


def color_difference(first, second) -> float:
    """CIEDE2000 difference of two (r, g, b) 0-255 colours (scikit-image)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    first_lab, second_lab = (rgb2lab(np.array(c, float)[None, None] / 255)[0, 0] for c in (first, second))
    return float(deltaE_ciede2000(first_lab, second_lab))


def first_distinct(candidates, taken):
    """The first (name, (r, g, b)) of ``candidates`` distinct (``DISTINCT``) from every colour
    of ``taken``; the last candidate where none is."""
    taken = list(taken)
    return next((c for c in candidates[:-1] if all(color_difference(c[1], other) >= DISTINCT for other in taken)),
                candidates[-1])


def rgb(values) -> tuple[int, int, int]:
    """A colour given as three numbers (a list from JSON, say) as an (r, g, b) tuple of
    ints; ValueError unless there are exactly three."""
    red, green, blue = (int(v) for v in values)
    return red, green, blue


def default_color(value: int) -> tuple[int, int, int]:
    return (0, 0, 0) if value == 0 else DEFAULT_COLORS[(value - 1) % len(DEFAULT_COLORS)]


def named_classes(names: list[str]) -> list[LabelClass]:
    """Classes 0 .. len(names) - 1 with those names and default colours (0 is black)."""
    return [LabelClass(value, name, default_color(value)) for value, name in enumerate(names)]


def generic_classes(labels: np.ndarray | None) -> list[LabelClass]:
    """Classes "label 1" .. "label N" for label values that came without a class table
    (at least one, so there is something to paint with)."""
    top = max(int(labels.max()) if labels is not None and labels.size else 0, 1)
    return [generic_class(v) for v in range(1, top + 1)]


def generic_class(value: int) -> LabelClass:
    """The class nobody named, of label ``value``: "label N" in the default colour."""
    return LabelClass(value, f"label {value}", default_color(value))


def completed_classes(classes: list[LabelClass], labels: np.ndarray) -> tuple[list[LabelClass], list[int]]:
    """``classes`` (a label file's table) with a generic class ("label N") for every value
    the ``labels`` hold that it does not name, and "label 1" when it names no class but
    background: a value without a class would be shown, measured and chosen by nobody.
    Returns (the table, the values added); an empty table stays empty (the session then
    takes a model's names, else generic ones)."""
    if not classes:
        return [], []
    named = {c.value for c in classes}
    missing = sorted(_unnamed_values(labels, named) | ({1} if named <= {0} else set()))
    return sorted(classes + [generic_class(v) for v in missing], key=lambda c: c.value), missing


def _unnamed_values(labels: np.ndarray, named: set[int]) -> set[int]:
    """The foreground values ``labels`` hold that ``named`` lacks. A table that names every
    value up to the labels' largest lacks none, which their maximum alone tells: a count of
    every value of a 300 x 512 x 512 CT's labels took a second of each worklist case's open."""
    if not labels.size or all(v in named for v in range(1, int(labels.max()) + 1)):
        return set()
    return {int(v) for v in np.flatnonzero(np.bincount(labels.ravel())) if v and v not in named}


def is_placeholder(label_class: LabelClass) -> bool:
    """Whether ``label_class`` bears the name ``generic_classes`` gives a class nobody named
    ("label 3" for value 3): a model's name for its value may take its place."""
    return label_class.name == f"label {label_class.value}"


def naming_conflict(theirs: Iterable[LabelClass], table: Iterable[LabelClass], owner: str) -> str | None:
    """Why a model with classes ``theirs`` does not fit ``table`` (whose ``owner``, e.g. "the
    labels", names it in the message): a foreground value the two name otherwise, whose
    voxels would be scored under another class's column. Placeholder names ("label 3") never
    conflict. None when every shared value has the same name."""
    names = {c.value: c.name for c in theirs if c.value}
    for c in table:
        name = names.get(c.value)
        if c.value and not is_placeholder(c) and name is not None and name.strip().lower() != c.name.strip().lower():
            return (f"its class {c.value} is \u201c{name}\u201d where {owner} have \u201c{c.name}\u201d: "
                    "it was trained for other classes")
    return None


def merged_classes(*tables: Iterable[LabelClass]) -> list[LabelClass]:
    """One class per value, in order: every class of the first table, then those of the next
    tables whose values the earlier ones lack. Where two tables name the same value (a
    case's class file and a checkpoint's), the first one's name and colour win, so a class
    is drawn and listed in one colour only."""
    merged: dict[int, LabelClass] = {}
    for table in tables:
        for c in table:
            merged.setdefault(c.value, c)
    return list(merged.values())


def class_name(classes: list[LabelClass], value: int) -> str:
    return next((c.name for c in classes if c.value == value), "background" if value == 0 else str(value))
