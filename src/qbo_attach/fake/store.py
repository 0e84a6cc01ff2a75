"""The fake QBO companies' state, kept in one SQLite file.

The in-process fake and a ``fake-server`` process may open the same file at
once, so every write runs in its own ``BEGIN IMMEDIATE`` transaction on a WAL
journal, and readers never block the writer. Queries are answered by SQL with
bound parameters; column names come only from the fixed tables below.

The file content of an attachable is not kept, only its size and SHA-256: the
demo company holds 170,000 attachables, and nothing downloads them back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbo_attach.fake.query import Condition, Query, QueryValidationError

# QBO's attachable ids are large; start where recorded traffic does, so a
# client that stores ids as 32-bit numbers fails against the fake too.
FIRST_ATTACHABLE_ID = 5_000_000_000_000_000_001
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS realms (realm_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    realm_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (realm_id, entity_type, entity_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mappings (
    seq INTEGER PRIMARY KEY,
    realm_id TEXT NOT NULL,
    exportable_id TEXT NOT NULL,
    qbdt_type TEXT NOT NULL,
    qbo_id TEXT NOT NULL,
    qbo_type TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mappings_by_type ON mappings (realm_id, qbdt_type);
CREATE TABLE IF NOT EXISTS attachables (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    realm_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    include_on_send INTEGER NOT NULL,
    note TEXT NOT NULL,
    category TEXT NOT NULL,
    request_id TEXT NOT NULL,
    create_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attachables_by_realm ON attachables (realm_id);
CREATE INDEX IF NOT EXISTS attachables_by_entity
    ON attachables (realm_id, entity_type, entity_id);
"""


@dataclass(frozen=True, slots=True)
class NewAttachable:
    """An upload that passed validation, about to become an attachable."""

    file_name: str
    content_type: str
    size: int
    sha256: str
    entity_type: str  # "" for an attachable linked to nothing
    entity_id: str
    create_time: str  # as QBO writes it, e.g. 2018-04-17T08:21:52-07:00
    include_on_send: bool = False
    note: str = ""
    category: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    numeric: bool = False


@dataclass(frozen=True, slots=True)
class _Table:
    name: str
    key: str  # the default, stable order of pages
    outputs: tuple[tuple[str, str], ...]  # (record key, column) of a SELECT *
    fields: dict[str, _Column]  # queryable field -> column


_ATTACHABLE_OUTPUTS = (
    ("Id", "id"),
    ("FileName", "file_name"),
    ("ContentType", "content_type"),
    ("Size", "size"),
    ("Sha256", "sha256"),
    ("EntityType", "entity_type"),
    ("EntityId", "entity_id"),
    ("IncludeOnSend", "include_on_send"),
    ("Note", "note"),
    ("Category", "category"),
    ("RequestId", "request_id"),
    ("CreateTime", "create_time"),
)
_MAPPING_OUTPUTS = (
    ("QbdtExportableId", "exportable_id"),
    ("QbdtEntityType", "qbdt_type"),
    ("QboEntityId", "qbo_id"),
    ("QboEntityType", "qbo_type"),
)
_TABLES = {
    "Attachable": _Table(
        "attachables",
        "id",
        _ATTACHABLE_OUTPUTS,
        {
            "Id": _Column("id", numeric=True),
            "FileName": _Column("file_name"),
            "AttachableRef.EntityRef.Type": _Column("entity_type"),
            "AttachableRef.EntityRef.Value": _Column("entity_id"),
            "Size": _Column("size", numeric=True),
            "ContentType": _Column("content_type"),
            "MetaData.CreateTime": _Column("create_time"),
        },
    ),
    "QbdtEntityIdMapping": _Table(
        "mappings",
        "seq",
        _MAPPING_OUTPUTS,
        {field: _Column(column) for field, column in _MAPPING_OUTPUTS},
    ),
}


class FakeCompany:
    """SQLite-backed state of fake QBO companies (realms), shared by processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection, used from whichever thread serves the request; the
        # lock keeps two threads from interleaving statements on it.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._create_schema()

    def _create_schema(self) -> None:
        with self._transaction() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            # AUTOINCREMENT never reuses an id, even after a reset, as QBO.
            db.execute(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'attachables', ? "
                "WHERE NOT EXISTS "
                "(SELECT 1 FROM sqlite_sequence WHERE name = 'attachables')",
                (FIRST_ATTACHABLE_ID - 1,),
            )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def add_realm(self, realm_id: str) -> None:
        """Make a realm known, with nothing in it yet."""
        with self._transaction() as db:
            _register(db, realm_id)

    def realm_exists(self, realm_id: str) -> bool:
        """Whether anything ever registered the realm, even with no rows."""
        return bool(self._read("SELECT 1 FROM realms WHERE realm_id = ?", (realm_id,)))

    def reset(self, realm_id: str) -> None:
        """Delete all entities, mappings and attachables of the realm.

        The realm stays known, empty; attachable ids are not reused.
        """
        with self._transaction() as db:
            _register(db, realm_id)
            for table in ("entities", "mappings", "attachables"):
                db.execute(f"DELETE FROM {table} WHERE realm_id = ?", (realm_id,))

    def add_entities(
        self, realm_id: str, entities: Iterable[tuple[str, str, str]]
    ) -> None:
        """Add (QBO entity type, QBO id, display name) records to the realm.

        A record already there keeps its key and takes the new name.
        """
        rows = ((realm_id, kind, id_, name) for kind, id_, name in entities)
        with self._transaction() as db:
            _register(db, realm_id)
            db.executemany("INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?)", rows)

    def add_mappings(
        self, realm_id: str, rows: Iterable[tuple[str, str, str, str]]
    ) -> None:
        """Add QbdtEntityIdMapping rows: (QbdtExportableId, QbdtEntityType,
        QboEntityId, QboEntityType).

        Rows are appended as given, duplicates included, because the real
        mapping may hold them; it does not create the QBO entities.
        """
        values = ((realm_id, *row) for row in rows)
        with self._transaction() as db:
            _register(db, realm_id)
            db.executemany(
                "INSERT INTO mappings "
                "(realm_id, exportable_id, qbdt_type, qbo_id, qbo_type) "
                "VALUES (?, ?, ?, ?, ?)",
                values,
            )

    def entity_exists(self, realm_id: str, entity_type: str, entity_id: str) -> bool:
        """Whether the realm holds this entity; the type is case-sensitive."""
        found = self._read(
            "SELECT 1 FROM entities "
            "WHERE realm_id = ? AND entity_type = ? AND entity_id = ?",
            (realm_id, entity_type, entity_id),
        )
        return bool(found)

    def add_attachables(
        self, realm_id: str, uploads: Sequence[NewAttachable]
    ) -> list[dict[str, object]]:
        """Store uploads in one transaction; return them as attachable records."""
        columns = ", ".join(column for _, column in _ATTACHABLE_OUTPUTS[1:])
        marks = ", ".join("?" for _ in _ATTACHABLE_OUTPUTS[1:])
        records = []
        with self._transaction() as db:
            _register(db, realm_id)
            for upload in uploads:
                values = _attachable_values(upload)
                cursor = db.execute(
                    f"INSERT INTO attachables (realm_id, {columns}) "
                    f"VALUES (?, {marks})",
                    (realm_id, *values),
                )
                records.append(_attachable_record((cursor.lastrowid, *values)))
        return records

    def attachables(self, realm_id: str) -> list[dict[str, object]]:
        """Every attachable of the realm, by id, as records."""
        columns = ", ".join(column for _, column in _ATTACHABLE_OUTPUTS)
        rows = self._read(
            f"SELECT {columns} FROM attachables WHERE realm_id = ? ORDER BY id",
            (realm_id,),
        )
        return [_attachable_record(row) for row in rows]

    def count_rows(self, realm_id: str, query: Query) -> int:
        """The number of rows a query's WHERE clause matches in the realm."""
        table = _TABLES[query.entity]
        where, parameters = _where(table, realm_id, query.conditions)
        rows = self._read(
            f"SELECT COUNT(*) FROM {table.name} WHERE {where}", parameters
        )
        return int(rows[0][0])

    def select_rows(self, realm_id: str, query: Query) -> list[dict[str, object]]:
        """One page of the query's answer, as records keyed like QBO's fields."""
        table = _TABLES[query.entity]
        where, parameters = _where(table, realm_id, query.conditions)
        columns = ", ".join(column for _, column in table.outputs)
        rows = self._read(
            f"SELECT {columns} FROM {table.name} WHERE {where} "
            f"ORDER BY {_order(table, query)} LIMIT ? OFFSET ?",
            [*parameters, query.max_results, query.start_position - 1],
        )
        if query.entity == "Attachable":
            return [_attachable_record(row) for row in rows]
        return [
            dict(zip((key for key, _ in table.outputs), row, strict=True))
            for row in rows
        ]

    def close(self) -> None:
        """Close the database; the handle is unusable afterwards."""
        with self._lock:
            self._db.close()


def _register(db: sqlite3.Connection, realm_id: str) -> None:
    db.execute("INSERT OR IGNORE INTO realms VALUES (?)", (realm_id,))


def _attachable_values(upload: NewAttachable) -> tuple[object, ...]:
    return (
        upload.file_name,
        upload.content_type,
        upload.size,
        upload.sha256,
        upload.entity_type,
        upload.entity_id,
        int(upload.include_on_send),
        upload.note,
        upload.category,
        upload.request_id,
        upload.create_time,
    )


def _attachable_record(row: Sequence[object]) -> dict[str, object]:
    record = dict(zip((key for key, _ in _ATTACHABLE_OUTPUTS), row, strict=True))
    record["Id"] = str(record["Id"])
    record["IncludeOnSend"] = bool(record["IncludeOnSend"])
    return record


def _where(
    table: _Table, realm_id: str, conditions: Iterable[Condition]
) -> tuple[str, list[object]]:
    clauses = ["realm_id = ?"]
    parameters: list[object] = [realm_id]
    for condition in conditions:
        column = table.fields[condition.field]
        values = [_bound(column, condition, value) for value in condition.values]
        clauses.append(_clause(column.name, condition.operator, len(values)))
        parameters.extend(values)
    return " AND ".join(clauses), parameters


def _clause(column: str, operator: str, count: int) -> str:
    if operator == "IN":
        return f"{column} IN ({', '.join('?' * count)})"
    if operator == "LIKE":
        return f"{column} LIKE ? ESCAPE '\\'"
    return f"{column} {operator} ?"


def _bound(column: _Column, condition: Condition, value: str) -> object:
    if condition.operator == "LIKE":
        # QBO's only wildcard is %; SQL's _ and the escape itself are literal.
        escaped = value.replace("\\", "\\\\").replace("_", "\\_")
        return escaped
    if not column.numeric:
        return value
    try:
        return int(value)
    except ValueError:
        raise QueryValidationError(
            f"{condition.field} is a number; {value!r} is not"
        ) from None


def _order(table: _Table, query: Query) -> str:
    keys = [
        table.fields[ordering.field].name + (" DESC" if ordering.descending else "")
        for ordering in query.order_by
    ]
    # The table's key last, so pages never overlap or skip a row.
    keys.append(f"{table.key} ASC")
    return ", ".join(keys)
