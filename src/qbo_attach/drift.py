"""Drift between two verification logs: what changed since the last ``verify``.

A migration team runs ``verify`` many times while the legacy folder and the
conversion's mapping get fixed. Before a new verification log replaces the
old one, ``compare`` says what moved, per legacy entity type:

``new``
    files (by path) in the current log and not in the previous one;
``vanished``
    files in the previous log and no longer in the current one;
``remapped``
    legacy ids whose QBO record changed: another type or id, a mapping that
    appeared or disappeared, or one that became ambiguous.

Both logs are read once each, streaming; memory holds the previous log's
paths and one target per legacy id, not its rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qbo_attach.records import VerificationRow, read_csv
from qbo_attach.verify import AMBIGUOUS_MAPPING, MISSING_MAPPING

MAX_EXAMPLES = 5
NO_TYPE = "(no type)"
UNMAPPED = "no mapping"
AMBIGUOUS = "several records"

LegacyId = tuple[str, str]  # (legacy_entity_type, legacy_txnid_norm)


@dataclass(slots=True)
class Change:
    """One kind of drift: counts per legacy entity type and a few examples."""

    per_type: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.per_type.values())

    def add(self, kind: str, example: str) -> None:
        self.per_type[kind or NO_TYPE] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)


@dataclass(slots=True)
class Drift:
    """What differs between a previous and a current verification log."""

    new: Change = field(default_factory=Change)
    vanished: Change = field(default_factory=Change)
    remapped: Change = field(default_factory=Change)

    @property
    def any(self) -> bool:
        return bool(self.new.total or self.vanished.total or self.remapped.total)


def compare(previous: Path, current: Path) -> Drift:
    """Compare two verification logs; see the module's docstring for the kinds.

    Raises ``UsageError`` when either file is absent and ``InputError`` when
    one is not a verification log.
    """
    drift = Drift()
    old_paths: dict[str, str] = {}
    old_targets: dict[LegacyId, str] = {}
    for row in _rows(previous):
        old_paths[row.file_path] = row.legacy_entity_type
        _note_target(old_targets, row)
    new_targets: dict[LegacyId, str] = {}
    for row in _rows(current):
        if old_paths.pop(row.file_path, None) is None:
            drift.new.add(row.legacy_entity_type, row.file_path)
        _note_target(new_targets, row)
    for path, kind in old_paths.items():
        drift.vanished.add(kind, path)
    _remapped(drift.remapped, old_targets, new_targets)
    return drift


def _rows(path: Path) -> Iterator[VerificationRow]:
    return read_csv(path, VerificationRow, hint="Run `qbo-attach verify` first.")


def _target(row: VerificationRow) -> str | None:
    """Where the mapping sends the row's legacy id, or None if never looked up."""
    if row.qbo_entity_id:
        return f"{row.qbo_entity_type} {row.qbo_entity_id}"
    if row.status == MISSING_MAPPING:
        return UNMAPPED
    if row.status == AMBIGUOUS_MAPPING:
        return AMBIGUOUS
    return None


def _note_target(targets: dict[LegacyId, str], row: VerificationRow) -> None:
    # Every file of one legacy id shares its mapping; the first that was
    # looked up speaks for all of them.
    target = _target(row)
    legacy = (row.legacy_entity_type, row.legacy_txnid_norm)
    if target is not None and legacy not in targets:
        targets[legacy] = target


def _remapped(
    change: Change, before: dict[LegacyId, str], after: dict[LegacyId, str]
) -> None:
    for legacy, target in after.items():
        old = before.get(legacy)
        if old is not None and old != target:
            kind, legacy_id = legacy
            change.add(kind, f"{kind or NO_TYPE} {legacy_id}: {old} -> {target}")


def render_terminal(drift: Drift, console: Console) -> None:
    """Print the drift as one table per entity type, and a few examples."""
    if not drift.any:
        console.print("drift: no change since the previous verification")
        return
    changes = {"new": drift.new, "vanished": drift.vanished, "remapped": drift.remapped}
    kinds = sorted(set().union(*(c.per_type for c in changes.values())))
    table = Table(title="Changes since the previous verification")
    table.add_column("legacy type")
    for name in changes:
        table.add_column(name, justify="right")
    for kind in kinds:
        table.add_row(kind, *(f"{c.per_type[kind]:,}" for c in changes.values()))
    table.add_row("total", *(f"{c.total:,}" for c in changes.values()))
    console.print(table)
    for name, change in changes.items():
        for example in change.examples:
            console.print(f"  {name}: {example}")
