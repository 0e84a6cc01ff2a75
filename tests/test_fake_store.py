"""The fake QBO's SQLite store of companies."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qbo_attach.fake import FakeCompany
from qbo_attach.fake.query import QueryValidationError, parse_query
from qbo_attach.fake.store import FIRST_ATTACHABLE_ID, NewAttachable

REALM = "9130356789012345"
OTHER_REALM = "4620816365000000"


def attachable(file_name: str = "scan.pdf", entity_id: str = "75") -> NewAttachable:
    """An upload that passed validation, linked to an invoice."""
    return NewAttachable(
        file_name=file_name,
        content_type="application/pdf",
        size=538,
        sha256="ab" * 32,
        entity_type="Invoice",
        entity_id=entity_id,
        create_time="2018-04-17T08:21:52-07:00",
        request_id="run1-0001",
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the company file goes, in a folder that does not exist yet."""
    return tmp_path / "data" / "fake_qbo.sqlite"


@pytest.fixture
def company(db_path: Path) -> Iterator[FakeCompany]:
    """An empty store, closed after the test."""
    store = FakeCompany(db_path)
    yield store
    store.close()


def test_new_file_gets_schema_in_wal_mode(company: FakeCompany, db_path: Path) -> None:
    """Opening a missing file creates it, its folder and its tables, in WAL mode."""
    with sqlite3.connect(db_path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}

    assert mode == "wal"
    assert {"realms", "entities", "mappings", "attachables"} <= tables


def test_reopening_keeps_state(company: FakeCompany, db_path: Path) -> None:
    """A second open of the same file finds what the first one stored."""
    company.add_attachables(REALM, [attachable()])
    company.close()

    reopened = FakeCompany(db_path)
    try:
        assert [r["FileName"] for r in reopened.attachables(REALM)] == ["scan.pdf"]
    finally:
        reopened.close()


def test_two_handles_see_each_others_writes(
    company: FakeCompany, db_path: Path
) -> None:
    """Two stores open on one file see each other's entities and attachables."""
    other = FakeCompany(db_path)
    try:
        company.add_entities(REALM, [("Invoice", "75", "INV-75")])
        other.add_attachables(REALM, [attachable()])
        other.add_mappings(REALM, [("80000004-1424241304", "INVOICE", "75", "Invoice")])

        assert other.realm_exists(REALM)
        assert other.entity_exists(REALM, "Invoice", "75")
        assert [r["FileName"] for r in company.attachables(REALM)] == ["scan.pdf"]
        query = parse_query("select count(*) from QbdtEntityIdMapping")
        assert company.count_rows(REALM, query) == 1
    finally:
        other.close()


def test_another_process_writes_through_the_same_file(
    company: FakeCompany, db_path: Path
) -> None:
    """A second process, like fake-server, adds rows the first one then reads."""
    script = (
        "import sys; from pathlib import Path\n"
        "from qbo_attach.fake import FakeCompany\n"
        "company = FakeCompany(Path(sys.argv[1]))\n"
        f"company.add_entities({REALM!r}, [('Bill', str(i), 'b') for i in range(50)])\n"
        "company.close()\n"
    )
    company.add_entities(REALM, [("Invoice", "1", "first")])

    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True)

    assert company.entity_exists(REALM, "Bill", "49")
    assert company.entity_exists(REALM, "Invoice", "1")


def test_attachable_records(company: FakeCompany) -> None:
    """Stored attachables come back as records with the documented keys."""
    [returned] = company.add_attachables(REALM, [attachable()])

    [record] = company.attachables(REALM)

    assert record == returned
    assert record == {
        "Id": str(FIRST_ATTACHABLE_ID),
        "FileName": "scan.pdf",
        "ContentType": "application/pdf",
        "Size": 538,
        "Sha256": "ab" * 32,
        "EntityType": "Invoice",
        "EntityId": "75",
        "IncludeOnSend": False,
        "Note": "",
        "Category": "",
        "RequestId": "run1-0001",
        "CreateTime": "2018-04-17T08:21:52-07:00",
    }


def test_ids_increase_and_are_never_reused(company: FakeCompany) -> None:
    """Ids start at QBO's large numbers, increase, and survive a reset unused."""
    first = company.add_attachables(REALM, [attachable("a.pdf"), attachable("b.pdf")])
    company.reset(REALM)
    [after_reset] = company.add_attachables(REALM, [attachable("c.pdf")])

    ids = [int(str(r["Id"])) for r in [*first, after_reset]]
    assert ids == [
        FIRST_ATTACHABLE_ID,
        FIRST_ATTACHABLE_ID + 1,
        FIRST_ATTACHABLE_ID + 2,
    ]


def test_reset_empties_only_its_realm(company: FakeCompany) -> None:
    """reset deletes one realm's rows, keeps the realm known, and spares others."""
    for realm in (REALM, OTHER_REALM):
        company.add_entities(realm, [("Invoice", "75", "INV-75")])
        company.add_mappings(realm, [("4-1439202892", "INVOICE", "75", "Invoice")])
        company.add_attachables(realm, [attachable()])

    company.reset(REALM)

    mappings = parse_query("select count(*) from QbdtEntityIdMapping")
    assert company.realm_exists(REALM)
    assert not company.entity_exists(REALM, "Invoice", "75")
    assert company.count_rows(REALM, mappings) == 0
    assert company.attachables(REALM) == []
    assert company.entity_exists(OTHER_REALM, "Invoice", "75")
    assert company.count_rows(OTHER_REALM, mappings) == 1
    assert len(company.attachables(OTHER_REALM)) == 1


@pytest.mark.parametrize(
    "register",
    [
        lambda c: c.add_entities(REALM, []),
        lambda c: c.add_mappings(REALM, []),
        lambda c: c.add_realm(REALM),
        lambda c: c.reset(REALM),
    ],
    ids=["add_entities", "add_mappings", "add_realm", "reset"],
)
def test_realm_becomes_known(
    company: FakeCompany, register: Callable[[FakeCompany], None]
) -> None:
    """A realm is unknown until something registers it, even with no rows."""
    assert not company.realm_exists(REALM)

    register(company)

    assert company.realm_exists(REALM)
    assert not company.realm_exists(OTHER_REALM)


def test_entities_are_keyed_by_case_sensitive_type_and_id(company: FakeCompany) -> None:
    """Entity lookup matches type case exactly, and a re-add does not duplicate."""
    company.add_entities(REALM, [("PurchaseOrder", "12", "PO-12")])
    company.add_entities(REALM, [("PurchaseOrder", "12", "PO-12 renamed")])

    assert company.entity_exists(REALM, "PurchaseOrder", "12")
    assert not company.entity_exists(REALM, "purchaseorder", "12")
    assert not company.entity_exists(REALM, "Invoice", "12")
    assert not company.entity_exists(OTHER_REALM, "PurchaseOrder", "12")


def test_many_entities_in_one_call(company: FakeCompany) -> None:
    """200,000 entities go in through one call from a generator."""
    company.add_entities(
        REALM, (("Invoice", str(i), f"INV-{i}") for i in range(200_000))
    )

    assert company.entity_exists(REALM, "Invoice", "199999")


def test_mappings_keep_their_order_and_duplicates(company: FakeCompany) -> None:
    """Mapping rows page in the order added, a repeated row included."""
    rows = [
        ("2-1439202892", "BILL", "7", "Bill"),
        ("1-1439202892", "INVOICE", "5", "Invoice"),
        ("1-1439202892", "INVOICE", "5", "Invoice"),
    ]
    company.add_mappings(REALM, rows)

    found = company.select_rows(REALM, parse_query("select * from QbdtEntityIdMapping"))

    assert [tuple(row.values()) for row in found] == rows


def test_like_escapes_sql_wildcards(company: FakeCompany) -> None:
    """Only % is a wildcard in LIKE: _ and \\ match themselves."""
    names = ["a_b.pdf", "axb.pdf", "a\\b.pdf"]
    company.add_attachables(REALM, [attachable(name) for name in names])

    def matching(pattern: str) -> list[object]:
        query = parse_query(f"select * from Attachable where FileName like '{pattern}'")
        return [row["FileName"] for row in company.select_rows(REALM, query)]

    assert matching("a_%") == ["a_b.pdf"]
    assert matching("a\\\\%") == ["a\\b.pdf"]
    assert matching("a%") == names


def test_numeric_field_refuses_text(company: FakeCompany) -> None:
    """Comparing a numeric field with text raises QueryValidationError."""
    query = parse_query("select * from Attachable where Size > 'big'")

    with pytest.raises(QueryValidationError, match="Size is a number"):
        company.select_rows(REALM, query)
