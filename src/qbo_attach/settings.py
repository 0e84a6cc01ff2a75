"""Settings shared by every command: folders, target, realm, id rules.

Values come from command-line options, then the environment variables of
DESIGN.md, then the defaults below. The artifact paths are derived here and
nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

from qbo_attach.ids import DEFAULT_LEGACY_ID_PREFIX

DEFAULT_LAYOUT = "{legacy_entity_type}/{raw_legacy_id}/{file_name}"
DEFAULT_TARGET = "fake"
# A made-up realm for the fake company; real realms come from the OAuth redirect.
FAKE_REALM_ID = "9130356789012345"
# The targets that are Intuit's own API, reached with OAuth 2.0 tokens.
REAL_TARGETS = ("sandbox", "production")


def default_token_file(target: str) -> Path:
    """A target's token file unless QBO_TOKEN_FILE names one.

    It lives in the user's config folder, not the working folder, so tokens
    stay out of a migration folder that gets copied or shared; one file per
    target keeps a sandbox sign-in from ever being used on production.
    """
    return platformdirs.user_config_path("qbo-attach") / f"tokens-{target}.json"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the tool reads and writes, and which company it talks to."""

    data_dir: Path = Path("data")
    files_dir: Path = Path("files")
    log_dir: Path = Path("logs")
    target: str = DEFAULT_TARGET
    realm_id: str = FAKE_REALM_ID
    legacy_id_prefix: str = DEFAULT_LEGACY_ID_PREFIX
    files_layout: str = DEFAULT_LAYOUT
    token_file: Path | None = None  # None: default_token_file(target)
    # Production is only touched when someone said so (--yes-production).
    yes_production: bool = False

    @property
    def is_real_target(self) -> bool:
        return self.target in REAL_TARGETS

    @property
    def tokens_path(self) -> Path:
        return self.token_file or default_token_file(self.target)

    @property
    def inventory_csv(self) -> Path:
        return self.data_dir / "attachments_inventory.csv"

    @property
    def mapping_csv(self) -> Path:
        return self.data_dir / "mapping_export.csv"

    @property
    def verification_log(self) -> Path:
        return self.log_dir / "mapping_verification_log.csv"

    @property
    def verification_skips(self) -> Path:
        return self.log_dir / "mapping_verification_skips.csv"

    @property
    def runlog(self) -> Path:
        return self.log_dir / "qbo_attach_runlog.csv"

    @property
    def errors_log(self) -> Path:
        return self.log_dir / "qbo_attach_errors.csv"

    @property
    def dups_log(self) -> Path:
        return self.log_dir / "qbo_attach_dups.csv"

    @property
    def check_log(self) -> Path:
        return self.log_dir / "qbo_attach_check.csv"

    @property
    def fake_db(self) -> Path:
        """The fake QBO company's state, shared by the in-process fake and
        ``fake-server``."""
        return self.data_dir / "fake_qbo.sqlite"
