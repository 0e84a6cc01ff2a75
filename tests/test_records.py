"""Reading and writing the CSV artifacts."""

from pathlib import Path

import pytest

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
