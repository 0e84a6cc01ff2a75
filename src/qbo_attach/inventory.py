"""The inventory stage: one row per entry under FILES_DIR, read by FILES_LAYOUT.

The walk never follows a symbolic link, so it stays inside FILES_DIR and cannot
loop; a link, like a pipe or a device, gets a row that says it is not a regular
file. A folder that cannot be listed gets a row too: nothing on disk is left
out silently. Entries are visited in name order within each folder, so the
same tree always gives the same CSV.

The first real migration had 170,000 files, and the inventory should cost no
more than ``find`` on such a tree (see bench/inventory.py). So the walk builds
plain tuples in column order, one folder at a time, the file writer takes them
in batches, and a large tree is split between two processes whose parts are
joined in walk order. ``scan`` yields the same rows as ``InventoryRow``.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import operator
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import TextIOWrapper
from multiprocessing.connection import Connection
from pathlib import Path

from qbo_attach.errors import QboAttachError, UsageError
from qbo_attach.filetypes import content_type_for
from qbo_attach.ids import normalize_entity_type, normalize_legacy_id
from qbo_attach.layout import Layout
from qbo_attach.records import InventoryRow, columns

HASH_CHUNK_BYTES = 1024 * 1024

# The columns of InventoryRow, in its order; the walk builds these directly
# because constructing a frozen dataclass per file doubles the inventory's time.
_Row = tuple[str, str, str, str, str, int | None, str, str, str]

# A second process pays for itself only on a tree with many folders to share.
SPLIT_MIN_FOLDERS = 64
# How far down the walk looks for enough folders to share between processes.
SPLIT_MAX_DEPTH = 3
# Open for hashing without following a link put there since the listing, and
# without waiting on a pipe put there the same way.
_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)
_KINDS = {
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


@dataclass(frozen=True, slots=True)
class _Folder:
    """A folder being walked, with what the layout reads from its path."""

    path: str
    prefix: str  # path below FILES_DIR with a trailing "/", "" for FILES_DIR
    parts: tuple[str, ...]
    legacy_txnid_norm: str
    legacy_entity_type: str
    raw_legacy_id: str
    mismatch: str  # the problem of every file right here, "" when they fit


_Frame = tuple[_Folder, Iterator[os.DirEntry[str]]]


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
        tmp.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return stats


class _Walker:
    """Walks folders in name order and turns their entries into rows.

    It also counts what it has produced, for ``InventoryStats``.
    """

    def __init__(self, layout: Layout, prefix: str, *, hash_files: bool) -> None:
        self.layout = layout
        self.prefix = prefix
        self.hash_files = hash_files
        self.mismatch = f"path does not match FILES_LAYOUT {layout.pattern}"
        self.files = 0
        self.problems = 0
        self.total_bytes = 0
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
            return self.frame(str(files_dir), ())
        except OSError as exc:
            raise UsageError(
                f"FILES_DIR {files_dir} cannot be read ({exc.strerror}); "
                "give this user permission to list it."
            ) from exc

    def frame(self, path: str, parts: tuple[str, ...]) -> _Frame:
        """List a folder in name order; ``OSError`` when it cannot be listed."""
        with os.scandir(path) as listing:
            entries = sorted(listing, key=_by_name)
        return self.folder(path, parts), iter(entries)

    def folder(self, path: str, parts: tuple[str, ...]) -> _Folder:
        """Read the layout's ids from a folder's path, once for all its files."""
        prefix = "".join(part + "/" for part in parts)
        found = self.layout.match_folder(parts)
        if found is None:
            return _Folder(path, prefix, parts, "", "", "", self.mismatch)
        return _Folder(
            path,
            prefix,
            parts,
            normalize_legacy_id(found.raw_legacy_id, self.prefix),
            normalize_entity_type(found.legacy_entity_type),
            found.raw_legacy_id,
            "",
        )

    def walk(self, frames: list[_Frame]) -> Iterator[list[_Row]]:
        """Yield the rows of the frames' entries and of everything below them.

        Rows come in batches, one per stretch of a folder between subfolders,
        so memory holds at most one folder's listing per level.
        """
        stack = frames[::-1]
        while stack:
            folder, entries = stack[-1]
            batch: list[_Row] = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    below = self.enter(folder, entry, batch)
                    if below is not None:
                        stack.append(below)
                        break
                else:
                    batch.append(self.row(folder, entry))
            else:
                stack.pop()
            if batch:
                self.files += len(batch)
                yield batch

    def enter(
        self, folder: _Folder, entry: os.DirEntry[str], batch: list[_Row]
    ) -> _Frame | None:
        """The frame of a subfolder, or ``None`` and a problem row in ``batch``."""
        try:
            return self.frame(entry.path, (*folder.parts, entry.name))
        except OSError as exc:
            problem = f"unreadable folder: {exc.strerror}"
            self.problems += 1
            name = entry.name
            batch.append(
                ("", "", "", name, folder.prefix + name, None, "", "", problem)
            )
            return None

    def row(self, folder: _Folder, entry: os.DirEntry[str]) -> _Row:
        """The row of one entry that is not a folder."""
        name = entry.name
        try:
            if not entry.is_file(follow_symlinks=False):
                return self.odd_row(folder, entry, _kind(entry))
            size = entry.stat(follow_symlinks=False).st_size
        except OSError as exc:
            return self.odd_row(folder, entry, f"unreadable: {exc.strerror}")
        self.total_bytes += size
        sha256 = ""
        problem = folder.mismatch
        if self.hash_files:
            sha256, unreadable = _sha256(entry.path, self._buffer)
            problem = _join(problem, unreadable)
        if problem:
            self.problems += 1
        return (
            folder.legacy_txnid_norm,
            folder.legacy_entity_type,
            folder.raw_legacy_id,
            name,
            folder.prefix + name,
            size,
            content_type_for(name),
            sha256,
            problem,
        )

    def odd_row(self, folder: _Folder, entry: os.DirEntry[str], problem: str) -> _Row:
        """The row of an entry that has no content to hash: no size, no sha256."""
        self.problems += 1
        name = entry.name
        return (
            folder.legacy_txnid_norm,
            folder.legacy_entity_type,
            folder.raw_legacy_id,
            name,
            folder.prefix + name,
            None,
            content_type_for(name),
            "",
            _join(folder.mismatch, problem),
        )


def _records(batches: Iterable[list[_Row]]) -> Iterator[InventoryRow]:
    for batch in batches:
        for row in batch:
            yield InventoryRow(*row)


def _kind(entry: os.DirEntry[str]) -> str:
    """Why an entry that is neither a folder nor a regular file has no content."""
    if entry.is_symlink():
        return "not a regular file (symbolic link)"
    mode = entry.stat(follow_symlinks=False).st_mode
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
    """Split the walk into a head and a tail of about the same number of folders.

    The tail is empty when the tree is too small for a second process to help,
    or when this platform cannot fork.
    """
    items = _frontier(walker, top)
    folders = [index for index, (_, entry) in enumerate(items) if _is_folder(entry)]
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    if len(folders) < SPLIT_MIN_FOLDERS or not can_fork:
        return _frames(items), []
    middle = folders[len(folders) // 2]
    return _frames(items[:middle]), _frames(items[middle:])


def _frontier(walker: _Walker, top: _Frame) -> list[tuple[_Folder, os.DirEntry[str]]]:
    """The walk's entries down to the first level with enough folders to share.

    A folder that cannot be listed here stays in the list; the walk reports it.
    """
    folder, entries = top
    items = [(folder, entry) for entry in entries]
    for _ in range(SPLIT_MAX_DEPTH - 1):
        if sum(_is_folder(entry) for _, entry in items) >= SPLIT_MIN_FOLDERS:
            break
        items = [item for pair in items for item in _expand(walker, *pair)]
    return items


def _expand(
    walker: _Walker, folder: _Folder, entry: os.DirEntry[str]
) -> list[tuple[_Folder, os.DirEntry[str]]]:
    if not _is_folder(entry):
        return [(folder, entry)]
    try:
        below, entries = walker.frame(entry.path, (*folder.parts, entry.name))
    except OSError:
        return [(folder, entry)]
    return [(below, child) for child in entries]


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _frames(items: list[tuple[_Folder, os.DirEntry[str]]]) -> list[_Frame]:
    """Group consecutive entries of the same folder back into frames."""
    frames: list[_Frame] = []
    start = 0
    for index in range(1, len(items) + 1):
        if index == len(items) or items[index][0] is not items[start][0]:
            if index > start:
                entries = [entry for _, entry in items[start:index]]
                frames.append((items[start][0], iter(entries)))
            start = index
    return frames


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
    with _open_csv(tmp, header=True) as handle:
        _write_rows(handle, walker.walk(head))
        theirs = _receive(receiver, worker)
        with part.open("rb") as rest:
            handle.flush()
            shutil.copyfileobj(rest, handle.buffer, HASH_CHUNK_BYTES)
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
    try:
        with _open_csv(part, header=False) as handle:
            _write_rows(handle, walker.walk(frames))
    except OSError as exc:
        sender.send(exc)
    else:
        sender.send(walker.stats())
    sender.close()


def _receive(
    receiver: Connection, worker: multiprocessing.process.BaseProcess
) -> InventoryStats:
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
            "before finishing; run the inventory again."
        )
    return answer


def _open_csv(path: Path, *, header: bool) -> TextIOWrapper:
    handle = path.open("w", encoding="utf-8", newline="")
    if header:
        csv.writer(handle).writerow(columns(InventoryRow))
    return handle


def _write_rows(handle: TextIOWrapper, batches: Iterable[list[_Row]]) -> None:
    writer = csv.writer(handle)
    for batch in batches:
        writer.writerows(batch)
