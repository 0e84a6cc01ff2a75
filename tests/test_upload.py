"""The uploader's decisions, given the run log and the remote's answers."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from qbo_attach import runlog
from qbo_attach import upload as upload_module
from qbo_attach.errors import LockError, StorageError
from qbo_attach.qbo.client import QboClient
from qbo_attach.qbo.limits import RealmGate, RealmLimits
from qbo_attach.records import RunLogRow, read_csv
from qbo_attach.runlog import RunLogWriter
from qbo_attach.settings import Settings
from qbo_attach.upload import (
    Uploader,
    UploadOptions,
    UploadSummary,
    request_id_for,
    upload,
)
from tests.uploadkit import (
    ScriptedQbo,
    add_file,
    make_settings,
    nested_fault,
    remote_attachable,
    success,
    write_verification,
)


class FakeSleep:
    """Records the waits asked for and moves a clock instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def run_upload(
    settings: Settings, qbo: ScriptedQbo, **options: object
) -> tuple[UploadSummary, FakeSleep]:
    """One upload pass, one file at a time unless told otherwise, never sleeping.

    The same recorder stands in for the uploader's backoff and the realm
    gate's pause after a 429.
    """
    sleep = FakeSleep()
    chosen = UploadOptions(**{"concurrency": 1, **options})  # type: ignore[arg-type]

    async def go() -> UploadSummary:
        client = qbo.client(sleep, sleep.clock)
        async with client.http:
            return await upload(settings, client, chosen, sleep=sleep)

    return asyncio.run(go()), sleep


def log_rows(path: Path) -> list[RunLogRow]:
    return list(read_csv(path, RunLogRow)) if path.exists() else []


def outcomes(settings: Settings) -> list[tuple[str, str, int | None]]:
    return [(r.file_name, r.outcome, r.attempt) for r in log_rows(settings.runlog)]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def test_fresh_run_uploads_each_file_once(settings: Settings) -> None:
    """Every verified file is uploaded once, with a started row before it."""
    rows = [
        add_file(settings, "Bill", "75", "a.pdf"),
        add_file(settings, "Bill", "75", "b.pdf"),
    ]
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo)
    assert len(qbo.uploads) == 2
    assert outcomes(settings) == [
        ("a.pdf", "started", 1),
        ("a.pdf", "success", 1),
        ("b.pdf", "started", 1),
        ("b.pdf", "success", 1),
    ]
    success = log_rows(settings.runlog)[1]
    assert success.qbo_attachable_id == "1001"
    assert success.intuit_tid == "tid-1001"
    assert success.request_id == request_id_for(settings.realm_id, rows[0])
    assert summary.outcomes == {"success": 2}
    assert summary.exit_code == 0


def test_request_carries_metadata_and_request_id(settings: Settings) -> None:
    """The upload names the record, the file and a deterministic request id."""
    row = add_file(settings, "Invoice", "75", "scan 2014-03.pdf")
    write_verification(settings, [row])
    qbo = ScriptedQbo()
    run_upload(settings, qbo)
    request = qbo.uploads[0]
    body = request.content.decode("latin-1")
    assert request.url.params["requestid"] == request_id_for(settings.realm_id, row)
    assert len(request.url.params["requestid"]) <= 50
    assert request.url.params["minorversion"] == "75"
    assert '"type": "Invoice", "value": "75"' in body
    assert '"FileName": "scan 2014-03.pdf"' in body
    assert 'name="file_content_01"; filename="scan 2014-03.pdf"' in body


def test_rerun_after_complete_run_makes_no_upload_call(settings: Settings) -> None:
    """A second run skips every file and records the skips in the dups log."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    run_upload(settings, ScriptedQbo())
    again = ScriptedQbo()
    summary, _ = run_upload(settings, again)
    assert again.uploads == []
    assert summary.outcomes == {"skipped_already_uploaded": 1}
    dups = log_rows(settings.dups_log)
    assert [(r.file_name, r.outcome, r.qbo_attachable_id) for r in dups] == [
        ("a.pdf", "skipped_already_uploaded", "1001")
    ]


def test_same_id_in_two_entity_types_uploads_both(settings: Settings) -> None:
    """Invoice 75 and Bill 75 are different keys: neither skips the other."""
    rows = [
        add_file(settings, "Bill", "75", "a.pdf"),
        add_file(settings, "Invoice", "75", "a.pdf"),
    ]
    write_verification(settings, rows[:1])
    run_upload(settings, ScriptedQbo())
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo)
    assert len(qbo.uploads) == 1
    assert summary.outcomes == {"skipped_already_uploaded": 1, "success": 1}


def test_transient_errors_are_retried_with_backoff(settings: Settings) -> None:
    """503, 503, 200: three attempts, each recorded, with waits but no sleep."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    unavailable = lambda r: httpx.Response(503, text="<html>Service Unavailable</html>")  # noqa: E731
    qbo = ScriptedQbo(script=[unavailable, unavailable])
    summary, sleep = run_upload(settings, qbo)
    assert outcomes(settings) == [
        ("a.pdf", "started", 1),
        ("a.pdf", "error", 1),
        ("a.pdf", "started", 2),
        ("a.pdf", "error", 2),
        ("a.pdf", "started", 3),
        ("a.pdf", "success", 3),
    ]
    assert log_rows(settings.runlog)[1].status_code == 503
    assert len(sleep.waits) == 2
    assert summary.outcomes == {"success": 1}
    assert log_rows(settings.errors_log) == []


def test_retries_used_up_end_in_error(settings: Settings) -> None:
    """A file that never gets through ends as error in the errors log."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    busy = lambda r: httpx.Response(  # noqa: E731
        429,
        text='<Fault type="SERVICE"><Error code="3001">'
        "<Message>message=ThrottleExceeded</Message>"
        "<Detail>The request limit was reached.</Detail></Error></Fault>",
    )
    qbo = ScriptedQbo(script=[busy] * 3)
    summary, _ = run_upload(settings, qbo, max_attempts=3)
    assert len(qbo.uploads) == 3
    errors = log_rows(settings.errors_log)
    assert [(r.outcome, r.attempt, r.error_code, r.status_code) for r in errors] == [
        ("error", 3, "3001", 429)
    ]
    assert summary.exit_code == 1


def test_nested_fault_is_rejected_without_retry(settings: Settings) -> None:
    """A Fault inside an HTTP 200 is permanent: one attempt, outcome rejected."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    qbo = ScriptedQbo(script=[lambda r: nested_fault()])
    summary, sleep = run_upload(settings, qbo)
    assert len(qbo.uploads) == 1
    assert sleep.waits == []
    rejected = log_rows(settings.errors_log)[0]
    assert (rejected.outcome, rejected.error_code) == ("rejected", "6000")
    assert "does not exist" in rejected.error
    assert summary.outcomes == {"rejected": 1}


def test_failed_keys_are_tried_again_on_the_next_run(settings: Settings) -> None:
    """A key whose last outcome was a failure is uploaded by the next run."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    run_upload(settings, ScriptedQbo(script=[lambda r: nested_fault()]))
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo)
    assert len(qbo.uploads) == 1
    assert summary.outcomes == {"success": 1}


@pytest.mark.parametrize("on_remote", [True, False], ids=["found", "not-found"])
def test_in_doubt_keys_are_reconciled_first(
    settings: Settings, on_remote: bool
) -> None:
    """A started row without outcome is checked on the remote before uploading."""
    row = add_file(settings, "Bill", "75", "a.pdf")
    write_verification(settings, [row])
    run_upload(settings, ScriptedQbo())
    # Keep only the started row, as if the process died during the call.
    lines = settings.runlog.read_text().splitlines(keepends=True)
    settings.runlog.write_text("".join(lines[:2]))
    remote = [remote_attachable("Bill", "75", "a.pdf", row.size_bytes or 0)]
    qbo = ScriptedQbo(remote=remote if on_remote else [])
    summary, _ = run_upload(settings, qbo)
    assert qbo.queries and "AttachableRef.EntityRef.Value = '75'" in qbo.queries[0]
    if on_remote:
        assert qbo.uploads == []
        assert outcomes(settings)[-1:] == [("a.pdf", "reconciled", None)]
        assert summary.outcomes == {"reconciled": 1}
    else:
        assert len(qbo.uploads) == 1
        assert summary.outcomes == {"success": 1}


def test_changed_and_missing_files_are_not_uploaded(settings: Settings) -> None:
    """A file edited or deleted since the inventory is recorded, not sent."""
    changed = add_file(settings, "Bill", "75", "a.pdf")
    missing = add_file(settings, "Bill", "76", "b.pdf")
    same_size = add_file(settings, "Bill", "77", "c.pdf")
    write_verification(settings, [changed, missing, same_size])
    (settings.files_dir / changed.file_path).write_bytes(b"longer content now")
    (settings.files_dir / missing.file_path).unlink()
    (settings.files_dir / same_size.file_path).write_bytes(b"%PDF-1.4 HELLO")
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo)
    assert qbo.uploads == []
    assert summary.outcomes == {"file_changed": 2, "file_missing": 1}
    assert len(log_rows(settings.errors_log)) == 3


def test_path_outside_files_dir_is_never_opened(settings: Settings) -> None:
    """A verification row pointing outside FILES_DIR is refused."""
    row = add_file(settings, "Bill", "75", "a.pdf")
    outside = replace(row, file_path="../../etc/passwd")
    write_verification(settings, [outside])
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo)
    assert qbo.uploads == []
    assert summary.outcomes == {"file_missing": 1}


def test_limit_uploads_a_canary_batch(settings: Settings) -> None:
    """--limit N uploads N files and leaves the rest for later."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(5)]
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo, limit=2)
    assert len(qbo.uploads) == 2
    assert summary.not_attempted == 3


def test_dry_run_calls_nothing_and_writes_no_run_log(settings: Settings) -> None:
    """--dry-run plans without a single call or run-log row."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(3)]
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo, dry_run=True)
    assert qbo.uploads == [] and qbo.queries == []
    assert not settings.runlog.exists()
    assert summary.planned == {"upload": 3}


def test_concurrent_uploads_record_every_file(settings: Settings) -> None:
    """With several workers every file still gets exactly one final outcome."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(40)]
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo, concurrency=8)
    assert len(qbo.uploads) == 40
    finals = [r for r in log_rows(settings.runlog) if r.outcome != "started"]
    assert sorted(r.qbo_entity_id for r in finals) == sorted(str(n) for n in range(40))
    assert summary.outcomes == {"success": 40}


def test_torn_last_line_is_cut_before_appending(settings: Settings) -> None:
    """A run log whose last line a crash cut short is readable and repaired."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    run_upload(settings, ScriptedQbo())
    text = settings.runlog.read_text()
    settings.runlog.write_text(text[:-5])  # the success row loses its tail
    assert [r.outcome for r in runlog.read_runlog(settings.runlog)] == ["started"]
    writer = RunLogWriter(settings.runlog, settings.errors_log, settings.dups_log)
    writer.close()
    assert settings.runlog.read_text().endswith("\n")
    assert [r.outcome for r in runlog.read_runlog(settings.runlog)] == ["started"]


def test_second_writer_is_refused(settings: Settings) -> None:
    """Only one uploader may write a run log; the second is told who holds it."""
    first = RunLogWriter(settings.runlog, settings.errors_log, settings.dups_log)
    try:
        with pytest.raises(LockError, match="another uploader") as caught:
            RunLogWriter(settings.runlog, settings.errors_log, settings.dups_log)
        assert caught.value.exit_code == 2
    finally:
        first.close()


def throttled(retry_after: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/xml"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    body = (
        '<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded'
        "</Message><Detail>The request limit was reached.</Detail></Error></Fault>"
    )
    return httpx.Response(429, text=body, headers=headers)


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [(None, 60.0), ("7", 7.0)],
    ids=["intuit-advice", "retry-after"],
)
def test_throttle_pauses_the_realm_then_succeeds(
    settings: Settings, retry_after: str | None, pause: float
) -> None:
    """429 then 200: the realm waits Retry-After, or 60 s without one."""
    write_verification(settings, [add_file(settings, "Bill", "75", "a.pdf")])
    qbo = ScriptedQbo(script=[lambda r: throttled(retry_after)])
    summary, sleep = run_upload(settings, qbo, backoff_max=1.0)
    assert summary.outcomes == {"success": 1}
    # The file's own backoff is at most 1 s; the realm's pause covers the rest.
    assert sleep.now == pytest.approx(pause)
    rows = log_rows(settings.runlog)
    assert [(r.outcome, r.attempt, r.status_code) for r in rows] == [
        ("started", 1, None),
        ("error", 1, 429),
        ("started", 2, None),
        ("success", 2, 200),
    ]
    assert rows[1].error_code == "3001"
    assert rows[1].duration_ms is not None


def test_throttle_slows_every_upload_of_the_realm(settings: Settings) -> None:
    """After one 429 the other uploads wait out the same pause."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(3)]
    write_verification(settings, rows)
    qbo = ScriptedQbo(script=[lambda r: throttled("30")])
    summary, sleep = run_upload(settings, qbo, concurrency=3, backoff_max=1.0)
    assert summary.outcomes == {"success": 3}
    # Backoff alone would be at most 1 s; the realm's pause held everything.
    assert sleep.now == pytest.approx(30.0)


def test_retry_failed_takes_only_errors(settings: Settings) -> None:
    """--retry-failed re-attempts keys whose last outcome was error, nothing else."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(3)]
    write_verification(settings, rows)
    down = lambda r: httpx.Response(503, text="down")  # noqa: E731
    run_upload(
        settings,
        ScriptedQbo(script=[down, down, lambda r: nested_fault()]),
        max_attempts=2,
        limit=2,
    )
    assert [r.outcome for r in log_rows(settings.errors_log)] == ["error", "rejected"]
    qbo = ScriptedQbo()
    summary, _ = run_upload(settings, qbo, retry_failed=True)
    assert len(qbo.uploads) == 1
    assert qbo.uploads[0].content.find(b'"value": "0"') > 0
    assert summary.outcomes == {"success": 1}
    assert summary.not_attempted == 2


def test_stop_finishes_in_flight_and_leaves_the_rest(settings: Settings) -> None:
    """After stop() no new upload starts; the summary says interrupted, exit 130."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(5)]
    write_verification(settings, rows)
    qbo = ScriptedQbo()
    holder: list[Uploader] = []

    def stop_after_first(request: httpx.Request) -> httpx.Response:
        holder[0].stop()
        return success(request, "1")

    qbo.script = [stop_after_first]

    async def go() -> UploadSummary:
        client = qbo.client()
        async with client.http:
            uploader = Uploader(settings, client, UploadOptions(concurrency=1))
            holder.append(uploader)
            return await uploader.run()

    summary = asyncio.run(go())
    assert len(qbo.uploads) == 1
    assert summary.outcomes == {"success": 1}
    assert summary.not_attempted == 4
    assert summary.exit_code == 130


def test_many_in_doubt_keys_are_reconciled_in_one_pass(settings: Settings) -> None:
    """Past the threshold, reconciliation pages through the company once."""
    count = upload_module.RECONCILE_BULK_THRESHOLD + 5
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(count)]
    write_verification(settings, rows)
    run_upload(settings, ScriptedQbo())
    lines = settings.runlog.read_text().splitlines(keepends=True)
    started = [line for line in lines[1:] if line.rstrip().endswith(",started")]
    settings.runlog.write_text("".join([lines[0], *started]))
    remote = [
        remote_attachable("Bill", str(n), "a.pdf", rows[n].size_bytes or 0)
        for n in range(count)
    ]
    qbo = ScriptedQbo(remote=remote, page_all=True)
    summary, _ = run_upload(settings, qbo)
    assert qbo.uploads == []
    assert summary.outcomes == {"reconciled": count}
    assert all("where" not in q for q in qbo.queries)


def test_an_error_escaping_one_upload_stops_the_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log that cannot be written mid-run stops new uploads and is raised."""
    rows = [add_file(settings, "Bill", str(n), "a.pdf") for n in range(6)]
    write_verification(settings, rows)
    real_write = RunLogWriter.write

    def write(self: RunLogWriter, row: RunLogRow, *, sync: bool = True) -> None:
        if row.outcome == "success":
            raise StorageError(settings.runlog, OSError(28, "No space left on device"))
        real_write(self, row, sync=sync)

    monkeypatch.setattr(RunLogWriter, "write", write)
    qbo = ScriptedQbo()
    with pytest.raises(StorageError, match="No space left"):
        run_upload(settings, qbo)
    assert len(qbo.uploads) == 1


def test_queries_retry_transient_failures() -> None:
    """A query answered 503 is asked again; it changes nothing, so that is safe."""
    answers = [httpx.Response(503, text="busy"), httpx.Response(200, json={})]
    answers[1] = httpx.Response(200, json={"QueryResponse": {"totalCount": 3}})
    sleep = FakeSleep()

    async def go() -> int:
        transport = httpx.MockTransport(lambda request: answers.pop(0))
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as http:
            gate = RealmGate(RealmLimits(rate_per_minute=None), sleep=sleep)
            return await QboClient(http, "1", gate).count("Attachable")

    assert asyncio.run(go()) == 3
    assert len(sleep.waits) == 1
