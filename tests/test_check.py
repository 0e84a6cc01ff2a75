"""The check stage, against the fake QBO mounted in-process."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from qbo_attach import demo, mapping, runlog, upload, verify
from qbo_attach.check import CheckSummary, check
from qbo_attach.errors import PermanentError, RemoteError, TransientError, UsageError
from qbo_attach.fake.app import create_app
from qbo_attach.fake.store import FakeCompany, NewAttachable
from qbo_attach.inventory import write_inventory
from qbo_attach.layout import Layout
from qbo_attach.qbo.client import QboClient
from qbo_attach.records import CheckRow, RunLogRow, VerificationRow, read_csv, write_csv
from qbo_attach.settings import Settings
from tests.uploadkit import make_settings

REALM = "9341452810"
CREATED = "2024-05-02T10:00:00-07:00"

T = TypeVar("T")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, REALM)


def verified(
    qbo_type: str,
    qbo_id: str,
    name: str,
    size: int | None = 100,
    status: str = verify.OK,
) -> VerificationRow:
    return VerificationRow(
        legacy_txnid_norm=f"{qbo_id}-1439202892",
        legacy_entity_type=qbo_type.upper(),
        raw_legacy_id=f"80{qbo_id}-1439202892",
        file_name=name,
        file_path=f"{qbo_type.upper()}/80{qbo_id}-1439202892/{name}",
        size_bytes=size,
        content_type="application/pdf",
        sha256="",
        problem="",
        qbo_entity_type=qbo_type,
        qbo_entity_id=qbo_id,
        status=status,
        reason="",
    )


def stored(qbo_type: str, qbo_id: str, name: str, size: int = 100) -> NewAttachable:
    return NewAttachable(
        file_name=name,
        content_type="application/pdf",
        size=size,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        entity_type=qbo_type,
        entity_id=qbo_id,
        create_time=CREATED,
    )


def stored_for(row: VerificationRow, size: int | None = None) -> NewAttachable:
    """The attachable an upload of ``row`` makes, at another size if given."""
    size = row.size_bytes if size is None else size
    assert size is not None
    return stored(row.qbo_entity_type, row.qbo_entity_id, row.file_name, size)


def logged(
    row: VerificationRow, attachable_id: str = "", outcome: str = runlog.SUCCESS
) -> RunLogRow:
    return RunLogRow.for_file(
        row,
        ts="2024-05-02T17:00:00+00:00",
        run_id="run-1",
        outcome=outcome,
        attempt=1,
        status_code=200 if attachable_id else None,
        qbo_attachable_id=attachable_id,
        duration_ms=5,
    )


def seed(settings: Settings, attachables: list[NewAttachable]) -> list[str]:
    """Put attachables on the fake's remote; return their ids in order."""
    company = FakeCompany(settings.fake_db)
    try:
        company.add_realm(REALM)
        return [
            str(record["Id"]) for record in company.add_attachables(REALM, attachables)
        ]
    finally:
        company.close()


def write_logs(
    settings: Settings,
    verification: list[VerificationRow],
    events: list[RunLogRow] | None = None,
) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    write_csv(settings.verification_log, VerificationRow, verification)
    if events is not None:
        write_csv(settings.runlog, RunLogRow, events)


def with_fake(
    settings: Settings,
    work: Callable[[QboClient], Awaitable[T]],
    statements: list[str] | None = None,
) -> T:
    """Run ``work`` on a client of the fake, recording query statements sent."""

    async def record(request: httpx.Request) -> None:
        if statements is not None and request.url.path.endswith("/query"):
            statements.append(request.content.decode())

    async def go() -> T:
        app = create_app(settings.fake_db)
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://fake.test",
                headers={"Authorization": "Bearer t"},
                event_hooks={"request": [record]},
            ) as http:
                return await work(QboClient(http, REALM))
        finally:
            app.state.company.close()

    return asyncio.run(go())


def run_check(settings: Settings, statements: list[str] | None = None) -> CheckSummary:
    return with_fake(settings, lambda client: check(settings, client), statements)


def check_rows(settings: Settings) -> list[CheckRow]:
    return list(read_csv(settings.check_log, CheckRow))


def finding(
    kind: str,
    row: VerificationRow | None,
    attachable_id: str,
    remote_size: int | None,
    detail: str,
    key: tuple[str, str, str] | None = None,
) -> CheckRow:
    """The check row expected for a verified row, or for a bare remote key."""
    if key is None:
        assert row is not None
        key = row.key
    entity_type, entity_id, file_name = key
    return CheckRow(
        finding=kind,
        qbo_entity_type=entity_type,
        qbo_entity_id=entity_id,
        file_name=file_name,
        qbo_attachable_id=attachable_id,
        remote_size=remote_size,
        local_size=row.size_bytes if row else None,
        file_path=row.file_path if row else "",
        detail=detail,
    )


def test_clean_state_has_no_findings(settings: Settings) -> None:
    """Every verified file attached once at its size: no findings and exit 0."""
    rows = [verified("Invoice", "75", "a.pdf"), verified("Bill", "12", "b.pdf", 7)]
    unmapped = verified("Bill", "", "c.pdf", status=verify.MISSING_MAPPING)
    ids = seed(settings, [stored_for(row) for row in rows])
    events = [logged(row, id_) for row, id_ in zip(rows, ids, strict=True)]
    write_logs(settings, [*rows, unmapped], events)

    summary = run_check(settings)

    assert summary == CheckSummary(remote_attachables=2, expected=2)
    assert summary.exit_code == 0
    assert check_rows(settings) == []


MISSING_CASES = [
    pytest.param(
        [],
        "",
        "not uploaded yet: the run log has no attempt for this file",
        id="never-uploaded",
    ),
    pytest.param(
        [(runlog.STARTED, ""), (runlog.REJECTED, "")],
        "",
        "not uploaded yet: the last attempt ended 'rejected'; "
        "see qbo_attach_errors.csv",
        id="last-attempt-rejected",
    ),
    pytest.param(
        [(runlog.STARTED, "")],
        "",
        "not uploaded yet: the last attempt started and recorded no outcome; "
        "run upload again to reconcile it",
        id="in-doubt",
    ),
    pytest.param(
        [(runlog.STARTED, ""), (runlog.SUCCESS, "5000000000000000999")],
        "5000000000000000999",
        "lost after upload: the run log says attachable 5000000000000000999 was "
        "attached to this record, but the remote no longer lists it (deleted)",
        id="run-log-says-success",
    ),
    pytest.param(
        [(runlog.RECONCILED, "5000000000000000998")],
        "5000000000000000998",
        "lost after upload: the run log says attachable 5000000000000000998 was "
        "attached to this record, but the remote no longer lists it (deleted)",
        id="run-log-says-reconciled",
    ),
]


@pytest.mark.parametrize(("outcomes", "attachable_id", "detail"), MISSING_CASES)
def test_missing_detail_says_what_the_run_log_claims(
    settings: Settings,
    outcomes: list[tuple[str, str]],
    attachable_id: str,
    detail: str,
) -> None:
    """A verified file with no attachable is missing, explained by the run log."""
    present = verified("Invoice", "75", "a.pdf")
    absent = verified("Invoice", "76", "b.pdf", size=321)
    (present_id,) = seed(settings, [stored_for(present)])
    events = [logged(absent, id_, outcome) for outcome, id_ in outcomes]
    write_logs(settings, [present, absent], [logged(present, present_id), *events])

    summary = run_check(settings)

    assert check_rows(settings) == [
        finding("missing", absent, attachable_id, None, detail)
    ]
    assert summary.findings == Counter(missing=1)
    assert summary.exit_code == 1


def test_attachable_moved_to_another_record_is_missing_and_unexpected(
    settings: Settings,
) -> None:
    """An attachable moved by hand leaves its record missing and shows up elsewhere."""
    row = verified("Invoice", "75", "a.pdf")
    (moved_id,) = seed(settings, [stored("Invoice", "76", "a.pdf")])
    write_logs(settings, [row], [logged(row, moved_id)])

    summary = run_check(settings)

    assert check_rows(settings) == [
        finding(
            "missing",
            row,
            moved_id,
            None,
            f"lost after upload: the run log says attachable {moved_id} was attached "
            "to this record, but it is now linked to Invoice 76 as 'a.pdf'",
        ),
        finding(
            "unexpected",
            None,
            moved_id,
            100,
            "the run log recorded this attachable for Invoice 75 as 'a.pdf'; it was "
            "moved or renamed on the remote since",
            key=("Invoice", "76", "a.pdf"),
        ),
    ]
    assert summary.findings == Counter(missing=1, unexpected=1)


@pytest.mark.parametrize(
    ("recorded", "kept"),
    [
        pytest.param(1, 1, id="run-log-recorded-the-second"),
        pytest.param(None, 0, id="no-run-log-keeps-the-oldest"),
    ],
)
def test_duplicates_get_one_row_per_extra_attachable(
    settings: Settings, recorded: int | None, kept: int
) -> None:
    """Copies beyond the recorded (or oldest) attachable are each a duplicate."""
    row = verified("Invoice", "75", "a.pdf")
    ids = seed(settings, [stored_for(row)] * 3)
    events = [logged(row, ids[recorded])] if recorded is not None else None
    write_logs(settings, [row], events)
    why = "the run log recorded" if recorded is not None else "the oldest"
    detail = (
        f"3 attachables for this record and file name: {', '.join(ids)}; "
        f"{ids[kept]} is {why}, this one is extra"
    )

    summary = run_check(settings)

    extras = [id_ for id_ in ids if id_ != ids[kept]]
    assert check_rows(settings) == [
        finding("duplicate", row, id_, 100, detail) for id_ in extras
    ]
    assert summary == CheckSummary(3, 1, Counter(duplicate=2))
    assert summary.exit_code == 1


def test_size_mismatch_is_reported_with_both_sizes(settings: Settings) -> None:
    """An attachable whose size differs from the verified file's is reported."""
    row = verified("Bill", "12", "b.pdf", size=100)
    (id_,) = seed(settings, [stored_for(row, size=90)])
    write_logs(settings, [row], [logged(row, id_)])

    summary = run_check(settings)

    assert check_rows(settings) == [
        finding(
            "size_mismatch",
            row,
            id_,
            90,
            "the remote holds 90 bytes, the verified file 100",
        )
    ]
    assert summary.exit_code == 1


def test_unknown_local_size_is_not_compared(settings: Settings) -> None:
    """A verified file without a recorded size never counts as a size mismatch."""
    row = verified("Bill", "12", "b.pdf", size=None)
    seed(settings, [stored("Bill", "12", "b.pdf", size=90)])
    write_logs(settings, [row])

    assert run_check(settings).findings == Counter()


UNEXPECTED_CASES = [
    pytest.param(
        [("Invoice", "80", "scan.pdf")],
        None,
        [
            "not from this migration: the run log never recorded it (Doc Center, "
            "or added by hand)"
        ],
        id="doc-center",
    ),
    pytest.param(
        [("", "", "loose.pdf")],
        None,
        ["linked to no record"],
        id="linked-to-nothing",
    ),
    pytest.param(
        [("Invoice", "80", "scan.pdf")] * 2,
        None,
        [
            "not from this migration: the run log never recorded it (Doc Center, "
            "or added by hand); one of 2 attachables with this key"
        ]
        * 2,
        id="two-copies-are-not-duplicates",
    ),
    pytest.param(
        [("Invoice", "80", "scan.pdf")],
        verified("Invoice", "80", "scan.pdf", status=verify.FILE_TOO_LARGE),
        [
            "the run log recorded this upload, but the verification log no longer "
            "lists its file as ok"
        ],
        id="no-longer-verified",
    ),
]


@pytest.mark.parametrize(("keys", "not_ok", "details"), UNEXPECTED_CASES)
def test_unexpected_attachables_alone_exit_zero(
    settings: Settings,
    keys: list[tuple[str, str, str]],
    not_ok: VerificationRow | None,
    details: list[str],
) -> None:
    """Attachables no verified file accounts for are reported, and exit 0."""
    row = verified("Invoice", "75", "a.pdf")
    ids = seed(settings, [stored_for(row), *(stored(*key) for key in keys)])
    events = [logged(row, ids[0])]
    if not_ok is not None:
        events.append(logged(not_ok, ids[1]))
    write_logs(settings, [row] + ([not_ok] if not_ok else []), events)

    summary = run_check(settings)

    assert check_rows(settings) == [
        finding("unexpected", None, id_, 100, detail, key=key)
        for id_, key, detail in zip(ids[1:], keys, details, strict=True)
    ]
    assert summary.findings == Counter(unexpected=len(keys))
    assert summary.exit_code == 0


def test_same_id_in_two_entity_types_are_different_keys(settings: Settings) -> None:
    """Invoice 75 and Bill 75 with the same file name are checked apart."""
    invoice = verified("Invoice", "75", "a.pdf")
    bill = verified("Bill", "75", "a.pdf")
    (invoice_id,) = seed(settings, [stored_for(invoice)])
    write_logs(settings, [invoice, bill], [logged(invoice, invoice_id)])

    summary = run_check(settings)

    assert check_rows(settings) == [
        finding(
            "missing",
            bill,
            "",
            None,
            "not uploaded yet: the run log has no attempt for this file",
        )
    ]
    assert summary == CheckSummary(1, 2, Counter(missing=1))


def test_findings_are_sorted_by_kind_then_key(settings: Settings) -> None:
    """Rows come out serious kinds first, then by type, numeric id and name."""
    rows = [verified("Invoice", id_, "a.pdf") for id_ in ("10", "9", "100")]
    wrong_size = verified("Bill", "3", "c.pdf")
    doubled = verified("Bill", "4", "d.pdf")
    seed(
        settings,
        [
            stored("Vendor", "2", "w9.pdf"),
            stored("Customer", "2", "id.pdf"),
            stored_for(wrong_size, size=5),
            stored_for(doubled),
            stored_for(doubled),
        ],
    )
    write_logs(settings, [*rows, wrong_size, doubled])

    run_check(settings)

    assert [
        (r.finding, r.qbo_entity_type, r.qbo_entity_id) for r in check_rows(settings)
    ] == [
        ("missing", "Invoice", "9"),
        ("missing", "Invoice", "10"),
        ("missing", "Invoice", "100"),
        ("duplicate", "Bill", "4"),
        ("size_mismatch", "Bill", "3"),
        ("unexpected", "Customer", "2"),
        ("unexpected", "Vendor", "2"),
    ]


def test_paging_over_2300_attachables_counts_every_one(settings: Settings) -> None:
    """Three whole-realm pages list all 2,300 attachables, never one record each."""
    rows = [verified("Invoice", str(n), "scan.pdf") for n in range(1, 2301)]
    seed(settings, [stored_for(row) for row in rows])
    not_verified = {7, 999, 1000, 1001, 2300}
    never_uploaded = [verified("Bill", str(n), "scan.pdf") for n in range(1, 4)]
    expected = [r for n, r in enumerate(rows, 1) if n not in not_verified]
    write_logs(settings, expected + never_uploaded)
    statements: list[str] = []

    summary = run_check(settings, statements)

    assert summary == CheckSummary(2300, 2298, Counter(unexpected=5, missing=3))
    assert statements == [
        f"select * from Attachable startposition {start} maxresults 1000"
        for start in (1, 1001, 2001)
    ]
    unexpected = [
        r.qbo_entity_id for r in check_rows(settings) if r.finding != "missing"
    ]
    assert unexpected == [str(n) for n in sorted(not_verified)]


def test_check_log_reads_back_to_the_same_values(settings: Settings) -> None:
    """Awkward names and unknown sizes survive the CSV round trip unchanged."""
    awkward = 'Façade, "final"\nv2.pdf'
    row = verified("Invoice", "75", awkward, size=None)
    (stray_id,) = seed(settings, [stored("Estimate", "8", awkward, size=0)])
    write_logs(settings, [row])

    run_check(settings)

    assert check_rows(settings) == [
        finding(
            "missing",
            row,
            "",
            None,
            "not uploaded yet: the run log has no attempt for this file",
        ),
        CheckRow(
            finding="unexpected",
            qbo_entity_type="Estimate",
            qbo_entity_id="8",
            file_name=awkward,
            qbo_attachable_id=stray_id,
            remote_size=0,
            local_size=None,
            file_path="",
            detail="not from this migration: the run log never recorded it (Doc "
            "Center, or added by hand)",
        ),
    ]


def test_missing_verification_log_asks_to_run_verify(settings: Settings) -> None:
    """Without a verification log check stops before calling the remote."""
    seed(settings, [stored("Invoice", "75", "a.pdf")])
    statements: list[str] = []

    with pytest.raises(UsageError, match="qbo-attach verify"):
        run_check(settings, statements)

    assert statements == []
    assert not settings.check_log.exists()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        pytest.param(503, TransientError, id="server-trouble"),
        pytest.param(401, PermanentError, id="token-refused"),
    ],
)
def test_remote_errors_propagate_and_write_nothing(
    settings: Settings, status: int, error: type[RemoteError]
) -> None:
    """A failed listing raises the remote's error and leaves no check log."""
    write_logs(settings, [verified("Invoice", "75", "a.pdf")])
    fault = {"Fault": {"Error": [{"Message": "no", "code": "3200"}], "type": "x"}}

    async def go() -> CheckSummary:
        transport = httpx.MockTransport(lambda _: httpx.Response(status, json=fault))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://qbo.test"
        ) as http:
            return await check(settings, QboClient(http, REALM))

    with pytest.raises(error):
        asyncio.run(go())
    assert not settings.check_log.exists()


async def never_sleep(seconds: float) -> None:
    raise AssertionError(f"the uploader asked to wait {seconds} s")


def test_upload_then_check_finds_nothing_missing_or_doubled(
    settings: Settings,
) -> None:
    """A demo company uploaded twice over checks clean: no missing, no duplicates."""
    demo.generate(
        settings.files_dir,
        settings.fake_db,
        REALM,
        attachments=50,
        seed=11,
        prefix=settings.legacy_id_prefix,
    )
    with_fake(
        settings,
        lambda client: mapping.download_mapping(
            client, settings.mapping_csv, settings.legacy_id_prefix
        ),
    )
    write_inventory(
        settings.files_dir,
        settings.inventory_csv,
        Layout.parse(settings.files_layout),
        settings.legacy_id_prefix,
    )
    verify.verify(
        settings.inventory_csv,
        settings.mapping_csv,
        settings.verification_log,
        settings.verification_skips,
    )
    options = upload.UploadOptions(concurrency=4)

    def upload_pass() -> upload.UploadSummary:
        return with_fake(
            settings,
            lambda client: upload.upload(settings, client, options, sleep=never_sleep),
        )

    first = upload_pass()
    second = upload_pass()
    summary = run_check(settings)

    uploaded = first.outcomes[runlog.SUCCESS]
    assert uploaded > 40
    assert first.failed == 0
    assert second.outcomes == Counter({runlog.SKIPPED: uploaded})
    assert summary == CheckSummary(uploaded, uploaded, Counter())
    assert summary.findings["missing"] == summary.findings["duplicate"] == 0
