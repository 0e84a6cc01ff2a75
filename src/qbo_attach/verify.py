"""The verification gate: join the inventory with the mapping, classify each file.

Nothing is uploaded before every file on disk has a status here. Each
inventory row lands in exactly one of two files: the verification log (with a
status from ``STATUSES``) or the skips file (excluded by configuration).

Checks run in this order and the first that fails gives the status:
the inventory's own problem, the id, the file (empty, too large, type), the
mapping (missing, ambiguous), the QBO entity type, and finally duplicate names
on one record, which needs every other verdict first.
"""

from __future__ import annotations

import fnmatch
import functools
from collections import Counter, defaultdict
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from qbo_attach import filetypes
from qbo_attach.ids import (
    DEFAULT_LEGACY_ID_PREFIX,
    is_valid_legacy_id,
    normalize_entity_type,
    normalize_legacy_id,
)
from qbo_attach.records import (
    CsvWriter,
    InventoryRow,
    MappingRow,
    VerificationRow,
    read_csv,
)

OK = "ok"
MISSING_MAPPING = "missing_mapping"
AMBIGUOUS_MAPPING = "ambiguous_mapping"
INVALID_LEGACY_ID = "invalid_legacy_id"
FILE_EMPTY = "file_empty"
FILE_TOO_LARGE = "file_too_large"
UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
FILE_UNREADABLE = "file_unreadable"
UNSUPPORTED_ENTITY_TYPE = "unsupported_entity_type"
DUPLICATE_FILE_NAME = "duplicate_file_name"
SKIPPED_BY_CONFIG = "skipped_by_config"

STATUSES = (
    OK,
    MISSING_MAPPING,
    AMBIGUOUS_MAPPING,
    INVALID_LEGACY_ID,
    FILE_EMPTY,
    FILE_TOO_LARGE,
    UNSUPPORTED_FILE_TYPE,
    FILE_UNREADABLE,
    UNSUPPORTED_ENTITY_TYPE,
    DUPLICATE_FILE_NAME,
)

# System files that desktop folders collect and nobody attached on purpose.
DEFAULT_EXCLUDED_NAMES = ("Thumbs.db", ".DS_Store", "desktop.ini", "~$*", "._*")
LAYOUT_PROBLEM = "path does not match"

Target = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Files the configuration keeps out of the migration on purpose."""

    entity_types: frozenset[str] = frozenset()
    file_patterns: tuple[str, ...] = DEFAULT_EXCLUDED_NAMES

    @classmethod
    def build(
        cls, entity_types: Iterable[str], file_patterns: Iterable[str]
    ) -> Exclusions:
        return cls(
            frozenset(normalize_entity_type(name) for name in entity_types),
            tuple(file_patterns),
        )

    def reason(self, row: InventoryRow) -> str:
        """Why the row is excluded, or "" when it is not."""
        if row.legacy_entity_type and row.legacy_entity_type in self.entity_types:
            return f"entity type {row.legacy_entity_type} is excluded"
        for pattern in self.file_patterns:
            if fnmatch.fnmatchcase(row.file_name, pattern):
                return f"file name matches the exclusion {pattern!r}"
        return ""


class MappingIndex:
    """The mapping, keyed for the join both with and without the entity type."""

    def __init__(self, rows: Iterable[MappingRow]) -> None:
        self.by_type: dict[tuple[str, str], set[Target]] = defaultdict(set)
        self.by_id: dict[str, set[Target]] = defaultdict(set)
        self.types_of: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            target = (row.qbo_entity_type, row.qbo_entity_id)
            self.by_type[(row.legacy_entity_type, row.legacy_txnid_norm)].add(target)
            self.by_id[row.legacy_txnid_norm].add(target)
            self.types_of[row.legacy_txnid_norm].add(row.legacy_entity_type)

    def lookup(self, entity_type: str, legacy_id: str) -> set[Target]:
        """Every QBO record the legacy id maps to; the type narrows when known."""
        if entity_type:
            return self.by_type.get((entity_type, legacy_id), set())
        return self.by_id.get(legacy_id, set())


@dataclass(slots=True)
class Coverage:
    """How much of one legacy entity type the mapping covers.

    ``mapped`` and ``missing`` count files with a valid id by whether the
    mapping knows it, whatever else is wrong with the file.
    """

    files: int = 0
    mapped: int = 0
    missing: int = 0
    ok: int = 0


@dataclass(slots=True)
class VerificationSummary:
    statuses: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    coverage: dict[str, Coverage] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + self.skipped


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    reason: str
    target: Target = ("", "")


def load_mapping(
    path: Path,
    prefix: str = DEFAULT_LEGACY_ID_PREFIX,
    wanted: Container[str] | None = None,
) -> MappingIndex:
    """The mapping, ids normalised again, keeping only the ``wanted`` ids.

    A mapping supplied by hand may carry ids as the desktop spells them, with
    spaces or in lower case; normalising is idempotent, so ids the tool wrote
    itself are unchanged. Keeping only the ids the inventory holds bounds the
    memory by the tree's size, whatever the mapping's: a company's mapping can
    hold a million rows for a few thousand attached files.
    """
    hint = "Run `qbo-attach mapping` first, or supply the file by hand."
    rows = (
        replace(
            row,
            legacy_txnid_norm=normalize_legacy_id(row.legacy_txnid_norm, prefix),
            legacy_entity_type=normalize_entity_type(row.legacy_entity_type),
        )
        for row in read_csv(path, MappingRow, hint=hint)
    )
    return MappingIndex(
        row for row in rows if wanted is None or row.legacy_txnid_norm in wanted
    )


def classify(row: InventoryRow, mapping: MappingIndex) -> Verdict:
    """The verdict on one file, before duplicate names are looked at."""
    if row.problem:
        # Only a path out of the layout, and nothing worse, is an id problem;
        # a link or an unreadable file is that first, wherever it sits.
        problems = row.problem.split("; ")
        layout_only = problems == [p for p in problems if p.startswith(LAYOUT_PROBLEM)]
        status = INVALID_LEGACY_ID if layout_only else FILE_UNREADABLE
        return Verdict(status, row.problem)
    if not is_valid_legacy_id(row.legacy_txnid_norm):
        return Verdict(
            INVALID_LEGACY_ID,
            f"legacy id {row.raw_legacy_id!r} normalises to "
            f"{row.legacy_txnid_norm!r}, which cannot name a desktop record",
        )
    file_verdict = _classify_file(row)
    if file_verdict is not None:
        return file_verdict
    return _classify_mapping(row, mapping)


def _classify_file(row: InventoryRow) -> Verdict | None:
    if row.size_bytes == 0:
        return Verdict(FILE_EMPTY, "the file is empty (0 bytes)")
    if row.size_bytes is not None and row.size_bytes > filetypes.MAX_FILE_BYTES:
        return Verdict(
            FILE_TOO_LARGE,
            f"{row.size_bytes} bytes is over QBO's limit of "
            f"{filetypes.MAX_FILE_BYTES} bytes a file",
        )
    if row.content_type == filetypes.UNKNOWN_CONTENT_TYPE:
        ext = filetypes.extension_of(row.file_name)
        shown = f"extension .{ext}" if ext else "a file with no extension"
        return Verdict(
            UNSUPPORTED_FILE_TYPE,
            f"QBO does not accept {shown}; accepted: "
            + ", ".join(sorted(filetypes.ACCEPTED_TYPES)),
        )
    return None


def _classify_mapping(row: InventoryRow, mapping: MappingIndex) -> Verdict:
    targets = mapping.lookup(row.legacy_entity_type, row.legacy_txnid_norm)
    if not targets:
        return Verdict(MISSING_MAPPING, _missing_reason(row, mapping))
    if len(targets) > 1:
        shown = ", ".join(f"{kind} {qbo_id}" for kind, qbo_id in sorted(targets))
        return Verdict(
            AMBIGUOUS_MAPPING,
            f"legacy id {row.legacy_txnid_norm} maps to several records: {shown}",
        )
    target = next(iter(targets))
    if target[0] not in filetypes.ATTACHABLE_ENTITY_TYPES:
        return Verdict(
            UNSUPPORTED_ENTITY_TYPE,
            f"QBO does not take attachments on {target[0]} records",
            target,
        )
    return Verdict(OK, "", target)


def _missing_reason(row: InventoryRow, mapping: MappingIndex) -> str:
    other_types = mapping.types_of.get(row.legacy_txnid_norm, set())
    if row.legacy_entity_type and other_types:
        return (
            f"no mapping row for {row.legacy_entity_type} {row.legacy_txnid_norm}; "
            f"the id is mapped as {', '.join(sorted(other_types))}: check the folder"
        )
    return (
        f"no mapping row for legacy id {row.legacy_txnid_norm}; the conversion did "
        "not record it"
    )


def verify(
    inventory: Path,
    mapping_path: Path,
    log_path: Path,
    skips_path: Path,
    exclusions: Exclusions = Exclusions(),
    prefix: str = DEFAULT_LEGACY_ID_PREFIX,
) -> VerificationSummary:
    """Classify every inventory row into the verification log or the skips file.

    Passes over the inventory, not rows held in memory, keep memory small:
    the first collects the ids to look up, the second finds file names that
    collide on one record, the third writes the verdicts.
    """
    rows = functools.partial(_inventory_rows, inventory, prefix)
    wanted = {row.legacy_txnid_norm for row in rows()}
    mapping = load_mapping(mapping_path, prefix, wanted)
    collisions = _collisions(_verdicts(rows(), mapping, exclusions))
    summary = VerificationSummary()
    with (
        CsvWriter(log_path, VerificationRow) as out,
        CsvWriter(skips_path, VerificationRow) as skips,
    ):
        for row, verdict in _verdicts(rows(), mapping, exclusions):
            if verdict.status == SKIPPED_BY_CONFIG:
                skips.write(_row(row, verdict))
                summary.skipped += 1
                continue
            verdict = _resolve_duplicate(row, verdict, collisions)
            out.write(_row(row, verdict))
            _count(summary, row, verdict, mapping)
    return summary


def _inventory_rows(path: Path, prefix: str) -> Iterator[InventoryRow]:
    """The inventory, ids normalised again in case it was edited by hand."""
    for row in read_csv(path, InventoryRow, hint="Run `qbo-attach inventory` first."):
        norm = normalize_legacy_id(row.legacy_txnid_norm, prefix)
        kind = normalize_entity_type(row.legacy_entity_type)
        if norm != row.legacy_txnid_norm or kind != row.legacy_entity_type:
            row = replace(row, legacy_txnid_norm=norm, legacy_entity_type=kind)
        yield row


def _verdicts(
    rows: Iterable[InventoryRow], mapping: MappingIndex, exclusions: Exclusions
) -> Iterator[tuple[InventoryRow, Verdict]]:
    for row in rows:
        excluded = exclusions.reason(row)
        if excluded:
            yield row, Verdict(SKIPPED_BY_CONFIG, excluded)
        else:
            yield row, classify(row, mapping)


Key = tuple[str, str, str]


def _collisions(
    verdicts: Iterable[tuple[InventoryRow, Verdict]],
) -> dict[Key, list[tuple[str, str]]]:
    """Keys that more than one ok file would land on, with (path, sha256) each."""
    by_key: dict[Key, list[tuple[str, str]]] = defaultdict(list)
    for row, verdict in verdicts:
        if verdict.status == OK:
            by_key[(*verdict.target, row.file_name)].append((row.file_path, row.sha256))
    return {key: files for key, files in by_key.items() if len(files) > 1}


def _resolve_duplicate(
    row: InventoryRow, verdict: Verdict, collisions: dict[Key, list[tuple[str, str]]]
) -> Verdict:
    """Keep one copy of identical files; refuse all of different ones.

    Identical copies (same sha256) need the file attached once: the first
    path in the inventory goes ahead. Different contents under one name would
    make one of them vanish, so none is uploaded until someone renames one.
    """
    if verdict.status != OK:
        return verdict
    files = collisions.get((*verdict.target, row.file_name))
    if files is None:
        return verdict
    kind, qbo_id = verdict.target
    hashes = {sha for _, sha in files}
    if len(hashes) == 1 and "" not in hashes:
        first = files[0][0]
        if row.file_path == first:
            return verdict
        return Verdict(
            DUPLICATE_FILE_NAME,
            f"identical copy of {first}, which is attached to {kind} {qbo_id}",
            verdict.target,
        )
    others = ", ".join(path for path, _ in files if path != row.file_path)
    return Verdict(
        DUPLICATE_FILE_NAME,
        f"{len(files)} different files named {row.file_name!r} would land on "
        f"{kind} {qbo_id} (also: {others}); rename all but one and run again",
        verdict.target,
    )


def _row(row: InventoryRow, verdict: Verdict) -> VerificationRow:
    kind, qbo_id = verdict.target
    return VerificationRow.from_inventory(
        row, verdict.status, verdict.reason, kind, qbo_id
    )


def _count(
    summary: VerificationSummary,
    row: InventoryRow,
    verdict: Verdict,
    mapping: MappingIndex,
) -> None:
    """Tally the status, and the mapping's coverage whatever the file's status."""
    summary.statuses[verdict.status] += 1
    coverage = summary.coverage.setdefault(row.legacy_entity_type or "-", Coverage())
    coverage.files += 1
    if verdict.status == OK:
        coverage.ok += 1
    if not is_valid_legacy_id(row.legacy_txnid_norm):
        return
    if mapping.lookup(row.legacy_entity_type, row.legacy_txnid_norm):
        coverage.mapped += 1
    else:
        coverage.missing += 1
