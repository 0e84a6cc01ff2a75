"""The inventory stage: one row per entry under FILES_DIR, read by FILES_LAYOUT.

The walk never follows a symbolic link, so it stays inside FILES_DIR and cannot
loop; a link, like a pipe or a device, gets a row saying it is not a regular
file. A folder that cannot be listed gets a row too, and a name that is not
UTF-8 is written with backslash escapes and flagged: nothing on disk is left
out silently. Entries are visited in name order within each folder, so the
same tree always gives the same CSV.

The first real migration had 170,000 files, and the inventory should take
about as long as ``find`` on such a tree (bench/inventory.py). So the walk
builds plain tuples in column order, one folder at a time, the CSV text of
plain rows is formatted directly (``csv.writer`` formats any row that needs
quoting), and a large tree is split between two processes whose parts
are joined in walk order. The split needs ``fork`` and a caller with no other
thread running; otherwise one process does it all, about 1.5 times slower on
two cores. ``scan`` yields the same rows as ``InventoryRow``, in one process.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import multiprocessing
import operator
import os
import shutil
import signal
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import TextIOWrapper
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import NamedTuple

from qbo_attach.errors import QboAttachError, UsageError
from qbo_attach.filetypes import MAX_FILE_BYTES, UNKNOWN_CONTENT_TYPE, content_type_for
from qbo_attach.ids import normalize_entity_type, normalize_legacy_id
from qbo_attach.layout import Layout
from qbo_attach.records import FORMULA_STARTS, InventoryRow, columns, neutralize

log = logging.getLogger(__name__)

HASH_CHUNK_BYTES = 1024 * 1024
# A second process pays for itself only on a tree with many entries to share.
SPLIT_MIN_ENTRIES = 64
# How many levels down the walk looks for that many entries to share.
SPLIT_MAX_DEPTH = 6
# Rows formatted, checked and written together: large enough to make writes
# few, small enough that a name needing quotes rarely slows its neighbours.
WRITE_ROWS = 256

NOT_UTF8_FILE = "file name is not UTF-8 (shown with \\x escapes); rename the file"
NOT_UTF8_FOLDER = "a folder name is not UTF-8 (shown with \\x escapes); rename it"

# The columns of InventoryRow, in its order. The walk builds these rather
# than InventoryRow itself: a frozen dataclass per file costs more than the
# rest of the row's work together.
_Row = tuple[str, str, str, str, str, int | None, str, str, str]

# Open for hashing without following a link, or waiting on a pipe, that was
# put in place of the file after the folder was listed.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)
_KINDS = {
    stat.S_IFLNK: "symbolic link",
    stat.S_IFIFO: "named pipe",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}
_by_name = operator.attrgetter("name")


@dataclass(frozen=True, slots=True)
class InventoryStats:
    """What one inventory wrote: rows, rows with a problem, and bytes of files."""

    files: int
    problems: int
    total_bytes: int


class _Folder(NamedTuple):
    """A folder being walked, with what the layout reads from its path."""

    path: str
    prefix: str  # path below FILES_DIR as the CSV shows it, ending in "/"
    parts: tuple[str, ...]
    legacy_txnid_norm: str
    legacy_entity_type: str
    raw_legacy_id: str
    problem: str  # the problem of every file right here, "" when they are fine
    naming: str  # set when a folder name on the way down is not UTF-8


_Frame = tuple[_Folder, Iterator[os.DirEntry[str]]]
_Group = tuple[_Folder, list[os.DirEntry[str]]]


def scan(
    files_dir: Path, layout: Layout, prefix: str, *, hash_files: bool = True
) -> Iterator[InventoryRow]:
    """Yield one row per entry under ``files_dir``, in walk order, as it goes.

    Raises ``UsageError`` at once when ``files_dir`` is not a readable folder.
    """
    walker = _Walker(layout, prefix, hash_files=hash_files)
    top = walker.top(files_dir)
    return _records(walker.walk([top]))


def write_inventory(
    files_dir: Path,
    out: Path,
    layout: Layout,
    prefix: str,
    *,
    hash_files: bool = True,
) -> InventoryStats:
    """Write the inventory of ``files_dir`` to ``out`` and count what it holds.

    The file appears whole or not at all. Raises ``UsageError`` when
    ``files_dir`` is not a readable folder or ``out`` cannot be written.
    """
    walker = _Walker(layout, prefix, hash_files=hash_files)
    head, tail = _share(walker, walker.top(files_dir))
    tmp = out.with_name(out.name + ".tmp")
    part = out.with_name(out.name + ".part.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stats = _write_shared(walker, head, tail, tmp, part)
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(
            f"{exc.filename or out}: cannot write the inventory ({exc.strerror}); "
            "check that DATA_DIR is writable and has room."
        ) from exc
    finally:
        _discard(tmp)
        _discard(part)
    return stats


class _Walker:
    """Walks folders in name order and turns their entries into rows.

    It counts what it produces, for ``InventoryStats``, and remembers the
    per-extension and per-type-folder answers that repeat across the tree.
    """

    def __init__(self, layout: Layout, prefix: str, *, hash_files: bool) -> None:
        self.layout = layout
        self.prefix = prefix
        self.hash_files = hash_files
        self.mismatch = f"path does not match FILES_LAYOUT {layout.pattern}"
        self.files = 0
        self.problems = 0
        self.total_bytes = 0
        self._types: dict[str, str] = {}
        self._content_types: dict[str, str] = {}
        self._buffer = memoryview(bytearray(HASH_CHUNK_BYTES))

    def stats(self) -> InventoryStats:
        """The counts so far."""
        return InventoryStats(self.files, self.problems, self.total_bytes)

    def top(self, files_dir: Path) -> _Frame:
        """The frame of FILES_DIR itself, or ``UsageError`` saying what is wrong."""
        if not files_dir.exists():
            raise UsageError(
                f"FILES_DIR {files_dir} does not exist; point FILES_DIR (or "
                "--files-dir) at the folder that holds the legacy attachments."
            )
        if not files_dir.is_dir():
            raise UsageError(
                f"FILES_DIR {files_dir} is not a folder; point it at the folder "
                "that holds the legacy attachments."
            )
        try:
            entries = _listing(str(files_dir))
        except OSError as exc:
            raise UsageError(
                f"FILES_DIR {files_dir} cannot be read ({exc.strerror}); "
                "give this user permission to list it."
            ) from exc
        return self.folder(str(files_dir), (), "", ""), iter(entries)

    def below(self, parent: _Folder, entry: os.DirEntry[str]) -> _Frame:
        """The frame of a subfolder; ``OSError`` when it cannot be listed."""
        shown = _shown(entry.name)
        naming = parent.naming or (NOT_UTF8_FOLDER if shown is not entry.name else "")
        prefix = parent.prefix + shown + "/"
        folder = self.folder(entry.path, (*parent.parts, shown), prefix, naming)
        return folder, iter(_listing(entry.path))

    def folder(
        self, path: str, parts: tuple[str, ...], prefix: str, naming: str
    ) -> _Folder:
        """Read the layout's ids from a folder's path, once for all its files."""
        found = self.layout.match_folder(parts)
        if found is None:
            problem = _join(self.mismatch, naming)
            return _Folder(path, prefix, parts, "", "", "", problem, naming)
        raw_id = found.raw_legacy_id
        norm_id = normalize_legacy_id(raw_id, self.prefix)
        norm_type = self._entity_type(found.legacy_entity_type)
        return _Folder(path, prefix, parts, norm_id, norm_type, raw_id, naming, naming)

    def walk(self, frames: list[_Frame]) -> Iterator[list[_Row]]:
        """Yield the rows of the frames' entries and of everything below them.

        Rows come in batches, one per stretch of a folder between subfolders,
        so memory holds one folder's listing per level and no more.
        """
        stack = frames[::-1]
        while stack:
            folder, entries = stack[-1]
            run: list[os.DirEntry[str]] = []
            subfolder = None
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subfolder = entry
                    break
                run.append(entry)
            else:
                stack.pop()
            batch = self.rows(folder, run)
            if subfolder is not None:
                frame = self.enter(folder, subfolder, batch)
                if frame is not None:
                    stack.append(frame)
            if batch:
                self.files += len(batch)
                yield batch

    def enter(
        self, folder: _Folder, entry: os.DirEntry[str], batch: list[_Row]
    ) -> _Frame | None:
        """The frame of a subfolder, or ``None`` and a problem row in ``batch``."""
        try:
            return self.below(folder, entry)
        except OSError as exc:
            self.problems += 1
            shown = _shown(entry.name)
            problem = _join(f"unreadable folder: {exc.strerror}", folder.naming)
            path = folder.prefix + shown
            batch.append(("", "", "", shown, path, None, "", "", problem))
            return None

    def rows(self, folder: _Folder, entries: list[os.DirEntry[str]]) -> list[_Row]:
        """The rows of entries of one folder that are not folders themselves.

        This loop runs once per file of the tree and is most of the walk's
        own work, so the folder's cells are looked up once, before it.
        """
        ids = folder.legacy_txnid_norm, folder.legacy_entity_type, folder.raw_legacy_id
        prefix, folder_problem = folder.prefix, folder.problem
        batch: list[_Row] = []
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as exc:
                batch.append(self.odd_row(folder, entry, f"unreadable: {exc.strerror}"))
                continue
            if not stat.S_ISREG(info.st_mode):
                batch.append(self.odd_row(folder, entry, _kind(info.st_mode)))
                continue
            name = entry.name
            problem = folder_problem
            if not name.isascii():
                name, problem = self.check_name(name, problem)
            size = info.st_size
            sha256 = ""
            # A file QBO refuses for its size is never read: verify rejects it
            # from the size alone, and reading gigabytes would only cost time.
            if self.hash_files and size <= MAX_FILE_BYTES:
                sha256, unreadable = _sha256(entry.path, self._buffer)
                problem = _join(problem, unreadable)
            if problem:
                self.problems += 1
            self.total_bytes += size
            content_type = self.content_type(name)
            row = (*ids, name, prefix + name, size, content_type, sha256, problem)
            batch.append(row)
        return batch

    def odd_row(self, folder: _Folder, entry: os.DirEntry[str], problem: str) -> _Row:
        """The row of an entry with no content to hash: no size, no sha256."""
        self.problems += 1
        name, problem = self.check_name(entry.name, _join(folder.problem, problem))
        return (
            folder.legacy_txnid_norm,
            folder.legacy_entity_type,
            folder.raw_legacy_id,
            name,
            folder.prefix + name,
            None,
            self.content_type(name),
            "",
            problem,
        )

    def check_name(self, name: str, problem: str) -> tuple[str, str]:
        """The name as the CSV can hold it, and the problem with a flag if needed."""
        shown = _shown(name)
        if shown is name:
            return name, problem
        return shown, _join(problem, NOT_UTF8_FILE)

    def content_type(self, name: str) -> str:
        """``content_type_for`` remembered per extension as spelt on disk."""
        dot = name.rfind(".")
        # The rule of filetypes.extension_of: without a stem, no extension.
        if dot <= 0:
            return UNKNOWN_CONTENT_TYPE
        extension = name[dot + 1 :]
        found = self._content_types.get(extension)
        if found is None:
            found = self._content_types[extension] = content_type_for(name)
        return found

    def _entity_type(self, folder_name: str) -> str:
        """``normalize_entity_type`` remembered, since one type folder has many ids."""
        found = self._types.get(folder_name)
        if found is None:
            found = self._types[folder_name] = normalize_entity_type(folder_name)
        return found


def _discard(path: Path) -> None:
    """Remove a leftover temporary file; one that cannot be removed is no error."""
    with contextlib.suppress(OSError):
        path.unlink()


def _records(batches: Iterable[list[_Row]]) -> Iterator[InventoryRow]:
    for batch in batches:
        for row in batch:
            yield InventoryRow(*row)


def _listing(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as entries:
        return sorted(entries, key=_by_name)


def _shown(name: str) -> str:
    """The name itself when it is UTF-8, else a copy with backslash escapes.

    Names that are not UTF-8 reach Python with their odd bytes as lone
    surrogates, which the UTF-8 CSV cannot hold.
    """
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    return name


def _kind(mode: int) -> str:
    """Why an entry that is neither a folder nor a regular file has no content."""
    return f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'special file')})"


def _join(first: str, second: str) -> str:
    if first and second:
        return f"{first}; {second}"
    return first or second


def _sha256(path: str, buffer: memoryview) -> tuple[str, str]:
    """The hex sha256 of a file and "", or "" and why it could not be read."""
    digest = hashlib.sha256()
    try:
        with open(os.open(path, _READ_FLAGS), "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                digest.update(buffer[:count])
    except OSError as exc:
        return "", f"unreadable: {exc.strerror}"
    return digest.hexdigest(), ""


def _share(walker: _Walker, top: _Frame) -> tuple[list[_Frame], list[_Frame]]:
    """Split the walk into a head and a tail with about as many entries each.

    The split happens at the first level with enough entries, where nearly all
    are folders of similar size. The tail is empty when the tree is too small
    for a second process to help, or when forking is not safe here.
    """
    groups = _frontier(walker, top)
    total = sum(len(entries) for _, entries in groups)
    if total < SPLIT_MIN_ENTRIES or not _can_fork():
        log.debug("inventory walks %d top entries in one process", total)
        return _frames(groups), []
    log.debug("inventory shares %d top entries between two processes", total)
    head, tail = _cut(groups, total // 2)
    return _frames(head), _frames(tail)


def _can_fork() -> bool:
    """Whether a forked copy of this process can safely walk the tail.

    A copy holds only the forking thread: a lock that another thread held at
    that moment (in OpenSSL, say) stays locked in the copy forever.
    """
    has_fork = "fork" in multiprocessing.get_all_start_methods()
    return has_fork and threading.active_count() == 1


def _frontier(walker: _Walker, top: _Frame) -> list[_Group]:
    """The walk's entries in order, down to the first level with enough of them."""
    folder, entries = top
    groups = [(folder, list(entries))]
    for _ in range(SPLIT_MAX_DEPTH - 1):
        if sum(len(entries) for _, entries in groups) >= SPLIT_MIN_ENTRIES:
            break
        groups = [group for pair in groups for group in _expand(walker, *pair)]
    return groups


def _expand(
    walker: _Walker, folder: _Folder, entries: list[os.DirEntry[str]]
) -> list[_Group]:
    """Put the entries of each subfolder in its place, keeping the walk's order.

    A subfolder that cannot be listed stays as it is; the walk reports it.
    """
    groups: list[_Group] = []
    kept: list[os.DirEntry[str]] = []
    for entry in entries:
        below = _below_or_none(walker, folder, entry)
        if below is None:
            kept.append(entry)
            continue
        groups += [(folder, kept), (below[0], list(below[1]))]
        kept = []
    groups.append((folder, kept))
    return [group for group in groups if group[1]]


def _below_or_none(
    walker: _Walker, folder: _Folder, entry: os.DirEntry[str]
) -> _Frame | None:
    try:
        if entry.is_dir(follow_symlinks=False):
            return walker.below(folder, entry)
    except OSError:
        pass
    return None


def _cut(groups: list[_Group], count: int) -> tuple[list[_Group], list[_Group]]:
    """The groups holding the first ``count`` entries, and those holding the rest."""
    for index, (folder, entries) in enumerate(groups):
        if count < len(entries):
            head = [*groups[:index], (folder, entries[:count])]
            return head, [(folder, entries[count:]), *groups[index + 1 :]]
        count -= len(entries)
    return groups, []


def _frames(groups: list[_Group]) -> list[_Frame]:
    return [(folder, iter(entries)) for folder, entries in groups]


def _write_shared(
    walker: _Walker, head: list[_Frame], tail: list[_Frame], tmp: Path, part: Path
) -> InventoryStats:
    """Write the head here and the tail in a forked process, then join them."""
    if not tail:
        with _open_csv(tmp, header=True) as handle:
            _write_rows(handle, walker.walk(head))
        return walker.stats()

    receiver, sender = multiprocessing.Pipe(duplex=False)
    context = multiprocessing.get_context("fork")
    worker = context.Process(target=_write_part, args=(walker, tail, part, sender))
    worker.start()
    sender.close()
    try:
        with _open_csv(tmp, header=True) as handle:
            _write_rows(handle, walker.walk(head))
            theirs = _receive(receiver, worker)
            handle.flush()
            with part.open("rb") as rest:
                shutil.copyfileobj(rest, handle.buffer, HASH_CHUNK_BYTES)
    finally:
        # Only reached alive when the head failed: its part is of no use.
        if worker.is_alive():
            worker.terminate()
        worker.join()
    ours = walker.stats()
    return InventoryStats(
        ours.files + theirs.files,
        ours.problems + theirs.problems,
        ours.total_bytes + theirs.total_bytes,
    )


def _write_part(
    walker: _Walker, frames: list[_Frame], part: Path, sender: Connection
) -> None:
    """In the forked process: write the rows of ``frames``, send back the counts."""
    # Ctrl-C reaches both processes; the parent decides, and stops this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _open_csv(part, header=False) as handle:
            _write_rows(handle, walker.walk(frames))
    except OSError as exc:
        sender.send(exc)
    else:
        sender.send(walker.stats())
    sender.close()


def _receive(receiver: Connection, worker: BaseProcess) -> InventoryStats:
    """The second process's counts, or its error raised here."""
    try:
        answer = receiver.recv()
    except EOFError:
        answer = None
    worker.join()
    if isinstance(answer, OSError):
        raise answer
    if not isinstance(answer, InventoryStats):
        raise QboAttachError(
            f"the inventory's second process stopped (exit code {worker.exitcode}) "
            "before it finished; run the inventory again."
        )
    return answer


def _open_csv(path: Path, *, header: bool) -> TextIOWrapper:
    """Open a CSV for writing with the dialect and encoding of records.CsvWriter."""
    handle = path.open("w", encoding="utf-8", newline="")
    if header:
        csv.writer(handle).writerow(columns(InventoryRow))
    return handle


def _write_rows(handle: TextIOWrapper, batches: Iterable[list[_Row]]) -> None:
    pending: list[_Row] = []
    for batch in batches:
        pending += batch
        if len(pending) >= WRITE_ROWS:
            _write_batch(handle, pending)
            pending = []
    _write_batch(handle, pending)


def _write_batch(handle: TextIOWrapper, rows: list[_Row]) -> None:
    handle.write(_csv_text(rows))


def _csv_text(rows: list[_Row]) -> str:
    """The rows as ``csv.writer`` writes them, formatted here where that is plain.

    ``csv.writer`` spends more time per row than the rest of the inventory.
    A row without a comma, quote or line break in any cell it writes as the
    cells joined by commas, so such rows are formatted here, checked on the
    whole text at once, and only the others are left to ``csv.writer``.
    """
    lines = [
        f"{a},{b},{c},{d},{e},{'' if f is None else f},{g},{h},{i}\r\n"
        for a, b, c, d, e, f, g, h, i in rows
    ]
    text = "".join(lines)
    if _is_plain(text, len(lines)) and not _may_run_as_formula(text):
        return text
    return "".join(
        [
            line
            if _is_plain(line, 1) and not _may_run_as_formula(line)
            else _quoted(row)
            for row, line in zip(rows, lines, strict=True)
        ]
    )


def _may_run_as_formula(text: str) -> bool:
    """Whether a cell of plain lines might start like a formula; no false no.

    In plain lines every cell starts at the start of a line or after a comma.
    The characters that start a formula are rare in names, and one scan for
    a single character costs little, so any of them anywhere sends the text
    the slow, exact way; only the hyphen, common inside ids and dates, is
    looked for where a cell starts. A carriage return is left out: plain
    lines hold one, ending the line, and a cell holding another is not plain.
    """
    return (
        text.startswith(FORMULA_STARTS)
        or any(start in text for start in _RARE_STARTS)
        or ",-" in text
        or "\n-" in text
    )


_RARE_STARTS = tuple(start for start in FORMULA_STARTS if start not in "\r-")


def _is_plain(text: str, count: int) -> bool:
    """Whether ``count`` formatted lines hold no comma, quote or break of a cell."""
    return (
        text.count(",") == 8 * count
        and text.count("\n") == count
        and text.count("\r") == count
        and '"' not in text
    )


def _quoted(row: _Row) -> str:
    """One row as ``records.CsvWriter`` writes it, text cells neutralised."""
    buffer = io.StringIO(newline="")
    cells = [neutralize(cell) if isinstance(cell, str) else cell for cell in row]
    csv.writer(buffer).writerow(["" if cell is None else cell for cell in cells])
    return buffer.getvalue()
