"""Measure upload throughput against a fake QBO that enforces QBO's limits.

Run as ``.venv/bin/python bench/upload_throughput.py [--files 2000]
[--rate 600] [--concurrency 10] [--latency-ms 100]``. Each scenario gets a
fresh temporary folder with a demo company (``qbo-attach demo-data``), its own
``qbo-attach fake-server`` on a free loopback port, limited to ``--rate``
requests a minute and ``--concurrency`` in flight with ``--latency-ms`` a
request, and one ``qbo-attach run`` against it.

The achieved rate comes from the run log: successful uploads a minute between
the first ``started`` row and the last ``success`` row, so the mapping,
inventory and verification stages before the uploads are not timed. The
ceiling is what the limits allow: the server's rate, or the client's
concurrency divided by the latency, whichever is lower. 429s are counted by
the fake (``/_fake/stats``, a fake-only endpoint) and in the run log.

A second scenario runs the client one upload at a time, over fewer files
(``--serial-files``) because it is slow. Figures are printed, never asserted:
they depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

QBO_ATTACH = Path(sys.executable).with_name("qbo-attach")
RUNLOG_NAME = "qbo_attach_runlog.csv"
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What the fake server enforces, the same for every scenario of a bench."""

    rate_per_minute: int
    max_concurrent: int
    latency_ms: int
    jitter_ms: int


@dataclass(frozen=True, slots=True)
class Scenario:
    """One migration run: how many files, and how many uploads in flight."""

    label: str
    files: int
    concurrency: int


@dataclass(frozen=True, slots=True)
class RunLogFigures:
    """What the run log says about the upload stage."""

    uploads: int
    upload_seconds: float
    throttled: int

    @property
    def per_minute(self) -> float:
        if self.upload_seconds <= 0:
            return 0.0
        return self.uploads / self.upload_seconds * 60


@dataclass(frozen=True, slots=True)
class Result:
    """A scenario's figures, from the run log and from the fake's stats."""

    scenario: Scenario
    runlog: RunLogFigures
    ceiling_per_minute: float
    fake_stats: dict[str, int]
    exit_code: int
    wall_seconds: float


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    limits = Limits(args.rate, args.concurrency, args.latency_ms, args.jitter_ms)
    scenarios = [
        Scenario("concurrent", args.files, args.concurrency),
        Scenario("one at a time", args.serial_files, 1),
    ]
    if not QBO_ATTACH.exists():
        print(f"{QBO_ATTACH} not found: run with the venv's python", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="qbo-bench-"))
    print(f"work folder: {root}")
    try:
        results = [run_scenario(root, scenario, limits) for scenario in scenarios]
    finally:
        if not args.keep:
            shutil.rmtree(root)
    print_report(limits, results, missing_options(), args.serial_files)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000, help="demo attachments")
    parser.add_argument("--rate", type=int, default=600, help="requests a minute")
    parser.add_argument("--concurrency", type=int, default=10, help="in flight")
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--jitter-ms", type=int, default=0, help="latency +/-")
    parser.add_argument(
        "--serial-files", type=int, default=200, help="files for the serial run"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work folder and its logs"
    )
    return parser.parse_args(argv)


def missing_options() -> list[str]:
    """The options this bench passes that the installed qbo-attach lacks."""
    wanted = {
        "fake-server": ["--rate-per-minute", "--max-concurrent", "--latency-ms"],
        "run": ["--concurrency", "--rate-per-minute"],
    }
    return [
        f"{command} {option}"
        for command, options in wanted.items()
        for option in options
        if option not in known_options(command)
    ]


@functools.cache
def known_options(command: str) -> frozenset[str]:
    help_text = qbo_attach(command, "--help").stdout
    return frozenset(re.findall(r"--[a-z][a-z-]*", help_text))


def supported(command: str, options: dict[str, str]) -> list[str]:
    """The options as arguments, less those this qbo-attach lacks.

    The bench then still measures what exists, and its report names the
    limits that were not applied.
    """
    known = known_options(command)
    return [
        part
        for name, value in options.items()
        if name in known
        for part in (name, value)
    ]


def qbo_attach(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(QBO_ATTACH), *args], env=env, capture_output=True, text=True
    )


def run_scenario(root: Path, scenario: Scenario, limits: Limits) -> Result:
    """Make the demo company, serve it with limits, migrate it, collect figures."""
    folder = root / scenario.label.replace(" ", "-")
    env = folder_env(folder)
    print(f"{scenario.label}: making {scenario.files} demo files in {folder}")
    check(qbo_attach("demo-data", "--attachments", str(scenario.files), env=env))
    port = free_port()
    server = start_server(port, limits, env, folder / "fake-server.log")
    try:
        wait_until_serving(server, port, folder / "fake-server.log")
        print(f"{scenario.label}: migrating at concurrency {scenario.concurrency}")
        started = time.monotonic()
        run = qbo_attach(*run_args(port, scenario, limits), env=env)
        wall_seconds = time.monotonic() - started
        fake_stats = read_stats(port)
    finally:
        stop_server(server)
    (folder / "run.log").write_text(run.stdout + run.stderr)
    if run.returncode not in (0, 1):
        print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
    return Result(
        scenario=scenario,
        runlog=read_runlog(folder / "logs" / RUNLOG_NAME),
        ceiling_per_minute=ceiling(limits, scenario.concurrency),
        fake_stats=fake_stats,
        exit_code=run.returncode,
        wall_seconds=wall_seconds,
    )


def folder_env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name, sub in (
        ("DATA_DIR", "data"),
        ("FILES_DIR", "files"),
        ("LOG_DIR", "logs"),
    ):
        env[name] = str(folder / sub)
    return env


def check(process: subprocess.CompletedProcess[str]) -> None:
    if process.returncode != 0:
        raise SystemExit(
            f"{' '.join(process.args)} exited {process.returncode}:\n"
            f"{process.stdout}{process.stderr}"
        )


def free_port() -> int:
    # The port is free now; another process could take it before the server
    # binds, which on a bench machine is unlikely enough to accept.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(
    port: int, limits: Limits, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    latency = str(limits.latency_ms)
    if limits.jitter_ms:
        latency += f",{limits.jitter_ms}"
    options = {
        "--rate-per-minute": str(limits.rate_per_minute),
        "--max-concurrent": str(limits.max_concurrent),
        "--latency-ms": latency,
    }
    args = ["fake-server", "--host", "127.0.0.1", "--port", str(port)]
    args += supported("fake-server", options)
    with log.open("wb") as output:
        return subprocess.Popen(
            [str(QBO_ATTACH), *args], env=env, stdout=output, stderr=output
        )


def run_args(port: int, scenario: Scenario, limits: Limits) -> list[str]:
    options = {
        "--concurrency": str(scenario.concurrency),
        "--rate-per-minute": str(limits.rate_per_minute),
    }
    target = ["--target", f"http://127.0.0.1:{port}"]
    return ["run", *target, *supported("run", options)]


def wait_until_serving(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(
                f"the fake server exited with {server.returncode}:\n{log.read_text()}"
            )
        try:
            httpx.get(f"http://127.0.0.1:{port}/_fake/stats", timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        return
    raise SystemExit(f"the fake server did not answer on port {port}")


def read_stats(port: int) -> dict[str, int]:
    answer = httpx.get(f"http://127.0.0.1:{port}/_fake/stats", timeout=5.0)
    if answer.status_code != 200:
        return {}
    document = answer.json()
    return {
        key: int(document[key]) for key in ("throttled", "requests", "max_in_flight")
    }


def stop_server(server: subprocess.Popen[bytes]) -> None:
    # SIGINT lets uvicorn end the lifespan, which closes the company store.
    server.send_signal(signal.SIGINT)
    try:
        server.wait(SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def read_runlog(path: Path) -> RunLogFigures:
    """Uploads, their span and the 429s, from the run log's rows."""
    if not path.exists():
        return RunLogFigures(uploads=0, upload_seconds=0.0, throttled=0)
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    started = [parse_ts(row["ts"]) for row in rows if row["outcome"] == "started"]
    succeeded = [parse_ts(row["ts"]) for row in rows if row["outcome"] == "success"]
    span = (max(succeeded) - min(started)).total_seconds() if succeeded else 0.0
    throttled = sum(row["status_code"] == "429" for row in rows)
    return RunLogFigures(len(succeeded), span, throttled)


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ceiling(limits: Limits, concurrency: int) -> float:
    """Uploads a minute the limits allow: the rate, or in-flight over latency."""
    in_flight = min(concurrency, limits.max_concurrent)
    if limits.latency_ms <= 0:
        return float(limits.rate_per_minute)
    by_latency = in_flight / (limits.latency_ms / 1000) * 60
    return min(float(limits.rate_per_minute), by_latency)


def print_report(
    limits: Limits, results: list[Result], missing: list[str], serial_files: int
) -> None:
    jitter = f" +/- {limits.jitter_ms} ms" if limits.jitter_ms else ""
    print()
    print(
        f"fake QBO limits: {limits.rate_per_minute} requests/min and "
        f"{limits.max_concurrent} in flight per realm, latency "
        f"{limits.latency_ms} ms{jitter}"
    )
    print("ceiling = min(rate, concurrency / latency * 60)")
    print(f"the one-at-a-time run uploads only {serial_files} files: it is slow")
    if missing:
        print(
            "NOT APPLIED, this qbo-attach lacks: " + ", ".join(missing) + ";"
            " the figures below are without those limits"
        )
    print()
    print_table(results)


def print_table(results: list[Result]) -> None:
    rows: list[tuple[str, list[str]]] = [
        ("client concurrency", [str(r.scenario.concurrency) for r in results]),
        ("demo files made", [str(r.scenario.files) for r in results]),
        ("uploaded (success rows)", [str(r.runlog.uploads) for r in results]),
        ("upload stage (s)", [f"{r.runlog.upload_seconds:.1f}" for r in results]),
        ("achieved (uploads/min)", [f"{r.runlog.per_minute:.0f}" for r in results]),
        ("ceiling (uploads/min)", [f"{r.ceiling_per_minute:.0f}" for r in results]),
        ("achieved / ceiling", [ratio(r) for r in results]),
        ("429s, fake's /_fake/stats", [stat(r, "throttled") for r in results]),
        ("429s, run log rows", [str(r.runlog.throttled) for r in results]),
        ("requests seen by the fake", [stat(r, "requests") for r in results]),
        ("peak in flight at the fake", [stat(r, "max_in_flight") for r in results]),
        ("whole run (s)", [f"{r.wall_seconds:.1f}" for r in results]),
        ("run exit code", [str(r.exit_code) for r in results]),
    ]
    headings = [r.scenario.label for r in results]
    label_width = max(len(label) for label, _ in rows)
    widths = [
        max(len(heading), *(len(cells[i]) for _, cells in rows))
        for i, heading in enumerate(headings)
    ]
    print(format_row("", headings, label_width, widths))
    for label, cells in rows:
        print(format_row(label, cells, label_width, widths))


def format_row(
    label: str, cells: list[str], label_width: int, widths: list[int]
) -> str:
    padded = (cell.rjust(width) for cell, width in zip(cells, widths, strict=True))
    return f"{label.ljust(label_width)}  " + "  ".join(padded)


def ratio(result: Result) -> str:
    if result.ceiling_per_minute <= 0:
        return "-"
    return f"{result.runlog.per_minute / result.ceiling_per_minute:.2f}"


def stat(result: Result, key: str) -> str:
    value = result.fake_stats.get(key)
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
