"""The loss family of the paper and its relatives, one argument vocabulary for all.

Every loss takes ``logits`` (B, C, H, W) straight from the network (any number of spatial
axes works) and ``target`` (B, H, W) int64 class indices, and computes in float32 even
under autocast. ``p`` below is softmax(logits) over C, ``g`` the one-hot target; sums run
over pixels. ``reduction`` is "mean" (default), "sum" or "none" (shapes in each class).

    ce        cross-entropy                -sum_c g_c log p_c, averaged over pixels
    bce       binary cross-entropy         -[y log p + (1 - y) log(1 - p)]         (eq. 5)
    dice      soft Dice                    1 - (2 sum p g + s) / (sum p + sum g + s)
              squared=True (V-Net)         1 - (2 sum p g + s) / (sum p^2 + sum g^2 + s)  (eq. 7)
    iou       soft Jaccard                 1 - (I + s) / (U + s),  I = sum p g,  U = sum p + sum g - I
    kl        KL(target || prediction)     sum_c q_c (log q_c - log p_c)
    ce+dice   CE + alpha * Dice                                                        (eq. 8)

``build_loss(name, alpha=1.0, **options)`` makes any of them; contradictory or unknown
options raise ValueError there, not in the middle of training.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn
from torch.nn import functional as F

LOSS_NAMES = ("ce", "bce", "dice", "iou", "kl", "ce+dice")
REDUCTIONS = ("mean", "sum", "none")


class SegmentationLoss(nn.Module):
    """Checks shapes and reduces; subclasses implement ``_loss`` in float32."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 3:
            raise ValueError(f"logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
        if target.dtype != torch.int64:
            raise ValueError(f"target must hold int64 class indices, not {target.dtype}")
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"target {tuple(target.shape)} does not match logits "
                             f"{tuple(logits.shape)}: expected (B, H, W) for (B, C, H, W)")
        with torch.autocast(logits.device.type, enabled=False):
            return self._reduce(self._loss(logits.float(), target))

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _reduce(self, loss: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class CrossEntropyLoss(SegmentationLoss):
    """-sum_c w_c g_c log p_c per pixel; "mean" divides by the summed weights of the
    pixels' classes as torch does. ``weight``: one non-negative weight per class.
    Unreduced shape (B, H, W)."""

    def __init__(self, weight=None, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        _check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", None if weight is None else _class_weights(weight))

    def forward(self, logits, target):
        if self.weight is not None and len(self.weight) != logits.shape[1]:
            raise ValueError(f"{len(self.weight)} class weights for {logits.shape[1]} classes")
        return super().forward(logits, target)

    def _loss(self, logits, target):
        # torch's weighted mean is not the mean of the unreduced values, so reduce in torch.
        return F.cross_entropy(logits, target, weight=self.weight, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)

    def _reduce(self, loss):
        return loss


class BinaryCrossEntropyLoss(SegmentationLoss):
    """-[y log p + (1 - y) log(1 - p)] with y = (target == 1), for two classes.

    With C = 2 logits, p = softmax(logits)[:, 1] = sigmoid(l1 - l0), computed from the
    logit difference so it never takes log(0); with C = 1, p = sigmoid(l0).
    ``pos_weight`` multiplies the y log p term. Unreduced shape (B, H, W)."""

    def __init__(self, pos_weight: float | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        if pos_weight is not None and not (pos_weight > 0 and math.isfinite(pos_weight)):
            raise ValueError(f"pos_weight must be a positive number, not {pos_weight!r}")
        self.pos_weight = pos_weight

    def _loss(self, logits, target):
        channels = logits.shape[1]
        if channels not in (1, 2):
            raise ValueError(f"bce is for two classes (background, foreground); the network "
                             f"has {channels}: use ce, dice or ce+dice")
        if target.numel() and int(target.max()) > 1:
            raise ValueError("bce targets must be 0 or 1")
        logit = logits[:, 1] - logits[:, 0] if channels == 2 else logits[:, 0]
        pos_weight = None if self.pos_weight is None else logit.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(logit, target.float(), pos_weight=pos_weight,
                                                  reduction="none")


class _SoftOverlapLoss(SegmentationLoss):
    """Shared by Dice and IoU: per-class sums of p g, p and g (or p^2, g^2 when squared).

    ``include_background``: score class 0 too (default False: the background of a medical
    image is most of it and its near-perfect overlap only dilutes the signal).
    ``batch``: sum over the whole batch before dividing (one score per class) instead of
    per image (one per image and class); per-image is the paper's and MONAI's default.
    ``smooth`` keeps empty classes finite and informative: an image without the class
    scores near 1 only when the prediction is empty too. With smooth = 0 such an image
    scores 0 whatever the prediction (no gradient), though never NaN. Unreduced shape (B, C') or (C',) with ``batch``.
    """

    def __init__(self, include_background: bool = False, smooth: float = 1.0,
                 squared: bool = False, batch: bool = False, reduction: str = "mean"):
        super().__init__(reduction)
        if not (smooth >= 0 and math.isfinite(smooth)):
            raise ValueError(f"smooth must be a finite number >= 0, not {smooth!r}")
        self.include_background, self.smooth = include_background, float(smooth)
        self.squared, self.batch = squared, batch

    def _loss(self, logits, target):
        channels = logits.shape[1]
        first = 0 if self.include_background else 1
        if channels - first < 1:
            raise ValueError("no class left to score: a single-channel output needs "
                             "include_background=True")
        probabilities = logits.softmax(dim=1)[:, first:]
        one_hot = _one_hot(target, channels)[:, first:]
        axes = [0, *range(2, logits.ndim)] if self.batch else list(range(2, logits.ndim))
        intersection = (probabilities * one_hot).sum(axes)
        if self.squared:
            probabilities = probabilities.square()
        total = probabilities.sum(axes) + one_hot.sum(axes)  # g^2 = g for a one-hot g
        return 1 - self._score(intersection, total)

    def _score(self, intersection, total):
        raise NotImplementedError


class DiceLoss(_SoftOverlapLoss):
    __doc__ = ("Soft Dice: 1 - (2 sum p g + smooth) / (sum p + sum g + smooth); with "
               "squared=True, sum p^2 + sum g^2 below (V-Net).\n\n"
               + (_SoftOverlapLoss.__doc__ or ""))

    def _score(self, intersection, total):
        return (2 * intersection + self.smooth) / (total + self.smooth).clamp_min(_TINY)


class IoULoss(_SoftOverlapLoss):
    __doc__ = ("Soft Jaccard: 1 - (I + smooth) / (U + smooth), I = sum p g, "
               "U = sum p + sum g - I.\n\n" + (_SoftOverlapLoss.__doc__ or ""))

    def _score(self, intersection, total):
        return (intersection + self.smooth) / (total - intersection + self.smooth).clamp_min(_TINY)


class KLDivergenceLoss(SegmentationLoss):
    """KL(q || p) = sum_c q_c (log q_c - log p_c) per pixel: the divergence of the model's
    prediction p from the target distribution q (torch's ``kl_div`` direction), with
    q = (1 - e) g + e / C for ``label_smoothing`` e. It differs from cross-entropy with the
    same smoothing by the entropy of q, a constant, so with a hard one-hot target (e = 0)
    it equals CE exactly. Unreduced shape (B, H, W)."""

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        _check_label_smoothing(label_smoothing)
        self.label_smoothing = label_smoothing

    def _loss(self, logits, target):
        channels = logits.shape[1]
        q = _one_hot(target, channels)
        if self.label_smoothing:
            q = q * (1 - self.label_smoothing) + self.label_smoothing / channels
        log_p = logits.log_softmax(dim=1)
        return (torch.xlogy(q, q) - q * log_p).sum(dim=1)


class CrossEntropyDiceLoss(nn.Module):
    """CE + alpha * Dice (the paper's equation 8). With alpha = 0 the Dice term is not
    computed at all, so the result is CE exactly. Returns a scalar ("mean" or "sum")."""

    def __init__(self, alpha: float = 1.0, cross_entropy: CrossEntropyLoss | None = None,
                 dice: DiceLoss | None = None):
        super().__init__()
        _check_alpha(alpha)
        self.alpha = float(alpha)
        self.cross_entropy = cross_entropy or CrossEntropyLoss()
        self.dice = dice or DiceLoss()
        if "none" in (self.cross_entropy.reduction, self.dice.reduction):
            raise ValueError("ce+dice adds two losses of different shapes; use reduction "
                             "'mean' or 'sum'")

    def forward(self, logits, target):
        loss = self.cross_entropy(logits, target)
        if self.alpha:
            loss = loss + self.alpha * self.dice(logits, target)
        return loss


def build_loss(name: str, alpha: float = 1.0, **options) -> nn.Module:
    """The loss called ``name`` (one of LOSS_NAMES). ``alpha`` weighs the Dice term of
    "ce+dice" (0 gives plain CE, the paper's baseline) and must stay 1 for the others.
    ``options`` go to the loss's constructor; for "ce+dice", ``weight`` and
    ``label_smoothing`` go to CE and the Dice options to Dice, ``reduction`` to both."""
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSS_NAMES)}")
    if name != "ce+dice":
        if alpha != 1.0:
            raise ValueError(f"alpha weighs the Dice term of 'ce+dice'; it means nothing for "
                             f"{name!r}")
        return _construct(_LOSSES[name], name, options)
    _check_alpha(alpha)
    _check_options(name, options, _accepted(CrossEntropyLoss) | _accepted(DiceLoss))
    ce_options = {key: value for key, value in options.items()
                  if key in _accepted(CrossEntropyLoss)}
    dice_options = {key: value for key, value in options.items() if key in _accepted(DiceLoss)}
    return CrossEntropyDiceLoss(alpha, CrossEntropyLoss(**ce_options), DiceLoss(**dice_options))


_LOSSES = {"ce": CrossEntropyLoss, "bce": BinaryCrossEntropyLoss, "dice": DiceLoss,
           "iou": IoULoss, "kl": KLDivergenceLoss, "ce+dice": CrossEntropyDiceLoss}
_TINY = 1e-7


def _construct(cls, name: str, options: dict):
    _check_options(name, options, _accepted(cls))
    return cls(**options)


def _accepted(cls) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def _check_options(name: str, options: dict, accepted: set[str]) -> None:
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"the {name} loss has no option {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(accepted))}")


def _one_hot(target: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, H, W) int64 -> (B, C, H, W) float32."""
    return F.one_hot(target, channels).movedim(-1, 1).float()


def _class_weights(weight) -> torch.Tensor:
    weight = torch.as_tensor(weight, dtype=torch.float32).flatten()
    if not (torch.isfinite(weight).all() and (weight >= 0).all() and weight.sum() > 0):
        raise ValueError("class weights must be finite, non-negative and not all zero")
    return weight


def _check_label_smoothing(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1), not {value!r}")


def _check_alpha(alpha: float) -> None:
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number >= 0, not {alpha!r}")
