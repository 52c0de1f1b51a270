"""Bring your own model: a state dict trained elsewhere becomes a segview checkpoint.

    import_state_dict("unet.pth", "monai-unet", ["background", "liver"], "CT",
                      output="liver.safetensors")

The weights file is a state dict: ``.pth``/``.pt``/``.bin``/``.ckpt`` read only with
``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors, numbers,
strings and containers, no code), or ``.safetensors``. A whole pickled model, or a file
that needs any other Python object, is refused with how to save a state dict instead;
nothing is ever unpickled otherwise.

The network is one of a fixed list (``IMPORTABLE``), never a class named by a file.
Hyperparameters are read from the tensor shapes where they show (channels, classes,
widths, kernel sizes, residual units, normalisation with parameters, upsampling kind, a
residual UNet's strides of 1); what does not show in the weights (other strides,
activations without parameters) takes the library's default, is reported as an assumption
and can be set with ``arch_args``. Every key and shape is then checked; when they do not
fit, the message names the ``arch_args`` the weights contradict (with the weights' values)
or else the keys and shapes at fault. The written checkpoint is loaded back and must give
exactly the logits of the network built here.
"""
from __future__ import annotations

import inspect
import json
import pickle
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.classes import named_classes
from ..core.files import file_sha256
from .checkpoint import CheckpointError, architecture_class, classes_to_metadata, load_checkpoint, save_checkpoint
from .config import DEFAULT_CT_WINDOW
from .data import normalization_for

#: --arch value -> segview class name (in checkpoint.ARCHITECTURES / FOREIGN_ARCHITECTURES).
IMPORTABLE = {"segview-unet": "UNet", "monai-unet": "MonaiUNet", "monai-basicunet": "MonaiBasicUNet",
              "milesial-unet": "MilesialUNet"}
MODALITIES = ("CT", "MR")
#: Containers training scripts wrap a state dict in (Lightning, many repositories, nnU-Net).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network_weights")

SAVE_A_STATE_DICT = ("save the weights alone where the model is defined: "
                 "torch.save(model.state_dict(), 'weights.pth')")

__all__ = [
    "IMPORTABLE",
    "ImportResult",
    "build_network",
    "import_state_dict",
    "infer_arguments",
    "read_state_dict",
    "strip_wrapper_prefix",
]


@dataclass
class ImportResult:
    path: Path                        # the written .safetensors checkpoint
    model: torch.nn.Module            # the network as loaded back from it (eval mode)
    arguments: dict                   # the architecture's arguments
    notes: list[str] = field(default_factory=list)   # assumptions and dropped entries


# -- reading ----------------------------------------------------------------------------

def read_state_dict(path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The tensors of a state dict file and notes on what was unwrapped or dropped.

    Raises CheckpointError for a missing or unreadable file, a whole pickled model or any
    file whose loading needs Python objects other than tensors and plain containers (the
    restricted unpickler refuses them before they are created), and a file without tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"there is no weights file at {path}")
    raw: object
    if path.suffix.lower() == ".safetensors":
        raw = _read_safetensors(path)
    else:
        raw = _read_torch_file(path)
    return _plain_state_dict(path, raw)


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"{path.name} is not a readable safetensors file ({_reason(exc)})") from exc


def _read_torch_file(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol: segview says what it is
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not _not_a_pickle(path):
            # weights_only=True refused a global: a whole model, an optimizer's custom class,
            # or a crafted file. Nothing of it was constructed.
            needed = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
            raise CheckpointError(
                f"{path.name} holds Python objects, not only weights (a whole pickled model?"
                + (f" it needs {needed.group(1)}" if needed else "") + "), and segview does not "
                f"unpickle those because they can run any code; {SAVE_A_STATE_DICT}") from exc
        raise _unreadable(path, exc) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise _unreadable(path, exc) from exc


def _not_a_pickle(path: Path) -> bool:
    """Whether ``path`` starts as neither torch.save's zip nor a pickle of protocol 2 or
    later (an ONNX model, text), so that torch stopped at its bytes, not at an object."""
    with path.open("rb") as file:
        head = file.read(2)
    return not head.startswith((b"PK", b"\x80"))


def _unreadable(path: Path, exc: BaseException) -> CheckpointError:
    if _is_onnx(path):
        return CheckpointError(f"{path.name} is an ONNX model, not a PyTorch state dict; import the "
                               "state dict it was exported from (an ONNX file that segview export "
                               "wrote runs as it is in predict, evaluate and the window)")
    return CheckpointError(f"{path.name} is not a readable PyTorch weights file "
                           f"({_first_sentence(_reason(exc))}); it may be truncated or damaged")


def _first_sentence(text: str, limit: int = 160) -> str:
    """``text`` up to its first full stop (torch's zip reader adds a paragraph after it),
    and at most ``limit`` characters, cut at a word with an ellipsis, never mid-word."""
    text = text.split(". ", 1)[0]
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def _is_onnx(path: Path) -> bool:
    """Whether ``path`` parses as an ONNX model with a graph (protobuf accepts many byte
    strings, so an empty parse proves nothing)."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and others: not ONNX
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def _plain_state_dict(path: Path, raw: object) -> tuple[dict[str, torch.Tensor], list[str]]:
    notes: list[str] = []
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path.name} holds a {type(raw).__name__}, not a state dict; "
                              f"{SAVE_A_STATE_DICT}")
    weights: dict = raw
    if not any(isinstance(v, torch.Tensor) for v in raw.values()):
        # a training script's checkpoint: the weights under a known name, else the one entry of tensors
        # a known name first; but weights under another name too ('ema' beside 'model') are
        # a choice the person makes, never one taken for them without a word
        inner = [k for k in WRAPPER_KEYS if _holds_tensors(raw.get(k))] + [
            k for k, v in raw.items() if k not in WRAPPER_KEYS and _holds_tensors(v)]
        if len(inner) > 1:
            raise CheckpointError(f"{path.name} holds several sets of weights ({', '.join(map(str, inner))}); save "
                                  f"the one to import alone: torch.save(checkpoint['{inner[0]}'], 'weights.pth')")
        if inner:
            notes.append(f"took the weights under {inner[0]!r} of the file")
            weights = raw[inner[0]]
    tensors = {str(k): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
    dropped = sorted(str(k) for k, v in weights.items() if not isinstance(v, torch.Tensor))
    if dropped:  # milesial's training script adds 'mask_values', others an epoch number
        notes.append(f"ignored entries that are not weights: {', '.join(dropped[:5])}")
    if not tensors:
        raise CheckpointError(f"{path.name} holds no tensors; {SAVE_A_STATE_DICT}")
    return tensors, notes


def _holds_tensors(value: object) -> bool:
    return isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values())


def strip_wrapper_prefix(arch: str, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` without the prefix that a wrapper put before every key of ``arch``'s
    (DataParallel's ``module.``, torch.compile's ``_orig_mod.``, a Lightning module's
    attribute such as ``model.`` or ``net.``, nested ones), and that prefix: the shortest
    prefix common to every key after which ``arch``'s layout is found; "" when none is."""
    prefix = _layout_prefix(arch, state) or ""
    return {k[len(prefix):]: v for k, v in state.items()}, prefix


def _layout_prefix(arch: str, state: dict[str, torch.Tensor]) -> str | None:
    """The shortest prefix common to every key after which ``arch``'s layout is found;
    None when it is found nowhere."""
    infer = _INFERENCE.get(arch)
    if infer is None:
        return None
    parts = _common_parts(list(state))
    for count in range(len(parts) + 1):
        prefix = "".join(part + "." for part in parts[:count])
        try:
            infer({k[len(prefix):]: v for k, v in state.items()})
        except (KeyError, IndexError):
            continue
        return prefix
    return None


def _common_parts(keys: list[str]) -> list[str]:
    """The dotted components every key starts with (a key's last one, its own name, excluded)."""
    common: list[str] = []
    for parts in zip(*(k.split(".")[:-1] for k in keys)):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    return common


# -- hyperparameters from shapes --------------------------------------------------------

def infer_arguments(arch: str, state: dict[str, torch.Tensor]) -> tuple[dict, dict[str, str]]:
    """The arguments of ``arch``'s class that the tensors show, and the ones that were
    assumed ({argument: why}).

    Raises CheckpointError for an unknown ``arch`` or weights that are not of that layout
    (a key the layout needs is missing)."""
    infer = _INFERENCE.get(arch)
    if infer is None:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(IMPORTABLE)}")
    try:
        return infer(state)
    except KeyError as exc:
        other = next((name for name in _INFERENCE if name != arch and _layout_prefix(name, state) is not None),
                     None)
        hint = f"; they look like a {other} state dict: pass --arch {other}" if other else ""
        raise CheckpointError(f"these weights lack the key {exc.args[0]}, which a {arch} has (the "
                              f"file's keys start {_first_keys(state)}){hint}") from exc


def _segview_arguments(state) -> tuple[dict, dict[str, str]]:
    depth = sum(1 for k in state if k.startswith("upsample.") and k.endswith(".weight"))
    first = state["encoder.0.0.weight"]
    norm = None  # encoder.0 is conv, [norm], ReLU, ...: a norm shows as layer 1's parameters
    if "encoder.0.1.running_mean" in state:
        norm = "batch"
    elif "encoder.0.1.weight" in state:
        norm = "instance"
    arguments = {"in_channels": first.shape[1], "num_classes": state["head.weight"].shape[0],
                 "base_channels": first.shape[0], "depth": depth, "norm": norm}
    return arguments, {"padding": "assumed padding 'same' (padding leaves no trace in the weights)"}


def _monai_unet_arguments(state) -> tuple[dict, dict[str, str]]:
    units = {k.split(".")[3] for k in state if k.startswith("model.0.conv.unit")}
    residual = len(units)
    first = "conv.unit0.conv.weight" if residual else "conv.weight"
    stem = state[f"model.0.{first}"]
    channels, downs, prefix = [], [], "model."
    # One encoder level per nesting of SkipConnection, counted by any key below it, so that
    # one missing tensor is named as missing instead of cutting the network short.
    while any(k.startswith(prefix + "1.submodule.") for k in state):
        deeper = prefix + "1.submodule."
        below = state.get(f"{deeper}0.{first}", state.get(deeper + first))  # takes this level's channels in
        channels.append(_width(state, f"{prefix}0.", below))
        downs.append(f"{prefix}0.")
        prefix = deeper
    channels.append(_width(state, prefix))  # the bottom block
    top_up = state["model.2.0.conv.weight" if residual else "model.2.conv.weight"]
    kernel_size = stem.shape[-1]
    strides = [_residual_stride(state, block, c_in, c_out) if residual and kernel_size > 1 else 2
               for block, c_in, c_out in zip(downs, [stem.shape[1], *channels], channels)]
    norm_keys = [k for k in state if ".adn.N." in k]
    if any(k.endswith("running_mean") for k in norm_keys):
        norm: object = "batch"
    elif norm_keys:
        norm = ["instance", {"affine": True}]
    else:
        norm = "instance"
    arguments = {"in_channels": stem.shape[1], "num_classes": top_up.shape[1], "channels": channels,
                 "strides": strides, "kernel_size": kernel_size,
                 "up_kernel_size": top_up.shape[-1], "num_res_units": residual, "norm": norm,
                 "bias": f"model.0.{first[:-len('weight')]}bias" in state}
    assumed = {"strides": "assumed strides 2 at every level (strides leave no trace in the weights)"}
    if residual and kernel_size > 1:
        assumed["strides"] = ("assumed strides 2 where the residual shortcuts show a stride other than 1 "
                              "(a stride of 3 would look the same)")
    if any(".adn.A.weight" in k for k in state):
        arguments["act"] = "prelu"
    else:
        arguments["act"] = "relu"
        assumed["act"] = "assumed act 'relu' (the activation has no weights; MONAI's default PReLU has)"
    if not norm_keys:
        assumed["norm"] = "assumed norm 'instance' without affine parameters (MONAI's default; no weights)"
    return arguments, assumed


def _residual_stride(state, block: str, c_in: int, c_out: int) -> int:
    """A residual encoder block's stride as its shortcut shows it: MONAI gives a block of
    stride 1 a 1x1 shortcut convolution (none when the widths agree), any other stride one
    of ``kernel_size``; 2, MONAI's default, where it is not 1."""
    shortcut = state.get(block + "residual.weight")
    one = shortcut.shape[-1] == 1 if shortcut is not None else c_in == c_out
    return 1 if one else 2


def _width(state, prefix: str, below: torch.Tensor | None = None) -> int:
    """The channels of the block under ``prefix``: the size most of its tensors give
    (convolutions, biases and norms lead with it; the convolution ``below``, the next block's,
    takes it in), so that one tensor of a wrong shape is named as the one at fault instead of
    setting a width the healthy ones then disagree with. A tie goes to the first convolution."""
    sizes = [int(v.shape[0]) for k, v in state.items() if k.startswith(prefix) and v.ndim and v.numel() > 1]
    if below is not None and below.ndim > 1:
        sizes.append(int(below.shape[1]))
    return Counter(sizes).most_common(1)[0][0]


def _monai_basicunet_arguments(state) -> tuple[dict, dict[str, str]]:
    blocks = ["conv_0.conv_0", "down_1.convs.conv_0", "down_2.convs.conv_0", "down_3.convs.conv_0",
              "down_4.convs.conv_0", "upcat_1.convs.conv_1"]
    features = [state[f"{block}.conv.weight"].shape[0] for block in blocks]
    stem = state["conv_0.conv_0.conv.weight"]
    if "conv_0.conv_0.adn.N.running_mean" in state:
        norm: object = "batch"
    elif "conv_0.conv_0.adn.N.weight" in state:
        norm = ["instance", {"affine": True}]
    else:
        norm = ["instance", {"affine": False}]
    upsample = "deconv" if "upcat_1.upsample.deconv.weight" in state else "nontrainable"
    arguments = {"in_channels": stem.shape[1], "num_classes": state["final_conv.weight"].shape[0],
                 "features": features, "norm": norm, "bias": "conv_0.conv_0.conv.bias" in state,
                 "upsample": upsample}
    assumed = {"act": "assumed act LeakyReLU(0.1), MONAI's default (activations have no weights)"}
    if norm == ["instance", {"affine": False}]:
        assumed["norm"] = "assumed norm 'instance' without affine parameters (no normalisation weights)"
    return arguments, assumed


def _milesial_arguments(state) -> tuple[dict, dict[str, str]]:
    stem = state["inc.double_conv.0.weight"]
    arguments = {"in_channels": stem.shape[1], "num_classes": state["outc.conv.weight"].shape[0],
                 "bilinear": "up1.up.weight" not in state, "base_channels": stem.shape[0],
                 "bias": "inc.double_conv.0.bias" in state}
    return arguments, {}


_INFERENCE: dict[str, Callable[[dict], tuple[dict, dict[str, str]]]] = {
    "segview-unet": _segview_arguments, "monai-unet": _monai_unet_arguments,
    "monai-basicunet": _monai_basicunet_arguments, "milesial-unet": _milesial_arguments}


# -- building and checking --------------------------------------------------------------

def build_network(arch: str, arguments: dict) -> torch.nn.Module:
    """``arch``'s network from the fixed list with ``arguments``. Raises CheckpointError for
    an unknown architecture, argument names the class does not take, or bad values."""
    network = architecture_class(IMPORTABLE.get(arch, ""))
    if network is None:
        raise CheckpointError(f"unknown architecture {arch!r}; choose one of {', '.join(IMPORTABLE)}")
    accepted = set(inspect.signature(network.__init__).parameters) - {"self"}
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        raise CheckpointError(f"{arch} takes no argument {', '.join(unknown)}; it takes "
                              f"{', '.join(sorted(accepted))}")
    try:
        return network(**arguments)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"cannot build a {arch} with {arguments} ({_reason(exc)})") from exc


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], arch: str) -> dict:
    """``state`` made complete for ``model``: every key and shape must match. The only key
    that may be absent is BatchNorm's ``num_batches_tracked`` (a counter; older PyTorch did
    not save it), taken from the model. Raises CheckpointError naming the keys at fault."""
    expected = model.state_dict()
    state = dict(state)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = expected[key]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} not in a {arch} ({_some(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} of the wrong shape (" + "; ".join(
            f"{k}: {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}" for k in wrong[:3]) + ")")
    if problems:
        raise CheckpointError(f"the weights do not fit a {arch} with {getattr(model, 'config', {})}: "
                              f"{', '.join(problems)}")
    return state


def _fitted_network(arch: str, state: dict[str, torch.Tensor], inferred: dict, given: dict) -> torch.nn.Module:
    """``arch``'s network built with the ``inferred`` arguments and the ``given`` ones over
    them, ``state`` loaded. Raises CheckpointError when they do not fit: naming the given
    arguments that the weights contradict, with the weights' values, when the weights' values
    make them fit; else naming the keys and shapes at fault."""
    try:
        return _network_with(arch, state, {**inferred, **given})
    except CheckpointError as exc:
        raise CheckpointError(_contradicted(arch, state, inferred, given) or str(exc)) from exc


def _network_with(arch: str, state: dict[str, torch.Tensor], arguments: dict) -> torch.nn.Module:
    model = build_network(arch, arguments)
    model.load_state_dict(check_state_dict(model, state, arch), strict=True)
    return model


def _contradicted(arch: str, state: dict[str, torch.Tensor], inferred: dict, given: dict) -> str | None:
    """The fewest ``given`` arguments whose values read from the weights make them fit, as
    a message; None when the weights' values do not make them fit either."""
    def fits(names: list[str]) -> bool:
        try:
            _network_with(arch, state, {**inferred, **given, **{n: inferred[n] for n in names}})
        except CheckpointError:
            return False
        return True

    wrong = [name for name in given if name in inferred and given[name] != inferred[name]]
    if not wrong or not fits(wrong):
        return None
    for name in list(wrong):  # keep what the user gave wherever it fits anyway
        if fits([n for n in wrong if n != name]):
            wrong.remove(name)
    theirs = " and ".join(f"{name} {_shown(name, inferred[name], given[name])}" for name in wrong)
    yours = " and ".join(_shown(name, given[name], inferred[name]) for name in wrong)
    return (f"these weights are a {arch} with {theirs}, not {yours} as --arch-args says; leave "
            f"{' and '.join(wrong)} out of --arch-args: the weights show {'them' if len(wrong) > 1 else 'it'}")


def _shown(name: str, value: object, other: object) -> str:
    """An argument's value as --arch-args spells it (JSON), with the levels it makes where
    ``other`` makes another number."""
    text = json.dumps(value)
    if name in ("channels", "strides") and isinstance(value, list) and isinstance(other, list) \
            and len(value) != len(other):
        text += f" ({len(value) + (name == 'strides')} levels)"
    return text


def _check_finite(state: dict[str, torch.Tensor]) -> None:
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"weight {key} holds NaN or infinite values (training diverged?)")


def _check_runs_at(model: torch.nn.Module, size: int, num_classes: int, arch: str) -> None:
    """The network must map (1, 1, size, size) to (1, num_classes, size, size) logits."""
    with torch.no_grad():
        try:
            shape = tuple(model(torch.zeros(1, 1, size, size)).shape)
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"this {arch} cannot take {size} x {size} slices ({_reason(exc)[:160]}); "
                                  "choose another --input-size (a multiple of 16 usually works)") from exc
    if shape != (1, num_classes, size, size):
        raise CheckpointError(f"this {arch} turns {size} x {size} slices into {shape[-2]} x {shape[-1]} "
                              "logits; segview needs the input's size back")


# -- the whole import -------------------------------------------------------------------

def import_state_dict(weights, arch: str, classes: list[str], modality: str, output,
                      input_size: int = 256, ct_window: tuple[float, float] | None = None,
                      arch_args: dict | None = None) -> ImportResult:
    """Write ``weights`` (a state dict file) as a segview checkpoint at ``output``.

    ``classes``: one name per output channel, background first; ``modality``: "CT" or
    "MR" (CT is clipped to ``ct_window`` in HU, default -1000..1000, MR is scaled by
    its 0.5 and 99.5 percentiles, both to [0, 1]); ``input_size``: the side slices are
    resized to; ``arch_args`` override inferred arguments. Raises CheckpointError for
    anything that does not fit (the message names it), OSError when ``output`` cannot
    be written."""
    modality = modality.upper()
    if modality not in MODALITIES:
        raise CheckpointError(f"the modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    if not isinstance(input_size, int) or input_size < 8:
        raise CheckpointError(f"the input size must be an integer of at least 8, not {input_size!r}")
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(c.strip() for c in classes):
        raise CheckpointError("give at least two distinct class names, background first")
    state, notes = read_state_dict(weights)
    state, prefix = strip_wrapper_prefix(arch, state)
    if prefix:
        notes.append(f"removed the prefix {prefix!r} of every key")
    inferred, assumed = infer_arguments(arch, state)
    given = arch_args or {}
    arguments = {**inferred, **given}
    notes += [why for name, why in assumed.items() if name not in given]
    _check_finite(state)
    _check_channels(arguments, classes, arch)
    model = _fitted_network(arch, state, inferred, given)
    model.eval()
    _check_runs_at(model, input_size, len(classes), arch)
    meta = _metadata(Path(weights), arch, classes, modality, input_size, ct_window, notes)
    path = save_checkpoint(output, model, meta)
    loaded, _ = load_checkpoint(path)
    _check_same_logits(model, loaded, input_size)
    return ImportResult(path, loaded, arguments, notes)


def _check_channels(arguments: dict, classes: list[str], arch: str) -> None:
    if arguments["in_channels"] != 1:
        raise CheckpointError(f"this {arch} takes {arguments['in_channels']} input channels; segview "
                              "feeds networks one image channel (one slice of one series)")
    outputs = arguments["num_classes"]
    if outputs == 1:
        raise CheckpointError(f"this {arch} has one output (a sigmoid mask); segview needs one logit "
                              "per class including the background (softmax)")
    if outputs != len(classes):
        raise CheckpointError(f"the network has {outputs} outputs but --classes names {len(classes)} "
                              f"({', '.join(classes)}); give one name per output, background first")


def _metadata(weights: Path, arch: str, classes, modality, input_size, ct_window, notes) -> dict:
    window = tuple(ct_window) if ct_window is not None else DEFAULT_CT_WINDOW
    return {
        "classes": classes_to_metadata(named_classes(list(classes))),
        "preprocessing": {"input_size": [input_size, input_size], "modality": modality,
                          "normalization": normalization_for(modality, window)},
        "imported": {"source": weights.name, "sha256": file_sha256(weights), "arch": arch, "notes": notes},
    }


def _check_same_logits(model: torch.nn.Module, loaded: torch.nn.Module, size: int) -> None:
    """The written checkpoint must compute exactly what the network built here computes."""
    image = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if not torch.equal(model(image), loaded(image)):
            raise CheckpointError("the written checkpoint does not reproduce the network's logits; "
                                  "please report this as a bug")




def _some(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")


def _first_keys(state: dict) -> str:
    return _some(list(state))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
