"""The run report's figures, against the hand-counted migration of auditkit."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from qbo_attach import report, report_html
from qbo_attach.errors import UsageError
from qbo_attach.records import CheckRow, RunLogRow, write_csv
from qbo_attach.report import Coverage, FailureCause, Report, build_report
from tests import auditkit


@pytest.fixture
def built(tmp_path: Path) -> Report:
    return build_report(auditkit.write_migration(tmp_path))


def test_files_found_and_their_size(built: Report) -> None:
    """Every inventory row counts as found, with its bytes."""
    assert built.files_found == auditkit.FILES_FOUND
    assert built.bytes_found == auditkit.BYTES_FOUND


def test_verification_statuses_per_legacy_type(built: Report) -> None:
    """Statuses are counted per legacy type, the skips file included."""
    assert built.verification == {
        "BILL": {"ok": 3, "missing_mapping": 1, "skipped_by_config": 1},
        "CHECK": {"ok": 2, "missing_mapping": 1},
        "INVOICE": {"ok": 2, "unsupported_file_type": 1},
    }
    assert built.missing_mappings == {"BILL": 1, "CHECK": 1}


def test_coverage_per_legacy_type(built: Report) -> None:
    """Mapped, missing and not looked up are told apart; skips are left out."""
    assert built.coverage == {
        "BILL": Coverage(mapped=3, missing=1, not_checked=0),
        "CHECK": Coverage(mapped=2, missing=1, not_checked=0),
        "INVOICE": Coverage(mapped=2, missing=0, not_checked=1),
    }


def test_final_outcomes_per_qbo_type(built: Report) -> None:
    """A retried error is not final, a later run's success is, skips repeat."""
    assert built.outcomes == auditkit.FINAL
    assert built.attached == 5
    assert built.failed == 1


def test_outcomes_of_each_run(built: Report) -> None:
    """Each run counts each key once, by its last row; a lone started is in doubt."""
    assert [run.run_id for run in built.runs] == [auditkit.RUN_1, auditkit.RUN_2]
    assert dict(built.runs[0].outcomes) == auditkit.RUN_1_OUTCOMES
    assert dict(built.runs[1].outcomes) == auditkit.RUN_2_OUTCOMES
    assert built.runs[0].started == "2024-05-02T10:00:00.100+00:00"
    assert built.runs[0].ended == "2024-05-02T10:01:30.000+00:00"
    assert built.runs[1].files == 6


def test_failures_by_code_with_an_example(built: Report) -> None:
    """Only files still failing count, each cause with one file to look at."""
    assert built.failures == (
        FailureCause(
            "6000",
            1,
            "BILL/80B2/c.pdf",
            "ValidationFault: the entity Bill 2 does not exist",
        ),
    )
    assert built.failure_events == auditkit.ERRORS_LOG_ROWS


def test_latency_from_successful_uploads(built: Report) -> None:
    """Percentiles are nearest-rank over the success rows' durations."""
    latency = built.latency
    assert (latency.uploads, latency.p50_ms, latency.p95_ms, latency.max_ms) == (
        4,
        300,
        1500,
        1500,
    )
    assert dict(latency.histogram) == {
        "up to 0.1 s": 1,
        "0.1 to 0.25 s": 0,
        "0.25 to 0.5 s": 1,
        "0.5 to 1 s": 1,
        "1 to 2.5 s": 1,
        "2.5 to 5 s": 0,
        "5 to 10 s": 0,
        "over 10 s": 0,
    }


def test_throughput_and_bytes(built: Report) -> None:
    """Successful uploads are bucketed by UTC minute; their sizes add up."""
    assert built.throughput == (
        ("2024-05-02 10:00", 2),
        ("2024-05-02 10:01", 1),
        ("2024-05-03 09:00", 1),
    )
    assert built.peak_per_minute == 2
    assert built.bytes_uploaded == auditkit.BYTES_UPLOADED


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], (0, None, None, None)),
        ([7], (1, 7, 7, 7)),
        (list(range(1, 101)), (100, 50, 95, 100)),
    ],
    ids=["none", "one", "one-to-hundred"],
)
def test_latency_percentiles(
    values: list[int], expected: tuple[int, int | None, int | None, int | None]
) -> None:
    """Nearest-rank percentiles hold at the edges too."""
    latency = report.latency_of(values)
    assert (latency.uploads, latency.p50_ms, latency.p95_ms, latency.max_ms) == expected


def test_started_after_error_leaves_key_in_doubt(tmp_path: Path) -> None:
    """A retry that never answered leaves the key in doubt, not failed."""
    settings = auditkit.write_migration(tmp_path)
    rows = [
        *auditkit.run_1()[:2],
        auditkit.event(auditkit.RUN_1, "10:00:01.000", "b", "started", attempt=1),
        auditkit.event(auditkit.RUN_1, "10:00:01.200", "b", "error", attempt=1),
        auditkit.event(auditkit.RUN_1, "10:00:03.000", "b", "started", attempt=2),
    ]
    write_csv(settings.runlog, RunLogRow, rows)
    built = build_report(settings)
    assert dict(built.runs[0].outcomes) == {"success": 1, "in_doubt": 1}
    assert built.failures == ()


def test_report_before_any_upload(tmp_path: Path) -> None:
    """Without run logs the report still counts files and verification."""
    settings = auditkit.write_migration(tmp_path)
    settings.runlog.unlink()
    settings.errors_log.unlink()
    built = build_report(settings)
    assert built.runs == ()
    assert built.outcome_totals == {"not_attempted": 7}
    assert built.latency.p50_ms is None


def test_no_inventory_is_a_usage_error(tmp_path: Path) -> None:
    """With nothing on disk the error names the file and the command to run."""
    with pytest.raises(UsageError, match=r"attachments_inventory\.csv.*inventory"):
        build_report(auditkit.make_settings(tmp_path))


def test_check_findings_when_check_ran(tmp_path: Path) -> None:
    """The check log's findings are counted when the file exists."""
    settings = auditkit.write_migration(tmp_path)
    finding = CheckRow("missing", "Bill", "2", "c.pdf", "", None, 3000, "x", "")
    write_csv(settings.check_log, CheckRow, [finding])
    assert build_report(settings).check_findings == {"missing": 1}


def test_terminal_shows_the_figures(built: Report) -> None:
    """The terminal tables carry the hand-counted numbers."""
    out = io.StringIO()
    report.render_terminal(built, Console(file=out, width=200))
    text = out.getvalue()
    for expected in ("Migration report", "6000", auditkit.RUN_2, "12,000", "1,500 ms"):
        assert expected in text


def test_html_shows_the_figures(built: Report, tmp_path: Path) -> None:
    """The page carries the numbers in its figures and tables."""
    page = tmp_path / "report.html"
    report.write_html(built, page)
    html = page.read_text(encoding="utf-8")
    figures = dict(re.findall(r'id="([a-z0-9-]+)">([^<]*)<', html))
    assert figures["files-found"] == "11"
    assert figures["attached"] == "5"
    assert figures["failed"] == "1"
    assert figures["not-attempted"] == "1"
    assert figures["missing-mappings"] == "2"
    assert figures["bytes-uploaded"] == "12,000"
    assert figures["latency-p50"] == "300 ms"
    assert figures["latency-p95"] == "1,500 ms"
    assert figures["runs-count"] == "2"
    assert figures["run-2-files"] == "6"
    assert figures["failure-1-code"] == "6000"


def test_html_fetches_nothing(built: Report, tmp_path: Path) -> None:
    """The page is self-contained: no URL, script or external stylesheet."""
    page = tmp_path / "report.html"
    report.write_html(built, page)
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html)
    assert "<script" not in html
    assert 'rel="stylesheet"' not in html
    assert html.count("<svg") == 5


def test_html_escapes_names(tmp_path: Path) -> None:
    """A file name with markup in it shows as text, not as markup."""
    settings = auditkit.write_migration(tmp_path)
    rows = auditkit.run_1()
    rows[7] = dataclasses.replace(rows[7], file_path="<b>evil</b>.pdf")
    write_csv(settings.runlog, RunLogRow, rows)
    html = report_html.render_html(build_report(settings))
    assert "<b>evil</b>" not in html
    assert "&lt;b&gt;evil&lt;/b&gt;.pdf" in html


def test_many_keys_count_once_each(tmp_path: Path) -> None:
    """Ten thousand keys each count once, by type and in the latency figures."""
    settings = auditkit.write_migration(tmp_path)
    template = auditkit.run_1()[1]
    rows = (
        dataclasses.replace(template, file_name=f"f{i}.pdf", qbo_entity_id=str(i))
        for i in range(10_000)
    )
    write_csv(settings.runlog, RunLogRow, rows)
    built = build_report(settings)
    assert built.outcomes["Bill"]["success"] == 10_000
    assert built.latency.uploads == 10_000
