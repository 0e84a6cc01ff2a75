"""The verification gate: every status, exclusions, and one file per row."""

from dataclasses import replace
from pathlib import Path

import pytest

from qbo_attach import verify
from qbo_attach.records import (
    InventoryRow,
    MappingRow,
    VerificationRow,
    read_csv,
    write_csv,
)


def inv(
    legacy_id: str = "4-1439202892",
    entity_type: str = "BILL",
    name: str = "scan.pdf",
    *,
    size: int = 100,
    content_type: str = "application/pdf",
    sha: str = "aa",
    problem: str = "",
    path: str | None = None,
) -> InventoryRow:
    return InventoryRow(
        legacy_txnid_norm=legacy_id,
        legacy_entity_type=entity_type,
        raw_legacy_id="80" + legacy_id,
        file_name=name,
        file_path=path or f"{entity_type}/80{legacy_id}/{name}",
        size_bytes=size,
        content_type=content_type,
        sha256=sha,
        problem=problem,
    )


MAPPING = [
    MappingRow("4-1439202892", "BILL", "Bill", "75", "4-1439202892"),
    MappingRow("5-1439202900", "INVOICE", "Invoice", "75", "5-1439202900"),
    MappingRow("6-1439202999", "CHECK", "Purchase", "12", "6-1439202999"),
    MappingRow("6-1439202999", "CHECK", "Purchase", "12", "6-1439202999"),
    MappingRow("7-1439203000", "BILL", "Bill", "80", "7-1439203000"),
    MappingRow("7-1439203000", "BILL", "Bill", "81", "7-1439203000"),
    MappingRow("8-1439203001", "TERM", "Term", "3", "8-1439203001"),
    MappingRow("9-1439203002", "INVOICE", "Invoice", "90", "9-1439203002"),
    MappingRow("9-1439203002", "BILL", "Bill", "91", "9-1439203002"),
]


def run(
    tmp_path: Path,
    rows: list[InventoryRow],
    exclusions: verify.Exclusions | None = None,
) -> tuple[verify.VerificationSummary, list[VerificationRow], list[VerificationRow]]:
    inventory = tmp_path / "attachments_inventory.csv"
    mapping = tmp_path / "mapping_export.csv"
    log, skips = tmp_path / "log.csv", tmp_path / "skips.csv"
    write_csv(inventory, InventoryRow, rows)
    write_csv(mapping, MappingRow, MAPPING)
    summary = verify.verify(
        inventory, mapping, log, skips, exclusions or verify.Exclusions()
    )
    return (
        summary,
        list(read_csv(log, VerificationRow)),
        list(read_csv(skips, VerificationRow)),
    )


CASES = [
    ("ok", inv(), verify.OK, "Bill", "75"),
    ("type-case-joins", inv(entity_type="BILL"), verify.OK, "Bill", "75"),
    ("renamed-type", inv("6-1439202999", "CHECK"), verify.OK, "Purchase", "12"),
    ("missing", inv("1-1"), verify.MISSING_MAPPING, "", ""),
    ("wrong-folder", inv("5-1439202900", "BILL"), verify.MISSING_MAPPING, "", ""),
    ("ambiguous", inv("7-1439203000"), verify.AMBIGUOUS_MAPPING, "", ""),
    ("invalid-id", inv(""), verify.INVALID_LEGACY_ID, "", ""),
    (
        "layout",
        inv(problem="path does not match FILES_LAYOUT x"),
        verify.INVALID_LEGACY_ID,
        "",
        "",
    ),
    ("empty", inv(size=0), verify.FILE_EMPTY, "", ""),
    ("too-large", inv(size=100 * 1024 * 1024 + 1), verify.FILE_TOO_LARGE, "", ""),
    (
        "file-type",
        inv(name="setup.exe", content_type="application/octet-stream"),
        verify.UNSUPPORTED_FILE_TYPE,
        "",
        "",
    ),
    (
        "unreadable",
        inv(problem="unreadable: Permission denied"),
        verify.FILE_UNREADABLE,
        "",
        "",
    ),
    (
        "entity-type",
        inv("8-1439203001", "TERM"),
        verify.UNSUPPORTED_ENTITY_TYPE,
        "Term",
        "3",
    ),
]


@pytest.mark.parametrize(
    ("row", "status", "qbo_type", "qbo_id"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_status(
    tmp_path: Path, row: InventoryRow, status: str, qbo_type: str, qbo_id: str
) -> None:
    """Each kind of file gets its status, its target and a reason when not ok."""
    summary, log, skips = run(tmp_path, [row])
    assert [(r.status, r.qbo_entity_type, r.qbo_entity_id) for r in log] == [
        (status, qbo_type, qbo_id)
    ]
    assert skips == []
    assert (log[0].reason == "") == (status == verify.OK)
    assert summary.statuses == {status: 1}


def test_ambiguous_reason_names_both_candidates(tmp_path: Path) -> None:
    """An id mapped to two records names both."""
    _, log, _ = run(tmp_path, [inv("7-1439203000")])
    assert "Bill 80" in log[0].reason and "Bill 81" in log[0].reason


def test_layout_without_types_falls_back_to_id(tmp_path: Path) -> None:
    """Without a type folder the id alone joins, and an id of two types is ambiguous."""
    _, log, _ = run(tmp_path, [inv(entity_type=""), inv("9-1439203002", "")])
    assert [(r.status, r.qbo_entity_id) for r in log] == [
        (verify.OK, "75"),
        (verify.AMBIGUOUS_MAPPING, ""),
    ]


def test_different_files_with_one_name_on_one_record(tmp_path: Path) -> None:
    """Two different files that would land as one name are both held back."""
    rows = [
        inv(sha="aa", path="Bill/a/scan.pdf"),
        inv(sha="bb", path="Bill/b/scan.pdf"),
    ]
    _, log, _ = run(tmp_path, rows)
    assert [r.status for r in log] == [verify.DUPLICATE_FILE_NAME] * 2
    assert "Bill/b/scan.pdf" in log[0].reason


def test_identical_copies_upload_once(tmp_path: Path) -> None:
    """Identical copies: the first goes ahead, the others name it."""
    rows = [inv(path="Bill/a/scan.pdf"), inv(path="Bill/b/scan.pdf")]
    _, log, _ = run(tmp_path, rows)
    assert [r.status for r in log] == [verify.OK, verify.DUPLICATE_FILE_NAME]
    assert "Bill/a/scan.pdf" in log[1].reason


def test_same_id_in_two_types_is_not_a_duplicate(tmp_path: Path) -> None:
    """Invoice 75 and Bill 75 are different records."""
    rows = [inv(), inv("5-1439202900", "INVOICE")]
    _, log, _ = run(tmp_path, rows)
    assert [(r.status, r.qbo_entity_type) for r in log] == [
        (verify.OK, "Bill"),
        (verify.OK, "Invoice"),
    ]


def test_exclusions_go_to_the_skips_file(tmp_path: Path) -> None:
    """Excluded names and types land in the skips file only, with a reason."""
    rows = [
        inv(name="Thumbs.db", content_type="application/octet-stream"),
        inv(name="~$contract.docx"),
        inv("5-1439202900", "INVOICE"),
        inv(),
    ]
    exclusions = verify.Exclusions.build(["invoice"], verify.DEFAULT_EXCLUDED_NAMES)
    summary, log, skips = run(tmp_path, rows, exclusions)
    assert [r.file_name for r in skips] == ["Thumbs.db", "~$contract.docx", "scan.pdf"]
    assert {r.status for r in skips} == {verify.SKIPPED_BY_CONFIG}
    assert all(r.reason for r in skips)
    assert [r.status for r in log] == [verify.OK]
    assert summary.total == 4


def test_every_row_lands_in_exactly_one_file(tmp_path: Path) -> None:
    """Log plus skips hold each inventory row once, in order."""
    cases = [case[1] for case in CASES] + [inv(name="Thumbs.db")]
    rows = [
        replace(row, file_path=f"f{i}/{row.file_name}") for i, row in enumerate(cases)
    ]
    _, log, skips = run(tmp_path, rows)
    assert sorted(r.file_path for r in log + skips) == sorted(r.file_path for r in rows)
    assert len(log) + len(skips) == len(rows)


def test_coverage_counts_mapping_whatever_the_file(tmp_path: Path) -> None:
    """Coverage counts an empty but mapped file as mapped."""
    summary, _, _ = run(tmp_path, [inv(size=0), inv("1-1", name="b.pdf")])
    coverage = summary.coverage["BILL"]
    assert (coverage.files, coverage.mapped, coverage.missing, coverage.ok) == (
        2,
        1,
        1,
        0,
    )


def test_hand_made_mapping_with_raw_ids_still_joins(tmp_path: Path) -> None:
    """Ids spelt as the desktop does (prefix, spaces, lower case) join anyway."""
    inventory = tmp_path / "attachments_inventory.csv"
    mapping = tmp_path / "mapping_export.csv"
    write_csv(inventory, InventoryRow, [inv("AB-1439202892", "BILL")])
    write_csv(
        mapping,
        MappingRow,
        [MappingRow(" 80ab-1439202892 ", "bill", "Bill", "75", "ab-1439202892")],
    )
    verify.verify(inventory, mapping, tmp_path / "log.csv", tmp_path / "skips.csv")
    log = list(read_csv(tmp_path / "log.csv", VerificationRow))
    assert [(r.status, r.qbo_entity_id) for r in log] == [(verify.OK, "75")]


def test_only_ids_the_tree_holds_are_kept_from_the_mapping(tmp_path: Path) -> None:
    """Mapping rows for records without files never reach memory."""
    mapping = tmp_path / "mapping_export.csv"
    write_csv(mapping, MappingRow, MAPPING)
    index = verify.load_mapping(mapping, wanted={"4-1439202892"})
    assert set(index.by_id) == {"4-1439202892"}
    assert index.lookup("BILL", "4-1439202892") == {("Bill", "75")}
