"""Warehouse tables: the CSV artifacts as typed Parquet files or one DuckDB file.

``export`` loads each artifact with DuckDB's CSV reader, naming every
column's type instead of letting DuckDB guess (a guess would turn QBO ids
into numbers and drop their meaning as text), and writes:

=================================  =========================================
table                              from
=================================  =========================================
attachment_inventory               attachments_inventory.csv
attachment_mapping_verification    mapping_verification_log.csv + skips
attachment_run_log                 qbo_attach_runlog.csv
attachment_errors                  qbo_attach_errors.csv
attachment_check                   qbo_attach_check.csv, when check has run
=================================  =========================================

Times become ``TIMESTAMP`` in UTC, sizes and durations ``BIGINT``, attempts
and HTTP statuses ``INTEGER``; an empty cell becomes NULL. Columns are picked
by name, so a CSV with its columns in another order or with columns added at
the end still loads. ``AUDIT_QUERIES`` holds the queries an auditor starts
with; ``connect`` opens an export, in either format, to run them.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from qbo_attach.errors import InputError, UsageError
from qbo_attach.records import (
    CheckRow,
    InventoryRow,
    RunLogRow,
    VerificationRow,
    columns,
)
from qbo_attach.settings import Settings

Format = Literal["parquet", "duckdb"]
DUCKDB_FILE = "qbo_attach.duckdb"

# Columns that are not text. Everything else, ids included, stays VARCHAR.
COLUMN_TYPES = {
    "ts": "TIMESTAMPTZ",
    "size_bytes": "BIGINT",
    "duration_ms": "BIGINT",
    "remote_size": "BIGINT",
    "local_size": "BIGINT",
    "attempt": "INTEGER",
    "status_code": "INTEGER",
}


@dataclass(frozen=True, slots=True)
class Table:
    """One warehouse table: its record type, source CSVs, and who makes them."""

    name: str
    record: type[Any]
    sources: Callable[[Settings], tuple[Path, ...]]
    command: str
    optional: bool = False


TABLES = (
    Table(
        "attachment_inventory",
        InventoryRow,
        lambda s: (s.inventory_csv,),
        "qbo-attach inventory",
    ),
    Table(
        "attachment_mapping_verification",
        VerificationRow,
        lambda s: (s.verification_log, s.verification_skips),
        "qbo-attach verify",
    ),
    Table(
        "attachment_run_log",
        RunLogRow,
        lambda s: (s.runlog,),
        "qbo-attach upload",
    ),
    Table(
        "attachment_errors",
        RunLogRow,
        lambda s: (s.errors_log,),
        "qbo-attach upload",
    ),
    Table(
        "attachment_check",
        CheckRow,
        lambda s: (s.check_log,),
        "qbo-attach check",
        optional=True,
    ),
)

_KEY = "qbo_entity_type, qbo_entity_id, file_name"

AUDIT_QUERIES: dict[str, str] = {
    # Verified files that no run has attached: the uploads still owed.
    "partial_uploads": """
SELECT v.legacy_entity_type, v.qbo_entity_type, v.qbo_entity_id, v.file_name,
       v.file_path
FROM attachment_mapping_verification AS v
WHERE v.status = 'ok'
  AND NOT EXISTS (
    SELECT 1 FROM attachment_run_log AS r
    WHERE r.qbo_entity_type = v.qbo_entity_type
      AND r.qbo_entity_id = v.qbo_entity_id
      AND r.file_name = v.file_name
      AND r.outcome IN ('success', 'reconciled'))
ORDER BY v.file_path
""",
    # Files whose outcome differs between the two latest runs. A skip after an
    # upload is the expected repeat and not drift; a key missing from one run
    # shows NULL on that side.
    "drift_between_runs": f"""
WITH last_rows AS (
  SELECT run_id, {_KEY}, outcome
  FROM attachment_run_log
  QUALIFY row_number() OVER (
    PARTITION BY run_id, {_KEY}
    ORDER BY ts DESC, attempt DESC NULLS LAST, outcome = 'started') = 1
), runs AS (
  SELECT run_id, min(ts) AS started FROM attachment_run_log GROUP BY run_id
  ORDER BY started DESC LIMIT 2
), previous AS (
  SELECT * FROM last_rows
  WHERE run_id = (SELECT run_id FROM runs ORDER BY started LIMIT 1)
), latest AS (
  SELECT * FROM last_rows
  WHERE run_id = (SELECT run_id FROM runs ORDER BY started DESC LIMIT 1)
)
SELECT {_KEY}, p.outcome AS previous_outcome, l.outcome AS latest_outcome
FROM previous AS p FULL OUTER JOIN latest AS l USING ({_KEY})
WHERE p.outcome IS DISTINCT FROM l.outcome
  AND NOT (l.outcome = 'skipped_already_uploaded'
           AND p.outcome IN ('success', 'reconciled', 'skipped_already_uploaded'))
ORDER BY {_KEY}
""",
    # Failed rows of every run by cause, with one file to look at for each.
    "failures_by_error_code": f"""
SELECT coalesce(error_code, 'HTTP ' || status_code, outcome) AS code,
       count(*) AS failures,
       count(DISTINCT ({_KEY})) AS files,
       min(file_path) AS example_file
FROM attachment_errors
GROUP BY code
ORDER BY failures DESC, code
""",
    # Each run with its first and last event and the files it attached.
    "runs": """
SELECT run_id, min(ts) AS started, max(ts) AS ended,
       count(*) FILTER (WHERE outcome IN ('success', 'reconciled')) AS attached
FROM attachment_run_log
GROUP BY run_id
ORDER BY started
""",
}


def export(settings: Settings, to: Path, fmt: Format) -> dict[str, int]:
    """Write the warehouse tables into the folder ``to``; return rows per table.

    ``parquet`` writes one ``<table>.parquet`` file per table; ``duckdb`` one
    ``qbo_attach.duckdb`` database holding them all. Each output replaces the
    previous one whole. Raises ``UsageError`` naming a missing source CSV and
    the command that makes it, before anything is written, and ``InputError``
    for a CSV that DuckDB cannot read.
    """
    tables = [table for table in TABLES if _available(settings, table)]
    to.mkdir(parents=True, exist_ok=True)
    if fmt == "duckdb":
        return _export_duckdb(settings, tables, to / DUCKDB_FILE)
    return _export_parquet(settings, tables, to)


def _available(settings: Settings, table: Table) -> bool:
    """Whether the table's sources exist; a missing required one is an error."""
    for path in table.sources(settings):
        if not path.is_file():
            if table.optional:
                return False
            raise UsageError(
                f"{path}: file not found; run `{table.command}` first to make it"
            )
    return True


def _export_duckdb(
    settings: Settings, tables: list[Table], path: Path
) -> dict[str, int]:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with duckdb.connect(str(tmp)) as con:
        counts = {t.name: _load(con, settings, t) for t in tables}
    os.replace(tmp, path)
    return counts


def _export_parquet(
    settings: Settings, tables: list[Table], to: Path
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with duckdb.connect() as con:
        for table in tables:
            counts[table.name] = _load(con, settings, table)
            target = to / f"{table.name}.parquet"
            tmp = target.with_name(target.name + ".tmp")
            con.execute(f"COPY {table.name} TO {_literal(tmp)} (FORMAT parquet)")
            os.replace(tmp, target)
    return counts


def _load(con: duckdb.DuckDBPyConnection, settings: Settings, table: Table) -> int:
    """Create the table from its CSVs; return its row count."""
    selects = [_select(path, table.record) for path in table.sources(settings)]
    query = f"CREATE TABLE {table.name} AS " + "\nUNION ALL\n".join(selects)
    try:
        con.execute(query)
    except duckdb.Error as exc:
        paths = ", ".join(str(p) for p in table.sources(settings))
        raise InputError(paths, f"DuckDB cannot load it: {exc}") from exc
    row = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()
    return int(row[0]) if row else 0


def _select(path: Path, record: type[Any]) -> str:
    """A SELECT of the record's columns, typed, from one CSV file."""
    header = _header(path)
    missing = [name for name in columns(record) if name not in header]
    if missing:
        raise InputError(
            path, f"missing column(s) {', '.join(missing)}", row=1, column=missing[0]
        )
    declared = ", ".join(
        f"{_literal(name)}: {_literal(COLUMN_TYPES.get(name, 'VARCHAR'))}"
        for name in header
    )
    picked = ",\n       ".join(_column(name) for name in columns(record))
    return (
        f"SELECT {picked}\nFROM read_csv({_literal(path)}, header = true, "
        f"auto_detect = false, delim = ',', quote = '\"', escape = '\"', "
        f"nullstr = '', columns = {{{declared}}})"
    )


def _column(name: str) -> str:
    quoted = _identifier(name)
    kind = COLUMN_TYPES.get(name, "VARCHAR")
    if kind == "TIMESTAMPTZ":
        # The run log writes UTC offsets; the warehouse gets UTC wall time.
        return f"timezone('UTC', {quoted}) AS {quoted}"
    if kind == "VARCHAR":
        # Text that could run as a spreadsheet formula carries one leading
        # apostrophe in the CSVs (records.neutralize); tables get the value.
        return (
            f"CASE WHEN starts_with({quoted}, {_literal(APOSTROPHE)}) "
            f"THEN substr({quoted}, 2) ELSE {quoted} END AS {quoted}"
        )
    return quoted


APOSTROPHE = "'"


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        first = next(csv.reader(handle), None)
    if first is None:
        raise InputError(path, "the file is empty; expected a header row")
    return [name.strip() for name in first]


def _literal(value: object) -> str:
    text = str(value).replace("'", "''")
    return f"'{text}'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(directory: Path) -> duckdb.DuckDBPyConnection:
    """Open an export for queries: its DuckDB file, or views over its Parquet.

    The tables keep their names either way, so ``AUDIT_QUERIES`` run as they
    are. Raises ``UsageError`` when the folder holds no export.
    """
    database = directory / DUCKDB_FILE
    if database.is_file():
        return duckdb.connect(str(database), read_only=True)
    found = list(_parquet_tables(directory))
    if not found:
        raise UsageError(
            f"{directory}: no export found; run `qbo-attach export --to {directory}`"
        )
    con = duckdb.connect()
    for name, path in found:
        con.execute(
            f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_literal(path)})"
        )
    return con


def _parquet_tables(directory: Path) -> Iterator[tuple[str, Path]]:
    for table in TABLES:
        path = directory / f"{table.name}.parquet"
        if path.is_file():
            yield table.name, path
