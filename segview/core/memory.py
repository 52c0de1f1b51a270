"""Whether an image fits in memory, judged from its header before anything is allocated.

A volume that does not fit must be refused with a clear message, not read until the
operating system kills the process: numpy's zero-filled arrays take memory only as they
are written, so the failure would come late, half-way through the slices, without a word.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .errors import VolumeLoadError

GIB = 2 ** 30


def available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """Memory the system can give without swapping (Linux's MemAvailable); None where
    it cannot be read (another system): then nothing is refused."""
    try:
        with open(meminfo) as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def session_bytes(shape, itemsize: int, copies: int = 1) -> int:
    """Bytes to open an image of ``shape`` (z, y, x) with voxels of ``itemsize`` bytes:
    the image (``copies`` of it at once while a reader converts it) and its uint8 labels."""
    voxels = int(np.prod(shape, dtype=np.int64))
    return voxels * itemsize * copies + voxels


def ensure_fits(needed: int, what: str, available: int | None = None) -> None:
    """Raise VolumeLoadError when ``needed`` bytes exceed the memory available now
    (``available``: measured when None). ``what`` names the image for the message."""
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return
    raise VolumeLoadError(
        f"{what} needs about {needed / GIB:.1f} GB of memory to open (the image and its labels), "
        f"but only {available / GIB:.1f} GB is free. Close other programs, or open a smaller "
        "part of the series (fewer slices), on this computer or one with more memory.")


def release_freed_slabs() -> None:
    """Have glibc give every freed block of 1 MiB or more back to the system at once.

    Its default raises the size it serves from the heap to that of the largest block freed
    (up to 32 MiB), and the heap is only given back from its top: after a whole-volume copy
    in slabs of 8 MiB, the process kept about the image's size resident (bench scale,
    1500 slices: 3.6x the image's bytes held, 2.5x after this). Elsewhere, nothing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)  # setting it also turns the raising off
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3
