"""A MONOCHROME1 image (its lowest value meant white: CR, DX, some CT and MR) is shown with
its grey scale inverted, as radiology viewers show it; its values stay as stored."""
import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from segview.core.dicom import write_dicom_series
from segview.core.io import load_volume
from segview.core.volume import Volume
from segview.gui.slice_view import SliceView

from .helpers import display_pixel, drag_points, widget_point


@pytest.fixture
def ramp() -> Volume:
    values = np.tile(np.linspace(-1000, 1000, 32).astype(np.int16), (3, 32, 1))  # dark left, bright right
    return Volume(values, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), modality="CT")


def on_screen(view, voxel) -> tuple[int, int, int]:
    point = widget_point(view, *display_pixel(view, voxel)).toPoint()
    color = view.viewport().grab().toImage().pixelColor(point)
    return color.red(), color.green(), color.blue()


def shown(qtbot, tmp_path, ramp, photometric) -> SliceView:
    """A view of ``ramp`` written as a DICOM series of ``photometric`` and read back."""
    for path in write_dicom_series(ramp, tmp_path):
        dataset = pydicom.dcmread(path)
        dataset.PhotometricInterpretation = photometric
        dataset.save_as(path)
    view = SliceView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.waitExposed(view)
    view.set_volume(load_volume(tmp_path))
    view.set_window(0, 2000)
    QApplication.processEvents()
    return view


@pytest.mark.parametrize("photometric, lowest, highest", [("MONOCHROME1", 255, 0), ("MONOCHROME2", 0, 255)])
def test_the_lowest_value_is_white_in_monochrome1_black_in_monochrome2(qtbot, tmp_path, ramp, photometric,
                                                                       lowest, highest):
    view = shown(qtbot, tmp_path, ramp, photometric)
    np.testing.assert_array_equal(view.volume.array, ramp.array)  # values as stored, not inverted
    assert on_screen(view, (1, 26, 0)) == (lowest,) * 3  # off the middle: clear of the edge letters
    assert on_screen(view, (1, 26, 31)) == (highest,) * 3


def mean_grey(view) -> float:
    return float(np.mean([on_screen(view, (1, 26, x))[0] for x in range(32)]))


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_the_same_right_drag_changes_the_screen_the_same_way_on_both(qtbot, tmp_path, ramp, photometric):
    view = shown(qtbot, tmp_path, ramp, photometric)
    before = mean_grey(view)
    start = widget_point(view, 16, 16)
    drag_points(view, [start, start + QPointF(0, 100)], button=Qt.RightButton)  # 100 pixels down
    assert mean_grey(view) > before + 20  # brighter on screen, whichever value is white
    assert view.window[1] == 2000  # the level alone moved
    level = view.window[0]
    drag_points(view, [start, start + QPointF(100, 0)], button=Qt.RightButton)  # 100 pixels right
    assert view.window == (level, pytest.approx(2000 + 100 * 2000 / 256))  # wider: less contrast on both
