"""The fake QuickBooks Online server: a Starlette app that answers like QBO.

It serves ``POST /v3/company/{realm}/upload`` and ``GET|POST
/v3/company/{realm}/query`` with the status codes, headers and JSON shapes of
docs/qbo-api.md, and can be told to fail like the real service does.

Where no source gives QBO's own error code, the fake uses these (all with
``type: ValidationFault``):

====  ======  ===========================================================
code  HTTP    when
====  ======  ===========================================================
2010  400     malformed multipart body, metadata that is not JSON or XML,
              a part sent twice; nested (200) for more than one AttachableRef
2020  400     a file_metadata_<n> or file_content_<n> part, FileName, or an
              EntityRef's type or value is missing
2050  200     FileName longer than 1000 characters (nested)
2170  200     content type application/octet-stream or missing, or a file
              extension QBO does not accept (nested)
2180  413     a file over ``FaultSettings.max_file_bytes``
6000  200     the linked entity does not exist in the company (nested; QBO's)
4000  400     a query that does not parse (QBO's)
4001  400     a query naming an unknown entity or field, or a page out of
              range (QBO's)
====  ======  ===========================================================

QBO's per-realm limits (500 requests a minute, 10 in flight) are enforced only
when ``FaultSettings`` sets them, so that a client's pacing can be measured. A
request over a limit is answered at once, before any latency, with QBO's 429
and XML throttle body; it changes no state and counts against neither limit.
The rate is counted over a sliding minute of the clock given to
``create_app``, which tests replace so that nothing waits.

``GET /v3/company/{realm}/companyinfo/{realm}`` answers QBO's ``CompanyInfo``
with a made-up company name.

Without OAuth (the default) any bearer token is accepted. With
``create_app(..., oauth=OAuthSettings())`` the fake also serves Intuit's OAuth
surface and accepts only the access tokens it issued: see ``fake/oauth.py``.

``GET /_fake/stats`` is the fake's own endpoint, not part of QBO: it answers
``{"throttled": n, "requests": n, "max_in_flight": n, "realms": {...}}``,
the totals over all realms (``max_in_flight`` is the highest of any realm)
followed by the same three figures per realm. ``requests`` counts every API
request received, throttled ones included, and ``throttled`` every 429
answered, injected ones included.
"""

from __future__ import annotations

import asyncio
import hashlib
import http
import json
import random
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.etree import ElementTree

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qbo_attach import filetypes
from qbo_attach.fake import multipart
from qbo_attach.fake.oauth import Authority, OAuthSettings, authentication_fault
from qbo_attach.fake.query import Query, QueryError, parse_query
from qbo_attach.fake.store import FakeCompany, NewAttachable

# QBO stamps times in the company's zone, Pacific for sandbox companies; a
# fixed offset keeps the fake free of a time zone database.
_PACIFIC = timezone(timedelta(hours=-7))
_MAX_FILE_NAME = 1000
_TRANSIENT_STATUSES = (503, 500, 502, 504, 429)
_BUSINESS_ERROR = (
    "A business validation error has occurred while processing your request"
)
_INVALID_REQUEST = "Request has invalid or unsupported property"
_MISSING_PARAMETER = "Required param missing, need to supply the required value"
_THROTTLED_XML = (
    '<Fault type="SERVICE"><Error code="3001">'
    "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
    "<Detail>The request limit was reached.</Detail></Error></Fault>"
)
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_RATE_WINDOW_S = 60.0

Handler = Callable[[Request, str], Awaitable[Response]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """How imperfect the fake is: failures, latency, limits and the file size."""

    failure_rate: float = 0.0  # fraction of API requests answered with a failure
    latency_ms: int = 0  # added to every API request
    seed: int | None = None  # makes failures and latency jitter repeatable
    max_file_bytes: int = filetypes.MAX_FILE_BYTES  # lowered by tests
    # QBO's limits are off unless set; QBO itself allows 500 and 10 per realm.
    rate_per_minute: int | None = None  # per realm, over a sliding minute
    max_concurrent: int | None = None  # per realm, requests in flight
    latency_jitter_ms: int = 0  # latency varies uniformly by this much either way
    # No source confirms that QBO sends Retry-After; set, it lets tests check
    # that a client honours one.
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class _EntityRef:
    type: str
    value: str
    include_on_send: bool


@dataclass(frozen=True, slots=True)
class _Upload:
    """One file_metadata_<n> / file_content_<n> pair, read and decoded."""

    file_name: str
    content_type: str  # from the metadata, "" when it names none
    part_type: str  # the file_content part's own Content-Type
    refs: tuple[_EntityRef, ...]
    note: str
    category: str
    content: bytes


@dataclass(slots=True)
class _RealmLoad:
    """One realm's traffic as the limits see it, and its figures for the stats."""

    accepted: deque[float] = field(default_factory=deque)  # times, newest last
    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    throttled: int = 0

    def stats(self) -> dict[str, int]:
        return {
            "throttled": self.throttled,
            "requests": self.requests,
            "max_in_flight": self.max_in_flight,
        }


class _Limits:
    """QBO's per-realm request rate and concurrency, on the fake's own clock."""

    def __init__(self, faults: FaultSettings, clock: Clock) -> None:
        self._rate = faults.rate_per_minute
        self._concurrent = faults.max_concurrent
        self._clock = clock
        self._realms: dict[str, _RealmLoad] = {}

    def admit(self, realm_id: str) -> bool:
        """Take a place for a request, or refuse it without counting it."""
        load = self._realms.setdefault(realm_id, _RealmLoad())
        load.requests += 1
        if self._over_rate(load) or self._over_concurrency(load):
            return False
        # Times are kept only under a rate limit, so an unlimited fake serving
        # a large migration does not hold one for every request.
        if self._rate is not None:
            load.accepted.append(self._clock())
        load.in_flight += 1
        load.max_in_flight = max(load.max_in_flight, load.in_flight)
        return True

    def _over_rate(self, load: _RealmLoad) -> bool:
        if self._rate is None:
            return False
        window_start = self._clock() - _RATE_WINDOW_S
        while load.accepted and load.accepted[0] <= window_start:
            load.accepted.popleft()
        return len(load.accepted) >= self._rate

    def _over_concurrency(self, load: _RealmLoad) -> bool:
        return self._concurrent is not None and load.in_flight >= self._concurrent

    def release(self, realm_id: str) -> None:
        self._realms[realm_id].in_flight -= 1

    def answered(self, realm_id: str, status: int) -> None:
        if status == 429:
            self._realms[realm_id].throttled += 1

    def stats(self) -> dict[str, object]:
        loads = self._realms.values()
        return {
            "throttled": sum(load.throttled for load in loads),
            "requests": sum(load.requests for load in loads),
            "max_in_flight": max((load.max_in_flight for load in loads), default=0),
            "realms": {realm: load.stats() for realm, load in self._realms.items()},
        }


class _RequestFault(Exception):
    """A request-level refusal, answered with a top-level JSON Fault."""

    def __init__(self, status: int, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def response(self) -> JSONResponse:
        error = {"Message": self.message, "Detail": self.detail, "code": self.code}
        return JSONResponse(
            {"Fault": {"Error": [error], "type": "ValidationFault"}, "time": _now()},
            status_code=self.status,
        )


def create_app(
    db_path: Path,
    faults: FaultSettings = FaultSettings(),
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep | None = None,
    oauth: OAuthSettings | None = None,
) -> Starlette:
    """The fake QBO as an ASGI app over the company state in ``db_path``.

    ``oauth`` turns on the OAuth authority, reachable as ``app.state.oauth``
    (None without it); its tokens expire on ``clock`` too.

    ``clock`` (seconds) times the rate limit and ``sleep`` waits out the
    latency, ``asyncio.sleep`` as it is when the app is made; tests replace
    both so that nothing really waits.

    The store is reachable as ``app.state.company`` and closed when the app's
    lifespan ends (under uvicorn); an app used only through httpx's ASGI
    transport should have ``app.state.company.close()`` called by its owner.
    """
    company = FakeCompany(db_path)
    limits = _Limits(faults, clock)
    authority = Authority(oauth, clock) if oauth is not None else None
    server = _FakeQbo(company, faults, limits, sleep or asyncio.sleep, authority)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        company.close()

    app = Starlette(
        routes=server.routes(),
        middleware=[Middleware(_TransactionIdMiddleware)],
        lifespan=lifespan,
    )
    app.state.company = company
    app.state.oauth = authority
    return app


def serve(
    db_path: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    faults: FaultSettings = FaultSettings(),
    oauth: OAuthSettings | None = None,
) -> None:
    """Run the fake QBO under uvicorn until interrupted."""
    app = create_app(db_path, faults, oauth=oauth)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class _TransactionIdMiddleware:
    """Stamps every answer with an ``intuit_tid`` header, as QBO does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tid = secrets.token_hex(16)

        async def send_with_tid(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("intuit_tid", tid)
            await send(message)

        await self.app(scope, receive, send_with_tid)


class _FakeQbo:
    """The endpoints, with the company state, limits and dice they share."""

    def __init__(
        self,
        company: FakeCompany,
        faults: FaultSettings,
        limits: _Limits,
        sleep: Sleep,
        authority: Authority | None,
    ) -> None:
        self._company = company
        self._authority = authority
        self._faults = faults
        self._limits = limits
        self._sleep = sleep
        self._random = random.Random(faults.seed)

    def routes(self) -> list[Route]:
        prefix = "/v3/company/{realm_id}"
        return [
            Route(f"{prefix}/upload", self._guarded(self._upload), methods=["POST"]),
            Route(
                f"{prefix}/query", self._guarded(self._query), methods=["GET", "POST"]
            ),
            Route(
                f"{prefix}/companyinfo/{{company_id}}",
                self._guarded(self._company_info),
                methods=["GET"],
            ),
            Route("/_fake/stats", self._stats, methods=["GET"]),
            *(self._authority.routes() if self._authority else []),
        ]

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler in the realm's limits and what each request meets."""

        async def endpoint(request: Request) -> Response:
            realm_id = request.path_params["realm_id"]
            if self._limits.admit(realm_id):
                try:
                    response = await self._handle(request, realm_id, handler)
                finally:
                    self._limits.release(realm_id)
            else:
                response = _throttled(self._faults.retry_after_s)
            self._limits.answered(realm_id, response.status_code)
            return response

        return endpoint

    async def _handle(
        self, request: Request, realm_id: str, handler: Handler
    ) -> Response:
        await self._pause()
        # Drawn before any work, so a failed request changes no state.
        failure = self._injected_failure()
        if failure is not None:
            return failure
        refusal = self._refuse_token(request, realm_id)
        if refusal is not None:
            return refusal
        if not self._company.realm_exists(realm_id):
            return _authorization_fault(realm_id)
        try:
            return await handler(request, realm_id)
        except _RequestFault as fault:
            return fault.response()

    async def _pause(self) -> None:
        delay_ms: float = self._faults.latency_ms
        jitter = self._faults.latency_jitter_ms
        if jitter:
            delay_ms += self._random.uniform(-jitter, jitter)
        if delay_ms > 0:
            await self._sleep(delay_ms / 1000)

    def _injected_failure(self) -> Response | None:
        rate = self._faults.failure_rate
        if rate <= 0 or self._random.random() >= rate:
            return None
        status = self._random.choice(_TRANSIENT_STATUSES)
        if status == 429:
            return _throttled(self._faults.retry_after_s)
        return _transient_failure(status)

    def _refuse_token(self, request: Request, realm_id: str) -> Response | None:
        if self._authority is not None:
            return self._authority.check(request, realm_id)
        return None if _has_bearer_token(request) else authentication_fault()

    async def _company_info(self, request: Request, realm_id: str) -> Response:
        if request.path_params["company_id"] != realm_id:
            raise _invalid("CompanyInfo is read by the company's own realm id")
        info = {
            "CompanyName": f"Fake QBO company {realm_id}",
            "LegalName": f"Fake QBO company {realm_id}",
            "Country": "US",
            "Id": "1",
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
        }
        return JSONResponse({"CompanyInfo": info, "time": _now()})

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self._limits.stats())

    async def _upload(self, request: Request, realm_id: str) -> Response:
        body = await request.body()
        uploads = _read_uploads(body, request.headers.get("content-type", ""))
        _check_sizes(uploads, self._faults.max_file_bytes)
        # QBO documents requestid as idempotent, but no source confirms that
        # it de-duplicates uploads; the fake stores it and never de-duplicates,
        # so a client must reconcile by query before it retries.
        request_id = request.query_params.get("requestid", "")
        entries = self._attach(realm_id, uploads, request_id)
        return JSONResponse({"AttachableResponse": entries, "time": _now()})

    def _attach(
        self, realm_id: str, uploads: list[_Upload], request_id: str
    ) -> list[dict[str, object]]:
        """Store the uploads that pass; one answer entry per upload, in order."""
        faults = [self._business_fault(realm_id, upload) for upload in uploads]
        created = datetime.now(_PACIFIC).isoformat(timespec="seconds")
        accepted = [
            _new_attachable(upload, created, request_id)
            for upload, fault in zip(uploads, faults, strict=True)
            if fault is None
        ]
        records = iter(self._company.add_attachables(realm_id, accepted))
        return [
            {"Fault": fault}
            if fault is not None
            else {"Attachable": _attachable_json(realm_id, next(records))}
            for fault in faults
        ]

    def _business_fault(
        self, realm_id: str, upload: _Upload
    ) -> dict[str, object] | None:
        if len(upload.file_name) > _MAX_FILE_NAME:
            return _nested_fault(
                "2050",
                "String length is either shorter or longer than supported",
                f"FileName has {len(upload.file_name)} characters; "
                f"at most {_MAX_FILE_NAME} are allowed",
            )
        refused = _refused_content(upload)
        if refused:
            return _nested_fault("2170", "Unsupported file type", refused)
        if len(upload.refs) > 1:
            return _nested_fault(
                "2010",
                _INVALID_REQUEST,
                "the fake links an attachable to one entity at most",
            )
        for ref in upload.refs:
            if not self._company.entity_exists(realm_id, ref.type, ref.value):
                return _nested_fault(
                    "6000",
                    _BUSINESS_ERROR,
                    f"Business Validation Error: The entity {ref.type} {ref.value} "
                    "that you are trying to link does not exist.",
                )
        return None

    async def _query(self, request: Request, realm_id: str) -> Response:
        statement = await _statement(request)
        try:
            answer = self._answer(realm_id, parse_query(statement))
        except QueryError as exc:
            raise _RequestFault(400, exc.code, exc.message, exc.detail) from exc
        return JSONResponse({"QueryResponse": answer, "time": _now()})

    def _answer(self, realm_id: str, query: Query) -> dict[str, object]:
        if query.count:
            return {"totalCount": self._company.count_rows(realm_id, query)}
        rows = self._company.select_rows(realm_id, query)
        if not rows:
            return {}
        if query.entity == "Attachable":
            rows = [_attachable_json(realm_id, row) for row in rows]
        return {
            query.entity: rows,
            "startPosition": query.start_position,
            "maxResults": len(rows),
        }


def _now() -> str:
    return datetime.now(_PACIFIC).isoformat(timespec="milliseconds")


def _has_bearer_token(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _authorization_fault(realm_id: str) -> Response:
    error = {
        "Message": "message=ApplicationAuthorizationFailed; errorCode=003100; "
        "statusCode=403",
        "Detail": f"No company with realm id {realm_id} on this server",
        "code": "003100",
    }
    return JSONResponse(
        {"Fault": {"Error": [error], "type": "SERVICE"}, "time": _now()},
        status_code=403,
    )


def _throttled(retry_after_s: float | None) -> Response:
    response = Response(_THROTTLED_XML, 429, media_type="application/xml")
    if retry_after_s is not None:
        response.headers["Retry-After"] = _seconds_text(retry_after_s)
    return response


def _seconds_text(seconds: float) -> str:
    """Whole seconds as HTTP writes them; a fraction is kept so tests wait less."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else str(value)


def _transient_failure(status: int) -> Response:
    if status == 500:
        error = {
            "Message": "An application error has occurred while processing "
            "your request",
            "Detail": "System Failure Error: injected by the fake QBO",
            "code": "10000",
        }
        return JSONResponse(
            {"Fault": {"Error": [error], "type": "SystemFault"}, "time": _now()},
            status_code=500,
        )
    title = f"{status} {http.HTTPStatus(status).phrase}"
    head = f"<head><title>{title}</title></head>"
    page = f"<html>{head}<body><h1>{title}</h1></body></html>"
    return Response(page, status, media_type="text/html")


def _nested_fault(code: str, message: str, detail: str) -> dict[str, object]:
    error = {"Message": message, "Detail": detail, "code": code, "element": ""}
    return {"type": "ValidationFault", "Error": [error]}


def _invalid(detail: str) -> _RequestFault:
    return _RequestFault(400, "2010", _INVALID_REQUEST, detail)


def _missing(detail: str) -> _RequestFault:
    return _RequestFault(400, "2020", _MISSING_PARAMETER, detail)


def _read_uploads(body: bytes, content_type: str) -> list[_Upload]:
    try:
        parts = multipart.parse(body, multipart.boundary_from(content_type))
    except multipart.MultipartError as exc:
        raise _invalid(f"Malformed multipart/form-data request: {exc}") from exc
    return [_upload(suffix, pair) for suffix, pair in _pair_parts(parts).items()]


def _pair_parts(parts: list[multipart.Part]) -> dict[str, dict[str, multipart.Part]]:
    """Group parts by the suffix after file_metadata_ / file_content_.

    Parts with other names are ignored, as form fields QBO does not read.
    """
    pairs: dict[str, dict[str, multipart.Part]] = {}
    for part in parts:
        for role in ("metadata", "content"):
            prefix = f"file_{role}_"
            if not part.name.startswith(prefix) or part.name == prefix:
                continue
            pair = pairs.setdefault(part.name[len(prefix) :], {})
            if role in pair:
                raise _invalid(f"The part {part.name} is sent twice")
            pair[role] = part
    if not pairs:
        raise _missing("The request has no file_metadata_<n> / file_content_<n> parts")
    return pairs


def _upload(suffix: str, pair: dict[str, multipart.Part]) -> _Upload:
    for role in ("metadata", "content"):
        if role not in pair:
            raise _missing(f"The part file_{role}_{suffix} is missing")
    fields = _metadata_fields(pair["metadata"])
    name = pair["metadata"].name
    file_name = fields.get("FileName")
    if not isinstance(file_name, str) or not file_name.strip():
        raise _missing(f"{name} has no FileName")
    return _Upload(
        file_name=file_name,
        content_type=_media_type(_text_field(fields, "ContentType")),
        part_type=pair["content"].content_type,
        refs=_entity_refs(name, fields.get("AttachableRef")),
        note=_text_field(fields, "Note"),
        category=_text_field(fields, "Category"),
        content=pair["content"].content,
    )


def _metadata_fields(part: multipart.Part) -> dict[str, object]:
    """The Attachable fields of a metadata part, sent as JSON or as XML."""
    if part.content_type in _XML_TYPES or part.content.lstrip()[:1] == b"<":
        return _xml_fields(part)
    try:
        data = json.loads(part.content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"{part.name} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("Attachable"), dict):
        data = data["Attachable"]
    if not isinstance(data, dict):
        raise _invalid(f"{part.name} must be a JSON object, an Attachable")
    return data


def _xml_fields(part: multipart.Part) -> dict[str, object]:
    """Read the PHP SDK's XML Attachable into the JSON field layout."""
    try:
        root = ElementTree.fromstring(part.content)
    except ElementTree.ParseError as exc:
        raise _invalid(f"{part.name} is not valid XML: {exc}") from exc
    if _local(root.tag) != "Attachable":
        raise _invalid(f"{part.name} must hold an <Attachable> element")
    fields: dict[str, object] = {}
    refs: list[object] = []
    for child in root:
        if _local(child.tag) == "AttachableRef":
            refs.append(_xml_attachable_ref(child))
        else:
            fields[_local(child.tag)] = child.text or ""
    if refs:
        fields["AttachableRef"] = refs
    return fields


def _xml_attachable_ref(element: ElementTree.Element) -> dict[str, object]:
    ref: dict[str, object] = {}
    for child in element:
        if _local(child.tag) != "EntityRef":
            ref[_local(child.tag)] = (child.text or "").strip()
            continue
        # Both <EntityRef type="Invoice">75</EntityRef> and the
        # <EntityRef><type>Invoice</type><value>75</value></EntityRef> style.
        entity = {"value": (child.text or "").strip(), **child.attrib}
        for sub in child:
            entity[_local(sub.tag)] = (sub.text or "").strip()
        ref["EntityRef"] = entity
    return ref


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _text_field(fields: dict[str, object], key: str) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str):
        raise _invalid(f"{key} must be a string")
    return value


def _media_type(content_type: str) -> str:
    return multipart.parse_header_value(content_type)[0]


def _entity_refs(name: str, raw: object) -> tuple[_EntityRef, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    return tuple(_entity_ref(name, item) for item in items)


def _entity_ref(name: str, item: object) -> _EntityRef:
    if not isinstance(item, dict) or not isinstance(item.get("EntityRef"), dict):
        raise _invalid(f"{name}: each AttachableRef needs an EntityRef object")
    kind, value = item["EntityRef"].get("type"), item["EntityRef"].get("value")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not (isinstance(kind, str) and kind and isinstance(value, str) and value):
        raise _missing(f"{name}: an EntityRef needs both a type and a value")
    return _EntityRef(kind, value, _flag(item.get("IncludeOnSend")))


def _flag(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _check_sizes(uploads: list[_Upload], limit: int) -> None:
    for upload in uploads:
        if len(upload.content) > limit:
            raise _RequestFault(
                413,
                "2180",
                "Request entity too large",
                f"{upload.file_name} has {len(upload.content)} bytes; "
                f"the limit is {limit} bytes a file",
            )


def _refused_content(upload: _Upload) -> str:
    """Why QBO would refuse the file's type, or "" when it accepts it."""
    declared = {upload.content_type, upload.part_type} - {""}
    if not declared:
        return "No ContentType in the metadata nor on the file_content part"
    if filetypes.UNKNOWN_CONTENT_TYPE in declared:
        return (
            f"ContentType {filetypes.UNKNOWN_CONTENT_TYPE} is not accepted; "
            "send the file's own MIME type"
        )
    extension = filetypes.extension_of(upload.file_name)
    if extension not in filetypes.ACCEPTED_TYPES:
        shown = f".{extension}" if extension else "no extension"
        return (
            f"{upload.file_name} has {shown}; accepted extensions are "
            f"{', '.join(sorted(filetypes.ACCEPTED_TYPES))}"
        )
    return ""


def _new_attachable(upload: _Upload, created: str, request_id: str) -> NewAttachable:
    ref = upload.refs[0] if upload.refs else _EntityRef("", "", False)
    return NewAttachable(
        file_name=upload.file_name,
        content_type=upload.content_type or upload.part_type,
        size=len(upload.content),
        sha256=hashlib.sha256(upload.content).hexdigest(),
        entity_type=ref.type,
        entity_id=ref.value,
        create_time=created,
        include_on_send=ref.include_on_send,
        note=upload.note,
        category=upload.category,
        request_id=request_id,
    )


def _attachable_json(realm_id: str, record: dict[str, object]) -> dict[str, object]:
    """An attachable as QBO writes it in upload and query answers."""
    id_ = str(record["Id"])
    answer: dict[str, object] = {
        "Id": id_,
        "SyncToken": "0",
        "FileName": record["FileName"],
        "ContentType": record["ContentType"],
        "Size": record["Size"],
        "FileAccessUri": f"/v3/company/{realm_id}/download/{id_}",
        # The reserved .invalid domain: the fake keeps no content to download.
        "TempDownloadUri": f"https://fake-qbo.invalid/{realm_id}/{id_}/"
        + urllib.parse.quote(str(record["FileName"])),
    }
    if record["EntityType"]:
        entity = {"value": record["EntityId"], "type": record["EntityType"]}
        answer["AttachableRef"] = [
            {"EntityRef": entity, "IncludeOnSend": record["IncludeOnSend"]}
        ]
    for key in ("Note", "Category"):
        if record[key]:
            answer[key] = record[key]
    created = record["CreateTime"]
    answer.update(
        domain="QBO",
        sparse=False,
        MetaData={"CreateTime": created, "LastUpdatedTime": created},
    )
    return answer


async def _statement(request: Request) -> str:
    """The query statement: the ``query`` parameter, or the POST body."""
    if request.method == "GET":
        return request.query_params.get("query", "")
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid(f"The query body is not UTF-8 text: {exc}") from exc
    return text or request.query_params.get("query", "")
