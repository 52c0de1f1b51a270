"""Atomic, durable writes: a temporary file beside the target, flushed to the disk, checked,
then renamed over it, so a crash or a full disk never leaves half a file behind."""
from __future__ import annotations

import glob
import hashlib
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any, Callable


#: Single-file formats labels are written to (so a save can be one atomic rename).
LABEL_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".mha")


def extension(path) -> str:
    """The format extension of ``path`` in lower case, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


#: nnU-Net's channel suffix of a case's (first) image: imagesTr/<case>_0000.nii.gz.
FIRST_CHANNEL = "_0000"


def case_name(stem: str) -> str:
    """The case an image file's ``stem`` is of: without nnU-Net's ``_0000`` ("case_0000" ->
    "case"), as labelsTr/ and nnU-Net's predictions name it."""
    return stem[: -len(FIRST_CHANNEL)] if stem.endswith(FIRST_CHANNEL) else stem


def file_sha256(path) -> str:
    """The SHA-256 of the file at ``path`` (hex), read in 1 MiB blocks. Raises OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to the disk."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if path.is_dir():
            return  # some platforms cannot open folders; the rename is still atomic
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path, write: Callable[[Path], Any]) -> Path:
    """Let ``write`` fill (and check) a temporary file beside ``path``, flush it to the
    disk and rename it over ``path``. A failure at any step removes the temporary file,
    leaves the previous ``path`` untouched and propagates."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{extension(path)}")
    try:
        write(temporary)
        # Some writers create 0600 files; keep the old file's mode, else the usual 0644.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        _fsync(temporary)
        os.replace(temporary, path)
    finally:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass  # in a folder that cannot be written (or is none) it was never made: the first error stands
    _fsync(path.parent)
    _remove_stale_temporaries(path)
    return path


#: A temporary file of a write older than this is one a killed process left behind.
STALE_TEMPORARY_S = 3600.0


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of earlier writes of ``path`` that a killed process left (a tester's
    kill -9 mid-save left 4.5 MB beside the labels, kept by every later save); those
    younger than ``STALE_TEMPORARY_S`` may be another process's write in progress."""
    now = time.time()
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp{glob.escape(extension(path))}"):
        try:
            if now - stale.stat().st_mtime > STALE_TEMPORARY_S:
                stale.unlink()
        except OSError:
            pass  # gone meanwhile, or not ours to remove: nothing is lost by leaving it


def shared_folder(path) -> Path:
    """``path`` made, if it is not there, with its parent's permissions whatever this
    process's umask: a folder segview keeps beside a dataset's files (``.locks``,
    ``.previous``), which everyone who may write the dataset must write too (a tester's
    colleague, another user, could neither lock a case nor save once the first user's
    segview had made them)."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        share_like_folder(path)
    return path


def not_shared(folder) -> str:
    """Why this user may not write ``folder``, another user's, and what to do about it."""
    folder = Path(folder)
    try:
        import pwd

        owner = pwd.getpwuid(folder.stat().st_uid).pw_name
    except (ImportError, KeyError, OSError):
        owner = "another user"
    return (f"{folder} was made by {owner} without write access for others; {owner} opening this dataset in "
            f"segview once shares it, or: chmod a+rwx '{folder}'")


def share_like_folder(path) -> None:
    """Give ``path`` (a folder, or a file this process made) the permissions of its
    folder: read and write (files: without execute) for whom the folder allows them. Only
    the owner may; others leave it as it is."""
    path = Path(path)
    mode = path.parent.stat().st_mode & 0o7777
    wanted = mode if path.is_dir() else mode & 0o666
    try:
        if stat.S_IMODE(path.stat().st_mode) != wanted:  # a lock is taken often: no chmod unless needed
            os.chmod(path, wanted)
    except OSError:
        pass  # another user's: theirs to share


def atomic_write_text(path, text: str) -> Path:
    """``text`` (UTF-8) into ``path`` through ``replace_atomically``."""
    return replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
