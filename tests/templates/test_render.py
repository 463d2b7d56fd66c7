"""Template lookup, sandboxed rendering, filters and `check_all`."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from maild.templates.check import check_all
from maild.templates.loader import TemplateNotFound, find
from maild.templates.render import TemplateRenderError, render
from maild.templates.sample import PLACEHOLDERS, sample_context

SAMPLES = Path(__file__).resolve().parents[2] / "maild" / "samples" / "templates"


def make(root: Path, name: str, **parts: str) -> Path:
    """Write template `name` with files given as subject_de_txt="..." (underscores become dots)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, text in parts.items():
        (folder / key.replace("_", ".")).write_text(text, encoding="utf-8")
    return folder


def one(root: Path, subject: str = "Hello", text: str = "Body", html: str | None = None, language: str = "en"):
    parts = {"subject_txt": subject, "body_txt": text}
    if html is not None:
        parts["body_html"] = html
    make(root, "t", **parts)
    return render(find(root, "t", language, "en"), sample_context(language))


# --- language fallback -------------------------------------------------------------------------------------

def test_each_part_falls_back_language_then_default_then_unsuffixed(tmp_path: Path) -> None:
    make(tmp_path, "t", subject_txt="S", subject_de_txt="S-de", body_txt="B", body_fr_txt="B-fr",
         body_html="H", body_fr_html="H-fr")
    de = find(tmp_path, "t", "de", "fr")
    assert (de.subject.name, de.text.name, de.html.name, de.language) == (
        "subject.de.txt", "body.fr.txt", "body.fr.html", "fr")
    en = find(tmp_path, "t", "en", "en")
    assert (en.subject.name, en.text.name, en.html.name, en.language) == ("subject.txt", "body.txt", "body.html", "en")
    regional = find(tmp_path, "t", "de-AT", "en")
    assert regional.subject.name == "subject.de.txt"


def test_language_of_chosen_files_drives_formatting(tmp_path: Path) -> None:
    make(tmp_path, "t", subject_txt="{{ invoice.total|money }}", body_txt="{{ language }}")
    result = render(find(tmp_path, "t", "de", "en"), sample_context("de"))
    assert result.language == "en"  # no German text body: the mail is English, and so is its formatting
    assert result.subject == "€1,823.68"
    assert result.text == "en"


def test_missing_template_and_missing_part_name_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(TemplateNotFound, match="no template 'nope'"):
        find(tmp_path, "nope", "de", "en")
    make(tmp_path, "t", subject_txt="S")
    with pytest.raises(TemplateNotFound) as info:
        find(tmp_path, "t", "de", "en")
    assert "body.de.txt, body.en.txt, body.txt" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden"])
def test_template_name_cannot_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(TemplateNotFound, match="invalid template name"):
        find(tmp_path / "templates", name, "en", "en")


# --- errors with FILE:LINE ---------------------------------------------------------------------------------

def test_missing_placeholder_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError) as info:
        one(tmp_path, text="Dear {{ contact.first_name }},\n\nyour order {{ order.number }} shipped.\n")
    path = tmp_path / "t" / "body.txt"
    assert str(info.value).startswith(f"{path}:3: ")
    assert "order" in str(info.value)
    assert (info.value.path, info.value.line) == (str(path), 3)


def test_missing_attribute_of_a_placeholder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match=r"body\.html:2: .*no_such_key"):
        one(tmp_path, html="<p>\n{{ invoice.no_such_key }}</p>")


def test_syntax_error_has_the_line(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match=r"subject\.txt:2: syntax error"):
        one(tmp_path, subject="Hello\n{% if %}")


# --- sandbox -------------------------------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ lipsum.__globals__['os'].system('touch {marker}') }}",
    "{{ joiner.__init__.__globals__.__builtins__.open('{marker}', 'w') }}",
    "{{ ''.format.__self__ }}{{ ''.__class__ }}",
    "{% set x = company.__class__ %}{{ x.__subclasses__() }}",
    "{{ company.update({'name': 'x'}) }}",
    "{{ invoice.lines.append(1) }}",
    "{{ 'x' * 1000000000 }}",
    "{{ 2 ** 100000000 }}",
    "{% for i in range(10 ** 9) %}{% endfor %}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_sandbox_escapes_are_errors_and_never_run(tmp_path: Path, source: str) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(TemplateRenderError) as info:
        one(tmp_path, text="line one\n" + source.replace("{marker}", str(marker)))
    assert f"{tmp_path / 't' / 'body.txt'}:2: " in str(info.value)
    assert not marker.exists()


def test_sandbox_error_is_labelled(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match="unsafe"):
        one(tmp_path, text="{{ cycler.__init__.__globals__ }}")


# --- autoescape ----------------------------------------------------------------------------------------------

def test_html_is_autoescaped_text_and_subject_are_not(tmp_path: Path) -> None:
    make(tmp_path, "t", subject_txt="Hi {{ thirdparty.name }}", body_txt="{{ thirdparty.name }}",
         body_html="<p>{{ thirdparty.name }}</p>")
    context = sample_context("en")
    context["thirdparty"]["name"] = 'Evil <script>alert("x")</script> & Co'
    result = render(find(tmp_path, "t", "en", "en"), context)
    assert "<script>" not in result.html
    assert result.html == "<p>Evil &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co</p>"
    assert result.text == 'Evil <script>alert("x")</script> & Co'
    assert result.subject == 'Hi Evil <script>alert("x")</script> & Co'


# --- subject -------------------------------------------------------------------------------------------------

def test_subject_is_stripped(tmp_path: Path) -> None:
    assert one(tmp_path, subject="  Invoice {{ invoice.ref }}\n\n").subject == "Invoice FA2611-0007"


@pytest.mark.parametrize("injected", ["x\r\nBcc: victim@example.test", "x\nBcc: v@example.test", "x\ry",
                                      "x\u2028y"])
def test_line_break_in_rendered_subject_is_refused(tmp_path: Path, injected: str) -> None:
    make(tmp_path, "t", subject_txt="Re: {{ thirdparty.name }}", body_txt="B")
    context = sample_context("en")
    context["thirdparty"]["name"] = injected
    with pytest.raises(TemplateRenderError, match=r"subject\.txt:1: the subject must be a single line"):
        render(find(tmp_path, "t", "en", "en"), context)


def test_line_break_in_subject_template_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match="single line"):
        one(tmp_path, subject="Hello\nWorld")


# --- filters -------------------------------------------------------------------------------------------------

def test_money_and_date_follow_the_language(tmp_path: Path) -> None:
    for lang in ("en", "de"):
        make(tmp_path, "t", **{f"body_{lang}_txt": "{{ amount|money }}|{{ amount|money('USD') }}|"
                               "{{ day|date }}|{{ day|date('long') }}|{{ day|date('dd.MM.yyyy') }}|"
                               "{{ amount|money(locale='de') }}|{{ '2026-01-05'|date('short') }}"},
             subject_txt="S")
    results = {}
    for lang in ("en", "de"):
        context = {**sample_context(lang), "amount": Decimal("1234.56"), "day": date(2026, 3, 9)}
        results[lang] = render(find(tmp_path, "t", lang, "en"), context).text
    nbsp = "\xa0"
    assert results["en"] == ("€1,234.56|$1,234.56|Mar 9, 2026|March 9, 2026|09.03.2026|"
                             f"1.234,56{nbsp}€|1/5/26")
    assert results["de"] == (f"1.234,56{nbsp}€|1.234,56{nbsp}$|09.03.2026|9. März 2026|09.03.2026|"
                             f"1.234,56{nbsp}€|05.01.26")


@pytest.mark.parametrize(("source", "match"), [("{{ 'abc'|money }}", "not an amount"),
                                               ("{{ 'soon'|date }}", "not a date"),
                                               ("{{ 1|money(locale='xx_YY') }}", "unknown locale")])
def test_filter_errors_have_file_and_line(tmp_path: Path, source: str, match: str) -> None:
    with pytest.raises(TemplateRenderError, match=rf"body\.txt:2: .*{match}"):
        one(tmp_path, text="\n" + source)


# --- sample context and check_all ----------------------------------------------------------------------------

def test_sample_context_has_every_documented_placeholder() -> None:
    for lang in ("en", "de"):
        context = sample_context(lang)
        assert set(PLACEHOLDERS) <= set(context)
        assert context["language"] == lang
    assert sample_context("en") is not sample_context("en")


def test_shipped_samples_check_clean() -> None:
    assert check_all(SAMPLES, ["en", "de"]) == []


@pytest.mark.parametrize(("name", "language"), [("followup", "de"), ("dunning-reminder", "de"),
                                                 ("dunning-reminder", "en"), ("invoice", "en")])
def test_shipped_samples_render(name: str, language: str) -> None:
    result = render(find(SAMPLES, name, language, "en"), sample_context(language))
    assert result.language == language
    assert result.subject and "\n" not in result.subject
    assert result.html is not None and "<a href=\"https://portal.nordlicht.example/" in result.html
    if name == "dunning-reminder":
        assert "FA2611-0007" in result.subject
        assert ("1.823,68\xa0€" if language == "de" else "€1,823.68") in result.text


def test_check_all_reports_broken_templates_with_lines(tmp_path: Path) -> None:
    make(tmp_path, "good", subject_txt="Hi", body_txt="{{ contact.first_name }}")
    make(tmp_path, "undefined", subject_txt="Hi", body_txt="ok\nok\n{{ contact.nickname }}\n")
    make(tmp_path, "syntax", subject_txt="Hi", body_txt="B", body_de_html="<p>\n\n\n{% for x in %}</p>")
    make(tmp_path, "nobody", subject_txt="Hi")
    errors = check_all(tmp_path, ["en"])
    assert f"{tmp_path / 'undefined' / 'body.txt'}:3: " in "\n".join(errors)
    assert any(e.startswith(f"{tmp_path / 'syntax' / 'body.de.html'}:4: syntax error") for e in errors)
    assert any(e.startswith(f"{tmp_path / 'nobody'}: ") and "body.txt" in e for e in errors)
    assert not any("good" in e for e in errors)
    assert len(errors) == 3


def test_check_all_on_missing_folder(tmp_path: Path) -> None:
    assert check_all(tmp_path / "missing", ["en"]) == [f"{tmp_path / 'missing'}: templates directory does not exist"]
