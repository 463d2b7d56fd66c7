"""The `maild` command: global options, then one subcommand per job."""

from __future__ import annotations

import gc
import json
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from maild import __version__
from maild.cli.context import AppContext, pass_app
from maild.cli.lazy import LazyGroup
from maild.config import Config, ConfigError, find_config_path, load_config

if TYPE_CHECKING:
    from maild.daemon import Daemon

# The commands of other modules, imported only when used: name -> "module:attribute". A new command (or group) is
# one line here; its module takes AppContext, pass_app, parse_since from maild.cli.context, never from this one.
LAZY_COMMANDS = {
    "audit": "maild.cli.audit:audit",
    "classify": "maild.cli.machine:classify",
    "contact": "maild.cli.directory:contact",
    "document": "maild.cli.directory:document",
    "explain": "maild.cli.triage:explain",
    "export": "maild.cli.directory:export_",
    "import": "maild.cli.directory:import_",
    "invoice": "maild.cli.business:invoice",
    "meeting": "maild.cli.business:meeting",
    "outbox": "maild.cli.outbox:outbox",
    "quarantine": "maild.cli.quarantine:quarantine",
    "rules": "maild.cli.rules:rules",
    "send": "maild.cli.send:send",
    "task": "maild.cli.business:task",
    "templates": "maild.cli.templates:templates",
    "thirdparty": "maild.cli.directory:thirdparty",
    "timeline": "maild.cli.directory:timeline",
    "token": "maild.cli.tokens:token",
    "triage": "maild.cli.triage:triage",
    "user": "maild.cli.users:user",
    "web": "maild.cli.web:web",
}

SOURCE_HELP = ("Ingest from this source instead of the configured ones (repeatable): "
               "imap://USER@HOST:PORT/FOLDER?password_file=FILE (or ?password_env=VARIABLE), imaps://..., "
               "maildir:///PATH. USER:PASSWORD@ works but every local user can read it in the process list, "
               "so maild warns. Percent-encode @ in the user name as %40. Options: ?security=starttls, "
               "?ca_file=PEM, ?verify_tls=false, ?auth=xoauth2, ?folders=A,B, ?name=N.")


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="FILE", envvar="MAILD_CONFIG",
              help="Config file (default: $MAILD_CONFIG, else ./maild.yaml, else built-in defaults).")
@click.option("-v", "--verbose", is_flag=True, help="Log at debug level.")
@click.version_option(__version__, prog_name="maild")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """maild turns mailboxes into a complete, automated customer history.

    \b
    Start here:
      maild init ./maild-home                     write a working config, folders and sample mail
      maild --config ./maild-home/maild.yaml run  ingest continuously (Ctrl-C or SIGTERM stops)
      maild --config ./maild-home/maild.yaml status
    """
    ctx.obj = AppContext(config_path, verbose)
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing maild.yaml.")
@click.option("--no-samples", is_flag=True,
              help="No demo: neither sample messages in the local Maildir nor the sample third parties, contacts "
                   "and documents they match.")
def init(directory: Path, force: bool, no_samples: bool) -> None:
    """Create DIRECTORY with a working config (SQLite, local Maildir), its folders and the schema, all owner-only.

    Unless --no-samples, also a demo: four sample mails in the Maildir and the third parties, contacts and
    documents they belong to (own domain example.com), so `maild run` matches each one, puts it on its third
    party's timeline and `maild explain` says why."""
    from maild.cli.setup import initialise

    try:
        config_file = initialise(directory, force=force, samples=not no_samples)
    except (FileExistsError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {config_file} (what init creates is owner-only: folders 0700, files 0600)")
    click.echo(f"Rules: {config_file.parent / 'rules'} (shared-inbox, meeting-followup, dunning; docs/rules.md)")
    if not no_samples:
        click.echo(f"Demo: 4 sample mails in {config_file.parent / 'maildir' / 'new'}, the third parties, contacts "
                   "and documents they belong to (`maild thirdparty list`), own domain example.com")
    click.echo("Next:")
    click.echo(f"  maild --config {config_file} run       # ingest, send, track, run the rules until Ctrl-C / SIGTERM")
    click.echo(f"  maild --config {config_file} status")
    if not no_samples:
        click.echo(f"  maild --config {config_file} timeline 'Müller Bau GmbH'   # its mail, matched and explained")
        click.echo(f"  maild --config {config_file} explain 1                   # why mail 1 went to whom")
    click.echo(f"  maild --config {config_file} rules check")
    click.echo("Web app (served by `run` on http://127.0.0.1:8026, web.listen_port): first create an admin user:")
    click.echo(f"  maild --config {config_file} user add admin --role admin   # asks for a password")


@cli.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("check")
@click.option("--connect", is_flag=True,
              help="Also try what the config names: the database, each IMAP login and folder, each Maildir, the "
                   "SMTP server (connect, TLS, auth; nothing is sent), the tracking secret, the rule files.")
@pass_app
def config_check(app: AppContext, connect: bool) -> None:
    """Validate the config file and environment; exit 1 with file:line: key: problem on error.

    Also says whether what holds mail or secrets (the SQLite database, the blob store, the Maildirs, sent .eml
    files, the tracking secret, password files) is owner-only; a warning with the chmod that fixes each that
    other users can read.

    With --connect, one line per server or folder, OK or FAILED with the reason; exit 1 if any failed."""
    path = find_config_path(app.config_path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"{path or 'built-in defaults'}: OK ({len(config.sources)} source(s), database {_safe_url(config)})")
    _report_permissions(config)
    if not config.matching.trusted_authserv_ids:
        click.echo("note: matching.trusted_authserv_ids is empty: Authentication-Results are not read, so mail with "
                   "a forged From is believed (set it to your receiving server's authserv-id)", err=True)
    if not connect:
        return
    from maild.cli.render import say
    from maild.probe import probe_all

    results = probe_all(config)
    width = max(len(r.what) for r in results)
    for result in results:
        say(f"{result.what:<{width}}  {'OK    ' if result.ok else 'FAILED'}  {result.detail}")
    if not all(r.ok for r in results):
        sys.exit(1)


@cli.command()
@click.option("--source", "sources", multiple=True, metavar="URL", help=SOURCE_HELP)
@pass_app
def run(app: AppContext, sources: tuple[str, ...]) -> None:
    """Run the daemon: watch every configured folder (IDLE or polling) and ingest new mail, send the outbox,
    serve tracking, and run the rules (rules/*.yaml) on their scheduler.

    Refuses to start (exit 1) when a rule file is invalid (each problem as file:line:column) or the tracking
    port cannot be listened on (taken by another process, say). SIGHUP re-reads the rules, keeping the last
    good set when the new one is invalid. Stops cleanly on SIGTERM or SIGINT: the batch in hand is committed,
    nothing is lost.
    """
    from maild.daemon import Daemon
    from maild.rules.model import RuleErrors
    from maild.tracking.server import PortUnavailable

    daemon = Daemon(app.with_sources(sources))
    click.get_current_context().call_on_close(daemon.db.dispose)  # like app.database(): released when done
    _stop_on_signals(daemon)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: threading.Thread(
        target=daemon.reload_rules, name="rules-reload", daemon=True).start())
    try:
        daemon.run()
    except RuleErrors as exc:
        click.echo(f"maild: not started, the rules are invalid ({len(exc.errors)} problem(s)):", err=True)
        click.echo(str(exc), err=True)
        sys.exit(1)
    except PortUnavailable as exc:
        click.echo(f"maild: not started: {exc}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--once", is_flag=True, default=True, help="One pass over every folder, then exit (the default).")
@click.option("--source", "sources", multiple=True, metavar="URL", help=SOURCE_HELP)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@pass_app
def ingest(app: AppContext, once: bool, sources: tuple[str, ...], progress: bool | None) -> None:
    """Ingest everything new in every folder once, then exit. Exit 1 if any folder failed."""
    from maild.cli.progress import PassProgress
    from maild.cli.render import say
    from maild.daemon import Daemon

    daemon = Daemon(app.with_sources(sources))
    click.get_current_context().call_on_close(daemon.db.dispose)  # like app.database(): released when done
    _stop_on_signals(daemon)
    show = sys.stderr.isatty() if progress is None else progress
    with PassProgress(enabled=show) as bar:
        report = daemon.ingest_once(progress=bar.update)
    click.echo(f"ingested {report.handled} message(s) from {len(daemon.config.sources)} source(s)")
    for label, error in report.errors.items():
        say(f"error: {label}: {error}", err=True)
    if report.errors:
        sys.exit(1)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show each folder's checkpoint, counts, lag and last error, and the totals."""
    from maild.cli.render import print_status
    from maild.status import collect

    data = collect(app.database(), classifying=app.config.machine_mail.classify)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        print_status(data)


@cli.command()
@pass_app
def migrate(app: AppContext) -> None:
    """Apply pending database migrations (also done automatically on start)."""
    from maild.store.db import Database

    Database(app.config.database_url).upgrade()
    click.echo(f"schema up to date ({_safe_url(app.config)})")


def _stop_on_signals(daemon: Daemon) -> None:
    """SIGTERM and SIGINT ask the daemon to finish the batch in hand and stop; a second one kills."""

    def _stop(signum: int, _frame: Any) -> None:
        if daemon.stop.is_set():
            raise SystemExit(128 + signum)
        daemon.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)


def _report_permissions(config: Config) -> None:
    """One line: the paths holding mail or secrets are owner-only; else a warning (stderr) for each that is not."""
    from maild.permissions import exposures

    checked, exposed = exposures(config)
    for exposure in exposed:
        click.echo(f"warning: {exposure}", err=True)
    if checked and not exposed:
        click.echo(f"permissions: owner-only ({', '.join(checked)})")


def _safe_url(config: Config) -> str:
    from sqlalchemy.engine import make_url

    return make_url(config.database_url).render_as_string(hide_password=True)


def main(args: list[str] | None = None) -> None:
    """The `maild` command (arguments from sys.argv unless given; then the process ends with the command)."""
    from sqlalchemy.exc import DBAPIError

    from maild.permissions import restrict_new_files

    restrict_new_files()  # mail, database, blobs, exports, sent .eml files: owner-only, whatever the shell's umask
    try:
        cli(args=args, prog_name="maild")
    except DBAPIError as exc:  # unreachable or refusing database: say so, no traceback
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        click.echo(f"maild: database error: {reason}", err=True)
        sys.exit(1)
    finally:
        if args is None:
            leave_heap_to_exit()


def leave_heap_to_exit() -> None:
    """The command is done and the process ends: spare the interpreter's exit its garbage collection of the whole
    heap. Everything was closed by then; the collections only cost time, ~0.6 s of CPU after `maild run`, which
    on a loaded machine made a clean SIGTERM stop take 5-10 s instead of about one."""
    gc.freeze()
