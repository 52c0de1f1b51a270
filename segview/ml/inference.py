"""Predictor: a checkpoint applied to a volume slice by slice, on the best device there is.

The preprocessing comes from the checkpoint's metadata (the same functions as training),
predictions come back on exactly the volume's pixel grid. Slices are processed in
batches in any order (the one on screen first) and yielded as they finish, so a window
can stream them into its overlay and stop early.

On CUDA the slices go up from pinned memory without blocking, the network runs under
bf16 autocast with channels_last memory, resizing, softmax and argmax stay on the GPU,
and only uint8 labels come back (probabilities only when asked for); the batch is sized
from the free GPU memory. A CUDA out-of-memory error falls back to the CPU. A checkpoint
may also be an exported ``.onnx`` file, run by ONNX Runtime (``segview.ml.onnx_model``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import SegviewError
from ..core.volume import Volume, slice_pixel_size
from .checkpoint import CheckpointError, classes_from_metadata, load_checkpoint, slice_orientation
from .data import flip_in_plane, from_network, network_flips, normalize, to_network


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def best_device() -> torch.device:
    """CUDA, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def checked_device(name: str) -> torch.device:
    """``name`` (cpu, cuda, cuda:N, mps) as a device this machine has. Raises SegviewError
    otherwise: torch's own answer for "gpu" or for CUDA on a CPU-only torch is a traceback
    (a tester's ``--device cuda`` on a machine without one)."""
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise SegviewError(f"unknown device {name!r}: give cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and device.index is not None and device.index < torch.cuda.device_count():
        return device
    there = {"cpu": True, "cuda": torch.cuda.is_available() and device.index is None, "mps": _mps_available()}
    if not there[device.type]:
        sees = "no Apple GPU (MPS)" if device.type == "mps" else f"{torch.cuda.device_count()} CUDA GPU(s)"
        raise SegviewError(f"device {name!r} is not on this machine (torch {torch.__version__} sees {sees}); "
                           f"leave the device out for the best there is ({best_device()})")
    return device


RUNTIMES = ("auto", "torch")


class Cancelled(Exception):
    """Raised by ``predict_volume`` when its ``should_stop`` callback says so."""


@dataclass
class SlicePrediction:
    index: int                  # z
    labels: np.ndarray          # (Y, X) uint8
    probabilities: np.ndarray | None   # (C, Y, X) float32, softmax; None unless asked for


@dataclass
class PreparedVolume:
    """A volume as the network sees it: normalised once (percentiles are per volume) and
    turned by ``flips`` (``Volume.display_flips``, for a checkpoint whose slice orientation
    is "display"), which the predictions are turned back by."""
    slices: np.ndarray          # (Z, Y, X) float32
    flips: tuple[bool, bool]
    pixel_size: tuple[float, float] | None = None   # (row, column) mm: padded square in mm


class Predictor:
    """``model`` with the metadata it was trained with (``preprocessing``: input_size,
    normalization; ``classes``). Raises CheckpointError for a model it cannot feed."""

    def __init__(self, model: torch.nn.Module, meta: dict, device: str | torch.device | None = None,
                 batch_size: int | None = None):
        refuse_interactive(meta)
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
        self.orientation = slice_orientation(meta)
        self.device = torch.device(device) if device is not None else best_device()
        self.model = model
        self._place_model()
        self.fallback_message: str | None = None  # before the batch probe, which may set it
        self.batch_size = batch_size or self._batch_size_for_device()

    @classmethod
    def from_checkpoint(cls, path, device=None, batch_size: int | None = None,
                        runtime: str = "auto") -> Predictor:
        """A Predictor for a segview checkpoint (.safetensors) or an exported ONNX model
        (.onnx, run by ONNX Runtime). ``batch_size`` None: 8 on the CPU, sized from free
        memory on a GPU. ``runtime`` for a checkpoint on the CPU: "auto" runs it with ONNX
        Runtime when installed (faster there; ``segview bench infer``), "torch" keeps
        torch. Raises CheckpointError for a file that cannot be used (a pickle is refused
        unread)."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
        if str(path).lower().endswith(".onnx"):
            from .onnx_model import load_onnx  # onnxruntime only for ONNX files

            network, onnx_meta = load_onnx(path, device)
            refuse_interactive(onnx_meta, Path(path).name, exported=True)
            # ONNX Runtime moves the data to its provider itself; torch's pre- and
            # post-processing stays on the CPU.
            return cls(network, onnx_meta, "cpu", batch_size)
        model, meta = load_checkpoint(path)
        refuse_interactive(meta, Path(path).name)
        predictor = cls(model, meta, device, batch_size)
        if runtime == "auto" and predictor.device.type == "cpu":
            predictor.use_onnxruntime(source=path)
        return predictor

    def use_onnxruntime(self, source=None) -> bool:
        """Run the network with ONNX Runtime on the CPU from here on; False (torch kept)
        when onnxruntime is missing or the network does not export. ``source``: the
        checkpoint file, so that a second Predictor of it reuses the export."""
        from .onnx_model import OnnxNetwork, onnxruntime_network

        if isinstance(self.model, OnnxNetwork):
            return True
        network = onnxruntime_network(self.model, self.meta, source)
        if network is None:
            return False
        self.model, self.device = network, torch.device("cpu")
        return True

    @property
    def runtime(self) -> str:
        """What runs the network: "onnxruntime" or "torch"."""
        return "onnxruntime" if type(self.model).__name__ == "OnnxNetwork" else "torch"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _place_model(self) -> None:
        memory = torch.channels_last if self.device.type == "cuda" else torch.preserve_format
        # memory_format is a keyword of Module.to that its type stubs do not list
        self.model = self.model.to(self.device, memory_format=memory).eval()  # type: ignore[call-overload]

    def _batch_size_for_device(self) -> int:
        """8 slices on the CPU (larger batches are no faster there); on a GPU as many as
        half the free memory holds, measured with one slice, at most 128."""
        if self.device.type != "cuda":
            return 8
        free, _ = torch.cuda.mem_get_info(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self._probabilities(torch.zeros(1, 1, self.input_size, self.input_size))
        if self.device.type != "cuda":  # the probe itself ran out of memory: now on the CPU
            return 8
        per_slice = max(torch.cuda.max_memory_allocated(self.device) - before, 1)
        return int(min(max(free // 2 // per_slice, 1), 128))

    def prepare(self, volume: Volume) -> PreparedVolume:
        """The whole volume normalised and turned for the network, for ``predict_slices``."""
        flips = network_flips(volume, self.orientation)
        return PreparedVolume(flip_in_plane(normalize(volume.array, self.normalization), flips), flips,
                              slice_pixel_size(volume.spacing))

    def predict_slices(self, prepared: PreparedVolume, indices: Iterable[int],
                       want_probabilities: bool = False) -> Iterator[SlicePrediction]:
        """Yield the prediction of each slice of ``prepare``'s output on the volume's own
        grid, in the given order, one batch at a time."""
        indices = list(indices)
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start:start + self.batch_size]
            images = torch.from_numpy(prepared.slices[batch])[:, None]
            probabilities = self._probabilities(images, prepared.pixel_size)
            # The argmax runs where the probabilities are; only uint8 labels cross to the host.
            labels = flip_in_plane(probabilities.argmax(dim=1).to(torch.uint8).cpu().numpy(), prepared.flips)
            kept = flip_in_plane(probabilities.cpu().numpy(), prepared.flips) if want_probabilities else None
            for n, z in enumerate(batch):
                yield SlicePrediction(z, np.ascontiguousarray(labels[n]),
                                      np.ascontiguousarray(kept[n]) if kept is not None else None)

    def predict_volume(self, volume: Volume, first: int | None = None,
                       progress: Callable[[int, int], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> np.ndarray:
        """Labels (Z, Y, X) uint8 on ``volume``'s grid. Slice ``first`` is done first;
        ``should_stop`` is checked after every slice (raises Cancelled)."""
        prepared = self.prepare(volume)
        labels = np.zeros(volume.shape, np.uint8)
        for done, prediction in enumerate(self.predict_slices(prepared, slice_order(volume.shape[0], first)), 1):
            labels[prediction.index] = prediction.labels
            if progress:
                progress(done, volume.shape[0])
            if should_stop and should_stop():
                raise Cancelled()
        return labels

    @torch.no_grad()
    def _probabilities(self, images: torch.Tensor, pixel_size: tuple[float, float] | None = None) -> torch.Tensor:
        """(N, 1, H, W) normalised slices (CPU) of ``pixel_size`` (row, column) mm -> (N, C, H, W)
        float32 softmax on the Predictor's device."""
        shape = tuple(images.shape[-2:])
        try:
            return self._run(images, shape, pixel_size)
        except torch.OutOfMemoryError:
            if self.device.type == "cpu":
                raise
            torch.cuda.empty_cache()
            self.fallback_message = ("The GPU ran out of memory; segview continues on the "
                                     "CPU (slower).")
            self.device = torch.device("cpu")
            self._place_model()
            return self._run(images, shape, pixel_size)

    def _run(self, images: torch.Tensor, shape, pixel_size: tuple[float, float] | None) -> torch.Tensor:
        cuda = self.device.type == "cuda"
        if cuda:  # page-locked, so the copy below runs without blocking the host
            images = images.pin_memory()
        images = to_network(images.to(self.device, non_blocking=cuda), self.input_size, pixel_size)
        if cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = self.model(images)
        return from_network(logits.float(), shape, pixel_size).softmax(dim=1)


def refuse_interactive(meta: dict, name: str = "the checkpoint", exported: bool = False) -> None:
    """Raises CheckpointError when ``meta`` is an interactive correction model's: it refines
    one class from clicks and cannot segment a volume on its own. ``exported``: an ONNX
    export of one, which the Click tool refuses too (``ClickModel.from_checkpoint``): the
    message names the .safetensors checkpoint instead."""
    if meta.get("task") == "interactive":
        use = ("the Click tool takes its interactive .safetensors checkpoint, not an ONNX export" if exported
               else "use it with the Click tool")
        raise CheckpointError(f"{name} is an interactive correction model (it refines one class from a "
                              f"person's clicks), not a segmentation checkpoint; {use}, "
                              "and give a segmentation checkpoint here")


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
