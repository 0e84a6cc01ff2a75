"""The QBO query language, as far as the fake answers it.

A statement reads::

    SELECT * | COUNT(*) FROM <entity>
      [WHERE <field> <op> <value> [AND ...]]
      [ORDERBY <field> [ASC|DESC] [, ...]]
      [STARTPOSITION <n>] [MAXRESULTS <m>]

with the operators ``=``, ``<``, ``>``, ``<=``, ``>=``, ``IN (...)`` and
``LIKE``. Keywords, entity names and field names are case-insensitive; values
are compared as sent. Like QBO, the language has no OR, JOIN or GROUP BY.

Errors carry QBO's codes: 4000 with a ``QueryParserError`` detail for a
statement that does not parse, 4001 with a ``QueryValidationError`` detail for
one that parses but names an unknown entity or field or asks for a page out of
range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RESULTS_LIMIT = 1000
DEFAULT_MAX_RESULTS = 100

# Entity -> its queryable fields, spelled as QBO spells them.
QUERYABLE_FIELDS: dict[str, tuple[str, ...]] = {
    "Attachable": (
        "Id",
        "FileName",
        "AttachableRef.EntityRef.Type",
        "AttachableRef.EntityRef.Value",
        "Size",
        "ContentType",
        "MetaData.CreateTime",
    ),
    "QbdtEntityIdMapping": (
        "QbdtExportableId",
        "QbdtEntityType",
        "QboEntityId",
        "QboEntityType",
    ),
}

_COMPARISONS = frozenset({"=", "<", ">", "<=", ">="})
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.|'')*')
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<symbol><=|>=|[=<>(),*])
    )""",
    re.VERBOSE | re.DOTALL,
)
_STRING_ESCAPE = re.compile(r"\\(.)|''", re.DOTALL)


class QueryError(ValueError):
    """A statement the fake cannot answer; carries QBO's code and wording."""

    code = "4000"
    message = "Error parsing query"
    kind = "QueryParserError"

    @property
    def detail(self) -> str:
        return f"{self.kind}: {self}"


class QueryParseError(QueryError):
    """The statement does not follow the grammar."""


class QueryValidationError(QueryError):
    """The statement parses but names something unknown or out of range."""

    code = "4001"
    message = "Invalid query"
    kind = "QueryValidationError"


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``field op value`` test of a WHERE clause."""

    field: str
    operator: str  # "=", "<", ">", "<=", ">=", "IN" or "LIKE"
    values: tuple[str, ...]  # one value, several for IN


@dataclass(frozen=True, slots=True)
class Ordering:
    """One key of an ORDERBY clause."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed statement with canonical entity and field names."""

    entity: str
    count: bool = False
    conditions: tuple[Condition, ...] = ()
    order_by: tuple[Ordering, ...] = ()
    start_position: int = 1  # 1-based, as QBO counts
    max_results: int = DEFAULT_MAX_RESULTS


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "string", "number", "word", "symbol" or "end"
    text: str  # the value: unquoted for strings, upper case for symbols
    position: int  # offset in the statement, for error messages

    def is_keyword(self, *keywords: str) -> bool:
        return self.kind == "word" and self.text.upper() in keywords

    def shown(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def parse_query(statement: str) -> Query:
    """Parse a QBO query statement; raise ``QueryError`` when it is not one."""
    return _Parser(_tokenize(statement)).statement()


def _tokenize(statement: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while statement[position:].strip():
        match = _TOKEN.match(statement, position)
        if match is None or match.lastgroup is None:
            raise _bad_character(statement, position)
        kind = match.lastgroup
        tokens.append(_Token(kind, _token_text(kind, match[kind]), match.start(kind)))
        position = match.end()
    tokens.append(_Token("end", "", len(statement)))
    return tokens


def _bad_character(statement: str, position: int) -> QueryParseError:
    where = len(statement) - len(statement[position:].lstrip())
    if statement[where] == "'":
        return QueryParseError(f"unterminated string starting at position {where}")
    return QueryParseError(
        f"unexpected character {statement[where]!r} at position {where}"
    )


def _token_text(kind: str, raw: str) -> str:
    if kind != "string":
        return raw
    return _STRING_ESCAPE.sub(lambda m: m.group(1) or "'", raw[1:-1])


class _Parser:
    """Recursive descent over the token list, one method per clause."""

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def statement(self) -> Query:
        self._keyword("SELECT")
        count = self._projection()
        self._keyword("FROM")
        entity = _canonical_entity(self._word("an entity name"))
        conditions = self._where(entity)
        order_by = self._order_by(entity)
        start, maximum = self._paging()
        if self._peek().kind != "end":
            raise self._unexpected("STARTPOSITION, MAXRESULTS or the end")
        return Query(entity, count, conditions, order_by, start, maximum)

    def _projection(self) -> bool:
        if self._symbol_next("*"):
            return False
        if self._peek().is_keyword("COUNT"):
            self._advance()
            for symbol in "(*)":
                self._symbol(symbol)
            return True
        raise self._unexpected("* or COUNT(*)")

    def _where(self, entity: str) -> tuple[Condition, ...]:
        if not self._keyword_next("WHERE"):
            return ()
        conditions = [self._condition(entity)]
        while self._keyword_next("AND"):
            conditions.append(self._condition(entity))
        if self._peek().is_keyword("OR"):
            raise self._unexpected("AND (the query language has no OR)")
        return tuple(conditions)

    def _condition(self, entity: str) -> Condition:
        field = _canonical_field(entity, self._word("a field name"))
        token = self._advance()
        if token.kind == "symbol" and token.text in _COMPARISONS:
            return Condition(field, token.text, (self._value(),))
        if token.is_keyword("LIKE"):
            return Condition(field, "LIKE", (self._string(),))
        if token.is_keyword("IN"):
            return Condition(field, "IN", self._value_list())
        raise self._unexpected("=, <, >, <=, >=, IN or LIKE", token)

    def _value_list(self) -> tuple[str, ...]:
        self._symbol("(")
        values = [self._value()]
        while self._symbol_next(","):
            values.append(self._value())
        self._symbol(")")
        return tuple(values)

    def _order_by(self, entity: str) -> tuple[Ordering, ...]:
        if self._keyword_next("ORDER"):
            self._keyword("BY")
        elif not self._keyword_next("ORDERBY"):
            return ()
        orderings = [self._ordering(entity)]
        while self._symbol_next(","):
            orderings.append(self._ordering(entity))
        return tuple(orderings)

    def _ordering(self, entity: str) -> Ordering:
        field = _canonical_field(entity, self._word("a field name"))
        if self._keyword_next("DESC"):
            return Ordering(field, descending=True)
        self._keyword_next("ASC")
        return Ordering(field)

    def _paging(self) -> tuple[int, int]:
        found: dict[str, int] = {}
        while self._peek().is_keyword("STARTPOSITION", "MAXRESULTS"):
            keyword = self._advance().text.upper()
            if keyword in found:
                raise QueryParseError(f"{keyword} given twice")
            found[keyword] = self._integer()
        start = found.get("STARTPOSITION", 1)
        maximum = found.get("MAXRESULTS", DEFAULT_MAX_RESULTS)
        if start < 1:
            raise QueryValidationError(f"STARTPOSITION must be 1 or more, not {start}")
        if not 1 <= maximum <= MAX_RESULTS_LIMIT:
            raise QueryValidationError(
                f"MAXRESULTS must be between 1 and {MAX_RESULTS_LIMIT}, not {maximum}"
            )
        return start, maximum

    def _value(self) -> str:
        token = self._advance()
        if token.kind in ("string", "number") or token.is_keyword("TRUE", "FALSE"):
            return token.text
        raise self._unexpected("a quoted value or a number", token)

    def _string(self) -> str:
        token = self._advance()
        if token.kind != "string":
            raise self._unexpected("a quoted pattern", token)
        return token.text

    def _integer(self) -> int:
        token = self._advance()
        if token.kind != "number" or not token.text.lstrip("-").isdigit():
            raise self._unexpected("a whole number", token)
        return int(token.text)

    def _word(self, expected: str) -> str:
        token = self._advance()
        if token.kind != "word":
            raise self._unexpected(expected, token)
        return token.text

    def _keyword(self, keyword: str) -> None:
        if not self._keyword_next(keyword):
            raise self._unexpected(keyword)

    def _keyword_next(self, keyword: str) -> bool:
        if self._peek().is_keyword(keyword):
            self._advance()
            return True
        return False

    def _symbol(self, symbol: str) -> None:
        if not self._symbol_next(symbol):
            raise self._unexpected(repr(symbol))

    def _symbol_next(self, symbol: str) -> bool:
        token = self._peek()
        if token.kind == "symbol" and token.text == symbol:
            self._advance()
            return True
        return False

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        if token.kind != "end":
            self._index += 1
        return token

    def _unexpected(self, expected: str, token: _Token | None = None) -> QueryError:
        token = token or self._peek()
        return QueryParseError(
            f"encountered {token.shown()} at position {token.position}; "
            f"expected {expected}"
        )


def _canonical_entity(name: str) -> str:
    for entity in QUERYABLE_FIELDS:
        if entity.lower() == name.lower():
            return entity
    raise QueryValidationError(
        f"{name!r} is not a queryable entity; "
        f"the fake knows {', '.join(QUERYABLE_FIELDS)}"
    )


def _canonical_field(entity: str, name: str) -> str:
    for field in QUERYABLE_FIELDS[entity]:
        if field.lower() == name.lower():
            return field
    raise QueryValidationError(f"property {name!r} is not queryable on {entity}")
