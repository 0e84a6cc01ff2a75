"""A multipart/form-data reader for the fake's upload endpoint.

QBO's clients send bodies that general-purpose parsers refuse or misread: one
popular Python client frames the whole body with bare LF instead of CRLF, and
the PHP and Java SDKs send the file base64-encoded with a
``Content-Transfer-Encoding`` header. Starlette's parser rejects the first and
hands back the second still encoded, so the fake reads the wire itself.

The framing (CRLF or LF) is taken from the line that ends the first boundary
and then applied to the whole body; a part's content is every byte between the
blank line after its headers and the line break before the next boundary, so
any binary content, ``\\r``, ``\\n`` and ``--`` included, comes back exact.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass

_CRLF = b"\r\n"
_LF = b"\n"
_WHITESPACE = b" \t"
# A header parameter: name, then a quoted string (with backslash escapes) or a
# bare token running to the next semicolon.
_PARAMETER = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:\\.|[^"\\])*"|[^;]*)')
_ESCAPED = re.compile(r"\\(.)")


class MultipartError(ValueError):
    """The body is not a multipart/form-data message this reader can split."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a form: its field name, headers and decoded content."""

    name: str
    filename: str | None
    content_type: str  # lower-case media type without parameters, "" if absent
    headers: dict[str, str]  # lower-case names
    content: bytes  # with any Content-Transfer-Encoding undone


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split a header value into its lower-case main value and its parameters."""
    main, semicolon, rest = value.partition(";")
    parameters: dict[str, str] = {}
    for match in _PARAMETER.finditer(semicolon + rest):
        parameters[match.group(1).lower()] = _unquote(match.group(2).strip())
    return main.strip().lower(), parameters


def boundary_from(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type header value."""
    media_type, parameters = parse_header_value(content_type)
    if media_type != "multipart/form-data":
        raise MultipartError(
            f"Content-Type is {media_type or 'missing'!r}; expected multipart/form-data"
        )
    boundary = parameters.get("boundary", "")
    if not boundary:
        raise MultipartError("Content-Type multipart/form-data has no boundary")
    return boundary.encode("latin-1", errors="replace")


def parse(body: bytes, boundary: bytes) -> list[Part]:
    """Split a multipart body into its parts, in the order they were sent."""
    eol, chunks = _split(body, b"--" + boundary)
    return [_read_part(chunk, eol) for chunk in chunks]


def _split(body: bytes, dash_boundary: bytes) -> tuple[bytes, list[bytes]]:
    position = _first_boundary(body, dash_boundary) + len(dash_boundary)
    if body.startswith(b"--", position):
        return _CRLF, []
    eol = _line_end_after(body, position)
    if eol is None:
        raise MultipartError("the first boundary is not followed by a line break")
    position = _skip_line_end(body, position, eol)
    delimiter = eol + dash_boundary
    chunks: list[bytes] = []
    search = position
    while True:
        found = body.find(delimiter, search)
        if found < 0:
            raise MultipartError("no closing boundary: the body is cut short")
        after = found + len(delimiter)
        if body.startswith(b"--", after):
            chunks.append(body[position:found])
            return eol, chunks
        if _line_end_after(body, after) != eol:
            # The boundary text followed by other bytes is content, not a
            # delimiter; a careful client never sends that, but it is no
            # reason to cut the part there.
            search = found + 1
            continue
        chunks.append(body[position:found])
        position = search = _skip_line_end(body, after, eol)


def _first_boundary(body: bytes, dash_boundary: bytes) -> int:
    if body.startswith(dash_boundary):
        return 0
    found = body.find(_LF + dash_boundary)
    if found < 0:
        raise MultipartError("the body does not contain the boundary it announces")
    return found + 1


def _line_end_after(body: bytes, position: int) -> bytes | None:
    """The line break after optional blanks at ``position``, if there is one."""
    while body[position : position + 1] in (b" ", b"\t"):
        position += 1
    if body.startswith(_CRLF, position):
        return _CRLF
    if body.startswith(_LF, position):
        return _LF
    return None


def _skip_line_end(body: bytes, position: int, eol: bytes) -> int:
    while body[position : position + 1] in (b" ", b"\t"):
        position += 1
    return position + len(eol)


def _read_part(chunk: bytes, eol: bytes) -> Part:
    if chunk.startswith(eol):
        head, content = b"", chunk[len(eol) :]
    else:
        blank = chunk.find(eol + eol)
        if blank < 0:
            raise MultipartError("a part has no blank line after its headers")
        head, content = chunk[:blank], chunk[blank + 2 * len(eol) :]
    headers = _read_headers(head, eol)
    disposition, parameters = parse_header_value(headers.get("content-disposition", ""))
    name = parameters.get("name", "")
    if disposition != "form-data" or not name:
        raise MultipartError("a part has no Content-Disposition: form-data; name=")
    media_type, _ = parse_header_value(headers.get("content-type", ""))
    return Part(
        name=name,
        filename=_filename(parameters),
        content_type=media_type,
        headers=headers,
        content=_decode(content, headers.get("content-transfer-encoding", "")),
    )


def _read_headers(head: bytes, eol: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for raw_line in head.split(eol) if head else []:
        line = _text(raw_line)
        if line[:1] in (" ", "\t") and last:
            headers[last] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise MultipartError(f"a part has a malformed header line {line!r}")
        last = name.strip().lower()
        headers[last] = value.strip()
    return headers


def _text(raw: bytes) -> str:
    # Clients put UTF-8 file names in headers unencoded; older ones use Latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPED.sub(r"\1", value[1:-1])
    return value


def _filename(parameters: dict[str, str]) -> str | None:
    extended = parameters.get("filename*")
    if extended:
        charset, _, encoded = extended.partition("'")
        _, _, encoded = encoded.partition("'")
        try:
            return urllib.parse.unquote(encoded, encoding=charset or "utf-8")
        except LookupError:
            raise MultipartError(f"unknown charset in filename*={extended}") from None
    return parameters.get("filename")


def _decode(content: bytes, transfer_encoding: str) -> bytes:
    encoding = transfer_encoding.strip().lower()
    if encoding in ("", "binary", "7bit", "8bit"):
        return content
    if encoding == "base64":
        # MIME wraps base64 at 76 columns; the line breaks are not data.
        compact = content.translate(None, _WHITESPACE + _CRLF)
        try:
            return base64.b64decode(compact, validate=True)
        except binascii.Error as exc:
            raise MultipartError(f"a part is not valid base64: {exc}") from None
    if encoding == "quoted-printable":
        return binascii.a2b_qp(content)
    raise MultipartError(f"unsupported Content-Transfer-Encoding {encoding!r}")
