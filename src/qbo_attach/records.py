"""Row types of the CSV artifacts, and the one place that reads and writes them.

Each record is a frozen dataclass whose fields are the CSV columns, in order.
The column names are a contract with auditors' queries (see DESIGN.md):
columns may be added at the end, never renamed.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from qbo_attach.errors import InputError, StorageError, UsageError


@dataclass(frozen=True, slots=True)
class InventoryRow:
    """One file found in the legacy tree."""

    legacy_txnid_norm: str
    legacy_entity_type: str
    raw_legacy_id: str
    file_name: str
    file_path: str  # relative to FILES_DIR, with forward slashes
    size_bytes: int | None
    content_type: str
    sha256: str
    problem: str


@dataclass(frozen=True, slots=True)
class MappingRow:
    """One row of the conversion's id mapping, ids already normalised."""

    legacy_txnid_norm: str
    legacy_entity_type: str
    qbo_entity_type: str
    qbo_entity_id: str
    qbdt_exportable_id: str


@dataclass(frozen=True, slots=True)
class VerificationRow:
    """An inventory row with the verdict of the verification gate."""

    legacy_txnid_norm: str
    legacy_entity_type: str
    raw_legacy_id: str
    file_name: str
    file_path: str
    size_bytes: int | None
    content_type: str
    sha256: str
    problem: str
    qbo_entity_type: str
    qbo_entity_id: str
    status: str
    reason: str

    @classmethod
    def from_inventory(
        cls,
        row: InventoryRow,
        status: str,
        reason: str,
        qbo_entity_type: str = "",
        qbo_entity_id: str = "",
    ) -> Self:
        return cls(
            **to_dict(row),
            qbo_entity_type=qbo_entity_type,
            qbo_entity_id=qbo_entity_id,
            status=status,
            reason=reason,
        )

    @property
    def key(self) -> tuple[str, str, str]:
        """The idempotency key: one attachment per record and file name."""
        return (self.qbo_entity_type, self.qbo_entity_id, self.file_name)


@dataclass(frozen=True, slots=True)
class RunLogRow:
    """One event of the uploader: an intent, an attempt's outcome or a skip."""

    ts: str
    run_id: str
    legacy_txnid_norm: str
    legacy_entity_type: str
    raw_legacy_id: str
    qbo_entity_type: str
    qbo_entity_id: str
    file_name: str
    file_path: str
    size_bytes: int | None
    sha256: str
    request_id: str
    attempt: int | None
    status_code: int | None
    error_code: str
    error: str
    intuit_tid: str
    qbo_attachable_id: str
    duration_ms: int | None
    outcome: str

    @classmethod
    def for_file(
        cls, row: VerificationRow, *, ts: str, run_id: str, outcome: str, **fields: Any
    ) -> Self:
        """An event about one verified file; columns not named stay empty."""
        values: dict[str, Any] = {name: getattr(row, name) for name in _FILE_COLUMNS}
        values.update(
            request_id="",
            attempt=None,
            status_code=None,
            error_code="",
            error="",
            intuit_tid="",
            qbo_attachable_id="",
            duration_ms=None,
        )
        values.update(fields)
        return cls(ts=ts, run_id=run_id, outcome=outcome, **values)

    @property
    def key(self) -> tuple[str, str, str]:
        """The idempotency key: one attachment per record and file name."""
        return (self.qbo_entity_type, self.qbo_entity_id, self.file_name)


# The run log's columns that describe the file, copied from its verification.
_FILE_COLUMNS = (
    "legacy_txnid_norm",
    "legacy_entity_type",
    "raw_legacy_id",
    "qbo_entity_type",
    "qbo_entity_id",
    "file_name",
    "file_path",
    "size_bytes",
    "sha256",
)


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One finding of ``check``: the remote and the logs disagree about a key."""

    finding: str
    qbo_entity_type: str
    qbo_entity_id: str
    file_name: str
    qbo_attachable_id: str
    remote_size: int | None
    local_size: int | None
    file_path: str
    detail: str


R = TypeVar("R", InventoryRow, MappingRow, VerificationRow, RunLogRow, CheckRow)


def columns(cls: type[Any]) -> list[str]:
    """The CSV header of a record type."""
    return [field.name for field in dataclasses.fields(cls)]


def to_dict(row: Any) -> dict[str, Any]:
    """A record as a plain dict, field by field (shallow, unlike ``asdict``)."""
    return {name: getattr(row, name) for name in columns(type(row))}


def _int_columns(cls: type[Any]) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    return frozenset(
        name for name in columns(cls) if int in typing.get_args(hints[name])
    )


# A cell starting with one of these runs as a formula when a spreadsheet opens
# the CSV (=, +, -, @, and tab or carriage return before them). Such cells are
# written with a leading apostrophe, which spreadsheets show as text; cells
# that start with an apostrophe get one more, so reading strips exactly one
# and every value comes back as it was.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralize(text: str) -> str:
    """The text as written to a CSV cell, safe to open in a spreadsheet."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def restore(text: str) -> str:
    """The value a CSV cell written by ``neutralize`` holds."""
    return text[1:] if text.startswith("'") else text


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralize(value)
    return value


class CsvWriter:
    """Writes records of one type to a CSV file, header first.

    With ``append=True`` an existing file keeps its rows and gets no second
    header; ``sync=True`` flushes and fsyncs after every row, for logs whose
    last rows must survive a crash.
    """

    def __init__(
        self, path: Path, cls: type[Any], *, append: bool = False, sync: bool = False
    ) -> None:
        self.path = path
        self.sync = sync
        self._columns = columns(cls)
        with self._storage():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not append or not path.exists() or path.stat().st_size == 0
            self._file: IO[str] = path.open(
                "a" if append else "w", encoding="utf-8", newline=""
            )
            self._writer = csv.writer(self._file)
            if fresh:
                self._writer.writerow(self._columns)
                self._flush()

    @contextlib.contextmanager
    def _storage(self) -> Iterator[None]:
        """Turn a failed write (read-only folder, full disk) into StorageError."""
        try:
            yield
        except OSError as exc:
            raise StorageError(self.path, exc) from exc

    def write(self, row: Any, *, sync: bool = True) -> None:
        """Write one row; a syncing writer syncs it unless ``sync`` is False."""
        with self._storage():
            self._writer.writerow([_cell(getattr(row, name)) for name in self._columns])
            if self.sync and sync:
                self._flush()

    def _flush(self) -> None:
        self._file.flush()
        if self.sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        try:
            with self._storage():
                self._file.flush()
        finally:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_csv(path: Path, cls: type[R], rows: Iterable[R]) -> int:
    """Write all rows to ``path`` through a temporary file; return the count.

    Readers never see a half-written artifact: the file appears whole or the
    old one stays.
    """
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with CsvWriter(tmp, cls) as writer:
        for row in rows:
            writer.write(row)
            count += 1
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(path, exc) from exc
    return count


def read_csv(
    path: Path, cls: type[R], *, hint: str = "", tolerate_torn_tail: bool = False
) -> Iterator[R]:
    """Yield the records of a CSV file, checking its header and typed cells.

    Extra columns and any column order are accepted; a missing column, a cell
    that is not a number where one is expected, or a file that is not CSV text
    raises ``InputError`` naming the file, row and column. ``hint`` tells the
    user how to produce the file when it is absent. With
    ``tolerate_torn_tail`` a last line cut short by a crash is ignored.
    """
    if not path.is_file():
        raise UsageError(f"{path}: file not found. {hint}".strip())
    with path.open("rb") as handle:
        if b"\x00" in handle.read(8192):
            raise InputError(path, "is a binary file, not CSV text")
    try:
        yield from _read_rows(path, cls, tolerate_torn_tail)
    except UnicodeDecodeError as exc:
        raise InputError(
            path, f"not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8"
        ) from exc
    except csv.Error as exc:
        raise InputError(path, f"not a readable CSV file: {exc}") from exc


def _read_rows(path: Path, cls: type[R], tolerate_torn_tail: bool) -> Iterator[R]:
    expected = columns(cls)
    ints = _int_columns(cls)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(
                path, f"the file is empty; expected a header: {','.join(expected)}"
            )
        header = [name.strip() for name in header]
        missing = [name for name in expected if name not in header]
        if missing:
            raise InputError(
                path,
                f"missing column(s) {', '.join(missing)}; "
                f"expected a header with: {','.join(expected)}",
                row=1,
                column=missing[0],
            )
        positions = [header.index(name) for name in expected]
        pending: tuple[int, list[str]] | None = None
        for cells in reader:
            if pending is not None:
                yield _parse(path, cls, ints, expected, positions, *pending)
            if not any(cell.strip() for cell in cells):
                pending = None
                continue
            pending = (reader.line_num, cells)
        if pending is None:
            return
        line, cells = pending
        if tolerate_torn_tail and len(cells) < len(header):
            return
        yield _parse(path, cls, ints, expected, positions, line, cells)


def _parse(
    path: Path,
    cls: type[R],
    ints: frozenset[str],
    expected: list[str],
    positions: list[int],
    line: int,
    cells: list[str],
) -> R:
    if len(cells) <= max(positions):
        raise InputError(
            path,
            f"has {len(cells)} cells, fewer than the header names",
            row=line,
        )
    values: dict[str, Any] = {}
    for name, position in zip(expected, positions, strict=True):
        cell = cells[position]
        if name in ints:
            values[name] = _parse_int(path, line, name, cell)
        else:
            values[name] = restore(cell)
    return cls(**values)


def _parse_int(path: Path, line: int, name: str, cell: str) -> int | None:
    text = cell.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(
            path, f"{text!r} is not a whole number", row=line, column=name
        ) from None
