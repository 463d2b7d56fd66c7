"""Render every template, in every language it has, with the sample context; collect `FILE:LINE: message`."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from maild.templates.loader import TemplateNotFound, find, languages_present, template_names
from maild.templates.render import RenderLimits, TemplateRenderError, compile_file, render
from maild.templates.sample import sample_context


def check_all(templates_dir: Path | str, languages: Iterable[str], limits: RenderLimits | None = None) -> list[str]:
    """Error lines, one per problem (an empty list means every template renders, within `limits`).

    `languages`: the languages to render every template in (pass at least the default language, first);
    each template is also rendered in every language its files carry a suffix for.
    """
    templates_dir = Path(templates_dir)
    languages = [lang for lang in languages if lang]
    default = languages[0] if languages else "en"
    if not templates_dir.is_dir():
        return [f"{templates_dir}: templates directory does not exist"]
    errors: list[str] = []

    def add(line: str) -> None:
        if line not in errors:
            errors.append(line)

    for name in template_names(templates_dir):
        directory = templates_dir / name
        # Syntax first, file by file: a file no language reaches is still checked.
        broken = set()
        for path in sorted(directory.iterdir()):
            if path.is_file() and path.suffix in (".txt", ".html") and path.name.split(".")[0] in ("subject", "body"):
                try:
                    compile_file(path, html=path.suffix == ".html")
                except TemplateRenderError as exc:
                    broken.add(path)
                    add(str(exc))
        for language in dict.fromkeys([*languages, *languages_present(directory)]):
            try:
                files = find(templates_dir, name, language, default)
            except TemplateNotFound as exc:
                add(f"{directory}: {exc}")
                continue
            if {files.subject, files.text, files.html} & broken:
                continue  # already reported
            try:
                render(files, sample_context(files.language), limits)
            except TemplateRenderError as exc:
                add(str(exc))
    return errors
