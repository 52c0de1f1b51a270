"""What the window remembers between runs (``QSettings``, an INI file in the user's
configuration folder) and where its file dialogs start.

- ``recent``: the images opened last (File > Open recent).
- ``labels_of/<hash of an image's path>`` and ``labels_of_image/<its image_key>``: where the
  labels of that image were last saved, whatever name and folder a person chose: opening the
  image again, or a copy of it elsewhere, or one series of a folder of several, reads them
  (``saved_labels``; ``ReviewSession.open(labels_saved=...)`` checks they are its own).
- ``dialogs/last_folder``: the folder the last file dialog chose in: every dialog starts
  there, else in the folder of the image on screen, else in the home folder; never in the
  process's working folder, nor in the cache of studies retrieved from a PACS.
- ``pacs/labels_folder``: where the labels of studies retrieved from a PACS are saved, chosen
  once (the first save of such a study asks); each study gets a folder in it named by
  patient and study (``pacs_labels_path``). The retrieved images stay in the cache
  (``pacs_cache_folder``), which may be emptied at any time: labels never go there.
- ``finetune/epochs``: the epochs the last fine-tune from the window ran (its dialog offers
  them again).
- ``pacs/server`` (the PACS used: address, user name, CA bundle) and ``pacs/calling_ae``: see
  ``pacs_server``. Never a password or a token: those go to the keyring (``pacs_secrets``).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

RECENT_LIMIT = 10


def settings() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "segview", "segview")


# -- recent images -----------------------------------------------------------------------------

def recent() -> list[str]:
    """The recently opened paths, newest first."""
    value = settings().value("recent", [], list)
    return [str(p) for p in value] if isinstance(value, list) else []


def remember_recent(path) -> None:
    """``path`` becomes the newest recent path (one entry per place, whatever path named it)."""
    path = str(Path(path).resolve())
    kept = [p for p in recent() if str(Path(p).resolve()) != path]
    settings().setValue("recent", [path] + kept[:RECENT_LIMIT - 1])


def remember_labels(image, labels, key: str | None = None) -> None:
    """The labels of ``image`` (its file or DICOM folder; ``key``: its ``image_key``) were
    saved at ``labels``."""
    stored = settings()
    for name in (_labels_key(image), _content_key(key)):
        if name:
            stored.setValue(name, str(Path(labels).resolve()))


def saved_labels(image, key: str | None = None) -> Path | None:
    """Where the labels of the image with ``key`` (its content, wherever it lies), else of
    the file or folder ``image``, were last saved, when that file is still there. Safe in a
    worker: ``ReviewSession.open`` calls it with the key once the image is read."""
    stored = settings()
    for name in (_content_key(key), _labels_key(image)):
        value = str(stored.value(name, "", str) or "") if name else ""
        if value and Path(value).is_file():
            return Path(value)
    return None


def _labels_key(image) -> str:
    return "labels_of/" + hashlib.sha256(str(Path(image).resolve()).encode()).hexdigest()[:32]


def _content_key(key: str | None) -> str | None:
    return f"labels_of_image/{key[:32]}" if key else None


# -- fine-tuning ------------------------------------------------------------------------------

def fine_tune_epochs(default: int) -> int:
    """The epochs chosen for the last fine-tune, else ``default``."""
    try:
        value = int(str(settings().value("finetune/epochs", default)))  # an INI file edited by hand may hold anything
    except (TypeError, ValueError):
        return default
    return value if value > 0 else default


def remember_fine_tune_epochs(epochs: int) -> None:
    settings().setValue("finetune/epochs", int(epochs))


# -- where file dialogs start -------------------------------------------------------------------

#: Checkpoints are remembered apart (``kind`` "checkpoints"): an image, labels or a report
#: dialog opened in the models' folder (the program's own, for the shipped ones) after one.
FOLDER_KEYS = {"data": "dialogs/last_folder", "checkpoints": "dialogs/last_checkpoint_folder"}


def remember_folder(chosen, kind: str = "data") -> None:
    """A file dialog chose ``chosen`` (a file: its folder is kept; a folder: itself)."""
    if not chosen:
        return
    path = Path(chosen).absolute()
    folder = path if path.is_dir() else path.parent
    settings().setValue(FOLDER_KEYS[kind], str(folder))


def last_folder(kind: str = "data") -> Path | None:
    """The folder the last file dialog of ``kind`` chose in, when it still exists."""
    value = str(settings().value(FOLDER_KEYS[kind], "", str) or "")
    folder = Path(value) if value else None
    return folder if folder is not None and folder.is_dir() else None


def dialog_folder(image_source=None) -> Path:
    """Where a file dialog starts: the last folder used, else the folder of the image
    ``image_source`` (a file or a DICOM folder; not one retrieved into the PACS cache),
    else the home folder."""
    folder = last_folder()
    if folder is not None:
        return folder
    if image_source and not is_retrieved(image_source) and not str(image_source).startswith("demo"):
        source = Path(str(image_source))
        if source.exists():
            return source.absolute().parent  # a file's folder; a DICOM folder's, where its labels go
    return Path.home()


def dialog_path(name: str, image_source=None) -> str:
    """``name`` (a file a dialog proposes) in ``dialog_folder``."""
    return str(dialog_folder(image_source) / name)


# -- studies retrieved from a PACS --------------------------------------------------------------

def pacs_cache_folder() -> Path:
    """Where retrieved series are kept: the user's cache, one folder per series UID."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    return Path(base or Path.home() / ".cache" / "segview") / "pacs"


def is_retrieved(source) -> bool:
    """Whether ``source`` (an image's path) lies in the cache of series retrieved from a PACS."""
    if not source:
        return False
    try:
        Path(str(source)).resolve().relative_to(pacs_cache_folder().resolve())
    except ValueError:
        return False
    return True


def pacs_labels_folder() -> Path | None:
    """The folder chosen for the labels of PACS studies; None until one is chosen."""
    value = str(settings().value("pacs/labels_folder", "", str) or "")
    return Path(value) if value else None


def set_pacs_labels_folder(folder) -> None:
    settings().setValue("pacs/labels_folder", str(Path(folder).absolute()))


def pacs_labels_path(folder, meta: dict) -> Path:
    """Where the labels of a retrieved series go in ``folder``: a folder per patient and
    study, ``<PatientID>_<StudyDate>_<StudyDescription>`` (the study UID when it has no date
    and no description), holding ``<SeriesDescription>.labels.nii.gz`` (the series UID when
    it has no description). ``meta``: the volume's (``core.dicom``)."""
    patient = _part(meta.get("patient_id")) or "unknown-patient"
    study = "_".join(p for p in (_part(meta.get("study_date")), _part(meta.get("study_description"))) if p)
    study = study or _part(meta.get("study_uid")) or "unknown-study"
    series = _part(meta.get("series_description")) or _part(meta.get("series_uid")) or "series"
    return Path(folder) / f"{patient}_{study}" / f"{series}.labels.nii.gz"


def _part(value) -> str:
    """``value`` as part of a file name: letters, digits, '-', '.' and '_' kept, the rest '_'."""
    text = "".join(c if c.isalnum() or c in "-._" else "_" for c in str(value or "").strip())
    return text.strip("._")[:64]
