"""Losses against MONAI and hand-worked formulas; identities; gradients; bad options."""
import math

import pytest
import torch
from monai.losses import DiceCELoss, DiceLoss as MonaiDiceLoss
from torch.nn import functional as F

from segview.ml.losses import LOSS_NAMES, build_loss

torch.set_default_dtype(torch.float32)


def _case(seed, batch=None, classes=None, size=None, empty_class=False):
    generator = torch.Generator().manual_seed(seed)
    batch = batch or int(torch.randint(1, 4, (1,), generator=generator))
    classes = classes or int(torch.randint(2, 5, (1,), generator=generator))
    h, w = size or tuple(int(s) for s in torch.randint(3, 12, (2,), generator=generator))
    logits = torch.randn(batch, classes, h, w, generator=generator) * 3
    target = torch.randint(0, classes, (batch, h, w), generator=generator)
    if empty_class:
        target[target == classes - 1] = 0
    return logits, target


CASES = [dict(seed=s, empty_class=s % 3 == 0) for s in range(12)]


# -- MONAI as the reference -------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_dice_matches_monai(case, include_background, squared, batch):
    logits, target = _case(**case)
    smooth = 0.5
    ours = build_loss("dice", include_background=include_background, squared=squared,
                      batch=batch, smooth=smooth)(logits, target)
    reference = MonaiDiceLoss(include_background=include_background, to_onehot_y=True,
                              softmax=True, squared_pred=squared, batch=batch,
                              smooth_nr=smooth, smooth_dr=smooth)(logits, target[:, None])
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("include_background", [True, False])
def test_iou_matches_monai_jaccard(case, include_background):
    logits, target = _case(**case)
    smooth = 0.5
    ours = build_loss("iou", include_background=include_background, smooth=smooth)(logits, target)
    # MONAI writes the Jaccard score as (2 I + s) / (2 U + s); with s doubled that is ours.
    reference = MonaiDiceLoss(include_background=include_background, to_onehot_y=True,
                              softmax=True, jaccard=True, smooth_nr=2 * smooth,
                              smooth_dr=2 * smooth)(logits, target[:, None])
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("case", CASES[:6])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_ce_plus_dice_matches_monai(case, alpha):
    logits, target = _case(**case)
    ours = build_loss("ce+dice", alpha=alpha, include_background=True, smooth=1.0)(logits, target)
    reference = DiceCELoss(include_background=True, to_onehot_y=True, softmax=True,
                           smooth_nr=1.0, smooth_dr=1.0, lambda_ce=1.0, lambda_dice=alpha)(
        logits, target[:, None])
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-6)


# -- hand-worked values -----------------------------------------------------------------

def test_dice_by_hand():
    # Two pixels, two classes; p(foreground) = 0.8 at the foreground pixel, 0.25 at the other.
    logits = torch.log(torch.tensor([[[0.2, 0.75]], [[0.8, 0.25]]])).reshape(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    # foreground: I = 0.8, sum p = 1.05, sum g = 1
    expected = 1 - (2 * 0.8 + 1) / (1.05 + 1 + 1)
    assert build_loss("dice")(logits, target).item() == pytest.approx(expected, abs=1e-6)
    squared = 1 - (2 * 0.8 + 1) / (0.8**2 + 0.25**2 + 1 + 1)
    assert build_loss("dice", squared=True)(logits, target).item() == pytest.approx(squared, abs=1e-6)
    iou = 1 - (0.8 + 1) / (1.05 + 1 - 0.8 + 1)
    assert build_loss("iou")(logits, target).item() == pytest.approx(iou, abs=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
def test_bce_is_equation_5(channels):
    logits, target = _case(4, classes=2)
    target = target.clamp(max=1)
    if channels == 1:
        logits = logits[:, 1:]
        p = torch.sigmoid(logits[:, 0])
    else:
        p = torch.softmax(logits, dim=1)[:, 1]
    y = target.float()
    expected = -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert build_loss("bce")(logits, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    nll1 = -math.log(math.e / (1 + math.e))
    expected = (1 * nll0 + 3 * nll1) / (1 + 3)
    loss = build_loss("ce", weight=[1.0, 3.0])(logits, target)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


# -- identities -------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_kl_with_hard_targets_equals_cross_entropy(case):
    logits, target = _case(**case)
    kl = build_loss("kl")(logits, target)
    ce = F.cross_entropy(logits, target)
    assert kl.item() == pytest.approx(ce.item(), rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.05, 0.2])
def test_kl_with_smoothing_is_cross_entropy_minus_target_entropy(smoothing):
    logits, target = _case(5, classes=4)
    q_true, q_other = 1 - smoothing + smoothing / 4, smoothing / 4
    entropy = -(q_true * math.log(q_true) + 3 * q_other * math.log(q_other))
    kl = build_loss("kl", label_smoothing=smoothing)(logits, target)
    ce = F.cross_entropy(logits, target, label_smoothing=smoothing)
    assert kl.item() == pytest.approx(ce.item() - entropy, rel=1e-5)


def test_kl_direction_is_target_to_prediction():
    logits, target = _case(6, classes=3)
    q = F.one_hot(target, 3).movedim(-1, 1).float() * 0.7 + 0.1
    expected = F.kl_div(logits.log_softmax(1), q, reduction="none").sum(1).mean()
    kl = build_loss("kl", label_smoothing=0.3)(logits, target)
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)


def test_alpha_zero_is_cross_entropy_and_never_computes_dice(monkeypatch):
    logits, target = _case(7)
    loss = build_loss("ce+dice", alpha=0.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("the Dice term was computed")

    monkeypatch.setattr(loss.dice, "forward", forbidden)
    assert torch.equal(loss(logits, target), F.cross_entropy(logits, target))


# -- gradients --------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("smooth", [1.0, 0.0])
@pytest.mark.parametrize("target_kind", ["all background", "empty class"])
def test_gradients_are_finite(name, smooth, target_kind):
    logits, target = _case(8, batch=2, classes=2 if name == "bce" else 3, size=(6, 6))
    target = torch.zeros_like(target) if target_kind == "all background" else target.clamp(max=1)
    options = {"smooth": smooth} if name in ("dice", "iou", "ce+dice") else {}
    logits.requires_grad_(True)
    loss = build_loss(name, **options)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # Without smoothing, Dice of an absent class is 0 whatever the prediction: no signal.
    if smooth or name not in ("dice", "iou") or target_kind != "all background":
        assert logits.grad.abs().sum() > 0


def test_losses_compute_in_float32_under_bf16_autocast():
    logits, target = _case(9, batch=2, classes=3, size=(8, 8))
    expected = build_loss("ce+dice")(logits, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = build_loss("ce+dice")(logits.bfloat16(), target)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), rel=2e-2)


@pytest.mark.parametrize("name, shape", [("ce", (2, 5, 6)), ("bce", (2, 5, 6)),
                                         ("kl", (2, 5, 6)), ("dice", (2, 1)), ("iou", (2, 1))])
def test_unreduced_shapes(name, shape):
    logits, target = _case(10, batch=2, classes=2, size=(5, 6))
    assert build_loss(name, reduction="none")(logits, target).shape == shape


# -- bad options and inputs -------------------------------------------------------------

@pytest.mark.parametrize("name, alpha, options, message", [
    ("focal", 1.0, {}, "unknown loss"),
    ("dice", 1.0, {"smooth": -1}, "smooth"),
    ("dice", 1.0, {"weight": [1, 2]}, "no option weight"),
    ("ce", 1.0, {"label_smoothing": 1.0}, "label_smoothing"),
    ("ce", 1.0, {"weight": [1, -1]}, "non-negative"),
    ("ce", 0.5, {}, "alpha"),
    ("ce+dice", -1.0, {}, "alpha"),
    ("ce+dice", float("nan"), {}, "alpha"),
    ("ce+dice", 1.0, {"reduction": "none"}, "different shapes"),
    ("ce+dice", 1.0, {"colour": 3}, "no option colour"),
    ("kl", 1.0, {"reduction": "median"}, "reduction"),
    ("bce", 1.0, {"pos_weight": 0}, "pos_weight"),
])
def test_contradictory_options_are_refused_at_construction(name, alpha, options, message):
    with pytest.raises(ValueError, match=message):
        build_loss(name, alpha=alpha, **options)


def test_bad_inputs_are_explained():
    logits, target = _case(11, batch=2, classes=3, size=(4, 4))
    with pytest.raises(ValueError, match="int64"):
        build_loss("dice")(logits, target.int())
    with pytest.raises(ValueError, match="does not match"):
        build_loss("ce")(logits, target[:, :2])
    with pytest.raises(ValueError, match="two classes"):
        build_loss("bce")(logits, target)
    with pytest.raises(ValueError, match="3 classes"):
        build_loss("ce", weight=[1.0, 2.0])(logits, target)
