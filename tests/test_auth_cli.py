"""The auth commands and real-target runs, end to end against a fake-server.

The fake runs with ``--oauth`` in its own process on loopback, and the real
targets are pointed at it through ``QBO_OAUTH_DISCOVERY_URL``; nothing here
reaches Intuit. The tool runs in-process (click's runner) except for login,
which must be waiting on its loopback listener while the test plays browser.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from qbo_attach.cli import main
from qbo_attach.settings import FAKE_REALM_ID
from tests.test_cli import free_port, rows, wait_for

CLIENT_ID = "cli-test-client"
CLIENT_SECRET = "cli-test-secret-6f1d0c"
QBO_ATTACH = [sys.executable, "-m", "qbo_attach"]
SCOPE = "com.intuit.quickbooks.accounting"


@contextlib.contextmanager
def oauth_server(tmp_path: Path, token_ttl: str = "3600") -> Iterator[dict[str, str]]:
    """A demo company behind ``fake-server --oauth``; yields the tool's environment."""
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "FILES_DIR": str(tmp_path / "files"),
        "LOG_DIR": str(tmp_path / "logs"),
        "QBO_CLIENT_ID": CLIENT_ID,
        "QBO_CLIENT_SECRET": CLIENT_SECRET,
        "QBO_TOKEN_FILE": str(tmp_path / "config" / "tokens.json"),
        "PYTHONUNBUFFERED": "1",
    }
    made = CliRunner().invoke(main, ["demo-data", "--attachments", "30"], env=env)
    assert made.exit_code == 0, made.output
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["QBO_OAUTH_DISCOVERY_URL"] = f"{base}/.well-known/openid_configuration"
    command = ["fake-server", "--oauth", "--port", str(port), "--token-ttl", token_ttl]
    server = subprocess.Popen(
        [*QBO_ATTACH, *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def base_of(env: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(env["QBO_OAUTH_DISCOVERY_URL"])
    return f"{parts.scheme}://{parts.netloc}"


def basic() -> dict[str, str]:
    pair = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def playground_refresh_token(env: dict[str, str]) -> str:
    """A refresh token got by hand, as from Intuit's OAuth Playground."""
    redirect = "https://developer.intuit.com/playground-callback"
    with httpx.Client(base_url=base_of(env)) as http:
        consent = http.get(
            "/connect/oauth2",
            params={
                "client_id": CLIENT_ID,
                "response_type": "code",
                "scope": SCOPE,
                "redirect_uri": redirect,
                "state": "playground",
            },
        )
        query = urllib.parse.urlsplit(consent.headers["location"]).query
        code = dict(urllib.parse.parse_qsl(query))["code"]
        answer = http.post(
            "/oauth2/v1/tokens/bearer",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
            },
            headers=basic(),
        )
    return str(answer.json()["refresh_token"])


def refresh_status(env: dict[str, str], refresh_token: str) -> int:
    """What the fake's token endpoint says to this refresh token now."""
    with httpx.Client(base_url=base_of(env)) as http:
        answer = http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers=basic(),
        )
    return answer.status_code


def tool(env: dict[str, str], *args: str, stdin: str = "") -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def stored(env: dict[str, str]) -> dict[str, object]:
    data: dict[str, object] = json.loads(Path(env["QBO_TOKEN_FILE"]).read_text())
    return data


def expire_access_token(env: dict[str, str]) -> None:
    """Mark the stored access token as spent, as an hour's wait would."""
    path = Path(env["QBO_TOKEN_FILE"])
    data = json.loads(path.read_text())
    data["access_expires_at"] = data["updated_at"]
    path.write_text(json.dumps(data))


def test_login_status_and_logout_from_the_command_line(tmp_path: Path) -> None:
    """login takes the redirect, status shows no token, logout revokes and deletes."""
    with oauth_server(tmp_path) as env:
        redirect_uri = f"http://localhost:{free_port()}/callback"
        login = subprocess.Popen(
            [
                *QBO_ATTACH,
                *("auth", "login", "--no-browser", "--timeout", "30"),
                *("--redirect-uri", redirect_uri),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert login.stdout is not None
        url = next(line.strip() for line in login.stdout if line.startswith("http"))
        with httpx.Client() as http:
            consent = http.get(url)
            page = http.get(consent.headers["location"])
        rest, err = login.communicate(timeout=30)
        assert login.returncode == 0, rest + err
        tokens = stored(env)
        status = tool(env, "auth", "status")
        logout = tool(env, "auth", "logout")
        after = refresh_status(env, str(tokens["refresh_token"]))
        gone = tool(env, "auth", "status")

    assert page.status_code == 200
    assert f"realm {FAKE_REALM_ID}" in rest
    assert tokens["realm_id"] == FAKE_REALM_ID
    assert status.exit_code == 0, status.output
    assert f"realm {FAKE_REALM_ID}" in status.stdout
    assert "refresh token expires" in status.stdout
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert str(secret) not in status.output + rest + err
    assert logout.exit_code == 0, logout.output
    assert "revoked" in logout.stdout
    assert not Path(env["QBO_TOKEN_FILE"]).exists()
    assert after == 400
    assert gone.exit_code == 2
    assert "auth login" in gone.stderr


def test_full_production_run_leaks_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """import, run and check on production: no token, secret or header in any output."""
    # What -v shows; the tool's own logging set-up yields to pytest's here.
    caplog.set_level(logging.INFO)
    outputs: list[str] = []
    with oauth_server(tmp_path, token_ttl="1") as env:
        env = {**env, "QBO_TARGET": "production"}
        given = playground_refresh_token(env)
        refused = tool(env, "upload")
        env["QBO_YES_PRODUCTION"] = "1"
        imported = tool(
            env, "auth", "import", "--realm-id", FAKE_REALM_ID, stdin=given + "\n"
        )
        before_run = stored(env)["refresh_token"]
        expire_access_token(env)
        run = tool(env, "-v", "run", "--quiet", "--rate-per-minute", "100000")
        check = tool(env, "-v", "check")
        status = tool(env, "auth", "status")
        tokens = stored(env)
        for result in (refused, imported, run, check, status):
            outputs += [result.stdout, result.stderr]
    outputs.append(caplog.text)

    assert refused.exit_code == 2
    assert "--yes-production" in refused.stderr
    assert imported.exit_code == 0, imported.output
    assert run.exit_code == 0, run.output
    assert check.exit_code == 0, check.output
    assert "refreshed the access token" in caplog.text
    company = run.stdout.index(f"company: Fake QBO company {FAKE_REALM_ID}")
    assert company < run.stdout.index("upload run")
    # Refreshed (and rotated) during the run, not only by the import.
    assert tokens["refresh_token"] not in (given, before_run)
    runlog = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    assert all(r["intuit_tid"] for r in runlog if r["outcome"] == "success")
    files = [
        path
        for folder in ("logs", "data")
        for path in (tmp_path / folder).rglob("*")
        if path.is_file()
    ]
    assert any(path.suffix == ".csv" for path in files)
    texts = outputs + [path.read_bytes().decode("latin-1") for path in files]
    basic_value = basic()["Authorization"].removeprefix("Basic ")
    forbidden = [
        "fake-at-",  # every access token the fake issues starts so
        "fake-rt-",  # and every refresh token
        given,
        str(tokens["access_token"]),
        str(tokens["refresh_token"]),
        CLIENT_SECRET,
        basic_value,
        "Bearer ",
    ]
    for text in texts:
        for secret in forbidden:
            assert secret not in text


def test_dead_refresh_token_exits_2_with_finished_uploads_recorded(
    tmp_path: Path,
) -> None:
    """After a revocation, upload stops with exit 2 and the earlier uploads stay."""
    with oauth_server(tmp_path) as env:
        env = {**env, "QBO_TARGET": "sandbox"}
        given = playground_refresh_token(env)
        imported = tool(
            env, "auth", "import", "--realm-id", FAKE_REALM_ID, "--refresh-token", given
        )
        assert imported.exit_code == 0, imported.output
        for stage in ("mapping", "inventory", "verify"):
            done = tool(env, stage)
            assert done.exit_code == 0, done.output
        first = tool(env, "upload", "--quiet", "--limit", "5")
        with httpx.Client(base_url=base_of(env)) as http:
            revoked = http.post(
                "/v2/oauth2/tokens/revoke",
                json={"token": stored(env)["refresh_token"]},
                headers=basic(),
            )
        second = tool(env, "upload", "--quiet")

    assert first.exit_code == 0, first.output
    assert revoked.status_code == 200
    assert second.exit_code == 2
    assert "invalid_grant" in second.stderr
    assert "qbo-attach auth login" in second.stderr
    assert "Traceback" not in second.stderr
    runlog = rows(tmp_path / "logs" / "qbo_attach_runlog.csv")
    assert sum(r["outcome"] == "success" for r in runlog) == 5
