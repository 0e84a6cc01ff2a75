"""An asynchronous client for the parts of the QBO API the migration uses.

Every call goes through ``httpx.AsyncClient``: against Intuit, against a
``fake-server`` on loopback, or against the fake mounted in-process through
httpx's ASGI transport. The client knows QBO's wire format; it does not retry,
which is the uploader's decision.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

from qbo_attach.errors import PermanentError, TransientError, UsageError
from qbo_attach.qbo import auth
from qbo_attach.qbo.faults import (
    DURATION,
    error_from_fault,
    error_from_response,
    intuit_tid,
)
from qbo_attach.qbo.limits import RealmGate, RealmLimits
from qbo_attach.settings import Settings

MINOR_VERSION = "75"
PAGE_SIZE = 1000
QUERY_ATTEMPTS = 5
# QBO cuts requests after 120 s; waiting longer only hides a dead connection.
TIMEOUT = httpx.Timeout(120.0, connect=15.0)
FAKE_BASE_URL = "http://fake-qbo.invalid"


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What QBO said about one uploaded file."""

    attachable_id: str
    status_code: int
    intuit_tid: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Attachable:
    """The parts of a remote Attachable the migration compares."""

    attachable_id: str
    file_name: str
    size: int | None
    entity_type: str
    entity_id: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> list[Attachable]:
        """One entry per record the attachable is linked to."""
        refs = body.get("AttachableRef") or [{}]
        size = body.get("Size")
        return [
            cls(
                attachable_id=str(body.get("Id", "")),
                file_name=str(body.get("FileName", "")),
                size=int(size) if size is not None else None,
                entity_type=str(ref.get("EntityRef", {}).get("type", "")),
                entity_id=str(ref.get("EntityRef", {}).get("value", "")),
            )
            for ref in refs
        ]

    @property
    def key(self) -> tuple[str, str, str]:
        """The idempotency key this attachable fills."""
        return (self.entity_type, self.entity_id, self.file_name)


class QboClient:
    """Calls on one company (realm) through an open HTTP client.

    Every request passes the realm's gate, which keeps the client within
    QBO's limits and pauses the realm when QBO throttles it anyway. Against a
    real target ``session`` holds the OAuth tokens the HTTP client carries.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        realm_id: str,
        gate: RealmGate | None = None,
        session: auth.TokenSession | None = None,
    ) -> None:
        self.http = http
        self.realm_id = realm_id
        self.gate = gate or RealmGate(RealmLimits(rate_per_minute=None))
        self.session = session

    def _url(self, endpoint: str) -> str:
        return f"/v3/company/{self.realm_id}/{endpoint}"

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send once the gate admits; the call's own time goes with the answer.

        The time spent waiting at the gate is not the remote's: durations in
        the run log measure only the call, from send to the whole answer.
        """
        async with self.gate.admit():
            began = time.monotonic()
            try:
                response = await self.http.send(request)
            except httpx.TransportError as exc:
                timed_out = isinstance(exc, httpx.TimeoutException)
                kind = "timed out" if timed_out else "connection failed"
                lost = TransientError(f"{kind}: {exc!r}")
                lost.duration_ms = _since(began)
                raise lost from exc
            response.extensions[DURATION] = _since(began)
        if response.status_code == 429:
            throttled = error_from_response(response)
            self.gate.throttled(throttled.retry_after)
            raise throttled
        return response

    async def query(self, statement: str) -> dict[str, Any]:
        """Run one query statement; return its ``QueryResponse`` object.

        A query changes nothing, so a transient failure is simply retried
        (with backoff, waiting through the realm gate's clock); the uploader
        retries uploads itself, since each attempt must be logged.
        """
        attempts = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(QUERY_ATTEMPTS),
            wait=tenacity.wait_exponential_jitter(initial=1.0, max=30.0),
            retry=tenacity.retry_if_exception_type(TransientError),
            sleep=self.gate.sleep,
            reraise=True,
        )
        async for attempt in attempts:
            with attempt:
                return await self._query_once(statement)
        raise AssertionError("tenacity returns or raises")  # pragma: no cover

    async def _query_once(self, statement: str) -> dict[str, Any]:
        request = self.http.build_request(
            "POST",
            self._url("query"),
            params={"minorversion": MINOR_VERSION},
            content=statement.encode(),
            headers={"Content-Type": "application/text", "Accept": "application/json"},
        )
        response = await self._send(request)
        if response.status_code != 200:
            raise error_from_response(response)
        body = _json(response)
        result = body.get("QueryResponse", {})
        if not isinstance(result, dict):
            raise PermanentError("QueryResponse is not an object", status_code=200)
        return result

    async def query_pages(
        self, entity: str, where: str = "", page_size: int = PAGE_SIZE
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield every row of ``entity`` a page at a time, in the remote's order."""
        condition = f" where {where}" if where else ""
        start = 1
        while True:
            statement = (
                f"select * from {entity}{condition} "
                f"startposition {start} maxresults {page_size}"
            )
            rows = (await self.query(statement)).get(entity, [])
            if rows:
                yield rows
            if len(rows) < page_size:
                return
            start += page_size

    async def company_name(self) -> str:
        """The company's name from ``CompanyInfo``, to show whose books these are."""
        request = self.http.build_request(
            "GET",
            self._url(f"companyinfo/{self.realm_id}"),
            params={"minorversion": MINOR_VERSION},
            headers={"Accept": "application/json"},
        )
        response = await self._send(request)
        if response.status_code != 200:
            raise error_from_response(response)
        info = _json(response).get("CompanyInfo", {})
        name = info.get("CompanyName") if isinstance(info, dict) else None
        return str(name or "(no CompanyName in CompanyInfo)")

    async def count(self, entity: str) -> int:
        result = await self.query(f"select count(*) from {entity}")
        return int(result.get("totalCount", 0))

    async def attachables_of(
        self, entity_type: str, entity_id: str
    ) -> list[Attachable]:
        """The attachables linked to one record."""
        where = (
            f"AttachableRef.EntityRef.Type = '{_quote(entity_type)}' "
            f"and AttachableRef.EntityRef.Value = '{_quote(entity_id)}'"
        )
        found: list[Attachable] = []
        async for page in self.query_pages("Attachable", where):
            for body in page:
                found.extend(Attachable.from_json(body))
        return found

    async def upload(
        self,
        *,
        entity_type: str,
        entity_id: str,
        file_name: str,
        content_type: str,
        content: bytes,
        request_id: str,
    ) -> UploadResult:
        """Attach one file to one record; raise a ``RemoteError`` when refused."""
        metadata = {
            "AttachableRef": [
                {
                    "EntityRef": {"type": entity_type, "value": entity_id},
                    "IncludeOnSend": False,
                }
            ],
            # Sent always: some stored attachables come back nameless without it.
            "FileName": file_name,
            "ContentType": content_type,
        }
        request = self.http.build_request(
            "POST",
            self._url("upload"),
            params={"minorversion": MINOR_VERSION, "requestid": request_id},
            headers={"Accept": "application/json"},
            files={
                "file_metadata_01": (
                    None,
                    json.dumps(metadata).encode(),
                    "application/json",
                ),
                "file_content_01": (file_name, content, content_type),
            },
        )
        response = await self._send(request)
        if response.status_code != 200:
            raise error_from_response(response)
        return _upload_result(response, response.extensions[DURATION])


def _since(began: float) -> int:
    return round((time.monotonic() - began) * 1000)


def _upload_result(response: httpx.Response, duration_ms: int) -> UploadResult:
    entries = _json(response).get("AttachableResponse")
    if not isinstance(entries, list) or not entries:
        raise PermanentError("upload answer has no AttachableResponse", status_code=200)
    entry = entries[0]
    # A business error comes back as HTTP 200 with the Fault inside the entry.
    if "Fault" in entry:
        raise error_from_fault(entry["Fault"], response)
    attachable = entry.get("Attachable", {})
    return UploadResult(
        attachable_id=str(attachable.get("Id", "")),
        status_code=response.status_code,
        intuit_tid=intuit_tid(response),
        duration_ms=duration_ms,
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(
            f"HTTP {response.status_code} with a body that is not JSON",
            status_code=response.status_code,
            intuit_tid=intuit_tid(response),
        ) from exc
    if not isinstance(body, dict):
        raise PermanentError("answer is not a JSON object", status_code=200)
    return body


def _quote(value: str) -> str:
    """Escape a value for a query string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


@asynccontextmanager
async def open_client(
    settings: Settings,
    faults: Any = None,
    limits: RealmLimits | None = None,
    *,
    real_transport: auth.Transport = httpx.AsyncHTTPTransport,
) -> AsyncIterator[QboClient]:
    """Connect to the settings' target and yield a client for its realm.

    ``fake`` mounts the fake QBO in-process (``faults`` are its
    ``FaultSettings``); a base URL talks HTTP to it with a placeholder bearer
    token, which a ``fake-server`` without ``--oauth`` accepts; ``sandbox`` and
    ``production`` are Intuit's API with the stored OAuth tokens
    (``real_transport`` makes their connections; tests pass an ASGI one).
    ``limits`` default to QBO's.
    """
    target = settings.target
    if settings.is_real_target:
        async with auth.authorized_http(settings, transport=real_transport) as (
            http,
            session,
        ):
            gate = RealmGate(limits or RealmLimits())
            yield QboClient(http, settings.realm_id, gate, session)
        return
    closers: list[Callable[[], None]] = []
    if target == "fake":
        from qbo_attach.fake.app import FaultSettings, create_app

        app = create_app(settings.fake_db, faults or FaultSettings())
        closers.append(app.state.company.close)
        transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
        base_url = FAKE_BASE_URL
    elif target.startswith(("http://", "https://")):
        transport = httpx.AsyncHTTPTransport()
        base_url = target.rstrip("/")
    else:
        raise UsageError(
            f"--target {target!r} is not known; use fake, sandbox, production or "
            "a base URL such as http://127.0.0.1:8765"
        )
    headers = {"Authorization": "Bearer qbo-attach-fake-token"}
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url=base_url, timeout=TIMEOUT, headers=headers
        ) as http:
            yield QboClient(http, settings.realm_id, RealmGate(limits or RealmLimits()))
    finally:
        for close in closers:
            close()


__all__ = ["Attachable", "QboClient", "UploadResult", "open_client"]
