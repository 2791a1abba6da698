"""The elements of a JSON array file, parsed as the file is read, so that a file of any size
streams: each element is decoded alone (``json.JSONDecoder.raw_decode``), and only the
unread part of the file, at least a chunk, is held in memory.

An element that is not valid JSON is reported, not raised, so that the caller can name or
skip it. Skipping needs to know where the next element starts: that is the next line that
starts, at or left of the bad element's first character, with ``{`` or ``]``. It is found in
a pretty-printed array (``json.dump(..., indent=N)``) and in one with an element per line;
in an array on one line, a bad element can't be skipped and the read stops.
"""

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

_CHUNK_BYTES = 2**20
# Characters the decoder may read past where it reports an error or ends a value (a literal
# such as -Infinity, a surrogate pair of \u escapes, a number), so an error or a value's end
# closer than this to the end of the text read so far may be the end of the text, not the value's.
_LOOKAHEAD_CHARS = 16
_DECODER = json.JSONDecoder()
_NOT_WHITESPACE = re.compile(r"[^ \t\n\r]")


@dataclass(frozen=True)
class ArrayElement:
    number: int  # 1 for the array's first element
    line: int  # where the element starts
    value: object = None
    problem: str | None = None  # why the element is not valid JSON; value is None then


def starts_json_array(path: str) -> bool:
    """Whether a file's first character other than whitespace (or a byte order mark) is ``[``."""
    with open(path, "rb") as f:
        return _Text(f, path).peek() == "["


def array_elements(stream: BinaryIO, path: str) -> Iterator[ArrayElement]:
    """The elements of the JSON array in ``stream``, a ValueError naming ``path`` where it is not one."""
    text = _Text(stream, path)
    first = text.peek()
    if first != "[":
        found = "it is empty" if first is None else f"it starts with {first!r}, not '['"
        raise ValueError(f"{path}: not a JSON array ({found}); for JSON Lines, one object per line, set format: jsonl")
    text.pos += 1
    number = 0
    if text.peek() != "]":
        while True:
            number += 1
            element = _next_element(text, number)
            yield element
            if element.problem is not None:
                _skip_bad_element(text, element)
                if text.peek() == "{":  # the next element; its comma was skipped with the bad one
                    continue
            elif text.peek() == ",":
                text.pos += 1
                continue
            break
        _expect_end(text, path, number)
    text.pos += 1
    if text.peek() is not None:
        raise ValueError(f"{path} line {text.line}: more data after the array's closing ']'")


def _next_element(text: "_Text", number: int) -> ArrayElement:
    if text.peek() is None:
        raise ValueError(f"{text.path} line {text.line}: the file ends before the array's closing ']'")
    line = text.line
    try:
        return ArrayElement(number, line, text.decode_value())
    except json.JSONDecodeError as error:
        error_line, error_column = text.location(error.pos)
        problem = f"invalid JSON ({error.msg} at line {error_line} column {error_column})"
        return ArrayElement(number, line, problem=problem)


def _skip_bad_element(text: "_Text", element: ArrayElement) -> None:
    if not text.skip_to_line_starting_at_or_before(text.column, "{]"):
        raise ValueError(
            f"{text.path} record {element.number} (line {element.line}): {element.problem}, and where the next "
            "record starts is not known (no later line starts with '{' or ']' at its indentation), so it can't "
            "be skipped; fix the file"
        )


def _expect_end(text: "_Text", path: str, number: int) -> None:
    separator = text.peek()
    if separator is None:
        raise ValueError(f"{path} line {text.line}: the file ends before the array's closing ']'")
    if separator != "]":
        raise ValueError(f"{path} line {text.line}: expected ',' or ']' after record {number}, got {separator!r}")


class _Text:
    """A binary stream decoded as UTF-8 a chunk at a time, and a cursor in it that only moves forward."""

    def __init__(self, stream: BinaryIO, path: str):
        self.path = path
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()  # drops a byte order mark
        self.text = ""  # from the cursor on: what was read before it is dropped
        self.pos = 0  # the cursor
        # Lines are counted when asked for, up to text[_counted]: its line, and where that line starts.
        self._counted, self._line, self._line_start = 0, 1, 0

    @property
    def line(self) -> int:
        """The cursor's line."""
        self._count_lines()
        return self._line

    @property
    def column(self) -> int:
        """The cursor's column, from 0."""
        self._count_lines()
        return self.pos - self._line_start

    def location(self, index: int) -> tuple[int, int]:
        """Line and column (from 1) of ``self.text[index]``, at or after the cursor."""
        newlines = self.text.count("\n", self._counted, index)
        line_start = self.text.rfind("\n", self._counted, index) + 1 if newlines else self._line_start
        return self._line + newlines, index - line_start + 1

    def _count_lines(self) -> None:
        self._line, column = self.location(self.pos)
        self._line_start, self._counted = self.pos - column + 1, self.pos

    def read_more(self) -> bool:
        """Append the next chunk; False at the end of the stream. A chunk is at least as long as
        the text after the cursor, so that decoding a long element again as it grows stays linear."""
        data = self._stream.read(max(_CHUNK_BYTES, len(self.text) - self.pos))
        try:
            chunk = self._decoder.decode(data, final=not data)  # final: raises for a character cut off
        except UnicodeDecodeError:
            raise ValueError(f"{self.path}: not valid UTF-8 (after line {self.line})") from None
        if not data:
            return False
        self._count_lines()
        self.text = self.text[self.pos:] + chunk
        self._line_start -= self.pos
        self.pos = self._counted = 0
        return True

    def peek(self) -> str | None:
        """Move the cursor to the next character other than whitespace and return it; None at the end."""
        while (match := _NOT_WHITESPACE.search(self.text, self.pos)) is None:
            self.pos = len(self.text)
            if not self.read_more():
                return None
        self.pos = match.start()
        return match.group()

    def decode_value(self) -> object:
        """Decode the JSON value at the cursor and move past it; a JSONDecodeError is the value's own."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                may_be_cut_off = error.msg.startswith("Unterminated string") or (
                    len(self.text) - error.pos < _LOOKAHEAD_CHARS)  # a string's error is at its start
                if may_be_cut_off and self.read_more():
                    continue
                raise
            if len(self.text) - end < _LOOKAHEAD_CHARS and self.read_more():  # a number may go on: 1 | e5
                continue
            self.pos = end
            return value

    def skip_to_line_starting_at_or_before(self, column: int, characters: str) -> bool:
        """Move to the first later line whose first character other than spaces and tabs is one of
        ``characters`` at ``column`` or left of it; False, at the end, if there is none."""
        line_start = re.compile(r"\n[ \t]{0,%d}(?=[%s])" % (column, re.escape(characters)))
        while (match := line_start.search(self.text, self.pos)) is None:
            self.pos = max(self.pos, len(self.text) - column - 1)  # keep a match cut by the chunk's end
            if not self.read_more():
                return False
        self.pos = match.end()
        return True
