"""MONAI's 2D UNet and BasicUNet, with the ``config`` that segview keeps in checkpoints.

Each class is the MONAI network itself (a subclass adding nothing to the computation, so
state dict keys are MONAI's), built from plain arguments that JSON can hold. segview builds
only these classes, named in a fixed list; it never instantiates a class named by a
config file (MONAI bundles' ``_target_``), so a checkpoint cannot run code of its choice.
"""
from __future__ import annotations

import contextlib
import io

from monai.networks.nets import BasicUNet, UNet


def _layer(value):
    """MONAI's act/norm argument from JSON: "name" or ["name", {options}]."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not isinstance(value[0], str) or not isinstance(value[1], dict):
            raise ValueError(f"a layer is 'name' or ['name', {{options}}], not {value!r}")
        return value[0], dict(value[1])
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"a layer is 'name' or ['name', {{options}}], not {value!r}")


def _positive_ints(name: str, values, length: int | None = None) -> list[int]:
    values = list(values)
    if (not values or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in values)
            or (length is not None and len(values) != length)):
        count = f"{length} " if length is not None else ""
        raise ValueError(f"{name} must be a list of {count}positive integers, not {values!r}")
    return values


class MonaiUNet(UNet):
    """monai.networks.nets.UNet in 2D. Input (B, in_channels, H, W), H and W multiples of the
    product of ``strides``; logits (B, num_classes, H, W)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), kernel_size: int = 3, up_kernel_size: int = 3,
                 num_res_units: int = 0, act="prelu", norm="instance", bias: bool = True,
                 adn_ordering: str = "NDA"):
        channels = _positive_ints("channels", channels)
        strides = _positive_ints("strides", strides, len(channels) - 1)
        super().__init__(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                         channels=channels, strides=strides, kernel_size=kernel_size,
                         up_kernel_size=up_kernel_size, num_res_units=num_res_units, act=_layer(act),
                         norm=_layer(norm), bias=bias, adn_ordering=adn_ordering)
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "channels": channels,
                       "strides": strides, "kernel_size": kernel_size, "up_kernel_size": up_kernel_size,
                       "num_res_units": num_res_units, "act": act, "norm": norm, "bias": bias,
                       "adn_ordering": adn_ordering}

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]


class MonaiBasicUNet(BasicUNet):
    """monai.networks.nets.BasicUNet in 2D (five levels; ``features`` has six widths, the
    last one the output block's). Input (B, in_channels, H, W); logits (B, num_classes, H, W)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, features=(32, 32, 64, 128, 256, 32),
                 act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
                 norm=("instance", {"affine": True}), bias: bool = True, upsample: str = "deconv"):
        features = _positive_ints("features", features, 6)
        with contextlib.redirect_stdout(io.StringIO()):  # BasicUNet prints its features
            super().__init__(spatial_dims=2, in_channels=in_channels, out_channels=num_classes,
                             features=features, act=_layer(act), norm=_layer(norm), bias=bias,
                             upsample=upsample)
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "features": features,
                       "act": list(act) if isinstance(act, tuple) else act,
                       "norm": list(norm) if isinstance(norm, tuple) else norm, "bias": bias,
                       "upsample": upsample}

    @property
    def num_classes(self) -> int:
        return self.config["num_classes"]
