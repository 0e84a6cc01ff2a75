"""What the person at the keyboard sees during an upload: a live progress line.

The display and the log share one rich console on stderr, so log lines print
above the progress bar instead of through it. It is off with ``--quiet`` and
whenever stderr is not a terminal (a pipe, a file, CI).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

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


def configure_logging(level: int) -> None:
    """Send log records to stderr through the console the progress bar uses."""
    handler = RichHandler(
        console=err_console, show_path=False, show_time=False, markup=False
    )
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s")
