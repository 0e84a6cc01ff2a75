"""The fake QBO's OAuth surface, driven in-process through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from qbo_attach.fake.app import FaultSettings, create_app
from qbo_attach.fake.oauth import Authority, OAuthSettings

BASE = "http://fake-qbo.invalid"
REALM = "123"
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret-value"
DISCOVERY = f"{BASE}/.well-known/openid_configuration"
ENV = {
    "QBO_CLIENT_ID": CLIENT_ID,
    "QBO_CLIENT_SECRET": CLIENT_SECRET,
    "QBO_OAUTH_DISCOVERY_URL": DISCOVERY,
}
REDIRECT = "http://localhost:8000/callback"


class FakeTime:
    """A wall clock that moves only when told to, shared by fake and client."""

    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class OAuthFake:
    """An OAuth-enabled fake QBO on a clock the test moves."""

    app: Starlette
    time: FakeTime

    @property
    def authority(self) -> Authority:
        authority = self.app.state.oauth
        assert isinstance(authority, Authority)
        return authority

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport(), base_url=BASE)


def make_fake(
    tmp_path: Path, faults: FaultSettings | None = None, **oauth: Any
) -> OAuthFake:
    fake_time = FakeTime()
    settings = OAuthSettings(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, realm_id=REALM, **oauth
    )
    app = create_app(
        tmp_path / "fake.sqlite",
        faults or FaultSettings(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        oauth=settings,
    )
    app.state.company.add_realm(REALM)
    return OAuthFake(app, fake_time)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[OAuthFake]:
    made = make_fake(tmp_path)
    yield made
    made.app.state.company.close()


def basic(client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


async def authorize(http: httpx.AsyncClient, **params: str) -> httpx.Response:
    query = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "scope": "com.intuit.quickbooks.accounting",
        "redirect_uri": REDIRECT,
        "state": "st4te",
        **params,
    }
    return await http.get("/connect/oauth2", params=query)


async def token(http: httpx.AsyncClient, **form: str) -> httpx.Response:
    return await http.post("/oauth2/v1/tokens/bearer", data=form, headers=basic())


async def sign_in(http: httpx.AsyncClient) -> dict[str, Any]:
    """Consent, then exchange the code: the token answer."""
    redirect = await authorize(http)
    code = redirect_params(redirect)["code"]
    answer = await token(
        http, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def redirect_params(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


async def company_info(http: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await http.get(
        f"/v3/company/{REALM}/companyinfo/{REALM}",
        params={"minorversion": "75"},
        headers={"Authorization": f"Bearer {access_token}"},
    )


def test_discovery_document_names_endpoints_at_intuits_paths(
    fake: OAuthFake,
) -> None:
    """Both discovery documents name the authorize, token and revoke endpoints."""

    async def go() -> list[dict[str, Any]]:
        async with fake.client() as http:
            names = ("openid_configuration", "openid_sandbox_configuration")
            answers = [await http.get(f"/.well-known/{name}") for name in names]
        return [answer.json() for answer in answers]

    for document in asyncio.run(go()):
        assert document["authorization_endpoint"] == f"{BASE}/connect/oauth2"
        assert document["token_endpoint"] == f"{BASE}/oauth2/v1/tokens/bearer"
        assert document["revocation_endpoint"] == f"{BASE}/v2/oauth2/tokens/revoke"


def test_consent_redirects_with_code_state_and_realm(fake: OAuthFake) -> None:
    """The authorize page sends the browser back with code, state and realmId."""

    async def go() -> httpx.Response:
        async with fake.client() as http:
            return await authorize(http)

    answer = asyncio.run(go())

    assert answer.status_code == 302
    assert answer.headers["location"].startswith(REDIRECT + "?")
    params = redirect_params(answer)
    assert params["state"] == "st4te"
    assert params["realmId"] == REALM
    assert params["code"]


@pytest.mark.parametrize(
    "params",
    [{"client_id": "someone-else"}, {"scope": "openid"}, {"state": ""}],
    ids=["unknown-client", "no-accounting-scope", "no-state"],
)
def test_consent_refuses_a_bad_request(fake: OAuthFake, params: dict[str, str]) -> None:
    """A wrong client id, scope or a missing state gets a 400, no redirect."""

    async def go() -> httpx.Response:
        async with fake.client() as http:
            return await authorize(http, **params)

    assert asyncio.run(go()).status_code == 400


def test_code_exchange_needs_basic_auth_and_works_once(fake: OAuthFake) -> None:
    """The code buys tokens once, only with the client's Basic credentials."""

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with fake.client() as http:
            code = redirect_params(await authorize(http))["code"]
            form = {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
            }
            wrong = await http.post(
                "/oauth2/v1/tokens/bearer", data=form, headers=basic(secret="nope")
            )
            first = await token(http, **form)
            again = await token(http, **form)
        return wrong, first, again

    wrong, first, again = asyncio.run(go())

    assert (wrong.status_code, wrong.json()) == (401, {"error": "invalid_client"})
    assert first.status_code == 200
    assert set(first.json()) == {
        "token_type",
        "access_token",
        "expires_in",
        "refresh_token",
        "x_refresh_token_expires_in",
    }
    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


def test_refresh_rotates_and_the_old_token_dies_after_its_grace(
    fake: OAuthFake,
) -> None:
    """A refresh hands back a new refresh token; the old one lives 24 hours more."""

    async def go() -> list[httpx.Response]:
        async with fake.client() as http:
            old = (await sign_in(http))["refresh_token"]
            renewed = await token(http, grant_type="refresh_token", refresh_token=old)
            within_grace = await token(
                http, grant_type="refresh_token", refresh_token=old
            )
            fake.time.now += 86_401
            after_grace = await token(
                http, grant_type="refresh_token", refresh_token=old
            )
            unknown = await token(
                http, grant_type="refresh_token", refresh_token="made-up"
            )
        assert renewed.json()["refresh_token"] != old
        return [renewed, within_grace, after_grace, unknown]

    answers = asyncio.run(go())

    assert [a.status_code for a in answers] == [200, 200, 400, 400]
    assert answers[2].json() == {"error": "invalid_grant"}


def test_access_token_expires_with_qbos_401_body(tmp_path: Path) -> None:
    """A spent access token gets the AUTHENTICATION fault of qbo-api.md."""
    made = make_fake(tmp_path, access_token_ttl_s=60)

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with made.client() as http:
            access = (await sign_in(http))["access_token"]
            fresh = await company_info(http, access)
            made.time.now += 61
            return fresh, await company_info(http, access)

    try:
        fresh, stale = asyncio.run(go())
    finally:
        made.app.state.company.close()

    assert fresh.status_code == 200
    assert fresh.json()["CompanyInfo"]["CompanyName"] == f"Fake QBO company {REALM}"
    assert stale.status_code == 401
    error = stale.json()["fault"]["error"][0]
    assert stale.json()["fault"]["type"] == "AUTHENTICATION"
    assert error["code"] == "3200"
    assert "errorCode=003200" in error["message"]


@pytest.mark.parametrize(
    "header",
    [None, "Bearer made-up-token", "Basic Zm9vOmJhcg=="],
    ids=["none", "unknown", "basic"],
)
def test_api_refuses_tokens_it_did_not_issue(
    fake: OAuthFake, header: str | None
) -> None:
    """In OAuth mode a made-up bearer token no longer passes."""

    async def go() -> httpx.Response:
        async with fake.client() as http:
            headers = {"Authorization": header} if header else {}
            return await http.get(
                f"/v3/company/{REALM}/companyinfo/{REALM}", headers=headers
            )

    assert asyncio.run(go()).status_code == 401


def test_token_for_another_realm_is_forbidden(fake: OAuthFake) -> None:
    """A token works for the company it was granted for only."""
    fake.app.state.company.add_realm("999")

    async def go() -> httpx.Response:
        async with fake.client() as http:
            access = (await sign_in(http))["access_token"]
            return await http.get(
                "/v3/company/999/companyinfo/999",
                headers={"Authorization": f"Bearer {access}"},
            )

    assert asyncio.run(go()).status_code == 403


@pytest.mark.parametrize("as_json", [True, False], ids=["json-body", "form-body"])
def test_revoke_ends_the_whole_sign_in(fake: OAuthFake, as_json: bool) -> None:
    """Revoking the refresh token kills it and the access tokens issued with it."""

    async def go() -> tuple[int, int, int]:
        async with fake.client() as http:
            tokens = await sign_in(http)
            refresh = tokens["refresh_token"]
            url = "/v2/oauth2/tokens/revoke"
            if as_json:
                revoked = await http.post(url, json={"token": refresh}, headers=basic())
            else:
                revoked = await http.post(url, data={"token": refresh}, headers=basic())
            api = await company_info(http, tokens["access_token"])
            again = await token(http, grant_type="refresh_token", refresh_token=refresh)
        return revoked.status_code, api.status_code, again.status_code

    assert asyncio.run(go()) == (200, 401, 400)
