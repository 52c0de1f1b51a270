"""Picture archives (PACS): find studies and series, retrieve a series, store objects.

One interface, two protocols, chosen by the address of the archive:

    http://host:port/dicom-web (or https)   DICOMweb: QIDO-RS find, WADO-RS retrieve, STOW-RS store
    dimse://AET@host:port                   DIMSE: C-FIND, C-GET, C-STORE (Study Root model),
                                            from a configurable calling AE title
    dimse+tls://AET@host:port               DIMSE over TLS

Who segview is and whom it trusts (``pacs_auth``): ``Credentials`` (a user name and
password, or a bearer token renewed on 401) and a CA bundle for a hospital's own
certificate authority; the system's authorities otherwise. An address never carries a
password.

Every failure a user can meet (archive down or unreachable, association refused, HTTP
error, no answer in time, unknown UID, a store the archive refuses) is a ``PacsError``
whose message says what happened. A retrieve writes into a hidden folder beside the
destination and moves the images in only when the whole series has arrived, so a
cancelled or broken retrieve leaves nothing half-written behind.
"""
from __future__ import annotations

import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from .errors import PacsError
from .pacs_auth import (HOW_TO_LOG_IN, BearerAuth, Credentials, PacsAuthError, PacsCertificateError,
                        certificate_failure, https_verify, refuse_userinfo, tls_context)
from .report import counted

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]

#: The calling AE title segview uses unless told otherwise (up to 16 characters).
DEFAULT_CALLING_AE = "SEGVIEW"
#: Seconds to wait for a connection or an answer before giving up.
DEFAULT_TIMEOUT_S = 30.0
#: At most this many studies per search: narrow the search to see others.
MAX_STUDIES = 500
#: A series of at most this many files may be one multi-frame image (an enhanced CT or MR,
#: a cine loop): a search asks how many frames it holds, for at most
#: ``MAX_FRAME_QUERIES`` series, so that a long list of studies is not slowed.
FEW_FILES = 2
MAX_FRAME_QUERIES = 50
#: Modalities of series that hold no images (their frames are no slices a reader counts).
NOT_IMAGES = frozenset({"SEG", "SR", "PR", "KO", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC"})

__all__ = ["DEFAULT_CALLING_AE", "DEFAULT_TIMEOUT_S", "FEW_FILES", "MAX_FRAME_QUERIES", "MAX_STUDIES", "NOT_IMAGES",
           "Credentials", "Pacs", "PacsAuthError", "PacsCertificateError", "PacsError", "Query",
           "ReferenceCheckFailed", "ReferencedSeries", "Retrieved", "RetrieveCancelled", "STUDY_ATTRIBUTES",
           "SearchCancelled", "Series", "SeriesNotFound", "Study", "check_references", "connect", "date_range",
           "filed_uid", "held_elsewhere_text", "images_text", "into_held_study", "missing_series", "not_held_text",
           "referenced_series", "retrieve_into_cache", "retrieve_seg_with_image"]


class RetrieveCancelled(PacsError):
    """The user stopped a retrieve; nothing of it was kept."""


class SearchCancelled(PacsError):
    """The user stopped a search."""


class SeriesNotFound(PacsError):
    """The archive holds no series with the UID asked for."""


SEARCH_CANCELLED = "Search cancelled."


class ReferenceCheckFailed(PacsError):
    """The PACS could not say whether it holds the image series a SEG refers to (it refused
    or does not support the query); storing may still work."""


@dataclass(frozen=True)
class Query:
    """What to look for. Empty fields match anything.

    ``patient_name`` matches names that start with it (a family name is enough) unless it
    holds DICOM wildcards (``*``, ``?``); ``dates`` is a DICOM date range of the study
    (``YYYYMMDD-YYYYMMDD``, open at either end, or one day; see ``date_range``).
    """

    patient_id: str = ""
    patient_name: str = ""
    modality: str = ""
    dates: str = ""


@dataclass(frozen=True)
class Series:
    """One series in the archive, as a results table shows it."""

    uid: str
    study_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    images: int | None = None  # files (instances)
    #: The frames of its multi-frame images, with their other images (one each), where the
    #: search asked (``FEW_FILES``): a radiologist counts an enhanced CT of 38 frames 38 images.
    frames: int | None = field(default=None, compare=False)
    #: The study's attributes the PACS answered with a series found by its UID alone
    #: (``STUDY_ATTRIBUTES``: keyword, value), for a SEG sent into that study.
    study_attributes: tuple[tuple[str, str], ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Study:
    """One study in the archive, with its series once they were asked for."""

    uid: str
    patient_id: str = ""
    patient_name: str = ""
    date: str = ""  # YYYYMMDD
    description: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    images: int | None = None  # files (instances)
    frames: int | None = field(default=None, compare=False)  # as Series.frames, where its series say it
    series: tuple[Series, ...] = field(default=(), compare=False)


def images_text(images: int | None, frames: int | None = None, noun: str = "") -> str:
    """A count of ``images`` (files) as a radiologist reads it: "38 (1 file)" where
    multi-frame files hold more ``frames``, "12" otherwise, "" where the PACS did not say;
    with ``noun`` ("image"): "38 images (1 file)"."""
    if images is None:
        return ""
    count = frames if frames is not None and frames > images else images
    return (counted(count, noun) if noun else str(count)) + (f" ({counted(images, 'file')})" if count > images else "")


def date_range(text: str) -> str:
    """A DICOM date range from what a user typed: ``20240101-20240131``, ``20240101-``,
    ``-20240131``, ``20240101``; ISO dates (``2024-01-01``) and ``..`` between them are
    accepted too. Raises PacsError for anything else."""
    text = text.strip()
    if not text:
        return ""
    iso = r"(\d{4})-(\d{2})-(\d{2})"
    text = re.sub(iso, r"\1\2\3", text).replace("..", "-")
    if not re.fullmatch(r"(\d{8})?(-(\d{8})?)?", text) or text == "-":
        raise PacsError(f"'{text}' is not a date range; write FROM-TO as YYYYMMDD-YYYYMMDD "
                        "(either end may be left out, e.g. 20240101- for 'since').")
    return text


def connect(url: str, calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S,
            credentials: Credentials | None = None, ca_bundle=None) -> Pacs:
    """The archive at ``url``: a DICOMweb base URL (``http(s)://...``) or
    ``dimse://AET@host:port`` (``dimse+tls://`` over TLS). ``calling_ae`` is segview's AE
    title for DIMSE; ``timeout`` is in seconds; ``credentials`` say who segview is;
    ``ca_bundle`` (a PEM file) holds the only authorities trusted for TLS, instead of the
    system's. Nothing is sent yet. Raises PacsError for a malformed address, an address
    that carries a password, or a CA bundle that cannot be read."""
    scheme = urlsplit(url).scheme.lower()
    if ca_bundle and scheme not in ("https", "dimse+tls"):
        raise PacsError("A CA bundle is only for TLS: use an https:// or dimse+tls:// address.")
    if scheme in ("http", "https"):
        return DicomWebPacs(url, calling_ae, timeout, credentials, ca_bundle)
    if scheme in ("dimse", "dimse+tls"):
        return DimsePacs(url, calling_ae, timeout, credentials, ca_bundle)
    raise PacsError(f"'{_without_userinfo(url)}' is not a PACS address; use a DICOMweb URL "
                    "(https://host:port/dicom-web) or dimse://AET@host:port (dimse+tls:// over TLS).")


def _without_userinfo(url: str) -> str:
    """``url`` without its password (a DIMSE address keeps its AE title)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}@{parts.netloc.rpartition('@')[2]}").geturl()


class Pacs:
    """What both protocols share: the search built from studies and series, the safe
    retrieve into a folder, and the store of files."""

    def __init__(self, url: str, calling_ae: str, timeout: float, credentials: Credentials | None = None,
                 ca_bundle=None):
        calling_ae = calling_ae.strip()
        if not calling_ae or len(calling_ae) > 16 or "\\" in calling_ae:
            raise PacsError(f"'{calling_ae}' is not an AE title: 1 to 16 characters, no backslash.")
        self.url, self.calling_ae, self.timeout = url, calling_ae, float(timeout)
        self.credentials = credentials or Credentials()
        self.ca_bundle = ca_bundle
        self._tls = tls_context(ca_bundle)  # also reads the bundle now: a wrong file is told before sending
        self._should_stop: ShouldStop | None = None  # during ``find``: a DIMSE connection hangs up when it says so

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # -- what a protocol provides ----------------------------------------------------

    def find_studies(self, query: Query) -> list[Study]:
        """The studies that match ``query``, newest first (at most MAX_STUDIES).
        Raises PacsError."""
        raise NotImplementedError

    def find_series(self, study_uid: str, modality: str = "") -> list[Series]:
        """The series of one study (of one modality if given), by series number; none of a
        study the archive does not hold. Raises PacsError."""
        raise NotImplementedError

    def locate_series(self, series_uid: str) -> Series:
        """The series with this UID, wherever it is. Raises SeriesNotFound when the archive
        does not hold it, PacsError otherwise."""
        raise NotImplementedError

    def _count_images(self, series: Series) -> int:
        """How many images the archive holds in ``series``."""
        raise NotImplementedError

    def _instances(self, series: Series) -> list[Dataset]:
        """The image-level answers of ``series``: SOP Instance and Class UIDs, NumberOfFrames
        where the archive gives it."""
        raise NotImplementedError

    def _retrieve(self, series: Series, folder: Path, progress: Progress,
                  should_stop: ShouldStop) -> int:
        """Write every image of ``series`` into ``folder`` (one file each); the count."""
        raise NotImplementedError

    def _store_one(self, path: Path, dataset: Dataset) -> None:
        """Send one file; raise PacsError when the archive refuses it, _ConnectionFailure
        when it cannot be reached."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------

    def find(self, query: Query, should_stop: ShouldStop | None = None) -> list[Study]:
        """The matching studies with their series (only series of ``query.modality``
        when one is given). ``should_stop()`` is asked between queries, and a DIMSE
        connection waiting on a silent PACS hangs up as soon as it says stop. Raises
        SearchCancelled when stopped, PacsError otherwise."""
        stop = should_stop or (lambda: False)
        self._should_stop = stop
        frame_queries = [MAX_FRAME_QUERIES]  # left for this search
        try:
            found = []
            for study in self.find_studies(query):
                if stop():
                    raise SearchCancelled(SEARCH_CANCELLED)
                series = [self._with_frames(s, frame_queries) for s in self.find_series(study.uid, query.modality)]
                found.append(replace(study, series=tuple(series), frames=_study_frames(study, series)))
            return found
        finally:
            self._should_stop = None

    def _with_frames(self, series: Series, queries_left: list[int]) -> Series:
        """``series`` with its ``frames`` where it has few files of images, may be multi-frame,
        and ``queries_left[0]`` allows one more query. A PACS that cannot say leaves them unknown."""
        if not series.images or series.images > FEW_FILES or series.modality.upper() in NOT_IMAGES \
                or queries_left[0] <= 0:
            return series
        queries_left[0] -= 1
        try:
            instances = self._instances(series)
        except SearchCancelled:
            raise
        except PacsError:  # the count of files stands
            return series
        return replace(series, frames=_frames(instances))

    def get_series(self, series_uid: str, folder, progress: Progress | None = None,
                   should_stop: ShouldStop | None = None) -> list[Path]:
        """Retrieve a whole series into ``folder`` (created if needed), one DICOM file per
        image named by its SOP Instance UID; returns the paths, sorted.

        ``progress(done, total)`` is called after each image; ``should_stop()`` is asked
        between images. Images arrive in a hidden folder beside ``folder`` and are moved
        in only when all have arrived, so a cancelled, cut or refused retrieve leaves no
        partial series. Raises RetrieveCancelled when stopped, PacsError otherwise.
        """
        folder = Path(folder)
        series = self.locate_series(series_uid)
        if series.images is None:  # the count tells a complete transfer from a cut one
            series = replace(series, images=self._count_images(series))
        made = not folder.exists()  # taken away again when nothing comes of the retrieve
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
        except OSError as exc:
            raise PacsError(f"Cannot write into {folder}: {exc.strerror or exc}.") from exc
        kept = False
        try:
            count = self._retrieve(series, staging, progress or (lambda done, total: None),
                                   should_stop or (lambda: False))
            if count < (series.images or 1):
                raise PacsError(f"The PACS sent only {count} of the {series.images} images of the series "
                                f"{series_uid}.")
            files = sorted(_move_all(staging, folder))
            kept = True
            return files
        except RetrieveCancelled:
            raise
        except PacsError as exc:
            raise PacsError(f"{exc} Nothing of the series was kept; try again.") from exc
        except OSError as exc:  # the disk, not the PACS
            raise PacsError(f"Cannot write the images into {folder.parent}: {exc.strerror or exc}. "
                            "Nothing of the series was kept.") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if made and not kept:
                shutil.rmtree(folder, ignore_errors=True)  # made here, for what never came

    def store(self, files: Iterable, progress: Progress | None = None) -> list[str]:
        """Send DICOM files (a SEG, a series) to the archive; returns the SOP Instance
        UIDs it accepted. Every file is tried; if any is refused, PacsError names each
        refused file and the archive's reason (its status). An archive that cannot be
        reached stops the store at once. The files themselves are never changed."""
        paths = [Path(f) for f in files]
        datasets = [_read_header(p) for p in paths]
        stored, refused = [], []
        with self._sender(datasets) as send:
            for n, (path, dataset) in enumerate(zip(paths, datasets, strict=True)):
                try:
                    send(path, dataset)
                    stored.append(str(dataset.SOPInstanceUID))
                except _STOPS_A_STORE as exc:
                    done = f" ({len(stored)} of {len(paths)} files were stored before)" if stored else ""
                    raise type(exc)(f"{exc}{done}") from exc
                except PacsError as exc:
                    refused.append(f"{path.name}: {exc}")
                if progress:
                    progress(n + 1, len(paths))
        if refused:
            raise PacsError(f"The PACS refused {len(refused)} of {len(paths)} file(s) "
                            f"({len(stored)} stored):\n  " + "\n  ".join(refused))
        return stored

    @contextmanager
    def _sender(self, datasets: list[Dataset]):
        """A function that sends one file, valid inside the block (DIMSE opens one
        association for all the files)."""
        yield self._store_one


# -- a series into the cache, a SEG with its image ----------------------------------------

@dataclass(frozen=True)
class Retrieved:
    """What a retrieve brought to open: ``image``, the folder of an image series (None for a
    SEG of the series already open), and ``labels``, the DICOM SEG to open on it (None for
    an image series alone)."""

    image: Path | None
    labels: Path | None = None


def retrieve_into_cache(pacs: Pacs, series_uid: str, cache, images: int | None = None,
                        progress: Progress | None = None, should_stop: ShouldStop | None = None) -> Path:
    """The folder ``cache/<series_uid>`` with the whole series in it: retrieved
    (``Pacs.get_series``) unless the ``images`` the archive counts are there already.
    Raises what ``get_series`` raises."""
    folder = Path(cache) / series_uid
    if images and folder.is_dir() and len(list(folder.glob("*.dcm"))) == images:
        return folder
    pacs.get_series(series_uid, folder, progress, should_stop)
    return folder


def retrieve_seg_with_image(pacs: Pacs, seg: Series, cache, progress: Progress | None = None,
                            should_stop: ShouldStop | None = None, open_series: str | None = None) -> Retrieved:
    """Retrieve the SEG series ``seg`` into ``cache``, then the image series its last SEG
    (``dicomseg.latest_seg``) segments, unless that series is ``open_series`` (the series
    on screen: ``Retrieved.image`` is None) or complete in the cache already. Raises
    PacsError (SeriesNotFound, saying so, when the archive does not hold the image series:
    nothing is opened) and DicomSegError for a series with no usable SEG."""
    from .dicomseg import latest_seg, referenced_series_uid  # highdicom: only when a SEG is opened

    labels = latest_seg(retrieve_into_cache(pacs, seg.uid, cache, seg.images, progress, should_stop))
    image_uid = referenced_series_uid(labels)
    if image_uid == open_series:
        return Retrieved(None, labels)
    try:
        image = pacs.locate_series(image_uid)
    except SeriesNotFound:
        raise SeriesNotFound(f"The SEG {seg.description or seg.uid} segments the image series {image_uid}, which "
                             f"the PACS at {pacs.url} does not hold, so there is nothing to open it on.") from None
    return Retrieved(retrieve_into_cache(pacs, image.uid, cache, image.images, progress, should_stop), labels)


class _ConnectionFailure(PacsError):
    """The archive could not be reached at all (down, wrong address, no answer)."""


#: Failures that would fail every other file too: the store stops at once.
_STOPS_A_STORE = (_ConnectionFailure, PacsAuthError, PacsCertificateError)


# -- the image series a SEG refers to ---------------------------------------------------

@dataclass(frozen=True)
class ReferencedSeries:
    """An image series a SEG refers to (its ReferencedSeriesSequence), with the SEG's study
    (the PACS may hold the series in another one): ``images``, how many of its images the
    SEG names; ``held``, how many the PACS holds (0: none, or not asked); ``held_in``, the
    series as the PACS holds it (its ``study_uid``: the study it is in), None where it holds
    none or was not asked. A reference is the series it names: the rest is not compared."""

    study_uid: str
    series_uid: str
    images: int = field(default=0, compare=False)
    held: int = field(default=0, compare=False)
    held_in: Series | None = field(default=None, compare=False)

    @property
    def missing(self) -> bool:
        """The PACS holds none of the series, or fewer images than the SEG names."""
        return self.held_in is None or self.held < self.images

    @property
    def elsewhere(self) -> bool:
        """The PACS holds the whole series, in another study than the SEG's (a study split
        or merged there): a SEG sent as it is would sit in a study of its own, which a
        viewer that opens a study (OHIF) shows without its images."""
        return not self.missing and self.held_in is not None and self.held_in.study_uid != self.study_uid


def referenced_series(files: Iterable) -> list[ReferencedSeries]:
    """The image series the SEGs among ``files`` refer to, less the series the files
    themselves belong to (images sent with their SEG). Raises PacsError for a file that is
    not DICOM or cannot be read."""
    from .dicomseg import SEG_SOP_CLASS, referenced_images  # here: highdicom is imported only when a SEG is sent

    headers = [_read_header(Path(f)) for f in files]
    sent_along = {_text(ds.get("SeriesInstanceUID")) for ds in headers}
    found: dict[str, ReferencedSeries] = {}
    for ds in headers:
        if _text(ds.get("SOPClassUID")) != SEG_SOP_CLASS:
            continue
        for uid, images in referenced_images(ds).items():
            known = found.get(uid)
            if uid not in sent_along and (known is None or images > known.images):  # two revisions: the most
                found[uid] = ReferencedSeries(_text(ds.get("StudyInstanceUID")), uid, images)
    return list(found.values())


def check_references(pacs: Pacs, files: Iterable) -> list[ReferencedSeries]:
    """The image series the SEGs among ``files`` refer to, in the order the SEGs name them,
    each with what ``pacs`` holds of it (``held``, ``held_in``): ``missing`` where it holds
    none or fewer images than a SEG names (a send cut short leaves part of a series),
    ``elsewhere`` where it holds it in another study than the SEG's. Asked once a study
    (QIDO-RS or C-FIND), and once more by its UID alone for a series not in the SEG's study.

    A PACS that cannot be reached, or refuses who segview is, raises its PacsError as it
    is: the store would fail alike. One that refuses or cannot answer the query raises
    ReferenceCheckFailed, for the caller to say the check was not made."""
    wanted = referenced_series(files)
    try:
        in_studies = {series.uid: series for study_uid in dict.fromkeys(reference.study_uid for reference in wanted)
                      for series in pacs.find_series(study_uid)}
        checked = []
        for reference in wanted:
            series = in_studies.get(reference.series_uid) or _held_elsewhere(pacs, reference.series_uid)
            checked.append(replace(reference, held=_held_images(pacs, series), held_in=series))
    except _STOPS_A_STORE:
        raise
    except PacsError as exc:
        raise ReferenceCheckFailed(f"Could not check whether the PACS at {pacs.url} holds the image series "
                                   f"the SEG refers to: {exc}") from exc
    return checked


def missing_series(pacs: Pacs, files: Iterable) -> list[ReferencedSeries]:
    """The image series of ``check_references`` that ``pacs`` does not hold, or holds
    fewer images of than a SEG names (``held`` says how many): a SEG stored without its
    images is one no viewer of the PACS can show. Raises as ``check_references``."""
    return [reference for reference in check_references(pacs, files) if reference.missing]


#: The study-level attributes a SEG sent into the study the PACS holds its images in takes
#: from the PACS's answer, where it gave them: a viewer groups and lists studies by them.
STUDY_ATTRIBUTES = ("StudyDate", "StudyTime", "AccessionNumber", "StudyID")


def into_held_study(files: Iterable, references: Iterable[ReferencedSeries], folder) -> list[Path]:
    """``files``, each SEG among them whose image series ``references`` finds ``elsewhere``
    (all of them, in one study) replaced by a copy in ``folder`` filed into that study: its
    StudyInstanceUID, and the ``STUDY_ATTRIBUTES`` the PACS answered. The copy is a new
    object (``filed_uid``: new SOP Instance and Series Instance UIDs). The files themselves
    are not changed; a SEG whose series lie in several other studies is left as it is.
    Raises PacsError for a file that cannot be read or a copy that cannot be written."""
    from .dicomseg import SEG_SOP_CLASS, referenced_images

    held_in = {reference.series_uid: reference.held_in for reference in references
               if reference.elsewhere and reference.held_in is not None}
    sent = []
    for path in map(Path, files):
        header = _read_header(path)
        referenced = referenced_images(header) if _text(header.get("SOPClassUID")) == SEG_SOP_CLASS else {}
        studies = {held_in[uid].study_uid: held_in[uid] for uid in referenced if uid in held_in}
        study = next(iter(studies.values())) if len(studies) == 1 and set(referenced) <= set(held_in) else None
        sent.append(path if study is None else _filed_into(path, study, Path(folder)))
    return sent


def _filed_into(path: Path, series: Series, folder: Path) -> Path:
    """A copy of the SEG ``path`` in ``folder`` with the study of ``series``; same name, so
    that what the PACS says of it names the file the user chose."""
    try:
        copy = Path(tempfile.mkdtemp(dir=folder)) / path.name  # a folder each: two SEGs may share a name
        dataset = pydicom.dcmread(path)
        # An object moved to another study is another object, in a series of that study: with
        # its own UIDs the PACS never holds two objects under one UID (the SEG sent as it is too).
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = filed_uid(
            str(dataset.SOPInstanceUID), series.study_uid)
        dataset.SeriesInstanceUID = filed_uid(str(dataset.SeriesInstanceUID), series.study_uid)
        dataset.StudyInstanceUID = series.study_uid
        for keyword, value in series.study_attributes:
            setattr(dataset, keyword, value)
        dataset.save_as(copy, enforce_file_format=True)
    except (InvalidDicomError, OSError) as exc:
        raise PacsError(f"Cannot write a copy of {path.name} into the PACS's study: {exc}.") from exc
    return copy


def filed_uid(uid: str, study_uid: str) -> pydicom.uid.UID:
    """The UID that the object or series ``uid`` has once filed into the study ``study_uid``:
    new, and the same each time, so that a SEG sent into that study again is the object
    the PACS holds already, and the revisions of one SEG series stay one series there."""
    return pydicom.uid.generate_uid(entropy_srcs=["segview filed into a study", uid, study_uid])


def _held_elsewhere(pacs: Pacs, series_uid: str) -> Series | None:
    """The series in whatever study the PACS holds it (None: in none), for a series not in
    its SEG's study: a study split or merged at the PACS leaves it in another one.

    The SEG's study is asked first because every PACS answers that query (a C-FIND at
    series level with the study, as Study Root's hierarchy wants) and holds the series
    there almost always. The query by series UID alone is standard in QIDO-RS (/series at
    the top level) but relational in C-FIND, which a strictly hierarchical PACS may refuse:
    its refusal is a check not made, never read as "not held"."""
    try:
        return pacs.locate_series(series_uid)
    except SeriesNotFound:
        return None


def held_elsewhere_text(where: str, elsewhere: list[ReferencedSeries]) -> str:
    """"``where`` holds the image series this SEG refers to in another study (...)": each
    series with the study it is in and the SEG's own."""
    def one(m: ReferencedSeries) -> str:
        assert m.held_in is not None
        return f"series {m.series_uid} in the study {m.held_in.study_uid}, not the SEG's study {m.study_uid}"

    return f"{where} holds the image series this SEG refers to in another study ({'; '.join(map(one, elsewhere))})"


def _held_images(pacs: Pacs, series: Series | None) -> int:
    """How many images of ``series`` the PACS holds (0 for None); counted apart where its
    query did not say."""
    if series is None:
        return 0
    return series.images if series.images is not None else pacs._count_images(series)


def not_held_text(where: str, missing: list[ReferencedSeries], descriptions: dict[str, str] | None = None) -> str:
    """"``where`` does not hold the image series this SEG refers to (...)": each series by
    its description where ``descriptions`` (series UID -> description) has one, and its UID,
    with the share of its images held where the PACS holds part of it."""
    named = descriptions or {}

    def one(m: ReferencedSeries) -> str:
        text = f"{named[m.series_uid]}, series {m.series_uid}" if named.get(m.series_uid) else f"series {m.series_uid}"
        return text + (f": {m.held} of its {m.images} images" if m.held else "")

    whole = "all of " if any(m.held for m in missing) else ""
    return f"{where} does not hold {whole}the image series this SEG refers to ({'; '.join(one(m) for m in missing)})"


def _read_header(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise PacsError(f"{path.name} is not a DICOM file; only DICOM objects can be sent to a PACS.") from exc
    except OSError as exc:
        raise PacsError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _move_all(staging: Path, folder: Path) -> Iterator[Path]:
    for path in staging.iterdir():
        target = folder / path.name
        path.replace(target)  # same file system: a rename
        yield target


def _file_name(dataset: Dataset) -> str:
    uid = str(dataset.get("SOPInstanceUID", "") or "")
    if not re.fullmatch(r"[0-9.]{1,64}", uid):  # never let a header choose a path
        raise PacsError(f"The PACS sent an image with an invalid SOP Instance UID ({uid[:70]!r}).")
    return f"{uid}.dcm"


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _number(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _patient_name_filter(name: str) -> str:
    """What the user typed, as a DICOM match: a prefix unless it has wildcards."""
    name = name.strip()
    return name if not name or any(c in name for c in "*?") else name + "*"


def _study(ds: Dataset) -> Study:
    modalities = ds.get("ModalitiesInStudy", "")
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split("\\") if m]
    return Study(
        uid=_text(ds.get("StudyInstanceUID")), patient_id=_text(ds.get("PatientID")),
        patient_name=_text(ds.get("PatientName")), date=_text(ds.get("StudyDate")),
        description=_text(ds.get("StudyDescription")), accession=_text(ds.get("AccessionNumber")),
        modalities=tuple(str(m) for m in modalities),
        images=_number(ds.get("NumberOfStudyRelatedInstances")))


def _series(ds: Dataset, study_uid: str = "") -> Series:
    return Series(
        uid=_text(ds.get("SeriesInstanceUID")), study_uid=_text(ds.get("StudyInstanceUID")) or study_uid,
        modality=_text(ds.get("Modality")), description=_text(ds.get("SeriesDescription")),
        number=_number(ds.get("SeriesNumber")), images=_number(ds.get("NumberOfSeriesRelatedInstances")),
        study_attributes=tuple((k, _text(ds.get(k))) for k in STUDY_ATTRIBUTES if _text(ds.get(k))))


def _frames(instances: list[Dataset]) -> int | None:
    """The frames of ``instances`` (an image without NumberOfFrames is one); None when none
    says, as from a PACS that does not return NumberOfFrames."""
    counts = [_number(ds.get("NumberOfFrames")) for ds in instances]
    if all(count is None for count in counts):
        return None
    return sum(count or 1 for count in counts)


def _study_frames(study: Study, series: list[Series]) -> int | None:
    """The study's images counted as ``Series.frames``, where its series listed are all its
    files (no modality left out) and one of them said its frames."""
    if not any(s.frames for s in series) or sum(s.images or 0 for s in series) != study.images:
        return None
    return sum(s.frames or s.images or 0 for s in series)


def _newest_first(studies: list[Study]) -> list[Study]:
    return sorted(studies, key=lambda s: s.date, reverse=True)


def _by_number(series: list[Series]) -> list[Series]:
    return sorted(series, key=lambda s: (s.number is None, s.number or 0, s.description))


# -- DICOMweb ---------------------------------------------------------------------------

class DicomWebPacs(Pacs):
    """An archive reached through DICOMweb (dicomweb-client over HTTP)."""

    def __init__(self, url: str, calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S,
                 credentials: Credentials | None = None, ca_bundle=None):
        refuse_userinfo(url)
        super().__init__(url.rstrip("/"), calling_ae, timeout, credentials, ca_bundle)
        from dicomweb_client.api import DICOMwebClient  # here: requests is imported only when used

        parts = urlsplit(self.url)
        if not parts.hostname:
            raise PacsError(f"'{url}' has no host name.")
        self._where = parts.netloc
        session = _session(https_verify(ca_bundle))
        if self.credentials.token is not None:
            session.auth = BearerAuth(self.credentials.token)
        elif self.credentials.user:  # HTTP basic authentication
            session.auth = (self.credentials.user, self.credentials.password)
        self._client = DICOMwebClient(self.url, session=session, timeout=(self.timeout, self.timeout))
        # A clinician retries by hand; silent exponential retries would hide an archive that is down.
        self._client.set_http_retry_params(retry=False)

    def _answer(self, call: Callable[[], list]) -> list:
        """``call()``'s answer; during ``find`` the request runs in a thread of its own, so
        that a stop ends the search at once: requests cannot be interrupted, so a request
        to a silent server is left to end at its timeout, its answer unused."""
        stop = self._should_stop
        if stop is None:
            return call()
        answer: dict = {}

        def ask() -> None:
            try:
                answer["found"] = call()
            except BaseException as exc:  # raised again in the searching thread, by _request's rules
                answer["failed"] = exc

        thread = threading.Thread(target=ask, name="segview-dicomweb-search", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.1)
            if thread.is_alive() and stop():
                raise SearchCancelled(SEARCH_CANCELLED)
        if "failed" in answer:
            raise answer["failed"]
        return answer["found"]

    @contextmanager
    def _request(self, what: str):
        """Turn every failure of an HTTP exchange into one PacsError that says ``what``
        was being done and what went wrong."""
        import requests

        try:
            yield
        except requests.exceptions.HTTPError as exc:
            response = exc.response
            status = response.status_code if response is not None else "?"
            if status in (401, 403):
                raise self._refused_access(status, what) from exc
            reason = _http_reason(response)
            raise PacsError(f"The PACS at {self.url} refused to {what}: HTTP {status} {reason}") from exc
        except requests.exceptions.SSLError as exc:
            raise (certificate_failure(exc, self._where, self.ca_bundle) or PacsCertificateError(
                f"The TLS connection to the PACS at {self._where} failed ({_short(exc)}).")) from exc
        except requests.exceptions.Timeout as exc:
            raise _ConnectionFailure(f"The PACS at {self.url} did not answer within {self.timeout:g} s "
                                     f"while asked to {what}.") from exc
        except requests.exceptions.ConnectionError as exc:
            raise _ConnectionFailure(f"Cannot reach the PACS at {self.url} to {what}: is it running, and is "
                                     f"the address right? ({_short(exc)})") from exc
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"The PACS at {self.url} could not {what} ({_short(exc)}).") from exc
        except (ValueError, KeyError, InvalidDicomError, EOFError) as exc:
            # A malformed answer (JSON, multipart), or an image part cut short: a PACS that died
            # halfway through a retrieve left a part without its DICM header (seen in a test run).
            raise PacsError(f"The PACS at {self.url} gave an answer segview cannot read while asked to "
                            f"{what} ({_short(exc)}).") from exc

    def _refused_access(self, status: int, what: str) -> PacsAuthError:
        """A 401 or 403 in words: who was refused, and what to do."""
        where = f"The PACS at {self.url}"
        given = self.credentials
        if not given.given:
            return PacsAuthError(f"{where} asks who you are (HTTP {status}) to {what}: {HOW_TO_LOG_IN}.")
        if status == 403:
            who = f"the user {given.user}" if given.user else "this token"
            return PacsAuthError(f"{where} does not allow {who} to {what} (HTTP 403 Forbidden): ask the PACS "
                                 "administrators for access.")
        if given.token is not None:
            return PacsAuthError(f"{where} refused the token (HTTP 401) to {what}: it has expired or is not "
                                 "for this PACS; get a new one.")
        return PacsAuthError(f"{where} refused the user name {given.user} or its password (HTTP 401) to {what}.")

    def find_studies(self, query: Query) -> list[Study]:
        filters = {"PatientID": query.patient_id.strip(), "PatientName": _patient_name_filter(query.patient_name),
                   "ModalitiesInStudy": query.modality.strip().upper(), "StudyDate": date_range(query.dates)}
        fields = ["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "AccessionNumber"]
        with self._request("search for studies"):
            found = self._answer(lambda: self._client.search_for_studies(
                search_filters={k: v for k, v in filters.items() if v}, fields=fields, limit=MAX_STUDIES))
            return _newest_first([_study(Dataset.from_json(item)) for item in found])

    def find_series(self, study_uid: str, modality: str = "") -> list[Series]:
        import requests

        filters = {"Modality": modality.strip().upper()} if modality.strip() else None
        fields = ["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
        with self._request(f"list the series of the study {study_uid}"):
            try:
                # One request, no paging: the DICOMweb plugin of Orthanc (1.7) ignores offset, so paging
                # with get_remaining would never end.
                found = self._answer(lambda: self._client.search_for_series(study_uid, search_filters=filters,
                                                                            fields=fields))
            except requests.exceptions.HTTPError as exc:
                if exc.response is None or exc.response.status_code != 404:
                    raise
                # Some archives answer 404 for a study they do not hold, where Orthanc answers []. (A
                # wrong address answers 404 to every query: the next one, by series UID, fails.)
                found = []
            return _by_number([_series(Dataset.from_json(item), study_uid) for item in found])

    def locate_series(self, series_uid: str) -> Series:
        fields = ["SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
                  *STUDY_ATTRIBUTES]
        with self._request(f"find the series {series_uid}"):
            found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid}, fields=fields)
        return _only_series([_series(Dataset.from_json(item)) for item in found], series_uid, self.url)

    def _count_images(self, series: Series) -> int:
        return len(self._instances(series))

    def _instances(self, series: Series) -> list[Dataset]:
        with self._request(f"list the images of the series {series.uid}"):
            found = self._answer(lambda: self._client.search_for_instances(
                series.study_uid, series.uid, fields=["SOPInstanceUID", "SOPClassUID", "NumberOfFrames"]))
            return [Dataset.from_json(item) for item in found]

    def _retrieve(self, series: Series, folder: Path, progress: Progress, should_stop: ShouldStop) -> int:
        total = series.images or 0
        count = 0
        with self._request(f"send the images of the series {series.uid}"):
            images = self._client.iter_series(series.study_uid, series.uid)
            try:
                for dataset in images:
                    if should_stop():
                        raise RetrieveCancelled("The retrieve was cancelled; nothing was kept.")
                    dataset.save_as(folder / _file_name(dataset), enforce_file_format=True)
                    count += 1
                    progress(count, max(total, count))
            finally:
                close = getattr(images, "close", None)  # a generator: closes the HTTP stream at once
                if close is not None:
                    close()
        return count

    def _store_one(self, path: Path, dataset: Dataset) -> None:
        full = pydicom.dcmread(path)
        with self._request(f"store {path.name}"):
            answer = self._client.store_instances([full])
        failed = answer.get("FailedSOPSequence") if answer is not None else None
        if failed:
            reason = failed[0].get("FailureReason")
            raise PacsError(f"refused by the PACS (status 0x{int(reason or 0):04X}"
                            f"{': ' + _status_meaning(int(reason)) if reason else ''})")


def _session(verify: str | bool):
    """A requests session that checks certificates against ``verify`` and sends the DICOM
    wildcard ``*`` as it is in a query.

    ``verify`` holds even where REQUESTS_CA_BUNDLE is set (requests would let that variable
    override a session's own ``verify``, and a hospital's CA bundle would be ignored).
    The DICOMweb plugin of Orthanc (1.7, Debian 12) does not decode ``%2A``, so
    ``PatientName=Doe%2A`` would match nothing; ``*`` is legal in a URL query (RFC 3986
    sub-delimiter), so every archive reads it the same."""
    import requests

    class Session(requests.Session):
        def send(self, request, **kwargs):
            request.url = request.url.replace("%2A", "*")
            return super().send(request, **kwargs)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            merged["verify"] = self.verify
            return merged

    session = Session()
    session.verify = verify
    return session


def _only_series(found: list[Series] | None, series_uid: str, url: str) -> Series:
    # A PACS may ignore a key it does not support in a relational query and answer other series.
    found = [series for series in found or [] if series.uid == series_uid]
    if not found:
        raise SeriesNotFound(f"The PACS at {url} holds no series with the UID {series_uid}.")
    return found[0]


def _http_reason(response) -> str:
    """The status text and why, from the body: the failure reasons of a STOW-RS answer
    (DICOM JSON), else the start of the text."""
    if response is None:
        return ""
    try:
        answer = Dataset.from_json(response.json())
        reasons = sorted({int(item.FailureReason) for item in answer.get("FailedSOPSequence", [])
                          if "FailureReason" in item})
    except (ValueError, TypeError, AttributeError, KeyError):
        reasons = []
    if reasons:
        return f"{response.reason or ''} (" + ", ".join(
            f"status 0x{code:04X}: {_status_meaning(code)}" for code in reasons) + ")"
    body = " ".join((response.text or "").split())[:300]
    return f"{response.reason or ''}" + (f" ({body})" if body else "")


def _short(exc: Exception) -> str:
    """The gist of an exception: the operating system's reason when there is one."""
    text = " ".join(str(exc).split())
    reason = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if reason:
        return reason.group(0)
    return text if len(text) <= 200 else text[:200] + "..."


def _status_meaning(code: int) -> str:
    from pynetdicom.status import STORAGE_SERVICE_CLASS_STATUS, code_to_category

    meaning = STORAGE_SERVICE_CLASS_STATUS.get(code)
    return meaning[1] if meaning else code_to_category(code)


# -- DIMSE ------------------------------------------------------------------------------

class DimsePacs(Pacs):
    """An archive reached through DIMSE (pynetdicom): ``dimse://AET@host:port``, or
    ``dimse+tls://AET@host:port`` over TLS. Credentials travel as DICOM user identity
    negotiation (a user name and password, or a token as a JSON web token)."""

    def __init__(self, url: str, calling_ae: str = DEFAULT_CALLING_AE, timeout: float = DEFAULT_TIMEOUT_S,
                 credentials: Credentials | None = None, ca_bundle=None):
        super().__init__(url, calling_ae, timeout, credentials, ca_bundle)
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.username or parts.password is not None or not parts.hostname or port is None:
            raise PacsError(f"'{_without_userinfo(url)}' is not a DIMSE address; write dimse://AET@host:port "
                            "(AET: the PACS's AE title).")
        self.called_ae, self.host, self.port = unquote(parts.username), parts.hostname, port
        self.tls = parts.scheme.lower() == "dimse+tls"

    @contextmanager
    def _association(self, contexts: Iterable[tuple[str, list[str]]], storage_roles: Iterable[str] = (),
                     handlers: list | None = None):
        """An established association proposing ``contexts`` (SOP class, transfer
        syntaxes); ``storage_roles`` are SOP classes we accept as C-STORE SCP (C-GET).
        Released on exit. Raises PacsError when it cannot be established."""
        from pynetdicom import AE, build_role, evt

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        for sop_class, syntaxes in contexts:
            ae.add_requested_context(sop_class, syntaxes)
        negotiation: list = [build_role(sop_class, scp_role=True) for sop_class in storage_roles]
        negotiation += self._user_identity
        started = time.monotonic()
        opened: list = []  # the association, as soon as its connection is open
        handlers = [*(handlers or []), (evt.EVT_CONN_OPEN, lambda event: opened.append(event.assoc))]
        stop = self._should_stop
        stopped = stop or (lambda: False)  # a failure after a stop is the stop's doing
        with _hanging_up_when(stop, opened):
            assoc = ae.associate(self.host, self.port, ae_title=self.called_ae, ext_neg=negotiation or None,
                                 evt_handlers=handlers, tls_args=(self._tls, self.host) if self.tls else None)
            if stopped():
                raise SearchCancelled(SEARCH_CANCELLED)
            if not assoc.is_established:
                raise self._association_failure(assoc, time.monotonic() - started)
            try:
                yield assoc
            except PacsError:
                if stopped():
                    raise SearchCancelled(SEARCH_CANCELLED) from None
                raise
            finally:
                if assoc.is_established:
                    assoc.release()

    @cached_property
    def _user_identity(self) -> list:
        """The user identity negotiation item of the credentials (none without them); made
        once, so a token source is asked once."""
        from pynetdicom.pdu_primitives import UserIdentityNegotiation

        given = self.credentials
        if not given.given:
            return []
        item = UserIdentityNegotiation()
        if given.token is not None:
            item.user_identity_type, item.primary_field = 5, given.token().encode()  # 5: JSON web token
        else:
            item.user_identity_type = 2 if given.password else 1  # 2: user name and passcode; 1: name only
            item.primary_field = given.user.encode()
            if given.password:
                item.secondary_field = given.password.encode()
        return [item]

    @property
    def _ae_title(self) -> str:
        """How messages name the PACS beside "the PACS": its AE title ("PACS" alone read "the PACS PACS")."""
        return f"(AE title {self.called_ae})"

    def _association_failure(self, assoc, waited_s: float) -> PacsError:
        """Why the association failed, in words: refused, unreachable, silent or aborted
        (pynetdicom aborts after its timeout too, hence ``waited_s``)."""
        where = f"{self._ae_title} at {self.host}:{self.port}"
        if assoc.is_rejected:
            identity = f", the user name {self.credentials.user} or its password" if self.credentials.user else (
                ", the token" if self.credentials.token is not None else "")
            return PacsError(f"The PACS {where} refused the association: it does not accept the calling AE "
                             f"title {self.calling_ae}{identity} or the called AE title {self.called_ae}. Ask the "
                             "PACS administrators to register segview's AE title, or check both titles.")
        if waited_s >= 0.9 * self.timeout:
            return _ConnectionFailure(f"The PACS {where} did not answer within {self.timeout:g} s: is it running "
                                      "and reachable, and is this its DICOM port?")
        try:  # pynetdicom reports a refused connection or a failed TLS handshake as an abort: find out which
            connection = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            return _ConnectionFailure(f"Cannot reach the PACS {where}: {exc.strerror or exc}. Is it running, "
                                      "and are the host and port right?")
        with connection:
            failure = self._handshake_failure(connection, where) if self.tls else None
        return failure or PacsError(f"The PACS {where} aborted the association: it is not a DICOM port, accepts "
                                    "none of the requested services, or is overloaded.")

    def _handshake_failure(self, connection: socket.socket, where: str) -> PacsError | None:
        """Why a TLS handshake over ``connection`` fails, in words; None when it succeeds."""
        try:
            self._tls.wrap_socket(connection, server_hostname=self.host).close()
        except ssl.SSLError as exc:
            return certificate_failure(exc, f"{self.host}:{self.port}", self.ca_bundle)
        except OSError as exc:
            return PacsCertificateError(f"The TLS handshake with the PACS {where} failed ({exc.strerror or exc}): "
                                        "is this its TLS port (not its plain DICOM port)?")
        return None

    def _find(self, identifier: Dataset, what: str) -> list[Dataset]:
        with self._association([(FIND, _UNCOMPRESSED)]) as assoc:
            answers = []
            for status, found in assoc.send_c_find(identifier, FIND):
                code = _status_code(status, f"{self.called_ae} did not answer the search for {what}")
                if code in (0xFF00, 0xFF01):
                    answers.append(found)
                elif code != 0x0000:
                    raise PacsError(f"The PACS {self._ae_title} refused to search for {what}: "
                                    f"status 0x{code:04X} ({_category(code)}).")
            return answers

    def find_studies(self, query: Query) -> list[Study]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.StudyInstanceUID = ""
        ds.PatientID = query.patient_id.strip()
        ds.PatientName = _patient_name_filter(query.patient_name)
        ds.StudyDate = date_range(query.dates)
        ds.StudyTime = ds.StudyDescription = ds.AccessionNumber = ""
        ds.ModalitiesInStudy = query.modality.strip().upper()
        ds.NumberOfStudyRelatedInstances = ""
        return _newest_first([_study(found) for found in self._find(ds, "studies")])[:MAX_STUDIES]

    def find_series(self, study_uid: str, modality: str = "") -> list[Series]:
        ds = _series_identifier(study_uid=study_uid)
        ds.Modality = modality.strip().upper()
        return _by_number([_series(found, study_uid) for found in self._find(ds, f"the series of {study_uid}")])

    def locate_series(self, series_uid: str) -> Series:
        # Study Root is hierarchical: without the study UID this is a relational query,
        # which most archives (Orthanc, dcm4chee, DCM4CHE-based PACS) answer.
        identifier = _series_identifier(series_uid=series_uid)
        for keyword in STUDY_ATTRIBUTES:  # return keys of the study: a relational query may ask them
            setattr(identifier, keyword, "")
        found = self._find(identifier, f"the series {series_uid}")
        return _only_series([_series(ds) for ds in found], series_uid, self.url)

    def _retrieve(self, series: Series, folder: Path, progress: Progress, should_stop: ShouldStop) -> int:
        from pynetdicom import ALL_TRANSFER_SYNTAXES, evt
        sop_classes = self._sop_classes(series)
        if not sop_classes:
            raise PacsError(f"The PACS {self._ae_title} lists no image in the series {series.uid}.")
        written: list[Path] = []
        unwritten: list[OSError] = []  # this disk's failures: said as such, not as the PACS's

        def store(event) -> int:  # runs in the association's thread: only writes files
            try:
                dataset = event.dataset
                dataset.file_meta = event.file_meta
                path = folder / _file_name(dataset)
                dataset.save_as(path, enforce_file_format=True)
            except OSError as exc:
                unwritten.append(exc)
                return 0xA700  # out of resources: the PACS reports the sub-operation failed
            except (PacsError, ValueError):
                return 0xA700
            written.append(path)
            return 0x0000

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID, identifier.SeriesInstanceUID = series.study_uid, series.uid
        total = series.images or 0
        contexts = [(GET, _UNCOMPRESSED)] + [(sop, ALL_TRANSFER_SYNTAXES) for sop in sop_classes]
        with self._association(contexts, sop_classes, [(evt.EVT_C_STORE, store)]) as assoc:
            for status, _ in assoc.send_c_get(identifier, GET):
                code = _status_code(status, f"{self.called_ae} stopped answering during the retrieve")
                progress(len(written), max(total, len(written)))
                if should_stop():
                    assoc.abort()  # the fastest way to make the PACS stop sending
                    raise RetrieveCancelled("The retrieve was cancelled; nothing was kept.")
                if unwritten and code not in (0xFF00,):  # a full disk here, not a PACS that failed
                    raise unwritten[0]
                if code not in (0x0000, 0xFF00, 0xB000):
                    raise PacsError(f"The PACS {self._ae_title} could not send the series {series.uid}: "
                                    f"status 0x{code:04X} ({_category(code)}).")
                if code == 0xB000:  # some sub-operations failed
                    raise PacsError(f"The PACS {self._ae_title} sent only part of the series {series.uid} "
                                    "(status 0xB000: some images failed).")
        return len(written)

    def _instances(self, series: Series) -> list[Dataset]:
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = series.study_uid, series.uid
        ds.SOPInstanceUID = ds.SOPClassUID = ds.NumberOfFrames = ""
        return self._find(ds, f"the images of {series.uid}")

    def _count_images(self, series: Series) -> int:
        return len(self._instances(series))

    def _sop_classes(self, series: Series) -> list[str]:
        """The SOP classes of the images of ``series`` (C-GET needs one presentation
        context for each, at most 127 besides the query context)."""
        classes = sorted({_text(found.get("SOPClassUID")) for found in self._instances(series)})
        return [c for c in classes if c][:127]

    @contextmanager
    def _sender(self, datasets: list[Dataset]):
        """One association for all the files, with a presentation context for each SOP
        class offering its transfer syntax and both uncompressed ones."""
        syntaxes: dict[str, list[str]] = {}
        for dataset in datasets:
            syntax = str(dataset.file_meta.get("TransferSyntaxUID", _UNCOMPRESSED[0]))
            syntaxes.setdefault(str(dataset.SOPClassUID), list(_UNCOMPRESSED))
            if syntax not in syntaxes[str(dataset.SOPClassUID)]:
                syntaxes[str(dataset.SOPClassUID)].insert(0, syntax)
        if len(syntaxes) > 128:
            raise PacsError(f"These files hold {len(syntaxes)} kinds of DICOM object; send at most 128 at once.")
        with self._association(syntaxes.items()) as assoc:
            yield lambda path, dataset: self._send_c_store(assoc, path, dataset)

    def _send_c_store(self, assoc, path: Path, dataset: Dataset) -> None:
        sop_class = str(dataset.SOPClassUID)
        if not any(c.abstract_syntax == sop_class for c in assoc.accepted_contexts):
            raise PacsError(f"the PACS does not accept {pydicom.uid.UID(sop_class).name} objects")
        try:
            status = assoc.send_c_store(path)
        except ValueError as exc:  # no accepted context for its transfer syntax
            raise PacsError(f"the PACS does not accept it as it is encoded ({_short(exc)})") from exc
        code = _status_code(status, "no answer to the store")
        if _category(code) not in ("Success", "Warning"):
            raise PacsError(f"refused by the PACS (status 0x{code:04X}: {_status_meaning(code)})")


_UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]  # explicit, implicit VR little endian
FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET


def _series_identifier(study_uid: str = "", series_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = ds.SeriesDescription = ds.SeriesNumber = ""
    ds.NumberOfSeriesRelatedInstances = ""
    return ds


@contextmanager
def _hanging_up_when(stop: ShouldStop | None, opened: list) -> Iterator[None]:
    """While inside, close the connection of the association in ``opened`` once ``stop()``
    says so: pynetdicom's own abort does not end a wait on a PACS that never answers (up to
    its timeout), closing the socket does at once."""
    if stop is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            if stop():
                for assoc in opened:
                    assoc.dul.socket.close()
                return

    watcher = threading.Thread(target=watch, name="pacs-hang-up", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


def _status_code(status: Dataset, no_answer: str) -> int:
    """The status of a DIMSE response; an empty one means the association broke."""
    if "Status" not in status:
        raise PacsError(f"{no_answer} (the connection was closed or timed out).")
    return int(status.Status)


def _category(code: int) -> str:
    from pynetdicom.status import code_to_category

    return code_to_category(code)
