"""CSV import: all rows or none, the right line for every problem, malformed files refused, and set-based speed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event

from maild.business.csv_import import import_csv as import_business
from maild.directory import service
from maild.directory.csv_import import import_csv
from maild.directory.csv_rows import CHUNK_ROWS, ImportOptions
from maild.store.db import Database
from tests.helpers import invoke, write_config

SKIP = ImportOptions(skip_invalid=True)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _names(db: Database) -> list[str]:
    return sorted(tp.name for tp in service.list_thirdparties(db))


def _refuse_name(db: Database, name: str) -> None:
    """Make the database itself refuse a third party called `name` (as a constraint would)."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE INSERT ON thirdparties WHEN NEW.name = '{name}' "
                                 "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END")
        else:
            conn.exec_driver_sql(f"CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN IF NEW.name = '{name}' "
                                 "THEN RAISE EXCEPTION 'refused by a trigger' USING ERRCODE = 'check_violation'; "
                                 "END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON thirdparties "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_a_bad_row_after_good_ones_imports_nothing_and_says_so(db: Database, tmp_path: Path) -> None:
    service.add_thirdparty(db, name="Kept", external_id="C-0", tags=["old"])
    path = _write(tmp_path / "tp.csv", "external_id,name,tags\nC-0,Renamed,new\nC-1,Acme,\nC-2,,\nC-3,Beta,\n")
    report = import_csv(db, "thirdparties", path)
    assert (report.committed, report.inserted, report.updated, report.rejected) == (
        False, 2, 1, [(4, "name is missing")])
    assert _names(db) == ["Kept"] and service.resolve_thirdparty(db, "C-0").tags == ["old"]
    skipped = import_csv(db, "thirdparties", path, options=SKIP)
    assert (skipped.committed, skipped.inserted, skipped.updated, skipped.rejected) == (
        True, 2, 1, [(4, "name is missing")])
    assert _names(db) == ["Acme", "Beta", "Renamed"]


def test_a_row_the_database_refuses_is_found_in_its_chunk(db: Database, tmp_path: Path) -> None:
    _refuse_name(db, "Refused")
    rows = [f"C-{n},Company {n}" for n in range(CHUNK_ROWS + 20)]
    rows[CHUNK_ROWS + 5] = "C-X,Refused"  # in the second chunk
    path = _write(tmp_path / "tp.csv", "external_id,name\n" + "\n".join(rows) + "\n")
    report = import_csv(db, "thirdparties", path)
    assert not report.committed and len(report.rejected) == 1
    line, reason = report.rejected[0]
    assert line == CHUNK_ROWS + 7 and reason.startswith("refused by the database:") and "trigger" in reason
    assert service.list_thirdparties(db) == []
    skipped = import_csv(db, "thirdparties", path, options=SKIP)
    assert (skipped.inserted, skipped.rejected) == (CHUNK_ROWS + 19, report.rejected)
    assert len(service.list_thirdparties(db)) == CHUNK_ROWS + 19


def test_business_imports_are_all_or_nothing_too(db: Database, tmp_path: Path) -> None:
    service.add_thirdparty(db, name="Acme", external_id="C-1")
    path = _write(tmp_path / "inv.csv", "ref,thirdparty,issued_on,due_on,amount\n"
                  "FA-1,C-1,2026-10-01,2026-10-15,10\nFA-2,C-1,2026-10-01,2026-10-15,ten\n")
    report = import_business(db, "invoices", path)
    assert not report.committed and [line for line, _ in report.rejected] == [3]
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM invoices").scalar() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM events").scalar() == 0
    assert import_business(db, "invoices", path, options=SKIP).inserted == 1


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_numbers_count_physical_lines(db: Database, tmp_path: Path, newline: str) -> None:
    text = newline.join([
        "external_id,name,custom.note",                 # 1
        'C-1,Acme,"one', "two", 'three"',               # 2-4
        "C-2,,",                                        # 5: no name
        "",                                             # 6: blank
        'C-3,"Beta', 'Gamma",x',                        # 7-8
        'C-4,"bad "quote" here",',                      # 9: text after a closing quote
        'C-5,Delta,"a ""quoted"" word"',                # 10
        "C-6,Epsilon,,surplus",                         # 11: one cell too many
    ]) + newline
    report = import_csv(db, "thirdparties", _write(tmp_path / "tp.csv", text), options=SKIP)
    assert [line for line, _ in report.rejected] == [5, 9, 11]
    assert "closing quote" in dict(report.rejected)[9]
    assert report.inserted == 3  # C-1, C-3, C-5
    assert service.resolve_thirdparty(db, "C-1").custom_fields == {"note": f"one{newline}two{newline}three"}
    assert service.resolve_thirdparty(db, "C-5").custom_fields == {"note": 'a "quoted" word'}


def test_an_unterminated_quote_is_reported_at_the_line_it_opens(db: Database, tmp_path: Path) -> None:
    rows = [f"C-{n},Company {n}," for n in range(1, 200)]
    rows[99] = 'C-100,Company 100,"never closed'   # line 101
    path = _write(tmp_path / "tp.csv", "external_id,name,custom.note\n" + "\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}:101: a quoted cell starts on this line and its closing quote"):
        import_csv(db, "thirdparties", path, options=SKIP)
    assert service.list_thirdparties(db) == []
    huge = _write(tmp_path / "huge.csv", 'name,custom.note\nAcme,"' + "x\n" * 100_000)  # past the csv field limit
    with pytest.raises(ValueError, match=rf"^{huge}:2: a quoted cell starts"):
        import_csv(db, "thirdparties", huge, options=SKIP)


def test_nul_bytes_and_bad_utf8_are_refused_at_their_line(db: Database, tmp_path: Path) -> None:
    lines = [f"Company {n}" for n in range(5000)]
    nul = _write(tmp_path / "nul.csv", ("name\n" + "\n".join(lines[:2999]) + "\nAc\x00me\n").encode())
    with pytest.raises(ValueError, match=rf"^{nul}:3001: a NUL byte"):
        import_csv(db, "thirdparties", nul, options=SKIP)
    latin = _write(tmp_path / "latin1.csv", ("name\n" + "\n".join(lines) + "\n").encode()
                   .replace(b"Company 4321\n", "Müller 4321\n".encode("latin-1")))
    with pytest.raises(ValueError, match=rf"^{latin}:4323: not UTF-8 text \(byte 0xfc"):
        import_csv(db, "thirdparties", latin, options=SKIP)
    utf16 = _write(tmp_path / "utf16.csv", "name\nAcme\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match="a NUL byte"):
        import_csv(db, "thirdparties", utf16)
    assert service.list_thirdparties(db) == []


def test_many_rows_take_a_few_statements_per_chunk_not_several_per_row(db: Database, tmp_path: Path) -> None:
    rows = 2000
    companies = _write(tmp_path / "tp.csv", "external_id,name,tags,domains,addresses,custom.note\n" + "".join(
        f"C-{n},Company {n},vip,c{n}.example,info@c{n}.example,note {n}\n" for n in range(rows)))
    people = _write(tmp_path / "c.csv", "external_id,thirdparty,name,addresses,phones\n" + "".join(
        f"P-{n},C-{n},Person {n},p{n}@c{n}.example,+44 {n}\n" for n in range(rows)))
    statements = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    for path, entity in ((companies, "thirdparties"), (people, "contacts"), (companies, "thirdparties")):
        statements.clear()
        report = import_csv(db, entity, path)
        assert report.rejected == [] and report.inserted + report.updated == rows
        assert len(statements) < rows / 20, f"{entity}: {len(statements)} statements for {rows} rows"
    assert service.describe_thirdparty(db, service.resolve_thirdparty(db, "C-1999").id or 0)["contacts"][0][
        "addresses"] == ["p1999@c1999.example"]


def test_the_command_line_says_nothing_was_imported(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", [])
    path = _write(tmp_path / "tp.csv", 'name,custom.note\nAcme,\nBeta,"open\n')
    result = invoke(config, "import", "thirdparties", str(path), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"Error: {path}:3: a quoted cell starts on this line and its closing quote \" " \
                                    "is missing; nothing imported"
    assert "no third parties yet" in invoke(config, "thirdparty", "list").stdout
