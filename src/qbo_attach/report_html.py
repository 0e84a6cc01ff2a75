"""The report page: one self-contained HTML file that people open from a folder.

Plain headings and sentences first, then charts and the tables behind them,
all drawn from a ``Report``; nothing here counts anything. The page has its
CSS inline and its charts as inline SVG, loads no script, font or image, and
so opens the same on a laptop with no network as on a file share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from qbo_attach import charts, runlog
from qbo_attach.report import (
    IN_DOUBT,
    NOT_ATTEMPTED,
    OUTCOME_COLORS,
    OUTCOME_LABELS,
    OUTCOME_ORDER,
    STATUS_LABELS,
    STATUS_ORDER,
    TOP_FAILURES,
    Report,
    format_ms,
    format_size,
    format_time,
)
from qbo_attach.verify import OK

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1f2933; background: #f7f8fa; margin: 0; }
main { max-width: 980px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 6px; border-bottom: 1px solid #d9dde3; }
p.meta { color: #52606d; margin: 0 0 16px; }
.lead { font-size: 17px; }
ul.lead { margin-top: 0; }
.wide { overflow-x: auto; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: 10px; margin: 16px 0; }
.figure { background: #fff; border: 1px solid #d9dde3; border-radius: 6px;
  padding: 10px 12px; }
.figure .value { display: block; font-size: 22px; font-weight: 600;
  font-variant-numeric: tabular-nums; }
.figure .name { color: #52606d; font-size: 13px; }
table { border-collapse: collapse; margin: 10px 0; background: #fff; }
th, td { border: 1px solid #d9dde3; padding: 4px 8px; text-align: left;
  vertical-align: top; }
th { background: #eef1f4; }
td.n { text-align: right; font-variant-numeric: tabular-nums;
  white-space: nowrap; }
svg.chart { width: 100%; height: auto; background: #fff; border: 1px solid #d9dde3;
  border-radius: 6px; margin: 8px 0; }
svg text { fill: #1f2933; font-family: inherit; }
svg .axis { stroke: #52606d; }
svg .grid { stroke: #d9dde3; stroke-dasharray: 4 3; }
svg .axis-title { fill: #52606d; }
dl dt { font-weight: 600; }
dl dd { margin: 0 0 6px 16px; }
.empty { color: #52606d; font-style: italic; }
"""


def render_html(report: Report) -> str:
    """The report page as text: plain sentences, figures, charts and tables."""
    sections = [
        _header(report),
        _figures(report),
        _outcomes_section(report),
        _coverage_section(report),
        _verification_section(report),
        _throughput_section(report),
        _latency_section(report),
        _failures_section(report),
        _runs_section(report),
        _check_section(report),
        _glossary(),
    ]
    title = f"Attachment migration report, realm {report.realm_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(sections)}</main></body></html>\n"
    )


def _n(value: int) -> str:
    return f"{value:,}"


def _header(report: Report) -> str:
    waiting = report.outcome_totals.get(NOT_ATTEMPTED, 0)
    missing = sum(report.missing_mappings.values())
    points = [
        f"attached to their QuickBooks Online record: {_n(report.attached)}",
        f"failed, and need someone to look at them: {_n(report.failed)}",
        f"ready, but not attempted yet: {_n(waiting)}",
        "with no matching QuickBooks Online record in the conversion's mapping, "
        f"so they stay behind until it is fixed: {_n(missing)}",
    ]
    items = "".join(f"<li>{escape(point)}</li>" for point in points)
    return (
        "<h1>Attachment migration report</h1>"
        f'<p class="meta">QuickBooks Online company (realm) '
        f"{escape(report.realm_id)}, target {escape(report.target)}; "
        f"made {escape(format_time(report.generated_at))}.</p>"
        f'<p class="lead">Of {_n(report.files_found)} files found in the desktop '
        f'Attach folder:</p><ul class="lead">{items}</ul>'
    )


def _figure(ident: str, value: str, name: str) -> str:
    return (
        f'<div class="figure"><span class="value" id="{ident}">{escape(value)}</span>'
        f'<span class="name">{escape(name)}</span></div>'
    )


def _figures(report: Report) -> str:
    latency = report.latency
    totals = report.outcome_totals
    figures = [
        ("files-found", _n(report.files_found), "files found"),
        ("bytes-found", format_size(report.bytes_found), "size of the files found"),
        ("verified-ok", _n(report.status_totals.get(OK, 0)), "ready to upload"),
        ("attached", _n(report.attached), "attached to their record"),
        ("failed", _n(report.failed), "failed, need attention"),
        ("not-attempted", _n(totals.get(NOT_ATTEMPTED, 0)), "not attempted yet"),
        ("in-doubt", _n(totals.get(IN_DOUBT, 0)), "interrupted, to confirm"),
        (
            "missing-mappings",
            _n(sum(report.missing_mappings.values())),
            "no matching record",
        ),
        ("bytes-uploaded", _n(report.bytes_uploaded), "bytes uploaded"),
        ("latency-p50", format_ms(latency.p50_ms), "typical upload time (median)"),
        ("latency-p95", format_ms(latency.p95_ms), "95 in 100 uploads took at most"),
        ("latency-max", format_ms(latency.max_ms), "slowest upload"),
        ("peak-per-minute", _n(report.peak_per_minute), "most uploads in a minute"),
        ("runs-count", _n(len(report.runs)), "upload runs"),
    ]
    cards = "".join(_figure(*figure) for figure in figures)
    return f'<h2>Key figures</h2><div class="figures">{cards}</div>'


def _html_table(
    headings: list[str], rows: Iterable[list[str]], numeric: set[int]
) -> str:
    """A table whose cells are already escaped; ``numeric`` columns align right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _counts_html(
    first: str,
    rows: Mapping[str, Mapping[str, int]],
    order: Iterable[str],
    labels: Mapping[str, str],
) -> str:
    names = [name for name in order if any(r.get(name) for r in rows.values())]
    body = [
        [escape(kind)]
        + [_n(counts.get(name, 0)) for name in names]
        + [_n(sum(counts.values()))]
        for kind, counts in rows.items()
    ]
    headings = [first, *(labels.get(n, n) for n in names), "total"]
    return _html_table(headings, body, set(range(1, len(headings))))


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _outcomes_section(report: Report) -> str:
    heading = "<h2>Where each file ended up</h2>"
    if not report.outcomes:
        return heading + _empty("No upload has run yet.")
    names = [n for n in OUTCOME_ORDER if report.outcome_totals.get(n)]
    series = [charts.Series(OUTCOME_LABELS[n], OUTCOME_COLORS[n]) for n in names]
    rows = [
        (kind, [counts.get(n, 0) for n in names])
        for kind, counts in report.outcomes.items()
    ]
    return (
        heading
        + "<p>Each file that passed verification, by the kind of QuickBooks Online "
        "record it belongs to and what finally happened to it.</p>"
        + charts.stacked_bars("Final outcome per record type", series, rows)
        + _counts_html("record type", report.outcomes, OUTCOME_ORDER, OUTCOME_LABELS)
    )


def _coverage_section(report: Report) -> str:
    heading = "<h2>Did the conversion's mapping know each record?</h2>"
    if not report.coverage:
        return heading + _empty("Verification has not run yet.")
    series = [
        charts.Series("mapped", "#2e7d32"),
        charts.Series("missing", "#c62828"),
        charts.Series("not checked (file problem)", "#b0bec5"),
    ]
    rows = [
        (kind, [c.mapped, c.missing, c.not_checked])
        for kind, c in report.coverage.items()
    ]
    table_rows = {
        kind: {"mapped": c.mapped, "missing": c.missing, "not checked": c.not_checked}
        for kind, c in report.coverage.items()
    }
    return (
        heading + "<p>Files per desktop record type: <em>mapped</em> files have a "
        "QuickBooks Online record to go to; <em>missing</em> ones do not, and "
        "stay behind until the mapping is corrected.</p>"
        + charts.stacked_bars("Mapping coverage per desktop record type", series, rows)
        + _counts_html(
            "desktop record type", table_rows, ("mapped", "missing", "not checked"), {}
        )
    )


def _verification_section(report: Report) -> str:
    heading = "<h2>Verification results</h2>"
    if not report.verification:
        return heading + _empty("Verification has not run yet.")
    return (
        heading + "<p>Every file found was checked before any upload. This is what the "
        "check said, per desktop record type.</p>"
        + _counts_html(
            "desktop record type", report.verification, STATUS_ORDER, STATUS_LABELS
        )
    )


def _throughput_section(report: Report) -> str:
    heading = "<h2>Uploads over time</h2>"
    if not report.throughput:
        return heading + _empty("No file has been uploaded yet.")
    text = (
        "Files uploaded per minute (UTC), over the minutes in which uploads "
        f"happened ({_n(len(report.throughput))}): at most "
        f"{_n(report.peak_per_minute)} in one minute, "
        f"{report.mean_per_minute:,.1f} on average."
    )
    chart = charts.line(
        "Uploads per minute", "#1565c0", report.throughput, "minute (UTC)"
    )
    return heading + f"<p>{escape(text)}</p>" + chart


def _latency_section(report: Report) -> str:
    heading = "<h2>How long each upload took</h2>"
    latency = report.latency
    if not latency.uploads:
        return heading + _empty("No file has been uploaded yet.")
    text = (
        f"Timed uploads: {_n(latency.uploads)}. Half took at most "
        f"{format_ms(latency.p50_ms)}, 95 in 100 at most "
        f"{format_ms(latency.p95_ms)}, and the slowest {format_ms(latency.max_ms)}."
    )
    chart = charts.columns(
        "Upload time histogram", "#1565c0", latency.histogram, "time per upload"
    )
    return heading + f"<p>{escape(text)}</p>" + chart


def _failures_section(report: Report) -> str:
    heading = "<h2>Why uploads failed</h2>"
    if not report.failures:
        return heading + "<p>No file is in a failed state.</p>"
    top = report.failures[:TOP_FAILURES]
    chart = charts.bars(
        "Failed files per error code", "#c62828", [(c.code, c.files) for c in top]
    )
    rows = (
        [
            f'<span id="failure-{i}-code">{escape(c.code)}</span>',
            f'<span id="failure-{i}-files">{_n(c.files)}</span>',
            escape(c.example_file),
            escape(c.example_error),
        ]
        for i, c in enumerate(report.failures, 1)
    )
    table = _html_table(["error code", "files", "for example", "message"], rows, {1})
    return (
        heading
        + f"<p>Files that ended in failure: {_n(report.failed)}. The most common "
        "causes, with one file for each so someone can look into it:</p>"
        + chart
        + table
    )


def _runs_section(report: Report) -> str:
    heading = "<h2>Upload runs</h2>"
    if not report.runs:
        return heading + _empty("No upload has run yet.")
    names = [n for n in OUTCOME_ORDER if any(r.outcomes.get(n) for r in report.runs)]
    rows = (
        [
            escape(run.run_id),
            escape(format_time(run.started)),
            escape(format_time(run.ended)),
            f'<span id="run-{i}-files">{_n(run.files)}</span>',
            *(
                f'<span id="run-{i}-{name}">{_n(run.outcomes.get(name, 0))}</span>'
                for name in names
            ),
        ]
        for i, run in enumerate(report.runs, 1)
    )
    headings = ["run", "started", "ended", "files", *(OUTCOME_LABELS[n] for n in names)]
    return (
        heading + "<p>Each time the uploader ran, and what happened to the files it "
        "handled in that run.</p>"
        + _html_table(headings, rows, set(range(1, len(headings))))
    )


def _check_section(report: Report) -> str:
    if report.check_findings is None:
        return ""
    heading = "<h2>Check against QuickBooks Online</h2>"
    if not report.check_findings:
        return heading + "<p>The last check found QuickBooks Online as expected.</p>"
    rows = (
        [escape(name), _n(count)]
        for name, count in sorted(report.check_findings.items())
    )
    return (
        heading
        + "<p>The last check compared QuickBooks Online with the logs and found:</p>"
        + _html_table(["finding", "attachments"], rows, {1})
    )


def _glossary() -> str:
    terms = "".join(
        f"<dt>{escape(OUTCOME_LABELS[name])}</dt><dd>{escape(text)}</dd>"
        for name, text in _MEANINGS.items()
    )
    return f"<h2>What the outcomes mean</h2><dl>{terms}</dl>"


_MEANINGS = {
    runlog.SUCCESS: "The file was uploaded and attached to its record.",
    runlog.RECONCILED: "An earlier run was cut off mid-upload; QuickBooks Online "
    "already had the file, so it was not sent again.",
    runlog.SKIPPED: "Only earlier uploads are recorded for this file.",
    NOT_ATTEMPTED: "The file passed verification but no upload run has reached it.",
    IN_DOUBT: "A run stopped during this upload; the next run asks QuickBooks "
    "Online whether it arrived before sending it again.",
    runlog.ERROR: "QuickBooks Online kept answering with a temporary error; "
    "running the upload again retries it.",
    runlog.REJECTED: "QuickBooks Online refused the file; the message says why.",
    runlog.FILE_MISSING: "The file was no longer in the folder when its turn came.",
    runlog.FILE_CHANGED: "The file changed after it was listed, so it was not sent.",
}
