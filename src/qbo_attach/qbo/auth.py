"""OAuth 2.0 for Intuit's API: sign-in, import, refresh, revoke.

Authlib's httpx client speaks to the token endpoint (client authentication
with HTTP Basic, both grants, revocation); this module decides when to call
it and keeps the newest tokens in the ``TokenStore``.

The rules, from docs/qbo-api.md:

- The access token is refreshed shortly before it expires, and again when QBO
  answers 401; the refused request is then sent once more.
- A refresh may hand back a new refresh token, and the old one dies a day
  later: the new pair is on disk before the new access token is used.
- Concurrent requests share one refresh: the first takes a lock, the others
  find the token already renewed. Across processes the token file's lock
  does the same, and a process adopts tokens another one stored.
- ``invalid_grant`` means the sign-in is over: the session is dead, every
  request after it raises ``AuthError`` at once, and whoever registered with
  ``on_dead`` (the uploader) stops handing out work.

No token, no client secret and no ``Authorization`` header value is ever put
into a log record, an exception message or the terminal.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
import urllib.parse
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from qbo_attach.errors import AuthError, TransientError, UsageError
from qbo_attach.qbo.tokens import Tokens, TokenStore
from qbo_attach.settings import REAL_TARGETS, Settings

log = logging.getLogger(__name__)

SCOPE = "com.intuit.quickbooks.accounting"
DEFAULT_REDIRECT_URI = "http://localhost:8000/callback"
# Refresh this long before the access token's end, so that a request paced
# behind others by the realm gate still carries a live token when it leaves.
REFRESH_LEEWAY_S = 300.0
LOGIN_TIMEOUT_S = 300.0
TOKEN_TIMEOUT = httpx.Timeout(30.0, connect=15.0)
API_TIMEOUT = httpx.Timeout(120.0, connect=15.0)
# Overrides for Intuit's endpoints, to point a real target at a fake QBO.
DISCOVERY_URL_VAR = "QBO_OAUTH_DISCOVERY_URL"
API_BASE_URL_VAR = "QBO_API_BASE_URL"

Transport = Callable[[], httpx.AsyncBaseTransport]
Clock = Callable[[], float]


@functools.cache
def _authlib() -> Any:
    """Authlib's httpx integration, imported on first use.

    Importing it pulls in a JOSE library and cryptography, which commands that
    never sign in (every run against the fake) should not wait for.
    """
    with warnings.catch_warnings():
        # Authlib prefers a fork named httpx2 and warns when it falls back to
        # httpx, which this project uses; the API is the same. Its module that
        # warns installs an "always" filter on import, so it goes first.
        import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401

        warnings.simplefilter("ignore", DeprecationWarning)
        from authlib.integrations import httpx_client  # type: ignore[import-untyped]

    return httpx_client


def _oauth_error() -> type[Exception]:
    error: type[Exception] = _authlib().OAuthError
    return error


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where one target's API and OAuth endpoints are."""

    api_base: str  # the API's root; requests go to {api_base}/v3/company/...
    authorize_url: str
    token_url: str
    revoke_url: str


_INTUIT_AUTHORIZE = "https://appcenter.intuit.com/connect/oauth2"
_INTUIT_TOKEN = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
_INTUIT_REVOKE = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
INTUIT_ENDPOINTS = {
    "sandbox": Endpoints(
        "https://sandbox-quickbooks.api.intuit.com",
        _INTUIT_AUTHORIZE,
        _INTUIT_TOKEN,
        _INTUIT_REVOKE,
    ),
    "production": Endpoints(
        "https://quickbooks.api.intuit.com",
        _INTUIT_AUTHORIZE,
        _INTUIT_TOKEN,
        _INTUIT_REVOKE,
    ),
}


@dataclass(frozen=True, slots=True)
class OAuthApp:
    """The Intuit developer app's credentials, from the environment only."""

    client_id: str
    client_secret: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OAuthApp:
        client_id = environ.get("QBO_CLIENT_ID", "").strip()
        client_secret = environ.get("QBO_CLIENT_SECRET", "").strip()
        if not client_id or not client_secret:
            raise UsageError(
                "QBO_CLIENT_ID and QBO_CLIENT_SECRET must be set, in the "
                "environment or in a .env file in the working folder; copy them "
                "from the Keys & credentials page of your Intuit developer app"
            )
        return cls(client_id, client_secret)

    def oauth_client(
        self, transport: Transport, redirect_uri: str | None = None
    ) -> Any:
        """An authlib client for the token endpoint, authenticating with Basic."""
        return _authlib().AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            revocation_endpoint_auth_method="client_secret_basic",
            scope=SCOPE,
            redirect_uri=redirect_uri,
            transport=transport(),
            timeout=TOKEN_TIMEOUT,
        )


def check_target(target: str) -> None:
    if target not in REAL_TARGETS:
        raise UsageError(
            f"--target {target}: OAuth sign-in is for sandbox or production only"
        )


async def endpoints_for(
    target: str,
    *,
    transport: Transport = httpx.AsyncHTTPTransport,
    environ: Mapping[str, str] = os.environ,
) -> Endpoints:
    """Intuit's endpoints for the target, unless the environment overrides them.

    ``QBO_OAUTH_DISCOVERY_URL`` names an OpenID discovery document to read the
    OAuth endpoints from, and ``QBO_API_BASE_URL`` the API's root (by default
    the discovery document's own origin): together they point a real target
    at a fake QBO, which is how this module is tested.
    """
    check_target(target)
    discovery_url = environ.get(DISCOVERY_URL_VAR, "")
    api_base = environ.get(API_BASE_URL_VAR, "").rstrip("/")
    if not discovery_url:
        intuit = INTUIT_ENDPOINTS[target]
        if api_base:
            return Endpoints(
                api_base, intuit.authorize_url, intuit.token_url, intuit.revoke_url
            )
        return intuit
    async with httpx.AsyncClient(transport=transport(), timeout=TOKEN_TIMEOUT) as http:
        document = await _discovery_document(http, discovery_url)
    if not api_base:
        parts = urllib.parse.urlsplit(discovery_url)
        api_base = f"{parts.scheme}://{parts.netloc}"
    try:
        return Endpoints(
            api_base,
            str(document["authorization_endpoint"]),
            str(document["token_endpoint"]),
            str(document["revocation_endpoint"]),
        )
    except KeyError as exc:
        raise UsageError(
            f"{DISCOVERY_URL_VAR}={discovery_url}: the document names no {exc}"
        ) from exc


async def _discovery_document(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await http.get(url)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise UsageError(
            f"{DISCOVERY_URL_VAR}={url}: cannot read the discovery document ({exc})"
        ) from exc
    if not isinstance(document, dict):
        raise UsageError(f"{DISCOVERY_URL_VAR}={url}: not a JSON object")
    return document


class TokenSession:
    """The live tokens of one connection, refreshed once however many ask."""

    def __init__(
        self,
        oauth: Any,
        endpoints: Endpoints,
        store: TokenStore,
        tokens: Tokens,
        *,
        clock: Clock = time.time,
        leeway: float = REFRESH_LEEWAY_S,
    ) -> None:
        self._oauth = oauth
        self.endpoints = endpoints
        self.store = store
        self.tokens = tokens
        self._clock = clock
        self._leeway = leeway
        self._lock = asyncio.Lock()
        self.generation = 0  # bumped whenever the tokens change
        self.refreshes = 0  # calls to the token endpoint, for tests and logs
        self._dead: str | None = None
        self._on_dead: list[Callable[[], None]] = []

    def on_dead(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the sign-in is found to be over."""
        self._on_dead.append(callback)

    async def bearer(self) -> tuple[str, int]:
        """A live access token and the generation it belongs to."""
        self.raise_if_dead()
        if self._needs_refresh(self.tokens):
            await self.refresh(self.generation)
        return self.tokens.access_token, self.generation

    def _needs_refresh(self, tokens: Tokens) -> bool:
        # Intuit's tokens live an hour; a shorter life (a test's fake) gets a
        # proportionally shorter margin rather than a refresh on every call.
        lifetime = tokens.access_expires_at - tokens.updated_at
        margin = min(self._leeway, lifetime / 4)
        return tokens.access_expires_within(margin, self._clock())

    async def refresh(self, seen: int, *, adopt: bool = True) -> None:
        """Renew the tokens unless someone did since generation ``seen``.

        With ``adopt``, tokens another process stored meanwhile are taken
        instead of calling the token endpoint.
        """
        async with self._lock:
            self.raise_if_dead()
            if self.generation != seen:
                return
            with self.store.locked():
                if not (adopt and self._adopt_stored()):
                    await self._refresh_now()
            self.generation += 1

    def _adopt_stored(self) -> bool:
        stored = self.store.load()
        current = self.tokens
        if (
            stored is None
            or stored.refresh_token == current.refresh_token
            or (stored.target, stored.realm_id) != (current.target, current.realm_id)
            or self._needs_refresh(stored)
        ):
            return False
        log.info("using the tokens another process refreshed")
        self.tokens = stored
        return True

    async def _refresh_now(self) -> None:
        current = self.tokens
        try:
            answer = await self._oauth.refresh_token(
                self.endpoints.token_url, refresh_token=current.refresh_token
            )
        except _oauth_error() as exc:
            raise self.fail(_refusal(getattr(exc, "error", ""), current)) from None
        except (httpx.HTTPError, ValueError) as exc:
            # Not the sign-in's fault: the uploader may retry the request.
            raise TransientError(
                f"the token endpoint could not be reached: {type(exc).__name__}"
            ) from None
        renewed = Tokens.from_answer(
            current.target,
            current.realm_id,
            {"refresh_token": current.refresh_token, **answer},
            self._clock(),
        )
        try:
            # Stored before the new access token is used: see the module notes.
            self.store.save(renewed)
        except AuthError as exc:
            raise self.fail(str(exc)) from None
        self.tokens = renewed
        self.refreshes += 1
        log.info(
            "refreshed the access token of realm %s (%s)",
            current.realm_id,
            "new refresh token"
            if renewed.refresh_token != current.refresh_token
            else "same refresh token",
        )

    def fail(self, message: str) -> AuthError:
        """Mark the sign-in as over; tell the listeners once."""
        if self._dead is None:
            self._dead = message
            log.error("%s", message)
            for callback in self._on_dead:
                callback()
        return AuthError(message)

    def raise_if_dead(self) -> None:
        """Raise the AuthError that ended the sign-in, if one did."""
        if self._dead is not None:
            raise AuthError(self._dead)

    async def aclose(self) -> None:
        await self._oauth.aclose()


def _refusal(error: object, tokens: Tokens) -> str:
    again = f"run `qbo-attach auth login --target {tokens.target}`"
    if error == "invalid_grant":
        return (
            f"the refresh token of realm {tokens.realm_id} ({tokens.target}) is no "
            f"longer valid (invalid_grant): {again}, then the same command again; "
            "every upload finished so far is recorded"
        )
    return (
        f"the token endpoint refused the refresh ({error}); check QBO_CLIENT_ID "
        f"and QBO_CLIENT_SECRET, then {again}"
    )


class BearerAuth(httpx.Auth):
    """Puts the session's access token on each request; on 401, refresh once."""

    # The body is kept so the request can be sent again after a refresh.
    requires_request_body = True

    def __init__(self, session: TokenSession) -> None:
        self.session = session

    def sync_auth_flow(self, request: httpx.Request) -> Any:
        raise RuntimeError("BearerAuth works with httpx.AsyncClient only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token, generation = await self.session.bearer()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # A token can die before its time (revoked, a clock that is off).
        log.info("QBO answered 401; refreshing the access token and retrying once")
        await self.session.refresh(generation, adopt=False)
        token, _ = await self.session.bearer()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            raise self.session.fail(
                "QBO refused a freshly refreshed access token (HTTP 401): run "
                f"`qbo-attach auth login --target {self.session.tokens.target}`"
            )


def signed_in(settings: Settings) -> Tokens:
    """The stored tokens for the settings' target, or an AuthError saying why not."""
    tokens = TokenStore(settings.tokens_path).load()
    if tokens is None:
        raise AuthError(
            f"not signed in to {settings.target}: no token file at "
            f"{settings.tokens_path}; run `qbo-attach auth login --target "
            f"{settings.target}`"
        )
    if tokens.target != settings.target:
        raise AuthError(
            f"the token file {settings.tokens_path} signs in to {tokens.target}, "
            f"not {settings.target}; use another QBO_TOKEN_FILE or run "
            f"`qbo-attach auth login --target {settings.target}`"
        )
    return tokens


def check_production(settings: Settings) -> None:
    if settings.target == "production" and not settings.yes_production:
        raise UsageError(
            "--target production changes a client's live company: add "
            "--yes-production (or set QBO_YES_PRODUCTION=1) to go ahead"
        )


@asynccontextmanager
async def authorized_http(
    settings: Settings,
    *,
    transport: Transport = httpx.AsyncHTTPTransport,
    environ: Mapping[str, str] = os.environ,
    clock: Clock = time.time,
) -> AsyncIterator[tuple[httpx.AsyncClient, TokenSession]]:
    """An HTTP client on the target's API that carries and renews the tokens."""
    check_production(settings)
    tokens = signed_in(settings)
    if settings.realm_id != tokens.realm_id:
        raise AuthError(
            f"--realm-id {settings.realm_id}: the sign-in in {settings.tokens_path} "
            f"is for realm {tokens.realm_id}; run `qbo-attach auth login` for the "
            "other company, with its own QBO_TOKEN_FILE"
        )
    app = OAuthApp.from_env(environ)
    endpoints = await endpoints_for(
        settings.target, transport=transport, environ=environ
    )
    oauth = app.oauth_client(transport)
    try:
        session = TokenSession(
            oauth, endpoints, TokenStore(settings.tokens_path), tokens, clock=clock
        )
        async with httpx.AsyncClient(
            transport=transport(),
            base_url=endpoints.api_base,
            auth=BearerAuth(session),
            timeout=API_TIMEOUT,
        ) as http:
            yield http, session
    finally:
        await oauth.aclose()


@dataclass(frozen=True, slots=True)
class Redirect:
    """What the authorization server's redirect carried to the loopback URI."""

    code: str
    state: str
    realm_id: str
    error: str


async def login(
    app: OAuthApp,
    endpoints: Endpoints,
    store: TokenStore,
    target: str,
    *,
    show_url: Callable[[str], None],
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    transport: Transport = httpx.AsyncHTTPTransport,
    timeout: float = LOGIN_TIMEOUT_S,
    clock: Clock = time.time,
) -> Tokens:
    """Run the authorization-code flow through a loopback redirect; store tokens.

    ``show_url`` receives the consent URL once the listener is up; it prints
    it, opens a browser, or (in tests) follows it.
    """
    check_target(target)
    oauth = app.oauth_client(transport, redirect_uri)
    state = secrets.token_urlsafe(32)
    url, _ = oauth.create_authorization_url(endpoints.authorize_url, state=state)
    try:
        async with RedirectListener(redirect_uri, state) as listener:
            show_url(url)
            redirect = await listener.wait(timeout)
        _check_redirect(redirect, state)
        try:
            answer = await oauth.fetch_token(
                endpoints.token_url, grant_type="authorization_code", code=redirect.code
            )
        except _oauth_error() as exc:
            raise AuthError(
                "the token endpoint refused the authorization code "
                f"({getattr(exc, 'error', '')}); "
                "run `qbo-attach auth login` again"
            ) from None
    finally:
        await oauth.aclose()
    tokens = Tokens.from_answer(target, redirect.realm_id, answer, clock())
    store.save(tokens)
    return tokens


def _check_redirect(redirect: Redirect, state: str) -> None:
    if not secrets.compare_digest(redirect.state, state):
        raise AuthError(
            "the sign-in redirect carried a state that this login did not send; "
            "it was refused (it may be forged or from an older attempt): run "
            "`qbo-attach auth login` again"
        )
    if redirect.error:
        raise AuthError(
            f"Intuit did not grant access ({redirect.error}); run "
            "`qbo-attach auth login` again and choose Connect"
        )
    if not redirect.code or not redirect.realm_id:
        raise AuthError(
            "the sign-in redirect carried no code or no realmId: sign in to a "
            "QuickBooks company and run `qbo-attach auth login` again"
        )


class RedirectListener:
    """A one-shot HTTP listener on the loopback redirect URI.

    It answers the browser's request for the redirect path with a short page
    and hands its query to ``wait``; anything else (a favicon) gets a 404.
    """

    def __init__(self, redirect_uri: str, state: str) -> None:
        parts = urllib.parse.urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname not in (
            "localhost",
            "127.0.0.1",
            "::1",
        ):
            raise UsageError(
                f"--redirect-uri {redirect_uri}: use a loopback http URI such as "
                f"{DEFAULT_REDIRECT_URI}, registered in the Intuit app"
            )
        self._host = parts.hostname
        self._port = parts.port or 80
        self._path = parts.path or "/"
        self._state = state
        self._received: asyncio.Future[Redirect] | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RedirectListener:
        self._received = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(
                self._answer, self._host, self._port
            )
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {self._host}:{self._port} for the sign-in "
                f"redirect ({exc.strerror}); free the port or pass another "
                "--redirect-uri registered in the Intuit app"
            ) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait(self, timeout: float) -> Redirect:
        assert self._received is not None
        try:
            return await asyncio.wait_for(asyncio.shield(self._received), timeout)
        except TimeoutError:
            raise AuthError(
                f"no sign-in redirect arrived within {timeout:.0f} s; run "
                "`qbo-attach auth login` again"
            ) from None

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            target = head.split(b" ", 2)[1].decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, IndexError):
            writer.close()
            return
        except TimeoutError:
            writer.close()
            return
        path, _, query = target.partition("?")
        status, page = self._take(path, query)
        await _respond(writer, status, page)

    def _take(self, path: str, query: str) -> tuple[str, str]:
        assert self._received is not None
        if path != self._path or self._received.done():
            return "404 Not Found", "Nothing here."
        fields = dict(urllib.parse.parse_qsl(query))
        redirect = Redirect(
            code=fields.get("code", ""),
            state=fields.get("state", ""),
            realm_id=fields.get("realmId", ""),
            error=fields.get("error", ""),
        )
        self._received.set_result(redirect)
        if not secrets.compare_digest(redirect.state, self._state):
            return "400 Bad Request", "Refused: the state does not match this login."
        if redirect.error or not redirect.code:
            return "400 Bad Request", "Access was not granted."
        return (
            "200 OK",
            "Signed in. You can close this window and go back to the terminal.",
        )


async def _respond(writer: asyncio.StreamWriter, status: str, text: str) -> None:
    body = f"<!doctype html><title>qbo-attach</title><p>{text}</p>".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    writer.write(head + body)
    try:
        await writer.drain()
    finally:
        writer.close()


async def import_refresh_token(
    app: OAuthApp,
    endpoints: Endpoints,
    store: TokenStore,
    target: str,
    realm_id: str,
    refresh_token: str,
    *,
    transport: Transport = httpx.AsyncHTTPTransport,
    clock: Clock = time.time,
) -> Tokens:
    """Store a refresh token obtained elsewhere, after proving it with a refresh."""
    check_target(target)
    now = clock()
    seed = Tokens(target, realm_id, "", refresh_token, now, None, now)
    oauth = app.oauth_client(transport)
    session = TokenSession(oauth, endpoints, store, seed, clock=clock)
    try:
        await session.refresh(session.generation, adopt=False)
    finally:
        await oauth.aclose()
    return session.tokens


async def logout(
    app: OAuthApp,
    endpoints: Endpoints,
    store: TokenStore,
    *,
    transport: Transport = httpx.AsyncHTTPTransport,
) -> bool:
    """Revoke the stored refresh token and delete the file; False if not revoked.

    The file goes even when revoking fails: the person asked to sign out.
    """
    tokens = store.load()
    if tokens is None:
        return True
    oauth = app.oauth_client(transport)
    try:
        response = await oauth.revoke_token(
            endpoints.revoke_url,
            token=tokens.refresh_token,
            token_type_hint="refresh_token",
        )
        revoked = bool(response.status_code == 200)
    except httpx.HTTPError:
        revoked = False
    finally:
        await oauth.aclose()
    store.delete()
    return revoked
