"""The window wires core functions: open, scroll, change view and window, errors."""
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from segview.core.io import save_labels, save_volume
from segview.core.phantoms import lung_phantom
from segview.gui.main_window import MainWindow


@pytest.fixture
def dialogs(monkeypatch):
    shown = []
    for kind in ("critical", "warning"):
        monkeypatch.setattr(QMessageBox, kind, lambda parent, title, text, kind=kind: shown.append((kind, text)))
    return shown


@pytest.fixture
def window(qtbot, dialogs):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def test_demo_opens_with_labels_and_scrolls(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_demo("cardiac")
    view = window.view
    assert window.volume.modality == "MR" and window.labels is not None
    n = view.num_slices()
    assert window.slice_number.text() == f"{n // 2 + 1} / {n}"
    qtbot.keyClick(view, Qt.Key_Up)
    assert view.index == n // 2 + 1 and window.slider.value() == view.index
    window.slider.setValue(0)
    assert view.index == 0 and window.slice_number.text() == f"1 / {n}"
    shown = view.image_item.image
    assert shown.dtype == np.uint8 and shown.shape == window.volume.slice("axial", 0).shape
    window.view_choice.setCurrentIndex(2)  # sagittal
    assert view.view == "sagittal" and window.slider.maximum() == view.num_slices() - 1


def test_a_ct_opens_in_a_ct_window_and_presets_apply(qtbot, window, tmp_path):
    case = lung_phantom(1)
    save_volume(tmp_path / "ct.nii.gz", case.volume)
    save_labels(tmp_path / "labels.nii.gz", case.labels, case.volume, case.classes)
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_image(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    assert window.view.window == (-600.0, 1500.0)  # the lung window first for CT
    bone = next(i for i, p in enumerate(window.presets) if p[0] == "Bone")
    window.window_choice.setCurrentIndex(bone)
    assert window.view.window == (400.0, 1800.0)
    assert [c.name for c in window.classes] == ["background", "infection"]


def test_a_corrupt_file_shows_the_error_and_keeps_the_open_volume(qtbot, window, dialogs, tmp_path):
    with qtbot.waitSignal(window.loaded, timeout=20000):
        window.open_demo("cardiac")
    before = window.volume
    (tmp_path / "broken.dcm").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with qtbot.waitSignal(window.load_failed, timeout=20000):
        window.open_image(tmp_path / "broken.dcm")
    assert dialogs and dialogs[-1][0] == "critical" and "neither DICOM" in dialogs[-1][1]
    assert window.volume is before


def test_screenshot_renders_image_and_overlay(tmp_path):
    import subprocess
    import sys

    png = tmp_path / "shot.png"
    subprocess.run([sys.executable, "-m", "segview.cli", "--demo", "--screenshot", str(png)], check=True,
                   timeout=120)
    from PySide6.QtGui import QImage

    image = QImage(str(png))
    assert image.width() > 600 and image.height() > 400
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
    assert len(colours) > 50  # greyscale image plus coloured labels, not a blank window
