"""Folder path templates: only the template's own `/` makes levels; values can't inject levels, wildcards or
brackets; a value that had to change gets a stable suffix so two third parties never share a folder."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from maild.filing.folders import (
    MAX_LEVEL_BYTES,
    compact_level,
    digest,
    folder_for,
    sanitize_name,
    to_server_path,
    wire_length,
)
from maild.store.models import ThirdParty

TEMPLATE = "Customers/{{ thirdparty.name }}"


def _for(name: str, template: str = TEMPLATE, thirdparty_id: int | None = 12) -> str:
    party: dict[str, object] = {"name": name, "kind": "customer", "external_id": "C-1"}
    if thirdparty_id is not None:
        party["id"] = thirdparty_id
    return folder_for(template, {"thirdparty": party})


def test_plain_name() -> None:
    assert _for("ACME Corp") == "Customers/ACME Corp"


@pytest.mark.parametrize(("name", "expected"), [
    ("Müller / Söhne GmbH", "Customers/Müller - Söhne GmbH ~12"),
    ("a/b/c", "Customers/a-b-c ~12"),
    ("back\\slash", "Customers/back-slash ~12"),
    ("/leading", "Customers/leading ~12"),
])
def test_slashes_in_values_never_create_levels(name: str, expected: str) -> None:
    assert _for(name) == expected
    assert expected.count("/") == 1


@pytest.mark.parametrize(("name", "expected"), [
    (".", "Customers/unnamed ~12"),
    ("..", "Customers/unnamed ~12"),
    (" ... ", "Customers/unnamed ~12"),
    ("a..b", "Customers/a.b ~12"),
    (".hidden", "Customers/hidden ~12"),
    ("Co. KG", "Customers/Co. KG"),
    ("example.com", "Customers/example.com"),
])
def test_dot_levels_and_leading_dots_never_reach_the_server_other_dots_kept(name: str, expected: str) -> None:
    assert _for(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("*", "Customers/unnamed ~12"),
    ("100% Bio", "Customers/100- Bio ~12"),
    ("Star*Corp", "Customers/Star-Corp ~12"),
    ("ACME [Berlin]", "Customers/ACME (Berlin) ~12"),
    ("A[B", "Customers/A(B ~12"),
    ("-", "Customers/unnamed ~12"),
    ("- Dash Ltd", "Customers/Dash Ltd ~12"),
    ("~home", "Customers/home ~12"),
])
def test_wildcards_brackets_and_leading_dashes_are_replaced(name: str, expected: str) -> None:
    assert _for(name) == expected


def test_names_that_clean_to_the_same_text_stay_distinct() -> None:
    """The issue: `..`, `*`, `%` and `-` all became `Customers/-`. Each third party keeps its own folder."""
    folders = {_for(name, thirdparty_id=i) for i, name in enumerate(["..", "*", "%", "-", "Müller / Söhne",
                                                                     "Müller - Söhne", "Müller \\ Söhne"])}
    assert len(folders) == 7
    assert "Customers/Müller - Söhne" in folders, "a name that needed no change gets no suffix"


def test_without_a_record_id_the_suffix_is_a_digest_of_the_value() -> None:
    assert _for("a/b", thirdparty_id=None) == f"Customers/a-b ~{digest('a/b')}"
    assert _for("a/b", thirdparty_id=None) == _for("a/b", thirdparty_id=None), "stable"
    assert _for("a/b", thirdparty_id=None) != _for("a\\b", thirdparty_id=None)


def test_the_suffix_is_the_id_of_the_record_the_value_comes_from() -> None:
    context = {"thirdparty": {"id": 3, "name": "A/S Nord"}, "contact": {"id": 9, "name": "Jo [Sales]"}}
    assert folder_for("{{ thirdparty.name }}/{{ contact.name }}", context) == "A-S Nord ~3/Jo (Sales) ~9"
    assert folder_for("{{ thirdparty.name }} {{ contact.name }}", context) == "A-S Nord Jo (Sales) ~3 ~9"
    assert folder_for("C/{{ thirdparty.name | upper }}", context) == "C/A-S NORD ~3", "filters keep the suffix"


def test_wildcards_and_dot_levels_written_in_the_template_are_neutralised_too() -> None:
    assert folder_for("Kunden*/%/../{{ n }}", {"n": "x"}) == "Kunden-/x"


def test_control_characters_removed_whitespace_collapsed() -> None:
    assert _for("  ACME\t\r\n  Corp  ") == "Customers/ACME Corp", "spacing alone is no loss"
    assert _for("ACME\x00\x07\x1b Corp") == "Customers/ACME Corp ~12"
    assert _for("evil\u202eexe.txt") == "Customers/evilexe.txt ~12"
    assert _for("  \x00 ") == "Customers/unnamed ~12", "a name of nothing but control characters"


@pytest.mark.parametrize("name", ["Müller & Söhne", "Ærø Fiskeri", "株式会社テスト", "Łódź Spółka", "Café 😀"])
def test_non_ascii_kept_as_is(name: str) -> None:
    assert _for(name) == f"Customers/{name}"


def test_nfc_normalised() -> None:
    decomposed = "Mu\u0308ller"  # u + combining diaeresis
    assert _for(decomposed) == "Customers/M\u00fcller"


def test_long_levels_are_cut_to_the_wire_limit_with_a_stable_suffix() -> None:
    ascii_long, umlaut_long = _for("x" * 300), _for("ü" * 80)
    for path in (ascii_long, umlaut_long):
        level = path.split("/")[1]
        assert wire_length(level) <= MAX_LEVEL_BYTES and level.endswith(" ~12")
    assert ascii_long == "Customers/" + "x" * (MAX_LEVEL_BYTES - 4) + " ~12"
    assert _for("x" * 300 + "a") != _for("x" * 300 + "b", thirdparty_id=13)
    # A level long only through the template's own text: cut, with a digest of the whole.
    template_level = "y" * 150
    assert folder_for(template_level + "/{{ n }}", {"n": "z"}) == \
        "y" * (MAX_LEVEL_BYTES - 8) + f" ~{digest(template_level)}/z"


def test_a_path_longer_than_a_filing_task_can_record_is_an_error() -> None:
    context = {f"l{i}": "x" * 99 for i in range(6)}
    with pytest.raises(ValueError, match="at most 500"):
        folder_for("/".join(f"{{{{ l{i} }}}}" for i in range(6)), context)


def test_empty_levels_dropped_and_levels_stripped() -> None:
    assert folder_for("/ Customers //{{ n }}/ ", {"n": " ACME "}) == "Customers/ACME"
    assert _for("") == "Customers"
    assert _for("/") == "Customers/unnamed ~12"


@pytest.mark.parametrize(("template", "context"), [
    ("{{ n }}", {"n": ""}),
    ("{{ n }}", {"n": "   \t "}),
    ("/ /", {}),
    ("", {}),
])
def test_empty_result_is_an_error(template: str, context: dict) -> None:
    with pytest.raises(ValueError, match="empty"):
        folder_for(template, context)


@pytest.mark.parametrize(("template", "context"), [
    ("Customers/{{ thirdparty.nmae }}", {"thirdparty": {"name": "x"}}),  # undefined: strict
    ("Customers/{{ missing }}", {}),
    ("Customers/{{ thirdparty.name ", {"thirdparty": {"name": "x"}}),  # syntax
    ("{% for %}", {}),
    ("{{ ''.__class__.__mro__ }}", {}),  # the sandbox refuses
    ("{{ 1 / 0 }}", {}),
])
def test_template_errors_raise_value_error(template: str, context: dict) -> None:
    with pytest.raises(ValueError, match="folder template"):
        folder_for(template, context)


def test_other_context_fields_and_filters() -> None:
    context = {"thirdparty": {"id": 5, "name": "ACME", "kind": "supplier/partner", "external_id": 42}}
    path = folder_for("{{ thirdparty.kind | title }}/{{ thirdparty.external_id }} {{ thirdparty.name | upper }}",
                      context)
    assert path == "Supplier-Partner ~5/42 ACME"


def test_records_are_sanitised_too() -> None:
    @dataclass
    class Party:
        name: str

    assert folder_for("C/{{ p.name }}", {"p": Party("a/b")}) == f"C/a-b ~{digest('a/b')}"
    party = ThirdParty(id=4, name="Müller / Söhne", kind="customer", external_id="K/1")
    assert folder_for("C/{{ p.name }} {{ p.external_id }}", {"p": party}) == "C/Müller - Söhne K-1 ~4"
    assert folder_for("C/{% for t in tags %}{{ t }} {% endfor %}", {"tags": ["x/y", "*"]}) == \
        f"C/x-y ~{digest('x/y')} ~{digest('*')}"


def test_sanitize_name_direct() -> None:
    assert sanitize_name(" a / b ") == "a - b"
    assert sanitize_name("..") == ""
    assert sanitize_name("[x]*%") == "(x)--"


def test_compact_level_is_short_ascii_and_distinct() -> None:
    assert compact_level("Customers") == "Customers", "already compact: kept"
    long_name = "Müller & Söhne Großhandel für Gartenbedarf und Landschaftspflege GmbH ~12"
    compact = compact_level(long_name)
    assert compact.isascii() and len(compact) <= 50
    assert compact.startswith("Muller - Sohne Grosshandel")
    assert compact == compact_level(long_name) != compact_level(long_name.replace("12", "13"))


@pytest.mark.parametrize(("path", "delimiter", "expected"), [
    ("Customers/Müller - Söhne GmbH", "/", "Customers/Müller - Söhne GmbH"),
    ("Customers/ACME", ".", "Customers.ACME"),
    ("Customers/Co. KG", ".", "Customers.Co- KG"),  # a delimiter inside a level must not make a level
    ("/Customers//ACME/", "/", "Customers/ACME"),
    ("ACME", None, "ACME"),
])
def test_to_server_path(path: str, delimiter: str | None, expected: str) -> None:
    assert to_server_path(path, delimiter) == expected


def test_to_server_path_errors() -> None:
    with pytest.raises(ValueError):
        to_server_path(" / ", "/")
    with pytest.raises(ValueError, match="hierarchy"):
        to_server_path("a/b", None)
