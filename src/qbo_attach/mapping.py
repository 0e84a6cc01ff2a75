"""Download the conversion's id mapping (``QbdtEntityIdMapping``) from QBO.

The mapping ties each desktop id to its new QBO record. QBO exposes it only
through the query API, a page of at most 1000 rows at a time.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbo_attach.errors import PermanentError, UsageError
from qbo_attach.ids import normalize_entity_type, normalize_legacy_id
from qbo_attach.qbo.client import QboClient
from qbo_attach.records import CsvWriter, MappingRow, columns

ENTITY = "QbdtEntityIdMapping"


@dataclass(slots=True)
class MappingStats:
    rows: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


def mapping_row(remote: dict[str, Any], prefix: str) -> MappingRow:
    """A mapping row in the join form, keeping the desktop id as QBO gave it."""
    exportable_id = str(remote.get("QbdtExportableId", ""))
    return MappingRow(
        legacy_txnid_norm=normalize_legacy_id(exportable_id, prefix),
        legacy_entity_type=normalize_entity_type(str(remote.get("QbdtEntityType", ""))),
        qbo_entity_type=str(remote.get("QboEntityType", "")),
        qbo_entity_id=str(remote.get("QboEntityId", "")),
        qbdt_exportable_id=exportable_id,
    )


async def fetch_mapping(client: QboClient, prefix: str) -> AsyncIterator[MappingRow]:
    """Every mapping row of the company, page by page."""
    try:
        async for page in client.query_pages(ENTITY):
            for remote in page:
                yield mapping_row(remote, prefix)
    except PermanentError as exc:
        raise UsageError(_no_mapping_help(f"the query was refused ({exc})")) from exc


async def download_mapping(client: QboClient, out: Path, prefix: str) -> MappingStats:
    """Write the company's mapping to ``out``; keep any old file if none comes.

    Rows stream to a temporary file renamed over ``out`` at the end, so an
    interrupted download never leaves half a mapping behind.
    """
    stats = MappingStats()
    tmp = out.with_name(out.name + ".tmp")
    with CsvWriter(tmp, MappingRow) as writer:
        async for row in fetch_mapping(client, prefix):
            writer.write(row)
            stats.rows += 1
            stats.by_type[row.qbo_entity_type] += 1
    if stats.rows == 0:
        tmp.unlink()
        raise UsageError(
            _no_mapping_help("the company has no QbdtEntityIdMapping rows")
        )
    os.replace(tmp, out)
    return stats


def _no_mapping_help(cause: str) -> str:
    return (
        f"cannot download the id mapping: {cause}. Companies converted before "
        "mid-2015, or whose conversion did not record it, have none. Supply "
        "DATA_DIR/mapping_export.csv by hand with the columns "
        f"{','.join(columns(MappingRow))}, then run `qbo-attach run --no-mapping` "
        "(or inventory, verify and upload one by one)."
    )
