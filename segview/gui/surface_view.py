"""The 3D view: the labels' classes and, switchable, model A's and B's masks as surfaces,
drawn with pyqtgraph's OpenGL items in the patient's coordinates (LPS millimetres: superior
up, seen from the front, the patient's left on the right), in a dock (View > 3D view, key
4). Left drag rotates, the wheel zooms, middle (or Ctrl +) drag pans.

Classes are drawn in their 2D overlay colours, a model's masks in its outline colour,
half transparent. The surfaces are built in the thread pool (``segview.core.surfaces``),
only while the dock shows; after an edit only the classes it changed are built again, a
burst of edits (a brush drag) once. Without OpenGL (PyOpenGL missing, no context on this
display) the dock says so and the 2D views work as before.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QVector3D
from PySide6.QtWidgets import (QCheckBox, QDockWidget, QHBoxLayout, QLabel, QMainWindow, QMenu, QPushButton,
                               QVBoxLayout, QWidget)

from ..core.classes import MODEL_COLORS, default_color, merged_classes
from ..core.labels import Edit
from ..core.report import counted
from ..core.surfaces import StaleClasses, Surface, build_surfaces
from ..core.volume import Volume
from .host import VIEW_MENU
from .workers import GeneratorWorker

if TYPE_CHECKING:
    from ..session import ReviewSession
    from .host import MeasuresHost

SOURCES = {"labels": "Labels", "A": "Model A", "B": "Model B"}
#: Edits closer together than this are built as one (a brush drag: once, when it pauses).
EDIT_DELAY_MS = 100
#: Streamed predictions are built again at most this often.
PREDICTION_DELAY_MS = 1000
MODEL_ALPHA = 0.5


def opengl_problem() -> str | None:
    """Why OpenGL cannot draw here (PyOpenGL missing, no context on this display); None when it can."""
    try:
        import OpenGL.GL  # noqa: F401
        import pyqtgraph.opengl  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or a library PyOpenGL cannot load
        return f"PyOpenGL cannot be loaded ({exc}); install it with: pip install PyOpenGL"
    from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

    context = QOpenGLContext()
    surface = QOffscreenSurface()
    if context.create():
        surface.setFormat(context.format())
        surface.create()
        if context.makeCurrent(surface):
            context.doneCurrent()
            return None
    return f"no OpenGL context can be made on this display (Qt platform {QGuiApplication.platformName()!r})"


def fitting_distance(radius: float, fov_degrees: float, width: int, height: int) -> float:
    """How far a camera must be for a sphere of ``radius`` to fill no more than a view of
    ``width`` x ``height`` pixels: pyqtgraph's ``fov`` is the horizontal field of view, the
    vertical one is narrower in a wide view (and the other way round)."""
    horizontal = math.tan(math.radians(fov_degrees) / 2)
    narrowest = min(horizontal, horizontal * max(height, 1) / max(width, 1))
    return radius / math.sin(math.atan(narrowest))


class SurfaceView(QWidget):
    """The dock's widget: the sources to show, and the OpenGL view (made when first shown)
    or the reason there is none."""

    source_toggled = Signal(str, bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.switches = {name: QCheckBox(text) for name, text in SOURCES.items()}
        self.switches["labels"].setChecked(True)
        self.reset_button = QPushButton("Reset view")
        self.status = QLabel()
        self.message = QLabel()  # shown instead of the view when OpenGL cannot draw
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.hide()
        row = QHBoxLayout()
        for name, switch in self.switches.items():
            switch.toggled.connect(lambda on, name=name: self.source_toggled.emit(name, on))
            row.addWidget(switch)
        row.addStretch(1)
        row.addWidget(self.reset_button)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(2, 2, 2, 2)
        self.layout_.addLayout(row)
        self.layout_.addWidget(self.status)
        self.layout_.addWidget(self.message, 1)
        self.gl = None  # pyqtgraph.opengl.GLViewWidget once OpenGL is known to work
        self.problem: str | None = None
        self.meshes: dict[tuple[str, int], Any] = {}  # (source, class value) -> GLMeshItem
        self._box: tuple[np.ndarray, np.ndarray] | None = None  # what the camera aims at (LPS mm)

    def ensure_gl(self) -> bool:
        """Make the OpenGL view on first use; False (and the reason shown) when it cannot be."""
        if self.gl is not None or self.problem is not None:
            return self.gl is not None
        self.problem = opengl_problem()
        if self.problem is not None:
            self.message.setText(f"No 3D view: {self.problem}. The slice views work as before.")
            self.message.show()
            for switch in self.switches.values():
                switch.setEnabled(False)
            return False
        import pyqtgraph.opengl as gl

        self.gl = gl.GLViewWidget()
        self.gl.setMinimumSize(200, 200)
        self.layout_.addWidget(self.gl, 1)
        self.reset_button.clicked.connect(self.reset_camera)
        if self._box is not None:
            self.reset_camera()
        return True

    def aim(self, low: np.ndarray, high: np.ndarray) -> None:
        """Aim the camera at the middle of the LPS box ``low`` .. ``high`` (mm), from the
        front, the whole box in view (``reset_camera``)."""
        self._box = (np.asarray(low, float), np.asarray(high, float))
        self.reset_camera()

    def reset_camera(self) -> None:
        """The camera aimed at the box, from the front, at the distance where the whole box
        fits the view as it is shaped now (Reset view in a short panel cut off the top)."""
        if self.gl is None or self._box is None:
            return
        low, high = self._box
        radius = 0.5 * float(np.linalg.norm(high - low)) + 1.0
        distance = fitting_distance(radius, self.gl.opts["fov"], self.gl.width(), self.gl.height())
        # Azimuth -90: the camera on the anterior side (-y in LPS), superior (+z) up.
        self.gl.setCameraPosition(pos=QVector3D(*(float(c) for c in (low + high) / 2)), distance=distance,
                                  elevation=15, azimuth=-90)

    def show_surface(self, source: str, surface: Surface, color: tuple[int, int, int], alpha: float) -> None:
        """Draw (or replace, or remove when empty) the surface of ``source``'s class."""
        key = (source, surface.value)
        item = self.meshes.pop(key, None)
        if item is not None:
            self.gl.removeItem(item)
        if surface.is_empty or self.gl is None:
            return
        import pyqtgraph.opengl as gl

        rgba = (*(c / 255 for c in color), alpha)
        item = gl.GLMeshItem(meshdata=_mesh_data(surface), color=rgba, shader=_headlight(), smooth=True,
                             glOptions="opaque" if alpha >= 1 else "translucent")
        item.setVisible(self.switches[source].isChecked())
        self.gl.addItem(item)
        self.meshes[key] = item

    def show_source(self, source: str, on: bool) -> None:
        for (name, _), item in self.meshes.items():
            if name == source:
                item.setVisible(on)

    def remove(self, sources) -> None:
        """Take every surface of ``sources`` away."""
        for key in [k for k in self.meshes if k[0] in sources]:
            self.gl.removeItem(self.meshes.pop(key))


_SHADER = None


def _headlight():
    """A light at the camera, a little above and left of it, lighting both sides of a face
    alike (pyqtgraph's "shaded" lights faces turned away from the camera)."""
    global _SHADER
    if _SHADER is None:
        from pyqtgraph.opengl import shaders

        _SHADER = shaders.ShaderProgram("segview headlight", [
            shaders.VertexShader("""
                uniform mat4 u_mvp;
                uniform mat3 u_normal;
                attribute vec4 a_position;
                attribute vec3 a_normal;
                attribute vec4 a_color;
                varying vec4 v_color;
                varying vec3 v_normal;
                void main() {
                    v_normal = normalize(u_normal * a_normal);
                    v_color = a_color;
                    gl_Position = u_mvp * a_position;
                }
            """),
            shaders.FragmentShader("""
                #ifdef GL_ES
                precision mediump float;
                #endif
                varying vec4 v_color;
                varying vec3 v_normal;
                void main() {
                    float lit = abs(dot(normalize(v_normal), normalize(vec3(-0.3, 0.4, 1.0))));
                    gl_FragColor = vec4(v_color.rgb * (0.3 + 0.7 * lit), v_color.a);
                }
            """)])
    return _SHADER


def _mesh_data(surface: Surface):
    """pyqtgraph's MeshData with the surface's own normals: it would otherwise compute them
    in a Python loop over the vertices (seconds for a large class)."""
    from pyqtgraph.opengl import MeshData

    class SurfaceMeshData(MeshData):
        def vertexNormals(self, indexed=None):
            return surface.normals if indexed is None else surface.normals[surface.faces]

    return SurfaceMeshData(vertexes=surface.vertices, faces=surface.faces)


class SurfaceController(QObject):
    """Follows ``window``'s session and keeps the 3D view's surfaces up to date (see the module)."""

    built = Signal(str, int)  # a surface (source, class value) is on screen, new or rebuilt
    updated = Signal()        # every surface shown is up to date (a build finished, nothing stale)

    def __init__(self, window: MeasuresHost):
        super().__init__(window.window())
        self.window = window
        self.view = SurfaceView()
        self.dock = QDockWidget("3D view", window.window())
        self.dock.setObjectName("3d dock")
        self.dock.setWidget(self.view)
        self.dock.setMinimumSize(320, 300)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.action = self.dock.toggleViewAction()
        self.action.setText("&3D view")
        self.action.setShortcut("4")
        self.action.setToolTip("Surfaces of the labels' classes and of the models' masks")
        menu = window.menuBar().findChild(QMenu, VIEW_MENU)
        (menu.addAction if menu is not None else window.addAction)(self.action)
        self.session: ReviewSession | None = None
        self.stale: dict[str, StaleClasses] = {}
        self.surfaces: dict[tuple[str, int], Surface] = {}
        self._models: dict = {}  # slot -> the model its surfaces were built for
        self._worker: GeneratorWorker | None = None  # the build whose surfaces are shown
        self._running: set[GeneratorWorker] = set()  # kept until they end, cancelled ones too
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self.build)
        self._aimed = False
        self.view.source_toggled.connect(self._source_toggled)
        self.dock.visibilityChanged.connect(self._visibility_changed)
        self._sized = False
        window.loaded.connect(self.attach)
        window.session_changed.connect(self._models_changed)
        window.predictions_changed.connect(lambda: self._predictions_changed(PREDICTION_DELAY_MS))

    # -- what tests and scripts read ----------------------------------------------------
    def shown_surfaces(self) -> dict[tuple[str, int], Surface]:
        """The surfaces built for the session on screen: (source, class value) -> Surface."""
        return dict(self.surfaces)

    # -- following the session ----------------------------------------------------------
    def attach(self) -> None:
        """A session is on screen: its surfaces replace those of the one before."""
        if self.session is not None:
            self.session.labels.events.changed.disconnect(self._edited)
        self._cancel()
        self.session = session = self.window.session
        self.stale = {"labels": StaleClasses()}
        self.surfaces.clear()
        self._models = {}
        if self.view.gl is not None:
            self.view.remove(SOURCES)
        if session is None:
            return
        session.labels.events.changed.connect(self._edited)
        self._models_changed()
        corners = session.volume.index_to_physical(_corners(session.volume.shape))
        self.view.aim(corners.min(axis=0), corners.max(axis=0))
        self._aimed = False  # at the labels, once their surfaces are built
        self._schedule(0)

    def _visibility_changed(self, visible: bool) -> None:
        if not visible:
            return
        main = self.window.window()
        if not self._sized and isinstance(main, QMainWindow) and not self.dock.isFloating():
            # A third of the window's height the first time: not a strip under the metrics, nor
            # so tall that the metrics above it are crushed (half left a new user a 40-pixel Dice strip).
            self._sized = True
            main.resizeDocks([self.dock], [max(main.height() // 3, self.dock.minimumHeight())], Qt.Orientation.Vertical)
        self._schedule(0)

    def _edited(self, edit: Edit) -> None:
        if self.stale["labels"].edited(edit):
            self._timer.start(EDIT_DELAY_MS)  # again at each edit: a drag is built once, when it pauses

    def _models_changed(self) -> None:
        """Models loaded, replaced or removed: their surfaces are built again. The window says
        its session changed after label-only events too (a slice copied, labels replaced):
        a model still there is not rebuilt then (``predictions_changed`` follows new slices)."""
        session = self.session
        if session is None:
            return
        gone = [slot for slot in ("A", "B") if slot not in session.models]
        for slot in gone:
            self.stale.pop(slot, None)
            for key in [k for k in self.surfaces if k[0] == slot]:
                del self.surfaces[key]
        if self.view.gl is not None:
            self.view.remove(gone)
        for slot in session.models:
            self.view.switches[slot].setEnabled(self.view.problem is None)
        for slot in gone:
            self.view.switches[slot].setEnabled(False)
        changed = [slot for slot, model in session.models.items() if self._models.get(slot) is not model]
        self._models = dict(session.models)
        for slot in changed:
            self.stale.setdefault(slot, StaleClasses()).invalidate()
        if changed:
            self._schedule(0)

    def _predictions_changed(self, delay_ms: int) -> None:
        if self.session is None:
            return
        for slot in self.session.models:
            self.stale.setdefault(slot, StaleClasses()).invalidate()
        self._schedule(delay_ms)

    def _source_toggled(self, source: str, on: bool) -> None:
        self.view.show_source(source, on)
        self.view.status.setText(self._summary())
        if on:
            self._schedule(0)

    # -- building -----------------------------------------------------------------------
    def _schedule(self, delay_ms: int) -> None:
        if not self._timer.isActive() or delay_ms < self._timer.remainingTime():
            self._timer.start(delay_ms)

    def _wanted_sources(self) -> list[str]:
        """The sources shown whose surfaces are out of date."""
        return [name for name, stale in self.stale.items() if stale.stale and self.view.switches[name].isChecked()]

    def build(self) -> None:
        """Build what is stale and shown, in a worker (one at a time; the next when it ends)."""
        session = self.session
        if session is None or self._worker is not None or not self.dock.isVisible():
            return
        if not self.view.ensure_gl():
            return
        wanted = self._wanted_sources()
        if not wanted:
            return self.updated.emit()
        jobs = [(name, self._array(session, name), self.stale[name].take()) for name in wanted]
        worker = GeneratorWorker(_build_jobs, jobs, session.volume)
        worker.signals.yielded.connect(lambda result: self._show(worker, session, *result))
        worker.signals.errored.connect(self._failed)
        worker.signals.finished.connect(lambda _: self._finished(worker))
        self._worker = worker
        self._running.add(worker)
        self.view.status.setText("Building surfaces\u2026")
        worker.start()

    @staticmethod
    def _array(session: ReviewSession, source: str) -> np.ndarray:
        return session.labels.array if source == "labels" else session.models[source].prediction

    def _show(self, worker: GeneratorWorker, session: ReviewSession, source: str, surface: Surface) -> None:
        if worker is not self._worker or session is not self.session or source not in self.stale:
            return  # a cancelled build, another session, or a model since removed
        self.stale[source].built(surface)
        key = (source, surface.value)
        if surface.is_empty:
            self.surfaces.pop(key, None)
        else:
            self.surfaces[key] = surface
        color, alpha = self._color(session, source, surface.value)
        self.view.show_surface(source, surface, color, alpha)
        self.built.emit(source, surface.value)

    @staticmethod
    def _color(session: ReviewSession, source: str, value: int) -> tuple[tuple[int, int, int], float]:
        """The class's 2D overlay colour for the labels; the model's outline colour for a model."""
        if source != "labels":
            return MODEL_COLORS[source], MODEL_ALPHA
        classes = merged_classes(session.classes, *(m.classes for m in session.models.values()))
        return next((c.color for c in classes if c.value == value), default_color(value)), 1.0

    def _finished(self, worker: GeneratorWorker) -> None:
        self._running.discard(worker)
        if worker is not self._worker:
            return
        self._worker = None
        self.view.status.setText(self._summary())
        self._aim_at_labels()
        if self._wanted_sources():
            self._schedule(0)
        else:
            self.updated.emit()

    def _aim_at_labels(self) -> None:
        """After the first build of a session: the camera on what the labels hold."""
        labels = [s.vertices for (source, _), s in self.surfaces.items() if source == "labels"]
        if self._aimed or not labels:
            return
        self._aimed = True
        self.view.aim(np.min([v.min(axis=0) for v in labels], axis=0), np.max([v.max(axis=0) for v in labels], axis=0))

    def _summary(self) -> str:
        """What is shown: the surfaces of the sources switched on."""
        shown = [s for (source, _), s in self.surfaces.items() if self.view.switches[source].isChecked()]
        triangles = sum(len(s.faces) for s in shown)
        return f"{counted(len(shown), 'surface')}, {triangles:,} triangles" if shown else "No class to show"

    def _failed(self, exc: Exception) -> None:
        self.view.status.setText(f"Surfaces not built: {exc}")
        raise exc  # a programming error: let it surface

    def _cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None


def _corners(shape) -> np.ndarray:
    """The eight corner voxels (z, y, x) of a volume of ``shape``."""
    return np.array([[z, y, x] for z in (0, 1) for y in (0, 1) for x in (0, 1)]) * (np.array(shape) - 1)


def _build_jobs(jobs, geometry: Volume, should_stop):
    """(source, Surface) for each class each job wants (runs in a worker)."""
    for source, array, wanted in jobs:
        for surface in build_surfaces(array, geometry, wanted, should_stop):
            yield source, surface


def install_surfaces(window: MeasuresHost) -> SurfaceController:
    """The 3D view's dock and its View menu item (``window.surfaces``)."""
    return SurfaceController(window)
