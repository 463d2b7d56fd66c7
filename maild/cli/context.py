"""What every `maild` subcommand shares: the AppContext (config and database, loaded on first use), `pass_app`
and option parsers. Subcommand modules import from here, never from maild.cli.main."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import TYPE_CHECKING

import click

from maild.config import Config, ConfigError, find_config_path, load_config
from maild.log import setup_logging

if TYPE_CHECKING:
    from maild.store.db import Database


class AppContext:
    """Loads the config once, on first use, so `maild init` and `--help` never need one."""

    def __init__(self, config_path: str | None, verbose: bool) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self._config: Config | None = None
        self._database: Database | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(find_config_path(self.config_path))
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
            setup_logging("debug" if self.verbose else self._config.log.level, self._config.log.format)
        return self._config

    def database(self) -> Database:
        """The database of the config, schema brought up to date; opened once per command."""
        from maild.store.db import Database

        if self._database is None:
            self._database = Database(self.config.database_url)
            self._database.upgrade()
        return self._database

    def close(self) -> None:
        """The command is done: release the database's connections."""
        if self._database is not None:
            self._database.dispose()
            self._database = None

    def with_sources(self, urls: tuple[str, ...]) -> Config:
        """The config, with its sources replaced by --source URLs when any were given."""
        from maild.ingest.sources.urls import SourceUrlError, password_warning, source_from_url

        if not urls:
            return self.config
        for url in urls:
            warning = password_warning(url)
            if warning:
                click.echo(f"warning: {warning}", err=True)
        try:
            return self.config.with_sources([source_from_url(url, i) for i, url in enumerate(urls)])
        except SourceUrlError as exc:
            raise click.ClickException(str(exc)) from None


pass_app = click.make_pass_decorator(AppContext)


def parse_since(value: str, now: datetime) -> datetime:
    """A `--since` value: `7d`, `12h`, `2w` ago, or an ISO date/time (in now's time zone when it has none)."""
    from maild.rules.durations import parse_duration

    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(value), time(0))
        except ValueError:
            raise click.BadParameter(f"expected a duration such as 7d or a date such as 2026-11-01; got {value!r}",
                                     param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=now.tzinfo)
