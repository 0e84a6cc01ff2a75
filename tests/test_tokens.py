"""The token store: atomic, private, and whole after a crash at any instant."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qbo_attach.errors import AuthError
from qbo_attach.qbo import tokens as tokens_module
from qbo_attach.qbo.tokens import Tokens, TokenStore


def sample(refresh: str = "rt-secret-1", access: str = "at-secret-1") -> Tokens:
    return Tokens(
        target="sandbox",
        realm_id="123",
        access_token=access,
        refresh_token=refresh,
        access_expires_at=2_000_003_600.0,
        refresh_expires_at=2_008_726_400.0,
        updated_at=2_000_000_000.0,
    )


def test_save_then_load_gives_the_same_tokens_in_a_private_file(
    tmp_path: Path,
) -> None:
    """A saved file reads back equal, has mode 0600 and leaves no temporary file."""
    store = TokenStore(tmp_path / "config" / "tokens.json")

    store.save(sample())

    assert store.load() == sample()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert [p.name for p in store.path.parent.iterdir()] == ["tokens.json"]


def test_tokens_never_show_in_their_repr() -> None:
    """Printing or logging a Tokens object shows no token."""
    shown = repr(sample())

    assert "rt-secret-1" not in shown
    assert "at-secret-1" not in shown
    assert "123" in shown


def test_missing_file_means_not_signed_in(tmp_path: Path) -> None:
    """No file loads as None, and deleting it twice is harmless."""
    store = TokenStore(tmp_path / "tokens.json")

    assert store.load() is None
    assert store.delete() is False


def test_damaged_file_asks_for_a_new_login(tmp_path: Path) -> None:
    """A file that is not the store's JSON is an AuthError naming the file."""
    store = TokenStore(tmp_path / "tokens.json")
    store.path.write_text('{"target": "sandbox"')

    with pytest.raises(AuthError, match="auth login") as caught:
        store.load()
    assert str(store.path) in str(caught.value)


def test_failed_rename_keeps_the_previous_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the rename fails, the old file stays whole and the temporary is gone."""
    store = TokenStore(tmp_path / "tokens.json")
    store.save(sample())

    def refuse(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tokens_module.os, "replace", refuse)
    with pytest.raises(AuthError, match="previous ones") as caught:
        store.save(sample("rt-secret-2", "at-secret-2"))

    assert "rt-secret-2" not in str(caught.value)
    assert store.load() == sample()
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.json"]


def test_kill_between_write_and_rename_leaves_a_usable_file(tmp_path: Path) -> None:
    """A process SIGKILLed after writing, before renaming, loses no token."""
    store = TokenStore(tmp_path / "tokens.json")
    store.save(sample())
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from qbo_attach.qbo import tokens
        from tests.test_tokens import sample

        def die(source, target):
            os.kill(os.getpid(), signal.SIGKILL)

        tokens.os.replace = die
        tokens.TokenStore(Path({str(store.path)!r})).save(sample("rt-2", "at-2"))
        """
    )

    crashed = subprocess.run([sys.executable, "-c", script], check=False)

    assert crashed.returncode == -9
    assert store.load() == sample()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "tokens.json"]
    assert len(leftovers) == 1
    assert stat.S_IMODE(leftovers[0].stat().st_mode) == 0o600


def test_umask_cannot_widen_the_mode(tmp_path: Path) -> None:
    """Even with a permissive umask the file is readable by its owner only."""
    old = os.umask(0)
    try:
        TokenStore(tmp_path / "tokens.json").save(sample())
    finally:
        os.umask(old)

    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600
