"""Peak memory of verify against a mapping of a million rows.

A company's QbdtEntityIdMapping holds a row for every converted record, often
far more than the records with attachments. verify keeps only the mapping rows
whose ids the tree holds, so its memory should follow the tree, not the
mapping. This script writes a mapping of --rows rows (default 1,000,000) and
an inventory of --files files (default 5,000), runs verify in a fresh process
for each of two mapping sizes, and prints the peak memory of each and their
ratio. It prints figures; it asserts nothing.

    .venv/bin/python bench/mapping_memory.py [--rows N] [--files N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from qbo_attach.records import InventoryRow, MappingRow, write_csv

CHILD = """
import resource, sys, time
from collections.abc import Iterable, Iterator
from pathlib import Path
from qbo_attach import verify
folder = Path(sys.argv[1])
began = time.perf_counter()
summary = verify.verify(
    folder / "inventory.csv", folder / sys.argv[2],
    folder / "log.csv", folder / "skips.csv",
)
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{peak:.1f} {seconds:.2f} {summary.statuses['ok']}")
"""


def desktop_id(n: int) -> str:
    """A TxnID: a hex counter and the second the record was made."""
    return f"{n:X}-{1_262_304_000 + 37 * n}"


def mapping_rows(numbers: Iterable[int]) -> Iterator[MappingRow]:
    """Rows made one at a time, so this process stays small."""
    for n in numbers:
        yield MappingRow(desktop_id(n), "BILL", "Bill", str(n), desktop_id(n))


def inventory_rows(numbers: Iterable[int]) -> Iterator[InventoryRow]:
    for n in numbers:
        path = f"Bill/80{desktop_id(n)}/scan.pdf"
        yield InventoryRow(
            desktop_id(n),
            "BILL",
            "80" + desktop_id(n),
            "scan.pdf",
            path,
            1000,
            "application/pdf",
            "",
            "",
        )


def measure(folder: Path, mapping: str) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), mapping],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=5_000)
    args = parser.parse_args()
    # Files for every stride-th record, so both mappings cover all of them.
    stride = max(1, args.rows // args.files)
    with_files = range(1, args.files * stride + 1, stride)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        began = time.perf_counter()
        write_csv(folder / "big.csv", MappingRow, mapping_rows(range(1, args.rows + 1)))
        write_csv(folder / "small.csv", MappingRow, mapping_rows(with_files))
        write_csv(folder / "inventory.csv", InventoryRow, inventory_rows(with_files))
        print(f"wrote the inputs in {time.perf_counter() - began:.1f} s")
        big_peak, big_s, big_ok = measure(folder, "big.csv")
        small_peak, small_s, small_ok = measure(folder, "small.csv")
    print(f"inventory: {args.files:,} files, verified ok: {big_ok:,} and {small_ok:,}")
    print(f"mapping of {args.rows:>9,} rows: peak {big_peak:6.1f} MB, {big_s:5.2f} s")
    print(
        f"mapping of {args.files:>9,} rows: peak {small_peak:6.1f} MB, {small_s:5.2f} s"
    )
    print(f"peak ratio, big mapping / small mapping: {big_peak / small_peak:.2f}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this script itself peaked at {own:.0f} MB)")


if __name__ == "__main__":
    main()
