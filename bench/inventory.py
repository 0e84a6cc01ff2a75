"""Time the inventory against ``find`` on a large synthetic legacy tree.

Run as ``.venv/bin/python bench/inventory.py [--files N] [--rounds R]``. The
tree (default 170,000 files, the size of the first real migration) is built
once under ``bench/.cache/`` and reused. Rounds alternate ``find`` and the
inventory so both see the same warm page cache; medians are printed, and
nothing is asserted: timing depends on the machine.
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
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
PREFIX = "80"

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
EXTENSIONS = (
    ("pdf", 50),
    ("jpg", 14),
    ("JPG", 4),
    ("png", 8),
    ("xlsx", 5),
    ("docx", 4),
    ("tif", 3),
    ("txt", 3),
    ("csv", 2),
    ("msg", 3),
    ("eml", 2),
    ("zip", 1),
    ("", 1),
)


def build_tree(root: Path, files: int, seed: int = 2015) -> None:
    """Write a default-layout tree with ``files`` small files under ``root``."""
    rng = random.Random(seed)
    folders = list(ENTITY_FOLDERS)
    folder_weights = list(ENTITY_FOLDERS.values())
    extensions = [ext for ext, _ in EXTENSIONS]
    extension_weights = [weight for _, weight in EXTENSIONS]
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
            ext = rng.choices(extensions, extension_weights)[0]
            name = f"{rng.choice(FILE_STEMS)}{rng.randint(1, 9999)}-{number}"
            name = f"{name}.{ext}" if ext else name
            (record / name).write_bytes(f"{raw_id}/{name}\n".encode()[:12])
        made += count


def _desktop_id(rng: random.Random, counter: int) -> str:
    """A desktop id ``<hex counter>-<epoch>``, short or zero-padded like real ones."""
    epoch = rng.randint(1_400_000_000, 1_700_000_000)
    if rng.random() < 0.5:
        return f"{counter:X}-{epoch}"
    return f"8{counter:07X}-{epoch}"


def cached_tree(files: int) -> Path:
    """The tree for ``files`` files, built on first use; a marker says it is whole."""
    root = CACHE_DIR / f"tree-{files}"
    marker = CACHE_DIR / f"tree-{files}.complete"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    print(f"building {files} files under {root} (once) ...", flush=True)
    started = time.perf_counter()
    build_tree(root, files)
    marker.write_text("built\n")
    print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
    return root
