"""The command line, end to end over a small synthetic company."""

from __future__ import annotations

import csv
import errno
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from qbo_attach import upload
from qbo_attach.cli import main
from qbo_attach.fake.store import FakeCompany
from qbo_attach.qbo import limits
from qbo_attach.settings import FAKE_REALM_ID

COMMANDS = [
    "demo-data",
    "mapping",
    "inventory",
    "verify",
    "upload",
    "run",
    "demo",
    "fake-server",
]


def invoke(tmp_path: Path, *args: str) -> Result:
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "FILES_DIR": str(tmp_path / "files"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_help_lists_every_command() -> None:
    """--help names each command, and each command has its own --help."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
        assert CliRunner().invoke(main, [command, "--help"]).exit_code == 0


def test_whole_pipeline_stage_by_stage(tmp_path: Path) -> None:
    """Each stage runs, prints its target, and the logs add up."""
    assert invoke(tmp_path, "demo-data", "--attachments", "300").exit_code == 0
    for stage in ("mapping", "inventory", "verify"):
        result = invoke(tmp_path, stage)
        assert result.exit_code == 0, result.output
        assert result.output.startswith("target: fake QBO in-process")
        assert f"realm: {FAKE_REALM_ID}" in result.output
    result = invoke(tmp_path, "upload")
    assert result.exit_code == 0, result.output

    inventory = rows(tmp_path / "data" / "attachments_inventory.csv")
    log = rows(tmp_path / "logs" / "mapping_verification_log.csv")
    skips = rows(tmp_path / "logs" / "mapping_verification_skips.csv")
    assert len(inventory) == 300
    assert sorted(r["file_path"] for r in log + skips) == sorted(
        r["file_path"] for r in inventory
    )
    statuses = Counter(r["status"] for r in log)
    assert statuses["missing_mapping"] > 0
    runlog = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    finals = Counter(r["outcome"] for r in runlog if r["outcome"] != "started")
    assert finals == {"success": statuses["ok"]}
    assert f"uploaded {statuses['ok']}," in result.output


def test_rerun_attaches_nothing_new(tmp_path: Path) -> None:
    """A second run skips everything; the fake holds one attachable per key."""
    invoke(tmp_path, "demo-data", "--attachments", "60")
    first = invoke(tmp_path, "run")
    assert first.exit_code == 0, first.output
    second = invoke(tmp_path, "run")
    assert second.exit_code == 0, second.output
    ok = sum(
        r["status"] == "ok"
        for r in rows(tmp_path / "logs" / "mapping_verification_log.csv")
    )
    assert "uploaded 0," in second.output
    dups = rows(tmp_path / "logs" / "qbo_attach_dups.csv")
    assert len(dups) == ok
    company = FakeCompany(tmp_path / "data" / "fake_qbo.sqlite")
    try:
        keys = Counter(
            (a["EntityType"], a["EntityId"], a["FileName"])
            for a in company.attachables(FAKE_REALM_ID)
        )
    finally:
        company.close()
    assert len(keys) == ok
    assert set(keys.values()) == {1}


class FakeTime:
    """A clock that moves only when someone waits on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def test_flaky_fake_still_uploads_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a seeded 20% failure rate, retries still get every file through."""
    fake_time = FakeTime()
    monkeypatch.setattr(upload, "backoff_sleep", fake_time.sleep)
    monkeypatch.setattr(limits, "pause", fake_time.sleep)
    monkeypatch.setattr(limits, "now", fake_time.clock)
    invoke(tmp_path, "demo-data", "--attachments", "40")
    result = invoke(
        tmp_path,
        "run",
        "--failure-rate",
        "0.2",
        "--fake-seed",
        "3",
        "--max-attempts",
        "8",
    )
    assert result.exit_code == 0, result.output
    assert fake_time.waits
    runlog = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    assert any(r["outcome"] == "error" for r in runlog)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("legacy_txnid_norm,qbo_entity_id\n1,2\n", "column 'legacy_entity_type'"),
        ("", "empty"),
        ("\x00\x01binary", "binary file"),
    ],
    ids=["missing-column", "empty", "binary"],
)
def test_bad_mapping_file_exits_2(tmp_path: Path, content: str, fragment: str) -> None:
    """A bad mapping stops verify with exit 2, naming the file and the problem."""
    invoke(tmp_path, "demo-data", "--attachments", "10")
    invoke(tmp_path, "inventory")
    (tmp_path / "data" / "mapping_export.csv").write_text(content)
    result = invoke(tmp_path, "verify")
    assert result.exit_code == 2
    assert "mapping_export.csv" in result.output
    assert fragment in result.output


def test_bad_inventory_header_exits_2(tmp_path: Path) -> None:
    """An inventory with a wrong header names the file and the missing column."""
    invoke(tmp_path, "demo-data", "--attachments", "10")
    invoke(tmp_path, "mapping")
    (tmp_path / "data" / "attachments_inventory.csv").write_text("path,size\nx,1\n")
    result = invoke(tmp_path, "verify")
    assert result.exit_code == 2
    assert (
        "attachments_inventory.csv, row 1, column 'legacy_txnid_norm'" in result.output
    )


def test_verify_before_inventory_says_what_to_run(tmp_path: Path) -> None:
    """A missing input names the command that makes it."""
    result = invoke(tmp_path, "verify")
    assert result.exit_code == 2
    assert "qbo-attach" in result.output


def test_unknown_target_exits_2(tmp_path: Path) -> None:
    """An unusable --target is a usage error naming the option."""
    result = invoke(tmp_path, "mapping", "--target", "nowhere")
    assert result.exit_code == 2
    assert "--target 'nowhere'" in result.output


def test_demo_data_refuses_a_real_tree(tmp_path: Path) -> None:
    """demo-data never wipes a folder it did not make."""
    precious = tmp_path / "files" / "Bill" / "80AB-1" / "real.pdf"
    precious.parent.mkdir(parents=True)
    precious.write_bytes(b"%PDF")
    result = invoke(tmp_path, "demo-data")
    assert result.exit_code == 2
    assert precious.exists()


def test_dry_run_plans_without_uploading(tmp_path: Path) -> None:
    """upload --dry-run prints the plan and writes no run log."""
    invoke(tmp_path, "demo-data", "--attachments", "20")
    invoke(tmp_path, "mapping")
    invoke(tmp_path, "inventory")
    invoke(tmp_path, "verify")
    result = invoke(tmp_path, "upload", "--dry-run", "--limit", "5")
    assert result.exit_code == 0
    assert "upload 5" in result.output
    assert not (tmp_path / "logs" / "qbo_attach_runlog.csv").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_against_fake_server_over_http(tmp_path: Path) -> None:
    """demo-data, fake-server in another process, then run over loopback HTTP."""
    invoke(tmp_path, "demo-data", "--attachments", "30")
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [sys.executable, "-m", "qbo_attach", "fake-server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/")
        target = f"http://127.0.0.1:{port}"
        result = invoke(
            tmp_path, "run", "--target", target, "--rate-per-minute", "100000"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert result.exit_code == 0, result.output
    assert f"target: http://127.0.0.1:{port}" in result.output
    company = FakeCompany(tmp_path / "data" / "fake_qbo.sqlite")
    try:
        assert company.attachables(FAKE_REALM_ID)
    finally:
        company.close()


def wait_for(url: str) -> None:
    """Poll until the server accepts connections (its start-up, not a retry)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def test_log_dir_that_cannot_be_written_exits_2(tmp_path: Path) -> None:
    """A LOG_DIR that is not a writable folder stops verify with exit 2."""
    invoke(tmp_path, "demo-data", "--attachments", "10")
    invoke(tmp_path, "mapping")
    invoke(tmp_path, "inventory")
    (tmp_path / "logs").write_text("a file where the log folder should be")
    result = invoke(tmp_path, "verify")
    assert result.exit_code == 2
    assert "cannot write" in result.output
    assert "logs" in result.output


def test_disk_full_mid_upload_exits_2_and_the_next_run_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk stops the upload cleanly; the run log stays usable."""
    invoke(tmp_path, "demo-data", "--attachments", "30")
    for stage in ("mapping", "inventory", "verify"):
        invoke(tmp_path, stage)
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_until_full(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_until_full)
    full = invoke(tmp_path, "upload", "--concurrency", "1")
    assert full.exit_code == 2
    assert "No space left on device" in full.output
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = invoke(tmp_path, "upload")
    assert again.exit_code == 0, again.output
    check = invoke(tmp_path, "check")
    assert check.exit_code == 0, check.output


def test_report_export_and_metrics_after_a_run(tmp_path: Path) -> None:
    """After a run: metrics.prom, then report.html and warehouse tables on demand."""
    invoke(tmp_path, "demo-data", "--attachments", "40")
    assert invoke(tmp_path, "run").exit_code == 0
    assert (tmp_path / "logs" / "metrics.prom").exists()
    report = invoke(tmp_path, "report")
    assert report.exit_code == 0, report.output
    assert (tmp_path / "logs" / "report.html").exists()
    exported = invoke(tmp_path, "export", "--to", str(tmp_path / "warehouse"))
    assert exported.exit_code == 0, exported.output
    assert "attachment_run_log:" in exported.output
    assert (tmp_path / "warehouse" / "attachment_inventory.parquet").exists()


def test_max_missing_stops_before_any_upload(tmp_path: Path) -> None:
    """More unmapped files than --max-missing: exit 1, nothing uploaded."""
    invoke(tmp_path, "demo-data", "--attachments", "300")
    result = invoke(tmp_path, "run", "--max-missing", "0")
    assert result.exit_code == 1
    assert "--max-missing 0" in result.output
    assert not (tmp_path / "logs" / "qbo_attach_runlog.csv").exists()


def test_max_failures_stops_handing_out_files(tmp_path: Path) -> None:
    """Past --max-failures no new file is tried; the run exits 1."""
    invoke(tmp_path, "demo-data", "--attachments", "30")
    for stage in ("mapping", "inventory", "verify"):
        invoke(tmp_path, stage)
    result = invoke(
        tmp_path,
        "upload",
        "--failure-rate",
        "1",
        "--max-attempts",
        "1",
        "--max-failures",
        "2",
        "--concurrency",
        "1",
    )
    assert result.exit_code == 1
    assert "failed 3" in result.output
    assert "not attempted" in result.output


def test_verify_again_reports_drift(tmp_path: Path) -> None:
    """A second verify after a file vanished says what changed."""
    invoke(tmp_path, "demo-data", "--attachments", "20")
    for stage in ("mapping", "inventory", "verify"):
        invoke(tmp_path, stage)
    gone = rows(tmp_path / "data" / "attachments_inventory.csv")[0]["file_path"]
    (tmp_path / "files" / gone).unlink()
    invoke(tmp_path, "inventory")
    result = invoke(tmp_path, "verify")
    assert result.exit_code == 0, result.output
    assert "Changes since the previous verification" in result.output
    assert f"vanished: {gone}" in result.output


def test_json_log_has_one_event_per_file_and_no_secret(tmp_path: Path) -> None:
    """--log-format json: a parseable event per file with its key and outcome."""
    invoke(tmp_path, "demo-data", "--attachments", "40")
    log_file = tmp_path / "events.jsonl"
    result = invoke(
        tmp_path, "--log-format", "json", "--log-file", str(log_file), "run"
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in log_file.read_text().splitlines()]
    outcomes = [e for e in events if e["event"] == "attachment_outcome"]
    ok = sum(
        r["status"] == "ok"
        for r in rows(tmp_path / "logs" / "mapping_verification_log.csv")
    )
    assert len(outcomes) == ok
    first = outcomes[0]
    assert {"qbo_entity_type", "qbo_entity_id", "file_name", "outcome"} <= set(first)
    assert first["outcome"] == "success"
    assert isinstance(first["duration_ms"], int)
    assert "Bearer" not in log_file.read_text()
