"""The ``qbo-attach`` command line: options and output, nothing else.

Each command turns its options into ``Settings`` and calls one library
function; errors from the package become a message and the exit code of
DESIGN.md (2 for bad usage or input, 1 when items failed, 130 on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import shutil
import signal
import sys
import time
import webbrowser
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import dotenv
from rich.console import Console
from rich.table import Table

from qbo_attach import (
    __version__,
    check,
    demo,
    drift,
    export,
    mapping,
    metrics,
    report,
    runlog,
    verify,
)
from qbo_attach.errors import AuthError, QboAttachError
from qbo_attach.fake.app import FaultSettings
from qbo_attach.ids import DEFAULT_LEGACY_ID_PREFIX
from qbo_attach.inventory import InventoryStats, write_inventory
from qbo_attach.layout import Layout
from qbo_attach.progress import configure_logging, err_console, upload_progress
from qbo_attach.qbo import auth
from qbo_attach.qbo.client import QboClient, open_client
from qbo_attach.qbo.limits import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_RATE_PER_MINUTE,
    RealmLimits,
)
from qbo_attach.qbo.tokens import Tokens, TokenStore
from qbo_attach.settings import (
    DEFAULT_LAYOUT,
    DEFAULT_TARGET,
    FAKE_REALM_ID,
    REAL_TARGETS,
    Settings,
    default_token_file,
)
from qbo_attach.upload import (
    DEFAULT_MAX_ATTEMPTS,
    Uploader,
    UploadOptions,
    UploadSummary,
    count_verified,
)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# Soft wrap: a long path stays on one line, whole, for copy and paste.
console = Console(highlight=False, soft_wrap=True)


class Cli(click.Group):
    """Turns the package's errors into a message and their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except QboAttachError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted; everything finished so far is recorded", err=True)
            ctx.exit(130)


def settings_options(command: F) -> F:
    """Add the options that override DESIGN.md's environment variables."""
    options = [
        click.option(
            "--data-dir",
            envvar="DATA_DIR",
            default="data",
            show_default=True,
            type=click.Path(path_type=Path),
            help="Inventory, mapping, fake state.",
        ),
        click.option(
            "--files-dir",
            envvar="FILES_DIR",
            default="files",
            show_default=True,
            type=click.Path(path_type=Path),
            help="The legacy Attach tree.",
        ),
        click.option(
            "--log-dir",
            envvar="LOG_DIR",
            default="logs",
            show_default=True,
            type=click.Path(path_type=Path),
            help="Verification and run logs.",
        ),
        click.option(
            "--target",
            envvar="QBO_TARGET",
            default=DEFAULT_TARGET,
            show_default=True,
            help="fake (in-process), a base URL such as http://127.0.0.1:8765, "
            "or Intuit's sandbox or production (after `qbo-attach auth login`).",
        ),
        click.option(
            "--realm-id",
            envvar="QBO_REALM_ID",
            default=None,
            help=f"The QBO company id [default: the signed-in company for sandbox "
            f"and production, {FAKE_REALM_ID} for the fake].",
        ),
        click.option(
            "--token-file",
            envvar="QBO_TOKEN_FILE",
            default=None,
            type=click.Path(path_type=Path, dir_okay=False),
            help="OAuth token file [default: tokens-<target>.json in the user's "
            "config folder].",
        ),
        click.option(
            "--yes-production",
            envvar="QBO_YES_PRODUCTION",
            is_flag=True,
            help="Allow --target production (the client's live company).",
        ),
        click.option(
            "--legacy-id-prefix",
            envvar="LEGACY_ID_PREFIX",
            default=DEFAULT_LEGACY_ID_PREFIX,
            show_default=True,
            help="Prefix the legacy tree's ids carry and the mapping's do not.",
        ),
        click.option(
            "--files-layout",
            envvar="FILES_LAYOUT",
            default=DEFAULT_LAYOUT,
            show_default=True,
            help="Path pattern of the legacy tree.",
        ),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        target = kwargs.pop("target")
        token_file = kwargs.pop("token_file")
        realm_id = kwargs.pop("realm_id") or default_realm(target, token_file)
        settings = Settings(
            data_dir=kwargs.pop("data_dir"),
            files_dir=kwargs.pop("files_dir"),
            log_dir=kwargs.pop("log_dir"),
            target=target,
            realm_id=realm_id,
            legacy_id_prefix=kwargs.pop("legacy_id_prefix"),
            files_layout=kwargs.pop("files_layout"),
            token_file=token_file,
            yes_production=kwargs.pop("yes_production"),
        )
        show_target(settings)
        auth.check_production(settings)
        return command(settings=settings, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def fake_options(command: F) -> F:
    """Fault injection for the in-process fake; ignored by other targets."""
    options = [
        click.option(
            "--failure-rate",
            envvar="QBO_FAKE_FAILURE_RATE",
            default=0.0,
            type=click.FloatRange(0, 1),
            show_default=True,
            help="In-process fake: share of requests that fail transiently.",
        ),
        click.option(
            "--latency-ms",
            envvar="QBO_FAKE_LATENCY_MS",
            default=0,
            type=click.IntRange(0),
            show_default=True,
            help="In-process fake: delay added to every request.",
        ),
        click.option(
            "--fake-seed",
            envvar="QBO_FAKE_SEED",
            default=None,
            type=int,
            help="In-process fake: seed making its failures repeatable.",
        ),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        faults = FaultSettings(
            failure_rate=kwargs.pop("failure_rate"),
            latency_ms=kwargs.pop("latency_ms"),
            seed=kwargs.pop("fake_seed"),
        )
        return command(faults=faults, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def default_realm(target: str, token_file: Path | None) -> str:
    """The fake's realm, or for Intuit the realm the sign-in was for ("" if none)."""
    if target not in REAL_TARGETS:
        return FAKE_REALM_ID
    try:
        tokens = TokenStore(token_file or default_token_file(target)).load()
    except AuthError:
        return ""
    return tokens.realm_id if tokens is not None else ""


def show_target(settings: Settings) -> None:
    if settings.target == "fake":
        where = f"fake QBO in-process, state in {settings.fake_db}"
    elif settings.target == "production":
        where = "production: Intuit's API, the client's LIVE company"
    elif settings.target == "sandbox":
        where = "sandbox: Intuit's sandbox API"
    else:
        where = settings.target
    realm = settings.realm_id or "(not signed in)"
    console.print(f"target: {where}  realm: {realm}")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qbo-attach")
@click.option("-v", "--verbose", is_flag=True, help="Log each step, not only problems.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="QBO_LOG_FORMAT",
    show_default=True,
    help="json: one JSON object per event (every file's outcome included).",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the log here instead of stderr.",
)
def main(verbose: bool, log_format: str, log_file: Path | None) -> None:
    """Move attached documents from QuickBooks Desktop into QuickBooks Online."""
    json_lines = log_format == "json"
    # Machines reading JSON want every event; people reading text, problems.
    level = logging.INFO if verbose or json_lines else logging.WARNING
    configure_logging(level, json_lines=json_lines, log_file=log_file)
    # Before the subcommand reads its options, so a .env can set any of them;
    # variables already in the environment win.
    dotenv.load_dotenv(Path.cwd() / ".env", override=False)


@main.command("demo-data")
@settings_options
@click.option("--attachments", default=300, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=7, show_default=True, type=int)
def demo_data_command(settings: Settings, attachments: int, seed: int) -> None:
    """Write a synthetic legacy tree and seed the fake QBO company."""
    stats = make_demo_data(settings, attachments, seed)
    console.print(
        f"wrote {stats.files} files ({stats.bytes:,} bytes) for {stats.records} "
        f"records under {settings.files_dir}; {stats.unmapped_records} records "
        f"left unmapped on purpose; {stats.mapping_rows} mapping rows in "
        f"{settings.fake_db}"
    )


def make_demo_data(settings: Settings, attachments: int, seed: int) -> demo.DemoStats:
    return demo.generate(
        settings.files_dir,
        settings.fake_db,
        settings.realm_id,
        attachments=attachments,
        seed=seed,
        prefix=settings.legacy_id_prefix,
    )


@main.command("mapping")
@settings_options
@fake_options
def mapping_command(settings: Settings, faults: FaultSettings) -> None:
    """Download QbdtEntityIdMapping into DATA_DIR/mapping_export.csv."""
    stats = run_async(fetch_mapping(settings, faults))
    show_mapping(settings, stats)


async def fetch_mapping(
    settings: Settings, faults: FaultSettings
) -> mapping.MappingStats:
    async with open_client(settings, faults) as client:
        return await mapping.download_mapping(
            client, settings.mapping_csv, settings.legacy_id_prefix
        )


def show_mapping(settings: Settings, stats: mapping.MappingStats) -> None:
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(stats.by_type.items()))
    console.print(f"mapping: {stats.rows} rows ({kinds}) -> {settings.mapping_csv}")


@main.command("inventory")
@settings_options
@click.option("--no-hash", is_flag=True, help="Skip sha256 (faster; no change check).")
def inventory_command(settings: Settings, no_hash: bool) -> None:
    """Walk FILES_DIR by FILES_LAYOUT into DATA_DIR/attachments_inventory.csv."""
    show_inventory(settings, take_inventory(settings, hash_files=not no_hash))


def take_inventory(settings: Settings, *, hash_files: bool) -> InventoryStats:
    return write_inventory(
        settings.files_dir,
        settings.inventory_csv,
        Layout.parse(settings.files_layout),
        settings.legacy_id_prefix,
        hash_files=hash_files,
    )


def show_inventory(settings: Settings, stats: InventoryStats) -> None:
    console.print(
        f"inventory: {stats.files} files, {stats.total_bytes:,} bytes, "
        f"{stats.problems} with problems -> {settings.inventory_csv}"
    )


def exclusion_options(command: F) -> F:
    command = click.option(
        "--exclude-name",
        multiple=True,
        metavar="PATTERN",
        help="File name pattern to skip (repeatable); replaces the default "
        f"list {', '.join(verify.DEFAULT_EXCLUDED_NAMES)}.",
    )(command)
    return click.option(
        "--exclude-entity-type",
        multiple=True,
        metavar="TYPE",
        help="Legacy entity type to skip (repeatable).",
    )(command)


def build_exclusions(
    types: tuple[str, ...], names: tuple[str, ...]
) -> verify.Exclusions:
    return verify.Exclusions.build(types, names or verify.DEFAULT_EXCLUDED_NAMES)


MAX_MISSING = click.option(
    "--max-missing",
    type=click.IntRange(0),
    default=None,
    help="Exit 1 (before any upload) when more files than this lack a mapping.",
)


@main.command("verify")
@settings_options
@exclusion_options
@MAX_MISSING
def verify_command(
    settings: Settings,
    exclude_entity_type: tuple[str, ...],
    exclude_name: tuple[str, ...],
    max_missing: int | None,
) -> None:
    """Join inventory and mapping; classify every file before any upload."""
    exclusions = build_exclusions(exclude_entity_type, exclude_name)
    summary = run_verify(settings, exclusions)
    show_verification(settings, summary)
    check_missing_gate(summary, max_missing)


def run_verify(
    settings: Settings, exclusions: verify.Exclusions
) -> verify.VerificationSummary:
    """Verify, keeping the last log aside to tell what drifted since."""
    previous = settings.verification_log.with_name(
        "mapping_verification_log.previous.csv"
    )
    had_previous = settings.verification_log.exists()
    if had_previous:
        shutil.copyfile(settings.verification_log, previous)
    summary = verify.verify(
        settings.inventory_csv,
        settings.mapping_csv,
        settings.verification_log,
        settings.verification_skips,
        exclusions,
        settings.legacy_id_prefix,
    )
    if had_previous:
        drift.render_terminal(
            drift.compare(previous, settings.verification_log), console
        )
    return summary


def check_missing_gate(
    summary: verify.VerificationSummary, max_missing: int | None
) -> None:
    """Stop before any upload when more ids are unmapped than allowed."""
    missing = summary.statuses[verify.MISSING_MAPPING]
    if max_missing is not None and missing > max_missing:
        console.print(
            f"gate: {missing} files have no mapping, more than --max-missing "
            f"{max_missing}; nothing was uploaded"
        )
        sys.exit(1)


def show_verification(settings: Settings, summary: verify.VerificationSummary) -> None:
    table = Table(title="Coverage per legacy entity type")
    for heading in ("entity type", "files", "mapped", "missing", "ok"):
        table.add_column(
            heading, justify="left" if heading == "entity type" else "right"
        )
    for kind, cov in sorted(summary.coverage.items()):
        table.add_row(
            kind, *(str(n) for n in (cov.files, cov.mapped, cov.missing, cov.ok))
        )
    console.print(table)
    statuses = ", ".join(f"{s} {n}" for s, n in summary.statuses.most_common())
    console.print(
        f"verify: {statuses}; {summary.skipped} skipped by configuration\n"
        f"  -> {settings.verification_log}\n  -> {settings.verification_skips}"
    )


@dataclass(frozen=True, slots=True)
class UploadChoices:
    """The upload options of ``upload``, ``run`` and ``demo``, gathered."""

    options: UploadOptions
    rate_per_minute: int | None
    quiet: bool

    def limits(self, settings: Settings) -> RealmLimits:
        """QBO's limits, except that the in-process fake has none unless asked."""
        rate = self.rate_per_minute
        if rate is None and settings.target != "fake":
            rate = DEFAULT_RATE_PER_MINUTE
        return RealmLimits(rate_per_minute=rate, max_in_flight=self.options.concurrency)


def upload_options(command: F) -> F:
    """Add the uploader's options; the command receives them as ``choices``."""
    options = [
        click.option("--dry-run", is_flag=True, help="Print the plan; call nothing."),
        click.option(
            "--limit",
            type=click.IntRange(1),
            default=None,
            help="Upload at most N files (a canary batch).",
        ),
        click.option(
            "--retry-failed",
            is_flag=True,
            help="Only re-attempt files whose last outcome was error.",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 50),
            default=DEFAULT_MAX_IN_FLIGHT,
            show_default=True,
            help="Uploads in flight at once, per realm (QBO allows about 10).",
        ),
        click.option(
            "--rate-per-minute",
            type=click.IntRange(1),
            default=None,
            help=f"Requests a minute per realm [default: {DEFAULT_RATE_PER_MINUTE}; "
            "unlimited for the in-process fake].",
        ),
        click.option(
            "--max-attempts",
            type=click.IntRange(1, 20),
            default=DEFAULT_MAX_ATTEMPTS,
            show_default=True,
            help="Attempts per file on transient errors.",
        ),
        click.option(
            "--max-failures",
            type=click.IntRange(0),
            default=None,
            help="Stop handing out files once more than this many have failed.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="No progress display."),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        chosen = UploadOptions(
            dry_run=kwargs.pop("dry_run"),
            limit=kwargs.pop("limit"),
            retry_failed=kwargs.pop("retry_failed"),
            concurrency=kwargs.pop("concurrency"),
            max_attempts=kwargs.pop("max_attempts"),
            max_failures=kwargs.pop("max_failures"),
        )
        choices = UploadChoices(
            chosen, kwargs.pop("rate_per_minute"), kwargs.pop("quiet")
        )
        return command(choices=choices, **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


@main.command("upload")
@settings_options
@fake_options
@upload_options
def upload_command(
    settings: Settings, faults: FaultSettings, choices: UploadChoices
) -> None:
    """Attach every verified file to its QBO record, exactly once."""
    summary = run_async(run_upload(settings, faults, choices))
    show_upload(settings, summary, choices.options.dry_run)
    sys.exit(summary.exit_code)


async def run_upload(
    settings: Settings, faults: FaultSettings, choices: UploadChoices
) -> UploadSummary:
    """Upload with a progress display; Ctrl-C stops, a second Ctrl-C aborts."""
    total = 0 if choices.quiet else count_verified(settings.verification_log)
    async with open_client(settings, faults, choices.limits(settings)) as client:
        if settings.is_real_target and not choices.options.dry_run:
            await show_company(settings, client)
        with upload_progress(total, enabled=not choices.quiet) as progress:
            uploader = Uploader(settings, client, choices.options, progress=progress)
            if client.session is not None:
                # A dead sign-in stops new uploads; those in flight are recorded.
                client.session.on_dead(uploader.stop)
            with interrupts(uploader):
                summary = await uploader.run()
    if not choices.options.dry_run:
        metrics.write_metrics(settings, summary.run_id, run_seconds=summary.elapsed)
    if client.session is not None:
        # The uploader stops on a dead sign-in but may not re-raise its error.
        client.session.raise_if_dead()
    return summary


async def show_company(settings: Settings, client: QboClient) -> None:
    """Name the company before the first upload, so nobody loads the wrong books."""
    name = await client.company_name()
    console.print(f"company: {name}  ({settings.target}, realm {settings.realm_id})")


@contextlib.contextmanager
def interrupts(uploader: Uploader) -> Iterator[None]:
    """Route Ctrl-C to the uploader: first stop, then abort."""
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        if presses == 1:
            err_console.print(
                "stopping: no new uploads; waiting for those in flight "
                "(Ctrl-C again to abort them)"
            )
            uploader.stop()
        else:
            err_console.print("aborting the uploads in flight")
            uploader.abort()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def show_upload(settings: Settings, summary: UploadSummary, dry_run: bool) -> None:
    if dry_run:
        planned = ", ".join(f"{k} {n}" for k, n in sorted(summary.planned.items()))
        beyond = summary.not_attempted
        console.print(
            f"plan for {summary.verified} verified files: {planned or 'nothing'}"
            + (f"; {beyond} left out (--limit or --retry-failed)" if beyond else "")
        )
        return
    outcomes = summary.outcomes
    console.print(
        f"upload run {summary.run_id}: {summary.verified} verified files; "
        f"uploaded {outcomes[runlog.SUCCESS]}, "
        f"reconciled {outcomes[runlog.RECONCILED]}, "
        f"skipped {outcomes[runlog.SKIPPED]}, failed {summary.failed}"
        + (f", not attempted {summary.not_attempted}" if summary.not_attempted else "")
        + f" in {summary.elapsed:.1f} s"
    )
    if summary.failed:
        console.print(f"  failures are listed in {settings.errors_log}")
    if summary.interrupted:
        console.print(
            "  interrupted: run the same command again to finish; uploads cut "
            "short are reconciled first"
        )


@main.command("run")
@settings_options
@fake_options
@exclusion_options
@upload_options
@MAX_MISSING
@click.option("--no-mapping", is_flag=True, help="Use the mapping_export.csv on disk.")
@click.option("--no-hash", is_flag=True, help="Skip sha256 in the inventory.")
def run_command(settings: Settings, faults: FaultSettings, **kwargs: Any) -> None:
    """Mapping, inventory, verify and upload, in order."""
    sys.exit(run_pipeline(settings, faults, **kwargs))


def run_pipeline(
    settings: Settings,
    faults: FaultSettings,
    *,
    choices: UploadChoices,
    no_mapping: bool = False,
    no_hash: bool = False,
    exclude_entity_type: tuple[str, ...] = (),
    exclude_name: tuple[str, ...] = (),
    max_missing: int | None = None,
) -> int:
    """Run every stage; print each stage's result and the final summary."""
    if not no_mapping:
        show_mapping(settings, run_async(fetch_mapping(settings, faults)))
    inventory = take_inventory(settings, hash_files=not no_hash)
    show_inventory(settings, inventory)
    verification = run_verify(
        settings, build_exclusions(exclude_entity_type, exclude_name)
    )
    show_verification(settings, verification)
    check_missing_gate(verification, max_missing)
    summary = run_async(run_upload(settings, faults, choices))
    show_upload(settings, summary, choices.options.dry_run)
    show_summary(settings, inventory, verification, summary)
    return summary.exit_code


def show_summary(
    settings: Settings,
    inventory: InventoryStats,
    verification: verify.VerificationSummary,
    upload_summary: UploadSummary,
) -> None:
    outcomes = upload_summary.outcomes
    table = Table(title="Migration summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("files found", inventory.files),
        ("skipped by configuration", verification.skipped),
        ("mapped", sum(c.mapped for c in verification.coverage.values())),
        ("missing mappings", verification.statuses[verify.MISSING_MAPPING]),
        (
            "other verification findings",
            verification.total
            - verification.skipped
            - verification.statuses[verify.OK]
            - verification.statuses[verify.MISSING_MAPPING],
        ),
        ("verified ok", verification.statuses[verify.OK]),
        ("uploaded", outcomes[runlog.SUCCESS] + outcomes[runlog.RECONCILED]),
        ("skipped (already uploaded)", outcomes[runlog.SKIPPED]),
        ("failed", upload_summary.failed),
    ]
    if upload_summary.not_attempted:
        rows.append(("not attempted (--limit)", upload_summary.not_attempted))
    for what, count in rows:
        table.add_row(what, str(count))
    console.print(table)
    logs = Table(title="Where each log is", show_header=False)
    logs.add_column("artifact")
    logs.add_column("path")
    for label, path in [
        ("inventory", settings.inventory_csv),
        ("mapping", settings.mapping_csv),
        ("verification log", settings.verification_log),
        ("verification skips", settings.verification_skips),
        ("run log", settings.runlog),
        ("errors", settings.errors_log),
        ("idempotent skips", settings.dups_log),
    ]:
        logs.add_row(label, str(path))
    console.print(logs)


@main.command("demo")
@click.option(
    "--workdir",
    default="demo",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Working folder for the demo's data, files and logs.",
)
@click.option("--attachments", default=300, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=7, show_default=True, type=int)
@fake_options
@upload_options
def demo_command(
    workdir: Path,
    attachments: int,
    seed: int,
    faults: FaultSettings,
    choices: UploadChoices,
) -> None:
    """Make demo data (once) and run the whole migration against the fake."""
    settings = Settings(
        data_dir=workdir / "data", files_dir=workdir / "files", log_dir=workdir / "logs"
    )
    console.print(f"demo working folder: {workdir.resolve()}")
    show_target(settings)
    stamp = workdir / "demo-data.txt"
    wanted = f"attachments={attachments} seed={seed}\n"
    if stamp.exists() and stamp.read_text() == wanted:
        console.print("demo data already there; running the migration again over it")
    else:
        stats = make_demo_data(settings, attachments, seed)
        stamp.write_text(wanted)
        console.print(f"made {stats.files} demo files for {stats.records} records")
    sys.exit(run_pipeline(settings, faults, choices=choices))


@main.command("check")
@settings_options
@fake_options
def check_command(settings: Settings, faults: FaultSettings) -> None:
    """Compare the target's attachables with the verification and run logs."""
    summary = run_async(run_check(settings, faults))
    found = ", ".join(f"{f} {summary.findings[f]}" for f in check.FINDINGS)
    console.print(
        f"check: {summary.remote_attachables} attachables on the remote, "
        f"{summary.expected} expected; {found} -> {settings.check_log}"
    )
    sys.exit(summary.exit_code)


async def run_check(settings: Settings, faults: FaultSettings) -> check.CheckSummary:
    async with open_client(settings, faults) as client:
        return await check.check(settings, client)


def parse_latency(
    ctx: click.Context, param: click.Parameter, value: str
) -> tuple[int, int]:
    """``L`` or ``L,JITTER`` in milliseconds."""
    base, _, jitter = value.partition(",")
    try:
        pair = (int(base), int(jitter or 0))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not L or L,JITTER in whole milliseconds"
        ) from None
    if min(pair) < 0:
        raise click.BadParameter(f"{value!r}: latency and jitter cannot be negative")
    return pair


@main.command("report")
@settings_options
def report_command(settings: Settings) -> None:
    """Summarise the migration from its logs; write LOG_DIR/report.html."""
    built = report.build_report(settings)
    report.render_terminal(built, console)
    path = settings.log_dir / "report.html"
    report.write_html(built, path)
    console.print(f"report: {path}")


@main.command("export")
@settings_options
@click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the warehouse tables.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "duckdb"]),
    default="parquet",
    show_default=True,
)
def export_command(settings: Settings, to: Path, fmt: str) -> None:
    """Write the logs as typed warehouse tables (Parquet files or DuckDB)."""
    counts = export.export(settings, to, "duckdb" if fmt == "duckdb" else "parquet")
    for table, rows in counts.items():
        console.print(f"{table}: {rows} rows")
    console.print(f"export: {to}")


@main.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--failure-rate", default=0.0, type=click.FloatRange(0, 1), show_default=True
)
@click.option(
    "--latency-ms",
    default="0",
    callback=parse_latency,
    metavar="L[,JITTER]",
    show_default=True,
    help="Delay per request, optionally with uniform jitter: 100 or 100,20.",
)
@click.option(
    "--rate-per-minute",
    type=click.IntRange(1),
    default=None,
    help="Answer 429 over this many requests a minute per realm.",
)
@click.option(
    "--max-concurrent",
    type=click.IntRange(1),
    default=None,
    help="Answer 429 over this many requests in flight per realm.",
)
@click.option("--seed", default=None, type=int, help="Makes failures repeatable.")
@click.option(
    "--data-dir",
    envvar="DATA_DIR",
    default="data",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the fake company's state lives.",
)
@click.option(
    "--oauth",
    is_flag=True,
    help="Serve Intuit's OAuth endpoints and accept only tokens issued here.",
)
@click.option(
    "--token-ttl",
    default=3600.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="With --oauth: seconds an access token lives.",
)
@click.option(
    "--client-id",
    envvar="QBO_CLIENT_ID",
    default="fake-client-id",
    show_default=True,
    help="With --oauth: the app's client id.",
)
@click.option(
    "--client-secret",
    envvar="QBO_CLIENT_SECRET",
    default="fake-client-secret",
    help="With --oauth: the app's client secret (this fake's own; never Intuit's) "
    "[default: fake-client-secret].",
)
def fake_server_command(
    host: str,
    port: int,
    failure_rate: float,
    latency_ms: tuple[int, int],
    rate_per_minute: int | None,
    max_concurrent: int | None,
    seed: int | None,
    data_dir: Path,
    oauth: bool,
    token_ttl: float,
    client_id: str,
    client_secret: str,
) -> None:
    """Serve the fake QBO over HTTP (the same company state as the in-process fake)."""
    from qbo_attach.fake.app import serve
    from qbo_attach.fake.oauth import OAuthSettings

    settings = Settings(data_dir=data_dir)
    if not _is_loopback(host):
        console.print(
            f"warning: listening on {host}, not loopback: others can reach it"
        )
    base = f"http://{host}:{port}"
    if oauth:
        console.print(
            f"fake QBO with OAuth on {base}  state: {settings.fake_db}  (use "
            f"--target sandbox with {auth.DISCOVERY_URL_VAR}="
            f"{base}/.well-known/openid_configuration)"
        )
    else:
        console.print(
            f"fake QBO on {base}  state: {settings.fake_db}  (use --target {base})"
        )
    faults = FaultSettings(
        failure_rate=failure_rate,
        latency_ms=latency_ms[0],
        latency_jitter_ms=latency_ms[1],
        seed=seed,
        rate_per_minute=rate_per_minute,
        max_concurrent=max_concurrent,
    )
    authority = (
        OAuthSettings(
            client_id=client_id,
            client_secret=client_secret,
            access_token_ttl_s=token_ttl,
        )
        if oauth
        else None
    )
    serve(settings.fake_db, host, port, faults, authority)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_options(command: F) -> F:
    """The target and token file every ``auth`` command works on."""
    command = click.option(
        "--token-file",
        envvar="QBO_TOKEN_FILE",
        default=None,
        type=click.Path(path_type=Path, dir_okay=False),
        help="Token file [default: tokens-<target>.json in the user's config folder].",
    )(command)
    return click.option(
        "--target",
        envvar="QBO_TARGET",
        default="sandbox",
        show_default=True,
        type=click.Choice(REAL_TARGETS),
        help="Which Intuit API the sign-in is for.",
    )(command)


@main.group("auth")
def auth_group() -> None:
    """Sign in to QuickBooks Online (OAuth 2.0) for --target sandbox|production.

    The app's QBO_CLIENT_ID and QBO_CLIENT_SECRET come from the environment or
    a .env file in the working folder, never from the command line.
    """


@auth_group.command("login")
@auth_options
@click.option(
    "--redirect-uri",
    envvar="QBO_REDIRECT_URI",
    default=auth.DEFAULT_REDIRECT_URI,
    show_default=True,
    help="Loopback redirect URI, exactly as registered in the Intuit app.",
)
@click.option("--no-browser", is_flag=True, help="Print the URL; open no browser.")
@click.option(
    "--timeout",
    default=auth.LOGIN_TIMEOUT_S,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds to wait for the sign-in.",
)
def auth_login_command(
    target: str,
    token_file: Path | None,
    redirect_uri: str,
    no_browser: bool,
    timeout: float,
) -> None:
    """Sign in through Intuit's consent page and store the tokens."""
    store = TokenStore(token_file or default_token_file(target))
    app = auth.OAuthApp.from_env()

    def show_url(url: str) -> None:
        console.print(f"open this URL to connect a {target} company:\n{url}")
        if not no_browser:
            webbrowser.open(url)
        console.print(f"waiting for the redirect to {redirect_uri} ...")

    async def go() -> Tokens:
        endpoints = await auth.endpoints_for(target)
        return await auth.login(
            app,
            endpoints,
            store,
            target,
            show_url=show_url,
            redirect_uri=redirect_uri,
            timeout=timeout,
        )

    tokens = run_async(go())
    console.print(f"signed in to {target}, realm {tokens.realm_id}")
    show_tokens(store, tokens)


@auth_group.command("import")
@auth_options
@click.option("--realm-id", required=True, help="The company's realm id.")
@click.option(
    "--refresh-token",
    prompt=True,
    hide_input=True,
    help="A refresh token from Intuit's OAuth Playground; leave the option out "
    "to be asked for it, so it stays out of the shell history.",
)
def auth_import_command(
    target: str, token_file: Path | None, realm_id: str, refresh_token: str
) -> None:
    """Store a refresh token obtained elsewhere (it is refreshed once to prove it)."""
    store = TokenStore(token_file or default_token_file(target))
    app = auth.OAuthApp.from_env()

    async def go() -> Tokens:
        endpoints = await auth.endpoints_for(target)
        return await auth.import_refresh_token(
            app, endpoints, store, target, realm_id, refresh_token.strip()
        )

    tokens = run_async(go())
    console.print(f"imported a sign-in to {target}, realm {tokens.realm_id}")
    show_tokens(store, tokens)


@auth_group.command("status")
@auth_options
def auth_status_command(target: str, token_file: Path | None) -> None:
    """Show the stored sign-in: target, realm, expiry times (never the tokens)."""
    store = TokenStore(token_file or default_token_file(target))
    tokens = store.load()
    if tokens is None:
        raise AuthError(
            f"not signed in to {target}: no token file at {store.path}; run "
            f"`qbo-attach auth login --target {target}`"
        )
    console.print(f"signed in to {tokens.target}, realm {tokens.realm_id}")
    show_tokens(store, tokens)


def show_tokens(store: TokenStore, tokens: Tokens) -> None:
    now = time.time()
    refresh = (
        _when(tokens.refresh_expires_at, now)
        if tokens.refresh_expires_at is not None
        else "unknown"
    )
    console.print(
        f"  access token expires:  {_when(tokens.access_expires_at, now)} "
        "(refreshed automatically)\n"
        f"  refresh token expires: {refresh}\n"
        f"  last refreshed:        {_when(tokens.updated_at, now)}\n"
        f"  token file:            {store.path}"
    )


def _when(stamp: float, now: float) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp))
    seconds = stamp - now
    if seconds <= 0:
        return f"{moment} (passed)"
    if seconds < 5400:
        return f"{moment} (in {seconds / 60:.0f} min)"
    return f"{moment} (in {seconds / 86400:.1f} days)"


@auth_group.command("logout")
@auth_options
def auth_logout_command(target: str, token_file: Path | None) -> None:
    """Revoke the stored sign-in at Intuit and delete the token file."""
    store = TokenStore(token_file or default_token_file(target))
    if store.load() is None:
        console.print(f"not signed in to {target}: nothing at {store.path}")
        return
    app = auth.OAuthApp.from_env()

    async def go() -> bool:
        endpoints = await auth.endpoints_for(target)
        return await auth.logout(app, endpoints, store)

    if run_async(go()):
        console.print(f"revoked the sign-in and deleted {store.path}")
        return
    console.print(
        f"deleted {store.path}, but Intuit did not confirm the revocation: "
        "disconnect the app in the company's Apps settings to be sure"
    )
    sys.exit(1)
