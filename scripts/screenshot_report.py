"""Regenerate docs/report.png, the README's picture of ``report.html``.

Runs the demo twice against the in-process fake (with a few injected failures,
so every chart has something to show), writes the report page, and takes a
screenshot of it with headless Chromium from the distribution's packages::

    .venv/bin/python scripts/screenshot_report.py [--out docs/report.png]

It takes a few minutes: the fake throttles like QBO, and the uploader waits
out each throttled minute as it would against the real API. Nothing is
fetched: the demo and the page are local, and Chromium runs with its
background networking switched off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qbo_attach.report import build_report, write_html
from qbo_attach.settings import Settings

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
# Two runs, as people work: a first pass with some failures, then a small
# canary batch of retries, which leaves the rest failed for the picture.
DEMO_RUNS = (
    ("--failure-rate", "0.06", "--fake-seed", "1"),
    ("--failure-rate", "0", "--limit", "5"),
)


def run_demo(workdir: Path, attachments: int) -> Settings:
    """Run the demo migration in ``workdir``; return its settings."""
    for faults in DEMO_RUNS:
        command = [
            sys.executable,
            "-m",
            "qbo_attach",
            "demo",
            "--workdir",
            str(workdir),
            "--attachments",
            str(attachments),
            "--max-attempts",
            "1",
            "--quiet",
            *faults,
        ]
        # Exit code 1 only says some uploads failed, which the picture wants.
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode not in (0, 1):
            sys.exit(f"demo failed ({result.returncode}):\n{result.stderr}")
    return Settings(
        data_dir=workdir / "data",
        files_dir=workdir / "files",
        log_dir=workdir / "logs",
    )


def screenshot(page: Path, out: Path, chromium: str, size: str) -> None:
    """Let headless Chromium draw ``page`` into the PNG ``out``."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            f"--screenshot={out.resolve()}",
            page.resolve().as_uri(),
        ]
        subprocess.run(command, capture_output=True, check=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--attachments", type=int, default=300)
    parser.add_argument("--size", default="1000,1500", help="window WIDTH,HEIGHT")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qbo-attach-shot-") as tmp:
        settings = run_demo(Path(tmp) / "demo", args.attachments)
        page = settings.log_dir / "report.html"
        write_html(build_report(settings), page)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, args.out, args.chromium, args.size)
    kilobytes = args.out.stat().st_size // 1000
    sys.stderr.write(f"wrote {args.out} ({kilobytes} KB)\n")


if __name__ == "__main__":
    main()
