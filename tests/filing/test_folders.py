"""Folder path templates: only the template's own `/` makes levels; values can't inject levels or wildcards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from maild.filing.folders import MAX_LEVEL_CHARS, folder_for, sanitize_name, to_server_path
from maild.store.models import ThirdParty

TEMPLATE = "Customers/{{ thirdparty.name }}"


def _for(name: str, template: str = TEMPLATE) -> str:
    return folder_for(template, {"thirdparty": {"name": name, "kind": "customer", "external_id": "C-1"}})


def test_plain_name() -> None:
    assert _for("ACME Corp") == "Customers/ACME Corp"


@pytest.mark.parametrize(("name", "expected"), [
    ("Müller / Söhne GmbH", "Customers/Müller - Söhne GmbH"),
    ("a/b/c", "Customers/a-b-c"),
    ("back\\slash", "Customers/back-slash"),
    ("/leading", "Customers/-leading"),
])
def test_slashes_in_values_never_create_levels(name: str, expected: str) -> None:
    assert _for(name) == expected
    assert expected.count("/") == 1


@pytest.mark.parametrize(("name", "expected"), [
    (".", "Customers/-"),
    ("..", "Customers/-"),
    (" ... ", "Customers/-"),
    ("Co. KG", "Customers/Co. KG"),
    ("example.com", "Customers/example.com"),
])
def test_dot_only_names_are_replaced_other_dots_kept(name: str, expected: str) -> None:
    assert _for(name) == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("*", "Customers/-"),
    ("100% Bio", "Customers/100- Bio"),
    ("Star*Corp", "Customers/Star-Corp"),
])
def test_wildcards_are_replaced(name: str, expected: str) -> None:
    assert _for(name) == expected


def test_wildcards_and_dot_levels_written_in_the_template_are_neutralised_too() -> None:
    assert folder_for("Kunden*/%/../{{ n }}", {"n": "x"}) == "Kunden-/-/-/x"


def test_control_characters_removed_whitespace_collapsed() -> None:
    assert _for("  ACME\t\r\n  Corp\x00\x07\x1b  ") == "Customers/ACME Corp"
    assert _for("evil\u202eexe.txt") == "Customers/evilexe.txt"


@pytest.mark.parametrize("name", ["Müller & Söhne", "Ærø Fiskeri", "株式会社テスト", "Łódź Spółka", "Café 😀"])
def test_non_ascii_kept_as_is(name: str) -> None:
    assert _for(name) == f"Customers/{name}"


def test_nfc_normalised() -> None:
    decomposed = "Mu\u0308ller"  # u + combining diaeresis
    assert _for(decomposed) == "Customers/M\u00fcller"


def test_level_capped() -> None:
    long = "x" * 300
    assert _for(long) == "Customers/" + "x" * MAX_LEVEL_CHARS
    assert folder_for("y" * 150 + "/{{ n }}", {"n": "z"}) == "y" * MAX_LEVEL_CHARS + "/z"


def test_empty_levels_dropped_and_levels_stripped() -> None:
    assert folder_for("/ Customers //{{ n }}/ ", {"n": " ACME "}) == "Customers/ACME"
    assert _for("") == "Customers"
    assert _for("/") == "Customers/-"


@pytest.mark.parametrize(("template", "context"), [
    ("{{ n }}", {"n": ""}),
    ("{{ n }}", {"n": "   \x00 "}),
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
    context = {"thirdparty": {"name": "ACME", "kind": "supplier/partner", "external_id": 42}}
    path = folder_for("{{ thirdparty.kind | title }}/{{ thirdparty.external_id }} {{ thirdparty.name | upper }}",
                      context)
    assert path == "Supplier-Partner/42 ACME"


def test_records_are_sanitised_too() -> None:
    @dataclass
    class Party:
        name: str

    assert folder_for("C/{{ p.name }}", {"p": Party("a/b")}) == "C/a-b"
    party = ThirdParty(name="Müller / Söhne", kind="customer", external_id="K/1")
    assert folder_for("C/{{ p.name }} {{ p.external_id }}", {"p": party}) == "C/Müller - Söhne K-1"
    assert folder_for("C/{% for t in tags %}{{ t }} {% endfor %}", {"tags": ["x/y", "*"]}) == "C/x-y -"


def test_sanitize_name_direct() -> None:
    assert sanitize_name(" a / b ") == "a - b"
    assert sanitize_name("..") == "-"


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
