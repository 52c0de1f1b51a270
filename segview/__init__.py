"""segview: review CT/MRI volumes, run a UNet, correct its masks, compare checkpoints."""

__version__ = "0.1.0"
