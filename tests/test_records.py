"""Reading and writing the CSV artifacts."""

import csv
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbo_attach.errors import InputError, UsageError
from qbo_attach.records import MappingRow, RunLogRow, columns, read_csv, write_csv


def mapping_row(n: int) -> MappingRow:
    return MappingRow(f"{n}-1439202892", "BILL", "Bill", str(n), f"{n}-1439202892")


def test_round_trip(tmp_path: Path) -> None:
    """Rows written are read back equal, header first."""
    path = tmp_path / "mapping_export.csv"
    rows = [mapping_row(n) for n in range(3)]
    assert write_csv(path, MappingRow, rows) == 3
    assert path.read_text().splitlines()[0] == ",".join(columns(MappingRow))
    assert list(read_csv(path, MappingRow)) == rows


def test_reads_bom_crlf_extra_columns_other_order(tmp_path: Path) -> None:
    """A file re-saved by a spreadsheet still reads correctly."""
    path = tmp_path / "m.csv"
    text = (
        "\ufeffqbo_entity_id,extra,legacy_entity_type,qbo_entity_type,"
        "legacy_txnid_norm,qbdt_exportable_id\r\n"
        '7,x,BILL,Bill,"7-1",7-1\r\n'
        "\r\n"
    )
    path.write_bytes(text.encode())
    assert list(read_csv(path, MappingRow)) == [
        MappingRow("7-1", "BILL", "Bill", "7", "7-1")
    ]


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    """A missing column stops with the file, the row and the column."""
    path = tmp_path / "m.csv"
    path.write_text(
        "legacy_txnid_norm,legacy_entity_type,qbo_entity_type\n1,BILL,Bill\n"
    )
    with pytest.raises(InputError) as caught:
        list(read_csv(path, MappingRow))
    message = str(caught.value)
    assert str(path) in message
    assert "qbo_entity_id" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"", "empty"), (b"\x00\x01\x02binary\xff\xfe", "not"), (b"caf\xe9,x\n", "UTF-8")],
    ids=["empty", "binary", "latin-1"],
)
def test_unusable_files_are_named(
    tmp_path: Path, content: bytes, fragment: str
) -> None:
    """Empty, binary and wrongly encoded files give a usage error naming them."""
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment) as caught:
        list(read_csv(path, MappingRow))
    assert str(path) in str(caught.value)


def test_bad_number_names_row_and_column(tmp_path: Path) -> None:
    """A cell that should be a number names its row and column."""
    path = tmp_path / "runlog.csv"
    header = ",".join(columns(RunLogRow))
    cells = ["x"] * len(columns(RunLogRow))
    path.write_text(header + "\n" + ",".join(cells) + "\n")
    with pytest.raises(InputError, match=r"row 2, column 'size_bytes'"):
        list(read_csv(path, RunLogRow))


def test_absent_file_says_how_to_make_it(tmp_path: Path) -> None:
    """A missing input names the file and the command that makes it."""
    with pytest.raises(UsageError, match="qbo-attach mapping"):
        list(
            read_csv(
                tmp_path / "nope.csv", MappingRow, hint="Run `qbo-attach mapping`."
            )
        )


@pytest.mark.parametrize(
    "name",
    ['=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "'quoted", "\tx", "\rx", "plain"],
    ids=["equals", "plus", "minus", "at", "apostrophe", "tab", "cr", "plain"],
)
def test_formula_cells_are_neutralised_and_read_back(tmp_path: Path, name: str) -> None:
    """A cell a spreadsheet would run is written inert and read back unchanged."""
    path = tmp_path / "m.csv"
    row = MappingRow(name, "BILL", "Bill", "7", name)
    write_csv(path, MappingRow, [row])
    cells = next(csv.reader(path.open(newline="")))  # the header
    assert cells[0] == "legacy_txnid_norm"
    written = list(csv.reader(path.open(newline="")))[1][0]
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert list(read_csv(path, MappingRow)) == [row]


# No NUL: no file system allows it in a name, and the reader takes it as binary.
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    max_size=40,
)


@given(text=TEXT)
def test_any_text_survives_a_csv_round_trip(text: str) -> None:
    """Whatever a cell holds (commas, quotes, breaks, formulas) reads back equal."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.csv"
        # One fixed cell: a row of blank cells is a blank line, which is skipped.
        row = MappingRow(text, text, text, "7", text)
        write_csv(path, MappingRow, [row])
        assert list(read_csv(path, MappingRow)) == [row]
