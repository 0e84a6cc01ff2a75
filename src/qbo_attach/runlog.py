"""The durable run log: append-only CSV that decides what is left to upload.

Every upload attempt writes a ``started`` row before the call and an outcome
row after it, each flushed and synced to disk, so a crash loses at most the
calls in flight. A key whose last row is ``started`` is in doubt: the call may
or may not have reached QBO, and the uploader must ask the remote before it
sends the file again. A crash can also tear the last line; the reader ignores
such a tail and the writer cuts it off before appending.
"""

from __future__ import annotations

import csv
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from qbo_attach.errors import InputError, LockError, StorageError
from qbo_attach.records import CsvWriter, RunLogRow, columns, read_csv

Key = tuple[str, str, str]

STARTED = "started"
SUCCESS = "success"
RECONCILED = "reconciled"
SKIPPED = "skipped_already_uploaded"
REJECTED = "rejected"
ERROR = "error"
FILE_MISSING = "file_missing"
FILE_CHANGED = "file_changed"

OUTCOMES = frozenset(
    {STARTED, SUCCESS, RECONCILED, SKIPPED, REJECTED, ERROR, FILE_MISSING, FILE_CHANGED}
)
# Outcomes that mean the file is on the remote record.
ATTACHED = frozenset({SUCCESS, RECONCILED})
FAILED = frozenset({REJECTED, ERROR, FILE_MISSING, FILE_CHANGED})


@dataclass(slots=True)
class RunLogIndex:
    """What earlier runs established, per idempotency key.

    Only what decisions need is kept (the attachable id and the last outcome),
    so the index of a 170,000-file migration stays small.
    """

    attached: dict[Key, str] = field(default_factory=dict)
    last_outcome: dict[Key, str] = field(default_factory=dict)
    rows: int = 0

    def add(self, row: RunLogRow) -> None:
        self.rows += 1
        if row.outcome == SKIPPED:
            return
        self.last_outcome[row.key] = row.outcome
        if row.outcome in ATTACHED:
            self.attached.setdefault(row.key, row.qbo_attachable_id)

    def in_doubt(self) -> set[Key]:
        """Keys whose last attempt started and never recorded an outcome."""
        return {
            key
            for key, outcome in self.last_outcome.items()
            if outcome == STARTED and key not in self.attached
        }


def read_runlog(path: Path) -> Iterator[RunLogRow]:
    """The rows of a run log, without a tail torn by a crash.

    A torn last line may have lost cells (the CSV reader drops it) or only the
    end of its outcome (dropped here); an unknown outcome anywhere else means
    the log was damaged and stops the run.
    """
    if not path.exists():
        return
    previous: RunLogRow | None = None
    for row in read_csv(path, RunLogRow, tolerate_torn_tail=True):
        if previous is not None:
            yield _checked(path, previous)
        previous = row
    if previous is not None and previous.outcome in OUTCOMES:
        yield previous


def _checked(path: Path, row: RunLogRow) -> RunLogRow:
    if row.outcome not in OUTCOMES:
        raise InputError(
            path,
            f"unknown outcome {row.outcome!r} for {row.file_path!r}; the run log "
            "was edited by hand or is damaged",
            column="outcome",
        )
    return row


def build_index(path: Path) -> RunLogIndex:
    """Index a run log by key; an absent log gives an empty index."""
    index = RunLogIndex()
    for row in read_runlog(path):
        index.add(row)
    return index


def cut_torn_tail(path: Path) -> bool:
    """Remove a last record left incomplete by a crash; tell whether one was.

    A record is complete when the file ends with a newline and the last record
    has every column. The cut happens at the record's first byte, so a torn
    file name holding a quoted newline cannot leave half a record behind.
    """
    if not path.exists() or path.stat().st_size == 0:
        return False
    starts, cells = _last_record(path)
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        ends_cleanly = handle.read(1) == b"\n"
    if ends_cleanly and len(cells) >= len(columns(RunLogRow)):
        return False
    with path.open("r+b") as handle:
        handle.truncate(starts)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _last_record(path: Path) -> tuple[int, list[str]]:
    """Byte offset and cells of the last record of a CSV file."""
    offsets: list[int] = []
    position = 0

    def lines(handle: IO[bytes]) -> Iterator[str]:
        nonlocal position
        for raw in handle:
            offsets.append(position)
            position += len(raw)
            yield raw.decode("utf-8", errors="replace")

    start, cells = 0, []
    with path.open("rb") as handle:
        reader = csv.reader(lines(handle))
        consumed = 0
        for record in reader:
            start = offsets[consumed]
            consumed = reader.line_num
            cells = record
    return start, cells


class RunLogWriter:
    """Appends to the run log, the errors log and the dups log, under a lock.

    Only one writer may hold a run log: a second uploader on the same LOG_DIR
    would interleave rows and break the exactly-once promise.
    """

    def __init__(self, runlog: Path, errors: Path, dups: Path) -> None:
        self._lock = _acquire_lock(runlog.with_name(runlog.name + ".lock"))
        cut_torn_tail(runlog)
        self._runlog = CsvWriter(runlog, RunLogRow, append=True, sync=True)
        self._errors = CsvWriter(errors, RunLogRow, append=True, sync=True)
        self._dups = CsvWriter(dups, RunLogRow, append=True)

    def write(self, row: RunLogRow, *, sync: bool = True) -> None:
        self._runlog.write(row, sync=sync)

    def write_error(self, row: RunLogRow) -> None:
        self._errors.write(row)

    def write_dup(self, row: RunLogRow) -> None:
        self._dups.write(row)

    def close(self) -> None:
        for writer in (self._runlog, self._errors, self._dups):
            writer.close()
        self._lock.close()


def _acquire_lock(path: Path) -> IO[str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    except OSError as exc:
        raise StorageError(path, exc) from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "an unknown process"
        handle.close()
        raise LockError(
            f"{path.with_suffix('')}: another uploader is writing this run log "
            f"({holder}); wait for it to finish or stop it, then run again"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle
