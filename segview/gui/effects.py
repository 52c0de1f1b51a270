"""Editing tools, one class each (3D Slicer's Segment Editor effects): a name, a shortcut, a
cursor, and fixed hooks for a mouse press, drag and release on a plane of the image. The
hooks act on the ReviewSession; the window only routes the mouse to the active effect.

A ``PlanePoint`` says where the mouse is: the array axis normal to the plane (0: z planes,
1: y planes, 2: x planes), the plane's index and the point in the plane's voxel coordinates
(array order), so every tool works in every view. An effect with ``right_click`` also gets a
right click, as a ``release`` whose point has ``erase`` set (as Shift + click).
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt

from typing import Union

from ..core.measures import RegionStatistics
from ..session import ReviewSession
from ..session.interaction import ClickJob
from ..session.review import ToolJob
from ..session.statistics import statistics_text


@dataclass(frozen=True)
class PlanePoint:
    axis: int                        # array axis normal to the plane
    index: int                       # the plane along it
    point: tuple[float, float]       # continuous voxel coordinates in the plane, array order
    zyx: tuple[float, float, float]  # the same point as a continuous (z, y, x) index
    pane: str = ""                   # "A" or "B" in the compare panes
    erase: bool = False              # Shift held: the brush erases

    @classmethod
    def from_index(cls, zyx, axis: int, pane: str = "", modifiers=Qt.KeyboardModifier.NoModifier) -> PlanePoint:
        in_plane = tuple(float(zyx[a]) for a in range(3) if a != axis)
        return cls(axis, int(round(zyx[axis])), in_plane, tuple(float(v) for v in zyx), pane,  # type: ignore[arg-type]
                   bool(modifiers & Qt.KeyboardModifier.ShiftModifier))


@dataclass
class ToolSettings:
    """The tools panel's choices an effect needs at the moment of a click."""
    value: int            # the class painted
    radius_mm: float
    sphere: bool = False  # the brush is a ball through the slices
    grow_3d: bool = False
    intensity_range: tuple[float, float] | None = None  # e.g. HU


def kept_note(session: ReviewSession, what: str) -> str | None:
    """'``what``: N voxels kept by ...' when the brush settings (overwrite policy,
    intensity range) kept voxels the last hand-tool step would have changed, else None: an
    eraser under "background only" changes nothing, and says so."""
    reason = session.labels.kept_reason()
    return f"{what}: {reason}." if reason else None


#: What a hook returns: a message for the status bar, a ToolJob for the window to run in a
#: worker (then ``finish_tool``), a ClickJob likewise (then ``finish_click``), or None.
Outcome = Union[str, ToolJob, ClickJob, None]


class Effect:
    """A tool. ``paints``: a left drag edits (else it pans); ``brush``: the view shows a
    true-size brush cursor. Hooks return an ``Outcome``."""
    name, text, key, tip = "", "", "", ""
    cursor = Qt.CursorShape.ArrowCursor
    paints = False
    brush = False
    right_click = False  # a right click is a release with ``erase`` (else right drags set the window)

    def press(self, session: ReviewSession, at: PlanePoint, settings: ToolSettings) -> Outcome:
        return None

    def drag(self, session: ReviewSession, at: PlanePoint, settings: ToolSettings) -> Outcome:
        return None

    def release(self, session: ReviewSession, at: PlanePoint, settings: ToolSettings) -> Outcome:
        return None


class Navigate(Effect):
    name, text, key, tip = "navigate", "Navigate", "N", "Left drag pans, right drag sets window/level"


class Brush(Effect):
    """A round brush of the panel's radius in mm; one drag is one undo step."""
    name, text, key, tip = "brush", "Brush", "B", "Paint the chosen class; Shift erases"
    cursor = Qt.CursorShape.CrossCursor
    paints = brush = True

    def __init__(self):
        self._last: PlanePoint | None = None

    def value(self, at: PlanePoint, settings: ToolSettings) -> int:
        return 0 if at.erase else settings.value

    def press(self, session, at, settings):
        session.labels.begin_stroke(f"{self.text.lower()} stroke")
        self._last = at
        return self.drag(session, at, settings)

    def drag(self, session, at, settings):
        last = self._last if self._last is not None and self._last.axis == at.axis else at
        if settings.sphere:
            session.labels.paint_sphere([last.zyx, at.zyx], settings.radius_mm, self.value(at, settings))
        else:
            session.labels.paint(at.index, [last.point, at.point], settings.radius_mm, self.value(at, settings),
                                 at.axis)
        self._last = at
        return None

    def release(self, session, at, settings):
        self.drag(session, at, settings)
        changed = bool(session.labels.end_stroke())
        self._last = None
        # As Fill and Polygon do: a stroke held back in part says by what (holes in it otherwise unexplained).
        return kept_note(session, self.text if changed else f"{self.text} changed nothing")


class Eraser(Brush):
    name, text, key, tip = "eraser", "Eraser", "E", "Erase labels (set them to background)"

    def value(self, at, settings):
        return 0


class Fill(Effect):
    """Flood fill of the region under the click on an axial plane."""
    name, text, key, tip = "fill", "Fill", "G", "Fill the enclosed region under the click (axial planes)"
    cursor = Qt.CursorShape.PointingHandCursor
    paints = True

    def release(self, session, at, settings):
        if at.axis != 0:
            return f"Fill works on the acquired ({session.volume.display().acquisition_view()}) planes: click there."
        session.fill(at.index, at.point, 0 if at.erase else settings.value)
        return kept_note(session, "Fill")


class Adopt(Effect):
    """In the compare panes: click where A and B disagree to take that model's region."""
    name, text, key, tip = "adopt", "Adopt", "J", "Click a disagreement in pane A or B to take that model's region"
    cursor = Qt.CursorShape.PointingHandCursor
    paints = True

    def release(self, session, at, settings):
        if at.axis != 0 or at.pane not in ("A", "B"):
            return "Adopt works in the compare panes (K): click where A and B disagree."
        if session.adopt(at.pane, at.index, at.point) is None:
            return "A and B agree there: nothing to adopt."
        return None


#: How far (mm, along each axis) a 3D growth may reach from the click.
GROW_3D_BOX_MM = 80.0


class Grow(Effect):
    """Region growing from the click: the connected voxels within the intensity range (or,
    without one, those like the seed: confidence connected) take the class; in the plane
    clicked, or in 3D."""
    name, text, key, tip = "grow", "Grow", "W", "Grow the class from the click, stopping where the image changes"
    cursor = Qt.CursorShape.PointingHandCursor
    paints = True

    def release(self, session, at, settings):
        axis = None if settings.grow_3d else at.axis
        value = 0 if at.erase else settings.value
        box = GROW_3D_BOX_MM if axis is None else None  # a whole volume takes seconds; a structure fits
        if settings.intensity_range is not None:
            low, high = settings.intensity_range
            return session.tool_job("grow_from_seed", at.zyx, value, low, high, axis=axis, box_mm=box)
        return session.tool_job("grow_confidence_connected", at.zyx, value, axis=axis, box_mm=box)


class Click(Effect):
    """Interactive correction: each click asks the click model to correct the chosen class
    on the axial slice clicked (``ReviewSession.click_job``); the window runs the job in a
    worker, shows the clicks as dots, and ends the interaction on Enter, Esc, another tool
    or another slice."""
    name, text, key, tip = ("click", "Click", "C", "Click correction: left click adds to the class, right click "
                            "(or Shift + click) removes; the model corrects the region")
    cursor = Qt.CursorShape.CrossCursor
    paints = right_click = True

    def release(self, session, at, settings):
        return session.click_job(at.index, at.point, positive=not at.erase, value=settings.value, axis=at.axis)


class Polygon(Effect):
    """Each click is a vertex on the plane clicked (a click on another plane starts again);
    ``close`` fills the voxels whose centres fall inside with the class, one undo step. The
    window closes it on a double-click or Enter and cancels it on Esc (``polygon_tool``)."""
    name, text, key, tip = ("polygon", "Polygon", "P", "Click the vertices; double-click or Enter fills the class "
                            "inside, Esc cancels")
    cursor = Qt.CursorShape.CrossCursor
    paints = True

    def __init__(self) -> None:
        self.vertices: list[PlanePoint] = []

    def release(self, session, at, settings):
        if self.vertices and _plane(self.vertices[0]) != _plane(at):
            self.vertices = []
        self.vertices.append(at)
        return None

    def close(self, session: ReviewSession, settings: ToolSettings) -> str | None:
        """Fill the polygon and forget it; a message when it has fewer than 3 vertices."""
        vertices, self.vertices = self.vertices, []
        if len({at.point for at in vertices}) < 3:
            return "A polygon needs at least 3 vertices: click them, then double-click or press Enter."
        first = vertices[0]
        session.labels.fill_polygon(first.index, [at.point for at in vertices], settings.value, first.axis)
        return kept_note(session, "Polygon")

    def cancel(self) -> None:
        self.vertices = []


class Ruler(Effect):
    """A drag on a plane of any view measures the line between its ends in mm from the
    image's geometry (``session.rulers``); the ruler stays on its plane until deleted."""
    name, text, key, tip = ("ruler", "Ruler", "L", "Drag a line to measure it in mm; the rulers are listed in the "
                            "Rulers panel and saved with the labels")
    cursor = Qt.CursorShape.CrossCursor
    paints = True

    def __init__(self) -> None:
        self.start: PlanePoint | None = None  # the drag in progress, drawn by the window
        self.end: PlanePoint | None = None

    def press(self, session, at, settings):
        self.start = self.end = at
        return None

    def drag(self, session, at, settings):
        if self.start is not None and _plane(at) == _plane(self.start):
            self.end = at
        return None

    def release(self, session, at, settings):
        self.drag(session, at, settings)
        start, end = self.start, self.end
        self.start = self.end = None
        if start is None or end is None:
            return None
        ruler = session.rulers.add(start.zyx, end.zyx, start.axis)
        return f"Ruler: {ruler.length_mm:.1f} mm"


class LevelTrace(Effect):
    """Level tracing (3D Slicer's effect): the window outlines, as the mouse moves, the
    region of similar intensity under it on the slice (``core.labels.traced_level``); a click
    fills it with the class (Shift: erases it), one undo step. ``tolerance``: how far from
    the intensity under the mouse (HU for CT) a pixel may be, set in the Tools panel."""
    name, text, key, tip = ("level", "Level", "V", "Level tracing: the outline shows the connected region of "
                            "similar intensity under the mouse; a click fills it with the class")
    cursor = Qt.CursorShape.CrossCursor
    paints = True

    def __init__(self) -> None:
        self.tolerance = 50.0

    def release(self, session, at, settings):
        value = 0 if at.erase else settings.value
        if session.labels.fill_level(at.index, at.point, self.tolerance, value, at.axis) is None:
            return kept_note(session, "Level tracing changed nothing") or \
                "Level tracing: nothing changes there (already the class)."
        return kept_note(session, "Level tracing")


class RegionShape(Effect):
    """A drag draws an ellipse (Shift + drag: a rectangle) on a plane of any view: the
    statistics of the image inside it (``ReviewSession.shape_statistics``) follow the mouse
    while drawing and stay in the status bar and the measures dock. It changes nothing; the
    shape stays drawn until the next one."""
    name, text, key, tip = ("roi", "ROI", "O", "Drag an ellipse (Shift: a rectangle): volume, mean, SD, median, "
                            "minimum and maximum of the image inside it")
    cursor = Qt.CursorShape.CrossCursor
    paints = True

    def __init__(self) -> None:
        self.start: PlanePoint | None = None  # the shape's corners, drawn by the window
        self.end: PlanePoint | None = None
        self.shape = "ellipse"
        self.statistics: RegionStatistics | None = None

    def press(self, session, at, settings):
        self.start = self.end = at
        self.shape = "rectangle" if at.erase else "ellipse"
        self._measure(session)
        return None

    def drag(self, session, at, settings):
        if self.start is not None and _plane(at) == _plane(self.start):
            self.end = at
            self._measure(session)
        return None

    def release(self, session, at, settings):
        if self.end is None or at.point != self.end.point:  # else the last move measured it
            self.drag(session, at, settings)
        if self.start is not None and self.end is not None and self.start.point == self.end.point:
            self.cancel()  # a click, not a drag: nothing to measure
            return "ROI: drag to draw an ellipse (Shift + drag: a rectangle)."
        return self.summary(session)

    def summary(self, session) -> str | None:
        """What the shape holds, for a person; None before a shape is drawn."""
        if self.statistics is None or self.start is None:
            return None
        unit = " HU" if session.volume.modality == "CT" else ""
        return f"{self.shape.capitalize()}: {statistics_text(self.statistics, unit)}"

    def cancel(self) -> None:
        self.start = self.end = self.statistics = None

    def _measure(self, session) -> None:
        start, end = self.start, self.end
        assert start is not None and end is not None
        self.statistics = session.shape_statistics(start.axis, start.index, start.point, end.point, self.shape)


def _plane(at: PlanePoint) -> tuple[int, int, str]:
    return at.axis, at.index, at.pane


#: The tools, in the order of the Tools panel and the Edit menu (the first: navigate).
EFFECT_CLASSES: tuple[type[Effect], ...] = (Navigate, Brush, Eraser, Fill, Adopt, Grow, Click, Polygon, Ruler,
                                            LevelTrace, RegionShape)


def new_effects() -> tuple[Effect, ...]:
    """One instance of each tool, for one window: an effect holds its drag, polygon or ruler
    in progress (and level tracing its tolerance), which another window must not share."""
    return tuple(kind() for kind in EFFECT_CLASSES)
