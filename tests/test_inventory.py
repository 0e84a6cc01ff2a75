"""The inventory stage: rows for every entry under FILES_DIR."""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbo_attach import inventory
from qbo_attach.errors import UsageError
from qbo_attach.filetypes import content_type_for
from qbo_attach.inventory import InventoryStats, scan, write_inventory
from qbo_attach.layout import Layout
from qbo_attach.records import InventoryRow, columns, neutralize, read_csv, write_csv
from qbo_attach.settings import DEFAULT_LAYOUT

DEFAULT = Layout.parse(DEFAULT_LAYOUT)
MISMATCH = f"path does not match FILES_LAYOUT {DEFAULT_LAYOUT}"
SYMLINK = "not a regular file (symbolic link)"


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    """Write ``files`` (relative path -> content) under ``root``."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _scan(root: Path, layout: Layout = DEFAULT, **options: Any) -> list[InventoryRow]:
    return list(scan(root, layout, "80", **options))


def _by_path(rows: list[InventoryRow]) -> dict[str, InventoryRow]:
    return {row.file_path: row for row in rows}


def test_rows_of_a_small_tree(tmp_path: Path) -> None:
    """Each file gives one row with every column filled as the contract says."""
    root = _tree(
        tmp_path / "files",
        {
            "Bill/8080000004-1424241304/invoice.pdf": b"%PDF-1.4 bill",
            "Invoice/804-1439202892/Scan 01.JPG": b"\xff\xd8\xff jpeg",
        },
    )

    rows = _scan(root)

    assert rows == [
        InventoryRow(
            legacy_txnid_norm="000004-1424241304",
            legacy_entity_type="BILL",
            raw_legacy_id="8080000004-1424241304",
            file_name="invoice.pdf",
            file_path="Bill/8080000004-1424241304/invoice.pdf",
            size_bytes=13,
            content_type="application/pdf",
            sha256=_sha(b"%PDF-1.4 bill"),
            problem="",
        ),
        InventoryRow(
            legacy_txnid_norm="4-1439202892",
            legacy_entity_type="INVOICE",
            raw_legacy_id="804-1439202892",
            file_name="Scan 01.JPG",
            file_path="Invoice/804-1439202892/Scan 01.JPG",
            size_bytes=8,
            content_type="image/jpeg",
            sha256=_sha(b"\xff\xd8\xff jpeg"),
            problem="",
        ),
    ]


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        pytest.param("Bill", "BILL", id="Bill"),
        pytest.param("BILL", "BILL", id="BILL"),
        pytest.param("bill", "BILL", id="bill"),
        pytest.param("Purchase Order", "PURCHASEORDER", id="space"),
        pytest.param("purchase_order", "PURCHASEORDER", id="underscore"),
    ],
)
def test_entity_type_folders_are_normalised(
    tmp_path: Path, folder: str, expected: str
) -> None:
    """Type folder spellings that mean the same type give the same join form."""
    root = _tree(tmp_path, {f"{folder}/80A1/a.pdf": b"x"})

    (row,) = _scan(root)

    assert row.legacy_entity_type == expected


@pytest.mark.parametrize(
    ("raw_id", "prefix", "expected"),
    [
        pytest.param("804-1439202892", "80", "4-1439202892", id="short"),
        pytest.param("8080000004-1424241304", "80", "000004-1424241304", id="padded"),
        pytest.param("80abc-1", "80", "ABC-1", id="lower-case"),
        pytest.param("80abc-1", "", "80ABC-1", id="no-prefix"),
        pytest.param("77X-1", "77", "X-1", id="other-prefix"),
    ],
)
def test_legacy_ids_are_normalised_with_the_prefix(
    tmp_path: Path, raw_id: str, prefix: str, expected: str
) -> None:
    """The id column holds the join form, and the raw column the folder name."""
    root = _tree(tmp_path, {f"Bill/{raw_id}/a.pdf": b"x"})

    (row,) = scan(root, DEFAULT, prefix)

    assert (row.legacy_txnid_norm, row.raw_legacy_id) == (expected, raw_id)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("a.pdf", "application/pdf", id="pdf"),
        pytest.param("A.JPG", "image/jpeg", id="upper-case"),
        pytest.param("archive.tar.PNG", "image/png", id="two-dots"),
        pytest.param("note.msg", "application/octet-stream", id="refused"),
        pytest.param("README", "application/octet-stream", id="no-extension"),
        pytest.param(".pdf", "application/octet-stream", id="dot-file"),
        pytest.param("trailing.", "application/octet-stream", id="trailing-dot"),
    ],
)
def test_content_types_follow_filetypes(
    tmp_path: Path, name: str, expected: str
) -> None:
    """The content type is what filetypes.content_type_for says for the name."""
    root = _tree(tmp_path, {f"Bill/80A/{name}": b"x"})

    (row,) = _scan(root)

    assert row.content_type == expected == content_type_for(name)


def test_sha256_covers_files_larger_than_one_chunk(tmp_path: Path) -> None:
    """A file read in several chunks hashes as hashlib hashes it whole."""
    content = os.urandom(inventory.HASH_CHUNK_BYTES * 2 + 12345)
    root = _tree(tmp_path, {"Bill/80A/big.pdf": content})

    (row,) = _scan(root)

    assert (row.sha256, row.size_bytes) == (_sha(content), len(content))


def test_no_hash_leaves_sha256_empty(tmp_path: Path) -> None:
    """Without hashing the sha256 column is empty and everything else is filled."""
    root = _tree(tmp_path, {"Bill/80A/a.pdf": b"abc"})

    (row,) = _scan(root, hash_files=False)

    assert (row.sha256, row.size_bytes, row.problem) == ("", 3, "")


@pytest.mark.parametrize(
    "relative",
    [
        pytest.param("stray.pdf", id="top"),
        pytest.param("Bill/loose.pdf", id="type-folder"),
        pytest.param("Bill/80A/sub/deep.pdf", id="too-deep"),
    ],
)
def test_files_at_the_wrong_depth_get_a_problem_row(
    tmp_path: Path, relative: str
) -> None:
    """A file the layout cannot read still gets its row, ids empty, saying why."""
    root = _tree(tmp_path, {relative: b"abc"})

    (row,) = _scan(root)

    assert row.problem == MISMATCH
    assert (row.legacy_txnid_norm, row.legacy_entity_type, row.raw_legacy_id) == (
        "",
        "",
        "",
    )
    assert (row.file_path, row.size_bytes, row.sha256) == (relative, 3, _sha(b"abc"))


def test_literal_segments_must_match(tmp_path: Path) -> None:
    """Under a layout with literals, only paths that repeat them are read."""
    layout = Layout.parse("Attach/{client}/Txn/{raw_legacy_id}/{file_name}")
    root = _tree(
        tmp_path,
        {"Attach/Acme/Txn/80X/a.pdf": b"a", "Attach/Acme/Lists/80Y/b.pdf": b"b"},
    )

    rows = _by_path(_scan(root, layout))

    good = rows["Attach/Acme/Txn/80X/a.pdf"]
    assert (good.legacy_txnid_norm, good.legacy_entity_type, good.problem) == (
        "X",
        "",
        "",
    )
    assert rows["Attach/Acme/Lists/80Y/b.pdf"].problem == (
        f"path does not match FILES_LAYOUT {layout.pattern}"
    )


def test_unreadable_file_gets_a_problem_and_no_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that cannot be opened keeps its row, with the reason and no sha256."""
    root = _tree(tmp_path, {"Bill/80A/locked.pdf": b"abc", "Bill/80A/ok.pdf": b"d"})
    real_open = os.open

    def refuse_locked(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith("locked.pdf"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse_locked)

    rows = _by_path(_scan(root))

    locked = rows["Bill/80A/locked.pdf"]
    assert (locked.problem, locked.sha256, locked.size_bytes) == (
        "unreadable: Permission denied",
        "",
        3,
    )
    assert rows["Bill/80A/ok.pdf"].problem == ""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_not_a_regular_file(tmp_path: Path) -> None:
    """A pipe gets a row saying what it is, and is never opened."""
    (tmp_path / "Bill/80A").mkdir(parents=True)
    os.mkfifo(tmp_path / "Bill/80A/pipe.pdf")

    (row,) = _scan(tmp_path)

    assert row.problem == "not a regular file (named pipe)"
    assert (row.size_bytes, row.sha256, row.legacy_txnid_norm) == (None, "", "A")


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    """A link to a folder inside or outside FILES_DIR gets one row and no walk."""
    outside = _tree(tmp_path / "outside", {"secret.pdf": b"s"})
    root = _tree(tmp_path / "files", {"Bill/80A/a.pdf": b"a"})
    (root / "Bill/80A/loop").symlink_to(root)
    (root / "Bill/80B").symlink_to(outside)

    rows = _by_path(_scan(root))

    assert sorted(rows) == ["Bill/80A/a.pdf", "Bill/80A/loop", "Bill/80B"]
    assert rows["Bill/80A/loop"].problem == SYMLINK
    assert rows["Bill/80B"].problem == f"{MISMATCH}; {SYMLINK}"
    assert (rows["Bill/80B"].size_bytes, rows["Bill/80B"].sha256) == (None, "")


def test_symlinked_file_is_reported_not_read(tmp_path: Path) -> None:
    """A link to a file keeps the layout's ids but is neither sized nor hashed."""
    outside = _tree(tmp_path / "outside", {"real.pdf": b"real"})
    root = _tree(tmp_path / "files", {"Bill/80A/a.pdf": b"a"})
    (root / "Bill/80A/b.pdf").symlink_to(outside / "real.pdf")

    link = _by_path(_scan(root))["Bill/80A/b.pdf"]

    assert (link.legacy_txnid_norm, link.problem, link.sha256) == ("A", SYMLINK, "")


def test_unlistable_folder_gets_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that cannot be listed is reported, and the rest is still walked."""
    root = _tree(tmp_path, {"Bill/80A/a.pdf": b"a", "Bill/80B/b.pdf": b"b"})
    real_scandir = os.scandir

    def refuse_80a(path: Any) -> Any:
        if str(path).endswith("80A"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refuse_80a)

    rows = _by_path(_scan(root))

    assert rows["Bill/80A"].problem == "unreadable folder: Permission denied"
    assert rows["Bill/80B/b.pdf"].problem == ""


def test_names_that_are_not_utf8_are_escaped_and_flagged(tmp_path: Path) -> None:
    """A name the UTF-8 CSV cannot hold is shown escaped, with a problem to act on."""
    folder = tmp_path / "Bill" / "80A"
    folder.mkdir(parents=True)
    bad = os.path.join(os.fsencode(folder), b"caf\xe9.pdf")
    with open(bad, "wb") as handle:
        handle.write(b"abc")
    out = tmp_path.parent / f"{tmp_path.name}-inventory.csv"

    write_inventory(tmp_path, out, DEFAULT, "80")
    (row,) = read_csv(out, InventoryRow)

    assert row.file_name == "caf\\xe9.pdf"
    assert row.problem == inventory.NOT_UTF8_FILE
    assert (row.sha256, row.legacy_txnid_norm) == (_sha(b"abc"), "A")


def test_order_is_by_name_within_each_folder(tmp_path: Path) -> None:
    """Rows follow the walk in name order, whatever order the files were made in."""
    paths = ["b/80B/z.pdf", "a/80A/b.pdf", "b/80A/y.pdf", "a/80A/a.pdf", "a/top.pdf"]
    root = _tree(tmp_path, dict.fromkeys(paths, b"x"))

    first = [row.file_path for row in _scan(root)]

    assert first == [
        "a/80A/a.pdf",
        "a/80A/b.pdf",
        "a/top.pdf",
        "b/80A/y.pdf",
        "b/80B/z.pdf",
    ]
    assert [row.file_path for row in _scan(root)] == first


TRICKY_NAMES = {
    "Bill/80A/Smith, J.pdf": b"comma",
    'Bill/80A/say "hi".pdf': b"quote",
    "Bill/80A/line\nbreak.pdf": b"newline",
    "Bill/80A/café ☕.pdf": b"unicode",
    "Bill/80B/plain.pdf": b"plain",
    "stray.txt": b"stray",
}


def test_csv_round_trip_gives_the_scanned_rows(tmp_path: Path) -> None:
    """The written CSV reads back through records.read_csv as exactly the rows."""
    root = _tree(tmp_path / "files", TRICKY_NAMES)
    out = tmp_path / "data" / "attachments_inventory.csv"

    stats = write_inventory(root, out, DEFAULT, "80")

    assert list(read_csv(out, InventoryRow)) == _scan(root)
    assert stats == InventoryStats(files=6, problems=1, total_bytes=34)
    assert sorted(path.name for path in out.parent.iterdir()) == [out.name]


def test_written_file_is_what_write_csv_writes(tmp_path: Path) -> None:
    """The inventory file is byte for byte what records.write_csv makes of scan."""
    root = _tree(tmp_path / "files", TRICKY_NAMES)
    out, reference = tmp_path / "inventory.csv", tmp_path / "reference.csv"

    write_inventory(root, out, DEFAULT, "80", hash_files=False)
    write_csv(reference, InventoryRow, scan(root, DEFAULT, "80", hash_files=False))

    assert out.read_bytes() == reference.read_bytes()


def _wide_tree(root: Path) -> Path:
    """A tree with more id folders than it takes to share the walk."""
    count = inventory.SPLIT_MIN_ENTRIES * 2
    files = {
        f"{kind}/80{number:04X}-1/{name}": f"{kind}{number}{name}".encode()
        for kind in ("Bill", "Invoice")
        for number in range(count // 2)
        for name in ("a.pdf", "b, c.jpg")
    }
    files["Bill/loose.pdf"] = b"loose"
    return _tree(root, files)


def test_shared_walk_writes_the_same_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Split between two processes, the inventory is the one of a single walk."""
    root = _wide_tree(tmp_path / "files")
    out, reference = tmp_path / "inventory.csv", tmp_path / "reference.csv"
    contexts = _spy(monkeypatch, multiprocessing, "get_context")

    stats = write_inventory(root, out, DEFAULT, "80")
    write_csv(reference, InventoryRow, scan(root, DEFAULT, "80"))

    assert contexts == [("fork",)]
    assert out.read_bytes() == reference.read_bytes()
    assert stats.files == len(list(scan(root, DEFAULT, "80"))) == 257
    assert stats.problems == 1


def test_without_fork_the_walk_stays_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fork is missing the same file is written by one process alone."""
    root = _wide_tree(tmp_path / "files")
    out, reference = tmp_path / "inventory.csv", tmp_path / "reference.csv"
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    contexts = _spy(monkeypatch, multiprocessing, "get_context")

    write_inventory(root, out, DEFAULT, "80")
    write_csv(reference, InventoryRow, scan(root, DEFAULT, "80"))

    assert contexts == []
    assert out.read_bytes() == reference.read_bytes()


def test_walk_is_not_shared_while_other_threads_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller with a second thread gets the same file from one process."""
    root = _wide_tree(tmp_path / "files")
    out, reference = tmp_path / "inventory.csv", tmp_path / "reference.csv"
    contexts = _spy(monkeypatch, multiprocessing, "get_context")
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        write_inventory(root, out, DEFAULT, "80")
    finally:
        release.set()
        other.join()
    write_csv(reference, InventoryRow, scan(root, DEFAULT, "80"))

    assert contexts == []
    assert out.read_bytes() == reference.read_bytes()


def _spy(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[Any]:
    """Record the arguments of every call to ``owner.name``."""
    calls: list[Any] = []
    real: Callable[..., Any] = getattr(owner, name)

    def record(*args: Any) -> Any:
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(owner, name, record)
    return calls


def test_stats_count_rows_problems_and_bytes(tmp_path: Path) -> None:
    """The returned counts describe the file that was written."""
    root = _tree(tmp_path / "files", {"Bill/80A/a.pdf": b"12345", "x.pdf": b"12"})

    stats = write_inventory(root, tmp_path / "inv.csv", DEFAULT, "80")

    assert stats == InventoryStats(files=2, problems=1, total_bytes=7)


def test_empty_tree_writes_just_the_header(tmp_path: Path) -> None:
    """An empty FILES_DIR gives a file with the header and no rows."""
    (tmp_path / "files").mkdir()
    out = tmp_path / "inv.csv"

    stats = write_inventory(tmp_path / "files", out, DEFAULT, "80")

    assert out.read_text(encoding="utf-8").splitlines() == [
        ",".join(columns(InventoryRow))
    ]
    assert stats == InventoryStats(files=0, problems=0, total_bytes=0)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda path: None, id="missing"),
        pytest.param(lambda path: path.write_text("x"), id="a-file"),
    ],
)
def test_unusable_files_dir_is_a_usage_error(
    tmp_path: Path, make: Callable[[Path], object]
) -> None:
    """Both entry points refuse a FILES_DIR that is not a folder, naming it."""
    files_dir = tmp_path / "files"
    make(files_dir)

    with pytest.raises(UsageError, match="FILES_DIR") as from_scan:
        scan(files_dir, DEFAULT, "80")
    with pytest.raises(UsageError, match="FILES_DIR") as from_write:
        write_inventory(files_dir, tmp_path / "inv.csv", DEFAULT, "80")

    assert str(files_dir) in str(from_scan.value)
    assert str(files_dir) in str(from_write.value)


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    """An output path that cannot be created is reported with the path."""
    root = _tree(tmp_path / "files", {"Bill/80A/a.pdf": b"a"})
    (tmp_path / "data").write_text("a file where a folder should be")

    with pytest.raises(UsageError, match="cannot write the inventory") as caught:
        write_inventory(root, tmp_path / "data" / "inv.csv", DEFAULT, "80")

    assert "data" in str(caught.value)


_CELL = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)
_ROW = st.tuples(
    _CELL,
    _CELL,
    _CELL,
    _CELL,
    _CELL,
    st.none() | st.integers(min_value=0),
    _CELL,
    _CELL,
    _CELL,
)


@given(rows=st.lists(_ROW, max_size=20))
def test_formatted_rows_are_what_csv_writer_writes(rows: list[Any]) -> None:
    """The fast formatting gives the records writer's exact text for any cells."""
    expected = io.StringIO(newline="")
    csv.writer(expected).writerows(
        [[neutralize(c) if isinstance(c, str) else c for c in row] for row in rows]
    )

    assert inventory._csv_text(rows) == expected.getvalue()
