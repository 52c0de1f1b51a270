"""Errors a user can cause with their data; their messages are shown as they are."""


class VolumeLoadError(Exception):
    """An image or label file could not be loaded. The message says what is wrong and
    what to do, in words a radiologist understands."""


class LabelSaveError(OSError):
    """Labels could not be written (disk full, read-only folder, ...). The previous file,
    if any, is untouched and the labels in memory are unchanged."""
