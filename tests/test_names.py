"""Any file name a folder can hold survives inventory, CSVs and upload."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbo_attach.fake.app import create_app
from qbo_attach.fake.store import FakeCompany
from qbo_attach.inventory import scan, write_inventory
from qbo_attach.layout import Layout
from qbo_attach.qbo.client import QboClient
from qbo_attach.records import InventoryRow, read_csv
from qbo_attach.settings import DEFAULT_LAYOUT

# What a POSIX folder can hold: no slash, no NUL, at most 255 bytes; "." and
# ".." are the folder itself. Surrogates cannot be encoded at all.
NAMES = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=["Cs"], blacklist_characters="/\x00"
        ),
        min_size=1,
        max_size=60,
    )
    .filter(lambda name: name not in (".", ".."))
    .filter(lambda name: len(name.encode()) <= 250)
)
LAYOUT = Layout.parse(DEFAULT_LAYOUT)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(name=NAMES)
def test_inventory_csv_gives_back_the_name_on_disk(name: str) -> None:
    """A file's name and path read back from the inventory CSV as on disk."""
    with tempfile.TemporaryDirectory() as folder:
        files = Path(folder) / "files"
        record = files / "Bill" / "804-1439202892"
        record.mkdir(parents=True)
        (record / name).write_bytes(b"%PDF")
        out = Path(folder) / "inventory.csv"
        write_inventory(files, out, LAYOUT, "80")
        rows = list(read_csv(out, InventoryRow))
        assert [(r.file_name, r.file_path) for r in rows] == [
            (name, f"Bill/804-1439202892/{name}")
        ]
        assert rows == list(scan(files, LAYOUT, "80"))


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(stem=NAMES)
def test_upload_metadata_carries_the_name_unchanged(stem: str) -> None:
    """The attachable QBO stores has exactly the file's name."""
    name = stem + ".pdf"  # QBO refuses names without an extension it accepts
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "fake.sqlite"
        company = FakeCompany(db)
        company.add_entities("1", [("Bill", "75", "a bill")])
        company.close()

        async def go() -> None:
            transport = httpx.ASGITransport(app=create_app(db))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://fake.test",
                headers={"Authorization": "Bearer t"},
            ) as http:
                await QboClient(http, "1").upload(
                    entity_type="Bill",
                    entity_id="75",
                    file_name=name,
                    content_type="application/pdf",
                    content=b"%PDF",
                    request_id="r",
                )
                found = await QboClient(http, "1").attachables_of("Bill", "75")
                assert [a.file_name for a in found] == [name]

        asyncio.run(go())


def test_names_that_are_not_utf8_are_flagged_not_lost(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are shown escaped and the row says why."""
    record = tmp_path / "Bill" / "804-1439202892"
    record.mkdir(parents=True)
    with open(os.path.join(os.fsencode(record), b"r\xe9sum\xe9.pdf"), "wb") as f:
        f.write(b"%PDF")
    (row,) = list(scan(tmp_path, LAYOUT, "80"))
    assert row.file_name == "r\\xe9sum\\xe9.pdf"
    assert "not UTF-8" in row.problem
