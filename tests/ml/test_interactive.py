"""The click model: its input (disks where the clicks are, the crop), the one click-from-error
rule against an independent distance transform, wrong kinds of checkpoint refused by name,
a tiny network that learns a fixed case so that clicks raise its Dice, and
``segview train --interactive`` on tiny phantoms."""
import csv
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from scipy.ndimage import distance_transform_edt, label
from torch.nn import functional as F

from segview.cli import main
from segview.core.io import named_classes
from segview.core.phantoms import CARDIAC_CLASSES
from segview.ml.checkpoint import CheckpointError, classes_to_metadata, read_metadata, save_checkpoint
from segview.ml.inference import Predictor
from segview.ml.interactive import (PREPROCESSING, Click, ClickModel, crop_box, encode, error_click,
                                    merge_at_click, prepare, region_boxes, resize_bilinear, settle,
                                    structure_at_click)
from segview.ml.interactive_training import (ClickSimulation, InteractiveCase, InteractiveConfig, dice, perturb,
                                             review_summary, validation_objects)
from segview.ml.losses import build_loss
from segview.ml.unet import UNet

TINY_PREPROCESSING = {**PREPROCESSING, "input_size": [32, 32], "click": {"shape": "disk", "radius": 1.5}}


def _interactive_checkpoint(path, seed=0):
    torch.manual_seed(seed)
    model = UNet(6, 2, base_channels=4, depth=2, norm="batch")
    meta = {"task": "interactive", "classes": classes_to_metadata(named_classes(["background", "class"])),
            "preprocessing": TINY_PREPROCESSING}
    return save_checkpoint(path, model, meta)


def _segmentation_checkpoint(path):
    torch.manual_seed(0)
    model = UNet(1, 4, base_channels=4, depth=2, norm="batch")
    meta = {"classes": classes_to_metadata(CARDIAC_CLASSES),
            "preprocessing": {"input_size": [32, 32], "modality": "MR", "normalization": {
                "method": "percentile", "low_percentile": 0.5, "high_percentile": 99.5}}}
    return save_checkpoint(path, model, meta)


# -- the input ------------------------------------------------------------------------------

def _pixels(plane: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in torch.nonzero(plane)}


def test_click_disks_land_where_the_click_is_in_the_resized_crop():
    # A 32 x 64 crop resized to 32 x 32: rows keep their scale, columns halve. The click at
    # (26, 52) is (16, 32) in the crop; its pixel centre (16.5, 32.5) maps to (16.5, 16.25)
    # in the input, pixel coordinates (16, 15.75). A disk of radius 1.5 there holds, by hand:
    # row 16: columns 15, 16, 17 (|x - 15.75| <= 1.5); rows 15 and 17: columns 15, 16
    # (|x - 15.75| <= sqrt(1.25) = 1.118); rows 14 and 18: nothing (2 ** 2 > 1.5 ** 2).
    box = (slice(10, 42), slice(20, 84))
    image = np.zeros((3, 32, 64), np.float32)
    image[:, :, 32:] = 10.0
    x = encode(image, np.zeros((32, 64), bool), [Click(26, 52, True), Click(11, 21, False)], box,
               TINY_PREPROCESSING)
    assert x.shape == (1, 6, 32, 32) and x.dtype == torch.float32
    assert _pixels(x[0, 4]) == {(16, 15), (16, 16), (16, 17), (15, 15), (15, 16), (17, 15), (17, 16)}
    # (11, 21) is crop pixel (1, 1): input (1, 0.25); radius 1.5: row 1 columns 0, 1;
    # rows 0 and 2 columns 0, 1 (|x - 0.25| <= 1.118); row 1 column -1 is off the input.
    assert _pixels(x[0, 5]) == {(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)}
    # The image channels: the crop's percentiles scale it to [0, 1]; the right half is bright.
    assert x[0, :3, :, :15].max() == 0 and x[0, :3, :, 17:].min() == 1
    assert x[0, 3].max() == 0  # an empty mask


def test_an_unscaled_crop_puts_the_disk_on_the_click_pixel():
    box = (slice(100, 132), slice(40, 72))  # 32 x 32: the input's own size
    x = encode(np.ones((3, 32, 32), np.float32), np.ones((32, 32), bool), [Click(110, 50)], box,
               {**TINY_PREPROCESSING, "click": {"shape": "disk", "radius": 1}})
    assert _pixels(x[0, 4]) == {(10, 10), (9, 10), (11, 10), (10, 9), (10, 11)}
    assert x[0, 5].max() == 0 and x[0, 3].min() == 1


@pytest.mark.parametrize("shape_in, shape_out", [((64, 80), (96, 96)), ((200, 150), (96, 96)),
                                                  ((96, 96), (40, 70)), ((5, 7), (32, 32))])
def test_resize_is_torchs_bilinear(shape_in, shape_out):
    array = np.random.default_rng(0).standard_normal((3, *shape_in)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(array)[None], size=shape_out, mode="bilinear",
                             align_corners=False)[0].numpy()
    np.testing.assert_allclose(resize_bilinear(array, shape_out), expected, atol=1e-4)


# -- the crop -------------------------------------------------------------------------------

def _region(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return mask


@pytest.mark.parametrize("shape, clicks, region, expected", [
    # one click, nothing around: the minimum side (96) centred on it
    ((256, 256), [(100, 150)], None, ((52, 148), (102, 198))),
    # near the image's corner: shifted inside, never cut
    ((256, 256), [(5, 250)], None, ((0, 96), (160, 256))),
    # a click inside an 80 x 40 region: its box, 80 * 1.8 = 144 on a side, centred on it
    ((256, 256), [(60, 70)], ((50, 129), (60, 99)), ((18, 162), (8, 152))),
    # an 81 x 40 region: 145.8 on a side, centred on its side (not on its 145 whole pixels:
    # a first crop in mm did so, moved some boxes by a pixel and the bench's figures)
    ((256, 256), [(60, 70)], ((50, 130), (60, 99)), ((17, 162), (7, 152))),
    # a click just beside the region (within 40 % of its side) brings it in
    ((256, 256), [(60, 105)], ((50, 129), (60, 99)), ((18, 162), (10, 154))),
    # a click far from it leaves it out
    ((256, 256), [(200, 220)], ((50, 129), (60, 99)), ((152, 248), (160, 256))),
    # an image smaller than the minimum: all of it
    ((24, 24), [(3, 4)], None, ((0, 24), (0, 24))),
    # two clicks 120 apart: 121 * 1.8 = 217.8 on a side, clipped to the image
    ((256, 256), [(40, 40), (160, 40)], None, ((0, 217), (0, 217))),
])
def test_crop_box(shape, clicks, region, expected):
    mask = np.zeros(shape, bool) if region is None else _region(shape, *region)
    box = crop_box(shape, [Click(y, x) for y, x in clicks], mask, margin=0.4, min_size=96)
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == expected


@pytest.mark.parametrize("shape, clicks, region, pixel_size, expected", [
    # rows of 0.5 mm, columns of 1 mm: 96 rows (48 mm) and 48 columns (48 mm)
    ((256, 256), [(100, 150)], None, (0.5, 1.0), ((52, 148), (126, 174))),
    ((256, 256), [(100, 150)], None, (1.0, 0.5), ((76, 124), (102, 198))),
    # an 80 x 40 pixel region of 80 x 80 mm: 144 mm a side, 144 rows and 72 columns
    ((256, 256), [(60, 70)], ((50, 129), (60, 99)), (1.0, 2.0), ((18, 162), (44, 116))),
    # two clicks far apart on a 256 x 128 image of 256 x 256 mm: all of it
    ((256, 128), [(0, 0), (250, 120)], None, (1.0, 2.0), ((0, 256), (0, 128))),
    # square pixels of any size: as without a pixel size
    ((256, 256), [(60, 70)], ((50, 129), (60, 99)), (0.7, 0.7), ((18, 162), (8, 152))),
])
def test_the_crop_is_square_in_mm(shape, clicks, region, pixel_size, expected):
    mask = np.zeros(shape, bool) if region is None else _region(shape, *region)
    box = crop_box(shape, [Click(y, x) for y, x in clicks], mask, margin=0.4, min_size=96, pixel_size=pixel_size)
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == expected


def test_the_crop_follows_the_last_click_and_draws_the_earlier_ones_inside_it():
    from segview.ml.interactive import prepare

    volume = np.zeros((3, 256, 256), np.float32)
    mask = np.zeros((256, 256), bool)
    first, last = Click(40, 40), Click(200, 200, False)
    box, x = prepare(volume, 1, mask, [first, last])
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == ((152, 248), (152, 248))
    assert x[0, 4].max() == 0 and x[0, 5].sum() > 0  # the first click is far outside: not drawn
    near = Click(180, 190)
    box, x = prepare(volume, 1, mask, [near, last])
    assert x[0, 4].sum() > 0 and x[0, 5].sum() > 0
    # A checkpoint that does not say ``around`` was trained on the box around every click.
    older = {**PREPROCESSING, "crop": {"margin": 0.4, "min_size": 96}}
    box, _ = prepare(volume, 1, mask, [first, last], older)
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == ((0, 256), (0, 256))


def test_a_further_click_zooms_in_on_the_region_it_corrects_but_not_on_a_missed_one():
    volume = np.zeros((3, 256, 256), np.float32)
    mask = _region((256, 256), (100, 110), (100, 112))  # 10 x 12, its box grown: 18 x 21.6
    first, edge = Click(105, 106), Click(110, 106, False)
    box, _ = prepare(volume, 1, mask, [first, edge], focus_size=48)
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == ((81, 129), (82, 130))
    # the first click of an interaction, and a click with no focus, see the whole box
    assert prepare(volume, 1, mask, [edge], focus_size=48)[0] == prepare(volume, 1, mask, [first, edge])[0]
    assert prepare(volume, 1, mask, [edge])[0][0] == slice(57, 153)
    # a click on a lesion the mask missed, far from it: the 48-pixel box holds none of the
    # mask, so the click sees the whole 96-pixel box around it
    missed = Click(200, 200)
    box, _ = prepare(volume, 1, mask, [first, missed], focus_size=48)
    assert ((box[0].start, box[0].stop), (box[1].start, box[1].stop)) == ((152, 248), (152, 248))


# -- clicks from errors ---------------------------------------------------------------------

def _independent_click(mask, reference):
    """The largest error region (missed or extra), the point farthest from its boundary and
    the image's edge: scipy's distance transform on the whole padded image, first maximum."""
    best = None
    for positive, error in ((True, reference & ~mask), (False, mask & ~reference)):
        regions, count = label(error)
        for n in range(1, count + 1):
            size = int((regions == n).sum())
            if best is None or size > best[0]:
                best = (size, positive, regions == n)
    if best is None:
        return None
    distance = distance_transform_edt(np.pad(best[2], 1))[1:-1, 1:-1]
    y, x = np.unravel_index(np.argmax(distance), distance.shape)
    return int(y), int(x), best[1]


@pytest.mark.parametrize("seed", range(40))
def test_error_click_is_the_farthest_point_of_the_largest_error(seed):
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
    reference = ndimage_blobs(rng, shape)
    mask = ndimage_blobs(rng, shape)
    click = error_click(mask, reference)
    expected = _independent_click(mask, reference)
    assert (None if click is None else (click.y, click.x, click.positive)) == expected


def ndimage_blobs(rng, shape):
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(rng.standard_normal(shape), 2.5) > 0.15


def test_error_click_signs_and_agreement():
    yy, xx = np.mgrid[:40, :40]
    disk = (yy - 20) ** 2 + (xx - 20) ** 2 < 64
    assert error_click(np.zeros_like(disk), disk) == Click(20, 20, True)           # missed: add
    assert error_click(disk, np.zeros_like(disk)) == Click(20, 20, False)          # extra: remove
    assert error_click(disk, disk) is None
    edge = np.zeros((10, 10), bool)
    edge[:, :4] = True  # touching the image's edge: the edge is boundary, so column 1 or 2
    assert error_click(np.zeros_like(edge), edge).x in (1, 2)


def test_a_drawn_click_lies_inside_the_largest_error_and_favours_its_middle():
    yy, xx = np.mgrid[:60, :60]
    reference = (yy - 30) ** 2 + (xx - 30) ** 2 < 400
    mask = (yy - 30) ** 2 + (xx - 30) ** 2 < 25
    mask[0:3, 0:3] = True  # a small extra region: never the largest
    distance = distance_transform_edt(np.pad(reference & ~mask, 1))[1:-1, 1:-1]
    rng = np.random.default_rng(0)
    drawn = [error_click(mask, reference, rng) for _ in range(300)]
    assert all(c.positive and reference[c.y, c.x] and not mask[c.y, c.x] for c in drawn)
    region = distance[reference & ~mask]
    assert np.mean([distance[c.y, c.x] for c in drawn]) > region.mean() + 1
    again = np.random.default_rng(0)
    assert [error_click(mask, reference, again) for _ in range(5)] == drawn[:5]


# -- checkpoints of the wrong kind ----------------------------------------------------------

def test_a_segmentation_checkpoint_is_refused_as_a_click_model_by_name(tmp_path):
    path = _segmentation_checkpoint(tmp_path / "cardiac.safetensors")
    with pytest.raises(CheckpointError, match=r"cardiac.safetensors is a segmentation checkpoint \(4 classes: "
                                              r"background, right ventricle, myocardium, left ventricle\)"):
        ClickModel.from_checkpoint(path)


def test_an_interactive_checkpoint_is_refused_as_a_segmentation_model(tmp_path):
    path = _interactive_checkpoint(tmp_path / "clicks.safetensors")
    with pytest.raises(CheckpointError, match="clicks.safetensors is an interactive correction model"):
        Predictor.from_checkpoint(path)
    from segview.ml.onnx_model import export_onnx

    exported = export_onnx(path, tmp_path / "clicks.onnx")  # six input channels export and check out
    assert onnx.load(str(exported)).graph.input[0].type.tensor_type.shape.dim[1].dim_value == 6
    with pytest.raises(CheckpointError, match="clicks.onnx is an interactive correction model") as caught:
        Predictor.from_checkpoint(exported)
    # The Click tool refuses the export too: said was "use it with the Click tool".
    assert "the Click tool takes its interactive .safetensors checkpoint, not an ONNX export" in str(caught.value)
    assert "use it with the Click tool" not in str(caught.value)
    with pytest.raises(CheckpointError, match="clicks.onnx is an ONNX model: a click model is its interactive "
                                              r"\.safetensors checkpoint"):
        ClickModel.from_checkpoint(exported)  # said was: "it runs in predict, evaluate and the window"


def test_export_help_gives_the_input_of_both_kinds_of_model(capsys):
    """It said (N, 1, H, W) only; a click model exports (N, 6, H, W)."""
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(N, 1, H, W) for a segmentation model, (N, 6, H, W) for a click model" in help_text


def test_warm_up_runs_the_network_once_on_a_blank_input_of_its_shape(tmp_path):
    model = ClickModel.from_checkpoint(_interactive_checkpoint(tmp_path / "clicks.safetensors"))
    network, seen = model.network, []
    model.network = lambda x: (seen.append(x.clone()), network(x))[1]
    model.warm_up()
    assert len(seen) == 1 and seen[0].shape == (4, 6, 32, 32) and not seen[0].any()  # the crop's four mirrors


def test_region_boxes_are_scikit_images_bounding_boxes():
    from skimage.measure import label as label_regions, regionprops

    rng = np.random.default_rng(7)
    for _ in range(100):  # empty, one pixel, touching the edges, scattered noise
        mask = np.zeros((int(rng.integers(1, 120)), int(rng.integers(1, 120))), bool)
        for _ in range(int(rng.integers(0, 6))):
            y, x = rng.integers(0, mask.shape[0]), rng.integers(0, mask.shape[1])
            mask[y:y + rng.integers(1, 40), x:x + rng.integers(1, 40)] = True
        mask |= rng.random(mask.shape) < 0.003
        expected = sorted((r.bbox[0], r.bbox[1], r.bbox[2] - 1, r.bbox[3] - 1)
                          for r in regionprops(label_regions(mask, connectivity=1)))
        assert sorted(tuple(b) for b in region_boxes(mask).reshape(-1, 4).astype(int).tolist()) == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_graph_answers_as_the_network_it_replays(tmp_path):
    path = _interactive_checkpoint(tmp_path / "clicks.safetensors", seed=5)
    graphed, eager = ClickModel.from_checkpoint(path, "cuda"), ClickModel.from_checkpoint(path, "cuda", "torch")
    assert (graphed.runtime, eager.runtime) == ("cuda graph", "torch")
    rng = np.random.default_rng(1)
    for _ in range(3):  # fresh inputs each time: a replay that kept its first input would fail
        volume = rng.normal(size=(4, 70, 90)).astype(np.float32)
        mask = np.zeros((70, 90), bool)
        mask[rng.integers(10, 30):40, rng.integers(20, 40):60] = True
        clicks = [Click(30, 62), Click(int(rng.integers(20, 30)), 35, False)]
        box, a = graphed.refine(volume, 1, mask, clicks)
        box_eager, b = eager.refine(volume, 1, mask, clicks)
        assert box == box_eager and (a != b).mean() < 0.001
    network = graphed.network
    with torch.inference_mode():
        kept = network(torch.randn(4, 6, 32, 32, device="cuda"))
        before = kept.clone()
        for batch in (4, 2, 4):  # another shape is captured anew
            x = torch.randn(batch, 6, 32, 32, device="cuda")
            torch.testing.assert_close(network(x), graphed.model(x), rtol=1e-3, atol=1e-3)
    assert torch.equal(kept, before) and not network.eager  # an answer is a copy the next replay leaves alone


def test_onnx_runtime_and_torch_refine_alike(tmp_path):
    path = _interactive_checkpoint(tmp_path / "clicks.safetensors", seed=3)
    fast, plain = ClickModel.from_checkpoint(path), ClickModel.from_checkpoint(path, runtime="torch")
    assert (fast.runtime, plain.runtime) == ("onnxruntime", "torch")
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(4, 70, 90)).astype(np.float32)
    mask = np.zeros((70, 90), bool)
    mask[20:40, 30:60] = True
    clicks = [Click(30, 62), Click(25, 35, False)]
    box, a = fast.refine(volume, 1, mask, clicks)
    box_torch, b = plain.refine(volume, 1, mask, clicks)
    assert box == box_torch and a.shape == (box[0].stop - box[0].start, box[1].stop - box[1].start)
    assert (a != b).mean() < 0.001  # only pixels at a tie of the two logits may differ


def test_merge_at_click_keeps_only_the_change_under_the_click():
    previous = np.zeros((20, 30), bool)
    previous[2:8, 2:8] = True                      # a region the click is not about
    previous[12:16, 20:24] = True
    proposed = np.zeros_like(previous)             # the network drops the first region,
    proposed[10:18, 18:27] = True                  # grows the second and adds a far speck
    proposed[0, 29] = True
    merged = merge_at_click(previous, proposed, Click(11, 19))
    expected = previous.copy()
    expected[10:18, 18:27] = True
    np.testing.assert_array_equal(merged, expected)
    # a diagonal neighbour belongs to the region (8-connectivity)
    proposed[9, 17] = True
    assert merge_at_click(previous, proposed, Click(11, 19))[9, 17]
    # a negative click on the first region removes it alone
    removed = previous.copy()
    removed[2:8, 2:8] = False
    np.testing.assert_array_equal(merge_at_click(previous, proposed, Click(3, 3, False)), removed)
    # a click the network did not follow changes nothing
    np.testing.assert_array_equal(merge_at_click(previous, proposed, Click(14, 22, False)), previous)


def test_a_further_click_moves_the_structures_edge_its_own_way_only():
    """Beyond the change under the click: in the structure clicked, an adding click takes
    every addition the network proposes and no removal, a removing click every removal and
    no addition; another structure is left alone either way."""
    previous = np.zeros((30, 40), bool)
    previous[5:20, 5:20] = True                     # the lesion clicked
    previous[24:28, 30:36] = True                   # another, apart
    proposed = previous.copy()
    proposed[5:20, 20:23] = True                    # grown on the right (the click's side)
    proposed[20:22, 5:15] = True                    # and at the bottom, apart from that change
    proposed[5:7, 5:12] = False                     # trimmed at the top, apart from both
    proposed[24:28, 30:36] = False                  # the other one dropped
    grown = merge_at_click(previous, proposed, Click(12, 21))
    expected = previous.copy()
    expected[5:20, 20:23] = expected[20:22, 5:15] = True
    np.testing.assert_array_equal(grown, expected)  # both additions, no trim, the other kept
    trimmed = merge_at_click(previous, proposed, Click(6, 8, False))
    expected = previous.copy()
    expected[5:7, 5:12] = False
    np.testing.assert_array_equal(trimmed, expected)  # the trim alone
    # the structure is 8-connected: the bottom growth reaches it diagonally
    diagonal = previous.copy()
    diagonal[20, 20] = True
    assert merge_at_click(previous, diagonal, Click(12, 10))[20, 20]
    # a click in neither mask nor proposal changes nothing
    np.testing.assert_array_equal(merge_at_click(previous, proposed, Click(28, 2)), previous)


def test_refine_after_the_first_click_writes_only_the_change_under_the_last_click(tmp_path):
    path = _interactive_checkpoint(tmp_path / "clicks.safetensors", seed=3)
    model = ClickModel.from_checkpoint(path, runtime="torch")
    model.focus_size = None  # the merge alone (the focus crop: test_a_further_click_zooms_in...)
    volume = np.random.default_rng(1).normal(size=(3, 64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    first = [Click(30, 45)]
    box, whole = model.refine(volume, 1, mask, first, merge=False)
    expected = structure_at_click(mask[box], whole, Click(30 - box[0].start, 45 - box[1].start))
    expected[30 - box[0].start, 45 - box[1].start] = True  # the voxel clicked is the class
    np.testing.assert_array_equal(model.refine(volume, 1, mask, first)[1], expected)  # the first: the structure
    clicks = first + [Click(25, 30, False)]
    box, whole = model.refine(volume, 1, mask, clicks, merge=False)
    box_merged, merged = model.refine(volume, 1, mask, clicks)
    assert box == box_merged
    local = [(c.y - box[0].start, c.x - box[1].start) for c in clicks]
    expected = merge_at_click(mask[box], whole, Click(*local[-1], False))
    expected[local[0]], expected[local[1]] = True, False
    np.testing.assert_array_equal(merged, expected)
    model.focus_size = 48  # the merge's click sees the focus crop; the whole proposal does not
    focused = prepare(volume, 1, mask, clicks, model.preprocessing, 48)[0]
    assert model.refine(volume, 1, mask, clicks)[0] == focused != box
    assert model.refine(volume, 1, mask, clicks, merge=False)[0] == box


def test_the_first_click_writes_the_structure_clicked_and_leaves_the_others():
    """A removing click on one blob leaves another the proposal also cleared (a person's
    earlier correction a few voxels off); an adding click writes what grows from the
    structure under it, diagonal neighbours included; a click in neither changes nothing."""
    previous = np.zeros((12, 16), bool)
    previous[2:5, 2:5] = previous[2:5, 8:11] = True        # two blobs, three voxels apart
    cleared = np.zeros_like(previous)
    kept = structure_at_click(previous, cleared, Click(3, 3, False))
    assert not kept[2:5, 2:5].any() and kept[2:5, 8:11].all()
    grown = previous.copy()
    grown[5, 5] = grown[6, 6] = True                        # diagonal from the first blob's corner
    grown[9, 12] = True                                     # apart from both
    added = structure_at_click(previous, grown, Click(3, 3))
    assert added[5, 5] and added[6, 6] and not added[9, 12] and added[2:5, 8:11].all()
    np.testing.assert_array_equal(structure_at_click(previous, grown, Click(9, 1)), previous)


def test_every_voxel_clicked_keeps_its_last_clicks_label():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 2:5] = True
    box = (slice(1, 9), slice(1, 11))
    proposed = np.zeros((8, 10), bool)               # a network that follows nothing
    clicks = [Click(6, 8), Click(3, 3, False), Click(6, 8, False), Click(7, 2)]
    settled = settle(mask, clicks, box, proposed)
    expected = mask[box].copy()                      # the merge: nothing under the last click changed
    expected[6 - 1, 8 - 1], expected[3 - 1, 3 - 1], expected[7 - 1, 2 - 1] = False, False, True
    np.testing.assert_array_equal(settled, expected)
    np.testing.assert_array_equal(settle(mask, clicks, box, proposed, merge=False), proposed)


def test_a_click_that_agrees_with_the_mask_changes_it_only_its_own_way():
    """A tester's adding click in the middle of a lesion trimmed its edge: a click where the
    mask is already as the click says points at nothing wrong."""
    mask = np.zeros((20, 20), bool)
    mask[4:14, 4:14] = True
    box = (slice(0, 20), slice(0, 20))
    proposed = np.zeros((20, 20), bool)
    proposed[6:16, 5:13] = True               # the network moves the edge: grows below, trims the sides
    for clicks in ([Click(9, 9)], [Click(2, 2, False), Click(9, 9)]):
        settled = settle(mask, clicks, box, proposed)
        assert settled[mask].all()                         # nothing of the lesion taken
        assert settled[14:16, 5:13].all()                  # what the network grows, taken
    settled = settle(mask, [Click(18, 18, False)], box, proposed)  # off the mask, off the proposal
    np.testing.assert_array_equal(settled, mask)
    grown = mask.copy()
    grown[3:17, 4:14] = True
    settled = settle(mask, [Click(3, 9, False)], box, grown)  # a removing click just off the lesion
    np.testing.assert_array_equal(settled, mask)           # never adds


# -- learning -------------------------------------------------------------------------------

def _ellipse_case():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    labels = np.zeros((3, 48, 48), np.uint8)
    labels[:, (yy - 22) ** 2 / 100 + (xx - 26) ** 2 / 49 < 1] = 1
    image = (labels * 100 + rng.normal(0, 15, labels.shape)).astype(np.float32)
    return InteractiveCase("ellipse", image, labels)


def test_a_tiny_network_learns_a_fixed_case_and_clicks_raise_its_dice(tmp_path):
    case = _ellipse_case()
    preprocessing = {**PREPROCESSING, "input_size": [32, 32]}
    config = InteractiveConfig(output=tmp_path, input_size=32, base_channels=4, depth=2, batch_size=8,
                               max_rounds=1, augment=False)
    torch.manual_seed(0)
    model = UNet(6, 2, 4, 2, "batch")
    simulation = ClickSimulation([case], config, preprocessing)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_function = build_loss("ce+dice")
    rng = np.random.default_rng(0)
    for _ in range(40):
        model.train()
        x, y = simulation.batch(model, rng, 8)
        assert x.shape == (8, 6, 32, 32) and y.shape == (8, 32, 32)
        loss = loss_function(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    clicker = ClickModel(model, {"preprocessing": preprocessing})
    reference = case.labels[1] == 1
    for start in (np.zeros_like(reference), np.roll(reference, 5, axis=1)):
        mask, clicks, scores = start.copy(), [], [dice(start, reference)]
        for _ in range(3):
            click = error_click(mask, reference)
            if click is None:
                break
            clicks.append(click)
            box, inside = clicker.refine(case.image, 1, mask, clicks)
            mask[box] = inside
            scores.append(dice(mask, reference))
        assert scores[-1] > max(scores[0], 0.8), scores


def test_training_crops_are_square_in_mm_on_pixels_twice_as_tall_as_wide():
    """A disc of 20 mm radius on rows of 2 mm and columns of 1 mm (10 x 20 pixels): every
    training target shows it round, flipped and transposed alike (``crop_box``'s
    pixel size follows a transposed slice). A crop square in pixels showed it 1:2."""
    yy, xx = np.mgrid[:128, :256]
    labels = np.zeros((3, 128, 256), np.uint8)
    labels[:, ((yy - 64) * 2.0) ** 2 + (xx - 128) ** 2 <= 400] = 1
    image = (labels * 100 + np.random.default_rng(0).normal(0, 5, labels.shape)).astype(np.float32)
    case = InteractiveCase("disc", image, labels, pixel_size=(2.0, 1.0))
    preprocessing = {**PREPROCESSING, "input_size": [32, 32]}
    config = InteractiveConfig(output="unused", input_size=32, base_channels=4, depth=2, max_rounds=0,
                               absent_share=0, drop_mask=0)
    simulation = ClickSimulation([case], config, preprocessing)
    rng = np.random.default_rng(1)
    for _ in range(4):
        _, targets = simulation.batch(UNet(6, 2, 4, 2, "batch"), rng, 8)
        for target in targets.numpy().astype(bool):
            rows, columns = np.flatnonzero(target.any(axis=1)), np.flatnonzero(target.any(axis=0))
            assert 0.8 <= len(rows) / len(columns) <= 1.25, (len(rows), len(columns))


def test_perturbed_masks_are_seeded_and_spoil_the_reference():
    yy, xx = np.mgrid[:64, :64]
    reference = (yy - 30) ** 2 + (xx - 34) ** 2 < 144
    masks = [perturb(reference, np.random.default_rng(seed)) for seed in range(20)]
    assert all(np.array_equal(m, perturb(reference, np.random.default_rng(n))) for n, m in enumerate(masks))
    scores = [dice(m, reference) for m in masks]
    assert max(scores) < 1 and np.mean(scores) > 0.3


def test_validation_objects_all_start_below_the_goal():
    """A large disc, where one perturbation in three left Dice above 0.90: the reviewer
    (as ``bench clicks``) clicks only objects below 0.90, perturbed starts as predictions."""
    yy, xx = np.mgrid[:96, :96]
    labels = np.zeros((12, 96, 96), np.uint8)
    labels[:, (yy - 48) ** 2 + (xx - 48) ** 2 < 900] = 1
    close, far = labels.copy(), np.roll(labels, 20, axis=2)
    close[:, 48, 18:22] = 0  # Dice 0.998
    case = InteractiveCase("disc", labels.astype(np.float32), labels, predictions=[close, far])
    objects = validation_objects([case], 36)
    assert {o.start for o in objects} == {"prediction", "perturbed", "empty"}
    assert all(dice(o.start_mask, o.reference) < 0.90 for o in objects)
    again = validation_objects([case], 36)
    assert all(np.array_equal(a.start_mask, b.start_mask) for a, b in zip(objects, again))


def test_review_summary_counts_as_the_reviewer_does():
    traces = [[0.5, 0.8, 0.92],             # NoC@90 2, NoC@85 2; stopped: Dice@3, @5 are 0.92
              [0.95],                       # already there: 0 clicks
              [0.2, 0.4, 0.3] + [0.6] * 18]  # never: 20; one click of 20 lowered it
    figures = review_summary(traces, max_clicks=20)
    assert figures["noc90"] == pytest.approx((2 + 0 + 20) / 3)
    assert figures["noc85"] == pytest.approx((2 + 0 + 20) / 3)
    assert figures["dice_1"] == pytest.approx((0.8 + 0.95 + 0.4) / 3)
    assert figures["dice_3"] == pytest.approx((0.92 + 0.95 + 0.6) / 3)
    assert figures["never90"] == pytest.approx(1 / 3)
    assert figures["lowering"] == pytest.approx(1 / 22)


# -- the command ----------------------------------------------------------------------------

TINY = ["--input-size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "4",
        "--samples-per-epoch", "8"]


def test_train_interactive_on_tiny_phantoms_of_both_tasks(tmp_path, capsys, monkeypatch):
    seg = _segmentation_checkpoint(tmp_path / "cardiac_seg.safetensors")
    out = tmp_path / "run"
    # A checkpoint that fits no dataset given is refused, not recorded as a recipe it never was.
    assert main(["train", "--interactive", "--phantom", "lung", "--cases", "2", "--epochs", "1",
                 "--from-model", str(seg), "-o", str(tmp_path / "refused"), *TINY]) == 2
    assert "cardiac_seg.safetensors predicts right ventricle" in capsys.readouterr().err
    assert main(["train", "--interactive", "--phantom", "cardiac", "--phantom", "lung", "--cases", "2",
                 "--epochs", "1", "--from-model", str(seg), "-o", str(out), *TINY]) == 0
    assert "segview: cardiac_seg.safetensors predicts other classes than" in capsys.readouterr().err
    meta = read_metadata(out / "best.safetensors")
    assert meta["task"] == "interactive" and [c["name"] for c in meta["classes"]] == ["background", "class"]
    assert meta["architecture"]["in_channels"] == 6 and meta["preprocessing"]["input_size"] == [32, 32]
    assert meta["validation"]["selected_by"] == "val_dice_3" and meta["validation"]["objects"] > 0
    training = meta["training"]
    assert [d["source"] for d in training["datasets"]] == ["phantom cardiac, seeds 0..1", "phantom lung, seeds 0..1"]
    assert training["from_models"][0]["name"] == "cardiac_seg.safetensors"
    assert "lung" in training["notes"][0]  # the cardiac checkpoint does not predict the lung cases
    assert set(training["recipe"]["starts"]) == {"prediction", "perturbed", "empty"}
    with open(out / "log.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 1 and {"val_dice_1", "val_dice_3", "val_dice_5", "val_noc90"} <= set(rows[0])
    assert (out / "curves.png").stat().st_size > 0 and (out / "last.safetensors").exists()
    assert ClickModel.from_checkpoint(out / "best.safetensors").meta["task"] == "interactive"
    capsys.readouterr()
    assert main(["info", str(out / "best.safetensors")]) == 0
    held_out = len(training["split"]["validation"])
    assert f"({held_out} of the cases held out for validation); 1 epoch, 1 process(es)" in capsys.readouterr().out
    # Resumable: one more epoch continues the saved run; more CPU processes than cores are said.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    capsys.readouterr()
    assert main(["train", "--interactive", "--phantom", "cardiac", "--phantom", "lung", "--cases", "2",
                 "--epochs", "2", "--from-model", str(seg), "-o", str(out), "--resume", *TINY, "--rounds", "1"]) == 0
    err = capsys.readouterr().err
    assert "torchrun started 4 processes on this machine's 2 cores" in err
    # a helper's --lr and --rounds were dropped unsaid, as train's were before
    assert "--resume goes on with the settings the run started with; not taken: --rounds 1 (the run's: 3)" in err
    assert "--epochs 2 lengthens the run of 1 epoch." in err
    with open(out / "log.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1", "2"]
    # Fewer epochs than those done cannot be had: said, not dropped unsaid (as train's).
    assert main(["train", "--interactive", "--phantom", "cardiac", "--phantom", "lung", "--cases", "2",
                 "--epochs", "1", "--from-model", str(seg), "-o", str(out), "--resume", *TINY]) == 2
    assert "--epochs 1 with --resume: the run has completed 2 of its 2 epochs" in capsys.readouterr().err
    # Without --epochs the finished run is said to be finished, and left as it is ("resuming at epoch 3 of 2").
    log = (out / "log.csv").read_bytes()
    assert main(["train", "--interactive", "--phantom", "cardiac", "--phantom", "lung", "--cases", "2",
                 "--from-model", str(seg), "-o", str(out), "--resume", *TINY]) == 0
    assert "the run has already finished its 2 epochs: nothing to resume" in capsys.readouterr().err
    assert (out / "log.csv").read_bytes() == log


@pytest.mark.slow
def test_two_cpu_processes_train_the_click_model_with_ddp(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "segview", "train", "--interactive", "--phantom", "cardiac", "--cases", "3", "--epochs", "1",
               "-o", str(tmp_path), *TINY, "--device", "cpu"]  # CPU processes on a GPU machine too
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    meta = read_metadata(tmp_path / "best.safetensors")
    assert meta["task"] == "interactive" and meta["training"]["world_size"] == 2
    with open(tmp_path / "log.csv") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["1"]


@pytest.mark.parametrize("arguments, message", [
    (["--phantom", "cardiac", "--from-model", "x.safetensors"], "go with --interactive"),
    (["--interactive", "--phantom", "cardiac", "--reviewed-only"], "without --reviewed-only"),
    (["--interactive"], "a dataset folder or --phantom"),
    (["--interactive", "--phantom", "cardiac", "--ct-window", "-100", "200"], "--ct-window does not go with"),
    (["--interactive", "--phantom", "lung", "--foreground-fraction", "0.5"], "--foreground-fraction does not go with"),
])
def test_train_interactive_refuses_what_does_not_go_with_it(tmp_path, capsys, arguments, message):
    assert main(["train", *arguments, "-o", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("axis", [1, 2])
def test_a_mirrored_slice_is_corrected_as_the_mirror_image(tmp_path, axis):
    """The four flips are a group: a scan stored with its rows (or columns) reversed gets
    the mirrored answer, click for click, where the crops are mirror images (here the whole
    slice: a smaller crop may sit a pixel off its mirror, as an integer box around a centre
    must round one way)."""
    model = ClickModel.from_checkpoint(_interactive_checkpoint(tmp_path / "clicks.safetensors", seed=5),
                                       runtime="torch")
    volume = np.random.default_rng(3).normal(size=(3, 60, 60)).astype(np.float32)
    mask = np.zeros((60, 60), bool)
    mask[18:40, 12:35] = True
    clicks = [Click(25, 40), Click(30, 20, positive=False)]
    size = volume.shape[axis]
    model.focus_size = None  # the whole slice for the second click too

    def mirrored(c):
        return Click(size - 1 - c.y, c.x, c.positive) if axis == 1 else Click(c.y, size - 1 - c.x, c.positive)

    for n in (1, 2):  # the first click (the structure clicked) and a further one (the merge)
        box, answer = model.refine(volume, 1, mask, clicks[:n])
        mirror_box, mirror_answer = model.refine(np.flip(volume, axis).copy(), 1, np.flip(mask, axis - 1).copy(),
                                                 [mirrored(c) for c in clicks[:n]])
        assert box == mirror_box == (slice(0, 60), slice(0, 60))
        assert (np.flip(mirror_answer, axis - 1) != answer).sum() == 0


def test_refine_averages_the_logits_of_the_crop_and_its_mirror_images(tmp_path):
    path = _interactive_checkpoint(tmp_path / "clicks.safetensors", seed=5)
    model = ClickModel.from_checkpoint(path, runtime="torch")
    volume = np.random.default_rng(2).normal(size=(3, 70, 60)).astype(np.float32)
    mask = np.zeros((70, 60), bool)
    mask[20:45, 15:40] = True
    clicks = [Click(30, 42)]
    box, x = prepare(volume, 1, mask, clicks, model.preprocessing)
    with torch.no_grad():  # by hand: each mirror image through the network, mirrored back
        logits = sum(torch.flip(model.model(torch.flip(x, dims)), dims) for dims in ([], [3], [2], [2, 3])) / 4
    expected = resize_bilinear((logits[0, 1] - logits[0, 0]).numpy(), mask[box].shape) > 0
    refined_box, refined = model.refine(volume, 1, mask, clicks, merge=False)  # the network's whole answer
    assert refined_box == box
    assert (refined != expected).mean() < 0.001  # only pixels at a tie may differ
    model.mirrors = False
    with torch.no_grad():
        single = model.model(x)
    expected = resize_bilinear((single[0, 1] - single[0, 0]).numpy(), mask[box].shape) > 0
    assert (model.refine(volume, 1, mask, clicks, merge=False)[1] != expected).mean() < 0.001


def test_a_crop_larger_than_the_network_takes_its_changes_not_its_resampling():
    """A removing click on a 1024 x 1024 slice (a crop resized 2.5:1) moved the lesion's
    whole edge by the resizing's jitter: only what the network changed is written."""
    from segview.ml.interactive import changes_only, resize_bilinear

    yy, xx = np.mgrid[:240, :240]
    previous = (yy - 120) ** 2 / 70 ** 2 + (xx - 110) ** 2 / 55 ** 2 <= 1  # an ellipse, at the crop's pixels
    # A network that echoes what it saw (logits linear in its input's mask), decoded as
    # ``decode`` does: the logits resized back to the crop, then thresholded.
    echoed = resize_bilinear(resize_bilinear(previous.astype(np.float32), (96, 96)), (240, 240)) > 0.5
    assert (echoed != previous).sum() > 50  # the resizing alone moves the edge
    np.testing.assert_array_equal(changes_only(previous, echoed, 96), previous)
    hole = echoed & ~((yy - 120) ** 2 + (xx - 110) ** 2 <= 20 ** 2)  # and a real change: a hole cut
    kept = changes_only(previous, hole, 96)
    np.testing.assert_array_equal(kept, previous & ~((yy - 120) ** 2 + (xx - 110) ** 2 <= 20 ** 2))
    np.testing.assert_array_equal(changes_only(previous[:96, :96], hole[:96, :96], 96), hole[:96, :96])
