"""The uploader: plan from the verification log, reconcile, attach, record.

Decisions come only from the durable run log and the remote, never from the
memory of an earlier process (DESIGN.md). For each verified file the uploader
either skips it (already attached), reconciles it (an earlier run died
mid-call; ask the remote), or uploads it, writing a ``started`` row before
every attempt and an outcome row after it.

Uploads run concurrently, as many as ``UploadOptions.concurrency``; the
client's realm gate keeps them within QBO's rate. ``stop()`` (the first
Ctrl-C) stops handing out new files and lets the calls in flight finish;
``abort()`` (the second) cancels those too, leaving them in doubt for the next
run to reconcile.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import tenacity

from qbo_attach import runlog
from qbo_attach.errors import PermanentError, RemoteError, TransientError, UsageError
from qbo_attach.qbo.client import Attachable, QboClient, UploadResult
from qbo_attach.records import RunLogRow, VerificationRow, read_csv
from qbo_attach.runlog import Key, RunLogIndex, RunLogWriter
from qbo_attach.settings import Settings
from qbo_attach.verify import OK

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Progress = Callable[[str], None]

# Past this many keys in doubt, one pass over every attachable of the company
# costs fewer requests than a query per record.
RECONCILE_BULK_THRESHOLD = 50
DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class UploadOptions:
    """How the uploader behaves; the defaults suit a run against QBO."""

    dry_run: bool = False
    limit: int | None = None
    concurrency: int = 10
    retry_failed: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # Backoff between attempts of one file: exponential with jitter, and a cap
    # on the total time one file may spend retrying.
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    max_retry_wait: float = 600.0
    # Stop handing out files once more than this many failed (None: never).
    max_failures: int | None = None


@dataclass(slots=True)
class UploadSummary:
    """Final outcome per verified file in this run, and what was planned."""

    run_id: str
    verified: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    planned: Counter[str] = field(default_factory=Counter)
    not_attempted: int = 0
    interrupted: bool = False
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    @property
    def failed(self) -> int:
        return sum(self.outcomes[outcome] for outcome in runlog.FAILED)

    @property
    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failed else 0


@dataclass(frozen=True, slots=True)
class Job:
    """One verified file the uploader acts on."""

    row: VerificationRow
    request_id: str


async def backoff_sleep(seconds: float) -> None:
    """The uploader's wait between attempts; tests replace it to never sleep."""
    await asyncio.sleep(seconds)


def request_id_for(realm_id: str, row: VerificationRow) -> str:
    """A deterministic request id: the same file for the same record, same id.

    QBO documents ``requestid`` as idempotent and limits it to 50 characters;
    40 hex digits of a sha256 keep collisions out of reach.
    """
    material = "\x1f".join((realm_id, *row.key, row.sha256))
    return hashlib.sha256(material.encode()).hexdigest()[:40]


def new_run_id() -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def verified_rows(path: Path) -> Iterator[VerificationRow]:
    """The rows of the verification log that passed the gate."""
    hint = "Run `qbo-attach verify` first."
    for row in read_csv(path, VerificationRow, hint=hint):
        if row.status == OK:
            yield row


def count_verified(path: Path) -> int:
    """How many files the uploader will look at, for a progress display."""
    return sum(1 for _ in verified_rows(path))


class Uploader:
    """Runs one upload pass against one realm."""

    def __init__(
        self,
        settings: Settings,
        client: QboClient,
        options: UploadOptions,
        *,
        sleep: Sleep | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.options = options
        self.summary = UploadSummary(run_id=new_run_id())
        self._sleep = sleep or backoff_sleep
        self._progress = progress or (lambda outcome: None)
        self._files_root = settings.files_dir.resolve()
        self._reconciled: set[Key] = set()
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None

    def stop(self) -> None:
        """Hand out no new files; the calls in flight finish and are recorded."""
        self._stopping = True
        self.summary.interrupted = True

    def abort(self) -> None:
        """Cancel the calls in flight too; their keys stay in doubt."""
        self.stop()
        for task in self._in_flight:
            task.cancel()

    async def run(self) -> UploadSummary:
        """Upload what is left; return the counts of this run."""
        index = runlog.build_index(self.settings.runlog)
        if self.options.dry_run:
            self._plan_only(index)
            return self.summary
        writer = RunLogWriter(
            self.settings.runlog, self.settings.errors_log, self.settings.dups_log
        )
        try:
            await self._reconcile(index, writer)
            await self._upload_all(self._jobs(index, writer), writer)
        finally:
            writer.close()
            self.summary.finished_at = time.monotonic()
        return self.summary

    def _wanted(self, index: RunLogIndex, key: Key) -> bool:
        """Whether a key not yet attached is in this run's scope."""
        if self.options.retry_failed:
            return index.last_outcome.get(key) == runlog.ERROR
        return True

    def _plan_only(self, index: RunLogIndex) -> None:
        in_doubt = index.in_doubt()
        uploads = 0
        for row in verified_rows(self.settings.verification_log):
            self.summary.verified += 1
            if row.key in index.attached:
                self.summary.planned[runlog.SKIPPED] += 1
            elif row.key in in_doubt:
                self.summary.planned["reconcile"] += 1
            elif not self._wanted(index, row.key):
                self.summary.not_attempted += 1
            elif self.options.limit is None or uploads < self.options.limit:
                uploads += 1
                self.summary.planned["upload"] += 1
            else:
                self.summary.not_attempted += 1

    async def _reconcile(self, index: RunLogIndex, writer: RunLogWriter) -> None:
        """Settle keys an earlier crash left in doubt, before any upload."""
        in_doubt = index.in_doubt()
        if not in_doubt:
            return
        log.info(
            "reconciling %d uploads left in doubt by an earlier run", len(in_doubt)
        )
        remote = (
            await self._all_remote()
            if len(in_doubt) > RECONCILE_BULK_THRESHOLD
            else None
        )
        for row in verified_rows(self.settings.verification_log):
            if row.key not in in_doubt:
                continue
            if remote is not None:
                candidates = remote.get(row.key, [])
            else:
                candidates = await self.client.attachables_of(
                    row.qbo_entity_type, row.qbo_entity_id
                )
            match = _matching(candidates, row)
            if match is not None:
                index.attached[row.key] = match.attachable_id
                self._reconciled.add(row.key)
                event = self._event(
                    row, runlog.RECONCILED, qbo_attachable_id=match.attachable_id
                )
                writer.write(event)
                _log_outcome(event)

    async def _all_remote(self) -> dict[Key, list[Attachable]]:
        """Every attachable of the company, by key."""
        by_key: dict[Key, list[Attachable]] = defaultdict(list)
        async for page in self.client.query_pages("Attachable"):
            for body in page:
                for attachable in Attachable.from_json(body):
                    by_key[attachable.key].append(attachable)
        return by_key

    def _jobs(self, index: RunLogIndex, writer: RunLogWriter) -> Iterator[Job]:
        """Walk the verified files: record skips, hand out the rest to upload."""
        seen: set[Key] = set()
        uploads = 0
        for row in verified_rows(self.settings.verification_log):
            self.summary.verified += 1
            if row.key in seen:
                raise UsageError(
                    f"{self.settings.verification_log}: {row.key} appears twice as "
                    "ok; run `qbo-attach verify` again to rebuild it"
                )
            seen.add(row.key)
            if row.key in self._reconciled:
                # Its one final row, reconciled, is already in the run log.
                self._finish(runlog.RECONCILED)
            elif row.key in index.attached:
                attachable_id = index.attached[row.key]
                event = self._event(
                    row, runlog.SKIPPED, qbo_attachable_id=attachable_id
                )
                # Not synced row by row: a skip is derived, and a rerun of a
                # finished 170,000-file migration would spend minutes in fsync.
                writer.write(event, sync=False)
                writer.write_dup(event)
                _log_outcome(event)
                self._finish(event.outcome)
            elif not self._wanted(index, row.key) or (
                self.options.limit is not None and uploads >= self.options.limit
            ):
                self.summary.not_attempted += 1
            else:
                uploads += 1
                yield Job(row, request_id_for(self.settings.realm_id, row))

    async def _upload_all(self, jobs: Iterator[Job], writer: RunLogWriter) -> None:
        """Keep up to ``concurrency`` uploads in flight until the jobs run out."""
        slots = asyncio.Semaphore(self.options.concurrency)
        for job in jobs:
            if not self._stopping:
                await slots.acquire()
            if self._stopping:
                self.summary.not_attempted += 1
                continue
            task = asyncio.create_task(self._upload_one(job, writer))
            self._in_flight.add(task)
            task.add_done_callback(self._task_done)
            task.add_done_callback(lambda _: slots.release())
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._crash is not None:
            raise self._crash

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished upload; an error it raised stops the whole run.

        Failures of a file are recorded inside the task; what escapes it (a
        log that cannot be written, a sign-in that died) concerns every file.
        """
        self._in_flight.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        if self._crash is None:
            self._crash = task.exception()
        self._stopping = True

    async def _upload_one(self, job: Job, writer: RunLogWriter) -> None:
        content = self._read_checked(job.row)
        if isinstance(content, RunLogRow):
            self._fail(content, writer)
            return
        attempts = tenacity.AsyncRetrying(
            stop=(
                tenacity.stop_after_attempt(self.options.max_attempts)
                | tenacity.stop_after_delay(self.options.max_retry_wait)
            ),
            wait=tenacity.wait_exponential_jitter(
                initial=self.options.backoff_initial, max=self.options.backoff_max
            ),
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self._sleep,
            reraise=True,
        )
        number = 0
        try:
            async for attempt in attempts:
                with attempt:
                    number = attempt.retry_state.attempt_number
                    await self._attempt(job, content, number, writer)
        except RemoteError as exc:
            outcome = (
                runlog.REJECTED if isinstance(exc, PermanentError) else runlog.ERROR
            )
            self._fail(
                self._failure(job, outcome, exc, number, exc.duration_ms), writer
            )

    async def _attempt(
        self, job: Job, content: bytes, number: int, writer: RunLogWriter
    ) -> None:
        """One call, between its started row and its outcome row."""
        writer.write(
            self._event(
                job.row, runlog.STARTED, request_id=job.request_id, attempt=number
            )
        )
        began = time.monotonic()
        try:
            result = await self.client.upload(
                entity_type=job.row.qbo_entity_type,
                entity_id=job.row.qbo_entity_id,
                file_name=job.row.file_name,
                content_type=job.row.content_type,
                content=content,
                request_id=job.request_id,
            )
        except RemoteError as exc:
            if exc.duration_ms is None:
                exc.duration_ms = round((time.monotonic() - began) * 1000)
            if isinstance(exc, TransientError) and not self._last_attempt(number):
                # Recorded now; the retry follows, and the last failure stands.
                writer.write(
                    self._failure(job, runlog.ERROR, exc, number, exc.duration_ms)
                )
            raise
        self._succeed(job, number, result, writer)

    def _last_attempt(self, number: int) -> bool:
        return number >= self.options.max_attempts

    def _succeed(
        self, job: Job, number: int, result: UploadResult, writer: RunLogWriter
    ) -> None:
        event = self._event(
            job.row,
            runlog.SUCCESS,
            request_id=job.request_id,
            attempt=number,
            status_code=result.status_code,
            intuit_tid=result.intuit_tid,
            qbo_attachable_id=result.attachable_id,
            duration_ms=result.duration_ms,
        )
        writer.write(event)
        _log_outcome(event)
        self._finish(event.outcome)

    def _read_checked(self, row: VerificationRow) -> bytes | RunLogRow:
        """The file's bytes, or the event saying why it cannot be uploaded."""
        path = (self.settings.files_dir / row.file_path).resolve()
        if not path.is_relative_to(self._files_root):
            return self._event(
                row, runlog.FILE_MISSING, error=f"{row.file_path} leaves FILES_DIR"
            )
        try:
            content = path.read_bytes()
        except FileNotFoundError:
            return self._event(row, runlog.FILE_MISSING, error=f"{path} is gone")
        except OSError as exc:
            return self._event(row, runlog.FILE_MISSING, error=f"{path}: {exc}")
        if len(content) != row.size_bytes:
            return self._event(
                row,
                runlog.FILE_CHANGED,
                error=f"size {len(content)} bytes, inventory said {row.size_bytes}",
            )
        if row.sha256 and hashlib.sha256(content).hexdigest() != row.sha256:
            return self._event(
                row, runlog.FILE_CHANGED, error="content differs from the inventory"
            )
        return content

    def _failure(
        self,
        job: Job,
        outcome: str,
        exc: RemoteError,
        attempt: int,
        duration_ms: int | None,
    ) -> RunLogRow:
        return self._event(
            job.row,
            outcome,
            request_id=job.request_id,
            attempt=attempt,
            status_code=exc.status_code,
            error_code=exc.error_code,
            error=str(exc),
            intuit_tid=exc.intuit_tid,
            duration_ms=duration_ms,
        )

    def _fail(self, event: RunLogRow, writer: RunLogWriter) -> None:
        writer.write(event)
        writer.write_error(event)
        self._finish(event.outcome)
        log.warning(
            "%s %s: %s",
            event.outcome,
            event.file_path,
            event.error,
            extra=_event_fields("attachment_failed", event),
        )

    def _finish(self, outcome: str) -> None:
        """Count a file's final outcome (its row is already in the run log)."""
        self.summary.outcomes[outcome] += 1
        self._progress(outcome)
        limit = self.options.max_failures
        if limit is not None and self.summary.failed > limit and not self._stopping:
            log.warning(
                "more than %d files failed; no new uploads (--max-failures)", limit
            )
            self._stopping = True

    def _event(self, row: VerificationRow, outcome: str, **fields: object) -> RunLogRow:
        return RunLogRow.for_file(
            row, ts=now(), run_id=self.summary.run_id, outcome=outcome, **fields
        )


def _log_outcome(event: RunLogRow) -> None:
    """Log a file that ended well, as a machine-readable event when asked."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s",
            event.outcome,
            event.file_path,
            extra=_event_fields("attachment_outcome", event),
        )


def _event_fields(name: str, event: RunLogRow) -> dict[str, object]:
    """What a machine-readable log line says about one file: no secrets."""
    return {
        "event": name,
        "fields": {
            "run_id": event.run_id,
            "qbo_entity_type": event.qbo_entity_type,
            "qbo_entity_id": event.qbo_entity_id,
            "file_name": event.file_name,
            "file_path": event.file_path,
            "outcome": event.outcome,
            "attempt": event.attempt,
            "status_code": event.status_code,
            "error_code": event.error_code,
            "intuit_tid": event.intuit_tid,
            "duration_ms": event.duration_ms,
        },
    }


def _matching(candidates: list[Attachable], row: VerificationRow) -> Attachable | None:
    """The remote attachable that is this file: same name, same size if known."""
    for attachable in candidates:
        same_name = attachable.file_name == row.file_name
        if same_name and attachable.size in (None, row.size_bytes):
            return attachable
    return None


async def upload(
    settings: Settings,
    client: QboClient,
    options: UploadOptions,
    *,
    sleep: Sleep | None = None,
    progress: Progress | None = None,
) -> UploadSummary:
    """Run the uploader once; see ``Uploader``."""
    uploader = Uploader(settings, client, options, sleep=sleep, progress=progress)
    return await uploader.run()


__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "UploadOptions",
    "UploadSummary",
    "Uploader",
    "count_verified",
    "request_id_for",
    "upload",
]
