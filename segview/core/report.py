"""What reports share: the one formatter of numbers where a score may be missing (NaN:
nothing to score) or infinite (a class in only one of two masks), and atomic CSV tables.
Every table, Markdown report and panel writes its numbers through ``number_text``."""
from __future__ import annotations

import csv
import math

import numpy as np

from .files import replace_atomically

DASH = "\u2013"


def number_text(value: float | None, digits: int = 3, *, missing: str = DASH, infinite: str = "\u221e",
                signed: bool = False, unit: str = "", small: bool = False) -> str:
    """``value`` with ``digits`` decimals (and ``unit``); ``missing`` for None or NaN;
    ``infinite`` for +-inf, or ``missing`` when ``signed`` (a difference with an infinite
    side has no value); a sign always with ``signed``, but none on what rounds to zero
    (never "-0.0000"). ``small``: a value other than zero that rounds to zero keeps one
    significant digit (a volume of one voxel, 0.002 mL, is not an empty class's 0.0)."""
    if value is None or math.isnan(value):
        return missing
    if math.isinf(value):
        return missing if signed else ("-" if value < 0 else "") + infinite
    if round(value, digits) == 0 and small and value != 0:
        digits = -math.floor(math.log10(abs(value)))
    if round(value, digits) == 0:
        return f"{0:.{digits}f}{unit}"
    return f"{value:{'+' if signed else ''}.{digits}f}{unit}"


def csv_cell(value: float | None) -> str:
    """A score in a CSV cell: empty where there is nothing to score, "inf" where infinite;
    a count (an int, e.g. clicks) as the whole number it is."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return number_text(value, 6, missing="", infinite="inf")


def write_csv(path, columns, rows: list[dict]) -> None:
    """Rows (dicts) under a header of ``columns``, written atomically."""
    def write(temporary):
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, columns)
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """"1 case", "2 cases": ``count`` with ``noun`` in the number it takes."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def finite_or_none(value):
    """``value`` with every NaN or infinity (no score) as None, for strict JSON."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
