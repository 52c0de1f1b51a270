"""Summaries, tables and results.csv of `segview evaluate` with boundary metrics, from
cases whose distances are known by hand (single voxels a known number of mm apart)."""
import csv
import math

import numpy as np
import pytest

from segview.core.metrics import ConfusionMatrix, surface_scores
from segview.ml.evaluate import (CaseResult, paired_comparison, per_class_markdown, summary, table1_markdown,
                                 write_case_csv)

SPACING = (2.0, 1.0, 1.0)  # x, y, z mm


def _case(name: str, columns_apart: int | None) -> CaseResult:
    """One voxel of class 1 in the labels; in the prediction the same voxel moved
    ``columns_apart`` columns along x (2 mm each), or missing (None)."""
    ref = np.zeros((3, 4, 8), np.uint8)
    ref[1, 2, 1] = 1
    pred = np.zeros_like(ref)
    if columns_apart is not None:
        pred[1, 2, 1 + columns_apart] = 1
    result = CaseResult(name, ConfusionMatrix.from_arrays(pred, ref, 2).scores(),
                        surface_scores(pred, ref, 2, SPACING, tolerance_mm=2.0))
    result.measures = {"reference_volume_lesion_ml": 0.002}
    return result


def test_missed_cases_are_counted_beside_the_hd95_mean_not_in_it():
    results = [_case("a", 3), _case("b", 2), _case("c", None)]  # 6 mm, 4 mm, missed
    table = summary(results)
    assert table["hd95"] == {"mean": pytest.approx(5.0), "std": pytest.approx(math.sqrt(2)), "missed": 1,
                             "unscored": 0, "cases": 3}
    # Surfels sit on the voxel corners, half a voxel (1 mm) either side of the centre: at 4 mm
    # apart, the facing four of each voxel's eight equal corner surfels are 2 mm apart, within
    # the tolerance (0.5); at 6 mm none is; a missed class scores 0 and is not "missed".
    assert table["surface_dice"] == {"mean": pytest.approx(0.5 / 3), "std": pytest.approx(np.std([0, 0.5, 0], ddof=1)),
                                     "missed": 0, "unscored": 0, "cases": 3}
    assert table["hd95_per_class"][1] == pytest.approx(5.0) and math.isnan(table["hd95_per_class"][0])
    markdown = table1_markdown([("CE", {"lung": table})])
    assert "| lung hd95 (mm) | lung surface dice |" in markdown
    assert "| 5.00 ± 1.41 (1 missed or invented) |" in markdown
    per_class = per_class_markdown([("CE", {"lung": table})], {"lung": ["background", "lesion"]})
    assert "| CE | lung | lesion | 0.0000 | 5.00 | 0.1667 |" in per_class


def test_a_case_without_a_score_is_named_in_the_table1_cell():
    """A tester's Table 1 averaged A over 3 cases and B over 2 without saying so."""
    empty = CaseResult("d", ConfusionMatrix.from_arrays(np.zeros((2, 4, 4), np.uint8),
                                                        np.zeros((2, 4, 4), np.uint8), 2).scores(), None)
    table = summary([_case("a", 3), _case("b", 2), empty])
    assert math.isnan(empty.metric("dice")) and table["dice"]["unscored"] == 1
    assert "(2 of 3 scored)" in table1_markdown([("CE", {"lung": table})])
    one = summary([_case("a", 3)])
    assert math.isnan(one["dice"]["std"]) and "0.0000 ± \u2013 |" in table1_markdown([("CE", {"lung": one})])


def test_the_paired_comparison_names_the_cases_it_leaves_out():
    """A tester's comparison read "over n = 11 cases" on a folder of 12, naming none: the
    case where one model had no Dice (nothing in its labels, nothing predicted) was dropped."""
    empty = CaseResult("d", ConfusionMatrix.from_arrays(np.zeros((2, 4, 4), np.uint8),
                                                        np.zeros((2, 4, 4), np.uint8), 2).scores(), None)
    a = [_case("a", 3), _case("b", 2), _case("c", 0), empty]
    b = [_case("a", 0), _case("b", 0), _case("c", 1), _case("d", 0), _case("e", 0)]
    comparison = paired_comparison(a, b)
    assert comparison["cases"] == 3 and comparison["left_out"] == ["d", "e"]
    assert paired_comparison(a[:3], b[:3])["left_out"] == []


def test_results_csv_keeps_each_data_sets_classes_in_their_own_columns(tmp_path):
    results = {"CE [one]": [_case("a", 3)], "CE [two]": [_case("b", None)]}
    names = {"CE [one]": ["background", "lesion"], "CE [two]": ["background", "nodule"]}
    rows = list(csv.DictReader(open(write_case_csv(tmp_path / "results.csv", results, names))))
    assert float(rows[0]["hd95_lesion"]) == pytest.approx(6.0) and rows[0]["hd95_nodule"] == ""
    assert rows[1]["hd95_nodule"] == "inf" and rows[1]["surface_dice_nodule"] == "0.000000"
    assert float(rows[0]["assd_lesion"]) == pytest.approx(6.0)
    assert rows[0]["surface_dice_tolerance_mm"] == "2.000000"
    assert rows[0]["reference_volume_lesion_ml"] == "0.002000"


def test_without_boundary_metrics_the_summary_has_none():
    # Training's validation scores Dice only: no HD95 entry rather than a NaN one.
    result = _case("a", 3)
    result.surface = None
    table = summary([result])
    assert "hd95" not in table and "surface_dice" not in table and "hd95_per_class" not in table
    assert "| – | – |" in table1_markdown([("CE", {"lung": table})])
