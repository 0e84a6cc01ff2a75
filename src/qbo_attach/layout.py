"""FILES_LAYOUT: which folder of a legacy path holds the id, the type and the file.

A layout is a ``/``-separated pattern such as
``{legacy_entity_type}/{raw_legacy_id}/{file_name}``. Each segment is either a
literal folder name, which a path must repeat exactly, or a ``{name}``
placeholder that takes the whole folder name. ``{file_name}`` comes last,
``{raw_legacy_id}`` appears exactly once, ``{legacy_entity_type}`` at most once,
and any other placeholder (``{client}``) matches any folder and is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qbo_attach.errors import UsageError
from qbo_attach.settings import DEFAULT_LAYOUT

RAW_LEGACY_ID = "raw_legacy_id"
LEGACY_ENTITY_TYPE = "legacy_entity_type"
FILE_NAME = "file_name"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A path segment read from disk is never "." or "..", so such a literal
# would make every path a mismatch.
_UNMATCHABLE = frozenset({".", ".."})


@dataclass(frozen=True, slots=True)
class FolderMatch:
    """What the folders above a file say about it, as spelt on disk."""

    raw_legacy_id: str
    legacy_entity_type: str  # "" when the layout has no type folder


@dataclass(frozen=True, slots=True)
class LayoutMatch:
    """The named parts of one file's path, as spelt on disk."""

    raw_legacy_id: str
    legacy_entity_type: str  # "" when the layout has no type folder
    file_name: str


@dataclass(frozen=True, slots=True)
class Layout:
    """A parsed FILES_LAYOUT; build it with ``Layout.parse``."""

    pattern: str
    depth: int
    id_index: int
    type_index: int | None
    literals: tuple[tuple[int, str], ...]

    @classmethod
    def parse(cls, pattern: str) -> Layout:
        """Read a FILES_LAYOUT pattern, raising ``UsageError`` when it is unusable."""
        segments = _split(pattern)
        names = [_placeholder(pattern, segment) for segment in segments]
        _check_names(pattern, names)
        literals = tuple(
            (index, segment)
            for index, (segment, name) in enumerate(zip(segments, names, strict=True))
            if name is None
        )
        type_index = (
            names.index(LEGACY_ENTITY_TYPE) if LEGACY_ENTITY_TYPE in names else None
        )
        return cls(
            pattern=pattern,
            depth=len(segments),
            id_index=names.index(RAW_LEGACY_ID),
            type_index=type_index,
            literals=literals,
        )

    def match_folder(self, folders: Sequence[str]) -> FolderMatch | None:
        """Match the folder names above a file, or ``None`` when they do not fit.

        ``{file_name}`` takes any name, so a file matches exactly when its
        folders do; the inventory asks once per folder instead of once per file.
        """
        if len(folders) != self.depth - 1:
            return None
        for index, literal in self.literals:
            if folders[index] != literal:
                return None
        entity_type = "" if self.type_index is None else folders[self.type_index]
        return FolderMatch(folders[self.id_index], entity_type)

    def match(self, parts: Sequence[str]) -> LayoutMatch | None:
        """Match a file's path segments below FILES_DIR, or ``None``."""
        if not parts:
            return None
        folder = self.match_folder(parts[:-1])
        if folder is None:
            return None
        return LayoutMatch(folder.raw_legacy_id, folder.legacy_entity_type, parts[-1])


def _split(pattern: str) -> list[str]:
    if not pattern.strip():
        raise UsageError(
            "FILES_LAYOUT is empty; set it to a path pattern such as "
            f"{DEFAULT_LAYOUT!r}, or unset it to use that default."
        )
    segments = pattern.split("/")
    if any(segment == "" for segment in segments):
        raise UsageError(
            f"FILES_LAYOUT {pattern!r} has an empty segment; separate segments "
            "with single '/' and start or end none of them with '/'."
        )
    return segments


def _placeholder(pattern: str, segment: str) -> str | None:
    """The placeholder name of a segment, or ``None`` for a literal folder name."""
    found = _PLACEHOLDER.fullmatch(segment)
    if found is not None:
        return found.group(1)
    if "{" in segment or "}" in segment:
        raise UsageError(
            f"FILES_LAYOUT {pattern!r}: segment {segment!r} is not a placeholder; "
            "a placeholder is a name of letters, digits and underscores in braces, "
            "such as '{raw_legacy_id}', and takes the whole segment."
        )
    if segment in _UNMATCHABLE:
        raise UsageError(
            f"FILES_LAYOUT {pattern!r}: segment {segment!r} can never match a "
            "folder; remove it and give the path from FILES_DIR down."
        )
    return None


def _check_names(pattern: str, names: list[str | None]) -> None:
    if names[-1] != FILE_NAME or names.count(FILE_NAME) != 1:
        raise UsageError(
            f"FILES_LAYOUT {pattern!r} must end with '{{{FILE_NAME}}}' and "
            "name it nowhere else; the last segment is the file itself."
        )
    if names.count(RAW_LEGACY_ID) != 1:
        raise UsageError(
            f"FILES_LAYOUT {pattern!r} must name '{{{RAW_LEGACY_ID}}}' exactly once "
            f"(found {names.count(RAW_LEGACY_ID)}); mark the one folder that "
            "holds the legacy id."
        )
    if names.count(LEGACY_ENTITY_TYPE) > 1:
        raise UsageError(
            f"FILES_LAYOUT {pattern!r} names '{{{LEGACY_ENTITY_TYPE}}}' "
            f"{names.count(LEGACY_ENTITY_TYPE)} times; keep at most one, for the "
            "folder that holds the entity type."
        )
