"""A row's normalized text, its words and its content digest: the identity every step shares."""

import hashlib

import pyarrow as pa

TEXT_COLUMNS = ("instruction", "input", "output")


def normalized_content(instruction: str, input: str, output: str) -> str:
    """Whitespace-collapsed, case-folded text of a row; fields stay distinguishable."""
    return "\x1f".join(" ".join(text.split()).casefold() for text in (instruction, input, output))


def content_digest(instruction: str, input: str, output: str, salt: bytes = b"") -> bytes:
    """16-byte blake2b digest of ``salt`` followed by the row's normalized content."""
    content = normalized_content(instruction, input, output).encode()
    return hashlib.blake2b(salt + content, digest_size=16).digest()


def row_digests(table: pa.Table, salt: bytes = b"") -> pa.Array:
    """``content_digest`` of each row of a table with the text columns."""
    rows = zip(*(table[column].to_pylist() for column in TEXT_COLUMNS))
    return pa.array([content_digest(*row, salt=salt) for row in rows], pa.binary(16))


def words(text: str) -> list[str]:
    """Case-folded whitespace-separated words."""
    return text.casefold().split()


def row_words(instruction: str, input: str, output: str) -> list[str]:
    """The words of instruction, input and output, in that order."""
    return words(instruction) + words(input) + words(output)


def ngrams(tokens: list[str], size: int) -> list[str]:
    """Space-joined runs of ``size`` tokens; one run of all tokens if there are fewer."""
    if len(tokens) <= size:
        return [" ".join(tokens)]
    return [" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)]
