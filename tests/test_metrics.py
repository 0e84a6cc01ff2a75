"""The metrics file, parsed back with the Prometheus client's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from qbo_attach import metrics
from tests import auditkit

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(path: Path) -> tuple[dict[str, str], Samples]:
    """Metric types by family name, and every sample by name and labels."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        types[family.name] = family.type
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples[(sample.name, labels)] = sample.value
    return types, samples


REALM = (("realm", auditkit.REALM),)


def test_second_run_metrics(tmp_path: Path) -> None:
    """Run 2 attached two files, failed one, skipped three; two lack mappings."""
    settings = auditkit.write_migration(tmp_path)
    metrics.write_metrics(settings, auditkit.RUN_2)
    types, samples = parse(settings.log_dir / "metrics.prom")
    assert samples[("qbo_attach_attachments_uploaded_total", REALM)] == 2
    assert samples[("qbo_attach_attachments_failed_total", REALM)] == 1
    assert samples[("qbo_attach_attachments_skipped_total", REALM)] == 3
    assert samples[("qbo_attach_missing_mappings", REALM)] == 2
    assert samples[("qbo_attach_run_duration_seconds", REALM)] == pytest.approx(4.5)
    assert types["qbo_attach_attachments_uploaded"] == "counter"
    assert types["qbo_attach_missing_mappings"] == "gauge"


def test_upload_duration_histogram(tmp_path: Path) -> None:
    """Run 1's three successes land in cumulative buckets, in seconds."""
    settings = auditkit.write_migration(tmp_path)
    metrics.write_metrics(settings, auditkit.RUN_1)
    types, samples = parse(settings.log_dir / "metrics.prom")
    name = "qbo_attach_upload_duration_seconds"
    assert types[name] == "histogram"

    def bucket(le: str) -> float:
        return samples[(f"{name}_bucket", (("le", le), *REALM))]

    assert (bucket("0.1"), bucket("0.25"), bucket("0.5"), bucket("1.0")) == (
        1,
        1,
        2,
        3,
    )
    assert bucket("+Inf") == 3
    assert samples[(f"{name}_count", REALM)] == 3
    assert samples[(f"{name}_sum", REALM)] == pytest.approx(0.3 + 0.9 + 0.05)


def test_run_one_counts_failures_by_last_row(tmp_path: Path) -> None:
    """A retried error does not count; the key in doubt is neither kind."""
    settings = auditkit.write_migration(tmp_path)
    metrics.write_metrics(settings, auditkit.RUN_1)
    _, samples = parse(settings.log_dir / "metrics.prom")
    assert samples[("qbo_attach_attachments_uploaded_total", REALM)] == 3
    assert samples[("qbo_attach_attachments_failed_total", REALM)] == 2


def test_measured_wall_time_wins(tmp_path: Path) -> None:
    """The uploader's own measure of the run replaces the span of its rows."""
    settings = auditkit.write_migration(tmp_path)
    target = tmp_path / "elsewhere" / "run.prom"
    metrics.write_metrics(settings, auditkit.RUN_2, run_seconds=12.25, path=target)
    _, samples = parse(target)
    assert samples[("qbo_attach_run_duration_seconds", REALM)] == 12.25
    assert not (settings.log_dir / "metrics.prom").exists()


def test_unknown_run_writes_zeros(tmp_path: Path) -> None:
    """A run with no rows (a dry run, nothing left to do) reports zeros."""
    settings = auditkit.write_migration(tmp_path)
    metrics.write_metrics(settings, "no-such-run")
    _, samples = parse(settings.log_dir / "metrics.prom")
    assert samples[("qbo_attach_attachments_uploaded_total", REALM)] == 0
    assert samples[("qbo_attach_upload_duration_seconds_count", REALM)] == 0
    assert ("qbo_attach_last_run_timestamp_seconds", REALM) not in samples
