"""`maild templates check|render`: the outbound mail templates under `outbound.templates_dir`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from maild.cli.context import AppContext, pass_app

if TYPE_CHECKING:
    from maild.templates.render import RenderLimits

DIR_HELP = "Templates folder (default: outbound.templates_dir of the config, relative to the config file)."


@click.group()
def templates() -> None:
    """Mail templates: check that every one renders, or preview one with sample data."""


def _templates_dir(app: AppContext, directory: Path | None) -> Path:
    from maild.config import resolve_path

    if directory is not None:
        return directory
    return resolve_path(app.config.base_dir, app.config.outbound.templates_dir)


def _limits(app: AppContext) -> RenderLimits:
    from maild.templates.render import RenderLimits

    outbound = app.config.outbound
    return RenderLimits(outbound.template_max_seconds, outbound.template_max_bytes)


@templates.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@click.option("--lang", "languages", multiple=True, metavar="LANG",
              help="Also render every template in this language (repeatable; default: outbound.default_language).")
@pass_app
def check(app: AppContext, directory: Path | None, languages: tuple[str, ...]) -> None:
    """Render every template in every language it has with sample data; errors read FILE:LINE: problem."""
    from maild.templates.check import check_all
    from maild.templates.loader import template_names

    folder = _templates_dir(app, directory)
    errors = check_all(folder, [app.config.outbound.default_language, *languages], _limits(app))
    for line in errors:
        click.echo(line, err=True)
    if errors:
        click.echo(f"{len(errors)} error(s) in {folder}", err=True)
        sys.exit(1)
    click.echo(f"{len(template_names(folder))} template(s) OK in {folder}")


@templates.command()
@click.argument("name")
@click.option("--lang", "language", metavar="LANG", help="Language (default: outbound.default_language).")
@click.option("--html", "as_html", is_flag=True, help="Print the HTML part instead of the text part.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP)
@pass_app
def render(app: AppContext, name: str, language: str | None, as_html: bool, directory: Path | None) -> None:
    """Render template NAME with sample data: the subject, a blank line, then the text (or HTML) body."""
    from maild.templates.loader import TemplateNotFound, find
    from maild.templates.render import TemplateRenderError
    from maild.templates.render import render as render_files
    from maild.templates.sample import sample_context

    default = app.config.outbound.default_language
    try:
        files = find(_templates_dir(app, directory), name, language or default, default)
        result = render_files(files, sample_context(files.language), _limits(app))
    except (TemplateNotFound, TemplateRenderError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_html and result.html is None:
        raise click.ClickException(f"template {name!r} has no body.html (language {files.language})")
    click.echo(f"Subject: {result.subject}")
    click.echo("")
    click.echo(result.html if as_html else result.text)
