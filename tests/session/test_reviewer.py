"""The simulated reviewer (session.reviewer): click points against an independent distance
transform, NoC counted by hand on scripted masks, the brush worked by hand, the random
walker on a clean image, and evaluate --robot on a tiny dataset."""
import csv
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from segview.cli import main
from segview.core.classes import named_classes
from segview.core.review_state import ReviewState, save_review_state
from segview.core.journal import image_key
from segview.core.io import load_labels, load_volume
from segview.ml.checkpoint import classes_to_metadata, save_checkpoint
from segview.ml.inference import Predictor
from segview.ml.interactive import PREPROCESSING
from segview.ml.unet import UNet
from segview.session.reviewer import (MAX_CLICKS, Trace, brush_corrector, click_corrector, objects, review_case,
                                      review_object, summarize)

from .conftest import make_dataset

SHAPE = (40, 40)


def square(top, left, side, shape=SHAPE):
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def disk(centre, radius, shape=SHAPE, spacing_yx=(1.0, 1.0)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return ((yy - centre[0]) * spacing_yx[0]) ** 2 + ((xx - centre[1]) * spacing_yx[1]) ** 2 <= radius ** 2


class ScriptedModel:
    """A stub of ClickModel: ``refine`` hands back the next of ``masks`` (whole slice as
    the box, or ``box``) and records the clicks it was given."""

    def __init__(self, masks, box=None):
        self.masks, self.box, self.calls = list(masks), box, []

    def refine(self, volume, z, mask, clicks, pixel_size=None):
        self.calls.append(list(clicks))
        box = self.box or (slice(0, mask.shape[0]), slice(0, mask.shape[1]))
        return box, self.masks[len(self.calls) - 1][box]


def run(model, start, reference):
    volume = np.zeros((1, *start.shape), np.int16)
    dice, clicks, _ = review_object(click_corrector(model, volume)(0), start, reference)
    return Trace("case", 0, 1, "start", dice, clicks)


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


# -- click points --------------------------------------------------------------------------

def _expected_click_region(mask, reference):
    """Independently: the largest 4-connected error component and its distance to the
    nearest pixel outside it (the image's edge outside too)."""
    best = None
    for positive, error in ((True, reference & ~mask), (False, mask & ~reference)):
        components, count = ndimage.label(error)
        for n in range(1, count + 1):
            size = int((components == n).sum())
            if best is None or size > best[0]:
                best = (size, positive, components == n)
    _, positive, region = best
    distance = ndimage.distance_transform_edt(np.pad(region, 1, constant_values=False))[1:-1, 1:-1]
    return positive, region, distance


@pytest.mark.parametrize("start, reference", [
    (np.zeros(SHAPE, bool), disk((20, 12), 6)),                                   # empty start
    (square(5, 5, 20), square(5, 5, 12)),                                         # too much
    (disk((20, 20), 12) & ~square(10, 22, 14), disk((20, 20), 12)),              # a bite missing
    (square(0, 0, 30) | square(32, 32, 6), square(3, 3, 30)),                    # both, at the edge
])
def test_every_click_is_at_the_farthest_point_of_the_largest_error(start, reference):
    masks = [start | reference, (start & reference) | square(30, 30, 4), reference]
    model = ScriptedModel(masks)
    trace = run(model, start, reference)
    shown = [start] + masks
    assert trace.clicks, "the start is below the goal, so there is a click"
    for k, click in enumerate(trace.clicks):
        positive, region, distance = _expected_click_region(shown[k], reference)
        assert click.positive == positive
        assert region[click.y, click.x]
        assert distance[click.y, click.x] == distance.max()
        assert model.calls[k] == trace.clicks[:k + 1]   # every click of the interaction, in order


# -- NoC counted by hand ------------------------------------------------------------------

REFERENCE = square(5, 5, 20)                   # 400 voxels
A100, A256, A324, A361 = (square(5, 5, s) for s in (10, 16, 18, 19))   # inside it: Dice 2A / (A + 400)


def test_noc_dice_after_clicks_and_lowering_by_hand():
    # Dice: 0 -> 0.4 -> 0.780 -> 0.4 (lower) -> 0.895 (>= 0.85) -> 0.949 (>= 0.90, stop)
    model = ScriptedModel([A100, A256, A100, A324, A361, REFERENCE])
    trace = run(model, np.zeros(SHAPE, bool), REFERENCE)
    assert trace.dice == pytest.approx([0, 200 / 500, 512 / 656, 200 / 500, 648 / 724, 722 / 761])
    assert len(model.calls) == 5                       # stops at the goal: the sixth mask unused
    assert (trace.noc(0.85), trace.noc(0.90)) == (4, 5)
    assert trace.dice_after(1) == pytest.approx(0.4)
    assert trace.dice_after(3) == pytest.approx(0.4)
    assert trace.dice_after(5) == pytest.approx(722 / 761)
    assert trace.dice_after(9) == pytest.approx(722 / 761)   # stopped: the last Dice stays
    assert trace.lowering == 1


def test_never_reaching_counts_the_cap_and_the_mean_follows_ritm():
    never = run(ScriptedModel([A100] * 30), np.zeros(SHAPE, bool), REFERENCE)
    assert len(never.clicks) == MAX_CLICKS == 20
    assert never.clicks_to(0.90) is None
    assert (never.noc(0.85), never.noc(0.90)) == (20, 20)
    assert never.lowering == 0                               # the same Dice is no lowering
    quick = run(ScriptedModel([A256, A361]), np.zeros(SHAPE, bool), REFERENCE)
    figures = summarize([never, quick])
    assert figures["noc"][0.90] == (20 + 2) / 2
    assert figures["noc"][0.85] == (20 + 2) / 2
    assert figures["never"] == 0.5
    assert figures["clicks"] == 22
    assert figures["lowering"] == 0
    assert figures["dice_after"][1] == pytest.approx((0.4 + 512 / 656) / 2)
    assert figures["dice_after"][3] == pytest.approx((0.4 + 722 / 761) / 2)


def test_an_object_already_above_the_goal_gets_no_click():
    model = ScriptedModel([])
    trace = run(model, A361, REFERENCE)
    assert trace.clicks == [] and model.calls == []
    assert (trace.noc(0.85), trace.noc(0.90)) == (0, 0)
    assert trace.dice_after(5) == pytest.approx(722 / 761)


def test_an_empty_reference_clears_a_false_positive_with_one_negative_click():
    false_positive = square(10, 10, 10)                # 100 voxels where the class is absent
    empty = np.zeros(SHAPE, bool)
    model = ScriptedModel([empty])
    trace = run(model, false_positive, empty)
    assert trace.dice == [0.0, 1.0]                    # both empty: nothing left to fix
    assert [c.positive for c in trace.clicks] == [False]
    assert false_positive[trace.clicks[0].y, trace.clicks[0].x]
    assert trace.noc(0.90) == 1


def test_the_model_writes_only_inside_its_box():
    box = (slice(0, 20), slice(0, 40))                 # the top half
    model = ScriptedModel([np.ones(SHAPE, bool)], box)
    start = square(25, 5, 10)                          # below the box: kept
    volume = np.zeros((1, *SHAPE), np.int16)
    mask = click_corrector(model, volume)(0)(start, [])
    assert (mask[box] == 1).all() and (mask[20:] == start[20:]).all()


def test_objects_are_the_slices_and_classes_below_the_goal_of_at_least_50_voxels():
    reference = np.zeros((4, *SHAPE), np.uint8)
    start = np.zeros_like(reference)
    reference[0][square(5, 5, 20)] = 1                 # slice 0: class 1 missed (400 voxels)
    reference[1][square(5, 5, 20)] = 1                 # slice 1: found exactly: Dice 1
    start[1][square(5, 5, 20)] = 1
    reference[2][square(5, 5, 7)] = 2                  # slice 2: 49 voxels, too small
    start[3][square(5, 5, 8)] = 2                      # slice 3: a false positive of 64 voxels
    reference[3][square(20, 20, 19)] = 1               # and a class with Dice 361*2/(361+400) >= 0.9
    start[3][square(20, 20, 20)] = 1
    assert objects(start, reference) == [(0, 1), (3, 2)]
    assert objects(start, reference, slices=[1, 2, 3]) == [(3, 2)]
    assert objects(np.zeros_like(reference), reference) == [(0, 1), (1, 1), (3, 1)]   # from empty


# -- the brush, by hand --------------------------------------------------------------------

def test_the_brush_paints_a_disk_of_5_mm_on_the_slices_spacing():
    spacing = (0.5, 1.0, 3.0)                          # x, y, z mm
    painted = brush_corrector(spacing)(0)(np.zeros(SHAPE, bool), [_click(20, 20, True)])
    yy, xx = np.mgrid[:40, :40]
    assert (painted == (((yy - 20) * 1.0) ** 2 + ((xx - 20) * 0.5) ** 2 <= 25)).all()
    assert painted.sum() == sum(2 * int(np.sqrt(25 - dy * dy) / 0.5) + 1 for dy in range(-5, 6))


def test_the_brush_reviewer_adds_then_erases_by_hand():
    spacing = (0.5, 0.5, 2.0)                          # 5 mm = 10 pixels
    reference = disk((20, 20), 10, (40, 70))
    extra = disk((20, 52), 7, (40, 70))                # a false positive, smaller than the missed disk
    dice, clicks, _ = review_object(brush_corrector(spacing)(0), extra, reference)
    # 1: the missed disk (largest) is painted whole from its centre; 2: the extra one erased
    assert [(c.y, c.x, c.positive) for c in clicks] == [(20, 20, True), (20, 52, False)]
    r, e = int(reference.sum()), int(extra.sum())
    assert dice == pytest.approx([0.0, 2 * r / (2 * r + e), 1.0])


def _click(y, x, positive):
    from segview.ml.interactive import Click

    return Click(y, x, positive)


# -- random walker ----------------------------------------------------------------------

def test_random_walker_follows_a_clean_edge_inside_the_crop_and_clears_without_a_positive_click():
    pytest.importorskip("skimage")
    from segview.session.reviewer import random_walker_corrector

    shape = (120, 120)
    truth = disk((40, 40), 12, shape)
    image = np.where(truth, 300, 0).astype(np.int16)[None]
    outside = square(100, 100, 15, shape)              # far from the crop around the click
    correct = random_walker_corrector(image)(0)
    found = correct(outside, [_click(40, 40, True)])
    assert dice(found & ~outside, truth) > 0.95
    assert (found[outside]).all()                      # outside the crop: unchanged
    cleared = correct(truth | outside, [_click(40, 40, False)])
    assert not cleared[truth].any() and cleared[outside].all()


# -- review_case and evaluate --robot -----------------------------------------------------

def tiny_click_model(path, background_only=False):
    torch.manual_seed(0)
    model = UNet(in_channels=6, num_classes=2, base_channels=4, depth=2)
    if background_only:  # every pixel background: clicks never find a class, a crop is cleared
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
            model.head.bias.copy_(torch.tensor([1.0, 0.0]))
    meta = {"task": "interactive", "classes": classes_to_metadata(named_classes(["background", "class"])),
            "preprocessing": dict(PREPROCESSING, input_size=[32, 32]), "loss": {"name": "ce+dice"}}
    return save_checkpoint(path, model, meta)


def test_review_case_reviews_each_object_with_each_corrector(tmp_path):
    from segview.ml.interactive import ClickModel

    model = ClickModel.from_checkpoint(tiny_click_model(tmp_path / "click.safetensors"))
    reference = np.zeros((3, *SHAPE), np.uint8)
    reference[0][square(5, 5, 20)] = 1
    reference[2][disk((20, 20), 8)] = 2
    image = (reference * 100).astype(np.int16)
    traces = review_case(image, reference, np.zeros_like(reference),
                         {"model": click_corrector(model, image), "brush": brush_corrector((1.0, 1.0, 1.0))},
                         case="c", start_name="empty")
    for name in ("model", "brush"):
        assert [(t.z, t.value, t.start, t.dice[0]) for t in traces[name]] == [(0, 1, "empty", 0.0),
                                                                             (2, 2, "empty", 0.0)]
        assert all(1 <= len(t.clicks) <= MAX_CLICKS and len(t.seconds) == len(t.clicks) for t in traces[name])


def _expected_clicks(folder, checkpoint, reviewed):
    """By hand, for the background-only click model on 24 x 24 slices (its crop, at least
    64 pixels, is the whole slice, so each click clears the structure clicked): an object with
    reference voxels never gets there (20 clicks); a false positive takes a click for each of
    its pieces (8-connected: ``ml.interactive.structure_at_click``)."""
    predictor = Predictor.from_checkpoint(checkpoint, "cpu")
    clicks = {}
    for name, slices in reviewed.items():
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        labels = load_labels(folder / "labelsTr" / f"{name}.nii.gz", volume)
        prediction = predictor.predict_volume(volume)
        total, large = 0, False
        for z in slices:
            for value in (1, 2):
                p, r = prediction[z] == value, labels[z] == value
                size = r.sum() if r.any() else p.sum()
                large = large or size >= 50
                if size >= 50 and 2 * (p & r).sum() / (p.sum() + r.sum()) < 0.9:
                    total += 20 if r.any() else min(ndimage.label(p, np.ones((3, 3)))[1], 20)
        clicks[name] = total if large else None  # None: nothing the reviewer would click on
    return clicks


REVIEWED = {"case_000": (0, 3), "case_001": (1,), "case_002": (2, 5)}


@pytest.fixture
def robot_dataset(tmp_path):
    folder = tmp_path / "ds"
    make_dataset(folder, len(REVIEWED))
    for name, slices in REVIEWED.items():
        labels = folder / "labelsTr" / f"{name}.nii.gz"
        volume = load_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        reviewed = np.zeros(6, bool)
        reviewed[list(slices)] = True
        save_review_state(labels, ReviewState(reviewed), image_key(volume))
    return folder


def test_evaluate_robot_reviewed_only_writes_clicks_and_their_paired_difference(robot_dataset, checkpoints,
                                                                                tmp_path, capsys):
    click = tiny_click_model(tmp_path / "click.safetensors", background_only=True)
    out = tmp_path / "out"
    code = main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(robot_dataset),
                 "--reviewed-only", "--robot", "--click-model", str(click), "--device", "cpu", "-o", str(out)])
    assert code == 0
    expected = {slot: _expected_clicks(robot_dataset, checkpoints[slot], REVIEWED) for slot in "AB"}
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["case"], r["model"]): int(r["clicks_to_90"]) for r in rows} == {  # a count, written as one
        (name, slot): expected[slot][name] for name in REVIEWED for slot in "AB"}
    verdict = json.loads((out / "verdict.json").read_text())
    differences = [expected["B"][n] - expected["A"][n] for n in REVIEWED]
    clicks = verdict["clicks_difference"]
    assert clicks["n"] == 3
    assert clicks["mean"] == pytest.approx(np.mean(differences))
    assert clicks["b_better"] == sum(d < 0 for d in differences)  # fewer clicks: B better
    assert verdict["A"]["clicks_to_90_mean"] == pytest.approx(np.mean(list(expected["A"].values())))
    assert verdict["A"]["clicks_to_90_std"] == pytest.approx(np.std(list(expected["A"].values()), ddof=1))
    assert verdict["B"]["clicks_n"] == 3
    markdown = (out / "verdict.md").read_text()
    assert "simulated reviewer" in markdown and "Only 3 paired cases" in markdown


def test_evaluate_robot_scores_every_slice_without_reviewed_only(robot_dataset, checkpoints, tmp_path, capsys):
    click = tiny_click_model(tmp_path / "click.safetensors", background_only=True)
    out = tmp_path / "out"
    code = main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(robot_dataset),
                 "--robot", "--click-model", str(click), "--device", "cpu", "-o", str(out)])
    assert code == 0
    every = {name: range(6) for name in REVIEWED}
    expected = {slot: _expected_clicks(robot_dataset, checkpoints[slot], every) for slot in "AB"}
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    got = {(r["case"], "B" if "ce_dice" in r["checkpoint"] else "A"): int(r["clicks_to_90"]) for r in rows}
    assert got == {(name, slot): expected[slot][name] for name in REVIEWED for slot in "AB"}
    comparison = json.loads((out / "comparisons.json").read_text())[0]
    differences = [expected["B"][n] - expected["A"][n] for n in REVIEWED]
    assert comparison["clicks_difference"]["mean_difference"] == pytest.approx(np.mean(differences))
    assert "simulated reviewer's clicks" in capsys.readouterr().out


def test_evaluate_robot_without_a_click_model_says_so(robot_dataset, checkpoints, tmp_path, capsys):
    code = main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(robot_dataset),
                 "--reviewed-only", "--robot", "--click-model", str(tmp_path / "none.safetensors")])
    assert code == 2
    assert "--robot needs an interactive model" in capsys.readouterr().err
    code = main(["evaluate", str(checkpoints["A"]), str(checkpoints["B"]), "--data", str(robot_dataset),
                 "--reviewed-only", "--robot", "--click-model", str(checkpoints["A"])])
    assert code == 2
    assert "segmentation checkpoint" in capsys.readouterr().err


# -- segview bench clicks, end to end on tiny cases ----------------------------------------

def test_bench_clicks_prints_the_tables_and_the_targets(tmp_path, monkeypatch, capsys):
    from segview.bench import clicks
    from segview.core.phantoms import Phantom
    from segview.session.reviewer import objects as reviewed_objects

    from .conftest import CLASSES, make_checkpoint, tiny_case

    models = tmp_path / "models"
    models.mkdir()
    make_checkpoint(models / "cardiac_ce.safetensors", 1)
    tiny_click_model(models / "interactive.safetensors")
    monkeypatch.setattr(clicks, "MODELS", models)
    monkeypatch.setattr(clicks, "CLICK_MODEL", models / "interactive.safetensors")
    made: list[tuple[str, int]] = []

    def phantom(task, seed):
        made.append((task, seed))
        return Phantom(*tiny_case(seed), tuple(CLASSES), task)

    monkeypatch.setattr(clicks, "make_phantom", phantom)
    lines: list[str] = []
    figures = clicks.bench_clicks(cases=2, echo=lines.append, first_seed=6000, tasks=("cardiac",))
    out = "\n".join(lines)
    assert ("cardiac", 6000) in made and ("cardiac", 6001) in made and ("cardiac", 6002) not in made
    assert not any(task == "lung" and seed != clicks.FIRST_SEED for task, seed in made)  # only the latency's slice
    assert "(seeds 6000..6001)" in out
    assert "NoC@85" in out and "brush/model" in out and "every target:" in out
    assert "cardiac from a prediction:" in out and "cardiac from empty:" in out
    assert "over 2 cases]" in out and set(figures["intervals"]) == {("cardiac", "prediction"), ("cardiac", "empty")}
    assert "latency per click, 512 x 512 slice, cpu (2 threads)" in out
    predictor = Predictor.from_checkpoint(models / "cardiac_ce.safetensors", "cpu")
    expected = {"cardiac_ce": 0, "empty": 0}
    for seed in (6000, 6001):
        volume, labels = tiny_case(seed)
        expected["cardiac_ce"] += len(reviewed_objects(predictor.predict_volume(volume), labels))
        expected["empty"] += len(reviewed_objects(np.zeros_like(labels), labels))
    for start, count in expected.items():
        assert all(figures["figures"]["cardiac", start][m]["objects"] == count
                   for m in ("model", "brush", "random_walker"))


def test_bench_clicks_gives_no_interval_from_one_case():
    from segview.bench import clicks

    traces = {("lung", "empty"): {m: [Trace("lung_4000", 3, 1, "empty", [0.5, 0.95])] for m in clicks.METHODS}}
    lines: list[str] = []
    clicks._print_targets(clicks._targets(traces), {}, lines.append, clicks._intervals(traces))
    line = next(text for text in lines if text.strip().startswith("lung from empty"))
    assert "NoC@90 1.00 [no interval from one case" in line and "CI" not in line


def test_bench_clicks_options_on_the_command_line(tmp_path, capsys):
    assert main(["bench", "clicks", "--cases", "0"]) == 2
    assert "--cases must be at least 1" in capsys.readouterr().err
    assert main(["bench", "clicks", "--click-model", str(tmp_path / "none.safetensors")]) == 2
    assert "no interactive model at" in capsys.readouterr().err
    assert main(["bench", "clicks", "--first-seed", "5", "--task", "lung"]) == 2
    assert "training cases" in capsys.readouterr().err


def test_the_summary_at_the_edges_no_object_and_one_already_good():
    import math

    from segview.session.reviewer import Trace, summarize

    nothing = summarize([])
    assert nothing["objects"] == 0 and nothing["clicks"] == 0
    assert all(math.isnan(v) for v in (*nothing["noc"].values(), *nothing["dice_after"].values(),
                                       nothing["never"], nothing["lowering"], nothing["p95"]))
    one = summarize([Trace("case", 0, 1, "empty", [0.95])])  # already above the goal: no click
    assert one["objects"] == 1 and one["noc"][0.90] == 0 and one["never"] == 0 and one["dice_after"][5] == 0.95
    assert math.isnan(one["lowering"]) and one["clicks"] == 0  # no click, so no share of clicks


def test_bench_clicks_readers_compare_the_label_with_tighter_and_wider_ones():
    """The lung labels' own precision, per reviewed object: Dice between the label and the
    same lesions drawn at 40 % / 60 % of their contrast, counted by hand."""
    from segview.bench import clicks
    from segview.core.phantoms import lung_phantom

    label = lung_phantom(3).labels
    z = int(np.argmax((label == 1).sum(axis=(1, 2))))
    trace = Trace("lung_3", z, 1, "lung_ce", [0.5, 0.9])
    readers = clicks._readers({("lung", "lung_ce"): {"model": [trace]}, ("cardiac", "empty"): {"model": [trace]}})
    assert list(readers) == ["lung_ce"]
    given = clicks._readers({("lung", "lung_ce"): {"model": [trace]}}, {"lung_3": label})  # the bench's references
    assert all(np.array_equal(given["lung_ce"][edge], readers["lung_ce"][edge]) for edge in clicks.READER_EDGES)
    for edge, dice in readers["lung_ce"].items():
        other = lung_phantom(3, edge).labels[z] == 1
        truth = label[z] == 1
        expected = 2 * (other & truth).sum() / (other.sum() + truth.sum())
        assert dice.shape == (1,) and dice[0] == pytest.approx(expected) and 0.5 < dice[0] < 1
    lines: list[str] = []
    clicks._print_readers(readers, {("lung", "lung_ce"): {"model": [trace]}}, lines.append)
    assert "40 % / 60 %" in lines[1] and lines[2].split()[:2] == ["lung", "lung_ce"]
    agreed = all(d[0] >= 0.9 for d in readers["lung_ce"].values())
    assert lines[2].endswith("NoC@90 1.00 (1) / - (0)" if agreed else "NoC@90 - (0) / 1.00 (1)")


def test_noc_interval_resamples_whole_cases():
    """The objects of one case go together: with two cases, a quarter of the resamples hold
    only the one and a quarter only the other, so the 95 % interval runs from one case's mean
    NoC to the other's; the mean over the objects is not the mean of the case means."""
    from segview.session.reviewer import noc_interval

    easy = [Trace("a", z, 1, "p", [0.5, 0.95]) for z in range(3)]                 # NoC 1 each
    hard = [Trace("b", 0, 1, "p", [0.5, 0.6, 0.7, 0.95]), Trace("b", 1, 1, "p", [0.5] * 21)]  # 3 and 20
    low, high = noc_interval(easy + hard)
    assert low == pytest.approx(1.0) and high == pytest.approx(11.5)
    assert noc_interval(easy) == (1.0, 1.0)
    assert all(np.isnan(noc_interval([])))


def test_a_case_with_no_object_large_enough_to_click_on_has_no_count_not_0_clicks():
    """0 clicks read as "needed no correction" beside a prediction of nothing (Dice 0) on a
    few small lesions; a prediction already at Dice 0.90 on a large object is 0 clicks."""
    from segview.core.volume import Volume
    from segview.session.reviewer import clicks_to_goal

    volume = Volume(np.zeros((2, *SHAPE), np.int16), (1.0, 1.0, 1.0))
    small = np.zeros((2, *SHAPE), np.uint8)
    small[0][square(5, 5, 7)] = 1  # 49 voxels: under the reviewer's 50
    nothing = clicks_to_goal(ScriptedModel([]), volume, small, np.zeros_like(small))
    assert nothing.clicks == 0 and nothing.count is None
    large = np.zeros_like(small)
    large[1][square(5, 5, 8)] = 1  # 64 voxels, predicted as they are
    assert clicks_to_goal(ScriptedModel([]), volume, large, large.copy()).count == 0
    assert clicks_to_goal(ScriptedModel([]), volume, large, large.copy(), slices=[0]).count is None


def background_checkpoint(path):
    """A segmentation checkpoint that predicts background everywhere (nothing found)."""
    from .conftest import save_tiny_checkpoint

    model = UNet(num_classes=3, base_channels=2, depth=1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.head.bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    return save_tiny_checkpoint(path, model)


@pytest.fixture
def small_lesions(robot_dataset):
    """``robot_dataset`` with case_001's labels a 3 x 3 lesion on every slice (9 voxels)."""
    from segview.core.io import save_labels
    from .conftest import CLASSES

    path = robot_dataset / "labelsTr" / "case_001.nii.gz"
    volume = load_volume(robot_dataset / "imagesTr" / "case_001_0000.nii.gz")
    labels = np.zeros(volume.shape, np.uint8)
    labels[:, 10:13, 10:13] = 1
    save_labels(path, labels, volume, CLASSES)
    reviewed = np.zeros(6, bool)
    reviewed[list(REVIEWED["case_001"])] = True
    save_review_state(path, ReviewState(reviewed), image_key(volume))  # as the fixture saved it
    return robot_dataset


def _clicks_in(out) -> dict:
    with open(out / "results.csv", newline="") as handle:
        return {(r["case"], r.get("model") or ("A" if "nothing" in r["checkpoint"] else "B")): r["clicks_to_90"]
                for r in csv.DictReader(handle)}


@pytest.mark.parametrize("reviewed_only", [True, False])
def test_evaluate_robot_leaves_out_a_case_with_no_object_to_click_on(small_lesions, checkpoints, tmp_path,
                                                                     capsys, reviewed_only):
    """Model A predicts nothing; case_001 holds only a 9-voxel lesion: A's clicks there are
    no count (not "0 clicks"), and the case is out of the clicks' pairs, said why."""
    click = tiny_click_model(tmp_path / "click.safetensors", background_only=True)
    nothing = background_checkpoint(tmp_path / "nothing.safetensors")
    out = tmp_path / "out"
    code = main(["evaluate", str(nothing), str(checkpoints["A"]), "--data", str(small_lesions), "--robot",
                 "--click-model", str(click), "--device", "cpu", "-o", str(out),
                 *(["--reviewed-only"] if reviewed_only else [])])
    assert code == 0
    slices = REVIEWED if reviewed_only else {name: range(6) for name in REVIEWED}
    expected = {"A": _expected_clicks(small_lesions, nothing, slices),
                "B": _expected_clicks(small_lesions, checkpoints["A"], slices)}  # its false positives are large
    assert expected["A"]["case_001"] is None and expected["B"]["case_001"] is not None  # the test's premise
    assert _clicks_in(out) == {(name, slot): "" if expected[slot][name] is None else str(expected[slot][name])
                               for name in REVIEWED for slot in "AB"}
    kept = ["case_000", "case_002"]
    differences = [expected["B"][n] - expected["A"][n] for n in kept]
    if reviewed_only:
        verdict = json.loads((out / "verdict.json").read_text())
        clicks = verdict["clicks_difference"]
        assert verdict["n"] == 3                                  # the Dice still counts case_001 (A's Dice 0)
        assert verdict["A"]["clicks_n"] == verdict["B"]["clicks_n"] == 2
        assert verdict["A"]["clicks_to_90_mean"] == pytest.approx(np.mean([expected["A"][n] for n in kept]))
        with open(out / "results.csv", newline="") as handle:
            assert {(r["case"], r["model"]): r["clicks_scored"] for r in csv.DictReader(handle)} == {
                (name, slot): str(int(name != "case_001")) for name in REVIEWED for slot in "AB"}
        markdown = (out / "verdict.md").read_text()
        assert "Left out of the clicks (1 case; still in the Dice and the correction effort):" in markdown
        assert "- case_001: no clicks for A: the 1 reviewed slice holds no object of at least 50 voxels" in markdown
    else:
        clicks = json.loads((out / "comparisons.json").read_text())[0]["clicks_difference"]
        clicks["n"] = clicks["pairs"]
        assert "Left out of the clicks' pairs (1 case): case_001: no object of at least 50 voxels to click on " \
               "for A" in capsys.readouterr().out
    assert clicks["n"] == 2 and clicks["mean" if reviewed_only else "mean_difference"] == pytest.approx(
        np.mean(differences))
    assert list(clicks["left_out"]) == ["case_001"]
