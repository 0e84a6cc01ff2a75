"""The whole pipeline over a tree of every awkward case a real folder holds."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import pytest

from qbo_attach import verify
from qbo_attach.inventory import write_inventory
from qbo_attach.layout import Layout
from qbo_attach.qbo.client import open_client
from qbo_attach.records import (
    FORMULA_STARTS,
    InventoryRow,
    RunLogRow,
    VerificationRow,
    read_csv,
)
from qbo_attach.settings import DEFAULT_LAYOUT, Settings
from qbo_attach.upload import Uploader, UploadOptions
from tests import corpus


@pytest.fixture(scope="module")
def migrated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Settings, dict[str, corpus.Expected]]:
    """The corpus, inventoried, verified, disturbed and uploaded once."""
    root = tmp_path_factory.mktemp("corpus")
    settings = Settings(
        data_dir=root / "data",
        files_dir=root / "files",
        log_dir=root / "logs",
        realm_id=corpus.REALM,
    )
    expected = corpus.build(settings)
    write_inventory(
        settings.files_dir, settings.inventory_csv, Layout.parse(DEFAULT_LAYOUT), "80"
    )
    verify.verify(
        settings.inventory_csv,
        settings.mapping_csv,
        settings.verification_log,
        settings.verification_skips,
    )
    corpus.disturb(settings)

    async def upload() -> None:
        async with open_client(settings) as client:
            await Uploader(settings, client, UploadOptions(concurrency=2)).run()

    asyncio.run(upload())
    return settings, expected


def final_statuses(settings: Settings) -> dict[str, tuple[str, str]]:
    """Each file's final status and reason: the uploader's last word, if any."""
    finals: dict[str, tuple[str, str]] = {}
    for path in (settings.verification_log, settings.verification_skips):
        for row in read_csv(path, VerificationRow):
            assert row.file_path not in finals, f"{row.file_path} listed twice"
            finals[row.file_path] = (row.status, row.reason)
    for event in read_csv(settings.runlog, RunLogRow):
        if event.outcome != "started":
            finals[event.file_path] = (event.outcome, event.error)
    return finals


def test_every_file_ends_in_its_expected_status(
    migrated: tuple[Settings, dict[str, corpus.Expected]],
) -> None:
    """Each awkward file gets exactly the status and reason it should."""
    settings, expected = migrated
    finals = final_statuses(settings)
    assert set(finals) == set(expected)
    for path, want in expected.items():
        status, reason = finals[path]
        assert status == want.status, f"{path!r}: {status} ({reason})"
        assert want.reason in reason, f"{path!r}: {reason!r}"


def test_inventory_reads_back_the_names_on_disk(
    migrated: tuple[Settings, dict[str, corpus.Expected]],
) -> None:
    """Names with commas, quotes, breaks and formulas come back from the CSV."""
    settings, expected = migrated
    names = {row.file_path for row in read_csv(settings.inventory_csv, InventoryRow)}
    assert names == set(expected)


def test_no_cell_of_any_csv_runs_as_a_formula(
    migrated: tuple[Settings, dict[str, corpus.Expected]],
) -> None:
    """Every CSV the tool wrote is safe to open in a spreadsheet."""
    settings, _ = migrated
    written = [
        settings.inventory_csv,
        settings.mapping_csv,
        settings.verification_log,
        settings.verification_skips,
        settings.runlog,
        settings.errors_log,
    ]
    for path in written:
        with path.open(encoding="utf-8", newline="") as handle:
            for cells in csv.reader(handle):
                risky = [c for c in cells if c.startswith(FORMULA_STARTS[:-1])]
                assert risky == [], f"{path.name}: {risky}"


def test_nothing_outside_files_dir_was_uploaded(
    migrated: tuple[Settings, dict[str, corpus.Expected]],
) -> None:
    """The link to /etc/hostname was reported, never read or sent."""
    settings, _ = migrated
    events = list(read_csv(settings.runlog, RunLogRow))
    assert all("link.pdf" not in event.file_path for event in events)
    assert all("F0-1" not in event.file_path for event in events)


def test_a_second_run_changes_nothing(
    migrated: tuple[Settings, dict[str, corpus.Expected]],
) -> None:
    """Rerun over the corpus: uploaded files skip, failed ones fail the same way."""
    settings, _ = migrated

    async def upload() -> dict[str, int]:
        async with open_client(settings) as client:
            summary = await Uploader(settings, client, UploadOptions()).run()
            return dict(summary.outcomes)

    outcomes = asyncio.run(upload())
    uploaded = sum(1 for want in corpus.CASES if want.expected.status == "success")
    assert outcomes == {
        "skipped_already_uploaded": uploaded,
        "file_changed": 1,
        "file_missing": 1,
    }


def test_names_as_shown_keep_their_bytes(tmp_path: Path) -> None:
    """A name that is not UTF-8 is shown with escapes, not dropped."""
    assert corpus.shown(b"caf\xe9.pdf") == "caf\\xe9.pdf"
