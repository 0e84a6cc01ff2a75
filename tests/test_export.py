"""Warehouse export: tables, column types, NULLs and the auditors' queries."""

from __future__ import annotations

import datetime
from pathlib import Path

import duckdb
import pytest

from qbo_attach import export
from qbo_attach.errors import InputError, UsageError
from qbo_attach.records import (
    CheckRow,
    InventoryRow,
    RunLogRow,
    VerificationRow,
    write_csv,
)
from qbo_attach.settings import Settings
from tests import auditkit

FORMATS = pytest.mark.parametrize(
    "fmt", ["parquet", "duckdb"], ids=["parquet", "duckdb"]
)


def exported(tmp_path: Path, fmt: export.Format) -> duckdb.DuckDBPyConnection:
    settings = auditkit.write_migration(tmp_path)
    export.export(settings, tmp_path / "out", fmt)
    return export.connect(tmp_path / "out")


def types_of(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {table}").fetchall()}


@FORMATS
def test_tables_and_row_counts(tmp_path: Path, fmt: export.Format) -> None:
    """The four tables hold every row, the skips inside the verification table."""
    settings = auditkit.write_migration(tmp_path)
    counts = export.export(settings, tmp_path / "out", fmt)
    assert counts == {
        "attachment_inventory": 11,
        "attachment_mapping_verification": 11,
        "attachment_run_log": 23,
        "attachment_errors": auditkit.ERRORS_LOG_ROWS,
    }


def test_output_files_per_format(tmp_path: Path) -> None:
    """Parquet gives a file per table; duckdb one database file."""
    settings = auditkit.write_migration(tmp_path)
    export.export(settings, tmp_path / "pq", "parquet")
    export.export(settings, tmp_path / "db", "duckdb")
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == [
        "attachment_errors.parquet",
        "attachment_inventory.parquet",
        "attachment_mapping_verification.parquet",
        "attachment_run_log.parquet",
    ]
    assert [p.name for p in (tmp_path / "db").iterdir()] == ["qbo_attach.duckdb"]


@FORMATS
def test_column_types(tmp_path: Path, fmt: export.Format) -> None:
    """Times, sizes, attempts and statuses are typed; ids stay text."""
    con = exported(tmp_path, fmt)
    run_log = types_of(con, "attachment_run_log")
    assert run_log["ts"] == "TIMESTAMP"
    assert run_log["size_bytes"] == "BIGINT"
    assert run_log["duration_ms"] == "BIGINT"
    assert run_log["attempt"] == "INTEGER"
    assert run_log["status_code"] == "INTEGER"
    assert run_log["qbo_entity_id"] == "VARCHAR"
    assert list(run_log) == list(types_of(con, "attachment_errors"))
    assert types_of(con, "attachment_inventory")["size_bytes"] == "BIGINT"


@FORMATS
def test_empty_cells_are_null_and_times_utc(tmp_path: Path, fmt: export.Format) -> None:
    """A started row has NULL status and duration; its time is UTC wall time."""
    con = exported(tmp_path, fmt)
    row = con.execute(
        "SELECT ts, status_code, duration_ms, error_code FROM attachment_run_log "
        "WHERE outcome = 'started' ORDER BY ts LIMIT 1"
    ).fetchone()
    assert row == (datetime.datetime(2024, 5, 2, 10, 0, 0, 100000), None, None, None)


@FORMATS
def test_partial_uploads_query(tmp_path: Path, fmt: export.Format) -> None:
    """Verified files never attached: the rejected one and the one not tried."""
    con = exported(tmp_path, fmt)
    rows = con.execute(export.AUDIT_QUERIES["partial_uploads"]).fetchall()
    assert [row[-1] for row in rows] == ["BILL/80B2/c.pdf", "CHECK/80C3/j.pdf"]


@FORMATS
def test_drift_between_runs_query(tmp_path: Path, fmt: export.Format) -> None:
    """The error that later succeeded and the upload in doubt that was found."""
    con = exported(tmp_path, fmt)
    rows = con.execute(export.AUDIT_QUERIES["drift_between_runs"]).fetchall()
    assert rows == [
        ("Invoice", "2", "f.pdf", "error", "success"),
        ("Purchase", "1", "h.pdf", "started", "reconciled"),
    ]


@FORMATS
def test_failures_by_error_code_query(tmp_path: Path, fmt: export.Format) -> None:
    """Failed rows of every run by code, with a file for each."""
    con = exported(tmp_path, fmt)
    rows = con.execute(export.AUDIT_QUERIES["failures_by_error_code"]).fetchall()
    assert rows == [
        ("6000", 2, 1, "BILL/80B2/c.pdf"),
        ("HTTP 503", 1, 1, "INVOICE/80I2/f.pdf"),
    ]


def test_runs_query(tmp_path: Path) -> None:
    """Each run with its span and the files it attached."""
    con = exported(tmp_path, "duckdb")
    rows = con.execute(export.AUDIT_QUERIES["runs"]).fetchall()
    assert [(row[0], row[3]) for row in rows] == [
        (auditkit.RUN_1, 3),
        (auditkit.RUN_2, 2),
    ]


@FORMATS
def test_check_table_when_check_ran(tmp_path: Path, fmt: export.Format) -> None:
    """The check log becomes attachment_check, its sizes typed."""
    settings = auditkit.write_migration(tmp_path)
    finding = CheckRow("missing", "Bill", "2", "c.pdf", "", None, 3000, "x", "")
    write_csv(settings.check_log, CheckRow, [finding])
    counts = export.export(settings, tmp_path / "out", fmt)
    assert counts["attachment_check"] == 1
    con = export.connect(tmp_path / "out")
    assert types_of(con, "attachment_check")["local_size"] == "BIGINT"
    assert con.execute("SELECT remote_size FROM attachment_check").fetchone() == (None,)


@pytest.mark.parametrize(
    ("artifact", "command"),
    [
        ("inventory_csv", "qbo-attach inventory"),
        ("verification_skips", "qbo-attach verify"),
        ("runlog", "qbo-attach upload"),
        ("errors_log", "qbo-attach upload"),
    ],
    ids=["inventory", "skips", "run-log", "errors-log"],
)
def test_missing_source_names_file_and_command(
    tmp_path: Path, artifact: str, command: str
) -> None:
    """A missing CSV stops the export before anything is written."""
    settings = auditkit.write_migration(tmp_path)
    path: Path = getattr(settings, artifact)
    path.unlink()
    with pytest.raises(UsageError, match=f"{path.name}.*{command}"):
        export.export(settings, tmp_path / "out", "duckdb")
    assert not (tmp_path / "out").exists()


def test_columns_in_another_order_load_by_name(tmp_path: Path) -> None:
    """Columns are matched by name, and extra columns at the end are ignored."""
    settings = auditkit.write_migration(tmp_path)
    lines = settings.inventory_csv.read_text().splitlines()
    swapped = [_swap_first_two(line) + ",extra" for line in lines]
    settings.inventory_csv.write_text("\n".join(swapped) + "\n")
    export.export(settings, tmp_path / "out", "duckdb")
    con = export.connect(tmp_path / "out")
    row = con.execute(
        "SELECT legacy_txnid_norm, legacy_entity_type FROM attachment_inventory "
        "ORDER BY file_path LIMIT 1"
    ).fetchone()
    assert row == ("B1", "BILL")


def _swap_first_two(line: str) -> str:
    first, second, rest = line.split(",", 2)
    return ",".join((second, first, rest))


def test_unreadable_csv_is_an_input_error(tmp_path: Path) -> None:
    """A size that is not a number names the file instead of a DuckDB trace."""
    settings = auditkit.write_migration(tmp_path)
    text = settings.inventory_csv.read_text().replace(",1000,", ",lots,")
    settings.inventory_csv.write_text(text)
    with pytest.raises(InputError, match=r"attachments_inventory\.csv"):
        export.export(settings, tmp_path / "out", "duckdb")


def test_connect_without_export(tmp_path: Path) -> None:
    """Opening an empty folder says how to make an export."""
    with pytest.raises(UsageError, match="qbo-attach export"):
        export.connect(tmp_path)


def test_formula_guard_is_removed_in_the_warehouse(tmp_path: Path) -> None:
    """A file name written as '=x in the CSV is =x in the warehouse table."""
    settings = Settings(
        data_dir=tmp_path / "data",
        files_dir=tmp_path / "files",
        log_dir=tmp_path / "logs",
    )
    row = InventoryRow(
        "-1",
        "BILL",
        "80-1",
        "=SUM(A1).pdf",
        "Bill/80-1/=SUM(A1).pdf",
        5,
        "application/pdf",
        "",
        "",
    )
    settings.data_dir.mkdir(parents=True)
    write_csv(settings.inventory_csv, InventoryRow, [row])
    for artifact, cls in (
        (settings.verification_log, VerificationRow),
        (settings.verification_skips, VerificationRow),
        (settings.runlog, RunLogRow),
        (settings.errors_log, RunLogRow),
    ):
        artifact.parent.mkdir(parents=True, exist_ok=True)
        write_csv(artifact, cls, [])
    export.export(settings, tmp_path / "out", "duckdb")
    con = export.connect(tmp_path / "out")
    try:
        names = con.execute(
            "select file_name, legacy_txnid_norm from attachment_inventory"
        ).fetchall()
    finally:
        con.close()
    assert names == [("=SUM(A1).pdf", "-1")]
