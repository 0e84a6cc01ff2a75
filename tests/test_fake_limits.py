"""The fake QBO's per-realm limits: rate, concurrency, jitter and its stats."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from starlette.applications import Starlette

from qbo_attach.fake import FakeCompany, FaultSettings, create_app

REALM = "9130356789012345"
OTHER_REALM = "4620816365037572"
COUNT_QUERY = {"query": "select count(*) from Attachable"}


class FakeTime:
    """A clock moved by hand, and a sleep that records and may wait for a gate."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []
        self.gate: asyncio.Event | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.gate is not None:
            await self.gate.wait()


MakeApp = Callable[..., Starlette]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[MakeApp]:
    """Build fakes over two realms, each with an invoice, on a given FakeTime."""
    db_path = tmp_path / "fake_qbo.sqlite"
    company = FakeCompany(db_path)
    for realm in (REALM, OTHER_REALM):
        company.add_entities(realm, [("Invoice", "75", "INV-75")])
    company.close()
    apps: list[Starlette] = []

    def build(fake_time: FakeTime, **faults: Any) -> Starlette:
        app = create_app(
            db_path,
            FaultSettings(**faults),
            clock=fake_time.clock,
            sleep=fake_time.sleep,
        )
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.company.close()


def client(app: Starlette) -> httpx.AsyncClient:
    """An authenticated client that talks to the app in-process."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://fake-qbo",
        headers={"Authorization": "Bearer test-token"},
    )


async def query(session: httpx.AsyncClient, realm: str = REALM) -> httpx.Response:
    """Count the realm's attachables, the cheapest API request."""
    return await session.get(f"/v3/company/{realm}/query", params=COUNT_QUERY)


async def upload(session: httpx.AsyncClient, realm: str = REALM) -> httpx.Response:
    """Upload one small PDF linked to the realm's invoice 75."""
    metadata = {
        "FileName": "scan.pdf",
        "ContentType": "application/pdf",
        "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": "75"}}],
    }
    files = {
        "file_metadata_0": (None, json.dumps(metadata), "application/json"),
        "file_content_0": ("scan.pdf", b"%PDF-1.4 scan", "application/pdf"),
    }
    return await session.post(f"/v3/company/{realm}/upload", files=files)


def answers(
    app: Starlette, fake_time: FakeTime, times: list[float], realm: str = REALM
) -> list[httpx.Response]:
    """Send one count query at each of the given clock times, in order."""

    async def go() -> list[httpx.Response]:
        found = []
        async with client(app) as session:
            for at in times:
                fake_time.now = at
                found.append(await query(session, realm))
        return found

    return asyncio.run(go())


def statuses(
    app: Starlette, fake_time: FakeTime, times: list[float], realm: str = REALM
) -> list[int]:
    """The status codes of count queries sent at the given clock times."""
    return [answer.status_code for answer in answers(app, fake_time, times, realm)]


def stats(app: Starlette) -> dict[str, Any]:
    """The fake's /_fake/stats, fetched without a token."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://fake-qbo"
        ) as session:
            return await session.get("/_fake/stats")

    answer = asyncio.run(go())
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


def stored(app: Starlette, realm: str = REALM) -> int:
    """How many attachables the realm holds."""
    company: FakeCompany = app.state.company
    return len(company.attachables(realm))


async def until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until the condition holds, without any real wait."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the requests never reached the fake's latency")


def test_over_the_rate_gets_qbo_throttle_answer(make_app: MakeApp) -> None:
    """The request past the rate gets 429 with QBO's XML fault, code 3001."""
    fake_time = FakeTime()
    app = make_app(fake_time, rate_per_minute=3)

    found = answers(app, fake_time, [0, 1, 2, 3])

    assert [answer.status_code for answer in found] == [200, 200, 200, 429]
    throttled = found[-1]
    assert throttled.headers["content-type"].startswith("application/xml")
    fault = ElementTree.fromstring(throttled.text)
    assert (fault.tag, fault.get("type")) == ("Fault", "SERVICE")
    error = fault.find("Error")
    assert error is not None
    assert error.get("code") == "3001"
    assert "ThrottleExceeded" in (error.findtext("Message") or "")
    assert "Retry-After" not in throttled.headers
    assert throttled.headers["intuit_tid"]


def test_rate_window_slides(make_app: MakeApp) -> None:
    """A request is counted for 60 s after it was accepted; refused ones never."""
    fake_time = FakeTime()
    app = make_app(fake_time, rate_per_minute=2)

    found = statuses(app, fake_time, [0, 30, 30, 59.9, 60, 60, 89.9, 90])

    assert found == [200, 200, 429, 429, 200, 429, 429, 200]


def test_rate_is_per_realm(make_app: MakeApp) -> None:
    """A realm at its rate does not throttle another realm."""
    fake_time = FakeTime()
    app = make_app(fake_time, rate_per_minute=1)

    assert statuses(app, fake_time, [0, 0]) == [200, 429]
    assert statuses(app, fake_time, [0, 0], OTHER_REALM) == [200, 429]


def test_throttled_upload_stores_nothing(make_app: MakeApp) -> None:
    """An upload refused by the rate limit creates no attachable."""
    app = make_app(FakeTime(), rate_per_minute=1)

    async def go() -> list[int]:
        async with client(app) as session:
            return [(await upload(session)).status_code for _ in range(3)]

    assert asyncio.run(go()) == [200, 429, 429]
    assert stored(app) == 1


def test_request_over_max_concurrent_gets_429(make_app: MakeApp) -> None:
    """With C requests of a realm in flight the next gets 429; other realms pass."""
    fake_time = FakeTime()
    app = make_app(fake_time, max_concurrent=2, latency_ms=100)

    async def go() -> tuple[list[int], int, int]:
        fake_time.gate = asyncio.Event()
        async with client(app) as session:
            held = [asyncio.create_task(upload(session)) for _ in range(2)]
            await until(lambda: len(fake_time.slept) == 2)
            refused = await upload(session)
            other = asyncio.create_task(upload(session, OTHER_REALM))
            await until(lambda: len(fake_time.slept) == 3)
            fake_time.gate.set()
            done = await asyncio.gather(*held, other)
            after = await upload(session)
        codes = [answer.status_code for answer in done]
        return codes, refused.status_code, after.status_code

    held_codes, refused_code, after_code = asyncio.run(go())

    assert held_codes == [200, 200, 200]
    assert refused_code == 429
    assert after_code == 200
    assert stored(app) == 3
    assert stored(app, OTHER_REALM) == 1
    assert stats(app)["realms"][REALM]["max_in_flight"] == 2


def test_throttled_requests_are_not_in_flight(make_app: MakeApp) -> None:
    """Refused requests leave no place taken: once the held one ends, all is free."""
    fake_time = FakeTime()
    app = make_app(fake_time, max_concurrent=1, latency_ms=100)

    async def go() -> list[int]:
        fake_time.gate = asyncio.Event()
        async with client(app) as session:
            held = asyncio.create_task(query(session))
            await until(lambda: len(fake_time.slept) == 1)
            refused = [(await query(session)).status_code for _ in range(3)]
            fake_time.gate.set()
            await held
            return [*refused, (await query(session)).status_code]

    assert asyncio.run(go()) == [429, 429, 429, 200]
    assert stats(app)["realms"][REALM] == {
        "throttled": 3,
        "requests": 5,
        "max_in_flight": 1,
    }


@pytest.mark.parametrize(
    ("retry_after_s", "header"),
    [(None, None), (30, "30"), (60.0, "60"), (0.5, "0.5")],
    ids=["unset", "int", "whole-float", "fraction"],
)
def test_retry_after_only_when_configured(
    make_app: MakeApp, retry_after_s: float | None, header: str | None
) -> None:
    """Retry-After is sent on 429 only when the settings ask for it."""
    fake_time = FakeTime()
    app = make_app(fake_time, rate_per_minute=0, retry_after_s=retry_after_s)

    [throttled] = answers(app, fake_time, [0])

    assert throttled.status_code == 429
    assert throttled.headers.get("Retry-After") == header


def test_injected_throttle_carries_retry_after(make_app: MakeApp) -> None:
    """An injected 429 gets the configured Retry-After; other failures do not."""
    fake_time = FakeTime()
    app = make_app(fake_time, failure_rate=1.0, seed=3, retry_after_s=30)

    found = answers(app, fake_time, [0] * 30)

    by_status = {answer.status_code: answer for answer in found}
    assert set(by_status) == {429, 500, 502, 503, 504}
    assert by_status[429].headers["Retry-After"] == "30"
    assert "Retry-After" not in by_status[503].headers


def _jittered_sleeps(make_app: MakeApp, seed: int) -> list[float]:
    fake_time = FakeTime()
    app = make_app(fake_time, latency_ms=100, latency_jitter_ms=40, seed=seed)
    statuses(app, fake_time, [0] * 40)
    return fake_time.slept


def test_jitter_stays_in_bounds_and_repeats_with_a_seed(make_app: MakeApp) -> None:
    """Latency varies within latency_ms plus or minus the jitter, the same per seed."""
    first = _jittered_sleeps(make_app, seed=11)

    assert len(first) == 40
    assert all(0.06 <= seconds <= 0.14 for seconds in first)
    assert len(set(first)) > 30
    assert min(first) < 0.08 and max(first) > 0.12
    assert _jittered_sleeps(make_app, seed=11) == first
    assert _jittered_sleeps(make_app, seed=12) != first


def test_jitter_never_makes_latency_negative(make_app: MakeApp) -> None:
    """Jitter wider than the latency skips the wait rather than going below zero."""
    fake_time = FakeTime()
    app = make_app(fake_time, latency_ms=10, latency_jitter_ms=50, seed=5)

    assert statuses(app, fake_time, [0] * 40) == [200] * 40
    assert 0 < len(fake_time.slept) < 40
    assert all(0 < seconds <= 0.06 for seconds in fake_time.slept)


def test_stats_count_requests_throttles_and_peak(make_app: MakeApp) -> None:
    """/_fake/stats gives totals and per-realm figures, and counts nothing itself."""
    fake_time = FakeTime()
    app = make_app(fake_time, rate_per_minute=2)
    empty = {"throttled": 0, "requests": 0, "max_in_flight": 0, "realms": {}}
    assert stats(app) == empty

    statuses(app, fake_time, [0, 0, 0])
    statuses(app, fake_time, [0], OTHER_REALM)

    expected = {
        "throttled": 1,
        "requests": 4,
        "max_in_flight": 1,
        "realms": {
            REALM: {"throttled": 1, "requests": 3, "max_in_flight": 1},
            OTHER_REALM: {"throttled": 0, "requests": 1, "max_in_flight": 1},
        },
    }
    assert stats(app) == expected
    assert stats(app) == expected


def test_limits_are_off_by_default(make_app: MakeApp) -> None:
    """Without settings the fake takes more than QBO's 500 a minute at once."""
    fake_time = FakeTime()
    app = make_app(fake_time)

    assert set(statuses(app, fake_time, [0] * 501)) == {200}
    assert stats(app)["throttled"] == 0
