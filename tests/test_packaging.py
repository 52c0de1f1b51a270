"""A non-editable install carries the shipped checkpoints: they are package data of the
wheel, not files beside the source tree."""
import subprocess
import sys
import zipfile
from pathlib import Path

from segview.resources import shipped_models

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_shipped_checkpoint(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("segview-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert shipped_models(), "the source tree ships checkpoints"
    for name in shipped_models():
        assert f"segview/resources/models/{name}.safetensors" in names
