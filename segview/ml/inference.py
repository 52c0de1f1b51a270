"""Predictor: a checkpoint applied to a volume slice by slice, on the best device there is.

The preprocessing comes from the checkpoint's metadata (the same functions as training),
predictions come back on exactly the volume's pixel grid. Slices are processed in
batches in any order (the one on screen first) and yielded as they finish, so a window
can stream them into its overlay and stop early. On CUDA it runs under bf16 autocast with
channels_last memory; a CUDA out-of-memory error falls back to the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..core.volume import Volume
from .checkpoint import CheckpointError, classes_from_metadata, load_checkpoint
from .data import from_network, normalize, to_network


def best_device() -> torch.device:
    """CUDA, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Cancelled(Exception):
    """Raised by ``predict_volume`` when its ``should_stop`` callback says so."""


@dataclass
class SlicePrediction:
    index: int                  # z
    labels: np.ndarray          # (Y, X) uint8
    probabilities: np.ndarray   # (C, Y, X) float32, softmax


class Predictor:
    """``model`` with the metadata it was trained with (``preprocessing``: input_size,
    normalization; ``classes``). Raises CheckpointError for a model it cannot feed."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device | None = None,
                 batch_size: int = 8):
        channels = getattr(model, "config", {}).get("in_channels", 1)
        if channels != 1:
            raise CheckpointError(f"the network takes {channels} input channels; segview feeds "
                                  "it one image channel")
        if "preprocessing" not in meta:
            raise CheckpointError("the checkpoint does not say how images were preprocessed "
                                  "for training (metadata 'preprocessing')")
        self.meta = meta
        self.classes = classes_from_metadata(meta)
        self.input_size = int(meta["preprocessing"]["input_size"][0])
        self.normalization = meta["preprocessing"]["normalization"]
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else best_device()
        self.model = model
        self._place_model()
        self.fallback_message: str | None = None

    @classmethod
    def from_checkpoint(cls, path, device=None, batch_size: int = 8) -> Predictor:
        """Raises CheckpointError for a file that cannot be used."""
        model, meta = load_checkpoint(path)
        return cls(model, meta, device, batch_size)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _place_model(self) -> None:
        memory = torch.channels_last if self.device.type == "cuda" else torch.preserve_format
        self.model = self.model.to(self.device, memory_format=memory).eval()

    def prepare(self, volume: Volume) -> np.ndarray:
        """The whole volume normalised once (percentiles are per volume), float32 (Z, Y, X)."""
        return normalize(volume.array, self.normalization)

    def predict_slices(self, normalized: np.ndarray, indices: Iterable[int],
                       want_probabilities: bool = False) -> Iterator[SlicePrediction]:
        """Yield the prediction of each slice of ``prepare``'s output, in the given order,
        one batch at a time."""
        indices = list(indices)
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start:start + self.batch_size]
            probabilities = self._probabilities(torch.from_numpy(normalized[batch])[:, None])
            labels = probabilities.argmax(dim=1).to(torch.uint8).numpy()
            for n, z in enumerate(batch):
                yield SlicePrediction(z, labels[n],
                                      probabilities[n].numpy() if want_probabilities else None)

    def predict_volume(self, volume: Volume, first: int | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Labels (Z, Y, X) uint8 on ``volume``'s grid. Slice ``first`` is done first;
        ``should_stop`` is checked after every slice (raises Cancelled)."""
        normalized = self.prepare(volume)
        labels = np.zeros(volume.shape, np.uint8)
        for done, prediction in enumerate(self.predict_slices(normalized, slice_order(volume.shape[0], first)), 1):
            labels[prediction.index] = prediction.labels
            if progress:
                progress(done, volume.shape[0])
            if should_stop and should_stop():
                raise Cancelled()
        return labels

    @torch.no_grad()
    def _probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) normalised slices -> (N, C, H, W) float32 softmax on the CPU."""
        shape = tuple(images.shape[-2:])
        try:
            return self._run(images, shape)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            torch.cuda.empty_cache()
            self.fallback_message = ("The GPU ran out of memory; segview continues on the "
                                     "CPU (slower).")
            self.device = torch.device("cpu")
            self._place_model()
            return self._run(images, shape)

    def _run(self, images: torch.Tensor, shape) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        images = to_network(images.to(self.device, non_blocking=True), self.input_size)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = self.model(images)
        probabilities = from_network(logits.float(), shape).softmax(dim=1)
        return probabilities.cpu()


def slice_order(count: int, first: int | None) -> list[int]:
    """0 .. count - 1 starting at ``first`` and moving outwards from it (first, first+1,
    first-1, ...), so the slices near the one on screen arrive first."""
    if first is None:
        return list(range(count))
    first = min(max(first, 0), count - 1)
    order = [first]
    for step in range(1, count):
        for z in (first + step, first - step):
            if 0 <= z < count:
                order.append(z)
    return order
