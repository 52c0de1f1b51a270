import json
import subprocess
import sys

import numpy as np

from segview.cli import main
from segview.core.io import load_classes, load_labels, load_volume
from segview.core.phantoms import lung_phantom


def test_phantom_writes_an_nnunet_style_folder(tmp_path):
    assert main(["phantom", "cardiac", "-o", str(tmp_path), "--count", "2", "--seed", "3"]) == 0
    dataset = json.loads((tmp_path / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "right ventricle": 1, "myocardium": 2, "left ventricle": 3}
    assert dataset["numTraining"] == 2 and dataset["file_ending"] == ".nii.gz"
    for seed in (3, 4):
        image = load_volume(tmp_path / "imagesTr" / f"cardiac_{seed:03d}_0000.nii.gz")
        labels = load_labels(tmp_path / "labelsTr" / f"cardiac_{seed:03d}.nii.gz", image)
        assert set(np.unique(labels)) == {0, 1, 2, 3}
        assert load_classes(tmp_path / "labelsTr" / f"cardiac_{seed:03d}.nii.gz")[3].name == "left ventricle"


def test_phantom_as_dicom_matches_the_phantom(tmp_path):
    assert main(["phantom", "lung", "-o", str(tmp_path), "--format", "dicom", "--seed", "7"]) == 0
    image = load_volume(tmp_path / "imagesTr" / "lung_007")
    expected = lung_phantom(7)
    np.testing.assert_array_equal(image.array, expected.volume.array)
    np.testing.assert_array_equal(load_labels(tmp_path / "labelsTr" / "lung_007.nii.gz", image), expected.labels)


def test_bad_arguments_end_in_one_line_without_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, "-m", "segview.cli", "phantom", "lung", "-o", str(blocker / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("segview: cannot create")


def test_phantom_says_where_it_wrote_each_case(tmp_path, capsys):
    """A tester's `segview phantom ... -o DIR` printed nothing, not even the folder."""
    assert main(["phantom", "lung", "-o", str(tmp_path), "--count", "2", "--seed", "5"]) == 0
    images, labels = tmp_path / "imagesTr", tmp_path / "labelsTr"
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {images / 'lung_005_0000.nii.gz'} and {labels / 'lung_005.nii.gz'}",
        f"wrote {images / 'lung_006_0000.nii.gz'} and {labels / 'lung_006.nii.gz'}",
        f"wrote {tmp_path / 'dataset.json'} (2 cases in {tmp_path})"]
    assert main(["phantom", "lung", "-o", str(tmp_path / "dicom"), "--format", "dicom"]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0] == (f"wrote {tmp_path / 'dicom' / 'imagesTr' / 'lung_000'} and "
                       f"{tmp_path / 'dicom' / 'labelsTr' / 'lung_000.nii.gz'}")
    assert said[-1].endswith(f"(1 case in {tmp_path / 'dicom'})")
