"""The ``check`` stage: compare what is on the remote with what the logs expect.

Run at the end of a migration, like ``rclone check``. It lists every
attachable of the realm a page at a time (never one query per record), groups
them by the idempotency key ``(qbo_entity_type, qbo_entity_id, file_name)``,
and compares them with the verified files of the verification log and the
attachables the run log says this migration created. Each disagreement is one
row of ``LOG_DIR/qbo_attach_check.csv``:

``missing``
    a verified file with no attachable on the remote;
``duplicate``
    a verified file with more than one attachable on the remote;
``size_mismatch``
    an attachable of a verified file whose size differs from the file's;
``unexpected``
    an attachable that no verified file accounts for. It is reported but does
    not fail the check: Intuit's Doc Center and people put files in QBO too.

Remote errors propagate unchanged; retrying is the caller's decision.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from qbo_attach import runlog
from qbo_attach.qbo.client import Attachable, QboClient
from qbo_attach.records import CheckRow, write_csv
from qbo_attach.runlog import Key, RunLogIndex
from qbo_attach.settings import Settings
from qbo_attach.upload import verified_rows

log = logging.getLogger(__name__)

MISSING = "missing"
DUPLICATE = "duplicate"
UNEXPECTED = "unexpected"
SIZE_MISMATCH = "size_mismatch"
FINDINGS = (MISSING, DUPLICATE, SIZE_MISMATCH, UNEXPECTED)
# Findings that say the migration itself went wrong; the others only inform.
FAILING = frozenset({MISSING, DUPLICATE, SIZE_MISMATCH})


class Local(NamedTuple):
    """What check needs of one verified file; a tuple keeps 170,000 of them small."""

    size_bytes: int | None
    file_path: str


class Remote(NamedTuple):
    """What check needs of one remote attachable under one key."""

    attachable_id: str
    size: int | None


@dataclass(slots=True)
class CheckSummary:
    """How many attachables were compared, and what disagreed."""

    remote_attachables: int  # attachables listed on the remote
    expected: int  # verified-ok keys in the verification log
    findings: Counter[str] = field(default_factory=Counter)

    @property
    def exit_code(self) -> int:
        """1 when the migration left something wrong on the remote, else 0."""
        return 1 if any(self.findings[name] for name in FAILING) else 0


@dataclass(slots=True)
class RemoteState:
    """The realm's attachables grouped by key, and how many were listed."""

    by_key: dict[Key, list[Remote]] = field(default_factory=dict)
    listed: int = 0

    def add(self, body: dict[str, object]) -> None:
        self.listed += 1
        # An attachable linked to several records counts under each of them.
        for ref in Attachable.from_json(body):
            key = (ref.entity_type, ref.entity_id, ref.file_name)
            self.by_key.setdefault(key, []).append(Remote(ref.attachable_id, ref.size))


async def check(settings: Settings, client: QboClient) -> CheckSummary:
    """Compare the remote with the logs; write the findings to the check log.

    Duplicates are reported one row per extra attachable: of the attachables
    that share a verified key, the one the run log recorded stays unreported
    (or, when the run log recorded none of them, the oldest), and every other
    one gets a ``duplicate`` row whose detail lists all their ids. Each
    attachable of a verified key is also compared by size on its own, so an
    extra copy of the wrong size gets both rows. Attachables of keys that are
    not verified files are each ``unexpected``, never ``duplicate``: copies the
    migration did not make are not its failure.

    Raises ``UsageError`` when the verification log is absent, before any call
    to the remote, and lets ``TransientError`` and ``PermanentError`` through.
    """
    expected = _expected(settings.verification_log)
    index = runlog.build_index(settings.runlog)
    remote = await _list_remote(client)
    rows = sorted(_findings(expected, index, remote.by_key), key=_order)
    write_csv(settings.check_log, CheckRow, rows)
    summary = CheckSummary(
        remote_attachables=remote.listed,
        expected=len(expected),
        findings=Counter(row.finding for row in rows),
    )
    log.info(
        "check: %d attachables listed, %d verified files expected, findings %s",
        summary.remote_attachables,
        summary.expected,
        dict(summary.findings),
    )
    return summary


def _expected(path: Path) -> dict[Key, Local]:
    """The verified files by key; verify guarantees each key appears once."""
    expected: dict[Key, Local] = {}
    for row in verified_rows(path):
        expected.setdefault(row.key, Local(row.size_bytes, row.file_path))
    return expected


async def _list_remote(client: QboClient) -> RemoteState:
    state = RemoteState()
    async for page in client.query_pages("Attachable"):
        for body in page:
            state.add(body)
    return state


def _findings(
    expected: dict[Key, Local],
    index: RunLogIndex,
    remote: dict[Key, list[Remote]],
) -> Iterator[CheckRow]:
    recorded_keys = {id_: key for key, id_ in index.attached.items()}
    missing = [key for key in expected if key not in remote]
    whereabouts = _whereabouts(remote, {index.attached.get(key) for key in missing})
    for key in missing:
        yield _missing(key, expected[key], index, whereabouts)
    for key, found in remote.items():
        local = expected.get(key)
        if local is None:
            yield from _unexpected(key, found, recorded_keys)
            continue
        yield from _duplicates(key, local, found, index.attached.get(key))
        yield from _size_mismatches(key, local, found)


def _whereabouts(
    remote: dict[Key, list[Remote]], wanted: set[str | None]
) -> dict[str, Key]:
    """Where the wanted attachables sit now, for ids listed on the remote."""
    return {
        attachable.attachable_id: key
        for key, found in remote.items()
        for attachable in found
        if attachable.attachable_id in wanted
    }


def _missing(
    key: Key, local: Local, index: RunLogIndex, whereabouts: dict[str, Key]
) -> CheckRow:
    recorded = index.attached.get(key, "")
    if not recorded:
        detail = _never_attached(index.last_outcome.get(key))
    elif recorded in whereabouts:
        now = _describe(whereabouts[recorded])
        detail = (
            f"lost after upload: the run log says attachable {recorded} was attached "
            f"to this record, but it is now linked to {now}"
        )
    else:
        detail = (
            f"lost after upload: the run log says attachable {recorded} was attached "
            "to this record, but the remote no longer lists it (deleted)"
        )
    return _row(MISSING, key, local, None, detail, attachable_id=recorded)


def _never_attached(last_outcome: str | None) -> str:
    if last_outcome is None:
        return "not uploaded yet: the run log has no attempt for this file"
    if last_outcome == runlog.STARTED:
        return (
            "not uploaded yet: the last attempt started and recorded no outcome; "
            "run upload again to reconcile it"
        )
    return (
        f"not uploaded yet: the last attempt ended {last_outcome!r}; "
        "see qbo_attach_errors.csv"
    )


def _duplicates(
    key: Key, local: Local, found: list[Remote], recorded: str | None
) -> Iterator[CheckRow]:
    if len(found) < 2:
        return
    ids = sorted((attachable.attachable_id for attachable in found), key=_natural)
    if recorded in ids:
        kept, why = recorded, "the run log recorded"
    else:
        kept, why = ids[0], "the oldest"
    detail = (
        f"{len(ids)} attachables for this record and file name: {', '.join(ids)}; "
        f"{kept} is {why}, this one is extra"
    )
    for attachable in found:
        if attachable.attachable_id != kept:
            yield _row(DUPLICATE, key, local, attachable, detail)


def _size_mismatches(
    key: Key, local: Local, found: Iterable[Remote]
) -> Iterator[CheckRow]:
    if local.size_bytes is None:
        return
    for attachable in found:
        if attachable.size is not None and attachable.size != local.size_bytes:
            detail = (
                f"the remote holds {attachable.size} bytes, the verified file "
                f"{local.size_bytes}"
            )
            yield _row(SIZE_MISMATCH, key, local, attachable, detail)


def _unexpected(
    key: Key, found: list[Remote], recorded_keys: dict[str, Key]
) -> Iterator[CheckRow]:
    for attachable in found:
        detail = _stranger(key, attachable.attachable_id, recorded_keys)
        if len(found) > 1:
            detail += f"; one of {len(found)} attachables with this key"
        yield _row(UNEXPECTED, key, Local(None, ""), attachable, detail)


def _stranger(key: Key, attachable_id: str, recorded_keys: dict[str, Key]) -> str:
    """Why an attachable that no verified file accounts for may be there."""
    recorded = recorded_keys.get(attachable_id)
    if recorded == key:
        return (
            "the run log recorded this upload, but the verification log no longer "
            "lists its file as ok"
        )
    if recorded is not None:
        return (
            f"the run log recorded this attachable for {_describe(recorded)}; "
            "it was moved or renamed on the remote since"
        )
    if not key[0]:
        return "linked to no record"
    return (
        "not from this migration: the run log never recorded it (Doc Center, "
        "or added by hand)"
    )


def _row(
    finding: str,
    key: Key,
    local: Local,
    attachable: Remote | None,
    detail: str,
    *,
    attachable_id: str = "",
) -> CheckRow:
    entity_type, entity_id, file_name = key
    return CheckRow(
        finding=finding,
        qbo_entity_type=entity_type,
        qbo_entity_id=entity_id,
        file_name=file_name,
        qbo_attachable_id=attachable.attachable_id if attachable else attachable_id,
        remote_size=attachable.size if attachable else None,
        local_size=local.size_bytes,
        file_path=local.file_path,
        detail=detail,
    )


def _describe(key: Key) -> str:
    entity_type, entity_id, file_name = key
    if not entity_type:
        return f"no record, as {file_name!r}"
    return f"{entity_type} {entity_id} as {file_name!r}"


def _natural(text: str) -> tuple[int, int, str, str]:
    """Order ids as numbers when they are numbers: Invoice 9 before Invoice 10."""
    digits = text.lstrip("0")
    if text.isdigit():
        return (0, len(digits), digits, text)
    return (1, 0, "", text)


def _order(
    row: CheckRow,
) -> tuple[int, str, tuple[int, int, str, str], str, tuple[int, int, str, str]]:
    return (
        FINDINGS.index(row.finding),
        row.qbo_entity_type,
        _natural(row.qbo_entity_id),
        row.file_name,
        _natural(row.qbo_attachable_id),
    )


__all__ = ["FINDINGS", "CheckSummary", "check"]
