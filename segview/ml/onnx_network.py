"""ONNX files run as models: ``load_onnx`` opens an exported file in ONNX Runtime and
returns an ``OnnxNetwork``, a torch module whose forward runs it; ``read_onnx_metadata``
reads its segview metadata. A module of its own, apart from the export in ``onnx_model``
(which loads checkpoints), so that ``checkpoint.read_metadata`` reads an ONNX file without
an import circle. Reading an ONNX file parses a protobuf; it never
runs Python code from the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metadata import CheckpointError, parse_onnx_metadata, reason

__all__ = ["OnnxNetwork", "load_onnx", "read_onnx_metadata", "session_options"]


def read_onnx_metadata(path) -> dict:
    """The segview metadata of an exported ONNX file. Raises CheckpointError for a file
    that is not readable ONNX or carries no segview metadata."""
    return _session_and_metadata(Path(path), ["CPUExecutionProvider"])[1]


def load_onnx(path, device: str | torch.device | None = None) -> tuple[OnnxNetwork, dict]:
    """The network of an exported ONNX file, run by ONNX Runtime, and its metadata.

    ``device`` "cpu" forces the CPU; otherwise the CUDA provider is used when installed
    (onnxruntime-gpu) and a GPU is present. Raises CheckpointError for an unreadable file,
    one without segview metadata, or one whose input or output is not (N, K, H, W) ->
    (N, C, H, W), K the metadata's ``architecture.in_channels``."""
    path = Path(path)
    session, meta = _session_and_metadata(path, _providers(device))
    return OnnxNetwork(session, meta, path.name), meta


def session_options(onnxruntime):
    """Errors only on the console; as many threads as torch would use, which do not spin
    while they wait for work: a spinning pool takes the processor the window's thread
    needs to stay live while slices stream in (and buys little between batches)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _providers(device) -> list[str]:
    import onnxruntime

    wanted = str(device or "")
    available = onnxruntime.get_available_providers()
    if not wanted.startswith("cpu") and "CUDAExecutionProvider" in available and torch.cuda.is_available():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session_and_metadata(path: Path, providers: list[str]):
    import onnxruntime

    if not path.is_file():
        raise CheckpointError(f"there is no ONNX model at {path}")
    options = session_options(onnxruntime)
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        raise CheckpointError(f"{path.name} is not a readable ONNX model ({reason(exc)[:200]})") from exc
    meta = parse_onnx_metadata(path, session.get_modelmeta().custom_metadata_map)
    _check_signature(path, session, len(meta["classes"]), int(meta["architecture"].get("in_channels", 1)))
    return session, meta


def _check_signature(path: Path, session, num_classes: int, channels: int = 1) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != channels:
        raise CheckpointError(f"{path.name} must take one (N, {channels}, H, W) input and return (N, C, H, W) "
                              "logits")
    channels = outputs[0].shape[1]  # an int, or a name or None when the graph leaves it open
    if isinstance(channels, int) and channels != num_classes:
        raise CheckpointError(f"{path.name} returns {channels} channels but names {num_classes} classes")


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session behaving as a torch module: (N, K, H, W) float tensor in,
    (N, C, H, W) float32 logits out (on the input's device). It has no parameters, so
    moving it between devices changes nothing; the session's provider decides."""

    def __init__(self, session, meta: dict, name: str = "model.onnx"):
        super().__init__()
        self.session = session
        self.name = name
        channels = session.get_inputs()[0].shape[1]
        self.config = {"in_channels": channels if isinstance(channels, int) else 1,
                       "num_classes": len(meta["classes"])}
        self._input = session.get_inputs()[0].name

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(image.detach().to("cpu", torch.float32).numpy())
        (logits,) = self.session.run(None, {self._input: array})
        return torch.from_numpy(logits).to(image.device)
