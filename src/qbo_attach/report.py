"""The run report: what the logs say about a migration, for the people around it.

``build_report`` reads the artifacts on disk once each, streaming, and keeps
counts rather than rows: per key it holds only the latest outcome, so the
report of a 170,000-file migration fits in a few tens of megabytes.
``render_terminal`` prints it as tables; ``write_html`` writes one
self-contained page (inline CSS and SVG, no script, nothing fetched) that an
auditor or a controller can open from a shared folder.

How outcomes are counted. Within one run, a key's outcome is its last row in
that run; a key whose last row is ``started`` is *in doubt* (the run stopped
mid-call, and the next upload asks the remote). A transient ``error`` row
followed by another attempt is therefore never final. Across runs, a key's
final outcome is its last row that is not ``skipped_already_uploaded``: a
skip only repeats what an earlier run established.
"""

from __future__ import annotations

import itertools
import math
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qbo_attach import runlog
from qbo_attach.errors import InputError, UsageError
from qbo_attach.records import CheckRow, InventoryRow, RunLogRow, VerificationRow
from qbo_attach.records import read_csv as read_records
from qbo_attach.runlog import Key
from qbo_attach.settings import Settings
from qbo_attach.verify import (
    AMBIGUOUS_MAPPING,
    MISSING_MAPPING,
    OK,
    SKIPPED_BY_CONFIG,
    STATUSES,
)

NO_TYPE = "(no type)"
IN_DOUBT = "in_doubt"
NOT_ATTEMPTED = "not_attempted"
# Upper bounds of the latency histogram, in milliseconds; one more bucket
# holds everything slower.
LATENCY_BUCKETS_MS = (100, 250, 500, 1000, 2500, 5000, 10000)
TOP_FAILURES = 10

# Final outcomes in the order people read them: done, then waiting, then broken.
OUTCOME_ORDER = (
    runlog.SUCCESS,
    runlog.RECONCILED,
    runlog.SKIPPED,
    NOT_ATTEMPTED,
    IN_DOUBT,
    runlog.ERROR,
    runlog.REJECTED,
    runlog.FILE_MISSING,
    runlog.FILE_CHANGED,
)
OUTCOME_LABELS = {
    runlog.SUCCESS: "uploaded",
    runlog.RECONCILED: "found already attached",
    runlog.SKIPPED: "uploaded before",
    NOT_ATTEMPTED: "not attempted yet",
    IN_DOUBT: "interrupted, to confirm",
    runlog.ERROR: "failed after retries",
    runlog.REJECTED: "refused by QuickBooks",
    runlog.FILE_MISSING: "file missing",
    runlog.FILE_CHANGED: "file changed since inventory",
}
OUTCOME_COLORS = {
    runlog.SUCCESS: "#2e7d32",
    runlog.RECONCILED: "#66bb6a",
    runlog.SKIPPED: "#a5d6a7",
    NOT_ATTEMPTED: "#b0bec5",
    IN_DOUBT: "#f9a825",
    runlog.ERROR: "#ef6c00",
    runlog.REJECTED: "#c62828",
    runlog.FILE_MISSING: "#6a1b9a",
    runlog.FILE_CHANGED: "#8d6e63",
}
STATUS_LABELS = {
    OK: "ready to upload",
    MISSING_MAPPING: "no QuickBooks Online record found",
    AMBIGUOUS_MAPPING: "several possible records",
    "invalid_legacy_id": "folder name is not a desktop id",
    "file_empty": "empty file",
    "file_too_large": "file too large",
    "unsupported_file_type": "file type not accepted",
    "file_unreadable": "file could not be read",
    "unsupported_entity_type": "record type takes no attachments",
    "duplicate_file_name": "duplicate file name",
    SKIPPED_BY_CONFIG: "left out on purpose",
}
STATUS_ORDER = (*STATUSES, SKIPPED_BY_CONFIG)


@dataclass(frozen=True, slots=True)
class Coverage:
    """Files of one legacy entity type by whether the mapping knew their id.

    ``not_checked`` files failed a check (empty, wrong type, bad id) before
    the mapping was looked up.
    """

    mapped: int = 0
    missing: int = 0
    not_checked: int = 0


@dataclass(frozen=True, slots=True)
class FailureCause:
    """Files whose final outcome is a failure with one error code."""

    code: str
    files: int
    example_file: str
    example_error: str


@dataclass(frozen=True, slots=True)
class Latency:
    """Durations of the successful upload calls, in milliseconds."""

    uploads: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None
    max_ms: int | None = None
    # (label, calls) per bucket of LATENCY_BUCKETS_MS, then the slower rest.
    histogram: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One upload run: its first and last row, and each key's outcome in it."""

    run_id: str
    started: str
    ended: str
    outcomes: Mapping[str, int]

    @property
    def files(self) -> int:
        return sum(self.outcomes.values())


@dataclass(frozen=True, slots=True)
class Report:
    """Every figure of the report; renderers show these and compute nothing."""

    realm_id: str
    target: str
    generated_at: str
    files_found: int
    bytes_found: int
    # legacy entity type -> verification status -> files
    verification: Mapping[str, Mapping[str, int]]
    coverage: Mapping[str, Coverage]
    # QBO entity type -> final outcome (OUTCOME_ORDER) -> files
    outcomes: Mapping[str, Mapping[str, int]]
    failures: tuple[FailureCause, ...]
    failure_events: int
    latency: Latency
    # (UTC minute "YYYY-MM-DD HH:MM", successful uploads) for each active minute
    throughput: tuple[tuple[str, int], ...]
    bytes_uploaded: int
    runs: tuple[RunSummary, ...]
    check_findings: Mapping[str, int] | None

    @property
    def status_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for statuses in self.verification.values():
            totals.update(statuses)
        return {status: totals[status] for status in STATUS_ORDER if totals[status]}

    @property
    def outcome_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for outcomes in self.outcomes.values():
            totals.update(outcomes)
        return {name: totals[name] for name in OUTCOME_ORDER if totals[name]}

    @property
    def missing_mappings(self) -> dict[str, int]:
        """Files with no mapping row, per legacy entity type that has any."""
        return {
            kind: statuses[MISSING_MAPPING]
            for kind, statuses in self.verification.items()
            if statuses.get(MISSING_MAPPING)
        }

    @property
    def attached(self) -> int:
        """Files on their QBO record: uploaded by any run, or found there."""
        totals = self.outcome_totals
        return sum(totals.get(name, 0) for name in runlog.ATTACHED | {runlog.SKIPPED})

    @property
    def failed(self) -> int:
        totals = self.outcome_totals
        return sum(totals.get(name, 0) for name in runlog.FAILED)

    @property
    def peak_per_minute(self) -> int:
        return max((count for _, count in self.throughput), default=0)

    @property
    def mean_per_minute(self) -> float:
        if not self.throughput:
            return 0.0
        return sum(count for _, count in self.throughput) / len(self.throughput)


@dataclass(slots=True)
class _RunTally:
    run_id: str
    started: str
    ended: str = ""
    last: dict[Key, str] = field(default_factory=dict)

    def summary(self) -> RunSummary:
        counts = Counter(_final_name(outcome) for outcome in self.last.values())
        ordered = {name: counts[name] for name in OUTCOME_ORDER if counts[name]}
        return RunSummary(self.run_id, self.started, self.ended, ordered)


@dataclass(slots=True)
class _RunLogTally:
    """What the report needs of the run log, gathered row by row."""

    path: Path
    final: dict[Key, str] = field(default_factory=dict)
    failing: dict[Key, tuple[str, str, str]] = field(default_factory=dict)
    durations: array[int] = field(default_factory=lambda: array("q"))
    minutes: Counter[str] = field(default_factory=Counter)
    bytes_uploaded: int = 0
    runs: list[RunSummary] = field(default_factory=list)
    current: _RunTally | None = None

    def add(self, row: RunLogRow) -> None:
        self._add_to_run(row)
        if row.outcome == runlog.SUCCESS:
            self._add_success(row)
        if row.outcome == runlog.SKIPPED and row.key in self.final:
            return
        self.final[row.key] = row.outcome
        if row.outcome in runlog.FAILED:
            self.failing[row.key] = (_failure_code(row), row.file_path, row.error)
        else:
            self.failing.pop(row.key, None)

    def close(self) -> None:
        if self.current is not None:
            self.runs.append(self.current.summary())
            self.current = None

    def _add_to_run(self, row: RunLogRow) -> None:
        # One uploader holds the run log's lock, so a run's rows are contiguous.
        if self.current is None or self.current.run_id != row.run_id:
            self.close()
            self.current = _RunTally(row.run_id, row.ts)
        self.current.ended = row.ts
        self.current.last[row.key] = row.outcome

    def _add_success(self, row: RunLogRow) -> None:
        self.bytes_uploaded += row.size_bytes or 0
        if row.duration_ms is not None:
            self.durations.append(row.duration_ms)
        self.minutes[_minute(self.path, row.ts)] += 1


def _final_name(outcome: str) -> str:
    return IN_DOUBT if outcome == runlog.STARTED else outcome


def _failure_code(row: RunLogRow) -> str:
    """The error code QBO gave, else the HTTP status, else the outcome itself."""
    if row.error_code:
        return row.error_code
    if row.status_code is not None:
        return f"HTTP {row.status_code}"
    return row.outcome


def _minute(path: Path, ts: str) -> str:
    # The uploader writes UTC times; slicing them spares 170,000 parses.
    if ts.endswith("+00:00") and len(ts) >= 16 and ts[10] == "T":
        return f"{ts[:10]} {ts[11:16]}"
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        raise InputError(path, f"{ts!r} is not an ISO 8601 time", column="ts") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def _read_optional(path: Path, cls: type[RunLogRow]) -> Iterator[RunLogRow]:
    if path.exists():
        yield from read_records(path, cls, tolerate_torn_tail=True)


def build_report(settings: Settings) -> Report:
    """Read every artifact under the settings' folders into one ``Report``.

    Artifacts not made yet count as empty, so a report after ``verify`` and
    before any upload works; with not even an inventory there is nothing to
    report and ``UsageError`` says which command to run.
    """
    if not settings.inventory_csv.exists():
        raise UsageError(
            f"{settings.inventory_csv}: file not found; nothing to report yet. "
            "Run `qbo-attach inventory` (or `qbo-attach run`) first."
        )
    files, size = _count_inventory(settings.inventory_csv)
    tally = _RunLogTally(settings.runlog)
    for row in runlog.read_runlog(settings.runlog):
        tally.add(row)
    tally.close()
    verification, coverage, waiting = _read_verification(settings, tally.final)
    return Report(
        realm_id=settings.realm_id,
        target=settings.target,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        files_found=files,
        bytes_found=size,
        verification=verification,
        coverage=coverage,
        outcomes=_outcomes(tally.final, waiting),
        failures=_failures(tally.failing.values()),
        failure_events=sum(1 for _ in _read_optional(settings.errors_log, RunLogRow)),
        latency=latency_of(tally.durations),
        throughput=tuple(sorted(tally.minutes.items())),
        bytes_uploaded=tally.bytes_uploaded,
        runs=tuple(tally.runs),
        check_findings=_check_findings(settings.check_log),
    )


def _count_inventory(path: Path) -> tuple[int, int]:
    files = size = 0
    for row in read_records(path, InventoryRow):
        files += 1
        size += row.size_bytes or 0
    return files, size


def _verification_rows(settings: Settings) -> Iterator[VerificationRow]:
    for path in (settings.verification_log, settings.verification_skips):
        if path.exists():
            yield from read_records(path, VerificationRow)


def _read_verification(
    settings: Settings, final: Mapping[Key, str]
) -> tuple[dict[str, dict[str, int]], dict[str, Coverage], Counter[str]]:
    """Statuses and coverage per legacy type; verified keys no run touched yet."""
    statuses: dict[str, Counter[str]] = {}
    coverage: dict[str, Counter[str]] = {}
    waiting: Counter[str] = Counter()
    for row in _verification_rows(settings):
        kind = row.legacy_entity_type or NO_TYPE
        statuses.setdefault(kind, Counter())[row.status] += 1
        if row.status != SKIPPED_BY_CONFIG:
            coverage.setdefault(kind, Counter())[_coverage_of(row)] += 1
        if row.status == OK and row.key not in final:
            waiting[row.qbo_entity_type or NO_TYPE] += 1
    ordered = {
        kind: {s: counts[s] for s in STATUS_ORDER if counts[s]}
        for kind, counts in sorted(statuses.items())
    }
    covered = {
        kind: Coverage(c["mapped"], c["missing"], c["not_checked"])
        for kind, c in sorted(coverage.items())
    }
    return ordered, covered, waiting


def _coverage_of(row: VerificationRow) -> str:
    if row.status == MISSING_MAPPING:
        return "missing"
    if row.qbo_entity_id or row.status == AMBIGUOUS_MAPPING:
        return "mapped"
    return "not_checked"


def _outcomes(
    final: Mapping[Key, str], waiting: Counter[str]
) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for key, outcome in final.items():
        counts.setdefault(key[0] or NO_TYPE, Counter())[_final_name(outcome)] += 1
    for kind, count in waiting.items():
        counts.setdefault(kind, Counter())[NOT_ATTEMPTED] += count
    return {
        kind: {name: c[name] for name in OUTCOME_ORDER if c[name]}
        for kind, c in sorted(counts.items())
    }


def _failures(failing: Iterable[tuple[str, str, str]]) -> tuple[FailureCause, ...]:
    counts: Counter[str] = Counter()
    examples: dict[str, tuple[str, str]] = {}
    for code, file_path, error in failing:
        counts[code] += 1
        examples.setdefault(code, (file_path, error))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(FailureCause(code, n, *examples[code]) for code, n in ranked)


def latency_of(durations_ms: Iterable[int]) -> Latency:
    """Percentiles (nearest rank) and histogram of upload durations."""
    ordered = sorted(durations_ms)
    if not ordered:
        return Latency(histogram=tuple((label, 0) for label in _bucket_labels()))
    buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for value in ordered:
        buckets[_bucket_of(value)] += 1
    return Latency(
        uploads=len(ordered),
        p50_ms=_percentile(ordered, 50),
        p95_ms=_percentile(ordered, 95),
        max_ms=ordered[-1],
        histogram=tuple(zip(_bucket_labels(), buckets, strict=True)),
    )


def _percentile(ordered: list[int], percent: int) -> int:
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def _bucket_of(value_ms: int) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if value_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g}"


def _bucket_labels() -> list[str]:
    bounds = LATENCY_BUCKETS_MS
    labels = [f"up to {_seconds(bounds[0])} s"]
    labels += [
        f"{_seconds(low)} to {_seconds(high)} s"
        for low, high in itertools.pairwise(bounds)
    ]
    labels.append(f"over {_seconds(bounds[-1])} s")
    return labels


def _check_findings(path: Path) -> dict[str, int] | None:
    if not path.exists():
        return None
    return dict(Counter(row.finding for row in read_records(path, CheckRow)))


def render_terminal(report: Report, console: Console) -> None:
    """Print the report as rich tables, overview first."""
    console.print(_overview_table(report))
    if report.verification:
        console.print(_verification_table(report))
        console.print(_coverage_table(report))
    if report.outcomes:
        console.print(_outcome_table(report))
    if report.failures:
        console.print(_failure_table(report))
    if report.runs:
        console.print(_runs_table(report))
    if report.check_findings is not None:
        found = ", ".join(
            f"{k} {v:,}" for k, v in sorted(report.check_findings.items())
        )
        console.print(f"check: {found or 'no findings'}")


def format_ms(value: int | None) -> str:
    return "-" if value is None else f"{value:,} ms"


def _overview_rows(report: Report) -> list[tuple[str, str]]:
    latency = report.latency
    totals = report.outcome_totals
    return [
        ("files found", f"{report.files_found:,} ({format_size(report.bytes_found)})"),
        ("ready to upload (verified ok)", f"{report.status_totals.get(OK, 0):,}"),
        ("missing mappings", f"{sum(report.missing_mappings.values()):,}"),
        ("attached to their record", f"{report.attached:,}"),
        ("failed (final)", f"{report.failed:,}"),
        ("not attempted yet", f"{totals.get(NOT_ATTEMPTED, 0):,}"),
        ("interrupted, to confirm", f"{totals.get(IN_DOUBT, 0):,}"),
        (
            "bytes uploaded",
            f"{report.bytes_uploaded:,} ({format_size(report.bytes_uploaded)})",
        ),
        ("failure rows in the errors log", f"{report.failure_events:,}"),
        (
            "upload time p50 / p95 / max",
            " / ".join(
                format_ms(value)
                for value in (latency.p50_ms, latency.p95_ms, latency.max_ms)
            ),
        ),
        (
            "uploads a minute: peak / mean",
            f"{report.peak_per_minute:,} / {report.mean_per_minute:,.1f} "
            f"over {len(report.throughput):,} active minutes",
        ),
        ("upload runs", f"{len(report.runs):,}"),
    ]


def _overview_table(report: Report) -> Table:
    table = Table(
        title=f"Migration report, realm {report.realm_id} ({report.target})",
        show_header=False,
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    for what, value in _overview_rows(report):
        table.add_row(what, value)
    return table


def _counts_table(
    title: str,
    first: str,
    rows: Mapping[str, Mapping[str, int]],
    order: Iterable[str],
) -> Table:
    """A table of counts per type (rows) and name (columns), zeros as blanks."""
    names = [name for name in order if any(r.get(name) for r in rows.values())]
    table = Table(title=title)
    table.add_column(first)
    for name in names:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for kind, counts in rows.items():
        cells = [f"{counts[n]:,}" if counts.get(n) else "" for n in names]
        table.add_row(kind, *cells, f"{sum(counts.values()):,}")
    return table


def _verification_table(report: Report) -> Table:
    return _counts_table(
        "Verification statuses per legacy entity type",
        "legacy type",
        report.verification,
        STATUS_ORDER,
    )


def _coverage_table(report: Report) -> Table:
    rows = {
        kind: {"mapped": c.mapped, "missing": c.missing, "not checked": c.not_checked}
        for kind, c in report.coverage.items()
    }
    order = ("mapped", "missing", "not checked")
    return _counts_table(
        "Mapping coverage per legacy entity type", "legacy type", rows, order
    )


def _outcome_table(report: Report) -> Table:
    return _counts_table(
        "Uploads by final outcome per QBO entity type",
        "QBO type",
        report.outcomes,
        OUTCOME_ORDER,
    )


def _failure_table(report: Report) -> Table:
    table = Table(title="Failures by error code (final outcomes)")
    for heading in ("code", "files", "example file", "error"):
        table.add_column(heading, justify="right" if heading == "files" else "left")
    for cause in report.failures:
        table.add_row(
            cause.code, f"{cause.files:,}", cause.example_file, cause.example_error
        )
    return table


def _runs_table(report: Report) -> Table:
    table = Table(title="Upload runs")
    names = [n for n in OUTCOME_ORDER if any(r.outcomes.get(n) for r in report.runs)]
    for heading in ("run", "started", "ended", "files", *names):
        table.add_column(heading, justify="left" if heading in ("run",) else "right")
    for run in report.runs:
        counts = [f"{run.outcomes.get(n, 0):,}" for n in names]
        table.add_row(
            run.run_id,
            format_time(run.started),
            format_time(run.ended),
            f"{run.files:,}",
            *counts,
        )
    return table


def format_time(ts: str) -> str:
    """A run log time as people read it, in UTC to the second."""
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_size(count: int) -> str:
    """A byte count in decimal units, as file managers show it."""
    if count < 1000:
        return f"{count:,} bytes"
    value = count / 1000
    for unit in ("KB", "MB", "GB"):
        if value < 1000:
            return f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} TB"


def write_html(report: Report, path: Path) -> None:
    """Write the report as one self-contained HTML page, replacing it whole."""
    # The page's module imports this one for the Report type; importing it at
    # call time keeps the two modules from importing each other while loading.
    from qbo_attach.report_html import render_html

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    os.replace(tmp, path)
