"""The model tools of the ``segview`` command: train, evaluate, predict.

Parsers are built here without importing torch (so ``segview --help`` and ``segview
phantom`` stay quick); each ``_run_*`` imports what it needs and turns the library's
errors into one-line messages through ``segview.cli``.
"""
from __future__ import annotations

import json
import math
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

from ..ml.config import DEFAULT_REPLAY_SHARE, FINETUNE_PRESET, PAPER_PRESET, InteractiveConfig, TrainConfig


#: --cases left out: phantom cases per task.
PHANTOM_CASES = 20


def add_tool_parsers(commands) -> None:
    _add_train(commands)
    _add_evaluate(commands)
    _add_predict(commands)


def _add_data_options(parser, several: bool) -> None:
    source = parser.add_argument_group("data (a folder in the nnU-Net layout, or phantoms)")
    source.add_argument("--phantom", choices=["cardiac", "lung"],
                        action="append" if several else "store",
                        help="generate synthetic cases of this task" + (" (may be repeated)" if several else ""))
    # No defaults here: a number typed must be told from none (with a dataset folder alone both were ignored).
    source.add_argument("--cases", type=int, help=f"number of phantom cases (default {PHANTOM_CASES})")
    source.add_argument("--first-seed", type=int, help="seed of the first phantom case (default 0)")


def _phantom_numbers(args) -> tuple[int, int]:
    """--cases and --first-seed, their defaults filled in; refused (UserError) without
    --phantom: a dataset folder's cases are all its own, and the numbers were ignored unsaid."""
    from .common import UserError

    given = [option for option, value in (("--cases", args.cases), ("--first-seed", args.first_seed))
             if value is not None]
    if given and not args.phantom:
        raise UserError(f"{' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with --phantom (the "
                        "synthetic cases): a dataset folder's cases are all used")
    return (PHANTOM_CASES if args.cases is None else args.cases), (args.first_seed or 0)


# -- train ------------------------------------------------------------------------------

def _shown(value) -> str:
    """A default as the help shows it: 0.001, 0.0003, none, -1000 1000."""
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(_shown(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(name: str, interactive: bool = True, init: str | None = None) -> str:
    """The defaults of setting ``name`` in each mode of ``segview train``, read from the
    classes and presets a run uses: "default 0.001, also with --interactive; with --init
    0.0003, with --preset paper 0.01". ``interactive``: whether the option goes with
    --interactive; ``init``: what --init makes it when its preset has none (the
    checkpoint's). A mode that sets nothing of it is not named."""
    default = getattr(TrainConfig, name)
    modes = {"--interactive": getattr(InteractiveConfig, name)} if interactive else {}
    if name in FINETUNE_PRESET or init:
        modes["--init"] = FINETUNE_PRESET.get(name, init)
    if name in PAPER_PRESET:
        modes["--preset paper"] = PAPER_PRESET[name]
    same = [mode for mode, value in modes.items() if value == default]
    other = [f"with {mode} {_shown(value)}" for mode, value in modes.items() if value != default]
    return (f"default {_shown(default)}" + (f", also with {' and '.join(same)}" if same else "")
            + (f"; {', '.join(other)}" if other else ""))


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train", help="train a UNet on 2D slices (single process, or DDP under torchrun)",
        description="Train a UNet on the 2D slices of a dataset folder (imagesTr/, labelsTr/, "
                    "dataset.json) or of phantoms. Writes best.safetensors, last.safetensors, "
                    "log.csv, curves.png and a resumable training_state.safetensors to --output.")
    parser.add_argument("data", nargs="?", type=Path, help="dataset folder (nnU-Net layout)")
    _add_data_options(parser, several=True)
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for the checkpoints, log, curves and training state")
    parser.add_argument("--preset", choices=["paper"],
                        help=f"paper: {PAPER_PRESET['input_size']} x {PAPER_PRESET['input_size']}, Adam lr "
                             f"{_shown(PAPER_PRESET['lr'])}, {PAPER_PRESET['epochs']} epochs, base "
                             f"{PAPER_PRESET['base_channels']}, no normalisation")
    kept = "the checkpoint's"  # what --init makes a setting it keeps (or refuses)
    parser.add_argument("--loss", choices=["ce", "bce", "dice", "iou", "kl", "ce+dice"],
                        help=f"training loss ({_default('loss', init=kept)})")
    parser.add_argument("--alpha", type=float,
                        help=f"weight of the Dice term of ce+dice ({_default('alpha', init=kept)})")
    parser.add_argument("--epochs", type=int,
                        help=f"epochs to train ({_default('epochs')}); with --resume, the run's own unless given")
    parser.add_argument("--batch-size", type=int,
                        help=f"slices (crops with --interactive) per step, per process under torchrun "
                             f"({_default('batch_size')})")
    parser.add_argument("--lr", type=float, help=f"Adam learning rate ({_default('lr')})")
    parser.add_argument("--schedule", choices=["constant", "poly"],
                        help=f"learning rate per epoch: constant (the paper's) or poly decay ({_default('schedule')})")
    parser.add_argument("--base-channels", type=int,
                        help=f"channels of the first level ({_default('base_channels', init=kept)})")
    parser.add_argument("--depth", type=int, help=f"number of poolings ({_default('depth', init=kept)})")
    parser.add_argument("--norm", choices=["none", "batch", "instance"],
                        help=f"normalisation layer after each convolution ({_default('norm', init=kept)})")
    parser.add_argument("--input-size", type=int,
                        help=f"slices are resized to this square ({_default('input_size', init=kept)})")
    parser.add_argument("--validation-fraction", type=float,
                        help=f"cases held out ({_default('validation_fraction')})")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--foreground-fraction", type=float,
                        help=f"share of draws forced onto slices with foreground, not with --interactive "
                             f"({_default('foreground_fraction', interactive=False)})")
    parser.add_argument("--seed", type=int, help="seed of the validation split, the initial weights and the draws "
                                                 f"({_default('seed')})")
    parser.add_argument("--ct-window", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help=f"HU window CT is clipped to ({_default('ct_window', interactive=False, init=kept)})")
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best there is)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run saved in --output (after Ctrl-C; --epochs lengthens or shortens it)")
    learn = parser.add_argument_group("learning from corrections")
    learn.add_argument("--reviewed-only", action="store_true",
                       help="train only on the slices marked reviewed (labelsTr/<case>.review.json) of the "
                            "training cases of DATA's fixed split (DATA/splits.json, written once: about "
                            f"{round(100 * TrainConfig.validation_fraction)}%% of the cases held out, never trained "
                            "on); their reviewed slices choose the best epoch")
    learn.add_argument("--init", type=Path, metavar="CKPT",
                       help="fine-tune this checkpoint: its network, classes, normalisation, CT window and loss "
                            f"kept; defaults (without --interactive) lr {_shown(FINETUNE_PRESET['lr'])} "
                            f"{FINETUNE_PRESET['schedule']}, "
                            f"{FINETUNE_PRESET['epochs']} epochs of at least {FINETUNE_PRESET['min_steps']} steps")
    learn.add_argument("--replay", metavar="DATA2",
                       help="mix in data of the checkpoint's own kind so it does not forget it: a dataset folder, "
                            "or phantom:TASK[:COUNT] (seeds 0.., the shipped models' training data)")
    learn.add_argument("--replay-share", type=float,
                       help=f"share of each epoch drawn from --replay (default {_shown(DEFAULT_REPLAY_SHARE)})")
    click = parser.add_argument_group("the click model (interactive correction)")
    click.add_argument("--interactive", action="store_true",
                       help="train the class-agnostic click model (segview.ml.interactive) with a simulated reviewer "
                            "clicking on starting masks' errors; --phantom may be repeated (both tasks in one run); "
                            f"defaults: input {InteractiveConfig.input_size}, base {InteractiveConfig.base_channels}, "
                            f"depth {InteractiveConfig.depth}, {InteractiveConfig.epochs} epochs of "
                            f"{InteractiveConfig.samples_per_epoch} crops, {InteractiveConfig.schedule} lr "
                            f"{_shown(InteractiveConfig.lr)}")
    click.add_argument("--from-model", type=Path, action="append", default=[], metavar="CKPT",
                       help="with --interactive: starting masks from this segmentation checkpoint's predictions of "
                            "the training cases whose classes it has (may be repeated)")
    click.add_argument("--samples-per-epoch", type=int,
                       help=f"with --interactive: crops per epoch (default {InteractiveConfig.samples_per_epoch})")
    click.add_argument("--rounds", type=int,
                       help="with --interactive: at most this many rounds of clicks on the network's own errors "
                            f"before the one it learns from (default {InteractiveConfig.max_rounds})")
    parser.set_defaults(run=_run_train)


def _train_config(args):
    """The TrainConfig the options ask for, and the names of its settings they give (on
    --resume only those are requests: a preset's or fine-tune's epochs are not, the run's
    own go on, and settings left out are no news)."""
    from ..ml.train import finetune_values

    values = dict(PAPER_PRESET) if args.preset == "paper" else {}
    if args.init:
        values.update(finetune_values(args.init))
    if args.replay:
        values["replay_share"] = DEFAULT_REPLAY_SHARE if args.replay_share is None else args.replay_share
    for name in ("loss", "alpha", "epochs", "batch_size", "lr", "schedule", "base_channels", "depth",
                 "input_size", "validation_fraction", "foreground_fraction", "seed", "ct_window", "device"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.norm is not None:
        values["norm"] = None if args.norm == "none" else args.norm
    if args.no_augment:
        values["augment"] = False
    given = set(values) - ({"epochs"} if args.epochs is None else set())
    return TrainConfig(output=args.output, **values), given


def _run_train(args) -> int:
    from .common import UserError
    from ..ml.data import case_names, fixed_split
    from ..ml.train import TrainingInterrupted, train

    _check_output(args.output)
    cases, first_seed = _phantom_numbers(args)
    if args.interactive:
        return _run_train_interactive(args, cases, first_seed)
    if args.from_model or args.samples_per_epoch is not None or args.rounds is not None:
        raise UserError("--from-model, --samples-per-epoch and --rounds go with --interactive")
    if args.reviewed_only and args.data is None:
        raise UserError("--reviewed-only needs a dataset folder whose cases have review sidecars")
    if (args.replay_share is not None) and not args.replay:
        raise UserError("--replay-share needs --replay")
    if args.init:
        _refuse_with_init(args)
    try:
        config, given = _train_config(args)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    if args.resume and _said_finished(config, given):
        return 0
    dataset = _dataset(args.data, args.phantom, cases, first_seed, args.reviewed_only)
    split = None
    if args.reviewed_only:
        fixed = fixed_split(args.data, case_names(args.data), config.validation_fraction, config.seed)
        split = {"train": fixed["train"], "validation": fixed["val"]}
        print(_held_out_text(fixed["val"], {case.name for case in dataset.cases}, args.data), file=sys.stderr)
    replay = _replay(args.replay) if args.replay else None
    bar = _TrainingBar()
    try:
        result = train(config, dataset, bar, resume=args.resume, split=split, replay=replay, given=given)
    except TrainingInterrupted as exc:
        return _interrupted(exc)
    except OSError as exc:
        raise _output_error(args.output, exc) from exc
    except FloatingPointError as exc:
        raise UserError(str(exc)) from exc
    if result.history:
        if math.isnan(result.history[result.best_epoch]["val_dice"]):  # chosen by the training loss
            print(f"no held-out slices to validate on: best training loss {-result.best_dice:.4f} at epoch "
                  f"{result.best_epoch + 1}; checkpoints in {result.output}")
        else:
            print(f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch + 1}; "
                  f"checkpoints in {result.output}")
            if not math.isnan(result.parent_dice):  # --init: what the fine-tuning had to beat
                from ..ml.checkpoint import read_metadata
                from ..session.finetune import selection_caution

                verdict = "better" if result.best_dice > result.parent_dice else "NOT better: keep the parent"
                held_out = read_metadata(result.output / "best.safetensors")["training"]["split"]["validation"]
                validating = set(held_out) & {case.name for case in dataset.cases}
                # as the window says it: a helper's run on one held-out case printed "better" alone
                print(f"{args.init.name} before fine-tuning: validation Dice {result.parent_dice:.4f} on the same "
                      f"held-out slices; the fine-tuned checkpoint is {verdict}. {selection_caution(len(validating))}")
    return 0


def _refuse_with_init(args) -> None:
    """--init keeps the checkpoint's network and intensity scaling (``ml.train.FROM_PARENT``):
    options that would change them were dropped unsaid, and --preset's settings too."""
    from .common import UserError

    kept = [option for option, value in (("--input-size", args.input_size), ("--base-channels", args.base_channels),
                                         ("--depth", args.depth), ("--norm", args.norm),
                                         ("--ct-window", args.ct_window), ("--preset", args.preset))
            if value is not None]
    if kept:
        raise UserError(f"{', '.join(kept)} {'does' if len(kept) == 1 else 'do'} not go with --init: a fine-tune "
                        "keeps the checkpoint's network, input size and intensity scaling (CT window), and --preset "
                        "paper is a protocol for training from scratch")


def _held_out_text(held_out: list[str], usable: set[str], folder: Path) -> str:
    """What the fixed split holds out, and which of those cases can validate (reviewed, not
    flagged): with none, the best epoch is the training loss's."""
    from ..core.report import counted

    text = (f"segview: {counted(len(held_out), 'case')} held out in {folder / 'splits.json'} ({', '.join(held_out)}): "
            "never trained on")
    validating = [name for name in held_out if name in usable]
    if len(validating) == len(held_out):
        return text
    if not validating:
        return (f"{text}; none has reviewed slices to validate on (see the cases skipped above): the best "
                "epoch is chosen by the training loss, and the parent is not compared")
    return f"{text}; only {', '.join(validating)} validate (the others are skipped above)"


def _run_train_interactive(args, cases: int, first_seed: int) -> int:
    """train --interactive: the click model (segview.ml.interactive_training)."""
    from .common import UserError, progress
    from ..ml.data import folder_dataset, phantom_dataset
    from ..ml.interactive_training import train_interactive
    from ..ml.train import TrainingInterrupted

    if args.reviewed_only or args.replay or args.preset or args.replay_share is not None:
        raise UserError("--interactive trains the click model on whole cases: without --reviewed-only, --replay "
                        "and --preset")
    unused = [option for option, value in (("--ct-window", args.ct_window),
                                           ("--foreground-fraction", args.foreground_fraction)) if value is not None]
    if unused:  # they were dropped unsaid
        raise UserError(f"{' and '.join(unused)} {'do' if len(unused) > 1 else 'does'} not go with --interactive: "
                        "the click model scales each crop by its own 1st-99th percentiles, and each of its samples "
                        "is one class on one slice")
    if args.data is None and not args.phantom:
        raise UserError("give a dataset folder or --phantom TASK (or both; --phantom may be repeated)")
    values: dict = {"from_models": tuple(str(p) for p in args.from_model)}
    for name in ("loss", "alpha", "epochs", "batch_size", "lr", "schedule", "base_channels", "depth", "input_size",
                 "validation_fraction", "seed", "device", "samples_per_epoch"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.rounds is not None:
        values["max_rounds"] = args.rounds
    if args.norm is not None:
        values["norm"] = None if args.norm == "none" else args.norm
    if args.no_augment:
        values["augment"] = False
    if args.init:
        values["init"] = str(args.init)
    try:
        config = InteractiveConfig(output=args.output, **values)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    given = set(values) - (set() if args.from_model else {"from_models"})  # on --resume: the requests
    if args.resume and _said_finished(config, given):
        return 0
    datasets = [said_skipped(folder_dataset(args.data, progress))] if args.data is not None else []
    datasets += [phantom_dataset(task, cases, first_seed, progress)
                 for task in dict.fromkeys(args.phantom or [])]
    try:
        result = train_interactive(config, datasets, _TrainingBar(), resume=args.resume,
                                   data_progress=progress if args.from_model else None, given=given)
    except TrainingInterrupted as exc:
        return _interrupted(exc)
    except OSError as exc:
        raise _output_error(args.output, exc) from exc
    except FloatingPointError as exc:
        raise UserError(str(exc)) from exc
    if result.history:
        print(f"best Dice after 3 clicks {result.best_dice:.4f} at epoch {result.best_epoch + 1}; "
              f"checkpoints in {result.output}")
    return 0


def _said_finished(config, given) -> bool:
    """--resume of a run that has trained all its epochs (and is not asked for more): say
    so, before any data is read, and train nothing."""
    from ..ml.train import finished_run

    note = finished_run(config.output, config, given)
    if note is not None:
        print(f"segview: {note}", file=sys.stderr)
    return note is not None


class _TrainingBar:
    """Epoch progress with running loss, and a line per epoch with validation scores."""

    def __call__(self, event: dict) -> None:
        if "note" in event:
            print(f"segview: {event['note']}", file=sys.stderr, flush=True)
            return
        if "step" in event:
            if sys.stderr.isatty():
                width, done = 24, event["step"] / event["steps"]
                print(f"\repoch {event['epoch'] + 1}/{event['epochs']} "
                      f"[{'#' * int(width * done):.<{width}}] loss {event['loss']:.4f}",
                      end="", file=sys.stderr, flush=True)
            return
        if "val_noc90" in event:  # the click model's simulated reviewer
            print(f"\repoch {event['epoch']}: loss {event['train_loss']:.4f}  Dice after 1/3/5 clicks "
                  f"{event['val_dice_1']:.3f}/{event['val_dice_3']:.3f}/{event['val_dice_5']:.3f}  NoC@90 "
                  f"{event['val_noc90']:.2f}  never {event['val_never90']:.1%}  lowering {event['val_lowering']:.1%}"
                  f"  ({event['samples_per_second']:.1f} crops/s)", file=sys.stderr, flush=True)
            return
        print(f"\repoch {event['epoch']}: loss {event['train_loss']:.4f}  val Dice "
              f"{event['val_dice']:.4f}  IoU {event['val_iou']:.4f}  pixel error "
              f"{event['val_pixel_error']:.5f}  ({event['images_per_second']:.1f} images/s)",
              file=sys.stderr, flush=True)


def _replay(source: str):
    """--replay: a dataset folder, or phantom:TASK[:COUNT] (``ml.data.replay_dataset``)."""
    from .common import progress
    from ..ml.data import replay_dataset

    return said_skipped(replay_dataset(source, progress))


def _dataset(folder, phantom, cases, first_seed, reviewed_only: bool = False):
    from .common import UserError, progress
    from ..ml.data import folder_dataset, phantom_dataset

    if isinstance(phantom, list):
        if len(phantom) > 1:
            raise UserError("give one --phantom task here (train --interactive takes several)")
        phantom = phantom[0]
    if (folder is None) == (phantom is None):
        raise UserError("give a dataset folder or --phantom TASK (one of them)")
    if phantom:
        return phantom_dataset(phantom, cases, first_seed, progress)
    return said_skipped(folder_dataset(folder, progress, reviewed_only))


def said_skipped(dataset):
    """``dataset``, after one line on stderr for each case it left out, and why: a
    command's figures over fewer cases than the folder holds say so."""
    for reason in dataset.skipped:
        print(f"segview: skipped {reason}", file=sys.stderr)
    return dataset


# -- evaluate ---------------------------------------------------------------------------

def _add_evaluate(commands) -> None:
    parser = commands.add_parser(
        "evaluate", help="score checkpoints: per case, Table 1, paired test of two",
        description="Score each checkpoint on each data set whose classes it predicts: Dice, "
                    "IoU, pixel error, HD95, ASSD and surface Dice per case and class, clinical "
                    "measures (class volumes, cardiac volumes and mass, lung infection share) of "
                    "labels and prediction, mean +- std over cases as the paper's Table 1 and per "
                    "class, and for two checkpoints on the same data the per-case difference with "
                    "a Wilcoxon signed-rank test.")
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data", type=Path, action="append", default=[],
                        help="dataset folder (nnU-Net layout); may be repeated")
    _add_data_options(parser, several=True)
    parser.add_argument("-o", "--output", type=Path,
                        help="folder for results.csv, table1.md and comparisons.json (each paired comparison of "
                             "two checkpoints, as JSON); with --reviewed-only, results.csv, verdict.md, verdict.json "
                             "and verdict.png; with --image, the report's folder unless --report")
    parser.add_argument("--tolerance-mm", type=float,
                        help="surface Dice tolerance in mm (default 2: about one in-plane pixel, within "
                             "the 1-4 mm inter-reader tolerances of Nikolov et al. 2021); also that of the --image "
                             "report; the --reviewed-only verdict has no surface Dice")
    parser.add_argument("--image", type=Path, help="one scan (file or DICOM folder) with --labels: the "
                        "compare-mode report of two checkpoints against those labels")
    parser.add_argument("--labels", type=Path, help="corrected labels of --image (every slice counts as reviewed)")
    parser.add_argument("--report", type=Path, help="folder for the report of --image (default: --output)")
    parser.add_argument("--reviewed-only", action="store_true",
                        help="the A/B verdict: score two checkpoints on the slices marked reviewed in the "
                        "review sidecars of one --data folder (cases with none left out), with each model's "
                        "correction effort (mL) and a bootstrap 95%% interval of the paired difference")
    parser.add_argument("--held-out", action="store_true",
                        help="with --reviewed-only: only the held-out cases of the dataset's fixed split "
                             "(splits.json), which no checkpoint fine-tuned on it has trained on")
    parser.add_argument("--robot", action="store_true",
                        help="also the simulated reviewer (segview.session.reviewer): per model and case, the clicks "
                             "the interactive model needs to bring its prediction to Dice 0.90 (each class on each "
                             "slice, reviewed ones with --reviewed-only, below 0.90 and of at least 50 voxels; 20 "
                             "where it never gets there), as results.csv's clicks_to_90, with the paired difference; "
                             "empty, and left out of the pairs, where no object of at least 50 voxels is there to "
                             "click on")
    parser.add_argument("--click-model", type=Path, metavar="CKPT",
                        help="the interactive checkpoint of --robot (default: the shipped interactive.safetensors)")
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best there is; for --robot's "
                                         "click model, a CUDA GPU or the CPU)")
    parser.set_defaults(run=_run_evaluate)


def _run_evaluate(args) -> int:
    from ..core.files import atomic_write_text
    from ..core.report import finite_or_none
    from .common import UserError, progress

    if args.held_out and not args.reviewed_only:
        raise UserError("--held-out goes with --reviewed-only (the verdict over reviewed slices)")
    if args.click_model and not args.robot:
        raise UserError("--click-model goes with --robot")
    cases, first_seed = _phantom_numbers(args)
    if args.tolerance_mm is not None and args.reviewed_only:  # the verdict has no boundary metrics to apply it to
        raise UserError("--tolerance-mm does not go with --reviewed-only: the verdict scores Dice and the "
                        "correction effort, no surface Dice")
    if args.tolerance_mm is not None and not args.tolerance_mm >= 0:
        raise UserError("--tolerance-mm must be 0 or more")
    if args.report and (args.reviewed_only or not (args.image or args.labels)):
        raise UserError("--report writes the per-slice report of one image (--image and --labels); the "
                        "results and the verdict over --data or --phantom go to -o DIR")
    for folder in (args.output, args.report):  # before an evaluation that may take long
        if folder is not None:
            _check_output(folder, "the results")
    if args.image or args.labels:
        _refuse_with_image(args)
        return _report_on_labels(args)
    if args.reviewed_only:
        return _run_verdict(args)
    from ..core.journal import image_key, voxel_digest
    from ..ml.evaluate import (DEFAULT_TOLERANCE_MM, evaluate_cases, paired_comparison, per_class_markdown,
                               summary, table1_markdown, write_case_csv)
    from ..ml.inference import Predictor
    from ..ml.metadata import check_class_names, learnt_count, trained_cases
    from .models import warn_modality

    # By position, not by path: a checkpoint given twice (a sanity check) is two rows and a comparison.
    models = [(path, Predictor.from_checkpoint(path, args.device)) for path in args.checkpoints]
    datasets = [(f"{path.name}", _dataset(path, None, 0, 0)) for path in args.data]
    datasets += [(task, _dataset(None, task, cases, first_seed)) for task in args.phantom or []]
    if not datasets:
        raise UserError("give the data to evaluate on: --data DIR or --phantom TASK")
    for name, dataset in datasets:  # before any prediction, as --reviewed-only refuses it
        for path, predictor in models:
            if predictor.num_classes == len(dataset.classes):  # otherwise not evaluated there, below
                check_class_names(f"{path.name} on {name}", predictor.classes, dataset.classes)
    tolerance = DEFAULT_TOLERANCE_MM if args.tolerance_mm is None else args.tolerance_mm
    labels = _row_labels(models)
    click_model = _click_model(args) if args.robot else None
    warned: set = set()
    rows: dict[str, dict] = {label: {} for label in labels}
    per_case: dict[str, list] = {}
    comparisons = []
    class_names = {name: [c.name for c in dataset.classes] for name, dataset in datasets}
    case_classes: dict[str, list[str]] = {}  # per results.csv key, its data set's class names
    learnt: list[str] = []  # bold lines of table1.md: a model judged on cases it trained on
    trained_by: dict[tuple[str, int], list[str]] = {}  # (data, model) -> the cases it trained on
    # Cases of a folder that were not evaluated (flagged, labels on another grid...): stderr
    # said so at once; table1.md and comparisons.json say so too, or their n reads as the folder's.
    skipped = {name: list(dataset.skipped) for name, dataset in datasets if getattr(dataset, "skipped", None)}
    for name, dataset in datasets:
        evaluated = []
        reference_cache: dict = {}  # the labels' measures, shared by the checkpoints
        digests = {case.name: (image_key(case.volume), voxel_digest(case.volume)) for case in dataset.cases}
        for index, (path, predictor) in enumerate(models):
            if predictor.num_classes != len(dataset.classes):
                print(f"segview: {path.name} predicts {predictor.num_classes} classes, "
                      f"{name} has {len(dataset.classes)}; not evaluated there", file=sys.stderr)
                continue
            trained = trained_cases(predictor.meta, digests, name, dataset.phantom)
            if trained:
                trained_by[name, index] = trained
                said = _trained_on_text(labels[index], trained, dataset, name, learnt_count(predictor.meta))
                learnt.append(f"**{said}: its figures there are no evidence of how it does on cases it never saw.**")
                print(f"segview: {learnt[-1].strip('*')}", file=sys.stderr)
            for case in dataset.cases:
                warn_modality(path.name, predictor.meta, case.volume, warned)
            results = evaluate_cases(predictor, dataset.cases, progress, tolerance, measures=True,
                                     reference_cache=reference_cache, classes=dataset.classes)
            progress(len(dataset.cases), len(dataset.cases), "done")
            if click_model is not None:
                _robot_clicks(click_model, predictor, dataset.cases, results)
            rows[labels[index]][name] = summary(results)
            per_case[f"{labels[index]} [{name}]"] = results
            case_classes[f"{labels[index]} [{name}]"] = class_names[name]
            evaluated.append((index, results))
        if len(evaluated) == 2:
            (index_a, a), (index_b, b) = evaluated
            comparisons.append((name, index_a, index_b, paired_comparison(a, b)))
            if click_model is not None:
                comparisons[-1][3]["clicks_difference"] = _clicks_difference(a, b)
            learnt_by = {slot: trained_by[name, i] for slot, i in (("A", index_a), ("B", index_b))
                         if (name, i) in trained_by}
            _no_verdict_on_training_cases(comparisons[-1][3], learnt_by)
    table = "".join(line + "\n\n" for line in learnt)
    table += "".join(f"Not evaluated in {name} ({len(reasons)} case{'s' if len(reasons) != 1 else ''}): "
                     + "; ".join(reasons) + "\n\n" for name, reasons in skipped.items())
    table += table1_markdown([(label, by_set) for label, by_set in rows.items() if by_set])
    table += (f"\nPer class (mean over cases; surface Dice at {tolerance:g} mm):\n\n"
              + per_class_markdown([(label, by_set) for label, by_set in rows.items() if by_set], class_names))
    print(table)
    for name, index_a, index_b, result in comparisons:
        print(_comparison_text(name, labels[index_a], labels[index_b], result))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        write_case_csv(args.output / "results.csv", per_case, case_classes)
        text = table + "".join("\n" + _comparison_text(n, labels[a], labels[b], r)
                               for n, a, b, r in comparisons)
        atomic_write_text(args.output / "table1.md", text)
        atomic_write_text(args.output / "comparisons.json", json.dumps(finite_or_none(  # no score: null
            [{"data": n, "a": str(models[a][0]), "b": str(models[b][0]), **r, "skipped": skipped.get(n, [])}
             for n, a, b, r in comparisons]),
            indent=2, allow_nan=False))
    return 0


def _trained_on_text(label: str, trained: list[str], dataset, name: str, learnt: int | None) -> str:
    """That model ``label`` learnt from ``trained``, some of the cases of ``dataset`` evaluated,
    counted as what they are: of the cases evaluated, not of the folder's (a tester read "3
    of the 5 cases of DS" of a DS of 7, and a model that had learnt from 4 of them)."""
    from ..core.report import counted

    shown = ", ".join(trained[:6]) + (", ..." if len(trained) > 6 else "")
    evaluated = len(dataset.cases)
    held = evaluated + len(dataset.skipped)  # the folder's cases: those skipped were not evaluated
    context = []
    if learnt is not None and learnt != len(trained):
        context.append(f"it learnt from {counted(learnt, 'case')} in all")
    if held != evaluated:
        context.append(f"{name} holds {held}")
    return (f"{label} was trained on {len(trained)} of the {counted(evaluated, 'case')} of {name} evaluated here "
            f"({shown}{'; ' + ', and '.join(context) if context else ''})")


def _no_verdict_on_training_cases(comparison: dict, trained_on: dict[str, list[str]]) -> None:
    """A comparison where a model learnt from some of the cases supports no verdict (a
    helper's script read ``supports_verdict: true`` beside the bold warning); ``trained_on``
    ("A" or "B" -> those cases) says which, as verdict.json does."""
    if not trained_on:
        return
    comparison["trained_on"] = trained_on
    for figures in (comparison, comparison.get("clicks_difference") or {}):
        if "supports_verdict" in figures:
            figures["supports_verdict"] = False


def _run_verdict(args) -> int:
    """evaluate --reviewed-only: segview.session.verdict over the reviewed slices of --data."""
    from ..session.verdict import reviewed_verdict, write_dataset_report
    from .common import UserError, progress

    if len(args.checkpoints) != 2 or len(args.data) != 1 or args.phantom:
        raise UserError("--reviewed-only takes two checkpoints (A, then B) and one --data folder")
    cases = None
    if args.held_out:
        from ..ml.data import case_names, fixed_split

        names = case_names(args.data[0])
        if not names:
            raise UserError("--held-out needs a dataset in the nnU-Net layout (imagesTr/, labelsTr/)")
        cases = fixed_split(args.data[0], names)["val"]
        print(f"segview: held-out cases of {args.data[0] / 'splits.json'}: {', '.join(cases)}", file=sys.stderr)
    robot = None
    if args.robot:
        from ..session.reviewer import verdict_robot

        robot = verdict_robot(_click_model(args))
    verdict = reviewed_verdict(args.data[0], dict(zip("AB", args.checkpoints)), progress, device=args.device,
                               cases=cases, robot=robot)
    assert verdict is not None  # nothing asks it to stop
    verdict.check_evaluated()  # n = 0 is no verdict: say why, as train does with no reviewed slice
    print(verdict.markdown())
    if args.output:
        for path in write_dataset_report(args.output, verdict):
            print(f"wrote {path}")
    return 0


def _click_model(args):
    """--robot's interactive model: --click-model, else the shipped one."""
    from ..ml.interactive import ClickModel, click_device
    from ..resources import CLICK_MODEL
    from .common import UserError

    path = args.click_model or CLICK_MODEL
    if not path.is_file():
        raise UserError(f"--robot needs an interactive model: {path} is not there (give one with --click-model CKPT)")
    return ClickModel.from_checkpoint(path, args.device or click_device())


def _robot_clicks(click_model, predictor, cases, results) -> None:
    """--robot without --reviewed-only: each case's ``clicks_to_90`` (session.reviewer over
    every slice of its labels) into its result's measures (a results.csv column; NaN, an
    empty cell, where no object is large enough to click on: not 0, "needed no correction")."""
    from ..session.reviewer import clicks_to_goal
    from .common import progress

    for n, (case, result) in enumerate(zip(cases, results)):
        progress(n, len(cases), f"clicks {case.name}")
        prediction = predictor.predict_volume(case.volume)
        clicks = clicks_to_goal(click_model, case.volume, case.labels, prediction).count
        result.measures["clicks_to_90"] = math.nan if clicks is None else clicks
    progress(len(cases), len(cases), "done")


def _clicks_difference(a, b) -> dict:
    """B minus A of the simulated reviewer's clicks per case (core.compare.paired_difference),
    over the cases where both have a count; ``left_out``: case -> why not."""
    from ..core.compare import paired_difference
    from ..session.reviewer import NOTHING_TO_CLICK

    by_case = {r.case: r.measures["clicks_to_90"] for r in a}
    pairs = {r.case: (by_case[r.case], r.measures["clicks_to_90"]) for r in b if r.case in by_case}
    left_out = {case: f"{NOTHING_TO_CLICK} for {' and '.join(s for s, n in zip('AB', pair) if math.isnan(n))}"
                for case, pair in sorted(pairs.items()) if any(math.isnan(n) for n in pair)}
    kept = [pair for case, pair in pairs.items() if case not in left_out]
    return {**paired_difference([x for x, _ in kept], [y for _, y in kept], lower_is_better=True),
            "left_out": left_out}


def _refuse_with_image(args) -> None:
    """--image (and --labels) is the report on one scan: the data sets, the verdict and the
    simulated reviewer of the other modes were dropped unsaid beside it."""
    from .common import UserError

    others = [option for option, value in (("--data", args.data), ("--phantom", args.phantom),
                                           ("--reviewed-only", args.reviewed_only), ("--robot", args.robot))
              if value]
    if others:
        raise UserError(f"{', '.join(others)} {'does' if len(others) == 1 else 'do'} not go with --image and "
                        "--labels: the report compares two checkpoints on that one scan; evaluate data sets in a "
                        "command of their own")


def _report_on_labels(args) -> int:
    """The window's comparison report, without a window: checkpoints A and B predict one
    scan; their scores against saved labels go to comparison.md and the CSVs and plot."""
    from .common import UserError, progress
    from ..core.compare import comparison_markdown, write_report
    from ..core.io import load_classes, load_labels, load_volume
    from ..core.labels import LabelMap
    from ..core.live import LiveMetrics
    from ..ml.inference import Predictor
    from .models import warn_modality

    folder = args.report or args.output
    if not (args.image and args.labels and folder and len(args.checkpoints) == 2):
        raise UserError("a report on saved labels needs two checkpoints, --image, --labels and --report DIR "
                        "(or -o DIR)")
    volume = load_volume(args.image)
    labels = LabelMap(load_labels(args.labels, volume).astype("uint8"), volume.spacing)
    labels.reviewed[:] = True
    predictors = [Predictor.from_checkpoint(path, args.device) for path in args.checkpoints]
    for path, predictor in zip(args.checkpoints, predictors):
        warn_modality(path.name, predictor.meta, volume)
    live = LiveMetrics(labels, max(max(p.num_classes for p in predictors), int(labels.array.max()) + 1))
    names = {}
    for key, path, predictor in zip("AB", args.checkpoints, predictors):
        prediction = predictor.predict_volume(volume, progress=partial(progress, what=key))
        live.add_model(key, prediction)
        names[key] = f"{path.stem} ({predictor.meta.get('loss', {}).get('name', '?')})"
    classes = load_classes(args.labels) or predictors[0].classes
    for path in write_report(folder, live, classes, names, args.tolerance_mm):
        print(f"wrote {path}")
    print(comparison_markdown(live, names))
    return 0


def _row_labels(models: list[tuple[Path, Any]]) -> list[str]:
    """Row names as in the paper (the loss) of each (path, predictor), made unique with the
    file name when needed, and by their place when one file is given twice."""
    names = {"ce": "CE", "bce": "BCE", "dice": "Dice", "iou": "IoU", "kl": "KL",
             "ce+dice": "CE + Dice"}

    def loss_label(meta):
        loss = meta.get("loss", {})
        name = names.get(loss.get("name"), str(loss.get("name", "?")))
        return f"{name} (alpha {loss['alpha']:g})" if loss.get("name") == "ce+dice" else name

    labels = [loss_label(predictor.meta) for _, predictor in models]
    # Two checkpoints of one loss share a label even when they segment different tasks: one
    # Table 1 row would hold a cardiac model's cells beside a lung model's.
    shared = {path for (path, _), label in zip(models, labels) if labels.count(label) > 1}
    # The file name tells them apart, else the shortest tail of the path that does.
    for parts in range(1, max((len(p.parts) for p in shared), default=1) + 1):
        tails = {path: "/".join(path.parts[-parts:]) for path in shared}
        if len(set(tails.values())) == len(tails):
            break
    labels = [f"{label} [{tails[path]}]" if path in shared else label for (path, _), label in zip(models, labels)]
    return [f"{label} #{index + 1}" if labels.count(label) > 1 else label for index, label in enumerate(labels)]


def _comparison_text(name, label_a, label_b, result) -> str:
    from ..core.compare import small_sample_note
    from ..core.report import counted, number_text

    p = result["p_value"]
    verdict = ("no test possible (fewer than two cases)" if p != p else
               f"Wilcoxon signed-rank p = {p:.4g}" + (" (significant at 0.05)" if p < 0.05 else
                                                     " (not significant at 0.05)"))
    low, high = result["ci95"]
    note = small_sample_note(result["cases"], differing=result["differing"])
    return (f"{name}: {label_b} minus {label_a}, mean Dice per case: "
            f"{number_text(result['mean_difference'], 4, signed=True)} ± {number_text(result['std_difference'], 4)} "
            f"over n = {counted(result['cases'], 'case')} (bootstrap 95 % interval "
            f"[{number_text(low, 4, signed=True)}, {number_text(high, 4, signed=True)}]); "
            f"{label_b} better on {result['b_better']}, {label_a} better on {result['a_better']}; {verdict}\n"
            + (f"{note}\n" if note else "")
            + (f"Left out of the pairs (no score for one of the two models, or scored by one "
               f"only): {', '.join(result['left_out'])}\n" if result.get("left_out") else "")
            + (_clicks_text(name, label_a, label_b, result["clicks_difference"]) if "clicks_difference" in result
               else ""))


def _clicks_text(name, label_a, label_b, clicks: dict) -> str:
    """--robot: B minus A of the simulated reviewer's clicks per case (lower is better)."""
    from ..core.compare import small_sample_note
    from ..core.report import counted, number_text

    low, high = clicks["ci95"]
    p = clicks["p_value"]
    note = small_sample_note(clicks["pairs"], differing=clicks["differing"])
    return (f"{name}: {label_b} minus {label_a}, the simulated reviewer's clicks to Dice 0.90 per case: "
            f"{number_text(clicks['mean_difference'], 2, signed=True)} ± {number_text(clicks['std_difference'], 2)} "
            f"over n = {counted(clicks['pairs'], 'case')} (bootstrap 95 % interval "
            f"[{number_text(low, 2, signed=True)}, {number_text(high, 2, signed=True)}]); "
            f"{label_b} fewer on {clicks['b_better']}, "
            f"{label_a} fewer on {clicks['a_better']}; "
            + ("no test possible (fewer than two cases)" if p != p else f"Wilcoxon signed-rank p = {p:.4g}")
            + "\n" + (f"{note}\n" if note else "")
            + (f"Left out of the clicks' pairs ({counted(len(clicks['left_out']), 'case')}): "
               + "; ".join(f"{case}: {why}" for case, why in clicks["left_out"].items()) + "\n"
               if clicks.get("left_out") else ""))


# -- predict ----------------------------------------------------------------------------

def _add_predict(commands) -> None:
    parser = commands.add_parser(
        "predict", help="label volumes from a checkpoint, on exactly the input's grid",
        description="Predict the labels of an image file or DICOM folder (written to OUTPUT, a "
                    ".nii.gz/.nii/.nrrd/.mha file), or of every image in a folder (OUTPUT is "
                    "then a folder; one <name>.nii.gz per image). CKPT is a .safetensors "
                    "checkpoint or an exported .onnx model. Under torchrun "
                    "(torchrun --nproc_per_node=N -m segview predict ...) the images are shared "
                    "out over the processes.")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("input", type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="the label file (.nii.gz, .nii, .nrrd, .mha), or a folder when INPUT is a folder "
                             "of images")
    parser.add_argument("--series", metavar="UID", help="the series to predict, where a DICOM folder holds several")
    parser.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: the best there is; under torchrun "
                                         "each process its own GPU)")
    parser.set_defaults(run=_run_predict)


def _run_predict(args) -> int:
    from .common import UserError, progress
    from ..core.errors import VolumeLoadError
    from ..core.files import case_name
    from ..core.io import IMAGE_EXTENSIONS, LABEL_EXTENSIONS, extension, load_volume, save_labels
    from ..ml.inference import Predictor
    from .models import rank_and_world, rank_device, warn_modality

    if not args.input.exists():
        raise UserError(f"{args.input} does not exist")
    predictor = Predictor.from_checkpoint(args.checkpoint, rank_device(args.device))
    batch = args.input.is_dir() and any(extension(p) in IMAGE_EXTENSIONS for p in args.input.iterdir()
                                        if p.is_file())
    if args.series is not None and (batch or not args.input.is_dir()):  # it was ignored unsaid
        raise UserError(f"--series chooses one series of a DICOM folder; {args.input} is "
                        f"{'a folder of image files' if batch else 'an image file'}")
    if batch:
        inputs = sorted(p for p in args.input.iterdir() if p.is_file() and extension(p) in IMAGE_EXTENSIONS)
        args.output.mkdir(parents=True, exist_ok=True)
        outputs = [args.output / (case_name(p.name[: -len(extension(p))]) + ".nii.gz") for p in inputs]
    else:
        if extension(args.output) not in LABEL_EXTENSIONS:
            raise UserError(f"the output must end in one of {', '.join(LABEL_EXTENSIONS)}")
        inputs, outputs = [args.input], [args.output]
    _check_prediction_outputs(inputs, outputs)

    def slice_progress(done, total):
        progress(done, total, "slices")

    rank, world = rank_and_world()
    jobs = list(zip(inputs, outputs))[rank::world]  # torchrun: each rank takes every world-th image
    warned: set = set()
    unread: list[str] = []
    for n, (source, target) in enumerate(jobs):
        progress(n, len(jobs), source.name)
        try:
            volume = load_volume(source, args.series)
        except VolumeLoadError as exc:
            if not batch:
                several = source.is_dir() and args.series is None and "image series; choose one" in str(exc)
                raise UserError(f"{exc}\nPredict one with --series UID.") if several else exc
            unread.append(source.name)  # one bad image does not stop the others
            print(f"segview: {source.name} not predicted: {exc}", file=sys.stderr)
            continue
        for warning in volume.meta.get("warnings", []):  # resampled, interpolated slices, ...: as the window says
            print(f"segview: {source.name}: {warning}", file=sys.stderr)
        warn_modality(args.checkpoint.name, predictor.meta, volume, warned)
        labels = predictor.predict_volume(volume, progress=slice_progress if not batch else None)
        save_labels(target, labels, volume, predictor.classes)
        # One write per line, flushed: under torchrun every rank shares standard output, and
        # print's separate write of the newline let two ranks' paths run into one line.
        sys.stdout.write(f"{target}\n")
        sys.stdout.flush()
    progress(len(jobs), len(jobs), "done")
    if unread:
        print(f"segview: {len(unread)} of {len(jobs)} images not predicted: {', '.join(unread)}", file=sys.stderr)
        return 1
    return 0


def _check_prediction_outputs(inputs: list[Path], outputs: list[Path]) -> None:
    """Refuse, before anything runs, an output that is one of the images (the image would be
    lost: a tester's predict wrote its labels over its input) or that two images share
    (neg.mha and neg.nrrd both went to neg.nii.gz, the second replacing the first)."""
    from .common import UserError

    images = {p.resolve() for p in inputs if p.is_file()}
    taken: dict[Path, Path] = {}
    for source, target in zip(inputs, outputs):
        resolved = target.resolve()
        if resolved in images:
            raise UserError(f"{target} is an input image: the labels go into a file of their own, or the image "
                            "would be lost; choose another output")
        if resolved in taken:
            raise UserError(f"{taken[resolved].name} and {source.name} would both be written to {target.name}; "
                            "predict them into separate folders")
        taken[resolved] = source


def _interrupted(exc) -> int:
    """What Ctrl-C during ``train`` says (``ml.train.TrainingInterrupted``); its exit status."""
    print(f"\nsegview: {exc}" + ("; continue with the same command and --resume" if exc.resumable else ""),
          file=sys.stderr)
    return 130


def _check_output(folder, what: str = "the training output") -> None:
    """Refuse, before any data is read, an output folder that cannot be written: the
    folder, or the nearest one above it that exists (a read-only dataset mount, a tester)."""
    from .common import UserError

    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {what} into {folder}: {existing} is not a writable folder")


def _output_error(folder, exc: OSError):
    from .common import UserError

    return UserError(f"cannot write the training output into {folder}: {exc.strerror or exc}")
