"""Drift between two verification logs: new, vanished and remapped."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from qbo_attach import drift
from qbo_attach.errors import UsageError
from qbo_attach.records import VerificationRow, write_csv
from tests.auditkit import verification


def write(path: Path, rows: list[VerificationRow]) -> Path:
    write_csv(path, VerificationRow, rows)
    return path


def remap(row: VerificationRow, qbo_type: str, qbo_id: str) -> VerificationRow:
    return dataclasses.replace(row, qbo_entity_type=qbo_type, qbo_entity_id=qbo_id)


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    rows = [verification(name) for name in ("a", "b", "c", "d", "e", "h")]
    return write(tmp_path / "previous.csv", rows)


def test_same_log_has_no_drift(previous: Path) -> None:
    """Comparing a log with itself finds nothing."""
    result = drift.compare(previous, previous)
    assert not result.any


def test_new_and_vanished_files_per_type(previous: Path, tmp_path: Path) -> None:
    """Files are matched by path; each side's extras are counted by legacy type."""
    rows = [verification(name) for name in ("a", "b", "c", "d", "f", "g", "j")]
    result = drift.compare(previous, write(tmp_path / "current.csv", rows))
    assert result.new.per_type == {"INVOICE": 2, "CHECK": 1}
    assert result.new.examples == [
        "INVOICE/80I2/f.pdf",
        "INVOICE/80I3/g.exe",
        "CHECK/80C3/j.pdf",
    ]
    assert result.vanished.per_type == {"INVOICE": 1, "CHECK": 1}
    assert result.remapped.total == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: remap(r, "Bill", "9"), "BILL B1: Bill 1 -> Bill 9"),
        (lambda r: remap(r, "Purchase", "1"), "BILL B1: Bill 1 -> Purchase 1"),
        (
            lambda r: dataclasses.replace(remap(r, "", ""), status="missing_mapping"),
            "BILL B1: Bill 1 -> no mapping",
        ),
        (
            lambda r: dataclasses.replace(remap(r, "", ""), status="ambiguous_mapping"),
            "BILL B1: Bill 1 -> several records",
        ),
    ],
    ids=["other-id", "other-type", "mapping-gone", "ambiguous"],
)
def test_remapped_legacy_id_counts_once(
    previous: Path,
    tmp_path: Path,
    change: Callable[[VerificationRow], VerificationRow],
    expected: str,
) -> None:
    """A legacy id with two files whose target changed counts as one remap."""
    rows = [verification(name) for name in ("a", "b", "c", "d", "e", "h")]
    rows[0], rows[1] = change(rows[0]), change(rows[1])
    result = drift.compare(previous, write(tmp_path / "current.csv", rows))
    assert result.remapped.per_type == {"BILL": 1}
    assert result.remapped.examples == [expected]
    assert result.new.total == result.vanished.total == 0


def test_mapping_found_for_missing_id(previous: Path, tmp_path: Path) -> None:
    """An id the mapping lacked before and knows now is a remap too."""
    rows = [verification(name) for name in ("a", "b", "c", "e", "h")]
    rows.append(dataclasses.replace(remap(verification("d"), "Bill", "7"), status="ok"))
    result = drift.compare(previous, write(tmp_path / "current.csv", rows))
    assert result.remapped.examples == ["BILL B3: no mapping -> Bill 7"]


def test_file_problem_is_not_a_remap(previous: Path, tmp_path: Path) -> None:
    """A file that stopped before the mapping lookup says nothing about its id."""
    rows = [verification(name) for name in ("a", "c", "d", "e", "h")]
    emptied = dataclasses.replace(remap(verification("b"), "", ""), status="file_empty")
    result = drift.compare(previous, write(tmp_path / "current.csv", [emptied, *rows]))
    assert result.remapped.total == 0


def test_examples_are_capped(tmp_path: Path) -> None:
    """Only a few examples are kept however many files changed."""
    old = write(tmp_path / "old.csv", [])
    many = [
        dataclasses.replace(verification("a"), file_path=f"BILL/80B1/{i}.pdf")
        for i in range(20)
    ]
    result = drift.compare(old, write(tmp_path / "new.csv", many))
    assert result.new.total == 20
    assert len(result.new.examples) == drift.MAX_EXAMPLES


def test_missing_previous_log_is_a_usage_error(previous: Path, tmp_path: Path) -> None:
    """The error names the absent file."""
    with pytest.raises(UsageError, match=r"nope\.csv"):
        drift.compare(tmp_path / "nope.csv", previous)


def test_terminal_lists_changes(previous: Path, tmp_path: Path) -> None:
    """The table has a row per type, and the examples follow."""
    rows = [verification(name) for name in ("a", "b", "c", "d", "e", "j")]
    rows[0], rows[1] = remap(rows[0], "Bill", "9"), remap(rows[1], "Bill", "9")
    result = drift.compare(previous, write(tmp_path / "current.csv", rows))
    out = io.StringIO()
    drift.render_terminal(result, Console(file=out, width=120))
    text = out.getvalue()
    assert "CHECK" in text
    assert "new: CHECK/80C3/j.pdf" in text
    assert "vanished: CHECK/80C1/h.pdf" in text
    assert "remapped: BILL B1: Bill 1 -> Bill 9" in text


def test_terminal_without_changes(previous: Path) -> None:
    """No drift prints one plain line."""
    out = io.StringIO()
    drift.render_terminal(drift.compare(previous, previous), Console(file=out))
    assert "no change" in out.getvalue()
