"""A legacy tree holding what fifteen years of a real Attach folder hold.

``build`` makes every awkward case in a temporary folder, in the default
layout, with the mapping and fake company that go with it, and returns what
the pipeline must conclude about each file: its final status (verification
status, or the uploader's outcome for files that pass) and a fragment of the
reason a person reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qbo_attach.fake.store import FakeCompany
from qbo_attach.records import MappingRow, write_csv
from qbo_attach.settings import Settings

REALM = "4620816365"


@dataclass(frozen=True, slots=True)
class Expected:
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    """One awkward thing on disk, in its own record folder unless shared."""

    id: str
    name: bytes  # bytes: some names are not UTF-8
    make: Callable[[Path], None]
    expected: Expected
    mapped: bool = True


def content(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def sparse(size: int) -> Callable[[Path], None]:
    """A file of ``size`` bytes that takes no room on disk."""

    def make(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)

    return make


def symlink(target: str) -> Callable[[Path], None]:
    return lambda path: path.symlink_to(target)


def fifo(path: Path) -> None:
    os.mkfifo(path)


PDF = content(b"%PDF-1.4 corpus")
OK = Expected("success")

CASES = [
    Case("A1", b"comma, in name.pdf", PDF, OK),
    Case("A2", b'quote "inside".pdf', PDF, OK),
    Case("A3", b"new\nline.pdf", PDF, OK),
    Case("A4", b"tab\tname.pdf", PDF, OK),
    Case("A5", b" leading space.pdf", PDF, OK),
    Case("A6", b"trailing space .pdf", PDF, OK),
    Case("A7", b"x" * 200 + b".pdf", PDF, OK),
    Case("A8", b"Case.pdf", PDF, OK),
    Case("A8", b"case.pdf", content(b"%PDF-1.4 other"), OK),
    Case("A9", b"=HYPERLINK(1).pdf", PDF, OK),
    Case("AA", b"+1 receipt.pdf", PDF, OK),
    Case("AB", b"-2 receipt.pdf", PDF, OK),
    Case("AC", b"@SUM(A1).pdf", PDF, OK),
    Case("AD", b"caf\xe9.pdf", PDF, Expected("file_unreadable", "not UTF-8")),
    Case("AE", b"empty.pdf", content(b""), Expected("file_empty", "0 bytes")),
    Case(
        "AF",
        b"huge.pdf",
        sparse(100 * 1024 * 1024 + 1),
        Expected("file_too_large", "over QBO's limit"),
    ),
    Case("B0", b"setup.exe", PDF, Expected("unsupported_file_type", ".exe")),
    Case("B1", b"README", PDF, Expected("unsupported_file_type", "no extension")),
    Case("B2", b"Thumbs.db", PDF, Expected("skipped_by_config", "Thumbs.db")),
    Case("B3", b".DS_Store", PDF, Expected("skipped_by_config", ".DS_Store")),
    Case("B4", b"desktop.ini", PDF, Expected("skipped_by_config", "desktop.ini")),
    Case("B5", b"~$lock.docx", PDF, Expected("skipped_by_config", "~$")),
    Case(
        "B6",
        b"link.pdf",
        symlink("/etc/hostname"),
        Expected("file_unreadable", "symbolic link"),
    ),
    Case(
        "B7",
        b"dangling.pdf",
        symlink("nowhere.pdf"),
        Expected("file_unreadable", "symbolic link"),
    ),
    Case(
        "B8",
        b"loop.pdf",
        symlink("loop.pdf"),
        Expected("file_unreadable", "symbolic link"),
    ),
    Case("B9", b"pipe.pdf", fifo, Expected("file_unreadable", "named pipe")),
    Case(
        "BA",
        b"unmapped.pdf",
        PDF,
        Expected("missing_mapping", "no mapping row"),
        mapped=False,
    ),
    Case("BB", b"changed.pdf", PDF, Expected("file_changed", "content differs")),
    Case("BC", b"vanished.pdf", PDF, Expected("file_missing", "is gone")),
]

# Outside any record folder: the layout does not fit, or the id is empty.
STRAY = b"Bill/stray.pdf"
EMPTY_ID = b"Bill/80/nothing.pdf"
FOLDER_LINK = b"Bill/80F0-1"


def path_of(case: Case) -> bytes:
    return b"Bill/80" + case.id.encode() + b"-1439202892/" + case.name


def shown(raw: bytes) -> str:
    """A path as the inventory writes it (not UTF-8 bytes as \\x escapes)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("ascii", "backslashreplace")


def build(settings: Settings) -> dict[str, Expected]:
    """Make the tree, the mapping and the fake company; return the expectations."""
    root = os.fsencode(settings.files_dir)
    expected: dict[str, Expected] = {}
    for case in CASES:
        path = os.path.join(root, path_of(case))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        case.make(Path(os.fsdecode(path)))
        expected[shown(path_of(case))] = case.expected
    for raw, outcome in (
        (STRAY, Expected("invalid_legacy_id", "does not match FILES_LAYOUT")),
        (EMPTY_ID, Expected("invalid_legacy_id", "cannot name a desktop record")),
    ):
        path = os.path.join(root, raw)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        PDF(Path(os.fsdecode(path)))
        expected[raw.decode()] = outcome
    os.symlink(os.path.join(root, b"Bill"), os.path.join(root, FOLDER_LINK))
    expected[FOLDER_LINK.decode()] = Expected("file_unreadable", "symbolic link")
    _seed(settings)
    return expected


def _seed(settings: Settings) -> None:
    ids = sorted({case.id for case in CASES if case.mapped})
    rows = [
        MappingRow(
            f"{legacy}-1439202892", "BILL", "Bill", str(n), f"{legacy}-1439202892"
        )
        for n, legacy in enumerate(ids, start=1)
    ]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    write_csv(settings.mapping_csv, MappingRow, rows)
    company = FakeCompany(settings.fake_db)
    try:
        company.add_entities(
            REALM,
            [("Bill", row.qbo_entity_id, f"Bill {row.qbo_entity_id}") for row in rows],
        )
    finally:
        company.close()


def disturb(settings: Settings) -> None:
    """What happens between inventory and upload: a file edited, one deleted."""
    bill = settings.files_dir / "Bill"
    (bill / "80BB-1439202892" / "changed.pdf").write_bytes(b"%PDF-1.4 CORPUS")
    (bill / "80BC-1439202892" / "vanished.pdf").unlink()
