"""Training a UNet on 2D slices: one process, or DistributedDataParallel under torchrun.

The output folder receives ``best.safetensors`` (highest validation Dice) and
``last.safetensors``, ``log.csv`` (one row per epoch), ``curves.png`` (loss and validation
Dice/IoU), and ``training_state.safetensors``: weights, Adam moments and progress, from
which ``resume`` continues (written after every epoch; Ctrl-C keeps the last). Nothing is pickled.

Randomness is drawn from generators seeded by (seed, epoch, rank), so a resumed run draws
the same batches and augmentations as an uninterrupted one from the next epoch on.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from functools import partial
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Collection

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import distributed as dist

from .. import __version__
from ..core.errors import HeldOutError, SegviewError
from ..core.files import file_sha256
from ..core.journal import image_key, voxel_digest
from ..core.report import counted
from ..core.io import replace_atomically
from .checkpoint import (classes_from_metadata, classes_to_metadata, load_checkpoint, read_metadata,
                         save_checkpoint, slice_orientation)
from .config import (DEFAULT_REPLAY_SHARE as DEFAULT_REPLAY_SHARE, FINETUNE_PRESET,
                     PAPER_PRESET as PAPER_PRESET, SCHEDULES, TrainConfig)  # their names here too, as before
from .data import (Dataset, DatasetError, augment, normalization_for,
                   slice_tensors, split_cases)
from .evaluate import evaluate_cases, summary
from .inference import Predictor, best_device
from .losses import build_loss
from .unet import UNet

STATE_FILE = "training_state.safetensors"
LOG_COLUMNS = ("epoch", "train_loss", "val_dice", "val_iou", "val_pixel_error", "lr",
               "seconds", "images_per_second")


def finetune_values(parent) -> dict[str, Any]:
    """TrainConfig values that fine-tune checkpoint ``parent``: ``FINETUNE_PRESET`` and the
    parent's loss (name, alpha). Raises CheckpointError."""
    loss = read_metadata(parent).get("loss", {})
    values: dict[str, Any] = dict(FINETUNE_PRESET, init=str(parent))
    values.update({k: v for k, v in (("loss", loss.get("name")), ("alpha", loss.get("alpha"))) if v is not None})
    return values

class TrainingInterrupted(Exception):
    """Ctrl-C during training in ``epoch``. The state at ``state_path`` is that of the last
    epoch completed, so a resumed run starts ``epoch`` again from where it began and ends
    with an uninterrupted run's weights (the interrupted epoch's part-way updates are not
    kept); ``resumable`` is False when no epoch was completed."""

    def __init__(self, state_path: Path, epoch: int):
        self.state_path, self.epoch = state_path, epoch
        self.resumable = state_path.is_file()
        where = (f"the state after the epochs completed is in {state_path} (epoch {epoch + 1} starts again)"
                 if self.resumable else "no epoch was completed: there is nothing to resume")
        super().__init__(f"training interrupted in epoch {epoch + 1}; {where}")


class TrainingCancelled(Exception):
    """``should_stop`` said stop; the checkpoints written so far are whole (atomic writes)."""


@dataclass
class TrainResult:
    output: Path
    best_dice: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    parent_dice: float = math.nan  # the fine-tuned checkpoint's own held-out Dice, before training


ProgressCallback = Callable[[dict], None]


def train(config: TrainConfig, dataset: Dataset, progress: ProgressCallback | None = None,
          resume: bool = False, split: dict[str, list[str]] | None = None,
          replay: Dataset | None = None, should_stop: Callable[[], bool] | None = None,
          given: Collection[str] | None = None) -> TrainResult:
    """Train on ``dataset`` as ``config`` says. ``progress`` receives dicts: {"step", "steps",
    "epoch", "loss"} during an epoch and the epoch's log row at its end.

    ``split``: {"train": names, "validation": names}, the dataset's fixed split (default:
    a seeded split by ``config.validation_fraction``); a case's ``slices`` (its reviewed
    ones) are all it trains or validates on. ``config.init`` fine-tunes that checkpoint:
    its network, classes and preprocessing are kept. ``replay``: data of the checkpoint's
    own kind, drawn for ``config.replay_share`` of each epoch so it does not forget it. The
    checkpoint's metadata records the lineage (``lineage``: parent, data, split, slices).
    Raises DatasetError for unusable data, CheckpointError for a parent that cannot be
    used, TrainingInterrupted on Ctrl-C and TrainingCancelled when ``should_stop()`` (asked
    before every step) says stop.

    ``resume`` goes on with the run saved in ``config.output``, with its settings and to
    ``config.epochs``; ``given`` names the settings of ``config`` its caller asked for
    (default: all): without "epochs" the run goes on to its own number, and only those
    given are said to be not taken (``resume_note``)."""
    rank, world = _start_distributed(config)
    device = _device(config)
    output = Path(config.output)  # made once the data and the parent are known good
    state = _read_state(output / STATE_FILE) if resume else None
    notes = [cpu_share_note(device), resume_note(state, config, world, given) if state is not None else None]
    if progress is not None and rank == 0:
        for note in filter(None, notes):
            progress({"note": note})
    if state is not None:
        config = _resumed_config(state, config, given)
        if (finished := _finished_result(state, config.epochs, output, progress, rank, world)) is not None:
            return finished

    if state:
        split = state["split"]
    elif split is None:
        split = dict(zip(("train", "validation"),
                         split_cases([c.name for c in dataset.cases], config.validation_fraction, config.seed)))
    by_name = {c.name: c for c in dataset.cases}
    if state:  # the cases it split are all it may know: the metadata would describe others
        added = sorted(set(by_name) - set(split["train"]) - set(split["validation"]))
        if added:
            raise DatasetError(f"the data hold cases the interrupted run never had ({', '.join(added[:3])}); "
                               "resume with the same data, or start a new run (another -o)")
    train_cases = [by_name[n] for n in split["train"] if n in by_name]
    validation_cases = [by_name[n] for n in split["validation"] if n in by_name]  # scored on their slices
    missing = [n for n in split["train"] + split["validation"] if n not in by_name]
    if state and missing and all(c.slices is None for c in dataset.cases):  # reviewed-only: unreviewed cases are absent
        raise DatasetError(f"the saved split names cases this dataset lacks ({', '.join(missing[:3])}); "
                           "resume with the same data")
    if not train_cases:
        _refuse_nothing_to_train(dataset, split)

    num_classes = len(dataset.classes)
    modality = train_cases[0].volume.modality
    if modality != "CT" and given is not None and "ct_window" in given and not config.init:
        raise DatasetError(f"a CT window (--ct-window) was given, but the data are {modality}: each image is "
                           "scaled by its own percentiles; leave the window out")
    torch.manual_seed(config.seed)
    if config.init:
        model, parent = _parent(Path(config.init), dataset, modality)
        normalization = parent["preprocessing"]["normalization"]
        config.input_size = int(parent["preprocessing"]["input_size"][0])
        architecture = parent.get("architecture", {})  # the config says the network it trains
        for name in ("base_channels", "depth", "norm"):
            if name in architecture:
                setattr(config, name, architecture[name])
    else:
        model, parent = UNet(1, num_classes, config.base_channels, config.depth, config.norm), None
        normalization = normalization_for(modality, config.ct_window)
    orientation = slice_orientation(parent) if parent else "display"  # a fine-tune sees as its parent saw
    images, labels = slice_tensors(train_cases, normalization, config.input_size, orientation)
    if int(labels.max()) >= num_classes:
        raise DatasetError(f"the labels hold class {int(labels.max())} but only "
                           f"{num_classes} classes are declared")
    trained_slices = len(images)
    if replay is not None and config.replay_share > 0:
        check_replay(replay, dataset, modality)
        replay_images, replay_labels = slice_tensors(replay.cases, normalization, config.input_size, orientation)
        images, labels = torch.cat([images, replay_images]), torch.cat([labels, replay_labels])

    output.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    meta: dict[str, Any] = {
        "classes": classes_to_metadata(dataset.classes),
        "loss": {"name": config.loss, "alpha": config.alpha},
        "preprocessing": {"input_size": [config.input_size, config.input_size],
                          "modality": modality, "normalization": normalization,
                          "slice_axis": "z", "orientation": orientation},
        "training": {**dataset.summary(), "split": split, "optimizer": "Adam",
                     "config": _config_json(config), "world_size": world,
                     "device": str(device), "train_slices": trained_slices},
        "lineage": _lineage(config, dataset, train_cases, split, parent, replay),
    }
    history: list[dict] = []
    start_epoch, best_dice, best_epoch = 0, -math.inf, -1
    if state is not None:
        _check_same_data(state.get("trained"), meta["lineage"]["cases"])
        _restore(state, model, optimizer)
        history, start_epoch = state["history"], state["next_epoch"]
        best_dice, best_epoch = state["best_dice"], state["best_epoch"]
        if progress is not None and rank == 0:
            best = f", best so far epoch {best_epoch + 1}" if best_epoch >= 0 else ""
            progress({"note": f"resuming at epoch {start_epoch + 1} of {config.epochs}{best}"})
    model.to(device)
    _move_optimizer(optimizer, device)
    if device.type == "cuda":
        # Module.to accepts memory_format (torch's docs); its overload stubs omit it.
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    network: torch.nn.Module = model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_function = build_loss(config.loss, config.alpha).to(device)
    predictor = Predictor(model, meta, device)
    parent_dice = math.nan
    if parent is not None and rank == 0:
        parent_dice = _parent_dice(Path(str(config.init)), validation_cases, device)
        meta["lineage"]["parent"]["held_out_dice"] = parent_dice

    epoch, ending = start_epoch, None
    try:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            lr = SCHEDULES[config.schedule](config.lr, epoch, config.epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            train_loss, seen = _train_epoch(network, optimizer, loss_function, images, labels,
                                            config, epoch, rank, world, device, progress, trained_slices,
                                            should_stop)
            if rank == 0:
                row = _validate(predictor, validation_cases, epoch, train_loss, lr,
                                time.perf_counter() - started, seen * world)
                meta["validation"] = row.pop("_summary")
                meta["training"]["epochs"] = epoch + 1
                score = row["val_dice"] if not math.isnan(row["val_dice"]) else -row["train_loss"]
                best = score > best_dice
                if best:
                    best_dice, best_epoch = score, epoch
                history.append(row)
                # Its weights are final now: a Ctrl-C while they are written finishes the writing.
                ending = partial(_end_epoch, output, model, optimizer, config, split, history, meta, best,
                                 best_dice, best_epoch, epoch + 1)
                ending()
                ending = None
                if progress:
                    progress(dict(row))
            _barrier(world)
    except KeyboardInterrupt:  # the state of the last epoch completed stays (TrainingInterrupted)
        if ending is not None:  # the epoch's training had ended: it is kept whole
            ending()
            epoch += 1
        raise TrainingInterrupted(output / STATE_FILE, epoch) from None
    finally:
        _stop_distributed(world)
    return TrainResult(output, best_dice, best_epoch, history, parent_dice)


def _end_epoch(output: Path, model, optimizer, config, split, history, meta, best: bool, best_dice, best_epoch,
               next_epoch: int) -> None:
    """Write what an epoch ends with: last (and best) checkpoint, log, curves, then the
    resumable state. Written again whole when a Ctrl-C cut it (every write is atomic)."""
    save_checkpoint(output / "last.safetensors", model, meta)
    if best:
        save_checkpoint(output / "best.safetensors", model, meta)
    _write_log(output / "log.csv", history)
    _plot(output / "curves.png", history)
    _write_state(output / STATE_FILE, model, optimizer, config, split, history, next_epoch, best_dice, best_epoch,
                 meta["training"]["world_size"], meta["lineage"]["cases"])


def _parent_dice(path: Path, cases, device) -> float:
    """The held-out Dice of the checkpoint fine-tuned, as it was (its file, so a resumed run
    gets it too): what the fine-tuned epochs must beat. NaN without held-out slices."""
    if not cases:
        return math.nan
    return float(summary(evaluate_cases(Predictor.from_checkpoint(path, device), cases))["dice"]["mean"])


# -- one epoch --------------------------------------------------------------------------

def _train_epoch(network, optimizer, loss_function, images, labels, config, epoch, rank,
                 world, device, progress, own: int, should_stop=None) -> tuple[float, int]:
    """One epoch over the first ``own`` slices, with the rest (replay data) drawn for
    ``config.replay_share`` of the epoch."""
    network.train()
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch * 1009 + rank)
    # Every rank draws the same order and takes its own share of equal length.
    order_generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = _epoch_order(labels[:own], config.foreground_fraction, order_generator)
    if own < len(labels):
        order = _with_replay(order, own, len(labels) - own, config.replay_share, order_generator)
    order = _at_least(order, config.min_steps * config.batch_size * world, order_generator)
    per_rank = len(order) // world
    order = order[rank * per_rank:(rank + 1) * per_rank]
    batch = min(config.batch_size, len(order))
    steps = max(len(order) // batch, 1)  # a ragged last batch is dropped (batch norm)
    cuda = device.type == "cuda"
    total, seen = 0.0, 0
    for step in range(steps):
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"cancelled in epoch {epoch + 1}")
        index = order[step * batch:(step + 1) * batch]
        x = images[index].to(device, non_blocking=True)
        y = labels[index].to(device, non_blocking=True)
        if config.augment:
            x, y = augment(x, y, generator)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = network(x)
        loss = loss_function(logits, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()} in epoch {epoch + 1}; "
                                     "lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
        seen += len(index)
        if progress and rank == 0:
            progress({"epoch": epoch, "epochs": config.epochs, "step": step + 1,
                      "steps": steps, "loss": total / seen})
    return total / max(seen, 1), seen


def _epoch_order(labels: torch.Tensor, foreground_fraction: float,
                 generator: torch.Generator) -> torch.Tensor:
    """One epoch's slice indices: a permutation of all slices in which, as in nnU-Net, each
    draw is replaced with probability ``foreground_fraction`` by a slice that contains
    foreground, so rare classes (a few lesions in a lung) are seen often enough to learn."""
    order = torch.randperm(len(labels), generator=generator)
    with_foreground = torch.nonzero(labels.flatten(1).amax(dim=1) > 0).flatten()
    if foreground_fraction == 0 or len(with_foreground) == 0:
        return order
    forced = torch.rand(len(order), generator=generator) < foreground_fraction
    picks = with_foreground[torch.randint(len(with_foreground), (len(order),), generator=generator)]
    return torch.where(forced, picks, order)


def _at_least(order: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``order`` followed by reshuffled copies of itself, cut to ``count`` draws, when it
    has fewer (a few slices make a whole epoch of steps)."""
    if len(order) >= count or len(order) == 0:
        return order
    copies = [order] + [order[torch.randperm(len(order), generator=generator)]
                        for _ in range(math.ceil(count / len(order)) - 1)]
    return torch.cat(copies)[:count]


def _with_replay(order: torch.Tensor, own: int, replay: int, share: float,
                 generator: torch.Generator) -> torch.Tensor:
    """``order`` (indices below ``own``) mixed with draws from the ``replay`` slices after
    them, so that they make ``share`` of the epoch, shuffled together."""
    count = round(len(order) * share / (1 - share))
    draws = own + torch.randint(replay, (count,), generator=generator)
    mixed = torch.cat([order, draws])
    return mixed[torch.randperm(len(mixed), generator=generator)]


def _validate(predictor, cases, epoch, train_loss, lr, seconds, images) -> dict:
    row = {"epoch": epoch + 1, "train_loss": train_loss, "val_dice": math.nan,
           "val_iou": math.nan, "val_pixel_error": math.nan, "lr": lr,
           "seconds": seconds, "images_per_second": images / max(seconds, 1e-9)}
    validation: dict = {"cases": 0}
    if cases:
        predictor.model.eval()
        validation = summary(evaluate_cases(predictor, cases))
        row.update(val_dice=validation["dice"]["mean"], val_iou=validation["iou"]["mean"],
                   val_pixel_error=validation["pixel_error"]["mean"])
    validation["epoch"] = epoch + 1
    row["_summary"] = validation
    return row


# -- fine-tuning and lineage ---------------------------------------------------------

def _parent(path: Path, dataset: Dataset, modality: str) -> tuple[torch.nn.Module, dict]:
    """The checkpoint to fine-tune, checked against the data: the same classes (value and
    name) and modality. Raises CheckpointError, DatasetError."""
    from .inference import refuse_interactive

    model, meta = load_checkpoint(path)
    refuse_interactive(meta, path.name)  # its classes ("class") would be named as the misfit
    theirs = classes_from_metadata(meta, path)
    if _class_key(theirs) != _class_key(dataset.classes):
        raise DatasetError(f"the dataset's classes ({_names(dataset.classes)}) differ from those of "
                           f"{path.name} ({_names(theirs)}); fine-tuning keeps the checkpoint's")
    trained_on = meta.get("preprocessing", {}).get("modality")
    if trained_on and trained_on != modality:
        raise DatasetError(f"{path.name} was trained on {trained_on}, the dataset is {modality}")
    return model.train(), meta


def _check_same_data(saved: dict | None, now: dict) -> None:
    """A resumed run learns from what the interrupted one learnt from: the lineage would
    otherwise name cases and slices other than those in its weights (a tester reviewed more
    slices and flagged a trained case between the two). Raises DatasetError naming them."""
    if saved is None or saved == now:
        return
    changed = sorted(name for name in set(saved) | set(now) if saved.get(name) != now.get(name))
    raise DatasetError(f"the reviewed slices changed since this run was interrupted ({', '.join(changed[:5])}): "
                       "resuming would train on other data than its first epochs; start a new run (another -o)")


def check_replay(replay: Dataset, dataset: Dataset, modality: str) -> None:
    """Replay data teach the checkpoint its own task again: the dataset's classes (value and
    name) and modality. Raises DatasetError (a tester's lung CT replayed into a cardiac MR
    fine-tune taught infection as the right ventricle)."""
    if _class_key(replay.classes) != _class_key(dataset.classes):
        raise DatasetError(f"the replay data ({replay.source}) are of other classes than the dataset "
                           f"({_names(replay.classes)}; the dataset: {_names(dataset.classes)}): replay data "
                           "must be of the model's own task")
    others = sorted({c.volume.modality for c in replay.cases} - {modality})
    if others:
        raise DatasetError(f"the replay data ({replay.source}) are {', '.join(others)}, the dataset is {modality}: "
                           "replay data must be of the model's own task")


def _class_key(classes) -> list[tuple[int, str]]:
    return [(c.value, c.name.strip().lower()) for c in classes]


def _names(classes) -> str:
    return ", ".join(c.name for c in classes)


def _refuse_nothing_to_train(dataset: Dataset, split: dict[str, list[str]]) -> None:
    held_out = ", ".join(split["validation"]) or "none"
    if dataset.cases and all(c.name in split["validation"] for c in dataset.cases):
        raise HeldOutError(f"every case with reviewed slices is held out ({held_out}); review slices of "
                           "another case, or move a case from \"val\" to \"train\" in splits.json")
    raise DatasetError(f"no case to train on (held out: {held_out}); skipped: "
                       f"{'; '.join(dataset.skipped[:6]) or 'none'}")


def _lineage(config: TrainConfig, dataset: Dataset, train_cases, split: dict, parent: dict | None,
             replay: Dataset | None) -> dict:
    """Where a checkpoint comes from: its parent (name, SHA-256), the data, the cases and
    slices it learnt from, the split, the loss, the date."""
    from datetime import datetime, timezone

    return {"parent": None if parent is None else {"name": Path(str(config.init)).name,
                                                   "sha256": file_sha256(Path(str(config.init))),
                                                   "loss": parent.get("loss")},
            "dataset": dataset.name or dataset.source,
            "cases": {c.name: ("all" if c.slices is None else [int(z) for z in c.slices]) for c in train_cases},
            "images": {c.name: image_key(c.volume) for c in train_cases},
            "voxels": {c.name: voxel_digest(c.volume) for c in train_cases},  # the verdict knows them anywhere
            "slices": int(sum(c.labels.shape[0] if c.slices is None else len(c.slices) for c in train_cases)),
            "reviewed_slices": int(sum(len(c.slices) for c in train_cases if c.slices is not None)),
            "split": {"train": list(split["train"]), "val": list(split["validation"])},
            "loss": {"name": config.loss, "alpha": config.alpha},
            "replay": None if replay is None or not config.replay_share else
            {"source": replay.source, "share": config.replay_share},
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# -- devices and processes --------------------------------------------------------------

def _device(config: TrainConfig) -> torch.device:
    if config.device:
        return torch.device(config.device)
    device = best_device()
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _start_distributed(config: TrainConfig) -> tuple[int, int]:
    """(rank, world size); under torchrun the process group is started here."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if (config.device or "").startswith("cuda:"):  # every process would take that one GPU
        raise SegviewError(f"--device {config.device} names one GPU, but torchrun started {world} processes, each "
                           "of which takes its own GPU: give --device cuda (or cpu), and choose the GPUs with "
                           "CUDA_VISIBLE_DEVICES.")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available() and config.device in (None, "cuda")
        if cuda:
            _check_one_gpu_each()
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def cpu_share_note(device: torch.device) -> str | None:
    """Said where torchrun started more CPU processes on this machine than it has cores:
    they take turns on the cores, and every step waits for the slowest."""
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type != "cpu" or processes <= cores:
        return None
    return (f"torchrun started {processes} processes on this machine's {cores} core{'s' if cores != 1 else ''}: "
            f"they take turns, and training runs slower than with --nproc_per_node={cores}")


def _check_one_gpu_each() -> None:
    """Raises SegviewError, in every process alike, where torchrun started more processes on
    this machine than it has GPUs: NCCL takes one GPU per process, and the process past the
    last GPU died of "invalid device ordinal" (seen on a one-GPU machine)."""
    processes, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", "1")), torch.cuda.device_count()
    if processes > gpus:
        raise SegviewError(f"torchrun started {processes} processes on this machine, which has {gpus} "
                           f"GPU{'s' if gpus != 1 else ''}: training takes one GPU per process. Start "
                           f"--nproc_per_node={gpus}, or give --device cpu to train on the CPU.")


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _stop_distributed(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()


# -- log, plot, resumable state ---------------------------------------------------------

def _write_log(path: Path, history: list[dict], columns: tuple[str, ...] = LOG_COLUMNS) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(file, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
    replace_atomically(path, write)


#: The validation curves of ``train``: (log column, legend).
SCORE_CURVES = (("val_dice", "Dice"), ("val_iou", "IoU"))


def _plot(path: Path, history: list[dict], scores=SCORE_CURVES,
          score_label: str = "validation (mean over foreground classes)",
          counts: tuple[str, str] | None = None):
    """Loss on the left, the ``scores`` columns (0..1) on the right, and the ``counts``
    column (log column, axis label), when given, on the right one's second axis. Returns
    the matplotlib Figure written."""
    # The object-oriented API with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    loss_axes, score_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [row["train_loss"] for row in history], marker=".")
    loss_axes.set(xlabel="epoch", ylabel="training loss", title="Loss")
    for key, label in scores:
        score_axes.plot(epochs, [row[key] for row in history], marker=".", label=label)
    score_axes.set(xlabel="epoch", ylabel=score_label, title="Validation", ylim=(0, 1))
    validated = any(math.isfinite(row[key]) for row in history for key, _ in scores)
    if not validated:  # no held-out slice: say so, where empty axes told nothing
        score_axes.text(0.5, 0.5, "no held-out slices to validate on:\nthe epoch was chosen by the training loss",
                        ha="center", va="center", transform=score_axes.transAxes)
        score_axes.set_xlim(loss_axes.get_xlim())
    for axes in (loss_axes, score_axes):  # whole epochs
        axes.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: a tick at 1, not 0.95-1.05
    lines, labels = score_axes.get_legend_handles_labels()
    if counts is not None:
        count_axes = score_axes.twinx()
        lines += count_axes.plot(epochs, [row[counts[0]] for row in history], marker=".", color="black",
                                 linestyle="--")
        labels.append(counts[1])
        count_axes.set(ylabel=counts[1], ylim=(0, None))
    # A falling count crosses the lower right corner: the legend goes to the lower left then.
    if validated:
        score_axes.legend(lines, labels, loc="lower right" if counts is None else "lower left")
    for axes in (loss_axes, score_axes):
        axes.grid(alpha=0.3)
    FigureCanvasAgg(figure)
    replace_atomically(path, lambda temporary: figure.savefig(temporary, format="png"))
    return figure


def _config_json(config: TrainConfig) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def _write_state(path: Path, model, optimizer, config, split, history, next_epoch,
                 best_dice, best_epoch, world: int, trained: dict | None = None) -> None:
    """``world``: the processes training; ``trained``: the cases and slices learnt from
    (lineage "cases"), which a resumed run must find again."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, moments in optimizer_state["state"].items():
        for name, value in moments.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": g["params"]}
              for g in optimizer_state["param_groups"]]
    meta = {"segview_version": __version__, "config": _config_json(config), "split": split,
            "history": history, "next_epoch": next_epoch, "best_dice": best_dice,
            "best_epoch": best_epoch, "param_groups": groups, "trained": trained, "world": world}
    header = {"segview_training_state": json.dumps(meta)}
    replace_atomically(path, lambda temporary: save_file(tensors, temporary, header))


def _read_state(path: Path) -> dict:
    if not path.exists():
        raise DatasetError(f"nothing to resume: {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as file:
            state = json.loads(file.metadata()["segview_training_state"])
            state["tensors"] = {k: file.get_tensor(k) for k in file.keys()}
    except Exception as exc:  # a damaged or foreign file
        raise DatasetError(f"{path} cannot be resumed from ({exc})") from exc
    return state


def _resumed_config(state: dict, requested: TrainConfig, given: Collection[str] | None = None) -> Any:
    """The saved configuration of ``state`` (of the request's kind: TrainConfig or a
    subclass); only the number of epochs is taken from the request (``resumed_epochs``)."""
    kind = type(requested)
    known = {f.name for f in fields(kind)}
    config = kind(**{k: v for k, v in state["config"].items() if k in known})
    config.epochs = resumed_epochs(state, requested, given)[0]
    config.output, config.device = requested.output, requested.device
    return config


def resumed_epochs(state: dict, requested: TrainConfig, given: Collection[str] | None = None) -> tuple[int, str | None]:
    """The epochs a resumed run (``state``) trains to and what to say of it: the request's
    when "epochs" is ``given`` (default: all are), longer or shorter than the run's, else
    the run's. Whether it was given is told, not guessed: a tester's --epochs 40 (the
    default) on a 20-epoch run read as none and trained 20. Raises DatasetError for a
    number not above the epochs done: those are trained already (a tester's --epochs 3 on
    a 4-epoch run, 1 done, was dropped unsaid and trained 4)."""
    run, done, asked = int(state["config"]["epochs"]), int(state["next_epoch"]), requested.epochs
    if (given is not None and "epochs" not in given) or asked == run:
        return run, None
    if asked <= done:
        raise DatasetError(f"--epochs {asked} with --resume: the run has completed {done} of its "
                           f"{counted(run, 'epoch')}, "
                           f"so it can only go on to more than {done} (its last.safetensors is epoch {done})"
                           + ("; leave --epochs out to finish it" if done < run else ""))
    return asked, f"--epochs {asked} {'shortens' if asked < run else 'lengthens'} the run of {counted(run, 'epoch')}."


def finished_run_note(state: dict, epochs: int) -> str | None:
    """What a resumed run (``state``) that has trained the ``epochs`` it would go on to
    (``resumed_epochs``) says instead of training, or None. It used to say "resuming at
    epoch 2 of 1" and train nothing."""
    done = int(state["next_epoch"])
    if epochs > done:
        return None
    return (f"the run has already finished its {counted(done, 'epoch')}: nothing to resume (its checkpoints are "
            f"kept as they are); to train it further, resume with --epochs M (M above {done})")


def _finished_result(state: dict, epochs: int, output: Path, progress: ProgressCallback | None, rank: int,
                     world: int) -> TrainResult | None:
    """A resumed run with nothing left to train: its saved result, after saying so (its
    checkpoints stay as they are); None when it has epochs to go."""
    note = finished_run_note(state, epochs)
    if note is None:
        return None
    if progress is not None and rank == 0:
        progress({"note": note})
    _stop_distributed(world)
    return TrainResult(output, state["best_dice"], state["best_epoch"], state["history"])


def finished_run(output, requested: TrainConfig, given: Collection[str] | None = None) -> str | None:
    """On --resume before any data is read: ``finished_run_note`` of the run saved in
    ``output``, or None (also when there is no saved run: ``train`` says so). Raises
    DatasetError as ``resumed_epochs``."""
    path = Path(output) / STATE_FILE
    if not path.is_file():
        return None
    state = _read_state(path)
    return finished_run_note(state, resumed_epochs(state, requested, given)[0])


#: Settings a fine-tune takes from its parent, whatever the request said.
FROM_PARENT = ("input_size", "base_channels", "depth", "norm")


#: Settings whose ``segview train`` option is not their name with dashes, and those that
#: have none (set by --init's fine-tuning, or by library callers only).
_OPTION_OF_SETTING = {"max_rounds": "--rounds", "from_models": "--from-model"}
_WITHOUT_OPTION = ("min_steps", "drop_mask", "absent_share", "validation_objects", "validation_clicks", "cpu_bf16")


def _typed_setting(name: str, value: Any) -> str:
    """A setting (a TrainConfig field, its value as ``_config_json`` keeps it) as a user
    types it: ``--input-size 48``, ``--norm none``, ``--no-augment``. Notes named the
    fields (``input_size 48``), which a user never typed."""
    if name == "augment":
        return "augmentation" if value else "--no-augment"
    if name in _WITHOUT_OPTION:
        return f"{name.replace('_', ' ')} {_setting_value(name, value)}"
    option = _OPTION_OF_SETTING.get(name, "--" + name.replace("_", "-"))
    if name == "from_models":  # the option is given once a checkpoint
        return " ".join(f"{option} {path}" for path in value) or f"no {option}"
    return f"{option} {_setting_value(name, value)}"


def _setting_value(name: str, value: Any) -> str:
    """The value of a setting as ``_typed_setting`` writes it (lists as their items)."""
    if name == "augment":
        return "augmented" if value else "--no-augment"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "none"
    return "none" if value is None else str(value)


def resume_note(state: dict, requested: TrainConfig, world: int = 1,
                given: Collection[str] | None = None) -> str | None:
    """What a resumed run (``state``, its training state) leaves of the request, on
    ``world`` processes (it goes on with the saved settings; a tester's --lr, --loss and
    --input-size were dropped unsaid, and a run started under torchrun went on in one
    process with half its batch), or None. Only the settings ``given`` (default: all) are
    news: a tester was told of sizes never typed. Raises DatasetError as ``resumed_epochs``."""
    saved = state["config"]
    epochs_note = resumed_epochs(state, requested, given)[1]
    asked = _config_json(requested)
    skipped = {"epochs", "output", "device", *(FROM_PARENT if saved.get("init") else ())}
    changed = [f"{_typed_setting(k, asked[k])} (the run's: {_setting_value(k, saved[k])})" for k in sorted(asked)
               if k in saved and k not in skipped and asked[k] != saved[k] and (given is None or k in given)]
    notes = [epochs_note] if epochs_note else []
    if changed:
        notes.append("--resume goes on with the settings the run started with; not taken: " + ", ".join(changed)
                     + ". Start a new run (another -o) to change them.")
    started = int(state.get("world", world))  # a state written before it was kept: unknown, nothing said
    if started != world:
        batch = saved.get("batch_size", requested.batch_size)
        notes.append(f"The run started on {started} processes and goes on on {world}: a step now sees "
                     f"{world * batch} slices, not {started * batch} (each process takes --batch-size {batch}).")
    return " ".join(notes) or None


def _restore(state: dict, model, optimizer) -> None:
    tensors = state["tensors"]
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    moments: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            moments.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": moments, "param_groups": state["param_groups"]})


def _move_optimizer(optimizer, device) -> None:
    for moments in optimizer.state.values():
        for name, value in moments.items():
            if torch.is_tensor(value) and name != "step":
                moments[name] = value.to(device)
