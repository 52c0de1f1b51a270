"""A crash-safe journal of label edits: nothing a radiologist draws is lost.

The file starts with a snapshot of the labels when editing began, then holds one record
per completed step (a stroke, a fill, an undo, a redo): the changed regions and their new
values. Each record is written whole, flushed and fsynced before the next one, and
carries its length and CRC, so after a crash (even SIGKILL or a power cut in the middle
of a write) replaying the intact records gives the labels as they were after the last
completed step. No pickle: a small JSON header and raw uint8 bytes, zlib-compressed.

    journal = Journal.start(path, labels, image_key)   # labels: LabelMap
    ...                                                # every completed step is appended
    recovered = recover(path)                          # after a crash: RecoveredLabels
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SegviewError
from .labels import Edit, LabelMap

MAGIC = b"SVJ1"
RECORD = struct.Struct("<4sII")  # tag, payload length, CRC32 of the payload
SNAPSHOT, STEP = b"SNAP", b"STEP"


class JournalError(SegviewError):
    """The journal cannot be written (full disk, read-only folder) or is not a journal."""


def state_directory() -> Path:
    """Where journals live when the user's data folder is not writable: XDG_STATE_HOME."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "segview" / "journals"


def image_key(volume) -> str:
    """Identifies an image across sessions: its source, grid and a sample of its voxels."""
    array = np.ascontiguousarray(volume.array[:: max(1, volume.shape[0] // 8)])
    digest = hashlib.sha1(array.tobytes())
    digest.update(repr((volume.meta.get("source", ""), volume.shape, tuple(volume.spacing),
                        tuple(volume.origin), tuple(volume.direction))).encode())
    return digest.hexdigest()


def journal_path(volume) -> Path:
    return state_directory() / f"{image_key(volume)}.svj"


@dataclass
class RecoveredLabels:
    labels: np.ndarray   # (z, y, x) uint8 after the last completed step
    image_key: str
    steps: int           # completed steps replayed
    truncated: bool      # an incomplete record at the end was ignored (the crash)


class Journal:
    """Appends every completed step of ``labels`` to ``path``; see the module docstring."""

    def __init__(self, path: Path, labels: LabelMap, file):
        self.path, self.labels, self._file = path, labels, file
        self._pending: list[Edit] = []
        self.steps = 0
        self.error: JournalError | None = None  # set when a write failed; journalling stops
        labels.listeners.append(self._collect)
        labels.step_listeners.append(self.flush)

    @staticmethod
    def snapshot(labels: np.ndarray, key: str) -> bytes:
        """The compressed first record for ``labels``: the slow part of ``start``, which
        a worker can do beforehand."""
        header = json.dumps({"image_key": key, "shape": list(labels.shape)}).encode()
        return zlib.compress(struct.pack("<I", len(header)) + header + labels.tobytes(), 1)

    @classmethod
    def start(cls, path, labels: LabelMap, key: str, snapshot: bytes | None = None) -> Journal:
        """A new journal at ``path`` (replacing any) beginning with a snapshot of ``labels``
        now (or ``snapshot``, made by ``Journal.snapshot`` of the same labels). Raises
        JournalError when it cannot be written."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = open(path, "wb")
            _write_record(file, SNAPSHOT, snapshot or cls.snapshot(labels.array, key), compressed=True)
        except OSError as exc:
            raise JournalError(f"cannot keep a journal of the edits in {path.parent}: "
                               f"{exc.strerror or exc}") from exc
        return cls(path, labels, file)

    def _collect(self, edit: Edit) -> None:
        self._pending.append(edit)

    def flush(self) -> None:
        """Append the edits since the last flush as one record (called after each step).
        A failed write (disk full) never interrupts editing: it sets ``error`` and the
        journal stops, so the window can say so."""
        if not self._pending or self.error is not None:
            self._pending.clear()
            return
        edits, self._pending = self._pending, []
        header = json.dumps([[[int(r.start), int(r.stop)] for r in e.region] for e in edits]).encode()
        payload = struct.pack("<I", len(header)) + header + b"".join(e.new.tobytes() for e in edits)
        try:
            _write_record(self._file, STEP, zlib.compress(payload, 1), compressed=True)
        except OSError as exc:
            self.error = JournalError(f"cannot append to the edit journal {self.path}: {exc.strerror or exc}")
            return
        self.steps += 1

    def close(self, delete: bool = False) -> None:
        """Stop journalling; ``delete`` once the labels are safely saved."""
        if self.flush in self.labels.step_listeners:
            self.labels.step_listeners.remove(self.flush)
            self.labels.listeners.remove(self._collect)
        self._file.close()
        if delete:
            self.path.unlink(missing_ok=True)


def unsaved_edits(volume) -> RecoveredLabels | None:
    """Edits of ``volume`` that an earlier session journalled and never saved (it crashed):
    from its journal, or from the one set aside while the user decides. None if there
    are none or the journal is unreadable."""
    for candidate in (journal_path(volume), set_aside_path(volume)):
        try:
            found = recover(candidate) if candidate.exists() else None
        except (JournalError, OSError, ValueError, zlib.error):
            continue
        if found is not None and found.steps and found.labels.shape == volume.shape:
            return found
    return None


def set_aside_path(volume) -> Path:
    """Where a crashed session's journal waits while the user decides about it."""
    path = journal_path(volume)
    return path.with_name(path.name + ".previous")


def recover(path) -> RecoveredLabels:
    """The labels after the last completed step recorded in journal ``path``. Raises
    JournalError for a file that is not a journal or lacks its snapshot."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise JournalError(f"{path} is not a segview edit journal")
    records, truncated = _records(data[len(MAGIC):])
    if not records or records[0][0] != SNAPSHOT:
        raise JournalError(f"{path} lacks the snapshot it starts from")
    header, body = _split(records[0][1])
    labels = np.frombuffer(body, np.uint8).reshape(header["shape"]).copy()
    for _, payload in records[1:]:
        regions, body = _split(payload)
        offset = 0
        for bounds in regions:
            region = tuple(slice(a, b) for a, b in bounds)
            size = int(np.prod([b - a for a, b in bounds]))
            labels[region] = np.frombuffer(body, np.uint8, size, offset).reshape([b - a for a, b in bounds])
            offset += size
    return RecoveredLabels(labels, header["image_key"], len(records) - 1, truncated)


def _write_record(file, tag: bytes, packed: bytes, compressed: bool) -> None:
    """One record: tag, length, CRC and the zlib-compressed payload; then fsync."""
    if not compressed:
        packed = zlib.compress(packed, 1)
    if file.tell() == 0:
        file.write(MAGIC)
    file.write(RECORD.pack(tag, len(packed), zlib.crc32(packed)) + packed)
    file.flush()
    os.fsync(file.fileno())


def _records(data: bytes) -> tuple[list[tuple[bytes, bytes]], bool]:
    """The intact records, and whether an incomplete or damaged one ended the file."""
    records, offset = [], 0
    while offset < len(data):
        if offset + RECORD.size > len(data):
            return records, True
        tag, length, crc = RECORD.unpack_from(data, offset)
        packed = data[offset + RECORD.size: offset + RECORD.size + length]
        if tag not in (SNAPSHOT, STEP) or len(packed) < length or zlib.crc32(packed) != crc:
            return records, True
        records.append((tag, zlib.decompress(packed)))
        offset += RECORD.size + length
    return records, False


def _split(payload: bytes):
    (length,) = struct.unpack_from("<I", payload)
    return json.loads(payload[4:4 + length]), payload[4 + length:]
