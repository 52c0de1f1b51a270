"""Errors a user can cause with their data, files or choices; their messages are shown as
they are. The window and the command line each catch one type: ``SegviewError``."""


class SegviewError(Exception):
    """The base of every error a user can cause (a bad file, a full disk, a checkpoint of
    the wrong kind). Its message says what is wrong and what to do, in words a
    radiologist understands; anything else that escapes is a programming error."""


class VolumeLoadError(SegviewError):
    """An image or label file could not be loaded."""


class LabelSaveError(SegviewError, OSError):
    """Labels could not be written (disk full, read-only folder, ...). The previous file,
    if any, is untouched and the labels in memory are unchanged."""


class PacsError(SegviewError):
    """A picture archive (PACS) could not be searched, read or written: it is down or
    unreachable, refused the association or the request, did not answer in time, or does
    not hold what was asked for. Nothing already on disk is lost."""


class DatasetError(SegviewError):
    """A dataset (a folder of cases) that cannot be opened, trained or evaluated on; the
    message says why."""


class HeldOutError(DatasetError):
    """Every case that could train is held out by the dataset's split."""
