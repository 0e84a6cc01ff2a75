"""A synthetic legacy company: an ``Attach``-style tree and a fake QBO company.

The data looks like a real conversion: desktop TxnIDs (``4-1439202892``) and
ListIDs (``80000004-1424241304``) carrying the legacy prefix in the folder
names, several entity types (some renamed by the conversion, such as a Check
becoming a Purchase), several files per record, a mix of extensions and sizes,
a few ids the conversion did not map, and a few files that should never move
(``Thumbs.db``, empty files, executables).
"""

from __future__ import annotations

import itertools
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qbo_attach.errors import UsageError
from qbo_attach.fake.store import FakeCompany

# A folder marking a tree as synthetic, so demo-data never wipes real files.
MARKER = ".qbo-attach-demo"


@dataclass(frozen=True, slots=True)
class EntityKind:
    folder: str  # how the desktop tree names the type
    qbdt_type: str  # QbdtEntityType in the mapping
    qbo_type: str  # the QBO entity type after conversion
    weight: int  # share of records
    list_element: bool = False  # ListID-style ids rather than TxnIDs


KINDS = (
    EntityKind("Bill", "BILL", "Bill", 30),
    EntityKind("Invoice", "INVOICE", "Invoice", 22),
    EntityKind("Check", "CHECK", "Purchase", 12),
    EntityKind("CreditCardCharge", "CREDITCARDCHARGE", "Purchase", 6),
    EntityKind("PurchaseOrder", "PURCHASEORDER", "PurchaseOrder", 6),
    EntityKind("Estimate", "ESTIMATE", "Estimate", 5),
    EntityKind("SalesReceipt", "SALESRECEIPT", "SalesReceipt", 4),
    EntityKind("JournalEntry", "JOURNALENTRY", "JournalEntry", 4),
    EntityKind("ReceivePayment", "RECEIVEPAYMENT", "Payment", 3),
    EntityKind("Deposit", "DEPOSIT", "Deposit", 2),
    EntityKind("Vendor", "VENDOR", "Vendor", 3, list_element=True),
    EntityKind("Customer", "CUSTOMER", "Customer", 3, list_element=True),
)

# (name pattern, extension, magic bytes, typical size in bytes)
DOCUMENTS = (
    ("scan {date}", "pdf", b"%PDF-1.4\n", 24_000),
    ("invoice_{n}", "pdf", b"%PDF-1.4\n", 18_000),
    ("receipt {date}", "jpg", b"\xff\xd8\xff\xe0", 40_000),
    ("IMG_{n}", "JPG", b"\xff\xd8\xff\xe1", 60_000),
    ("remittance_{n}", "png", b"\x89PNG\r\n\x1a\n", 12_000),
    ("W-9 {date}", "pdf", b"%PDF-1.6\n", 9_000),
    ("contract signed", "docx", b"PK\x03\x04", 30_000),
    ("statement {date}", "xlsx", b"PK\x03\x04", 15_000),
    ("notes", "txt", b"", 800),
    ("fax {date}", "tif", b"II*\x00", 50_000),
)

UNMAPPED_SHARE = 0.02
EXTRA_MAPPING_SHARE = 0.5  # records with no attachments still get mapping rows


@dataclass(slots=True)
class DemoStats:
    files: int = 0
    records: int = 0
    unmapped_records: int = 0
    excluded_files: int = 0
    mapping_rows: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Record:
    kind: EntityKind
    legacy_id: str  # as the mapping spells it, without the tree's prefix
    qbo_id: str
    mapped: bool


def generate(
    files_dir: Path,
    fake_db: Path,
    realm_id: str,
    *,
    attachments: int,
    seed: int,
    prefix: str,
) -> DemoStats:
    """Write the tree and seed the fake company; return what was made."""
    if attachments < 1:
        raise UsageError("--attachments must be at least 1")
    _prepare(files_dir)
    rng = random.Random(seed)
    stats = DemoStats()
    records: list[Record] = []
    for record in _records(rng):
        if stats.files >= attachments:
            break
        _write_record(files_dir, record, rng, prefix, stats, attachments)
        records.append(record)
    _seed_company(fake_db, realm_id, records, rng, stats)
    stats.records = len(records)
    return stats


def _prepare(files_dir: Path) -> None:
    """Empty a tree made by an earlier demo; refuse to touch any other."""
    if files_dir.exists() and any(files_dir.iterdir()):
        if not (files_dir / MARKER).exists():
            raise UsageError(
                f"FILES_DIR {files_dir} is not empty and was not made by demo-data; "
                "point --files-dir at an empty or new folder"
            )
        shutil.rmtree(files_dir)
    files_dir.mkdir(parents=True, exist_ok=True)
    (files_dir / MARKER).mkdir()


def _records(rng: random.Random) -> Iterator[Record]:
    """An endless supply of records, ids unique within the company."""
    weights = [kind.weight for kind in KINDS]
    counters = dict.fromkeys([kind.qbo_type for kind in KINDS], 100)
    used: set[str] = set()
    epoch = 1_262_304_000  # 2010-01-01, when this company file was started
    for index in itertools.count():
        kind = rng.choices(KINDS, weights)[0]
        epoch += rng.randint(60, 4_000)
        legacy_id = _legacy_id(kind, index + 1, epoch)
        while legacy_id in used:
            epoch += 1
            legacy_id = _legacy_id(kind, index + 1, epoch)
        used.add(legacy_id)
        counters[kind.qbo_type] += rng.randint(1, 3)
        mapped = rng.random() >= UNMAPPED_SHARE
        yield Record(kind, legacy_id, str(counters[kind.qbo_type]), mapped)


def _legacy_id(kind: EntityKind, counter: int, epoch: int) -> str:
    if kind.list_element:
        return f"{0x80000000 + counter:08X}-{epoch}"
    return f"{counter:X}-{epoch}"


def _write_record(
    files_dir: Path,
    record: Record,
    rng: random.Random,
    prefix: str,
    stats: DemoStats,
    budget: int,
) -> None:
    folder = files_dir / record.kind.folder / f"{prefix}{record.legacy_id}"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = min(rng.choice((1, 1, 1, 2, 2, 3, 4)), budget - stats.files)
    names: set[str] = set()
    for _ in range(wanted):
        name, content = _document(rng)
        if name in names:
            continue
        names.add(name)
        (folder / name).write_bytes(content)
        stats.files += 1
        stats.bytes += len(content)
    if stats.files < budget and rng.random() < 0.01:
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + rng.randbytes(60))
        stats.files += 1
        stats.excluded_files += 1


def _document(rng: random.Random) -> tuple[str, bytes]:
    """One file's name and bytes; a few are empty or of a type QBO refuses."""
    pattern, ext, magic, typical = rng.choice(DOCUMENTS)
    date = f"{rng.randint(2010, 2024)}-{rng.randint(1, 12):02d}"
    name = pattern.format(date=date, n=rng.randint(1000, 9999)) + f".{ext}"
    roll = rng.random()
    if roll < 0.004:
        return name, b""
    if roll < 0.008:
        return name.rsplit(".", 1)[0] + ".exe", b"MZ" + rng.randbytes(300)
    size = max(len(magic) + 1, int(rng.lognormvariate(0, 0.8) * typical // 8))
    return name, magic + rng.randbytes(size - len(magic))


def _seed_company(
    fake_db: Path,
    realm_id: str,
    records: list[Record],
    rng: random.Random,
    stats: DemoStats,
) -> None:
    """Create the QBO side: every record as an entity, mapping rows for most."""
    extra = [
        Record(
            kind,
            f"{0x100000 + index:X}-{1_600_000_000 + index}",
            str(9000 + index),
            True,
        )
        for index, kind in enumerate(
            rng.choices(KINDS, k=int(len(records) * EXTRA_MAPPING_SHARE))
        )
    ]
    company = FakeCompany(fake_db)
    try:
        company.reset(realm_id)
        everything = records + extra
        company.add_entities(
            realm_id,
            {
                (r.kind.qbo_type, r.qbo_id, f"{r.kind.folder} {r.qbo_id}")
                for r in everything
            },
        )
        mapped = [r for r in everything if r.mapped]
        company.add_mappings(
            realm_id,
            [
                (r.legacy_id, r.kind.qbdt_type, r.qbo_id, r.kind.qbo_type)
                for r in mapped
            ],
        )
    finally:
        company.close()
    stats.mapping_rows = len(mapped)
    stats.unmapped_records = len(records) - sum(r.mapped for r in records)
