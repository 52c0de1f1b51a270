"""Models from elsewhere and for elsewhere: ``segview import`` and ``segview export``.

    segview import WEIGHTS --arch ARCH --classes NAME,NAME,... --modality CT|MR
                   [--input-size N] [--ct-window LOW HIGH] [--arch-args JSON] -o OUT.safetensors
    segview export CKPT -o model.onnx

Parsers are built without importing torch; each ``_run_*`` imports what it needs. Also
here: the one-line modality warning that ``predict`` and ``evaluate`` print, and the
rank and world size of a run under torchrun.
"""
from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from pathlib import Path

ARCH_CHOICES = ("segview-unet", "monai-unet", "monai-basicunet", "milesial-unet")


def add_model_parsers(commands) -> None:
    _add_import(commands)
    _add_export(commands)
    parser = commands.add_parser("info", help="a checkpoint's metadata and lineage",
                                 description="Print what a checkpoint is (network, classes, preprocessing, loss, "
                                             "training data, validation) and where it comes from (the parent it "
                                             "was fine-tuned from, the cases and reviewed slices, the split).")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--json", action="store_true", help="the whole metadata as JSON")
    parser.set_defaults(run=_run_info)


# -- info -------------------------------------------------------------------------------

def _run_info(args) -> int:
    from ..ml.checkpoint import read_metadata
    from ..core.files import file_sha256
    from ..core.report import finite_or_none

    meta = read_metadata(args.checkpoint)
    if args.json:
        print(json.dumps(finite_or_none(meta), indent=1, allow_nan=False))  # strict JSON: no score is null
        return 0
    print(checkpoint_text(args.checkpoint.name, file_sha256(args.checkpoint), meta))
    return 0


def _orientation_text(meta: dict) -> str:
    from ..ml.checkpoint import CheckpointError, slice_orientation

    try:
        return "shown" if slice_orientation(meta) == "display" else "stored"
    except CheckpointError as exc:
        return str(exc)


def checkpoint_text(name: str, sha256: str, meta: dict) -> str:
    """A checkpoint's metadata and lineage for a person to read."""
    architecture = meta.get("architecture", {})
    pre = meta.get("preprocessing", {})
    lines = [f"{name}  sha256 {sha256}",
             f"network      {architecture.get('name', '?')} "
             + ", ".join(f"{k} {v}" for k, v in architecture.items() if k != "name"),
             "classes      " + ", ".join(f"{c['value']} {c['name']}" for c in meta.get("classes", [])),
             f"input        {pre.get('modality', 'any modality')}, {'x'.join(map(str, pre.get('input_size', [])))}, "
             f"normalisation {json.dumps(pre.get('normalization', {}))}, slices as {_orientation_text(meta)}",
             *_click_model_lines(meta), *_history_lines(meta)]
    lineage = meta.get("lineage")
    if lineage:
        parent = lineage.get("parent")
        cases = lineage.get("cases", {})
        lines += ["lineage",
                  f"  parent     {_parent_text(parent)}",
                  f"  dataset    {lineage.get('dataset')}",
                  f"  cases      {len(cases)}" + (f": {', '.join(cases)}" if cases else "") + _digests_text(lineage),
                  f"  slices     {_slices_text(lineage)}",
                  f"  held out   {', '.join(lineage.get('split', {}).get('val', [])) or 'none'}",
                  f"  loss       {lineage.get('loss', {}).get('name')}",
                  f"  replay     {_replay_text(lineage.get('replay'))}",
                  f"  date       {lineage.get('date')}"]
    return "\n".join(lines)


def _click_model_lines(meta: dict) -> list[str]:
    """What a click model is and sees (``ml.interactive``): its task, input channels, click
    encoding and crop; a tester read it as a one-class UNet of 6 input channels, the rest
    only in --json. None for a segmentation model."""
    if meta.get("task") != "interactive":
        return []
    from ..ml.interactive import FOCUS_SIZE

    pre = meta.get("preprocessing", {})
    click, crop = pre.get("click", {}), pre.get("crop", {})
    context = pre.get("context_slices", "?")
    margin = crop.get("margin")
    focus = (f"{crop['focus_size']} pixels" if "focus_size" in crop
             else f"{FOCUS_SIZE} pixels (the runtime's; not in its metadata)")
    return ["task         interactive: a click model, which corrects one class on one slice from a person's "
            "clicks (the Click tool, bench clicks, evaluate --robot); not a segmentation model",
            f"channels     slices z-{context}..z+{context}, the class's current mask, positive clicks, "
            "negative clicks",
            f"clicks       {click.get('shape', '?')}, radius {click.get('radius', '?')} pixels of the input",
            f"crop         around {'the last click' if crop.get('around') == 'last click' else 'every click'}, "
            f"margin {f'{margin:.0%}' if isinstance(margin, (int, float)) else '?'} of its side, at least "
            f"{crop.get('min_size', '?')} pixels; from the second click a focus crop of at least {focus}"]


def _parent_text(parent: dict | None) -> str:
    """The checkpoint fine-tuned, and its Dice on the held-out cases before fine-tuning (what
    the fine-tune had to beat), where recorded."""
    if not parent:
        return "none (trained from scratch)"
    text = f"{parent.get('name', '?')} (sha256 {parent.get('sha256', '?')})"
    dice = parent.get("held_out_dice")
    if isinstance(dice, (int, float)) and math.isfinite(dice):
        text += f", held-out Dice before fine-tuning {dice:.4f}"
    return text


def _digests_text(lineage: dict) -> str:
    """How many of the cases learnt are known by their voxels (``core.journal.voxel_digest``):
    the verdict finds those however they were copied, renamed or re-saved."""
    voxels = lineage.get("voxels")
    if not isinstance(voxels, dict):
        return " (no image digests: a copy elsewhere is not recognised)"
    return "" if len(voxels) == len(lineage.get("cases", {})) else f" ({len(voxels)} known by their voxels)"


def _history_lines(meta: dict) -> list[str]:
    """How the network came to be: its loss and training (an interactive model's data and
    simulated reviewer), or what ``segview import`` recorded of one trained elsewhere."""
    training = meta.get("training", {})
    if "imported" in meta and not training:
        return _imported_lines(meta["imported"])
    loss = meta.get("loss", {})
    weighted = "alpha" in loss and loss.get("name") == "ce+dice"  # alpha weighs only ce+dice's Dice term
    lines = [f"loss         {loss.get('name', '?')}" + (f", alpha {loss['alpha']:g}" if weighted else "")]
    if meta.get("task") == "interactive":
        return lines + _interactive_lines(meta)
    dice = meta.get("validation", {}).get("dice", {}).get("mean")
    lineage = meta.get("lineage")
    if isinstance(lineage, dict) and isinstance(lineage.get("cases"), dict):
        verb = "fine-tuned on" if lineage.get("parent") else "trained on  "
        data = _learnt_text(training, lineage) + ";"
    else:  # trained before lineages were kept (the shipped models)
        verb = "trained on  "
        data = f"{_cases_text(training)}, {training.get('train_slices', '?')} training slices,"
    return lines + [f"{verb} {training.get('source', '?')}: {data} {_epochs_text(training)}, "
                    f"{_processes_text(training)}",
                    "validation   " + (f"Dice {dice:.4f}" if dice is not None else "none")]


def _processes_text(training: dict) -> str:
    """"2 process(es) on cpu": how a run was spread (its batch was that many times
    --batch-size)."""
    return f"{training.get('world_size', 1)} process(es) on {training.get('device') or '?'}"


def _imported_lines(imported: dict) -> list[str]:
    """What ``segview import`` recorded of a network trained elsewhere (no loss, cases or
    epochs of segview's to tell)."""
    notes = imported.get("notes") or []
    return [f"imported     {imported.get('arch', '?')} weights from {imported.get('source', '?')} "
            f"(sha256 {imported.get('sha256', '?')}); trained elsewhere: its loss and data are not recorded",
            *(f"  note       {note}" for note in (notes if isinstance(notes, list) else [notes]))]


def _replay_text(replay: dict | None) -> str:
    """"phantom cardiac, seeds 0..11, half of each epoch" or "none"."""
    if not replay:
        return "none"
    return f"{replay.get('source', '?')}, {float(replay.get('share', 0)):.0%} of each epoch"


def _cases_text(training: dict) -> str:
    """"7 cases (1 held out)": the dataset's cases, those kept for validation among them."""
    from ..core.report import counted

    cases = training.get("cases")
    held_out = len((training.get("split") or {}).get("validation", []))
    said = counted(cases, "case") if isinstance(cases, int) else "? cases"
    return said + (f" ({held_out} held out)" if held_out else "")


def _learnt_text(training: dict, lineage: dict) -> str:
    """"3 cases (17 reviewed slices); 1 held out; 1 left out (no reviewed slice)": what a run
    with a lineage learnt from, what it kept for validation (the dataset's cases it did not
    learn from) and what of the folder it never read (``training.skipped``, by reason). A
    tester read "4 cases (1 held out)" of a fine-tune on 3, 1 held out and a fifth with
    nothing reviewed."""
    from ..core.report import counted

    learnt = len(lineage["cases"])
    slices = lineage.get("slices", training.get("train_slices", "?"))
    said = f"{counted(learnt, 'case')} ({slices} {'reviewed ' if lineage.get('reviewed_slices') else ''}slices)"
    cases = training.get("cases")
    if isinstance(cases, int) and cases > learnt:
        said += f"; {cases - learnt} held out"
    reasons = Counter(str(entry).partition(": ")[2] or str(entry) for entry in training.get("skipped") or [])
    if reasons:
        why = "; ".join(reason if len(reasons) == 1 else f"{n} {reason}" for reason, n in reasons.items())
        said += f"; {sum(reasons.values())} left out ({why})"
    return said


def _epochs_text(training: dict) -> str:
    """"41 of 50 epochs": those the checkpoint (the best epoch) had trained, of the run's."""
    run = training.get("config", {}).get("epochs")
    return f"{training.get('epochs', '?')}" + (f" of {run}" if run else "") + " epochs"


def _slices_text(lineage: dict) -> str:
    """The slices a checkpoint learnt from: those reviewed, or every slice of its cases."""
    reviewed = lineage.get("reviewed_slices")
    if "slices" not in lineage:  # written before "slices" was: every slice counted as reviewed
        return f"{reviewed} (reviewed, or every slice of each case)"
    slices = lineage["slices"]
    return f"{slices} ({reviewed} reviewed)" if reviewed else f"{slices} (every slice of each case)"


def _interactive_lines(meta: dict) -> list[str]:
    """A click model's data (several datasets), the starting masks it learnt from (the
    checkpoints of ``--from-model`` and the mix of starts), the processes it ran on, and its
    simulated reviewer's validation, pooled and per start: two runs that differ only in
    ``--from-model`` read differently."""
    from ..core.report import counted

    training, validation = meta.get("training", {}), meta.get("validation", {})
    data = "; ".join(f"{d.get('source', '?')}: {d.get('cases', '?')} cases, {d.get('slices', '?')} slices"
                     + (f", {counted(len(d['skipped']), 'case')} skipped" if d.get("skipped") else "")
                     for d in training.get("datasets", [])) or "?"
    held_out = len((training.get("split") or {}).get("validation") or [])
    epochs = training.get("config", {}).get("epochs")
    models = ", ".join(f"{m.get('name', '?')} (sha256 {str(m.get('sha256', '?'))[:12]})"
                       for m in training.get("from_models") or [])
    starts = (training.get("recipe") or {}).get("starts") or {}
    mix = ", ".join(f"{name} {share:.0%}" for name, share in starts.items()) or "?"
    lines = [f"trained on   {data}" + (f" ({held_out} of the cases held out for validation)" if held_out else "")
             + f"; {counted(epochs, 'epoch') if isinstance(epochs, int) else '? epochs'}, "
             f"{_processes_text(training)}",
             f"starts       {mix}" + (f"; predictions of {models}" if models else " (no --from-model)")]
    if "noc90" not in validation:
        return lines + ["validation   none"]
    lines.append(f"validation   {_reviewer_figures(validation)} (epoch {validation.get('epoch', '?')})")  # from 1
    lines += [f"  from {name:<11}{_reviewer_figures(figures)}" for name, figures in
              (validation.get("by_start") or {}).items() if "noc90" in figures]
    return lines


def _reviewer_figures(figures: dict) -> str:
    """The simulated reviewer's figures in one line: objects, Dice after 1/3/5 clicks,
    NoC@90, never, lowering."""
    return (f"{figures.get('objects', '?')} objects: Dice after 1/3/5 clicks "
            f"{figures['dice_1']:.3f}/{figures['dice_3']:.3f}/{figures['dice_5']:.3f}, "
            f"NoC@90 {figures['noc90']:.2f}, never {_share(figures.get('never90'))}, "
            f"lowering {_share(figures.get('lowering'))}")


def _share(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


# -- import -----------------------------------------------------------------------------

def _add_import(commands) -> None:
    parser = commands.add_parser(
        "import", help="turn a PyTorch/MONAI state dict into a segview checkpoint",
        description="Read a state dict (.pth/.pt with torch.load(weights_only=True), or "
                    ".safetensors) of a known network, infer its hyperparameters from the "
                    "tensor shapes, check every key and shape, and write a segview checkpoint "
                    "that computes exactly what the source network computes. Whole pickled "
                    "models are refused: save model.state_dict() instead.")
    parser.add_argument("weights", type=Path, help="the state dict file")
    parser.add_argument("--arch", required=True, choices=ARCH_CHOICES,
                        help="the network: segview's UNet, MONAI's UNet or BasicUNet (2D), or the "
                             "UNet of milesial/Pytorch-UNet (bilinear or transposed convolutions)")
    parser.add_argument("--classes", required=True,
                        help="class names, one per output channel, background first: background,liver")
    parser.add_argument("--modality", required=True, type=str.upper, choices=["CT", "MR"],
                        help="what the network was trained on (CT: HU window; MR: percentiles)")
    parser.add_argument("--input-size", type=int, default=256,
                        help="side of the square slices the network was trained on (default 256)")
    parser.add_argument("--ct-window", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="HU window CT is clipped to before scaling to [0, 1] (default -1000 1000)")
    parser.add_argument("--arch-args", metavar="JSON",
                        help="arguments the weights do not show, as a JSON object, e.g. "
                             "'{\"strides\": [2, 2, 1]}' or '{\"act\": \"relu\"}'")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .safetensors checkpoint to write")
    parser.set_defaults(run=_run_import)


def _run_import(args) -> int:
    from ..ml.importers import import_state_dict
    from .common import UserError

    classes = [name.strip() for name in args.classes.split(",")]
    if args.ct_window is not None and args.modality != "CT":
        raise UserError("--ct-window applies to CT only")
    if args.ct_window is not None and args.ct_window[0] >= args.ct_window[1]:
        raise UserError("--ct-window needs LOW below HIGH")
    if args.output.suffix.lower() != ".safetensors":
        raise UserError(f"the output must be a .safetensors file, not {args.output.name}")
    arch_args = _json_object(args.arch_args) if args.arch_args else None
    result = import_state_dict(args.weights, args.arch, classes, args.modality, args.output,
                               input_size=args.input_size, ct_window=args.ct_window, arch_args=arch_args)
    for note in result.notes:
        print(f"segview: note: {note}", file=sys.stderr)
    print(f"{result.path}  ({args.arch}: {json.dumps(result.arguments)})")
    return 0


def _json_object(text: str) -> dict:
    from .common import UserError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--arch-args is not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(value, dict):
        raise UserError("--arch-args must be a JSON object: {\"name\": value, ...}")
    return value


# -- export -----------------------------------------------------------------------------

def _add_export(commands) -> None:
    parser = commands.add_parser(
        "export", help="export a checkpoint to ONNX (dynamic batch and size, metadata included)",
        description="Write the network of a segview checkpoint as an ONNX model: input 'image' "
                    "(N, 1, H, W) for a segmentation model, (N, 6, H, W) for a click model (slices "
                    "z-1, z, z+1, the mask, positive and negative clicks; segview itself runs its "
                    ".safetensors), output 'logits' (N, C, H, W), any batch and size; the "
                    "checkpoint's metadata (classes, preprocessing) is stored in the model's "
                    "metadata property 'segview'. The export is checked against torch.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from ..ml.onnx_model import export_onnx

    print(export_onnx(args.checkpoint, args.output))
    return 0


# -- shared by predict and evaluate -----------------------------------------------------

def warn_modality(name: str, meta: dict, volume, warned: set | None = None) -> None:
    """One line on stderr when ``volume`` is not of the modality checkpoint ``name`` was
    trained on; with ``warned``, each modality is reported once per run."""
    from ..ml.checkpoint import modality_mismatch

    message = modality_mismatch(meta, volume)
    key = (name, getattr(volume, "modality", ""))
    if message is None or (warned is not None and key in warned):
        return
    if warned is not None:
        warned.add(key)
    print(f"segview: warning: {name}: {message}", file=sys.stderr)


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes under torchrun (RANK and
    WORLD_SIZE); (0, 1) otherwise."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1
    return (rank, world) if 0 <= rank < world else (0, 1)


def rank_device(device: str | None) -> str | None:
    """Under torchrun with GPUs and no --device, each local rank takes its own GPU."""
    if device is not None or "LOCAL_RANK" not in os.environ:
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
