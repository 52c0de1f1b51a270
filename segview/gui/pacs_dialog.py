"""File > Open from PACS and File > Send SEG to PACS.

``open_from_pacs(parent)`` shows a search form (patient ID, name, modality, study dates),
a table of the studies found with their series, and retrieves the chosen series into a
cache folder with a progress bar and a Cancel button; it returns what to open: the image
series' folder, or for a SEG series the SEG and the image series it segments (retrieved too).
``send_to_pacs(parent, files, images)`` sends files (the exported SEG) to a PACS, once the
PACS says it holds the image series the SEG refers to; when it does not, the dialog asks
whether to send anyway or with the image series (``images``, when its files are still
here); when it holds them in another study than the SEG's, whether to send the SEG into
that study (a copy: the file is not changed) or as it is. Searches, checks, retrieves
and stores run in the thread pool; widgets are touched only on the main thread.
The PACS used (address, user name, CA bundle) and the calling AE title are kept in the
settings; passwords and tokens in the keyring (``pacs_server``, ``pacs_secrets``).
"""
from __future__ import annotations

import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFormLayout, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout)

from ..core.errors import SegviewError
from ..core.pacs import (MAX_STUDIES, NOT_IMAGES, Pacs, PacsAuthError, PacsError, Progress, Query, ReferenceCheckFailed,
                         ReferencedSeries, Retrieved, RetrieveCancelled, SearchCancelled, Series, Study,
                         check_references, date_range, held_elsewhere_text, images_text, into_held_study, not_held_text,
                         retrieve_into_cache, retrieve_seg_with_image)
from .pacs_server import ServerForm, saved_servers
from .settings import pacs_cache_folder
from .workers import Worker

__all__ = ["ImageSeries", "PacsDialog", "SendDialog", "cache_folder", "open_from_pacs", "saved_servers",
           "send_to_pacs"]

RESULT_COLUMNS = ("Date", "Patient", "Patient ID", "Description", "Modality", "Images")


def cache_folder() -> Path:
    """Where retrieved series are kept: the user's cache, one folder per series UID (never
    where labels are saved: see ``settings.pacs_labels_path``)."""
    return pacs_cache_folder()


#: Series that hold contours, reports, plans or presentation states: no pixels, nor labels
#: segview reads (a SEG is opened with the image it segments; an RT dose grid has pixels).
UNOPENABLE_MODALITIES = NOT_IMAGES - {"SEG", "RTDOSE"}


class PacsDialog(QDialog):
    """Search a PACS and retrieve one series into the cache; once ``retrieved`` was emitted
    (and the dialog accepted), ``folder`` is the image series' folder and ``labels`` the
    DICOM SEG to open on it (a SEG series was chosen) or None. ``open_series``: the UID of
    the series on screen, which a SEG of it is opened on without retrieving it again
    (``folder`` stays None)."""

    searched = Signal(int)    # number of studies found
    retrieved = Signal(str)   # the folder of the image series (a SEG of the series open: the SEG)
    failed = Signal(str)      # what went wrong, as shown in the dialog

    def __init__(self, parent=None, cache: Path | None = None, open_series: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Open from PACS")
        self.cache = Path(cache) if cache is not None else cache_folder()
        self.open_series = open_series
        self.folder: Path | None = None
        self.labels: Path | None = None
        self._pacs: Pacs | None = None
        self._job: Worker | None = None
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._retrieving = False
        self._closing: int | None = None  # closed while a retrieve stopped: the result, once it has
        self._build()

    # -- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        self.server = ServerForm()
        self.patient_id, self.patient_name = QLineEdit(), QLineEdit()
        self.patient_name.setPlaceholderText("family name or its start; * and ? are wildcards")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(["", "CT", "MR", "SEG", "PT", "US", "CR", "DX"])
        self.dates = QLineEdit()
        self.dates.setPlaceholderText("YYYYMMDD-YYYYMMDD (either end may be left out)")
        form = QFormLayout()
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Modality", self.modality)
        form.addRow("Study dates", self.dates)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.results = QTreeWidget()
        self.results.setHeaderLabels(RESULT_COLUMNS)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.results.itemSelectionChanged.connect(self._update_buttons)
        self.results.itemDoubleClicked.connect(lambda item, _: self.retrieve() if self.chosen_series() else None)
        self.progress = QProgressBar()
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retrieve_button = QPushButton("Retrieve and open")
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        for button in (self.retrieve_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(self.server)
        search = QHBoxLayout()
        search.addLayout(form, 1)
        search.addWidget(self.search_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(search)
        layout.addWidget(self.results, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.resize(900, 560)
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = not self._idle.is_set()
        self.search_button.setEnabled(not busy)
        self.retrieve_button.setEnabled(not busy and self.chosen_series() is not None)
        self.cancel_button.setEnabled(busy)

    # -- search ----------------------------------------------------------------------

    def query(self) -> Query:
        return Query(patient_id=self.patient_id.text(), patient_name=self.patient_name.text(),
                     modality=self.modality.currentText(), dates=self.dates.text())

    def search(self) -> None:
        """Search the PACS with the form in the background; the results fill the table."""
        try:
            pacs, query = self.server.open_pacs(), self.query()
            date_range(query.dates)  # a typing mistake is reported before anything is sent
        except PacsError as exc:
            self._fail(str(exc))
            return
        # The last results go with the search: their series are the last PACS's, and a search
        # cancelled or failed would leave them to be retrieved from this one.
        self.results.clear()
        self._pacs = pacs
        self._set_status(f"Searching {pacs.url}...")
        stop = self._stop.is_set
        self._run(lambda: pacs.find(query, stop), returned=self._show_results)

    def _show_results(self, studies: list[Study]) -> None:
        self.server.remember()
        self._update_buttons()
        self.results.clear()
        for study in studies:
            date = study.date
            if len(date) == 8:
                date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
            item = QTreeWidgetItem([date, study.patient_name.replace("^", " ").strip(), study.patient_id,
                                    study.description, "/".join(study.modalities),
                                    images_text(study.images, study.frames)])
            item.setToolTip(0, f"Study UID {study.uid}")
            for series in study.series:
                number = "" if series.number is None else f" (series {series.number})"  # a SeriesNumber, maybe shared
                child = QTreeWidgetItem(["", "", "", f"{series.description or '(no description)'}{number}",
                                         series.modality, images_text(series.images, series.frames)])
                child.setData(0, Qt.ItemDataRole.UserRole, series)
                child.setToolTip(3, f"Series UID {series.uid}")
                item.addChild(child)
            self.results.addTopLevelItem(item)
            item.setExpanded(True)
        first = self.results.topLevelItem(0)
        first_series = first.child(0) if first is not None else None
        if first_series is not None:
            self.results.setCurrentItem(first_series)
        capped = f" (the first {MAX_STUDIES}: narrow the search to see others)" if len(studies) >= MAX_STUDIES else ""
        self._set_status(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found{capped}."
                         + (" Choose a series and retrieve it." if studies else ""))
        self.searched.emit(len(studies))

    def chosen_series(self) -> Series | None:
        item = self.results.currentItem()
        return item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None

    # -- retrieve --------------------------------------------------------------------

    def retrieve(self) -> None:
        """Retrieve the chosen series into the cache in the background (a series already
        complete there is not retrieved again); a SEG series brings the image series it
        segments too. The dialog closes when they are there."""
        series = self.chosen_series()
        if series is None or self._pacs is None:
            return
        name = series.description or series.uid
        if series.modality.upper() in UNOPENABLE_MODALITIES:  # it would arrive and open as nothing
            self._set_status(f"{name} is a {series.modality}, which segview does not open: choose an image series, "
                             "or a SEG to open with its image.")
            return
        self.progress.setRange(0, series.images or 0)
        self.progress.setValue(0)
        self.progress.show()
        if series.modality.upper() == "SEG":
            self._set_status(f"Retrieving the SEG {name}, then the image series it segments...")
            self._run(retrieve_seg_with_image, self._pacs, series, self.cache, returned=self._retrieved,
                      progress=True, open_series=self.open_series)
        else:
            self._set_status(f"Retrieving {name}...")
            self._run(retrieve_into_cache, self._pacs, series.uid, self.cache, series.images,
                      returned=lambda folder: self._retrieved(Retrieved(folder)), progress=True)

    def _retrieved(self, retrieved: Retrieved) -> None:
        self.folder, self.labels = retrieved.image, retrieved.labels
        self.progress.hide()
        self.retrieved.emit(str(retrieved.image or retrieved.labels))
        self.accept()

    def cancel(self) -> None:
        """Stop the retrieve after the image in transfer (nothing of it is kept), or the
        search (a DIMSE PACS that does not answer is hung up on at once)."""
        self._stop.set()
        self._set_status("Cancelling...")

    # -- the background job ----------------------------------------------------------

    def _run(self, function, *args, returned, progress: bool = False, **keywords) -> None:
        self._stop.clear()
        self._idle.clear()
        self._retrieving = progress  # only retrieves report progress
        stop, idle = self._stop, self._idle  # the job holds no reference to the dialog (see _job)

        def job(**kwargs):
            try:
                if progress:
                    return function(*args, should_stop=stop.is_set, **keywords, **kwargs)
                return function(*args, **keywords)
            finally:
                idle.set()

        worker = Worker(job, reports_progress=progress)
        worker.signals.progress.connect(self._show_progress)
        worker.signals.returned.connect(returned)
        worker.signals.errored.connect(self._job_failed)
        worker.signals.finished.connect(self._job_ended)
        # Kept until the next job: its signals must outlive run(). The job refers to no widget,
        # so no reference cycle holds the dialog: it goes when closed, not at a collection.
        self._job = worker
        self._update_buttons()
        worker.start()

    def _job_ended(self) -> None:
        self._update_buttons()
        if self._closing is not None:  # closed during a retrieve: it has removed what it had received
            result, self._closing = self._closing, None
            super().done(result)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _job_failed(self, exc: Exception) -> None:
        self.progress.hide()
        self._update_buttons()
        if isinstance(exc, (RetrieveCancelled, SearchCancelled)):
            self._set_status(str(exc))
        elif isinstance(exc, SegviewError):  # the PACS's, or a SEG that names no image series
            if isinstance(exc, PacsAuthError):
                self.server.forget_secrets()
            self._fail(str(exc))
        else:  # a programming error: shown, not swallowed
            self._fail(f"Unexpected error: {type(exc).__name__}: {exc}")

    def _fail(self, message: str) -> None:
        self.status.setStyleSheet("color: #c0392b")
        self.status.setText(message)
        self.failed.emit(message)

    def _set_status(self, message: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(message)

    def done(self, result: int) -> None:
        """Closing stops a retrieve in progress; the dialog closes once it has removed what
        it had received (the window is not held meanwhile). A search in progress is left to
        finish: it writes nothing."""
        self._stop.set()
        if self._retrieving and not self._idle.is_set():
            self._closing = result
            self.close_button.setEnabled(False)
            self._set_status("Stopping the retrieve: the dialog closes once what it received is removed...")
            return
        self._closing = None
        super().done(result)


@dataclass(frozen=True)
class ImageSeries:
    """The DICOM files of the image series a SEG was made on, as the session read them:
    offered to be sent with the SEG to a PACS that does not hold them."""

    uid: str
    description: str
    files: tuple[Path, ...]


@dataclass(frozen=True)
class _Check:
    """What the PACS said of the image series the SEG refers to."""

    missing: tuple[ReferencedSeries, ...] = ()  # the series it does not hold
    elsewhere: tuple[ReferencedSeries, ...] = ()  # the series it holds in another study than the SEG's
    unchecked: str = ""                         # why it could not be asked
    images_here: bool = False                   # ``images``' files are all still here (and one of those series)


class SendDialog(QDialog):
    """Send files to a PACS chosen from the saved ones; ``sent`` carries how many were
    stored, ``failed`` the reason when the PACS could not be reached or refused some.

    Send first asks the PACS whether it holds the image series the SEGs among the files
    refer to. When it does not, or cannot say, nothing is sent until the reader chooses
    (``asked`` carries the question): Send anyway, Send with the image series (``images``,
    when its files are still here) or Cancel. When it holds them in another study than the
    SEG's (split or merged at the PACS), the question is: Send into that study (the default:
    a copy of the SEG filed into that study, a new object with UIDs of its own), Send as it is or Cancel."""

    sent = Signal(int)
    failed = Signal(str)
    asked = Signal(str)

    def __init__(self, parent, files, images: ImageSeries | None = None):
        super().__init__(parent)
        self.setWindowTitle("Send to PACS")
        self.files = [Path(f) for f in files]
        self.images = images
        self.server = ServerForm()
        self.progress = QProgressBar()
        self.progress.setRange(0, len(self.files))
        self.status = QLabel(f"Send {len(self.files)} file(s): " + ", ".join(f.name for f in self.files[:3])
                             + (", ..." if len(self.files) > 3 else ""))
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self.send)
        self.send_anyway_button = QPushButton("Send anyway")
        self.send_anyway_button.clicked.connect(lambda: self._store(self.files))
        self.send_images_button = QPushButton("Send with the image series")
        self.send_images_button.clicked.connect(self._store_with_images)
        self.send_into_study_button = QPushButton("Send into that study")
        self.send_into_study_button.clicked.connect(lambda: self._store(self.files, self._elsewhere))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self._not_sent)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.progress, 1)
        for button in (self.send_button, self.send_into_study_button, self.send_anyway_button,
                       self.send_images_button, self.cancel_button, self.close_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(self.server)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._pacs: Pacs | None = None
        self._job: Worker | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._closing: int | None = None  # closed during a store: the result, once it has ended
        self._checking = False  # the PACS is being asked; closing drops its answer
        self._elsewhere: tuple[ReferencedSeries, ...] = ()  # the series of the question, held in another study
        self.stored = 0
        self._show_question(False)
        # The question is about the PACS that was asked: another address withdraws it.
        self.server.url.currentTextChanged.connect(self._withdraw_question)
        self.resize(640, 160)

    def send(self) -> None:
        """Ask the PACS in the background whether it holds the image series the SEG refers
        to; store the files when it does, else ask the reader."""
        try:
            self._pacs = pacs = self.server.open_pacs()
        except PacsError as exc:
            self._fail(str(exc))
            return
        self._set_status(f"Checking that {pacs.url} holds the image series the SEG refers to...")
        files, images = self.files, self.images
        self._checking = True
        self._run(lambda: _check(pacs, files, images), returned=self._checked)

    def _checked(self, check: _Check) -> None:
        if not self._checking:  # the dialog was closed meanwhile: nothing is sent
            return
        self._checking = False
        assert self._pacs is not None
        if not check.missing and not check.unchecked:
            if check.elsewhere:
                self._ask_study(check.elsewhere)
            else:
                self._store(self.files)
            return
        images = ", or send the image series too" if check.images_here else ""
        if check.unchecked:
            # Not sent on a guess: a careful reader wants to know the check was not made (an
            # archive without QIDO-RS, a C-FIND refused), and decides; a PACS that is down
            # fails as a send would, without a question.
            question = f"{check.unchecked}\n\nSend anyway{images}?"
        else:
            descriptions = {self.images.uid: self.images.description} if self.images else {}
            missing = not_held_text(self._pacs.url, list(check.missing), descriptions)
            question = f"{missing}: send anyway{images}? Sent alone, no viewer of the PACS can show the SEG."
        self._ask(question, images=check.images_here)

    def _ask_study(self, elsewhere: tuple[ReferencedSeries, ...]) -> None:
        """Ask whether to send the SEG into the study the PACS holds its images in: sent as
        it is, it sits alone in its own study, and a viewer that opens a study (OHIF) shows
        the images without it."""
        assert self._pacs is not None
        self._elsewhere = elsewhere
        self._ask(f"{held_elsewhere_text(self._pacs.url, list(elsewhere))}. Send the SEG into that study? Sent as "
                  "it is, it sits alone in a study with no images, and a viewer that opens the images' study does "
                  "not show it.", study=True)

    def _ask(self, question: str, images: bool = False, study: bool = False) -> None:
        self.status.setStyleSheet("color: #b9770e")
        self.status.setText(question)
        self._show_question(True, images=images, study=study)
        self._fit()
        self.asked.emit(question)

    def _fit(self) -> None:
        """Grow to show the question whole: a word-wrapped label's height is not part of a
        dialog's minimum size, so the form above it was squeezed to a few pixels."""
        self.layout().activate()
        needed = self.heightForWidth(self.width()) if self.hasHeightForWidth() else self.sizeHint().height()
        if needed > self.height():
            self.resize(self.width(), needed)

    def _show_question(self, asking: bool, images: bool = False, study: bool = False) -> None:
        self.send_button.setVisible(not asking)
        self.send_into_study_button.setVisible(asking and study)
        self.send_anyway_button.setText("Send as it is" if study else "Send anyway")
        self.send_anyway_button.setVisible(asking)
        self.send_images_button.setVisible(asking and images)
        self.cancel_button.setVisible(asking)
        # Enter never sends a SEG its images' PACS lacks unasked; into its images' study is the safe choice.
        default = self.send_into_study_button if asking and study else self.cancel_button if asking else (
            self.send_button)
        default.setDefault(True)

    def _withdraw_question(self, _address: str = "") -> None:
        if not self.cancel_button.isHidden():
            self._not_sent()

    def _not_sent(self) -> None:
        self._show_question(False)
        self.send_button.setEnabled(True)
        self._set_status("Nothing was sent.")

    def _store_with_images(self) -> None:
        assert self.images is not None
        self._store([*self.images.files, *self.files])  # the images first: the PACS has them when the SEG comes

    def _store(self, files: list[Path], elsewhere: Sequence[ReferencedSeries] = ()) -> None:
        """Store ``files`` in the background, each SEG among them into the study the PACS
        holds its images in where ``elsewhere`` says it is another."""
        pacs = self._pacs
        assert pacs is not None
        self._show_question(False)
        self.progress.setRange(0, len(files))
        self.progress.setValue(0)  # not the last send's
        self._set_status(f"Sending to {pacs.url}...")
        self._run(lambda progress: _send(pacs, files, elsewhere, progress), returned=self._sent, progress=True)

    def _run(self, function, returned, progress: bool = False) -> None:
        """``function`` in the pool (given ``progress=`` when ``progress``), then ``returned(result)``."""
        self.send_button.setEnabled(False)
        self._idle.clear()
        idle = self._idle  # no reference to the dialog (PacsDialog._run)

        def job(**kwargs):
            try:
                return function(**kwargs)
            finally:
                idle.set()

        worker = Worker(job, reports_progress=progress)
        worker.signals.progress.connect(lambda done, total: self.progress.setValue(done))
        worker.signals.returned.connect(returned)
        worker.signals.errored.connect(self._job_failed)
        worker.signals.finished.connect(self._job_ended)
        self._job = worker
        worker.start()

    def _job_ended(self) -> None:
        if self._closing is not None:  # closed during the store: its files' fate is known now
            result, self._closing = self._closing, None
            super().done(result)

    def _sent(self, uids: list[str]) -> None:
        self.server.remember()
        self.stored = len(uids)
        self.status.setText(f"{len(uids)} file(s) stored in {self.server.address()}.")
        self.send_button.setEnabled(True)
        self.sent.emit(len(uids))

    def _job_failed(self, exc: Exception) -> None:
        self._checking = False
        if isinstance(exc, PacsAuthError):
            self.server.forget_secrets()
        self.progress.reset()  # a full bar beside "Cannot reach the PACS" read as sent
        self._fail(str(exc) if isinstance(exc, PacsError) else f"Unexpected error: {exc!r}")

    def _fail(self, message: str) -> None:
        self.status.setStyleSheet("color: #c0392b")
        self.status.setText(message)
        self.send_button.setEnabled(True)
        self.failed.emit(message)

    def _set_status(self, message: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(message)
        self._fit()

    def done(self, result: int) -> None:
        """A store is not interrupted halfway (its files' fate must be known): closed during
        one, the dialog closes when it has ended, and the window is not held meanwhile. The
        check before a store writes nothing: closed during it, the dialog closes at once and
        nothing is sent."""
        if self._checking:
            self._checking = False
        elif not self._idle.is_set():
            self._closing = result
            self.send_button.setEnabled(False)
            self.close_button.setEnabled(False)
            self.status.setText("Closing once the store has ended (a store is not interrupted halfway)...")
            return
        self._closing = None
        super().done(result)


def _check(pacs: Pacs, files: list[Path], images: ImageSeries | None) -> _Check:
    """Whether ``pacs`` holds the image series the SEGs among ``files`` refer to (in a
    worker: it asks the PACS, and looks for ``images``' files on disk)."""
    try:
        references = check_references(pacs, files)
    except ReferenceCheckFailed as exc:
        return _Check(unchecked=str(exc), images_here=_files_here(images))
    missing = tuple(reference for reference in references if reference.missing)
    wanted = images is not None and images.uid in {reference.series_uid for reference in missing}
    return _Check(missing, tuple(reference for reference in references if reference.elsewhere),
                  images_here=wanted and _files_here(images))


def _send(pacs: Pacs, files: list[Path], elsewhere: Sequence[ReferencedSeries], progress: Progress) -> list[str]:
    """Store ``files`` (in a worker), a SEG whose images ``elsewhere`` finds in another study
    as a copy filed into that study: the file itself is not changed."""
    with tempfile.TemporaryDirectory(prefix="segview-send-") as folder:
        return pacs.store(into_held_study(files, elsewhere, folder), progress=progress)


def _files_here(images: ImageSeries | None) -> bool:
    return images is not None and bool(images.files) and all(path.is_file() for path in images.files)


def open_from_pacs(parent=None, open_series: str | None = None) -> Retrieved | None:
    """File > Open from PACS: what was retrieved (an image series' folder, and the SEG to
    open on it when a SEG series was chosen; a SEG of ``open_series``, the series on
    screen, comes without a folder), or None when the user closed the dialog without
    retrieving anything."""
    dialog = PacsDialog(parent, open_series=open_series)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return Retrieved(dialog.folder, dialog.labels)


def send_to_pacs(parent, files, images: ImageSeries | None = None) -> int:
    """File > Send SEG to PACS: sends ``files`` (the exported SEG) to a PACS the user
    chooses, with ``images`` (the SEG's image series) where the reader asks for them; the
    number of files stored (0 when closed without sending)."""
    dialog = SendDialog(parent, files, images)
    dialog.exec()
    return dialog.stored
