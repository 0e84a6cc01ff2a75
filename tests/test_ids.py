"""The one rule for legacy ids and entity type names."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbo_attach.ids import (
    is_valid_legacy_id,
    normalize_entity_type,
    normalize_legacy_id,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("804-1439202892", "4-1439202892"),
        ("  80ab12-1439202892 ", "AB12-1439202892"),
        ("4-1439202892", "4-1439202892"),
        ("8080000004-1424241304", "000004-1424241304"),
        ("80000004-1424241304", "000004-1424241304"),
        ("80", ""),
        ("", ""),
    ],
    ids=[
        "txn",
        "spaces-case",
        "no-prefix",
        "list-id-tree",
        "list-id-map",
        "only",
        "empty",
    ],
)
def test_normalize_legacy_id(raw: str, expected: str) -> None:
    """Spaces and the prefix go, letters become upper case."""
    assert normalize_legacy_id(raw) == expected


def test_tree_and_mapping_spellings_join() -> None:
    """The tree's prefixed id and the mapping's id normalise alike."""
    ids = ("4-1439202892", "80000004-1424241304", "1A3F-1262304000", "8080-13290")
    for mapping_id in ids:
        assert normalize_legacy_id("80" + mapping_id) == normalize_legacy_id(mapping_id)


def test_custom_prefix() -> None:
    """Another prefix is removed instead of 80, case-insensitively."""
    assert normalize_legacy_id("qb4-1439202892", "QB") == "4-1439202892"
    assert normalize_legacy_id("804-1439202892", "") == "804-1439202892"


ids_text = st.text(alphabet="0123456789abcdefABCDEF- 8\t", max_size=30)


@given(raw=ids_text, prefix=st.sampled_from(["80", "8", "QB", "", " 80 "]))
def test_normalize_legacy_id_is_idempotent(raw: str, prefix: str) -> None:
    """Normalising twice changes nothing."""
    once = normalize_legacy_id(raw, prefix)
    assert normalize_legacy_id(once, prefix) == once


@given(raw=st.text(max_size=30))
def test_normalized_id_has_no_outer_space_or_prefix(raw: str) -> None:
    """A normalised id never starts with the prefix or carries outer spaces."""
    result = normalize_legacy_id(raw)
    assert result == result.strip()
    assert not result.startswith("80")
    assert result == result.upper()


@pytest.mark.parametrize(
    "raw", ["bill", "BILL", "Bill", " Bill ", "b_i-l l"], ids=str.strip
)
def test_entity_types_join_whatever_the_spelling(raw: str) -> None:
    """bill, BILL and Bill are one type."""
    assert normalize_entity_type(raw) == "BILL"


@given(raw=st.text(max_size=30))
def test_normalize_entity_type_is_idempotent(raw: str) -> None:
    """Normalising a type twice changes nothing."""
    once = normalize_entity_type(raw)
    assert normalize_entity_type(once) == once


@pytest.mark.parametrize(
    ("normalized", "valid"),
    [
        ("4-1439202892", True),
        ("-1329046972", True),
        ("", False),
        ("A B", False),
        ("../X", False),
        ("--", False),
    ],
    ids=["desktop", "counter-was-prefix", "empty", "space", "traversal", "no-alnum"],
)
def test_is_valid_legacy_id(normalized: str, valid: bool) -> None:
    """Only ids that could name a desktop record are valid."""
    assert is_valid_legacy_id(normalized) is valid
