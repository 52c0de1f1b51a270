"""The 3D view (View > 3D view, key 4). Offscreen (the suite's platform) Qt has no OpenGL:
there the view says so and the slice views keep working. The OpenGL path runs in a
subprocess under xvfb-run (Mesa's software OpenGL), where xvfb is installed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segview.core.classes import MODEL_COLORS
from segview.gui.surface_view import opengl_problem

from .helpers import drag

REAL_GL = os.environ.get("SEGVIEW_REAL_GL") == "1"  # set by the xvfb test for the test it runs


def test_without_opengl_the_3d_view_says_so_and_the_slice_views_keep_working(demo, qtbot):
    if opengl_problem() is None:
        pytest.skip("this display has OpenGL (the xvfb test covers it)")
    window = demo
    window.surfaces.action.trigger()
    qtbot.waitUntil(lambda: window.surfaces.view.message.isVisible())
    assert "No 3D view" in window.surfaces.view.message.text()
    assert "OpenGL" in window.surfaces.view.message.text()

    window.tools.set_tool("brush")
    view = window.workspace.viewer.active
    before = window.session.labels.array.copy()
    drag(view, [(20, 20), (20, 30)])
    assert (window.session.labels.array != before).any()  # the slice view still edits
    view.set_slice(view.index - 1)
    assert window.surfaces.shown_surfaces() == {}


def test_without_pyopengl_the_3d_view_names_the_package(demo, qtbot, monkeypatch):
    monkeypatch.setitem(sys.modules, "OpenGL.GL", None)  # import OpenGL.GL raises ImportError
    window = demo
    window.surfaces.action.trigger()
    qtbot.waitUntil(lambda: window.surfaces.view.message.isVisible())
    assert "PyOpenGL" in window.surfaces.view.message.text()


@pytest.mark.slow
def test_the_opengl_path_under_xvfb():
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run is not installed (apt-get install xvfb): the OpenGL path is not tried")
    env = dict(os.environ, SEGVIEW_REAL_GL="1", QT_QPA_PLATFORM="xcb")
    run = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m", "pytest", "-q",
                          "-p", "no:cacheprovider", f"{__file__}::test_real_opengl_surfaces_of_each_class_and_an_edit"],
                         env=env, capture_output=True, text=True, timeout=280, cwd=Path(__file__).parents[2])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert "1 passed" in run.stdout


@pytest.mark.skipif(not REAL_GL, reason="runs under xvfb-run, from test_the_opengl_path_under_xvfb")
def test_real_opengl_surfaces_of_each_class_and_an_edit(demo, qtbot):
    window = demo
    controller = window.surfaces
    built: list[tuple[str, int]] = []
    controller.built.connect(lambda source, value: built.append((source, value)))
    with qtbot.waitSignal(controller.updated, timeout=60000):
        controller.action.trigger()
    assert controller.view.gl is not None and not controller.view.message.isVisible()
    assert sorted(built) == [("labels", 1), ("labels", 2), ("labels", 3)]
    volume = window.session.volume
    corners = volume.index_to_physical(np.array([[0, 0, 0], np.array(volume.shape) - 1]))
    for surface in controller.shown_surfaces().values():  # in the patient's mm, inside the image
        assert (surface.vertices.min(axis=0) >= corners.min(axis=0) - 10).all()
        assert (surface.vertices.max(axis=0) <= corners.max(axis=0) + 10).all()
    qtbot.waitUntil(lambda: _drawn_pixels(controller.view.gl) > 500)

    # An edit of class 2 far from every class: that surface alone is built again, and reaches it.
    labels = window.session.labels
    z = volume.shape[0] // 2
    assert not labels.array[z, 10:31, 10:31].any()
    built.clear()
    old = controller.shown_surfaces()
    with qtbot.waitSignal(controller.updated, timeout=60000):
        with labels.step():
            labels.paint(z, [(20.0, 20.0)], 6.0, 2)
    assert built == [("labels", 2)]
    new = controller.shown_surfaces()
    assert new[("labels", 2)] is not old[("labels", 2)]
    assert new[("labels", 1)] is old[("labels", 1)] and new[("labels", 3)] is old[("labels", 3)]
    box = new[("labels", 2)].box
    assert box[1].start <= 20 and box[2].start <= 20

    # Model A's mask, switched on: its classes in model A's colour.
    from segview.ml.inference import Predictor
    from segview.resources import shipped_models

    checkpoint = shipped_models()["cardiac_ce"]
    window.session.add_model("A", checkpoint, Predictor.from_checkpoint(checkpoint, "cpu"))
    window.session.set_prediction("A", (labels.array == 3).astype(np.uint8) * 3)
    window.refresh_session()
    built.clear()
    with qtbot.waitSignal(controller.updated, timeout=60000):
        controller.view.switches["A"].setChecked(True)
    assert built == [("A", 3)]
    item = controller.view.meshes[("A", 3)]
    assert tuple(round(c * 255) for c in item.opts["color"][:3]) == MODEL_COLORS["A"]
    # The line under the view counts what is shown: a tester saw model A's switched off still counted.
    both = controller.view.status.text()
    controller.view.switches["A"].setChecked(False)
    labels_only = sum(len(s.faces) for (source, _), s in controller.surfaces.items() if source == "labels")
    assert controller.view.status.text() == f"3 surfaces, {labels_only:,} triangles" != both


def _drawn_pixels(gl_view) -> int:
    """Pixels of the 3D view that are not its black background."""
    image = gl_view.grabFramebuffer()
    pixels = np.array([[image.pixelColor(x, y).value() for x in range(0, image.width(), 4)]
                       for y in range(0, image.height(), 4)])
    return int((pixels > 10).sum())


def test_reset_view_fits_the_surfaces_in_a_short_or_a_tall_panel():
    """A short, wide 3D panel cut off the top of the surfaces: pyqtgraph's field of view is
    the horizontal one, so the distance follows the narrower of the two directions."""
    import math

    from segview.gui.surface_view import fitting_distance

    for width, height in ((400, 100), (100, 400), (300, 300)):
        distance = fitting_distance(10.0, 60, width, height)
        seen = math.tan(math.asin(10.0 / distance))  # the sphere's half extent on a plane 1 away
        horizontal = math.tan(math.radians(30))
        vertical = horizontal * height / width
        assert seen == pytest.approx(min(horizontal, vertical)) and seen <= max(horizontal, vertical)
    assert fitting_distance(10.0, 60, 400, 100) > 3 * fitting_distance(10.0, 60, 100, 400)
