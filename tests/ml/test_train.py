"""Training: outputs and metadata, exact resume, Ctrl-C, two-process DDP (all tiny, on CPU)."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from segview.ml.checkpoint import load_checkpoint, read_metadata
from segview.ml.data import phantom_dataset
from segview.ml.train import STATE_FILE, TrainConfig, TrainingInterrupted, train

TINY = dict(input_size=32, base_channels=4, depth=2, batch_size=4, seed=3)


@pytest.fixture(scope="module")
def cardiac():
    return phantom_dataset("cardiac", 4)


def test_training_writes_checkpoints_log_plot_and_metadata(cardiac, tmp_path):
    result = train(TrainConfig(output=tmp_path, epochs=2, **TINY), cardiac)
    for name in ("best.safetensors", "last.safetensors", "log.csv", "curves.png", STATE_FILE):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert 0 <= float(rows[-1]["val_dice"]) <= 1
    meta = read_metadata(tmp_path / "last.safetensors")
    split = meta["training"]["split"]
    assert not set(split["train"]) & set(split["validation"])
    assert sorted(split["train"] + split["validation"]) == [c.name for c in cardiac.cases]
    assert meta["preprocessing"]["normalization"]["method"] == "percentile"
    assert meta["preprocessing"]["input_size"] == [32, 32]
    assert meta["preprocessing"]["orientation"] == "display"  # as the window shows the slices
    assert meta["loss"] == {"name": "ce+dice", "alpha": 1.0}
    assert meta["validation"]["epoch"] == 2 and "dice_per_class" in meta["validation"]
    assert meta["training"]["cases"] == 4 and meta["training"]["epochs"] == 2
    model, _ = load_checkpoint(tmp_path / "best.safetensors")
    assert model.config["num_classes"] == 4
    assert result.best_epoch in (0, 1)


def _weights(path):
    model, _ = load_checkpoint(path)
    return model.state_dict()


def assert_as_a_straight_run(tmp_path, dataset, epochs: int) -> None:
    """The weights in ``tmp_path / "resumed"`` are exactly those of an uninterrupted run."""
    train(TrainConfig(output=tmp_path / "straight", epochs=epochs, **TINY), dataset)
    straight = _weights(tmp_path / "straight" / "last.safetensors")
    resumed = _weights(tmp_path / "resumed" / "last.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_resume_continues_exactly_where_it_stopped(cardiac, tmp_path):
    train(TrainConfig(output=tmp_path / "resumed", epochs=1, **TINY), cardiac)
    train(TrainConfig(output=tmp_path / "resumed", epochs=2, **TINY), cardiac, resume=True)
    assert_as_a_straight_run(tmp_path, cardiac, 2)
    assert len(list(csv.DictReader(open(tmp_path / "resumed" / "log.csv")))) == 2


def test_ctrl_c_saves_a_resumable_state(cardiac, tmp_path):
    def interrupt(event):
        if event.get("epoch") == 1 and event.get("step") == 1:
            raise KeyboardInterrupt

    config = TrainConfig(output=tmp_path / "resumed", epochs=3, **TINY)
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, cardiac, progress=interrupt)
    assert caught.value.epoch == 1 and caught.value.resumable and (tmp_path / "resumed" / STATE_FILE).exists()
    result = train(config, cardiac, resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert_as_a_straight_run(tmp_path, cardiac, 3)  # a tester's resumed run had its epoch 2 twice over


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_resume(cardiac, tmp_path):
    def interrupt(event):
        if event.get("step") == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="no epoch was completed: there is nothing to resume") as caught:
        train(TrainConfig(output=tmp_path, epochs=2, **TINY), cardiac, progress=interrupt)
    assert not caught.value.resumable


def test_resume_without_a_saved_run_is_a_clear_error(cardiac, tmp_path):
    from segview.ml.data import DatasetError
    with pytest.raises(DatasetError, match="nothing to resume"):
        train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac, resume=True)


@pytest.mark.parametrize("options, message", [
    (dict(loss="focal"), "unknown loss"), (dict(alpha=-1.0), "alpha"),
    (dict(epochs=0), "epochs"), (dict(lr=0.0), "learning rate"),
])
def test_bad_configuration_is_refused_before_training(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(output="unused", **options)


def test_more_torchrun_processes_than_gpus_are_refused_in_words(monkeypatch):
    from segview.core.errors import SegviewError
    from segview.ml.train import _start_distributed

    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a one-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("a GPU taken before the check"))
    with pytest.raises(SegviewError, match=r"2 processes on this machine, which has 1 GPU: .*"
                                           r"--nproc_per_node=1, or give --device cpu"):
        _start_distributed(TrainConfig(output="unused"))
    # One GPU named for every process (each would take it, over gloo): refused too, before any is taken.
    with pytest.raises(SegviewError, match=r"--device cuda:1 names one GPU, but torchrun started 2 processes"):
        _start_distributed(TrainConfig(output="unused", device="cuda:1"))


def test_more_cpu_processes_than_cores_are_said(cardiac, tmp_path, monkeypatch):
    """A tester's torchrun of more CPU processes than cores ran slower than fewer would, unsaid."""
    from segview.ml.train import cpu_share_note

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    notes = []
    train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac,
          progress=lambda event: notes.append(event["note"]) if "note" in event else None)
    assert "torchrun started 4 processes on this machine's 2 cores: they take turns, and training runs slower " \
           "than with --nproc_per_node=2" in notes
    assert cpu_share_note(torch.device("cuda")) is None  # one GPU each: its own check
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cpu_share_note(torch.device("cpu")) is None


@pytest.mark.slow
def test_two_cpu_processes_train_with_ddp(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "segview", "train", "--phantom", "cardiac", "--cases", "3", "--epochs", "1",
               "--input-size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "2",
               "-o", str(tmp_path), "--device", "cpu"]  # CPU processes on a GPU machine too
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    meta = read_metadata(tmp_path / "best.safetensors")
    assert meta["training"]["world_size"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["best.safetensors", "last.safetensors", "log.csv", "curves.png", STATE_FILE])


def test_poly_schedule_decays_the_learning_rate_per_epoch(cardiac, tmp_path):
    result = train(TrainConfig(output=tmp_path, epochs=2, lr=0.01, schedule="poly", **TINY), cardiac)
    assert [row["lr"] for row in result.history] == pytest.approx([0.01, 0.01 * 0.5**0.9])


def test_foreground_oversampling_draws_slices_with_foreground():
    from segview.ml.train import _epoch_order
    labels = torch.zeros(100, 4, 4, dtype=torch.long)
    labels[:5, 0, 0] = 1  # five slices with foreground
    plain = _epoch_order(labels, 0.0, torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(100))  # a permutation
    always = _epoch_order(labels, 1.0, torch.Generator().manual_seed(0))
    assert set(always.tolist()) <= set(range(5))
    third = _epoch_order(labels, 0.33, torch.Generator().manual_seed(0))
    assert 0.25 < (third < 5).float().mean() < 0.45


def test_replay_data_of_another_task_are_refused(cardiac, tmp_path):
    """A tester replayed lung CT into a cardiac MR fine-tune: infection was taught as the
    right ventricle, unsaid."""
    from segview.ml.data import DatasetError

    train(TrainConfig(output=tmp_path / "parent", epochs=1, **TINY), cardiac)
    parent = tmp_path / "parent" / "best.safetensors"
    config = dict(epochs=1, init=str(parent), replay_share=0.5, **TINY)
    with pytest.raises(DatasetError, match=r"replay data \(phantom lung.*\) are of other classes than the dataset"):
        train(TrainConfig(output=tmp_path / "lung", **config), cardiac, replay=phantom_dataset("lung", 1))
    same_task = phantom_dataset("cardiac", 1, 50)
    result = train(TrainConfig(output=tmp_path / "cardiac", **config), cardiac, replay=same_task)
    assert read_metadata(result.output / "last.safetensors")["lineage"]["replay"]["share"] == 0.5


def test_ctrl_c_while_an_epoch_is_written_keeps_that_epoch(cardiac, tmp_path, monkeypatch):
    """A tester's Ctrl-C came after epoch 1's checkpoints and before its state: 'no epoch
    was completed, nothing to resume', though last.safetensors said 1 of 3 epochs."""
    import segview.ml.train as train_module

    plot, calls = train_module._plot, []

    def interrupted_plot(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return plot(*args, **kwargs)

    monkeypatch.setattr(train_module, "_plot", interrupted_plot)
    config = TrainConfig(output=tmp_path / "resumed", epochs=2, **TINY)
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, cardiac)
    assert caught.value.resumable and caught.value.epoch == 1  # epoch 1 is kept: epoch 2 comes next
    result = train(config, cardiac, resume=True)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert_as_a_straight_run(tmp_path, cardiac, 2)


def test_resume_says_which_requested_settings_it_does_not_take(cardiac, tmp_path):
    """A tester's --resume with --lr, --loss and --input-size went on with the saved ones, unsaid."""
    train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac)
    notes = []
    changed = {**TINY, "input_size": 48}
    train(TrainConfig(output=tmp_path, epochs=2, lr=0.05, loss="dice", **changed), cardiac, resume=True,
          progress=lambda event: notes.append(event["note"]) if "note" in event else None)
    assert notes[-1].startswith("resuming at epoch 2 of 2, best so far epoch 1")  # said, not only seen in the log
    notes = [n for n in notes if "not taken" in n]
    assert len(notes) == 1 and ("not taken: --input-size 48 (the run's: 32), --loss dice (the run's: ce+dice), "
                                "--lr 0.05") in notes[0]
    assert read_metadata(tmp_path / "last.safetensors")["preprocessing"]["input_size"] == [32, 32]
    notes.clear()
    train(TrainConfig(output=tmp_path, epochs=3, **TINY), cardiac, resume=True,
          progress=lambda event: notes.append(event["note"]) if "note" in event else None)
    assert [n for n in notes if "not taken" in n] == []
    # Settings not given again (their defaults) are no news: a tester was told of sizes never typed.
    train(TrainConfig(output=tmp_path, epochs=4), cardiac, resume=True, given=("epochs",),
          progress=lambda event: notes.append(event["note"]) if "note" in event else None)
    assert [n for n in notes if "not taken" in n] == []


def test_resume_takes_fewer_epochs_while_ahead_of_those_done_and_says_so(cardiac, tmp_path):
    """A tester's run of --epochs 4, killed in epoch 2, resumed with --epochs 3, trained to
    4 without a word."""
    from segview.ml.data import DatasetError

    def interrupt(event):
        if event.get("epoch") == 1 and event.get("step") == 1:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(TrainConfig(output=tmp_path, epochs=4, **TINY), cardiac, progress=interrupt)
    notes = []
    result = train(TrainConfig(output=tmp_path, epochs=3, **TINY), cardiac, resume=True,
                   progress=lambda event: notes.append(event["note"]) if "note" in event else None)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert "--epochs 3 shortens the run of 4 epochs." in notes
    assert read_metadata(tmp_path / "last.safetensors")["training"]["config"]["epochs"] == 3
    with pytest.raises(DatasetError, match="--epochs 2 with --resume: the run has completed 3 of its 3 epochs"):
        train(TrainConfig(output=tmp_path, epochs=2, **TINY), cardiac, resume=True)


def test_resume_without_epochs_goes_on_to_the_runs_own(cardiac, tmp_path):
    """Epochs not given are no request: the 1-epoch run is finished as it is. Given, even
    equal to the default (40), they are one."""
    from segview.ml.train import _read_state, resume_note, resumed_epochs

    train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac)
    state = {**_read_state(tmp_path / STATE_FILE), "next_epoch": 0}
    assert resumed_epochs(state, TrainConfig(output=tmp_path, **TINY), given=()) == (1, None)
    assert resumed_epochs(state, TrainConfig(output=tmp_path, **TINY)) == \
        (40, "--epochs 40 lengthens the run of 1 epoch.")
    assert resume_note(state, TrainConfig(output=tmp_path, epochs=5, **TINY)) == \
        "--epochs 5 lengthens the run of 1 epoch."


def test_resume_on_another_number_of_processes_says_what_the_batch_becomes(cardiac, tmp_path):
    """A tester's run started under torchrun on 2 processes went on in one, its batch
    halved, without a word."""
    from segview.ml.train import STATE_FILE, _read_state, resume_note

    train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac)
    state = _read_state(tmp_path / STATE_FILE)
    requested = TrainConfig(output=tmp_path, epochs=1, **TINY)
    assert state["world"] == 1 and resume_note(state, requested, 1) is None
    batch = TINY.get("batch_size", TrainConfig(output=tmp_path).batch_size)
    note = resume_note({**state, "world": 2}, requested, 1)
    assert note == (f"The run started on 2 processes and goes on on 1: a step now sees {batch} slices, not "
                    f"{2 * batch} (each process takes --batch-size {batch}).")
    assert resume_note({k: v for k, v in state.items() if k != "world"}, requested, 2) \
        is None  # a state written before the processes were kept: nothing known, nothing said


def test_resuming_with_cases_the_run_never_had_is_refused(cardiac, tmp_path):
    """A tester's --cases 4 on resuming a 3-case run went into the metadata, which then
    described data the weights never saw."""
    from segview.ml.data import DatasetError

    train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac)
    with pytest.raises(DatasetError, match="cases the interrupted run never had"):
        train(TrainConfig(output=tmp_path, epochs=2, **TINY), phantom_dataset("cardiac", 5), resume=True)


def test_the_curves_of_one_epoch_have_whole_epoch_ticks(tmp_path):
    """A tester's one-epoch run read 0.95 ... 1.05 along the epoch axis."""
    import segview.ml.train as train_module

    one_epoch = [{"epoch": 1, "train_loss": 0.5, "val_dice": 0.7, "val_iou": 0.55}]
    figure = train_module._plot(tmp_path / "curves.png", one_epoch)
    for axes in figure.axes:
        low, high = axes.get_xlim()
        assert [t for t in axes.get_xticks() if low <= t <= high] == [1.0]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_resume_of_a_finished_run_trains_nothing_and_says_so(cardiac, tmp_path):
    """It said "resuming at epoch 2 of 1" and went on through no epoch."""
    first = train(TrainConfig(output=tmp_path, epochs=1, **TINY), cardiac)
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    notes = []
    result = train(TrainConfig(output=tmp_path, **TINY), cardiac, notes.append, resume=True, given=())
    assert notes[-1] == {"note": "the run has already finished its 1 epoch: nothing to resume (its checkpoints are "
                                 "kept as they are); to train it further, resume with --epochs M (M above 1)"}
    assert (result.best_epoch, result.history) == (first.best_epoch, first.history)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == written
