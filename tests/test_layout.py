"""FILES_LAYOUT parsing and matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qbo_attach.errors import UsageError
from qbo_attach.layout import Layout, LayoutMatch
from qbo_attach.settings import DEFAULT_LAYOUT

TXN_LAYOUT = "Attach/{client}/Txn/{raw_legacy_id}/{file_name}"


@pytest.mark.parametrize(
    ("pattern", "depth"),
    [
        pytest.param(DEFAULT_LAYOUT, 3, id="default"),
        pytest.param(TXN_LAYOUT, 5, id="literals-and-other-names"),
        pytest.param("{raw_legacy_id}/{file_name}", 2, id="id-only"),
        pytest.param(
            "{legacy_entity_type}/x/{raw_legacy_id}/{file_name}", 4, id="type-literal"
        ),
    ],
)
def test_valid_patterns_parse(pattern: str, depth: int) -> None:
    """A usable pattern parses and counts its segments."""
    layout = Layout.parse(pattern)

    assert layout.depth == depth
    assert layout.pattern == pattern


@pytest.mark.parametrize(
    ("pattern", "parts", "expected"),
    [
        pytest.param(
            DEFAULT_LAYOUT,
            ("Bill", "80ABC123", "invoice.pdf"),
            LayoutMatch("80ABC123", "Bill", "invoice.pdf"),
            id="default",
        ),
        pytest.param(
            TXN_LAYOUT,
            ("Attach", "Acme Ltd", "Txn", "804-1439202892", "scan.jpg"),
            LayoutMatch("804-1439202892", "", "scan.jpg"),
            id="no-type-folder",
        ),
        pytest.param(
            "{raw_legacy_id}/{file_name}",
            ("80X", "a b, c.pdf"),
            LayoutMatch("80X", "", "a b, c.pdf"),
            id="id-only",
        ),
    ],
)
def test_match_reads_named_segments(
    pattern: str, parts: tuple[str, ...], expected: LayoutMatch
) -> None:
    """A path that fits gives its id, entity type and file name as spelt on disk."""
    assert Layout.parse(pattern).match(parts) == expected


@pytest.mark.parametrize(
    ("pattern", "parts"),
    [
        pytest.param(DEFAULT_LAYOUT, ("Bill", "a.pdf"), id="too-shallow"),
        pytest.param(DEFAULT_LAYOUT, ("Bill", "80X", "sub", "a.pdf"), id="too-deep"),
        pytest.param(DEFAULT_LAYOUT, (), id="empty"),
        pytest.param(TXN_LAYOUT, ("Attach", "Acme", "Other", "80X", "a"), id="literal"),
        pytest.param(TXN_LAYOUT, ("attach", "Acme", "Txn", "80X", "a"), id="case"),
    ],
)
def test_match_refuses_paths_that_do_not_fit(
    pattern: str, parts: tuple[str, ...]
) -> None:
    """Wrong depth or a literal that differs, even in case, is no match."""
    assert Layout.parse(pattern).match(parts) is None


def test_match_folder_reads_the_folders_above_a_file() -> None:
    """The folders alone give the id and type that every file in them shares."""
    found = Layout.parse(DEFAULT_LAYOUT).match_folder(("Invoice", "80Q"))

    assert found is not None
    assert (found.raw_legacy_id, found.legacy_entity_type) == ("80Q", "Invoice")


@pytest.mark.parametrize(
    ("pattern", "fix"),
    [
        pytest.param("/{raw_legacy_id}/{file_name}", "empty segment", id="lead-slash"),
        pytest.param("{raw_legacy_id}/{file_name}/", "empty segment", id="end-slash"),
        pytest.param("{raw_legacy_id}//{file_name}", "empty segment", id="double"),
        pytest.param("{legacy_entity_type}/{file_name}", "exactly once", id="no-id"),
        pytest.param(
            "{raw_legacy_id}/{raw_legacy_id}/{file_name}", "exactly once", id="two-ids"
        ),
        pytest.param("{file_name}/{raw_legacy_id}", "must end with", id="name-first"),
        pytest.param("{raw_legacy_id}/x.pdf", "must end with", id="no-file-name"),
        pytest.param(
            "{file_name}/{raw_legacy_id}/{file_name}", "must end with", id="two-names"
        ),
        pytest.param(
            "{legacy_entity_type}/{legacy_entity_type}/{raw_legacy_id}/{file_name}",
            "at most one",
            id="two-types",
        ),
        pytest.param("ID_{raw_legacy_id}/{file_name}", "whole segment", id="mixed"),
        pytest.param("{raw legacy id}/{file_name}", "whole segment", id="spaces"),
        pytest.param("{}/{raw_legacy_id}/{file_name}", "whole segment", id="no-name"),
        pytest.param("../{raw_legacy_id}/{file_name}", "never match", id="dotdot"),
    ],
)
def test_bad_patterns_say_what_to_fix(pattern: str, fix: str) -> None:
    """A bad pattern is refused naming FILES_LAYOUT, quoting it, saying the fix."""
    with pytest.raises(UsageError) as caught:
        Layout.parse(pattern)

    message = str(caught.value)
    assert "FILES_LAYOUT" in message
    assert repr(pattern) in message
    assert fix in message


@pytest.mark.parametrize("pattern", ["", "   "], ids=["empty", "blank"])
def test_empty_pattern_suggests_the_default(pattern: str) -> None:
    """An empty FILES_LAYOUT is refused with the default shown as an example."""
    with pytest.raises(UsageError, match="FILES_LAYOUT is empty") as caught:
        Layout.parse(pattern)

    assert DEFAULT_LAYOUT in str(caught.value)


_FOLDER_NAMES = st.text(min_size=1).filter(lambda name: "/" not in name)


@given(entity_type=_FOLDER_NAMES, raw_id=_FOLDER_NAMES, file_name=_FOLDER_NAMES)
def test_default_layout_matches_any_three_names(
    entity_type: str, raw_id: str, file_name: str
) -> None:
    """Placeholders take any folder name whole, whatever characters it holds."""
    found = Layout.parse(DEFAULT_LAYOUT).match((entity_type, raw_id, file_name))

    assert found == LayoutMatch(raw_id, entity_type, file_name)
