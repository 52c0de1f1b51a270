"""Comparing A and B: disagreement categories, slice ranking, adopting a region, the
paired difference and the report."""
import csv
import itertools
import math

import numpy as np
import pytest
from scipy.stats import rankdata, wilcoxon

from segview.core.compare import (BOTH_WRONG, EXACT_PAIRS, ONLY_A_WRONG, ONLY_B_WRONG, UNREVIEWED_DISAGREE,
                                  disagreement, paired_difference, rank_slices, signed_rank_p, small_sample_note,
                                  write_report)
from segview.core.io import LabelClass
from segview.core.labels import LabelMap
from segview.core.live import LiveMetrics


def test_disagreement_categories_on_a_hand_made_slice():
    labels = np.array([[0, 1, 1, 2]])
    a = np.array([[0, 1, 2, 0]])
    b = np.array([[1, 1, 2, 2]])
    # voxel 0: only B wrong; 1: both right; 2: both wrong; 3: only A wrong
    np.testing.assert_array_equal(disagreement(a, b, labels, reviewed=True),
                                  [[ONLY_B_WRONG, 0, BOTH_WRONG, ONLY_A_WRONG]])
    # Unreviewed: the labels may be a model's copy; only where A and B differ counts.
    np.testing.assert_array_equal(disagreement(a, b, labels, reviewed=False),
                                  [[UNREVIEWED_DISAGREE, 0, 0, UNREVIEWED_DISAGREE]])


def comparison():
    labels = LabelMap(np.zeros((4, 10, 10), np.uint8), (1, 1, 1))
    labels.array[:, 2:8, 2:8] = 1
    a, b = labels.array.copy(), labels.array.copy()
    a[1, 2:8, 2:5] = 0        # A misses half of slice 1: Dice 2*18/(36+18) = 2/3
    b[2, 2:8, 2:4] = 0        # B misses a third of slice 2: Dice 2*24/(36+24) = 0.8
    b[3, 0, 0] = 1            # one stray voxel of B on slice 3: Dice 2*36/73
    live = LiveMetrics(labels, 2)
    live.add_model("A", a)
    live.add_model("B", b)
    return labels, live


def test_slices_ranked_by_dispute_and_by_the_worse_model():
    _, live = comparison()
    assert [(r.z, r.disputed) for r in rank_slices(live, by="disputed")] == [(1, 18), (2, 12), (3, 1)]
    worst = rank_slices(live, by="worst")
    assert [r.z for r in worst] == [1, 2, 3, 0]
    assert worst[0].worst == pytest.approx(2 / 3) and worst[-1].worst == 1.0
    with pytest.raises(ValueError, match="unknown ranking"):
        rank_slices(live, by="best")


def test_adopting_a_region_copies_one_models_labelling_of_it_as_one_step():
    labels, live = comparison()
    a, b = live.predictions["A"], live.predictions["B"]
    labels.array[1] = 0  # the labels here are empty; B labelled the square, A half of it
    assert labels.adopt(1, (4, 3), b, a) is not None  # clicked where A missed: B's square, whole
    np.testing.assert_array_equal(labels.array[1], b[1])
    assert labels.adopt(1, (0, 0), b, a) is None  # A and B agree there: nothing to adopt
    labels.undo()
    assert labels.array[1].sum() == 0


def test_adopting_a_blob_around_the_other_models_dot_takes_it_whole():
    """B's blob around A's dot on empty labels: the dot, where both agree against the
    labels, is part of B's region (it stayed background: a ring)."""
    yy, xx = np.mgrid[:20, :20]
    b = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 25).astype(np.uint8)[None]
    a = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 2).astype(np.uint8)[None]
    labels = LabelMap(np.zeros((1, 20, 20), np.uint8), (1.0, 1.0, 1.0))
    labels.array[0, 0, 0] = 1  # a label of the person's, elsewhere: it stays
    assert labels.adopt(0, (10, 14), b, a) is not None
    expected = b[0].copy()
    expected[0, 0] = 1
    np.testing.assert_array_equal(labels.array[0], expected)
    labels.array[0] = a[0]  # labels equal to A: only where A and B differ changes, as before
    labels.adopt(0, (10, 14), b, a)
    np.testing.assert_array_equal(labels.array[0], b[0])


def test_paired_difference_matches_scipy_and_counts_by_hand():
    a = [0.8, 0.7, 0.9, math.nan, 0.6, 0.75]
    b = [0.85, 0.72, 0.88, 0.9, 0.7, 0.8]
    result = paired_difference(a, b)
    diffs = np.array([0.05, 0.02, -0.02, 0.1, 0.05])
    assert result["pairs"] == 5 and result["b_better"] == 4 and result["a_better"] == 1
    assert result["mean_difference"] == pytest.approx(diffs.mean())
    assert result["std_difference"] == pytest.approx(diffs.std(ddof=1))
    assert result["p_value"] == pytest.approx(wilcoxon(diffs).pvalue)
    assert math.isnan(paired_difference([0.5], [0.5])["p_value"])
    # 5 differing pairs: the smallest two-sided p there is is 0.0625, so no verdict; 6 can reach 0.031.
    assert not result["supports_verdict"] and paired_difference([*a, 0.5], [*b, 0.6])["supports_verdict"]
    low, high = result["ci95"]
    assert low < diffs.mean() < high
    lower = paired_difference(a, b, lower_is_better=True)  # e.g. clicks: B's higher values are worse
    assert (lower["b_better"], lower["a_better"]) == (1, 4) and lower["p_value"] == result["p_value"]


def test_ties_follow_scipy_and_do_not_count_towards_a_verdict():
    """A tester: n = 2 with one tie gave no p (scipy: 1); A against itself 'supported a verdict'."""
    tied = paired_difference([0.5, 0.6], [0.5, 0.7])
    assert tied["differing"] == 1 and tied["p_value"] == pytest.approx(wilcoxon([0.0, 0.1]).pvalue) == 1.0
    same = paired_difference([0.5, 0.6, 0.7, 0.8, 0.9, 0.4], [0.5, 0.6, 0.7, 0.8, 0.9, 0.4])
    assert same["differing"] == 0 and same["p_value"] == 1.0 and not same["supports_verdict"]
    assert small_sample_note(6, differing=0) == "A and B score the same on all 6 paired cases: there is no " \
        "difference to test."
    a, b = [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3], [0.55, 0.65, 0.75, 0.85, 0.9, 0.4, 0.3]  # 4 of 7 differ
    four = paired_difference(a, b)
    assert four["pairs"] == 7 and four["differing"] == 4 and not four["supports_verdict"]
    assert four["p_value"] == pytest.approx(wilcoxon(np.subtract(b, a)).pvalue)
    note = small_sample_note(7, differing=4)
    assert note.startswith("Only 4 of the 7 paired cases differ (the test leaves out ties)") and "0.125" in note
    one = small_sample_note(4, differing=1)
    assert one.startswith("Only 1 of the 4 paired cases differs (the test leaves out ties)")
    assert "p-value 1 pair can give is 1," in one


def _sign_flip_p(differences) -> float:
    """The two-sided signed-rank p by enumerating every sign flip of the ranks (mean ranks
    for ties, zeros left out): the exact permutation test, by brute force."""
    values = np.asarray(differences, float)
    values = values[values != 0]
    ranks = rankdata(np.abs(values))
    observed = ranks[values > 0].sum()
    sums = np.array([np.dot(signs, ranks) for signs in itertools.product((0, 1), repeat=values.size)])
    return min(1.0, 2 * min((sums <= observed + 1e-9).mean(), (sums >= observed - 1e-9).mean()))


def test_the_signed_rank_p_is_exact_with_tied_whole_numbers_as_clicks_are():
    """A tester: clicks per case tie; scipy's default then gave a permutation p for n <= 13
    and the normal approximation beyond, while the report said exact."""
    clicks = [-3, -14, -1, 2, 2, 1, 2]
    assert signed_rank_p(clicks) == pytest.approx(_sign_flip_p(clicks)) == pytest.approx(0.953125)
    tied = np.random.default_rng(3).integers(-4, 6, 15)  # zeros and ties, beyond scipy's 13
    assert signed_rank_p(tied) == pytest.approx(_sign_flip_p(tied))
    untied = np.random.default_rng(4).normal(size=11)
    assert signed_rank_p(untied) == pytest.approx(wilcoxon(untied, method="exact").pvalue)
    assert signed_rank_p([0.0, 0.0]) == 1.0
    many = np.random.default_rng(5).integers(-5, 8, EXACT_PAIRS + 50).astype(float)  # the normal approximation
    assert signed_rank_p(many) == pytest.approx(wilcoxon(many, method="approx").pvalue, rel=1e-9)


def test_one_pair_has_no_spread_and_no_interval():
    one = paired_difference([0.8], [0.9])
    assert one["pairs"] == 1 and one["mean_difference"] == pytest.approx(0.1)
    assert math.isnan(one["std_difference"]) and all(math.isnan(v) for v in one["ci95"])
    assert math.isnan(one["p_value"]) and not one["supports_verdict"]


def test_the_report_has_the_table_the_slices_the_classes_and_the_plot(tmp_path):
    labels, live = comparison()
    for z in (1, 2, 3):
        labels.set_reviewed(z)
    paths = write_report(tmp_path, live, [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "lesion", (255, 0, 0))],
                         {"A": "ce", "B": "ce+dice"})
    assert [p.name for p in paths] == ["comparison.md", "slices.csv", "classes.csv", "dice_along_slices.png"]
    markdown = paths[0].read_text()
    # Over reviewed slices 1-3: A misses 18 of 108, B misses 12 and adds 1.
    dice_a, dice_b = 2 * 90 / (108 + 90), 2 * 96 / (108 + 97)
    assert "reviewed on 3 of 4 slices" in markdown
    assert f"| A | ce | {dice_a:.3f} |" in markdown and f"| B | ce+dice | {dice_b:.3f} |" in markdown
    assert "Dice B - A" in markdown and "n = 3 slices" in markdown
    assert "Only 3 paired slices: the test and the interval cannot support a verdict" in markdown
    slices = list(csv.DictReader(open(paths[1])))
    assert [row["reviewed"] for row in slices] == ["False", "True", "True", "True"]
    assert float(slices[1]["dice_a"]) == pytest.approx(2 / 3) and float(slices[2]["dice_b"]) == pytest.approx(0.8)
    assert slices[1]["voxels_a_differs_from_b"] == "18"
    classes = list(csv.DictReader(open(paths[2])))
    assert classes[0]["class"] == "lesion" and float(classes[0]["dice_a"]) == pytest.approx(dice_a)
    assert paths[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_gives_volumes_and_boundaries_over_the_reviewed_slices():
    from medpy.metric import binary as medpy_binary
    from surface_distance import metrics as deepmind

    from segview.core.compare import boundary_markdown

    labels, live = comparison()  # 1 mm voxels: 1000 voxels to the mL
    lesion = [LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "lesion", (255, 0, 0))]
    labels.set_reviewed(1)
    partial = boundary_markdown(live, lesion)
    # Over slice 1 alone: 36 labelled voxels, A has 18, B 36. A run of one slice inside
    # the image, its faces cut at slices 0 and 2 no surface: its 2D contours are scored.
    a1, ref1 = live.predictions["A"][1] == 1, labels.array[1] == 1
    hd95_a = medpy_binary.hd95(a1, ref1, (1, 1))
    nsd_a = deepmind.compute_surface_dice_at_tolerance(deepmind.compute_surface_distances(ref1, a1, (1, 1)), 2.0)
    assert hd95_a > 0 and nsd_a < 1
    assert (f"| lesion | 0.04 | 0.02 | 0.04 | -0.02 | +0.00 | {hd95_a:.2f} | 0.00 | {nsd_a:.3f} | 1.000 |"
            in partial)
    assert "over the 1 of 4 slices reviewed and predicted by both models, in 1 run" in partial
    for z in (0, 2, 3):
        labels.set_reviewed(z)
    complete = boundary_markdown(live, lesion)
    a, b, ref = live.predictions["A"] == 1, live.predictions["B"] == 1, labels.array == 1
    hd95 = [medpy_binary.hd95(p, ref, (1, 1, 1)) for p in (a, b)]
    nsd = [deepmind.compute_surface_dice_at_tolerance(deepmind.compute_surface_distances(ref, p, (1, 1, 1)), 2.0)
           for p in (a, b)]
    row = (f"| lesion | 0.14 | 0.13 | 0.13 | -0.02 | -0.01 | {hd95[0]:.2f} | {hd95[1]:.2f} | "
           f"{nsd[0]:.3f} | {nsd[1]:.3f} |")  # 144, 126 and 133 voxels
    assert row in complete and "the whole volume" in complete


def test_numbers_that_round_to_zero_carry_no_sign():
    """A tester's B - A pixel error read "-0.0000"."""
    from segview.core.report import number_text

    assert number_text(-0.00001, 4, signed=True) == number_text(0.00001, 4, signed=True) == "0.0000"
    assert number_text(-0.0, 3) == "0.000" and number_text(-0.0012, 4, signed=True) == "-0.0012"
    assert number_text(0.5, 2, signed=True) == "+0.50"


def test_a_small_volume_keeps_a_significant_digit_and_an_empty_one_reads_zero():
    """A tester's one-voxel class (0.00192 mL) read 0.0 mL, as an empty class does."""
    from segview.core.report import number_text

    assert number_text(0.00192, 1, small=True) == "0.002" and number_text(0.0, 1, small=True) == "0.0"
    assert number_text(-0.00192, 1, signed=True, small=True) == "-0.002"
    assert number_text(0.04, 1, small=True) == "0.04" and number_text(12.34, 1, small=True) == "12.3"
