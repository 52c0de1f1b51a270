"""`segview train | evaluate | predict` from the command line, with tiny models on CPU."""
import csv
import json
import sys

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary

from surface_distance import metrics as deepmind

from segview.cli import main
from segview.core.io import load_classes, load_labels, load_volume, save_volume
from segview.core.phantoms import make_phantom
from segview.ml.checkpoint import read_metadata
from segview.ml.inference import Predictor
from segview.ml.train import TrainConfig
from segview.resources import MODELS

CARDIAC_CE = MODELS / "cardiac_ce.safetensors"

TINY = ["--input-size", "32", "--base-channels", "4", "--depth", "2", "--batch-size", "4"]


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for loss, alpha in (("ce", "1"), ("ce+dice", "1")):
        assert main(["train", "--phantom", "cardiac", "--cases", "3", "--epochs", "1",
                     "--loss", loss, "--alpha", alpha, "-o", str(root / loss), *TINY]) == 0
    return root / "ce" / "best.safetensors", root / "ce+dice" / "best.safetensors"


def test_train_records_what_it_was_asked(two_checkpoints):
    ce, ce_dice = (read_metadata(p) for p in two_checkpoints)
    assert ce["loss"]["name"] == "ce" and ce_dice["loss"] == {"name": "ce+dice", "alpha": 1.0}
    assert ce["training"]["config"]["input_size"] == 32


def test_paper_preset_fills_in_the_protocol(tmp_path, monkeypatch):
    from segview.cli import tools
    captured = {}

    def fake_train(config, dataset, progress, resume, given, **options):
        captured["config"], captured["given"] = config, given
        raise SystemExit(0)

    monkeypatch.setattr("segview.ml.train.train", fake_train)
    with pytest.raises(SystemExit):
        main(["train", "--phantom", "cardiac", "--cases", "2", "--preset", "paper",
              "--epochs", "3", "-o", str(tmp_path)])
    config = captured["config"]
    assert (config.input_size, config.lr, config.base_channels, config.norm) == (256, 0.01, 64, None)
    assert config.epochs == 3  # an explicit option wins over the preset
    with pytest.raises(SystemExit):
        main(["train", "--phantom", "cardiac", "--cases", "2", "--preset", "paper", "-o", str(tmp_path), "--resume"])
    # On --resume a preset's epochs are no request (the default is none): the run's own go on.
    assert "epochs" not in captured["given"] and "lr" in captured["given"]
    assert tools  # the module under test


def interrupt_at_first_step(bar, event):
    """The training bar of a resumed run stopped at its first step, as by Ctrl-C; its notes printed."""
    if "step" in event:
        raise KeyboardInterrupt
    print(f"segview: {event['note']}" if "note" in event else "", file=sys.stderr)


def test_resume_takes_epochs_equal_to_the_default_as_asked(tmp_path, monkeypatch, capsys):
    """A tester's --epochs 40 (the default) on resuming a shorter run read as no request:
    the run ended at its own number. Ctrl-C in the first resumed step ends the test."""
    from segview.cli import tools

    assert main(["train", "--phantom", "cardiac", "--cases", "2", "--epochs", "1", "-o", str(tmp_path), *TINY]) == 0

    monkeypatch.setattr(tools._TrainingBar, "__call__", interrupt_at_first_step)
    capsys.readouterr()
    default = str(TrainConfig(output=tmp_path).epochs)
    main(["train", "--phantom", "cardiac", "--cases", "2", "--epochs", default, "-o", str(tmp_path), "--resume", *TINY])
    err = capsys.readouterr().err
    assert f"--epochs {default} lengthens the run of 1 epoch." in err and f"resuming at epoch 2 of {default}" in err
    finished = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # Left out: the run's own, which it has finished ("resuming at epoch 2 of 1" was said before).
    assert main(["train", "--phantom", "cardiac", "--cases", "2", "-o", str(tmp_path), "--resume", *TINY]) == 0
    assert capsys.readouterr().err == ("segview: the run has already finished its 1 epoch: nothing to resume (its "
                                       "checkpoints are kept as they are); to train it further, resume with "
                                       "--epochs M (M above 1)\n")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == finished


def test_resume_names_the_settings_it_does_not_take_by_their_options(tmp_path, monkeypatch, capsys):
    """--resume's note named the settings by their fields ("input_size 48", "lr 0.05"),
    which no user typed. Ctrl-C in the first resumed step ends the test."""
    from segview.cli import tools

    started = ["train", "--phantom", "cardiac", "--cases", "2", "-o", str(tmp_path), "--lr", "0.002",
               "--norm", "instance", *TINY]
    assert main([*started, "--epochs", "1"]) == 0

    monkeypatch.setattr(tools._TrainingBar, "__call__", interrupt_at_first_step)
    capsys.readouterr()
    assert main([*started, "--epochs", "2", "--resume", "--lr", "0.05", "--norm", "none", "--no-augment",
                 "--input-size", "48"]) == 130
    err = " ".join(capsys.readouterr().err.split())
    assert ("--resume goes on with the settings the run started with; not taken: --no-augment (the run's: "
            "augmented), --input-size 48 (the run's: 32), --lr 0.05 (the run's: 0.002), --norm none (the run's: "
            "instance).") in err


def test_every_setting_a_resume_note_names_as_an_option_is_an_option_of_train(capsys):
    """The note's option names are the parser's: a setting renamed on one side only would
    name an option that does not exist."""
    from dataclasses import fields

    from segview.ml.interactive_training import InteractiveConfig
    from segview.ml.train import _typed_setting

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    options = set(capsys.readouterr().out.replace(",", " ").replace("[", " ").replace("]", " ").split())
    config = InteractiveConfig(output="x")
    for field in fields(InteractiveConfig):
        typed = _typed_setting(field.name, getattr(config, field.name)).split()
        named = [word for word in typed if word.startswith("--")]
        assert set(named) <= options, field.name


@pytest.mark.parametrize("arguments, message", [
    (["train", "DATA", "--cases", "3"], "--cases goes with --phantom (the synthetic cases): a dataset folder's "),
    (["train", "--interactive", "DATA", "--first-seed", "5"], "--first-seed goes with --phantom"),
    (["evaluate", "x.safetensors", "--data", "DATA", "--cases", "3", "--first-seed", "5"],
     "--cases and --first-seed go with --phantom"),
    (["evaluate", "a.safetensors", "b.safetensors", "--data", "DATA", "--reviewed-only", "--tolerance-mm", "1"],
     "--tolerance-mm does not go with --reviewed-only: the verdict scores Dice"),
])
def test_options_a_run_would_ignore_are_refused(tmp_path, capsys, arguments, message):
    """--cases and --first-seed with a dataset folder alone, --tolerance-mm with the verdict:
    ignored unsaid before (their defaults could not be told from a number typed)."""
    arguments = [str(tmp_path) if a == "DATA" else a for a in arguments]
    assert main([*arguments, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("arguments, message", [
    (["phantom", "cardiac", "--seed", "-1"], "--seed must be 0 or more"),
    (["train", "--phantom", "cardiac", "--cases", "2", "--first-seed", "-5", *TINY],
     "the first phantom seed must be 0 or more"),
    (["evaluate", str(CARDIAC_CE), "--phantom", "cardiac", "--cases", "1", "--first-seed", "-1"],
     "the first phantom seed must be 0 or more"),
    (["train", "--phantom", "cardiac", "--depth", "0"], "the base channels and the depth must be at least 1"),
    (["train", "--interactive", "--phantom", "cardiac", "--base-channels", "0"],
     "the base channels and the depth must be at least 1"),
    (["train", "--phantom", "lung", "--ct-window", "100", "-100"], "the CT window needs LOW below HIGH"),
    (["train", "--phantom", "cardiac", "--cases", "2", "--epochs", "1", "--ct-window", "-100", "200", *TINY],
     "a CT window (--ct-window) was given, but the data are MR"),
    (["train", "DATA", "--init", "x.safetensors", "--input-size", "96", "--norm", "instance"],
     "--input-size, --norm do not go with --init: a fine-tune keeps the checkpoint's network"),
    (["train", "DATA", "--init", "x.safetensors", "--ct-window", "-500", "500"], "--ct-window does not go with --init"),
    (["train", "DATA", "--init", "x.safetensors", "--preset", "paper"], "--preset does not go with --init"),
    (["train", "--interactive", "--phantom", "cardiac", "--ct-window", "-100", "200"],
     "--ct-window does not go with --interactive"),
    (["evaluate", "a.safetensors", "b.safetensors", "--image", "IMAGE", "--labels", "IMAGE", "--data", "DATA"],
     "--data does not go with --image and --labels"),
    (["evaluate", "a.safetensors", "b.safetensors", "--image", "IMAGE", "--labels", "IMAGE", "--phantom", "lung",
      "--robot"], "--phantom, --robot do not go with --image and --labels"),
    (["evaluate", "a.safetensors", "b.safetensors", "--image", "IMAGE", "--labels", "IMAGE", "--data", "DATA",
      "--reviewed-only"], "--data, --reviewed-only do not go with --image"),
    (["predict", str(CARDIAC_CE), "IMAGE", "--series", "1.2.3"],
     "--series chooses one series of a DICOM folder; scan.nii.gz is an image file"),
])
def test_options_dropped_unsaid_or_ending_in_a_traceback_are_one_line(tmp_path, capsys, monkeypatch, arguments,
                                                                       message):
    """Each was taken and ignored (--init's network and scaling, --preset beside it; the other
    modes' options beside --image; --series with an image file), taken and misused (a CT
    window upside down scaled every voxel to 0 or 1), or ended in a traceback (a negative
    phantom seed, depth or base channels 0)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DATA").mkdir()
    save_volume(tmp_path / "scan.nii.gz", make_phantom("cardiac", 0).volume)
    arguments = [{"IMAGE": "scan.nii.gz"}.get(a, a) for a in arguments]
    assert main([*arguments, "-o", "out.nii.gz" if arguments[0] == "predict" else "out"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.nii.gz").exists()


def _help_text(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_every_option_named_says_what_it_does_and_its_default(capsys):
    train = _help_text("train", capsys)
    config = TrainConfig(output="x")
    assert "--norm {none,batch,instance} normalisation layer after each convolution (default batch" in train
    assert f"--seed SEED seed of the validation split, the initial weights and the draws (default {config.seed}" \
        in train
    assert "--device DEVICE cuda, cuda:1, mps or cpu (default: the best there is;" in _help_text("predict", capsys)
    assert "-o OUTPUT, --output OUTPUT folder for results.csv, table1.md and comparisons.json" in \
        _help_text("evaluate", capsys)


MODES = {"plain": [], "--interactive": ["--interactive"], "--init": ["--init", str(CARDIAC_CE)],
         "--preset paper": ["--preset", "paper"]}


@pytest.fixture(scope="module")
def configs_of_the_modes():
    """The configuration ``segview train`` builds in each mode, the options left out."""
    built = {}

    def capture(config, *args, **kwargs):
        built["config"] = config
        raise SystemExit(0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("segview.ml.train.train", capture)
        patch.setattr("segview.ml.interactive_training.train_interactive", capture)
        for mode, options in MODES.items():
            with pytest.raises(SystemExit):
                main(["train", "--phantom", "cardiac", "--cases", "2", "-o", "unused", *options])
            built[mode] = built.pop("config")
    return built


def _stated(help_text: str, option: str) -> dict[str, str]:
    """What the help of ``option`` says its default is in each mode: "default 0.001, also
    with --interactive; with --init 0.0003, with --preset paper 0.01" gives plain 0.001,
    --interactive 0.001, --init 0.0003, --preset paper 0.01."""
    start = help_text.index(f" {option} ", help_text.index(" options: "))  # its line, past the usage
    said = help_text[help_text.index("(default ", start) + 1:]
    said = said[:said.index(")")]
    head, _, rest = said.partition(";")
    default, _, also = head.partition(", also with ")
    stated = {"plain": default.removeprefix("default ")}
    stated.update({mode: stated["plain"] for mode in also.split(" and ") if mode})
    for part in filter(None, (p.strip() for p in rest.split(","))):
        mode = next(m for m in MODES if part.startswith(f"with {m} "))
        stated[mode] = part.removeprefix(f"with {mode} ")
    return stated


def _same(stated: str, value) -> bool:
    if isinstance(value, (int, float)):
        return float(stated) == value
    return stated == ("none" if value is None else value)


@pytest.mark.parametrize("option, setting, not_with", [
    ("--lr", "lr", ()), ("--schedule", "schedule", ()), ("--input-size", "input_size", ("--init",)),
    ("--epochs", "epochs", ()), ("--batch-size", "batch_size", ()), ("--base-channels", "base_channels", ("--init",)),
    ("--depth", "depth", ("--init",)), ("--norm", "norm", ("--init",)),
    ("--validation-fraction", "validation_fraction", ()),
    ("--foreground-fraction", "foreground_fraction", ("--interactive",)), ("--seed", "seed", ()),
])
def test_train_help_states_the_default_each_mode_uses(configs_of_the_modes, capsys, option, setting, not_with):
    """--help said lr 1e-3, a constant schedule and input 256 whatever the mode, but
    --interactive and --init train with others: each mode's default, as a run takes it (a
    mode the help does not name takes the plain default). ``not_with``: modes that refuse
    the option (--init keeps the checkpoint's network)."""
    stated = _stated(_help_text("train", capsys), option)
    for mode in set(MODES) - set(not_with):
        assert _same(stated.get(mode, stated["plain"]), getattr(configs_of_the_modes[mode], setting)), (mode, stated)
    if "--init" in not_with:
        assert stated["--init"] == "the checkpoint's"


def test_building_the_command_line_imports_no_torch():
    """The help reads its defaults from segview.ml.config, which is free of torch: every
    command (segview phantom, segview --help) builds all the parsers."""
    import subprocess

    code = ("import sys\nfrom segview.cli import main\ntry:\n    main(['phantom', '--help'])\nexcept SystemExit:\n"
            "    pass\nassert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_evaluate_prints_table1_and_a_paired_test(two_checkpoints, tmp_path, capsys):
    assert main(["evaluate", *map(str, two_checkpoints), "--phantom", "cardiac", "--cases", "3",
                 "--first-seed", "50", "-o", str(tmp_path), "--tolerance-mm", "1.5"]) == 0
    out = capsys.readouterr().out
    assert ("| checkpoint | cardiac dice | cardiac iou | cardiac pixel error | cardiac hd95 (mm) | "
            "cardiac surface dice |") in out
    assert "Per class (mean over cases; surface Dice at 1.5 mm)" in out and "| CE | cardiac | myocardium |" in out
    assert "| CE |" in out and "| CE + Dice (alpha 1) |" in out
    assert "CE + Dice (alpha 1) minus CE" in out and "over n = 3 cases" in out
    assert "Only 3 paired cases: the test and the interval cannot support a verdict" in out
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 6
    assert {"checkpoint", "case", "mean_dice", "mean_iou", "pixel_error",
            "dice_myocardium", "iou_left ventricle"} <= set(rows[0])
    comparison = json.loads((tmp_path / "comparisons.json").read_text())[0]
    assert comparison["cases"] == 3 and "p_value" in comparison
    # The per-case Dice agrees with medpy on the prediction itself.
    predictor = Predictor.from_checkpoint(two_checkpoints[0])
    case = make_phantom("cardiac", 50)
    predicted = predictor.predict_volume(case.volume)
    dices = [medpy_binary.dc(predicted == c, case.labels == c) for c in (1, 2, 3)
             if (predicted == c).any() or (case.labels == c).any()]
    row = next(r for r in rows if r["checkpoint"] == "CE [cardiac]" and r["case"] == "cardiac_050")
    assert float(row["mean_dice"]) == pytest.approx(np.mean(dices), abs=1e-6)
    # Boundary metrics agree with medpy and surface-distance, volumes with a voxel count.
    assert float(row["surface_dice_tolerance_mm"]) == 1.5
    spacing = case.volume.spacing[::-1]  # (z, y, x) for the references
    for c, name in ((1, "right ventricle"), (2, "myocardium"), (3, "left ventricle")):
        p, r = predicted == c, case.labels == c
        voxels_ml = np.prod(case.volume.spacing) / 1000
        assert float(row[f"reference_volume_{name.replace(' ', '_')}_ml"]) == pytest.approx(r.sum() * voxels_ml)
        assert float(row[f"prediction_volume_{name.replace(' ', '_')}_ml"]) == pytest.approx(p.sum() * voxels_ml)
        if p.any() and r.any():
            assert float(row[f"hd95_{name}"]) == pytest.approx(medpy_binary.hd95(p, r, spacing), abs=1e-6)
            assert float(row[f"assd_{name}"]) == pytest.approx(medpy_binary.assd(p, r, spacing), abs=1e-6)
            distances = deepmind.compute_surface_distances(r, p, spacing)
            assert float(row[f"surface_dice_{name}"]) == pytest.approx(
                deepmind.compute_surface_dice_at_tolerance(distances, 1.5), abs=1e-6)
        elif r.any():
            assert row[f"hd95_{name}"] == "inf" and float(row[f"surface_dice_{name}"]) == 0.0
    reference_mass = (case.labels == 2).sum() * np.prod(case.volume.spacing) / 1000 * 1.05
    assert float(row["reference_myocardial_mass_g"]) == pytest.approx(reference_mass)
    assert float(row["difference_lv_blood_ml"]) == pytest.approx(
        float(row["prediction_lv_blood_ml"]) - float(row["reference_lv_blood_ml"]))


def test_predict_writes_labels_on_exactly_the_input_grid(two_checkpoints, tmp_path):
    assert main(["phantom", "cardiac", "-o", str(tmp_path / "data"), "--count", "2", "--seed", "60"]) == 0
    image = tmp_path / "data" / "imagesTr" / "cardiac_060_0000.nii.gz"
    output = tmp_path / "labels.nrrd"
    assert main(["predict", str(two_checkpoints[1]), str(image), "-o", str(output)]) == 0
    volume = load_volume(image)
    labels = load_labels(output, volume)  # refuses any grid difference
    assert labels.shape == volume.shape and labels.max() <= 3
    assert [c.name for c in load_classes(output) if c.value] == ["right ventricle", "myocardium", "left ventricle"]
    # a folder of images is a batch
    assert main(["predict", str(two_checkpoints[0]), str(tmp_path / "data" / "imagesTr"),
                 "-o", str(tmp_path / "batch")]) == 0
    assert sorted(p.name for p in (tmp_path / "batch").glob("*.nii.gz")) == [
        "cardiac_060.nii.gz", "cardiac_061.nii.gz"]  # the cases' names, as in labelsTr/ (not _0000's)


def test_predict_reads_a_dicom_folder(two_checkpoints, tmp_path):
    assert main(["phantom", "cardiac", "-o", str(tmp_path), "--format", "dicom", "--seed", "61"]) == 0
    series = tmp_path / "imagesTr" / "cardiac_061"
    assert main(["predict", str(two_checkpoints[0]), str(series), "-o", str(tmp_path / "p.nii.gz")]) == 0
    assert load_labels(tmp_path / "p.nii.gz", load_volume(series)).shape == load_volume(series).shape


def test_predict_says_what_the_window_says_of_an_irregular_series(two_checkpoints, tmp_path, capsys):
    """A series with a missing slice was predicted on an interpolated slice without a word."""
    assert main(["phantom", "cardiac", "-o", str(tmp_path), "--format", "dicom", "--seed", "62"]) == 0
    series = tmp_path / "imagesTr" / "cardiac_062"
    sorted(series.iterdir())[5].unlink()
    capsys.readouterr()
    assert main(["predict", str(two_checkpoints[0]), str(series), "-o", str(tmp_path / "p.nii.gz")]) == 0
    assert "cardiac_062: 1 slice(s) missing" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "/no/such/data", "-o", "OUT"], "no dataset folder at /no/such/data"),
    (["train", "-o", "OUT"], "a dataset folder or --phantom"),
    (["train", "--phantom", "lung", "--cases", "0", "-o", "OUT"], "at least 1"),
    (["train", "--phantom", "lung", "--lr", "-1", "-o", "OUT"], "learning rate"),
    (["predict", "/no/such.safetensors", "IN", "-o", "x.nii.gz"], "does not exist"),
    (["evaluate", "/no/such.safetensors", "--phantom", "lung"], "no checkpoint at"),
    (["train", "--phantom", "lung", "-o", "a_file/run"], "cannot write the training output into a_file/run"),
    (["evaluate", str(CARDIAC_CE), "--phantom", "lung", "-o", "a_file/ev"], "cannot write the results into a_file/ev"),
    (["export", str(CARDIAC_CE), "-o", "a_file/x.onnx"], "cannot read or write: a_file (Not a directory)"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_labels_outside_the_declared_range_stop_training(tmp_path, capsys):
    assert main(["phantom", "cardiac", "-o", str(tmp_path / "data"), "--count", "2"]) == 0
    (tmp_path / "data" / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": 1}}))
    assert main(["train", str(tmp_path / "data"), "-o", str(tmp_path / "out"), *TINY]) == 2
    assert "declares only classes 0..1" in capsys.readouterr().err


def test_evaluate_writes_the_compare_report_for_one_scan_and_its_saved_labels(two_checkpoints, tmp_path, capsys):
    from segview.core.io import save_labels, save_volume

    case = make_phantom("cardiac", 60)
    save_volume(tmp_path / "scan.nii.gz", case.volume)
    save_labels(tmp_path / "labels.nrrd", case.labels, case.volume, case.classes)
    assert main(["evaluate", *map(str, two_checkpoints), "--image", str(tmp_path / "scan.nii.gz"),
                 "--labels", str(tmp_path / "labels.nrrd"), "--report", str(tmp_path / "report"),
                 "--tolerance-mm", "1.5"]) == 0
    out = capsys.readouterr().out
    # --tolerance-mm was ignored here: the report's surface Dice stayed at 2 mm
    assert "HD95 and surface Dice (at 1.5 mm)" in (tmp_path / "report" / "comparison.md").read_text()
    assert f"reviewed on {case.labels.shape[0]} of {case.labels.shape[0]} slices" in out
    names = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert names == ["classes.csv", "comparison.md", "dice_along_slices.png", "slices.csv"]
    predicted = Predictor.from_checkpoint(two_checkpoints[1]).predict_volume(case.volume)
    rows = list(csv.DictReader(open(tmp_path / "report" / "classes.csv")))
    myocardium = next(r for r in rows if r["class"] == "myocardium")
    expected = medpy_binary.dc(predicted == 2, case.labels == 2)
    assert float(myocardium["dice_b"]) == pytest.approx(expected, abs=1e-6)
    assert main(["evaluate", str(two_checkpoints[0]), "--image", str(tmp_path / "scan.nii.gz")]) == 2


def test_two_runs_with_the_same_loss_and_file_name_get_distinct_rows(two_checkpoints, tmp_path, capsys):
    import shutil

    for run in ("v1", "v2"):
        (tmp_path / run).mkdir()
        shutil.copy(two_checkpoints[0], tmp_path / run / "best.safetensors")
    assert main(["evaluate", str(tmp_path / "v1" / "best.safetensors"), str(tmp_path / "v2" / "best.safetensors"),
                 "--phantom", "cardiac", "--cases", "2", "--first-seed", "50"]) == 0
    out = capsys.readouterr().out
    assert "| CE [v1/best.safetensors] |" in out and "| CE [v2/best.safetensors] |" in out


def test_one_checkpoint_given_twice_is_compared_with_itself(two_checkpoints, tmp_path, capsys):
    """A tester's `evaluate A A --data` gave an empty comparisons.json without a word."""
    same = str(two_checkpoints[0])
    assert main(["evaluate", same, same, "--phantom", "cardiac", "--cases", "2", "--first-seed", "50",
                 "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| CE [best.safetensors] #1 |" in out and "| CE [best.safetensors] #2 |" in out
    [comparison] = json.loads((tmp_path / "comparisons.json").read_text())
    assert comparison["a"] == comparison["b"] == same and comparison["mean_difference"] == 0


def test_a_report_folder_without_one_image_is_refused(two_checkpoints, tmp_path, capsys):
    """A tester's --report with --data wrote nothing and said nothing."""
    for extra in ([], ["--reviewed-only", "--data", str(tmp_path)]):
        assert main(["evaluate", *map(str, two_checkpoints), "--phantom", "cardiac", "--report",
                     str(tmp_path / "report"), *extra]) == 2
        assert "--report writes the per-slice report of one image" in capsys.readouterr().err
    assert not (tmp_path / "report").exists()


def test_evaluate_on_one_case_writes_strict_json_and_no_spread(two_checkpoints, tmp_path, capsys):
    """n = 1: no std, no interval, no test (a tester found a bare NaN in comparisons.json and
    '± 0.0000' with a degenerate interval)."""
    assert main(["evaluate", *map(str, two_checkpoints), "--phantom", "cardiac", "--cases", "1",
                 "--first-seed", "50", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "± \u2013 over n = 1 case (bootstrap 95 % interval [\u2013, \u2013])" in out
    assert "1 paired case: no test" in out  # one case, said as one (a tester read "1 paired cases")
    comparison = json.loads((tmp_path / "comparisons.json").read_text(),
                            parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))[0]
    assert comparison["cases"] == 1 and comparison["p_value"] is None and comparison["std_difference"] is None


def test_two_checkpoints_of_one_loss_get_their_own_rows_even_for_different_tasks():
    """A tester's cardiac and lung CE checkpoints shared one Table 1 row "CE"."""
    from pathlib import Path
    from types import SimpleNamespace

    from segview.cli import tools

    def checkpoint(classes):
        return SimpleNamespace(meta={"loss": {"name": "ce"}}, classes=list(range(classes)))

    labels = tools._row_labels([(Path("m/cardiac_ce.safetensors"), checkpoint(4)),
                                (Path("m/lung_ce.safetensors"), checkpoint(2)),
                                (Path("m/lung_ce_dice.safetensors"), SimpleNamespace(
                                    meta={"loss": {"name": "ce+dice", "alpha": 1.0}}, classes=[0, 1]))])
    assert labels == ["CE [cardiac_ce.safetensors]", "CE [lung_ce.safetensors]", "CE + Dice (alpha 1)"]
    same = Path("m/cardiac_ce.safetensors")  # one file twice, as a sanity check: two rows all the same
    assert tools._row_labels([(same, checkpoint(4)), (same, checkpoint(4))]) == [
        "CE [cardiac_ce.safetensors] #1", "CE [cardiac_ce.safetensors] #2"]


def test_predict_never_writes_over_an_image_nor_two_images_into_one_file(two_checkpoints, tmp_path, capsys):
    """A tester's predict -o scan.nii.gz replaced the scan with its labels (and a folder
    predicted into itself, every image); neg.mha and neg.nrrd both went to neg.nii.gz."""
    import shutil

    assert main(["phantom", "cardiac", "-o", str(tmp_path / "data"), "--count", "1", "--seed", "63"]) == 0
    image = tmp_path / "data" / "imagesTr" / "cardiac_063_0000.nii.gz"
    scan = tmp_path / "scans" / "cardiac_063.nii.gz"
    scan.parent.mkdir()
    shutil.copy(image, scan)
    before = scan.read_bytes()
    for output in (scan, scan.parent):
        assert main(["predict", str(two_checkpoints[0]), str(scan if output == scan else scan.parent),
                     "-o", str(output)]) == 2
        assert "is an input image" in capsys.readouterr().err and scan.read_bytes() == before
    volume = load_volume(image)
    twins = tmp_path / "twins"
    twins.mkdir()
    for name in ("neg.mha", "neg.nrrd"):
        save_volume(twins / name, volume)
    assert main(["predict", str(two_checkpoints[0]), str(twins), "-o", str(tmp_path / "out")]) == 2
    assert "neg.mha and neg.nrrd would both be written to neg.nii.gz" in capsys.readouterr().err


def test_phantom_never_writes_over_cases_a_folder_holds(tmp_path, capsys):
    """Run again over a dataset, it replaced corrected labels, unsaid."""
    assert main(["phantom", "cardiac", "-o", str(tmp_path / "DS"), "--count", "2", "--seed", "70"]) == 0
    labels = tmp_path / "DS" / "labelsTr" / "cardiac_071.nii.gz"
    corrected = labels.read_bytes()
    assert main(["phantom", "cardiac", "-o", str(tmp_path / "DS"), "--count", "3", "--seed", "70"]) == 2
    assert "already holds cardiac_070, cardiac_071; choose another folder" in capsys.readouterr().err
    assert labels.read_bytes() == corrected and not (tmp_path / "DS" / "labelsTr" / "cardiac_072.nii.gz").exists()
    assert main(["phantom", "cardiac", "-o", str(tmp_path / "DS"), "--count", "1", "--seed", "72"]) == 0  # more cases
    dataset = json.loads((tmp_path / "DS" / "dataset.json").read_text())
    assert dataset["numTraining"] == 3 and dataset["segview"]["first_seed"] == 70  # every case, not the last batch's
    for argv in (["lung", "--seed", "80"], ["cardiac", "--seed", "90", "--format", "dicom"]):
        assert main(["phantom", argv[0], "-o", str(tmp_path / "DS"), *argv[1:]]) == 2
        assert "holds cardiac cases as nifti" in capsys.readouterr().err


def test_predict_chooses_a_series_and_a_bad_image_does_not_stop_a_batch(two_checkpoints, tmp_path, capsys):
    """A folder of two series could only be listed ('choose one', with no way to); one
    unreadable image stopped a batch before the good ones after it."""
    from segview.core.dicom import list_dicom_series, write_dicom_series

    case = make_phantom("cardiac", 64)
    write_dicom_series(case.volume, tmp_path / "study" / "a", series_description="SA")
    write_dicom_series(case.volume, tmp_path / "study" / "b", series_description="SA again")
    assert main(["predict", str(two_checkpoints[0]), str(tmp_path / "study"), "-o", str(tmp_path / "p.nii.gz")]) == 2
    assert "Predict one with --series UID" in capsys.readouterr().err
    uid = list_dicom_series(tmp_path / "study")[0].uid
    assert main(["predict", str(two_checkpoints[0]), str(tmp_path / "study"), "--series", uid,
                 "-o", str(tmp_path / "p.nii.gz")]) == 0
    batch = tmp_path / "batch"
    batch.mkdir()
    save_volume(batch / "a_good.nii.gz", case.volume)
    (batch / "b_bad.nii.gz").write_bytes(b"not an image")
    save_volume(batch / "c_good.nii.gz", case.volume)
    assert main(["predict", str(two_checkpoints[0]), str(batch), "-o", str(tmp_path / "out")]) == 1
    assert "1 of 3 images not predicted: b_bad.nii.gz" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz")) == ["a_good.nii.gz", "c_good.nii.gz"]


def test_predict_writes_the_labels_of_a_2d_nifti_where_its_slice_lies(tmp_path):
    """A file whose header says dim[0] = 2 lost its slice's z position (20 mm) and the tilt
    of its plane: the labels predict wrote lay at z = 0 (and the tilted plane was resampled
    onto another grid)."""
    import nibabel

    case = make_phantom("cardiac", 3)
    a, b = np.radians(30), np.radians(20)  # turned about z, then tilted about x
    rotation = (np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
                @ np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]))
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([*case.volume.spacing[:2], 8.0])
    affine[:3, 3] = (-50.0, -60.0, 20.0)
    plane = case.volume.array[case.volume.shape[0] // 2].T  # nibabel's (i, j)
    nibabel.save(nibabel.Nifti1Image(plane, affine), tmp_path / "slice.nii.gz")
    assert nibabel.load(tmp_path / "slice.nii.gz").header["dim"][0] == 2

    output = tmp_path / "labels.nii.gz"
    assert main(["predict", str(CARDIAC_CE), str(tmp_path / "slice.nii.gz"), "-o", str(output)]) == 0
    written = nibabel.load(output)
    assert written.shape == (*plane.shape, 1)
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    assert set(np.unique(np.asarray(written.dataobj))) > {0}  # the model found the heart


def test_evaluate_writes_which_cases_it_left_out(tmp_path, monkeypatch, capsys):
    """table1.md and comparisons.json gave n without naming the cases not evaluated (a flagged
    case: only a stderr line at the time) or not paired (no Dice for one model)."""
    from segview.core.review_state import update_sidecar
    from segview.core.volume import Volume
    from segview.core.io import save_labels
    from tests.session.conftest import CLASSES, SPACING, make_checkpoint, make_dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    make_dataset(tmp_path / "ds", 4)
    update_sidecar(tmp_path / "ds" / "labelsTr" / "case_001.nii.gz", case={"status": "flagged", "note": "motion"})
    volume = load_volume(tmp_path / "ds" / "imagesTr" / "case_003_0000.nii.gz")
    save_labels(tmp_path / "ds" / "labelsTr" / "case_003.nii.gz", np.zeros(volume.shape, np.uint8),
                Volume(volume.array, SPACING), CLASSES)
    silent = make_checkpoint(tmp_path / "silent.safetensors", 1)  # predicts nothing: no Dice on case_003
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    with safe_open(str(silent), "pt") as handle:
        metadata = handle.metadata()
    weights = load_file(str(silent))
    bias = next(key for key in weights if key.endswith("head.bias"))
    weights[bias] = weights[bias].new_tensor([50.0, -50.0, -50.0])
    weights[bias.replace("bias", "weight")].zero_()
    save_file(weights, str(silent), metadata)
    other = make_checkpoint(tmp_path / "other.safetensors", 2)
    assert main(["evaluate", str(silent), str(other), "--data", str(tmp_path / "ds"), "-o", str(tmp_path / "out"),
                 "--device", "cpu"]) == 0
    table = (tmp_path / "out" / "table1.md").read_text()
    assert "Not evaluated in ds (1 case): case_001: flagged in the worklist: motion" in table
    assert "Left out of the pairs (no score for one of the two models, or scored by one only): case_003" in table
    comparison = json.loads((tmp_path / "out" / "comparisons.json").read_text())[0]
    assert comparison["cases"] == 2 and comparison["left_out"] == ["case_003"]
    assert comparison["skipped"] == ["case_001: flagged in the worklist: motion"]
    assert "case_003" in capsys.readouterr().out


@pytest.mark.parametrize("command", [
    ["train", "--phantom", "cardiac", "--epochs", "1"],
    ["evaluate", str(CARDIAC_CE), "--phantom", "cardiac"],
    ["predict", str(CARDIAC_CE), "scan.nii.gz"],
])
@pytest.mark.parametrize("device, message", [
    ("gpu", "unknown device 'gpu': give cpu, cuda, cuda:N or mps"),
    ("cuda", "device 'cuda' is not on this machine"),
    ("cuda:3", "device 'cuda:3' is not on this machine"),
    ("mps", "device 'mps' is not on this machine (torch"),
])
def test_a_device_not_on_this_machine_is_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, command, device,
                                                                   message):
    """A tester's --device cuda on a CPU-only torch, and --device gpu, ended in torch's traceback."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 0)
    monkeypatch.setattr("torch.backends.mps.is_available", lambda: False)
    assert main([*command, "-o", str(tmp_path / "out"), "--device", device]) == 2
    said = capsys.readouterr().err
    assert message in said and ("no Apple GPU (MPS)" in said) == (device == "mps")  # not in CUDA's words
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_model_naming_the_classes_otherwise_only_where_the_dataset_names_them(tmp_path,
                                                                                                  capsys):
    """A tester's checkpoint with the dataset's classes 1 and 2 named the other way round was
    scored on the whole cases without a word, where --reviewed-only refuses it; a dataset whose
    classes only the fallback names name still takes it."""
    from tests.session.conftest import make_dataset, swapped_checkpoint

    make_dataset(tmp_path / "ds", 2)
    swapped = swapped_checkpoint(tmp_path / "swapped.safetensors")
    arguments = ["evaluate", str(swapped), "--data", str(tmp_path / "ds"), "--device", "cpu"]
    assert main(arguments) == 2
    assert ("segview: swapped.safetensors on ds: its class 1 is \u201clesion\u201d where the dataset's classes "
            "have \u201corgan\u201d: it was trained for other classes; its voxels would be scored under another "
            "class.") in capsys.readouterr().err
    (tmp_path / "ds" / "dataset.json").write_text("{}")  # the label files' class files name them still
    assert main(arguments) == 2
    assert "its class 1 is \u201clesion\u201d" in capsys.readouterr().err
    for class_file in (tmp_path / "ds" / "labelsTr").glob("*.classes.json"):
        class_file.unlink()  # nothing names the classes: "label 1", "label 2"
    assert main(arguments) == 0
    assert "| CE | ds | label 1 |" in capsys.readouterr().out
