"""Read a CSV file into records numbered by the physical line they start on; a malformed file fails at its line."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

QUOTE = '"'
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class BadRecord:
    """A record the reader could not split into cells (text after a closing quote); reading goes on."""

    line: int
    reason: str


def read_text(path: str | Path) -> str:
    """The file as text: UTF-8 (a BOM is dropped); not UTF-8 or a NUL byte is a ValueError naming the line."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _line_at(raw, exc.start)
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}: {exc.reason}); "
                         "save the file as CSV UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ValueError(f"{path}:{_line_at(text, nul)}: a NUL byte: this is no text CSV file (UTF-16? a "
                         "spreadsheet?); save it as CSV UTF-8")
    return text


def records(text: str, path: str | Path, delimiter: str) -> Iterator[tuple[int, list[str]] | BadRecord]:
    """(first physical line of the record, cells), a quoted cell spanning lines; a record whose quotes do not
    close properly is a BadRecord at the line of the problem. A quote that never closes is a ValueError at the
    line it opens (the rest of the file would otherwise become one cell)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            message = str(exc)
            if "unexpected end of data" in message or "field larger than field limit" in message:
                opened = line + _open_quote_offset(_lines(text, line, None), delimiter)
                raise ValueError(f"{path}:{opened}: a quoted cell starts on this line and its closing quote "
                                 f"{QUOTE} is missing") from None
            yield _bad_record(text, line, reader.line_num, delimiter, message)
            line = reader.line_num + 1
            continue
        yield line, cells
        line = reader.line_num + 1


def _bad_record(text: str, first: int, last: int, delimiter: str, message: str) -> BadRecord:
    if last == first:
        return BadRecord(first, f"text after the closing quote of a quoted cell ({message}); a {QUOTE} inside "
                                f"a quoted cell is written twice: {QUOTE}{QUOTE}")
    opened = first + _open_quote_offset(_lines(text, first, last), delimiter)
    return BadRecord(opened, f"the quoted cell that starts on this line ends on line {last} with text after its "
                             f"closing quote: a missing closing {QUOTE} here, or a {QUOTE} inside the cell not "
                             f"written twice ({QUOTE}{QUOTE})")


def _line_at(data: str | bytes, offset: int) -> int:
    """The 1-based physical line of `offset` (CR LF, CR and LF each end a line, as the csv reader counts)."""
    if isinstance(data, bytes):
        return len(_LINE_BREAK_BYTES.findall(data, 0, offset)) + 1
    return len(_LINE_BREAK.findall(data, 0, offset)) + 1


def _lines(text: str, first: int, last: int | None) -> str:
    """Physical lines `first` to `last` (None: to the end) of `text`, with their line breaks."""
    offset, line = 0, 1
    while line < first:
        found = _LINE_BREAK.search(text, offset)
        if found is None:
            return ""
        offset, line = found.end(), line + 1
    if last is None:
        return text[offset:]
    end = offset
    while line <= last:
        found = _LINE_BREAK.search(text, end)
        if found is None:
            return text[offset:]
        end, line = found.end(), line + 1
    return text[offset:end]


def _open_quote_offset(record: str, delimiter: str) -> int:
    """How many lines after the record's first line the quote that never closes opens."""
    at_cell_start, quoted, opened, offset = True, False, 0, 0
    index = 0
    while index < len(record):
        char = record[index]
        if quoted:
            if char == QUOTE:
                if record.startswith(QUOTE, index + 1):
                    index += 1  # "" is a quote inside the cell
                else:
                    quoted = False
            elif char in "\r\n":
                if char == "\r" and record.startswith("\n", index + 1):
                    index += 1
                offset += 1
        elif char == QUOTE and at_cell_start:
            quoted, opened, at_cell_start = True, offset, False
        elif char in "\r\n":
            if char == "\r" and record.startswith("\n", index + 1):
                index += 1
            offset += 1
            at_cell_start = True
        else:
            at_cell_start = char == delimiter
        index += 1
    return opened
