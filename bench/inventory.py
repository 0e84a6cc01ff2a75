"""Time the inventory against ``find`` on a large synthetic legacy tree.

Run as ``.venv/bin/python bench/inventory.py [--files N] [--rounds R]``. The
tree (default 170,000 files, the size of the first real migration) is built
once under ``bench/.cache/`` and reused. Rounds alternate ``find`` and the
inventory, each in a fresh process, so both see the same warm page cache.
Medians are printed and nothing is asserted: timing depends on the machine.

The headline ratio compares the inventory function's own time, measured
inside its process, with the whole ``find`` process. The inventory's whole
process, interpreter start and imports included, is printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qbo_attach.inventory import write_inventory
from qbo_attach.layout import Layout
from qbo_attach.settings import DEFAULT_LAYOUT

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
# Bump when build_tree changes, so a cached tree of the old shape is rebuilt.
TREE_VERSION = "2"
PREFIX = "80"
TARGET_RATIO = 1.2
TARGET_PEAK_MB = 150
FIND_COMMAND = ("find", "{tree}", "-type", "f", "-printf", "%s %p\\n")

# Desktop "Attach" trees name their type folders after the transaction types;
# the weights give the skew of a real company (many bills, few estimates).
ENTITY_FOLDERS = {
    "Bill": 22,
    "Invoice": 20,
    "Check": 12,
    "CreditCardCharge": 8,
    "Deposit": 4,
    "Estimate": 3,
    "JournalEntry": 4,
    "PurchaseOrder": 6,
    "SalesReceipt": 5,
    "CreditMemo": 2,
    "ReceivePayment": 4,
    "BillPaymentCheck": 3,
    "VendorCredit": 1,
    "Customer": 3,
    "Vendor": 2,
    "Item": 1,
}
FILE_STEMS = (
    "invoice",
    "Invoice scan",
    "receipt",
    "IMG_",
    "statement",
    "PO",
    "contract signed",
    "W-9",
    "quote",
    "packing slip",
    "remittance",
    "Scan_",
)
# Mostly what QBO takes, with a few it refuses, as real trees have.
EXTENSION_SHARES = {
    "pdf": 50,
    "jpg": 14,
    "JPG": 4,
    "png": 8,
    "xlsx": 5,
    "docx": 4,
    "tif": 3,
    "txt": 3,
    "csv": 2,
    "msg": 3,
    "eml": 2,
    "zip": 1,
    "": 1,
}
EXTENSIONS = list(EXTENSION_SHARES)
EXTENSION_WEIGHTS = list(EXTENSION_SHARES.values())


def build_tree(root: Path, files: int, seed: int = 2015) -> None:
    """Write a default-layout tree with ``files`` small files under ``root``."""
    rng = random.Random(seed)
    folders = list(ENTITY_FOLDERS)
    folder_weights = list(ENTITY_FOLDERS.values())
    made = 0
    counter = 0
    while made < files:
        counter += 1
        folder = rng.choices(folders, folder_weights)[0]
        raw_id = PREFIX + _desktop_id(rng, counter)
        count = min(rng.randint(1, 5), files - made)
        record = root / folder / raw_id
        record.mkdir(parents=True)
        for number in range(count):
            name = _file_name(rng, number)
            (record / name).write_bytes(f"{name}\n".encode())
        made += count


def _desktop_id(rng: random.Random, counter: int) -> str:
    """A desktop id ``<hex counter>-<epoch>``, short or zero-padded like real ones."""
    epoch = rng.randint(1_400_000_000, 1_700_000_000)
    if rng.random() < 0.5:
        return f"{counter:X}-{epoch}"
    return f"8{counter:07X}-{epoch}"


def _file_name(rng: random.Random, number: int) -> str:
    """A name as people save them; now and then one with a comma, as in real trees."""
    stem = f"{rng.choice(FILE_STEMS)}{rng.randint(1, 9999)}-{number}"
    if rng.random() < 0.002:
        stem = f"Smith, J {stem}"
    extension = rng.choices(EXTENSIONS, EXTENSION_WEIGHTS)[0]
    return f"{stem}.{extension}" if extension else stem


def cached_tree(files: int) -> Path:
    """The tree for ``files`` files, built on first use; a marker says it is whole."""
    root = CACHE_DIR / f"tree-{files}"
    marker = CACHE_DIR / f"tree-{files}.complete"
    if marker.exists() and marker.read_text().strip() == TREE_VERSION:
        return root
    if root.exists():
        shutil.rmtree(root)
    print(f"building {files} files under {root} (once) ...", flush=True)
    started = time.perf_counter()
    build_tree(root, files)
    marker.write_text(TREE_VERSION + "\n")
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
    return root


def time_find(tree: Path) -> float:
    """Seconds for the whole ``find`` process, its output thrown away."""
    command = [part.format(tree=tree) for part in FIND_COMMAND]
    started = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def time_inventory(tree: Path, *, hash_files: bool) -> dict[str, float]:
    """Run the inventory in a fresh interpreter; its figures and the process time."""
    command = [sys.executable, __file__, "--child", str(tree)]
    if not hash_files:
        command.append("--no-hash")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    whole = time.perf_counter() - started
    figures: dict[str, float] = json.loads(done.stdout)
    figures["whole"] = whole
    return figures


def child(tree: Path, *, hash_files: bool) -> None:
    """In the fresh interpreter: write the real CSV to a temp file, print figures."""
    layout = Layout.parse(DEFAULT_LAYOUT)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "attachments_inventory.csv"
        started = time.perf_counter()
        stats = write_inventory(tree, out, layout, PREFIX, hash_files=hash_files)
        own = time.perf_counter() - started
    figures = {
        "own": own,
        "files": stats.files,
        "problems": stats.problems,
        # Linux reports ru_maxrss in KiB; the second process is a child here.
        "peak_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_second_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    print(json.dumps(figures))


def measure(tree: Path, rounds: int, hash_rounds: int) -> dict[str, list[float]]:
    """Alternate find and the inventory, each after an untimed warm-up run."""
    time_find(tree)
    time_inventory(tree, hash_files=False)
    series: dict[str, list[float]] = {}
    for _ in range(rounds):
        _add(series, "find", time_find(tree))
        for name, value in time_inventory(tree, hash_files=False).items():
            _add(series, name, value)
    # Hashing reads every file's content, which the rounds above never did.
    time_inventory(tree, hash_files=True)
    for _ in range(hash_rounds):
        figures = time_inventory(tree, hash_files=True)
        _add(series, "hashed_own", figures["own"])
        _add(series, "hashed_whole", figures["whole"])
    return series


def _add(series: dict[str, list[float]], name: str, value: float) -> None:
    series.setdefault(name, []).append(value)


def report(tree: Path, series: dict[str, list[float]]) -> None:
    """Print medians, every round, the ratios and the peak memory."""
    median = {name: statistics.median(values) for name, values in series.items()}
    rounds = len(series["find"])
    files, problems = int(median["files"]), int(median["problems"])
    print(f"tree: {tree}")
    print(f"  {files} rows written, {problems} with a problem")
    print(f"  python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"  {rounds} alternating rounds, warm cache; median, then every round, in s")
    print()
    _line("find -type f -printf '%s %p\\n' (whole process)", series["find"])
    _line("inventory, no hash: write_inventory() alone", series["own"])
    _line("inventory, no hash: whole process", series["whole"])
    _line("inventory, hashed: write_inventory() alone", series["hashed_own"])
    _line("inventory, hashed: whole process", series["hashed_whole"])
    print()
    ratio = median["own"] / median["find"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"ratio inventory/find = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})"
        "\n  write_inventory()'s own time against find's whole process"
    )
    paired = [
        own / find for own, find in zip(series["own"], series["find"], strict=True)
    ]
    each = " ".join(f"{value:.2f}" for value in paired)
    print(f"  round by round: median {statistics.median(paired):.2f}   [{each}]")
    whole_ratio = median["whole"] / median["find"]
    print(
        f"ratio with interpreter start = {whole_ratio:.2f}"
        "\n  the inventory's whole process, imports included, against find's"
    )
    _memory(series)


def _line(label: str, values: list[float]) -> None:
    each = " ".join(f"{value:.2f}" for value in values)
    print(f"{label:50} {statistics.median(values):6.2f}   [{each}]")


def _memory(series: dict[str, list[float]]) -> None:
    main = max(series["peak_main_mb"])
    second = max(series["peak_second_mb"])
    verdict = "met" if main + second < TARGET_PEAK_MB else "NOT met"
    print(
        f"peak memory (ru_maxrss, no hash): main process {main:.0f} MB, "
        f"second process {second:.0f} MB\n  both together at most "
        f"{main + second:.0f} MB (target < {TARGET_PEAK_MB} MB: {verdict}); "
        "they share pages after fork,\n  so the sum overstates the real peak"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=170_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hash-rounds", type=int, default=3)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-hash", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, hash_files=not args.no_hash)
        return
    tree = cached_tree(args.files)
    report(tree, measure(tree, args.rounds, args.hash_rounds))


if __name__ == "__main__":
    main()
