"""The OAuth token store: one JSON file per connection, mode 0600, replaced whole.

QBO's refresh tokens roll over: a refresh may hand back a new one, and the
previous one dies a day later. A tool that loses the newest refresh token
loses access to the company, so a save writes a temporary file beside the
token file, syncs it, renames it over the old one and syncs the folder. A
crash at any instant leaves either the old file or the new one, whole.

The store never logs, prints or puts into an exception a token; ``Tokens``
keeps them out of its ``repr``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qbo_attach.errors import AuthError

FILE_MODE = 0o600
FOLDER_MODE = 0o700
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Tokens:
    """One signed-in connection: a company (realm) on a target, and its tokens.

    Times are seconds since the epoch, so they mean the same to every process
    that reads the file.
    """

    target: str
    realm_id: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    refresh_expires_at: float | None
    updated_at: float

    @classmethod
    def from_answer(
        cls, target: str, realm_id: str, answer: Mapping[str, Any], now: float
    ) -> Tokens:
        """Tokens from a token endpoint's answer received at ``now``."""
        refresh_life = answer.get("x_refresh_token_expires_in")
        return cls(
            target=target,
            realm_id=realm_id,
            access_token=str(answer["access_token"]),
            refresh_token=str(answer["refresh_token"]),
            access_expires_at=now + float(answer.get("expires_in", 3600)),
            refresh_expires_at=(
                now + float(refresh_life) if refresh_life is not None else None
            ),
            updated_at=now,
        )

    def access_expires_within(self, seconds: float, now: float) -> bool:
        return self.access_expires_at - now <= seconds


class TokenStore:
    """Reads and atomically replaces one token file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Tokens | None:
        """The stored tokens, or None when nobody has signed in."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuthError(f"cannot read the token file {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            data.pop("version", None)
            return Tokens(**data)
        except (ValueError, TypeError, AttributeError) as exc:
            raise AuthError(
                f"the token file {self.path} is damaged; delete it and run "
                "`qbo-attach auth login`"
            ) from exc

    def save(self, tokens: Tokens) -> None:
        """Replace the file with ``tokens``: temporary file, fsync, rename, fsync."""
        body = json.dumps({"version": FORMAT_VERSION, **asdict(tokens)}, indent=2)
        try:
            self._replace(body.encode())
        except OSError as exc:
            raise AuthError(
                f"cannot store new tokens in {self.path}: {exc.strerror or exc}; "
                "the file still holds the previous ones"
            ) from exc

    def _replace(self, body: bytes) -> None:
        folder = self.path.parent
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        temporary = folder / f".{self.path.name}.{secrets.token_hex(4)}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                # A umask cannot widen it, but an odd one could narrow it.
                os.fchmod(handle.fileno(), FILE_MODE)
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _sync_folder(folder)

    def delete(self) -> bool:
        """Remove the token file; False when there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        _sync_folder(self.path.parent)
        return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock, so two processes never refresh the same token."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    """Make a rename or unlink durable; some file systems cannot, which is fine."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
