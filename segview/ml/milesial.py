"""The UNet layout of milesial/Pytorch-UNet, so its state dicts load key for key.

milesial's network is the most used plain PyTorch UNet. This is segview's own
implementation of the same computation with the same module names (``inc``, ``down1``..
``down4``, ``up1``..``up4``, ``outc``, ``double_conv``, ``maxpool_conv``, ``up``, ``conv``),
which is all a state dict depends on:

- DoubleConv: (3x3 convolution, batch norm, ReLU) twice; current versions have no
  convolution bias (``bias=False``), older ones had one (``bias=True``).
- Down: 2x2 max-pooling, then DoubleConv.
- Up: bilinear upsampling (align_corners=True, then DoubleConv with a middle width of
  half its input) or a 2x2 transposed convolution halving the channels; the upsampled
  features are zero-padded to the skip's size and concatenated after it ([skip, up]).
- Widths ``base, 2 base, 4 base, 8 base, 16 base`` (milesial: base 64); with bilinear
  upsampling the bottleneck and the decoder widths are halved.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MilesialUNet(nn.Module):
    """Input (B, in_channels, H, W); logits (B, num_classes, H, W). Sides that are not a
    multiple of 16 work as in milesial's code (the upsampled maps are padded)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, bilinear: bool = False,
                 base_channels: int = 64, bias: bool = False):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes),
                            ("base_channels", base_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "bilinear": bool(bilinear),
                       "base_channels": base_channels, "bias": bool(bias)}
        widths = [base_channels * 2**level for level in range(5)]
        factor = 2 if bilinear else 1
        self.inc = _DoubleConv(in_channels, widths[0], bias=bias)
        self.down1 = _Down(widths[0], widths[1], bias)
        self.down2 = _Down(widths[1], widths[2], bias)
        self.down3 = _Down(widths[2], widths[3], bias)
        self.down4 = _Down(widths[3], widths[4] // factor, bias)
        self.up1 = _Up(widths[4], widths[3] // factor, bilinear, bias)
        self.up2 = _Up(widths[3], widths[2] // factor, bilinear, bias)
        self.up3 = _Up(widths[2], widths[1] // factor, bilinear, bias)
        self.up4 = _Up(widths[1], widths[0], bilinear, bias)
        self.outc = _OutConv(widths[0], num_classes)

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(image)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.down4(x4)
        for up, skip in ((self.up1, x4), (self.up2, x3), (self.up3, x2), (self.up4, x1)):
            x = up(x, skip)
        return self.outc(x)


class _DoubleConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None, bias: bool = False):
        super().__init__()
        c_mid = c_mid or c_out
        self.double_conv = nn.Sequential(
            nn.Conv2d(c_in, c_mid, kernel_size=3, padding=1, bias=bias), nn.BatchNorm2d(c_mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_mid, c_out, kernel_size=3, padding=1, bias=bias), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, bias: bool):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), _DoubleConv(c_in, c_out, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, bilinear: bool, bias: bool):
        super().__init__()
        if bilinear:
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = _DoubleConv(c_in, c_out, c_in // 2, bias=bias)
        else:
            self.up = nn.ConvTranspose2d(c_in, c_in // 2, kernel_size=2, stride=2)
            self.conv = _DoubleConv(c_in, c_out, bias=bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        # Odd sides lose a pixel when pooled; pad the upsampled map back to the skip's size,
        # split between both sides as milesial does.
        dy = skip.shape[-2] - x.shape[-2]
        dx = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class _OutConv(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
