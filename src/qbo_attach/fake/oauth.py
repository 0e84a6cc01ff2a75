"""The fake QBO's OAuth 2.0 authority: Intuit's sign-in surface, in memory.

Off by default: a fake without it accepts any bearer token. With it
(``create_app(..., oauth=OAuthSettings())``, ``fake-server --oauth``) the API
accepts only access tokens this authority issued, for the realm they were
issued for, and only until they expire. It serves, at the paths Intuit uses:

========================================  ===================================
``GET /.well-known/openid_configuration``  the discovery document (also at
                                           ``openid_sandbox_configuration``),
                                           naming the endpoints below
``GET /connect/oauth2``                    the consent page: approves at once
                                           and redirects to ``redirect_uri``
                                           with ``code``, ``state``,
                                           ``realmId``
``POST /oauth2/v1/tokens/bearer``          the token endpoint: HTTP Basic
                                           client authentication, grants
                                           ``authorization_code`` and
                                           ``refresh_token``
``POST /v2/oauth2/tokens/revoke``          revokes a token and every token of
                                           the same sign-in
========================================  ===================================

Every refresh hands back a new refresh token (Intuit does so at least daily);
the one it replaces keeps working for ``rotated_refresh_grace_s``, 24 hours as
at Intuit. A refresh token that is unknown, expired, revoked or past its
grace answers 400 ``{"error": "invalid_grant"}``. Tokens live in the server's
memory only: a restarted ``fake-server`` forgets every sign-in.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from qbo_attach.settings import FAKE_REALM_ID

Clock = Callable[[], float]

SCOPE = "com.intuit.quickbooks.accounting"
AUTHORIZE_PATH = "/connect/oauth2"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REVOKE_PATH = "/v2/oauth2/tokens/revoke"
DISCOVERY_PATHS = (
    "/.well-known/openid_configuration",
    "/.well-known/openid_sandbox_configuration",
)
_CODE_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """The fake authority's app credentials, token lifetimes and company."""

    client_id: str = "fake-client-id"
    client_secret: str = field(default="fake-client-secret", repr=False)
    access_token_ttl_s: float = 3600.0  # Intuit's hour; lowered by tests
    refresh_token_ttl_s: float = 8_726_400.0  # Intuit's 101 days
    rotated_refresh_grace_s: float = 86_400.0
    realm_id: str = FAKE_REALM_ID  # the company every consent grants


@dataclass(slots=True)
class _Grant:
    """One issued token, tied to the sign-in (family) it came from."""

    realm_id: str
    family: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class _Code:
    redirect_uri: str
    realm_id: str
    expires_at: float


@dataclass(slots=True)
class AuthorityStats:
    """What the authority did, for tests."""

    token_requests: int = 0
    refreshes: int = 0
    invalid_grants: int = 0
    revocations: int = 0


class Authority:
    """Issues, checks, rotates and revokes tokens on the fake's clock."""

    def __init__(self, settings: OAuthSettings, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self.stats = AuthorityStats()

    def routes(self) -> list[Route]:
        discovery = [
            Route(path, self._discovery, methods=["GET"]) for path in DISCOVERY_PATHS
        ]
        return [
            *discovery,
            Route(AUTHORIZE_PATH, self._authorize, methods=["GET"]),
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(REVOKE_PATH, self._revoke, methods=["POST"]),
        ]

    def grant_refresh_token(self, realm_id: str | None = None) -> str:
        """A refresh token as Intuit's OAuth Playground hands one out."""
        return str(self._issue(realm_id or self.settings.realm_id)["refresh_token"])

    def expire_access_tokens(self) -> None:
        """End every access token now, as if an hour had passed."""
        for grant in self._access.values():
            grant.expires_at = self._clock()

    def check(self, request: Request, realm_id: str) -> Response | None:
        """None when the request's bearer token may call this realm."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        grant = self._access.get(token.strip()) if scheme.lower() == "bearer" else None
        if grant is None or grant.expires_at <= self._clock():
            return authentication_fault()
        if grant.realm_id != realm_id:
            return JSONResponse(
                {
                    "Fault": {
                        "Error": [
                            {
                                "Message": "message=ApplicationAuthorizationFailed; "
                                "errorCode=003100; statusCode=403",
                                "Detail": f"the token is for another company than "
                                f"{realm_id}",
                                "code": "003100",
                            }
                        ],
                        "type": "SERVICE",
                    }
                },
                status_code=403,
            )
        return None

    async def _discovery(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "issuer": f"{base}/op/v1",
                "authorization_endpoint": base + AUTHORIZE_PATH,
                "token_endpoint": base + TOKEN_PATH,
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": base + REVOKE_PATH,
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile", SCOPE],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    async def _authorize(self, request: Request) -> Response:
        params = request.query_params
        problem = self._authorize_problem(params.get, params.get("scope", "").split())
        if problem:
            return PlainTextResponse(f"authorization refused: {problem}", 400)
        code = "fake-code-" + secrets.token_urlsafe(18)
        redirect_uri = params["redirect_uri"]
        realm_id = self.settings.realm_id
        self._codes[code] = _Code(redirect_uri, realm_id, self._clock() + _CODE_TTL_S)
        query = urllib.parse.urlencode(
            {"code": code, "state": params["state"], "realmId": realm_id}
        )
        glue = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + glue + query, status_code=302)

    def _authorize_problem(
        self, param: Callable[[str], str | None], scopes: list[str]
    ) -> str:
        if param("client_id") != self.settings.client_id:
            return "unknown client_id"
        if param("response_type") != "code":
            return "response_type must be code"
        if SCOPE not in scopes:
            return f"scope must include {SCOPE}"
        if not param("redirect_uri"):
            return "redirect_uri is missing"
        if not param("state"):
            return "state is missing"
        return ""

    async def _token(self, request: Request) -> Response:
        self.stats.token_requests += 1
        if not self._client_authenticated(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        form = await request.form()
        grant_type = str(form.get("grant_type", ""))
        if grant_type == "authorization_code":
            return self._exchange_code(
                str(form.get("code", "")), str(form.get("redirect_uri", ""))
            )
        if grant_type == "refresh_token":
            return self._rotate(str(form.get("refresh_token", "")))
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    def _client_authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            pair = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, _, secret = pair.partition(":")
        wanted = f"{self.settings.client_id}:{self.settings.client_secret}"
        return secrets.compare_digest(f"{client_id}:{secret}", wanted)

    def _exchange_code(self, code: str, redirect_uri: str) -> Response:
        found = self._codes.pop(code, None)
        if (
            found is None
            or found.expires_at <= self._clock()
            or found.redirect_uri != redirect_uri
        ):
            return self._invalid_grant()
        return JSONResponse(self._issue(found.realm_id))

    def _rotate(self, refresh_token: str) -> Response:
        old = self._refresh.get(refresh_token)
        now = self._clock()
        if old is None or old.expires_at <= now:
            return self._invalid_grant()
        self.stats.refreshes += 1
        grace = self.settings.rotated_refresh_grace_s
        old.expires_at = min(old.expires_at, now + grace)
        return JSONResponse(self._issue(old.realm_id, old.family))

    def _invalid_grant(self) -> Response:
        self.stats.invalid_grants += 1
        return JSONResponse({"error": "invalid_grant"}, status_code=400)

    def _issue(self, realm_id: str, family: str | None = None) -> dict[str, object]:
        now = self._clock()
        family = family or secrets.token_hex(8)
        access = "fake-at-" + secrets.token_urlsafe(24)
        refresh = "fake-rt-" + secrets.token_urlsafe(24)
        ttl = self.settings.access_token_ttl_s
        self._access[access] = _Grant(realm_id, family, now + ttl)
        refresh_ttl = self.settings.refresh_token_ttl_s
        self._refresh[refresh] = _Grant(realm_id, family, now + refresh_ttl)
        return {
            "token_type": "bearer",
            "access_token": access,
            "expires_in": ttl,
            "refresh_token": refresh,
            "x_refresh_token_expires_in": refresh_ttl,
        }

    async def _revoke(self, request: Request) -> Response:
        if not self._client_authenticated(request):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = await _revoked_token(request)
        grant = self._refresh.get(token) or self._access.get(token)
        if grant is None:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        self.stats.revocations += 1
        for table in (self._access, self._refresh):
            for issued in table.values():
                if issued.family == grant.family:
                    issued.expires_at = self._clock()
        return Response(status_code=200)


async def _revoked_token(request: Request) -> str:
    """The token to revoke: Intuit takes JSON ``{"token": ...}``; RFC 7009, a form."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            return ""
        return str(body.get("token", "")) if isinstance(body, dict) else ""
    form = await request.form()
    return str(form.get("token", ""))


def authentication_fault(
    detail: str = "Token expired or missing: send Authorization: Bearer <token>",
) -> Response:
    """QBO's 401, the one fault it spells with lower-case keys and no time."""
    error = {
        "message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "detail": detail,
        "code": "3200",
    }
    return JSONResponse(
        {"fault": {"error": [error], "type": "AUTHENTICATION"}}, status_code=401
    )
