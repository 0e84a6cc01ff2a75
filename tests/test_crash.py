"""Exactly once under crashes: SIGKILL the uploader at random moments.

The uploader and the fake QBO run in separate processes, as in production:
the fake keeps serving while uploader after uploader is killed mid-run. The
kills are real, so this test waits for real processes; it never sleeps to
stand in for a retry or a backoff.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from click.testing import CliRunner

from qbo_attach.cli import main
from qbo_attach.settings import FAKE_REALM_ID
from tests.test_cli import free_port, rows, wait_for

FILES = 240
QBO_ATTACH = [sys.executable, "-m", "qbo_attach"]
# Four in flight and no rate limit: a run takes a few seconds, long enough to
# be killed several times with calls in flight.
UPLOAD = [
    *QBO_ATTACH,
    "upload",
    "--quiet",
    "--concurrency",
    "4",
    "--rate-per-minute",
    "100000",
]


@contextlib.contextmanager
def served_company(
    tmp_path: Path, files: int, latency_ms: str
) -> Iterator[dict[str, str]]:
    """A demo company behind a fake-server process, verified and ready to upload."""
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "FILES_DIR": str(tmp_path / "files"),
        "LOG_DIR": str(tmp_path / "logs"),
    }
    runner = CliRunner()
    made = runner.invoke(main, ["demo-data", "--attachments", str(files)], env=env)
    assert made.exit_code == 0, made.output
    port = free_port()
    env["QBO_TARGET"] = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*QBO_ATTACH, "fake-server", "--port", str(port), "--latency-ms", latency_ms],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{env['QBO_TARGET']}/")
        for stage in ("mapping", "inventory", "verify"):
            result = runner.invoke(main, [stage], env=env)
            assert result.exit_code == 0, result.output
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_sigkill_at_random_moments_still_attaches_each_file_once(
    tmp_path: Path,
) -> None:
    """Killed and rerun until done, every verified key is attached exactly once."""
    with served_company(tmp_path, FILES, "50,20") as env:
        kills = kill_repeatedly(env, random.Random(20261203))
        final = subprocess.run(
            UPLOAD, env=env, capture_output=True, text=True, timeout=120
        )
        assert final.returncode == 0, final.stdout + final.stderr
        attached = remote_keys(env["QBO_TARGET"])
        check = CliRunner().invoke(main, ["check"], env=env)

    verified = {
        (r["qbo_entity_type"], r["qbo_entity_id"], r["file_name"])
        for r in rows(tmp_path / "logs" / "mapping_verification_log.csv")
        if r["status"] == "ok"
    }
    assert kills >= 3
    assert set(attached) == verified
    assert set(attached.values()) == {1}
    assert check.exit_code == 0, check.output
    log = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    started = sum(r["outcome"] == "started" for r in log)
    settled = sum(r["outcome"] in ("success", "error") for r in log)
    assert started > settled, "no kill caught a call in flight"
    assert {r["outcome"] for r in log} <= {
        "started",
        "success",
        "reconciled",
        "error",
        "skipped_already_uploaded",
    }


def kill_repeatedly(env: dict[str, str], rng: random.Random) -> int:
    """Start uploads and SIGKILL each after a random while; count the kills."""
    kills = 0
    for _ in range(12):
        process = subprocess.Popen(
            UPLOAD,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            process.wait(timeout=rng.uniform(0.4, 1.6))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        return kills
    return kills


def remote_keys(target: str) -> Counter[tuple[str, str, str]]:
    """Every attachable's key, counted, read through the fake's query API."""
    found: Counter[tuple[str, str, str]] = Counter()
    start = 1
    with httpx.Client(base_url=target, headers={"Authorization": "Bearer t"}) as http:
        while True:
            statement = (
                f"select * from Attachable startposition {start} maxresults 1000"
            )
            response = http.get(
                f"/v3/company/{FAKE_REALM_ID}/query", params={"query": statement}
            )
            page = response.json()["QueryResponse"].get("Attachable", [])
            for attachable in page:
                ref = attachable["AttachableRef"][0]["EntityRef"]
                found[(ref["type"], ref["value"], attachable["FileName"])] += 1
            if len(page) < 1000:
                return found
            start += 1000


def test_ctrl_c_finishes_calls_in_flight_and_exits_130(tmp_path: Path) -> None:
    """One SIGINT: no new uploads, those in flight recorded, summary, exit 130."""
    with served_company(tmp_path, 200, "100") as env:
        process = subprocess.Popen(
            UPLOAD, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_for_rows(tmp_path / "logs" / "qbo_attach_runlog.csv", 10)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)

    assert process.returncode == 130, out + err
    assert "interrupted" in out
    assert "not attempted" in out
    log = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    started = Counter(r["file_path"] for r in log if r["outcome"] == "started")
    finished = Counter(r["file_path"] for r in log if r["outcome"] == "success")
    assert started == finished, "a call in flight was left without its outcome"


def wait_for_rows(path: Path, count: int) -> None:
    """Wait until the uploader has written ``count`` rows (it is under way)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) > count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not grow to {count} rows")
