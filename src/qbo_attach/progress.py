"""What the person at the keyboard sees during an upload: a live progress line.

The display and the log share one rich console on stderr, so log lines print
above the progress bar instead of through it. It is off with ``--quiet`` and
whenever stderr is not a terminal (a pipe, a file, CI).
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from qbo_attach import runlog

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class RateColumn(ProgressColumn):
    """Files a minute, the unit QBO's limits are stated in."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text(f"{speed * 60:,.0f}/min" if speed else "-/min")


class UploadProgress:
    """Counts outcomes as they come and shows them with rate and ETA."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self._progress = progress
        self._task = task
        self.counts: Counter[str] = Counter()

    def __call__(self, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._progress is None or self._task is None:
            return
        failed = sum(self.counts[o] for o in runlog.FAILED)
        self._progress.update(
            self._task,
            advance=1,
            failed=failed,
            skipped=self.counts[runlog.SKIPPED],
        )


@contextmanager
def upload_progress(total: int, *, enabled: bool) -> Iterator[UploadProgress]:
    """A progress display for ``total`` files, or a silent counter."""
    if not enabled or not err_console.is_terminal:
        yield UploadProgress(None, None)
        return
    columns = (
        TextColumn("uploading"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}  skipped {task.fields[skipped]}"),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("upload", total=total, failed=0, skipped=0)
        yield UploadProgress(progress, task)


class JsonLines(logging.Formatter):
    """One JSON object per event: a stable name, its fields, never secrets.

    The event name comes from ``extra={"event": ...}`` (the message's
    template otherwise) and the fields from ``extra={"fields": {...}}``; the
    library puts only keys, outcomes, codes and durations there.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.msg),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(event, default=str)


_installed: list[logging.Handler] = []


def configure_logging(
    level: int, *, json_lines: bool = False, log_file: Path | None = None
) -> None:
    """Send log records to stderr (or ``log_file``), as text or JSON lines.

    Text goes through the console the progress bar uses, so log lines print
    above the bar instead of through it.
    """
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    elif json_lines:
        handler = logging.StreamHandler(sys.stderr)
    else:
        handler = RichHandler(
            console=err_console, show_path=False, show_time=False, markup=False
        )
    if json_lines:
        handler.setFormatter(JsonLines())
    root = logging.getLogger()
    # Replace only the handler this function installed before: a second
    # command in one process (tests) must not log twice, and handlers others
    # installed (a test's log capture) stay.
    while _installed:
        old = _installed.pop()
        root.removeHandler(old)
        old.close()
    _installed.append(handler)
    root.addHandler(handler)
    root.setLevel(level)
