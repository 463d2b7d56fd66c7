"""The boundary matcher of the parser processes answers as the standard library's compiled pattern does."""

from __future__ import annotations

import email.feedparser
import random
import re
from pathlib import Path

import pytest

from maild.ingest import boundaries
from maild.ingest.parse import ParsedMail, Rejected, parse_and_store
from tests.helpers import corpus_files


def _pattern(separator: str) -> str:  # as email.feedparser writes it
    return "(?P<sep>" + re.escape(separator) + r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"


@pytest.mark.parametrize("separator", ["--abc", "--=_Part_1.2", "--a b", "--", "---", "--(x)+?*[]\\", "--ü€"])
def test_every_line_is_answered_as_the_compiled_pattern_answers_it(separator: str) -> None:
    expected = re.compile(_pattern(separator))
    matcher = boundaries._FeedparserRe.compile(_pattern(separator))
    assert isinstance(matcher, boundaries.BoundaryMatcher)
    rng = random.Random(separator)
    pieces = ["-", "--", " ", "\t", "\r", "\n", "\r\n", "x", "="]
    for _ in range(5000):
        line = rng.choice([separator, separator[:-1], "", "x" + separator]) + \
            "".join(rng.choice(pieces) for _ in range(rng.randint(0, 5)))
        want, got = expected.match(line), matcher.match(line)
        assert (want is None) == (got is None), repr(line)
        if want is not None and got is not None:
            assert [got.group(g) for g in ("sep", "end", "ws", "linesep")] == \
                [want.group(g) for g in ("sep", "end", "ws", "linesep")], repr(line)


def test_other_patterns_are_compiled_by_re() -> None:
    shim = boundaries._FeedparserRe()
    assert isinstance(shim.compile(r"(\r\n|\r|\n)\Z"), re.Pattern)
    assert isinstance(shim.compile(_pattern("--x"), re.MULTILINE), re.Pattern)
    assert shim.escape("a.b") == re.escape("a.b")


def test_the_corpus_parses_the_same_with_the_matcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raws = [path.read_bytes() for path in corpus_files()]
    assert len(raws) > 20

    def parse_all() -> list[ParsedMail | Rejected]:
        found = []
        for raw in raws:
            random.seed(7)  # mail-parser names an unnamed attachment at random
            found.append(parse_and_store(raw, str(tmp_path), 10**8))
        return found

    before = parse_all()
    monkeypatch.setattr(email.feedparser, "re", email.feedparser.re)  # undone after the test
    boundaries.install()
    assert not isinstance(email.feedparser.re, type(re))
    assert parse_all() == before
