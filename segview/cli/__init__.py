"""The ``segview`` command: the application by default, tools as subcommands.

    segview [IMAGE|DATASET] [--labels L] [--model CKPT]... [--demo]    open the viewer
    segview phantom {cardiac,lung} -o DIR          write synthetic cases
    segview train DATA|--phantom TASK -o DIR      train a UNet on 2D slices
    segview evaluate CKPT [CKPT] --data DIR       Dice/IoU/pixel error, Table 1, paired test
    segview predict CKPT INPUT -o OUTPUT           label volumes on the input's grid
    segview import WEIGHTS --arch A --classes ...  a PyTorch/MONAI state dict as a checkpoint
    segview export CKPT -o model.onnx             a checkpoint as an ONNX model
    segview info CKPT                             a checkpoint's metadata and lineage
    segview bench {metrics,...,clicks,scale}   speed figures, measured side by side

User errors end in a one-line message and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import __version__
from ..core.errors import SegviewError
from .common import UserError, progress

SUBCOMMANDS = ("phantom", "train", "evaluate", "predict", "import", "export", "info", "pacs", "bench")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        args = _tool_parser().parse_args(argv)
    else:
        args = _viewer_parser().parse_args(argv)
    try:
        if getattr(args, "device", None):  # one line, not torch's traceback, for a device not here
            from ..ml.inference import checked_device

            checked_device(args.device)
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("segview: cancelled", file=sys.stderr)
        return 130
    except SegviewError as exc:
        print(f"segview: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the disk or a folder, not segview: one line naming the file (no traceback)
        name = Path(str(exc.filename)) if exc.filename else None
        if name is not None and name.name.startswith(".") and ".tmp" in name.name:  # an atomic write's
            name = name.parent
        where = f": {name}" if name is not None else ""
        print(f"segview: cannot read or write{where} ({exc.strerror or exc})", file=sys.stderr)
        return 2


# -- the viewer -------------------------------------------------------------------------

def _viewer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segview", description="Review CT/MRI volumes and their segmentation labels.",
        epilog=f"Tools: segview {{{','.join(SUBCOMMANDS)}}} --help")
    parser.add_argument("--version", action="version", version=f"segview {__version__}")
    parser.add_argument("image", nargs="?", help="image file, DICOM folder, or dataset folder (nnU-Net layout or "
                        "DICOM studies: opens the worklist) to open")
    parser.add_argument("--labels", help="label volume on the image's grid")
    parser.add_argument("--model", action="append", default=[], metavar="CKPT",
                        help="checkpoint to run on the image (give it twice to compare two)")
    parser.add_argument("--demo", action="store_true",
                        help="open a bundled cardiac MRI phantom with the two bundled checkpoints")
    parser.add_argument("--compare", action="store_true",
                        help="open in compare mode: model A and model B side by side")
    parser.add_argument("--screenshot", metavar="PNG",
                        help="render the window to PNG after loading and exit (no display needed)")
    parser.set_defaults(run=_run_viewer)
    return parser


def _run_viewer(args) -> int:
    from ..gui.app import run  # Qt is imported only when a window is wanted

    if len(args.model) > 2:
        raise UserError("--model can be given at most twice (models A and B)")
    for path in args.model:
        if not Path(path).is_file():
            raise UserError(f"checkpoint not found: {path}")
    return run(image=args.image, labels=args.labels, models=args.model, demo=args.demo,
               screenshot=args.screenshot, compare=args.compare)


# -- tools ------------------------------------------------------------------------------

def _tool_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segview")
    commands = parser.add_subparsers(dest="command", required=True)

    phantom = commands.add_parser(
        "phantom", help="write synthetic cardiac MRI or lung CT cases with labels",
        description="Write image/label pairs in the nnU-Net layout (imagesTr/, labelsTr/, "
                    "dataset.json); as NIfTI, or the images as real DICOM series.")
    phantom.add_argument("task", choices=["cardiac", "lung"])
    phantom.add_argument("-o", "--output", required=True, type=Path)
    phantom.add_argument("--count", type=int, default=1, help="number of cases (default 1)")
    phantom.add_argument("--seed", type=int, default=0, help="seed of the first case; case n uses seed + n")
    phantom.add_argument("--format", choices=["nifti", "dicom"], default="nifti")
    phantom.add_argument("--shift", action="store_true",
                         help="as another scanner shows them (seeded): MR a gamma curve, a strong bias field and "
                              "more noise; CT a miscalibrated HU scale and offset and more noise (core.phantoms.SHIFT)")
    phantom.set_defaults(run=_run_phantom)

    from .tools import add_tool_parsers  # noqa: PLC0415 (keeps torch out of `segview --help`)

    add_tool_parsers(commands)
    from .pacs import add_pacs_parser

    add_pacs_parser(commands)
    from .models import add_model_parsers  # torch-free too

    add_model_parsers(commands)

    bench = commands.add_parser(
        "bench", help="measure speed: fast paths against their baselines, side by side",
        description="Each benchmark times segview's fast path and a baseline in one run, "
                    "checks they agree and prints the ratio against the target.")
    benchmarks = bench.add_subparsers(dest="benchmark", required=True)
    metrics = benchmarks.add_parser(
        "metrics", help="ConfusionMatrix update after a brush stroke vs full recounts")
    metrics.add_argument("--shape", type=int, nargs=3, default=[300, 512, 512],
                         metavar=("Z", "Y", "X"), help="volume size (default 300 512 512)")
    metrics.add_argument("--classes", type=int, default=4, help="label classes, background included (default 4)")
    metrics.add_argument("--radius", type=int, default=15, help="brush radius in pixels")
    metrics.add_argument("--strokes", type=int, default=200, help="brush strokes timed (default 200)")
    metrics.set_defaults(run=_run_bench_metrics)
    for name, what in (("train", "training images per second, CPU and GPU"),
                       ("infer", "inference slices per second; GPU batch/bf16 ratio and volume time"),
                       ("gui", "frame times while scrolling, event-loop stalls during inference"),
                       ("edit", "brush stroke mouse-move handling on a 300- vs a 30-slice volume"),
                       ("surface", "HD95 of one structure pair on 300 x 384 x 384 against medpy"),
                       ("tools", "islands, smoothing and margin on an organ in 300 x 512 x 512 against scipy"),
                       ("load", "load_volume on a 300 x 512 x 512 CT series against SimpleITK's reader"),
                       ("worklist", "Ctrl+N to the next 300 x 512 x 512 CT case with cached predictions, "
                                    "cold vs prefetched"),
                       ("finetune", "a shipped checkpoint fine-tuned on corrected cases of a new scanner, "
                                    "held-out Dice before / after, beside training from scratch"),
                       ("scale", "a 1500 x 512 x 512 CT with two models beside 300 slices: peak memory, "
                                 "counting, a stroke, the whole-volume copy and its undo step, a save"),
                       ("clicks", "the interactive model by the simulated reviewer on unseen phantoms: NoC@90, "
                                  "never, lowering, latency; beside the brush and random_walker")):
        timed = benchmarks.add_parser(name, help=what)
        if name in SECONDS_HELP:  # the others run a fixed protocol
            timed.add_argument("--seconds", type=float, default=3.0, help=SECONDS_HELP[name])
        if name == "gui":
            timed.add_argument("--compare", action="store_true", help="scroll in compare mode (two panes)")
        if name == "clicks":
            timed.add_argument("--cases", type=int, help="phantom cases per task (default 12)")
            timed.add_argument("--click-model", type=Path, metavar="CKPT",
                               help="the interactive checkpoint (default: the shipped interactive.safetensors)")
            timed.add_argument("--first-seed", type=int,
                               help="seed of each task's first phantom case (default 4000; not one the shipped models "
                                    "trained on)")
            timed.add_argument("--task", choices=("cardiac", "lung"), action="append",
                               help="only this task (may be repeated; default both)")
        timed.set_defaults(run=_run_bench_timed)
    return parser


#: What --seconds sets, for the benchmarks it sets anything for.
SECONDS_HELP = {name: "time per measurement (default 3)" for name in ("train", "infer", "gui", "edit", "surface",
                                                                      "tools")}
SECONDS_HELP["load"] = "how long to measure: a round every 2 s, at least 5 rounds (default 3)"
SECONDS_HELP["worklist"] = "rounds of cold and prefetched Ctrl+N: one a second, 1 to 5 (default 3)"


def _run_bench_timed(args) -> int:
    from ..bench import BENCHMARKS

    options = {"compare": args.compare} if getattr(args, "compare", False) else {}
    if args.benchmark == "clicks":
        if args.cases is not None and args.cases < 1:
            raise UserError("--cases must be at least 1")
        options = {"cases": args.cases, "click_model": args.click_model, "first_seed": args.first_seed,
                   "tasks": tuple(dict.fromkeys(args.task)) if args.task else None}
    BENCHMARKS[args.benchmark](seconds=max(getattr(args, "seconds", 3.0), 0.1), **options)
    return 0


def _run_bench_metrics(args) -> int:
    from ..bench import bench_metrics

    if min(args.shape) < 1 or not 2 <= args.classes <= 256 or args.radius < 1 or args.strokes < 1:
        raise UserError("--shape, --radius and --strokes must be positive; --classes from 2 to 256 "
                        "(labels are 8-bit)")
    figures = bench_metrics(tuple(args.shape), args.classes, args.radius, args.strokes)
    return 0 if figures["identical"] else 1


def _run_phantom(args) -> int:
    from ..core.dicom import write_dicom_series
    from ..core.files import atomic_write_text
    from ..core.io import save_labels, save_volume
    from ..core.phantoms import make_phantom, phantom_written, scanner_shift

    if args.count < 1:
        raise UserError("--count must be at least 1")
    if args.seed < 0:  # numpy's seeding refused it with a traceback
        raise UserError("--seed must be 0 or more")
    images, labels = args.output / "imagesTr", args.output / "labelsTr"
    names = [f"{args.task}_{seed:03d}" for seed in range(args.seed, args.seed + args.count)]
    there = [name for name in names if (labels / f"{name}.nii.gz").exists() or (images / name).exists()
             or (images / f"{name}_0000.nii.gz").exists()]
    if there:  # its labels may hold a person's corrections: a tester's were replaced, unsaid
        raise UserError(f"{args.output} already holds {', '.join(there[:4])}{' ...' if len(there) > 4 else ''}; "
                        "choose another folder, or other seeds (--seed)")
    held = phantom_written(args.output)
    if held and (held.get("task"), held.get("format")) != (args.task, args.format):  # one task, one format a dataset
        raise UserError(f"{args.output} holds {held.get('task')} cases as {held.get('format')}; add {args.task} "
                        f"cases as {args.format} to another folder")
    try:
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {args.output}: {exc.strerror or exc}") from exc
    classes = None
    for n in range(args.count):
        seed = args.seed + n
        progress(n, args.count, f"{args.task} seed {seed}")
        case = make_phantom(args.task, seed)
        if args.shift:
            case = scanner_shift(case, seed)
        classes = case.classes
        name = names[n]
        try:
            if args.format == "dicom":
                image = images / name
                write_dicom_series(case.volume, image, patient_id=name,
                                   series_description=case.volume.meta["series_description"])
            else:
                image = save_volume(images / f"{name}_0000.nii.gz", case.volume)
            label_file = save_labels(labels / f"{name}.nii.gz", case.labels, case.volume, case.classes)
        except OSError as exc:
            raise UserError(f"cannot write case {name} to {args.output}: {exc}") from exc
        print(f"wrote {image} and {label_file}", flush=True)  # as predict names each file: where they went
    progress(args.count, args.count, "done")
    assert classes is not None  # count >= 1 phantoms were made
    dataset = {
        "name": f"segview {args.task} phantom",
        "channel_names": {"0": "CT" if args.task == "lung" else "MRI"},
        "labels": {c.name: c.value for c in classes},
        "numTraining": len(list(labels.glob("*.nii.gz"))),  # the cases added before too
        "file_ending": ".nii.gz" if args.format == "nifti" else "",
        "segview": {"task": args.task, "first_seed": min(args.seed, held.get("first_seed", args.seed)),
                    "format": args.format},
    }
    atomic_write_text(args.output / "dataset.json", json.dumps(dataset, indent=2))
    count = dataset["numTraining"]
    print(f"wrote {args.output / 'dataset.json'} ({count} case{'s' if count != 1 else ''} in {args.output})")
    return 0


