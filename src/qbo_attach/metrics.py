"""Metrics of the last upload run, for the node exporter's textfile collector.

After each run the command line calls ``write_metrics``, which rewrites
``LOG_DIR/metrics.prom`` atomically in the Prometheus text format, so an alert
can fire on failures or on a migration that stopped making progress. Every
series carries the realm as a label, so one exporter can watch many companies.

The counters count the files of one run, from zero: each run replaces the
file, as a restarted process resets its counters, and Prometheus's
``increase()`` handles that reset. The metrics are built by a collector of
their own from the run log (not kept in process memory), so a run that
crashed can still be described afterwards from its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from qbo_attach import runlog
from qbo_attach.errors import InputError
from qbo_attach.records import RunLogRow, VerificationRow, read_csv
from qbo_attach.runlog import Key
from qbo_attach.settings import Settings
from qbo_attach.verify import MISSING_MAPPING

METRICS_FILE = "metrics.prom"
# Upper bounds in seconds. QBO answers an upload in about a second; the tail
# catches calls held up by throttling.
UPLOAD_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(slots=True)
class RunMetrics:
    """What one upload run did, per final outcome of each key in it."""

    run_id: str
    uploaded: int = 0
    failed: int = 0
    skipped: int = 0
    missing_mappings: int = 0
    duration_seconds: float = 0.0
    finished_at: float | None = None  # Unix time of the run's last row
    upload_seconds: list[float] = field(default_factory=list)


def metrics_path(settings: Settings) -> Path:
    return settings.log_dir / METRICS_FILE


def write_metrics(
    settings: Settings,
    run_id: str,
    *,
    run_seconds: float | None = None,
    path: Path | None = None,
) -> None:
    """Describe the run ``run_id`` in ``LOG_DIR/metrics.prom`` (or ``path``).

    ``run_seconds`` is the run's wall time as the uploader measured it;
    without it, the time from the run's first to its last run log row.
    """
    metrics = measure_run(settings, run_id)
    if run_seconds is not None:
        metrics.duration_seconds = run_seconds
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunCollector(metrics, settings.realm_id))
    target = path or metrics_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)


def measure_run(settings: Settings, run_id: str) -> RunMetrics:
    """Count the run's final outcomes, upload times and missing mappings."""
    metrics = RunMetrics(run_id)
    last: dict[Key, str] = {}
    first_ts = last_ts = ""
    for row in _rows_of(settings.runlog, run_id):
        first_ts = first_ts or row.ts
        last_ts = row.ts
        last[row.key] = row.outcome
        if row.outcome == runlog.SUCCESS and row.duration_ms is not None:
            metrics.upload_seconds.append(row.duration_ms / 1000)
    _count_outcomes(metrics, last.values())
    if first_ts:
        start, end = _time(settings.runlog, first_ts), _time(settings.runlog, last_ts)
        metrics.duration_seconds = end - start
        metrics.finished_at = end
    metrics.missing_mappings = _missing_mappings(settings.verification_log)
    return metrics


def _rows_of(path: Path, run_id: str) -> Iterator[RunLogRow]:
    for row in runlog.read_runlog(path):
        if row.run_id == run_id:
            yield row


def _count_outcomes(metrics: RunMetrics, outcomes: Iterable[str]) -> None:
    for outcome in outcomes:
        if outcome in runlog.ATTACHED:
            metrics.uploaded += 1
        elif outcome in runlog.FAILED:
            metrics.failed += 1
        elif outcome == runlog.SKIPPED:
            metrics.skipped += 1


def _time(path: Path, ts: str) -> float:
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        raise InputError(path, f"{ts!r} is not an ISO 8601 time", column="ts") from None


def _missing_mappings(path: Path) -> int:
    if not path.exists():
        return 0
    rows = read_csv(path, VerificationRow)
    return sum(1 for row in rows if row.status == MISSING_MAPPING)


class RunCollector:
    """Hands the registry one run's metrics, each labelled with the realm."""

    def __init__(self, metrics: RunMetrics, realm_id: str) -> None:
        self.metrics = metrics
        self.realm_id = realm_id

    def collect(self) -> Iterator[Metric]:
        m, labels = self.metrics, [self.realm_id]
        yield self._counter(
            "qbo_attach_attachments_uploaded_total",
            "Files attached in the last run (uploaded, or found already there).",
            m.uploaded,
        )
        yield self._counter(
            "qbo_attach_attachments_failed_total",
            "Files whose last attempt in the last run failed.",
            m.failed,
        )
        yield self._counter(
            "qbo_attach_attachments_skipped_total",
            "Files the last run skipped because an earlier run attached them.",
            m.skipped,
        )
        yield self._gauge(
            "qbo_attach_missing_mappings",
            "Files in the verification log with no mapping row.",
            m.missing_mappings,
        )
        yield self._gauge(
            "qbo_attach_run_duration_seconds",
            "Wall time of the last upload run.",
            m.duration_seconds,
        )
        if m.finished_at is not None:
            yield self._gauge(
                "qbo_attach_last_run_timestamp_seconds",
                "Unix time of the last run log row of the last run.",
                m.finished_at,
            )
        histogram = HistogramMetricFamily(
            "qbo_attach_upload_duration_seconds",
            "Time of each successful upload call in the last run.",
            labels=["realm"],
        )
        histogram.add_metric(labels, _buckets(m.upload_seconds), sum(m.upload_seconds))
        yield histogram

    def _counter(self, name: str, text: str, value: float) -> Metric:
        family = CounterMetricFamily(name, text, labels=["realm"])
        family.add_metric([self.realm_id], value)
        return family

    def _gauge(self, name: str, text: str, value: float) -> Metric:
        family = GaugeMetricFamily(name, text, labels=["realm"])
        family.add_metric([self.realm_id], value)
        return family


def _buckets(values: list[float]) -> list[tuple[str, float]]:
    """Cumulative counts per upper bound, ending with +Inf as Prometheus wants.

    Bounds are spelt as Python's repr of a float ("1.0", "0.25"), which is how
    Prometheus clients write ``le``.
    """
    buckets = [
        (repr(bound), float(sum(1 for v in values if v <= bound)))
        for bound in UPLOAD_BUCKETS_S
    ]
    buckets.append(("+Inf", float(len(values))))
    return buckets
