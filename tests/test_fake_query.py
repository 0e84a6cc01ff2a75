"""The fake QBO's query language and its query endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from qbo_attach.fake import FakeCompany, create_app
from qbo_attach.fake.query import (
    Condition,
    Ordering,
    Query,
    QueryError,
    QueryParseError,
    QueryValidationError,
    parse_query,
)
from qbo_attach.fake.store import FIRST_ATTACHABLE_ID, NewAttachable

REALM = "9130356789012345"
OTHER_REALM = "4620816365000000"
QUERY = f"/v3/company/{REALM}/query"
ATTACHABLES = 2500
MAPPINGS = 2300
TYPES = ("Invoice", "Bill", "Estimate", "PurchaseOrder", "Deposit")


def seeded_attachable(index: int) -> NewAttachable:
    """The index-th attachable of the seeded company: types and ids cycle."""
    return NewAttachable(
        file_name=f"scan-{index:04d}.pdf",
        content_type="application/pdf",
        size=index,
        sha256=f"{index:064x}",
        entity_type=TYPES[index % len(TYPES)],
        entity_id=str(index % 100),
        create_time="2024-05-01T10:00:00-07:00",
    )


def seeded_mapping(index: int) -> tuple[str, str, str, str]:
    """The index-th mapping row: two in three are invoices."""
    kind = "BILL" if index % 3 == 2 else "INVOICE"
    return (f"{index:X}-1424241304", kind, str(index), kind.title())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starlette]:
    """A fake whose company holds 2500 attachables and 2300 mapping rows."""
    db_path = tmp_path_factory.mktemp("query") / "fake_qbo.sqlite"
    company = FakeCompany(db_path)
    company.add_mappings(REALM, (seeded_mapping(i) for i in range(MAPPINGS)))
    company.add_attachables(REALM, [seeded_attachable(i) for i in range(ATTACHABLES)])
    company.add_attachables(OTHER_REALM, [seeded_attachable(0)])
    company.close()
    app = create_app(db_path)
    yield app
    app.state.company.close()


def send(app: Starlette, method: str, **kwargs: Any) -> httpx.Response:
    """Send one authenticated request to the realm's query endpoint."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://fake-qbo",
            headers={"Authorization": "Bearer test-token"},
        ) as client:
            return await client.request(method, QUERY, **kwargs)

    return asyncio.run(go())


def ask(app: Starlette, statement: str) -> dict[str, Any]:
    """The QueryResponse of a statement sent with GET, checking it succeeded."""
    answer = send(app, "GET", params={"query": statement, "minorversion": "75"})
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    assert set(document) == {"QueryResponse", "time"}
    response: dict[str, Any] = document["QueryResponse"]
    return response


def rows(app: Starlette, statement: str, entity: str = "Attachable") -> list[Any]:
    """The rows of a statement's page, or [] for an empty page."""
    return list(ask(app, statement).get(entity, []))


# The parser.

PARSED = {
    "star": ("select * from Attachable", Query("Attachable")),
    "count": ("SELECT COUNT(*) FROM attachable", Query("Attachable", count=True)),
    "where-and": (
        "select * from Attachable where AttachableRef.EntityRef.Type = 'Invoice' "
        "and attachableref.entityref.value = '75'",
        Query(
            "Attachable",
            conditions=(
                Condition("AttachableRef.EntityRef.Type", "=", ("Invoice",)),
                Condition("AttachableRef.EntityRef.Value", "=", ("75",)),
            ),
        ),
    ),
    "in-like-compare": (
        "Select * From Attachable Where Id IN ('1', '2') And FileName Like '%a%' "
        "aNd Size > 10 AND Size <= 20",
        Query(
            "Attachable",
            conditions=(
                Condition("Id", "IN", ("1", "2")),
                Condition("FileName", "LIKE", ("%a%",)),
                Condition("Size", ">", ("10",)),
                Condition("Size", "<=", ("20",)),
            ),
        ),
    ),
    "escaped-quotes": (
        r"select * from Attachable where FileName = 'O\'Neil''s.pdf'",
        Query(
            "Attachable", conditions=(Condition("FileName", "=", ("O'Neil's.pdf",)),)
        ),
    ),
    "orderby-paging": (
        "select * from QbdtEntityIdMapping where QbdtEntityType = 'INVOICE' "
        "orderby QboEntityId desc, QbdtExportableId startposition 1001 maxresults 1000",
        Query(
            "QbdtEntityIdMapping",
            conditions=(Condition("QbdtEntityType", "=", ("INVOICE",)),),
            order_by=(Ordering("QboEntityId", True), Ordering("QbdtExportableId")),
            start_position=1001,
            max_results=1000,
        ),
    ),
    "order-by-two-words": (
        "select * from Attachable order by FileName asc maxresults 5 startposition 2",
        Query(
            "Attachable",
            order_by=(Ordering("FileName"),),
            start_position=2,
            max_results=5,
        ),
    ),
}


@pytest.mark.parametrize(
    ("statement", "expected"), list(PARSED.values()), ids=list(PARSED)
)
def test_parse_query(statement: str, expected: Query) -> None:
    """Statements parse into canonical entity and field names, case-insensitively."""
    assert parse_query(statement) == expected


BAD_STATEMENTS = {
    "empty": ("", QueryParseError, "expected SELECT"),
    "no-from": ("select * Attachable", QueryParseError, "expected FROM"),
    "field-list": ("select Id from Attachable", QueryParseError, "COUNT"),
    "or": (
        "select * from Attachable where Id = '1' or Id = '2'",
        QueryParseError,
        "no OR",
    ),
    "unterminated": (
        "select * from Attachable where FileName = 'a",
        QueryParseError,
        "unterminated string",
    ),
    "bad-character": ("select * from Attachable;", QueryParseError, "';'"),
    "like-number": (
        "select * from Attachable where FileName like 5",
        QueryParseError,
        "quoted pattern",
    ),
    "no-operator": (
        "select * from Attachable where FileName 'a'",
        QueryParseError,
        "expected =",
    ),
    "trailing": ("select * from Attachable Id", QueryParseError, "the end"),
    "twice": (
        "select * from Attachable maxresults 5 maxresults 6",
        QueryParseError,
        "twice",
    ),
    "not-integer": (
        "select * from Attachable maxresults 1.5",
        QueryParseError,
        "whole number",
    ),
    "unknown-entity": ("select * from Invoice", QueryValidationError, "Invoice"),
    "unknown-field": (
        "select * from Attachable where Color = 'red'",
        QueryValidationError,
        "Color",
    ),
    "maxresults-over-1000": (
        "select * from Attachable maxresults 1001",
        QueryValidationError,
        "between 1 and 1000",
    ),
    "maxresults-zero": (
        "select * from Attachable maxresults 0",
        QueryValidationError,
        "between 1 and 1000",
    ),
    "startposition-zero": (
        "select * from Attachable startposition 0",
        QueryValidationError,
        "1 or more",
    ),
}


@pytest.mark.parametrize(
    ("statement", "error", "says"),
    list(BAD_STATEMENTS.values()),
    ids=list(BAD_STATEMENTS),
)
def test_parse_query_errors(statement: str, error: type[QueryError], says: str) -> None:
    """Bad statements raise the right kind of QueryError, saying what is wrong."""
    with pytest.raises(error, match=says) as caught:
        parse_query(statement)

    assert caught.value.detail.startswith(f"{caught.value.kind}: ")


# The endpoint.


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("GET", {"params": {"query": "select count(*) from Attachable"}}),
        (
            "POST",
            {
                "content": b"select count(*) from Attachable",
                "headers": {"Content-Type": "application/text"},
            },
        ),
        (
            "POST",
            {
                "content": b"select count(*) from Attachable",
                "headers": {"Content-Type": "text/plain"},
            },
        ),
    ],
    ids=["get", "post-application-text", "post-text-plain"],
)
def test_statement_by_get_or_post(
    app: Starlette, method: str, options: dict[str, Any]
) -> None:
    """The statement is read from the query parameter or from a POST body."""
    answer = send(app, method, **options)

    assert answer.status_code == 200
    assert answer.json()["QueryResponse"] == {"totalCount": ATTACHABLES}


def test_count_of_realm_only(app: Starlette) -> None:
    """count(*) counts the realm's own attachables, not another company's."""
    assert ask(app, "select count(*) from Attachable") == {"totalCount": ATTACHABLES}


def test_filter_by_entity_type_and_value(app: Starlette) -> None:
    """Filtering by EntityRef type and value finds exactly that record's files."""
    found = rows(
        app,
        "select * from Attachable where AttachableRef.EntityRef.Type = 'Bill' "
        "and AttachableRef.EntityRef.Value = '76' maxresults 1000",
    )

    expected = [f"scan-{i:04d}.pdf" for i in range(ATTACHABLES) if i % 100 == 76]
    assert [row["FileName"] for row in found] == expected
    for row in found:
        assert row["AttachableRef"][0]["EntityRef"] == {"value": "76", "type": "Bill"}


def test_type_filter_is_case_sensitive(app: Starlette) -> None:
    """A value compared with = must match its case exactly."""
    statement = "select count(*) from Attachable where AttachableRef.EntityRef.Type"

    assert ask(app, f"{statement} = 'bill'") == {"totalCount": 0}
    assert ask(app, f"{statement} = 'Bill'") == {"totalCount": ATTACHABLES // 5}


def test_in_filter(app: Starlette) -> None:
    """IN matches any of its values."""
    found = rows(
        app,
        "select * from Attachable where FileName in ('scan-0003.pdf', "
        "'scan-2499.pdf', 'missing.pdf')",
    )

    assert [row["FileName"] for row in found] == ["scan-0003.pdf", "scan-2499.pdf"]


@pytest.mark.parametrize(
    ("pattern", "count"),
    [("%-001%", 10), ("scan-24%", 100), ("%.PDF", ATTACHABLES), ("%_0%", 0)],
    ids=["contains", "prefix", "any-case", "underscore-literal"],
)
def test_like_filter(app: Starlette, pattern: str, count: int) -> None:
    """LIKE takes % as its wildcard and every other character literally."""
    statement = f"select count(*) from Attachable where FileName like '{pattern}'"

    assert ask(app, statement) == {"totalCount": count}


def test_comparisons_on_numbers(app: Starlette) -> None:
    """< and > compare Size as a number."""
    found = rows(app, "select * from Attachable where Size > 8 and Size < 12")

    assert [row["Size"] for row in found] == [9, 10, 11]


def test_orderby_descending(app: Starlette) -> None:
    """ORDERBY sorts by the named field, descending when asked."""
    found = rows(app, "select * from Attachable orderby FileName desc maxresults 3")

    names = ["scan-2499.pdf", "scan-2498.pdf", "scan-2497.pdf"]
    assert [row["FileName"] for row in found] == names


def test_default_page_is_100_rows_by_id(app: Starlette) -> None:
    """Without MAXRESULTS a page holds 100 rows, by Id ascending."""
    response = ask(app, "select * from Attachable")

    ids = [int(row["Id"]) for row in response["Attachable"]]
    assert ids == list(range(FIRST_ATTACHABLE_ID, FIRST_ATTACHABLE_ID + 100))
    assert (response["startPosition"], response["maxResults"]) == (1, 100)


def test_paging_covers_every_row_once(app: Starlette) -> None:
    """Pages of 1000 walk all 2500 rows in Id order, no overlap, no gap."""
    pages = [
        ask(app, f"select * from Attachable startposition {start} maxresults 1000")
        for start in (1, 1001, 2001)
    ]

    assert [page["startPosition"] for page in pages] == [1, 1001, 2001]
    assert [page["maxResults"] for page in pages] == [1000, 1000, 500]
    ids = [int(row["Id"]) for page in pages for row in page["Attachable"]]
    assert ids == sorted(set(ids))
    assert len(ids) == ATTACHABLES


@pytest.mark.parametrize(
    "statement",
    [
        "select * from Attachable startposition 2501",
        "select * from Attachable where FileName = 'nothing.pdf'",
    ],
    ids=["past-the-end", "no-match"],
)
def test_empty_page_shape(app: Starlette, statement: str) -> None:
    """An empty page is an empty QueryResponse object."""
    assert ask(app, statement) == {}


def test_mapping_paging_by_entity_type(app: Starlette) -> None:
    """QbdtEntityIdMapping pages by QbdtEntityType in the order rows were added."""
    statement = "select * from QbdtEntityIdMapping where QbdtEntityType = 'INVOICE'"
    invoices = [seeded_mapping(i) for i in range(MAPPINGS) if i % 3 != 2]

    pages = [
        ask(app, f"{statement} startposition {start} maxresults 1000")
        for start in (1, 1001)
    ]

    assert ask(app, statement.replace("*", "count(*)")) == {"totalCount": len(invoices)}
    assert [page["maxResults"] for page in pages] == [1000, len(invoices) - 1000]
    found = [row for page in pages for row in page["QbdtEntityIdMapping"]]
    assert found[0] == {
        "QbdtExportableId": "0-1424241304",
        "QbdtEntityType": "INVOICE",
        "QboEntityId": "0",
        "QboEntityType": "Invoice",
    }
    assert [tuple(row.values()) for row in found] == invoices


@pytest.mark.parametrize(
    ("statement", "code", "kind"),
    [
        ("select * form Attachable", "4000", "QueryParserError"),
        ("select * from Attachable maxresults 1001", "4001", "QueryValidationError"),
        ("select * from Attachable where Size = 'big'", "4001", "QueryValidationError"),
    ],
    ids=["parse-error", "maxresults-over-1000", "not-a-number"],
)
def test_bad_statement_answers_400(
    app: Starlette, statement: str, code: str, kind: str
) -> None:
    """A statement the fake cannot run gets 400 with QBO's ValidationFault shape."""
    answer = send(app, "GET", params={"query": statement})

    assert answer.status_code == 400
    document = answer.json()
    assert set(document) == {"Fault", "time"}
    assert document["Fault"]["type"] == "ValidationFault"
    [error] = document["Fault"]["Error"]
    assert error["code"] == code
    assert error["Detail"].startswith(f"{kind}: ")
    if code == "4000":
        assert error["Message"] == "Error parsing query"


def test_missing_statement_answers_400(app: Starlette) -> None:
    """A GET without a query parameter is a parse error."""
    answer = send(app, "GET")

    assert answer.status_code == 400
    assert answer.json()["Fault"]["Error"][0]["code"] == "4000"
