"""Region statistics in the measures dock on the lung CT demo: the table's figures for the
slice on screen and for the volume against numpy, recomputed after an edit; an empty class
shows dashes, and nothing is computed while the dock is behind the metrics tab."""
import numpy as np
import pytest

from segview.core.report import DASH

from .helpers import display_pixel, drag


@pytest.fixture
def lung(qtbot, window):
    with qtbot.waitSignal(window.loaded, timeout=30000):
        window.open_demo("lung")
    return window


def statistics(window):
    return window.statistics_controller


def settled(window):
    controller = statistics(window)
    return controller.shown_for is not None and controller.shown_for == controller.state()


def expected(image: np.ndarray, mask: np.ndarray) -> dict:
    values = image[mask].astype(float)
    return {"voxels": len(values), "mean": values.mean(), "std": values.std(ddof=1), "median": np.median(values),
            "min": values.min(), "max": values.max()}


def test_the_infection_over_the_slice_and_the_volume_and_after_an_edit(qtbot, lung):
    window, session = lung, lung.session
    infection = next(c.value for c in session.classes if c.name == "infection")
    image, labels = session.volume.array, session.labels.array
    z = int(np.argmax((labels == infection).sum(axis=(1, 2))))  # the slice with most infection
    window.workspace.go_to_slice(z)
    qtbot.wait(2 * 400)
    assert statistics(window).shown_for is None  # behind the metrics tab: nothing computed
    with qtbot.waitSignal(window.measures_controller.dock.visibilityChanged, timeout=5000):
        window.measures_controller.dock.raise_()
    qtbot.waitUntil(lambda: settled(window), timeout=20000)
    row = next(r for r in statistics(window).rows if (r.source, r.value) == ("labels", infection))
    reference = expected(image[z], labels[z] == infection)
    for field, value in reference.items():
        assert getattr(row.statistics, field) == pytest.approx(value), field
    table = statistics(window).table
    n = statistics(window).rows.index(row)
    assert table.item(n, 2).text() == f"{reference['mean']:.1f}"
    assert "HU" in statistics(window).status.text()

    statistics(window).scope.setCurrentIndex(1)  # the volume
    qtbot.waitUntil(lambda: settled(window) and statistics(window).shown_for[2] is None, timeout=20000)
    row = next(r for r in statistics(window).rows if (r.source, r.value) == ("labels", infection))
    reference = expected(image, labels == infection)
    assert row.statistics.voxels == reference["voxels"]
    assert row.statistics.volume_ml == pytest.approx(reference["voxels"] * np.prod(session.volume.spacing) / 1000)
    assert row.statistics.mean == pytest.approx(reference["mean"])

    window.tools.set_tool("brush")
    view = window.workspace.viewer.plane_view()
    drag(view, [display_pixel(view, (z, 20, 20))])  # a brush dab of the infection, far from the lungs
    qtbot.waitUntil(lambda: settled(window), timeout=20000)
    row = next(r for r in statistics(window).rows if (r.source, r.value) == ("labels", infection))
    assert row.statistics.voxels == int((session.labels.array == infection).sum()) > reference["voxels"]


def test_an_empty_class_shows_dashes(qtbot, lung):
    window, session = lung, lung.session
    session.labels.copy_from(np.zeros_like(session.labels.array))
    with qtbot.waitSignal(window.measures_controller.dock.visibilityChanged, timeout=5000):
        window.measures_controller.dock.raise_()
    qtbot.waitUntil(lambda: settled(window), timeout=20000)
    table = statistics(window).table
    assert table.item(0, 0).text() == "0"
    assert [table.item(0, c).text() for c in range(2, 7)] == [DASH] * 5
