"""The fake QBO's upload endpoint, its multipart reader, auth and injected faults."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from qbo_attach.fake import FakeCompany, FaultSettings, create_app, multipart, serve
from qbo_attach.fake.store import FIRST_ATTACHABLE_ID

REALM = "9130356789012345"
BOUNDARY = "qbo7f3a9c0e1d2b4a6f8e0c2d4b6a8f0e"
UPLOAD = f"/v3/company/{REALM}/upload"
CRLF, LF = b"\r\n", b"\n"
# Content that breaks careless parsers: line breaks, dashes, part of the
# boundary, and every byte value.
TRICKY = (
    b"%PDF-1.4\r\n--\n\r"
    + bytes(range(256))
    + b"\r\n--"
    + BOUNDARY[:12].encode()
    + b"\n--\r\n\r\n"
)
ENTITIES = [
    ("Invoice", "75", "INV-75"),
    ("Estimate", "9", "EST-9"),
    ("PurchaseOrder", "12", "PO-12"),
]

MakeApp = Callable[..., Starlette]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """Build fake apps over one seeded company file; close them afterwards."""
    db_path = tmp_path / "fake_qbo.sqlite"
    company = FakeCompany(db_path)
    company.add_entities(REALM, ENTITIES)
    company.close()
    apps: list[Starlette] = []

    def build(faults: FaultSettings | None = None) -> Starlette:
        app = create_app(db_path, faults or FaultSettings())
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.company.close()


@pytest.fixture
def app(make_app: MakeApp) -> Starlette:
    """A perfect fake QBO over a company with a few entities."""
    return make_app()


def send(
    app: Starlette,
    method: str,
    path: str,
    *,
    token: str | None = "Bearer test-token",
    **kwargs: Any,
) -> httpx.Response:
    """Send one request to the app through httpx's ASGI transport."""
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = token

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://fake-qbo"
        ) as client:
            return await client.request(method, path, headers=headers, **kwargs)

    return asyncio.run(go())


def upload(
    app: Starlette, body: bytes, *, boundary: str = BOUNDARY, **kwargs: Any
) -> httpx.Response:
    """POST a multipart body to the realm's upload endpoint."""
    content_type = f'multipart/form-data; boundary="{boundary}"'
    return send(
        app,
        "POST",
        UPLOAD,
        content=body,
        headers={"Content-Type": content_type},
        **kwargs,
    )


def metadata_json(
    file_name: str = "scan.pdf",
    entity: tuple[str, str] | None = ("Invoice", "75"),
    content_type: str | None = "application/pdf",
    **extra: object,
) -> bytes:
    """A file_metadata part as the JSON of qbo-api.md."""
    fields: dict[str, object] = {"FileName": file_name, **extra}
    if entity is not None:
        ref = {"type": entity[0], "value": entity[1]}
        fields["AttachableRef"] = [{"EntityRef": ref, "IncludeOnSend": False}]
    if content_type is not None:
        fields["ContentType"] = content_type
    return json.dumps(fields).encode()


def metadata_xml(
    file_name: str = "scan.pdf",
    entity: tuple[str, str] = ("Invoice", "75"),
    content_type: str = "application/pdf",
) -> bytes:
    """A file_metadata part as the PHP SDK's XML."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Attachable xmlns="http://schema.intuit.com/finance/v3">'
        f'<AttachableRef><EntityRef type="{entity[0]}">{entity[1]}</EntityRef>'
        "</AttachableRef>"
        f"<FileName>{file_name}</FileName><ContentType>{content_type}</ContentType>"
        "</Attachable>"
    ).encode()


def part(
    name: str,
    content: bytes,
    content_type: str = "application/json",
    *,
    filename: str | None = None,
    base64_lines: bytes | None = None,
) -> tuple[list[bytes], bytes]:
    """Headers and body of one part; base64-encoded when given a line break."""
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = [disposition.encode(), f"Content-Type: {content_type}".encode()]
    if base64_lines is not None:
        headers.append(b"Content-Transfer-Encoding: base64")
        encoded = base64.encodebytes(content).rstrip(LF)
        content = encoded.replace(LF, base64_lines)
    return headers, content


def body(
    parts: list[tuple[list[bytes], bytes]], eol: bytes = CRLF, boundary: str = BOUNDARY
) -> bytes:
    """A multipart/form-data body framed with the given line break."""
    dash = b"--" + boundary.encode()
    chunks = [
        dash + eol + eol.join(headers) + eol + eol + data + eol
        for headers, data in parts
    ]
    return b"".join(chunks) + dash + b"--" + eol


def file_pair(
    suffix: str = "0",
    content: bytes = b"%PDF-1.4 scan",
    metadata: bytes | None = None,
    content_type: str = "application/pdf",
) -> list[tuple[list[bytes], bytes]]:
    """The two parts of one file: metadata first, as every client sends them."""
    return [
        part(f"file_metadata_{suffix}", metadata or metadata_json()),
        part(f"file_content_{suffix}", content, content_type, filename="scan.pdf"),
    ]


def stored(app: Starlette) -> list[dict[str, object]]:
    """The attachables the app's company holds."""
    company: FakeCompany = app.state.company
    return company.attachables(REALM)


def sha256(data: bytes) -> str:
    """The hex SHA-256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("eol", [CRLF, LF], ids=["crlf", "lf"])
@pytest.mark.parametrize("encoded", [False, True], ids=["raw", "base64"])
@pytest.mark.parametrize("suffix", ["0", "01", "ab3Cd_0"], ids=["_0", "_01", "_5c_n"])
@pytest.mark.parametrize("form", ["json", "xml"], ids=["json", "xml"])
@pytest.mark.parametrize("named", [True, False], ids=["filename", "no-filename"])
def test_every_client_variant_is_accepted_byte_exact(
    app: Starlette, eol: bytes, encoded: bool, suffix: str, form: str, named: bool
) -> None:
    """Each framing, encoding, suffix, metadata format and disposition uploads."""
    metadata = metadata_xml("scan.pdf") if form == "xml" else metadata_json()
    metadata_type = "application/xml" if form == "xml" else "application/json"
    parts = [
        part(f"file_metadata_{suffix}", metadata, metadata_type),
        part(
            f"file_content_{suffix}",
            TRICKY,
            "application/pdf",
            filename="scan.pdf" if named else None,
            base64_lines=eol if encoded else None,
        ),
    ]

    answer = upload(app, body(parts, eol))

    assert answer.status_code == 200, answer.text
    attachable = answer.json()["AttachableResponse"][0]["Attachable"]
    assert attachable["FileName"] == "scan.pdf"
    assert attachable["Size"] == len(TRICKY)
    assert attachable["AttachableRef"][0]["EntityRef"] == {
        "value": "75",
        "type": "Invoice",
    }
    [record] = stored(app)
    assert record["Sha256"] == sha256(TRICKY)
    assert record["Id"] == attachable["Id"]


def test_success_answer_has_qbo_shape(app: Starlette) -> None:
    """A successful upload answers with every field of QBO's Attachable."""
    answer = upload(app, body(file_pair()), params={"minorversion": "75"})

    assert answer.status_code == 200
    document = answer.json()
    assert list(document) == ["AttachableResponse", "time"]
    attachable = document["AttachableResponse"][0]["Attachable"]
    assert list(attachable) == [
        "Id",
        "SyncToken",
        "FileName",
        "ContentType",
        "Size",
        "FileAccessUri",
        "TempDownloadUri",
        "AttachableRef",
        "domain",
        "sparse",
        "MetaData",
    ]
    assert int(attachable["Id"]) >= FIRST_ATTACHABLE_ID
    assert attachable["SyncToken"] == "0"
    assert attachable["ContentType"] == "application/pdf"
    assert (
        attachable["FileAccessUri"]
        == f"/v3/company/{REALM}/download/{attachable['Id']}"
    )
    assert attachable["AttachableRef"][0]["IncludeOnSend"] is False
    assert (attachable["domain"], attachable["sparse"]) == ("QBO", False)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    assert re.fullmatch(stamp, attachable["MetaData"]["CreateTime"])
    assert (
        attachable["MetaData"]["LastUpdatedTime"]
        == attachable["MetaData"]["CreateTime"]
    )
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", document["time"]
    )


def test_ids_are_numeric_and_increasing(app: Starlette) -> None:
    """Each new attachable gets a larger numeric id than the one before."""
    first = upload(app, body(file_pair())).json()["AttachableResponse"][0]
    second = upload(app, body(file_pair())).json()["AttachableResponse"][0]

    assert int(first["Attachable"]["Id"]) == FIRST_ATTACHABLE_ID
    assert int(second["Attachable"]["Id"]) == FIRST_ATTACHABLE_ID + 1


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    content=st.binary(max_size=2048),
    eol=st.sampled_from([CRLF, LF]),
    encoded=st.booleans(),
)
def test_any_binary_content_round_trips(
    app: Starlette, content: bytes, eol: bytes, encoded: bool
) -> None:
    """Whatever the bytes, the stored size and SHA-256 are those of the file."""
    parts = [
        part("file_metadata_01", metadata_json()),
        part(
            "file_content_01",
            content,
            "application/pdf",
            base64_lines=eol if encoded else None,
        ),
    ]

    answer = upload(app, body(parts, eol))

    attachable = answer.json()["AttachableResponse"][0]["Attachable"]
    record = next(r for r in stored(app) if r["Id"] == attachable["Id"])
    assert (record["Size"], record["Sha256"]) == (len(content), sha256(content))


def test_several_files_answered_in_order(app: Starlette) -> None:
    """One request with three files gets three entries, faults nested in place."""
    parts = [
        *file_pair("0", b"first", metadata_json("a.pdf")),
        *file_pair("1", b"second", metadata_json("b.pdf", ("Invoice", "404"))),
        *file_pair("2", b"third", metadata_json("c.pdf", ("Estimate", "9"))),
    ]

    answer = upload(app, body(parts))

    entries = answer.json()["AttachableResponse"]
    assert answer.status_code == 200
    assert [next(iter(entry)) for entry in entries] == [
        "Attachable",
        "Fault",
        "Attachable",
    ]
    assert entries[0]["Attachable"]["FileName"] == "a.pdf"
    assert entries[2]["Attachable"]["FileName"] == "c.pdf"
    assert [(r["FileName"], r["Sha256"]) for r in stored(app)] == [
        ("a.pdf", sha256(b"first")),
        ("c.pdf", sha256(b"third")),
    ]


@pytest.mark.parametrize(
    ("entity", "detail"),
    [
        (
            ("Estimate", "75"),
            "Business Validation Error: The entity Estimate 75 that you are "
            "trying to link does not exist.",
        ),
        (
            ("purchaseorder", "12"),
            "Business Validation Error: The entity purchaseorder 12 that you are "
            "trying to link does not exist.",
        ),
    ],
    ids=["unknown-id", "wrong-case-type"],
)
def test_missing_entity_is_a_nested_fault(
    app: Starlette, entity: tuple[str, str], detail: str
) -> None:
    """Linking to an entity the company lacks answers 200 with a nested 6000."""
    answer = upload(app, body(file_pair(metadata=metadata_json(entity=entity))))

    assert answer.status_code == 200
    assert answer.json()["AttachableResponse"] == [
        {
            "Fault": {
                "type": "ValidationFault",
                "Error": [
                    {
                        "Message": "A business validation error has occurred "
                        "while processing your request",
                        "Detail": detail,
                        "code": "6000",
                        "element": "",
                    }
                ],
            }
        }
    ]
    assert stored(app) == []


@pytest.mark.parametrize(
    ("file_name", "metadata_type", "part_type", "detail"),
    [
        ("scan.pdf", None, "application/octet-stream", "octet-stream"),
        ("scan.pdf", "application/octet-stream", "application/pdf", "octet-stream"),
        ("setup.exe", "application/pdf", "application/pdf", ".exe"),
        ("README", "text/plain", "text/plain", "no extension"),
    ],
    ids=["octet-stream-part", "octet-stream-metadata", "exe", "no-extension"],
)
def test_refused_file_types_are_nested_faults(
    app: Starlette,
    file_name: str,
    metadata_type: str | None,
    part_type: str,
    detail: str,
) -> None:
    """Octet-stream and unaccepted extensions answer 200 with a nested 2170."""
    metadata = metadata_json(file_name, content_type=metadata_type)

    answer = upload(app, body(file_pair(metadata=metadata, content_type=part_type)))

    assert answer.status_code == 200
    [error] = answer.json()["AttachableResponse"][0]["Fault"]["Error"]
    assert error["code"] == "2170"
    assert detail in error["Detail"]
    assert stored(app) == []


def test_overlong_file_name_is_a_nested_fault(app: Starlette) -> None:
    """A FileName over 1000 characters is refused with a nested 2050."""
    metadata = metadata_json("x" * 1001 + ".pdf")

    answer = upload(app, body(file_pair(metadata=metadata)))

    [error] = answer.json()["AttachableResponse"][0]["Fault"]["Error"]
    assert error["code"] == "2050"


@pytest.mark.parametrize(
    ("size", "status"), [(10, 200), (11, 413)], ids=["at-limit", "over-limit"]
)
def test_file_size_limit(make_app: MakeApp, size: int, status: int) -> None:
    """A file over max_file_bytes gets 413 and a Fault naming the limit."""
    app = make_app(FaultSettings(max_file_bytes=10))

    answer = upload(app, body(file_pair(content=b"x" * size)))

    assert answer.status_code == status
    if status == 413:
        fault = answer.json()["Fault"]
        assert fault["type"] == "ValidationFault"
        assert fault["Error"][0]["code"] == "2180"
        assert "limit is 10 bytes" in fault["Error"][0]["Detail"]
        assert stored(app) == []


def _no_metadata() -> bytes:
    return body([part("file_content_0", b"%PDF", "application/pdf")])


def _no_content() -> bytes:
    return body([part("file_metadata_0", metadata_json())])


def _metadata(data: bytes, content_type: str = "application/json") -> bytes:
    return body([part("file_metadata_0", data, content_type), *file_pair()[1:]])


BAD_REQUESTS = {
    "no-metadata-part": (_no_metadata, "2020"),
    "no-content-part": (_no_content, "2020"),
    "no-parts": (lambda: body([part("other", b"x")]), "2020"),
    "json-unparseable": (lambda: _metadata(b'{"FileName": '), "2010"),
    "json-not-object": (lambda: _metadata(b'["scan.pdf"]'), "2010"),
    "xml-unparseable": (lambda: _metadata(b"<Attachable>", "application/xml"), "2010"),
    "xml-wrong-root": (lambda: _metadata(b"<Bill/>", "application/xml"), "2010"),
    "no-file-name": (lambda: _metadata(b'{"ContentType": "application/pdf"}'), "2020"),
    "blank-file-name": (lambda: _metadata(b'{"FileName": "  "}'), "2020"),
    "ref-without-value": (
        lambda: _metadata(
            b'{"FileName": "a.pdf", "AttachableRef": '
            b'[{"EntityRef": {"type": "Invoice"}}]}'
        ),
        "2020",
    ),
    "ref-not-object": (
        lambda: _metadata(b'{"FileName": "a.pdf", "AttachableRef": ["Invoice"]}'),
        "2010",
    ),
    "part-twice": (lambda: body(file_pair() + file_pair()), "2010"),
    "bad-base64": (
        lambda: body(
            [
                part("file_metadata_0", metadata_json()),
                (
                    [
                        b'Content-Disposition: form-data; name="file_content_0"',
                        b"Content-Transfer-Encoding: base64",
                    ],
                    b"not*base64!",
                ),
            ]
        ),
        "2010",
    ),
    "cut-short": (lambda: body(file_pair())[:-40], "2010"),
    "wrong-boundary": (lambda: body(file_pair(), boundary="other"), "2010"),
}


@pytest.mark.parametrize(
    ("make_body", "code"), list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS)
)
def test_bad_requests_get_400(
    app: Starlette, make_body: Callable[[], bytes], code: str
) -> None:
    """Malformed requests get 400 with a top-level ValidationFault, storing nothing."""
    answer = upload(app, make_body())

    assert answer.status_code == 400
    fault = answer.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    assert fault["Error"][0]["code"] == code
    assert fault["Error"][0]["Detail"]
    assert stored(app) == []


def test_not_multipart_gets_400(app: Starlette) -> None:
    """An upload sent as JSON instead of multipart/form-data is refused."""
    answer = send(app, "POST", UPLOAD, json={"FileName": "a.pdf"})

    assert answer.status_code == 400
    assert "multipart/form-data" in answer.json()["Fault"]["Error"][0]["Detail"]


def test_xml_entity_ref_with_child_elements(app: Starlette) -> None:
    """XML metadata may give the EntityRef as <type> and <value> children."""
    metadata = (
        b"<Attachable><AttachableRef><EntityRef><type>Estimate</type>"
        b"<value>9</value></EntityRef><IncludeOnSend>true</IncludeOnSend>"
        b"</AttachableRef><FileName>q.png</FileName></Attachable>"
    )
    parts = [part("file_metadata_0", metadata, "text/xml"), *file_pair()[1:]]

    answer = upload(app, body(parts))

    attachable = answer.json()["AttachableResponse"][0]["Attachable"]
    assert attachable["AttachableRef"] == [
        {"EntityRef": {"value": "9", "type": "Estimate"}, "IncludeOnSend": True}
    ]
    assert attachable["ContentType"] == "application/pdf"


def test_optional_fields_are_echoed(app: Starlette) -> None:
    """Note and Category come back, and a numeric EntityRef value is accepted."""
    metadata = json.dumps(
        {
            "Attachable": {
                "FileName": "r.jpg",
                "ContentType": "image/jpeg",
                "Note": "from QuickBooks Desktop",
                "Category": "Receipt",
                "AttachableRef": {"EntityRef": {"type": "Invoice", "value": 75}},
            }
        }
    ).encode()

    answer = upload(app, body(file_pair(metadata=metadata, content_type="image/jpeg")))

    attachable = answer.json()["AttachableResponse"][0]["Attachable"]
    assert attachable["Note"] == "from QuickBooks Desktop"
    assert attachable["Category"] == "Receipt"
    assert attachable["AttachableRef"][0]["EntityRef"]["value"] == "75"


def test_unlinked_attachable_is_stored_without_ref(app: Starlette) -> None:
    """Metadata without AttachableRef makes an attachable linked to nothing."""
    answer = upload(app, body(file_pair(metadata=metadata_json(entity=None))))

    attachable = answer.json()["AttachableResponse"][0]["Attachable"]
    assert "AttachableRef" not in attachable
    assert stored(app)[0]["EntityType"] == ""


def test_request_id_is_stored_and_not_deduplicated(app: Starlette) -> None:
    """The same requestid twice stores two attachables, each carrying the id."""
    for _ in range(2):
        upload(app, body(file_pair()), params={"requestid": "run1-0001"})

    assert [r["RequestId"] for r in stored(app)] == ["run1-0001", "run1-0001"]


@pytest.mark.parametrize(
    "token",
    [None, "Bearer ", "Bearer", "Basic dXNlcjpwYXNz"],
    ids=["none", "empty-bearer", "bare-bearer", "basic"],
)
def test_missing_bearer_token_gets_401(app: Starlette, token: str | None) -> None:
    """Without a bearer token the answer is QBO's lower-case AUTHENTICATION fault."""
    answer = upload(app, body(file_pair()), token=token)

    assert answer.status_code == 401
    fault = answer.json()["fault"]
    assert fault["type"] == "AUTHENTICATION"
    assert fault["error"][0]["code"] == "3200"
    assert "AuthenticationFailed" in fault["error"][0]["message"]
    assert stored(app) == []


def test_unknown_realm_gets_403(app: Starlette) -> None:
    """A realm the store never heard of answers 403 ApplicationAuthorizationFailed."""
    answer = send(app, "POST", "/v3/company/1234/upload", content=body(file_pair()))

    assert answer.status_code == 403
    fault = answer.json()["Fault"]
    assert fault["type"] == "SERVICE"
    assert fault["Error"][0]["code"] == "003100"
    assert "ApplicationAuthorizationFailed" in fault["Error"][0]["Message"]


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("POST", UPLOAD, "Bearer t", 400),
        ("POST", UPLOAD, None, 401),
        (
            "GET",
            f"/v3/company/{REALM}/query?query=select * from Attachable",
            "Bearer t",
            200,
        ),
        ("GET", "/v3/company/1/nothing-here", "Bearer t", 404),
    ],
    ids=["upload", "unauthenticated", "query", "not-found"],
)
def test_every_answer_carries_intuit_tid(
    app: Starlette, method: str, path: str, token: str | None, status: int
) -> None:
    """Every answer, errors included, has an intuit_tid header with a hex id."""
    answer = send(app, method, path, token=token)

    assert answer.status_code == status
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["intuit_tid"])


def test_transaction_ids_differ(app: Starlette) -> None:
    """Two requests get two different transaction ids."""
    tids = {send(app, "POST", UPLOAD).headers["intuit_tid"] for _ in range(2)}

    assert len(tids) == 2


def _statuses(app: Starlette, count: int) -> list[int]:
    query = {"query": "select count(*) from Attachable"}
    path = f"/v3/company/{REALM}/query"
    return [send(app, "GET", path, params=query).status_code for _ in range(count)]


def test_fault_injection_repeats_with_a_seed(make_app: MakeApp) -> None:
    """Two fakes with the same seed fail the same requests the same way."""
    faults = FaultSettings(failure_rate=0.5, seed=7)

    first = _statuses(make_app(faults), 40)
    second = _statuses(make_app(faults), 40)

    assert first == second
    assert 200 in first
    assert set(first) - {200} <= {429, 500, 502, 503, 504}
    assert len(set(first)) >= 3


def test_failure_rate_zero_is_a_perfect_server(make_app: MakeApp) -> None:
    """With no failure rate every request succeeds."""
    assert set(_statuses(make_app(FaultSettings(seed=1)), 20)) == {200}


def test_injected_failures_change_no_state(make_app: MakeApp) -> None:
    """A failed upload stores nothing, and each failure has its usual body."""
    app = make_app(FaultSettings(failure_rate=1.0, seed=3))

    answers = [upload(app, body(file_pair())) for _ in range(30)]

    assert stored(app) == []
    by_status = {answer.status_code: answer for answer in answers}
    assert set(by_status) == {429, 500, 502, 503, 504}
    throttled = by_status[429]
    assert throttled.headers["content-type"].startswith("application/xml")
    assert "ThrottleExceeded" in throttled.text
    assert by_status[500].json()["Fault"]["type"] == "SystemFault"
    for status in (502, 503, 504):
        assert by_status[status].headers["content-type"].startswith("text/html")


def test_latency_is_added_to_each_request(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """latency_ms sleeps that long before answering, without a real sleep here."""
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    app = make_app(FaultSettings(latency_ms=250))

    _statuses(app, 2)

    assert slept == [0.25, 0.25]


def test_serve_runs_uvicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() hands the app to uvicorn with the host, port and a quiet log."""
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))

    serve(tmp_path / "fake.sqlite", port=9999)

    [(app, options)] = calls
    assert isinstance(app, Starlette)
    assert options == {"host": "127.0.0.1", "port": 9999, "log_level": "warning"}
    app.state.company.close()


# The multipart reader on its own.

DASH = b"--" + BOUNDARY.encode()
_DELIMITER_LIKE = re.compile(re.escape(DASH) + rb"(?:--|[ \t]*(?:\r?\n|\Z))")
_FRAGMENTS = st.sampled_from(
    [CRLF, LF, b"\r", b"--", CRLF + b"--", LF + b"--", DASH[:-1], LF + DASH + b"x"]
)


@settings(max_examples=300, deadline=None)
@given(
    contents=st.lists(
        st.lists(st.binary(max_size=40) | _FRAGMENTS, max_size=12).map(b"".join),
        min_size=1,
        max_size=3,
    ),
    eol=st.sampled_from([CRLF, LF]),
    encoded=st.booleans(),
)
def test_reader_returns_exact_contents(
    contents: list[bytes], eol: bytes, encoded: bool
) -> None:
    """Any bytes, tricky fragments included, come back exact in either framing."""
    # A real delimiter inside the content breaks any multipart body (RFC 2046).
    assume(not any(_DELIMITER_LIKE.search(data) for data in contents))
    parts = [
        part(f"file_content_{i}", data, base64_lines=eol if encoded else None)
        for i, data in enumerate(contents)
    ]

    read = multipart.parse(body(parts, eol), BOUNDARY.encode())

    assert [p.content for p in read] == contents
    assert [p.name for p in read] == [f"file_content_{i}" for i in range(len(contents))]


def test_reader_skips_preamble_epilogue_and_padding() -> None:
    """A preamble, blanks after a boundary and an epilogue are not content."""
    raw = (
        b"This is a preamble.\r\n"
        + DASH
        + b"  \t\r\n"
        + b'Content-Disposition: form-data; name="a"\r\n\r\nvalue\r\n'
        + DASH
        + b"--\r\nepilogue"
    )

    [read] = multipart.parse(raw, BOUNDARY.encode())

    assert (read.name, read.content) == ("a", b"value")


def test_reader_reads_headers() -> None:
    """Folded headers, quoted names and RFC 5987 file names are understood."""
    headers = [
        b"Content-Disposition: form-data;",
        b' name="file_content_0";',
        b" filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        b"content-type: Application/PDF; charset=binary",
    ]

    [read] = multipart.parse(body([(headers, b"x")]), BOUNDARY.encode())

    assert read.name == "file_content_0"
    assert read.filename == "résumé.pdf"
    assert read.content_type == "application/pdf"


def test_reader_decodes_quoted_printable() -> None:
    """A quoted-printable part is decoded too."""
    headers = [
        b'Content-Disposition: form-data; name="note"',
        b"Content-Transfer-Encoding: quoted-printable",
    ]

    [read] = multipart.parse(body([(headers, b"caf=C3=A9")]), BOUNDARY.encode())

    assert read.content == "café".encode()


def test_boundary_from_content_type() -> None:
    """The boundary is read quoted or bare from the Content-Type header."""
    assert multipart.boundary_from('multipart/form-data; boundary="a b"') == b"a b"
    assert multipart.boundary_from("Multipart/Form-Data;boundary=xyz") == b"xyz"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"no boundary at all", "does not contain the boundary"),
        (DASH + b"junk\r\n", "not followed by a line break"),
        (DASH + b"\r\nContent-Disposition: form-data; name=a\r\n\r\nx", "cut short"),
        (DASH + b"\r\nno colon here\r\n\r\nx\r\n" + DASH + b"--", "malformed header"),
        (DASH + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n" + DASH + b"--", "name="),
        (
            DASH + b"\r\nContent-Disposition: form-data; name=a\r\n" + DASH + b"--",
            "blank",
        ),
    ],
    ids=[
        "no-boundary",
        "junk-after-boundary",
        "cut-short",
        "bad-header",
        "no-name",
        "no-blank-line",
    ],
)
def test_reader_refuses_malformed_bodies(raw: bytes, problem: str) -> None:
    """A body the reader cannot split raises MultipartError saying why."""
    with pytest.raises(multipart.MultipartError, match=problem):
        multipart.parse(raw, BOUNDARY.encode())


@pytest.mark.parametrize(
    "header",
    ["application/json", "multipart/form-data", "multipart/form-data; boundary="],
    ids=["not-multipart", "no-boundary", "empty-boundary"],
)
def test_boundary_from_refuses_bad_headers(header: str) -> None:
    """A Content-Type without a usable boundary raises MultipartError."""
    with pytest.raises(multipart.MultipartError):
        multipart.boundary_from(header)
