"""Find the files of a template NAME for a language.

Layout: `<templates_dir>/NAME/subject.txt`, `body.txt`, optional `body.html`, and language variants
`subject.LANG.txt`, `body.LANG.txt`, `body.LANG.html`. Each part is chosen on its own: the requested
language (then its base language, `de` for `de-AT`), then the default language, then the unsuffixed file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# subject.txt, body.txt, body.html, subject.de.txt, body.de-AT.html ...
PART_RE = re.compile(r"^(?P<part>subject|body)(?:\.(?P<lang>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*))?\."
                     r"(?P<ext>txt|html)$")


class TemplateNotFound(ValueError):
    """No such template, or a required part (subject, text body) is missing; the message lists what was tried."""


@dataclass(frozen=True)
class TemplateFiles:
    name: str
    directory: Path
    language: str  # the language of the text body that was chosen (unsuffixed files count as the default)
    subject: Path
    text: Path
    html: Path | None


def language_candidates(language: str | None, default_language: str) -> list[str]:
    """Suffixes to try, in order: language, its base language, default, its base; no repeats."""
    out: list[str] = []
    for lang in (language, default_language):
        if not lang:
            continue
        for candidate in (lang, re.split(r"[-_]", lang)[0]):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


def template_names(templates_dir: Path) -> list[str]:
    """Every folder under templates_dir that looks like a template name, sorted."""
    if not templates_dir.is_dir():
        return []
    return sorted(p.name for p in templates_dir.iterdir() if p.is_dir() and NAME_RE.match(p.name))


def languages_present(directory: Path) -> list[str]:
    """The language suffixes used by the files of one template folder, sorted."""
    langs = set()
    for path in directory.iterdir() if directory.is_dir() else ():
        match = PART_RE.match(path.name)
        if match and match["lang"] and not (match["part"] == "subject" and match["ext"] == "html"):
            langs.add(match["lang"])
    return sorted(langs)


def find(templates_dir: Path | str, name: str, language: str | None, default_language: str) -> TemplateFiles:
    """The files of template `name` for `language`; raises TemplateNotFound listing what was looked for."""
    templates_dir = Path(templates_dir)
    if not NAME_RE.match(name or ""):
        raise TemplateNotFound(f"invalid template name {name!r}: use letters, digits, '.', '_' and '-' only")
    directory = templates_dir / name
    if not directory.is_dir():
        known = ", ".join(template_names(templates_dir)) or "none"
        raise TemplateNotFound(f"no template {name!r}: {directory} is not a directory (templates found: {known})")
    langs = language_candidates(language, default_language)

    def pick(part: str, ext: str) -> tuple[Path | None, str | None, list[Path]]:
        tried = []
        for lang in [*langs, None]:
            path = directory / (f"{part}.{lang}.{ext}" if lang else f"{part}.{ext}")
            tried.append(path)
            if path.is_file():
                return path, lang, tried
        return None, None, tried

    subject, _, subject_tried = pick("subject", "txt")
    text, text_lang, text_tried = pick("body", "txt")
    html, _, _ = pick("body", "html")
    missing = [tried for found, tried in ((subject, subject_tried), (text, text_tried)) if found is None]
    if missing:
        looked = "; ".join(", ".join(p.name for p in tried) for tried in missing)
        raise TemplateNotFound(f"template {name!r} in {directory} for language {language or default_language!r}: "
                               f"none of these files exist: {looked}")
    assert subject is not None and text is not None
    return TemplateFiles(name=name, directory=directory, language=text_lang or default_language,
                         subject=subject, text=text, html=html)
