"""UNet of Ronneberger, Fischer and Brox (MICCAI 2015), returning logits.

Per level two 3x3 convolutions, each followed by ReLU (optionally after batch or instance
normalisation); 2x2 max-pooling down; 2x2 transposed convolution up, halving the channels;
the encoder's features concatenated at each level (skip connections); a 1x1 convolution
to ``num_classes`` logits. Channels double at every pooling: ``base_channels * 2**level``.

Input sizes. With ``padding="same"`` (default) the output has the input's height and width.
A side that is not a multiple of ``2**depth`` is padded by edge replication up to the next
multiple and the logits are cropped back, so every size works. ``padding="valid"`` is the
paper's unpadded network: each convolution trims a pixel on every side, skips are
centre-cropped, and the output is smaller than the input (572 -> 388 for depth 4); sizes
that do not pool evenly there raise ValueError with the nearest sizes that do.
"""
from __future__ import annotations

import math
from typing import TypedDict

import torch
from torch import nn
from torch.nn import functional as F

NORMS = (None, "batch", "instance")
PADDINGS = ("same", "valid")


class UNetConfig(TypedDict):
    """``UNet.config``: the constructor's arguments (a plain dict, saved in checkpoints)."""

    in_channels: int
    num_classes: int
    base_channels: int
    depth: int
    norm: str | None
    padding: str


class UNet(nn.Module):
    """Input (B, in_channels, H, W) float; output logits (B, num_classes, H', W')."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 64,
                 depth: int = 4, norm: str | None = None, padding: str = "same"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, not {padding!r}")
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("base_channels", base_channels), ("depth", depth)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.config = UNetConfig(in_channels=in_channels, num_classes=num_classes,
                                 base_channels=base_channels, depth=depth, norm=norm, padding=padding)
        widths = [base_channels * 2**level for level in range(depth + 1)]
        conv_padding = 1 if padding == "same" else 0
        self.encoder = nn.ModuleList(
            _double_conv(c_in, c_out, norm, conv_padding)
            for c_in, c_out in zip([in_channels] + widths[:-1], widths))
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[level + 1], widths[level], kernel_size=2, stride=2)
            for level in reversed(range(depth)))
        self.decoder = nn.ModuleList(
            _double_conv(2 * widths[level], widths[level], norm, conv_padding)
            for level in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.apply(_init_weights)

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.config["padding"] == "valid":
            self._check_valid_size(image.shape[-2:])
            return self._forward(image)
        height, width = image.shape[-2:]
        multiple = 2 ** self.config["depth"]
        pad_h, pad_w = -height % multiple, -width % multiple
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        return self._forward(image)[..., :height, :width]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck's output is not a skip
        for up, block in zip(self.upsample, self.decoder):
            x = up(x)
            x = block(torch.cat([_centre_crop(skips.pop(), x.shape[-2:]), x], dim=1))
        return self.head(x)

    def output_size(self, size: int) -> int:
        """Side of the output for an input side ``size`` (valid padding shrinks it)."""
        if self.config["padding"] == "same":
            return size
        depth = self.config["depth"]
        side: float = size
        for _ in range(depth):
            side = (side - 4) / 2
        side -= 4
        for _ in range(depth):
            side = side * 2 - 4
        return int(side)

    def _check_valid_size(self, shape) -> None:
        for side in shape:
            if not _pools_evenly(side, self.config["depth"]):
                below = next(s for s in range(side, 0, -1) if _pools_evenly(s, self.config["depth"]))
                above = next(s for s in range(side, side + 2**(self.config["depth"] + 2))
                             if _pools_evenly(s, self.config["depth"]))
                raise ValueError(f"an input side of {side} does not pool evenly in a valid-padding "
                                 f"UNet of depth {self.config['depth']}; use {below} or {above}")


def _pools_evenly(side: int, depth: int) -> bool:
    for _ in range(depth):
        side -= 4
        if side <= 0 or side % 2:
            return False
        side //= 2
    return side > 4


def _double_conv(c_in: int, c_out: int, norm: str | None, padding: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (c_in, c_out):
        # A bias before a normalisation layer is cancelled by it, so drop it there.
        layers.append(nn.Conv2d(channels, c_out, kernel_size=3, padding=padding, bias=norm is None))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        elif norm == "instance":
            layers.append(nn.InstanceNorm2d(c_out, affine=True))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _centre_crop(features: torch.Tensor, size) -> torch.Tensor:
    top = (features.shape[-2] - size[0]) // 2
    left = (features.shape[-1] - size[1]) // 2
    return features[..., top:top + size[0], left:left + size[1]]


def _init_weights(module: nn.Module) -> None:
    # The paper's initialisation: Gaussian with standard deviation sqrt(2 / N), N the number
    # of incoming nodes of a neuron (He et al.), which keeps ReLU activations at unit scale.
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_in = module.weight.shape[1] * math.prod(module.kernel_size)
        if isinstance(module, nn.ConvTranspose2d):
            fan_in = module.in_channels * math.prod(module.kernel_size) // math.prod(module.stride)
        nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_in))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
