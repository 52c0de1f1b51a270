"""Fine-tuning a checkpoint on a dataset's reviewed cases, as the window's job (and a
script) does it: ``segview train DATA --reviewed-only --init CKPT --replay SOURCE`` with its
documented defaults, the replay data being those the checkpoint learnt from where they are
at hand (``replay_source``), written where nothing partial can be mistaken for a model.

    path = fine_tune("Dataset001/", "ce.safetensors", progress=print)
    # Dataset001/models/ce_ft1.safetensors, with its lineage; held-out cases in splits.json

Training runs in a hidden folder beside the target (``models/.<name>.partial-*``); only a
finished run's best checkpoint is moved (atomically) to ``models/<parent>_ft<N>.safetensors``
with its ``<name>.log.csv`` and ``<name>.curves.png``. A cancelled or failed run leaves no
checkpoint; a crash leaves only the hidden folder, removed by a run a day later.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..core.compare import MIN_PAIRS
from ..core.errors import DatasetError, HeldOutError, SegviewError
from ..core.report import counted
from ..ml.checkpoint import read_metadata
from ..core.splits import SPLITS_FILE
from ..ml.data import Dataset, case_names, fixed_split, folder_dataset, replay_dataset, replay_spec
from ..ml.data import Progress as DataProgress
from ..ml.train import DEFAULT_REPLAY_SHARE, TrainConfig, check_replay, finetune_values, train

MODELS_FOLDER = "models"
Progress = Callable[[dict], None]


class FineTuneError(SegviewError):
    """Fine-tuning cannot start or finish; the message says why."""


def fine_tune_target(folder, parent, models_folder=None) -> Path:
    """Where ``fine_tune`` will write: ``<models>/<parent stem>_ft<N>.safetensors`` with the
    first free N."""
    folder = Path(models_folder) if models_folder is not None else Path(folder) / MODELS_FOLDER
    stem = Path(parent).stem
    n = 1
    while (folder / f"{stem}_ft{n}.safetensors").exists():
        n += 1
    return folder / f"{stem}_ft{n}.safetensors"


def fine_tune(folder, parent, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              models_folder=None, device: str | None = None, epochs: int | None = None) -> Path:
    """Fine-tune checkpoint ``parent`` on the reviewed slices of the training cases of the
    nnU-Net dataset ``folder`` (its fixed split, written on first use; held-out reviewed
    slices choose the epoch). ``progress`` gets {"held_out": names} first, then
    {"reading": "cases" | "replay cases" | "replay phantoms", "done", "count", "name"}
    before each case of the dataset read and each replay case read or phantom made
    (``done`` of ``count`` finished), then ``train``'s events (steps, then each epoch's row
    with ``val_dice``, the held-out Dice).
    ``models_folder``: where to write (default ``folder/models``; give another for a
    read-only dataset). ``epochs``: how many (None: ``finetune_values``', as ``segview train``
    without --epochs; the best epoch on the held-out slices is kept, so more cost time, not
    overfitting). Returns the checkpoint's path.
    Raises FineTuneError (nothing to train on, classes that differ, a folder that cannot be
    written), CheckpointError, and ml.train.TrainingCancelled when ``should_stop()``."""
    from ..ml.train import TrainingCancelled

    folder = Path(folder)
    target = fine_tune_target(folder, parent, models_folder)

    def reading(what: str) -> DataProgress:
        """Before each case read or replay phantom made (a lung replay takes half a minute on
        2 cores): the count told (the window showed only a busy bar), a Cancel heard (it
        stopped the run only once training began)."""
        def told(done: int, count: int, name: str) -> None:
            if should_stop is not None and should_stop():
                raise TrainingCancelled("cancelled while reading the data")
            if progress is not None:
                progress({"reading": what, "done": done, "count": count, "name": name})
        return told

    try:
        names = case_names(folder)
        split = fixed_split(folder, names, write=False)  # written once the fine-tune succeeds
        if progress is not None:
            progress({"held_out": list(split["val"])})  # the cases judging the run, for the worklist to mark
        dataset = folder_dataset(folder, reading("cases"), reviewed_only=True)
        made = not target.parent.exists()  # a models folder this run makes goes again if it writes nothing
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent)
        work = Path(tempfile.mkdtemp(prefix=f".{target.stem}.partial-", dir=target.parent))
    except OSError as exc:
        raise FineTuneError(f"Cannot write into {target.parent} ({exc.strerror or exc}): choose another folder "
                            "for the fine-tuned checkpoint.") from exc
    except SegviewError as exc:
        raise FineTuneError(str(exc)) from exc
    try:
        made_anew = (replay_source(parent) or "").startswith("phantom:")  # phantoms are made, not read
        replay = replay_data(parent, dataset, reading("replay phantoms" if made_anew else "replay cases"))
        values = finetune_values(parent)
        if epochs is not None:
            values["epochs"] = epochs
        config = TrainConfig(output=str(work), device=device, replay_share=DEFAULT_REPLAY_SHARE if replay else 0.0,
                             **values)
        train(config, dataset, progress, split={"train": split["train"], "validation": split["val"]},
              replay=replay, should_stop=should_stop)
        for suffix, name in ((".log.csv", "log.csv"), (".curves.png", "curves.png")):
            if (work / name).exists():
                os.replace(work / name, target.with_suffix(suffix))
        os.replace(work / "best.safetensors", target)  # last: the checkpoint appears whole or not at all
        fixed_split(folder, names)  # the split its held-out Dice and every later verdict rely on
    except TrainingCancelled:
        raise
    except HeldOutError as exc:  # the person is asked to edit the split: it must be there
        fixed_split(folder, names)
        raise FineTuneError(f"{exc} ({folder / SPLITS_FILE})") from exc
    except SegviewError as exc:
        raise FineTuneError(str(exc)) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if made and not target.exists():
            with contextlib.suppress(OSError):  # not empty (another run's files), or gone
                target.parent.rmdir()
    return target


def selection_caution(held_out: int) -> str:
    """Why the best held-out Dice of a run flatters it: the epoch was chosen by that Dice, on
    those cases; on fewer than ``MIN_PAIRS`` of them it is no verdict either."""
    said = ("The epoch was chosen by this Dice on these same cases, so it flatters the model a little; cases "
            "reviewed after this run judge it fairly.")
    if held_out < MIN_PAIRS:
        said += (f" On {counted(held_out, 'held-out case')} (fewer than {MIN_PAIRS}) it is no verdict: review more "
                 "cases before relying on it.")
    return said


def replay_source(parent) -> str | None:
    """Where the data checkpoint ``parent`` first learnt from can be had again, as ``train
    --replay`` takes it: its own training data for a model trained from scratch (the
    shipped ones: ``phantom:TASK``), what it replayed for a fine-tuned one; a dataset
    folder only where it still exists. None when none is at hand. Raises CheckpointError."""
    meta = read_metadata(parent)
    lineage = meta.get("lineage")
    first = meta.get("training", {}) if lineage is None else (lineage.get("replay") or {})
    return replay_spec(str(first.get("source", "")))


def replay_data(parent, dataset: Dataset, progress: DataProgress | None = None) -> Dataset | None:
    """The data ``parent`` learnt from (``replay_source``), drawn for half of each epoch of
    its fine-tune on ``dataset`` so that it does not forget them: without them, a window's
    fine-tune of ``cardiac_ce`` on 4 cases of a new scanner fell from 0.914 to 0.782 Dice on
    the original one (0.894 with them). None when none are at hand, or when they are not of
    ``dataset``'s classes and modality (``ml.train.check_replay``: then they would teach
    another task). ``progress`` is called before each replay case is read or made."""
    source = replay_source(parent)
    if source is None or not dataset.cases:
        return None
    try:
        replay = replay_dataset(source, progress)
        check_replay(replay, dataset, dataset.cases[0].volume.modality)
    except DatasetError:
        return None
    return replay


def _remove_stale(models: Path) -> None:
    """Hidden work folders of runs that crashed (a day old: another person's run may be going on)."""
    import time

    for stale in models.glob(".*.partial-*"):
        if time.time() - stale.stat().st_mtime > 24 * 3600:
            shutil.rmtree(stale, ignore_errors=True)
