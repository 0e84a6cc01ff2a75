"""OAuth against the fake QBO in-process: sign-in, refresh, rotation, failures.

The fake and the client share one clock that moves only when the fake's
latency "sleeps", so tokens expire mid-run without any real waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from qbo_attach import mapping, runlog
from qbo_attach.errors import AuthError, UsageError
from qbo_attach.fake.app import FaultSettings
from qbo_attach.qbo import auth
from qbo_attach.qbo import tokens as tokens_module
from qbo_attach.qbo.client import QboClient
from qbo_attach.qbo.tokens import Tokens, TokenStore
from qbo_attach.records import RunLogRow, read_csv
from qbo_attach.settings import Settings
from qbo_attach.upload import Uploader, UploadOptions
from tests.test_fake_oauth import (
    BASE,
    CLIENT_ID,
    CLIENT_SECRET,
    ENV,
    REALM,
    OAuthFake,
    make_fake,
    token,
)
from tests.uploadkit import add_file, make_settings, write_verification

APP = auth.OAuthApp(CLIENT_ID, CLIENT_SECRET)
ENDPOINTS = auth.Endpoints(
    BASE,
    f"{BASE}/connect/oauth2",
    f"{BASE}/oauth2/v1/tokens/bearer",
    f"{BASE}/v2/oauth2/tokens/revoke",
)
# Each API request takes 20 s on the shared clock: a 60 s token lasts three.
SLOW = FaultSettings(latency_ms=20_000)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[OAuthFake]:
    made = make_fake(tmp_path)
    yield made
    made.app.state.company.close()


def real_settings(tmp_path: Path) -> Settings:
    return dataclasses.replace(
        make_settings(tmp_path),
        target="sandbox",
        token_file=tmp_path / "config" / "tokens.json",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def sign_in(made: OAuthFake, settings: Settings) -> Tokens:
    """Import a refresh token handed out by the fake, as from the OAuth Playground."""
    return await auth.import_refresh_token(
        APP,
        ENDPOINTS,
        TokenStore(settings.tokens_path),
        "sandbox",
        REALM,
        made.authority.grant_refresh_token(),
        transport=made.transport,
        clock=made.time.clock,
    )


@asynccontextmanager
async def connected(
    made: OAuthFake,
    settings: Settings,
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
) -> AsyncIterator[QboClient]:
    async with auth.authorized_http(
        settings,
        transport=transport or made.transport,
        environ=ENV,
        clock=made.time.clock,
    ) as (http, session):
        yield QboClient(http, settings.realm_id, session=session)


def follower(
    made: OAuthFake, tasks: list[asyncio.Task[int]], tamper: bool = False
) -> Callable[[str], None]:
    """A stand-in browser: consent at the fake, then hit the loopback redirect."""

    async def follow(url: str) -> int:
        async with made.client() as http:
            location = (await http.get(url)).headers["location"]
        if tamper:
            location = location.replace("state=", "state=forged")
        async with httpx.AsyncClient() as http:
            return (await http.get(location)).status_code

    return lambda url: tasks.append(asyncio.create_task(follow(url)))


def test_login_stores_the_tokens_and_realm_from_the_redirect(
    fake: OAuthFake, tmp_path: Path
) -> None:
    """The loopback listener takes the redirect; the exchange stores a 0600 file."""
    store = TokenStore(tmp_path / "tokens.json")
    tasks: list[asyncio.Task[int]] = []

    async def go() -> tuple[Tokens, int]:
        tokens = await auth.login(
            APP,
            ENDPOINTS,
            store,
            "sandbox",
            show_url=follower(fake, tasks),
            redirect_uri=f"http://localhost:{free_port()}/callback",
            transport=fake.transport,
            clock=fake.time.clock,
            timeout=10,
        )
        return tokens, await tasks[0]

    tokens, page_status = asyncio.run(go())

    assert page_status == 200
    assert tokens.realm_id == REALM
    assert store.load() == tokens
    assert (store.path.stat().st_mode & 0o777) == 0o600


def test_login_refuses_a_redirect_with_another_state(
    fake: OAuthFake, tmp_path: Path
) -> None:
    """A redirect whose state this login did not send is refused, code unused."""
    store = TokenStore(tmp_path / "tokens.json")
    tasks: list[asyncio.Task[int]] = []

    async def go() -> None:
        await auth.login(
            APP,
            ENDPOINTS,
            store,
            "sandbox",
            show_url=follower(fake, tasks, tamper=True),
            redirect_uri=f"http://127.0.0.1:{free_port()}/callback",
            transport=fake.transport,
            timeout=10,
        )

    with pytest.raises(AuthError, match="state"):
        asyncio.run(go())

    assert store.load() is None
    assert fake.authority.stats.token_requests == 0


def test_import_proves_the_token_and_stores_its_successor(
    fake: OAuthFake, tmp_path: Path
) -> None:
    """An imported refresh token is used once; the rotated one is what is stored."""
    settings = real_settings(tmp_path)
    given = fake.authority.grant_refresh_token()

    async def go() -> Tokens:
        return await auth.import_refresh_token(
            APP,
            ENDPOINTS,
            TokenStore(settings.tokens_path),
            "sandbox",
            REALM,
            given,
            transport=fake.transport,
            clock=fake.time.clock,
        )

    tokens = asyncio.run(go())

    assert fake.authority.stats.refreshes == 1
    assert tokens.refresh_token != given
    assert TokenStore(settings.tokens_path).load() == tokens


def test_logout_revokes_then_deletes(fake: OAuthFake, tmp_path: Path) -> None:
    """After logout the file is gone and the refresh token is dead at the fake."""
    settings = real_settings(tmp_path)
    store = TokenStore(settings.tokens_path)

    async def go() -> tuple[bool, int]:
        tokens = await sign_in(fake, settings)
        revoked = await auth.logout(APP, ENDPOINTS, store, transport=fake.transport)
        async with fake.client() as http:
            answer = await token(
                http, grant_type="refresh_token", refresh_token=tokens.refresh_token
            )
        return revoked, answer.status_code

    assert asyncio.run(go()) == (True, 400)
    assert not store.path.exists()
    assert fake.authority.stats.revocations == 1


def seed_files(made: OAuthFake, settings: Settings, count: int) -> None:
    """Invoices 1..count in the fake company and one verified file for each."""
    ids = [str(n) for n in range(1, count + 1)]
    entities = [("Invoice", i, f"INV {i}") for i in ids]
    made.app.state.company.add_entities(REALM, entities)
    write_verification(
        settings, [add_file(settings, "Invoice", i, f"scan-{i}.pdf") for i in ids]
    )


async def never_sleep(seconds: float) -> None:
    raise AssertionError(f"the uploader asked to wait {seconds} s")


async def upload_all(
    made: OAuthFake,
    settings: Settings,
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
) -> tuple[Uploader, auth.TokenSession]:
    async with connected(made, settings, transport) as client:
        assert client.session is not None
        options = UploadOptions(concurrency=2, max_attempts=1)
        uploader = Uploader(settings, client, options, sleep=never_sleep)
        client.session.on_dead(uploader.stop)
        await uploader.run()
        client.session.raise_if_dead()
        return uploader, client.session


def outcomes(settings: Settings) -> Counter[str]:
    rows = read_csv(settings.runlog, RunLogRow)
    return Counter(row.outcome for row in rows if row.outcome != runlog.STARTED)


def test_tokens_are_refreshed_during_a_long_upload(tmp_path: Path) -> None:
    """Tokens that expire every three requests still carry a run of 12 files."""
    made = make_fake(tmp_path, SLOW, access_token_ttl_s=60)
    settings = real_settings(tmp_path)
    seed_files(made, settings, 12)

    async def go() -> tuple[Uploader, auth.TokenSession]:
        await sign_in(made, settings)
        return await upload_all(made, settings)

    try:
        uploader, session = asyncio.run(go())
        attached = made.app.state.company.attachables(REALM)
    finally:
        made.app.state.company.close()

    assert uploader.summary.outcomes[runlog.SUCCESS] == 12
    assert outcomes(settings) == {runlog.SUCCESS: 12}
    assert len(attached) == 12
    assert session.refreshes >= 3
    assert TokenStore(settings.tokens_path).load() == session.tokens


class Recorder(httpx.AsyncBaseTransport):
    """Notes the bearer token of every API request before passing it on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, events: list[str]) -> None:
        self.inner = inner
        self.events = events

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v3/"):
            bearer = request.headers["authorization"].removeprefix("Bearer ")
            self.events.append(f"used {bearer}")
        return await self.inner.handle_async_request(request)


def test_rotated_tokens_are_on_disk_before_the_new_access_token_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every access token reaches the API only after the file holding it is saved."""
    made = make_fake(tmp_path, SLOW, access_token_ttl_s=60, rotated_refresh_grace_s=0)
    settings = real_settings(tmp_path)
    seed_files(made, settings, 9)
    events: list[str] = []

    class RecordingStore(TokenStore):
        def save(self, tokens: Tokens) -> None:
            super().save(tokens)
            events.append(f"saved {tokens.access_token}")

    monkeypatch.setattr(auth, "TokenStore", RecordingStore)

    async def go() -> auth.TokenSession:
        signed_in = await sign_in(made, settings)
        events.append(f"saved {signed_in.access_token}")
        _, session = await upload_all(
            made, settings, lambda: Recorder(made.transport(), events)
        )
        return session

    try:
        session = asyncio.run(go())
    finally:
        made.app.state.company.close()

    used = [e.removeprefix("used ") for e in events if e.startswith("used ")]
    assert session.refreshes >= 2
    for access_token in set(used):
        first_use = events.index(f"used {access_token}")
        assert events.index(f"saved {access_token}") < first_use
    # With no grace for rotated tokens, only the newest refresh token works.
    assert outcomes(settings) == {runlog.SUCCESS: 9}


def test_a_failed_save_during_refresh_leaves_a_usable_token_file(
    fake: OAuthFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When new tokens cannot be stored the call stops; the old file still works."""
    settings = real_settings(tmp_path)
    store = TokenStore(settings.tokens_path)
    before = asyncio.run(sign_in(fake, settings))
    real_replace = tokens_module.os.replace

    def crash(source: object, target: object) -> None:
        raise OSError(5, "Input/output error")

    async def ask() -> str:
        async with connected(fake, settings) as client:
            return await client.company_name()

    fake.time.now += 7200
    monkeypatch.setattr(tokens_module.os, "replace", crash)
    with pytest.raises(AuthError, match="previous ones"):
        asyncio.run(ask())
    assert store.load() == before

    monkeypatch.setattr(tokens_module.os, "replace", real_replace)
    assert asyncio.run(ask()) == f"Fake QBO company {REALM}"
    assert store.load() != before


@pytest.mark.parametrize("how", ["expired-here", "refused-by-qbo"])
def test_concurrent_requests_refresh_once(
    fake: OAuthFake, tmp_path: Path, how: str
) -> None:
    """Ten requests that all need a new token cause a single refresh."""
    settings = real_settings(tmp_path)
    asyncio.run(sign_in(fake, settings))
    refreshes_before = fake.authority.stats.refreshes
    if how == "expired-here":
        fake.time.now += 7200
    else:
        fake.authority.expire_access_tokens()

    async def go() -> list[str]:
        async with connected(fake, settings) as client:
            return await asyncio.gather(*(client.company_name() for _ in range(10)))

    names = asyncio.run(go())

    assert set(names) == {f"Fake QBO company {REALM}"}
    assert fake.authority.stats.refreshes - refreshes_before == 1


def test_a_second_process_adopts_the_tokens_the_first_refreshed(
    fake: OAuthFake, tmp_path: Path
) -> None:
    """Two sessions on one token file: the second uses what the first stored."""
    settings = real_settings(tmp_path)
    asyncio.run(sign_in(fake, settings))

    async def go() -> None:
        async with (
            connected(fake, settings) as first,
            connected(fake, settings) as second,
        ):
            fake.time.now += 7200
            await first.company_name()
            await second.company_name()
            assert first.session is not None and second.session is not None
            assert first.session.tokens == second.session.tokens

    before = fake.authority.stats.refreshes
    asyncio.run(go())

    assert fake.authority.stats.refreshes - before == 1


def test_401_refreshes_and_retries_exactly_once(tmp_path: Path) -> None:
    """A 401 gets one refresh and one retry; a second 401 ends the sign-in."""
    settings = real_settings(tmp_path)
    calls: Counter[str] = Counter()
    now = 2_000_000_000.0
    TokenStore(settings.tokens_path).save(
        Tokens("sandbox", REALM, "at-1", "rt-1", now + 3600, None, now)
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tokens/bearer"):
            calls["token"] += 1
            return httpx.Response(
                200,
                json={"access_token": "at-2", "refresh_token": "rt-2"},
            )
        calls["api"] += 1
        return httpx.Response(401, json={"fault": {"error": [], "type": "AUTH"}})

    async def go() -> None:
        async with auth.authorized_http(
            dataclasses.replace(settings),
            transport=lambda: httpx.MockTransport(answer),
            environ={**ENV, "QBO_OAUTH_DISCOVERY_URL": ""},
            clock=lambda: now,
        ) as (http, session):
            await QboClient(http, REALM, session=session).company_name()

    with pytest.raises(AuthError, match="auth login"):
        asyncio.run(go())
    assert calls == {"api": 2, "token": 1}


def test_invalid_grant_stops_cleanly_with_finished_uploads_recorded(
    tmp_path: Path,
) -> None:
    """A dead refresh token stops the run; every upload that finished is logged."""
    made = make_fake(tmp_path, SLOW, access_token_ttl_s=60, rotated_refresh_grace_s=0)
    settings = real_settings(tmp_path)
    seed_files(made, settings, 12)

    async def go() -> None:
        tokens = await sign_in(made, settings)
        # Someone else refreshes with our token: with no grace, ours dies.
        async with made.client() as http:
            await token(
                http, grant_type="refresh_token", refresh_token=tokens.refresh_token
            )
        await upload_all(made, settings)

    try:
        with pytest.raises(AuthError, match="invalid_grant") as caught:
            asyncio.run(go())
        attached = made.app.state.company.attachables(REALM)
    finally:
        made.app.state.company.close()

    assert "qbo-attach auth login" in str(caught.value)
    assert 0 < len(attached) < 12
    assert outcomes(settings) == {runlog.SUCCESS: len(attached)}


def test_mapping_of_a_company_without_one_explains_the_csv(
    fake: OAuthFake, tmp_path: Path
) -> None:
    """A real company with no QbdtEntityIdMapping gets the hand-made CSV's columns."""
    settings = real_settings(tmp_path)
    asyncio.run(sign_in(fake, settings))

    async def go() -> None:
        async with connected(fake, settings) as client:
            await mapping.download_mapping(client, settings.mapping_csv, "80")

    with pytest.raises(UsageError, match=r"mapping_export\.csv") as caught:
        asyncio.run(go())
    assert "legacy_txnid_norm,legacy_entity_type" in str(caught.value)


def test_production_needs_an_explicit_yes(tmp_path: Path) -> None:
    """Production without --yes-production stops before any token is read."""
    settings = dataclasses.replace(real_settings(tmp_path), target="production")

    async def go() -> None:
        async with auth.authorized_http(settings, environ=ENV):
            pass

    with pytest.raises(UsageError, match="--yes-production"):
        asyncio.run(go())


def test_intuits_endpoints_are_the_defaults() -> None:
    """Without overrides the endpoints are Intuit's, and nothing is fetched."""

    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.url}")

    async def go(target: str) -> auth.Endpoints:
        return await auth.endpoints_for(
            target, transport=lambda: httpx.MockTransport(never), environ={}
        )

    sandbox, production = asyncio.run(go("sandbox")), asyncio.run(go("production"))
    assert sandbox.api_base == "https://sandbox-quickbooks.api.intuit.com"
    assert production.api_base == "https://quickbooks.api.intuit.com"
    assert sandbox.token_url == (
        "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    )
    assert sandbox.authorize_url == "https://appcenter.intuit.com/connect/oauth2"
