"""Turn QBO's error answers, in all their shapes, into the package's exceptions.

QBO answers errors as JSON with ``Fault`` (upper case), as JSON with ``fault``
(lower case, the authentication layer), as XML (throttling), or as HTML from a
proxy. Business errors on upload come inside an HTTP 200.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from qbo_attach.errors import PermanentError, RemoteError, TransientError

# The key under which the client leaves a call's duration on its response.
DURATION = "qbo_attach.duration_ms"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_XML_CODE = re.compile(r"<Error[^>]*\bcode=\"([^\"]*)\"")
_XML_DETAIL = re.compile(r"<Detail>(.*?)</Detail>", re.DOTALL)
_XML_MESSAGE = re.compile(r"<Message>(.*?)</Message>", re.DOTALL)


def intuit_tid(response: httpx.Response) -> str:
    """The transaction id Intuit support asks for; header names vary in case."""
    headers = response.headers
    return str(headers.get("intuit_tid") or headers.get("intuit-tid", ""))


def error_from_response(response: httpx.Response) -> RemoteError:
    """The exception for a non-2xx answer: transient or permanent, with its code."""
    code, detail = _describe(response)
    cls = TransientError if response.status_code in TRANSIENT_STATUS else PermanentError
    error = cls(
        f"HTTP {response.status_code}: {detail}",
        status_code=response.status_code,
        error_code=code,
        intuit_tid=intuit_tid(response),
        retry_after=_retry_after(response),
    )
    error.duration_ms = response.extensions.get(DURATION)
    return error


def error_from_fault(fault: dict[str, Any], response: httpx.Response) -> PermanentError:
    """The exception for a Fault object found inside a successful answer."""
    code, detail = _fault_details(fault)
    error = PermanentError(
        f"{fault.get('type', 'Fault')}: {detail}",
        status_code=response.status_code,
        error_code=code,
        intuit_tid=intuit_tid(response),
    )
    error.duration_ms = response.extensions.get(DURATION)
    return error


def _describe(response: httpx.Response) -> tuple[str, str]:
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        return _describe_text(text, response.reason_phrase)
    if isinstance(body, dict):
        fault = body.get("Fault") or body.get("fault")
        if isinstance(fault, dict):
            return _fault_details(fault)
        if "error" in body:
            return str(body["error"]), str(body.get("error_description", body["error"]))
    return "", text[:200]


def _describe_text(text: str, reason: str) -> tuple[str, str]:
    code = _XML_CODE.search(text)
    detail = _XML_DETAIL.search(text) or _XML_MESSAGE.search(text)
    if code or detail:
        return (
            code.group(1) if code else "",
            detail.group(1).strip() if detail else reason,
        )
    # HTML from a proxy says nothing useful beyond the status line.
    return "", reason or text[:200]


def _fault_details(fault: dict[str, Any]) -> tuple[str, str]:
    errors = fault.get("Error") or fault.get("error") or []
    if not errors or not isinstance(errors, list):
        return "", str(fault.get("type", "unknown fault"))
    first = errors[0]
    code = str(first.get("code", ""))
    detail = first.get("Detail") or first.get("detail") or first.get("Message")
    return code, str(detail or first.get("message", ""))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date is allowed too; QBO has not been seen sending either.
        return None
