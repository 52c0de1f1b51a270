"""ONNX: a segview checkpoint exported for any runtime, and ONNX files run as models.

``export_onnx`` writes the network of a checkpoint with a dynamic batch, height and width
(input ``image`` (N, K, H, W) float32, K the network's input channels: 1 for a
segmentation checkpoint, 6 for an interactive one; output ``logits`` (N, C, H, W)) and the
checkpoint's metadata as the model's metadata property ``segview`` (the same JSON as the
safetensors header), so an exported file carries its classes and preprocessing with it.
Sides that segview's UNet or MONAI's networks cannot pool evenly are padded by edge
replication inside the graph and the logits cropped back, as segview's UNet does itself;
milesial's UNet pads inside itself and is exported as it is.

``load_onnx`` returns an ``OnnxNetwork``: a torch module whose forward runs the file in
ONNX Runtime (CPU, or CUDA when onnxruntime-gpu and a GPU are there), so the Predictor,
``segview predict``/``evaluate`` and the window use it like any checkpoint. Reading an ONNX
file parses a protobuf; it never runs Python code from the file.
"""
from __future__ import annotations

import io
import json
import math
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..core.files import replace_atomically
from .checkpoint import METADATA_KEY, CheckpointError, classes_from_metadata, load_checkpoint

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
    for key, value in (("segview", json.dumps(meta)), ("classes", ", ".join(
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
        raise CheckpointError(f"this network could not be exported to ONNX ({_reason(exc)[:200]})") from exc
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


def _session_options(onnxruntime):
    """Errors only on the console; as many threads as torch would use, which do not spin
    while they wait for work: a spinning pool takes the processor the window's thread
    needs to stay live while slices stream in (and buys little between batches)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _cpu_network(onnxruntime, model_bytes: bytes, meta: dict) -> OnnxNetwork:
    options = _session_options(onnxruntime)
    session = onnxruntime.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return OnnxNetwork(session, meta, "in memory")


# -- loading ----------------------------------------------------------------------------

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
    options = _session_options(onnxruntime)
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        raise CheckpointError(f"{path.name} is not a readable ONNX model ({_reason(exc)[:200]})") from exc
    properties = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in properties:
        raise CheckpointError(f"{path.name} has no segview metadata (classes, preprocessing); "
                              "export ONNX models with `segview export CKPT -o model.onnx`")
    try:
        meta = json.loads(properties[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path.name} has damaged segview metadata ({_reason(exc)})") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("architecture"), dict):
        raise CheckpointError(f"{path.name} does not say which network it holds")
    classes_from_metadata(meta, path)  # raises CheckpointError for a bad class table
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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
