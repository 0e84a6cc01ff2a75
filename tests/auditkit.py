"""A hand-counted migration: the artifacts of two upload runs, for audit tests.

The files, by legacy type, and what happened to them:

========================  ========  ===========================================
file                      verified  run-1 (2024-05-02)  /  run-2 (2024-05-03)
========================  ========  ===========================================
BILL/80B1/a.pdf           ok        success 300 ms      /  skipped
BILL/80B1/b.pdf           ok        503, then success   /  skipped
                                    900 ms
BILL/80B2/c.pdf           ok        rejected 6000       /  rejected 6000
BILL/80B3/d.pdf           missing   -
BILL/80B1/Thumbs.db       skipped   -
INVOICE/80I1/e.pdf        ok        success 50 ms       /  skipped
INVOICE/80I2/f.pdf        ok        503, 503: error     /  success 1500 ms
INVOICE/80I3/g.exe        type      -
CHECK/80C1/h.pdf          ok        started, no answer  /  reconciled
CHECK/80C2/i.pdf          missing   -
CHECK/80C3/j.pdf          ok        never attempted
========================  ========  ===========================================

Hand counts used by the tests are the constants below.
"""

from __future__ import annotations

from pathlib import Path

from qbo_attach.records import (
    InventoryRow,
    RunLogRow,
    VerificationRow,
    write_csv,
)
from qbo_attach.settings import Settings

REALM = "4620816365"
RUN_1 = "20240502T100000Z-aaaaaa"
RUN_2 = "20240503T090000Z-bbbbbb"

FILES_FOUND = 11
BYTES_FOUND = 1000 + 2000 + 3000 + 500 + 40 + 4000 + 5000 + 700 + 6000 + 800 + 7000
BYTES_UPLOADED = 1000 + 2000 + 4000 + 5000
# Final outcomes per QBO type, over both runs.
FINAL = {
    "Bill": {"success": 2, "rejected": 1},
    "Invoice": {"success": 2},
    "Purchase": {"reconciled": 1, "not_attempted": 1},
}
RUN_1_OUTCOMES = {"success": 3, "in_doubt": 1, "error": 1, "rejected": 1}
RUN_2_OUTCOMES = {
    "success": 1,
    "reconciled": 1,
    "skipped_already_uploaded": 3,
    "rejected": 1,
}
SUCCESS_MS = (300, 900, 50, 1500)
ERRORS_LOG_ROWS = 3  # c rejected in both runs, f's final error in run-1


def _file(
    kind: str, legacy: str, name: str, size: int, qbo: tuple[str, str] = ("", "")
) -> tuple[InventoryRow, tuple[str, str]]:
    row = InventoryRow(
        legacy_txnid_norm=legacy,
        legacy_entity_type=kind,
        raw_legacy_id=f"80{legacy}",
        file_name=name,
        file_path=f"{kind}/80{legacy}/{name}",
        size_bytes=size,
        content_type="application/pdf" if name.endswith(".pdf") else "",
        sha256=f"sha-{name}",
        problem="",
    )
    return row, qbo


FILES = {
    "a": _file("BILL", "B1", "a.pdf", 1000, ("Bill", "1")),
    "b": _file("BILL", "B1", "b.pdf", 2000, ("Bill", "1")),
    "c": _file("BILL", "B2", "c.pdf", 3000, ("Bill", "2")),
    "d": _file("BILL", "B3", "d.pdf", 500),
    "thumbs": _file("BILL", "B1", "Thumbs.db", 40),
    "e": _file("INVOICE", "I1", "e.pdf", 4000, ("Invoice", "1")),
    "f": _file("INVOICE", "I2", "f.pdf", 5000, ("Invoice", "2")),
    "g": _file("INVOICE", "I3", "g.exe", 700),
    "h": _file("CHECK", "C1", "h.pdf", 6000, ("Purchase", "1")),
    "i": _file("CHECK", "C2", "i.pdf", 800),
    "j": _file("CHECK", "C3", "j.pdf", 7000, ("Purchase", "3")),
}
STATUS = {"d": "missing_mapping", "i": "missing_mapping", "g": "unsupported_file_type"}


def verification(name: str, status: str = "") -> VerificationRow:
    row, (qbo_type, qbo_id) = FILES[name]
    status = status or STATUS.get(name, "ok")
    return VerificationRow.from_inventory(row, status, "", qbo_type, qbo_id)


def event(run: str, ts: str, name: str, outcome: str, **fields: object) -> RunLogRow:
    day = "2024-05-02" if run == RUN_1 else "2024-05-03"
    return RunLogRow.for_file(
        verification(name),
        ts=f"{day}T{ts}+00:00",
        run_id=run,
        outcome=outcome,
        **fields,
    )


def _unavailable(run: str, ts: str, name: str, attempt: int) -> RunLogRow:
    return event(
        run,
        ts,
        name,
        "error",
        attempt=attempt,
        status_code=503,
        error="HTTP 503: Service Unavailable",
        duration_ms=100,
    )


def _refused(run: str, ts: str) -> RunLogRow:
    return event(
        run,
        ts,
        "c",
        "rejected",
        attempt=1,
        status_code=400,
        error_code="6000",
        error="ValidationFault: the entity Bill 2 does not exist",
        duration_ms=500,
    )


def _uploaded(run: str, ts: str, name: str, attempt: int, ms: int) -> RunLogRow:
    return event(
        run,
        ts,
        name,
        "success",
        attempt=attempt,
        status_code=200,
        qbo_attachable_id=f"att-{name}",
        duration_ms=ms,
    )


def run_1() -> list[RunLogRow]:
    return [
        event(RUN_1, "10:00:00.100", "a", "started", attempt=1),
        _uploaded(RUN_1, "10:00:00.400", "a", 1, 300),
        event(RUN_1, "10:00:01.000", "b", "started", attempt=1),
        _unavailable(RUN_1, "10:00:01.200", "b", 1),
        event(RUN_1, "10:00:03.000", "b", "started", attempt=2),
        _uploaded(RUN_1, "10:00:03.900", "b", 2, 900),
        event(RUN_1, "10:00:05.000", "c", "started", attempt=1),
        _refused(RUN_1, "10:00:05.500"),
        event(RUN_1, "10:01:10.000", "e", "started", attempt=1),
        _uploaded(RUN_1, "10:01:10.050", "e", 1, 50),
        event(RUN_1, "10:01:20.000", "f", "started", attempt=1),
        _unavailable(RUN_1, "10:01:20.100", "f", 1),
        event(RUN_1, "10:01:22.000", "f", "started", attempt=2),
        _unavailable(RUN_1, "10:01:22.100", "f", 2),
        event(RUN_1, "10:01:30.000", "h", "started", attempt=1),
    ]


def run_2() -> list[RunLogRow]:
    return [
        event(RUN_2, "09:00:00.000", "h", "reconciled", qbo_attachable_id="att-h"),
        event(RUN_2, "09:00:01.000", "a", "skipped_already_uploaded"),
        event(RUN_2, "09:00:01.000", "b", "skipped_already_uploaded"),
        event(RUN_2, "09:00:01.000", "e", "skipped_already_uploaded"),
        event(RUN_2, "09:00:02.000", "c", "started", attempt=1),
        _refused(RUN_2, "09:00:02.300"),
        event(RUN_2, "09:00:03.000", "f", "started", attempt=1),
        _uploaded(RUN_2, "09:00:04.500", "f", 1, 1500),
    ]


def make_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        files_dir=tmp_path / "files",
        log_dir=tmp_path / "logs",
        realm_id=REALM,
    )


def write_migration(tmp_path: Path) -> Settings:
    """Write every artifact of the hand-counted migration; return its settings."""
    settings = make_settings(tmp_path)
    settings.data_dir.mkdir(parents=True)
    settings.log_dir.mkdir(parents=True)
    write_csv(settings.inventory_csv, InventoryRow, [row for row, _ in FILES.values()])
    checked = [verification(name) for name in FILES if name != "thumbs"]
    write_csv(settings.verification_log, VerificationRow, checked)
    skipped = [verification("thumbs", "skipped_by_config")]
    write_csv(settings.verification_skips, VerificationRow, skipped)
    rows = run_1() + run_2()
    write_csv(settings.runlog, RunLogRow, rows)
    errors = [row for row in rows if _is_final_failure(row)]
    write_csv(settings.errors_log, RunLogRow, errors)
    return settings


def _is_final_failure(row: RunLogRow) -> bool:
    """The rows the uploader copies to the errors log: a file's last failure."""
    return row.outcome == "rejected" or (row.outcome == "error" and row.attempt == 2)
