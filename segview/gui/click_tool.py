"""The Click tool's wiring (``effects.Click``): each click's model run in a worker, the
clicks as dots, the end of an interaction.

A click of the tool gives a ``ClickJob`` (``ReviewSession.click_job``); the controller runs
it in a worker and hands the result to ``finish_click`` on the main thread (one undo step;
the labels and the live metrics follow as for any edit). Clicks given while the model runs
wait their turn, each computed on the labels its predecessor left. The clicks of the
interaction in progress, and those waiting, show as small green (adds) and red (removes)
dots, and the mouse cursor is busy while the model runs. The interaction ends on Enter (once
the clicks waiting are done), on Esc (those are dropped), wherever the focus is in the
window, when another tool, class, slice or image is chosen, or the slice changes otherwise
(``session.interaction``); undo takes a click's dot away with its edit. The click model is
loaded in a worker as soon as the tool is chosen, so that the first click does not wait for it. Without
a click model a dialog says so; a click the model fails on says so in the status bar;
neither changes the labels. Model > Load click model chooses another interactive checkpoint
for the image on screen and every image opened after it in this window (``load_model``).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication, QMessageBox

from ..core.errors import SegviewError
from ..core.report import counted
from ..session import ReviewSession
from ..session.interaction import ClickJob, ClickProposal
from .workers import Worker

if TYPE_CHECKING:
    from .host import ToolHost

ADDS, REMOVES = (40, 220, 40), (235, 40, 40)
ENDS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


class ClickController(QObject):
    """Runs the Click tool's jobs for ``window`` (see the module docstring)."""

    def __init__(self, window: ToolHost):
        super().__init__(window.window())
        self.window = window
        self.session: ReviewSession | None = None   # the session whose steps it follows
        self.running: ClickJob | None = None
        self.waiting: list[ClickJob] = []             # clicks given while the model ran
        self._workers: set[Worker] = set()
        self._end_when_idle = False
        self._busy_cursor = False
        self._warming: ReviewSession | None = None   # the session whose click model is being loaded
        self.model_path: Path | None = None           # chosen in Model > Load click model (None: the default)
        self._unchanged = ("", 0)  # the last message of clicks that changed nothing, and their count
        window.loaded.connect(self._session_shown)
        window.tools.tool_changed.connect(self._tool_chosen)
        window.tools.class_chosen.connect(lambda _: self._class_chosen())
        window.workspace.slice_changed.connect(lambda *_: self._slice_shown())
        for view in self.window.workspace.tool_views():
            view.installEventFilter(self)
        # Enter anywhere in the window (a side panel's field may have the focus) while an
        # interaction is on; Esc is the window's (``MainWindow.escape``).
        self._enter_keys = []
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shortcut = QShortcut(QKeySequence(key), window.window())
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.setEnabled(False)
            shortcut.activated.connect(lambda: self.end())
            self._enter_keys.append(shortcut)

    # -- what the window hands over -------------------------------------------------------
    def submit(self, job: ClickJob) -> None:
        """A click of the tool: run now, or after the click running."""
        self._end_when_idle = False
        self.waiting.append(job)
        self.show_dots()
        self._next()

    @property
    def busy(self) -> bool:
        return self.running is not None or bool(self.waiting)

    @property
    def interacting(self) -> bool:
        """An interaction is on, or clicks are being computed: Enter and Esc end it."""
        session = self.window.session
        return self.busy or (session is not None and session.interaction.active)

    def end(self, cancel: bool = False) -> None:
        """End the interaction; ``cancel`` drops the clicks not yet applied (else they are
        applied first, then it ends)."""
        if cancel:
            if self.running is not None:
                self.running.cancel()
            self.waiting.clear()
        elif self.busy:
            self._end_when_idle = True
            return
        self._end_when_idle = False
        if self.session is not None:
            self.session.end_interaction()
        self.show_dots()

    # -- running --------------------------------------------------------------------------
    def _next(self) -> None:
        session = self.window.session
        if self.running is not None or not self.waiting or session is None:
            if not self.busy:
                self._set_busy_cursor(False)
                if self._end_when_idle:
                    self.end()
            return
        job = self.waiting.pop(0)
        if job.version != session.version:  # made before the click ahead of it was applied
            try:
                job = session.click_job(job.z, job.point, job.positive, job.value, job.axis)
            except SegviewError as exc:
                self.window.statusBar().showMessage(f"Click: {exc}", 8000)
                return self._next()
        self.running = job
        self._set_busy_cursor(True)
        worker = Worker(job)
        self._workers.add(worker)
        worker.signals.returned.connect(lambda proposal: self._done(session, job, proposal))
        worker.signals.errored.connect(lambda exc: self._failed(job, exc))
        worker.signals.finished.connect(lambda: self._workers.discard(worker))
        Worker.pool().start(worker, 2)  # ahead of the window's other queued jobs: a person waits on it

    def _done(self, session: ReviewSession, job: ClickJob, proposal: ClickProposal | None) -> None:
        self.running = None
        if session is self.window.session and not job.cancelled:
            try:
                changed = session.finish_click(job, proposal)
            except SegviewError as exc:
                self.window.statusBar().showMessage(f"Click: {exc}", 8000)
            else:
                if changed:
                    said = changed_text(changed, session.interaction.last_taken, session.classes)
                else:
                    said = self._counted_unchanged(session.interaction.unchanged_reason(job))
                self.window.statusBar().showMessage(f"Click: {said}", 5000)
        self.show_dots()
        self._next()

    def _counted_unchanged(self, reason: str) -> str:
        """``reason`` a click changed nothing, with how many clicks in a row it holds for
        while it is still shown: each rapid click that changes nothing would otherwise show
        the very words of the one before, as if it had not been taken."""
        last, clicks = self._unchanged
        shown = self.window.statusBar().currentMessage()
        clicks = clicks + 1 if reason == last and shown == f"Click: {self._with_count(last, clicks)}" else 1
        self._unchanged = (reason, clicks)
        return self._with_count(reason, clicks)

    @staticmethod
    def _with_count(reason: str, clicks: int) -> str:
        return f"{reason} ({clicks} clicks)" if clicks > 1 else reason

    def _failed(self, job: ClickJob, exc: Exception) -> None:
        self.running = None
        if not isinstance(exc, SegviewError):
            raise exc  # a programming error: let it surface
        from ..ml.checkpoint import CheckpointError

        if isinstance(exc, CheckpointError):  # no model: every click waiting would fail the same way
            self.waiting.clear()
            self._end_when_idle = False
            self._set_busy_cursor(False)
            self.show_dots()
            QMessageBox.warning(self.window.window(), "No click model",
                                f"{exc}\n\nModel > Load click model chooses one. The labels are unchanged.")
            return
        if not job.cancelled:
            self.window.statusBar().showMessage(f"Click: {exc}", 10000)
        self.show_dots()
        self._next()

    def _set_busy_cursor(self, on: bool) -> None:
        if on != self._busy_cursor:
            self._busy_cursor = on
            if on:
                QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)  # clicks still go through
            else:
                QApplication.restoreOverrideCursor()

    def warm_up(self) -> None:
        """Load the session's click model in a worker, if it is not loaded yet."""
        session = self.window.session
        if session is None or session.interaction.model_ready or self._warming is session:
            return
        self._load(session, session.interaction.model, self._warm_up_failed)

    def load_model(self, path) -> None:
        """Use interactive checkpoint ``path`` for the image on screen and every one opened
        after it, once it has loaded in a worker (with no image on screen, once it loads as
        a click model). A file that is no click model is refused with a dialog naming what
        it is, and the model and the interaction before stay; a model taken ends the
        interaction (its clicks were another model's)."""
        from ..ml.interactive import ClickModel

        path, session = Path(path), self.window.session
        load = (partial(session.interaction.load_model, path) if session is not None else
                partial(ClickModel.from_checkpoint, path, runtime="torch"))  # only to check it
        self._load(session, load, self._load_failed, lambda model: self._model_chosen(path, model, session))

    def _load(self, session: ReviewSession | None, load: Callable, failed: Callable,
              done: Callable | None = None) -> None:
        """Run ``load`` (a click model's loading) in a worker for ``session``."""
        worker = Worker(load)
        self._workers.add(worker)
        self._warming = session
        if done is not None:
            worker.signals.returned.connect(done)
        worker.signals.errored.connect(failed)
        worker.signals.finished.connect(lambda: self._warmed(worker, session))
        worker.start()

    def _model_chosen(self, path: Path, model, session: ReviewSession | None) -> None:
        self.model_path = path
        if session is not None and session is self.window.session:
            self.end()
        where = "for the images opened next" if session is None else f"{model.runtime} on {model.device.type}"
        self.window.statusBar().showMessage(f"Click model: {path.name} ({where})", 5000)

    def _load_failed(self, exc: Exception) -> None:
        if not isinstance(exc, SegviewError):
            raise exc
        QMessageBox.warning(self.window.window(), "Not a click model", f"{exc}\n\nThe click model is unchanged.")

    def _warmed(self, worker: Worker, session: ReviewSession | None) -> None:
        self._workers.discard(worker)
        if self._warming is session:
            self._warming = None

    def _warm_up_failed(self, exc: Exception) -> None:
        if not isinstance(exc, SegviewError):
            raise exc
        # Said when a click needs the model (a dialog), not when a tool is chosen.

    # -- the dots ---------------------------------------------------------------------------
    def show_dots(self) -> None:
        """The clicks of the interaction and those waiting, on every view and pane."""
        session = self.window.session
        markers = []
        if session is not None and session is self.session:
            interaction = session.interaction
            pending = ([self.running] if self.running is not None and not self.running.cancelled else []) + self.waiting
            if interaction.active and interaction.z is not None and all(job.continues for job in pending):
                markers += [((interaction.z, c.y, c.x), ADDS if c.positive else REMOVES) for c in interaction.clicks]
            markers += [((job.z, *job.point), ADDS if job.positive else REMOVES) for job in pending]
        for view in self.window.workspace.tool_views():
            view.set_markers(markers)
        for shortcut in self._enter_keys:
            shortcut.setEnabled(self.interacting)

    def markers(self) -> list:
        """The dots shown (((z, y, x), colour), ...), for tests and scripts."""
        return list(self.window.workspace.viewer.plane_view().markers)

    # -- what ends an interaction -------------------------------------------------------------
    def _session_shown(self) -> None:
        session = self.window.session
        if session is self.session:
            return
        self.end(cancel=True)
        if self.session is not None:
            self.session.labels.events.step.disconnect(self.show_dots)
        self.session = session
        if session is not None:
            if self.model_path is not None and session.interaction.model_path is None:
                session.interaction.model_path = self.model_path  # loaded when the tool needs it
            session.labels.events.step.connect(self.show_dots)  # undo and redo move the dots
            if self.window.effect.name == "click":
                self.warm_up()
        self.show_dots()

    def _tool_chosen(self, name: str) -> None:
        if name != "click":
            self.end(cancel=True)
        else:
            self.warm_up()

    def _class_chosen(self) -> None:
        session = self.window.session
        if session is not None and session.interaction.active and \
                session.interaction.value != self.window.tools.active_class():
            self.end(cancel=True)

    def _slice_shown(self) -> None:
        """Another slice ends the interaction and drops the clicks still computing on the one
        left (a helper's first click, then Down: it landed on a slice no longer shown)."""
        session = self.window.session
        if session is None:
            return
        z = self.window.current_slice()
        pending = ([self.running] if self.running is not None else []) + self.waiting
        if (session.interaction.active and session.interaction.z != z) or any(job.z != z for job in pending):
            self.end(cancel=True)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Enter and Esc in a view end the interaction (Esc then no longer cancels
        inference: its shortcut is overridden while an interaction is on)."""
        kind = event.type()
        if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and event.key() in ENDS:  # type: ignore[attr-defined]
            if self.interacting:
                event.accept()
                if kind == QEvent.Type.KeyPress:
                    self.end(cancel=event.key() == Qt.Key.Key_Escape)  # type: ignore[attr-defined]
                return True
        return False


def install_clicks(window: ToolHost) -> ClickController:
    """The Click tool's controller for ``window`` (``window.click_controller``)."""
    return ClickController(window)


def changed_text(changed: int, taken: dict[int, int], classes) -> str:
    """"70 voxels changed, 12 of them from myocardium": under "Paint over: everything" a
    click may take a neighbour's voxels (``taken``: class value -> voxels), and says whose."""
    names = {c.value: c.name for c in classes}
    return ", ".join([counted(changed, "voxel") + " changed"]
                     + [f"{n} of them from {names.get(v, f'class {v}')}" for v, n in taken.items() if n])
