"""The one rule for legacy identifiers and entity type names.

Every stage joins and logs ids in the form ``normalize_legacy_id`` gives, so
the inventory, the mapping and the logs always agree.
"""

from __future__ import annotations

import re

DEFAULT_LEGACY_ID_PREFIX = "80"

# Desktop ids are "<hex counter>-<epoch>"; other layouts may carry other ids,
# so only characters that cannot be part of any id are refused. A leading
# hyphen is allowed: a TxnID whose counter is the prefix itself (8080-...)
# normalises to "-<epoch>" on both sides of the join.
_VALID_ID = re.compile(r"(?=.*[0-9A-Z])[0-9A-Z_.-]+")
_TYPE_SEPARATORS = re.compile(r"[\s_-]+")


def normalize_legacy_id(raw: str, prefix: str = DEFAULT_LEGACY_ID_PREFIX) -> str:
    """Return the join form of a legacy id: trimmed, prefix removed, upper case.

    The prefix is removed for as long as the id starts with it, which makes the
    rule idempotent: the tree's ``8080000004-1424241304`` and the mapping's
    ``80000004-1424241304`` both become ``000004-1424241304``. The original
    spellings stay in ``raw_legacy_id`` and ``qbdt_exportable_id``.

    The price of idempotence: counters that differ only by leading prefixes
    (``80A3-T`` and ``A3-T``) normalise alike. Desktop counters are sequential
    and the epoch is the creation second, so two such records would have to
    be created in the same second 32,768 records apart; the gate reports such
    a pair as ``ambiguous_mapping`` rather than guessing.
    """
    text = raw.strip().upper()
    marker = prefix.strip().upper()
    if not marker:
        return text
    while text.startswith(marker):
        text = text[len(marker) :].strip()
    return text


def is_valid_legacy_id(normalized: str) -> bool:
    """Tell whether a normalised id can name a desktop record at all."""
    return _VALID_ID.fullmatch(normalized) is not None


def normalize_entity_type(raw: str) -> str:
    """Return the join form of an entity type name: ``Purchase Order`` -> PURCHASEORDER.

    Desktop folders and the mapping spell types differently (``Bill``, ``BILL``,
    ``purchase_order``); spaces, underscores and hyphens carry no meaning.
    """
    return _TYPE_SEPARATORS.sub("", raw).upper()
