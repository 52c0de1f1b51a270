"""`segview import | export`, ONNX and imported checkpoints in `predict`, the modality
warning, refused pickles, and `predict` sharded over torchrun ranks; tiny networks on CPU."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet as MonaiReferenceUNet

from segview.cli import main
from segview.core.io import load_labels, load_volume, save_volume
from segview.core.volume import Volume
from segview.ml.inference import Predictor

CLASSES = "background,organ,lesion"


def _scan(path, modality: str, seed: int):
    """A small scan: CT in HU (air at -1000) or MR in arbitrary units, a bright disc inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :48]
    disc = (yy - 24) ** 2 + (xx - 20) ** 2 < 100
    low, high = (-1000, 60) if modality == "CT" else (50, 900)
    array = np.where(disc, high, low) + rng.normal(0, 20, (3, 48, 48))
    return save_volume(path, Volume(array.astype(np.int16), (0.8, 0.8, 2.0)))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A MONAI UNet's state dict imported as an MR checkpoint, and a folder of three MR scans."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    source = MonaiReferenceUNet(2, 1, 3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1).eval()
    torch.save(source.state_dict(), folder / "unet.pth")
    checkpoint = folder / "unet.safetensors"
    assert main(["import", str(folder / "unet.pth"), "--arch", "monai-unet", "--classes", CLASSES,
                 "--modality", "mr", "--input-size", "64", "-o", str(checkpoint)]) == 0
    scans = folder / "scans"
    scans.mkdir()
    for n in range(3):
        _scan(scans / f"case{n}.nii.gz", "MR", n)
    return checkpoint, scans


def test_import_prints_the_checkpoint_and_what_it_assumed(tmp_path, capsys):
    torch.save(MonaiReferenceUNet(2, 1, 3, channels=(4, 8), strides=(2,)).state_dict(), tmp_path / "w.pth")
    assert main(["import", str(tmp_path / "w.pth"), "--arch", "monai-unet", "--classes", CLASSES,
                 "--modality", "CT", "--ct-window", "-100", "200", "--input-size", "32",
                 "--arch-args", '{"strides": [2]}', "-o", str(tmp_path / "m.safetensors")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(str(tmp_path / "m.safetensors")) and '"channels": [4, 8]' in out
    assert "strides" not in err  # given, so not assumed
    meta = Predictor.from_checkpoint(tmp_path / "m.safetensors", runtime="torch").meta
    assert meta["preprocessing"]["normalization"] == {"method": "ct-window", "low": -100.0, "high": 200.0}


def test_predict_with_the_imported_checkpoint_and_its_onnx_export(imported, tmp_path, capsys):
    checkpoint, scans = imported
    scan = scans / "case0.nii.gz"
    assert main(["predict", str(checkpoint), str(scan), "-o", str(tmp_path / "torch.nii.gz"),
                 "--device", "cpu"]) == 0
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "model.onnx")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / "model.onnx")
    assert main(["predict", str(tmp_path / "model.onnx"), str(scan), "-o", str(tmp_path / "onnx.nii.gz")]) == 0
    volume = load_volume(scan)
    from_checkpoint = load_labels(tmp_path / "torch.nii.gz", volume)
    from_onnx = load_labels(tmp_path / "onnx.nii.gz", volume)
    assert from_checkpoint.shape == volume.shape
    expected = Predictor.from_checkpoint(checkpoint, "cpu", runtime="torch").predict_volume(volume)
    assert (from_checkpoint == expected).mean() > 0.999 and (from_onnx == expected).mean() > 0.999


def test_a_checkpoint_of_another_modality_warns_in_one_line(imported, tmp_path, capsys):
    checkpoint, _ = imported
    ct = _scan(tmp_path / "ct.nii.gz", "CT", 9)
    assert main(["predict", str(checkpoint), str(ct), "-o", str(tmp_path / "labels.nii.gz")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["segview: warning: unet.safetensors: this checkpoint was trained on MR images but "
                        "the image looks like CT (guessed from its intensities); its predictions may be "
                        "meaningless"]
    assert (tmp_path / "labels.nii.gz").exists()  # a warning, not a refusal


class _CreatesAFile:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def test_malicious_pickles_are_refused_by_import_and_predict(imported, tmp_path, capsys):
    _, scans = imported
    target = tmp_path / "pwned"
    torch.save({"head.weight": torch.zeros(1), "x": _CreatesAFile(target)}, tmp_path / "evil.pth")
    assert main(["import", str(tmp_path / "evil.pth"), "--arch", "segview-unet", "--classes", CLASSES,
                 "--modality", "CT", "-o", str(tmp_path / "out.safetensors")]) == 2
    assert main(["predict", str(tmp_path / "evil.pth"), str(scans / "case0.nii.gz"),
                 "-o", str(tmp_path / "labels.nii.gz")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "state_dict()" in lines[0] and "pickle" in lines[1]
    assert not target.exists() and not (tmp_path / "out.safetensors").exists()


def test_a_plain_pickle_is_refused_in_one_line_without_torchs_warning(imported, tmp_path, capsys):
    """A helper's plain pickle renamed .pth: torch warned of its protocol before segview's refusal."""
    import pickle
    import warnings

    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"head.weight": [0.0]}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["import", str(path), "--arch", "segview-unet", "--classes", CLASSES, "--modality", "CT",
                     "-o", str(tmp_path / "out.safetensors")]) == 2
    assert not [w for w in caught if "pickle protocol" in str(w.message)]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plain.pth" in err[0]


@pytest.mark.parametrize("options, message", [
    (["--classes", "background,organ"], "3 outputs but --classes names 2"),
    (["--arch-args", "{strides: 2}"], "--arch-args is not valid JSON"),
    (["--arch-args", "[2, 2]"], "--arch-args must be a JSON object"),
    (["--modality", "MR", "--ct-window", "0", "100"], "--ct-window applies to CT only"),
    (["--arch", "milesial-unet"], "they look like a monai-unet state dict: pass --arch monai-unet"),
    # a stride of 1 gives MONAI's residual blocks 1x1 shortcuts: the weights show 2
    (["--arch-args", '{"strides": [2, 1]}'], "with strides [2, 2], not [2, 1] as --arch-args says; "
                                             "leave strides out of --arch-args"),
])
def test_import_mistakes_end_in_one_line(imported, tmp_path, capsys, options, message):
    checkpoint, _ = imported
    weights = checkpoint.parent / "unet.pth"
    # argparse keeps the last value of an option: ``options`` override the defaults before them
    argv = ["import", str(weights), "--arch", "monai-unet", "--classes", CLASSES, "--modality", "CT",
            *options, "-o", str(tmp_path / "out.safetensors")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_torchrun_shares_the_cases_out_over_the_ranks(imported, tmp_path):
    checkpoint, scans = imported
    output = tmp_path / "labels"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "segview", "predict", str(checkpoint), str(scans), "-o", str(output)],
                         capture_output=True, text=True, timeout=300, env=environment)
    assert run.returncode == 0, run.stderr[-2000:]
    written = sorted(line for line in run.stdout.splitlines() if line.endswith(".nii.gz"))
    # each case once: ranks 0 and 1 took cases 0, 2 and 1 (not every rank all three)
    assert written == [str(output / f"case{n}.nii.gz") for n in range(3)]
    assert sorted(p.name for p in output.iterdir() if p.name.endswith(".nii.gz")) == [
        f"case{n}.nii.gz" for n in range(3)]


def test_evaluate_warns_once_per_checkpoint_and_modality(tmp_path, capsys):
    torch.manual_seed(0)
    source = MonaiReferenceUNet(2, 1, 4, channels=(4, 8), strides=(2,)).eval()
    torch.save(source.state_dict(), tmp_path / "ct.pth")
    # the phantom's class names: a model naming a class otherwise is refused (``naming_conflict``)
    assert main(["import", str(tmp_path / "ct.pth"), "--arch", "monai-unet", "--classes",
                 "background,right ventricle,myocardium,left ventricle", "--modality", "CT", "--input-size", "32",
                 "-o", str(tmp_path / "ct.safetensors")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "ct.safetensors"), "--phantom", "cardiac", "--cases", "2"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["segview: warning: ct.safetensors: this checkpoint was trained on CT images but "
                        "the image is MR; its predictions may be meaningless"]


def test_the_windows_session_loads_onnx_and_refuses_malicious_pickles(imported, tmp_path):
    """ReviewSession.load_model is what the window calls (in a worker) for A and B."""
    from segview.ml.checkpoint import CheckpointError
    from segview.session import ReviewSession

    checkpoint, _ = imported
    assert main(["export", str(checkpoint), "-o", str(tmp_path / "model.onnx")]) == 0
    session = ReviewSession.open(_scan(tmp_path / "ct.nii.gz", "CT", 3))
    try:
        model = session.load_model("A", tmp_path / "model.onnx")
        assert model.predictor.runtime == "onnxruntime"
        assert model.warnings and "trained on MR images" in model.warnings[0]
        target = tmp_path / "pwned"
        torch.save({"x": _CreatesAFile(target)}, tmp_path / "evil.pth")
        with pytest.raises(CheckpointError, match="pickled"):
            session.load_model("B", tmp_path / "evil.pth")
        assert not target.exists() and set(session.models) == {"A"}
    finally:
        session.close(discard=True)
