"""ONNX: a segview checkpoint exported for any runtime, and ONNX files run as models.

``export_onnx`` writes the network of a checkpoint with a dynamic batch, height and width
(input ``image`` (N, K, H, W) float32, K the network's input channels: 1 for a
segmentation checkpoint, 6 for an interactive one; output ``logits`` (N, C, H, W)) and the
checkpoint's metadata as the model's metadata property ``segview`` (the same JSON as the
safetensors header), so an exported file carries its classes and preprocessing with it.
Sides that segview's UNet or MONAI's networks cannot pool evenly are padded by edge
replication inside the graph and the logits cropped back, as segview's UNet does itself;
milesial's UNet pads inside itself and is exported as it is.

``load_onnx`` (in ``onnx_network``, importable from here) returns an ``OnnxNetwork``: a
torch module whose forward runs the file in ONNX Runtime (CPU, or CUDA when onnxruntime-gpu
and a GPU are there), so the Predictor, ``segview predict``/``evaluate`` and the window use
it like any checkpoint. Reading an ONNX file parses a protobuf; it never runs Python code
from the file.
"""
from __future__ import annotations

import io
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..core.files import replace_atomically
from .checkpoint import load_checkpoint, metadata_json, slice_orientation
from .metadata import METADATA_KEY, CheckpointError, classes_from_metadata, reason
from .onnx_network import OnnxNetwork, load_onnx, read_onnx_metadata, session_options

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"

__all__ = ["OnnxNetwork", "export_onnx", "input_channels", "load_onnx", "onnxruntime_network",
           "read_onnx_metadata", "size_multiple"]


def size_multiple(model: nn.Module) -> int:
    """The side the exported graph pads inputs to a multiple of (1: none). Branches on
    sizes in a forward are traced once, so a graph is only right for every size when its
    inputs pool evenly; milesial's UNet computes its padding from the sizes themselves."""
    config = getattr(model, "config", {})
    name = type(model).__name__
    if name == "UNet":  # valid padding shrinks the output: sides are the caller's to choose
        return 2 ** config["depth"] if config["padding"] == "same" else 1
    if name == "MonaiUNet":
        return math.prod(config["strides"])
    if name == "MonaiBasicUNet":  # pools four times by 2, padding odd sides in a branch
        return 16
    return 1


class _AnySize(nn.Module):
    """``network`` on any side: padded (edge replication) to ``multiple``, logits cropped."""

    def __init__(self, network: nn.Module, multiple: int):
        super().__init__()
        self.network = network
        self.multiple = multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, (-width) % self.multiple, 0, (-height) % self.multiple), mode="replicate")
        return self.network(padded)[..., :height, :width]


def export_onnx(checkpoint, output) -> Path:
    """Write the checkpoint at ``checkpoint`` as an ONNX model at ``output``, atomically,
    and check that ONNX Runtime gives the labels torch gives on a test batch.

    Raises CheckpointError for a checkpoint that cannot be loaded or exported, or an
    export that does not agree with torch; OSError when ``output`` cannot be written."""
    import onnx

    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise CheckpointError(f"the exported file must end in .onnx, not {output.name}")
    model, meta = load_checkpoint(checkpoint)
    size = int(meta.get("preprocessing", {}).get("input_size", [64])[0])
    graph = _export(model, size)
    # What another tool must do before the network, said outright: the slices' orientation
    # (older and imported checkpoints leave it to segview's rule: a helper's ONNX run without
    # the flips differed from segview's in 830 voxels) and the canvas square in mm.
    meta = {**meta, "preprocessing": {**meta.get("preprocessing", {}), "orientation": slice_orientation(meta),
                                      "canvas": "padded at the bottom and right to a square in mm, "
                                                "with each slice's minimum"}}
    for key, value in ((METADATA_KEY, metadata_json(meta)), ("classes", ", ".join(
            c.name for c in classes_from_metadata(meta)))):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.producer_name = "segview"
    path = replace_atomically(output, lambda temporary: onnx.save_model(graph, str(temporary)))
    _check_agrees(model, path)
    return path


def _export(model: nn.Module, size: int):
    """The ONNX ModelProto of ``model`` with dynamic batch, height and width.

    torch's TorchScript-based exporter traces one forward pass and keeps the shape
    arithmetic (padding, skip crops) as graph operations, so every size works. The
    torch.export-based exporter (dynamo=True) is not used: with dynamic sizes it fails on
    the skip connections' centre crops of a depth-4 UNet (unbacked symbolic sizes)."""
    import onnx

    multiple = size_multiple(model)
    if size % multiple:  # padding would change what the network computes at its own size
        multiple = 1
    wrapped = _AnySize(model, multiple).eval()
    example = torch.randn(2, input_channels(model), size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation notes, not problems here
            torch.onnx.export(wrapped, (example,), buffer, dynamo=False, opset_version=OPSET,  # type: ignore[arg-type]
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})
    except Exception as exc:  # the exporter raises many types; the message says what failed
        raise CheckpointError(f"this network could not be exported to ONNX ({reason(exc)[:200]})") from exc
    return onnx.load_model_from_string(buffer.getvalue())


def _check_agrees(model: nn.Module, path: Path) -> None:
    network, meta = load_onnx(path, device="cpu")
    if not _agrees(model, network, meta, batch=2):
        path.unlink(missing_ok=True)
        raise CheckpointError("the exported ONNX model does not give torch's labels; please report this bug")


def input_channels(model: nn.Module) -> int:
    """The channels ``model`` takes (its config's ``in_channels``; 1 when it does not say)."""
    return int(getattr(model, "config", {}).get("in_channels", 1))


def _agrees(model: nn.Module, network: nn.Module, meta: dict, batch: int = 1) -> bool:
    """Labels of ONNX Runtime and torch on random slices of the checkpoint's input size:
    equal where torch's top two logits are not within float rounding of each other (there
    either label is right)."""
    size = int(meta["preprocessing"]["input_size"][0])
    image = torch.randn(batch, input_channels(model), size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(image), network(image)
    top2 = expected.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-4
    return expected.shape == got.shape and torch.equal(expected.argmax(1)[decided], got.argmax(1)[decided])


#: Exports made in this process, by checkpoint file (path, size, modification time): a
#: window that loads the same checkpoint again, or into the other slot, skips the export.
_EXPORTED: OrderedDict[tuple, bytes] = OrderedDict()
_EXPORTED_KEPT = 8


def onnxruntime_network(model: nn.Module, meta: dict, source: Path | None = None) -> OnnxNetwork | None:
    """``model`` exported in memory and run by ONNX Runtime on the CPU with torch's thread
    count (``segview bench infer`` measures it faster than torch there); None when
    onnxruntime is not installed, the network does not export, or its labels differ from
    torch's on a test slice. ``source``: the checkpoint file ``model`` came from, to reuse
    an earlier export of it."""
    try:
        import onnxruntime
    except ImportError:
        return None
    key = None
    if source is not None:
        status = Path(source).stat()
        key = (str(Path(source).resolve()), status.st_size, status.st_mtime_ns)
    if key is not None and key in _EXPORTED:
        _EXPORTED.move_to_end(key)
        return _cpu_network(onnxruntime, _EXPORTED[key], meta)
    try:
        exported = _export(model.to("cpu").eval(), int(meta["preprocessing"]["input_size"][0]))
    except CheckpointError:
        return None
    network = _cpu_network(onnxruntime, exported.SerializeToString(), meta)
    if not _agrees(model, network, meta):  # never expected; torch stays then
        return None
    if key is not None:
        _EXPORTED[key] = exported.SerializeToString()
        while len(_EXPORTED) > _EXPORTED_KEPT:
            _EXPORTED.popitem(last=False)
    return network


def _cpu_network(onnxruntime, model_bytes: bytes, meta: dict) -> OnnxNetwork:
    options = session_options(onnxruntime)
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return OnnxNetwork(session, meta, "in memory")
