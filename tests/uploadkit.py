"""Helpers for uploader tests: a tree, its verification log, a scripted QBO."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from qbo_attach.qbo.client import QboClient
from qbo_attach.qbo.limits import Clock, RealmGate, RealmLimits, Sleep
from qbo_attach.records import VerificationRow, write_csv
from qbo_attach.settings import Settings

REALM = "123"


def make_settings(tmp_path: Path, realm_id: str = REALM) -> Settings:
    """Settings with every folder under ``tmp_path``."""
    return Settings(
        data_dir=tmp_path / "data",
        files_dir=tmp_path / "files",
        log_dir=tmp_path / "logs",
        realm_id=realm_id,
    )


def add_file(
    settings: Settings,
    qbo_type: str,
    qbo_id: str,
    name: str,
    content: bytes = b"%PDF-1.4 hello",
) -> VerificationRow:
    relative = f"{qbo_type.upper()}/80{qbo_id}-1439202892/{name}"
    path = settings.files_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return VerificationRow(
        legacy_txnid_norm=f"{qbo_id}-1439202892",
        legacy_entity_type=qbo_type.upper(),
        raw_legacy_id=f"80{qbo_id}-1439202892",
        file_name=name,
        file_path=relative,
        size_bytes=len(content),
        content_type="application/pdf",
        sha256=hashlib.sha256(content).hexdigest(),
        problem="",
        qbo_entity_type=qbo_type,
        qbo_entity_id=qbo_id,
        status="ok",
        reason="",
    )


def write_verification(settings: Settings, rows: list[VerificationRow]) -> None:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    write_csv(settings.verification_log, VerificationRow, rows)


def success(request: httpx.Request, attachable_id: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={"AttachableResponse": [{"Attachable": {"Id": attachable_id}}]},
        headers={"intuit_tid": f"tid-{attachable_id}"},
    )


def nested_fault(code: str = "6000") -> httpx.Response:
    fault = {
        "type": "ValidationFault",
        "Error": [
            {
                "Message": "A business validation error has occurred",
                "Detail": "Business Validation Error: "
                "The entity Bill 75 that you are trying to link does not exist.",
                "code": code,
                "element": "",
            }
        ],
    }
    return httpx.Response(200, json={"AttachableResponse": [{"Fault": fault}]})


Answer = Callable[[httpx.Request], httpx.Response]


@dataclass
class ScriptedQbo:
    """A stand-in QBO answering uploads from a script, then with success."""

    script: list[Answer] = field(default_factory=list)
    remote: list[dict[str, object]] = field(default_factory=list)
    uploads: list[httpx.Request] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    page_all: bool = False  # answer a query without a where clause with everything

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/query"):
            return self._query(request)
        self.uploads.append(request)
        if self.script:
            return self.script.pop(0)(request)
        return success(request, str(1000 + len(self.uploads)))

    def _query(self, request: httpx.Request) -> httpx.Response:
        statement = request.content.decode()
        self.queries.append(statement)
        if self.page_all and " where " not in statement:
            rows = list(self.remote)
        else:
            rows = [r for r in self.remote if f"'{r['_value']}'" in statement]
        body = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        if "startposition 1 " not in statement:
            body = []
        return httpx.Response(
            200, content=json.dumps({"QueryResponse": {"Attachable": body}}).encode()
        )

    def client(
        self, sleep: Sleep | None = None, clock: Clock | None = None
    ) -> QboClient:
        """A client whose realm gate has no rate and waits through ``sleep``."""
        http = httpx.AsyncClient(
            transport=httpx.MockTransport(self.handler), base_url="http://qbo.test"
        )
        gate = RealmGate(RealmLimits(rate_per_minute=None), sleep=sleep, clock=clock)
        return QboClient(http, REALM, gate)


def remote_attachable(
    qbo_type: str, qbo_id: str, name: str, size: int
) -> dict[str, object]:
    return {
        "Id": "777",
        "FileName": name,
        "Size": size,
        "AttachableRef": [{"EntityRef": {"type": qbo_type, "value": qbo_id}}],
        "_value": qbo_id,
    }
