"""The settings of a training run (``TrainConfig``, the click model's ``InteractiveConfig``)
and the presets over them. Free of torch, so that ``segview train --help`` states the
defaults these classes hold (it read numbers typed a second time, which drifted) and stays quick.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: CT is clipped to this window (HU) and scaled to [0, 1] unless told otherwise.
DEFAULT_CT_WINDOW = (-1000.0, 1000.0)


@dataclass
class TrainConfig:
    output: str
    loss: str = "ce+dice"
    alpha: float = 1.0
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    schedule: str = "constant"
    base_channels: int = 32
    depth: int = 4
    norm: str | None = "batch"
    input_size: int = 256
    validation_fraction: float = 0.2
    augment: bool = True
    foreground_fraction: float = 0.33
    seed: int = 0
    ct_window: tuple[float, float] = DEFAULT_CT_WINDOW
    device: str | None = None
    init: str | None = None          # fine-tune this checkpoint (its network, classes, preprocessing)
    replay_share: float = 0.0        # share of each epoch's draws from the replay data
    min_steps: int = 0               # an epoch takes at least this many steps (its slices drawn again)

    def __post_init__(self):
        self.output = str(self.output)
        self.ct_window = tuple(self.ct_window)
        if self.epochs < 1 or self.batch_size < 1 or self.input_size < 8:
            raise ValueError("epochs and batch size must be at least 1, the input size at least 8")
        if self.base_channels < 1 or self.depth < 1:  # else the UNet's ValueError came out as a traceback
            raise ValueError("the base channels and the depth must be at least 1")
        if not self.ct_window[0] < self.ct_window[1]:  # else every voxel scaled to 0 or 1, unsaid
            raise ValueError("the CT window needs LOW below HIGH")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError("the learning rate must be a positive number")
        if not 0 <= self.foreground_fraction <= 1:
            raise ValueError("the foreground fraction must lie in [0, 1]")
        if self.min_steps < 0:
            raise ValueError("the least steps an epoch must be 0 or more")
        if not 0 <= self.replay_share < 1:
            raise ValueError("the replay share must lie in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"the learning-rate schedule must be one of {', '.join(SCHEDULES)}")
        from .losses import build_loss  # torch: only once a run is configured

        build_loss(self.loss, self.alpha)  # refuses unknown losses and bad alphas now


#: Learning rate of an epoch: the paper keeps it constant; "poly" is nnU-Net's decay.
SCHEDULES = {
    "constant": lambda lr, epoch, epochs: lr,
    "poly": lambda lr, epoch, epochs: lr * (1 - epoch / epochs) ** 0.9,
}

#: Fine-tuning a checkpoint (``init``) on a few corrected cases: a third of the training
#: learning rate, constant, for a short run; the held-out reviewed slices pick the epoch.
#: At least 8 steps an epoch: on 8 reviewed slices (one batch) 20 epochs were 20 noisy
#: Adam steps, and a tester's cardiac_ce fine-tuned on its own reviewed slices lost Dice on
#: them (0.895 -> 0.829); with 8 steps an epoch it gained (0.906).
FINETUNE_PRESET: dict[str, Any] = dict(lr=3e-4, epochs=20, schedule="constant", min_steps=8)
#: With replay data, this share of each epoch's draws comes from it.
DEFAULT_REPLAY_SHARE = 0.5

#: The paper's protocol: 256 x 256 slices, Adam with lr 0.01, 100 epochs, the original UNet,
#: slices drawn uniformly.
PAPER_PRESET = dict(input_size=256, lr=0.01, schedule="constant", epochs=100, base_channels=64,
                    depth=4, norm=None, foreground_fraction=0.0)


@dataclass
class InteractiveConfig(TrainConfig):
    """``TrainConfig`` with the click model's defaults and the reviewer simulation's
    settings. ``samples_per_epoch``: crops an epoch trains on (all ranks together)."""

    epochs: int = 12
    batch_size: int = 16
    schedule: str = "poly"
    base_channels: int = 16
    depth: int = 4
    input_size: int = 96
    from_models: tuple[str, ...] = ()
    samples_per_epoch: int = 2048
    max_rounds: int = 3
    drop_mask: float = 0.1
    absent_share: float = 0.1
    validation_objects: int = 96
    validation_clicks: int = 20
    cpu_bf16: bool = True   # bf16 autocast on a CPU that has bf16 units (AMX, AVX512-BF16)

    def __post_init__(self):
        super().__post_init__()
        self.from_models = tuple(str(p) for p in self.from_models)
        if self.samples_per_epoch < 1 or self.validation_objects < 0 or self.validation_clicks < 5:
            raise ValueError("samples per epoch must be at least 1, validation clicks at least 5")
        if self.max_rounds < 0:
            raise ValueError("the rounds of clicks must be 0 or more")
        for name in ("drop_mask", "absent_share"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must lie in [0, 1)")

