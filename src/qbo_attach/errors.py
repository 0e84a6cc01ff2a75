"""The package's exceptions.

Every error the tool raises on purpose derives from ``QboAttachError``::

    QboAttachError
    ├── UsageError        bad option, configuration or input file (exit 2)
    │   ├── InputError    a CSV that cannot be used: names file, row, column
    │   └── AuthError     no usable OAuth sign-in: run `qbo-attach auth login`
    ├── LockError         another uploader holds the run log (exit 2)
    ├── StorageError      a log or artifact cannot be written: read-only
    │                     folder, disk full (exit 2)
    └── RemoteError       the QBO API answered with something unusable
        ├── TransientError  worth retrying: 429, 5xx, connection trouble
        └── PermanentError  the remote refused this request: a Fault, 4xx

Library errors (``OSError``, ``csv.Error``, ``httpx.HTTPError``) are turned into
these at the boundary of the module that meets them.
"""

from __future__ import annotations

from pathlib import Path


class QboAttachError(Exception):
    """Base of every error raised by qbo-attach on purpose."""

    exit_code = 1


class UsageError(QboAttachError):
    """Bad option, configuration or input; the message says what to do."""

    exit_code = 2


class InputError(UsageError):
    """An input file that cannot be used, located to the file, row and column."""

    def __init__(
        self,
        path: Path | str,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.row = row
        self.column = column
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


class AuthError(UsageError):
    """No usable OAuth sign-in for a real target; the message says what to run.

    Its message never holds a token or the client secret.
    """


class LockError(QboAttachError):
    """Another process is writing the same run log."""

    exit_code = 2


class StorageError(QboAttachError):
    """An artifact cannot be written; what was written before stays readable."""

    exit_code = 2

    def __init__(self, path: Path | str, exc: OSError) -> None:
        self.path = Path(path)
        reason = exc.strerror or str(exc)
        super().__init__(
            f"{path}: cannot write ({reason}); make the folder writable or free "
            "some space, then run the same command again"
        )


class RemoteError(QboAttachError):
    """The QBO API answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_code: str = "",
        intuit_tid: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.intuit_tid = intuit_tid
        self.retry_after = retry_after
        # Set by the caller that timed the request, for the run log.
        self.duration_ms: int | None = None


class TransientError(RemoteError):
    """A failure that may pass: throttling, server trouble, a lost connection."""


class PermanentError(RemoteError):
    """The remote refused the request; sending it again gives the same answer."""
